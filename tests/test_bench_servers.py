"""The serving benches: bad counts are usage errors, servers bind loopback, and what was started is stopped."""
import base64
import io
import json
import os
import signal

import pytest

from bench import http_layer_bench, serving_bench, web_bench


@pytest.mark.parametrize("module, argv", [
    (http_layer_bench, ["--rounds", "0"]), (http_layer_bench, ["--concurrency", "0"]),
    (web_bench, ["--requests", "0"]), (web_bench, ["--warmup", "-1"]),
    (serving_bench, ["--rounds", "0"]), (serving_bench, ["--concurrency", "-2"]),
    (serving_bench, ["--image-size", "0"]),
])
def test_counts_below_one_are_usage_errors(module, argv, capsys):
    with pytest.raises(SystemExit) as caught:
        module.main(argv)
    assert caught.value.code == 2 and "must be at least" in capsys.readouterr().err


def test_the_web_backend_is_started_on_loopback_whatever_letters_web_host_says(monkeypatch):
    launched = []

    class Refused(Exception):
        pass

    def popen(cmd, **kwargs):
        launched.append(cmd)
        raise Refused
    monkeypatch.setenv("LETTERS_WEB_HOST", "0.0.0.0")
    monkeypatch.setattr(web_bench.subprocess, "Popen", popen)
    with pytest.raises(Refused):
        web_bench.start_web("http://127.0.0.1:1", "/tmp/none")
    (cmd,) = launched
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"


