"""A JSON-over-HTTP client for TF Serving's REST API (tensorflow/serving or the embedded server), shared by the
web backend, batch prediction, the ServingValidator component and the demo launcher.

``RestConnection.request(method, path, body)`` returns ``(HTTP status, decoded JSON body)``. Anything that
keeps the server from answering (refused, reset, timed out, a 5xx that is not JSON) raises
:class:`ServingUnavailable` with a short ``reason`` and a message naming the server; an answer the server sent
before it closed on a body it did not read to the end (413, a body over its limit) is returned. Keep-alive
connections are pooled: a request takes an idle connection (or opens one) and gives it back when the answer has
been read, so a thread-per-request caller (the web backend's ThreadingHTTPServer) reuses connections across
requests instead of opening one per request. A kept-alive connection the server closed meanwhile is retried once
on a fresh connection.
"""
from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
import urllib.parse

from core import json_text
from core.deadlines import ExchangeDeadline


class ServingUnavailable(Exception):
    """TF Serving cannot answer (down, unreachable, timing out, or the model is not loaded)."""

    def __init__(self, reason: str, message: str, status: int = 503):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


def error_text(body) -> str:
    """The ``error`` string of a TF Serving error body (``{"error": "..."}``), or ""."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    return ""


_CLOSED = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, ConnectionAbortedError,
           http.client.BadStatusLine, http.client.IncompleteRead)


def _send(conn: http.client.HTTPConnection, method: str, target: str, payload, headers: dict):
    """Sends one request and returns its response. A server that refuses a request before reading all its body (a
    413 for a body over its limit) answers and closes the connection: the send fails, yet its answer is there to
    read. The send's own error when there is none (a server that went away)."""
    try:
        conn.request(method, target, body=payload, headers=headers)
    except _CLOSED as err:
        try:
            return conn.getresponse()
        except (http.client.HTTPException, OSError):
            raise err from None
    return conn.getresponse()


def parse_base_url(base_url: str) -> tuple[str, str, int, str]:
    """The scheme, host, port and path prefix of a TF Serving base URL (``http://host:8501``, the port 80 or 443
    when none is given); ValueError unless it is an http(s) URL with a host and a port of 0..65535."""
    try:
        parsed = urllib.parse.urlsplit(base_url)
        port = parsed.port
    except ValueError as err:   # a port that is no number or above 65535, an unclosed [IPv6 address
        raise ValueError(f"{base_url!r} is not an http(s) URL ({err})") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{base_url!r} is not an http(s) URL")
    return parsed.scheme, parsed.hostname, port or (443 if parsed.scheme == "https" else 80), parsed.path.rstrip("/")


class RestConnection:
    """JSON over HTTP/1.1 to one TF Serving base URL, with a pool of up to ``max_idle`` keep-alive connections."""

    def __init__(self, base_url: str, timeout: float = 15.0, max_idle: int = 8):
        self.scheme, self.host, self.port, self.prefix = parse_base_url(base_url)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_idle = max_idle
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self.opened = 0            # connections opened so far (for tests and benchmarks)

    def _open(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        with self._lock:
            self.opened += 1
        return cls(self.host, self.port, timeout=self.timeout)

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._open(), False

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Closes the idle connections (connections in use close when their request is done)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def exchange(self, method: str, path: str, payload: bytes | None = None,
                 headers: dict | None = None) -> tuple[int, dict, bytes]:
        """One HTTP exchange: (status, headers with lower-case names, raw body); raises
        :class:`ServingUnavailable` when the server does not answer, also when its answer does not arrive whole
        within ``timeout`` seconds (a server trickling its answer resets every read's own timeout)."""
        deadline = time.monotonic() + self.timeout
        for attempt in (0, 1):
            conn, reused = self._take() if attempt == 0 else (self._open(), False)
            clock = ExchangeDeadline(conn, max(0.0, deadline - time.monotonic()))
            try:
                response = _send(conn, method, self.prefix + path, payload, headers or {})
                raw = response.read()
            except (socket.timeout, TimeoutError):
                clock.finish()
                conn.close()
                raise self._timed_out() from None
            except _CLOSED as err:
                conn.close()
                if not clock.finish():
                    raise self._timed_out() from None
                if reused:   # a kept-alive connection the server closed meanwhile: retry once on a new one
                    continue
                raise ServingUnavailable("serving_unreachable", f"TF Serving at {self.base_url} closed the "
                                         f"connection ({type(err).__name__})") from None
            except OSError as err:
                conn.close()
                if not clock.finish():
                    raise self._timed_out() from None
                what = "connection refused" if isinstance(err, ConnectionRefusedError) else (
                    err.strerror or type(err).__name__)
                raise ServingUnavailable("serving_unreachable",
                                         f"TF Serving at {self.base_url} is not reachable ({what})") from None
            finally:
                clock.finish()
            if not clock.finish():     # cut at the deadline: what arrived is not the whole answer
                conn.close()
                raise self._timed_out()
            if response.will_close:
                conn.close()
            else:
                self._give_back(conn)
            return response.status, {k.lower(): v for k, v in response.getheaders()}, raw
        raise AssertionError("unreachable")

    def _timed_out(self) -> ServingUnavailable:
        return ServingUnavailable("serving_timeout", f"TF Serving at {self.base_url} did not answer within "
                                  f"{self.timeout:g} s", status=504)

    def request(self, method: str, path: str, body=None) -> tuple[int, object]:
        """Returns (HTTP status, decoded JSON body or None); raises :class:`ServingUnavailable`."""
        payload = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        status, _, raw = self.exchange(method, path, payload, headers)
        if not raw:
            return status, None
        try:
            return status, json_text.loads(raw)
        except ValueError:   # not JSON, or nested too deeply to decode (json_text.NestedTooDeep)
            if status >= 500:
                raise ServingUnavailable("serving_error", f"TF Serving answered HTTP {status}") from None
            return status, {"error": _page_text(raw)}


_TITLE = re.compile(rb"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _page_text(raw: bytes) -> str:
    """A body that is not JSON as a short text: an HTML page's title (libevent's error page, a proxy's), else its
    first 200 bytes."""
    title = _TITLE.search(raw)
    return (title.group(1).strip() if title else raw[:200]).decode("utf-8", "replace")


def version_states(body) -> dict[str, str]:
    """``{version: state}`` of a GetModelStatus JSON body (``model_version_status``), newest first as sent;
    entries that are not well-formed are left out."""
    return {str(entry["version"]): str(entry.get("state", "UNKNOWN")) for entry in _status_entries(body)}


def version_errors(body) -> dict[str, str]:
    """``{version: "CODE: message"}`` of the versions whose status is an error (a load that failed: state END)."""
    errors = {}
    for entry in _status_entries(body):
        status = entry.get("status") if isinstance(entry.get("status"), dict) else {}
        code = str(status.get("error_code", "OK"))
        if code not in ("OK", "0"):
            errors[str(entry["version"])] = f"{code}: {status.get('error_message', '')}"
    return errors


def _status_entries(body) -> list[dict]:
    entries = body.get("model_version_status", []) if isinstance(body, dict) else []
    if not isinstance(entries, list):   # not a status answer at all: no version in it
        return []
    return [entry for entry in entries if isinstance(entry, dict) and "version" in entry]
