"""A Pusher whose model server never sees a half-written version, and that does not push a model twice.

TFX's own Pusher copies straight into ``<base>/<version>`` (``saved_model.pb`` last), so a server polling
the base directory can catch a version mid-copy. This executor copies into ``<base>/.incoming-<version>-<pid>``
(not an integer, so TF Serving ignores it), writes a small push record into ``assets.extra/``, and renames
the whole directory to ``<base>/<version>`` in one step. Versions are UNIX timestamps, made larger than any
version already there. A model whose files the newest pushed version holds, each the same, is not copied
again (files added to that version since, such as warm-up requests, do not count): the push is recorded against
that version (one identical to an older version is pushed as a new version, so that it is served again). That
version must hold all the model's files: one that lacks some (an unfinished push, files removed or changed since)
is left as it is and the model pushed as a newer version.

On object stores (``gs://``, ``s3://``) a directory rename is a copy, so there the model is copied straight
into ``<base>/<version>`` with ``saved_model.pb`` written last, as TFX's Pusher does: a server that lists the
version early fails to load it and retries once the copy is complete. A push that fails removes the version it
was writing, as far as it can, and raises :class:`PushFailed` when it could not write there (a full disk, no
permission).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import time

import tensorflow as tf
from absl import logging
from tfx.components.pusher import executor as pusher_executor
from tfx.components.pusher.component import Pusher
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from core.files import remove_stale_folders
from core.model_dirs import not_a_directory, version_number
from core.signals import stop_if_requested

PUSH_RECORD = os.path.join("assets.extra", "push_record.json")
INCOMING_PREFIX = ".incoming-"


class PushFailed(Exception):
    """The model could not be written into the serving dir (a full disk, no permission): nothing was published.
    ``base``: the serving dir; ``reason``: the system's words (No space left on device)."""

    def __init__(self, base: str, reason: str):
        super().__init__(f"could not write to {base}: {reason}")
        self.base, self.reason = base, reason


def write_error_reason(err: Exception) -> str:
    """The system's words for a failed write: an OSError's strerror, or what follows the path in TensorFlow's
    message (``<path>; No space left on device``)."""
    if isinstance(err, OSError):
        return err.strerror or str(err)
    return err.message.rsplit("; ", 1)[-1]


def model_files(model_dir: str) -> list[str]:
    """The model's files as paths relative to ``model_dir``, sorted, without the push record."""
    return sorted(rel for rel in (os.path.relpath(os.path.join(root, name), model_dir)
                                  for root, _, files in fileio.walk(model_dir) for name in files)
                  if rel != PUSH_RECORD)


