"""A small HTTP/1.1 server on asyncio: keep-alive, pipelining, Content-Length and chunked request bodies, bounds on
the request head and body, read timeouts, and a graceful stop that lets in-flight requests finish.

It knows nothing about TF Serving: every request goes to ``handler(method, target, headers, body)``, a
coroutine returning ``(status, [(header, value), ...], body bytes)``. ``headers`` maps lower-case names to values.
A handler that raises ``RequestError`` refuses the request as the layer itself does (below).

What it refuses (libevent's evhttp_send_error page, ``error_page``, then the connection is closed):

* 400 - a malformed request line (an HTTP major version above 1 too) or header line; obsolete line folding;
  ``Content-Length`` together with ``Transfer-Encoding`` or two different ``Content-Length`` values (request
  smuggling); a ``Transfer-Encoding`` whose last coding is not ``chunked``;
* 408 - a request head (request line + headers) that has not fully arrived ``header_timeout`` seconds after its
  first byte (slow-header clients such as slowloris);
* 413 - a body larger than ``max_body_bytes``; a malformed chunk (libevent's EVREQ_HTTP_DATA_TOO_LONG);
* 417 - an ``Expect`` other than ``100-continue`` (which is answered ``100 Continue`` before the body is read);
* 414 / 431 - a request line / request head larger than ``MAX_HEAD_BYTES``, or more than ``MAX_HEADERS`` headers;
* 501 - a transfer coding other than ``chunked``; 505 - HTTP/0.x.

Timeouts: ``header_timeout`` (above); ``idle_timeout`` closes a keep-alive connection on which no new request
starts, a body that stops arriving and a client that stops reading its answers. ``None`` disables either.
"""
from __future__ import annotations

import asyncio
import email.utils
import logging
import re

log = logging.getLogger("serving.http")

MAX_HEAD_BYTES = 64 * 1024        # request line + headers (and the trailer section of a chunked body)
MAX_HEADERS = 100
READ_SIZE = 256 * 1024            # bytes asked from the stream per read of a body
SWEEP_SECONDS = 0.25              # how often expired waits are ended (the timeouts' resolution)

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DIGITS = re.compile(rb"[0-9]+")
_VERSION = re.compile(r"HTTP/([0-9]{1,9})\.([0-9]{1,9})")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\r\n]*)?\r?\n")
# libevent's reason phrases (http.c, evhttp_response_phrase_internal), which TF Serving's status lines and error
# pages carry (it replies with no reason of its own): indexed by the code's last two digits within its class, a code
# past the end of its class's list gets the class's name ("Client Error" for 429, 431 and 499).
_PHRASES = {
    1: ("Informational", ["Continue", "Switching Protocols"]),
    2: ("Success", ["OK", "Created", "Accepted", "Non-Authoritative Information", "No Content", "Reset Content",
                    "Partial Content"]),
    3: ("Redirection", ["Multiple Choices", "Moved Permanently", "Found", "See Other", "Not Modified", "Use Proxy",
                        "Temporary Redirect"]),
    4: ("Client Error", ["Bad Request", "Unauthorized", "Payment Required", "Forbidden", "Not Found",
                         "Method Not Allowed", "Not Acceptable", "Proxy Authentication Required", "Request Time-out",
                         "Conflict", "Gone", "Length Required", "Precondition Failed", "Request Entity Too Large",
                         "Request-URI Too Large", "Unsupported Media Type", "Requested range not satisfiable",
                         "Expectation Failed"]),
    5: ("Server Error", ["Internal Server Error", "Not Implemented", "Bad Gateway", "Service Unavailable",
                         "Gateway Time-out", "HTTP Version not supported"]),
}
DEFAULT_CONTENT_TYPE = "text/html; charset=ISO-8859-1"   # evhttp_new: evhttp_set_default_content_type
PAGE_HEADERS = [("Content-Type", "text/html"), ("Connection", "close")]   # evhttp_send_page_


