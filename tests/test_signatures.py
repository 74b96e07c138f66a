"""The exported model's signatures, on the model the pipeline pushed."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from core import configs
from core.labels import CLASS_NAMES, GLYPHS
from tests.conftest import letter_image, png_bytes


@pytest.fixture(scope="module")
def loaded(pushed_model_dir):
    return tf.saved_model.load(pushed_model_dir)


@pytest.fixture(scope="module")
def images(tiny_dataset):
    files = sorted(tiny_dataset.glob("*/*.png"))[::40][:5]
    return [f.read_bytes() for f in files] + [png_bytes(letter_image(30, 90, "RGBA")),
                                              png_bytes(letter_image(90, 40, "RGB"), "JPEG")]


def example(image: bytes) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature={
        configs.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))})).SerializeToString()


def test_signature_names_and_input_specs(loaded):
    assert set(loaded.signatures) == {configs.SERVING_DEFAULT_SIGNATURE, configs.IMAGE_SIGNATURE,
                                      configs.TRANSFORM_SIGNATURE}
    spec = loaded.signatures[configs.IMAGE_SIGNATURE].structured_input_signature[1][configs.IMAGE_INPUT]
    assert spec.dtype == tf.string and spec.shape.as_list() == [None]
    spec = loaded.signatures[configs.SERVING_DEFAULT_SIGNATURE].structured_input_signature[1][configs.EXAMPLES_INPUT]
    assert spec.dtype == tf.string and spec.shape.as_list() == [None]


def test_image_bytes_give_27_probabilities_that_sum_to_one(loaded, images):
    out = loaded.signatures[configs.IMAGE_SIGNATURE](images=tf.constant(images))
    probs = out[configs.PROBABILITIES_OUTPUT].numpy()
    assert probs.shape == (len(images), 27)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert (probs >= 0).all()
    best = probs.argmax(axis=1)
    top_idx = out[configs.TOP_INDICES_OUTPUT].numpy()
    assert top_idx.shape == (len(images), 3)
    np.testing.assert_array_equal(top_idx[:, 0], best)
    top_scores = out[configs.TOP_SCORES_OUTPUT].numpy()
    assert (np.diff(top_scores, axis=1) <= 0).all()
    np.testing.assert_allclose(top_scores, np.take_along_axis(probs, top_idx, axis=1), atol=1e-6)
    names = out[configs.TOP_CLASSES_OUTPUT].numpy()
    letters = out[configs.TOP_LETTERS_OUTPUT].numpy()
    for i in range(len(images)):
        assert [n.decode() for n in names[i]] == [CLASS_NAMES[j] for j in top_idx[i]]
        assert [g.decode() for g in letters[i]] == [GLYPHS[j] for j in top_idx[i]]


def test_example_signature_gives_the_same_answer_as_image_signature(loaded, images):
    by_image = loaded.signatures[configs.IMAGE_SIGNATURE](images=tf.constant(images))
    by_example = loaded.signatures[configs.SERVING_DEFAULT_SIGNATURE](
        examples=tf.constant([example(i) for i in images]))
    np.testing.assert_allclose(by_example[configs.PROBABILITIES_OUTPUT].numpy(),
                               by_image[configs.PROBABILITIES_OUTPUT].numpy(), atol=1e-5)


def test_transform_features_gives_the_model_input(loaded, images):
    out = loaded.signatures[configs.TRANSFORM_SIGNATURE](examples=tf.constant([example(i) for i in images]))
    image = out[configs.TRANSFORMED_IMAGE_KEY].numpy()
    size = configs.Config().image_size
    assert image.shape == (len(images), size, size, 1)
    assert image.min() >= 0 and image.max() <= 1


def test_a_corrupt_image_fails_the_request_not_the_model(loaded, images):
    with pytest.raises(tf.errors.InvalidArgumentError):
        loaded.signatures[configs.IMAGE_SIGNATURE](images=tf.constant([b"not an image"]))
    out = loaded.signatures[configs.IMAGE_SIGNATURE](images=tf.constant(images[:1]))
    assert out[configs.PROBABILITIES_OUTPUT].shape == (1, 27)


def test_the_pushed_model_carries_warmup_requests_that_replay(pushed_model_dir):
    from core import warmup
    from serving import versions
    requests = warmup.read_requests(pushed_model_dir)
    assert [name for name, _ in requests] == [configs.IMAGE_SIGNATURE, configs.SERVING_DEFAULT_SIGNATURE]
    assert versions.Servable(configs.MODEL_NAME, 1, pushed_model_dir).warmup_requests == 2


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small network trained one step and exported as the Trainer exports it (no pipeline run)."""
    from tests.support import exports
    export_dir = str(tmp_path_factory.mktemp("export") / "1")
    return export_dir, exports.export_trained(export_dir)


