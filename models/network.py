"""The Keras networks (a small ResNet and a VGG-style CNN) and the training-time augmentation (applied in the
input pipeline only)."""
from __future__ import annotations

import math

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)
import tensorflow as tf

from core import keras_mode
from core.configs import ARCHITECTURES, DEFAULT_WIDTHS, check_architecture, parse_widths  # noqa: F401  (re-exported)
from core.labels import NUM_CLASSES

keras_mode.skip_autograph_of_keras()   # the models built here train and export without re-writing Keras



def _conv_bn(x, width: int, stride: int = 1, relu: bool = True):
    layers = tf.keras.layers
    x = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    return layers.Activation("relu")(x) if relu else x


def _residual_block(x, width: int, stride: int = 1):
    """Two 3×3 convolutions plus a shortcut (a strided 1×1 projection when the shape changes)."""
    layers = tf.keras.layers
    y = _conv_bn(_conv_bn(x, width, stride), width, relu=False)
    shortcut = x
    if stride != 1 or x.shape[-1] != width:
        shortcut = layers.Conv2D(width, 1, strides=stride, use_bias=False)(x)
        shortcut = layers.BatchNormalization(momentum=0.9)(shortcut)
    return layers.Activation("relu")(layers.Add()([y, shortcut]))


def _classifier(inputs, x, dropout: float, name: str) -> tf.keras.Model:
    layers = tf.keras.layers
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities")(x)
    return tf.keras.Model(inputs, outputs, name=name)


def build_cnn(image_size: int, dropout: float = 0.3, widths=(24, 48, 96, 160)) -> tf.keras.Model:
    """A small VGG-style CNN: conv blocks with batch norm, global average pooling, softmax over 27 classes."""
    inputs = tf.keras.Input(shape=(image_size, image_size, 1), name="image")
    x = inputs
    for i, width in enumerate(widths):
        convs = 2 if 0 < i < len(widths) - 1 else 1
        for _ in range(convs):
            x = _conv_bn(x, width)
        if i < len(widths) - 1:
            x = tf.keras.layers.MaxPooling2D()(x)
    return _classifier(inputs, x, dropout, "letters_cnn")


def build_resnet(image_size: int, dropout: float = 0.3, widths=(32, 48, 96, 192),
                 blocks: int = 1) -> tf.keras.Model:
    """A small ResNet: a 3×3 stem at full resolution (``widths[0]``), 2×2 max pooling, then one stage of
    ``blocks`` residual blocks per further width, halving the resolution at each stage after the first
    (48 px → 24, 12, 6), global average pooling, softmax over 27 classes."""
    if len(widths) < 2:
        raise ValueError(f"a resnet needs a stem width and at least one stage width, got {widths}")
    inputs = tf.keras.Input(shape=(image_size, image_size, 1), name="image")
    x = tf.keras.layers.MaxPooling2D()(_conv_bn(inputs, widths[0]))
    for stage, width in enumerate(widths[1:]):
        for block in range(blocks):
            x = _residual_block(x, width, stride=2 if stage > 0 and block == 0 else 1)
    return _classifier(inputs, x, dropout, "letters_resnet")


def build_model(architecture: str, image_size: int, dropout: float = 0.3, widths: str = "") -> tf.keras.Model:
    """The network named by ``architecture`` (one of ARCHITECTURES); ``widths`` empty = its default widths."""
    parsed = parse_widths(widths or DEFAULT_WIDTHS[check_architecture(architecture)])
    return (build_resnet if architecture == "resnet" else build_cnn)(image_size, dropout, parsed)


