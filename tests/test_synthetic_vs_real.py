"""bench/synthetic_vs_real.py: what a run prints about the classes it fails on."""
import numpy as np
import pytest

from bench import synthetic_vs_real
from tests.support import letter_roots
from core.labels import CLASS_NAMES, NUM_CLASSES
from pipeline import evaluate


def test_failures_rank_recall_and_confusions():
    labels = np.repeat(np.arange(NUM_CLASSES), 4)
    pred = labels.copy()
    vav, nun_final, yod = (CLASS_NAMES.index(n) for n in ("vav", "nun_final", "yod"))
    pred[labels == vav] = [nun_final, nun_final, nun_final, yod]     # vav: 3 × ן, 1 × י, none right
    pred[np.flatnonzero(labels == yod)[0]] = vav                     # yod: 1 × ו
    metrics = evaluate.compute_metrics(labels, np.eye(NUM_CLASSES)[pred])
    recall, confusions = synthetic_vs_real.failures(metrics)
    assert recall["vav"] == 0.0 and recall["yod"] == 0.75 and recall["alef"] == 1.0
    assert confusions == [("vav", "nun_final", 3), ("vav", "yod", 1), ("yod", "vav", 1)]
    text = synthetic_vs_real.describe_failures({"per_class_recall": recall, "confusions": confusions})
    assert "(worst first): vav 0.00, yod 0.75, alef 1.00" in text
    assert "vav→nun_final ×3, vav→yod ×1, yod→vav ×1" in text


def _bar(size: int, width: int, tone: float = 1.0) -> np.ndarray:
    image = np.zeros((size, size, 1), np.float32)
    left = size // 2 - width // 2
    image[8:size - 8, left:left + width] = tone
    return image


def test_redraw_strokes_gives_every_pen_and_ink_the_same_stroke():
    thick, thin, faint = _bar(48, 9), _bar(48, 3), _bar(48, 9, tone=0.6)
    out = synthetic_vs_real.redraw_strokes(np.stack([thick, thin, faint, np.zeros_like(thick)]), pen_radius=2.5)
    assert out.shape == (4, 24, 24, 1)
    width = (out[:, 12, :, 0] > 0.5).sum(axis=1)             # the stroke's width across the middle row
    assert width[0] == width[1] == width[2] and 1 <= width[0] <= 4
    # Along the bar the thick and the thin pen give the same pixels (thinning shortens a thick bar's ends a little).
    assert np.abs(out[0, 6:17] - out[1, 6:17]).max() < 0.01 and np.abs(out[0] - out[2]).max() < 1e-6
    assert not (out[3] > 0).any()                           # nothing drawn where there was no ink
    before = (thick[..., 0] > 0.5).sum() / 4                 # the thick bar's ink at the output's size
    assert (out[0] > 0.5).sum() < before / 2                 # its strokes are re-drawn, not kept


def test_redraw_strokes_refuses_an_odd_size():
    with pytest.raises(ValueError, match="even image size"):
        synthetic_vs_real.redraw_strokes(np.zeros((1, 47, 47, 1), np.float32), pen_radius=2.0)


@pytest.mark.parametrize("name", letter_roots.NAMES)
def test_a_root_without_letters_is_a_usage_error_before_any_work(tmp_path, monkeypatch, capsys, name):
    """--real-root missing, empty or without class folders is refused as the command line is read; it had ended in a
    traceback (ValueError: no images in the class folders of …) once the letters were generated or trained on."""
    letter_roots.assert_refused(synthetic_vs_real, ["--styles", "strokes", "--writers", "1"], "--real-root", name, tmp_path, monkeypatch, capsys)


def test_a_json_in_a_missing_folder_is_refused_before_any_training(tmp_path, monkeypatch, capsys):
    """--json had been opened after all the training: a folder not made yet lost the results in a traceback."""
    letter_roots.refuse_work(monkeypatch, synthetic_vs_real)
    with pytest.raises(SystemExit) as stop:
        synthetic_vs_real.main(["--styles", "strokes", "--writers", "1", "--json", str(tmp_path / "no" / "r.json")])
    assert stop.value.code == 2
    assert f"argument --json: the folder {tmp_path / 'no'} does not exist" in capsys.readouterr().err
