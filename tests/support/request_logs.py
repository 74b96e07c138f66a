"""Writes request logs as the servers do: TFRecord files of TF Serving PredictionLog protos."""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from core import configs


def prediction_log(images: list[bytes], probabilities: np.ndarray | None, version: int | None,
                   examples_form: bool = False, output_filter=()) -> prediction_log_pb2.PredictionLog:
    """One logged request: images through predict_images (or serialized tf.Examples through serving_default); with
    an ``output_filter``, the response holds those of predict_images' outputs for ``probabilities`` only."""
    signature = configs.SERVING_DEFAULT_SIGNATURE if examples_form else configs.IMAGE_SIGNATURE
    spec = model_pb2.ModelSpec(name=configs.MODEL_NAME, signature_name=signature)
    if version is not None:
        spec.version.value = version
    request = predict_pb2.PredictRequest(model_spec=spec, output_filter=list(output_filter))
    if examples_form:
        values = [tf.train.Example(features=tf.train.Features(feature={configs.IMAGE_KEY: tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[image]))})).SerializeToString() for image in images]
        request.inputs[configs.EXAMPLES_INPUT].CopyFrom(tf.make_tensor_proto(values, dtype=tf.string))
    else:
        request.inputs[configs.IMAGE_INPUT].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
    response = predict_pb2.PredictResponse(model_spec=spec)
    if output_filter:
        from models.export import image_outputs

        outputs = image_outputs(tf.constant(probabilities, tf.float32))
        for name in output_filter:
            response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name].numpy()))
    elif probabilities is not None:
        response.outputs[configs.PROBABILITIES_OUTPUT].CopyFrom(
            tf.make_tensor_proto(np.asarray(probabilities, np.float32)))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request,
                                                                                    response=response))
    log.log_metadata.model_spec.CopyFrom(spec)
    return log


def write_log(path: str | os.PathLike, logs: list, mtime: float | None = None) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log if isinstance(log, bytes) else log.SerializeToString())
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def confident(index: int, score: float = 0.9, classes: int = 27) -> np.ndarray:
    """Probabilities with ``score`` on ``index`` and the rest spread evenly."""
    row = np.full(classes, (1 - score) / (classes - 1))
    row[index] = score
    return row
