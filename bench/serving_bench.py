"""Serving benchmark: the embedded server (REST with batching, and gRPC) against the peer users would pick
otherwise (Flask under gunicorn, the model in memory, one signature call per request) and against the same model
called in-process.

    python -m bench.serving_bench [--model-base-path serving/models/letters] [--duration 5] [--rounds 3]

Single-image ``predict_images`` requests at ``--concurrency`` (32) concurrent clients over loopback, in interleaved
rounds (medians are quoted; the machine may be shared):
  * embedded REST, batching on - wrk (Debian's ``wrk``, a C load generator; its CPU share is printed);
  * embedded gRPC (``--port``, ``--grpc_max_threads`` = the concurrency: a call holds a grpcio thread while its
    batch runs, so TF Serving's default of 4 x CPUs threads would cap the batches) - the official stubs on grpc.aio,
    in a process of their own (CPU share printed);
  * Flask - ``bench/flask_peer.py`` under gunicorn (gthread workers), same wrk load;
  * in-process - the SavedModel's signature called with batches of ``--max-batch-size`` images (images/s).
Targets: embedded REST req/s >= 3 x Flask; served images/s >= 0.8 x in-process batched; gRPC p50 <= REST p50.
Without ``--model-base-path`` it serves the tiny test model (tests/support/serving.build_tiny_model; its per-image
cost is far below the real network's, so the in-process ratio is a worst case); ``--stand-in network`` serves the
configured letters network with random weights instead.
"""
import os
import sys

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)

import argparse
import importlib.util
import json
import shlex
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from bench import load, reproduce
from core.signals import sigterm_as_interrupt
from pipeline.flags import positive_int
from core import configs
from tests.support import serving as testing

TARGETS = {"rest_vs_flask": 3.0, "served_vs_in_process": 0.8, "grpc_p50_vs_rest_p50": 1.0}


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


def in_process(model_dir, image, batch_size, duration):
    """images/s of the signature called in-process with batches of ``batch_size``."""
    import tensorflow as tf

    function = tf.saved_model.load(model_dir).signatures[configs.IMAGE_SIGNATURE]
    batch = tf.constant([image] * batch_size)
    for _ in range(5):
        function(images=batch)
    calls = 0
    started = time.perf_counter()
    while time.perf_counter() < started + duration or calls < 5:
        {k: v.numpy() for k, v in function(images=batch).items()}
        calls += 1
    return calls * batch_size / (time.perf_counter() - started)


