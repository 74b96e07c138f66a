"""letters-feedback list, relabel and remove: a wrong label stored (a mis-click in the web client) is corrected or
removed, and the exports made before follow (the pipeline's and letters-feedback export's)."""
import os
import re
import shlex
import sqlite3
import uuid

import pytest

import core.feedback
from core import feedback_cli
from core.feedback import DB_FILE, FeedbackError, FeedbackStore, export_feedback, read_records
from core.feedback_import import import_folder
from tests.conftest import letter_image, png_bytes
from tests.support.schema_1 import empty_store, insert_as_schema_1, resaved


def letter(seed: int) -> bytes:
    return png_bytes(letter_image(30, 44, seed=seed))


def cli(store_dir, *args) -> int:
    return feedback_cli.main(["--feedback-dir", str(store_dir), *args])


def files(folder) -> list[str]:
    """The files of an export's class folders, as class/name."""
    return sorted(f"{path.parent.name}/{path.name}" for path in folder.glob("*/*"))


@pytest.fixture
def mis_click(tmp_path):
    """A store holding alef's image as bet, the web client's answer alef (the user clicked the wrong class), and
    a shin; their exports made before the correction (one as letters-feedback export, one as the pipeline's)."""
    store = FeedbackStore(tmp_path / "store")
    wrong = store.add(letter(1), "PNG", "bet", predicted_label="alef", probability=0.8, model_version=3,
                      route="stable", once=True)
    shin = store.add(letter(2), "PNG", "shin", once=True)
    store.close()
    export_feedback(tmp_path / "store", tmp_path / "export")
    export_feedback(tmp_path / "store", tmp_path / "pipeline", prune=True)
    return tmp_path / "store", wrong, shin


def test_a_wrong_label_is_relabelled_by_its_id_and_every_export_moves_its_image(mis_click, tmp_path, capsys):
    """The right label had been refused for good (409, import's conflicting_label) and no command changed a row:
    the pipeline trained on the wrong label for every run."""
    store_dir, wrong, shin = mis_click
    store = FeedbackStore(store_dir)
    with pytest.raises(FeedbackError, match=re.escape(f"if alef is right: letters-feedback --feedback-dir {store_dir} "
                                                      f"relabel {wrong.id[:8]} alef")):
        store.add(letter(1), "PNG", "alef", once=True)   # what the web client answers with 409
    store.close()
    assert cli(store_dir, "relabel", wrong.id[:8], "alef") == 0
    assert f"{wrong.id}: bet -> alef" in capsys.readouterr().out
    store = FeedbackStore(store_dir)
    relabelled = store.get(wrong.id)
    assert (relabelled.true_label, relabelled.confirmed) == ("alef", True)   # the model's answer was right
    assert store.add(letter(1), "PNG", "alef", once=True).id == wrong.id    # the right label: already there
    store.close()
    for folder, prune in ((tmp_path / "export", False), (tmp_path / "pipeline", True)):
        summary = export_feedback(store_dir, folder, prune=prune)
        # moved, not written again
        assert (summary.exported, summary.already_present, summary.moved, summary.removed) == (0, 2, 1, 0)
        assert files(folder) == [f"alef/{wrong.id}.png", f"shin/{shin.id}.png"]


def test_removed_rows_lose_their_image_and_leave_every_export(mis_click, tmp_path, capsys):
    store_dir, wrong, shin = mis_click
    (tmp_path / "export" / "bet" / f"{uuid.uuid4().hex}.png").write_bytes(letter(3))   # another store's export
    assert cli(store_dir, "remove", wrong.id[:8], wrong.id) == 0
    assert f"removed {wrong.id} (bet)" in capsys.readouterr().out
    assert not (store_dir / wrong.image_path).exists() and (store_dir / shin.image_path).exists()
    store = FeedbackStore(store_dir)
    assert [r.id for r in store.records()] == [shin.id]
    assert store.add(letter(1), "PNG", "alef", once=True).true_label == "alef"   # the right label is stored now
    store.close()
    assert export_feedback(store_dir, tmp_path / "export").removed == 1
    assert f"bet/{wrong.id}.png" not in files(tmp_path / "export") and len(files(tmp_path / "export")) == 3
    assert export_feedback(store_dir, tmp_path / "pipeline", prune=True).removed == 1
    assert f"bet/{wrong.id}.png" not in files(tmp_path / "pipeline")


