"""The built-in data generator: deterministic, laid out for --data-root, and clear when fonts are missing."""
import errno
import hashlib
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from pipeline import generate_letters
from core.labels import CLASS_NAMES
from tests.conftest import ROOT


def digest(folder):
    h = hashlib.sha256()
    for path in sorted(folder.glob("*/*.png")):
        h.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def test_layout_and_determinism(tmp_path):
    classes = CLASS_NAMES[:4]
    generate_letters.generate(tmp_path / "a", per_class=3, seed=5, classes=classes, progress=False)
    generate_letters.generate(tmp_path / "b", per_class=3, seed=5, classes=classes, progress=False)
    generate_letters.generate(tmp_path / "c", per_class=3, seed=6, classes=classes, progress=False)
    assert sorted(p.name for p in (tmp_path / "a").iterdir() if p.is_dir()) == sorted(classes)
    assert all(len(list((tmp_path / "a" / c).glob("*.png"))) == 3 for c in classes)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")
    img = Image.open(next((tmp_path / "a" / "alef").glob("*.png")))
    assert img.mode == "L" and min(img.size) >= 8


def test_second_run_with_same_settings_leaves_files_untouched(tmp_path):
    generate_letters.generate(tmp_path, per_class=2, seed=1, classes=CLASS_NAMES[:2], progress=False)
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/*.png")}
    generate_letters.generate(tmp_path, per_class=2, seed=1, classes=CLASS_NAMES[:2], progress=False)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/*.png")} == mtimes
    generate_letters.generate(tmp_path, per_class=3, seed=1, classes=CLASS_NAMES[:2], progress=False)
    assert len(list(tmp_path.glob("*/*.png"))) == 6


def test_data_of_an_earlier_generator_version_is_written_again(tmp_path):
    generate_letters.generate(tmp_path, per_class=2, seed=1, classes=CLASS_NAMES[:2], progress=False)
    manifest = tmp_path / generate_letters.MANIFEST
    current = f'"version": {generate_letters.GENERATOR_VERSION}'
    manifest.write_text(manifest.read_text().replace(current, '"version": 1'))
    stale = next(tmp_path.glob("bet/*.png"))
    stale.write_bytes(b"written by an older generator")
    result = generate_letters.generate(tmp_path, per_class=2, seed=1, classes=CLASS_NAMES[:2], progress=False)
    assert result["version"] == generate_letters.GENERATOR_VERSION
    assert Image.open(stale).size and len(list(tmp_path.glob("*/*.png"))) == 4


def test_handwriting_faces_are_found_and_preferred():
    faces = generate_letters.find_faces()
    assert faces, "the Hebrew fonts (culmus, culmus-fancy, fonts-ldco) are installed by `make fonts`"
    assert faces[0].script and any(not f.script for f in faces)


