"""ModelConfig.logging_config on the embedded server: REST and gRPC calls become PredictionLog records that replay
to the same answers; sampling, reloads, bad configs, and a killed server's files.

One module-scoped server (gRPC on): ``letters`` (tiny model, versions 1 and 2, labels) and ``scorer`` (classify /
regress signatures) each log to their own prefix; ``pinned`` logs nothing. Tests that change the logging config
reload it and put it back.
"""
import core  # noqa: F401  (before TensorFlow)

import logging
import math
import os
import signal
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (classification_pb2, inference_pb2, model_management_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     regression_pb2)
from tensorflow_serving.config import model_server_config_pb2

from core import configs, request_log
from serving import config as config_lib
from serving.status import ServingError
from tests.support import faults
from tests.support import serving as testing

TIMEOUT = 60


def model_config(root, letters: tuple | None, scorer: tuple | None = None) -> model_server_config_pb2.ModelServerConfig:
    """letters (labels stable=1, canary=2), scorer and pinned; ``letters``/``scorer``: (prefix, rate) or None."""
    config = text_format.Parse(testing.labelled_config_text(root / "models" / "letters", {"stable": 1, "canary": 2}),
                               model_server_config_pb2.ModelServerConfig())
    config.model_config_list.config.add(name="scorer", base_path=str(root / "scorer"), model_platform="tensorflow")
    config.model_config_list.config.add(name="pinned", base_path=str(root / "models" / "letters"),
                                        model_platform="tensorflow")
    for model, logging in zip(config.model_config_list.config, (letters, scorer)):
        if logging is not None:
            model.logging_config.log_collector_config.type = "tfrecord"
            model.logging_config.log_collector_config.filename_prefix = str(logging[0])
            model.logging_config.sampling_config.sampling_rate = logging[1]
    return config


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("request_log")
    testing.publish_version(str(root / "models" / "letters"), 1)
    testing.publish_version(str(root / "models" / "letters"), 2)
    testing.save_scorer(str(root / "scorer" / "1"))
    return root


@pytest.fixture(scope="module")
def prefixes(root):
    return {"letters": root / "logs" / "letters", "scorer": root / "logs" / "scorer"}


@pytest.fixture(scope="module")
def running(root, prefixes):
    (root / "models.config").write_text(text_format.MessageToString(
        model_config(root, (prefixes["letters"], 1.0), (prefixes["scorer"], 1.0))))
    server = testing.start_grpc_server(model_config_file=str(root / "models.config"),
                               model_config_file_poll_wait_seconds=0.2, file_system_poll_wait_seconds=0,
                               allow_version_labels_for_unavailable_models=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rest(running):
    return testing.RestClient(running.url)


def logs(prefix) -> list:
    return list(request_log.read_logs(str(prefix)))


def reload(channel, config) -> None:
    """Applies ``config`` through ModelService.HandleReloadConfigRequest (returns once applied)."""
    model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
        model_management_pb2.ReloadConfigRequest(config=config), timeout=TIMEOUT)


def reload_served(channel, root, config) -> None:
    """Applies ``config`` through HandleReloadConfigRequest and writes it to the config file the server polls: the
    poller applies the file's config at each poll after a reload, as TF Serving's does, so a reloaded config lasts
    only while the file says the same."""
    (root / "models.config").write_text(text_format.MessageToString(config))
    reload(channel, config)


def predict_images(rest, images, path="/v1/models/letters/versions/1:predict"):
    status, body = rest.post(path, {"signature_name": configs.IMAGE_SIGNATURE,
                                    "instances": [testing.b64(image) for image in images]})
    assert status == 200, body
    return body


def replay(predict_stub, record) -> predict_pb2.PredictResponse:
    return predict_stub.Predict(record.predict_log.request, timeout=TIMEOUT)


def probabilities(response) -> np.ndarray:
    return tf.make_ndarray(response.outputs[configs.PROBABILITIES_OUTPUT])


