"""``python -m serving --port=N``: the gRPC line TF Serving prints, answers on both APIs, a clean SIGTERM stop (both
listeners closed at once, in-flight calls finishing); and ``letters-batch-predict --via grpc`` giving the answers
``--via rest`` gives."""
import core  # noqa: F401  (before TensorFlow)

import csv
import logging
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc

from core import configs
from tests.support import serving as testing

TIMEOUT = 60


@pytest.fixture(scope="module")
def process(models_root):
    grpc_port, rest_port = testing.free_port(), testing.free_port()
    proc = subprocess.Popen([sys.executable, "-m", "serving", "--model_name=letters",
                             f"--model_base_path={models_root / 'letters'}", f"--port={grpc_port}",
                             f"--rest_api_port={rest_port}", "--enable_batching"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            cwd=str(configs.PROJECT_ROOT))
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen, deadline = [], time.monotonic() + 180
    while not any("Exporting HTTP/REST API" in line for line in seen):
        assert proc.poll() is None and time.monotonic() < deadline, f"server did not start: {seen}"
        try:
            seen.append(lines.get(timeout=0.5))
        except queue.Empty:
            pass
    yield proc, grpc_port, rest_port, seen
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_prints_the_grpc_line_answers_and_stops_cleanly(process):
    proc, grpc_port, rest_port, seen = process
    assert seen[0] == f"Running gRPC ModelServer at 127.0.0.1:{grpc_port} ...\n"
    assert seen[1] == f"Exporting HTTP/REST API at:127.0.0.1:{rest_port} ...\n"
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "letters"
        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=TIMEOUT)
    assert [s.version for s in status.model_version_status] == [2]


def test_batch_predict_via_grpc_matches_rest(process, tmp_path):
    from pipeline import batch_predict

    _, grpc_port, rest_port, _ = process
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(7):
        (folder / f"{i}.png").write_bytes(testing.png_bytes(noise_seed=i, size=16))
    rows = {}
    for via, predictor in (("rest", batch_predict.RestPredictor(f"http://127.0.0.1:{rest_port}")),
                           ("grpc", batch_predict.GrpcPredictor(f"127.0.0.1:{grpc_port}"))):
        out = tmp_path / f"{via}.csv"
        counts = batch_predict.predict_folder(predictor, str(folder), str(out), batch_size=3, progress=False)
        assert counts["images"] == 7 and counts["errors"] == 0
        with open(out, newline="", encoding="utf-8") as handle:
            rows[via] = list(csv.DictReader(handle))
    assert rows["grpc"] == rows["rest"]
    assert {row["model_version"] for row in rows["grpc"]} == {"2"}


def test_sigterm_stops_cleanly(process):
    proc, grpc_port, _, _ = process
    proc.terminate()
    assert proc.wait(timeout=TIMEOUT) == 0
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        with pytest.raises(grpc.FutureTimeoutError):
            grpc.channel_ready_future(channel).result(timeout=1)


def _gate_server(tmp_path, **flags):
    """``python -m serving`` with gRPC serving the gate model (tests.support.serving.save_gate) as ``gate``: the
    RunningServer and its gRPC port."""
    testing.save_gate(str(tmp_path / "gate" / "1"))
    grpc_port = testing.free_port()
    return testing.start_server(str(tmp_path / "gate"), "gate", subprocess=True, grpc_port=grpc_port,
                                **flags), grpc_port


