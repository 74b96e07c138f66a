"""The order model versions are listed in: by number, as TF Serving orders them (9 before 10), then what names no
version number (a group's ``None``, live accuracy's ``unknown``) by its text."""
from __future__ import annotations


def order(version) -> tuple:
    """A sort key for a model version: an int, or its digits as text (live accuracy's keys), by its value; else
    after every number."""
    text = "" if version is None else str(version)
    if isinstance(version, int) or text.isascii() and text.isdigit():
        return 0, int(text), ""
    return 1, 0, text
