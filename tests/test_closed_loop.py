"""The whole cycle: serve v1 (the shared first run's model, on a copy of its pipeline root) → corrections through
the web API (logged) → the monitor sees the live accuracy fall and retrains (--retrain-when accuracy) → v2 blessed,
pushed and served → the web API answers from v2 → rollback answers from v1 again."""
import pytest
import base64
import json
import subprocess
import sys
import time
import urllib.parse

from core import configs
from pipeline import generate_letters, releases
from serving.client import RestConnection
from tests.conftest import ROOT

pytestmark = pytest.mark.slow   # a pipeline run (the retraining) on top of the shared runs


def post(url: str, body: dict) -> tuple[int, dict]:
    parts = urllib.parse.urlsplit(url)
    return RestConnection(f"{parts.scheme}://{parts.netloc}", timeout=60).request("POST", parts.path, body)


def answering_version(web_url: str, image: bytes) -> str:
    status, body = post(f"{web_url}/api/predict", {"image": base64.b64encode(image).decode(), "route": "stable"})
    assert status == 200, body
    return body["model_version"]


def wait_for_version(web_url: str, image: bytes, version: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = answering_version(web_url, image)
        if seen == str(version):
            return
        time.sleep(0.3)
    raise AssertionError(f"still answered by version {seen}, not {version}, after {timeout} s")


def test_feedback_retrain_push_hot_swap_and_rollback(pipeline_runs, tiny_dataset, own_work, tmp_path):
    from tests.support.serving import start_server
    from web import server as web_server
    from web.config import WebConfig
    from core.feedback import FeedbackStore

    # v1: the shared first run (tiny data, 3 epochs, no feedback), pushed into the copied serving dir.
    first = pipeline_runs["first"]
    feedback_dir, serving_dir, config = tmp_path / "feedback", own_work / "serving", tmp_path / "models.config"
    # As the shared runs: from a random start (the built-in letters' pretraining is not what this test is about).
    flags = ["--epochs", "3", "--accuracy-floor", "0.0", "--max-regression", "1.0", "--no-pretrain"]
    v1 = int(first["pushed_version"])
    assert sorted(int(p.name) for p in serving_dir.iterdir()) == [v1]
    assert "feedback" not in first["ingest"] or first["ingest"].get("feedback", 0) == 0
    releases.set_label(str(config), "stable", v1, str(serving_dir))

    corrections = tmp_path / "drawn"
    generate_letters.generate(corrections, per_class=1, seed=2024, progress=False)
    drawn = sorted(corrections.glob("*/*.png"))
    probe = drawn[0].read_bytes()

    # Labels in the startup config need this flag, with the real TF Serving too.
    with start_server(model_config_file=str(config), model_config_file_poll_wait_seconds=0.5,
                      file_system_poll_wait_seconds=0.5, allow_version_labels_for_unavailable_models=True) as server, \
            web_server.start(WebConfig(host="127.0.0.1", port=0, tf_serving_url=server.url,
                                       feedback_dir=str(feedback_dir),
                                       request_log_dir=str(tmp_path / "requests"))) as web:
        assert answering_version(web.url, probe) == str(v1)
        # A user labels one drawing of every letter through the web API: corrections where v1 was wrong.
        corrected = 0
        for path in drawn:
            image = base64.b64encode(path.read_bytes()).decode()
            status, answer = post(f"{web.url}/api/predict", {"image": image})
            assert status == 200
            corrected += answer["top"][0]["class"] != path.parent.name
            status, stored = post(f"{web.url}/api/feedback", {
                "image": image, "label": path.parent.name, "predicted_label": answer["top"][0]["class"],
                "probability": answer["top"][0]["probability"], "model_version": answer["model_version"]})
            assert status == 201, stored
        store = FeedbackStore(str(feedback_dir))
        assert len(store.records()) == 27
        store.close()
        assert corrected / 27 >= 0.4, corrected      # the premise: v1 reads new drawings badly

        # The monitor reads the request log and the feedback, finds v1's live accuracy confidently below the
        # floor and runs the pipeline with the feedback: the Evaluator gates, the Pusher pushes v2.
        summary_json = tmp_path / "summary-retrain.json"
        monitor = subprocess.run(
            [sys.executable, "-m", "pipeline.monitor", "--logs", str(tmp_path / "requests"),
             "--pipeline-root", str(own_work / "pipeline"), "--feedback-dir", str(feedback_dir),
             "--out", str(tmp_path / "monitor"), "--retrain-when", "accuracy", "--monitor-min-feedback", "20",
             "--", "--data-root", str(tiny_dataset), "--serving-dir", str(serving_dir),
             "--summary-json", str(summary_json), *flags],
            cwd=ROOT, capture_output=True, text=True, timeout=1200)
        assert monitor.returncode == 1, monitor.stdout[-3000:] + monitor.stderr[-3000:]   # a threshold crossed
        assert "retrain (accuracy): fires" in monitor.stdout and "live accuracy" in monitor.stdout
        report = json.loads((tmp_path / "monitor" / "monitor.json").read_text())
        assert report["retrain"]["returncode"] == 0 and report["logs"]["files"]
        second = json.loads(summary_json.read_text())
        assert second["ingest"]["feedback"] == 27
        assert second["components"]["ImageExampleGen"] == second["components"]["Trainer"] == "complete"
        assert second["had_baseline"] and second["blessed"] and second["pushed"]
        v2 = int(second["pushed_version"])
        assert v2 > v1
        # 27 corrections beside the tiny data's 173 training candidates: three times each makes them about a third
        assert second["ingest"]["feedback_repeat"] == configs.feedback_copies(0, round(216 * 4 / 5), 27) == 3
        assert second["examples_per_split"]["train"] == first["examples_per_split"]["train"] + 3 * 27
        assert second["examples_per_split"]["eval"] == first["examples_per_split"]["eval"]

        releases.set_label(str(config), "stable", v2, str(serving_dir), server_url=server.url)
        wait_for_version(web.url, probe, v2)
        assert {r["version"]: r["labels"] for r in releases.list_versions(
            str(serving_dir), str(own_work / "pipeline" / "metadata.sqlite"), str(config))} == {v1: [], v2: ["stable"]}

        assert releases.rollback(str(config), "stable", str(serving_dir), server_url=server.url) == v1
        wait_for_version(web.url, probe, v1)
