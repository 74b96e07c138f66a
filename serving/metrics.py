"""Prometheus metrics named as TF Serving names them (``/tensorflow/serving/...`` -> ``:tensorflow:serving:...``).

* ``:tensorflow:serving:request_count{model_name,status}`` - every REST request and every gRPC Predict, Classify
  and Regress (status = code name).
* ``:tensorflow:serving:request_latency{model_name,API,entrypoint}`` - successful requests (entrypoint ``REST`` or
  ``GRPC``), microseconds,
  buckets Exponential(10, 1.8, 33) as in TF Serving.
* with ``--enable_batching``, the BatchingSession's (batching/batching_session.cc, batching_util.h; no model name,
  as there): ``:tensorflow:serving:batching_session:input_batch_size`` (rows of each request's input tensors,
  histogram), ``...:processed_batch_size`` (rows of each batch run, padding included), ``...:padding_size
  {execution_batch_size}`` (padding rows of each batch), ``...:queuing_latency{thread_pool_name}`` (each request's
  wait in the queue, microseconds; the pool name is "" as CreateBatchingSession gives it) and
  ``...:wrapped_run_count`` (batches run).
* ``:tensorflow:serving:runtime_latency{model_name,API,runtime="TF1"}`` - the model run alone of Predict, Classify
  and Regress (RecordRuntimeLatency), microseconds.
* ``:tensorflow:serving:model_warmup_latency{model_path,status}`` (histogram, microseconds) and
  ``:tensorflow:serving:model_warmup_records_read{model_path,status}``: each version's warm-up that read its records
  to the end or to an error reading the file (``FAILED_PRECONDITION: …; Is a directory``, ``DATA_LOSS: …``); a
  record that fails ends the load without them, as TF Serving's one warm-up thread does; its
  records count as requests in ``runtime_latency`` (and MultiInference ones in the example counts).
* ``:tensorflow:serving:request_log_count{model_name,status_code}`` - each record a model's ``logging_config``
  sampled, by the status of its writing (RequestLogger::Log: ``OK``, or e.g. ``RESOURCE_EXHAUSTED`` for a full disk).
* ``:tensorflow:serving:request_example_counts{model}`` (histogram) and
  ``:tensorflow:serving:request_example_count_total{model}`` - the tf.Examples of each MultiInference request
  (RecordRequestExampleCount).
* ``:tensorflow:serving:mlmd_map{model_name,version}`` (a string gauge, machine_learning_metadata.cc, linked into
  tensorflow_model_server through saved_model_bundle_source_adapter): its TYPE line only. TF Serving sets a cell
  (written as ``0``, its exporter printing a gauge's int64 value) for a version with ``assets.extra/mlmd_uuid``
  only when the SessionBundleConfig enables session metadata, which no tensorflow_model_server flag does (a
  --platform_config_file can, and the embedded server ignores that flag).

Each server has its own ``prometheus_client`` CollectorRegistry (``Metrics.registry``) holding one collector that
yields these metric families. ``render`` writes them as TF Serving's exporter does (util/prometheus_exporter.cc):
``# TYPE`` lines only (also for a metric with no sample yet), labels in declared order (``{}`` for none), whole
counts, families in name order. ``prometheus_client.generate_latest`` would name a
counter's TYPE line ``..._total``, sort the labels and add HELP lines.
"""

from __future__ import annotations

import bisect
import re
import threading

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

LATENCY_BUCKETS = [10 * 1.8 ** i for i in range(33)]    # Buckets::Exponential(10, 1.8, 33)
INPUT_BATCH_BUCKETS = [2 ** i for i in range(14)]        # Buckets::Exponential(1, 2, 14)
EXAMPLE_COUNT_BUCKETS = [2 ** i for i in range(15)]      # Buckets::Exponential(1, 2, 15)
QUEUING_BUCKETS = [100 * 1.2 ** i for i in range(52)]    # Buckets::Exponential(100, 1.2, 52)
BATCHING_THREAD_POOL = ""                                # CreateBatchingSession's thread_pool_name


def prometheus_name(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", ":", name)


def _labels(pairs) -> str:
    """``{name="value",...}``; ``{}`` for none, as TF Serving's exporter writes every sample's braces."""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in pairs) + "}"


