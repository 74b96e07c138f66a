"""Latency and errors from a model server's Prometheus metrics (TF Serving's names, which the embedded server
uses too: ``:tensorflow:serving:request_count{model_name,status}``, ``:tensorflow:serving:request_latency
{model_name,API,entrypoint}`` histogram in microseconds). Only the monitored model's series are judged; other
models' requests are counted by name and left out.

A page that cannot be read (nothing listening, an HTTP error or a redirect, an answer not whole within the
timeout, a page larger than :data:`MAX_PAGE_BYTES`) or is not Prometheus text is an alarm in the monitor
(:func:`read` says why), not an all-clear: a server that is down reports no errors.

A URL whose host resolves to several addresses (a headless Service: one per pod) is every address's page, summed:
each server process counts its own requests, so one page read through a load-balanced Service is one random
replica's share, and a replica that is down is never asked. :func:`read` asks each address (the URL's port, path
and Host; several at once) and judges the sum; one that cannot be read is named, and the whole is a page that cannot be read.

The counters cover the server's whole lifetime, so a page alone cannot tell a version the client asked for that the
server does not have (NOT_FOUND, the client's mistake) from a model the server no longer serves (its versions
unloaded: NOT_FOUND too, to every call, below answers it gave before). :func:`read` asks each server it read a page
of for the model's status too (TF Serving's ``GET /v1/models/<model>``, on the page's port): a model with no version
AVAILABLE there has its NOT_FOUND requests counted as failed on the server, and is named in the summary's
``model_status`` (an alarm in the monitor); a status that cannot be read leaves the page's own rule
(:func:`_client_statuses`), said by :func:`status_unread`.
"""
from __future__ import annotations

import http.client
import socket
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from prometheus_client.parser import text_string_to_metric_families

from core import json_text
from core.deadlines import ExchangeDeadline
from core.settings import host_port
from serving.client import error_text, version_errors, version_states
from serving.config import DEFAULT_PROMETHEUS_PATH

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
# Requests the server refused as the client's mistake, by the status TF Serving counts them under (its code's name;
# over REST a 400 or a 404): INVALID_ARGUMENT, bad input or an unknown version label (the web client asks for the
# ``stable`` label on every few predictions and falls back to the latest version when it is not configured), and
# NOT_FOUND, a version (or a model) the server does not have (BasicManager's "Servable not found for request:
# Specific(letters, 99)", a status GET's "Could not find version 99 of model letters"). They are counted apart: an
# error share is the server failing its clients. A model with no version available, still loading or failed to
# load, or its versions unloaded after it served, answers NOT_FOUND too ("Servable not found for request:
# Latest(letters)"): on a server whose model status shows no version AVAILABLE (:func:`model_status`), its NOT_FOUND
# requests are the server's failure, and when that status cannot be read, on a page where the model answered none
# of its calls (:func:`_client_statuses`).
# FAILED_PRECONDITION (a 400 too) is not the client's: a model whose output cannot be batched answers it.
CLIENT_ERRORS = frozenset({"INVALID_ARGUMENT", "NOT_FOUND"})
UNAVAILABLE_MODEL = "NOT_FOUND"   # what a model with no available version answers every call with
# How requests that name no model are listed: a REST path TF Serving's parser cannot read (a mistyped /v1/ URL, a
# GET of /v1/models/) or a CORS preflight, counted with an empty model_name. They are no model's traffic: left out
# as another model's are, but no sign that the page is another model's server.
NO_MODEL = "(no model)"
# TF Serving's model status over REST (GetModelStatus), on the port of its metrics page.
STATUS_PATH = "/v1/models/{}"


SCHEMES = ("http", "https")
# TF Serving's page is tens of KiB for a few models; a page beyond this is not a metrics page (or never ends).
MAX_PAGE_BYTES = 8 << 20
CHUNK_BYTES = 64 << 10
# The servers of a name of several addresses asked at once: a pass over N replicas takes about the slowest one's
# two GETs (up to twice the timeout), not the sum of them all.
MAX_SERVERS_AT_ONCE = 16


