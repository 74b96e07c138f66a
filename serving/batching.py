"""Dynamic batching of concurrent requests (TF Serving's --enable_batching / BatchingParameters).

One :class:`BatchScheduler` (``num_batch_threads`` threads) serves a queue per (servable, signature, outputs
fetched), as TF Serving's batching session has one per TensorSignature (a Predict's output_filter names its outputs,
and only they are split into each request's rows). As in TensorFlow's SharedBatchScheduler, a queue is a line of
batches formed as tasks arrive: a task joins the last (open) batch, or starts a new one when it does not fit there
(``max_batch_size`` rows; here also when its inputs' inner shapes differ from the batch's, so such tasks never share a
batch). The front batch is processed when a batch follows it, when it is full, or when its first task has waited
``batch_timeout_micros``; with a timeout of 0 a free thread takes whatever is queued, so batches grow exactly as fast
as requests pile up behind a busy thread. ``allowed_batch_sizes`` pads a batch (with copies of a row of its last task
with rows) to the first allowed size that holds it. A request of zero rows is a task like any other, as in TF
Serving's batching session: it joins a batch (even a full one, as it adds no rows), and its outputs are its zero rows
of the batch's, split and checked as any task's. A task larger than ``max_batch_size`` is rejected, and so is a task
that needs a new batch while the queue holds ``max_enqueued_batches`` batches (0 is taken as 1, as
SharedBatchScheduler takes it), as TF Serving's batcher does.
Unlike TF Serving, a batch that fails is re-run task by task, so one bad request (e.g. a corrupt image)
fails alone instead of failing the requests that happened to share its batch.

A task submitted with an asyncio ``loop`` gets an asyncio future; the tasks of one batch waiting in the same loop
are completed by one callback (one wake-up of the loop per batch, not one per request). Each task's result is a
:class:`BatchOutputs`: its rows of the batch's outputs, through which work on the whole batch's outputs (the REST
layer's JSON rows) is done once per batch.
"""
from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time

import numpy as np

from core.deadlines import WATCHDOG, join_all, waitable
from serving.status import ServingError

log = logging.getLogger("serving")

QUEUE_TIMEOUT = "Run() timeout exceeded while waiting in batching queue"   # batching_session.cc ProcessBatch


class _Task:
    __slots__ = ("arrays", "size", "key", "future", "loop", "enqueued", "deadline")

    def __init__(self, arrays: dict, size: int, loop=None, timeout: float | None = None):
        self.arrays = arrays
        self.size = size
        self.key = tuple(sorted((name, array.shape[1:], array.dtype.str) for name, array in arrays.items()))
        self.loop = loop
        self.future = concurrent.futures.Future() if loop is None else loop.create_future()
        self.enqueued = time.monotonic()
        self.deadline = None if timeout is None else self.enqueued + timeout   # its run's (RunOptions.timeout_in_ms)


class _Forming:
    """A batch of a queue, formed as its tasks arrive."""
    __slots__ = ("tasks", "size", "key")

    def __init__(self, task: _Task):
        self.tasks, self.size, self.key = [task], task.size, task.key

    def holds(self, task: _Task, limit: int) -> bool:
        """Whether ``task`` fits in this batch of at most ``limit`` rows."""
        return task.key == self.key and self.size + task.size <= limit

    def add(self, task: _Task) -> None:
        self.tasks.append(task)
        self.size += task.size


class _Batch:
    __slots__ = ("outputs", "shared")

    def __init__(self, outputs: dict):
        self.outputs = outputs          # the batch's outputs without padding rows
        self.shared = {}                # function -> its result on ``outputs``


class BatchOutputs(dict):
    """One task's rows of a processed batch, ``{output alias: array}`` like any run's outputs."""

    __slots__ = ("_batch", "_start", "_stop")

    def __init__(self, batch: _Batch, start: int, stop: int):
        super().__init__((alias, array[start:stop]) for alias, array in batch.outputs.items())
        self._batch, self._start, self._stop = batch, start, stop

    def shared(self, compute):
        """``compute(outputs of the whole batch)[start:stop]`` for this task's rows: ``compute`` returns one item per
        row and runs once per batch, its result shared by the batch's tasks (whichever asks first computes it)."""
        shared = self._batch.shared
        rows = shared.get(compute)
        if rows is None:
            rows = shared[compute] = compute(self._batch.outputs)
        return rows[self._start:self._stop]


