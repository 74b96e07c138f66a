"""The whole pipeline on tiny generated data, run several times: blessing, push, caching, versions."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from components.atomic_pusher import PUSH_RECORD, pushed_versions
from core import configs
from pipeline import generate_letters
from core.labels import CLASS_NAMES
from tests.conftest import ROOT, letter_image, png_bytes, run_pipeline
from tests.support import serving as testing

pytestmark = pytest.mark.slow   # each test runs local_runner

UPSTREAM = {"ImageExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer"}


def version_dirs(serving: Path) -> list[str]:
    return sorted(p.name for p in serving.iterdir())


def test_first_run_blesses_and_pushes_a_complete_version(pipeline_runs):
    first, serving = pipeline_runs["first"], pipeline_runs["work"] / "serving"
    assert all(state == "complete" for state in first["components"].values()), first["components"]
    assert first["examples_per_split"]["train"] > first["examples_per_split"]["eval"] > 0
    assert first["ingest"]["skipped"] == 0
    # counted by StatisticsGen: every example the ExampleGen kept, in one split or the other
    assert first["examples_per_split"]["train"] + first["examples_per_split"]["eval"] == first["ingest"]["kept"]
    assert first["blessed"] is True and first["had_baseline"] is False
    assert first["serving_validated"] is True and first["serving_validation"]["failure"] == ""
    assert first["pushed"] is True
    version = first["pushed_version"]
    assert version.isdigit() and first["pushed_destination"] == str(serving / version)
    assert (serving / version / "saved_model.pb").is_file()
    assert (serving / version / "variables" / "variables.index").is_file()
    assert (serving / version / PUSH_RECORD).is_file()
    assert version_dirs(serving) == [version]          # nothing half-written left behind
    # the budget: announced before the pipeline starts (estimated from the files), then the Trainer's own
    train = first["examples_per_split"]["train"]
    output = pipeline_runs["first_output"]
    hint, *first_lines = output.splitlines()[:3]
    assert hint.startswith("Data: 216 images in ")   # 8 per class: the small-data hint comes first
    assert first_lines[0].startswith("Pipeline: data ") and first_lines[1].startswith("training budget: 3 epochs × ")
    assert "(epochs chosen; about " in first_lines[1]
    trained = configs.training_budget(train, configs.Config().batch_size, 3)
    assert f"Trainer: {trained.describe()}" in output
    assert {k: first["training"][k] for k in ("epochs", "steps", "train_examples", "budget")} == {
        "epochs": 3, "steps": trained.steps, "train_examples": train, "budget": "chosen"}
    per_class = first["evaluation"]["per_class"]          # one slice per class present in the eval split
    assert set(per_class) <= set(CLASS_NAMES) and len(per_class) > 10
    assert sum(m["example_count"] for m in per_class.values()) == first["examples_per_split"]["eval"]
    # the overall accuracy is the slices' accuracies weighted by their examples
    overall = first["evaluation"]["overall"]["sparse_categorical_accuracy"]
    weighted = sum(m["sparse_categorical_accuracy"] * m["example_count"] for m in per_class.values())
    assert overall == pytest.approx(weighted / first["examples_per_split"]["eval"], abs=1e-6)


def test_unchanged_rerun_uses_the_cache_and_says_its_baseline_is_its_own_model(pipeline_runs):
    first, second = pipeline_runs["first"], pipeline_runs["second"]
    serving = pipeline_runs["work"] / "serving"
    states = second["components"]
    assert {name for name, state in states.items() if state == "cached"} >= UPSTREAM
    assert states["Evaluator"] == "complete"               # a new baseline exists now
    assert second["had_baseline"] is True
    # the Trainer cached with the last blessed model: the Evaluator was given it as candidate and baseline, so
    # nothing was compared, and the summary says so (not a change of +0.0000 as if another model had been judged)
    assert second["baseline_is_this_model"] is True and second["compared_with_last_blessed"] is False
    assert second["not_compared_because"] == f"it is this same model ({second['baseline_model']})"
    assert pipeline_runs["first"]["compared_with_last_blessed"] is False
    base = second["evaluation"]["baseline"]["sparse_categorical_accuracy"]
    assert base == first["evaluation"]["overall"]["sparse_categorical_accuracy"]
    assert second["blessed"] is True                       # the same model is no worse than itself
    assert second["pushed_version"] == first["pushed_version"]
    assert version_dirs(serving) == [first["pushed_version"]]   # the same model is not pushed twice


def test_a_removed_version_is_pushed_again_by_the_next_run(pipeline_runs, tiny_dataset, own_work):
    """The Pusher is never a cache hit: the re-run found the model served and said so; with its version removed,
    a run pushes it again (every other component cached) instead of reporting the earlier push."""
    second = pipeline_runs["second"]
    assert second["components"]["Pusher"] == "complete" and second["pushed_copied"] is False
    serving = own_work / "serving"
    for version in version_dirs(serving):
        shutil.rmtree(serving / version)
    for _ in range(2):                                   # the same emptied serving dir twice: pushed both times
        summary, _ = run_pipeline(tiny_dataset, own_work, "--epochs", "3", "--accuracy-floor", "0.0",
                                  "--max-regression", "1.0")
        assert summary["components"]["Trainer"] == "cached" and summary["components"]["Pusher"] == "complete"
        assert summary["pushed"] is True and summary["pushed_copied"] is True
        assert version_dirs(serving) == [summary["pushed_version"]]
        shutil.rmtree(serving / summary["pushed_version"])


FULL_DISK_PUSH = r"""
import sys
import tensorflow as tf
from tfx.utils import io_utils
import local_runner

