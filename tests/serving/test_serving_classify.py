"""classify / regress on signatures shaped for them (one input named "inputs"; classes/scores, outputs)."""
import grpc
import pytest
from tensorflow_serving.apis import (classification_pb2, inference_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)

from tests.support import serving as testing


def save_misshapen(path: str) -> None:
    """A model whose classify/regress signatures pass the signature checks but whose outputs TF Serving refuses."""
    import tensorflow as tf

    def x_of(inputs):
        return tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([], tf.float32)})["x"]

    spec = [tf.TensorSpec([None], tf.string, name="inputs")]
    signatures = {
        "wide": lambda inputs: {"outputs": tf.stack([x_of(inputs), x_of(inputs) + 1.0], axis=1)},
        "regress_double": lambda inputs: {"outputs": tf.cast(x_of(inputs), tf.float64)},
        "flat_scores": lambda inputs: {"scores": x_of(inputs)},
        "double_scores": lambda inputs: {"scores": tf.cast(tf.stack([x_of(inputs)] * 2, axis=1), tf.float64)},
        "half_scores": lambda inputs: {"scores": tf.cast(tf.stack([x_of(inputs)] * 2, axis=1), tf.float16)},
        "one_row_of_classes": lambda inputs: {"classes": tf.constant([["a", "b", "c"]]),
                                              "scores": tf.stack([x_of(inputs)] * 3, axis=1)},
        "narrow_classes": lambda inputs: {"classes": tf.tile(tf.constant([["a"]]), [tf.shape(inputs)[0], 1]),
                                          "scores": tf.stack([x_of(inputs)] * 2, axis=1)},
        # neither classes nor scores; its SignatureDef keeps the outputs in this order, not sorted
        "unsorted": lambda inputs: {"y": x_of(inputs), "b": tf.strings.length(inputs)},
    }
    module = tf.Module()
    tf.saved_model.save(module, path, signatures={name: tf.function(body, input_signature=spec)
                                                  for name, body in signatures.items()})


def save_float_inputs(path: str) -> None:
    """A model whose classify/regress signatures take their "inputs" as float, not the serialized tf.Examples."""
    import tensorflow as tf

    spec = [tf.TensorSpec([None], tf.float32, name="inputs")]
    signatures = {"serving_default": lambda inputs: {"outputs": inputs * 2.0},
                  "scores": lambda inputs: {"scores": tf.stack([inputs, 1.0 - inputs], axis=1)}}
    module = tf.Module()
    tf.saved_model.save(module, path, signatures={name: tf.function(body, input_signature=spec)
                                                  for name, body in signatures.items()})