def batch_size(arrays: dict) -> int:
    """The request's batch size, its inputs' common 0th dimension; TF Serving's errors (batching_util.h,
    ComputeTensorBatchSize, which a batching session runs on every request before queuing it) otherwise."""
    if not arrays:
        raise ServingError("INVALID_ARGUMENT", "Batching Run() must have at least one input tensor")
    sizes = set()
    for array in arrays.values():
        if array.ndim == 0:
            raise ServingError("INVALID_ARGUMENT", "Batching Run() input tensors must have at least one dimension")
        sizes.add(array.shape[0])
        if len(sizes) > 1:
            raise ServingError("INVALID_ARGUMENT", "Batching Run() input tensors must have equal 0th-dimension size")
    return sizes.pop()


class Batcher:
    """The queue of one (servable, signature, outputs fetched)."""

    def __init__(self, scheduler: "BatchScheduler", run):
        self.scheduler = scheduler
        self.run = run                  # callable(dict of arrays) -> dict of arrays
        self.batches: collections.deque = collections.deque()   # of _Forming; the last one open
        self.closed = False

    def submit(self, arrays: dict, loop=None, timeout: float | None = None):
        """Queues ``arrays``; a concurrent.futures.Future of the outputs, or an asyncio future of ``loop`` (which
        must be the running loop of the calling thread). ``timeout`` (seconds, None: none) is the run's, as TF
        Serving's RunOptions.timeout_in_ms: see :meth:`BatchScheduler._process`."""
        size = batch_size(arrays)
        if self.scheduler.metrics is not None:   # ComputeInputSize records it before the task is scheduled
            self.scheduler.metrics.batch_input(size, tensors=len(arrays))
        limit = self.scheduler.settings.input_batch_size_limit
        if size > limit:
            raise ServingError("INVALID_ARGUMENT", f"Task size {size} is larger than maximum input batch size {limit}")
        task = _Task(arrays, size, loop, timeout)
        return self.scheduler.enqueue(self, task)

    def close(self):
        self.scheduler.remove(self)


