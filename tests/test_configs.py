"""Settings: one place, overridable by environment, and one Keras mode for every process."""
import os
import shutil
import subprocess
import sys

import pytest

from core import configs, keras_mode
from tests.conftest import ROOT


def test_environment_overrides_and_rejects_nonsense():
    config = configs.Config.from_env({"LETTERS_EPOCHS": "3", "LETTERS_AUGMENT": "false",
                                      "LETTERS_LEARNING_RATE": "0.5", "LETTERS_SERVING_DIR": "/x"})
    assert (config.epochs, config.augment, config.learning_rate, config.serving_dir) == (3, False, 0.5, "/x")
    with pytest.raises(ValueError, match="LETTERS_EPOCHS"):
        configs.Config.from_env({"LETTERS_EPOCHS": "many"})


def test_beam_args_follow_the_mode():
    assert "--direct_num_workers=1" in configs.beam_pipeline_args(configs.Config(beam_mode="in_memory"))
    args = configs.beam_pipeline_args(configs.Config(beam_mode="multi_processing", beam_workers=3))
    assert "--direct_running_mode=multi_processing" in args and "--direct_num_workers=3" in args


@pytest.mark.parametrize("mode", ["in_memory", "multi_processing"])
def test_beam_executors_do_not_package_tfx_for_the_direct_runner(mode, tmp_path, monkeypatch):
    """TFX's Beam executors add ``--extra_package=<an sdist of TFX built in a temp folder>`` unless the arguments
    already provide the dependencies; the DirectRunner runs here, so nothing may be built or left behind."""
    import tempfile
    from tfx.utils import dependency_utils
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    args = configs.beam_pipeline_args(configs.Config(beam_mode=mode))
    assert dependency_utils.make_beam_dependency_flags(args) == args
    assert list(tmp_path.iterdir()) == []


def test_every_process_uses_legacy_keras():
    import tensorflow as tf
    assert os.environ["TF_USE_LEGACY_KERAS"] == keras_mode.ENV["TF_USE_LEGACY_KERAS"] == "1"
    assert tf.keras.__name__.startswith("tf_keras")
    # Even when TensorFlow Transform is imported first in a fresh process.
    code = ("import core, tensorflow_transform, tensorflow as tf; "
            "print(tf.keras.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"})
    assert out.stdout.strip().startswith("tf_keras"), out.stderr[-2000:]


def test_a_conflicting_keras_setting_is_refused():
    code = "import core"
    env = dict(os.environ, TF_USE_LEGACY_KERAS="0")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert out.returncode != 0 and "TF_USE_LEGACY_KERAS" in out.stderr


def test_local_runner_help_documents_the_flags():
    out = subprocess.run([sys.executable, str(ROOT / "local_runner.py"), "--help"], capture_output=True,
                         text=True, cwd=ROOT)
    for flag in ("--data-root", "--pipeline-root", "--serving-dir", "--epochs", "--beam-mode", "--beam-workers"):
        assert flag in out.stdout
    text = " ".join(out.stdout.split())
    # --quiet drops the log, not the runner's own lines (it had said "only the final summary")
    assert "the runner's and the components' own lines and the final summary are still printed" in text
    # an empty --base-model on a --data-root pretrains on the built-in letters (it had said "a random start")
    assert "local runs on a --data-root pretrain on the built-in generated letters unless --no-pretrain" in text


@pytest.mark.parametrize("runner", ["local_runner", "kubeflow_runner"])
def test_both_runners_take_the_same_training_flags(runner):
    module = __import__(runner)
    argv = ["--split", "9:1", "--epochs", "3", "--batch-size", "48", "--learning-rate", "0.01",
            "--image-size", "40", "--architecture", "vgg", "--conv-widths", "8,16", "--no-augment",
            "--accuracy-floor", "0.7", "--max-regression", "0.02", "--beam-mode", "multi_processing",
            "--beam-workers", "2"]
    config = module.parse_args(argv)[0]
    assert (config.train_buckets, config.eval_buckets, config.epochs, config.batch_size, config.learning_rate,
            config.image_size, config.architecture, config.conv_widths, config.augment, config.accuracy_floor,
            config.max_regression, config.beam_mode, config.beam_workers) == (
        9, 1, 3, 48, 0.01, 40, "vgg", "8,16", False, 0.7, 0.02, "multi_processing", 2)
    default = module.parse_args([])[0]
    assert default.replace(pipeline_root="", data_root="", serving_dir="", metadata_path="", feedback_dir="") == \
        configs.Config().replace(pipeline_root="", data_root="", serving_dir="", metadata_path="", feedback_dir="")
    for bad in (["--split", "9"], ["--split", "9:0"], ["--split", "a:b"], ["--split", "9:1:1"], ["--epochs", "-1"],
                ["--architecture", "lenet"], ["--conv-widths", "8,x"], ["--conv-widths", "8,0"],
                ["--learning-rate", "nan"], ["--learning-rate", "0"], ["--accuracy-floor", "5"],
                ["--max-regression", "-1"], ["--beam-workers", "-3"], ["--image-size", "0"]):
        with pytest.raises(SystemExit):
            module.parse_args(bad)


