"""What served traffic is compared with, read from the pipeline's ML Metadata and artifacts.

* the latest **blessed** model's Evaluator run: its eval examples, the StatisticsGen output for them (the eval
  split's label distribution) and the Evaluator's metrics;
* per pushed version, the Evaluator's top-1 accuracy of the model pushed as that version;
* the image features of the ExampleGen's training split (``image_raw``), as :mod:`.image_features` computes them;
* the pipeline runs that trained, newest first (``--retrain-when`` judges only evidence newer than the last): each
  run whose Trainer ended (its execution COMPLETE, or CACHED: the model of the same data reused), whether or not the
  gate then blessed the model, since it was trained on the evidence stored before the run; a run stopped or failed
  before its Trainer ended did not use it. Each with when it started and the feedback rows its ExampleGen read (by
  their store ids, from its ingest report): the feedback a run trained on is judged by the last run that read that
  store, not by a run with ``--no-feedback`` or another ``--feedback-dir``. A store that records no Trainer node
  (Kubeflow Pipelines v2's, which ``--retrain-when`` does not run on) gives the newest run's start.
"""
from __future__ import annotations

import dataclasses
import functools
import os

import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import statistics_pb2

from components.image_example_gen import feedback_read, is_feedback
from core import configs
from core.configs import ACCURACY_METRIC
from core.files import pattern_under
from pipeline.monitor import image_features
from pipeline.run_summary import STATS_FILE, artifact_property, evaluation_metrics, ingest_report, open_store

_OUTPUTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
_INPUTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
_TRAINED = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)   # a Trainer that ended


def _type_names(name: str) -> tuple[str, str]:
    """A TFX type's names in the stores this reads: the local runner's (``ModelBlessing``), and Kubeflow Pipelines
    v2's, whose launcher names artifact types by their schema title (``tfx.ModelBlessing``)."""
    return name, f"tfx.{name}"


def _artifacts_of_type(store, name: str) -> list:
    return [a for type_name in _type_names(name) for a in store.get_artifacts_by_type(type_name)]


class NoReference(LookupError):
    """The metadata store holds no blessed model (or cannot be read, or an artifact it records is missing)."""


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """A pipeline run whose Trainer ended."""
    started: float                      # seconds since the epoch
    examples_uris: tuple[str, ...]      # its ExampleGens' outputs, whose ingest reports name the feedback read

    def feedback_read(self) -> frozenset[str]:
        """The feedback store ids of the rows the run's ExampleGen read (kept or skipped)."""
        return frozenset().union(*(_feedback_read(uri) for uri in self.examples_uris))


@functools.lru_cache(maxsize=256)   # a cached ExampleGen's output is every later run's too
def _feedback_read(examples_uri: str) -> frozenset[str]:
    return feedback_read(ingest_report(examples_uri))


@dataclasses.dataclass
class Reference:
    examples_uri: str
    eval_statistics: statistics_pb2.DatasetFeatureStatisticsList
    eval_metrics: dict                  # run_summary.evaluation_metrics() of the blessed model
    version_accuracy: dict              # pushed version -> Evaluator top-1 accuracy of that model
    trained_runs: tuple[TrainedRun, ...] = ()   # the runs that trained, newest first

    @property
    def last_run_time(self) -> float | None:
        """When the last run that trained started: seconds since the epoch."""
        return self.trained_runs[0].started if self.trained_runs else None

    @property
    def eval_accuracy(self) -> float | None:
        return self.eval_metrics.get("overall", {}).get(ACCURACY_METRIC)

    def to_json(self) -> dict:
        return {"examples_uri": self.examples_uri, "eval_accuracy": self.eval_accuracy,
                "version_accuracy": {str(k): v for k, v in self.version_accuracy.items()},
                "last_run_time": self.last_run_time}


def _events(store, artifact_ids=None, execution_ids=None):
    if artifact_ids is not None:
        return store.get_events_by_artifact_ids(list(artifact_ids))
    return store.get_events_by_execution_ids(list(execution_ids))


def _linked(store, artifact_id: int, own_kinds, other_kinds, key: str, type_name: str | None = None,
            own_key: str | None = None) -> list:
    """Artifacts at ``key`` on the other side of the executions that have ``artifact_id`` as ``own_kinds`` (at
    ``own_key`` only, when given)."""
    executions = {e.execution_id for e in _events(store, artifact_ids=[artifact_id]) if e.type in own_kinds
                  and (not own_key or (e.path.steps and e.path.steps[0].key == own_key))}
    if not executions:
        return []
    ids = {e.artifact_id for e in _events(store, execution_ids=executions)
           if e.type in other_kinds and (not key or (e.path.steps and e.path.steps[0].key == key))}
    found = store.get_artifacts_by_id(list(ids)) if ids else []
    if type_name:
        type_ids = {t.id for t in store.get_artifact_types() if t.name in _type_names(type_name)}
        found = [a for a in found if a.type_id in type_ids]
    return sorted(found, key=lambda a: a.id)


def _trained_runs(store) -> tuple[TrainedRun, ...]:
    """The pipeline runs that trained, newest first: their Trainer's execution ended (COMPLETE or CACHED); every
    run when the store records no Trainer node."""
    runs = store.get_contexts_by_type("pipeline_run") + store.get_contexts_by_type("system.PipelineRun")
    trainer = store.get_context_by_type_and_name("node", f"{configs.PIPELINE_NAME}.Trainer")
    if trainer is not None:
        run_types = {c.type_id for c in runs}
        ended = [e for e in store.get_executions_by_context(trainer.id) if e.last_known_state in _TRAINED]
        trained = {c.id for e in ended for c in store.get_contexts_by_execution(e.id) if c.type_id in run_types}
        runs = [c for c in runs if c.id in trained]
    examples_types = {t.id for t in store.get_artifact_types() if t.name in _type_names("Examples")}
    return tuple(TrainedRun(c.create_time_since_epoch / 1000,
                            tuple(a.uri for a in store.get_artifacts_by_context(c.id) if a.type_id in examples_types))
                 for c in sorted(runs, key=lambda c: (c.create_time_since_epoch, c.id), reverse=True))


