"""classify / regress on signatures shaped for them (one input named "inputs"; classes/scores, outputs)."""
import pytest
import tensorflow as tf

from tests.support import serving as testing


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("scorer") / "scorer"

    class Scorer(tf.Module):
        def _x(self, inputs):
            return tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([], tf.float32),
                                                "tag": tf.io.FixedLenFeature([], tf.string, default_value="")})

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def classify(self, inputs):
            x = self._x(inputs)["x"]
            scores = tf.stack([x, 1.0 - x], axis=1)
            classes = tf.tile(tf.constant([["yes", "no"]]), [tf.shape(x)[0], 1])
            return {"classes": classes, "scores": scores}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress(self, inputs):
            features = self._x(inputs)
            bonus = tf.where(features["tag"] == "bonus", 10.0, 0.0)
            return {"outputs": features["x"] * 2.0 + bonus}

    module = Scorer()
    tf.saved_model.save(module, str(base / "1"), signatures={"serving_default": module.classify,
                                                             "regress_x": module.regress})
    with testing.start_server(str(base), model_name="scorer") as running:
        yield testing.RestClient(running.url)


def test_classify(server):
    status, body = server.post("/v1/models/scorer:classify", {"examples": [{"x": 0.25}, {"x": 1.0}]})
    assert status == 200
    assert body == {"results": [[["yes", 0.25], ["no", 0.75]], [["yes", 1.0], ["no", 0.0]]]}


def test_regress_with_context(server):
    status, body = server.post("/v1/models/scorer:regress", {"signature_name": "regress_x", "context": {"tag": "bonus"},
                                                             "examples": [{"x": 1.5}, {"x": 2.0, "tag": "none"}]})
    assert (status, body) == (200, {"results": [13.0, 4.0]})


def test_wrong_shapes(server):
    status, body = server.post("/v1/models/scorer:regress", {"examples": [{"x": 1.0}]})
    assert status == 400 and body["error"] == "Expected one output Tensor."
    status, body = server.post("/v1/models/scorer:classify", {"examples": [{"x": 1.0, "tag": 3.5}]})
    assert status == 400
    status, body = server.post("/v1/models/scorer:classify", {"examples": [{"x": [1.0, "a"]}]})
    assert (status, body) == (400, {"error": "Unexpected element type in feature: x expecting type: float"})
