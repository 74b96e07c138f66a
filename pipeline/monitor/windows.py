"""Time windows for grouping served answers: ``day`` (the default), ``6h``, ``30m``, ``2d`` … or ``all``."""
from __future__ import annotations

import datetime as dt
import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse(text: str) -> int | None:
    """Seconds per window (None for ``all``); ValueError for anything else."""
    text = text.strip().lower()
    if text == "all":
        return None
    if text == "day":
        return 86400
    match = re.fullmatch(r"(\d+)([smhd])", text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"--window must be day, all or a duration such as 6h, 30m, 2d; got {text!r}")
    return int(match.group(1)) * UNITS[match.group(2)]


def start(when: float, seconds: int | None) -> float:
    """The start of the (UTC-aligned) window holding ``when``; 0 for ``all``."""
    return 0.0 if seconds is None else when - when % seconds


def label(begin: float, seconds: int | None) -> str:
    """The window's start (UTC) and its width in the largest unit that divides it: ``2023-11-14 21:00 +90m``."""
    if seconds is None:
        return "all"
    first = dt.datetime.fromtimestamp(begin, dt.timezone.utc)
    if seconds % 86400 == 0:
        return first.strftime("%Y-%m-%d") + (f" +{seconds // 86400}d" if seconds > 86400 else "")
    unit = next(u for u in ("h", "m", "s") if seconds % UNITS[u] == 0)
    shown = first.strftime("%Y-%m-%d %H:%M" if unit != "s" else "%Y-%m-%d %H:%M:%S")
    return f"{shown} +{seconds // UNITS[unit]}{unit}"
