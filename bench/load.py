"""Load generation for the benches: Debian's ``wrk`` (C, one thread, keep-alive connections) POSTing one body, with
its latency percentiles and its own CPU use, so a report can show the load generator was not the bottleneck."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time

_SCRIPT = """
local file = io.open("%(body)s", "rb")
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, '
    .. '"non2xx": %%d, "socket_errors": %%d}\\n', summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
"""


@dataclasses.dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    client_cpu_share: float          # the load generator's CPU seconds / (wall seconds x CPUs)
    server_cpu_per_request_us: float | None = None



def whole_seconds(text: str) -> int:
    """argparse type of a load's duration: wrk's ``-d`` takes whole seconds only (2.5 stops it with its usage)."""
    try:
        seconds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number of seconds, got {text!r}") from None
    if seconds < 1:
        raise argparse.ArgumentTypeError(f"at least 1 second, got {seconds}")
    return seconds

def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (Debian's package; run as root)")
    return path


def _cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    import psutil

    process = psutil.Process(pid)
    return sum(sum(child.cpu_times()[:2]) for child in [process] + process.children(recursive=True))


def wrk(url: str, body: bytes, connections: int, duration: float, server_pid: int | None = None) -> Result:
    """POSTs ``body`` to ``url`` over ``connections`` keep-alive connections for ``duration`` seconds."""
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        body_path = os.path.join(tmp, "body")
        with open(body_path, "wb") as handle:
            handle.write(body)
        script = os.path.join(tmp, "post.lua")
        with open(script, "w") as handle:
            handle.write(_SCRIPT % {"body": body_path})
        before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
        before_server = _cpu_seconds(server_pid)
        started = time.perf_counter()
        completed = subprocess.run([require_wrk(), "-t1", f"-c{connections}", f"-d{max(duration, 1):g}s", "--timeout",
                                    "30s", "-s", script, url], capture_output=True, text=True, check=True)
        wall = time.perf_counter() - started
        server_cpu = _cpu_seconds(server_pid) - before_server
        after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((line for line in completed.stdout.splitlines() if line.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{completed.stdout}\n{completed.stderr}")
    stats = json.loads(line[len("RESULT "):])
    client_cpu = (after_children.ru_utime - before_children.ru_utime) + (after_children.ru_stime - before_children.ru_stime)
    requests = max(stats["requests"], 1)
    return Result(rps=stats["requests"] / (stats["duration_us"] / 1e6), p50_ms=stats["p50_us"] / 1e3,
                  p99_ms=stats["p99_us"] / 1e3, errors=stats["non2xx"] + stats["socket_errors"],
                  client_cpu_share=client_cpu / (wall * (os.cpu_count() or 1)),
                  server_cpu_per_request_us=server_cpu / requests * 1e6 if server_pid else None)


def summary(runs: list[Result]) -> str:
    """Medians of repeated runs (and the spread of requests/s)."""
    rps = [run.rps for run in runs]
    text = (f"{statistics.median(rps):.0f} requests/s (runs: {', '.join(f'{r:.0f}' for r in rps)}), "
            f"p50 {statistics.median(r.p50_ms for r in runs):.2f} ms, p99 {statistics.median(r.p99_ms for r in runs):.2f} ms, "
            f"{sum(r.errors for r in runs)} errors, load generator CPU "
            f"{statistics.median(r.client_cpu_share for r in runs):.0%} of the machine")
    if runs[0].server_cpu_per_request_us is not None:
        text += f", server CPU {statistics.median(r.server_cpu_per_request_us for r in runs):.0f} µs/request"
    return text


def grpc_predict(address: str, model_name: str, signature: str, image: bytes, concurrency: int,
                 duration: float) -> Result:
    """``concurrency`` Predict calls in flight on one channel (grpc.aio, the official stubs) for ``duration`` s.

    Run it in its own process (:func:`in_subprocess`): its CPU share is then the load generator's alone."""
    import asyncio

    import grpc
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = model_name, signature
    request.inputs["images"].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING, string_val=[image],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)])))
    latencies, errors = [], [0]

    async def run():
        async with grpc.aio.insecure_channel(address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            await stub.Predict(request, timeout=30)
            end = time.perf_counter() + duration

            async def worker():
                while time.perf_counter() < end:
                    started = time.perf_counter()
                    try:
                        await stub.Predict(request, timeout=30)
                    except grpc.aio.AioRpcError:
                        errors[0] += 1
                        continue
                    latencies.append(time.perf_counter() - started)

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    cpu, started = time.process_time(), time.perf_counter()
    asyncio.run(run())
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    latencies.sort()
    return Result(rps=len(latencies) / wall, p50_ms=statistics.median(latencies) * 1e3,
                  p99_ms=latencies[int(0.99 * (len(latencies) - 1))] * 1e3, errors=errors[0],
                  client_cpu_share=cpu / (wall * (os.cpu_count() or 1)))


def grpc_predict_process(address: str, model_name: str, signature: str, image: bytes, concurrency: int,
                         duration: float, server_pid: int | None = None) -> Result:
    """:func:`grpc_predict` in a process of its own, with the server's CPU per call when ``server_pid`` is given
    (the server's CPU while the client ran, over the calls measured)."""
    before = _cpu_seconds(server_pid)
    result = in_subprocess(grpc_predict, address, model_name, signature, image, concurrency, duration)
    if server_pid is not None:
        calls = max(result.rps * duration, 1)
        result.server_cpu_per_request_us = (_cpu_seconds(server_pid) - before) / calls * 1e6
    return result


def in_subprocess(function, *args):
    """``function(*args)`` in a fresh (spawned) process; its result."""
    import concurrent.futures
    import multiprocessing

    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()
