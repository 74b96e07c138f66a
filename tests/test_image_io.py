"""The image acceptance policy: what is rejected, what is kept as is, what is re-encoded (and why)."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from core import image_io
from models import preprocessing
from tests.conftest import letter_image, noise_rows_webp, png_bytes

RGB = letter_image(30, 20, "RGB")


def dotted(img: Image.Image) -> Image.Image:
    """``img`` with a dot of ink at its top left (black, or white on black), so that it is not refused as blank: a
    pixel, or for an image the model shrinks (to 1024 px a side) a square that stays one pixel of ink shrunk."""
    side = -(-max(img.size) // 512)
    img.paste(255 if img.getpixel((0, 0)) == 0 else 0, (0, 0, min(side, img.width), min(side, img.height)))
    return img


def _variants():
    """(format, mode) → encoded bytes for every kind of input the ExampleGen must accept."""
    i16 = Image.fromarray(np.asarray(letter_image(30, 20)).astype(np.uint16) * 257)
    return {
        ("PNG", "1"): png_bytes(RGB.convert("1")),
        ("PNG", "L"): png_bytes(RGB.convert("L")),
        ("PNG", "LA"): png_bytes(RGB.convert("LA")),
        ("PNG", "RGB"): png_bytes(RGB),
        ("PNG", "RGBA"): png_bytes(RGB.convert("RGBA")),
        ("PNG", "P"): png_bytes(RGB.convert("P")),
        ("PNG", "I;16"): png_bytes(i16),
        ("JPEG", "L"): png_bytes(RGB.convert("L"), "JPEG"),
        ("JPEG", "RGB"): png_bytes(RGB, "JPEG"),
        ("JPEG", "CMYK"): png_bytes(RGB.convert("CMYK"), "JPEG"),
        ("GIF", "P"): png_bytes(RGB.convert("P"), "GIF"),
        ("BMP", "L"): png_bytes(RGB.convert("L"), "BMP"),
        ("BMP", "RGB"): png_bytes(RGB, "BMP"),
        ("BMP", "P"): png_bytes(RGB.convert("P"), "BMP"),
        ("BMP", "1"): png_bytes(RGB.convert("1"), "BMP"),
        ("TIFF", "I;16"): png_bytes(i16, "TIFF"),
        ("WEBP", "RGB"): png_bytes(RGB, "WEBP", lossless=True),
        ("TIFF", "RGB"): png_bytes(RGB, "TIFF"),
    }


def _gray(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    if img.mode.startswith("I;16"):  # Pillow's own conversion clips 16-bit values; 8-bit is the high byte
        return np.asarray(img, dtype=np.int32) >> 8
    return np.asarray(img.convert("L"), dtype=np.int32)


def _tf_gray(data: bytes) -> np.ndarray | None:
    """Grey levels of the pixels the model's graph decodes (``models.preprocessing.decoded``), None if it refuses."""
    try:
        img = preprocessing.decoded(tf.constant(data)).numpy().astype(np.float64)
    except tf.errors.InvalidArgumentError:
        return None
    if img.shape[-1] >= 3:
        img = img[..., :3] @ np.array([0.299, 0.587, 0.114])
    else:
        img = img[..., 0]
    return np.rint(img).astype(np.int32)


@pytest.mark.parametrize("key", sorted(_variants()), ids=lambda k: "-".join(k))
def test_every_format_and_mode_is_accepted_and_decodes_like_pillow_in_tensorflow(key):
    data = _variants()[key]
    checked = image_io.check_image(data)
    assert (checked.format, checked.width, checked.height) == (key[0], 30, 20)
    # Whatever is kept is what the serving graph reads as Pillow does, a JPEG too (both by the accurate DCT).
    tf_pixels = _tf_gray(checked.data)
    assert tf_pixels is not None
    np.testing.assert_array_equal(tf_pixels, _gray(data))
    assert checked.reencoded == (key not in image_io.TF_NATIVE)


@pytest.mark.parametrize("key", sorted(k for k in _variants() if k not in image_io.TF_NATIVE),
                         ids=lambda k: "-".join(k))
def test_reencoded_formats_are_exactly_those_tensorflow_misreads(key):
    data = _variants()[key]
    tf_pixels = _tf_gray(data)
    assert tf_pixels is None or tf_pixels.shape != _gray(data).shape or \
        np.abs(tf_pixels - _gray(data)).max() > 6


def _bmp32(img: Image.Image) -> bytes:
    """A 32-bit BI_RGB BMP whose fourth byte is 0, as many Windows tools write it (Pillow writes 24 bits)."""
    width, height = img.size
    pixels = np.asarray(img.convert("RGB"))[::-1, :, ::-1]            # bottom-up rows, BGR
    body = np.concatenate([pixels, np.zeros((height, width, 1), np.uint8)], axis=2).tobytes()
    info = (40).to_bytes(4, "little") + width.to_bytes(4, "little") + height.to_bytes(4, "little") \
        + (1).to_bytes(2, "little") + (32).to_bytes(2, "little") + bytes(4) + len(body).to_bytes(4, "little") \
        + bytes(16)
    return b"BM" + (54 + len(body)).to_bytes(4, "little") + bytes(4) + (54).to_bytes(4, "little") + info + body