@pytest.mark.parametrize("runner", ["local_runner", "kubeflow_runner"])
def test_augmentation_a_setting_turned_off_is_turned_back_on_by_a_flag(runner, monkeypatch, capsys):
    """--no-augment had been the only flag, its default always False: with LETTERS_AUGMENT=0 no flag trained with
    augmentation, and the help said nothing of the variable's setting."""
    import importlib
    module = importlib.import_module(runner)
    monkeypatch.delenv("LETTERS_KUBEFLOW_IMAGE", raising=False)
    assert module.parse_args([])[0].augment is True and module.parse_args(["--no-augment"])[0].augment is False
    monkeypatch.setenv("LETTERS_AUGMENT", "0")
    assert module.parse_args([])[0].augment is False
    assert module.parse_args(["--augment"])[0].augment is True
    assert module.parse_args(["--augment", "--no-augment"])[0].augment is False
    with pytest.raises(SystemExit):
        module.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--augment, --no-augment" in text and "(default: False)" in text.split("--augment, --no-augment")[1][:120]


@pytest.mark.parametrize("field, value", [
    ("learning_rate", "inf"), ("accuracy_floor", "1.5"), ("max_regression", "-0.1"), ("beam_workers", "-1"),
    ("generate_per_class", "0"), ("generate_seed", "-1"), ("dropout", "1"), ("augment_erase", "2"),
    ("max_file_bytes", "0"), ("epochs", str(10 ** 18))])
def test_values_out_of_range_are_refused_from_the_environment_too(field, value):
    """(epochs: a count whose steps the schedule cannot hold had passed, been printed as the budget, and failed in
    the Trainer.)"""
    with pytest.raises(ValueError, match=f"{field} must be a number"):
        configs.Config.from_env({f"LETTERS_{field.upper()}": value})
    assert configs.Config.from_env({"LETTERS_ACCURACY_FLOOR": "1", "LETTERS_MAX_REGRESSION": "0"}).accuracy_floor == 1


@pytest.mark.parametrize("runner", ["local_runner", "kubeflow_runner"])
def test_a_seed_or_split_beyond_what_training_takes_is_a_usage_error_before_anything_runs(runner, monkeypatch,
                                                                                          capsys):
    """The training seed goes to tf.keras.utils.set_random_seed (numpy's 0..2**32-1) and the split's buckets into
    a uint32 field of TFX's SplitConfig: LETTERS_SEED=4294967296 had passed, the ExampleGen run, then the Trainer
    failed with a traceback (kubeflow_runner.py compiled a spec that failed in the cluster)."""
    import importlib
    module = importlib.import_module(runner)
    top = 2 ** 32 - 1
    assert configs.Config.from_env({"LETTERS_SEED": str(top)}).seed == top
    assert module.parse_args(["--split", f"{top}:1"])[0].train_buckets == top
    monkeypatch.setenv("LETTERS_SEED", str(top + 1))
    with pytest.raises(SystemExit) as caught:
        module.parse_args([])
    assert caught.value.code == 2
    assert "LETTERS_SEED='4294967296': seed must be a number >= 0 and <= 4294967295" in capsys.readouterr().err
    monkeypatch.delenv("LETTERS_SEED")
    with pytest.raises(SystemExit) as caught:
        module.parse_args(["--split", f"4:{top + 1}"])
    assert caught.value.code == 2
    assert "eval_buckets must be a number >= 1 and <= 4294967295" in capsys.readouterr().err


def test_architecture_and_widths_are_checked_when_the_config_is_made():
    with pytest.raises(ValueError, match="unknown architecture 'lenet'"):
        configs.Config.from_env({"LETTERS_ARCHITECTURE": "lenet"})
    with pytest.raises(ValueError, match="conv widths"):
        configs.Config(conv_widths="32,,64")
    out = subprocess.run([sys.executable, str(ROOT / "local_runner.py")], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, LETTERS_ARCHITECTURE="lenet"), timeout=120)
    assert out.returncode == 2 and "unknown architecture 'lenet'" in out.stderr
    # a network models.network cannot build is refused with the config, before any data is read
    with pytest.raises(ValueError, match="a resnet needs a stem width and at least one stage width"):
        configs.Config(conv_widths="32")
    with pytest.raises(ValueError, match="image size 1 is too small for the resnet"):
        configs.Config(image_size=1)
    with pytest.raises(ValueError, match="its 3 2×2 poolings need at least 8 px"):
        configs.Config(architecture="vgg", image_size=4)
    assert configs.Config(architecture="vgg", image_size=8).image_size == 8


def test_the_metadata_path_comes_from_the_environment_unless_a_flag_says(monkeypatch, tmp_path):
    import local_runner
    monkeypatch.setenv("LETTERS_METADATA_PATH", str(tmp_path / "md.sqlite"))
    assert local_runner.parse_args([])[0].metadata_file == str(tmp_path / "md.sqlite")
    assert local_runner.parse_args(["--metadata-path", str(tmp_path / "x.sqlite")])[0].metadata_file == \
        str(tmp_path / "x.sqlite")


def test_every_path_flag_expands_a_tilde_as_the_shell_would(monkeypatch, tmp_path):
    """--pipeline-root=~/p (no shell expands it there, nor in an env file) had made a folder named "~"."""
    import local_runner
    from pipeline import releases, serve_demo
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    config = local_runner.parse_args(["--pipeline-root=~/p", "--serving-dir=~/s", "--feedback-dir=~/f",
                                      "--metadata-path=~/m.sqlite"])[0]
    assert (config.pipeline_root, config.serving_dir, config.feedback_dir, config.metadata_file) == (
        str(tmp_path / "p"), str(tmp_path / "s"), str(tmp_path / "f"), str(tmp_path / "m.sqlite"))
    assert releases.main(["list", "--serving-dir=~/nothing"]) == 2          # looked for where "~" points
    assert not (tmp_path / "~").exists()
    # letters-demo-serve: a relative or "~" serving dir is found from here, though its servers run elsewhere
    assert serve_demo.main(["--serving-dir=~/nothing"]) == 2
    monkeypatch.setenv("LETTERS_WEB_PORT", "")                              # empty = unset, as everywhere
    assert serve_demo._default_web_port(None) == 8080   # (the parser only for a usage error)


