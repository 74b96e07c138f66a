"""bench/select_model.py: the quick writer-held-out comparison of training settings."""
import json
from pathlib import Path

import numpy as np
import pytest

from bench import select_model

pytestmark = pytest.mark.slow   # trains networks


@pytest.fixture
def numbered_dataset(tiny_dataset, tmp_path):
    """The generated letters renamed as HHD names them (<class>_<form>.png), so the writer split applies."""
    root = tmp_path / "numbered"
    for class_dir in sorted(p for p in tiny_dataset.iterdir() if p.is_dir()):
        (root / class_dir.name).mkdir(parents=True)
        for n, image in enumerate(sorted(class_dir.glob("*.png"))):
            (root / class_dir.name / f"7_{n}.png").symlink_to(image)
    return root


def test_select_model_scores_held_out_writers_and_caches_the_transform(numbered_dataset, tmp_path, capsys):
    cache, out = tmp_path / "cache", tmp_path / "result.json"
    args = ["--data-root", str(numbered_dataset), "--cache", str(cache), "--seeds", "1,2",
            "--set", "epochs=2", "--set", "conv_widths=8,16", "--json", str(out)]
    assert select_model.main(args) == 0
    result = json.loads(out.read_text())
    assert [r["seed"] for r in result["runs"]] == [1, 2]
    assert result["settings"]["epochs"] == 2 and result["settings"]["conv_widths"] == "8,16"
    assert 0.0 <= result["median_top1"] <= result["median_top3"] <= 1.0
    printed = capsys.readouterr().out
    assert "train 162, val 54 files" in printed and "reproduce: python -m bench.select_model" in printed
    cached = sorted(cache.iterdir())
    assert len(cached) == 2
    # A second run reads the cached transform instead of preprocessing again.
    assert select_model.main(args[:-2] + ["--seeds", "1"]) == 0
    assert sorted(cache.iterdir()) == cached and "preprocessing" not in capsys.readouterr().out


def test_select_model_refuses_unknown_settings(numbered_dataset, tmp_path):
    with pytest.raises(SystemExit, match="FIELD=VALUE"):
        select_model.main(["--data-root", str(numbered_dataset), "--set", "depth=3"])
    with pytest.raises(SystemExit, match="LETTERS_EPOCHS"):
        select_model.main(["--data-root", str(numbered_dataset), "--set", "epochs=many"])


def test_first_forms_keeps_the_earliest_writers_of_each_class():
    from bench.writer_split import first_forms
    paths = ["alef/0_10.png", "alef/0_2.png", "alef/0_1.png", "alef/0_3.png", "bet/1_5.png", "bet/1_4.png",
             "bet/notes.png"]
    assert first_forms(paths, 0.5) == [False, True, True, False, False, True, True]
    assert all(first_forms(paths, 1.0))


def one_epoch_args(data_root, tmp_path, *extra) -> list[str]:
    """select_model flags for one epoch of a tiny network, results in tmp_path/result.json."""
    return ["--data-root", str(data_root), "--cache", str(tmp_path / "cache"), "--seeds", "1", "--set", "epochs=1",
            "--set", "conv_widths=8,16", *extra, "--json", str(tmp_path / "result.json")]


def test_train_share_trains_on_fewer_writers_and_keeps_validation(numbered_dataset, tmp_path, capsys):
    out = tmp_path / "result.json"
    args = one_epoch_args(numbered_dataset, tmp_path, "--train-share", "0.5")
    assert select_model.main(args) == 0
    result = json.loads(out.read_text())
    assert result["train_share"] == 0.5 and result["train_images"] == 81     # half of each class's 6 train forms
    assert "training on the first 0.5 of each class's forms: 81 images" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        select_model.main(args[:-4] + ["--train-share", "0"])


