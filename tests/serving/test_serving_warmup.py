"""Warm-up records (assets.extra/tf_serving_warmup_requests) are replayed on load, as TF Serving does."""
import os
import re
import shutil
import time

import numpy as np
import pytest

from core import configs
from core import warmup
from serving import versions
from tests.support import serving as testing
from serving.status import ServingError


def tiny_model(path) -> str:
    """The tiny letters model at ``path``: a copy of the one built once per process (testing.tiny_model_dir)."""
    shutil.copytree(testing.tiny_model_dir(1), str(path))
    return str(path)


def model_with_warmup(tmp_path, requests):
    path = tiny_model(tmp_path / "1")
    warmup.write_requests(path, configs.MODEL_NAME, requests)
    return path


def test_records_round_trip_and_replay_on_load(tmp_path):
    image = np.array([testing.png_bytes(90)], dtype=object)
    example = np.array([testing.example_bytes(testing.png_bytes(90))], dtype=object)
    path = model_with_warmup(tmp_path, [(configs.IMAGE_SIGNATURE, {configs.IMAGE_INPUT: image}),
                                        (configs.SERVING_DEFAULT_SIGNATURE, {configs.EXAMPLES_INPUT: example})])
    requests = warmup.read_requests(path)
    assert [name for name, _ in requests] == [configs.IMAGE_SIGNATURE, configs.SERVING_DEFAULT_SIGNATURE]
    assert requests[0][1][configs.IMAGE_INPUT].tolist() == image.tolist()
    servable = versions.Servable(configs.MODEL_NAME, 1, path)
    assert servable.warmup_requests == 2


def test_a_model_without_warmup_loads_without_replay(tmp_path):
    servable = versions.Servable(configs.MODEL_NAME, 1, tiny_model(tmp_path / "1"))
    assert servable.warmup_requests == 0


def test_a_failing_warmup_request_fails_the_load(tmp_path):
    path = model_with_warmup(tmp_path, [(configs.IMAGE_SIGNATURE,
                                         {configs.IMAGE_INPUT: np.array([b"not an image"], dtype=object)})])
    with pytest.raises(ServingError):
        versions.Servable(configs.MODEL_NAME, 1, path)


def write_logs(path, logs):
    import tensorflow as tf
    full = os.path.join(path, warmup.WARMUP_FILE)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with tf.io.TFRecordWriter(full) as writer:
        for log in logs:
            writer.write(log if isinstance(log, bytes) else log.SerializeToString())
    return path


def scorer_with(tmp_path, logs):
    path = str(tmp_path / "1")
    testing.save_scorer(path)
    return write_logs(path, logs)


def example_input(x: float, tag: bytes = b""):
    import tensorflow as tf
    from tensorflow_serving.apis import input_pb2
    example = tf.train.Example(features=tf.train.Features(feature={
        "x": tf.train.Feature(float_list=tf.train.FloatList(value=[x])),
        "tag": tf.train.Feature(bytes_list=tf.train.BytesList(value=[tag]))}))
    return input_pb2.Input(example_list=input_pb2.ExampleList(examples=[example]))


def classify_log(signature="serving_default"):
    from tensorflow_serving.apis import classification_pb2, model_pb2, prediction_log_pb2
    request = classification_pb2.ClassificationRequest(model_spec=model_pb2.ModelSpec(signature_name=signature),
                                                       input=example_input(0.25))
    return prediction_log_pb2.PredictionLog(classify_log=prediction_log_pb2.ClassifyLog(request=request))


def test_classify_regress_and_multi_inference_records_run_as_their_requests(tmp_path):
    from tensorflow_serving.apis import (inference_pb2, model_pb2, prediction_log_pb2, regression_pb2)
    regress = regression_pb2.RegressionRequest(model_spec=model_pb2.ModelSpec(signature_name="regress_x"),
                                               input=example_input(1.5, b"bonus"))
    multi = inference_pb2.MultiInferenceRequest(input=example_input(0.5), tasks=[
        inference_pb2.InferenceTask(model_spec=model_pb2.ModelSpec(name="m"),
                                    method_name="tensorflow/serving/classify"),
        inference_pb2.InferenceTask(model_spec=model_pb2.ModelSpec(name="m", signature_name="regress_x"),
                                    method_name="tensorflow/serving/regress")])
    path = scorer_with(tmp_path, [classify_log(),
                                  prediction_log_pb2.PredictionLog(regress_log=prediction_log_pb2.RegressLog(
                                      request=regress)),
                                  prediction_log_pb2.PredictionLog(
                                      multi_inference_log=prediction_log_pb2.MultiInferenceLog(request=multi)),
                                  prediction_log_pb2.PredictionLog()])                  # no request: runs nothing
    assert versions.Servable("m", 1, path).warmup_requests == 4


