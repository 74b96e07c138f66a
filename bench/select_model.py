"""Compare training settings on writers the model never saw, quickly and without the pipeline.

    python -m bench.select_model --data-root /path/to/hhd_train
    python -m bench.select_model --data-root /path/to/hhd_train --seeds 42,2 --set epochs=60 --set conv_widths=32,64,128,256
    python -m bench.select_model --data-root /path/to/hhd_train --train-share 0.6   # a learning-curve point
    python -m bench.select_model --data-root /path/to/hhd_train --folds 0,1,2,3,4   # writer cross-validation
    python -m bench.select_model --data-root /path/to/hhd_train --seeds 42,2,3 --distil 0.7   # ensemble → one network
    python -m bench.select_model --data-root /path/to/hhd_train --folds 0,1 --extra-root /tmp/gen   # + generated letters
    python -m bench.select_model --data-root /path/to/hhd_train --folds 0,1,2,3,4 --pretrain-root /tmp/gen   # then fine-tune

The data root is split by writer (``bench/writer_split.py``: the last 20 % of each class's form numbers are
validation), both parts go through the pipeline's own Transform graph (``models.preprocessing``, cached as
.npz under ``--cache``), and the model is built, augmented and compiled exactly as the Trainer does
(``models.trainer.augment`` / ``compiled_model``) with the Config's settings plus ``--set FIELD=VALUE``
overrides. Validation top-1/top-3 is printed every 5 epochs, and the median over ``--seeds`` at the end:
seeds move a single result by about ±1 point on 792 validation images, so compare medians.
Use this to choose settings; ``bench/train_hhd.py`` then measures the chosen ones through the real pipeline.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)
import numpy as np
import tensorflow as tf

from bench.writer_split import (first_forms, held_out_files, held_out_names, parse_folds, share_flag,
                                shared_pictures, writer_split)
from bench import reproduce
from bench.letter_folders import letters_folder
from models import preprocessing, trainer
from pipeline import evaluate
from core import configs
from pipeline.code_fingerprint import fingerprint
from pipeline.flags import int_list, non_negative_int, output_file
from pipeline.pipeline import TRAINING_FIELDS
from core.labels import CLASS_NAMES, NUM_CLASSES


def load_split(root: Path, image_size: int, cache_dir: Path,
               train_share: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Folder-per-class images, checked as the pipeline checks them (pipeline.evaluate.load_labelled_images)
    → (transformed images [N, S, S, 1], labels [N]); cached by content and image size. ``train_share`` < 1 keeps
    only the first share of each class's forms (fewer writers)."""
    items, skipped = evaluate.load_labelled_images(str(root))
    if train_share < 1:
        keep = first_forms([rel for rel, _, _ in items], train_share)
        items = [item for item, kept in zip(items, keep) if kept]
    if not items:
        raise ValueError(f"no images in the class folders of {root}" + (f" ({len(skipped)} files skipped)"
                                                                        if skipped else ""))
    if skipped:
        print(f"{root.name}: skipped {len(skipped)} files, e.g. {skipped[0][0]}: {skipped[0][1]}")
    digest = hashlib.sha256(str(image_size).encode() + Path(preprocessing.__file__).read_bytes())
    for _, label, data in items:
        digest.update(bytes([label]) + hashlib.sha256(data).digest())
    cache = cache_dir / f"{root.name}-{digest.hexdigest()[:16]}.npz"
    if cache.exists():
        data = np.load(cache)
        return data["x"], data["y"]
    labels = np.array([label for _, label, _ in items])
    chunks = []
    for start in range(0, len(items), 256):
        batch = tf.constant([data for _, _, data in items[start:start + 256]])
        chunks.append(preprocessing.images_to_ink(batch, image_size).numpy())
        print(f"\rpreprocessing {root.name}: {min(start + 256, len(items))}/{len(items)}", end="", flush=True)
    print()
    images = np.concatenate(chunks)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(cache, x=images, y=labels)
    return images, labels


