"""Version handling: policies, polling, availability-preserving swaps, broken versions, labels, startup."""
import contextlib
import logging
import os
import shutil
import threading
import time

import pytest
from tensorflow_serving.config import file_system_storage_path_source_pb2

from core import configs
from serving import config as config_lib
from serving import versions
from tests.support import serving as testing
from tests.support.serving import b64, statuses, wait_for

Policy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy
FAST = dict(file_system_poll_wait_seconds=0.1, max_num_load_retries=1, load_retry_interval_micros=100_000)


def poll(core):
    """One poll of ``core``, then the loads it made due, run here: a unit test's loader."""
    core.poll()
    core.load_due()


@contextlib.contextmanager
def running(target, name: str, stop_event: threading.Event, join: float = 30):
    """``target`` in a thread of its own, as the server runs it, until the block ends: then ``stop_event`` is set
    and the thread must end within ``join`` seconds."""
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop_event.set()
        thread.join(join)
        assert not thread.is_alive()


@contextlib.contextmanager
def loader(core):
    """``core``'s loader thread, as the server runs it, until the block ends."""
    with running(core.run_loader, "loader", core.stop_event):
        yield core


def top_index(client, path="/v1/models/letters:predict"):
    status, body = client.post(path, {"signature_name": configs.IMAGE_SIGNATURE,
                                      "instances": [b64(testing.png_bytes())]})
    assert status == 200, body
    return body["predictions"][0]["top_indices"][0]


# ----------------------------------------------------------------------------------------- unit level
def test_only_integer_directory_names_count(tmp_path):
    for name in ["1", "007", " 5", "+6", "v2", "1.0", "1a", "tmp", ".tmp123", ".staging-3"]:
        (tmp_path / name).mkdir()
    assert sorted(versions.list_versions(str(tmp_path), "m")) == [1, 5, 7]   # "+6": safe_strto64 takes no '+'
    assert versions.list_versions(str(tmp_path / "missing"), "m") is None


def test_policies():
    found = {1: "a", 2: "b", 5: "c"}
    latest = Policy()
    assert versions.aspired_versions(latest, found, "m") == {5: "c"}
    latest.latest.num_versions = 2
    assert versions.aspired_versions(latest, found, "m") == {5: "c", 2: "b"}
    every = Policy()
    every.all.SetInParent()
    assert versions.aspired_versions(every, found, "m") == found
    specific = Policy()
    specific.specific.versions.extend([1, 9])
    assert versions.aspired_versions(specific, found, "m") == {1: "a"}


# ------------------------------------------------------------------------------------------- polling
def test_new_versions_swap_and_broken_versions_never_replace_working_ones(tmp_path):
    base = str(tmp_path / "letters")
    testing.publish_version(base, 1)
    with testing.start_server(base, **FAST) as server:
        client = testing.RestClient(server.url)
        assert top_index(client) == 1
        testing.publish_version(base, 3, broken=True)
        wait_for(lambda: statuses(client).get(3, ("",))[0] == "END")
        state, code, message = statuses(client)[3]
        assert code != "OK" and message
        assert statuses(client)[1][0] == "AVAILABLE" and top_index(client) == 1
        testing.publish_version(base, 4, half_written=True)
        wait_for(lambda: statuses(client).get(4, ("",))[0] == "END")
        assert statuses(client)[4][1:] == ("NOT_FOUND", "Specified file path does not appear to contain a SavedModel "
                                           "bundle (should have a file called `saved_model.pb`)\nSpecified file "
                                           f"path: {os.path.join(base, '4')}")
        assert top_index(client) == 1
        testing.publish_version(base, 5)
        wait_for(lambda: statuses(client).get(1, ("",))[0] == "END")
        assert top_index(client) == 5
        seen = statuses(client)
        assert seen[5][0] == "AVAILABLE" and seen[1] == ("END", "OK", "")
        _, body = client.get("/v1/models/letters")
        assert [v["version"] for v in body["model_version_status"]] == ["5", "4", "3", "1"]
        assert client.post("/v1/models/letters/versions/1:predict", {"instances": ["x"]}) == (
            404, {"error": "Servable not found for request: Specific(letters, 1)"})


def test_a_saved_model_stored_as_text_is_served(tmp_path):
    """TF Serving loads a version folder holding saved_model.pbtxt instead of saved_model.pb (session_bundle_util.cc's
    MaybeSavedModelDirectory, TensorFlow's ReadSavedModel); it had been refused NOT_FOUND, as a folder with
    neither file still is. Text that does not parse is ReadTextProto's DATA_LOSS."""
    base = str(tmp_path / "letters")
    testing.store_as_text(testing.publish_version(base, 1))
    with testing.start_server(base, **FAST) as server:
        client = testing.RestClient(server.url)
        assert statuses(client)[1] == ("AVAILABLE", "OK", "")
        assert top_index(client) == 1
    damaged = testing.store_as_text(testing.publish_version(base, 2))
    with open(damaged, "a") as handle:
        handle.write("not a field {")
    with pytest.raises(versions.ServingError) as caught:
        versions.Servable("letters", 2, os.path.dirname(damaged))
    assert (caught.value.code, caught.value.message) == ("DATA_LOSS", f"Can't parse {damaged} as text proto")
    os.remove(damaged)
    with pytest.raises(versions.ServingError) as caught:
        versions.Servable("letters", 2, os.path.dirname(damaged))
    assert (caught.value.code, caught.value.message) == (
        "NOT_FOUND", "Specified file path does not appear to contain a SavedModel bundle (should have a file called "
                     f"`saved_model.pb`)\nSpecified file path: {os.path.dirname(damaged)}")


def test_a_version_missing_its_variables_is_refused_with_tf_servings_codes(tmp_path):
    """Without variables/variables.index TF Serving's LoadSavedModel restores nothing ("The specified SavedModel has
    no variables; no checkpoints were restored") and every run, the warm-up's first, then fails FAILED_PRECONDITION
    (Could not find variable …): the load is refused so. Without the data file TF's restore fails NOT_FOUND
    (ENOENT). Both had been UNKNOWN, the first with tf.saved_model.LoadOptions advice for Python."""
    base = str(tmp_path / "letters")
    for variables_removed in (["variables.index", "variables.data-00000-of-00001"], ["variables.index"]):
        folder = testing.publish_version(base, 1)
        for name in variables_removed:
            os.remove(os.path.join(folder, "variables", name))
        with pytest.raises(versions.ServingError) as caught:
            versions.Servable("letters", 1, folder)
        assert (caught.value.code, caught.value.message) == (
            "FAILED_PRECONDITION", "The specified SavedModel has no variables; no checkpoints were restored. File "
                                   f"does not exist: {folder}/variables/variables.index")
        shutil.rmtree(folder)
    folder = testing.publish_version(base, 2)
    os.remove(os.path.join(folder, "variables", "variables.data-00000-of-00001"))
    with pytest.raises(versions.ServingError) as caught:
        versions.Servable("letters", 2, folder)
    assert (caught.value.code, caught.value.message) == (
        "NOT_FOUND", f"{folder}/variables/variables.data-00000-of-00001; No such file or directory")


def test_all_version_dirs_removed_unloads_everything(tmp_path):
    base = str(tmp_path / "letters")
    path = testing.publish_version(base, 2)
    with testing.start_server(base, **FAST) as server:
        client = testing.RestClient(server.url)
        os.rename(path, os.path.join(base, "retired"))
        wait_for(lambda: statuses(client).get(2, ("",))[0] == "END")
        assert client.post("/v1/models/letters:predict", {"instances": ["x"]}) == (
            404, {"error": "Servable not found for request: Latest(letters)"})


