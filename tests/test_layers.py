"""The packages form layers without cycles (pyproject.toml, [tool.importlinter]): core at the bottom, then models
and serving, components, then pipeline and web, kubeflow on top. A new import against the direction fails here."""
import os
import textwrap

from importlinter import cli

from pipeline.code_fingerprint import PROJECT_DIR


def lint(config: str, cwd) -> int:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return cli.lint_imports(config_filename=config, no_cache=True, no_logo=True)
    finally:
        os.chdir(old)


def test_the_project_keeps_its_layers():
    assert lint(str(PROJECT_DIR / "pyproject.toml"), PROJECT_DIR) == 0


def test_an_upward_import_breaks_the_contract(tmp_path, monkeypatch):
    # the same contract on a two-package tree whose lower layer imports the upper one
    for name, text in {"low/__init__.py": "", "low/base.py": "import high.app\n",
                       "high/__init__.py": "", "high/app.py": "import low.base\n"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "setup.cfg").write_text(textwrap.dedent("""
        [importlinter]
        root_packages = low
            high
        [importlinter:contract:layers]
        name = layers
        type = layers
        layers = high
            low
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert lint(str(tmp_path / "setup.cfg"), tmp_path) == 1
