"""Dynamic batching (measured through the batcher's metrics) and graceful shutdown."""
import asyncio
import concurrent.futures
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from core import configs
from serving.batching import BatchOutputs, BatchScheduler
from serving.config import Batching, load_batching_parameters
from serving.status import ServingError
from tests.support import serving as testing
from tests.support.serving import b64


def batching_file(tmp_path, max_batch_size, timeout_micros):
    path = tmp_path / "batching.config"
    path.write_text(f"max_batch_size {{ value: {max_batch_size} }}\nbatch_timeout_micros {{ value: {timeout_micros} }}\n"
                    "num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 100 }\n")
    return str(path)


@contextlib.contextmanager
def batching_client(tmp_path, max_batch_size, timeout_micros):
    """A client of a server with one published version and batching on."""
    base = str(tmp_path / "letters")
    testing.publish_version(base, 1)
    with testing.start_server(base, enable_batching=True,
                              batching_parameters_file=batching_file(tmp_path, max_batch_size,
                                                                     timeout_micros)) as server:
        yield testing.RestClient(server.url)


def test_concurrent_requests_are_batched(tmp_path):
    base = str(tmp_path / "letters")
    testing.publish_version(base, 1)
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }\n")
    with testing.start_server(base, enable_batching=True, batching_parameters_file=batching_file(tmp_path, 8, 20000),
                              monitoring_config_file=str(monitoring)) as server:
        client = testing.RestClient(server.url)
        body = {"signature_name": configs.IMAGE_SIGNATURE, "instances": [b64(testing.png_bytes(7))]}
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda _: client.post("/v1/models/letters:predict", body), range(32)))
        assert all(status == 200 for status, _ in results)
        metrics = client.request("GET", "/monitoring/prometheus/metrics")[2].decode()
        # the BatchingSession's metrics (batching_session.cc), which carry no model name
        session = ":tensorflow:serving:batching_session"
        batches = int(re.search(rf"{session}:processed_batch_size_count{{}} (\d+)", metrics).group(1))
        rows = float(re.search(rf"{session}:processed_batch_size_sum{{}} (\S+)", metrics).group(1))
        assert rows >= 32 and batches < 32, metrics   # requests shared batches (padded to allowed sizes)
        assert f"{session}:wrapped_run_count{{}} {batches}\n" in metrics
        assert f"{session}:input_batch_size_count{{}} 32\n" in metrics and f"{session}:input_batch_size_sum{{}} 32\n" in metrics
        assert f'{session}:queuing_latency_count{{thread_pool_name=""}} 32\n' in metrics
        padding = sum(float(value) for value in re.findall(
            rf'{session}:padding_size_sum{{execution_batch_size="\d+"}} (\S+)', metrics))
        assert padding == rows - 32
        big = {"signature_name": configs.IMAGE_SIGNATURE, "instances": [b64(testing.png_bytes())] * 9}
        assert client.post("/v1/models/letters:predict", big) == (
            400, {"error": "Task size 9 is larger than maximum input batch size 8"})


