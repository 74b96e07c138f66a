"""core/request_log.py and core/prediction_log.py: sampling, TFRecord framing, rotation, the total bound, readers,
and the TensorFlow-free PredictionLog against the real one."""
import core  # noqa: F401  (before TensorFlow)

import io
import math
import os
import threading

import pytest

from core import prediction_log, request_log
from tests.support import faults


def _record(i: int, size: int = 100) -> bytes:
    return prediction_log.predict_log("letters", "predict_images", 1, {"images": prediction_log.bytes_tensor(
        [bytes([i % 256]) * size])}, {}, 1.0, timestamp=i).SerializeToString()


@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0, 0.1])
def test_sampler_takes_its_share_of_2000_requests(rate, tmp_path):
    writer = request_log.RequestLogWriter(str(tmp_path / "req"), rate)
    n = 2000
    taken = sum(writer.sample() for _ in range(n))
    if rate in (0.0, 1.0):
        assert taken == n * rate
    else:   # binomial: mean n p, five standard deviations either side (a false failure about once in 1.7 million)
        spread = 5 * math.sqrt(n * rate * (1 - rate))
        assert n * rate - spread <= taken <= n * rate + spread


def test_unsampled_requests_build_nothing_and_write_nothing(tmp_path):
    writer = request_log.RequestLogWriter(str(tmp_path / "req"), 0.0)
    assert not writer.log(lambda: pytest.fail("built a record that was not sampled"))
    assert request_log.log_files(str(tmp_path / "req")) == []


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), "1", True])
def test_bad_sampling_rates_are_refused(rate, tmp_path):
    with pytest.raises(ValueError, match="between 0 and 1"):
        request_log.RequestLogWriter(str(tmp_path / "req"), rate)


def test_records_are_tfrecords_that_tensorflow_and_the_reader_parse(tmp_path):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    prefix = str(tmp_path / "logs" / "req")
    writer = request_log.RequestLogWriter(prefix)
    records = [_record(i) for i in range(5)]
    for record in records:
        writer.write(record)
    writer.close()
    (path,) = request_log.log_files(prefix)
    assert os.path.basename(path).startswith("req-") and path.endswith(".tfrecord")
    assert list(request_log.read_records(path)) == records
    assert [r.numpy() for r in tf.data.TFRecordDataset(path)] == records
    logs = list(request_log.read_logs(prefix))
    assert all(isinstance(entry, prediction_log_pb2.PredictionLog) for entry in logs)
    assert [entry.log_metadata.timestamp_secs for entry in logs] == list(range(5))


def test_files_rotate_by_size_and_the_oldest_go_past_the_total_bound(tmp_path):
    prefix = str(tmp_path / "req")
    record = _record(0, size=1000)
    frame = len(request_log.tfrecord(record))
    writer = request_log.RequestLogWriter(prefix, max_file_bytes=3 * frame, max_total_bytes=10 * frame)
    for i in range(40):
        writer.write(_record(i, size=1000))
        sizes = [os.path.getsize(p) for p in request_log.log_files(prefix)]
        assert max(sizes) <= 3 * frame and sum(sizes) <= 10 * frame
    writer.close()
    files = request_log.log_files(prefix)
    assert len(files) == 4   # 3 full files + the last record's, within 10 records' bytes
    kept = [r for path in files for r in request_log.read_records(path)]
    assert kept == [_record(i, size=1000) for i in range(40 - len(kept), 40)]   # the newest, in order


def test_a_record_bigger_than_a_file_gets_a_file_of_its_own(tmp_path):
    prefix = str(tmp_path / "req")
    writer = request_log.RequestLogWriter(prefix, max_file_bytes=500, max_total_bytes=5000)
    writer.write(_record(1, size=10))
    writer.write(_record(2, size=2000))
    writer.write(_record(3, size=10))
    writer.close()
    assert [len(list(request_log.read_records(p))) for p in request_log.log_files(prefix)] == [1, 1, 1]


