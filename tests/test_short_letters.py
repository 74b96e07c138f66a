"""bench/short_letters.py: the ink box's features, and ו/ן/י told apart across writers by them."""
import numpy as np
import pytest
from PIL import Image

from bench import short_letters
from tests.conftest import png_bytes


def bar(height: int, width: int, head: int = 0, canvas: int = 100) -> Image.Image:
    """A dark vertical stroke (with a ``head``-pixel-wide cap on top) on light paper."""
    arr = np.full((canvas, canvas), 240, np.uint8)
    top, left = 10, 40
    arr[top:top + height, left:left + width] = 15
    if head:
        arr[top:top + max(2, height // 8), left - head:left + width] = 15
    return Image.fromarray(arr, "L")


def test_features_measure_the_ink_box():
    features = short_letters.ink_features(png_bytes(bar(40, 8)))
    aspect, share, area_per_height2, top, height, width, area = features
    assert np.exp(aspect) == pytest.approx(5.0)
    assert np.exp(share) == pytest.approx(1.0)
    assert np.exp(area_per_height2) == pytest.approx(8 * 40 / 40 ** 2)
    assert top == pytest.approx(0.25)
    assert (np.exp(height), np.exp(width), np.exp(area)) == pytest.approx((40, 8, 320))
    assert short_letters.ink_features(png_bytes(Image.new("L", (50, 50), 200))) is None


def write_set(root, writers: int = 10):
    """vav: medium with a head, nun_final: long, yod: short and thick; each writer's size scaled a little."""
    rng = np.random.default_rng(0)
    shapes = {"vav": (36, 6, 5), "nun_final": (70, 6, 0), "yod": (14, 8, 0)}
    for form in range(1, writers + 1):
        scale = rng.uniform(0.85, 1.15)
        for index, (name, (height, width, head)) in enumerate(shapes.items()):
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            image = bar(int(height * scale), max(2, int(width * scale)), head)
            (folder / f"{index}_{form}.png").write_bytes(png_bytes(image))


def test_clearly_different_strokes_are_told_apart_across_writers(tmp_path, capsys):
    write_set(tmp_path)
    features, labels, blocks = short_letters.load(str(tmp_path))
    # writer_split's blocks: each class's 10 form numbers in 5 runs of 2, the same block for the same forms
    assert features.shape == (30, 7) and sorted(np.bincount(blocks)) == [6] * 5
    result = short_letters.cross_validate(features[:, :4], labels, blocks)
    assert result["accuracy"] == 1.0 and set(result["recall"]) == {"vav", "nun_final", "yod"}
    assert short_letters.main(["--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "30 letters (vav 10, nun_final 10, yod 10); 5 folds, each one block" in out
    assert "shape of the ink box     accuracy 1.000" in out and "reproduce: python -m bench.short_letters" in out


def test_a_missing_class_is_a_clear_error(tmp_path, capsys):
    write_set(tmp_path, writers=3)
    for path in (tmp_path / "yod").iterdir():
        path.unlink()
    with pytest.raises(SystemExit):
        short_letters.main(["--data-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert "no images named like" in err and "yod/" in err
