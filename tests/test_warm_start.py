"""--base-model: the Trainer starts from an exported letters model's network (models.warm_start); pretraining:
from the network of a pretrainer in the same run (--pretrain-root)."""
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.configs import Config
from models import warm_start
from tests.conftest import run_pipeline

pytestmark = pytest.mark.slow   # needs the shared pipeline runs' pushed model


def kernels(model_dir) -> dict:
    """The network's trainable kernels as stored in a SavedModel's checkpoint."""
    import tensorflow as tf
    reader = tf.train.load_checkpoint(f"{model_dir}/variables/variables")
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith("model/") and "/kernel/" in name and "OPTIMIZER_SLOT" not in name}


def test_the_weights_are_the_served_networks(pushed_model_dir):
    import tensorflow as tf
    from core import configs
    from models import export, network
    hp = Config()
    restored = network.build_model(hp.architecture, hp.image_size, hp.dropout, hp.conv_widths)
    fresh_weights = restored.get_weights()
    restored.set_weights(warm_start.network_weights(pushed_model_dir, hp))
    served = tf.saved_model.load(pushed_model_dir)
    example = tf.train.Example(features=tf.train.Features(feature={configs.IMAGE_KEY: tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[export.warmup_image()]))})).SerializeToString()
    examples = tf.constant([example])
    image = served.signatures[configs.TRANSFORM_SIGNATURE](examples=examples)[configs.TRANSFORMED_IMAGE_KEY]
    expected = served.signatures[configs.SERVING_DEFAULT_SIGNATURE](examples=examples)[configs.PROBABILITIES_OUTPUT]
    got = restored(tf.reshape(image, [-1, hp.image_size, hp.image_size, 1]), training=False)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)
    assert not all(np.array_equal(a, b) for a, b in zip(fresh_weights, restored.get_weights()))


def test_a_folder_without_a_model_or_with_another_network_is_refused(pushed_model_dir, tmp_path):
    with pytest.raises(warm_start.BaseModelError, match="no saved_model.pb there"):
        warm_start.network_weights(str(tmp_path), Config())
    with pytest.raises(warm_start.BaseModelError, match="does not hold the vgg network"):
        warm_start.network_weights(pushed_model_dir, Config(architecture="vgg"))
    with pytest.raises(warm_start.BaseModelError, match="with channels 8,16,32"):
        warm_start.network_weights(pushed_model_dir, Config(conv_widths="8,16,32"))
    half_written = tmp_path / "half"
    shutil.copytree(pushed_model_dir, half_written)
    shutil.rmtree(half_written / "variables")
    with pytest.raises(warm_start.BaseModelError, match=r"is incomplete \(no variables/variables.index\)"):
        warm_start.network_weights(str(half_written), Config())


def test_the_path_tfx_derives_from_an_imported_model_leads_to_the_model(pushed_model_dir):
    assert warm_start.model_dir(f"{pushed_model_dir}/Format-Serving") == pushed_model_dir
    assert warm_start.model_dir(pushed_model_dir) == pushed_model_dir


def test_a_serving_dir_stands_for_its_newest_version(pushed_model_dir, tmp_path):
    from core.model_dirs import resolve_model_dir
    for version in ("3", "12", "7"):
        shutil.copytree(pushed_model_dir, tmp_path / version)
    (tmp_path / "99").mkdir()                      # no model in it: not a version
    (tmp_path / "40.partial").mkdir()
    assert resolve_model_dir(str(tmp_path)) == str(tmp_path / "12")
    assert resolve_model_dir(str(tmp_path / "3")) == str(tmp_path / "3")
    with pytest.raises(FileNotFoundError, match="holds no SavedModel"):
        resolve_model_dir(str(tmp_path / "99"))
    shutil.copytree(pushed_model_dir, tmp_path / "015")   # the folder as named, not "15"
    assert resolve_model_dir(str(tmp_path)) == str(tmp_path / "015")
    # At run time, where a remote --base-model is first read (tf.io.gfile: gs://, file://), in the path TFX derives
    # from the imported artifact as well.
    url = f"file://{tmp_path}"
    assert warm_start.model_dir(url) == warm_start.model_dir(f"{url}/Format-Serving") == f"{url}/015"
    with pytest.raises(warm_start.BaseModelError, match="no saved_model.pb there"):
        warm_start.model_dir(f"file://{tmp_path}/99/Format-Serving")


