"""An ExampleGen that reads folders of letter images straight into tf.Examples.

Input layout: ``<input_base>/<class_folder>/<image file>``, class folders named as in
:data:`core.labels.CLASS_NAMES`. Each readable image becomes a tf.Example with

* ``image_raw``  the encoded bytes (kept as they are, or re-encoded to PNG, a lossy WebP to JPEG, where
  TensorFlow's decoder cannot read the format faithfully: see :mod:`core.image_io`),
* ``label``      int64 index in the fixed class list,
* ``label_name`` the class folder name,
* ``source``     the path relative to the input base.

Splits are made by a hash of each image's pixels (:func:`partition`), in TFX's buckets: a file keeps its split when
it is renamed, moved or saved again in another format, and two copies of one picture share a split.

A second, optional input is the users' corrections exported from the web client's feedback store
(``feedback_root``, same layout; their ``source`` starts with ``feedback/``). **Corrections always go to the
train split**: they are few and are exactly the cases the model got wrong, so every one of them should be
learnt from; and keeping them out of eval keeps the eval split (a hash split of the main data) the same set
from one run to the next, so the Evaluator compares successive models on the same images. With
``feedback_repeat`` N each of them is written N times into the train split, so that a few hundred corrections
among thousands of other letters are not drowned (0, the default: :func:`core.configs.feedback_copies` chooses N
from the numbers of images; measured in docs/measurements.md, "A handful of real letters"). The
feedback folder's fingerprint is part of the component's configuration, so new corrections invalidate the cache.
Files that are not usable (empty, oversize, not an image, truncated, decompression
bombs, unknown class folder, beside the class folders, in a folder inside a class folder at any depth: each of
these files) are skipped, never fatal, and counted and named in a report written
next to the examples (``<examples uri>/ingest_report.json``) and printed. An input with no usable image is
an error; a class with no image is a warning in the report (the run goes on: a model can still be trained,
and the Evaluator's per-class slices will show the gap).
"""
from __future__ import annotations

import bisect
import collections
import glob
import hashlib
import itertools
import json
import os
from typing import Any, Callable, Iterable, Iterator

import apache_beam as beam
import tensorflow as tf
from absl import logging
from tfx.components.example_gen import base_example_gen_executor, input_processor
from tfx.components.example_gen import driver as example_gen_driver
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from core import configs, image_io
from core.image_io import pixel_digest
from core.configs import GENERATED_MANIFEST
from core.manifest import unfinished_generation
from core.files import NOT_UTF8, is_hidden, pattern_under, printable, read_error, utf8
from core.labels import CLASS_INDEX, CLASS_NAMES, did_you_mean, in_class_folder, misnamed_problem

FEEDBACK_IMAGES_KEY = "feedback_images"   # the examples artifact's custom property: feedback images among them
REPORT_URI_KEY = "_ingest_report_uri"   # internal exec property: where the executor writes its report
INPUT_PATTERN = "*/*"
FEEDBACK_PREFIX = "feedback/"
SPLIT_OF_KEY = "_split_of"   # exec property the executor sets for the input transform: an example's split name
TRAIN_SHARE_KEY = "_train_share"   # exec property the executor sets for the input transform: the train buckets' share


def _custom_config(exec_properties: dict[str, Any]) -> dict[str, Any]:
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}"
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def make_example(image: bytes, label_name: str, source: str) -> tf.train.Example:
    return tf.train.Example(features=tf.train.Features(feature={
        configs.IMAGE_KEY: _bytes_feature(image),
        configs.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[CLASS_INDEX[label_name]])),
        configs.LABEL_NAME_KEY: _bytes_feature(label_name.encode()),
        configs.SOURCE_KEY: _bytes_feature(source.encode()),
    }))


def read_one(path: str, input_base: str, max_bytes: int, max_pixels: int, prefix: str = ""):
    """Reads one file; returns ``("ok", example, label_name, reencoded)`` or ``("skip", rel, reason, detail)``."""
    rel = os.path.relpath(path, input_base)
    label_name = rel.split(os.sep)[0]
    beside, nested = os.sep not in rel, rel.count(os.sep) > 1
    rel = prefix + rel
    if not utf8(rel):
        return ("skip", printable(rel), "name_not_utf8", NOT_UTF8)
    if beside:
        return ("skip", rel, "not_in_a_class_folder", "files beside the class folders are not read")
    if is_hidden(path, input_base):
        return ("skip", rel, "hidden_file", "names starting with a dot are not read (temporary files of "
                "interrupted writes and editors, macOS's ._ files)")
    if label_name not in CLASS_INDEX:   # a file or a folder in it
        return ("skip", rel, "unknown_class", f"folder {label_name!r} is not one of the 27 classes"
                + did_you_mean(label_name))
    if nested:
        return ("skip", rel, "nested_folder", "files in a folder inside a class folder are not read")
    if fileio.isdir(path):
        return ("skip", rel, "nested_folder", "folders inside a class folder are not read")
    try:
        checked = image_io.read_checked(path, max_bytes, max_pixels, opener=fileio.open,
                                        size=lambda p: fileio.stat(p).length)
    except image_io.ImageRejected as err:
        return ("skip", rel, err.reason, err.detail)
    except (OSError, tf.errors.OpError) as err:
        return ("skip", rel, "unreadable", read_error(path, err))
    return ("ok", make_example(checked.data, label_name, rel.replace(os.sep, "/")), label_name,
            checked.reencoded)