def test_the_commands_around_the_pipeline_expand_a_tilde_too(monkeypatch, tmp_path, capsys):
    """letters-evaluate --out=~/r, letters-batch-predict --out=~/p.csv and letters-generate --out=~/g had made or
    looked for a folder named "~" in the current one."""
    from pipeline import batch_predict, evaluate, generate_letters
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "images").mkdir()
    assert evaluate.main(["--model=~/nothing", "--data-root=~/images", "--out=~/report"]) == 2
    assert str(tmp_path / "nothing") in capsys.readouterr().err
    assert not (tmp_path / "report").exists()   # made when a report is written, not by a run that fails
    assert batch_predict.main(["--images=~/images", "--out=~/p.csv"]) == 2
    assert f"no files under {tmp_path / 'images'}" in capsys.readouterr().err
    written = []
    monkeypatch.setattr(generate_letters, "require_faces", lambda **kwargs: [])
    monkeypatch.setattr(generate_letters, "generate", lambda out, *args, **kwargs: written.append(out))
    assert generate_letters.main(["--out=~/generated"]) == 0 and written == [str(tmp_path / "generated")]
    assert not (tmp_path / "~").exists()


def test_the_training_budget_grows_with_the_training_images_within_bounds():
    assert configs.Config().epochs == 0                       # the default: sized from the data
    epochs = [configs.sized_epochs(n) for n in range(0, 20_000, 50)]
    assert epochs == sorted(epochs)                           # more images, never fewer epochs
    assert epochs[0] == configs.MIN_EPOCHS and epochs[-1] == configs.MAX_EPOCHS
    assert configs.sized_epochs(10 * configs.IMAGES_PER_EPOCH) == max(configs.MIN_EPOCHS, 10)
    assert configs.sized_epochs(30 * configs.IMAGES_PER_EPOCH) == min(configs.MAX_EPOCHS, 30)
    demo = configs.training_budget(1728, 64)                  # 2,160 letters, 4:1 split
    assert (demo.epochs, demo.steps_per_epoch, demo.steps, demo.sized) == (12, 27, 324, True)
    for n in (1, 63, 64, 65, 3151):
        budget = configs.training_budget(n, 64)
        assert budget.steps == budget.epochs * -(-n // 64) and budget.epochs == configs.sized_epochs(n)
    assert configs.training_budget(0, 64).steps_per_epoch == 1
    for bad in ((-1, 64, 0), (100, 0, 0), (100, 64, -2)):
        with pytest.raises(ValueError):
            configs.training_budget(*bad)


def test_chosen_epochs_win_over_the_rule():
    for n in (100, 3151, 50_000):
        budget = configs.training_budget(n, 64, epochs=7)
        assert (budget.epochs, budget.sized) == (7, False)
    assert configs.Config.from_env({"LETTERS_EPOCHS": "60"}).epochs == 60
    assert configs.Config.from_env({"LETTERS_EPOCHS": "0"}).epochs == 0
    with pytest.raises(ValueError, match="epochs must be a number >= 0"):
        configs.Config.from_env({"LETTERS_EPOCHS": "-3"})
    import local_runner
    assert local_runner.parse_args(["--epochs", "0"])[0].epochs == 0


def test_the_built_in_generated_letters_train_their_own_epochs_unless_some_are_chosen(tmp_path, monkeypatch,
                                                                                     capsys):
    config = configs.Config()
    assert configs.generated_budget(config).epochs == config.generate_epochs == 12
    assert configs.generated_budget(config.replace(epochs=5)).epochs == 5
    assert configs.generated_budget(config).epochs_generated and not configs.generated_budget(
        config.replace(epochs=5)).epochs_generated
    with pytest.raises(ValueError, match="generate_epochs must be a number >= 1"):
        configs.Config.from_env({"LETTERS_GENERATE_EPOCHS": "0"})
    import local_runner
    ran = []
    monkeypatch.setattr(local_runner, "run", lambda config, **_: ran.append(config) or {})
    monkeypatch.setenv("LETTERS_DATA_ROOT", str(tmp_path / "generated"))
    monkeypatch.setenv("LETTERS_GENERATE_PER_CLASS", "1")
    monkeypatch.setenv("LETTERS_GENERATE_EPOCHS", "3")
    common = ["--pipeline-root", str(tmp_path / "p"), "--no-feedback", "--quiet"]
    assert local_runner.main(common) == 0                              # the built-in data: generated, 3 epochs
    out = capsys.readouterr().out
    assert "generated letters train 3 epochs" in out and "Data:" not in out   # no small-data hint for the built-in
    assert local_runner.main(common + ["--epochs", "2"]) == 0          # chosen epochs win
    assert local_runner.main(common + ["--data-root", str(tmp_path / "generated")]) == 0   # your data: sized
    assert [c.epochs for c in ran] == [3, 2, 0]
    # Said so, not "epochs chosen" (and --summary-json's "budget": "generated"), unless chosen.
    assert [local_runner.estimated_budget(c).basis for c in ran] == ["generated", "chosen", "sized"]
    assert local_runner.estimated_budget(ran[0]).describe(estimated=True) == (
        "training budget: 3 epochs × 1 step = 3 steps (the generated letters' epochs, generate_epochs; about 22 "
        "training images)")
    assert len(list((tmp_path / "generated").glob("*/*.png"))) == 27
    # Your own letters start from a network of the built-in ones (made if missing), unless --no-pretrain.
    from pipeline import generate_letters
    generate_letters.generate(tmp_path / "mine", per_class=1, seed=3, progress=False)
    shutil.rmtree(tmp_path / "generated")
    assert local_runner.main(common + ["--data-root", str(tmp_path / "mine")]) == 0
    out = capsys.readouterr().out
    assert "Pretraining: the network first trains 3 epochs on the built-in generated letters" in out
    assert f"Data: 27 images in {tmp_path / 'mine'}, about 1 per class." in out       # small: the better route
    assert f"`letters-feedback import {tmp_path / 'mine'}`, then `make retrain`" in out
    assert local_runner.main(common + ["--data-root", str(tmp_path / "mine"), "--no-pretrain"]) == 0
    assert [c.pretrain_root for c in ran] == ["", "", "", str(tmp_path / "generated"), ""]
    assert len(list((tmp_path / "generated").glob("*/*.png"))) == 27
    assert local_runner.main(common + ["--data-root", str(tmp_path / "mine"),
                                       "--pretrain-root", str(tmp_path / "no")]) == 2
    assert f"error: --pretrain-root {tmp_path / 'no'} is not a folder" in capsys.readouterr().err


def test_an_empty_data_or_pretrain_root_means_what_an_empty_setting_means(tmp_path, monkeypatch, capsys):
    """--data-root "" is the default (the built-in letters, made if missing, generate_epochs epochs), as an empty
    LETTERS_DATA_ROOT; --pretrain-root "" is none, as an empty Config.pretrain_root. Both had been read as the
    current directory (or the built-in letters as the user's own, not made, sized epochs)."""
    import kubeflow_runner
    import local_runner
    from pipeline import generate_letters
    ran = []
    monkeypatch.setattr(local_runner, "run", lambda config, **_: ran.append(config) or {})
    monkeypatch.setenv("LETTERS_DATA_ROOT", str(tmp_path / "generated"))
    monkeypatch.setenv("LETTERS_GENERATE_PER_CLASS", "1")
    monkeypatch.setenv("LETTERS_GENERATE_EPOCHS", "3")
    generate_letters.generate(tmp_path / "cwd", per_class=1, seed=3, progress=False)   # letters where it runs
    generate_letters.generate(tmp_path / "mine", per_class=1, seed=4, progress=False)
    monkeypatch.chdir(tmp_path / "cwd")
    common = ["--pipeline-root", str(tmp_path / "p"), "--no-feedback", "--quiet"]
    assert local_runner.main(common + ["--data-root", ""]) == 0
    assert (ran[-1].data_root, ran[-1].epochs) == (str(tmp_path / "generated"), 3)
    assert len(list((tmp_path / "generated").glob("*/*.png"))) == 27                  # made
    capsys.readouterr()
    assert local_runner.main(common + ["--data-root", str(tmp_path / "mine"), "--pretrain-root", ""]) == 0
    assert ran[-1].pretrain_root == "" and "Pretraining" not in capsys.readouterr().out
    kubeflow = kubeflow_runner.parse_args(["--data-root", "", "--pretrain-root", ""])[0]
    assert (kubeflow.data_root, kubeflow.pretrain_root) == (str(tmp_path / "generated"), "")


@pytest.mark.parametrize("runner, flag, field", [
    ("local_runner", "--pipeline-root", "pipeline_root"), ("local_runner", "--serving-dir", "serving_dir"),
    ("local_runner", "--feedback-dir", "feedback_dir"), ("local_runner", "--metadata-path", "metadata_path"),
    ("kubeflow_runner", "--pipeline-root", "pipeline_root"), ("kubeflow_runner", "--serving-dir", "serving_dir"),
    ("kubeflow_runner", "--data-root", "data_root"),
])
def test_an_empty_path_flag_is_the_default_not_the_current_directory(runner, flag, field, tmp_path, monkeypatch):
    """--pipeline-root "" (--serving-dir, --feedback-dir) had been abspath(""), the current directory: a run wrote its
    artifacts, pushed its models or read its feedback wherever it was started. It is the default, as an empty
    LETTERS_<FIELD> is: the built-in one, or a LETTERS_<FIELD> set to a path."""
    import importlib
    module = importlib.import_module(runner)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    variable = configs.ENV[field]
    for setting, default in (("", getattr(configs.Config(), field)), (str(tmp_path / "set"), str(tmp_path / "set"))):
        monkeypatch.setenv(variable, setting)
        config = module.parse_args([flag, ""])[0]
        assert getattr(config, field) == default and getattr(config, field) == getattr(module.parse_args([])[0], field)
        if field == "metadata_path":
            assert config.metadata_file == (default or os.path.join(config.pipeline_root, "metadata.sqlite"))


def test_an_empty_serving_dir_is_the_default_for_the_release_commands_too(tmp_path, monkeypatch, capsys):
    """letters-releases and letters-demo-serve --serving-dir= had listed and served the current directory."""
    from pipeline import releases, serve_demo
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("LETTERS_SERVING_DIR", str(tmp_path / "served"))
    assert releases.main(["list", "--serving-dir=", "--metadata-path=", "--config="]) == 2
    assert f"the serving dir {tmp_path / 'served'} does not exist" in capsys.readouterr().err
    assert serve_demo.main(["--serving-dir=", "--model-config-file="]) == 2
    assert f"no pushed model in {tmp_path / 'served'};" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--no-pretrain", "--pretrain-root", "{tmp}/other"],
     "--no-pretrain starts the network at random: --pretrain-root ({tmp}/other) would be ignored"),
    (["--no-feedback", "--feedback-repeat", "5"],
     "--no-feedback leaves the feedback out: --feedback-repeat (5) would be ignored"),
])
def test_local_flags_one_another_would_make_ignored_are_usage_errors(argv, message, tmp_path, monkeypatch, capsys):
    """As kubeflow_runner refuses --base-model with --pretrain-root: both had been taken, one silently dropped (the
    --pretrain-root folder not even checked)."""
    import local_runner
    ran = []
    monkeypatch.setattr(local_runner, "run", lambda config, **_: ran.append(config) or {})
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    with pytest.raises(SystemExit) as caught:
        local_runner.main(["--pipeline-root", str(tmp_path / "p"), *argv])
    assert caught.value.code == 2 and message.replace("{tmp}", str(tmp_path)) in capsys.readouterr().err
    assert not ran and not (tmp_path / "p").exists()
    # the same flags saying the same thing, or a standing LETTERS_* setting the flag overrides, are no conflict
    monkeypatch.setenv("LETTERS_FEEDBACK_REPEAT", "5")
    monkeypatch.setenv("LETTERS_PRETRAIN_ROOT", str(tmp_path / "other"))
    for agreeing in (["--no-pretrain", "--pretrain-root", ""], ["--no-feedback"], ["--no-pretrain", "--no-feedback"]):
        local_runner.parse_args(agreeing)