def test_labels_reload_from_config_file(tmp_path, caplog):
    base = tmp_path / "letters"
    testing.publish_version(str(base), 1)
    testing.publish_version(str(base), 2)
    config = tmp_path / "models.config"

    def write(labels):
        entries = "".join(f'version_labels {{ key: "{k}" value: {v} }}\n' for k, v in labels.items())
        config.write_text(f'model_config_list {{ config {{ name: "letters" base_path: "{base}" '
                          f'model_platform: "tensorflow" model_version_policy {{ all {{}} }}\n{entries} }} }}\n')

    write({})
    with testing.start_server(model_config_file=str(config), model_config_file_poll_wait_seconds=0.1,
                              **FAST) as server:
        client = testing.RestClient(server.url)
        assert client.post("/v1/models/letters/labels/stable:predict", {"instances": ["x"]})[0] == 400
        write({"stable": 1, "canary": 2})
        wait_for(lambda: client.get("/v1/models/letters/labels/stable/metadata")[0] == 200)
        assert top_index(client, "/v1/models/letters/labels/stable:predict") == 1
        assert top_index(client, "/v1/models/letters/labels/canary:predict") == 2

        caplog.set_level(logging.INFO, logger="serving")

        def logged(*parts):   # the poller read the new file and logged why it keeps the current config
            return lambda: any(all(p in r.getMessage() for p in parts) for r in caplog.records)

        write({"stable": 1, "canary": 7})  # 7 is not available: the whole config is refused
        wait_for(logged("PollFilesystemAndReloadConfig failed to ReloadConfig: ", "version 7"))
        assert top_index(client, "/v1/models/letters/labels/canary:predict") == 2
        # A config refused at start-up is refused on reload too, and the current one keeps serving.
        config.write_text(config.read_text().replace('model_platform: "tensorflow"', 'model_platform: "pytorch"')
                          .replace("value: 7", "value: 1"))
        wait_for(logged("PollFilesystemAndReloadConfig failed to ReloadConfig: ", "pytorch"))
        assert top_index(client, "/v1/models/letters/labels/canary:predict") == 2
        config.write_text("")   # an empty file (one caught mid-rewrite) cannot be mapped: nothing is read
        wait_for(logged("Failed to read ModelServerConfig file: ", f"{config}; Invalid argument"))
        config.write_text("# being rewritten\n")   # no config may not follow a ModelConfigList: refused
        wait_for(logged("PollFilesystemAndReloadConfig failed to ReloadConfig: Cannot transition to requested "
                        "config. It is only legal to transition from one ModelConfigList to another."))
        assert not logged("Taking no action for empty config")()
        assert top_index(client, "/v1/models/letters/labels/canary:predict") == 2


def test_a_polled_config_adding_a_model_that_fails_to_load_is_logged_as_tf_serving_logs_it(tmp_path, caplog):
    """ServerCore's ReloadConfig returns WaitUntilModelsAvailable's error, which Server::PollFilesystemAndReloadConfig
    logs at ERROR: PollFilesystemAndReloadConfig failed to ReloadConfig: 1 model(s) did not become available: …
    (it had been an INFO line in the server's own words, Model config from …)."""
    base, other = str(tmp_path / "letters"), str(tmp_path / "other")
    testing.publish_version(base, 1)
    testing.publish_version(other, 1, broken=True)
    config = tmp_path / "models.config"

    def entry(name, path):
        return f'config {{ name: "{name}" base_path: "{path}" model_platform: "tensorflow" }} '

    config.write_text(f"model_config_list {{ {entry('letters', base)} }}\n")
    with testing.start_server(model_config_file=str(config), model_config_file_poll_wait_seconds=0.1,
                              **dict(FAST, max_num_load_retries=0)):
        caplog.set_level(logging.INFO, logger="serving")
        config.write_text(f"model_config_list {{ {entry('letters', base)} {entry('other', other)} }}\n")
        failed = "PollFilesystemAndReloadConfig failed to ReloadConfig: 1 model(s) did not become available: " \
                 "{{{name: other version: 1} due to error: "
        wait_for(lambda: any(r.levelno == logging.ERROR and r.getMessage().startswith(failed) for r in caplog.records))
    assert not any(r.getMessage().startswith("Model config from") for r in caplog.records)


def test_the_config_file_poller_logs_each_failed_poll_in_tf_servings_words(tmp_path, caplog):
    """Server::PollFilesystemAndReloadConfig's ERROR lines, at every poll that fails: a file that cannot be read or
    parsed (Failed to read ModelServerConfig file: …), a config that cannot be applied (PollFilesystemAndReloadConfig
    failed to ReloadConfig: …). (They had been Could not read … and Not applying …, the latter once per text.)"""
    from serving.server import Server

    config = tmp_path / "models.config"
    server = Server(config_lib.ServerOptions(model_config_file=str(config), model_config_file_poll_wait_seconds=0.01))
    poller = threading.Thread(target=server._poll_config, daemon=True)

    def errors(start):   # the ERROR lines logged that begin with ``start``
        return lambda: [m for m in _messages(caplog, "ERROR") if m.startswith(start)]

    with caplog.at_level(logging.INFO, logger="serving"):
        poller.start()
        try:
            assert set(wait_for(lambda: len(errors("Failed")()) >= 2 and errors("Failed")())) == {
                f"Failed to read ModelServerConfig file: {config}; No such file or directory"}
            config.write_text("model_config_list { config {")
            wait_for(errors(f"Failed to read ModelServerConfig file: Invalid protobuf file: '{config}'"))
            config.write_text(f'model_config_list {{ config {{ name: "letters" base_path: "{tmp_path}" '
                              'model_platform: "tensorflow" version_labels { key: "stable" value: 7 } } }')
            assert set(wait_for(lambda: len(errors("Poll")()) >= 2 and errors("Poll")())) == {
                "PollFilesystemAndReloadConfig failed to ReloadConfig: Request to assign label to version 7 of model "
                "letters, which is not currently available for inference"}
        finally:
            server.stop_event.set()
            poller.join(10)


def _labelled_config(base, model="letters", version=7) -> str:
    """A config whose label names a version not loaded: each poll that applies it logs the label's refusal."""
    return testing.labelled_config_text(base, {"stable": version}, num_versions=1, model_name=model)


def _label_refused(model="letters", version=7) -> str:
    return (f"PollFilesystemAndReloadConfig failed to ReloadConfig: Request to assign label to version {version} of "
            f"model {model}, which is not currently available for inference")


def config_poller(server):
    """``server``'s config file poller, in a thread, until the block ends (then it must have ended)."""
    return running(server._poll_config, "config-poller", server.stop_event, join=10)


def test_a_config_nested_too_deep_to_parse_is_logged_and_the_polls_go_on(tmp_path, caplog):
    """A config file whose messages nest deeper than Python's text parser can follow (1000 Any blocks) is a file that
    does not parse (Invalid protobuf file), and the next poll applies the next file: the parser's RecursionError had
    ended the config poller's thread, and no later config was ever applied."""
    from serving.server import Server

    config = tmp_path / "models.config"
    config.write_text("custom_model_config { " + "[type.googleapis.com/google.protobuf.Any] { " * 1000
                      + "}" * 1001)
    server = Server(config_lib.ServerOptions(model_config_file=str(config), model_config_file_poll_wait_seconds=0.01))
    with caplog.at_level(logging.INFO, logger="serving"), config_poller(server) as poller:
        wait_for(lambda: f"Failed to read ModelServerConfig file: Invalid protobuf file: '{config}'"
                 in _messages(caplog, "ERROR"))
        assert any(m.startswith("Error parsing text-format tensorflow.serving.ModelServerConfig: Message is too deep")
                   for m in _messages(caplog, "ERROR"))
        config.write_text(_labelled_config(tmp_path))
        wait_for(lambda: _label_refused() in _messages(caplog, "ERROR"))
        assert poller.is_alive()


