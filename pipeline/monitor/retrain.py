"""``--retrain-when``: when the monitor runs the pipeline again with the users' feedback.

* ``drift``: a label-drift or input-skew threshold was crossed in a window whose answers all came after the last
  pipeline run that trained started;
* ``accuracy``: a version's live accuracy is confidently below ``monitor_min_accuracy`` (an alarm), and so is its
  accuracy from the feedback stored since the last pipeline run that trained on this store's feedback alone;
* ``feedback>=N``: at least N feedback rows were stored since the last pipeline run that trained on this store's
  feedback.

Feedback is "since" that run by the rows it read: those its export of the store held (its ExampleGen's ingest report
names them), not by its start, which ML Metadata records once its first component starts, after the export (a row
stored in between had been neither trained on nor new).

Each judges only evidence newer than the last run: the run had it already, and judged again (by --watch or the
hourly CronJob) the same old windows and feedback would start another full retraining on every pass. So with
``--window all`` (one window, old answers always in it) drift fires only before the first run. The last run is
the last that trained (reference.Reference.trained_runs): its Trainer ended, whether or not the gate then
blessed the model; a run that failed or was stopped before its Trainer ended used none of the evidence, which
the next pass judges again. For feedback it is the last of them whose ExampleGen read rows of this store: a run
with ``--no-feedback`` or another ``--feedback-dir`` trained on none of its rows.

The pipeline runs as ``python -m local_runner --pipeline-root … --feedback-dir … --metadata-path …`` with the
data root and serving dir the monitored pipeline's last run used, read from its ML Metadata (:func:`recorded_folders`),
plus the arguments given after ``--`` (a flag given there wins: it is not added): the same create_pipeline() over
the same data, so the Evaluator still gates against the same store and the Pusher pushes where the server looks.
Training settings (--epochs, --no-pretrain, --base-model …) are not read back: give them after ``--``. The local
runner's ML Metadata is a SQLite file: with Kubeflow's (grpc://) the monitor refuses --retrain-when.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import subprocess
import sys
import time

from core import configs
from core.configs import Config
from core.feedback import stored_image
from pipeline.monitor import live_accuracy


@dataclasses.dataclass(frozen=True)
class Policy:
    kind: str                 # drift | accuracy | feedback
    minimum: int = 0          # for feedback>=N

    def __str__(self) -> str:
        return f"feedback>={self.minimum}" if self.kind == "feedback" else self.kind


def parse(text: str) -> Policy:
    text = text.strip()
    if text in ("drift", "accuracy"):
        return Policy(text)
    match = re.fullmatch(r"feedback\s*>=\s*(\d+)", text)
    if match and int(match.group(1)) > 0:
        return Policy("feedback", int(match.group(1)))
    raise ValueError(f"--retrain-when must be drift, accuracy or feedback>=N (N > 0), got {text!r}")


def feedback_run(trained_runs, feedback_records):
    """The newest of ``trained_runs`` (reference.TrainedRun, newest first) whose ExampleGen read any of
    ``feedback_records``, or None."""
    ids = {r.id for r in feedback_records}
    return next((run for run in trained_runs if run.feedback_read() & ids), None)


def decide(policy: Policy, result: dict, feedback_records, trained_runs, config: Config,
           now: float | None = None) -> tuple[bool, str]:
    """(fires, why), on the evidence since the last of ``trained_runs`` (reference.TrainedRun, newest first; all of
    it without a run): for feedback, since the last that read this store's rows. Feedback dated after ``now`` (a
    clock ahead) is not new feedback: it would count as new after every pipeline run until its date."""
    since = trained_runs[0].started if trained_runs else 0.0
    if policy.kind == "drift":
        hits = [a for a in result["alarms"] if a["kind"] in ("label_drift", "input_skew")]
        return _verdict(policy, [a["text"] for a in hits if a["evidence_from"] > since], hits, since)
    hits = [a for a in result["alarms"] if a["kind"] == "accuracy"]
    if policy.kind == "accuracy" and not hits:   # nothing to judge again: no stored image need be read
        return _verdict(policy, [], hits, 0.0)
    current = live_accuracy.not_ahead(feedback_records, time.time() if now is None else now)
    read = feedback_run(trained_runs, current)
    trained = read.feedback_read() if read else frozenset()
    unread = [r for r in current if r.id not in trained]
    if policy.kind == "accuracy":   # only the alarming versions are judged again: only their rows' images are read
        alarming = {a["version"] for a in hits}
        unread = [r for r in unread   # (a row without the model's answer scores nothing: by_version drops it)
                  if r.predicted_label is not None and str(live_accuracy.version_of(r)) in alarming]
    newer = [r for r in unread if stored_image(config.feedback_dir, r)[1] is None]   # (what a run could read)
    if policy.kind == "feedback":
        damaged = (f"; {len(unread) - len(newer)} more whose stored image is missing or damaged left out: no run "
                   "can train on them (letters-feedback remove them)") if len(newer) < len(unread) else ""
        return len(newer) >= policy.minimum, (f"{len(newer)} feedback rows since the last pipeline run that "
                                              f"trained on this store's feedback{damaged} (policy: {policy})")
    # accuracy: the versions alarming, judged again on the feedback since the run alone
    rows = live_accuracy.by_version(newer, config.monitor_min_accuracy, config.monitor_min_feedback)
    fresh = [live_accuracy.alarm_text(a["version"], rows[a["version"]]) + " since the last pipeline run"
             for a in hits if rows.get(a["version"], {}).get("crossed")]
    return _verdict(policy, fresh, hits, read.started if read else 0.0)


def _verdict(policy: Policy, fresh: list[str], hits: list[dict], since: float) -> tuple[bool, str]:
    """(fires, why) of a drift or accuracy policy: its ``fresh`` evidence fires it; ``hits`` all older than the run
    at ``since`` do not, said so."""
    if fresh:
        return True, "; ".join(fresh)
    if hits:
        when = dt.datetime.fromtimestamp(since, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return False, (f"the last pipeline run ({when}) came after this evidence: "
                       + "; ".join(a["text"] for a in hits))
    return False, f"no {policy.kind} threshold crossed"


@dataclasses.dataclass(frozen=True)
class Folders:
    """The folders the monitored pipeline's last run read and pushed into; None where ML Metadata does not say."""
    data_root: str | None = None     # the ImageExampleGen's input_base
    serving_dir: str | None = None   # the Pusher's push destination (its base_directory)