@pytest.fixture(scope="module")
def served(exported):
    """The export above, loaded once."""
    return tf.saved_model.load(exported[0])


def test_an_empty_batch_gives_no_rows_through_both_signatures(served, images):
    """The signatures take DT_STRING [-1]: an empty batch is answered with no rows. With oneDNN (TensorFlow's
    default) a convolution had returned the empty batch unchanged and the next layer failed on its depth."""
    empty = tf.constant([], tf.string)
    out = served.signatures[configs.IMAGE_SIGNATURE](images=empty)
    assert out[configs.PROBABILITIES_OUTPUT].shape == (0, 27)
    for name in (configs.TOP_CLASSES_OUTPUT, configs.TOP_LETTERS_OUTPUT, configs.TOP_SCORES_OUTPUT,
                 configs.TOP_INDICES_OUTPUT):
        assert out[name].shape == (0, 3)
    out = served.signatures[configs.SERVING_DEFAULT_SIGNATURE](examples=empty)
    assert out[configs.PROBABILITIES_OUTPUT].shape == (0, 27)
    # A batch with rows still runs the network.
    out = served.signatures[configs.IMAGE_SIGNATURE](images=tf.constant(images[:2]))
    assert out[configs.PROBABILITIES_OUTPUT].shape == (2, 27)


def test_the_export_holds_the_networks_weights_only(exported, tmp_path):
    """Not the optimizer's state (Adam's step, learning rate and two slots per weight) nor the training metrics:
    they had made the export three times the network's size. The weights keep their paths in the checkpoint."""
    from tensorflow.core.protobuf import saved_model_pb2
    export_dir, model = exported
    reader = tf.train.load_checkpoint(f"{export_dir}/variables/variables")
    stored = {name: shape for name, shape in reader.get_variable_to_shape_map().items()
              if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    trained = tf.train.load_checkpoint(tf.train.Checkpoint(model=model).write(str(tmp_path / "trained")))
    assert any(name.startswith("model/optimizer/") for name in trained.get_variable_to_shape_map())
    assert set(stored) == {name for name in trained.get_variable_to_shape_map()
                           if name.startswith("model/layer_with_weights-")}
    assert all(np.array_equal(reader.get_tensor(name), trained.get_tensor(name)) for name in stored)
    assert sum(int(np.prod(shape)) for shape in stored.values()) == model.count_params()
    saved = saved_model_pb2.SavedModel.FromString(open(f"{export_dir}/saved_model.pb", "rb").read())
    assert sum(node.op == "VarHandleOp" for node in saved.meta_graphs[0].graph_def.node) == len(model.weights)


def test_a_jpeg_gets_the_answer_of_the_png_of_pillows_pixels_through_every_signature(served):
    """The image signature, serving_default and transform_features read a JPEG as Pillow does (the accurate
    integer DCT): a JPEG sent as feedback is exported as a PNG of Pillow's pixels and trained on, and the model
    answered those pixels."""
    letter = letter_image(90, 120, "RGB", seed=3)
    jpegs = [png_bytes(letter, "JPEG", quality=95), png_bytes(letter.convert("L"), "JPEG", progressive=True)]
    pngs = [png_bytes(Image.open(io.BytesIO(jpeg))) for jpeg in jpegs]
    images = jpegs + pngs
    by_image = served.signatures[configs.IMAGE_SIGNATURE](images=tf.constant(images))
    examples = tf.constant([example(i) for i in images])
    by_example = served.signatures[configs.SERVING_DEFAULT_SIGNATURE](examples=examples)
    transformed = served.signatures[configs.TRANSFORM_SIGNATURE](
        examples=examples)[configs.TRANSFORMED_IMAGE_KEY].numpy()
    np.testing.assert_array_equal(transformed[:2], transformed[2:])
    for probabilities in (by_image[configs.PROBABILITIES_OUTPUT].numpy(),
                          by_example[configs.PROBABILITIES_OUTPUT].numpy()):
        np.testing.assert_array_equal(probabilities[:2], probabilities[2:])
    np.testing.assert_allclose(by_example[configs.PROBABILITIES_OUTPUT].numpy(),
                               by_image[configs.PROBABILITIES_OUTPUT].numpy(), atol=1e-6)
