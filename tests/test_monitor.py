"""pipeline.monitor on generated letters: request logs written as the servers write them, a pipeline root with
ML Metadata built without running the pipeline (tests/support/fake_pipeline.py), a real feedback store."""
import contextlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image, ImageOps

from core.feedback import FeedbackStore
from core.labels import CLASS_INDEX, CLASS_NAMES
from pipeline.monitor import cli, live_accuracy, retrain, server_metrics, windows
from tests.conftest import ROOT
from tests.support import fake_pipeline
from tests.support.request_logs import confident, prediction_log, write_log
from tests.support.trickle import trickle

pytestmark = pytest.mark.slow   # TFDV statistics of a pipeline root and Chromium

DAY = 86400


def write_with_writer(prefix: str, version: int, top: int, count: int = 1) -> None:
    """``count`` answers of ``version`` (``top`` its confident class) written by the project's writer
    (core.request_log) given ``prefix`` as its filename_prefix, so under the writer's own file names."""
    from core import prediction_log as records, request_log

    writer = request_log.RequestLogWriter(prefix, 1.0)
    for _ in range(count):
        writer.write(records.predict_log(
            "letters", "predict_images", version, {"images": records.bytes_tensor([b"image"])},
            {"probabilities": records.float_tensor([confident(top).tolist()])}, 1.0, "canvas", 1.0))
    writer.close()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def inverted(data: bytes) -> bytes:
    return _png(ImageOps.invert(Image.open(io.BytesIO(data)).convert("L")))


def rescaled(data: bytes, factor: float = 3.0) -> bytes:
    img = Image.open(io.BytesIO(data))
    return _png(img.resize((int(img.width * factor), int(img.height * factor))))


@pytest.fixture(autouse=True)
def no_default_request_log(monkeypatch, tmp_path):
    """Without --logs the monitor reads make demo's request log folder if there is one: not in these tests."""
    monkeypatch.setenv("LETTERS_REQUEST_LOG_DIR", str(tmp_path / "no-request-log"))


@pytest.fixture(scope="module")
def letters(tmp_path_factory):
    """{class: [png bytes]}: 15 per class for the pipeline root, and 3 other ones per class as traffic."""
    from pipeline import generate_letters

    work = tmp_path_factory.mktemp("monitor_letters")
    # font renders: each image drawn on its own, so 3 per class are a fair sample of the training letters (the
    # stroke style draws each class once per writer, and 3 writers' sizes are not a sample of 15 writers')
    generate_letters.generate(work / "data", per_class=15, seed=3, progress=False, style="fonts")
    generate_letters.generate(work / "traffic", per_class=3, seed=4, progress=False, style="fonts")
    read = lambda root: {name: [p.read_bytes() for p in sorted((root / name).glob("*.png"))]  # noqa: E731
                         for name in CLASS_NAMES}
    return read(work / "data"), read(work / "traffic")


@pytest.fixture(scope="module")
def pipeline_root(letters, tmp_path_factory):
    data, _ = letters
    root = tmp_path_factory.mktemp("monitor_root")
    train = [(image, name) for name in CLASS_NAMES for image in data[name][:12]]
    eval_items = [(image, name) for name in CLASS_NAMES for image in data[name][12:]]
    fake_pipeline.build(root, train, eval_items, pushed_version=7)
    return root


def traffic(letters, transform=lambda b: b, only=None, repeat=1):
    """[(image, true class)] drawn like the training data (another seed), maybe changed."""
    _, served = letters
    names = [only] if only else CLASS_NAMES
    return [(transform(image), name) for _ in range(repeat) for name in names for image in served[name]]


def log_traffic(path, items, version=7, mtime=None, examples_form=False):
    logs = [prediction_log([image], confident(CLASS_INDEX[name])[None, :], version, examples_form)
            for image, name in items]
    return write_log(path, logs, mtime)


def monitor(tmp_path, pipeline_root, *extra, logs=None, feedback=None):
    """The monitor's run; windows of 50 answers judged (the tests' traffic is 81 answers, three per class)."""
    out = tmp_path / "report"
    argv = ["--pipeline-root", str(pipeline_root), "--out", str(out),
            "--feedback-dir", str(feedback or tmp_path / "no-feedback"), *(["--logs", str(logs)] if logs else []),
            *([] if "--monitor-min-requests" in extra else ["--monitor-min-requests", "50"]), *extra]
    status = cli.main(argv)
    return status, json.loads((out / "monitor.json").read_text()) if (out / "monitor.json").exists() else None, out