def test_batch_mates_get_their_own_rows(tmp_path):
    """Each request's answer is its own rows of the batch (formatted once per batch), as when it ran alone."""
    with batching_client(tmp_path, 16, 100_000) as client:

        def call(i, columnar=False):
            images = [b64(testing.png_bytes(i * 30))] * (1 + i % 2)
            key = "inputs" if columnar else "instances"
            return client.post("/v1/models/letters:predict", {"signature_name": configs.IMAGE_SIGNATURE, key: images})

        alone = [call(i) for i in range(8)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            together = list(pool.map(call, range(8)))
            columnar = list(pool.map(lambda i: call(i, columnar=True), range(8)))
        for (status, batched), (_, single) in zip(together, alone):   # batched math may differ in the last bit
            assert status == 200 and len(batched["predictions"]) == len(single["predictions"])
            for got, want in zip(batched["predictions"], single["predictions"]):
                assert got["top_indices"] == want["top_indices"] and got["top_letters"] == want["top_letters"]
                assert got["probabilities"] == pytest.approx(want["probabilities"], rel=1e-5)
        assert len({str(answer) for _, answer in alone}) == 8
        for (_, rows), (status, columns) in zip(alone, columnar):
            assert status == 200
            assert [row["top_classes"] for row in rows["predictions"]] == columns["outputs"]["top_classes"]


def test_tasks_of_an_event_loop_are_completed_together_and_share_batch_work():
    scheduler = BatchScheduler(Batching(max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=1))
    batcher = scheduler.batcher(lambda arrays: {"y": arrays["x"] * 2})
    computed = []

    def rows(outputs):
        computed.append(len(outputs["y"]))
        return [f"row {value}" for value in outputs["y"].tolist()]

    async def main():
        loop = asyncio.get_running_loop()
        wakeups = []
        call_soon_threadsafe = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda *args: wakeups.append(args) or call_soon_threadsafe(*args)
        futures = [batcher.submit({"x": np.array([i, i + 10][:size])}, loop=loop) for i, size in enumerate((1, 2, 1))]
        results = await asyncio.gather(*futures)
        return results, len(wakeups)

    try:
        results, wakeups = asyncio.run(main())
    finally:
        scheduler.stop()
    assert wakeups == 1
    assert all(isinstance(result, BatchOutputs) for result in results)
    assert [result["y"].tolist() for result in results] == [[0], [2, 22], [4]]
    assert [result.shared(rows) for result in results] == [["row 0"], ["row 2", "row 22"], ["row 4"]]
    assert computed == [4]


def full_queue(batches: int, limit: int) -> str:
    """The pattern of SharedBatchScheduler's refusal of a task (Queue::ValidateBatchTaskQueueCapacity)."""
    return re.escape(f"The batch scheduling queue to which this task was submitted is full; currently {batches} "
                     f"batches enqueued and max_enqueued_batches is {limit}") + "$"


@contextlib.contextmanager
def busy_batcher(**settings):
    """A batcher of one batch thread kept busy by a first batch of 4 rows; yields (batcher, release, runs): release
    lets the runs go on, runs lists the rows of each batch run."""
    running, release, runs = threading.Event(), threading.Event(), []

    def run(arrays):
        runs.append(len(arrays["x"]))
        running.set()
        release.wait(30)
        return {"y": arrays["x"] * 2}

    scheduler = BatchScheduler(Batching(max_batch_size=4, num_batch_threads=1, **settings))
    batcher = scheduler.batcher(run)
    try:
        busy = batcher.submit({"x": np.arange(4)})
        assert running.wait(30)
        yield batcher, release, runs
        release.set()
        assert busy.result(30)["y"].tolist() == [0, 2, 4, 6]
    finally:
        release.set()
        scheduler.stop()


def test_the_queue_holds_max_enqueued_batches_batches_packed_in_arrival_order_as_in_tensorflow():
    """SharedBatchScheduler packs tasks into batches as they arrive (one that does not fit the open batch starts a
    new one) and refuses a task that needs a new batch when max_enqueued_batches are queued: 3, 3, 1 make the
    batches [3] and [3, 1], and another 1 is refused, in TF's words (the batches queued and the limit). The queue had
    held max_enqueued_batches x max_batch_size rows (8): all four were queued."""
    with busy_batcher(max_enqueued_batches=2, batch_timeout_micros=10_000_000) as (batcher, release, runs):
        queued = [batcher.submit({"x": np.arange(size)}) for size in (3, 3, 1)]
        with pytest.raises(ServingError, match=full_queue(2, 2)):
            batcher.submit({"x": np.array([9])})
        release.set()
        assert [future.result(30)["y"].tolist() for future in queued] == [[0, 2, 4], [0, 2, 4], [0]]
    assert runs == [4, 3, 4]


def test_max_enqueued_batches_0_holds_one_batch_as_in_tensorflow():
    """SharedBatchScheduler's AddQueue takes max_enqueued_batches 0 as 1 (models with very low QPS rely on it): a
    request is served, and while the thread is busy the queue holds one full batch (the refusal says 1, as TF's
    does). Every task had been refused as a full queue, which had said no more than "is full"."""
    with busy_batcher(max_enqueued_batches=0) as (batcher, release, _):
        queued = batcher.submit({"x": np.arange(4)})
        with pytest.raises(ServingError, match=full_queue(1, 1)):
            batcher.submit({"x": np.array([9])})
        release.set()
        assert queued.result(30)["y"].tolist() == [0, 2, 4, 6]


def test_stop_waits_for_busy_batch_threads_once_in_all_not_once_each(caplog):
    """Three threads each running a batch that does not end: stop() returns after its wait, with a warning, where
    it had waited that long for each thread in turn."""
    running, release = threading.Semaphore(0), threading.Event()

    def run(arrays):
        running.release()
        release.wait(60)
        return {"y": arrays["x"]}

    scheduler = BatchScheduler(Batching(max_batch_size=1, num_batch_threads=3))
    batcher = scheduler.batcher(run)
    try:
        futures = [batcher.submit({"x": np.array([i])}) for i in range(3)]
        for _ in range(3):
            assert running.acquire(timeout=30)
        started = time.monotonic()
        scheduler.stop(seconds=2.0)
        assert time.monotonic() - started < 4.5   # (three waits of 2 s each had taken 6)
        assert "3 batch thread(s) still running a batch 2 s after the stop" in caplog.text
    finally:
        release.set()
    assert [future.result(30)["y"].tolist() for future in futures] == [[0], [1], [2]]   # left to finish


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")   # a batch thread's failure
@pytest.mark.parametrize("timeout_micros", [2 ** 63 - 1, 9_300_000_000_000_000])
def test_a_batch_timeout_past_what_a_thread_can_wait_holds_a_partial_batch_until_it_fills_as_in_tensorflow(
        timeout_micros):
    """SharedBatchScheduler sends a partial batch once NowMicros() >= its start + batch_timeout_micros, never true
    for INT64_MAX (a uint64 sum of it and the epoch's microseconds does not wrap): a batch goes when full, or when
    the server stops. Such a timeout (from about 9.2e15 µs, past threading.TIMEOUT_MAX) had raised OverflowError in
    the batch thread, which ended: every request, and a warm-up at start, waited for ever."""
    scheduler = BatchScheduler(Batching(max_batch_size=2, batch_timeout_micros=timeout_micros, num_batch_threads=1))
    batcher = scheduler.batcher(lambda arrays: {"y": arrays["x"] * 2})
    try:
        first = batcher.submit({"x": np.array([1])})
        time.sleep(0.2)
        assert not first.done()
        second = batcher.submit({"x": np.array([2])})
        assert (first.result(10)["y"].tolist(), second.result(10)["y"].tolist()) == ([2], [4])
        partial = batcher.submit({"x": np.array([3])})
        time.sleep(0.2)
        assert not partial.done()
        scheduler.drain()                  # (a stop runs it at once)
        assert partial.result(10)["y"].tolist() == [6]
    finally:
        scheduler.stop(seconds=5)
    assert not any(thread.is_alive() for thread in scheduler._threads)


@pytest.mark.parametrize("text, error", [
    ("num_batch_threads { value: 0 }", "num_batch_threads must be positive; was 0"),
    ("num_batch_threads { value: -1 }", "num_batch_threads must be positive; was -1"),
    ("num_batch_threads { value: 4294967296 }", "num_batch_threads must be positive; was 0"),   # an int: 2^32 is 0
    ("num_batch_threads { value: 2147483648 }", "num_batch_threads must be positive; was -2147483648"),
    ("max_batch_size { value: 4294967295 } allowed_batch_sizes: 5",   # checked as ints: 2^32 - 1 is -1
     "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 5; expected -1"),
    ("max_batch_size { value: 8 } allowed_batch_sizes: 4294967296",
     "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 0; expected 8"),
    ("batch_timeout_micros { value: -5 }", "batch_timeout_micros must be non-negative; was -5"),
    ("max_batch_size { value: 0 }", "input_batch_size_limit must be positive; was 0"),
    ("max_batch_size { value: 4 } allowed_batch_sizes: [2, 3]",
     "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 3; expected 4"),
    ("allowed_batch_sizes: 8", "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 8; "
                               "expected 1000"),
    ("enable_large_batch_splitting { value: true }", "enable_large_batch_splitting is not supported by this server, "
     "which never splits a request across batches: leave it out or set it false (every batch then holds at most "
     "max_batch_size rows, and max_execution_batch_size is not used, as in TF Serving)")])
def test_batching_parameters_tensorflow_refuses_stop_the_server_at_start(tmp_path, text, error):
    """SharedBatchScheduler and WrapSessionForBatching refuse them, in TF Serving 2.16's words, and this server does
    not split requests across batches. 0 threads had meant one per CPU, -1 none at all (every request and warm-up
    waited for ever, and SIGTERM could not stop the server); max_batch_size 0 and a last allowed batch size other
    than max_batch_size had been refused in words of their own, and enable_large_batch_splitting as an unknown
    field."""
    base = str(tmp_path / "letters")
    testing.publish_version(base, 1)
    parameters = tmp_path / "batching.config"
    parameters.write_text(text + "\n")
    with pytest.raises(ServingError, match=f"^{re.escape(error)}$") as caught:
        testing.start_server(base, enable_batching=True, batching_parameters_file=str(parameters))
    assert caught.value.code == "INVALID_ARGUMENT"   # TF Serving's code for each (they had no code)


def test_batching_parameters_tensorflow_accepts_are_served_as_there(tmp_path):
    """TF Serving 2.16.1 takes these: only the last allowed batch size is checked (4, 2, 4; a batch of 3, and one of
    2, is padded to the first size that holds it, 4), a negative max_enqueued_batches is a size_t too large to reach (many
    batches queue), and max_execution_batch_size goes unread without enable_large_batch_splitting (false). They had
    been refused: the sizes as not increasing, -1 as a negative count, fields 8 and 9 as unknown."""
    parameters = tmp_path / "batching.config"
    parameters.write_text("max_batch_size { value: 4 }\nallowed_batch_sizes: [4, 2, 4]\n"
                          "max_enqueued_batches { value: -1 }\nenable_large_batch_splitting { value: false }\n"
                          "max_execution_batch_size { value: 2 }\n")
    assert load_batching_parameters(str(parameters)) == Batching(
        max_batch_size=4, allowed_batch_sizes=(4, 2, 4), max_enqueued_batches=-1, max_execution_batch_size=2)
    with busy_batcher(allowed_batch_sizes=(4, 2, 4), max_enqueued_batches=-1,
                      batch_timeout_micros=0) as (batcher, release, runs):   # (the busy thread holds them queued)
        queued = [batcher.submit({"x": np.arange(size)}) for size in (3, 3, 3, 3, 3, 2)]
        release.set()
        assert [future.result(30)["y"].tolist() for future in queued] == [[0, 2, 4]] * 5 + [[0, 2]]
    assert runs == [4] * 7


def test_int64_batching_fields_tensorflow_stores_in_an_int_are_taken_as_their_low_32_bits(tmp_path):
    """CreateBatchScheduler stores num_batch_threads in an int, WrapSessionForBatching the allowed batch sizes (and
    max_batch_size, for their check alone): 2^32 + 3 threads are 3; allowed sizes 2^32 + 2 and 2^32 + 8 are 2 and
    8, which max_batch_size 2^32 + 8 matches, its queue's limit staying 2^32 + 8 (a size_t). A count past an int
    had been taken whole: 2^32 threads were made one by one and the server never started."""
    parameters = tmp_path / "batching.config"
    parameters.write_text("num_batch_threads { value: 4294967299 }\nmax_batch_size { value: 4294967304 }\n"
                          "allowed_batch_sizes: [4294967298, 4294967304]\n")
    batching = load_batching_parameters(str(parameters))
    assert (batching.threads, batching.allowed_batch_sizes) == (3, (2, 8))
    assert batching.input_batch_size_limit == 2 ** 32 + 8


def test_sigterm_while_the_batch_threads_start_stops_the_server(tmp_path):
    """num_batch_threads INT32_MAX, which TF Serving takes: SIGTERM while the threads are being started ends the
    server at once (exit 0, Received SIGTERM). The threads had been made first, all of them, in the main thread:
    its memory grew, SIGTERM was not answered and the server never started."""
    base = str(tmp_path / "letters")
    testing.publish_version(base, 1)
    parameters = tmp_path / "batching.config"
    parameters.write_text("num_batch_threads { value: 2147483647 }\n")
    log = tmp_path / "serving.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving", f"--model_base_path={base}", "--model_name=letters", "--port=0",
             "--rest_api_port=0", "--enable_batching=true", f"--batching_parameters_file={parameters}"],
            stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=str(configs.PROJECT_ROOT))
    try:
        deadline = time.monotonic() + 120
        while _threads_of(process.pid) < 50 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Received SIGTERM" in log.read_text()


