"""What a pipeline run did, read back from ML Metadata and the artifacts: the runner's final summary.

For one run in the metadata store (the newest, or the one named): each component's state (complete or cached),
examples per split and skipped, training time, the Evaluator's metrics (candidate and baseline) and verdict, the
ServingValidator's verdict, and what the Pusher published.
"""
from __future__ import annotations

import glob
import json
import os

import tensorflow as tf
import tensorflow_model_analysis as tfma
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx.utils import path_constants

from components import atomic_pusher, serving_validator
from components.image_example_gen import conflicts_heading, duplicates_notes, missing_from_split, shown_groups
from core import configs
from core.configs import ACCURACY_METRIC, TOP3_METRIC
from core.files import pattern_under
from core.model_dirs import loadable_versions
from pipeline.pipeline import PRETRAINER_NODE

STATS_FILE = "FeatureStats.pb"   # StatisticsGen's binary DatasetFeatureStatisticsList per split
_STATES = {v: k.lower() for k, v in metadata_store_pb2.Execution.State.items()}


class MetadataInUse(Exception):
    """The ML Metadata SQLite file is locked by another process."""


def open_store(metadata_file: str, writable: bool = False) -> metadata_store.MetadataStore:
    """The ML Metadata store of a local run, opened read-only unless ``writable``. :class:`MetadataInUse` when
    another process holds the file's lock (ML Metadata retries, then says only "Concurrent writes aborted")."""
    cfg = metadata_store_pb2.ConnectionConfig()
    cfg.sqlite.filename_uri = metadata_file
    cfg.sqlite.connection_mode = (metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE if writable
                                  else metadata_store_pb2.SqliteMetadataSourceConfig.READONLY)
    try:
        return metadata_store.MetadataStore(cfg)
    except RuntimeError as err:
        if "Concurrent writes aborted" not in str(err) and "database is locked" not in str(err):
            raise
        raise MetadataInUse(f"ML Metadata {metadata_file} is locked by another process (another run on it, an open "
                            "sqlite3 session); run again once it lets go") from None


def latest_blessed_model(store) -> metadata_store_pb2.Artifact | None:
    """The model a candidate is compared with, as TFX's LatestBlessedModelStrategy picks it: the newest Model
    artifact a ModelBlessing blessed, both LIVE (TFX's input resolution reads live artifacts only, locally and in
    Kubeflow Pipelines alike); None without one."""
    live = metadata_store_pb2.Artifact.LIVE
    blessed = {b.custom_properties["current_model_id"].int_value for b in store.get_artifacts_by_type("ModelBlessing")
               if b.state == live and b.custom_properties["blessed"].int_value == 1
               and "current_model_id" in b.custom_properties}
    models = [m for m in store.get_artifacts_by_id(sorted(blessed)) if m.state == live] if blessed else []
    return max(models, key=lambda m: m.id, default=None)


def takes_as(event, key: str) -> bool:
    """Whether the INPUT ``event`` gives its artifact under ``key``: TFX records one event per artifact, its path
    holding every key the execution took it under (``['model', 0, 'baseline_model', 0]`` for a candidate compared
    with itself)."""
    return event.type == metadata_store_pb2.Event.INPUT and any(step.key == key for step in event.path.steps)


def _node_name(store, execution_id: int) -> str:
    for ctx in store.get_contexts_by_execution(execution_id):
        if store.get_context_types_by_id([ctx.type_id])[0].name == "node":
            return ctx.name.split(".", 1)[-1]
    return "?"


