"""The embedded server's HTTP/1.1 layer (serving/httpserver.py) against hostile and unusual clients, over loopback.

Every case checks that the server keeps answering another client meanwhile (``probe``). Every socket has a timeout
and every loop a bound, so each test ends by itself.
"""
import asyncio
import json
import os
import resource
import socket
import threading
import time

import pytest

from serving.config import DEFAULT_MAX_REQUEST_BYTES
from serving.httpserver import MAX_HEAD_BYTES, HttpServer, RequestError, error_page, parse_head, reason
from tests.support import serving as testing

PREDICT = "/v1/models/letters:predict"
HEADER_TIMEOUT_S = 2.5
SOCKET_TIMEOUT_S = 20
IDLE_CONNECTIONS = 1000


@pytest.fixture(scope="module")
def server(models_root):
    running = testing.start_server(models_root / "letters", enable_batching=True,
                                   rest_api_header_timeout_in_ms=int(HEADER_TIMEOUT_S * 1000))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def predict_body():
    return json.dumps({"signature_name": "predict_images", "instances": [testing.b64(testing.png_bytes(90))]}).encode()


def connect(port) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(stream) -> tuple[int, dict, bytes]:
    """One response from a socket's ``makefile("rb")``."""
    status_line = stream.readline()
    assert status_line.startswith(b"HTTP/1."), status_line
    headers = read_headers(stream)
    return int(status_line.split()[1]), headers, stream.read(int(headers.get("content-length", 0)))


def read_headers(stream) -> dict:
    """The header fields of a response whose status line has been read, by lower-case name."""
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