def test_export_and_remove_say_which_files_were_moved_taken_out_or_gone(tmp_path, capsys):
    """After a relabel and two removals, export had said 2 file(s) of relabelled or removed rows taken out, the
    relabelled row's file (moved, not taken out) unsaid; remove had said "and its image" of an image gone already."""
    store = FeedbackStore(tmp_path / "store")
    rows = [store.add(letter(seed), "PNG", "bet", once=True) for seed in (1, 2, 3)]
    store.close()
    assert cli(tmp_path / "store", "export", "--out", str(tmp_path / "export")) == 0
    (tmp_path / "store" / rows[2].image_path).unlink()   # lost since
    capsys.readouterr()
    assert cli(tmp_path / "store", "relabel", rows[0].id, "alef") == 0
    assert cli(tmp_path / "store", "remove", rows[1].id, rows[2].id) == 0
    out = capsys.readouterr().out
    assert f"removed {rows[1].id} (bet) and its image\n" in out
    assert f"removed {rows[2].id} (bet); its image was gone already\n" in out
    assert cli(tmp_path / "store", "export", "--out", str(tmp_path / "export")) == 0
    assert ("; 1 file(s) of relabelled rows moved to their new class folder; 2 file(s) of relabelled or removed "
            "rows taken out)") in capsys.readouterr().out
    assert files(tmp_path / "export") == [f"alef/{rows[0].id}.png"]


def test_a_crash_after_the_rows_are_removed_leaves_only_an_orphan_image(mis_click, monkeypatch):
    """The rows go first: stopped before its image is removed, no row points at a missing image."""
    store_dir, wrong, shin = mis_click

    def crash(path):
        raise KeyboardInterrupt
    store = FeedbackStore(store_dir)
    monkeypatch.setattr(core.feedback.os, "unlink", crash)
    with pytest.raises(KeyboardInterrupt):
        store.remove([wrong.id])
    monkeypatch.undo()
    assert [r.id for r in store.records()] == [shin.id]
    assert all(os.path.exists(store.image_path(r)) for r in store.records())
    store.close()


def test_an_image_that_cannot_be_deleted_is_named_and_the_rows_removed_are_said(mis_click, monkeypatch, capsys):
    """An images folder the command cannot write to (the web client's, another user's) had ended remove with the
    error alone, status 2, no row said removed though both were, and the images after the first left undeleted."""
    store_dir, wrong, shin = mis_click
    real_unlink = os.unlink

    def read_only(path, *args, **kwargs):
        if os.path.basename(path).startswith(wrong.id):
            raise OSError(30, "Read-only file system", path)
        return real_unlink(path, *args, **kwargs)
    monkeypatch.setattr(core.feedback.os, "unlink", read_only)
    assert cli(store_dir, "remove", wrong.id, shin.id) == 2
    monkeypatch.undo()
    out, err = capsys.readouterr()
    assert out.splitlines()[:2] == [f"removed {wrong.id} (bet); its image not deleted",
                                    f"removed {shin.id} (shin) and its image"]
    assert err == (f"error: the image of {wrong.id} was not deleted: [Errno 30] Read-only file system: "
                   f"'{store_dir / wrong.image_path}' (its row is removed: nothing reads the image; delete it by "
                   "hand)\n")
    assert read_records(store_dir) == []
    assert (store_dir / wrong.image_path).exists() and not (store_dir / shin.image_path).exists()


def test_an_id_naming_no_row_or_several_changes_nothing(tmp_path, monkeypatch, capsys):
    ids = iter(["abcd0001" + "0" * 24, "abcd0002" + "0" * 24])
    monkeypatch.setattr(core.feedback.uuid, "uuid4", lambda: uuid.UUID(next(ids)))
    store = FeedbackStore(tmp_path / "store")
    first, second = store.add(letter(1), "PNG", "bet"), store.add(letter(2), "PNG", "gimel")
    store.close()
    monkeypatch.undo()
    capsys.readouterr()
    assert cli(tmp_path / "store", "remove", "abcd") == 2
    err = capsys.readouterr().err
    assert "'abcd' is the start of 2 feedback ids" in err
    assert f"{first.id} (bet)" in err and f"{second.id} (gimel)" in err
    assert cli(tmp_path / "store", "remove", "abcd0001", "abcd9") == 2        # one unknown: nothing removed
    assert "no feedback with id 'abcd9'" in capsys.readouterr().err
    assert cli(tmp_path / "store", "relabel", "abcd%", "alef") == 2          # (no wildcard reaches the query)
    with pytest.raises(SystemExit) as usage:
        cli(tmp_path / "store", "relabel", "abcd0001", "aleph")
    assert usage.value.code == 2 and "unknown label 'aleph'" in capsys.readouterr().err
    assert cli(tmp_path / "store", "relabel", "ABCD0002", "dalet") == 0      # (ids are hex: any case)
    store = FeedbackStore(tmp_path / "store")
    assert [(r.id, r.true_label) for r in store.records()] == [(first.id, "bet"), (second.id, "dalet")]
    assert all(os.path.exists(store.image_path(r)) for r in store.records())
    store.close()
    assert cli(tmp_path / "missing", "remove", "abcd0001") == 2 and not (tmp_path / "missing").exists()


