"""Pushed model versions: list them with their evaluation, promote one to a label, roll a label back.

    letters-releases list
    letters-releases promote 1795263883 --label canary     # --config serving/models/models.config
    letters-releases rollback --label stable

``list`` joins the serving directory (what the Pusher wrote, with its push records) with ML Metadata (the
Evaluator's metrics and blessing for the same model). ``promote`` points a version label (``stable``,
``canary``) at a pushed version in a TF Serving ``models.config`` (refused for a version ``list`` marks not
loadable) and keeps every labelled version loaded, plus the version the label left, the version each label's
rollback would go back to, and what the config served before (``specific`` version policy, only versions the
serving dir holds; a label on a version it does not hold, such as the shipped config's placeholders, is removed
with a note); with a running server the label moves only once that server has loaded the version; the file is
replaced atomically (of its comments, those it starts with are kept), and both TF Serving and the embedded server
re-read it (``--model_config_file_poll_wait_seconds``). ``rollback`` moves the label back to the version it
pointed at before its last promotion (recorded in ``<config>.history.json``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from components.atomic_pusher import pushed_versions
from core import configs, model_dirs
from core.files import atomic_write, exclusive, waiting_for
from core.signals import interrupts_held, sigterm_as_interrupt
from core.configs import Config
from pipeline.flags import defaults_from_env, path_or_default
from serving import protos
from serving import versions as serving_versions
from serving.client import RestConnection, ServingUnavailable, parse_base_url, version_errors, version_states
from serving.config import repeated_model_error

LABELS = ("stable", "canary")
# A failed load is retried --max_num_load_retries times, --load_retry_interval_micros apart (5 x 60 s by default),
# and meanwhile the version's status is LOADING with an OK status in TF Serving (its LoaderHarness publishes the
# error only with END), so a promote's wait cannot see why: this says where to look.
RETRYING_NOTE = ("; a server whose load failed retries it (--max_num_load_retries, --load_retry_interval_micros: "
                 "5 x 60 s by default) and reports LOADING without the error meanwhile: its log says why")
# Why a server has not applied a config, when no label of it explains it (:func:`_refusal`): one that never re-reads
# it (--model_config_file_poll_wait_seconds 0), or reads another file, says nothing a wait can see.
NOT_APPLIED_NOTE = "(it re-reads it every --model_config_file_poll_wait_seconds, when set; its log says why not)"
# A version's state on a server that has not applied a config serving it: the version not in the model's status, or
# the model not served at all (TF Serving's NOT_FOUND for its status).
UNSEEN_STATES = ("NOT_TRACKED", "HTTP 404")
WAIT_REPORT_SECONDS = 5   # promote: how often a wait for the server to load the version is reported


class Interrupted(KeyboardInterrupt):
    """A stop (Ctrl-C, SIGTERM) during a label change, saying what it left as it was and what not."""


# ---------------------------------------------------------------------------------------------- list
def evaluations_by_model(metadata_file: str) -> dict[int, dict]:
    """Model artifact id → {'uri', 'runs': [{'blessing_id', 'blessed', 'top1', 'top3', 'evaluated_at'}, ...]},
    one per Evaluator run on it, oldest first."""
    from ml_metadata.proto import metadata_store_pb2
    from pipeline.run_summary import evaluation_metrics, feedback_images, open_store
    if not os.path.exists(metadata_file):
        return {}
    try:
        store = open_store(metadata_file)
        evaluations = store.get_artifacts_by_type("ModelEvaluation")
        blessings = store.get_artifacts_by_type("ModelBlessing")
    except RuntimeError as err:   # not an ML Metadata SQLite file
        raise ValueError(f"cannot read the ML Metadata store {metadata_file}: {str(err).splitlines()[0]}") from None
    result: dict[int, dict] = {}
    by_id = {a.id: a for a in evaluations + blessings}
    blessing_ids = {a.id for a in blessings}
    events = store.get_events_by_artifact_ids(list(by_id)) if by_id else []
    executions = {}
    for ev in events:
        if ev.type == metadata_store_pb2.Event.OUTPUT:
            executions.setdefault(ev.execution_id, []).append(by_id[ev.artifact_id])
    for execution_id, outputs in sorted(executions.items()):
        inputs = store.get_events_by_execution_ids([execution_id])
        model_ids = [ev.artifact_id for ev in inputs if ev.type == metadata_store_pb2.Event.INPUT
                     and ev.path.steps and ev.path.steps[0].key == "model"]
        if not model_ids:
            continue
        entry = {}
        for artifact in outputs:
            if artifact.id in blessing_ids:
                entry["blessing_id"] = artifact.id
                entry["blessed"] = bool(artifact.custom_properties["blessed"].int_value) \
                    if "blessed" in artifact.custom_properties else None
            else:
                try:
                    overall = evaluation_metrics(artifact.uri)["overall"]
                except Exception:  # an evaluation whose files are gone: list what is known
                    overall = {}
                entry["top1"] = overall.get(configs.ACCURACY_METRIC)
                entry["top3"] = overall.get(configs.TOP3_METRIC)
                entry["evaluated_at"] = time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(artifact.create_time_since_epoch / 1000))
        result.setdefault(model_ids[0], {"runs": []})["runs"].append(entry)   # executions sorted by id: oldest first
    for model in store.get_artifacts_by_id(list(result)) if result else []:
        result[model.id]["uri"] = model.uri
        result[model.id]["feedback_images"] = feedback_images(store, model.id)
    return result


def push_evaluation(record: dict, evaluations: dict[int, dict]) -> dict:
    """The evaluation a pushed version went out under: its push record's blessing, else (an older record) the
    newest run that blessed its model, else the newest. {} when this store did not train it: artifact ids restart
    in every ML Metadata store, so the record's model folder must be the artifact's."""
    model = evaluations.get(record.get("model_artifact_id"))
    if not model or not model.get("uri") or not str(record.get("model", "")).startswith(model["uri"].rstrip("/") + "/"):
        return {}
    runs = model["runs"]
    chosen = ([run for run in runs if run.get("blessing_id") == record.get("blessing_artifact_id")]
              or [run for run in runs if run.get("blessed")] or runs)
    return {**{key: value for key, value in chosen[-1].items() if key != "blessing_id"},
            "feedback_images": model.get("feedback_images")}


def serving_dir_versions(serving_dir: str, model_name: str = configs.MODEL_NAME) -> dict[int, str]:
    """{version: folder} of ``serving_dir``; ValueError saying why it cannot be read (it does not exist, is not a
    folder), not taken for a serving dir without versions."""
    if not os.path.isdir(serving_dir):
        raise ValueError(f"the serving dir {serving_dir} "
                         + ("is not a folder" if os.path.exists(serving_dir) else "does not exist"))
    found = serving_versions.list_versions(serving_dir, model_name, warn=False)
    if found is None:
        raise ValueError(f"cannot read the serving dir {serving_dir}")
    return found


def list_versions(serving_dir: str, metadata_file: str, config_file: str | None = None) -> list[dict]:
    folders = serving_dir_versions(serving_dir)
    model = _configured_model(config_file, configs.MODEL_NAME) if config_file else None
    labels = dict(model.version_labels) if model is not None else {}
    evaluations = evaluations_by_model(metadata_file)
    rows = []
    for version, record in sorted(pushed_versions(serving_dir).items()):
        rows.append({"version": version, "pushed_at": record.get("pushed_at"),
                     "labels": sorted(l for l, v in labels.items() if v == version),
                     "problem": version_problem(folders[version]) if version in folders else None,
                     **push_evaluation(record, evaluations)})
    return rows


def missing_label_notes(config_file: str, serving_dir: str, model_name: str = configs.MODEL_NAME) -> list[str]:
    """Of the labels in ``config_file``, those on a version ``serving_dir`` does not hold (its folder removed), one
    note each: no server can answer a request to them, and ``list`` has no row to show them on."""
    model = _configured_model(config_file, model_name)
    if model is None or not model.version_labels:
        return []
    found = serving_dir_versions(serving_dir, model_name)
    return [f"note: label {label!r} names version {version}, which is not in {serving_dir}: requests to it fail"
            for label, version in sorted(model.version_labels.items()) if version not in found]


def served_label_notes(config_file: str, server_url: str, model_name: str = configs.MODEL_NAME) -> list[str]:
    """Of the labels in ``config_file``, those a running server serves at another version (or not at all), one note
    each: the server has not applied the file (yet); or that it maps to a version it does not serve (its
    folder removed, or a load that failed), with the server's answer. None when it cannot be reached."""
    model = _configured_model(config_file, model_name)
    if model is None or not model.version_labels:
        return []
    server = RestConnection(server_url, timeout=5)
    if version_state(server, model_name, 0) is None:
        return []
    notes = []
    for label, version in sorted(model.version_labels.items()):
        mapped, error = label_mapping(server, model_name, label)
        if mapped is not None and error is not None:
            notes.append(f"note: the server at {server_url} maps label {label!r} to version {mapped}, which it does "
                         f"not serve ({config_file}: {version}): {error}")
        elif mapped != version:
            notes.append(f"note: the server at {server_url} serves label {label!r} at "
                         f"{'version %d' % mapped if mapped is not None else 'no version'} ({config_file}: {version})")
    return notes


