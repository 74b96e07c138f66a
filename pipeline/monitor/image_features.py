"""Features of an encoded image that show input drift, computed alike for logged requests and training examples.

The numeric ones are measured on the ink crop the model sees (``models.preprocessing``: composited over white,
inverted, contrast stretched, cropped to the ink with its margin), so that a letter drawn on the web client's
320 x 320 pad compares with a training letter's tight crop (measured on the whole image, every drawing had set off
the input-skew alarm: its size, aspect, ink share and grey level were the pad's). An image of 16- or 32-bit
values is first made 8-bit as the model gets it (``core.image_io.as_read``: a 16-bit PNG's high byte, as
``tf.io.decode_image(dtype=uint8)`` reads it; a TIFF as ``check_image`` re-encodes it for the model):

* ``width``, ``height`` (pixels of the crop): shown, not judged, since the Transform scales every crop to the
  model's input size
* ``aspect`` (width / height of the crop)
* ``ink_share``: share of the crop's pixels darker than mid-grey after the contrast stretch
* ``mean_intensity``: the crop's mean grey level after the stretch, 0 (black) to 1 (white); inverted images (light
  ink on dark) flip both: their "ink" is the paper, and the crop is the whole image
* ``format``: PNG, JPEG, … or ``unreadable``
* ``source``: ``canvas`` (a PNG of the web client's drawing pad), ``upload`` (any other image), ``unknown``
  (not decodable)
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from core.image_io import DEFAULT_MAX_PIXELS, over_white
from models.preprocessing import CROP_MARGIN, INK_THRESHOLD, MIN_CONTRAST

CANVAS_SIZE = (320, 320)   # the drawing pad of web/static/index.html: what the web client sends for a drawing
NUMERIC = ("width", "height", "aspect", "ink_share", "mean_intensity")
JUDGED = ("aspect", "ink_share", "mean_intensity")   # the numeric features with a skew threshold
CATEGORICAL = ("format", "source")
UNREADABLE = {"format": "unreadable", "source": "unknown"}


def features(data: bytes, origin: str = "", max_pixels: int = DEFAULT_MAX_PIXELS) -> dict:
    """The features of one image; numeric ones are left out when it does not decode. ``origin`` is where the
    web client says the image came from (canvas or upload); without it, the source is guessed from the size.
    ``max_pixels``: the decompression-bomb guard (Config.max_image_pixels, as the ExampleGen and the web client
    read it: LETTERS_MAX_IMAGE_PIXELS); a larger image is unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > max_pixels:
                return dict(UNREADABLE)
            fmt = img.format or "unknown"
            size = img.size
            grey = over_white(img)
    except Exception:   # PIL raises many kinds for bad bytes
        return dict(UNREADABLE)
    ink = ink_crop(1.0 - np.asarray(grey, dtype=np.float32) / 255.0)
    height, width = ink.shape
    return {"width": float(width), "height": float(height), "aspect": width / height,
            "ink_share": float(np.mean(ink > 0.5)), "mean_intensity": float(1.0 - ink.mean()), "format": fmt,
            "source": origin if origin in ("canvas", "upload") else
            "canvas" if fmt == "PNG" and size == CANVAS_SIZE else "upload"}


def ink_crop(ink: np.ndarray) -> np.ndarray:
    """[h, w] ink (1) on paper (0) → contrast stretched and cropped to the ink with its margin, as
    ``models.preprocessing.ink_crop`` does in the model's graph (unchanged where the image is nearly blank)."""
    lo, hi = float(ink.min()), float(ink.max())
    if hi - lo > MIN_CONTRAST:
        ink = (ink - lo) / (hi - lo)
    rows, cols = np.flatnonzero((ink > INK_THRESHOLD).any(axis=1)), np.flatnonzero((ink > INK_THRESHOLD).any(axis=0))
    if rows.size == 0:
        return ink
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    margin = int(np.ceil(CROP_MARGIN * max(y1 - y0, x1 - x0)))
    return ink[max(y0 - margin, 0):y1 + margin, max(x0 - margin, 0):x1 + margin]
