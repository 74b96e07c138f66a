"""Faults the tests stage: a disk that fills up, a folder this user may not read, one no file can be made in."""
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


def disk_full_after_writes(monkeypatch, module, written: int) -> None:
    """``module.atomic_write`` writes ``written`` files whole, then fails as a full disk does (ENOSPC)."""
    done = []

    def atomic_write(path, data):
        if len(done) == written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        done.append(path)
        with open(path, "wb") as handle:
            handle.write(data)
    monkeypatch.setattr(module, "atomic_write", atomic_write)


def unreadable_folders(monkeypatch, *folders) -> None:
    """Listing any of ``folders`` (``os.listdir``, ``os.scandir``, so ``Path.iterdir`` too) fails as a folder without
    read permission does (EACCES), as it would for a user other than root."""
    refused = {os.path.abspath(folder) for folder in folders}

    def refusing(real):
        def listing(path="."):
            if not isinstance(path, int) and os.path.abspath(os.fsdecode(path)) in refused:   # not a folder's fd
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))
            return real(path)
        return listing
    monkeypatch.setattr(os, "listdir", refusing(os.listdir))
    monkeypatch.setattr(os, "scandir", refusing(os.scandir))


def read_only_folder(monkeypatch, folder) -> None:
    """No file can be created in ``folder`` from now on (``os.open`` with O_CREAT, ``open`` to write: EROFS naming
    the file), as on a read-only mount, for any user (root writes a folder whatever its mode)."""
    import builtins

    refused, real_os_open, real_open = os.path.abspath(folder), os.open, builtins.open

    def refuse(path):
        if not isinstance(path, int) and os.path.dirname(os.path.abspath(os.fsdecode(path))) == refused:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    def os_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if set(mode) & set("wxa"):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)
