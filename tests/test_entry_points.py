"""The commands of [project.scripts] exist in the environment and point at real main functions."""
import argparse
import importlib
import os
import runpy
import subprocess
import sys
import tomllib
import warnings

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
def test_each_commands_module_runs_with_python_m(name, monkeypatch, capsys):
    """``python -m <module>`` of each command's module runs its main: pipeline.monitor.cli had no __main__ block,
    so any command line printed nothing and exited 0, which a cron job reads as all clear."""
    module = SCRIPTS[name].split(":")[0]
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    with warnings.catch_warnings(), pytest.raises(SystemExit) as stopped:   # run as python -m runs it, in-process
        warnings.simplefilter("ignore", RuntimeWarning)   # (runpy: the module is already imported)
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    assert stopped.value.code == 0 and capsys.readouterr().out.startswith("usage: ")


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_each_command_warns_of_a_misspelled_setting_first_and_goes_on(name, monkeypatch, capsys):
    module, function = SCRIPTS[name].split(":")
    monkeypatch.setenv("LETTERS_EPOCS", "30")
    with pytest.raises(SystemExit) as stopped:
        getattr(importlib.import_module(module), function)(["--help"])
    out, err = capsys.readouterr()
    assert stopped.value.code == 0 and "usage:" in out
    assert err == "warning: LETTERS_EPOCS is not a setting (did you mean LETTERS_EPOCHS?); it is ignored\n"


def _parsers(name, monkeypatch):
    """The argument parser of the command ``name`` (as its main builds it) and its subcommands', by command line."""
    built = []

    def caught(parser, args=None, namespace=None):
        built.append(parser)
        raise SystemExit(0)

    module, function = SCRIPTS[name].split(":")
    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_known_args", caught)
        with pytest.raises(SystemExit):
            getattr(importlib.import_module(module), function)(["--help"])
    found, todo = {}, [(name, built[0])]
    while todo:
        line, parser = todo.pop()
        found[line] = parser
        todo += [(f"{line} {sub}", child) for action in parser._actions
                 if isinstance(action, argparse._SubParsersAction) for sub, child in action.choices.items()]
    return found


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_each_flag_says_what_it_is_and_its_default_once(name, monkeypatch):
    """--help had shown flags with no help (letters-demo-serve's --serving-dir SERVING_DIR), and a default written
    in a flag's help followed by argparse's own of a flag whose default is None (--display-name … pipeline display
    name (default: letters) (default: None))."""
    for line, parser in _parsers(name, monkeypatch).items():
        text = parser.format_help()
        assert "(default: None)" not in text and "(default: )" not in text, line
        for action in parser._actions:
            if action.option_strings and not isinstance(action, argparse._HelpAction):
                assert action.help, f"{line} {action.option_strings[0]} has no help"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_each_numeric_flag_shows_its_default(name, monkeypatch):
    """letters-evaluate --worst had said "errors on the contact sheet" and not how many unless given (40)."""
    for line, parser in _parsers(name, monkeypatch).items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if action.option_strings and type(action.default) in (int, float):
                shown = formatter._format_action_invocation(action) + " " + formatter._expand_help(action)
                assert f"default: {action.default}" in shown or f"={action.default}" in shown, \
                    f"{line} {action.option_strings[0]}: {shown}"


@pytest.mark.parametrize("line, flag, says", [
    *((f"letters-releases {sub}", "--server-url", ("(default: http://127.0.0.1:8501", "''"))
      for sub in ("list", "promote", "rollback")),
    ("letters-demo-serve", "--serving-port", ("(default: 8501)",)),
    ("letters-demo-serve", "--grpc-port", ("(default: 8500",)),
])
def test_a_flag_the_readme_quotes_the_default_of_says_it(line, flag, says, monkeypatch):
    """letters-releases' --server-url had not said its default, nor that '' edits the file alone (README: Releases),
    and letters-demo-serve's --serving-port and --grpc-port had shown no default."""
    parser = _parsers(line.split()[0], monkeypatch)[line]
    action = next(action for action in parser._actions if flag in action.option_strings)
    text = parser._get_formatter()._expand_help(action)
    assert all(part in text for part in says), text
