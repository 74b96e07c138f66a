"""The embedded server's gRPC API, driven only through TF Serving's generated stubs (as its example clients are).

One module-scoped server: ``letters`` (versions 1 and 2 of the tiny model, labels stable/canary), ``scorer``
(signatures shaped for classify/regress), batching on, Prometheus on, a 4 MiB bound on a request.
"""
import core  # noqa: F401  (before TensorFlow)

import re
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, model_management_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)
from tensorflow_serving.config import model_server_config_pb2

from serving.status import ServingError, c_escape
from tests.support import serving as testing

TIMEOUT = 60


@pytest.fixture(scope="module")
def running(models_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("grpc")
    testing.save_scorer(str(root / "scorer" / "1"))
    config = text_format.Parse(testing.labelled_config_text(models_root / "letters", {"stable": 1, "canary": 2}),
                               model_server_config_pb2.ModelServerConfig())
    config.model_config_list.config.add(name="scorer", base_path=str(root / "scorer"), model_platform="tensorflow")
    (root / "models.config").write_text(text_format.MessageToString(config))
    (root / "monitoring.config").write_text('prometheus_config { enable: true, path: "/metrics" }\n')
    (root / "batching.config").write_text("max_batch_size { value: 16 }\nbatch_timeout_micros { value: 2000 }\n"
                                          "num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 100 }\n")
    server = testing.start_grpc_server(model_config_file=str(root / "models.config"),
                               allow_version_labels_for_unavailable_models=True,
                               monitoring_config_file=str(root / "monitoring.config"), enable_batching=True,
                               batching_parameters_file=str(root / "batching.config"),
                               max_request_bytes=4 * 1024 * 1024)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def model_stub(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


def predict_request(signature="predict_images", images=None, name="letters", version=None, label=None,
                    output_filter=()):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    images = images if images is not None else [testing.png_bytes(200)]
    if signature == "serving_default":
        request.inputs["examples"].CopyFrom(tf.make_tensor_proto([testing.example_bytes(i) for i in images]))
    else:
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    request.output_filter.extend(output_filter)
    return request


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=TIMEOUT)
    return info.value


def examples_input(target, *values, context=None):
    """Fills a ``tensorflow.serving.Input`` with tf.Examples of feature ``x`` (and a context, if given)."""
    def example(features):
        built = example_pb2.Example()
        for key, value in features.items():
            if isinstance(value, str):
                built.features.feature[key].bytes_list.value.append(value.encode())
            else:
                built.features.feature[key].float_list.value.append(value)
        return built

    if context is None:
        target.example_list.examples.extend(example({"x": v}) for v in values)
    else:
        target.example_list_with_context.context.CopyFrom(example(context))
        target.example_list_with_context.examples.extend(example({"x": v}) for v in values)


# ------------------------------------------------------------------------------------------------ Predict
def test_predict_both_signatures(predict_stub):
    response = predict_stub.Predict(predict_request("serving_default"), timeout=TIMEOUT)
    probabilities = tf.make_ndarray(response.outputs["probabilities"])
    assert probabilities.shape == (1, 27) and probabilities.argmax() == 2      # version 2 ranks class 2 first
    assert (response.model_spec.name, response.model_spec.signature_name, response.model_spec.version.value) == \
        ("letters", "serving_default", 2)

    response = predict_stub.Predict(predict_request("predict_images", [testing.png_bytes(200)] * 2), timeout=TIMEOUT)
    assert set(response.outputs) == {"probabilities", "top_classes", "top_letters", "top_scores", "top_indices"}
    assert tf.make_ndarray(response.outputs["top_indices"])[:, 0].tolist() == [2, 2]
    assert response.outputs["probabilities"].float_val and not response.outputs["probabilities"].tensor_content


def test_grpc_and_rest_give_identical_probabilities(predict_stub, running):
    image = testing.png_bytes(noise_seed=3)
    response = predict_stub.Predict(predict_request("predict_images", [image]), timeout=TIMEOUT)
    status, body = testing.RestClient(running.url).post(
        "/v1/models/letters:predict", {"signature_name": "predict_images", "instances": [testing.b64(image)]})
    assert status == 200
    rest = np.array(body["predictions"][0]["probabilities"], dtype=np.float32)
    assert np.array_equal(tf.make_ndarray(response.outputs["probabilities"])[0], rest)


def test_version_and_label_selection(predict_stub):
    def top(**spec):
        response = predict_stub.Predict(predict_request(**spec), timeout=TIMEOUT)
        return response.model_spec.version.value, int(tf.make_ndarray(response.outputs["top_indices"])[0, 0])

    assert top(version=1) == (1, 1)
    assert top(version=2) == (2, 2)
    assert top(label="stable") == (1, 1)
    assert top(label="canary") == (2, 2)
    error = rpc_error(predict_stub.Predict, predict_request(version=7))
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND,
                                               "Servable not found for request: Specific(letters, 7)")
    error = rpc_error(predict_stub.Predict, predict_request(name="nope"))
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND,
                                               "Servable not found for request: Latest(nope)")
    error = rpc_error(predict_stub.Predict, predict_request(label="nope"))   # TF Serving: INVALID_ARGUMENT
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                               "Unrecognized servable version label: nope")
    error = rpc_error(predict_stub.Predict, predict_request(name=""))
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified.")