def last_blessed_training(metadata_file: str) -> dict | None:
    """The Trainer settings (its custom_config) of the newest blessed model, the baseline of the Evaluator's
    "no worse than the last blessed model" gate (as TFX's LatestBlessedModelStrategy picks it), with
    ``feedback_images``: how many feedback images it trained on (None when its lineage does not say), and from its
    ExampleGen's ingest report ``feedback_files`` and ``feedback_digests``, their names and pixel digests (None in
    a report from before they were recorded); None without one or without a readable store."""
    if not os.path.exists(metadata_file):
        return None
    try:
        store = open_store(metadata_file)
        model = latest_blessed_model(store)
        if model is None:
            return None
        producer = [ev.execution_id for ev in store.get_events_by_artifact_ids([model.id])
                    if ev.type == metadata_store_pb2.Event.OUTPUT]
        (execution,) = store.get_executions_by_id(producer[:1])
        settings = json.loads(execution.custom_properties["custom_config"].string_value or "{}")
        examples = ingested_examples(store, model.id)
        report = ingest_report(examples.uri) if examples is not None else {}
        return {**settings, "feedback_images": _feedback_count(examples),
                "feedback_files": report.get("feedback_files"), "feedback_digests": report.get("feedback_digests")}
    except Exception:  # noqa: BLE001 - an old or foreign store: no baseline settings to compare with
        return None


def ingested_examples(store, model_id: int):
    """The ExampleGen's examples artifact the model was trained on: its Trainer's examples, back through the
    Transform; None when the lineage does not say."""
    def producer_input(artifact_id: int, key: str) -> list[int]:
        made = [ev.execution_id for ev in store.get_events_by_artifact_ids([artifact_id])
                if ev.type == metadata_store_pb2.Event.OUTPUT]
        events = store.get_events_by_execution_ids(made) if made else []
        return [ev.artifact_id for ev in events if takes_as(ev, key)]

    for transformed in producer_input(model_id, "examples"):          # the Trainer's (transformed) examples
        for examples in producer_input(transformed, "examples"):       # the Transform's examples
            (artifact,) = store.get_artifacts_by_id([examples])
            return artifact
    return None


def feedback_images(store, model_id: int) -> int | None:
    """How many feedback images the model was trained on (its examples' ``feedback_images`` property); None when
    the lineage does not say."""
    return _feedback_count(ingested_examples(store, model_id))


def _feedback_count(examples) -> int | None:
    from components.image_example_gen import FEEDBACK_IMAGES_KEY
    if examples is None or FEEDBACK_IMAGES_KEY not in examples.custom_properties:
        return None
    return examples.custom_properties[FEEDBACK_IMAGES_KEY].int_value


def ingest_report(examples_uri: str) -> dict:
    """The ExampleGen's ingest report beside its examples ({} when there is none or it cannot be read)."""
    try:
        with tf.io.gfile.GFile(os.path.join(examples_uri, configs.INGEST_REPORT_FILE)) as handle:
            report = json.loads(handle.read())
    except (OSError, ValueError, tf.errors.OpError):
        return {}
    return report if isinstance(report, dict) else {}


def last_run(metadata_file: str, run_id: str | None = None) -> dict:
    """{'run_id', 'components': {node: {'state', 'outputs': {key: [artifact]}}}} for the run ``run_id`` (the name
    of its pipeline_run context), or the newest run. LookupError when none is recorded (the file not made yet)."""
    if not os.path.exists(metadata_file):
        raise LookupError(f"no pipeline run recorded in {metadata_file}")
    store = open_store(metadata_file)
    if run_id is not None:
        run = store.get_context_by_type_and_name("pipeline_run", run_id)
        if run is None:
            raise LookupError(f"no pipeline run {run_id} recorded in {metadata_file}")
    else:
        runs = store.get_contexts_by_type("pipeline_run")
        if not runs:
            raise LookupError(f"no pipeline run recorded in {metadata_file}")
        run = max(runs, key=lambda c: c.create_time_since_epoch)
    executions = store.get_executions_by_context(run.id)
    events = store.get_events_by_execution_ids([e.id for e in executions])
    artifacts = {a.id: a for a in store.get_artifacts_by_id(list({ev.artifact_id for ev in events}))}
    components = {}
    for execution in executions:
        node = _node_name(store, execution.id)
        outputs: dict[str, list] = {}
        for ev in events:
            if ev.execution_id == execution.id and ev.type in (metadata_store_pb2.Event.OUTPUT,
                                                               metadata_store_pb2.Event.DECLARED_OUTPUT):
                key = ev.path.steps[0].key if ev.path.steps else "?"
                outputs.setdefault(key, []).append(artifacts[ev.artifact_id])
        components[node] = {"state": _STATES.get(execution.last_known_state, "?"), "outputs": outputs,
                            "execution_id": execution.id}
    return {"run_id": run.name, "components": components}


