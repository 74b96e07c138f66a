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


_stop_requested: int | None = None   # the signal that asked this process to stop, once raise_interrupt has run


def raise_interrupt(signum=None, _frame=None) -> None:
    """A handler for a command line tool: SIGTERM (a timeout, a kill, a service stop) acts as Ctrl-C does. The stop
    is recorded before the KeyboardInterrupt is raised: one raised inside a weakref callback or a ``__del__`` is
    printed as "Exception ignored" and lost, the record is not (:func:`stop_if_requested`)."""
    global _stop_requested
    _stop_requested = int(signum or signal.SIGINT)
    raise KeyboardInterrupt


def stop_requested() -> int | None:
    """The signal that asked this process to stop (through :func:`raise_interrupt`), or None."""
    return _stop_requested


def stop_if_requested() -> None:
    """Raises KeyboardInterrupt when a stop was asked for, even if its own KeyboardInterrupt was lost: called by
    what commits a result (a blessing, a push), so that a stopped run commits nothing."""
    if _stop_requested is not None:
        raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM raises KeyboardInterrupt for the ``with`` block as Ctrl-C (SIGINT, when Python's own handler is
    installed) does, both recorded (:func:`stop_requested`) for the block only; then the previous handlers are
    back. Nothing changes outside the main thread (where Python allows no handler)."""
    global _stop_requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _stop_requested = None
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, raise_interrupt)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, raise_interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _stop_requested = None


@contextlib.contextmanager
def interrupts_held():
    """A stop that would raise KeyboardInterrupt inside the block (SIGTERM under :func:`sigterm_as_interrupt`, SIGINT
    under it or Python's own handler) is held until the block has ended, then raised by the handler it was held from:
    recorded (:func:`stop_requested`) under :func:`sigterm_as_interrupt` only, as it would have been. What the block
    writes is written whole. A held stop wins over an error the block ends with (that error is its ``__context__``):
    the stop is not lost. Nothing changes outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    previous = {signum: signal.signal(signum, lambda signum, _frame: held.append(signum))
                for signum in STOP_SIGNALS if signal.getsignal(signum) in (raise_interrupt, signal.default_int_handler)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if held:   # here, not after the finally: a block that raised would have lost the stop
            previous[held[0]](held[0], None)
