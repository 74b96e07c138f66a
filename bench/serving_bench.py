"""Serving benchmark: the embedded server over loopback vs the same model called in-process.

    python -m bench.serving_bench [--model-base-path serving/models/letters] [--duration 8] [--concurrency 32]

Measures, in one run:
  * served: concurrent single-image ``predict_images`` requests (keep-alive connections, loopback, dynamic
    batching on) -> requests/s, p50/p99 latency; and one-at-a-time requests -> p50 latency of one request;
  * in-process: the same SavedModel's signature called with batches (images/s) and with one image (latency).
Targets: served throughput >= 70 % of in-process batched throughput; served p50 of one request <=
2 x in-process single call + 1 ms. With no pushed model under --model-base-path it exports the configured
letters network with random weights into a temp dir (``--fallback tiny``: the tiny test model) and says so. The run is bounded (about 30-40 s by default).
"""
import os
import sys

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)

import argparse
import asyncio
import json
import shlex
import statistics
import tempfile
import time

from core import configs
from tests.support import serving as testing


def build_untrained_network(export_dir, image_size):
    """The letters network as configured (models.network.build_model) with random weights behind the
    ``predict_images`` signature, with the real preprocessing: the real model's per-image cost without needing
    a pipeline run."""
    import tensorflow as tf

    from models.export import image_outputs
    from models.network import build_model
    from models.preprocessing import images_to_ink

    class Untrained(tf.Module):
        def __init__(self):
            super().__init__()
            config = configs.Config.from_env()
            self.cnn = build_model(config.architecture, image_size, config.dropout, config.conv_widths)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=configs.IMAGE_INPUT)])
        def predict_images(self, images):
            return image_outputs(self.cnn(images_to_ink(images, image_size), training=False))

    module = Untrained()
    tf.saved_model.save(module, export_dir, signatures={configs.IMAGE_SIGNATURE: module.predict_images})


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def _load(port, payload, concurrency, duration, max_requests):
    request = (f"POST /v1/models/letters:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
    latencies, errors = [], []
    deadline = time.perf_counter() + duration

    async def worker():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline and len(latencies) < max_requests:
                started = time.perf_counter()
                writer.write(request)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                if b" 200 " not in status_line:
                    errors.append(status_line + body[:200])
                    continue
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - started


def served(port, payload, concurrency, duration, max_requests=10 ** 9):
    return asyncio.run(_load(port, payload, concurrency, duration, max_requests))


def in_process(model_dir, image, batch_size, duration):
    import tensorflow as tf

    function = tf.saved_model.load(model_dir).signatures[configs.IMAGE_SIGNATURE]
    single = tf.constant([image])
    batch = tf.constant([image] * batch_size)
    for _ in range(5):
        function(images=single)
        function(images=batch)
    singles = []
    end = time.perf_counter() + duration / 2
    while time.perf_counter() < end or len(singles) < 20:
        started = time.perf_counter()
        {k: v.numpy() for k, v in function(images=single).items()}
        singles.append(time.perf_counter() - started)
    calls = 0
    started = time.perf_counter()
    end = started + duration / 2
    while time.perf_counter() < end or calls < 5:
        {k: v.numpy() for k, v in function(images=batch).items()}
        calls += 1
    return statistics.median(singles), calls * batch_size / (time.perf_counter() - started)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base-path", default=configs.Config.from_env().serving_dir)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of concurrent load")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout-micros", type=int, default=0)
    parser.add_argument("--num-batch-threads", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=configs.Config.from_env().image_size)
    parser.add_argument("--fallback", choices=("network", "tiny"), default="network",
                        help="model to build when none is pushed: the letters network as configured (--architecture "
                             "in core/configs.py) with random weights, or the tiny test model")
    args = parser.parse_args(argv)

    if args.fallback == "network":
        base, found, note = testing.pushed_or_stand_in(
            args.model_base_path, "serving-bench-", lambda path: build_untrained_network(path, args.image_size),
            "the letters network (models.network.build_model) with random weights")
    else:
        base, found, note = testing.pushed_or_stand_in(args.model_base_path, "serving-bench-")
    if note:
        print(note, flush=True)
    version = max(found)
    image = testing.png_bytes(size=args.image_size, noise_seed=1)
    payload = json.dumps({"signature_name": configs.IMAGE_SIGNATURE, "instances": [testing.b64(image)]}).encode()

    print(f"model: {found[version]} (version {version}); image {args.image_size}x{args.image_size} PNG, "
          f"{len(image)} bytes", flush=True)
    single_s, batched_ips = in_process(found[version], image, args.max_batch_size, min(args.duration, 8.0))

    with tempfile.TemporaryDirectory() as tmp:
        batching = os.path.join(tmp, "batching.config")
        with open(batching, "w") as handle:
            handle.write(f"max_batch_size {{ value: {args.max_batch_size} }}\n"
                         f"batch_timeout_micros {{ value: {args.batch_timeout_micros} }}\n"
                         f"num_batch_threads {{ value: {args.num_batch_threads} }}\n"
                         f"max_enqueued_batches {{ value: 1000 }}\n")
        server = testing.start_server(base, subprocess=True, enable_batching=True, batching_parameters_file=batching)
        try:
            served(server.port, payload, 4, 1.0)                       # warm-up
            one, errors_one, _ = served(server.port, payload, 1, min(args.duration / 2, 4.0), 2000)
            latencies, errors, elapsed = served(server.port, payload, args.concurrency, args.duration)
        finally:
            server.stop()

    rps = len(latencies) / elapsed
    one_p50 = statistics.median(one)
    throughput_ratio = rps / batched_ips
    latency_bound = 2 * single_s + 0.001
    print(f"served ({args.concurrency} concurrent, {elapsed:.1f}s): {rps:.0f} requests/s, "
          f"p50 {percentile(latencies, 50) * 1e3:.2f} ms, p99 {percentile(latencies, 99) * 1e3:.2f} ms, "
          f"{len(errors) + len(errors_one)} errors")
    print(f"served one-at-a-time: p50 {one_p50 * 1e3:.2f} ms, p99 {percentile(one, 99) * 1e3:.2f} ms")
    print(f"in-process: batched ({args.max_batch_size}/call) {batched_ips:.0f} images/s; single call "
          f"{single_s * 1e3:.2f} ms")
    print(f"ratio served/in-process throughput: {throughput_ratio:.2f} (target >= 0.70) "
          f"{'OK' if throughput_ratio >= 0.7 else 'BELOW TARGET'}")
    print(f"ratio served p50 / in-process single: {one_p50 / single_s:.2f}; bound 2x+1ms = {latency_bound * 1e3:.2f} ms "
          f"{'OK' if one_p50 <= latency_bound else 'ABOVE TARGET'}")
    if note:
        print(note)
    command = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable, os.getcwd()) if sys.executable.startswith(os.getcwd()) else sys.executable,
                                                "-m", "bench.serving_bench"] + (argv if argv is not None else sys.argv[1:]))
    print(f"reproduce: cd {configs.PROJECT_ROOT} && {command}")
    return 0 if not errors and not errors_one else 1


if __name__ == "__main__":
    sys.exit(main())
