"""pipeline.releases: the config beside the serving dir, created for the demo server and then edited by
promote/rollback; with a running server, promote waits for the version over one kept-alive connection."""
import json
import shutil
import time

from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from components import atomic_pusher
from pipeline import releases
from tests.support import serving as testing
from tests.test_atomic_pusher import fake_model


def model_folder(path, name: bytes) -> str:
    """A pushable model folder whose saved_model.pb parses (promote refuses one that does not), told apart by
    ``name``."""
    graph = meta_graph_pb2.MetaGraphDef(meta_info_def=meta_graph_pb2.MetaGraphDef.MetaInfoDef(
        meta_graph_version=name.decode()))
    return fake_model(path, saved_model_pb2.SavedModel(meta_graphs=[graph]).SerializeToString())


def test_ensure_config_serves_the_latest_version_and_never_overwrites(tmp_path):
    serving_dir, config_file = tmp_path / "models" / "letters", tmp_path / "models" / "models.config"
    serving_dir.mkdir(parents=True)
    assert releases.ensure_config(str(config_file), str(serving_dir)) is True
    config = releases.load_config(str(config_file))
    (model,) = config.model_config_list.config
    assert model.name == "letters" and model.base_path == str(serving_dir)
    assert not model.HasField("model_version_policy") and not model.version_labels   # latest version
    config_file.write_text(config_file.read_text() + "\n# edited\n")
    assert releases.ensure_config(str(config_file), str(serving_dir)) is False
    assert config_file.read_text().endswith("# edited\n")


def test_cli_edits_the_config_beside_the_given_serving_dir(tmp_path, capsys):
    serving_dir = tmp_path / "elsewhere" / "letters"
    v1, _ = atomic_pusher.push_model(model_folder(tmp_path / "m1", b"one"), str(serving_dir))
    v2, _ = atomic_pusher.push_model(model_folder(tmp_path / "m2", b"two"), str(serving_dir))
    no_server = f"http://127.0.0.1:{testing.free_port()}"
    # A server that cannot be reached is not taken for none: the label would name a version it may not have
    # loaded, and TF Serving would then refuse the whole config.
    assert releases.main(["promote", str(v1), "--label", "stable", "--serving-dir", str(serving_dir),
                          "--server-url", no_server]) == 2
    assert f"cannot reach the model server at {no_server}" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere" / "models.config").exists()
    common = ["--serving-dir", str(serving_dir), "--server-url", ""]   # no server: the file alone
    assert releases.main(["promote", str(v1), "--label", "stable", *common]) == 0
    assert releases.main(["promote", str(v2), "--label", "stable", *common]) == 0
    config_file = tmp_path / "elsewhere" / "models.config"
    (model,) = releases.load_config(str(config_file)).model_config_list.config
    assert model.version_labels["stable"] == v2 and sorted(model.model_version_policy.specific.versions) == [v1, v2]
    assert releases.main(["rollback", "--label", "stable", *common]) == 0
    (model,) = releases.load_config(str(config_file)).model_config_list.config
    assert model.version_labels["stable"] == v1
    assert f"in {config_file}" in capsys.readouterr().out
    assert not (tmp_path / "models.config").exists()


def pushed(tmp_path, n=1):
    serving_dir = tmp_path / "models" / "letters"
    versions = [atomic_pusher.push_model(model_folder(tmp_path / f"m{i}", b"m%d" % i), str(serving_dir))[0]
                for i in range(n)]
    return serving_dir, versions


def run(argv, capsys):
    code = releases.main(argv)
    return code, capsys.readouterr().err.strip()


def test_a_damaged_history_stops_promote_and_rollback_and_is_kept(tmp_path, capsys):
    serving_dir, (v1,) = pushed(tmp_path)
    common = ["--serving-dir", str(serving_dir), "--server-url", ""]
    history = tmp_path / "models" / "models.config.history.json"
    for damaged in ("this is not json", '{"1": 2}'):
        history.write_text(damaged)
        for argv in (["promote", str(v1), *common], ["rollback", *common]):
            code, err = run(argv, capsys)
            assert code == 2 and "label history" in err and "fix or remove it" in err, err
        assert history.read_text() == damaged
        assert not (tmp_path / "models" / "models.config").exists()     # nothing changed


def test_a_damaged_push_record_is_read_as_no_record(tmp_path, capsys):
    serving_dir, versions = pushed(tmp_path, n=3)
    records = [serving_dir / str(v) / atomic_pusher.PUSH_RECORD for v in versions]
    records[0].write_text("[1, 2]")                                     # JSON, but not an object
    records[1].write_text('{"model_artifact_id": [1], "pushed_at": 5, "fingerprint": "f"}')   # fields damaged
    found = atomic_pusher.pushed_versions(str(serving_dir))
    assert found[versions[0]] == {} and found[versions[1]] == {"fingerprint": "f"}
    assert found[versions[2]]["fingerprint"] and isinstance(found[versions[2]]["pushed_at"], str)
    code = releases.main(["list", "--serving-dir", str(serving_dir), "--metadata-path", str(tmp_path / "none.db")])
    captured = capsys.readouterr()
    assert code == 0 and all(str(v) in captured.out for v in versions)
    assert f"note: no ML Metadata store at {tmp_path / 'none.db'} (--metadata-path)" in captured.err


def test_a_version_folder_with_leading_zeros_is_the_version_the_server_serves(tmp_path, capsys):
    # TF Serving reads "007" as version 7; a label on 7 must find that folder, and of "007" and "7" the server
    # (and so the push records) take the last by name.
    serving_dir, (v1,) = pushed(tmp_path)
    (serving_dir / str(v1)).rename(serving_dir / f"00{v1}")
    common = ["--serving-dir", str(serving_dir), "--server-url", ""]
    code, err = run(["promote", str(v1), "--label", "stable", *common], capsys)
    assert code == 0, err
    (model,) = releases.load_config(str(tmp_path / "models" / "models.config")).model_config_list.config
    assert model.version_labels["stable"] == v1
    twin = serving_dir / str(v1)
    (twin / "assets.extra").mkdir(parents=True)
    (twin / atomic_pusher.PUSH_RECORD).write_text('{"fingerprint": "the twin"}')
    assert atomic_pusher.pushed_versions(str(serving_dir))[v1]["fingerprint"] == "the twin"


def test_incomplete_versions_bad_configs_and_paths_are_one_line_errors(tmp_path, capsys):
    serving_dir, (v1, v2) = pushed(tmp_path, 2)
    (serving_dir / str(v1) / "saved_model.pb").unlink()
    code, err = run(["promote", str(v1), "--serving-dir", str(serving_dir)], capsys)
    assert code == 2 and "incomplete (no saved_model.pb)" in err
    bad = tmp_path / "bad.config"
    bad.write_text("model_config_list { config { name: 'letters' ")
    for command in (["list"], ["promote", str(v2)]):
        code, err = run([*command, "--serving-dir", str(serving_dir), "--config", str(bad)], capsys)
        assert (code, err.splitlines()[0][:40]) == (2, f"error: cannot read the model config {bad}"[:40]), err
    code, err = run(["list", "--serving-dir", str(tmp_path / "missing")], capsys)
    assert code == 2 and "does not exist" in err
    not_a_db = tmp_path / "metadata.sqlite"
    not_a_db.write_text("garbage")
    code, err = run(["list", "--serving-dir", str(serving_dir), "--metadata-path", str(not_a_db)], capsys)
    assert code == 2 and "cannot read the ML Metadata store" in err and len(err.splitlines()) == 1