def test_a_32_bit_bmp_is_reencoded_so_that_tensorflow_does_not_read_its_fourth_byte_as_alpha():
    data = _bmp32(RGB)
    assert Image.open(io.BytesIO(data)).mode == "RGB"
    assert tf.io.decode_image(data, expand_animations=False).numpy()[..., 3].max() == 0   # all transparent to TF
    checked = image_io.check_image(data)
    assert checked.reencoded and checked.reencoded_as == "PNG" and (checked.format, checked.mode) == ("BMP", "RGB")
    assert np.abs(_tf_gray(checked.data) - _gray(data)).max() == 0


def _bmp(bits: int, os2: bool = False) -> bytes:
    """A 24 × 20 BMP TensorFlow's decoder refuses and Pillow reads: 16 bits per pixel (5-5-5), or 24 bits under an
    OS/2 header."""
    import struct
    width, height = 24, 20
    rows = []
    for y in range(height):
        if bits == 16:
            row = b"".join((((x * 3 + y) % 32) << 10 | 0x1F).to_bytes(2, "little") for x in range(width))
        else:
            row = b"".join(bytes([(x * 9) % 256, (y * 11) % 256, 200]) for x in range(width))
        rows.append(row + bytes(-len(row) % 4))
    body = b"".join(rows)
    info = struct.pack("<IHHHH", 12, width, height, 1, bits) if os2 else \
        struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, 0, len(body), 2835, 2835, 0, 0)
    offset = 14 + len(info)
    return b"BM" + struct.pack("<IHHI", offset + len(body), 0, 0, offset) + info + body


@pytest.mark.parametrize("data", [_bmp(16), _bmp(24, os2=True)], ids=["16-bit", "OS/2 header"])
def test_a_bmp_tensorflow_refuses_is_reencoded(data):
    """TensorFlow's BMP decoder takes 16 bits per pixel for 2 channels, and misreads an OS/2 header's sizes: such
    a file had passed the check as it was, and failed its whole batch at the model."""
    assert Image.open(io.BytesIO(data)).mode == "RGB" and _tf_gray(data) is None
    checked = image_io.check_image(data)
    assert checked.reencoded and checked.reencoded_as == "PNG"
    model_sees = tf.io.decode_image(checked.data, channels=3, expand_animations=False).numpy()
    assert (model_sees == np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))).all()   # the pixels Pillow reads


def test_an_animated_gif_keeps_its_first_frame_only():
    """TensorFlow decodes every frame of a GIF to return the first: many small frames were a decompression bomb
    under the pixel limit (300 frames of 2000 x 2000: 1.1 GB and 8 s)."""
    frames = [RGB.convert("P")] + [letter_image(30, 20, "RGB").rotate(90).convert("P")] * 5
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    checked = image_io.check_image(buf.getvalue())
    assert checked.reencoded and checked.format == "GIF" and Image.open(io.BytesIO(checked.data)).format == "PNG"
    assert getattr(Image.open(io.BytesIO(checked.data)), "n_frames", 1) == 1
    assert np.abs(_tf_gray(checked.data) - _gray(buf.getvalue())).max() == 0   # Pillow's first frame


def _jpeg_of_process(marker: int) -> bytes:
    """A grey JPEG of ``RGB`` whose start-of-frame marker is ``marker``: Pillow writes baseline (0xC0) or progressive
    (0xC2); its baseline data is also a valid extended-sequential (0xC1) picture, and, its scan told to predict
    each pixel from its left neighbour, a valid lossless (0xC3) one."""
    data = bytearray(png_bytes(RGB.convert("L"), "JPEG", progressive=marker == 0xC2))
    if marker in (0xC1, 0xC3):
        data[data.index(b"\xff\xc0") + 1] = marker
    if marker == 0xC3:
        sos = data.index(b"\xff\xda")
        end = sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")
        data[end - 3:end - 1] = b"\x01\x00"                  # predictor 1 (Ss), Se 0
    return bytes(data)


@pytest.mark.parametrize("marker, kept", [(0xC0, True), (0xC1, True), (0xC2, True), (0xC3, False)],
                         ids=["baseline", "extended", "progressive", "lossless"])
def test_a_jpeg_process_tensorflow_refuses_is_reencoded_as_a_png(marker, kept):
    """TensorFlow's libjpeg refuses a lossless JPEG ("Unsupported JPEG process: SOF type 0xc3") that Pillow reads:
    it had been kept as it was, and failed the Transform of a whole pipeline run. Re-encoded as a PNG (lossless,
    as it was), the model reads the pixels Pillow reads; the processes TensorFlow decodes are kept."""
    data = _jpeg_of_process(marker)
    Image.open(io.BytesIO(data)).load()
    assert (_tf_gray(data) is not None) == kept
    checked = image_io.check_image(data)
    assert (checked.format, checked.reencoded, checked.data_format) == ("JPEG", not kept, "JPEG" if kept else "PNG")
    assert np.abs(_tf_gray(checked.data) - _gray(data)).max() <= (6 if kept else 0)