def read_until_closed(sock) -> bytes:
    """Everything the server sends until it closes the connection (fails if it does not within the timeout)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def probe(server) -> None:
    """Another client is answered, promptly."""
    started = time.monotonic()
    status, body = testing.RestClient(server.url, timeout=10).get("/v1/models/letters")
    assert status == 200 and body["model_version_status"], body
    assert time.monotonic() - started < 5


def refused(server, head: bytes) -> bytes:
    """Sends ``head`` (and what follows it) and returns the whole answer, which must end with the server closing."""
    with connect(server.port) as sock:
        sock.sendall(head)
        raw = read_until_closed(sock)
    assert b"\r\nConnection: close\r\n" in raw.partition(b"\r\n\r\n")[0] + b"\r\n"
    probe(server)
    return raw


# ------------------------------------------------------------------------------------------------ slow headers
def test_slow_headers_are_cut_by_the_header_timeout(server):
    """A slowloris client (one header line a second, never the empty line) gets 408 and is disconnected once the
    head has taken longer than --rest_api_header_timeout_in_ms; others are answered meanwhile."""
    with connect(server.port) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /v1/models/letters HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(1.0)
        answer = b""
        for line in range(int(HEADER_TIMEOUT_S) + 8):
            probe(server)
            try:
                sock.sendall(f"X-Slow-{line}: {'a' * 10}\r\n".encode())
                answer = sock.recv(65536)
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if answer:
                break
        elapsed = time.monotonic() - started
        sock.settimeout(SOCKET_TIMEOUT_S)
        rest = read_until_closed(sock) if answer else b""
    assert status_of(answer) == 408
    assert b"<TITLE>408 The request head did not arrive within %g s</TITLE>" % HEADER_TIMEOUT_S in answer + rest
    assert HEADER_TIMEOUT_S - 0.2 <= elapsed < HEADER_TIMEOUT_S + 4
    probe(server)


# ------------------------------------------------------------------------------------------------ oversize
def test_oversize_header_field_is_431_and_closed(server):
    raw = refused(server, b"GET /v1/models/letters HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
    assert status_of(raw) == 431


def test_too_many_header_fields_is_431_and_closed(server):
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(101))
    assert status_of(refused(server, b"GET /v1/models/letters HTTP/1.1\r\n" + many + b"\r\n")) == 431


def test_oversize_request_line_is_414_and_closed(server):
    assert status_of(refused(server, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n")) == 414


# ------------------------------------------------------------------------------------------------ framing
def test_pipelined_requests_are_answered_in_order(server, predict_body):
    requests = (b"GET /v1/models/letters HTTP/1.1\r\nHost: x\r\n\r\n"
                + b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(predict_body)
                + predict_body
                + b"GET /v1/models/nope HTTP/1.1\r\nHost: x\r\n\r\n")
    with connect(server.port) as sock, sock.makefile("rb") as stream:
        sock.sendall(requests)                                # three requests in one write
        answers = [read_response(stream) for _ in range(3)]
        probe(server)
        sock.sendall(b"GET /v1/models/letters HTTP/1.1\r\nHost: x\r\n\r\n")   # the connection is still usable
        assert read_response(stream)[0] == 200
    assert [status for status, _, _ in answers] == [200, 200, 404]
    assert "model_version_status" in json.loads(answers[0][2])
    assert json.loads(answers[1][2])["predictions"][0]["top_classes"]
    assert json.loads(answers[2][2]) == {"error": "Could not find any versions of model nope"}


def test_chunked_request_body(server, predict_body):
    plain = testing.RestClient(server.url).request("POST", PREDICT, predict_body)
    pieces = [predict_body[:7], predict_body[7:100], predict_body[100:]]
    chunked = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\nX-Trailer: t\r\n\r\n"
    with connect(server.port) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for offset in range(0, len(chunked), 50):              # arrives in pieces, not in one read
            sock.sendall(chunked[offset:offset + 50])
        status, _, body = read_response(stream)
    assert (status, json.loads(body)) == (plain[0], json.loads(plain[2])) and status == 200
    probe(server)


def test_expect_100_continue_is_answered_before_the_body(server, predict_body):
    """curl and many clients send ``Expect: 100-continue`` with a large body and wait (curl: a second) for the
    interim answer before sending it; libevent, TF Serving's HTTP server, sends it once the declared size fits."""
    plain = testing.RestClient(server.url).request("POST", PREDICT, predict_body)
    with connect(server.port) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: %d\r\n\r\n"
                     % (PREDICT.encode(), len(predict_body)))
        sock.settimeout(5)
        assert stream.readline() == b"HTTP/1.1 100 Continue\r\n" and stream.readline() == b"\r\n"
        sock.sendall(predict_body)
        status, _, body = read_response(stream)
    assert (status, json.loads(body)) == (plain[0], json.loads(plain[2])) and status == 200
    # The body sent without waiting: no interim answer (the server has the bytes already), the same final one.
    with connect(server.port) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n%s"
                     % (PREDICT.encode(), len(predict_body), predict_body))
        status, _, body = read_response(stream)
    assert status == 200 and json.loads(body) == json.loads(plain[2])


def test_expect_refusals(server):
    """Too large a declared body is refused before it is sent; an expectation other than 100-continue is 417."""
    size = DEFAULT_MAX_REQUEST_BYTES + 1                 # the fixture's server keeps the default bound
    raw = refused(server, b"POST %s HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"
                  % (PREDICT.encode(), size))
    assert status_of(raw) == 413 and b"100 Continue" not in raw
    raw = refused(server, b"POST %s HTTP/1.1\r\nExpect: something\r\nContent-Length: 2\r\n\r\n{}" % PREDICT.encode())
    assert status_of(raw) == 417 and b"<H1>Expectation Failed</H1>" in raw
    # HTTP/1.0 and bodiless requests ignore Expect, as libevent does.
    with connect(server.port) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"GET /v1/models/letters HTTP/1.1\r\nHost: x\r\nExpect: something\r\n\r\n")
        assert read_response(stream)[0] == 200


@pytest.mark.parametrize("framing", [
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    b"Content-Length: 5\r\nTransfer-Encoding: identity, chunked\r\n",
])
def test_content_length_with_transfer_encoding_is_400(server, framing):
    """Request smuggling: a front proxy and this server could disagree on where the body ends, so the request is
    refused, the connection closed, and the bytes after it are never read as a request."""
    smuggled = b"GET /v1/models/nope HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = refused(server, b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n"
                  + b"0\r\n\r\n" + smuggled)
    assert status_of(raw) == 400 and raw.count(b"HTTP/1.1 ") == 1 and raw.endswith(error_page(400))