def _threads_of(pid: int) -> int:
    """The threads process ``pid`` runs (Linux's /proc), 0 once it is gone."""
    try:
        status = open(f"/proc/{pid}/status").read()
    except OSError:
        return 0
    return int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))


def test_unset_num_batch_threads_is_one_per_cpu_as_in_tensorflow(monkeypatch, tmp_path):
    """SharedBatchScheduler's default (port::MaxParallelism) when the file does not set the field: the CPUs this
    process may run on (its affinity, e.g. a container's cpuset), not every CPU of the host, which it had counted;
    so do the REST and gRPC thread defaults, 4 x port::NumSchedulableCPUs (server.h)."""
    from serving import config as config_lib
    from serving.grpcserver import GrpcServer
    from serving.protos import BatchingParameters
    from serving.server import Server

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    assert Batching.from_proto(BatchingParameters()).threads == 3
    assert Batching.from_proto(BatchingParameters(num_batch_threads={"value": 3})).threads == 3
    assert GrpcServer(None, "127.0.0.1", 0).max_threads == 12
    server = Server(config_lib.ServerOptions(model_name="letters", model_base_path=str(tmp_path)))
    try:
        assert server.executor._max_workers == server.handlers._max_workers == 12
    finally:
        server.executor.shutdown()
        server.handlers.shutdown()
    monkeypatch.delattr(os, "sched_getaffinity")            # a platform without affinity masks
    assert Batching.from_proto(BatchingParameters()).threads == 16