def test_rest_and_grpc_predictions_are_logged_as_predict_logs_that_replay_to_the_same_answers(rest, predict_stub, prefixes):
    before = len(logs(prefixes["letters"]))
    started = int(time.time())
    images = [testing.png_bytes(40), testing.png_bytes(220)]
    answer = predict_images(rest, images)                                              # REST, row format
    example = testing.example_bytes(testing.png_bytes(90))
    status, columnar = rest.post("/v1/models/letters/labels/canary:predict",          # REST, columnar, label
                                 {"inputs": {configs.EXAMPLES_INPUT: [testing.b64(example)]}})
    assert status == 200
    request = predict_pb2.PredictRequest()                                             # gRPC
    request.model_spec.name, request.model_spec.signature_name = "letters", configs.IMAGE_SIGNATURE
    request.inputs[configs.IMAGE_INPUT].CopyFrom(tf.make_tensor_proto([testing.png_bytes(7)]))
    grpc_answer = predict_stub.Predict(request, timeout=TIMEOUT)
    status, _ = rest.post("/v1/models/pinned:predict", {"inputs": {configs.EXAMPLES_INPUT: [testing.b64(example)]}})
    assert status == 200                                                               # not logged: no config

    new = logs(prefixes["letters"])[before:]
    assert [r.WhichOneof("log_type") for r in new] == ["predict_log"] * 3
    rest_log, columnar_log, grpc_log = new
    for record, version, signature in ((rest_log, 1, configs.IMAGE_SIGNATURE),
                                       (columnar_log, 2, configs.SERVING_DEFAULT_SIGNATURE),
                                       (grpc_log, 2, configs.IMAGE_SIGNATURE)):
        metadata = record.log_metadata
        assert (metadata.model_spec.name, metadata.model_spec.signature_name, metadata.model_spec.version.value) \
            == ("letters", signature, version)
        assert record.predict_log.response.model_spec.version.value == version
        assert metadata.sampling_config.sampling_rate == 1.0 and list(metadata.saved_model_tags) == ["serve"]
        assert started <= metadata.timestamp_secs <= time.time()
        replayed = replay(predict_stub, record)
        np.testing.assert_allclose(probabilities(replayed), probabilities(record.predict_log.response), rtol=1e-6)
    # The REST request is logged as its gRPC equivalent: the image bytes as sent, the version asked for.
    assert list(rest_log.predict_log.request.inputs[configs.IMAGE_INPUT].string_val) == images
    assert rest_log.predict_log.request.model_spec.version.value == 1
    assert columnar_log.predict_log.request.model_spec.version_label == "canary"
    np.testing.assert_allclose(probabilities(rest_log.predict_log.response),
                               [row[configs.PROBABILITIES_OUTPUT] for row in answer["predictions"]], rtol=1e-6)
    np.testing.assert_allclose(probabilities(columnar_log.predict_log.response),
                               columnar["outputs"], rtol=1e-6)
    assert grpc_log.predict_log.response == grpc_answer
    assert grpc_log.predict_log.request == request


def test_classify_regress_and_multi_inference_are_logged_with_their_kinds(rest, predict_stub, prefixes):
    before = len(logs(prefixes["scorer"]))
    status, answer = rest.post("/v1/models/scorer:classify", {"context": {"tag": "bonus"},
                                                              "examples": [{"x": 0.25}, {"x": 1.0}]})
    assert status == 200
    examples = [example_pb2.Example() for _ in range(2)]
    for example, x in zip(examples, (0.5, 2.0)):
        example.features.feature["x"].float_list.value.append(x)
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name, regress.model_spec.signature_name = "scorer", "regress_x"
    regress.input.example_list.examples.extend(examples)
    predict_stub.Regress(regress, timeout=TIMEOUT)
    multi = inference_pb2.MultiInferenceRequest()
    for signature, method in (("serving_default", "tensorflow/serving/classify"),
                              ("regress_x", "tensorflow/serving/regress")):
        task = multi.tasks.add(method_name=method)
        task.model_spec.name, task.model_spec.signature_name = "scorer", signature
    multi.input.example_list.examples.extend(examples)
    predict_stub.MultiInference(multi, timeout=TIMEOUT)

    classify_log, regress_log, multi_log = logs(prefixes["scorer"])[before:]
    assert classify_log.WhichOneof("log_type") == "classify_log"
    assert regress_log.WhichOneof("log_type") == "regress_log" and regress_log.regress_log.request == regress
    assert multi_log.WhichOneof("log_type") == "multi_inference_log"
    assert multi_log.multi_inference_log.request == multi
    assert multi_log.log_metadata.model_spec.signature_name == "serving_default"
    # The REST classify replays (its context merged into each example) to the REST answer.
    replayed = predict_stub.Classify(classify_log.classify_log.request, timeout=TIMEOUT)
    assert replayed.result == classify_log.classify_log.response.result
    assert [[[c.label, pytest.approx(c.score)] for c in row.classes]
            for row in replayed.result.classifications] == answer["results"]
    assert isinstance(classify_log.classify_log.request, classification_pb2.ClassificationRequest)


