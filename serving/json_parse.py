"""Request bodies parsed as TF Serving parses them: rapidjson 1.1 with ``kParseIterativeFlag |
kParseNanAndInfFlag | kParseStopWhenDoneFlag`` (``ParseJson`` in util/json_tensor.cc, TF Serving 2.18.0 and
later; ``serving/deploy`` runs 2.20.0), on Python's JSON decoder.

What the two decoders do differently is mended here: rapidjson's error messages and offsets; a lone high surrogate
escape (an error for rapidjson); a lone low one in \uDC80-\uDCFF (rapidjson's 3 UTF-8 bytes, where Python's
character would be read as one undecodable body byte); ``Inf``, ``-Inf`` and ``-NaN`` (rapidjson takes them as
numbers, Python does not know them); numbers too big for a double (``1e309``, or an integer of 310 digits), which
rapidjson refuses with "Number too big to be stored in double." where Python gives ``inf`` or a huge integer, and
which rapidjson's digit-by-digit checks refuse even where the value is finite (``0e309``, or 400 digits then
``e-300``);
arrays nested thousands deep, which rapidjson parses iteratively and Python's recursive decoder cannot follow
(serving.json_iterative parses them, to its MAX_DEPTH levels; deeper, a 400 of its own); an object that repeats a
name, where Python keeps the last value and rapidjson's look-ups find the first (:class:`JsonObject`); a UTF-8
byte-order mark, which rapidjson's input stream skips; and rapidjson 1.1's
words for a raw control character or NUL in a string and for a number missing its fraction or exponent digits.
"""
from __future__ import annotations

import json
import math
import re

from serving import json_iterative
from serving.status import ServingError, invalid

_RAPIDJSON_MESSAGES = {
    "Expecting value": "Invalid value.",
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid \\uXXXX escape": "Incorrect hex digit after \\u escape in string.",
}


_BOM = b"\xef\xbb\xbf"
_OFFSET = re.compile(r"at offset: (\d+)$")


def parse_json(body: bytes):
    """The JSON document at the start of ``body`` (trailing bytes ignored); a 400 ServingError with rapidjson's
    message and offset when it is not one. A UTF-8 byte-order mark first is skipped, as rapidjson's UTF-8 input
    stream skips it (offsets still count it)."""
    if not body.startswith(_BOM):
        return _parse(body)
    if len(body) == len(_BOM):
        raise invalid(f"JSON Parse error: The document is empty. at offset: {len(_BOM)}")
    try:
        return _parse(body[len(_BOM):])
    except ServingError as err:
        raise invalid(_OFFSET.sub(lambda m: f"at offset: {int(m.group(1)) + len(_BOM)}", err.message)) from None


