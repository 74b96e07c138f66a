"""Benchmark a full pipeline run: wall time, peak memory, accuracy, model size and single-image latency.

    python -m bench.train_hhd --data-root /path/to/hhd_train [-- extra local_runner flags]
    python -m bench.train_hhd                     # the built-in generated data (what `make demo` runs)
    python -m bench.train_hhd --score-root /path/to/hhd_train   # make demo's model, scored on real letters

With ``--data-root``, the last 20 % of each class's form numbers are held out first (``bench/writer_split.py``:
other writers than the training ones), the pipeline trains on the rest, and ``pipeline.evaluate`` scores the
pushed model on the held-out writers through its image signature. ``--mix-generated N`` adds N generated
images per class to the training part; with ``--as-feedback`` the training letters go into a feedback store
instead (as ``letters-feedback import`` stores them), and the pipeline trains on them with the N generated letters
per class as its data root (the feedback loop: ``make demo``'s letters plus users' corrections).
``--train-share S`` trains on the first S of each class's training forms only (fewer writers; the held-out
writers stay the same): how well a small set of one's own letters does.
``--score-root DIR`` also scores the pushed model on every image of DIR (e.g. real letters, when the pipeline
trained on generated ones); DIR is never trained on: one that is, holds or lies in ``--data-root``, or holds the
picture of a letter the pipeline trains on (``core.image_io.pixel_digest``), is refused.

``--folds 0,1,2,3,4`` runs the whole pipeline once per writer fold instead (``bench/writer_split.py``'s blocks of
form numbers, each held out in turn, each run in its own pipeline root under ``--work``/fold-K) and pools the
held-out scores: every image of ``--data-root`` scored once by a pipeline that never saw its writer.

Runs ``local_runner.py`` in a fresh pipeline root (so nothing is cached) and without the web client's local
feedback store (``--with-feedback`` to include it), samples the resident memory of its whole process tree every
0.2 s, then loads the pushed model and times its image signature on one image.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import psutil

from bench import children, workdir
from core.signals import sigterm_as_interrupt
from bench.reproduce import command as reproduce_command
from bench.writer_split import class_files, held_out_files, held_out_names, parse_folds, share_flag, shared_pictures
from pipeline.flags import absolute, positive_int


def _runner_seed() -> int:
    """The training seed the runner used: LETTERS_SEED, which it reads from the environment, or the default."""
    from core.configs import Config
    return Config.from_env().seed


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc] + proc.children(recursive=True):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_with_peak_rss(cmd: list[str], log_path: Path) -> tuple[int, float, int]:
    """(exit status, wall seconds, peak RSS of its process tree) of ``cmd``; stopped with the bench (Ctrl-C,
    SIGTERM), it is stopped too."""
    started = time.monotonic()
    with open(log_path, "w") as log, children.started(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT) as proc:
        ps = psutil.Process(proc.pid)
        peak = 0
        stop = threading.Event()

        def sample():
            nonlocal peak
            while not stop.is_set():
                try:
                    peak = max(peak, tree_rss(ps))
                except psutil.Error:
                    pass
                stop.wait(0.2)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            code = proc.wait()
        finally:
            stop.set()
            thread.join()
    return code, time.monotonic() - started, peak


def dir_size(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def single_image_latency(model_dir: str, image: bytes, repeats: int = 50) -> float:
    import core  # noqa: F401
    import tensorflow as tf
    from core import configs
    fn = tf.saved_model.load(model_dir).signatures[configs.IMAGE_SIGNATURE]
    batch = tf.constant([image])
    for _ in range(5):
        fn(images=batch)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(images=batch)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def fewer_writers(train_root: Path, share: float) -> int:
    """Unlinks the files of ``train_root`` (a linked split) past the first ``share`` of each class's forms;
    returns how many are left."""
    from bench.writer_split import first_forms
    files = sorted(train_root.glob("*/*"))
    keep = first_forms([f"{f.parent.name}/{f.name}" for f in files], share)
    for path, kept in zip(files, keep):
        if not kept:
            path.unlink()
    return sum(keep)


def store_as_feedback(letters: Path, store_dir: Path) -> int:
    """Stores every image of ``letters`` (folder per class) in a new feedback store, as ``letters-feedback import``
    does; returns how many."""
    from core.feedback_import import import_folder
    summary = import_folder(store_dir, letters)
    if summary.skipped_count:
        raise ValueError(f"{summary.skipped_count} letters of {letters} could not be stored: {summary.skipped}")
    return summary.imported


def pooled(runs: list[dict]) -> dict:
    """The folds' held-out scores pooled: each image counts once, whichever fold held it out."""
    images = sum(r["val_images"] for r in runs)
    if not images:
        raise ValueError("no held-out image in any fold")
    return {f"val_unseen_writers_{m}": round(sum(r[f"val_unseen_writers_{m}"] * r["val_images"] for r in runs) / images, 4)
            for m in ("top1", "top3")} | {"val_images": images}