def list_inputs(input_base: str, pattern: str = INPUT_PATTERN) -> list[str]:
    """The paths ``pattern`` matches under ``input_base``, hidden names too (:func:`read_one` reports them), but
    none inside a hidden folder (a ``.git``): neither read nor reported, as a hidden file beside the class folders
    is not. A local folder is listed by Python, so that a name that is not UTF-8 is listed (and skipped by
    :func:`read_one`) where TensorFlow's glob fails."""
    where = pattern_under(input_base, pattern)
    paths = fileio.glob(where) if "://" in input_base else glob.glob(where, include_hidden=True)
    return sorted(path for path in paths if not is_hidden(os.path.dirname(path), input_base))


def list_entries(input_base: str) -> list[str]:
    """Every path the executor reads or reports under ``input_base``, sorted: each folder's entries (what
    :data:`INPUT_PATTERN` matches, as :func:`list_inputs` lists them), a folder inside a class folder replaced by the
    files under it at any depth (:func:`files_below`: each reported as nested_folder), and the files beside the
    folders (reported as not_in_a_class_folder), but the generator's manifest. Hidden names beside the folders, a
    hidden folder's files among them, are neither read nor reported. The cache key's :func:`folder_fingerprint` is
    of these paths, so that any of them added, removed or replaced is seen. A local folder is listed in one pass
    (``os.scandir``: the kind of each name comes with the listing, no file is looked at; only a folder inside a
    class folder is listed further); a URL by :func:`globbed_entries`."""
    if "://" in input_base:
        return globbed_entries(input_base)
    entries = []
    for top in _scan(input_base):
        if _is_folder(top):   # a link to a folder is read as that folder, as a glob reads it
            entries += _in_folder(top.path) if not is_hidden(top.path) else []
        elif _beside(top.name):
            entries.append(top.path)
    return sorted(entries)


def globbed_entries(input_base: str, glob_paths=None) -> list[str]:
    """:func:`list_entries` of a URL, from three globs of it (``*``, ``*/*``, ``*/*/*``: on an object store each one
    listing of what is under it): a path is a folder when a path of the next depth lies in it or it is a folder
    marker (a name ending in "/"), so that the class folders' files are not looked at one by one (a request each,
    one after another, before any image is read); only a folder inside a class folder is walked (TensorFlow's walk
    looks at each of its names). ``glob_paths`` (pattern -> paths) is ``fileio.glob``'s."""
    glob_paths = glob_paths or fileio.glob
    base = input_base.rstrip("/")
    found = [path for pattern in ("*", "*/*", "*/*/*") for path in glob_paths(pattern_under(base, pattern))]
    markers = {path.rstrip("/") for path in found if path.endswith("/")}   # an object store's "alef/": a folder
    paths = {path.rstrip("/") for path in found}
    tops, seconds, thirds = (sorted(path for path in paths if path[len(base):].count("/") == depth)
                             for depth in (1, 2, 3))
    folders = {os.path.dirname(path) for path in seconds + thirds} | markers
    entries = [path for path in tops if path not in folders and _beside(os.path.basename(path))]
    for path in seconds:
        if is_hidden(os.path.dirname(path), base):   # a hidden folder's files: neither read nor reported
            continue
        entries += files_below(path) if path in folders and in_class_folder(path) else [path]
    return sorted(entries)


def _in_folder(folder: str) -> list[str]:
    """The entries of a local folder beside the others, a folder inside a class folder (not a link to one, which
    is reported itself) replaced by the files under it."""
    nested = [(entry, in_class_folder(entry.path) and _is_folder(entry, follow_links=False)) for entry in _scan(folder)]
    return [path for entry, below in nested for path in (files_below(entry.path) if below else [entry.path])]


def files_below(folder: str) -> list[str]:
    """The files at any depth under ``folder`` (a folder inside a class folder, whose files the ExampleGen reports,
    each as nested_folder), and of its folders those not listed further: a link to a folder (never followed, so
    that a link back up is no loop) and a hidden folder (reported as hidden_file, as one in a class folder is).
    A folder it cannot list is reported itself."""
    local = "://" not in folder
    unlisted = []
    walk = os.walk(folder, onerror=lambda err: unlisted.append(err.filename)) if local else fileio.walk(folder)
    found = []
    for current, subfolders, names in walk:
        below = [name for name in subfolders if not is_hidden(name)
                 and not (local and os.path.islink(os.path.join(current, name)))]
        found += [os.path.join(current, name.rstrip("/")) for name in names + [n for n in subfolders if n not in below]]
        subfolders[:] = below
    return found + unlisted


def _beside(name: str) -> bool:
    """Whether a file named ``name`` beside the class folders is reported: a hidden name or the generator's
    manifest is not."""
    return not is_hidden(name) and name != GENERATED_MANIFEST


