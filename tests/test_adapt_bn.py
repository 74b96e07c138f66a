"""bench/adapt_bn.py: re-estimating a network's batch-norm statistics on other images."""
import numpy as np
import pytest
import tensorflow as tf

from bench import adapt_bn
from bench.adapt_bn import adapt_statistics
from models import network
from tests.support import letter_roots


def _norms(model):
    return [layer for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]


def test_statistics_become_those_of_the_images_and_nothing_else_changes():
    tf.keras.utils.set_random_seed(0)
    model = network.build_model("resnet", 16, widths="4,6")
    before = {w.name: w.numpy() for w in model.weights}
    images = np.random.default_rng(0).uniform(0, 1, (64, 16, 16, 1)).astype(np.float32) ** 3
    adapt_statistics(model, images)

    stem = _norms(model)[0]
    stem_input = tf.keras.Model(model.input, stem.input)(images).numpy()   # the stem convolution's output
    np.testing.assert_allclose(stem.moving_mean.numpy(), stem_input.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stem.moving_variance.numpy(), stem_input.var(axis=(0, 1, 2)), rtol=1e-3, atol=1e-6)
    for layer in _norms(model):
        assert layer.momentum == 0.9                                         # restored
        assert not np.allclose(layer.moving_mean.numpy(), 0.0)               # every layer re-estimated
    statistics = ("moving_mean", "moving_variance")
    for w in model.weights:
        if not any(s in w.name for s in statistics):
            np.testing.assert_array_equal(w.numpy(), before[w.name])         # learnt weights untouched


def test_scores_follow_the_new_statistics_deterministically():
    tf.keras.utils.set_random_seed(0)
    model = network.build_model("resnet", 16, widths="4,6")
    images = np.random.default_rng(1).uniform(0, 1, (32, 16, 16, 1)).astype(np.float32)
    adapt_statistics(model, images)
    first = model.predict(images, verbose=0)
    adapt_statistics(model, images * 0.5)
    assert not np.allclose(model.predict(images, verbose=0), first, atol=1e-4)   # other statistics, other answers
    adapt_statistics(model, images)
    np.testing.assert_allclose(model.predict(images, verbose=0), first, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", letter_roots.NAMES)
def test_a_root_without_letters_is_a_usage_error_before_any_work(tmp_path, monkeypatch, capsys, name):
    """--real-root missing, empty or without class folders is refused as the command line is read; it had ended in a
    traceback (ValueError: no images in the class folders of …) once the letters were generated or trained on."""
    letter_roots.assert_refused(adapt_bn, ["--writers", "1"], "--real-root", name, tmp_path, monkeypatch, capsys)
