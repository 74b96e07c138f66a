"""The generator's manifest (``generated.json`` beside the class folders) as the readers of a data root see it.

``pipeline.generate_letters`` writes it with ``"incomplete": true`` before it changes anything in the folder and
rewrites it without once every image is written; a folder whose manifest still says incomplete was left by an
interrupted run (some classes missing, or old and new images mixed) and is not read as data.
"""
from __future__ import annotations

import json
import os

from core.configs import GENERATED_MANIFEST


def unfinished_generation(root: str) -> str | None:
    """A sentence saying that ``root`` (a local folder) holds an unfinished generation, or None."""
    try:
        with open(os.path.join(root, GENERATED_MANIFEST), "rb") as handle:
            manifest = json.loads(handle.read())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not manifest.get("incomplete"):
        return None
    return (f"{root} holds letters whose generation did not finish ({GENERATED_MANIFEST} says incomplete: the run "
            f"was interrupted, so classes may be missing or old and new images mixed); run the same "
            f"letters-generate command again to finish it (per class {manifest.get('per_class')}, seed "
            f"{manifest.get('seed')}, style {manifest.get('style')})")