copy_dir = io_utils.copy_dir

def full_disk(src, dst, **kwargs):   # the copy gets as far as the weights, then the disk is full
    copy_dir(src, dst, **kwargs)
    raise tf.errors.ResourceExhaustedError(
        None, None, f"{dst}/variables/variables.data-00000-of-00001; No space left on device")

io_utils.copy_dir = full_disk
sys.exit(local_runner.main(sys.argv[1:]))
"""


def test_a_push_the_serving_dir_cannot_take_is_one_line_after_the_summary(pipeline_runs, tiny_dataset, own_work):
    """A full disk (any write error) during the Pusher's copy: the gate's and the serving check's verdicts are
    summarized (--summary-json too) with why nothing was pushed, then one line, status 2: it had been a
    TensorFlow traceback, no summary. The staging folder is removed."""
    serving = own_work / "serving"
    for version in version_dirs(serving):
        shutil.rmtree(serving / version)
    summary_json = own_work / "summary-full-disk.json"
    proc = subprocess.run([sys.executable, "-c", FULL_DISK_PUSH, "--data-root", str(tiny_dataset),
                           "--pipeline-root", str(own_work / "pipeline"), "--serving-dir", str(serving),
                           "--summary-json", str(summary_json), "--no-feedback", "--no-pretrain", "--quiet",
                           "--epochs", "3", "--accuracy-floor", "0.0", "--max-regression", "1.0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    why = f"the Pusher could not write to the serving dir {serving}: No space left on device"
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {why} (nothing was published; the model was blessed and passed the serving check: run the same "
        "command again once it can be written, finished steps are reused from the cache)")
    assert "gate: BLESSED" in proc.stdout and f"pushed: NOTHING — {why}" in proc.stdout
    summary = json.loads(summary_json.read_text())
    assert summary["components"]["Pusher"] == "failed" and summary["components"]["Trainer"] == "cached"
    assert summary["blessed"] is True and summary["serving_validated"] is True
    assert summary["pushed"] is False and summary["push_failed"] == why
    assert version_dirs(serving) == []   # no version, no staging folder


def test_gate_refuses_a_model_below_the_floor(pipeline_runs, tiny_dataset, own_work):
    work = own_work
    summary, _ = run_pipeline(tiny_dataset, work, "--epochs", "3", "--accuracy-floor", "1.0",
                              "--max-regression", "1.0")
    assert summary["components"]["Trainer"] == "cached"
    assert summary["blessed"] is False and summary["pushed"] is False
    assert any("below the floor" in f for f in summary["validation_failures"])
    assert version_dirs(work / "serving") == [pipeline_runs["first"]["pushed_version"]]


def test_new_data_pushes_a_newer_version_and_a_worse_candidate_is_refused(pipeline_runs, tiny_dataset, tmp_path,
                                                                            own_work):
    """New images: ImageExampleGen and Trainer run again, and the new model (15 epochs without augmentation, long
    enough to read the letters) is blessed against the last blessed model and pushed as a newer version. Then the
    "no worse than the last blessed model" half of the gate: a candidate worse by more than --max-regression (0.01,
    the default; one epoch at a learning rate of 1e-7, so about its random initial weights) is refused although the
    floor lets anything pass: not blessed, nothing pushed, and the model server keeps answering from the blessed
    version."""
    grown = tmp_path / "grown"
    shutil.copytree(tiny_dataset, grown)
    generate_letters.generate(tmp_path / "more", per_class=2, seed=99, progress=False)
    for path in (tmp_path / "more").glob("*/*.png"):
        shutil.copy(path, grown / path.parent.name / ("more_" + path.name))
    good, _ = run_pipeline(grown, own_work, "--epochs", "15", "--no-augment", "--accuracy-floor", "0.0",
                           "--max-regression", "1.0")
    assert good["components"]["ImageExampleGen"] == "complete" and good["components"]["Trainer"] == "complete"
    assert good["had_baseline"] is True and good["blessed"] is True and good["pushed"] is True
    first, new = int(pipeline_runs["first"]["pushed_version"]), int(good["pushed_version"])
    assert new > first
    versions = pushed_versions(str(own_work / "serving"))
    assert sorted(versions) == [first, new]
    assert versions[first]["fingerprint"] != versions[new]["fingerprint"]

    blessed = good["evaluation"]["overall"]["sparse_categorical_accuracy"]
    before = version_dirs(own_work / "serving")
    with testing.start_server(own_work / "serving", file_system_poll_wait_seconds=0.2) as server:
        summary, _ = run_pipeline(grown, own_work, "--epochs", "1", "--learning-rate", "1e-7",
                                  "--accuracy-floor", "0.0")
        candidate = summary["evaluation"]["overall"]["sparse_categorical_accuracy"]
        assert candidate < blessed - 0.01, (candidate, blessed)      # the premise: a real regression
        assert summary["components"]["ImageExampleGen"] == "cached"
        assert summary["components"]["Trainer"] == "complete" and summary["had_baseline"] is True
        assert summary["evaluation"]["baseline"]["sparse_categorical_accuracy"] == blessed
        assert summary["blessed"] is False and summary["pushed"] is False
        assert any("against the last blessed model" in f for f in summary["validation_failures"]), summary
        assert version_dirs(own_work / "serving") == before
        client = testing.RestClient(server.url)
        assert client.get("/v1/models/letters/metadata")[1]["model_spec"]["version"] == str(new)
        status = client.get("/v1/models/letters")[1]["model_version_status"]
        assert [(s["version"], s["state"]) for s in status] == [(str(new), "AVAILABLE")]
        image = next(tiny_dataset.glob("alef/*.png")).read_bytes()
        answer = client.post("/v1/models/letters:predict", {"signature_name": configs.IMAGE_SIGNATURE,
                                                            "instances": [testing.b64(image)]})
        assert answer[0] == 200 and len(answer[1]["predictions"][0]["probabilities"]) == len(CLASS_NAMES)


def failed_before_any_step(summary, reason: str) -> bool:
    """Whether --summary-json is a failed run's, ended before any step for ``reason`` (the start of its error)."""
    return (summary is not None and summary["failed_because"].startswith(reason) and summary["components"] == {}
            and summary["pushed"] is False and summary["failed_step"] is None)