def _cmyk_jpeg(transform: int | None, app14_bytes: int = 12) -> bytes:
    """A CMYK JPEG of ``RGB`` whose Adobe APP14 segment (Pillow writes one: transform 0, its inks inverted as
    Adobe writes them) says ``transform`` and keeps its first ``app14_bytes`` bytes, or is dropped (None)."""
    data = png_bytes(RGB.convert("CMYK"), "JPEG")
    at = data.index(b"Adobe") - 4                          # its marker and length come first
    end = at + 2 + int.from_bytes(data[at + 2:at + 4], "big")
    app14 = (data[at + 4:at + 15] + bytes([transform or 0]))[:app14_bytes]
    segment = b"" if transform is None else b"\xff\xee" + (len(app14) + 2).to_bytes(2, "big") + app14
    return data[:at] + segment + data[end:]


@pytest.mark.parametrize("transform, app14_bytes, kept", [
    (0, 12, True), (2, 12, True), (1, 12, True), (None, 0, False), (0, 7, False),
], ids=["adobe-cmyk", "adobe-ycck", "adobe-unknown-transform", "no-adobe-marker", "adobe-marker-too-short"])
def test_a_cmyk_jpeg_without_adobes_marker_is_reencoded_as_a_viewer_shows_it(transform, app14_bytes, kept):
    """TensorFlow's decoder (jpeg_mem.cc) takes a CMYK JPEG's inks as inverted, as Adobe writes them and as Pillow
    and viewers take them, only when libjpeg saw Adobe's APP14 marker (12 bytes at least), whatever its transform;
    without it, it takes them as stored plainly: a white page became black, and had been kept so. Re-encoded, the
    model reads what a viewer shows."""
    data = _cmyk_jpeg(transform, app14_bytes)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    assert (np.abs(_tf_gray(data) - _gray(data)).max() <= 6) == kept
    checked = image_io.check_image(data)
    assert (checked.format, checked.mode, checked.reencoded) == ("JPEG", "CMYK", not kept)
    assert checked.data_format == "JPEG" and (checked.data == data) == kept
    assert np.abs(_tf_gray(checked.data) - _gray(data)).mean() < 2.5   # what the model reads is what is shown


