"""A letters model exported by models.export from a small network trained one step, in a few seconds: the export
the Trainer writes, without running the pipeline (no Transform run: the Transform graph's function is called
directly; models.preprocessing has no analyzers).

Import ``core`` before this module (it fixes the Keras mode before TensorFlow loads).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from core import configs
from core.configs import Config
from core.labels import NUM_CLASSES

SMALL = Config(conv_widths="4,8", augment=False)


class TransformOutput:
    """What models.export asks of a TFTransformOutput: the Transform graph as a layer, and the raw features' spec
    (as the pipeline's schema gives it)."""

    def transform_features_layer(self):
        from models import preprocessing
        return preprocessing.preprocessing_fn

    def raw_feature_spec(self):
        return {configs.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
                configs.LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64)}


def trained_model(hp: Config = SMALL) -> tf.keras.Model:
    """The Trainer's compiled network for ``hp`` after one training step (so its optimizer holds its state)."""
    from models import trainer
    tf.keras.utils.set_random_seed(hp.seed)
    model = trainer.compiled_model(hp, steps=1)
    rng = np.random.default_rng(hp.seed)
    images = rng.random((4, hp.image_size, hp.image_size, 1), np.float32)
    model.train_on_batch(images, np.eye(NUM_CLASSES, dtype=np.float32)[rng.integers(0, NUM_CLASSES, 4)])
    return model


def export_trained(export_dir: str, hp: Config = SMALL) -> tf.keras.Model:
    """Exports :func:`trained_model` to ``export_dir`` as the Trainer does; returns the trained model."""
    from models import export
    model = trained_model(hp)
    export.export_model(model, TransformOutput(), export_dir)
    return model
