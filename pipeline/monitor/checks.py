"""One monitoring pass: served answers grouped by model version and window, each group judged against the
reference (TFDV drift and skew, confidence), live accuracy per version from feedback, the server's metrics,
and the alarms: thresholds crossed in a judged window of the current period or the one before it (a run shortly
after a window ends still judges it whole; a version that no longer gets answers stops alarming), by live accuracy
or by the server (its metrics page too: one that cannot be read is an alarm, as is a model with no version
available on a server, by its model status); answers the model gave that cannot be used are judged per version and
window too.

The answers are read as a stream (:class:`Traffic`): each answer's image features are computed as it is read and
its image let go, so that a pass's memory grows by a few dozen bytes an answer, not by the log's size."""
from __future__ import annotations

import array
import collections
import math
import time

import numpy as np

from core import configs
from core.configs import Config
from core.labels import CLASS_NAMES
from pipeline.monitor import drift, image_features, live_accuracy, report, server_metrics, versions, windows

CONFIDENCE_BINS = 10


def _confidence(scores: list[float], config: Config, judged: bool) -> dict:
    low = sum(s < config.monitor_low_confidence for s in scores)
    share = low / len(scores) if scores else 0.0
    counts = [0] * CONFIDENCE_BINS
    for s in scores:
        counts[min(CONFIDENCE_BINS - 1, int(s * CONFIDENCE_BINS))] += 1
    return {"mean": sum(scores) / len(scores) if scores else None, "low_share": share,
            "low_below": config.monitor_low_confidence, "threshold": config.monitor_max_low_confidence_share,
            "histogram": counts, "crossed": judged and share > config.monitor_max_low_confidence_share}


class Group:
    """The answers of one (version, window) as the checks read them, column by column: each one's top-1 class and
    score and its image's features (:func:`image_features.features`), not the image."""

    def __init__(self, max_pixels: int = image_features.DEFAULT_MAX_PIXELS):
        self.max_pixels = max_pixels   # Config.max_image_pixels: an image over it is unreadable
        self.first_answer_at = math.inf
        self.top1 = array.array("B")
        self.scores = array.array("d")
        self.numeric = {name: array.array("d") for name in image_features.NUMERIC}   # NaN: the image did not decode
        self.categorical = {name: [] for name in image_features.CATEGORICAL}

    def __len__(self) -> int:
        return len(self.top1)

    def add(self, answer) -> None:
        features = image_features.features(answer.image, answer.origin, self.max_pixels)
        self.first_answer_at = min(self.first_answer_at, answer.time)
        self.top1.append(answer.top1)
        self.scores.append(answer.score)
        for name, values in self.numeric.items():
            values.append(features.get(name, math.nan))
        for name, values in self.categorical.items():
            values.append(features[name])

    def feature_columns(self) -> dict:
        """The image features, name -> a value per answer (drift.column_statistics)."""
        return {**{name: np.frombuffer(values) for name, values in self.numeric.items()}, **self.categorical}

    def chart_values(self) -> dict:
        """The numeric image features of the images that decoded, name -> values (the report's histograms)."""
        return {name: [value for value in values if not math.isnan(value)] for name, values in self.numeric.items()}


class Traffic:
    """The answers of a request log grouped by (version, window) as they are read (:meth:`add`); those dated after
    ``now`` (beyond the clock skew allowed: a writer's clock ahead) are counted in ``ahead``, not checked.
    ``max_pixels``: the decompression-bomb guard the images are measured with (Config.max_image_pixels)."""

    def __init__(self, seconds: int | None, now: float | None = None,
                 max_pixels: int = image_features.DEFAULT_MAX_PIXELS):
        self.seconds = seconds
        self.max_pixels = max_pixels
        self.now = time.time() if now is None else now
        self.groups: dict[tuple, Group] = {}   # (version, window start) -> its answers
        self.ahead = 0

    def add(self, answer) -> None:
        if answer.time > self.now + live_accuracy.CLOCK_SKEW_SECONDS:
            self.ahead += 1
            return
        key = (answer.version, windows.start(answer.time, self.seconds))
        if key not in self.groups:
            self.groups[key] = Group(self.max_pixels)
        self.groups[key].add(answer)

    def add_all(self, answers) -> Traffic:
        for answer in answers:
            self.add(answer)
        return self