def _gif_indices(table: int, used=(0, 1, 2, 3), transparency: int | None = None) -> bytes:
    """A 30 × 20 GIF in bands of the colours ``used`` (of 0-3), whose colour table has ``table`` of them (0: none);
    Pillow writes a table of 4, whose tail is cut off here."""
    img = Image.fromarray(np.array(used, np.uint8)[np.arange(30) * len(used) // 30][None].repeat(20, 0), "P")
    img.putpalette([255, 255, 255, 170, 170, 170, 85, 85, 85, 0, 0, 0])
    data = png_bytes(img, "GIF", optimize=False, **({} if transparency is None else {"transparency": transparency}))
    assert data[10] & 0x87 == 0x81                                  # a global table of 4 colours
    bits = {0: 0, 2: 0x80, 4: 0x81}[table]
    return data[:10] + bytes([data[10] & 0x78 | bits]) + data[11:13 + 3 * table] + data[13 + 12:]


@pytest.mark.parametrize("table", [2, 0], ids=["short-table", "no-table"])
def test_a_gif_using_a_colour_its_table_lacks_is_refused_as_tensorflow_refuses_it(table):
    """Pillow reads a GIF whose pixels use a colour index past its colour table (each viewer draws those its own
    way); TensorFlow refuses it ("found color index 2 outside of color map range 2", or "missing color map"): it
    had been kept, and stored as feedback that the model then refused, or failed a pipeline run's Transform."""
    data = _gif_indices(table)
    Image.open(io.BytesIO(data)).load()
    assert _tf_gray(data) is None
    with pytest.raises(image_io.ImageRejected, match="GIF") as err:
        image_io.check_image(data)
    assert err.value.reason == "truncated_or_corrupt"
    whole = _gif_indices(4)
    assert image_io.check_image(whole).data == whole                # a whole table: kept as it is


@pytest.mark.parametrize("mode", ["P", "L"])
@pytest.mark.parametrize("ending", [b"", b";"], ids=["cut", "trailer"])
def test_a_gif_whose_image_data_lacks_its_end_is_refused_as_tensorflow_refuses_it(mode, ending):
    """A GIF cut short by its last two bytes (its image data's end block and its trailer), or with its trailer
    right after its last data block: Pillow reads its pixels, TensorFlow's decoder (giflib) does not, so it had been
    kept and ended the pipeline's Transform. Its trailer alone missing is read by both: kept."""
    whole = png_bytes(letter_image(31, 17, mode), "GIF")
    assert whole.endswith(b"\0;")
    damaged = whole[:-2] + ending
    Image.open(io.BytesIO(damaged)).load()
    assert _tf_gray(damaged) is None
    with pytest.raises(image_io.ImageRejected, match="GIF data ends before its image's data does") as err:
        image_io.check_image(damaged)
    assert err.value.reason == "truncated_or_corrupt"
    assert image_io.check_image(whole[:-1]).data == whole[:-1]


def test_a_gif_with_a_stray_byte_before_its_image_is_refused_as_tensorflow_refuses_it():
    """A byte where a block (an extension, 0x21, or an image, 0x2C) begins: Pillow skips it and reads the pixels,
    TensorFlow's decoder (giflib) refuses the file ("Wrong record type detected"), so it had been kept and ended the
    pipeline's Transform."""
    whole = png_bytes(letter_image(31, 17), "GIF")
    at = 13 + 3 * (2 << (whole[10] & 7))                          # after the global colour table: the image
    assert whole[at] == 0x2C
    damaged = whole[:at] + b"\0" + whole[at:]
    Image.open(io.BytesIO(damaged)).load()
    assert _tf_gray(damaged) is None
    with pytest.raises(image_io.ImageRejected, match=f"GIF has a byte 0x00 at offset {at}, where a block") as err:
        image_io.check_image(damaged)
    assert err.value.reason == "truncated_or_corrupt"


def test_a_jpeg_without_its_end_marker_is_reencoded_as_tensorflow_refuses_it():
    """Pillow reads every row of some JPEGs whose end marker (FF D9) is missing, an upload cut short; TensorFlow's
    decoder reads past the end of the data for it and refuses them ("Input file read error"), so such a file had
    been kept and ended the pipeline's Transform. The rows Pillow read are re-encoded (as a JPEG, as a JPEG's
    pixels are); a whole JPEG, trailing bytes after its end marker too, is kept as it is."""
    whole = png_bytes(letter_image(48, 17, seed=0), "JPEG")
    damaged = whole[:-2]
    assert (_gray(damaged) == _gray(whole)).all() and _tf_gray(damaged) is None
    checked = image_io.check_image(damaged)
    assert (checked.format, checked.reencoded, checked.data_format) == ("JPEG", True, "JPEG")
    assert np.abs(_tf_gray(checked.data) - _gray(whole)).mean() < 2.5   # what the model reads is the letter
    for kept in (whole, whole + b"trailing bytes", _jpeg_of_process(0xC2)):
        assert image_io.check_image(kept).data == kept


def test_every_damaged_gif_png_or_jpeg_that_is_kept_decodes_in_tensorflow():
    """Bytes cut from the end, cut from within, added after, changed in or inserted into GIFs, PNGs and JPEGs (and
    JPEGs of letters of several sizes and seeds, some of which Pillow reads without their end marker): whatever
    check_image keeps, tf.io.decode_image reads."""
    sources = [png_bytes(letter_image(width, 17, mode), fmt) for width in (5, 31, 64) for mode in ("L", "RGB", "P")
               for fmt in ("GIF", "PNG", "JPEG") if (fmt, mode) != ("JPEG", "P")]
    sources += [png_bytes(letter_image(width, height, mode, seed), "JPEG") for width in (40, 48, 96)
                for height in (17, 48) for mode in ("L", "RGB") for seed in (0, 1)]
    assert _kept_damaged_copies_decode(sources, np.random.default_rng(11), ways=5) > 100


def _kept_damaged_copies_decode(sources: list[bytes], rng, ways: int) -> int:
    """Damages each of ``sources`` 12 times (the first ``ways`` of: bytes cut from the end, cut from within, added
    after, one byte changed, bytes inserted), and cut by its last byte and by its last two (a JPEG's end marker),
    decodes with TensorFlow whatever check_image keeps (raising if it refuses one), and returns how many were
    kept."""
    kept = 0
    for data in sources:
        copies = [data[:-1], data[:-2]]
        for _ in range(12):
            how, at, count = rng.integers(ways), int(rng.integers(1, len(data))), int(rng.integers(1, 9))
            copies.append((data[:-count], data[:at] + data[at + count:], data + rng.bytes(count),
                           data[:at] + bytes([data[at] ^ int(rng.integers(1, 256))]) + data[at + 1:],
                           data[:at] + rng.bytes(count) + data[at:])[how])
        for damaged in copies:
            try:
                checked = image_io.check_image(damaged)
            except image_io.ImageRejected:
                continue
            kept += 1
            tf.io.decode_image(checked.data, expand_animations=False)   # raises if TensorFlow refuses it
    return kept


def test_a_gif_transparent_colour_past_its_table_is_no_colour():
    """TensorFlow skips a GIF's transparent colour before it checks the table, so it reads such a GIF; the check
    re-encodes it as any transparent GIF (its transparency as alpha)."""
    data = _gif_indices(2, used=(0, 1, 3), transparency=3)
    assert _tf_gray(data) is not None
    checked = image_io.check_image(data)
    alpha = tf.io.decode_image(checked.data, channels=4).numpy()[..., 3]
    assert checked.reencoded and (alpha[:, :20] == 255).all() and (alpha[:, 20:] == 0).all()


@pytest.mark.parametrize("offset", [(0, 0), (12, 7)], ids=["top-left", "offset"])
def test_a_gif_frame_that_does_not_cover_its_screen_is_kept_as_a_viewer_shows_it(offset):
    """A GIF's frame may cover part of its logical screen only, anywhere on it. TensorFlow reads the frame alone, as
    if at the top left (set off from the corner, it came out black, which the model read as a yod), and Pillow
    paints the rest with a colour of the palette; a viewer shows the frame in its place and the rest transparent,
    which the model takes for white paper. It is re-encoded as that: alpha 0 outside the frame."""
    data = bytearray(png_bytes(RGB.convert("P"), "GIF"))
    descriptor = data.index(b"\x2c\x00\x00\x00\x00" + (30).to_bytes(2, "little") + (20).to_bytes(2, "little"))
    data[6:10] = (50).to_bytes(2, "little") + (40).to_bytes(2, "little")   # the screen: 50 x 40
    data[descriptor + 1:descriptor + 5] = offset[0].to_bytes(2, "little") + offset[1].to_bytes(2, "little")
    data = bytes(data)
    checked = image_io.check_image(data)
    assert (checked.format, checked.width, checked.height, checked.reencoded) == ("GIF", 50, 40, True)
    model_sees = tf.io.decode_image(checked.data, channels=4, expand_animations=False).numpy()
    shown = Image.new("RGBA", (50, 40))                                      # transparent
    shown.paste(RGB.convert("P").convert("RGBA"), offset)
    assert (model_sees == np.asarray(shown)).all()
    assert image_io.pixel_digest(checked.data) == image_io.pixel_digest(png_bytes(shown))


def test_a_jpeg_with_a_second_picture_is_a_jpeg():
    """Phones write photos as JPEG with further pictures after the first (MPO: depth maps, gain maps); Pillow
    names them MPO. They are kept as JPEG: TensorFlow decodes the first picture, as Pillow does."""
    buf = io.BytesIO()
    RGB.save(buf, format="MPO", save_all=True, append_images=[Image.new("RGB", RGB.size, (255, 0, 0))])
    data = buf.getvalue()
    assert Image.open(io.BytesIO(data)).format == "MPO"
    checked = image_io.check_image(data)
    assert (checked.format, checked.data_format, checked.reencoded, checked.data) == ("JPEG", "JPEG", False, data)
    assert np.abs(_tf_gray(data) - _gray(data)).max() <= 6


def _photo(size=(800, 600), seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]]
    base = (170 + 40 * np.sin(x / 90) + 30 * np.cos(y / 70))[..., None] * np.array([1, 0.95, 0.9])
    return Image.fromarray(np.clip(base + rng.normal(0, 6, (size[1], size[0], 3)), 0, 255).astype(np.uint8))


def test_a_lossy_webp_photo_becomes_a_jpeg_not_a_png_many_times_its_size():
    photo = _photo()
    data = png_bytes(photo, "WEBP", quality=90)
    checked = image_io.check_image(data)
    assert (checked.format, checked.reencoded, checked.data_format) == ("WEBP", True, "JPEG")
    assert Image.open(io.BytesIO(checked.data)).format == "JPEG"
    as_png = len(image_io.to_png(Image.open(io.BytesIO(data))))
    assert len(checked.data) < 2.5 * len(data) and as_png > 5 * len(data), (len(data), len(checked.data), as_png)
    assert np.abs(_tf_gray(checked.data) - _gray(data)).mean() < 2.5     # what the model reads is the photo
    # Lossless WebP, and lossy WebP with transparency (JPEG has no alpha), stay PNG.
    assert image_io.check_image(png_bytes(photo, "WEBP", lossless=True)).data_format == "PNG"
    see_through = photo.convert("RGBA")
    see_through.putalpha(Image.new("L", photo.size, 0))
    see_through.paste((0, 0, 0, 255), (100, 100, 200, 300))
    assert image_io.check_image(png_bytes(see_through, "WEBP", quality=90)).data_format == "PNG"
    assert image_io.check_image(png_bytes(photo.convert("L"), "WEBP", quality=90)).data_format == "JPEG"


def test_transparency_survives_reencoding():
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    img.putpixel((5, 5), (0, 0, 0, 255))
    data = png_bytes(img, "WEBP", lossless=True)
    out = Image.open(io.BytesIO(image_io.check_image(data).data))
    assert out.mode == "RGBA" and out.getpixel((0, 0))[3] == 0 and out.getpixel((5, 5))[3] == 255


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"hello, I am text", "not_an_image"),
    (png_bytes(RGB)[:60], "truncated_or_corrupt"),
    (b"%PDF-1.4\n" + b"0" * 100, "not_an_image"),
])
def test_bad_data_is_rejected_with_a_reason(data, reason):
    with pytest.raises(image_io.ImageRejected) as err:
        image_io.check_image(data)
    assert err.value.reason == reason
    assert "Error" not in err.value.detail     # the decoder's words for the sender, not its exception class


