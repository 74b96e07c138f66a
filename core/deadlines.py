"""Deadlines for many short waits, kept by one thread.

A ``threading.Timer`` per request starts a thread each time (about 0.3 ms, a third of a small request's cost);
:data:`WATCHDOG` keeps every pending deadline in one heap and runs each expired one's callback on its thread, so
callbacks must be short (a socket shut down). :class:`ExchangeDeadline` bounds one HTTP exchange with it;
:func:`join_all` waits for several threads within one deadline.
"""
from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from typing import Callable


COMPACT_EVERY = 4096


def seconds_left(deadline: float) -> float:
    """Seconds until ``deadline`` (a time.monotonic() value), 0 once it passed."""
    return max(deadline - time.monotonic(), 0.0)


def waitable(seconds: float | None) -> float | None:
    """``seconds`` as a thread's wait takes it: None (no end) when there are none or more than such a wait can take
    (threading.TIMEOUT_MAX, about 292 years: a longer one raises OverflowError)."""
    return None if seconds is None or seconds >= threading.TIMEOUT_MAX else seconds


def join_all(threads, seconds: float) -> list[threading.Thread]:
    """Waits for ``threads`` to end within one deadline, ``seconds`` away, shared by all of them (a join of
    ``seconds`` each, one after the other, could wait that long for each of them); the threads still running."""
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.join(seconds_left(deadline))
    return [thread for thread in threads if thread.is_alive()]


class Deadline:
    """One pending callback: :meth:`cancel` before it runs, and it never will."""

    __slots__ = ("when", "callback", "_state", "_lock")

    def __init__(self, when: float, callback: Callable[[], None]):
        self.when = when
        self.callback = callback
        self._state = "pending"
        self._lock = threading.Lock()

    def cancel(self) -> bool:
        """True if it was stopped in time; False if its callback has run (or is running)."""
        with self._lock:
            if self._state == "pending":
                self._state = "cancelled"
            return self._state == "cancelled"

    def _fire(self) -> None:
        with self._lock:
            if self._state != "pending":
                return
            self._state = "fired"
        self.callback()


class Watchdog:
    """Runs callbacks at their deadlines on one daemon thread (started on first use)."""

    def __init__(self):
        self._heap: list = []
        self._order = itertools.count()
        self._pushes = 0
        self._cond = threading.Condition()
        self._thread = None

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Deadline:
        deadline = Deadline(time.monotonic() + seconds, callback)
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
                self._thread.start()
            self._pushes += 1
            if self._pushes % COMPACT_EVERY == 0:   # most deadlines are cancelled long before they come up
                self._heap = [entry for entry in self._heap if entry[2]._state == "pending"]
                heapq.heapify(self._heap)
            earliest = not self._heap or deadline.when < self._heap[0][0]
            heapq.heappush(self._heap, (deadline.when, next(self._order), deadline))
            if earliest:
                self._cond.notify()
        return deadline

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][2]._state == "cancelled":
                        heapq.heappop(self._heap)        # (cancelled ones leave the heap as they come up)
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        deadline = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(waitable(self._heap[0][0] - now) if self._heap else None)
            try:
                deadline._fire()
            except Exception:  # noqa: BLE001 - one callback's failure must not stop the others
                pass


WATCHDOG = Watchdog()


class ExchangeDeadline:
    """The end of one exchange's time on an ``http.client`` connection: its socket is shut down then, so that the
    read waiting on it ends at once (a cut answer can look whole to http.client, so :meth:`finish` is what tells);
    nothing once it has finished. A connection still being opened then is not cut (its connect is bounded by its
    own timeout): to bound the whole exchange, open it first and give the clock the time left."""

    def __init__(self, conn, seconds: float):
        self.conn = conn
        self._deadline = WATCHDOG.call_later(seconds, self._cut)

    def _cut(self) -> None:
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def finish(self) -> bool:
        """Stops the clock; whether the exchange finished in time."""
        return self._deadline.cancel()