class Unreadable(Exception):
    """The metrics page could not be read, or is not Prometheus text; the message says why."""


def url_problem(url: str) -> str | None:
    """Why ``url`` is not a metrics page's address (None when it is one): an http:// or https:// URL with a host.
    Said before the pass starts; :func:`fetch` would otherwise refuse a ``file://`` path or ``host:8501/…`` only
    once the pass reaches it."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port   # noqa: B018 - read for its ValueError: a port that is not a number
    except ValueError as err:   # also an unclosed [IPv6 address
        return f"--metrics-url is not a URL ({err}): {url!r}"
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        return f"--metrics-url must be an http:// or https:// URL with a host, got {url!r}"
    try:
        parts.hostname.encode("idna")   # as the connection will: an empty or over-long label, an unusable character
    except UnicodeError as err:
        return f"--metrics-url's host {parts.hostname!r} is not a host name ({err})"
    return None


def _port(parts: urllib.parse.SplitResult) -> int:
    return parts.port or (443 if parts.scheme.lower() == "https" else 80)


def addresses(url: str) -> list[str]:
    """The addresses ``url``'s host resolves to for TCP, each once, of the family of the first (a dual-stack pod
    has an IPv4 and an IPv6 address: one server, asked once); [] when it does not resolve (:func:`fetch` says
    why)."""
    parts = urllib.parse.urlsplit(url)
    try:
        found = socket.getaddrinfo(parts.hostname, _port(parts), type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(sockaddr[0] for family, *_, sockaddr in found if family == found[0][0]))


def fetch(url: str, timeout: float = 10.0, address: str | None = None) -> str:
    """The page's text; :class:`Unreadable` when the server cannot be reached, answers with an HTTP error or a
    redirect, has not sent the whole answer (status line, headers and page) within ``timeout`` seconds of the first
    connection attempt or sends more than :data:`MAX_PAGE_BYTES`. With ``address``, asked of that address of the
    host's only (the Host header and TLS's server name still the URL's host)."""
    return _get(url, timeout, address)[1]


def _get(url: str, timeout: float, address: str | None, accept: tuple = ()) -> tuple[int, str]:
    """(HTTP status, text) of a GET of ``url``, as :func:`fetch` reads it; an HTTP error in ``accept`` is read as
    an answer (its body the text) rather than raised."""
    if problem := url_problem(url):
        raise Unreadable(problem)
    parts = urllib.parse.urlsplit(url)
    https = parts.scheme.lower() == "https"
    port = _port(parts)
    connection = (http.client.HTTPSConnection if https else http.client.HTTPConnection)(
        parts.hostname, port, timeout=timeout)
    if address is not None:   # http.client's hook for its socket: connect() opens it to this address
        connection._create_connection = lambda _, *rest: socket.create_connection((address, port), *rest)
    clock = None
    try:
        ends = time.monotonic() + timeout
        connection.connect()   # (each of the host's addresses tried for at most the timeout)
        clock = ExchangeDeadline(connection, max(0.0, ends - time.monotonic()))
        status, page = _page(connection, url, urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, "")),
                             accept)
        if not clock.finish():   # cut at the deadline: a page without a Content-Length looks whole
            raise _timed_out(timeout)
        return status, page.decode("utf-8", "replace")
    except (OSError, http.client.HTTPException, UnicodeError) as err:   # also a read ended by the clock
        if isinstance(err, TimeoutError) or clock is not None and not clock.finish():
            raise _timed_out(timeout) from None
        raise Unreadable(getattr(err, "strerror", None) or str(err) or type(err).__name__) from None
    finally:
        if clock is not None:
            clock.finish()
        connection.close()


def _timed_out(timeout: float) -> Unreadable:
    return Unreadable(f"timed out: the page was not whole within {timeout:g} s")


