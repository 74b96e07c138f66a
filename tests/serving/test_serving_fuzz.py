"""Fuzz over loopback: random bytes in every string field, every signature, row and columnar forms, batches of 1
and 64, and classify/regress. Whatever arrives, the answer is TF Serving's status and message: never a 500, never a
Python exception's text. A fixed seed and a fixed number of requests."""
import base64
import json
import random
import re
import time

import pytest

from core import configs
from tests.support import serving as testing

SIGNATURES = ("serving_default", configs.IMAGE_SIGNATURE, configs.TRANSFORM_SIGNATURE)
PYTHON_TEXT = re.compile(r"codec can't|Traceback|object has no attribute|not subscriptable|unsupported operand|"
                         r"NoneType|invalid literal for|surrogates not allowed|Internal server error|"
                         r"\b(Type|Value|Key|Index|Attribute|Unicode\w*|Runtime|Assertion|Overflow)Error\b|Exception")


class Fuzz:
    """Random request parts. ``loose``: raw control characters and lone surrogate escapes in strings too (rapidjson
    rejects such a document, or keeps a lone low surrogate's bytes), so only some bodies are loose and most get past
    the parser."""

    def __init__(self, seed: str):
        self.rng = random.Random(seed)
        self.loose = False

    def json_string(self) -> bytes:
        """A JSON string literal of random bytes: raw (UTF-8 or not), \\u escapes, escaped quotes and backslashes."""
        rng, out = self.rng, bytearray(b'"')
        for byte in rng.randbytes(rng.randrange(0, 48)):
            if byte in b'"\\':
                out += b"\\" + bytes([byte])
            elif rng.random() < 0.02:
                out += b"\\u%04x" % (rng.randrange(0xD800, 0xE000) if self.loose else byte)
            elif byte < 0x20 and not self.loose:
                out += b"\\u%04x" % byte
            else:
                out.append(byte)
        return bytes(out + b'"')

    def string_field(self) -> bytes:
        roll = self.rng.random()
        if roll < 0.4:
            return b'{"b64": "' + base64.b64encode(self.rng.randbytes(self.rng.randrange(0, 64))) + b'"}'
        if roll < 0.5:   # not base64, or a b64 object with more keys
            return self.rng.choice([b'{"b64": ' + self.json_string() + b"}",
                                    b'{"b64": "YQ==", ' + self.json_string() + b": 1}"])
        return self.json_string()

    def batch(self, size: int, named: bytes | None) -> bytes:
        items = [self.string_field() for _ in range(size)]
        if named is not None:
            items = [b"{" + named + b": " + item + b"}" for item in items]
        return b"[" + b", ".join(items) + b"]"

    def bodies(self, signature: str, size: int):
        """(verb, body): predict in row and columnar forms (plain, named, unknown name), classify and regress."""
        name = b'"' + signature.encode() + b'"'
        alias = b'"' + (configs.IMAGE_INPUT if signature == configs.IMAGE_SIGNATURE else "examples").encode() + b'"'
        rows, columns = b'"instances"', b'"inputs"'
        predict = [(rows, None), (rows, alias), (rows, self.json_string()), (columns, None)]
        for key, named in predict:
            yield "predict", b'{"signature_name": ' + name + b", " + key + b": " + self.batch(size, named) + b"}"
        yield "predict", (b'{"signature_name": ' + name + b', "inputs": {' + alias + b": " + self.batch(size, None)
                          + b"}}")
        yield "predict", (b'{"signature_name": ' + self.json_string() + b', "instances": ' + self.batch(size, None)
                          + b"}")
        examples = b"[" + b", ".join(self.features() for _ in range(size)) + b"]"
        for verb in ("classify", "regress"):
            yield verb, b'{"signature_name": ' + name + b', "examples": ' + examples + b"}"
            yield verb, b'{"context": ' + self.features() + b', "examples": ' + examples + b"}"

    def features(self) -> bytes:
        return (b'{"' + configs.IMAGE_KEY.encode() + b'": ' + self.string_field() + b", " + self.json_string()
                + b": [" + self.string_field() + b"]}")


def check(client, path: str, body: bytes):
    status, headers, raw = client.request("POST", path, body, {"Content-Type": "application/json"})
    assert status < 500, (path, body[:200], raw[:500])
    if status != 200:   # a message quotes the request's bytes as they came, UTF-8 or not (as TF Serving's)
        answer = json.loads(raw.decode("utf-8", "surrogateescape"))
        error = answer["error"]
        assert list(answer) == ["error"] and error and not PYTHON_TEXT.search(error), (body[:200], error)
    return status


@pytest.mark.parametrize("size", [1, 64])
@pytest.mark.parametrize("signature", SIGNATURES)
def test_random_string_fields_never_500(client, signature, size):
    fuzz = Fuzz(f"{signature}-{size}")
    started, statuses = time.monotonic(), []
    for round_ in range(4):
        fuzz.loose = round_ == 3
        statuses += [check(client, f"/v1/models/letters:{verb}", body) for verb, body in fuzz.bodies(signature, size)]
    assert len(statuses) == 40 and 400 in statuses
    assert time.monotonic() - started < 120


def test_a_bug_is_500_internal_without_its_text(server, monkeypatch):
    from serving import tensors

    def broken(*args):
        raise KeyError("secret detail")

    monkeypatch.setattr(tensors, "instances_to_arrays", broken)
    status, _, raw = testing.RestClient(server.url).request(
        "POST", "/v1/models/letters:predict", {"instances": [testing.b64(b"x")]})
    assert (status, json.loads(raw)) == (500, {"error": "Internal server error"})