def test_a_server_url_that_is_no_http_url_is_refused_before_anything_is_shown(tmp_path, capsys):
    """list had printed its whole table, then the error."""
    serving_dir, (v1,) = pushed(tmp_path)
    for url in ("127.0.0.1:22800", "ftp://127.0.0.1:22800"):
        for argv in (["list"], ["promote", str(v1)], ["rollback"]):
            assert releases.main([*argv, "--serving-dir", str(serving_dir), "--server-url", url]) == 2
            captured = capsys.readouterr()
            assert (captured.out, captured.err) == ("", f"error: --server-url: {url!r} is not an http(s) URL\n")
    assert not (tmp_path / "models" / "models.config").exists()


def test_promote_on_a_live_server_waits_for_the_version_over_one_connection(tmp_path, monkeypatch, capsys):
    serving_dir, config_file = tmp_path / "letters", tmp_path / "models.config"
    testing.publish_version(str(serving_dir), 1)
    testing.publish_version(str(serving_dir), 2)
    releases.ensure_config(str(config_file), str(serving_dir))    # serves the latest version, 2, only
    made, failed = [], []

    class Counting(releases.RestConnection):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.requests = 0
            made.append(self)

        def request(self, method, path, *args, **kwargs):
            self.requests += 1
            answer = super().request(method, path, *args, **kwargs)
            failed.extend([path] if answer[0] != 200 else [])
            return answer

    monkeypatch.setattr(releases, "RestConnection", Counting)
    with testing.start_server(model_config_file=str(config_file), model_config_file_poll_wait_seconds=1,
                              file_system_poll_wait_seconds=0.2) as server:
        assert releases.version_state(server.url, "letters", 1) != "AVAILABLE"
        made.clear()
        assert releases.set_label(str(config_file), "stable", 1, str(serving_dir), server_url=server.url) is None
        (connection,) = made
        assert connection.requests >= 2 and connection.opened == 1     # polled until AVAILABLE over one connection
        waiting = capsys.readouterr().err   # the wait is shown, with the state it saw
        assert f"waiting for version 1 to become AVAILABLE on {server.url} (state: " in waiting
        assert releases.version_state(server.url, "letters", 1) == "AVAILABLE"
        # the polls for the version asked for the model's status: the only failed requests in the server's
        # metrics asked for the new label before the server had applied it (then it answered the label's version)
        assert set(failed) <= {"/v1/models/letters/labels/stable/metadata"}
        assert sum(count for key, count in server.server.metrics.request_count.items()
                   if ("status", "OK") not in key) == len(failed)
        answer = testing.RestClient(server.url).get("/v1/models/letters/labels/stable/metadata")
        assert answer[1]["model_spec"]["version"] == "1"      # set_label returned once the server served it


