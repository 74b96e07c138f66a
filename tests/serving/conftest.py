"""Fixtures for the serving tests: tiny letters models on disk and one shared embedded server."""
import core  # noqa: F401  (before TensorFlow)

import os

import pytest

from tests.support import serving as testing



@pytest.fixture(scope="session")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    letters = root / "letters"
    testing.publish_version(str(letters), 1)
    testing.publish_version(str(letters), 2)
    os.makedirs(letters / "not-a-version")
    return root


@pytest.fixture(scope="session")
def server(models_root, tmp_path_factory):
    config_dir = tmp_path_factory.mktemp("config")
    model_config = config_dir / "models.config"
    # Labels stable/canary as in serving/deploy, a "ghost" label on a version that never exists, and a second
    # model pinned to version 1.
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2
    config = text_format.Parse(
        testing.labelled_config_text(models_root / "letters", {"stable": 1, "canary": 2, "ghost": 9}),
        model_server_config_pb2.ModelServerConfig())
    pinned = config.model_config_list.config.add(name="pinned", base_path=str(models_root / "letters"),
                                                  model_platform="tensorflow")
    pinned.model_version_policy.specific.versions.append(1)
    model_config.write_text(text_format.MessageToString(config))
    monitoring = config_dir / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n')
    batching = config_dir / "batching.config"
    batching.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 2000 }\n"
                        "num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 100 }\n")
    running = testing.start_server(
        model_config_file=str(model_config), allow_version_labels_for_unavailable_models=True,
        monitoring_config_file=str(monitoring), enable_batching=True, batching_parameters_file=str(batching),
        rest_api_enable_cors_support=False, max_request_bytes=4 * 1024 * 1024)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def client(server):
    return testing.RestClient(server.url)


@pytest.fixture(scope="session")
def png():
    return testing.png_bytes(200)


@pytest.fixture(scope="module")
def channel(running):
    """A gRPC channel to the module's ``running`` server (started by ``testing.start_grpc_server``)."""
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{running.server.grpc_port}") as opened:
        grpc.channel_ready_future(opened).result(timeout=60)
        yield opened


@pytest.fixture(scope="module")
def predict_stub(channel):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    return prediction_service_pb2_grpc.PredictionServiceStub(channel)
