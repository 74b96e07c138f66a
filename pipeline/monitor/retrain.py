"""``--retrain-when``: when the monitor runs the pipeline again with the users' feedback.

* ``drift``: a label-drift or input-skew threshold was crossed;
* ``accuracy``: a version's live accuracy is confidently below ``monitor_min_accuracy``;
* ``feedback>=N``: at least N feedback rows were stored since the last pipeline run started.

The pipeline runs as ``python -m local_runner --pipeline-root … --feedback-dir …`` (plus the arguments given
after ``--``): the same create_pipeline(), so the Evaluator still gates and the Pusher still pushes atomically.
"""
from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import time

from pipeline.monitor.live_accuracy import not_ahead, unix_time


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


def decide(policy: Policy, result: dict, feedback_records, last_run_time: float | None,
           now: float | None = None) -> tuple[bool, str]:
    """(fires, why). Feedback dated after ``now`` (a clock ahead) is not new feedback: it would count as new after
    every pipeline run until its date."""
    if policy.kind in ("drift", "accuracy"):
        kinds = ("label_drift", "input_skew") if policy.kind == "drift" else ("accuracy",)
        hits = [a["text"] for a in result["alarms"] if a["kind"] in kinds]
        return bool(hits), "; ".join(hits) if hits else f"no {policy.kind} threshold crossed"
    since = last_run_time or 0.0
    current = not_ahead(feedback_records, time.time() if now is None else now)
    new = sum(1 for r in current if unix_time(r.created_at) > since)
    return new >= policy.minimum, f"{new} feedback rows since the last pipeline run (policy: {policy})"


def command(pipeline_root: str, feedback_dir: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "local_runner", "--pipeline-root", pipeline_root, "--feedback-dir", feedback_dir,
            *extra]


def run(cmd: list[str], cwd: str | None = None) -> int:
    return subprocess.run(cmd, cwd=cwd).returncode