def unusable_shares(answered: dict, unusable, seconds: int | None, config: Config, now: float) -> list[dict]:
    """Per (version, window) of the answers, usable (``answered``: (version, window start) -> count) or not: the
    share that cannot be used (none, the wrong shape, not finite), crossed above ``monitor_max_unusable`` whatever
    the window's size (a model that answers NaN is broken, not noisy: every answer unusable always crosses) in a
    window the alarms judge (:func:`not_judged_window`); in another, shown and not judged."""
    key = lambda item: (item.version, windows.start(item.time, seconds))   # noqa: E731
    usable, bad = collections.Counter(answered), collections.Counter(map(key, unusable))
    rows = []
    for version, begin in sorted(usable.keys() | bad.keys(), key=lambda k: (versions.order(k[0]), k[1])):
        total = usable[(version, begin)] + bad[(version, begin)]
        share = bad[(version, begin)] / total
        why_not = not_judged_window(begin, seconds, now)
        rows.append({"version": version, "window_start": begin, "window": windows.label(begin, seconds),
                     "answers": total, "unusable": bad[(version, begin)], "share": share,
                     "threshold": config.monitor_max_unusable, "judged": why_not is None, "not_judged": why_not,
                     "crossed": why_not is None and share > config.monitor_max_unusable})
    return rows


def not_judged_window(begin: float, seconds: int | None, now: float) -> str | None:
    """Why the alarms do not judge the window starting at ``begin``, None when they do: they judge the current
    window and the one before it (with ``all``, every answer); a window after the current one holds answers dated
    by a clock ahead."""
    if seconds is None:
        return None
    current = windows.start(now, seconds)
    if begin < current - seconds:
        return "older than the current window and the one before it"
    if begin > current:
        return "after the current window (dated by a clock ahead)"
    return None


def judge_group(version, begin: float, answers: Group, seconds, now: float, reference, training_stats, schema,
                config: Config):
    """The checks of one (version, window) group (no chart values: :func:`run` adds those of the groups the report
    draws). A group is judged when the alarms judge its window (``recent``) and it has answers enough: another is
    measured and shown, ``not_judged`` saying why, nothing in it crossed and no anomaly listed."""
    predicted = [CLASS_NAMES[top1] for top1 in answers.top1]
    columns = answers.feature_columns()
    outside = not_judged_window(begin, seconds, now)
    why_not = outside or ("too few answers" if len(answers) < config.monitor_min_requests else None)
    judged = why_not is None
    group = {"version": version, "window_start": begin, "window": windows.label(begin, seconds),
             "requests": len(answers), "judged": judged, "recent": outside is None, "not_judged": why_not,
             "first_answer_at": answers.first_answer_at,
             "sources": dict(collections.Counter(columns["source"])),
             "formats": dict(collections.Counter(columns["format"])),
             "confidence": _confidence(answers.scores, config, judged)}
    counts = collections.Counter(predicted)
    group["predicted_shares"] = {name: counts.get(name, 0) / len(answers) for name in CLASS_NAMES}
    if reference is not None:
        group["label_drift"] = drift.compare_labels(predicted, reference.eval_statistics, config).to_json()
        group["input_skew"] = drift.compare_features(columns, training_stats, schema).to_json()
        for key in ("label_drift", "input_skew"):
            if not judged:
                _shown_not_judged(group[key])
    return group


def _shown_not_judged(comparison: dict) -> None:
    """A comparison (drift.Comparison.to_json) of a window not judged, shown with its values measured: nothing in it
    crossed, and TFDV's anomalies (a value "above the threshold") are not listed."""
    for measurement in comparison["measurements"]:
        measurement["crossed"] = False
    comparison["crossed"] = False
    comparison["anomalies"] = {}


def recent_groups(groups: list[dict], seconds: int | None, now: float) -> list[dict]:
    """The groups of the windows alarms judge (:func:`not_judged_window`)."""
    return [group for group in groups if not_judged_window(group["window_start"], seconds, now) is None]


def split_future(traffic: Traffic, unusable, feedback_records) -> tuple[list, list, dict]:
    """(unusable answers, feedback rows) not dated after the traffic's ``now`` (beyond the clock skew allowed), and
    how many answers (``traffic.ahead`` too) and rows are: a writer's clock ahead. Those are counted, not checked:
    judged, they would alarm (and retrain) on every run until their date came."""
    now = traffic.now
    kept_unusable = [a for a in unusable if a.time <= now + live_accuracy.CLOCK_SKEW_SECONDS]
    kept_feedback = live_accuracy.not_ahead(feedback_records, now)
    return kept_unusable, kept_feedback, {"answers": traffic.ahead + len(unusable) - len(kept_unusable),
                                          "feedback": len(feedback_records) - len(kept_feedback)}


