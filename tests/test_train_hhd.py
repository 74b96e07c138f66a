"""bench/train_hhd.py --folds: the pipeline run once per writer fold, the held-out scores pooled image by image."""
import json
import os
import sys

import pytest

from bench import train_hhd
from core import configs
from tests.support.processes import sigterm_stops_all


def test_pooled_counts_each_image_once():
    runs = [{"val_unseen_writers_top1": 0.9, "val_unseen_writers_top3": 1.0, "val_images": 10},
            {"val_unseen_writers_top1": 0.5, "val_unseen_writers_top3": 0.5, "val_images": 30}]
    assert train_hhd.pooled(runs) == {"val_unseen_writers_top1": 0.6, "val_unseen_writers_top3": 0.625,
                                      "val_images": 40}
    with pytest.raises(ValueError, match="no held-out image"):
        train_hhd.pooled([{"val_unseen_writers_top1": 0.0, "val_unseen_writers_top3": 0.0, "val_images": 0}])


@pytest.mark.parametrize("argv, message", [
    (["--folds", "0,5", "--data-root", "x"], "fold must be in 0..4"),
    (["--folds", "0,a", "--data-root", "x"], "--folds"),
    (["--folds", "1"], "--folds needs --data-root"),
    (["--folds", "0,3,0", "--data-root", "x"], "--folds: fold 0 given more than once"),
])
def test_bad_folds_are_refused(argv, message, capsys, tmp_path):
    (tmp_path / "alef").mkdir()
    (tmp_path / "alef" / "1_1.png").write_bytes(b"x")          # an HHD-like name: the hold-out is possible
    with pytest.raises(SystemExit) as exit_info:
        train_hhd.main([str(tmp_path) if a == "x" else a for a in argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_each_fold_runs_in_its_own_root_and_the_scores_are_pooled(data, tmp_path, monkeypatch, capsys):
    scores = {0: (0.8, 0.9, 100), 3: (0.7, 1.0, 300)}
    calls = []

    def fake_run(args, work, fold, reproduce):   # the pipeline run itself is what the other tests cover
        calls.append((fold, work, args.data_root))
        args.data_root = "changed by the run"      # as run() does: must not leak into the next fold
        top1, top3, images = scores[fold]
        work.mkdir(parents=True)
        (work / "bench.json").write_text(json.dumps({"val_unseen_writers_top1": top1, "val_unseen_writers_top3": top3,
                                                     "val_images": images, "wall_seconds": 1.0}))
        return 0

    monkeypatch.setattr(train_hhd, "run", fake_run)
    work = tmp_path / "work"
    assert train_hhd.main(["--folds", "0,3", "--data-root", str(data), "--work", str(work)]) == 0
    assert calls == [(0, work / "fold-0", str(data)), (3, work / "fold-3", str(data))]
    result = json.loads((work / "bench.json").read_text())
    assert result["val_unseen_writers_top1"] == pytest.approx((0.8 * 100 + 0.7 * 300) / 400, abs=1e-4)
    assert result["val_unseen_writers_top3"] == pytest.approx((0.9 * 100 + 1.0 * 300) / 400, abs=1e-4)
    assert result["per_fold_top1"] == [0.8, 0.7] and result["val_images"] == 400
    assert "--folds 0,3" in capsys.readouterr().out


def test_a_failed_fold_stops_the_cross_validation(data, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(train_hhd, "run", lambda args, work, fold, reproduce: calls.append(fold) or 3)
    assert train_hhd.main(["--folds", "1,2", "--data-root", str(data), "--work", str(tmp_path / "work")]) == 3
    assert calls == [1] and not (tmp_path / "work" / "bench.json").exists()


def test_a_fold_without_a_pushed_model_stops_the_cross_validation(data, tmp_path, monkeypatch, capsys):
    def unblessed(args, work, fold, reproduce):
        work.mkdir(parents=True)
        (work / "bench.json").write_text(json.dumps({"blessed": False, "wall_seconds": 1.0}))
        return 0

    monkeypatch.setattr(train_hhd, "run", unblessed)
    work = tmp_path / "work"
    assert train_hhd.main(["--folds", "2,4", "--data-root", str(data), "--work", str(work)]) == 1
    assert "fold 2: the pipeline pushed no model (blessed: False)" in capsys.readouterr().out
    assert not (work / "bench.json").exists() and not (work / "fold-4").exists()


@pytest.fixture
def data(tmp_path):
    """Two class folders of forms 1..10, named as HHD names them (not images: the pipeline is not run)."""
    root = tmp_path / "data"
    for name in ("alef", "bet"):
        (root / name).mkdir(parents=True)
        for form in range(1, 11):
            (root / name / f"0_{form}.png").write_bytes(b"not read here")
    return root


def test_run_holds_out_the_folds_block_of_forms_and_passes_the_rest_to_the_pipeline(data, tmp_path, monkeypatch):
    launched = []

    def no_pipeline(cmd, log_path):   # stops right after the split: the pipeline run is covered elsewhere
        launched.append(cmd)
        return 1, 0.0, 0

    monkeypatch.setattr(train_hhd, "run_with_peak_rss", no_pipeline)
    assert train_hhd.main(["--folds", "1,4", "--data-root", str(data), "--work", str(tmp_path / "w")]) == 1
    val = sorted(p.name for p in (tmp_path / "w" / "fold-1" / "split" / "val" / "alef").iterdir())
    train = sorted(p.name for p in (tmp_path / "w" / "fold-1" / "split" / "train" / "alef").iterdir())
    assert val == ["0_3.png", "0_4.png"]                          # the second fifth of the forms, 1..10
    assert len(train) == 8 and not set(val) & set(train)
    assert launched[0][launched[0].index("--data-root") + 1] == str(tmp_path / "w" / "fold-1" / "split" / "train")


def test_a_work_folder_used_before_gives_a_fresh_pipeline_root(data, tmp_path, monkeypatch):
    """A --work of an earlier run had its pipeline root reused: the run was a cache hit, timed as a measurement."""
    seen = []

    def no_pipeline(cmd, log_path):
        root = cmd[cmd.index("--pipeline-root") + 1]
        seen.append(os.path.exists(os.path.join(root, "metadata.sqlite")))
        os.makedirs(root, exist_ok=True)
        open(os.path.join(root, "metadata.sqlite"), "w").close()   # what a finished run leaves
        return 1, 0.0, 0

    monkeypatch.setattr(train_hhd, "run_with_peak_rss", no_pipeline)
    for _ in range(2):
        train_hhd.main(["--data-root", str(data), "--work", str(tmp_path / "w")])
    assert seen == [False, False]


def test_train_share_keeps_the_first_writers_of_each_class_and_the_same_hold_out(data, tmp_path, monkeypatch,
                                                                                  capsys):
    monkeypatch.setattr(train_hhd, "run_with_peak_rss", lambda cmd, log_path: (1, 0.0, 0))
    assert train_hhd.main(["--folds", "0", "--train-share", "0.5", "--data-root", str(data),
                           "--work", str(tmp_path / "w")]) == 1
    split = tmp_path / "w" / "fold-0" / "split"
    assert sorted(p.name for p in (split / "val" / "bet").iterdir()) == ["0_1.png", "0_2.png"]
    assert sorted(p.name for p in (split / "train" / "bet").iterdir()) == ["0_3.png", "0_4.png", "0_5.png", "0_6.png"]
    assert all((data / "bet" / f"0_{form}.png").exists() for form in range(1, 11))   # only links were removed
    assert "training on the first 0.5 of each class's forms: 8 files" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--train-share", "0", "--data-root", "x"], "--train-share must be in (0, 1]"),
    (["--train-share", "1.5", "--data-root", "x"], "--train-share must be in (0, 1]"),
    (["--train-share", "0.5"], "--train-share needs --data-root"),
    (["--train-share", "0.5", "--data-root", "x", "--holdout-share", "0"], "--train-share needs --data-root"),
    (["--as-feedback", "--data-root", "x"], "--as-feedback needs --data-root"),
    (["--as-feedback", "--mix-generated", "5"], "--as-feedback needs --data-root"),
    (["--as-feedback", "--mix-generated", "5", "--data-root", "x", "--with-feedback"], "drop --with-feedback"),
    (["--mix-generated", "5"], "--mix-generated needs --data-root"),   # it had been ignored
])
def test_bad_train_shares_and_feedback_runs_are_refused(argv, message, capsys, monkeypatch):
    monkeypatch.setattr(train_hhd, "run", lambda *a: pytest.fail("the pipeline ran"))
    with pytest.raises(SystemExit) as exit_info:
        train_hhd.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_as_feedback_stores_the_training_letters_as_feedback_and_trains_on_generated_ones(tmp_path, monkeypatch):
    from core.feedback import FeedbackStore
    from tests.conftest import letter_image, png_bytes
    root = tmp_path / "data"
    for seed, name in enumerate(("alef", "bet")):     # each letter its own image (the store keeps one label each)
        (root / name).mkdir(parents=True)
        for form in range(1, 11):
            (root / name / f"0_{form}.png").write_bytes(png_bytes(letter_image(30 + form, 40, seed=seed)))
    launched = []
    monkeypatch.setattr(train_hhd, "run_with_peak_rss", lambda cmd, log_path: launched.append(cmd) or (1, 0.0, 0))
    work = tmp_path / "w"
    assert train_hhd.main(["--folds", "0", "--train-share", "0.5", "--mix-generated", "1", "--as-feedback",
                           "--data-root", str(root), "--work", str(work)]) == 1
    fold = work / "fold-0"
    cmd = launched[0]
    assert cmd[cmd.index("--feedback-dir") + 1] == str(fold / "feedback_store") and "--no-feedback" not in cmd
    assert cmd[cmd.index("--data-root") + 1] == str(fold / "generated")          # the generated letters only
    assert not list((fold / "split" / "train").glob("*/gen_*"))
    store = FeedbackStore(fold / "feedback_store")
    try:
        records = store.records()
        stored = sorted((r.true_label, (fold / "feedback_store" / r.image_path).read_bytes()) for r in records)
    finally:
        store.close()
    trained = sorted((p.parent.name, p.read_bytes()) for p in (fold / "split" / "train").glob("*/*"))
    assert len(trained) == 8 and stored == trained          # forms 3..6 of each class, with their labels
    # the same --work again with another share: a new store of this run's letters, not the last run's as well
    assert train_hhd.main(["--folds", "0", "--train-share", "0.25", "--mix-generated", "1", "--as-feedback",
                           "--data-root", str(root), "--work", str(work)]) == 1
    store = FeedbackStore(fold / "feedback_store")
    try:
        assert len(store.records()) == len(list((fold / "split" / "train").glob("*/*"))) == 4
    finally:
        store.close()


def test_a_work_folder_the_bench_did_not_make_is_refused(tmp_path, capsys):
    """Each run empties --work's pipeline/ and serving/: pointed at the project (--work .) it had deleted the
    source packages of those names."""
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "code.py").write_text("x = 1\n")
    with pytest.raises(SystemExit):
        train_hhd.main(["--work", str(tmp_path), "--", "--epochs", "1"])
    assert "was not made by bench.train_hhd" in capsys.readouterr().err
    assert (tmp_path / "pipeline" / "code.py").exists()