def not_pushed_because(store, model_id: int) -> str | None:
    """Why a model was never pushed: "it failed the serving check" (a ServingValidator refused it) or "the Pusher
    did not push it"; None when a Pusher pushed it. The gate's baseline is the newest model the Evaluator blessed
    (TFX's LatestBlessedModelStrategy reads the Evaluator's blessings only), pushed or not."""
    takers = [ev.execution_id for ev in store.get_events_by_artifact_ids([model_id]) if takes_as(ev, "model")]
    made = [ev.artifact_id for ev in (store.get_events_by_execution_ids(takers) if takers else [])
            if ev.type == metadata_store_pb2.Event.OUTPUT]
    artifacts = store.get_artifacts_by_id(made) if made else []
    types = {t.id: t.name for t in store.get_artifact_types_by_id(list({a.type_id for a in artifacts}))}
    if any(types[a.type_id] == "PushedModel" and artifact_property(a, "pushed") == 1 for a in artifacts):
        return None
    if any(types[a.type_id] == "InfraBlessing" and artifact_property(a, serving_validator.BLESSED_KEY) == 0
           for a in artifacts):
        return "it failed the serving check"
    return "the Pusher did not push it"


def served_model(serving_dir: str) -> dict | None:
    """The model a model server serves from ``serving_dir``: its newest version a server can load (the latest
    policy's; core.model_dirs.loadable_versions: a half-written newer folder, without saved_model.pb or
    variables/variables.index, is not served) and the Trainer's model folder its push record names (components.atomic_pusher), {'version',
    'model'}: ``model`` None for a version whose record names no model (copied there by hand, exported by another
    tool, its record lost), still the one served; None without a version, or a serving dir not readable."""
    try:
        versions = loadable_versions(serving_dir, tf.io.gfile)
        if not versions:
            return None
        newest = max(versions)
        pushed = atomic_pusher.read_record(versions[newest]).get("model")
    except (OSError, tf.errors.OpError):
        return None
    if not pushed:
        return {"version": newest, "model": None}
    folder, export = os.path.split(pushed.rstrip("/"))   # the Pusher pushes <model>/Format-Serving
    return {"version": newest, "model": folder if export == path_constants.SERVING_MODEL_DIR else pushed}


def served_origin(served: dict) -> str:
    """Where a served version (:func:`served_model`) came from, as the summary says it: the model its push record
    names, or that it has none."""
    return served["model"] or "a model of unknown origin: no push record"


def same_model(uri: str | None, other: str | None) -> bool:
    """Whether the model folders ``uri`` and ``other`` are one (a trailing slash aside); False when either is
    None."""
    return uri is not None and other is not None and uri.rstrip("/") == other.rstrip("/")


def not_served(baseline_uri: str | None, served: dict | None) -> dict | None:
    """``served`` (:func:`served_model`) when it is not the model at ``baseline_uri`` (None: the run had no
    baseline, so whatever is served was compared with nothing); None when it is, or when what is served is not
    known."""
    if served is None or same_model(served["model"], baseline_uri):
        return None
    return served