def test_a_rest_request_whose_deadline_passes_in_the_batch_queue_is_429_when_its_batch_is_taken(tmp_path):
    """As TF Serving's BatchingSession (ProcessBatch) answers a request whose RunOptions timeout
    (--rest_api_timeout_in_ms) passed while it was queued: it had been cut 504 Deadline Exceeded at its deadline."""
    base = str(tmp_path / "letters")
    testing.publish_version(base, 1)
    with testing.start_server(base, enable_batching=True, rest_api_timeout_in_ms=200,
                              batching_parameters_file=batching_file(tmp_path, 64, 1_000_000)) as server:
        body = {"signature_name": configs.IMAGE_SIGNATURE, "instances": [b64(testing.png_bytes())]}
        assert testing.RestClient(server.url).post("/v1/models/letters:predict", body) == (
            429, {"error": "Run() timeout exceeded while waiting in batching queue"})


def test_a_batch_runs_when_one_of_its_tasks_is_within_its_deadline_and_ends_at_the_latest():
    """BatchingSession::ProcessBatch: a batch taken after the deadlines of all its tasks fails them
    RESOURCE_EXHAUSTED, unrun; one task within its deadline runs the whole batch, the expired tasks answered too;
    a run past the latest deadline of its tasks fails those awaited in a loop DEADLINE_EXCEEDED then."""
    started, gate, runs = threading.Event(), threading.Event(), []

    def run(arrays):
        runs.append(arrays["x"].tolist())
        started.set()
        gate.wait(30)
        return {"y": arrays["x"] * 2}

    scheduler = BatchScheduler(Batching(max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1))
    batcher = scheduler.batcher(run)

    def behind_a_busy_batch(timeouts):
        """Futures of tasks queued while the thread runs a batch, taken together once their short deadlines passed."""
        started.clear()
        gate.clear()
        busy = batcher.submit({"x": np.array([0])})
        assert started.wait(30)
        futures = [batcher.submit({"x": np.array([i])}, timeout=timeout) for i, timeout in enumerate(timeouts, 1)]
        time.sleep(0.05)    # past the deadlines of 0.01 s
        gate.set()
        busy.result(30)
        return futures

    try:
        for future in behind_a_busy_batch([0.01, 0.01]):
            with pytest.raises(ServingError) as caught:
                future.result(30)
            assert (caught.value.code, caught.value.message) == (
                "RESOURCE_EXHAUSTED", "Run() timeout exceeded while waiting in batching queue")
        assert [future.result(30)["y"].tolist() for future in behind_a_busy_batch([0.01, 60])] == [[2], [4]]
        assert runs == [[0], [0], [1, 2]]

        async def past_its_deadline():
            gate.clear()
            future = batcher.submit({"x": np.array([5])}, loop=asyncio.get_running_loop(), timeout=0.1)
            try:
                await future
            finally:
                gate.set()

        with pytest.raises(ServingError) as caught:
            asyncio.run(past_its_deadline())
        assert (caught.value.code, caught.value.message) == ("DEADLINE_EXCEEDED", "Deadline Exceeded")
    finally:
        gate.set()
        scheduler.stop()