def reason(status: int) -> str:
    """The reason phrase libevent gives ``status`` (evhttp_response_phrase_internal)."""
    if status // 100 not in _PHRASES:
        return "Unknown Status Class"
    name, phrases = _PHRASES[status // 100]
    return phrases[status % 100] if status % 100 < len(phrases) else name


class RequestError(Exception):
    """A request the server refuses (before it reaches the handler, or by the handler): libevent's page answers
    it and the connection is closed after the answer."""

    def __init__(self, status: int, message: str, limit: bool = False):
        super().__init__(message)
        self.status = status
        self.message = message
        self.limit = limit   # this server's own limit (libevent has none): its page says which, as a reason


class RequestHead:
    """The parsed request line and headers of one request."""

    __slots__ = ("method", "target", "version", "headers", "chunked", "length", "connection")

    def __init__(self, method: str, target: str, version: str, headers: dict, chunked: bool, length: int,
                 connection: str = ""):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.chunked = chunked          # body framed by Transfer-Encoding: chunked
        self.length = length            # else: Content-Length (0 when absent)
        self.connection = connection    # the first Connection header's value, lowercased (evhttp_find_header's)

    @property
    def keep_alive(self) -> bool:
        """As libevent decides by the first Connection header: closed on exactly "close", an HTTP/1.0 connection
        unless "keep-alive" starts it."""
        if self.connection == "close":
            return False
        return self.version != "HTTP/1.0" or self.connection.startswith("keep-alive")


def parse_head(head: bytes) -> RequestHead:
    """The request line and headers of ``head`` (which ends with the empty line); RequestError if malformed."""
    lines = head.split(b"\n")
    request_line = lines[0].rstrip(b"\r")
    parts = request_line.split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1] or not _TOKEN.fullmatch(parts[0]):
        raise RequestError(400, "Malformed request line")
    method, target, version = (part.decode("latin-1") for part in parts)
    numbers = _VERSION.fullmatch(version)
    if numbers is None or int(numbers.group(1)) > 1:    # evhttp_parse_http_version: HTTP/2.0 is malformed
        raise RequestError(400, "Malformed request line")
    if int(numbers.group(1)) == 0:
        raise RequestError(505, f"HTTP version {version} is not supported")
    version = f"HTTP/1.{int(numbers.group(2))}"        # HTTP/1.2 is served as libevent serves it
    header_lines = [line.rstrip(b"\r") for line in lines[1:]]
    while header_lines and not header_lines[-1]:
        header_lines.pop()
    if len(header_lines) > MAX_HEADERS:
        raise RequestError(431, f"More than {MAX_HEADERS} header fields", limit=True)
    headers: dict[str, str] = {}
    lengths = set()
    connection = ""
    for line in header_lines:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name) or b"\r" in value:   # also obs-fold, space before the colon
            raise RequestError(400, "Malformed header line")
        key = name.decode("latin-1").lower()
        text = value.strip(b" \t").decode("latin-1")
        if key == "content-length":
            lengths.update(item.strip() for item in text.split(","))
        elif key == "connection" and key not in headers:
            connection = text.lower()
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    chunked = "transfer-encoding" in headers
    if chunked:
        if lengths:
            raise RequestError(400, "Content-Length and Transfer-Encoding together")
        if version == "HTTP/1.0":
            raise RequestError(400, "Transfer-Encoding in an HTTP/1.0 request")
        codings = [item.strip().lower() for item in headers["transfer-encoding"].split(",")]
        if codings[-1] != "chunked":
            raise RequestError(400, "Transfer-Encoding must end with chunked")
        if any(coding != "chunked" for coding in codings) or len(codings) > 1:
            raise RequestError(501, f"Transfer-Encoding {headers['transfer-encoding']} is not implemented")
    length = 0
    if lengths:
        if len(lengths) != 1 or not _DIGITS.fullmatch(next(iter(lengths)).encode("latin-1")):
            raise RequestError(400, "bad Content-Length")
        length = int(lengths.pop())
    return RequestHead(method, target, version, headers, chunked, length, connection)


class _Connection:
    """One client connection's state: whether a request is in flight, and when the current wait expires."""

    __slots__ = ("writer", "busy", "deadline", "expiry_message")

    def __init__(self, writer: asyncio.StreamWriter):
        self.writer = writer
        self.busy = False               # a request is being read or answered
        self.deadline = None            # loop time at which the current wait gives up (None: no limit)
        self.expiry_message = None      # answered with 408 at expiry; None: the connection is just dropped

    def expire(self) -> None:
        self.deadline = None
        if self.expiry_message is not None:
            log.debug("408: %s", self.expiry_message)
            self.writer.write(_response(408, PAGE_HEADERS, error_page(408, self.expiry_message), close=True))
            self.writer.close()
        else:
            self.writer.transport.abort()


