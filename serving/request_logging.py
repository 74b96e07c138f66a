"""``ModelConfig.logging_config``: request logs of the embedded server, as TF Serving's ServerRequestLogger.

A model whose config has a ``logging_config`` gets a :class:`core.request_log.RequestLogWriter` on its
``log_collector_config.filename_prefix`` with its sampling rate (:func:`sampling_rate`; models with the same
logging_config share one, as ServerRequestLogger::FindOrCreateLogger does). Successful Predict, Classify,
Regress and MultiInference calls, over gRPC and REST alike, become ``predict_log``, ``classify_log``,
``regress_log`` and ``multi_inference_log`` records (request + response); a REST call is logged as the gRPC
request and response it is equivalent to. ``log_metadata`` holds the model spec that answered (name,
signature, version), the sampling config, the ``serve`` tag and ``timestamp_secs``.

TF Serving picks a LogCollector by ``log_collector_config.type`` and refuses a type it has no factory for
(``Cannot find LogCollector::Factory for type: <type>``); open-source tensorflow_model_server has none, so it
refuses every logging_config (``No request-logger-creator provided.``). This server has one,
:data:`COLLECTOR_TYPE`.
"""
from __future__ import annotations

import logging
import threading

from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (classification_pb2, model_pb2, predict_pb2, prediction_log_pb2,
                                     regression_pb2)

from core import request_log, settings
from serving import inference, protos, tensor_proto
from serving.status import ServingError, error_code, invalid

log = logging.getLogger("serving")

COLLECTOR_TYPE = "tfrecord"   # TFRecord files of PredictionLog, <filename_prefix>-<UTC time>-<n>.tfrecord
LOG_KINDS = {"predict": "predict_log", "classify": "classify_log", "regress": "regress_log",
             "multi_inference": "multi_inference_log"}


def check_logging_config(model, source: str) -> None:
    """Refuses a model's logging_config this server cannot honour (a ServingError naming ``source``): a ``type``
    it has no collector for is NOT_FOUND, as LogCollector::Create has it; the rest, which TF Serving's one
    LogCollector does not check, are INVALID_ARGUMENT, the code open-source tensorflow_model_server refuses every
    logging_config with (No request-logger-creator provided.). Among them a ``filename_prefix`` that is a URL
    (``gs://…``), as the writer makes local files only."""
    if not model.HasField("logging_config"):
        return
    config = model.logging_config
    where = f"{source}: model {model.name}: logging_config"
    kind = config.log_collector_config.type
    if kind != COLLECTOR_TYPE:
        raise ServingError("NOT_FOUND", f"{where}: Cannot find LogCollector::Factory for type: {kind!r} (this server "
                                        f"has one: {COLLECTOR_TYPE!r}, TFRecord files of PredictionLog)")
    prefix = config.log_collector_config.filename_prefix
    if not prefix:
        raise invalid(f"{where}: log_collector_config.filename_prefix is empty")
    if settings.is_url(prefix):   # gs://b/x had been written to <working folder>/gs:/b/x, silently
        raise invalid(f"{where}: log_collector_config.filename_prefix {prefix!r} is a URL: this server writes "
                      f"request logs to local files only; mount a volume (the bucket through Cloud Storage FUSE, "
                      f"say) and give a path in it")
    try:
        request_log.check_sampling_rate(config.sampling_config.sampling_rate,
                                        f"{where}: sampling_config.sampling_rate")
        for i, per_task in enumerate(protos.per_task_sampling_configs(config.sampling_config)):
            request_log.check_sampling_rate(per_task.sampling_rate,
                                            f"{where}: sampling_config.per_task_sampling_configs[{i}].sampling_rate")
    except ValueError as exc:
        raise invalid(str(exc)) from None


def sampling_rate(sampling_config) -> float:
    """The rate this server samples at: the first of 2.20.0's ``per_task_sampling_configs`` that matches it, else
    ``sampling_rate`` (RequestLogger's constructor). The server has no data centre and no task index, so a rule
    matches when it names neither."""
    for per_task in protos.per_task_sampling_configs(sampling_config):
        if not per_task.dc and not per_task.HasField("task_index"):
            return per_task.sampling_rate
    return sampling_config.sampling_rate


