"""SavedModel warm-up records, as TF Serving reads them.

A model may carry ``assets.extra/tf_serving_warmup_requests``: a TFRecord file of ``PredictionLog`` protos.
TF Serving replays them right after loading a version and before marking it AVAILABLE, so the first real
request does not pay for graph optimisation (about 0.4 s for the letters model). The trainer writes the file
(:func:`write_requests`); the embedded server replays it (``serving/warmup.py``), like TF Serving: every record,
at most :data:`MAX_RECORDS`, and a record that fails makes the load fail.
"""
from __future__ import annotations

import os

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_RECORDS = 1000


def write_requests(export_dir: str, model_name: str, requests: list[tuple[str, dict]]) -> str:
    """Writes ``[(signature name, {input alias: numpy array})]`` as PredictionLogs; returns the file path."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = os.path.join(export_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for signature_name, inputs in requests:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name))
            for alias, value in inputs.items():
                request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_requests(model_dir: str) -> list[tuple[str, dict]]:
    """The predict requests of a model's warm-up file ([] when it has none): what the trainer wrote."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(model_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return []
    requests = []
    for record in tf.data.TFRecordDataset(path).take(MAX_RECORDS):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if log.WhichOneof("log_type") != "predict_log":
            continue  # the project writes predict records only
        request = log.predict_log.request
        requests.append((request.model_spec.signature_name or "serving_default",
                         {alias: tf.make_ndarray(proto) for alias, proto in request.inputs.items()}))
    return requests
