"""The web backend's JSON API against the embedded TF Serving: predict, routing, safety, errors."""
import io
import json
import re
import socket
import threading
import struct
import time
import urllib.parse
import zlib

import pytest
from PIL import Image

from core.labels import CLASS_NAMES, GLYPH_OF
from tests.conftest import noise_rows_webp
from tests.support.trickle import trickle
from tests.web.conftest import (CANARY_CLASS, CANARY_VERSION, STABLE_CLASS, STABLE_VERSION, Api, b64, blank_png,
                                letter_png, padded_png)


def bomb_png(width=100_000, height=100_000) -> bytes:
    """A valid PNG header announcing a huge image (a decompression bomb) with a tiny body."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")


@pytest.fixture
def web(start_web, serving_labelled):
    return start_web(serving_labelled.url)


@pytest.fixture
def api(web):
    return Api(web.url)


def assert_answer(answer, version, route, best):
    assert [entry["class"] for entry in answer["top"]][0] == best
    assert len(answer["top"]) == 3
    for entry in answer["top"]:
        assert entry["class"] in CLASS_NAMES
        assert entry["letter"] == GLYPH_OF[entry["class"]]
        assert 0.0 <= entry["probability"] <= 1.0
    probabilities = [entry["probability"] for entry in answer["top"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert answer["model_version"] == str(version)
    assert answer["route"] == route
    assert answer["latency_ms"] > 0 and answer["serving_ms"] > 0


# ----------------------------------------------------------------------------------------------- basics
def test_healthz_page_and_security_headers(api):
    status, headers, body = api.request("GET", "/healthz")
    assert status == 200 and body == {"status": "ok"}
    status, headers, page = api.request("GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    html = page.decode("utf-8")
    assert 'dir="rtl"' in html and 'name="viewport"' in html
    # No inline script or style, no external resource: every script has a local src.
    assert re.findall(r"<script(?![^>]*\ssrc=\"/static/)", html) == []
    assert " on" not in re.sub(r"\s+", " ", " ".join(re.findall(r"<[^>]+>", html))).replace(" one", "")
    assert "<style" not in html and "http://" not in html and "https://" not in html
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        status, headers, _ = api.request("GET", f"/static/{name}")
        assert status == 200 and headers["content-type"].startswith(kind)
        assert headers["x-content-type-options"] == "nosniff"
    status, headers, body = api.request("GET", "/api/status")
    assert status == 200 and body["serving"] == "up"
    assert {v["version"] for v in body["versions"]} == {"1", "2"}
    assert "nosniff" == headers["x-content-type-options"] and "content-security-policy" in headers


def test_page_script_never_uses_inner_html():
    from web.server import STATIC_DIR

    script = open(f"{STATIC_DIR}/app.js", encoding="utf-8").read()
    assert not re.search(r"\.(innerHTML|outerHTML|insertAdjacentHTML)\b", script)
    assert "eval(" not in script and "document.write" not in script


def test_classes(api):
    status, body = api.get("/api/classes")
    assert status == 200
    assert [c["class"] for c in body["classes"]] == list(CLASS_NAMES)
    assert body["classes"][0] == {"index": 0, "class": "alef", "letter": "א"}


def test_unknown_routes_and_methods(api):
    assert api.request("GET", "/nope")[0] == 404
    assert api.request("GET", "/static/../server.py")[0] == 404
    assert api.request("GET", "/static/missing.js")[0] == 404
    status, headers, body = api.request("GET", "/api/predict")
    assert status == 405 and headers["allow"] == "POST" and body["reason"] == "method_not_allowed"
    assert api.request("DELETE", "/api/feedback")[0] == 405
    for method, path, allowed in [("DELETE", "/api/predict", "POST"), ("OPTIONS", "/", "GET, HEAD"),
                                  ("PUT", "/static/app.js", "GET, HEAD")]:
        status, headers, body = api.request(method, path)     # a 405 names the methods the route takes
        assert (status, headers.get("allow"), body["reason"]) == (405, allowed, "method_not_allowed"), path
    status, headers, body = api.request("DELETE", "/nope")
    assert status == 404 and "allow" not in headers


# ----------------------------------------------------------------------------------------------- predict
def test_predict_json_base64(api):
    status, answer = api.predict(letter_png())
    assert status == 200, answer
    assert_answer(answer, STABLE_VERSION, "stable", STABLE_CLASS)
    assert answer["requested_route"] == "stable" and answer["fallback_reason"] == ""
    assert answer["image"] == {"format": "PNG", "mode": "L", "width": 48, "height": 48,
                               "bytes": len(letter_png()), "reencoded": False}


def test_predict_data_url_multipart_and_raw(api):
    png = letter_png(seed=1)
    status, answer = api.post_json("/api/predict", {"image": "data:image/png;base64," + b64(png)})
    assert status == 200 and answer["top"][0]["class"] == STABLE_CLASS

    boundary = "----letters-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"route\"\r\n\r\ncanary\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
    status, _, answer = api.request("POST", "/api/predict", body,
                                    {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200, answer
    assert_answer(answer, CANARY_VERSION, "canary", CANARY_CLASS)

    status, _, answer = api.request("POST", "/api/predict", png, {"Content-Type": "image/png"})
    assert status == 200 and answer["model_version"] == str(STABLE_VERSION)


def test_predict_takes_the_data_urls_of_rfc_2397_and_says_a_malformed_one_is(api):
    """A data: URL without a media type, or with a parameter whose value is URL-escaped, is a data: URL (they had
    been refused as "'image' is not valid base64"); one that is not is said to be no valid data: URL."""
    png = letter_png(seed=1)
    for url in ("data:;base64," + b64(png), "data:image/png;name=a%20b.png;base64," + b64(png),
                "data:image/png," + urllib.parse.quote(png)):
        status, answer = api.post_json("/api/predict", {"image": url})
        assert (status, answer["top"][0]["class"]) == (200, STABLE_CLASS), (url[:40], answer)
    for url in ("data:image/png;name=a b.png;base64," + b64(png), "data:image/png;base64" + b64(png)):
        status, answer = api.post_json("/api/predict", {"image": url})
        assert (status, answer["reason"]) == (400, "bad_base64") and "not a valid data: URL" in answer["error"]
    status, answer = api.post_json("/api/predict", {"image": "data:image/png;base64,!!"})
    assert (status, answer["error"]) == (400, "'image' is not valid base64")


def test_predict_takes_base64_without_its_padding_as_the_model_server_does(api, serving_labelled):
    """Base64 whose trailing "=" are left out is read, as TF Serving reads {"b64": ...} (absl::Base64Unescape):
    the web client had refused the bytes its model server takes ("'image' is not valid base64")."""
    png = padded_png()
    unpadded = b64(png).rstrip("=")
    assert unpadded != b64(png)
    status, answer = Api(serving_labelled.url).post_json(
        "/v1/models/letters/labels/stable:predict", {"signature_name": "predict_images", "instances": [{"b64": unpadded}]})
    assert status == 200, answer
    for image in (unpadded, {"b64": unpadded}, "data:image/png;base64," + unpadded, unpadded[:40] + "\n" + unpadded[40:]):
        status, answer = api.post_json("/api/predict", {"image": image})
        assert (status, answer["top"][0]["class"]) == (200, STABLE_CLASS), answer
    for image in (unpadded + "=", b64(png) + "=", unpadded[:-1] + "!"):   # padding short of the group's, or a stray
        status, answer = api.post_json("/api/predict", {"image": image})
        assert (status, answer) == (400, {"error": "'image' is not valid base64", "reason": "bad_base64"})


def test_predict_reencodes_formats_tensorflow_misreads(api):
    img = Image.open(io.BytesIO(letter_png())).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="TIFF")
    status, answer = api.predict(buf.getvalue())
    assert status == 200, answer
    assert answer["image"]["format"] == "TIFF" and answer["image"]["reencoded"] is True
    shown = Image.open(io.BytesIO(__import__("base64").b64decode(answer["image"]["sent_b64"])))
    assert shown.format == answer["image"]["sent_format"] == "PNG" and shown.size == (48, 48)
    buf = io.BytesIO()
    img.save(buf, format="WEBP", quality=90)                            # a lossy WebP: sent as a JPEG
    status, answer = api.predict(buf.getvalue())
    assert status == 200 and answer["image"]["format"] == "WEBP" and answer["image"]["sent_format"] == "JPEG"
    assert Image.open(io.BytesIO(__import__("base64").b64decode(answer["image"]["sent_b64"]))).format == "JPEG"


def test_explicit_routes(api):
    assert_answer(api.predict(letter_png(), route="canary")[1], CANARY_VERSION, "canary", CANARY_CLASS)
    assert_answer(api.predict(letter_png(), route="stable")[1], STABLE_VERSION, "stable", STABLE_CLASS)
    assert_answer(api.predict(letter_png(), route="latest")[1], CANARY_VERSION, "latest", CANARY_CLASS)
    status, answer = api.predict(letter_png(), route="beta")
    assert status == 400 and answer["reason"] == "bad_route"


def test_canary_share_routes_that_share(start_web, serving_labelled):
    everything = Api(start_web(serving_labelled.url, canary_share=1.0).url)
    for _ in range(3):
        assert_answer(everything.predict(letter_png())[1], CANARY_VERSION, "canary", CANARY_CLASS)
    web = start_web(serving_labelled.url, canary_share=0.3)
    web.backend.router._rng.seed(1234)
    api = Api(web.url)
    routes = []
    for i in range(60):
        status, answer = api.predict(letter_png(seed=i))
        assert status == 200
        expected = (CANARY_VERSION, CANARY_CLASS) if answer["route"] == "canary" else (STABLE_VERSION, STABLE_CLASS)
        assert_answer(answer, expected[0], answer["route"], expected[1])
        routes.append(answer["route"])
    assert set(routes) == {"stable", "canary"}
    assert 0.1 <= routes.count("canary") / len(routes) <= 0.55


def test_falls_back_to_latest_without_labels(start_web, serving_plain):
    api = Api(start_web(serving_plain.url, canary_share=0.5).url)
    for _ in range(4):
        status, answer = api.predict(letter_png())
        assert status == 200, answer
        assert_answer(answer, CANARY_VERSION, "latest", CANARY_CLASS)   # the plain server loads the newest only
        assert answer["requested_route"] in ("stable", "canary")
        assert "not configured" in answer["fallback_reason"]


def test_label_cache_follows_the_server(start_web, serving_labelled):
    web = start_web(serving_labelled.url, version_cache_seconds=0.0)
    router = web.backend.router
    assert router.resolve("stable").version == STABLE_VERSION
    assert router.resolve("canary").version == CANARY_VERSION
    assert router.resolve("latest").version == CANARY_VERSION


# ----------------------------------------------------------------------------------------------- errors
def test_serving_down_is_a_clear_503(start_web, dead_url):
    api = Api(start_web(dead_url).url)
    status, answer = api.predict(letter_png())
    assert status == 503
    assert answer["reason"] == "serving_unreachable"
    assert "model server is down" in answer["error"] and "not reachable" in answer["error"]
    status, body = api.get("/api/status")
    assert status == 503 and body["serving"] == "down" and "not reachable" in body["error"]
    assert api.get("/healthz") == (200, {"status": "ok"})   # liveness does not depend on TF Serving


def test_a_model_server_too_slow_is_a_504_said_slow_not_down(start_web, slow_predict):
    """A prediction TF Serving does not answer within --serving-timeout had been said "The model server is down",
    while the status route said up: it is slow, maybe busy."""
    web = start_web(slow_predict, serving_timeout=0.5)
    api = Api(web.url)
    status, answer = api.predict(letter_png())
    assert (status, answer["reason"]) == (504, "serving_timeout")
    assert answer["error"] == (f"The model server is slow: TF Serving at {slow_predict} did not answer within 0.5 s; "
                               "it may be busy. Try again later.")
    status, answer = api.get("/api/status")
    assert (status, answer["serving"]) == (200, "up")


def test_a_model_server_answer_nested_too_deeply_is_a_502(start_web):
    """An answer nested deeper than Python's JSON decoder follows does not follow the contract, as any other answer
    that is not JSON: a 502 (it had been a RecursionError, a 500 internal_error, the status without its fields)."""
    from tests.support.http_stub import JsonHandler, serving

    deep = b"[" * 100_000 + b"]" * 100_000

    class Handler(JsonHandler):
        def do_GET(self):
            if self.path.endswith("/metadata"):
                self.answer(200, json.dumps({"model_spec": {"name": "letters", "version": "1"}}).encode())
            else:
                self.answer(200, deep)

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.answer(200, deep)

    with serving(Handler) as server:
        url = f"http://127.0.0.1:{server.server_port}"
        api = Api(start_web(url).url)
        status, answer = api.predict(letter_png())
        assert (status, answer["reason"]) == (502, "bad_serving_response"), answer
        status, body = api.get("/api/status")
        assert (status, body["serving"], body["reason"]) == (502, "error", "bad_serving_response"), body
        assert (body["tf_serving_url"], body["model"]) == (url, "letters") and body["error"]


@pytest.mark.parametrize("row", [
    {"probabilities": [0.1] * 10, "top_indices": [1, 0, 2], "top_scores": [0.1, 0.1, 0.1]},   # another model's
    {"probabilities": [1 / 27] * 27, "top_indices": [1, 1, 1], "top_scores": [1 / 27] * 3},
    {"probabilities": [0.9] * 27, "top_indices": [1, 0, 2], "top_scores": [0.9] * 3},
])
def test_a_model_answer_that_breaks_the_27_class_contract_is_a_502(start_web, row):
    """The web client shows no prediction from an answer that is not the letters model's (it had been a 200, the
    27 letters' names put on another model's indices)."""
    from tests.support.http_stub import JsonHandler, serving

    class Handler(JsonHandler):
        def do_GET(self):
            self.answer(200, json.dumps({"model_spec": {"name": "letters", "version": "1"}}).encode())

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.answer(200, json.dumps({"predictions": [row]}).encode())

    with serving(Handler) as server:
        api = Api(start_web(f"http://127.0.0.1:{server.server_port}").url)
        status, answer = api.predict(letter_png())
        assert (status, answer["reason"]) == (502, "bad_serving_response"), answer
        assert answer["error"].startswith("The model server answered unexpectedly: the prediction's ")


def test_unknown_model_is_a_503(start_web, serving_labelled):
    api = Api(start_web(serving_labelled.url, model_name="nope").url)
    status, answer = api.predict(letter_png())
    assert status == 503 and answer["reason"] == "model_not_loaded" and "'nope'" in answer["error"]
    # the server is up: the message names the setting to check rather than saying it is down
    assert "is down" not in answer["error"] and "--model-name, LETTERS_WEB_MODEL_NAME" in answer["error"]
    status, body = api.get("/api/status")
    assert status == 503 and "is down" not in body["error"] and "LETTERS_WEB_MODEL_NAME" in body["error"]


@pytest.mark.parametrize("body, content_type, status, reason", [
    (b"{not json", "application/json", 400, "bad_json"),
    (b"\xff\xfe", "application/json", 400, "bad_json"),
    (b"[1, 2]", "application/json", 400, "bad_json"),
    (b"{}", "application/json", 400, "missing_field"),
    (b'{"image": 12}', "application/json", 400, "bad_base64"),
    (b'{"image": "not base64 !!"}', "application/json", 400, "bad_base64"),
    (b'{"image": "YWJjZ"}', "application/json", 400, "bad_base64"),   # truncated
    (b'{"image": ""}', "application/json", 400, "empty"),
    (json.dumps({"image": b64(b"hello, not an image")}).encode(), "application/json", 400, "not_an_image"),
    (json.dumps({"image": b64(bomb_png())}).encode(), "application/json", 400, "decompression_bomb"),
    (json.dumps({"image": b64(letter_png()[:60])}).encode(), "application/json", 400, "truncated_or_corrupt"),
    (json.dumps({"image": b64(blank_png(255))}).encode(), "application/json", 400, "no_ink"),   # had answered ר 0.41
    (blank_png(0), "image/png", 400, "no_ink"),                                                # and י 0.85
    (b'{"image": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json", 400, "bad_json"),   # too deep
    (b"image=abc", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (b"hello", "text/plain", 415, "unsupported_media_type"),
    (b"--x\r\n\r\n--x--", "multipart/form-data", 400, "bad_multipart"),
    (b"--x\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nv\r\n--x--\r\n", "multipart/form-data; boundary=x",
     400, "missing_field"),
])
def test_malformed_predict_requests(api, body, content_type, status, reason):
    got, _, answer = api.request("POST", "/api/predict", body, {"Content-Type": content_type})
    assert (got, answer["reason"]) == (status, reason), answer
    assert answer["error"]


def test_oversize_requests_are_413(start_web, serving_labelled):
    web = start_web(serving_labelled.url, max_upload_bytes=50_000)
    api = Api(web.url)
    big = letter_png(size=400) + b"\0" * 60_000           # a valid PNG followed by padding: 110 kB
    status, answer = api.predict(big)                   # base64 JSON body over the body cap
    assert status == 413 and answer["reason"] == "too_large"
    status, _, answer = api.request("POST", "/api/predict", big, {"Content-Type": "image/png"})
    assert status == 413 and answer["reason"] == "too_large"   # raw body under the body cap, image over
    status, answer = api.feedback(big, "alef")
    assert status == 413
    status, answer = api.predict(letter_png())           # small images still pass
    assert status == 200


@pytest.mark.parametrize("idle_timeout, request_timeout, status", [(1.0, 20.0, b"413"), (20.0, 1.0, b"408")])
def test_an_oversize_body_that_stalls_is_answered_without_a_server_error(start_web, dead_url, caplog, idle_timeout,
                                                                        request_timeout, status):
    """A body over the limit is read and dropped so that the client sees the 413; one that stalls on the way past the
    idle timeout still gets its 413 (it had been a 500 internal_error and a traceback), one past the request timeout
    its 408."""
    import logging
    caplog.set_level(logging.INFO, logger="web")
    web = start_web(dead_url, max_upload_bytes=50_000, idle_timeout=idle_timeout, request_timeout=request_timeout)
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:
        sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 1000000\r\n\r\n" + b"\0" * 1000)
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 " + status), reply[:200]
    assert b"Connection: close" in reply
    assert "Traceback" not in caplog.text and "internal error" not in caplog.text, caplog.text


def test_an_upload_whose_reencoding_is_oversize_is_413_and_neither_sent_nor_stored(start_web, serving_labelled):
    webp = noise_rows_webp()                            # 36 kB; its PNG for the model, 480 kB
    web = start_web(serving_labelled.url, max_upload_bytes=100_000)
    api = Api(web.url)
    for status, answer in (api.predict(webp), api.feedback(webp, "alef")):
        assert (status, answer["reason"]) == (413, "too_large"), answer
        assert "re-encoded to for the model, over the 100000-byte limit" in answer["error"]
    assert web.backend.store.count() == 0


def test_pixel_limit_guards_decoding(start_web, serving_labelled):
    api = Api(start_web(serving_labelled.url, max_image_pixels=10_000).url)
    status, answer = api.predict(letter_png(size=200))   # 40,000 pixels
    assert status == 400 and answer["reason"] == "decompression_bomb"
    assert api.predict(letter_png(size=64))[0] == 200


def test_length_required_and_chunked_bodies(web):
    for head in (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n",
                 b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:
            sock.sendall(head)
            sock.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 411"), reply[:200]


def read_until_closed(sock) -> bytes:
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    return reply


@pytest.mark.parametrize("head", [b"POST /nope", b"POST /api/status", b"PUT /api/feedback"])
def test_an_unread_body_is_not_taken_for_the_next_request(web, head):
    """A 404 / 405 does not read the request's body: the connection is closed, so a body that looks like a
    request is never answered as one (request smuggling on a keep-alive connection)."""
    smuggled = b"GET /api/classes HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:
        sock.sendall(head + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(smuggled), smuggled))
        reply = read_until_closed(sock)
    assert reply.count(b"HTTP/1.1 ") == 1 and b"Connection: close" in reply, reply[:300]
    assert reply.startswith((b"HTTP/1.1 404", b"HTTP/1.1 405")) and b'"classes"' not in reply


@pytest.mark.parametrize("head", [b"GET /healthz", b"HEAD /healthz", b"GET /static/app.js", b"GET /"])
def test_a_body_sent_with_a_get_or_head_is_not_taken_for_the_next_request(web, head):
    """A GET or HEAD answered normally had kept the connection open with its body unread: a feedback POST in that
    body was answered and stored (request smuggling behind a proxy). The connection is closed after the answer."""
    smuggled = b"GET /api/classes HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:
        sock.sendall(head + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(smuggled), smuggled))
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 200") and reply.count(b"HTTP/1.1 ") == 1, reply[:300]
    assert b"Connection: close" in reply and b'"classes"' not in reply
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:   # no body: kept alive
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" + smuggled)
        sock.shutdown(socket.SHUT_WR)
        reply = read_until_closed(sock)
    assert reply.count(b"HTTP/1.1 200") == 2 and b'"classes"' in reply


@pytest.mark.parametrize("lengths", [(b"2", b"41"), (b"0_2",), (b"+2",), (b"2, 41",), (b"9" * 5000,)])
def test_a_content_length_that_is_not_one_number_is_refused_and_the_connection_closed(web, lengths):
    """RFC 9112 6.3: two Content-Length headers that differ had framed the message by the first, so the rest of
    the body was answered as a second request; int() had read "0_2" and "+2" as 2."""
    body = b'{}GET /api/classes HTTP/1.1\r\nHost: x\r\n\r\n'
    headers = b"".join(b"Content-Length: " + value + b"\r\n" for value in lengths)
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:
        sock.sendall(b"POST /api/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + headers
                     + b"\r\n" + body)
        reply = read_until_closed(sock)
    assert reply.startswith((b"HTTP/1.1 400", b"HTTP/1.1 413")) and reply.count(b"HTTP/1.1 ") == 1
    assert b'"classes"' not in reply and b"Connection: close" in reply


@pytest.mark.parametrize("request_line, status", [(b"FOO / HTTP/1.1", 501), (b"GET / HTTP/9.9", 505),
                                                  (b"GARBAGE", 400), (b"GET /" + b"a" * 70000 + b" HTTP/1.1", 414)])
def test_the_http_layers_own_refusals_are_json_with_the_security_headers(web, request_line, status):
    """The standard library's error page had been HTML without the Content-Security-Policy and the other headers
    every answer carries."""
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:
        sock.sendall(request_line + b"\r\nHost: x\r\n\r\n")
        reply = read_until_closed(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == str(status).encode(), head
    assert b"Content-Type: application/json" in head and b"Content-Security-Policy:" in head
    assert b"X-Content-Type-Options: nosniff" in head and b"X-Frame-Options: DENY" in head
    assert set(json.loads(body)) == {"error", "reason"}


@pytest.mark.parametrize("request_line", [b"HELLO", b"FOO / HTTP/1.1", b"GET / HTTP/9.9",
                                          b"GET /" + b"a" * 70000 + b" HTTP/1.1"],
                         ids=["bad_request_line", "unknown_method", "unknown_version", "uri_too_long"])
def test_a_client_that_goes_away_before_a_refusal_of_the_http_layer_is_one_line(web, monkeypatch, caplog, capsys,
                                                                                request_line):
    """The standard library's refusal of a request whose client has closed its connection: the one INFO line of a
    client that went away, as for any other answer (it had been a BrokenPipeError traceback on stderr)."""
    import logging
    from web import server as web_server

    refuse = web_server.Handler.send_error

    def refuse_late(self, *args, **kwargs):   # the client's reset arrives first
        time.sleep(0.3)
        return refuse(self, *args, **kwargs)

    monkeypatch.setattr(web_server.Handler, "send_error", refuse_late)
    caplog.set_level(logging.INFO, logger="web")
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:
        sock.sendall(request_line + b"\r\nHost: x\r\n\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # close with a reset
    deadline = time.monotonic() + 30
    while "the client closed the connection" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "the client closed the connection" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "Traceback" not in capsys.readouterr().err
    assert Api(web.url).get("/healthz")[0] == 200


def test_idle_connections_are_closed_and_do_not_block_others(start_web, serving_labelled):
    """Clients that connect and send nothing (or stop half-way through a body) hold a handler thread only for
    the idle timeout; with every thread held, a new request is answered once they are dropped."""
    web = start_web(serving_labelled.url, max_handler_threads=2, idle_timeout=1.0)
    idle = [socket.create_connection(("127.0.0.1", web.port), timeout=10) for _ in range(2)]
    try:
        idle[1].sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 100\r\n\r\n{\"image\"")
        started = time.monotonic()
        status, _, body = Api(web.url, timeout=20).request("GET", "/healthz")
        assert status == 200 and body == {"status": "ok"} and time.monotonic() - started < 10
        assert read_until_closed(idle[0]) == b""                      # closed without an answer
        assert read_until_closed(idle[1]).startswith(b"HTTP/1.1 408")  # the stalled body is told why
    finally:
        for sock in idle:
            sock.close()


def test_a_new_connection_closes_an_idle_keep_alive_one_when_every_thread_is_taken(start_web, serving_labelled,
                                                                                   monkeypatch):
    """With every handler thread taken, a new connection is answered at once: an idle keep-alive connection is
    closed to make room (it had held its thread for the idle timeout), never one whose request is being read or
    answered."""
    import http.client

    web = start_web(serving_labelled.url, max_handler_threads=4, idle_timeout=60.0)
    answer, entered, release = web.backend.predict, threading.Event(), threading.Event()
    monkeypatch.setattr(web.backend, "predict", lambda *a, **k: (entered.set(), release.wait(30), answer(*a, **k))[2])
    reading = threading.Event()                 # the server is reading the request sent half-way
    handler = web.server.RequestHandlerClass    # (this server's own class)
    parse = handler.parse_request
    kept_alive = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)   # its 2nd request sent half-way

    def parse_request(self):
        if kept_alive.sock and self.connection.getpeername() == kept_alive.sock.getsockname() \
                and self.raw_requestline.startswith(b"POST"):
            reading.set()
        return parse(self)

    monkeypatch.setattr(handler, "parse_request", parse_request)
    body = json.dumps({"image": b64(letter_png())}).encode()
    post = (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode())
    answering = socket.create_connection(("127.0.0.1", web.port), timeout=10)
    idle = [http.client.HTTPConnection("127.0.0.1", web.port, timeout=10) for _ in range(2)]
    try:
        answering.sendall(post + body)
        assert entered.wait(10)                 # answered slowly
        kept_alive.request("GET", "/api/classes")
        assert kept_alive.getresponse().read()
        half_way = kept_alive.sock
        half_way.sendall(post + body[:10])
        assert reading.wait(10)
        for connection in idle:                 # then left idle, kept alive
            connection.request("GET", "/api/classes")
            assert connection.getresponse().read()
        status, _, answer_body = Api(web.url, timeout=10).request("GET", "/healthz")   # a 5th connection
        assert status == 200 and answer_body == {"status": "ok"}
        release.set()
        half_way.sendall(body[10:])
        for sock in (answering, half_way):      # neither was cut
            reply = read_until_closed(sock)
            assert reply.startswith(b"HTTP/1.1 200") and b'"model_version"' in reply, reply[:200]
        still_open = 0                          # one idle connection was closed, the other still serves
        for connection in idle:
            try:
                connection.request("GET", "/healthz")
                still_open += connection.getresponse().status == 200
            except (http.client.HTTPException, ConnectionError):
                pass
        assert still_open == 1
    finally:
        release.set()
        for sock in (answering, kept_alive, *idle):
            sock.close()


def test_clients_sending_requests_back_to_back_are_not_cut_when_they_outnumber_the_threads(start_web,
                                                                                          serving_labelled):
    """More keep-alive clients than handler threads, each sending its requests back to back: every request is
    answered. A connection had been closed for room the moment its answer was written, its client's next request
    on the way (BrokenPipeError, RemoteDisconnected): only one idle for the grace is closed, else a new connection
    waits for a thread."""
    import http.client

    web = start_web(serving_labelled.url, max_handler_threads=3, idle_timeout=60.0)
    body = json.dumps({"image": b64(letter_png())})
    outcomes, lock = [], threading.Lock()

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", web.port, timeout=30)
        try:
            for _ in range(8):
                try:
                    connection.request("POST", "/api/predict", body, {"Content-Type": "application/json"})
                    response = connection.getresponse()
                    response.read()
                    outcome = response.status
                except (http.client.HTTPException, OSError) as err:
                    outcome = type(err).__name__
                    connection.close()          # (the next request on a new connection)
                with lock:
                    outcomes.append(outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert outcomes.count(200) == len(outcomes) == 48, {o: outcomes.count(o) for o in set(outcomes)}


class _Room(threading.Condition):
    """The server's condition for handler slots: ``chosen`` is set when the acceptor waits on it, having chosen
    which idle connection (if any) to close for room."""

    def __init__(self):
        super().__init__()
        self.chosen = threading.Event()

    def wait(self, timeout=None):
        self.chosen.set()
        return super().wait(timeout)


def _wait_until_idle(web, client: socket.socket) -> None:
    """Returns once the server counts ``client``'s kept-alive connection as idle (its handler waits for the next
    request); fails after 10 s."""
    def idle():
        for connection in list(web.server._idle):
            try:
                if connection.getpeername() == client.getsockname():
                    return True
            except OSError:
                pass
        return False

    deadline = time.monotonic() + 10
    while not idle():
        assert time.monotonic() < deadline, "the handler never waited for the next request"
        time.sleep(0.01)


def _hold_after_the_wait(web, monkeypatch, client: socket.socket):
    """Watches the acceptor's choices (returned, a :class:`_Room`) and holds the handler of ``client``'s kept-alive
    connection, once its wait for the next request is over (before it says it is busy), until the acceptor next
    waits; ``room.held`` is set while it is held."""
    room = _Room()
    room.held = threading.Event()
    monkeypatch.setattr(web.server, "_room", room)
    busy = web.server.connection_busy

    def connection_busy(connection):
        try:
            mine = connection in web.server._idle and connection.getpeername() == client.getsockname()
        except OSError:
            mine = False
        if mine:
            room.held.set()
            assert room.chosen.wait(10)
        return busy(connection)

    monkeypatch.setattr(web.server, "connection_busy", connection_busy)
    return room


def test_a_request_arriving_on_an_idle_connection_is_answered_though_a_new_one_needs_its_thread(start_web, dead_url,
                                                                                              monkeypatch):
    """The next request arrives on an idle keep-alive connection; before its handler says it is busy, a new
    connection needs its thread. Reading the request's first bytes had emptied the socket, so the acceptor took the
    connection for idle and closed it unanswered; the bytes stay in the socket until the handler is busy."""
    import http.client

    web = start_web(dead_url, max_handler_threads=1, idle_timeout=20.0)
    kept_alive = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    kept_alive.connect()
    room = _hold_after_the_wait(web, monkeypatch, kept_alive.sock)
    new = None
    try:
        kept_alive.request("GET", "/healthz")
        assert kept_alive.getresponse().read()
        _wait_until_idle(web, kept_alive.sock)    # (a request sent sooner would be at hand: answered, never idle)
        kept_alive.request("GET", "/api/classes")
        assert room.held.wait(10)                 # its request has arrived, the handler not yet busy
        new = socket.create_connection(("127.0.0.1", web.port), timeout=10)
        new.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response = kept_alive.getresponse()       # (had been closed unanswered)
        assert response.status == 200 and len(json.loads(response.read())["classes"]) == len(CLASS_NAMES)
        assert read_until_closed(new).startswith(b"HTTP/1.1 200")   # its thread free once that was answered
    finally:
        kept_alive.close()
        if new is not None:
            new.close()


def test_a_pipelined_request_is_answered_though_a_new_connection_needs_its_thread(start_web, dead_url, monkeypatch):
    """A request sent right behind the last one is read with it, so it is no longer in the socket: the acceptor,
    waiting for a thread, had taken the connection for idle once the first was answered and closed it with the
    second unanswered. A request at hand is answered before the connection is idle."""
    web = start_web(dead_url, max_handler_threads=1, idle_timeout=20.0)
    pipelining = socket.create_connection(("127.0.0.1", web.port), timeout=10)
    room = _hold_after_the_wait(web, monkeypatch, pipelining)
    new = socket.create_connection(("127.0.0.1", web.port), timeout=10)
    try:
        pipelining.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")            # its thread is reading it
        new.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert room.chosen.wait(10)               # every thread taken, none idle: the new connection waits
        room.chosen.clear()
        pipelining.sendall(b"\r\nGET /api/classes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = read_until_closed(pipelining)
        assert reply.count(b"HTTP/1.1 200 ") == 2 and b'"classes"' in reply, reply[-300:]
        assert read_until_closed(new).startswith(b"HTTP/1.1 200")
    finally:
        pipelining.close()
        new.close()


def test_a_body_whose_connection_resets_after_its_deadline_is_the_servers_timeout_not_the_clients_close():
    """Past the request timeout the 408 is sent and the connection shut down; a client still trickling its body then
    gets a reset, and a handler thread scheduled late reads that reset (ECONNRESET) instead of the end: it is this
    server's timeout (ArrivalCut), not "the client closed the connection" (seen on a loaded machine)."""
    from email.message import Message

    from web.server import ArrivalCut, Handler

    class Resetting(io.BytesIO):
        def read(self, size=-1):
            raise ConnectionResetError(104, "Connection reset by peer")

    class Fired:   # the arrival's deadline, already past: its cancel comes too late
        def done(self):
            return False

    handler = Handler.__new__(Handler)
    handler.headers = Message()
    handler.headers["Content-Length"] = "100"
    handler.rfile, handler._arrival = Resetting(), Fired()
    handler.backend = type("Backend", (), {"config": type("Config", (), {"max_body_bytes": 1000})})()
    with pytest.raises(ArrivalCut, match="did not arrive whole within"):
        handler._read_body()
    handler._arrival = None   # arrived in time (no deadline): the reset is the client's close
    with pytest.raises(ConnectionResetError) as raised:
        handler._read_body()
    assert not isinstance(raised.value, ArrivalCut)