def compared_model(metadata_file: str, evaluator_execution_id: int) -> dict | None:
    """The model the Evaluator compared the candidate with (its ``baseline_model`` input, the candidate itself when
    it is the last blessed model): {'uri', 'not_pushed': why it was never pushed, or None}; None without one."""
    store = open_store(metadata_file)
    baseline = [ev.artifact_id for ev in store.get_events_by_execution_ids([evaluator_execution_id])
                if takes_as(ev, "baseline_model")]
    if not baseline:
        return None
    (model,) = store.get_artifacts_by_id(baseline[:1])
    return {"uri": model.uri, "not_pushed": not_pushed_because(store, model.id)}


def examples_per_split(statistics_uri: str) -> dict:
    """{split: number of examples} from StatisticsGen's output (it counts every example; nothing is re-read)."""
    counts = {}
    for path in sorted(glob.glob(pattern_under(statistics_uri, os.path.join("Split-*", STATS_FILE)))):
        stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(tf.io.gfile.GFile(path, "rb").read())
        split = os.path.basename(os.path.dirname(path))[len("Split-"):]
        counts[split] = sum(int(d.num_examples) for d in stats.datasets)
    return counts


def artifact_property(artifact, name):
    """A custom property's value. Kubeflow Pipelines v2 stores an artifact's numbers as doubles (its launcher
    writes the metadata struct's numbers so): a whole one reads as an int, as TFX writes it."""
    if name in artifact.custom_properties:
        value = artifact.custom_properties[name]
        if value.HasField("double_value"):
            number = value.double_value
            return int(number) if number.is_integer() else number
        return value.int_value if value.HasField("int_value") else value.string_value
    return None


def evaluation_metrics(eval_uri: str) -> dict:
    """Overall and per-class metrics for the candidate (and the baseline, with the difference)."""
    out = {"overall": {}, "baseline": {}, "diff": {}, "per_class": {}}
    for slice_metrics in tfma.load_metrics(eval_uri):
        slice_key = {s.column: (s.bytes_value.decode() if s.HasField("bytes_value") else s.int64_value)
                     for s in slice_metrics.slice_key.single_slice_keys}
        for kv in slice_metrics.metric_keys_and_values:
            if not kv.value.HasField("double_value"):
                continue
            value = kv.value.double_value.value
            name = kv.key.name
            if not slice_key:
                if kv.key.is_diff:
                    out["diff"][name] = value
                elif kv.key.model_name == "baseline":
                    out["baseline"][name] = value
                else:
                    out["overall"][name] = value
            elif configs.LABEL_NAME_KEY in slice_key and kv.key.model_name != "baseline" and not kv.key.is_diff:
                out["per_class"].setdefault(slice_key[configs.LABEL_NAME_KEY], {})[name] = value
    return out


