"""The gRPC listener: a grpcio server with TF Serving's options (model_servers/server.cc BuildAndStart).

It knows nothing about models: the services come from :class:`serving.grpc_api.GrpcApi`.

* ``--grpc_max_threads`` (default 4 x CPUs, as TF Serving): threads that run calls.
* ``--grpc_channel_arguments``: ``key=value`` pairs separated by commas, an int32 value passed as an int,
  anything else as a string (server.cc parseGrpcChannelArgs), e.g.
  ``grpc.max_receive_message_length=8388608``.
* A message larger than the receive limit is refused by grpc itself with RESOURCE_EXHAUSTED. TF Serving
  sets that limit to INT32_MAX; here it defaults to ``--max_request_bytes`` (the bound REST bodies have),
  unless ``grpc.max_receive_message_length`` is among the channel arguments.
* A port that cannot be bound fails the start in BuildAndStart's words (INVALID_ARGUMENT: Failed to BuildAndStart
  gRPC server), gRPC's reason logged at ERROR.
"""
from __future__ import annotations

import concurrent.futures
import logging
import threading

import grpc

from core.settings import host_port as address
from serving.config import schedulable_cpus
from serving.status import invalid

log = logging.getLogger("serving.grpc")

INT32_MAX = 2 ** 31 - 1
MAX_RECEIVE = "grpc.max_receive_message_length"
MAX_SEND = "grpc.max_send_message_length"


def parse_channel_arguments(text: str) -> list[tuple[str, object]]:
    """``a=1,b=x`` -> ``[("a", 1), ("b", "x")]``; a malformed pair raises ValueError."""
    arguments = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--grpc_channel_arguments: expected key=value, got {item!r}")
        try:
            number = int(value)
        except ValueError:
            arguments.append((key, value))
        else:
            arguments.append((key, number) if -INT32_MAX - 1 <= number <= INT32_MAX else (key, value))
    return arguments


class GrpcServer:
    def __init__(self, api, host: str, port: int, max_threads: int = 0, max_receive_bytes: int = INT32_MAX,
                 channel_arguments: str = ""):
        self.api = api
        self.host = host
        self.port = port
        self.max_threads = max_threads or 4 * schedulable_cpus()
        options = {MAX_RECEIVE: min(max_receive_bytes, INT32_MAX), MAX_SEND: INT32_MAX}
        options.update(parse_channel_arguments(channel_arguments))
        self.options = list(options.items())
        self._server = None

    def start(self) -> int:
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=self.max_threads, thread_name_prefix="grpc")
        server = grpc.server(executor, options=self.options)
        self.api.add_to(server)
        try:
            bound = server.add_insecure_port(address(self.host, self.port))
        except RuntimeError as exc:   # grpcio raises when the address cannot be bound
            bound, reason = 0, str(exc)
        else:
            reason = f"Failed to bind to address {address(self.host, self.port)}"
        if not bound:   # gRPC logs why; BuildAndStart's status says only that it failed (server.cc)
            log.error("%s", reason)
            raise invalid("Failed to BuildAndStart gRPC server")
        server.start()
        self._server = server
        self.port = bound
        return bound

    def stop(self, grace_seconds: float = 10.0) -> threading.Event:
        """Refuses new calls at once, lets in-flight calls finish for up to ``grace_seconds`` (then cancels them).
        Returns at once: the event is set when the last call has ended."""
        stopped = threading.Event()
        if self._server is None:
            stopped.set()
            return stopped
        stopped, self._server = self._server.stop(grace_seconds), None
        return stopped
