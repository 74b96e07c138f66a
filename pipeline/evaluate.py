"""Score a pushed model on a folder of images through its image-bytes signature, each image as a viewer shows it.

    letters-evaluate --model serving/models/letters --data-root DIR [--out DIR]

``--model`` is a serving directory (its highest integer version is used) or one version directory.
``--data-root`` is any ``<class_folder>/<image>`` folder; one with a folder named as a class that has no folder
(``Gimel``, ``Pe-Final``) is refused, as the pipeline refuses it, and so is one with a class folder it cannot read
(its images would not be scored). Writes ``metrics.json`` (top-1, top-3, per-class
precision/recall/F1, confusion matrix), ``confusion_matrix.png`` and ``worst_errors.png`` into ``--out``, a folder outside
``--data-root``. The images are read a batch at a time, as the model answers them (the few on the contact sheet
again at the end), so a large folder is never all in memory.

Each image is read as the pipeline's ExampleGen and the web client read it (``core.image_io.read_checked``): the
model gets it as a viewer shows it (an EXIF orientation turned upright, a transparent GIF's background as alpha,
the other images ``tf.io.decode_image`` reads otherwise re-encoded; most files go as they are), which a direct
REST or gRPC call with such a file's raw bytes does not (serving/README.md).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)
from core import configs, image_io, settings
from core.files import NOT_UTF8, atomic_outputs, cannot_read, make_dirs, printable, utf8
from core.signals import interrupts_held, sigterm_as_interrupt
from core.model_dirs import resolve_model_dir
from pipeline.flags import defaults_from_env, non_negative_int, output_dir
from core.labels import CLASS_INDEX, CLASS_NAMES, NUM_CLASSES, misnamed_problem
from core.manifest import unfinished_generation


class Limits(NamedTuple):
    """The file limits an image is read with: the pipeline's (Config.max_file_bytes, Config.max_image_pixels,
    LETTERS_MAX_FILE_BYTES and LETTERS_MAX_IMAGE_PIXELS), so that what it trains on is read here too."""
    max_bytes: int = image_io.DEFAULT_MAX_BYTES
    max_pixels: int = image_io.DEFAULT_MAX_PIXELS

    @classmethod
    def of(cls, config: configs.Config) -> "Limits":
        return cls(config.max_file_bytes, config.max_image_pixels)


DEFAULT_LIMITS = Limits()
FILE_LIMITS = ("max_file_bytes", "max_image_pixels")   # the Config fields of Limits


def listing(folder) -> list[tuple[Path, bool]]:
    """(entry, whether it is a folder) for each name in the folder ``folder``, sorted; ValueError (``cannot read
    <folder>: <reason>``) when it cannot be listed, or its entries looked at (no permission)."""
    try:
        return [(path, path.is_dir()) for path in sorted(Path(folder).iterdir())]
    except OSError as err:
        raise ValueError(cannot_read(folder, err)) from None


def labelled_files(data_root: str) -> tuple[list[tuple[str, int, Path]], list[tuple[str, str]]]:
    """([(relative path, label, path)], [(relative path, why skipped)]) for every file under data_root, nothing read:
    the files of the class folders; everything else (files beside the class folders, folders inside them, unknown
    class folders, names that are not UTF-8) is listed as skipped, with the reason. Hidden names and the generator's manifest are left out.
    A class folder that cannot be read is a ValueError (its images would not be scored), as is ``data_root``."""
    root = Path(data_root)
    items, skipped = [], []
    if not root.is_dir():
        return items, skipped
    for folder, is_folder in listing(root):
        if folder.name.startswith("."):
            continue
        if folder.name == configs.GENERATED_MANIFEST and folder.is_file():   # the generator's record, not an image
            continue
        if not is_folder:
            skipped.append((printable(folder.name), "not in a class folder"))
            continue
        try:
            paths = listing(folder)
        except ValueError as err:
            if folder.name in CLASS_INDEX:   # skipped, its class would be scored on the other folders' answers only
                raise ValueError(f"{err} (a class folder: its images would not be scored)") from None
            skipped.append((printable(folder.name) + "/", "unknown class folder"))
            continue
        for path, inner in paths:
            if path.name.startswith("."):
                continue
            rel = printable(f"{folder.name}/{path.name}")   # a name that is not UTF-8 shown, not fatal
            if folder.name not in CLASS_INDEX:
                skipped.append((rel, "unknown class folder"))
            elif inner:
                skipped.append((rel, "a folder inside a class folder (not read)"))
            elif not utf8(path.name):   # as the ExampleGen skips it: never trained on, so not scored either
                skipped.append((rel, NOT_UTF8))
            else:
                items.append((rel, CLASS_INDEX[folder.name], path))
    return items, skipped


def folder_names(data_root: str) -> set[str]:
    """The names of ``data_root``'s folders that hold anything, a hidden file too: the folders whose names the
    ExampleGen's layout check reads (``<root>/*/*``, hidden names included; an unreadable folder lists nothing).
    ``data_root`` itself unreadable is a ValueError (:func:`listing`)."""
    names = set()
    for folder, is_folder in listing(data_root):
        try:
            if is_folder and any(folder.iterdir()):
                names.add(folder.name)
        except OSError:
            continue
    return names


def layout_problem(data_root: str) -> str | None:
    """Why the folder ``data_root`` is refused before any image is read, as the pipeline refuses it: a generation
    that did not finish, or a folder named as a class that has no folder (``Gimel``: core.labels.misnamed_problem),
    whose images would be skipped and that class left out of the score. None when there is nothing to refuse."""
    return unfinished_generation(data_root) or misnamed_problem(data_root, folder_names(data_root))


def load_labelled_images(data_root: str, limits: Limits = DEFAULT_LIMITS
                          ) -> tuple[list[tuple[str, int, bytes]], list[tuple[str, str]]]:
    """([(relative path, label, bytes)], [(relative path, why skipped)]): :func:`labelled_files`, every image read
    at once (unreadable files, broken links skipped, with the reason)."""
    files, skipped = labelled_files(data_root)
    items = []
    for rel, label, path in files:
        data, err = read_image(path, limits)
        if err is None:
            items.append((rel, label, data))
        else:
            skipped.append((rel, unread_reason(err)))
    return items, skipped


def read_image(path, limits: Limits = DEFAULT_LIMITS) -> tuple[bytes | None, Exception | None]:
    """(the checked image's bytes, None), or (None, the ImageRejected or OSError that kept it from being read)."""
    try:
        return image_io.read_checked(str(path), limits.max_bytes, limits.max_pixels).data, None
    except (image_io.ImageRejected, OSError) as err:
        return None, err


def read_batches(paths: list, batch_size: int, limits: Limits = DEFAULT_LIMITS):
    """``paths`` read ``batch_size`` at a time, as the caller asks for the next batch (so only one batch's bytes
    are held): each batch a list of :func:`read_image` pairs."""
    for start in range(0, len(paths), batch_size):
        yield [read_image(path, limits) for path in paths[start:start + batch_size]]


def unread_reason(err: Exception) -> str:
    """Why a file was not scored, from :func:`read_image`'s error."""
    if isinstance(err, image_io.ImageRejected):
        return str(err)
    return f"unreadable: {type(err).__name__}: {err.strerror or err}"


REPORT_FILES = ("metrics.json", "confusion_matrix.png", "worst_errors.png")


class ReportNotWritten(Exception):
    """The report's files could not be written into its folder (a full disk, no permission): none was replaced."""


def report_problem(out_dir: str) -> str | None:
    """Why the report cannot replace its files in ``out_dir`` (a folder in a file's place), said before the work."""
    for name in REPORT_FILES:
        if os.path.isdir(os.path.join(out_dir, name)):
            return (f"{printable(os.path.join(out_dir, name))} is a folder, where the report writes its {name}; "
                    "move it or give another --out")
    return None


class ImageRefused(Exception):
    """The model refused a batch: an image in it that its decoder cannot read (one the image check let through)."""


def answers_each(call, images: list) -> list:
    """[(answer, None) or (None, why)] per image: ``call(images)`` gives one answer per image or raises
    :class:`ImageRefused`; a refused batch is asked again one image at a time, so an image the model cannot read
    costs its own answer only."""
    try:
        return [(answer, None) for answer in call(images)]
    except ImageRefused as err:
        if len(images) == 1:
            return [(None, f"refused by the model: {err}")]
    return [pair for image in images for pair in answers_each(call, [image])]


def signature_call(fn):
    """``images`` (encoded) → their probabilities from a loaded image signature; ImageRefused with the
    decoder's words where TensorFlow refuses an image."""
    import tensorflow as tf
    from serving.status import runtime_message

    def call(images: list[bytes]) -> np.ndarray:
        try:
            return fn(**{configs.IMAGE_INPUT: tf.constant(images)})[configs.PROBABILITIES_OUTPUT].numpy()
        except tf.errors.InvalidArgumentError as err:
            raise ImageRefused(runtime_message(err.message).splitlines()[0]) from None
    return call


def model_folder(model: str, version: int | None = None) -> str:
    """The version folder :func:`core.model_dirs.resolve_model_dir` finds for ``model``; a serving directory that
    cannot be listed is a ValueError naming it (``cannot read the model in <model>: Permission denied``)."""
    try:
        return resolve_model_dir(model, version=version)
    except FileNotFoundError:   # its words name what is missing
        raise
    except OSError as err:
        raise ValueError(f"cannot read the model in {printable(model)}: {err.strerror or err}") from None


def load_image_signature(model_dir: str):
    """The ``predict_images`` function of the SavedModel in ``model_dir``; ValueError, in one line, for a model
    that cannot be loaded (a corrupt or half-written directory) or lacks the signature."""
    import tensorflow as tf
    try:
        model = tf.saved_model.load(model_dir)
    except Exception as err:  # noqa: BLE001 - TensorFlow raises many types for a damaged SavedModel
        reason = (getattr(err, "message", None) or str(err) or type(err).__name__).strip().splitlines()[0]
        raise ValueError(f"cannot load the SavedModel in {printable(model_dir)}: {reason[:300]}") from None
    if configs.IMAGE_SIGNATURE not in model.signatures:
        raise ValueError(f"the SavedModel in {printable(model_dir)} has no {configs.IMAGE_SIGNATURE!r} signature "
                         f"(it has {', '.join(sorted(model.signatures)) or 'none'})")
    return model.signatures[configs.IMAGE_SIGNATURE]


def predict(model_dir: str, images: list[bytes], batch_size: int = 64, progress: bool = True) -> np.ndarray:
    probs, refused = predict_with(load_image_signature(model_dir), images, batch_size, progress)
    if refused:
        index, why = next(iter(refused.items()))
        raise ValueError(f"image {index}: {why}")
    return probs


def predict_with(fn, images: list[bytes], batch_size: int = 64, progress: bool = True) -> tuple[np.ndarray, dict]:
    """(the probabilities of ``images`` (encoded) from a loaded image signature ``fn``, {index: why} of the images
    the model refused, whose rows are NaN)."""
    batches = ([(image, None) for image in images[start:start + batch_size]]
               for start in range(0, len(images), batch_size))
    return predict_read(fn, batches, len(images), progress)[:2]


def predict_read(fn, batches, total: int, progress: bool = True) -> tuple[np.ndarray, dict, float]:
    """(the probabilities of the ``total`` images of ``batches`` (lists of :func:`read_image` pairs, each taken when
    the one before is answered), {index: why} of those unread or refused (rows of NaN), the seconds the model took to
    answer: its first call, which builds the function, not timed)."""
    call = signature_call(fn)
    probs = np.full((total, NUM_CLASSES), np.nan, np.float32)
    unscored, seconds, start, built = {}, 0.0, 0, False
    with tqdm(total=total, desc="evaluate", unit="img", disable=None if progress else True,   # a terminal only
              file=sys.stderr) as bar:
        for batch in batches:
            places = [k for k, (data, _) in enumerate(batch, start) if data is not None]
            unscored.update((k, unread_reason(err)) for k, (data, err) in enumerate(batch, start) if data is None)
            images = [data for data, _ in batch if data is not None]
            if images and not built:
                built = True
                with contextlib.suppress(ImageRefused):
                    call(images[:1])
            started = time.monotonic()
            for k, (answer, why) in zip(places, answers_each(call, images) if images else []):
                if why is None:
                    probs[k] = answer
                else:
                    unscored[k] = why
            seconds += time.monotonic() - started
            start += len(batch)
            bar.update(len(batch))
    return probs, unscored, seconds


def top_classes(probs: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` most probable classes of each row of ``probs`` (the last axis), best first; equal probabilities
    ranked by the lower class index first, as the served tf.math.top_k ranks them (so a top-1 class is always
    among the top k)."""
    return np.argsort(-probs, axis=-1, kind="stable")[..., :k]


def compute_metrics(labels: np.ndarray, probs: np.ndarray) -> dict:
    """Top-1/top-3 accuracy (classes ranked by :func:`top_classes`), per-class precision/recall/F1 (None where
    undefined) and the confusion matrix."""
    from sklearn import metrics

    if not len(labels):
        raise ValueError("no examples to score")
    classes = np.arange(NUM_CLASSES)
    top = top_classes(probs, 3)
    pred = top[:, 0]
    precision, recall, f1, support = metrics.precision_recall_fscore_support(labels, pred, labels=classes,
                                                                             zero_division=np.nan)

    def value(x):
        return None if np.isnan(x) else float(x)

    return {
        "examples": len(labels),
        "top1": float(metrics.accuracy_score(labels, pred)),
        "top3": float((top == np.asarray(labels)[:, None]).any(axis=1).mean()),
        "per_class": {name: {"support": int(support[i]), "precision": value(precision[i]),
                             "recall": value(recall[i]), "f1": value(f1[i])} for i, name in enumerate(CLASS_NAMES)},
        "confusion_matrix": metrics.confusion_matrix(labels, pred, labels=classes).tolist(),
    }


def lowest_recall(recall: dict, count: int | None = None) -> list[tuple[str, float]]:
    """[(class, recall)] from {class: recall or None}, lowest first (classes without a recall left out)."""
    return [(name, r) for r, name in sorted((r, n) for n, r in recall.items() if r is not None)][:count]


def _skip_summary(skipped: list[tuple[str, str]]) -> str:
    """'3 × unknown class folder (Alef/1.png, …); 1 × not an image (alef/x.png)'."""
    by_reason: dict[str, list[str]] = {}
    for rel, why in skipped:
        by_reason.setdefault(why, []).append(rel)
    return "; ".join(f"{len(files)} × {why} ({', '.join(files[:2])}{', …' if len(files) > 2 else ''})"
                     for why, files in sorted(by_reason.items(), key=lambda kv: -len(kv[1])))


def _nothing_usable(data_root: str, skipped: list[tuple[str, str]]) -> str:
    return (f"no usable labelled image under {printable(data_root)} (expected <class_folder>/<image>)"
            + (f"; skipped {len(skipped)}: " + _skip_summary(skipped) if skipped else ""))


def evaluate(model: str, data_root: str, out_dir: str | None = None, worst: int = 40, progress: bool = True,
             report: dict | None = None, limits: Limits = DEFAULT_LIMITS) -> dict:
    """Scores the model; with ``out_dir`` writes its report there (REPORT_FILES), its files replaced together:
    ``report["written"]`` is set once they all are (a stop leaves the earlier report or the new one, whole).
    ``limits``: the file limits images are read with (the pipeline's, :meth:`Limits.of` its Config)."""
    report = {} if report is None else report
    if worst < 0:
        raise ValueError(f"worst must not be negative, got {worst}")
    model_dir = model_folder(model)
    problem = out_dir and report_problem(out_dir)
    if problem:
        raise ValueError(problem)
    if not os.path.isdir(data_root):
        raise FileNotFoundError(f"{printable(data_root)} is not a folder")
    problem = layout_problem(data_root)
    if problem:
        raise ValueError(problem)
    items, skipped = labelled_files(data_root)
    if not items:
        raise ValueError(_nothing_usable(data_root, skipped))
    fn = load_image_signature(model_dir)
    paths = [path for _, _, path in items]   # read a batch at a time: the folder's images are never all in memory
    probs, unscored, seconds = predict_read(fn, read_batches(paths, 64, limits), len(paths), progress)
    if unscored:
        skipped += [(items[k][0], why) for k, why in sorted(unscored.items())]
        refused = any(why.startswith("refused by the model") for why in unscored.values())
        items = [item for k, item in enumerate(items) if k not in unscored]
        probs = np.delete(probs, list(unscored), axis=0)
        if not items:
            raise ValueError(f"the model refused every image under {printable(data_root)}: " + _skip_summary(skipped)
                             if refused else _nothing_usable(data_root, skipped))
    labels = np.array([label for _, label, _ in items])
    metrics = compute_metrics(labels, probs)
    metrics.update({"model_dir": printable(model_dir), "data_root": printable(str(data_root)), "skipped": len(skipped),
                    "skipped_files": [{"file": f, "why": w} for f, w in skipped],
                    "images_per_second": round(len(items) / seconds, 1)})
    pred = top_classes(probs, 1)[:, 0]
    wrong = [k for k in range(len(items)) if pred[k] != labels[k]]
    wrong.sort(key=lambda k: -probs[k, pred[k]])
    metrics["worst_errors"] = [{"file": items[k][0], "true": CLASS_NAMES[labels[k]], "predicted": CLASS_NAMES[pred[k]],
                                "confidence": float(probs[k, pred[k]])} for k in wrong[:worst]]
    if out_dir:
        from pipeline import plots
        files = {REPORT_FILES[0]: json.dumps(metrics, indent=2, ensure_ascii=False).encode("utf-8"),
                 REPORT_FILES[1]: plots.confusion_matrix_png(
                     np.array(metrics["confusion_matrix"]),
                     f"{Path(model_dir).name} on {printable(str(data_root))}: top-1 {metrics['top1']:.3f}"),
                 REPORT_FILES[2]: plots.contact_sheet_png([
                     {"image": read_image(items[k][2], limits)[0] or b"", "true": int(labels[k]), "pred": int(pred[k]),
                      "confidence": float(probs[k, pred[k]])} for k in wrong[:worst]])}
        try:   # drawn first, then written and replaced together: a stop is held until all three are
            with interrupts_held():
                make_dirs(out_dir)   # only now: a run that fails on its inputs leaves no report folder
                with atomic_outputs([os.path.join(out_dir, name) for name in files]) as handles:
                    for handle, data in zip(handles, files.values()):
                        handle.write(data)
                report["written"] = True
        except OSError as err:
            raise ReportNotWritten(f"cannot write the report into {printable(out_dir)}: {err.strerror or err} "
                                   "(the files there are left as they were)") from None
    return metrics


def class_folders(data_root: str) -> list[Path]:
    """The class folders of ``data_root`` whose files :func:`labelled_files` reads (a link to a folder elsewhere
    among them: its files are read as the class's)."""
    if not os.path.isdir(data_root):
        return []
    try:
        return [folder for folder, is_folder in listing(data_root) if folder.name in CLASS_INDEX and is_folder]
    except ValueError:   # an unreadable data root: evaluate refuses it
        return []


def report_in_data(out: str, data_root: str) -> bool:
    """Whether the folder ``out`` is ``data_root`` or lies in it: by the paths as given or with links resolved, or in
    the real folder of a class folder that is a link (whose files are read as that class's)."""
    outs = {os.path.normpath(os.path.abspath(out)), os.path.realpath(out)}
    roots = {os.path.normpath(os.path.abspath(data_root)), os.path.realpath(data_root)}
    roots.update(os.path.realpath(folder) for folder in class_folders(data_root))
    return any(settings.within(path, root) for path in outs for root in roots)


def refuse_report_in_data(parser: argparse.ArgumentParser, out: str, data_root: str) -> None:
    """A usage error (status 2) for an ``--out`` that is ``data_root`` or lies in it (:func:`report_in_data`): its
    PNGs would replace a class folder's images of those names, or be read as data by the next run."""
    if not settings.is_url(out) and report_in_data(out, data_root):
        parser.error(f"--out {printable(out)} lies in --data-root {printable(data_root)}: the report would be read "
                     "as data next time (or replace images); give a folder outside it")


def main(argv=None) -> int:
    configs.warn_unknown_variables()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=settings.path,
                        help="serving directory or one version directory")
    parser.add_argument("--data-root", required=True, type=settings.path,
                        help="folder of <class_folder>/<image> files")
    parser.add_argument("--out", default=None, type=settings.path,
                        help="write metrics.json and the PNGs here (a folder outside --data-root)")
    parser.add_argument("--worst", type=non_negative_int, default=40,
                        help="errors on the contact sheet and in metrics.json (default: %(default)s)")
    args = parser.parse_args(argv)
    limits = Limits.of(defaults_from_env())   # the pipeline's file limits: what it trains on is scored here
    if args.out is not None:
        refuse_report_in_data(parser, args.out, args.data_root)
        try:
            output_dir(args.out)   # checked now, before the work: as the flag's type, once it is known to be outside
        except argparse.ArgumentTypeError as err:
            parser.error(f"argument --out: {err}")
    report = {}
    try:
        with sigterm_as_interrupt():   # a stopped job (timeout, kill) ends as Ctrl-C does
            metrics = evaluate(args.model, args.data_root, args.out, args.worst, report=report, limits=limits)
    except KeyboardInterrupt:
        out = args.out and printable(args.out)
        print("interrupted: " + ("nothing written" if not out else f"{out} holds the new report" if
                                 report.get("written") else f"{out} left as it was"), file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, ReportNotWritten) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    weakest = lowest_recall({n: m["recall"] for n, m in metrics["per_class"].items()}, 5)
    print(f"model {metrics['model_dir']}\n{metrics['examples']} images ({metrics['skipped']} skipped): "
          f"top-1 {metrics['top1']:.4f}  top-3 {metrics['top3']:.4f}")
    print("lowest recall: " + ", ".join(f"{n} {r:.2f}" for n, r in weakest))
    if args.out:
        print(f"wrote {printable(os.path.join(args.out, 'metrics.json'))}, confusion_matrix.png, worst_errors.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
