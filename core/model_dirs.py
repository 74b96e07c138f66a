"""The TF Serving model directory layout: ``<base>/<version>/saved_model.pb``, integer versions, the highest served."""
from __future__ import annotations

import os
import re
import types

from core.files import printable

SAVED_MODEL = "saved_model.pb"
SAVED_MODEL_TEXT = "saved_model.pbtxt"   # the text form TensorFlow's loader also reads
VARIABLES_INDEX = os.path.join("variables", "variables.index")   # the checkpoint TensorFlow restores variables from
# tsl::strings::safe_strto64: C-locale spaces (isspace: space, \t \n \v \f \r) either side, an optional '-' (no
# '+'), then ASCII digits
_VERSION_NAME = re.compile(r"\s*-?\d+\s*", re.ASCII)
_INT64_MAX = 2 ** 63 - 1

LOCAL_FILES = types.SimpleNamespace(exists=os.path.exists, isdir=os.path.isdir, listdir=os.listdir)


def version_number(name: str) -> int | None:
    """The version a folder name stands for, as TF Serving's ParseVersionNumber reads it (tsl::strings::safe_strto64
    into int64: ``007`` and `` 7`` are 7, ``-7`` is -7), or None: a name it does not read (``v2``, ``+7``, or above
    2^63 - 1) is no version it serves."""
    if not _VERSION_NAME.fullmatch(name):
        return None
    version = int(name)
    return version if -_INT64_MAX - 1 <= version <= _INT64_MAX else None


def saved_model_file(folder: str, files=None) -> str | None:
    """The file a SavedModel folder keeps its graphs in, as TensorFlow's loader looks for it (MaybeSavedModelDirectory,
    ReadSavedModel): saved_model.pb, else saved_model.pbtxt; None if it has neither. Looked for as local files, or
    with ``files.exists`` (``tf.io.gfile`` for a gs:// path)."""
    for name in (SAVED_MODEL, SAVED_MODEL_TEXT):
        path = os.path.join(folder, name)
        if os.path.isfile(path) if files is None else files.exists(path):
            return path
    return None


def missing_variables_index(folder: str, files=None) -> str | None:
    """The path of ``folder``'s variables/variables.index if it does not exist (no variables/ at all, say: a copy
    caught halfway), else None. Without it TensorFlow restores no variables: its Python loader fails, and TF
    Serving's loads the model and then fails its every run (the embedded server refuses the version so). Looked
    for as a local file, or with ``files.exists`` (``tf.io.gfile`` for a gs:// path)."""
    index = os.path.join(folder, VARIABLES_INDEX)
    return None if (os.path.exists if files is None else files.exists)(index) else index


INCOMPLETE = f"incomplete (no {VARIABLES_INDEX})"   # a version folder :func:`missing_variables_index` finds so


def not_a_directory(path: str) -> str:
    """Why a file at ``path`` is no serving directory (the Pusher's words, and the demo launcher's)."""
    return f"{path} is not a directory: versions are folders in a directory"


def holds_saved_model(folder: str, files=LOCAL_FILES) -> bool:
    """Whether ``folder`` holds a SavedModel's graphs file (:func:`saved_model_file`), looked for with
    ``files.exists``."""
    return saved_model_file(folder, files) is not None


def read_saved_model(path: str):
    """The SavedModel proto in ``path`` (a :func:`saved_model_file`), binary or text by its name. OSError if it
    cannot be read; ValueError, in TensorFlow's words, if it does not parse (Can't parse <path> as binary proto)."""
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    with open(path, "rb") as handle:
        data = handle.read()
    saved_model = saved_model_pb2.SavedModel()
    text = path.endswith(SAVED_MODEL_TEXT)
    try:
        if text:
            text_format.Parse(data.decode("utf-8"), saved_model)
        else:
            saved_model.ParseFromString(data)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError or ParseError, a text not UTF-8
        raise ValueError(f"Can't parse {path} as {'text' if text else 'binary'} proto") from None
    return saved_model


def resolve_model_dir(path: str, files=LOCAL_FILES, version: int | None = None) -> str:
    """A version directory as given, or the highest version under a serving directory, its folders' names read as
    the server reads them (:func:`version_number`: a folder named above 2^63 - 1 is none; of two folders for one
    version, "7" and "007", the last name in sorted order, as the server serves); with ``version``, that version
    of a serving directory, or a version directory named for it (FileNotFoundError naming the versions there if
    it has no such one). A version no server loads (:func:`loadable_versions`) is not taken: a version folder
    given, or asked for, without its variables' index is a FileNotFoundError saying it is :data:`INCOMPLETE`.
    ``files``: the file system's ``exists``, ``isdir`` and ``listdir`` (``tf.io.gfile`` for a gs:// path)."""
    if holds_saved_model(path, files):
        name = os.path.basename(os.path.normpath(os.path.abspath(path) if "://" not in path else path))
        if version is None or version_number(name) == version:
            if missing_variables_index(path, files):
                raise FileNotFoundError(f"{printable(path)} is {INCOMPLETE}: no server loads it")
            return path
        raise FileNotFoundError(f"{printable(path)} is a version folder ({name}), not version {version}: give its "
                                "serving directory, or no version")
    found = _version_folders(path, files)
    versions = loadable_versions(path, files, found)
    if version is not None:
        if version in found and version not in versions:
            raise FileNotFoundError(f"{printable(found[version])} is {INCOMPLETE}: no server loads it")
        if version not in versions:
            raise FileNotFoundError(f"{printable(path)} has no version {version} (versions there: "
                                    f"{', '.join(map(str, versions)) or 'none'})")
        return versions[version]
    if not versions:
        incomplete = [printable(found[number]) for number in sorted(found)]
        raise FileNotFoundError(
            f"{printable(path)} holds no SavedModel a server can load: {', '.join(incomplete)} "
            f"{'is' if len(incomplete) == 1 else 'are'} {INCOMPLETE}" if incomplete else
            f"{printable(path)} holds no SavedModel (neither saved_model.pb nor <version>/saved_model.pb)")
    return versions[max(versions)]


def loadable_versions(path: str, files=LOCAL_FILES, found: dict[int, str] | None = None) -> dict[int, str]:
    """{version: folder} of the versions under the serving directory ``path`` a server can load: folders whose
    names it reads as versions (:func:`version_number`) holding a SavedModel's graphs file and its variables'
    index (a half-written version, without either, is not among them: :func:`missing_variables_index`); of two
    folders for one version, "7" and "007", the last name in sorted order holding the graphs file, as the server
    serves. {} when ``path`` is not a directory. ``files`` as for
    :func:`resolve_model_dir`; ``found``: :func:`_version_folders`, if read already."""
    found = _version_folders(path, files) if found is None else found
    return {version: folder for version, folder in found.items() if not missing_variables_index(folder, files)}


def _version_folders(path: str, files=LOCAL_FILES) -> dict[int, str]:
    """{version: folder} of the folders under ``path`` whose names a server reads as versions and that hold a
    SavedModel's graphs file, the last of two names for one version as :func:`loadable_versions` says."""
    names = [name.rstrip("/") for name in files.listdir(path)] if files.isdir(path) else []
    return {version: os.path.join(path, name)
            for version, name in sorted((version_number(name), name) for name in names   # the last of two wins
                                        if version_number(name) is not None
                                        and holds_saved_model(os.path.join(path, name), files))}
