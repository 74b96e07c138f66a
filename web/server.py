"""The web client's backend: static page, JSON API, feedback store. The standard library's HTTP server;
images are checked with core.image_io (Pillow, numpy), no TensorFlow.

Routes::

    GET  /                 the page (web/static/index.html)
    GET  /static/<file>    its CSS and JavaScript
    GET  /healthz          liveness: 200 {"status": "ok"} while this process serves
    GET  /api/status       TF Serving reachability and model versions (200; 429 busy, 504 slow; 503 with the reason)
    GET  /api/classes      the 27 classes in label order: [{"index", "class", "letter"}], and the largest image
                           taken (max_upload_bytes), which the page checks before it reads a file
    POST /api/predict      an image -> top 3 letters, the model version and route that answered, latency
    POST /api/feedback     an image and its true label (plus what the model said) -> stored, 201

``/api/predict`` takes ``application/json`` ``{"image": "<base64 or RFC 2397 data: URL>", "route"?: "stable"|"canary"|
"latest", "source"?: "canvas"|"upload"}``, ``multipart/form-data`` with a file field ``image`` (and optional
``route`` and ``source`` fields), or a raw ``image/*`` body. With a request log (``request_log_dir``), each sampled
prediction is written as a TF Serving ``PredictionLog`` (core/request_log.py): the image as sent to TF Serving,
the probabilities it answered, the version that answered, and the image's source (``request_origin``; "unknown"
when the client does not say). ``/api/feedback`` takes JSON ``{"image", "label", "predicted_label"?, "probability"?,
"model_version"?, "route"?}``. Errors are JSON ``{"error": "<message>", "reason": "<category>"}``.
"""
from __future__ import annotations

import base64
import email.parser
import email.policy
import email.utils
import errno
import json
import logging
import os
import re
import select
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from core import base64_text, configs, json_text, prediction_log, settings
from core.deadlines import WATCHDOG
from core.image_io import ImageRejected, check_image
from core.request_log import RequestLogWriter
from core.labels import CLASS_NAMES, GLYPHS
from serving.client import RestConnection, ServingUnavailable
from serving.status import own_words
from web.config import WebConfig
from core.feedback import FeedbackError, FeedbackStore, FeedbackStoreError, trained_within
from web.tfserving import ROUTES, BadServingResponse, ModelRouter, ServingRejected

log = logging.getLogger("web")

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
                 ".ico": "image/x-icon"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
SOURCES = ("canvas", "upload")   # where the page's image came from; "unknown" when not said
REQUEST_LOG_NAME = "web"         # request log files: <request_log_dir>/web-<UTC time>-<n>.tfrecord
MAX_DRAIN_BYTES = 64 * 1024 * 1024   # an oversize body up to this size is read and dropped so the 413 arrives
MAX_MULTIPART_PARTS = 16
# RFC 2397: data:[<mediatype>][;base64],<data>, the media type optional (type/subtype, then ;attribute=value
# parameters, a value's characters URL-escaped); a token as RFC 2045's, a value's characters RFC 2396's uric.
_TOKEN = r"[!#$&'*+\-.^_`|~0-9A-Za-z]+"
_VALUE = r"(?:[\w\-.!~*'()/?:@&=+$]|%[0-9A-Fa-f]{2})*"
_DATA_URL = re.compile(rf"data:(?:{_TOKEN}/{_TOKEN})?(?:;{_TOKEN}={_VALUE})*(?P<base64>;base64)?,(?P<data>.*)",
                       re.IGNORECASE | re.DOTALL | re.ASCII)
_REJECTION_MESSAGES = {
    "empty": "The image is empty.",
    "too_large": "The image is too large.",
    "decompression_bomb": "The image has too many pixels (possible decompression bomb).",
    "side_too_long": "The image is too long or too wide.",
    "not_an_image": "This is not an image the server can read (PNG, JPEG, GIF, BMP, WebP or TIFF).",
    "unsupported_format": "This image format is not accepted (use PNG, JPEG, GIF, BMP, WebP or TIFF).",
    "corrupt": "The image is corrupt.",
    "truncated_or_corrupt": "The image is truncated or corrupt.",
    "no_ink": "There is no letter in the image.",
}


class ClientNotReading(ConnectionError):
    """The client read nothing of its answer within the idle timeout (its receive buffer full): no answer can reach
    it, as when it has closed the connection."""


class ArrivalCut(ConnectionAbortedError):
    """The request did not arrive whole within the request timeout: its 408 has been sent (:class:`_Arrival`) and the
    connection shut down, so nothing more is read from it or answered on it."""


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str, headers=()):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = tuple(headers)