def test_a_bad_request_does_not_fail_its_batch_mates(tmp_path):
    with batching_client(tmp_path, 16, 200_000) as client:

        def call(i):
            image = b"not an image" if i == 3 else testing.png_bytes(i)
            return client.post("/v1/models/letters:predict",
                               {"signature_name": configs.IMAGE_SIGNATURE, "instances": [b64(image)]})

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(call, range(8)))
        assert [status for status, _ in results] == [200, 200, 200, 400, 200, 200, 200, 200]
        assert results[3][1]["error"]


def test_inputs_without_a_common_batch_size_are_refused_as_a_batching_session_refuses_them(tmp_path):
    """TF Serving's batching session computes every request's batch size before queuing it (batching_util.h,
    ComputeTensorBatchSize): a scalar input, or inputs whose 0th dimensions differ, are refused. They had run
    alone: a model error (or, for two scalars, an answer)."""
    import tensorflow as tf

    class Two(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec(None, tf.float32, name="a"),
                                      tf.TensorSpec(None, tf.float32, name="b")])
        def add(self, a, b):
            return {"sum": a + b}

    tf.saved_model.save(Two(), str(tmp_path / "two" / "1"), signatures={"serving_default": Two().add})
    with testing.start_server(str(tmp_path / "two"), "two", enable_batching=True,
                              batching_parameters_file=batching_file(tmp_path, 16, 1000)) as server:
        client = testing.RestClient(server.url)
        for inputs, error in (({"a": 1.0, "b": 2.0}, "must have at least one dimension"),
                              ({"a": [1.0, 2.0], "b": [3.0, 4.0, 5.0]}, "must have equal 0th-dimension size")):
            assert client.post("/v1/models/two:predict", {"inputs": inputs}) == (
                400, {"error": f"Batching Run() input tensors {error}"})
        assert client.post("/v1/models/two:predict", {"inputs": {"a": [1.0, 2.0], "b": [3.0, 4.0]}}) == (200, {"outputs": [4.0, 6.0]})
    with batching_client(tmp_path, 16, 1000) as client:   # the letters model: one scalar image
        assert client.post("/v1/models/letters:predict", {"signature_name": configs.IMAGE_SIGNATURE,
                                                          "inputs": b64(testing.png_bytes())}) == (
            400, {"error": "Batching Run() input tensors must have at least one dimension"})