def test_runner_explains_a_data_root_without_images(tmp_path):
    (tmp_path / "data").mkdir()
    summary, proc = run_pipeline(tmp_path / "data", tmp_path, check=False)
    assert proc.returncode != 0 and failed_before_any_step(summary, "no files match")
    assert "one folder per class" in proc.stderr


def test_runner_refuses_a_data_root_with_no_class_folder_before_running(tmp_path):
    for folder in ("Alef", "aleph"):
        (tmp_path / "data" / folder).mkdir(parents=True)
        (tmp_path / "data" / folder / "x.png").write_bytes(b"\x89PNG")
    summary, proc = run_pipeline(tmp_path / "data", tmp_path, check=False)
    assert proc.returncode == 2 and failed_before_any_step(summary, "none of the folders in")
    assert "(Alef, aleph) is a class folder" in proc.stderr and "named exactly alef" in proc.stderr
    assert not (tmp_path / "pipeline").exists()        # refused before the pipeline started


def test_runner_refuses_a_folder_named_like_a_class_that_has_none_before_running(tmp_path):
    """alef beside Bet, Gimel: the run had trained and gated a model of alef alone, the rest skipped."""
    for folder in ("alef", "Bet", "Gimel", "misc"):
        (tmp_path / "data" / folder).mkdir(parents=True)
        (tmp_path / "data" / folder / "x.png").write_bytes(png_bytes(letter_image(40, 50)))
    summary, proc = run_pipeline(tmp_path / "data", tmp_path, check=False)
    assert proc.returncode == 2 and failed_before_any_step(summary, str(tmp_path / "data")), proc.stderr[-2000:]
    assert "'Bet' is not a class folder: did you mean 'bet'?" in proc.stderr
    assert "'Gimel' is not a class folder: did you mean 'gimel'?" in proc.stderr and "misc" not in proc.stderr
    assert not (tmp_path / "pipeline").exists()        # refused before the pipeline started


