"""The Transform step: encoded image bytes → a fixed-size ink image, the same graph at training and serving.

Decode (PNG/JPEG/GIF/BMP, 1–4 channels), composite transparency over white paper, grayscale, invert so ink
is 1 and paper is 0, stretch contrast, then resize keeping the aspect ratio and pad to a square (ו, י and ן
differ mainly in length, so squashing to a square would erase what tells them apart).
"""
from __future__ import annotations

import pipeline  # noqa: F401  (fixes the Keras mode before TensorFlow loads)
import tensorflow as tf

from pipeline import configs
from pipeline.configs import Config

IMAGE_SIZE = Config.from_env().image_size
MIN_CONTRAST = 0.08   # below this the image is (nearly) blank: leave it as it is rather than amplify noise


def _gray_and_alpha(img: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """[h, w, c] float in [0, 1] with c in 1..4 → (gray [h, w], alpha [h, w])."""
    ones = tf.ones_like(img[..., 0])

    def rgb_gray(rgb):
        return tf.image.rgb_to_grayscale(rgb)[..., 0]

    channels = tf.shape(img)[-1]
    return tf.switch_case(channels - 1, [
        lambda: (img[..., 0], ones),
        lambda: (img[..., 0], img[..., 1]),
        lambda: (rgb_gray(img[..., :3]), ones),
        lambda: (rgb_gray(img[..., :3]), img[..., 3]),
    ])


def decode_to_ink(data: tf.Tensor, size: int = IMAGE_SIZE) -> tf.Tensor:
    """One encoded image (scalar string) → [size, size, 1] float32, ink = 1, paper = 0."""
    img = tf.io.decode_image(data, channels=0, dtype=tf.uint8, expand_animations=False)
    img = tf.cast(img, tf.float32) / 255.0
    gray, alpha = _gray_and_alpha(img)
    ink = (1.0 - gray) * alpha            # composite over white, then invert
    lo, hi = tf.reduce_min(ink), tf.reduce_max(ink)
    ink = tf.cond(hi - lo > MIN_CONTRAST, lambda: (ink - lo) / (hi - lo), lambda: ink)
    ink = tf.image.resize_with_pad(ink[..., tf.newaxis], size, size, antialias=True)
    return tf.clip_by_value(tf.ensure_shape(ink, [size, size, 1]), 0.0, 1.0)


def images_to_ink(images: tf.Tensor, size: int = IMAGE_SIZE) -> tf.Tensor:
    """A batch of encoded images ([N] or [N, 1] strings) → [N, size, size, 1] float32."""
    images = tf.reshape(images, [-1])
    return tf.map_fn(lambda x: decode_to_ink(x, size), images,
                     fn_output_signature=tf.TensorSpec([size, size, 1], tf.float32))


def _dense(x):
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(x, default_value=b"" if x.dtype == tf.string else 0)
    return tf.reshape(x, [-1])


def preprocessing_fn(inputs, custom_config=None):
    """TFT entry point (``Transform(preprocessing_fn='models.preprocessing.preprocessing_fn')``).

    ``custom_config`` is the Transform component's: ``{"image_size": N}``.
    """
    size = int((custom_config or {}).get("image_size", IMAGE_SIZE))
    outputs = {configs.TRANSFORMED_IMAGE_KEY: images_to_ink(_dense(inputs[configs.IMAGE_KEY]), size)}
    if configs.LABEL_KEY in inputs:
        outputs[configs.TRANSFORMED_LABEL_KEY] = tf.cast(_dense(inputs[configs.LABEL_KEY]), tf.int64)
    return outputs