def _page(connection: http.client.HTTPConnection, url: str, target: str, accept: tuple = ()) -> tuple[int, bytes]:
    """(HTTP status, body) of a GET of ``target`` (``url``'s path and query) on ``connection``; :class:`Unreadable`
    for an answer that is not 2xx nor in ``accept``: an HTTP error, or a redirect, said with where it points (a
    Prometheus page is served where it is asked for, not redirected)."""
    connection.request("GET", target)
    response = connection.getresponse()
    if not 200 <= response.status < 300 and response.status not in accept:
        location = response.getheader("Location") if 300 <= response.status < 400 else None
        where = f" to {urllib.parse.urljoin(url, location)[:200]}" if location else ""
        raise Unreadable(f"HTTP {response.status} {response.reason}{where}")
    return response.status, _body(response)


def _body(response: http.client.HTTPResponse) -> bytes:
    """The response's body, read a socket read at a time (``read1``) up to :data:`MAX_PAGE_BYTES`; :class:`Unreadable`
    past it."""
    chunks, size = [], 0
    while chunk := response.read1(CHUNK_BYTES):
        size += len(chunk)
        if size > MAX_PAGE_BYTES:
            raise Unreadable(f"the page is larger than {MAX_PAGE_BYTES / 2 ** 20:g} MiB")
        chunks.append(chunk)
    if response.length:   # read1 ends quietly where read raises: a connection closed before its Content-Length
        raise http.client.IncompleteRead(b"".join(chunks), response.length)
    return b"".join(chunks)


def read(url: str, model: str | None = None, timeout: float = 10.0) -> dict:
    """:func:`summarize` of the page at ``url`` for ``model``; :class:`Unreadable` when it cannot be read or is not
    Prometheus text.

    When ``url``'s host resolves to several :func:`addresses`, each address's page is read (up to
    :data:`MAX_SERVERS_AT_ONCE` at a time, ``timeout`` each) and their samples summed (counters, histogram buckets, sums and counts add), the summary's
    ``pages`` naming the addresses read; a page that cannot be read makes the whole :class:`Unreadable`, naming
    each such address.

    With ``model``, each server whose page was read is then asked for the model's status (:func:`model_status`,
    ``timeout`` each, right after its page): the summary's ``model_status`` is {server (host:port): its answer}, and each page's NOT_FOUND
    requests are judged by it (:func:`_client_statuses`)."""
    found = addresses(url)
    parts = urllib.parse.urlsplit(url)
    port = _port(parts)
    servers = ([(address, host_port(address, port)) for address in found] if len(found) > 1
               else [(None, host_port(parts.hostname, port))])
    def one(server: tuple) -> tuple:   # (its page's families or why not, its model status)
        address, name = server
        try:
            page = _families(fetch(url, timeout, address))
        except Unreadable as err:
            if address is None:   # the URL's one server: its reason alone
                raise
            return f"{name}: {err}", None
        return page, model_status(url, model, timeout, address) if model else None

    with ThreadPoolExecutor(max_workers=min(len(servers), MAX_SERVERS_AT_ONCE)) as pool:
        answers = list(pool.map(one, servers))
    down = [page for page, _ in answers if isinstance(page, str)]
    if down:
        raise Unreadable(f"{'; '.join(down)} ({len(down)} of the {len(found)} addresses of {parts.hostname})")
    pages = [page for page, _ in answers]
    statuses = {name: status for (_, name), (_, status) in zip(servers, answers)} if model else {}
    summary = _summary(pages, model, [statuses[name]["available"] for _, name in servers] if model else None)
    if model:
        summary["model_status"] = statuses
    if len(servers) > 1:
        summary["pages"] = [name for _, name in servers]
    return summary