def test_sampling_rates_0_and_one_half_and_a_reload_to_a_new_prefix(rest, channel, root, prefixes):
    images = [testing.png_bytes(100)]
    try:
        reload_served(channel, root, model_config(root, (prefixes["letters"], 0.0), (prefixes["scorer"], 1.0)))
        before = len(logs(prefixes["letters"]))
        for _ in range(20):
            predict_images(rest, images)
        assert len(logs(prefixes["letters"])) == before

        half = root / "logs" / "half"
        config = model_config(root, (half, 0.5), (prefixes["scorer"], 1.0))
        config.model_config_list.config[0].logging_config.sampling_config.attributes = 1   # ATTR_REQUEST_ORIGIN
        reload_served(channel, root, config)
        n = 200
        for _ in range(n):
            predict_images(rest, images)
        taken = len(logs(half))
        spread = 5 * math.sqrt(n * 0.25)
        assert n / 2 - spread <= taken <= n / 2 + spread
        assert {r.log_metadata.sampling_config.sampling_rate for r in logs(half)} == {0.5}
        # the whole SamplingConfig is copied into each record, as RequestLogger::Log copies it
        assert {r.log_metadata.sampling_config.attributes for r in logs(half)} == {1}
    finally:
        reload_served(channel, root, model_config(root, (prefixes["letters"], 1.0), (prefixes["scorer"], 1.0)))


def wait_until_logged(rest, prefix) -> None:
    """Sends predictions until one is logged under ``prefix`` (the config poller applied a new file)."""
    before = len(logs(prefix))
    deadline = time.monotonic() + TIMEOUT
    while len(logs(prefix)) == before:
        assert time.monotonic() < deadline, f"nothing was logged under {prefix}"
        predict_images(rest, [testing.png_bytes(3)])
        time.sleep(0.1)


def test_a_changed_config_file_moves_the_log(rest, root, prefixes):
    moved = root / "logs" / "moved"
    config_file = root / "models.config"
    original = config_file.read_text()
    try:
        config_file.write_text(text_format.MessageToString(model_config(root, (moved, 1.0), (prefixes["scorer"], 1.0))))
        wait_until_logged(rest, moved)
    finally:
        config_file.write_text(original)
        wait_until_logged(rest, prefixes["letters"])


BAD_LOGGING = [   # LogCollector::Create's NOT_FOUND; the rest INVALID_ARGUMENT, as open-source TF Serving refuses them
    ('type: "kafka" filename_prefix: "/tmp/x"', 1.0, "NOT_FOUND",
     "Cannot find LogCollector::Factory for type: 'kafka'"),
    ('filename_prefix: "/tmp/x"', 1.0, "NOT_FOUND", "Cannot find LogCollector::Factory for type: ''"),
    ('type: "tfrecord"', 1.0, "INVALID_ARGUMENT", "filename_prefix is empty"),
    ('type: "tfrecord" filename_prefix: "/tmp/x"', 1.5, "INVALID_ARGUMENT",
     "sampling_rate must be a number between 0 and 1"),
    ('type: "tfrecord" filename_prefix: "s3://b/req"', 1.0, "INVALID_ARGUMENT",
     "filename_prefix 's3://b/req' is a URL"),
]


