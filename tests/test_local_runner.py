"""local_runner: how a run ends when it is stopped, and what it refuses before it starts."""
import os
import re
import signal

import pytest
from tfx.dsl.component.experimental.annotations import OutputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

import local_runner
from tests.support.serving import stand_in_version


@pytest.fixture
def tiny_letters(tmp_path_factory):
    from pipeline import generate_letters
    out = tmp_path_factory.mktemp("letters")
    generate_letters.generate(out, per_class=1, seed=3, progress=False)
    return out


def test_a_stop_whose_interrupt_was_lost_inside_the_pipeline_ends_the_run_as_stopped(tiny_letters, tmp_path,
                                                                                      monkeypatch, capsys):
    from tfx.orchestration.local import local_dag_runner

    from core import signals
    summarized = []

    def stopped_run(self, pipeline, run_options=None):   # every component "ran"; the SIGTERM's interrupt was lost
        try:
            signals.raise_interrupt(signal.SIGTERM)
        except KeyboardInterrupt:
            pass

    monkeypatch.setattr(local_dag_runner.LocalDagRunner, "run_with_ir", stopped_run)
    monkeypatch.setattr("pipeline.run_summary.summarize", lambda *a, **k: summarized.append(a) or {})
    assert local_runner.main(["--data-root", str(tiny_letters), "--pipeline-root", str(tmp_path / "p"),
                              "--serving-dir", str(tmp_path / "s"), "--no-feedback", "--no-pretrain", "--quiet",
                              "--epochs", "1", "--summary-json", str(tmp_path / "summary.json")]) == 130
    assert "interrupted: the run stopped where it was" in capsys.readouterr().err
    assert summarized == [] and not (tmp_path / "summary.json").exists()


def test_the_summary_is_of_the_runners_own_run_not_the_newest_one(tmp_path):
    from tfx.dsl.components.common.importer import Importer
    from tfx.orchestration import pipeline as tfx_pipeline
    from tfx.orchestration.metadata import sqlite_metadata_connection_config
    from tfx.types import standard_artifacts

    from pipeline.run_summary import last_run
    metadata = str(tmp_path / "metadata.sqlite")

    def pipeline(uri):
        return tfx_pipeline.Pipeline(
            pipeline_name="p", pipeline_root=str(tmp_path / "root"), metadata_connection_config=(
                sqlite_metadata_connection_config(metadata)),
            components=[Importer(source_uri=uri, artifact_type=standard_artifacts.Model).with_id("importer")])

    first = local_runner.run_dag(pipeline(str(tmp_path / "one")))
    second = local_runner.run_dag(pipeline(str(tmp_path / "two")))   # another run, started after the first
    imported = {run_id: last_run(metadata, run_id)["components"]["importer"]["outputs"]["result"][0].uri
                for run_id in (first, second)}
    assert imported == {first: str(tmp_path / "one"), second: str(tmp_path / "two")}
    assert last_run(metadata)["run_id"] == second != first


@component
def Made(model: OutputArtifact[standard_artifacts.Model]):   # noqa: N802 - a component's name
    """A step with no inputs: cached on every run after its first."""


def logged_run(tmp_path, *components) -> tuple[str, Exception | None]:
    """What a run of ``components`` logs through local_runner's filter and format (TFX logs through absl), and
    the error the run ended in, if any."""
    import io
    import logging
    import time

    from absl import logging as absl_logging
    from tfx.orchestration import pipeline as tfx_pipeline
    from tfx.orchestration.metadata import sqlite_metadata_connection_config

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(local_runner._ProgressFilter(time.monotonic()))
    handler.setFormatter(local_runner._Formatter())
    absl, verbosity = logging.getLogger("absl"), absl_logging.get_verbosity()
    absl.addHandler(handler)   # before the root's handlers, which another test's run may have filtered
    absl_logging.set_verbosity(absl_logging.INFO)
    error = None
    try:
        local_runner.run_dag(tfx_pipeline.Pipeline(
            pipeline_name="p", pipeline_root=str(tmp_path / "root"), enable_cache=True,
            metadata_connection_config=sqlite_metadata_connection_config(str(tmp_path / "metadata.sqlite")),
            components=list(components)))
    except Exception as err:  # noqa: BLE001 - a step that failed: its caller reads what was logged
        error = err
    finally:
        absl.removeHandler(handler)
        absl_logging.set_verbosity(verbosity)
    return out.getvalue(), error


def test_a_step_whose_inputs_are_unchanged_is_said_to_be_cached_not_finished(tmp_path):
    """A step TFX's launcher takes from the cache ends its progress lines with 'X cached (inputs unchanged)', as
    the closing summary says it: it had been 'X finished' as a step that ran."""
    def lines_of_a_run() -> list[str]:
        return [line.split("] ", 1)[1] for line in logged_run(tmp_path, Made())[0].splitlines() if line.startswith("[")]

    assert lines_of_a_run() == ["Made running", "Made finished"]
    assert lines_of_a_run() == ["Made running", "Made cached (inputs unchanged)"]


@component
def Failing(model: OutputArtifact[standard_artifacts.Model]):   # noqa: N802 - a component's name
    """A step that fails."""
    raise RuntimeError("the step failed")


def test_a_step_a_stop_ended_is_not_logged_as_a_failed_execution(tmp_path, monkeypatch):
    """Ctrl-C in the Trainer had logged TFX's launcher's "ERROR: Execution 12 failed." before the one interrupted
    line, even with --quiet; a step that fails of itself still logs it."""
    from core import signals
    for name, stop in (("failed", None), ("stopped", int(signal.SIGINT))):
        monkeypatch.setattr(signals, "_stop_requested", stop)
        logged, error = logged_run(tmp_path / name, Failing())
        assert "the step failed" in str(error)
        said = re.search(r"^ERROR: Execution \d+ failed\.$", logged, re.MULTILINE)
        assert bool(said) == (stop is None), logged


