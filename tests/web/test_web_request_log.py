"""The web backend's request log (--request-log-dir, --request-log-sampling): TF Serving PredictionLog records of
its predictions (image as sent, probabilities, the version that answered, the image's source) that replay on TF
Serving to the same probabilities; sampling; flags and environment; no TensorFlow in the backend."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from core import configs, request_log
from tests.support import serving as testing
from tests.web.conftest import CANARY_VERSION, STABLE_VERSION, Api, letter_png

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def web_logs(folder) -> list:
    return list(request_log.read_logs(os.path.join(str(folder), "web")))


def multipart(image: bytes, **fields) -> tuple[bytes, dict]:
    boundary = "----letters-request-log"
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n".encode()
                    for name, value in fields.items())
    body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
             f"Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_predictions_are_logged_and_replay_on_tf_serving(start_web, serving_labelled, tmp_path):
    folder = tmp_path / "request-log"
    api = Api(start_web(serving_labelled.url, request_log_dir=str(folder)).url)
    images = [letter_png(seed=s) for s in range(3)]
    status, drawn = api.predict(images[0], source="canvas")
    assert status == 200
    status, _, uploaded = api.request("POST", "/api/predict", *multipart(images[1], route="canary", source="upload"))
    assert status == 200
    status, _, raw = api.request("POST", "/api/predict", images[2], {"Content-Type": "image/png"})
    assert status == 200

    records = web_logs(folder)
    assert [r.log_metadata.request_origin for r in records] == ["canvas", "upload", "unknown"]
    rest = testing.RestClient(serving_labelled.url)
    for record, image, answer, version in zip(records, images, (drawn, uploaded, raw),
                                              (STABLE_VERSION, CANARY_VERSION, STABLE_VERSION)):
        metadata = record.log_metadata
        assert (metadata.model_spec.name, metadata.model_spec.signature_name, metadata.model_spec.version.value) \
            == ("letters", configs.IMAGE_SIGNATURE, version) == (
                "letters", configs.IMAGE_SIGNATURE, int(answer["model_version"]))
        assert metadata.sampling_config.sampling_rate == 1.0 and metadata.timestamp_secs > 0
        request, response = record.predict_log.request, record.predict_log.response
        assert list(request.inputs[configs.IMAGE_INPUT].string_val) == [image]   # PNG: sent unchanged
        assert request.model_spec.version.value == response.model_spec.version.value == version
        logged = np.array(response.outputs[configs.PROBABILITIES_OUTPUT].float_val).reshape(1, 27)
        assert logged[0].argmax() == answer["top"][0]["index"]
        assert logged[0].max() == pytest.approx(answer["top"][0]["probability"], rel=1e-6)
        # Replay: the logged request, sent again to the version that answered, gives the logged probabilities.
        status, replayed = rest.post(f"/v1/models/letters/versions/{version}:predict",
                                     {"signature_name": request.model_spec.signature_name,
                                      "instances": [testing.b64(v) for v in request.inputs["images"].string_val]})
        assert status == 200
        np.testing.assert_allclose([row[configs.PROBABILITIES_OUTPUT] for row in replayed["predictions"]], logged,
                                   rtol=1e-6)


def test_sampling_rate_zero_and_one_half(start_web, serving_labelled, tmp_path):
    none, half = tmp_path / "none", tmp_path / "half"
    off = Api(start_web(serving_labelled.url, request_log_dir=str(none), request_log_sampling=0.0).url)
    some = Api(start_web(serving_labelled.url, request_log_dir=str(half), request_log_sampling=0.5).url)
    png = letter_png(seed=4)
    n = 100
    for _ in range(n):
        assert off.predict(png)[0] == 200
        assert some.predict(png)[0] == 200
    assert web_logs(none) == []
    spread = 5 * math.sqrt(n * 0.25)
    assert n / 2 - spread <= len(web_logs(half)) <= n / 2 + spread
    assert {r.log_metadata.sampling_config.sampling_rate for r in web_logs(half)} == {0.5}


def test_an_unknown_source_is_refused(start_web, serving_labelled, tmp_path):
    api = Api(start_web(serving_labelled.url, request_log_dir=str(tmp_path / "log")).url)
    status, answer = api.predict(letter_png(), source="camera")
    assert (status, answer["reason"]) == (400, "bad_source")
    assert web_logs(tmp_path / "log") == []


def test_the_page_says_where_its_image_came_from():
    with open(os.path.join(ROOT, "web", "static", "app.js"), encoding="utf-8") as handle:
        script = handle.read()
    assert 'JSON.stringify({ image: b64, source: "canvas" })' in script
    assert 'form.append("source", "upload")' in script


def test_flags_and_environment(tmp_path, monkeypatch):
    from web.__main__ import parse_args
    from web.config import WebConfig

    config = WebConfig.from_env({"LETTERS_REQUEST_LOG_DIR": str(tmp_path), "LETTERS_REQUEST_LOG_SAMPLING": "0.25"})
    assert (config.request_log_dir, config.request_log_sampling) == (str(tmp_path), 0.25)
    assert (WebConfig().request_log_dir, WebConfig().request_log_sampling) == ("", 1.0)
    monkeypatch.setenv("LETTERS_REQUEST_LOG_SAMPLING", "0.5")
    config = parse_args(["--request-log-dir", str(tmp_path / "flag"), "--log-level", "WARNING"])
    assert (config.request_log_dir, config.request_log_sampling) == (str(tmp_path / "flag"), 0.5)
    assert parse_args(["--request-log-sampling", "0", "--log-level", "WARNING"]).request_log_sampling == 0.0
    with pytest.raises(ValueError, match="request log sampling must be a number between 0 and 1"):
        WebConfig(request_log_sampling=1.5)
    proc = subprocess.run([sys.executable, "-m", "web", "--request-log-sampling", "2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "request log sampling must be a number between 0 and 1" in proc.stderr


def test_the_backend_logs_without_loading_tensorflow(tmp_path):
    script = f"""