def test_writer_split_folds_hold_out_disjoint_blocks_that_cover_every_form(numbered_dataset, tmp_path):
    from bench.writer_split import fold_count, writer_split
    assert fold_count(0.2) == 5 and fold_count(0.25) == 4
    held_out = []
    for fold in range(5):
        counts = writer_split(str(numbered_dataset), str(tmp_path / f"f{fold}"), 0.2, fold=fold)
        val = sorted(p.relative_to(tmp_path / f"f{fold}" / "val").as_posix()
                     for p in (tmp_path / f"f{fold}" / "val").glob("*/*"))
        train = {p.name for p in (tmp_path / f"f{fold}" / "train").glob("alef/*")}
        assert counts["val"] == len(val) > 0 and counts["train"] + counts["val"] == 27 * 8
        assert not train & {Path(v).name for v in val if v.startswith("alef/")}
        held_out += val
    assert len(held_out) == len(set(held_out)) == 27 * 8      # each image is held out exactly once
    # Fold 0 holds out each class's first forms; the last fold is the default hold-out (the last forms).
    assert sorted(p.name for p in (tmp_path / "f0" / "val" / "alef").iterdir()) == ["7_0.png", "7_1.png"]
    writer_split(str(numbered_dataset), str(tmp_path / "last"), 0.2)
    assert sorted((tmp_path / "last" / "val").rglob("*.png")) != []
    assert ({p.relative_to(tmp_path / "last").as_posix() for p in (tmp_path / "last").rglob("*.png")}
            == {p.relative_to(tmp_path / "f4").as_posix() for p in (tmp_path / "f4").rglob("*.png")})
    with pytest.raises(ValueError, match="fold must be in 0..4"):
        writer_split(str(numbered_dataset), str(tmp_path / "bad"), 0.2, fold=5)


def test_select_model_cross_validates_over_writer_folds(numbered_dataset, tmp_path, capsys):
    out = tmp_path / "result.json"
    args = one_epoch_args(numbered_dataset, tmp_path, "--folds", "0,2")
    assert select_model.main(args) == 0
    result = json.loads(out.read_text())
    assert [f["fold"] for f in result["folds"]] == [0, 2] and [r["fold"] for r in result["runs"]] == [0, 2]
    sizes = [f["val_images"] for f in result["folds"]]
    assert sizes == [54, 54]            # forms 0-1 and 3-4 of each class's 8 (blocks of 8 × k/5, rounded)
    # The cross-validated score weighs each fold by its held-out images.
    expected = sum(f["median_top1"] * f["val_images"] for f in result["folds"]) / sum(sizes)
    assert result["cv_top1"] == pytest.approx(expected) and 0 <= result["cv_top1"] <= result["cv_top3"] <= 1
    printed = capsys.readouterr().out
    assert "writer hold-out, fold 0:" in printed and "writer hold-out, fold 2:" in printed
    assert "writer cross-validation, folds 0,2" in printed
    # Recall per class pools both folds' held-out images: hits over images, every image of the two blocks once.
    assert sum(sum(r["support"].values()) for r in result["runs"]) == sum(sizes)
    for name in ("vav", "nun_final", "yod"):
        hits, support = (sum(r[k][name] for r in result["runs"]) for k in ("hits", "support"))
        assert support == 4 and result["recall"][name] == pytest.approx(hits / support)
    assert "recall per class over the runs, lowest first: " in printed
    with pytest.raises(SystemExit):
        select_model.main(args[:-2] + ["--folds", "5"])
    with pytest.raises(SystemExit):
        select_model.main(args[:-2] + ["--folds", "first"])