@pytest.mark.parametrize("runner, environ, argv, message", [
    ("local_runner", {"LETTERS_PRETRAIN_ROOT": "gs://b/pre"}, ["--no-pretrain", "--pretrain-root", "gs://b/pre"],
     "--no-pretrain starts the network at random: --pretrain-root (gs://b/pre) would be ignored"),
    ("local_runner", {"LETTERS_FEEDBACK_REPEAT": "5"}, ["--no-feedback", "--feedback-repeat", "5"],
     "--no-feedback leaves the feedback out: --feedback-repeat (5) would be ignored"),
    ("local_runner", {}, ["--no-feedback", "--feedback-repeat", "0"],
     "--no-feedback leaves the feedback out: --feedback-repeat (0) would be ignored"),
    ("local_runner", {"LETTERS_PRETRAIN_ROOT": "gs://b/pre"},
     ["--base-model", "gs://b/m/1", "--pretrain-root", "gs://b/pre"], "--pretrain-root (gs://b/pre) would be ignored"),
    ("kubeflow_runner", {"LETTERS_PRETRAIN_ROOT": "gs://b/pre"},
     ["--base-model", "gs://b/m/1", "--pretrain-root", "gs://b/pre"], "--pretrain-root (gs://b/pre) would be ignored"),
    ("kubeflow_runner", {"LETTERS_FEEDBACK_REPEAT": "3"}, ["--feedback-repeat", "3"], "it needs --feedback-root"),
    ("kubeflow_runner", {"LETTERS_BEAM_MODE": "multi_threading"},
     ["--dataflow", "--project", "p", "--region", "r", "--temp-location", "gs://b/t", "--beam-mode", "multi_threading"],
     "--beam-mode set the pods' DirectRunner"),
])
def test_a_flag_given_is_told_from_a_setting_holding_its_value(runner, environ, argv, message, monkeypatch, capsys):
    """A flag another flag makes ignored is refused whatever its value: LETTERS_PRETRAIN_ROOT=/w/pr beside
    --no-pretrain --pretrain-root /w/pr had been taken, the flag dropped, as it was told from its default by its
    value, which the variable had set (with /w/pr/ it was refused); --feedback-repeat, and kubeflow_runner's
    --feedback-repeat without --feedback-root and --beam-mode with --dataflow, likewise."""
    import importlib
    module = importlib.import_module(runner)
    monkeypatch.delenv("LETTERS_KUBEFLOW_IMAGE", raising=False)
    for variable, value in environ.items():
        monkeypatch.setenv(variable, value)
    common = ["--pipeline-root", "gs://b/root", "--serving-dir", "gs://b/serving"] if runner == "kubeflow_runner" \
        else []
    with pytest.raises(SystemExit) as caught:
        module.parse_args(common + argv)
    assert caught.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("runner", ["local_runner", "kubeflow_runner"])
