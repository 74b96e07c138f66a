"""The embedded server: model core + loader + pollers + (optional) batcher + REST and gRPC listeners, started and
stopped as one.

Like tensorflow_model_server, the gRPC (``--port``) and REST ports open only once a version of every configured
model has loaded (or the start fails; ServerCore.wait_until_settled); it then keeps polling the model directories
(--file_system_poll_wait_seconds) and the config file (--model_config_file_poll_wait_seconds) until stopped. The
versions load in a thread of their own, the loader (ServerCore.run_loader), which the polls wake.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time

from core.deadlines import join_all, seconds_left
from core.settings import host_port as address
from serving import config as config_lib
from serving.batching import BatchScheduler, batch_size
from serving.grpc_api import GrpcApi
from serving.grpcserver import GrpcServer
from serving.httpserver import HttpServer
from serving.metrics import Metrics
from serving.request_logging import ServerRequestLogger
from serving.rest import RestApi
from serving.status import ServingError, invalid
from serving.versions import ModelManager, ServerCore, not_available, settled_failures

log = logging.getLogger("serving")


class Server:
    def __init__(self, options: config_lib.ServerOptions):
        options.validate()
        if not options.model_base_path and not options.model_config_file:   # BuildAndStart's check, its words
            raise invalid("Both server_options.model_base_path and server_options.model_config_file are empty!")
        self.options = options
        self.metrics = Metrics()
        self.core = ServerCore(options, metrics=self.metrics, runner=self._warmup_run)
        self.request_logger = ServerRequestLogger(self.metrics)
        self.monitoring = (config_lib.load_monitoring_config(options.monitoring_config_file)
                           if options.monitoring_config_file else None)
        self.batching = None
        if options.enable_batching:
            self.batching = (config_lib.load_batching_parameters(options.batching_parameters_file)
                             if options.batching_parameters_file else config_lib.Batching())
            if self.batching.pad_variable_length_inputs:
                log.warning("pad_variable_length_inputs is not implemented: requests whose inner shapes differ "
                            "are batched separately")
        elif options.batching_parameters_file:   # BuildAndStart's check, its words
            raise invalid("server_options.batching_parameters_file is set without setting "
                          "server_options.enable_batching to true.")
        self.scheduler = None
        threads = options.rest_api_num_threads or 4 * config_lib.schedulable_cpus()
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="run")
        # the work of large REST requests, off the connections' loop (RestApi._off_loop)
        self.handlers = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rest")
        self.stop_event = self.core.stop_event   # also wakes the loader and the waits for it
        self.loop = None
        self.http = None
        self.port = None
        self.grpc = None
        self.grpc_port = None
        self.grpc_executor = None
        self._threads = []
        self._loop_thread = None
        self._stopped = threading.Event()
        self._reload_lock = threading.Lock()   # ServerCore's config_mu_: one config reload at a time, waits included

    # ---------------------------------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        host = self.options.rest_api_host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def _model_config(self):
        if self.options.model_config_file:
            return config_lib.load_model_server_config(self.options.model_config_file)
        return config_lib.single_model_config(self.options.model_name, self.options.model_base_path)

    def _apply_config(self, config, source: str) -> None:
        """The models, then the request logs of ``config`` (a log folder that cannot be made refuses it first)."""
        logging_update = self.request_logger.prepare(config, source)
        self.core.apply_config(config)
        self.request_logger.apply(logging_update)

    def start(self) -> "Server":
        """Loads the models (blocking, as the real server does), then opens the REST port."""
        if self.batching is not None:
            self.scheduler = BatchScheduler(self.batching, self.metrics, self.stop_event)
            if self.stop_event.is_set():
                raise RuntimeError("stopped while starting the batch threads")
        config = self._model_config()
        self._apply_config(config, self.options.model_config_file or "--model_base_path")
        self._spawn(self.core.run_loader, "loader")
        self.core.wait_until_settled(self.options.file_system_poll_wait_seconds)
        if self.stop_event.is_set():
            raise RuntimeError("stopped before the models finished loading")
        _log_reloaded(config)
        if self.options.port:
            self._start_grpc()
        if self.options.rest_skipped:
            log.error("server_options.http_port cannot be same as grpc_port. Please use a different port for "
                      "HTTP/REST API. Skipped exporting HTTP/REST API.")
        elif not self._start_rest() and not self.grpc_port:
            raise OSError(f"Failed to start HTTP Server at {self._rest_address()}, and gRPC is off (--port=0): "
                          "nothing to serve")
        if self.options.file_system_poll_wait_seconds > 0:
            self._spawn(self._poll_models, "fs-poller")
        if self.options.model_config_file and self.options.model_config_file_poll_wait_seconds > 0:
            self._spawn(self._poll_config, "config-poller")
        return self

    def _rest_address(self) -> str:
        return f"{self.options.rest_api_host}:{self.options.rest_api_port}"

    def _start_rest(self) -> bool:
        """Opens the REST port; False if it cannot: as TF Serving's CreateAndStartHttpServer fails (evhttp's
        "Couldn't bind to port" and server.cc's "Failed to start HTTP Server at" logged at ERROR), the server goes
        on with gRPC alone (start() fails when gRPC is off: nothing would be served)."""
        ready = threading.Event()
        failure = []

        def run_loop():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            api = RestApi(self.core, self.options, self.metrics, config_lib.prometheus_path(self.monitoring),
                          self._run, self.request_logger, self.handlers)
            self.http = HttpServer(api.handle, self.options.rest_api_host, self.options.rest_api_port,
                                   self.options.max_request_bytes,
                                   header_timeout=_seconds(self.options.rest_api_header_timeout_in_ms),
                                   idle_timeout=_seconds(self.options.rest_api_idle_timeout_in_ms))
            try:
                self.port = self.loop.run_until_complete(self.http.start())
            except Exception as exc:  # noqa: BLE001 - reported to start()
                failure.append(exc)
                self.loop.close()
                ready.set()
                return
            ready.set()
            self.loop.run_forever()
            self.loop.close()

        self._loop_thread = threading.Thread(target=run_loop, name="rest", daemon=True)
        self._loop_thread.start()
        ready.wait()
        if failure:
            self.http = None
            log.error("Couldn't bind to port %d: %s", self.options.rest_api_port, failure[0])
            log.error("Failed to start HTTP Server at %s", self._rest_address())
            return False
        log.info("Exporting HTTP/REST API at:%s:%d ...", self.options.rest_api_host, self.port)
        return True

    def _start_grpc(self) -> None:
        api = GrpcApi(self.core, self.metrics, self.run_blocking, self.reload_config, self.request_logger)
        self.grpc = GrpcServer(api, self.options.grpc_host, self.options.port, self.options.grpc_max_threads,
                               self.options.max_request_bytes, self.options.grpc_channel_arguments)
        # gRPC runs have threads of their own, not REST's pool (TF Serving runs a call's model in its gRPC thread):
        # one per call, and as many again for runs whose call ended at its deadline (TF Serving stops those; a
        # TensorFlow function cannot be stopped, so they finish unseen)
        self.grpc_executor = concurrent.futures.ThreadPoolExecutor(max_workers=2 * self.grpc.max_threads,
                                                                   thread_name_prefix="grpc-run")
        self.grpc_port = self.grpc.start()
        log.info("Running gRPC ModelServer at %s ...", address(self.options.grpc_host, self.grpc_port))

    def _spawn(self, target, name):
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _poll_models(self):
        while not self.stop_event.wait(self.options.file_system_poll_wait_seconds):
            self.core.poll()

    def _poll_config(self):
        """Server::PollFilesystemAndReloadConfig (:meth:`_reload_config_file`) as TF Serving's PeriodicFunction runs
        it: the first poll at once (no startup delay), then one every interval, start to start (a poll's own time
        is not added to the wait). A poll never ends the poller: one that fails in a way of its own (not a config's
        error, which the poll logs in TF Serving's words) is logged with its traceback, and the next poll runs."""
        path = self.options.model_config_file
        next_poll = time.monotonic()
        while not self.stop_event.wait(seconds_left(next_poll)):
            next_poll = time.monotonic() + self.options.model_config_file_poll_wait_seconds
            try:
                self._reload_config_file(path)
            except Exception:  # noqa: BLE001 - one poll's failure never ends the poller
                log.exception("Polling the config file %s failed", path)

    def _reload_config_file(self, path: str) -> None:
        """One poll of the config file, with PollFilesystemAndReloadConfig's ERROR lines: a file that cannot be read
        or parsed, and a config that cannot be applied. As there, the file's config is applied at every poll,
        changed or not: a config that cannot be applied is retried, and logged, at every poll (a label ahead of its
        version, applied once the version is loaded; a label whose version has since been unloaded), and an
        unchanged one changes nothing (its INFO lines, ServerCore::ReloadConfig's, are logged each time)."""
        try:
            config = config_lib.read_model_server_config(config_lib.read_text(path), path)
        except (ServingError, ValueError) as exc:   # ParseProtoTextFile's status, logged without its code
            log.error("Failed to read ModelServerConfig file: %s", exc)
            return
        with self._reload_lock:
            known = self._served()
            try:
                self._check_config(config, path, known)
                self._apply_config(config, path)
            except Exception as exc:  # noqa: BLE001 - a bad config never stops serving the current one
                log.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s", exc)
                return
            try:
                self._wait_for_added(config, known, None)
            except ServingError as exc:   # ReloadConfig's error: a model added whose newest version failed
                if not self.stop_event.is_set():   # (stopping ends the wait: nothing failed)
                    log.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s", exc.message)
                return
            _log_reloaded(config)

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def stop(self, grace_seconds: float | None = None) -> None:
        """Graceful: stop accepting, finish in-flight requests, stop pollers and batch threads, unload. The
        requests get ``grace_seconds``, by default as long as a REST request may run (--rest_api_timeout_in_ms, and
        a second to answer; 30 s without a timeout)."""
        if self._stopped.is_set():
            return
        if grace_seconds is None:
            timeout = self.options.rest_api_timeout_in_ms / 1000.0
            grace_seconds = timeout + 1.0 if timeout > 0 else 30.0
        self.stop_event.set()
        self._stop_listeners(grace_seconds)
        if self.scheduler is not None:
            self.scheduler.stop()
        join_all(self._threads, 30)   # the loader (a load running finishes), the version and config-file pollers
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.handlers.shutdown(wait=False, cancel_futures=True)
        if self.grpc_executor is not None:
            self.grpc_executor.shutdown(wait=False, cancel_futures=True)
        self.core.unload_all()
        self.request_logger.close()
        self._stopped.set()
        log.info("Server stopped")

    def _stop_listeners(self, grace_seconds: float) -> None:
        """Both listeners refuse new connections and calls at once, then their in-flight requests finish within
        the same ``grace_seconds`` (one after the other, the REST port had taken requests while gRPC calls
        finished, and the stop had taken a grace period for each). The batch scheduler drains as soon as they
        refuse: the requests it holds, and those still being received, run at once instead of waiting out their
        batch timeout (a long one had outlasted the grace period, and they had ended 504 and UNAVAILABLE); it
        stops once the listeners have finished."""
        deadline = time.monotonic() + grace_seconds + 5
        grpc_stopped = self.grpc.stop(grace_seconds) if self.grpc is not None else None
        rest_stopped = None
        if self.loop is not None and self.http is not None and self.loop.is_running():
            rest_stopped = asyncio.run_coroutine_threadsafe(self.http.stop(grace_seconds), self.loop)
        if self.scheduler is not None:
            self.scheduler.drain()
        if grpc_stopped is not None:
            grpc_stopped.wait(seconds_left(deadline))
        if rest_stopped is not None:
            try:
                rest_stopped.result(seconds_left(deadline))
            except Exception:  # noqa: BLE001
                log.exception("Error while stopping the REST server")
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._loop_thread.join(timeout=5)

    # ---------------------------------------------------------------------------------------- requests
    def _batcher(self, servable, signature_name: str, arrays: dict, outputs=None):
        """The batch queue a request goes through, or None (batching off, unloaded). With batching on, inputs of no
        common batch size are refused as TF Serving's batching session refuses them (a scalar input, or 0th
        dimensions that differ, had run alone: a model error, or an answer); a request of zero rows is queued as any
        other, as there (its batch's outputs are split and checked: a scalar one refused). As TF Serving's batching
        session queues a run by its inputs and the outputs it fetches (TensorSignature), a queue is that of a
        signature and the aliases ``outputs`` (a Predict's output_filter; None or every output: all of them), whose
        batches are split, and checked, on those outputs alone."""
        if self.scheduler is None:
            return None
        batch_size(arrays)   # the batching session's checks of the inputs (ComputeTensorBatchSize) come first
        if outputs is not None:
            signature = servable.signature_defs.get(signature_name)
            if signature is not None and set(outputs) == set(signature.outputs):
                outputs = None
        return servable.batcher((signature_name, None if outputs is None else frozenset(outputs)),
                                self._make_batcher)

    async def _run(self, servable, signature_name: str, arrays: dict, timeout: float | None) -> dict:
        """The REST runner (in the REST loop's thread): the outputs, from the signature run in an executor thread,
        DEADLINE_EXCEEDED after ``timeout`` seconds (None: none), or from the batcher, which keeps ``timeout`` as TF
        Serving's batching session keeps a run's (BatchScheduler._process: RESOURCE_EXHAUSTED when the deadlines of
        all the requests of a batch passed in the queue; a timer here had ended a queued request 504 at its own)."""
        batcher = self._batcher(servable, signature_name, arrays)
        if batcher is not None:
            return await batcher.submit(arrays, loop=self.loop, timeout=timeout)
        return await _within(self.loop.run_in_executor(self.executor, servable.run, signature_name, arrays), timeout)

    def run_blocking(self, servable, signature_name: str, arrays: dict, timeout: float | None = None,
                     outputs=None) -> dict:
        """The gRPC threads' runner of the aliases ``outputs`` (None: every output): the batcher, or gRPC's own run
        threads, waited on until the call's deadline (TF Serving's run timeout): after it the call ends
        DEADLINE_EXCEEDED and its gRPC thread is free; a run not started yet is dropped, one already running finishes
        unseen (a TensorFlow function cannot be stopped)."""
        batcher = self._batcher(servable, signature_name, arrays, outputs)
        future = (batcher.submit(arrays, timeout=timeout) if batcher is not None
                  else self.grpc_executor.submit(servable.run, signature_name, arrays, outputs))
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ServingError("DEADLINE_EXCEEDED", "Deadline Exceeded") from None

    def reload_config(self, config, timeout: float | None = None) -> None:
        """ModelService.HandleReloadConfigRequest: applies ``config`` and, like ServerCore::ReloadConfig, waits
        until the models it adds have loaded (or failed). With a config file poller, the file's config replaces it
        at the next poll, as TF Serving's poller reloads the file at every poll."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._reload_lock.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
            raise ServingError("DEADLINE_EXCEEDED", "Deadline Exceeded")
        try:
            known = self._served()
            self._check_config(config, "ReloadConfigRequest", known)
            self._apply_config(config, "ReloadConfigRequest")
            self._wait_for_added(config, known, deadline)
            _log_reloaded(config)
        finally:
            self._reload_lock.release()

    def _wait_for_added(self, config, known: set, deadline: float | None) -> None:
        """Until the newest aspired version of each model of ``config`` not in ``known`` has loaded or failed
        (ServerCore's WaitUntilModelsAvailable; ModelManager.newest_settled), under the reload lock: a second reload,
        from ModelService or the config file poller, waits for this one, as ServerCore::ReloadConfig holds config_mu_
        through its wait. (Applied at once, a second reload that removed a model had left the first waiting for it
        forever, and one that added the same model had answered OK before it loaded.) The file-system poller finds
        their versions and the loader loads them; with --file_system_poll_wait_seconds 0 or less there is no poller,
        and, as in TF Serving, whose one poll ran at start-up, they are never polled: the wait lasts until the
        deadline, or until the server stops."""
        added = [self.core.manager(m.name) for m in config.model_config_list.config if m.name not in known]
        failures = self.core.wait_for(lambda: settled_failures(added, ModelManager.newest_settled),
                                      None if deadline is None else seconds_left(deadline))
        if failures is None:   # the deadline passed, or the server stops
            raise ServingError("DEADLINE_EXCEEDED", "Deadline Exceeded")
        if any(failure for _, failure in failures):
            raise not_available("model(s)", failures)

    def _check_config(self, config, source: str, known: set) -> None:
        """Refuses a config to reload as ServerCore::ReloadConfig does, first a config that may not follow the one
        served (:meth:`serving.versions.ServerCore.check_transition`), then what this server cannot serve
        (:func:`serving.config.check_model_server_config`)."""
        self.core.check_transition(config)
        config_lib.check_model_server_config(config, source, known)

    def _served(self) -> set:
        """The names of the models in the config being served."""
        return {name for name, manager in self.core.managers.items() if not manager.removed}

    def _warmup_run(self, servable, signature_name: str, arrays: dict, outputs=None) -> dict:
        """A warm-up record's run: through the batch queue as requests go (TF Serving warms up the BatchingSession
        that wraps the model's session, so its batching metrics count the records)."""
        batcher = self._batcher(servable, signature_name, arrays, outputs)
        if batcher is None:
            return servable.run(signature_name, arrays, outputs)
        return batcher.submit(arrays).result()

    def _make_batcher(self, servable, key: tuple):
        signature_name, outputs = key
        return self.scheduler.batcher(lambda arrays: servable.run(signature_name, arrays, outputs))


def _log_reloaded(config) -> None:
    """ServerCore::ReloadConfig's last INFO lines, once the models a config (not an empty one) adds are available
    (its first ones: :meth:`serving.versions.ServerCore.apply_config`)."""
    if config.WhichOneof("config") is not None:
        log.info("Finished adding/updating models")
        log.info("Finished reloading config")


async def _within(future: asyncio.Future, seconds: float | None):
    """``future``'s result, DEADLINE_EXCEEDED if it is not done ``seconds`` from now (then cancelled)."""
    if seconds is None:
        return await future
    expired = []     # one timer that cancels the future (wait_for would start a task per request)
    timer = asyncio.get_running_loop().call_later(seconds, _expire, future, expired)
    try:
        return await future
    except asyncio.CancelledError:
        if expired:
            raise ServingError("DEADLINE_EXCEEDED", "Deadline Exceeded") from None
        raise
    finally:
        timer.cancel()


def _expire(future, expired: list) -> None:
    if not future.done():
        expired.append(True)
        future.cancel()


def _seconds(milliseconds: int) -> float | None:
    """A timeout flag in ms as seconds for asyncio; 0 or less means none."""
    return milliseconds / 1000.0 if milliseconds > 0 else None
