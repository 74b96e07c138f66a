"""``python -m web``: flags, environment, start and graceful stop."""
import os
import re
import signal
import subprocess
import sys

import pytest

from tests.web.conftest import Api, b64, letter_png
from web.config import DEFAULT_FEEDBACK_DIR, WebConfig, default_feedback_dir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_config_defaults_and_environment(tmp_path):
    config = WebConfig()
    assert (config.host, config.tf_serving_url, config.model_name) == ("127.0.0.1", "http://127.0.0.1:8501",
                                                                         "letters")
    assert config.feedback_dir == DEFAULT_FEEDBACK_DIR and DEFAULT_FEEDBACK_DIR.endswith("outputs/feedback")
    env = {"LETTERS_FEEDBACK_DIR": str(tmp_path), "LETTERS_CANARY_SHARE": "0.25", "LETTERS_WEB_PORT": "9000"}
    config = WebConfig.from_env(env)
    assert (config.feedback_dir, config.canary_share, config.port) == (str(tmp_path), 0.25, 9000)
    assert default_feedback_dir(env) == str(tmp_path)
    with pytest.raises(ValueError, match="LETTERS_CANARY_SHARE"):
        WebConfig.from_env({"LETTERS_CANARY_SHARE": "lots"})
    for bad in ({"canary_share": 1.5}, {"tf_serving_url": "ftp://x"}, {"model_name": "a/b"},
                {"max_upload_bytes": 0}):
        with pytest.raises(ValueError):
            WebConfig(**bad)


def test_path_flags_expand_a_tilde(tmp_path, monkeypatch):
    """--feedback-dir=~/fb (no shell expands ~ after =) had named a folder "~" in the current one; the same
    LETTERS_FEEDBACK_DIR was expanded."""
    from web.__main__ import parse_args
    monkeypatch.setenv("HOME", str(tmp_path))
    config = parse_args(["--feedback-dir=~/fb", "--request-log-dir=~/logs"])
    assert (config.feedback_dir, config.request_log_dir) == (str(tmp_path / "fb"), str(tmp_path / "logs"))


def test_an_empty_path_flag_is_the_default_not_the_current_directory(tmp_path, monkeypatch):
    """--feedback-dir= had stored the feedback in the current folder (abspath("")), while local_runner.py
    --feedback-dir "" reads the default store; an empty --request-log-dir is no request log, as its help says."""
    from web.__main__ import parse_args
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LETTERS_REQUEST_LOG_DIR", str(tmp_path / "logs"))
    for setting, store in (("", DEFAULT_FEEDBACK_DIR), (str(tmp_path / "store"), str(tmp_path / "store"))):
        monkeypatch.setenv("LETTERS_FEEDBACK_DIR", setting)
        config = parse_args(["--feedback-dir=", "--request-log-dir="])
        assert (config.feedback_dir, config.request_log_dir) == (store, "")
        assert parse_args([]).request_log_dir == str(tmp_path / "logs")


def test_an_empty_host_is_the_default_address_not_every_interface(monkeypatch):
    """--host "" had bound every interface (0.0.0.0) where an empty LETTERS_WEB_HOST is unset: 127.0.0.1."""
    from web.__main__ import parse_args
    assert parse_args(["--host", ""]).host == "127.0.0.1"
    monkeypatch.setenv("LETTERS_WEB_HOST", "127.0.0.2")
    assert parse_args(["--host="]).host == "127.0.0.2" and parse_args(["--host", "0.0.0.0"]).host == "0.0.0.0"


