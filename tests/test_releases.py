"""pipeline.releases without a running server: the config beside the serving dir, created for the demo server
and then edited by promote/rollback."""
from components import atomic_pusher
from pipeline import releases
from serving import testing
from tests.test_atomic_pusher import fake_model


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
    v1, _ = atomic_pusher.push_model(fake_model(tmp_path / "m1", b"one"), str(serving_dir))
    v2, _ = atomic_pusher.push_model(fake_model(tmp_path / "m2", b"two"), str(serving_dir))
    no_server = f"http://127.0.0.1:{testing.free_port()}"
    common = ["--serving-dir", str(serving_dir), "--server-url", no_server]
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