def test_a_work_folder_inside_the_data_is_refused_before_anything_is_made(data, capsys):
    with pytest.raises(SystemExit) as caught:
        train_hhd.main(["--data-root", str(data), "--work", str(data / "bench"), "--", "--epochs", "1"])
    assert caught.value.code == 2 and "is inside" in capsys.readouterr().err
    assert not (data / "bench").exists()


@pytest.fixture
def pictures(tmp_path):
    """Two class folders of forms 1..10, each a different picture, named as HHD names them."""
    from tests.conftest import letter_image, png_bytes
    root = tmp_path / "pictures"
    for c, name in enumerate(("alef", "bet")):
        (root / name).mkdir(parents=True)
        for form in range(1, 11):
            (root / name / f"0_{form}.png").write_bytes(png_bytes(letter_image(12, 12, seed=100 * c + form)))
    return root


def copy_of(files, folder):
    """``files`` copied into ``folder``'s class folders, re-encoded (an RGB PNG of each) under new names."""
    from PIL import Image
    from tests.conftest import png_bytes
    for f in files:
        (folder / f.parent.name).mkdir(parents=True, exist_ok=True)
        with Image.open(f) as img:
            (folder / f.parent.name / f"copy_{f.name}").write_bytes(png_bytes(img.convert("RGB")))
    return folder