def data_anomalies(uri: str) -> dict:
    """{split: ["<feature>: <description>", ...]} of an ExampleValidator's output (Split-*/SchemaDiff.pb), the
    splits without anomalies left out."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    found = {}
    for path in sorted(glob.glob(os.path.join(glob.escape(uri), "Split-*", "SchemaDiff.pb"))):
        anomalies = anomalies_pb2.Anomalies()
        with open(path, "rb") as f:
            anomalies.ParseFromString(f.read())
        texts = [f"{name}: {info.description or info.short_description}"
                 for name, info in sorted(anomalies.anomaly_info.items())]
        if anomalies.HasField("dataset_anomaly_info"):
            texts.insert(0, f"dataset: {anomalies.dataset_anomaly_info.description}")
        if texts:
            found[os.path.basename(os.path.dirname(path))[len("Split-"):]] = texts
    return found


def _failure_text(failure) -> str:
    value = failure.metric_value.double_value.value
    threshold = failure.metric_threshold
    if threshold.HasField("value_threshold"):
        bound = threshold.value_threshold.lower_bound.value
        return f"{failure.metric_key.name} {value:.4f} is below the floor {bound:.4f}"
    if threshold.HasField("change_threshold"):
        allowed = threshold.change_threshold.absolute.value
        return (f"{failure.metric_key.name} changed by {value:+.4f} against the last blessed model "
                f"(allowed: {allowed:+.4f})")
    return f"{failure.metric_key.name}: {failure.message or value}"


TRAINERS = (("pretraining", PRETRAINER_NODE), ("training", "Trainer"))   # summary key, the node that trains


def summarize(metadata_file: str, not_compared: str | None = None, run_id: str | None = None,
              served: dict | None = None, push_failure: str | None = None, failure: dict | None = None) -> dict:
    """The summary of the run ``run_id`` (the newest without). ``not_compared``: why the runner gated it by the
    accuracy floor alone, not compared with the last blessed model (local_runner.gate_after_a_split_change). The
    Evaluator still scores that model, so the summary says so: ``compared_with_last_blessed`` (False without a last
    blessed model or with ``not_compared``) and ``not_compared_because``, and :func:`format_summary` shows that
    model's accuracy with the reason, not a change as if the gate had judged it. A last blessed model that is this
    run's model (``baseline_is_this_model``: its Trainer cached, the Evaluator given it as candidate and baseline)
    is not compared with either, the reason saying so. ``served``: the model served when the run started
    (:func:`served_model`, read before its Pusher); ``baseline_not_served`` is it when the last blessed model is
    another (TFX's LatestBlessedModelStrategy takes the newest model blessed, by artifact id: an older one blessed
    again and pushed since does not become the baseline), and when there is none to compare with (no blessed model
    before, or this model itself): a serving dir another pipeline pushes into, say. ``push_failure``: why the Pusher
    failed, as the runner caught it; a failed Pusher execution is ``pushed`` False with ``push_failed`` saying why.
    ``failure``: how another exception ended the run, as the runner recorded it ({'failed_because', 'failure_log'}):
    the summary says so with the step that failed (``failed_step``, the execution ML Metadata recorded as failed;
    None when none was), ``pushed`` False and ``still_served``, the model served when the run started (the serving
    dir is as it was)."""
    run = last_run(metadata_file, run_id)
    comps = run["components"]
    ordered = sorted(comps.items(), key=lambda kv: kv[1]["execution_id"])
    summary = {"run_id": run["run_id"], "components": {name: c["state"] for name, c in ordered}}
    gen = comps.get("ImageExampleGen", {}).get("outputs", {}).get("examples")
    if gen:
        report = ingest_report(gen[0].uri)
        if report:
            summary["ingest"] = {k: report.get(k, 0) for k in ("kept", "skipped", "skipped_by_reason", "empty_classes",
                                                               "reencoded_to_png", "feedback")}
            for key in ("classes_missing_from_split", "classes_missing_by_feedback"):
                summary["ingest"][key] = report.get(key, {})
            summary["ingest"]["feedback_repeat"] = report.get("feedback_repeat", 1)
            # said by every run that trains on these examples, not only by the one that made them
            summary["ingest"]["conflicting_labels"] = report.get("conflicting_labels", [])
            summary["ingest"]["duplicate_copies"] = report.get("duplicate_copies", 0)
            summary["ingest"]["duplicate_trainings"] = report.get("duplicate_trainings",
                                                                  summary["ingest"]["duplicate_copies"])
            for key in ("duplicate_files", "duplicate_files_in_eval"):
                summary["ingest"][key] = report.get(key, [])
    statistics = comps.get("StatisticsGen", {}).get("outputs", {}).get("statistics")
    if statistics:
        counts = examples_per_split(statistics[0].uri)
        summary["examples_per_split"] = {split: counts.get(split, 0)
                                         for split in (configs.TRAIN_SPLIT, configs.EVAL_SPLIT)}
    anomalies = comps.get("ExampleValidator", {}).get("outputs", {}).get("anomalies")
    if anomalies:
        summary["anomalies"] = data_anomalies(anomalies[0].uri)
    for key, node in TRAINERS:
        model_run = comps.get(node, {}).get("outputs", {}).get("model_run")
        path = os.path.join(model_run[0].uri, "training_summary.json") if model_run else ""
        if path and os.path.exists(path):
            with open(path) as f:
                summary[key] = json.load(f)
            summary[key]["trained_earlier"] = summary["components"].get(node) == "cached"   # its time is not this run's
    if "Evaluator" in comps:
        baseline = compared_model(metadata_file, comps["Evaluator"]["execution_id"])
        trained = comps.get("Trainer", {}).get("outputs", {}).get("model")
        itself = bool(baseline and trained and same_model(baseline["uri"], trained[0].uri))
        summary["baseline_model"] = baseline and baseline["uri"]
        summary["baseline_is_this_model"] = itself
        if itself:   # the Trainer cached with the last blessed model: the Evaluator compared it with itself
            not_compared = f"it is this same model ({baseline['uri']})"
        summary["baseline_not_pushed"] = baseline and not itself and baseline["not_pushed"] or None
        summary["baseline_not_served"] = not_served(baseline and baseline["uri"], served)
    evaluator = comps.get("Evaluator", {}).get("outputs", {})
    if evaluator.get("evaluation"):
        metrics = evaluation_metrics(evaluator["evaluation"][0].uri)
        summary["evaluation"] = metrics
        validation = tfma.load_validation_result(evaluator["evaluation"][0].uri)
        summary["validation_ok"] = bool(validation.validation_ok)
        summary["validation_failures"] = [
            _failure_text(f) for per_slice in validation.metric_validations_per_slice for f in per_slice.failures]
    if evaluator.get("blessing"):
        summary["blessed"] = bool(artifact_property(evaluator["blessing"][0], "blessed"))
        summary["had_baseline"] = bool(metrics.get("baseline")) if evaluator.get("evaluation") else False
        summary["compared_with_last_blessed"] = summary["had_baseline"] and not not_compared
        summary["not_compared_because"] = not_compared if summary["had_baseline"] else None
    validator = comps.get("ServingValidator", {}).get("outputs", {}).get("blessing")
    if validator:
        summary["serving_validated"] = bool(artifact_property(validator[0], serving_validator.BLESSED_KEY))
        report_path = os.path.join(validator[0].uri, serving_validator.REPORT_FILE)
        if os.path.exists(report_path):
            with open(report_path) as f:
                report = json.load(f)
            summary["serving_validation"] = {"failure": report.get("failure", ""),
                                             "latency_ms": report.get("latency_ms", {})}
    pushed = comps.get("Pusher", {}).get("outputs", {}).get("pushed_model")
    if failure:
        summary.update(failed(summary["components"], failure, served))
    if comps.get("Pusher", {}).get("state") == "failed":   # TFX records no output of a failed execution
        summary["pushed"] = False
        summary["push_failed"] = push_failure or summary.get("failed_because") or "the Pusher failed (its log says why)"
    elif pushed:
        summary["pushed"] = bool(artifact_property(pushed[0], "pushed"))
        summary["pushed_version"] = artifact_property(pushed[0], "pushed_version")
        summary["pushed_destination"] = artifact_property(pushed[0], "pushed_destination")
        copied = artifact_property(pushed[0], atomic_pusher.COPIED_KEY)
        summary["pushed_copied"] = None if copied is None else bool(copied)   # False: already served as it was
        summary["pushed_earlier"] = summary["components"].get("Pusher") == "cached"
        destination = summary["pushed_destination"] or ""
        summary["pushed_present"] = (None if not destination or "://" in destination   # a bucket: not checked here
                                     else os.path.isfile(os.path.join(destination, "saved_model.pb")))
    return summary


def failed(components: dict, failure: dict, served: dict | None) -> dict:
    """The summary's account of a failed run (:func:`summarize`'s ``failure``), given its components' states."""
    step = next((name for name, state in components.items() if state == "failed"), None)
    return {**failure, "failed_step": step, "pushed": False, "still_served": served}


