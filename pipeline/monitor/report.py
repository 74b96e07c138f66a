"""Writes a monitoring pass: ``monitor.json``, ``report.html`` with PNG charts beside it (no script, no
network), and Prometheus gauges as a textfile (node_exporter's textfile collector reads it).

Each file is written whole or not at all (core.files.atomic_write: a reader, or the next pass, never sees half a
file). One that cannot be written (a full disk, a folder in its place) does not keep the others from being
written; :class:`NotWritten` then names each that was not."""
from __future__ import annotations

import datetime as dt
import html
import json
import os

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from core.files import atomic_write
from core.labels import CLASS_NAMES
from pipeline.monitor import charts, server_metrics, versions

JSON_FILE, HTML_FILE, PROM_FILE = "monitor.json", "report.html", "monitor.prom"
FEATURE_RANGES = {"ink_share": (0.0, 1.0), "mean_intensity": (0.0, 1.0), "aspect": (0.0, 3.0)}


class NotWritten(Exception):
    """Outputs of a pass that could not be written; the message names each with the reason."""


def counts(by_model: dict) -> str:
    """Other models' records, feedback or requests, as said: ``216 × letters, 3 × other``."""
    return ", ".join(f"{n} × {name}" for name, n in sorted(by_model.items()))


def public(value):
    """The result without the raw values kept for the charts (keys starting with _)."""
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list):
        return [public(v) for v in value]
    return value


def write_json(result: dict, out_dir: str) -> str:
    path = os.path.join(out_dir, JSON_FILE)
    atomic_write(path, json.dumps(public(result), indent=2, default=str).encode("utf-8"))
    return path


def write_prometheus(result: dict, out_dir: str) -> str:
    registry = CollectorRegistry()
    gauge = lambda name, text, labels=(): Gauge(f"letters_monitor_{name}", text, labels, registry=registry)  # noqa
    crossed = gauge("threshold_crossed", "1 when a monitoring threshold was crossed")
    crossed.set(int(result["crossed"]))
    gauge("last_run_timestamp_seconds", "when the monitor last ran").set(result["generated_at"])
    gauge("log_problems", "request-log records or files that could not be used").set(
        sum((result.get("logs") or {}).get("problems", {}).values()))
    if result.get("server"):   # only with --metrics-url: 0 when the page could not be read (an alarm)
        gauge("server_metrics_up", "1 when the model server's metrics page was read").set(
            int(not result["server"].get("error")))
    unusable = gauge("unusable_share", "share of answers in the version's newest window that cannot be used",
                     ["version"])
    for row in newest_groups(result.get("unusable", [])):
        unusable.labels(str(row["version"])).set(row["share"])
    exported = ("in the version's window exported: of its windows judged (the current one and the one before it), "
                "the newest that crossed a threshold, else the older, else its newest window")
    requests = gauge("requests", f"answers {exported}", ["version"])
    judged = gauge("window_judged", f"1 when the alarms judged the version's window exported (answers enough, in the "
                                    f"current window or the one before it; else its numbers are shown, not judged): "
                                    f"{exported}", ["version"])
    low = gauge("low_confidence_share", f"share of answers below the confidence threshold {exported}", ["version"])
    measure = gauge("distribution_distance", f"TFDV drift/skew measurement {exported}",
                    ["version", "check", "feature", "measure"])
    for group in exported_groups(result["groups"]):
        version = str(group["version"])
        requests.labels(version).set(group["requests"])
        judged.labels(version).set(int(group["judged"]))
        low.labels(version).set(group["confidence"]["low_share"])
        for check in ("label_drift", "input_skew"):
            for m in group.get(check, {}).get("measurements", []):
                measure.labels(version, check, m["feature"], m["measure"]).set(m["value"])
    accuracy = gauge("live_accuracy", "share of feedback confirming the answer", ["version", "bound"])
    for version, row in result["live_accuracy"].items():
        accuracy.labels(version, "estimate").set(row["accuracy"])
        accuracy.labels(version, "low").set(row["interval"][0])
        accuracy.labels(version, "high").set(row["interval"][1])
    path = os.path.join(out_dir, PROM_FILE)
    atomic_write(path, generate_latest(registry))
    return path


def newest_groups(groups: list[dict]) -> list[dict]:
    newest = {}
    for group in groups:
        if group["version"] not in newest or group["window_start"] > newest[group["version"]]["window_start"]:
            newest[group["version"]] = group
    return [newest[v] for v in sorted(newest, key=versions.order)]


