"""models.evaluate scores a pushed model through its image signature and writes its report."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from models import evaluate
from pipeline.labels import CLASS_NAMES
from tests.conftest import ROOT


def test_metrics_by_hand():
    labels = np.array([0, 0, 1, 2])
    probs = np.full((4, 27), 0.001)
    probs[0, 0] = probs[1, 1] = probs[2, 1] = probs[3, 5] = 0.9
    probs[1, 0] = probs[3, 2] = 0.5                       # second choices
    m = evaluate.compute_metrics(labels, probs)
    assert m["top1"] == 0.5 and m["top3"] == 1.0
    assert m["per_class"]["alef"] == {"support": 2, "precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3)}
    assert m["per_class"]["bet"]["precision"] == 0.5 and m["per_class"]["gimel"]["recall"] == 0.0
    assert m["per_class"]["tav"]["precision"] is None
    assert np.array(m["confusion_matrix"]).sum() == 4 and m["confusion_matrix"][2][5] == 1


def test_command_scores_a_pushed_model_and_writes_the_report(pipeline_runs, tiny_dataset, tmp_path):
    serving = pipeline_runs["work"] / "serving"
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "models.evaluate", "--model", str(serving),
                           "--data-root", str(tiny_dataset), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["examples"] == len(list(tiny_dataset.glob("*/*.png")))
    assert 0 <= metrics["top1"] <= metrics["top3"] <= 1
    assert set(metrics["per_class"]) == set(CLASS_NAMES)
    assert metrics["model_dir"] == str(serving / max((p.name for p in serving.iterdir()), key=int))
    # The same answers as calling the served signature directly.
    direct = evaluate.predict(metrics["model_dir"], [p.read_bytes() for p in sorted(tiny_dataset.glob("*/*.png"))],
                              progress=False)
    assert np.isclose((direct.argmax(1) == np.array([CLASS_NAMES.index(p.parent.name) for p in
                                                     sorted(tiny_dataset.glob("*/*.png"))])).mean(), metrics["top1"])
    for png in ("confusion_matrix.png", "worst_errors.png"):
        img = Image.open(out / png)
        assert img.width > 300 and img.height > 100
    assert f"top-1 {metrics['top1']:.4f}" in proc.stdout


def test_clear_errors_for_a_missing_model_or_empty_data(tmp_path, tiny_dataset):
    proc = subprocess.run([sys.executable, "-m", "models.evaluate", "--model", str(tmp_path),
                           "--data-root", str(tiny_dataset)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "holds no SavedModel" in proc.stderr