def test_output_filter(predict_stub):
    response = predict_stub.Predict(predict_request(output_filter=["top_classes", "top_scores"]), timeout=TIMEOUT)
    assert set(response.outputs) == {"top_classes", "top_scores"}
    error = rpc_error(predict_stub.Predict, predict_request(output_filter=["logits"]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == ("output tensor alias not found in signature: logits Outputs expected to be in the set "
                               "{probabilities,top_classes,top_indices,top_letters,top_scores}.")
    error = rpc_error(predict_stub.Predict, predict_request(output_filter=["top_classes", "top_classes"]))
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                               "duplicate output tensor alias: top_classes")
    # A message over 1024 bytes is cut there, as ToGRPCStatus cuts it: the client still gets its status, not
    # RESOURCE_EXHAUSTED from a trailer past its metadata limit.
    error = rpc_error(predict_stub.Predict, predict_request(output_filter=["x" * 20_000]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == ("output tensor alias not found in signature: " + "x" * 20_000)[:1024] + "...TRUNCATED"


def test_bad_input_has_tf_serving_codes_and_messages(predict_stub, running):
    error = rpc_error(predict_stub.Predict, predict_request(images=[b"not an image"]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Unknown image file format" in error.details() and "Traceback" not in error.details()

    request = predict_request()
    request.inputs["images"].CopyFrom(tf.make_tensor_proto([1.5]))
    error = rpc_error(predict_stub.Predict, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                               "Expects arg[0] to be string but float is provided")

    # No shape check before the run (TF Serving's Predict has none): the op that minds fails, as over REST; a
    # scalar is refused by the batching session this server runs (batching is on), as TF Serving's refuses it.
    rest = testing.RestClient(running.url)
    scalar_errors = "Batching Run() input tensors must have at least one dimension"
    for value, rest_value in (([[testing.png_bytes(1)]], [[testing.b64(testing.png_bytes(1))]]),
                              (testing.png_bytes(1), testing.b64(testing.png_bytes(1)))):
        request = predict_request()
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(value))
        error = rpc_error(predict_stub.Predict, request)
        status, body = rest.post("/v1/models/letters:predict",
                                 {"signature_name": "predict_images", "inputs": {"images": rest_value}})
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and status == 400
        if isinstance(value, bytes):
            assert error.details() == body["error"] == scalar_errors
        else:
            assert error.details() == body["error"] == ("Specified a list with shape [] from a tensor with shape [1]"
                                                        "\n\t [[{{node map/TensorArrayUnstack/TensorListFromTensor}}]]")

    request = predict_request()
    request.inputs["extra"].CopyFrom(tf.make_tensor_proto([1]))
    error = rpc_error(predict_stub.Predict, request)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT, "input size does not match signature: 2!=1 len({extra,images}) != "
                                          "len({images}). Sent extra: {extra}. Missing but required: {}.")

    request = predict_request()
    request.inputs["images"].dtype = tf.qint8.as_datatype_enum   # parsed by TF; not a type the signature takes
    request.inputs["images"].tensor_shape.dim.add(size=1)
    request.inputs["images"].int_val.append(1)
    error = rpc_error(predict_stub.Predict, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                               "Expects arg[0] to be string but qint8 is provided")

    request = predict_request()
    request.inputs["images"].dtype = 0   # DT_INVALID: Tensor::FromProto fails
    error = rpc_error(predict_stub.Predict, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "tensor parsing error: images")

    error = rpc_error(predict_stub.Predict, predict_request(signature="nope"))
    assert (error.code(), error.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                               'Serving signature key "nope" not found.')
    request = predict_pb2.PredictRequest()   # no inputs: the batching session refuses it before any run
    request.model_spec.name, request.model_spec.signature_name = "letters", "__saved_model_init_op"
    error = rpc_error(predict_stub.Predict, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                               "Batching Run() must have at least one input tensor")
    error = rpc_error(predict_stub.Predict, predict_pb2.PredictRequest())
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")


def test_a_tensor_of_more_than_32_dimensions_is_refused_over_grpc_as_over_rest(predict_stub, running):
    rest = testing.RestClient(running.url)
    for rank, message in ((33, "Input images has 33 dimensions: this server feeds tensors of at most 32 dimensions."),
                          (254, "Input images has 254 dimensions: this server feeds tensors of at most 32 dimensions."),
                          (255, "tensor parsing error: images")):
        request = predict_request()
        request.inputs["images"].tensor_shape.Clear()
        request.inputs["images"].tensor_shape.dim.extend([tensor_shape_pb2.TensorShapeProto.Dim(size=1)] * rank)
        error = rpc_error(predict_stub.Predict, request)
        assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
        value = testing.b64(testing.png_bytes(1))
        for _ in range(rank):
            value = [value]
        assert rest.post("/v1/models/letters:predict", {"signature_name": "predict_images", "inputs": value}) == (
            400, {"error": message})


def test_a_tf_message_cut_at_a_nul_byte_is_made_whole_over_grpc_as_over_rest(predict_stub, running):
    """TF's Python binding cuts an error at the first NUL byte of the value it quotes (image bytes sent as
    tf.Examples: every PNG has some); the message is made whole from the request's value, and over gRPC cut at
    1024 bytes as TF Serving cuts every message."""
    rest = testing.RestClient(running.url)
    png = testing.png_bytes(size=28, noise_seed=1)
    for value, shown in ((b"ab\x00cd", "ab\x00cd"), (png, c_escape(png))):
        message = ("Could not parse example input, value: '" + shown + "'\n\t [[{{node ParseExample/ParseExampleV2}}]]")
        request = predict_request(signature="serving_default")
        request.inputs["examples"].CopyFrom(tf.make_tensor_proto([value]))
        error = rpc_error(predict_stub.Predict, request)
        status, body = rest.post("/v1/models/letters:predict",
                                 {"signature_name": "serving_default", "instances": [testing.b64(value)]})
        assert (status, body) == (400, {"error": message})
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == (message if len(message) <= 1024 else message[:1024] + "...TRUNCATED")
    assert len(message) > 1024


# --------------------------------------------------------------------------- Classify, Regress, MultiInference
def test_classify(predict_stub):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "scorer"
    examples_input(request.input, 0.25, 1.0)
    response = predict_stub.Classify(request, timeout=TIMEOUT)
    results = [[(c.label, c.score) for c in row.classes] for row in response.result.classifications]
    assert results == [[("yes", 0.25), ("no", 0.75)], [("yes", 1.0), ("no", 0.0)]]
    assert (response.model_spec.signature_name, response.model_spec.version.value) == ("serving_default", 1)

    request.model_spec.name = "letters"   # not a classification signature
    error = rpc_error(predict_stub.Classify, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("No classification inputs found in SignatureDef: ")

    empty = classification_pb2.ClassificationRequest()
    empty.model_spec.name = "scorer"
    error = rpc_error(predict_stub.Classify, empty)
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Input is empty.")


def test_calls_without_a_deadline_run_without_a_timeout(predict_stub):
    """No timeout on the client (grpcurl without -max-time, a plain stub call): grpcio reports ~9.2e9 s left, which
    a thread cannot wait, and every such Predict, Classify and Regress had failed INTERNAL. The call has no deadline;
    only the test's own wait for its answer does."""
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "scorer"
    examples_input(classify.input, 0.25)
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "scorer"
    regress.model_spec.signature_name = "regress_x"
    examples_input(regress.input, 1.5, context={"tag": "bonus"})
    for call, request in ((predict_stub.Predict, predict_request(output_filter=["top_indices"])),
                          (predict_stub.Classify, classify), (predict_stub.Regress, regress)):
        assert call.future(request).result(timeout=TIMEOUT).model_spec.name in ("letters", "scorer")


def test_regress_with_context(predict_stub):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "scorer"
    request.model_spec.signature_name = "regress_x"
    examples_input(request.input, 1.5, 2.0, context={"tag": "bonus"})
    response = predict_stub.Regress(request, timeout=TIMEOUT)
    assert [r.value for r in response.result.regressions] == [13.0, 14.0]

    request.model_spec.signature_name = "nope"
    error = rpc_error(predict_stub.Regress, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                               "No signature was found with the name: nope")


def test_multi_inference(predict_stub):
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("serving_default", "classify"), ("regress_x", "regress")):
        task = request.tasks.add(method_name=f"tensorflow/serving/{method}")
        task.model_spec.name = "scorer"
        task.model_spec.signature_name = signature
    examples_input(request.input, 0.5)
    response = predict_stub.MultiInference(request, timeout=TIMEOUT)
    classification, regression = response.results
    assert [(c.label, c.score) for c in classification.classification_result.classifications[0].classes] == \
        [("yes", 0.5), ("no", 0.5)]
    assert [r.value for r in regression.regression_result.regressions] == [1.0]
    assert (regression.model_spec.name, regression.model_spec.signature_name, regression.model_spec.version.value) \
        == ("scorer", "regress_x", 1)

    request.tasks[1].model_spec.signature_name = "serving_default"
    error = rpc_error(predict_stub.MultiInference, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                               "Duplicate evaluation of signature: serving_default")
    request.tasks[1].method_name = "tensorflow/serving/predict"
    request.tasks[1].model_spec.signature_name = "regress_x"
    error = rpc_error(predict_stub.MultiInference, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.UNIMPLEMENTED,
                                               "Unsupported signature method_name: tensorflow/serving/predict")


# ------------------------------------------------------------------------------------- metadata and status
def test_get_model_metadata(predict_stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "letters"
    request.model_spec.version_label = "stable"
    response = predict_stub.GetModelMetadata(request, timeout=TIMEOUT)
    assert (response.model_spec.name, response.model_spec.version.value) == ("letters", 1)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    assert {"serving_default", "predict_images", "transform_features"} <= set(signatures.signature_def)
    assert isinstance(signatures.signature_def["predict_images"], meta_graph_pb2.SignatureDef)
    assert "images" in signatures.signature_def["predict_images"].inputs

    del request.metadata_field[:]
    error = rpc_error(predict_stub.GetModelMetadata, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                               "GetModelMetadataRequest must specify at least one metadata_field")


def test_get_model_status(model_stub):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "letters"
    response = model_stub.GetModelStatus(request, timeout=TIMEOUT)
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert [(s.version, s.state, s.status.error_code) for s in response.model_version_status] == \
        [(2, available, 0), (1, available, 0)]
    request.model_spec.version.value = 5
    error = rpc_error(model_stub.GetModelStatus, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "Could not find version 5 of model letters")


def test_metrics_count_grpc_calls(predict_stub, running):
    rpc_error(predict_stub.Predict, predict_request(name="nope"))
    predict_stub.Predict(predict_request(), timeout=TIMEOUT)
    status, _, body = testing.RestClient(running.url).request("GET", "/metrics")
    text = body.decode()
    assert status == 200
    assert ':tensorflow:serving:request_count{model_name="nope",status="NOT_FOUND"}' in text
    assert ':tensorflow:serving:request_latency_count{model_name="letters",API="Predict",entrypoint="GRPC"}' in text
    # the model run alone (RecordRuntimeLatency), and the tf.Examples of a MultiInference (RecordRequestExampleCount)
    assert ':tensorflow:serving:runtime_latency_count{model_name="letters",API="Predict",runtime="TF1"}' in text
    def example_metrics():
        text = testing.RestClient(running.url).request("GET", "/metrics")[2].decode()
        found = dict(re.findall(r':tensorflow:serving:request_example_count(?:s_bucket|_total)\{model="scorer"'
                                r'(?:,le="(\d+)")?\} (\d+)\n', text))
        return {key or "total": int(value) for key, value in found.items()}

    before = example_metrics()
    request = inference_pb2.MultiInferenceRequest()
    task = request.tasks.add(method_name="tensorflow/serving/classify")
    task.model_spec.name = "scorer"
    examples_input(request.input, 0.5, 0.25, 0.75)
    predict_stub.MultiInference(request, timeout=TIMEOUT)
    after = example_metrics()
    grew = {key: after[key] - before.get(key, 0) for key in after}
    assert grew["total"] == 3 and grew["2"] == 0 and grew["4"] == 1 and grew["16384"] == 1   # 3 examples: le="4"


# ----------------------------------------------------------------------------------- load and limits
def test_many_concurrent_predicts_with_batching(predict_stub, running):
    images = [testing.png_bytes(noise_seed=i) for i in range(64)]
    futures = [predict_stub.Predict.future(predict_request(images=[image], output_filter=["top_indices"]),
                                           timeout=TIMEOUT) for image in images]
    tops = [int(tf.make_ndarray(f.result().outputs["top_indices"])[0, 0]) for f in futures]
    assert tops == [2] * 64
    metrics = running.server.metrics
    assert metrics.input_batch_size[()].count >= 64          # every request went through the batching session


def test_oversized_request_is_refused_and_server_keeps_answering(predict_stub):
    error = rpc_error(predict_stub.Predict, predict_request(images=[b"\0" * (5 * 1024 * 1024)]))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    response = predict_stub.Predict(predict_request(), timeout=TIMEOUT)
    assert tf.make_ndarray(response.outputs["top_indices"])[0, 0] == 2


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")   # a batch thread's failure
def test_a_call_past_its_deadline_ends_deadline_exceeded_and_frees_its_thread(models_root, tmp_path, monkeypatch):
    """TF Serving runs the model with the call's deadline as its timeout: the call ends DEADLINE_EXCEEDED, counted
    so, and the server's gRPC thread (one here) is free for the next call at once, batching on or off."""
    from serving.versions import Servable

    run = Servable.run

    def slow_for_three_images(self, signature_name, arrays, outputs=None):
        if len(next(iter(arrays.values()))) == 3:
            time.sleep(3)
        return run(self, signature_name, arrays, outputs)

    monkeypatch.setattr(Servable, "run", slow_for_three_images)
    (tmp_path / "monitoring.config").write_text('prometheus_config { enable: true, path: "/metrics" }\n')
    for batching in (False, True):
        with testing.start_grpc_server(model_base_path=str(models_root / "letters"), grpc_max_threads=1,
                                       enable_batching=batching,
                                       monitoring_config_file=str(tmp_path / "monitoring.config")) as server, \
                grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as opened:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(opened)
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as caught:
                stub.Predict(predict_request(images=[testing.png_bytes(200)] * 3), timeout=0.3)
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            response = stub.Predict(predict_request(), timeout=2)     # not behind the abandoned run
            assert tf.make_ndarray(response.outputs["top_indices"])[0, 0] == 2
            assert time.monotonic() - started < 2.5
            text = testing.RestClient(server.url).request("GET", "/metrics")[2].decode()
            assert ':tensorflow:serving:request_count{model_name="letters",status="DEADLINE_EXCEEDED"} 1' in text
            assert ':tensorflow:serving:request_count{model_name="letters",status="OK"} 1' in text


def test_grpc_runs_use_grpcs_threads_and_a_queued_batch_task_past_its_deadline_is_not_run(models_root, tmp_path,
                                                                                           monkeypatch):
    from serving.versions import Servable

    run, sizes = Servable.run, []

    def slow_for_three_images(self, signature_name, arrays, outputs=None):
        size = len(next(iter(arrays.values())))
        sizes.append(size)
        if size == 3:
            time.sleep(1.5)
        return run(self, signature_name, arrays, outputs)

    monkeypatch.setattr(Servable, "run", slow_for_three_images)
    # Without batching: four calls run at once on four gRPC threads, whatever REST's pool (one thread here).
    with testing.start_grpc_server(model_base_path=str(models_root / "letters"), grpc_max_threads=4,
                                   rest_api_num_threads=1) as server, \
            grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as opened:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(opened)
        started = time.monotonic()
        calls = [stub.Predict.future(predict_request(images=[testing.png_bytes(200)] * 3), timeout=30)
                 for _ in range(4)]
        assert all(call.result().outputs for call in calls) and time.monotonic() - started < 4
    # With one batch thread: a call queued behind a slow batch whose deadline passes is dropped, not run.
    (tmp_path / "batching.config").write_text("max_batch_size { value: 3 }\nbatch_timeout_micros { value: 0 }\n"
                                              "num_batch_threads { value: 1 }\n")
    sizes.clear()
    with testing.start_grpc_server(model_base_path=str(models_root / "letters"), enable_batching=True,
                                   batching_parameters_file=str(tmp_path / "batching.config")) as server, \
            grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as opened:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(opened)
        slow = stub.Predict.future(predict_request(images=[testing.png_bytes(200)] * 3), timeout=30)
        time.sleep(0.3)   # the slow batch is running
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(predict_request(), timeout=0.3)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert slow.result().outputs
        time.sleep(0.3)
        assert [size for size in sizes if size in (1, 3)] == [3]   # warm-up aside: the dropped call never ran


# ------------------------------------------------------------------------------------------- reload
def test_handle_reload_config_request(models_root, tmp_path):
    with testing.start_grpc_server(model_base_path=str(models_root / "letters"), model_name="letters") as server, \
            grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as opened:
        models = model_service_pb2_grpc.ModelServiceStub(opened)
        config = text_format.Parse(testing.labelled_config_text(models_root / "letters", {"stable": 2}),
                                   model_server_config_pb2.ModelServerConfig())
        config.model_config_list.config.add(name="second", base_path=str(models_root / "letters"),
                                            model_platform="tensorflow")
        request = model_management_pb2.ReloadConfigRequest(config=config, metric_names=["x", "y", "x"])
        response = models.HandleReloadConfigRequest(request, timeout=TIMEOUT)
        # one entry per name, as TF Serving collects them in a map; no TF metric registry here: no increase
        assert response.status.error_code == 0
        assert [(m.name, m.int64_value_increase) for m in response.metric] == [("x", 0), ("y", 0)]
        # the added model is loaded when the call returns; the label answers at once
        status = models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
            model_spec={"name": "second"}), timeout=TIMEOUT)
        assert [(s.version, s.state) for s in status.model_version_status] == \
            [(2, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
        predictions = prediction_service_pb2_grpc.PredictionServiceStub(opened)
        response = predictions.Predict(predict_request(label="stable"), timeout=TIMEOUT)
        assert response.model_spec.version.value == 2

        config.model_config_list.config[0].version_labels["stable"] = 9   # not an available version
        error = rpc_error(models.HandleReloadConfigRequest, model_management_pb2.ReloadConfigRequest(config=config))
        assert (error.code(), error.details()) == (
            grpc.StatusCode.FAILED_PRECONDITION, "Request to assign label to version 9 of model letters, which is "
                                                 "not currently available for inference")
        # ServerCore's ValidateModelConfigList: one entry per name, absolute base paths
        config.model_config_list.config[0].version_labels["stable"] = 2
        twice = model_server_config_pb2.ModelServerConfig()
        twice.CopyFrom(config)
        twice.model_config_list.config.add().CopyFrom(config.model_config_list.config[1])
        error = rpc_error(models.HandleReloadConfigRequest, model_management_pb2.ReloadConfigRequest(config=twice))
        assert (error.code(), error.details()) == (
            grpc.StatusCode.INVALID_ARGUMENT, "Illegal to list model second multiple times in config list")
        config.model_config_list.config[1].base_path = "relative/second"
        error = rpc_error(models.HandleReloadConfigRequest, model_management_pb2.ReloadConfigRequest(config=config))
        assert (error.code(), error.details()) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "Expected model second to have an absolute path or URI; got base_path()=relative/second")
        config.model_config_list.config[1].base_path = str(models_root / "letters")
        # ValidateNoModelsChangePlatforms: a served model's platform cannot change; a new one's is unsupported
        config.model_config_list.config[1].model_platform = "onnx"
        error = rpc_error(models.HandleReloadConfigRequest, model_management_pb2.ReloadConfigRequest(config=config))
        assert (error.code(), error.details()) == (
            grpc.StatusCode.INVALID_ARGUMENT, "Illegal to change a model's platform. For model second platform was "
                                              "tensorflow and new platform requested is onnx")
        config.model_config_list.config[1].name = "third"
        error = rpc_error(models.HandleReloadConfigRequest, model_management_pb2.ReloadConfigRequest(config=config))
        assert (error.code(), error.details()) == (
            grpc.StatusCode.INVALID_ARGUMENT, "Model third requests unsupported platform onnx")
        error = rpc_error(models.HandleReloadConfigRequest, model_management_pb2.ReloadConfigRequest())
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith("ServerModelConfig type not supported by HandleReloadConfigRequest.")


def test_a_failed_reload_is_logged_as_tf_serving_logs_it(tmp_path, caplog):
    """ModelServiceImpl::HandleReloadConfigRequest logs each entry of the config (INFO) and, when it fails,
    ReloadConfig failed: <message> (ERROR); a failed reload had logged nothing."""
    from serving import config as config_lib
    from serving.grpc_api import GrpcApi
    from serving.server import Server

    class Context:
        def time_remaining(self):
            return None

    server = Server(config_lib.ServerOptions(model_name="letters", model_base_path=str(tmp_path)))
    api = GrpcApi(server.core, server.metrics, server.run_blocking, server.reload_config, server.request_logger)
    config = text_format.Parse(testing.labelled_config_text(tmp_path, {"stable": 9}),
                               model_server_config_pb2.ModelServerConfig())
    with caplog.at_level("INFO", logger="serving"):
        for request in (model_management_pb2.ReloadConfigRequest(config=config),
                        model_management_pb2.ReloadConfigRequest()):
            with pytest.raises(ServingError):
                api.handle_reload_config_request(request, Context())
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "ReloadConfig failed: Request to assign label to version 9 of model letters, which is not currently "
        "available for inference",
        "ReloadConfig failed: ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
        "ModelConfigList is currently supported"]
    assert f"\nConfig entry\n\tindex : 0\n\tpath : {tmp_path}\n\tname : letters\n\tplatform : tensorflow" in [
        r.getMessage() for r in caplog.records if r.levelname == "INFO"]


def test_a_reloaded_config_serves_until_the_config_file_poller_applies_the_file_again(models_root, tmp_path):
    """TF Serving's config file poller reloads the file at every poll (server.cc PollFilesystemAndReloadConfig): a
    HandleReloadConfigRequest config serves until the next poll, then the file's config, its text unchanged, does
    again. The poller had skipped a file whose text it had applied before, so the reloaded config had stayed until
    the file's text changed."""
    config_file = tmp_path / "models.config"
    config_file.write_text(testing.labelled_config_text(models_root / "letters", {}))   # latest 2: versions 1, 2
    with testing.start_grpc_server(model_config_file=str(config_file), model_config_file_poll_wait_seconds=0.1,
                                   file_system_poll_wait_seconds=3600) as server:   # the test polls the versions
        applied = []
        reapplied = threading.Event()
        apply_config = server.server._apply_config

        def recording(config, source):
            apply_config(config, source)
            policy = config.model_config_list.config[0].model_version_policy.WhichOneof("policy_choice")
            applied.append((source, policy))
            if source == str(config_file) and ("ReloadConfigRequest", "specific") in applied:
                reapplied.set()

        server.server._apply_config = recording
        pinned = text_format.Parse(config_file.read_text(), model_server_config_pb2.ModelServerConfig())
        pinned.model_config_list.config[0].model_version_policy.specific.versions.append(1)
        server.server.reload_config(pinned, timeout=TIMEOUT)
        assert reapplied.wait(TIMEOUT), applied
        reloaded = applied.index(("ReloadConfigRequest", "specific"))   # (the polls before it applied the file too)
        assert applied[reloaded:reloaded + 2] == [("ReloadConfigRequest", "specific"), (str(config_file), "latest")]
        server.server.core.poll()   # the loader then loads version 1 again
        manager = server.server.core.manager("letters")
        assert server.server.core.wait_for(lambda: manager.available_versions() == [1, 2] or None, TIMEOUT)
        assert manager.resolve().version == 2


@pytest.mark.parametrize("second", ["removes it", "adds it too"])
def test_config_reloads_run_one_at_a_time_waits_included(models_root, tmp_path, monkeypatch, second):
    """ServerCore::ReloadConfig holds config_mu_ through its wait for the models it adds. Applied at once, a second
    reload that removed the model the first was waiting for left the first waiting forever (DEADLINE_EXCEEDED after
    the whole deadline, or a gRPC thread held for good without one); one that added the same model answered OK
    before it had loaded."""
    from serving import versions

    (tmp_path / "slow").symlink_to(models_root / "letters")
    release = threading.Event()
    original = versions.Servable.__init__

    def slow_init(self, name, *args, **kwargs):   # the added model loads when the test says so
        if name == "slow":
            assert release.wait(60)
        original(self, name, *args, **kwargs)

    monkeypatch.setattr(versions.Servable, "__init__", slow_init)
    with testing.start_grpc_server(model_base_path=str(models_root / "letters"), model_name="letters") as server:
        base = text_format.Parse(testing.labelled_config_text(models_root / "letters", {}),
                                 model_server_config_pb2.ModelServerConfig())
        with_slow = model_server_config_pb2.ModelServerConfig()
        with_slow.CopyFrom(base)
        with_slow.model_config_list.config.add(name="slow", base_path=str(tmp_path / "slow"),
                                               model_platform="tensorflow")
        done = {}

        def reload(name, config):
            server.server.reload_config(config, timeout=TIMEOUT)
            done[name] = time.monotonic()

        first = threading.Thread(target=reload, args=("first", with_slow))
        first.start()
        deadline = time.monotonic() + 30
        while "slow" not in server.server.core.managers and time.monotonic() < deadline:
            time.sleep(0.01)
        other = threading.Thread(target=reload, args=("second", base if second == "removes it" else with_slow))
        other.start()
        other.join(0.5)
        assert other.is_alive() and not done      # the second waits for the first, which waits for its model
        release.set()
        first.join(TIMEOUT)
        other.join(TIMEOUT)
        assert set(done) == {"first", "second"} and done["first"] <= done["second"]
        assert ("slow" in server.server._served()) == (second == "adds it too")


def test_a_reload_without_a_file_system_poller_never_polls_the_models_it_adds(models_root):
    """With --file_system_poll_wait_seconds=0 TF Serving polls the versions once, at start-up (the storage path
    source's one-shot thread; a reload only updates its config): a model a reload adds is never polled, and
    ServerCore::ReloadConfig waits for it until the call's deadline. The reload's wait had polled once a second,
    loading the model."""
    with testing.start_grpc_server(model_base_path=str(models_root / "letters"), model_name="letters",
                                   file_system_poll_wait_seconds=0) as server:
        config = text_format.Parse(testing.labelled_config_text(models_root / "letters", {}),
                                   model_server_config_pb2.ModelServerConfig())
        config.model_config_list.config.add(name="second", base_path=str(models_root / "letters"),
                                            model_platform="tensorflow")
        with pytest.raises(ServingError) as caught:
            server.server.reload_config(config, timeout=1)
        assert caught.value.code == "DEADLINE_EXCEEDED"
        with pytest.raises(ServingError, match="^Could not find any versions of model second$"):
            server.server.core.manager("second").status()
        assert server.server.core.manager("letters").available_versions() == [2]


def test_a_rest_port_equal_to_the_grpc_port_serves_grpc_only_as_tf_serving_does(models_root, caplog):
    """server.cc: with --rest_api_port equal to --port the REST server is skipped (an error logged), the gRPC
    server serves; the process does not exit."""
    port = testing.free_port()
    with caplog.at_level("ERROR", logger="serving"):
        server = testing.start_server(models_root / "letters", grpc_port=port, port=port)
    try:
        assert server.server.http is None and server.port is None
        assert ("server_options.http_port cannot be same as grpc_port. Please use a different port for HTTP/REST "
                "API. Skipped exporting HTTP/REST API.") in caplog.text
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = "letters"
            status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=TIMEOUT)
        assert [s.version for s in status.model_version_status] == [2]
    finally:
        server.stop()
