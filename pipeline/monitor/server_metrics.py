"""Latency and errors from a model server's Prometheus metrics (TF Serving's names, which the embedded server
uses too: ``:tensorflow:serving:request_count{status}``, ``:tensorflow:serving:request_latency`` histogram in
microseconds)."""
from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
# Requests the server refused as the client's mistake (bad input, an unknown version label: the web client asks
# for the ``stable`` label on every few predictions and falls back to the latest version when it is not
# configured). They are counted apart: an error share is the server failing its clients.
CLIENT_ERRORS = frozenset({"INVALID_ARGUMENT"})


def fetch(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode("utf-8", "replace")


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """From cumulative (upper bound, count) buckets, linear inside the bucket (as Prometheus' histogram_quantile)."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    target = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= target:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * ((target - below) / (count - below) if count > below else 0)
        lower, below = bound, count
    return lower


def summarize(text: str) -> dict:
    """{'requests', 'status_checks', 'errors', 'rejected', 'errors_by_status', 'error_share',
    'latency_ms': {'p50', 'p95', 'mean'}}: ``errors`` the requests that failed on the server's side, ``rejected``
    those refused as the client's mistake (:data:`CLIENT_ERRORS`); ``errors_by_status`` lists both.

    ``request_count`` counts every REST request, the model-status and metadata GETs (readiness and liveness
    probes) too; TF Serving labels their latency ``API=""``. Those answered are ``status_checks``, left out of
    ``requests`` (so out of the error share's denominator) and of the latency, which is the model calls'."""
    requests = errors = rejected = 0
    status_checks = 0.0
    by_status: dict = {}
    buckets: dict[float, float] = {}
    latency_sum = latency_count = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(REQUEST_LATENCY) and sample.labels.get("API", "predict") == "":
                if sample.name == REQUEST_LATENCY + "_count":
                    status_checks += sample.value
                continue
            if sample.name == REQUEST_COUNT or sample.name == REQUEST_COUNT + "_total":
                requests += sample.value
                status = sample.labels.get("status", "OK")
                if status in CLIENT_ERRORS:
                    rejected += sample.value
                elif status != "OK":
                    errors += sample.value
                if status != "OK":
                    by_status[status] = by_status.get(status, 0) + sample.value
            elif sample.name == REQUEST_LATENCY + "_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0) + sample.value
            elif sample.name == REQUEST_LATENCY + "_sum":
                latency_sum += sample.value
            elif sample.name == REQUEST_LATENCY + "_count":
                latency_count += sample.value
    pairs = list(buckets.items())
    p50, p95 = _quantile(pairs, 0.5), _quantile(pairs, 0.95)
    requests = max(requests - status_checks, 0)
    return {"requests": int(requests), "status_checks": int(status_checks), "errors": int(errors),
            "rejected": int(rejected), "errors_by_status": by_status,
            "error_share": errors / requests if requests else 0.0,
            "latency_ms": {"p50": None if p50 is None else p50 / 1000, "p95": None if p95 is None else p95 / 1000,
                           "mean": latency_sum / latency_count / 1000 if latency_count else None}}
