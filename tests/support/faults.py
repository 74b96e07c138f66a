"""Faults the tests stage: a disk that fills up."""
import errno
import os
import stat


def disk_full_at_file(monkeypatch, nth: int) -> None:
    """``os.fsync`` of the ``nth`` regular file from now on fails as a full disk does (ENOSPC); folders sync."""
    synced, real_fsync = [], os.fsync

    def fsync(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            synced.append(fd)
            if len(synced) == nth:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)
