"""TF Serving's REST API: routes, handlers, error envelope (model_servers/http_rest_api_handler.cc).

See serving/tfserving_rest_api.md (sections 1-10, 12, 13) for the contract reproduced here.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
import urllib.parse
import zlib

from google.protobuf import json_format
from tensorflow_serving.apis import model_pb2

from serving import inference, request_logging, tensors, uri
from serving.httpserver import RequestError
from serving.batching import BatchOutputs
from serving.json_parse import parse_json
from serving.status import invalid, request_error

log = logging.getLogger("serving.rest")

PREDICT_ROUTE = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)")
GET_ROUTE = re.compile(r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:\/(metadata))?")
V1 = re.compile(r"(?i)/v1/.*", re.DOTALL)
PATH_END = re.compile(r"[?#]")
INT64_MAX = 2 ** 63 - 1
JSON = [("Content-Type", "application/json")]
CORS = [("Access-Control-Allow-Origin", "*"), ("Access-Control-Allow-Methods", "POST, GET"),
        ("Access-Control-Allow-Headers", "Content-Type")]

class _EmptyBody(Exception):
    """A 400 whose body is empty (TF Serving returns before writing the JSON envelope)."""


def _decode_component(text: str) -> str:
    return urllib.parse.unquote(text, errors="surrogateescape")


def uri_path(target: str) -> str:
    """The request target as TF Serving's handlers see it (EvHTTPRequest::uri_path, serving.uri.path_and_query);
    a target libevent's strict parse refuses is libevent's 400 page (EvHTTPServer::DispatchEvRequest)."""
    path = uri.path_and_query(target)
    if path is None:
        raise RequestError(400, f"Malformed request target {target}")
    return path


def _parse_version(text: str | None):
    if text is None:
        return None
    version = int(text)
    if version > INT64_MAX:
        log.error("Failed to convert version: %s to numeric.", text)
        raise _EmptyBody()
    return version


class RestApi:
    """Turns (method, target, headers, body) into (status, headers, body) the way TF Serving does; what libevent
    answers itself (a method it does not allow, a path outside /v1/) raises RequestError, its page."""

    def __init__(self, core, options, metrics, prometheus_path: str | None, runner, request_logger, handlers):
        self.core = core
        self.handlers = handlers      # threads for the work of large requests (see _off_loop)
        self.request_logger = request_logger   # serving.request_logging.ServerRequestLogger
        self.options = options
        self.metrics = metrics
        self.prometheus_path = prometheus_path
        self.runner = runner          # async (servable, signature_name, arrays, timeout in s or None) -> outputs
        self.cors = bool(options.rest_api_enable_cors_support)
        self.timeout = options.rest_api_timeout_in_ms / 1000.0 if options.rest_api_timeout_in_ms > 0 else None

    # ------------------------------------------------------------------------------------ dispatch
    async def handle(self, method: str, target: str, headers: dict, body: bytes):
        if method not in ALLOWED_METHODS:   # evhttp_set_allowed_methods: libevent answers the rest itself
            raise RequestError(501, f"Method {method} is not allowed")
        path = uri_path(target)   # parsed before the request is dispatched, its body read by no handler
        if body and "gzip" in headers.get("content-encoding", ""):   # its size is known only once inflated
            body = await self._off_loop(gunzipped, body, headers)
        # EvHTTPServer::DispatchEvRequest finds the Prometheus handler by the path alone (evhttp_uri_get_path);
        # ProcessPrometheusRequest then compares the path with its query and fragment
        if self.prometheus_path is not None and PATH_END.split(path, 1)[0] == self.prometheus_path:
            if path != self.prometheus_path:
                return 400, [("Content-Type", "text/plain")], \
                    f"Unexpected path: {path}. Should be {self.prometheus_path}".encode()
            return 200, [("Content-Type", "text/plain")], self.metrics.render().encode("utf-8", "surrogateescape")
        if not V1.fullmatch(path):          # EvHTTPServer::DispatchEvRequest: no handler takes it
            raise RequestError(404, f"No handler for {target}")
        extra = CORS if self.cors else []
        started = time.perf_counter()
        if method == "OPTIONS":   # counted as any request is, with no model name (http_server.cc)
            origin = headers.get("origin", "")
            if "http://" in origin or "https://" in origin:
                self.metrics.request("", "OK", "", (time.perf_counter() - started) * 1e6)
                return 200, extra, b""
            log.info("Origin header is missing in CORS preflight")
            self.metrics.request("", "FAILED_PRECONDITION")
            return 400, extra, b""
        model_name, api = "", ""
        try:
            if method == "POST" and (match := PREDICT_ROUTE.fullmatch(path)):
                name, version, label, verb = match.groups()
                model_name = _decode_component(name)   # ParseModelInfo, before the verb is compared
                version = _parse_version(version)
                label = _decode_component(label) if label is not None else None
                if verb not in ("predict", "classify", "regress"):
                    raise invalid(f"Malformed request: {method} {path}")
                api = verb
                if verb == "predict":
                    text = await self.predict(model_name, version, label, body)
                else:
                    text = await self.classify_or_regress(verb, model_name, version, label, body)
            elif method == "GET" and (match := GET_ROUTE.fullmatch(path)):
                name, version, label, metadata = match.groups()
                model_name = _decode_component(name) if name is not None else ""   # ParseModelInfo
                version = _parse_version(version)
                label = _decode_component(label) if label is not None else None
                if not model_name:   # ProcessModelStatusRequest / ProcessModelMetadataRequest's first check
                    raise invalid("Missing model name in request.")
                if metadata == "metadata":
                    text = self.model_metadata(model_name, version, label)
                else:
                    text = self.model_status(model_name, version)
            else:
                raise invalid(f"Malformed request: {method} {path}")
        except _EmptyBody:
            self.metrics.request(model_name, "INVALID_ARGUMENT")
            return 400, JSON + extra, b""
        except Exception as exc:  # noqa: BLE001 - a bug is 500 INTERNAL, its details only in the log
            error = request_error(exc)
            self.metrics.request(model_name, error.code)
            return error.http_status, JSON + extra, tensors.error_body(error.message)
        self.metrics.request(model_name, "OK", api, (time.perf_counter() - started) * 1e6)
        return 200, JSON + extra, tensors.to_bytes(text)    # a label's bytes that are not UTF-8 as they are

    # ------------------------------------------------------------------------------------ handlers
    def resolve(self, name: str, version, label):
        return inference.resolve(self.core, name, version, label)

    def model_status(self, name: str, version) -> str:
        response = inference.model_status(self.core, name, version)
        return json_format.MessageToJson(response, including_default_value_fields=True, indent=1)

    def model_metadata(self, name: str, version, label) -> str:
        servable = self.resolve(name, version, label)
        spec = model_pb2.ModelSpec(name=name)
        spec.version.value = servable.version
        signatures = inference.signature_def_map(servable)
        spec_json = json_format.MessageToJson(spec, including_default_value_fields=True,
                                              preserving_proto_field_name=True, indent=None)
        map_json = json_format.MessageToJson(signatures, including_default_value_fields=True,
                                             preserving_proto_field_name=True, indent=1)
        return '{\n"model_spec":' + spec_json + ',\n"metadata": {"signature_def": ' + map_json + "}\n}"

    def _document(self, body: bytes) -> dict:
        document = parse_json(body)
        if not isinstance(document, dict):
            raise invalid(f"JSON Value: {tensors.dump(document)} Is not object")
        if "signature_name" in document and type(document["signature_name"]) is not str:   # FormatSignatureError(doc)
            raise invalid(f"JSON Value: {tensors.dump(document)} not formatted correctly. "
                          f"'signature_name' key must be a string value.")
        return document

    async def _off_loop(self, function, *args):
        """``function(*args)`` on a handler thread (TF Serving answers every request on one of its executor's
        threads): the decompression, parsing and conversion of a large body, and the formatting of its answer,
        would otherwise hold the connections' loop, so that health checks and other requests wait for them."""
        return await asyncio.get_running_loop().run_in_executor(self.handlers, function, *args)

    async def _for_body(self, body: bytes, function, *args):
        """``function(*args)``, work on ``body`` or its answer: on a handler thread (:meth:`_off_loop`) for a body
        over LARGE_BODY, else here (a handler thread's round trip costs more than a small body's work)."""
        return await self._off_loop(function, *args) if len(body) > LARGE_BODY else function(*args)

    async def predict(self, name: str, version, label, body: bytes) -> str:
        prepared = await self._for_body(body, self._predict_inputs, name, version, label, body)
        servable, signature_name, arrays = prepared[:3]
        outputs = await self._run(servable, signature_name, arrays, "Predict", name)
        return await self._for_body(body, self._predict_answer, name, version, label, prepared, outputs)

    def _predict_inputs(self, name: str, version, label, body: bytes) -> tuple:
        """(servable, signature name, input arrays, requested signature name, row format?) of a predict body."""
        document = self._document(body)
        servable = self.resolve(name, version, label)
        requested = document.get("signature_name", "")
        signature_name = requested or "serving_default"
        signature = _signature(servable, signature_name)
        if signature is None:
            raise invalid(f'Serving signature name: "{signature_name}" not found in signature def')
        if not signature.inputs:
            raise invalid(f"Failed to get input map for signature: {requested or 'DEFAULT'}")
        dtypes = servable.input_dtypes[signature_name]
        has_instances, has_inputs = "instances" in document, "inputs" in document
        if has_instances and has_inputs:
            raise invalid(f"JSON Value: {tensors.dump(document)} Not formatted correctly expecting only one of "
                          f"'inputs' or 'instances' keys to exist ")
        if has_instances:
            instances = document["instances"]
            if type(instances) is not list:
                raise invalid(f"JSON Value: {tensors.dump(document)} Expecting 'instances' to be an list/array")
            if not instances:
                raise invalid(f"JSON Value: {tensors.dump(document)} No values in 'instances' array")
            arrays = tensors.instances_to_arrays(instances, dtypes)
        elif has_inputs:
            arrays = tensors.columnar_to_arrays(document["inputs"], dtypes)
        else:
            raise invalid("Missing 'inputs' or 'instances' key")
        return servable, signature_name, arrays, requested, has_instances

    def _predict_answer(self, name: str, version, label, prepared: tuple, outputs) -> str:
        servable, signature_name, arrays, requested, has_instances = prepared
        if not has_instances:
            answer = tensors.columnar_response(outputs)
        elif isinstance(outputs, BatchOutputs):     # the JSON rows of the whole batch, formatted once
            answer = tensors.predictions_body(outputs.shared(tensors.row_texts))
        else:
            answer = tensors.row_response(outputs)
        if self.request_logger.logs(name):
            spec = request_logging.model_spec(name, signature_name, servable.version)
            self.request_logger.log("predict", spec, lambda: request_logging.predict_messages(
                request_logging.model_spec(name, requested, version, label), spec, arrays, outputs))
        return answer

    async def classify_or_regress(self, verb: str, name: str, version, label, body: bytes) -> str:
        prepared = await self._for_body(body, self._examples_inputs, verb, name, version, label, body)
        servable, signature_name, batch = prepared[:3]
        outputs = await self._run(servable, signature_name, batch, verb.capitalize(), name)
        return await self._for_body(body, self._examples_answer, verb, name, version, label, prepared, outputs)

    def _examples_inputs(self, verb: str, name: str, version, label, body: bytes) -> tuple:
        """(servable, signature name, the examples' feed, document, examples) of a classify or regress body."""
        document = self._document(body)
        examples = tensors.examples_from_json(document, verb)
        servable = self.resolve(name, version, label)
        signature_name = document.get("signature_name", "") or inference.DEFAULT_SIGNATURE
        signature = inference.example_signature(servable, signature_name, verb)
        return servable, signature_name, inference.examples_batch(examples, signature), document, examples

    def _examples_answer(self, verb: str, name: str, version, label, prepared: tuple, outputs) -> str:
        servable, signature_name, _, document, examples = prepared
        # the outputs checked and read as over gRPC (PostProcessClassificationResult / PostProcessRegressionResult),
        # then written from the result, as TF Serving's handler writes the response's result
        result = inference.examples_result(verb, outputs, len(examples))
        answer = (tensors.classify_response(result, outputs.get("classes")) if verb == inference.CLASSIFY
                  else tensors.regress_response(result))
        spec = request_logging.model_spec(name, signature_name, servable.version)
        self.request_logger.log(verb, spec, lambda: request_logging.example_messages(
            verb, request_logging.model_spec(name, document.get("signature_name", ""), version, label), spec,
            examples, result))
        return answer

    async def _run(self, servable, signature_name: str, arrays: dict, api: str, model_name: str) -> dict:
        """The model run (Predict, Classify or Regress); its wall time is the runtime latency metric."""
        started = time.perf_counter()
        outputs = await self.runner(servable, signature_name, arrays, self.timeout)
        self.metrics.runtime(model_name, api, (time.perf_counter() - started) * 1e6)
        return outputs