def _crc_flipped(data: bytes, kind: bytes) -> bytes:
    """``data`` (a PNG) with the CRC of its first ``kind`` chunk wrong."""
    data, at = bytearray(data), 8
    while data[at + 4:at + 8] != kind:
        at += 12 + int.from_bytes(data[at:at + 4], "big")
    data[at + 8 + int.from_bytes(data[at:at + 4], "big")] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize("kind", [b"IDAT", b"IEND"])
def test_a_png_whose_image_data_fails_its_checksum_is_refused_as_tensorflow_refuses_it(kind):
    """Pillow reads such a PNG; TensorFlow's decoder (libpng) does not, so it had failed its whole batch at the
    model (a batch prediction or an evaluation ended with a traceback)."""
    damaged = _crc_flipped(png_bytes(RGB), kind)
    Image.open(io.BytesIO(damaged)).load()
    assert _tf_gray(damaged) is None
    with pytest.raises(image_io.ImageRejected, match=f"PNG chunk {kind.decode()} fails its checksum") as err:
        image_io.check_image(damaged)
    assert err.value.reason == "truncated_or_corrupt"


@pytest.mark.parametrize("cut", [1, 12, 16, 18])
def test_a_png_cut_short_before_its_end_is_refused_as_tensorflow_refuses_it(cut):
    """Pillow reads the pixels of a PNG whose IEND (or last CRC) is missing, an upload cut short; libpng does not."""
    short = png_bytes(RGB)[:-cut]
    Image.open(io.BytesIO(short)).load()
    assert _tf_gray(short) is None
    with pytest.raises(image_io.ImageRejected, match="PNG data ends before its IEND chunk"):
        image_io.check_image(short)
    whole = png_bytes(RGB) + b"trailing bytes after IEND"             # read by neither: accepted
    assert image_io.check_image(whole).data == whole