def _held_call(channel, folder):
    """A gate model Predict whose run goes on until ``folder/release`` exists: its future, once the run started."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "gate"
    tensor = request.inputs["folder"]
    tensor.dtype = types_pb2.DT_STRING
    tensor.tensor_shape.dim.add(size=1)
    tensor.string_val.append(str(folder).encode())
    call = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict.future(request, timeout=10 * TIMEOUT)
    _wait_for(lambda: (folder / "started").exists() or call.done(), "the gate model's run did not start")
    assert not call.done(), call.exception()
    return call


def _wait_for(condition, message: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_closes_both_listeners_at_once_while_a_grpc_call_finishes(tmp_path):
    """SIGTERM: the REST port refuses new connections at once, not once the gRPC calls in flight have finished (it
    had answered predictions all that time); the call in flight still gets its answer."""
    folder = tmp_path / "run"
    folder.mkdir()
    server, grpc_port = _gate_server(tmp_path, rest_api_timeout_in_ms=300_000)   # a grace far past the waits here
    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            call = _held_call(channel, folder)
            server.process.send_signal(signal.SIGTERM)
            _wait_for(lambda: _refuses_connections(server.port), "the REST port still takes connections")
            assert not call.done()
            (folder / "release").touch()
            assert list(call.result(timeout=TIMEOUT).outputs["released"].bool_val) == [True]
        assert server.process.wait(TIMEOUT) == 0
    finally:
        (folder / "release").touch()
        server.stop()
    assert "Received SIGTERM" in server.log() and "Server stopped" in server.log()


def test_the_process_ends_after_the_stop_while_a_model_run_goes_on(tmp_path):
    """A model run the grace period cut off (one that would never end here) does not keep the process: it exits
    once the server has stopped, saying so (the interpreter had waited at exit for the run to end, with its CPU and
    memory, long after "Server stopped")."""
    folder = tmp_path / "run"
    folder.mkdir()
    server, grpc_port = _gate_server(tmp_path, rest_api_timeout_in_ms=1000)   # a grace period of 2 s
    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            _held_call(channel, folder)
            server.process.send_signal(signal.SIGTERM)
            _wait_for(lambda: "Server stopped" in server.log(), "the server did not stop")
            assert server.process.wait(TIMEOUT) == 0
        assert not (folder / "release").exists()   # the run was still going
        assert "Exiting with 1 model run(s) still going" in server.log()
    finally:
        (folder / "release").touch()
        server.stop()


def test_the_process_ends_at_once_while_a_version_load_the_stop_gave_up_on_goes_on(monkeypatch, caplog):
    """A version load still going once the server has stopped (its stop gave up waiting for the loader) ends the
    process here and now, saying so, as a model run still going does: at the interpreter's exit the loader's thread,
    inside TensorFlow's load, had aborted it (terminate called after throwing an instance of '', exit status 134)."""
    from serving import __main__ as command, versions

    exits = []
    monkeypatch.setattr(command.os, "_exit", exits.append)
    monkeypatch.setattr(logging, "shutdown", lambda: None)
    with versions._loads, caplog.at_level(logging.WARNING, logger="serving"):
        command.end(0)
    assert exits == [0]
    assert "Exiting with 1 version load(s) still going" in caplog.text
    assert command.end(0) == 0 and exits == [0]   # none going: main's status


def test_a_server_that_cannot_start_prints_tf_servings_status_on_stdout(tmp_path, capsys):
    """main.cc prints "Failed to start server. Error: " and the status, its code first, on stdout: config files
    that cannot be read, do not parse or name a relative base path had printed Python's text, without the code,
    on stderr, and a bad logging_config or batching parameter its text without one. It then returns -1, an exit
    status of 255 (it had been 1). A config file is read as ParseProtoTextFile maps it into memory: an empty one
    (had been an empty config) and a folder (had been FAILED_PRECONDITION: ...; Is a directory) cannot be mapped."""
    from serving.__main__ import main

    bad = tmp_path / "bad.config"
    bad.write_text("model_config_list {\n  bogus: 1 }\n")
    relative = tmp_path / "relative.config"
    relative.write_text("model_config_list { config { name: 'letters' base_path: 'relative/letters' "
                        "model_platform: 'tensorflow' } }")
    missing = tmp_path / "nonexistent.config"
    kafka = tmp_path / "kafka.config"
    kafka.write_text("model_config_list { config { name: 'letters' base_path: '/m' model_platform: 'tensorflow' "
                     "logging_config { log_collector_config { type: 'kafka' filename_prefix: '/tmp/x' } } } }")
    batching = tmp_path / "batching.config"
    batching.write_text("num_batch_threads { value: 0 }\n")
    empty = tmp_path / "empty.config"
    empty.write_text("")
    for flags, error in (
            ([f"--model_config_file={kafka}"], f"NOT_FOUND: {kafka}: model letters: logging_config: Cannot find "
                                               "LogCollector::Factory for type: 'kafka' (this server has one: "
                                               "'tfrecord', TFRecord files of PredictionLog)"),
            (["--model_base_path=/m", "--enable_batching", f"--batching_parameters_file={batching}"],
             "INVALID_ARGUMENT: num_batch_threads must be positive; was 0"),
            ([f"--model_config_file={relative}"], "INVALID_ARGUMENT: Expected model letters to have an absolute "
                                                  "path or URI; got base_path()=relative/letters"),
            (["--model_name=letters", "--model_base_path=relative/letters"],
             "INVALID_ARGUMENT: Expected model letters to have an absolute path or URI; "
             "got base_path()=relative/letters"),
            ([f"--model_config_file={missing}"], f"NOT_FOUND: {missing}; No such file or directory"),
            ([f"--model_config_file={tmp_path}"], f"NOT_FOUND: {tmp_path}; No such device"),   # a folder's mmap
            ([f"--model_config_file={empty}"], f"INVALID_ARGUMENT: {empty}; Invalid argument"),   # mmap of 0 bytes
            (["--model_base_path=/m", f"--monitoring_config_file={empty}"], f"INVALID_ARGUMENT: {empty}; Invalid "
                                                                             "argument"),
            (["--model_base_path=/m", "--enable_batching", f"--batching_parameters_file={empty}"],
             f"INVALID_ARGUMENT: {empty}; Invalid argument"),
            ([f"--model_config_file={bad}"], f"INVALID_ARGUMENT: Invalid protobuf file: '{bad}'")):
        assert main(flags + ["--rest_api_port=0"]) == 255   # main.cc's return -1
        out, err = capsys.readouterr()
        assert out == f"Failed to start server. Error: {error}\n" and "Failed to start" not in err, (out, err)


