"""Fixtures for the web client tests: tiny letters models behind the embedded TF Serving, and web backends."""
import core  # noqa: F401  (before TensorFlow)

import base64
import json

import pytest

from serving.client import RestConnection
from tests.support import serving as testing

# The tiny model's version v ranks class v % 27 first: version 1 answers "bet", version 2 "gimel".
STABLE_VERSION, CANARY_VERSION = 1, 2
STABLE_CLASS, CANARY_CLASS = "bet", "gimel"


@pytest.fixture(scope="session")
def models_base(tmp_path_factory):
    letters = tmp_path_factory.mktemp("web_models") / "letters"
    testing.publish_version(str(letters), STABLE_VERSION)
    testing.publish_version(str(letters), CANARY_VERSION)
    return letters


@pytest.fixture(scope="session")
def serving_labelled(models_base, tmp_path_factory):
    """Embedded TF Serving with versions 1 and 2 and the labels stable=1, canary=2 (as serving/deploy)."""
    config = tmp_path_factory.mktemp("web_serving_config") / "models.config"
    config.write_text(testing.labelled_config_text(models_base, {"stable": STABLE_VERSION, "canary": CANARY_VERSION}))
    with testing.start_server(model_config_file=str(config), allow_version_labels_for_unavailable_models=True,
                              enable_batching=False) as server:
        yield server


@pytest.fixture(scope="session")
def serving_plain(models_base):
    """Embedded TF Serving started with --model_base_path only: no version labels."""
    with testing.start_server(str(models_base), model_name="letters") as server:
        yield server


@pytest.fixture(scope="session")
def dead_url():
    """A loopback URL where nothing listens (TF Serving down)."""
    return f"http://127.0.0.1:{testing.free_port()}"


@pytest.fixture
def slow_predict(serving_labelled):
    """The URL of a TF Serving whose predictions are not answered until the test ends (too slow for the web
    client's --serving-timeout), while its status and label routes answer at once: a local server that passes
    GETs on to ``serving_labelled`` and holds every POST."""
    import threading
    import urllib.error
    import urllib.request
    from tests.support.http_stub import JsonHandler, serving

    released = threading.Event()

    class Handler(JsonHandler):
        def do_GET(self):
            try:
                with urllib.request.urlopen(serving_labelled.url + self.path, timeout=30) as answer:
                    status, body = answer.status, answer.read()
            except urllib.error.HTTPError as err:
                status, body = err.code, err.read()
            self.answer(status, body)

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            released.wait(60)
            self.answer(503, b'{"error": "released"}')

    with serving(Handler) as server:
        yield f"http://127.0.0.1:{server.server_port}"
        released.set()


@pytest.fixture
def start_web(tmp_path):
    """Starts web backends (in-process, free port); stops them after the test."""
    from web import server as web_server
    from web.config import WebConfig

    started = []

    def start(tf_serving_url, **options):
        options.setdefault("feedback_dir", str(tmp_path / f"feedback-{len(started)}"))
        config = WebConfig(host="127.0.0.1", port=0, tf_serving_url=tf_serving_url, **options)
        running = web_server.start(config)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


class Api:
    """HTTP client for the web backend's JSON API."""

    def __init__(self, url: str, timeout: float = 60.0):
        self.connection = RestConnection(url, timeout=timeout, max_idle=0)

    def request(self, method, path, body=None, headers=None):
        status, headers, raw = self.connection.exchange(
            method, path, body.encode("utf-8") if isinstance(body, str) else body, headers)
        payload = json.loads(raw) if raw and headers.get("content-type", "").startswith("application/json") else raw
        return status, headers, payload

    def post_json(self, path, payload, content_type="application/json"):
        body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        status, _, answer = self.request("POST", path, body, {"Content-Type": content_type})
        return status, answer

    def get(self, path):
        status, _, answer = self.request("GET", path)
        return status, answer

    def predict(self, image: bytes, **fields):
        return self.post_json("/api/predict", {"image": b64(image), **fields})

    def feedback(self, image: bytes, label, **fields):
        return self.post_json("/api/feedback", {"image": b64(image), "label": label, **fields})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def blank_png(tone: int, size: int = 320) -> bytes:
    """A PNG of one flat grey tone (255 white, 0 black): no letter in it."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (size, size), tone).save(buffer, format="PNG")
    return buffer.getvalue()


def letter_png(size: int = 48, seed: int = 0) -> bytes:
    """A dark stroke on white paper, as a PNG."""
    import io

    from PIL import Image, ImageDraw

    img = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(img)
    offset = seed % max(1, size // 4)
    draw.line([(size // 4 + offset, size // 5), (size // 2, 4 * size // 5), (3 * size // 4, size // 5)],
              fill=20, width=max(2, size // 10))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def padded_png() -> bytes:
    """A :func:`letter_png` whose base64 ends in "=" (its length not a multiple of 3)."""
    return next(png for png in (letter_png(seed=seed) for seed in range(10)) if len(png) % 3)


@pytest.fixture
def api_for():
    return Api
