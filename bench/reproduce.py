"""The command line that reproduces a benchmark: its module and arguments, after the ``LETTERS_*`` settings of the
environment it ran in (the training settings, the seed), which the benchmarks read as the pipeline does, and the
commit of the code it ran (so that a default changed since can be told apart)."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def command(module: str, argv: list[str] | None = None, python: str = "python") -> str:
    """``LETTERS_SEED=2 … python -m <module> <args>  # at <commit>``; ``argv`` None: this process's own arguments.
    The comment is :func:`revision`'s, left out outside a git checkout."""
    settings = [f"{name}={shlex.quote(value)}" for name, value in sorted(os.environ.items())
                if name.startswith("LETTERS_") and value]
    line = " ".join(settings + [shlex.join([python, "-m", module, *(sys.argv[1:] if argv is None else argv)])])
    at = revision()
    return f"{line}  # at {at}" if at else line


def revision(root: Path = ROOT) -> str:
    """The short hash of the commit checked out at ``root``, with " + uncommitted changes" when its files differ
    from it (files git ignores aside); "" when ``root`` is not a git checkout (or git is missing)."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    try:
        head, status = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain")
    except (OSError, subprocess.SubprocessError):
        return ""
    if head.returncode or status.returncode:
        return ""
    return head.stdout.strip() + (" + uncommitted changes" if status.stdout.strip() else "")
