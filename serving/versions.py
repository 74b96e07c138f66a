"""Model versions: loading SavedModels, the version policy, polling and labels (TF Serving's ServerCore).

Each configured model has a :class:`ModelManager` that polls ``<base_path>/<integer version>/`` and keeps
TF Serving's guarantees: only integer-named children count, a new version is loaded before an old one is
unloaded (availability preserving), a version whose load fails is retried, then left in ``END`` with its error
while the previous version keeps serving, and every state a version went through stays listed in status.

As in TF Serving, a poll only records the versions the policy aspires (FileSystemStoragePathSource's
SetAspiredVersions); the loads, and the unloads beside them, run in :class:`ServerCore`'s loader thread
(:meth:`ServerCore.run_loader`, the AspiredVersionsManager's), one at a time, woken by each poll and when a failed
load's retry is due. Polls go on while a version loads, so a version withdrawn meanwhile (its folder removed, or a
newer one aspired in its place) is never loaded.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
import time

import numpy as np
from tensorflow_serving.apis import get_model_status_pb2

from core.deadlines import seconds_left, waitable
from core.model_dirs import missing_variables_index, read_saved_model, saved_model_file, version_number
from core.settings import local_path
from serving import graph_fetch, warmup
from serving.status import (QUOTING_OPS, ServingError, from_exception, io_error_message,
                            undecodable_runtime_message, whole_message)

log = logging.getLogger("serving.versions")

State = get_model_status_pb2.ModelVersionStatus.State


class _InProgress:
    """A count of calls going on in this process, each counted inside ``with counter:``."""

    def __init__(self):
        self.count = 0
        self._lock = threading.Lock()

    def __enter__(self):
        self._step(1)

    def __exit__(self, *exc):
        self._step(-1)

    def _step(self, step: int) -> None:
        with self._lock:
            self.count += step


_runs = _InProgress()              # Servable.run calls going on in this process
_loads = _InProgress()             # version loads (Servable constructions) going on in this process


def runs_in_progress() -> int:
    """The model runs (:meth:`Servable.run` calls) going on in this process. A TensorFlow function cannot be
    stopped: a run whose call ended at its deadline, or that a server's stop cut off, goes on to its end."""
    return _runs.count


def loads_in_progress() -> int:
    """The version loads going on in this process (a loader's, :meth:`ModelManager.load_due`). A SavedModel's load
    and warm-up cannot be stopped: one that a server's stop gave up waiting for goes on to its end."""
    return _loads.count


def _ndarray(tensor) -> np.ndarray:
    """An output tensor's value as an ndarray, of object dtype for strings: ``numpy()`` gives a 0-d string tensor
    as a Python bytes, and a 0-d tensor of another dtype as a numpy scalar."""
    return np.asarray(tensor.numpy(), dtype=object if tensor.dtype.name == "string" else None)


def _undecodable(exc: BaseException) -> UnicodeDecodeError | None:
    """The UnicodeDecodeError of undecodable bytes that ``exc`` is or was raised from, if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UnicodeDecodeError) and isinstance(exc.object, bytes):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _restore_error(path: str, exc: BaseException) -> ServingError:
    """A SavedModel's failed load, as TF Serving's would fail. Without ``variables/variables.index`` TensorFlow's
    C++ LoadSavedModel restores nothing and loads the model, whose every run then fails FAILED_PRECONDITION (Could
    not find variable …), its warm-up first: the load is refused so, in the words TF logs. Otherwise TF's own error:
    tf.saved_model.load raises a restore's NotFoundError again as a FileNotFoundError, with advice for Python's
    LoadOptions (the error it was raised from is taken), and the checkpoint reader's UNKNOWN IOError is given its
    errno's code by :func:`serving.status.from_exception`."""
    index = missing_variables_index(path)
    if isinstance(exc, FileNotFoundError) and index:
        return ServingError("FAILED_PRECONDITION", "The specified SavedModel has no variables; no checkpoints were "
                                                   f"restored. File does not exist: {index}")
    if isinstance(exc, FileNotFoundError) and exc.errno is None and exc.__context__ is not None:
        exc = exc.__context__
    return from_exception(exc)