def test_traffic_like_the_training_data_raises_nothing(tmp_path, letters, pipeline_root):
    items = traffic(letters)
    log_traffic(tmp_path / "logs" / "requests.1", items[: len(items) // 2])
    log_traffic(tmp_path / "logs" / "requests.2", items[len(items) // 2:], examples_form=True)
    status, result, out = monitor(tmp_path, pipeline_root, logs=tmp_path / "logs")
    assert status == cli.OK, result["alarms"]
    (group,) = result["groups"]
    assert group["version"] == 7 and group["requests"] == 81 and group["judged"]
    assert group["label_drift"]["anomalies"] == {} and group["input_skew"]["anomalies"] == {}
    measured = {(m["feature"], m["measure"]) for m in group["input_skew"]["measurements"]}
    assert {("ink_share", "jensen_shannon"), ("aspect", "jensen_shannon"), ("format", "l_infinity")} <= measured
    assert not {feature for feature, _ in measured} & {"width", "height"}   # shown, not judged
    assert group["sources"] == {"upload": 81} and group["formats"] == {"PNG": 81}
    assert result["logs"]["problems"] == {}
    prom = (out / "monitor.prom").read_text()
    assert "letters_monitor_threshold_crossed 0.0" in prom
    assert 'letters_monitor_requests{version="7"} 81.0' in prom
    html = (out / "report.html").read_text()
    images = [part.split('"')[0] for part in html.split('<img src="')[1:]]
    assert images and all((out / name).is_file() for name in images)
    assert "No threshold crossed" in html


def on_pad(data: bytes) -> bytes:
    """The letter as the web client's pad sends a drawing: dark ink on white (no scanned paper), its longer side
    240 px, in the middle of 320 x 320."""
    letter = ImageOps.autocontrast(Image.open(io.BytesIO(data)).convert("L"))
    scale = 240 / max(letter.size)
    letter = letter.resize((max(1, round(letter.width * scale)), max(1, round(letter.height * scale))))
    pad = Image.new("L", (320, 320), 255)
    pad.paste(letter, ((320 - letter.width) // 2, (320 - letter.height) // 2))
    return _png(pad)


@pytest.mark.parametrize("transform", [on_pad, rescaled])
def test_letters_drawn_on_the_pad_or_at_another_scale_are_not_input_skew(tmp_path, letters, pipeline_root,
                                                                        transform):
    """The features are the ink crop's, which the model scales to its input size: measured on the whole image,
    every drawing from the web client's 320 x 320 pad had crossed the size, aspect, ink share and grey-level
    thresholds (jensen_shannon 1.0), and --retrain-when drift would retrain on every run."""
    log_traffic(tmp_path / "logs" / "requests", traffic(letters, transform=transform))
    status, result, _ = monitor(tmp_path, pipeline_root, logs=tmp_path / "logs")
    (group,) = result["groups"]
    assert status == cli.OK and not group["input_skew"]["crossed"], group["input_skew"]
    assert group["sources"] == {"canvas" if transform is on_pad else "upload": 81}


@pytest.mark.parametrize("case, features", [
    ("one letter", {"label_name"}),
    ("inverted", {"ink_share", "mean_intensity"}),
    ("inverted on the pad", {"ink_share", "mean_intensity"}),
])
def test_changed_traffic_raises_the_right_anomaly(tmp_path, letters, pipeline_root, case, features):
    items = {"one letter": lambda: traffic(letters, only="shin", repeat=20),
             "inverted": lambda: traffic(letters, transform=inverted),
             "inverted on the pad": lambda: traffic(letters, transform=lambda b: inverted(on_pad(b)))}[case]()
    log_traffic(tmp_path / "logs" / "requests", items)
    status, result, out = monitor(tmp_path, pipeline_root, logs=tmp_path / "logs")
    assert status == cli.CROSSED
    (group,) = result["groups"]
    check = "label_drift" if case == "one letter" else "input_skew"
    crossed = {m["feature"] for m in group[check]["measurements"] if m["crossed"]}
    assert features <= crossed and features <= set(group[check]["anomalies"])
    assert any(a["kind"] == check for a in result["alarms"])
    if case != "one letter":   # the answers still look like the eval labels
        assert not group["label_drift"]["crossed"]
    assert "Thresholds crossed" in (out / "report.html").read_text()


def test_versions_and_days_are_reported_apart(tmp_path, letters, pipeline_root):
    now = time.time()
    items = traffic(letters)
    log_traffic(tmp_path / "logs" / "a", items, version=7, mtime=now - 2 * DAY)
    log_traffic(tmp_path / "logs" / "b", traffic(letters, transform=inverted), version=7, mtime=now)
    log_traffic(tmp_path / "logs" / "c", items[:10], version=8, mtime=now)
    status, result, _ = monitor(tmp_path, pipeline_root, logs=tmp_path / "logs")
    keys = [(g["version"], g["window"]) for g in result["groups"]]
    assert len(keys) == 3 and sorted({k[0] for k in keys}) == [7, 8]
    by = {(g["version"], g["window_start"] > now - DAY): g for g in result["groups"]}
    assert not by[(7, False)]["input_skew"]["crossed"] and by[(7, True)]["input_skew"]["crossed"]
    assert not by[(8, True)]["judged"] and not by[(8, True)]["input_skew"]["crossed"]   # 10 answers: too few
    assert status == cli.CROSSED and {a["version"] for a in result["alarms"]} == {7}
    _, result, _ = monitor(tmp_path, pipeline_root, "--window", "all", logs=tmp_path / "logs")
    assert [g["window"] for g in result["groups"]] == ["all", "all"]


def test_versions_are_listed_by_number_not_as_text(tmp_path, letters):
    """TF Serving orders versions as integers: version 9 comes before version 10 in the groups, the unusable
    answers, live accuracy, the alarms and the report (as text, "10" had come first); what names no version number
    comes after them."""
    import datetime as dt
    import re

    from core.configs import Config
    from core.feedback import Feedback
    from pipeline.monitor import checks, report, request_logs, versions

    now = 10 * DAY + 1800   # the middle of an hour: 4000 s before it is in the hour before
    (image, name), = traffic(letters)[:1]
    answers = [request_logs.Answer(time=now - ago, version=version, image=image, top1=CLASS_INDEX[name], score=0.1,
                                   origin="") for version, ago in ((9, 4000), (9, 30), (10, 30), (None, 30))]
    unusable = [request_logs.Unusable(time=now - 30, version=version) for version in (10, 9)]
    when = dt.datetime.fromtimestamp(now - 30, dt.timezone.utc).isoformat()
    feedback = [Feedback(f"{version}-{i}", when, "alef", "bet", 0.8, version, None, False, "x.png", "PNG", "0", 1, 1,
                         1) for version in (10, None, 9) for i in range(10)]   # every answer corrected
    result = checks.run(checks.Traffic(3600, now).add_all(answers), feedback, None, None,
                        Config().replace(monitor_min_requests=1, monitor_min_feedback=1), unusable)
    assert [(g["version"], g["window_start"]) for g in result["groups"]] == [
        (9, now - 1800 - 3600), (9, now - 1800), (10, now - 1800), (None, now - 1800)]
    assert [row["version"] for row in result["unusable"]] == [9, 9, 10, None]
    assert list(result["live_accuracy"]) == ["9", "10", "unknown"]
    by_kind = lambda kind: [a["version"] for a in result["alarms"] if a["kind"] == kind]  # noqa: E731
    assert (by_kind("low_confidence"), by_kind("unusable_answers"), by_kind("accuracy")) == (
        [9, 9, 10, None], [9, 10], ["9", "10", "unknown"])
    html = open(report.write_html(result, str(tmp_path))).read()
    assert re.findall(r"<h2>Version (\S+) — (newest )?window", html) == [
        ("9", ""), ("9", "newest "), ("10", "newest "), ("None", "newest ")]
    assert [g["version"] for g in report.exported_groups(result["groups"])] == [9, 10, None]
    assert sorted([10, live_accuracy.NO_MODEL, "unknown", 9, None, "11"], key=versions.order) == [
        9, 10, "11", None, live_accuracy.NO_MODEL, "unknown"]


def add_feedback(store_dir, letters, corrected_share: float, version: int = 7, n: int = 50, now=None,
                 model_name=None):
    _, served = letters
    store = FeedbackStore(store_dir)
    wrong = int(n * corrected_share)
    for i in range(n):
        true = CLASS_NAMES[i % 27]
        predicted = CLASS_NAMES[(i + 1) % 27] if i < wrong else true
        store.add(served[true][0], "PNG", true, predicted_label=predicted, probability=0.8, model_version=version,
                  now=now, model_name=model_name)
    store.close()


def test_corrections_lower_live_accuracy_and_retraining_fires(tmp_path, letters, pipeline_root, capsys):
    add_feedback(tmp_path / "feedback", letters, corrected_share=0.4)
    status, result, out = monitor(tmp_path, pipeline_root, "--retrain-when", "accuracy", "--dry-run", "--",
                                  "--serving-dir", str(tmp_path / "serving"), feedback=tmp_path / "feedback")
    row = result["live_accuracy"]["7"]
    assert (row["feedback"], row["corrected"], row["accuracy"]) == (50, 20, 0.6)
    assert row["interval"][0] < 0.6 < row["interval"][1] < 0.75 and row["crossed"]
    assert row["confusions"][0]["count"] == 1 and len(row["confusions"]) == 10
    assert status == cli.CROSSED and [a["kind"] for a in result["alarms"]] == ["accuracy"]
    assert result["retrain"]["fires"]
    cmd = result["retrain"]["command"]
    assert cmd[1:3] == ["-m", "local_runner"] and cmd[cmd.index("--feedback-dir") + 1] == str(tmp_path / "feedback")
    assert cmd[cmd.index("--pipeline-root") + 1] == str(pipeline_root) and cmd[-2:] == ["--serving-dir",
                                                                                       str(tmp_path / "serving")]
    assert "retrain command:" in capsys.readouterr().out
    assert (out / "live_accuracy.png").is_file()


def test_good_feedback_does_not_fire(tmp_path, letters, pipeline_root):
    add_feedback(tmp_path / "feedback", letters, corrected_share=0.04)
    status, result, _ = monitor(tmp_path, pipeline_root, "--retrain-when", "accuracy", "--dry-run",
                                feedback=tmp_path / "feedback")
    assert status == cli.OK and not result["retrain"]["fires"] and not result["live_accuracy"]["7"]["crossed"]
    # Every row is newer than the (fake) pipeline run: feedback>=N counts them.
    status, result, _ = monitor(tmp_path, pipeline_root, "--retrain-when", "feedback>=50", "--dry-run",
                                feedback=tmp_path / "feedback")
    assert result["retrain"]["fires"] and status == cli.OK


def test_bad_log_data_is_counted_not_fatal(tmp_path, letters, pipeline_root, capsys):
    items = traffic(letters)
    log_traffic(tmp_path / "logs" / "good", items)
    write_log(tmp_path / "logs" / "junk", [b"not a protobuf \xff\xff\xff", prediction_log([b"xx"], None, 7)])
    truncated = log_traffic(tmp_path / "logs" / "truncated", items[:5])
    with open(truncated, "r+b") as f:
        f.truncate(os.path.getsize(truncated) - 7)
    status, result, out = monitor(tmp_path, pipeline_root, logs=tmp_path / "logs")
    problems = result["logs"]["problems"]
    # judged, the problems said as log problems: "unusable" is the report's word for the model's bad answers
    said, html = capsys.readouterr().out, (out / "report.html").read_text()
    assert "log problems: " in said and "1 × unparsable_record" in said.split("log problems: ")[1].splitlines()[0]
    assert "1 × unparsable_record" in html.split("log problems: ")[1].split("<")[0] and "unusable:" not in html
    assert problems.get("unparsable_record") == 1 and problems.get("no_answer") == 1
    assert problems.get("truncated_tail") == 1 and "unreadable_file" not in problems   # its 4 whole records read
    assert result["logs"]["answers"] == 81 + 4 and status == cli.OK
    damaged = bytearray(open(truncated, "rb").read())
    damaged[20] ^= 0xFF                                                     # a damaged record: skipped
    open(truncated, "wb").write(bytes(damaged))
    status, result, _ = monitor(tmp_path, pipeline_root, logs=tmp_path / "logs")
    problems = result["logs"]["problems"]
    assert problems.get("corrupt_record") == 1 and problems.get("truncated_tail") == 1
    assert "unreadable_file" not in problems and result["logs"]["answers"] == 81 + 3


@pytest.mark.parametrize("content", ["not_tfrecord", "short_not_tfrecord", "not_prediction_logs", "empty"])
def test_a_log_from_which_no_answer_can_be_read_is_a_usage_error_not_an_all_clear(tmp_path, pipeline_root, capsys,
                                                                                  content):
    """A log of another format, of records that are not PredictionLogs, or of empty files gives no answer to judge:
    status 2 naming the files and what was found, as a missing log, where it had been 0 (no threshold crossed)."""
    from core.request_log import tfrecord
    data = {"not_tfrecord": b'{"not": "a tfrecord"}\n', "short_not_tfrecord": b"hello\n",
            "not_prediction_logs": b"".join(tfrecord(b"\xff\xff\xff garbage %d" % i) for i in range(500)),
            "empty": b""}[content]
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "requests.log").write_bytes(data)
    status, result, _ = monitor(tmp_path, pipeline_root, logs=tmp_path / "logs")
    err = capsys.readouterr().err
    assert status == cli.USAGE and result is None, err
    assert f"error: no answer could be read from the request log {tmp_path / 'logs'}" in err
    assert str(tmp_path / "logs" / "requests.log") in err
    assert {"not_tfrecord": "1 × corrupt_length", "short_not_tfrecord": "1 × too_short",
            "not_prediction_logs": "500 × unparsable_record", "empty": "its files hold no record"}[content] in err
    if content == "short_not_tfrecord":   # not a record cut short after others read (truncated_tail)
        assert "requests.log: the file holds 6 bytes, too short to hold one record: not TFRecords, or damaged" in err


@pytest.mark.parametrize("unparsable", [0, 3])
def test_a_log_without_a_record_of_the_monitored_model_is_a_usage_error_naming_the_models_it_holds(
        tmp_path, pipeline_root, capsys, unparsable):
    """A --model mistyped (Letters for letters) left every record out as another model's: the pass had reported
    "0 answers, 0 feedback rows, 0 alarm(s)" and exit 0, an all-clear on nothing."""
    logs = [prediction_log([b"x"], confident(0)[None, :], 1) for _ in range(216)]
    write_log(tmp_path / "logs" / "requests-20260101T000000Z-000001.tfrecord",
              logs + [b"\xff\xff\xff garbage"] * unparsable)
    status, result, _ = monitor(tmp_path, pipeline_root, "--model", "Letters", logs=tmp_path / "logs")
    err = capsys.readouterr().err
    assert status == cli.USAGE and result is None, err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: no answer could be read from the request log {tmp_path / 'logs'} (1 file(s): ")
    assert err.rstrip().endswith("no record of model Letters (--model), other models' only: 216 × letters")
    assert (f"{unparsable} × unparsable_record (first: " in err) == bool(unparsable)


def test_usage_errors_exit_2(tmp_path, pipeline_root, capsys):
    status, _, _ = monitor(tmp_path, pipeline_root, logs=tmp_path / "nowhere")
    assert status == cli.USAGE and "no request log at" in capsys.readouterr().err
    (tmp_path / "logs").mkdir()
    write_log(tmp_path / "logs" / "r", [prediction_log([b"x"], confident(0)[None, :], 1)])
    status, _, _ = monitor(tmp_path, tmp_path / "not-a-pipeline-root", logs=tmp_path / "logs")
    assert status == cli.USAGE and "no ML Metadata store" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("")
    for bad in (["--window", "fortnight"], ["--retrain-when", "sometimes"], ["--monitor-label-js", "2"],
                ["--max-runs", "2"], ["--out", str(tmp_path / "a-file")]):   # before any work, not after it
        with pytest.raises(SystemExit) as exit_info:
            cli.parse_args(bad)
        assert exit_info.value.code == cli.USAGE
    proc = subprocess.run([sys.executable, "-m", "pipeline.monitor", "--logs", str(tmp_path / "nowhere"),
                           "--out", str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "error: no request log" in proc.stderr


def test_thresholds_come_from_config_and_flags(monkeypatch):
    monkeypatch.setenv("LETTERS_MONITOR_MIN_ACCURACY", "0.9")
    config, args, extra = cli.parse_args(["--monitor-label-js", "0.3", "--watch", "5", "--max-runs", "2", "--", "-x"])
    assert (config.monitor_min_accuracy, config.monitor_label_js, args.watch, args.max_runs, extra) == (
        0.9, 0.3, 5, 2, ["-x"])


def test_watch_runs_until_max_runs(tmp_path, pipeline_root, monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "once", lambda *a: calls.append(1) or cli.OK)
    monkeypatch.setattr(cli.time, "sleep", lambda s: calls.append(s))
    assert cli.main(["--watch", "3", "--max-runs", "3"]) == cli.OK
    assert calls == [1, 3, 1, 3, 1]


def test_a_watch_stopped_by_ctrl_c_or_sigterm_ends_with_one_line(tmp_path, pipeline_root, monkeypatch, capsys):
    import os
    import signal

    passes = []
    monkeypatch.setattr(cli, "once", lambda *a: passes.append(1) or cli.OK)
    monkeypatch.setattr(cli.time, "sleep", lambda s: os.kill(os.getpid(), signal.SIGTERM))
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["--watch", "600"]) == cli.INTERRUPTED == 130
    assert passes == [1] and capsys.readouterr().err == "monitor: stopped after 1 pass(es)\n"
    assert signal.getsignal(signal.SIGTERM) == before     # the handler put back


def test_wilson_windows_and_policies():
    low, high = live_accuracy.wilson(30, 50)
    assert round(low, 3) == 0.462 and round(high, 3) == 0.724
    assert live_accuracy.wilson(0, 0) == (0.0, 1.0)
    assert windows.parse("day") == DAY and windows.parse("6h") == 21600 and windows.parse("all") is None
    assert windows.label(windows.start(DAY * 3 + 5, DAY), DAY) == "1970-01-04"
    assert retrain.parse("feedback>=25") == retrain.Policy("feedback", 25)
    with pytest.raises(ValueError):
        retrain.parse("feedback>=0")


def test_server_metrics_from_the_embedded_servers_page():
    from serving.metrics import Metrics

    metrics = Metrics()
    for latency in [1000] * 90 + [50000] * 10:
        metrics.request("letters", "OK", api="predict", latency_us=latency)
    for _ in range(5):
        metrics.request("letters", "INVALID_ARGUMENT")   # the client's mistake (a label not configured, say)
    for _ in range(2):
        metrics.request("letters", "UNAVAILABLE")
    for _ in range(400):   # readiness probes: GET /v1/models/letters, fast, API=""
        metrics.request("letters", "OK", api="", latency_us=300)
    summary = server_metrics.summarize(metrics.render())
    assert (summary["requests"], summary["errors"], summary["rejected"]) == (107, 2, 5)
    assert summary["status_checks"] == 400
    assert summary["errors_by_status"] == {"INVALID_ARGUMENT": 5, "UNAVAILABLE": 2}
    assert summary["answerable"] == 102 and summary["error_share"] == 2 / 102
    assert summary["latency_ms"]["p50"] < 2 and 10 < summary["latency_ms"]["p95"] < 100


def test_a_version_that_does_not_exist_is_the_clients_mistake_unless_the_model_serves_none():
    """NOT_FOUND (a 404 over REST) is a version the server does not have: counted apart with INVALID_ARGUMENT, as
    is a status GET that failed, out of the error share's denominator; it had been counted as failed on the
    server, and a failed status GET as one of the requests the share is of. A model that answered none of its calls
    has no version available (loading, or failed to load: TF Serving answers it NOT_FOUND too): the server's
    failure."""
    from serving.metrics import Metrics

    metrics = Metrics()
    for _ in range(90):
        metrics.request("letters", "OK", api="predict", latency_us=1000)
    for _ in range(10):   # POST /v1/models/letters/versions/99:predict
        metrics.request("letters", "NOT_FOUND")
    for _ in range(20):   # GET /v1/models/letters/versions/99: failed, so no latency of API=""
        metrics.request("letters", "NOT_FOUND")
    metrics.request("letters", "INTERNAL")
    for _ in range(5):
        metrics.request("letters", "OK", api="", latency_us=300)
    summary = server_metrics.summarize(metrics.render(), "letters")
    assert (summary["requests"], summary["status_checks"], summary["errors"], summary["rejected"]) == (121, 5, 1, 30)
    assert summary["answerable"] == 91 and summary["error_share"] == 1 / 91
    assert summary["errors_by_status"] == {"NOT_FOUND": 30, "INTERNAL": 1}

    failed_to_load = Metrics()
    for _ in range(40):   # Servable not found for request: Latest(letters)
        failed_to_load.request("letters", "NOT_FOUND")
    for _ in range(5):   # its status GETs answer (state END, the load's error)
        failed_to_load.request("letters", "OK", api="", latency_us=300)
    summary = server_metrics.summarize(failed_to_load.render(), "letters")
    assert (summary["requests"], summary["errors"], summary["rejected"], summary["error_share"]) == (40, 40, 0, 1.0)


def test_report_renders_in_chromium(tmp_path, letters, pipeline_root):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("Chromium is not installed (make browser)")
    log_traffic(tmp_path / "logs" / "r", traffic(letters, transform=inverted))
    add_feedback(tmp_path / "feedback", letters, corrected_share=0.4)
    _, _, out = monitor(tmp_path, pipeline_root, logs=tmp_path / "logs", feedback=tmp_path / "feedback")
    shot = out / "screenshot.png"
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--enable-logging=stderr", "--v=0",
                           "--window-size=1280,2400", f"--screenshot={shot}", (out / "report.html").as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10000, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "ERR_FILE_NOT_FOUND" in line]
    assert console == [], console


def test_reads_what_the_web_backend_writes_with_its_time_and_origin(tmp_path, letters):
    """The monitor's reader and the project's writer (core.request_log) agree on the format: each answer keeps
    the version, the request's time and the web client's canvas/upload origin."""
    from core import prediction_log, request_log
    from pipeline.monitor import image_features, request_logs

    writer = request_log.RequestLogWriter(str(tmp_path / "logs" / "web"), sampling_rate=1.0)
    image = letters[1][CLASS_NAMES[3]][0]
    for origin, when in (("canvas", 1_700_000_000.0), ("upload", 1_700_086_400.0)):
        writer.write(prediction_log.predict_log(
            "letters", "predict_images", 4, {"images": prediction_log.bytes_tensor([image])},
            {"probabilities": prediction_log.float_tensor([confident(3).tolist()])}, 1.0, origin, when))
    writer.close()
    read = request_logs.read_logs(str(tmp_path / "logs"))
    assert not read.problems and [(a.version, a.time, a.origin, a.top1) for a in read.answers] == [
        (4, 1_700_000_000, "canvas", 3), (4, 1_700_086_400, "upload", 3)]
    assert [image_features.features(a.image, a.origin)["source"] for a in read.answers] == ["canvas", "upload"]


@pytest.mark.parametrize("kind", ["PNG gray", "PNG RGB", "PNG RGBA", "TIFF I;16", "TIFF I", "TIFF F"])
def test_an_image_of_16_or_32_bit_values_is_measured_as_the_model_reads_it(kind):
    """A 16-bit PNG is measured as the model's decoder reads it (the high byte of each value), as its 8-bit copy;
    a TIFF, which the model gets re-encoded (core.image_io.check_image), as that re-encoding. Made RGBA directly,
    every value over 255 had been white: a 16-bit grey letter had been measured as a blank image (ink share 0,
    mean 1), and a stream of them had set off the input-skew alarm."""
    import numpy as np
    import tensorflow as tf

    from core.image_io import check_image
    from models import preprocessing
    from pipeline.monitor import image_features

    letter = np.full((64, 48), 65535, np.uint16)   # a stroke of 20000 on paper of 65535: every value over 255
    letter[10:50, 15:30] = 20000
    if kind.startswith("PNG"):
        pixels = np.repeat(letter[..., None], {"PNG gray": 1, "PNG RGB": 3, "PNG RGBA": 4}[kind], axis=-1)
        data = tf.io.encode_png(pixels).numpy()
        read = tf.io.encode_png((pixels >> 8).astype(np.uint8)).numpy()   # as decode_image(dtype=uint8) reads it
    else:
        values = {"TIFF I;16": letter, "TIFF I": letter.astype(np.int32) * 1000,
                  "TIFF F": letter.astype(np.float32) / 65535}[kind]
        buf = io.BytesIO()
        Image.fromarray(values).save(buf, format="TIFF")
        data = buf.getvalue()
        read = check_image(data).data
    numeric = lambda image: {name: image_features.features(image)[name]  # noqa: E731
                             for name in image_features.NUMERIC}
    assert numeric(data) == numeric(read)
    ink = preprocessing.ink_crop(tf.constant(read)).numpy()
    assert (numeric(data)["height"], numeric(data)["width"]) == ink.shape
    assert numeric(data)["ink_share"] == pytest.approx(float(np.mean(ink > 0.5)), abs=1e-6)
    assert numeric(data)["mean_intensity"] == pytest.approx(float(1.0 - ink.mean()), abs=1e-6)


def test_a_pass_holds_the_answer_being_read_not_every_answers_image(tmp_path, letters, pipeline_root, monkeypatch):
    """The log is read as a stream: an answer's image features are computed as its record is read and its image let
    go. Every answer had been held with its image until the checks ran: 2 GB of memory for a full log (1 GiB), the
    monitor CronJob's limit."""
    import weakref

    from pipeline.monitor import image_features, request_logs

    alive, seen = weakref.WeakSet(), []   # the answers not yet let go; how many there were at each image's features
    answer, features = request_logs.Answer, image_features.features
    monkeypatch.setattr(request_logs, "Answer", lambda **fields: (made := answer(**fields), alive.add(made))[0])
    monkeypatch.setattr(image_features, "features",
                        lambda *args, **kwargs: (seen.append(len(alive)), features(*args, **kwargs))[1])
    log_traffic(tmp_path / "logs", traffic(letters))
    status, result, _ = monitor(tmp_path, pipeline_root, logs=tmp_path / "logs")
    assert status == cli.OK and result["logs"]["answers"] == 81 and [g["requests"] for g in result["groups"]] == [81]
    assert max(seen) == 1, seen


def test_the_windows_the_report_draws_keep_their_chart_values_and_no_other(letters):
    """Read as a stream, a window keeps its image features as columns; the raw values of the charts are taken for
    the windows the report draws (the newest, and a judged one the alarms judge), not for every window of a long
    log."""
    from core.configs import Config
    from pipeline.monitor import checks, image_features, request_logs

    now = 10 * DAY + 1800   # the middle of an hour
    items = traffic(letters)
    answers = [request_logs.Answer(time=now - hours * 3600, version=7, image=image, top1=CLASS_INDEX[name],
                                   score=0.9, origin="")
               for hours, count in ((3, 81), (1, 81), (0, 10)) for image, name in items[:count]]
    result = checks.run(checks.Traffic(3600, now).add_all(answers), [], None, None,
                        Config().replace(monitor_min_requests=50))
    assert [(g["requests"], g["judged"], g["recent"]) for g in result["groups"]] == [
        (81, False, False), (81, True, True), (10, False, True)]
    ink = lambda images: [image_features.features(i, "")["ink_share"] for i in images]  # noqa: E731
    assert [g.get("_values", {}).get("ink_share") for g in result["groups"]] == [
        None, ink(image for image, _ in items), ink(image for image, _ in items[:10])]


def test_each_window_the_report_shows_has_its_own_charts(tmp_path, letters):
    """Answers dated a little ahead (within the clock skew allowed) open a window after the current one: shown as
    the newest beside the two judged ones. Every earlier shown window had been drawn as ``*_before.png``, the judged
    window before the current one shown with the current one's charts."""
    from core.configs import Config
    from pipeline.monitor import checks, report, request_logs

    now = 10 * DAY + 50   # 10 s before the next minute: answers 65 s ahead are in the window after the current one
    items = traffic(letters)
    answers = [request_logs.Answer(time=now + offset, version=7, image=image, top1=CLASS_INDEX[name], score=0.9,
                                   origin="")
               for offset, count in ((-60, 10), (0, 10), (65, 3)) for image, name in items[:count]]
    result = checks.run(checks.Traffic(60, now).add_all(answers), [], None, None,
                        Config().replace(monitor_min_requests=5))
    assert [(g["requests"], g["judged"], g["recent"]) for g in result["groups"]] == [
        (10, True, True), (10, True, True), (3, False, False)]
    out = tmp_path / "report"
    out.mkdir()
    html = report.write_html(result, str(out))
    pictures = [part.split('"')[0] for part in open(html).read().split('<img src="')[1:]]
    classes = [name for name in pictures if name.startswith("classes_")]
    assert classes == ["classes_v7_before2.png", "classes_v7_before.png", "classes_v7.png"]
    assert len(set(pictures)) == len(pictures) and all((out / name).is_file() for name in pictures)


@pytest.mark.parametrize("cut", [0, 1, 4, 8, 11, 12, 20])
def test_a_record_cut_short_anywhere_is_a_truncated_tail(tmp_path, cut):
    """The last record cut ``cut`` bytes in: counted as a truncated tail, the records before it read. TensorFlow
    reads a length header cut short (1-11 of its 12 bytes) as the file's clean end: it had been dropped unsaid."""
    from pipeline.monitor import request_logs

    logs = [prediction_log([b"image %d" % n], confident(n)[None, :], 7) for n in range(3)]
    path = write_log(tmp_path / "logs" / "requests", logs)
    whole = open(path, "rb").read()
    last = len(whole) - 12 - len(logs[-1].SerializeToString()) - 4   # the last record: header, data, CRC
    if cut:
        open(path, "wb").write(whole[:last + cut])
    read = request_logs.read_logs(str(tmp_path / "logs"))
    assert read.records == (2 if cut else 3) and len(read.answers) == read.records
    assert read.problems == ({"truncated_tail": 1} if cut else {})


def _frame_offsets(path: str) -> list[int]:
    """Where each record of a TFRecord file starts (its length, 8 bytes, then 4 of checksum, the data and 4 more)."""
    data, offsets = open(path, "rb").read(), [0]
    while offsets[-1] < len(data):
        offsets.append(offsets[-1] + 16 + int.from_bytes(data[offsets[-1]:offsets[-1] + 8], "little"))
    return offsets[:-1]


@pytest.mark.parametrize("damage", ["data", "length"])
def test_a_corrupt_record_is_skipped_and_its_damaged_length_ends_the_file(tmp_path, letters, pipeline_root, capsys,
                                                                          damage):
    """One byte of record #10's data damaged (its length and the length's checksum whole): that record is skipped,
    counted as corrupt_record, and every record after it read and judged. TensorFlow's reader had stopped there: the
    file counted as unreadable, its 10 first records read, the window too small to judge and the pass an all-clear.
    A damaged length leaves the rest of the file unframed: counted as corrupt_length, the records before it read."""
    items = traffic(letters)
    path = log_traffic(tmp_path / "logs" / "requests", items)
    offset = _frame_offsets(path)[10]
    damaged = bytearray(open(path, "rb").read())
    damaged[offset + (12 + 5 if damage == "data" else 3)] ^= 0xFF
    open(path, "wb").write(bytes(damaged))
    status, result, _ = monitor(tmp_path, pipeline_root, logs=tmp_path / "logs")
    logs = result["logs"]
    if damage == "data":
        assert logs["problems"] == {"corrupt_record": 1} and logs["records"] == logs["answers"] == len(items) - 1
        assert f"{path}#10: " in logs["problem_examples"]["corrupt_record"]
        assert "1 × corrupt_record" in capsys.readouterr().out
        (group,) = result["groups"]
        assert group["requests"] == len(items) - 1 and group["judged"] and status == cli.OK
    else:
        assert logs["problems"] == {"corrupt_length": 1} and logs["records"] == logs["answers"] == 10
        assert f"at byte {offset}" in logs["problem_examples"]["corrupt_length"]


def test_a_file_name_prefix_reads_its_writers_files_only(tmp_path):
    """``--logs DIR/requests`` reads what a writer given that filename_prefix wrote (requests-<time>-<n>.tfrecord),
    not the files of another model logging beside it as ``requests_canary`` (they had been read as ``requests*``,
    their traffic mixed into the drift and live accuracy); the folder still reads them all."""
    from core import request_log
    from pipeline.monitor import request_logs

    for name, version in (("requests", 1), ("requests_canary", 2)):
        write_with_writer(str(tmp_path / "logs" / name), version, top=version)
    versions = lambda prefix: sorted(a.version for a in request_logs.read_logs(str(prefix)).answers)  # noqa: E731
    assert versions(tmp_path / "logs" / "requests") == [1]
    assert versions(tmp_path / "logs" / "requests_canary") == [2]
    assert versions(tmp_path / "logs") == [1, 2]
    with pytest.raises(request_logs.LogNotFound):     # a start of the name is not the writer's prefix
        request_logs.log_files(str(tmp_path / "logs" / "req"))
    one_file = request_log.log_files(str(tmp_path / "logs" / "requests_canary"))[0]
    assert versions(one_file) == [2]                   # a file named whole is read


def test_a_filename_prefix_naming_a_folder_reads_the_files_its_writer_put_beside_it(tmp_path, pipeline_root, capsys):
    """A logging_config filename_prefix naming a folder that exists (a mounted volume) has its files written beside
    the folder (requests-<UTC time>-<n>.tfrecord): --logs naming the prefix had read the empty folder, said it held
    no log yet, and ended 0 with no answer judged. A prefix ending in "/" is written and read inside the folder."""
    from core import request_log
    from pipeline.monitor import request_logs

    folder = tmp_path / "pfx" / "requests"
    folder.mkdir(parents=True)
    write_with_writer(str(folder), 7, top=1, count=3)
    assert os.listdir(folder) == [] and len(request_logs.read_logs(str(folder)).answers) == 3
    status, result, _ = monitor(tmp_path, pipeline_root, logs=folder)
    assert result["logs"]["answers"] == 3 and result["logs"]["files"] == 1, (status, result["logs"])
    err = capsys.readouterr().err
    assert "holds no log yet" not in err
    assert (f"monitor: --logs {folder} is a folder holding no log file: read the 1 file(s) beside it that a writer "
            f"given it as its filename_prefix writes ({folder}-<UTC time>-<n>.tfrecord)") in err
    inside = tmp_path / "inside"
    inside.mkdir()
    write_with_writer(f"{inside}/", 7, top=1, count=2)
    (name,) = os.listdir(inside)
    assert request_log.name_pattern(f"{inside}/").fullmatch(name)
    assert len(list(request_log.read_logs(f"{inside}/"))) == 2
    for prefix in (f"{inside}/", str(inside)):
        assert len(request_logs.read_logs(prefix).answers) == 2


def test_only_the_monitored_models_records_are_judged(tmp_path, letters, pipeline_root, capsys):
    """Models with the same logging_config share one writer (TF Serving's ServerRequestLogger): the records of
    another model in the log are counted and left out, not judged as the monitored model's traffic."""
    from core import prediction_log, request_log

    writer = request_log.RequestLogWriter(str(tmp_path / "logs" / "requests"), sampling_rate=1.0)
    items, now = traffic(letters), time.time()
    for model, served, index in (("letters", items[:50], None), ("experiment", (items * 3)[:200], 0)):
        for image, name in served:   # the experiment answers one class only: label drift, judged as letters'
            writer.write(prediction_log.predict_log(
                model, "predict_images", 2, {"images": prediction_log.bytes_tensor([image])},
                {"probabilities": prediction_log.float_tensor([confident(
                    CLASS_INDEX[name] if index is None else index).tolist()])}, 1.0, "upload", now))
    writer.close()
    status, result, out = monitor(tmp_path, pipeline_root, "--monitor-min-requests", "150", logs=tmp_path / "logs")
    (group,) = result["groups"]
    assert status == cli.OK and result["alarms"] == []
    assert group["version"] == 2 and group["requests"] == 50 and not group["judged"]   # shown, too few to judge
    assert result["logs"]["records"] == 250 and result["logs"]["other_models"] == {"experiment": 200}
    assert "other models' records left out (model letters is judged): 200 × experiment" in capsys.readouterr().out
    assert "200 × experiment" in (out / "report.html").read_text()
    status, result, _ = monitor(tmp_path, pipeline_root, "--monitor-min-requests", "150", "--model", "experiment",
                                logs=tmp_path / "logs")
    assert status == cli.CROSSED and result["groups"][0]["requests"] == 200
    assert result["logs"]["other_models"] == {"letters": 50}
    assert {a["kind"] for a in result["alarms"]} == {"label_drift"}


def test_only_the_monitored_models_feedback_is_judged(tmp_path, letters, pipeline_root, capsys):
    """The web client stores the model it asked with each feedback: another model's corrections had been judged
    (an accuracy alarm, and --retrain-when accuracy fired) as the monitored model's."""
    store_dir = tmp_path / "feedback"
    add_feedback(store_dir, letters, corrected_share=1.0, n=43, model_name="letters")
    add_feedback(store_dir, letters, corrected_share=0.0, n=3, model_name="other")
    args = ("--retrain-when", "accuracy", "--dry-run")
    status, result, out = monitor(tmp_path, pipeline_root, "--model", "other", *args, feedback=store_dir)
    assert status == cli.OK and result["alarms"] == [] and not result["retrain"]["fires"]
    assert [(v, r["feedback"], r["confirmed"]) for v, r in result["live_accuracy"].items()] == [("7", 3, 3)]
    assert result["feedback_other_models"] == {"letters": 43}
    printed = capsys.readouterr().out
    assert "other models' feedback left out (model other is judged): 43 × letters" in printed
    assert "monitor: 0 answers, 3 feedback rows" in printed
    assert "Other models' feedback, left out: 43 × letters" in (out / "report.html").read_text()
    status, result, _ = monitor(tmp_path, pipeline_root, "--model", "letters", *args, feedback=store_dir)
    assert status == cli.CROSSED and [a["kind"] for a in result["alarms"]] == ["accuracy"]
    assert result["live_accuracy"]["7"]["feedback"] == 43 and result["feedback_other_models"] == {"other": 3}
    assert result["retrain"]["fires"]

    # rows naming no model (stored before rows named it, or imported): the judged model's in a store of one model,
    # left out, counted apart, where another model is named
    add_feedback(store_dir, letters, corrected_share=0.0, n=2)
    _, result, _ = monitor(tmp_path, pipeline_root, "--model", "other", feedback=store_dir)
    assert result["live_accuracy"]["7"]["feedback"] == 3
    assert result["feedback_other_models"] == {"letters": 43, "(no model)": 2}
    assert "(model other is judged): 2 × (no model), 43 × letters" in capsys.readouterr().out
    one_model = tmp_path / "one-model"
    add_feedback(one_model, letters, corrected_share=0.0, n=5, model_name="letters")
    add_feedback(one_model, letters, corrected_share=0.0, n=2)
    _, result, _ = monitor(tmp_path, pipeline_root, feedback=one_model)
    assert result["live_accuracy"]["7"]["feedback"] == 7 and result["feedback_other_models"] == {}


def clear_of_the_hour(margin: float = 60.0) -> float:
    """time.time(), at least ``margin`` seconds before the next hour begins (waiting for it if need be): a test
    that places answers in this hour's window and the one before must not see the windows move while it runs."""
    now = time.time()
    left = windows.start(now, 3600) + 3600 - now
    if left < margin:
        time.sleep(left + 1)
    return time.time()


def test_a_window_too_small_to_judge_does_not_hide_the_one_before(tmp_path, letters, pipeline_root):
    """An hourly run at :17 sees 17 minutes of the current hour (too few answers) and the whole hour before it:
    the hour before is judged, as the CronJob in serving/deploy/k8s expects."""
    now = clear_of_the_hour()
    before = windows.start(now, 3600) - 1800                             # the middle of the previous hour
    log_traffic(tmp_path / "logs" / "a", traffic(letters, transform=inverted), mtime=before)
    log_traffic(tmp_path / "logs" / "b", traffic(letters)[:10], mtime=now)
    status, result, out = monitor(tmp_path, pipeline_root, "--window", "1h", logs=tmp_path / "logs")
    assert status == cli.CROSSED
    alarmed = windows.label(windows.start(before, 3600), 3600)
    assert {a["kind"] for a in result["alarms"]} == {"input_skew"}
    assert {a["window"] for a in result["alarms"]} == {alarmed}
    old, small = result["groups"]
    assert (old["window"], old["judged"], old["recent"], small["requests"], small["judged"]) == (alarmed, True, True,
                                                                                               10, False)
    measured = [m for check in ("label_drift", "input_skew") for m in small[check]["measurements"]]
    assert any(m["value"] > m["threshold"] for m in measured)          # 10 answers measure far off: not judged
    assert not any(m["crossed"] for m in measured)
    html = (out / "report.html").read_text()                            # the window that alarmed, and the newest
    assert f"Version 7 — window {alarmed}</h2>" in html
    assert f"Version 7 — newest window {small['window']} (too few answers: shown, not judged)</h2>" in html
    assert "not judged (too few answers)" in html and html.count('<span class="bad">crossed</span>') == sum(
        m["crossed"] for check in ("label_drift", "input_skew") for m in old[check]["measurements"])
    assert small["label_drift"]["anomalies"] == small["input_skew"]["anomalies"] == {}   # measured far off, not listed
    listed = [(check, feature) for check in ("label_drift", "input_skew") for feature in old[check]["anomalies"]]
    assert listed and [f"<p><b>{check} {feature}</b>: " in html for check, feature in listed] == [True] * len(listed)
    assert html.count("above the threshold") == sum(                   # the judged window's anomalies alone
        text.count("above the threshold") for check in ("label_drift", "input_skew")
        for text in old[check]["anomalies"].values())
    assert {"classes_v7.png", "classes_v7_before.png", "ink_share_v7_before.png"} <= {
        part.split('"')[0] for part in html.split('<img src="')[1:]}
    assert (out / "classes_v7_before.png").is_file()
    prom = (out / "monitor.prom").read_text()                           # the judged window's numbers
    assert 'letters_monitor_requests{version="7"} 81.0' in prom
    assert 'letters_monitor_window_judged{version="7"} 1.0' in prom
    ink = next(m for m in old["input_skew"]["measurements"] if m["feature"] == "ink_share")
    assert (f'letters_monitor_distribution_distance{{check="input_skew",feature="ink_share",measure="jensen_shannon",'
            f'version="7"}} {ink["value"]!r}') in prom


@pytest.mark.parametrize("drifted, exported", [((True, False), 0), ((False, False), 0), ((False, True), 1),
                                               ((True, True), 1)])
def test_monitor_prom_exports_the_window_that_crossed_else_the_whole_one_before_the_current(
        tmp_path, letters, pipeline_root, drifted, exported):
    """At 00:23 both the hour before (23:00, whole) and the current hour (23 minutes) have answers enough to judge:
    monitor.prom exports the newest that crossed a threshold, else the whole hour before. It had exported the
    current hour's 23 minutes: a drifted 23:00 alarmed (threshold_crossed 1) while every distance exported was
    under its threshold."""
    from core.configs import Config
    from pipeline.monitor import checks, reference, report, request_logs

    now = 10 * DAY + 23 * 60                                            # 00:23 UTC
    alef = traffic(letters, only="alef", repeat=60)                     # every answer alef, unsure: drifted
    usual = traffic(letters, repeat=3)                                  # drawn like the training data
    answers = [request_logs.Answer(time=at, version=7, image=image, top1=CLASS_INDEX[name], score=0.4 if bad else 0.9,
                                   origin="")
               for at, count, bad in zip((now - 53 * 60, now - 10 * 60), (160, 180), drifted)
               for image, name in (alef if bad else usual)[:count]]
    result = checks.run(checks.Traffic(3600, now).add_all(answers), [], reference.load(
        str(pipeline_root / "metadata.sqlite")), None, Config())
    groups = result["groups"]
    assert [(g["window"], g["requests"], g["judged"]) for g in groups] == [
        ("1970-01-10 23:00 +1h", 160, True), ("1970-01-11 00:00 +1h", 180, True)]
    assert [g["label_drift"]["crossed"] for g in groups] == list(drifted)
    assert {a["window"] for a in result["alarms"]} == {g["window"] for g, bad in zip(groups, drifted) if bad}
    prom = open(report.write_prometheus(result, str(tmp_path))).read()
    chosen = groups[exported]
    assert f'letters_monitor_requests{{version="7"}} {chosen["requests"]}.0' in prom
    assert 'letters_monitor_window_judged{version="7"} 1.0' in prom
    js = next(m for m in chosen["label_drift"]["measurements"] if m["measure"] == "jensen_shannon")
    assert (f'letters_monitor_distribution_distance{{check="label_drift",feature="label_name",'
            f'measure="jensen_shannon",version="7"}} {js["value"]!r}') in prom
    assert (js["value"] > js["threshold"]) == drifted[exported]        # an alarm's distance is the one exported


def test_windows_older_than_the_two_the_alarms_judge_are_shown_not_judged(tmp_path, letters, pipeline_root):
    """Only the current window and the one before it are judged: an older one is measured and shown, not judged,
    and nothing in it is marked crossed, the report saying why (it had said judged and its drift crossed, with no
    alarm), nor are TFDV's anomalies listed in monitor.json or printed in the report (they had been, each value
    "above the threshold", under measurements "not judged")."""
    import numpy as np
    now = clear_of_the_hour()
    hour = windows.start(now, 3600)
    skewed = traffic(letters, transform=inverted)
    log_traffic(tmp_path / "logs" / "a", skewed, mtime=hour - 4 * 3600 + 600)
    log_traffic(tmp_path / "logs" / "b", skewed, mtime=hour - 2 * 3600 + 600)
    nan = [prediction_log([image], np.full((1, 27), np.nan), 7) for image, _ in skewed[:10]]
    write_log(tmp_path / "logs" / "c", nan, mtime=hour - 4 * 3600 + 600)   # 10 of 91 answers unusable
    log_traffic(tmp_path / "logs" / "d", traffic(letters)[:10], mtime=now)
    status, result, out = monitor(tmp_path, pipeline_root, "--window", "1h", logs=tmp_path / "logs")
    assert status == cli.OK and result["alarms"] == []
    older = "older than the current window and the one before it"
    assert [(g["requests"], g["judged"], g["recent"]) for g in result["groups"]] == [
        (81, False, False), (81, False, False), (10, False, True)]
    assert [g["not_judged"] for g in result["groups"]] == [older, older, "too few answers"]
    for group in result["groups"][:2]:
        measured = [m for check in ("label_drift", "input_skew") for m in group[check]["measurements"]]
        assert any(m["value"] > m["threshold"] for m in measured)      # measured far off, and kept
        assert not any(m["crossed"] for m in measured)
        assert not any(group[key]["crossed"] for key in ("label_drift", "input_skew", "confidence"))
    row = result["unusable"][0]
    assert (row["unusable"], row["judged"], row["not_judged"], row["crossed"]) == (10, False, older, False)
    assert [(g["label_drift"]["anomalies"], g["input_skew"]["anomalies"]) for g in result["groups"]] == [({}, {})] * 3
    html = (out / "report.html").read_text()
    assert "<td>yes</td>" not in html and html.count(f"<td>no: {older}</td>") == 2
    assert f"<td>not judged ({older})</td>" in html and '<span class="bad">crossed</span>' not in html
    assert "above the threshold" not in html and "<p><b>" not in html   # TFDV's anomaly text had been printed


def test_a_version_that_no_longer_gets_answers_stops_alarming(tmp_path, letters, pipeline_root):
    now = time.time()
    log_traffic(tmp_path / "logs" / "a", traffic(letters, transform=inverted), version=6, mtime=now - 7 * DAY)
    log_traffic(tmp_path / "logs" / "b", traffic(letters), version=7, mtime=now)
    status, result, _ = monitor(tmp_path, pipeline_root, "--retrain-when", "drift", "--dry-run",
                                logs=tmp_path / "logs")
    assert status == cli.OK and result["alarms"] == [] and not result["retrain"]["fires"]
    old = next(g for g in result["groups"] if g["version"] == 6)
    assert not old["judged"] and not old["input_skew"]["crossed"]       # measured and shown, not judged
    assert old["not_judged"] == "older than the current window and the one before it"
    assert any(m["value"] > m["threshold"] for m in old["input_skew"]["measurements"])
    status, result, _ = monitor(tmp_path, pipeline_root, "--window", "all", logs=tmp_path / "logs")
    assert status == cli.CROSSED and {a["version"] for a in result["alarms"]} == {6}   # all: every answer counts


def test_a_retired_versions_corrections_stop_alarming_and_retraining(tmp_path, letters, pipeline_root):
    """Live accuracy is judged on all of a version's feedback, but alarms (and --retrain-when accuracy) only
    while the version serves: answers or feedback in the current window or the one before it."""
    now = time.time()
    store = FeedbackStore(tmp_path / "feedback")
    _, served = letters
    for i in range(30):   # version 5: every answer corrected, a week ago
        true = CLASS_NAMES[i % 27]
        store.add(served[true][0], "PNG", true, predicted_label=CLASS_NAMES[(i + 1) % 27], probability=0.8,
                  model_version=5, now=now - 7 * DAY)
    store.close()
    add_feedback(tmp_path / "feedback", letters, corrected_share=0.0, version=7)
    log_traffic(tmp_path / "logs" / "b", traffic(letters), version=7, mtime=now)
    args = ("--retrain-when", "accuracy", "--dry-run")
    status, result, _ = monitor(tmp_path, pipeline_root, *args, logs=tmp_path / "logs", feedback=tmp_path / "feedback")
    assert result["live_accuracy"]["5"]["crossed"]                      # still shown as it is
    assert status == cli.OK and result["alarms"] == [] and not result["retrain"]["fires"]
    status, result, _ = monitor(tmp_path, pipeline_root, "--window", "all", *args, logs=tmp_path / "logs",
                                feedback=tmp_path / "feedback")
    assert status == cli.CROSSED and [a["version"] for a in result["alarms"]] == ["5"]


def test_an_answer_that_is_not_a_number_is_counted_as_unusable(tmp_path, letters, pipeline_root, capsys):
    import numpy as np
    items = traffic(letters)
    logs = [prediction_log([image], confident(CLASS_INDEX[name])[None, :], 7) for image, name in items]
    logs.append(prediction_log([items[0][0]], np.full((1, 27), np.nan), 7))
    write_log(tmp_path / "logs" / "requests", logs)
    status, result, _ = monitor(tmp_path, pipeline_root, logs=tmp_path / "logs")
    assert status == cli.OK and result["logs"]["problems"] == {"non_finite_answer": 1}
    assert "1 × non_finite_answer" in capsys.readouterr().out
    (row,) = result["unusable"]                                         # 1 of 82: under monitor_max_unusable
    assert (row["version"], row["answers"], row["unusable"], row["crossed"]) == (7, 82, 1, False)


def test_an_answer_whose_request_filtered_out_the_probabilities_is_not_unusable(tmp_path, letters, pipeline_root,
                                                                                capsys):
    """TF Serving returns only the outputs a request's output_filter names: those answers had been counted as the
    model's unusable ones (no_answer) and raised the alarm. With top_scores and a class output they are answers;
    with neither, answers counted apart, in no check."""
    items = traffic(letters)
    filters = [()] * 61 + [("top_letters",)] * 10 + [("top_scores", "top_classes")] * 10
    logs = [prediction_log([image], confident(CLASS_INDEX[name])[None, :], 7, output_filter=kept)
            for (image, name), kept in zip(items, filters)]
    write_log(tmp_path / "logs" / "requests", logs)
    status, result, out = monitor(tmp_path, pipeline_root, logs=tmp_path / "logs")
    assert status == cli.OK and result["alarms"] == [] and result["logs"]["problems"] == {}
    assert (result["logs"]["answers"], result["logs"]["filtered"]) == (71, 10)
    (group,) = result["groups"]
    assert group["requests"] == 71 and group["confidence"]["mean"] == pytest.approx(0.9)
    assert group["predicted_shares"][CLASS_NAMES[-1]] == pytest.approx(3 / 71)   # a class top_classes answered
    (row,) = result["unusable"]
    assert (row["answers"], row["unusable"]) == (71, 0)
    assert "10 answers without probabilities (filtered by the request" in capsys.readouterr().out
    assert "answers without probabilities (filtered by the request), not checked: 10" in \
        (out / "report.html").read_text()


@pytest.mark.parametrize("answer", ["not a number", "none", "the wrong shape"])
def test_a_model_whose_answers_cannot_be_used_is_an_alarm(tmp_path, letters, pipeline_root, capsys, answer):
    """No usable answer is not an all-clear: the share of a window's answers that cannot be used is judged
    (monitor_max_unusable), a window of them only, however small, always crosses it."""
    import numpy as np
    probabilities = {"not a number": np.full((1, 27), np.nan), "none": None, "the wrong shape": np.ones((1, 5))}
    items = traffic(letters)[:10]
    write_log(tmp_path / "logs" / "requests", [prediction_log([image], probabilities[answer], 7) for image, _ in items])
    status, result, out = monitor(tmp_path, pipeline_root, logs=tmp_path / "logs")
    assert status == cli.CROSSED and result["logs"]["answers"] == 0
    (alarm,) = result["alarms"]
    assert (alarm["kind"], alarm["version"]) == ("unusable_answers", 7) and "10 of 10 answers unusable" in alarm["text"]
    assert "ALARM version 7" in capsys.readouterr().out
    assert "letters_monitor_threshold_crossed 1.0" in (out / "monitor.prom").read_text()
    assert "No threshold crossed" not in (out / "report.html").read_text()
    status, result, _ = monitor(tmp_path, pipeline_root, "--monitor-max-unusable", "1", logs=tmp_path / "logs")
    assert status == cli.OK and result["alarms"] == []                 # a share of 1 allows every answer


@pytest.mark.parametrize("damage", ["not a database", "a metadata service that does not answer"])
def test_metadata_that_cannot_be_read_is_a_usage_error_not_an_alarm(tmp_path, letters, pipeline_root, capsys,
                                                                    damage):
    log_traffic(tmp_path / "logs" / "requests", traffic(letters))
    if damage == "not a database":
        root = tmp_path / "root"
        shutil.copytree(pipeline_root, root)
        (root / "metadata.sqlite").write_bytes(os.urandom(5000))
        status, _, _ = monitor(tmp_path, root, logs=tmp_path / "logs")
    else:
        from tests.support.serving import free_port
        status, _, _ = monitor(tmp_path, pipeline_root, "--metadata-path", f"grpc://127.0.0.1:{free_port()}",
                               logs=tmp_path / "logs")
    err = capsys.readouterr().err
    assert status == cli.USAGE and "cannot be read" in err and "Traceback" not in err, err


@pytest.mark.parametrize("missing", ["ImageExampleGen", "StatisticsGen"])
def test_a_missing_artifact_of_the_reference_is_a_usage_error_naming_it(tmp_path, letters, monkeypatch, capsys,
                                                                         missing):
    """The training split (read when answers are judged) or the eval statistics that ML Metadata records, deleted:
    status 2 saying what is missing, and a --watch loop ends, as for a missing store. The training split had been
    read outside the pass's input errors (a traceback, status 4, the loop going on); the statistics had been said to
    be a store that cannot be read."""
    data, _ = letters
    train = [(image, name) for name in CLASS_NAMES for image in data[name][:2]]
    eval_items = [(image, name) for name in CLASS_NAMES for image in data[name][2:3]]
    fake_pipeline.build(tmp_path / "root", train, eval_items)
    shutil.rmtree(tmp_path / "root" / missing)
    log_traffic(tmp_path / "logs" / "requests", traffic(letters))
    sleeps = []
    monkeypatch.setattr(cli.time, "sleep", sleeps.append)
    status, result, _ = monitor(tmp_path, tmp_path / "root", "--watch", "1", "--max-runs", "2", logs=tmp_path / "logs")
    err = capsys.readouterr().err
    assert status == cli.USAGE and result is None and sleeps == [] and "Traceback" not in err, err
    assert {"ImageExampleGen": f"error: no train examples under {tmp_path / 'root' / 'ImageExampleGen'}",
            "StatisticsGen": f"error: no eval statistics at {tmp_path / 'root' / 'StatisticsGen'}"}[missing] in err
    assert "cannot be read" not in err


def test_window_labels_give_the_windows_own_width():
    when = 1700000000                                                    # 2023-11-14 22:13:20 UTC
    assert windows.label(windows.start(when, 5400), 5400) == "2023-11-14 21:00 +90m"
    assert windows.label(windows.start(when, 30), 30) == "2023-11-14 22:13:00 +30s"
    assert windows.label(windows.start(when, 7200), 7200) == "2023-11-14 22:00 +2h"
    assert windows.label(windows.start(when, 86400), 86400) == "2023-11-14"


def test_without_a_request_log_the_run_says_what_it_did_not_judge(tmp_path, pipeline_root, capsys):
    status, result, _ = monitor(tmp_path, pipeline_root)                 # no --logs, and no default folder
    assert status == cli.OK and result["logs"] is None
    assert "monitor: no request log (the default, " in capsys.readouterr().err
    (tmp_path / "no-request-log").mkdir()   # as the web client makes it when it starts, before any answer
    status, result, _ = monitor(tmp_path, pipeline_root)
    assert status == cli.OK and result["logs"] is None
    assert f"the default, {tmp_path / 'no-request-log'}, holds no log yet" in capsys.readouterr().err
    status, _, _ = monitor(tmp_path, pipeline_root, logs=tmp_path / "nowhere")   # named: a typo is a usage error
    assert status == cli.USAGE and "no request log at" in capsys.readouterr().err


def test_a_named_log_folder_that_holds_no_log_yet_is_said_and_the_other_checks_run(tmp_path, pipeline_root, capsys):
    """--logs naming the web client's folder, made at its start, before its first answer (the CronJob's
    --logs=/logs/requests on a fresh deployment) had been a usage error (no request log at …, status 2) ending the
    pass before the metrics page was read: a server down went unreported until the first answer was logged."""
    (tmp_path / "logs" / "sub").mkdir(parents=True)   # a folder of folders, no file: still no log
    status, result, _ = monitor(tmp_path, pipeline_root, logs=tmp_path / "logs")
    assert status == cli.OK and result["logs"] is None
    assert (f"monitor: no request log (--logs {tmp_path / 'logs'} holds no log yet): served answers are not "
            "judged, only feedback and server metrics") in capsys.readouterr().err
    from tests.support.serving import free_port
    down = f"127.0.0.1:{free_port()}"   # nothing listens: a server down is an alarm
    status, result, _ = monitor(tmp_path, pipeline_root, "--metrics-url",
                                f"http://{down}/monitoring/prometheus/metrics", logs=tmp_path / "logs")
    assert status == cli.CROSSED and result["logs"] is None
    assert any(down in alarm["text"] for alarm in result["alarms"]), result["alarms"]


def test_a_feedback_store_that_does_not_exist_is_said_in_a_note(tmp_path, pipeline_root, capsys):
    """A mistyped --feedback-dir had been read as no feedback yet without a word (0 feedback rows, status 0): it is
    said as local_runner says it, a note, not an error (a fresh deployment has no store until its first answer)."""
    status, result, _ = monitor(tmp_path, pipeline_root, feedback=tmp_path / "typo_store")
    captured = capsys.readouterr()
    assert status == cli.OK and "0 feedback rows" in captured.out
    assert captured.err.count(f"monitor: feedback: none, no feedback store at {tmp_path / 'typo_store'} (the web "
                              "client makes it with the first answer confirmed or corrected") == 1


def test_the_reference_is_read_from_a_kubeflow_pipelines_v2_store_too(tmp_path, letters):
    """The CronJob reads KFP's metadata service, whose launcher names types by schema title (tfx.ModelBlessing),
    writes numbers as doubles and calls runs system.PipelineRun: it had found no blessed model there (exit 2)."""
    from pipeline.monitor import reference
    data, _ = letters
    train = [(image, name) for name in CLASS_NAMES for image in data[name][:2]]
    eval_items = [(image, name) for name in CLASS_NAMES for image in data[name][2:3]]
    metadata = fake_pipeline.build(tmp_path, train, eval_items, pushed_version=9, kfp_v2=True)
    ref = reference.load(metadata)
    assert ref.examples_uri.endswith("examples/1") and ref.last_run_time and ref.eval_statistics.datasets


def test_accuracy_rows_name_each_version_whole(tmp_path):
    """Pushed versions are ten-digit timestamps: two of one push session differ only in their last digits, and
    a name cut short would show both (and a wrong version) as the same."""
    from PIL import Image

    from pipeline.monitor import charts
    path = str(tmp_path / "live.png")
    charts.intervals(path, [("version 1796477035", 0.8, 0.7, 0.9), ("version 1796477036", 0.6, 0.5, 0.7)], 0.75,
                     "live accuracy")
    img = Image.open(path).convert("L")
    top, row_h = 40, 28
    labels = [img.crop((0, top + i * row_h, 8 + 200, top + (i + 1) * row_h - 8)) for i in range(2)]
    assert labels[0].tobytes() != labels[1].tobytes()


@pytest.mark.parametrize("ahead_by, window", [(3 * DAY, "day"), (2 * 3600, "day"), (3 * DAY, "all")])
def test_records_dated_after_now_are_counted_not_checked(tmp_path, letters, pipeline_root, capsys, ahead_by, window):
    """A writer's clock ahead: its answers had been judged (and alarmed on every run until their date came), and
    its feedback had counted as new after every pipeline run (retraining each time) and in live accuracy."""
    now = time.time()
    ahead = traffic(letters, transform=inverted)
    log_traffic(tmp_path / "logs" / "a", ahead, version=7, mtime=now + ahead_by)
    log_traffic(tmp_path / "logs" / "b", traffic(letters), version=7, mtime=now)
    store = FeedbackStore(tmp_path / "feedback")
    _, served = letters
    for i in range(25):   # version 7: every answer corrected, by a clock a year ahead
        true = CLASS_NAMES[i % 27]
        store.add(served[true][0], "PNG", true, predicted_label=CLASS_NAMES[(i + 1) % 27], probability=0.8,
                  model_version=7, now=now + 365 * DAY)
    store.close()
    for policy in ("drift", "accuracy", "feedback>=5"):
        status, result, out = monitor(tmp_path, pipeline_root, "--window", window, "--retrain-when", policy,
                                      "--dry-run", logs=tmp_path / "logs", feedback=tmp_path / "feedback")
        assert status == cli.OK and result["alarms"] == [] and not result["retrain"]["fires"], result["alarms"]
        assert result["future_dated"] == {"answers": len(ahead), "feedback": 25}
        assert [g["requests"] for g in result["groups"]] == [81] and result["live_accuracy"] == {}
        assert (f"warning: {len(ahead)} answers and 25 feedback rows are dated after now (a clock ahead?): left out "
                "of the checks") in capsys.readouterr().err
    assert "dated after this report" in (out / "report.html").read_text()


def test_a_window_is_judged_only_with_answers_enough_for_tfdvs_statistics(pipeline_root):
    """TFDV's Jensen-Shannon over 27 classes counts every class a small window misses: at the 50 answers judged
    before, answers drawn exactly like the eval labels crossed the 0.1 threshold most of the time (a false label
    drift alarm, and a retraining with --retrain-when drift, nearly every day)."""
    import random

    from core.configs import Config
    from pipeline.monitor import drift, reference
    config = Config()
    ref = reference.load(str(pipeline_root / "metadata.sqlite"))
    crossed = {n: sum(drift.compare_labels(random.Random(seed).choices(CLASS_NAMES, k=n), ref.eval_statistics,
                                           config).crossed for seed in range(10)) for n in (50, config.monitor_min_requests)}
    assert crossed[50] >= 5 and crossed[config.monitor_min_requests] == 0


def three_evaluated_runs(tmp_path) -> str:
    """A store of three Evaluator runs (evaluations /e1, /e2, /e3), each model the next one's baseline: the first
    two blessed and pushed as versions 11 and 22, the third not blessed. Its metadata file."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb

    cfg = pb.ConnectionConfig()
    cfg.sqlite.filename_uri = str(tmp_path / "metadata.sqlite")
    cfg.sqlite.connection_mode = 3
    store = metadata_store.MetadataStore(cfg)
    types = {name: store.put_artifact_type(pb.ArtifactType(name=name, properties={}))
             for name in ("Model", "ModelEvaluation", "ModelBlessing", "PushedModel", "Examples", "ExampleStatistics")}
    run_type = store.put_execution_type(pb.ExecutionType(name="Run"))

    def artifact(kind, uri="", **props):
        a = pb.Artifact(type_id=types[kind], uri=uri)
        for key, value in props.items():
            if isinstance(value, str):
                a.custom_properties[key].string_value = value
            else:
                a.custom_properties[key].int_value = value
        return store.put_artifacts([a])[0]

    def execution(inputs, outputs):
        [e] = store.put_executions([pb.Execution(type_id=run_type)])
        events = [pb.Event(artifact_id=a, execution_id=e, type=pb.Event.INPUT,
                           path=pb.Event.Path(steps=[pb.Event.Path.Step(key=k)])) for k, a in inputs.items()]
        events += [pb.Event(artifact_id=a, execution_id=e, type=pb.Event.OUTPUT,
                            path=pb.Event.Path(steps=[pb.Event.Path.Step(key=k)])) for k, a in outputs.items()]
        store.put_events(events)

    examples, statistics = artifact("Examples", "/ex"), artifact("ExampleStatistics", "/stats")
    execution({"examples": examples}, {"statistics": statistics})
    first, second, third = artifact("Model", "/m1"), artifact("Model", "/m2"), artifact("Model", "/m3")
    for model, baseline, uri, blessed, version in ((first, None, "/e1", 1, "11"), (second, first, "/e2", 1, "22"),
                                                    (third, second, "/e3", 0, None)):
        inputs = {"examples": examples, "model": model, **({"baseline_model": baseline} if baseline else {})}
        blessing = artifact("ModelBlessing", blessed=blessed)
        execution(inputs, {"evaluation": artifact("ModelEvaluation", uri), "blessing": blessing})
        if version:
            execution({"model": model}, {"pushed_model": artifact("PushedModel", pushed=1, pushed_version=version)})
    return str(tmp_path / "metadata.sqlite")


def test_each_version_shows_its_own_evaluation_not_a_later_run_that_compared_with_it(tmp_path, monkeypatch):
    """A model is the Evaluator's ``model`` in its own run and ``baseline_model`` in the next: the version's
    accuracy had been the next candidate's (even an unblessed one's), as the newest evaluation linked to it."""
    from pipeline.monitor import reference

    metadata = three_evaluated_runs(tmp_path)
    monkeypatch.setattr(reference, "_accuracy", lambda read, uri: {"/e1": 0.27, "/e2": 0.18, "/e3": 0.36}[uri])
    monkeypatch.setattr(reference, "_eval_statistics", lambda uri: None)
    monkeypatch.setattr(reference, "evaluation_metrics", lambda uri: {})
    loaded = reference._load(metadata)
    assert loaded.version_accuracy == {11: 0.27, 22: 0.18}


def test_the_blessed_models_evaluation_is_read_once(tmp_path, monkeypatch):
    """The blessed model's metrics and its pushed version's accuracy are one evaluation: it had been read twice."""
    from pipeline.monitor import reference
    from core.configs import ACCURACY_METRIC

    metadata = three_evaluated_runs(tmp_path)
    reads = []
    accuracy = {"/e1": 0.27, "/e2": 0.18, "/e3": 0.36}
    monkeypatch.setattr(reference, "_eval_statistics", lambda uri: None)
    monkeypatch.setattr(reference, "evaluation_metrics",
                        lambda uri: reads.append(uri) or {"overall": {ACCURACY_METRIC: accuracy[uri]}})
    loaded = reference._load(metadata)
    assert loaded.version_accuracy == {11: 0.27, 22: 0.18} and loaded.eval_accuracy == 0.18
    assert sorted(reads) == ["/e1", "/e2"]


def test_a_relative_feedback_dir_names_the_same_store_for_the_retraining_run(tmp_path, monkeypatch):
    """The retraining command runs in the project's folder: a relative store had named another folder there."""
    from pipeline.monitor import cli
    monkeypatch.chdir(tmp_path)
    config, _, _ = cli.parse_args(["--feedback-dir", "feedback", "--pipeline-root", "pipeline"])
    assert config.feedback_dir == str(tmp_path / "feedback") and config.pipeline_root == str(tmp_path / "pipeline")


def test_the_default_out_is_beside_the_pipeline_root_given_by_flag_or_variable(tmp_path, monkeypatch, capsys):
    """The default --out had followed LETTERS_PIPELINE_ROOT (<its parent>/monitor) but not --pipeline-root, whose
    report went into the checkout's outputs/monitor instead; --metadata-path's help named the pipeline root's file
    where LETTERS_METADATA_PATH set another."""
    from pipeline.monitor import cli
    _, args, _ = cli.parse_args(["--pipeline-root", str(tmp_path / "a" / "pipeline")])
    assert args.out == str(tmp_path / "a" / "monitor")
    monkeypatch.setenv("LETTERS_PIPELINE_ROOT", str(tmp_path / "b" / "pipeline"))
    assert cli.parse_args([])[1].out == str(tmp_path / "b" / "monitor")
    assert cli.parse_args(["--out", ""])[1].out == str(tmp_path / "b" / "monitor")
    assert cli.parse_args(["--out", str(tmp_path / "mine")])[1].out == str(tmp_path / "mine")
    from core.configs import Config   # a bucket's pipeline root: the report beside the default one, written locally
    assert cli.parse_args(["--pipeline-root", "gs://b/letters/root", "--metadata-path", "grpc://h:8080"])[1].out == \
        os.path.join(os.path.dirname(Config().pipeline_root), "monitor")
    monkeypatch.setenv("LETTERS_METADATA_PATH", str(tmp_path / "m.sqlite"))
    said = f"{tmp_path / 'm.sqlite'},fromLETTERS_METADATA_PATH"   # (compared without the help's line breaks)
    assert said in "".join(cli.build_parser(cli.flags.defaults_from_env()).format_help().split())


def test_every_path_flag_expands_a_tilde(tmp_path, monkeypatch):
    """--out=~/mon and --logs=~/logs (no shell expands ~ after =) had made ./~/mon and looked for ./~/logs, while
    --pipeline-root=~/p and --feedback-dir=~/f in the same command named the home folder's."""
    from pipeline.monitor import cli
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    config, args, _ = cli.parse_args(["--out=~/mon", "--logs=~/logs", "--pipeline-root=~/p", "--feedback-dir=~/f"])
    home = tmp_path / "home"
    assert (args.out, args.logs) == (str(home / "mon"), str(home / "logs"))
    assert not (home / "mon").exists()   # made when the report is written
    assert (config.pipeline_root, config.feedback_dir) == (str(home / "p"), str(home / "f"))
    assert not (tmp_path / "~").exists()


def test_an_out_folder_that_is_a_url_is_refused(tmp_path, monkeypatch, capsys):
    """--out gs://b/monitor had made a local ./gs:/b/monitor folder for the report: a usage error now."""
    from pipeline.monitor import cli
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as caught:
        cli.parse_args(["--out", "gs://b/monitor", "--pipeline-root", str(tmp_path / "p")])
    assert caught.value.code == 2 and "gs://b/monitor: the output is written to a local folder" in \
        capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_an_out_folder_among_the_logs_read_is_refused(tmp_path, monkeypatch, capsys):
    """--out inside the --logs folder (or that folder) had been accepted: every file under it is read as a request
    log, so each pass after the first read its own report, PNGs, monitor.json and monitor.prom as 8 corrupt_length
    log problems. A usage error now, the logs read by the path as given or with links resolved; an --out beside
    them, or beside the writer's files of a filename_prefix, is not."""
    (tmp_path / "logs").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "logs")
    base = ["--pipeline-root", str(tmp_path / "p")]
    refused = {(tmp_path / "logs", tmp_path / "logs"): "the same path as", (tmp_path / "logs", tmp_path / "logs" /
               "report"): "inside", (tmp_path / "link", tmp_path / "logs" / "r"): "inside",
               (tmp_path / "logs", tmp_path / "link"): "the same path as"}
    for (logs, out), where in refused.items():
        with pytest.raises(SystemExit) as caught:
            cli.parse_args([*base, "--logs", str(logs), "--out", str(out)])
        assert caught.value.code == cli.USAGE
        assert f"--out ({out}) is {where} --logs ({logs}): every file under" in capsys.readouterr().err
    for logs, out in ((tmp_path / "logs", tmp_path / "report"), (tmp_path / "logs" / "requests", tmp_path / "logs")):
        assert cli.parse_args([*base, "--logs", str(logs), "--out", str(out)])[1].out == str(out)
    monkeypatch.setenv("LETTERS_REQUEST_LOG_DIR", str(tmp_path / "logs"))   # the default log, named so
    with pytest.raises(SystemExit):
        cli.parse_args([*base, "--out", str(tmp_path / "logs" / "m")])
    assert f"is inside LETTERS_REQUEST_LOG_DIR='{tmp_path / 'logs'}'" in capsys.readouterr().err
    assert os.listdir(tmp_path / "logs") == []


def test_a_log_url_that_cannot_be_reached_is_one_error_line(tmp_path, monkeypatch, capsys):
    """A gs:// --logs not reached (no network, no credentials) had ended the pass in TensorFlow's traceback, status
    4 (an unexpected error): it is an input that cannot be read, said in one line with TensorFlow's reason, status
    2, as a --logs that does not exist."""
    import tensorflow as tf

    def unreachable(path):
        raise tf.errors.FailedPreconditionError(None, None, "Error executing an HTTP request: libcurl code 6 meaning "
                                                f"'Couldn't resolve host name'\n\t when reading metadata of {path}")
    for name in ("isdir", "exists", "glob"):
        monkeypatch.setattr(tf.io.gfile, name, unreachable)
    logs = "gs://no-such-bucket-xyz/logs/requests"
    argv = ["--pipeline-root", str(tmp_path / "p"), "--out", str(tmp_path / "o"), "--feedback-dir",
            str(tmp_path / "no-feedback"), "--logs", logs]
    assert cli.main(argv) == cli.USAGE
    assert capsys.readouterr().err == (f"error: cannot read the request log {logs}: Error executing an HTTP request: "
                                       "libcurl code 6 meaning 'Couldn't resolve host name'\n")


def test_a_pass_that_cannot_read_its_inputs_leaves_no_report_folder(tmp_path, capsys):
    """--out had been made (with its missing parents) as the flag was parsed: a pass ended by its inputs left an
    empty report folder tree behind."""
    argv = ["--pipeline-root", str(tmp_path / "p"), "--out", str(tmp_path / "reports" / "monitor"),
            "--feedback-dir", str(tmp_path / "no-feedback"), "--logs", str(tmp_path / "mistyped")]
    assert cli.main(argv) == cli.USAGE and "no request log at" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_an_empty_path_flag_is_the_default_not_the_current_directory(tmp_path, monkeypatch):
    """--pipeline-root= had been abspath(""), the current directory, --feedback-dir= no store at all and --out= a
    usage error: each is its default, as in the runners."""
    from core import configs
    (tmp_path / "cwd").mkdir()
    (tmp_path / "logs").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    for field, folder in (("pipeline_root", "root/pipeline"), ("feedback_dir", "store"), ("request_log_dir", "logs")):
        monkeypatch.setenv(configs.ENV[field], str(tmp_path / folder))
    config, args, _ = cli.parse_args(["--pipeline-root=", "--feedback-dir=", "--metadata-path=", "--out=", "--logs="])
    assert (config.pipeline_root, config.feedback_dir) == (str(tmp_path / "root/pipeline"), str(tmp_path / "store"))
    assert config.metadata_file == str(tmp_path / "root/pipeline/metadata.sqlite")
    assert (args.out, args.logs) == (str(tmp_path / "root/monitor"), str(tmp_path / "logs"))
    assert os.listdir(tmp_path / "cwd") == []


def retraining_config(cmd: list[str]):
    """The local runner's settings for the monitor's retraining command."""
    import local_runner
    assert cmd[1:3] == ["-m", "local_runner"]
    return local_runner.parse_args(cmd[3:])[0]


def test_retraining_runs_the_monitored_pipeline_as_ml_metadata_records_it(tmp_path, letters, pipeline_root, capsys):
    """The command had named only --pipeline-root and --feedback-dir: the retraining dropped --metadata-path and
    trained the runner's default data into its default serving dir, not what the monitored pipeline read and the
    server loads. Now ML Metadata's last ImageExampleGen and Pusher runs say; arguments after -- win."""
    metadata = tmp_path / "elsewhere" / "other.sqlite"
    metadata.parent.mkdir()
    shutil.copy(pipeline_root / "metadata.sqlite", metadata)
    data, serving = tmp_path / "my letters", tmp_path / "served"
    fake_pipeline.record_run_folders(str(metadata), str(data), str(serving))
    add_feedback(tmp_path / "feedback", letters, corrected_share=0.04)
    common = ("--metadata-path", str(metadata), "--retrain-when", "feedback>=1", "--dry-run")
    status, result, _ = monitor(tmp_path, pipeline_root, *common, feedback=tmp_path / "feedback")
    assert status == cli.OK and result["retrain"]["fires"]
    config = retraining_config(result["retrain"]["command"])
    assert (config.metadata_file, config.data_root, config.serving_dir) == (str(metadata), str(data), str(serving))
    assert result["retrain"]["defaults"] is None   # all of them recorded
    assert (config.pipeline_root, config.feedback_dir) == (str(pipeline_root), str(tmp_path / "feedback"))
    assert f"retrain command: {shlex.join(result['retrain']['command'])}" in capsys.readouterr().out

    status, result, _ = monitor(tmp_path, pipeline_root, *common, "--", f"--serving-dir={tmp_path / 'canary'}",
                                feedback=tmp_path / "feedback")
    cmd = result["retrain"]["command"]
    assert retraining_config(cmd).serving_dir == str(tmp_path / "canary") and "--serving-dir" not in cmd
    assert retraining_config(cmd).data_root == str(data)


def test_retraining_without_recorded_folders_names_the_defaults(tmp_path, letters, pipeline_root, capsys):
    """A store without the ImageExampleGen's and Pusher's exec properties: the runner's defaults, said."""
    add_feedback(tmp_path / "feedback", letters, corrected_share=0.04)
    status, result, _ = monitor(tmp_path, pipeline_root, "--retrain-when", "feedback>=1000", "--dry-run",
                                feedback=tmp_path / "feedback")
    assert status == cli.OK and not result["retrain"]["fires"]
    defaults = cli.parse_args([])[0]
    config = retraining_config(result["retrain"]["command"])
    assert (config.data_root, config.serving_dir) == (defaults.data_root, defaults.serving_dir)
    assert config.metadata_file == str(pipeline_root / "metadata.sqlite")
    out = capsys.readouterr().out
    assert (f"retrain: {pipeline_root / 'metadata.sqlite'} records no data root (no ImageExampleGen run) and no "
            f"serving dir (no Pusher run): the runner's default data root {defaults.data_root}, serving dir "
            f"{defaults.serving_dir}") in out
    assert "retrain command (when it fires): " in out


def test_a_recorded_default_data_root_is_left_to_the_runner():
    """The runner reads its own default folder as the built-in generated letters (made or completed, their
    epochs); as --data-root it would train them as the user's letters."""
    config = cli.parse_args(["--pipeline-root", "/p"])[0]
    cmd, defaults = retrain.command(config, retrain.Folders(config.data_root, "/served"), [])
    assert "--data-root" not in cmd and defaults is None and cmd[cmd.index("--serving-dir") + 1] == "/served"


def test_retraining_refuses_kubeflow_metadata():
    """The local runner's ML Metadata is a SQLite file: a grpc:// store cannot be passed on to it."""
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["--metadata-path", "grpc://metadata-grpc-service:8080", "--retrain-when", "accuracy"])
    assert exit_info.value.code == cli.USAGE
    cli.parse_args(["--metadata-path", "grpc://metadata-grpc-service:8080"])   # monitoring alone reads it


def test_a_metrics_page_that_cannot_be_read_is_an_alarm_not_an_all_clear(tmp_path, pipeline_root, capsys):
    """The CronJob alerts on a failed Job: a server that could not be reached had been a warning line, then
    "0 alarm(s)" and exit 0, with nothing of it in report.html, monitor.json or monitor.prom."""
    from tests.support.serving import free_port
    url = f"http://127.0.0.1:{free_port()}/monitoring/prometheus/metrics"   # nothing listens there
    status, result, out = monitor(tmp_path, pipeline_root, "--metrics-url", url)
    assert status == cli.CROSSED
    assert result["server"] == {"url": url, "error": "Connection refused"}
    assert [a["kind"] for a in result["alarms"]] == ["server_metrics"]
    assert f"ALARM server: no metrics from {url}: Connection refused" in capsys.readouterr().out
    prom = (out / "monitor.prom").read_text()
    assert "letters_monitor_threshold_crossed 1.0" in prom and "letters_monitor_server_metrics_up 0.0" in prom
    html = (out / "report.html").read_text()
    assert "Thresholds crossed" in html and "<h2>Server</h2>" in html and "Connection refused" in html
    for bad in ("127.0.0.1:8501/monitoring/prometheus/metrics", "file:///etc/passwd", "http:///metrics",
                "http://[::1/metrics", "http://127.0.0.1:port/metrics",   # (urllib raises ValueError on these)
                "http://letters-serving..svc:8501/metrics", f"http://{'a' * 64}.example/metrics"):   # (IDNA too)
        with pytest.raises(SystemExit) as exit_info:                 # before anything is read
            cli.parse_args(["--metrics-url", bad, "--out", str(tmp_path / "o")])
        assert exit_info.value.code == cli.USAGE


@pytest.mark.parametrize("page", ['{"status": "ok"}\n', "<!doctype html>\n<title>Not here</title>\n"])
def test_a_page_that_is_not_prometheus_text_says_so(page):
    """The parser's own message for a JSON page is empty: the warning had said nothing."""
    with pytest.raises(server_metrics.Unreadable, match=r"^not Prometheus text \(first line '[{<]"):
        server_metrics.summarize(page)


def model_status(*states: tuple[int, str]) -> tuple[int, bytes]:
    """TF Serving's answer to GET /v1/models/letters with versions in these states (none: its 404)."""
    if not states:
        return 404, b'{ "error": "Could not find any versions of model letters" }'
    return 200, json.dumps({"model_version_status": [
        {"version": str(version), "state": state, "status": {"error_code": "OK", "error_message": ""}}
        for version, state in states]}).encode()


AVAILABLE = model_status((3, "AVAILABLE"))


class _MetricsPage(BaseHTTPRequestHandler):
    def do_GET(self):   # HTTP/1.0: the page ends when the connection closes
        self.server.hosts.append(self.headers["Host"])
        self.server.paths.append(self.path)
        if self.server.together is not None:   # answered only once every server has been asked the same
            with contextlib.suppress(threading.BrokenBarrierError):
                self.server.together.wait()
        if "/v1/models/" in self.path:   # the model's status, on the same port as the page (behind a prefix too)
            if self.server.status is None:   # a server that closes on it without an answer
                return
            code, body = self.server.status
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)
            return
        if self.server.head_pause:   # the status line, then its header lines a byte at a time
            self.wfile.write(b"HTTP/1.0 200 OK\r\n")
            if trickle(self.connection, b"X-Wait: 0\r\n" * 50, self.server.head_pause, 10, self.server.stop):
                self.server.head_sent.set()
                self.wfile.write(b"\r\n" + self.server.page)
            return
        if self.server.location and self.path.endswith("/metrics"):
            self.send_response(302)
            self.send_header("Location", self.server.location)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        if self.server.length is not None:
            self.send_header("Content-Length", str(self.server.length))
        self.end_headers()
        if self.server.pause:
            trickle(self.connection, self.server.page, self.server.pause, seconds=10, stop=self.server.stop)
        else:
            self.wfile.write(self.server.page)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def metrics_page(page: bytes, pause: float = 0.0, length: int | None = None, head_pause: float = 0.0,
                 head_sent: threading.Event | None = None, location: str = "", address: tuple = ("127.0.0.1", 0),
                 hosts: list | None = None, status: tuple | None = AVAILABLE, paths: list | None = None,
                 together: threading.Barrier | None = None):
    """A server on ``address`` (127.0.0.1, a free port) answering a GET of /v1/models/… with ``status`` ((HTTP
    status, body): by default TF Serving's for a model with a version AVAILABLE; None closes the connection
    unanswered) and every other GET with ``page`` (a byte every ``pause``
    seconds, for at most 10 s, when given: each read well within the socket's timeout; with a Content-Length of
    ``length`` when given), then closing the connection; yields the page's URL. With ``head_pause``, fifty header
    lines come a byte every ``head_pause`` seconds instead (for at most 10 s; ``head_sent`` is set if they were all
    sent); with ``location``, the page's URL is redirected there. Each request's Host header is added to
    ``hosts``, its path to ``paths``. With ``together`` (a barrier shared by several such servers), each request
    waits at it before it is answered."""
    server = ThreadingHTTPServer(address, _MetricsPage)
    server.together = together
    server.daemon_threads = True
    server.hosts = [] if hosts is None else hosts
    server.paths = [] if paths is None else paths
    server.status = status
    server.page, server.pause, server.length, server.stop = page, pause, length, threading.Event()
    server.head_pause, server.head_sent, server.location = head_pause, head_sent or threading.Event(), location
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/monitoring/prometheus/metrics"
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()


def test_a_page_trickled_in_ends_at_the_timeout():
    """The timeout bounds the whole page: a server sending a comment line every few seconds without end (each read
    well within the socket's own timeout) had kept the monitor, and --watch, waiting forever."""
    with metrics_page(b"# x\n" * 1000, pause=0.01) as url:
        with pytest.raises(server_metrics.Unreadable, match=r"^timed out: the page was not whole within 1 s$"):
            server_metrics.fetch(url, timeout=1.0)


def test_headers_trickled_in_end_at_the_timeout():
    """The timeout bounds the status line and the headers too: each header line had had the socket's own timeout
    anew (up to 100 lines: some 16 minutes with the 10 s timeout) before the page's deadline applied."""
    head_sent = threading.Event()
    with metrics_page(b"# x\n", head_pause=0.01, head_sent=head_sent) as url:   # (some 6 s of header lines)
        with pytest.raises(server_metrics.Unreadable, match=r"^timed out: the page was not whole within 1 s$"):
            server_metrics.fetch(url, timeout=1.0)
        assert not head_sent.is_set()   # ended while they still came


def test_a_redirected_page_cannot_be_read_and_says_where_it_points():
    """A Prometheus page is served where it is asked for: a redirect (to a login page, say) is not followed."""
    with metrics_page(b"# x\n", location="/login?next=metrics") as url:
        with pytest.raises(server_metrics.Unreadable) as info:
            server_metrics.fetch(url)
    assert str(info.value) == f"HTTP 302 Found to {url.rsplit('/monitoring', 1)[0]}/login?next=metrics"


def test_a_page_cut_short_of_its_content_length_cannot_be_read():
    with metrics_page(b"# x\n", length=100) as url:
        with pytest.raises(server_metrics.Unreadable, match=r"^IncompleteRead\(4 bytes read, 96 more expected\)$"):
            server_metrics.fetch(url)


def test_a_page_over_the_size_limit_is_an_alarm(tmp_path, pipeline_root, capsys):
    """A page without end (or not a metrics page) is not read into memory whole: past MAX_PAGE_BYTES it is a page
    that cannot be read."""
    with metrics_page(b"# x\n" * (2 << 20) + b"# y\n") as url:
        status, result, _ = monitor(tmp_path, pipeline_root, "--metrics-url", url)
    assert status == cli.CROSSED
    assert result["server"] == {"url": url, "error": "the page is larger than 8 MiB"}
    assert f"ALARM server: no metrics from {url}: the page is larger than 8 MiB" in capsys.readouterr().out


def test_only_the_monitored_models_server_metrics_are_judged(tmp_path, pipeline_root, capsys):
    """TF Serving labels its series by model_name: another model's errors and latency had raised the monitored
    model's alarms ("200 of 1400 requests failed", a p95 of seconds for a model answering in 5 ms)."""
    from serving.metrics import Metrics

    metrics = Metrics()
    for _ in range(1000):
        metrics.request("letters", "OK", api="predict", latency_us=5000)
    for _ in range(200):
        metrics.request("other", "INTERNAL")
        metrics.request("other", "OK", api="predict", latency_us=2_000_000)
    for _ in range(30):   # the other model's readiness probes: not requests, as the monitored model's are not
        metrics.request("other", "OK", api="", latency_us=300)
    with metrics_page(metrics.render().encode()) as url:
        status, result, out = monitor(tmp_path, pipeline_root, "--metrics-url", url)
        assert status == cli.OK and result["alarms"] == []
        server = result["server"]
        assert (server["model"], server["requests"], server["errors"], server["status_checks"]) == ("letters", 1000,
                                                                                                    0, 0)
        assert server["latency_ms"]["p95"] < 10 and server["other_models"] == {"other": 400}
        assert ("other models' server requests left out (model letters is judged): 400 × other"
                in capsys.readouterr().out)
        assert "other models' requests, left out: 400 × other" in (out / "report.html").read_text()
        status, result, _ = monitor(tmp_path, pipeline_root, "--metrics-url", url, "--model", "other")
    assert status == cli.CROSSED and {a["kind"] for a in result["alarms"]} == {"errors", "latency"}
    assert (result["server"]["requests"], result["server"]["errors"]) == (400, 200)
    assert result["server"]["other_models"] == {"letters": 1000}
    unlabelled = server_metrics.summarize(':tensorflow:serving:request_count{status="UNAVAILABLE"} 3\n', "letters")
    assert (unlabelled["requests"], unlabelled["errors"], unlabelled["other_models"]) == (3, 3, {})


def test_a_metrics_page_without_the_monitored_model_is_a_usage_error_unless_its_answers_are_read(
        tmp_path, letters, pipeline_root, capsys):
    """A page holding other models' requests only (a --model mistyped, another model's server) had been an
    all-clear on 0 requests; with the model's answers read from the request log, they are judged."""
    from serving.metrics import Metrics

    metrics = Metrics()
    for _ in range(400):
        metrics.request("other", "OK", api="predict", latency_us=5000)
    metrics.request("experiment", "INTERNAL")
    with metrics_page(metrics.render().encode()) as url:
        status, result, _ = monitor(tmp_path, pipeline_root, "--metrics-url", url)
        err = capsys.readouterr().err
        assert status == cli.USAGE and result is None, err
        assert err.strip().splitlines()[-1] == (f"error: no request of model letters (--model) on the metrics page "
                                               f"{url}, other models' only: 1 × experiment, 400 × other")
        log_traffic(tmp_path / "logs" / "r", traffic(letters))
        status, result, _ = monitor(tmp_path, pipeline_root, "--metrics-url", url, logs=tmp_path / "logs")
    assert status == cli.OK and result["logs"]["answers"] == 81, capsys.readouterr()
    assert result["server"]["requests"] == 0 and result["server"]["other_models"] == {"experiment": 1, "other": 400}


def test_requests_that_name_no_model_are_no_other_models_traffic(tmp_path, pipeline_root, capsys):
    """TF Serving counts a request whose path names no model (a mistyped /v1/ URL) under model_name="": listed as
    "(no model)", left out, and no sign of another model's server. They had been another model named "" ("1 × , 1 ×
    nosuch, 40 × other"), and a page of them alone a usage error ("other models' only: 3 × ")."""
    from serving.metrics import Metrics

    metrics = Metrics()
    for _ in range(3):   # POST /v1/model/letters:predict
        metrics.request("", "INVALID_ARGUMENT")
    with metrics_page(metrics.render().encode()) as url:
        status, result, _ = monitor(tmp_path, pipeline_root, "--metrics-url", url)
    assert status == cli.OK and result["alarms"] == [], capsys.readouterr().err
    assert (result["server"]["requests"], result["server"]["other_models"], result["server"]["no_model"]) == (0, {}, 3)
    assert "left out (model letters is judged): 3 × (no model)" in capsys.readouterr().out

    metrics.request("nosuch", "NOT_FOUND")
    for _ in range(40):
        metrics.request("other", "OK", api="predict", latency_us=5000)
    for _ in range(10):
        metrics.request("letters", "OK", api="predict", latency_us=5000)
    with metrics_page(metrics.render().encode()) as url:
        status, result, out = monitor(tmp_path, pipeline_root, "--metrics-url", url)
    assert status == cli.OK and result["server"]["requests"] == 10
    assert ("other models' server requests left out (model letters is judged): 3 × (no model), 1 × nosuch, "
            "40 × other" in capsys.readouterr().out)
    assert "left out: 3 × (no model), 1 × nosuch, 40 × other" in (out / "report.html").read_text()


def pipeline_run_at(tmp_path, pipeline_root, when: float):
    """A copy of the pipeline root whose pipeline run started at ``when``."""
    import sqlite3
    root = tmp_path / "root"
    shutil.copytree(pipeline_root, root)
    db = sqlite3.connect(root / "metadata.sqlite")
    with db:
        db.execute("UPDATE Context SET create_time_since_epoch = ? WHERE type_id IN "
                   "(SELECT id FROM Type WHERE name = 'pipeline_run')", (int(when * 1000),))
    db.close()
    return root


def store_ids(store_dir) -> list[str]:
    store = FeedbackStore(store_dir)
    try:
        return [r.id for r in store.records()]
    finally:
        store.close()


@pytest.mark.parametrize("other", ["no feedback", "another store"])
def test_feedback_a_later_run_did_not_read_is_still_new(tmp_path, letters, pipeline_root, other):
    """A run with --no-feedback, or with another --feedback-dir on the same pipeline root, trained on none of this
    store's rows: the rows stored after the last run that read them had been dropped as older than that run."""
    now = time.time()
    root = tmp_path / "root"
    shutil.copytree(pipeline_root, root)
    metadata = str(root / "metadata.sqlite")
    add_feedback(tmp_path / "feedback", letters, corrected_share=0.0, n=3, now=now - 4000)
    fake_pipeline.record_trainer_run(metadata, "run-1", now - 3600, feedback_ids=store_ids(tmp_path / "feedback"))
    add_feedback(tmp_path / "feedback", letters, corrected_share=0.4, n=50, now=now - 1200)
    add_feedback(tmp_path / "other", letters, corrected_share=0.0, n=3, now=now - 1200)
    fake_pipeline.record_trainer_run(metadata, "run-2", now - 600,
                                     feedback_ids=[] if other == "no feedback" else store_ids(tmp_path / "other"))
    status, result, _ = monitor(tmp_path, root, "--retrain-when", "feedback>=50", "--dry-run",
                                feedback=tmp_path / "feedback")
    assert result["retrain"]["fires"] and result["retrain"]["why"].startswith("50 feedback rows since")
    status, result, _ = monitor(tmp_path, root, "--retrain-when", "accuracy", "--dry-run",
                                feedback=tmp_path / "feedback")
    assert result["retrain"]["fires"] and result["retrain"]["why"].endswith("since the last pipeline run")
    # the reference for answers (drift) is still the last run that trained
    assert result["reference"]["last_run_time"] == pytest.approx(now - 600, abs=0.01)


def test_feedback_stored_after_the_runs_export_is_new(tmp_path, letters, pipeline_root):
    """A run exports the store before its first component starts, which is when ML Metadata dates the run: a row
    stored in between was neither in the export nor newer than the run. Rows are judged by what the run read."""
    now = time.time()
    root = tmp_path / "root"
    shutil.copytree(pipeline_root, root)
    metadata = str(root / "metadata.sqlite")
    add_feedback(tmp_path / "feedback", letters, corrected_share=0.0, n=3, now=now - 1200)
    exported = store_ids(tmp_path / "feedback")
    add_feedback(tmp_path / "feedback", letters, corrected_share=0.0, n=3, now=now - 601)   # after the export
    fake_pipeline.record_trainer_run(metadata, "run-1", now - 600, feedback_ids=exported)
    status, result, _ = monitor(tmp_path, root, "--retrain-when", "feedback>=3", "--dry-run",
                                feedback=tmp_path / "feedback")
    assert result["retrain"]["fires"] and result["retrain"]["why"].startswith("3 feedback rows since")
    # a row the run read and skipped (no ink, too large) was read: it is not new
    fake_pipeline.record_trainer_run(metadata, "run-2", now - 300, feedback_ids=exported)
    fake_pipeline.record_feedback_read(metadata, "run-2", [], skipped_ids=store_ids(tmp_path / "feedback")[3:])
    status, result, _ = monitor(tmp_path, root, "--retrain-when", "feedback>=1", "--dry-run",
                                feedback=tmp_path / "feedback")
    assert not result["retrain"]["fires"] and result["retrain"]["why"].startswith("0 feedback rows since")


def test_feedback_whose_stored_image_is_gone_is_not_new_feedback(tmp_path, letters, pipeline_root):
    """An export leaves out a row whose stored image is missing or no longer its bytes, so no run reads it: judged by
    what the run read, it had counted as new on every pass, and feedback>=N started a retraining every time."""
    from core.feedback import image_file, read_records

    now = time.time()
    root = tmp_path / "root"
    shutil.copytree(pipeline_root, root)
    add_feedback(tmp_path / "feedback", letters, corrected_share=0.0, n=3, now=now - 1200)
    fake_pipeline.record_trainer_run(str(root / "metadata.sqlite"), "run-1", now - 600,
                                     feedback_ids=store_ids(tmp_path / "feedback"))
    add_feedback(tmp_path / "feedback", letters, corrected_share=0.0, n=3, now=now - 300)
    later = sorted(read_records(tmp_path / "feedback"), key=lambda r: r.created_at)[-3:]
    os.remove(image_file(tmp_path / "feedback", later[0]))
    with open(image_file(tmp_path / "feedback", later[1]), "ab") as handle:
        handle.write(b"rot")
    status, result, _ = monitor(tmp_path, root, "--retrain-when", "feedback>=2", "--dry-run",
                                feedback=tmp_path / "feedback")
    assert not result["retrain"]["fires"]
    assert result["retrain"]["why"].startswith("1 feedback rows since the last pipeline run that trained on this "
                                               "store's feedback; 2 more whose stored image is missing or damaged "
                                               "left out: no run can train on them (letters-feedback remove them)")


def test_drift_retrains_only_on_answers_after_the_last_pipeline_run(tmp_path, letters, pipeline_root, capsys):
    """The run --retrain-when drift started had those answers already: judged again, the same window had started
    another full retraining on every pass (--watch, the hourly CronJob) for as long as it stayed current."""
    now = clear_of_the_hour()
    hour = windows.start(now, 3600)
    root = pipeline_run_at(tmp_path, pipeline_root, hour - 1800)
    log_traffic(tmp_path / "logs" / "before", traffic(letters, transform=inverted), mtime=hour - 2400)
    args = ("--window", "1h", "--retrain-when", "drift", "--dry-run")
    status, result, _ = monitor(tmp_path, root, *args, logs=tmp_path / "logs")
    assert status == cli.CROSSED and {a["kind"] for a in result["alarms"]} == {"input_skew"}   # still an alarm
    assert not result["retrain"]["fires"]
    assert "retrain (drift): no — the last pipeline run (" in capsys.readouterr().out
    assert "came after this evidence: version 7, " in result["retrain"]["why"]
    log_traffic(tmp_path / "logs" / "after", traffic(letters, transform=inverted), mtime=now)
    status, result, _ = monitor(tmp_path, root, *args, logs=tmp_path / "logs")
    assert result["retrain"]["fires"] and len(result["alarms"]) == 2
    assert result["retrain"]["why"].startswith(f"version 7, {windows.label(hour, 3600)}: input skew")
    assert windows.label(hour - 3600, 3600) not in result["retrain"]["why"]   # only the window after the run


def test_accuracy_retrains_only_on_feedback_after_the_last_pipeline_run(tmp_path, letters, pipeline_root):
    now = time.time()
    root = pipeline_run_at(tmp_path, pipeline_root, now - 600)
    add_feedback(tmp_path / "feedback", letters, corrected_share=0.4, now=now - 1200)
    fake_pipeline.record_feedback_read(str(root / "metadata.sqlite"), "run-1", store_ids(tmp_path / "feedback"))
    args = ("--retrain-when", "accuracy", "--dry-run")
    status, result, _ = monitor(tmp_path, root, *args, feedback=tmp_path / "feedback")
    assert status == cli.CROSSED and [a["kind"] for a in result["alarms"]] == ["accuracy"]
    assert not result["retrain"]["fires"]
    assert result["retrain"]["why"].startswith("the last pipeline run (") and "version 7: live accuracy 0.600" in \
        result["retrain"]["why"]
    add_feedback(tmp_path / "feedback", letters, corrected_share=0.5)
    status, result, _ = monitor(tmp_path, root, *args, feedback=tmp_path / "feedback")
    assert result["retrain"]["fires"]
    assert result["retrain"]["why"].startswith("version 7: live accuracy 0.500 ")   # the 50 rows after the run
    assert result["retrain"]["why"].endswith("since the last pipeline run")


def test_accuracy_without_an_accuracy_alarm_reads_no_stored_image(tmp_path, letters, pipeline_root, monkeypatch):
    """With no accuracy alarm up there is nothing to judge again on the feedback since the run: each unread row's
    stored image had been read and hashed all the same, on every pass (--watch, the hourly CronJob)."""
    now = time.time()
    root = pipeline_run_at(tmp_path, pipeline_root, now - 600)
    add_feedback(tmp_path / "feedback", letters, corrected_share=0.0, now=now - 300)   # accurate: no alarm
    opened = []
    real = retrain.stored_image
    monkeypatch.setattr(retrain, "stored_image", lambda *a: opened.append(a) or real(*a))
    status, result, _ = monitor(tmp_path, root, "--retrain-when", "accuracy", "--dry-run",
                                feedback=tmp_path / "feedback")
    assert result["alarms"] == [] and not result["retrain"]["fires"]
    assert result["retrain"]["why"] == "no accuracy threshold crossed"
    assert opened == []
    status, result, _ = monitor(tmp_path, root, "--retrain-when", "feedback>=50", "--dry-run",
                                feedback=tmp_path / "feedback")
    assert result["retrain"]["fires"] and len(opened) == 50   # what feedback>=N counts: every unread row's image


def test_accuracy_reads_the_stored_images_of_the_alarming_versions_rows_alone(tmp_path, letters, pipeline_root,
                                                                             monkeypatch):
    """Only the versions alarming are judged again on the feedback since the run: the rows of the others had had
    their stored images read and hashed as well, on every pass."""
    now = time.time()
    root = pipeline_run_at(tmp_path, pipeline_root, now - 600)
    add_feedback(tmp_path / "feedback", letters, corrected_share=0.5, now=now - 300)              # version 7: alarms
    add_feedback(tmp_path / "feedback", letters, corrected_share=0.0, version=8, n=30, now=now - 300)
    opened = []
    real = retrain.stored_image
    monkeypatch.setattr(retrain, "stored_image", lambda store, record: opened.append(record) or real(store, record))
    status, result, _ = monitor(tmp_path, root, "--retrain-when", "accuracy", "--dry-run",
                                feedback=tmp_path / "feedback")
    assert [a["version"] for a in result["alarms"] if a["kind"] == "accuracy"] == ["7"]
    assert result["retrain"]["fires"] and result["retrain"]["why"].startswith("version 7: live accuracy 0.500 ")
    assert len(opened) == 50 and {record.model_version for record in opened} == {7}


@pytest.mark.parametrize("stopped", ["RUNNING", "FAILED", "CANCELED"])
def test_a_run_stopped_before_its_trainer_ended_leaves_the_evidence_to_the_next(tmp_path, letters, pipeline_root,
                                                                               stopped):
    """A retraining killed or failed during its Trainer had used up the feedback stored before it: the next pass
    judged only rows newer than that run, so --retrain-when never fired on them again. A run whose Trainer ended
    (its model then refused by the gate, or reused from the cache) did train on them."""
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    now = time.time()
    root = tmp_path / "root"
    shutil.copytree(pipeline_root, root)
    metadata = str(root / "metadata.sqlite")
    fake_pipeline.record_trainer_run(metadata, "run-1", now - 3600)                  # the run that trained
    add_feedback(tmp_path / "feedback", letters, corrected_share=0.0, n=3, now=now - 1200)
    fake_pipeline.record_trainer_run(metadata, "run-2", now - 600, getattr(mlmd.Execution, stopped))
    args = ("--retrain-when", "feedback>=3", "--dry-run")
    status, result, _ = monitor(tmp_path, root, *args, feedback=tmp_path / "feedback")
    assert result["retrain"]["fires"] and result["retrain"]["why"].startswith("3 feedback rows since")
    assert result["reference"]["last_run_time"] == pytest.approx(now - 3600, abs=0.01)
    for run, started, state in (("run-3", now - 300, mlmd.Execution.COMPLETE), ("run-4", now - 100,
                                                                             mlmd.Execution.CACHED)):
        add_feedback(tmp_path / "feedback", letters, corrected_share=0.0, n=3, now=started - 50)
        fake_pipeline.record_trainer_run(metadata, run, started, state, feedback_ids=store_ids(tmp_path / "feedback"))
        status, result, _ = monitor(tmp_path, root, *args, feedback=tmp_path / "feedback")
        assert not result["retrain"]["fires"] and result["retrain"]["why"].startswith("0 feedback rows since")


def test_outputs_that_cannot_be_written_end_the_pass_with_status_4(tmp_path, letters, pipeline_root, capsys):
    """A traceback and exit 1 ("threshold crossed") had ended the pass, monitor.json and monitor.prom unwritten."""
    log_traffic(tmp_path / "logs" / "r", traffic(letters))
    (tmp_path / "report" / "report.html").mkdir(parents=True)          # a folder where the page goes
    status, result, out = monitor(tmp_path, pipeline_root, logs=tmp_path / "logs")
    err = capsys.readouterr().err
    assert status == cli.NOT_FINISHED == 4 and "Traceback" not in err
    assert f"error: could not write into {out}: report.html and its charts: Is a directory" in err
    assert result["groups"] and (out / "monitor.prom").is_file()        # the others are written all the same
    assert not list(out.glob(".tmp-*"))


def test_a_full_disk_leaves_no_part_of_any_output(tmp_path, letters, pipeline_root, capsys, monkeypatch):
    import errno
    log_traffic(tmp_path / "logs" / "r", traffic(letters))

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", full)                              # each file's data reaching the disk
    status, _, out = monitor(tmp_path, pipeline_root, logs=tmp_path / "logs")
    assert status == cli.NOT_FINISHED and os.listdir(out) == []         # no empty PNG, no part of a file
    err = capsys.readouterr().err
    assert "monitor.json: No space left on device; monitor.prom: No space left" in err and "Traceback" not in err


def test_a_watch_pass_that_fails_is_reported_and_the_next_pass_runs(tmp_path, monkeypatch, capsys):
    """An unexpected error had exited 1 (documented as a threshold crossed) and ended the --watch loop."""
    outcomes = iter([RuntimeError("boom"), cli.NOT_FINISHED, cli.OK])

    def once(*args):
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
    monkeypatch.setattr(cli, "once", once)
    monkeypatch.setattr(cli.time, "sleep", lambda s: None)
    assert cli.main(["--watch", "3", "--max-runs", "3", "--out", str(tmp_path / "o")]) == cli.OK
    err = capsys.readouterr().err
    assert "RuntimeError: boom" in err and "error: the monitoring pass failed" in err
    monkeypatch.setattr(cli, "once", lambda *args: 1 / 0)
    assert cli.main(["--out", str(tmp_path / "o")]) == cli.NOT_FINISHED


PODS = "letters-serving-pods"   # the headless Service's name (serving/deploy/k8s/headless-service.yaml)


def pods_port() -> int:
    """A port free on both 127.0.0.1 and 127.0.0.2 (Linux answers the whole of 127/8 on the loopback)."""
    import socket
    for _ in range(50):
        with socket.socket() as one, socket.socket() as two:
            one.bind(("127.0.0.1", 0))
            port = one.getsockname()[1]
            try:
                two.bind(("127.0.0.2", port))
            except OSError:
                continue
            return port
    raise AssertionError("no port the system chose on 127.0.0.1 was free on 127.0.0.2 as well, in 50 tries")


def resolve_pods(monkeypatch, *addresses, family=None):
    """PODS resolves to ``addresses`` (a headless Service's A records: one per pod), other names as they do."""
    import socket
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host != PODS:
            return real(host, port, *args, **kwargs)
        return [(family or (socket.AF_INET6 if ":" in a else socket.AF_INET), socket.SOCK_STREAM,
                 socket.IPPROTO_TCP, "", (a, port)) for a in addresses]
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def served_pages(*pods):
    """Metrics pages as TF Serving renders them, one per pod, and one page of every pod's requests together."""
    from serving.metrics import Metrics

    pages, together = [], Metrics()
    for requests in pods:
        metrics = Metrics()
        for model, status, api, latency in requests:
            for each in (metrics, together):
                each.request(model, status, api=api, latency_us=latency)
        pages.append(metrics.render().encode())
    return pages, together.render()


def test_a_name_of_several_addresses_is_judged_on_the_sum_of_their_pages(tmp_path, pipeline_root, monkeypatch):
    """Each TF Serving process counts its own requests: read through the load-balanced Service, one random
    replica's page had been judged (its half of the traffic: the other's errors and slow answers unseen, an
    all-clear when it was the first's)."""
    (fast, slow), together = served_pages(
        [("letters", "OK", "predict", 1000)] * 90 + [("letters", "OK", "", 300)] * 40,
        [("letters", "OK", "predict", 2_000_000)] * 10 + [("letters", "UNAVAILABLE", "predict", 0)] * 8
        + [("letters", "INVALID_ARGUMENT", "predict", 0)] * 2 + [("other", "INTERNAL", "predict", 0)] * 4
        + [("letters", "OK", "", 300)] * 40)
    port, hosts, paths = pods_port(), [], []
    resolve_pods(monkeypatch, "127.0.0.1", "127.0.0.2")
    with metrics_page(fast, address=("127.0.0.1", port), hosts=hosts, paths=paths), \
            metrics_page(slow, address=("127.0.0.2", port), hosts=hosts, paths=paths):
        url = f"http://{PODS}:{port}/monitoring/prometheus/metrics"
        summary = server_metrics.read(url, "letters")
        status, result, out = monitor(tmp_path, pipeline_root, "--metrics-url", url)
    assert hosts == [f"{PODS}:{port}"] * 8   # each pod asked once a read, by the URL's name, for its page and status
    assert sorted(paths) == ["/monitoring/prometheus/metrics"] * 4 + ["/v1/models/letters"] * 4
    assert status == cli.CROSSED and [a["kind"] for a in result["alarms"]] == ["errors", "latency"]
    assert result["server"] == {"url": url, **summary}
    assert (f"The sum of the pages of 2 addresses: 127.0.0.1:{port}, 127.0.0.2:{port}."
            in (out / "report.html").read_text())
    assert summary.pop("pages") == [f"127.0.0.1:{port}", f"127.0.0.2:{port}"]
    assert summary.pop("model_status") == {f"127.0.0.{n}:{port}": {"available": True, "versions": {"3": "AVAILABLE"}}
                                           for n in (1, 2)}
    assert summary == server_metrics.summarize(together, "letters")
    assert (summary["requests"], summary["errors"], summary["rejected"], summary["status_checks"]) == (110, 8, 2, 80)
    assert summary["latency_ms"]["p95"] > 500 and summary["other_models"] == {"other": 4}


def test_a_name_of_one_address_is_read_as_before(monkeypatch):
    """One address, or a dual-stack pod's two (an IPv4 and an IPv6 address of one server), is one page."""
    (page,), together = served_pages([("letters", "OK", "predict", 1000)] * 5)
    port = pods_port()
    resolve_pods(monkeypatch, "127.0.0.1")
    assert server_metrics.addresses(f"http://{PODS}:{port}/metrics") == ["127.0.0.1"]
    with metrics_page(page, address=("127.0.0.1", port)):
        summary = server_metrics.read(f"http://{PODS}:{port}/monitoring/prometheus/metrics", "letters")
    assert summary.pop("model_status") == {f"{PODS}:{port}": {"available": True, "versions": {"3": "AVAILABLE"}}}
    assert summary == server_metrics.summarize(together, "letters") and "pages" not in summary
    import socket
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: (
        [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0))] + real("127.0.0.1", port, *a, **k)
        if host == PODS else real(host, port, *a, **k)))
    assert server_metrics.addresses(f"http://{PODS}:8501/metrics") == ["::1"]