@pytest.mark.parametrize("mode, cut", [("RGB", 1), ("RGB", 2), ("RGB", 3), ("L", 1)])
def test_a_bmp_cut_short_in_its_last_row_is_refused_as_tensorflow_refuses_it(mode, cut):
    """Pillow reads a BMP whose last row lacks its padding bytes; TensorFlow's decoder requires the file to end
    exactly where its rows do, so such a file, kept as it was, had ended the pipeline's Transform."""
    whole = png_bytes(letter_image(63, 20, mode), "BMP")   # rows of 63 px padded to 4 bytes
    short = whole[:-cut]
    Image.open(io.BytesIO(short)).load()
    assert _tf_gray(short) is None
    with pytest.raises(image_io.ImageRejected, match=f"BMP data ends {cut} byte") as err:
        image_io.check_image(short)
    assert err.value.reason == "truncated_or_corrupt"
    assert image_io.check_image(whole).data == whole


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_a_bmp_with_bytes_after_its_last_row_is_reencoded_as_tensorflow_refuses_it(mode):
    """Bytes after the last row (a writer's padding): Pillow reads the whole picture, TensorFlow refuses it."""
    data = png_bytes(letter_image(63, 20, mode), "BMP") + bytes(2)
    assert _tf_gray(data) is None
    checked = image_io.check_image(data)
    assert checked.reencoded and checked.reencoded_as == "PNG"
    assert np.abs(_tf_gray(checked.data) - _gray(data)).max() == 0


def test_every_damaged_bmp_that_is_kept_decodes_in_tensorflow():
    """Bytes cut from the end, cut from within or added after BMPs of several widths and depths: whatever
    check_image keeps (as it was or re-encoded), tf.io.decode_image reads."""
    sources = [png_bytes(letter_image(width, 9, mode), "BMP") for width in (1, 2, 3, 5, 63, 64)
               for mode in ("L", "RGB", "P", "1")] + [_bmp32(letter_image(width, 9)) for width in (3, 63)]
    assert _kept_damaged_copies_decode(sources, np.random.default_rng(7), ways=3) > 50


def test_decompression_bomb_is_rejected_before_decoding():
    bomb = png_bytes(dotted(Image.new("L", (5000, 5000), 255)))  # tiny file, 25 Mpx
    with pytest.raises(image_io.ImageRejected) as err:
        image_io.check_image(bomb, max_pixels=10_000_000)
    assert err.value.reason == "decompression_bomb"
    assert image_io.check_image(bomb, max_pixels=30_000_000).width == 5000


