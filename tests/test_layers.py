"""The packages form layers without cycles (pyproject.toml, [tool.importlinter]): core at the bottom, then models
and serving, components, then pipeline and web, kubeflow on top; and no two modules of a package import each other
(even from inside a function). A new import against the direction, or a cycle, fails here.

import-linter runs in a subprocess: its command line reconfigures logging for the whole process (dictConfig),
which would silence the loggers of the tests that run after it."""
import os
import subprocess
import sys
import textwrap

from pipeline.code_fingerprint import PROJECT_DIR

LINT_IMPORTS = os.path.join(os.path.dirname(sys.executable), "lint-imports")


def lint(config, cwd, pythonpath=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **({"PYTHONPATH": str(pythonpath)} if pythonpath else {}))
    return subprocess.run([LINT_IMPORTS, "--config", str(config), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_project_keeps_its_layers():
    proc = lint(PROJECT_DIR / "pyproject.toml", PROJECT_DIR)
    assert proc.returncode == 0 and "2 kept, 0 broken" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_an_upward_import_breaks_the_contract(tmp_path):
    # the same kind of contract on a two-package tree whose lower layer imports the upper one
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
    proc = lint(tmp_path / "setup.cfg", tmp_path, pythonpath=tmp_path)
    assert proc.returncode == 1 and "0 kept, 1 broken" in proc.stdout and "low.base -> high.app" in proc.stdout, \
        proc.stdout[-3000:]


def test_a_cycle_between_two_modules_of_a_package_breaks_the_contract(tmp_path):
    # one module imports the other at the top, the other imports it back inside a function
    for name, text in {"pkg/__init__.py": "", "pkg/store.py": "def main():\n    import pkg.cli\n",
                       "pkg/cli.py": "import pkg.store\n"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "setup.cfg").write_text(textwrap.dedent("""
        [importlinter]
        root_package = pkg
        [importlinter:contract:cycles]
        name = cycles
        type = acyclic_siblings
        ancestors = pkg
        """))
    proc = lint(tmp_path / "setup.cfg", tmp_path, pythonpath=tmp_path)
    assert proc.returncode == 1 and "0 kept, 1 broken" in proc.stdout, proc.stdout[-3000:]