def test_import_of_a_picture_stored_under_two_labels_as_a_third_names_both_rows_and_its_fix_leaves_one(tmp_path):
    """import's conflicting_label had named one row of such a picture (the last read): following it left the
    picture under two labels, both trained on, and the next import said 'already in the store'. It is judged as the
    web client's feedback judges it (add(once=True)): already there under either of its labels, whichever is read
    last; the import of it as alef had been a conflict."""
    store = FeedbackStore(tmp_path / "store")
    alef = store.add(letter(1), "PNG", "alef")
    bet = store.add(letter(1), "PNG", "bet")    # (without once: as a store of the earlier schema may hold it)
    store.close()

    def imported(label):
        (tmp_path / label / label).mkdir(parents=True)
        (tmp_path / label / label / "0.png").write_bytes(letter(1))
        return import_folder(tmp_path / "store", tmp_path / label)
    for label in ("alef", "bet"):
        summary = imported(label)
        assert (summary.imported, summary.already_present, summary.skipped) == (0, 1, {}), label
    [conflict] = imported("gimel").skipped["conflicting_label"]
    assert f"already stored as alef ({alef.id[:8]}) and bet ({bet.id[:8]});" in conflict
    fix = re.fullmatch(r".*\(if gimel is right: (.*)\)", conflict)[1]
    assert fix.count("letters-feedback") == 2   # relabel one row, remove the other
    for command in fix.split(", then "):
        assert feedback_cli.main(shlex.split(command)[1:]) == 0
    assert [(r.id, r.true_label) for r in read_records(tmp_path / "store")] == [(alef.id, "gimel")]


def test_stats_names_the_same_bytes_under_two_labels_in_rows_without_a_pixel_digest(tmp_path, capsys):
    """Rows schema-1 code added (no pixel digest yet) are matched by their bytes: stats had said under_two_labels []
    for a picture such rows hold under two labels, or one of them beside a row with a digest."""
    import json
    store = FeedbackStore(tmp_path / "store")
    rows = [store.add(letter(seed), "PNG", label) for seed, label in ((1, "alef"), (1, "bet"), (2, "gimel"),
                                                                      (2, "dalet"), (3, "he"))]
    store.close()
    with sqlite3.connect(tmp_path / "store" / DB_FILE) as conn:
        conn.execute("UPDATE feedback SET pixel_digest = NULL WHERE id != ?", (rows[3].id,))
    assert cli(tmp_path / "store", "stats") == 0
    assert json.loads(capsys.readouterr().out)["under_two_labels"] == [
        [f"alef {rows[0].id}", f"bet {rows[1].id}"], [f"gimel {rows[2].id}", f"dalet {rows[3].id}"]]


@pytest.fixture
def schema_1_store(tmp_path):
    """A store of schema 1, not yet upgraded, holding one picture under two labels: bet's file, and gimel the
    same picture saved again (other bytes, the same pixels)."""
    store_dir = tmp_path / "old"
    empty_store(store_dir)
    insert_as_schema_1(store_dir, "b" * 32, letter(4), "bet")
    insert_as_schema_1(store_dir, "c" * 32, resaved(letter(4), compress_level=9), "gimel")
    return store_dir


def test_stats_names_a_picture_a_store_of_schema_1_holds_under_two_labels_and_writes_nothing(schema_1_store,
                                                                                             capsys):
    """Read-only, stats had grouped the rows of a store not yet upgraded by their bytes, and said under_two_labels
    [] of a picture saved again under another label, which the next write command then warned about."""
    import json
    before = (schema_1_store / DB_FILE).read_bytes()
    assert cli(schema_1_store, "stats") == 0
    assert json.loads(capsys.readouterr().out)["under_two_labels"] == [[f"bet {'b' * 32}", f"gimel {'c' * 32}"]]
    assert (schema_1_store / DB_FILE).read_bytes() == before
    assert [r.pixel_digest for r in read_records(schema_1_store)] == [None, None]


