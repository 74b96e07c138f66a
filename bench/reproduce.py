"""The command line that reproduces a benchmark: its module and arguments, after the ``LETTERS_*`` settings of the
environment it ran in (the training settings, the seed), which the benchmarks read as the pipeline does."""
from __future__ import annotations

import os
import shlex
import sys


def command(module: str, argv: list[str] | None = None, python: str = "python") -> str:
    """``LETTERS_SEED=2 … python -m <module> <args>``; ``argv`` None: this process's own arguments."""
    settings = [f"{name}={shlex.quote(value)}" for name, value in sorted(os.environ.items())
                if name.startswith("LETTERS_") and value]
    return " ".join(settings + [shlex.join([python, "-m", module, *(sys.argv[1:] if argv is None else argv)])])
