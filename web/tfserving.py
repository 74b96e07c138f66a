"""Calls to TF Serving's REST API (serving/tfserving_rest_api.md), with stable/canary routing.

Routing: a share of predictions (``canary_share``) goes to the ``canary`` version label, the rest to ``stable``.
A label is resolved to a version number through the metadata route (``GET /v1/models/{m}/labels/{l}/metadata``
answers with ``model_spec.version``; the *status* route ignores labels, so it cannot be used), and the
prediction is sent to that explicit version (``/versions/{v}:predict``): the version shown to the user is the
one that answered, even when a label moves in between. Resolutions are cached for a couple of seconds.

When the label is not configured (TF Serving: 400 ``Unrecognized servable version label: <l>``) or points at
a version that is not loaded (404 ``Servable not found for request: Specific(<m>, <v>)``), the request falls
back to the latest loaded version (``GET /v1/models/{m}/metadata``) and says so (``route = "latest"``).
"""
from __future__ import annotations

import base64
import random
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from core import configs
from core.labels import CLASS_NAMES, GLYPHS
from core.prediction_contract import BrokenContract, check_prediction
from serving.client import RestConnection, ServingUnavailable, error_text, version_states

ROUTES = ("stable", "canary", "latest")
UNKNOWN_LABEL = "Unrecognized servable version label"


class ServingRejected(Exception):
    """TF Serving answered a prediction with a 400, an error about its input (e.g. the model cannot decode the
    image)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class BadServingResponse(Exception):
    """TF Serving answered with something that does not follow the model's contract."""


@dataclass
class Resolution:
    route: str                 # the route that will answer: stable, canary or latest
    version: int
    requested: str             # the route that was asked for
    fallback_reason: str = ""  # why the requested label was not used
    at: float = field(default_factory=time.monotonic)


@dataclass
class Prediction:
    top: list                  # [{"class", "letter", "index", "probability"}] best first, 3 entries
    version: int
    route: str
    requested_route: str
    fallback_reason: str
    serving_ms: float          # time of the predict call to TF Serving
    resolve_ms: float          # time spent resolving the label (0 when cached)
    probabilities: list | None = None   # the 27 class probabilities TF Serving answered (for the request log)

    def to_json(self) -> dict:
        return {"top": self.top, "model_version": str(self.version), "route": self.route,
                "requested_route": self.requested_route, "fallback_reason": self.fallback_reason,
                "serving_ms": round(self.serving_ms, 2), "resolve_ms": round(self.resolve_ms, 2)}


