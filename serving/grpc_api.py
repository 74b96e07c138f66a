"""TF Serving's gRPC API: PredictionService and ModelService on the generated servicers of
``tensorflow_serving.apis`` (model_servers/prediction_service_impl.cc, model_service_impl.cc).

Each method follows its TF Serving implementation: predict_impl.cc / predict_util.cc (RunPredict),
classification_service.cc, regression_service.cc, multi_inference.cc, get_model_metadata_impl.cc,
get_model_status_impl.cc. Errors a request causes carry TF Serving's canonical code and message. Like TF
Serving, Predict, Classify and Regress count ``request_count{model_name,status}`` and, when OK,
``request_latency{model_name,API,entrypoint="GRPC"}`` and their model run ``runtime_latency``; MultiInference
counts its tf.Examples (``request_example_counts``); the other methods record no request metrics.
"""
from __future__ import annotations

import logging
import time

import grpc
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, inference_pb2,
                                     model_management_pb2, model_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from core.deadlines import waitable
from serving import inference, tensor_proto
from serving.status import CODE_NAMES, ServingError, from_exception, invalid

log = logging.getLogger("serving.grpc")

SIGNATURE_DEF = "signature_def"
_CODE_NUMBERS = {name: number for number, name in CODE_NAMES.items()}


def grpc_code(name: str) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, name, grpc.StatusCode.UNKNOWN)


def _model_spec(request):
    if not request.HasField("model_spec"):
        raise invalid("Missing ModelSpec")
    return request.model_spec


GRPC_MESSAGE_LIMIT = 1024   # ToGRPCStatus (model_servers/grpc_status_util.cc)


def _deadline(context) -> float | None:
    """Seconds left of the call, or None when it has no deadline: grpcio then reports an infinite one as about
    9.2e9 s, past what a thread can wait (OverflowError; every Predict sent without a timeout had failed INTERNAL).
    TF Serving runs such a call with no run timeout."""
    return waitable(context.time_remaining())


def grpc_message(message: str) -> str:
    """The status message as TF Serving sends it: its first 1024 bytes and "...TRUNCATED" when longer, so that a long
    message (hundreds of input names) cannot overflow the client's metadata limit and turn into another status."""
    encoded = message.encode("utf-8", "surrogateescape")
    if len(encoded) <= GRPC_MESSAGE_LIMIT:
        return message
    return encoded[:GRPC_MESSAGE_LIMIT].decode("utf-8", "ignore") + "...TRUNCATED"