def test_two_promotes_at_once_both_land(tmp_path, monkeypatch):
    """Each promote reads models.config and its history and writes both back: without the lock, two at once lost
    one label or one history entry (18 of 20 tries), here made certain by a pause between the read and the write."""
    import json
    import threading

    serving_dir, (v1, v2) = pushed(tmp_path, n=2)
    config_file = str(tmp_path / "models" / "models.config")
    real_load = releases.load_config

    def slow_load(path):
        config = real_load(path)
        time.sleep(0.3)
        return config

    monkeypatch.setattr(releases, "load_config", slow_load)
    releases.ensure_config(config_file, str(serving_dir))
    threads = [threading.Thread(target=releases.set_label, args=(config_file, label, version, str(serving_dir)))
               for label, version in (("stable", v1), ("canary", v2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (model,) = real_load(config_file).model_config_list.config
    assert dict(model.version_labels) == {"stable": v1, "canary": v2}
    history = json.loads((tmp_path / "models" / "models.config.history.json").read_text())
    assert sorted((e["label"], e["version"]) for e in history) == [("canary", v2), ("stable", v1)]


def test_a_promote_that_waits_for_another_label_change_says_so_naming_its_process(tmp_path, capsys):
    """A second promote or rollback waits for the first's models.config.lock (up to its 120 s wait for a server):
    it had waited without a word."""
    import os

    from tests.support.locks import held_by_another

    serving_dir, (v1,) = pushed(tmp_path)
    config_file = tmp_path / "models" / "models.config"
    lock = f"{config_file}.lock"
    with held_by_another(lock, 1.0):   # as another promote would
        code, err = run(["promote", str(v1), "--label", "stable", "--serving-dir", str(serving_dir),
                         "--server-url", ""], capsys)
    assert code == 0 and err.splitlines() == [
        f"waiting for another label change of {config_file} to end (process {os.getpid()} holds {lock})"], err
    # no other: no word
    code, err = run(["rollback", "--label", "stable", "--serving-dir", str(serving_dir), "--server-url", ""], capsys)
    assert code == 2 and "waiting" not in err, err


def test_rollback_refuses_when_the_label_and_its_history_are_out_of_step(tmp_path, capsys):
    """A change cut between the config and the history (or made by hand) leaves the label where its last recorded
    promotion did not put it; rolling back from there would pick the wrong version."""
    import json

    serving_dir, (v1, v2, v3) = pushed(tmp_path, n=3)
    common = ["--serving-dir", str(serving_dir), "--server-url", ""]
    for version in (v1, v2, v3):
        assert releases.main(["promote", str(version), "--label", "stable", *common]) == 0
    history_file = tmp_path / "models" / "models.config.history.json"
    history = json.loads(history_file.read_text())
    history_file.write_text(json.dumps(history[:-1]))          # the v2 -> v3 entry never written
    code, err = run(["rollback", "--label", "stable", *common], capsys)
    assert code == 2 and f"is on version {v3}" in err and f"put it on {v2}" in err
    (model,) = releases.load_config(str(tmp_path / "models" / "models.config")).model_config_list.config
    assert model.version_labels["stable"] == v3                 # unchanged


def test_rollback_without_the_label_in_the_config_says_what_is_missing(tmp_path, capsys):
    """The config gone, without the model, or without the label: rollback had said the label "is on version None"
    and called the config and its history out of step."""
    serving_dir, (v1, v2) = pushed(tmp_path, n=2)
    common = ["--serving-dir", str(serving_dir), "--server-url", ""]
    for version in (v1, v2):
        assert releases.main(["promote", str(version), "--label", "stable", *common]) == 0
    config_file = tmp_path / "models" / "models.config"
    history_file = tmp_path / "models" / "models.config.history.json"
    promoted, history = config_file.read_text(), history_file.read_text()
    other_model = promoted.replace('name: "letters"', 'name: "other"')
    for config, missing in ((None, "does not exist"), (other_model, "has no model 'letters'"),
                            (promoted.replace('"stable"', '"canary"'), "does not set label 'stable'")):
        config_file.unlink(missing_ok=True)
        if config is not None:
            config_file.write_text(config)
        code, err = run(["rollback", "--label", "stable", *common], capsys)
        assert code == 2 and err == (f"error: cannot roll back label 'stable': {config_file} {missing} (its last "
                                     f"promotion in {history_file} put it on {v2}); promote the version you want "
                                     "(letters-releases promote VERSION --label stable)"), err
        assert history_file.read_text() == history and (config is None or config_file.read_text() == config)


def test_a_version_shows_the_evaluation_it_was_pushed_under_and_only_this_stores():
    from pipeline.releases import push_evaluation
    runs = [{"blessing_id": 20, "blessed": True, "top1": 0.9, "top3": 0.99, "evaluated_at": "t1"},
            {"blessing_id": 30, "blessed": False, "top1": 0.9, "top3": 0.99, "evaluated_at": "t2"}]   # re-judged
    evaluations = {13: {"uri": "/p/Trainer/model/7", "runs": runs}}
    record = {"model_artifact_id": 13, "model": "/p/Trainer/model/7/Format-Serving", "blessing_artifact_id": 20}
    assert push_evaluation(record, evaluations)["blessed"] is True and "blessing_id" not in push_evaluation(
        record, evaluations)
    older = {"model_artifact_id": 13, "model": "/p/Trainer/model/7/Format-Serving"}   # a record without its blessing
    assert push_evaluation(older, evaluations)["evaluated_at"] == "t1"
    other_store = {"model_artifact_id": 13, "model": "/elsewhere/Trainer/model/7/Format-Serving"}
    assert push_evaluation(other_store, evaluations) == {}
    assert push_evaluation({"model_artifact_id": 99, "model": "/p/x"}, evaluations) == {}


def test_the_first_promote_keeps_what_the_latest_policy_serves(tmp_path, capsys):
    """A "latest" config turned "specific" by a promote still serves the versions it served: the newest answers
    every request without a label, and the shipped config's latest two both stay."""
    serving_dir, (v1, v2, v3) = pushed(tmp_path, 3)
    config_file = tmp_path / "models" / "models.config"
    releases.ensure_config(str(config_file), str(serving_dir))          # latest: serves v3 alone
    code, err = run(["promote", str(v2), "--label", "canary", "--serving-dir", str(serving_dir), "--server-url", ""],
                    capsys)
    assert code == 0, err
    (model,) = releases.load_config(str(config_file)).model_config_list.config
    assert sorted(model.model_version_policy.specific.versions) == [v2, v3]
    # later promotes keep the newest served version (requests without a label), not every earlier one
    assert run(["promote", str(v1), "--label", "canary", "--serving-dir", str(serving_dir), "--server-url", ""],
               capsys)[0] == 0
    (model,) = releases.load_config(str(config_file)).model_config_list.config
    assert sorted(model.model_version_policy.specific.versions) == [v1, v2, v3]
    shipped = tmp_path / "shipped.config"
    shipped.write_text(f"model_config_list {{ config {{ name: 'letters' base_path: '{serving_dir}' "
                       "model_platform: 'tensorflow' model_version_policy { latest { num_versions: 2 } } } }")
    assert releases.set_label(str(shipped), "stable", v1, str(serving_dir)) is None
    (model,) = releases.load_config(str(shipped)).model_config_list.config
    assert sorted(model.model_version_policy.specific.versions) == [v1, v2, v3]


def test_a_newest_folder_no_server_can_load_is_not_taken_for_the_version_served(tmp_path, capsys):
    """A "latest" config with a half-written newest folder (or a damaged one): the server tries it and keeps serving
    the version before. The first promote had kept the broken folder as the served version and dropped the one
    served, which the server then unloaded; later promotes kept the broken folder again."""
    serving_dir, (v1, v2, v3) = pushed(tmp_path, 3)
    testing.publish_version(str(serving_dir), v3 + 1, broken=True)
    testing.publish_version(str(serving_dir), v3 + 2, half_written=True)
    config_file = tmp_path / "models" / "models.config"
    releases.ensure_config(str(config_file), str(serving_dir))          # latest: tries v3 + 2, serves v3
    common = ["--serving-dir", str(serving_dir), "--server-url", ""]

    def served():
        (model,) = releases.load_config(str(config_file)).model_config_list.config
        return sorted(model.model_version_policy.specific.versions)
    assert run(["promote", str(v1), "--label", "stable", *common], capsys)[0] == 0
    assert served() == [v1, v3]
    assert run(["promote", str(v2), "--label", "canary", *common], capsys)[0] == 0
    assert served() == [v1, v2, v3]


def test_promoting_the_version_a_label_is_on_changes_nothing_and_rollback_goes_back_past_it(tmp_path, capsys):
    serving_dir, (v1, v2) = pushed(tmp_path, 2)
    common = ["--serving-dir", str(serving_dir), "--server-url", ""]
    for version in (v1, v2, v2):
        assert run(["promote", str(version), "--label", "stable", *common], capsys)[0] == 0
    assert run(["promote", str(v2), "--label", "stable", *common], capsys)[0] == 0
    history = json.loads((tmp_path / "models" / "models.config.history.json").read_text())
    assert [(e["previous"], e["version"]) for e in history] == [(None, v1), (v1, v2)]
    assert run(["rollback", "--label", "stable", *common], capsys)[0] == 0
    (model,) = releases.load_config(str(tmp_path / "models" / "models.config")).model_config_list.config
    assert model.version_labels["stable"] == v1


def test_list_marks_versions_a_server_cannot_load(tmp_path, capsys):
    serving_dir, (v1, v2, v3) = pushed(tmp_path, 3)
    (serving_dir / str(v1) / "saved_model.pb").unlink()
    (serving_dir / str(v2) / "saved_model.pb").write_bytes(b"\xff" * 64)
    (serving_dir / str(v3) / "saved_model.pb").write_bytes(saved_model_pb2.SavedModel(
        meta_graphs=[meta_graph_pb2.MetaGraphDef()]).SerializeToString())
    assert releases.main(["list", "--serving-dir", str(serving_dir), "--metadata-path", str(tmp_path / "n.db")]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows[str(v1)].endswith("not loadable: incomplete (no saved_model.pb)")
    assert rows[str(v2)].endswith("not loadable: damaged (saved_model.pb does not parse)")
    assert "not loadable" not in rows[str(v3)]


def test_list_notes_a_label_whose_version_folder_was_removed(tmp_path, monkeypatch, capsys):
    """A label on a version whose folder was removed from the serving dir had no row and no note, and the server's
    answer for it (mapped, its version not served: NOT_FOUND) was said to be no version at all."""
    import shutil

    serving_dir, (v1, v2) = pushed(tmp_path, 2)
    config_file = tmp_path / "models" / "models.config"
    for version, label in ((v1, "canary"), (v2, "stable")):
        assert releases.main(["promote", str(version), "--label", label, "--serving-dir", str(serving_dir),
                              "--server-url", ""]) == 0
    shutil.rmtree(serving_dir / str(v2))
    capsys.readouterr()
    answers = {"/v1/models/letters": (200, {"model_version_status": [{"version": str(v1), "state": "AVAILABLE"}]}),
               "/v1/models/letters/labels/canary/metadata": (200, {"model_spec": {"version": str(v1)}}),
               "/v1/models/letters/labels/stable/metadata": (404, {"error": "Servable not found for request: "
                                                                            f"Specific(letters, {v2})"})}

    class Server(releases.RestConnection):   # TF Serving's answers once it has dropped version v2
        def request(self, method, path, *args, **kwargs):
            return answers[path]

    monkeypatch.setattr(releases, "RestConnection", Server)
    url = "http://127.0.0.1:26599"
    assert releases.main(["list", "--serving-dir", str(serving_dir), "--metadata-path", str(tmp_path / "n.db"),
                          "--server-url", url]) == 0
    captured = capsys.readouterr()
    assert [line.split()[0] for line in captured.out.splitlines()[1:]] == [str(v1)]
    assert captured.err.splitlines()[:2] == [
        f"note: label 'stable' names version {v2}, which is not in {serving_dir}: requests to it fail",
        f"note: the server at {url} maps label 'stable' to version {v2}, which it does not serve ({config_file}: "
        f"{v2}): Servable not found for request: Specific(letters, {v2})"], captured.err
    # a label the server does not map at all is still said to be served at no version
    answers["/v1/models/letters/labels/stable/metadata"] = (400, {"error": "Unrecognized servable version label: "
                                                                           "stable"})
    assert releases.main(["list", "--serving-dir", str(serving_dir), "--metadata-path", str(tmp_path / "n.db"),
                          "--server-url", url]) == 0
    assert f"note: the server at {url} serves label 'stable' at no version ({config_file}: {v2})" in \
        capsys.readouterr().err.splitlines()


def test_a_version_without_variables_is_not_loadable_listed_promoted_nor_counted_as_served(tmp_path, capsys):
    """A version folder with saved_model.pb but no variables/ (a copy caught halfway) had been loadable: list did
    not mark it, promote labelled it, and the next promote kept it as the version served, leaving out the one a
    server serves; a server refuses it (FAILED_PRECONDITION: The specified SavedModel has no variables), TF Serving
    once its warm-up fails."""
    serving_dir, config_file = tmp_path / "letters", tmp_path / "models.config"
    testing.publish_version(str(serving_dir), 1)
    testing.publish_version(str(serving_dir), 5, without_variables=True)
    assert releases.version_problem(str(serving_dir / "5")) == "incomplete (no variables/variables.index)"
    common = ["--serving-dir", str(serving_dir), "--config", str(config_file), "--server-url", ""]
    assert releases.main(["list", *common, "--metadata-path", str(tmp_path / "n.db")]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["5"].endswith("not loadable: incomplete (no variables/variables.index)")
    assert "not loadable" not in rows["1"]
    releases.ensure_config(str(config_file), str(serving_dir))          # latest: tries 5, serves 1
    before = config_file.read_bytes()
    code, err = run(["promote", "5", "--label", "canary", *common], capsys)
    assert (code, err) == (2, f"error: version 5 in {serving_dir} (5/) is incomplete (no variables/variables.index): "
                              "a server cannot load it"), err
    assert config_file.read_bytes() == before
    assert run(["promote", "1", "--label", "stable", *common], capsys)[0] == 0
    (model,) = releases.load_config(str(config_file)).model_config_list.config
    assert list(model.model_version_policy.specific.versions) == [1]


def test_a_version_stored_as_text_is_loadable(tmp_path):
    """A SavedModel in saved_model.pbtxt is one a server loads (TF Serving reads .pb or .pbtxt): it had been marked
    incomplete (no saved_model.pb); text that does not parse is damaged, naming the file."""
    text = testing.store_as_text(testing.publish_version(str(tmp_path / "letters"), 1))
    assert releases.version_problem(str(tmp_path / "letters" / "1")) is None
    with open(text, "a") as handle:
        handle.write("not a field {")
    assert releases.version_problem(str(tmp_path / "letters" / "1")) == "damaged (saved_model.pbtxt does not parse)"


def test_a_version_the_server_fails_to_load_ends_the_wait_with_its_error_and_the_config_is_put_back(tmp_path,
                                                                                                    capsys):
    serving_dir, config_file = tmp_path / "letters", tmp_path / "models.config"
    testing.publish_version(str(serving_dir), 1)
    testing.publish_version(str(serving_dir), 2)
    releases.ensure_config(str(config_file), str(serving_dir))
    before = config_file.read_bytes()
    with testing.start_server(model_config_file=str(config_file), model_config_file_poll_wait_seconds=0.5,
                              file_system_poll_wait_seconds=0.2, max_num_load_retries=0) as server:
        # changed after the push into a SavedModel that parses (so promote's own check passes) without a serving
        # graph, which only a load finds
        (serving_dir / "1" / "saved_model.pb").write_bytes(saved_model_pb2.SavedModel(
            meta_graphs=[meta_graph_pb2.MetaGraphDef()]).SerializeToString())
        started = time.monotonic()
        code, err = run(["promote", "1", "--label", "stable", "--serving-dir", str(serving_dir), "--config",
                         str(config_file), "--server-url", server.url], capsys)
        assert code == 2 and time.monotonic() - started < 60, err
        assert "version 1 failed to load on" in err and "{ serve }" in err and "put back as it was" in err
        assert config_file.read_bytes() == before
        # fixed, then promoted again: the END the failed load left in the server's status does not end this wait.
        # (A server retries an errored version once a config without it was applied, as TF Serving's
        # AspiredVersionsManager: the put-back config's poll comes first.)
        time.sleep(1.5)
        testing.publish_version(str(tmp_path / "fixed"), 1)
        (serving_dir / "1" / "saved_model.pb").write_bytes((tmp_path / "fixed" / "1" / "saved_model.pb").read_bytes())
        code, err = run(["promote", "1", "--label", "stable", "--serving-dir", str(serving_dir), "--config",
                         str(config_file), "--server-url", server.url], capsys)
        assert code == 0, err


def _promote_edited_during_the_wait(tmp_path, monkeypatch, capsys, ending: BaseException):
    """Promotes v1 against a server that never loads it; the config is edited by hand during the wait, which then
    ends with ``ending``. Returns (exit code, stderr, config file, serving dir, v1)."""
    serving_dir, (v1,) = pushed(tmp_path)
    config_file = tmp_path / "models" / "models.config"
    releases.ensure_config(str(config_file), str(serving_dir))
    monkeypatch.setattr(releases, "version_status", lambda *args: ("NOT_TRACKED", None))

    def edited_meanwhile(*args, **kwargs):
        config_file.write_text(config_file.read_text() + "\n# another model added by hand\n")
        raise ending
    monkeypatch.setattr(releases, "_wait_available", edited_meanwhile)
    code, err = run(["promote", str(v1), "--serving-dir", str(serving_dir), "--server-url", "http://127.0.0.1:9"],
                    capsys)
    return code, err, config_file, serving_dir, v1


def test_a_config_edited_during_the_wait_is_not_put_back_over_the_edit(tmp_path, monkeypatch, capsys):
    code, err, config_file, _, _ = _promote_edited_during_the_wait(tmp_path, monkeypatch, capsys,
                                                                   ValueError("version did not become AVAILABLE"))
    assert code == 2 and "left as it is now (it was changed meanwhile" in err
    assert config_file.read_text().endswith("# another model added by hand\n")


def test_an_interrupted_wait_says_a_config_edited_meanwhile_was_left_as_it_is(tmp_path, monkeypatch, capsys):
    """Ctrl-C (or SIGTERM) during the wait had said the config was as it was, though an edit made meanwhile kept
    this promote's version in it."""
    code, err, config_file, serving_dir, v1 = _promote_edited_during_the_wait(tmp_path, monkeypatch, capsys,
                                                                              KeyboardInterrupt())
    assert code == 130 and err == (f"interrupted: label 'stable' left unchanged and {config_file} left as it is now "
                                   f"(it was changed meanwhile; it still lists version {v1})"), err
    assert config_file.read_text().endswith("# another model added by hand\n")
    monkeypatch.setattr(releases, "_wait_available", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
    config_file.unlink()
    releases.ensure_config(str(config_file), str(serving_dir))
    before = config_file.read_bytes()
    code, err = run(["promote", str(v1), "--serving-dir", str(serving_dir), "--server-url", "http://127.0.0.1:9"],
                    capsys)
    assert code == 130 and err == f"interrupted: label 'stable' left unchanged and {config_file} put back as it was"
    assert config_file.read_bytes() == before


def test_list_of_an_empty_serving_dir_says_only_that(tmp_path, capsys, caplog):
    (tmp_path / "letters").mkdir()
    assert releases.main(["list", "--serving-dir", str(tmp_path / "letters"), "--metadata-path",
                          str(tmp_path / "n.db")]) == 0
    assert capsys.readouterr().out.strip() == "no pushed version"
    assert not [r for r in caplog.records if r.name == "serving.versions"]


def test_a_config_with_tf_serving_2_20_fields_is_promoted_on_and_keeps_them(tmp_path, capsys):
    serving_dir, (v1,) = pushed(tmp_path)
    config_file = tmp_path / "models" / "models.config"
    config_file.write_text(f"model_config_list {{ config {{ name: 'letters' base_path: '{serving_dir}' "
                           "model_platform: 'tensorflow' logging_config { sampling_config { sampling_rate: 0.1 "
                           "per_task_sampling_configs { dc: 'aa' sampling_rate: 1.0 } } } } }")
    code, err = run(["promote", str(v1), "--serving-dir", str(serving_dir), "--server-url", ""], capsys)
    assert code == 0, err
    text = config_file.read_text()
    assert "per_task_sampling_configs" in text and 'dc: "aa"' in text and "stable" in text


def assert_refused_and_left(tmp_path, serving_dir, version: int, previous: int, capsys, error: str) -> None:
    """list, promote ``version`` and rollback (to ``previous``, by the history) each refuse the config file with
    ``error`` (status 2), the file and its history left byte for byte."""
    config_file = tmp_path / "models" / "models.config"
    history = tmp_path / "models" / "models.config.history.json"
    history.write_text(json.dumps([{"label": "stable", "version": version, "previous": previous}]))
    before = config_file.read_bytes(), history.read_bytes()
    for argv in (["list"], ["promote", str(version)], ["rollback"]):
        code, err = run([*argv, "--serving-dir", str(serving_dir), "--server-url", "",
                         "--metadata-path", str(tmp_path / "n.db")], capsys)
        assert (code, err) == (2, error), (argv, err)
    assert (config_file.read_bytes(), history.read_bytes()) == before


def test_a_custom_model_config_is_refused_and_left_as_it_is(tmp_path, capsys):
    """ModelServerConfig's other branch: promote had replaced it with a model_config_list (its content lost), and
    list showed no label."""
    serving_dir, (v1,) = pushed(tmp_path)
    config_file = tmp_path / "models" / "models.config"
    config_file.write_text("custom_model_config { type_url: 'type.googleapis.com/x.Y' value: 'abc' }\n")
    assert_refused_and_left(tmp_path, serving_dir, v1, v1 - 1, capsys,
                            f"error: {config_file} holds a custom_model_config, not a model_config_list: left as it is")


def test_a_config_listing_the_model_twice_is_refused_in_tf_servings_words(tmp_path, capsys):
    """TF Serving refuses the whole file (ServerCore's ValidateModelConfigList): promote had edited the first entry,
    list shown its labels alone."""
    serving_dir, (v1, v2) = pushed(tmp_path, 2)
    config_file = tmp_path / "models" / "models.config"
    entry = (f"config {{ name: 'letters' base_path: '{serving_dir}' model_platform: 'tensorflow' "
             f"model_version_policy {{ specific {{ versions: {v1} versions: {v2} }} }} version_labels {{ key: '%s' "
             "value: %d } }")
    config_file.write_text(f"model_config_list {{ {entry % ('stable', v1)} {entry % ('canary', v2)} }}\n")
    assert_refused_and_left(tmp_path, serving_dir, v2, v1, capsys,
                            f"error: {config_file}: Illegal to list model letters multiple times in config list: "
                            "left as it is")


def test_the_shipped_placeholder_labels_are_removed_never_served_nor_rolled_back_to(tmp_path, capsys, caplog):
    """serving/deploy/models.config ships ``stable: 1`` and ``canary: 2``: the first promote put versions 1 and 2
    into the specific versions (the server then logged them missing twice a second), kept ``canary: 2``, and
    recorded 1 as stable's previous version, so that a rollback could only fail."""
    from core import configs

    serving_dir, (v1, v2) = pushed(tmp_path, 2)
    config_file = tmp_path / "models" / "models.config"
    shipped = (configs.PROJECT_ROOT / "serving" / "deploy" / "models.config").read_text()
    config_file.write_text(shipped.replace('"/models/letters"', f'"{serving_dir}"'))
    common = ["--serving-dir", str(serving_dir), "--server-url", ""]
    code, err = run(["promote", str(v1), "--label", "stable", *common], capsys)
    assert code == 0, err
    assert f"label 'canary' named version 2, which is not in {serving_dir}: removed" in err
    assert f"label 'stable' named version 1, which is not in {serving_dir}: removed" in err
    (model,) = releases.load_config(str(config_file)).model_config_list.config
    assert sorted(model.model_version_policy.specific.versions) == [v1, v2]   # v2: the latest policy served it
    assert dict(model.version_labels) == {"stable": v1}
    history = json.loads((tmp_path / "models" / "models.config.history.json").read_text())
    assert [(e["label"], e["previous"]) for e in history] == [("stable", None)]
    code, err = run(["rollback", "--label", "stable", *common], capsys)
    assert code == 2 and "had no version before" in err
    caplog.clear()
    assert run(["promote", str(v2), "--label", "canary", *common], capsys)[0] == 0
    assert not [r for r in caplog.records if "was not found in the file system" in r.getMessage()]


def test_a_version_list_marks_not_loadable_is_refused_without_a_server_too(tmp_path, capsys):
    """Without a server (--server-url '') a truncated saved_model.pb was promoted, though `list` said a server
    cannot load it."""
    serving_dir, (v1, v2) = pushed(tmp_path, 2)
    pb = serving_dir / str(v2) / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[:len(pb.read_bytes()) // 2])
    code, err = run(["promote", str(v2), "--serving-dir", str(serving_dir), "--server-url", ""], capsys)
    assert code == 2 and f"version {v2} in {serving_dir} ({v2}/) is damaged (saved_model.pb does not parse)" in err
    assert not (tmp_path / "models" / "models.config").exists()


def test_a_wait_that_runs_out_while_loading_says_the_error_is_in_the_servers_log(monkeypatch):
    """A server retrying a failed load reports LOADING with no error (TF Serving does too): the wait cannot show
    the error, and says where it is instead of leaving the user to think the load is slow."""
    monkeypatch.setattr(releases, "version_status", lambda *args: ("LOADING", None))
    try:
        releases._wait_available(None, "http://127.0.0.1:9", "letters", 7, timeout=-1)
    except ValueError as err:
        assert "(state: LOADING)" in str(err) and "reports LOADING without the error meanwhile: its log says why" \
            in str(err)
    else:
        raise AssertionError("the wait did not end")


def test_every_version_a_rollback_goes_back_to_stays_served(tmp_path, capsys):
    """promote A --label canary, then promote B --label stable had dropped the version canary left, so a rollback
    of canary waited for it to load again instead of being instant."""
    serving_dir, (v1, v2, v3, v4) = pushed(tmp_path, 4)
    config_file = tmp_path / "models" / "models.config"
    releases.ensure_config(str(config_file), str(serving_dir))          # latest: v4
    common = ["--serving-dir", str(serving_dir), "--server-url", ""]

    def served():
        (model,) = releases.load_config(str(config_file)).model_config_list.config
        return sorted(model.model_version_policy.specific.versions)
    for version, label in ((v1, "canary"), (v2, "canary"), (v3, "stable")):
        assert run(["promote", str(version), "--label", label, *common], capsys)[0] == 0
    assert served() == [v1, v2, v3, v4]          # v1: canary's rollback goes back to it
    assert run(["promote", str(v4), "--label", "stable", *common], capsys)[0] == 0
    assert served() == [v1, v2, v3, v4]          # and v3: stable's
    assert run(["rollback", "--label", "stable", *common], capsys)[0] == 0
    assert run(["rollback", "--label", "canary", *common], capsys)[0] == 0
    (model,) = releases.load_config(str(config_file)).model_config_list.config
    assert dict(model.version_labels) == {"stable": v3, "canary": v1}


def test_promote_fails_when_the_server_does_not_serve_the_label_at_the_new_version(tmp_path, capsys):
    """The label was written and promote said so (rc 0) though the server never applied that config (here one that
    does not re-read it; TF Serving refusing it does the same): it now waits until the server serves the label at
    the version, then says the truth. `list` tells what the server serves beside the file's labels."""
    serving_dir, config_file = tmp_path / "letters", tmp_path / "models.config"
    testing.publish_version(str(serving_dir), 1)
    testing.publish_version(str(serving_dir), 2)
    releases.ensure_config(str(config_file), str(serving_dir))
    assert releases.set_label(str(config_file), "stable", 1, str(serving_dir)) is None   # the file alone
    with testing.start_server(model_config_file=str(config_file), file_system_poll_wait_seconds=0.2,
                              model_config_file_poll_wait_seconds=0,   # never re-reads it
                              allow_version_labels_for_unavailable_models=True) as server:
        assert releases.label_version(server.url, "letters", "stable") == 1
        try:
            releases.set_label(str(config_file), "stable", 2, str(serving_dir), server_url=server.url, timeout=2)
        except ValueError as err:
            assert (f"label 'stable' is on version 2 in {config_file}, but the server at {server.url} still serves "
                    "label 'stable' at version 1 after 2 s: it has not applied that config") in str(err)
        else:
            raise AssertionError("promote reported success though the server serves label 'stable' at version 1")
        try:   # a repeated promote checks the server too
            releases.set_label(str(config_file), "stable", 2, str(serving_dir), server_url=server.url, timeout=0)
        except ValueError as err:
            assert "still serves label 'stable' at version 1" in str(err)
        else:
            raise AssertionError("a repeated promote reported success")
        capsys.readouterr()
        assert releases.main(["list", "--serving-dir", str(serving_dir), "--config", str(config_file),
                              "--metadata-path", str(tmp_path / "n.db"), "--server-url", server.url]) == 0
        assert (f"note: the server at {server.url} serves label 'stable' at version 1 ({config_file}: 2)"
                in capsys.readouterr().err)


def test_a_version_a_server_never_saw_says_it_has_not_applied_the_config(tmp_path, capsys):
    """A server that never re-reads its config (or reads another file) leaves the version NOT_TRACKED: the wait ran
    out saying only the state, where the label's wait says why it may be so."""
    serving_dir, config_file = tmp_path / "letters", tmp_path / "models.config"
    testing.publish_version(str(serving_dir), 1)
    testing.publish_version(str(serving_dir), 2)
    config_file.write_text(f"model_config_list {{ config {{ name: 'letters' base_path: '{serving_dir}' "
                           "model_platform: 'tensorflow' model_version_policy { specific { versions: 1 } } } }")
    before = config_file.read_bytes()
    with testing.start_server(model_config_file=str(config_file), file_system_poll_wait_seconds=0.2,
                              model_config_file_poll_wait_seconds=0) as server:   # never re-reads it
        try:
            releases.set_label(str(config_file), "canary", 2, str(serving_dir), server_url=server.url, timeout=1)
        except ValueError as err:
            assert (f"version 2 did not become AVAILABLE on {server.url} within 1 s (state: NOT_TRACKED); the server "
                    "has not applied the config (it re-reads it every --model_config_file_poll_wait_seconds, when "
                    f"set; its log says why not); label 'canary' left unchanged and {config_file} put back as it "
                    "was") == str(err), err
        else:
            raise AssertionError("the server loaded a version of a config it never read")
    assert config_file.read_bytes() == before


def test_a_stop_between_the_label_and_its_history_is_held_until_both_are_written(tmp_path, monkeypatch, capsys):
    """SIGTERM (or Ctrl-C) right after the label was written had lost the history entry and said "left unchanged";
    a rollback then said the label had no version before, from the wrong promotion."""
    import os
    import signal

    serving_dir, (v1, v2) = pushed(tmp_path, n=2)
    common = ["--serving-dir", str(serving_dir), "--server-url", ""]
    config_file = tmp_path / "models" / "models.config"
    history_file = tmp_path / "models" / "models.config.history.json"
    assert releases.main(["promote", str(v1), "--label", "stable", *common]) == 0
    real_write = releases.atomic_write

    def stopped_after_the_config(path, data):
        real_write(path, data)
        if path == str(config_file):
            os.kill(os.getpid(), signal.SIGTERM)   # as `kill` would, between the config and the history
    monkeypatch.setattr(releases, "atomic_write", stopped_after_the_config)
    code, err = run(["promote", str(v2), "--label", "stable", *common], capsys)
    assert code == 130 and err.splitlines()[-1] == (f"interrupted: label 'stable' moved to {v2} in {config_file} "
                                                    f"(recorded in {history_file})"), err
    monkeypatch.setattr(releases, "atomic_write", real_write)
    (model,) = releases.load_config(str(config_file)).model_config_list.config
    assert model.version_labels["stable"] == v2
    assert [(e["previous"], e["version"]) for e in json.loads(history_file.read_text())] == [(None, v1), (v1, v2)]
    # a history cut short anyway (by hand, or by an older version): rollback says the two are out of step
    history_file.write_text(json.dumps(json.loads(history_file.read_text())[:1]))
    code, err = run(["rollback", "--label", "stable", *common], capsys)
    assert code == 2 and f"is on version {v2}" in err and f"put it on {v1}" in err and "out of step" in err, err


def test_a_history_that_cannot_be_written_puts_the_config_back_and_says_why(tmp_path, monkeypatch, capsys):
    """A full disk when the history is written, after the label was: the error had been the bare OSError (error:
    [Errno 28] No space left on device), read as nothing changed, with the label moved unrecorded in the config (a
    rollback then refused as out of step). The config is put back as it was, and if that fails too, the error says
    the label moved, not recorded."""
    import errno

    serving_dir, (v1, v2) = pushed(tmp_path, n=2)
    common = ["--serving-dir", str(serving_dir), "--server-url", ""]
    config_file = tmp_path / "models" / "models.config"
    history_file = tmp_path / "models" / "models.config.history.json"
    assert releases.main(["promote", str(v1), "--label", "stable", *common]) == 0
    before, history = config_file.read_bytes(), history_file.read_bytes()
    real_write = releases.atomic_write
    full = {str(history_file)}

    def disk_full(path, data):
        if path in full:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)
    monkeypatch.setattr(releases, "atomic_write", disk_full)
    code, err = run(["promote", str(v2), "--label", "stable", *common], capsys)
    assert code == 2 and err.splitlines()[-1] == (
        f"error: cannot write the label history {history_file} (No space left on device): label 'stable' left "
        f"unchanged and {config_file} put back as it was"), err
    assert config_file.read_bytes() == before and history_file.read_bytes() == history
    # the config cannot be put back either: the label moved, not recorded (a rollback would find them out of step)
    def cannot_put_back(*args):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(releases, "_restore", cannot_put_back)
    code, err = run(["promote", str(v2), "--label", "stable", *common], capsys)
    assert code == 2 and err.splitlines()[-1] == (
        f"error: cannot write the label history {history_file} (No space left on device): label 'stable' moved to "
        f"{v2} in {config_file} (not recorded), and it could not be put back (No space left on device)"), err
    assert history_file.read_bytes() == history
    (model,) = releases.load_config(str(config_file)).model_config_list.config
    assert model.version_labels["stable"] == v2
    # a rollback after a failed history write: the config put back, the history as it was
    monkeypatch.undo()
    for version in (v1, v2):   # back in step
        assert releases.main(["promote", str(version), "--label", "stable", *common]) == 0
    before, history = config_file.read_bytes(), history_file.read_bytes()
    monkeypatch.setattr(releases, "atomic_write", disk_full)
    code, err = run(["rollback", "--label", "stable", *common], capsys)
    assert code == 2 and "cannot write the label history" in err and "left unchanged" in err, err
    assert config_file.read_bytes() == before and history_file.read_bytes() == history


def test_a_label_on_a_version_the_server_has_not_loaded_is_explained_with_the_servers_flag(tmp_path, capsys):
    """canary on a version that failed to load (set with the file alone). A server without
    --allow_version_labels_for_unavailable_models refuses every config carrying it: the wait runs out and says why
    (it had blamed stable's own version). One with the flag applies it (a label new to it): promote had been refused
    up front, saying TF Serving refuses such a config, though this server would not."""
    serving_dir, config_file = tmp_path / "letters", tmp_path / "models.config"
    testing.publish_version(str(serving_dir), 1)
    testing.publish_version(str(serving_dir), 2)
    releases.ensure_config(str(config_file), str(serving_dir))                       # serves 2
    base = config_file.read_bytes()
    why = ("TF Serving refuses a whole config with a label on a version it has not loaded, unless it "
           "runs with --allow_version_labels_for_unavailable_models")   # after "label 'canary' names version 3, <state> (..):"
    started = dict(model_config_file=str(config_file), model_config_file_poll_wait_seconds=0.2,
                   file_system_poll_wait_seconds=0.2, max_num_load_retries=0)

    def canary_on_a_version_that_fails_to_load():
        # a SavedModel that parses, with its variables, without a serving graph: a load fails
        shutil.copytree(serving_dir / "1" / "variables", serving_dir / "3" / "variables", dirs_exist_ok=True)
        (serving_dir / "3" / "saved_model.pb").write_bytes(saved_model_pb2.SavedModel(
            meta_graphs=[meta_graph_pb2.MetaGraphDef()]).SerializeToString())
        (tmp_path / "models.config.history.json").unlink(missing_ok=True)
        assert releases.set_label(str(config_file), "canary", 3, str(serving_dir)) is None   # the file alone
        return config_file.read_bytes()
    with testing.start_server(**started) as server:
        before = canary_on_a_version_that_fails_to_load()
        capsys.readouterr()
        try:
            releases.set_label(str(config_file), "stable", 1, str(serving_dir), server_url=server.url, timeout=1)
        except ValueError as err:
            assert str(err).startswith(f"version 1 did not become AVAILABLE on {server.url} within 1 s") and \
                "it may not have applied the config: label 'canary' names version 3, " in str(err) and \
                why in str(err) and "put back as it was" in str(err), err
        else:
            raise AssertionError("the server applied a config it refuses")
        assert "note: label 'canary' names version 3, " in capsys.readouterr().err
        assert config_file.read_bytes() == before
    config_file.write_bytes(base)
    shutil.rmtree(serving_dir / "3")   # the latest version: the base config would serve it at start
    with testing.start_server(**started, allow_version_labels_for_unavailable_models=True) as server:
        canary_on_a_version_that_fails_to_load()
        assert releases.set_label(str(config_file), "stable", 1, str(serving_dir), server_url=server.url,
                                  timeout=60) is None
        assert releases.label_version(server.url, "letters", "stable") == 1


def test_a_failed_load_error_of_several_lines_is_shown_in_one(monkeypatch):
    connection = releases.RestConnection("http://127.0.0.1:9")
    body = {"model_version_status": [{"version": "7", "state": "END", "status": {
        "error_code": "INVALID_ARGUMENT", "error_message": "Loading failed:\n\t [[{{node serve}}]]\n"}}]}
    monkeypatch.setattr(connection, "request", lambda *args: (200, body))
    try:
        releases._wait_available(connection, "http://127.0.0.1:9", "letters", 7, timeout=60)
    except ValueError as err:
        assert str(err).endswith("failed to load on http://127.0.0.1:9: INVALID_ARGUMENT: Loading failed: "
                                 "[[{{node serve}}]]"), err
    else:
        raise AssertionError("the wait did not end")


def test_a_repeated_promote_with_no_server_running_says_so_at_once(tmp_path, monkeypatch, capsys):
    """The label already on the version, no server: the wait for the label had taken an unreachable server for one
    not serving the label, waited its whole timeout (120 s) and said the server had not applied the config."""
    serving_dir, (v1,) = pushed(tmp_path)
    assert run(["promote", str(v1), "--label", "stable", "--serving-dir", str(serving_dir), "--server-url", ""],
               capsys)[0] == 0
    no_server = f"http://127.0.0.1:{testing.free_port()}"
    monkeypatch.setattr(releases.time, "sleep", lambda seconds: (_ for _ in ()).throw(AssertionError("waited")))
    code, err = run(["promote", str(v1), "--label", "stable", "--serving-dir", str(serving_dir),
                     "--server-url", no_server], capsys)
    assert code == 2 and f"cannot reach the model server at {no_server}" in err, err
    try:   # the wait after the label moved tells an unreachable server apart too
        releases._wait_label(releases.RestConnection(no_server, timeout=5), no_server, "letters", "stable", v1, 120,
                             "models.config", {"stable": v1})
    except ValueError as err:
        assert str(err).startswith(f"cannot reach the model server at {no_server} to see it serve label 'stable' "
                                   f"at version {v1}"), err
    else:
        raise AssertionError("the wait did not end")


def test_a_stop_before_the_label_is_written_says_it_is_left_unchanged(tmp_path, monkeypatch, capsys):
    """SIGTERM just before the stops are held (interrupts_held not yet in force): nothing of the label's change is
    written, promote had said the label moved (and recorded)."""
    import contextlib
    import os
    import signal

    serving_dir, (v1, v2) = pushed(tmp_path, n=2)
    config_file = tmp_path / "models" / "models.config"
    history_file = tmp_path / "models" / "models.config.history.json"
    assert releases.main(["promote", str(v1), "--label", "stable", "--serving-dir", str(serving_dir),
                          "--server-url", ""]) == 0
    before, history = config_file.read_bytes(), history_file.read_bytes()

    @contextlib.contextmanager
    def stopped_before_holding():
        os.kill(os.getpid(), signal.SIGTERM)   # raises here, as the stop arriving before the handlers would
        yield
    monkeypatch.setattr(releases, "interrupts_held", stopped_before_holding)
    code, err = run(["promote", str(v2), "--label", "stable", "--serving-dir", str(serving_dir), "--server-url", ""],
                    capsys)
    assert code == 130 and err.splitlines()[-1] == (f"interrupted: label 'stable' left unchanged and {config_file} "
                                                    "as it was"), err
    assert config_file.read_bytes() == before and history_file.read_bytes() == history
    # with a server, the first step's config (v2 loaded beside) is put back
    monkeypatch.setattr(releases, "version_status", lambda *args: ("NOT_TRACKED", None))
    monkeypatch.setattr(releases, "_wait_available", lambda *args, **kwargs: None)
    code, err = run(["promote", str(v2), "--label", "stable", "--serving-dir", str(serving_dir),
                     "--server-url", "http://127.0.0.1:9"], capsys)
    assert code == 130 and err.splitlines()[-1] == (f"interrupted: label 'stable' left unchanged and {config_file} "
                                                    "put back as it was"), err
    assert config_file.read_bytes() == before and history_file.read_bytes() == history


def test_promote_into_a_serving_dir_that_does_not_exist_says_so_without_the_servers_log_lines(tmp_path, caplog,
                                                                                               capsys):
    """A tool listing versions for its user does not log as the model server's poller does: promote had logged ERROR
    FileSystemStoragePathSource encountered a filesystem access error before its own error."""
    import logging
    caplog.set_level(logging.DEBUG, logger="serving")
    missing = tmp_path / "missing"
    assert releases.main(["promote", "3", "--serving-dir", str(missing), "--config", str(tmp_path / "models.config"),
                          "--server-url", ""]) == 2
    assert capsys.readouterr().err == f"error: the serving dir {missing} does not exist\n"
    assert [r.getMessage() for r in caplog.records if r.name.startswith("serving")] == []


def test_a_serving_dir_that_is_a_file_or_missing_is_named_so(tmp_path, capsys):
    """list had said a regular file does not exist, and promote that version 1 is not in it (or in a missing
    folder): a serving dir that cannot be read is no serving dir without that version."""
    a_file = tmp_path / "letters"
    a_file.write_text("x")
    common = ["--config", str(tmp_path / "models.config"), "--metadata-path", str(tmp_path / "none.db"),
              "--server-url", ""]
    for serving_dir, why in ((a_file, "is not a folder"), (tmp_path / "missing", "does not exist")):
        for command in (["list"], ["promote", "1"], ["rollback"]):
            code, err = run([*command, "--serving-dir", str(serving_dir), *common], capsys)
            if command == ["rollback"]:   # no promotion recorded: said first, as before
                assert code == 2 and "has no promotion to roll back" in err, err
                continue
            assert (code, err) == (2, f"error: the serving dir {serving_dir} {why}"), (command, err)
    assert not (tmp_path / "models.config").exists()


def test_a_label_change_keeps_the_comments_the_config_starts_with(tmp_path, capsys):
    """serving/README.md has promote edit the tracked serving/deploy/models.config: rewritten from its parsed proto,
    it had lost its comment header (what the placeholders are, the server's flag for them)."""
    from core import configs

    serving_dir, (v1, v2) = pushed(tmp_path, 2)
    config_file = tmp_path / "models" / "models.config"
    shipped = (configs.PROJECT_ROOT / "serving" / "deploy" / "models.config").read_text()
    header = shipped[:shipped.index("model_config_list")]
    assert header.startswith("# ") and header.count("\n") >= 5
    config_file.write_text(shipped.replace('"/models/letters"', f'"{serving_dir}"'))
    common = ["--serving-dir", str(serving_dir), "--server-url", ""]
    for argv in (["promote", str(v1)], ["promote", str(v2)], ["rollback"]):
        code, err = run([*argv, "--label", "stable", *common], capsys)
        assert code == 0, err
        text = config_file.read_text()
        assert text.startswith(header) and text.count("#") == header.count("#"), text
        assert releases.load_config(str(config_file)).model_config_list.config[0].version_labels["stable"] in (v1, v2)
    assert releases._leading_comments("  \n# one\n\n#two\nmodel_config_list {\n# inside\n}\n") == "  \n# one\n\n#two\n"
    assert releases._leading_comments("model_config_list {}\n# after\n") == ""
    assert releases._leading_comments("# no newline at the end") == "# no newline at the end\n"


def test_the_label_history_and_lock_beside_the_tracked_config_are_ignored_by_git(tmp_path):
    import subprocess
    from core import configs
    deploy = "serving/deploy/models.config"
    ignored = subprocess.run(["git", "check-ignore", "--no-index", f"{deploy}.history.json", f"{deploy}.lock", deploy],
                             cwd=configs.PROJECT_ROOT, capture_output=True, text=True).stdout.split()
    assert ignored == [f"{deploy}.history.json", f"{deploy}.lock"]


def test_the_wait_for_a_label_says_what_the_server_does_with_it(monkeypatch, capsys):
    """The wait's line and its timeout speak of the label: a server that maps it nowhere yet "has no label", where
    "it serves no version" had read as a server serving nothing while it served the version being labelled."""
    mapped = {"stable": None, "canary": 3}
    monkeypatch.setattr(releases, "label_version", lambda server, model, label: mapped[label])
    monkeypatch.setattr(releases, "version_state", lambda server, model, version: "AVAILABLE")
    monkeypatch.setattr(releases, "unavailable_labels", lambda server, model, labels: {})
    monkeypatch.setattr(releases, "_polls", lambda: iter([(0.0, True), (5.0, False)]))
    for label, now in (("stable", "has no label 'stable'"), ("canary", "serves label 'canary' at version 3")):
        try:
            releases._wait_label(None, "http://x", "letters", label, 7, 1, "models.config", {label: 7})
        except ValueError as err:
            assert f"the server at http://x still {now} after 1 s" in str(err)
        else:
            raise AssertionError("the wait ended though the server never served the label at version 7")
        assert f"to serve label {label!r} at version 7 (it still {now}; 0 of 1 s)" in capsys.readouterr().err