class Servable:
    """One loaded version: the SavedModel's SignatureDefs (for metadata) and its callable signatures."""

    def __init__(self, name: str, version: int, path: str, metrics=None, runner=None):
        import tensorflow as tf

        self.name = name
        self.version = version
        self.path = path
        graph_path = saved_model_file(path)   # saved_model.pb or .pbtxt, as TF Serving's MaybeSavedModelDirectory
        if graph_path is None:
            raise ServingError("NOT_FOUND", "Specified file path does not appear to contain a SavedModel bundle "
                                            "(should have a file called `saved_model.pb`)\n"
                                            f"Specified file path: {path}")
        try:
            saved_model = read_saved_model(graph_path)
        except ValueError as exc:   # ReadBinaryProto / ReadTextProto
            raise ServingError("DATA_LOSS", str(exc)) from None
        meta_graph = next((m for m in saved_model.meta_graphs if "serve" in m.meta_info_def.tags), None)
        if meta_graph is None:
            raise ServingError("NOT_FOUND", "Could not find meta graph def matching supplied tags: { serve }. "
                                            "To inspect available tag-sets in the SavedModel, please use the "
                                            "SavedModel CLI: `saved_model_cli`")
        # a dict, not the proto's map: a request's signature name that is not UTF-8 (a REST body's) is looked up
        # as any other name, not refused by the map's encoding
        self.signature_defs = dict(meta_graph.signature_def)
        self.graph_def = meta_graph.graph_def   # what a signature with no function fetches (serving.graph_fetch)
        # {signature: {input alias: DataType enum}}, read once: a loaded version never changes.
        self.input_dtypes = {name: {alias: info.dtype for alias, info in sig.inputs.items()}
                             for name, sig in self.signature_defs.items()}
        self._tf_input_dtypes = {name: {alias: tf.dtypes.as_dtype(dtype) for alias, dtype in inputs.items()}
                                 for name, inputs in self.input_dtypes.items()}
        try:
            self.module = tf.saved_model.load(path, tags=["serve"])
        except (FileNotFoundError, tf.errors.OpError) as exc:
            raise _restore_error(path, exc) from None
        self.functions = dict(self.module.signatures)
        self._quoting_nodes = {}    # signature name -> quoting_nodes(), read when first needed
        self.batchers = {}          # (signature name, outputs) -> serving.batching.Batcher (set by the server)
        self._batchers_lock = threading.Lock()
        self.closed = False
        run = None if runner is None else functools.partial(runner, self)
        try:
            self.warmup_requests = warmup.replay(self, metrics, run)   # before AVAILABLE, as TF Serving does
        except BaseException:
            self.close()          # the batch queues its records went through
            raise

    def run(self, signature_name: str, arrays: dict, outputs=None) -> dict:
        """Calls one signature on numpy inputs; returns {output alias: numpy array} of the aliases ``outputs`` (None:
        every output), as a session run fetches only the tensors it names. Counted in :func:`runs_in_progress` until
        it ends."""
        with _runs:
            return self._run(signature_name, arrays, outputs)

    def _run(self, signature_name: str, arrays: dict, fetched=None) -> dict:
        import tensorflow as tf

        function = self.functions.get(signature_name)
        if function is None:   # outputs that are no tensors (__saved_model_init_op's NoOp), fetched as TF does
            raise (graph_fetch.missing_output(self.signature_defs[signature_name], self.graph_def, fetched)
                   or ServingError("INVALID_ARGUMENT", f"Signature {signature_name} is not callable"))
        dtypes = self._tf_input_dtypes[signature_name]
        feeds = {alias: tf.constant(array, dtype=dtypes[alias]) for alias, array in arrays.items()}
        try:
            outputs = function(**feeds)
        except tf.errors.OpError as exc:  # TF runtime errors pass through with their code
            error = from_exception(exc)
            raise ServingError(error.code, self._whole_message(signature_name, arrays, exc.message.encode())
                               or error.message) from None
        except (UnicodeDecodeError, TypeError) as exc:
            # A TF error quoting input bytes that are not UTF-8 (its code is lost), raised as it is or, when the
            # inputs did not fit the signature's shapes and TF retried on the flat signature, inside a TypeError.
            undecodable = _undecodable(exc)
            if undecodable is None:
                raise
            raise ServingError("INVALID_ARGUMENT", self._whole_message(signature_name, arrays, undecodable.object)
                               or undecodable_runtime_message(undecodable.object)) from None
        return {alias: _ndarray(tensor) for alias, tensor in outputs.items() if fetched is None or alias in fetched}

    def _whole_message(self, signature_name: str, arrays: dict, raw: bytes) -> str | None:
        """A runtime error's message (``raw``) that TF's Python binding cut at a NUL byte of an input value it
        quoted, made whole again from the value (:func:`serving.status.whole_message`); None if it was not cut."""
        values = [value for array in arrays.values() if array.dtype.kind in "OS" for value in array.flat
                  if isinstance(value, bytes) and b"\0" in value]
        return whole_message(raw, values, self.quoting_nodes(signature_name)) if values else None

    def quoting_nodes(self, signature_name: str) -> dict:
        """{node name: op type} of the signature's nodes whose errors quote an input value's bytes
        (serving.status.QUOTING_OPS), in its function and the functions it calls; read once, when first needed."""
        nodes = self._quoting_nodes.get(signature_name)
        if nodes is None:
            graph = self.functions[signature_name].graph.as_graph_def()
            nodes = self._quoting_nodes[signature_name] = {
                node.name: node.op for node in [*graph.node, *(n for f in graph.library.function for n in f.node_def)]
                if node.op in QUOTING_OPS}
        return nodes

    def batcher(self, key: tuple, factory):
        """The batch queue of ``key`` (a signature name and the outputs its runs fetch, see
        :meth:`serving.server.Server._batcher`), made by ``factory(self, key)`` when first asked for, or None once
        the version is unloaded (requests that resolved it just before are then run directly)."""
        with self._batchers_lock:
            if self.closed:
                return None
            batcher = self.batchers.get(key)
            if batcher is None:
                batcher = self.batchers[key] = factory(self, key)
            return batcher

    def close(self):
        with self._batchers_lock:
            self.closed = True
            for batcher in self.batchers.values():
                batcher.close()
            self.batchers.clear()


