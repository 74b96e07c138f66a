"""Answers whose tensors have no batch dimension, over REST and gRPC, from a server that does not batch
(``shapes``: :func:`tests.support.serving.save_shapes`)."""
import core  # noqa: F401  (before TensorFlow)

import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from tests.support import serving as testing


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    testing.save_shapes(str(root / "1"))
    with testing.start_grpc_server(model_base_path=str(root), model_name="shapes") as server:
        yield server


@pytest.fixture(scope="module")
def client(running):
    return testing.RestClient(running.url)


def test_a_0_dim_string_output_is_written_as_a_bare_value(client, predict_stub):
    """json_tensor.cc's AddTensorValues writes a tensor of no dimensions as its one value: a string, or a b64
    object for a name ending in _bytes; gRPC answers it as a 0-d tensor, its bytes as they were."""
    assert client.post("/v1/models/shapes:predict", {"signature_name": "echo_s", "inputs": "abc"}) == (
        200, {"outputs": {"y": "abc", "y_bytes": {"b64": "YWJj"}}})
    assert client.post("/v1/models/shapes:predict", {"signature_name": "echo_s", "inputs": {"x": "abc"}}) == (
        200, {"outputs": {"y": "abc", "y_bytes": {"b64": "YWJj"}}})
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "shapes"
    request.model_spec.signature_name = "echo_s"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(b"a\0"))
    response = predict_pb2.PredictResponse.FromString(
        predict_stub.Predict(request, timeout=60).SerializeToString())
    for alias in ("y", "y_bytes"):
        assert response.outputs[alias].tensor_shape.dim == [] and response.outputs[alias].string_val == [b"a\0"]


@pytest.mark.parametrize("output_filter", [(), ("__saved_model_init_op",)])
def test_predict_of_the_init_op_signature_fails_as_tf_servings_fetch_of_its_noop(predict_stub, output_filter):
    """``__saved_model_init_op`` (listed by GetModelMetadata, no inputs) names the op ``NoOp`` as its output: TF
    Serving's session fetches ``NoOp:0``, which Graph::IsValidOutputTensor refuses (tf.saved_model.load gives
    the signature no function)."""
    import grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "shapes"
    request.model_spec.signature_name = "__saved_model_init_op"
    request.output_filter.extend(output_filter)
    with pytest.raises(grpc.RpcError) as info:
        predict_stub.Predict(request, timeout=60)
    assert (info.value.code(), info.value.details()) == (
        grpc.StatusCode.OUT_OF_RANGE, "Node 'NoOp' (type: 'NoOp', num of outputs: 0) does not have output 0")