def test_the_pods_of_a_name_are_asked_at_once(monkeypatch):
    """A pass over a headless Service's pods had asked them one after another, each page then each status with the
    whole timeout: ten slow replicas took up to 200 s. Each pod here answers only once the other has been asked the
    same: asked in turn, the first had timed out waiting for the second."""
    (one, two), together = served_pages([("letters", "OK", "predict", 1000)] * 5,
                                        [("letters", "OK", "predict", 2000)] * 3)
    port, paths = pods_port(), []
    both = threading.Barrier(2, timeout=10)
    resolve_pods(monkeypatch, "127.0.0.1", "127.0.0.2")
    with metrics_page(one, address=("127.0.0.1", port), paths=paths, together=both), \
            metrics_page(two, address=("127.0.0.2", port), paths=paths, together=both):
        summary = server_metrics.read(f"http://{PODS}:{port}/monitoring/prometheus/metrics", "letters", timeout=5.0)
    assert sorted(paths) == ["/monitoring/prometheus/metrics"] * 2 + ["/v1/models/letters"] * 2
    assert summary.pop("pages") == [f"127.0.0.1:{port}", f"127.0.0.2:{port}"]
    assert list(summary.pop("model_status")) == [f"127.0.0.1:{port}", f"127.0.0.2:{port}"]
    assert summary == server_metrics.summarize(together, "letters")


