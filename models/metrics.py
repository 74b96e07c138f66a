"""Keras metrics of the letters model that the Evaluator (TFMA) computes by class name and module."""
from __future__ import annotations

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)
import tensorflow as tf
import tf_keras   # TFMA takes a subclass of tf_keras' Metric for a Keras metric, whatever tf.keras is here


def top_k_matches(y_true: tf.Tensor, y_pred: tf.Tensor, k: int) -> tf.Tensor:
    """1.0 where the label is among the ``k`` classes ``tf.math.top_k`` ranks first (ties broken by class order,
    the classes the served model's ``top_indices`` names), else 0.0. Keras' top-k accuracy uses
    ``tf.math.in_top_k``, which counts every class tied at the k-th score: a model answering one class with
    probability 1 had every label in its top 3."""
    top = tf.math.top_k(y_pred, k=k).indices
    labels = tf.cast(tf.reshape(y_true, [-1, 1]), top.dtype)
    return tf.cast(tf.reduce_any(tf.equal(top, labels), axis=-1), tf_keras.backend.floatx())


class StrictSparseTopKCategoricalAccuracy(tf_keras.metrics.MeanMetricWrapper):
    """How often the integer label is among the top ``k`` classes of :func:`top_k_matches`."""

    def __init__(self, k: int = 3, name: str = "strict_sparse_top_k_categorical_accuracy", dtype=None):
        super().__init__(top_k_matches, name, dtype=dtype, k=k)