def test_both_runners_refuse_pretraining_beside_a_base_model_unless_a_flag_overrides_a_setting(runner, monkeypatch,
                                                                                                 capsys):
    """The Trainer starts from --base-model's network, so letters to pretrain on would be ignored. kubeflow_runner
    refused the pair, the local runner took it and dropped --pretrain-root ("Pretraining: none"); both refuse it now,
    with one message, whether either comes from the command line or a LETTERS_* setting, except a standing
    LETTERS_PRETRAIN_ROOT that a --base-model on the command line overrides (no pretraining then)."""
    import importlib
    import local_runner
    module = importlib.import_module(runner)
    monkeypatch.delenv("LETTERS_KUBEFLOW_IMAGE", raising=False)
    common = ["--pipeline-root", "gs://b/root", "--serving-dir", "gs://b/serving"] if runner == "kubeflow_runner" \
        else []
    # each named as it was given: a flag, or a variable with its text (a flag never given had been named)
    for environ, argv, message in (
            ({}, ["--base-model", "gs://b/m/1", "--pretrain-root", "gs://b/pre"],
             "--base-model (gs://b/m/1) gives the network to start from: --pretrain-root (gs://b/pre) would be ignored"),
            ({"LETTERS_BASE_MODEL": "gs://b/m/1"}, ["--pretrain-root", "gs://b/pre"],
             "LETTERS_BASE_MODEL='gs://b/m/1' gives the network to start from: --pretrain-root (gs://b/pre) would be "
             "ignored"),
            ({"LETTERS_BASE_MODEL": "gs://b/m/1", "LETTERS_PRETRAIN_ROOT": "gs://b/pre"}, [],
             "LETTERS_BASE_MODEL='gs://b/m/1' gives the network to start from: LETTERS_PRETRAIN_ROOT='gs://b/pre' "
             "would be ignored")):
        with monkeypatch.context() as env:
            for variable, value in environ.items():
                env.setenv(variable, value)
            with pytest.raises(SystemExit) as caught:
                module.parse_args(common + argv)
        assert caught.value.code == 2 and message in capsys.readouterr().err, (environ, argv)
    monkeypatch.setenv("LETTERS_PRETRAIN_ROOT", "gs://b/pre")
    config, args = module.parse_args(common + ["--base-model", "gs://b/m/1"])[:2]
    if runner == "local_runner":
        config = local_runner.choose_pretraining(config, args, "unused")
        assert "LETTERS_PRETRAIN_ROOT=gs://b/pre is not used" in capsys.readouterr().out
    assert (config.base_model, config.pretrain_root) == ("gs://b/m/1", "")


