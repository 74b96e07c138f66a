"""Exporting the trained model with explicit signatures (``tf.saved_model.save`` on a ``tf.Module``).

* ``serving_default``    serialized tf.Example (``examples``) → ``probabilities`` [N, 27]
                         (what the Evaluator and tf.Example clients use);
* ``predict_images``     raw encoded image bytes (``images``, DT_STRING [None]; over REST ``{"b64": …}``) →
                         ``probabilities`` [N, 27], ``top_classes``, ``top_letters``, ``top_scores``,
                         ``top_indices`` [N, k], best first;
* ``transform_features`` serialized tf.Example → the transformed features (what the model sees).

Both prediction signatures run the same TFT graph, so serving cannot drift from training. The export also
carries warm-up requests (``assets.extra/tf_serving_warmup_requests``) that TF Serving and the embedded
server replay on load, so the first real request is not slow.
"""
from __future__ import annotations

import numpy as np

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)
import tensorflow as tf

from core import warmup

from core import configs
from core.labels import CLASS_NAMES, GLYPHS, NUM_CLASSES

TOP_K = 3
_NOT_SERVED = (configs.LABEL_KEY, configs.LABEL_NAME_KEY, configs.SOURCE_KEY)


def image_outputs(probabilities: tf.Tensor, top_k: int = TOP_K) -> dict[str, tf.Tensor]:
    """The image signature's outputs from the probabilities [N, 27]: the top ``top_k`` classes, best first."""
    top = tf.math.top_k(probabilities, k=top_k)
    return {
        configs.PROBABILITIES_OUTPUT: probabilities,
        configs.TOP_CLASSES_OUTPUT: tf.gather(tf.constant(CLASS_NAMES), top.indices),
        configs.TOP_LETTERS_OUTPUT: tf.gather(tf.constant(GLYPHS), top.indices),
        configs.TOP_SCORES_OUTPUT: top.values,
        configs.TOP_INDICES_OUTPUT: top.indices,
    }


def serving_network(model: tf.keras.Model) -> tf.keras.Model:
    """The trained network without what only training uses (its optimizer's state, loss and metrics): a model over
    the same layers, so the export holds the same weights under the same paths (``model/layer_with_weights-N/…``)."""
    return tf.keras.Model(model.inputs, model.outputs, name=model.name)


class LettersModule(tf.Module):
    def __init__(self, model: tf.keras.Model, tf_transform_output, top_k: int = TOP_K):
        super().__init__()
        self.model = serving_network(model)
        self.tft_layer = tf_transform_output.transform_features_layer()
        raw_spec = tf_transform_output.raw_feature_spec()
        self._image_spec = raw_spec[configs.IMAGE_KEY]
        self._serving_spec = {k: v for k, v in raw_spec.items() if k not in _NOT_SERVED}
        self._top_k = top_k

    def _predict(self, raw_features):
        """The probabilities [N, 27] for the raw features; no rows for an empty batch, which does not reach the
        network (with oneDNN a convolution returns an empty batch unchanged, and the next layer rejects its depth)."""
        images = self.tft_layer(raw_features)[configs.TRANSFORMED_IMAGE_KEY]
        return tf.cond(tf.shape(images)[0] > 0, lambda: self.model(images, training=False),
                       lambda: tf.zeros([0, NUM_CLASSES]))

    def _image_feature(self, images):
        """Raw image bytes [N] shaped like the parsed ``image_raw`` feature the TFT graph expects."""
        spec = self._image_spec
        if isinstance(spec, tf.io.VarLenFeature):
            return tf.sparse.from_dense(tf.reshape(images, [-1, 1]))
        return tf.reshape(images, [-1] + list(spec.shape))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=configs.EXAMPLES_INPUT)])
    def serve_examples(self, examples):
        features = tf.io.parse_example(examples, self._serving_spec)
        return {configs.PROBABILITIES_OUTPUT: self._predict(features)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=configs.IMAGE_INPUT)])
    def serve_images(self, images):
        return image_outputs(self._predict({configs.IMAGE_KEY: self._image_feature(images)}), self._top_k)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=configs.EXAMPLES_INPUT)])
    def transform_features(self, examples):
        features = tf.io.parse_example(examples, self._serving_spec)
        transformed = self.tft_layer(features)
        return {configs.TRANSFORMED_IMAGE_KEY: transformed[configs.TRANSFORMED_IMAGE_KEY]}


def warmup_image() -> bytes:
    """A small drawn stroke as PNG: the warm-up request both servers replay when they load the model."""
    image = np.full((32, 32), 255, np.uint8)
    image[4:28, 14:18] = 0
    return tf.io.encode_png(image[..., np.newaxis]).numpy()


def export_model(model: tf.keras.Model, tf_transform_output, export_dir: str) -> None:
    module = LettersModule(model, tf_transform_output)
    signatures = {
        configs.SERVING_DEFAULT_SIGNATURE: module.serve_examples.get_concrete_function(),
        configs.IMAGE_SIGNATURE: module.serve_images.get_concrete_function(),
        configs.TRANSFORM_SIGNATURE: module.transform_features.get_concrete_function(),
    }
    tf.saved_model.save(module, export_dir, signatures=signatures)
    image = np.array([warmup_image()], dtype=object)
    example = tf.train.Example(features=tf.train.Features(feature={configs.IMAGE_KEY: tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[image[0]]))})).SerializeToString()
    warmup.write_requests(export_dir, configs.MODEL_NAME, [
        (configs.IMAGE_SIGNATURE, {configs.IMAGE_INPUT: image}),
        (configs.SERVING_DEFAULT_SIGNATURE, {configs.EXAMPLES_INPUT: np.array([example], dtype=object)}),
    ])