class Distiller(tf.keras.Model):
    """Trains ``student`` towards ``alpha`` × the teachers' averaged answer on the same augmented batch plus
    (1 − ``alpha``) × the labels: the averaged ensemble distilled into one network of the served size."""

    def __init__(self, student: tf.keras.Model, teachers: list, alpha: float):
        super().__init__()
        for teacher in teachers:
            teacher.trainable = False
        self.student, self.teachers, self.alpha = student, teachers, alpha

    def call(self, images, training=False):
        return self.student(images, training=training)

    def train_step(self, data):
        images, labels = data
        ensemble = tf.add_n([teacher(images, training=False) for teacher in self.teachers]) / len(self.teachers)
        targets = self.alpha * ensemble + (1.0 - self.alpha) * labels
        with tf.GradientTape() as tape:
            answers = self(images, training=True)
            loss = self.compute_loss(images, targets, answers)
        self.optimizer.minimize(loss, self.student.trainable_variables, tape=tape)
        return self.compute_metrics(images, labels, answers, None)


def fit_model(hp: configs.Config, train, val, teachers: list | None = None, alpha: float = 0.0,
              keep_metrics: bool = False, start_weights: list | None = None, name: str = ""):
    """Trains one network as the Trainer does (distilled from ``teachers`` when given; from ``start_weights``
    instead of a random start when given: fine-tuning) and scores ``val`` every 5 epochs; (model, its record).
    The record's ``seconds`` are the training's alone; the scorings so far took ``score_seconds`` more.
    With ``keep_metrics`` the record also holds the last scoring's full metrics
    (``pipeline.evaluate.compute_metrics``: per class, confusion matrix) as ``metrics``."""
    (x_train, y_train), (x_val, y_val) = train, val
    tf.keras.utils.set_random_seed(hp.seed)
    ds = tf.data.Dataset.from_tensor_slices((x_train, tf.one_hot(y_train, NUM_CLASSES)))
    ds = ds.shuffle(len(x_train), seed=hp.seed, reshuffle_each_iteration=True).batch(hp.batch_size)
    ds = trainer.augmented(ds, hp).prefetch(tf.data.AUTOTUNE)
    budget = configs.config_budget(len(x_train), hp)   # the Trainer's rule when epochs=0
    name = (name or f"seed {hp.seed}") + (f", distilled from {len(teachers)} (alpha {alpha:g})" if teachers else "")
    print(f"  {name}: {budget.describe()}", flush=True)
    hp = hp.replace(epochs=budget.epochs)
    model = trainer.compiled_model(hp, steps=budget.steps)
    if start_weights is not None:
        model.set_weights(start_weights)
    if teachers:
        student = model
        model = Distiller(student, teachers, alpha)
        model.compile(optimizer=student.optimizer, loss=student.loss, metrics=["accuracy"])
    started = time.monotonic()
    history = []
    last = {"score_seconds": 0.0}

    class Report(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if (epoch + 1) % 5 and epoch + 1 != hp.epochs:
                return
            scoring = time.monotonic()
            metrics = evaluate.compute_metrics(y_val, model.predict(x_val, batch_size=256, verbose=0))
            now = time.monotonic()
            last["score_seconds"] += now - scoring
            last["metrics"] = metrics
            history.append({"epoch": epoch + 1, "top1": metrics["top1"], "top3": metrics["top3"],
                            "seconds": round(now - started - last["score_seconds"], 1),
                            "score_seconds": round(last["score_seconds"], 1)})
            print(f"  {name} epoch {epoch + 1:3d}: top-1 {history[-1]['top1']:.4f} "
                  f"top-3 {history[-1]['top3']:.4f} ({history[-1]['seconds']:.0f} s of training)", flush=True)

    model.fit(ds, epochs=hp.epochs, verbose=0, callbacks=[Report()])
    network = model.student if teachers else model
    matrix = last["metrics"]["confusion_matrix"]
    record = {"seed": hp.seed, **history[-1], "parameters": int(network.count_params()), "history": history,
              "hits": {n: matrix[i][i] for i, n in enumerate(CLASS_NAMES)},
              "support": {n: sum(matrix[i]) for i, n in enumerate(CLASS_NAMES)}}
    if keep_metrics:
        record["metrics"] = last["metrics"]
    return network, record


def pretrained_weights(args, hp: configs.Config, pretrain, val) -> list:
    """The weights of the network trained on ``pretrain`` (images, labels) alone for ``--pretrain-epochs`` with
    ``hp``'s seed (``val`` is scored every 5 epochs, as always). Cached under ``--cache`` by the images, settings, seed
    and training code, so every fold (and a second process) starts from the same network."""
    hp = hp.replace(epochs=args.pretrain_epochs)
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(hp), sort_keys=True).encode())
    digest.update(fingerprint("models.trainer").encode())   # a change to the training code trains it again
    for part in pretrain:
        digest.update(np.ascontiguousarray(part).tobytes())
    cache = Path(args.cache) / f"pretrained-{digest.hexdigest()[:16]}.npz"
    if cache.exists():
        data = np.load(cache)
        print(f"  seed {hp.seed}: pretrained network read from {cache}", flush=True)
        return [data[f"w{i}"] for i in range(len(data.files))]
    model, _ = fit_model(hp, pretrain, val, name=f"seed {hp.seed} pretraining on {len(pretrain[1])} images")
    weights = model.get_weights()
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".partial.npz")   # written whole, then renamed: a reader never sees half a file
    np.savez(partial, **{f"w{i}": w for i, w in enumerate(weights)})
    partial.replace(cache)
    return weights