def shown_groups(groups: list[dict]) -> list[dict]:
    """The groups shown in detail, in their order: each version's newest window, judged or not, and each window
    alarms judged (the current one and the one before it, with answers enough: checks.judge_group)."""
    newest = {id(group) for group in newest_groups(groups)}
    return [group for group in groups if id(group) in newest or group["judged"]]


def chart_suffixes(groups: list[dict]) -> dict:
    """{id(group): the suffix of its chart files} for each shown group: within a version, its newest window "", the
    shown one before it "_before", the one before that "_before2" (and so on): each window its own files, named the
    same from one pass to the next."""
    suffixes, earlier = {}, {}
    for group in sorted(shown_groups(groups), key=lambda g: g["window_start"], reverse=True):
        n = earlier[group["version"]] = earlier.get(group["version"], -1) + 1
        suffixes[id(group)] = "" if n == 0 else "_before" if n == 1 else f"_before{n}"
    return suffixes


def group_crossed(group: dict) -> bool:
    """Whether a threshold was crossed in a window's group (checks.judge_group): its label drift, its input skew or
    its confidence, each an alarm of checks.alarms."""
    return group["confidence"]["crossed"] or any(group.get(key, {}).get("crossed")
                                                 for key in ("label_drift", "input_skew"))


def exported_groups(groups: list[dict]) -> list[dict]:
    """Per version, the shown group monitor.prom exports. Of its windows the alarms judged (the current one and the
    one before it, with answers enough): the newest that crossed a threshold, else the older, the whole window
    before the current one over the current one unfinished (an hourly run at :17 exports the previous hour, not
    17 minutes, though both were judged); with none judged, the newest window."""
    by_version = {}
    for group in sorted(shown_groups(groups), key=lambda g: g["window_start"]):
        by_version.setdefault(group["version"], []).append(group)
    return [_exported(by_version[v]) for v in sorted(by_version, key=versions.order)]


def _exported(shown: list[dict]) -> dict:
    """The group exported of one version's ``shown`` groups, oldest first (:func:`exported_groups`)."""
    judged = [group for group in shown if group["judged"]]
    crossed = [group for group in judged if group_crossed(group)]
    return crossed[-1] if crossed else judged[0] if judged else shown[-1]


def _esc(value) -> str:
    return html.escape(str(value))


def _table(headers, rows) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _verdict(crossed: bool, judged: dict) -> str:
    """A measurement's or an unusable share's cell: crossed, ok, or not judged and why (``judged``: its group or
    row, checks.judge_group's ``judged`` and ``not_judged``)."""
    if crossed:
        return '<span class="bad">crossed</span>'
    return "ok" if judged["judged"] else f"not judged ({_esc(judged['not_judged'])})"


def _measure_rows(group: dict) -> list:
    rows = []
    for check in ("label_drift", "input_skew"):
        for m in group.get(check, {}).get("measurements", []):
            rows.append([_esc(check), _esc(m["feature"]), _esc(m["measure"]), f"{m['value']:.4f}",
                         f"{m['threshold']:g}", _verdict(m["crossed"], group)])
    return rows


def _charts(result: dict, out_dir: str) -> dict:
    """Draws the PNGs of each shown group; {id(group): [(file, alt text)]}, "_accuracy" for live accuracy. A
    version's newest window is drawn as ``<chart>_v<version>.png``, the shown window before it (judged) as
    ``<chart>_v<version>_before.png``, the one before that as ``…_before2.png`` (:func:`chart_suffixes`): the
    names a pass writes are the next one's."""
    pictures = {}
    eval_shares = result.get("eval_label_shares", {})
    training = result.get("_training_values", {})
    suffixes = chart_suffixes(result["groups"])
    for group in shown_groups(result["groups"]):
        v = str(group["version"])
        files = pictures.setdefault(id(group), [])
        suffix = suffixes[id(group)]
        name = f"classes_v{v}{suffix}.png"
        charts.paired_bars(os.path.join(out_dir, name), list(CLASS_NAMES),
                           [group["predicted_shares"][c] for c in CLASS_NAMES],
                           [eval_shares.get(c, 0.0) for c in CLASS_NAMES],
                           f"version {v}, {group['window']}: predicted classes vs eval labels", ("predicted", "eval"))
        files.append((name, "predicted class shares against the eval split's labels"))
        name = f"confidence_v{v}{suffix}.png"
        values = [(i + 0.5) / len(group["confidence"]["histogram"])
                  for i, n in enumerate(group["confidence"]["histogram"]) for _ in range(n)]
        charts.histogram(os.path.join(out_dir, name), values, None, len(group["confidence"]["histogram"]), 0, 1,
                         f"version {v}, {group['window']}: top-1 score", mark=group["confidence"]["low_below"])
        files.append((name, "distribution of top-1 scores"))
        for feature, (low, high) in FEATURE_RANGES.items():
            name = f"{feature}_v{v}{suffix}.png"
            charts.histogram(os.path.join(out_dir, name), group["_values"].get(feature, []), training.get(feature, []),
                             20, low, high, f"version {v}, {group['window']}: {feature} (served vs training)")
            files.append((name, f"{feature} of served images against the training split"))
    if result["live_accuracy"]:
        rows = [(f"version {v}", r["accuracy"], *r["interval"]) for v, r in result["live_accuracy"].items()]
        threshold = next(iter(result["live_accuracy"].values()))["threshold"]
        charts.intervals(os.path.join(out_dir, "live_accuracy.png"), rows, threshold,
                         "live accuracy from feedback (95% Wilson interval)")
        pictures["_accuracy"] = [("live_accuracy.png", "live accuracy per version with its interval")]
    return pictures