class Backend:
    """Everything the handlers share: configuration, TF Serving router, feedback store, static files."""

    def __init__(self, config: WebConfig, router: ModelRouter | None = None, store: FeedbackStore | None = None):
        self.config = config
        self.router = router or ModelRouter(RestConnection(config.tf_serving_url, config.serving_timeout),
                                            config.model_name, config.canary_share, config.version_cache_seconds)
        self.store = store or FeedbackStore(config.feedback_dir)
        self.request_log = (RequestLogWriter(os.path.join(config.request_log_dir, REQUEST_LOG_NAME),
                                             config.request_log_sampling) if config.request_log_dir else None)
        self.static = {}
        for name in sorted(os.listdir(STATIC_DIR)):
            ext = os.path.splitext(name)[1]
            if ext in CONTENT_TYPES:
                with open(os.path.join(STATIC_DIR, name), "rb") as handle:
                    self.static[name] = (handle.read(), CONTENT_TYPES[ext])

    def check(self, data: bytes):
        try:
            return check_image(data, max_bytes=self.config.max_upload_bytes, max_pixels=self.config.max_image_pixels)
        except ImageRejected as err:
            status = 413 if err.reason == "too_large" else 400
            message = _REJECTION_MESSAGES.get(err.reason, "The image was rejected.")
            raise ApiError(status, err.reason, f"{message} ({err.detail})") from None

    def close(self) -> None:
        self.store.close()
        if self.request_log is not None:
            self.request_log.close()

    def predict(self, data: bytes, route: str | None, source: str = "unknown") -> dict:
        started = time.perf_counter()
        checked = self.check(data)
        try:
            prediction = self.router.predict(checked.data, route)
        except ServingUnavailable as err:
            raise ApiError(err.status, err.reason, _unavailable(err) + ("" if err.reason == "model_not_loaded"
                                                                         else " Try again later.")) from None
        except ServingRejected as err:
            raise ApiError(400, "model_rejected_image",
                           f"The model could not read this image: {own_words(err.message)}") from None
        except BadServingResponse as err:
            raise ApiError(502, "bad_serving_response", f"The model server answered unexpectedly: {err}") from None
        if self.request_log is not None:
            self.request_log.log(lambda: self._prediction_log(checked.data, prediction, source))
        answer = prediction.to_json()
        answer["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
        answer["image"] = {"format": checked.format, "mode": checked.mode, "width": checked.width,
                           "height": checked.height, "bytes": len(checked.data), "reencoded": checked.reencoded}
        if checked.reencoded:   # what was sent is not what the browser has: let the page show it
            answer["image"]["sent_format"] = checked.data_format
            answer["image"]["sent_b64"] = base64.b64encode(checked.data).decode("ascii")
        return answer

    def _prediction_log(self, image: bytes, prediction, source: str):
        outputs = {}
        if prediction.probabilities is not None:
            outputs[configs.PROBABILITIES_OUTPUT] = prediction_log.float_tensor([prediction.probabilities])
        return prediction_log.predict_log(self.config.model_name, configs.IMAGE_SIGNATURE, prediction.version,
                                          {configs.IMAGE_INPUT: prediction_log.bytes_tensor([image])}, outputs,
                                          self.request_log.sampling_rate, request_origin=source)

    def feedback(self, payload: dict) -> dict:
        data = _image_from_json(payload)
        label = payload.get("label")
        if label is None or label == "":   # (a number, the class's index, is an unknown label: the store says so)
            raise ApiError(400, "missing_field", "'label' (the true class, e.g. \"alef\") is required")
        checked = self.check(data)
        limit, pixels = self.config.max_file_bytes, self.config.pipeline_max_image_pixels
        if not trained_within(checked.data, checked.data_format, limit):   # (--max-upload-bytes above it)
            raise _not_trained(413, "too_large", f"{len(checked.data)} bytes is over the pipeline's {limit}-byte file "
                                                 f"limit ({configs.ENV['max_file_bytes']})")
        if checked.width * checked.height > pixels:   # (--max-image-pixels above it)
            raise _not_trained(400, "decompression_bomb",
                               f"{checked.width}x{checked.height} = {checked.width * checked.height} pixels is over "
                               f"the pipeline's {pixels}-pixel limit ({configs.ENV['max_image_pixels']})")
        try:
            record = self.store.add(checked.data, checked.data_format, label,
                                    predicted_label=payload.get("predicted_label"),
                                    probability=payload.get("probability"),
                                    model_version=payload.get("model_version"), route=payload.get("route"),
                                    model_name=self.config.model_name,   # the model this client asks
                                    width=checked.width, height=checked.height, once=True)
        except FeedbackError as err:   # the store checks the labels (unknown_label) and the other fields
            raise ApiError(409 if err.reason == "already_stored" else 400, err.reason, str(err)) from None
        except (OSError, FeedbackStoreError) as err:   # a full disk, a read-only or lost mount, a damaged
            log.error("feedback not stored: %s", err)     # database: nothing was kept
            if getattr(err, "gone", False):   # no retry helps: the store this client opened is no longer there
                raise ApiError(503, "not_stored", "the feedback could not be stored: the feedback store was removed "
                                                  "or replaced while the web client runs; nothing was saved, and "
                                                  "nothing will be until the web client is restarted") from None
            if isinstance(err, OSError):
                full, why = err.errno in (errno.ENOSPC, errno.EDQUOT), err.strerror or err
            else:
                full, why = err.full, "the disk is full" if err.full else "its database cannot be written"
            raise ApiError(507 if full else 503, "not_stored",
                           f"the feedback could not be stored ({why}); nothing was saved, try again later") from None
        return {"id": record.id, "stored": True, "label": record.true_label, "confirmed": record.confirmed,
                "created_at": record.created_at}

    def status(self) -> tuple[int, dict]:
        base = {"tf_serving_url": self.config.tf_serving_url, "model": self.config.model_name,
                "canary_share": self.config.canary_share}
        try:
            info = self.router.status()
        except ServingUnavailable as err:
            if err.status == 429:   # TF Serving is up and refusing work for now, as predict says (429, busy)
                return 429, dict(base, serving="busy", reason=err.reason, error=_unavailable(err))
            if err.status == 504:   # no answer in time: a busy server is slow, not down (as predict says)
                return 504, dict(base, serving="slow", reason=err.reason, error=_unavailable(err))
            return 503, dict(base, serving="down", reason=err.reason, error=_unavailable(err))
        except BadServingResponse as err:
            return 502, dict(base, serving="error", reason="bad_serving_response", error=str(err))
        if not info["available"]:   # it answers, its versions loading (or failed to load): said as predict says it
            states = ", ".join(f"version {v['version']} {v['state']}" for v in info["versions"])
            err = ServingUnavailable("model_not_loaded", f"TF Serving has no available version of model "
                                                         f"{self.config.model_name!r} ({states or 'no version'})")
            return 503, dict(base, serving="down", reason=err.reason, versions=info["versions"],
                             error=_unavailable(err))
        return 200, dict(base, serving="up", versions=info["versions"])


def _unavailable(err: ServingUnavailable) -> str:
    """The model server is down, busy (429), slow (504: no answer within --serving-timeout, or TF Serving's own
    deadline), or up without the model asked for (a mistyped name, nothing pushed yet)."""
    if err.reason == "model_not_loaded":
        return f"The model server answers but cannot serve the model: {err.message}."
    if err.status == 429:
        return f"The model server is busy: {err.message}."
    if err.status == 504:
        return f"The model server is slow: {err.message}; it may be busy."
    return f"The model server is down: {err.message}."


def _not_trained(status: int, reason: str, detail: str) -> ApiError:
    """The refusal of feedback the pipeline would not read (``detail``: which of its limits the image is over),
    though this client, under a higher limit, recognises the image; ``status`` and ``reason`` as :meth:`Backend.check`
    gives them for an image over this client's own limit."""
    return ApiError(status, reason, f"{_REJECTION_MESSAGES[reason]} ({detail}: it is recognised, not stored as "
                                    "feedback, as training would not read it)")


def _image_from_json(payload: dict) -> bytes:
    value = payload.get("image")
    if value is None:
        raise ApiError(400, "missing_field", "'image' (base64-encoded image bytes) is required")
    if isinstance(value, dict) and set(value) == {"b64"}:
        value = value["b64"]
    if not isinstance(value, str):
        raise ApiError(400, "bad_base64", "'image' must be a base64 string")
    value = value.strip()
    data = _data_url(value) if value[:5].lower() == "data:" else _base64(value)
    if not data:
        raise ApiError(400, "empty", "The image is empty.")
    return data


def _data_url(value: str) -> bytes:
    """The bytes of an RFC 2397 data: URL: its data base64-decoded (;base64) or as they are, URL-unescaped."""
    data_url = _DATA_URL.fullmatch(value)
    if data_url is None:
        raise ApiError(400, "bad_base64", "'image' is not a valid data: URL (data:[<media type>][;base64],<data>, "
                                          "RFC 2397)")
    if data_url["base64"]:
        return _base64(urllib.parse.unquote(data_url["data"]))
    return urllib.parse.unquote_to_bytes(data_url["data"])


def _base64(value: str) -> bytes:
    """The bytes of base64 text as the model server reads a {"b64": ...} value (padding may be left out)."""
    try:
        return base64_text.decode(value)
    except ValueError:
        raise ApiError(400, "bad_base64", "'image' is not valid base64") from None


def _parse_json(body: bytes) -> dict:
    try:
        payload = json_text.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(400, "bad_json", "the request body is not UTF-8 JSON") from None
    except json_text.NestedTooDeep:
        raise ApiError(400, "bad_json", "the request body nests arrays or objects too deeply") from None
    except json.JSONDecodeError as err:
        raise ApiError(400, "bad_json", f"the request body is not valid JSON ({err.msg} at offset {err.pos})") \
            from None
    except ValueError as err:   # an integer past Python's digit limit, say
        raise ApiError(400, "bad_json", f"the request body is not valid JSON ({err})") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "bad_json", "the request body must be a JSON object")
    return payload


