"""The REST contract of serving/tfserving_rest_api.md, case by case, against the embedded server."""
import json
import re
import socket

import pytest

from core import configs
from core.labels import CLASS_NAMES, GLYPHS
from tests.support import serving as testing
from tests.support.serving import b64

PREDICT = "/v1/models/letters:predict"


def example(png):
    return b64(testing.example_bytes(png))


# ----------------------------------------------------------------------------------------------- status
def test_status_shape_descending_versions(client):
    status, body = client.get("/v1/models/letters")
    assert status == 200
    assert body == {"model_version_status": [
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
    ]}


def test_status_of_one_version_and_headers(client):
    status, headers, raw = client.request("GET", "/v1/models/letters/versions/001")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(raw)["model_version_status"][0]["version"] == "1"


def test_status_errors(client):
    assert client.get("/v1/models/nope") == (404, {"error": "Could not find any versions of model nope"})
    assert client.get("/v1/models/letters/versions/7") == (404, {"error": "Could not find version 7 of model letters"})
    assert client.get("/v1/models") == (400, {"error": "Missing model name in request."})


def test_a_version_past_int64_fails_before_the_missing_model_name(client):
    """ParseModelInfo converts the version before ProcessModelStatusRequest / ProcessModelMetadataRequest look for
    the model name, and its error returns before MakeJsonFromStatus: 400 with an empty body. It had been the JSON
    "Missing model name in request." A version that converts still gets that error."""
    for path in ("/v1/models/versions/99999999999999999999", "/v1/models/versions/99999999999999999999/metadata"):
        status, _, raw = client.request("GET", path)
        assert (status, raw) == (400, b""), path
    for path in ("/v1/models/versions/7", "/v1/models/versions/7/metadata", "/v1/models/labels/stable/metadata"):
        assert client.get(path) == (400, {"error": "Missing model name in request."}), path


def test_status_ignores_labels_even_unknown(client):
    status, body = client.get("/v1/models/letters/labels/whatever")
    assert status == 200 and len(body["model_version_status"]) == 2


def test_paths_case_insensitive_and_percent_decoded(client):
    assert client.get("/V1/MODELS/letters")[0] == 200
    assert client.get("/v1/models/let%74ers")[0] == 200
    assert client.get("/v1/models/LETTERS")[0] == 404
    assert client.get("/v1/models/letters/METADATA")[1]["model_version_status"]