def test_a_trickled_request_is_cut_at_the_request_timeout(start_web, serving_labelled, caplog):
    """A byte every 0.3 s keeps the idle timeout from firing; the request timeout bounds the whole arrival, so
    such clients (slowloris) hold a handler thread no longer than it, head or body, and are told with a 408."""
    import logging
    caplog.set_level(logging.INFO, logger="web")
    web = start_web(serving_labelled.url, max_handler_threads=2, idle_timeout=5.0, request_timeout=1.5)

    head = b"X-Slow: " + b"a" * 100 + b"\r\n\r\n"     # after a whole request line and Host header
    post = (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100"
            b"\r\n\r\n")
    clients = [socket.create_connection(("127.0.0.1", web.port), timeout=20) for _ in range(2)]
    try:
        clients[0].sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n")
        clients[1].sendall(post)
        threads = [threading.Thread(target=trickle, args=(clients[0], head, 0.3, 10), daemon=True),
                   threading.Thread(target=trickle, args=(clients[1], b'{"image": "' + b"A" * 88, 0.3, 10),
                                    daemon=True)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        replies = [read_until_closed(sock) for sock in clients]
        took = time.monotonic() - started
        for reply in replies:
            assert reply.startswith(b"HTTP/1.1 408") and b"did not arrive whole within 1.5 s" in reply, reply[:200]
        assert took < 5, took
        status, _, body = Api(web.url, timeout=20).request("GET", "/healthz")      # both threads free again
        assert status == 200 and body == {"status": "ok"}
        # the head cut short is not taken for a request: nothing routed, nothing answered into the closed socket
        assert "/api/status" not in caplog.text
        # the body cut short is logged as this server's timeout, not as the client's close
        cut = "POST /api/predict: the request did not arrive whole within 1.5 s (408); the connection is closed"
        deadline = time.monotonic() + 10
        while cut not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cut in caplog.text and "the client closed the connection" not in caplog.text, caplog.text
    finally:
        for sock in clients:
            sock.close()


def test_user_text_is_echoed_as_json_only(api):
    status, answer = api.feedback(letter_png(), "<script>alert(1)</script>")
    assert status == 400 and answer["reason"] == "unknown_label"
    status, headers, _ = api.request("POST", "/api/feedback", json.dumps({"image": b64(letter_png()),
                                                                          "label": "<b>x</b>"}),
                                     {"Content-Type": "application/json"})
    assert headers["content-type"].startswith("application/json") and headers["x-content-type-options"] == "nosniff"


def test_a_multipart_body_of_many_tiny_parts_is_refused_quickly(api):
    parts = b"".join(b"--x\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\nv\r\n" % i for i in range(20_000))
    started = time.monotonic()
    status, _, answer = api.request("POST", "/api/predict", parts + b"--x--\r\n",
                                    {"Content-Type": "multipart/form-data; boundary=x"})
    assert (status, answer["reason"]) == (400, "bad_multipart") and "more than 16 parts" in answer["error"]
    assert time.monotonic() - started < 5
    # A form of a few parts, the boundary quoted, still works.
    form = b"--b\r\n" + b'Content-Disposition: form-data; name="image"; filename="a.png"\r\n' \
        b"Content-Type: image/png\r\n\r\n" + letter_png() + b"\r\n--b\r\nContent-Disposition: form-data; " \
        b'name="source"\r\n\r\nupload\r\n--b--\r\n'
    status, _, answer = api.request("POST", "/api/predict", form, {"Content-Type": 'multipart/form-data; boundary="b"'})
    assert status == 200, answer
    # The parts are counted by the boundary the parser splits by, not by the first "boundary=" text of the header
    # (one inside another parameter's quotes had let 100,000 parts through: 39 s of CPU).
    started = time.monotonic()
    status, _, answer = api.request("POST", "/api/predict", parts + b"--x--\r\n",
                                    {"Content-Type": 'multipart/form-data; y="boundary=abc"; boundary=x'})
    assert (status, answer["reason"]) == (400, "bad_multipart") and "more than 16 parts" in answer["error"]
    assert time.monotonic() - started < 5
    # An RFC 2231 boundary*= is the one the parser splits by, though a plain boundary= follows it (a compat32
    # Message reads the plain one: 5.5 MB of tiny parts had held a thread for about 55 s of CPU).
    status, _, answer = api.request("POST", "/api/predict", parts + b"--x--\r\n",
                                    {"Content-Type": "multipart/form-data; boundary*=utf-8''x; boundary=AAA"})
    assert (status, answer["reason"]) == (400, "bad_multipart") and "more than 16 parts" in answer["error"]


def test_a_client_that_goes_away_before_its_answer_is_not_a_server_error(web, api, monkeypatch, caplog):
    """A closed tab or a cancelled upload: the answer cannot be written. That was logged as a 500 with two
    BrokenPipe tracebacks."""
    import logging
    import socket
    import struct
    import time

    answer = web.backend.predict
    monkeypatch.setattr(web.backend, "predict", lambda *a, **k: (time.sleep(0.5), answer(*a, **k))[1])
    body = json.dumps({"image": b64(letter_png())}).encode()
    host, port = web.url.split("//")[1].split(":")
    caplog.set_level(logging.INFO, logger="web")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # close with a reset
    deadline = time.monotonic() + 30
    while "the client closed the connection" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "the client closed the connection" in caplog.text
    assert "internal error" not in caplog.text and "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert api.get("/healthz")[0] == 200


def test_a_client_that_stops_reading_its_answer_is_gone_not_a_server_error(start_web, dead_url, caplog):
    """A client whose receive buffer stays full past the idle timeout: its answer cannot be written, as when it has
    closed the connection (it had been an ERROR with a traceback, and a 500 written into the 200's body)."""
    import logging
    caplog.set_level(logging.INFO, logger="web")
    web = start_web(dead_url, idle_timeout=1.0)
    page, content_type = web.backend.static["index.html"]
    web.backend.static["index.html"] = (b"x" * 32_000_000, content_type)   # more than both socket buffers hold
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(20)
        sock.connect(("127.0.0.1", web.port))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 20
        while "read nothing of its answer within 1 s" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.1)
        reply = read_until_closed(sock)
    finally:
        sock.close()
        web.backend.static["index.html"] = (page, content_type)
    assert "GET /: the client read nothing of its answer within 1 s; the connection is closed" in caplog.text
    assert reply.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 500" not in reply and b"internal error" not in reply
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert Api(web.url).get("/healthz")[0] == 200