def _parse_multipart(content_type: str, body: bytes) -> dict:
    """Fields of a multipart/form-data body: name -> bytes (files) or str (text)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    # The boundary the parser below splits by, read by that parser from the same head: not any "boundary=" text,
    # and an RFC 2231 boundary*= before a plain boundary= (which a compat32 Message would have read instead).
    boundary = parser.parsebytes(head, headersonly=True).get_boundary()
    if not boundary:
        raise ApiError(400, "bad_multipart", "multipart/form-data without a boundary")
    if body.count(b"--" + boundary.encode("latin-1", "replace")) > MAX_MULTIPART_PARTS + 1:
        # The email parser takes seconds of CPU over a few megabytes of tiny parts; the page sends two or three.
        raise ApiError(400, "bad_multipart", f"more than {MAX_MULTIPART_PARTS} parts in the multipart body")
    message = parser.parsebytes(head + body)
    if not message.is_multipart():
        raise ApiError(400, "bad_multipart", "the multipart body could not be parsed")
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        fields[name] = payload if part.get_filename() is not None else payload.decode("utf-8", "replace")
    return fields


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # headers and body go out in separate writes: no 40 ms delayed-ACK stalls
    server_version = "letters-web"
    sys_version = ""
    backend: Backend   # set by WebServer.attach

    def version_string(self):
        return self.server_version

    request_timeout: float = 30.0   # set on the server class (WebConfig.request_timeout)
    kept_alive = False              # a request was answered on this connection, which waits for the next
    _admitted = True                # its request began before the server was stopped (else a 503 stopping)

    def handle_one_request(self):
        """One request, which must arrive whole (head and body) within ``request_timeout`` of its first byte:
        the socket's own timeout (the idle timeout) restarts with every byte, so a client trickling its request
        would hold this handler thread for as long as it likes. The wait for a request's first byte is the idle
        timeout's; a kept-alive connection is idle during it, and the server may close it to make room for a new
        one (not a new connection, whose first request may be on its way). Idle means nothing of the next request
        at hand (read ahead with the last one, a pipelined request, or in the socket), and the wait reads nothing:
        bytes that arrive stay in the socket, where the server sees them and leaves the connection alone until the
        handler has said it is busy."""
        started = False   # counted as being answered (WebServer.request_started), which drain() waits for
        try:
            if self.kept_alive and not self._at_hand():
                if not self.server.connection_idle(self.connection):   # the server is stopping: no next request
                    self.close_connection = True
                    return
                ready = _readable(self.connection, self.timeout)
                # Busy before a byte is read; unless the server closed it meanwhile (its next request had not
                # begun), or is stopping.
                started = self.server.connection_busy(self.connection)
                if not started or not ready:
                    self.close_connection = True
                    return
            try:
                arrived = bool(self.rfile.peek(1))
            except (TimeoutError, OSError):
                arrived = False
            if not arrived:                           # the client closed it, or sent nothing within the timeout
                self.close_connection = True
                return
            # A request that begins after the stop is answered 503 (_dispatch), and waited for all the same.
            self._admitted = started or self.server.request_started()
            started = True
            self._arrival = _Arrival(self.connection, self.request_timeout)
            try:
                super().handle_one_request()
            finally:
                self._arrival.done()
            self.kept_alive = True
        finally:
            if started:
                self.server.request_finished()

    def _at_hand(self) -> bool:
        """Whether bytes of a next request are at hand without waiting: read ahead with the last request (a
        pipelined one) or in the socket."""
        timeout = self.connection.gettimeout()
        self.connection.settimeout(0)                 # peek returns b"" where it would wait
        try:
            return bool(self.rfile.peek(1))
        except OSError:                               # (the read that follows meets it and ends the connection)
            return True
        finally:
            self.connection.settimeout(timeout)

    def _arrived(self) -> bool:
        """The request has arrived whole: its deadline no longer applies (the answer may take longer). False if
        the deadline had passed (the connection is cut, a 408 sent)."""
        arrival = getattr(self, "_arrival", None)
        return arrival is None or arrival.done()

    # -- plumbing ------------------------------------------------------------------------------------------
    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)

    @classmethod
    def fields(cls, content_type: str, length: int, headers=(), cache: str = "no-store") -> list[tuple[str, str]]:
        """The header fields of every answer of this server, after its status line: the 408 of a request cut at its
        deadline (_Arrival, written on another thread) as every other."""
        return [("Server", cls.server_version), ("Date", email.utils.formatdate(usegmt=True)),
                ("Content-Type", content_type), ("Content-Length", str(length)), ("Cache-Control", cache),
                *SECURITY_HEADERS, *headers]

    def _send(self, status: int, body: bytes, content_type: str, headers=(), cache: str = "no-store"):
        self.log_request(status)
        self.send_response_only(status)
        for key, value in self.fields(content_type, len(body), headers, cache):
            self.send_header(key, value)
        if self.server.stopping:   # no next request on this connection: the server stops once it is answered
            self.close_connection = True
        if self.close_connection and not any(key.lower() == "connection" for key, _ in headers):
            self.send_header("Connection", "close")
        try:
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except TimeoutError:   # the client reads nothing of its answer: gone as much as one that closed
            raise ClientNotReading(f"the client read nothing of its answer within {self.timeout:g} s") from None

    def _json(self, status: int, payload: dict, headers=()):
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8", headers)

    def send_error(self, code, message=None, explain=None):
        """The standard library's own refusals (a request line or version it cannot read, an unknown method, a URI
        or headers too long) as JSON with the security headers, as every other answer; the connection closed."""
        self.close_connection = True
        if not self._arrived():   # the request's deadline cut the connection: its 408 was the answer
            return
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":   # a request line it could not read:
            self.request_version = "HTTP/1.1"   # answered with a status line and headers, not a bare HTTP/0.9 body
        reason = {404: "not_found", 405: "method_not_allowed", 408: "timeout", 414: "uri_too_long",
                  431: "headers_too_large", 501: "not_implemented", 505: "http_version_not_supported"}
        short = self.responses.get(code, ("error",))[0]
        try:
            self._json(code, {"error": message or short, "reason": reason.get(code, "bad_request")},
                       [("Connection", "close")])
        except ConnectionError as err:
            self._client_closed(err)

    def _client_closed(self, err: ConnectionError) -> None:
        """The client went away (a closed tab, a cancelled upload) before its answer was written, or its request was
        cut at the request timeout (:class:`ArrivalCut`, its 408 sent): nothing more to answer, and no error of this
        server's."""
        self.close_connection = True
        request = (f"{self.command} {self.path}" if self.command and hasattr(self, "path")
                   else getattr(self, "requestline", "")[:100] or "a request")
        if isinstance(err, ClientNotReading):
            log.info("%s: %s; the connection is closed", request, err)
        elif isinstance(err, ArrivalCut):   # this server's own timeout, not the client's close
            log.info("%s: %s (408); the connection is closed", request, err)
        else:
            log.info("%s: the client closed the connection (%s)", request, type(err).__name__)

    def _error(self, err: ApiError):
        if err.status >= 500:
            log.warning("%s %s -> %d %s", self.command, self.path, err.status, err.message)
        self._json(err.status, {"error": err.message, "reason": err.reason}, err.headers)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise ApiError(411, "length_required", "send the body with a Content-Length (chunked is not accepted)")
        values = self.headers.get_all("Content-Length") or []
        if not values:
            raise ApiError(411, "length_required", "a Content-Length header is required")
        # RFC 9112 6.3: digits only, and several headers only if they agree; anything else could let a proxy and
        # this server frame the message differently (a request smuggled in a body).
        lengths = {v.strip().lstrip("0") or "0" for value in values for v in value.split(",")}
        if len(lengths) != 1 or not all(v.isascii() and v.isdigit() for v in lengths):
            self.close_connection = True
            raise ApiError(400, "bad_request", "invalid Content-Length", headers=[("Connection", "close")])
        digits = lengths.pop()
        length = int(digits) if len(digits) <= 18 else 10 ** 18   # (int() refuses past 4,300 digits)
        limit = self.backend.config.max_body_bytes
        if length > limit:
            self.close_connection = True
            if length <= MAX_DRAIN_BYTES:   # read and drop it, so that the client sees the 413 and not a reset
                remaining = length
                try:
                    while remaining > 0:
                        chunk = self._read(min(remaining, 1 << 16))
                        if not chunk:
                            break
                        remaining -= len(chunk)
                except TimeoutError:        # stalled past the idle timeout: the 413 is its answer all the same
                    pass
                if not self._arrived():     # cut at the request timeout: the 408 has been sent
                    raise self._arrival_cut()
            raise ApiError(413, "too_large", f"the request body ({length} bytes) is over the {limit}-byte limit "
                           f"(images up to {self.backend.config.max_upload_bytes} bytes)",
                           headers=[("Connection", "close")])
        try:
            body = self._read(length)
        except TimeoutError:
            self.close_connection = True
            raise ApiError(408, "timeout", f"the request body did not arrive within {self.timeout:g} s",
                           headers=[("Connection", "close")]) from None
        if not self._arrived():            # cut at the request timeout: the 408 has been sent
            self.close_connection = True
            raise self._arrival_cut()
        if len(body) != length:
            self.close_connection = True
            raise ApiError(400, "bad_request", "the request body is shorter than its Content-Length")
        return body

    def _read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the body. A reset read after the request timeout's shutdown (a handler scheduled
        late reads the client's reset, not the end) is that timeout (:class:`ArrivalCut`), not the client's close."""
        try:
            return self.rfile.read(size)
        except ConnectionError:
            if self._arrived():
                raise
            self.close_connection = True
            raise self._arrival_cut() from None

    def _arrival_cut(self) -> ArrivalCut:
        return ArrivalCut(f"the request did not arrive whole within {self.request_timeout:g} s")

    def _content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()

    def _dispatch(self, routes: dict):
        if self.command != "POST" and not self._arrived():   # cut while its head arrived: the 408 is sent
            self.close_connection = True
            return
        try:
            if self._admitted:
                self._route(routes)
            else:   # it began after the stop (the first of a connection opened before it): refused, its body unread
                self.close_connection = True
                self._error(ApiError(503, "stopping", "the web client is stopping; send the request again",
                                     headers=[("Connection", "close")]))
        except ConnectionError as err:
            self._client_closed(err)

    def _route(self, routes: dict):
        path = urllib.parse.urlsplit(self.path).path
        if self.command != "POST" and (self.headers.get("Transfer-Encoding") is not None
                                       or self.headers.get("Content-Length", "0").strip() not in ("", "0")):
            self.close_connection = True   # a body no route reads must not be taken for the next request
        try:
            handler = routes.get(path)
            if handler is None:
                if self.command in ("GET", "HEAD") and path.startswith("/static/") \
                        and path[len("/static/"):] in self.backend.static:
                    return self._static(path[len("/static/"):])
                self.close_connection = True      # its body is not read: it must not be taken for the next request
                allowed = self._allowed(path)
                if allowed:
                    raise ApiError(405, "method_not_allowed", f"{self.command} is not allowed on {path}",
                                   headers=[("Allow", allowed), ("Connection", "close")])
                raise ApiError(404, "not_found", f"no such route: {path[:100]}", headers=[("Connection", "close")])
            return handler()
        except ApiError as err:
            self._error(err)
        except ConnectionError:
            raise
        except Exception:   # a bug: say so without details
            log.exception("%s %s failed", self.command, self.path)
            self._error(ApiError(500, "internal_error", "internal error"))

    def _get_routes(self):
        return {"/": self._index, "/index.html": self._index, "/healthz": self._healthz,
                "/api/status": self._status, "/api/classes": self._classes,
                "/favicon.ico": self._favicon}

    def _post_routes(self):
        return {"/api/predict": self._predict, "/api/feedback": self._feedback}

    def _allowed(self, path: str) -> str:
        """The methods ``path`` answers (a 405's Allow header); "" for no such route."""
        if path in self._get_routes() or path.startswith("/static/") and path[len("/static/"):] in self.backend.static:
            return "GET, HEAD"
        return "POST" if path in self._post_routes() else ""

    def do_GET(self):
        self._dispatch(self._get_routes())

    do_HEAD = do_GET

    def do_POST(self):
        self._dispatch(self._post_routes())

    def _reject_method(self):
        self._dispatch({})                        # no route takes this method: 405 with Allow, or 404

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _reject_method

    # -- routes --------------------------------------------------------------------------------------------
    def _static(self, name: str):
        body, content_type = self.backend.static[name]
        self._send(200, body, content_type, cache="no-cache")

    def _index(self):
        self._static("index.html")

    def _favicon(self):
        self._static("favicon.svg")

    def _healthz(self):
        self._json(200, {"status": "ok"})

    def _status(self):
        status, payload = self.backend.status()
        self._json(status, payload)

    def _classes(self):
        self._json(200, {"classes": [{"index": i, "class": name, "letter": glyph}
                                     for i, (name, glyph) in enumerate(zip(CLASS_NAMES, GLYPHS))],
                         "max_upload_bytes": self.backend.config.max_upload_bytes})

    def _predict(self):
        kind = self._content_type()
        body = self._read_body()
        route = source = None
        if kind == "application/json":
            payload = _parse_json(body)
            data = _image_from_json(payload)
            route, source = payload.get("route"), payload.get("source")
        elif kind == "multipart/form-data":
            fields = _parse_multipart(self.headers.get("Content-Type", ""), body)
            data = fields.get("image")
            if not isinstance(data, bytes):
                raise ApiError(400, "missing_field", "a file field named 'image' is required")
            route, source = fields.get("route") or None, fields.get("source") or None
        elif kind.startswith("image/") or kind == "application/octet-stream":
            data = body
        else:
            raise ApiError(415, "unsupported_media_type",
                           "send application/json {\"image\": base64}, multipart/form-data with an 'image' "
                           "file, or the raw image bytes")
        if route is not None and route not in ROUTES:
            raise ApiError(400, "bad_route", f"route must be one of {', '.join(ROUTES)}")
        if source is not None and source not in SOURCES:
            raise ApiError(400, "bad_source", f"source must be one of {', '.join(SOURCES)}")
        self._json(200, self.backend.predict(data, route, source or "unknown"))

    def _feedback(self):
        if self._content_type() != "application/json":
            self._read_body()
            raise ApiError(415, "unsupported_media_type", "send application/json")
        payload = _parse_json(self._read_body())
        self._json(201, self.backend.feedback(payload))


class _Arrival:
    """The deadline of one request's arrival: past it, a 408 is sent and the connection shut down (the handler's
    read then ends at once); :meth:`done` stops it."""

    def __init__(self, connection: socket.socket, seconds: float):
        self.connection = connection
        self.seconds = seconds
        self._deadline = WATCHDOG.call_later(seconds, self._cut)

    def _cut(self) -> None:
        body = json.dumps({"error": f"the request did not arrive whole within {self.seconds:g} s",
                           "reason": "timeout"}).encode()
        fields = Handler.fields("application/json; charset=utf-8", len(body), [("Connection", "close")])
        head = f"{Handler.protocol_version} 408 {Handler.responses[408][0]}\r\n" + \
            "".join(f"{key}: {value}\r\n" for key, value in fields) + "\r\n"
        # Never waiting: this runs on the one thread that keeps every deadline. A socket with a timeout is
        # non-blocking underneath (Python waits in poll() for it, which socket.send would do here too), so the
        # bytes go to its descriptor directly; a client whose buffer is full gets no 408, only the close.
        if self.connection.gettimeout() is not None:
            try:
                os.write(self.connection.fileno(), head.encode("latin-1") + body)
            except OSError:
                pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def done(self) -> bool:
        """Stops the deadline; whether the request arrived in time."""
        return self._deadline.cancel()


def _readable(connection: socket.socket, timeout: float | None = 0.0) -> bool:
    """Whether bytes, or the client's close, wait to be read on ``connection``, waiting for them up to ``timeout``
    seconds (None: without end); nothing is read."""
    poller = select.poll()
    poller.register(connection, select.POLLIN)
    return bool(poller.poll(None if timeout is None else timeout * 1000))


class WebServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a bound on the connections handled at once (a thread each) and a deep listen
    queue. When every slot is taken, a new connection closes the longest idle keep-alive connection (waiting for
    its next request, as nginx reuses connections) once it has been idle ``idle_grace`` seconds, or, with none
    idle so long, waits in the listen queue."""

    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address, handler, max_threads: int, idle_grace: float):
        self._max_threads = max_threads
        self._idle_grace = idle_grace
        self._room = threading.Condition()   # guards the three below
        self._open = 0                       # connections with a handler thread
        self._idle = {}                      # kept-alive socket -> since when (monotonic) it waits for a request,
                                             # longest idle first
        self._closing = set()                # idle sockets shut down to make room, their threads not yet ended
        self._busy = 0                       # requests being answered (not idle keep-alive connections)
        self._quiet = threading.Condition()  # guards the one above
        self.stopping = False                # shutdown() was called (set under _room): no new requests are taken
        super().__init__(address, handler)

    @property
    def url(self) -> str:
        """``http://<host>:<port>`` of the listening socket, an IPv6 address in brackets (RFC 3986)."""
        return f"http://{settings.host_port(*self.server_address[:2])}"

    def attach(self, backend: "Backend") -> None:
        """The backend the handlers answer with; before the first request is served."""
        self.backend = backend
        self.RequestHandlerClass.backend = backend

    def request_started(self) -> bool:
        """A request is being answered, from its first byte (until :meth:`request_finished`); False when it began
        after :meth:`shutdown` (then to be refused, still waited for by :meth:`drain`)."""
        with self._quiet:
            self._busy += 1
            return not self.stopping

    def request_finished(self) -> None:
        with self._quiet:
            self._busy -= 1
            self._quiet.notify_all()

    def shutdown(self) -> None:
        """Stops taking requests: no new connections (the listening socket closed once :meth:`serve_forever` has
        stopped), the kept-alive ones waiting for their next request closed (their next request is not read, its
        bytes at hand or not), a request that begins after the stop on a connection it had not reached yet (a new
        connection's first, one read ahead with the last answer) refused with a 503, the requests being answered
        answered with ``Connection: close``. :meth:`drain` waits for the answers."""
        with self._room:
            self.stopping = True
            for connection in list(self._idle):
                self._close_idle(connection)
        super().shutdown()
        # No new connection: the listening socket closed (a connect is refused, as the model server's at its stop),
        # where the kernel would go on completing handshakes into its queue, never accepted, reset at the exit. The
        # connections accepted are their own sockets: the requests being answered are not disturbed.
        self.socket.close()

    def drain(self, timeout: float) -> bool:
        """After shutdown(): waits until the requests being answered are answered (from their first byte: a head
        or body still arriving too, within the idle and request timeouts); idle connections are not waited for.
        True when none is left."""
        with self._quiet:
            return self._quiet.wait_for(lambda: self._busy == 0, timeout)

    def connection_idle(self, connection: socket.socket) -> bool:
        """The handler of a kept-alive ``connection`` waits for its next request, nothing of which it has read:
        it may be closed for room while no byte waits on it. False when the server is stopping: it waits for none."""
        with self._room:
            if self.stopping:
                return False
            self._idle[connection] = time.monotonic()
            self._room.notify_all()
            return True

    def connection_busy(self, connection: socket.socket) -> bool:
        """The wait for a request on ``connection`` is over: it is no longer closed for room, and is counted as a
        request being answered (:meth:`request_started`, before a stop can come between). False when it was closed
        already, or the server is stopping (its next request is not read)."""
        with self._room:
            self._idle.pop(connection, None)
            if connection in self._closing or self.stopping:
                return False
            return self.request_started()   # (True: stopping is set under _room alone)

    def _take_slot(self) -> None:
        """Waits until a new connection may have a thread, closing the longest idle connection when every slot
        is taken (one at a time: its thread ends and frees the slot), once it has been idle ``idle_grace`` seconds:
        a connection is idle from the moment its answer is written, and a client sending requests back to back is
        sending its next one then. One on which bytes wait is left alone: its next request is arriving (or the
        client closed it, and its thread ends anyway)."""
        with self._room:
            while self._open >= self._max_threads:
                wait = None   # until a connection is idle or a thread ends
                if not self._closing:
                    longest = next(((idle, since) for idle, since in self._idle.items() if not _readable(idle)), None)
                    if longest is not None:
                        wait = longest[1] + self._idle_grace - time.monotonic()
                        if wait <= 0:
                            self._close_idle(longest[0])
                            wait = None
                self._room.wait(wait)
            self._open += 1

    def _close_idle(self, connection: socket.socket) -> None:
        """Closes an idle kept-alive ``connection`` (with ``_room`` held): its handler's wait returns, and it ends."""
        del self._idle[connection]
        self._closing.add(connection)
        try:
            connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _free_slot(self, connection: socket.socket) -> None:
        """The thread of ``connection`` has ended (or never started): its slot is free."""
        with self._room:
            self._open -= 1
            self._idle.pop(connection, None)
            self._closing.discard(connection)
            self._room.notify_all()

    def process_request(self, request, client_address):
        self._take_slot()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._free_slot(request)
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._free_slot(request)


class RunningWeb:
    """A started backend: ``.url``, ``.backend``, ``.stop()``; a context manager."""

    def __init__(self, server: WebServer, backend: Backend, thread: threading.Thread):
        self.server = server
        self.backend = backend
        self.thread = thread
        self.port = server.server_address[1]
        self.url = server.url

    def stop(self):
        self.server.shutdown()
        self.server.drain(5)
        self.server.server_close()
        self.thread.join(10)
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def bind(config: WebConfig) -> WebServer:
    """A server listening on ``config.host``:``config.port``, its backend not yet attached (:meth:`WebServer.attach`):
    a port that is taken is found before the backend creates its feedback store or opens its request log."""
    # ``timeout``: an idle keep-alive connection or a stalled request is closed after it (an idle one sooner when
    # a new connection needs its thread), so that clients that send nothing cannot hold all of the handler threads.
    handler = type("LettersHandler", (Handler,), {"timeout": config.idle_timeout,
                                                   "request_timeout": config.request_timeout})
    server_class = WebServer
    if ":" in config.host:
        server_class = type("WebServer6", (WebServer,), {"address_family": socket.AF_INET6})
    return server_class((config.host, config.port), handler, config.max_handler_threads, config.idle_grace)


def make_server(config: WebConfig, backend: Backend | None = None) -> WebServer:
    """:func:`bind`, then the backend (``Backend(config)`` when none is given) attached; the socket is closed
    when the backend cannot be made."""
    server = bind(config)
    try:
        server.attach(backend or Backend(config))
    except BaseException:
        server.server_close()
        raise
    return server


def start(config: WebConfig, backend: Backend | None = None) -> RunningWeb:
    """Starts the backend in a background thread (port 0 = a free port)."""
    server = make_server(config, backend)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                              name="letters-web")
    thread.start()
    return RunningWeb(server, server.backend, thread)

