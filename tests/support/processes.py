"""Whether processes a test started, or had started, are still running."""
import time

import psutil


def running(pids: list[int], within: float) -> list[int]:
    """Those of ``pids`` still running after up to ``within`` seconds (a zombie, ended but not yet reaped by whoever
    it was re-parented to, has ended)."""
    deadline = time.monotonic() + within
    while True:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