def test_a_pod_whose_page_cannot_be_read_is_an_alarm_naming_it(tmp_path, pipeline_root, monkeypatch, capsys):
    """A replica that is down is not an all-clear: read through the Service, it had never been asked (a pod
    that is not ready is no endpoint of it); of the pods' pages, each one that cannot be read is named."""
    (page,), _ = served_pages([("letters", "OK", "predict", 1000)] * 5)
    port = pods_port()
    resolve_pods(monkeypatch, "127.0.0.1", "127.0.0.2")
    url = f"http://{PODS}:{port}/monitoring/prometheus/metrics"
    with metrics_page(page, address=("127.0.0.1", port)):   # nothing listens on 127.0.0.2
        status, result, out = monitor(tmp_path, pipeline_root, "--metrics-url", url)
        error = f"127.0.0.2:{port}: Connection refused (1 of the 2 addresses of {PODS})"
        assert status == cli.CROSSED and result["server"] == {"url": url, "error": error}
        assert [a["kind"] for a in result["alarms"]] == ["server_metrics"]
        assert f"ALARM server: no metrics from {url}: {error}" in capsys.readouterr().out
        assert "letters_monitor_server_metrics_up 0.0" in (out / "monitor.prom").read_text()
        with metrics_page(b"<!doctype html>\n", address=("127.0.0.2", port)):   # not a metrics page: named too
            with pytest.raises(server_metrics.Unreadable, match=rf"^127\.0\.0\.2:{port}: not Prometheus text "):
                server_metrics.read(url)