def start_flask(model_dir, workers, threads, payload):
    """gunicorn serving bench/flask_peer.py; returns (process, url, command)."""
    port = testing.free_port()
    command = [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", str(workers), "--threads", str(threads),
               "-b", f"127.0.0.1:{port}", "--log-level", "warning", f"bench.flask_peer:create_app({model_dir!r})"]
    process = subprocess.Popen(command, cwd=str(configs.PROJECT_ROOT), stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1/models/letters:predict"
    deadline = time.monotonic() + 180
    try:   # gunicorn is stopped if it never answers, or the wait is stopped (Ctrl-C, SIGTERM)
        while True:     # answered by every worker once each has loaded the model
            try:
                with urllib.request.urlopen(urllib.request.Request(url, data=payload), timeout=5):
                    break
            except urllib.error.HTTPError as err:   # up, and its answer an error: waiting would not change it
                body = err.read()[:300].decode("utf-8", "replace")
                raise RuntimeError(f"the Flask peer answered HTTP {err.code} ({err.reason}) to a predict_images "
                                   f"request: {body} ({' '.join(command)})") from None
            except Exception:  # noqa: BLE001 - not up yet
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not start: {' '.join(command)}")
                time.sleep(0.5)
    except BaseException:
        stop(process)
        raise
    return process, url, " ".join(shlex.quote(part) for part in command)


def stop(process):
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def verdict(ratio, target, higher_is_better=True):
    ok = ratio >= target if higher_is_better else ratio <= target
    return f"{ratio:.2f} (target {'>=' if higher_is_better else '<='} {target:g}) {'OK' if ok else 'MISSED'}"


@sigterm_as_interrupt()   # a stopped bench (timeout, kill) stops its servers as Ctrl-C does
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base-path", help="a pushed model's base path (default: the tiny test model)")
    parser.add_argument("--stand-in", choices=("tiny", "network"), default="tiny",
                        help="model without --model-base-path: the tiny test model, or the configured letters "
                             "network with random weights")
    parser.add_argument("--duration", type=load.whole_seconds, default=5,
                        help="whole seconds of load per measurement (wrk takes no fraction)")
    parser.add_argument("--rounds", type=positive_int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--concurrency", type=positive_int, default=32)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--grpc-max-threads", type=int, default=None,
                        help="the server's --grpc_max_threads (default: --concurrency)")
    parser.add_argument("--batch-timeout-micros", type=int, default=0)
    parser.add_argument("--num-batch-threads", type=int, default=1)
    parser.add_argument("--flask-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--flask-threads", type=int, default=8)
    parser.add_argument("--image-size", type=positive_int, default=configs.Config.from_env().image_size)
    args = parser.parse_args(argv)
    load.require_wrk()
    missing = [name for name in ("flask", "gunicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(f"{' and '.join(missing)} missing (the Flask peer): pip install -c requirements/constraints.txt "
                         f"-e '.[bench]'")

    build = (lambda path: build_untrained_network(path, args.image_size)) if args.stand_in == "network" else None
    description = ("the letters network (models.network.build_model) with random weights" if build else
                   testing.TINY_MODEL_NOTE)
    base, found, note = testing.pushed_or_stand_in(args.model_base_path or "(none given)",
                                                   "serving-bench-", build, description)
    version = max(found)
    model_dir = found[version]
    image = testing.png_bytes(size=args.image_size, noise_seed=1)
    payload = json.dumps({"signature_name": configs.IMAGE_SIGNATURE, "instances": [testing.b64(image)]}).encode()
    print(f"model: {model_dir} (version {version}); image {args.image_size}x{args.image_size} PNG, {len(image)} "
          f"bytes; {args.concurrency} concurrent clients, {args.rounds} rounds of {args.duration:g} s; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} before the run", flush=True)

    runs = {"rest": [], "grpc": [], "flask": [], "in_process": []}
    with tempfile.TemporaryDirectory() as tmp:
        batching = os.path.join(tmp, "batching.config")
        with open(batching, "w") as handle:
            handle.write(f"max_batch_size {{ value: {args.max_batch_size} }}\n"
                         f"batch_timeout_micros {{ value: {args.batch_timeout_micros} }}\n"
                         f"num_batch_threads {{ value: {args.num_batch_threads} }}\n"
                         f"max_enqueued_batches {{ value: 1000 }}\n")
        grpc_port = testing.free_port()
        grpc_threads = args.grpc_max_threads or args.concurrency
        server = flask = None
        try:   # both servers are stopped whatever happens once either was started (a failed start, Ctrl-C)
            server = testing.start_server(base, subprocess=True, enable_batching=True,
                                          batching_parameters_file=batching, grpc_port=grpc_port,
                                          grpc_max_threads=grpc_threads)
            grpc_address = f"127.0.0.1:{grpc_port}"
            flask, flask_url, flask_command = start_flask(model_dir, args.flask_workers, args.flask_threads,
                                                          payload)
            rest_url = f"{server.url}/v1/models/letters:predict"
            load.wrk(rest_url, payload, args.concurrency, 1.0)          # warm-up
            load.wrk(flask_url, payload, args.concurrency, 3.0)      # (and every gunicorn worker has loaded)
            for round_number in range(args.rounds):
                runs["rest"].append(load.wrk(rest_url, payload, args.concurrency, args.duration,
                                             server_pid=server.process.pid))
                runs["grpc"].append(load.grpc_predict_process(grpc_address, "letters", configs.IMAGE_SIGNATURE, image,
                                                              args.concurrency, args.duration,
                                                              server_pid=server.process.pid))
                runs["flask"].append(load.wrk(flask_url, payload, args.concurrency, args.duration,
                                              server_pid=flask.pid))
                runs["in_process"].append(in_process(model_dir, image, args.max_batch_size, args.duration))
                print(f"round {round_number + 1}: REST {runs['rest'][-1].rps:.0f}/s, gRPC {runs['grpc'][-1].rps:.0f}/s, "
                      f"Flask {runs['flask'][-1].rps:.0f}/s, in-process {runs['in_process'][-1]:.0f} images/s",
                      flush=True)
        finally:
            if flask is not None:
                stop(flask)
            if server is not None:
                server.stop()

    median = statistics.median
    rest_rps, flask_rps = median(r.rps for r in runs["rest"]), median(r.rps for r in runs["flask"])
    in_process_ips = median(runs["in_process"])
    rest_p50, grpc_p50 = median(r.p50_ms for r in runs["rest"]), median(r.p50_ms for r in runs["grpc"])
    print(f"embedded REST (batching on, wrk): {load.summary(runs['rest'])}")
    print(f"embedded gRPC (batching on, --grpc_max_threads={grpc_threads}, grpc.aio client process): "
          f"{load.summary(runs['grpc'])}")
    print(f"Flask (gunicorn gthread, {args.flask_workers} workers x {args.flask_threads} threads, wrk): "
          f"{load.summary(runs['flask'])}")
    print(f"in-process batched ({args.max_batch_size}/call): {in_process_ips:.0f} images/s "
          f"(runs: {', '.join(f'{r:.0f}' for r in runs['in_process'])})")
    print(f"ratio embedded REST / Flask requests/s: {verdict(rest_rps / flask_rps, TARGETS['rest_vs_flask'])}")
    print(f"ratio served images/s / in-process batched images/s: "
          f"{verdict(rest_rps / in_process_ips, TARGETS['served_vs_in_process'])}")
    print(f"ratio gRPC p50 / REST p50: {grpc_p50:.2f} ms / {rest_p50:.2f} ms = "
          f"{verdict(grpc_p50 / rest_p50, TARGETS['grpc_p50_vs_rest_p50'], higher_is_better=False)}")
    print(f"load average after the run: {os.getloadavg()[0]:.1f} (other jobs share the machine: numbers are noisy)")
    print(f"Flask peer: {flask_command}")
    if note:
        print(note)
    print(f"reproduce: cd {configs.PROJECT_ROOT} && {reproduce.command('bench.serving_bench', argv, python=sys.executable)}")
    errors = sum(r.errors for rs in (runs["rest"], runs["grpc"], runs["flask"]) for r in rs)
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