def version_problem(folder: str) -> str | None:
    """Why a server could not load the version folder (no, or a damaged, saved_model.pb or .pbtxt; no
    variables/variables.index, which the embedded server refuses and TF Serving restores nothing from), or None."""
    path = model_dirs.saved_model_file(folder)
    if path is None:
        return "incomplete (no saved_model.pb)"
    name = os.path.basename(path)
    try:
        graphs = len(model_dirs.read_saved_model(path).meta_graphs)
    except OSError as err:
        return f"unreadable {name} ({err.strerror or err})"
    except ValueError:
        graphs = 0
    if not graphs:
        return f"damaged ({name} does not parse)"
    return model_dirs.INCOMPLETE if model_dirs.missing_variables_index(folder) else None


def loadable_versions(found: dict[int, str]) -> dict[int, str]:
    """Of ``found`` ({version: folder}), the versions a server can load (no :func:`version_problem`): what a
    version policy can serve. A "latest" policy aspires a half-written newest folder too, but the server never
    loads it and keeps serving the version before."""
    return {version: folder for version, folder in found.items() if version_problem(folder) is None}


def format_versions(rows: list[dict]) -> str:
    if not rows:
        return "no pushed version"
    lines = [f"{'version':>12}  {'pushed (UTC)':<20}  {'top-1':>6}  {'top-3':>6}  {'blessed':<7}  {'feedback':>8}  "
             f"labels"]
    for r in rows:
        fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else "   -  "  # noqa: E731
        blessed = {True: "yes", False: "no"}.get(r.get("blessed"), "-")
        feedback = r.get("feedback_images")
        lines.append(f"{r['version']:>12}  {r.get('pushed_at') or '-':<20}  {fmt(r.get('top1'))}  "
                     f"{fmt(r.get('top3'))}  {blessed:<7}  {'-' if feedback is None else feedback:>8}  "
                     + ", ".join(r["labels"] + ([f"not loadable: {r['problem']}"] if r.get("problem") else [])))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ promote/rollback
