"""bench/synthetic_vs_real.py: what a run prints about the classes it fails on."""
import numpy as np

from bench import synthetic_vs_real
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