@pytest.mark.parametrize("command", [["remove", "cccc"], ["relabel", "cccc", "bet"], ["remove", "dddd"]])
def test_a_change_upgrading_a_store_of_schema_1_warns_of_the_pictures_under_two_labels_it_leaves(
        schema_1_store, caplog, capsys, command):
    """The upgrade's warning had been given as the store was opened: a remove or relabel that resolved the picture
    was told to remove the wrong one's id, its own change said just after."""
    insert_as_schema_1(schema_1_store, "d" * 32, letter(5), "dalet")
    with caplog.at_level("WARNING", logger="core.feedback"):
        assert cli(schema_1_store, *command) == 0
    resolved = command[1] == "cccc"
    assert ("stored under more than one label" in caplog.text) is not resolved
    if not resolved:
        assert f"1 picture(s) in the feedback store {schema_1_store} " in caplog.text
        assert "bet bbbbbbbb = gimel cccccccc" in caplog.text
    with caplog.at_level("WARNING", logger="core.feedback"):
        caplog.clear()
        assert cli(schema_1_store, "list") == 0 and cli(schema_1_store, "remove", "b" * 32) == 0
    assert "stored under more than one label" not in caplog.text   # (said once, when the digests are made)


def test_list_shows_each_row_with_its_id_labels_time_and_source(mis_click, capsys):
    store_dir, wrong, shin = mis_click
    capsys.readouterr()
    assert cli(store_dir, "list") == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["id", "label", "predicted", "time", "source"]
    assert [row.split() for row in rows] == [[wrong.id, "bet", "alef", wrong.created_at, "v3", "stable"],
                                             [shin.id, "shin", "-", shin.created_at, "-"]]
    assert cli(store_dir, "list", "--label", "shin") == 0
    assert [row.split()[0] for row in capsys.readouterr().out.splitlines()[1:]] == [shin.id]


def test_a_store_whose_code_of_before_made_no_removed_table_is_exported(mis_click, tmp_path):
    """Schema-2 code of before adds rows without the removed table; a read-only export reads such a store."""
    store_dir, wrong, shin = mis_click
    conn = sqlite3.connect(store_dir / DB_FILE)
    conn.execute("DROP TABLE removed")
    conn.close()
    assert export_feedback(store_dir, tmp_path / "again").exported == 2


@pytest.mark.parametrize("prune", [False, True])
def test_two_exports_into_one_folder_at_once_both_finish(mis_click, tmp_path, monkeypatch, prune):
    """Two exports into the same folder after a relabel and a removal: the one that listed a class folder first
    had found the file the other had moved or removed meanwhile gone (FileNotFoundError). They take turns."""
    import threading

    store_dir, wrong, shin = mis_click
    folder = tmp_path / ("pipeline" if prune else "export")
    assert cli(store_dir, "relabel", wrong.id, "alef") == 0 and cli(store_dir, "remove", shin.id) == 0
    first, listed, done = threading.current_thread(), threading.Event(), threading.Event()
    scandir = os.scandir

    def slow_listing(path="."):   # the first export lists bet's folder, then waits (up to 2 s) for the other
        if threading.current_thread() is not first or os.path.basename(path) != "bet" or listed.is_set():
            return scandir(path)
        entries = list(scandir(path))
        listed.set()
        done.wait(2)
        return entries

    monkeypatch.setattr(os, "scandir", slow_listing)
    errors = []

    def other():
        listed.wait(10)
        try:
            export_feedback(store_dir, folder, prune=prune)
        except OSError as err:
            errors.append(err)
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    try:
        summary = export_feedback(store_dir, folder, prune=prune)
    finally:
        thread.join(30)
    assert errors == [] and summary.per_class["alef"] == 1
    assert files(folder) == [f"alef/{wrong.id}.png"]


