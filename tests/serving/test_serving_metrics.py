"""Prometheus metrics on prometheus_client: one registry per server, TF Serving's exposition text."""
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from serving.metrics import Metrics

LABELS = {"model_name": "letters", "op_name": "predict_images"}


def test_each_server_has_its_own_registry_and_prometheus_parses_the_page():
    first, second = Metrics(), Metrics()
    first.request("letters", "OK", "predict", 1234.5)
    first.request('odd "name"\\', "NOT_FOUND")
    first.batch_input(LABELS, 3)
    first.batch_processed(LABELS, 3, 4)
    assert first.registry is not second.registry and second.render() == "\n"
    text = first.render()
    assert "# HELP" not in text and ":tensorflow:serving:request_count_total" not in text   # TF Serving's exporter
    assert ':tensorflow:serving:request_count{model_name="odd \\"name\\"\\\\",status="NOT_FOUND"} 1\n' in text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert {name: family.type for name, family in families.items()} == {
        ":tensorflow:serving:request_count": "counter", ":tensorflow:serving:request_latency": "histogram",
        ":tensorflow:serving:batching:input_batch_size_v2": "histogram",
        ":tensorflow:serving:batching:batch_size": "histogram",
        ":tensorflow:serving:batching:processed_batch_size_v2": "counter"}
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
    processed = families[":tensorflow:serving:batching:processed_batch_size_v2"].samples
    assert [(s.labels, s.value) for s in processed] == [(dict(LABELS, batch_size="4"), 1)]
    # the registry is an ordinary prometheus_client one: its standard exposition has the same samples
    assert (':tensorflow:serving:request_count{model_name="letters",status="OK"} 1.0'
            in generate_latest(first.registry).decode())


def test_a_value_on_a_bucket_limit_counts_in_the_bucket_above_as_tensorflows_histogram_does():
    """Histogram::Add takes bucket upper_bound(limits, value), and the exporter writes each bucket's limit as its
    le: a batch of 1 is under le="2", not le="1"; a batch of 3 under le="4"."""
    metrics = Metrics()
    for size in (1, 2, 3):
        metrics.batch_input(LABELS, size)
    families = {family.name: family for family in text_string_to_metric_families(metrics.render())}
    buckets = {s.labels["le"]: s.value for s in families[":tensorflow:serving:batching:input_batch_size_v2"].samples
               if s.name.endswith("_bucket")}
    assert (buckets["1"], buckets["2"], buckets["4"], buckets["+Inf"]) == (0, 1, 3, 3)
