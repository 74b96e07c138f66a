"""serving.client.RestConnection against small loopback HTTP servers: pooled keep-alive connections shared
across threads, a retry when the server closed a kept-alive connection, and the errors it maps."""
import json
import socket
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support import serving as testing
from tests.support.trickle import trickle
from serving.client import RestConnection, ServingUnavailable, error_text

M = "/v1/models/letters"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    drop_after_answer = False      # close the connection after answering, without saying so

    def do_GET(self):
        self.server.peers.add(self.client_address)
        if self.server.hold is not None:
            self.server.hold.wait(10)      # answer only once every expected request is in flight
        status, body = self.server.answer
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)
        if self.drop_after_answer:
            self.close_connection = True

    do_POST = do_GET

    def log_message(self, *args):
        pass


@contextmanager
def http_server(answer=(200, {"ok": True}), drop_after_answer=False, hold=None):
    handler = type("Handler", (_Handler,), {"drop_after_answer": drop_after_answer})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.answer = answer
    server.hold = hold            # a Barrier the handlers wait on before answering, or None
    server.peers = set()          # (host, port) of each client connection seen
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def in_new_thread(fn):
    result = {}
    thread = threading.Thread(target=lambda: result.update(value=fn()))
    thread.start()
    thread.join(10)
    return result["value"]


def test_requests_from_thread_per_request_callers_share_one_keep_alive_connection():
    with http_server() as (server, url):
        rest = RestConnection(url, timeout=5)
        answers = [in_new_thread(lambda: rest.request("GET", M)) for _ in range(10)]
        assert answers == [(200, {"ok": True})] * 10
        assert rest.opened == 1 and len(server.peers) == 1
        rest.close()


def test_concurrent_requests_use_separate_connections_and_the_pool_stays_bounded():
    # the server answers only when all six requests are in flight, so each needs a connection of its own
    with http_server(hold=threading.Barrier(6)) as (server, url):
        rest = RestConnection(url, timeout=5, max_idle=2)
        start = threading.Barrier(6)
        answers = []

        def call():
            start.wait()
            answers.append(rest.request("POST", M + ":predict", {"instances": [1]}))

        threads = [threading.Thread(target=call) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert answers == [(200, {"ok": True})] * 6
        assert rest.opened == 6 and len(server.peers) == 6 and len(rest._idle) == 2
        rest.close()
        assert rest._idle == []


def test_a_kept_alive_connection_the_server_closed_is_retried_on_a_new_one():
    with http_server(drop_after_answer=True) as (server, url):
        rest = RestConnection(url, timeout=5)
        assert rest.request("GET", M) == (200, {"ok": True})
        assert rest.request("GET", M) == (200, {"ok": True})   # the pooled connection is dead: one retry
        assert rest.opened == 2 and len(server.peers) == 2


def test_bodies_that_are_not_json():
    with http_server(answer=(502, b"<html>bad gateway</html>")) as (_, url):
        with pytest.raises(ServingUnavailable) as caught:
            RestConnection(url, timeout=5).request("GET", M)
        assert caught.value.reason == "serving_error" and "HTTP 502" in caught.value.message
    with http_server(answer=(400, b"not json")) as (_, url):
        status, body = RestConnection(url, timeout=5).request("GET", M)
        assert status == 400 and error_text(body) == "not json"
    page = b"<HTML><HEAD>\n<TITLE>413 Request Entity Too Large</TITLE>\n</HEAD><BODY>\n<H1>Request Entity Too Large"
    with http_server(answer=(413, page)) as (_, url):      # libevent's error page reads as its title
        status, body = RestConnection(url, timeout=5).request("GET", M)
        assert status == 413 and error_text(body) == "413 Request Entity Too Large"
    with http_server(answer=(404, {"error": "Could not find any versions of model letters"})) as (_, url):
        status, body = RestConnection(url, timeout=5).request("GET", M)
        assert status == 404 and error_text(body).startswith("Could not find")


def test_unreachable_and_timeout():
    with pytest.raises(ServingUnavailable) as caught:
        RestConnection(f"http://127.0.0.1:{testing.free_port()}", timeout=2).request("GET", M)
    assert caught.value.reason == "serving_unreachable" and "connection refused" in caught.value.message
    with socket.socket() as silent:   # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        with pytest.raises(ServingUnavailable) as caught:
            RestConnection(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.3).request("GET", M)
    assert caught.value.reason == "serving_timeout" and caught.value.status == 504


def test_only_http_urls():
    for bad in ("127.0.0.1:8501", "ftp://host/", "http://"):
        with pytest.raises(ValueError, match="not an http"):
            RestConnection(bad)


def test_a_trickled_answer_ends_at_the_timeout():
    """The timeout bounds the whole exchange: a server sending its answer a byte at a time (each read well within
    the socket's own timeout) is cut off at it, as a silent one is."""
    import time

    with socket.socket() as trickler:
        trickler.bind(("127.0.0.1", 0))
        trickler.listen(1)
        stop = threading.Event()

        def serve():
            conn, _ = trickler.accept()
            with conn:
                conn.recv(65536)
                answer = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n' + \
                    b'{"ok": true}' + b" " * 188
                trickle(conn, answer, 0.05, stop=stop)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        started = time.monotonic()
        with pytest.raises(ServingUnavailable) as caught:
            RestConnection(f"http://127.0.0.1:{trickler.getsockname()[1]}", timeout=1.0).request("GET", M)
        took = time.monotonic() - started
        stop.set()
        thread.join(5)
    assert caught.value.reason == "serving_timeout" and caught.value.status == 504
    assert took < 3, took          # the answer alone takes 14 s at this pace


def test_version_states_of_an_answer_that_is_not_a_status_are_none():
    """A model_version_status that is not a list (a proxy's or a broken server's answer) had raised a TypeError:
    the web client's status page answered 500."""
    from serving.client import version_states
    assert version_states({"model_version_status": [{"version": "3", "state": "AVAILABLE"}, "junk"]}) == {
        "3": "AVAILABLE"}
    for body in ({"model_version_status": None}, {"model_version_status": 5}, {"model_version_status": "x"}, [], None):
        assert version_states(body) == {}


def test_an_answer_before_the_body_was_read_is_returned():
    """A server refuses a body over its limit (413) from its headers and closes the connection: the client's send
    failed (connection reset) and the answer was taken for a server that cannot be reached."""
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))
        refusing.listen(1)

        def serve():
            conn, _ = refusing.accept()
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(65536)
                body = b'{"error": "Request body of 33554432 bytes exceeds the limit of 1024 bytes"}'
                conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
                             b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            # closed with the body unread: the client's send is reset

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        rest = RestConnection(f"http://127.0.0.1:{refusing.getsockname()[1]}", timeout=10)
        status, answer = rest.request("POST", M + ":predict", {"instances": ["x" * 32 * 1024 * 1024]})
        thread.join(5)
    assert status == 413 and error_text(answer).startswith("Request body of 33554432 bytes exceeds")