def recorded_folders(metadata_file: str) -> Folders:
    """The data root and serving dir of the newest ImageExampleGen and Pusher executions in a local run's ML
    Metadata (their exec properties, recorded for cached executions too)."""
    from tfx.types import standard_component_specs as specs
    from pipeline.run_summary import open_store

    store = open_store(metadata_file)

    def newest(node: str, key: str) -> str | None:
        context = store.get_context_by_type_and_name("node", f"{configs.PIPELINE_NAME}.{node}")
        executions = store.get_executions_by_context(context.id) if context else []
        for execution in sorted(executions, key=lambda e: e.id, reverse=True):
            value = execution.custom_properties[key].string_value if key in execution.custom_properties else ""
            if value:
                return value
        return None

    destination = newest("Pusher", specs.PUSH_DESTINATION_KEY)
    try:   # PushDestination as JSON: {"filesystem": {"base_directory": …}}
        serving_dir = json.loads(destination)["filesystem"]["base_directory"] if destination else None
    except (ValueError, KeyError, TypeError):
        serving_dir = None
    return Folders(newest("ImageExampleGen", specs.INPUT_BASE_KEY), serving_dir or None)


def given(extra: list[str], flag: str) -> bool:
    """Whether the arguments after ``--`` set ``flag`` (``--flag VALUE`` or ``--flag=VALUE``)."""
    return any(arg == flag or arg.startswith(flag + "=") for arg in extra)


def command(config: Config, recorded: Folders, extra: list[str]) -> tuple[list[str], str | None]:
    """(``python -m local_runner`` for the monitored pipeline, a sentence naming the runner's defaults used where ML
    Metadata records no folder, or None). The arguments after ``--`` (``extra``) come last, and a flag given
    there is not added. A recorded data root that is the runner's own default is left to it: it reads that folder
    as the built-in generated letters, as the recorded run did (as --data-root it would train them as the user's
    own letters: pretrained first, epochs sized otherwise)."""
    folders = []   # (flag, what, the node that records it, recorded value, the runner's default)
    if recorded.data_root != config.data_root:
        folders.append(("--data-root", "data root", "ImageExampleGen", recorded.data_root, config.data_root))
    folders.append(("--serving-dir", "serving dir", "Pusher", recorded.serving_dir, config.serving_dir))
    ours = [("--pipeline-root", config.pipeline_root), ("--feedback-dir", config.feedback_dir),
            ("--metadata-path", config.metadata_file)] + [(flag, value) for flag, _, _, value, _ in folders if value]
    cmd = [sys.executable, "-m", "local_runner"]
    for flag, value in ours:
        if not given(extra, flag):
            cmd += [flag, value]
    unrecorded = [(what, node, default) for flag, what, node, value, default in folders
                  if not value and not given(extra, flag)]
    note = None
    if unrecorded:
        note = (f"{config.metadata_file} records no "
                + " and no ".join(f"{what} (no {node} run)" for what, node, _ in unrecorded)
                + ": the runner's default " + ", ".join(f"{what} {default}" for what, _, default in unrecorded)
                + " (give another after --)")
    return [*cmd, *extra], note


def run(cmd: list[str], cwd: str | None = None) -> int:
    return subprocess.run(cmd, cwd=cwd).returncode
