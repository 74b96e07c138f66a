"""The cache key of a component whose code is named by module path: a hash of its project import closure.

Transform and Trainer run ``models.preprocessing`` and ``models.trainer`` by module path (no user-code wheel),
so TFX would not notice a change to that code. Their custom_config carries :func:`fingerprint` of every project
source file the module imports, directly or through other project modules (imports inside functions and the
``__init__.py`` of each package on the way included), so renaming a signature in ``core/configs.py`` re-runs
the Trainer while an edit to the web client does not. Third-party modules are pinned by the lock file.
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


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


def import_closure(*modules: str, root: Path = PROJECT_DIR) -> tuple[str, ...]:
    """Paths (relative to ``root``, sorted) of the project's source files that importing ``modules`` runs."""
    seen: dict[str, Path] = {}
    pending = list(modules)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        path = _module_file(name, root)
        if path is None:
            if name in modules:
                raise ValueError(f"no module {name!r} under {root}")
            continue          # a third-party module, or a name imported from a module
        seen[name] = path
        pending.extend(_package_inits(name, root))
        pending.extend(_imported_names(path, name))
    return tuple(sorted(str(path.relative_to(root)) for path in seen.values()))


def fingerprint(*modules: str, root: Path = PROJECT_DIR) -> str:
    """sha256 (16 hex digits) of the names and contents of ``import_closure(*modules)``."""
    digest = hashlib.sha256()
    for name in import_closure(*modules, root=root):
        digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    return digest.hexdigest()[:16]
