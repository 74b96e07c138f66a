"""A pipeline root as the monitor reads it, without running the pipeline: ImageExampleGen examples (gzipped
TFRecords per split), StatisticsGen's eval statistics, and the ML Metadata links between them, an Evaluator's
blessing and a Pusher's pushed version (TFX's type names, event keys and properties)."""
from __future__ import annotations

import json
import os
import sqlite3
import uuid
from pathlib import Path

import tensorflow as tf
import tensorflow_data_validation as tfdv
import pandas as pd
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd

from components.image_example_gen import make_example
from core import configs
from pipeline.run_summary import STATS_FILE


def _write_split(uri: Path, split: str, items: list[tuple[bytes, str]]) -> None:
    (uri / f"Split-{split}").mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(uri / f"Split-{split}" / "data_tfrecord-00000-of-00001.gz"),
                              options="GZIP") as writer:
        for n, (image, label) in enumerate(items):
            writer.write(make_example(image, label, f"{label}/{n}.png").SerializeToString())


def link(store, execution_id: int, inputs: dict, outputs: dict) -> None:
    """The execution's input and output events, each artifact id under its key, as TFX records them."""
    events = []
    for kind, table in ((mlmd.Event.INPUT, inputs), (mlmd.Event.OUTPUT, outputs)):
        for key, artifact_id in table.items():
            event = mlmd.Event(artifact_id=artifact_id, execution_id=execution_id, type=kind)
            event.path.steps.add().key = key
            events.append(event)
    store.put_events(events)


def build(root: Path, train: list[tuple[bytes, str]], eval_items: list[tuple[bytes, str]],
          pushed_version: int = 7, kfp_v2: bool = False) -> str:
    """Writes the artifacts and ``root/metadata.sqlite``; returns the metadata file. ``kfp_v2``: the store as
    Kubeflow Pipelines v2's launcher writes it (types named by schema title, ``tfx.ModelBlessing``; numbers as
    doubles; the run context ``system.PipelineRun``)."""
    examples_uri, stats_uri = root / "ImageExampleGen" / "examples" / "1", root / "StatisticsGen" / "statistics" / "2"
    _write_split(examples_uri, configs.TRAIN_SPLIT, train)
    _write_split(examples_uri, configs.EVAL_SPLIT, eval_items)
    (stats_uri / f"Split-{configs.EVAL_SPLIT}").mkdir(parents=True)
    stats = tfdv.generate_statistics_from_dataframe(pd.DataFrame({configs.LABEL_NAME_KEY: [l for _, l in eval_items]}))
    (stats_uri / f"Split-{configs.EVAL_SPLIT}" / STATS_FILE).write_bytes(stats.SerializeToString())

    cfg = mlmd.ConnectionConfig()
    cfg.sqlite.filename_uri = str(root / "metadata.sqlite")
    cfg.sqlite.connection_mode = mlmd.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(cfg)
    types = {}

    def artifact(type_name: str, uri, **props) -> int:
        type_name = f"tfx.{type_name}" if kfp_v2 else type_name
        if type_name not in types:
            types[type_name] = store.put_artifact_type(mlmd.ArtifactType(name=type_name))
        a = mlmd.Artifact(type_id=types[type_name], uri=str(uri))
        for key, value in props.items():
            if isinstance(value, int) and kfp_v2:
                a.custom_properties[key].double_value = float(value)
            elif isinstance(value, int):
                a.custom_properties[key].int_value = value
            else:
                a.custom_properties[key].string_value = value
        return store.put_artifacts([a])[0]

    def execution(name: str, inputs: dict, outputs: dict) -> None:
        type_id = store.put_execution_type(mlmd.ExecutionType(name=name))
        (execution_id,) = store.put_executions([mlmd.Execution(type_id=type_id)])
        link(store, execution_id, inputs, outputs)

    examples = artifact("Examples", examples_uri)
    statistics = artifact("ExampleStatistics", stats_uri)
    model = artifact("Model", root / "Trainer" / "model" / "3")
    blessing = artifact("ModelBlessing", root / "Evaluator" / "blessing" / "4", blessed=1)
    pushed = artifact("PushedModel", root / "Pusher" / "pushed_model" / "5", pushed=1,
                      pushed_version=str(pushed_version))
    execution("ImageExampleGen", {}, {"examples": examples})
    execution("StatisticsGen", {"examples": examples}, {"statistics": statistics})
    execution("Evaluator", {"examples": examples, "model": model}, {"blessing": blessing})
    execution("Pusher", {"model": model, "model_blessing": blessing}, {"pushed_model": pushed})
    run_type = store.put_context_type(mlmd.ContextType(name="system.PipelineRun" if kfp_v2 else "pipeline_run"))
    store.put_contexts([mlmd.Context(type_id=run_type, name="run-1")])
    return str(root / "metadata.sqlite")


