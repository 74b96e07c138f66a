"""Dynamic batching (measured through the batcher's metrics) and graceful shutdown."""
import concurrent.futures
import re
import signal
import threading
import time

from core import configs
from tests.support import serving as testing
from tests.support.serving import b64


def batching_file(tmp_path, max_batch_size, timeout_micros):
    path = tmp_path / "batching.config"
    path.write_text(f"max_batch_size {{ value: {max_batch_size} }}\nbatch_timeout_micros {{ value: {timeout_micros} }}\n"
                    "num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 100 }\n")
    return str(path)


def test_concurrent_requests_are_batched(tmp_path):
    base = str(tmp_path / "letters")
    testing.publish_version(base, 1)
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }\n")
    with testing.start_server(base, enable_batching=True, batching_parameters_file=batching_file(tmp_path, 8, 20000),
                              monitoring_config_file=str(monitoring)) as server:
        client = testing.RestClient(server.url)
        body = {"signature_name": configs.IMAGE_SIGNATURE, "instances": [b64(testing.png_bytes(7))]}
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda _: client.post("/v1/models/letters:predict", body), range(32)))
        assert all(status == 200 for status, _ in results)
        metrics = client.request("GET", "/monitoring/prometheus/metrics")[2].decode()
        labels = '{model_name="letters",op_name="predict_images"}'
        name = ":tensorflow:serving:batching:batch_size"
        total = float(re.search(rf"{name}_sum{labels} (\S+)", metrics).group(1))
        batches = int(re.search(rf"{name}_count{labels} (\d+)", metrics).group(1))
        assert total == 32 and batches < 32, metrics   # requests shared batches
        assert f":tensorflow:serving:batching:input_batch_size_v2_count{labels} 32" in metrics
        assert re.search(r':tensorflow:serving:batching:processed_batch_size_v2\{model_name="letters",'
                         r'op_name="predict_images",batch_size="\d+"\} \d+', metrics)
        big = {"signature_name": configs.IMAGE_SIGNATURE, "instances": [b64(testing.png_bytes())] * 9}
        assert client.post("/v1/models/letters:predict", big) == (
            400, {"error": "Task size 9 is larger than maximum input batch size 8"})


def test_a_bad_request_does_not_fail_its_batch_mates(tmp_path):
    base = str(tmp_path / "letters")
    testing.publish_version(base, 1)
    with testing.start_server(base, enable_batching=True,
                              batching_parameters_file=batching_file(tmp_path, 16, 200_000)) as server:
        client = testing.RestClient(server.url)

        def call(i):
            image = b"not an image" if i == 3 else testing.png_bytes(i)
            return client.post("/v1/models/letters:predict",
                               {"signature_name": configs.IMAGE_SIGNATURE, "instances": [b64(image)]})

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(call, range(8)))
        assert [status for status, _ in results] == [200, 200, 200, 400, 200, 200, 200, 200]
        assert results[3][1]["error"]


def test_sigterm_finishes_in_flight_requests_then_exits(tmp_path):
    base = str(tmp_path / "letters")
    testing.publish_version(base, 1)
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }\n")
    # A request waits 1 s in the batcher: SIGTERM arrives while it is in flight.
    server = testing.start_server(base, subprocess=True, enable_batching=True, monitoring_config_file=str(monitoring),
                                  batching_parameters_file=batching_file(tmp_path, 64, 1_000_000))
    result = {}

    def call():
        result["status"], _, result["body"] = testing.RestClient(server.url, timeout=30).request(
            "POST", "/v1/models/letters:predict",
            {"signature_name": configs.IMAGE_SIGNATURE, "instances": [b64(testing.png_bytes())]})

    thread = threading.Thread(target=call)
    try:
        thread.start()
        client = testing.RestClient(server.url)
        queued = ':tensorflow:serving:batching:input_batch_size_v2_count{model_name="letters",op_name="predict_images"} 1'
        deadline = time.monotonic() + 30
        while queued not in client.request("GET", "/monitoring/prometheus/metrics")[2].decode():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        server.process.send_signal(signal.SIGTERM)
        thread.join(30)
        assert result.get("status") == 200, result
        assert server.process.wait(30) == 0
    finally:
        server.stop()
    assert "Received SIGTERM" in server.log() and "Server stopped" in server.log()
