"""Prometheus metrics named as TF Serving names them (``/tensorflow/serving/...`` -> ``:tensorflow:serving:...``).

* ``:tensorflow:serving:request_count{model_name,status}`` - every REST request (status = code name).
* ``:tensorflow:serving:request_latency{model_name,API,entrypoint}`` - successful requests, microseconds,
  buckets Exponential(10, 1.8, 33) as in TF Serving.
* ``:tensorflow:serving:batching_session:processed_batch_size{model_name,signature_name,padded_batch_size}``
  and ``...:input_batch_size`` - what the dynamic batcher ran (embedded server).
* ``:tensorflow:serving:model_version_state{model_name,version}`` - gauge of the ModelVersionStatus state.
"""
from __future__ import annotations

import re
import threading

LATENCY_BUCKETS = [10 * 1.8 ** i for i in range(33)]
BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]


def prometheus_name(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", ":", name)


def _labels(pairs) -> str:
    if not pairs:
        return ""
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in pairs)
    return "{" + inner + "}"


def _escape(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return format(float(value), ".10g")


class _Histogram:
    def __init__(self, buckets):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break
        self.sum += value
        self.count += 1


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.request_count: dict[tuple, int] = {}
        self.request_latency: dict[tuple, _Histogram] = {}
        self.processed_batch_size: dict[tuple, int] = {}
        self.input_batch_size: dict[tuple, _Histogram] = {}
        self.state_source = None          # callable -> [(model, version, state number)]

    def request(self, model_name: str, status: str, api: str | None = None, latency_us: float | None = None):
        with self._lock:
            key = (("model_name", model_name), ("status", status))
            self.request_count[key] = self.request_count.get(key, 0) + 1
            if status == "OK" and api is not None and latency_us is not None:
                key = (("model_name", model_name), ("API", api), ("entrypoint", "REST"))
                histogram = self.request_latency.get(key)
                if histogram is None:
                    histogram = self.request_latency[key] = _Histogram(LATENCY_BUCKETS)
                histogram.observe(latency_us)

    def batch_processed(self, labels: dict, size: int, padded: int) -> None:
        with self._lock:
            key = (("model_name", labels.get("model_name", "")), ("signature_name", labels.get("signature_name", "")),
                   ("padded_batch_size", str(padded)))
            self.processed_batch_size[key] = self.processed_batch_size.get(key, 0) + 1
            key = key[:2]
            histogram = self.input_batch_size.get(key)
            if histogram is None:
                histogram = self.input_batch_size[key] = _Histogram(BATCH_BUCKETS)
            histogram.observe(size)

    def render(self) -> str:
        lines = []
        with self._lock:
            self._counter(lines, "/tensorflow/serving/request_count", self.request_count)
            self._histogram(lines, "/tensorflow/serving/request_latency", self.request_latency)
            self._counter(lines, "/tensorflow/serving/batching_session/processed_batch_size",
                          self.processed_batch_size)
            self._histogram(lines, "/tensorflow/serving/batching_session/input_batch_size", self.input_batch_size)
        if self.state_source is not None:
            states = self.state_source()
            if states:
                name = prometheus_name("/tensorflow/serving/model_version_state")
                lines.append(f"# TYPE {name} gauge")
                for model, version, state in states:
                    lines.append(f"{name}{_labels([('model_name', model), ('version', version)])} {state}")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _counter(lines, raw_name, values):
        if not values:
            return
        name = prometheus_name(raw_name)
        lines.append(f"# TYPE {name} counter")
        for key, value in sorted(values.items()):
            lines.append(f"{name}{_labels(key)} {value}")

    @staticmethod
    def _histogram(lines, raw_name, values):
        if not values:
            return
        name = prometheus_name(raw_name)
        lines.append(f"# TYPE {name} histogram")
        for key, histogram in sorted(values.items()):
            cumulative = 0
            for bound, count in zip(histogram.buckets, histogram.counts):
                cumulative += count
                lines.append(f"{name}_bucket{_labels(list(key) + [('le', _number(bound))])} {cumulative}")
            lines.append(f"{name}_bucket{_labels(list(key) + [('le', '+Inf')])} {histogram.count}")
            lines.append(f"{name}_sum{_labels(key)} {_number(histogram.sum)}")
            lines.append(f"{name}_count{_labels(key)} {histogram.count}")