def test_distil_scores_the_averaged_seeds_and_trains_one_network_towards_them(numbered_dataset, tmp_path, capsys):
    out = tmp_path / "result.json"
    args = one_epoch_args(numbered_dataset, tmp_path, "--distil", "0.7", "--student-seed", "5")
    args[args.index("--seeds") + 1] = "1,2"
    assert select_model.main(args) == 0
    result = json.loads(out.read_text())
    assert result["ensemble"]["members"] == 2 and 0.0 <= result["ensemble"]["top1"] <= result["ensemble"]["top3"]
    student = result["student"]
    assert student["seed"] == 5 and [h["epoch"] for h in student["history"]] == [1]
    # The student has the served network's size: the teachers' parameters are not part of it.
    assert student["parameters"] == result["runs"][0]["parameters"]
    printed = capsys.readouterr().out
    assert "seed 5, distilled from 2 (alpha 0.7)" in printed and "averaged ensemble of the seeds: top-1" in printed
    with pytest.raises(SystemExit):
        select_model.main(one_epoch_args(numbered_dataset, tmp_path, "--distil", "0.7"))   # one seed: nothing to average
    with pytest.raises(SystemExit):
        select_model.main(args[:-2] + ["--distil", "1.5"])


def test_distiller_trains_only_the_student_towards_the_teachers():
    import tensorflow as tf
    from bench.select_model import Distiller
    tf.keras.utils.set_random_seed(0)

    def dense():
        return tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3, activation="softmax")])

    teacher, student = dense(), dense()
    frozen = [w.numpy().copy() for w in teacher.weights]
    model = Distiller(student, [teacher], alpha=1.0)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.05), loss="categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    wrong = tf.one_hot(np.zeros(64, int), 3)           # with alpha 1 the labels do not count
    gap_before = np.abs(student.predict(x, verbose=0) - teacher.predict(x, verbose=0)).mean()
    model.fit(x, wrong, epochs=60, batch_size=64, verbose=0)
    gap_after = np.abs(student.predict(x, verbose=0) - teacher.predict(x, verbose=0)).mean()
    assert gap_after < gap_before / 3
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(frozen, teacher.weights))
    assert len(model.trainable_variables) == len(student.trainable_variables)


@pytest.fixture
def fit_calls(monkeypatch):
    """Every fit_model call of the test, in order: image counts, epochs, the weights it started from and ended with."""
    calls = []
    real_fit = select_model.fit_model

    def recording_fit(hp, train, val, *args, **kwargs):
        model, record = real_fit(hp, train, val, *args, **kwargs)
        calls.append({"train": len(train[1]), "val": len(val[1]), "epochs": hp.epochs,
                      "start": kwargs.get("start_weights"), "end": model.get_weights()})
        return model, record

    monkeypatch.setattr(select_model, "fit_model", recording_fit)
    return calls


def test_extra_root_adds_its_images_to_every_training_split_and_never_to_validation(numbered_dataset, tmp_path,
                                                                                     fit_calls, capsys):
    from pipeline import generate_letters
    extra = tmp_path / "extra"
    generate_letters.generate(extra, per_class=2, seed=3, progress=False)      # 54 images of other writers
    args = one_epoch_args(numbered_dataset, tmp_path, "--folds", "0,2", "--extra-root", str(extra))
    assert select_model.main(args) == 0
    assert [(c["train"], c["val"]) for c in fit_calls] == [(162 + 54, 54), (162 + 54, 54)]
    result = json.loads((tmp_path / "result.json").read_text())
    assert [(f["train_images"], f["extra_images"], f["val_images"]) for f in result["folds"]] == [(216, 54, 54)] * 2
    assert f"training on 216 images: 54 extra from {extra}" in capsys.readouterr().out
    (tmp_path / "empty" / "alef").mkdir(parents=True)
    with pytest.raises(SystemExit):
        select_model.main(args[:-2] + ["--extra-root", str(tmp_path / "empty")])
    assert "--extra-root: no images in the class folders of" in capsys.readouterr().err