def test_a_model_unloaded_after_it_served_is_an_alarm_naming_its_server(tmp_path, pipeline_root, monkeypatch,
                                                                          capsys):
    """TF Serving's counters are its lifetime's: a model that served, then had its versions unloaded (their folders
    deleted), still shows its OK answers, and every call since is NOT_FOUND. They had been counted as the client's
    mistake (an error share of 0, the p95 of the earlier answers: no alarm); by the server's model status (no
    version AVAILABLE) they are its failures, and the model not being served there an alarm. On a server where it
    is available, NOT_FOUND (a version 99 asked for) stays the client's."""
    (served, unloaded), _ = served_pages(
        [("letters", "OK", "predict", 1000)] * 100 + [("letters", "NOT_FOUND", "predict", 0)] * 10
        + [("letters", "OK", "", 300)] * 20,
        [("letters", "OK", "predict", 1000)] * 100 + [("letters", "NOT_FOUND", "predict", 0)] * 40)
    port = pods_port()
    resolve_pods(monkeypatch, "127.0.0.1", "127.0.0.2")
    url = f"http://{PODS}:{port}/monitoring/prometheus/metrics"
    with metrics_page(served, address=("127.0.0.1", port)), \
            metrics_page(unloaded, address=("127.0.0.2", port), status=model_status((3, "END"))):
        status, result, out = monitor(tmp_path, pipeline_root, "--metrics-url", url)
    server = result["server"]
    assert (server["requests"], server["errors"], server["rejected"], server["answerable"]) == (250, 40, 10, 240)
    assert server["model_status"][f"127.0.0.2:{port}"] == {"available": False, "versions": {"3": "END"},
                                                            "why": "no version AVAILABLE (version 3 END)"}
    text = f"server: model letters is not available on 127.0.0.2:{port}: no version AVAILABLE (version 3 END)"
    assert status == cli.CROSSED and [(a["kind"], a["text"]) for a in result["alarms"]] == [
        ("model_unavailable", text), ("errors", "server: 40 of 240 requests failed (16.7% > 5%)")]
    printed = capsys.readouterr().out
    assert f"ALARM {text}\n" in printed and "model status" not in printed
    html = (out / "report.html").read_text()
    assert (f"Model <code>letters</code> is not available on 127.0.0.2:{port}: no version AVAILABLE (version 3 END); "
            "any NOT_FOUND it answered counted as failed on the server." in html)

    (gone,), _ = served_pages([("letters", "OK", "predict", 1000)] * 100 + [("letters", "NOT_FOUND", "predict", 0)] * 5)
    with metrics_page(gone, status=model_status()) as url:   # no version known at all: TF Serving's 404
        summary = server_metrics.read(url, "letters")
    name = url.split("/")[2]
    assert summary["model_status"] == {name: {"available": False, "versions": {},
                                              "why": "Could not find any versions of model letters"}}
    assert (summary["errors"], summary["rejected"]) == (5, 0)