def load_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    """The config file, read as the servers read it (TF Serving 2.20.0's fields too, kept when it is written)."""
    try:
        config = text_format.Parse(Path(path).read_text(), protos.ModelServerConfig())
    except (OSError, UnicodeDecodeError, text_format.ParseError) as err:
        raise ValueError(f"cannot read the model config {path}: {getattr(err, 'strerror', None) or err}") from None
    return protos.wheel_config(config)


def _model_config(config, name: str, source: str, create: bool = True, base_path: str | None = None):
    """The entry of model ``name`` in ``config`` (read from ``source``), added when ``create``, else None when there
    is none; ValueError for a config whose models are not a list (a custom_model_config, ModelServerConfig's other
    branch: a label change would replace it with a list) or that lists a model twice (TF Serving refuses it)."""
    if config.HasField("custom_model_config"):
        raise ValueError(f"{source} holds a custom_model_config, not a model_config_list: left as it is")
    if repeated := repeated_model_error(config):   # TF Serving refuses the whole file: which entry to edit?
        raise ValueError(f"{source}: {repeated}: left as it is")
    for model in config.model_config_list.config:
        if model.name == name:
            return model
    if not create:
        return None
    model = config.model_config_list.config.add(name=name, base_path=base_path or "", model_platform="tensorflow")
    return model


def _configured_model(config_file: str, name: str):
    """The entry of model ``name`` in ``config_file``; None when there is no such file or no such entry."""
    if not os.path.exists(config_file):
        return None
    return _model_config(load_config(config_file), name, config_file, create=False)


def _history_path(config_file: str) -> str:
    return config_file + ".history.json"


def _read_history(config_file: str) -> list[dict]:
    """The label history; [] when there is none. A damaged one is an error, never silently replaced."""
    path = _history_path(config_file)
    try:
        history = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the label history {path} ({err}); fix or remove it") from None
    if not isinstance(history, list) or not all(isinstance(e, dict) and {"label", "version", "previous"} <= set(e)
                                                for e in history):
        raise ValueError(f"the label history {path} is not a list of promotions; fix or remove it")
    return history


def version_state(server: str | RestConnection, model_name: str, version: int) -> str | None:
    """The version's state on a running server (AVAILABLE, LOADING, END, …; NOT_TRACKED before the server has
    seen it), or None if unreachable. ``server`` is its URL or a RestConnection (whose kept-alive connection
    repeated polls reuse). It asks for the model's status, not the version's: a version not loaded yet would
    answer 404, which the server counts as a failed request (and the monitor would alarm on a promote's polls)."""
    return version_status(server, model_name, version)[0]


