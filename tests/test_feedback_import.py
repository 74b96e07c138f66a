"""letters-feedback import: letters one already has, stored as labelled feedback, each once, bad files reported."""
import dataclasses
import json
import re

import pytest

from core import feedback_cli
from core.feedback import FeedbackStore, export_feedback
from core.feedback_import import import_folder
from tests.conftest import letter_image, noise_rows_webp, png_bytes
from tests.support import faults


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "mine"
    for name, sizes in (("alef", (30, 34)), ("shin", (40,))):
        (root / name).mkdir(parents=True)
        for i, size in enumerate(sizes):
            (root / name / f"{i}.png").write_bytes(png_bytes(letter_image(size, 44, seed=i)))
    (root / "shin" / "photo.jpg").write_bytes(png_bytes(letter_image(36, 44, "RGB"), "JPEG"))
    (root / "shin" / "broken.png").write_bytes(png_bytes(letter_image(30, 30))[:60])
    (root / "shin" / "more").mkdir()
    (root / "notes").mkdir()
    (root / "notes" / "x.png").write_bytes(png_bytes(letter_image(30, 30)))
    (root / "readme.png").write_bytes(png_bytes(letter_image(30, 30)))
    return root


def stored(store_dir):
    store = FeedbackStore(store_dir)
    try:
        return sorted((r.true_label, r.image_format, r.predicted_label, r.model_version,
                       (store_dir / r.image_path).read_bytes()) for r in store.records())
    finally:
        store.close()


def test_import_stores_each_usable_image_with_its_class_and_reports_the_rest(folder, tmp_path):
    summary = import_folder(tmp_path / "store", folder)
    assert summary.imported == 4 and summary.already_present == 0
    assert {reason: len(files) for reason, files in summary.skipped.items()} == {
        "truncated_or_corrupt": 1, "nested_folder": 1, "unknown_class_folder": 1, "not_in_a_class_folder": 1}
    assert summary.skipped["unknown_class_folder"][0].startswith("notes/x.png: 'notes' is not a class folder")
    assert summary.per_class["alef"] == 2 and summary.per_class["shin"] == 2 and summary.per_class["bet"] == 0
    rows = stored(tmp_path / "store")
    assert [(label, fmt) for label, fmt, *_ in rows] == [("alef", "PNG"), ("alef", "PNG"), ("shin", "JPEG"),
                                                         ("shin", "PNG")]
    assert all(predicted is None and version is None for _, _, predicted, version, _ in rows)  # no model answered
    originals = {(p.parent.name, p.read_bytes()) for p in folder.glob("*/*") if p.name != "broken.png"
                 and p.parent.name != "notes" and p.is_file()}
    assert {(label, data) for label, _, _, _, data in rows} == originals       # the bytes as they were


def test_importing_again_adds_nothing_twice_and_new_images_are_added(folder, tmp_path):
    import_folder(tmp_path / "store", folder)
    again = import_folder(tmp_path / "store", folder)
    assert again.imported == 0 and again.already_present == 4
    (folder / "alef" / "new.png").write_bytes(png_bytes(letter_image(50, 44, seed=9)))
    (folder / "bet").mkdir()
    (folder / "bet" / "0.png").write_bytes((folder / "alef" / "0.png").read_bytes())   # same bytes, other class
    third = import_folder(tmp_path / "store", folder)
    assert third.imported == 1 and third.already_present == 4           # one label per image, as the web's
    [conflict] = third.skipped["conflicting_label"]
    assert re.fullmatch(r"bet/0\.png: this image is already stored as alef \(([0-9a-f]{8})\); a second label for it "
                        r"is not stored \(if bet is right: letters-feedback --feedback-dir "
                        + re.escape(str(tmp_path / "store")) + r" relabel \1 bet\)", conflict)
    assert len(stored(tmp_path / "store")) == 5


def test_importing_again_restores_a_stored_image_lost_or_rotten_since(folder, tmp_path, capsys):
    """A stored image deleted or rotten since had been counted as already there by every import, and skipped by
    every pipeline run: importing its file again writes it back, and says so."""
    import_folder(tmp_path / "store", folder)
    store = FeedbackStore(tmp_path / "store")
    gone, rotten = [r for r in store.records() if r.true_label == "alef"]
    store.close()
    (tmp_path / "store" / gone.image_path).unlink()
    (tmp_path / "store" / rotten.image_path).write_bytes(b"rotten")
    assert feedback_cli.main(["--feedback-dir", str(tmp_path / "store"), "import", str(folder)]) == 0
    assert "(4 already in the store, 2 of them restored: their stored image was gone or corrupt, 4 skipped)" \
        in capsys.readouterr().out
    again = import_folder(tmp_path / "store", folder)
    assert (again.imported, again.already_present, again.restored) == (0, 4, 0)
    summary = export_feedback(tmp_path / "store", tmp_path / "out")
    assert (summary.exported, summary.missing_images, summary.corrupt_images) == (4, 0, 0)


