"""Train on generated letters only, score on real ones: which generator style, and how many writers.

    python -m bench.synthetic_vs_real --real-root /path/to/hhd_train                       # fonts vs strokes, 80 each
    python -m bench.synthetic_vs_real --real-root /path/to/hhd_train --styles strokes --writers 20,40,80,160
    python -m bench.synthetic_vs_real --styles strokes --writers 20      # no real data: scored on other generated writers
    python -m bench.synthetic_vs_real --real-root /path/to/hhd_train --styles strokes --writers 160 --redraw-strokes 2.5

For every style and count, ``pipeline.generate_letters`` writes ``N`` images per class (with the strokes style:
``N`` writers each writing all 27 letters) into a temporary folder; the network is trained on them alone exactly
as select_model trains (the pipeline's Transform graph, ``models.trainer``'s augmentation and optimiser, the Config's
settings plus ``--set FIELD=VALUE``), and scored top-1/top-3 on every image of ``--real-root`` (used only to score,
never to train or to generate). ``make demo`` generates 200 per class (its 4:1 split trains on about 160).

``--redraw-strokes R`` is an experiment on the gap between the two: every image, generated and real, is taken
through the Transform at twice the input size, binarised, thinned to its centre lines and re-drawn with one round
pen of radius R (at that size), then halved, so pen width, ink tone, paper and scanner are the same in both.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent

from bench.select_model import config_with, load_split, train_once
from bench import reproduce
from bench.letter_folders import letters_folder
from core.labels import CLASS_NAMES
from pipeline import evaluate, generate_letters, skeleton
from pipeline.flags import int_list, output_file
from pipeline.pipeline import TRAINING_FIELDS

TOP_CONFUSIONS = 12      # the most frequent (true → predicted) pairs printed per run
SANITY_PER_CLASS = 10    # without --real-root: images per class of other writers (another seed) to score on
INK_THRESHOLD = 0.4      # --redraw-strokes: ink (after the Transform's contrast stretch) above this is a stroke


positive_ints = int_list(1)   # argparse type: comma-separated counts, or seeds


def styles(text: str) -> list[str]:
    chosen = text.split(",")
    unknown = [s for s in chosen if s not in generate_letters.STYLES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown style {unknown[0]!r}; choose from {', '.join(generate_letters.STYLES)}")
    return chosen


def redraw_strokes(images: np.ndarray, pen_radius: float) -> np.ndarray:
    """Transformed images [N, 2S, 2S, 1] (ink = 1) → [N, S, S, 1]: each one's strokes thinned to their centre lines
    and drawn again with a round pen of ``pen_radius`` pixels, softened by a blur of 0.8 px, then halved by averaging."""
    n, h, w, _ = images.shape
    if h % 2 or w % 2:
        raise ValueError(f"want an even image size to halve, got {h}×{w}")
    # Thinning is local: the images stacked in one column, each with a blank border, thin as they would one by one.
    framed = np.pad(images[..., 0] > INK_THRESHOLD, ((0, 0), (1, 1), (1, 1)))
    centre = skeleton.thin(framed.reshape(n * (h + 2), w + 2)).reshape(n, h + 2, w + 2)[:, 1:-1, 1:-1]
    reach = int(np.ceil(pen_radius))
    yy, xx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    pen = yy ** 2 + xx ** 2 <= pen_radius ** 2
    drawn = ndimage.binary_dilation(centre, structure=pen[np.newaxis]).astype(np.float32)
    drawn = ndimage.gaussian_filter(drawn, sigma=(0, 0.8, 0.8))
    return drawn.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))[..., np.newaxis]


def failures(metrics: dict) -> tuple[dict, list]:
    """Per-class recall on the scored letters and the most frequent confusions [(true, predicted, count)]."""
    recall = {name: m["recall"] for name, m in metrics["per_class"].items()}
    matrix = metrics["confusion_matrix"]
    pairs = [(CLASS_NAMES[t], CLASS_NAMES[p], n) for t, row in enumerate(matrix) for p, n in enumerate(row)
             if t != p and n]
    pairs.sort(key=lambda pair: (-pair[2], pair[0], pair[1]))
    return recall, pairs[:TOP_CONFUSIONS]


def describe_failures(run: dict) -> str:
    """Recall per class, worst first, and the most frequent confusions, as printable lines."""
    lines = ["  recall per class (worst first): " + ", ".join(
        f"{n} {r:.2f}" for n, r in evaluate.lowest_recall(run["per_class_recall"]))]
    lines.append("  most frequent confusions (true → predicted ×count): "
                 + ", ".join(f"{t}→{p} ×{n}" for t, p, n in run["confusions"]))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real-root", default=None, type=letters_folder,
                        help="folder-per-class real letters, only scored on (default: none; other generated writers)")
    parser.add_argument("--styles", type=styles, default=["fonts", "strokes"], help="comma-separated (default: fonts,strokes)")
    parser.add_argument("--writers", type=positive_ints, default=[80],
                        help="comma-separated images per class (= writers, with strokes) to train on (default: 80)")
    parser.add_argument("--seed", type=int, default=1234, help="generator seed (default: %(default)s)")
    parser.add_argument("--seeds", type=positive_ints, default=[42], help="training seeds (default: 42)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a core.configs.Config field (repeatable), e.g. epochs=20")
    parser.add_argument("--cache", default=str(ROOT / "outputs" / "select_model_cache"),
                        help="where the real data's preprocessed arrays are cached")
    parser.add_argument("--json", default=None, type=output_file,
                        help="also write the results here (its folder checked before any training)")
    parser.add_argument("--redraw-strokes", type=float, default=None, metavar="RADIUS",
                        help="experiment: every image's strokes re-drawn with one pen of this radius in pixels at twice "
                             "the input size (see above; default: off)")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error("--seed must not be negative")
    if args.redraw_strokes is not None and args.redraw_strokes <= 0:
        parser.error("--redraw-strokes must be a positive radius")
    hp = config_with(args.set)

    def load(root: Path, cache: Path) -> tuple:
        if args.redraw_strokes is None:
            return load_split(root, hp.image_size, cache)
        images, labels = load_split(root, 2 * hp.image_size, cache)
        return redraw_strokes(images, args.redraw_strokes), labels

    faces = generate_letters.require_faces()
    results = []
    with tempfile.TemporaryDirectory(prefix="synthetic-vs-real-") as tmp:
        if args.real_root:
            real = load(Path(args.real_root), Path(args.cache))
            scored_on = f"{len(real[1])} real letters of {args.real_root}"
        else:
            sanity = Path(tmp) / "sanity"
            generate_letters.generate(sanity, SANITY_PER_CLASS, args.seed + 1, faces, progress=False)
            real = load(sanity, Path(tmp) / "cache")
            scored_on = f"{len(real[1])} generated letters of other writers (seed {args.seed + 1})"
        for style in args.styles:
            for count in args.writers:
                folder = Path(tmp) / f"{style}-{count}"
                started = time.monotonic()
                generate_letters.generate(folder, count, args.seed, faces, progress=False, style=style)
                generated = time.monotonic() - started
                train = load(folder, Path(tmp) / "cache")
                print(f"{style}, {count} per class: {len(train[1])} images generated in {generated:.0f} s; "
                      f"training, scored on {scored_on}", flush=True)
                for seed in args.seeds:
                    run = train_once(hp.replace(seed=seed), train, real, keep_metrics=True)
                    run["per_class_recall"], run["confusions"] = failures(run.pop("metrics"))
                    print(describe_failures(run), flush=True)
                    results.append({"style": style, "per_class": count, "images": len(train[1]),
                                    "generate_seconds": round(generated, 1), **run})
    print(f"\n{'style':8} {'per class':>9} {'images':>6} {'seed':>4} {'top-1':>6} {'top-3':>6} {'train s':>7}")
    for r in results:
        print(f"{r['style']:8} {r['per_class']:9d} {r['images']:6d} {r['seed']:4d} {r['top1']:6.4f} "
              f"{r['top3']:6.4f} {r['seconds']:7.0f}")
    print(f"scored on {scored_on}")
    print("reproduce: " + reproduce.command("bench.synthetic_vs_real", argv))
    if args.json:
        settings = {k: v for k, v in dataclasses.asdict(hp).items() if k in TRAINING_FIELDS}
        Path(args.json).write_text(json.dumps({"settings": settings, "redraw_strokes": args.redraw_strokes,
                                               "scored_on": scored_on, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