def test_command_line_serves_and_stops(tmp_path, serving_labelled):
    proc = subprocess.Popen(
        [sys.executable, "-m", "web", "--port", "0", "--tf-serving-url", serving_labelled.url,
         "--model-name", "letters", "--feedback-dir", str(tmp_path / "fb"), "--canary-share", "1",
         "--max-upload-bytes", "100000", "--log-level", "WARNING"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
        assert match, line + proc.stderr.read() if proc.poll() is not None else line
        api = Api(match.group(1))
        assert api.get("/healthz") == (200, {"status": "ok"})
        status, answer = api.predict(letter_png())
        assert status == 200 and answer["route"] == "canary" and answer["model_version"] == "2"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert (tmp_path / "fb" / "feedback.sqlite").exists()


def test_sigterm_lets_a_request_being_received_finish_and_be_stored(tmp_path):
    """SIGTERM while a feedback body is still arriving: the request is answered and its row stored, then the
    process exits (an idle keep-alive connection is not waited for)."""
    import json
    import socket
    import time
    proc = subprocess.Popen(
        [sys.executable, "-m", "web", "--port", "0", "--feedback-dir", str(tmp_path / "fb"), "--log-level", "WARNING"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        match = re.search(r"at http://(127\.0\.0\.1):(\d+)/", proc.stdout.readline())
        assert match, proc.stderr.read() if proc.poll() is not None else "no address printed"
        address = (match.group(1), int(match.group(2)))
        idle = socket.create_connection(address)            # a browser's idle keep-alive connection
        body = json.dumps({"image": b64(letter_png()), "label": "bet"}).encode()
        with socket.create_connection(address, timeout=30) as sock:
            sock.sendall(b"POST /api/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:len(body) // 2])
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            sock.sendall(body[len(body) // 2:])
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 201 Created"), answer[:200]
        assert proc.wait(30) == 0
        idle.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    from core.feedback import read_records
    assert [record.true_label for record in read_records(tmp_path / "fb")] == ["bet"]


def test_after_sigterm_no_new_request_is_taken_and_the_one_being_answered_gets_its_answer(tmp_path):
    """SIGTERM: a kept-alive connection is closed, not served its next request; a connection that sends its first
    request only after the stop is told 503 stopping with Connection: close; the feedback being received is stored
    and answered with Connection: close, then the process exits. Kept-alive connections had been served for as long
    as the drain lasted, and the drain had ended at the first moment no request was being answered."""
    import json
    import socket
    import time
    proc = subprocess.Popen(
        [sys.executable, "-m", "web", "--port", "0", "--feedback-dir", str(tmp_path / "fb"), "--log-level", "WARNING"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sockets = []
    try:
        match = re.search(r"at http://(127\.0\.0\.1):(\d+)/", proc.stdout.readline())
        assert match, proc.stderr.read() if proc.poll() is not None else "no address printed"
        address = (match.group(1), int(match.group(2)))
        kept, fresh, sending = sockets[:] = [socket.create_connection(address, timeout=30) for _ in range(3)]
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = b""
        while not re.search(rb"\r\n\r\n\{.*\}", reply, re.DOTALL):
            reply += kept.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200 OK")                  # kept alive, waiting for its next request
        body = json.dumps({"image": b64(letter_png()), "label": "bet"}).encode()
        sending.sendall(b"POST /api/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:len(body) // 2])
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        try:
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert kept.recv(65536) == b""                          # closed at the stop, the request not read
        except ConnectionResetError:
            pass
        fresh.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        refused = b"".join(iter(lambda: fresh.recv(65536), b""))   # until it is closed
        assert refused.startswith(b"HTTP/1.1 503") and b"Connection: close" in refused, refused[:300]
        assert b'"reason": "stopping"' in refused
        sending.sendall(body[len(body) // 2:])
        answer = b"".join(iter(lambda: sending.recv(65536), b""))
        assert answer.startswith(b"HTTP/1.1 201 Created") and b"Connection: close" in answer, answer[:300]
        assert proc.wait(30) == 0
    finally:
        for sock in sockets:
            sock.close()
        if proc.poll() is None:
            proc.kill()
    from core.feedback import read_records
    assert [record.true_label for record in read_records(tmp_path / "fb")] == ["bet"]


def test_after_sigterm_a_new_connection_is_refused_while_a_request_is_being_answered(tmp_path, dead_url):
    """SIGTERM while a request is arriving: a connect made after the stop is refused at once, as the README says. The
    listening socket had stayed open for the drain: the connect succeeded, its request was never answered, and the
    connection was reset when the drain ended (up to --request-timeout + --serving-timeout later)."""
    import socket
    import time
    proc = subprocess.Popen(
        [sys.executable, "-m", "web", "--port", "0", "--tf-serving-url", dead_url, "--feedback-dir",
         str(tmp_path / "fb"), "--request-timeout", "8", "--log-level", "WARNING"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        match = re.search(r"at http://(127\.0\.0\.1):(\d+)/", proc.stdout.readline())
        assert match, proc.stderr.read() if proc.poll() is not None else "no address printed"
        address = (match.group(1), int(match.group(2)))
        with socket.create_connection(address, timeout=30) as sending:      # a request in flight
            sending.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"Content-Length: 1000\r\n\r\n" + b'{"image": ')
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            started = time.monotonic()
            try:
                with socket.create_connection(address, timeout=3) as late:
                    late.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    answer = late.recv(65536)
                    assert answer.startswith(b"HTTP/1.1 503") and b'"reason": "stopping"' in answer, answer[:300]
            except ConnectionRefusedError:
                pass
            assert time.monotonic() - started < 2
            assert proc.poll() is None                                          # still draining
        assert proc.wait(30) == 0       # the request in flight ended (its client gone): the drain is over
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_startup_line_brackets_an_ipv6_address(tmp_path):
    """--host ::1: the URL printed is one a browser opens, http://[::1]:<port>/ (it had been http://::1:<port>/)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "web", "--host", "::1", "--port", "0", "--feedback-dir", str(tmp_path / "fb"),
         "--log-level", "WARNING"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"letters web client at (http://\[::1\]:\d+)/ -> ", line)
        assert match, line + (proc.stderr.read() if proc.poll() is not None else "")
        assert Api(match.group(1)).get("/healthz") == (200, {"status": "ok"})
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_command_line_rejects_bad_flags():
    proc = subprocess.run([sys.executable, "-m", "web", "--canary-share", "2"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "canary share must be between 0 and 1" in proc.stderr


@pytest.mark.parametrize("url, why", [("http://127.0.0.1:x", "Port could not be cast to integer value as 'x'"),
                                       ("http://", ""), ("http://127.0.0.1:99999", "Port out of range 0-65535"),
                                       ("ftp://127.0.0.1", "")])
def test_a_malformed_tf_serving_url_is_a_usage_error_from_the_flag_and_the_variable(tmp_path, monkeypatch, capsys,
                                                                                     url, why):
    """The URL is read as the connection to TF Serving reads it, with the other settings: one line naming the flag's
    setting or the variable, exit 2 (it had been a traceback when the backend was built)."""
    import web.__main__ as cli
    from serving.client import RestConnection
    problem = f"TF Serving URL {url!r} is not an http(s) URL" + (f" ({why})" if why else "")
    argv = ["--port", "0", "--feedback-dir", str(tmp_path / "feedback")]
    for flags, variable, shown in ((["--tf-serving-url", url], "", problem),
                                   ([], url, f"LETTERS_TF_SERVING_URL={url!r}: {problem}")):
        monkeypatch.setenv("LETTERS_TF_SERVING_URL", variable)
        with pytest.raises(SystemExit) as stop:
            cli.main(argv + flags)
        assert stop.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1] == f"letters-web: error: {shown}"
    with pytest.raises(ValueError, match=re.escape(f"{url!r} is not an http(s) URL")):
        RestConnection(url)   # the same rules


def test_missing_page_files_are_not_reported_as_a_port_problem(tmp_path, monkeypatch, capsys):
    import web.__main__ as cli
    from web import server
    monkeypatch.setattr(server, "STATIC_DIR", str(tmp_path / "static"))   # an install without the page's files
    status = cli.main(["--host", "127.0.0.1", "--port", "0", "--feedback-dir", str(tmp_path / "feedback")])
    err = capsys.readouterr().err
    assert status == 2 and "cannot start the web client" in err and str(tmp_path / "static") in err
    assert "listen" not in err


def test_a_url_for_the_feedback_store_is_refused_at_start(tmp_path, monkeypatch, capsys):
    """--feedback-dir gs://… had made a folder ./gs:/… and stored the feedback there ("feedback in gs://…")."""
    import web.__main__ as cli
    from web import server
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(server.WebServer, "serve_forever", lambda *_, **__: pytest.fail("the web client started"))
    assert cli.main(["--port", "0", "--feedback-dir", "gs://my-bucket/feedback"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot open the feedback store gs://my-bucket/feedback: it is an SQLite database")
    assert not (tmp_path / "gs:").exists()


def test_a_port_that_is_taken_leaves_no_feedback_store_or_request_log_behind(tmp_path, capsys):
    """The port is bound first: the store's folder and database and the request log's folder had been created,
    empty, before the web client found it could not listen."""
    import socket

    import web.__main__ as cli
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = cli.main(["--host", "127.0.0.1", "--port", str(port), "--feedback-dir", str(tmp_path / "feedback"),
                           "--request-log-dir", str(tmp_path / "log")])
    err = capsys.readouterr().err
    assert status == 2 and f"cannot listen on 127.0.0.1:{port}: Address already in use (--port chooses another)" in err
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.parametrize("host, why", [("10.255.255.1", "Cannot assign requested address"),
                                       ("no-such-host.invalid", "")])
def test_an_address_it_cannot_listen_on_is_said_without_the_port_hint(host, why, tmp_path, capsys):
    """Only a port in use is the port's fault: an address not on this machine, a host name that does not resolve,
    had been said with (--port chooses another) too."""
    import web.__main__ as cli
    status = cli.main(["--host", host, "--port", "20500", "--feedback-dir", str(tmp_path / "feedback"),
                       "--request-log-dir", str(tmp_path / "log")])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith(f"error: cannot listen on {host}:20500: {why}"), err
    assert "--port" not in err and len(err.splitlines()) == 1, err


def test_a_port_this_user_may_not_listen_on_keeps_the_port_hint(tmp_path, capsys, monkeypatch):
    """A port below 1024 for a user who may not bind it (EACCES) is the port's fault too: another port does."""
    import errno

    import web.__main__ as cli
    import web.server

    def refuse(config):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(web.server, "bind", refuse)
    status = cli.main(["--host", "127.0.0.1", "--port", "80", "--feedback-dir", str(tmp_path / "feedback"),
                       "--request-log-dir", str(tmp_path / "log")])
    err = capsys.readouterr().err
    assert status == 2 and "cannot listen on 127.0.0.1:80: Permission denied (--port chooses another)" in err, err