class _VersionRecord:
    __slots__ = ("state", "error_code", "error_message", "attempts", "retry_at", "last_error")

    def __init__(self):
        self.state = State.START
        self.error_code = "OK"
        self.error_message = ""
        self.attempts = 0
        self.retry_at = 0.0
        self.last_error = None    # (code, message) of the last failed attempt, shown once the retries stop


def not_available(what: str, failures) -> ServingError:
    """TF Serving's error when servables it waited for did not load (load_servables_fast.cc at start-up,
    "servable(s)"; ServerCore::WaitUntilModelsAvailable after a reload, "model(s)"): ``failures`` is
    [(model name, (version, record) or None)], as :func:`settled_failures` gives them; a version that ended without
    an error is named without one."""
    entries = [f"{{{{name: {name} version: {version}}}{_due_to(record)}}}, "
               for name, failure in sorted(failures, key=lambda item: item[0]) if failure
               for version, record in [failure]]
    return ServingError("UNKNOWN", f"{len(entries)} {what} did not become available: {{{''.join(entries)}}}")


def _due_to(record: _VersionRecord) -> str:
    """" due to error: CODE: message" of a version that ended with an error, "" of one that ended without."""
    return "" if record.error_code == "OK" else f" due to error: {record.error_code}: {record.error_message}"


def settled_failures(managers, settled) -> list | None:
    """Where TF Serving's wait for Latest(model) of each of ``managers`` ends: None while ``settled(manager)``
    (:meth:`ModelManager.latest_settled` at start-up, :meth:`ModelManager.newest_settled` after a reload) gives
    nothing for one of them, else [(model name, (version, record) of the version it ended on if that one ended
    (END) rather than became AVAILABLE, else None)], for :func:`not_available`."""
    outcomes = [(manager.name, settled(manager)) for manager in managers]
    if not all(outcome for _, outcome in outcomes):
        return None
    return [(name, None if record.state == State.AVAILABLE else (version, record))
            for name, (version, record) in outcomes]


def list_versions(base_path: str, model_name: str, warn: bool = True, policy=None,
                  refused: dict | None = None) -> dict | None:
    """{version: path} of the integer-named children, or None if the base path cannot be read. The children are
    taken as TF Serving lists them, sorted by name (PollFileSystemForServable's std::set: byte order, which is
    code-point order for these ASCII names). Of two names for one version ("2" and "002") the last is served, as
    IndexChildrenByVersion, which logs what it finds amiss (``warn``; a tool listing versions for its user does
    not), picks it for the latest and specific policies; under an ``all`` ``policy`` the first: AspireAllVersions
    aspires every child as listed, and the manager refuses the second as a version already managed. ``refused``,
    if given, gets {version: [the paths refused so]}. A file:// base path is read as its local path, the versions'
    paths too (:func:`core.settings.local_path`)."""
    warning = log.warning if warn else (lambda *args: None)
    named, base_path = base_path, local_path(base_path)
    try:
        names = sorted(os.listdir(base_path))
    except OSError as exc:
        if warn:
            log.error("FileSystemStoragePathSource encountered a filesystem access error: %s",
                      base_path_error(named, model_name, exc))
        return None
    first = policy is not None and policy.WhichOneof("policy_choice") == "all"
    versions = {}
    for name in names:   # sorted, and the last of two names for one version wins (IndexChildrenByVersion)
        version = version_number(name)
        if version is None:
            continue
        if version in versions:
            warning("Duplicate version directories detected. Version %d will be loaded from %s, %s will be "
                        "ignored.", version, name, os.path.basename(versions[version]))
            if first:
                if refused is not None:
                    refused.setdefault(version, []).append(os.path.join(base_path, name))
                continue
        versions[version] = os.path.join(base_path, name)
    return versions


