"""The commands of [project.scripts] exist in the environment and point at real main functions."""
import importlib
import os
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import ROOT

SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_each_command_is_installed_and_names_a_main_function(name):
    module, function = SCRIPTS[name].split(":")
    assert callable(getattr(importlib.import_module(module), function))
    assert os.access(os.path.join(os.path.dirname(sys.executable), name), os.X_OK), \
        f"{name} is not installed next to {sys.executable}: run make venv"


def test_a_command_runs_from_any_folder(tmp_path):
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "letters-web"), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "usage: letters-web" in proc.stdout and "--canary-share" in proc.stdout


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_each_command_warns_of_a_misspelled_setting_first_and_goes_on(name, monkeypatch, capsys):
    module, function = SCRIPTS[name].split(":")
    monkeypatch.setenv("LETTERS_EPOCS", "30")
    with pytest.raises(SystemExit) as stopped:
        getattr(importlib.import_module(module), function)(["--help"])
    out, err = capsys.readouterr()
    assert stopped.value.code == 0 and "usage:" in out
    assert err == "warning: LETTERS_EPOCS is not a setting (did you mean LETTERS_EPOCHS?); it is ignored\n"