def version_status(server: str | RestConnection, model_name: str, version: int) -> tuple:
    """(:func:`version_state`, the server's error for it or None): a version that failed to load is END with
    its status's error code and message (its lines joined: it is shown in one line)."""
    connection = server if isinstance(server, RestConnection) else RestConnection(server, timeout=5)
    try:
        status, body = connection.request("GET", f"/v1/models/{model_name}")
    except ServingUnavailable:
        return None, None
    if status != 200:
        return f"HTTP {status}", None
    error = version_errors(body).get(str(version))
    return (version_states(body).get(str(version), "NOT_TRACKED"),
            " ".join(line.strip() for line in error.splitlines() if line.strip()) if error else None)


def label_version(server: str | RestConnection, model_name: str, label: str) -> int | None:
    """The version a running server serves ``label`` at (its label metadata's ``model_spec.version``), or None when
    it serves no such label or cannot be reached. (The model's status, with or without a label, lists every
    version: TF Serving ignores the label there.)"""
    version, error = label_mapping(server, model_name, label)
    return version if error is None else None


def label_mapping(server: str | RestConnection, model_name: str, label: str) -> tuple[int | None, str | None]:
    """(the version a running server maps ``label`` to, None when none; the server's error when it answers none):
    a label mapped to a version the server does not serve (its folder removed, say) is answered NOT_FOUND, in TF
    Serving's words ``Servable not found for request: Specific(letters, 2)``, which names the version; a label it
    does not map INVALID_ARGUMENT (``Unrecognized servable version label: stable``). (None, None) when it cannot
    be reached."""
    connection = server if isinstance(server, RestConnection) else RestConnection(server, timeout=5)
    try:
        status, body = connection.request("GET", f"/v1/models/{model_name}/labels/{label}/metadata")
    except ServingUnavailable:
        return None, None
    body = body if isinstance(body, dict) else {}
    if status != 200:
        error = str(body.get("error") or f"HTTP {status}")
        mapped = re.fullmatch(rf"Servable not found for request: Specific\({re.escape(model_name)}, (\d+)\)", error)
        return (int(mapped.group(1)) if mapped else None), error
    try:
        return int(body["model_spec"]["version"]), None
    except (TypeError, KeyError, ValueError):
        return None, f"no model_spec version in {json.dumps(body)}"


def unavailable_labels(server: RestConnection, model_name: str, labels: dict[str, int]) -> list[str]:
    """Each of ``labels`` (label → version) on a version the server has not loaded, said in a few words: TF Serving
    may refuse a whole config with one such label (:func:`_refusal`)."""
    found = []
    for name, version in sorted(labels.items()):
        state, error = version_status(server, model_name, version)
        if state not in ("AVAILABLE", None):
            found.append(f"label {name!r} names version {version}, {state} on the server"
                         + (f" ({error})" if error else ""))
    return found


def _refusal(refused: list[str]) -> str:
    """Why a server may not apply a config whose labels ``refused`` (:func:`unavailable_labels`) name versions it
    has not loaded. The server's flag cannot be asked for: it is said as a condition."""
    return ("; ".join(refused) + ": TF Serving refuses a whole config with a label on a version it has not loaded, "
            "unless it runs with --allow_version_labels_for_unavailable_models and the label is new to it or already "
            "on that version (ServerCore::UpdateModelVersionLabelMap)")


def _write_config(config_file: str, config) -> bytes:
    """Writes ``config`` (its model list) to ``config_file``, after the comments the file starts with
    (:func:`_leading_comments`); returns the bytes written."""
    try:
        header = _leading_comments(Path(config_file).read_text())
    except (OSError, UnicodeDecodeError):   # no file yet
        header = ""
    text = header + protos.config_text(
        model_server_config_pb2.ModelServerConfig(model_config_list=config.model_config_list))
    atomic_write(config_file, text.encode())
    return text.encode()


def _leading_comments(text: str) -> str:
    """The comment lines a config's text starts with (blank lines among them), "" when it starts with none: the
    config is written from its parsed proto, which keeps no comment, so these alone are kept (serving/deploy's
    header, say); comments further down are lost."""
    lines = []
    for line in text.splitlines(keepends=True):
        if line.strip() and not line.lstrip().startswith("#"):
            break
        lines.append(line)
    header = "".join(lines)
    if "#" not in header:
        return ""
    return header if header.endswith("\n") else header + "\n"


def ensure_config(config_file: str, serving_dir: str, model_name: str = configs.MODEL_NAME) -> bool:
    """Writes a models.config serving the latest version of ``serving_dir`` unless ``config_file`` exists (then
    ``promote`` can add labels to a server started from it); returns whether it wrote one."""
    if os.path.exists(config_file):
        return False
    config = model_server_config_pb2.ModelServerConfig()
    _model_config(config, model_name, config_file, base_path=os.path.abspath(serving_dir))
    _write_config(config_file, config)
    return True


