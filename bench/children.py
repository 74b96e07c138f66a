"""A benchmark's child processes, stopped when it is stopped.

A benchmark's ``main`` runs under ``@core.signals.sigterm_as_interrupt()``: SIGTERM (a timeout, a kill, a job's stop)
acts as Ctrl-C does, so that its ``finally`` blocks run: without it SIGTERM ended the benchmark at once and its
children, re-parented, ran on (a whole pipeline run writing into ``--work``). :func:`started` runs one child in a
process group of its own and stops the group (the child and what it started in turn) when its block is left while it
runs.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Iterator

GRACE_SECONDS = 30   # how long a stopped child has to stop its own work (a pipeline run ends its step) before SIGKILL


@contextlib.contextmanager
def started(cmd: list[str], grace: float = GRACE_SECONDS, **popen) -> Iterator[subprocess.Popen]:
    """``subprocess.Popen(cmd, **popen)`` in a process group of its own, for the block. Left by an exception
    (KeyboardInterrupt: Ctrl-C, or SIGTERM under ``sigterm_as_interrupt``) or with the child still running, the
    group is sent SIGTERM, and SIGKILL after ``grace`` seconds or a second stop; its pipes are closed at the end."""
    with subprocess.Popen(cmd, start_new_session=True, **popen) as proc:
        finished = False
        try:
            yield proc
            finished = True
        finally:
            if not finished or proc.poll() is None:
                stop_group(proc, grace)


def stop_group(proc: subprocess.Popen, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM to ``proc``'s process group (``proc`` leads it), then, once ``proc`` has ended or after ``grace``
    seconds or a second stop, SIGKILL to what is left of the group."""
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(grace)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        pass
    _signal_group(proc, signal.SIGKILL)   # a grandchild the child left behind, or the child that did not stop
    proc.wait()


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:   # the whole group has ended
        pass
