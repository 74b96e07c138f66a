"""Live accuracy from the web client's feedback store: per model version, with a Wilson score interval, and the
confusions users corrected most.

Feedback is what users chose to confirm or correct, not a random sample of traffic (people correct more readily
than they confirm), so live accuracy is a lower-leaning estimate; the interval only covers sampling noise.
"""
from __future__ import annotations

import collections
import datetime as _dt
import math

from core.feedback import Feedback
from pipeline.monitor import versions

Z95 = 1.959963984540054


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion ((0, 1) without trials)."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


CLOCK_SKEW_SECONDS = 300   # a record this far ahead of the monitor's clock is still "now"; further is the future


def not_ahead(records: list[Feedback], now: float) -> list[Feedback]:
    """The feedback rows not dated after ``now`` (beyond the clock skew allowed): a writer's clock ahead."""
    latest = now + CLOCK_SKEW_SECONDS
    return [r for r in records if unix_time(r.created_at) <= latest]


NO_MODEL = "(no model)"   # a row that names no model: imported, or stored by code of before


def of_model(records: list[Feedback], model: str) -> tuple[list[Feedback], dict]:
    """The feedback rows of ``model`` and, by model name, how many rows of others were left out. A row that names
    no model (a letter imported, a row stored before rows named their model) is ``model``'s while no row of the
    store names another model (a store of one model, as before); once one does, it cannot be told whose it is, and
    is left out, counted as ``NO_MODEL``."""
    others = any(r.model_name not in (None, model) for r in records)
    kept, left_out = [], collections.Counter()
    for record in records:
        if record.model_name == model or record.model_name is None and not others:
            kept.append(record)
        else:
            left_out[record.model_name or NO_MODEL] += 1
    return kept, dict(left_out)


def version_of(record: Feedback):
    """The version a feedback row scores, as :func:`by_version` groups it: "unknown" when not recorded."""
    return record.model_version if record.model_version is not None else "unknown"


def by_version(records: list[Feedback], min_accuracy: float, min_feedback: int) -> dict:
    """version ("unknown" when not recorded) -> counts, accuracy, interval, whether it is confidently below
    ``min_accuracy`` (the whole interval under it, with at least ``min_feedback`` rows)."""
    groups: dict = collections.defaultdict(list)
    for record in records:
        if record.predicted_label is not None:   # without the model's answer there is nothing to score
            groups[version_of(record)].append(record)
    out = {}
    for version, rows in sorted(groups.items(), key=lambda kv: versions.order(kv[0])):
        correct = sum(r.confirmed for r in rows)
        low, high = wilson(correct, len(rows))
        judged = len(rows) >= min_feedback
        out[str(version)] = {"feedback": len(rows), "confirmed": correct, "corrected": len(rows) - correct,
                             "last_feedback_at": max(unix_time(r.created_at) for r in rows),
                             "accuracy": correct / len(rows), "interval": [low, high], "threshold": min_accuracy,
                             "judged": judged, "crossed": judged and high < min_accuracy,
                             "confusions": confusions(rows)}
    return out


def alarm_text(version: str, row: dict) -> str:
    """An accuracy alarm's words for :func:`by_version`'s ``row`` of ``version``."""
    return (f"version {version}: live accuracy {row['accuracy']:.3f} (95% interval {row['interval'][0]:.3f}–"
            f"{row['interval'][1]:.3f}, {row['feedback']} feedback) is below {row['threshold']:g}")


def unix_time(created_at: str) -> float:
    """A feedback row's ISO 8601 time as seconds since the epoch (0 for one that cannot be read)."""
    try:
        return _dt.datetime.fromisoformat(created_at).timestamp()
    except (TypeError, ValueError):
        return 0.0


def confusions(records: list[Feedback], top: int = 10) -> list[dict]:
    """The (predicted -> true) corrections, most frequent first."""
    counts = collections.Counter((r.predicted_label, r.true_label) for r in records
                                 if not r.confirmed and r.predicted_label is not None)
    return [{"predicted": p, "true": t, "count": n} for (p, t), n in counts.most_common(top)]
