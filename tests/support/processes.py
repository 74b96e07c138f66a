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


def sigterm_stops_all(command: list[str], pids_file, cwd: str) -> list[int]:
    """Starts ``command`` (a bench whose stand-in child writes the pids to stop, space-separated, to ``pids_file``),
    sends it SIGTERM once they are written, and returns those still running 5 s after it ended (none, if the bench
    stops what it started); whatever runs on is killed."""
    import os
    import signal
    import subprocess

    bench = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = []
    try:
        deadline = time.monotonic() + 20
        while not pids_file.exists() and bench.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        started = [int(pid) for pid in pids_file.read_text().split()]
        bench.send_signal(signal.SIGTERM)
        bench.wait(15)
        return running(started, within=5)
    finally:
        bench.kill()
        bench.wait()
        for pid in running(started, within=0):
            os.kill(pid, signal.SIGKILL)
