"""Base64 text read as TF Serving reads a ``{"b64": ...}`` value (absl::Base64Unescape, util/json_tensor.cc):
the model server's REST API and the web client's JSON API take the same strings."""
from __future__ import annotations

import binascii

_NO_SPACE = str.maketrans("", "", " \t\n\v\f\r")   # absl::ascii_isspace


def decode(text: str) -> bytes:
    """absl::Base64Unescape: the standard alphabet; whitespace anywhere is skipped; padding ("=", or ".") is
    left out or complete ("QQ" and "QQ==" decode, "QQ=" does not). Anything else raises ValueError."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    if not len(text) % 4 and "=" not in text[:-2]:   # the common case, without the regex check of validate=True
        try:
            return binascii.a2b_base64(text, strict_mode=True)
        except ValueError:   # binascii.Error is one
            pass
    # absl's rules: ASCII whitespace skipped anywhere; "=" or "." pads, none or exactly what the last group misses
    cleaned = text.translate(_NO_SPACE)
    data = cleaned.rstrip("=.")
    left, padding = len(data) % 4, len(cleaned) - len(data)
    if left == 1 or (padding and padding != {0: 0, 2: 2, 3: 1}[left]):
        raise ValueError("not base64")
    # strict: a character outside the alphabet, or padding inside the data, is refused (binascii.Error: a ValueError)
    return binascii.a2b_base64(data + "=" * (-len(data) % 4), strict_mode=True)