@pytest.mark.parametrize("runner", ["local_runner", "kubeflow_runner"])
def test_a_base_model_setting_that_holds_no_model_is_named_by_its_variable(runner, tmp_path, monkeypatch, capsys):
    """LETTERS_BASE_MODEL=/nonexistent had been "error: --base-model: … holds no SavedModel", a flag never given;
    every other bad LETTERS_* value is named by its variable."""
    import importlib
    module = importlib.import_module(runner)
    monkeypatch.delenv("LETTERS_KUBEFLOW_IMAGE", raising=False)
    common = ["--pipeline-root", "gs://b/root", "--serving-dir", "gs://b/serving"] if runner == "kubeflow_runner" \
        else []
    for given, named in (([], f"LETTERS_BASE_MODEL='{tmp_path / 'none'}'"), (["--base-model", str(tmp_path / "none")],
                                                                           "--base-model")):
        monkeypatch.setenv("LETTERS_BASE_MODEL", str(tmp_path / "none"))
        with pytest.raises(SystemExit) as caught:
            module.parse_args(common + given)
        err = capsys.readouterr().err
        assert caught.value.code == 2 and f"error: {named}: {tmp_path / 'none'} holds no SavedModel" in err, err


def test_no_pretrain_beside_a_base_model_is_refused_and_overrides_a_setting(tmp_path, monkeypatch, capsys):
    """--no-pretrain --base-model M had been taken, --no-pretrain silently ignored: the Trainer started from M. A
    standing LETTERS_BASE_MODEL that --no-pretrain overrides is no conflict: the network starts at random (the
    model is not even read)."""
    import local_runner
    with pytest.raises(SystemExit) as caught:
        local_runner.parse_args(["--no-pretrain", "--base-model", "gs://b/m/1"])
    assert caught.value.code == 2 and ("--base-model (gs://b/m/1) gives the network to start from: --no-pretrain "
                                       "would be ignored; give one of the two") in capsys.readouterr().err
    monkeypatch.setenv("LETTERS_BASE_MODEL", str(tmp_path / "none"))
    config, args = local_runner.parse_args(["--data-root", str(tmp_path), "--no-pretrain"])
    config = local_runner.choose_pretraining(config, args, "unused")
    assert (config.base_model, config.pretrain_root) == ("", "")


def test_a_small_data_root_is_pointed_to_the_feedback_route(tmp_path):
    import local_runner
    from core.labels import CLASS_NAMES
    for name in CLASS_NAMES:
        (tmp_path / name).mkdir()
        for i in range(configs.SMALL_DATA_PER_CLASS):
            (tmp_path / name / f"{i}.png").write_bytes(b"x")
    config = configs.Config(data_root=str(tmp_path))
    assert local_runner.small_data_hint(config) is None            # 10 per class: not small
    (tmp_path / "alef" / "0.png").unlink()
    hint = local_runner.small_data_hint(config)                     # one fewer: small
    assert hint.startswith(f"Data: 269 images in {tmp_path}, about 10 per class. So few read other writers better "
                           "as feedback")
    assert local_runner.small_data_hint(config.replace(data_root="gs://bucket/letters")) is None   # not importable


def test_the_small_data_hint_says_how_many_classes_have_no_images(tmp_path):
    """100 images in 5 class folders of 20 each had read "about 4 per class" with no word of the 22 classes without
    any; the average stays the alphabet's, the line's reason (not 20 per class, then "So few")."""
    import local_runner
    from core.labels import CLASS_NAMES
    for name in CLASS_NAMES[:5]:
        (tmp_path / name).mkdir()
        for i in range(20):
            (tmp_path / name / f"{i}.png").write_bytes(b"x")
    (tmp_path / CLASS_NAMES[5]).mkdir()                               # an empty class folder: no images
    hint = local_runner.small_data_hint(configs.Config(data_root=str(tmp_path)))
    assert hint.startswith(f"Data: 100 images in {tmp_path}, about 4 per class (22 of the 27 classes with none). "
                           "So few")
    for name in CLASS_NAMES[1:5]:
        for i in range(20):
            (tmp_path / name / f"{i}.png").unlink()
    hint = local_runner.small_data_hint(configs.Config(data_root=str(tmp_path)))
    assert hint.startswith(f"Data: 20 images in {tmp_path}, about 1 per class (26 of the 27 classes with none). "
                           "So few")


