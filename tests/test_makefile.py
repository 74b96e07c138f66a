"""The Makefile's set-up: what it asks Debian for before it creates the venv and installs the pinned stack."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def missing(tmp_path, *flags, path=None, env=None) -> str:
    """The packages the Makefile's BUILD_CHECK names as missing, run by this Python with ``flags``."""
    wrapper = tmp_path / "check.mk"
    wrapper.write_text(f"include {ROOT}/Makefile\ncheck:\n\t@\"{sys.executable}\" -c \"$$BUILD_CHECK\" "
                       + " ".join(f'"{flag}"' for flag in flags) + "\n")
    env = {**os.environ, "PATH": path or os.environ["PATH"], **(env or {})}
    make = shutil.which("make")
    return subprocess.run([make, "-s", "-f", str(wrapper), "check"], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=True, timeout=60).stdout.strip()


def test_a_compiler_is_asked_for_only_while_pyfarmhash_must_be_built(tmp_path):
    no_compiler = tmp_path / "bin"
    no_compiler.mkdir()                          # a PATH with no g++ on it
    assert "g++" in missing(tmp_path, "venv-exists", "", path=str(no_compiler)).split()
    assert missing(tmp_path, "venv-exists", "farmhash-installed", path=str(no_compiler)) == ""


def test_the_packages_asked_for_are_those_of_the_python_that_builds(tmp_path):
    """python3-venv and python3-dev are the default Python's (3.12 on Ubuntu 24.04): the building Python's are asked
    for (python3.11-dev), so that installing them lets the next try go on."""
    site = tmp_path / "site"
    site.mkdir()                                 # a Python without its headers
    (site / "sitecustomize.py").write_text("import sysconfig\nsysconfig.get_paths = lambda *a, **k: "
                                           "{'include': '/nowhere'}\n")
    asked = missing(tmp_path, "venv-exists", "", env={"PYTHONPATH": str(site)}).split()
    assert "python%d.%d-dev" % sys.version_info[:2] in asked and "python3-dev" not in asked


def test_nothing_is_asked_for_where_everything_is_there(tmp_path):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed here")
    assert missing(tmp_path, "venv-exists", "") == ""


@pytest.mark.parametrize("store", ["outputs/feedback", "outputs/team_feedback", "outputs/stores/main", "~/fb"])
def test_clean_outputs_keeps_the_feedback_store_the_settings_name(tmp_path, store):
    """The store is $LETTERS_FEEDBACK_DIR (outputs/feedback when unset; "~" is the home, as the commands read it),
    as make retrain reads it: a store under outputs/ with another name had been deleted with the pipeline's
    outputs. A folder holding any other feedback store is kept too."""
    shutil.copy(os.path.join(ROOT, "Makefile"), tmp_path / "Makefile")
    where = store.replace("~", "outputs")                       # HOME is outputs/ below
    for folder in ("outputs/pipeline", "outputs/request_logs", where, "outputs/old_store", "serving/models/letters/1",
                   "data/generated"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / where / "feedback.sqlite").write_text("x")
    (tmp_path / "outputs" / "old_store" / "feedback.sqlite").write_text("x")
    env = {**os.environ, "LETTERS_FEEDBACK_DIR": store, "HOME": str(tmp_path / "outputs")}
    if store == "outputs/feedback":
        env.pop("LETTERS_FEEDBACK_DIR")
    proc = subprocess.run([shutil.which("make"), "-s", "clean-outputs"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / where / "feedback.sqlite").exists() and "kept" in proc.stdout
    left = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "outputs").rglob("*") if p.is_dir())
    assert left == sorted({where, "outputs/old_store", *[os.path.dirname(where)] * (where.count("/") > 1)})
    assert not (tmp_path / "serving" / "models" / "letters").exists() and not (tmp_path / "data" / "generated").exists()