def model_fingerprint(model_dir: str, files: list[str] | None = None) -> str:
    """sha256 over the model's files (relative path + content), ignoring the push record; over ``files`` only (paths
    relative to ``model_dir``, as :func:`model_files` gives them) when given."""
    digest = hashlib.sha256()
    for rel in model_files(model_dir) if files is None else files:
        digest.update(rel.encode() + b"\0")
        with fileio.open(os.path.join(model_dir, rel), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


COPIED_KEY = "copied"   # the pushed_model artifact's custom property: 1 copied now, 0 already served as that version
_RECORD_TYPES = {"version": int, "fingerprint": str, "model": str, "pushed_at": str, "model_artifact_id": int,
                 "blessing_artifact_id": int}


def _checked_record(record) -> dict:
    """A push record as read: a JSON object, its known fields of their types (a damaged field is left out, so a
    hand-edited record cannot break the Pusher or ``letters-releases``)."""
    if not isinstance(record, dict):
        return {}
    return {key: value for key, value in record.items()
            if key not in _RECORD_TYPES or (isinstance(value, _RECORD_TYPES[key]) and not isinstance(value, bool))}


def version_folders(base: str) -> dict[int, str]:
    """Integer version → its folder under ``base``. Of two folders that name one version (``007`` and ``7``), the
    one the server serves: the last by name. NotADirectoryError when ``base`` is a file."""
    folders = {}
    if not fileio.exists(base):
        return folders
    if not fileio.isdir(base):
        raise NotADirectoryError(not_a_directory(base))
    for name in sorted(name.rstrip("/") for name in fileio.listdir(base)):
        version = version_number(name)   # the server's own reading of a folder name (int64: larger never served)
        if version is not None:
            folders[version] = os.path.join(base, name)
    return folders


def pushed_versions(base: str) -> dict[int, dict]:
    """Integer version → its push record ({} when it has none or it is damaged), read from the folder the server
    serves (:func:`version_folders`)."""
    return {version: read_record(folder) for version, folder in version_folders(base).items()}


def read_record(folder: str) -> dict:
    """The push record in the version ``folder`` ({} when it has none or it is damaged)."""
    record_path = os.path.join(folder, PUSH_RECORD)
    if not fileio.exists(record_path):
        return {}
    try:
        with fileio.open(record_path, "r") as f:
            return _checked_record(json.loads(f.read()))
    except ValueError:
        return {}


STALE_STAGING_SECONDS = 3600   # a staging folder nothing was written into for this long is an interrupted push's


def sweep_staging(base: str, now: float | None = None) -> list[str]:
    """Removes the staging folders of interrupted pushes (a kill or a crash mid-copy leaves them; nothing else
    ever would): those nothing was written into for :data:`STALE_STAGING_SECONDS`. The removed names."""
    if "://" in base:
        return []
    return remove_stale_folders(base, INCOMING_PREFIX, STALE_STAGING_SECONDS, now)


def push_model(model_dir: str, base: str, extra_record: dict | None = None) -> tuple[int, bool]:
    """Publishes ``model_dir`` under ``base``; returns (version, copied). Atomic on local filesystems. A process
    asked to stop (core.signals) publishes nothing, its KeyboardInterrupt lost or not."""
    stop_if_requested()
    for name in sweep_staging(base):
        print(f"Pusher: removed {name}, left in {base} by an interrupted push", flush=True)
    files = model_files(model_dir)
    fingerprint = model_fingerprint(model_dir, files)
    folders = version_folders(base)
    # Not pushed again only when it is the newest version, the one TF Serving's latest policy serves; a model
    # identical to an older version (blessed again after another one) is pushed as a new version.
    newest = max(folders, default=None)
    if newest is not None and _holds_model(newest, folders[newest], read_record(folders[newest]), files,
                                           fingerprint):
        return newest, False
    version = max([int(time.time())] + [v + 1 for v in folders])
    if version_number(str(version)) is None:
        raise ValueError(f"{base}: no version number left below 2^63 (TF Serving's limit) after version "
                         f"{newest}; remove its folder {folders[newest]}")
    object_store = "://" in base
    target = os.path.join(base, str(version)) if object_store else \
        os.path.join(base, f"{INCOMING_PREFIX}{version}-{os.getpid()}")
    record = {"version": version, "fingerprint": fingerprint, "model": model_dir,
              "pushed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    record.update(extra_record or {})
    try:
        fileio.makedirs(base)
        if fileio.exists(target):
            fileio.rmtree(target)
        io_utils.copy_dir(model_dir, target, deny_regex_patterns=[r"saved_model\.pb"])
        _write_record(target, record)
        stop_if_requested()   # the last moment before the version is visible
        io_utils.copy_file(os.path.join(model_dir, "saved_model.pb"), os.path.join(target, "saved_model.pb"))
        if not object_store:
            version = _rename_to_free_version(target, base, version, record)
    except BaseException as err:
        _remove_unfinished(target, object_store)
        if isinstance(err, (OSError, tf.errors.OpError)):
            raise PushFailed(base, write_error_reason(err)) from err
        raise
    return version, True


def _holds_model(version: int, folder: str, record: dict, files: list[str], fingerprint: str) -> bool:
    """Whether ``version`` (its ``folder``) holds the model of ``files`` (:func:`model_files`) and ``fingerprint``
    whole: its push record names the model and each of the model's files is there, the same; files added to the
    version since (warm-up requests) do not count. One whose record names the model but whose files are not all
    there (a push on an object store stopped before ``saved_model.pb``, files removed or changed since) is said so
    and left as it is: the model is pushed as a newer version, which a server serves instead (it never loads an
    incomplete one)."""
    if record.get("fingerprint") != fingerprint:
        return False
    if all(fileio.exists(os.path.join(folder, rel)) for rel in files) and \
            model_fingerprint(folder, files) == fingerprint:
        return True
    print(f"Pusher: version {version} ({folder}) lacks files of the model its push record names (an unfinished "
          f"push, or files removed or changed since); left as it is, the model is pushed again as a newer version",
          flush=True)
    return False


def _remove_unfinished(target: str, object_store: bool) -> None:
    """Removes what a failed push wrote: its staging folder (nobody else ever would) or, on an object store, the
    version folder it was writing into, as far as it can: a version left there has no ``saved_model.pb`` (a server
    does not load it) and the next push pushes the model as a newer version (:func:`_holds_model`)."""
    if not object_store:
        if fileio.exists(target):
            fileio.rmtree(target)
        return
    try:
        if fileio.exists(target):
            fileio.rmtree(target)
            print(f"Pusher: the push did not finish; removed its unfinished version {target}", flush=True)
    except Exception as err:  # noqa: BLE001 - best effort: the push's own error is the one to raise
        print(f"Pusher: the push did not finish and its unfinished version {target} could not be removed ({err}); "
              f"the next push pushes the model as a newer version", flush=True)


def _write_record(folder: str, record: dict) -> None:
    fileio.makedirs(os.path.join(folder, os.path.dirname(PUSH_RECORD)))
    with fileio.open(os.path.join(folder, PUSH_RECORD), "w") as f:
        f.write(json.dumps(record, indent=2))


def _rename_to_free_version(staging: str, base: str, version: int, record: dict, attempts: int = 20) -> int:
    """Renames the complete staging folder to ``<base>/<version>``; when another push took that number in the
    meantime (two runs in one second), the next free one, its record rewritten to match."""
    for _ in range(attempts):
        try:
            os.rename(staging, os.path.join(base, str(version)))
            return version
        except OSError as err:
            if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        version = max([version + 1] + [v + 1 for v in version_folders(base)])
        _write_record(staging, dict(record, version=version))
    raise RuntimeError(f"{base}: could not find a free version number after {attempts} attempts")


class Executor(pusher_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties):
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            print("Pusher: the model was not blessed; nothing pushed.", flush=True)
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem":
            raise NotImplementedError("only filesystem push destinations are supported")
        base = destination.filesystem.base_directory
        model_path = self.GetModelPath(input_dict)
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        blessing = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_BLESSING_KEY])
        version, copied = push_model(model_path, base, {"model_artifact_id": model.id,
                                                        "blessing_artifact_id": blessing.id})
        # the folder the version is served from: a model already served may be in one named 0001999999999
        serving_path = version_folders(base).get(version, os.path.join(base, str(version)))
        if copied:
            print(f"Pusher: pushed version {version} to {serving_path}", flush=True)
        else:
            print(f"Pusher: this model is already served as version {version} ({serving_path}); not copied again",
                  flush=True)
        logging.info("pushed %s (copied=%s)", serving_path, copied)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=str(version))
        model_push.set_int_custom_property(COPIED_KEY, int(copied))


def AtomicPusher(model, model_blessing, base_directory: str, infra_blessing=None,
                 every_run: bool = True) -> Pusher:
    """``every_run``: a value of this run in its configuration, so that the Pusher is never a cache hit: it looks
    at the serving dir each time (cheap: a model already served is not copied again) instead of reporting an
    earlier run's push of a version that may have been removed since. False for a spec compiled once (Kubeflow)."""
    custom_config = {"run": time.time_ns()} if every_run else None
    return Pusher(
        custom_config=custom_config,
        model=model,
        model_blessing=model_blessing,
        infra_blessing=infra_blessing,
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base_directory)),
        custom_executor_spec=executor_spec.ExecutorClassSpec(Executor),
    )