def base_path_error(base_path: str, model_name: str, exc: OSError) -> str:
    """TF Serving's words for a base path it cannot read (PollFileSystemForServable): FileExists' NOT_FOUND when
    there is nothing at the path, else GetChildren's error (its IOError: the path and the errno's text)."""
    if not os.access(local_path(base_path), os.F_OK):
        return (f"Could not find base path {base_path} for servable {model_name} with error "
                f"NOT_FOUND: {base_path} not found")
    return io_error_message(base_path, exc)


def aspired_versions(policy, available: dict, model_name: str, warn: bool = True) -> dict:
    """Applies a ``FileSystemStoragePathSourceConfig.ServableVersionPolicy`` to {version: path}; a ``specific``
    version not found is logged, as TF Serving does (``warn``; a tool reading the config for its user does not)."""
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return dict(available)
    if which == "specific":
        chosen = {}
        for version in policy.specific.versions:
            if version in available:
                chosen[version] = available[version]
            elif warn:
                log.warning("Version %d of servable %s, which was requested to be served as a 'specific' version "
                            "in the servable's version policy, was not found in the file system",
                            version, model_name)
        return chosen
    count = max(policy.latest.num_versions, 1) if which == "latest" else 1
    return {v: available[v] for v in sorted(available, reverse=True)[:count]}


