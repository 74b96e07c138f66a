"""ServingValidator: loads the candidate model in a TF Serving-compatible server and sends it real images over
REST before the Pusher may push it. Produces an ``InfraBlessing`` (what TFX's InfraValidator produces and the
Pusher checks through its ``infra_blessing`` input).

Why not TFX's InfraValidator: it starts tensorflow/serving through a docker engine or a Kubernetes pod that it
creates itself, so it needs a docker socket locally and pod-creation rights (plus a reachable pod network) in
the cluster, and KubeflowV2DagRunner refuses to compile it at all ("component type InfraValidator is not
supported"). This component runs the project's embedded server (``serving/``: same REST API, routes, JSON
bodies and error codes as tensorflow/serving, see serving/README.md) inside its own process, so it runs the
same way in a local run, in a CI job and in a KFP pod, with no extra permissions.

What it checks, on the model exactly as the Pusher would publish it (copied as version 1 of a model base path):

1. the server loads it: ``GET /v1/models/<name>`` reports version 1 ``AVAILABLE``;
2. ``GET /v1/models/<name>/metadata`` lists the serving contract: ``predict_images`` (input ``images``) and
   ``serving_default`` (input ``examples``) with their outputs;
3. ``POST :predict`` on ``predict_images`` with up to ``num_examples`` real images from the eval split (base64,
   as web clients send them) answers one row per image with ``probabilities`` over the 27 classes summing to 1
   (numbers, [N, 27]) and ``top_classes``, ``top_letters``, ``top_scores``, ``top_indices`` ([N, k]) that follow
   the contract the web client enforces (core.prediction_contract: distinct classes best first, their scores
   their probabilities, the names and letters of those classes);
4. ``POST :predict`` on ``serving_default`` with the same images as serialized tf.Examples answers the same
   probabilities (the two signatures must agree);
5. optionally, the slowest request stays under ``max_latency_ms``.

Any failure marks the model not blessed (``INFRA_NOT_BLESSED``, custom property ``blessed=0``) and the Pusher
skips it, the report naming the check that failed (``failed_check``) and why (``failure``); the report of every
check is ``<blessing uri>/serving_validation.json``. A model the Evaluator did not
bless (optional ``model_blessing`` input) is not started at all.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import time
from typing import Any

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.components.util import model_utils
from tfx.utils import io_utils, path_utils

from core import configs
from core.files import pattern_under, remove_stale_folders
from core.labels import NUM_CLASSES
from core.prediction_contract import BrokenContract, check_prediction, check_probabilities
from core.signals import stop_if_requested
from serving.client import RestConnection, ServingUnavailable, version_states

BLESSED_KEY = "blessed"                       # the custom property the Pusher reads (model_utils)
BLESSED_FILE = "INFRA_BLESSED"
NOT_BLESSED_FILE = "INFRA_NOT_BLESSED"
REPORT_FILE = "serving_validation.json"

MODEL_KEY = "model"
EXAMPLES_KEY = "examples"
MODEL_BLESSING_KEY = "model_blessing"
BLESSING_KEY = "blessing"
MODEL_NAME_KEY = "model_name"
NUM_EXAMPLES_KEY = "num_examples"
MAX_LATENCY_KEY = "max_latency_ms"
SPLIT_KEY = "split"
CODE_KEY = "code"        # a fingerprint of the check's code (and the server's): a change re-runs it

BATCH = 8                # images per predict request
PROBABILITY_TOLERANCE = 1e-3
IMAGE_OUTPUTS = (configs.PROBABILITIES_OUTPUT, configs.TOP_CLASSES_OUTPUT, configs.TOP_LETTERS_OUTPUT,
                 configs.TOP_SCORES_OUTPUT, configs.TOP_INDICES_OUTPUT)   # what the web client reads


class ServingValidatorSpec(types.ComponentSpec):
    PARAMETERS = {
        MODEL_NAME_KEY: ExecutionParameter(type=str),
        NUM_EXAMPLES_KEY: ExecutionParameter(type=int),
        MAX_LATENCY_KEY: ExecutionParameter(type=float),
        SPLIT_KEY: ExecutionParameter(type=str),
        CODE_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        MODEL_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
    }
    OUTPUTS = {
        BLESSING_KEY: ChannelParameter(type=standard_artifacts.InfraBlessing),
    }


class ValidationFailed(Exception):
    pass


# ------------------------------------------------------------------------------------------ inputs
def sample_examples(examples: types.Artifact, split: str, limit: int) -> list[tuple[bytes, bytes, int]]:
    """Up to ``limit`` (serialized tf.Example, image bytes, label) from one split of an Examples artifact."""
    import tensorflow as tf

    split_uri = artifact_utils.get_split_uri([examples], split)
    files = sorted(fileio.glob(pattern_under(split_uri, "*")))
    if not files:
        raise ValueError(f"no files in the {split!r} split of {examples.uri}")
    compression = "GZIP" if files[0].endswith(".gz") else None
    found = []
    for record in tf.data.TFRecordDataset(files, compression_type=compression).take(limit):
        serialized = record.numpy()
        example = tf.train.Example.FromString(serialized)
        feature = example.features.feature
        image = feature[configs.IMAGE_KEY].bytes_list.value[0]
        label = feature[configs.LABEL_KEY].int64_list.value[0] if configs.LABEL_KEY in feature else -1
        found.append((serialized, image, int(label)))
    if not found:
        raise ValueError(f"the {split!r} split of {examples.uri} holds no examples")
    return found


# ------------------------------------------------------------------------------------------ REST
class _TimedRest:
    """A RestConnection to the local server that records each request's round trip; a server that cannot answer
    fails the validation."""

    def __init__(self, port: int, timeout: float = 60.0):
        self.connection = RestConnection(f"http://127.0.0.1:{port}", timeout=timeout)
        self.latencies_ms: list[float] = []

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        started = time.perf_counter()
        try:
            return self.connection.request(method, path, body)
        except ServingUnavailable as err:
            raise ValidationFailed(f"{method} {path}: {err.message}") from None
        finally:
            self.latencies_ms.append((time.perf_counter() - started) * 1000)


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode("ascii")}


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ValidationFailed(message)


def _check_status(rest: _TimedRest, name: str) -> dict:
    status, body = rest.call("GET", f"/v1/models/{name}")
    _expect(status == 200, f"model status: HTTP {status}: {body}")
    states = version_states(body)
    _expect(states.get("1") == "AVAILABLE", f"version 1 is not AVAILABLE: {states}")
    return {"versions": states}


def _check_metadata(rest: _TimedRest, name: str) -> dict:
    status, body = rest.call("GET", f"/v1/models/{name}/metadata")
    _expect(status == 200, f"metadata: HTTP {status}: {body}")
    signatures = body.get("metadata", {}).get("signature_def", {}).get("signature_def", {})
    contract = {
        configs.IMAGE_SIGNATURE: (configs.IMAGE_INPUT, IMAGE_OUTPUTS),
        configs.SERVING_DEFAULT_SIGNATURE: (configs.EXAMPLES_INPUT, (configs.PROBABILITIES_OUTPUT,)),
    }
    for signature, (input_name, outputs) in contract.items():
        _expect(signature in signatures, f"signature {signature!r} missing (has {sorted(signatures)})")
        _expect(input_name in signatures[signature].get("inputs", {}),
                f"{signature}: input {input_name!r} missing")
        _declared(signature, "input", input_name, signatures[signature]["inputs"][input_name], "DT_STRING", [-1])
        for output in outputs:
            _expect(output in signatures[signature].get("outputs", {}), f"{signature}: output {output!r} missing")
        probabilities = signatures[signature]["outputs"][configs.PROBABILITIES_OUTPUT]
        _declared(signature, "output", configs.PROBABILITIES_OUTPUT, probabilities, "DT_FLOAT", [-1, NUM_CLASSES])
    return {"signatures": sorted(signatures)}


def _declared(signature: str, kind: str, alias: str, info: dict, dtype: str, dims: list[int]) -> None:
    """Refuses a tensor whose SignatureDef declares another dtype, rank or size than ``dtype`` and ``dims`` (-1: any
    size): TF Serving fetches a signature's outputs by the tensor names it declares (predict_util.cc), so a
    SignatureDef at odds with the functions the model was saved with (edited, or written by other tools) answers
    with other tensors there than here, where the model's functions answer."""
    _expect(info.get("dtype") == dtype, f"{signature}: {kind} {alias!r} is declared {info.get('dtype')}, not {dtype}")
    shape = info.get("tensor_shape", {})
    if shape.get("unknown_rank"):
        return
    declared = [int(dim.get("size", 0)) for dim in shape.get("dim", [])]   # (proto3 JSON leaves a 0 out)
    _expect(len(declared) == len(dims) and all(want == -1 or got in (-1, want) for got, want in zip(declared, dims)),
            f"{signature}: {kind} {alias!r} is declared of shape {declared}, not {dims} (-1: any size)")