STYLE = """body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}.bad{color:#b00;font-weight:bold}
.ok{color:#070}img{max-width:100%;margin:4px;border:1px solid #eee}"""


def write_html(result: dict, out_dir: str) -> str:
    pictures = _charts(result, out_dir)
    when = dt.datetime.fromtimestamp(result["generated_at"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    verdict = ('<p class="bad">Thresholds crossed:</p><ul>' + "".join(f"<li>{_esc(a['text'])}</li>"
                                                                      for a in result["alarms"]) + "</ul>"
               if result["alarms"] else '<p class="ok">No threshold crossed.</p>')
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>letters monitor</title>"
             f"<style>{STYLE}</style></head><body><h1>letters: served model monitor</h1><p>{_esc(when)}</p>", verdict]
    logs = result.get("logs")
    if logs:
        problems = ", ".join(f"{n} × {r}" for r, n in logs["problems"].items()) or "none"
        others = counts(logs.get("other_models", {})) or "none"
        parts.append(f"<h2>Request log</h2><p>{logs['files']} files, {logs['records']} records, {logs['answers']} "
                     f"answered images of model <code>{_esc(logs.get('model', ''))}</code> from "
                     f"<code>{_esc(logs['prefix'])}</code>; answers without probabilities (filtered by the "
                     f"request), not checked: {logs.get('filtered', 0)}; log problems: {_esc(problems)}; other models' "
                     f"records, left out: {_esc(others)}</p>")
    if result["reference"]:
        ref = result["reference"]
        acc = ref["eval_accuracy"]
        parts.append(f"<p>Reference: blessed model's eval split, top-1 accuracy "
                     f"{'?' if acc is None else f'{acc:.3f}'}; training images from "
                     f"<code>{_esc(ref['examples_uri'])}</code></p>")
    else:
        parts.append("<p>No pipeline reference: drift and skew were not checked.</p>")
    ahead = result.get("future_dated") or {}
    if ahead.get("answers") or ahead.get("feedback"):
        parts.append(f"<p>{ahead['answers']} answers and {ahead['feedback']} feedback rows are dated after this report "
                     "(a clock ahead?): left out of the checks.</p>")
    parts.append("<h2>Traffic per version and window</h2>")
    parts.append(_table(["version", "window", "answers", "judged", "mean top-1", "low-confidence share", "sources",
                         "formats"],
                        [[_esc(g["version"]), _esc(g["window"]), g["requests"],
                          "yes" if g["judged"] else f"no: {_esc(g['not_judged'])}",
                          "-" if g["confidence"]["mean"] is None else f"{g['confidence']['mean']:.3f}",
                          f"{g['confidence']['low_share']:.1%}", _esc(g["sources"]), _esc(g["formats"])]
                         for g in result["groups"]]))
    faulty = [row for row in result.get("unusable", []) if row["unusable"]]
    if faulty:
        parts.append("<h2>Unusable answers (none, the wrong shape or not finite)</h2>")
        parts.append(_table(["version", "window", "answers", "unusable", "share", "threshold", ""],
                            [[_esc(r["version"]), _esc(r["window"]), r["answers"], r["unusable"], f"{r['share']:.1%}",
                              f"{r['threshold']:.1%}", _verdict(r["crossed"], r)]
                             for r in faulty]))
    newest = {id(group) for group in newest_groups(result["groups"])}
    for group in shown_groups(result["groups"]):
        v = str(group["version"])
        shown = "" if group["judged"] else f" ({group['not_judged']}: shown, not judged)"
        parts.append(f"<h2>Version {_esc(v)} — {'newest window' if id(group) in newest else 'window'} "
                     f"{_esc(group['window'])}{_esc(shown)}</h2>")
        rows = _measure_rows(group)
        if rows:
            parts.append(_table(["check", "feature", "measure", "value", "threshold", ""], rows))
        for check in ("label_drift", "input_skew"):
            for feature, text in group.get(check, {}).get("anomalies", {}).items():
                parts.append(f"<p><b>{_esc(check)} {_esc(feature)}</b>: {_esc(text)}</p>")
        parts += [f'<img src="{_esc(f)}" alt="{_esc(alt)}">' for f, alt in pictures.get(id(group), [])]
    parts.append("<h2>Live accuracy (feedback)</h2>")
    if result["live_accuracy"]:
        parts.append(_table(["version", "feedback", "corrected", "accuracy", "95% interval", "evaluator top-1",
                             "most corrected (predicted → true)"],
                            [[_esc(v), r["feedback"], r["corrected"], f"{r['accuracy']:.3f}",
                              f"{r['interval'][0]:.3f}–{r['interval'][1]:.3f}"
                              + (' <span class="bad">below</span>' if r["crossed"] else ""),
                              _esc(_evaluator_accuracy(result, v)),
                              _esc(", ".join(f"{c['predicted']}→{c['true']} ×{c['count']}"
                                             for c in r["confusions"][:5]))]
                             for v, r in result["live_accuracy"].items()]))
        parts += [f'<img src="{_esc(f)}" alt="{_esc(alt)}">' for f, alt in pictures.get("_accuracy", [])]
    else:
        parts.append("<p>No feedback.</p>")
    if result.get("feedback_other_models"):
        others = counts(result["feedback_other_models"])
        parts.append(f"<p>Other models' feedback, left out: {_esc(others)}</p>")
    server = result.get("server")
    if server and server.get("error"):
        parts.append(f'<h2>Server</h2><p class="bad">No metrics from <code>{_esc(server["url"])}</code>: '
                     f"{_esc(server['error'])}</p>")
    elif server:
        lat = server["latency_ms"]
        fmt = lambda x: "-" if x is None else f"{x:.2f} ms"   # noqa: E731
        others = counts(server_metrics.left_out(server)) or "none"
        parts.append(f"<h2>Server</h2><p>{server['requests']} requests of model "
                     f"<code>{_esc(server.get('model') or 'any')}</code> (and {server.get('status_checks', 0)} "
                     f"model-status checks), {server['errors']} failed on the server "
                     f"({server['error_share']:.2%} of the {server['answerable']} not refused), "
                     f"{server.get('rejected', 0)} refused as the client's mistake; by status "
                     f"{_esc(server['errors_by_status'])}; latency p50 {fmt(lat['p50'])}, "
                     f"p95 {fmt(lat['p95'])}, mean {fmt(lat['mean'])}; other models' requests, left out: "
                     f"{_esc(others)}</p>")
        for name, why in server_metrics.unavailable(server).items():
            parts.append(f'<p class="bad">Model <code>{_esc(server["model"])}</code> is not available on '
                         f"{_esc(name)}: {_esc(why)}; any NOT_FOUND it answered counted as failed on the server.</p>")
        if unread := server_metrics.status_unread(server):
            parts.append(f"<p>{_esc(unread)}.</p>")
        if server.get("pages"):   # a name of several addresses: their pages summed
            parts.append(f"<p>The sum of the pages of {len(server['pages'])} addresses: "
                         f"{_esc(', '.join(server['pages']))}.</p>")
    retrain = result.get("retrain")
    if retrain:
        parts.append(f"<h2>Retraining</h2><p>{_esc(retrain['text'])}</p>")
    parts.append("</body></html>")
    path = os.path.join(out_dir, HTML_FILE)
    atomic_write(path, "\n".join(parts).encode("utf-8"))   # a reader (a browser, a watch pass) sees a whole page
    return path


def _evaluator_accuracy(result: dict, version: str) -> str:
    ref = result.get("reference") or {}
    value = ref.get("version_accuracy", {}).get(version)
    return "-" if value is None else f"{value:.3f}"


def write_all(result: dict, out_dir: str) -> dict:
    """{'json', 'prometheus', 'html'}: the paths written. The small files the alerting reads come first (a disk
    with little room left still gets them); :class:`NotWritten` when any could not be written."""
    paths, failed = {}, []
    for key, name, write in (("json", JSON_FILE, write_json), ("prometheus", PROM_FILE, write_prometheus),
                             ("html", f"{HTML_FILE} and its charts", write_html)):
        try:
            os.makedirs(out_dir, exist_ok=True)
            paths[key] = write(result, out_dir)
        except OSError as err:
            failed.append(f"{name}: {err.strerror or err}")
    if failed:
        raise NotWritten(f"could not write into {out_dir}: " + "; ".join(failed))
    return paths