def test_the_408_of_a_request_too_slow_carries_the_headers_of_every_answer(start_web, dead_url):
    """The 408 sent when a request does not arrive whole in time had only Content-Type, Content-Length and
    Connection: close: it carries the security headers, Date and Server, as every other answer (a 415 here)."""
    web = start_web(dead_url, request_timeout=2.0)

    def head_of(request: bytes, wait: float = 0.0) -> dict:
        with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:
            sock.sendall(request)
            time.sleep(wait)
            reply = read_until_closed(sock)
        status_line, *lines = reply.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        return {"": status_line, **dict(line.split(": ", 1) for line in lines)}

    timed_out = head_of(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc", wait=3)
    refused = head_of(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 3"
                      b"\r\nConnection: close\r\n\r\nabc")
    assert timed_out[""] == "HTTP/1.1 408 Request Timeout" and refused[""].startswith("HTTP/1.1 415"), refused
    assert set(timed_out) == set(refused), (timed_out, refused)
    assert timed_out["X-Content-Type-Options"] == "nosniff" and timed_out["X-Frame-Options"] == "DENY"
    assert timed_out["Referrer-Policy"] == "no-referrer" and timed_out["Connection"] == "close"
    assert timed_out["Content-Security-Policy"].startswith("default-src 'none'")
    assert timed_out["Server"] == refused["Server"] and timed_out["Date"].endswith(" GMT")


def test_a_client_that_reads_nothing_does_not_hold_up_other_deadlines():
    """The 408 of a cut request is sent without waiting: deadlines are kept by one thread, and a client whose
    receive buffer is full would otherwise stop every other connection's deadline for the idle timeout."""
    from web.server import _Arrival
    stuck, stuck_peer = socket.socketpair()
    other, other_peer = socket.socketpair()
    try:
        stuck.settimeout(10)
        stuck.setblocking(False)
        try:
            while True:
                stuck.send(b"x" * 65536)            # the peer reads nothing: its buffer fills
        except BlockingIOError:
            pass
        stuck.settimeout(10)                        # as the server's sockets: a timeout (the idle timeout)
        other.settimeout(10)
        _Arrival(stuck, 0.2)
        started = time.monotonic()
        _Arrival(other, 0.5)
        other_peer.settimeout(10)
        reply = other_peer.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 3
    finally:
        for sock in (stuck, stuck_peer, other, other_peer):
            sock.close()