def test_pretrain_root_trains_each_seed_once_and_every_fold_fine_tunes_from_it(numbered_dataset, tmp_path,
                                                                              fit_calls, capsys):
    from pipeline import generate_letters
    pretrain = tmp_path / "pretrain"
    generate_letters.generate(pretrain, per_class=2, seed=3, progress=False)      # 54 images of other writers
    args = one_epoch_args(numbered_dataset, tmp_path, "--folds", "0,2", "--pretrain-root", str(pretrain),
                          "--pretrain-epochs", "2")
    assert select_model.main(args) == 0
    # One pretraining (54 generated images, 2 epochs, random start), then each fold fine-tunes from its weights.
    assert [(c["train"], c["epochs"], c["start"] is None) for c in fit_calls] == [(54, 2, True), (162, 1, False),
                                                                                   (162, 1, False)]
    for fine_tune in fit_calls[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(fine_tune["start"], fit_calls[0]["end"]))
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["pretrain"] == {"root": str(pretrain), "images": 54, "epochs": 2}
    assert all(0 <= r["pretrained_top1"] <= r["pretrained_top3"] <= 1 for r in result["runs"])
    printed = capsys.readouterr().out
    assert printed.count("pretraining on 54 images") >= 1 and "pretrained network read from" in printed
    assert "the pretrained networks alone (54 images, 2 epochs)" in printed
    cached = sorted(p.name for p in (tmp_path / "cache").glob("pretrained-*"))
    assert len(cached) == 1 and not cached[0].endswith(".partial.npz")
    # A second run reads the cached network instead of pretraining again.
    fit_calls.clear()
    assert select_model.main(args[:-2] + ["--folds", "1"]) == 0
    assert [c["start"] is None for c in fit_calls] == [False]   # fine-tuning only
    with pytest.raises(SystemExit):
        select_model.main(args[:-2] + ["--pretrain-epochs", "0"])
    assert "--pretrain-epochs must be at least 1" in capsys.readouterr().err


def test_fit_model_starts_from_the_given_weights(numbered_dataset, tmp_path):
    hp = select_model.config_with(["epochs=1", "conv_widths=8,16", "learning_rate=1e-12", "augment=false"])
    images = select_model.load_split(numbered_dataset, hp.image_size, tmp_path / "cache")
    start, _ = select_model.fit_model(hp.replace(seed=5), images, images)
    model, _ = select_model.fit_model(hp.replace(seed=6), images, images, start_weights=start.get_weights())
    fresh, _ = select_model.fit_model(hp.replace(seed=6), images, images)
    # With a negligible learning rate the trained weights are where training started: the given weights.
    for began, ended, other in zip(start.trainable_weights, model.trainable_weights, fresh.trainable_weights):
        assert np.allclose(began.numpy(), ended.numpy(), atol=1e-6)
    assert not all(np.allclose(a.numpy(), b.numpy(), atol=1e-6)
                   for a, b in zip(start.trainable_weights, fresh.trainable_weights))


@pytest.mark.parametrize("pattern, problem", [(r"^\d+_\d+\.png$", "no group in"),
                                              ("(", "not a regular expression: '('")])
def test_a_writer_split_pattern_without_a_form_group_is_a_usage_error(pattern, problem, tmp_path, capsys):
    from bench.writer_split import main
    with pytest.raises(SystemExit) as caught:
        main(["--data-root", str(tmp_path), "--out", str(tmp_path / "out"), "--pattern", pattern])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and f"argument --pattern: {problem}" in err, err


def test_writer_split_never_replaces_a_folder_it_did_not_make(numbered_dataset, tmp_path, capsys):
    """--out is emptied before the links are made: pointed at the data itself (or any folder of the user's) it had
    deleted it. Only a new or empty folder, or a split it made before, is written into."""
    from bench.writer_split import main, writer_split
    import shutil
    data = tmp_path / "data"
    shutil.copytree(numbered_dataset, data)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    for out in (data, data.parent, data / "split"):     # the data, a folder holding it, one inside it
        with pytest.raises(SystemExit):
            main(["--data-root", str(data), "--out", str(out)])
        assert "which bench.writer_split reads" in capsys.readouterr().err
    assert not (data / "split").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(SystemExit):
        main(["--data-root", str(data), "--out", str(tmp_path / "mine")])
    assert "was not made by bench.writer_split" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before
    first = writer_split(str(data), str(tmp_path / "split"), 0.2)
    assert writer_split(str(data), str(tmp_path / "split"), 0.2, fold=0) == first   # its own split: replaced