def test_runner_refuses_unwritable_output_paths_before_running(tiny_dataset, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    serving = ["--serving-dir", str(tmp_path / "serving")]
    for flags, message in ((["--pipeline-root", str(a_file / "root"), *serving],
                            f"--pipeline-root: cannot create {a_file / 'root'}: {a_file} is not a folder"),
                           (["--summary-json", str(tmp_path / "no" / "s.json"), *serving], "does not exist"),
                           # found before the run, not by the Pusher after training
                           (["--serving-dir", str(a_file)], f"--serving-dir: {a_file} is not a folder"),
                           (["--metadata-path", str(a_file / "m.sqlite"), *serving],
                            f"--metadata-path: {a_file} is not a folder"),
                           # SQLite cannot open a folder: it had failed after the pipeline started
                           (["--metadata-path", str(tmp_path), *serving],
                            f"--metadata-path: {tmp_path} is a folder; give a file name"),
                           # a link to a volume not mounted: TensorFlow's makedirs took it, the Pusher did not
                           (["--serving-dir", str(tmp_path / "dangling")],
                            f"--serving-dir: {tmp_path / 'dangling'} is a link to {tmp_path / 'gone'}, which does not "
                            "exist")):
        proc = subprocess.run([sys.executable, str(ROOT / "local_runner.py"), "--data-root", str(tiny_dataset),
                               "--pipeline-root", str(tmp_path / "pipeline"), *flags],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert not (tmp_path / "pipeline").exists()


def test_runner_stops_on_a_damaged_feedback_store(tiny_dataset, tmp_path):
    (tmp_path / "fb").mkdir()
    (tmp_path / "fb" / "feedback.sqlite").write_bytes(b"not a database" * 100)
    summary, proc = run_pipeline(tiny_dataset, tmp_path, "--feedback-dir", str(tmp_path / "fb"), check=False)
    assert proc.returncode == 2 and "cannot read the feedback store" in proc.stderr and "--no-feedback" in proc.stderr
    # the summary says the run failed before any step (not left out, which had kept an earlier run's in its place)
    assert summary["failed_because"].startswith("cannot read the feedback store") and summary["components"] == {}
    assert summary["pushed"] is False and summary["failed_step"] is None


def test_runner_explains_a_data_root_where_every_file_is_skipped(tmp_path):
    for folder in ("alef", "bet"):
        (tmp_path / "data" / folder).mkdir(parents=True)
        (tmp_path / "data" / folder / "1.png").write_bytes(b"not an image")
    summary, proc = run_pipeline(tmp_path / "data", tmp_path, check=False)
    assert proc.returncode == 2 and failed_before_any_step(summary, "no usable image found under")
    assert "Traceback" not in proc.stderr and "skipped 2 × not_an_image" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1].startswith("error: no usable image found under")
    assert not (tmp_path / "pipeline").exists()        # found before the pipeline started


def test_an_interrupted_run_says_so_in_one_line(tmp_path):
    """Ctrl-C (or SIGTERM) while the runner generates its default letters: exit 130 and one line saying what to do,
    not a traceback; the letters are marked unfinished (completed by the next run)."""
    import signal
    import time

    data = tmp_path / "generated"
    env = dict(os.environ, LETTERS_DATA_ROOT=str(data), LETTERS_GENERATE_PER_CLASS="300")
    proc = subprocess.Popen([sys.executable, str(ROOT / "local_runner.py"), "--pipeline-root", str(tmp_path / "p"),
                             "--serving-dir", str(tmp_path / "s"), "--no-feedback"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not list(data.glob("alef/*.png")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("interrupted: the run stopped where it was"), err[-500:]
    assert '"incomplete": true' in (data / "generated.json").read_text()
