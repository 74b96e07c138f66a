"""Settings: one place, overridable by environment, and one Keras mode for every process."""
import os
import subprocess
import sys

import pytest

from pipeline import configs, keras_mode
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


def test_every_process_uses_legacy_keras():
    import tensorflow as tf
    assert os.environ["TF_USE_LEGACY_KERAS"] == keras_mode.ENV["TF_USE_LEGACY_KERAS"] == "1"
    assert tf.keras.__name__.startswith("tf_keras")
    # Even when TensorFlow Transform is imported first in a fresh process.
    code = ("import pipeline, tensorflow_transform, tensorflow as tf; "
            "print(tf.keras.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"})
    assert out.stdout.strip().startswith("tf_keras"), out.stderr[-2000:]


def test_a_conflicting_keras_setting_is_refused():
    code = "import pipeline"
    env = dict(os.environ, TF_USE_LEGACY_KERAS="0")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert out.returncode != 0 and "TF_USE_LEGACY_KERAS" in out.stderr


def test_local_runner_help_documents_the_flags():
    out = subprocess.run([sys.executable, str(ROOT / "local_runner.py"), "--help"], capture_output=True,
                         text=True, cwd=ROOT)
    for flag in ("--data-root", "--pipeline-root", "--serving-dir", "--epochs", "--beam-mode", "--beam-workers"):
        assert flag in out.stdout


def test_local_runner_split_flag():
    import local_runner
    config, _ = local_runner.parse_args(["--split", "9:1"])
    assert (config.train_buckets, config.eval_buckets) == (9, 1)
    default, _ = local_runner.parse_args([])
    assert (default.train_buckets, default.eval_buckets) == (configs.Config().train_buckets, configs.Config().eval_buckets)
    for bad in ("9", "9:0", "a:b", "9:1:1"):
        with pytest.raises(SystemExit):
            local_runner.parse_args(["--split", bad])
