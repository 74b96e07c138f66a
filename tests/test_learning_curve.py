"""bench/learning_curve.py and pipeline.plots.line_chart_png: select_model results drawn as a learning curve."""
import json

import numpy as np
import pytest
from PIL import Image

from bench import learning_curve
from pipeline.plots import SERIES_COLOURS, line_chart_png


def write_result(path, train_images_per_fold, cv_top1, extra=0):
    folds = [{"fold": k, "train_images": n + extra, "extra_images": extra} for k, n in enumerate(train_images_per_fold)]
    path.write_text(json.dumps({"cv_top1": cv_top1, "cv_top3": 0.9, "folds": folds}))
    return path


def test_a_point_is_real_images_per_class_and_the_pooled_top1(tmp_path):
    # 27 classes; the folds' median real training split is 270 images; generated extra images do not count
    path = write_result(tmp_path / "r.json", [260, 270, 300], 0.8123, extra=4320)
    assert learning_curve.curve_point(str(path)) == (10.0, 0.8123)


def test_a_file_that_is_not_a_cross_validation_is_refused(tmp_path):
    (tmp_path / "one.json").write_text(json.dumps({"top1": 0.9}))
    with pytest.raises(ValueError, match="no cv_top1"):
        learning_curve.curve_point(str(tmp_path / "one.json"))


def colour_pixels(path, colour):
    pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)
    return int((pixels == colour).all(axis=1).sum())


def test_the_chart_draws_one_line_per_series(tmp_path):
    for name, share, top1 in (("pre", 0.04, 0.80), ("pre", 0.12, 0.83), ("rand", 0.04, 0.2), ("rand", 0.12, 0.66)):
        write_result(tmp_path / f"{name}_{share}.json", [int(share * 3150)] * 5, top1)
    out = tmp_path / "curve.png"
    assert learning_curve.main(["--out", str(out), "--series", f"pretrained={tmp_path}/pre_*.json",
                                "--series", f"random={tmp_path}/rand_*.json", "--mark", "goal=0.80"]) == 0
    assert Image.open(out).size == (790, 416)
    assert colour_pixels(out, SERIES_COLOURS[0]) > 200 and colour_pixels(out, SERIES_COLOURS[1]) > 200
    assert colour_pixels(out, SERIES_COLOURS[2]) == 0          # two series, two colours


def test_the_lines_go_where_the_values_are(tmp_path):
    out = tmp_path / "c.png"
    line_chart_png(str(out), {"up": [(1, 0.2), (10, 0.9)]}, "t", "x", "y")
    drawn = (np.asarray(Image.open(out).convert("RGB")) == SERIES_COLOURS[0]).all(axis=2)
    drawn[:50] = False                                          # the legend's swatch, above the plot
    rows, cols = np.nonzero(drawn)
    first, last = rows[cols <= cols.min() + 6].mean(), rows[cols >= cols.max() - 6].mean()
    assert first - last > 200                                   # 0.2 low on the left, 0.9 high on the right


@pytest.mark.parametrize("argv, message", [
    (["--series", "pre=/nowhere/*.json"], "no file matches"),
    (["--series", "no-equals-sign"], "must be NAME=GLOB"),
    (["--series", "pre={tmp}/*.json", "--mark", "goal=high"], "could not convert"),
])
def test_bad_arguments_are_refused(argv, message, tmp_path, capsys):
    write_result(tmp_path / "a.json", [100] * 5, 0.5)
    with pytest.raises(SystemExit) as exit_info:
        learning_curve.main(["--out", str(tmp_path / "x.png"), *[a.format(tmp=tmp_path) for a in argv]])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_a_log_axis_refuses_zero(tmp_path):
    with pytest.raises(ValueError, match="positive x"):
        line_chart_png(str(tmp_path / "c.png"), {"a": [(0, 0.5), (1, 0.6)]}, "t", "x", "y")