def bad_config_text(collector: str, rate: float) -> str:
    return ("model_config_list { config { name: 'letters' base_path: '/m' model_platform: 'tensorflow' "
            f"logging_config {{ log_collector_config {{ {collector} }} sampling_config {{ sampling_rate: {rate} }} "
            "} } }")


@pytest.mark.parametrize("collector, rate, code, message", BAD_LOGGING)
def test_bad_logging_configs_are_refused_naming_the_file(collector, rate, code, message):
    """With a status code, printed on a failed start (they had been ValueErrors, printed without one)."""
    with pytest.raises(ServingError) as caught:
        config_lib.parse_model_server_config(bad_config_text(collector, rate), "x.config")
    assert caught.value.code == code
    assert str(caught.value).startswith("x.config: model letters: logging_config: ") and message in str(caught.value)


def test_a_bad_logging_config_stops_the_start_and_a_reload_keeps_the_current_one(tmp_path, channel, rest, prefixes):
    from serving.config import ServerOptions
    from serving.server import Server

    path = tmp_path / "bad.config"
    path.write_text(bad_config_text('type: "kafka" filename_prefix: "/tmp/x"', 1.0))
    with pytest.raises(ServingError, match=f"^{path}: model letters: logging_config: Cannot find LogCollector"):
        Server(ServerOptions(model_config_file=str(path), rest_api_port=0)).start()
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    config = text_format.Parse(bad_config_text(f'type: "tfrecord" filename_prefix: "{blocked}/sub/req"', 1.0),
                               model_server_config_pb2.ModelServerConfig())
    with pytest.raises(grpc.RpcError) as caught:
        reload(channel, config)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ReloadConfigRequest: model letters: logging_config: cannot write under" in caught.value.details()
    before = len(logs(prefixes["letters"]))
    predict_images(rest, [testing.png_bytes(1)])   # models and logging unchanged
    assert len(logs(prefixes["letters"])) == before + 1


def test_a_log_folder_that_cannot_be_written_refuses_the_config(root, tmp_path, monkeypatch):
    """As one that cannot be created: the config is not applied (it had been, and each request logged an ERROR
    and wrote nothing)."""
    from serving.request_logging import ServerRequestLogger

    folder = tmp_path / "ro"
    folder.mkdir()
    faults.read_only_folder(monkeypatch, folder)
    logger = ServerRequestLogger()
    with pytest.raises(ServingError) as caught:
        logger.prepare(model_config(root, (folder / "req", 1.0)), "x.config")
    assert caught.value.code == "INVALID_ARGUMENT"
    assert str(caught.value) == (f"x.config: model letters: logging_config: cannot write under '{folder}/req': "
                                 f"[Errno 30] cannot create a file in this folder (Read-only file system): '{folder}'")


def test_a_filename_prefix_naming_a_folder_is_warned_of_and_a_trailing_slash_writes_inside_it(tmp_path, caplog):
    """A mounted volume's path given as the prefix had been taken without a word, the files going beside the
    folder; with "/" at its end the files go inside it."""
    from serving.request_logging import ServerRequestLogger

    folder = tmp_path / "requests"
    folder.mkdir()
    caplog.set_level(logging.WARNING)
    beside = [("WARNING", f"x.config: model letters: logging_config: filename_prefix '{folder}' names a folder: the "
                          f"request log files go beside it, in {tmp_path}, named requests-<UTC time>-<n>.tfrecord; "
                          "end it with '/' to write them inside the folder")]
    for prefix, inside, expected in ((str(folder), tmp_path, beside), (f"{folder}/", folder, [])):
        caplog.clear()
        writers, _ = ServerRequestLogger().prepare(model_config(tmp_path, (prefix, 1.0)), "x.config")
        path = writers["letters"][0].write(b"record")
        writers["letters"][0].close()
        assert os.path.dirname(path) == str(inside)
        assert [(r.levelname, r.getMessage()) for r in caplog.records] == expected