def _eval_statistics(statistics_uri: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    """The eval split's statistics in a StatisticsGen output; NoReference naming the file when it is missing."""
    path = os.path.join(statistics_uri, f"Split-{configs.EVAL_SPLIT}", STATS_FILE)
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read())
    except tf.errors.NotFoundError:   # the store was read: the artifact it records is gone
        raise NoReference(f"no eval statistics at {path}: the StatisticsGen output ML Metadata records for the "
                          "blessed model's examples is missing") from None


def _accuracy(read, uri: str) -> float | None:
    """The top-1 accuracy of the evaluation at ``uri``, by ``read`` (:func:`run_summary.evaluation_metrics`)."""
    try:
        return read(uri)["overall"].get(ACCURACY_METRIC)
    except Exception:   # an evaluation that was not written completely; the report shows it as unknown
        return None


def connect(metadata: str):
    """``grpc://HOST:PORT`` (Kubeflow's metadata-grpc-service) or a SQLite file (local runs)."""
    if metadata.startswith("grpc://"):
        from ml_metadata.metadata_store import metadata_store

        host, _, port = metadata[len("grpc://"):].rpartition(":")
        if not host or not port.isdigit():
            raise NoReference(f"--metadata {metadata}: expected grpc://HOST:PORT")
        return metadata_store.MetadataStore(metadata_store_pb2.MetadataStoreClientConfig(host=host, port=int(port)))
    if not os.path.exists(metadata):
        raise NoReference(f"no ML Metadata store at {metadata}: run the pipeline first (--pipeline-root)")
    return open_store(metadata)


def load(metadata: str) -> Reference:
    """The reference recorded in ``metadata`` (a SQLite file or grpc://HOST:PORT); NoReference when there is
    none, or the store cannot be read (a damaged file, a metadata service that does not answer)."""
    try:
        return _load(metadata)
    except NoReference:
        raise
    except Exception as err:   # ML Metadata's RuntimeError and its errors.* (UnavailableError, ...)
        raise NoReference(f"the ML Metadata store {metadata} cannot be read: {type(err).__name__}: {err}") from None


def _load(metadata: str) -> Reference:
    store = connect(metadata)
    blessings = [a for a in _artifacts_of_type(store, "ModelBlessing") if artifact_property(a, "blessed") == 1]
    if not blessings:
        raise NoReference(f"no blessed model recorded in {metadata}")
    blessing = max(blessings, key=lambda a: a.id)
    examples = _linked(store, blessing.id, _OUTPUTS, _INPUTS, "examples")
    evaluations = _linked(store, blessing.id, _OUTPUTS, _OUTPUTS, "evaluation")
    if not examples:
        raise NoReference(f"the Evaluator run that blessed model {blessing.id} has no examples input")
    # StatisticsGen's output key; Transform's pre/post_transform_stats are ExampleStatistics of the same examples
    statistics = _linked(store, examples[-1].id, _INPUTS, _OUTPUTS, "statistics", "ExampleStatistics")
    if not statistics:
        raise NoReference(f"no StatisticsGen output for the examples at {examples[-1].uri}")
    # each evaluation read once: the blessed model's is its pushed version's too (a failed read is not kept)
    read = functools.cache(evaluation_metrics)
    version_accuracy = {}
    for pushed in _artifacts_of_type(store, "PushedModel"):
        version = artifact_property(pushed, "pushed_version")
        if not artifact_property(pushed, "pushed") or not version:
            continue
        for model in _linked(store, pushed.id, _OUTPUTS, _INPUTS, "model"):
            # its own evaluations as the candidate, not later runs' that compared it as their baseline_model
            evaluated = _linked(store, model.id, _INPUTS, _OUTPUTS, "evaluation", own_key="model")
            if evaluated:
                version_accuracy[int(version)] = _accuracy(read, evaluated[-1].uri)
    return Reference(
        examples_uri=examples[-1].uri, eval_statistics=_eval_statistics(statistics[-1].uri),
        eval_metrics=read(evaluations[-1].uri) if evaluations else {},
        version_accuracy=version_accuracy, trained_runs=_trained_runs(store))


def split_images(examples_uri: str, split: str = configs.TRAIN_SPLIT):
    """The ``image_raw`` bytes of one split of an ExampleGen output (gzipped TFRecords of tf.Examples)."""
    files = tf.io.gfile.glob(pattern_under(os.path.join(examples_uri, f"Split-{split}"), "*"))
    if not files:
        raise NoReference(f"no {split} examples under {examples_uri}")
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
        example = tf.train.Example.FromString(record)
        if is_feedback(example):   # users' images: not the data the model was built on
            continue
        yield example.features.feature[configs.IMAGE_KEY].bytes_list.value[0]


@functools.lru_cache(maxsize=4)   # --watch runs: the training split of one ExampleGen output does not change
def training_features(examples_uri: str, max_pixels: int = image_features.DEFAULT_MAX_PIXELS) -> tuple[dict, ...]:
    return tuple(image_features.features(image, max_pixels=max_pixels) for image in split_images(examples_uri))