def _signature(servable, name: str):
    """The SignatureDef called ``name`` or None (a name that is not UTF-8 names none; protobuf maps refuse it)."""
    return servable.signature_defs[name] if name in servable.input_dtypes else None


LARGE_BODY = 256 * 1024   # bytes: a larger body is read into tensors, and answered, on a handler thread
MAX_UNCOMPRESSED_BYTES = 100 * 1024 * 1024   # net_http/compression/gzip_zlib.h kMaxUncompressedBytes


def gunzipped(body: bytes, headers: dict) -> bytes:
    """The request body as TF Serving's handler reads it (EvHTTPRequest::ReadRequestGzipBytes,
    ZLib::UncompressGzipAndAllocate): a body whose Content-Encoding contains "gzip" is inflated into exactly the size
    its last 4 bytes give (the gzip trailer's), up to 100 MiB. One that does not inflate to exactly that size, or
    has bytes after its first gzip member (garbage or a second member), reads as empty."""
    if not body or "gzip" not in headers.get("content-encoding", ""):
        return body
    size = int.from_bytes(body[-4:], "little") if len(body) > 4 else 0   # GzipUncompressedLength
    if size > MAX_UNCOMPRESSED_BYTES:
        return b""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        plain = inflater.decompress(body, size + 1)
    except zlib.error:
        return b""
    if len(plain) != size or not inflater.eof or inflater.unused_data:   # Z_BUF_ERROR, Z_DATA_ERROR
        return b""
    return plain


# The methods TF Serving lets through (EvHTTPServer::Initialize); libevent answers any other with 501.
ALLOWED_METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"})