def _scan(folder: str) -> list[os.DirEntry]:
    """The entries of a local folder; none for a folder it cannot list (as a glob finds nothing in it)."""
    try:
        with os.scandir(folder) as listing:
            return list(listing)
    except OSError:
        return []


def _is_folder(entry: os.DirEntry, follow_links: bool = True) -> bool:
    try:
        return entry.is_dir(follow_symlinks=follow_links)
    except OSError:
        return False


def feedback_copies(repeat: int, main_files: list[str], feedback_files: list[str], train_share: float) -> int:
    """How many times each feedback image goes into the train split (:func:`core.configs.feedback_copies`), from
    the listed files in class folders of the data root (times the train split's share) and of the feedback
    folder. The runner and the executor pass the same listings (:func:`list_inputs`), so they choose alike."""
    return configs.feedback_copies(repeat, round(sum(map(in_class_folder, main_files)) * train_share),
                                   sum(map(in_class_folder, feedback_files)))


def count_candidates(input_base: str | None, pattern: str = INPUT_PATTERN) -> int:
    """Files the executor will read as images (in a class folder, not a folder themselves), before checking
    them: a cheap upper bound of the examples, for sizing the training budget before the pipeline runs."""
    return sum(candidates_per_class(input_base, pattern).values())


def candidates_per_class(input_base: str | None, pattern: str = INPUT_PATTERN) -> dict[str, int]:
    """:func:`count_candidates` by class folder (class name -> files), the classes with none left out."""
    if not input_base or not fileio.exists(input_base):
        return {}
    return dict(collections.Counter(os.path.basename(os.path.dirname(path)) for path in list_inputs(input_base, pattern)
                                    if in_class_folder(path) and utf8(path) and not fileio.isdir(path)))