def model_status(url: str, model: str, timeout: float = 10.0, address: str | None = None) -> dict:
    """What the server of ``url`` (its scheme, host and port; ``address`` as :func:`fetch`) says of ``model`` now,
    asked once (TF Serving's GetModelStatus, :data:`STATUS_PATH`): ``{'available': True|False, 'versions':
    {version: state}, 'why'}``, ``why`` saying, when no version is AVAILABLE, what the status shows (each version's
    state, as ``version 3 END``, or TF Serving's 404 for a model it has no version of: "Could not find any versions
    of model letters"); ``{'available': None, 'error'}`` when it cannot be read (:func:`fetch`'s reasons, or an
    answer that is no model status). A path before the default metrics path (a proxy's prefix,
    ``https://gw/tfserving/monitoring/prometheus/metrics``) is kept before the status path too."""
    parts = urllib.parse.urlsplit(url)
    prefix = parts.path[:-len(DEFAULT_PROMETHEUS_PATH)] if parts.path.endswith(DEFAULT_PROMETHEUS_PATH) else ""
    status_url = urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, prefix + STATUS_PATH.format(urllib.parse.quote(model, safe="")), "", ""))
    try:
        code, text = _get(status_url, timeout, address, accept=(404,))
    except Unreadable as err:
        return {"available": None, "error": str(err)}
    try:
        body = json_text.loads(text)
    except ValueError:   # (json_text: a body nested too deep too)
        body = None
    if code == 404 and (why := error_text(body)):   # TF Serving's NOT_FOUND: no version of the model known at all
        return {"available": False, "versions": {}, "why": why}
    versions = version_states(body)
    if code == 404 or not versions:
        return {"available": None, "error": f"HTTP {code}, not a model status (first line {_first_line(text)!r})"}
    if any(state == "AVAILABLE" for state in versions.values()):
        return {"available": True, "versions": versions}
    errors = version_errors(body)   # a load that failed: its state END, with the load's error
    states = ", ".join(f"version {v} {state}" + (f": {errors[v]}" if v in errors else "")
                       for v, state in versions.items())
    return {"available": False, "versions": versions, "why": f"no version AVAILABLE ({states})"}


def unavailable(summary: dict) -> dict:
    """{server: why} of the servers whose model status shows no version of the model AVAILABLE."""
    return {name: status["why"] for name, status in summary.get("model_status", {}).items()
            if status["available"] is False}


def status_unread(summary: dict) -> str | None:
    """One line naming the servers whose model status could not be read, and the rule their NOT_FOUND requests
    were judged by instead; None when every status was read."""
    down = [f"{name}: {status['error']}" for name, status in summary.get("model_status", {}).items()
            if status["available"] is None]
    if not down:
        return None
    return (f"model status of {summary['model']} not read ({'; '.join(down)}): NOT_FOUND judged by the metrics page "
            "alone, the client's mistake where the model answered any of its calls, else failed on the server")


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


def _families(text: str) -> list:
    """The page's metric families; :class:`Unreadable` for a page that is not Prometheus text (an HTML or JSON
    page, say: the parser's own message can be empty, so the page's first line is quoted)."""
    try:
        return list(text_string_to_metric_families(text))
    except ValueError as err:
        detail = f": {err}" if str(err) else ""
        raise Unreadable(f"not Prometheus text (first line {_first_line(text)!r}){detail}") from None


def _first_line(text: str) -> str:
    """The first line of ``text`` that is not blank, stripped, at most 80 characters (to quote a page that is not
    what was expected)."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:80]


def _requests(sample) -> float:
    """What ``sample`` adds to its model's ``requests``: its count of requests, less the status checks answered."""
    if sample.name in (REQUEST_COUNT, REQUEST_COUNT + "_total"):
        return sample.value
    if sample.name == REQUEST_LATENCY + "_count" and sample.labels.get("API", "predict") == "":
        return -sample.value
    return 0.0


