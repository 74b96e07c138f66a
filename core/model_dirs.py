"""The TF Serving model directory layout: ``<base>/<version>/saved_model.pb``, integer versions, the highest served."""
from __future__ import annotations

from pathlib import Path

SAVED_MODEL = "saved_model.pb"


def resolve_model_dir(path: str) -> str:
    """A version directory as given, or the highest integer version under a serving directory."""
    p = Path(path)
    if (p / SAVED_MODEL).exists():
        return str(p)
    versions = sorted((int(d.name) for d in p.iterdir() if d.name.isdigit() and (d / SAVED_MODEL).exists()),
                      reverse=True) if p.is_dir() else []
    if not versions:
        raise FileNotFoundError(f"{path} holds no SavedModel (neither saved_model.pb nor <version>/saved_model.pb)")
    return str(p / str(versions[0]))