def test_a_stored_picture_saved_again_is_already_there_or_a_conflict(folder, tmp_path):
    """The same picture in another file (a PNG compressed again, a BMP copy) had been imported as a new letter,
    under another class too, and trained on under both: it is judged by its pixels, as the ExampleGen judges."""
    from PIL import Image
    import_folder(tmp_path / "store", folder)
    picture = Image.open(folder / "alef" / "0.png")
    (folder / "bet").mkdir()
    (folder / "bet" / "0_again.png").write_bytes(png_bytes(picture, compress_level=9))
    (folder / "alef" / "0_copy.bmp").write_bytes(png_bytes(picture, "BMP"))
    (folder / "alef" / "0_again.png").write_bytes(png_bytes(picture, compress_level=1))
    again = import_folder(tmp_path / "store", folder)
    assert again.imported == 0 and again.already_present == 6
    [conflict] = again.skipped["conflicting_label"]
    assert conflict.startswith("bet/0_again.png: this image is already stored as alef (") and "relabel" in conflict
    assert len(stored(tmp_path / "store")) == 4


def test_a_stored_row_without_a_pixel_digest_is_already_there_not_imported(folder, tmp_path):
    """A row whose image could not be read when the store was upgraded has no pixel digest yet: the store matches
    it by its bytes, and the import had counted its copy as imported while nothing was added."""
    import sqlite3

    from core.feedback import DB_FILE, read_records
    import_folder(tmp_path / "store", folder)
    records = read_records(tmp_path / "store")
    (tmp_path / "store" / records[0].image_path).unlink()        # its image unreadable: no digest is made again
    with sqlite3.connect(tmp_path / "store" / DB_FILE) as conn:
        conn.execute("UPDATE feedback SET pixel_digest = NULL WHERE id = ?", (records[0].id,))
    conn.close()
    again = import_folder(tmp_path / "store", folder)
    assert (again.imported, again.already_present) == (0, len(records))
    assert len(read_records(tmp_path / "store")) == len(records)


def test_an_export_imported_back_adds_nothing_even_for_a_jpeg_row(tmp_path):
    """Export writes every row as <label>/<id>.png, a JPEG row's too: its bytes are new, its id is not."""
    from tests.conftest import letter_image, png_bytes
    store = FeedbackStore(tmp_path / "store")
    store.add(png_bytes(letter_image(30, 30, "RGB"), "JPEG"), "JPEG", "bet")
    store.add(png_bytes(letter_image(30, 30)), "PNG", "alef")
    store.close()
    export_feedback(tmp_path / "store", tmp_path / "export")
    summary = import_folder(tmp_path / "store", tmp_path / "export")
    assert (summary.imported, summary.already_present) == (0, 2)
    assert len(FeedbackStore(tmp_path / "store").records()) == 2
    # an exported letter redrawn in place is a new letter, whatever its name
    (edited,) = (tmp_path / "export" / "alef").iterdir()
    edited.write_bytes(png_bytes(letter_image(40, 22)))
    summary = import_folder(tmp_path / "store", tmp_path / "export")
    assert (summary.imported, summary.already_present) == (1, 1)


def test_imported_letters_reach_the_pipelines_export(folder, tmp_path):
    import_folder(tmp_path / "store", folder)
    summary = export_feedback(tmp_path / "store", tmp_path / "export")
    assert summary.exported == 4 and summary.per_class["alef"] == 2 and summary.per_class["shin"] == 2
    exported = sorted(p.parent.name for p in (tmp_path / "export").glob("*/*.png"))
    assert exported == ["alef", "alef", "shin", "shin"]