@pytest.mark.parametrize("case, code, message", [
    ("classify with a signature that cannot classify", "INVALID_ARGUMENT", "No signature was found with the name"),
    ("a session-run record", "UNIMPLEMENTED", "Unsupported log_type for warmup: 5"),
    ("a streamed predict record", "UNIMPLEMENTED", "Unsupported log_type for warmup: 7"),
    ("1001 records", "INVALID_ARGUMENT", "Number of warmup records exceeds the maximum (1000) at "),
    ("not a PredictionLog", "INVALID_ARGUMENT", "Failed to parse warmup record: "),
])
def test_records_tf_serving_refuses_fail_the_load(tmp_path, case, code, message):
    """TF Serving fails the load on these (saved_model_warmup.cc, saved_model_warmup_util.cc); they had been
    skipped, or cut at 1000 without a word."""
    from tensorflow_serving.apis import prediction_log_pb2
    logs = {"classify with a signature that cannot classify": lambda: [classify_log("no_such_signature")],
            "a session-run record": lambda: [prediction_log_pb2.PredictionLog(
                session_run_log=prediction_log_pb2.SessionRunLog())],
            "a streamed predict record": lambda: [prediction_log_pb2.PredictionLog(
                predict_streamed_log=prediction_log_pb2.PredictStreamedLog())],
            "1001 records": lambda: [classify_log()] * 1001,
            "not a PredictionLog": lambda: [b"\xff\xff\xff not a proto"]}[case]()
    path = scorer_with(tmp_path, logs)
    with pytest.raises(ServingError) as raised:
        versions.Servable("m", 1, path)
    assert raised.value.code == code and message in raised.value.message, raised.value.message


def multi_inference_log(tasks, with_input=True):
    """A multi_inference_log record: ``tasks`` are (model name, signature name, method) triples."""
    from tensorflow_serving.apis import inference_pb2, model_pb2, prediction_log_pb2
    request = inference_pb2.MultiInferenceRequest(tasks=[
        inference_pb2.InferenceTask(model_spec=model_pb2.ModelSpec(name=name, signature_name=signature),
                                    method_name=f"tensorflow/serving/{method}") for name, signature, method in tasks])
    if with_input:
        request.input.CopyFrom(example_input(0.5))
    return prediction_log_pb2.PredictionLog(multi_inference_log=prediction_log_pb2.MultiInferenceLog(request=request))


@pytest.mark.parametrize("tasks, with_input, message", [
    ([("", "serving_default", "classify")], True, "Found ModelSpec with an empty model name."),
    ([("m", "serving_default", "classify"), ("other", "regress_x", "regress")], True,
     "All ModelSpecs in a MultiInferenceRequest must access the same model name."),
    ([("m", "serving_default", "classify"), ("m", "", "classify")], True,
     "Duplicate evaluation of signature: serving_default"),
    ([("m", "nope", "predict")], True, "Requested signature not found in model graph: nope"),
    ([], False, "Input is empty."),
    ([], True, "Must specify at least one target to fetch or execute."),
], ids=["empty model name", "two models", "a signature twice", "unknown signature", "no tasks, no input",
        "no tasks"])
def test_multi_inference_records_fail_the_load_as_the_grpc_call_fails(tmp_path, tasks, with_input, message):
    """A multi_inference_log record runs as TF Serving's RunMultiInference (multi_inference.cc), through the gRPC
    MultiInference call's own checks; these records had loaded, the model names and duplicate signatures unchecked
    and a record without tasks running nothing."""
    path = scorer_with(tmp_path, [multi_inference_log(tasks, with_input)])
    with pytest.raises(ServingError) as raised:
        versions.Servable("m", 1, path)
    assert (raised.value.code, raised.value.message) == ("INVALID_ARGUMENT", message)