HOLD = r"""
import sys
from core.files import exclusive
with exclusive(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_second_run_on_a_pipeline_root_in_use_is_refused_until_the_first_ends(tiny_letters, tmp_path,
                                                                                 monkeypatch, capsys):
    import subprocess
    import sys

    from core import configs
    root = tmp_path / "p"
    root.mkdir()
    ran = []
    monkeypatch.setattr(local_runner, "run", lambda config, **_: ran.append(config) or {})
    argv = ["--data-root", str(tiny_letters), "--pipeline-root", str(root), "--serving-dir", str(tmp_path / "s"),
            "--no-feedback", "--no-pretrain", "--quiet"]
    other = subprocess.Popen([sys.executable, "-c", HOLD, str(root / local_runner.RUN_LOCK)],
                             cwd=str(configs.PROJECT_ROOT), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline() == "held\n"
        assert local_runner.main(argv) == 2 and ran == []
        assert capsys.readouterr().err == (f"error: --pipeline-root {root} is in use by another run (process "
                                           f"{other.pid}); wait for it to end or give another --pipeline-root\n")
    finally:
        other.kill()   # a crash: the OS drops its lock
        other.wait()
    assert local_runner.main(argv) == 0 and len(ran) == 1
    assert local_runner.main(argv) == 0 and len(ran) == 2   # a run's own lock is gone once it ends


RUN_HELD = r"""
import sys
import local_runner
def held(config, **_):   # the run is under way: its locks are held until stdin closes
    print("running", flush=True)
    sys.stdin.read()
    return {}
