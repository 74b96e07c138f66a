"""Each class's ink box, generated letters against real ones: where their proportions differ.

    python -m bench.ink_boxes --real-root /path/to/hhd_train                  # 160 simulated writers, seed 1234
    python -m bench.ink_boxes --real-root /path/to/hhd_train --generated /tmp/gen160

For every class this prints the median of two measures of the ink box as the Transform finds it
(``bench.short_letters.ink_box``): its aspect (height / width) and the stroke's width against its length
(ink area / height²), for the generated letters and for the real ones, and their ratio (real / generated); and its
lean (how far the ink moves right per unit of height, from its second moments: 0 upright, positive leaning right),
and the difference (real − generated). A ratio far from 1 or a difference far from 0 names a letter the generator
draws otherwise than the writers; the mean lean of all letters says whether the writers lean as a whole. Without
``--generated`` the letters are written by ``pipeline.generate_letters`` (strokes style) into a temporary folder.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile

import numpy as np

from bench import reproduce
from bench.letter_folders import letters_folder
from bench.short_letters import ink_box
from core.labels import CLASS_NAMES
from pipeline import evaluate, generate_letters
from pipeline.flags import non_negative_int, output_file

MEASURES = ("aspect", "ink/h²")   # compared as ratios
LEAN = "lean"                       # compared as a difference (it is 0 for an upright letter)


def lean(box: np.ndarray) -> float:
    """How far the ink of ``box`` (a boolean mask) moves right per unit of height going up: the slope of x on y
    of its pixels (their second moments), 0 for an upright stroke, positive leaning right, as a writer's slant."""
    ys, xs = np.nonzero(box)
    up, right = -(ys - ys.mean()), xs - xs.mean()
    return float((up * right).sum() / max((up * up).sum(), 1e-9))


def measure(data_root: str) -> dict:
    """{class: [N, 3] array of (aspect, ink area / height², lean)} of the non-blank images."""
    items, _ = evaluate.load_labelled_images(data_root)
    rows: dict = {}
    for _, label, data in items:
        box = ink_box(data)
        if box is not None:
            height, width = box.shape
            rows.setdefault(CLASS_NAMES[label], []).append((height / width, box.sum() / height ** 2, lean(box)))
    if not rows:
        raise ValueError(f"{data_root}: no images in class folders")
    return {c: np.array(v, dtype=float) for c, v in rows.items()}


def medians(measured: dict) -> dict:
    """{class: (median aspect, median ink area / height², median lean, letters measured)}."""
    return {c: (*np.median(v, axis=0).tolist(), len(v)) for c, v in measured.items()}


def mean_lean(measured: dict) -> tuple[float, float]:
    """The mean lean of all the letters measured, and its standard deviation."""
    leans = np.concatenate([v[:, 2] for v in measured.values()])
    return float(leans.mean()), float(leans.std())


def compare(generated: dict, real: dict) -> list[dict]:
    """One row per class present in both :func:`medians`: the generated and real medians, real / generated for
    the proportions and real − generated for the lean."""
    out = []
    for name in CLASS_NAMES:
        if name in generated and name in real:
            row = {"class": name}
            for i, measure in enumerate(MEASURES):
                g, r = generated[name][i], real[name][i]
                row[measure] = {"generated": g, "real": r, "ratio": r / g}
            g, r = generated[name][2], real[name][2]
            row[LEAN] = {"generated": g, "real": r, "difference": r - g}
            out.append(row)
    return out


def table(rows: list[dict]) -> str:
    lines = [f"{'class':12} " + "  ".join(f"{m + ' gen':>10} {'real':>6} {'ratio':>6}" for m in MEASURES)
             + f"  {LEAN + ' gen':>10} {'real':>6} {'diff':>6}"]
    for row in rows:
        lines.append(f"{row['class']:12} " + "  ".join(
            f"{row[m]['generated']:10.3f} {row[m]['real']:6.3f} {row[m]['ratio']:6.2f}" for m in MEASURES)
            + f"  {row[LEAN]['generated']:10.3f} {row[LEAN]['real']:6.3f} {row[LEAN]['difference']:+6.3f}")
    spread = [abs(np.log(row[m]["ratio"])) for row in rows for m in MEASURES[:1]]
    lines.append(f"median |log ratio| of the aspect: {np.median(spread):.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real-root", required=True, type=letters_folder, help="folder-per-class real letters")
    parser.add_argument("--generated", default=None, type=letters_folder, help="folder-per-class generated letters (default: write them)")
    parser.add_argument("--writers", type=int, default=160, help="simulated writers when writing them (default: %(default)s)")
    parser.add_argument("--seed", type=non_negative_int, default=1234, help="generator seed when writing them (default: %(default)s)")
    parser.add_argument("--json", default=None, type=output_file,
                        help="also write the rows here (its folder checked before any letter is written)")
    args = parser.parse_args(argv)
    if args.writers < 1:
        parser.error("--writers must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.generated
        if folder is None:
            folder = tmp
            generate_letters.generate(tmp, args.writers, args.seed, style="strokes", progress=False)
        try:
            generated, real = measure(folder), measure(args.real_root)
        except ValueError as err:
            parser.error(str(err))
    rows = compare(medians(generated), medians(real))
    if not rows:
        parser.error("the two folders share no class")
    leans = {"generated": mean_lean(generated), "real": mean_lean(real)}
    print(table(rows))
    print("mean lean of all the letters: " + ", ".join(
        f"{name} {mean:.3f} (sd {sd:.3f})" for name, (mean, sd) in leans.items()))
    print("reproduce: " + reproduce.command("bench.ink_boxes", argv))   # before the JSON: the checkout as it ran
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"classes": rows, "lean_mean_sd": leans}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
