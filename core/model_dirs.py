"""The TF Serving model directory layout: ``<base>/<version>/saved_model.pb``, integer versions, the highest served."""
from __future__ import annotations

import os
import types

SAVED_MODEL = "saved_model.pb"

LOCAL_FILES = types.SimpleNamespace(exists=os.path.exists, isdir=os.path.isdir, listdir=os.listdir)


def resolve_model_dir(path: str, files=LOCAL_FILES) -> str:
    """A version directory as given, or the highest integer version under a serving directory (of two folders
    for one version, "7" and "007", the last name in sorted order, as the server serves). ``files``: the file
    system's ``exists``, ``isdir`` and ``listdir`` (``tf.io.gfile`` for a gs:// path)."""
    if files.exists(os.path.join(path, SAVED_MODEL)):
        return path
    names = [name.rstrip("/") for name in files.listdir(path)] if files.isdir(path) else []
    versions = sorted((int(name), name) for name in names
                      if name.isascii() and name.isdigit() and files.exists(os.path.join(path, name, SAVED_MODEL)))
    if not versions:
        raise FileNotFoundError(f"{path} holds no SavedModel (neither saved_model.pb nor <version>/saved_model.pb)")
    return os.path.join(path, versions[-1][1])
