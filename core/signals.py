"""Stopping a server on SIGTERM / SIGINT without doing anything inside the signal handler.

Python runs a signal handler in the main thread between two bytecodes, wherever that thread is: also inside
``threading.Event.wait`` holding the event's lock, or inside ``Thread.start`` holding threading's own lock. A handler
that sets that event, starts a thread or logs can then wait forever for a lock its own thread holds. So the handlers
installed here do nothing; the signal's number reaches a pipe (``signal.set_wakeup_fd``, written by the interpreter's
C-level handler) and a watcher thread of its own calls ``on_stop`` from there.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Callable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signals(on_stop: Callable[[int], None], signals=STOP_SIGNALS) -> threading.Thread:
    """Calls ``on_stop(signum)`` once, from a watcher thread, when the first of ``signals`` arrives (later ones are
    ignored). Must be called from the main thread, as ``signal.signal`` must; returns the watcher."""
    wanted = {int(s) for s in signals}
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)      # a full pipe drops a signal's byte instead of blocking the handler
    signal.set_wakeup_fd(write_fd)
    for signum in wanted:
        signal.signal(signum, _ignore)

    def watch() -> None:
        while True:
            data = os.read(read_fd, 1)
            if not data:
                return
            if data[0] in wanted:
                on_stop(data[0])
                return

    watcher = threading.Thread(target=watch, name="stop-signals", daemon=True)
    watcher.start()
    return watcher


def _ignore(_signum, _frame) -> None:
    """The Python-level handler: nothing (the watcher thread acts on the signal)."""


def raise_interrupt(_signum=None, _frame=None) -> None:
    """A handler for a command line tool: SIGTERM (a timeout, a kill, a service stop) acts as Ctrl-C does."""
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM raises KeyboardInterrupt for the ``with`` block, then the previous handler is back; nothing changes
    outside the main thread (where Python allows no handler)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