def _json_shape(value: Any) -> list[int]:
    """The shape of a tensor as JSON writes it (nested lists; [] for a scalar), read along first elements."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0] if value else None
    return shape


def _tensor_ok(rows: list, name: str, where: str, width: int | None, kind: type | tuple[type, ...],
               kind_name: str) -> None:
    """``rows`` (one per image) of output ``name`` make an [N, ``width``] tensor (any width when None) of
    ``kind`` values; a wrong shape or type is said as such."""
    expected = f"[N, {width if width is not None else 'k'}]"
    for row in rows:
        shape = [len(rows), *_json_shape(row)]
        _expect(len(shape) == 2 and width in (None, shape[1]),
                f"{where}: {name} has shape {shape}, expected {expected}")
        kinds = sorted({type(value).__name__ for value in row
                        if not isinstance(value, kind) or isinstance(value, bool)})
        _expect(not kinds, f"{where}: {name} holds {', '.join(kinds)} values, expected {kind_name}")


def _probabilities_ok(rows: list, where: str) -> None:
    _tensor_ok(rows, configs.PROBABILITIES_OUTPUT, where, NUM_CLASSES, (int, float), "numbers")
    for i, row in enumerate(rows):
        try:
            check_probabilities(row)
        except BrokenContract as err:
            raise ValidationFailed(f"{where}: row {i}: {err}") from None


def _predictions_ok(predictions: list) -> None:
    """The ``predict_images`` rows (one per image) as the web client reads them: each output an [N, 27] or [N, k]
    tensor of its type, each row following the contract of a prediction (core.prediction_contract)."""
    _probabilities_ok([prediction.get(configs.PROBABILITIES_OUTPUT) for prediction in predictions],
                      configs.IMAGE_SIGNATURE)
    for output, kind, kind_name in ((configs.TOP_CLASSES_OUTPUT, str, "strings"),
                                    (configs.TOP_LETTERS_OUTPUT, str, "strings"),
                                    (configs.TOP_SCORES_OUTPUT, (int, float), "numbers"),
                                    (configs.TOP_INDICES_OUTPUT, int, "integers")):
        _tensor_ok([prediction.get(output) for prediction in predictions], output, configs.IMAGE_SIGNATURE, None,
                   kind, kind_name)
    for i, prediction in enumerate(predictions):
        try:
            check_prediction(prediction)
        except BrokenContract as err:
            raise ValidationFailed(f"{configs.IMAGE_SIGNATURE}: image {i}: {err}") from None


def _check_predictions(rest: _TimedRest, name: str, samples: list[tuple[bytes, bytes, int]]) -> dict:
    image_rows, example_rows = [], []
    for start in range(0, len(samples), BATCH):
        batch = samples[start:start + BATCH]
        status, body = rest.call("POST", f"/v1/models/{name}:predict", {
            "signature_name": configs.IMAGE_SIGNATURE, "instances": [_b64(image) for _, image, _ in batch]})
        _expect(status == 200, f"{configs.IMAGE_SIGNATURE}: HTTP {status}: {body}")
        predictions = body.get("predictions", [])
        _expect(len(predictions) == len(batch),
                f"{configs.IMAGE_SIGNATURE}: {len(predictions)} predictions for {len(batch)} images")
        _expect(all(isinstance(prediction, dict) for prediction in predictions),
                f"{configs.IMAGE_SIGNATURE}: a prediction is not a map of named outputs")
        image_rows.extend(predictions)
        status, body = rest.call("POST", f"/v1/models/{name}:predict", {
            "signature_name": configs.SERVING_DEFAULT_SIGNATURE,
            "inputs": {configs.EXAMPLES_INPUT: [_b64(serialized) for serialized, _, _ in batch]}})
        _expect(status == 200, f"{configs.SERVING_DEFAULT_SIGNATURE}: HTTP {status}: {body}")
        outputs = body.get("outputs")
        rows = outputs.get(configs.PROBABILITIES_OUTPUT) if isinstance(outputs, dict) else outputs
        _expect(isinstance(rows, list) and len(rows) == len(batch),
                f"{configs.SERVING_DEFAULT_SIGNATURE}: expected {len(batch)} rows of probabilities, got {outputs!r:.200}")
        example_rows.extend(rows)
    _predictions_ok(image_rows)
    _probabilities_ok(example_rows, configs.SERVING_DEFAULT_SIGNATURE)
    correct = sum(int(label >= 0 and prediction[configs.TOP_INDICES_OUTPUT][0] == label)
                  for prediction, (_, _, label) in zip(image_rows, samples))
    worst = max(abs(a - b) for x, y in zip(image_rows, example_rows)
                for a, b in zip(x[configs.PROBABILITIES_OUTPUT], y))
    _expect(worst < PROBABILITY_TOLERANCE,
            f"{configs.IMAGE_SIGNATURE} and {configs.SERVING_DEFAULT_SIGNATURE} disagree by up to {worst:.4f}")
    return {"images": len(samples), "top1_correct": correct, "max_signature_difference": worst}


# ------------------------------------------------------------------------------------------ validation
WORK_PREFIX = "serving-validation-"   # the check's copy of the model, in the temporary folder
STALE_WORK_SECONDS = 3600              # one nothing was written into for this long is a killed check's
def validate(model_dir: str, samples: list[tuple[bytes, bytes, int]], model_name: str = configs.MODEL_NAME,
             max_latency_ms: float = 0.0, startup_timeout: float = 300.0) -> dict:
    """Serves ``model_dir`` as version 1 in the embedded server and runs the checks; returns the report."""
    from serving.config import ServerOptions
    from serving.server import Server

    report: dict[str, Any] = {"model": model_dir, "model_name": model_name, "checks": {}, "blessed": False}
    for name in remove_stale_folders(tempfile.gettempdir(), WORK_PREFIX, STALE_WORK_SECONDS):
        print(f"ServingValidator: removed {name}, left in {tempfile.gettempdir()} by a killed check", flush=True)
    base = tempfile.mkdtemp(prefix=WORK_PREFIX)
    server = rest = None
    try:
        stage = "load"
        # As the Pusher publishes it: a complete copy under an integer version directory.
        io_utils.copy_dir(model_dir, os.path.join(base, model_name, ".incoming"))
        os.rename(os.path.join(base, model_name, ".incoming"), os.path.join(base, model_name, "1"))
        options = ServerOptions(rest_api_port=0, rest_api_host="127.0.0.1", model_name=model_name,
                                model_base_path=os.path.join(base, model_name), file_system_poll_wait_seconds=0,
                                max_num_load_retries=0, load_retry_interval_micros=0, rest_api_num_threads=4)
        started = time.monotonic()
        server = Server(options)
        try:
            server.start()
        except Exception as err:  # noqa: BLE001 - a model the server cannot load is the finding itself
            raise ValidationFailed(f"the server could not load the model: {err}") from None
        report["load_seconds"] = round(time.monotonic() - started, 2)
        _expect(report["load_seconds"] < startup_timeout, f"loading took {report['load_seconds']} s")
        rest = _TimedRest(server.port)
        for name, check in (("status", lambda: _check_status(rest, model_name)),
                            ("metadata", lambda: _check_metadata(rest, model_name)),
                            ("predict", lambda: _check_predictions(rest, model_name, samples))):
            stage = name
            report["checks"][name] = check()
        stage = "latency"
        latencies = sorted(rest.latencies_ms)
        report["latency_ms"] = {"p50": round(latencies[len(latencies) // 2], 1), "max": round(latencies[-1], 1)}
        if max_latency_ms > 0:
            _expect(latencies[-1] <= max_latency_ms,
                    f"slowest request took {latencies[-1]:.0f} ms (limit {max_latency_ms:.0f} ms)")
        report["blessed"] = True
    except ValidationFailed as err:
        report["failed_check"], report["failure"] = stage, str(err)
    finally:
        if rest is not None:
            rest.connection.close()
        if server is not None:
            server.stop(grace_seconds=2)
        shutil.rmtree(base, ignore_errors=True)
    return report


def write_blessing(blessing: types.Artifact, report: dict) -> None:
    fileio.makedirs(blessing.uri)
    io_utils.write_string_file(os.path.join(blessing.uri, BLESSED_FILE if report["blessed"] else NOT_BLESSED_FILE),
                               "")
    io_utils.write_string_file(os.path.join(blessing.uri, REPORT_FILE), json.dumps(report, indent=2))
    blessing.set_int_custom_property(BLESSED_KEY, 1 if report["blessed"] else 0)


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        blessing = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        stop_if_requested()   # a stop lost earlier in the run (in a weakref callback) does not start the check
        model_dir = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
        model_blessings = input_dict.get(MODEL_BLESSING_KEY) or []
        if model_blessings and not model_utils.is_model_blessed(model_blessings[0]):
            report = {"model": model_dir, "blessed": False, "checks": {},
                      "failure": "the Evaluator did not bless this model, so it was not started"}
        else:
            samples = sample_examples(artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY]),
                                      exec_properties.get(SPLIT_KEY) or configs.EVAL_SPLIT,
                                      int(exec_properties.get(NUM_EXAMPLES_KEY) or 16))
            report = validate(model_dir, samples,
                              model_name=exec_properties.get(MODEL_NAME_KEY) or configs.MODEL_NAME,
                              max_latency_ms=float(exec_properties.get(MAX_LATENCY_KEY) or 0.0))
        stop_if_requested()   # a run stopped meanwhile blesses nothing (its interrupt may have been lost in the server)
        write_blessing(blessing, report)
        summary = ("blessed" if report["blessed"] else f"NOT blessed: {report.get('failure')}")
        print(f"ServingValidator: {summary} ({model_dir})", flush=True)
        logging.info("serving validation report: %s", json.dumps(report))


class ServingValidator(base_component.BaseComponent):
    """Serves the candidate model in the embedded TF Serving-compatible server and checks it answers real images.

    Wire it between the Evaluator and the Pusher and pass its ``blessing`` as the Pusher's ``infra_blessing``.
    """

    SPEC_CLASS = ServingValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel,
                 model_blessing: types.BaseChannel | None = None, model_name: str = configs.MODEL_NAME,
                 num_examples: int = 16, max_latency_ms: float = 0.0, split: str = configs.EVAL_SPLIT,
                 code: str | None = None):
        """``code``: a fingerprint of this module's code (pipeline.code_fingerprint, which follows its imports into
        the embedded server), so that a fixed check runs again instead of its cached verdict being reused."""
        super().__init__(spec=ServingValidatorSpec(
            model=model, examples=examples, model_blessing=model_blessing,
            model_name=model_name, num_examples=num_examples, max_latency_ms=float(max_latency_ms), split=split,
            code=code, blessing=types.Channel(type=standard_artifacts.InfraBlessing)))