def test_a_peer_that_fails_to_start_leaves_no_model_server_running(monkeypatch, tmp_path):
    stopped = []

    class Server:
        url = "http://127.0.0.1:1"
        process = None

        def stop(self):
            stopped.append("server")

    def no_flask(*args, **kwargs):
        raise RuntimeError("gunicorn did not start")
    monkeypatch.setattr(serving_bench.load, "require_wrk", lambda: None)
    monkeypatch.setattr(serving_bench.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(serving_bench.testing, "pushed_or_stand_in",
                        lambda *args: (str(tmp_path), {1: str(tmp_path / "1")}, ""))
    monkeypatch.setattr(serving_bench.testing, "start_server", lambda *args, **kwargs: Server())
    monkeypatch.setattr(serving_bench, "start_flask", no_flask)
    with pytest.raises(RuntimeError, match="gunicorn did not start"):
        serving_bench.main(["--duration", "1", "--rounds", "1"])
    assert stopped == ["server"]


@pytest.fixture
def sigterm_ignored():
    """SIGTERM does nothing unless the code under test handles it (unhandled, it would end the test run)."""
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    yield
    signal.signal(signal.SIGTERM, previous)


def sigterm(*_args, **_kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    raise AssertionError("SIGTERM did not stop the bench")


class FakeServer:
    url = "http://127.0.0.1:1"

    def __init__(self, stopped):
        self.stopped = stopped
        self.process = type("Process", (), {"pid": 0})()

    def stop(self):
        self.stopped.append("server")


def test_sigterm_stops_the_serving_benchs_servers_as_ctrl_c_does(monkeypatch, tmp_path, sigterm_ignored):
    stopped = []
    monkeypatch.setattr(serving_bench.load, "require_wrk", lambda: None)
    monkeypatch.setattr(serving_bench.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(serving_bench.testing, "pushed_or_stand_in",
                        lambda *args: (str(tmp_path), {1: str(tmp_path / "1")}, ""))
    monkeypatch.setattr(serving_bench.testing, "start_server", lambda *args, **kwargs: FakeServer(stopped))
    monkeypatch.setattr(serving_bench, "start_flask", lambda *args: ("gunicorn", "http://127.0.0.1:2", "gunicorn"))
    monkeypatch.setattr(serving_bench, "stop", lambda process: stopped.append(process))
    monkeypatch.setattr(serving_bench.load, "wrk", sigterm)
    with pytest.raises(KeyboardInterrupt):
        serving_bench.main(["--duration", "1", "--rounds", "1"])
    assert stopped == ["gunicorn", "server"]


def test_sigterm_stops_the_web_benchs_servers_as_ctrl_c_does(monkeypatch, tmp_path, sigterm_ignored):
    stopped = []

    class Web:
        def send_signal(self, signum):
            stopped.append(signal.Signals(signum).name)

        def wait(self, timeout=None):
            return 0
    monkeypatch.setattr(web_bench.testing, "pushed_or_stand_in",
                        lambda *args: (str(tmp_path), {1: str(tmp_path / "1")}, ""))
    monkeypatch.setattr(web_bench.testing, "start_server", lambda *args, **kwargs: FakeServer(stopped))
    monkeypatch.setattr(web_bench, "start_web", lambda *args: (Web(), "http://127.0.0.1:2"))
    monkeypatch.setattr(web_bench.KeepAlive, "post", sigterm)
    with pytest.raises(KeyboardInterrupt):
        web_bench.main(["--requests", "1", "--warmup", "0", "--image-size", "16"])
    assert stopped == ["SIGTERM", "server"]


def test_a_peer_whose_start_is_interrupted_is_stopped(monkeypatch):
    stopped = []

    class Gunicorn:
        def poll(self):
            return None

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(serving_bench.subprocess, "Popen", lambda *args, **kwargs: Gunicorn())
    monkeypatch.setattr(serving_bench.urllib.request, "urlopen", interrupted)
    monkeypatch.setattr(serving_bench, "stop", lambda process: stopped.append(process))
    with pytest.raises(KeyboardInterrupt):
        serving_bench.start_flask("/model", 1, 1, b"{}")
    assert len(stopped) == 1 and isinstance(stopped[0], Gunicorn)


def test_a_model_server_whose_start_is_interrupted_is_killed(monkeypatch):
    from tests.support import serving as testing
    killed = []

    class Starting:
        stdout = iter(())
        returncode = None

        def poll(self):
            return self.returncode

        def kill(self):
            killed.append("kill")
            self.returncode = -9

        def wait(self, timeout=None):
            return self.returncode

    def interrupted(_seconds):
        raise KeyboardInterrupt
    logs = []
    monkeypatch.setattr(testing._subprocess, "Popen", lambda *args, **kwargs: logs.append(kwargs["stderr"].name)
                        or Starting())
    monkeypatch.setattr(testing.time, "sleep", interrupted)
    with pytest.raises(KeyboardInterrupt):
        testing.start_server("/models/letters", subprocess=True)
    assert killed == ["kill"] and not os.path.exists(logs[0])


def test_a_peer_that_is_up_but_answers_an_error_is_reported_at_once(monkeypatch):
    import io
    import urllib.error
    stopped, calls = [], []

    class Gunicorn:
        def poll(self):
            return None

    def error_answer(request, timeout):
        calls.append(request)
        raise urllib.error.HTTPError(request.full_url, 500, "INTERNAL SERVER ERROR", {},
                                     io.BytesIO(b"<h1>Internal Server Error</h1>"))
    monkeypatch.setattr(serving_bench.subprocess, "Popen", lambda *args, **kwargs: Gunicorn())
    monkeypatch.setattr(serving_bench.urllib.request, "urlopen", error_answer)
    monkeypatch.setattr(serving_bench.time, "sleep", lambda _seconds: pytest.fail("retried an error answer"))
    monkeypatch.setattr(serving_bench, "stop", lambda process: stopped.append(process))
    with pytest.raises(RuntimeError, match=r"the Flask peer answered HTTP 500 \(INTERNAL SERVER ERROR\) to a "
                                           r"predict_images request: <h1>Internal Server Error</h1>"):
        serving_bench.start_flask("/model", 1, 1, b"{}")
    assert len(calls) == 1 and len(stopped) == 1


STAND_IN = r"""
import os, sys
from tests.support import serving as testing

base, found, note = testing.pushed_or_stand_in(sys.argv[1], "bench-test-", build=os.makedirs)
print(base, os.path.isdir(found[1]), flush=True)
"""


def test_the_stand_in_model_is_removed_when_the_bench_exits(tmp_path):
    import subprocess
    import sys

    from core import configs
    done = subprocess.run([sys.executable, "-c", STAND_IN, str(tmp_path / "none")], cwd=str(configs.PROJECT_ROOT),
                          capture_output=True, text=True, timeout=120)
    base, built = done.stdout.split()
    assert done.returncode == 0 and built == "True", done.stderr[-2000:]
    assert not os.path.exists(os.path.dirname(base))


class LoggingServer:
    """A stand-in for the model server's process: writes to its log, then prints where it listens (or exits 1)."""

    def __init__(self, starts, stdout=None, stderr=None, **_kwargs):
        stderr.write(b"a line of the server's log\n")
        stderr.flush()
        self.returncode = None if starts else 1
        self.stdout = iter(["Exporting HTTP/REST API at:localhost:25599 ...\n"] if starts else [])

    def poll(self):
        return self.returncode

    def terminate(self):
        self.returncode = 0

    def wait(self, timeout=None):
        return self.returncode


def test_the_model_servers_log_is_removed_at_its_stop_and_still_read(monkeypatch):
    from tests.support import serving as testing
    monkeypatch.setattr(testing._subprocess, "Popen", lambda *args, **kwargs: LoggingServer(True, **kwargs))
    server = testing.start_server("/models/letters", subprocess=True)
    assert os.path.exists(server.log_path)
    assert server.stop() == 0
    assert not os.path.exists(server.log_path) and server.log() == "a line of the server's log\n"


def test_a_model_server_that_does_not_start_keeps_its_log_and_quotes_it(monkeypatch):
    from tests.support import serving as testing
    monkeypatch.setattr(testing._subprocess, "Popen", lambda *args, **kwargs: LoggingServer(False, **kwargs))
    with pytest.raises(RuntimeError) as caught:
        testing.start_server("/models/letters", subprocess=True)
    message = str(caught.value)
    assert "serving subprocess did not start (exit 1; its log kept: " in message
    assert "a line of the server's log" in message
    log_path = message.split("its log kept: ", 1)[1].split(")", 1)[0]
    assert os.path.exists(log_path)
    os.remove(log_path)


def test_the_web_bench_measures_each_size_in_each_format_on_the_same_servers(monkeypatch, tmp_path, capsys):
    """What a large upload costs the model and the web client: a PNG and a JPEG of each size, one server each."""
    from PIL import Image

    started, sent = [], []

    class Web:
        def send_signal(self, signum):
            started.append("stopped web")

        def wait(self, timeout=None):
            return 0

    def post(self, path, body):
        image = base64.b64decode(json.loads(body)["image"] if path == "/api/predict"
                                 else json.loads(body)["instances"][0]["b64"])
        with Image.open(io.BytesIO(image)) as img:
            sent.append((path, img.format, img.mode, img.size))
        return 0.001, 200, b'{"model_version": 1}'
    monkeypatch.setattr(web_bench.testing, "pushed_or_stand_in",
                        lambda *args: (str(tmp_path), {1: str(tmp_path / "1")}, ""))
    monkeypatch.setattr(web_bench.testing, "start_server",
                        lambda *args, **kwargs: started.append(("server", kwargs["port"])) or FakeServer([]))
    monkeypatch.setattr(web_bench, "start_web",
                        lambda *args: started.append(("web", args[2])) or (Web(), "http://127.0.0.1:2"))
    monkeypatch.setattr(web_bench.KeepAlive, "post", post)
    web_bench.main(["--requests", "1", "--warmup", "0", "--image-size", "16", "24", "--format", "png", "jpeg",
                    "--serving-port", "28123", "--web-port", "28124"])
    assert started == [("server", 28123), ("web", 28124), "stopped web"]
    shown = {(fmt, mode, size) for _, fmt, mode, size in sent}
    assert shown == {("PNG", "RGBA", (16, 16)), ("JPEG", "RGB", (16, 16)), ("PNG", "RGBA", (24, 24)),
                     ("JPEG", "RGB", (24, 24))}
    assert len(sent) == 8   # each image once directly, once through the web client
    out = capsys.readouterr().out
    assert [line.split(",")[0] for line in out.splitlines() if line.startswith("image ")] == [
        "image 16x16 PNG", "image 16x16 JPEG", "image 24x24 PNG", "image 24x24 JPEG"]
    assert out.count("  direct median") == out.count("  web    median") == 4 and "reproduce:" in out
