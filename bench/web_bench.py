"""Web client benchmark: a prediction through the web backend vs the same prediction sent to TF Serving directly.

    python -m bench.web_bench [--model-base-path serving/models/letters] [--requests 200] [--image-size 320 ...]
                              [--format png ...]

Starts the embedded TF Serving (subprocess) on the pushed model under --model-base-path (or the tiny test model
when none is pushed, and says so) and the web backend (``python -m web``, subprocess) in front of it, both on
loopback. Then, one request at a time over keep-alive connections, alternates
  * direct: ``POST /v1/models/letters:predict`` (``predict_images``, the image as ``{"b64": ...}``),
  * web:    ``POST /api/predict`` (``{"image": base64}``: validation with core.image_io, label
            resolution (cached), the same predict call, top-3 answer)
with the same image (a drawn letter on a white canvas, as the page sends it: an RGBA PNG, or as a photo would be
sent, an RGB JPEG of quality 90), and prints the median and p90 round trip of each, their ratio and the backend's
added milliseconds, and the command to reproduce. Bounded: a few seconds of requests after the servers start.

Several ``--image-size`` and ``--format`` values measure each size in each format in turn, on the same servers: what
a large upload costs the model and the web client, e.g. ``--image-size 1000 6300 --format png jpeg --requests 3
--warmup 1`` (6300 x 6300 is under the 40 Mpx limit: the model shrinks it to 1,024 px a side after decoding it whole,
and the web client decodes it once to check it, so both grow with the pixels).
"""
import os
import sys

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)

import argparse
import base64
import io
import json
import re
import signal
import statistics
import subprocess
import tempfile
import time

from core import configs
from bench import reproduce
from core.signals import sigterm_as_interrupt
from pipeline.flags import non_negative_int, positive_int
from serving.client import RestConnection
from tests.support import serving as testing


