"""Checking and normalising encoded images before they enter the pipeline or reach the model.

One policy, used by the ExampleGen and by the web client's backend:

* reject what is not a readable image: empty, oversize, unidentifiable, truncated or corrupt data, and
  images whose pixel count marks a decompression bomb;
* keep the original bytes when the model's graph decodes them faithfully (``models.preprocessing.decoded``:
  TensorFlow's ``tf.io.decode_image``, and a JPEG by ``tf.io.decode_jpeg`` with Pillow's accurate integer DCT):
  PNG (1, L, LA, RGB, RGBA, P, 16-bit), JPEG (L, RGB, CMYK with Adobe's APP14 marker; baseline, extended or
  progressive, Huffman or arithmetic coded), GIF (one opaque frame filling its screen), BMP (L, RGB);
* re-encode to PNG only what that decoder rejects or reads wrongly (WebP, TIFF, palette and 1-bit BMP,
  transparent GIF, a 32-bit BMP whose fourth byte TensorFlow takes for alpha, a 16-bit, OS/2 or run-length BMP it
  refuses or misreads, or one with bytes after its last row, which it refuses, a lossless JPEG, whose process
  TensorFlow's libjpeg refuses), preserving transparency as alpha, and an animated GIF as its first frame
  (TensorFlow decodes every frame: a decompression bomb of many small frames); ``tests/test_image_io.py`` pins
  that these formats are indeed the ones TensorFlow mis-decodes or rejects;
* refuse an image with no ink (``no_ink``): one flat tone, a white or a black page or a single pixel, in which the
  model's Transform finds no contrast to stretch (``configs.MIN_CONTRAST``), and answers a letter for all the same;
* refuse what Pillow reads and TensorFlow's decoders refuse as damaged: a PNG with a critical chunk failing its
  CRC, or cut short before its IEND chunk; a BMP cut short in its last row (Pillow reads it without its padding
  bytes); a GIF whose pixels use a colour its colour table lacks (or that has no colour table), which viewers show
  each their own way, whose image data is cut short before its end block, or with a byte that begins no block
  before its image;
* re-encode a JPEG that lacks its end marker (FF D9), an upload cut short, when Pillow reads all its rows:
  TensorFlow's decoder refuses it (it reads past the end of the data), and nothing is lost;
* re-encode also what TensorFlow decodes but reads otherwise than a viewer shows it: a PNG whose transparency is
  one key colour (tRNS on a grey or RGB image: TensorFlow reads it opaque, so a transparent background became
  ink), a photo with an EXIF orientation (turned upright first; TensorFlow ignores EXIF, so a phone's sideways
  photo reached the model on its side while the page showed it upright), a CMYK JPEG without Adobe's APP14
  marker (TensorFlow reads its inks as stored plainly, not inverted as Adobe writes them and viewers read them: a
  white page came out black), and a GIF whose frame does not cover its logical screen (TensorFlow reads the frame's
  rectangle alone and draws it as if at the top left, so a frame set off from the corner came out black): kept as
  a viewer shows it, the frame in its place and the rest of the screen transparent;
* a re-encoded lossy WebP or JPEG without transparency (a phone's or a browser's photo) becomes a JPEG of quality
  95 without chroma subsampling, not a PNG: as a PNG it grew about 14 times, past the upload limit it had passed,
  into every request to the model (``python -m bench.reencode``: a 0.5 MB WebP of 12 megapixels is a 7.4 MB PNG in
  2.7 s, a 2.0 MB JPEG in 0.05 s);
* refuse a re-encoding over the size limit as the original over it is refused (``too_large``): a lossless WebP
  of 50 kB, 4000 x 4000 px of three noise rows repeated, is a PNG of 48 MB.

Two files are one picture when their pixels are (:func:`pixel_digest`: a PNG, its re-compression and its BMP copy
alike): the ExampleGen splits and reports duplicates by it, and the feedback store keeps one label per picture by it.
"""
from __future__ import annotations

import collections
import hashlib
import io
import os
import re
import stat
import threading
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageOps

from core import configs

