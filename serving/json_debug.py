"""JSON values quoted in error messages as TF Serving quotes them (``JsonValueToDebugString`` in util/json_tensor.cc).

TF Serving re-serialises the parsed value with rapidjson's ``PrettyWriter`` (4-space indent,
``kFormatSingleLineArray``): arrays on one line (``[1, 2]``), objects one member per line
(``{\\n    "b64": 5\\n}``), doubles in rapidjson's shortest form (``1.0``, ``1e21``, ``1e-7``), strings with
control characters escaped (``\\u001F``) and everything else as it is. The writer is wrapped in a limit
(``JsonWriterWithLimit``): once 256 bytes are out, the next token is not written and the quote ends there, in
the middle of the value. A NaN or infinite double also ends it (the writer refuses them), after its separator.
"""
from __future__ import annotations

import math
from decimal import Decimal
from json.encoder import encode_basestring   # (the C one where there is one)

MAX_BYTES = 256          # kMaxJsonDebugStringBytes
INDENT = 4
_INT64 = (-2 ** 63, 2 ** 64 - 1)   # what rapidjson keeps as an integer (int64 or uint64); the rest are doubles
# rapidjson's Writer::WriteString: a control character as \uXXXX in uppercase hex, or its short escape
_ESCAPES = {code: f"\\u{code:04X}" for code in range(0x20)}
_ESCAPES.update(str.maketrans({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}))


class _Stop(Exception):
    """The limit is reached or the writer refused a value: the quote ends here."""


def debug_string(value) -> str:
    """``value`` (as Python's JSON decoder returns it) as TF Serving quotes it in an error message."""
    writer = _PrettyWriter()
    try:
        writer.value(value)
    except _Stop:
        pass
    return "".join(writer.out)


def double_text(value: float) -> str:
    """rapidjson's ``Writer::Double`` (Grisu digits, ``Prettify`` with 324 decimal places) of a finite double."""
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    _, digits, exponent = Decimal(repr(abs(value))).as_tuple()
    text = "".join(map(str, digits)).rstrip("0")
    k = exponent + len(digits) - len(text)          # value = int(text) * 10^k
    length = len(text)
    kk = length + k                                 # 10^(kk-1) <= value < 10^kk
    if 0 <= k and kk <= 21:
        out = text + "0" * k + ".0"
    elif 0 < kk <= 21:
        out = text[:kk] + "." + text[kk:]
    elif -6 < kk <= 0:
        out = "0." + "0" * -kk + text
    elif length == 1:
        out = text + "e" + str(kk - 1)
    else:
        out = text[0] + "." + text[1:] + "e" + str(kk - 1)
    return sign + out


def string_text(text: str) -> str:
    """A JSON string as rapidjson writes it (``Writer::String``, also in answers): ``"``, ``\\`` and control
    characters escaped (``\\u001F``), everything else as it is. Python's C escaper escapes the same characters, a
    control character without a short escape in lowercase hex (``\\u001f``): only then is the text translated."""
    out = encode_basestring(text)
    return out if "\\u00" not in out else '"' + text.translate(_ESCAPES) + '"'


class _PrettyWriter:
    def __init__(self):
        self.out: list[str] = []
        self.size = 0
        self.levels: list[list] = []      # [in_array, values written] per open array / object

    def _put(self, text: str) -> None:
        self.out.append(text)
        self.size += len(text.encode("utf-8", "surrogateescape"))

    def _token(self) -> None:
        """The limit check of every handler call, then PrettyWriter's separator and indent."""
        if self.size >= MAX_BYTES:
            raise _Stop
        if not self.levels:
            return
        level = self.levels[-1]
        if level[0]:
            if level[1]:
                self._put(", ")
        else:
            self._put((",\n" if level[1] % 2 == 0 else ": ") if level[1] else "\n")
            if level[1] % 2 == 0:
                self._put(" " * INDENT * len(self.levels))
        level[1] += 1

    def _end(self, closing: str) -> None:
        if self.size >= MAX_BYTES:
            raise _Stop
        in_array, count = self.levels.pop()
        if count and not in_array:
            self._put("\n" + " " * INDENT * len(self.levels))
        self._put(closing)

    def value(self, value) -> None:
        if isinstance(value, dict):
            self._token()
            self.levels.append([False, 0])
            self._put("{")
            for key, item in getattr(value, "pairs", value.items()):   # a repeated name too, as written
                self._token()
                self._put(string_text(key))
                self.value(item)
            self._end("}")
        elif isinstance(value, list):
            self._token()
            self.levels.append([True, 0])
            self._put("[")
            for item in value:
                self.value(item)
            self._end("]")
        else:
            self._token()
            self._put(self._scalar(value))

    @staticmethod
    def _scalar(value) -> str:
        if value is None:
            return "null"
        if value is True or value is False:
            return "true" if value else "false"
        if isinstance(value, str):
            return string_text(value)
        if isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
            return str(value)
        value = float(value)
        if not math.isfinite(value):
            raise _Stop                   # Writer::Double refuses NaN and infinity without kWriteNanAndInfFlag
        return double_text(value)