def test_missing_fonts_name_the_package_to_install(tmp_path):
    with pytest.raises(generate_letters.NoHebrewFontError, match="apt-get install culmus"):
        generate_letters.require_faces(font_dirs=[str(tmp_path)])
    code = ("import sys, pipeline.generate_letters as g; g.FONT_DIRS = (sys.argv[1],); "
            "sys.exit(g.main(['--out', sys.argv[2], '--per-class', '1']))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "apt-get install culmus culmus-fancy fonts-ldco" in proc.stderr


def test_a_font_the_style_does_not_use_leaves_the_data_set_as_it_is(tmp_path, capsys):
    """Installing or removing a print face (Noam) leaves a strokes data set untouched (its writers learn only the
    handwriting faces), as it does one whose manifest lists every installed face; a fonts data set is written again.
    The strokes one had been rewritten, its mtimes changed and the pipeline retraining."""
    faces, classes, data = generate_letters.find_faces(), CLASS_NAMES[:2], tmp_path / "g"
    fewer = [f for f in faces if f.name != "Noam"]
    assert len(fewer) < len(faces)
    generate_letters.generate(data, per_class=1, seed=5, faces=faces, classes=classes, progress=False)
    manifest = data / generate_letters.MANIFEST
    assert json.loads(manifest.read_text())["faces"] == list(generate_letters.STROKE_FACES)
    mtimes = {p: p.stat().st_mtime_ns for p in data.glob("*/*.png")}
    capsys.readouterr()
    generate_letters.generate(data, per_class=1, seed=5, faces=fewer, classes=classes, progress=True)
    recorded = json.loads(manifest.read_text())
    recorded["faces"] = [f.name for f in faces]                         # as a manifest of an earlier generator
    manifest.write_text(json.dumps(recorded, indent=2))
    generate_letters.generate(data, per_class=1, seed=5, faces=fewer, classes=classes, progress=True)
    assert capsys.readouterr().out.count("already holds this data set") == 2
    assert {p: p.stat().st_mtime_ns for p in data.glob("*/*.png")} == mtimes

    generate_letters.generate(data, per_class=1, seed=5, faces=faces, classes=classes, style="fonts", progress=False)
    generate_letters.generate(data, per_class=1, seed=5, faces=fewer, classes=classes, style="fonts", progress=True)
    assert "with 1 per class, seed 5, fonts, other fonts" in capsys.readouterr().out


def test_a_missing_handwriting_font_is_named_with_its_package(tmp_path, monkeypatch, capsys):
    """Without fonts-ldco, letters-generate and the pipeline's default data say that Lilach and YamSuf are missing
    and which package has them: the data had been made from the other handwriting faces without a word."""
    import local_runner
    from core import configs
    installed = generate_letters.find_faces()
    monkeypatch.setattr(generate_letters, "find_faces",
                        lambda font_dirs=None: [f for f in installed if f.name not in ("Lilach", "YamSuf")])
    made = []
    monkeypatch.setattr(generate_letters, "generate", lambda *args, **kwargs: made.append(args))
    warning = ("warning: 2 of the 6 handwriting-like fonts not installed: Lilach (fonts-ldco), YamSuf (fonts-ldco); "
               "the data is generated without them. Install them: sudo apt-get install fonts-ldco")
    assert generate_letters.main(["--out", str(tmp_path / "g"), "--per-class", "1"]) == 0
    assert f"generate: {warning}\n" in capsys.readouterr().err
    local_runner.ensure_default_data(configs.Config(data_root=str(tmp_path / "d")))
    assert capsys.readouterr().err == f"{warning}\n" and len(made) == 2
    monkeypatch.setattr(generate_letters, "find_faces", lambda font_dirs=None: installed)
    assert generate_letters.main(["--out", str(tmp_path / "g"), "--per-class", "1"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_never_replaces_files_it_did_not_write(tmp_path):
    users = tmp_path / "users_data"
    (users / "alef").mkdir(parents=True)
    (users / "alef" / "mine.png").write_bytes(b"a user's image")
    with pytest.raises(generate_letters.NotGeneratedFolder, match="not written by this generator"):
        generate_letters.generate(users, per_class=1, seed=1, classes=CLASS_NAMES[:2], progress=False)
    proc = subprocess.run([sys.executable, "-m", "pipeline.generate_letters", "--out", str(users), "--per-class", "1"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "refusing to replace" in proc.stderr
    assert [p.name for p in users.rglob("*") if p.is_file()] == ["mine.png"]

    # In a folder it made, a file the user added is kept when the data set is regenerated.
    ours = tmp_path / "generated"
    generate_letters.generate(ours, per_class=2, seed=1, classes=CLASS_NAMES[:2], progress=False)
    (ours / "alef" / "added_by_hand.png").write_bytes(b"kept")
    generate_letters.generate(ours, per_class=1, seed=2, classes=CLASS_NAMES[:2], progress=False)
    assert (ours / "alef" / "added_by_hand.png").read_bytes() == b"kept"
    assert len(list((ours / "bet").glob("*.png"))) == 1


def test_images_from_the_ten_thousandth_on_are_its_own(tmp_path):
    """Above --per-class 10000 an image's number has five digits: it counts toward a complete data set (a second
    identical run finds it there) and is removed when the folder is regenerated, not left behind to be trained on."""
    generate_letters.generate(tmp_path, per_class=1, seed=1, classes=("alef",), progress=False)
    ten_thousandth = tmp_path / "alef" / "alef_hand_10000.png"
    ten_thousandth.write_bytes(b"image 10000 of a larger run")
    assert ten_thousandth in generate_letters._generated_files(tmp_path, "alef", {"hand"})
    manifest = tmp_path / generate_letters.MANIFEST   # recorded, as by the larger run that wrote it
    recorded = json.loads(manifest.read_text())
    recorded["files"]["alef/alef_hand_10000.png"] = hashlib.sha256(b"image 10000 of a larger run").hexdigest()
    manifest.write_text(json.dumps(recorded))
    generate_letters.generate(tmp_path, per_class=1, seed=2, classes=("alef",), progress=False)
    assert not ten_thousandth.exists() and len(list((tmp_path / "alef").glob("*.png"))) == 1


@pytest.mark.parametrize("old_manifest", [False, True])
def test_a_users_file_named_like_a_generated_one_is_kept_and_named(tmp_path, capsys, old_manifest):
    """alef/alef_scan_2024.png, a user's file, is not one of the generator's (alef_hand_0000.png): a second run with
    the same settings finds the data set there and names the file, and a run with other settings keeps it and does
    not count it among the images it replaces; it had been deleted, the data set rewritten. A manifest written before
    the manifest recorded its images' sources is read by its style and fonts."""
    data = tmp_path / "g"
    generate_letters.generate(data, per_class=2, seed=5, classes=CLASS_NAMES[:2], progress=False)
    manifest = data / generate_letters.MANIFEST
    if old_manifest:
        recorded = json.loads(manifest.read_text())
        assert recorded.pop("sources") == ["hand"]
        manifest.write_text(json.dumps(recorded, indent=2))
    users = [data / "alef" / "alef_scan_2024.png", data / "alef" / "my_alef.png", data / "bet" / "bet_Noam_x_0001.png"]
    for path in users:
        path.write_bytes(b"a user's image")
    mtimes = {p: p.stat().st_mtime_ns for p in data.glob("*/*.png")}
    capsys.readouterr()
    generate_letters.generate(data, per_class=2, seed=5, classes=CLASS_NAMES[:2], progress=True)
    printed = capsys.readouterr().out
    assert "already holds this data set" in printed and "3 file(s) in the class folders" in printed
    assert "alef/alef_scan_2024.png" in printed and "bet/bet_Noam_x_0001.png" in printed
    assert {p: p.stat().st_mtime_ns for p in data.glob("*/*.png")} == mtimes
    generate_letters.generate(data, per_class=1, seed=5, classes=CLASS_NAMES[:2], progress=True)
    assert "strokes: 4 images) with 1 per class" in capsys.readouterr().out
    assert all(path.read_bytes() == b"a user's image" for path in users)
    assert len(list(data.glob("*/*_hand_*.png"))) == 2


@pytest.mark.parametrize("per_class, seed", [(0, 1), (1, -1), (1.5, 1), (2, "x")])
def test_bad_counts_and_seeds_fail_before_touching_the_folder(tmp_path, per_class, seed):
    generate_letters.generate(tmp_path, per_class=1, seed=1, classes=CLASS_NAMES[:1], progress=False)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError):
        generate_letters.generate(tmp_path, per_class=per_class, seed=seed, classes=CLASS_NAMES[:1], progress=False)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    proc = subprocess.run([sys.executable, "-m", "pipeline.generate_letters", "--out", str(tmp_path), "--seed", "-1"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "--seed must not be negative" in proc.stderr


def test_an_interrupted_run_is_redone_not_refused(tmp_path):
    classes = CLASS_NAMES[:2]
    generate_letters.generate(tmp_path, per_class=2, seed=1, classes=classes, progress=False)
    manifest = tmp_path / generate_letters.MANIFEST
    version = f'"version": {generate_letters.GENERATOR_VERSION}'
    assert version in manifest.read_text()
    manifest.write_text(manifest.read_text().replace(version, version + ', "incomplete": true'))
    next((tmp_path / "bet").glob("*.png")).unlink()
    result = generate_letters.generate(tmp_path, per_class=2, seed=1, classes=classes, progress=False)
    assert "incomplete" not in result and len(list((tmp_path / "bet").glob("*.png"))) == 2


def test_an_interrupted_generation_says_so_and_is_not_taken_for_data(tmp_path):
    """Ctrl-C or SIGTERM mid-way: one line (no traceback), and the folder, some classes missing, is refused by the
    pipeline's layout check until the same command finishes it."""
    import os
    import signal
    import time

    from components.image_example_gen import describe_layout_problem
    out = tmp_path / "letters"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.generate_letters", "--out", str(out), "--per-class",
                             "200", "--seed", "3"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob("alef/*.png")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.rstrip("\n").splitlines()[-1].startswith("generate: interrupted; "), err[-300:]   # the last line
    assert not (out / "tav").exists() or len(os.listdir(out / "tav")) < 200
    problem = describe_layout_problem(str(out))
    assert problem and "generation did not finish" in problem and "per class 200, seed 3" in problem


@pytest.mark.parametrize("second_style", ["fonts", "strokes"])
def test_a_second_generation_in_the_folder_waits_for_the_first(tmp_path, monkeypatch, capsys, second_style):
    """Two generations in one folder at once (two pipelines sharing a data root, or a manual run beside one): the
    second waits for the first to end, then finds the same data set there or replaces it whole; both had written
    at once, leaving classes of the one style, of the other, or of both under a manifest saying complete."""
    import threading
    import time

    from pipeline import handwriting
    classes, first_started, first_go, results = CLASS_NAMES[:3], threading.Event(), threading.Event(), {}
    real_write = handwriting.write_letter

    def write_letter(*args):   # the first generation stops at its first image until told to go on
        if threading.current_thread().name == "first" and not first_started.is_set():
            first_started.set()
            assert first_go.wait(120)
        return real_write(*args)

    monkeypatch.setattr(handwriting, "write_letter", write_letter)

    def run(name, style, progress):
        results[name] = generate_letters.generate(tmp_path, per_class=2, seed=1, classes=classes,
                                                  progress=progress, style=style)

    first = threading.Thread(target=run, args=("first", "strokes", False), name="first")
    first.start()
    assert first_started.wait(120)
    second = threading.Thread(target=run, args=("second", second_style, True), name="second")
    second.start()
    printed, deadline = "", time.monotonic() + 120   # until the second waits (or, not waiting, has written)
    while second.is_alive() and "waiting for another generation" not in printed and time.monotonic() < deadline:
        time.sleep(0.01)
        printed += capsys.readouterr().out
    first_go.set()
    first.join()
    second.join()
    printed += capsys.readouterr().out
    assert results["first"]["style"] == "strokes" and results["second"]["style"] == second_style
    manifest = json.loads((tmp_path / generate_letters.MANIFEST).read_text())
    assert manifest == results["second"]
    for name in classes:
        files = [p.name for p in (tmp_path / name).iterdir()]
        assert len(files) == 2 and all(("_hand_" in f) == (second_style == "strokes") for f in files), files
    assert f"waiting for another generation in {tmp_path}" in printed
    if second_style == "strokes":
        assert "already holds this data set" in printed


def test_the_help_says_what_the_generator_promises(capsys):
    """letters-generate --help (which the README points to) says it is deterministic and never replaces what it
    did not write, and which variables set its defaults."""
    with pytest.raises(SystemExit):
        generate_letters.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "byte-identical" in out and "It never replaces files it did not write" in out
    assert "LETTERS_DATA_ROOT" in out and "LETTERS_GENERATE_PER_CLASS" in out


def test_writers_are_made_as_their_images_need_them(tmp_path, monkeypatch):
    """A huge --per-class starts writing at once: writer i is made for image i, not every writer first."""
    from pipeline import handwriting
    made, written = [], []
    real_sample, real_write = handwriting.sample_writer, handwriting.write_letter
    monkeypatch.setattr(handwriting, "sample_writer", lambda *a: made.append(len(written)) or real_sample(*a))
    monkeypatch.setattr(handwriting, "write_letter", lambda *a: written.append(1) or real_write(*a))
    generate_letters.generate(tmp_path, per_class=3, seed=1, classes=CLASS_NAMES[:1], progress=False)
    assert made == [0, 1, 2]   # each writer made just before its image, none ahead


@pytest.mark.parametrize("out_flag, env, named", [
    (["--out", "gs://my-bucket/letters"], {}, "--out gs://my-bucket/letters"),
    ([], {"LETTERS_DATA_ROOT": "gs://my-bucket/data"}, "LETTERS_DATA_ROOT (the default --out) gs://my-bucket/data")])
def test_a_bucket_is_refused_as_the_output_folder(tmp_path, monkeypatch, out_flag, env, named):
    """The letters are written to a local folder, copied to a bucket after: a gs:// --out (or LETTERS_DATA_ROOT) is a
    usage error naming what gave it, where a relative gs:/… folder had been made where the command ran."""
    import os
    proc = subprocess.run([sys.executable, "-m", "pipeline.generate_letters", *out_flag, "--per-class", "1"],
                          capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    assert proc.returncode == 2 and f"error: {named}: the output is written to a local folder, not a URL" in proc.stderr
    assert "gsutil -m rsync -r" in proc.stderr and list(tmp_path.iterdir()) == []
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="written to a local folder, not a URL"):
        generate_letters.generate("gs://my-bucket/letters", per_class=1, seed=1, classes=CLASS_NAMES[:1],
                                  progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_or_altered_data_set_is_written_again_not_taken_for_complete(tmp_path, capsys):
    """A second run with the same settings checks the images against the digest the manifest records: an image
    emptied (as a crash can leave an unsynced one) or replaced by another class's has the data set written again,
    and a file it did not write in a class folder is kept and named; it had said the folder held the data set."""
    classes, data = CLASS_NAMES[:3], tmp_path / "gv"
    generate_letters.generate(data, per_class=2, seed=5, classes=classes, progress=False)
    written = {p.relative_to(data): p.read_bytes() for p in data.glob("*/*.png")}
    (data / "alef" / "alef_hand_0000.png").write_bytes(b"")
    (data / "gimel" / "gimel_hand_0001.png").write_bytes((data / "bet" / "bet_hand_0000.png").read_bytes())
    (data / "alef" / "my_extra.png").write_bytes(b"a user's image")
    capsys.readouterr()
    generate_letters.generate(data, per_class=2, seed=5, classes=classes, progress=True)
    printed = capsys.readouterr().out
    assert f"generate: {data} no longer holds the data set generated.json describes (the images' sha256" in printed
    assert "already holds" not in printed and "1 file(s) in the class folders" in printed
    assert "alef/my_extra.png" in printed and (data / "alef" / "my_extra.png").read_bytes() == b"a user's image"
    assert {p.relative_to(data): p.read_bytes() for p in data.glob("*/*.png") if p.name != "my_extra.png"} == written

    mtimes = {p: p.stat().st_mtime_ns for p in data.glob("*/*.png")}
    generate_letters.generate(data, per_class=2, seed=5, classes=classes, progress=True)
    printed = capsys.readouterr().out
    assert "already holds this data set" in printed and "alef/my_extra.png" in printed
    assert {p: p.stat().st_mtime_ns for p in data.glob("*/*.png")} == mtimes
    (data / "bet" / "bet_hand_0001.png").unlink()
    generate_letters.generate(data, per_class=2, seed=5, classes=classes, progress=True)
    assert "bet holds 1 images named as it names them, not the 2 it wrote" in capsys.readouterr().out
    assert {p.relative_to(data): p.read_bytes() for p in data.glob("*/*.png") if p.name != "my_extra.png"} == written


def test_the_images_are_synced_before_the_manifest_says_they_are_complete(tmp_path, monkeypatch):
    """A crash after the manifest says the data set is complete cannot leave an image empty: the images' filesystem
    is synced first."""
    manifest, synced = tmp_path / generate_letters.MANIFEST, []
    monkeypatch.setattr(generate_letters, "sync_filesystem",
                        lambda path: synced.append((path, json.loads(manifest.read_text()).get("incomplete"))))
    generate_letters.generate(tmp_path, per_class=1, seed=1, classes=CLASS_NAMES[:2], progress=False)
    assert synced == [(str(tmp_path), True)] and "incomplete" not in json.loads(manifest.read_text())


def test_an_interrupt_while_waiting_for_another_generation_says_this_run_wrote_nothing(tmp_path):
    """Ctrl-C or SIGTERM while another generation holds the folder's lock: this run wrote nothing, and the other
    goes on; it had said the folder was unfinished and to run the command again."""
    import signal

    from core.files import exclusive
    out = tmp_path / "letters"
    out.mkdir()
    with exclusive(str(out / generate_letters.LOCK)):   # another generation's
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.generate_letters", "--out", str(out), "--per-class",
                                 "1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = ""
        while "waiting for another generation" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.rstrip("\n").splitlines()[-1] == (f"generate: interrupted while waiting for another generation in "
                                                 f"{out} to finish: this run wrote nothing there (the other one "
                                                 "goes on)")
    assert [p.name for p in out.iterdir()] == [generate_letters.LOCK]


def test_an_interrupt_once_the_data_set_is_complete_says_it_is(tmp_path, monkeypatch, capsys):
    """An interrupt after the manifest saying the data set is complete was written (while its folder is synced) says
    the data set is complete; it had said it was unfinished."""
    from core import files
    out, real_fsync_dir = tmp_path / "letters", files.fsync_dir

    def fsync_dir(path):
        real_fsync_dir(path)
        manifest = out / generate_letters.MANIFEST
        if path == str(out) and manifest.exists() and "incomplete" not in json.loads(manifest.read_text()):
            raise KeyboardInterrupt

    monkeypatch.setattr(files, "fsync_dir", fsync_dir)
    assert generate_letters.main(["--out", str(out), "--per-class", "1", "--seed", "2"]) == 130
    assert capsys.readouterr().err.rstrip("\n").splitlines()[-1] == (
        f"generate: interrupted once {out} was complete: its data set is all there (generated.json says so)")
    monkeypatch.setattr(files, "fsync_dir", real_fsync_dir)
    assert generate_letters.main(["--out", str(out), "--per-class", "1", "--seed", "2"]) == 0
    assert "already holds this data set" in capsys.readouterr().out


def test_a_run_with_other_settings_says_which_data_set_it_replaces(tmp_path, capsys):
    """letters-generate --per-class 2 on a folder holding an earlier data set of 3 per class says, before deleting
    them, which data set it replaces (its settings and image count) and with what; it had replaced it without a word."""
    classes, data = CLASS_NAMES[:3], tmp_path / "g"
    generate_letters.generate(data, per_class=3, seed=7, classes=classes, progress=False)
    generate_letters.generate(data, per_class=2, seed=7, classes=classes, progress=True)
    printed = capsys.readouterr().out
    assert (f"generate: replacing the data set in {data} (3 per class, seed 7, strokes: 9 images) with 2 per class, "
            "seed 7, strokes\n") in printed
    assert len(list(data.glob("*/*.png"))) == 6
    generate_letters.generate(data, per_class=2, seed=7, classes=classes, progress=True)
    assert "replacing" not in capsys.readouterr().out
    generate_letters.generate(data, per_class=2, seed=7, classes=classes[:2], progress=True)
    assert "(2 per class, seed 7, strokes: 4 images) with 2 per class, seed 7, strokes, other classes" in \
        capsys.readouterr().out


def read_only(monkeypatch):
    """The lock file of a generation cannot be made, as in a read-only folder."""
    def refused(path, wait=True, waiting=None):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
    monkeypatch.setattr(generate_letters, "exclusive", refused)


def test_a_complete_data_set_in_a_folder_that_cannot_be_written_is_used(tmp_path, monkeypatch, capsys):
    """A data set on a read-only file system, complete and of the settings asked for, is used as it is (no other
    generation can change it either), where its lock file could not be made: letters-generate had ended in
    error: [Errno 30] Read-only file system. Another data set is an error in one line, nothing written."""
    data = tmp_path / "ro"
    generate_letters.generate(data, per_class=2, seed=1, classes=CLASS_NAMES[:2], progress=False)
    (data / generate_letters.LOCK).unlink()
    files = {p: p.stat().st_mtime_ns for p in data.rglob("*")}
    read_only(monkeypatch)
    capsys.readouterr()
    assert generate_letters.generate(data, per_class=2, seed=1, classes=CLASS_NAMES[:2])["per_class"] == 2
    assert f"generate: {data} already holds this data set (2 per class, seed 1)" in capsys.readouterr().out
    with pytest.raises(OSError, match="Read-only"):
        generate_letters.generate(data, per_class=2, seed=2, classes=CLASS_NAMES[:2], progress=False)
    assert generate_letters.main(["--out", str(data), "--per-class", "1"]) == 2
    assert capsys.readouterr().err.endswith(f"generate: error: {data / generate_letters.LOCK}: Read-only file system\n")
    assert {p: p.stat().st_mtime_ns for p in data.rglob("*")} == files


def test_without_a_handwriting_font_the_strokes_are_an_error_before_anything_is_written(tmp_path, capsys):
    """With print faces only, the simulated writers have no strokes to learn: letters-generate and the default data
    say so alone, and no folder is made; they had warned that the data is generated without the handwriting fonts,
    then failed, leaving the folder made with its lock file in it. The fonts style is made from the print faces."""
    noam = next(f for f in generate_letters.find_faces() if f.name == "Noam")
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    (fonts / os.path.basename(noam.path)).symlink_to(noam.path)
    code = ("import sys, pipeline.generate_letters as g, local_runner; from core import configs; "
            "g.FONT_DIRS = (sys.argv[1],); code = g.main(['--out', sys.argv[2], '--per-class', '1']); "
            "print('exit', code, file=sys.stderr); "
            "local_runner.ensure_default_data(configs.Config(data_root=sys.argv[3]))")
    proc = subprocess.run([sys.executable, "-c", code, str(fonts), str(tmp_path / "out"), str(tmp_path / "d")],
                          capture_output=True, text=True, cwd=ROOT)
    assert "generate: error: no handwriting-like font" not in proc.stderr   # said once, before the folder
    assert "generate: no handwriting-like font (KtavYadCLM-MediumItalic" in proc.stderr and "exit 2" in proc.stderr
    assert "NoHebrewFontError: no handwriting-like font" in proc.stderr and "warning" not in proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "d").exists()
    faces = generate_letters.find_faces([str(fonts)])
    with pytest.raises(generate_letters.NoHebrewFontError, match="no handwriting-like font"):
        generate_letters.generate(tmp_path / "g", 1, 1, faces, classes=CLASS_NAMES[:1], progress=False)
    assert not (tmp_path / "g").exists()
    generate_letters.generate(tmp_path / "g", 1, 1, faces, classes=CLASS_NAMES[:1], progress=False, style="fonts")
    assert [p.name for p in (tmp_path / "g" / "alef").iterdir()] == ["alef_Noam_0000.png"]


def test_a_users_copy_of_another_data_sets_image_is_kept_and_named(tmp_path, capsys):
    """alef_hand_0002.png and alef_hand_0003.png copied from a larger data set into one of 2 per class are named as
    the generator names its images, but its manifest does not record them: a run with the same settings finds its
    data set there and names them, and one with other settings keeps them; they had been taken for damage and
    deleted with the data set written again. The images of a larger data set it wrote itself are still replaced."""
    classes, data, other = CLASS_NAMES[:2], tmp_path / "m1", tmp_path / "m2"
    generate_letters.generate(data, per_class=2, seed=1, classes=classes, progress=False)
    generate_letters.generate(other, per_class=4, seed=2, classes=classes, progress=False)
    copies = [data / "alef" / f"alef_hand_000{i}.png" for i in (2, 3)]
    for copy in copies:
        copy.write_bytes((other / "alef" / copy.name).read_bytes())
    mtimes = {p: p.stat().st_mtime_ns for p in data.glob("*/*.png")}
    capsys.readouterr()
    generate_letters.generate(data, per_class=2, seed=1, classes=classes, progress=True)
    printed = capsys.readouterr().out
    assert "already holds this data set" in printed and "no longer holds" not in printed
    assert ("2 file(s) in the class folders of" in printed and "alef/alef_hand_0002.png, alef/alef_hand_0003.png"
            in printed)
    assert {p: p.stat().st_mtime_ns for p in data.glob("*/*.png")} == mtimes
    generate_letters.generate(data, per_class=1, seed=3, classes=classes, progress=True)
    printed = capsys.readouterr().out
    assert "strokes: 4 images) with 1 per class" in printed and "alef/alef_hand_0003.png" in printed
    assert [copy.read_bytes() for copy in copies] == [(other / "alef" / c.name).read_bytes() for c in copies]
    assert sorted(p.name for p in (data / "bet").iterdir()) == ["bet_hand_0000.png"]

    generate_letters.generate(other, per_class=2, seed=2, classes=classes, progress=True)   # its own 4: replaced
    assert "strokes: 8 images) with 2 per class" in capsys.readouterr().out
    assert sorted(p.name for p in (other / "alef").iterdir()) == ["alef_hand_0000.png", "alef_hand_0001.png"]


def test_the_note_names_only_the_files_the_pipeline_reads(tmp_path, capsys):
    """A hidden file or a folder in a class folder is not read by the ExampleGen: the note of the files the generator
    did not write leaves them out (it had said a .DS_Store and a folder were trained on with its images)."""
    data = tmp_path / "g"
    generate_letters.generate(data, per_class=1, seed=1, classes=CLASS_NAMES[:3], progress=False)
    (data / "alef" / ".DS_Store").write_bytes(b"Finder")
    (data / "bet" / "readme.txt").write_text("notes")
    (data / "gimel" / "sub").mkdir()
    (data / "gimel" / "mine.png").write_bytes(b"a user's image")
    capsys.readouterr()
    generate_letters.generate(data, per_class=1, seed=1, classes=CLASS_NAMES[:3], progress=True)
    printed = capsys.readouterr().out
    assert (f"generate: note: 2 file(s) in the class folders of {data} were not written by this generator and are "
            "read with its images (trained on when they are images): bet/readme.txt, gimel/mine.png\n") in printed
