"""The stroke generator: deterministic, every class, one style per writer, tight crops of dark ink on light paper."""
import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pipeline import generate_letters, handwriting, skeleton
from core.labels import CLASS_NAMES, GLYPHS
from tests.conftest import ROOT
from tests.test_generate_letters import digest


@pytest.fixture(scope="module")
def hands():
    faces = [f for f in generate_letters.find_faces() if f.name in generate_letters.STROKE_FACES]
    assert faces, "the handwriting-like fonts (culmus, culmus-fancy) are installed by `make fonts`"
    return faces


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Every class, by three writers."""
    out = tmp_path_factory.mktemp("written")
    generate_letters.generate(out, per_class=3, seed=11, progress=False, style="strokes")
    return out


def test_every_class_is_written_by_every_writer(written):
    for name in CLASS_NAMES:
        files = sorted(p.name for p in (written / name).glob("*.png"))
        assert files == [f"{name}_hand_{i:04d}.png" for i in range(3)]


def test_byte_identical_for_a_seed_and_different_for_another(written, tmp_path):
    classes = CLASS_NAMES[:3]
    generate_letters.generate(tmp_path / "a", per_class=3, seed=11, classes=classes, progress=False, style="strokes")
    generate_letters.generate(tmp_path / "b", per_class=3, seed=12, classes=classes, progress=False, style="strokes")
    for name in classes:
        for path in (tmp_path / "a" / name).glob("*.png"):
            assert path.read_bytes() == (written / name / path.name).read_bytes()
    assert digest(tmp_path / "a") != digest(tmp_path / "b")


def test_tight_crops_of_dark_ink_on_light_paper(written):
    for path in sorted(written.glob("*/*.png")):
        arr = np.asarray(Image.open(path))
        assert arr.ndim == 2 and min(arr.shape) >= 3, path.name
        paper, ink = np.percentile(arr, 90), np.percentile(arr, 1)
        assert paper > 150 and paper - ink > 60, path.name
        # Tight: ink reaches within a few pixels of every edge (the margin is at most ~6 % of the letter).
        dark = np.argwhere(arr < (paper + ink) / 2)
        limit = 3 + 0.08 * max(arr.shape)
        assert dark[:, 0].min() <= limit and arr.shape[0] - 1 - dark[:, 0].max() <= limit, path.name
        assert dark[:, 1].min() <= limit and arr.shape[1] - 1 - dark[:, 1].max() <= limit, path.name


def test_a_writer_keeps_one_style_across_letters(hands):
    writer = handwriting.sample_writer(np.random.default_rng([3, 1]), hands)
    other = handwriting.sample_writer(np.random.default_rng([3, 2]), hands)
    assert writer == handwriting.sample_writer(np.random.default_rng([3, 1]), hands) != other

    def darkness(w):    # the writer's ink and paper show in every letter they write
        imgs = [np.asarray(handwriting.write_letter(g, w, np.random.default_rng([5, i])), float)
                for i, g in enumerate(GLYPHS)]
        return np.median([np.percentile(a, 95) - np.percentile(a, 2) for a in imgs])

    strong = dataclasses.replace(writer, ink=10.0, paper=245.0)
    faint = dataclasses.replace(writer, ink=120.0, paper=200.0)
    assert darkness(strong) > darkness(faint) + 40


def test_writer_size_sets_letter_size(hands):
    writer = handwriting.sample_writer(np.random.default_rng(0), hands)
    small = dataclasses.replace(writer, em_px=50.0)
    large = dataclasses.replace(writer, em_px=150.0)
    sizes = [handwriting.write_letter("ן", w, np.random.default_rng(1)).size[1] for w in (small, large)]
    assert sizes[1] > 2 * sizes[0]


def test_long_letters_stay_longer_than_short_ones(hands):
    writer = dataclasses.replace(handwriting.sample_writer(np.random.default_rng(4), hands), rotation=0.0)
    yod = handwriting.write_letter("י", writer, np.random.default_rng(2))
    nun_final = handwriting.write_letter("ן", writer, np.random.default_rng(2))
    assert nun_final.size[1] > 1.5 * yod.size[1]


def test_skeleton_of_a_bar_is_one_straight_stroke():
    mask = np.zeros((40, 80), bool)
    mask[15:25, 10:70] = True
    strokes = skeleton.trace(skeleton.thin(mask))
    longest = max(strokes, key=skeleton.length)
    assert skeleton.length(longest) > 40
    assert np.ptp(longest[:, 1]) <= 2


def test_bad_arguments_are_clear_errors(tmp_path, hands):
    with pytest.raises(ValueError, match="style must be one of strokes, fonts, mixed"):
        generate_letters.generate(tmp_path / "x", per_class=1, seed=1, progress=False, style="cursive")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="at least one face"):
        handwriting.sample_writer(np.random.default_rng(0), [])
    proc = subprocess.run([sys.executable, "-m", "pipeline.generate_letters", "--out", str(tmp_path / "y"),
                           "--style", "cursive"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "invalid choice: 'cursive'" in proc.stderr


def test_mixed_style_holds_both_kinds_and_manifest_names_the_style(tmp_path):
    manifest = generate_letters.generate(tmp_path, per_class=6, seed=3, classes=CLASS_NAMES[:2], progress=False,
                                         style="mixed")
    names = [p.name for p in tmp_path.glob("*/*.png")]
    assert manifest["style"] == "mixed" and len(names) == 12
    assert any("_hand_" in n for n in names) and any("_hand_" not in n for n in names)
    # Another style in the same folder is another data set: regenerated, not reused.
    again = generate_letters.generate(tmp_path, per_class=6, seed=3, classes=CLASS_NAMES[:2], progress=False,
                                      style="fonts")
    assert again["style"] == "fonts" and not list(tmp_path.glob("*/*_hand_*.png"))


@pytest.mark.parametrize("thickness", [1, 2])
@pytest.mark.parametrize("transpose", [False, True])
def test_the_crop_of_a_thin_line_keeps_the_line(thickness, transpose):
    """The jittered margins may reach a pixel into the ink on each side; on a line one or two pixels thin that
    once cut the line away or left an empty image, which the scan cannot save (a thin pen on a small ו)."""
    ink = np.zeros((9, 30), np.float32)
    ink[4:4 + thickness, 5:25] = 1.0
    ink = ink.T if transpose else ink
    for seed in range(300):
        out = handwriting._crop(ink, np.random.default_rng(seed))
        assert out.size and out.max() == 1.0, seed