def alarms(groups: list[dict], accuracy: dict, server: dict | None, config: Config, seconds: int | None = None,
           now: float | None = None, unusable: list[dict] = ()) -> list[dict]:
    found = []
    now = time.time() if now is None else now
    recent = recent_groups(groups, seconds, now)
    recent_unusable = recent_groups(unusable, seconds, now)
    for group in recent:
        where = f"version {group['version']}, {group['window']}"
        for key in ("label_drift", "input_skew"):
            if group.get(key, {}).get("crossed"):
                crossed = [m for m in group[key]["measurements"] if m["crossed"]]
                found.append({"kind": key, "version": group["version"], "window": group["window"],
                              "evidence_from": group["first_answer_at"],   # --retrain-when drift: after a run?
                              "text": f"{where}: {key.replace('_', ' ')} — " + "; ".join(
                                  f"{m['feature']} {m['measure']} {m['value']:.3f} > {m['threshold']:g}"
                                  for m in crossed)})
        if group["confidence"]["crossed"]:
            c = group["confidence"]
            found.append({"kind": "low_confidence", "version": group["version"], "window": group["window"],
                          "text": f"{where}: {c['low_share']:.1%} of answers below {c['low_below']:g} "
                                  f"(allowed {c['threshold']:.0%})"})
    for row in recent_unusable:
        if row["crossed"]:
            found.append({"kind": "unusable_answers", "version": row["version"], "window": row["window"],
                          "text": f"version {row['version']}, {row['window']}: {row['unusable']} of {row['answers']} "
                                  f"answers unusable (none, the wrong shape or not finite; {row['share']:.1%} > "
                                  f"{row['threshold']:.1%})"})
    # A version judged by its feedback alarms while it still serves: answers or feedback in the current window
    # or the one before it (a retired version's old corrections would otherwise alarm, and retrain, forever).
    since = None if seconds is None else windows.start(now, seconds) - seconds
    serving = {str(group["version"]) for group in recent + recent_unusable}
    for version, row in accuracy.items():
        if row["crossed"] and (since is None or version in serving or row["last_feedback_at"] >= since):
            found.append({"kind": "accuracy", "version": version, "window": "all feedback",
                          "text": live_accuracy.alarm_text(version, row)})
    if server and server.get("error"):   # a server that cannot be read reports no errors: not an all-clear
        found.append({"kind": "server_metrics", "version": None, "window": "now",
                      "text": f"server: no metrics from {server['url']}: {server['error']}"})
    elif server:
        for name, why in server_metrics.unavailable(server).items():   # its NOT_FOUND requests counted as errors
            found.append({"kind": "model_unavailable", "version": None, "window": "now",
                          "text": f"server: model {server['model']} is not available on {name}: {why}"})
        if server["error_share"] > config.monitor_max_error_share:
            found.append({"kind": "errors", "version": None, "window": "server lifetime",
                          "text": f"server: {server['errors']} of {server['answerable']} requests failed "
                                  f"({server['error_share']:.1%} > {config.monitor_max_error_share:.0%})"})
        p95 = server["latency_ms"]["p95"]
        if p95 is not None and p95 > config.monitor_max_latency_ms:
            found.append({"kind": "latency", "version": None, "window": "server lifetime",
                          "text": f"server: p95 latency {p95:.1f} ms > {config.monitor_max_latency_ms:g} ms"})
    return found


def run(traffic: Traffic, feedback_records, reference, server, config: Config, unusable=()) -> dict:
    """Everything the report shows, of the answers read into ``traffic`` (its window and ``now``); ``unusable``:
    request_logs.Unusable answers (judged by their share of each version's window); ``reference`` None skips the
    drift checks (no pipeline run to compare with), else its training split is read when there are answers
    (reference.NoReference when it is missing);
    ``server`` is None (no metrics URL), server_metrics.summarize()'s dict with its ``url``, or ``{'url',
    'error'}`` when the page could not be read."""
    from pipeline.monitor import reference as reference_lib

    now, seconds = traffic.now, traffic.seconds
    unusable, feedback_records, ahead = split_future(traffic, unusable, feedback_records)
    training_stats = schema = None
    training_rows: tuple = ()
    if reference is not None and traffic.groups:
        training_rows = reference_lib.training_features(reference.examples_uri, config.max_image_pixels)
        training_stats = drift.feature_statistics(list(training_rows))
        schema = drift.feature_schema(training_stats, config)
    by_version = sorted(traffic.groups.items(), key=lambda kv: (versions.order(kv[0][0]), kv[0][1]))
    groups = [judge_group(version, begin, items, seconds, now, reference, training_stats, schema, config)
              for (version, begin), items in by_version]
    for group in report.shown_groups(groups):   # only the windows the report draws keep their values for the charts
        group["_values"] = traffic.groups[(group["version"], group["window_start"])].chart_values()
    accuracy = live_accuracy.by_version(feedback_records, config.monitor_min_accuracy, config.monitor_min_feedback)
    shares = unusable_shares({key: len(items) for key, items in traffic.groups.items()}, unusable, seconds, config, now)
    found = alarms(groups, accuracy, server, config, seconds, now, shares)
    return {"generated_at": now, "groups": groups, "unusable": shares, "live_accuracy": accuracy, "server": server,
            "future_dated": ahead,
            "reference": reference.to_json() if reference is not None else None,
            "eval_label_shares": (drift.category_shares(reference.eval_statistics, configs.LABEL_NAME_KEY)
                                  if reference is not None else {}),
            "_training_values": {name: [r[name] for r in training_rows if name in r]
                                 for name in image_features.NUMERIC},
            "alarms": found, "crossed": bool(found)}