def _parse(body: bytes):
    text = body.decode("utf-8", "surrogateescape")
    if not text:
        raise invalid("JSON Parse error: The document is empty")
    start = len(text) - len(text.lstrip(" \t\r\n"))
    if start == len(text):
        raise invalid(f"JSON Parse error: The document is empty. at offset: {start}")
    escapes = "\\u" in text   # (one scan of a body that may be megabytes of base64)
    surrogate = _lone_high_surrogate(text) if escapes else None
    edits: list = []
    try:
        try:
            value = _decode(text, start)
        except json.JSONDecodeError as exc:
            # Only a document that holds Inf, -Inf or -NaN is rewritten (a scan of the whole text, so not on the
            # common path: base64 strings often contain "Inf").
            if not (exc.msg.startswith("Expecting value") and text.startswith(("Inf", "-Inf", "-NaN"), exc.pos)):
                raise
            parsed, edits = _with_rapidjson_constants(text)
            value = _decode(parsed, start)
        if surrogate is not None:
            raise json.JSONDecodeError("surrogate", text, surrogate)
    except json_iterative.TooDeep as exc:
        # rapidjson parses to any depth; past this server's limit, a 400 with a message of its own
        raise invalid(f"JSON Parse error: The document nests arrays or objects deeper than {json_iterative.MAX_DEPTH} "
                      f"levels, more than this server parses. at offset: {_original_offset(exc.pos, edits)}") \
            from None
    except _NumberTooBig:
        offset = _too_big_offset(text, start)
        if surrogate is not None and surrogate < offset:
            raise invalid(f"JSON Parse error: The surrogate pair in string is invalid. at offset: {surrogate}") \
                from None
        raise invalid(f"JSON Parse error: Number too big to be stored in double. at offset: {offset}") from None
    except json.JSONDecodeError as exc:
        if exc.msg != "surrogate":
            exc.pos = _original_offset(exc.pos, edits)
            if exc.msg.startswith("Expecting value"):
                exc.pos = _invalid_value_offset(text, exc.pos)
            elif exc.msg.startswith("Invalid \\uXXXX escape"):   # Python: at the "u"; rapidjson: at the backslash
                exc.pos -= 1
        if surrogate is not None and surrogate <= exc.pos:
            raise invalid(f"JSON Parse error: The surrogate pair in string is invalid. at offset: {surrogate}") \
                from None
        message = "Invalid value."
        for prefix, rapid in _RAPIDJSON_MESSAGES.items():
            if exc.msg.startswith(prefix):
                message = rapid
                break
        if exc.msg.startswith("Invalid control character at"):   # rapidjson 1.1 reads a raw NUL as the end
            message = ("Missing a closing quotation mark in string." if text[exc.pos] == "\0"
                       else "Invalid escape character in string.")
        if exc.msg.startswith("Expecting ',' delimiter"):
            message = _comma_message(text, exc.pos)
            tail = _number_tail(text, exc.pos)   # "1." or "1e": a number rapidjson cannot finish
            if tail:
                message, exc.pos = tail
        raise invalid(f"JSON Parse error: {message} at offset: {exc.pos}") from None
    if escapes and _BYTE_SURROGATE_ESCAPE.search(text):   # a low one (a pair's stays as it is)
        escaped = _LOW_ESCAPE.sub(_utf8_of_low_escape, body)
        if escaped != body:
            return _parse(escaped)
    return value


_BYTE_SURROGATE_ESCAPE = re.compile(r"\\u[dD][cC][89a-fA-F][0-9a-fA-F]")
_LOW_ESCAPE = re.compile(rb"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"   # a pair, as it is
                         rb"|(u[dD][cC][89a-fA-F][0-9a-fA-F])|.)", re.DOTALL)


def _utf8_of_low_escape(match) -> bytes:
    """A lone \\uDC80-\\uDCFF escape as the 3 bytes rapidjson 1.1 stores for it (UTF-8 of the code point; other
    escapes as they are). Parsed from the bytes, an escaped U+DC80-U+DCFF is three characters, as undecodable
    body bytes are, where Python's decoder would have made it the one character a raw byte 0x80-0xFF is."""
    escape = match.group(1)
    return chr(int(escape[1:], 16)).encode("utf-8", "surrogatepass") if escape else match.group()


_ESCAPE = re.compile(r"\\(?:(u[dD][89abAB][0-9a-fA-F]{2})(\\u[dD][c-fC-F][0-9a-fA-F]{2})?|.)", re.DOTALL)


def _lone_high_surrogate(text: str):
    """Offset of the first \\uD800-\\uDBFF escape not followed by a low-surrogate escape (rapidjson 1.1 fails there;
    Python's parser accepts it), or None."""
    for match in _ESCAPE.finditer(text):
        if match.group(1) and not match.group(2):
            return match.start()
    return None


_NUMBER_CHARS = frozenset("0123456789.eE+-")
_LITERALS = {"n": "null", "t": "true", "f": "false"}


