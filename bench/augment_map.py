"""What one seed's repeatable training costs: epochs with the augmentation mapped one batch at a time (the
Trainer's way, ``models.trainer.augmented``) against the same map run in parallel (``num_parallel_calls=AUTOTUNE``,
whose batches draw random numbers in whatever order their threads run).

    python -m bench.augment_map                          # 80 simulated writers, 2 epochs per run, 3 runs each way
    python -m bench.augment_map --data-root /path/to/letters --epochs 3 --repeats 5

The two ways alternate (sequential, parallel, sequential, …) so a busy machine slows both alike; it prints each
run's seconds of ``model.fit`` (the network built and compiled before the clock starts), the medians and their
ratio, and whether two sequential runs ended with the same weights (not compared with ``--repeats 1``).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import reproduce
from bench.letter_folders import letters_folder
from bench.select_model import config_with, load_split
from core import configs
from core.labels import NUM_CLASSES
from models import trainer
from pipeline import generate_letters


def train_once(hp: configs.Config, images: np.ndarray, labels: np.ndarray, parallel: bool) -> tuple[float, list]:
    """Seconds of ``model.fit`` for ``hp.epochs`` epochs, and the trained weights."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(hp.seed)
    ds = tf.data.Dataset.from_tensor_slices((images, tf.one_hot(labels, NUM_CLASSES)))
    ds = ds.shuffle(len(images), seed=hp.seed, reshuffle_each_iteration=True).batch(hp.batch_size)
    if parallel:
        ds = ds.map(lambda x, y: trainer.augment(x, y, hp), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = trainer.augmented(ds, hp)
    model = trainer.compiled_model(hp, steps=hp.epochs * int(np.ceil(len(images) / hp.batch_size)))
    started = time.perf_counter()
    model.fit(ds.prefetch(tf.data.AUTOTUNE), epochs=hp.epochs, verbose=0)
    return time.perf_counter() - started, model.get_weights()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=None, type=letters_folder, help="folder-per-class letters (default: 80 simulated writers)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="runs each way (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.repeats < 1:
        parser.error("--epochs and --repeats must be at least 1")
    hp = config_with([f"epochs={args.epochs}"])   # the LETTERS_* settings too, as the reproduce line says
    with tempfile.TemporaryDirectory(prefix="augment-map-") as tmp:
        root = Path(args.data_root) if args.data_root else Path(tmp) / "letters"
        if args.data_root is None:
            generate_letters.generate(root, 80, hp.generate_seed, progress=False)
        images, labels = load_split(root, hp.image_size, Path(tmp) / "cache")
    seconds: dict = {"one batch at a time": [], "in parallel": []}
    weights = []
    for _ in range(args.repeats):
        for name, parallel in (("one batch at a time", False), ("in parallel", True)):
            took, trained = train_once(hp, images, labels, parallel)
            seconds[name].append(took)
            if not parallel:
                weights.append(trained)
            print(f"{name:20} {took:6.1f} s", flush=True)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    if len(weights) < 2:
        same = "not compared (one run)"
    else:
        same = "yes" if all(np.array_equal(a, b) for a, b in zip(weights[0], weights[1])) else "no"
    print(f"{len(images)} images, {args.epochs} epochs per run, batches of {hp.batch_size}; medians: "
          + ", ".join(f"{name} {value:.1f} s" for name, value in medians.items())
          + f"; ratio {medians['one batch at a time'] / medians['in parallel']:.3f}")
    print(f"two runs one batch at a time ended with the same weights: {same}")
    print("reproduce: " + reproduce.command("bench.augment_map", argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
