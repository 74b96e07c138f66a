"""``python -m serving``: the embedded TF Serving-compatible REST and gRPC server (flags as
tensorflow_model_server's).

    python -m serving --model_name=letters --model_base_path=$PWD/serving/models/letters --port=8500 \
        --rest_api_port=8501
"""
import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)

import logging
import os
import signal
import sys
import threading

from serving.config import FAILED_TO_START


def main(argv=None) -> int:
    from core import configs
    from core.signals import stop_on_signals
    from serving.config import parse_flags
    from core.settings import host_port as address
    from serving.server import Server
    from serving.status import ServingError

    configs.warn_unknown_variables()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)   # before the flags: a value they cannot take is an ERROR line
    options = parse_flags(argv)
    try:
        server = Server(options)
    except Exception as exc:  # noqa: BLE001 - unreadable or invalid config files
        failed_to_start(exc)
        return FAILED_TO_START
    stopping = threading.Event()

    def on_stop(signum: int) -> None:     # in a watcher thread: setting the events here cannot deadlock the main one
        logging.getLogger("serving").info("Received %s, shutting down", signal.Signals(signum).name)
        stopping.set()
        server.stop_event.set()

    stop_on_signals(on_stop)
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - startup errors end the process with a message
        if stopping.is_set() and not isinstance(exc, ServingError):
            server.stop()
            return 0
        failed_to_start(exc)
        server.stop()
        return FAILED_TO_START
    if server.grpc_port:
        print(f"Running gRPC ModelServer at {address(options.grpc_host, server.grpc_port)} ...", flush=True)
    if server.port is not None:
        print(f"Exporting HTTP/REST API at:{options.rest_api_host}:{server.port} ...", flush=True)
    while not stopping.wait(0.5):
        pass
    server.stop()
    return 0


def failed_to_start(exc: Exception) -> None:
    """main.cc's line for a server that did not start, on stdout as it prints it: the status with its code
    (INVALID_ARGUMENT: ...) for a ServingError, the text of any other error; main() then returns
    :data:`FAILED_TO_START`."""
    from serving.status import ServingError

    error = exc.to_string() if isinstance(exc, ServingError) else exc
    print(f"Failed to start server. Error: {error}", flush=True)


def end(status: int) -> int:
    """``status``, once main() has stopped the server; but with model runs still going (cut off by the stop's grace
    period: a TensorFlow function cannot be stopped), or a version load the stop gave up waiting for (a SavedModel's
    load and warm-up cannot be stopped either), the process ends here and now, its logs, stdout and stderr flushed
    and the count of those runs and loads logged: at its exit the interpreter joins the runs' threads, and the
    process had kept their CPU and memory until the last run ended, long after "Server stopped"; and it ends the
    loader's thread inside TensorFlow, which aborts the process (terminate called after throwing an instance of
    '', exit status 134). Only the command ends this way: Server.stop() leaves the runs and loads of a library
    user's process alone."""
    from serving.versions import loads_in_progress, runs_in_progress

    abandoned, loading = runs_in_progress(), loads_in_progress()
    if not abandoned and not loading:
        return status
    if abandoned:
        logging.getLogger("serving").warning("Exiting with %d model run(s) still going: the shutdown's grace period "
                                             "cut them off, their answers are not sent", abandoned)
    if loading:
        logging.getLogger("serving").warning("Exiting with %d version load(s) still going: the shutdown stopped "
                                             "waiting for them, the versions are not served", loading)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(end(main()))
