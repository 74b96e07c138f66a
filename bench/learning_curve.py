"""A learning curve from ``bench.select_model --train-share`` runs: writer cross-validated top-1 against the
real letters each class trained on, one line per way of training, drawn as a PNG and printed as a table.

    python -m bench.select_model --data-root /path/to/hhd_train --folds 0,1,2,3,4 --train-share 0.04 \\
        --pretrain-root data/generated --json /tmp/curve/pre_0.04.json          # and other shares, other starts
    python -m bench.learning_curve --out docs/real_letters_curve.png \\
        --series "pretrained on the generated letters=/tmp/curve/pre_*.json" \\
        --series "random start=/tmp/curve/rand_*.json" --mark "goal=0.80"

Each JSON gives one point: x is the training images per class (the folds' median training split over the 27
classes), y its pooled ``cv_top1``. ``--mark NAME=VALUE`` draws a labelled horizontal line.
"""
from __future__ import annotations

import argparse
import glob
import json
import statistics
import sys

from bench import reproduce
from core.labels import CLASS_NAMES
from pipeline.plots import line_chart_png


def curve_point(path: str) -> tuple[float, float]:
    """(training images per class, cross-validated top-1) of one ``select_model --json`` file."""
    with open(path) as f:
        result = json.load(f)
    if "cv_top1" not in result or not result.get("folds"):
        raise ValueError(f"{path}: not a cross-validation result of bench.select_model (no cv_top1 / folds)")
    images = statistics.median(fold["train_images"] - fold.get("extra_images", 0) for fold in result["folds"])
    return round(images / len(CLASS_NAMES), 1), float(result["cv_top1"])


def named(text: str, what: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"{what} must be NAME={what.upper()}, got {text!r}")
    return name, value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--series", action="append", required=True, type=lambda t: named(t, "glob"),
                        metavar="NAME=GLOB", help="a line: select_model JSON files (a glob), repeatable")
    parser.add_argument("--mark", action="append", default=[], type=lambda t: named(t, "value"),
                        metavar="NAME=VALUE", help="a labelled horizontal line, repeatable")
    parser.add_argument("--title", default="top-1 on writers never seen, against the real letters trained on")
    args = parser.parse_args(argv)
    series = {}
    try:
        for name, pattern in args.series:
            paths = sorted(glob.glob(pattern))
            if not paths:
                raise ValueError(f"--series {name}: no file matches {pattern}")
            series[name] = sorted(curve_point(p) for p in paths)
        marks = {name: float(value) for name, value in args.mark}
    except (ValueError, OSError) as e:
        parser.error(str(e))
    line_chart_png(args.out, series, args.title, "real training letters per class (log scale)",
                   "top-1, five-fold writer cross-validation", marks)
    for name, points in series.items():
        print(f"{name}: " + ", ".join(f"{x:g} per class → {y:.4f}" for x, y in points))
    print(f"wrote {args.out}")
    print("reproduce:", reproduce.command("bench.learning_curve", argv, python=sys.executable))
    return 0


if __name__ == "__main__":
    sys.exit(main())