@pytest.mark.parametrize("framing, status", [
    (b"Content-Length: 5\r\nContent-Length: 6\r\n", 400),    # two lengths
    (b"Content-Length: +5\r\n", 400),
    (b"Content-Length : 5\r\n", 400),                        # whitespace before the colon
    (b"X-Folded: a\r\n  b\r\n", 400),                        # obsolete line folding
    (b"Transfer-Encoding: chunked, identity\r\n", 400),      # not ending with chunked
    (b"Transfer-Encoding: gzip, chunked\r\n", 501),
])
def test_ambiguous_framing_is_refused(server, framing, status):
    assert status_of(refused(server, b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\n" + framing
                             + b"\r\n12345")) == status


@pytest.mark.parametrize("request_bytes, status, why", [
    (b"GET /v1/models/letters HTTP/1.1\r\nHost: x\r\nNo colon\r\n\r\n", 400, None),
    (b"POST %s HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n" % PREDICT.encode(), 413,
     None),
    (b"GET /v1/models/letters HTTP/2.0\r\nHost: x\r\n\r\n", 400, None),
    (b"POST %s HTTP/1.1\r\nExpect: foo\r\nContent-Length: 2\r\n\r\n{}" % PREDICT.encode(), 417, None),
    (b"POST %s HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % (PREDICT.encode(), DEFAULT_MAX_REQUEST_BYTES + 1), 413,
     f"Request body of {DEFAULT_MAX_REQUEST_BYTES + 1} bytes exceeds the limit of {DEFAULT_MAX_REQUEST_BYTES} bytes"),
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414, f"Request line longer than {MAX_HEAD_BYTES} bytes"),
], ids=["header-without-colon", "bad-chunk-size", "http-2.0", "expect-foo", "body-too-large", "line-too-long"])
def test_refused_requests_get_libevents_error_page(server, request_bytes, status, why):
    """What the HTTP parser refuses is answered as libevent's evhttp_send_error answers it: its HTML page (no JSON),
    Content-Type text/html, Connection: close, HTTP/1.1 also to an HTTP/1.0 request (evhttp_send_page_); a corrupt
    chunk size is libevent's EVREQ_HTTP_DATA_TOO_LONG (413), an HTTP major version above 1 a bad request (400).
    A limit of this server's own (libevent has none) is named in the page, as evhttp_send_error's reason."""
    head, _, body = refused(server, request_bytes).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status) and b"\r\nContent-Type: text/html\r\n" in head + b"\r\n"
    assert body == error_page(status, why)
    assert (why is None) == (b"<TITLE>%d %s</TITLE>" % (status, reason(status).encode()) in body)


@pytest.mark.parametrize("first, status", [
    (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    (b"TRACE /v1/models/letters HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (b"GET /nope HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 404),
])
def test_libevents_own_404_and_501_close_the_connection(server, first, status):
    """evhttp_send_page_ sets Connection: close and evhttp_send_done then frees the connection: a request pipelined
    after libevent's own 404 (a path outside /v1/) or 501 (a method it does not allow) is never answered."""
    raw = refused(server, first + b"GET /v1/models/letters HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 %d " % status) and raw.endswith(b"\r\n\r\n" + error_page(status))


@pytest.mark.parametrize("status, phrase", [
    (200, "OK"), (400, "Bad Request"), (404, "Not Found"), (408, "Request Time-out"),
    (413, "Request Entity Too Large"), (414, "Request-URI Too Large"), (429, "Client Error"), (431, "Client Error"),
    (499, "Client Error"), (500, "Internal Server Error"), (503, "Service Unavailable"), (504, "Gateway Time-out"),
    (505, "HTTP Version not supported"), (306, "Temporary Redirect"), (307, "Redirection"),
    (600, "Unknown Status Class"),
])
def test_reason_phrases_are_libevents(status, phrase):
    """TF Serving replies with no reason of its own, so its status lines carry libevent's phrases
    (evhttp_response_phrase_internal), indexed within each class: 429, 431 and 499 are past the end of the 4xx list
    ("Client Error"), and the 3xx list puts "Temporary Redirect" at 306."""
    assert reason(status) == phrase


def test_http_1_2_is_served_in_its_own_version(bare):
    """evhttp_parse_http_version takes any HTTP/1.x; the answer carries the request's version."""
    with connect(bare.port) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"GET /v12 HTTP/1.2\r\nHost: x\r\n\r\n")
        assert stream.readline() == b"HTTP/1.2 200 OK\r\n"
        headers = read_headers(stream)
        assert stream.read(int(headers["content-length"])) == b"GET /v12 0" and "date" in headers


