"""letters-demo-serve (the end of make demo): no child outlives it, a busy port is said before anything starts,
and a child that dies is named."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.support import serving as testing
from tests.support.serving import wait_for

pytestmark = pytest.mark.slow   # starts the model server and the web client


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def launch(tmp_path, *ports):
    base = tmp_path / "models" / "letters"
    testing.publish_version(str(base), 1)
    serving_port, web_port = ports or (testing.free_port(), testing.free_port())
    # a LETTERS_WEB_HOST set for letters-web (0.0.0.0 behind a proxy, say) is not the demo's: its web client binds
    # 127.0.0.1 whatever it holds (it had bound it, or failed on it: a host that is no address fails to start)
    env = dict(os.environ, LETTERS_REQUEST_LOG_DIR=str(tmp_path / "logs"), LETTERS_FEEDBACK_DIR=str(tmp_path / "fb"),
               LETTERS_WEB_HOST="bogus.invalid")
    return subprocess.Popen([sys.executable, "-m", "pipeline.serve_demo", "--serving-dir", str(base),
                             "--serving-port", str(serving_port), "--grpc-port", "0", "--web-port", str(web_port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_busy_port_is_said_before_anything_starts(tmp_path):
    """Another server on the port had answered in place of ours: the banner said all was well, then the
    launcher quit without a word when its own server failed to bind."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = launch(tmp_path, port, testing.free_port())
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and f"already listens on the model server's REST port {port} (--serving-port)" in err
    assert "Web client" not in out


