"""The folder-per-class letters a benchmark is given (--real-root, --data-root, …), checked before any work."""
from __future__ import annotations

import argparse
import os

from pipeline import evaluate


def letters_problem(root: str) -> str | None:
    """Why ``root`` holds no letters to read: not a folder, or no file in a class folder (listed, nothing read, as
    ``pipeline.evaluate.labelled_files`` lists them); None when it holds some."""
    if not os.path.isdir(root):
        return f"{root} is not a folder"
    files, skipped = evaluate.labelled_files(root)
    if files:
        return None
    return f"no images in the class folders of {root}" + (
        f" ({len(skipped)} files skipped, e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else "")


def letters_folder(text: str) -> str:
    """argparse type of a folder of letters (:func:`letters_problem`): a usage error as the command line is read,
    before anything is generated or trained."""
    problem = letters_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text
