"""core/signals.py: a stop signal reaches the server even when it lands where the main thread holds a lock."""
import subprocess
import sys

from core import configs

# The main thread holds the lock of the event it waits on (as a server does inside Event.wait, ten times a second
# while it polls for its first model) when SIGTERM arrives. A handler that set that event itself would wait forever
# for the lock its own thread holds; here the watcher thread sets it once the main thread lets go.
SCRIPT = r"""
import os, signal, threading, time
from core.signals import stop_on_signals

stopped = threading.Event()
calls = []

def on_stop(signum):
    calls.append(signum)
    stopped.set()

watcher = stop_on_signals(on_stop)
with stopped._cond:
    os.kill(os.getpid(), signal.SIGTERM)    # the Python-level handler runs here, in this thread, the lock held
    time.sleep(0.3)
    assert not stopped.is_set()
print("stopped" if stopped.wait(20) else "not stopped", [signal.Signals(s).name for s in calls], flush=True)
os.kill(os.getpid(), signal.SIGINT)         # a second signal is ignored: no KeyboardInterrupt, no second call
time.sleep(0.3)
watcher.join(5)
print("calls", len(calls), "watcher alive", watcher.is_alive(), flush=True)
"""


def test_a_stop_signal_inside_the_waited_events_lock_still_stops():
    # With the handler setting the event itself (the server's before), this run hangs until the timeout.
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=str(configs.PROJECT_ROOT), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["stopped ['SIGTERM']", "calls 1 watcher alive False"]


# SIGTERM lands while a weakref callback runs (as it did while the embedded server loaded a model): CPython prints
# "Exception ignored" and drops the KeyboardInterrupt, so the process carries on; the recorded stop still ends it.
LOST = r"""
import signal, sys, weakref
from core.signals import sigterm_as_interrupt, stop_if_requested, stop_requested

class Thing:
    pass

with sigterm_as_interrupt():
    thing = Thing()
    ref = weakref.ref(thing, lambda _: signal.raise_signal(signal.SIGTERM))
    del thing                                  # the callback runs; its KeyboardInterrupt is ignored
    print("carried on", signal.Signals(stop_requested()).name, flush=True)
    try:
        stop_if_requested()
    except KeyboardInterrupt:
        print("stopped", flush=True)
        sys.exit(130)
"""


def test_a_stop_whose_interrupt_was_lost_in_a_weakref_callback_is_still_recorded():
    done = subprocess.run([sys.executable, "-c", LOST], cwd=str(configs.PROJECT_ROOT), capture_output=True,
                          text=True, timeout=60)
    assert "Exception ignored" in done.stderr and "KeyboardInterrupt" in done.stderr
    assert done.stdout.splitlines() == ["carried on SIGTERM", "stopped"] and done.returncode == 130


def test_ctrl_c_is_recorded_too_and_the_record_lasts_for_its_block_only():
    import signal
    from core import signals
    with signals.sigterm_as_interrupt():
        assert signals.stop_requested() is None
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass
        assert signals.stop_requested() == signal.SIGINT
    assert signals.stop_requested() is None   # the code run after the block (or the next test) is not stopped
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with signals.sigterm_as_interrupt():
        assert signals.stop_requested() is None
        signals.stop_if_requested()   # nothing asked: carries on


def test_a_stop_held_outside_sigterm_as_interrupt_is_raised_but_not_recorded():
    """Python's own Ctrl-C handler records nothing: a Ctrl-C held by interrupts_held alone had been recorded for the
    rest of the process, so every later stop_if_requested raised again."""
    import os
    import signal
    from core import signals
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    held = False
    try:
        with signals.interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)
            held = True   # reached: the stop waits for the block's end
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the held Ctrl-C was not raised")
    assert held and signals.stop_requested() is None
    signals.stop_if_requested()   # nothing recorded: carries on
    with signals.sigterm_as_interrupt():   # under it the held stop is recorded, as its handler records it
        try:
            with signals.interrupts_held():
                os.kill(os.getpid(), signal.SIGTERM)
        except KeyboardInterrupt:
            assert signals.stop_requested() == signal.SIGTERM
        else:
            raise AssertionError("the held SIGTERM was not raised")


def test_a_stop_held_while_the_block_fails_is_raised_with_the_failure_as_its_context():
    """An error ending the block (a history that cannot be written) had dropped the held stop: the process carried
    on as if no one had asked it to stop."""
    import os
    import signal
    from core import signals
    with signals.sigterm_as_interrupt():
        try:
            with signals.interrupts_held():
                os.kill(os.getpid(), signal.SIGTERM)
                raise OSError("disk full")
        except KeyboardInterrupt as err:
            assert isinstance(err.__context__, OSError) and str(err.__context__) == "disk full"
        except OSError:
            raise AssertionError("the held stop was lost") from None
        assert signals.stop_requested() == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is not signals.raise_interrupt
