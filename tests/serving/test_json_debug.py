"""serving/json_debug.py: JSON values quoted in error messages as TF Serving's JsonValueToDebugString quotes them."""
import pytest

from serving.json_debug import MAX_BYTES, debug_string, double_text


@pytest.mark.parametrize("value, text", [
    ([1, 2, [3, []]], "[1, 2, [3, []]]"),                          # arrays on one line
    ({"b64": 5}, '{\n    "b64": 5\n}'),                              # objects one member per line
    ({}, "{}"),
    ([{"a": [1, {"b": None}]}, True],
     '[{\n        "a": [1, {\n                "b": null\n            }]\n    }, true]'),   # 4 spaces a level, arrays too
    ("tab\there \"q\" \\ \x01 א", '"tab\\there \\"q\\" \\\\ \\u0001 א"'),
    (2 ** 64, "18446744073709552000.0"),                         # past uint64: a double in rapidjson
    (10 ** 22, "1e22"),
    (-2 ** 63, "-9223372036854775808"),
])
def test_rapidjson_pretty_writer_layout(value, text):
    assert debug_string(value) == text


@pytest.mark.parametrize("value, text", [
    (1.0, "1.0"), (0.5, "0.5"), (-0.0, "-0.0"), (123.456, "123.456"), (1e20, "100000000000000000000.0"),
    (1e21, "1e21"), (1.5e300, "1.5e300"), (1e-6, "0.000001"), (1.5e-7, "1.5e-7"), (3e-05, "0.00003"),
    (0.1 + 0.2, "0.30000000000000004"), (5e-324, "5e-324"),
])
def test_doubles_in_rapidjsons_form(value, text):
    assert double_text(value) == text


def test_long_values_stop_at_the_first_token_past_the_limit():
    text = debug_string(list(range(1000)))
    assert len(text.encode()) >= MAX_BYTES and text.startswith("[0, 1, 2") and not text.endswith("]")
    # The token that crossed the limit is whole; the next one is not written.
    assert text.split(", ")[-1].isdigit() and len(text[:-len(text.split(", ")[-1]) - 2].encode()) < MAX_BYTES
    assert debug_string(["x" * 300, "y"]) == '["' + "x" * 300 + '"'   # one long string: written whole


def test_a_nan_ends_the_quote_after_its_separator():
    assert debug_string([1, float("nan"), 2]) == "[1, "
    assert debug_string({"a": float("inf")}) == '{\n    "a": '
