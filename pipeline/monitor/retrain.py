"""``--retrain-when``: when the monitor runs the pipeline again with the users' feedback.

* ``drift``: a label-drift or input-skew threshold was crossed in a window whose answers all came after the last
  pipeline run started;
* ``accuracy``: a version's live accuracy is confidently below ``monitor_min_accuracy`` (an alarm), and so is its
  accuracy from the feedback stored since the last pipeline run started alone;
* ``feedback>=N``: at least N feedback rows were stored since the last pipeline run started.

Each judges only evidence newer than the last run: the run had it already, and judged again (by --watch or the
hourly CronJob) the same old windows and feedback would start another full retraining on every pass. So with
``--window all`` (one window, old answers always in it) drift fires only before the first run.

The pipeline runs as ``python -m local_runner --pipeline-root … --feedback-dir …`` (plus the arguments given
after ``--``): the same create_pipeline(), so the Evaluator still gates and the Pusher still pushes atomically.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
import subprocess
import sys
import time

from core.configs import Config
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


def decide(policy: Policy, result: dict, feedback_records, last_run_time: float | None, config: Config,
           now: float | None = None) -> tuple[bool, str]:
    """(fires, why), on the evidence since ``last_run_time`` (all of it without a run). Feedback dated after
    ``now`` (a clock ahead) is not new feedback: it would count as new after every pipeline run until its date."""
    since = last_run_time or 0.0
    current = live_accuracy.not_ahead(feedback_records, time.time() if now is None else now)
    newer = [r for r in current if live_accuracy.unix_time(r.created_at) > since]
    if policy.kind == "feedback":
        return len(newer) >= policy.minimum, (f"{len(newer)} feedback rows since the last pipeline run "
                                              f"(policy: {policy})")
    if policy.kind == "drift":
        hits = [a for a in result["alarms"] if a["kind"] in ("label_drift", "input_skew")]
        fresh = [a["text"] for a in hits if a["evidence_from"] > since]
    else:   # the versions alarming, judged again on the feedback since the run alone
        hits = [a for a in result["alarms"] if a["kind"] == "accuracy"]
        rows = live_accuracy.by_version(newer, config.monitor_min_accuracy, config.monitor_min_feedback)
        fresh = [live_accuracy.alarm_text(a["version"], rows[a["version"]]) + " since the last pipeline run"
                 for a in hits if rows.get(a["version"], {}).get("crossed")]
    if fresh:
        return True, "; ".join(fresh)
    if hits:
        when = dt.datetime.fromtimestamp(since, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return False, (f"the last pipeline run ({when}) came after this evidence: "
                       + "; ".join(a["text"] for a in hits))
    return False, f"no {policy.kind} threshold crossed"


def command(pipeline_root: str, feedback_dir: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "local_runner", "--pipeline-root", pipeline_root, "--feedback-dir", feedback_dir,
            *extra]


def run(cmd: list[str], cwd: str | None = None) -> int:
    return subprocess.run(cmd, cwd=cwd).returncode
