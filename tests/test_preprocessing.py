"""The Transform graph on images of every shape: fixed output size, [0, 1] range, aspect ratio kept."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageDraw

from models import preprocessing
from tests.conftest import png_bytes

SIZE = 48


def ink_box(width: int, height: int, mode: str = "L", background=235) -> bytes:
    """A dark filled rectangle covering the whole image but a thin margin (so its aspect is the image's)."""
    img = Image.new("L", (width, height), background)
    m = max(1, min(width, height) // 20)
    ImageDraw.Draw(img).rectangle([m, m, width - 1 - m, height - 1 - m], fill=15)
    return png_bytes(img.convert(mode))


def transform(data: bytes) -> np.ndarray:
    out = preprocessing.decode_to_ink(tf.constant(data), SIZE).numpy()
    assert out.shape == (SIZE, SIZE, 1) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    return out[..., 0]


def inked_aspect(out: np.ndarray) -> float:
    ys, xs = np.nonzero(out > 0.5)
    return (xs.max() - xs.min() + 1) / (ys.max() - ys.min() + 1)


@pytest.mark.parametrize("width, height", [(20, 200), (300, 30), (3, 4), (3000, 2000), (85, 111), (48, 48)],
                         ids=["tall", "wide", "tiny", "huge", "typical", "exact"])
def test_shape_range_and_aspect_are_kept(width, height):
    out = transform(ink_box(width, height))
    assert out.max() > 0.9                      # ink is 1 …
    assert out[0, 0] < 0.1 or out[SIZE // 2, 0] < 0.1 or out[0, SIZE // 2] < 0.1  # … paper/padding is 0
    m = max(1, min(width, height) // 20)
    expected = (width - 2 * m) / (height - 2 * m)   # the inked rectangle's aspect
    tolerance = 0.2 * expected + 2 / SIZE * max(expected, 1)
    assert abs(inked_aspect(out) - expected) <= tolerance
    # The long side fills the square: the letter is scaled to the frame, not left tiny.
    ys, xs = np.nonzero(out > 0.5)
    scale = SIZE / max(width, height)
    assert max(xs.max() - xs.min(), ys.max() - ys.min()) + 1 >= 0.8 * max(width, height) * scale * (
        1 - 2 * m / min(width, height))


def test_tall_thin_and_short_strokes_stay_distinguishable():
    vav = transform(ink_box(12, 90))   # a long vertical stroke
    yod = transform(ink_box(12, 30))   # a short one
    assert inked_aspect(vav) < 0.3 and inked_aspect(yod) > 0.3


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "P", "1"])
def test_colour_modes_give_the_same_ink(mode):
    reference = transform(ink_box(60, 80, "L"))
    out = transform(ink_box(60, 80, mode))
    assert np.abs(out - reference).mean() < 0.05


def test_transparent_background_counts_as_paper_not_ink():
    img = Image.new("RGBA", (50, 50), (0, 0, 0, 0))       # transparent black: a canvas export
    ImageDraw.Draw(img).line([(25, 5), (25, 45)], fill=(0, 0, 0, 255), width=5)
    out = transform(png_bytes(img))
    assert out[:, :10].max() < 0.05 and out[:, SIZE // 2].max() > 0.9


def test_paper_tone_and_faint_ink_are_normalised():
    dark_paper = transform(ink_box(60, 80, background=150))
    assert dark_paper.max() > 0.95 and np.median(dark_paper[dark_paper > 0]) > 0.5
    blank = transform(png_bytes(Image.new("L", (40, 40), 240)))
    assert blank.max() < 0.1                      # nothing to stretch: stays empty, noise not amplified


def test_batch_function_matches_single_images():
    images = [ink_box(20, 60), ink_box(70, 30, "RGB")]
    batch = preprocessing.images_to_ink(tf.constant(images), SIZE).numpy()
    assert batch.shape == (2, SIZE, SIZE, 1)
    for i, data in enumerate(images):
        np.testing.assert_allclose(batch[i, ..., 0], transform(data), atol=1e-6)


def test_a_small_letter_on_a_big_canvas_looks_like_a_tight_crop():
    tight = Image.new("L", (40, 60), 255)
    ImageDraw.Draw(tight).line([(8, 5), (30, 55)], fill=0, width=6)
    canvas = Image.new("RGBA", (320, 320), (0, 0, 0, 0))          # a drawing pad export: transparent
    canvas.paste(Image.merge("RGBA", [tight.point(lambda v: 0)] * 3 + [tight.point(lambda v: 255 - v)]),
                 (30, 200))
    a, b = transform(png_bytes(tight)), transform(png_bytes(canvas))
    assert np.abs(a - b).mean() < 0.03
    ys, xs = np.nonzero(b > 0.5)
    assert ys.max() - ys.min() + 1 >= SIZE * 0.8      # the stroke fills the frame, not a corner of it


@pytest.mark.parametrize("width, height", [(1000, 10), (10, 1000), (100, 2), (10000, 10)])
def test_strips_past_the_input_aspect_give_an_answer_not_an_error(width, height):
    """A strip wider than 48:1 (a dash, a scanner's edge) had a short side of 0 px after the resize: an error that
    failed every image of its batch, and the Transform for a training image of it."""
    strip = np.full((height, width), 235, np.uint8)
    strip[:, width // 4: 3 * width // 4] = 20                      # ink that touches both long edges
    out = transform(png_bytes(Image.fromarray(strip)))
    assert out.shape == (SIZE, SIZE) and out.max() > 0.05                 # a line of ink, thinned by the resize
    batch = preprocessing.images_to_ink(tf.constant([png_bytes(Image.fromarray(strip)), ink_box(20, 30)]), SIZE).numpy()
    assert np.allclose(batch[0, ..., 0], out) and np.allclose(batch[1, ..., 0], transform(ink_box(20, 30)))


def test_an_image_within_the_input_aspect_is_not_padded_first():
    ink = tf.ones([10, 480])
    assert preprocessing.pad_to_aspect(ink, 48).shape == (10, 480)
    assert preprocessing.pad_to_aspect(ink, 48)[..., :1].shape == (10, 1)
    assert tuple(preprocessing.pad_to_aspect(tf.ones([10, 481]), 48).shape) == (11, 481)


def _letter(size=(40, 60)):
    img = Image.new("L", size, 0)
    ImageDraw.Draw(img).line([(8, 8), (30, 8), (30, 52)], fill=255, width=5)   # a ד-like stroke, white for now
    return img


def test_a_key_colour_transparency_is_paper_as_an_alpha_channel_is():
    """Black ink on a transparent black background: as RGBA it is a letter; as grey or RGB with a tRNS key colour
    TensorFlow read the background as ink (the whole image black), so such PNGs are re-encoded with alpha."""
    from core import image_io
    mask = _letter()
    black = Image.new("L", mask.size, 0)
    rgba = Image.merge("RGBA", (black, black, black, mask))
    reference = transform(image_io.check_image(png_bytes(rgba)).data)
    grey = Image.new("L", mask.size, 7)
    grey.paste(0, mask=mask)                                    # ink 0, background 7 = the key colour
    for img, key in ((grey, 7), (grey.convert("RGB"), (7, 7, 7))):
        checked = image_io.check_image(png_bytes(img, transparency=key))
        assert checked.reencoded and checked.data_format == "PNG"
        assert np.abs(transform(checked.data) - reference).max() < 0.02
        assert np.abs(transform(png_bytes(img, transparency=key)) - reference).max() > 0.5   # as TF alone reads it


def test_a_photo_with_an_exif_orientation_reaches_the_model_upright():
    from core import image_io
    upright = Image.eval(_letter(), lambda v: 255 - v).convert("RGB")       # dark ink on white paper
    sideways = upright.rotate(90, expand=True)                            # stored on its side, as a phone does
    exif = Image.Exif()
    exif[0x0112] = 6                                                      # "rotate 90° clockwise to view"
    data = png_bytes(sideways, "JPEG", quality=95, exif=exif.tobytes())
    checked = image_io.check_image(data)
    assert checked.reencoded and checked.data_format == "JPEG" and (checked.width, checked.height) == upright.size
    wanted = transform(png_bytes(upright, "JPEG", quality=95))
    assert np.abs(transform(checked.data) - wanted).mean() < 0.02
    assert np.abs(transform(data) - wanted).mean() > 0.1                  # what the model read before


def _ink_on_paper(size=(90, 120), ink=(20, 40, 150), paper=(245, 240, 225)) -> Image.Image:
    """A ד-like stroke in coloured ink on tinted paper."""
    img = Image.new("RGB", size, paper)
    w, h = size
    ImageDraw.Draw(img).line([(w // 5, h // 5), (4 * w // 5, h // 5), (4 * w // 5, 4 * h // 5)], fill=ink,
                             width=max(3, w // 12))
    return img


_JPEGS = {"rgb_q95": lambda: png_bytes(_ink_on_paper(), "JPEG", quality=95),
          "grey": lambda: png_bytes(_ink_on_paper().convert("L"), "JPEG", quality=90),
          "progressive": lambda: png_bytes(_ink_on_paper(), "JPEG", quality=85, progressive=True),
          "subsampled_q75": lambda: png_bytes(_ink_on_paper((333, 251)), "JPEG", quality=75, subsampling=2),
          "phone_photo": lambda: png_bytes(_phone_photo(), "JPEG", quality=90)}   # shrunk to 1024 px


@pytest.mark.parametrize("name", list(_JPEGS))
def test_a_jpeg_reaches_the_model_as_pillow_reads_it(name):
    """The graph decodes a JPEG by libjpeg's accurate integer DCT, as Pillow does: the pixels the model answers are
    the ones the web client's backend reads, and the feedback store exports as a PNG to train on. TensorFlow's
    decode_image takes the fast DCT, up to 13 grey levels off Pillow's on a letter (the model input 0.07 off)."""
    jpeg = _JPEGS[name]()
    as_pillow_reads_it = png_bytes(Image.open(io.BytesIO(jpeg)))
    np.testing.assert_array_equal(transform(jpeg), transform(as_pillow_reads_it))
    np.testing.assert_array_equal(preprocessing.decoded(tf.constant(jpeg)).numpy(),
                                  preprocessing.decoded(tf.constant(as_pillow_reads_it)).numpy())


def test_the_image_check_refuses_as_no_ink_exactly_what_the_transform_finds_no_contrast_in():
    """``core.image_io.check_image`` refuses an image as ``no_ink`` when the Transform, by the same threshold
    (MIN_CONTRAST) on the same ink (grey composited over white, alpha as decode_image reads it), does not stretch
    it: images of every native mode whose ink spans about the threshold, on either side of it."""
    from core import image_io
    rng = np.random.default_rng(0)
    outcomes = set()
    for i in range(160):
        mode = ("L", "RGB", "RGBA", "LA")[i % 4]
        paper = rng.integers(30, 256, 3)
        mark = np.clip(paper - rng.integers(14, 28) + rng.integers(-3, 4, 3) * (mode != "L"), 0, 255)
        pixels = np.broadcast_to(paper, (9, 12, 3)).copy()
        pixels[3:6, 4:8] = mark
        img = Image.fromarray(pixels.astype(np.uint8), "RGB")
        if mode in ("RGBA", "LA"):
            alpha = np.full((9, 12), rng.integers(230, 256), np.uint8)
            alpha[3:6, 4:8] = rng.integers(200, 256)
            img.putalpha(Image.fromarray(alpha, "L"))
        data = png_bytes(img.convert(mode))
        ink = preprocessing.decoded_ink(tf.constant(data))
        stretched = bool(tf.reduce_max(ink) - tf.reduce_min(ink) > preprocessing.MIN_CONTRAST)
        try:
            image_io.check_image(data)
            refused = False
        except image_io.ImageRejected as err:
            assert err.reason == "no_ink"
            refused = True
        assert refused == (not stretched), (mode, paper, mark)
        outcomes.add(refused)
    assert outcomes == {True, False}


def _phone_photo(width=4000, height=3000) -> Image.Image:
    """A phone's photo of a letter: greyish paper, a ד-like stroke of 90 px, JPEG noise."""
    img = Image.new("RGB", (width, height), (205, 200, 190))
    ImageDraw.Draw(img).line([(1700, 700), (2300, 700), (2300, 2300)], fill=(30, 30, 40), width=90)
    return Image.open(io.BytesIO(png_bytes(img, "JPEG", quality=90)))


def test_an_image_over_the_max_side_is_shrunk_before_its_float_work():
    """A 6300 x 6300 PNG of 170 kB (under the 40 Mpx limit) had held the model 17 s and 1.1 GB in float copies of
    its whole size, to be resized to 48 px in the end: it is shrunk to 1024 px first, by area averaging."""
    from core import image_io
    for width, height in ((3000, 2000), (1025, 7), (5, 40_000)):
        ink = preprocessing.decoded_ink(tf.constant(png_bytes(Image.new("L", (width, height), 255))))
        assert tuple(ink.shape[::-1]) == image_io.shrunk_size(width, height)
        assert max(ink.shape) == preprocessing.MAX_INK_SIDE
    assert preprocessing.decoded_ink(tf.constant(ink_box(1024, 700))).shape == (700, 1024)
    assert image_io.shrunk_size(1024, 700) is None


@pytest.mark.parametrize("data", [ink_box(1024, 700), ink_box(320, 320, "RGBA"), ink_box(48, 48), ink_box(20, 200)],
                         ids=["at_the_bound", "drawing_pad", "training_size", "tall"])
def test_an_image_within_the_max_side_is_read_exactly_as_before(data, monkeypatch):
    shrunk = transform(data)
    monkeypatch.setattr(preprocessing, "MAX_INK_SIDE", 10 ** 9)   # no shrinking at all
    np.testing.assert_array_equal(transform(data), shrunk)


def test_a_phone_photo_shrunk_first_reads_as_the_same_letter():
    photo = _phone_photo()
    shrunk = transform(png_bytes(photo, "JPEG", quality=90))
    small = transform(png_bytes(photo.resize((1024, 768), Image.Resampling.BOX)))
    assert np.abs(shrunk - small).mean() < 0.02
    ys, xs = np.nonzero(shrunk > 0.5)
    assert xs.max() - xs.min() > 0.8 * SIZE or ys.max() - ys.min() > 0.8 * SIZE   # the letter fills the frame


@pytest.mark.parametrize("speck, refused", [((1, 1), True), ((2, 1), False)], ids=["averaged_away", "kept"])
def test_the_image_check_reads_a_large_image_shrunk_as_the_transform_does(speck, refused):
    """One black pixel on a 4096 px white page is 1/16 of an ink pixel once shrunk to 1024 px, under MIN_CONTRAST:
    the Transform finds no contrast in it, and the check refuses it as no_ink; two pixels are ink for both."""
    from core import image_io
    img = Image.new("L", (4096, 3072), 255)
    img.paste(0, (2000, 1000, 2000 + speck[0], 1000 + speck[1]))
    data = png_bytes(img)
    ink = preprocessing.decoded_ink(tf.constant(data))
    assert bool(tf.reduce_max(ink) - tf.reduce_min(ink) > preprocessing.MIN_CONTRAST) is not refused
    if refused:
        with pytest.raises(image_io.ImageRejected, match="nearly one flat tone"):
            image_io.check_image(data)
    else:
        assert image_io.check_image(data).width == 4096
