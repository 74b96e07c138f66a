"""The code keys in Transform's and Trainer's custom_config: a change to any project file their module imports,
directly or not, re-runs them (TFX's cache would not notice code named by module path); other changes do not."""
import shutil
import textwrap
import tomllib

import pytest

from pipeline import code_fingerprint as cf
from pipeline import pipeline as pl


def copy_closure(tmp_path, module):
    for name in cf.import_closure(module):
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(cf.PROJECT_DIR / name, target)
    return tmp_path


def test_the_trainer_key_covers_the_contract_and_export_code():
    closure = cf.import_closure(pl.TRAINER_MODULE)
    # signature and output names, the class list, warm-up records, Keras mode: all shape the exported model
    for name in ("models/trainer.py", "models/export.py", "models/network.py", "core/configs.py",
                 "core/labels.py", "core/warmup.py", "core/keras_mode.py", "core/__init__.py"):
        assert name in closure, name
    assert not any(name.startswith(("web/", "serving/", "pipeline/", "components/")) for name in closure), closure
    assert "models/preprocessing.py" in cf.import_closure(pl.TRANSFORM_MODULE)


def test_each_file_of_the_closure_changes_the_key(tmp_path):
    root = copy_closure(tmp_path, pl.TRAINER_MODULE)
    before = cf.fingerprint(pl.TRAINER_MODULE, root=root)
    assert before == cf.fingerprint(pl.TRAINER_MODULE)                      # same content as the project's
    for name in cf.import_closure(pl.TRAINER_MODULE):
        original = (root / name).read_bytes()
        (root / name).write_bytes(original + b"\n# changed\n")
        assert cf.fingerprint(pl.TRAINER_MODULE, root=root) != before, name
        (root / name).write_bytes(original)
    assert cf.fingerprint(pl.TRAINER_MODULE, root=root) == before
    (root / "web").mkdir()
    (root / "web" / "server.py").write_text("# not the Trainer's code\n")
    assert cf.fingerprint(pl.TRAINER_MODULE, root=root) == before


def test_follows_function_level_relative_and_package_imports(tmp_path):
    files = {
        "app/__init__.py": "",
        "app/main.py": "import json\nfrom . import helper\n\ndef run():\n    from lib.deep import value\n",
        "app/helper.py": "from lib import shallow\nimport vendor\n",   # vendor: not the project's, not followed
        "lib/__init__.py": "import lib.setup_mode\n",
        "lib/setup_mode.py": "",
        "lib/shallow.py": "",
        "lib/deep.py": "value = 1\n",
        "lib/unused.py": "",
        "vendor/__init__.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    assert cf.import_closure("app.main", root=tmp_path, project=("app", "lib")) == \
        tuple(sorted(set(files) - {"lib/unused.py", "vendor/__init__.py"}))
    with pytest.raises(ValueError, match="no project module 'app.missing'"):
        cf.import_closure("app.missing", root=tmp_path, project=("app", "lib"))


def test_an_installed_copy_follows_only_the_project_modules(tmp_path):
    """Installed, the project sits in site-packages beside tensorflow and the rest: they are not its code, and the
    fingerprint is the checkout's."""
    root = copy_closure(tmp_path, pl.TRAINER_MODULE)
    before = cf.import_closure(pl.TRAINER_MODULE)
    for name in ("tensorflow/__init__.py", "tensorflow_transform/__init__.py", "absl/logging.py", "json.py"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("import core\n")
    assert cf.import_closure(pl.TRAINER_MODULE, root=root) == before
    assert cf.fingerprint(pl.TRAINER_MODULE, root=root) == cf.fingerprint(pl.TRAINER_MODULE)


def test_the_project_modules_are_those_the_package_installs():
    setuptools = tomllib.loads((cf.PROJECT_DIR / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert sorted(cf.PROJECT_MODULES) == sorted(setuptools["packages"] + setuptools["py-modules"])


def test_the_serving_checks_key_covers_the_check_and_the_embedded_server():
    """The ServingValidator's verdict was cached across a fix to its code: a blessed model stayed unpushed."""
    from core.configs import Config
    closure = cf.import_closure(pl.SERVING_VALIDATOR_MODULE)
    assert {"components/serving_validator.py", "serving/server.py", "serving/rest.py", "serving/versions.py"} <= \
        set(closure)
    (validator,) = [c for c in pl.create_pipeline(Config(data_root="/data")).components
                    if c.id == "ServingValidator"]
    assert validator.exec_properties["code"] == cf.fingerprint(pl.SERVING_VALIDATOR_MODULE)