def test_what_cannot_start_is_a_usage_error_at_once(tmp_path):
    """Port 0 for the model server's REST or the web client (this command waits on them), and a serving dir whose
    only version folder holds no model, had been accepted and failed after one to three minutes of waiting."""
    base = tmp_path / "models" / "letters"
    (base / "123").mkdir(parents=True)   # a version folder without saved_model.pb
    version = tmp_path / "other" / "letters" / "7"
    testing.publish_version(str(version.parent), 7)
    as_text = tmp_path / "text" / "letters" / "7"   # its graphs in saved_model.pbtxt, which the server loads too
    testing.publish_version(str(as_text.parent), 7)
    testing.store_as_text(str(as_text))
    for args, message in ((["--serving-dir", str(base)], f"no pushed model in {base}"),
                          (["--serving-dir", str(version)], f"{version} is a version folder; give its serving dir"),
                          (["--serving-dir", str(as_text)], f"{as_text} is a version folder; give its serving dir"),
                          (["--web-port", "0"], "0 (any free port) cannot be waited on here"),
                          (["--serving-port", "0"], "0 (any free port) cannot be waited on here")):
        proc = subprocess.run([sys.executable, "-m", "pipeline.serve_demo", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (as_text.parent / "models.config").exists()   # nothing written for a folder refused


def model_servers(pid: int) -> list[int]:
    """The children of ``pid`` that run the model server (not a short-lived child an import may start)."""
    def command(child):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                return f.read().split(b"\0")
        except OSError:
            return []
    return [child for child in children(pid) if b"serving" in command(child)]


def test_sigterm_while_starting_leaves_no_model_server_behind(tmp_path):
    proc = launch(tmp_path)
    (server,) = wait_for(lambda: model_servers(proc.pid), timeout=120)   # the model server, still loading
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    wait_for(lambda: not alive(server), timeout=60)


def test_a_child_that_dies_is_named_and_the_other_stopped(tmp_path):
    proc = launch(tmp_path)
    wait_for(lambda: len(children(proc.pid)) == 2, timeout=120)
    server, web = children(proc.pid)
    line = wait_for(lambda: "Ctrl-C stops both" in (proc.stdout.readline() or ""), timeout=240)
    assert line
    os.kill(web, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "error: the web client exited with code -9; stopping the other" in err
    wait_for(lambda: not alive(server), timeout=60)


def test_a_models_config_that_serves_another_folder_or_name_is_refused_before_anything_starts(tmp_path):
    """The models.config beside the serving dir is kept once written: after the folder was moved or renamed it
    served the old folder (new pushes never seen); with another model name the wait ran out after 180 s."""
    base = tmp_path / "models" / "letters_b"
    testing.publish_version(str(base), 1)
    config = tmp_path / "models" / "models.config"
    for text, message in (
            (f"model_config_list {{ config {{ name: 'letters' base_path: '{tmp_path / 'models' / 'letters'}' "
             "model_platform: 'tensorflow' } }", f"serves letters from {tmp_path / 'models' / 'letters'}, not from"),
            (f"model_config_list {{ config {{ name: 'hebrew' base_path: '{base}' model_platform: 'tensorflow' }} }}",
             "serves no model named 'letters'")):
        config.write_text(text)
        proc = subprocess.run([sys.executable, "-m", "pipeline.serve_demo", "--serving-dir", str(base),
                               "--serving-port", str(testing.free_port()), "--web-port", str(testing.free_port())],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_repeated_ports_and_versions_that_cannot_serve_are_refused_before_anything_starts(tmp_path, capsys,
                                                                                         monkeypatch):
    """Each had been accepted, and the wait for the model server ran out after 180 s: one port for REST and gRPC
    (the server skips its REST API, as server.cc does), a half-written newest version folder (the latest policy
    picks it although an older one is complete), a models.config whose specific versions are all gone."""
    from pipeline import serve_demo

    def no_start(*args, **kwargs):
        raise AssertionError("a child was started")
    monkeypatch.setattr(serve_demo.subprocess, "Popen", no_start)
    base = tmp_path / "models" / "letters"
    testing.publish_version(str(base), 1)
    serving_port, web_port = testing.free_port(), testing.free_port()
    common = ["--serving-dir", str(base), "--serving-port", str(serving_port), "--web-port", str(web_port)]

    def refused(*argv):
        code = serve_demo.main([*common, *argv])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        return err
    assert refused("--grpc-port", str(serving_port)) == (
        f"error: --serving-port and --grpc-port are the same port ({serving_port}); give each its own")
    testing.publish_version(str(base), 2, half_written=True)
    err = refused()
    assert f"version folder {base / '2'}, which" in err and "is incomplete (no saved_model.pb)" in err
    shutil.rmtree(base / "2")
    testing.publish_version(str(base), 3, without_variables=True)      # a copy caught halfway: a server refuses it
    err = refused()
    assert f"version folder {base / '3'}, which" in err and "is incomplete (no variables/variables.index)" in err
    (tmp_path / "models" / "models.config").write_text(
        f"model_config_list {{ config {{ name: 'letters' base_path: '{base}' model_platform: 'tensorflow' "
        "model_version_policy { specific { versions: 5 versions: 6 } } } }")
    assert f"serves versions 5, 6 of letters (specific), none of which is in {base}" in refused("--grpc-port", "0")


@pytest.mark.parametrize("under", ["", "letters"], ids=["the serving dir", "a folder above it"])
def test_a_file_for_the_serving_dir_is_said_to_be_a_file(tmp_path, capsys, monkeypatch, under):
    """A regular file given as --serving-dir (or where a folder above it would be) had been 'no pushed model',
    with the advice to run the pipeline, which would not push into it."""
    from pipeline import serve_demo

    def no_start(*args, **kwargs):
        raise AssertionError("a child was started")
    monkeypatch.setattr(serve_demo.subprocess, "Popen", no_start)
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    assert serve_demo.main(["--serving-dir", str(afile / under), "--serving-port", "18650", "--grpc-port", "18651",
                            "--web-port", "18652"]) == 2
    err = capsys.readouterr().err
    assert f"error: {afile} is not a directory: versions are folders in a directory" in err, err
    assert "no pushed model" not in err and "make pipeline" not in err, err


def test_a_version_folder_named_beyond_int64_is_no_model_to_serve(tmp_path, capsys, monkeypatch):
    """TF Serving reads no version from a folder named above 2^63 - 1 (safe_strto64 into int64): the demo had
    taken it for a pushed model, then said the models.config it wrote (the latest policy) served 'versions  of
    letters (specific)'."""
    from tensorflow_serving.config import model_server_config_pb2

    from pipeline import serve_demo

    def no_start(*args, **kwargs):
        raise AssertionError("a child was started")
    monkeypatch.setattr(serve_demo.subprocess, "Popen", no_start)
    base = tmp_path / "models" / "letters"
    os.rename(testing.publish_version(str(base), 1), base / "99999999999999999999")
    assert serve_demo.main(["--serving-dir", str(base), "--serving-port", "18650", "--grpc-port", "18651",
                            "--web-port", "18652"]) == 2
    err = capsys.readouterr().err
    assert f"no pushed model in {base}" in err and "specific" not in err, err
    latest = model_server_config_pb2.ModelConfig(name="letters", base_path=str(base), model_platform="tensorflow")
    problem = serve_demo.served_version_problem(latest, str(tmp_path / "models" / "models.config"), base)
    assert problem.startswith(f"no pushed model in {base}") and "specific" not in problem, problem


def test_the_model_server_does_not_retry_a_failed_load(tmp_path, capsys, monkeypatch):
    """With TF Serving's 5 retries a minute apart a promote to a version the demo's server cannot load waited
    out its two minutes in LOADING (the status shows no error while retrying) instead of ending with the error."""
    from pipeline import serve_demo
    from serving.config import parse_flags

    started = []

    def record(command, **kwargs):
        started.append(command)
        raise RuntimeError("not started in this test")
    monkeypatch.setattr(serve_demo.subprocess, "Popen", record)
    monkeypatch.setattr(serve_demo.signal, "signal", lambda *args: None)   # this process's handlers stay
    base = tmp_path / "models" / "letters"
    testing.publish_version(str(base), 1)
    assert serve_demo.main(["--serving-dir", str(base), "--serving-port", str(testing.free_port()), "--grpc-port",
                            "0", "--web-port", str(testing.free_port())]) == 1
    (command,) = started
    assert command[1:3] == ["-m", "serving"] and parse_flags(command[3:]).max_num_load_retries == 0


def test_a_bad_letters_web_port_is_read_only_when_no_web_port_is_given(tmp_path, capsys, monkeypatch):
    """LETTERS_WEB_PORT had been read while the parser was built: a bad one stopped --help and a given --web-port."""
    from pipeline import serve_demo

    monkeypatch.setenv("LETTERS_WEB_PORT", "abc")
    with pytest.raises(SystemExit) as done:
        serve_demo.main(["--help"])
    assert done.value.code == 0 and "--web-port" in capsys.readouterr().out
    missing = tmp_path / "nothing"
    assert serve_demo.main(["--serving-dir", str(missing), "--web-port", str(testing.free_port())]) == 2
    assert "LETTERS_WEB_PORT" not in capsys.readouterr().err           # the flag is used, the variable not read
    with pytest.raises(SystemExit) as done:
        serve_demo.main(["--serving-dir", str(missing)])
    assert done.value.code == 2 and "LETTERS_WEB_PORT='abc' is not a port (1..65535)" in capsys.readouterr().err


def test_a_misspelled_setting_is_warned_of_once_not_again_by_each_child(tmp_path, capsys, monkeypatch):
    from pipeline import serve_demo

    environments = []

    def record(command, env=None, **kwargs):
        environments.append(env)
        raise RuntimeError("not started in this test")
    monkeypatch.setattr(serve_demo.subprocess, "Popen", record)
    monkeypatch.setattr(serve_demo.signal, "signal", lambda *args: None)   # this process's handlers stay
    monkeypatch.setenv("LETTERS_EPOCS", "30")
    monkeypatch.setenv("LETTERS_CANARY_SHARE", "0.1")
    base = tmp_path / "models" / "letters"
    testing.publish_version(str(base), 1)
    assert serve_demo.main(["--serving-dir", str(base), "--serving-port", "18550", "--grpc-port", "0",
                            "--web-port", "18551"]) == 1
    assert capsys.readouterr().err.count("warning: LETTERS_EPOCS is not a setting") == 1
    (env,) = environments   # the model server's: the child warns of nothing; the settings it reads it keeps
    assert "LETTERS_EPOCS" not in env and env["LETTERS_CANARY_SHARE"] == "0.1" and env["PATH"] == os.environ["PATH"]


def _unblessed_run(metadata_file, serving_dir) -> None:
    """A pipeline run (``r1``) whose Evaluator did not bless the model, its Pusher pushing into ``serving_dir``, as
    TFX's local runner records them in ML Metadata (node and pipeline_run contexts)."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb

    from core import configs
    from tests.support import fake_pipeline

    cfg = pb.ConnectionConfig()
    cfg.sqlite.filename_uri = str(metadata_file)
    store = metadata_store.MetadataStore(cfg)
    fake_pipeline.record_run_folders(str(metadata_file), "/data", str(serving_dir))
    fake_pipeline.record_trainer_run(str(metadata_file), "r1", time.time())
    [node] = store.put_contexts([pb.Context(type_id=store.get_context_type("node").id,
                                            name=f"{configs.PIPELINE_NAME}.Evaluator")])
    run = store.get_context_by_type_and_name("pipeline_run", "r1").id
    blessing = pb.Artifact(type_id=store.put_artifact_type(pb.ArtifactType(name="ModelBlessing")),
                           uri="/p/Evaluator/blessing/9")
    blessing.custom_properties["blessed"].int_value = 0
    [execution] = store.put_executions([pb.Execution(
        type_id=store.put_execution_type(pb.ExecutionType(name="tfx.components.evaluator.component.Evaluator")),
        last_known_state=pb.Execution.COMPLETE)])
    store.put_attributions_and_associations([], [pb.Association(execution_id=execution, context_id=node),
                                                 pb.Association(execution_id=execution, context_id=run)])
    fake_pipeline.link(store, execution, {}, {"blessing": store.put_artifacts([blessing])[0]})


def test_no_pushed_model_after_a_run_whose_model_was_not_blessed_says_so(tmp_path, capsys, monkeypatch):
    """make demo serves after a run that blessed nothing (it ends well): the error had said to run the pipeline
    first (make demo), which had just run. It says the pipeline pushes only a blessed model, and, when the
    default pipeline root's last run pushes into this serving dir, that its model was not blessed."""
    from pipeline import serve_demo

    serving = tmp_path / "models" / "letters"
    monkeypatch.setenv("LETTERS_PIPELINE_ROOT", str(tmp_path / "pipeline"))
    monkeypatch.setenv("LETTERS_SERVING_DIR", str(serving))
    assert serve_demo.main([]) == 2                                       # no run yet
    err = capsys.readouterr().err
    assert f"error: no pushed model in {serving}; the pipeline pushes a model only when the gate blesses it" in err
    assert "run the pipeline first" not in err and "last pipeline run" not in err

    (tmp_path / "pipeline").mkdir()
    _unblessed_run(tmp_path / "pipeline" / "metadata.sqlite", serving)
    assert serve_demo.main([]) == 2
    err = capsys.readouterr().err
    assert (f"error: no pushed model in {serving}; the last pipeline run (r1, {tmp_path / 'pipeline'}/metadata.sqlite) "
            "did not bless its model: the pipeline pushes a model only when the gate blesses it (top-1 accuracy at "
            "least --accuracy-floor") in err
    assert "run the pipeline first" not in err
    assert "last pipeline run" not in serve_demo.no_model_problem(tmp_path / "elsewhere")   # another serving dir