def train_once(hp: configs.Config, train, val, keep_metrics: bool = False) -> dict:
    return fit_model(hp, train, val, keep_metrics=keep_metrics)[1]


def ensemble_scores(models: list, val) -> dict:
    """Top-1/top-3 of the models' averaged probabilities."""
    x_val, y_val = val
    averaged = np.mean([m.predict(x_val, batch_size=256, verbose=0) for m in models], axis=0)
    metrics = evaluate.compute_metrics(y_val, averaged)
    return {"top1": metrics["top1"], "top3": metrics["top3"], "members": len(models)}


def run_fold(args, hp: configs.Config, fold: int | None, seeds: list[int], extra=None, pretrain=None) -> dict:
    """Split off one block of writers (the last one when ``fold`` is None), train once per seed, score it.
    ``extra`` (images, labels) is appended to the training split only; with ``pretrain`` (images, labels) each
    seed's network is first trained on those alone, scored as it is, then fine-tuned on the training split."""
    with tempfile.TemporaryDirectory() as tmp:
        counts = writer_split(args.data_root, tmp, args.holdout_share, fold=fold)
        label = "writer hold-out" if fold is None else f"writer hold-out, fold {fold}"
        print(f"{label}: train {counts['train']}, val {counts['val']} files")
        train = load_split(Path(tmp) / "train", hp.image_size, Path(args.cache), args.train_share)
        if args.train_share < 1:
            print(f"training on the first {args.train_share:g} of each class's forms: {len(train[1])} images")
        val = load_split(Path(tmp) / "val", hp.image_size, Path(args.cache))
    extra_images = 0 if extra is None else len(extra[1])
    if extra_images:
        train = tuple(np.concatenate(parts) for parts in zip(train, extra))
        print(f"training on {len(train[1])} images: {extra_images} extra from {args.extra_root}")
    teachers, runs = [], []
    for seed in seeds:
        start, pretrained = None, {}
        if pretrain is not None:
            start = pretrained_weights(args, hp.replace(seed=seed), pretrain, val)
            scored = trainer.compiled_model(hp, steps=1)
            scored.set_weights(start)
            metrics = evaluate.compute_metrics(val[1], scored.predict(val[0], batch_size=256, verbose=0))
            pretrained = {"pretrained_top1": metrics["top1"], "pretrained_top3": metrics["top3"]}
            print(f"  seed {seed}: the pretrained network alone on these writers: top-1 {metrics['top1']:.4f} "
                  f"top-3 {metrics['top3']:.4f}; fine-tuning", flush=True)
        model, record = fit_model(hp.replace(seed=seed), train, val, start_weights=start)
        runs.append({"fold": fold, **record, **pretrained})
        if args.distil:   # the networks are kept only to be averaged and distilled
            teachers.append(model)
    result = {"fold": fold, "train_images": len(train[1]), "extra_images": extra_images, "val_images": len(val[1]),
              "median_top1": statistics.median(r["top1"] for r in runs),
              "median_top3": statistics.median(r["top3"] for r in runs), "runs": runs}
    if pretrain is not None:
        for metric in ("top1", "top3"):
            result[f"median_pretrained_{metric}"] = statistics.median(r[f"pretrained_{metric}"] for r in runs)
    if args.distil:
        result["ensemble"] = ensemble_scores(teachers, val)
        print(f"  the {len(teachers)} seeds averaged: top-1 {result['ensemble']['top1']:.4f} "
              f"top-3 {result['ensemble']['top3']:.4f}", flush=True)
        _, record = fit_model(hp.replace(seed=args.student_seed), train, val, teachers, args.distil)
        result["student"] = {"fold": fold, **record}
    return result


