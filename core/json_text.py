"""JSON text decoded with Python's decoder, a document nested too deeply for it a ValueError as any other text that
is not JSON (the decoder recurses, and a few hundred kilobytes of ``[`` raise RecursionError)."""
from __future__ import annotations

import json


class NestedTooDeep(ValueError):
    """The document nests arrays or objects deeper than Python's decoder can follow."""


def loads(text: str | bytes):
    """``json.loads(text)``; :class:`NestedTooDeep` (a ValueError) for a document nested too deeply to decode."""
    try:
        return json.loads(text)
    except RecursionError:
        raise NestedTooDeep("the document nests arrays or objects too deeply") from None