class GrpcApi:
    """The two services over the server's model core.

    ``run(servable, signature_name, arrays, timeout, outputs)`` runs a signature for the output aliases
    ``outputs`` (None: all; through the batcher when batching is on) and blocks; ``reload(config, timeout)``
    applies a ModelServerConfig and waits for its new models;
    ``request_logger`` (a serving.request_logging.ServerRequestLogger) logs the inference calls."""

    def __init__(self, core, metrics, run, reload, request_logger):
        self.core = core
        self.metrics = metrics
        self.run = run
        self.reload = reload
        self.request_logger = request_logger
        self.prediction_service = _PredictionService(self)
        self.model_service = _ModelService(self)

    def add_to(self, server) -> None:
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(self.prediction_service, server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(self.model_service, server)

    # ------------------------------------------------------------------------------------- plumbing
    def serve(self, handler, request, context, api: str | None = None):
        """Runs ``handler``; a failure becomes the call's status (TF Serving's code and message)."""
        started = time.perf_counter()
        model_name = request.model_spec.name if api else ""
        try:
            response = handler(request, context)
        except ServingError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - TF errors keep their code; anything else is a server bug
            if isinstance(getattr(exc, "error_code", None), int):
                error = from_exception(exc)
            else:
                log.exception("Unhandled error in %s", api or handler.__name__)
                error = ServingError("INTERNAL", "Internal server error")
        else:
            if api:
                self.metrics.request(model_name, "OK", api, (time.perf_counter() - started) * 1e6,
                                     entrypoint="GRPC")
            return response
        if api:
            self.metrics.request(model_name, error.code)
        context.abort(grpc_code(error.code), grpc_message(error.message))

    def _run(self, servable, signature_name: str, arrays: dict, context, api: str | None = None,
             model_name: str = "", fetched=None) -> dict:
        """The model run of the output aliases ``fetched`` (None: all); with ``api`` (Predict, Classify, Regress) its
        wall time is the runtime latency metric."""
        started = time.perf_counter()
        outputs = self.run(servable, signature_name, arrays, _deadline(context), fetched)
        if api:
            self.metrics.runtime(model_name, api, (time.perf_counter() - started) * 1e6)
        return outputs

    # ------------------------------------------------------------------------------------- methods
    def predict(self, request, context) -> predict_pb2.PredictResponse:
        spec = _model_spec(request)
        servable = inference.resolve_spec(self.core, spec)
        signature_name = spec.signature_name or inference.DEFAULT_SIGNATURE
        response = predict_pb2.PredictResponse()
        arrays, aliases = inference.predict_request(servable, signature_name, request)
        inference.make_model_spec(response.model_spec, spec.name, signature_name, servable.version)
        outputs = self._run(servable, signature_name, arrays, context, "Predict", spec.name, aliases)
        for alias in aliases:
            response.outputs[alias].CopyFrom(tensor_proto.to_proto(outputs[alias]))
        return self._logged("predict", request, response, response.model_spec)

    def classify(self, request, context) -> classification_pb2.ClassificationResponse:
        return self._examples_call(request, context, inference.CLASSIFY, classification_pb2.ClassificationResponse(),
                                   inference.classification_result)

    def regress(self, request, context) -> regression_pb2.RegressionResponse:
        return self._examples_call(request, context, inference.REGRESS, regression_pb2.RegressionResponse(),
                                   inference.regression_result)

    def _examples_call(self, request, context, method: str, response, fill_result):
        """Classify or Regress: run the tf.Examples, fill ``response`` (its model spec and result), log it."""
        examples, outputs, version = self._run_examples(request, method, context)
        inference.make_model_spec(response.model_spec, request.model_spec.name, request.model_spec.signature_name,
                                  version)
        fill_result(outputs, len(examples), response.result)
        return self._logged(method, request, response, response.model_spec)

    def _run_examples(self, request, method: str, context):
        spec = _model_spec(request)
        servable = inference.resolve_spec(self.core, spec)
        signature_name = spec.signature_name or inference.DEFAULT_SIGNATURE
        signature = inference.example_signature(servable, signature_name, method)
        examples = inference.input_examples(request.input)
        outputs = self._run(servable, signature_name, inference.examples_batch(examples, signature), context,
                            method.capitalize(), spec.name)
        return examples, outputs, servable.version

    def multi_inference(self, request, context) -> inference_pb2.MultiInferenceResponse:
        """The model the first task names (RunMultiInferenceWithServerCore), then inference.multi_inference."""
        tasks = request.tasks
        spec = tasks[0].model_spec if tasks and tasks[0].HasField("model_spec") else model_pb2.ModelSpec()
        servable = inference.resolve_spec(self.core, spec)
        response = inference.multi_inference(
            servable, request, lambda signature_name, arrays: self._run(servable, signature_name, arrays, context),
            self.metrics, servable.version)
        return self._logged("multi_inference", request, response, response.results[0].model_spec)

    def _logged(self, kind: str, request, response, spec):
        """``response``, after the request logger (if the model has one and samples this call) logged the call."""
        self.request_logger.log(kind, spec, lambda: (request, response))
        return response

    def get_model_metadata(self, request, context) -> get_model_metadata_pb2.GetModelMetadataResponse:
        spec = _model_spec(request)
        if not request.metadata_field:
            raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != SIGNATURE_DEF:
                raise invalid(f"Metadata field {field} is not supported")
        servable = inference.resolve_spec(self.core, spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata[SIGNATURE_DEF].Pack(inference.signature_def_map(servable))
        return response

    def get_model_status(self, request, context):
        spec = _model_spec(request)
        version = spec.version.value if spec.HasField("version") else None
        return inference.model_status(self.core, spec.name, version)

    def handle_reload_config_request(self, request, context) -> model_management_pb2.ReloadConfigResponse:
        """Logs each entry of the config and, at ERROR, why it failed (ReloadConfig failed: …), as TF Serving's
        ModelServiceImpl does; not a call that ended at its deadline (TF's ReloadConfig has none and waits on)."""
        try:
            self._reload(request.config, context)
        except ServingError as exc:
            if exc.code != "DEADLINE_EXCEEDED":
                log.error("ReloadConfig failed: %s", exc.message)
            raise
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = _CODE_NUMBERS["OK"]
        # One entry per name, as TF Serving's map of them (RecordMetricsIncrease); TF's metric registry is not kept
        # here: no increase to report.
        for name in dict.fromkeys(request.metric_names):
            response.metric.add(name=name, int64_value_increase=0)
        return response

    def _reload(self, config, context) -> None:
        """Applies a ModelConfigList (logging its entries) and waits for the models it adds."""
        if config.WhichOneof("config") != "model_config_list":
            raise invalid("ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                          "ModelConfigList is currently supported")
        for index, model in enumerate(config.model_config_list.config):
            log.info("\nConfig entry\n\tindex : %d\n\tpath : %s\n\tname : %s\n\tplatform : %s", index,
                     model.base_path, model.name, model.model_platform)
        self.reload(config, _deadline(context))


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, api: GrpcApi):
        self.api = api

    def Predict(self, request, context):  # noqa: N802 - generated servicer names
        return self.api.serve(self.api.predict, request, context, api="Predict")

    def Classify(self, request, context):  # noqa: N802
        return self.api.serve(self.api.classify, request, context, api="Classify")

    def Regress(self, request, context):  # noqa: N802
        return self.api.serve(self.api.regress, request, context, api="Regress")

    def MultiInference(self, request, context):  # noqa: N802
        return self.api.serve(self.api.multi_inference, request, context)

    def GetModelMetadata(self, request, context):  # noqa: N802
        return self.api.serve(self.api.get_model_metadata, request, context)


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, api: GrpcApi):
        self.api = api

    def GetModelStatus(self, request, context):  # noqa: N802
        return self.api.serve(self.api.get_model_status, request, context)

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        return self.api.serve(self.api.handle_reload_config_request, request, context)
