"""Prometheus metrics on prometheus_client: one registry per server, TF Serving's exposition text."""
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from serving.metrics import Metrics


def test_each_server_has_its_own_registry_and_prometheus_parses_the_page():
    first, second = Metrics(), Metrics()
    first.request("letters", "OK", "predict", 1234.5)
    first.request('odd "name"\\', "NOT_FOUND")
    first.batch_input(3)
    first.batch_merged(3, 4)
    assert first.registry is not second.registry
    # before any sample: the TYPE lines of the metrics TF Serving registers when it starts, in name order
    assert second.render() == "".join(f"# TYPE :tensorflow:serving:{name} {kind}\n" for name, kind in [
        ("batching_session:queuing_latency", "histogram"), ("batching_session:wrapped_run_count", "counter"),
        ("mlmd_map", "gauge"),   # machine_learning_metadata.cc: cells only with session metadata, never here
        ("model_warmup_latency", "histogram"), ("model_warmup_records_read", "counter"),
        ("request_count", "counter"), ("request_example_count_total", "counter"),
        ("request_example_counts", "histogram"), ("request_latency", "histogram"),
        ("request_log_count", "counter"),
        ("runtime_latency", "histogram")])
    text = first.render()
    assert "# HELP" not in text and ":tensorflow:serving:request_count_total" not in text   # TF Serving's exporter
    assert ':tensorflow:serving:request_count{model_name="odd \\"name\\"\\\\",status="NOT_FOUND"} 1\n' in text
    families = {family.name: family for family in text_string_to_metric_families(text) if family.samples}
    assert {name: family.type for name, family in families.items()} == {
        ":tensorflow:serving:request_count": "counter", ":tensorflow:serving:request_latency": "histogram",
        ":tensorflow:serving:batching_session:input_batch_size": "histogram",
        ":tensorflow:serving:batching_session:processed_batch_size": "histogram",
        ":tensorflow:serving:batching_session:padding_size": "histogram"}
    # a sample without labels keeps its braces, as TF Serving's exporter writes it
    assert ":tensorflow:serving:batching_session:processed_batch_size_count{} 1\n" in text
    latency = {(s.name, s.labels.get("le")): s.value for s in families[":tensorflow:serving:request_latency"].samples}
    # bucket limits and sums as absl::StrCat(double) writes them (six significant digits); whole microseconds
    assert latency[(":tensorflow:serving:request_latency_bucket", "1102")] == 0
    assert latency[(":tensorflow:serving:request_latency_bucket", "1983.59")] == 1
    assert latency[(":tensorflow:serving:request_latency_bucket", "1.27482e+06")] == 1
    assert latency[(":tensorflow:serving:request_latency_sum", None)] == 1234
    assert ':tensorflow:serving:request_latency_sum{model_name="letters",API="predict",entrypoint="REST"} 1234\n' \
        in text
    second.request("letters", "OK", "predict", 2_500_000.9)
    assert ':tensorflow:serving:request_latency_sum{model_name="letters",API="predict",entrypoint="REST"} ' \
        '2.5e+06\n' in second.render()
    second.request("letters", "OK", "predict", 1234.5)
    assert 'entrypoint="REST"} 2.50123e+06\n' in second.render()
    padding = families[":tensorflow:serving:batching_session:padding_size"].samples
    assert [(s.labels, s.value) for s in padding if s.name.endswith("_sum")] == [({"execution_batch_size": "4"}, 1)]
    assert ":tensorflow:serving:batching_session:processed_batch_size_sum{} 4\n" in text
    # the registry is an ordinary prometheus_client one: its standard exposition has the same samples
    assert (':tensorflow:serving:request_count{model_name="letters",status="OK"} 1.0'
            in generate_latest(first.registry).decode())


def test_a_value_on_a_bucket_limit_counts_in_the_bucket_above_as_tensorflows_histogram_does():
    """Histogram::Add takes bucket upper_bound(limits, value), and the exporter writes each bucket's limit as its
    le: a batch of 1 is under le="2", not le="1"; a batch of 3 under le="4"."""
    metrics = Metrics()
    for size in (1, 2, 3):
        metrics.batch_input(size)
    families = {family.name: family for family in text_string_to_metric_families(metrics.render())}
    buckets = {s.labels["le"]: s.value for s in families[":tensorflow:serving:batching_session:input_batch_size"].samples
               if s.name.endswith("_bucket")}
    assert (buckets["1"], buckets["2"], buckets["4"], buckets["+Inf"]) == (0, 1, 3, 3)


def test_an_os_error_has_the_code_tensorflow_gives_its_errno():
    import errno

    from serving.status import ServingError, error_code
    assert error_code(None) == "OK" and error_code(ServingError("NOT_FOUND", "x")) == "NOT_FOUND"
    assert error_code(OSError(errno.ENOSPC, "full")) == "RESOURCE_EXHAUSTED"
    assert error_code(OSError(errno.EACCES, "no")) == "PERMISSION_DENIED"
    assert error_code(OSError(errno.EDEADLK, "x")) == "ABORTED"      # errno.errorcode names it EDEADLOCK
    assert error_code(OSError(errno.EIO, "x")) == "UNKNOWN" and error_code(ValueError("x")) == "UNKNOWN"