class HttpServer:
    def __init__(self, handler, host: str, port: int, max_body_bytes: int,
                 header_timeout: float | None = 10.0, idle_timeout: float | None = 60.0):
        self.handler = handler
        self.host = host
        self.port = port
        self.max_body_bytes = max_body_bytes
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self._server = None
        self._sweeper = None
        self._connections: dict[asyncio.StreamWriter, _Connection] = {}
        self._closing = False
        self._now = None

    @property
    def connections(self) -> int:
        """Open client connections."""
        return len(self._connections)

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._now = loop.time
        self._server = await asyncio.start_server(self._client, self.host, self.port, limit=MAX_HEAD_BYTES,
                                                  reuse_address=True, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        timeouts = [t for t in (self.header_timeout, self.idle_timeout) if t]
        if timeouts:
            self._sweeper = loop.create_task(self._sweep(min(SWEEP_SECONDS, min(timeouts) / 4)))
        return self.port

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stops accepting, closes idle connections and waits (bounded) for in-flight requests."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections.values()):
            if not connection.busy:
                connection.writer.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        while any(c.busy for c in self._connections.values()) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for connection in list(self._connections.values()):
            connection.writer.close()
        if self._sweeper is not None:
            self._sweeper.cancel()

    async def _sweep(self, interval: float) -> None:
        """Ends the waits that passed their deadline. One timer for all connections: a request costs no timer."""
        while True:
            await asyncio.sleep(interval)
            now = self._now()
            for connection in list(self._connections.values()):
                if connection.deadline is not None and connection.deadline <= now:
                    connection.expire()

    def _expect(self, connection: _Connection, timeout: float | None, message: str | None = None) -> None:
        connection.deadline = self._now() + timeout if timeout else None
        connection.expiry_message = message

    # ------------------------------------------------------------------------------------------ reading
    async def _read_head(self, reader: asyncio.StreamReader, connection: _Connection) -> bytes | None:
        """The next request's head (request line to the empty line), None at a clean end of the connection."""
        self._expect(connection, self.idle_timeout)     # an idle keep-alive connection is closed without answer
        while (first := await reader.readexactly(1)) in b"\r\n":
            pass                                        # empty lines before a request line (RFC 9112 2.2)
        connection.busy = True
        if self.header_timeout:
            self._expect(connection, self.header_timeout,
                         f"The request head did not arrive within {self.header_timeout:g} s")
        # Line by line to the empty line, each ended by CRLF or a bare LF, as libevent reads them
        # (evbuffer_readln with EVBUFFER_EOL_CRLF): a head of bare LFs had waited for a CRLFCRLF until its 408.
        head = first
        try:
            while True:
                line = await reader.readuntil(b"\n")
                head += line
                if len(head) > MAX_HEAD_BYTES:
                    raise asyncio.LimitOverrunError("head too long", 0)
                if line in (b"\n", b"\r\n") and head.count(b"\n") > 1:
                    return head
        except asyncio.LimitOverrunError:
            if b"\n" not in head:   # still in the request line
                raise RequestError(414, f"Request line longer than {MAX_HEAD_BYTES} bytes", limit=True) from None
            raise RequestError(431, f"Request header fields larger than {MAX_HEAD_BYTES} bytes", limit=True) from None

    async def _read(self, reader: asyncio.StreamReader, connection: _Connection, count: int) -> bytes:
        """Exactly ``count`` body bytes; gives up if none arrive for ``idle_timeout``."""
        parts = []
        while count > 0:
            self._expect(connection, self.idle_timeout)
            part = await reader.read(min(count, READ_SIZE))
            if not part:
                raise asyncio.IncompleteReadError(b"".join(parts), count)
            parts.append(part)
            count -= len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _read_line(self, reader: asyncio.StreamReader, connection: _Connection) -> bytes:
        self._expect(connection, self.idle_timeout)
        try:
            return await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise RequestError(413, "Chunk line too long") from None

    def _check_size(self, size: int) -> None:
        if size > self.max_body_bytes:
            raise RequestError(413, f"Request body of {size} bytes exceeds the limit of {self.max_body_bytes} bytes",
                               limit=True)

    def _answer_expect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: RequestHead) -> None:
        """``Expect`` on an HTTP/1.1 request with a body, as libevent's ``evhttp_get_body``: ``100-continue`` is
        answered ``100 Continue`` (unless body bytes have already arrived) once the declared size is known to fit
        (413 if not); any other expectation is 417."""
        expect = head.headers.get("expect")
        if expect is None or head.version == "HTTP/1.0" or not (head.chunked or head.length):
            return
        if expect.lower() != "100-continue":
            raise RequestError(417, f"Expectation {expect!r} is not supported")
        if not head.chunked:
            self._check_size(head.length)
        if not len(getattr(reader, "_buffer", b"")):
            writer.write(f"{head.version} 100 Continue\r\n\r\n".encode())

    async def _read_body(self, reader: asyncio.StreamReader, connection: _Connection, head: RequestHead) -> bytes:
        if not head.chunked:
            self._check_size(head.length)
            return await self._read(reader, connection, head.length) if head.length else b""
        chunks, total = [], 0
        while True:
            match = _CHUNK_SIZE.fullmatch(await self._read_line(reader, connection))
            if match is None:
                raise RequestError(413, "bad chunk size")
            size = int(match.group(1), 16)
            if size == 0:
                break
            total += size
            if total > self.max_body_bytes:
                raise RequestError(413, f"Request body exceeds the limit of {self.max_body_bytes} bytes", limit=True)
            chunks.append(await self._read(reader, connection, size))
            if await self._read_line(reader, connection) not in (b"\r\n", b"\n"):
                raise RequestError(413, "bad chunk end")
        trailer = 0
        while (line := await self._read_line(reader, connection)) not in (b"\r\n", b"\n"):
            trailer += len(line)
            if trailer > MAX_HEAD_BYTES:
                raise RequestError(431, f"Trailer fields larger than {MAX_HEAD_BYTES} bytes", limit=True)
        return b"".join(chunks)

    # ------------------------------------------------------------------------------------------ a connection
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = self._connections[writer] = _Connection(writer)
        try:
            while not self._closing:
                head = None
                try:
                    raw = await self._read_head(reader, connection)
                    head = parse_head(raw)
                    self._answer_expect(reader, writer, head)
                    body = await self._read_body(reader, connection, head)
                except RequestError as exc:
                    self._expect(connection, None)
                    await self._refuse(connection, exc, head)
                    return
                self._expect(connection, None)          # the model run has its own deadline
                try:
                    status, response_headers, payload = await self.handler(head.method, head.target, head.headers,
                                                                            body)
                except RequestError as exc:
                    await self._refuse(connection, exc, head)
                    return
                except Exception:  # noqa: BLE001 - a handler bug must not kill the connection loop
                    log.exception("Unhandled error serving %s %s", head.method, head.target)
                    status, response_headers, payload = 500, [("Content-Type", "application/json")], \
                        _error_body("Internal server error")
                keep_alive = head.keep_alive and not self._closing
                await self._send(connection, status, response_headers, payload, close=not keep_alive,
                                 head=head.method == "HEAD", version=head.version)
                connection.busy = False
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._connections.pop(writer, None)
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    async def _refuse(self, connection: _Connection, refusal: RequestError, head: RequestHead | None) -> None:
        """libevent's page for a refused request (evhttp_send_error: the reason only in the log, but for a limit of
        this server's own, which libevent does not have, named in the page), with
        ``Connection: close``, answered HTTP/1.1 to a request whose version was not read or is HTTP/1.0
        (evhttp_send_page_)."""
        log.debug("%d: %s", refusal.status, refusal.message)
        version = head.version if head is not None and head.version != "HTTP/1.0" else "HTTP/1.1"
        page = error_page(refusal.status, refusal.message if refusal.limit else None)
        await self._send(connection, refusal.status, PAGE_HEADERS, page, close=True,
                         head=head is not None and head.method == "HEAD", version=version)

    async def _send(self, connection: _Connection, status, headers, body: bytes, close: bool,
                    head: bool = False, version: str = "HTTP/1.1") -> None:
        writer = connection.writer
        writer.write(_response(status, headers, b"" if head else body, close, len(body), head=head, version=version))
        if writer.transport.get_write_buffer_size():     # the client is not reading: wait, but not forever
            self._expect(connection, self.idle_timeout)
            await writer.drain()
            self._expect(connection, None)


