"""The batch-norm statistics of a network trained on generated letters only, re-estimated on other images.

    python -m bench.adapt_bn --real-root /path/to/hhd_train --seeds 42,2,3

Trains the network on ``--writers`` simulated writers exactly as ``bench.synthetic_vs_real`` does (cached per seed
under ``--work``), scores it on every real letter, then replaces every batch-norm layer's moving mean and variance
by those of one batch of images (:func:`adapt_statistics`; the learnt weights stay) and scores it again:

* with the statistics of generated letters: as they are, augmented as in training, and processed towards the
  scans' pixel statistics (eroded, faint grey suppressed); no real image is used;
* with the statistics of real letters *without their labels* ("AdaBN"): the real set's forms are split in two
  halves of writers (``bench.writer_split``); the statistics of one half's images, the score on the other half's
  letters, both ways, averaged. The scored writers' images are never used.

Each line also gives top-1 on 20 other generated writers, the kind of letters the pipeline's gate judges by.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import tempfile
from pathlib import Path

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)
import numpy as np
import tensorflow as tf

from bench.select_model import config_with, fit_model, load_split
from bench import reproduce
from bench.letter_folders import letters_folder
from bench.synthetic_vs_real import positive_ints
from bench.writer_split import writer_split
from components.image_example_gen import folder_fingerprint as generated_fingerprint
from core.files import atomic_write
from core.labels import NUM_CLASSES
from models import trainer
from pipeline import evaluate, generate_letters
from pipeline.code_fingerprint import fingerprint
from pipeline.pipeline import TRAINING_FIELDS

ROOT = Path(__file__).resolve().parent.parent
GENERATOR_SEED = 1234      # bench.synthetic_vs_real's default: the same simulated writers
OTHER_WRITERS_SEED = 4321
OTHER_WRITERS = 20


def adapt_statistics(model: tf.keras.Model, images) -> None:
    """Sets every batch-norm layer's moving mean and variance to those of ``images`` (one batch, in order through
    the network, so each layer sees the inputs the re-estimated layers before it give). Nothing else changes."""
    norms = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    try:
        for layer in norms:
            layer.momentum = 0.0          # the moving statistics become this batch's
        model(tf.convert_to_tensor(images), training=True)   # (the dropout comes after the last batch norm)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum


def pixel_stats(images) -> str:
    """Share of ink pixels (> 0.5), of faint grey (0.1–0.5) and the mean ink value of transformed images."""
    x = np.asarray(images)[..., 0]
    ink = x > 0.5
    return (f"ink share {ink.mean():.3f}, faint grey share {((x > 0.1) & (x < 0.5)).mean():.3f}, "
            f"ink mean {x[ink].mean():.3f}")


def _erode(x):
    return -tf.nn.max_pool2d(-x, 3, 1, "SAME")


def _suppress_faint(x):
    return tf.where(x < 0.5, x * 0.4, x)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real-root", required=True, type=letters_folder, help="folder-per-class real letters (scored on; without "
                                                             "labels, half of them give statistics)")
    parser.add_argument("--writers", type=int, default=160, help="simulated writers to train on (default: 160)")
    parser.add_argument("--seeds", type=positive_ints, default=[42], help="training seeds (default: 42)")
    parser.add_argument("--adapt-images", type=int, default=1500,
                        help="images whose statistics are taken (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a Config field (repeatable; epochs=12, the demo's budget, comes first)")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "letters-adapt-bn"),
                        help="generated letters and trained networks are kept here (default: %(default)s)")
    parser.add_argument("--cache", default=str(ROOT / "outputs" / "select_model_cache"))
    args = parser.parse_args(argv)
    if args.writers < 1 or args.adapt_images < 1:
        parser.error("--writers and --adapt-images must be positive")
    work, cache, hp = Path(args.work), Path(args.cache), config_with(["epochs=12", *args.set])
    generated, others = work / f"strokes-{args.writers}", work / "other-writers"
    generate_letters.generate(generated, args.writers, GENERATOR_SEED, progress=False)
    generate_letters.generate(others, OTHER_WRITERS, OTHER_WRITERS_SEED, progress=False)
    train = load_split(generated, hp.image_size, cache)
    other = load_split(others, hp.image_size, cache)
    real = load_split(Path(args.real_root), hp.image_size, cache)
    with tempfile.TemporaryDirectory() as tmp:
        writer_split(args.real_root, tmp, 0.5)
        halves = [load_split(Path(tmp) / part, hp.image_size, cache) for part in ("train", "val")]
    print(f"real letters: {pixel_stats(real[0])}\ngenerated:    {pixel_stats(train[0])}")
    sample = tf.constant(train[0][np.random.default_rng(0).permutation(len(train[0]))[:args.adapt_images]])
    sources = {"generated letters as they are": lambda x: x,
               "generated letters augmented as in training":
                   lambda x: trainer.augment(x, tf.zeros([tf.shape(x)[0], NUM_CLASSES]), hp)[0],
               "generated letters eroded, faint grey suppressed": lambda x: _suppress_faint(_erode(x))}
    # A trained network is reused only for the same settings, training code and generated letters.
    training = {name: getattr(hp, name) for name in TRAINING_FIELDS if name != "seed"}   # --set and LETTERS_*
    parts = [json.dumps(training, sort_keys=True), fingerprint("models.trainer"), generated_fingerprint(str(generated))]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]
    rows = []
    for seed in args.seeds:
        shp = hp.replace(seed=seed)
        network_file = work / f"network-{args.writers}-{seed}-{key}.pkl"
        if network_file.exists():
            model = trainer.compiled_model(shp, steps=1)
            model.set_weights(pickle.loads(network_file.read_bytes()))
        else:
            model, _ = fit_model(shp, train, real)
            atomic_write(str(network_file), pickle.dumps(model.get_weights()))
        trained = model.get_weights()

        def score(split):
            metrics = evaluate.compute_metrics(split[1], model.predict(split[0], batch_size=256, verbose=0))
            return np.array([metrics["top1"], metrics["top3"]])

        def report(name, real_scores, other_scores, weights=None):
            (top1, top3) = np.average(real_scores, axis=0, weights=weights)     # pooled over the scored letters
            generated_top1 = np.mean(other_scores, axis=0)[0]
            rows.append((seed, name, top1, top3, generated_top1))
            print(f"  seed {seed}, statistics of {name}: real top-1 {top1:.4f} top-3 {top3:.4f}; "
                  f"other generated writers top-1 {generated_top1:.4f}", flush=True)

        report("training (as trained)", [score(real)], [score(other)])
        for name, process in sources.items():
            tf.random.set_seed(seed)
            model.set_weights(trained)
            adapt_statistics(model, process(sample))
            report(name, [score(real)], [score(other)])
        crossed, other_scores = [], []
        for a, b in ((0, 1), (1, 0)):
            model.set_weights(trained)
            # A random sample of that half's letters: its first images in load order are of the first classes only
            # (sorted by class folder: no ו, י, ז, ט, צ or ץ among the first 1,500)
            pick = np.random.default_rng(a).permutation(len(halves[a][0]))[:args.adapt_images]
            adapt_statistics(model, halves[a][0][pick])
            crossed.append(score(halves[b]))
            other_scores.append(score(other))
        report("the other half's real writers, unlabelled", crossed, other_scores,
               weights=[len(halves[1][1]), len(halves[0][1])])
    print(f"\n{'seed':>4} {'statistics of':48} {'top-1':>6} {'top-3':>6} {'generated':>9}")
    for seed, name, top1, top3, generated_top1 in rows:
        print(f"{seed:4d} {name:48} {top1:6.4f} {top3:6.4f} {generated_top1:9.4f}")
    print("reproduce: " + reproduce.command("bench.adapt_bn", argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