def summarize(text: str, model: str | None = None) -> dict:
    """{'model', 'requests', 'status_checks', 'errors', 'rejected', 'answerable', 'errors_by_status',
    'error_share', 'latency_ms': {'p50', 'p95', 'mean'}, 'other_models'}: ``errors`` the requests that failed on the
    server's side, ``rejected`` those refused as the client's mistake (:data:`CLIENT_ERRORS`); ``errors_by_status``
    lists both. ``answerable`` is ``requests`` less ``rejected``, the requests the server had to answer: the error
    share is ``errors`` of them.

    Only ``model``'s series are judged (every model's when None; a series without ``model_name`` counts as the
    model's): another model's requests (status checks left out) are ``other_models`` {name: requests}, and those
    that name no model (``model_name=""``) ``no_model``, in nothing else (:func:`left_out` lists both).

    ``request_count`` counts every REST request, the model-status and metadata GETs (readiness and liveness
    probes) too; TF Serving labels their latency ``API=""``, and records a latency only for a request answered OK.
    Those answered are ``status_checks``, left out of ``requests`` and of the latency, which is the model calls'.
    One that failed is counted by its status alone (``request_count`` has no API label): INVALID_ARGUMENT, or
    NOT_FOUND where the model is available (:func:`read`'s model status), a refusal, so out of the error share's
    denominator too; where it is not, NOT_FOUND is a failure of the server, status checks and all."""
    return _summary([_families(text)], model)


def _owner(sample, model: str | None) -> str | None:
    """The other model ``sample`` is of, or None when it is ``model``'s (or every model is judged)."""
    owner = sample.labels.get("model_name")
    return owner if model is not None and owner is not None and owner != model else None


def _is_status_check(sample) -> bool:
    return sample.name.startswith(REQUEST_LATENCY) and sample.labels.get("API", "predict") == ""


def _client_statuses(page: list, model: str | None, available: bool | None = None) -> frozenset:
    """:data:`CLIENT_ERRORS` on one server's page, less NOT_FOUND when ``model`` has no version available there: a
    model with no version available answers every call so. ``available`` is what the server's model status says
    (:func:`model_status`); None (not read) judges by the page, whose counters are the server's lifetime's: the
    model answered none of its calls there (no latency of a call but a status check)."""
    if available is None:
        available = any(sample.name == REQUEST_LATENCY + "_count" and sample.value > 0
                        and not _is_status_check(sample) and _owner(sample, model) is None
                        for family in page for sample in family.samples)
    return CLIENT_ERRORS if available else CLIENT_ERRORS - {UNAVAILABLE_MODEL}


def _summary(pages: list, model: str | None, available: list | None = None) -> dict:
    """:func:`summarize` of the metric families of ``pages``: one page, or several pages (one per server), whose
    samples add up; ``available``, per page, whether its server has a version of the model available
    (:func:`_client_statuses`)."""
    requests = errors = rejected = 0
    status_checks = 0.0
    by_status: dict = {}
    buckets: dict[float, float] = {}
    latency_sum = latency_count = 0.0
    others: dict[str, float] = {}
    for page, up in zip(pages, available or [None] * len(pages)):
        client_statuses = _client_statuses(page, model, up)
        for family in page:
            for sample in family.samples:
                owner = _owner(sample, model)
                if owner is not None:
                    others[owner] = others.get(owner, 0) + _requests(sample)
                    continue
                if _is_status_check(sample):
                    if sample.name == REQUEST_LATENCY + "_count":
                        status_checks += sample.value
                    continue
                if sample.name == REQUEST_COUNT or sample.name == REQUEST_COUNT + "_total":
                    requests += sample.value
                    status = sample.labels.get("status", "OK")
                    if status in client_statuses:
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
    answerable = max(requests - rejected, 0)
    no_model = others.pop("", 0)
    return {"model": model, "requests": int(requests), "status_checks": int(status_checks), "errors": int(errors),
            "rejected": int(rejected), "answerable": int(answerable), "errors_by_status": by_status,
            "error_share": errors / answerable if answerable else 0.0,
            "latency_ms": {"p50": None if p50 is None else p50 / 1000, "p95": None if p95 is None else p95 / 1000,
                           "mean": latency_sum / latency_count / 1000 if latency_count else None},
            "other_models": {name: int(n) for name, n in sorted(others.items()) if n > 0},
            "no_model": int(no_model)}


def left_out(summary: dict) -> dict:
    """The requests a summary left out, {name: requests}: other models' by name, those naming no model as
    :data:`NO_MODEL`."""
    found = dict(summary.get("other_models", {}))
    if summary.get("no_model"):
        found[NO_MODEL] = summary["no_model"]
    return found