def _response(status: int, headers, body: bytes, close: bool, length: int | None = None, head: bool = False,
              version: str = "HTTP/1.1") -> bytes:
    """The response as libevent's evhttp_make_header_response writes it: the request's HTTP version; a ``Date``
    (not to HTTP/1.0); ``Connection: keep-alive`` to an HTTP/1.0 request kept alive; ``Content-Length`` and, when
    none was given, the server's default ``Content-Type`` only on a response that has a body (not to HEAD, not
    204, 304 or 1xx: evhttp_response_needs_body). Unlike libevent, an HTTP/1.0 answer after which the connection is
    closed keeps its ``Content-Length`` (the client can tell a whole answer from a cut connection) and says
    ``Connection: close`` even when the request did not ask for it."""
    lines = [f"{version} {status} {reason(status)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    names = {name.lower() for name, _ in headers}
    if "date" not in names and version != "HTTP/1.0":
        lines.append(f"Date: {email.utils.formatdate(usegmt=True)}")
    if version == "HTTP/1.0" and not close:
        lines.append("Connection: keep-alive")
    if not head and status not in (204, 304) and status >= 200:
        lines.append(f"Content-Length: {len(body) if length is None else length}")
        if "content-type" not in names:
            lines.append(f"Content-Type: {DEFAULT_CONTENT_TYPE}")
    if close and "connection" not in names:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def error_page(status: int, why: str | None = None) -> bytes:
    """libevent's evhttp_send_error page (ERR_FORMAT), with ``why`` as its reason when given (as evhttp_send_error
    puts its reason argument in the title and the heading): a limit of this server's own says which it is."""
    phrase = why or reason(status)
    return (f"<HTML><HEAD>\n<TITLE>{status} {phrase}</TITLE>\n</HEAD><BODY>\n<H1>{phrase}</H1>\n"
            f"</BODY></HTML>\n").encode("latin-1")


def _error_body(message: str) -> bytes:
    return ('{\n    "error": "' + message.replace("\\", "\\\\").replace('"', '\\"') + '"\n}').encode()
