"""The image recipe: Keras mode, entrypoint, base image, what it copies and installs."""
import importlib.util
import re
import tomllib

from kubeflow.local_launcher import dockerfile_env
from tests.kubeflow.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")


def _stages():
    stages, current = {}, None
    for line in DOCKERFILE.splitlines():
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if match:
            current = match.group(2) or match.group(1)
            stages[current] = {"from": match.group(1), "lines": []}
        elif current:
            stages[current]["lines"].append(line)
    return stages


def test_keras_mode_matches_keras_mode_env():
    from core import keras_mode

    env = dockerfile_env(str(ROOT / "Dockerfile"))
    for key, value in keras_mode.ENV.items():
        assert env.get(key) == value, key


def test_default_target_entrypoint_is_the_tfx_kfp_v2_entrypoint():
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    stages = _stages()
    last = list(stages)[-1]
    entrypoints = [line for line in stages[last]["lines"] if line.startswith("ENTRYPOINT")]
    assert entrypoints == ['ENTRYPOINT ["python", "-m", "tfx.orchestration.kubeflow.v2.container.'
                           'kubeflow_v2_run_executor"]']
    assert list(kubeflow_v2_dag_runner.KUBEFLOW_TFX_CMD) == ["python", "-m", entrypoints[0].split('"')[5]]
    assert importlib.util.find_spec(entrypoints[0].split('"')[5]) is not None


def test_base_image_python_matches_the_project():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11,<3.12"
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in DOCKERFILE
    beam = next(line for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines()
                if line.startswith("apache-beam=="))
    assert f"ARG BEAM_SDK_IMAGE=apache/beam_python3.11_sdk:{beam.split('==')[1]}" in DOCKERFILE
    assert set(_stages()) >= {"base", "dataflow-worker", "pipeline"}


def test_installs_the_pinned_stack_and_every_package():
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("**")] == "**"
    for package in sorted({name.split(".")[0] for name in packages}):   # a folder copy brings its subpackages
        assert f"COPY {package} {package}" in DOCKERFILE, package
        assert f"!{package}/" in ignore, package
    assert "-c requirements/constraints.txt" in DOCKERFILE and "--ignore-requires-python" in DOCKERFILE
    for needed in ("pyproject.toml", "README.md", "requirements/constraints.txt"):
        assert f"!{needed}" in ignore
    for package in ("components.image_example_gen", "models.preprocessing", "models.trainer"):
        assert package in DOCKERFILE   # imported at build time: the image fails to build without them


def _pip_installs(text: str) -> list[str]:
    """Each ``pip install`` command of a Dockerfile or Makefile (without RUN or @), its continued lines joined."""
    return [re.sub(r"^(RUN |@)", "", " ".join(part.split()))
            for line in text.replace("\\\n", " ").splitlines() for part in line.split("&&") if "pip install" in part]


def test_pip_installs_with_the_constraints_as_the_makefile_does():
    """pip passes -c to no isolated build (pyfarmhash 0.3.2, TFDV's pin, has no wheel and is compiled; the project is
    built too): PIP_CONSTRAINT, an absolute path, reaches them, as the Makefile's venv sets it. The image had built
    them with the newest setuptools and wheel, whatever the constraints pinned."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    flags = re.search(r"^PIP_FLAGS := (.*)$", makefile, re.M).group(1)
    workdir = re.search(r"^WORKDIR (\S+)$", DOCKERFILE, re.M).group(1)
    for installs, root in ((_pip_installs(makefile.replace("$(PIP_FLAGS)", flags)), "$(CURDIR)"),
                           (_pip_installs(DOCKERFILE), workdir)):
        builds = [cmd for cmd in installs if not cmd.endswith(" pip setuptools wheel")]   # nothing built there
        assert installs[0].endswith(" pip setuptools wheel") and builds, installs   # pip pinned before it builds
        for cmd in installs:
            assert "-c requirements/constraints.txt" in cmd.split("pip install", 1)[1], cmd
        for cmd in builds:
            assert cmd.startswith(f"PIP_CONSTRAINT={root}/requirements/constraints.txt "), cmd
