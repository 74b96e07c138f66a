"""The Transform step: encoded image bytes → a fixed-size ink image, the same graph at training and serving.

Decode (PNG/JPEG/GIF/BMP, 1–4 channels; a JPEG by the accurate integer DCT, as Pillow decodes it), shrink an image
whose longer side is over MAX_INK_SIDE (1024 px) to it by area averaging, composite transparency over white paper,
grayscale, invert so ink is 1 and paper is 0, stretch contrast, crop to the ink (a letter drawn small on a big canvas
looks like a tight crop, as the training images are), then resize keeping the aspect ratio and pad to a square (ו, י
and ן differ mainly in length, so squashing to a square would erase what tells them apart).
"""
from __future__ import annotations

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)
import tensorflow as tf

from core import configs
from core.configs import MAX_INK_SIDE, MIN_CONTRAST, Config

IMAGE_SIZE = Config.from_env().image_size
INK_THRESHOLD = 0.35  # after the contrast stretch, pixels above this count as ink when cropping
CROP_MARGIN = 0.04    # margin kept around the ink, as a share of its longer side


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


def crop_to_ink(ink: tf.Tensor) -> tf.Tensor:
    """[h, w] → the box around pixels above INK_THRESHOLD plus a small margin (unchanged if there are none)."""
    mask = ink > INK_THRESHOLD
    rows = tf.where(tf.reduce_any(mask, axis=1))[:, 0]
    cols = tf.where(tf.reduce_any(mask, axis=0))[:, 0]

    def crop():
        y0, y1 = tf.reduce_min(rows), tf.reduce_max(rows) + 1
        x0, x1 = tf.reduce_min(cols), tf.reduce_max(cols) + 1
        margin = tf.cast(tf.math.ceil(CROP_MARGIN * tf.cast(tf.maximum(y1 - y0, x1 - x0), tf.float32)), tf.int64)
        h, w = tf.shape(ink, out_type=tf.int64)[0], tf.shape(ink, out_type=tf.int64)[1]
        y0, x0 = tf.maximum(y0 - margin, 0), tf.maximum(x0 - margin, 0)
        y1, x1 = tf.minimum(y1 + margin, h), tf.minimum(x1 + margin, w)
        return ink[y0:y1, x0:x1]

    return tf.cond(tf.size(rows) > 0, crop, lambda: ink)


def shrunk(img: tf.Tensor) -> tf.Tensor:
    """[h, w, c] uint8 → the same as float32 (0 to 255), shrunk by area averaging, each channel alone, to
    MAX_INK_SIDE on its longer side when that is longer (the other side in proportion, rounded half to even, at
    least 1 px; ``core.image_io.shrunk_size``), before any float work at its own size: a 6300 × 6300 image's float
    copies had taken the model 1 GB and 17 s, to be resized to 48 px in the end. One within it is only cast."""
    h, w = tf.shape(img)[0], tf.shape(img)[1]
    longer = tf.maximum(h, w)

    def shrink():
        scale = MAX_INK_SIDE / tf.cast(longer, tf.float64)
        size = tf.maximum(tf.cast(tf.round(tf.cast(tf.stack([h, w]), tf.float64) * scale), tf.int32), 1)
        return tf.image.resize(img, size, method=tf.image.ResizeMethod.AREA)

    return tf.cond(longer > MAX_INK_SIDE, shrink, lambda: tf.cast(img, tf.float32))


def decoded(data: tf.Tensor) -> tf.Tensor:
    """One encoded image (scalar string) → [h, w, c] uint8 as stored (c in 1..4), the first frame of a GIF. A JPEG
    is decoded by libjpeg's accurate integer DCT (``dct_method="INTEGER_ACCURATE"``, JDCT_ISLOW), the one Pillow
    uses, where ``tf.io.decode_image`` takes its fast one (JDCT_IFAST): an RGB JPEG of a letter had reached the
    model up to 13 grey levels off the pixels Pillow reads, and so off the PNG the feedback store exports of it to
    train on. Every other format as ``tf.io.decode_image`` reads it."""
    return tf.cond(tf.io.is_jpeg(data),   # FF D8 FF, as decode_image tells a JPEG
                   lambda: tf.io.decode_jpeg(data, channels=0, dct_method="INTEGER_ACCURATE"),
                   lambda: tf.io.decode_image(data, channels=0, dtype=tf.uint8, expand_animations=False))


def decoded_ink(data: tf.Tensor) -> tf.Tensor:
    """One encoded image (scalar string) → [h, w] float32 ink (1) on paper (0) as :func:`decoded`, before the
    contrast stretch, :func:`shrunk` to MAX_INK_SIDE on its longer side when that is longer.
    ``core.image_io.ink_range`` is its span, computed without TensorFlow."""
    img = shrunk(decoded(data)) / 255.0
    gray, alpha = _gray_and_alpha(img)
    return (1.0 - gray) * alpha           # composite over white, then invert


def ink_crop(data: tf.Tensor) -> tf.Tensor:
    """One encoded image (scalar string) → [h, w] float32 ink (1) on paper (0), contrast stretched and cropped to
    the ink, at its own pixel size (:func:`shrunk` to MAX_INK_SIDE on its longer side when that is longer)."""
    ink = decoded_ink(data)
    lo, hi = tf.reduce_min(ink), tf.reduce_max(ink)
    ink = tf.cond(hi - lo > MIN_CONTRAST, lambda: (ink - lo) / (hi - lo), lambda: ink)
    return crop_to_ink(ink)


def pad_to_aspect(ink: tf.Tensor, size: int) -> tf.Tensor:
    """[h, w] → the same with paper added at both sides of the shorter one if it is under 1/size of the longer, so
    that it keeps at least one pixel at ``size`` (a strip of 1000 × 10 had failed the whole batch, and a training
    image of it the Transform); an image within size:1 is returned as it is."""
    h, w = tf.shape(ink)[0], tf.shape(ink)[1]
    pad_h = tf.maximum((w + size - 1) // size - h, 0)
    pad_w = tf.maximum((h + size - 1) // size - w, 0)
    return tf.pad(ink, [[pad_h // 2, pad_h - pad_h // 2], [pad_w // 2, pad_w - pad_w // 2]])


def decode_to_ink(data: tf.Tensor, size: int = IMAGE_SIZE) -> tf.Tensor:
    """One encoded image (scalar string) → [size, size, 1] float32, ink = 1, paper = 0."""
    ink = tf.image.resize_with_pad(pad_to_aspect(ink_crop(data), size)[..., tf.newaxis], size, size,
                                   antialias=True)
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