def pooled_recall(runs: list[dict]) -> dict:
    """Each class's recall over all the runs' held-out images (hits / images), None for a class never held out."""
    return {name: (sum(r["hits"][name] for r in runs) / support if support else None)
            for name in CLASS_NAMES for support in [sum(r["support"][name] for r in runs)]}


def recall_line(recall: dict, lowest: int = 8) -> str:
    return "recall per class over the runs, lowest first: " + ", ".join(
        f"{n} {r:.3f}" for n, r in evaluate.lowest_recall(recall, lowest))


def distil_line(ensemble: dict, student: dict, alpha: float) -> str:
    return (f"averaged ensemble of the seeds: top-1 {ensemble['top1']:.4f}, top-3 {ensemble['top3']:.4f}; "
            f"distilled into one network (alpha {alpha:g}): top-1 {student['top1']:.4f}, top-3 {student['top3']:.4f}")


def config_with(pairs: list[str]) -> configs.Config:
    """The Config from the environment with ``FIELD=VALUE`` overrides (parsed as LETTERS_<FIELD> would be)."""
    fields = set(configs.ENV)   # the fields a LETTERS_<FIELD> sets
    environ = dict(os.environ)
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or name not in fields:
            raise SystemExit(f"--set wants FIELD=VALUE with a core.configs.Config field, got {pair!r}")
        environ[f"LETTERS_{name.upper()}"] = raw
    try:
        return configs.Config.from_env(environ)
    except ValueError as e:
        raise SystemExit(f"--set: {e}") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="folder-per-class images named <class>_<form>.<ext>")
    parser.add_argument("--holdout-share", type=share_flag(), default=0.2)
    parser.add_argument("--folds", default=None,
                        help="comma-separated blocks of forms to hold out in turn (bench/writer_split.py --fold; "
                             "0..4 with the default share): a writer-grouped cross-validation. Default: the last "
                             "block only")
    parser.add_argument("--seeds", type=int_list(0), default=[42], help="comma-separated training seeds")
    parser.add_argument("--train-share", type=float, default=1.0,
                        help="train on the first share of each class's training forms only (fewer writers; the "
                             "validation part is unchanged): points of a learning curve")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a core.configs.Config field (repeatable), e.g. epochs=40")
    parser.add_argument("--distil", type=float, default=0.0, metavar="ALPHA",
                        help="after the seeds, score their averaged ensemble and train one more network (seed "
                             "--student-seed) towards ALPHA × the ensemble's answer on each augmented batch + "
                             "(1 − ALPHA) × the labels, e.g. 0.7; 0 = off")
    parser.add_argument("--student-seed", type=non_negative_int, default=7, help="the distilled network's seed")
    parser.add_argument("--extra-root", default=None, metavar="DIR", type=letters_folder,
                        help="folder-per-class images (e.g. from python -m pipeline.generate_letters) appended to "
                             "every fold's training split, never to validation (refused when it is, holds or lies "
                             "in --data-root, or holds a picture of a held-out letter)")
    parser.add_argument("--pretrain-root", default=None, metavar="DIR", type=letters_folder,
                        help="folder-per-class images (e.g. generated letters) each seed's network is trained on "
                             "first, for --pretrain-epochs, before the usual training on each fold starts from it "
                             "(refused as --extra-root is)")
    parser.add_argument("--pretrain-epochs", type=int, default=12, help="epochs of pretraining (default: 12)")
    parser.add_argument("--cache", default=str(ROOT / "outputs" / "select_model_cache"))
    parser.add_argument("--json", default=None, type=output_file,
                        help="also write the results here (its folder checked before any training)")
    args = parser.parse_args(argv)

    if not 0 < args.train_share <= 1:
        parser.error(f"--train-share must be in (0, 1], got {args.train_share}")
    if not 0 <= args.distil <= 1:
        parser.error(f"--distil must be in [0, 1], got {args.distil}")
    problem = held_out_names(args.data_root)   # before any training: the hold-out needs HHD-like names
    if problem:
        parser.error(problem)
    try:   # every fold is checked before the first one trains
        folds = [None] if args.folds is None else parse_folds(args.folds, args.holdout_share)
    except ValueError as err:
        parser.error(f"--folds: {err}")
    seeds = args.seeds
    hp = config_with(args.set)
    if args.distil and len(seeds) < 2:
        parser.error("--distil wants at least two --seeds to average")
    if args.pretrain_epochs < 1:
        parser.error(f"--pretrain-epochs must be at least 1, got {args.pretrain_epochs}")

    held_out = set().union(*(held_out_files(args.data_root, args.holdout_share, fold=fold) for fold in folds))
    for flag, root in (("--extra-root", args.extra_root), ("--pretrain-root", args.pretrain_root)):
        problem = root and shared_pictures(root, args.data_root, held_out)
        if problem:
            parser.error(f"{flag} would train on letters of the held-out writers of --data-root: {problem}")

    def images_of(flag: str, root: str | None):
        try:
            return load_split(Path(root), hp.image_size, Path(args.cache)) if root else None
        except ValueError as err:
            parser.error(f"{flag}: {err}")

    extra = images_of("--extra-root", args.extra_root)
    pretrain = images_of("--pretrain-root", args.pretrain_root)
    per_fold = [run_fold(args, hp, fold, seeds, extra, pretrain) for fold in folds]
    runs = [run for fold in per_fold for run in fold["runs"]]
    result = {
        "settings": {k: v for k, v in dataclasses.asdict(hp).items() if k in TRAINING_FIELDS},
        "train_share": args.train_share,
        "median_seconds": statistics.median(r["seconds"] for r in runs),
        "runs": runs,
        "recall": pooled_recall(runs),
    }
    if len(folds) == 1:
        fold = per_fold[0]
        result.update(train_images=fold["train_images"], extra_images=fold["extra_images"],
                      median_top1=fold["median_top1"], median_top3=fold["median_top3"])
        print(f"median over seeds {seeds}: top-1 {fold['median_top1']:.4f}, top-3 {fold['median_top3']:.4f}, "
              f"training {result['median_seconds']:.0f} s, {runs[0]['parameters']:,} parameters")
        if args.distil:
            result.update(ensemble=fold["ensemble"], student=fold["student"])
            print(distil_line(fold["ensemble"], fold["student"], args.distil)
                  + f" in {fold['student']['seconds']:.0f} s")
    else:
        # Each fold's median over seeds, weighted by its held-out images: every image of the data counts once.
        total = sum(f["val_images"] for f in per_fold)
        result["folds"] = [{k: v for k, v in f.items() if k != "runs"} for f in per_fold]
        for metric in ("top1", "top3"):
            result[f"cv_{metric}"] = sum(f[f"median_{metric}"] * f["val_images"] for f in per_fold) / total
        print(f"writer cross-validation, folds {args.folds}, medians over seeds {seeds}: top-1 "
              f"{result['cv_top1']:.4f}, top-3 {result['cv_top3']:.4f} on {total} held-out images; per fold top-1 "
              + ", ".join(f"{f['fold']}: {f['median_top1']:.4f}" for f in per_fold)
              + f"; training {result['median_seconds']:.0f} s per run")
        if args.distil:
            for part in ("ensemble", "student"):
                for metric in ("top1", "top3"):
                    result[f"cv_{part}_{metric}"] = sum(f[part][metric] * f["val_images"] for f in per_fold) / total
            print(distil_line({m: result[f"cv_ensemble_{m}"] for m in ("top1", "top3")},
                              {m: result[f"cv_student_{m}"] for m in ("top1", "top3")}, args.distil))
    if pretrain is not None:
        total = sum(f["val_images"] for f in per_fold)
        for metric in ("top1", "top3"):
            result[f"pretrained_{metric}"] = sum(f[f"median_pretrained_{metric}"] * f["val_images"]
                                                 for f in per_fold) / total
        result["pretrain"] = {"root": args.pretrain_root, "images": len(pretrain[1]), "epochs": args.pretrain_epochs}
        print(f"the pretrained networks alone ({len(pretrain[1])} images, {args.pretrain_epochs} epochs) on the same "
              f"held-out writers: top-1 {result['pretrained_top1']:.4f}, top-3 {result['pretrained_top3']:.4f}; "
              "the scores above are after fine-tuning")
    print(recall_line(result["recall"]))
    print("reproduce: " + reproduce.command("bench.select_model", argv))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
