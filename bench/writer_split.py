"""Split a folder-per-class data set into train/ and val/ so that validation imitates unseen writers.

    python -m bench.writer_split --data-root /path/to/hhd_train --out /tmp/hhd_split
    python -m bench.writer_split --data-root /path/to/hhd_train --out /tmp/hhd_fold0 --fold 0

HHD names files ``<class>_<n>.png``. ``n`` is not a writer id: it counts one class's letters, 1 to about 150
(125–178, with a few gaps), and the split takes it to follow the order the forms were collected in (one writer
per form), so that the last ``--val-share`` of each class's numbers are letters of the last forms. Each class is
cut at its own position, so near a cut one writer's letters of different classes can fall on both sides: if
``n`` were a form number shared by the classes, 37 forms would straddle the default hold-out (447 training
images). "Writers never seen" means this approximation; a letter is never on both sides. ``--fold K``
holds out the K-th such block instead (0 = the first forms; with a share of 0.2 there are 5 blocks and the
default, the last block, is fold 4): the blocks together are a writer-grouped cross-validation. The split is
made of symbolic links (nothing is copied). Files whose names do not match ``--pattern`` stay in train/.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

from bench import workdir

DEFAULT_PATTERN = r"^\d+_(\d+)\.\w+$"


def check_share(share: float, none: bool = False) -> None:
    """ValueError unless ``share``, the share of each class's forms held out, is in (0, 1), or is 0 (nothing held
    out) when ``none``."""
    if not (0 < share < 1 or none and share == 0):
        raise ValueError(f"the validation share must be in {'[0, 1)' if none else '(0, 1)'}, got {share}")


def share_flag(none: bool = False):
    """argparse type of a flag giving the share held out (:func:`check_share`): the benches' one range for it."""
    def parse(text: str) -> float:
        try:
            share = float(text)
            check_share(share, none)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return share
    return parse


def form_pattern(text: str) -> str:
    """argparse type of ``--pattern``: a regular expression with a group, its group 1 the form number."""
    try:
        groups = re.compile(text).groups
    except re.error as err:
        raise argparse.ArgumentTypeError(f"not a regular expression: {text!r} ({err})") from None
    if groups < 1:
        raise argparse.ArgumentTypeError(f"no group in {text!r}: group 1 is the form number, as in {DEFAULT_PATTERN!r}")
    return text


def fold_count(val_share: float) -> int:
    """How many disjoint hold-out blocks of ``val_share`` the forms make (0.2 → 5)."""
    check_share(val_share)
    return max(1, int(round(1 / val_share)))


def check_fold(fold: int | None, val_share: float) -> None:
    """ValueError unless ``fold`` is None or one of the ``fold_count(val_share)`` blocks."""
    if fold is not None and not 0 <= fold < fold_count(val_share):
        raise ValueError(f"fold must be in 0..{fold_count(val_share) - 1} for a share of {val_share:g}, got {fold}")


def parse_folds(text: str, val_share: float) -> list[int]:
    """The folds of a ``--folds K,K,…`` flag, each one of the ``fold_count(val_share)`` blocks and none twice (a
    writer cross-validation scores every letter once); ValueError otherwise."""
    try:
        folds = [int(k) for k in text.split(",")]
    except ValueError:
        raise ValueError(f"want comma-separated integers, got {text!r}") from None
    for fold in folds:
        check_fold(fold, val_share)
    repeated = sorted({fold for fold in folds if folds.count(fold) > 1})
    if repeated:
        raise ValueError(f"fold {', '.join(map(str, repeated))} given more than once: each fold's writers are held "
                         "out, and their letters scored, once")
    return folds


def held_out_names(data_root: str, pattern: str = DEFAULT_PATTERN) -> str | None:
    """Why no letter of ``data_root`` can be held out as another writer's (no class folder, or no file named like
    ``pattern``, e.g. the generated letters' ``alef_hand_0000.png``); None when some can."""
    root = Path(data_root)
    if not root.is_dir():
        return f"the data root {data_root} is not a folder"
    regex = re.compile(pattern)
    if not any(regex.match(f.name) for d in root.iterdir() if d.is_dir() for f in d.iterdir()):
        return (f"no file in the class folders of {data_root} is named like {pattern!r} (HHD's <class>_<form>.png), "
                "so no writer can be held out")
    return None


def writer_split(data_root: str, out: str, val_share: float = 0.2, pattern: str = DEFAULT_PATTERN,
                 fold: int | None = None) -> dict:
    """Links ``out/train`` and ``out/val``. ``fold`` None holds out the last ``val_share`` of each class's forms;
    ``fold`` K holds out the K-th of the ``fold_count(val_share)`` equal blocks of form numbers."""
    root = Path(data_root).resolve()
    check_fold(fold, val_share)
    if not root.is_dir():
        raise ValueError(f"the data root {data_root} is not a folder")
    out_dir = workdir.claim(out, "bench.writer_split", protect=(root,))   # never the data, nor another folder
    for split in ("train", "val"):
        shutil.rmtree(out_dir / split, ignore_errors=True)
    counts = {"train": 0, "val": 0}
    val = held_out_files(str(root), val_share, pattern, fold)
    for f in class_files(str(root)):
        split = "val" if f in val else "train"
        target = out_dir / split / f.parent.name / f.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(f, target)
        counts[split] += 1
    return counts