def _exclusive(config_file: str):
    """One label change at a time per models.config (``<config>.lock``, flock): two promotes at once each read
    the config and the history and wrote them back, and one change was lost. A wait for another (up to its wait for
    a server) is said, naming its process."""
    return exclusive(config_file + ".lock", waiting=waiting_for(f"another label change of {config_file}"))


def set_label(config_file: str, label: str, version: int, serving_dir: str, model_name: str = configs.MODEL_NAME,
              record: bool = True, server_url: str | None = None, timeout: float = 120.0) -> int | None:
    """Points ``label`` at ``version``; returns the version it pointed at before (None if unset).

    A server accepts a label only on a version it has loaded, so with a running server (``server_url``)
    this happens in two steps, as TF Serving's documentation describes: first the version is added to the
    served versions and the label change waits until the server reports it AVAILABLE, then the label moves, and
    it returns once the server serves the label at ``version`` (ValueError if not within ``timeout``).
    """
    with _exclusive(config_file):
        return _set_label(config_file, label, version, serving_dir, model_name, record, server_url, timeout)


def _set_label(config_file: str, label: str, version: int, serving_dir: str, model_name: str, record: bool,
               server_url: str | None, timeout: float = 120.0, history: list[dict] | None = None) -> int | None:
    """``history``: the label history (a rollback's, its entry already marked rolled back); read from the file
    when None. With ``record`` this change is appended to it; a given or changed one is written with the config,
    a stop held meanwhile, so that the two agree."""
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}: use one of {', '.join(LABELS)}")
    found = serving_dir_versions(serving_dir, model_name)
    folder = found.get(version)   # "007" is 7 too
    if folder is None:
        raise ValueError(f"version {version} is not in {serving_dir}")
    problem = version_problem(folder)   # what `list` marks "not loadable": no server would load it
    if problem:
        raise ValueError(f"version {version} in {serving_dir} ({os.path.basename(folder)}/) is {problem}: a server "
                         "cannot load it")
    write_history = record or history is not None
    if history is None:
        history = _read_history(config_file)   # a damaged history stops us before any change
    before = Path(config_file).read_bytes() if os.path.exists(config_file) else None
    config = load_config(config_file) if before is not None else model_server_config_pb2.ModelServerConfig()
    model = _model_config(config, model_name, config_file, base_path=os.path.abspath(serving_dir))
    # A label on a version the serving dir does not hold (the shipped config's placeholders) is dropped: no server
    # can answer it, TF Serving refuses a config that names one unless --allow_version_labels_for_unavailable_models
    # and the label is unchanged (ServerCore::UpdateModelVersionLabelMap), and it is nothing to roll back to.
    dropped = {name: v for name, v in model.version_labels.items() if v not in found}
    for name in dropped:
        del model.version_labels[name]
    previous = model.version_labels[label] if label in model.version_labels else None
    server = RestConnection(server_url, timeout=5) if server_url else None
    state, stale_error = version_status(server, model_name, version) if server else ("AVAILABLE", None)
    if state is None:   # the file alone would name a version the server may not have: it refuses such a config
        raise ValueError(_unreachable(server_url, f"check that version {version} is loaded (TF Serving refuses a "
                                                  f"whole config whose label names a version it has not loaded)")
                         + f"; label {label!r} left unchanged")
    if previous == version:   # a repeated promote: nothing to change, and no X -> X step for a rollback to undo
        if server:
            _wait_label(server, server_url, model_name, label, version, timeout, config_file,
                        dict(model.version_labels))
        return previous
    promotion = {"label": label, "version": version, "previous": previous,
                 "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    # Serve every labelled version, the new one, the one this label leaves (it keeps answering until the label
    # moves), the version each label's rollback would go back to (so that a rollback is instant), and what the
    # current policy serves: all of it the first time ("latest" or "all" becomes "specific"), after that the
    # newest, which requests without a label or version get; of the versions a server can load, as a server serves
    # them. Only versions in the serving dir: TF Serving logs a missing "specific" version on every poll.
    served = serving_versions.aspired_versions(model.model_version_policy, loadable_versions(found), model_name,
                                               warn=False)
    if model.model_version_policy.WhichOneof("policy_choice") == "specific":
        served = set(sorted(served)[-1:])
    keep = (set(model.version_labels.values()) | {version, previous} | set(served)
            | _rollback_targets(history + [promotion] if record else history)) & set(found)
    model.model_version_policy.specific.ClearField("versions")
    model.model_version_policy.specific.versions.extend(sorted(keep))
    refused = unavailable_labels(server, model_name, {name: v for name, v in model.version_labels.items()
                                                      if name != label}) if server else []
    if refused:   # the server may refuse every config carrying them, this one's first step too
        print(f"note: {_refusal(refused)}; if the server does, this label change waits its whole timeout "
              f"({timeout:.0f} s): promote or roll back that label first", file=sys.stderr)
    written = None   # the first step's config, once written
    if state != "AVAILABLE":
        written = _write_config(config_file, config)
        try:
            _wait_available(server, server_url, model_name, version, timeout,
                            stale_error if state == "END" else None, dict(model.version_labels))
        except BaseException as err:   # refused, too slow, or Ctrl-C: the config the server had is put back
            left = _put_back(config_file, before, written, label, version)
            if isinstance(err, ValueError):
                raise ValueError(f"{err}; {left}") from None
            if isinstance(err, KeyboardInterrupt):
                raise Interrupted(left) from None
            raise
    model.version_labels[label] = version
    moved = recorded = False   # the label written; its history too
    unrecorded = None   # what a history that could not be written left
    try:
        with interrupts_held():   # a stop between the two writes would leave a change no rollback can follow
            moved_config = _write_config(config_file, config)
            moved = True
            for name, missing in sorted(dropped.items()):
                print(f"note: label {name!r} named version {missing}, which is not in {serving_dir}: removed from "
                      f"{config_file}", file=sys.stderr)
            if record:
                history.append(promotion)
            if write_history:
                try:
                    atomic_write(_history_path(config_file), json.dumps(history, indent=2).encode())
                except OSError as err:   # a full disk: a label moved unrecorded is one no rollback can follow
                    unrecorded = _unrecorded(config_file, before, moved_config, label, version, err)
                    raise ValueError(unrecorded) from None
                recorded = True
        if server:
            _wait_label(server, server_url, model_name, label, version, timeout, config_file,
                        dict(model.version_labels))
    except KeyboardInterrupt as err:
        if unrecorded:   # a stop held while the history failed: what that left
            raise Interrupted(unrecorded) from None
        if not moved:   # a stop just before the stops were held: the label was not written
            if written is None:
                raise   # nothing written: "left unchanged and as it was"
            raise Interrupted(_put_back(config_file, before, written, label, version)) from None
        raise Interrupted(f"label {label!r} moved to {version} in {config_file}"
                          + (f" (recorded in {_history_path(config_file)})" if recorded else
                             f" (not recorded in {_history_path(config_file)}: {err.__context__})" if write_history
                             else "")
                          + (f"; the server at {server_url} was not seen serving it there yet" if server else "")
                          ) from None
    return previous


def _rollback_targets(history: list[dict]) -> set[int]:
    """The versions the labels' rollbacks would go back to: of each label, the ``previous`` of its newest promotion
    not rolled back yet (one per label)."""
    targets = {entry["label"]: entry["previous"] for entry in history if not entry.get("rolled_back")}
    return {version for version in targets.values() if version is not None}


def _polls():
    """A wait's rounds, 0.5 s apart: (seconds waited so far, whether to show the wait: at its start, then every
    WAIT_REPORT_SECONDS). The caller ends it."""
    started = time.monotonic()
    told = None
    while True:
        waited = time.monotonic() - started
        show = told is None or waited - told >= WAIT_REPORT_SECONDS
        if show:
            told = waited
        yield waited, show
        time.sleep(0.5)


def _wait_available(server: RestConnection, server_url: str, model_name: str, version: int, timeout: float,
                    stale_error: str | None = None, labels: dict[str, int] | None = None) -> None:
    """Returns once the server reports ``version`` AVAILABLE; ValueError when it failed to load (END with an
    error: the server's own message, once it has given up retrying) or ``timeout`` passed. A long wait is shown,
    with the state it sees.
    ``stale_error``: the error the version already ended with before this wait (a server keeps a failed load's
    END in its status): it ends the wait only once the server has tried again (a state other than END seen).
    ``labels``: the labels of the config waited on; a timeout says which name a version the server has not loaded."""
    retried = stale_error is None
    for waited, show in _polls():
        state, error = version_status(server, model_name, version)
        if state == "AVAILABLE":
            return
        retried = retried or state != "END"
        if state == "END" and error and retried:
            raise ValueError(f"version {version} failed to load on {server_url}: {error}")
        if waited > timeout:
            refused = unavailable_labels(server, model_name, labels) if labels else []
            raise ValueError(f"version {version} did not become AVAILABLE on {server_url} within {timeout:.0f} s "
                             f"(state: {state}" + (f"; its last load failed: {error}" if error else "") + ")" + (
                                 "; a server loads a version that failed again only once it has applied a config "
                                 "without it (its next config poll after the one put back)" if not retried else
                                 RETRYING_NOTE if state == "LOADING" else "")
                             + (f"; it may not have applied the config: {_refusal(refused)}" if refused else
                                f"; the server has not applied the config {NOT_APPLIED_NOTE}"
                                if state in UNSEEN_STATES else ""))
        if show:
            print(f"waiting for version {version} to become AVAILABLE on {server_url} (state: {state}; "
                  f"{waited:.0f} of {timeout:.0f} s)", file=sys.stderr, flush=True)


def _wait_label(server: RestConnection, server_url: str, model_name: str, label: str, version: int, timeout: float,
                config_file: str, labels: dict[str, int]) -> None:
    """Returns once the server serves ``label`` at ``version`` (it has applied the config that puts it there);
    ValueError saying what it serves instead, and why when one of the config's ``labels`` names a version it has
    not loaded, once ``timeout`` passed. A long wait is shown."""
    for waited, show in _polls():
        if (served := label_version(server, model_name, label)) == version:
            return
        if served is None and version_state(server, model_name, version) is None:   # no label, or no server?
            raise ValueError(_unreachable(server_url, f"see it serve label {label!r} at version {version}")
                             + f"; {config_file} puts it there")
        if waited > timeout:
            refused = unavailable_labels(server, model_name, labels)
            raise ValueError(
                f"label {label!r} is on version {version} in {config_file}, but the server at {server_url} still "
                f"{_label_at(label, served)} after {timeout:.0f} s: "
                "it has not applied that config " + (f"({_refusal(refused)})" if refused else NOT_APPLIED_NOTE))
        if show:
            print(f"waiting for the server at {server_url} to serve label {label!r} at version {version} (it still "
                  f"{_label_at(label, served)}; {waited:.0f} of {timeout:.0f} s)", file=sys.stderr, flush=True)


def _label_at(label: str, served: int | None) -> str:
    """What the server does with ``label`` now: serves it at version ``served``, or knows no such label yet."""
    return f"serves label {label!r} at version {served}" if served is not None else f"has no label {label!r}"


def _unreachable(server_url: str, to_do: str) -> str:
    """The error for a server that cannot be reached ``to_do`` something, saying what to do instead."""
    return (f"cannot reach the model server at {server_url} to {to_do}: start it or give its --server-url; "
            "--server-url '' edits the file alone")


def _put_back(config_file: str, before: bytes | None, written: bytes, label: str, version: int) -> str:
    """Puts back the config a label change wrote as its first step (:func:`_restore`); says what it left."""
    return f"label {label!r} left unchanged and " + (
        f"{config_file} put back as it was" if _restore(config_file, before, written) else
        f"{config_file} left as it is now (it was changed meanwhile; it still lists version {version})")


def _unrecorded(config_file: str, before: bytes | None, written: bytes, label: str, version: int,
                err: OSError) -> str:
    """Puts back the config a label change ``written`` (moving ``label`` to ``version``) when its history could not
    be written (``err``: a full disk), as :func:`_put_back` does; says why and what it left: the label moved, not
    recorded, when the config could not be put back."""
    why = f"cannot write the label history {_history_path(config_file)} ({err.strerror or err})"
    try:
        if _restore(config_file, before, written):
            return f"{why}: label {label!r} left unchanged and {config_file} put back as it was"
        left = f"{config_file} left as it is now (it was changed meanwhile)"
    except OSError as put_back:
        left = f"it could not be put back ({put_back.strerror or put_back})"
    return f"{why}: label {label!r} moved to {version} in {config_file} (not recorded), and {left}"


def _restore(config_file: str, before: bytes | None, written: bytes) -> bool:
    """Puts ``config_file`` back as it was (``before``: its bytes, None when there was none), unless it no longer
    holds what this promote ``written`` (an edit made meanwhile is not undone); returns whether it did."""
    try:
        now = Path(config_file).read_bytes()
    except FileNotFoundError:
        now = None
    if now != written:
        return False
    if before is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(config_file)
    else:
        atomic_write(config_file, before)
    return True


def rollback(config_file: str, label: str, serving_dir: str, model_name: str = configs.MODEL_NAME,
             server_url: str | None = None) -> int:
    """Moves ``label`` back to where its newest still-effective promotion found it; returns that version. Refused
    when the label is no longer where that promotion put it (an interrupted or hand-made change): rolling back
    from there would go to the wrong version."""
    with _exclusive(config_file):
        return _rollback(config_file, label, serving_dir, model_name, server_url)


def _rollback(config_file: str, label: str, serving_dir: str, model_name: str, server_url: str | None) -> int:
    history = _read_history(config_file)
    for i in range(len(history) - 1, -1, -1):
        entry = history[i]
        if entry["label"] == label and not entry.get("rolled_back"):
            current = _config_label(config_file, model_name, label, entry["version"])
            if current != entry["version"]:   # first: "no version before" would name the wrong promotion
                raise ValueError(f"label {label!r} is on version {current} in {config_file}, but its last promotion "
                                 f"in {_history_path(config_file)} put it on {entry['version']}: the two are out of "
                                 "step (an interrupted or hand-made change); promote the version you want instead")
            if entry["previous"] is None:
                raise ValueError(f"label {label!r} had no version before {entry['version']}: nothing to roll back to")
            entry["rolled_back"] = True   # in the history the new config is made from (what it keeps loaded)
            _set_label(config_file, label, entry["previous"], serving_dir, model_name, record=False,
                       server_url=server_url, history=history)   # which writes the history with the config
            return entry["previous"]
    raise ValueError(f"label {label!r} has no promotion to roll back in {_history_path(config_file)}")


def _config_label(config_file: str, model_name: str, label: str, promoted: int) -> int:
    """The version ``label`` is on in ``config_file``; ValueError saying why there is none (no such file, no such
    model in it, the label not set there) and what to do, its last promotion having put it on ``promoted``."""
    exists = os.path.exists(config_file)
    model = _configured_model(config_file, model_name)
    missing = ("does not exist" if not exists else
               f"has no model {model_name!r}" if model is None else
               f"does not set label {label!r}" if label not in model.version_labels else None)
    if missing:
        raise ValueError(f"cannot roll back label {label!r}: {config_file} {missing} (its last promotion in "
                         f"{_history_path(config_file)} put it on {promoted}); promote the version you want "
                         f"(letters-releases promote VERSION --label {label})")
    return model.version_labels[label]


def default_config_file(config: Config) -> str:
    """The models.config beside the serving directory (``serving/models/models.config`` by default)."""
    return str(Path(config.serving_dir).parent / "models.config")


def main(argv=None) -> int:
    configs.warn_unknown_variables()
    defaults = defaults_from_env()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--serving-dir", default=defaults.serving_dir, help="(default: %(default)s)")
    common.add_argument("--metadata-path", default=defaults.metadata_file, help="(default: %(default)s)")
    common.add_argument("--config", default=None,
                        help="TF Serving models.config to read and edit (default: models.config beside the serving "
                             f"dir, {default_config_file(defaults)})")
    common.add_argument("--server-url", default="http://127.0.0.1:8501",
                        help="a running model server: promote and rollback move a label only once it has loaded the "
                             "version, list notes the labels it serves otherwise (default: %(default)s; '' = none: "
                             "the config file alone is read and edited)")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", parents=[common], help="pushed versions with their evaluation, blessing and labels")
    promote = sub.add_parser("promote", parents=[common], help="point a label at a version")
    promote.add_argument("version", type=int)
    promote.add_argument("--label", default="stable", choices=LABELS, help="the label (default: %(default)s)")
    back = sub.add_parser("rollback", parents=[common], help="move a label back to its previous version")
    back.add_argument("--label", default="stable", choices=LABELS, help="the label (default: %(default)s)")
    args = p.parse_args(argv)
    args.serving_dir = path_or_default(args.serving_dir, defaults.serving_dir)   # "~" too; empty: the default
    args.metadata_path = path_or_default(args.metadata_path, defaults.metadata_file)
    args.config = path_or_default(args.config, default_config_file(defaults.replace(serving_dir=args.serving_dir)))
    try:
        if args.server_url:   # before anything is shown or changed
            try:
                parse_base_url(args.server_url)
            except ValueError as err:
                raise ValueError(f"--server-url: {err}") from None
        if args.command == "list":
            print(format_versions(list_versions(args.serving_dir, args.metadata_path, args.config)))
            for note in missing_label_notes(args.config, args.serving_dir):
                print(note, file=sys.stderr)
            for note in served_label_notes(args.config, args.server_url) if args.server_url else []:
                print(note, file=sys.stderr)
            if not os.path.exists(args.metadata_path):
                print(f"note: no ML Metadata store at {args.metadata_path} (--metadata-path): evaluations and "
                      "blessings are not shown", file=sys.stderr)
        elif args.command == "promote":
            with sigterm_as_interrupt():
                previous = set_label(args.config, args.label, args.version, args.serving_dir,
                                     server_url=args.server_url)
            if previous == args.version:
                print(f"{args.label}: already on {args.version} in {args.config} (nothing changed)")
            else:
                print(f"{args.label}: {previous if previous is not None else '(unset)'} -> {args.version} in "
                      f"{args.config}")
        else:
            with sigterm_as_interrupt():
                version = rollback(args.config, args.label, args.serving_dir, server_url=args.server_url)
            print(f"{args.label} rolled back to {version} in {args.config}")
    except KeyboardInterrupt as err:
        print("interrupted" + (f": {err}" if isinstance(err, Interrupted) else
                               f": label {args.label!r} left unchanged and {args.config} as it was"
                               if args.command != "list" else ""), file=sys.stderr)
        return 130
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
