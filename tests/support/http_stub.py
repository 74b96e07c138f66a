"""A local HTTP server of a test's own handler, on a free loopback port: a model server that answers what the
test needs (status routes at once, predictions held past a client's timeout)."""
import contextlib
import http.server
import threading


class JsonHandler(http.server.BaseHTTPRequestHandler):
    """A handler that answers JSON bodies (:meth:`answer`) and logs nothing."""

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]):
    """Serves ``handler`` on 127.0.0.1 (a free port) in a thread; yields the server, shut down at the end."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