def test_other_files_in_the_folder_are_never_touched(tmp_path):
    (tmp_path / "req-notes.txt").write_text("keep")
    (tmp_path / "requests-20250101T000000Z-000001.tfrecord").write_bytes(b"x" * 5000)   # another prefix
    writer = request_log.RequestLogWriter(str(tmp_path / "req"), max_file_bytes=200, max_total_bytes=400)
    for i in range(10):
        writer.write(_record(i, size=50))
    writer.close()
    assert (tmp_path / "req-notes.txt").exists() and (tmp_path / "requests-20250101T000000Z-000001.tfrecord").exists()


def test_a_truncated_tail_ends_the_file_and_a_corrupt_record_is_an_error(tmp_path):
    prefix = str(tmp_path / "req")
    writer = request_log.RequestLogWriter(prefix)
    for i in range(3):
        path = writer.write(_record(i))
    writer.close()
    data = open(path, "rb").read()
    for cut in (1, 5, 20):
        open(path, "wb").write(data[:-cut])
        assert list(request_log.read_records(path)) == [_record(0), _record(1)]
    broken = bytearray(data)
    broken[20] ^= 0xFF
    open(path, "wb").write(bytes(broken))
    with pytest.raises(ValueError, match="corrupt record at offset 0"):
        list(request_log.read_records(path))


def test_a_cut_tail_stops_tensorflow_and_ignore_errors_reads_the_records_before_it(tmp_path):
    """What the docs say of a killed writer's file: this module's readers skip its cut last record,
    tf.data.TFRecordDataset raises DataLossError there, and with .ignore_errors() reads every file's complete ones."""
    import tensorflow as tf

    prefix = str(tmp_path / "req")
    writer = request_log.RequestLogWriter(prefix, max_file_bytes=3 * len(request_log.tfrecord(_record(1))))
    for i in range(1, 7):
        writer.write(_record(i))
    writer.close()
    first, second = request_log.log_files(prefix)
    data = open(first, "rb").read()
    open(first, "wb").write(data[:-5])
    assert [r.log_metadata.timestamp_secs for r in request_log.read_logs(prefix)] == [1, 2, 4, 5, 6]
    with pytest.raises(tf.errors.DataLossError, match="truncated record"):
        list(tf.data.TFRecordDataset([first, second]))
    assert [r.numpy() for r in tf.data.TFRecordDataset([first, second]).ignore_errors()] == [
        _record(i) for i in (1, 2, 4, 5, 6)]


@pytest.mark.parametrize("data", [b"hello\n", b"x", bytes(11)], ids=["text", "one_byte", "11_zeros"])
def test_a_stream_too_short_for_one_record_is_told_apart_from_a_cut_tail(data):
    """A stream of 1-11 bytes holds no record's 12-byte header: not TFRecords (or damaged), where it had been a last
    record cut short, as after whole records; an empty one holds no record."""
    with pytest.raises(request_log.TooShort, match=f"^{len(data)} bytes?, too short to hold one record: not TFRecords"):
        list(request_log.frames(io.BytesIO(data)))
    whole = request_log.tfrecord(_record(0))
    with pytest.raises(request_log.TruncatedRecord) as cut:
        list(request_log.frames(io.BytesIO(whole + data)))
    assert type(cut.value) is request_log.TruncatedRecord and cut.value.offset == len(whole)
    assert list(request_log.frames(io.BytesIO(b""))) == []