@pytest.mark.parametrize("score_root", ["same", "inside", "copy of a trained letter"])
def test_a_score_root_holding_letters_it_trains_on_is_refused(pictures, tmp_path, score_root, monkeypatch, capsys):
    monkeypatch.setattr(train_hhd, "run", lambda *a: pytest.fail("the pipeline ran"))
    root = {"same": pictures, "inside": pictures / "alef",
            "copy of a trained letter": copy_of([pictures / "bet" / "0_2.png"], tmp_path / "copy")}[score_root]
    with pytest.raises(SystemExit) as caught:
        train_hhd.main(["--data-root", str(pictures), "--score-root", str(root), "--work", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and "--score-root would score letters the pipeline trains on" in err
    assert ("copy_0_2.png is bet/0_2.png" in err) if score_root.startswith("copy") else "lies inside it" in err
    assert not (tmp_path / "w").exists()


def test_a_score_root_holding_only_held_out_letters_is_scored(pictures, tmp_path, monkeypatch):
    """The held-out writers' letters are never trained on: scoring copies of them is what --score-root is for;
    with folds each fold trains on the others' blocks, so only what every fold holds out may be scored."""
    launched = []
    monkeypatch.setattr(train_hhd, "run", lambda args, work, fold, reproduce: launched.append(fold) or 1)
    held_out = copy_of([pictures / "alef" / "0_9.png", pictures / "bet" / "0_10.png"], tmp_path / "held")
    args = ["--data-root", str(pictures), "--score-root", str(held_out), "--work", str(tmp_path / "w")]
    assert train_hhd.main(args) == 1 and launched == [None]
    with pytest.raises(SystemExit):
        train_hhd.main(args + ["--folds", "3,4"])


@pytest.mark.parametrize("with_data_root", [False, True])
def test_a_score_root_that_is_no_folder_is_refused_before_the_pipeline_runs(pictures, tmp_path, with_data_root,
                                                                           monkeypatch, capsys):
    """A missing --score-root had been found by the scoring, after the whole pipeline: a traceback, no result."""
    monkeypatch.setattr(train_hhd, "run", lambda *a: pytest.fail("the pipeline ran"))
    (tmp_path / "a_file").write_text("x")
    for score_root in (tmp_path / "missing", tmp_path / "a_file"):
        with pytest.raises(SystemExit) as caught:
            train_hhd.main(["--score-root", str(score_root), "--work", str(tmp_path / "w")]
                           + (["--data-root", str(pictures)] if with_data_root else []))
        err = capsys.readouterr().err
        assert caught.value.code == 2 and f"--score-root {score_root} is not a folder" in err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("argv, message", [
    (["--holdout-share", "1.5"], "argument --holdout-share: the validation share must be in [0, 1), got 1.5"),
    (["--holdout-share", "-0.5"], "argument --holdout-share: the validation share must be in [0, 1), got -0.5"),
    (["--holdout-share", "1"], "must be in [0, 1)"),
    (["--mix-generated", "-3"], "argument --mix-generated: must be at least 1, got -3"),
    (["--mix-generated", "0"], "argument --mix-generated: must be at least 1, got 0"),
])
def test_a_share_or_count_out_of_range_is_refused_before_the_pipeline_runs(data, argv, message, tmp_path,
                                                                          monkeypatch, capsys):
    """A share of 1.5 had held out half the forms, -0.5 none (nothing scored), and -3 generated letters had ended in
    a traceback; each had been taken silently."""
    monkeypatch.setattr(train_hhd, "run", lambda *a: pytest.fail("the pipeline ran"))
    with pytest.raises(SystemExit) as caught:
        train_hhd.main(argv + ["--data-root", str(data), "--work", str(tmp_path / "w")])
    assert caught.value.code == 2 and message in capsys.readouterr().err


def test_no_hold_out_is_a_share_of_zero(data, tmp_path, monkeypatch):
    shares = []
    monkeypatch.setattr(train_hhd, "run", lambda args, work, fold, reproduce: shares.append(args.holdout_share) or 1)
    assert train_hhd.main(["--holdout-share", "0", "--data-root", str(data), "--work", str(tmp_path / "w")]) == 1
    assert shares == [0.0]


def test_a_score_root_letters_evaluate_would_refuse_is_refused_before_the_pipeline_runs(tmp_path, monkeypatch,
                                                                                       capsys):
    monkeypatch.setattr(train_hhd, "run", lambda *a: pytest.fail("the pipeline ran"))
    (tmp_path / "real" / "Gimel").mkdir(parents=True)
    (tmp_path / "real" / "Gimel" / "1.png").write_bytes(b"x")
    with pytest.raises(SystemExit) as caught:
        train_hhd.main(["--score-root", str(tmp_path / "real"), "--work", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and "--score-root: " in err and "did you mean 'gimel'?" in err


def test_a_relative_data_root_is_read_from_where_the_bench_was_started(data, tmp_path, monkeypatch):
    """The runner runs in the project's folder: --data-root hhd given in /tmp had been read there (failing, or
    training on the project's folder of that name)."""
    launched = []
    monkeypatch.setattr(train_hhd, "run_with_peak_rss", lambda cmd, log_path: launched.append(cmd) or (1, 0.0, 0))
    monkeypatch.chdir(data.parent)
    assert train_hhd.main(["--data-root", data.name, "--holdout-share", "0", "--work", str(tmp_path / "w")]) == 1
    assert launched[0][launched[0].index("--data-root") + 1] == str(data)


def test_a_stopped_bench_stops_the_pipeline_run_it_started(tmp_path):
    """SIGTERM had ended the bench alone: its local_runner.py, re-parented, ran on, writing into --work."""
    project = tmp_path / "project"   # a stand-in local_runner.py: starts a process of its own, then waits
    project.mkdir()
    pids = tmp_path / "pids"
    (project / "local_runner.py").write_text(
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(pids)!r} + '.part', 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        f"os.replace({str(pids)!r} + '.part', {str(pids)!r})\n"
        "time.sleep(120)\n")
    command = [sys.executable, "-c", "import sys; from pathlib import Path; from bench import train_hhd; "
               f"train_hhd.ROOT = Path({str(project)!r}); "
               f"sys.exit(train_hhd.main(['--work', {str(tmp_path / 'work')!r}]))"]
    assert sigterm_stops_all(command, pids, cwd=str(configs.PROJECT_ROOT)) == []