def test_the_command_imports_and_says_what_comes_next(folder, tmp_path, capsys):
    store = tmp_path / "store"
    assert feedback_cli.main(["--feedback-dir", str(store), "import", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"imported 4 image(s) from {folder} (0 already in the store, 4 skipped)" in out
    assert "skipped 1 × truncated_or_corrupt" in out and "shin/broken.png" in out
    # another store than make retrain's: the command that trains on it, not make retrain alone
    assert f"python local_runner.py --feedback-dir {store} (or LETTERS_FEEDBACK_DIR={store} make retrain)" in out
    assert feedback_cli.main(["--feedback-dir", str(store), "stats"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["records"], stats["confirmed"], stats["corrected"], stats["without_answer"]) == (4, 0, 0, 4)


def test_the_next_runs_command_quotes_a_store_path_the_shell_would_split(folder, tmp_path, capsys):
    """A store path with a space or a quote had been printed as it is, and the command, pasted, named another
    folder (or no closing quote)."""
    import shlex

    from core.feedback import read_records
    store = tmp_path / "ק ü 'q'" / "store"
    assert feedback_cli.main(["--feedback-dir", str(store), "import", str(folder)]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    run, make = line.split(": ", 1)[1].split(" (or ")
    assert shlex.split(run) == ["python", "local_runner.py", "--feedback-dir", str(store)]
    assert shlex.split(make.rstrip(")")) == [f"LETTERS_FEEDBACK_DIR={store}", "make", "retrain"]
    assert feedback_cli.main(["--feedback-dir", str(store), "export", "--out", str(tmp_path / "out")]) == 0
    run = capsys.readouterr().out.splitlines()[-1].split(": ", 1)[1]
    assert shlex.split(run) == ["python", "local_runner.py", "--feedback-dir", str(store)]
    record_id = read_records(store)[0].id
    assert feedback_cli.main(["--feedback-dir", str(store), "relabel", record_id, "bet"]) == 0
    run = capsys.readouterr().out.splitlines()[-1].split(" (", 1)[1].split(");")[0]
    assert shlex.split(run) == ["python", "local_runner.py", "--feedback-dir", str(store)]


def test_a_tilde_after_the_equals_sign_names_the_home_folder(folder, tmp_path, monkeypatch, capsys):
    """--feedback-dir=~/store (no shell expands ~ after =) had written ./~/store, then advised --feedback-dir
    ~/store, which the shell expands: another store."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert feedback_cli.main(["--feedback-dir=~/store", "import", str(folder)]) == 0
    store = tmp_path / "home" / "store"
    assert f"--feedback-dir {store} " in capsys.readouterr().out and len(stored(store)) == 4
    assert feedback_cli.main(["--feedback-dir=~/store", "export", "--out=~/export"]) == 0
    assert len(list((tmp_path / "home" / "export").glob("*/*.png"))) == 4 and not (tmp_path / "~").exists()


def test_the_store_may_be_named_after_the_command_too(folder, tmp_path, monkeypatch, capsys):
    """--feedback-dir after the command (letters-feedback stats --feedback-dir=~/fb, as web/README.md writes
    relabel's) had been refused: unrecognized arguments. Given both before and after, the one after is read."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LETTERS_FEEDBACK_DIR", str(tmp_path / "default"))
    assert feedback_cli.main(["import", str(folder), "--feedback-dir=~/store"]) == 0
    store = tmp_path / "home" / "store"
    assert f"--feedback-dir {store} " in capsys.readouterr().out and len(stored(store)) == 4
    assert feedback_cli.main(["stats", "--feedback-dir=~/store"]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 4
    assert feedback_cli.main(["--feedback-dir", str(tmp_path / "other"), "list", "--feedback-dir", str(store)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 5
    assert feedback_cli.main(["--feedback-dir", str(store), "stats"]) == 0   # before it, as ever
    assert json.loads(capsys.readouterr().out)["records"] == 4
    assert feedback_cli.main(["stats"]) == 2   # neither: the default store, none there
    assert f"no feedback store at {tmp_path / 'default'}" in capsys.readouterr().err


@pytest.mark.parametrize("make, message", [
    (lambda root: (root / "x.png").write_bytes(b"x"), "no file in a class folder"),
    (lambda root: None, "no file in a class folder"),
])
def test_a_folder_without_class_folders_is_refused_and_creates_no_store(tmp_path, capsys, make, message):
    root = tmp_path / "flat"
    root.mkdir()
    make(root)
    assert feedback_cli.main(["--feedback-dir", str(tmp_path / "store"), "import", str(root)]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "store").exists()
    assert feedback_cli.main(["--feedback-dir", str(tmp_path / "store"), "import", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err and not (tmp_path / "store").exists()


def test_an_empty_folder_name_is_refused_as_exports_is(tmp_path, monkeypatch, capsys):
    """import "" had imported the current folder, where export --out "" is refused."""
    monkeypatch.chdir(tmp_path)
    for args in (["import", ""], ["export", "--out", ""]):
        with pytest.raises(SystemExit) as stopped:
            feedback_cli.main(["--feedback-dir", str(tmp_path / "store"), *args])
        assert stopped.value.code == 2
        assert "an empty path names nothing (give . for the current folder)" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


def test_an_unfinished_generation_is_refused_and_creates_no_store(folder, tmp_path, capsys):
    """An interrupted letters-generate (its manifest says incomplete) is not data: the pipeline refuses it, and so
    does the import that would otherwise store its half for the next run."""
    (folder / "generated.json").write_text('{"per_class": 30, "seed": 1, "style": "strokes", "incomplete": true}')
    assert feedback_cli.main(["--feedback-dir", str(tmp_path / "store"), "import", str(folder)]) == 2
    assert "generation did not finish" in capsys.readouterr().err and not (tmp_path / "store").exists()


def test_a_folder_of_unusable_files_only_is_an_error(tmp_path, capsys):
    root = tmp_path / "bad"
    (root / "alef").mkdir(parents=True)
    (root / "alef" / "a.png").write_bytes(b"not an image")
    assert feedback_cli.main(["--feedback-dir", str(tmp_path / "store"), "import", str(root)]) == 2
    captured = capsys.readouterr()
    assert "skipped 1 × not_an_image" in captured.out and "every file was skipped" in captured.err
    assert stored(tmp_path / "store") == []



def test_an_oversize_file_is_skipped_as_the_pipeline_skips_it(folder, tmp_path):
    big = folder / "alef" / "big.png"
    big.write_bytes(png_bytes(letter_image(400, 400, seed=3)))
    summary = import_folder(tmp_path / "store", folder, max_bytes=big.stat().st_size - 1)
    assert summary.skipped["too_large"] == [f"alef/big.png: {big.stat().st_size} bytes is over the "
                                            f"{big.stat().st_size - 1}-byte limit"]
    assert summary.imported == 4


def test_a_file_whose_reencoding_is_oversize_is_skipped_not_stored_for_the_pipeline_to_skip(folder, tmp_path):
    """What is stored is the re-encoding; over the pipeline's file limit, the ExampleGen would skip it."""
    (folder / "alef" / "noise.webp").write_bytes(noise_rows_webp())
    summary = import_folder(tmp_path / "store", folder, max_bytes=100_000)
    assert [item.split(":")[0] for item in summary.skipped["too_large"]] == ["alef/noise.webp"]
    assert "as the PNG it is re-encoded to for the model, over the 100000-byte limit" in summary.skipped["too_large"][0]
    assert summary.imported == 4 and all(len(data) <= 100_000 for *_, data in stored(tmp_path / "store"))


def test_two_imports_at_once_store_each_image_once(folder, tmp_path):
    import threading
    FeedbackStore(tmp_path / "store").close()
    results = []
    threads = [threading.Thread(target=lambda: results.append(import_folder(tmp_path / "store", folder)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted((r.imported, r.already_present) for r in results) == [(0, 4), (4, 0)]
    assert len(stored(tmp_path / "store")) == 4


@pytest.mark.parametrize("command", ["import", "export"])
def test_a_command_waiting_for_another_import_or_export_says_so(folder, tmp_path, capsys, command):
    """A second import into one store (or export into one folder) had waited for the first's lock without a word,
    and looked hung; it says what it waits for and which process holds the lock, then does its work."""
    import os

    from core.feedback import EXPORT_LOCK
    from core.feedback_import import IMPORT_LOCK
    from tests.support.locks import held_by_another

    store, out = tmp_path / "store", tmp_path / "out"
    assert feedback_cli.main(["--feedback-dir", str(store), "import", str(folder)]) == 0
    capsys.readouterr()
    lock = store / IMPORT_LOCK if command == "import" else out / EXPORT_LOCK
    with held_by_another(lock, 0.5):
        args = ["import", str(folder)] if command == "import" else ["export", "--out", str(out)]
        assert feedback_cli.main(["--feedback-dir", str(store), *args]) == 0
    what = f"another import into the feedback store {store}" if command == "import" else f"another export into {out}"
    assert capsys.readouterr().err == f"waiting for {what} to end (process {os.getpid()} holds {lock})\n"


def test_hidden_files_are_not_imported(folder, tmp_path):
    (folder / "alef" / ".tmp-cut.part").write_bytes((folder / "alef" / "0.png").read_bytes())
    (folder / "alef" / "._0.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    summary = import_folder(tmp_path / "store", folder)
    assert summary.imported == 4 and len(summary.skipped["hidden_file"]) == 2


def test_hidden_names_beside_the_class_folders_are_left_out_as_the_example_gen_leaves_them(folder, tmp_path):
    """A ``.git`` beside the class folders (its files had been reported as in an unknown class folder) and a
    ``.DS_Store`` there are neither read nor reported; a hidden folder in a class folder is a hidden name too."""
    (folder / ".git" / "objects").mkdir(parents=True)
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "alef" / ".cache").mkdir()
    (folder / "alef" / ".cache" / "1.png").write_bytes((folder / "alef" / "0.png").read_bytes())
    summary = import_folder(tmp_path / "store", folder)
    assert summary.imported == 4
    assert {reason: len(files) for reason, files in summary.skipped.items()} == {
        "truncated_or_corrupt": 1, "nested_folder": 1, "unknown_class_folder": 1, "not_in_a_class_folder": 1,
        "hidden_file": 1}
    assert summary.skipped["hidden_file"] == ["alef/.cache: names starting with a dot are not read"]


def test_a_broken_link_is_skipped_as_a_link_to_a_missing_file(folder, tmp_path):
    """It had been skipped as ``FileNotFoundError: [Errno 2] No such file or directory``, of a file ls lists."""
    (folder / "alef" / "gone.png").symlink_to("../elsewhere/gone.png")
    summary = import_folder(tmp_path / "store", folder)
    assert summary.skipped["unreadable"] == [
        "alef/gone.png: a symbolic link to a missing file (../elsewhere/gone.png)"]


def test_an_export_round_trip_through_another_store_adds_nothing(tmp_path):
    """Store A's export imported into B, B's export imported back into A: A's JPEG row comes back as the PNG of a
    PNG under B's id, and is recognised by the PNG that A's export writes of it."""
    from tests.conftest import letter_image, png_bytes
    first = FeedbackStore(tmp_path / "a")
    first.add(png_bytes(letter_image(30, 30, "RGB"), "JPEG"), "JPEG", "bet")
    first.add(png_bytes(letter_image(30, 30)), "PNG", "alef")
    first.close()
    export_feedback(tmp_path / "a", tmp_path / "export-a")
    assert import_folder(tmp_path / "b", tmp_path / "export-a").imported == 2
    export_feedback(tmp_path / "b", tmp_path / "export-b")
    back = import_folder(tmp_path / "a", tmp_path / "export-b")
    assert (back.imported, back.already_present) == (0, 2)


def noisy_jpeg():
    """A 200x200 JPEG of noise (BytesIO): its PNG is several times its size."""
    import io

    import numpy as np
    from PIL import Image
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8), "RGB")
    buffer = io.BytesIO()
    noise.save(buffer, format="JPEG", quality=20)
    return buffer


def test_a_photo_whose_png_is_over_the_file_limit_is_exported_as_it_is(tmp_path):
    """A noisy JPEG's PNG can be several times its size: over the pipeline's file limit it would be skipped in
    training, so the export keeps the JPEG."""
    buffer = noisy_jpeg()
    store = FeedbackStore(tmp_path / "store")
    record = store.add(buffer.getvalue(), "JPEG", "shin")
    store.close()
    summary = export_feedback(tmp_path / "store", tmp_path / "out", max_file_bytes=3 * len(buffer.getvalue()))
    assert summary.exported == 1
    assert [p.name for p in (tmp_path / "out" / "shin").iterdir()] == [f"{record.id}.jpg"]
    assert (tmp_path / "out" / "shin" / f"{record.id}.jpg").read_bytes() == buffer.getvalue()
    again = export_feedback(tmp_path / "store", tmp_path / "out", prune=True, max_file_bytes=3 * len(buffer.getvalue()))
    assert (again.exported, again.already_present, again.removed) == (0, 1, 0)
    assert import_folder(tmp_path / "store", tmp_path / "out").already_present == 1
    # an export made before (or with a higher limit) left the PNG: the next export puts the photo in its place
    (tmp_path / "out" / "shin" / f"{record.id}.jpg").unlink()
    export_feedback(tmp_path / "store", tmp_path / "out", max_file_bytes=10 ** 9)
    assert [p.name for p in (tmp_path / "out" / "shin").iterdir()] == [f"{record.id}.png"]
    export_feedback(tmp_path / "store", tmp_path / "out", prune=True, max_file_bytes=3 * len(buffer.getvalue()))
    assert [p.name for p in (tmp_path / "out" / "shin").iterdir()] == [f"{record.id}.jpg"]


def test_the_commands_export_keeps_under_the_configured_file_limit(tmp_path, monkeypatch, capsys):
    """letters-feedback export reads LETTERS_MAX_FILE_BYTES as the pipeline does: it had written the PNG over the
    limit, which the ExampleGen fed that export (kubeflow_runner.py --feedback-root) then skips."""
    buffer = noisy_jpeg()
    store = FeedbackStore(tmp_path / "store")
    record = store.add(buffer.getvalue(), "JPEG", "shin")
    store.close()
    monkeypatch.setenv("LETTERS_MAX_FILE_BYTES", str(3 * len(buffer.getvalue())))
    assert feedback_cli.main(["--feedback-dir", str(tmp_path / "store"), "export", "--out", str(tmp_path / "o")]) == 0
    assert [p.name for p in (tmp_path / "o" / "shin").iterdir()] == [f"{record.id}.jpg"]


def test_an_export_an_os_error_stops_says_where_and_what_it_had_written(tmp_path, monkeypatch, capsys):
    """export had said a bare errno (error: [Errno 28] No space left on device; error: [Errno 17] File exists of a
    file as --out): the folder and the file are named, what was written before, and that exporting again finishes."""
    from core import feedback
    store = FeedbackStore(tmp_path / "store")
    for seed in range(3):
        store.add(png_bytes(letter_image(30, 44, seed=seed)), "PNG", "shin")
    store.close()
    out = tmp_path / "o"
    export = ["--feedback-dir", str(tmp_path / "store"), "export", "--out"]
    with monkeypatch.context() as patch:
        faults.disk_full_after_writes(patch, feedback, 1)
        assert feedback_cli.main([*export, str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot export the feedback store's images to {out}: [Errno 28] No space left on "
                          f"device: '{out / 'shin'}/") and err.count("\n") == 1
    assert err.endswith("(1 file(s) written before it stopped, 0 there already, each whole); letters-feedback export "
                        "again finishes it once the folder can be written (the files written are kept)\n")
    assert feedback_cli.main([*export, str(out)]) == 0
    assert "exported 2 new image(s)" in capsys.readouterr().out and len(list((out / "shin").iterdir())) == 3
    (tmp_path / "afile").write_text("")
    for where in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        assert feedback_cli.main([*export, str(where)]) == 2
        assert capsys.readouterr().err.startswith(f"error: cannot export the feedback store's images to {where}: "
                                                  f"[Errno 20] Not a directory")


def test_an_export_overwritten_under_another_file_limit_holds_one_file_per_row(tmp_path, monkeypatch, capsys):
    """export --overwrite after the file limit was raised had written the photo's PNG beside the JPEG an export
    under the lower limit wrote (exported 1 new image): whatever trained on the folder read the picture twice."""
    buffer = noisy_jpeg()
    store = FeedbackStore(tmp_path / "store")
    photo = store.add(buffer.getvalue(), "JPEG", "shin")
    letter = store.add(png_bytes(letter_image(30, 44)), "PNG", "alef")
    store.close()
    out = tmp_path / "o"

    def export(limit, *flags):
        monkeypatch.setenv("LETTERS_MAX_FILE_BYTES", str(limit))
        assert feedback_cli.main(["--feedback-dir", str(tmp_path / "store"), "export", "--out", str(out),
                                  *flags]) == 0
        return capsys.readouterr().out.splitlines()[0], sorted(p.name for p in out.glob("*/*"))
    low, high = 3 * len(buffer.getvalue()), 10 ** 8
    assert export(low) == (f"exported 2 new image(s) to {out} (0 already there, 0 missing, 0 corrupt)",
                           sorted([f"{photo.id}.jpg", f"{letter.id}.png"]))
    for limit, ext in ((high, "png"), (low, "jpg")):   # raised, then lowered again: the other extension each time
        assert export(limit, "--overwrite") == (
            f"exported 0 new image(s) to {out} (2 written again in the place of an earlier export's, 0 already "
            "there, 0 missing, 0 corrupt)", sorted([f"{photo.id}.{ext}", f"{letter.id}.png"]))
    from core.feedback import to_png
    (out / "shin" / f"{photo.id}.png").write_bytes(to_png(buffer.getvalue(), "JPEG"))   # left by code of before
    assert export(low)[1] == sorted([f"{photo.id}.jpg", f"{letter.id}.png"])   # the JPEG only, its PNG taken out


def test_a_runs_feedback_rewritten_under_another_file_limit_is_not_counted_new(tmp_path, capsys):
    """The pipeline's export of the store under a lowered file limit writes a photo's JPEG in the place of its PNG:
    the run had counted it a new user-labelled image."""
    import local_runner
    from core.configs import Config
    buffer = noisy_jpeg()
    store = FeedbackStore(tmp_path / "store")
    store.add(buffer.getvalue(), "JPEG", "shin")
    store.close()
    config = Config(feedback_dir=str(tmp_path / "store"), pipeline_root=str(tmp_path / "pipeline"),
                    max_file_bytes=10 ** 8)
    local_runner.export_feedback(config)
    assert "(1 new)" in capsys.readouterr().out
    local_runner.export_feedback(dataclasses.replace(config, max_file_bytes=3 * len(buffer.getvalue())))
    assert "Feedback: 1 user-labelled images from " in (line := capsys.readouterr().out)
    assert "(0 new; 1 written again in the other format under another file limit)" in line, line


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_a_reader_that_stops_reading_ends_each_command_quietly(folder, tmp_path, unbuffered):
    """letters-feedback stats | head: a reader gone before the output is written had ended each command in a
    BrokenPipeError traceback; it ends as Unix tools end (exit 141, 128 + SIGPIPE), saying nothing. relabel and
    remove had said 'error: [Errno 32] Broken pipe' and exited 2, their change made."""
    import os
    import subprocess
    import sys

    from core.feedback import read_records
    from tests.conftest import ROOT
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": unbuffered}

    def run(*command):
        proc = subprocess.run([sys.executable, "-m", "core.feedback_cli", "--feedback-dir", str(tmp_path / "store"),
                               *command], stdout=write, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                              timeout=120)
        assert (proc.returncode, proc.stderr) == (141, ""), command
    try:
        for command in (["import", str(folder)], ["stats"], ["export", "--out", str(tmp_path / "out")]):
            run(*command)
        assert len(stored(tmp_path / "store")) == 4   # (the work is done before the output)
        first, second, *rest = read_records(tmp_path / "store")
        run("relabel", first.id, "gimel")
        store = FeedbackStore(tmp_path / "store")   # rows enough that remove's lines fill more than stdout's buffer
        more = [store.add(png_bytes(letter_image(30, 44, seed=100 + i)), "PNG", "bet").id for i in range(150)]
        store.close()
        run("remove", second.id, *more)
    finally:
        os.close(write)
    assert [(r.id, r.true_label) for r in read_records(tmp_path / "store")] == [
        (first.id, "gimel"), *((r.id, r.true_label) for r in rest)]


def test_an_image_the_web_client_stores_meanwhile_under_another_label_is_a_conflict_not_the_end(folder, tmp_path,
                                                                                                 monkeypatch):
    """The labels are read once, at the start: a feedback stored meanwhile under another label had stopped the
    import with exit 2 and no summary, the rest of the folder not imported."""
    real_add, raced = FeedbackStore.add_once, []

    def racing(self, image, image_format, label, **kwargs):
        if not raced:
            raced.append(label)   # the web client, meanwhile: the same image, another label
            real_add(self, image, image_format, "bet" if label != "bet" else "gimel")
        return real_add(self, image, image_format, label, **kwargs)
    monkeypatch.setattr(FeedbackStore, "add_once", racing)
    summary = import_folder(tmp_path / "store", folder)
    assert summary.imported == 3 and len(summary.skipped["conflicting_label"]) == 1
    assert "is already stored as bet" in summary.skipped["conflicting_label"][0]


def test_stats_and_export_only_read_the_store(folder, tmp_path, monkeypatch, capsys):
    """They had opened it for writing (tables made, journal mode set): a store on a read-only mount could be
    neither counted nor exported."""
    import core.feedback
    import_folder(tmp_path / "store", folder)
    names = lambda: sorted(p.name for p in (tmp_path / "store").iterdir() if not p.name.endswith(("-wal", "-shm")))
    before = names()

    def no_writer(*args, **kwargs):
        raise AssertionError("opened for writing")
    monkeypatch.setattr(core.feedback.FeedbackStore, "__init__", no_writer)
    assert feedback_cli.main(["--feedback-dir", str(tmp_path / "store"), "stats"]) == 0
    assert json.loads(capsys.readouterr().out)["per_class"]["alef"] == 2
    assert feedback_cli.main(["--feedback-dir", str(tmp_path / "store"), "export", "--out", str(tmp_path / "o")]) == 0
    assert len(list((tmp_path / "o").rglob("*.png"))) == 4
    assert names() == before


def test_images_the_web_client_stores_meanwhile_under_the_same_label_are_already_there_not_imported(folder, tmp_path,
                                                                                                    monkeypatch):
    """The store returns the row already there for such an image: the import had counted each as imported
    ("imported 4 image(s)") while it added none."""
    from core.image_io import read_checked
    real_records = FeedbackStore.records

    def then_the_web_client_stores_them(self):
        records = real_records(self)   # the labels the import starts from; then the web client, meanwhile:
        web = FeedbackStore(self.root)
        for path in ("alef/0.png", "alef/1.png", "shin/0.png"):
            checked = read_checked(str(folder / path), 10 ** 7, 10 ** 7)
            web.add(checked.data, checked.data_format, path.split("/")[0], once=True)
        web.close()
        return records
    monkeypatch.setattr(FeedbackStore, "records", then_the_web_client_stores_them)
    summary = import_folder(tmp_path / "store", folder)
    assert (summary.imported, summary.already_present) == (1, 3)
    assert summary.per_class["alef"] == 2 and summary.per_class["shin"] == 2
    monkeypatch.undo()
    assert len(stored(tmp_path / "store")) == 4


def test_a_url_for_the_store_is_refused_and_nothing_is_written_in_the_current_folder(folder, tmp_path, monkeypatch,
                                                                                      capsys):
    """The store is SQLite on a local (or mounted) disk: --feedback-dir gs://… had been made absolute, a folder
    ./gs:/… made and filled, and the import said done."""
    from core.feedback import FeedbackStoreError, read_records
    monkeypatch.chdir(tmp_path)
    refusal = "the feedback store gs://my-bucket/feedback: it is an SQLite database in a folder on a local"
    for command, what in ((["import", str(folder)], "open"), (["stats"], "read"), (["list"], "read"),
                          (["export", "--out", str(tmp_path / "out")], "read"), (["remove", "1a2b"], "open")):
        with pytest.raises(SystemExit) as caught:   # a usage error, in the store's words: it had been "no feedback
            feedback_cli.main(["--feedback-dir", "gs://my-bucket/feedback", *command])   # store at gs://…"
        assert caught.value.code == 2
        assert f"letters-feedback: error: cannot {what} {refusal}" in capsys.readouterr().err, command
    monkeypatch.setenv("LETTERS_FEEDBACK_DIR", "gs://my-bucket/feedback")
    with pytest.raises(SystemExit):
        feedback_cli.main(["stats"])
    assert f"letters-feedback: error: cannot read {refusal}" in capsys.readouterr().err
    with pytest.raises(FeedbackStoreError, match="cannot read the feedback store gs://my-bucket/feedback: it is an"):
        read_records("gs://my-bucket/feedback")
    assert not (tmp_path / "gs:").exists()


def test_a_folder_spelling_a_class_otherwise_is_refused_as_the_pipeline_refuses_it(tmp_path, capsys):
    """A folder named as a class that has no folder (``Bet`` beside ``alef``): the pipeline refuses such a data root
    before it starts (core.labels.misnamed_problem); the import had stored alef's images and skipped Bet's, status
    0. It is refused in the same words, and nothing is stored."""
    from core.labels import misnamed_problem
    root = tmp_path / "mine"
    for name in ("Tsadi-Final", "alef", "Bet", "notes"):
        (root / name).mkdir(parents=True)
        (root / name / "a.png").write_bytes(png_bytes(letter_image(30, 30, seed=len(name))))
    assert feedback_cli.main(["--feedback-dir", str(tmp_path / "store"), "import", str(root)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {misnamed_problem(str(root), ['alef', 'Bet', 'Tsadi-Final', 'notes'])}\n"
    assert "'Bet' is not a class folder: did you mean 'bet'?" in err and \
        "'Tsadi-Final' is not a class folder: did you mean 'tsadi_final'?" in err and "notes" not in err
    assert not (tmp_path / "store").exists()
    (root / "Bet" / "a.png").unlink()
    (root / "Tsadi-Final" / "a.png").unlink()   # empty folders: nothing of theirs would be skipped
    summary = import_folder(tmp_path / "store", root)
    assert summary.imported == 1 and list(summary.skipped) == ["unknown_class_folder"]   # notes/a.png
    (root / "Tsadi-Final" / "a.png").write_bytes(png_bytes(letter_image(30, 30, seed=3)))
    (root / "alef" / "a.png").unlink()   # no class folder left: refused, the error naming the class meant
    with pytest.raises(ValueError, match=r"no file in a class folder .*; 'Tsadi-Final' is not a class folder: "
                                         r"did you mean 'tsadi_final'\?$"):
        import_folder(tmp_path / "store2", root)


def test_a_file_name_that_is_not_utf8_is_skipped_as_the_pipeline_skips_it(folder, tmp_path, capsys):
    """The pipeline skips such a file (name_not_utf8: components.image_example_gen.read_one); the import had stored
    it, for the next run to train on."""
    import os
    with open(os.path.join(os.fsencode(folder), b"alef", b"caf\xe9.png"), "wb") as out:
        out.write(png_bytes(letter_image(32, 44, seed=9)))
    summary = import_folder(tmp_path / "store", folder)
    assert summary.imported == 4 and summary.already_present == 0
    assert summary.skipped["name_not_utf8"] == [
        "alef/caf\\xe9.png: the file name is not UTF-8 (a zip from another system?): rename it"]
    assert feedback_cli.main(["--feedback-dir", str(tmp_path / "store2"), "import", str(folder)]) == 0
    assert "skipped 1 × name_not_utf8\n    alef/caf\\xe9.png: the file name" in capsys.readouterr().out


def test_a_stopped_import_is_one_line_saying_what_it_had_stored(folder, tmp_path, monkeypatch, capsys):
    """Ctrl-C had ended the import in a traceback (through the store's COMMIT), and never said that the images
    before it were stored: one line, status 130, the count of the rows stored (the one committed as the stop
    came among them)."""
    import signal

    real_add, added = FeedbackStore.add_once, []

    def stopped_at_the_third(self, *args, **kwargs):
        result = real_add(self, *args, **kwargs)
        added.append(result)
        if len(added) == 3:
            signal.raise_signal(signal.SIGINT)   # Ctrl-C, as the third row is committed
        return result
    monkeypatch.setattr(FeedbackStore, "add_once", stopped_at_the_third)
    assert feedback_cli.main(["--feedback-dir", str(tmp_path / "store"), "import", str(folder)]) == 130
    out, err = capsys.readouterr()
    assert out == "" and err == (f"interrupted: 3 image(s) of {folder} stored before the stop (0 already in the "
                                 "store, 2 skipped); the rest not looked at: import the folder again to store them "
                                 "(nothing is stored twice)\n")
    assert len(stored(tmp_path / "store")) == 3
    monkeypatch.undo()
    assert feedback_cli.main(["--feedback-dir", str(tmp_path / "store"), "import", str(folder)]) == 0
    assert "imported 1 image(s)" in capsys.readouterr().out and len(stored(tmp_path / "store")) == 4


def test_an_import_stopped_by_a_store_that_cannot_be_written_says_what_it_had_stored(folder, tmp_path, monkeypatch,
                                                                                      capsys):
    """A full disk had ended the import with the error alone, status 2, the rows stored before it unsaid."""
    from core.feedback import FeedbackStoreError
    real_add, calls = FeedbackStore.add_once, []

    def full_at_the_third(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise FeedbackStoreError(f"the feedback store {self.root} cannot be used: database or disk is full")
        return real_add(self, *args, **kwargs)
    monkeypatch.setattr(FeedbackStore, "add_once", full_at_the_third)
    assert feedback_cli.main(["--feedback-dir", str(tmp_path / "store"), "import", str(folder)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == [
        f"stopped by the error below: 2 image(s) of {folder} stored before it (0 already in the store, 2 skipped); "
        "the rest not looked at: import the folder again to store them (nothing is stored twice)",
        f"error: the feedback store {tmp_path / 'store'} cannot be used: database or disk is full"]
    assert len(stored(tmp_path / "store")) == 2


@pytest.mark.parametrize("command", ["export", "stats"])
def test_a_stop_of_the_other_commands_is_one_line(folder, tmp_path, monkeypatch, capsys, command):
    """Ctrl-C in an export (writing a file: atomic_output's fsync) had ended it in a traceback."""
    import signal

    import core.feedback
    assert feedback_cli.main(["--feedback-dir", str(tmp_path / "store"), "import", str(folder)]) == 0
    capsys.readouterr()
    stop = lambda *args, **kwargs: signal.raise_signal(signal.SIGTERM)   # noqa: E731  (a stopped job: as Ctrl-C)
    monkeypatch.setattr(core.feedback, "atomic_write", stop)
    monkeypatch.setattr(feedback_cli, "read_records", stop)
    args = ["export", "--out", str(tmp_path / "out")] if command == "export" else [command]
    assert feedback_cli.main(["--feedback-dir", str(tmp_path / "store"), *args]) == 130
    out, err = capsys.readouterr()
    assert out == "" and err == {
        "export": f"interrupted: {tmp_path / 'out'} holds what was exported before the stop, each file whole; "
                  "letters-feedback export again finishes it\n",
        "stats": "interrupted: nothing changed\n"}[command]