def _escape(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    """A double as absl::StrCat writes it in TF Serving's exporter (six significant digits: 1102, 1.27482e+06)."""
    return "%g" % value


def _sample_text(name: str, value) -> str:
    """Counts (int64 in TF Serving) in full; a histogram's sum, a double, as :func:`_number`."""
    return _number(value) if name.endswith("_sum") else str(int(value))


class _Histogram:
    def __init__(self, buckets):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Into bucket ``upper_bound(limits, value)``, as TensorFlow's Histogram::Add: a value equal to a limit
        counts in the bucket above it, so the exported ``le="2"`` holds the values below 2 (a batch of 2 shows
        under ``le="4"``)."""
        i = bisect.bisect_right(self.buckets, value)
        if i < len(self.buckets):
            self.counts[i] += 1
        self.sum += value
        self.count += 1


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.request_count: dict[tuple, int] = {}
        self.request_latency: dict[tuple, _Histogram] = {}
        self.input_batch_size: dict[tuple, _Histogram] = {}
        self.processed_batch_size: dict[tuple, _Histogram] = {}
        self.padding_size: dict[tuple, _Histogram] = {}
        self.queuing_latency: dict[tuple, _Histogram] = {}
        self.wrapped_run_count: dict[tuple, int] = {}
        self.warmup_latency: dict[tuple, _Histogram] = {}
        self.warmup_records: dict[tuple, int] = {}
        self.runtime_latency: dict[tuple, _Histogram] = {}
        self.example_counts: dict[tuple, _Histogram] = {}
        self.example_count_total: dict[tuple, int] = {}
        self.request_log_count: dict[tuple, int] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def request(self, model_name: str, status: str, api: str | None = None, latency_us: float | None = None,
                entrypoint: str = "REST"):
        with self._lock:
            key = (("model_name", model_name), ("status", status))
            self.request_count[key] = self.request_count.get(key, 0) + 1
            if status == "OK" and api is not None and latency_us is not None:
                key = (("model_name", model_name), ("API", api), ("entrypoint", entrypoint))
                # RecordRequestLatency takes absl::ToInt64Microseconds(latency): whole microseconds
                self._observe(self.request_latency, key, LATENCY_BUCKETS, int(latency_us))

    def request_logged(self, model_name: str, status_code: str) -> None:
        """request_log_count: one sampled record of the model's request log, by its writing's status."""
        with self._lock:
            key = (("model_name", model_name), ("status_code", status_code))
            self.request_log_count[key] = self.request_log_count.get(key, 0) + 1

    def runtime(self, model_name: str, api: str, latency_us: float) -> None:
        """RecordRuntimeLatency: the model run's wall time, for Predict, Classify and Regress (runtime "TF1")."""
        with self._lock:
            key = (("model_name", model_name), ("API", api), ("runtime", "TF1"))
            self._observe(self.runtime_latency, key, LATENCY_BUCKETS, int(latency_us))

    def examples(self, model_name: str, count: int) -> None:
        """RecordRequestExampleCount: the tf.Examples of a MultiInference request."""
        with self._lock:
            key = (("model", model_name),)
            self._observe(self.example_counts, key, EXAMPLE_COUNT_BUCKETS, count)
            self.example_count_total[key] = self.example_count_total.get(key, 0) + count

    def batch_input(self, size: int, tensors: int = 1) -> None:
        """RecordInputBatchSize: a request's rows, once per input tensor (ComputeInputSize)."""
        with self._lock:
            for _ in range(tensors):
                self._observe(self.input_batch_size, (), INPUT_BATCH_BUCKETS, size)

    def batch_queued(self, waits_us: list) -> None:
        """queuing_latency: each task's wait from its enqueueing to its batch's start (ProcessBatch)."""
        with self._lock:
            for wait in waits_us:
                self._observe(self.queuing_latency, (("thread_pool_name", BATCHING_THREAD_POOL),),
                              QUEUING_BUCKETS, int(wait))

    def batch_merged(self, size: int, padded: int) -> None:
        """RecordPaddingSize and RecordProcessedBatchSize (MergeInputTensors): the batch's padded size and padding."""
        with self._lock:
            self._observe(self.padding_size, (("execution_batch_size", str(padded)),), INPUT_BATCH_BUCKETS,
                          padded - size)
            self._observe(self.processed_batch_size, (), INPUT_BATCH_BUCKETS, padded)

    def batch_run(self) -> None:
        """wrapped_run_count: one more run of the wrapped session, whatever its outcome."""
        with self._lock:
            self.wrapped_run_count[()] = self.wrapped_run_count.get((), 0) + 1

    def warmup(self, model_path: str, status: str, latency_us: float, records: int) -> None:
        """model_warmup_latency and model_warmup_records_read (saved_model_warmup_util.cc): a version's warm-up
        that read its records to the end or to an error reading them, by its folder and its status's text ("OK",
        "DATA_LOSS: ...", "FAILED_PRECONDITION: ...")."""
        with self._lock:
            key = (("model_path", model_path), ("status", status))
            self._observe(self.warmup_latency, key, LATENCY_BUCKETS, int(latency_us))
            self.warmup_records[key] = self.warmup_records.get(key, 0) + records

    @staticmethod
    def _observe(table, key, buckets, value):
        histogram = table.get(key)
        if histogram is None:
            histogram = table[key] = _Histogram(buckets)
        histogram.observe(value)

    def collect(self):
        """prometheus_client's collector protocol: the metric families in name order, as TF Serving's exporter
        walks its registry. A metric TF Serving registers when its library loads has its family (its TYPE line)
        before any sample; the BatchingSession's size metrics register on their first sample (batching_util.h)."""
        session = "/tensorflow/serving/batching_session"
        with self._lock:
            families = [
                ("/tensorflow/serving/request_count", self.request_count, "counter", True),
                ("/tensorflow/serving/request_latency", self.request_latency, "histogram", True),
                ("/tensorflow/serving/runtime_latency", self.runtime_latency, "histogram", True),
                ("/tensorflow/serving/request_log_count", self.request_log_count, "counter", True),
                ("/tensorflow/serving/request_example_counts", self.example_counts, "histogram", True),
                ("/tensorflow/serving/request_example_count_total", self.example_count_total, "counter", True),
                ("/tensorflow/serving/model_warmup_latency", self.warmup_latency, "histogram", True),
                ("/tensorflow/serving/model_warmup_records_read", self.warmup_records, "counter", True),
                (f"{session}/queuing_latency", self.queuing_latency, "histogram", True),
                (f"{session}/wrapped_run_count", self.wrapped_run_count, "counter", True),
                (f"{session}/input_batch_size", self.input_batch_size, "histogram", False),
                (f"{session}/processed_batch_size", self.processed_batch_size, "histogram", False),
                (f"{session}/padding_size", self.padding_size, "histogram", False),
                ("/tensorflow/serving/mlmd_map", {}, "gauge", True)]   # see the module docstring
            for raw_name, values, kind, registered in sorted(families):
                if values or registered:
                    yield (self._histogram(raw_name, values) if kind == "histogram"
                           else self._scalar(raw_name, values, kind))

    def render(self) -> str:
        lines = []
        for family in self.registry.collect():
            lines.append(f"# TYPE {family.name} {family.type}")
            lines += [f"{sample.name}{_labels(sample.labels.items())} {_sample_text(sample.name, sample.value)}"
                      for sample in family.samples]
        return "\n".join(lines) + "\n"

    @staticmethod
    def _scalar(raw_name, values, kind: str) -> Metric:
        family = Metric(prometheus_name(raw_name), "", kind)
        for key, value in sorted(values.items()):
            family.add_sample(family.name, dict(key), value)
        return family

    @staticmethod
    def _histogram(raw_name, values) -> Metric:
        family = Metric(prometheus_name(raw_name), "", "histogram")
        name = family.name
        for key, histogram in sorted(values.items()):
            cumulative = 0
            for bound, count in zip(histogram.buckets, histogram.counts):
                cumulative += count
                family.add_sample(f"{name}_bucket", dict(key + (("le", _number(bound)),)), cumulative)
            family.add_sample(f"{name}_bucket", dict(key + (("le", "+Inf"),)), histogram.count)
            family.add_sample(f"{name}_sum", dict(key), histogram.sum)
            family.add_sample(f"{name}_count", dict(key), histogram.count)
        return family
