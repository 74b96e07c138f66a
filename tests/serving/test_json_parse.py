"""serving/json_parse.py: request bodies parsed as rapidjson 1.1 parses them in TF Serving (kParseNanAndInfFlag)."""
import math
import sys

import pytest

from serving.json_parse import parse_json, too_big
from serving.status import ServingError

TOO_BIG = "JSON Parse error: Number too big to be stored in double. at offset: "


def error(body: bytes) -> str:
    with pytest.raises(ServingError) as caught:
        parse_json(body)
    return str(caught.value)


@pytest.mark.parametrize("body, offset", [
    (b'{"instances": [[1e309]]}', 16),
    (b'{"instances": [[-1E+400]]}', 16),
    (b'{"instances": [[1' + b"0" * 309 + b"]]}", 16),                # 310 digits: past DBL_MAX while read
    (b'{"instances": [[1]], "ignored": ' + b"9" * 5000 + b"}", 32),   # a key nobody reads still parses
    (b'{"a": "1e999", "b": 1e999}', 20),                               # inside a string it is only text
    (b"[2" + b"0" * 308 + b"]", 1),
    # finite values rapidjson refuses all the same: the exponent bound does not look at the digits, and the
    # integer part is read (past DBL_MAX / 10) before the exponent that would scale it down
    (b'{"instances": [[0e309]]}', 16),
    (b"[1.5, -0E+0309]", 6),
    (b"[1" + b"0" * 400 + b"e-300]", 1),
    (b"[1" + b"0" * 400 + b".5e-300]", 1),
])
def test_numbers_too_big_for_a_double_are_refused(body, offset):
    assert error(body) == TOO_BIG + str(offset)


@pytest.mark.parametrize("token, value", [
    ("9e308", math.inf),                 # rapidjson's exponent check allows it; the value overflows to inf
    ("1.0e309", math.inf),               # one fraction digit raises the exponent bound to 309
    ("1.5e308", 1.5e308),
    ("0.0000000001e317", 1e307),
    ("1e-400", 0.0),
    ("1" + "0" * 308, 1e308),            # 309 digits still fit
    ("0.0e309", 0.0),                    # one fraction digit: the bound is 309
    ("1" + "0" * 307 + "e-300", 1e7),    # 308 integer digits, below DBL_MAX / 10 while read
    ("1.5e100", 1.5e100),
])
def test_numbers_rapidjson_accepts(token, value):
    assert not too_big(token)
    assert parse_json(f"[{token}]".encode()) == [pytest.approx(value) if math.isfinite(value) else value]


def test_all_of_rapidjsons_nan_and_inf_tokens():
    parsed = parse_json(b'{"x": [Inf, -Inf, Infinity, -Infinity, NaN, -NaN], "s": "Inf -NaN"}')
    assert parsed["x"][:4] == [math.inf, -math.inf, math.inf, -math.inf]
    assert all(math.isnan(v) for v in parsed["x"][4:]) and parsed["s"] == "Inf -NaN"


@pytest.mark.parametrize("body, message", [
    # offsets stay those of the body as sent, before and after a rewritten Inf
    (b'{"a": Inf, "b" 1}', "Missing a colon after a name of object member. at offset: 15"),
    (b'{"a": Infx}', "Missing a comma or '}' after an object member. at offset: 9"),
    (b'[-Inf, -NaN, 1 2]', "Missing a comma or ']' after an array element. at offset: 15"),
])
def test_errors_after_inf_keep_their_offsets(body, message):
    assert error(body) == "JSON Parse error: " + message


def test_nesting_deeper_than_python_recurses_is_parsed_to_a_fixed_depth():
    """rapidjson parses iteratively, to any depth: here to json_iterative.MAX_DEPTH levels (the document's own
    counted), whatever the caller's stack; one level deeper is a 400 naming the limit and where it is passed."""
    from serving.json_iterative import MAX_DEPTH
    deep = b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1)
    assert parse_json(b'{"instances": [1.5], "client_meta": ' + deep + b"}")["instances"] == [1.5]

    def at_depth(levels: int):   # the caller itself a few frames short of Python's recursion limit
        return at_depth(levels - 1) if levels else parse_json(b'{"a": [[{"b": ' + b"[" * 2000 + b"7" + b"]" * 2000
                                                              + b"}]]}")
    value, levels = at_depth(sys.getrecursionlimit() - 80)["a"][0][0]["b"], 0
    while type(value) is list:
        value, levels = value[0], levels + 1
    assert (value, levels) == (7, 2000)
    assert error(b'{"instances": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}") == (
        f"JSON Parse error: The document nests arrays or objects deeper than {MAX_DEPTH} levels, more than this "
        f"server parses. at offset: {14 + MAX_DEPTH - 1}")
    assert error(b"[Inf, " + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"]").endswith(f"offset: {6 + MAX_DEPTH - 1}")