def test_a_version_the_server_does_not_have_stays_the_clients_mistake_where_the_model_is_available():
    """A model AVAILABLE on its server: NOT_FOUND is a version asked for that it does not have (99), even on a page
    where the model answered none of its calls yet (loaded since its last restart, asked for version 99 only)."""
    (page,), _ = served_pages([("letters", "OK", "predict", 1000)] * 90 + [("letters", "NOT_FOUND", "predict", 0)] * 10)
    (only_99,), _ = served_pages([("letters", "NOT_FOUND", "predict", 0)] * 10)
    for served, requests in ((page, 100), (only_99, 10)):
        with metrics_page(served, status=model_status((1, "END"), (3, "AVAILABLE"))) as url:
            summary = server_metrics.read(url, "letters")
        assert (summary["requests"], summary["errors"], summary["rejected"]) == (requests, 0, 10)
        assert server_metrics.unavailable(summary) == {} and server_metrics.status_unread(summary) is None


@pytest.mark.parametrize("status, error", [
    (None, "Remote end closed connection without response"),
    ((503, b"<html><title>503</title></html>"), "HTTP 503 Service Unavailable"),
    ((404, b"<html><title>Not Found</title></html>"), "HTTP 404, not a model status (first line '<html><title>Not "
                                                      "Found</title></html>')"),
])
def test_a_model_status_that_cannot_be_read_leaves_the_pages_own_rule_and_says_so(tmp_path, pipeline_root, capsys,
                                                                                  status, error):
    """Without the server's model status, NOT_FOUND is the client's mistake on a page where the model answered
    calls, the server's failure where it answered none; one line says the status was not read and by what rule
    NOT_FOUND was judged: no alarm of it."""
    from html import escape

    (served,), _ = served_pages([("letters", "OK", "predict", 1000)] * 90
                                + [("letters", "NOT_FOUND", "predict", 0)] * 10)
    with metrics_page(served, status=status) as url:
        code, result, out = monitor(tmp_path, pipeline_root, "--metrics-url", url)
        (none_answered,), _ = served_pages([("letters", "NOT_FOUND", "predict", 0)] * 10)
    name = url.split("/")[2]
    assert code == cli.OK and result["alarms"] == []
    assert result["server"]["model_status"] == {name: {"available": None, "error": error}}
    assert (result["server"]["errors"], result["server"]["rejected"]) == (0, 10)
    line = (f"model status of letters not read ({name}: {error}): NOT_FOUND judged by the metrics page alone, the "
            "client's mistake where the model answered any of its calls, else failed on the server")
    assert line in capsys.readouterr().out.splitlines()
    assert f"<p>{escape(line)}.</p>" in (out / "report.html").read_text()
    with metrics_page(none_answered, status=status) as url:
        summary = server_metrics.read(url, "letters")
    assert (summary["errors"], summary["rejected"]) == (10, 0)