def _taken_port():
    """A loopback socket that listens (without SO_REUSEPORT, so neither listener can share its port)."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    return taken, taken.getsockname()[1]


def test_a_grpc_port_taken_fails_to_start_as_build_and_start(models_root):
    """A --port that cannot be bound: BuildAndStart's INVALID_ARGUMENT in its words on stdout, exit status 255,
    the reason logged (gRPC logs it in TF Serving); the line had been an OSError's text, without the code."""
    taken, port = _taken_port()
    with taken:
        proc = subprocess.run([sys.executable, "-m", "serving", "--model_name=letters",
                               f"--model_base_path={models_root / 'letters'}", f"--port={port}", "--rest_api_port=0"],
                              capture_output=True, text=True, timeout=180, cwd=str(configs.PROJECT_ROOT))
    assert proc.returncode == 255, (proc.stdout, proc.stderr[-2000:])
    assert proc.stdout == "Failed to start server. Error: INVALID_ARGUMENT: Failed to BuildAndStart gRPC server\n"
    assert f"Failed to bind to address 127.0.0.1:{port}" in proc.stderr


def test_a_rest_port_taken_leaves_grpc_serving(models_root, caplog):
    """A --rest_api_port that cannot be bound once gRPC runs: TF Serving's ERROR line (CreateAndStartHttpServer's
    nullptr), the reason logged, and gRPC goes on serving; the start had failed, stopping gRPC with it."""
    taken, port = _taken_port()
    with taken, caplog.at_level(logging.INFO, logger="serving"):
        with testing.start_grpc_server(model_base_path=models_root / "letters", port=port) as running:
            server = running.server
            assert server.port is None and server.http is None
            with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
                request = get_model_status_pb2.GetModelStatusRequest()
                request.model_spec.name = "letters"
                status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=TIMEOUT)
            assert [s.version for s in status.model_version_status] == [2]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"Failed to start HTTP Server at 127.0.0.1:{port}" in errors, errors
    assert any(e.startswith(f"Couldn't bind to port {port}: ") for e in errors), errors
    assert not any("Exporting HTTP/REST API" in r.getMessage() for r in caplog.records)


def test_a_rest_port_taken_with_grpc_off_fails_to_start(models_root, caplog):
    """With gRPC off (--port=0, this server's default) a REST port that cannot be bound leaves nothing to serve:
    the start fails after TF Serving's ERROR line (TF Serving, whose --port=0 builds a gRPC server of no port,
    would run on serving nothing)."""
    taken, port = _taken_port()
    with taken, pytest.raises(OSError, match=f"Failed to start HTTP Server at 127.0.0.1:{port}, and gRPC is off"):
        testing.start_server(models_root / "letters", port=port)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"Failed to start HTTP Server at 127.0.0.1:{port}" in errors, errors


def test_a_server_with_no_model_fails_to_start_as_build_and_start(capsys):
    """Neither --model_base_path nor --model_config_file: BuildAndStart's INVALID_ARGUMENT, printed by main.cc
    on stdout, exit status 255; it had been a usage error (the usage on stderr, exit status 2)."""
    from serving.__main__ import main

    assert main(["--rest_api_port=0"]) == 255
    out, err = capsys.readouterr()
    assert out == ("Failed to start server. Error: INVALID_ARGUMENT: Both server_options.model_base_path and "
                   "server_options.model_config_file are empty!\n") and "usage:" not in err, (out, err)