def test_a_url_filename_prefix_is_refused_at_start_and_on_a_reload_and_nothing_is_written(
        root, tmp_path, monkeypatch, channel, rest, prefixes):
    """gs://… had been taken for a relative path: the logs went to ./gs:/… where the server ran, silently."""
    from serving.config import ServerOptions
    from serving.server import Server

    monkeypatch.chdir(tmp_path)
    refusal = ("model letters: logging_config: log_collector_config.filename_prefix 'gs://letters-logs/requests' "
               "is a URL: this server writes request logs to local files only; mount a volume")
    config = model_config(root, ("gs://letters-logs/requests", 1.0))
    path = tmp_path / "url.config"
    path.write_text(text_format.MessageToString(config))
    server = Server(ServerOptions(model_config_file=str(path), rest_api_port=0,
                                  allow_version_labels_for_unavailable_models=True))
    try:
        server.start()
    except ServingError as exc:
        assert str(exc).startswith(f"{path}: {refusal}") and "\n" not in str(exc)
    else:
        server.stop()
        pytest.fail("a server with a gs:// filename_prefix started")
    with pytest.raises(grpc.RpcError) as caught:
        reload(channel, config)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"ReloadConfigRequest: {refusal}")
    assert sorted(os.listdir(tmp_path)) == ["url.config"]   # no ./gs:/letters-logs folder
    before = len(logs(prefixes["letters"]))
    predict_images(rest, [testing.png_bytes(1)])   # models and logging unchanged
    assert len(logs(prefixes["letters"])) == before + 1


def test_a_killed_server_leaves_files_whose_complete_records_all_parse(root, tmp_path):
    prefix = tmp_path / "killed" / "req"
    config = model_config(root, (prefix, 1.0))
    (tmp_path / "models.config").write_text(text_format.MessageToString(config))
    server = testing.start_server(subprocess=True, model_config_file=str(tmp_path / "models.config"),
                                  allow_version_labels_for_unavailable_models=True)
    try:
        rest = testing.RestClient(server.url)
        sent = [testing.png_bytes(i) for i in range(25)]
        for image in sent:
            predict_images(rest, [image])
    finally:
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(30)
    files = request_log.log_files(str(prefix))
    assert files
    logged = [r.predict_log.request.inputs[configs.IMAGE_INPUT].string_val[0]
              for r in request_log.read_logs(str(prefix))]
    assert logged == sent   # every answered request was in the file before its answer left
    assert sum(1 for path in files for _ in tf.data.TFRecordDataset(path)) == len(sent)



def test_each_logged_record_is_counted_by_the_status_of_its_writing(root, tmp_path, monkeypatch):
    """request_log_count{model_name,status_code} (RequestLogger::Log): OK for a record written, the errno's
    code for one the disk refused (a full disk: RESOURCE_EXHAUSTED); a call not sampled is not counted."""
    import errno

    from serving.metrics import Metrics
    from serving.request_logging import ServerRequestLogger
    from serving.request_logging import model_spec as spec_of

    metrics = Metrics()
    logger = ServerRequestLogger(metrics)
    config = model_config(root, (tmp_path / "on" / "req", 1.0), (tmp_path / "off" / "req", 0.0))
    logger.apply(logger.prepare(config, "x.config"))
    message = predict_pb2.PredictRequest(), predict_pb2.PredictResponse()
    logger.log("predict", spec_of("letters", "serving_default", 1), lambda: message)
    logger.log("predict", spec_of("scorer", "serving_default", 1), lambda: message)   # rate 0: not sampled
    writer = logger._writers["letters"][0]

    def full_disk(record):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(writer, "write", full_disk)
    logger.log("predict", spec_of("letters", "serving_default", 1), lambda: message)
    logger.close()
    text = metrics.render()
    assert ':tensorflow:serving:request_log_count{model_name="letters",status_code="OK"} 1\n' in text
    assert ':tensorflow:serving:request_log_count{model_name="letters",status_code="RESOURCE_EXHAUSTED"} 1\n' in text
    assert 'model_name="scorer"' not in text