class ModelManager:
    """Versions of one model: what is aspired, loading, serving, and every state seen (for status)."""

    def __init__(self, model_config, options, on_loaded=None, metrics=None, runner=None, on_settled=None):
        self.name = model_config.name
        self.metrics = metrics                 # serving.metrics.Metrics: the warm-up's metrics
        self.runner = runner                   # runner(servable, signature name, arrays): the warm-up's runs
        self.model_config = model_config
        self.options = options
        self.labels = dict(model_config.version_labels)
        self.records: dict[int, _VersionRecord] = {}
        self.servables: dict[int, Servable] = {}
        self.aspired: dict[int, str] = {}
        self.refused: dict[int, list[str]] = {}   # the last poll's other folders of a version (all policy)
        self.removed = False
        self.loading: int | None = None        # the version whose load attempt is running (one at a time)
        # The managers of this model removed from the config before it was added again, while they still load or
        # hold a version (see :meth:`aspire`); they share ``records``.
        self.predecessors: list[ModelManager] = []
        self._lock = threading.RLock()
        self._on_loaded = on_loaded
        self._on_settled = on_settled          # called after each load attempt (ServerCore's waits look again)

    # -------------------------------------------------------------------------------------- lookups
    def resolve(self, version: int | None = None, label: str | None = None) -> Servable:
        """The servable asked for; none of a model removed from the config (a load that was running when it
        was removed finishes, and is then unloaded, unserved)."""
        with self._lock:
            servables = {} if self.removed else self.servables
            if label is not None:
                if label not in self.labels:
                    raise ServingError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
                version = self.labels[label]
            if version is None:
                if not servables:
                    raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({self.name})")
                return servables[max(servables)]
            servable = servables.get(version)
            if servable is None:
                raise ServingError("NOT_FOUND", f"Servable not found for request: Specific({self.name}, {version})")
            return servable

    def status(self, version: int | None = None) -> get_model_status_pb2.GetModelStatusResponse:
        response = get_model_status_pb2.GetModelStatusResponse()
        with self._lock:
            if version is not None:
                if version not in self.records:
                    raise ServingError("NOT_FOUND", f"Could not find version {version} of model {self.name}")
                versions = [version]
            else:
                if not self.records:
                    raise ServingError("NOT_FOUND", f"Could not find any versions of model {self.name}")
                versions = sorted(self.records, reverse=True)
            for v in versions:
                record = self.records[v]
                entry = response.model_version_status.add()
                entry.version = v
                entry.state = record.state
                entry.status.error_code = record.error_code
                entry.status.error_message = record.error_message
        return response

    def available_versions(self) -> list:
        with self._lock:
            return sorted(self.servables)

    def latest_settled(self):
        """At start-up: (version, record) of the highest version that reached AVAILABLE or END, None while none has.
        TF Serving's wait for Latest(model) ends on it (ServableStateMonitor's HasAnyServableInStreamReachedState:
        the highest version of the stream in either state), as soon as one version settles, a higher one still
        loading or retrying. TF Serving starts the loads newest first; so does :meth:`load_due`."""
        with self._lock:
            settled = [v for v, record in self.records.items() if record.state in (State.AVAILABLE, State.END)]
            return (max(settled), self.records[max(settled)]) if settled else None

    def newest_settled(self):
        """After a config reload: (version, record) of the newest aspired version once it is AVAILABLE or END, else
        None. After start-up TF Serving loads one version at a time, newest first, a failed load's retries holding
        the others (--num_load_threads=0), so the first version to settle, the one its wait for Latest(model) ends
        on, is the newest, even if an older one would load."""
        with self._lock:
            if not self.aspired:
                return None
            newest = max(self.aspired)
            record = self.records[newest]
            return (newest, record) if record.state in (State.AVAILABLE, State.END) else None

    # -------------------------------------------------------------------------------------- polling
    def find(self) -> dict | None:
        """What one poll of the base path finds: the {version: path} the version policy aspires to, or None if the
        base path cannot be read (FileSystemStoragePathSource's PollFileSystemForServable)."""
        base_path = self.model_config.base_path
        policy = self.model_config.model_version_policy
        self.refused = {}
        found = list_versions(base_path, self.name, policy=policy, refused=self.refused)
        if found is None:
            return None
        aspired = aspired_versions(policy, found, self.name)
        if not aspired:   # no numeric folder, or none of the 'specific' versions
            log.warning("No versions of servable %s found under base path %s. Did you forget to name your leaf "
                        "directory as a number (eg. '/1/')?", self.name, base_path)
        return aspired

    def aspire(self, aspired: dict) -> None:
        """Takes ``aspired`` ({version: path}, from :meth:`find`) as the versions to serve, as
        AspiredVersionsManager::SetAspiredVersions records them: :meth:`load_due` (the loader's) loads them and
        unloads what is no longer aspired. A version withdrawn while waiting to retry its load ends with its error
        (CancelLoadServableRetry); one whose load is running finishes it (and is then unloaded, or ends); one never
        started stays in START, the last state published for it (FlushServables stops managing it, publishing
        nothing, and TF Serving's status shows what its ServableStateMonitor last saw).

        Of a model added again to the config, ``aspired`` is left for a later poll while it lists a version the
        model's removed manager (:attr:`predecessors`) still loads or holds, as AspiredVersionsManager's
        HandlePendingAspiredVersionsRequests postpones a request that aspires again a version still managed
        (ContainsAnyReaspiredVersions) until it has been unloaded: the first poll after that aspires it afresh, its
        END record back in START, and it loads again."""
        if self.removed:
            return
        with self._lock:
            held = self._held_by_predecessors()
            if held & aspired.keys():
                log.debug("Postponing processing of aspired versions request due to re-aspired version(s) among: %s",
                          ", ".join(f"{{name: {self.name} version: {v}}}" for v in aspired))
                return
            for version in list(self.records):
                record = self.records[version]
                if (version not in aspired and record.state == State.LOADING and version != self.loading
                        and version not in held):
                    self._end_with_last_error(record)   # aspiration withdrawn while retrying
            for version in aspired:
                record = self.records.get(version)
                if record is None or (record.state == State.END and version not in self.aspired):
                    self.records[version] = _VersionRecord()
                if version not in self.aspired:
                    self._log_refused(version)
            self.aspired = aspired

    def _held_by_predecessors(self) -> set:
        """The versions the removed managers of this model still load or hold (:meth:`held`); those that hold none
        are forgotten."""
        held = {predecessor: predecessor.held() for predecessor in self.predecessors}
        self.predecessors = [predecessor for predecessor, versions in held.items() if versions]
        return set().union(*held.values())

    def held(self) -> set:
        """The versions whose load is running here or that are loaded here, and those this manager's own
        predecessors still load or hold."""
        with self._lock:
            versions = set(self.servables) | ({self.loading} if self.loading is not None else set())
            return versions | self._held_by_predecessors()

    def _log_refused(self, version: int) -> None:
        """Logs, as AspiredVersionsManager does when a version becomes aspired, each other folder of ``version``
        that the last poll aspired too (:meth:`find`'s ``refused``: the ``all`` policy's duplicates), refused as a
        version already being managed."""
        servable = f"{{name: {self.name} version: {version}}}"
        for _ in self.refused.get(version, ()):
            log.error("Internal error: Unable to transfer servable %s to 'basic_manager_': This servable is already "
                      "being managed: %s", servable, servable)

    def load_due(self, stop: threading.Event | None = None) -> None:
        """Loads the aspired versions whose load is due (not started, or a failed one whose retry interval has
        passed), newest first, unloading what :meth:`_unload_unaspired` lets go before each load it starts and
        after the last: AspiredVersionsManager takes one action at a time and unloads ahead of loads, so a version
        no longer aspired goes before a new one loads once an aspired version is ready. TF Serving's manager
        retries a failed load on its own, whether the file system is polled or not. Only the loader thread (or,
        without one, a test) calls it: one load at a time. Once ``stop`` is set no load starts (one running
        finishes)."""
        with self._lock:
            aspired = dict(self.aspired)
        now = time.monotonic()
        for version in sorted(aspired, reverse=True):
            if stop is not None and stop.is_set():
                return
            record = self.records[version]
            if self._begin_load(version, record, now):
                self._unload_unaspired()
                self._load(version, aspired[version], record)
                if self._on_settled is not None:
                    self._on_settled()
        self._unload_unaspired()

    def next_retry(self) -> float | None:
        """When (time.monotonic()) the next retry of a failed load is due, None if no load waits for one."""
        with self._lock:
            return min((self.records[v].retry_at for v in self.aspired
                        if self.records[v].state == State.LOADING and v != self.loading), default=None)

    def _begin_load(self, version: int, record: _VersionRecord, now: float) -> bool:
        """Whether ``version`` starts (or retries) its load now, marked LOADING if so, in one hold of the lock, so a
        removal cannot come between the check and the load. TF Serving loads only aspired versions
        (AspiredVersionPolicy::GetHighestAspiredNewServableId), and a model removed from the config, or a poll
        since, withdraws them; a version never started stays in START, as FlushServables publishes no event."""
        with self._lock:
            due = record.state == State.START or (record.state == State.LOADING and now >= record.retry_at)
            if not due or not self._aspired(version):
                return False
            record.state = State.LOADING
            self.loading = version
            return True

    def _aspired(self, version: int) -> bool:
        """Whether ``version`` is still aspired: its model is in the config and the last poll listed it. The caller
        holds the lock."""
        return not self.removed and version in self.aspired

    @staticmethod
    def _end_with_last_error(record: _VersionRecord) -> None:
        """Stops the retries of a version not loaded: its retries ran out, or it is no longer aspired
        (AspiredVersionsManager's CancelLoadServableRetry), and, as LoaderHarness::ErrorInternal publishes it, it
        ends in END with the error of its last attempt. The caller holds the lock."""
        record.state = State.END
        if record.last_error is not None:
            record.error_code, record.error_message = record.last_error

    def _load(self, version: int, path: str, record: _VersionRecord) -> None:
        """Loads a version :meth:`_begin_load` marked LOADING."""
        log.info("Loading servable: {name: %s version: %d} from %s", self.name, version, path)
        started = time.monotonic()
        try:
            with _loads:
                servable = Servable(self.name, version, path, self.metrics, self.runner)
        except Exception as exc:  # noqa: BLE001 - any load failure is reported in status
            error = from_exception(exc)
            with self._lock:
                self.loading = None
                record.attempts += 1
                record.last_error = (error.code, error.message)
                if record.attempts > self.options.max_num_load_retries or not self._aspired(version):
                    self._end_with_last_error(record)
                    log.error("Failed to load servable {name: %s version: %d}: %s", self.name, version,
                              error.message)
                else:
                    record.retry_at = time.monotonic() + self.options.load_retry_interval_micros / 1e6
                    log.warning("Loading servable {name: %s version: %d} failed (attempt %d), will retry: %s",
                                self.name, version, record.attempts, error.message)
            return
        if self._on_loaded is not None:
            self._on_loaded(servable)
        with self._lock:
            self.loading = None
            self.servables[version] = servable
            record.state = State.AVAILABLE
            record.error_code, record.error_message = "OK", ""
        log.info("Successfully loaded servable version {name: %s version: %d} in %.2fs (%d warm-up requests)",
                 self.name, version, time.monotonic() - started, servable.warmup_requests)

    def _unload_unaspired(self) -> None:
        """AvailabilityPreservingPolicy::GetNextAction, repeated until it has nothing to unload: the lowest ready
        version no longer aspired goes when no version is aspired, when an aspired one is ready, or while more
        than one such version is ready (so one old version keeps serving while the new ones load)."""
        with self._lock:
            ready_aspired = any(v in self.servables for v in self.aspired)
            unaspired = sorted(v for v in self.servables if v not in self.aspired)
            doomed = unaspired if ready_aspired or not self.aspired else unaspired[:-1]
            if not doomed:
                return
            for version in doomed:
                self.records[version].state = State.UNLOADING
        for version in doomed:
            self._unload(version)

    def _unload(self, version: int) -> None:
        with self._lock:
            servable = self.servables.pop(version, None)
            self.records[version].state = State.END
        if servable is not None:
            servable.close()
            log.info("Unloaded servable version {name: %s version: %d}", self.name, version)

    def unload_all(self) -> None:
        """Removes the model: nothing is aspired, the loaded versions are unloaded and the versions waiting to
        retry a load end with its error; a load attempt running finishes (and is then unloaded, or ends)."""
        self.removed = True
        with self._lock:
            versions, aspired = list(self.servables), self.aspired
            self.aspired = {}
            for version, record in self.records.items():   # shared with predecessors: their loads are theirs
                if record.state == State.LOADING and version != self.loading and version in aspired:
                    self._end_with_last_error(record)
        for version in versions:
            self._unload(version)