def test_batching_parameters_without_batching_fail_to_start_as_build_and_start(tmp_path, capsys):
    """--batching_parameters_file without --enable_batching: BuildAndStart's INVALID_ARGUMENT in its words, printed
    by main.cc on stdout, exit status 255; it had been a usage error (in other words, on stderr, exit status 2)."""
    from serving.__main__ import main

    batching = tmp_path / "batching.config"
    batching.write_text("max_batch_size { value: 8 }\n")
    for flags in ([], ["--enable_batching=false"]):
        assert main(["--model_base_path=/m", f"--batching_parameters_file={batching}", "--rest_api_port=0"]
                    + flags) == 255
        out, err = capsys.readouterr()
        assert out == ("Failed to start server. Error: INVALID_ARGUMENT: server_options.batching_parameters_file "
                       "is set without setting server_options.enable_batching to true.\n") and "usage:" not in err


def test_model_server_flags_are_read_as_tensorflow_model_server_reads_them(capsys):
    """TensorFlow's command_line_flags: --name=value, a boolean also as --name; anything else is an unknown
    argument, printed with the usage, and the server still starts; real tensorflow_model_server flags the embedded
    server does not implement are ignored with a warning; no abbreviations."""
    from serving.config import parse_flags
    options = parse_flags(["--model_base_path=/m", "--enable_batching", "--rest_api_port", "8502"])
    assert options.enable_batching is True and options.rest_api_port != 8502
    assert "unknown argument: --rest_api_port" in capsys.readouterr().out
    options = parse_flags(["--model_base_path=/m", "--enable_batching", "false"])       # not a false
    assert options.enable_batching is True and "unknown argument: false" in capsys.readouterr().out
    assert parse_flags(["--model_base_path=/m", "--enable_batching=false"]).enable_batching is False
    options = parse_flags(["--model_base_path=/m", "--enable_model_warmup=false", "--tensorflow_intra_op_parallelism=1"])
    err = capsys.readouterr().err
    assert "--enable_model_warmup is a tensorflow_model_server flag the embedded server does not implement" in err
    parse_flags(["--model_base=/m", "--model_config_file=/c"])                  # an abbreviation is not the flag
    assert "unknown argument: --model_base=/m" in capsys.readouterr().out


@pytest.mark.parametrize("flag, value", [
    ("--enable_batching=yes", "yes"), ("--enable_batching=on", "on"), ("--enable_batching=", ""),
    ("--file_system_poll_wait_seconds=0.5", "0.5"), ("--file_system_poll_wait_seconds=inf", "inf"),
    ("--model_config_file_poll_wait_seconds=1e3", "1e3"), ("--port=1_000", "1_000"), ("--port=8500 ", "8500 "),
    ("--rest_api_port=abc", "abc")])
def test_a_value_tensorflows_flag_parser_refuses_is_refused(flag, value, capsys, caplog):
    """command_line_flags: a bool is true/false (any case), 1 or 0; an int32 is what sscanf's "%d%c" reads whole.
    yes/on had enabled batching, and 0.5 had been a poll interval TF Serving cannot be given. As Flags::Parse and
    main.cc: its words logged at ERROR, the usage on stdout, exit status 255 (main's -1); it had been argparse's
    error on stderr, exit status 2."""
    from serving.config import parse_flags
    with pytest.raises(SystemExit) as exit_info:
        parse_flags(["--model_base_path=/m", flag])
    out, err = capsys.readouterr()
    name = flag[2:].split("=")[0]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert exit_info.value.code == 255 and errors == [f"Couldn't interpret value {value} for flag {name}."]
    assert out.startswith("usage: ") and "--enable_batching=false" in out and "error:" not in err


def test_every_value_refused_is_logged_and_no_other_flag_is_read_first(caplog, capsys):
    """Flags::Parse reads every argument before main.cc stops: each value it cannot read is its own ERROR line,
    and a --version beside them does not print the version."""
    from serving.config import parse_flags
    with pytest.raises(SystemExit) as exit_info:
        parse_flags(["--enable_batching=yes", "--model_name=x", "--rest_api_port=abc", "--version"])
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert exit_info.value.code == 255 and errors == ["Couldn't interpret value yes for flag enable_batching.",
                                                      "Couldn't interpret value abc for flag rest_api_port."]
    assert "TensorFlow ModelServer" not in capsys.readouterr().out