def test_a_side_tensorflow_png_decoder_refuses_is_refused_when_kept_as_a_png():
    """libpng (TensorFlow's PNG decoder) reads at most 1,000,000 px a side: a 4 kB strip 1 x 1,000,001 passed the
    pixel limit, was stored as feedback and failed its whole training batch. A TIFF is re-encoded as a PNG; a BMP,
    which TensorFlow reads at any length, becomes a PNG when the feedback store exports it for training: the same
    limit holds for every format."""
    limit = image_io.PNG_MAX_SIDE
    at_limit = png_bytes(dotted(Image.new("L", (1, limit), 255)))
    assert tf.io.decode_image(at_limit).shape == (limit, 1, 1)
    unbounded = 10 ** 12   # (the padding rule below aside)
    assert image_io.check_image(at_limit, max_pixels=unbounded).data == at_limit
    for fmt, size in (("PNG", (1, limit + 1)), ("PNG", (limit + 1, 1)), ("TIFF", (limit + 1, 1)),
                      ("BMP", (1, limit + 1))):
        data = png_bytes(dotted(Image.new("L", size, 255)), fmt)
        with pytest.raises(image_io.ImageRejected, match="takes at most 1,000,000 px a side") as err:
            image_io.check_image(data, max_pixels=unbounded)
        assert err.value.reason == "side_too_long"
    assert _tf_gray(png_bytes(Image.new("L", (1, limit + 1), 255))) is None


def test_a_strip_the_models_padding_would_make_too_large_is_refused():
    """The Transform pads a strip so that its short side is at least 1/48 of its long one (pad_to_aspect): a
    1 x 1,000,000 PNG (1 M pixels, under every other limit) became a 1,000,000 x 20,834 tensor the model ran out of
    memory on, and was stored as feedback. Held to the pixel limit as padded; a long image that needs no padding
    is held to it as it is."""
    from models.preprocessing import pad_to_aspect

    assert tf.shape(pad_to_aspect(tf.zeros([4800, 1]), 48)).numpy().tolist() == [4800, 100]   # what is padded
    for size in ((1, 1_000_000), (1_000_000, 1), (1, 44_000)):
        with pytest.raises(image_io.ImageRejected, match="so thin a strip is padded by the model to") as err:
            image_io.check_image(png_bytes(dotted(Image.new("L", size, 255))))
        assert err.value.reason == "side_too_long"
    for size in ((1, 43_000), (20_000, 500)):   # 43,000 x 896 and 20,000 x 500: under 40 M pixels
        assert image_io.check_image(png_bytes(dotted(Image.new("L", size, 255)))).width == size[0]
    with pytest.raises(image_io.ImageRejected, match="padded by the model to 1,920,000 pixels"):
        image_io.check_image(png_bytes(dotted(Image.new("L", (1, 9_600), 255))), max_pixels=1_000_000)


def test_a_pipe_is_refused_without_being_read(tmp_path):
    import os
    os.mkfifo(tmp_path / "pipe.png")                 # opening it for reading would wait for a writer forever
    with pytest.raises(image_io.ImageRejected) as caught:
        image_io.read_checked(str(tmp_path / "pipe.png"))
    assert caught.value.reason == "not_a_file"
    (tmp_path / "broken.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(FileNotFoundError):
        image_io.read_checked(str(tmp_path / "broken.png"))


def test_oversize_file_is_rejected():
    with pytest.raises(image_io.ImageRejected) as err:
        image_io.check_image(png_bytes(RGB), max_bytes=100)
    assert err.value.reason == "too_large"


def test_a_reencoding_over_the_size_limit_is_refused_as_an_oversize_file_is():
    """A file under the limit whose re-encoding for the model is over it: the re-encoding is what is kept, stored
    and sent, so the limit is its limit too (a 50 kB lossless WebP had become a 48 MB PNG)."""
    webp = noise_rows_webp()
    png = image_io.check_image(webp).data
    assert len(webp) * 10 < len(png)
    with pytest.raises(image_io.ImageRejected) as err:
        image_io.check_image(webp, max_bytes=len(png) - 1)
    assert err.value.reason == "too_large"
    assert err.value.detail == (f"{len(webp)} bytes as WEBP, but {len(png)} bytes as the PNG it is re-encoded to "
                                f"for the model, over the {len(png) - 1}-byte limit")
    assert image_io.check_image(webp, max_bytes=len(png)).data == png


def test_the_pixel_limit_is_max_pixels_alone():
    """Pillow's own limit is off (it would override the setting: a refusal past 179 M pixels, again when a GIF
    seeks a frame or a TIFF loads); every format is held to ``max_pixels``, checked before decoding."""
    assert Image.MAX_IMAGE_PIXELS is None
    frames = [dotted(Image.new("L", (60, 60), value)) for value in (255, 0, 128)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], disposal=2)
    tiff = io.BytesIO()
    dotted(Image.new("1", (60, 60), 1)).save(tiff, format="TIFF", compression="group4")
    for data in (png_bytes(dotted(Image.new("L", (60, 60), 255))), buffer.getvalue(), tiff.getvalue()):
        assert image_io.check_image(data, max_pixels=3600).width == 60
        with pytest.raises(image_io.ImageRejected) as err:
            image_io.check_image(data, max_pixels=3599)
        assert err.value.reason == "decompression_bomb" and "3599 limit" in err.value.detail


