"""The cache key of a component whose code is named by module path: a hash of its project import closure.

Transform and Trainer run ``models.preprocessing`` and ``models.trainer`` by module path (no user-code wheel),
so TFX would not notice a change to that code. Their custom_config carries :func:`fingerprint` of every project
source file the module imports, directly or through other project modules (imports inside functions and the
``__init__.py`` of each package on the way included), so renaming a signature in ``core/configs.py`` re-runs
the Trainer while an edit to the web client does not. Third-party modules are pinned by the lock file.

Only the project's own packages and modules (:data:`PROJECT_MODULES`) are followed: in an installed copy (the
image's ``pip install .``) ``PROJECT_DIR`` is site-packages, where every third-party module sits beside them, and
the same project files give the same fingerprint there as in a checkout.
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
# pyproject.toml's [tool.setuptools] packages and py-modules (tests/test_code_fingerprint.py checks they agree)
PROJECT_MODULES = ("core", "models", "serving", "components", "pipeline", "pipeline.monitor", "web", "kubeflow",
                   "local_runner", "kubeflow_runner")


def _is_project(name: str, project: tuple[str, ...]) -> bool:
    """``name`` is one of the ``project`` packages or modules, or a module of one of its packages."""
    return name in project or name.rpartition(".")[0] in project


def _module_file(name: str, root: Path) -> Path | None:
    path = root.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_inits(name: str, root: Path) -> list[str]:
    """``a.b.c`` imports ``a/__init__.py`` and ``a/b/__init__.py`` first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imported_names(path: Path, module: str) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)   # submodules imported by name
    return names


def import_closure(*modules: str, root: Path = PROJECT_DIR,
                   project: tuple[str, ...] = PROJECT_MODULES) -> tuple[str, ...]:
    """Paths (relative to ``root``, sorted) of the source files of ``project`` that importing ``modules`` runs."""
    seen: dict[str, Path] = {}
    pending = list(modules)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        path = _module_file(name, root) if _is_project(name, project) else None
        if path is None:
            if name in modules:
                raise ValueError(f"no project module {name!r} under {root}")
            continue          # a third-party module, or a name imported from a module
        seen[name] = path
        pending.extend(_package_inits(name, root))
        pending.extend(_imported_names(path, name))
    return tuple(sorted(str(path.relative_to(root)) for path in seen.values()))


def fingerprint(*modules: str, root: Path = PROJECT_DIR, project: tuple[str, ...] = PROJECT_MODULES) -> str:
    """sha256 (16 hex digits) of the names and contents of ``import_closure(*modules)``."""
    digest = hashlib.sha256()
    for name in import_closure(*modules, root=root, project=project):
        digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    return digest.hexdigest()[:16]