def test_the_budget_line_says_what_was_chosen_and_from_what():
    assert configs.training_budget(3200, 64).describe() == (
        f"training budget: {configs.sized_epochs(3200)} epochs × 50 steps = {configs.sized_epochs(3200) * 50:,} "
        f"steps (sized from 3,200 training images; --epochs N to choose)")
    assert configs.training_budget(2518, 64, 60).describe(estimated=True) == (
        "training budget: 60 epochs × 40 steps = 2,400 steps (epochs chosen; about 2,518 training images)")
    assert configs.training_budget(1, 32).describe().endswith(   # "1 training images" before
        "= 12 steps (sized from 1 training image; --epochs N to choose)")


def test_the_runner_estimates_the_budget_before_the_pipeline_from_the_files(tmp_path):
    import local_runner
    from pipeline import generate_letters
    generate_letters.generate(tmp_path / "data", per_class=4, seed=3, progress=False)   # 108 images
    (tmp_path / "data" / "notes").mkdir()
    (tmp_path / "data" / "notes" / "read_me.png").write_bytes(b"x")                   # not a class folder
    (tmp_path / "data" / "alef" / "nested").mkdir()                                      # not read either
    feedback = tmp_path / "feedback"
    (feedback / "bet").mkdir(parents=True)
    for i in range(5):
        (feedback / "bet" / f"{i}.png").write_bytes(b"x")
    config = configs.Config(data_root=str(tmp_path / "data"))
    assert local_runner.estimated_budget(config) == configs.training_budget(round(108 * 4 / 5), 32)
    # 5 feedback images beside 97: 10 copies would make them about 35 % (int(0.35 * 97 / 3.25)); capped at 8
    assert local_runner.estimated_budget(config.replace(train_buckets=9), str(feedback)).train_images == 97 + 8 * 5
    assert local_runner.estimated_budget(config.replace(train_buckets=9, feedback_repeat=1),
                                         str(feedback)).train_images == 97 + 5
    assert local_runner.describe_feedback_copies(config.replace(train_buckets=9), str(feedback)) == (
        "Feedback: each image trained 8 times per epoch (copies that make the feedback about 35% of the training "
        "images, 1 to 8 each; --feedback-repeat N to choose; 40 of about 137 training images, 29%)")
    assert local_runner.describe_feedback_copies(config.replace(feedback_repeat=1), str(feedback)) == (
        "Feedback: each image trained 1 time per epoch (chosen; 5 of about 91 training images, 5%)")
    chosen = local_runner.estimated_budget(config.replace(epochs=3))
    assert chosen.describe(estimated=True) == \
        "training budget: 3 epochs × 3 steps = 9 steps (epochs chosen; about 86 training images)"


@pytest.mark.parametrize("repeat, main, feedback, copies", [
    (0, 3456, 130, 8),      # make demo's 160 writers (4:1 split) and five real letters per class: capped at 8
    (0, 3456, 374, 4),      # fourteen per class: 1,496 of 4,952, about 30 % (5 copies would be 35 %)
    (0, 1728, 130, 7),      # 80 writers and five per class: 910 of 2,638, about 35 %
    (0, 3456, 2000, 1),     # feedback 58 % the size of the rest: each once
    (0, 100, 0, 1),
    (0, 0, 10, 1),
    (5, 3456, 130, 5),      # chosen
    (1, 3456, 130, 1),
])
def test_feedback_copies_make_the_feedback_about_a_third_of_the_training_images(repeat, main, feedback, copies):
    assert configs.feedback_copies(repeat, main, feedback) == copies


def test_feedback_copies_refuse_negative_counts():
    with pytest.raises(ValueError):
        configs.feedback_copies(-1, 10, 10)
    with pytest.raises(ValueError):
        configs.feedback_copies(0, 10, -1)


def test_letters_data_root_holding_the_users_letters_is_their_data_as_for_kubeflow_runner(tmp_path, monkeypatch,
                                                                                           capsys):
    import local_runner
    from pipeline import generate_letters
    ran = []
    monkeypatch.setattr(local_runner, "run", lambda config, **_: ran.append(config) or {})
    made = local_runner.ensure_default_data

    def ensure_default_data(config):   # the project's own data/generated is not touched
        ran.append(("generated", config.data_root))
        if config.data_root.startswith(str(tmp_path)):
            made(config)
    monkeypatch.setattr(local_runner, "ensure_default_data", ensure_default_data)
    monkeypatch.setenv("LETTERS_GENERATE_PER_CLASS", "1")
    mine = tmp_path / "mine"
    generate_letters.generate(mine, per_class=1, seed=3, progress=False)
    (mine / generate_letters.MANIFEST).unlink()                         # letters of the user's, not the generator's
    monkeypatch.setenv("LETTERS_DATA_ROOT", str(mine))
    common = ["--pipeline-root", str(tmp_path / "p"), "--no-feedback", "--quiet"]
    assert local_runner.main(common) == 0
    out = capsys.readouterr().out
    assert f"LETTERS_DATA_ROOT={mine} holds letters the generator did not write" in out
    builtin = configs.Config().data_root
    assert ran[0] == ("generated", builtin)                            # pretrained on the built-in letters
    assert ran[1].data_root == str(mine) and ran[1].pretrain_root == builtin and ran[1].epochs == 0   # sized
    ran.clear()
    monkeypatch.setenv("LETTERS_DATA_ROOT", str(tmp_path / "new"))     # where the built-in letters are to be made
    assert local_runner.main(common) == 0
    assert ran[0] == ("generated", str(tmp_path / "new")) and ran[1].pretrain_root == "" and ran[1].epochs