def check_labels(model_config, manager: ModelManager | None, allow_unavailable: bool) -> None:
    """Labels may only point at AVAILABLE versions (new labels exempt with the 'unavailable' flag)."""
    current = manager.labels if manager is not None else {}
    available = set(manager.available_versions()) if manager is not None else set()
    for label, version in model_config.version_labels.items():
        if version in available:
            continue
        if allow_unavailable and label not in current:
            continue
        if allow_unavailable and current.get(label) == version:
            continue
        raise ServingError("FAILED_PRECONDITION",
                           f"Request to assign label to version {version} of model {model_config.name}, which is "
                           f"not currently available for inference")


class StopEvent(threading.Event):
    """A stop that, once set, also wakes what waits on ``changed`` (a threading.Condition): the loader, and the
    waits for it (:meth:`ServerCore.wait_for`), end at the stop as at their own wake-ups."""

    def __init__(self, changed: threading.Condition):
        super().__init__()
        self._changed = changed

    def set(self) -> None:
        super().set()
        with self._changed:
            self._changed.notify_all()


class ServerCore:
    """All models of a ``ModelServerConfig``; (re)applies configs, polls the file system and, in the loader
    thread (:meth:`run_loader`), loads and unloads versions, until ``stop_event`` is set."""

    def __init__(self, options, on_loaded=None, metrics=None, runner=None):
        self.options = options
        self.metrics = metrics
        self.runner = runner
        self.managers: dict[str, ModelManager] = {}
        self.config_case: str | None = None    # the kind of config served (ModelServerConfig's oneof); None: none yet
        self._lock = threading.RLock()
        self._on_loaded = on_loaded
        # Notified when a poll wakes the loader (_woken), when a load settles, when the loader has done what it was
        # woken for (_busy), and at the stop.
        self._changed = threading.Condition()
        self._woken = False
        self._busy = False
        self.stop_event = StopEvent(self._changed)

    def manager(self, name: str) -> ModelManager | None:
        return self.managers.get(name)

    def check_transition(self, config) -> None:
        """ServerCore::ReloadConfig's first check, in its words: once a config is served, only another
        ModelConfigList may follow it (FAILED_PRECONDITION), so neither a config with no models (a config file of
        comments only) nor a custom_model_config."""
        if self.config_case is not None and not self.config_case == config.WhichOneof("config") == "model_config_list":
            raise ServingError("FAILED_PRECONDITION", "Cannot transition to requested config. It is only legal to "
                                                      "transition from one ModelConfigList to another.")

    def apply_config(self, config) -> None:
        """Realises exactly ``config``: adds, updates and removes models. Raises without changing anything if the
        config may not follow the one served (:meth:`check_transition`) or a label points at a version that is not
        available. An empty config changes nothing while nothing was configured (a config file of comments only
        at start-up), as in TF Serving's ServerCore::ReloadConfig, which then takes a later config as a first."""
        self.check_transition(config)
        if config.WhichOneof("config") is None:
            log.info("Taking no action for empty config.")
            return
        models = list(config.model_config_list.config)
        with self._lock:
            for model in models:
                check_labels(model, self.managers.get(model.name),
                             self.options.allow_version_labels_for_unavailable_models)
            self.config_case = config.WhichOneof("config")
            log.info("Adding/updating models.")
            for model in models:   # CreateStoragePathSourceConfig's line, one a model
                log.info(" (Re-)adding model: %s", model.name)
            wanted = {m.name for m in models}
            for name, manager in list(self.managers.items()):
                if name not in wanted and not manager.removed:
                    log.info("Unloading model %s (no longer in the config)", name)
                    manager.unload_all()
                    manager.labels = {}   # the label map is the new config's alone (UpdateModelVersionLabelMap)
            for model in models:
                manager = self.managers.get(model.name)
                if manager is None or manager.removed:
                    self.managers[model.name] = ModelManager(model, self.options, self._on_loaded, self.metrics,
                                                                self.runner, self._notify)
                    if manager is not None:   # keep the states seen so far, as the state monitor does
                        self.managers[model.name].records = manager.records
                        self.managers[model.name].predecessors = [manager]
                else:
                    manager.model_config = model
                    manager.labels = dict(model.version_labels)
            order = {model.name: index for index, model in enumerate(models)}   # the file-system poll's order
            self.managers = dict(sorted(self.managers.items(), key=lambda item: order.get(item[0], len(order))))

    def poll(self) -> None:
        """One file-system poll of every model, as TF Serving's FileSystemStoragePathSource polls: every base path is
        read (:meth:`ModelManager.find`), in the config's order, before any model's versions change, and one that
        cannot be read ends the poll there (PollFileSystemForConfig's TF_RETURN_IF_ERROR): while a model's base path
        is missing, no model's aspired versions change (the retries of failed loads, the loader's, still run). The
        versions found are recorded (:meth:`ModelManager.aspire`) and the loader woken; the poll loads nothing."""
        managers = self._models()
        found = self._find_all(managers)
        if found is None:
            return
        self._each_model(lambda manager: manager.aspire(found[manager.name]), managers)
        with self._changed:
            self._woken = True
            self._changed.notify_all()

    @staticmethod
    def _find_all(managers: list) -> dict | None:
        """{model name: what :meth:`ModelManager.find` finds} for ``managers``, found in turn; None at the first
        base path that cannot be read, or the first error (logged)."""
        found = {}
        for manager in managers:
            try:
                aspired = manager.find()
            except Exception:  # noqa: BLE001 - a poll error must never stop the poller
                log.exception("Polling model %s failed", manager.name)
                return None
            if aspired is None:
                return None
            found[manager.name] = aspired
        return found

    def load_due(self) -> None:
        """The loads due in every model, their versions not polled (:meth:`ModelManager.load_due`), none started
        once ``stop_event`` is set."""
        self._each_model(lambda manager: manager.load_due(self.stop_event))

    def run_loader(self) -> None:
        """The loader thread's work, as AspiredVersionsManager's threads: the loads (and unloads) due in every model
        (:meth:`load_due`), one at a time, each time a poll has woken it and whenever a failed load's retry is due,
        until ``stop_event`` is set: a load running then finishes, no other starts, and the loader ends. Polls go on
        meanwhile, so a version they withdraw during another's load is not loaded (ModelManager._begin_load looks just
        before each load)."""
        while True:
            retry = self._until_retry()
            with self._changed:
                self._changed.wait_for(lambda: self._woken or self.stop_event.is_set(), waitable(retry))
                if self.stop_event.is_set():
                    return
                self._woken, self._busy = False, True
            try:
                self.load_due()
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()

    def _notify(self) -> None:
        """Wakes the waits of :meth:`wait_for`: a load has settled."""
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, outcome, seconds: float | None = None):
        """``outcome()`` once it gives something other than None, looked at now and again after each poll and each
        load the loader settles; None if ``seconds`` (None: no end) pass first, or once ``stop_event`` is set."""
        found = None

        def ready():
            nonlocal found
            found = None if self.stop_event.is_set() else outcome()
            return self.stop_event.is_set() or found is not None

        with self._changed:
            self._changed.wait_for(ready, waitable(seconds))
        return found

    def _each_model(self, step, managers=None) -> None:
        """Runs ``step(manager)`` for every model in the config (or of ``managers``); an error is logged, and the
        others go on."""
        for manager in self._models() if managers is None else managers:
            try:
                step(manager)
            except Exception:  # noqa: BLE001 - a poll error must never stop the poller
                log.exception("Polling model %s failed", manager.name)

    def _models(self) -> list:
        """The managers of the models in the config."""
        with self._lock:
            return [m for m in self.managers.values() if not m.removed]

    def wait_until_settled(self, poll_seconds: float) -> None:
        """Initial load, the loader thread (:meth:`run_loader`) running: returns once the loader has run the loads
        the polls made due and a version of every model has settled (:meth:`ModelManager.latest_settled`), the
        highest settled version of each AVAILABLE; raises if one of them ended instead, as TF Serving's start fails,
        even though an older version loaded. A failed version still retrying is retried by the loader after the
        start. The file system is polled every ``poll_seconds``
        (--file_system_poll_wait_seconds; one poll and one "Could not find base path" per interval), with 0 once,
        with a negative value never, as TF Serving's FileSystemStoragePathSource: a version found by no poll is
        never loaded, and the wait for it lasts until ``stop_event`` is set."""
        next_poll = 0.0 if poll_seconds >= 0 else None
        while not self.stop_event.is_set():
            if next_poll is not None and time.monotonic() >= next_poll:
                self.poll()
                next_poll = time.monotonic() + poll_seconds if poll_seconds > 0 else None
            failures = self.wait_for(self._settled_at_start,
                                     None if next_poll is None else seconds_left(next_poll))
            if failures is not None:
                if any(failure for _, failure in failures):
                    raise not_available("servable(s)", failures)
                return

    def _settled_at_start(self) -> list | None:
        """:func:`settled_failures` of the start-up (:meth:`ModelManager.latest_settled`), once the loader has run
        the loads the polls so far made due (a failed load's later retries aside), as each poll had run them before
        the start looked: None until then. The caller holds ``_changed``."""
        if self._woken or self._busy:
            return None
        return settled_failures(self._models(), ModelManager.latest_settled)

    def _until_retry(self) -> float | None:
        """Seconds until a failed load is due to be retried, None if none waits for a retry."""
        due = [when for when in (m.next_retry() for m in self._models()) if when is not None]
        return max(min(due) - time.monotonic(), 0.0) if due else None

    def unload_all(self) -> None:
        for manager in list(self.managers.values()):
            manager.unload_all()