class ServerRequestLogger:
    """{model name: writer} of the applied config. ``prepare`` + ``apply`` replace it (a config's writers are
    made before the models change, so a folder that cannot be created or written refuses the config); ``log``
    writes."""

    def __init__(self, metrics=None):
        self._metrics = metrics           # serving.metrics.Metrics: request_log_count
        self._writers: dict = {}          # model name -> (RequestLogWriter, its SamplingConfig)
        self._by_config: dict = {}        # serialized LoggingConfig -> RequestLogWriter
        self._lock = threading.Lock()

    def prepare(self, config, source: str):
        """The writers ``config`` (a ModelServerConfig) asks for; None for an empty config (no change)."""
        if config.WhichOneof("config") is None:
            return None
        writers, by_config = {}, {}
        for model in config.model_config_list.config:
            if not model.HasField("logging_config"):
                continue
            check_logging_config(model, source)
            key = model.logging_config.SerializeToString(deterministic=True)
            writer = by_config.get(key) or self._by_config.get(key)
            if writer is None:
                logging_config = model.logging_config
                try:
                    writer = request_log.RequestLogWriter(logging_config.log_collector_config.filename_prefix,
                                                          sampling_rate(logging_config.sampling_config))
                except OSError as exc:
                    raise invalid(f"{source}: model {model.name}: logging_config: cannot write under "
                                  f"{logging_config.log_collector_config.filename_prefix!r}: {exc}") from None
                if beside := request_log.beside_folder(logging_config.log_collector_config.filename_prefix):
                    log.warning("%s: model %s: logging_config: %s", source, model.name, beside)
            by_config[key] = writer
            writers[model.name] = (writer, model.logging_config.sampling_config)
        return writers, by_config

    def apply(self, prepared) -> None:
        if prepared is None:
            return
        with self._lock:
            retired = [w for w in self._by_config.values() if w not in prepared[1].values()]
            self._writers, self._by_config = prepared
        for writer in retired:
            writer.close()

    def close(self) -> None:
        self.apply(({}, {}))

    def logs(self, model_name: str) -> bool:
        """Whether calls of ``model_name`` may be logged (it has a writer)."""
        return model_name in self._writers

    def log(self, kind: str, spec, build) -> None:
        """Logs one call of model ``spec.name`` if its writer samples it: ``build()`` -> (request, response)
        protos of API ``kind`` (a key of :data:`LOG_KINDS`), called only then; ``spec``: the ModelSpec that
        answered (name, signature, version)."""
        writer, sampling_config = self._writers.get(spec.name, (None, None))
        if writer is None:
            return

        def record():
            request, response = build()
            entry = prediction_log_pb2.PredictionLog()
            log = getattr(entry, LOG_KINDS[kind])
            log.request.CopyFrom(request)
            log.response.CopyFrom(response)
            request_log.fill_metadata(entry, spec.name, spec.signature_name, spec.version.value, writer.sampling_rate)
            entry.log_metadata.sampling_config.CopyFrom(sampling_config)   # all of it, as RequestLogger::Log,
            entry.log_metadata.sampling_config.sampling_rate = writer.sampling_rate   # with the rate it applies
            return entry

        writer.log(record, None if self._metrics is None else
                   lambda error: self._metrics.request_logged(spec.name, error_code(error)))


# ------------------------------------------------------------------------ REST calls as their gRPC protos
def model_spec(name: str, signature_name: str | None = None, version: int | None = None,
               label: str | None = None) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature_name or "")
    if version is not None:
        spec.version.value = version
    elif label is not None:
        spec.version_label = label
    return spec


def predict_messages(request_spec, response_spec, arrays: dict, outputs: dict):
    """A REST predict as (PredictRequest, PredictResponse): the inputs as the server converted them to arrays,
    every output the REST answer carries."""
    request = predict_pb2.PredictRequest(model_spec=request_spec)
    for alias, array in arrays.items():
        request.inputs[alias].CopyFrom(tensor_proto.to_proto(array))
    response = predict_pb2.PredictResponse(model_spec=response_spec)
    for alias in sorted(outputs):
        response.outputs[alias].CopyFrom(tensor_proto.to_proto(outputs[alias]))
    return request, response


def example_messages(verb: str, request_spec, response_spec, examples: list, result):
    """A REST classify/regress as (Classification|RegressionRequest, ...Response): the examples as an
    ``example_list`` (a REST ``context`` is already merged into each, as the server runs them), the response
    holding ``result`` (the Classification|RegressionResult the REST answer was written from)."""
    if verb == inference.CLASSIFY:
        request, response = classification_pb2.ClassificationRequest(), classification_pb2.ClassificationResponse()
    else:
        request, response = regression_pb2.RegressionRequest(), regression_pb2.RegressionResponse()
    request.model_spec.CopyFrom(request_spec)
    request.input.example_list.examples.extend(example_pb2.Example.FromString(e) for e in examples)
    response.model_spec.CopyFrom(response_spec)
    response.result.CopyFrom(result)
    return request, response