def test_settings_the_commands_used_to_take_and_fail_on_later_are_refused_up_front(tmp_path, capsys):
    import subprocess
    import sys
    with pytest.raises(ValueError, match="beam_mode must be one of in_memory"):
        configs.Config.from_env({"LETTERS_BEAM_MODE": "bogus"})      # a flag's choices never saw the variable
    from web.config import WebConfig
    for field, value in (("idle_timeout", float("inf")), ("serving_timeout", -1.0), ("serving_timeout", float("nan")),
                         ("serving_timeout", 0.0), ("max_image_pixels", -5), ("port", 70000), ("port", -1)):
        with pytest.raises(ValueError):
            WebConfig(**{field: value})
    env = dict(os.environ, LETTERS_WEB_PORT="70000")
    for argv in (["-m", "web", "--port", "-1"], ["-m", "web", "--log-level", "bogus"],
                 ["-m", "pipeline.serve_demo", "--web-port", "-1"], ["-m", "pipeline.serve_demo"]):
        proc = subprocess.run([sys.executable, *argv], cwd=configs.PROJECT_ROOT, capture_output=True, text=True,
                              env=env if argv[-1] == "pipeline.serve_demo" else None, timeout=120)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (argv, proc.stderr[-1500:])


def test_the_feedback_import_applies_the_pipelines_file_limits(tmp_path, monkeypatch, capsys):
    from core import feedback_cli
    from tests.conftest import letter_image, png_bytes
    (tmp_path / "mine" / "alef").mkdir(parents=True)
    (tmp_path / "mine" / "alef" / "a.png").write_bytes(png_bytes(letter_image(200, 200)))
    monkeypatch.setenv("LETTERS_MAX_IMAGE_PIXELS", "100")
    code = feedback_cli.main(["--feedback-dir", str(tmp_path / "fb"), "import", str(tmp_path / "mine")])
    out, err = capsys.readouterr()
    assert code == 2 and "skipped 1 × decompression_bomb" in out   # as the ExampleGen would drop it in training


def test_the_gate_passes_a_model_exactly_at_its_bounds_whatever_the_float32_rounding():
    """TFMA compares the candidate's accuracy with the floor, and its difference from the last blessed model's
    with -max_regression; both come from float32 sums. 180/200 against 182/200 is exactly 0.01 worse (what the
    default allows) but had been refused, as had been an accuracy of exactly the floor computed a bit under it."""
    import numpy as np
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis.evaluators import metrics_validator
    from tensorflow_model_analysis.metrics import metric_types

    from core.configs import Config
    from pipeline.pipeline import eval_config

    config = tfma.utils.update_eval_config_with_defaults(eval_config(Config()), has_baseline=True,
                                                         rubber_stamp=False)

    def blessed(candidate, baseline):
        key = dict(name="sparse_categorical_accuracy")
        metrics = {metric_types.MetricKey(**key, model_name=tfma.CANDIDATE_KEY): candidate,
                   metric_types.MetricKey(**key, model_name=tfma.BASELINE_KEY): baseline,
                   metric_types.MetricKey(**key, model_name=tfma.CANDIDATE_KEY, is_diff=True): candidate - baseline}
        return metrics_validator.validate_metrics(((), metrics), config).validation_ok

    exactly = (float(np.float32(180) / np.float32(200)), float(np.float32(182) / np.float32(200)))
    assert exactly[0] - exactly[1] < -0.01                 # the rounding that refused it
    assert blessed(*exactly)
    assert blessed(float(np.float32(0.5) - np.float32(1e-8)), 0.4)   # the floor, 0.5, as float32 left it
    assert not blessed(0.89, 0.91) and not blessed(0.49, 0.40)         # really worse, really under the floor


def test_the_evaluators_top3_accuracy_counts_a_tie_once_as_the_served_top_indices_do():
    """A model answering one class for everything (one-hot lamed, the other 26 probabilities exactly 0) had top-3
    accuracy 1.0: Keras' SparseTopKCategoricalAccuracy (tf.math.in_top_k) counts every class tied at the 3rd
    score. The Evaluator's metric, as TFMA builds it from the eval_config, ranks as tf.math.top_k does (ties by
    class order: lamed, alef, bet), under the name the run summary and letters-releases read."""
    import numpy as np
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis.metrics import metric_specs

    from core.configs import Config
    from core.labels import CLASS_INDEX
    from core.configs import TOP3_METRIC
    from pipeline.pipeline import eval_config

    configured = [metric for spec in eval_config(Config()).metrics_specs for metric in spec.metrics
                  if metric.class_name not in ("SparseCategoricalAccuracy", "ExampleCount")]
    assert [(metric.class_name, metric.module) for metric in configured] == \
        [("StrictSparseTopKCategoricalAccuracy", "models.metrics")]
    metric = metric_specs.metric_instance(configured[0])
    assert metric.name == TOP3_METRIC
    labels = [CLASS_INDEX[name] for name in ("lamed", "lamed", "alef", "bet", "gimel", "he", "vav", "het", "tet",
                                             "tav")]
    predictions = np.zeros((len(labels), 27), np.float32)
    predictions[:, CLASS_INDEX["lamed"]] = 1.0
    metric.update_state(np.array(labels)[:, None], predictions)
    assert float(metric.result()) == pytest.approx(0.4)   # lamed twice, alef, bet
    config = tfma.utils.update_eval_config_with_defaults(eval_config(Config()), has_baseline=True,
                                                         rubber_stamp=False)
    computed = {key.name for computation in metric_specs.to_computations(config.metrics_specs, eval_config=config)
                for key in computation.keys}
    assert TOP3_METRIC in computed   # the key of TFMA's output, as before
