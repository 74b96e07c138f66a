"""Crash-safe file writes (readers see the old file or the whole new one, never a part; new folders synced into
their parents), a lock file for one read-modify-write at a time across processes, glob patterns under a folder whose
name is taken literally, which names are hidden, and the removal of work folders a killed process left behind."""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import glob
import os
import secrets
import shutil
import stat
import sys
import time


def pattern_under(folder: str, pattern: str) -> str:
    """``pattern`` below ``folder`` for a glob function (Python's, ``tf.io.gfile``'s, TFX ``fileio``'s): the folder's
    own ``[``, ``*`` and ``?`` are escaped, so that a data root named ``letters [v2]`` is not a character class."""
    return os.path.join(glob.escape(folder), pattern)


def fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sync_filesystem(path: str) -> None:
    """Writes to disk everything written to the filesystem holding ``path`` (syncfs(2); sync(2) where the C library
    has no syncfs): one call for the many files a run wrote, where an fsync of each had cost a disk flush apiece
    (25 s for 5,400 small files, against 0.1 s)."""
    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs: {os.strerror(err)}", path)
    finally:
        os.close(fd)


def make_dirs(folder: str) -> None:
    """``os.makedirs(folder, exist_ok=True)``, each folder it creates synced into its parent (the parent fsynced),
    so that after a crash a file written and synced in a new folder is found by its path."""
    missing, path = [], folder
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        missing.append(path)
        path = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    for created in reversed(missing):
        fsync_dir(os.path.dirname(created))


def atomic_write(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that readers see the old file or the whole new one, even after a crash (as
    :func:`atomic_output` does)."""
    with atomic_output(path) as handle:
        handle.write(data)


TEMP_PREFIX, TEMP_SUFFIX = ".tmp-", ".part"   # atomic_output's temporary files: .tmp-<16 hex digits>.part


def is_temporary(name: str) -> bool:
    """Whether the file name ``name`` is one of :func:`atomic_output`'s temporary files (one a process killed while
    writing leaves behind)."""
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


@contextlib.contextmanager
def atomic_output(path: str, mode: str = "wb", **open_args):
    """A new file to write in the ``with`` block, which replaces ``path`` when the block ends, so that readers see
    the old file or the whole new one, even after a crash; an exception (Ctrl-C too) leaves ``path`` as it was and
    no temporary file. A symbolic link keeps pointing where it did: its target is the file replaced. The file keeps
    its permissions, or a new one gets the umask's (as ``open`` would give it), not a temporary file's 0600.
    ``mode`` and ``open_args`` as for ``open`` (a CSV: ``"w", newline="", encoding="utf-8"``), for output too
    large to hold in memory: it streams to the temporary file."""
    path = os.path.realpath(path)
    folder = os.path.dirname(path)
    make_dirs(folder)
    try:
        permissions = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        permissions = None
    for _ in range(100):
        tmp = os.path.join(folder, f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)   # the umask applies
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"no free temporary name in {folder}")
    try:
        with os.fdopen(fd, mode, **open_args) as handle:
            if permissions is not None:
                os.fchmod(handle.fileno(), permissions)
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(folder)


@contextlib.contextmanager
def atomic_outputs(paths: list[str], mode: str = "wb", **open_args):
    """:func:`atomic_output` for several files that belong together: their new files to write in the ``with``
    block (a list, in the order of ``paths``), each written and synced before the first replaces its path, then
    replaced in that order. An exception in the block or while they are synced (a full disk; Ctrl-C too) leaves
    every path as it was."""
    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(atomic_output(path, mode, **open_args)) for path in reversed(paths)][::-1]
        yield handles   # (entered last to first: the first path's is replaced first)
        for handle in handles:
            handle.flush()
            os.fsync(handle.fileno())


class LockHeld(Exception):
    """Another process holds the lock; ``holder``: the process id it wrote into the lock file ("" if unknown)."""

    def __init__(self, lock_path: str, holder: str):
        self.lock_path, self.holder = lock_path, holder
        super().__init__(f"{lock_path} is held by {self.who}")

    @property
    def who(self) -> str:
        """The holder, said: ``process 1234``, or ``another process`` when the lock file does not record it."""
        return f"process {self.holder}" if self.holder else "another process"


@contextlib.contextmanager
def exclusive(lock_path: str, wait: bool = True, waiting=None):
    """Holds an exclusive lock (flock) on ``lock_path`` (created if missing) for the ``with`` block: one process at
    a time, the others wait (or, not ``wait``, get :class:`LockHeld`); released if the process dies. The holder's
    process id is written into the file. ``waiting``: called with the :class:`LockHeld` of the holder before this
    waits for it (not when the lock is free), to say so."""
    os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            held = LockHeld(lock_path, lock.read().strip())
            if not wait:
                raise held from None
            if waiting is not None:
                waiting(held)
            fcntl.flock(lock, fcntl.LOCK_EX)
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def waiting_for(what: str):
    """An :func:`exclusive` ``waiting`` callback saying on stderr that this waits for ``what`` (``another import
    into …``) to end, naming the process holding the lock: a wait said nothing, and looked hung."""
    def waiting(held: LockHeld) -> None:
        print(f"waiting for {what} to end ({held.who} holds {held.lock_path})", file=sys.stderr, flush=True)
    return waiting


def read_error(path: str, err: BaseException) -> str:
    """Why the file ``path`` could not be read (``err``), for a skip's report: a symbolic link whose target is not
    there is said to be one, naming the target (``ls`` lists the link; ``No such file or directory`` of it misled)."""
    if os.path.islink(path):
        try:
            os.stat(path)
        except FileNotFoundError:
            with contextlib.suppress(OSError):
                return f"a symbolic link to a missing file ({printable(os.readlink(path))})"
        except OSError:   # a link loop: the error says it
            pass
    return f"{type(err).__name__}: {err}"


def is_hidden(path: str, root: str | None = None) -> bool:
    """Whether ``path``'s name starts with a dot; given the folder ``root`` it is in, whether any name of its path
    under ``root`` does (``.git/HEAD``, ``alef/.cache/1.png``). Such names are not read as data (the ExampleGen,
    ``letters-feedback import``)."""
    if root is None:
        return os.path.basename(path.rstrip("/")).startswith(".")
    rel = os.path.relpath(path, root)
    return rel != os.curdir and any(name.startswith(".") for name in rel.split(os.sep))


def utf8(name: str) -> bool:
    """Whether the file name (or path) ``name`` is UTF-8: a name that is not (a zip from another system) is skipped
    with :data:`NOT_UTF8`, as ``name_not_utf8``, by every command that reads a data root."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:   # a byte that is not UTF-8, kept by Python as a surrogate escape
        return False
    return True