def test_the_command_exits_255_on_a_value_it_cannot_read():
    """python -m serving as a supervisor sees it: status 255, TF's words on stderr, the usage on stdout."""
    proc = subprocess.run([sys.executable, "-m", "serving", "--enable_batching=yes", "--model_name=x"],
                          capture_output=True, text=True, timeout=120, cwd=str(configs.PROJECT_ROOT))
    assert proc.returncode == 255, proc.stderr[-2000:]
    assert "Couldn't interpret value yes for flag enable_batching." in proc.stderr
    assert proc.stdout.startswith("usage: ") and "Traceback" not in proc.stderr


def test_values_tensorflows_flag_parser_takes():
    from serving.config import parse_flags
    options = parse_flags(["--model_base_path=/m", "--enable_batching=TRUE", "--rest_api_enable_cors_support=1",
                           "--file_system_poll_wait_seconds= 7", "--port=+8500"])
    assert options.enable_batching is options.rest_api_enable_cors_support is True
    assert (options.file_system_poll_wait_seconds, options.port) == (7, 8500)
    assert parse_flags(["--model_base_path=/m", "--enable_batching=False"]).enable_batching is False


def test_a_bare_double_dash_ends_the_flags(capsys):
    """Flags::Parse passes "--" and everything after it through unread: the first unknown argument is "--"."""
    from serving.config import parse_flags
    options = parse_flags(["--model_base_path=/m", "--", "--port=8500", "--version"])
    assert options.port == 0 and capsys.readouterr().out.startswith("unknown argument: --\n")


def test_help_shows_the_flags_as_they_are_given(capsys):
    """--help as Flags::Usage: --name=default with its type (it had shown argparse's "--port PORT", a form the
    parser does not read); after an unknown argument the whole usage follows, as main.cc prints it."""
    from serving.config import parse_flags
    with pytest.raises(SystemExit):
        parse_flags(["--help"])
    out = capsys.readouterr().out
    assert "--port=0 " in out and '--model_name="default"' in out and "--enable_batching=false" in out
    assert "int32: gRPC port" in out and "PORT" not in out and "[--enable_batching" not in out
    parse_flags(["--model_base_path=/m", "--port", "8500"])
    out = capsys.readouterr().out
    assert out.startswith("unknown argument: --port\n") and "--rest_api_port=8501 " in out


@pytest.mark.parametrize("flag", ["--file_system_poll_wait_seconds=2147483648",
                                  "--model_config_file_poll_wait_seconds=-9999999999"])
def test_a_poll_interval_tf_serving_cannot_take_is_refused_at_start(flag, caplog):
    """TF Serving's poll intervals are int32 flags: inf had started the server and killed its pollers with an
    OverflowError, so new versions were never loaded (inf is not a whole number; neither are these int32s)."""
    from serving.config import parse_flags
    with pytest.raises(SystemExit) as exit_info:
        parse_flags(["--model_base_path=/m", flag])
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert exit_info.value.code == 255 and "is not a number of seconds TF Serving takes (an int32)" in errors[0]


@pytest.mark.parametrize("flag", ["--max_request_bytes=-1", "--max_request_bytes=0", "--rest_api_num_threads=-1",
                                  "--grpc_max_threads=-1"])
def test_a_request_limit_or_thread_count_that_cannot_work_is_refused_at_start(flag, capsys, caplog):
    """--max_request_bytes=-1 had started a server that answered every request 413 (a GET too), and a negative
    thread count failed only after the models loaded, in words that did not name the flag. Refused as a value
    TensorFlow's flag parser cannot read: logged at ERROR, the usage on stdout, exit status 255."""
    from serving.config import parse_flags
    with pytest.raises(SystemExit) as exit_info:
        parse_flags(["--model_base_path=/m", flag])
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert exit_info.value.code == 255 and errors[0].startswith(f"{flag} is not a number of")
    assert capsys.readouterr().out.startswith("usage: ")


def test_zero_threads_are_tf_servings_default(capsys):
    """0 threads: 4 x CPUs, the number TF Serving starts with."""
    from serving.config import parse_flags
    options = parse_flags(["--model_base_path=/m", "--rest_api_num_threads=0", "--grpc_max_threads=0"])
    assert (options.rest_api_num_threads, options.grpc_max_threads) == (0, 0)