def test_a_scalar_output_is_refused_as_the_batching_session_splits_outputs(tmp_path):
    """batching_session.cc's SplitOutputTensors refuses an output of no dimensions before comparing 0th
    dimensions, FAILED_PRECONDITION in words of its own; a 0th dimension other than the batch's is the other."""
    testing.save_shapes(str(tmp_path / "shapes" / "1"))
    with testing.start_server(str(tmp_path / "shapes"), "shapes", enable_batching=True,
                              batching_parameters_file=batching_file(tmp_path, 16, 1000)) as server:
        client = testing.RestClient(server.url)
        for signature in ("onlyscal", "scal"):
            assert client.post("/v1/models/shapes:predict", {"signature_name": signature, "instances": [1.0, 2.0]}) == (
                400, {"error": "Batched output tensor has 0 dimensions"})
        assert client.post("/v1/models/shapes:predict", {"signature_name": "echo_s", "inputs": [["a", "b"]]}) == (
            200, {"outputs": {"y": [["a", "b"]], "y_bytes": [[{"b64": "YQ=="}, {"b64": "Yg=="}]]}})


def test_a_request_of_zero_rows_goes_through_the_batch_queue_as_any_other(tmp_path):
    """TF Serving's batching session queues every request, one of zero rows too (ComputeTensorBatchSize takes 0,
    and a batch holding it is not empty): its scalar output is refused as SplitOutputTensors refuses it, over gRPC
    and REST alike, and its 0 rows are recorded in input_batch_size. It had skipped the queue, run alone and
    answered the scalar 0.0 (input_batch_size not recording it)."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    testing.save_shapes(str(tmp_path / "shapes" / "1"))
    server = testing.start_grpc_server(model_base_path=str(tmp_path / "shapes"), model_name="shapes",
                                       enable_batching=True, batching_parameters_file=batching_file(tmp_path, 16, 1000))

    def predict(signature, value, dtype):
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.signature_name = "shapes", signature
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(value, dtype, shape=[len(value)]))
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)

    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as channel:
            with pytest.raises(grpc.RpcError) as caught:
                predict("onlyscal", [], tf.float32)
            assert (caught.value.code(), caught.value.details()) == (
                grpc.StatusCode.FAILED_PRECONDITION, "Batched output tensor has 0 dimensions")
            response = predict("echo_s", [], tf.string)
            assert [dim.size for dim in response.outputs["y"].tensor_shape.dim] == [0]
        assert testing.RestClient(server.url).post("/v1/models/shapes:predict", {
            "signature_name": "onlyscal", "inputs": {"x": []}}) == (400, {
                "error": "Batched output tensor has 0 dimensions"})
        sizes = server.server.metrics.input_batch_size[()]
        assert (sizes.count, sizes.sum, sizes.counts[0]) == (3, 0, 3)   # le="1": below 1 row
    finally:
        server.stop()


def test_a_task_of_zero_rows_shares_a_batch_and_padding_copies_a_row_of_a_task_with_rows():
    """A zero-row task joins the open batch and gets its zero rows; padding to an allowed batch size copies a row
    of the last task with rows (TF Serving's copies the last task's, and aborts when it has
    none); a batch of zero-row tasks alone is run unpadded."""
    runs = []

    def run(arrays):
        runs.append(arrays["x"].tolist())
        return {"y": arrays["x"] * 2}

    scheduler = BatchScheduler(Batching(max_batch_size=4, allowed_batch_sizes=(2, 4), batch_timeout_micros=100_000,
                                        num_batch_threads=1))
    batcher = scheduler.batcher(run)
    empty = np.zeros([0], np.int64)
    try:
        futures = [batcher.submit({"x": x}) for x in (np.array([5]), empty, np.array([7, 8]), empty)]
        assert [future.result(30)["y"].tolist() for future in futures] == [[10], [], [14, 16], []]
        assert [future.result(30)["y"].tolist() for future in [batcher.submit({"x": empty}) for _ in range(2)]] \
            == [[], []]
        futures = [batcher.submit({"x": x}) for x in (np.array([3]), empty)]
        assert [future.result(30)["y"].tolist() for future in futures] == [[6], []]
    finally:
        scheduler.stop()
    assert runs == [[5, 7, 8, 7], [], [3, 3]]


def test_an_output_filter_splits_only_the_outputs_it_asks_for_as_the_batching_session_does(tmp_path):
    """TF Serving's Predict runs only the outputs of its output_filter (predict_util.cc), and its batching session
    queues a run by its inputs and those outputs (TensorSignature), splitting and checking only them: an output it
    did not ask for that has no batch dimension does not fail it. It had failed FAILED_PRECONDITION Batched output
    tensor has 0 dimensions (the queue was the signature's, every output run and checked). Without a filter (and
    over REST, which has none) every output is still split, the scalar refused."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    testing.save_shapes(str(tmp_path / "shapes" / "1"))
    server = testing.start_grpc_server(model_base_path=str(tmp_path / "shapes"), model_name="shapes",
                                       enable_batching=True, batching_parameters_file=batching_file(tmp_path, 16, 1000))

    def predict(output_filter):
        request = predict_pb2.PredictRequest(output_filter=output_filter)
        request.model_spec.name, request.model_spec.signature_name = "shapes", "scal"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0, 2.0], tf.float32))
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)

    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as channel:
            response = predict(["y"])
            assert list(response.outputs) == ["y"] and tf.make_ndarray(response.outputs["y"]).tolist() == [1.0, 2.0]
            for output_filter in (["total"], ["y", "total"], []):
                with pytest.raises(grpc.RpcError) as caught:
                    predict(output_filter)
                assert (caught.value.code(), caught.value.details()) == (
                    grpc.StatusCode.FAILED_PRECONDITION, "Batched output tensor has 0 dimensions")
        assert testing.RestClient(server.url).post("/v1/models/shapes:predict", {
            "signature_name": "scal", "instances": [1.0, 2.0]}) == (400, {
                "error": "Batched output tensor has 0 dimensions"})
    finally:
        server.stop()