NOT_UTF8 = "the file name is not UTF-8 (a zip from another system?): rename it"


def printable(name: str) -> str:
    """A file name as it can be printed and stored in JSON or CSV: bytes that are not UTF-8 (Python keeps them as
    surrogate escapes) shown as ``\\xNN``, and a backslash of the name doubled, so that two names never print alike
    (the byte 0xFF and the four characters ``\\xff``)."""
    return name.replace("\\", "\\\\").encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def cannot_read(path, err: OSError) -> str:
    """Why ``path`` (a folder or a file) could not be read, for an error's line: ``cannot read <path>: <reason>``,
    the path :func:`printable`."""
    return f"cannot read {printable(os.fspath(path))}: {err.strerror or err}"


def remove_stale_folders(parent: str, prefix: str, max_age_seconds: float, now: float | None = None) -> list[str]:
    """Removes the folders in ``parent`` whose name starts with ``prefix`` and that nothing was written into for
    ``max_age_seconds``: work folders of a process killed before it could remove its own (a kill -9 or a crash;
    nothing else would ever remove them). By age, not by process id: a process in another container may share the
    folder but not the process ids. The removed names."""
    removed = []
    if not os.path.isdir(parent):
        return removed
    now = time.time() if now is None else now
    for name in os.listdir(parent):
        folder = os.path.join(parent, name)
        if name.startswith(prefix) and os.path.isdir(folder) and not os.path.islink(folder) and \
                now - newest_write(folder) > max_age_seconds:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(name)
    return removed


def newest_write(folder: str) -> float:
    """The latest modification time of ``folder`` and everything in it."""
    newest = os.stat(folder).st_mtime
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            try:
                newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
            except OSError:
                pass
    return newest