def test_per_task_sampling_rates_of_tf_serving_2_20_are_read_and_the_first_matching_one_applies(root, tmp_path):
    """2.20.0's SamplingConfig.per_task_sampling_configs (the wheel's 2.16 message has no such field): a file using
    it parses; the first rule naming no data centre and no task index (this server has neither) gives the rate, as
    in RequestLogger's constructor; the records carry the whole sampling config with the rate applied."""
    from serving import protos

    prefix = tmp_path / "logs" / "req"
    text = text_format.MessageToString(model_config(root, None)).replace(
        'name: "letters"', f'''name: "letters" logging_config {{
          log_collector_config {{ type: "tfrecord" filename_prefix: "{prefix}" }}
          sampling_config {{ sampling_rate: 0.0
            per_task_sampling_configs {{ dc: "aa" sampling_rate: 0.0 }}
            per_task_sampling_configs {{ task_index: 0 sampling_rate: 0.0 }}
            per_task_sampling_configs {{ sampling_rate: 1.0 }} }} }}''', 1)
    config = config_lib.parse_model_server_config(text, "x.config")
    record = _log_one_predict(config, prefix)
    sampling = protos.SamplingConfig.FromString(record.log_metadata.sampling_config.SerializeToString())
    assert sampling.sampling_rate == 1.0 and len(sampling.per_task_sampling_configs) == 3
    bad = text.replace("per_task_sampling_configs { sampling_rate: 1.0", "per_task_sampling_configs { sampling_rate: 2")
    assert bad != text
    with pytest.raises(ServingError, match=r"per_task_sampling_configs\[2\]\.sampling_rate"):
        config_lib.parse_model_server_config(bad, "x.config")


def _log_one_predict(config, prefix):
    """The one record a request logger set up from ``config`` writes under ``prefix`` for one Predict."""
    from serving.request_logging import ServerRequestLogger
    from serving.request_logging import model_spec as spec_of

    logger = ServerRequestLogger()
    logger.apply(logger.prepare(config, "x.config"))
    message = predict_pb2.PredictRequest(), predict_pb2.PredictResponse()
    logger.log("predict", spec_of("letters", "serving_default", 1), lambda: message)
    logger.close()
    (record,) = logs(prefix)
    return record


def test_custom_logging_config_of_tf_serving_2_20_is_accepted_and_otherwise_ignored(root, tmp_path):
    """2.20.0's LoggingConfig.custom_logging_config (a google.protobuf.Any for a logger's own settings; the wheel's
    2.16 message has no such field): a file using it parses and keeps it, and the model logs as it would without it
    (this server's logger reads nothing from it)."""
    from google.protobuf import wrappers_pb2
    from serving import protos

    prefix = tmp_path / "logs" / "req"
    text = text_format.MessageToString(model_config(root, None)).replace(
        'name: "letters"', f'''name: "letters" logging_config {{
          log_collector_config {{ type: "tfrecord" filename_prefix: "{prefix}" }}
          sampling_config {{ sampling_rate: 1.0 }}
          custom_logging_config {{ [type.googleapis.com/google.protobuf.StringValue] {{ value: "mine" }} }} }}''', 1)
    config = config_lib.parse_model_server_config(text, "x.config")
    (custom,) = [model.logging_config.custom_logging_config
                 for model in protos.ModelServerConfig.FromString(config.SerializeToString()).model_config_list.config
                 if model.logging_config.HasField("custom_logging_config")]
    assert custom.type_url == "type.googleapis.com/google.protobuf.StringValue"
    assert wrappers_pb2.StringValue.FromString(custom.value).value == "mine"
    assert "custom_logging_config" in protos.config_text(config)
    record = _log_one_predict(config, prefix)
    assert record.log_metadata.sampling_config.sampling_rate == 1.0