def test_concurrent_writers_interleave_whole_records(tmp_path):
    prefix = str(tmp_path / "req")
    writer = request_log.RequestLogWriter(prefix, max_file_bytes=5000, max_total_bytes=10 ** 7)

    def write(start):
        for i in range(start, start + 50):
            writer.write(_record(i, size=200))

    threads = [threading.Thread(target=write, args=(k * 50,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    seen = sorted(r.log_metadata.timestamp_secs for r in request_log.read_logs(prefix))
    assert seen == list(range(200))


def test_a_full_disk_loses_only_the_records_it_refuses_and_makes_no_new_files(tmp_path):
    """Each record the full disk cut short had closed the file, and the next opened a new one: a full disk left
    an empty file per dropped request."""
    prefix = str(tmp_path / "req")
    writer = request_log.RequestLogWriter(prefix)
    for i in range(5):
        writer.write(_record(i))

    class FullDisk:   # while full: part of the frame written, then no space left
        def __init__(self, file):
            self.file, self.full = file, True

        def write(self, data):
            if self.full:
                self.file.write(bytes(data[:10]))
                raise OSError(28, "No space left on device")
            return self.file.write(data)

        def __getattr__(self, name):
            return getattr(self.file, name)

    disk = writer._file = FullDisk(writer._file)
    for i in range(5, 25):
        assert not writer.log(lambda i=i: _record(i))
    assert len(request_log.log_files(prefix)) == 1
    disk.full = False
    for i in range(25, 50):
        assert writer.log(lambda i=i: _record(i))
    writer.close()
    seen = [r.log_metadata.timestamp_secs for r in request_log.read_logs(prefix)]
    assert seen == [*range(5), *range(25, 50)]    # each partial record cut off, the later ones after them
    assert len(request_log.log_files(prefix)) == 1

    # where the partial record cannot be cut off, the next record starts a new file; an empty one is removed
    writer = request_log.RequestLogWriter(str(tmp_path / "other"))
    writer.write(_record(1))
    writer._file = FullDisk(writer._file)
    real_truncate = os.ftruncate
    try:
        os.ftruncate = lambda *a: (_ for _ in ()).throw(OSError(5, "I/O error"))
        assert not writer.log(lambda: _record(2))
    finally:
        os.ftruncate = real_truncate
    assert writer._file is None and writer.log(lambda: _record(3))
    writer.close()
    assert len(request_log.log_files(str(tmp_path / "other"))) == 2


def test_pruning_leaves_a_file_another_writer_has_open(tmp_path):
    prefix = str(tmp_path / "req")
    frame = len(request_log.tfrecord(_record(0, size=1000)))
    first = request_log.RequestLogWriter(prefix, max_file_bytes=10 * frame, max_total_bytes=30 * frame)
    second = request_log.RequestLogWriter(prefix, max_file_bytes=10 * frame, max_total_bytes=30 * frame)
    first.write(_record(0, size=1000))
    for i in range(1, 41):
        second.write(_record(i, size=1000))
    for i in range(41, 46):
        first.write(_record(i, size=1000))
    first.close()
    second.close()
    seen = {r.log_metadata.timestamp_secs for r in request_log.read_logs(prefix)}
    assert {0, 41, 42, 43, 44, 45} <= seen              # the first writer's file was kept while open
    assert set(range(21, 41)) <= seen and 1 not in seen  # the second one's oldest went


def test_a_file_system_without_locks_still_logs_and_prunes(tmp_path, monkeypatch):
    import errno

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(request_log.fcntl, "flock", no_locks)
    prefix = str(tmp_path / "req")
    frame = len(request_log.tfrecord(_record(0, size=1000)))
    writer = request_log.RequestLogWriter(prefix, max_file_bytes=3 * frame, max_total_bytes=6 * frame)
    assert all(writer.log(lambda i=i: _record(i, size=1000)) for i in range(20))
    writer.close()
    sizes = [os.path.getsize(path) for path in request_log.log_files(prefix)]
    assert sum(sizes) <= 6 * frame and len(list(request_log.read_logs(prefix))) >= 4


def test_write_errors_are_logged_once_and_do_not_raise_from_log(tmp_path, caplog):
    import shutil

    folder = tmp_path / "logs"
    writer = request_log.RequestLogWriter(str(folder / "req"), max_file_bytes=1, max_total_bytes=10 ** 6)
    writer.write(_record(0))
    shutil.rmtree(folder)
    folder.write_text("a file where the log folder was: every new log file fails")
    assert not writer.log(lambda: _record(1))
    assert not writer.log(lambda: _record(2))
    assert not writer.log(lambda: {}["a record that cannot be built"])
    messages = [r.getMessage() for r in caplog.records if "Could not write the request log" in r.getMessage()]
    assert len(messages) == 2 and "KeyError" in messages[1]


def test_a_folder_that_exists_but_cannot_be_written_is_refused_when_the_writer_is_made(tmp_path, monkeypatch):
    """It had been taken, and each record failed later (an ERROR per request, nothing written)."""
    folder = tmp_path / "logs"
    folder.mkdir()
    faults.read_only_folder(monkeypatch, folder)
    with pytest.raises(OSError) as caught:
        request_log.RequestLogWriter(str(folder / "req"))
    assert caught.value.filename == str(folder) and "Read-only file system" in str(caught.value)
    monkeypatch.undo()
    assert os.listdir(folder) == []
    writer = request_log.RequestLogWriter(str(folder / "req"))   # a folder that can be written: no file left by it
    assert os.listdir(folder) == [] and writer.log(lambda: _record(1))
    writer.close()


def test_a_folder_that_cannot_be_used_is_refused_with_the_real_reason(tmp_path):
    """A file where the folder should be had been File exists, and any failure to create a file in the folder had
    been told as the folder's own (/proc: No such file or directory, although it exists)."""
    import errno

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    for prefix, culprit in ((blocked / "req", blocked), (blocked / "sub" / "req", blocked / "sub")):
        with pytest.raises(OSError) as caught:
            request_log.RequestLogWriter(str(prefix))
        assert (caught.value.errno, caught.value.filename) == (errno.ENOTDIR, str(culprit))
        assert str(caught.value) == f"[Errno 20] Not a directory: '{culprit}'"
    with pytest.raises(OSError) as caught:
        request_log.RequestLogWriter("/proc/req")   # exists; the kernel refuses new files in it
    assert caught.value.filename == "/proc" and caught.value.errno == errno.ENOENT
    assert caught.value.strerror == "cannot create a file in this folder (No such file or directory)"


def test_a_log_folder_removed_or_renamed_while_logging_is_made_again_at_the_next_file(tmp_path):
    """It had never been: each record after the open file's last failed (No such file or directory) until a
    restart, a reload with an unchanged logging_config reusing the writer."""
    import shutil

    folder = tmp_path / "logs"
    frame = len(request_log.tfrecord(_record(1)))   # as each record's (timestamps 1 to 127)
    writer = request_log.RequestLogWriter(str(folder / "req"), max_file_bytes=2 * frame, max_total_bytes=6 * frame)
    assert all(writer.log(lambda i=i: _record(i)) for i in range(1, 5))
    folder.rename(tmp_path / "moved")
    assert all(writer.log(lambda i=i: _record(i)) for i in range(5, 20))
    assert [r.log_metadata.timestamp_secs for r in request_log.read_logs(str(folder / "req"))][-1] == 19
    shutil.rmtree(folder)
    assert all(writer.log(lambda i=i: _record(i)) for i in range(20, 30))
    writer.close()
    # 20 went to the file still open, removed with the folder; 21 to 24 pruned to the total bound (3 files of 2)
    assert [r.log_metadata.timestamp_secs for r in request_log.read_logs(str(folder / "req"))] == [*range(25, 30)]


def test_a_log_folder_deleted_while_a_file_is_open_is_noticed_and_a_new_file_opened(tmp_path, monkeypatch, caplog):
    """The records had gone on to the deleted file, unseen, until it reached 32 MiB (1000 of them said written,
    nothing said, the folder not made again). Its link count is read every CHECK_RECORDS records or CHECK_SECONDS,
    whichever comes first: a removal is said once, in a WARNING, and the records go to a new file."""
    import shutil

    folder = tmp_path / "del"
    writer = request_log.RequestLogWriter(str(folder / "requests"), 1.0)
    writer.write(b"a" * 100)
    shutil.rmtree(folder)
    assert all([writer.log(lambda: b"b" * 100) for _ in range(1000)])
    (path,) = request_log.log_files(str(folder / "requests"))   # the folder made again, one new file
    assert len(list(request_log.read_records(path))) == 1000 - request_log.CHECK_RECORDS + 1
    removed = [r for r in caplog.records if "was deleted while being written" in r.getMessage()]
    assert len(removed) == 1 and removed[0].levelname == "WARNING"
    assert removed[0].getMessage().startswith(f"The request log file {folder}/requests-")
    monkeypatch.setattr(request_log, "CHECK_SECONDS", 0.0)   # a slow stream: checked after a second
    shutil.rmtree(folder)
    assert writer.log(lambda: b"c" * 100)
    assert [list(request_log.read_records(p)) for p in request_log.log_files(str(folder / "requests"))] == [[b"c" * 100]]
    writer.close()


def test_a_write_failure_is_logged_once_per_episode_and_its_end_too(tmp_path, monkeypatch, caplog):
    """Each try names a new file, and the failure had been told by its message, file name and all: an ERROR per
    request; and, never forgotten, a second failure like the first after writing had resumed went unsaid."""
    import logging

    caplog.set_level(logging.INFO, logger="request_log")
    folder = tmp_path / "logs"
    writer = request_log.RequestLogWriter(str(folder / "req"), max_file_bytes=1, max_total_bytes=10 ** 6)
    assert writer.log(lambda: _record(1))
    for episode in range(2):
        faults.read_only_folder(monkeypatch, folder)   # remounted read-only, say
        assert not any([writer.log(lambda i=i: _record(i)) for i in range(10)])
        monkeypatch.undo()
        assert all([writer.log(lambda i=i: _record(i)) for i in range(3)])
    writer.close()
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "request_log"]
    assert [level for level, _ in said] == ["ERROR", "INFO"] * 2
    error, resumed = said[:2]
    assert error[1].startswith(f"Could not write the request log under {folder}/req: OSError: [Errno 30] ")
    assert error[1].endswith("; records are dropped until writing succeeds")
    assert resumed[1] == f"Writing the request log under {folder}/req again, after 10 record(s) dropped"


def test_the_tensorflow_free_messages_match_the_real_ones():
    """Same full names, field names, numbers, types and labels as tensorflow-serving-api's descriptors."""
    from tensorflow_serving.apis import prediction_log_pb2

    def check(lite, real):
        assert lite.full_name == real.full_name
        for field in lite.fields:
            twin = real.fields_by_name[field.name]
            assert (field.number, field.type, field.label) == (twin.number, twin.type, twin.label), field.full_name
            if field.message_type is not None:
                check(field.message_type, twin.message_type)
            if field.enum_type is not None:
                for value in field.enum_type.values:
                    assert real.fields_by_name[field.name].enum_type.values_by_name[value.name].number == value.number

    check(prediction_log.PredictionLog.DESCRIPTOR, prediction_log_pb2.PredictionLog.DESCRIPTOR)


def test_name_pattern_is_the_writers_names_of_a_prefix_path_or_url(tmp_path):
    """The monitor reads a prefix's files (gs:// too) by the pattern the writer names them with: its own names only."""
    writer = request_log.RequestLogWriter(str(tmp_path / "requests"), 1.0)
    writer.write(_record(1))
    writer.close()
    (path,) = request_log.log_files(str(tmp_path / "requests"))
    name = os.path.basename(path)
    for prefix in (str(tmp_path / "requests"), "gs://bucket/logs/requests"):
        pattern = request_log.name_pattern(prefix)
        assert pattern.fullmatch(name)
        assert not pattern.fullmatch(name.replace("requests-", "requests_canary-"))
        assert not pattern.fullmatch(name + ".tmp")