def _consumed(text: str, pos: int, expected: str) -> tuple[int, bool]:
    """rapidjson's ``Consume(is, c) && ...`` chain: the offset after the characters of ``expected`` that match
    from ``pos`` on, and whether all of them did."""
    for char in expected:
        if text[pos:pos + 1] != char:
            return pos, False
        pos += 1
    return pos, True


def _invalid_value_offset(text: str, pos: int) -> int:
    """The offset rapidjson 1.1 reports "Invalid value." at for a value starting at ``pos`` that Python refuses
    there: ParseNull, ParseTrue and ParseFalse take the letters that match and fail where the next one does not;
    ParseNumber takes a "-", then ``NaN`` or ``Inf`` (``Infinity`` once an "i" follows) as far as they match."""
    literal = _LITERALS.get(text[pos:pos + 1])
    if literal:
        return _consumed(text, pos + 1, literal[1:])[0]
    if text[pos:pos + 1] == "-":
        pos += 1
    if text[pos:pos + 1] in ("N", "I"):
        pos, nan = _consumed(text, pos, "NaN")
        if not nan:
            pos, inf = _consumed(text, pos, "Inf")
            if inf and text[pos:pos + 1] == "i":
                pos = _consumed(text, pos, "inity")[0]
    return pos


def _number_tail(text: str, pos: int) -> tuple[str, int] | None:
    """rapidjson's error (ParseNumber) and its offset where a number ends at ``pos`` with a "." it has no fraction
    for yet, or an "e" it has no exponent for yet; None otherwise ("1.5." is a complete number, then a stray ".")."""
    if not 0 < pos < len(text) or not text[pos - 1].isdigit() or text[pos] not in ".eE":
        return None
    start = pos
    while start and text[start - 1] in _NUMBER_CHARS:
        start -= 1
    number = text[start:pos].lower()
    if "e" in number or (text[pos] == "." and "." in number):
        return None
    if text[pos] == ".":
        return "Miss fraction part in number.", pos + 1
    pos += 1
    if text[pos:pos + 1] in ("+", "-"):
        pos += 1
    return "Miss exponent in number.", pos


def _comma_message(text: str, pos: int) -> str:
    depth = []
    in_string = escaped = False
    for char in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth.append(char)
        elif char in "]}" and depth:
            depth.pop()
    if depth and depth[-1] == "{":
        return "Missing a comma or '}' after an object member."
    return "Missing a comma or ']' after an array element."