def trained_files(args, folds: list[int] | None) -> set[Path]:
    """The files of ``--data-root`` some run of ``folds`` (None: the default hold-out) trains on: all but those
    every run holds out."""
    if args.holdout_share <= 0:
        return set(class_files(args.data_root))
    held_out = set.intersection(*(held_out_files(args.data_root, args.holdout_share, fold=fold)
                                  for fold in folds or [None]))
    return set(class_files(args.data_root)) - held_out


@sigterm_as_interrupt()   # a stopped bench (timeout, kill) stops the pipeline run as Ctrl-C does
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=None, help="folder-per-class images (default: generated data)")
    parser.add_argument("--work", default=None, help="where to put the pipeline root and serving dir "
                                                     "(default: a new temporary folder)")
    parser.add_argument("--holdout-share", type=share_flag(none=True), default=0.2,
                        help="share of each class's writers held out for validation (0: none)")
    parser.add_argument("--train-share", type=float, default=1.0,
                        help="train on the first share of each class's training forms only, e.g. 0.04 "
                             "(with --data-root)")
    parser.add_argument("--mix-generated", type=positive_int, default=None, metavar="N",
                        help="generated images per class added to training (default: none)")
    parser.add_argument("--as-feedback", action="store_true",
                        help="the training letters as feedback (a fresh feedback store), the data root the "
                             "--mix-generated letters only (with --data-root and --mix-generated)")
    parser.add_argument("--with-feedback", action="store_true",
                        help="also train on the local feedback store, as local_runner.py does by default (off: "
                             "whatever the web client stored on this machine would change the measured data)")
    parser.add_argument("--score-root", default=None,
                        help="also score the pushed model on every image of this folder-per-class set (refused when "
                             "it is, holds or lies in --data-root, or holds a picture of a letter trained on)")
    parser.add_argument("--folds", default=None, metavar="K,K,…",
                        help="writer cross-validation: one pipeline run per fold (with --data-root), scores pooled")
    parser.add_argument("runner_args", nargs="*", help="extra local_runner.py flags (after --)")
    args = parser.parse_args(argv)
    # The runner runs in the project's folder: the folders given here are read from where the bench was started.
    args.data_root, args.score_root = (absolute(root) if root else root for root in (args.data_root, args.score_root))
    if not 0 < args.train_share <= 1:
        parser.error(f"--train-share must be in (0, 1], got {args.train_share}")
    if args.train_share < 1 and not (args.data_root and args.holdout_share > 0):
        parser.error("--train-share needs --data-root and a hold-out (its writers are the ones left out)")
    if args.as_feedback and not (args.data_root and args.mix_generated):
        parser.error("--as-feedback needs --data-root (the letters stored as feedback) and --mix-generated N "
                     "(the data root)")
    if args.mix_generated and not args.data_root:
        parser.error("--mix-generated needs --data-root (the letters the generated ones are mixed into)")
    if args.as_feedback and args.with_feedback:
        parser.error("--as-feedback trains on its own feedback store, not the local one: drop --with-feedback")
    if args.data_root and args.holdout_share > 0:
        problem = held_out_names(args.data_root)
        if problem:
            parser.error(problem)
    elif args.data_root and not os.path.isdir(args.data_root):
        parser.error(f"the data root {args.data_root} is not a folder")
    try:
        folds = None if args.folds is None else parse_folds(args.folds, args.holdout_share)
    except ValueError as e:
        parser.error(f"--folds: {e}")
    if folds and not args.data_root:
        parser.error("--folds needs --data-root (the folds are of its writers)")
    if args.score_root and not os.path.isdir(args.score_root):   # said now, not after the pipeline has run
        parser.error(f"--score-root {args.score_root} is not a folder")
    if args.score_root:
        from pipeline.evaluate import layout_problem
        problem = layout_problem(args.score_root)
        if problem:
            parser.error(f"--score-root: {problem}")
    if args.score_root and args.data_root:
        problem = shared_pictures(args.score_root, args.data_root, trained_files(args, folds))
        if problem:
            parser.error(f"--score-root would score letters the pipeline trains on (of --data-root): {problem}")
    try:   # --work's pipeline/ and serving/ are emptied before each run: never a folder this bench did not make
        work = workdir.claim(args.work, "bench.train_hhd", protect=[args.data_root] if args.data_root else []) \
            if args.work else \
            Path(tempfile.mkdtemp(prefix="letters-bench-"))
    except ValueError as err:
        parser.error(f"--work: {err}")
    reproduce = reproduce_command("bench.train_hhd", argv, python=sys.executable)   # LETTERS_SEED … too
    if folds is None:
        return run(args, work, None, reproduce)
    runs = []
    for fold in folds:
        print(f"fold {fold}: writers of block {fold} held out", flush=True)
        code = run(argparse.Namespace(**vars(args)), work / f"fold-{fold}", fold, reproduce)
        if code != 0:
            return code
        run_result = json.loads((work / f"fold-{fold}" / "bench.json").read_text())
        if "val_unseen_writers_top1" not in run_result:
            print(f"fold {fold}: the pipeline pushed no model (blessed: {run_result.get('blessed')}), so its held-out "
                  f"writers were not scored; log: {work / f'fold-{fold}' / 'run.log'}")
            return 1
        runs.append(run_result)
    result = {"folds": folds, **pooled(runs),
              "per_fold_top1": [r["val_unseen_writers_top1"] for r in runs],
              "wall_seconds": [r["wall_seconds"] for r in runs]}
    print("writer cross-validation of the pipeline, pooled:", json.dumps(result, indent=2))
    print("reproduce:", reproduce)
    (work / "bench.json").write_text(json.dumps(result, indent=2))
    return 0