def save_raw_labels(path: str) -> None:
    """A model whose classes are bytes that are not all UTF-8: "caf\\xe9" (Latin-1), "\\xff", "é"."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(inputs):
        rows = tf.shape(inputs)[0]
        return {"classes": tf.tile(tf.constant([[b"caf\xe9", b"\xff", "é".encode()]]), [rows, 1]),
                "scores": tf.fill([rows, 3], 0.5)}

    tf.saved_model.save(tf.Module(), path, signatures={"serving_default": classify})


def save_v1(path: str) -> None:
    """A TF1 SavedModel (tf.compat.v1.saved_model.Builder) whose regress signature "reg" parses "x" as a float."""
    import tensorflow as tf

    v1 = tf.compat.v1
    with tf.Graph().as_default() as graph, v1.Session(graph=graph) as session:
        inputs = v1.placeholder(tf.string, [None], name="inputs")
        x = tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
        builder = v1.saved_model.Builder(path)
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={
            "reg": v1.saved_model.regression_signature_def(inputs, x)})
        builder.save()


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    root = tmp_path_factory.mktemp("scorer")
    testing.save_scorer(str(root / "scorer" / "1"))
    save_misshapen(str(root / "misshapen" / "1"))
    save_float_inputs(str(root / "odd" / "1"))
    save_raw_labels(str(root / "labels" / "1"))
    save_v1(str(root / "v1" / "1"))
    (root / "models.config").write_text("model_config_list {\n" + "".join(
        f'  config {{ name: "{name}" base_path: "{root / name}" model_platform: "tensorflow" }}\n'
        for name in ("scorer", "misshapen", "odd", "labels", "v1")) + "}\n")
    with testing.start_grpc_server(model_config_file=str(root / "models.config")) as started:
        yield started


@pytest.fixture(scope="module")
def server(running):
    return testing.RestClient(running.url)


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


def test_classify_and_regress_bodies_as_tf_serving_writes_them(server):
    """MakeJsonFromClassificationResult closes the results array on a line of its own (the format of the inner
    arrays is reset to rapidjson's default before it ends); the regressions stay on one line."""
    status, _, raw = server.request("POST", "/v1/models/scorer:classify", {"examples": [{"x": 0.25}, {"x": 1.0}]})
    assert (status, raw) == (200, b'{\n    "results": [[["yes", 0.25], ["no", 0.75]], [["yes", 1.0], ["no", 0.0]]'
                                  b'\n    ]\n}')
    status, _, raw = server.request("POST", "/v1/models/scorer:regress",
                                    {"signature_name": "regress_x", "examples": [{"x": 1.5}, {"x": 2.0}]})
    assert (status, raw) == (200, b'{\n    "results": [3.0, 4.0]\n}')


def _grpc_error(running, verb: str, signature: str, count: int) -> str:
    """The gRPC Classify/Regress answer's INVALID_ARGUMENT message for ``count`` examples of ``x``."""
    request = (classification_pb2.ClassificationRequest() if verb == "classify"
               else regression_pb2.RegressionRequest())
    request.model_spec.name, request.model_spec.signature_name = "misshapen", signature
    for i in range(count):
        request.input.example_list.examples.add().features.feature["x"].float_list.value.append(i / 4)
    with grpc.insecure_channel(f"127.0.0.1:{running.server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            (stub.Classify if verb == "classify" else stub.Regress)(request, timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return caught.value.details()


@pytest.mark.parametrize("verb, signature, message", [
    ("regress", "wide", "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got [2,2]"),
    ("regress", "regress_double", "Expected output Tensor of DT_FLOAT.  Got: DT_DOUBLE"),
    ("classify", "flat_scores", "Expected Tensor shape: [batch_size num_classes] but got [2]"),
    ("classify", "double_scores", "Expected scores Tensor of DT_FLOAT. Got: DT_DOUBLE"),
    ("classify", "half_scores", "Expected scores Tensor of DT_FLOAT. Got: DT_HALF"),
    ("classify", "one_row_of_classes", "Expected classes output batch size of 2. Got: 1"),
    ("classify", "narrow_classes", "Tensors class and score should match in dim_size(1). Got 1 vs. 2"),
])
def test_outputs_are_checked_over_rest_as_over_grpc(running, server, verb, signature, message):
    """PostProcessClassificationResult / PostProcessRegressionResult: one check, REST's 400 and gRPC's
    INVALID_ARGUMENT with the same words (DataType_Name's DT_DOUBLE, DT_HALF)."""
    status, body = server.post(f"/v1/models/misshapen:{verb}",
                               {"signature_name": signature, "examples": [{"x": 0.0}, {"x": 0.25}]})
    assert (status, body) == (400, {"error": message})
    assert _grpc_error(running, verb, signature, 2) == message


def test_a_signature_quoted_in_an_error_is_its_debug_string(running, server):
    """A message that quotes the SignatureDef has it as C++ DebugString() writes it, map entries sorted by key
    (TextFormat's MapFieldPrinterHelper::SortMap): REST, Classify and MultiInference alike; "y" had come before
    "b", in the order the saved model has them (PartitionedCall_6: the name TensorFlow gives this signature's call
    in save_misshapen's model)."""
    message = ('Expected classification signature outputs to contain at least one of "classes" or "scores". '
               'Signature was: inputs {\n  key: "inputs"\n  value {\n    name: "unsorted_inputs:0"\n'
               '    dtype: DT_STRING\n    tensor_shape {\n      dim {\n        size: -1\n      }\n    }\n  }\n}\n'
               'outputs {\n  key: "b"\n  value {\n    name: "PartitionedCall_6:0"\n    dtype: DT_INT32\n'
               '    tensor_shape {\n      dim {\n        size: -1\n      }\n    }\n  }\n}\n'
               'outputs {\n  key: "y"\n  value {\n    name: "PartitionedCall_6:1"\n    dtype: DT_FLOAT\n'
               '    tensor_shape {\n      dim {\n        size: -1\n      }\n    }\n  }\n}\n'
               'method_name: "tensorflow/serving/predict"\n')
    assert server.post("/v1/models/misshapen:classify", {"signature_name": "unsorted", "examples": [{"x": 0.5}]}) \
        == (400, {"error": message})
    multi = inference_pb2.MultiInferenceRequest()
    multi.input.example_list.examples.add().features.feature["x"].float_list.value.append(0.5)
    task = multi.tasks.add(method_name="tensorflow/serving/classify")
    task.model_spec.name, task.model_spec.signature_name = "misshapen", "unsorted"
    classify = classification_pb2.ClassificationRequest(input=multi.input)
    classify.model_spec.name, classify.model_spec.signature_name = "misshapen", "unsorted"
    with grpc.insecure_channel(f"127.0.0.1:{running.server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for call, request in ((stub.Classify, classify), (stub.MultiInference, multi)):
            with pytest.raises(grpc.RpcError) as caught:
                call(request, timeout=60)
            assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_examples_fed_to_an_input_that_is_not_a_string_are_refused(running, server):
    """TF Serving does not check a classify/regress input's dtype: the session refuses the serialized tf.Examples
    fed to a float input, in the words a mistyped predict feed gets (400; INVALID_ARGUMENT over gRPC)."""
    message = "Expects arg[0] to be float but string is provided"
    assert server.post("/v1/models/odd:regress", {"examples": [{"x": 0.5}]}) == (400, {"error": message})
    assert server.post("/v1/models/odd:classify", {"signature_name": "scores", "examples": [{"x": 0.5}]}) == \
        (400, {"error": message})
    multi = inference_pb2.MultiInferenceRequest()
    multi.input.example_list.examples.add().features.feature["x"].float_list.value.append(0.5)
    for signature, method in (("serving_default", "regress"), ("scores", "classify")):
        task = multi.tasks.add()
        task.model_spec.name, task.model_spec.signature_name = "odd", signature
        task.method_name = f"tensorflow/serving/{method}"
    with grpc.insecure_channel(f"127.0.0.1:{running.server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for call, request in ((stub.Regress, regression_pb2.RegressionRequest()),
                              (stub.Classify, classification_pb2.ClassificationRequest()), (stub.MultiInference, multi)):
            if call is not stub.MultiInference:
                request.model_spec.name = "odd"
                request.model_spec.signature_name = "scores" if call is stub.Classify else ""
                request.input.CopyFrom(multi.input)
            with pytest.raises(grpc.RpcError) as caught:
                call(request, timeout=60)
            assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_a_runtime_error_of_a_tf1_model_is_the_sessions_message(running, server):
    """A TF1 graph imported in Python records where each node was made (the server's loader thread): Python's
    "Detected at node … (most recent call last):" frames are left out of its runtime error as they are of a TF2
    model's, REST and gRPC given the session's message alone, as TF Serving gives it."""
    message = ("Name: <unknown>, Key: x, Index: 0.  Data types don't match. Data type: int64 but expected type: float"
               "\n\t [[{{node ParseExample/ParseExampleV2}}]]")
    assert server.post("/v1/models/v1:regress", {"signature_name": "reg", "examples": [{"x": 1}]}) == \
        (400, {"error": message})
    request = regression_pb2.RegressionRequest()
    request.model_spec.name, request.model_spec.signature_name = "v1", "reg"
    request.input.example_list.examples.add().features.feature["x"].int64_list.value.append(1)
    with grpc.insecure_channel(f"127.0.0.1:{running.server.grpc_port}") as channel:
        with pytest.raises(grpc.RpcError) as caught:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Regress(request, timeout=60)
    assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_labels_that_are_not_utf8_come_as_their_bytes(running, server):
    """TF Serving sets a label from the classes' bytes and rapidjson writes them unchecked: the REST body carries
    them as they are. A gRPC label is a proto string, which Python's protobuf holds only as UTF-8 (and a client's
    parse refuses otherwise): there bytes that are not UTF-8 are U+FFFD."""
    status, _, raw = server.request("POST", "/v1/models/labels:classify", {"examples": [{"x": 0.5}]})
    assert (status, raw) == (200, b'{\n    "results": [[["caf\xe9", 0.5], ["\xff", 0.5], ["\xc3\xa9", 0.5]]'
                                  b'\n    ]\n}')
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "labels"
    request.input.example_list.examples.add().features.feature["x"].float_list.value.append(0.5)
    with grpc.insecure_channel(f"127.0.0.1:{running.server.grpc_port}") as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Classify(request, timeout=60)
    assert [c.label for c in response.result.classifications[0].classes] == ["caf\ufffd", "\ufffd", "é"]


def test_string_outputs_that_are_not_utf8_come_as_their_bytes(server):
    """A predict answer's string outputs are written as rapidjson's Writer::String writes them (MakeJsonFromTensors),
    their bytes unchecked, in the row and the columnar format alike: "caf\\xe9" had come as caf U+FFFD."""
    for body, key in (({"instances": ["x"]}, b'"predictions"'), ({"inputs": ["x"]}, b'"outputs"')):
        status, _, raw = server.request("POST", "/v1/models/labels:predict", body)
        assert status == 200 and key in raw and b'["caf\xe9", "\xff", "\xc3\xa9"]' in raw, raw