# Outside strings, the tokens rapidjson reads as numbers and Python's decoder does not.
_CONSTANTS = re.compile(r'"(?:[^"\\]|\\.)*"|-?Inf(?:inity|(?!i))|-NaN', re.DOTALL)   # "Infin" is no number
_NUMBERS = re.compile(r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?', re.DOTALL)
_NUMBER = re.compile(r"(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?)(\d+))?")
_DBL_MAX_TENTH = 1.7976931348623157e307


class _NumberTooBig(Exception):
    pass


def too_big(token: str) -> bool:
    """Whether rapidjson 1.1 (``Reader::ParseNumber``, normal precision) refuses this JSON number as too big for a
    double: an integer part that overflows while it is read digit by digit, or an exponent above 308 plus the
    fraction digits it keeps."""
    minus, digits, fraction, exp_sign, exp_digits = _NUMBER.fullmatch(token).groups()
    limit = 2 ** 63 if minus else 2 ** 64 - 1
    value, used = 0, 0
    for ch in digits:                                 # 32- and 64-bit integer paths
        if value * 10 + int(ch) > limit:
            break
        value, used = value * 10 + int(ch), used + 1
    significant = max(0, used - 1) if digits[0] != "0" else 0
    as_double = used < len(digits)
    d = float(value)
    for ch in digits[used:]:                          # "force double for big integer"
        if d >= _DBL_MAX_TENTH:
            return True
        d = d * 10 + int(ch)
    exp_frac = 0
    if fraction:
        rest = fraction
        if not as_double:                             # 64-bit fast path up to 2^53 - 1
            n, taken = value, 0
            for ch in fraction:
                if n > 2 ** 53 - 1:
                    break
                n, taken, exp_frac = n * 10 + int(ch), taken + 1, exp_frac - 1
                significant += n != 0
            d, rest = float(n), fraction[taken:]
        for ch in rest:
            if significant < 17:
                d, exp_frac = d * 10 + int(ch), exp_frac - 1
                significant += d > 0
    if exp_digits is None or exp_sign == "-":
        return False
    exponent, most = 0, 308 - exp_frac
    for ch in exp_digits:
        exponent = exponent * 10 + int(ch)
        if exponent > most:
            return True
    return False


def _float(token: str) -> float:
    """A JSON number with a fraction or an exponent. rapidjson refuses some that are finite, so :func:`too_big`
    judges every token that could be one: an infinite value; a token of 309 characters or more (an integer part
    that passes DBL_MAX / 10 while read, then scaled down: 400 digits then ``e-300``); a zero with an exponent
    (``0e309``: the exponent's bound ignores the digits; a mantissa that is not zero, past that bound, is ``inf``)."""
    value = float(token)
    if (math.isinf(value) or len(token) > 308 or (not value and ("e" in token or "E" in token))) \
            and too_big(token):
        raise _NumberTooBig(token)
    return value


def _int(token: str) -> int:
    if len(token) > 19 and too_big(token):
        raise _NumberTooBig(token)
    return int(token)


class JsonObject(dict):
    """A JSON object that repeats a name: each name holds its first value, as rapidjson's FindMember finds it;
    ``pairs`` holds every member in order, as a loop over the object (GetObject) sees them. A repeated "b64" is
    not a base64 object (IsValBase64Object wants one member)."""

    def __init__(self, pairs):
        super().__init__(reversed(pairs))
        self.pairs = pairs


def _object(pairs):
    value = dict(pairs)
    return value if len(value) == len(pairs) else JsonObject(pairs)


_DECODER = json.JSONDecoder(parse_float=_float, parse_int=_int, object_pairs_hook=_object)


def _decode(text: str, start: int):
    """The JSON value at ``start``: by Python's decoder, or, nested deeper than it recurses, by
    serving.json_iterative (to its MAX_DEPTH levels, whatever the caller's stack)."""
    try:
        return _DECODER.raw_decode(text, start)[0]
    except RecursionError:
        pass   # parsed again below, once out of this handler
    return json_iterative.raw_decode(_DECODER, text, start)[0]


def _with_rapidjson_constants(text: str) -> tuple[str, list]:
    """``text`` with ``Inf`` / ``-Inf`` written ``Infinity`` / ``-Infinity`` and ``-NaN`` as ``NaN`` (outside
    strings), and the edits as (start and end in the new text, start in ``text``, characters added)."""
    parts, edits, last, shift = [], [], 0, 0
    for match in _CONSTANTS.finditer(text):
        token = match.group()
        if token[0] == '"' or token.endswith("Infinity"):
            continue
        new = token + "inity" if token.endswith("Inf") else "NaN"
        parts += [text[last:match.start()], new]
        edits.append((match.start() + shift, match.start() + shift + len(new), match.start(), len(new) - len(token)))
        shift += len(new) - len(token)
        last = match.end()
    return "".join(parts) + text[last:], edits


def _original_offset(pos: int, edits: list) -> int:
    """An offset in the edited text as an offset in the original (inside an edited token: the token's start)."""
    shift = 0
    for new_start, new_end, old_start, added in edits:
        if pos < new_start:
            break
        if pos < new_end:
            return old_start
        shift += added
    return pos - shift


def _too_big_offset(text: str, start: int) -> int:
    for match in _NUMBERS.finditer(text, start):
        if match.group()[0] != '"' and too_big(match.group()):
            return match.start()
    return start