def test_a_stop_runs_the_queued_batches_at_once(tmp_path):
    """The batch scheduler stops as soon as the listeners refuse new requests: a REST request and a gRPC call
    waiting for a batch timeout longer than the stop's grace period are answered (they had waited out the grace
    period, then ended 504 Deadline Exceeded and UNAVAILABLE)."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    base = str(tmp_path / "letters")
    testing.publish_version(base, 1)
    server = testing.start_grpc_server(model_base_path=base, enable_batching=True, rest_api_timeout_in_ms=5000,
                                       batching_parameters_file=batching_file(tmp_path, 8, 600_000_000))
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "letters", configs.IMAGE_SIGNATURE
    request.inputs["images"].CopyFrom(tf.make_tensor_proto([testing.png_bytes()]))
    body = {"signature_name": configs.IMAGE_SIGNATURE, "instances": [b64(testing.png_bytes())]}
    with grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as channel, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            rest = pool.submit(testing.RestClient(server.url).post, "/v1/models/letters:predict", body)
            call = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict.future(request, timeout=60)
            queued = ":tensorflow:serving:batching_session:input_batch_size_count{} 2\n"
            while queued not in server.server.metrics.render():
                assert not rest.done() and not call.done()
                time.sleep(0.02)
        finally:
            server.stop()
        assert rest.result()[0] == 200 and call.result().outputs


def test_a_request_still_being_received_when_the_stop_begins_is_batched_and_answered(tmp_path):
    """A request whose body arrives after the stop began (in flight, its connection taken before) is queued and run
    at once: the stop had refused it 503 Batch scheduler is shutting down, as the scheduler stopped taking tasks
    as soon as the listeners refused new connections."""
    import json
    import socket
    import threading

    base = str(tmp_path / "letters")
    testing.publish_version(base, 1)
    server = testing.start_server(base, enable_batching=True,
                                  batching_parameters_file=batching_file(tmp_path, 8, 600_000_000))
    body = json.dumps({"signature_name": configs.IMAGE_SIGNATURE, "instances": [b64(testing.png_bytes())]}).encode()
    host, port = server.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /v1/models/letters:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:10])
        time.sleep(0.3)                                   # (the head read: the request is in flight)
        stopping = threading.Thread(target=server.stop)
        stopping.start()
        time.sleep(0.5)
        sock.sendall(body[10:])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    stopping.join(60)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b'"predictions"' in answer


def test_sigterm_finishes_in_flight_requests_then_exits(tmp_path):
    base = str(tmp_path / "letters")
    testing.publish_version(base, 1)
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }\n")
    # A request queued for an 11 s batch timeout: SIGTERM arrives while it is in flight, and it is answered (the stop
    # runs queued batches at once and waits as long as --rest_api_timeout_in_ms lets a request run; a fixed 10 s had
    # cut it with no answer at all).
    server = testing.start_server(base, subprocess=True, enable_batching=True, monitoring_config_file=str(monitoring),
                                  batching_parameters_file=batching_file(tmp_path, 64, 11_000_000),
                                  rest_api_timeout_in_ms=15_000)
    result = {}

    def call():
        result["status"], _, result["body"] = testing.RestClient(server.url, timeout=30).request(
            "POST", "/v1/models/letters:predict",
            {"signature_name": configs.IMAGE_SIGNATURE, "instances": [b64(testing.png_bytes())]})

    thread = threading.Thread(target=call)
    try:
        thread.start()
        client = testing.RestClient(server.url)
        queued = ":tensorflow:serving:batching_session:input_batch_size_count{} 1\n"
        deadline = time.monotonic() + 30
        while queued not in client.request("GET", "/monitoring/prometheus/metrics")[2].decode():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        server.process.send_signal(signal.SIGTERM)
        thread.join(40)
        assert result.get("status") == 200, result
        assert server.process.wait(30) == 0
    finally:
        server.stop()
    assert "Received SIGTERM" in server.log() and "Server stopped" in server.log()
