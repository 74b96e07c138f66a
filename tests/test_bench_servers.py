"""The serving benches: bad counts are usage errors, servers bind loopback, and what was started is stopped."""
import pytest

from bench import http_layer_bench, serving_bench, web_bench


@pytest.mark.parametrize("module, argv", [
    (http_layer_bench, ["--rounds", "0"]), (http_layer_bench, ["--concurrency", "0"]),
    (web_bench, ["--requests", "0"]), (web_bench, ["--warmup", "-1"]),
    (serving_bench, ["--rounds", "0"]), (serving_bench, ["--concurrency", "-2"]),
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