def failed_before_any_step(run_id: str, failure: dict, served: dict | None) -> dict:
    """The summary of a run that failed before ML Metadata recorded it (as :func:`summarize` gives one)."""
    return {"run_id": run_id, "components": {}, **failed({}, failure, served)}


def failed_where(summary: dict) -> str:
    """The failed step of a run that failed, as its summary and error line name it: "the Evaluator", or "the run"
    when it failed before any step was recorded."""
    return f"the {summary['failed_step']}" if summary.get("failed_step") else "the run"


def format_summary(summary: dict, wall_seconds: float | None = None) -> str:
    lines = ["", "=" * 72, f"letters pipeline run {summary['run_id']}"]
    cached = [n for n, s in summary["components"].items() if s == "cached"]
    ran = [n for n, s in summary["components"].items() if s != "cached"]
    lines.append(f"  components run: {', '.join(ran) or '-'}")
    lines.append(f"  components cached (inputs unchanged): {', '.join(cached) or '-'}")
    if "examples_per_split" in summary:
        split = summary["examples_per_split"]
        ingest = summary.get("ingest", {})
        reasons = ", ".join(f"{n} {r}" for r, n in ingest.get("skipped_by_reason", {}).items())
        lines.append(f"  examples: train {split.get('train')}, eval {split.get('eval')}; "
                     f"skipped {ingest.get('skipped', '?')}" + (f" ({reasons})" if reasons else "")
                     + (f"; {ingest['feedback']} user-labelled feedback images (in train, "
                        f"{ingest.get('feedback_repeat', 1)}× each)" if ingest.get("feedback") else ""))
        if ingest.get("empty_classes"):
            lines.append(f"  WARNING classes with no images: {', '.join(ingest['empty_classes'])}")
        conflicts = ingest.get("conflicting_labels")
        if conflicts:
            lines.append(f"  WARNING {conflicts_heading(conflicts)}: {shown_groups(conflicts)}")
        for note, groups in duplicates_notes(ingest):
            lines.append(f"  note: {note}" + (f": {shown_groups(groups)}" if groups else ""))
        for name, texts in summary.get("anomalies", {}).items():
            lines.append(f"  WARNING data anomalies in {name} (ExampleValidator): {'; '.join(texts)}")
        for name, why, missing in missing_from_split(ingest):
            lines.append(f"  WARNING classes with no {name} images ({why}): {', '.join(missing)}")
    for key, node in TRAINERS:
        if key in summary:
            t = summary[key]
            basis = {configs.SIZED: "sized from", configs.GENERATED: "the generated letters' epochs;"}.get(
                t.get("budget"), "chosen;")
            budget = (f" ({t['steps']:,} steps, {basis} {t['train_examples']:,} training images)"
                      if "steps" in t and "train_examples" in t else "")
            start = ""
            if key == "training" and t.get("base_model"):
                start = (", starting from the pretrained network" if "pretraining" in summary
                         else f", starting from the network of {t['base_model']}")
            earlier = f", by an earlier run (the {node}'s inputs are unchanged)" if t.get("trained_earlier") else ""
            lines.append(f"  {key}: {configs.plural(t['epochs'], 'epoch')}{budget} in {t['train_seconds']} s, "
                         f"{t['parameters']:,} parameters{start}{earlier}")
    if "evaluation" in summary:
        ev = summary["evaluation"]
        acc = ev["overall"].get(ACCURACY_METRIC)
        top3 = ev["overall"].get(TOP3_METRIC)
        line = f"  eval accuracy: top-1 {acc:.4f}" if acc is not None else "  eval accuracy: ?"
        if top3 is not None:
            line += f", top-3 {top3:.4f}"
        base = ev["baseline"].get(ACCURACY_METRIC)
        if base is not None and summary.get("not_compared_because"):
            line += f"; last blessed model {base:.4f} (compared: no — {summary['not_compared_because']})"
        elif base is not None:
            line += f"; last blessed model {base:.4f} (change {ev['diff'].get(ACCURACY_METRIC, acc - base):+.4f})"
        else:
            line += "; no blessed model before this one"
        lines.append(line)
        compared = base is not None and not summary.get("baseline_is_this_model")
        served = summary.get("baseline_not_served")
        if compared and summary.get("baseline_not_pushed"):
            lines.append(f"  WARNING the last blessed model ({summary['baseline_model']}) was never pushed "
                         f"({summary['baseline_not_pushed']}): compared with it, not with the model served")
        elif served and not compared:
            lines.append(f"  WARNING the serving dir already served version {served['version']} "
                         f"({served_origin(served)}) when this run started: "
                         "this model was never compared with it (the gate compared it with no other model)")
        elif served:
            lines.append(f"  WARNING the last blessed model ({summary['baseline_model']}) is not the one served "
                         f"(version {served['version']}, {served_origin(served)}): TFX's LatestBlessedModelStrategy "
                         "takes the newest model blessed, not the one blessed or pushed last: compared with it, not "
                         "with the model served")
        worst = sorted(ev["per_class"].items(), key=lambda kv: kv[1].get(ACCURACY_METRIC, 1.0))[:3]
        if worst:
            lines.append("  weakest classes: " + ", ".join(
                f"{name} {m.get(ACCURACY_METRIC, float('nan')):.2f}" for name, m in worst))
    stopped = f" (the run stopped at the {summary['failed_step']})" if summary.get("failed_step") else ""
    if "blessed" not in summary and summary.get("failed_because"):
        lines.append(f"  gate: no verdict, nothing blessed{stopped}")
    if "blessed" in summary:
        verdict = "BLESSED" if summary["blessed"] else "NOT BLESSED"
        floor_only = " by the accuracy floor only" if summary.get("not_compared_because") else ""
        lines.append(f"  gate: {verdict}{floor_only}" + ("" if summary["blessed"] else
                                                         " — " + "; ".join(summary.get("validation_failures", []))))
    if "serving_validated" in summary:
        check = summary.get("serving_validation", {})
        if summary["serving_validated"]:
            latency = check.get("latency_ms", {})
            lines.append("  serving check: passed" + (f" (REST p50 {latency['p50']} ms, max {latency['max']} ms)"
                                                      if "p50" in latency else ""))
        elif summary.get("blessed", True):
            lines.append(f"  serving check: FAILED — {check.get('failure') or 'see the ServingValidator log'}")
    if summary.get("failed_because"):
        served = summary.get("still_served")
        lines.append(f"  FAILED: {failed_where(summary)} — {summary['failed_because']}")
        lines.append("  pushed: nothing; " + (
            f"the serving dir still serves version {served['version']} ({served_origin(served)})" if served
            else "the serving dir is as it was (serving no model)"))
    elif "pushed" in summary:
        if summary["pushed"]:
            version, destination = summary["pushed_version"], summary["pushed_destination"]
            if summary.get("pushed_present") is False:
                lines.append(f"  pushed: version {version} by an earlier run; it is no longer in {destination}: "
                             "nothing of this model is served (--no-cache trains and pushes again)")
            elif summary.get("pushed_earlier"):
                lines.append(f"  pushed: version {version} → {destination}, by an earlier run (the Pusher's "
                             "inputs and the serving dir are unchanged)")
            elif summary.get("pushed_copied") is False:
                lines.append(f"  pushed: nothing new; this model is already served as version {version} "
                             f"→ {destination}")
            else:
                lines.append(f"  pushed: version {version} → {destination}")
        elif summary.get("push_failed"):
            lines.append(f"  pushed: NOTHING — {summary['push_failed']}")
        elif not summary.get("blessed", True):
            lines.append("  pushed: nothing (model not blessed)")
        else:
            lines.append("  pushed: nothing (the serving check failed)")
    if wall_seconds is not None:
        lines.append(f"  wall time: {wall_seconds:.0f} s")
    lines.append("=" * 72)
    return "\n".join(lines)
