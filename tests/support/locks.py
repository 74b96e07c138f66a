"""A lock (core.files.exclusive) held by another holder for a while, as another process's command would hold it."""
import contextlib
import threading

from core.files import exclusive


@contextlib.contextmanager
def held_by_another(lock: str, seconds: float):
    """``lock`` taken by another thread on entering (flock: another open file waits, in this process too) and
    released ``seconds`` later, so that what the block runs waits for it; released at the latest when it ends."""
    held, release = threading.Event(), threading.Event()

    def other():
        with exclusive(str(lock)):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=other)
    thread.start()
    held.wait(30)
    threading.Timer(seconds, release.set).start()
    try:
        yield
    finally:
        release.set()
        thread.join(30)
