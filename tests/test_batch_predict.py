"""Batch predictions: in-process and through the REST API give the same CSV answers."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from pipeline import batch_predict
from tests.conftest import ROOT, letter_image, png_bytes
from tests.support.serving import stand_in_version


@pytest.fixture(scope="module")
def image_folder(tiny_dataset, tmp_path_factory):
    folder = tmp_path_factory.mktemp("unlabelled")
    for i, path in enumerate(sorted(tiny_dataset.glob("*/*.png"))[::9]):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        (sub / f"{i}.png").write_bytes(path.read_bytes())
    (folder / "photo.jpg").write_bytes(png_bytes(letter_image(50, 70, "RGB"), "JPEG"))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return folder


class FakePredictor:
    """A predictor of uniform answers in place of a model server's."""
    version = "1"

    def __init__(self, *args):
        pass

    def __call__(self, images):
        return np.full((len(images), 27), 1 / 27, np.float32), "1"


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return {row["path"]: row for row in csv.DictReader(f)}


def test_local_and_rest_give_the_same_answers(pipeline_runs, image_folder, tmp_path):
    from tests.support.serving import start_server
    serving = pipeline_runs["work"] / "serving"
    version = max((p.name for p in serving.iterdir()), key=int)
    local_csv, rest_csv = tmp_path / "local.csv", tmp_path / "rest.csv"
    proc = subprocess.run([sys.executable, "-m", "pipeline.batch_predict", "--images", str(image_folder),
                           "--out", str(local_csv), "--model", str(serving)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with start_server(serving, "letters") as server:
        counts = batch_predict.predict_folder(batch_predict.RestPredictor(server.url), str(image_folder),
                                              str(rest_csv), batch_size=5, progress=False)
    local, rest = read_rows(local_csv), read_rows(rest_csv)
    files = sorted(p.relative_to(image_folder).as_posix() for p in image_folder.rglob("*") if p.is_file())
    assert sorted(local) == sorted(rest) == files
    assert "predict:" not in proc.stderr   # a pipe: no progress bar (a terminal gets one)
    assert counts["errors"] == 1 and local["broken.png"]["error"] and not local["photo.jpg"]["error"]
    for path, row in local.items():
        if row["error"]:
            continue
        assert row["model_version"] == rest[path]["model_version"] == version
        assert [row[f"class_{i}"] for i in (1, 2, 3)] == [rest[path][f"class_{i}"] for i in (1, 2, 3)]
        probs = [float(row[f"probability_{i}"]) for i in (1, 2, 3)]
        assert probs == sorted(probs, reverse=True)
        assert probs == pytest.approx([float(rest[path][f"probability_{i}"]) for i in (1, 2, 3)], abs=1e-4)


def test_rest_mode_says_when_the_server_is_down(image_folder, tmp_path):
    from tests.support.serving import free_port
    proc = subprocess.run([sys.executable, "-m", "pipeline.batch_predict", "--images", str(image_folder),
                           "--out", str(tmp_path / "x.csv"), "--via", "rest",
                           "--server-url", f"http://127.0.0.1:{free_port()}"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "cannot be reached" in proc.stderr
    assert not (tmp_path / "x.csv").exists()


def test_bad_arguments_fail_before_the_model_loads(image_folder, tmp_path, capsys):
    for argv, message in ((["--batch-size", "0"], "must be at least 1"),
                          (["--out", str(tmp_path)], "is a folder"),
                          (["--out", str(tmp_path / "no" / "p.csv")], "does not exist")):
        args = ["--images", str(image_folder), "--out", str(tmp_path / "p.csv"), "--model", str(tmp_path / "none")]
        with pytest.raises(SystemExit) as caught:
            batch_predict.main(args + argv)
        assert caught.value.code == 2 and message in capsys.readouterr().err
    for version in ("abc", "-1"):
        with pytest.raises(SystemExit) as caught:
            batch_predict.main(["--images", str(image_folder), "--out", str(tmp_path / "p.csv"), "--via", "grpc",
                                "--version", version])
        assert caught.value.code == 2 and "--version" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert batch_predict.main(["--images", str(tmp_path / "empty"), "--out", str(tmp_path / "e.csv")]) == 2
    assert "no files under" in capsys.readouterr().err and not (tmp_path / "e.csv").exists()


def test_help_and_usage_errors_do_not_wait_for_tensorflow_and_a_stop_while_it_loads_is_one_line(tmp_path):
    """The module had imported TensorFlow (through serving.config) before main ran: --help and every usage error
    waited 14-28 s for it, and Ctrl-C meanwhile ended in a traceback from importlib."""
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(png_bytes(letter_image(20, 30)))
    stand_in_version(tmp_path / "model", content=b"a model to load")
    script = """
import sys


class Stopped:   # Ctrl-C as TensorFlow loads
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow":
            raise KeyboardInterrupt


sys.meta_path.insert(0, Stopped())
from pipeline import batch_predict
for argv in (["--help"], ["--images", sys.argv[1], "--out", sys.argv[2], "--batch-size", "0"]):
    try:
        batch_predict.main(argv)
    except SystemExit as stop:
        print("exit", stop.code)
print("status", batch_predict.main(["--images", sys.argv[1], "--out", sys.argv[2], "--model", sys.argv[3]]))
"""
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "images"), str(tmp_path / "p.csv"),
                           str(tmp_path / "model")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines()[-3:] == ["exit 0", "exit 2", "status 130"], proc.stdout + proc.stderr
    assert "argument --batch-size: must be at least 1" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == f"interrupted: {tmp_path / 'p.csv'} not written (left as it was)"


def test_a_failure_midway_leaves_no_csv_and_no_partial_file(image_folder, tmp_path):
    calls = []

    def predictor(images):
        calls.append(len(images))
        if len(calls) == 2:
            raise RuntimeError("the model server went away")
        return np.full((len(images), 27), 1 / 27, np.float32), "1"

    with pytest.raises(RuntimeError, match="went away"):
        batch_predict.predict_folder(predictor, str(image_folder), str(tmp_path / "out.csv"), batch_size=2,
                                     progress=False)
    assert len(calls) == 2 and list(tmp_path.iterdir()) == []


def test_the_progress_bar_is_drawn_on_a_terminal_only(image_folder, tmp_path, monkeypatch):
    """The bar's frames had been written into a pipe or a log file too (231 frames, 17 kB of a log for 4,328
    files), where the project's other commands draw theirs on a terminal only."""
    import io

    class Stream(io.StringIO):
        terminal = False

        def isatty(self):
            return self.terminal

    def predictor(images):
        return np.full((len(images), 27), 1 / 27, np.float32), "1"

    for terminal in (False, True):
        stream = Stream()
        stream.terminal = terminal
        monkeypatch.setattr(sys, "stderr", stream)
        batch_predict.predict_folder(predictor, str(image_folder), str(tmp_path / "out.csv"))
        assert ("predict: 100%" in stream.getvalue()) == terminal, stream.getvalue()


def test_broken_links_and_pipes_get_an_error_row(image_folder, tmp_path):
    import os
    import shutil
    folder = tmp_path / "images"
    shutil.copytree(image_folder, folder)
    (folder / "dangling.png").symlink_to(tmp_path / "gone.png")
    os.mkfifo(folder / "fifo.png")
    (folder / "generated.json").write_text("{}")   # the generator's manifest: no row
    (folder / "notes.json").write_text("{}")       # any other file: an error row
    files = batch_predict.list_images(str(folder))
    assert folder / "dangling.png" in files and folder / "fifo.png" in files and folder / "notes.json" in files
    assert folder / "generated.json" not in files

    def predictor(images):
        return np.full((len(images), 27), 1 / 27, np.float32), "1"

    counts = batch_predict.predict_folder(predictor, str(folder), str(tmp_path / "out.csv"), progress=False)
    rows = read_rows(tmp_path / "out.csv")
    errors = {path: row["error"] for path, row in rows.items() if row["error"]}
    assert "No such file" in errors["dangling.png"] and "not_a_file" in errors["fifo.png"]
    assert list(rows) == [path.relative_to(folder).as_posix() for path in files]   # the input's order


def test_an_unreadable_files_reason_is_worded_as_letters_evaluate_words_it(tmp_path):
    """The error column had been the OSError's text, with the file's absolute path and a name that is not UTF-8
    as a surrogate (br\\udcffoken.png) where the path column shows it as br\\xffoken.png: it is the reason
    letters-evaluate gives now (evaluate.unread_reason), without the path."""
    import os
    from pipeline import evaluate
    folder = tmp_path / "images"
    (folder / "odd2").mkdir(parents=True)
    os.symlink(tmp_path / "gone.png", os.path.join(os.fsencode(folder / "odd2"), b"br\xffoken.png"))
    batch_predict.predict_folder(uniform, str(folder), str(tmp_path / "out.csv"), progress=False)
    _, err = evaluate.read_image(next((folder / "odd2").iterdir()))
    assert read_rows(tmp_path / "out.csv")["odd2/br\\xffoken.png"]["error"] == evaluate.unread_reason(err) \
        == "unreadable: FileNotFoundError: No such file or directory"


def test_two_runs_on_one_output_do_not_mix_their_rows(image_folder, tmp_path):
    """Each run writes a temporary file of its own: the second run's file is complete, the first one's rows
    never reach it (a shared ".partial" name had mixed both runs and failed the first)."""
    import os
    out = tmp_path / "same.csv"
    seen = []

    def second_run_meanwhile(images):
        if not seen:
            seen.append(1)
            batch_predict.predict_folder(lambda more: (np.full((len(more), 27), 1 / 27, np.float32), "2"),
                                         str(image_folder), str(out), progress=False)
        return np.full((len(images), 27), 1 / 27, np.float32), "1"

    first = batch_predict.predict_folder(second_run_meanwhile, str(image_folder), str(out), batch_size=2,
                                         progress=False)
    rows = read_rows(out)
    assert first["images"] > 2 and {row["model_version"] for row in rows.values() if not row["error"]} == {"1"}
    assert len(rows) == len(batch_predict.list_images(str(image_folder))) and list(tmp_path.iterdir()) == [out]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask   # as any file the user writes, not private


def test_main_leaves_the_callers_signal_handlers_as_they_were(image_folder, tmp_path, monkeypatch):
    import signal
    import threading

    monkeypatch.setattr(batch_predict, "RestPredictor", FakePredictor)
    before = signal.getsignal(signal.SIGTERM)
    argv = ["--images", str(image_folder), "--out", str(tmp_path / "a.csv"), "--via", "rest"]
    assert batch_predict.main(argv) == 0 and signal.getsignal(signal.SIGTERM) == before
    results = []
    worker = threading.Thread(target=lambda: results.append(batch_predict.main(argv[:3] + [str(tmp_path / "b.csv"),
                                                                                          "--via", "rest"])))
    worker.start()
    worker.join(60)
    assert results == [0] and (tmp_path / "b.csv").exists()   # outside the main thread too


def test_an_output_that_cannot_be_written_and_a_stop_are_one_line(image_folder, tmp_path, monkeypatch, capsys):
    import os
    import signal
    import subprocess
    import sys
    from tests.conftest import ROOT

    monkeypatch.setattr(batch_predict, "RestPredictor", FakePredictor)
    long_name = tmp_path / ("a" * 252 + ".csv")   # a name too long for the file system (255 bytes)
    assert batch_predict.main(["--images", str(image_folder), "--out", str(long_name), "--via", "rest"]) == 2
    assert f"error: cannot write {long_name}: File name too long" in capsys.readouterr().err
    # SIGTERM mid-run: exit 130, no CSV and no temporary file left
    code = ("import sys, time, numpy as np\nfrom pipeline import batch_predict\n"
            "def slow(images):\n    print('running', flush=True)\n    time.sleep(0.2)\n"
            "    return np.full((len(images), 27), 1 / 27, np.float32), '1'\n"
            "batch_predict.RestPredictor = lambda *args: slow\nslow.version = '1'\n"
            "sys.exit(batch_predict.main(['--images', sys.argv[1], '--out', sys.argv[2], '--via', 'rest', "
            "'--batch-size', '1']))\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(image_folder), str(tmp_path / "stopped.csv")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "running", proc.stderr.read() if proc.poll() is not None else ""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 130
    assert "interrupted: " in proc.stderr.read()
    assert not any("stopped.csv" in name for name in os.listdir(tmp_path))


def test_a_model_that_cannot_be_read_and_an_output_that_cannot_be_made_are_named_as_such(image_folder, tmp_path,
                                                                                          monkeypatch, capsys):
    """An unreadable model folder had been said to be the output's fault (cannot write OUT: Permission denied), and
    an output in a folder where no file can be made had been said in the words of the run's temporary file."""
    from core import model_dirs
    from tests.support.faults import unreadable_folders
    model, out = tmp_path / "model", tmp_path / "p.csv"
    model.mkdir()
    unreadable_folders(monkeypatch, model)
    monkeypatch.setattr(model_dirs.LOCAL_FILES, "listdir", os.listdir)   # bound when core.model_dirs loaded
    assert batch_predict.main(["--images", str(image_folder), "--out", str(out), "--model", str(model)]) == 2
    assert capsys.readouterr().err == f"error: cannot read the model in {model}: Permission denied\n"
    monkeypatch.undo()
    monkeypatch.setattr(batch_predict, "RestPredictor", FakePredictor)
    assert batch_predict.main(["--images", str(image_folder), "--out", "/proc/p.csv", "--via", "rest"]) == 2
    err = capsys.readouterr().err
    assert err == "error: cannot write /proc/p.csv: No such file or directory\n", err


def test_a_path_that_is_not_utf8_is_shown_with_escapes(tmp_path, monkeypatch, capsys):
    """The messages had shown --images, --out and --model as given: a byte that is not UTF-8 as \\udcff."""
    from core.files import printable
    odd = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"caf\xff"))
    shown = printable(odd)
    os.mkdir(odd)
    (tmp_path / "a.png").write_bytes(png_bytes(letter_image(20, 30)))
    for argv, said in ((["--images", odd + "/none"], f"error: {shown}/none is not a folder"),
                       (["--images", odd], f"error: no files under {shown}"),
                       (["--images", str(tmp_path), "--model", odd + "/none"],
                        f"error: {shown}/none holds no SavedModel")):
        assert batch_predict.main(argv + ["--out", str(tmp_path / "p.csv")]) == 2
        assert capsys.readouterr().err.startswith(said)
    uniform.version = "1"
    monkeypatch.setattr(batch_predict, "LocalPredictor", lambda model, version: uniform)
    assert batch_predict.main(["--images", str(tmp_path), "--out", odd + ".csv"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {shown}.csv: 1 images predicted")


class Refusing:
    """Refuses a request that holds ``bad`` (as a model server's decoder refuses an image), else uniform answers."""
    version = "1"

    def __init__(self, bad: bytes, why: str = "Invalid PNG data, size 99"):
        self.bad, self.why, self.calls = bad, why, []

    def __call__(self, images):
        self.calls.append(len(images))
        if self.bad in images or self.bad == b"*":
            raise batch_predict.ImageRefused(self.why)
        return np.full((len(images), 27), 1 / 27, np.float32), "1"


def test_an_image_with_no_ink_gets_an_error_row_not_an_answer(tmp_path):
    """A white page and a black one had been answered a letter each, as confidently as a letter."""
    from PIL import Image
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "letter.png").write_bytes(png_bytes(letter_image(30, 40)))
    (folder / "white.png").write_bytes(png_bytes(Image.new("L", (320, 320), 255)))
    (folder / "black.jpg").write_bytes(png_bytes(Image.new("RGB", (64, 64), 0), "JPEG"))
    counts = batch_predict.predict_folder(uniform, str(folder), str(tmp_path / "out.csv"), progress=False)
    rows = read_rows(tmp_path / "out.csv")
    for name in ("white.png", "black.jpg"):
        assert rows[name]["error"] == "no_ink: the image is one flat tone: no ink to read a letter from"
        assert not rows[name]["class_1"]
    assert rows["letter.png"]["class_1"] and not rows["letter.png"]["error"]
    assert (counts["images"], counts["errors"]) == (1, 2)


def test_an_image_the_model_refuses_costs_its_own_row_not_its_batch(tmp_path):
    """One image among many that the model cannot decode (bytes the image check let through) had ended the whole
    run with a traceback and no CSV."""
    import os
    folder = tmp_path / "images"
    folder.mkdir()
    images = [png_bytes(letter_image(20 + i, 30)) for i in range(5)]
    for i, data in enumerate(images):
        (folder / f"{i}.png").write_bytes(data)
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.png"), "wb") as f:   # a name that is not UTF-8
        f.write(images[0])
    predictor = Refusing(images[3])
    counts = batch_predict.predict_folder(predictor, str(folder), str(tmp_path / "out.csv"), batch_size=4,
                                          progress=False)
    rows = read_rows(tmp_path / "out.csv")
    assert sorted(rows) == ["0.png", "1.png", "2.png", "3.png", "4.png", "caf\\xe9.png"]
    assert rows["3.png"]["error"] == "refused by the model: Invalid PNG data, size 99"
    assert not rows["3.png"]["class_1"] and rows["3.png"]["model_version"] == ""
    assert all(rows[name]["class_1"] and not rows[name]["error"] for name in rows if name != "3.png")
    assert (counts["images"], counts["errors"]) == (5, 1)
    assert predictor.calls == [4, 1, 1, 1, 1, 2]     # the refused batch asked again image by image


def test_every_image_refused_alike_is_a_row_each_whatever_the_batch_size(image_folder, tmp_path):
    """Ten scans of one kind the model cannot read are ten rows with the reason; the other files are answered."""
    for size in (1, 4, 64):
        predictor = Refusing(b"*", "Number of channels inherent in the image must be 1, 3 or 4, was 2")
        counts = batch_predict.predict_folder(predictor, str(image_folder), str(tmp_path / f"{size}.csv"),
                                              batch_size=size, progress=False)
        rows = read_rows(tmp_path / f"{size}.csv")
        assert counts["images"] == 0 and counts["errors"] == len(rows)
        assert {row["error"].split(": ")[0] for row in rows.values()} >= {"refused by the model"}


def test_a_server_model_without_the_image_signature_is_one_error_before_any_image(tmp_path):
    from tests.support.serving import save_scorer, start_server
    save_scorer(str(tmp_path / "scorer" / "1"))
    with start_server(tmp_path / "scorer", "scorer") as server:
        with pytest.raises(RuntimeError, match="version 1 has no 'predict_images' signature"):
            batch_predict.RestPredictor(server.url, "scorer")


def test_the_local_model_refuses_what_it_cannot_decode_image_by_image(pipeline_runs):
    from pipeline import evaluate
    serving = pipeline_runs["work"] / "serving"
    version = max((p for p in serving.iterdir()), key=lambda p: int(p.name))
    call = evaluate.signature_call(evaluate.load_image_signature(str(version)))
    (good, _), (none, why) = evaluate.answers_each(call, [png_bytes(letter_image(30, 40)), b"\x89PNG\r\n\x1a\n junk"])
    assert good.shape == (27,) and none is None and why.startswith("refused by the model: ")
    assert "function_node" not in why and "\n" not in why      # the decoder's words, one line


def uniform(images):
    return np.full((len(images), 27), 1 / 27, np.float32), "1"


def test_images_in_linked_folders_get_rows_each_real_folder_once(tmp_path):
    """rglob did not enter a symbolically linked folder, and the link, a folder, was left out: its images had no
    row at all (pipeline.evaluate reads a linked class folder)."""
    folder, elsewhere = tmp_path / "images", tmp_path / "elsewhere"
    (folder / "alef").mkdir(parents=True)
    elsewhere.mkdir()
    for i in range(2):
        (folder / "alef" / f"{i}.png").write_bytes(png_bytes(letter_image(20, 30, seed=i)))
    for i in range(3):
        (elsewhere / f"{i}.png").write_bytes(png_bytes(letter_image(30, 20, seed=i)))
    (folder / "bet").symlink_to(elsewhere)             # its images get rows
    (folder / "bet_again").symlink_to(elsewhere)       # the same folder by another name: walked once
    (folder / "alef" / "up").symlink_to("..")          # a loop: adds nothing, and the walk ends
    (folder / "itself.png").symlink_to("itself.png")   # a link to itself: an error row, as before
    files = batch_predict.list_images(str(folder))
    assert [p.relative_to(folder).as_posix() for p in files] == [
        "alef/0.png", "alef/1.png", "bet/0.png", "bet/1.png", "bet/2.png", "itself.png"]
    counts = batch_predict.predict_folder(uniform, str(folder), str(tmp_path / "out.csv"), progress=False)
    rows = read_rows(tmp_path / "out.csv")
    assert list(rows) == [p.relative_to(folder).as_posix() for p in files]
    assert "Too many levels of symbolic links" in rows["itself.png"]["error"]
    assert (counts["images"], counts["errors"]) == (5, 1)


def test_hidden_files_and_folders_are_left_out_alike_and_counted(tmp_path, monkeypatch, capsys):
    """A hidden file had been dropped without a word while a hidden folder's files got rows: both are left out now
    (as the ExampleGen leaves them), and the run says how many."""
    folder = tmp_path / "images"
    for rel in (".b.png", ".hidden/a.png", "vis/c.png"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(png_bytes(letter_image(20, 30)))
    files, hidden, _ = batch_predict.walk_images(str(folder))
    assert [p.relative_to(folder).as_posix() for p in files] == ["vis/c.png"]
    assert [p.relative_to(folder).as_posix() for p in hidden] == [".b.png", ".hidden"]
    uniform.version = "1"
    monkeypatch.setattr(batch_predict, "LocalPredictor", lambda model, version: uniform)
    assert batch_predict.main(["--images", str(folder), "--out", str(tmp_path / "p.csv")]) == 0
    assert "left out 2 hidden name(s) (starting with a dot), e.g. .b.png" in capsys.readouterr().err
    assert list(read_rows(tmp_path / "p.csv")) == ["vis/c.png"]
    (folder / "vis" / "c.png").unlink()
    assert batch_predict.main(["--images", str(folder), "--out", str(tmp_path / "q.csv")]) == 2
    assert "no files under" in capsys.readouterr().err


def test_a_folder_that_cannot_be_read_gets_a_row_and_the_top_one_is_an_error(tmp_path, monkeypatch, capsys):
    """A folder the walk could not list had been left out without a word (its files had no row, the run ended
    0), and an unreadable --images had been said to hold no files."""
    from tests.support.faults import unreadable_folders
    folder = tmp_path / "images"
    for rel in ("alef/a.png", "bet/b.png", "gimel/c.png"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(png_bytes(letter_image(20, 30)))
    unreadable_folders(monkeypatch, folder / "bet")
    uniform.version = "1"
    monkeypatch.setattr(batch_predict, "LocalPredictor", lambda model, version: uniform)
    assert batch_predict.main(["--images", str(folder), "--out", str(tmp_path / "p.csv")]) == 0
    said = capsys.readouterr()
    assert ("could not read 1 folder(s), e.g. bet/: Permission denied (a row each says so; the files in them are not "
            "predicted)") in said.err
    rows = read_rows(tmp_path / "p.csv")
    assert list(rows) == ["alef/a.png", "bet/", "gimel/c.png"]
    assert rows["bet/"]["error"] == "unreadable: PermissionError: Permission denied"
    assert "2 images predicted by version 1, 1 unreadable or refused" in said.out
    unreadable_folders(monkeypatch, folder)
    assert batch_predict.main(["--images", str(folder), "--out", str(tmp_path / "q.csv")]) == 2
    assert capsys.readouterr().err == f"error: cannot read {folder}: Permission denied\n"
    assert not (tmp_path / "q.csv").exists()


def test_out_keeps_a_link_to_it_and_its_permissions(image_folder, tmp_path):
    """--out had been replaced by a new file of the umask's permissions: a link to it became a regular file and
    a private (0600) CSV became readable by all, where core.files.atomic_write keeps both."""
    import os
    (tmp_path / "real.csv").write_text("old\n")
    os.chmod(tmp_path / "real.csv", 0o600)
    (tmp_path / "link.csv").symlink_to("real.csv")
    batch_predict.predict_folder(uniform, str(image_folder), str(tmp_path / "link.csv"), progress=False)
    assert os.readlink(tmp_path / "link.csv") == "real.csv"
    assert (tmp_path / "real.csv").stat().st_mode & 0o777 == 0o600
    assert len(read_rows(tmp_path / "real.csv")) == len(batch_predict.list_images(str(image_folder)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "real.csv"]   # no temporary file left


def test_a_batch_is_split_into_requests_within_the_budget():
    sizes = [10, 10, 200, 10, 10, 10]
    images = [bytes(n) for n in sizes]
    cost = batch_predict.request_size
    runs = batch_predict.in_requests(images, cost(10) * 2)
    assert [[len(i) for i in run] for run in runs] == [[10, 10], [200], [10, 10], [10]]   # in order; too big: alone
    assert batch_predict.in_requests(images, None) == [images] and batch_predict.in_requests([], 100) == []
    assert cost(3) == 4 + batch_predict.JSON_PER_IMAGE and cost(4) == 8 + batch_predict.JSON_PER_IMAGE
    assert cost(batch_predict.image_io.DEFAULT_MAX_BYTES) <= batch_predict.REQUEST_BUDGET


def test_requests_stay_under_the_servers_bound_and_a_413_says_so(tmp_path):
    """A batch of 64 photos of ~1 MB is 85 MB of JSON: the server refused it (413, over its 64 MiB) and closed
    the connection, and the whole run ended as "the model server cannot be reached". Here the same at a small
    scale: a server whose bound is below one batch, over REST and gRPC."""
    from tests.support import serving as testing
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(8):
        (folder / f"{i}.png").write_bytes(testing.png_bytes(noise_seed=i, size=100))   # ~10 kB each
    base = tmp_path / "models"
    testing.publish_version(str(base), 1)
    with testing.start_server(base, "letters", grpc_port=testing.free_port(), max_request_bytes=60_000) as server:
        for predictor in (batch_predict.RestPredictor(server.url, request_bytes=30_000),
                          batch_predict.GrpcPredictor(f"127.0.0.1:{server.server.grpc_port}", request_bytes=30_000)):
            counts = batch_predict.predict_folder(predictor, str(folder), str(tmp_path / "out.csv"), progress=False)
            assert (counts["images"], counts["errors"]) == (8, 0), type(predictor).__name__
        too_much = batch_predict.RestPredictor(server.url, request_bytes=200_000)   # more than the server takes
        with pytest.raises(RuntimeError, match="HTTP 413: the model server refused a request of up to 200000 "
                                               "bytes as too large: 413 Request body of .* exceeds the limit of 60000"):
            batch_predict.predict_folder(too_much, str(folder), str(tmp_path / "out.csv"), progress=False)


def test_local_version_is_the_version_folder_asked_for(tmp_path, monkeypatch, capsys):
    """--version had been ignored with --via local: the highest version answered, and a version that does not
    exist was no error. Run inside a version folder (--model .), the rows had no model_version."""
    from tests.support import serving as testing
    base = tmp_path / "models"
    for version in (1, 2):
        testing.publish_version(str(base), version)   # version v ranks class v first
    image = png_bytes(letter_image(20, 30))
    for version, expected in ((None, "2"), ("1", "1"), ("2", "2")):
        predictor = batch_predict.LocalPredictor(str(base), version)
        probs, answered = predictor([image])
        assert answered == predictor.version == expected and int(probs[0].argmax()) == int(expected)
    monkeypatch.chdir(base / "1")
    assert batch_predict.LocalPredictor(".").version == "1"
    # a version folder is its own version: asked for it, it answers (it had been refused: "versions there: none")
    assert batch_predict.LocalPredictor(".", "1").version == "1"
    assert batch_predict.LocalPredictor(str(base / "2"), "2").version == "2"
    with pytest.raises(FileNotFoundError, match=r"is a version folder \(1\), not version 2"):
        batch_predict.LocalPredictor(".", "2")
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(image)
    out = tmp_path / "out.csv"
    assert batch_predict.main(["--images", str(folder), "--out", str(out), "--model", str(base),
                               "--version", "5"]) == 2
    assert f"error: {base} has no version 5 (versions there: 1, 2)" in capsys.readouterr().err
    assert not out.exists()
    assert batch_predict.main(["--images", str(folder), "--out", str(out), "--model", str(base),
                               "--version", "1"]) == 0
    assert read_rows(out)["a.png"]["model_version"] == "1"


def test_local_version_is_the_version_folders_number_as_a_server_reports_it(tmp_path, monkeypatch):
    """With --via local, the rows had named the version folder (005), where a server serving it, letters-releases
    and --via rest or grpc say version 5: it is the number the folder's name stands for now."""
    import os
    from tests.support import serving as testing
    base = tmp_path / "models"
    testing.publish_version(str(base), 5)
    os.rename(base / "5", base / "005")
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes(letter_image(20, 30)))
    out = tmp_path / "out.csv"
    assert batch_predict.main(["--images", str(folder), "--out", str(out), "--model", str(base),
                               "--version", "5"]) == 0
    assert read_rows(out)["a.png"]["model_version"] == "5"
    monkeypatch.chdir(base / "005")
    assert batch_predict.LocalPredictor(str(base)).version == batch_predict.LocalPredictor(".").version == "5"
    with testing.start_server(base, "letters") as server:
        assert batch_predict.RestPredictor(server.url).version == "5"


def test_a_flag_the_via_does_not_read_is_a_usage_error(tmp_path, monkeypatch, capsys):
    """--server-url and --model-name had been ignored without --via rest or grpc (the local model answered), and
    --model with them (the server answered): each is a usage error now, before any model loads, saying which --via
    reads it. A LETTERS_SERVING_DIR setting is no flag: it is --model's default, and no conflict with a server."""
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes(letter_image(20, 30)))
    calls = []

    def predictor(kind):
        def make(*args):
            calls.append((kind, *args))
            return uniform
        return make
    uniform.version = "1"
    for kind, name in (("local", "LocalPredictor"), ("rest", "RestPredictor"), ("grpc", "GrpcPredictor")):
        monkeypatch.setattr(batch_predict, name, predictor(kind))
    base = ["--images", str(folder), "--out", str(tmp_path / "p.csv")]
    for argv, message in (
            (["--server-url", "http://prod:8501"], "--via local (the default) predicts in process, with the "
             "SavedModel of --model: --server-url (http://prod:8501) would be ignored; give --via rest or --via "
             "grpc to ask a model server"),
            (["--via", "local", "--model-name", "nosuch"], "--via local predicts in process, with the SavedModel "
             "of --model: --model-name (nosuch) would be ignored; give --via rest or --via grpc to ask a model "
             "server"),
            (["--via", "rest", "--model", "models/letters"], "--via rest asks the model server at --server-url: "
             "--model (models/letters) would be ignored; leave it out, or give --via local to predict in process"),
            (["--via", "grpc", "--server-url", "h:8500", "--model", "m"], "--via grpc asks the model server at "
             "--server-url: --model (m) would be ignored; leave it out, or give --via local to predict in process")):
        with pytest.raises(SystemExit) as caught:
            batch_predict.main(base + argv)
        err = capsys.readouterr().err
        assert caught.value.code == 2 and err.endswith(f"error: {message}\n"), err
    assert calls == [] and not (tmp_path / "p.csv").exists()
    monkeypatch.setenv("LETTERS_SERVING_DIR", str(tmp_path / "served"))
    assert batch_predict.main(base) == 0
    assert batch_predict.main(base + ["--via", "rest"]) == 0
    assert batch_predict.main(base + ["--via", "grpc", "--server-url", "h:8500", "--model-name", "other"]) == 0
    assert calls == [("local", str(tmp_path / "served"), None), ("rest", "http://127.0.0.1:8501", "letters", None),
                     ("grpc", "h:8500", "other", None)]


def test_a_batch_over_the_servers_batching_limit_goes_in_requests_of_that_size(tmp_path, capsys):
    """A server batching at most 3 images a request refuses 8 with INVALID_ARGUMENT ("Task size 8 is larger than
    maximum input batch size 3"): that had been taken for a refused image and every image sent alone. The batch goes
    in requests of 3 now, for the rest of the run, said once; no image is counted refused."""
    from tests.support import serving as testing
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(16):
        (folder / f"{i:02}.png").write_bytes(testing.png_bytes(noise_seed=i, size=20))
    config = tmp_path / "batching.config"
    config.write_text("max_batch_size { value: 3 }\nbatch_timeout_micros { value: 1000 }\n"
                      "num_batch_threads { value: 2 }\n")
    base = tmp_path / "models"
    testing.publish_version(str(base), 1)
    with testing.start_server(base, "letters", grpc_port=testing.free_port(), enable_batching=True,
                              batching_parameters_file=str(config)) as server:
        for predictor in (batch_predict.RestPredictor(server.url),
                          batch_predict.GrpcPredictor(f"127.0.0.1:{server.server.grpc_port}")):
            sizes = []
            sent = predictor._request if isinstance(predictor, batch_predict.RestPredictor) else predictor._call

            def spy(*args, sent=sent):
                if len(args) == 2 and args[1] is not None:   # a prediction: REST's body, gRPC's request
                    body = args[1]
                    sizes.append(len(body["instances"]) if isinstance(body, dict)
                                 else len(body.inputs["images"].string_val))
                return sent(*args)
            if isinstance(predictor, batch_predict.RestPredictor):
                predictor._request = spy
            else:
                predictor._call = spy
            counts = batch_predict.predict_folder(predictor, str(folder), str(tmp_path / "out.csv"), batch_size=8,
                                                  progress=False)
            name = type(predictor).__name__
            assert (counts["images"], counts["errors"]) == (16, 0), name
            assert sizes == [8, 3, 3, 2, 3, 3, 2], (name, sizes)   # the first refused, then at most 3 a request
            assert predictor.max_images == 3
            err = capsys.readouterr().err
            assert err.count("the model server takes at most 3 images a request") == 1, err
            assert all(not row["error"] for row in read_rows(tmp_path / "out.csv").values())


def test_out_among_the_inputs_is_refused_or_left_out(tmp_path, monkeypatch, capsys):
    """--out naming an input image had replaced it with the CSV, and a CSV written under --images was read by the
    next run as an input ("not_an_image"). An input file is a usage error now, naming it, and left as it was; an
    earlier run's CSV there gets no row."""
    folder = tmp_path / "images"
    (folder / "alef").mkdir(parents=True)
    image = png_bytes(letter_image(20, 30))
    (folder / "alef" / "x.png").write_bytes(image)
    uniform.version = "1"
    monkeypatch.setattr(batch_predict, "LocalPredictor", lambda model, version: uniform)
    with pytest.raises(SystemExit) as caught:
        batch_predict.main(["--images", str(folder), "--out", str(folder / "alef" / "x.png")])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and f"--out {folder / 'alef' / 'x.png'} is one of the input files" in err, err
    assert (folder / "alef" / "x.png").read_bytes() == image
    for run in range(2):   # the second run reads the folder the first one wrote its CSV into
        assert batch_predict.main(["--images", str(folder), "--out", str(folder / "pred.csv")]) == 0
        assert list(read_rows(folder / "pred.csv")) == ["alef/x.png"], run
    # an earlier run's CSV under another name than --out's: known by its header, no row either
    assert batch_predict.main(["--images", str(folder), "--out", str(folder / "pred2.csv")]) == 0
    assert list(read_rows(folder / "pred2.csv")) == ["alef/x.png"]


def test_each_image_is_opened_once(tmp_path, monkeypatch):
    """Every file had been opened twice: once for its first bytes (an earlier run's CSV is no input), once to be
    predicted. Now an image is opened once (one more time, for its first bytes, the first file only: whether there
    is anything but CSVs to predict, before the model loads); a CSV is known as it is read and gets no row still."""
    import collections
    folder = tmp_path / "images"
    (folder / "alef").mkdir(parents=True)
    for i in range(5):
        (folder / "alef" / f"{i}.png").write_bytes(png_bytes(letter_image(20, 30, seed=i)))
    uniform.version = "1"
    monkeypatch.setattr(batch_predict, "LocalPredictor", lambda model, version: uniform)
    assert batch_predict.main(["--images", str(folder), "--out", str(folder / "earlier.csv")]) == 0
    opens, counting = collections.Counter(), [True]
    sys.addaudithook(lambda event, args: counting and event == "open" and opens.update([str(args[0])]))
    try:
        assert batch_predict.main(["--images", str(folder), "--batch-size", "2", "--out", str(tmp_path / "p.csv")]) == 0
    finally:
        counting.clear()
    images = [str(folder / "alef" / f"{i}.png") for i in range(5)]
    assert all(opens[image] >= 1 for image in images) and sum(opens[image] for image in images) <= len(images) + 1, opens
    assert list(read_rows(tmp_path / "p.csv")) == [f"alef/{i}.png" for i in range(5)]   # earlier.csv: no row


def test_out_that_is_a_url_is_refused(tmp_path, monkeypatch, capsys):
    """--out gs://b/pred.csv had been read as ./gs:/b/pred.csv: written there when that folder existed and said
    written to gs://b/pred.csv, else refused as a missing local folder. A usage error now, saying to copy it after."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gs:" / "b").mkdir(parents=True)
    with pytest.raises(SystemExit) as caught:
        batch_predict.main(["--images", str(tmp_path), "--out", "gs://b/pred.csv"])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and ("argument --out: gs://b/pred.csv: the output is written to a local file, not "
                                       "a URL; give one and copy it to the bucket after (gsutil cp FILE") in err, err
    assert not (tmp_path / "gs:" / "b" / "pred.csv").exists()


def _images(folder, count):
    from tests.support import serving as testing
    folder.mkdir()
    for i in range(count):
        (folder / f"{i}.png").write_bytes(testing.png_bytes(noise_seed=i, size=16))
    return folder


def _after_the_first_call(predictor, then):
    """``predictor``, calling ``then()`` once its first answer is in."""
    def call(images):
        answer = predictor(images)
        if not call.done:
            call.done = True
            then()
        return answer
    call.done, call.request_budget = False, predictor.request_budget
    return call


def test_a_version_pushed_during_a_run_answers_the_rest_of_it(tmp_path, capsys):
    """The version was pinned at the start: once the server unloaded it for a newer one (the latest policy), every
    later request was a 404 (NOT_FOUND) "Servable not found for request: Specific(letters, 1)", the run failed and
    its finished rows were lost. The newer version is pinned now, said once, and each row names the version that
    answered it (version v of the test model ranks class v first)."""
    import time
    from core.labels import CLASS_NAMES
    from serving.client import version_states
    from tests.support import serving as testing
    folder = _images(tmp_path / "images", 6)
    base = tmp_path / "models"
    testing.publish_version(str(base), 1)
    with testing.start_server(base, "letters", grpc_port=testing.free_port(),
                              file_system_poll_wait_seconds=0.2) as server:
        client = testing.RestClient(server.url)

        def push(version):
            testing.publish_version(str(base), version)
            deadline = time.monotonic() + 120
            while [version_states(client.get("/v1/models/letters")[1]).get(str(v)) for v in (version, version - 1)] \
                    != ["AVAILABLE", "END"]:
                assert time.monotonic() < deadline, client.get("/v1/models/letters")
                time.sleep(0.1)

        for old, make in ((1, lambda: batch_predict.RestPredictor(server.url)),
                          (2, lambda: batch_predict.GrpcPredictor(f"127.0.0.1:{server.server.grpc_port}"))):
            predictor = make()
            assert predictor.version == str(old)
            out = tmp_path / f"{old}.csv"
            counts = batch_predict.predict_folder(_after_the_first_call(predictor, lambda: push(old + 1)),
                                                  str(folder), str(out), batch_size=2, progress=False)
            name = type(predictor).__name__
            assert (counts["images"], counts["errors"]) == (6, 0) and list(counts["versions"]) == [str(old),
                                                                                                 str(old + 1)], name
            rows = list(read_rows(out).values())
            assert [row["model_version"] for row in rows] == [str(old)] * 2 + [str(old + 1)] * 4, name
            assert all(row["class_1"] == CLASS_NAMES[int(row["model_version"])] for row in rows), name
            err = capsys.readouterr().err
            assert err.count(f"version {old} is no longer served") == 1 and f"version {old + 1}" in err, err


def test_a_version_asked_for_that_is_no_longer_served_ends_the_run(tmp_path):
    import time
    from serving.client import version_states
    from tests.support import serving as testing
    folder = _images(tmp_path / "images", 4)
    base = tmp_path / "models"
    testing.publish_version(str(base), 1)
    with testing.start_server(base, "letters", file_system_poll_wait_seconds=0.2) as server:
        client = testing.RestClient(server.url)

        def push():
            testing.publish_version(str(base), 2)
            deadline = time.monotonic() + 120
            while version_states(client.get("/v1/models/letters")[1]).get("1") != "END":
                assert time.monotonic() < deadline
                time.sleep(0.1)

        predictor = batch_predict.RestPredictor(server.url, version="1")
        with pytest.raises(RuntimeError, match=r"version 1 is no longer served \(the server serves 2\)"):
            batch_predict.predict_folder(_after_the_first_call(predictor, push), str(folder),
                                         str(tmp_path / "out.csv"), batch_size=2, progress=False)
    assert not (tmp_path / "out.csv").exists()


def test_a_version_the_server_does_not_serve_is_its_answer_before_any_file(tmp_path, capsys):
    """Over gRPC a --version the server never served had been taken unasked: the run started, then ended saying
    it was "no longer served". Over REST and gRPC alike it is the server's NOT_FOUND now, before any file is read;
    and a model without the image signature is refused over gRPC as over REST."""
    from tests.support import serving as testing
    folder = _images(tmp_path / "images", 2)
    base = tmp_path / "models"
    testing.publish_version(str(base), 1)
    testing.save_scorer(str(tmp_path / "scorer" / "1"))
    config = tmp_path / "models.config"
    config.write_text("model_config_list {\n" + "".join(
        f'  config {{ name: "{name}" base_path: "{path}" model_platform: "tensorflow" }}\n'
        for name, path in (("letters", base), ("scorer", tmp_path / "scorer"))) + "}\n")
    with testing.start_server(grpc_port=testing.free_port(), model_config_file=str(config)) as server:
        grpc_target = f"127.0.0.1:{server.server.grpc_port}"
        for via, url, where in (("rest", server.url, f"{server.url}/v1/models/letters/versions/2/metadata: HTTP 404"),
                                ("grpc", grpc_target, f"{grpc_target}: NOT_FOUND")):
            out = tmp_path / f"{via}.csv"
            assert batch_predict.main(["--images", str(folder), "--out", str(out), "--via", via,
                                       "--server-url", url, "--version", "2"]) == 2, via
            err = capsys.readouterr().err
            assert f"error: {where}: Servable not found for request: Specific(letters, 2)\n" in err, err
            assert "predict:" not in err and not out.exists(), err   # no progress bar: no file read
        with pytest.raises(RuntimeError, match="version 1 has no 'predict_images' signature"):
            batch_predict.GrpcPredictor(grpc_target, "scorer")


def test_a_server_that_restarts_during_a_run_is_waited_for(tmp_path, capsys):
    """A server away for a moment (a restart) had ended the run at once, its finished rows lost: it is asked again
    now, for a bounded time, said once; one that stays away ends the run as before, no CSV written."""
    import threading
    from serving.client import ServingUnavailable
    from tests.support import serving as testing
    folder = _images(tmp_path / "images", 6)
    base = tmp_path / "models"
    testing.publish_version(str(base), 1)
    port = testing.free_port()
    servers = [testing.start_server(base, "letters", port=port)]
    away = threading.Event()
    predictor = batch_predict.RestPredictor(servers[0].url)
    predictor.reconnect_seconds = 300   # generous: the restart loads the model meanwhile
    real_request = predictor.connection.request

    def request(*args):
        try:
            return real_request(*args)
        except ServingUnavailable:   # the server is away: it may start again
            away.set()
            raise
    predictor.connection.request = request

    def restart():
        servers[0].stop()
        threading.Thread(target=lambda: away.wait(120) and servers.append(
            testing.start_server(base, "letters", port=port)), daemon=True).start()

    try:
        counts = batch_predict.predict_folder(_after_the_first_call(predictor, restart), str(folder),
                                              str(tmp_path / "out.csv"), batch_size=2, progress=False)
    finally:
        for server in servers:
            server.stop()
    assert away.is_set() and (counts["images"], counts["errors"]) == (6, 0)
    assert {row["model_version"] for row in read_rows(tmp_path / "out.csv").values()} == {"1"}
    err = capsys.readouterr().err
    assert err.count("the model server cannot be reached") == 1 and "asking again for up to 300 s" in err, err
    assert "answers again" in err
    # away for good: the run ends once the time is up
    predictor.reconnect_seconds = 0.5
    with pytest.raises(RuntimeError, match=r"cannot be reached.*\(asked again for 0.5 s\)"):
        batch_predict.predict_folder(predictor, str(folder), str(tmp_path / "gone.csv"), progress=False)
    assert not (tmp_path / "gone.csv").exists()


def test_a_grpc_server_back_on_its_port_is_reached_by_the_next_ask(tmp_path):
    """A gRPC channel whose server went away tries to connect again after pauses growing to minutes (1 s, 1.6 s,
    2.6 s, ...), and calls meanwhile failed at once with its last
    "Connection refused": a server back within the run's wait was not reached, the run failed. The channel tries
    every second at most now, so the asking again reaches a server back for a moment."""
    import time
    from tests.support import serving as testing
    base = tmp_path / "models"
    testing.publish_version(str(base), 1)
    port = testing.free_port()
    image = testing.png_bytes(noise_seed=1, size=16)
    server = testing.start_server(base, "letters", grpc_port=port)
    try:
        predictor = batch_predict.GrpcPredictor(f"127.0.0.1:{port}")
        assert predictor([image])[1] == "1"
        server.stop()
        away = time.monotonic()
        while time.monotonic() - away < 11:   # asked meanwhile, as a run waiting for it asks
            with pytest.raises(batch_predict.ServerAway, match="UNAVAILABLE"):
                predictor._available()
            time.sleep(0.1)
        server = testing.start_server(base, "letters", grpc_port=port)   # back: its models loaded
        predictor.reconnect_seconds = 2.5   # twice the longest pause between the channel's tries
        probs, version = predictor([image])
    finally:
        server.stop()
    assert version == "1" and probs.shape == (1, 27)


def test_a_server_that_does_not_answer_in_time_ends_the_run_asked_once(tmp_path):
    """A REST request not answered within the timeout had been taken for a server away: the same batch was sent
    again (the server running it twice) and the run ended after twice the timeout, 'asked again for 30 s'. It ends
    the run at once now, saying the server did not answer in time, as a gRPC DEADLINE_EXCEEDED does."""
    import json
    import threading
    from tests.support import serving as testing
    from tests.support.http_stub import JsonHandler, serving
    posts, released = [], threading.Event()

    class Slow(JsonHandler):
        def do_GET(self):   # the model's status (version 1 AVAILABLE) and its metadata (the image signature)
            self.answer(200, json.dumps({"metadata": {"signature_def": {"signature_def": {"predict_images": {}}}}}
                                        if self.path.endswith("/metadata") else
                                        {"model_version_status": [{"version": "1", "state": "AVAILABLE"}]}).encode())

        def do_POST(self):   # a prediction: held past the client's timeout
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            posts.append(self.path)
            released.wait(30)
            self.answer(200, b'{"error": "released"}')

    folder = _images(tmp_path / "images", 2)
    with serving(Slow) as slow:
        try:
            predictor = batch_predict.RestPredictor(f"http://127.0.0.1:{slow.server_port}", timeout=0.5)
            with pytest.raises(RuntimeError, match=r"did not answer within 0.5 s") as caught:
                batch_predict.predict_folder(predictor, str(folder), str(tmp_path / "out.csv"), progress=False)
        finally:
            released.set()
    assert len(posts) == 1 and "asked again" not in str(caught.value)
    assert not (tmp_path / "out.csv").exists()
    base = tmp_path / "models"
    testing.publish_version(str(base), 1)
    with testing.start_server(base, "letters", grpc_port=testing.free_port()) as server:
        predictor = batch_predict.GrpcPredictor(f"127.0.0.1:{server.server.grpc_port}")
        predictor.timeout = 1e-6   # no answer arrives that soon
        with pytest.raises(RuntimeError, match=rf"127.0.0.1:{server.server.grpc_port} did not answer within 1e-06 s"):
            predictor([testing.png_bytes(noise_seed=1, size=16)])


def test_the_pipelines_file_limits_are_read_as_the_pipeline_reads_them(tmp_path, monkeypatch):
    """LETTERS_MAX_FILE_BYTES, which the pipeline trains by, is the limit images are predicted with: a smaller one
    refuses a file the default takes (it had always been the default's 20 MiB)."""
    from PIL import Image

    monkeypatch.setattr(batch_predict, "RestPredictor", FakePredictor)
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "big.png").write_bytes(png_bytes(Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (60, 60), np.uint8), "L")))
    argv = ["--images", str(folder), "--out", str(tmp_path / "p.csv"), "--via", "rest"]
    assert batch_predict.main(argv) == 0 and not read_rows(tmp_path / "p.csv")["big.png"]["error"]
    monkeypatch.setenv("LETTERS_MAX_FILE_BYTES", "1000")
    assert batch_predict.main(argv) == 0
    assert read_rows(tmp_path / "p.csv")["big.png"]["error"].startswith("too_large")
