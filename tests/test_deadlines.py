"""core.deadlines: one thread keeps the deadlines of many short waits."""
import threading
import time

from core import deadlines
from core.deadlines import COMPACT_EVERY, Watchdog, join_all


def test_callbacks_run_at_their_deadlines_in_order_unless_cancelled():
    watchdog, fired, done = Watchdog(), [], threading.Event()
    started = time.monotonic()
    watchdog.call_later(0.3, lambda: (fired.append(("late", time.monotonic() - started)), done.set()))
    watchdog.call_later(0.1, lambda: fired.append(("early", time.monotonic() - started)))
    cancelled = watchdog.call_later(0.2, lambda: fired.append(("cancelled", 0)))
    assert cancelled.cancel() and cancelled.cancel()            # stopped in time (and stays so)
    assert done.wait(5)
    assert [name for name, _ in fired] == ["early", "late"]
    assert 0.1 <= fired[0][1] < 0.3 <= fired[1][1] < 2


def test_a_deadline_that_fired_cannot_be_cancelled():
    watchdog, ran = Watchdog(), threading.Event()
    deadline = watchdog.call_later(0.0, ran.set)
    assert ran.wait(5) and not deadline.cancel()


def test_a_deadline_past_what_a_thread_can_wait_leaves_the_watchdog_running():
    """A deadline further than threading.TIMEOUT_MAX (a REST timeout of 1e13 ms) is waited without end: the wait had
    raised OverflowError, ending the watchdog's thread and every deadline after it."""
    watchdog, ran = Watchdog(), threading.Event()
    watchdog.call_later(threading.TIMEOUT_MAX * 2, lambda: None)
    time.sleep(0.1)
    watchdog.call_later(0.05, ran.set)
    assert ran.wait(5)


def test_cancelled_deadlines_do_not_pile_up():
    watchdog = Watchdog()
    for _ in range(3 * COMPACT_EVERY):
        watchdog.call_later(3600, lambda: None).cancel()
    assert len(watchdog._heap) <= COMPACT_EVERY


def test_join_all_waits_for_its_threads_within_one_shared_deadline(monkeypatch):
    """Threads that do not end are waited for ``seconds`` in all, not ``seconds`` each: the scheduler's and the
    server's stops had joined each busy thread for the whole timeout, one after the other."""
    clock, waits = [100.0], []

    class Stuck:   # a thread that never ends: each join waits out its timeout, on a clock of its own
        def join(self, timeout=None):
            waits.append(timeout)
            clock[0] += timeout

        def is_alive(self):
            return True

    monkeypatch.setattr(deadlines.time, "monotonic", lambda: clock[0])
    stuck = [Stuck(), Stuck(), Stuck()]
    assert join_all(stuck, 10) == stuck
    assert waits == [10, 0, 0] and clock[0] == 110.0
    done = [threading.Thread(target=lambda: None) for _ in range(3)]
    for thread in done:
        thread.start()
    assert join_all(done, 10) == []