@pytest.mark.parametrize("inner, message", [
    (b'[1 2]', "Missing a comma or ']' after an array element. at offset: 3"),
    (b'{"a" 1}', "Missing a colon after a name of object member. at offset: 5"),
    (b'{"a": 1 "b": 2}', "Missing a comma or '}' after an object member. at offset: 8"),
    (b'{"a": 1, 2}', "Missing a name for object member. at offset: 9"),
    (b'[1, ]', "Invalid value. at offset: 4"),
    (b'["\\x"]', "Invalid escape character in string. at offset: 2"),
    (b'[1e999]', "Number too big to be stored in double. at offset: 1"),
    (b'[-Inf, -NaN, 1 2]', "Missing a comma or ']' after an array element. at offset: 15"),
])
def test_errors_nested_deeper_than_python_recurses_are_those_of_a_shallow_document(inner, message):
    """Parsed without recursion, a document deeper than Python's decoder follows has the errors and offsets it
    would have shallow."""
    depth = 3000
    assert error(inner) == "JSON Parse error: " + message
    offset = int(message.rsplit(" ", 1)[1])
    assert error(b"[" * depth + inner + b"]" * depth) == \
        "JSON Parse error: " + message.replace(f"offset: {offset}", f"offset: {offset + depth}")


@pytest.mark.parametrize("body, message", [
    # rapidjson 1.1's own words (reader.h), not a later version's
    (b'{"a":"x\ty"}', "Invalid escape character in string. at offset: 7"),       # a raw control character
    (b'{"a":"x\x00y"}', "Missing a closing quotation mark in string. at offset: 7"),   # a raw NUL ends the text
    (b'{"a":1.}', "Miss fraction part in number. at offset: 7"),
    (b'[1.5e]', "Miss exponent in number. at offset: 5"),
    (b'{"a":1e+}', "Miss exponent in number. at offset: 8"),
    (b'{"a":1x}', "Missing a comma or '}' after an object member. at offset: 6"),
    # a complete number followed by a stray "." or "e" is rapidjson's comma error
    (b'[1.5.]', "Missing a comma or ']' after an array element. at offset: 4"),
    (b'[1e5.]', "Missing a comma or ']' after an array element. at offset: 4"),
    (b'{"a":1.5e3e}', "Missing a comma or '}' after an object member. at offset: 10"),
    (b'[10.5E+2.0]', "Missing a comma or ']' after an array element. at offset: 8"),
    # a UTF-8 byte-order mark is skipped (rapidjson's UTF-8 input stream), and counted in the offsets
    (b'\xef\xbb\xbf', "The document is empty. at offset: 3"),
    (b'\xef\xbb\xbf{"a":}', "Invalid value. at offset: 8"),
])
def test_rapidjson_1_1_messages(body, message):
    assert error(body) == "JSON Parse error: " + message


INVALID = "Invalid value. at offset: "
HEX = "Incorrect hex digit after \\u escape in string. at offset: "


@pytest.mark.parametrize("body, message", [
    # null, true and false: the letters that match are taken, the error is where the next one does not
    (b"[tru]", INVALID + "4"),
    (b"[nul]", INVALID + "4"),
    (b"[fals]", INVALID + "5"),
    (b'{"a": nulx}', INVALID + "9"),
    # a number: its "-" is taken, then NaN or Inf as far as they match, Infinity once an "i" follows Inf
    (b"[-]", INVALID + "2"),
    (b"[-x]", INVALID + "2"),
    (b"[NaX]", INVALID + "3"),
    (b"[Nan]", INVALID + "3"),
    (b"[-Nx]", INVALID + "3"),
    (b"[Infinit]", INVALID + "8"),
    (b"[Infinix]", INVALID + "7"),
    (b"[-Infinix]", INVALID + "8"),
    (b"[Inf, Infinix]", INVALID + "12"),
    (b"[1, -NaN, nulx]", INVALID + "13"),
    (b"\xef\xbb\xbf[tru]", INVALID + "7"),
    # a \u escape without four hex digits: at its backslash
    (b'{"a":"\\u12"}', HEX + "6"),
    (b'["\\uZZZZ"]', HEX + "2"),
])
def test_invalid_values_and_escapes_have_rapidjsons_offsets(body, message):
    assert error(body) == "JSON Parse error: " + message


def test_a_byte_order_mark_is_skipped():
    assert parse_json(b'\xef\xbb\xbf{"instances": [1]}') == {"instances": [1]}


def test_a_repeated_name_keeps_its_first_value_and_every_member():
    parsed = parse_json(b'{"signature_name": "a", "instances": [1], "signature_name": "b"}')
    assert parsed["signature_name"] == "a"                  # rapidjson's FindMember: the first
    assert [key for key, _ in parsed.pairs] == ["signature_name", "instances", "signature_name"]
    assert type(parse_json(b'{"a": 1}')) is dict            # the common case stays a plain dict


def test_an_escaped_lone_low_surrogate_keeps_rapidjsons_three_bytes():
    """rapidjson 1.1 stores a lone low-surrogate escape as its code point's 3-byte UTF-8 (\\udc80: ED B2 80), in
    U+DC80-U+DCFF too, while a raw byte that is not UTF-8 stays that one byte; names as values, for predict's
    strings and the examples' features alike."""
    from serving.tensors import to_bytes

    document = parse_json(b'{"\\udc80": ["\\udc80", "\\uDCFF", "\\udc7f", "\x80", "a\\\\udc80", "\\ud800\\udc80"]}')
    (name, values), = document.items()
    assert to_bytes(name) == b"\xed\xb2\x80"
    assert [to_bytes(value) for value in values] == [
        b"\xed\xb2\x80", b"\xed\xb3\xbf", b"\xed\xb1\xbf", b"\x80", b"a\\udc80", "\U00010080".encode()]