def augment_batch(images: tf.Tensor, rotation_deg: float, scale: float, shift: float, aspect: float = 0.0,
                  seed: int | None = None) -> tf.Tensor:
    """Random rotation, scale (and shear of the same range), height:width change and translation of a batch
    [N, S, S, 1]. The height:width change shrinks the width or the height by a factor down to exp(-``aspect``),
    never grows one: a letter fitted to the square (a tall ו, a wide ת) stays inside it."""
    shape = tf.shape(images)
    n, size = shape[0], tf.cast(shape[1], tf.float32)
    rnd = tf.random.uniform
    angle = rnd([n], -1.0, 1.0, seed=seed) * rotation_deg * math.pi / 180.0
    zoom = tf.exp(rnd([n], -1.0, 1.0) * scale)
    stretch = rnd([n], -1.0, 1.0) * aspect      # < 0: narrower, > 0: lower
    shear = rnd([n], -1.0, 1.0) * scale
    tx = rnd([n], -1.0, 1.0) * shift * size
    ty = rnd([n], -1.0, 1.0) * shift * size
    # Output pixel (x, y) samples input at A @ (x - c) + c - t, where A is the inverse of the forward map.
    sx, sy = zoom * tf.exp(tf.minimum(stretch, 0.0)), zoom * tf.exp(tf.minimum(-stretch, 0.0))
    cos, sin = tf.cos(angle), tf.sin(angle)
    a0 = cos / sx
    a1 = (sin + shear * cos) / sx
    b0 = -sin / sy
    b1 = (cos - shear * sin) / sy
    c = (size - 1.0) / 2.0
    a2 = c - a0 * c - a1 * c - tx
    b2 = c - b0 * c - b1 * c - ty
    zeros = tf.zeros_like(a0)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=shape[1:3], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT")
    return tf.ensure_shape(out, images.shape)


def vary_thickness(images: tf.Tensor, share: float) -> tf.Tensor:
    """Thickens (dilates) or thins (erodes) the ink of ``share`` of the images, half each."""
    if share <= 0:
        return images
    r = tf.random.uniform([tf.shape(images)[0], 1, 1, 1])
    thicker = tf.nn.max_pool2d(images, 3, 1, "SAME")
    thinner = -tf.nn.max_pool2d(-images, 3, 1, "SAME")
    return tf.where(r < share / 2, thicker, tf.where(r < share, thinner, images))


def erase_patches(images: tf.Tensor, share: float, side: float = 0.25) -> tf.Tensor:
    """Blanks one random square (``side`` of the image) in ``share`` of the images: parts of a letter missing."""
    if share <= 0:
        return images
    shape = tf.shape(images)
    n, size = shape[0], tf.cast(shape[1], tf.float32)
    cy = tf.random.uniform([n, 1, 1, 1], 0.0, size)
    cx = tf.random.uniform([n, 1, 1, 1], 0.0, size)
    grid = tf.range(size)
    inside = ((tf.abs(tf.reshape(grid, [1, -1, 1, 1]) - cy) < size * side / 2)
              & (tf.abs(tf.reshape(grid, [1, 1, -1, 1]) - cx) < size * side / 2))
    use = tf.random.uniform([n, 1, 1, 1]) < share
    return tf.where(inside & use, tf.zeros_like(images), images)


def cut_mix(images: tf.Tensor, labels: tf.Tensor, share: float, low: float = 0.3) -> tuple[tf.Tensor, tf.Tensor]:
    """CutMix on ``share`` of a batch: a random box of another image of the batch is pasted in, and the one-hot
    labels are mixed by the share of pixels each image keeps. The box covers up to ``1 - low`` of the image
    (less where it meets the border)."""
    if share <= 0:
        return images, labels
    shape = tf.shape(images)
    n, size = shape[0], shape[1]
    partner = tf.random.shuffle(tf.range(n))
    keep = tf.random.uniform([n, 1, 1, 1], low, 1.0)
    side = tf.cast(tf.cast(size, tf.float32) * tf.sqrt(1.0 - keep), tf.int32)
    cy = tf.random.uniform([n, 1, 1, 1], 0, size, tf.int32)
    cx = tf.random.uniform([n, 1, 1, 1], 0, size, tf.int32)
    grid = tf.range(size)
    rows = (tf.reshape(grid, [1, -1, 1, 1]) >= cy - side // 2) & (tf.reshape(grid, [1, -1, 1, 1]) < cy + side // 2)
    cols = (tf.reshape(grid, [1, 1, -1, 1]) >= cx - side // 2) & (tf.reshape(grid, [1, 1, -1, 1]) < cx + side // 2)
    used = tf.random.uniform([n, 1, 1, 1]) < share
    box = tf.cast(rows & cols & used, images.dtype)
    pasted = tf.reduce_mean(box, axis=[1, 2, 3])[:, tf.newaxis]
    mixed_images = images * (1.0 - box) + tf.gather(images, partner) * box
    mixed_labels = labels * (1.0 - pasted) + tf.gather(labels, partner) * pasted
    return tf.ensure_shape(mixed_images, images.shape), mixed_labels