def record_run_folders(metadata_file: str, data_root: str, serving_dir: str) -> None:
    """Adds an ImageExampleGen and a Pusher execution as TFX's local runner records them: in their node contexts
    (``letters.<node>``), with the exec properties ``input_base`` and ``push_destination`` (PushDestination as
    JSON) naming the data root and serving dir."""
    cfg = mlmd.ConnectionConfig()
    cfg.sqlite.filename_uri = metadata_file
    cfg.sqlite.connection_mode = mlmd.SqliteMetadataSourceConfig.READWRITE
    store = metadata_store.MetadataStore(cfg)
    node_type = store.put_context_type(mlmd.ContextType(name="node"))
    destination = json.dumps({"filesystem": {"base_directory": serving_dir}}, indent=2)
    for node, key, value in (("ImageExampleGen", "input_base", data_root), ("Pusher", "push_destination", destination)):
        execution = mlmd.Execution(type_id=store.put_execution_type(mlmd.ExecutionType(name=f"tfx.{node}")))
        execution.custom_properties[key].string_value = value
        (execution_id,) = store.put_executions([execution])
        (context_id,) = store.put_contexts([mlmd.Context(type_id=node_type, name=f"{configs.PIPELINE_NAME}.{node}")])
        store.put_attributions_and_associations([], [mlmd.Association(execution_id=execution_id,
                                                                      context_id=context_id)])


def record_feedback_read(metadata_file: str, run: str, feedback_ids, skipped_ids=()) -> None:
    """Adds to the pipeline run ``run`` an ImageExampleGen output (an Examples artifact in the run's context) whose
    ingest report lists the feedback store rows ``feedback_ids`` as kept and ``skipped_ids`` as skipped."""
    cfg = mlmd.ConnectionConfig()
    cfg.sqlite.filename_uri = metadata_file
    cfg.sqlite.connection_mode = mlmd.SqliteMetadataSourceConfig.READWRITE
    store = metadata_store.MetadataStore(cfg)
    uri = Path(metadata_file).parent / "ImageExampleGen" / "examples" / f"{run}-{uuid.uuid4().hex}"
    uri.mkdir(parents=True)
    (uri / configs.INGEST_REPORT_FILE).write_text(json.dumps({
        "feedback": len(feedback_ids), "feedback_files": [f"feedback/alef/{i}.png" for i in feedback_ids],
        "skipped_files": {"no_ink": [{"file": f"feedback/bet/{i}.png", "detail": "flat"} for i in skipped_ids]}}))
    examples_type = store.put_artifact_type(mlmd.ArtifactType(name="Examples"))
    (artifact_id,) = store.put_artifacts([mlmd.Artifact(type_id=examples_type, uri=str(uri))])
    context = store.get_context_by_type_and_name("pipeline_run", run)
    store.put_attributions_and_associations([mlmd.Attribution(artifact_id=artifact_id, context_id=context.id)], [])


def record_trainer_run(metadata_file: str, run: str, started: float, state: int = mlmd.Execution.COMPLETE,
                       feedback_ids=None) -> None:
    """Adds the pipeline run ``run`` (or uses the one of that name) started at ``started``, with a Trainer execution
    in ``state`` as TFX's local runner records it: in the run's context and the node context ``letters.Trainer``;
    with ``feedback_ids``, its ExampleGen read those feedback store rows (:func:`record_feedback_read`)."""
    cfg = mlmd.ConnectionConfig()
    cfg.sqlite.filename_uri = metadata_file
    cfg.sqlite.connection_mode = mlmd.SqliteMetadataSourceConfig.READWRITE
    store = metadata_store.MetadataStore(cfg)
    node_type = store.put_context_type(mlmd.ContextType(name="node"))
    run_type = store.put_context_type(mlmd.ContextType(name="pipeline_run"))
    node = store.get_context_by_type_and_name("node", f"{configs.PIPELINE_NAME}.Trainer")
    node_id = node.id if node else store.put_contexts([mlmd.Context(type_id=node_type,
                                                                    name=f"{configs.PIPELINE_NAME}.Trainer")])[0]
    context = store.get_context_by_type_and_name("pipeline_run", run)
    run_id = context.id if context else store.put_contexts([mlmd.Context(type_id=run_type, name=run)])[0]
    trainer_type = store.put_execution_type(mlmd.ExecutionType(name="tfx.components.trainer.component.Trainer"))
    (execution_id,) = store.put_executions([mlmd.Execution(type_id=trainer_type, last_known_state=state)])
    store.put_attributions_and_associations([], [mlmd.Association(execution_id=execution_id, context_id=node_id),
                                                 mlmd.Association(execution_id=execution_id, context_id=run_id)])
    del store
    db = sqlite3.connect(metadata_file)   # ML Metadata sets a context's create time itself
    with db:
        db.execute("UPDATE Context SET create_time_since_epoch = ? WHERE name = ?", (int(started * 1000), run))
    db.close()
    if feedback_ids is not None:
        record_feedback_read(metadata_file, run, feedback_ids)
