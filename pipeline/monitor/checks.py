"""One monitoring pass: served answers grouped by model version and window, each group judged against the
reference (TFDV drift and skew, confidence), live accuracy per version from feedback, the server's metrics,
and the alarms: thresholds crossed in a judged window of the current period or the one before it (a run shortly
after a window ends still judges it whole; a version that no longer gets answers stops alarming), by live accuracy
or by the server (its metrics page too: one that cannot be read is an alarm); answers the model gave that cannot be
used are judged per version and window too."""
from __future__ import annotations

import collections
import time

from core import configs
from core.configs import Config
from core.labels import CLASS_NAMES
from pipeline.monitor import drift, image_features, live_accuracy, windows

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


def group_answers(answers, seconds: int | None) -> dict:
    groups = collections.defaultdict(list)
    for answer in answers:
        groups[(answer.version, windows.start(answer.time, seconds))].append(answer)
    return groups


def unusable_shares(answers, unusable, seconds: int | None, config: Config) -> list[dict]:
    """Per (version, window) of the answers, usable or not: the share that cannot be used (none, the wrong shape,
    not finite), crossed above ``monitor_max_unusable`` whatever the window's size (a model that answers NaN is
    broken, not noisy: every answer unusable always crosses)."""
    key = lambda item: (item.version, windows.start(item.time, seconds))   # noqa: E731
    usable, bad = collections.Counter(map(key, answers)), collections.Counter(map(key, unusable))
    rows = []
    for version, begin in sorted(usable.keys() | bad.keys(), key=lambda k: (str(k[0]), k[1])):
        total = usable[(version, begin)] + bad[(version, begin)]
        share = bad[(version, begin)] / total
        rows.append({"version": version, "window_start": begin, "window": windows.label(begin, seconds),
                     "answers": total, "unusable": bad[(version, begin)], "share": share,
                     "threshold": config.monitor_max_unusable, "crossed": share > config.monitor_max_unusable})
    return rows


def judge_group(version, begin: float, answers, seconds, reference, training_stats, schema, config: Config):
    """The checks of one (version, window) group; raw values for the charts under ``_values``."""
    predicted = [CLASS_NAMES[a.top1] for a in answers]
    rows = [image_features.features(a.image, a.origin) for a in answers]
    judged = len(answers) >= config.monitor_min_requests
    group = {"version": version, "window_start": begin, "window": windows.label(begin, seconds),
             "requests": len(answers), "judged": judged, "first_answer_at": min(a.time for a in answers),
             "sources": dict(collections.Counter(r["source"] for r in rows)),
             "formats": dict(collections.Counter(r["format"] for r in rows)),
             "confidence": _confidence([a.score for a in answers], config, judged)}
    counts = collections.Counter(predicted)
    group["predicted_shares"] = {name: counts.get(name, 0) / len(answers) for name in CLASS_NAMES}
    if reference is not None:
        group["label_drift"] = drift.compare_labels(predicted, reference.eval_statistics, config).to_json()
        group["input_skew"] = drift.compare_features(rows, training_stats, schema).to_json()
        for key in ("label_drift", "input_skew"):   # a window too small is shown, not judged: nothing in it crossed
            for measurement in group[key]["measurements"]:
                measurement["crossed"] = judged and measurement["crossed"]
            group[key]["crossed"] = judged and group[key]["crossed"]
    group["_values"] = {name: [r[name] for r in rows if name in r] for name in image_features.NUMERIC}
    return group


def recent_groups(groups: list[dict], seconds: int | None, now: float) -> list[dict]:
    """The groups alarms judge: those of the current window and the one before it (with ``all``, every group); a
    window after the current one (answers dated by a clock ahead) is not judged."""
    if seconds is None:
        return list(groups)
    current = windows.start(now, seconds)
    return [group for group in groups if current - seconds <= group["window_start"] <= current]


def mark_recent(groups: list[dict], seconds: int | None, now: float) -> None:
    """Sets each group's ``recent``: whether alarms judge its window (:func:`recent_groups`)."""
    recent = {id(group) for group in recent_groups(groups, seconds, now)}
    for group in groups:
        group["recent"] = id(group) in recent


def split_future(answers, unusable, feedback_records, now: float) -> tuple[list, list, list, dict]:
    """(answers, unusable answers, feedback rows) not dated after ``now`` (beyond the clock skew allowed), and how
    many are: a writer's clock ahead. Those are counted, not checked: judged, they would alarm (and retrain) on
    every run until their date came."""
    not_ahead = lambda items: [a for a in items if a.time <= now + live_accuracy.CLOCK_SKEW_SECONDS]  # noqa: E731
    kept_answers, kept_unusable = not_ahead(answers), not_ahead(unusable)
    kept_feedback = live_accuracy.not_ahead(feedback_records, now)
    return kept_answers, kept_unusable, kept_feedback, {
        "answers": len(answers) + len(unusable) - len(kept_answers) - len(kept_unusable),
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
        if server["error_share"] > config.monitor_max_error_share:
            found.append({"kind": "errors", "version": None, "window": "server lifetime",
                          "text": f"server: {server['errors']} of {server['requests']} requests failed "
                                  f"({server['error_share']:.1%} > {config.monitor_max_error_share:.0%})"})
        p95 = server["latency_ms"]["p95"]
        if p95 is not None and p95 > config.monitor_max_latency_ms:
            found.append({"kind": "latency", "version": None, "window": "server lifetime",
                          "text": f"server: p95 latency {p95:.1f} ms > {config.monitor_max_latency_ms:g} ms"})
    return found


def run(answers, feedback_records, reference, server, config: Config, seconds: int | None, unusable=()) -> dict:
    """Everything the report shows; ``unusable``: request_logs.Unusable answers (judged by their share of each
    version's window); ``reference`` None skips the drift checks (no pipeline run to compare with);
    ``server`` is None (no metrics URL), server_metrics.summarize()'s dict with its ``url``, or ``{'url',
    'error'}`` when the page could not be read."""
    from pipeline.monitor import reference as reference_lib

    now = time.time()
    answers, unusable, feedback_records, ahead = split_future(answers, unusable, feedback_records, now)
    training_stats = schema = None
    training_rows: tuple = ()
    if reference is not None and answers:
        training_rows = reference_lib.training_features(reference.examples_uri)
        training_stats = drift.feature_statistics(list(training_rows))
        schema = drift.feature_schema(training_stats, config)
    groups = [judge_group(version, begin, items, seconds, reference, training_stats, schema, config)
              for (version, begin), items in sorted(group_answers(answers, seconds).items(),
                                                    key=lambda kv: (str(kv[0][0]), kv[0][1]))]
    mark_recent(groups, seconds, now)
    accuracy = live_accuracy.by_version(feedback_records, config.monitor_min_accuracy, config.monitor_min_feedback)
    shares = unusable_shares(answers, unusable, seconds, config)
    found = alarms(groups, accuracy, server, config, seconds, now, shares)
    return {"generated_at": now, "groups": groups, "unusable": shares, "live_accuracy": accuracy, "server": server,
            "future_dated": ahead,
            "reference": reference.to_json() if reference is not None else None,
            "eval_label_shares": (drift.category_shares(reference.eval_statistics, configs.LABEL_NAME_KEY)
                                  if reference is not None else {}),
            "_training_values": {name: [r[name] for r in training_rows if name in r]
                                 for name in image_features.NUMERIC},
            "alarms": found, "crossed": bool(found)}