def test_a_poll_that_fails_unexpectedly_is_logged_and_the_next_poll_runs(tmp_path, caplog, monkeypatch):
    """Any failure of one poll is logged, with its traceback, and the poller goes on, as TF Serving's PeriodicFunction
    runs the next poll whatever the last did."""
    from serving.server import Server

    config = tmp_path / "models.config"
    config.write_text(_labelled_config(tmp_path))
    server = Server(config_lib.ServerOptions(model_config_file=str(config), model_config_file_poll_wait_seconds=0.01))
    failures = iter([RuntimeError("a bug")])

    def read(text, source, read=config_lib.read_model_server_config):
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return read(text, source)

    monkeypatch.setattr(config_lib, "read_model_server_config", read)
    with caplog.at_level(logging.INFO, logger="serving"), config_poller(server):
        wait_for(lambda: _label_refused() in _messages(caplog, "ERROR"))
    failed = [r for r in caplog.records if r.getMessage() == f"Polling the config file {config} failed"]
    assert len(failed) == 1 and failed[0].exc_info[0] is RuntimeError


TRANSITION_REFUSED = ("PollFilesystemAndReloadConfig failed to ReloadConfig: Cannot transition to requested config. "
                      "It is only legal to transition from one ModelConfigList to another.")


@pytest.mark.parametrize("text", ["# being rewritten\n", "\n",
                                  "custom_model_config { [type.googleapis.com/google.protobuf.Any] { } }"])
def test_a_config_that_may_not_follow_a_model_config_list_is_refused_as_tf_serving_refuses_it(tmp_path, caplog, text):
    """ServerCore::ReloadConfig checks the transition first: while a ModelConfigList is served, a config file of
    comments only (no config) or a custom_model_config is refused (Cannot transition to requested config. …) and the
    models keep serving; no config takes no action only while nothing was configured. (A file of comments had been
    taken as no action, and logged as applied.)"""
    from serving.server import Server

    config = tmp_path / "models.config"
    config.write_text(text)
    server = Server(config_lib.ServerOptions(model_config_file=str(config), model_config_file_poll_wait_seconds=0.01))
    caplog.set_level(logging.INFO, logger="serving")
    if "custom" not in text:   # nothing configured yet: a first empty config takes no action
        server.core.apply_config(config_lib.read_model_server_config(text))
        assert "Taking no action for empty config." in _messages(caplog, "INFO") and server.core.config_case is None
    server.core.apply_config(config_lib.read_model_server_config(
        f'model_config_list {{ config {{ name: "letters" base_path: "{tmp_path}" model_platform: "tensorflow" }} }}'))
    caplog.clear()
    with config_poller(server):
        wait_for(lambda: _messages(caplog, "ERROR").count(TRANSITION_REFUSED) >= 2)
    assert set(_messages(caplog, "ERROR")) == {TRANSITION_REFUSED}
    assert not [m for m in _messages(caplog) if m.startswith(("Taking no action", "Applied"))]
    assert server._served() == {"letters"}


def test_the_config_file_is_polled_at_once_then_every_interval_start_to_start(tmp_path, monkeypatch):
    """As TF Serving's PeriodicFunction runs PollFilesystemAndReloadConfig: the first poll at once (startup delay 0),
    then one every --model_config_file_poll_wait_seconds from the start of the last, however long it took. (The first
    had come one whole interval after the start, and each wait had begun when the last poll ended.)"""
    from serving.server import Server

    server = Server(config_lib.ServerOptions(model_config_file=str(tmp_path / "models.config"),
                                             model_config_file_poll_wait_seconds=1))
    polls = []

    def slow_poll(path):   # a poll that takes 0.4 s
        polls.append(time.monotonic())
        time.sleep(0.4)

    monkeypatch.setattr(server, "_reload_config_file", slow_poll)
    started = time.monotonic()
    with config_poller(server):
        wait_for(lambda: len(polls) >= 3, timeout=10)
    assert polls[0] - started < 0.3
    assert [round(later - earlier, 1) for earlier, later in zip(polls, polls[1:3])] == [1.0, 1.0]


def test_the_config_file_is_applied_at_every_poll_changed_or_not(tmp_path, caplog):
    """As TF Serving's poller, every poll applies the file's config, unchanged or not: an unchanged one reloads
    nothing (ServerCore::ReloadConfig's INFO lines logged at each poll, as there), and once a label's version has been
    unloaded every poll logs the label's refusal (Request to assign label to version 9 of model d, …). (An unchanged
    file had been skipped: nothing was logged, and the label kept naming a version no longer served.)"""
    from serving.server import Server

    config = tmp_path / "models.config"
    config.write_text(_labelled_config(tmp_path, "d", 9))
    server = Server(config_lib.ServerOptions(model_config_file=str(config), model_config_file_poll_wait_seconds=0.01))
    server.core.apply_config(config_lib.read_model_server_config(
        testing.labelled_config_text(tmp_path, {}, num_versions=1, model_name="d")))
    manager = server.core.manager("d")
    manager.records[9] = versions._VersionRecord()
    manager.records[9].state = versions.State.AVAILABLE
    manager.servables[9] = servable = FakeServable("d", 9, str(tmp_path))
    caplog.set_level(logging.INFO, logger="serving")
    with config_poller(server):
        wait_for(lambda: _messages(caplog, "INFO").count("Finished reloading config") >= 3)
        assert server.core.manager("d") is manager and manager.servables == {9: servable}
        assert manager.labels == {"stable": 9} and not _messages(caplog, "ERROR")
        assert {"Adding/updating models.", " (Re-)adding model: d", "Finished adding/updating models",
                "Finished reloading config"} <= set(_messages(caplog, "INFO"))
        manager._unload(9)
        wait_for(lambda: _messages(caplog, "ERROR").count(_label_refused("d", 9)) >= 2)
    assert set(_messages(caplog, "ERROR")) == {_label_refused("d", 9)}


def test_labels_in_startup_config_need_the_flag(tmp_path):
    base = tmp_path / "letters"
    testing.publish_version(str(base), 1)
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "letters" base_path: "{base}" model_platform: "tensorflow" '
                      f'version_labels {{ key: "stable" value: 1 }} }} }}\n')
    from serving.status import ServingError
    with pytest.raises(ServingError, match="Request to assign label to version 1 of model letters, which is not "
                                           "currently available for inference"):
        testing.start_server(model_config_file=str(config), **FAST)
    with testing.start_server(model_config_file=str(config), allow_version_labels_for_unavailable_models=True,
                              **FAST) as server:
        assert top_index(testing.RestClient(server.url), "/v1/models/letters/labels/stable:predict") == 1


def test_startup_fails_when_the_only_version_is_broken(tmp_path):
    base = str(tmp_path / "letters")
    testing.publish_version(base, 1, broken=True)
    with pytest.raises(RuntimeError, match=r"(?s)exit 255; its log kept: [^)]*\).*"   # main.cc's return -1
                                           r"Failed to start server\. Error: UNKNOWN: 1 servable\(s\) did not become "
                                           r"available: \{\{\{name: letters version: 1\} due to error: DATA_LOSS: Can't parse [^\n]*/1/"
                                           r"saved_model\.pb as binary proto\}, \}\n"):
        testing.start_server(base, subprocess=True, startup_timeout=120,
                             **dict(FAST, file_system_poll_wait_seconds=1))   # whole seconds on a command line


