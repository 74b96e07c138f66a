"""The installable package: an installed copy (the pipeline image's ``pip install .``) holds every file the code
opens beside its modules, not only the modules."""
import os
import shutil
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_FOLDERS = ("web/static", "serving/deploy")   # web.server.STATIC_DIR, pipeline.serve_demo.MONITORING_CONFIG


def tracked(*paths) -> list[str]:
    return subprocess.run(["git", "ls-files", *paths], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.split()


def test_the_wheel_holds_the_page_and_the_deployment_files(tmp_path):
    source = tmp_path / "source"          # the tracked files only: the build writes build/ and *.egg-info beside them
    for name in tracked():
        if os.path.isfile(os.path.join(ROOT, name)):
            os.makedirs(source / os.path.dirname(name), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), source / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "wheel"), str(source)], capture_output=True, text=True,
                           timeout=300, cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "wheel").iterdir()
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked_data = tracked(*DATA_FOLDERS)
    assert "web/static/index.html" in tracked_data and "serving/deploy/monitoring.config" in tracked_data
    assert sorted(set(tracked_data) - names) == []
