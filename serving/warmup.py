"""Replaying a version's warm-up records before it is AVAILABLE, as TF Serving does
(servables/tensorflow/saved_model_warmup.cc and saved_model_warmup_util.cc).

Every record of ``assets.extra/tf_serving_warmup_requests`` runs, in order, on the freshly loaded version, and the
load fails on the first record that fails, on one that is not a PredictionLog, on the 1,001st, and on a file that is
not TFRecords. Predict, classify, regress and multi-inference records run as their requests would, with the
API's checks and statuses (a multi-inference record through serving.inference.multi_inference, the gRPC
MultiInference call's own code, as TF Serving's RunWarmupRequest calls RunMultiInference); streamed
predict and session-run records are UNIMPLEMENTED; a record with no request in it runs nothing.
"""
from __future__ import annotations

import os
import time

from core import warmup
from serving import inference
from serving.status import ServingError, from_exception, invalid

# PredictionLog.log_type field numbers: TF Serving's message quotes the oneof case as its number.
_UNSUPPORTED = {"predict_streamed_log": 7, "session_run_log": 5}


def replay(servable, metrics=None, run=None) -> int:
    """Runs the warm-up records on ``servable``; returns how many ran (0 without a file). ServingError if the
    load must fail. ``metrics`` (serving.metrics.Metrics) gets the records' runtime latencies and, for a warm-up
    that read its file to the end or to an error reading it, its latency and record count (:func:`_warmed_up`).
    ``run(signature name, arrays, output aliases)`` runs a record's signature for those outputs (``servable.run`` by
    default; the server's batch queue with batching on, as TF Serving warms up the BatchingSession that wraps the
    model's session)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(servable.path, warmup.WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return 0
    count = 0
    started = time.perf_counter()
    with tf.io.gfile.GFile(path, "rb") as handle:
        handle.read(0)   # NewRandomAccessFile: a file that cannot be opened fails the load, unrecorded
    records = iter(tf.data.TFRecordDataset(path))
    while True:
        try:
            raw = next(records).numpy()
        except StopIteration:   # OUT_OF_RANGE, the end: recorded as OK
            break
        except tf.errors.OpError as exc:   # ReadRecord's status, recorded whatever it is
            status = from_exception(exc)   # the record reader's message, without Python eager's wrapping
            _warmed_up(metrics, servable.path, status.to_string(), started, count)
            if status.code == "DATA_LOSS":
                raise ServingError("DATA_LOSS", f"{status.message}. Please verify your warmup data is in TFRecord "
                                   f"format.") from None
            raise status from None
        try:
            log = prediction_log_pb2.PredictionLog.FromString(raw)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError
            raise invalid(f"Failed to parse warmup record: {raw.decode('utf-8', 'backslashreplace')} from "
                          f"{path}") from None
        run_record(servable, log, metrics, run)
        count += 1
        if count > warmup.MAX_RECORDS:
            raise invalid(f"Number of warmup records exceeds the maximum ({warmup.MAX_RECORDS}) at {path}")
    _warmed_up(metrics, servable.path, "OK", started, count)
    return count


def _warmed_up(metrics, model_path: str, status: str, started: float, count: int) -> None:
    """model_warmup_latency (and records read) of a warm-up that read its file to its end or to a read error,
    by ``status`` (Status::ToString); a record that does not parse or fails to run is not recorded, as
    RunSavedModelWarmup returns before its metric with one warm-up thread."""
    if metrics is not None:
        metrics.warmup(model_path, status, (time.perf_counter() - started) * 1e6, count)


def run_record(servable, log, metrics=None, run=None) -> None:
    """One record (RunWarmupRequest): its request run on ``servable`` (by ``run``, as in :func:`replay`), the
    answer checked as the API checks it; ``metrics`` gets the run's latency as RunPredict / RunClassify /
    RunRegress record it, and a multi-inference record's tf.Examples as RunMultiInference counts them."""
    run = run or servable.run
    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        request = log.predict_log.request
        signature_name = request.model_spec.signature_name or inference.DEFAULT_SIGNATURE
        arrays, aliases = inference.predict_request(servable, signature_name, request)   # its output_filter's outputs
        _timed(metrics, request.model_spec.name, "Predict", lambda: run(signature_name, arrays, aliases))
    elif kind in ("classify_log", "regress_log"):
        request = getattr(log, kind).request
        method = inference.CLASSIFY if kind == "classify_log" else inference.REGRESS
        signature_name = request.model_spec.signature_name or inference.DEFAULT_SIGNATURE
        signature = inference.example_signature(servable, signature_name, method)
        examples = inference.input_examples(request.input)
        batch = inference.examples_batch(examples, signature)
        outputs = _timed(metrics, request.model_spec.name, method.capitalize(), lambda: run(signature_name, batch))
        inference.examples_result(method, outputs, len(examples))   # checked as the API checks them
    elif kind == "multi_inference_log":     # RunMultiInference: the gRPC MultiInference call's checks and run
        inference.multi_inference(servable, log.multi_inference_log.request, run, metrics)
    elif kind in _UNSUPPORTED:
        raise ServingError("UNIMPLEMENTED", f"Unsupported log_type for warmup: {_UNSUPPORTED[kind]}")


def _timed(metrics, model_name: str, api: str, run):
    started = time.perf_counter()
    outputs = run()
    if metrics is not None:
        metrics.runtime(model_name, api, (time.perf_counter() - started) * 1e6)
    return outputs