import sys
from web.config import WebConfig
from web.server import Backend
from web.tfserving import Prediction
backend = Backend(WebConfig(feedback_dir={str(tmp_path / 'fb')!r}, request_log_dir={str(tmp_path / 'log')!r}))
prediction = Prediction(top=[], version=3, route="stable", requested_route="stable", fallback_reason="",
                        serving_ms=1, resolve_ms=0, probabilities=[1 / 27] * 27)
backend.request_log.write(backend._prediction_log(b"png bytes", prediction, "canvas"))
backend.close()
assert "tensorflow" not in sys.modules, sorted(m for m in sys.modules if m.startswith("tensorflow"))[:5]
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (record,) = web_logs(tmp_path / "log")
    assert record.predict_log.request.inputs["images"].string_val == [b"png bytes"]
    assert record.log_metadata.model_spec.version.value == 3 and record.log_metadata.request_origin == "canvas"


@pytest.mark.parametrize("url", ["gs://bucket/x", "file:///tmp/x"])
def test_a_url_request_log_dir_is_a_usage_error_and_nothing_is_written(url, tmp_path, monkeypatch):
    """gs://bucket/x (or file:///tmp/x) had been taken for a relative path: the web client said it logged to the
    URL and wrote to ./gs:/bucket/x (./file:/tmp/x) where it ran."""
    from core import settings
    from web.config import WebConfig

    with pytest.raises(ValueError) as caught:
        WebConfig(request_log_dir=url)
    assert str(caught.value) == f"request log folder {settings.url_refusal(url)}"
    for args, env in (([f"--request-log-dir={url}"], {}), ([], {"LETTERS_REQUEST_LOG_DIR": url})):
        proc = subprocess.run([sys.executable, "-m", "web", "--host", "10.255.255.1", "--port", "28901",
                               f"--feedback-dir={tmp_path / 'fb'}", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": ROOT, **env})
        assert proc.returncode == 2 and settings.url_refusal(url) in proc.stderr, proc.stderr
        assert "usage: letters-web" in proc.stderr and os.listdir(tmp_path) == []