def class_files(data_root: str) -> list[Path]:
    """The files of ``data_root``'s folders (resolved paths), the ones a split divides."""
    root = Path(data_root).resolve()
    return [f for class_dir in sorted(p for p in root.iterdir() if p.is_dir())
            for f in sorted(p for p in class_dir.iterdir() if p.is_file())]


def held_out_files(data_root: str, val_share: float, pattern: str = DEFAULT_PATTERN,
                   fold: int | None = None) -> set[Path]:
    """The files of ``class_files(data_root)`` that :func:`writer_split` puts in val/: the last ``val_share`` of
    each class's forms, or with ``fold`` K the K-th of the ``fold_count(val_share)`` blocks."""
    regex = re.compile(pattern)
    check_fold(fold, val_share)
    folds = None if fold is None else fold_count(val_share)   # a share of 0 (nothing held out) is fine without one
    by_class: dict[str, list[tuple[int, Path]]] = {}
    for f in class_files(data_root):
        if m := regex.match(f.name):
            by_class.setdefault(f.parent.name, []).append((int(m.group(1)), f))
    held = set()
    for numbered in by_class.values():
        numbered.sort()
        if fold is None:
            start, end = int(round(len(numbered) * (1 - val_share))), len(numbered)
        else:
            start, end = block_bounds(len(numbered), fold, folds)
        held.update(f for _, f in numbered[start:end])
    return held


def shared_pictures(root: str, folder: str, files: set[Path]) -> str | None:
    """Why the images of ``root``'s class folders are not kept apart from ``files`` (images of ``folder``):
    ``root`` is ``folder``, lies inside it or holds it; or one of its images is the picture of one of ``files``
    (core.image_io.pixel_digest: a copy, renamed or re-encoded, too). None when they are apart."""
    from core.image_io import pixel_digest
    mine, theirs = Path(root).resolve(), Path(folder).resolve()
    if mine == theirs or mine.is_relative_to(theirs) or theirs.is_relative_to(mine):
        return f"{root} is {folder}, lies inside it or holds it"
    digests = {pixel_digest(f.read_bytes()): f for f in files}
    same = [(f, digests[d]) for f in class_files(root) if (d := pixel_digest(f.read_bytes())) in digests]
    if not same:
        return None
    (mine_file, their_file), more = same[0], len(same) - 1
    return (f"{len(same)} of the images of {root} are pictures of {folder} (e.g. {mine_file.parent.name}/"
            f"{mine_file.name} is {their_file.parent.name}/{their_file.name}" + (f", and {more} more)" if more else ")"))


def block_bounds(count: int, k: int, folds: int) -> tuple[int, int]:
    """Positions (in form-number order) of the K-th of ``folds`` equal blocks of a class's ``count`` letters."""
    return int(round(count * k / folds)), int(round(count * (k + 1) / folds))


def form_blocks(paths: list[str], folds: int, pattern: str = DEFAULT_PATTERN) -> list[int]:
    """The block (0 .. folds-1) of each ``<class>/<file>`` path, the one ``--fold K`` holds it out in; -1 for a
    name that does not match ``pattern`` (always trained on). The blocks are a writer-grouped cross-validation."""
    regex = re.compile(pattern)
    by_class: dict[str, list[tuple[int, int]]] = {}
    blocks = [-1] * len(paths)
    for i, path in enumerate(paths):
        if m := regex.match(Path(path).name):
            by_class.setdefault(Path(path).parent.name, []).append((int(m.group(1)), i))
    for numbered in by_class.values():
        numbered.sort()
        for k in range(folds):
            start, end = block_bounds(len(numbered), k, folds)
            for _, i in numbered[start:end]:
                blocks[i] = k
    return blocks


def first_forms(paths: list[str], share: float, pattern: str = DEFAULT_PATTERN) -> list[bool]:
    """Which of ``paths`` (``<class>/<file>``) are in the first ``share`` of their class's form numbers: a
    training set with fewer writers, for learning curves. Files whose names do not match ``pattern`` are kept."""
    regex = re.compile(pattern)
    by_class: dict[str, list[tuple[int, int]]] = {}
    keep = [True] * len(paths)
    for i, path in enumerate(paths):
        cls, name = Path(path).parent.name, Path(path).name
        if m := regex.match(name):
            by_class.setdefault(cls, []).append((int(m.group(1)), i))
    for numbered in by_class.values():
        numbered.sort()
        for _, i in numbered[int(round(len(numbered) * share)):]:
            keep[i] = False
    return keep


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--val-share", type=share_flag(none=True), default=0.2)
    parser.add_argument("--pattern", type=form_pattern, default=DEFAULT_PATTERN,
                        help="regex whose group 1 is the form number")
    parser.add_argument("--fold", type=int, default=None,
                        help="hold out the K-th block of forms (0-based) instead of the last --val-share")
    args = parser.parse_args(argv)
    problem = held_out_names(args.data_root, args.pattern) if args.val_share > 0 else None
    if problem:
        parser.error(problem)
    try:
        counts = writer_split(args.data_root, args.out, args.val_share, args.pattern, args.fold)
    except ValueError as err:
        parser.error(str(err))
    print(f"train {counts['train']} files, val {counts['val']} files under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
