"""Letters one already has, put into the feedback store: ``letters-feedback import DIR``.

``DIR`` holds one folder per class (the pipeline's ``--data-root`` layout). Each image is checked as the web client
checks an upload (:func:`core.image_io.check_image`) and stored as a user's labelled answer without a model's
answer (no predicted label or version: the monitor's live accuracy leaves such rows out). The next pipeline run trains
on them as on all feedback: in the train split only, each written as many times as the run's feedback copies say.
Measured (docs/measurements.md, "A handful of real letters"): about five letters per class from real writers, as
feedback of ``make demo``'s letters, read other writers' letters better than the same letters as a data root.

Re-importing a folder adds nothing twice: an image already stored with the same class (the same pixels,
:func:`core.image_io.pixel_digest`: the same bytes, the picture saved again as another PNG or a BMP, or the PNG that
``letters-feedback export`` writes of a stored JPEG, whichever store exported it) is counted as already there; one
stored under another class is skipped as a conflict (the store keeps one label per picture, as the web client's
feedback does, and the pipeline would train on both), its message naming every row of the picture and the commands
that leave the right label alone. A picture a store holds under several classes already (stored before the store
knew pixels, or by ``FeedbackStore.add`` without ``once``) is judged as the web client's feedback judges it: already
there when one of them is the class imported (``letters-feedback stats`` names it in ``under_two_labels``), a
conflict otherwise. A stored image gone or corrupt since (no longer its sha256) is written again from a file of
the same bytes, and counted as restored. Files that cannot be stored are skipped with their reason, never fatal: a
folder that is not a class, a nested folder, a hidden name in a class folder, a name that is not UTF-8, an empty,
oversize, truncated or non-image file. A folder named as a class that has no folder (``Bet`` beside ``alef``) is
refused, nothing stored, as the pipeline refuses such a data root (:func:`core.labels.misnamed_problem`). Hidden
names beside the class folders (a ``.git``, a ``.DS_Store``) are left out unreported, as the ExampleGen leaves
them.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import os

from core import image_io
from core.feedback import FeedbackError, FeedbackStore, already_stored
from core.files import NOT_UTF8, exclusive, is_hidden, printable, read_error, utf8, waiting_for
from core.labels import CLASS_INDEX, CLASS_NAMES, did_you_mean, misnamed_problem
from core.manifest import unfinished_generation
from core.signals import interrupts_held

IMPORT_LOCK = "import.lock"   # in the store: one import at a time


@dataclasses.dataclass
class ImportSummary:
    source: str
    imported: int = 0            # images added to the store by this call
    already_present: int = 0     # images the store held already with the same class
    restored: int = 0            # of those, images whose stored file was gone or corrupt, written again from DIR's
    skipped: dict = dataclasses.field(default_factory=dict)    # reason -> [relative path: detail]
    per_class: dict = dataclasses.field(default_factory=dict)  # class -> images of DIR now in the store

    @property
    def skipped_count(self) -> int:
        return sum(len(files) for files in self.skipped.values())

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"skipped_count": self.skipped_count}


def candidate_files(folder: str) -> list[str]:
    """``folder``'s entries and those one level below its sub-folders, relative and sorted: what an import
    reads or reports (files at the top are in no class folder). Hidden names at the top, a ``.git`` with all it
    holds or a ``.DS_Store``, are left out, as the ExampleGen leaves them out (:func:`core.files.is_hidden`)."""
    entries = []
    for name in sorted(os.listdir(folder)):
        if is_hidden(name):
            continue
        path = os.path.join(folder, name)
        entries += sorted(os.path.join(name, inner) for inner in os.listdir(path)) if os.path.isdir(path) else [name]
    return entries


def import_folder(feedback_dir: str | os.PathLike, folder: str | os.PathLike, *,
                  max_bytes: int = image_io.DEFAULT_MAX_BYTES, max_pixels: int = image_io.DEFAULT_MAX_PIXELS,
                  progress: bool = False, summary: ImportSummary | None = None) -> ImportSummary:
    """Stores every usable image of ``folder/<class>/`` in the feedback store at ``feedback_dir`` (created if
    missing); returns what was imported, found already there and skipped. A folder without any file in a class
    folder is a ValueError, and no store is created for it. ``summary``: counted into as the images are stored
    (each image's row and its count together: a stop is held until both are done), so that an import stopped
    partway (Ctrl-C, a store that cannot be written) leaves there what it had stored and skipped."""
    folder = os.path.abspath(os.fspath(folder))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder} is not a folder")
    unfinished = unfinished_generation(folder)
    if unfinished:   # not read as data: classes may be missing, old and new images mixed
        raise ValueError(unfinished)
    summary = summary or ImportSummary(source=folder)
    summary.source = folder
    files = candidate_files(folder)
    folders = {os.path.dirname(rel) for rel in files} - {""}
    if not folders & set(CLASS_INDEX):
        hints = [f"; {name!r} is not a class folder{did_you_mean(name)}" for name in sorted(folders)
                 if did_you_mean(name)]
        raise ValueError(f"no file in a class folder of {folder} (expected DIR/<class_folder>/<image>, class "
                         f"folders named: {', '.join(CLASS_NAMES)})" + "".join(hints))
    misnamed = misnamed_problem(folder, folders)
    if misnamed:   # (Bet beside alef: the pipeline refuses such a folder as a data root)
        raise ValueError(misnamed)
    store = FeedbackStore(feedback_dir)
    try:
        # One import at a time per store: two at once each read what was stored before either wrote, and stored
        # the same images twice. A wait for another is said, naming its process.
        with exclusive(os.path.join(store.root, IMPORT_LOCK),
                       waiting=waiting_for(f"another import into the feedback store {store.root}")):
            _store_files(store, folder, files, summary, max_bytes, max_pixels, progress)
    finally:
        store.close()
    summary.per_class = {name: summary.per_class.get(name, 0) for name in CLASS_NAMES}
    return summary


def _store_files(store: FeedbackStore, folder: str, files: list[str], summary: ImportSummary, max_bytes: int,
                 max_pixels: int, progress: bool) -> None:
    # picture -> its rows, oldest first, by its pixels and by its bytes, as add(once=True) matches rows (one whose
    # image could not be read yet has no pixel digest: an "imported" copy of it had added nothing)
    pictures = collections.defaultdict(list)
    for record in store.records():
        for key in {record.pixel_digest, record.image_sha256} - {None}:
            pictures[key].append(record)
    if progress:
        from tqdm import tqdm
        files = tqdm(files, desc="importing", unit="image")
    for rel in files:
        label, path = os.path.dirname(rel), os.path.join(folder, rel)
        if not utf8(rel):   # (before anything else, as the ExampleGen judges it)
            summary.skipped.setdefault("name_not_utf8", []).append(f"{printable(rel)}: {NOT_UTF8}")
            continue
        if not label:
            summary.skipped.setdefault("not_in_a_class_folder", []).append(f"{rel}: beside the class folders")
            continue
        if is_hidden(rel):   # (before the folder's class is judged, as the ExampleGen judges it)
            summary.skipped.setdefault("hidden_file", []).append(f"{rel}: names starting with a dot are not read")
            continue
        if label not in CLASS_INDEX:
            summary.skipped.setdefault("unknown_class_folder", []).append(
                f"{rel}: {label!r} is not a class folder"
                + (did_you_mean(label) or f" ({', '.join(CLASS_NAMES[:3])}, …)"))
            continue
        if os.path.isdir(path):
            summary.skipped.setdefault("nested_folder", []).append(f"{rel}: a folder inside a class folder")
            continue
        try:
            checked = image_io.read_checked(path, max_bytes, max_pixels)
        except image_io.ImageRejected as err:
            summary.skipped.setdefault(err.reason, []).append(f"{rel}: {err.detail}")
            continue
        except OSError as err:
            summary.skipped.setdefault("unreadable", []).append(f"{rel}: {read_error(path, err)}")
            continue
        digest = image_io.pixel_digest(checked.data)   # (cached: the store's add finds it there)
        stored = sorted({r.id: r for key in (digest, hashlib.sha256(checked.data).hexdigest())
                         for r in pictures.get(key, [])}.values(), key=lambda r: (r.created_at, r.id))
        if stored and label not in {r.true_label for r in stored}:
            summary.skipped.setdefault("conflicting_label", []).append(
                f"{rel}: {already_stored(stored, label, store.root)}")
            continue
        with interrupts_held():   # (stored and counted, or neither: what a stopped import says it stored is so)
            if stored:   # (under this label, maybe under others too: as add(once=True) judges it)
                summary.already_present += 1
                summary.restored += store.restore([r for r in stored if r.true_label == label], checked.data)
            else:
                try:
                    record, added = store.add_once(checked.data, checked.data_format, label, width=checked.width,
                                                    height=checked.height)
                except FeedbackError as err:
                    if err.reason != "already_stored":
                        raise
                    # stored meanwhile (the web client's feedback) under another label
                    summary.skipped.setdefault("conflicting_label", []).append(f"{rel}: {err}")
                    continue
                pictures[digest].append(record)
                if added:
                    summary.imported += 1
                else:   # stored meanwhile (the web client's feedback) under this label
                    summary.already_present += 1
            summary.per_class[label] = summary.per_class.get(label, 0) + 1


def describe(summary: ImportSummary, max_files: int = 10) -> str:
    restored = (f", {summary.restored} of them restored: their stored image was gone or corrupt"
                if summary.restored else "")
    lines = [f"imported {summary.imported} image(s) from {summary.source} ({summary.already_present} already in the "
             f"store{restored}, {summary.skipped_count} skipped)"]
    for reason, files in sorted(summary.skipped.items()):
        lines.append(f"  skipped {len(files)} × {reason}")
        lines += [f"    {item}" for item in files[:max_files]]
        if len(files) > max_files:
            lines.append(f"    … {len(files) - max_files} more")
    empty = [name for name, count in summary.per_class.items() if not count]
    if empty and len(empty) < len(CLASS_NAMES):
        lines.append(f"  no image of {len(empty)} class(es): {', '.join(empty)}")
    return "\n".join(lines)
