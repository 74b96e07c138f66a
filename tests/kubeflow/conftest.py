"""Fixtures for the Kubeflow tests: tiny data and one spec compiled by the real command line."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "registry.example/letters:test"


@pytest.fixture(scope="session")
def kfp_data(tmp_path_factory):
    from pipeline import generate_letters

    out = tmp_path_factory.mktemp("kfp_data")
    generate_letters.generate(out, per_class=3, seed=1, progress=False)
    return out


@pytest.fixture(scope="session")
def compiled(kfp_data, tmp_path_factory):
    """kubeflow_runner.py run as users run it, with local roots; returns (spec dict, paths, stdout)."""
    work = tmp_path_factory.mktemp("kfp_compile")
    paths = {"output": work / "spec" / "letters.yaml", "pipeline_root": work / "root",
             "data_root": kfp_data, "serving_dir": work / "serving" / "letters",
             "feedback_root": work / "root" / "feedback"}
    cmd = [sys.executable, str(ROOT / "kubeflow_runner.py"), "--output", str(paths["output"]), "--image", IMAGE,
           "--pipeline-root", str(paths["pipeline_root"]), "--data-root", str(paths["data_root"]),
           "--serving-dir", str(paths["serving_dir"]), "--feedback-root", str(paths["feedback_root"]), "--epochs", "1", "--accuracy-floor", "0",
           "--resources", "Trainer=cpu=3,memory=6Gi"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(paths["output"], encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    return spec, paths, proc.stdout


@pytest.fixture(scope="session")
def image_env():
    """This process's environment as the image would see it: the Keras settings only from the Dockerfile."""
    from kubeflow.local_launcher import dockerfile_env
    from core import keras_mode

    env = {k: v for k, v in os.environ.items() if k not in keras_mode.ENV}
    env.update(dockerfile_env(str(ROOT / "Dockerfile")))
    return env