def test_a_warmup_file_that_is_not_tfrecords_fails_the_load(tmp_path):
    path = str(tmp_path / "1")
    testing.save_scorer(path)
    os.makedirs(os.path.join(path, "assets.extra"))
    with open(os.path.join(path, warmup.WARMUP_FILE), "wb") as handle:
        handle.write(b"this is not a TFRecord file at all, just some bytes")
    with pytest.raises(ServingError) as raised:
        versions.Servable("m", 1, path)
    assert raised.value.code == "DATA_LOSS"
    assert raised.value.message.endswith(". Please verify your warmup data is in TFRecord format.")
    assert raised.value.message.startswith("corrupted record at 0")      # the record reader's words alone
    assert "function_node" not in raised.value.message and "[Op:" not in raised.value.message


def predict_log(signature: str = configs.IMAGE_SIGNATURE, inputs=None, output_filter=()):
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    if inputs is None:
        inputs = {configs.IMAGE_INPUT: np.array([testing.png_bytes(90)], dtype=object)}
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(signature_name=signature),
                                         output_filter=list(output_filter))
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))


@pytest.mark.parametrize("log, code, message", [
    (lambda: predict_log(output_filter=["nosuch"]), "INVALID_ARGUMENT", "output tensor alias not found in signature: "
                                                                         "nosuch"),
    (lambda: predict_log("nope"), "FAILED_PRECONDITION", 'Serving signature key "nope" not found.'),
    (lambda: predict_log(inputs={configs.IMAGE_INPUT: np.array([b"x"], dtype=object),
                                 "foo": np.array([1.0], np.float32)}),
     "INVALID_ARGUMENT", "input size does not match signature: 2!=1"),
    (lambda: predict_log(inputs={configs.IMAGE_INPUT: np.array([1.5], np.float32)}),
     "INVALID_ARGUMENT", "Expects arg[0] to be string but float is provided"),
])
def test_a_predict_record_is_checked_as_its_request_would_be(tmp_path, log, code, message):
    """RunWarmupRequest sends a predict_log through RunPredict (predict_util.cc): its signature, inputs, output
    filter and feed types are checked, so a record the Predict API would refuse fails the load."""
    path = write_logs(tiny_model(tmp_path / "1"), [log()])
    with pytest.raises(ServingError) as raised:
        versions.Servable(configs.MODEL_NAME, 1, path)
    assert raised.value.code == code and message in raised.value.message, raised.value.message
    good = write_logs(tiny_model(tmp_path / "2"), [predict_log()])
    assert versions.Servable(configs.MODEL_NAME, 2, good).warmup_requests == 1


def test_warmup_shows_in_the_metrics_as_tf_servings_does(tmp_path):
    """RunSavedModelWarmup: model_warmup_latency and model_warmup_records_read by the version's folder and status;
    each record's run is a runtime_latency sample of its request's model name and API (RunPredict)."""
    from serving.metrics import Metrics
    metrics = Metrics()
    path = write_logs(tiny_model(tmp_path / "1"), [predict_log(), predict_log()])
    assert versions.Servable(configs.MODEL_NAME, 1, path, metrics).warmup_requests == 2
    text = metrics.render()
    labels = f'model_path="{path}",status="OK"'
    assert f":tensorflow:serving:model_warmup_records_read{{{labels}}} 2\n" in text
    assert f":tensorflow:serving:model_warmup_latency_count{{{labels}}} 1\n" in text
    assert ':tensorflow:serving:runtime_latency_count{model_name="",API="Predict",runtime="TF1"} 2\n' in text

    bad = str(tmp_path / "2")
    testing.save_scorer(bad)
    os.makedirs(os.path.join(bad, "assets.extra"))
    with open(os.path.join(bad, warmup.WARMUP_FILE), "wb") as handle:
        handle.write(b"this is not a TFRecord file at all, just some bytes")
    with pytest.raises(ServingError):
        versions.Servable("m", 2, bad, metrics)
    assert re.search(rf':tensorflow:serving:model_warmup_records_read\{{model_path="{re.escape(bad)}",'
                     r'status="DATA_LOSS: corrupted record at 0[^"]*"\} 0\n', metrics.render())