def test_a_data_root_without_hhd_names_is_refused_before_any_training(tmp_path, capsys):
    from bench import select_model
    (tmp_path / "alef").mkdir()
    (tmp_path / "alef" / "alef_hand_0000.png").write_bytes(b"x")
    with pytest.raises(SystemExit):
        select_model.main(["--data-root", str(tmp_path), "--set", "epochs=1"])
    assert "so no writer can be held out" in capsys.readouterr().err


def test_one_seed_trains_one_network(numbered_dataset, tmp_path):
    hp = select_model.config_with(["epochs=2", "conv_widths=8,16", "seed=3"])
    images = select_model.load_split(numbered_dataset, hp.image_size, tmp_path / "cache")
    first, _ = select_model.fit_model(hp, images, images)
    second, _ = select_model.fit_model(hp, images, images)
    for a, b in zip(first.get_weights(), second.get_weights()):
        assert np.array_equal(a, b)


def test_the_training_seconds_leave_out_the_scoring_of_the_validation_images(monkeypatch):
    """A scoring that takes 1,000 s (on a clock moved by the scoring alone) is not counted as training."""
    import types
    clock = {"scoring": 0.0}
    real_monotonic, real_metrics = select_model.time.monotonic, select_model.evaluate.compute_metrics

    def slow_metrics(labels, probs):
        clock["scoring"] += 1000.0
        return real_metrics(labels, probs)

    monkeypatch.setattr(select_model, "time", types.SimpleNamespace(monotonic=lambda: real_monotonic() + clock["scoring"]))
    monkeypatch.setattr(select_model.evaluate, "compute_metrics", slow_metrics)
    hp = select_model.config_with(["epochs=1", "conv_widths=8,16", "seed=1"])
    rng = np.random.default_rng(0)
    images = rng.random((54, hp.image_size, hp.image_size, 1), dtype=np.float32)
    labels = np.arange(54) % 27
    _, record = select_model.fit_model(hp, (images, labels), (images[:27], labels[:27]))
    assert record["seconds"] < 1000 <= record["score_seconds"]
    assert record["history"][-1]["seconds"] == record["seconds"]


@pytest.mark.parametrize("flag", ["--extra-root", "--pretrain-root"])
def test_extra_or_pretraining_letters_of_the_held_out_writers_are_refused(numbered_dataset, tmp_path, flag, monkeypatch,
                                                                         capsys):
    """The held-out writers are never trained on: not as the data root itself, nor as a copy of one letter."""
    monkeypatch.setattr(select_model, "run_fold", lambda *a, **k: pytest.fail("a fold was trained"))
    from PIL import Image
    from tests.conftest import png_bytes
    copy = tmp_path / "copy" / "vav"
    copy.mkdir(parents=True)
    with Image.open(numbered_dataset / "vav" / "7_1.png") as img:        # fold 0 holds out forms 0 and 1
        (copy / "renamed.png").write_bytes(png_bytes(img.convert("RGB")))
    for root, folds, says in ((numbered_dataset, "4", "lies inside it or holds it"),
                              (tmp_path / "copy", "3,0", "vav/renamed.png is vav/7_1.png")):
        with pytest.raises(SystemExit) as caught:
            select_model.main(one_epoch_args(numbered_dataset, tmp_path, "--folds", folds, flag, str(root)))
        err = capsys.readouterr().err
        assert caught.value.code == 2 and says in err
        assert f"{flag} would train on letters of the held-out writers of --data-root" in err
    assert not (tmp_path / "result.json").exists()