def test_a_row_with_a_label_outside_the_classes_is_counted_and_named_by_stats_export_and_the_run(mis_click, tmp_path,
                                                                                                 capsys):
    """A row hand-edited to a label outside the 27 classes had been dropped without a word: stats' per_class added up
    to fewer than its records, export and the run counted only the others, and the run said the file an earlier
    export had made of it "no longer in the store removed", the row still there."""
    import json

    import local_runner
    from core.configs import Config
    store_dir, wrong, shin = mis_click
    config = Config(feedback_dir=str(store_dir), pipeline_root=str(tmp_path / "run"))
    local_runner.export_feedback(config)
    with sqlite3.connect(store_dir / DB_FILE) as conn:
        conn.execute("UPDATE feedback SET true_label = 'aleph' WHERE id = ?", (wrong.id,))
    capsys.readouterr()
    assert cli(store_dir, "stats") == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["records"] == 2 and sum(stats["per_class"].values()) == 1
    assert stats["unknown_label"] == [f"aleph {wrong.id}"]
    named = (f"1 row(s) with a label outside the 27 classes not trained on: 'aleph' (id {wrong.id[:8]}); "
             f"letters-feedback --feedback-dir {store_dir} relabel ID LABEL gives each its class")
    assert cli(store_dir, "export", "--out", str(tmp_path / "fresh")) == 0
    assert (f"exported 1 new image(s) to {tmp_path / 'fresh'} (0 already there, 0 missing, 0 corrupt; {named})"
            in capsys.readouterr().out)
    summary = export_feedback(store_dir, tmp_path / "fresh")
    assert summary.unknown_labels == [[wrong.id, "aleph"]] and summary.removed == 0
    local_runner.export_feedback(config)   # its file of the earlier export (bet) is taken out, not "removed"
    line = capsys.readouterr().out
    assert f"Feedback: 1 user-labelled images from {store_dir} (0 new; {named})" in line, line
    assert files(tmp_path / "run" / "feedback") == [f"shin/{shin.id}.png"]


def test_the_run_says_how_many_files_of_relabelled_rows_it_moved(mis_click, tmp_path, capsys):
    """After a relabel, the run had said "(0 new)" and nothing of the correction its export had made."""
    import local_runner
    from core.configs import Config
    store_dir, wrong, shin = mis_click
    config = Config(feedback_dir=str(store_dir), pipeline_root=str(tmp_path / "run"))
    local_runner.export_feedback(config)
    assert cli(store_dir, "relabel", wrong.id, "alef") == 0
    capsys.readouterr()
    local_runner.export_feedback(config)
    line = capsys.readouterr().out
    assert (f"Feedback: 2 user-labelled images from {store_dir} (0 new; 1 of rows relabelled since moved to their new "
            "class folder)") in line, line
    assert files(tmp_path / "run" / "feedback") == [f"alef/{wrong.id}.png", f"shin/{shin.id}.png"]


def test_stats_names_the_rows_whose_image_is_missing_or_corrupt_and_the_temporary_files_left(tmp_path, capsys):
    """stats had counted rows whose image was deleted or overwritten as usable, which export and the run then
    skipped; the temporary file of a writer killed while storing an image was never said or removed."""
    import json
    import time
    store = FeedbackStore(tmp_path / "store")
    rows = [store.add(letter(seed), "PNG", "bet") for seed in range(5)]
    store.close()
    for row in rows[:2]:
        (tmp_path / "store" / row.image_path).unlink()
    (tmp_path / "store" / rows[2].image_path).write_bytes(b"garbage")
    folder = (tmp_path / "store" / rows[3].image_path).parent
    killed, running = folder / ".tmp-0123456789abcdef.part", folder / ".tmp-fedcba9876543210.part"
    for path in (killed, running):
        path.write_bytes(letter(9)[:20])
    hours_ago = time.time() - 2 * 3600
    os.utime(killed, (hours_ago, hours_ago))
    assert cli(tmp_path / "store", "stats") == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["records"] == 5 and stats["not_trained_on"] == 3
    assert stats["missing_images"] == [f"bet {rows[0].id}", f"bet {rows[1].id}"]
    assert stats["corrupt_images"] == [f"bet {rows[2].id}"]
    assert sorted(stats["temporary_files"]) == [f"images/{folder.name}/{killed.name} (120 min old)",
                                                f"images/{folder.name}/{running.name} (0 min old)"]
    summary = export_feedback(tmp_path / "store", tmp_path / "export")
    assert (summary.exported, summary.missing_images, summary.corrupt_images) == (2, 2, 1)
    FeedbackStore(tmp_path / "store").close()   # a writer opening the store removes the killed writer's file only
    assert not killed.exists() and running.exists()