def test_the_digest_follows_the_models_variables(pushed_model_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(pushed_model_dir, copy)
    assert warm_start.digest(str(copy)) == warm_start.digest(pushed_model_dir)
    data = next((copy / "variables").glob("variables.data-*"))
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    assert warm_start.digest(str(copy)) != warm_start.digest(pushed_model_dir)


def test_a_model_whose_graphs_are_stored_as_text_is_a_base_model(pushed_model_dir, tmp_path):
    """A version holding saved_model.pbtxt is served, and a serving dir stands for it: as a --base-model it had
    passed the runner's check, then building the pipeline failed reading its saved_model.pb."""
    from tests.support.serving import store_as_text
    shutil.copytree(pushed_model_dir, tmp_path / "5")
    store_as_text(str(tmp_path / "5"))
    assert warm_start.model_dir(str(tmp_path)) == str(tmp_path / "5")
    assert warm_start.model_dir(f"file://{tmp_path}/5/Format-Serving") == f"file://{tmp_path}/5"
    assert warm_start.digest(str(tmp_path)) == warm_start.digest(str(tmp_path / "5")) != warm_start.digest(
        pushed_model_dir)
    assert all(np.array_equal(a, b) for a, b in zip(warm_start.network_weights(str(tmp_path), Config()),
                                                     warm_start.network_weights(pushed_model_dir, Config())))


def test_the_pipeline_trains_from_the_base_models_network(tiny_dataset, pushed_model_dir, tmp_path):
    # A learning rate too small to move a weight: the new model's kernels are still the base model's.
    serving_dir = str(Path(pushed_model_dir).parent)   # its newest version is the one the run starts from
    summary, proc = run_pipeline(tiny_dataset, tmp_path, "--epochs", "1", "--learning-rate", "1e-12",
                                 "--accuracy-floor", "0.0", "--base-model", serving_dir)
    assert f"Trainer: starting from the network of {pushed_model_dir}" in proc.stdout
    assert f"parameters, starting from the network of {pushed_model_dir}" in proc.stdout   # the final summary
    assert summary["training"]["base_model"] == pushed_model_dir and summary["pushed"] is True
    base, new = kernels(pushed_model_dir), kernels(summary["pushed_destination"])
    assert base.keys() == new.keys() and len(base) > 5
    assert all(np.allclose(base[name], new[name], atol=1e-6) for name in base)
    # Without it, the same run starts at random: its kernels are not the base model's.
    summary, proc = run_pipeline(tiny_dataset, tmp_path, "--epochs", "1", "--learning-rate", "1e-12",
                                 "--accuracy-floor", "0.0", "--max-regression", "1.0")
    assert summary["training"]["base_model"] == "" and "starting from the network" not in proc.stdout
    fresh = kernels(summary["pushed_destination"])
    assert not all(np.allclose(base[name], fresh[name], atol=1e-6) for name in base)


def test_the_runner_refuses_a_base_model_of_another_network_before_it_starts(tiny_dataset, pushed_model_dir,
                                                                            tmp_path):
    _, proc = run_pipeline(tiny_dataset, tmp_path, "--architecture", "vgg", "--base-model", pushed_model_dir,
                           check=False)
    assert proc.returncode == 2
    assert "--base-model: base model" in proc.stderr and "does not hold the vgg network" in proc.stderr
    assert not (tmp_path / "pipeline").exists()
    _, proc = run_pipeline(tiny_dataset, tmp_path, "--base-model", str(tmp_path), check=False)
    assert proc.returncode == 2 and f"--base-model: {tmp_path} holds no SavedModel" in proc.stderr


def test_the_pipeline_trains_from_a_pretrainers_network_and_keeps_it_cached(tiny_dataset, tmp_path):
    from pipeline import generate_letters
    from pipeline.run_summary import last_run
    generate_letters.generate(tmp_path / "pre", per_class=2, seed=11, progress=False)
    data = shutil.copytree(tiny_dataset, tmp_path / "data")
    summary, proc = run_pipeline(data, tmp_path, "--epochs", "1", "--accuracy-floor", "0.0",
                                 "--pretrain-root", str(tmp_path / "pre"))
    pretrainer = tmp_path / "pipeline" / "pretrainer" / "model"
    assert f"Pretraining: the network first trains 12 epochs on {tmp_path / 'pre'}" in proc.stdout
    assert "Pretrainer: training budget: 12 epochs" in proc.stdout
    assert f"Trainer: starting from the network of {pretrainer}/" in proc.stdout
    assert summary["pretraining"]["epochs"] == 12 and summary["training"]["epochs"] == 1
    assert summary["training"]["base_model"].startswith(str(pretrainer))
    assert "starting from the pretrained network" in proc.stdout and summary["pushed"] is True
    ran = last_run(str(tmp_path / "pipeline" / "metadata.sqlite"))["components"]
    assert {"pretrain_example_gen", "pretrain_schema_gen", "pretrain_transform", "pretrainer", "Trainer"} <= set(ran)
    # The pretrainer trains on the pretraining folder's 54 letters, the Trainer on the run's 216.
    assert 0 < summary["pretraining"]["train_examples"] <= 54 < summary["training"]["train_examples"]
    # New data of the run's own (here: one image less) leaves the pretraining cached.
    next(Path(data).glob("alef/*.png")).unlink()
    summary, proc = run_pipeline(data, tmp_path, "--epochs", "1", "--accuracy-floor", "0.0", "--max-regression", "1.0",
                                 "--pretrain-root", str(tmp_path / "pre"))
    states = summary["components"]
    pretraining = {name: state for name, state in states.items() if name.startswith("pretrain")}
    assert len(pretraining) == 5 and set(pretraining.values()) == {"cached"}, states
    assert states["ImageExampleGen"] != "cached" and states["Trainer"] != "cached"
    assert "Pretrainer:" not in proc.stdout and f"starting from the network of {pretrainer}/" in proc.stdout


def test_a_version_whose_graphs_are_stored_as_text_is_kept_as_the_one_first_stood_for(tmp_path):
    """A pinned version holding saved_model.pbtxt (a --base-model since the server serves it) had not been found:
    the next run started from the serving dir's newest version instead, and recorded that."""
    import local_runner
    from core import configs

    serving = tmp_path / "serving"
    for version in (1, 2, 3):
        (serving / str(version)).mkdir(parents=True)
        (serving / str(version) / "saved_model.pbtxt").write_text("meta_graphs {}")
        if version == 2:
            config = configs.Config(pipeline_root=str(tmp_path), base_model=str(serving / "2"))   # as resolved
            local_runner.pinned_base_model(config, str(serving))
    assert local_runner.kept_base_model(str(tmp_path), str(serving))[0] == str(serving / "2")


def test_a_serving_dir_as_base_model_keeps_the_version_it_first_stood_for(tmp_path, capsys):
    """Each run pushed into the serving dir it started from, so the next unchanged run started from that new
    version, trained and pushed again; the version a serving dir stands for is now kept per pipeline root."""
    import local_runner
    from core import configs

    serving, root = tmp_path / "serving", str(tmp_path / "p")
    for version in (1, 2):
        (serving / str(version)).mkdir(parents=True)
        (serving / str(version) / "saved_model.pb").write_bytes(b"x")
    (tmp_path / "p").mkdir()
    assert local_runner.kept_base_model(root, str(serving)) is None
    config = configs.Config(pipeline_root=root, base_model=str(serving / "2"))   # as resolved: the newest
    local_runner.pinned_base_model(config, str(serving))
    assert "the newest version of" in capsys.readouterr().out
    (serving / "3").mkdir()
    (serving / "3" / "saved_model.pb").write_bytes(b"x")
    assert local_runner.kept_base_model(root, str(serving))[0] == str(serving / "2")
    local_runner.pinned_base_model(config, str(serving))
    assert "when" in capsys.readouterr().out
    shutil.rmtree(serving / "2")                                          # gone: the newest again, recorded
    assert local_runner.kept_base_model(root, str(serving)) is None
    newest = config.replace(base_model=str(serving / "3"))
    local_runner.pinned_base_model(newest, str(serving))
    assert local_runner.kept_base_model(root, str(serving))[0] == str(serving / "3")
    local_runner.pinned_base_model(newest.replace(base_model=str(serving / "1")), str(serving / "1"))   # as given
    assert local_runner.kept_base_model(root, str(serving))[0] == str(serving / "3")
    (tmp_path / "q").mkdir()
    assert local_runner.kept_base_model(str(tmp_path / "q"), str(serving)) is None


def test_a_base_model_exported_with_or_without_the_optimizers_state_gives_its_network(tmp_path, monkeypatch):
    """The export holds the network's weights only; a model exported before, with the optimizer's state beside
    them (the compiled model as the module's ``model``), still gives its network. One seed, one network."""
    import tensorflow as tf
    from models import export
    from tests.support import exports
    trained = exports.export_trained(str(tmp_path / "weights_only"))
    with monkeypatch.context() as patched:
        patched.setattr(export, "serving_network", lambda model: model)
        exports.export_trained(str(tmp_path / "with_optimizer"))
    for name, optimizer in (("weights_only", False), ("with_optimizer", True)):
        stored = tf.train.load_checkpoint(str(tmp_path / name / "variables" / "variables")).get_variable_to_shape_map()
        assert any(key.startswith("model/optimizer/") for key in stored) == optimizer
        weights = warm_start.network_weights(str(tmp_path / name), exports.SMALL)
        assert len(weights) == len(trained.get_weights())
        assert all(np.array_equal(a, b) for a, b in zip(weights, trained.get_weights()))


def test_a_base_model_whose_variables_are_damaged_or_cut_short_cannot_be_read(tmp_path, capsys):
    """A data file cut short had ended the runner in TensorFlow's traceback (IndexError: Read less bytes than
    requested), and one whose bytes changed was said not to hold the network of this run's settings (Checksum does
    not match): each is a model whose variables cannot be read, before the pipeline starts and in the Trainer."""
    import local_runner
    from tests.support import exports
    exports.export_trained(str(tmp_path / "model"))

    def damaged(name, change):
        folder = tmp_path / name
        shutil.copytree(tmp_path / "model", folder / "1")
        data = next((folder / "1" / "variables").glob("variables.data-*"))
        data.write_bytes(change(data.read_bytes()))
        return folder

    def flipped(raw: bytes) -> bytes:
        raw = bytearray(raw)
        raw[len(raw) // 2] ^= 0xFF
        return bytes(raw)

    for folder in (damaged("half", lambda raw: raw[:len(raw) // 2]), damaged("short", lambda raw: raw[:1000]),
                   damaged("flipped", flipped)):
        unreadable = f"cannot read the variables of {folder / '1'} (damaged or cut short): "
        with pytest.raises(warm_start.BaseModelError) as caught:   # the Trainer, as a remote --base-model is read
            warm_start.network_weights(f"file://{folder}/1/Format-Serving", exports.SMALL)
        assert str(caught.value).startswith(unreadable.replace(str(folder), f"file://{folder}"))
        with pytest.raises(SystemExit) as caught:   # a serving dir: its newest version
            local_runner.parse_args(["--base-model", str(folder), "--pipeline-root", str(tmp_path / "p")])
        err = capsys.readouterr().err
        assert caught.value.code == 2 and f"error: --base-model: {unreadable}" in err, err
        assert "settings of this run" not in err and "Traceback" not in err
    # The model itself is read; another network is still said to be one.
    assert len(warm_start.network_weights(str(tmp_path / "model"), exports.SMALL)) > 5
    with pytest.raises(warm_start.BaseModelError, match=r"does not hold the resnet network with channels 4,16 \(the "
                                                        r"settings of this run\)"):
        warm_start.network_weights(str(tmp_path / "model"), exports.SMALL.replace(conv_widths="4,16"))


def test_the_version_a_pipeline_root_keeps_is_the_one_checked_before_the_run(tmp_path, capsys):
    """A serving dir as --base-model had been checked at its newest version before the run, while the run started
    from the version the pipeline root had recorded: a damaged recorded version failed in the Trainer, a damaged
    newest one refused a run that would not read it, and another network recorded was not told either."""
    import json
    import local_runner
    from core.configs import Config
    from tests.support import exports
    serving, root = tmp_path / "serving", tmp_path / "p"
    exports.export_trained(str(serving / "1"))
    shutil.copytree(serving / "1", serving / "2")
    root.mkdir()
    (root / local_runner.BASE_MODEL_RECORD).write_text(json.dumps({str(serving): str(serving / "1")}))
    argv = ["--base-model", str(serving), "--pipeline-root", str(root), "--conv-widths", exports.SMALL.conv_widths]

    def cut_short(version: str) -> bytes:
        data = next((serving / version / "variables").glob("variables.data-*"))
        raw = data.read_bytes()
        data.write_bytes(raw[:len(raw) // 2])
        return raw

    def refused(problem: str) -> str:
        with pytest.raises(SystemExit) as caught:
            local_runner.parse_args(argv)
        err = capsys.readouterr().err
        assert caught.value.code == 2 and f"error: --base-model: {problem}" in err, err
        return err

    raw = cut_short("1")   # the recorded version: refused before the run, and said to be the one recorded
    err = refused(f"cannot read the variables of {serving / '1'} (damaged or cut short)")
    assert str(root / local_runner.BASE_MODEL_RECORD) in err
    next((serving / "1" / "variables").glob("variables.data-*")).write_bytes(raw)
    cut_short("2")         # the newest, which the run does not read
    config, _ = local_runner.parse_args(argv)
    assert config.base_model == str(serving / "1")
    shutil.rmtree(serving / "1")   # another network recorded: refused as such
    exports.export_trained(str(serving / "1"), Config(conv_widths="8,8", augment=False))
    refused(f"base model {serving / '1'} does not hold the {config.architecture} network with channels 4,8")


def test_a_file_url_base_model_is_its_local_path(tmp_path, capsys):
    """--base-model file:///… had been taken for a remote path: not checked before the run (another network, a
    missing path, a version without its variables went through ExampleGen … Transform and failed in the Trainer),
    not hashed into the Trainer's cache key and, for a serving dir, not pinned in base_model.json. It is the local
    path it names, from the flag or LETTERS_BASE_MODEL, read as that path is."""
    import json
    import local_runner
    from pipeline.pipeline import base_model_key
    from tests.support import exports
    from tests.support.serving import publish_version
    other, letters, root = tmp_path / "other", tmp_path / "letters", tmp_path / "p"
    publish_version(str(other), 1)   # a SavedModel of another network
    publish_version(str(tmp_path / "cut"), 1, without_variables=True)

    def refused(argv: list[str], problem: str) -> None:
        with pytest.raises(SystemExit) as caught:
            local_runner.parse_args([*argv, "--pipeline-root", str(root)])
        err = capsys.readouterr().err
        assert caught.value.code == 2 and f"error: --base-model: {problem}" in err, err

    refused(["--base-model", f"file://{other}"], f"base model {other / '1'} does not hold the")
    refused(["--base-model", f"file://{other}/1"], f"base model {other / '1'} does not hold the")
    refused(["--base-model", f"file://{tmp_path}/none"], f"{tmp_path / 'none'}")
    refused(["--base-model", f"file://{tmp_path}/cut/1"], f"{tmp_path / 'cut' / '1'} is incomplete")
    exports.export_trained(str(letters / "3"))
    argv = ["--base-model", f"file://{letters}", "--pipeline-root", str(root), "--conv-widths",
            exports.SMALL.conv_widths]
    config, args = local_runner.parse_args(argv)
    assert (config.base_model, args.base_model) == (str(letters / "3"), str(letters))
    assert base_model_key(config.base_model) == {"base_model_digest": warm_start.digest(str(letters / "3"))}
    root.mkdir()
    local_runner.pinned_base_model(config, args.base_model)
    assert json.loads((root / local_runner.BASE_MODEL_RECORD).read_text()) == {str(letters): str(letters / "3")}


def test_a_version_without_its_variables_index_is_no_base_model(tmp_path, capsys):
    """A newest version with saved_model.pb but no variables/variables.index (a copy caught halfway), which no
    server loads, had been the version a serving dir as --base-model stood for, refused as "damaged or cut short"
    (Unsuccessful TensorSliceReader constructor): the serving dir stands for the newest complete version, and such a
    version given by itself, or read in the Trainer, is said to be incomplete."""
    import local_runner
    from tests.support import exports
    serving = tmp_path / "serving"
    exports.export_trained(str(serving / "1"))
    shutil.copytree(serving / "1", serving / "2", ignore=shutil.ignore_patterns("variables"))
    argv = ["--pipeline-root", str(tmp_path / "p"), "--conv-widths", exports.SMALL.conv_widths]
    assert local_runner.parse_args([*argv, "--base-model", str(serving)])[0].base_model == str(serving / "1")
    with pytest.raises(SystemExit) as caught:
        local_runner.parse_args([*argv, "--base-model", str(serving / "2")])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and (f"error: --base-model: {serving / '2'} is incomplete (no "
                                       "variables/variables.index)") in err, err
    with pytest.raises(warm_start.BaseModelError) as caught:   # the Trainer, as a remote --base-model is read
        warm_start.network_weights(f"file://{serving}/2/Format-Serving", exports.SMALL)
    assert str(caught.value).startswith(f"base model file://{serving}/2 is incomplete (no variables/variables.index)")