class BatchScheduler:
    def __init__(self, settings, metrics=None, stop: threading.Event | None = None):
        """Starts ``settings.threads`` batch threads, one at a time; ``stop`` set meanwhile (the server stopping)
        ends the starting, where a count in the billions (num_batch_threads up to INT32_MAX) would have held the
        process for ever."""
        self.settings = settings
        self.metrics = metrics
        self._cond = threading.Condition()
        self._queues: list[Batcher] = []
        self._next = 0
        self._stopped = False
        self._draining = False     # stopping: each batch goes as soon as it is formed, tasks still taken
        self._threads = []
        for i in range(settings.threads):
            if stop is not None and stop.is_set():
                break
            thread = threading.Thread(target=self._work, name=f"batch-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def batcher(self, run) -> Batcher:
        batcher = Batcher(self, run)
        with self._cond:
            self._queues.append(batcher)
        return batcher

    def enqueue(self, batcher: Batcher, task: _Task):
        """Adds ``task`` to the queue's open batch, or to a new batch when it does not fit there; a new batch
        that the queue has no room for is refused (Queue::ValidateBatchTaskQueueCapacity)."""
        with self._cond:
            if self._stopped:
                raise ServingError("UNAVAILABLE", "Batch scheduler is shutting down")
            if batcher.closed and batcher not in self._queues:
                self._queues.append(batcher)    # a request that resolved the version just before its unload
            batches = batcher.batches
            if batches and batches[-1].holds(task, self.settings.input_batch_size_limit):
                batches[-1].add(task)
            else:
                limit = self.settings.queue_batches
                if len(batches) >= limit:
                    raise ServingError("UNAVAILABLE", "The batch scheduling queue to which this task was submitted is "
                                                      f"full; currently {len(batches)} batches enqueued and "
                                                      f"max_enqueued_batches is {limit}")
                batches.append(_Forming(task))
            self._cond.notify()
        return task.future

    def remove(self, batcher: Batcher) -> None:
        """Stops taking tasks for ``batcher``; tasks already queued are still processed."""
        with self._cond:
            batcher.closed = True
            if not batcher.batches and batcher in self._queues:
                self._queues.remove(batcher)

    def drain(self) -> None:
        """The server is stopping: the batches queued run at once, and so does each batch of the tasks still
        arriving (requests being received when the stop began) instead of waiting for its batch timeout."""
        with self._cond:
            self._draining = True
            self._cond.notify_all()

    def stop(self, seconds: float = 10.0) -> None:
        """No new tasks; the queued ones are run at once, each thread ending when none is left. Waits for the
        threads ``seconds`` in all; one still running a batch then is left to finish it (a daemon thread)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        running = join_all(self._threads, seconds)
        if running:
            log.warning("%d batch thread(s) still running a batch %g s after the stop", len(running), seconds)

    # ----------------------------------------------------------------------------------------- workers
    def _take(self, batcher: Batcher) -> list:
        """The tasks of the queue's front batch, which leaves the queue."""
        batch = batcher.batches.popleft()
        if batcher.closed and not batcher.batches and batcher in self._queues:
            self._queues.remove(batcher)
        return batch.tasks

    def _ready(self, batcher: Batcher, now: float) -> float:
        """0 if the front batch can go now (closed by a batch behind it, full, or stopping), else seconds until
        its first task's timeout. A timeout past what a thread can wait (from about 9.2e15 µs; INT64_MAX, say) is
        waited without end, as SharedBatchScheduler's NowMicros() >= start + batch_timeout_micros is never true
        for it: the batch goes once full, once a batch follows it, or when the server stops."""
        front = batcher.batches[0]
        if len(batcher.batches) > 1 or front.size >= self.settings.input_batch_size_limit or self._draining \
                or self._stopped:
            return 0.0
        wait = front.tasks[0].enqueued + self.settings.batch_timeout_micros / 1e6 - now
        return max(wait, 0.0)

    def _work(self) -> None:
        while True:
            with self._cond:
                batch = None
                while batch is None:
                    now = time.monotonic()
                    soonest = None
                    count = len(self._queues)
                    for i in range(count):
                        batcher = self._queues[(self._next + i) % count]
                        if not batcher.batches:
                            continue
                        wait = self._ready(batcher, now)
                        if wait == 0.0:
                            self._next = (self._next + i + 1) % max(count, 1)
                            batch = (batcher, self._take(batcher))
                            break
                        soonest = wait if soonest is None else min(soonest, wait)
                    if batch is None:
                        if self._stopped:
                            return
                        self._cond.wait(waitable(soonest))
            self._process(*batch)

    def _process(self, batcher: Batcher, tasks: list) -> None:
        """Runs a batch taken from the queue as TF Serving's BatchingSession::ProcessBatch does: when every task's
        deadline passed while it was queued, none runs and each fails RESOURCE_EXHAUSTED; otherwise the batch
        runs (its expired tasks answered too) within the latest deadline of its tasks, after which the tasks still
        waiting for it fail DEADLINE_EXCEEDED (the run, which cannot be stopped, finishes unseen)."""
        started = time.monotonic()
        if self.metrics is not None:
            self.metrics.batch_queued([(started - task.enqueued) * 1e6 for task in tasks])
        live = [task for task in tasks if _still_wanted(task)]   # a gRPC caller gone at its deadline is not run
        if not live:
            return
        deadlines = [task.deadline for task in live]
        if all(deadline is not None and deadline <= started for deadline in deadlines):
            _deliver([(task, None, ServingError("RESOURCE_EXHAUSTED", QUEUE_TIMEOUT)) for task in live])
            return
        timer = None
        if None not in deadlines:
            timer = WATCHDOG.call_later(max(deadlines) - started, lambda: _deliver(_timed_out(live)))
        results = self._results(batcher, live)
        if timer is not None:
            timer.cancel()
        _deliver(results)               # (to the tasks the timer has not failed)

    def _results(self, batcher: Batcher, tasks: list) -> list:
        """[(task, outputs or None, exception or None)] of one batch."""
        try:
            outputs, total, padded = self._run(batcher, tasks)
        except BaseException as exc:  # noqa: BLE001
            if len(tasks) == 1:
                return [(tasks[0], None, exc)]
            results = []
            for task in tasks:          # isolate the failing request(s)
                results += self._results(batcher, [task])
            return results
        batch = _Batch(outputs if padded == total else {alias: array[:total] for alias, array in outputs.items()})
        results, start = [], 0
        for task in tasks:
            results.append((task, BatchOutputs(batch, start, start + task.size), None))
            start += task.size
        return results

    def _run(self, batcher: Batcher, tasks: list):
        """The batch's outputs, its size and its padded size. Padding rows copy the first row of the last task
        that has rows (MergeInputTensors copies the last task's; TF Serving aborts, Tensor::Slice(0, 1) failing its
        CHECK, when that task has zero rows); a batch of zero-row tasks alone has no row to copy and is not padded."""
        total = sum(task.size for task in tasks)
        source = next((task for task in reversed(tasks) if task.size), None)
        padded = total
        for allowed in self.settings.allowed_batch_sizes if source is not None else ():
            if allowed >= total:
                padded = allowed
                break
        if len(tasks) == 1 and padded == total:
            arrays = tasks[0].arrays
        else:
            arrays = {}
            for name in tasks[0].arrays:
                parts = [task.arrays[name] for task in tasks]
                if padded > total:
                    parts.append(np.repeat(source.arrays[name][:1], padded - total, axis=0))
                arrays[name] = np.concatenate(parts)
        if self.metrics is not None:
            self.metrics.batch_merged(total, padded)
        try:
            outputs = batcher.run(arrays)
        finally:
            if self.metrics is not None:
                self.metrics.batch_run()
        for array in outputs.values():   # SplitOutputTensors' checks, in its order
            if array.ndim == 0:
                raise ServingError("FAILED_PRECONDITION", "Batched output tensor has 0 dimensions")
            if array.shape[0] != padded:
                raise ServingError("FAILED_PRECONDITION", "Batched output tensor's 0th dimension does not equal the "
                                                          "sum of the 0th dimension sizes of the input tensors")
        return outputs, total, padded


def _timed_out(tasks: list) -> list:
    """The results of ``tasks`` whose batch ran past its deadline: DEADLINE_EXCEEDED for those awaited in a loop (a
    gRPC caller stops waiting at its own deadline)."""
    return [(task, None, ServingError("DEADLINE_EXCEEDED", "Deadline Exceeded")) for task in tasks
            if task.loop is not None]


def _still_wanted(task) -> bool:
    """False for a task cancelled at its caller's deadline; a gRPC (concurrent) one is marked running, so that
    it cannot be cancelled any more once its batch runs."""
    if task.loop is None:
        return task.future.set_running_or_notify_cancel()
    return not task.future.cancelled()


def _deliver(results: list) -> None:
    """Completes the tasks' futures: concurrent ones here, asyncio ones with one callback per loop."""
    loops = {}
    for result in results:
        task, outputs, error = result
        if task.loop is not None:
            loops.setdefault(task.loop, []).append(result)
        elif error is not None:   # running since _still_wanted: its caller can no longer cancel it
            task.future.set_exception(error)
        else:
            task.future.set_result(outputs)
    for loop, items in loops.items():
        try:
            loop.call_soon_threadsafe(_settle, items)
        except RuntimeError:    # the loop is closed: nobody waits for these
            pass


def _settle(results: list) -> None:
    for task, outputs, error in results:
        if task.future.done():          # cancelled (the caller's deadline passed)
            continue
        if error is not None:
            task.future.set_exception(error)
        else:
            task.future.set_result(outputs)