def test_pixel_digests_are_kept_by_a_digest_of_the_bytes_not_the_bytes():
    image_io._PIXEL_DIGESTS.clear()
    data = png_bytes(letter_image(30, 30))
    assert image_io.pixel_digest(data) == image_io.pixel_digest(bytes(data))
    (key,) = image_io._PIXEL_DIGESTS
    assert len(key) == 32                                         # not the image file itself


def test_different_16_bit_pictures_have_different_pixel_digests_and_one_picture_one_digest_in_any_mode():
    """16-bit gray PNGs (kept as they are: TensorFlow reads them) are hashed as numbers: made RGBA, every value over
    255 became 255, and two different letters had one digest (one split, one "image under two labels")."""
    def png16(array):
        buffer = io.BytesIO()
        Image.fromarray(array.astype(np.uint16)).save(buffer, "PNG")
        return buffer.getvalue()
    bar = np.full((48, 48), 60000)
    bar[:, 20:28] = 20000                                   # no zero: clipped to 255, all alike
    other = np.full((48, 48), 60000)
    other[20:28, :] = 20000
    assert Image.open(io.BytesIO(png16(bar))).mode.startswith("I")
    assert image_io.pixel_digest(png16(bar)) != image_io.pixel_digest(png16(other))
    # as TensorFlow reads it (the high byte): a 16-bit PNG and its 8-bit copy are one picture
    eight_bit = png_bytes(Image.fromarray((bar >> 8).astype(np.uint8)))
    assert image_io.pixel_digest(png16(bar)) == image_io.pixel_digest(eight_bit)
    gray = letter_image(70, 300, seed=3)                   # more rows than one band
    digests = {image_io.pixel_digest(png_bytes(gray.convert(mode))) for mode in ("L", "RGB", "RGBA")}
    assert len(digests) == 1


@pytest.mark.parametrize("img, fmt", [
    (Image.new("L", (320, 320), 255), "PNG"),                   # a white page
    (Image.new("RGB", (320, 320), 0), "JPEG"),                  # a black one
    (Image.new("L", (1, 1), 0), "PNG"),                         # a single pixel
    (Image.new("RGBA", (50, 50), (0, 0, 0, 0)), "PNG"),         # an empty drawing pad's export: all transparent
    (Image.new("RGB", (80, 60), (120, 140, 200)), "WEBP"),      # one colour, re-encoded
    (Image.new("L", (40, 40), 240), "BMP"),                     # light grey paper
], ids=["white", "black", "one_pixel", "transparent", "webp", "bmp"])
def test_an_image_of_one_flat_tone_is_refused_as_no_ink(img, fmt):
    """The model, finding no contrast to stretch, had answered a confident letter for a blank image (ר 0.41 for
    white, י 0.85 for black), which the feedback store kept as labelled and the ExampleGen trained on."""
    with pytest.raises(image_io.ImageRejected, match=r"one flat tone.*: no ink to read a letter from") as err:
        image_io.check_image(png_bytes(img, fmt))
    assert err.value.reason == "no_ink"


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_a_large_transparent_image_is_shrunk_without_a_full_size_copy_of_each_channel(mode, monkeypatch):
    """The no-ink check shrinks a drawing pad's RGBA export (or an LA image) over MAX_INK_SIDE each channel alone,
    as the model does, in one pass: split first into one full-size copy per channel, a 6300 x 6300 drawing's check
    had taken 0.35 s more of its 1.3 s. The shrunk ink is the channel-by-channel one, to the level."""
    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 256, (1100, 1500, len(mode)), dtype=np.uint8), mode)
    size = image_io.shrunk_size(*img.size)
    by_channel = Image.merge(mode, [channel.resize(size, Image.Resampling.BOX) for channel in img.split()])
    splits = []
    real_split = Image.Image.split
    monkeypatch.setattr(Image.Image, "split", lambda self: splits.append(self.size) or real_split(self))
    inked = image_io._ink_image(img)
    assert splits == []
    assert inked.mode == mode and inked.size == size
    np.testing.assert_array_equal(np.asarray(inked), np.asarray(by_channel))
    assert image_io.ink_range(img) == image_io._ink_span(by_channel)
    image_io.check_image(png_bytes(img))   # (passes: noise is ink)
    assert splits == []


def test_faint_ink_under_the_transforms_contrast_is_no_ink_and_over_it_is_kept():
    paper = Image.new("L", (40, 40), 250)
    faint, seen = paper.copy(), paper.copy()
    faint.putpixel((20, 20), 250 - 20)                       # 20/255 = 0.078: at most MIN_CONTRAST (0.08)
    seen.putpixel((20, 20), 250 - 21)                        # 0.082: over it
    with pytest.raises(image_io.ImageRejected, match=r"nearly one flat tone \(its grey spans 7.8% .*at most 8%\)"):
        image_io.check_image(png_bytes(faint))
    assert image_io.check_image(png_bytes(seen)).width == 40
    assert image_io.check_image(png_bytes(letter_image(30, 30))).width == 30
