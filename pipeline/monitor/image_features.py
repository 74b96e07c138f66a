"""Features of an encoded image that show input drift, computed alike for logged requests and training examples.

* ``width``, ``height`` (pixels), ``aspect`` (width / height)
* ``ink_share``: share of pixels darker than mid-grey (after compositing transparency over white)
* ``mean_intensity``: mean grey level, 0 (black) to 1 (white); inverted images (light ink on dark) flip both
* ``format``: PNG, JPEG, … or ``unreadable``
* ``source``: ``canvas`` (a PNG of the web client's drawing pad), ``upload`` (any other image), ``unknown``
  (not decodable)
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from core.image_io import DEFAULT_MAX_PIXELS

CANVAS_SIZE = (320, 320)   # the drawing pad of web/static/index.html: what the web client sends for a drawing
MAX_PIXELS = DEFAULT_MAX_PIXELS   # the ExampleGen's decompression-bomb guard, by default
NUMERIC = ("width", "height", "aspect", "ink_share", "mean_intensity")
CATEGORICAL = ("format", "source")
UNREADABLE = {"format": "unreadable", "source": "unknown"}


def features(data: bytes, origin: str = "") -> dict:
    """The features of one image; numeric ones are left out when it does not decode. ``origin`` is where the
    web client says the image came from (canvas or upload); without it, the source is guessed from the size."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                return dict(UNREADABLE)
            fmt = img.format or "unknown"
            size = img.size
            rgba = img.convert("RGBA")
    except Exception:   # PIL raises many kinds for bad bytes
        return dict(UNREADABLE)
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    grey = np.asarray(Image.alpha_composite(white, rgba).convert("L"), dtype=np.float32) / 255.0
    width, height = size
    return {"width": float(width), "height": float(height), "aspect": width / max(height, 1),
            "ink_share": float(np.mean(grey < 0.5)), "mean_intensity": float(grey.mean()), "format": fmt,
            "source": origin if origin in ("canvas", "upload") else
            "canvas" if fmt == "PNG" and size == CANVAS_SIZE else "upload"}