local_runner.run = held
sys.exit(local_runner.main(sys.argv[1:]))
"""


def test_a_run_on_another_pipeline_root_with_a_metadata_file_in_use_is_refused(tiny_letters, tmp_path, monkeypatch,
                                                                                capsys):
    """A run on a pipeline root whose ML Metadata file (--metadata-path) another run uses, on its own pipeline
    root, is refused naming the file and that run's process: both had run on one store, the second taking the
    first's cached steps from the first's root. A run whose metadata file is in its own root (the default) is not
    refused by its own locks, and they are gone once it ends."""
    import subprocess
    import sys

    from core import configs
    ran = []
    monkeypatch.setattr(local_runner, "run", lambda config, **_: ran.append(config) or {})
    common = ["--data-root", str(tiny_letters), "--serving-dir", str(tmp_path / "s"), "--no-feedback",
              "--no-pretrain", "--quiet"]
    first = tmp_path / "p"
    metadata = first / "metadata.sqlite"
    other = subprocess.Popen([sys.executable, "-c", RUN_HELD, *common, "--pipeline-root", str(first)],
                             cwd=str(configs.PROJECT_ROOT), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    argv = [*common, "--pipeline-root", str(tmp_path / "p2"), "--metadata-path", str(metadata)]
    try:
        assert "running\n" in iter(other.stdout.readline, "")   # after the data's lines
        assert local_runner.main(argv) == 2 and ran == []
        assert capsys.readouterr().err == (f"error: --metadata-path ({metadata}) is in use by another run (process "
                                           f"{other.pid}); wait for it to end or give another --metadata-path\n")
        other.stdin.close()   # the first run ends
        assert other.wait() == 0
    finally:
        other.kill()
        other.wait()
    assert local_runner.main(argv) == 0 and len(ran) == 1
    assert local_runner.main([*common, "--pipeline-root", str(first)]) == 0 and len(ran) == 2


LOCK_DB = r"""
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_metadata_file_another_process_holds_is_a_one_line_error(tiny_letters, tmp_path, capsys):
    import subprocess
    import sys

    from ml_metadata.metadata_store import metadata_store
    from tfx.orchestration.metadata import sqlite_metadata_connection_config
    metadata = tmp_path / "md.sqlite"
    metadata_store.MetadataStore(sqlite_metadata_connection_config(str(metadata)))   # as a first run leaves it
    other = subprocess.Popen([sys.executable, "-c", LOCK_DB, str(metadata)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline() == "locked\n"
        assert local_runner.main(["--data-root", str(tiny_letters), "--pipeline-root", str(tmp_path / "p"),
                                  "--metadata-path", str(metadata), "--serving-dir", str(tmp_path / "s"),
                                  "--no-feedback", "--no-pretrain", "--quiet"]) == 2
    finally:
        other.kill()
        other.wait()
    assert capsys.readouterr().err == (f"error: ML Metadata {metadata} is locked by another process (another run "
                                       "on it, an open sqlite3 session); run again once it lets go\n")


def test_the_summary_is_told_the_model_served_before_the_run_pushed(tiny_letters, tmp_path, monkeypatch):
    """The run's summary warns of a gate baseline that is not the model served: the one served when the run
    started, read before its Pusher pushes the candidate."""
    from components.atomic_pusher import push_model

    served_model = tmp_path / "p" / "Trainer" / "model" / "7"
    stand_in_version(served_model / "Format-Serving", content=b"7")
    version, _ = push_model(str(served_model / "Format-Serving"), str(tmp_path / "s"))
    told = []
    monkeypatch.setattr(local_runner, "run_dag", lambda pipeline, run_id: run_id)
    monkeypatch.setattr("pipeline.run_summary.summarize", lambda *a, **k: told.append(k) or {})
    monkeypatch.setattr("pipeline.run_summary.format_summary", lambda *a: "")
    assert local_runner.main(["--data-root", str(tiny_letters), "--pipeline-root", str(tmp_path / "p"),
                              "--serving-dir", str(tmp_path / "s"), "--no-feedback", "--no-pretrain", "--quiet",
                              "--epochs", "1"]) == 0
    assert [k["served"] for k in told] == [{"version": version, "model": str(served_model)}]


def test_a_push_the_serving_dir_cannot_take_ends_after_the_summary_in_one_line(tiny_letters, tmp_path, monkeypatch,
                                                                               capsys):
    """The Pusher, the last component, could not write (a full disk): the summary of the run is still read, told
    why, printed and written to --summary-json, then one line, status 2 (it had been a traceback, no summary);
    another component's failure is said so too (test_a_step_that_fails_ends_after_the_summary_in_one_line)."""
    import json

    from components.atomic_pusher import PushFailed
    told = []

    def full_disk(pipeline, run_id):
        raise PushFailed(str(tmp_path / "s"), "No space left on device")

    def summarize(metadata_file, **kwargs):
        told.append(kwargs)
        return {"run_id": kwargs["run_id"], "blessed": True, "serving_validated": True, "pushed": False,
                "push_failed": kwargs["push_failure"]}

    monkeypatch.setattr(local_runner, "run_dag", full_disk)
    monkeypatch.setattr("pipeline.run_summary.summarize", summarize)
    monkeypatch.setattr("pipeline.run_summary.format_summary", lambda *a: "the summary")
    argv = ["--data-root", str(tiny_letters), "--pipeline-root", str(tmp_path / "p"), "--serving-dir",
            str(tmp_path / "s"), "--no-feedback", "--no-pretrain", "--quiet", "--epochs", "1",
            "--summary-json", str(tmp_path / "summary.json")]
    assert local_runner.main(argv) == 2
    why = f"the Pusher could not write to the serving dir {tmp_path / 's'}: No space left on device"
    out, err = capsys.readouterr()
    assert "the summary" in out and err == (
        f"error: {why} (nothing was published; the model was blessed and passed the serving check: run the same "
        "command again once it can be written, finished steps are reused from the cache)\n")
    assert [k["push_failure"] for k in told] == [why]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["pushed"] is False and summary["push_failed"] == why and summary["run_id"] == told[0]["run_id"]
    assert local_runner.main(argv + ["--no-cache"]) == 2       # nothing is reused then: not said
    assert capsys.readouterr().err.endswith("run the same command again once it can be written)\n")


def test_a_step_that_fails_ends_after_the_summary_in_one_line(tiny_letters, tmp_path, monkeypatch, capsys):
    """A step other than the Pusher that fails (an Evaluator given a damaged baseline model) had ended the run in
    some 170 lines of chained tracebacks, status 1, no summary and no --summary-json: the summary is printed and
    written all the same, saying which step failed and why, nothing blessed or pushed and the version still
    served, then one line, status 2, as for a push that failed; the traceback is kept in the pipeline root."""
    import json

    from components.atomic_pusher import push_model
    from pipeline import run_summary

    served = tmp_path / "p" / "Trainer" / "model" / "7"
    stand_in_version(served / "Format-Serving", content=b"7")
    version, _ = push_model(str(served / "Format-Serving"), str(tmp_path / "s"))
    damaged = f"Cannot parse file b'{served}/Format-Serving/saved_model.pb': Error parsing message."

    def evaluator_failed(pipeline, run_id):
        try:
            raise ValueError("Error parsing message")
        except ValueError as err:
            raise OSError(f"{damaged} [while running 'ExtractEvaluateAndWriteResults/ExtractAndEvaluate/"
                          "ExtractPredictions/Inference']") from err

    def last_run(metadata_file, run_id=None):
        return {"run_id": run_id, "components": {
            "Trainer": {"state": "cached", "outputs": {}, "execution_id": 1},
            "Evaluator": {"state": "failed", "outputs": {}, "execution_id": 2}}}

    monkeypatch.setattr(local_runner, "run_dag", evaluator_failed)
    monkeypatch.setattr(run_summary, "last_run", last_run)
    monkeypatch.setattr(run_summary, "compared_model", lambda *_: None)
    argv = ["--data-root", str(tiny_letters), "--pipeline-root", str(tmp_path / "p"), "--serving-dir",
            str(tmp_path / "s"), "--no-feedback", "--no-pretrain", "--quiet", "--epochs", "1",
            "--summary-json", str(tmp_path / "summary.json")]
    assert local_runner.main(argv) == 2
    out, err = capsys.readouterr()
    log = tmp_path / "p" / local_runner.FAILURE_LOG
    assert "gate: no verdict, nothing blessed (the run stopped at the Evaluator)" in out
    assert f"FAILED: the Evaluator — {damaged}\n" in out
    assert f"pushed: nothing; the serving dir still serves version {version} ({served})" in out
    assert "Traceback" not in out + err and err == (
        f"error: the Evaluator failed: {damaged} (nothing was pushed; the whole traceback is in {log}: run the "
        "same command again once it is fixed, finished steps are reused from the cache)\n")
    assert "Traceback" in log.read_text() and "ValueError: Error parsing message" in log.read_text()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {k: summary[k] for k in ("failed_step", "failed_because", "failure_log", "pushed", "still_served")} == {
        "failed_step": "Evaluator", "failed_because": damaged, "failure_log": str(log), "pushed": False,
        "still_served": {"version": version, "model": str(served)}}

    def interrupted(pipeline, run_id):   # Ctrl-C is a stop, not a failure
        raise KeyboardInterrupt

    monkeypatch.setattr(local_runner, "run_dag", interrupted)
    assert local_runner.main(argv) == 130
    assert capsys.readouterr().err.startswith("\ninterrupted: the run stopped where it was")


def test_a_run_that_ends_without_its_summary_leaves_no_summary_json_of_the_last_run(tiny_letters, tmp_path,
                                                                                    monkeypatch, capsys):
    """A run that ends with one error line before any step is done (a feedback store it cannot read, ML Metadata
    locked, no usable image) writes a failed run's --summary-json (failed_because, nothing pushed, the version
    still served), and a stopped one leaves none: the last run's, a success, had been left for a script to read."""
    import json

    from components.image_example_gen import EmptyDatasetError
    from core.feedback import FeedbackStoreError
    from pipeline.run_summary import MetadataInUse

    summary = tmp_path / "summary.json"
    last = {"run_id": "last", "components": {}, "pushed": True}
    argv = ["--data-root", str(tiny_letters), "--pipeline-root", str(tmp_path / "p"), "--serving-dir",
            str(tmp_path / "s"), "--no-feedback", "--no-pretrain", "--quiet", "--summary-json", str(summary)]
    for err, reason, line in (
            (FeedbackStoreError("feedback store f: not a database"), "feedback store f: not a database",
             "error: feedback store f: not a database; --no-feedback runs without it\n"),
            (MetadataInUse("ML Metadata m is locked"), "ML Metadata m is locked", "error: ML Metadata m is locked\n"),
            (EmptyDatasetError("no usable image [while running 'x']"), "no usable image",
             "error: no usable image\n")):
        summary.write_text(json.dumps(last))   # the last run's

        def failing(config, err=err, **_):
            raise err

        monkeypatch.setattr(local_runner, "run", failing)
        assert local_runner.main(argv) == 2 and capsys.readouterr().err == line
        written = json.loads(summary.read_text())
        assert written["run_id"] and {k: written[k] for k in ("failed_step", "failed_because", "failure_log",
                                                              "pushed", "still_served")} == {
            "failed_step": None, "failed_because": reason, "failure_log": None, "pushed": False,
            "still_served": None}

    def interrupted(config, **_):
        raise KeyboardInterrupt

    summary.write_text(json.dumps({"pushed": True}))
    monkeypatch.setattr(local_runner, "run", interrupted)
    assert local_runner.main(argv) == 130 and not summary.exists()


def test_a_data_root_with_no_usable_image_writes_a_failed_runs_summary_json(tmp_path, monkeypatch, capsys):
    """The check before the pipeline starts (a data root, or a --pretrain-root, whose every file would be skipped)
    ended the run with its error line, status 2, and no --summary-json at all, the last run's removed: it is a run
    that ended before any step, as the ExampleGen's own "no usable image" ends one, and writes a failed run's."""
    import json

    from components.image_example_gen import no_usable_image
    from tests.conftest import letter_image, png_bytes

    unusable, usable = tmp_path / "unusable", tmp_path / "usable"
    for rel, content in (("alef/text.png", b"these are not pixels"), ("alef/empty.png", b""),
                         ("misc/alef_hand_0000.png", png_bytes(letter_image(40, 50)))):
        (unusable / rel).parent.mkdir(parents=True, exist_ok=True)
        (unusable / rel).write_bytes(content)
    (usable / "bet").mkdir(parents=True)
    (usable / "bet" / "b.png").write_bytes(png_bytes(letter_image(40, 50)))
    summary = tmp_path / "summary.json"
    common = ["--pipeline-root", str(tmp_path / "p"), "--serving-dir", str(tmp_path / "s"), "--no-feedback",
              "--quiet", "--epochs", "1", "--accuracy-floor", "0", "--summary-json", str(summary)]

    def never(*args, **kwargs):
        raise AssertionError("the pipeline started")

    monkeypatch.setattr(local_runner, "run", never)
    for argv, reason in (
            (["--data-root", str(unusable), "--no-pretrain", *common], no_usable_image(str(unusable))),
            (["--data-root", str(tmp_path / "nowhere"), "--no-pretrain", *common],
             f"--data-root {tmp_path / 'nowhere'} is not a folder"),
            (["--data-root", str(usable), "--pretrain-root", str(unusable), *common], no_usable_image(str(unusable)))):
        summary.write_text(json.dumps({"run_id": "last", "components": {}, "pushed": True}))   # the last run's
        assert local_runner.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.endswith(f"error: {reason}\n"), err
        written = json.loads(summary.read_text())
        assert written["run_id"] != "last" and {k: written[k] for k in (
            "failed_step", "failed_because", "failure_log", "pushed", "still_served")} == {
            "failed_step": None, "failed_because": reason, "failure_log": None, "pushed": False,
            "still_served": None}, argv


def test_a_refused_run_leaves_no_summary_json_of_the_last_run(tmp_path, monkeypatch, capsys):
    """The last run's --summary-json is removed before anything can refuse the run: a usage error (a bad --split or
    --base-model, checked after the flags are read; a bad --epochs, while they are; a bad LETTERS_<FIELD>) had left
    it, for a script to read as this run's. The flag is found however argparse takes it (--summary-json=X, an
    abbreviation); a name it refuses, or an abbreviation it does not take (--s, ambiguous), removes nothing."""
    import json
    summary = tmp_path / "summary.json"
    last = {"run_id": "last", "components": {}, "pushed": True}
    common = ["--pipeline-root", str(tmp_path / "p"), "--serving-dir", str(tmp_path / "s"), "--no-feedback"]
    for argv, env in (([*common, "--split", "4", "--summary-json", str(summary)], None),
                      ([*common, "--base-model", str(tmp_path / "none"), "--summary-json", str(summary)], None),
                      ([*common, "--epochs", "many", "--summary-json", str(summary)], None),
                      ([*common, "--summary-json", str(summary)], "many"),
                      ([*common, f"--summary-json={summary}", "--split", "0:1"], None),
                      ([*common, "--summ", str(summary), "--split", "0:1"], None)):
        summary.write_text(json.dumps(last))   # the last run's
        if env:
            monkeypatch.setenv("LETTERS_EPOCHS", env)
        with pytest.raises(SystemExit) as caught:
            local_runner.main(argv)
        monkeypatch.delenv("LETTERS_EPOCHS", raising=False)
        assert caught.value.code == 2 and "error: " in capsys.readouterr().err and not summary.exists(), argv
    summary.write_text(json.dumps(last))
    for argv in ([*common, "--s", str(summary)], [*common, "--summary-json", str(tmp_path)],
                 [*common, "--summary-json", str(tmp_path / "no" / "s.json"), str(summary)]):
        with pytest.raises(SystemExit):
            local_runner.main(argv)
        assert summary.exists(), argv
    # Nothing but a run's summary is removed before the flags are checked: ML Metadata's file named as the summary
    # is refused by them, and kept.
    metadata = tmp_path / "metadata.sqlite"
    metadata.write_bytes(b"SQLite format 3\x00")
    with pytest.raises(SystemExit):
        local_runner.main([*common, "--metadata-path", str(metadata), "--summary-json", str(metadata)])
    assert metadata.read_bytes() == b"SQLite format 3\x00"


def test_a_full_pipeline_root_while_the_feedback_is_exported_ends_the_run_with_one_line(tiny_letters, tmp_path,
                                                                                         monkeypatch, capsys):
    """A full disk (any OSError) while the run exports the feedback store had ended it in the OSError's traceback,
    status 1, no --summary-json: one line naming the folder, the error and what was written, a failed run's
    summary, and the next run's export finishes it."""
    import json

    from core import feedback
    from tests.support import faults
    from tests.web.conftest import letter_png

    store = feedback.FeedbackStore(tmp_path / "f")
    for seed in range(4):
        store.add(letter_png(seed=seed), "PNG", "alef")
    store.close()
    faults.disk_full_after_writes(monkeypatch, feedback, 2)
    summary = tmp_path / "summary.json"
    out = tmp_path / "p" / "feedback"
    argv = ["--data-root", str(tiny_letters), "--pipeline-root", str(tmp_path / "p"), "--serving-dir",
            str(tmp_path / "s"), "--feedback-dir", str(tmp_path / "f"), "--no-pretrain", "--quiet",
            "--summary-json", str(summary)]
    assert local_runner.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: cannot export the feedback store's images to {out}: [Errno 28] No space left "
                          f"on device: '{out / 'alef'}/")
    assert "(2 file(s) written before it stopped, 0 there already, each whole); run the same command again" in err
    assert json.loads(summary.read_text())["failed_because"] == err[len("error: "):-1]
    monkeypatch.undo()
    again = feedback.export_feedback(tmp_path / "f", out, prune=True)
    assert (again.exported, again.already_present, again.per_class["alef"]) == (2, 2, 4)


def test_a_summary_json_on_a_file_the_run_keeps_is_a_usage_error(tmp_path, capsys):
    """--summary-json <pipeline-root>/metadata.sqlite had been taken: the summary was written over ML Metadata's
    database after the run, and the next run ended in a traceback (file is not a database). A file in the
    pipeline root's or the serving dir's folders (artifacts, model versions) is refused too; one beside them is not."""
    root, serving = tmp_path / "p", tmp_path / "s"
    (root / "Trainer").mkdir(parents=True)
    (serving / "1").mkdir(parents=True)
    common = ["--pipeline-root", str(root), "--serving-dir", str(serving)]
    for summary, other, why in (
            (root / "metadata.sqlite", f"is the same path as ML Metadata's file ({root / 'metadata.sqlite'})",
             "the summary would be written over ML Metadata's database"),
            (root / "Trainer" / "s.json", f"is inside --pipeline-root ({root})", "the pipeline writes its artifacts"),
            (serving / "1" / "s.json", f"is inside --serving-dir ({serving})", "its folders are the model versions")):
        with pytest.raises(SystemExit) as caught:
            local_runner.parse_args([*common, "--summary-json", str(summary)])
        assert caught.value.code == 2 and f"error: --summary-json ({summary}) {other}" in capsys.readouterr().err
    with pytest.raises(SystemExit):   # another --metadata-path: the same file
        local_runner.parse_args(["--metadata-path", str(tmp_path / "m.sqlite"), "--summary-json",
                                 str(tmp_path / "m.sqlite")])
    for summary in (root / "summary.json", serving / "summary.json", tmp_path / "summary.json"):
        assert local_runner.parse_args([*common, "--summary-json", str(summary)])[1].summary_json == str(summary)


def test_paths_of_two_roles_that_overlap_are_a_usage_error_naming_both(tmp_path, monkeypatch, capsys):
    """A --serving-dir in (or equal to) the --data-root had been taken: each re-run read the version pushed as an
    unknown class, its data changed, and it trained and pushed again; a --pipeline-root equal to the --data-root
    filled it with component folders. Such paths are refused before the run, naming both flags given; the defaults,
    and folders side by side in one project folder, are not."""
    data = tmp_path / "data"
    monkeypatch.delenv("LETTERS_DATA_ROOT", raising=False)
    common = ["--data-root", str(data), "--pipeline-root", str(tmp_path / "p"), "--serving-dir", str(tmp_path / "s"),
              "--feedback-dir", str(tmp_path / "f")]
    for argv, message in (
            (["--serving-dir", str(data)], f"--serving-dir ({data}) is the same path as --data-root ({data})"),
            (["--serving-dir", str(data / "s")], f"--serving-dir ({data / 's'}) is inside --data-root ({data})"),
            (["--pipeline-root", str(data)], f"--pipeline-root ({data}) is the same path as --data-root ({data})"),
            (["--metadata-path", str(data / "m.sqlite")], f"--metadata-path ({data / 'm.sqlite'}) is inside --data-root"),
            (["--pretrain-root", str(tmp_path / "s")], f"--serving-dir ({tmp_path / 's'}) is the same path as "
                                                        f"--pretrain-root"),
            (["--serving-dir", str(tmp_path / "p")], f"--serving-dir ({tmp_path / 'p'}) is the same path as "
                                                      f"--pipeline-root"),
            (["--feedback-dir", str(tmp_path / "p" / "feedback")],   # where the runner exports the store's images
             f"--feedback-dir ({tmp_path / 'p' / 'feedback'}) is inside --pipeline-root ({tmp_path / 'p'})"),
            (["--pipeline-root", str(tmp_path / "f")], f"--pipeline-root ({tmp_path / 'f'}) is the same path as "
                                                        f"--feedback-dir")):
        with pytest.raises(SystemExit) as caught:
            local_runner.parse_args(common + argv)
        assert caught.value.code == 2 and message in capsys.readouterr().err, argv
    # side by side in one folder, a serving dir or a summary in the pipeline root, or the defaults: taken
    local_runner.parse_args(common + ["--summary-json", str(tmp_path / "p.json")])
    local_runner.parse_args(common + ["--serving-dir", str(tmp_path / "p" / "serving")])
    local_runner.parse_args(common + ["--pretrain-root", str(tmp_path / "pre"), "--no-feedback"])
    local_runner.parse_args(["--data-root", str(data), "--no-pretrain", "--pretrain-root", ""])
    local_runner.parse_args([])


def test_urls_that_overlap_are_refused_as_local_paths_are(capsys):
    """URLs had been left out of the check: --serving-dir gs://b/p beside --pipeline-root gs://b/p was taken. They
    are compared as written (scheme, bucket and path, a trailing slash aside); a URL never overlaps a local path,
    nor one of another bucket or scheme."""
    from pipeline import flags

    def clash(**paths):
        return flags.overlap({f"--{flag.replace('_', '-')}": path for flag, path in paths.items()},
                             local_runner.OVERLAPS)

    assert clash(serving_dir="gs://b/p/", pipeline_root="gs://b/p") == (
        "--serving-dir (gs://b/p/) is the same path as --pipeline-root (gs://b/p): the versions pushed would be "
        "among its artifacts; give it another")
    assert clash(pipeline_root="gs://b/d/root", data_root="gs://b/d/").startswith(
        "--pipeline-root (gs://b/d/root) is inside --data-root (gs://b/d/): every file under it is read as letters")
    for serving, root in (("gs://b/p", "gs://b/p2"), ("gs://b/p", "s3://b/p"), ("gs://a/p", "gs://b/p"),
                          ("gs://b/p", "/b/p"), ("gs://b/p", "gs://b/p2/p")):
        assert clash(serving_dir=serving, pipeline_root=root, data_root="gs://b/d") is None, (serving, root)
    with pytest.raises(SystemExit) as caught:
        local_runner.parse_args(["--serving-dir", "gs://b/p", "--pipeline-root", "gs://b/p", "--no-feedback"])
    assert caught.value.code == 2 and "error: --serving-dir (gs://b/p) is the same path as --pipeline-root (gs://b/p)" \
        in capsys.readouterr().err


def test_a_path_written_among_the_built_in_letters_a_data_root_pretrains_on_is_a_usage_error(tmp_path, monkeypatch,
                                                                                              capsys):
    """A --data-root without --pretrain-root first trains on the built-in generated letters: a serving dir or
    pipeline root written among them is refused as among a --pretrain-root's, the folder named as what it is."""
    builtin = tmp_path / "generated"
    monkeypatch.setenv("LETTERS_DATA_ROOT", str(builtin))
    monkeypatch.delenv("LETTERS_PRETRAIN_ROOT", raising=False)
    common = ["--data-root", str(tmp_path / "mine"), "--pipeline-root", str(tmp_path / "p"), "--no-feedback"]
    with pytest.raises(SystemExit) as caught:
        local_runner.parse_args([*common, "--serving-dir", str(builtin / "models")])
    assert caught.value.code == 2 and (
        f"error: --serving-dir ({builtin / 'models'}) is inside the built-in generated letters pretrained on "
        f"({builtin}): every file under it is read as letters") in capsys.readouterr().err
    for unused in (["--no-pretrain"], ["--pretrain-root", str(tmp_path / "pre")], ["--pretrain-root", ""]):
        local_runner.parse_args([*common, "--serving-dir", str(builtin / "models"), *unused])   # not read: taken
    # letters of one's own as LETTERS_DATA_ROOT are trained on as a --data-root, after the default data root's
    mine = tmp_path / "mine"
    (mine / "alef").mkdir(parents=True)
    (mine / "alef" / "1.png").write_bytes(b"not written by the generator")
    monkeypatch.setenv("LETTERS_DATA_ROOT", str(mine))
    default_root = local_runner.Config().data_root
    with pytest.raises(SystemExit) as caught:
        local_runner.parse_args(["--pipeline-root", str(tmp_path / "p"), "--no-feedback", "--serving-dir",
                                 os.path.join(default_root, "models")])
    assert caught.value.code == 2 and (
        f"is inside the built-in generated letters pretrained on ({default_root})") in capsys.readouterr().err
    local_runner.parse_args(["--serving-dir", str(tmp_path / "s"), "--pipeline-root", str(tmp_path / "p")])


def test_a_file_url_data_root_is_checked_as_its_local_path_and_given_to_the_pipeline_as_written(tiny_letters, tmp_path,
                                                                                               monkeypatch, capsys):
    """A file:// data root works (TensorFlow reads it), as the README says: the check before the run had looked
    for a folder named file:///… and refused it (error: --data-root file:///… is not a folder). It is checked, and
    prechecked, as its local path; the pipeline is given the URL as written."""
    started = []
    monkeypatch.setattr(local_runner, "_run_alone", lambda config, args, builtin: started.append(config.data_root) or 0)
    common = ["--pipeline-root", str(tmp_path / "p"), "--serving-dir", str(tmp_path / "s"), "--metadata-path",
              str(tmp_path / "m.db"), "--no-feedback", "--no-pretrain", "--quiet"]
    url = f"file://{tiny_letters}"
    assert local_runner.main(["--data-root", url, *common]) == 0
    assert started == [url]
    other = tmp_path / "other"
    (other / "misc").mkdir(parents=True)
    (other / "misc" / "1.png").write_bytes(b"x")
    assert local_runner.main(["--data-root", f"file://{other}", *common]) == 2   # prechecked as the local folder
    assert f"error: none of the folders in {other} (misc) is a class folder" in capsys.readouterr().err
    missing = f"file://{tmp_path / 'none'}"
    assert local_runner.main(["--data-root", missing, *common]) == 2
    assert capsys.readouterr().err == f"error: --data-root {missing} is not a folder\n"
    assert started == [url]


def test_a_pretrain_root_with_a_tilde_is_checked_for_overlaps_as_expanded(tmp_path, monkeypatch, capsys):
    """--pretrain-root=~/pre (no shell expands ~ after =) had been compared as ./~/pre, so a pipeline root inside
    the folder pretrained on passed the check that refuses it."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "data" / "alef").mkdir(parents=True)
    with pytest.raises(SystemExit) as caught:
        local_runner.parse_args(["--data-root", str(tmp_path / "data"), "--pretrain-root=~/pre",
                                 "--pipeline-root", str(tmp_path / "pre" / "root"), "--no-feedback"])
    assert caught.value.code == 2 and (f"error: --pipeline-root ({tmp_path / 'pre' / 'root'}) is inside "
                                       f"--pretrain-root ({tmp_path / 'pre'})") in capsys.readouterr().err


def test_a_url_base_model_that_is_the_serving_dir_is_refused(capsys, monkeypatch):
    """A gs:// --base-model equal to a gs:// --serving-dir had been taken: read when the Trainer runs, it is the
    serving dir's newest version then, the last run's push, so every run would have trained on from the last (a
    local one stands for the version folder it names before the run: the serving dir itself is never read)."""
    from pipeline import flags

    with pytest.raises(SystemExit) as caught:
        local_runner.parse_args(["--serving-dir", "gs://b/serving", "--base-model", "gs://b/serving/",
                                 "--pipeline-root", "gs://b/root", "--no-feedback"])
    assert caught.value.code == 2 and ("error: --base-model (gs://b/serving/) is the same path as --serving-dir "
                                       f"(gs://b/serving): {flags.BASE_MODEL_PUSHED}; give it another"
                                       ) in capsys.readouterr().err
    monkeypatch.setenv("LETTERS_BASE_MODEL", "gs://b/serving")
    with pytest.raises(SystemExit) as caught:
        local_runner.parse_args(["--serving-dir", "gs://b/serving", "--pipeline-root", "gs://b/root", "--no-feedback"])
    assert caught.value.code == 2 and "error: LETTERS_BASE_MODEL='gs://b/serving' is the same path as --serving-dir" \
        in capsys.readouterr().err
    config, _ = local_runner.parse_args(["--serving-dir", "gs://b/serving", "--base-model", "gs://b/serving/7",
                                         "--pipeline-root", "gs://b/root", "--no-feedback"])
    assert config.base_model == "gs://b/serving/7"   # a version of it is a model like any other


def test_overlapping_paths_no_flag_gave_are_named_by_their_variable_or_as_defaults(tmp_path, monkeypatch, capsys):
    """Paths that clash because LETTERS_* variables, or the defaults, set them had been named by flags never given
    (--serving-dir (…) is the same path as --pipeline-root (…)): each side is named by what set it, the flag if
    given, else the variable, else what it is by default."""
    for variable in ("DATA_ROOT", "PIPELINE_ROOT", "METADATA_PATH", "SERVING_DIR", "FEEDBACK_DIR", "PRETRAIN_ROOT"):
        monkeypatch.delenv(f"LETTERS_{variable}", raising=False)
    root = tmp_path / "p"
    root.mkdir()
    for environ, argv, message in (
            ({"LETTERS_SERVING_DIR": str(root), "LETTERS_PIPELINE_ROOT": str(root)}, [],
             f"error: LETTERS_SERVING_DIR='{root}' is the same path as LETTERS_PIPELINE_ROOT='{root}': "),
            ({"LETTERS_DATA_ROOT": str(tmp_path)}, ["--pipeline-root", str(root)],
             f"error: --pipeline-root ({root}) is inside LETTERS_DATA_ROOT='{tmp_path}': "),
            ({"LETTERS_PIPELINE_ROOT": str(tmp_path / "elsewhere")}, ["--data-root", str(tmp_path), "--serving-dir",
                                                                      str(tmp_path / "s")],
             f"error: LETTERS_PIPELINE_ROOT='{tmp_path / 'elsewhere'}' is inside --data-root ({tmp_path}): "),
            ({}, ["--data-root", str(local_runner.Config().serving_dir)],
             f"error: the default serving dir ({local_runner.Config().serving_dir}) is the same path as --data-root")):
        with monkeypatch.context() as env:
            for name, value in environ.items():
                env.setenv(name, value)
            with pytest.raises(SystemExit) as caught:
                local_runner.parse_args(["--no-feedback", *argv])
        assert caught.value.code == 2 and message in capsys.readouterr().err, argv


def test_a_path_a_run_cannot_write_is_named_by_the_variable_that_set_it(tmp_path, monkeypatch, capsys):
    """A serving dir, pipeline root or metadata file a LETTERS_* variable set, that the run could not write, had
    been blamed on its flag, never given (error: --serving-dir: /tmp/afile is not a folder)."""
    for variable in ("DATA_ROOT", "PIPELINE_ROOT", "METADATA_PATH", "SERVING_DIR", "FEEDBACK_DIR", "PRETRAIN_ROOT"):
        monkeypatch.delenv(f"LETTERS_{variable}", raising=False)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    root, serving = ["--pipeline-root", str(tmp_path / "p")], ["--serving-dir", str(tmp_path / "s")]
    for variable, value, argv, message in (
            ("LETTERS_SERVING_DIR", a_file, root, f"error: LETTERS_SERVING_DIR='{a_file}': {a_file} is not a folder"),
            ("LETTERS_PIPELINE_ROOT", a_file / "root", serving,
             f"error: LETTERS_PIPELINE_ROOT='{a_file / 'root'}': cannot create {a_file / 'root'}: {a_file} is not a "
             "folder"),
            ("LETTERS_METADATA_PATH", tmp_path, root + serving,
             f"error: LETTERS_METADATA_PATH='{tmp_path}': {tmp_path} is a folder; give a file name"),
            ("LETTERS_SERVING_DIR", tmp_path / "s", ["--serving-dir", str(a_file), *root],
             f"error: --serving-dir: {a_file} is not a folder")):   # the flag, when given, over its variable
        with monkeypatch.context() as env:
            env.setenv(variable, str(value))
            assert local_runner.main(["--no-feedback", *argv]) == 2
        assert message in capsys.readouterr().err, variable
    assert not (tmp_path / "p").exists()


def test_a_pipeline_root_holding_a_glob_character_is_a_usage_error_naming_what_set_it(tmp_path, monkeypatch, capsys):
    """Beam matches the files it wrote under the pipeline root with the folder's name unescaped: under "p [v2]" the
    ExampleGen had failed mid-run in a Beam traceback (src and dst files do not exist), under "p*" a later step read
    a temporary folder Beam left among the examples. Such a root is refused before anything runs, named by what
    set it; a data root, serving dir or ML Metadata folder with such a name, spaces and other letters are taken."""
    monkeypatch.delenv("LETTERS_PIPELINE_ROOT", raising=False)
    common = ["--data-root", str(tmp_path / "data [v2]"), "--serving-dir", str(tmp_path / "s [v2]"), "--no-feedback"]
    why = "holds a glob character (*, ? or [): Beam, which writes the pipeline's artifacts there, reads such a " \
          "folder name as a pattern"
    for environ, argv, name in (
            ({}, ["--pipeline-root", str(tmp_path / "p [v2]")], f"--pipeline-root ({tmp_path / 'p [v2]'})"),
            ({}, ["--pipeline-root", str(tmp_path / "p*")], f"--pipeline-root ({tmp_path / 'p*'})"),
            ({}, ["--pipeline-root", str(tmp_path / "p?")], f"--pipeline-root ({tmp_path / 'p?'})"),
            ({"LETTERS_PIPELINE_ROOT": str(tmp_path / "p[1]")}, [], f"LETTERS_PIPELINE_ROOT='{tmp_path / 'p[1]'}'")):
        with monkeypatch.context() as env:
            for variable, value in environ.items():
                env.setenv(variable, value)
            with pytest.raises(SystemExit) as caught:
                local_runner.parse_args([*common, *argv])
        assert caught.value.code == 2 and f"error: {name} {why}" in capsys.readouterr().err, argv
    for root in ("p v2", "p ]v2", "p שׁ"):
        config, _ = local_runner.parse_args([*common, "--pipeline-root", str(tmp_path / root),
                                             "--metadata-path", str(tmp_path / "m [v2]" / "metadata.sqlite")])
        assert config.pipeline_root == str(tmp_path / root)


def test_a_file_url_pipeline_root_is_a_usage_error_and_leaves_no_folder_where_it_runs(tmp_path, monkeypatch, capsys):
    """Beam has no file:// filesystem: the run had made a relative file:/… folder in the current directory, then
    failed in the ImageExampleGen's write with a Beam traceback. A file:// data root, read by TensorFlow, works."""
    monkeypatch.delenv("LETTERS_PIPELINE_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    root = f"file://{tmp_path / 'p'}"
    with pytest.raises(SystemExit) as caught:
        local_runner.parse_args(["--data-root", str(tmp_path / "data"), "--no-feedback", "--pipeline-root", root])
    assert caught.value.code == 2
    assert (f"error: --pipeline-root ({root}) is a file:// URL: Beam, which writes the pipeline's artifacts there, "
            "has no filesystem for file://") in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_a_url_feedback_store_is_a_usage_error_in_the_stores_words(tmp_path, monkeypatch, capsys):
    """The feedback store is SQLite on a local (or mounted) disk: --feedback-dir gs://… (or LETTERS_FEEDBACK_DIR)
    had been said to be "no feedback store at gs://…", and the run trained without feedback."""
    common = ["--data-root", str(tmp_path / "data"), "--pipeline-root", str(tmp_path / "p")]
    refusal = ("cannot read the feedback store gs://b/feedback: it is an SQLite database in a folder on a local (or "
               "mounted) disk, not a URL")
    with pytest.raises(SystemExit) as caught:
        local_runner.parse_args([*common, "--feedback-dir", "gs://b/feedback"])
    assert caught.value.code == 2 and f"error: --feedback-dir: {refusal}" in capsys.readouterr().err
    monkeypatch.setenv("LETTERS_FEEDBACK_DIR", "gs://b/feedback")
    with pytest.raises(SystemExit) as caught:
        local_runner.parse_args(common)
    assert caught.value.code == 2 and f"error: LETTERS_FEEDBACK_DIR='gs://b/feedback': {refusal}" \
        in capsys.readouterr().err
    assert local_runner.parse_args([*common, "--no-feedback"])[0].feedback_dir == ""
    assert os.listdir(tmp_path) == []


def test_a_push_with_no_version_number_left_ends_after_the_summary_in_one_line(tiny_letters, tmp_path, monkeypatch,
                                                                                capsys):
    """A version folder named 2^63 - 1 (int64's largest, another tool's) leaves the Pusher no number to push as:
    its ValueError ends the run as any failed step does, the summary then one error line, not a traceback."""
    from components.atomic_pusher import push_model
    from pipeline import run_summary

    model = tmp_path / "p" / "Trainer" / "model" / "7" / "Format-Serving"
    stand_in_version(model, content=b"7")
    foreign = tmp_path / "s" / "9223372036854775807"
    stand_in_version(foreign, content=b"theirs")
    monkeypatch.setattr(local_runner, "run_dag", lambda pipeline, run_id: push_model(str(model), str(foreign.parent)))
    monkeypatch.setattr(run_summary, "last_run", lambda metadata_file, run_id=None: {
        "run_id": run_id, "components": {"Pusher": {"state": "failed", "outputs": {}, "execution_id": 9}}})
    assert local_runner.main(["--data-root", str(tiny_letters), "--pipeline-root", str(tmp_path / "p"),
                              "--serving-dir", str(foreign.parent), "--no-feedback", "--no-pretrain", "--quiet",
                              "--epochs", "1"]) == 2
    out, err = capsys.readouterr()
    why = (f"{foreign.parent}: no version number left below 2^63 (TF Serving's limit) after version "
           f"9223372036854775807; remove its folder {foreign}")
    assert f"FAILED: the Pusher — {why}\n" in out and "pushed: NOTHING" not in out
    assert ("pushed: nothing; the serving dir still serves version 9223372036854775807 (a model of unknown origin: "
            "no push record)") in out
    assert "Traceback" not in err and err.startswith(f"error: the Pusher failed: {why} (nothing was pushed; ")
    assert os.listdir(foreign.parent) == [foreign.name]


def test_a_default_data_root_that_cannot_be_written_is_used_when_complete_else_a_one_line_error(
        tiny_letters, tmp_path, monkeypatch, capsys):
    """The built-in letters complete on a read-only folder are used (as data and to pretrain on); a data root that
    cannot be made is a one-line error naming what set it, and no pretraining: both had ended in a traceback."""
    from core import configs
    from tests.test_generate_letters import read_only
    for variable in ("DATA_ROOT", "PIPELINE_ROOT", "METADATA_PATH", "SERVING_DIR", "FEEDBACK_DIR", "PRETRAIN_ROOT"):
        monkeypatch.delenv(f"LETTERS_{variable}", raising=False)
    with monkeypatch.context() as patched:
        read_only(patched)
        local_runner.ensure_default_data(configs.Config(data_root=str(tiny_letters), generate_per_class=1,
                                                        generate_seed=3))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    monkeypatch.setenv("LETTERS_DATA_ROOT", str(a_file / "x"))
    assert local_runner.main(["--no-feedback", "--pipeline-root", str(tmp_path / "p"),
                              "--serving-dir", str(tmp_path / "s")]) == 2
    assert capsys.readouterr().err.endswith(
        f"error: LETTERS_DATA_ROOT='{a_file / 'x'}': {a_file / 'x'}: Not a directory\n")
    config, args = local_runner.parse_args(["--data-root", str(tiny_letters), "--no-feedback", "--pipeline-root",
                                            str(tmp_path / "p"), "--serving-dir", str(tmp_path / "s")])
    assert local_runner.choose_pretraining(config, args, str(a_file / "x")).pretrain_root == ""
    assert f"Pretraining: none, the built-in generated letters cannot be made ({a_file / 'x'}: Not a directory)" in (
        capsys.readouterr().out)