def test_every_error_reading_the_warmup_file_shows_in_the_metrics_and_a_record_that_fails_does_not(tmp_path):
    """RunSavedModelWarmup records model_warmup_latency with the status of reading the file, whatever it is (a
    warm-up file that is a folder: FAILED_PRECONDITION; only DATA_LOSS had been recorded); a record that does not
    parse or fails to run ends the load before the metric (saved_model_warmup_util.cc, one warm-up thread)."""
    from serving.metrics import Metrics
    metrics = Metrics()
    folder = str(tmp_path / "1")
    testing.save_scorer(folder)
    os.makedirs(os.path.join(folder, warmup.WARMUP_FILE))
    with pytest.raises(ServingError) as raised:
        versions.Servable("m", 1, folder, metrics)
    status = f"FAILED_PRECONDITION: {os.path.join(folder, warmup.WARMUP_FILE)}; Is a directory"
    assert raised.value.to_string() == status
    labels = f'model_path="{folder}",status="{status}"'
    assert f":tensorflow:serving:model_warmup_latency_count{{{labels}}} 1\n" in metrics.render()

    unparsed = write_logs(tiny_model(tmp_path / "2"), [b"not a PredictionLog"])
    failing = write_logs(tiny_model(tmp_path / "3"), [predict_log("nope")])
    for version, path in ((2, unparsed), (3, failing)):
        with pytest.raises(ServingError):
            versions.Servable(configs.MODEL_NAME, version, path, metrics)
        assert f'model_path="{path}"' not in metrics.render()


def test_with_batching_the_records_go_through_the_batch_queue_as_in_tf_serving(tmp_path):
    """TF Serving warms up the BatchingSession that wraps the model's session: its batching_session metrics count
    the records. A version whose warm-up fails leaves no batch queue behind."""
    base = tmp_path / "m"
    write_logs(tiny_model(base / "1"), [predict_log(), predict_log()])
    with testing.start_server(str(base), "m", enable_batching=True, max_num_load_retries=0,
                              file_system_poll_wait_seconds=0.2) as server:
        text = server.server.metrics.render()
        assert ":tensorflow:serving:batching_session:wrapped_run_count{} 2\n" in text
        assert ":tensorflow:serving:batching_session:input_batch_size_count{} 2\n" in text
        assert ':tensorflow:serving:runtime_latency_count{model_name="",API="Predict",runtime="TF1"} 2\n' in text
        write_logs(tiny_model(tmp_path / "staged"), [
            predict_log(), predict_log(inputs={configs.IMAGE_INPUT: np.array([b"not an image"], dtype=object)})])
        os.rename(tmp_path / "staged", base / "2")   # the version appears whole, its warm-up file in it
        manager, deadline = server.server.core.manager("m"), time.monotonic() + 60
        while getattr(manager.records.get(2), "state", None) != versions.State.END:
            assert time.monotonic() < deadline, manager.records
            time.sleep(0.1)
        (kept,) = manager.servables[1].batchers.values()
        assert [queue for queue in server.server.scheduler._queues if not queue.closed] == [kept]


def test_a_predict_record_with_an_output_filter_is_batched_for_its_outputs_alone(tmp_path):
    """RunPredict runs a record's filtered outputs only, and the batching session splits only them: a scalar output
    the record does not ask for does not fail the warm-up (it had failed the load, Batched output tensor has 0
    dimensions)."""
    base = tmp_path / "shapes"
    testing.save_shapes(str(base / "1"))
    write_logs(str(base / "1"), [predict_log("scal", {"x": np.array([1.0, 2.0], np.float32)}, output_filter=["y"])])
    with testing.start_server(str(base), "shapes", enable_batching=True, max_num_load_retries=0) as server:
        assert ":tensorflow:serving:batching_session:wrapped_run_count{} 1\n" in server.server.metrics.render()


def test_with_max_enqueued_batches_0_the_records_are_queued_as_in_tf_serving(tmp_path):
    """TensorFlow's batch scheduler takes max_enqueued_batches 0 as 1, so the version warms up and loads; each
    record had been refused as a full queue, failing the load."""
    base = tmp_path / "m"
    write_logs(tiny_model(base / "1"), [predict_log()])
    parameters = tmp_path / "batching.config"
    parameters.write_text("max_enqueued_batches { value: 0 }\nnum_batch_threads { value: 1 }\n")
    with testing.start_server(str(base), "m", enable_batching=True, batching_parameters_file=str(parameters),
                              max_num_load_retries=0, file_system_poll_wait_seconds=0.2) as server:
        assert ":tensorflow:serving:batching_session:wrapped_run_count{} 1\n" in server.server.metrics.render()