def folder_fingerprint(root: str | None) -> str:
    """Names, sizes and times of the files under ``root`` the ExampleGen reads or reports (:func:`list_entries`: a
    file beside the class folders, and one in a folder inside a class folder, too): a local file's modification and
    status-change times in nanoseconds and its inode, so that a file replaced in place is seen even with its size and modification time
    kept (``cp -p``, ``rsync -a``, ``touch -r``, or within the same second: TensorFlow's local stat, which TFX's
    own fingerprint uses, has whole seconds); another file system's size and modification time. Hidden names are
    left out (:func:`is_hidden`, a hidden folder's files too; one in a class folder is reported as hidden_file, never
    read): a ``.DS_Store`` written beside the images, or a ``git commit`` in the data root, is no new data, and the
    cache key it is stays the same."""
    if not root or not fileio.exists(root):
        return ""
    digest = hashlib.sha256()
    local = "://" not in root
    for path in list_entries(root):   # (a hidden folder's files it leaves out itself)
        if is_hidden(path):
            continue
        try:
            if local:
                stat = os.stat(path)
                state = f"{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}\0{stat.st_ino}"
            else:
                stat = fileio.stat(path)
                state = f"{stat.length}\0{stat.mtime_nsec}"
        except Exception:  # noqa: BLE001 - a broken link, a link loop, a name TensorFlow cannot take: the
            state = "unreadable"   # executor skips and reports it; here it only has to be named
        digest.update(f"{os.path.relpath(path, root)}\0{state}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]


def is_feedback(example: tf.train.Example) -> bool:
    return example.features.feature[configs.SOURCE_KEY].bytes_list.value[0].startswith(FEEDBACK_PREFIX.encode())


def partition(example, num_partitions: int, buckets: list[int], split_config, train_index: int,
              trained: frozenset = frozenset()) -> int:
    """Corrections to train, and a data-root image with the same pixels as one of them (``trained``: their
    :func:`pixel_digest`; the feedback export writes PNGs, of JPEG uploads too), so that no image trained on as
    feedback is scored in eval; everything else into hash buckets as TFX's partitioning does, but of the image's
    pixels, not its bytes: a picture saved twice (another PNG compression, a WebP or BMP copy) lands in one split,
    never trained on in one and scored in the other."""
    if is_feedback(example):
        return train_index
    digest = pixel_digest(_image(example))
    if trained and digest in trained:
        return train_index
    assert num_partitions == len(buckets), "partitions do not match the buckets"
    return _bucket_index(digest, buckets)


def _bucket_index(digest: str, buckets: list[int]) -> int:
    """The index of the split whose hash buckets (``buckets``: their running totals) take ``digest``."""
    return bisect.bisect(buckets, int(digest, 16) % buckets[-1])


def hashed_split(digest: str, train_buckets: int, eval_buckets: int) -> str:
    """The split :func:`partition` puts a data-root image with this :func:`pixel_digest` into when no feedback
    image has its pixels (one that has goes to train with it)."""
    splits = output_config(train_buckets, eval_buckets).split_config.splits
    return splits[_bucket_index(digest, list(itertools.accumulate(split.hash_buckets for split in splits)))].name


def _feature_text(example, key: str) -> str:
    return example.features.feature[key].bytes_list.value[0].decode("utf-8", "replace")


def _image(example) -> bytes:
    return example.features.feature[configs.IMAGE_KEY].bytes_list.value[0]


def kept_pixel_digests(input_base: str, max_bytes: int, max_pixels: int) -> Iterator[str]:
    """:func:`pixel_digest` of each image the ExampleGen keeps from ``input_base`` (read as :func:`read_one` reads
    it), one file at a time: a caller looking for a few pictures stops when it has found them."""
    for path in list_inputs(input_base):
        outcome = read_one(path, input_base, max_bytes, max_pixels)
        if outcome[0] == "ok":
            yield pixel_digest(_image(outcome[1]))


def feedback_digests(feedback_root: str | None, max_bytes: int, max_pixels: int) -> frozenset:
    """:func:`pixel_digest` of each feedback image as the ExampleGen keeps it (its checked bytes)."""
    digests = set()
    if feedback_root and fileio.exists(feedback_root):
        for path in list_inputs(feedback_root):
            if in_class_folder(path) and utf8(path):
                try:
                    data = image_io.read_checked(path, max_bytes, max_pixels, opener=fileio.open,
                                                 size=lambda p: fileio.stat(p).length).data
                except (image_io.ImageRejected, OSError, tf.errors.OpError):
                    continue
                digests.add(pixel_digest(data))
    return frozenset(digests)


class SplitOf:
    """The name of the split :func:`partition` puts an example into (for the report: images per split)."""

    def __init__(self, names: list[str], buckets: list[int], split_config, train_index: int,
                 trained: frozenset = frozenset()):
        self.names, self.buckets, self.split_config, self.train_index = names, buckets, split_config, train_index
        self.trained = trained

    def __call__(self, example) -> str:
        return self.names[partition(example, len(self.buckets), self.buckets, self.split_config, self.train_index,
                                    self.trained)]

    def hashed(self, digest: str) -> str:
        """The split the hash puts a data-root image with this :func:`pixel_digest` into, a feedback twin or not."""
        return self.names[_bucket_index(digest, self.buckets)]


def _layout_hint(input_base: str, pattern: str) -> str:
    return (f"no files match {os.path.join(input_base, pattern)}: the data root must hold one folder per class "
            f"({', '.join(CLASS_NAMES[:3])}, …, {CLASS_NAMES[-1]}) with the images inside")


def describe_layout_problem(input_base: str) -> str | None:
    """A sentence saying why ``input_base`` cannot be read, or None when it holds files to read: no class folder,
    or a folder named as a class that has no folder, in another case (:func:`core.labels.misnamed_folders`). Other
    folders (``misc``, ``test``) are no problem: the ExampleGen skips their files and reports them."""
    unfinished = None if "://" in input_base else unfinished_generation(input_base)
    if unfinished:
        return unfinished
    files = list_inputs(input_base)
    if not files:
        return _layout_hint(input_base, INPUT_PATTERN)
    names = {os.path.basename(os.path.dirname(path)) for path in files}
    if not names & set(CLASS_INDEX):
        folders = sorted({printable(name) for name in names})
        shown = ", ".join(folders[:5]) + (", …" if len(folders) > 5 else "")
        return (f"none of the folders in {input_base} ({shown}) is a class folder: the data root must hold one "
                f"folder per class, named exactly {', '.join(CLASS_NAMES[:3])}, …, {CLASS_NAMES[-1]} "
                f"(core/labels.py)")
    return misnamed_problem(input_base, names)


def build_report(outcomes: Iterable[tuple], input_base: str, feedback_repeat: int = 1,
                 splits: Iterable[str] = (), hashed: Callable[[str], str] | None = None) -> dict:
    """Summarises per-file outcomes: kept per class (and per split, when the outcomes carry it), skipped by reason
    with the files. Counts files: a feedback image written ``feedback_repeat`` times into the train split counts
    once. ``hashed`` (:meth:`SplitOf.hashed`): the split a data-root image's pixel digest hashes into, by which the
    images of the data root that their feedback twins took to train are counted per split they left."""
    kept = collections.Counter()
    per_split = collections.defaultdict(collections.Counter, {split: collections.Counter() for split in splits})
    reencoded = feedback = 0
    feedback_files, feedback_pixels = [], set()
    skipped = collections.defaultdict(list)
    same_bytes = collections.defaultdict(list)   # digest -> [(label, source, split)]
    root_pictures = []   # (digest, split) of each data-root image kept
    for outcome in outcomes:
        if outcome[0] == "ok":
            kept[outcome[1]] += 1
            reencoded += int(outcome[2])
            feedback += int(outcome[3]) if len(outcome) > 3 else 0
            if len(outcome) > 4 and outcome[4] is not None:
                per_split[outcome[4]][outcome[1]] += 1
            if len(outcome) > 5:
                same_bytes[outcome[5][0]].append((outcome[1], outcome[5][1], outcome[4] if len(outcome) > 4 else None))
                if len(outcome) > 3 and outcome[3]:
                    feedback_files.append(outcome[5][1])
                    feedback_pixels.add(outcome[5][0])
                else:
                    root_pictures.append((outcome[5][0], outcome[4] if len(outcome) > 4 else None, outcome[1]))
        else:
            _, rel, reason, detail = outcome
            skipped[reason].append({"file": rel, "detail": detail})
    for files in skipped.values():
        files.sort(key=lambda item: item["file"])
    twins = [(digest, split, label) for digest, split, label in root_pictures if digest in feedback_pixels]
    left = [(to, label) for digest, split, label in twins
            if hashed is not None and split is not None and (to := hashed(digest)) != split]
    moved = collections.Counter(to for to, _ in left)
    groups = [sorted(group, key=lambda item: item[1]) for group in same_bytes.values() if len(group) > 1]
    same_class = [group for group in groups if len({label for label, _, _ in group}) == 1]
    scored, trained = [], []
    for group in same_class:
        (scored if all(split == configs.EVAL_SPLIT for _, _, split in group) else trained).append(group)
    trainings = [[feedback_repeat if source.startswith(FEEDBACK_PREFIX) else 1 for _, source, _ in group]
                 for group in trained]
    missing = {split: [name for name in CLASS_NAMES if kept.get(name) and not counts.get(name)]
               for split, counts in sorted(per_split.items())}
    conflicts = _files(group for group in groups if len({label for label, _, _ in group}) > 1)
    return {
        "input_base": input_base,
        "kept": sum(kept.values()),
        "kept_per_class": {name: kept.get(name, 0) for name in CLASS_NAMES},
        "reencoded_to_png": reencoded,
        "feedback": feedback,
        "feedback_repeat": feedback_repeat,
        # the feedback images trained on: feedback/<true class>/<feedback store id>.png (the model's lineage), and
        # their pixel digests: the next run's gate finds the eval images this model trained on as feedback by them
        "feedback_files": sorted(feedback_files),
        "feedback_digests": sorted(feedback_pixels),
        # data-root images with a feedback image's pixels (in train with it), and of them those the hash had put in
        # another split, by that split
        "feedback_twins": len(twins),
        "moved_to_train": dict(sorted(moved.items())),
        "skipped": sum(len(v) for v in skipped.values()),
        "skipped_by_reason": {reason: len(files) for reason, files in sorted(skipped.items())},
        "skipped_files": dict(sorted(skipped.items())),
        "empty_classes": [name for name in CLASS_NAMES if not kept.get(name)],
        "kept_per_split": {split: sum(counts.values()) for split, counts in sorted(per_split.items())},
        # classes with images, none of them in a split: trained without, or never judged
        "classes_missing_from_split": missing,
        # of them, those whose images of that split their feedback twins took to train
        "classes_missing_by_feedback": {split: [name for name in names if (split, name) in left]
                                        for split, names in missing.items()},
        # the same picture (pixels) more than once: extra copies under one label, and images under several labels
        # (a mislabelled copy: trained on both ways, and one of them always wrong in the split they share)
        "duplicate_copies": sum(len(group) - 1 for group in same_class),
        # the times more the copies in train train per epoch: a feedback copy is written feedback_repeat times
        # (beyond the copy written fewest times); copies in eval are not trained on but scored again
        "duplicate_trainings": sum(sum(times) - min(times) for times in trainings),
        # the files of each picture with extra copies under one label: in train, and in eval
        "duplicate_files": _files(trained),
        "duplicate_files_in_eval": _files(scored),
        "conflicting_labels": conflicts,
    }


def _files(groups: Iterable[list[tuple]]) -> list[list[str]]:
    """The files of each group of (label, source, split) with the same pixels, as the report lists them."""
    return sorted([source for _, source, _ in group] for group in groups)


def feedback_read(report: dict) -> frozenset[str]:
    """The feedback store ids of the feedback files an ingest report lists, kept or skipped: the rows of the store
    the run read (its export names each file by the row's id)."""
    files = [*report.get("feedback_files", ()),
             *(item["file"] for items in report.get("skipped_files", {}).values() for item in items)]
    return frozenset(os.path.splitext(os.path.basename(path))[0] for path in files
                     if path.startswith(FEEDBACK_PREFIX))


def format_report(report: dict, max_files: int = 10) -> str:
    lines = [f"ExampleGen: {report['kept']} images kept, {report['skipped']} skipped "
             f"({report['reencoded_to_png']} re-encoded for TensorFlow's decoder) from {report['input_base']}"
             + (f" including {report['feedback']} feedback images (all in train"
                + (f", {report['feedback_repeat']} times each" if report.get("feedback_repeat", 1) > 1 else "") + ")"
                if report.get("feedback") else "")]
    for reason, files in report["skipped_files"].items():
        lines.append(f"  skipped {len(files)} × {reason}")
        for item in files[:max_files]:
            lines.append(f"    {item['file']}: {item['detail']}")
        if len(files) > max_files:
            lines.append(f"    … {len(files) - max_files} more (see ingest_report.json)")
    if report["empty_classes"]:
        lines.append(f"  WARNING: no images for {len(report['empty_classes'])} classes: "
                     + ", ".join(report["empty_classes"]))
    for split, why, names in missing_from_split(report):
        lines.append(f"  WARNING: no {split} images for {len(names)} classes ({why}): " + ", ".join(names))
    conflicts = report.get("conflicting_labels", [])
    if conflicts:
        lines.append(f"  WARNING: {conflicts_heading(conflicts)}:")
        lines += _listed(conflicts, max_files)
    for note, groups in duplicates_notes(report):
        lines.append(f"  note: {note}" + (":" if groups else ""))
        lines += _listed(groups, max_files)
    moved = report.get("moved_to_train")
    if moved:
        lines.append(f"  note: {' and '.join(f'{count} {split}' for split, count in moved.items())} image(s) of the "
                     "data root moved to train: the feedback store holds their pixels, and feedback always trains")
    return "\n".join(lines)


def _listed(groups: list[list[str]], max_files: int) -> list[str]:
    """The report's lines of the first ``max_files`` groups of files with the same pixels, one group a line."""
    lines = [f"    {' = '.join(files)}" for files in groups[:max_files]]
    if len(groups) > max_files:
        lines.append(f"    … {len(groups) - max_files} more (see ingest_report.json)")
    return lines


def shown_groups(groups: list[list[str]], shown: int = 3) -> str:
    """The first ``shown`` groups of files with the same pixels, on one line (the run summary's)."""
    return ("; ".join(" = ".join(files) for files in groups[:shown])
            + (f"; … {len(groups) - shown} more (see ingest_report.json)" if len(groups) > shown else ""))


def conflicts_heading(conflicts: list) -> str:
    """What the report's ``conflicting_labels`` (groups of files with the same pixels under several labels) are."""
    return f"{len(conflicts)} image(s) under more than one label (the same pixels; one label is wrong)"


def duplicates_notes(report: dict) -> list[tuple[str, list[list[str]]]]:
    """(what they are, their files) for the report's ``duplicate_copies``: those in train, with how many times more
    they train per epoch (a feedback copy is written ``feedback_repeat`` times), and those in eval, not trained on
    but scored again. A report without the files (an earlier one) has its copies said as trained on, unnamed."""
    in_eval = report.get("duplicate_files_in_eval", [])
    scored = sum(len(files) - 1 for files in in_eval)
    trained = report.get("duplicate_copies", 0) - scored
    notes = []
    if trained:
        trainings = report.get("duplicate_trainings", trained)
        why = ("trained on that many more times" if trainings == trained else f"trained on {trainings} more times "
               f"per epoch: a feedback copy is written {report.get('feedback_repeat', 1)} times")
        notes.append((f"{_extra_copies(trained)} ({why})", report.get("duplicate_files", [])))
    if scored:
        notes.append((f"{_extra_copies(scored)} in the {configs.EVAL_SPLIT} split (not trained on, but scored that "
                      "many more times: each of these pictures counts once per copy in the eval score)", in_eval))
    return notes


def _extra_copies(count: int) -> str:
    return (f"{count:,} extra {'copy of an image' if count == 1 else 'copies of images'} already in the same "
            "class")


def missing_from_split(report: dict) -> list[tuple[str, str, list[str]]]:
    """(split, why, classes) for the report's classes with images but none in a split: feedback twins took them
    to train, or the hash put all of theirs in the other split."""
    found = []
    for split, missing in report.get("classes_missing_from_split", {}).items():
        by_feedback = report.get("classes_missing_by_feedback", {}).get(split, [])
        rest = [name for name in missing if name not in by_feedback]
        if by_feedback:
            found.append((split, "their feedback twins took them to train: the feedback store "
                                 "holds their pictures, and feedback always trains", by_feedback))
        if rest:
            found.append((split, "all of theirs fell in the other split", rest))
    return found


class EmptyDatasetError(ValueError):
    pass


def no_usable_image(input_base: str) -> str:
    return (f"no usable image found under {input_base} (expected <data-root>/<class_folder>/<image>, "
            f"class folders named: {', '.join(CLASS_NAMES)})")


def find_usable_image(input_base: str, max_bytes: int = image_io.DEFAULT_MAX_BYTES,
                      max_pixels: int = image_io.DEFAULT_MAX_PIXELS) -> tuple[bool, list[tuple]]:
    """Reads ``input_base``'s files in order until one would be kept: (found one, the skip outcomes before it).
    Cheap on good data (it stops at the first image), and finds a data root whose every file is skipped
    before the pipeline starts."""
    skips = []
    for path in list_entries(input_base):
        outcome = read_one(path, input_base, max_bytes, max_pixels)
        if outcome[0] == "ok":
            return True, skips
        skips.append(outcome)
    return False, skips


def _warn(text: str) -> None:
    logging.warning("%s", text)
    print(text, flush=True)


def _write_report(outcomes: list[tuple], input_base: str, report_uri: str | None, feedback_repeat: int = 1,
                  split_of: SplitOf | None = None) -> None:
    report = build_report(outcomes, input_base, feedback_repeat, split_of.names if split_of else (),
                          split_of.hashed if split_of else None)
    text = format_report(report)
    logging.info("%s", text)
    print(text, flush=True)
    if report_uri:
        fileio.makedirs(os.path.dirname(report_uri))
        with fileio.open(report_uri, "w") as f:
            f.write(json.dumps(report, indent=2, ensure_ascii=False))
    if report["kept"] == 0:
        raise EmptyDatasetError(no_usable_image(input_base))
    for split, count in report["kept_per_split"].items():
        if count == 0:
            raise EmptyDatasetError(empty_split(split, report))


def empty_split(split: str, report: dict) -> str:
    """Why ``split`` of the report's images is empty: the data root's images with a twin in the feedback store (all
    trained on, with it) where the hash had put some of them there, else the hash split of the data root's images
    (feedback images always train)."""
    root, feedback, twins = report["kept"] - report["feedback"], report["feedback"], report.get("feedback_twins", 0)
    where = f"of {report['input_base']}"
    if report.get("moved_to_train", {}).get(split):
        others = root - twins
        return (f"the {split} split is empty: {'all' if not others else twins} of the {root} usable images {where} "
                "have a twin in the feedback store (the same pixels), and a feedback image always trains, its twin "
                "with it" + (f"; the hash split put none of the other {others} there" if others else "")
                + "; leave that feedback out or give other feedback (local_runner.py: --no-feedback or another "
                "--feedback-dir; kubeflow_runner.py: no --feedback-root or another)"
                + (", or change --split" if others else ""))
    trains = f" (the {feedback} feedback images always train)" if feedback else ""
    if not root:
        return f"the {split} split is empty: no usable image {where}{trains}; add images (a few per class at least)"
    return (f"the {split} split is empty: the hash split of the {root} usable images {where} put none of them "
            f"there{trains}; add images (a few per class at least) or change --split")


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _ImagesToExample(pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str):
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    custom = _custom_config(exec_properties)
    max_bytes = int(custom.get("max_file_bytes", image_io.DEFAULT_MAX_BYTES))
    max_pixels = int(custom.get("max_image_pixels", image_io.DEFAULT_MAX_PIXELS))
    main_files = list_inputs(input_base, split_pattern)
    if not main_files:
        raise EmptyDatasetError(_layout_hint(input_base, split_pattern))
    inputs = [(path, input_base, "") for path in list_entries(input_base)]   # files beside the folders: reported
    feedback_root = custom.get("feedback_root")
    repeat = 1
    if feedback_root and not fileio.exists(feedback_root):   # a first run before any feedback, or a typo
        _warn(f"WARNING no feedback folder at {feedback_root}: this run trains on no feedback")
    elif feedback_root:
        feedback_files = list_inputs(feedback_root, split_pattern)
        inputs += [(path, feedback_root, FEEDBACK_PREFIX) for path in list_entries(feedback_root)]
        repeat = feedback_copies(int(custom.get("feedback_repeat", 0)), main_files, feedback_files,
                                 exec_properties[TRAIN_SHARE_KEY])
    split_of = exec_properties.get(SPLIT_OF_KEY)
    # A name that is not UTF-8 cannot pass Beam's string coder: its skip is decided here, by name alone.
    unnamed = [read_one(path, base, max_bytes, max_pixels, prefix) for path, base, prefix in inputs
               if not utf8(path)]
    outcomes = (pipeline
                | "ListFiles" >> beam.Create([item for item in inputs if utf8(item[0])])
                | "Reshuffle" >> beam.Reshuffle()
                | "ReadImage" >> beam.Map(lambda item: read_one(item[0], item[1], max_bytes, max_pixels, item[2])))
    if unnamed:
        outcomes = (outcomes, pipeline | "NamesNotUtf8" >> beam.Create(unnamed)) | "AllOutcomes" >> beam.Flatten()
    _ = (outcomes
         | "Summarise" >> beam.Map(lambda o: ("ok", o[2], o[3], is_feedback(o[1]),
                                              split_of(o[1]) if split_of else None,
                                              (pixel_digest(_image(o[1])), _feature_text(o[1], configs.SOURCE_KEY)))
                                   if o[0] == "ok" else o)
         | "Collect" >> beam.combiners.ToList()
         | "WriteReport" >> beam.Map(_write_report, input_base, exec_properties.get(REPORT_URI_KEY), repeat,
                                     split_of))
    return (outcomes
            | "KeepGood" >> beam.Filter(lambda o: o[0] == "ok")
            | "ToExample" >> beam.FlatMap(lambda o: [o[1]] * (repeat if is_feedback(o[1]) else 1)))


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Folder-per-class images → tf.Examples, with a report of what was skipped."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _ImagesToExample

    def GenerateExamplesByBeam(self, pipeline, exec_properties):
        """As the base class with output splits, but corrections always land in the train split."""
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
        splits = output_config.split_config.splits
        if len(input_config.splits) != 1 or not splits:
            raise ValueError("the image ExampleGen reads one input split into hash-bucketed output splits")
        names = [split.name for split in splits]
        buckets = list(itertools.accumulate(split.hash_buckets for split in splits))
        exec_properties["_beam_pipeline_args"] = self._beam_pipeline_args or []
        exec_properties[TRAIN_SHARE_KEY] = splits[names.index(configs.TRAIN_SPLIT)].hash_buckets / buckets[-1]
        train_index = names.index(configs.TRAIN_SPLIT)
        custom = _custom_config(exec_properties)
        trained = feedback_digests(custom.get("feedback_root"),
                                   int(custom.get("max_file_bytes", image_io.DEFAULT_MAX_BYTES)),
                                   int(custom.get("max_image_pixels", image_io.DEFAULT_MAX_PIXELS)))
        exec_properties[SPLIT_OF_KEY] = SplitOf(names, buckets, output_config.split_config, train_index, trained)
        partitions = (pipeline
                      | "InputToRecord" >> _ImagesToExample(exec_properties, input_config.splits[0].pattern)
                      | "SplitData" >> beam.Partition(partition, len(buckets), buckets, output_config.split_config,
                                                      train_index, trained))
        return dict(zip(names, partitions))

    def Do(self, input_dict, output_dict, exec_properties):
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        exec_properties = dict(exec_properties)
        exec_properties[REPORT_URI_KEY] = os.path.join(examples.uri, configs.INGEST_REPORT_FILE)
        super().Do(input_dict, output_dict, exec_properties)
        try:   # in ML Metadata: how many feedback images these examples hold (the report lists them)
            with fileio.open(exec_properties[REPORT_URI_KEY], "r") as f:
                report = json.loads(f.read())
        except (OSError, ValueError, tf.errors.OpError):
            return
        examples.set_int_custom_property(FEEDBACK_IMAGES_KEY, int(report.get("feedback", 0)))


def output_config(train_buckets: int, eval_buckets: int) -> example_gen_pb2.Output:
    return example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(
        splits=[
            example_gen_pb2.SplitConfig.Split(name=configs.TRAIN_SPLIT, hash_buckets=train_buckets),
            example_gen_pb2.SplitConfig.Split(name=configs.EVAL_SPLIT, hash_buckets=eval_buckets),
        ],
        partition_feature_name=configs.IMAGE_KEY))