# --------------------------------------------------------------------------------------------- metadata
def test_metadata_double_nesting_and_signatures(client):
    status, body = client.get("/v1/models/letters/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "letters", "signature_name": "", "version": "2"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert {configs.SERVING_DEFAULT_SIGNATURE, configs.IMAGE_SIGNATURE, configs.TRANSFORM_SIGNATURE} <= set(signatures)
    default = signatures[configs.SERVING_DEFAULT_SIGNATURE]
    examples = default["inputs"][configs.EXAMPLES_INPUT]
    assert examples["dtype"] == "DT_STRING"
    assert examples["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}
    assert examples["name"].endswith(":0")
    probabilities = default["outputs"][configs.PROBABILITIES_OUTPUT]
    assert probabilities["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}, {"size": "27", "name": ""}]
    assert default["method_name"] == "tensorflow/serving/predict" and default["defaults"] == {}
    images = signatures[configs.IMAGE_SIGNATURE]
    assert set(images["outputs"]) == {"probabilities", "top_classes", "top_letters", "top_scores", "top_indices"}


def test_metadata_by_version_and_label(client):
    assert client.get("/v1/models/letters/versions/1/metadata")[1]["model_spec"]["version"] == "1"
    assert client.get("/v1/models/letters/labels/stable/metadata")[1]["model_spec"]["version"] == "1"
    assert client.get("/v1/models/letters/labels/canary/metadata")[1]["model_spec"]["version"] == "2"


def test_metadata_errors(client):
    assert client.get("/v1/models/nope/metadata") == (404, {"error": "Servable not found for request: Latest(nope)"})
    assert client.get("/v1/models/letters/versions/5/metadata") == (
        404, {"error": "Servable not found for request: Specific(letters, 5)"})
    assert client.get("/v1/models/letters/labels/beta/metadata") == (
        400, {"error": "Unrecognized servable version label: beta"})


# ---------------------------------------------------------------------------------------------- predict
def test_predict_images_row_format(client, png):
    status, body = client.post(PREDICT, {"signature_name": configs.IMAGE_SIGNATURE,
                                         "instances": [b64(png), b64(png)]})
    assert status == 200 and list(body) == ["predictions"]
    assert len(body["predictions"]) == 2
    row = body["predictions"][0]
    assert set(row) == {"probabilities", "top_classes", "top_letters", "top_scores", "top_indices"}
    assert len(row["probabilities"]) == 27 and abs(sum(row["probabilities"]) - 1) < 1e-4
    assert row["top_classes"][0] == CLASS_NAMES[2] and row["top_letters"][0] == GLYPHS[2]  # version 2 answered
    assert row["top_indices"][0] == 2 and isinstance(row["top_indices"][0], int)


def test_predict_columnar_format(client, png):
    status, body = client.post(PREDICT, {"signature_name": configs.IMAGE_SIGNATURE,
                                         "inputs": {configs.IMAGE_INPUT: [b64(png)], "ignored": 1}})
    assert status == 200 and list(body) == ["outputs"]
    assert len(body["outputs"]["probabilities"]) == 1 and len(body["outputs"]["top_classes"][0]) == 3


def test_serving_default_single_output_drops_name(client, png):
    status, body = client.post(PREDICT, {"instances": [example(png)]})
    assert status == 200 and len(body["predictions"]) == 1 and len(body["predictions"][0]) == 27
    status, body = client.post(PREDICT, {"inputs": [example(png)]})
    assert status == 200 and len(body["outputs"]) == 1 and len(body["outputs"][0]) == 27


def test_named_instances_objects(client, png):
    status, body = client.post(PREDICT, {"signature_name": configs.IMAGE_SIGNATURE,
                                         "instances": [{configs.IMAGE_INPUT: b64(png)}]})
    assert status == 200 and body["predictions"][0]["top_indices"][0] == 2


def test_version_and_label_routing(client, png):
    def top(path):
        status, body = client.post(path, {"signature_name": configs.IMAGE_SIGNATURE, "instances": [b64(png)]})
        assert status == 200, body
        return body["predictions"][0]["top_indices"][0]

    assert top("/v1/models/letters/versions/1:predict") == 1
    assert top("/v1/models/letters/labels/stable:predict") == 1
    assert top("/v1/models/letters/labels/canary:predict") == 2
    assert top("/v1/models/pinned:predict") == 1


def test_float_outputs_have_decimal_point(client, png):
    _, _, raw = client.request("POST", PREDICT, {"signature_name": configs.IMAGE_SIGNATURE, "instances": [b64(png)]})
    text = raw.decode()
    scores = text.split('"top_scores": [', 1)[1].split("]", 1)[0].split(", ")
    assert all("." in s or "e" in s for s in scores)


def test_transform_features(client, png):
    status, body = client.post(PREDICT, {"signature_name": configs.TRANSFORM_SIGNATURE, "instances": [example(png)]})
    assert status == 200
    image = body["predictions"][0]
    size = configs.Config.from_env().image_size
    assert len(image) == size and len(image[0]) == size and abs(image[0][0][0] - 200 / 255) < 1e-3


# ------------------------------------------------------------------------------------- predict errors
@pytest.mark.parametrize("body, message", [
    ("", "JSON Parse error: The document is empty"),
    ("   ", "JSON Parse error: The document is empty. at offset: 3"),
    ("instances = [1, 2]", "JSON Parse error: Invalid value. at offset: 0"),
    ("[1, 2]", "JSON Value: [1, 2] Is not object"),
    ('{"signature_name": 5, "instances": [1]}',   # FormatSignatureError quotes the whole document
     'JSON Value: {\n    "signature_name": 5,\n    "instances": [1]\n} not formatted correctly. \'signature_name\' '
     "key must be a string value."),
    ('{"signature_name": "nope", "instances": [1]}', 'Serving signature name: "nope" not found in signature def'),
    ('{"signature_name": "__saved_model_init_op", "instances": [1]}',
     "Failed to get input map for signature: __saved_model_init_op"),
    ('{"nothing": 1}', "Missing 'inputs' or 'instances' key"),
    ('{"instances": ["x"], "inputs": ["x"]}', "Not formatted correctly expecting only one of 'inputs' or 'instances' "
                                              "keys to exist "),
    ('{"instances": {"a": 1}}', "Expecting 'instances' to be an list/array"),
    ('{"instances": []}', "No values in 'instances' array"),
    ('{"instances": [1]}', "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: 1 "
                           "Type: Number is not of expected type: string"),
    ('{"instances": [{"b64": "%%%"}]}', "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
                                        "Unable to base64 decode"),
    ('{"instances": [{"b64": "YQ=="}, [{"b64": "YQ=="}]]}',
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting shape [] but got: [1]"),
    ('{"instances": [{"examples": "a"}, "b"]}', "Expecting object but got list at item 1 of input list"),
    ('{"instances": ["a", {"examples": "b"}]}', "Expecting value/list but got object at item 1 of input list"),
    ('{"instances": [{"examples": "a", "x": 1}]}', "Failed to process element: 0 key: x of 'instances' list. Error: "
                                                   "INVALID_ARGUMENT: JSON object: does not have named input: x"),
    ('{"instances": [{}]}',
     "Failed to process element: 0 of 'instances' list. JSON object: {} keys must be equal to: examples"),
    ('{"instances": [{"x": "a"}]}', "Failed to process element: 0 key: x of 'instances' list. Error: "
                                    "INVALID_ARGUMENT: JSON object: does not have named input: x"),
    ('{"instances": [{"b64": "YQ==", "extra": 1}]}', "Failed to process element: 0 key: b64 of 'instances' list. "
                                                     "Error: INVALID_ARGUMENT: JSON object: does not have named input: "
                                                     "b64"),
    ('{"inputs": {"b64": 5}}', "Missing named input: examples in 'inputs' object."),
    ('{"inputs": {"x": ["a"]}}', "Missing named input: examples in 'inputs' object."),
    ('{"inputs": [{"b64": 5}]}', 'JSON Value: {\n    "b64": 5\n} not formatted correctly for base64 data'),
    ('{"instances": ["a"], "x": 1e400}', "JSON Parse error: Number too big to be stored in double. at offset: 26"),
    ('{"instances": ["a"], "x": ' + "9" * 5000 + "}",
     "JSON Parse error: Number too big to be stored in double. at offset: 26"),
])
def test_predict_errors_400(client, body, message):
    status, headers, raw = client.request("POST", PREDICT, body)
    assert status == 400, raw
    assert headers["content-type"] == "application/json"
    error = json.loads(raw)
    assert list(error) == ["error"]
    assert message in error["error"]
    if message.startswith(("JSON Parse", "Serving", "Missing", "Failed to get")):
        assert error["error"] == message


@pytest.mark.parametrize("body, message", [
    # a repeated name: the first value is the one read (FindMember)...
    ('{"signature_name": "nope", "signature_name": "predict_images", "instances": ["a"]}',
     'Serving signature name: "nope" not found in signature def'),
    ('{"instances": 5, "instances": ["a"]}', "Expecting 'instances' to be an list/array"),
    # ...and an object of two "b64" members is no base64 object (IsValBase64Object wants one member)
    ('{"signature_name": "predict_images", "instances": [{"b64": "YQ==", "b64": "YQ=="}]}',
     "Failed to process element: 0 key: b64 of 'instances' list. Error: INVALID_ARGUMENT: JSON object: does not "
     "have named input: b64"),
])
def test_a_repeated_json_name_is_read_as_rapidjson_reads_it(client, body, message):
    status, _, raw = client.request("POST", PREDICT, body)
    assert status == 400 and message in json.loads(raw)["error"], raw


def test_tf_runtime_error_passes_through(client):
    status, body = client.post(PREDICT, {"signature_name": configs.IMAGE_SIGNATURE, "instances": ["not an image"]})
    assert status == 400 and "error" in body and body["error"]


PARSE_EXAMPLE_NODE = "\n\t [[{{node ParseExample/ParseExampleV2}}]]"


@pytest.mark.parametrize("signature", ["serving_default", configs.TRANSFORM_SIGNATURE])
@pytest.mark.parametrize("value, shown", [
    (b"hello", "hello"),
    (b"\x89PNG\r\n\x1a\n", "\\211PNG\\r\\n\\032\\n"),   # not UTF-8: absl::CEscape'd
    # TF's Python binding cuts the message at a NUL byte; it is made whole again from the request's value
    (b"ab\x00cd", "ab\x00cd"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "\\211PNG\\r\\n\\032\\n\\000\\000\\000\\rIHDR"),   # as every PNG
])
def test_unparsable_examples_are_400_with_tf_message(client, signature, value, shown):
    message = f"Could not parse example input, value: '{shown}'{PARSE_EXAMPLE_NODE}"
    for instances in ([b64(value)], [example(testing.png_bytes()), b64(value)]):   # alone and in a batch
        status, body = client.post(PREDICT, {"signature_name": signature, "instances": instances})
        assert (status, body) == (400, {"error": message})
    status, body = client.post(PREDICT, {"signature_name": signature, "inputs": [b64(value)]})
    assert (status, body) == (400, {"error": message})
    # A scalar: this server batches, and TF Serving's batching session refuses a scalar input before the model
    # runs (batching_util.h); without batching it is parsed too (TF Serving's Predict does not check shapes).
    status, body = client.post(PREDICT, {"signature_name": signature, "inputs": b64(value)})
    assert (status, body) == (400, {"error": "Batching Run() input tensors must have at least one dimension"})


def nested(value, depth: int):
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("key", ["instances", "inputs"])
def test_a_tensor_of_more_than_32_dimensions_is_400(client, key):
    """Up to 32 dimensions the model runs and its op answers; numpy and TensorFlow's Python API hold no more, so
    33 to 254 (which TF Serving feeds to the model) have a message of this server's, and above 254 TensorFlow
    refuses the tensor, as TF Serving's Predict says."""
    shape = ",".join(["1"] * 32)
    assert client.post(PREDICT, {key: nested("a", 32)}) == (400, {
        "error": f"Expected serialized to be a scalar or vector, got shape: [{shape}]{PARSE_EXAMPLE_NODE}"})
    for depth in (33, 254):
        assert client.post(PREDICT, {key: nested("a", depth)}) == (400, {
            "error": f"Input examples has {depth} dimensions: this server feeds tensors of at most 32 dimensions."})
    assert client.post(PREDICT, {key: nested("a", 255)}) == (400, {"error": "tensor parsing error: examples"})
    status, body = client.post(PREDICT, {key: [nested("a", 32), nested(1, 32)]})   # a mistyped value comes first
    assert status == 400 and "Type: Number is not of expected type: string" in body["error"], body


def test_json_nested_deeper_than_python_recurses_is_parsed(client, png):
    """rapidjson parses iteratively: a key the server ignores may nest thousands deep, and the request is answered;
    a tensor as deep is TensorFlow's tensor parsing error, as one of 255 dimensions is."""
    for depth in (985, 5000):
        status, body = client.post(PREDICT, '{"instances": ' + json.dumps([example(png)]) + ', "client_meta": '
                                   + "[" * depth + "]" * depth + "}")
        assert status == 200 and list(body) == ["predictions"], body
    for key in ("instances", "inputs"):
        assert client.post(PREDICT, f'{{"{key}": ' + "[" * 5000 + '"a"' + "]" * 5000 + "}") == \
            (400, {"error": "tensor parsing error: examples"})


def test_a_message_cut_at_a_nul_byte_stays_cut_when_two_values_begin_alike_before_it(client):
    """Two distinct values alike up to their NUL byte: which one TF quoted is not known, so nothing is added."""
    for signature in ("serving_default", configs.TRANSFORM_SIGNATURE):
        status, body = client.post(PREDICT, {"signature_name": signature,
                                             "instances": [b64(b"ab\x00cd"), b64(b"ab\x00ef")]})
        assert (status, body) == (400, {"error": "Could not parse example input, value: 'ab"})


@pytest.mark.parametrize("body, message", [
    (b'{"instances": ["\\ud800"]}', "JSON Parse error: The surrogate pair in string is invalid. at offset: 16"),
    (b'{"instances": ["\\ud800\\u0041"]}', "JSON Parse error: The surrogate pair in string is invalid. at offset: 16"),
    (b'{"instances": ["\\\\ud800", 1', "JSON Parse error: Missing a comma or ']' after an array element. at offset: "
                                     "27"),
    (b'{"instances": ["\\ud83d\\ude00\\udc00"]}',
     "Could not parse example input, value: '\\360\\237\\230\\200\\355\\260\\200'" + PARSE_EXAMPLE_NODE),
    (b'{"instances": ["\xff\\"\'"]}', "Could not parse example input, value: '\\377\\\"\\''" + PARSE_EXAMPLE_NODE),
])
def test_json_string_bytes_as_rapidjson(client, body, message):
    status, _, raw = client.request("POST", PREDICT, body)
    assert (status, json.loads(raw)) == (400, {"error": message})


def test_trailing_bytes_and_unknown_keys_ignored(client, png):
    body = json.dumps({"instances": [example(png)], "extra": True}) + " garbage"
    status, _, raw = client.request("POST", PREDICT, body)
    assert status == 200, raw


def test_evaluation_order(client):
    # JSON errors beat an unknown model; an unknown model beats empty instances.
    assert client.request("POST", "/v1/models/nope:predict", "{bad")[0] == 400
    assert client.post("/v1/models/nope:predict", {"instances": []}) == (
        404, {"error": "Servable not found for request: Latest(nope)"})
    assert client.post("/v1/models/letters/versions/9:predict", {"instances": ["a"]}) == (
        404, {"error": "Servable not found for request: Specific(letters, 9)"})
    assert client.post("/v1/models/letters/labels/nolabel:predict", {"instances": ["a"]}) == (
        400, {"error": "Unrecognized servable version label: nolabel"})
    assert client.post("/v1/models/letters/labels/ghost:predict", {"instances": ["a"]}) == (
        404, {"error": "Servable not found for request: Specific(letters, 9)"})


# ----------------------------------------------------------------------------------------------- routes
@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/models/letters/versions/abc"), ("GET", "/v1/models/letters/"), ("GET", "/v1/models/letters/version/1"),
    ("POST", "/v1/models/letters/metadata"), ("GET", "/v1/models/letters:predict"), ("POST", "/v1/models/letters"),
    ("POST", "/v1/models/letters:explain"), ("POST", "/v1/models/letters:PREDICT"), ("GET", "/v1/foo"),
    ("PUT", "/v1/models/letters"), ("DELETE", "/v1/models/letters"), ("POST", "/v1/models/letters:predict?x=1"),
])
def test_malformed_routes(client, method, path):
    status, headers, raw = client.request(method, path, "{}" if method in ("POST", "PUT") else None)
    assert status == 400
    assert json.loads(raw) == {"error": f"Malformed request: {method} {path}"}


def test_version_overflow_is_400_with_empty_body(client):
    status, headers, raw = client.request("GET", "/v1/models/letters/versions/99999999999999999999")
    assert (status, raw) == (400, b"") and headers["content-type"] == "application/json"


def test_non_v1_paths_get_html_404(client):
    for path in ("/", "/v1", "/v2/models/letters", "/models/letters"):
        status, headers, raw = client.request("GET", path)
        assert status == 404 and b"404 Not Found" in raw and "json" not in headers.get("content-type", "")


def test_query_string_and_fragment_are_part_of_model_name(client):
    assert client.get("/v1/models/letters?x=1") == (404, {"error": "Could not find any versions of model letters?x=1"})
    assert client.get("/v1/models/letters#x") == (404, {"error": "Could not find any versions of model letters#x"})


def test_an_absolute_form_target_is_routed_by_its_path(client, server):
    """libevent parses the target (evhttp_uri_parse): the handlers see its path with its query and fragment, not
    its scheme and authority (EvHTTPRequest::uri_path); the Prometheus handler is found by the path alone."""
    assert client.get(server.url + "/v1/models/letters")[0] == 200
    assert client.get("http://other.test/v1/models/letters:bad") == (
        400, {"error": "Malformed request: GET /v1/models/letters:bad"})
    assert client.request("GET", "http://other.test/monitoring/prometheus/metrics")[0] == 200
    status, _, raw = client.request("GET", "http://other.test/monitoring/prometheus/metrics?x=1#y")
    assert status == 400 and raw.decode() == ("Unexpected path: /monitoring/prometheus/metrics?x=1#y. "
                                              "Should be /monitoring/prometheus/metrics")
    status, _, raw = client.request("GET", "http://other.test/v2/models/letters")
    assert status == 404 and b"404 Not Found" in raw


@pytest.mark.parametrize("target", [
    b"/v1/models/letters|x/metadata", b"/v1/models/letters%zz/metadata", b"/v1/models/{letters}/metadata",
    b"/v1/models/\xc3\xa9/metadata", b"/v1/models/letters%2", b"/v1/models/letters#a#b", b"/v1/models/letters?a^b",
    b"1a:b/v1/models/letters", b"http://[zz]/v1/models/letters", b'http://us"er@host/v1/models/letters',
    b"http://host:8a/v1/models/letters",
    b"/monitoring/prometheus/metrics?x|y"])
def test_a_target_libevents_strict_parse_refuses_is_its_400_page(server, target):
    """ParsedEvRequest::decode parses the target with evhttp_uri_parse (flags 0, strict): a byte outside unreserved,
    sub-delims, ':' '@' '/' (and '?' in the query and fragment), a '%' without two hex digits, a second '#', a
    colon in a relative path's first segment, an authority that is no host[:port] refuse it, and
    EvHTTPServer::DispatchEvRequest answers libevent's 400 page before any handler, Prometheus's too, sees it."""
    from serving.httpserver import error_page

    raw = raw_exchange(server, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n") and body == error_page(400), raw


def test_targets_libevents_strict_parse_takes(client, server):
    """Percent escapes, sub-delims, '@' and ':' in the path, '?' in the query and fragment, a user and an IPv6
    literal in the authority: the handlers see them as before."""
    assert client.get("/v1/models/letters%20x/metadata") == (
        404, {"error": "Servable not found for request: Latest(letters x)"})
    assert client.get("/v1/models/l!$&'()*+,;=@:x") == (
        400, {"error": "Malformed request: GET /v1/models/l!$&'()*+,;=@:x"})
    assert client.get("/v1/models/letters?a?b#c?d") == (
        404, {"error": "Could not find any versions of model letters?a?b#c?d"})
    assert client.get("http://user:pw@[::1]:8501/v1/models/letters")[0] == 200


@pytest.mark.parametrize("host, taken", [
    ("[v1.]", True), ("[v1.a:b]", True), ("[vF.x]", True), ("[v.x]", False), ("[v1]", False), ("[vz.x]", False),
    ("[V1.x]", False), ("[]", False), ("[::1%25eth0]", False), ("host:65535", True), ("host:65536", False)])
def test_an_authority_is_read_as_libevents_bracket_addr_ok_and_parse_port_read_it(host, taken):
    """libevent 2.1.8's bracket_addr_ok: an IPvFuture is 'v', hex digits, '.', then any number of unreserved,
    sub-delims and ':' (none too, though RFC 3986 wants one); parse_port refuses a port above 65535."""
    from serving import uri

    assert (uri.path_and_query(f"http://{host}/v1/models/letters") == "/v1/models/letters") is taken


def test_cors_preflight(client):
    status, headers, raw = client.request("OPTIONS", PREDICT, headers={"Origin": "http://example.test"})
    assert (status, raw) == (200, b"")
    assert headers["content-type"] == "text/html; charset=ISO-8859-1"   # libevent's default: TF Serving sets none
    assert client.request("OPTIONS", PREDICT)[0] == 400


def raw_exchange(server, request: bytes) -> bytes:
    """Sends ``request`` as bytes on a new connection; everything the server answers until it closes."""
    host, port = server.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    return response


def test_libevent_headers_and_its_501_for_methods_it_does_not_allow(server):
    """Date on every response, no Content-Length on HEAD, and libevent's own page for TRACE and unknown methods
    (evhttp_set_allowed_methods in EvHTTPServer::Initialize)."""
    import email.utils

    for method, path in (("TRACE", "/v1/models/letters"), ("FOO", "/anything"), ("HEAD", "/v1/models/letters"),
                         ("GET", "/v1/models/letters"), ("GET", "/nope")):
        raw = raw_exchange(server, f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        assert email.utils.parsedate_to_datetime(fields["date"]).tzname() == "UTC", (method, fields)
        if method in ("TRACE", "FOO"):
            assert lines[0] == "HTTP/1.1 501 Not Implemented" and fields["content-type"] == "text/html"
            assert body == (b"<HTML><HEAD>\n<TITLE>501 Not Implemented</TITLE>\n</HEAD><BODY>\n"
                            b"<H1>Not Implemented</H1>\n</BODY></HTML>\n")
        elif method == "HEAD":
            assert "content-length" not in fields and body == b""
        elif path == "/nope":
            assert lines[0] == "HTTP/1.1 404 Not Found" and body.endswith(b"<H1>Not Found</H1>\n</BODY></HTML>\n")
        else:
            assert lines[0] == "HTTP/1.1 200 OK" and int(fields["content-length"]) == len(body)


def test_request_size_bound(server):
    # The body is refused from its Content-Length, before any of it is read.
    response = raw_exchange(server, f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: "
                                    f"{4 * 1024 * 1024 + 1}\r\n\r\n".encode())
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ") and body.startswith(b"<HTML><HEAD>\n<TITLE>413 ")


# -------------------------------------------------------------------------------------- classify/regress
def test_classify_regress_json_checks_before_lookup(client):
    assert client.post("/v1/models/nope:classify", {"x": 1})[1]["error"].endswith(
        "When method is classify, key 'examples' is expected and was not found")
    assert client.post("/v1/models/nope:regress", {"examples": []})[1]["error"].endswith(
        "'examples' value is an empty array")
    assert client.post("/v1/models/nope:classify", {"examples": [{"a": 1}]}) == (
        404, {"error": "Servable not found for request: Latest(nope)"})


def test_classify_rejects_predict_signature(client, png):
    status, body = client.post("/v1/models/letters:classify", {"examples": [{configs.IMAGE_KEY: b64(png)}]})
    assert status == 400 and body["error"].startswith("No classification inputs found in SignatureDef: ")
    status, body = client.post("/v1/models/letters:regress",
                               {"signature_name": "nope", "examples": [{configs.IMAGE_KEY: b64(png)}]})
    assert (status, body) == (400, {"error": "No signature was found with the name: nope"})


# ------------------------------------------------------------------------------------------------ metrics
def test_prometheus_metrics(client, png):
    client.post(PREDICT, {"instances": [example(png)]})
    client.get("/v1/models/nope")
    status, headers, raw = client.request("GET", "/monitoring/prometheus/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    text = raw.decode()
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert ':tensorflow:serving:request_count{model_name="letters",status="OK"}' in text
    assert ':tensorflow:serving:request_count{model_name="nope",status="NOT_FOUND"}' in text
    assert "# TYPE :tensorflow:serving:request_latency histogram" in text
    assert (':tensorflow:serving:request_latency_bucket{model_name="letters",API="predict",entrypoint="REST",'
            'le="+Inf"}') in text
    assert text.endswith("\n")
    status, _, raw = client.request("GET", "/monitoring/prometheus/metrics?x=1")
    assert status == 400 and raw.decode() == ("Unexpected path: /monitoring/prometheus/metrics?x=1. "
                                              "Should be /monitoring/prometheus/metrics")
    status, _, raw = client.request("GET", "/monitoring/prometheus/metrics#frag")
    assert status == 400 and raw.decode() == ("Unexpected path: /monitoring/prometheus/metrics#frag. "
                                              "Should be /monitoring/prometheus/metrics")


def test_preflights_and_mis_cased_verbs_are_counted_as_tf_serving_counts_them(client):
    """http_server.cc counts every request it handles: a CORS preflight too (no model name; FAILED_PRECONDITION
    without an Origin). ParseModelInfo reads the model name and version before the verb is compared."""
    def count(model, status):
        page = client.request("GET", "/monitoring/prometheus/metrics")[2].decode()
        found = re.search(rf':tensorflow:serving:request_count{{model_name="{model}",status="{status}"}} (\d+)', page)
        return int(found.group(1)) if found else 0

    before = {key: count(*key) for key in (("", "OK"), ("", "FAILED_PRECONDITION"), ("letters", "INVALID_ARGUMENT"))}
    assert client.request("OPTIONS", PREDICT, headers={"Origin": "http://example.test"})[0] == 200
    assert client.request("OPTIONS", PREDICT)[0] == 400
    status, _, raw = client.request("POST", "/v1/models/letters:PREDICT", "{}")
    assert status == 400 and json.loads(raw) == {"error": "Malformed request: POST /v1/models/letters:PREDICT"}
    after = {key: count(*key) for key in before}
    assert {key: after[key] - before[key] for key in before} == {("", "OK"): 1, ("", "FAILED_PRECONDITION"): 1,
                                                                ("letters", "INVALID_ARGUMENT"): 1}
    # a version past int64 fails in ParseModelInfo, before the verb: 400 with an empty body
    status, _, raw = client.request("POST", "/v1/models/letters/versions/99999999999999999999:PREDICT", "{}")
    assert (status, raw) == (400, b"")


def test_metrics_page_keeps_model_names_that_are_not_utf8(client):
    assert client.request("GET", "/v1/models/l%FFx")[0] == 404
    status, _, raw = client.request("GET", "/monitoring/prometheus/metrics")
    assert status == 200 and b':tensorflow:serving:request_count{model_name="l\xffx",status="NOT_FOUND"} 1\n' in raw


def test_error_messages_keep_request_bytes_that_are_not_utf8(client):
    """MakeJsonFromStatus writes the message with rapidjson's PrettyWriter, which does not check the encoding: a
    model name or label of the URL (curl_easy_unescape's bytes) and a body string come back as their bytes, a lone
    low-surrogate escape as the 3 bytes rapidjson parsed it to. They had come as '?'."""
    status, _, raw = client.request("GET", "/v1/models/%C3%28")
    assert (status, raw) == (404, b'{\n    "error": "Could not find any versions of model \xc3("\n}')
    status, _, raw = client.request("GET", "/v1/models/letters/labels/%FF/metadata")
    assert (status, raw) == (400, b'{\n    "error": "Unrecognized servable version label: \xff"\n}')
    for sent, back in ((b"\xff", b"\xff"), (b"\\udc00", b"\xed\xb0\x80")):
        status, _, raw = client.request("POST", PREDICT, b'{"signature_name": "' + sent + b'", "instances": [1]}')
        assert (status, raw) == (400, b'{\n    "error": "Serving signature name: \\"' + back
                                 + b'\\" not found in signature def"\n}')
        for verb in ("classify", "regress"):
            status, _, raw = client.request("POST", f"/v1/models/letters:{verb}",
                                            b'{"signature_name": "' + sent + b'", "examples": [{}]}')
            assert (status, raw) == (400, b'{\n    "error": "No signature was found with the name: ' + back + b'"\n}')


def test_a_gzip_body_is_uncompressed_as_tf_serving_does(client, png):
    """Content-Encoding: gzip (libevent's request, auto_uncompress_input on by default); a body that does not
    uncompress reads as empty."""
    import gzip
    body = json.dumps({"instances": [example(png)]}).encode()
    status, _, raw = client.request("POST", PREDICT, gzip.compress(body), headers={"Content-Encoding": "gzip"})
    assert status == 200 and json.loads(raw)["predictions"], raw
    plain = client.request("POST", PREDICT, body)
    assert json.loads(raw) == json.loads(plain[2])
    status, _, raw = client.request("POST", PREDICT, b"\x1f\x8b not gzip at all", headers={"Content-Encoding": "gzip"})
    assert (status, json.loads(raw)) == (400, {"error": "JSON Parse error: The document is empty"})


@pytest.mark.parametrize("after", [b"garbage", b"second member"], ids=["garbage", "second-member"])
def test_a_gzip_body_with_bytes_after_its_first_member_reads_as_empty(client, png, after):
    """UncompressGzipAndAllocate inflates into the size the body's last 4 bytes give and fails on input left over
    (Z_DATA_ERROR) or a size that does not match: the body reads as empty, whatever the first member holds."""
    import gzip
    body = gzip.compress(json.dumps({"instances": [example(png)]}).encode())
    body += gzip.compress(b'{"instances": []}') if after == b"second member" else after
    status, _, raw = client.request("POST", PREDICT, body, headers={"Content-Encoding": "gzip"})
    assert (status, json.loads(raw)) == (400, {"error": "JSON Parse error: The document is empty"})
