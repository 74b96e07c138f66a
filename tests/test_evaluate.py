"""pipeline.evaluate scores a pushed model through its image signature and writes its report."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pipeline import evaluate
from core.labels import CLASS_NAMES
from tests.conftest import ROOT, letter_image, png_bytes


def test_metrics_by_hand():
    labels = np.array([0, 0, 1, 2])
    probs = np.full((4, 27), 0.001)
    probs[0, 0] = probs[1, 1] = probs[2, 1] = probs[3, 5] = 0.9
    probs[1, 0] = probs[3, 2] = 0.5                       # second choices
    m = evaluate.compute_metrics(labels, probs)
    assert m["top1"] == 0.5 and m["top3"] == 1.0
    assert m["per_class"]["alef"] == {"support": 2, "precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3)}
    assert m["per_class"]["bet"]["precision"] == 0.5 and m["per_class"]["gimel"]["recall"] == 0.0
    assert m["per_class"]["tav"]["precision"] is None
    assert np.array(m["confusion_matrix"]).sum() == 4 and m["confusion_matrix"][2][5] == 1


def test_equal_probabilities_rank_as_the_served_top_k_so_a_top1_hit_is_a_top3_hit():
    import tensorflow as tf
    m = evaluate.compute_metrics(np.array([0, 1, 2, 26]), np.full((4, 27), 1 / 27, np.float32))
    assert m["top1"] == 0.25 and m["top3"] == 0.75       # ranked alef, bet, gimel: tav (26) is not among them
    rng = np.random.default_rng(0)
    probs = rng.integers(0, 4, (200, 27)).astype(np.float32) / 4    # many equal values in each row
    assert (evaluate.top_classes(probs, 3) == tf.math.top_k(probs, k=3).indices.numpy()).all()
    labels = rng.integers(0, 27, 200)
    m = evaluate.compute_metrics(labels, probs)
    assert m["top1"] <= m["top3"]
    assert m["top3"] == np.mean([label in row for label, row in zip(labels, tf.math.top_k(probs, k=3).indices.numpy())])


def test_the_confusion_matrix_says_which_axis_is_which_whatever_its_title():
    from pipeline import plots
    assert plots.matrix_heading("7 on data: top-1 0.9") == ("7 on data: top-1 0.9: confusion matrix (rows: true, "
                                                             "columns: predicted)")
    assert "rows: true, columns: predicted" in plots.matrix_heading()


def test_a_hebrew_folder_name_in_a_heading_is_drawn_in_letters_and_its_latin_text_too():
    """The headings had been drawn in Pillow's own font, which has no Hebrew: a data root named in Hebrew was a row of
    boxes, the same for every name. They are drawn in a face with Hebrew and Latin letters (Culmus' Miriam, the
    letters' labels, has no Latin ones)."""
    import io

    from pipeline import generate_letters, plots
    if not generate_letters.find_faces() and plots._fontconfig_hebrew_face(latin=True) is None:
        pytest.skip("no font with Hebrew and Latin letters is installed")

    def heading(title):
        img = Image.open(io.BytesIO(plots.confusion_matrix_png(np.eye(27, dtype=int), title))).convert("L")
        return np.asarray(img)[:70]   # the heading's band, above the column letters
    assert not np.array_equal(heading("7 on /data/א: top-1 0.5"), heading("7 on /data/ב: top-1 0.5"))
    assert not np.array_equal(heading("7 on /data/a: top-1 0.5"), heading("7 on /data/b: top-1 0.5"))
    face = plots.heading_font()
    assert plots.draws_each(face, "אבגד") and plots.draws_each(face, "abcdABCD…")

    def sheet_heading(count):
        items = [{"image": b"", "true": 0, "pred": 1, "confidence": 0.5}] * count
        return np.asarray(Image.open(io.BytesIO(plots.contact_sheet_png(items))).convert("L"))[:28]
    assert not np.array_equal(sheet_heading(1), sheet_heading(2))   # the contact sheet's, in the same face
    assert (sheet_heading(1) < 128).any()


def test_the_axis_legend_fits_in_the_picture_whatever_the_length_of_the_data_root(tmp_path):
    """A data root of some 57 characters or more had pushed "predicted)" past the picture's right edge: a heading
    too long for one line is the title (cut in its middle when too long itself) above the whole legend."""
    import io

    from PIL import ImageDraw

    from pipeline import plots
    for path in ("/data", "/tmp/review-shared/a-rather-long-folder-name/data/test_writers_unseen",
                 "/tmp/" + "very-long-folder/" * 20 + "test_writers_unseen"):
        title = f"1796533605 on {path}: top-1 0.074"
        img = Image.open(io.BytesIO(plots.confusion_matrix_png(np.eye(27, dtype=int), title))).convert("L")
        draw, heading_font = ImageDraw.Draw(img), plots.heading_font()
        lines = plots.heading_lines(draw, title, heading_font, img.width - 20)
        assert lines[-1].endswith("confusion matrix (rows: true, columns: predicted)")
        assert lines[0].startswith("1796533605 on /") and lines[0].endswith(": top-1 0.074" if len(lines) > 1 else
                                                                            "predicted)")
        for k, line in enumerate(lines):
            assert draw.textbbox((10, 8 + 20 * k), line, font=heading_font)[2] <= img.width - 10, line
        ink = np.nonzero((np.array(img)[:70] < 128).any(axis=0))[0]   # the heading's band, above the column letters
        assert ink.max() < img.width - 10, (path, ink.max())
    assert len(lines) == 2 and "…" in lines[0]


def test_command_scores_a_pushed_model_and_writes_the_report(pipeline_runs, tiny_dataset, tmp_path):
    serving = pipeline_runs["work"] / "serving"
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "pipeline.evaluate", "--model", str(serving),
                           "--data-root", str(tiny_dataset), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["examples"] == len(list(tiny_dataset.glob("*/*.png")))
    assert 0 <= metrics["top1"] <= metrics["top3"] <= 1
    assert set(metrics["per_class"]) == set(CLASS_NAMES)
    assert metrics["model_dir"] == str(serving / max((p.name for p in serving.iterdir()), key=int))
    # The same answers as calling the served signature directly.
    direct = evaluate.predict(metrics["model_dir"], [p.read_bytes() for p in sorted(tiny_dataset.glob("*/*.png"))],
                              progress=False)
    assert np.isclose((direct.argmax(1) == np.array([CLASS_NAMES.index(p.parent.name) for p in
                                                     sorted(tiny_dataset.glob("*/*.png"))])).mean(), metrics["top1"])
    for png in ("confusion_matrix.png", "worst_errors.png"):
        img = Image.open(out / png)
        assert img.width > 300 and img.height > 100
    assert f"top-1 {metrics['top1']:.4f}" in proc.stdout


def test_clear_errors_for_a_missing_model_or_empty_data(tmp_path, tiny_dataset):
    proc = subprocess.run([sys.executable, "-m", "pipeline.evaluate", "--model", str(tmp_path),
                           "--data-root", str(tiny_dataset)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "holds no SavedModel" in proc.stderr


def damaged_copy(serving, tmp_path, damage):
    import shutil

    version = max((p for p in serving.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    copy = tmp_path / "damaged" / version.name
    shutil.copytree(version, copy)
    damage(copy)
    return copy


@pytest.mark.parametrize("damage", [
    lambda d: (d / "saved_model.pb").write_bytes(b"not a protobuf"),
    lambda d: (d / "variables" / "variables.data-00000-of-00001").write_bytes(b"\0" * 10),
], ids=["corrupt graph", "truncated variables"])
def test_a_damaged_model_is_a_one_line_error(pipeline_runs, tiny_dataset, tmp_path, capsys, damage):
    model = damaged_copy(pipeline_runs["work"] / "serving", tmp_path, damage)
    assert evaluate.main(["--model", str(model), "--data-root", str(tiny_dataset)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot load the SavedModel in {model}") and "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_bad_arguments_fail_before_any_work(tmp_path, tiny_dataset, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for argv, message in ((["--out", str(a_file / "sub")], f"cannot create {a_file / 'sub'}: {a_file} is not a folder"),
                          (["--worst", "-1"], "must be at least 0")):
        with pytest.raises(SystemExit) as caught:
            evaluate.main(["--model", str(tmp_path), "--data-root", str(tiny_dataset), *argv])
        assert caught.value.code == 2 and message in capsys.readouterr().err


def test_a_run_that_fails_on_its_inputs_leaves_no_report_folder(tiny_dataset, tmp_path, monkeypatch, capsys):
    """--out had been made (with its missing parents) before the data root and the model were checked: a mistyped
    --data-root left an empty report folder tree behind."""
    (tmp_path / "empty").mkdir()
    out = tmp_path / "reports" / "run1"

    def fails(model, data_root):
        assert evaluate.main(["--model", str(model), "--data-root", str(data_root), "--out", str(out)]) == 2
        assert capsys.readouterr().err.startswith("error: ")
        assert not (tmp_path / "reports").exists()
    fails(tmp_path / "no-model", tiny_dataset)
    monkeypatch.setattr(evaluate, "resolve_model_dir", lambda model, version=None: model)
    fails(tmp_path, tmp_path / "mistyped")
    fails(tmp_path, tmp_path / "empty")

    def damaged(model_dir):
        raise ValueError(f"cannot load the SavedModel in {model_dir}: damaged")
    monkeypatch.setattr(evaluate, "load_image_signature", damaged)
    fails(tmp_path, tiny_dataset)


def test_a_folder_that_cannot_be_read_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    """An unreadable class folder, data root or model folder had ended the run in a traceback (PermissionError).
    A class folder is refused rather than skipped: its images would be left out of the score without a word."""
    from core import model_dirs
    from tests.support.faults import unreadable_folders
    root = tmp_path / "data"
    for name in ("alef", "bet", "misc"):
        (root / name).mkdir(parents=True)
        (root / name / "1.png").write_bytes(png_bytes(letter_image(30, 40)))
    model = tmp_path / "model"
    model.mkdir()

    def stand_in_model():
        monkeypatch.setattr(evaluate, "resolve_model_dir", lambda model, version=None: model)
        monkeypatch.setattr(evaluate, "load_image_signature", _fake_signature())

    def error(folder, out=None):
        unreadable_folders(monkeypatch, folder)
        monkeypatch.setattr(model_dirs.LOCAL_FILES, "listdir", os.listdir)   # bound when core.model_dirs loaded
        argv = ["--model", str(model), "--data-root", str(root)] + (["--out", str(out)] if out else [])
        assert evaluate.main(argv) == 2
        monkeypatch.undo()
        stand_in_model()
        return capsys.readouterr().err
    assert error(model) == f"error: cannot read the model in {model}: Permission denied\n"
    assert error(root / "bet") == (f"error: cannot read {root / 'bet'}: Permission denied (a class folder: its "
                                   "images would not be scored)\n")
    assert error(root, out=tmp_path / "report") == f"error: cannot read {root}: Permission denied\n"
    assert not (tmp_path / "report").exists()
    unreadable_folders(monkeypatch, root / "misc")   # no class: skipped, as its files were
    metrics = evaluate.evaluate(str(model), str(root), progress=False)
    assert metrics["examples"] == 2 and metrics["skipped_files"] == [{"file": "misc/", "why": "unknown class folder"}]


def test_a_path_that_is_not_utf8_is_shown_with_escapes(tmp_path, monkeypatch, capsys):
    """The messages had shown --model, --data-root and --out as given: a byte that is not UTF-8 as \\udcff."""
    from core.files import printable
    odd = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"caf\xff"))
    shown = printable(odd)
    os.mkdir(odd)
    assert evaluate.main(["--model", odd, "--data-root", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {shown} holds no SavedModel")
    monkeypatch.setattr(evaluate, "resolve_model_dir", lambda model, version=None: model)
    monkeypatch.setattr(evaluate, "load_image_signature", _fake_signature())
    for data_root, said in ((odd + "/none", f"error: {shown}/none is not a folder"),
                            (odd, f"error: no usable labelled image under {shown}")):
        assert evaluate.main(["--model", str(tmp_path), "--data-root", data_root]) == 2
        assert capsys.readouterr().err.startswith(said)
    (tmp_path / "data" / "alef").mkdir(parents=True)
    (tmp_path / "data" / "alef" / "1.png").write_bytes(png_bytes(letter_image(30, 40)))
    assert evaluate.main(["--model", str(tmp_path), "--data-root", str(tmp_path / "data"), "--out", odd]) == 0
    assert f"wrote {shown}/metrics.json" in capsys.readouterr().out


def test_a_file_name_that_is_not_utf8_is_skipped_as_training_skips_it(tmp_path, monkeypatch, capsys):
    """A class folder's image whose name is not UTF-8 (a zip from another system) had been scored, counted in the
    examples and not among the skipped, though the ExampleGen and letters-feedback import skip it (name_not_utf8):
    the score covered images training never reads. The progress bar is drawn on a terminal only, not into a pipe
    or a log file."""
    import io

    from core.files import NOT_UTF8, printable
    alef = tmp_path / "data" / "alef"
    alef.mkdir(parents=True)
    (alef / "ok.png").write_bytes(png_bytes(letter_image(30, 40)))
    odd = os.fsdecode(os.path.join(os.fsencode(alef), b"caf\xe9.png"))
    with open(odd, "wb") as f:
        f.write(png_bytes(letter_image(30, 40)))
    monkeypatch.setattr(evaluate, "resolve_model_dir", lambda model, version=None: model)
    monkeypatch.setattr(evaluate, "load_image_signature", _fake_signature())
    argv = ["--model", str(tmp_path), "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "report")]
    assert evaluate.main(argv) == 0
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["examples"] == 1 and metrics["skipped_files"] == [
        {"file": printable(f"alef/{os.path.basename(odd)}"), "why": NOT_UTF8}]
    assert "evaluate:" not in capsys.readouterr().err   # (not a terminal: no bar)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert evaluate.main(argv) == 0
    assert "evaluate: 100%" in sys.stderr.getvalue()


def test_data_with_nothing_usable_says_why(pipeline_runs, tmp_path, capsys):
    serving = str(pipeline_runs["work"] / "serving")
    (tmp_path / "data" / "misc").mkdir(parents=True)   # (Alef, named as a class with no folder, is refused)
    (tmp_path / "data" / "misc" / "1.png").write_bytes(b"x")
    (tmp_path / "data" / "bet").mkdir()
    (tmp_path / "data" / "bet" / "2.png").write_bytes(b"not an image")
    assert evaluate.main(["--model", serving, "--data-root", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "skipped 2" in err and "unknown class folder (misc/1.png)" in err and "bet/2.png" in err
    assert evaluate.main(["--model", serving, "--data-root", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "data" / "generated.json").write_text('{"per_class": 9, "seed": 1, "incomplete": true}')
    assert evaluate.main(["--model", serving, "--data-root", str(tmp_path / "data")]) == 2   # an interrupted run's
    assert "generation did not finish" in capsys.readouterr().err


def test_every_file_it_does_not_score_is_listed_with_its_reason(tmp_path):
    """Nothing under the data root goes unmentioned: files beside the class folders, folders inside them, broken
    links, link loops and pipes are skipped with a reason (a pipe would have blocked the read forever)."""
    import os
    root = tmp_path / "data"
    (root / "alef" / "nested").mkdir(parents=True)
    (root / "alef" / "ok.png").write_bytes(png_bytes(letter_image(30, 40)))
    (root / "alef" / "nested" / "deep.png").write_bytes(png_bytes(letter_image(30, 40)))
    (root / "top.png").write_bytes(png_bytes(letter_image(30, 40)))
    (root / "bet").mkdir()
    (root / "bet" / "broken.png").symlink_to(tmp_path / "gone.png")
    (root / "bet" / "loop").symlink_to(root / "bet" / "loop")
    os.mkfifo(root / "bet" / "pipe.png")
    (root / "Alef").mkdir()
    (root / "Alef" / "x.png").write_bytes(png_bytes(letter_image(30, 40)))
    (root / "generated.json").write_text("{}")   # the generator's manifest: not an image, not mentioned
    items, skipped = evaluate.load_labelled_images(str(root))
    assert [rel for rel, _, _ in items] == ["alef/ok.png"]
    reasons = dict(skipped)
    assert "generated.json" not in reasons
    assert reasons["top.png"] == "not in a class folder" and reasons["Alef/x.png"] == "unknown class folder"
    assert reasons["alef/nested"].startswith("a folder inside a class folder")
    assert reasons["bet/broken.png"].startswith("unreadable: FileNotFoundError")
    assert reasons["bet/loop"].startswith("unreadable: OSError")
    assert reasons["bet/pipe.png"].startswith("not_a_file")
    assert evaluate.load_labelled_images(str(tmp_path / "nowhere")) == ([], [])


def test_images_per_second_counts_the_answers_not_the_model_loading_or_first_call(tmp_path, monkeypatch):
    import time

    import tensorflow as tf

    from core import configs
    for name in ("alef", "bet"):
        (tmp_path / "data" / name).mkdir(parents=True)
        (tmp_path / "data" / name / "1.png").write_bytes(png_bytes(letter_image(30, 40)))

    calls = []

    def signature(**inputs):
        calls.append(1)
        if len(calls) == 1:
            time.sleep(1.0)                                  # the loaded function's first call builds it
        return {configs.PROBABILITIES_OUTPUT: tf.fill([int(tf.size(inputs[configs.IMAGE_INPUT])), len(CLASS_NAMES)],
                                                      1.0 / len(CLASS_NAMES))}

    def slow_load(_model_dir):
        time.sleep(1.0)                                      # a SavedModel's load
        return signature
    monkeypatch.setattr(evaluate, "resolve_model_dir", lambda model, version=None: model)
    monkeypatch.setattr(evaluate, "load_image_signature", slow_load)
    metrics = evaluate.evaluate(str(tmp_path), str(tmp_path / "data"), progress=False)
    assert metrics["images_per_second"] > 20                 # 2 images in well under 0.1 s; with the load: < 2


def _fake_signature(refuse: bytes = b""):
    """A stand-in image signature: uniform answers, and TensorFlow's InvalidArgumentError for a batch that holds
    ``refuse`` (an image its decoder cannot read)."""
    import tensorflow as tf

    from core import configs

    def signature(**inputs):
        images = inputs[configs.IMAGE_INPUT].numpy().tolist()
        if refuse in images:
            raise tf.errors.InvalidArgumentError(None, None, "{{function_node __wrapped__DecodeImage}} Invalid PNG "
                                                             "data, size 99 [Op:DecodeImage]")
        return {configs.PROBABILITIES_OUTPUT: tf.fill([len(images), len(CLASS_NAMES)], 1.0 / len(CLASS_NAMES))}
    return lambda _model_dir: signature


def test_an_image_the_model_refuses_is_skipped_with_its_reason_and_odd_names_are_shown(tmp_path, monkeypatch):
    """An image the model could not decode had ended the run with a traceback; a file name that is not UTF-8 had
    ended it half-way through writing metrics.json over the earlier report."""
    import json
    import os
    root = tmp_path / "data"
    for name in ("alef", "bet"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            (root / name / f"{i}.png").write_bytes(png_bytes(letter_image(30 + i, 40)))
    bad = png_bytes(letter_image(33, 41))
    (root / "bet" / "bad.png").write_bytes(bad)
    with open(os.path.join(os.fsencode(root / "bet"), b"caf\xe9.png"), "wb") as f:   # skipped, as training skips it
        f.write(png_bytes(letter_image(34, 40)))
    out = tmp_path / "report"
    out.mkdir()
    (out / "metrics.json").write_text('{"earlier": true}')
    monkeypatch.setattr(evaluate, "resolve_model_dir", lambda model, version=None: model)
    monkeypatch.setattr(evaluate, "load_image_signature", _fake_signature(bad))
    metrics = evaluate.evaluate(str(tmp_path), str(root), str(out), progress=False)
    from core.files import NOT_UTF8
    assert metrics["examples"] == 6 and metrics["skipped"] == 2
    assert metrics["skipped_files"] == [{"file": "bet/caf\\xe9.png", "why": NOT_UTF8},
                                        {"file": "bet/bad.png", "why": "refused by the model: Invalid PNG data, size 99"}]
    written = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert "bet/caf\\xe9.png" in {e["file"] for e in written["skipped_files"]} and written["examples"] == 6
    assert sorted(p.name for p in out.iterdir()) == ["confusion_matrix.png", "metrics.json", "worst_errors.png"]


def test_a_stop_is_one_line_and_leaves_the_report_as_it_was(tmp_path, tiny_dataset, monkeypatch, capsys):
    import signal

    monkeypatch.setattr(evaluate, "resolve_model_dir", lambda model, version=None: model)

    def stopped(_model_dir):
        signal.raise_signal(signal.SIGTERM)      # a stopped job: as Ctrl-C
    monkeypatch.setattr(evaluate, "load_image_signature", stopped)
    assert evaluate.main(["--model", str(tmp_path), "--data-root", str(tiny_dataset),
                          "--out", str(tmp_path / "out")]) == 130
    assert capsys.readouterr().err == f"interrupted: {tmp_path / 'out'} left as it was\n"


def _earlier_report(tmp_path, monkeypatch):
    """tmp_path/out holding an earlier report (each file b"earlier"), and evaluate given a fake model."""
    out = tmp_path / "out"
    out.mkdir()
    for name in evaluate.REPORT_FILES:
        (out / name).write_bytes(b"earlier")
    monkeypatch.setattr(evaluate, "resolve_model_dir", lambda model, version=None: model)
    monkeypatch.setattr(evaluate, "load_image_signature", _fake_signature())
    return out


def test_a_stop_while_the_report_is_made_says_what_it_left(tmp_path, tiny_dataset, monkeypatch, capsys):
    """A stop while the pictures were drawn had left a new metrics.json beside the earlier pictures, and said the
    folder was left as it was."""
    import signal

    from pipeline import plots
    out = _earlier_report(tmp_path, monkeypatch)
    argv = ["--model", str(tmp_path), "--data-root", str(tiny_dataset), "--out", str(out)]
    drawn = plots.contact_sheet_png
    monkeypatch.setattr(plots, "contact_sheet_png",
                        lambda *a, **k: (signal.raise_signal(signal.SIGTERM), drawn(*a, **k)))
    assert evaluate.main(argv) == 130
    assert capsys.readouterr().err.splitlines()[-1] == f"interrupted: {out} left as it was"
    assert {(out / name).read_bytes() for name in evaluate.REPORT_FILES} == {b"earlier"}
    monkeypatch.setattr(plots, "contact_sheet_png", drawn)


def test_a_stop_while_the_report_is_replaced_is_held_until_it_is_whole(tmp_path, tiny_dataset, monkeypatch, capsys):
    """A stop after the first of the three files had been replaced had left a new metrics.json beside the earlier
    pictures (and, stopped in that file's folder sync, said the folder was left as it was): the stop is held until
    all three are replaced, and said to have left the new report."""
    import signal

    from core import files
    out = _earlier_report(tmp_path, monkeypatch)
    synced, real_sync = [], files.fsync_dir

    def stopped_in_the_first_sync(path):
        if not synced:
            signal.raise_signal(signal.SIGTERM)        # a stopped job, once the first file is in place
        synced.append(path)
        real_sync(path)
    monkeypatch.setattr(files, "fsync_dir", stopped_in_the_first_sync)
    argv = ["--model", str(tmp_path), "--data-root", str(tiny_dataset), "--out", str(out)]
    assert evaluate.main(argv) == 130
    assert capsys.readouterr().err.splitlines()[-1] == f"interrupted: {out} holds the new report"
    assert not any((out / name).read_bytes() == b"earlier" for name in evaluate.REPORT_FILES)
    assert json.loads((out / "metrics.json").read_text())["examples"] == len(list(tiny_dataset.glob("*/*.png")))


def test_a_report_that_cannot_be_written_is_one_line_and_leaves_the_files_as_they_were(tmp_path, tiny_dataset,
                                                                                        monkeypatch, capsys):
    """A full disk had ended the run in a traceback (status 1) with a new metrics.json beside the earlier PNGs, and
    a folder in a PNG's place had done the same after the work: one line, status 2, nothing replaced; the folder
    is said before the model is loaded."""
    import os

    from tests.support.faults import disk_full_at_file
    out = _earlier_report(tmp_path, monkeypatch)
    with monkeypatch.context() as patch:
        disk_full_at_file(patch, 2)
        assert evaluate.main(["--model", str(tmp_path), "--data-root", str(tiny_dataset), "--out", str(out)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (f"error: cannot write the report into {out}: No space left "
                                                       "on device (the files there are left as they were)")
    assert sorted(p.name for p in out.iterdir()) == sorted(evaluate.REPORT_FILES)
    assert {(out / name).read_bytes() for name in evaluate.REPORT_FILES} == {b"earlier"}
    (tmp_path / "other" / "worst_errors.png").mkdir(parents=True)
    monkeypatch.setattr(evaluate, "load_image_signature", lambda *a: pytest.fail("the model was loaded"))
    assert evaluate.main(["--model", str(tmp_path), "--data-root", str(tiny_dataset),
                          "--out", str(tmp_path / "other")]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'other' / 'worst_errors.png'} is a folder, where the "
                                       "report writes its worst_errors.png; move it or give another --out\n")
    assert os.listdir(tmp_path / "other") == ["worst_errors.png"]


def test_plot_labels_draw_hebrew_letters_without_the_culmus_faces(monkeypatch, capsys):
    import shutil

    from pipeline import generate_letters, plots
    if not shutil.which("fc-match"):
        pytest.skip("fontconfig (fc-match) is not installed")
    monkeypatch.setattr(generate_letters, "find_faces", lambda: [])        # a machine without Culmus
    plots.font.cache_clear()
    try:
        face = plots.font(18, hebrew=True)
        masks = {bytes(face.getmask(letter)) for letter in "אבגד"}
    finally:
        plots.font.cache_clear()
    if plots._fontconfig_hebrew_face() is None:
        assert "no font with Hebrew letters" in capsys.readouterr().err
    else:
        assert len(masks) == 4                                               # four letters, not four boxes


def test_error_captions_fit_under_their_picture():
    from PIL import Image, ImageDraw

    from pipeline import plots
    draw, small = ImageDraw.Draw(Image.new("RGB", (10, 10))), plots.font(11)
    for text in ("tsadi_final->mem_final", "alef->bet", "tsadi_final->tsadi_final"):
        shown = plots.fitted(draw, text, small, 102)
        assert draw.textlength(shown, font=small) <= 102 and shown[:3] == text[:3]
    assert plots.fitted(draw, "alef->bet", small, 102) == "alef->bet"
    assert plots.fitted(draw, "tsadi_final->mem_final", small, 102).startswith("tsadi_f->mem_f")


def test_a_16_bit_error_is_shown_on_the_contact_sheet_as_the_model_reads_it():
    """A 16-bit grey PNG is drawn by the high byte of each value, as the model reads it (core.image_io.as_read), the
    same thumbnail as its 8-bit copy's: made RGB directly, every value over 255 had been white, a blank thumbnail."""
    import io

    from pipeline import plots
    letter = np.full((64, 48), 65535, np.uint16)   # a stroke of 20000 on paper of 65535: every value over 255
    letter[10:50, 15:30] = 20000

    def sheet(pixels):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        item = {"image": buf.getvalue(), "true": 0, "pred": 1, "confidence": 0.9}
        return np.asarray(Image.open(io.BytesIO(plots.contact_sheet_png([item]))).convert("L"))

    wide = sheet(letter)
    assert np.array_equal(wide, sheet((letter >> 8).astype(np.uint8)))
    assert wide[30 + 16 + 10:30 + 16 + 50, 8 + 24 + 15:8 + 24 + 30].max() == 20000 >> 8   # the stroke, not white


def test_a_transparent_error_is_shown_on_the_contact_sheet_over_white_paper():
    """A letter drawn on a transparent background whose hidden colour is black is read by the model over white
    paper: its thumbnail had been a black square (the alpha dropped)."""
    import io

    from pipeline import plots
    rgba = np.zeros((64, 48, 4), np.uint8)   # black everywhere, opaque only where the stroke is
    rgba[10:50, 15:30, 3] = 255

    def sheet(img):
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        item = {"image": buf.getvalue(), "true": 0, "pred": 1, "confidence": 0.9}
        return np.asarray(Image.open(io.BytesIO(plots.contact_sheet_png([item]))).convert("L"))

    opaque = np.full((64, 48), 255, np.uint8)
    opaque[10:50, 15:30] = 0
    assert np.array_equal(sheet(Image.fromarray(rgba, "RGBA")), sheet(Image.fromarray(opaque)))


def test_a_report_folder_in_the_data_is_refused(tmp_path, tiny_dataset, capsys):
    """--out inside --data-root had put the report's PNGs among the images (a class folder's: read as its images by
    the next run, or replacing images of those names): a usage error now, before any work."""
    for out in (tiny_dataset, tiny_dataset / "alef", tiny_dataset / "report"):
        with pytest.raises(SystemExit) as caught:
            evaluate.main(["--model", str(tmp_path / "none"), "--data-root", str(tiny_dataset), "--out", str(out)])
        err = capsys.readouterr().err
        assert caught.value.code == 2 and f"--out {out} lies in --data-root" in err, err
    assert not (tiny_dataset / "report").exists() and not (tiny_dataset / "alef" / "worst_errors.png").exists()


def test_a_report_folder_in_a_linked_class_folder_or_through_a_linked_data_root_is_refused(tmp_path, capsys):
    """A class folder that is a link to a folder elsewhere is read as the class's images: --out in it (by the link's
    name or by the real folder's) had been taken as outside --data-root, the report's PNGs then scored as letters by
    the next run. A --data-root given by a link is refused by the name given as well as by the real one."""
    real_alef, data, linked_root = tmp_path / "real_alef", tmp_path / "data", tmp_path / "linked"
    (data / "bet").mkdir(parents=True)
    real_alef.mkdir()
    (data / "alef").symlink_to(real_alef)
    linked_root.symlink_to(data)
    for root, out in ((data, data / "alef"), (data, data / "alef" / "report"), (data, real_alef),
                      (data, real_alef / "report"), (linked_root, linked_root / "report"), (linked_root, data / "bet")):
        with pytest.raises(SystemExit) as caught:
            evaluate.main(["--model", str(tmp_path / "none"), "--data-root", str(root), "--out", str(out)])
        err = capsys.readouterr().err
        assert caught.value.code == 2 and f"--out {out} lies in --data-root {root}" in err, (out, err)
    assert os.listdir(real_alef) == [] and os.listdir(data / "bet") == []
    (tmp_path / "elsewhere").mkdir()
    (data / "notes").symlink_to(tmp_path / "elsewhere")   # not a class folder: not read, but inside --data-root
    with pytest.raises(SystemExit):
        evaluate.main(["--model", str(tmp_path / "none"), "--data-root", str(data), "--out", str(data / "notes")])
    assert "lies in --data-root" in capsys.readouterr().err
    assert evaluate.main(["--model", str(tmp_path / "none"), "--data-root", str(data),
                          "--out", str(tmp_path / "elsewhere")]) == 2   # outside: refused only for the missing model
    assert "lies in" not in capsys.readouterr().err


def test_a_report_folder_that_is_a_url_is_refused(tmp_path, tiny_dataset, monkeypatch, capsys):
    """--out gs://my-bucket/report had written a local ./gs:/my-bucket/report folder and said it wrote
    gs://my-bucket/report/metrics.json: a usage error now, before any work, saying to copy the folder after."""
    monkeypatch.chdir(tmp_path)
    for data_root in (str(tiny_dataset), "."):   # (a URL is not inside the current folder's data)
        with pytest.raises(SystemExit) as caught:
            evaluate.main(["--model", str(tmp_path / "none"), "--data-root", data_root,
                           "--out", "gs://my-bucket/report"])
        err = capsys.readouterr().err
        assert caught.value.code == 2 and ("argument --out: gs://my-bucket/report: the output is written to a local "
                                           "folder, not a URL; give one and copy it to the bucket after") in err, err
    assert not (tmp_path / "gs:").exists()


def test_images_are_read_a_batch_at_a_time_and_the_worst_again_for_the_sheet(tmp_path, monkeypatch):
    """Every image's bytes had been held at once (a folder of large photos: its whole size in memory). The images are
    read a batch at a time now, as the model answers them, and the few on the contact sheet again at the end."""
    from core import image_io
    root = tmp_path / "data"
    for name in ("alef", "bet"):
        (root / name).mkdir(parents=True)
        for i in range(40):
            (root / name / f"{i}.png").write_bytes(png_bytes(letter_image(20 + i % 5, 30)))
    reads, held = [], []
    real_read = image_io.read_checked

    def read_checked(path, *args, **kwargs):
        reads.append(path)
        return real_read(path, *args, **kwargs)
    monkeypatch.setattr(image_io, "read_checked", read_checked)
    signature = _fake_signature()(None)

    def counting(**inputs):
        held.append(len(reads))   # files read so far, at each call of the model
        return signature(**inputs)
    monkeypatch.setattr(evaluate, "resolve_model_dir", lambda model, version=None: model)
    monkeypatch.setattr(evaluate, "load_image_signature", lambda _model_dir: counting)
    metrics = evaluate.evaluate(str(tmp_path), str(root), str(tmp_path / "report"), worst=3, progress=False)
    assert metrics["examples"] == 80 and len(metrics["worst_errors"]) == 3
    assert held[0] <= 64 and held[-1] == 80   # the first call before the second batch is read, the last after all
    assert len(reads) == 80 + 3 and reads[80:] == [str(root / e["file"]) for e in metrics["worst_errors"]]
    items, _ = evaluate.labelled_files(str(root))   # the listing holds no image
    assert len(items) == 80 and not any(isinstance(part, bytes) for item in items for part in item)


def test_a_folder_named_as_a_class_that_has_no_folder_is_refused_as_the_pipeline_refuses_it(tmp_path, monkeypatch,
                                                                                          capsys):
    """Gimel/ beside no gimel/ had been skipped as an unknown class folder and the model scored without that class,
    where the pipeline's ExampleGen refuses such a data root before it starts: the same refusal, the same words."""
    from components.image_example_gen import describe_layout_problem
    from tests.support.serving import stand_in_version
    monkeypatch.setattr(evaluate, "load_image_signature", lambda *a: pytest.fail("the model was loaded"))
    stand_in_version(tmp_path / "model" / "1")
    data = tmp_path / "data"
    for rel in ("alef/1.png", "Gimel/2.png", "misc/3.png"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(png_bytes(letter_image(30, 40)))
    assert evaluate.main(["--model", str(tmp_path / "model"), "--data-root", str(data)]) == 2
    err = capsys.readouterr().err
    assert "'Gimel' is not a class folder: did you mean 'gimel'?" in err and "'misc'" not in err
    assert err == f"error: {describe_layout_problem(str(data))}\n"
    with pytest.raises(ValueError, match="'Gimel' is not a class folder"):
        evaluate.evaluate(str(tmp_path / "model"), str(data))


@pytest.mark.parametrize("files", [("alef/1.png", "Gimel/.DS_Store"), ("alef/1.png", "Gimel/2.png", "gimel/.DS_Store"),
                                   ("alef/1.png", "empty/")])
def test_the_misnamed_folder_check_reads_the_folders_the_pipelines_check_reads(tmp_path, files):
    """A folder holding hidden files alone counts, as in the ExampleGen's check: a Gimel/ beside a gimel/ holding
    only .DS_Store had been refused as beside no gimel/, and a Gimel/ of hidden files alone let through."""
    from components.image_example_gen import describe_layout_problem
    for rel in files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        if not rel.endswith("/"):
            (tmp_path / rel).write_bytes(png_bytes(letter_image(30, 40)))
    assert evaluate.layout_problem(str(tmp_path)) == describe_layout_problem(str(tmp_path))


def test_the_pipelines_file_limits_are_read_as_the_pipeline_reads_them(tmp_path, monkeypatch, capsys):
    """LETTERS_MAX_FILE_BYTES and LETTERS_MAX_IMAGE_PIXELS, which the pipeline trains by, are the limits images are
    scored with: letters-evaluate had read every image with the defaults, and refused as too_large letters the
    pipeline had trained on."""
    data = tmp_path / "data" / "alef"
    data.mkdir(parents=True)
    (data / "small.png").write_bytes(png_bytes(letter_image(20, 20)))
    big = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 60), np.uint8), "L"))
    assert len(big) > 2000
    (data / "big.png").write_bytes(big)
    monkeypatch.setattr(evaluate, "resolve_model_dir", lambda model, version=None: model)
    monkeypatch.setattr(evaluate, "load_image_signature", _fake_signature())
    argv = ["--model", str(tmp_path), "--data-root", str(tmp_path / "data")]
    assert evaluate.main(argv) == 0
    assert "2 images (0 skipped)" in capsys.readouterr().out
    monkeypatch.setenv("LETTERS_MAX_FILE_BYTES", "2000")
    assert evaluate.main(argv) == 0
    assert "1 images (1 skipped)" in capsys.readouterr().out
    monkeypatch.delenv("LETTERS_MAX_FILE_BYTES")
    monkeypatch.setenv("LETTERS_MAX_IMAGE_PIXELS", "1000")   # 20 × 20 kept, 60 × 60 refused
    assert evaluate.main(argv) == 0
    assert "1 images (1 skipped)" in capsys.readouterr().out