# ------------------------------------------------------------------------------------------------ disconnects
def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def wait_for(condition, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_client_disconnecting_mid_body_leaks_nothing(server, predict_body):
    http = server.server.http
    assert wait_for(lambda: http.connections == 0)
    fds = open_fds()
    for i in range(30):
        sock = connect(server.port)
        sock.sendall(b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
                     + predict_body[:200])
        if i % 2:    # half of them reset the connection instead of closing it
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
        if i % 10 == 0:
            probe(server)
    assert wait_for(lambda: http.connections == 0), f"{http.connections} connections left open"
    assert wait_for(lambda: open_fds() <= fds), f"{open_fds() - fds} file descriptors more than before"
    probe(server)


# ------------------------------------------------------------------------------------------------ many idle
def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < needed:
        pytest.skip(f"RLIMIT_NOFILE is {soft} (hard {hard}); {IDLE_CONNECTIONS} idle connections need both ends "
                    f"in this process, about {needed} file descriptors")


def test_thousand_idle_connections_do_not_stop_others(server):
    # Both ends of every connection live in this process (the server runs in-process).
    _raise_fd_limit(open_fds() + 2 * IDLE_CONNECTIONS + 200)
    http = server.server.http
    idle = []
    try:
        for i in range(IDLE_CONNECTIONS):
            sock = connect(server.port)
            if i % 4 == 0:      # a quarter become idle keep-alive connections after one request
                sock.sendall(b"GET /v1/models/letters HTTP/1.1\r\nHost: x\r\n\r\n")
            idle.append(sock)
            if i % 100 == 0:
                probe(server)
        for sock in idle[::4]:
            with sock.makefile("rb") as stream:
                assert read_response(stream)[0] == 200
        assert wait_for(lambda: http.connections >= IDLE_CONNECTIONS)
        latencies = []
        for _ in range(20):
            started = time.monotonic()
            probe(server)
            latencies.append(time.monotonic() - started)
        assert sorted(latencies)[10] < 1.0, latencies
        with idle[-1].makefile("rb") as stream:     # an idle connection is still served
            idle[-1].sendall(b"GET /v1/models/letters HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(stream)[0] == 200
    finally:
        for sock in idle:
            sock.close()
    assert wait_for(lambda: http.connections == 0), f"{http.connections} connections left open"


# ------------------------------------------------------------------------------------------------ bare layer
class BareServer:
    """The HTTP layer alone, with short timeouts and an echo handler, on its own event loop thread."""

    def __init__(self, **timeouts):
        self.loop = asyncio.new_event_loop()
        self.http = HttpServer(self.echo, "127.0.0.1", 0, 1024 * 1024, **timeouts)
        self.port = self.loop.run_until_complete(self.http.start())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    @staticmethod
    async def echo(method, target, headers, body):
        return 200, [("Content-Type", "text/plain")], f"{method} {target} {len(body)}".encode()

    def close(self):
        asyncio.run_coroutine_threadsafe(self.http.stop(1.0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def bare():
    server = BareServer(header_timeout=1.0, idle_timeout=1.0)
    yield server
    server.close()


def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(bare):
    with connect(bare.port) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(stream)[::2] == (200, b"GET /a 0")
        started = time.monotonic()
        assert read_until_closed(sock) == b""          # closed without an answer
        assert 0.8 <= time.monotonic() - started < 5


def test_stalled_body_is_closed_after_the_idle_timeout(bare):
    with connect(bare.port) as sock:
        sock.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
        started = time.monotonic()
        assert read_until_closed(sock) == b""
        assert 0.8 <= time.monotonic() - started < 5
    assert wait_for(lambda: bare.http.connections == 0)


def test_http_1_0_and_leading_empty_lines(bare):
    with connect(bare.port) as sock:
        sock.sendall(b"\r\n\r\nGET /b HTTP/1.0\r\n\r\n")
        raw = read_until_closed(sock)               # HTTP/1.0 without keep-alive: closed after the answer
    assert raw.startswith(b"HTTP/1.0 200 OK\r\n") and raw.endswith(b"\r\n\r\nGET /b 0")


def test_http_1_0_is_answered_in_its_own_version(bare):
    """evhttp_make_header_response writes the request's version: an HTTP/1.0 answer has no Date; one to a request
    with ``Connection: keep-alive`` says so and the connection stays open for the next request."""
    with connect(bare.port) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert stream.readline() == b"HTTP/1.0 200 OK\r\n"
        headers = read_headers(stream)
        assert stream.read(int(headers["content-length"])) == b"GET /k 0"
        sock.sendall(b"GET /k2 HTTP/1.0\r\n\r\n")    # the same connection: a plain HTTP/1.0 request
        raw = stream.read()                                # the server closes after its answer
    assert headers["connection"] == "keep-alive" and "date" not in headers
    assert raw.startswith(b"HTTP/1.0 200 OK\r\n") and raw.endswith(b"\r\n\r\nGET /k2 0")
    assert b"\r\nDate:" not in raw and b"\r\nContent-Length: 9\r\n" in raw


@pytest.mark.parametrize("head, status", [
    (b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n", None),
    (b"GET /x HTTP/2.0\r\n\r\n", 400),
    (b"GET /x HTTP/0.9\r\n\r\n", 505),
    (b"GET /x\r\n\r\n", 400),
    (b"G(T /x HTTP/1.1\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\nNo colon\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\nX: a\rb\r\n\r\n", 400),
    (b"POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
])
def test_parse_head(head, status):
    if status is None:
        parsed = parse_head(head)
        assert (parsed.method, parsed.target, parsed.headers, parsed.keep_alive) == ("GET", "/x", {"host": "x"}, True)
        return
    with pytest.raises(RequestError) as caught:
        parse_head(head)
    assert caught.value.status == status


@pytest.mark.parametrize("version, connection, kept", [
    ("1.1", None, True), ("1.1", "close", False), ("1.1", "Close", False), ("1.1", "keep-alive, close", True),
    ("1.1", "close, keep-alive", True), ("1.0", None, False), ("1.0", "Keep-Alive", True),
    ("1.0", "keep-alive, close", True), ("1.0", "upgrade, keep-alive", False), ("1.0", "close", False),
    ("1.1", ["close", "close"], False), ("1.1", ["close", "keep-alive"], False), ("1.1", ["x", "close"], True),
    ("1.0", ["keep-alive", "close"], True),
])
def test_a_connection_is_kept_as_libevent_keeps_it(version, connection, kept):
    """libevent 2.1.8's http.c: a connection closes when the Connection header is exactly "close" (any case), and
    an HTTP/1.0 one unless the header starts with "keep-alive" (evhttp_is_connection_keepalive); a list is not
    searched for either word, and of repeated Connection headers the first decides (evhttp_find_header)."""
    values = [connection] if isinstance(connection, str) else connection or []
    head = f"GET /x HTTP/{version}\r\n" + "".join(f"Connection: {value}\r\n" for value in values) + "\r\n"
    assert parse_head(head.encode()).keep_alive is kept


def _polled_while_posting(running, model: str, path: str, body: bytes) -> tuple:
    """POSTs ``body`` to ``path`` while another client GETs /v1/models/<model> every 20 ms: (status, answer,
    [(start, end) of each poll answered 200 while the POST was being answered], the POST's seconds)."""
    done, answered = threading.Event(), []

    def prober():
        while not done.is_set():
            started = time.monotonic()
            status, _ = testing.RestClient(running.url, timeout=30).get(f"/v1/models/{model}")
            answered.append((started, time.monotonic(), status))
            time.sleep(0.02)

    thread = threading.Thread(target=prober, daemon=True)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    status, answer = testing.RestClient(running.url, timeout=120).post(path, body)
    ended = time.monotonic()
    done.set()
    thread.join(30)
    return status, answer, [a[:2] for a in answered if started < a[0] and a[1] < ended and a[2] == 200], ended - started


@pytest.fixture(scope="module")
def own_process(models_root, tmp_path_factory):
    """The server in its own process, so that only its threads compete, serving the letters model and the scorer;
    the tests below only read from it."""
    root = tmp_path_factory.mktemp("own_process")
    testing.save_scorer(str(root / "scorer" / "1"))
    config = root / "models.config"
    config.write_text("model_config_list { " + "".join(
        f'config {{ name: "{name}" base_path: "{path}" model_platform: "tensorflow" }} '
        for name, path in (("letters", models_root / "letters"), ("scorer", root / "scorer"))) + "}")
    with testing.start_server(model_config_file=str(config), subprocess=True) as running:
        yield running


def test_a_large_body_being_parsed_does_not_hold_up_other_requests(own_process):
    """TF Serving answers each request on a handler thread (http_server.cc's RequestExecutor): while one large
    JSON body is parsed and converted, other clients (a readiness probe) are answered. The server runs in its own
    process, so that only its threads compete."""
    row = "[" + ",".join(["0.123456"] * 28) + "]"
    one = "[" + ",".join([row] * 28) + "]"
    body = ('{"signature_name": "no_such_signature", "instances": [' + ",".join([one] * 1500) + "]}").encode()
    status, answer, during, _ = _polled_while_posting(own_process, "letters", PREDICT, body)
    assert status == 400 and "no_such_signature" in answer["error"]       # parsed to the end, then refused
    assert len(during) >= 5, during


def test_a_large_classify_answer_does_not_hold_up_other_requests(own_process):
    """A classify body over 256 KiB is read, and its answer (100,000 results) made and written, on a handler
    thread, as predict's: a readiness probe meanwhile is answered, and none waits a third of the classify's time
    (9 s on 2 cores, 11 s on a busy machine, whose slower threads have held a probe up to 2.1 s; on a quiet machine
    0.1 s at most). A server holding other requests up while the answer is made or written fails either check."""
    body = ('{"examples": [' + ",".join(['{"x": 0.5}'] * 100_000) + "]}").encode()
    status, answer, during, seconds = _polled_while_posting(own_process, "scorer", "/v1/models/scorer:classify", body)
    assert status == 200 and answer["results"][-1] == [["yes", 0.5], ["no", 0.5]]
    assert len(during) >= 5 and max(end - start for start, end in during) < seconds / 3, (seconds, during)


def test_lines_ended_by_a_bare_lf_are_read_as_libevent_reads_them(bare):
    """evbuffer_readln(EVBUFFER_EOL_CRLF): a request line, headers and chunk lines may end in LF alone. A head of
    bare LFs had waited for a CRLFCRLF until the header timeout's 408."""
    with connect(bare.port) as sock, sock.makefile("rb") as stream:
        started = time.monotonic()
        sock.sendall(b"GET /lf HTTP/1.1\nHost: x\n\n")
        assert read_response(stream)[::2] == (200, b"GET /lf 0") and time.monotonic() - started < 0.9
        sock.sendall(b"POST /mixed HTTP/1.1\r\nHost: x\nTransfer-Encoding: chunked\r\n\n2\n{}\n0\n\n")
        assert read_response(stream)[::2] == (200, b"POST /mixed 2")
        sock.sendall(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")       # the connection goes on
        assert read_response(stream)[::2] == (200, b"GET /after 0")