class _FolderInputProcessor(input_processor.FileBasedInputProcessor):
    """TFX's input processor, but a local folder's fingerprint is :func:`folder_fingerprint`'s: TFX's own globs and
    stats every file through TensorFlow, and one file name that is not UTF-8, one broken link or one link loop
    ended the whole run there, before the executor (which skips and reports such files) ever ran."""

    def resolve_span_and_version(self):
        if "://" in self._input_base_uri:   # a bucket: TFX's own (its object names are UTF-8, it has no links)
            return super().resolve_span_and_version()
        self._fingerprint = "\n".join(f"split:{split.name},files:{folder_fingerprint(self._input_base_uri)}"
                                      for split in self._splits)
        return 0, None   # this component's patterns name no span or version


class Driver(example_gen_driver.FileBasedDriver):
    """FileBasedExampleGen's driver with :class:`_FolderInputProcessor`."""

    def get_input_processor(self, splits, range_config=None, input_base_uri=None):
        return _FolderInputProcessor(input_base_uri, splits, range_config)


def ImageExampleGen(input_base: str, train_buckets: int = 4, eval_buckets: int = 1,
                    max_file_bytes: int = image_io.DEFAULT_MAX_BYTES,
                    max_image_pixels: int = image_io.DEFAULT_MAX_PIXELS,
                    feedback_root: str | None = None, fingerprint_folders: bool = True,
                    feedback_repeat: int = 0, code: str = "") -> FileBasedExampleGen:
    """The image ExampleGen component (a FileBasedExampleGen with this module's executor).

    ``feedback_root``: exported corrections (``<class>/<image>``), always trained on; see the module doc.
    ``feedback_repeat``: each of them written that many times into the train split (oversampled); 0 = as many
    as :func:`core.configs.feedback_copies` chooses from the number of images, at run time.
    ``fingerprint_folders``: put the fingerprints of ``input_base`` and ``feedback_root`` (every file's relative
    path, size and time) in the configuration, the cache key: TFX's own fingerprint of input_base counts files,
    bytes and times only (an image moved to another class folder is a new label it does not see) and globs the
    path unescaped (a root named "letters [v2]" matches nothing, so no change is ever seen). Off for a pipeline
    compiled once and run many times (Kubeflow): the folders are read at run time.
    ``code``: a fingerprint of this module's code (pipeline.code_fingerprint), so that a change to how images are
    read re-runs it instead of reusing examples made by the old code.
    """
    custom_config = {"max_file_bytes": max_file_bytes, "max_image_pixels": max_image_pixels}
    if code:
        custom_config["code"] = code
    if fingerprint_folders:
        custom_config["input_fingerprint"] = folder_fingerprint(input_base)
    if feedback_root:
        custom_config["feedback_root"] = feedback_root
        custom_config["feedback_repeat"] = feedback_repeat
        if fingerprint_folders:
            custom_config["feedback_fingerprint"] = folder_fingerprint(feedback_root)
    component = FileBasedExampleGen(
        input_base=input_base,
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name="images", pattern=INPUT_PATTERN)]),
        output_config=output_config(train_buckets, eval_buckets),
        custom_config=custom_config,
        custom_executor_spec=executor_spec.BeamExecutorSpec(Executor),
    ).with_id("ImageExampleGen")
    component.driver_class = Driver   # the compiler reads the instance's (Kubeflow's spec runs its own driver)
    return component