def test_images_are_measured_with_the_pipelines_pixel_limit(tmp_path, letters, pipeline_root, monkeypatch):
    """LETTERS_MAX_IMAGE_PIXELS, the ExampleGen's and the web client's decompression-bomb guard, is the monitor's:
    an image over it is unreadable, the served ones and the training split's alike (it had been the default's
    40 million pixels, whatever the setting)."""
    from pipeline.monitor import image_features
    from tests.conftest import letter_image, png_bytes

    seen, features = set(), image_features.features
    monkeypatch.setattr(image_features, "features",
                        lambda *args, **kw: (seen.add(kw.get("max_pixels", args[2:])), features(*args, **kw))[1])
    monkeypatch.setenv("LETTERS_MAX_IMAGE_PIXELS", "12345")
    log_traffic(tmp_path / "logs", traffic(letters)[:5])
    status, result, _ = monitor(tmp_path, pipeline_root, logs=tmp_path / "logs")
    assert result["logs"]["answers"] == 5 and seen == {12345, (12345,)}, seen   # training, served
    assert features(png_bytes(letter_image(200, 100)), max_pixels=19999)["format"] == "unreadable"
    assert features(png_bytes(letter_image(200, 100)), max_pixels=20000)["format"] == "PNG"


def test_a_metrics_url_behind_a_path_prefix_asks_the_model_status_behind_it_too():
    """A server behind a proxy's path prefix (https://gw/tfserving/monitoring/prometheus/metrics): its model status
    is asked under the same prefix; it had been asked at the host's root, another server's or none."""
    (page,), _ = served_pages([("letters", "OK", "predict", 1000)] * 5)
    paths = []
    with metrics_page(page, paths=paths) as url:
        prefixed = url.replace("/monitoring/", "/tfserving/monitoring/")
        server_metrics.read(prefixed, "letters")
    assert sorted(paths) == ["/tfserving/monitoring/prometheus/metrics", "/tfserving/v1/models/letters"]