class ModelRouter:
    """Routes predictions of one model to its stable/canary labels (or the latest version)."""

    def __init__(self, connection: RestConnection, model_name: str, canary_share: float = 0.0,
                 cache_seconds: float = 2.0, rng: random.Random | None = None):
        self.connection = connection
        self.model_name = model_name
        self.canary_share = canary_share
        self.cache_seconds = cache_seconds
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self._cache: dict[str, Resolution] = {}
        self._cache_lock = threading.Lock()
        self._model_path = "/v1/models/" + urllib.parse.quote(model_name, safe="")

    # -- routing -------------------------------------------------------------------------------------------
    def choose_route(self) -> str:
        if self.canary_share <= 0:
            return "stable"
        with self._rng_lock:
            return "canary" if self._rng.random() < self.canary_share else "stable"

    def invalidate(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    def resolve(self, route: str) -> Resolution:
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; expected one of {', '.join(ROUTES)}")
        with self._cache_lock:
            cached = self._cache.get(route)
        if cached is not None and time.monotonic() - cached.at < self.cache_seconds:
            return cached
        resolution = self._resolve(route)
        with self._cache_lock:
            self._cache[route] = resolution
        return resolution

    def _resolve(self, route: str) -> Resolution:
        fallback = ""
        if route != "latest":
            label = urllib.parse.quote(route, safe="")
            status, body = self.connection.request("GET", f"{self._model_path}/labels/{label}/metadata")
            if status == 200:
                return Resolution(route, self._version_of(body), route)
            message = error_text(body)
            if status == 400 and UNKNOWN_LABEL in message:
                fallback = f"label {route!r} is not configured on TF Serving"
            elif status == 404 and "Specific(" in message:
                fallback = f"label {route!r} points at a version that is not loaded"
            else:
                self._raise_for(status, body)
        status, body = self.connection.request("GET", f"{self._model_path}/metadata")
        if status != 200:
            self._raise_for(status, body)
        return Resolution("latest", self._version_of(body), route, fallback)

    def _version_of(self, metadata) -> int:
        try:
            version = int(metadata["model_spec"]["version"])
        except (KeyError, TypeError, ValueError, OverflowError):   # OverflowError: an Infinity
            raise BadServingResponse("TF Serving's metadata has no model_spec.version") from None
        if version < 0:
            raise BadServingResponse(f"TF Serving's metadata names version {version}")
        return version

    def _raise_for(self, status: int, body) -> None:
        """The error of a refused call other than a 400 about its input: 404, the model not loaded; another 4xx
        (TF Serving's 429 RESOURCE_EXHAUSTED, 409 ABORTED, 499 CANCELLED, 403/401 or 413 from it or a proxy) or a
        5xx, the server in trouble, which a later try may not be (429 kept, 504 kept, the others 503)."""
        message = error_text(body) or f"HTTP {status}"
        if status == 404:
            raise ServingUnavailable("model_not_loaded",
                                     f"TF Serving has no loaded version of model {self.model_name!r} ({message}); "
                                     f"check the model name (--model-name, LETTERS_WEB_MODEL_NAME) and that a "
                                     f"version was pushed, or wait if it is still loading")
        if status > 400:
            raise ServingUnavailable("serving_error", f"TF Serving failed (HTTP {status}): {message}",
                                     status=status if status in (429, 504) else 503)
        raise BadServingResponse(f"TF Serving answered HTTP {status}: {message}")

    # -- prediction ----------------------------------------------------------------------------------------
    def predict(self, image: bytes, route: str | None = None) -> Prediction:
        """Top-3 classes of one encoded image, from the version the route resolves to."""
        requested = route or self.choose_route()
        body = {"signature_name": configs.IMAGE_SIGNATURE,
                "instances": [{"b64": base64.b64encode(image).decode("ascii")}]}
        for attempt in (0, 1):
            started = time.perf_counter()
            resolution = self.resolve(requested)
            resolved = time.perf_counter()
            status, answer = self.connection.request(
                "POST", f"{self._model_path}/versions/{resolution.version}:predict", body)
            done = time.perf_counter()
            if status == 404 and attempt == 0:   # the version was unloaded since it was resolved
                self.invalidate()
                continue
            break
        if status != 200:
            message = error_text(answer) or f"HTTP {status}"
            if status == 400 and "signature name" in message:
                raise BadServingResponse(f"the model has no {configs.IMAGE_SIGNATURE!r} signature: {message}")
            if status == 400:   # INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE: about the image sent
                raise ServingRejected(status, message)
            self._raise_for(status, answer)
        top, probabilities = parse_prediction(answer)
        return Prediction(top=top, version=resolution.version, route=resolution.route,
                          requested_route=requested, fallback_reason=resolution.fallback_reason,
                          serving_ms=(done - resolved) * 1000, resolve_ms=(resolved - started) * 1000,
                          probabilities=probabilities)

    def status(self) -> dict:
        """Model versions and states as TF Serving reports them (for the page's status line)."""
        status, body = self.connection.request("GET", self._model_path)
        if status != 200:
            self._raise_for(status, body)
        if not isinstance(body, dict) or not isinstance(body.get("model_version_status"), list):
            # (TF Serving answers a model without versions with a 404 NOT_FOUND, never with an empty 200)
            raise BadServingResponse(f"TF Serving's model status has no model_version_status: "
                                     f"{error_text(body) or type(body).__name__}")
        versions = [{"version": version, "state": state} for version, state in version_states(body).items()]
        return {"model": self.model_name, "versions": versions,
                "available": any(v["state"] == "AVAILABLE" for v in versions)}


def parse_top3(answer) -> list[dict]:
    """The best three classes of :func:`parse_prediction`."""
    return parse_prediction(answer)[0]


def parse_prediction(answer) -> tuple[list[dict], list | None]:
    """(the best three classes, the 27 probabilities or None without them) from a row-format ``predict_images``
    response, checked against the model's contract (:func:`core.prediction_contract.check_prediction`)."""
    try:
        row = answer["predictions"][0]
    except (KeyError, IndexError, TypeError):
        raise BadServingResponse("TF Serving's answer has no predictions") from None
    try:
        indices, scores, probabilities = check_prediction(row)
    except BrokenContract as err:
        raise BadServingResponse(str(err)) from None
    top = [{"class": CLASS_NAMES[index], "letter": GLYPHS[index], "index": index, "probability": score}
           for index, score in list(zip(indices, scores))[:3]]
    return top, probabilities