def run(args, work: Path, fold: int | None, reproduce: str) -> int:
    """One pipeline run (holding out fold ``fold`` of the writers, or the default last block), measured."""
    work.mkdir(parents=True, exist_ok=True)
    original_root, val_root = args.data_root, None
    if args.data_root and (args.holdout_share > 0 or args.mix_generated):
        # A linked copy under work/ (never the user's folder): holds the hold-out out, takes generated letters in.
        from bench.writer_split import writer_split
        counts = writer_split(args.data_root, str(work / "split"), args.holdout_share, fold=fold)
        print(f"writer hold-out: train {counts['train']}, val {counts['val']} files", flush=True)
        args.data_root = str(work / "split" / "train")
        if args.train_share < 1:
            kept = fewer_writers(Path(args.data_root), args.train_share)
            print(f"training on the first {args.train_share:g} of each class's forms: {kept} files", flush=True)
        val_root = str(work / "split" / "val") if args.holdout_share > 0 else None
    feedback_store = None
    if args.data_root and args.mix_generated:
        from pipeline import generate_letters
        gen = work / "generated"
        generate_letters.generate(gen, args.mix_generated, seed=4321, progress=False)
        if args.as_feedback:
            feedback_store = work / "feedback_store"
            shutil.rmtree(feedback_store, ignore_errors=True)   # a new store each run: this run's training letters
            stored = store_as_feedback(Path(args.data_root), feedback_store)
            print(f"the training letters stored as feedback: {stored} in {feedback_store}", flush=True)
            args.data_root = str(gen)
        else:
            for path in gen.glob("*/*.png"):
                target = Path(args.data_root) / path.parent.name / ("gen_" + path.name)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(path.resolve(), target)
    summary_path = work / "summary.json"
    for old in (work / "pipeline", work / "serving"):   # a fresh pipeline root: nothing cached, no earlier baseline
        shutil.rmtree(old, ignore_errors=True)           # (a --work used before would time a cache hit)
    cmd = [sys.executable, str(ROOT / "local_runner.py"), "--pipeline-root", str(work / "pipeline"),
           "--serving-dir", str(work / "serving"), "--summary-json", str(summary_path), *args.runner_args]
    if feedback_store is not None:
        cmd += ["--feedback-dir", str(feedback_store)]
    elif not args.with_feedback:
        cmd.append("--no-feedback")
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    print("running:", shlex.join(cmd), flush=True)
    code, wall, peak = run_with_peak_rss(cmd, work / "run.log")
    if code != 0:
        print(f"pipeline failed (exit {code}); log: {work / 'run.log'}")
        return code
    summary = json.loads(summary_path.read_text())
    overall = summary.get("evaluation", {}).get("overall", {})
    result = {
        "data_root": original_root or "generated",
        "seed": _runner_seed(),
        "wall_seconds": round(wall, 1),
        "peak_rss_mib": round(peak / 2**20),
        "train_seconds": summary.get("training", {}).get("train_seconds"),
        "epochs": summary.get("training", {}).get("epochs"),
        "steps": summary.get("training", {}).get("steps"),
        "examples": summary.get("examples_per_split"),
        "eval_top1": overall.get("sparse_categorical_accuracy"),
        "eval_top3": overall.get("sparse_top_k_categorical_accuracy"),
        "blessed": summary.get("blessed"),
        "pushed_version": summary.get("pushed_version"),
    }
    model_dir = summary.get("pushed_destination")
    if model_dir and summary.get("pushed") and val_root:
        from pipeline.evaluate import evaluate
        report = evaluate(model_dir, val_root, str(work / "report"), progress=False)
        result["val_unseen_writers_top1"] = round(report["top1"], 4)
        result["val_unseen_writers_top3"] = round(report["top3"], 4)
        result["val_images"] = report["examples"]
        result["val_report"] = str(work / "report")
    if model_dir and summary.get("pushed") and args.score_root:
        from pipeline.evaluate import evaluate, lowest_recall
        report = evaluate(model_dir, args.score_root, str(work / "score_report"), progress=False)
        weakest = lowest_recall({n: m["recall"] for n, m in report["per_class"].items()}, 6)
        result.update({"score_root": args.score_root, "score_images": report["examples"],
                       "score_top1": round(report["top1"], 4), "score_top3": round(report["top3"], 4),
                       "score_lowest_recall": {n: round(r, 2) for n, r in weakest},
                       "score_report": str(work / "score_report")})
    if model_dir and summary.get("pushed"):
        from core.configs import Config
        first_image = next(Path(args.data_root or Config.from_env().data_root).glob("*/*.png"), None)
        result["model_mib"] = round(dir_size(model_dir) / 2**20, 2)
        if first_image is not None:
            result["single_image_ms"] = round(single_image_latency(model_dir, first_image.read_bytes()) * 1000, 2)
    print(json.dumps(result, indent=2))
    print("reproduce:", reproduce)
    (work / "bench.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
