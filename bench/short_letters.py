"""How well ו, ן and י can be told apart from one letter alone, by the shape of its ink box.

    python -m bench.short_letters --data-root /path/to/hhd_train

The three are written as one vertical stroke of different length (ו with a small head, ן longer, י short). A crop
of one letter keeps its shape but loses where it stood on the line and how big the writer's other letters are.
For every image of the three classes this measures the box of its ink as the Transform finds it (``models.preprocessing``):
its aspect, the ink's share of the box, the stroke's width relative to its length (ink area / height²) and the
share of ink in the top quarter (the head); and, which a crop of a scanned form also carries but a drawing or a
photo does not, the box's size in pixels. A logistic regression on these features is cross-validated with folds
of ``bench/writer_split.py``'s writer blocks (each class's form numbers cut in equal runs), once on the shape alone and once with
the size: the accuracy a classifier of the crop's outline reaches on writers it never saw.
"""
from __future__ import annotations

import argparse
import re
import sys

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)
import numpy as np
import tensorflow as tf

from bench import reproduce
from bench.writer_split import DEFAULT_PATTERN, form_blocks
from models import preprocessing
from pipeline import evaluate
from pipeline.flags import positive_int

CLASSES = ("vav", "nun_final", "yod")
SHAPE = ("log aspect (height / width)", "log ink share of the box", "log ink area / height²", "top-quarter ink share")
SIZE = ("log height px", "log width px", "log ink area px")


def ink_box(data: bytes) -> np.ndarray | None:
    """The ink of one encoded image as a boolean mask cut to its box, None for a blank one. The ink is the
    Transform's own (``models.preprocessing.ink_crop``: decoded, composited, contrast stretched, cropped)."""
    mask = preprocessing.ink_crop(tf.constant(data)).numpy() > preprocessing.INK_THRESHOLD
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return None
    return mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def ink_features(data: bytes) -> np.ndarray | None:
    """Shape then size features of one encoded image (see SHAPE and SIZE) measured on its :func:`ink_box`, None for
    a blank one."""
    box = ink_box(data)
    if box is None:
        return None
    height, width = box.shape
    area = float(box.sum())
    top = float(box[:max(1, height // 4)].sum()) / area
    return np.array([np.log(height / width), np.log(area / (height * width)), np.log(area / height ** 2), top,
                     np.log(height), np.log(width), np.log(area)])


def load(data_root: str, folds: int = 5, pattern: str = DEFAULT_PATTERN) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features [N, 7], labels [N] as indices into CLASSES, writer blocks [N]) of the three classes' images: each
    letter's block of ``bench.writer_split`` (its class's form numbers cut in ``folds`` equal runs; a file's
    number counts one class's letters, it is no writer id shared by the classes)."""
    items, _ = evaluate.load_labelled_images(data_root)
    regex = re.compile(pattern)
    features, labels, rels = [], [], []
    for rel, _, data in items:
        folder, name = rel.split("/", 1)
        if folder not in CLASSES or not regex.match(name):
            continue
        row = ink_features(data)
        if row is not None:
            features.append(row)
            labels.append(CLASSES.index(folder))
            rels.append(rel)
    missing = [c for i, c in enumerate(CLASSES) if i not in labels]
    if missing:
        raise ValueError(f"{data_root}: no images named like {pattern!r} in {', '.join(missing)}/")
    return np.array(features), np.array(labels), np.array(form_blocks(rels, folds, pattern))


def cross_validate(features: np.ndarray, labels: np.ndarray, blocks: np.ndarray) -> dict:
    """Accuracy and per-class recall of a logistic regression, each writer block held out in turn."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import PredefinedSplit, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    predicted = cross_val_predict(model, features, labels, cv=PredefinedSplit(blocks))
    return {"accuracy": float(np.mean(predicted == labels)),
            "recall": {c: float(np.mean(predicted[labels == i] == i)) for i, c in enumerate(CLASSES)}}


def at_least_two(text: str) -> int:
    """argparse type: a number of folds (at least 2: one is held out, the others train)."""
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"at least 2 folds (one held out, the others trained on), got {value}")
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="folder-per-class images named <class>_<form>.<ext>")
    parser.add_argument("--folds", type=at_least_two, default=5, help="writer-grouped folds (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        features, labels, blocks = load(args.data_root, args.folds)
    except ValueError as err:
        parser.error(str(err))
    counts = ", ".join(f"{c} {int(np.sum(labels == i))}" for i, c in enumerate(CLASSES))
    print(f"{len(labels)} letters ({counts}); {args.folds} folds, each one block of every class's form numbers "
          "(bench.writer_split's writer hold-out)")
    for name, columns in (("shape of the ink box", len(SHAPE)), ("shape + size in pixels", len(SHAPE) + len(SIZE))):
        result = cross_validate(features[:, :columns], labels, blocks)
        recall = ", ".join(f"{c} {r:.2f}" for c, r in result["recall"].items())
        print(f"{name:24} accuracy {result['accuracy']:.3f}  recall {recall}")
    print("reproduce: " + reproduce.command("bench.short_letters", argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
