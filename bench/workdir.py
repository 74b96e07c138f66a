"""Folders a bench writes and later empties: only ones it made itself.

A bench that clears its output folder before writing into it must never be pointed at the user's data or the
project itself: :func:`claim` accepts a folder that does not exist, is empty, or holds the marker file this
bench left there when it first claimed it, and refuses any other (ValueError naming the folder).
"""
from __future__ import annotations

from pathlib import Path


def claim(folder: str | Path, tool: str, protect: tuple = ()) -> Path:
    """``folder`` made (if missing) and marked as ``tool``'s; ValueError for a non-empty folder ``tool`` did not
    make, or one that is or holds any of ``protect`` (e.g. the data it reads)."""
    path = Path(folder).expanduser().resolve()
    for kept in protect:
        kept = Path(kept).expanduser().resolve()
        if path == kept or path in kept.parents:
            raise ValueError(f"{path} holds {kept}, which {tool} reads: give another folder")
        if kept in path.parents:   # it would write into the data (and read itself as a class folder)
            raise ValueError(f"{path} is inside {kept}, which {tool} reads: give a folder outside it")
    marker = path / f".{tool.replace('.', '_')}"
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a folder")
    if path.exists() and any(path.iterdir()) and not marker.exists():
        raise ValueError(f"{path} is not empty and was not made by {tool}: refusing to replace what is there; "
                         "give a new or empty folder")
    path.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return path
