"""core/files.py: atomic_write replaces a file whole, keeps its permissions and a symbolic link to it."""
import os
import stat

import pytest

from core.files import atomic_write, printable


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_file_gets_the_umasks_permissions_and_a_replaced_one_keeps_its_own(tmp_path):
    """The temporary file's 0600 had become the file's: a released models.config, the monitor's report and
    exported feedback could not be read by a server or web server running as another user."""
    old = os.umask(0o022)
    try:
        atomic_write(str(tmp_path / "new.txt"), b"one")
        assert mode(tmp_path / "new.txt") == 0o644
        (tmp_path / "kept.txt").write_bytes(b"old")
        os.chmod(tmp_path / "kept.txt", 0o640)
        atomic_write(str(tmp_path / "kept.txt"), b"new")
        assert (tmp_path / "kept.txt").read_bytes() == b"new" and mode(tmp_path / "kept.txt") == 0o640
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt", "new.txt"]   # no temporary file left


def test_a_symbolic_link_keeps_pointing_at_the_file_it_named(tmp_path):
    (tmp_path / "real.config").write_bytes(b"old")
    (tmp_path / "models.config").symlink_to("real.config")
    atomic_write(str(tmp_path / "models.config"), b"new")
    assert os.readlink(tmp_path / "models.config") == "real.config"
    assert (tmp_path / "real.config").read_bytes() == b"new"


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    (tmp_path / "f").write_bytes(b"old")

    def full(*_):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError):
        atomic_write(str(tmp_path / "f"), b"new")
    assert os.listdir(tmp_path) == ["f"] and (tmp_path / "f").read_bytes() == b"old"


def test_printable_shows_bytes_that_are_not_utf8():
    assert printable(os.fsdecode(b"caf\xe9.png")) == "caf\\xe9.png" and printable("שלום.png") == "שלום.png"


def test_two_names_never_print_alike():
    """A name holding the byte 0xFF and one holding the characters backslash, x, f, f had printed alike (bad\\xff.png),
    so a batch prediction's CSV gave one an answer and the other an error under the same path."""
    names = [os.fsdecode(b"bad\xffname.png"), "bad\\xffname.png", "a\\b.png", "a\\\\b.png"]
    assert len({printable(name) for name in names}) == 4
    assert printable("a\\b.png") == "a\\\\b.png"


def test_atomic_output_streams_and_a_stop_midway_leaves_the_old_file(tmp_path):
    from core.files import atomic_output
    (tmp_path / "rows.csv").write_text("old\n")
    os.chmod(tmp_path / "rows.csv", 0o640)
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(str(tmp_path / "rows.csv"), "w", newline="", encoding="utf-8") as handle:
            handle.write("half\n")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ["rows.csv"] and (tmp_path / "rows.csv").read_text() == "old\n"
    with atomic_output(str(tmp_path / "rows.csv"), "w", newline="", encoding="utf-8") as handle:
        handle.write("א,1\r\n")
        handle.write("ב,2\r\n")
    assert (tmp_path / "rows.csv").read_bytes() == "א,1\r\nב,2\r\n".encode() and mode(tmp_path / "rows.csv") == 0o640
    assert os.listdir(tmp_path) == ["rows.csv"]


def test_each_folder_a_write_creates_is_synced_into_its_parent(tmp_path, monkeypatch):
    """Only the new file's own folder had been synced: after a power cut a new folder's entry in its parent (the
    feedback store's images/<xx>/, say) could be missing, and with it a file whose row the store had committed."""
    synced, real_fsync = [], os.fsync
    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    atomic_write(str(tmp_path / "a" / "b" / "new.txt"), b"one")
    assert (tmp_path / "a" / "b" / "new.txt").read_bytes() == b"one"
    assert {str(tmp_path), str(tmp_path / "a"), str(tmp_path / "a" / "b")} <= set(synced)
    synced.clear()
    atomic_write(str(tmp_path / "a" / "b" / "new.txt"), b"two")   # no new folder: the file's folder alone
    assert [path for path in synced if os.path.isdir(path)] == [str(tmp_path / "a" / "b")]


def test_files_written_together_are_all_replaced_or_none_when_one_cannot_be_written(tmp_path, monkeypatch):
    """A full disk while the second of a report's files was written had left the first new beside the others old."""
    from core.files import atomic_outputs
    from tests.support.faults import disk_full_at_file
    paths = [str(tmp_path / name) for name in ("a.json", "b.png", "c.png")]
    for path in paths:
        open(path, "wb").write(b"old")
    with monkeypatch.context() as patch:
        disk_full_at_file(patch, 2)
        with pytest.raises(OSError, match="No space left"):
            with atomic_outputs(paths) as handles:
                for handle in handles:
                    handle.write(b"new")
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.png", "c.png"]
    assert [open(path, "rb").read() for path in paths] == [b"old"] * 3
    with atomic_outputs(paths) as handles:
        for handle, data in zip(handles, (b"1", b"2", b"3")):
            handle.write(data)
    assert [open(path, "rb").read() for path in paths] == [b"1", b"2", b"3"]
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.png", "c.png"]
