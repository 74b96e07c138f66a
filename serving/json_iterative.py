"""JSON arrays and objects parsed without recursion, to :data:`MAX_DEPTH` levels: what serving.json_parse falls back
on when Python's decoder, which recurses once per level, runs out of recursion (some hundreds of levels, fewer the
deeper the caller's stack). rapidjson in TF Serving parses iteratively (kParseIterativeFlag), so a request may nest
thousands deep in a key the server ignores.

The containers are walked here with a list of the open ones; every other value is read by the decoder's own scanner.
What comes out, and every error (its message and offset), is what Python's decoder gives (Modules/_json.c
``_parse_array_unicode``, ``_parse_object_unicode``), so serving.json_parse maps them to rapidjson's words as it
maps the decoder's.
"""
from __future__ import annotations

import json

MAX_DEPTH = 100_000   # levels of arrays and objects, the document's own one counted


class TooDeep(Exception):
    """The document nests arrays or objects deeper than :data:`MAX_DEPTH`; ``pos``: the offset of the one too
    deep."""

    def __init__(self, pos: int):
        super().__init__(pos)
        self.pos = pos


def raw_decode(decoder: json.JSONDecoder, text: str, start: int):
    """``decoder.raw_decode(text, start)`` without recursion: (the value, the offset after it). JSONDecodeError as
    the decoder raises it; :class:`TooDeep` past :data:`MAX_DEPTH` levels."""
    scan, pairs_hook, skip = decoder.scan_once, decoder.object_pairs_hook, json.decoder.WHITESPACE.match
    open_ = []    # per open container: [its items (a list, or the (key, value) pairs of an object), the next key]
    pos = start
    while True:
        char = text[pos:pos + 1]
        if char == "[" or char == "{":   # a container: opened, or its value when it is empty
            if len(open_) == MAX_DEPTH:
                raise TooDeep(pos)
            pos = skip(text, pos + 1).end()
            if text[pos:pos + 1] != ("]" if char == "[" else "}"):
                key = None
                if char == "{":
                    key, pos = _key(text, pos, skip, decoder.strict)
                open_.append([[], key])
                continue
            value = [] if char == "[" else pairs_hook([])
            pos += 1
        else:
            try:
                value, pos = scan(text, pos)
            except StopIteration as err:
                raise json.JSONDecodeError("Expecting value", text, err.value) from None
        while True:   # the value into its container; those it closes into theirs
            if not open_:
                return value, pos
            items, key = open_[-1]
            items.append(value if key is None else (key, value))
            pos = skip(text, pos).end()
            closing = "]" if key is None else "}"
            if text[pos:pos + 1] == closing:
                open_.pop()
                value = items if key is None else pairs_hook(items)
                pos += 1
                continue
            if text[pos:pos + 1] != ",":
                raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
            pos = skip(text, pos + 1).end()
            if key is not None:
                open_[-1][1], pos = _key(text, pos, skip, decoder.strict)
            break


def _key(text: str, pos: int, skip, strict: bool) -> tuple[str, int]:
    """An object member's name at ``pos`` and its colon: (the name, the offset of its value)."""
    if text[pos:pos + 1] != '"':
        raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, pos)
    key, pos = json.decoder.scanstring(text, pos + 1, strict)
    pos = skip(text, pos).end()
    if text[pos:pos + 1] != ":":
        raise json.JSONDecodeError("Expecting ':' delimiter", text, pos)
    return key, skip(text, pos + 1).end()