ACCEPTED_FORMATS = frozenset({"PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"})
# (format, mode) pairs that the model's graph (models.preprocessing.decoded) reads as Pillow does: a JPEG by
# libjpeg's accurate integer DCT, Pillow's, where tf.io.decode_image's fast one is up to 13 levels off (a CMYK JPEG
# only with Adobe's marker: _cmyk_inks_misread).
TF_NATIVE = frozenset({
    ("PNG", "1"), ("PNG", "L"), ("PNG", "LA"), ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "P"),
    ("PNG", "I;16"), ("PNG", "I;16B"),  # 16-bit gray: TF keeps the high byte, as it should
    ("JPEG", "L"), ("JPEG", "RGB"), ("JPEG", "CMYK"),
    ("GIF", "P"), ("GIF", "L"),
    ("BMP", "L"), ("BMP", "RGB"),
})
_EXIF_ORIENTATION = 0x0112
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
PNG_MAX_SIDE = 1_000_000   # libpng's default user limit, kept by TensorFlow's PNG decoder: a longer side is refused


class ImageRejected(ValueError):
    """The data is not an image the project accepts; ``reason`` is a short category."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class CheckedImage:
    data: bytes          # bytes to store/send: the original, or a PNG (or JPEG) re-encoding
    format: str          # original format (PNG, JPEG, ...)
    mode: str            # original Pillow mode
    width: int
    height: int
    reencoded: bool
    reencoded_as: str = "PNG"

    @property
    def data_format(self) -> str:
        """The format of ``data`` (``reencoded_as`` when re-encoded)."""
        return self.reencoded_as if self.reencoded else self.format


def read_checked(path: str, max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS, *,
                 opener=open, size=os.path.getsize) -> CheckedImage:
    """Reads one image file and checks it (:func:`check_image`); an oversize file is refused before it is read.
    ``opener``/``size``: another file system's (TFX's ``fileio`` for gs://). Raises :class:`ImageRejected`, or
    OSError when the file cannot be read (also a broken link or a link loop)."""
    if "://" not in path and not stat.S_ISREG(os.stat(path).st_mode):
        # A pipe would block the read forever; a device or a socket is no image either.
        raise ImageRejected("not_a_file", "not a regular file (a pipe, a device or a socket)")
    length = size(path)
    if length > max_bytes:
        raise ImageRejected("too_large", f"{length} bytes is over the {max_bytes}-byte limit")
    with opener(path, "rb") as f:
        data = f.read()
    return check_image(data, max_bytes=max_bytes, max_pixels=max_pixels)


# The pixel limit is ``max_pixels`` (the max_image_pixels setting), checked on the header before any pixel is
# decoded, for every image the project takes from outside (check_image; the monitor's image features and the
# store's own images check theirs). Pillow's global limit would override it (a warning past 89 M pixels, a refusal
# past 179 M, and again when a GIF seeks a frame or a TIFF loads), and Pillow reads that global in every thread
# without a lock, so it is off rather than raised and lowered around each image.
Image.MAX_IMAGE_PIXELS = None


def _why(err: Exception) -> str:
    """A decoder's words for a refusal, for the person who sent the image (its exception's name only if it has
    no words)."""
    return str(err) or type(err).__name__


def check_image(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> CheckedImage:
    """Validates encoded image bytes and returns what to keep; raises :class:`ImageRejected`. ``max_bytes`` bounds
    what is kept, the re-encoding too: kept bytes over it are refused as ``too_large``."""
    if not data:
        raise ImageRejected("empty", "zero-byte file")
    if len(data) > max_bytes:
        raise ImageRejected("too_large", f"{len(data)} bytes is over the {max_bytes}-byte limit")
    try:
        img = Image.open(io.BytesIO(data))     # lazy: the header only, no pixel decoded yet
    except Exception:  # Pillow raises UnidentifiedImageError, but also others on odd headers
        raise ImageRejected("not_an_image", "cannot identify image data") from None
    fmt = (img.format or "").upper()
    if fmt == "MPO":   # a JPEG with more pictures after it (phones' depth maps, Ultra HDR gain maps): the
        fmt = "JPEG"   # first is the photo, the one both Pillow and TensorFlow's decode_image read
    width, height = img.size
    if fmt not in ACCEPTED_FORMATS:
        raise ImageRejected("unsupported_format", f"{fmt or 'unknown'} images are not accepted "
                            f"(accepted: {', '.join(sorted(ACCEPTED_FORMATS))})")
    if width < 1 or height < 1:
        raise ImageRejected("corrupt", f"image has size {width}x{height}")
    if width * height > max_pixels:
        raise ImageRejected("decompression_bomb",
                            f"{width}x{height} = {width * height} pixels is over the {max_pixels} limit")
    _check_side(width, height, max_pixels)
    try:
        img.load()
    except Exception as err:
        raise ImageRejected("truncated_or_corrupt", _why(err)) from None
    if fmt == "PNG":
        damaged = _damaged_png_chunk(data)
        if damaged:
            raise ImageRejected("truncated_or_corrupt", f"PNG {damaged}")
    rows_end = _bmp_rows_end(data) if fmt == "BMP" else None
    if rows_end is not None and len(data) < rows_end:   # (Pillow reads a last row without its padding)
        raise ImageRejected("truncated_or_corrupt", f"BMP data ends {rows_end - len(data)} byte(s) before its last "
                                                    f"row of pixels does (the file is cut short)")
    mode = img.mode
    uncovered = False
    if fmt == "GIF":
        box = _gif_first_frame_box(data, img)
        uncovered = box != (0, 0, *img.size)
        if uncovered:   # TensorFlow would read the frame alone, at the top left
            img = _on_transparent_screen(img, box)
    turned = _orientation(img) not in (1, None)
    if turned:   # a phone photo held sideways: shown upright, it would reach the model on its side
        try:
            img = ImageOps.exif_transpose(img)
        except Exception as err:
            raise ImageRejected("truncated_or_corrupt", f"EXIF orientation: {_why(err)}") from None
        width, height = img.size
    _check_ink(img)
    jpeg_refused = fmt == "JPEG" and _jpeg_process(data) not in _TF_JPEG_PROCESSES
    jpeg_unended = fmt == "JPEG" and not _jpeg_ends(data)   # (every row read: its pixels are kept)
    if (fmt, mode) in TF_NATIVE and not turned and not uncovered and not _animated_with_alpha(img) \
            and not _key_colour_alpha(img) and not _bmp_tensorflow_misreads(fmt, data) \
            and not _animated_gif(fmt, img) and not jpeg_refused and not jpeg_unended \
            and not _cmyk_inks_misread(fmt, mode, img):
        return CheckedImage(data, fmt, mode, width, height, reencoded=False)
    if (fmt == "JPEG" and not jpeg_refused or fmt == "WEBP" and _lossy_webp(data)) \
            and img.mode in ("RGB", "L", "CMYK") and "transparency" not in img.info:
        reencoded, reencoded_as = to_jpeg(img), "JPEG"
    else:
        reencoded, reencoded_as = to_png(img), "PNG"
    if len(reencoded) > max_bytes:   # (a small lossless WebP of repeated noise rows: a PNG of 48 MB)
        raise ImageRejected("too_large", f"{len(data)} bytes as {fmt}, but {len(reencoded)} bytes as the "
                                         f"{reencoded_as} it is re-encoded to for the model, over the "
                                         f"{max_bytes}-byte limit")
    return CheckedImage(reencoded, fmt, mode, width, height, reencoded=True, reencoded_as=reencoded_as)


def _check_side(width: int, height: int, max_pixels: int) -> None:
    """Refuses a side TensorFlow's PNG decoder refuses, whatever the format: a 1 x 2,000,000 strip passed the pixel
    limit, and one such image failed a whole training batch; a BMP, which TensorFlow reads at any length, becomes a
    PNG when the feedback store exports it for training, and a TIFF or WebP when it is re-encoded. And a strip so
    thin that the model's padding (``models.preprocessing.pad_to_aspect``: the short side at least 1/48 of the
    long one, at the default input size) makes it more than ``max_pixels``: 1 x 1,000,000 px became a
    1,000,000 x 20,834 tensor, which the model ran out of memory on."""
    long, short = max(width, height), min(width, height)
    if long > PNG_MAX_SIDE:
        raise ImageRejected("side_too_long", f"{width}x{height}: the model's PNG decoder (libpng), which reads the "
                                             f"images trained on, takes at most {PNG_MAX_SIDE:,} px a side")
    padded = long * max(short, -(-long // _MODEL_SIDE))
    if padded > max_pixels:
        raise ImageRejected("side_too_long", f"{width}x{height}: so thin a strip is padded by the model to "
                                             f"{padded:,} pixels, over the {max_pixels:,} limit")


def _check_ink(img: Image.Image) -> None:
    """Refuses an image with no ink: one whose ink, as the Transform reads it (:func:`ink_range`), spans no more
    than ``configs.MIN_CONTRAST``, which the Transform leaves as it is, finding nothing to stretch and crop. The
    model answers a letter for it all the same (a white page, a black one, a single pixel), and a correction of it
    would teach one. Judged by 8-bit extremes (:func:`_ink_extremes`), and in float32 as the Transform computes it
    only when they are within a few levels of the threshold, so that the two cannot disagree."""
    inked = _ink_image(img)
    darkest, lightest = _ink_extremes(inked)
    span = (darkest - lightest) / 255
    if abs(span - configs.MIN_CONTRAST) <= _INK_LEVELS_OFF / 255:
        span = float(_ink_span(inked))
    if span <= np.float32(configs.MIN_CONTRAST):
        tone = "one flat tone" if span == 0 else \
            f"nearly one flat tone (its grey spans {span:.1%} of white to black, at most {configs.MIN_CONTRAST:.0%})"
        raise ImageRejected("no_ink", f"the image is {tone}: no ink to read a letter from")


_INK_LEVELS_OFF = 4   # how far (in levels of 255) the 8-bit ink of _ink_extremes may be from the Transform's float
_RGB_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)   # tf.image.rgb_to_grayscale's


def _ink_image(img: Image.Image) -> Image.Image:
    """The image as the model reads its ink (:func:`as_read`, :func:`shrunk_size`: at most MAX_INK_SIDE a side), in
    mode L, LA, RGB or RGBA. A shrunk one is averaged by Pillow's box filter and rounded to 8 bits where the model's
    area averaging is exact in float: near MIN_CONTRAST the two may judge it apart, by a level or so."""
    if img.mode not in ("L", "LA", "RGB", "RGBA") or "transparency" in img.info:   # (a key colour: made alpha)
        img = as_read(img)
    size = shrunk_size(*img.size)
    if size and img.mode in ("LA", "RGBA"):   # each channel alone, as the model's area averaging does: Pillow's
        # resize weighs colour by alpha, its core's does not. One pass over all the channels, where a split had first
        # copied each at full size (0.35 of the 1.3 s a 6300 x 6300 drawing's check took), the result the same.
        img.load()
        return img._new(img.im.resize(size, Image.Resampling.BOX, (0, 0, *img.size)))
    if size:
        return img.resize(size, Image.Resampling.BOX)
    return img


def shrunk_size(width: int, height: int) -> tuple[int, int] | None:
    """The size ``models.preprocessing.shrunk`` shrinks an image to before it reads its ink (its longer side
    ``configs.MAX_INK_SIDE``, the other in proportion, rounded half to even, at least 1 px), or None when it is
    read as it is."""
    longer = max(width, height)
    if longer <= configs.MAX_INK_SIDE:
        return None
    scale = configs.MAX_INK_SIDE / longer
    return max(round(width * scale), 1), max(round(height * scale), 1)


def _ink_extremes(inked: Image.Image) -> tuple[int, int]:
    """The darkest and the lightest ink (0 paper to 255 black) of an :func:`_ink_image`, in Pillow's 8-bit
    arithmetic: its grey (ITU-R 601 weights) inverted and times the alpha, each rounded (within _INK_LEVELS_OFF
    levels of the Transform's float)."""
    ink = ImageOps.invert(inked.convert("L"))
    if inked.mode in ("LA", "RGBA"):
        ink = ImageChops.multiply(ink, inked.getchannel("A"))
    low, high = ink.getextrema()
    return high, low


def _ink_span(inked: Image.Image) -> np.float32:
    """Max minus min of an :func:`_ink_image`'s ink in float32, as the Transform computes it."""
    values = np.asarray(inked, dtype=np.float32) / np.float32(255)
    if values.ndim == 2:
        ink = np.float32(1) - values
    else:
        ink = np.float32(1) - (values[..., 0] if inked.mode == "LA" else values[..., :3] @ _RGB_WEIGHTS)
        if inked.mode in ("LA", "RGBA"):
            ink *= values[..., -1]
    return ink.max() - ink.min()


def ink_range(img: Image.Image) -> np.float32:
    """Max minus min of the image's ink as ``models.preprocessing.ink_crop`` computes it before its contrast stretch,
    in float32 as it does: the image as TensorFlow reads it (:func:`as_read`), grey (one channel as it is, RGB by
    ``tf.image.rgb_to_grayscale``'s weights), inverted and times its alpha (composited over white); shrunk first
    as the model shrinks it (:func:`_ink_image`)."""
    return _ink_span(_ink_image(img))


_MODEL_SIDE = configs.Config().image_size   # the default model input side, which pad_to_aspect pads strips to


_PNG_CRITICAL = (b"IHDR", b"PLTE", b"IDAT", b"IEND")


def _damaged_png_chunk(data: bytes) -> str | None:
    """What libpng, which TensorFlow's decoder runs, refuses and Pillow reads: a critical chunk (IHDR, PLTE, IDAT,
    IEND) whose CRC does not match, or a file cut short before its IEND chunk ends (Pillow's load stops when the
    pixels are complete). None for a whole PNG; bytes after IEND are not read by either."""
    view, at = memoryview(data), 8                    # after the signature
    while at + 12 <= len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        kind = data[at + 4:at + 8]
        end = at + 8 + length
        if end + 4 > len(data):
            break
        if kind in _PNG_CRITICAL and zlib.crc32(view[at + 4:end]) != int.from_bytes(data[end:end + 4], "big"):
            return f"chunk {kind.decode('ascii', 'replace')} fails its checksum (damaged data)"
        if kind == b"IEND":
            return None
        at = end + 4
    return "data ends before its IEND chunk (the file is cut short)"


# The JPEG processes (start-of-frame markers) TensorFlow's libjpeg decodes: baseline, extended and progressive DCT,
# Huffman or arithmetic coded. It refuses the others; of those Pillow reads only the lossless one (SOF3).
_TF_JPEG_PROCESSES = frozenset({0xC0, 0xC1, 0xC2, 0xC9, 0xCA})
_JPEG_NOT_SOF = frozenset({0xC4, 0xC8, 0xCC})   # DHT, JPG, DAC: C0-CF markers that start no frame


def _jpeg_markers(data: bytes):
    """The markers of a JPEG, in order, walking its marker segments from its start as Pillow does and, after each
    start of scan, its entropy-coded data up to the marker after it; ends where the data does."""
    at = 2                                            # after SOI
    while at + 2 <= len(data):
        if data[at] != 0xFF or data[at + 1] == 0xFF:  # fill bytes (or junk, which Pillow skips as well)
            at += 1
            continue
        marker = data[at + 1]
        yield marker
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length: RSTn, TEM
            at += 2
            continue
        at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
        if marker == 0xDA:                            # start of scan: its data runs up to the next marker
            found = _JPEG_SCAN_END.search(data, at)
            if found is None:
                return
            at = found.start()


def _jpeg_process(data: bytes) -> int | None:
    """The start-of-frame marker of a JPEG's first picture (0xC0 baseline ... 0xC3 lossless); None when none is
    found before the data ends."""
    return next((marker for marker in _jpeg_markers(data)
                 if 0xC0 <= marker <= 0xCF and marker not in _JPEG_NOT_SOF), None)


# In entropy-coded data a 0xFF byte is followed by 0x00 (a stuffed 0xFF), a restart marker (0xD0-0xD7) or another
# 0xFF (fill): any other byte after it is the marker that ends the scan.
_JPEG_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _jpeg_ends(data: bytes) -> bool:
    """Whether a JPEG's first picture reaches its end (EOI) marker. Without it TensorFlow's decoder (jpeg_handle.cc,
    which does not recover truncated data) may need bytes past the end of the data and refuses the image ("Input file
    read error"), where Pillow reads every row with no error."""
    return 0xD9 in _jpeg_markers(data)


def _gif_first_frame_box(data: bytes, img: Image.Image) -> tuple[int, int, int, int]:
    """The box (left, top, right, bottom) of a loaded GIF's first frame on its logical screen, read from the file's
    blocks. Refuses a byte other than an extension's or an image's introducer before the first image (Pillow skips
    it; TensorFlow's decoder, giflib, refuses the file, "Wrong record type detected", and Firefox takes it for the
    end of the file, so no picture: whatever Pillow shows was read past damage); a frame whose pixels use a colour
    its colour table (its own, else the global one) lacks, or that has no colour table: TensorFlow's decoder refuses
    it, and Pillow and viewers each draw it their own way; and a frame whose image data is cut short
    (:func:`_gif_image_data_end`).
    (The transparent colour is no colour: TensorFlow skips it before that check.)"""
    flags = data[10]
    colours = 2 << (flags & 7) if flags & 0x80 else 0
    at = 13 + 3 * colours                             # after the header, the screen and the global colour table
    while at < len(data) and data[at] == 0x21:       # extensions: a label, then sub-blocks up to an empty one
        at = _gif_blocks_end(data, at + 2) + 1
    if at + 10 > len(data):
        raise ImageRejected("truncated_or_corrupt", "GIF has no image descriptor")
    if data[at] != 0x2C:
        raise ImageRejected("truncated_or_corrupt", f"GIF has a byte 0x{data[at]:02X} at offset {at}, where a block "
                                                    f"(an extension or an image) begins (damaged data)")
    left, top, width, height = (int.from_bytes(data[at + i:at + i + 2], "little") for i in (1, 3, 5, 7))
    if data[at + 9] & 0x80:
        colours = 2 << (data[at + 9] & 7)
    _gif_image_data_end(data, at + 11 + (3 * colours if data[at + 9] & 0x80 else 0))
    box = (left, top, left + width, top + height)
    if not colours:
        raise ImageRejected("truncated_or_corrupt", "GIF has no colour table for its image")
    frame = img.crop(box)
    if frame.getextrema()[1] < colours:               # (Pillow's C: the common case costs next to nothing)
        return box
    used = np.flatnonzero(np.bincount(np.asarray(frame).ravel(), minlength=256)[colours:]) + colours
    used = used[used != img.info.get("transparency", -1)]
    if used.size:
        raise ImageRejected("truncated_or_corrupt", f"GIF pixels use colour {used[0]}, outside its colour table "
                                                    f"of {colours} colours")
    return box


def _gif_blocks_end(data: bytes, at: int) -> int:
    """Where the GIF sub-blocks starting at ``at`` end: the offset of their empty end block (``len(data)`` or more
    when the file ends first)."""
    while at < len(data) and data[at]:
        at += 1 + data[at]
    return at


def _gif_image_data_end(data: bytes, at: int) -> None:
    """Refuses the image data whose first block starts at ``at`` (after its LZW code size) when the file ends before
    its empty end block (its end block cut, or a trailer read as the size of a block that runs
    past the end): Pillow reads the pixels, TensorFlow's decoder (giflib, which reads up to the end block) does not."""
    if _gif_blocks_end(data, at) >= len(data):
        raise ImageRejected("truncated_or_corrupt", "GIF data ends before its image's data does (the file is cut "
                                                    "short)")


def _on_transparent_screen(img: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """A GIF's first frame as a viewer shows it: its pixels in their box, the rest of the screen transparent (the
    model, as for any transparency, takes it for white paper), as LA or RGBA."""
    frame = as_read(img)
    frame = frame.convert("LA" if frame.mode in ("L", "LA") else "RGBA")
    shown = Image.new(frame.mode, frame.size)        # all zero: transparent
    shown.paste(frame.crop(box), box[:2])
    return shown


def _orientation(img: Image.Image) -> int | None:
    """The EXIF orientation tag (1 = upright), or None when there is none or it cannot be read."""
    try:
        return img.getexif().get(_EXIF_ORIENTATION)
    except Exception:   # a damaged EXIF block: TensorFlow ignores EXIF, so the pixels are read as stored
        return None


def _bmp_tensorflow_misreads(fmt: str, data: bytes) -> bool:
    """A BMP that Pillow reads (as RGB or L) but TensorFlow's decoder does not: 32 bits (its fourth byte, unused
    and often 0, read as alpha: a letter whose alpha is 0 reaches the model blank), 16 bits (5-5-5 or 5-6-5
    colour, refused as an image of 2 channels), an OS/2 header (its 16-bit sizes misread), run-length
    compression (its size taken for rows of pixels) or bytes after its last row (refused: the file must end
    where its rows do)."""
    if fmt != "BMP" or len(data) < 30:
        return False
    header = int.from_bytes(data[14:18], "little")
    if header == 12:
        return True
    bits = int.from_bytes(data[28:30], "little")
    compression = int.from_bytes(data[30:34], "little") if len(data) >= 34 else 0
    return bits in (16, 32) or compression in (1, 2) or _bmp_rows_end(data) != len(data)


_BMP_UNCOMPRESSED = frozenset({0, 3, 6})   # BI_RGB, BI_BITFIELDS, BI_ALPHABITFIELDS: rows of pixels as stored


def _bmp_rows_end(data: bytes) -> int | None:
    """Where the pixel rows of a BMP with a Windows header and uncompressed rows end: its pixel data's offset plus
    its height's rows, each padded to 4 bytes. TensorFlow's decoder (DecodeBmpV2) refuses a file that does not end
    exactly there ("Input size should match (header_size + row_size * abs_height)"), where Pillow reads a last row
    without its padding and ignores bytes after it. None for an OS/2 header or compressed rows."""
    if len(data) < 34 or int.from_bytes(data[14:18], "little") == 12 \
            or int.from_bytes(data[30:34], "little") not in _BMP_UNCOMPRESSED:
        return None
    offset = int.from_bytes(data[10:14], "little")
    width, height = (int.from_bytes(data[at:at + 4], "little", signed=True) for at in (18, 22))
    bits = int.from_bytes(data[28:30], "little")
    return offset + (abs(width) * bits + 31) // 32 * 4 * abs(height)


def _cmyk_inks_misread(fmt: str, mode: str, img: Image.Image) -> bool:
    """A CMYK (or YCCK) JPEG without Adobe's APP14 marker: TensorFlow's decoder (jpeg_mem.cc) reads its inks
    inverted, as Adobe writes them and as Pillow and viewers read every CMYK JPEG, only when libjpeg saw that
    marker, whatever its transform flag; without it, as stored plainly, so a white page reached the model black.
    Pillow's ``adobe_transform`` is read from the marker's twelfth byte, the length libjpeg requires of it (a
    shorter one sets ``adobe`` alone and libjpeg ignores it)."""
    return fmt == "JPEG" and mode == "CMYK" and "adobe_transform" not in img.info


def _animated_gif(fmt: str, img: Image.Image) -> bool:
    """A GIF of more than one frame: TensorFlow's decoder decodes every frame to keep the first, so a few
    megabytes of small frames take gigabytes and seconds; only the first frame, as a PNG, is kept. (A JPEG's
    further pictures and an APNG's frames are not decoded.)"""
    return fmt == "GIF" and getattr(img, "n_frames", 1) > 1


def _key_colour_alpha(img: Image.Image) -> bool:
    """A grey or RGB PNG whose transparency is one key colour (tRNS): TensorFlow's decoder reads it opaque."""
    return img.format == "PNG" and img.mode != "P" and "transparency" in img.info


def _lossy_webp(data: bytes) -> bool:
    """Whether a WebP file's picture is VP8 (lossy) data rather than VP8L (lossless): its first such chunk."""
    pos = 12                                          # after "RIFF", the file size and "WEBP"
    while pos + 8 <= len(data):
        fourcc, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if fourcc in (b"VP8 ", b"VP8L"):
            return fourcc == b"VP8 "
        pos += 8 + size + (size & 1)                  # chunks are padded to an even size
    return False


def to_jpeg(img: Image.Image) -> bytes:
    """JPEG bytes (quality 95, no chroma subsampling) of a decoded RGB or grey image."""
    buf = io.BytesIO()
    img.convert("L" if img.mode == "L" else "RGB").save(buf, format="JPEG", quality=95, subsampling=0)
    return buf.getvalue()


def _animated_with_alpha(img: Image.Image) -> bool:
    # TF decodes GIF transparency as black; Pillow keeps it as a transparent index. Re-encode those.
    return img.format == "GIF" and "transparency" in img.info


def to_png(img: Image.Image) -> bytes:
    """PNG bytes of a decoded image as TensorFlow will read it (16-bit and float scaled to 8 bits, alpha kept, a
    key colour's transparency made alpha)."""
    buf = io.BytesIO()
    as_read(img).save(buf, format="PNG")
    return buf.getvalue()


def as_read(img: Image.Image) -> Image.Image:
    """The decoded image as TensorFlow will read it, in an 8-bit mode (:func:`to_png`'s conversion)."""
    mode = img.mode
    key = img.info.get("transparency") if mode in ("1", "L", "I;16", "I;16B", "I", "RGB") else None
    alpha = None
    if key is not None:
        pixels = np.asarray(img)
        clear = (pixels == np.asarray(key, dtype=pixels.dtype)).all(axis=-1) if pixels.ndim == 3 else pixels == key
        alpha = Image.fromarray(np.where(clear, 0, 255).astype(np.uint8), "L")
        img = img.copy()
        img.info.pop("transparency", None)
    if mode.startswith("I;16"):
        img = Image.fromarray((np.asarray(img, dtype=np.uint32) >> 8).astype(np.uint8), "L")
    elif mode in ("I", "F"):
        # 32-bit integer or float grayscale has no fixed white: scale by the image's own range.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        img = Image.fromarray(((arr - lo) * scale).astype("uint8"), "L")
    elif mode in ("1", "L"):
        img = img.convert("L")
    elif mode == "LA" or mode == "La":
        img = img.convert("LA")
    elif mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("RGBA", "RGBa", "PA"):
        img = img.convert("RGBA")
    else:  # RGB, CMYK, YCbCr, LAB, HSV, RGBX ...
        img = img.convert("RGB")
    if alpha is not None:
        img = img.convert("LA" if img.mode == "L" else "RGBA")
        img.putalpha(alpha)
    return img


def over_white(img: Image.Image) -> Image.Image:
    """The decoded image as TensorFlow will read it (:func:`as_read`: a 16-bit one by its high bytes), laid over
    white (its transparent pixels white, as the pipeline's preprocessing composites them), in grey ("L")."""
    rgba = as_read(img).convert("RGBA")   # made RGBA directly, every 16-bit value over 255 was white
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("L")


def pixel_digest(data: bytes) -> str:
    """sha256 of an image's size and RGBA pixels as Pillow decodes them: a JPEG and its PNG copy agree. The one
    identity of a picture: the ExampleGen's splits and duplicate report, and the feedback store's one label per image
    (core.feedback), judge by it, so that what the store refuses as the same picture is what training sees as one.
    A digest of the bytes where they do not decode (not checked images only). Kept per
    sha256 of the bytes (an example's split is asked twice: by Partition and by the report), not per bytes: a
    cache keyed on whole image files held up to a thousand of them in memory."""
    key = hashlib.sha256(data).digest()
    with _PIXEL_LOCK:
        digest = _PIXEL_DIGESTS.get(key)
        if digest is not None:
            _PIXEL_DIGESTS.move_to_end(key)
            return digest
    try:
        with Image.open(io.BytesIO(data)) as img:
            digest = _digest_of_pixels(img)
    except Exception:  # noqa: BLE001 - it was checked, so it decodes; a digest of the bytes otherwise
        digest = key.hex()
    with _PIXEL_LOCK:
        _PIXEL_DIGESTS[key] = digest
        if len(_PIXEL_DIGESTS) > PIXEL_DIGESTS_KEPT:
            _PIXEL_DIGESTS.popitem(last=False)
    return digest


_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")   # 16- and 32-bit values
_BAND_ROWS = 256


def _digest_of_pixels(img: Image.Image) -> str:
    """sha256 of the size and the pixels as RGBA (gray, palette, RGB alike: a PNG and its WebP or BMP copy agree).
    16- and 32-bit images are first made 8-bit as TensorFlow reads them (``as_read``: the high byte of a
    16-bit value), so a 16-bit PNG, its TIFF and its 8-bit copy agree; made RGBA directly, every value over 255
    had been 255, and different 16-bit letters had shared one digest. Converted a band of rows at a time: a whole
    40-megapixel image converted and copied at once had taken three times its decoded size in memory."""
    if img.mode in _WIDE_MODES:
        img = as_read(img)
    digest = hashlib.sha256(f"{img.size}".encode())
    for top in range(0, img.height, _BAND_ROWS):
        digest.update(img.crop((0, top, img.width, min(img.height, top + _BAND_ROWS))).convert("RGBA").tobytes())
    return digest.hexdigest()


PIXEL_DIGESTS_KEPT = 8192   # 32-byte keys, 64-character digests: about a megabyte
_PIXEL_DIGESTS: collections.OrderedDict = collections.OrderedDict()
_PIXEL_LOCK = threading.Lock()
