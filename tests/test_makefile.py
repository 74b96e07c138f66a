"""The Makefile's set-up: what it asks Debian for before it creates the venv and installs the pinned stack."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def missing(tmp_path, *flags, path=None) -> str:
    """The packages the Makefile's BUILD_CHECK names as missing, run by this Python with ``flags``."""
    wrapper = tmp_path / "check.mk"
    wrapper.write_text(f"include {ROOT}/Makefile\ncheck:\n\t@\"{sys.executable}\" -c \"$$BUILD_CHECK\" "
                       + " ".join(f'"{flag}"' for flag in flags) + "\n")
    env = {**os.environ, "PATH": path or os.environ["PATH"]}
    make = shutil.which("make")
    return subprocess.run([make, "-s", "-f", str(wrapper), "check"], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=True, timeout=60).stdout.strip()


def test_a_compiler_is_asked_for_only_while_pyfarmhash_must_be_built(tmp_path):
    no_compiler = tmp_path / "bin"
    no_compiler.mkdir()                          # a PATH with no g++ on it
    assert "g++" in missing(tmp_path, "venv-exists", "", path=str(no_compiler)).split()
    assert missing(tmp_path, "venv-exists", "farmhash-installed", path=str(no_compiler)) == ""


def test_nothing_is_asked_for_where_everything_is_there(tmp_path):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed here")
    assert missing(tmp_path, "venv-exists", "") == ""
