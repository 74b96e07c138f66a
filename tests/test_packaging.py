"""The installable package: an installed copy (the pipeline image's ``pip install .``) holds every file the code
opens beside its modules, not only the modules, and writes nothing among them."""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_FOLDERS = ("web/static", "serving/deploy")   # web.server.STATIC_DIR, pipeline.serve_demo.MONITORING_CONFIG


def tracked(*paths) -> list[str]:
    return subprocess.run(["git", "ls-files", *paths], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.split()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel ``pip install .`` installs, built from the tracked files."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    source = tmp_path / "source"          # the tracked files only: the build writes build/ and *.egg-info beside them
    for name in tracked():
        if os.path.isfile(os.path.join(ROOT, name)):
            os.makedirs(source / os.path.dirname(name), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), source / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "wheel"), str(source)], capture_output=True, text=True,
                           timeout=300, cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    (built,) = (tmp_path / "wheel").iterdir()
    return built


def test_the_wheel_holds_the_page_and_the_deployment_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked_data = tracked(*DATA_FOLDERS)
    assert "web/static/index.html" in tracked_data and "serving/deploy/monitoring.config" in tracked_data
    assert sorted(set(tracked_data) - names) == []


INSTALLED_DEFAULTS = """
import json, kubeflow_runner
from core import configs
c = configs.Config()
print(json.dumps([kubeflow_runner.DEFAULT_OUTPUT, c.data_root, c.pipeline_root, c.serving_dir, c.feedback_dir,
                  c.request_log_dir]))
"""


def test_an_installed_copy_keeps_its_default_folders_under_the_current_directory(wheel, tmp_path):
    """Installed, the modules sit in site-packages: the default data root, pipeline root, serving dir, feedback
    store, request logs and compiled spec are under the current directory (the image's /home/letters), not there.
    In a checkout they stay under it."""
    from core import configs
    installed, work = tmp_path / "site-packages", tmp_path / "work"
    zipfile.ZipFile(wheel).extractall(installed)
    work.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("LETTERS_")}
    proc = subprocess.run([sys.executable, "-c", INSTALLED_DEFAULTS], cwd=work, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(installed)}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1500:]
    defaults = [os.path.relpath(path, work.resolve()) for path in json.loads(proc.stdout.splitlines()[-1])]
    assert defaults == ["outputs/kubeflow/letters_pipeline.yaml", "data/generated", "outputs/pipeline",
                        "serving/models/letters", "outputs/feedback", "outputs/request_logs"]
    assert configs.Config().pipeline_root == os.path.join(ROOT, "outputs", "pipeline")