def test_startup_waits_for_a_version_and_sigterm_ends_the_wait(tmp_path):
    import signal
    import subprocess
    import sys

    base = tmp_path / "letters"
    (base / "incoming-not-a-version").mkdir(parents=True)
    import threading

    process = subprocess.Popen([sys.executable, "-m", "serving", "--model_name=letters", f"--model_base_path={base}",
                                "--rest_api_port=0", "--file_system_poll_wait_seconds=1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=str(configs.PROJECT_ROOT))
    err_lines = []
    waiting = threading.Event()

    def read_stderr():
        polls = 0
        for line in process.stderr:
            err_lines.append(line)
            polls += "No versions of servable letters found under base path" in line
            if polls >= 3:       # it keeps polling: still waiting, not stopped after one look
                waiting.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert waiting.wait(120), "".join(err_lines)[-3000:]
        assert process.poll() is None          # still waiting; the REST port never opened
        process.send_signal(signal.SIGTERM)
        process.wait(30)                       # a server that does not stop fails the test instead of hanging it
        out = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(10)
    assert process.returncode == 0, "".join(err_lines)[-3000:]
    assert "Exporting HTTP/REST API" not in out


def test_startup_polls_a_missing_base_path_once_per_poll_interval(tmp_path, caplog, monkeypatch):
    """While waiting for its first model the server polls (and warns) once per --file_system_poll_wait_seconds,
    as TF Serving does, not faster."""
    core = startup_core(tmp_path / "missing", 7)
    waits = StopAfter(core, monkeypatch, 3)
    with caplog.at_level("WARNING", logger=versions.log.name):
        core.wait_until_settled(7)
    assert waits.seen == [7, 7, 7]
    warnings = [r for r in caplog.records if "Could not find base path" in r.getMessage()]
    assert len(warnings) == 3


class StopAfter:
    """ServerCore.wait_for for a test of ServerCore.wait_until_settled without a loader: records each wait's
    seconds (None: until stopped) and lets them pass on a clock of its own (time.monotonic's, meanwhile), runs
    ``on_wait`` at the first, and stops the core after ``waits`` of them."""

    def __init__(self, core, monkeypatch, waits: int, on_wait=lambda: None):
        self.core, self.waits, self.on_wait, self.seen = core, waits, on_wait, []
        self.now = time.monotonic()
        monkeypatch.setattr(core, "wait_for", self.wait_for)
        monkeypatch.setattr(time, "monotonic", lambda: self.now)

    def wait_for(self, outcome, seconds=None):
        found = outcome()
        if found is not None:
            return found
        if not self.seen:
            self.on_wait()
        self.seen.append(seconds)
        self.now += seconds or 0
        if len(self.seen) >= self.waits:
            self.core.stop_event.set()
        return None


def startup_core(base, poll_seconds, **flags):
    options = config_lib.ServerOptions(model_name="letters", model_base_path=str(base),
                                       file_system_poll_wait_seconds=poll_seconds, **flags)
    core = versions.ServerCore(options)
    core.apply_config(config_lib.single_model_config("letters", str(base)))
    return core


def test_startup_with_a_poll_wait_of_0_polls_once_and_waits_for_ever(tmp_path, caplog, monkeypatch):
    """--file_system_poll_wait_seconds=0: TF Serving's FileSystemStoragePathSource polls exactly once (its one-shot
    thread): with no version then, one warning is logged, a version published later is never seen, and the
    initial load waits until stopped. The start had polled 20 times a second and loaded the later version."""
    base = tmp_path / "letters"
    base.mkdir()
    core = startup_core(base, 0)
    stop = StopAfter(core, monkeypatch, 2, on_wait=lambda: testing.publish_version(str(base), 1))
    with caplog.at_level("INFO", logger=versions.log.name):
        core.wait_until_settled(0)
    assert stop.seen == [None, None]   # no poll interval: each wait lasts until stopped
    warnings = [r for r in caplog.records if "No versions of servable letters found" in r.getMessage()]
    assert len(warnings) == 1
    assert "Loading servable" not in caplog.text and core.manager("letters").records == {}


def test_startup_with_a_negative_poll_wait_never_polls(tmp_path, caplog, monkeypatch):
    """A negative --file_system_poll_wait_seconds disables polling (TF Serving starts no polling thread): even a
    version there at start-up is never loaded, and the initial load waits until stopped."""
    base = tmp_path / "letters"
    testing.publish_version(str(base), 1)
    core = startup_core(base, -1)
    stop = StopAfter(core, monkeypatch, 2)
    with caplog.at_level("INFO", logger=versions.log.name):
        core.wait_until_settled(-1)
    assert stop.seen == [None, None]
    assert caplog.records == [] and core.manager("letters").records == {}


def test_startup_with_a_poll_wait_of_0_retries_a_failed_load_without_polling(tmp_path, caplog, monkeypatch):
    """TF Serving's manager retries a failed load whether the file system is polled or not: with one poll, the
    loader runs the retry when due, and the start then fails on the last attempt's error."""
    base = tmp_path / "letters"
    testing.publish_version(str(base), 1, broken=True)
    core = startup_core(base, 0, max_num_load_retries=1, load_retry_interval_micros=100_000)
    polls = []
    monkeypatch.setattr(core, "poll", lambda poll=core.poll: polls.append(poll()))
    with caplog.at_level("WARNING", logger=versions.log.name), pytest.raises(versions.ServingError) as caught, \
            loader(core):
        core.wait_until_settled(0)
    assert caught.value.message.startswith("1 servable(s) did not become available: {{{name: letters version: 1} "
                                           "due to error: DATA_LOSS")
    assert core.manager("letters").records[1].attempts == 2 and len(polls) == 1
    assert "No versions of servable" not in caplog.text


def test_one_old_version_keeps_serving_while_newer_ones_fail(tmp_path):
    """AvailabilityPreservingPolicy: with two versions aspired (latest 2) and neither ready, the lowest of the
    versions no longer aspired is unloaded and one keeps serving (both stayed loaded before)."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    base = str(tmp_path / "letters")
    testing.publish_version(base, 1)
    testing.publish_version(base, 2)
    config = text_format.Parse(testing.labelled_config_text(base, {}, num_versions=2),
                               model_server_config_pb2.ModelServerConfig())
    core = versions.ServerCore(config_lib.ServerOptions(model_name="letters", model_base_path=base,
                                                        max_num_load_retries=0))
    core.apply_config(config)
    poll(core)
    manager = core.manager("letters")
    assert sorted(manager.available_versions()) == [1, 2]
    testing.publish_version(base, 3, broken=True)
    testing.publish_version(base, 4, broken=True)
    poll(core)
    poll(core)
    assert manager.available_versions() == [2]
    assert {v: versions.State.Name(r.state) for v, r in manager.records.items()} == {
        1: "END", 2: "AVAILABLE", 3: "END", 4: "END"}
    manager.unload_all()


def test_of_two_folders_for_one_version_the_last_name_is_served(tmp_path, caplog):
    """TF Serving indexes the sorted children and the last name for a version wins: "2" over "002"."""
    for name in ("002", "2"):
        (tmp_path / name).mkdir()
    with caplog.at_level(logging.WARNING, logger="serving"):
        assert versions.list_versions(str(tmp_path), "m") == {2: str(tmp_path / "2")}
    assert "Duplicate version directories detected. Version 2 will be loaded from 2, 002 will be ignored." in \
        caplog.text


def test_under_the_all_policy_of_two_folders_for_one_version_the_first_name_is_served(tmp_path, caplog,
                                                                                     monkeypatch):
    """TF Serving's all policy aspires every child as listed (AspireAllVersions, not the index of the other
    policies): "005" and "5" are both version 5, the first in sorted order is managed and loaded, the second refused
    as already managed (logged when the version becomes aspired, not on every poll); latest and specific still take
    the last. The server had loaded "5"."""
    base = tmp_path / "letters"
    for name in ("005", "5", "7"):
        (base / name).mkdir(parents=True)
    core = _core(str(base), f'model_config_list {{ config {{ name: "letters" base_path: "{base}" '
                            'model_platform: "tensorflow" model_version_policy { all {} } } }')
    loaded = []

    class RecordedServable:
        def __init__(self, name, version, path, metrics=None, runner=None):
            self.name, self.version, self.warmup_requests = name, version, 0
            loaded.append(os.path.basename(path))

        def close(self):
            pass

    monkeypatch.setattr(versions, "Servable", RecordedServable)
    refused = ("Internal error: Unable to transfer servable {name: letters version: 5} to 'basic_manager_': This "
               "servable is already being managed: {name: letters version: 5}")
    with caplog.at_level(logging.WARNING, logger="serving"):
        poll(core)
        poll(core)
    assert sorted(loaded) == ["005", "7"]
    assert caplog.text.count(refused) == 1, caplog.text
    assert "Duplicate version directories detected. Version 5 will be loaded from 5, 005 will be ignored." in \
        caplog.text   # IndexChildrenByVersion runs, and logs, under every policy
    core.manager("letters").unload_all()
    every, latest, specific = Policy(), Policy(), Policy()
    every.all.SetInParent()
    specific.specific.versions.append(5)
    assert versions.list_versions(str(base), "m", policy=every) == {5: str(base / "005"), 7: str(base / "7")}
    assert versions.list_versions(str(base), "m", policy=latest)[5] == str(base / "5")
    assert versions.list_versions(str(base), "m", policy=specific)[5] == str(base / "5")


def _all_versions_core(base, numbers, **options):
    """A ServerCore serving every version of ``base``, whose version folders ``numbers`` are made (empty)."""
    for version in numbers:
        (base / str(version)).mkdir(parents=True)
    return _core(str(base), f'model_config_list {{ config {{ name: "letters" base_path: "{base}" '
                            'model_platform: "tensorflow" model_version_policy { all {} } } }', **options)


def _core(base, config_text, **options):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    core = versions.ServerCore(config_lib.ServerOptions(model_name="letters", model_base_path=base, **options))
    core.apply_config(text_format.Parse(config_text, model_server_config_pb2.ModelServerConfig()))
    return core


def test_a_model_removed_from_the_config_loses_its_labels_and_comes_back_with_new_ones(tmp_path):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    base = str(tmp_path / "letters")
    testing.publish_version(base, 1)
    testing.publish_version(base, 2)
    with_labels = testing.labelled_config_text(base, {"stable": 1}, num_versions=2)
    core = _core(base, with_labels, allow_version_labels_for_unavailable_models=True)
    poll(core)
    assert core.manager("letters").resolve(label="stable").version == 1
    core.apply_config(text_format.Parse('model_config_list { config { name: "other" base_path: "/nowhere" '
                                        'model_platform: "tensorflow" } }', model_server_config_pb2.ModelServerConfig()))
    with pytest.raises(versions.ServingError, match="Unrecognized servable version label: stable"):
        core.manager("letters").resolve(label="stable")
    # Back with the label on another version: a new label for the flag, as TF Serving's label map is the
    # new config's alone (it had been refused on every poll, and the model never came back).
    core.apply_config(text_format.Parse(testing.labelled_config_text(base, {"stable": 2}, num_versions=2),
                                        model_server_config_pb2.ModelServerConfig()))
    poll(core)
    assert core.manager("letters").resolve(label="stable").version == 2
    core.manager("letters").unload_all()


def test_a_version_whose_retries_are_cut_short_ends_with_its_error(tmp_path):
    """A broken version still retrying when a newer one replaces it ends with the error of its last attempt, as
    LoaderHarness::ErrorInternal publishes it (it showed END with OK)."""
    base = str(tmp_path / "letters")
    testing.publish_version(base, 1)
    core = _core(base, testing.labelled_config_text(base, {}, num_versions=1), max_num_load_retries=5,
                 load_retry_interval_micros=60_000_000)
    poll(core)
    manager = core.manager("letters")
    testing.publish_version(base, 2, broken=True)
    poll(core)
    record = manager.records[2]
    assert versions.State.Name(record.state) == "LOADING" and record.error_code == "OK"   # retrying
    testing.publish_version(base, 3)
    poll(core)
    record = manager.records[2]
    assert versions.State.Name(record.state) == "END" and record.error_code != "OK" and record.error_message
    assert manager.available_versions() == [3]
    manager.unload_all()


def test_version_folders_are_named_by_ascii_digits_alone():
    """tsl::strings::safe_strto64: ASCII digits and whitespace, a '-' but no '+'; fullwidth or Arabic-Indic digits
    are no version."""
    assert versions.version_number(" 12 ") == 12 and versions.version_number("+7") is None
    assert versions.version_number("\uff11\uff12") is None and versions.version_number("\u0661") is None
    assert versions.version_number("12\u00a0") is None


def test_a_reload_that_adds_a_model_fails_on_its_newest_version(tmp_path):
    """After start-up TF Serving loads one version at a time, newest first, and the reload waits for
    Latest(model): a broken newest version fails the reload even though an older one loads."""
    from serving.status import ServingError
    from tensorflow_serving.config import model_server_config_pb2
    base = str(tmp_path / "letters")
    testing.publish_version(base, 1)
    other = str(tmp_path / "other")
    testing.publish_version(other, 1)
    testing.publish_version(other, 2, broken=True)
    with testing.start_server(base, **FAST) as server:
        config = model_server_config_pb2.ModelServerConfig()
        config.model_config_list.config.add(name="letters", base_path=base, model_platform="tensorflow")
        added = config.model_config_list.config.add(name="other", base_path=other, model_platform="tensorflow")
        added.model_version_policy.all.SetInParent()
        with pytest.raises(ServingError) as raised:
            server.server.reload_config(config, timeout=60)
        assert raised.value.code == "UNKNOWN"
        assert raised.value.message == (
            "1 model(s) did not become available: {{{name: other version: 2} due to error: DATA_LOSS: Can't parse "
            f"{other}/2/saved_model.pb as binary proto}}, }}")


@pytest.mark.parametrize("policy, withdraw", [
    ("all {}", lambda base: (base / "2").rmdir()),
    ("latest { num_versions: 2 }", lambda base: (base / "4").mkdir())])
def test_a_version_withdrawn_while_another_loads_is_never_loaded(tmp_path, monkeypatch, caplog, policy, withdraw):
    """As in TF Serving, whose file-system poller runs beside the manager's loads, polls go on while a version
    loads, and a version they withdraw meanwhile (its folder removed, or a newer one found under latest 2) is never
    loaded: version 2 stays in START, never having started. (The poll had run the loads itself: while version 3
    loaded no poll ran, and version 2 was loaded after it, then unloaded at the next poll.)"""
    base = tmp_path / "letters"
    (base / "1").mkdir(parents=True)
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "letters" base_path: "{base}" '
                      f'model_platform: "tensorflow" model_version_policy {{ {policy} }} }} }}')
    loads, loading_3, release_3 = [], threading.Event(), threading.Event()

    class SlowServable(FakeServable):
        """Version 3's load lasts until the test lets it end."""

        def __init__(self, name, version, path, metrics=None, runner=None):
            super().__init__(name, version, path)
            loads.append((version, threading.current_thread().name))
            if version == 3:
                loading_3.set()
                release_3.wait(60)

    monkeypatch.setattr(versions, "Servable", SlowServable)
    with caplog.at_level(logging.INFO, logger="serving"), \
            testing.start_server(model_config_file=str(config), **FAST) as server:
        manager = server.server.core.manager("letters")
        try:
            (base / "2").mkdir()
            (base / "3").mkdir()
            assert loading_3.wait(30)
            withdraw(base)
            # the polls go on during the load: version 2 is withdrawn before it starts
            wait_for(lambda: 2 not in manager.aspired, timeout=10)
        finally:
            release_3.set()
        wait_for(lambda: manager.records[3].state == versions.State.AVAILABLE)
        time.sleep(0.5)   # a few polls and loader rounds more
        assert 2 not in manager.available_versions()
    assert [version for version, _ in loads if version == 2] == []
    assert {thread for _, thread in loads} == {"loader"}
    assert (manager.records[2].state, manager.records[2].error_code) == (versions.State.START, "OK")
    assert "Successfully loaded servable version {name: letters version: 2}" not in caplog.text
    assert "Successfully loaded servable version {name: letters version: 3}" in caplog.text


def test_a_version_withdrawn_before_its_load_started_stays_in_start(tmp_path, monkeypatch):
    """A version aspired, then no longer aspired before its load began, stays in START in the model's status, as TF
    Serving's ServableStateMonitor keeps the last state published for it: FlushServables stops managing it and
    publishes nothing. A failed load waiting for its retry ends in END with its error (CancelLoadServableRetry). (A
    version never started had been moved to END too.)"""
    base = tmp_path / "letters"
    core = _all_versions_core(base, (1, 2), max_num_load_retries=1, load_retry_interval_micros=60_000_000)
    manager = core.manager("letters")

    class BrokenServable(FakeServable):
        def __init__(self, name, version, path, metrics=None, runner=None):
            raise versions.ServingError("DATA_LOSS", f"version {version} is broken")

    monkeypatch.setattr(versions, "Servable", BrokenServable)
    core.poll()   # both aspired, neither loaded yet
    (base / "1").rmdir()
    core.poll()
    poll(core)   # version 2 fails its first attempt, and waits for its retry
    (base / "2").rmdir()
    core.poll()
    assert {s.version: (versions.State.Name(s.state), s.status.error_message)
            for s in manager.status().model_version_status} == {1: ("START", ""), 2: ("END", "version 2 is broken")}


def test_a_model_removed_while_a_version_loads_starts_no_other_load_and_serves_nothing(tmp_path, monkeypatch):
    """As in TF Serving, a version no longer aspired never starts loading (AspiredVersionsManager sets
    is_aspired=false): the load running when the model leaves the config finishes and is unloaded, the versions
    never started stay in START (FlushServables publishes no event), and nothing is served. (The poll had gone on
    loading every version it had listed, and served each.)"""
    base = tmp_path / "letters"
    for version in (2, 3, 4):
        (base / str(version)).mkdir(parents=True)
    core = _core(str(base), f'model_config_list {{ config {{ name: "letters" base_path: "{base}" '
                            'model_platform: "tensorflow" model_version_policy { all {} } } }')
    manager = core.manager("letters")
    loads, served = [], []

    class LoadingServable:
        """A version whose load runs while the model is removed from the config."""

        def __init__(self, name, version, path, metrics=None, runner=None):
            self.name, self.version, self.warmup_requests = name, version, 0
            loads.append(version)
            if len(loads) == 1:
                manager.unload_all()

        def close(self):
            pass

    def request_then_unload(unload=manager._unload_unaspired):
        """A request in the moment between the finished load and its unload."""
        try:
            served.append(manager.resolve().version)
        except versions.ServingError as error:
            served.append(error.message)
        unload()

    monkeypatch.setattr(versions, "Servable", LoadingServable)
    monkeypatch.setattr(manager, "_unload_unaspired", request_then_unload)
    poll(core)
    assert loads == [4]   # nothing served before the load (where what is no longer aspired unloads) nor after
    assert served == ["Servable not found for request: Latest(letters)"] * 2
    assert {s.version: versions.State.Name(s.state) for s in manager.status().model_version_status} == \
        {4: "END", 3: "START", 2: "START"}
    with pytest.raises(versions.ServingError, match=r"Servable not found for request: Specific\(letters, 4\)"):
        manager.resolve(version=4)


def test_a_removal_between_the_polls_check_and_its_load_cannot_start_the_load(tmp_path, monkeypatch):
    """Whether a version is still aspired and its LOADING are decided in one hold of the lock: a removal arriving
    at any moment the poll lets the lock go finds the version either not started (it then never loads) or already
    loading (that load finishes and is unloaded). (The check had let the lock go before the load marked itself, and
    a removal in between had left START, then a load of a model no longer in the config.)"""
    base = tmp_path / "letters"
    (base / "2").mkdir(parents=True)
    core = _core(str(base), f'model_config_list {{ config {{ name: "letters" base_path: "{base}" '
                            'model_platform: "tensorflow" model_version_policy { all {} } } }')
    manager = core.manager("letters")
    seen = {}

    class Lock:
        """The manager's lock, removing the model the first time the poll lets it go once the loop has begun."""

        def __init__(self, lock):
            self.lock, self.armed, self.fired = lock, False, False

        def __enter__(self):
            return self.lock.__enter__()

        def __exit__(self, *exc):
            self.lock.__exit__(*exc)
            if self.armed and not self.fired:
                self.fired = True
                manager.unload_all()
                seen["at removal"] = {s.version: versions.State.Name(s.state)
                                      for s in manager.status().model_version_status}

    class Recorded:
        def __init__(self, name, version, path, metrics=None, runner=None):
            self.name, self.version, self.warmup_requests = name, version, 0
            seen["load"] = seen["at removal"]

        def close(self):
            pass

    lock = Lock(manager._lock)
    monkeypatch.setattr(manager, "_lock", lock)
    monkeypatch.setattr(versions, "Servable", Recorded)
    monkeypatch.setattr(time, "monotonic", _armed_clock(lock))
    poll(core)
    assert seen["at removal"] == {2: "LOADING"}           # the version was loading, not START, when it was removed
    assert seen.get("load") == {2: "LOADING"}
    assert {s.version: versions.State.Name(s.state) for s in manager.status().model_version_status} == {2: "END"}


def _armed_clock(lock, clock=time.monotonic):
    """time.monotonic that arms ``lock`` when the poll reads the time just before its load loop."""
    def monotonic():
        lock.armed = True
        return clock()
    return monotonic


def test_a_model_removed_while_its_versions_retry_ends_them_with_their_errors(tmp_path, monkeypatch):
    """As in TF Serving, a version no longer aspired has its load retries cancelled (AspiredVersionsManager:
    is_aspired=false and CancelLoadServableRetry): the attempt running when the model leaves the config is its
    last, and each version waiting to retry ends, as LoaderHarness::ErrorInternal publishes it: END with the error
    of its last attempt. (A removed model is polled no more, and both had stayed LOADING.)"""
    core = _all_versions_core(tmp_path / "letters", (2, 3), max_num_load_retries=5, load_retry_interval_micros=0)
    manager = core.manager("letters")
    loads = []

    class BrokenServable:
        """A version whose every load fails; the model leaves the config during the third load."""

        def __init__(self, name, version, path, metrics=None, runner=None):
            loads.append(version)
            if len(loads) == 3:
                manager.unload_all()
            raise versions.ServingError("DATA_LOSS", f"attempt {len(loads)} of version {version}")

    monkeypatch.setattr(versions, "Servable", BrokenServable)
    poll(core)
    assert {v: versions.State.Name(r.state) for v, r in manager.records.items()} == {3: "LOADING", 2: "LOADING"}
    poll(core)
    poll(core)
    assert loads == [3, 2, 3]
    from tensorflow.core.protobuf import error_codes_pb2
    assert {(s.version, versions.State.Name(s.state), error_codes_pb2.Code.Name(s.status.error_code),
             s.status.error_message) for s in manager.status().model_version_status} == {
        (3, "END", "DATA_LOSS", "attempt 3 of version 3"), (2, "END", "DATA_LOSS", "attempt 2 of version 2")}


class FakeServable:
    """A version that loads at once (no TensorFlow)."""

    def __init__(self, name, version, path, metrics=None, runner=None):
        self.name, self.version, self.warmup_requests = name, version, 0

    def close(self):
        pass


def _two_models_core(tmp_path, first: str, second: str):
    """A core serving models ``first`` and ``second`` (in that config order), each at tmp_path/<name>."""
    return _core(str(tmp_path), "model_config_list { " + "".join(
        f'config {{ name: "{name}" base_path: "{tmp_path / name}" model_platform: "tensorflow" }} '
        for name in (first, second)) + "}")


@contextlib.contextmanager
def polling(core, seconds=0.05):
    """``core``'s file system polled every ``seconds`` in a thread, as the server's poller polls, until the block
    ends."""
    done = threading.Event()
    thread = threading.Thread(target=lambda: [core.poll() for _ in iter(lambda: done.wait(seconds), True)],
                              name="fs-poller", daemon=True)
    thread.start()
    try:
        yield core
    finally:
        done.set()
        thread.join(30)


def test_a_model_removed_and_added_again_while_a_version_loads_loads_it_afresh(tmp_path, monkeypatch):
    """As TF Serving's AspiredVersionsManager defers an aspired-versions request that aspires again a version it
    still manages (ContainsAnyReaspiredVersions) until that version is gone, a model removed from the config and
    added again while one of its versions loads aspires that version once the removed model's load has finished
    and been unloaded, and loads it afresh: the reload that adds it answers once it is AVAILABLE. (The model added
    again had taken the version in its first poll, still loading for the removed model, which then ended it: the
    reload had failed with 1 model(s) did not become available: {{{name: b version: 2}}, }, and b had served
    nothing since, polls changing nothing.)"""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    def config(*names):
        return text_format.Parse("model_config_list { " + "".join(
            f'config {{ name: "{name}" base_path: "{tmp_path / name}" model_platform: "tensorflow" }} '
            for name in names) + "}", model_server_config_pb2.ModelServerConfig())

    loads, loading_2, release_2 = [], threading.Event(), threading.Event()

    class SlowServable(FakeServable):
        """Version 2's first load lasts until the test lets it end."""

        def __init__(self, name, version, path, metrics=None, runner=None):
            super().__init__(name, version, path)
            loads.append((name, version))
            if version == 2 and not loading_2.is_set():
                loading_2.set()
                release_2.wait(60)

    monkeypatch.setattr(versions, "Servable", SlowServable)
    for name in ("a", "b"):
        (tmp_path / name / "1").mkdir(parents=True)
    core = _two_models_core(tmp_path, "a", "b")
    with loader(core), polling(core):
        wait_for(lambda: core.manager("b").available_versions() == [1])
        removed = core.manager("b")
        try:
            (tmp_path / "b" / "2").mkdir()
            assert loading_2.wait(30)
            core.apply_config(config("a"))
            core.apply_config(config("a", "b"))
            added = core.manager("b")
            time.sleep(0.3)   # polls of the model added again while the removed model's load runs
        finally:
            release_2.set()
        failures = core.wait_for(lambda: versions.settled_failures([added], versions.ModelManager.newest_settled),
                                 30)
        assert failures == [("b", None)]
        assert added.resolve().version == 2 and added.available_versions() == [2]
        assert removed.available_versions() == [] and removed.loading is None
    assert loads.count(("b", 2)) == 2
    assert versions.State.Name(added.records[2].state) == "AVAILABLE"
    core.unload_all()


def test_a_stop_during_a_load_starts_no_other_load_and_the_loader_ends_once_it_returns(tmp_path, monkeypatch):
    """As TF Serving's manager, once stopped, starts no load: a stop during a load lets that load finish and starts
    no other, of its model or another, and the loader ends once it has returned. (The loader had looked at the stop
    only between its passes: every version due, model y's 3, 2 and 1 after x's, loaded after the stop, and the
    server's stop gave up waiting for it, then the process aborted with the loader inside TensorFlow.)"""
    loads, loading, release = [], threading.Event(), threading.Event()

    class SlowServable(FakeServable):
        """The first load lasts until the test lets it end."""

        def __init__(self, name, version, path, metrics=None, runner=None):
            super().__init__(name, version, path)
            loads.append((name, version))
            if not loading.is_set():
                loading.set()
                release.wait(60)

    monkeypatch.setattr(versions, "Servable", SlowServable)
    (tmp_path / "x" / "1").mkdir(parents=True)
    for version in (1, 2, 3):
        (tmp_path / "y" / str(version)).mkdir(parents=True)
    core = _core(str(tmp_path), "model_config_list { " + "".join(
        f'config {{ name: "{name}" base_path: "{tmp_path / name}" model_platform: "tensorflow" '
        f'model_version_policy {{ all {{}} }} }} ' for name in ("x", "y")) + "}")
    thread = threading.Thread(target=core.run_loader, name="loader", daemon=True)
    thread.start()
    try:
        core.poll()
        assert loading.wait(30)
        core.stop_event.set()
        time.sleep(0.2)
        assert thread.is_alive()   # the load running finishes
    finally:
        release.set()
    thread.join(30)
    assert not thread.is_alive()
    assert loads == [("x", 1)] and versions.loads_in_progress() == 0
    assert [versions.State.Name(core.manager("y").records[v].state) for v in (3, 2, 1)] == ["START"] * 3
    core.unload_all()


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_a_missing_base_path_freezes_every_models_versions(tmp_path, monkeypatch, caplog, order):
    """TF Serving's FileSystemStoragePathSource reads every base path before it aspires any version, and a base path
    that cannot be read ends the poll (PollFileSystemForConfig's TF_RETURN_IF_ERROR): while model a's is missing,
    model b's new version is not loaded, nor its old one unloaded, whether b comes before a in the config or
    after; they are once a's base path is back. (Each model had been polled on its own: b swapped to version 2.)"""
    monkeypatch.setattr(versions, "Servable", FakeServable)
    for name in ("a", "b"):
        (tmp_path / name / "1").mkdir(parents=True)
    core = _two_models_core(tmp_path, *order)
    poll(core)
    assert core.manager("a").available_versions() == core.manager("b").available_versions() == [1]
    os.rename(tmp_path / "a", tmp_path / "a.away")
    (tmp_path / "b" / "2").mkdir()
    (tmp_path / "b" / "1").rename(tmp_path / "b" / "retired")
    with caplog.at_level(logging.INFO, logger="serving"):
        poll(core)
    assert core.manager("a").available_versions() == core.manager("b").available_versions() == [1]
    assert "Loading servable" not in caplog.text and "Unloaded" not in caplog.text
    os.rename(tmp_path / "a.away", tmp_path / "a")
    poll(core)
    assert core.manager("a").available_versions() == [1] and core.manager("b").available_versions() == [2]


def test_a_missing_base_path_at_start_up_loads_no_model(tmp_path, monkeypatch, caplog):
    """At start-up too, one model's missing base path ends each poll before any version is aspired: the other
    model loads nothing, and the start waits (tensorflow_model_server sets neither fail_if_zero_versions_at_startup
    nor servable_versions_always_present, which would fail it)."""
    monkeypatch.setattr(versions, "Servable", FakeServable)
    (tmp_path / "b" / "1").mkdir(parents=True)
    core = _two_models_core(tmp_path, "a", "b")
    stop = StopAfter(core, monkeypatch, 3)
    with caplog.at_level(logging.INFO, logger="serving"):
        core.wait_until_settled(1)
    assert stop.seen == [1, 1, 1]
    assert core.manager("b").records == {} and "Loading servable" not in caplog.text


def _messages(caplog, level=None):
    return [r.getMessage() for r in caplog.records if level is None or r.levelname == level]


@pytest.mark.parametrize("policies, new, before", [
    (["latest { num_versions: 2 }"], [9], {9: [8]}),
    (["specific { versions: 7 versions: 8 }", "specific { versions: 8 versions: 9 }"], [9], {9: [8]}),
    # none aspired ready: the highest unaspired one keeps serving until the newest new one is ready
    (["latest { num_versions: 2 }"], [9, 10], {10: [8], 9: [10]})])
def test_unaspired_versions_unload_before_a_new_load_once_an_aspired_version_is_ready(
        tmp_path, monkeypatch, policies, new, before):
    """AvailabilityPreservingPolicy::GetNextAction unloads the lowest ready version no longer aspired before it loads
    a new one when an aspired version is ready (AspiredVersionsManager sorts unloads first): version 9's load under
    latest 2 starts with 8 alone in memory. 7 had been unloaded only after 9's load, three versions held meanwhile
    and 7 answering."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    def config(policy):
        return (f'model_config_list {{ config {{ name: "a" base_path: "{tmp_path / "a"}" model_platform: '
                f'"tensorflow" model_version_policy {{ {policy} }} }} }}')

    loaded_beside = {}

    class Recording(FakeServable):
        def __init__(self, name, version, path, metrics=None, runner=None):
            super().__init__(name, version, path)
            loaded_beside[version] = core.manager("a").available_versions()

    monkeypatch.setattr(versions, "Servable", Recording)
    for version in (7, 8):
        (tmp_path / "a" / str(version)).mkdir(parents=True)
    core = _core(str(tmp_path), config(policies[0]))
    poll(core)
    assert core.manager("a").available_versions() == [7, 8]
    for version in new:
        (tmp_path / "a" / str(version)).mkdir()
    loaded_beside.clear()
    if len(policies) > 1:
        core.apply_config(text_format.Parse(config(policies[1]), model_server_config_pb2.ModelServerConfig()))
    poll(core)
    assert loaded_beside == before
    assert core.manager("a").available_versions() == sorted(new if len(new) > 1 else [8] + new)


def test_a_file_uri_base_path_is_read_as_its_local_path(tmp_path, monkeypatch, caplog):
    """TF Serving reads a base path through TensorFlow's Env, whose local file system takes file:///x as /x: it
    had been listed as a folder named file:///x, not found at every poll (the start waiting for ever)."""
    monkeypatch.setattr(versions, "Servable", FakeServable)
    (tmp_path / "a" / "1").mkdir(parents=True)
    uri = f"file://{tmp_path / 'a'}"
    core = _core(str(tmp_path), f'model_config_list {{ config {{ name: "a" base_path: "{uri}" '
                                'model_platform: "tensorflow" } }')
    with caplog.at_level(logging.INFO, logger="serving"):
        poll(core)
    assert core.manager("a").available_versions() == [1] and not _messages(caplog, "ERROR")


def test_a_base_path_that_cannot_be_read_is_logged_in_tf_servings_words(tmp_path, monkeypatch, caplog):
    """FileSystemStoragePathSource's ERROR, once per poll, for the first base path in the config's order that cannot
    be read: FileExists' NOT_FOUND for a missing one, GetChildren's error for one that is not a folder. (It had been
    a WARNING with Python's error, for every missing base path.)"""
    monkeypatch.setattr(versions, "Servable", FakeServable)
    (tmp_path / "b").write_text("not a folder")
    core = _two_models_core(tmp_path, "a", "b")
    with caplog.at_level(logging.INFO, logger="serving"):
        poll(core)
    a = tmp_path / "a"
    assert _messages(caplog, "ERROR") == ["FileSystemStoragePathSource encountered a filesystem access error: Could not "
                                          f"find base path {a} for servable a with error NOT_FOUND: {a} not found"]
    caplog.clear()
    core = _two_models_core(tmp_path, "b", "a")
    with caplog.at_level(logging.INFO, logger="serving"):
        poll(core)
    assert _messages(caplog, "ERROR") == ["FileSystemStoragePathSource encountered a filesystem access error: "
                                          f"{tmp_path / 'b'}; Not a directory"]


@pytest.mark.parametrize("policy, folders, logged", [
    ("specific { versions: 7 }", ["1"], [
        "Version 7 of servable letters, which was requested to be served as a 'specific' version in the servable's "
        "version policy, was not found in the file system", "No versions of servable letters found"]),
    ("specific { versions: 1 versions: 7 }", ["1"], ["Version 7 of servable letters"]),
    ("latest {}", ["incoming", "v2"], ["No versions of servable letters found"]),
    ("all {}", ["incoming"], ["No versions of servable letters found"]),
    ("all {}", ["3"], []),
])
def test_a_poll_that_aspires_no_version_says_so(tmp_path, monkeypatch, caplog, policy, folders, logged):
    """TF Serving warns "No versions of servable … found under base path …" whenever a poll aspires no version:
    a 'specific' policy none of whose versions is there too (AspireSpecificVersions' !aspired_versions.empty()),
    which had only said that version 7 was not found."""
    monkeypatch.setattr(versions, "Servable", FakeServable)
    base = tmp_path / "letters"
    for name in folders:
        (base / name).mkdir(parents=True)
    core = _core(str(base), f'model_config_list {{ config {{ name: "letters" base_path: "{base}" '
                            f'model_platform: "tensorflow" model_version_policy {{ {policy} }} }} }}')
    with caplog.at_level(logging.INFO, logger="serving"):
        poll(core)
    warnings = _messages(caplog, "WARNING")
    assert len(warnings) == len(logged) and all(w.startswith(part) for w, part in zip(warnings, logged))
    if "No versions of servable letters found" in logged:
        assert warnings[-1] == (f"No versions of servable letters found under base path {base}. Did you forget to "
                                "name your leaf directory as a number (eg. '/1/')?")


def _two_versions(tmp_path, broken: int, **options):
    """ServerCore of a model whose newest two versions, 2 and 3, are served (latest 2), ``broken`` unloadable."""
    base = str(tmp_path / "letters")
    for version in (2, 3):
        testing.publish_version(base, version, broken=version == broken)
    return _core(base, testing.labelled_config_text(base, {}, num_versions=2), **options)


def test_startup_ends_once_the_newest_version_that_settles_is_available(tmp_path):
    """TF Serving's start waits for Latest(model): it ends as soon as the highest version that is AVAILABLE or END
    is AVAILABLE (HasAnyServableInStreamReachedState), an older version still retrying its load. The start had
    waited for every aspired version to settle (a broken version 2's retries, 20 s with 4 retries 5 s apart).
    Without polls, the loader runs the retries after the start."""
    core = _two_versions(tmp_path, broken=2, max_num_load_retries=1, load_retry_interval_micros=1_000_000)
    manager = core.manager("letters")
    with loader(core):
        core.wait_until_settled(0)
        assert manager.available_versions() == [3]   # the start ended on version 3, version 2 not due to retry yet
        assert versions.State.Name(manager.records[2].state) == "LOADING" and manager.records[2].attempts == 1
        wait_for(lambda: versions.State.Name(manager.records[2].state) == "END")
    record = manager.records[2]
    assert (versions.State.Name(record.state), record.error_code, record.attempts) == ("END", "DATA_LOSS", 2)
    manager.unload_all()


def test_startup_fails_when_the_newest_version_that_settles_ended(tmp_path):
    """Newest first, as TF Serving loads them: a broken version 3 without retries ends first, and the start fails
    on it, as TF Serving's does, though version 2 loads (it had started and served version 2)."""
    core = _two_versions(tmp_path, broken=3, max_num_load_retries=0)
    with pytest.raises(versions.ServingError) as caught, loader(core):
        core.wait_until_settled(0)
    assert caught.value.code == "UNKNOWN"
    assert caught.value.message.startswith("1 servable(s) did not become available: {{{name: letters version: 3} "
                                           "due to error: DATA_LOSS: Can't parse ")
    core.unload_all()


def test_a_reload_that_adds_a_model_answers_once_its_newest_version_is_available(tmp_path):
    """HandleReloadConfigRequest waits for Latest(model) of the model it adds: once the newest version is
    AVAILABLE it answers OK, an older broken version still retrying (it had waited for the retries, past the
    client's deadline)."""
    from tensorflow_serving.config import model_server_config_pb2
    base = str(tmp_path / "letters")
    testing.publish_version(base, 1)
    other = str(tmp_path / "other")
    testing.publish_version(other, 2, broken=True)
    testing.publish_version(other, 3)
    with testing.start_server(base, **dict(FAST, max_num_load_retries=4,
                                           load_retry_interval_micros=600_000_000)) as server:
        config = model_server_config_pb2.ModelServerConfig()
        config.model_config_list.config.add(name="letters", base_path=base, model_platform="tensorflow")
        added = config.model_config_list.config.add(name="other", base_path=other, model_platform="tensorflow")
        added.model_version_policy.latest.num_versions = 2
        server.server.reload_config(config, timeout=30)
        seen = statuses(testing.RestClient(server.url), "other")
        assert seen[3] == ("AVAILABLE", "OK", "") and seen[2][0] == "LOADING"
