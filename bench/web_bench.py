"""Web client benchmark: a prediction through the web backend vs the same prediction sent to TF Serving directly.

    python -m bench.web_bench [--model-base-path serving/models/letters] [--requests 200] [--image-size 320]

Starts the embedded TF Serving (subprocess) on the pushed model under --model-base-path (or the tiny test model
when none is pushed, and says so) and the web backend (``python -m web``, subprocess) in front of it, both on
loopback. Then, one request at a time over keep-alive connections, alternates
  * direct: ``POST /v1/models/letters:predict`` (``predict_images``, the image as ``{"b64": ...}``),
  * web:    ``POST /api/predict`` (``{"image": base64}``: validation with core.image_io, label
            resolution (cached), the same predict call, top-3 answer)
with the same image (a drawn letter on a white canvas, as the page sends it), and prints the median and p90 round
trip of each, their ratio and the backend's added milliseconds, and the command to reproduce. Bounded: a few
seconds of requests after the servers start.
"""
import os
import sys

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)

import argparse
import base64
import io
import json
import re
import shlex
import signal
import statistics
import subprocess
import tempfile
import time

from core import configs
from bench import children, reproduce
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


def start_web(serving_url: str, feedback_dir: str):
    proc = subprocess.Popen([sys.executable, "-m", "web", "--host", "127.0.0.1", "--port", "0",   # loopback only
                             "--tf-serving-url", serving_url,
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


@children.stops_on_sigterm   # a stopped bench (timeout, kill) stops its servers as Ctrl-C does
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base-path", default=configs.Config.from_env().serving_dir)
    parser.add_argument("--requests", type=positive_int, default=200, help="measured requests per path")
    parser.add_argument("--warmup", type=non_negative_int, default=20)
    parser.add_argument("--image-size", type=positive_int, default=320,
                        help="side of the drawn PNG (the canvas is 320)")
    args = parser.parse_args(argv)

    base, found, note = testing.pushed_or_stand_in(args.model_base_path, "web-bench-")
    if note:
        print(note, flush=True)
    image = drawn_letter(args.image_size)
    b64 = base64.b64encode(image).decode("ascii")
    direct_body = json.dumps({"signature_name": configs.IMAGE_SIGNATURE, "instances": [{"b64": b64}]}).encode()
    web_body = json.dumps({"image": b64}).encode()
    print(f"model base path: {base}; image {args.image_size}x{args.image_size} PNG, {len(image)} bytes", flush=True)

    serving = testing.start_server(base, subprocess=True)
    web_proc = None
    try:
        with tempfile.TemporaryDirectory(prefix="web-bench-feedback-") as feedback_dir:
            web_proc, web_url = start_web(serving.url, feedback_dir)
            direct, web = KeepAlive(serving.url), KeepAlive(web_url)
            direct_path = f"/v1/models/{configs.MODEL_NAME}:predict"
            times = {"direct": [], "web": []}
            version = None
            for i in range(args.warmup + args.requests):
                # Alternate which goes first so that neither always runs on a just-woken CPU.
                order = (("direct", direct, direct_path, direct_body), ("web", web, "/api/predict", web_body))
                for name, client, path, body in (order if i % 2 == 0 else order[::-1]):
                    elapsed, status, raw = client.post(path, body)
                    if status != 200:
                        raise RuntimeError(f"{name} request failed: HTTP {status} {raw[:300]!r}")
                    if name == "web":
                        version = json.loads(raw)["model_version"]
                    if i >= args.warmup:
                        times[name].append(elapsed)
    finally:
        if web_proc is not None:
            web_proc.send_signal(signal.SIGTERM)
            web_proc.wait(30)
        serving.stop()

    direct_p50, web_p50 = statistics.median(times["direct"]), statistics.median(times["web"])
    print(f"answered by model version {version}; {args.requests} requests each, one at a time, keep-alive, loopback")
    for name in ("direct", "web"):
        print(f"  {name:6s} median {statistics.median(times[name]) * 1e3:7.2f} ms   p90 "
              f"{percentile(times[name], 90) * 1e3:7.2f} ms   min {min(times[name]) * 1e3:7.2f} ms")
    print(f"ratio web/direct (median): {web_p50 / direct_p50:.2f}; the backend adds "
          f"{(web_p50 - direct_p50) * 1e3:.2f} ms per prediction")
    if note:
        print(note)
    shown = os.path.relpath(sys.executable) if sys.executable.startswith(str(configs.PROJECT_ROOT)) else sys.executable
    print(f"reproduce: cd {configs.PROJECT_ROOT} && {reproduce.command('bench.web_bench', argv, python=shown)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