@pytest.mark.parametrize("json_path, message", [("missing/result.json", "does not exist"), ("a_dir", "is a folder")])
def test_a_json_that_cannot_be_written_is_refused_before_any_training(tmp_path, json_path, message, monkeypatch,
                                                                      capsys):
    """--json had been opened after all the training: a folder not made yet lost the results in a traceback."""
    monkeypatch.setattr(select_model, "run_fold", lambda *a, **k: pytest.fail("a fold was trained"))
    (tmp_path / "data" / "alef").mkdir(parents=True)
    (tmp_path / "data" / "alef" / "1_1.png").write_bytes(b"x")   # an HHD-like name: the hold-out is possible
    (tmp_path / "a_dir").mkdir()
    with pytest.raises(SystemExit) as caught:
        select_model.main(["--data-root", str(tmp_path / "data"), "--json", str(tmp_path / json_path)])
    assert caught.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("share", ["0", "1", "1.5", "-0.5"])
def test_a_holdout_share_out_of_range_is_refused_as_train_hhd_refuses_it(tmp_path, share, monkeypatch, capsys):
    """One check for both benches (bench.writer_split.share_flag); here a hold-out is needed, so 0 is refused too."""
    monkeypatch.setattr(select_model, "run_fold", lambda *a, **k: pytest.fail("a fold was trained"))
    (tmp_path / "alef").mkdir()
    (tmp_path / "alef" / "1_1.png").write_bytes(b"x")
    with pytest.raises(SystemExit) as caught:
        select_model.main(["--data-root", str(tmp_path), "--holdout-share", share])
    assert caught.value.code == 2
    assert f"argument --holdout-share: the validation share must be in (0, 1), got {float(share)}" in \
        capsys.readouterr().err


def test_writer_split_refuses_a_val_share_out_of_range(tmp_path, capsys):
    from bench.writer_split import main
    (tmp_path / "alef").mkdir()
    (tmp_path / "alef" / "1_1.png").write_bytes(b"x")
    with pytest.raises(SystemExit) as caught:
        main(["--data-root", str(tmp_path), "--out", str(tmp_path.parent / "split"), "--val-share", "1.5"])
    assert caught.value.code == 2 and "--val-share: the validation share must be in [0, 1), got 1.5" in \
        capsys.readouterr().err
    assert not (tmp_path.parent / "split").exists()


def test_a_fold_given_twice_is_refused_before_any_training(tmp_path, monkeypatch, capsys):
    """--folds 0,0 had trained fold 0 twice and pooled its letters twice into the cross-validated score."""
    monkeypatch.setattr(select_model, "run_fold", lambda *a, **k: pytest.fail("a fold was trained"))
    (tmp_path / "alef").mkdir()
    (tmp_path / "alef" / "1_1.png").write_bytes(b"x")
    with pytest.raises(SystemExit) as caught:
        select_model.main(["--data-root", str(tmp_path), "--folds", "2,0,2"])
    assert caught.value.code == 2 and "--folds: fold 2 given more than once" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--student-seed", "-5", "--seeds", "1,2", "--distil", "0.5"], "argument --student-seed: must be at least 0, got -5"),
    (["--seeds", "-1"], "argument --seeds: want integers of at least 0, got '-1'"),
    (["--seeds", "42,-2"], "argument --seeds: want integers of at least 0, got '42,-2'"),
    (["--seeds", "42,x"], "argument --seeds: want comma-separated integers, got '42,x'")])
def test_a_negative_seed_is_refused_before_any_training(tmp_path, flags, message, monkeypatch, capsys):
    """A negative --seeds or --student-seed had been taken and ended in a traceback once a network was trained."""
    monkeypatch.setattr(select_model, "run_fold", lambda *a, **k: pytest.fail("a fold was trained"))
    (tmp_path / "alef").mkdir()
    (tmp_path / "alef" / "1_1.png").write_bytes(b"x")
    with pytest.raises(SystemExit) as caught:
        select_model.main(["--data-root", str(tmp_path), *flags])
    assert caught.value.code == 2 and message in capsys.readouterr().err
