"""Folders a benchmark's --real-root or --data-root refuses as the command line is read: missing, empty, and one
without class folders (an image beside them, another folder's images)."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from tests.conftest import png_bytes

NAMES = ("missing", "empty", "no class folder")


def bad_root(tmp_path: Path, name: str) -> tuple[Path, str]:
    """The folder called ``name`` (of :data:`NAMES`) made under ``tmp_path``, and the usage error's words."""
    root = tmp_path / name.replace(" ", "_")
    if name == "missing":
        return root, f"{root} is not a folder"
    root.mkdir()
    if name == "no class folder":
        (root / "letters").mkdir()
        (root / "letters" / "a.png").write_bytes(png_bytes(Image.new("L", (8, 8), 255)))
    return root, f"no images in the class folders of {root}"


def refuse_work(monkeypatch, module) -> None:
    """Generating letters or reading them into ``module`` (a benchmark) ends the test: the refusal comes first."""
    from pipeline import generate_letters

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(generate_letters, "generate", no_work)
    if hasattr(module, "load_split"):
        monkeypatch.setattr(module, "load_split", no_work)


def assert_refused(module, argv: list[str], flag: str, name: str, tmp_path: Path, monkeypatch, capsys) -> None:
    """``module.main(argv + [flag, <the folder called name>])`` exits 2 with the usage error naming ``flag``, before
    any letter is generated or read."""
    import pytest

    root, words = bad_root(tmp_path, name)
    refuse_work(monkeypatch, module)
    with pytest.raises(SystemExit) as stop:
        module.main(argv + [flag, str(root)])
    assert stop.value.code == 2 and f"argument {flag}: {words}" in capsys.readouterr().err