def drawn_letter(size: int) -> bytes:
    """A PNG like the page's canvas export: black strokes on white, RGBA."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (size, size), (255, 255, 255, 255))
    draw = ImageDraw.Draw(img)
    width = max(3, size // 18)
    draw.line([(0.3 * size, 0.2 * size), (0.55 * size, 0.5 * size), (0.7 * size, 0.8 * size)], fill="black",
              width=width, joint="curve")
    draw.line([(0.7 * size, 0.22 * size), (0.45 * size, 0.55 * size)], fill="black", width=width)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def drawn_image(size: int, image_format: str) -> bytes:
    """:func:`drawn_letter` as a PNG (the page's export), or as a JPEG of quality 90 (RGB, as a photo is sent)."""
    png = drawn_letter(size)
    if image_format == "png":
        return png
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


class KeepAlive:
    """One kept-alive connection (the project's REST client with a pool of one), timing each POST."""

    def __init__(self, url: str):
        self.connection = RestConnection(url, timeout=60, max_idle=1)

    def post(self, path: str, body: bytes) -> tuple[float, int, bytes]:
        started = time.perf_counter()
        status, _, raw = self.connection.exchange("POST", path, body, {"Content-Type": "application/json"})
        return time.perf_counter() - started, status, raw


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def start_web(serving_url: str, feedback_dir: str, port: int = 0):
    proc = subprocess.Popen([sys.executable, "-m", "web", "--host", "127.0.0.1", "--port", str(port),   # loopback
                             "--tf-serving-url", serving_url, "--serving-timeout", "300",   # (a large image's time)
                             "--feedback-dir", feedback_dir, "--log-level", "WARNING"],
                            cwd=str(configs.PROJECT_ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
    except KeyboardInterrupt:   # Ctrl-C or SIGTERM while it starts: not left running
        proc.kill()
        proc.wait()
        raise
    match = re.search(r"at (http://[^ ]+?)/ ", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"web backend did not start: {line}{proc.stderr.read()}")
    return proc, match.group(1)


@sigterm_as_interrupt()   # a stopped bench (timeout, kill) stops its servers as Ctrl-C does
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base-path", default=configs.Config.from_env().serving_dir)
    parser.add_argument("--requests", type=positive_int, default=200, help="measured requests per path")
    parser.add_argument("--warmup", type=non_negative_int, default=20)
    parser.add_argument("--image-size", type=positive_int, nargs="+", default=[320],
                        help="side(s) of the drawn image (the canvas is 320)")
    parser.add_argument("--format", choices=("png", "jpeg"), nargs="+", default=["png"],
                        help="the drawn image's format(s): png (the page's RGBA export) or jpeg (RGB, quality 90)")
    parser.add_argument("--serving-port", type=non_negative_int, default=0,
                        help="the model server's REST port (0: any free one)")
    parser.add_argument("--web-port", type=non_negative_int, default=0, help="the web client's port (0: any free one)")
    args = parser.parse_args(argv)

    base, found, note = testing.pushed_or_stand_in(args.model_base_path, "web-bench-")
    if note:
        print(note, flush=True)
    print(f"model base path: {base}", flush=True)

    serving = testing.start_server(base, subprocess=True, port=args.serving_port)
    web_proc = None
    try:
        with tempfile.TemporaryDirectory(prefix="web-bench-feedback-") as feedback_dir:
            web_proc, web_url = start_web(serving.url, feedback_dir, args.web_port)
            direct, web = KeepAlive(serving.url), KeepAlive(web_url)
            for size in args.image_size:
                for image_format in args.format:
                    image = drawn_image(size, image_format)
                    print(f"image {size}x{size} {image_format.upper()}, {len(image)} bytes", flush=True)
                    times, version = measure(direct, web, image, args.warmup, args.requests)
                    report(times, version, args.requests)
    finally:
        if web_proc is not None:
            web_proc.send_signal(signal.SIGTERM)
            web_proc.wait(30)
        serving.stop()
    if note:
        print(note)
    shown = os.path.relpath(sys.executable) if sys.executable.startswith(str(configs.PROJECT_ROOT)) else sys.executable
    print(f"reproduce: cd {configs.PROJECT_ROOT} && {reproduce.command('bench.web_bench', argv, python=shown)}")
    return 0


def measure(direct: KeepAlive, web: KeepAlive, image: bytes, warmup: int, requests: int):
    """Round trips (s) of ``image`` sent to TF Serving directly and through the web backend, alternated:
    ({"direct": [...], "web": [...]}, the model version that answered)."""
    b64 = base64.b64encode(image).decode("ascii")
    direct_body = json.dumps({"signature_name": configs.IMAGE_SIGNATURE, "instances": [{"b64": b64}]}).encode()
    web_body = json.dumps({"image": b64}).encode()
    direct_path = f"/v1/models/{configs.MODEL_NAME}:predict"
    times = {"direct": [], "web": []}
    version = None
    for i in range(warmup + requests):
        # Alternate which goes first so that neither always runs on a just-woken CPU.
        order = (("direct", direct, direct_path, direct_body), ("web", web, "/api/predict", web_body))
        for name, client, path, body in (order if i % 2 == 0 else order[::-1]):
            elapsed, status, raw = client.post(path, body)
            if status != 200:
                raise RuntimeError(f"{name} request failed: HTTP {status} {raw[:300]!r}")
            if name == "web":
                version = json.loads(raw)["model_version"]
            if i >= warmup:
                times[name].append(elapsed)
    return times, version


def report(times: dict, version, requests: int) -> None:
    direct_p50, web_p50 = statistics.median(times["direct"]), statistics.median(times["web"])
    print(f"answered by model version {version}; {requests} requests each, one at a time, keep-alive, loopback")
    for name in ("direct", "web"):
        print(f"  {name:6s} median {statistics.median(times[name]) * 1e3:7.2f} ms   p90 "
              f"{percentile(times[name], 90) * 1e3:7.2f} ms   min {min(times[name]) * 1e3:7.2f} ms")
    print(f"ratio web/direct (median): {web_p50 / direct_p50:.2f}; the backend adds "
          f"{(web_p50 - direct_p50) * 1e3:.2f} ms per prediction", flush=True)


if __name__ == "__main__":
    sys.exit(main())
