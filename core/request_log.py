"""Request logs in TF Serving's format: ``tensorflow.serving.PredictionLog`` records in TFRecord files.

One writer for the embedded model server (``ModelConfig.logging_config``) and the web backend
(``--request-log-dir``). A :class:`RequestLogWriter`

* samples: :meth:`~RequestLogWriter.sample` is True with probability ``sampling_rate`` (0 = never, 1 = always),
  as TF Serving's RequestLogger does before it builds a record, so an unsampled request costs one random number;
* appends each record to ``<filename_prefix>-<UTC time>-<n>.tfrecord`` (TFRecord framing: length, masked
  CRC-32C of the length, data, masked CRC-32C of the data) in one unbuffered ``write``: when it returns the
  record is in the operating system, so a killed process loses at most a record being written (this module's
  readers stop quietly at the truncated tail it leaves);
* rotates to a new file before one would pass ``max_file_bytes`` and, when it opens one, deletes the oldest
  files of the prefix until all of them (the new one included, once full) fit in ``max_total_bytes``, but
  never a file another writer still has open (each holds a shared ``flock`` on its own);
* after a write that fails part-way (a full disk) cuts the partial record off and goes on in a new file;
* makes the folder again when it opens a file and finds it gone (removed or renamed while logging), and notices
  the open file deleted (its folder removed) within ``CHECK_RECORDS`` records or ``CHECK_SECONDS``: it says so in a
  WARNING and goes on in a new file, where the records had gone on to the deleted one until it was full;
* is thread-safe (one lock around rotation and the write).

Readers: :func:`log_files` (a prefix's files, oldest first; :func:`name_pattern`, their names), :func:`read_records`
(a file's complete records, checksums verified), :func:`frames` (the records of any stream, a record whose checksum
fails told apart) and :func:`read_logs` (parsed ``PredictionLog`` protos; imports tensorflow-serving-api).
TensorFlow's ``tf.data.TFRecordDataset`` reads the files too, but raises DataLossError (``truncated record at …``)
at a killed writer's cut last record; ``tf.data.TFRecordDataset(files).ignore_errors()`` reads the complete records
of every file (and skips a damaged record as silently). Nothing here imports TensorFlow.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import random
import re
import struct
import tempfile
import threading
import time

import google_crc32c

log = logging.getLogger("request_log")

SUFFIX = ".tfrecord"
DEFAULT_MAX_FILE_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_TOTAL_BYTES = 1024 * 1024 * 1024
_HEADER = 12   # uint64 length + uint32 masked CRC of the length
_STAMP = "%Y%m%dT%H%M%SZ"
_NAME = r"\d{8}T\d{6}Z-\d{6}" + re.escape(SUFFIX)
# How often the open file is checked for deletion (its link count, os.fstat: as slow as the record's own write on
# some systems, so not for each record): every CHECK_RECORDS records or CHECK_SECONDS, whichever comes first
CHECK_RECORDS = 100
CHECK_SECONDS = 1.0


def check_sampling_rate(rate, source: str = "sampling_rate") -> float:
    """``rate`` as a float in [0, 1]; ValueError naming ``source`` otherwise."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
        raise ValueError(f"{source} must be a number between 0 and 1, got {rate!r}")
    return float(rate)


# ------------------------------------------------------------------------------------------ TFRecord
def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    """One TFRecord: the bytes ``tf.io.TFRecordWriter`` writes for ``data``."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked_crc(length)) + data + struct.pack("<I", _masked_crc(data))


class TruncatedRecord(ValueError):
    """A TFRecord stream's last record is cut short (its writer stopped or is writing it): nothing follows it."""

    def __init__(self, offset: int):
        super().__init__(f"the record at offset {offset} is cut short")
        self.offset = offset


class TooShort(TruncatedRecord):
    """A stream shorter than one record's header, not empty: no record can be framed in it. Not TFRecords, or damaged
    (its first record cut short in its header: a writer's one write makes that rare); a TruncatedRecord at offset 0
    told apart, as :func:`read_records` reads it."""

    def __init__(self, size: int):
        ValueError.__init__(self, f"{size} byte{'s' if size > 1 else ''}, too short to hold one record: not "
                                  "TFRecords, or damaged (its first record cut short)")
        self.offset = 0


class CorruptLength(ValueError):
    """A record's length does not match its checksum: where the record ends, and so the rest of the stream, is
    unknown."""

    def __init__(self, offset: int):
        super().__init__(f"corrupt record length at offset {offset}")
        self.offset = offset


def frames(handle):
    """The records of a binary TFRecord stream (``handle.read(n)``), one at a time: ``(offset, data, intact)``,
    ``intact`` False for a record whose data do not match their checksum (its length, which does, says where the
    next record starts). A stream ending inside a record raises TruncatedRecord (TooShort when it is shorter than
    one record's header), a length that does not match its checksum CorruptLength; an empty one holds no record."""
    offset = 0
    while header := handle.read(_HEADER):
        if len(header) < _HEADER:
            raise TooShort(len(header)) if offset == 0 else TruncatedRecord(offset)
        length, crc = struct.unpack("<QI", header)
        if _masked_crc(header[:8]) != crc:
            raise CorruptLength(offset)
        body = handle.read(length + 4)
        if len(body) < length + 4:
            raise TruncatedRecord(offset)
        data = body[:length]
        yield offset, data, _masked_crc(data) == struct.unpack("<I", body[length:])[0]
        offset += _HEADER + length + 4


def read_records(path: str):
    """The complete records of one file, in order. A truncated last record (the writer was killed while
    writing it) ends the file quietly; a checksum that does not match raises ValueError naming file and offset."""
    with open(path, "rb") as handle:
        try:
            for offset, data, intact in frames(handle):
                if not intact:
                    raise ValueError(f"{path}: corrupt record at offset {offset}")
                yield data
        except TruncatedRecord:
            return
        except CorruptLength as err:
            raise ValueError(f"{path}: {err}") from None


# ------------------------------------------------------------------------------------------ files
def _split(prefix: str) -> tuple[str, str]:
    """(folder, start of the file names) of a prefix: ``/logs/requests`` -> (``/logs``, ``requests-``);
    a prefix ending in a separator is a folder (names start with the time)."""
    folder, base = os.path.split(os.path.abspath(prefix) + (os.sep if prefix.endswith(os.sep) else ""))
    return folder, base + "-" if base else ""


def name_pattern(prefix: str) -> re.Pattern:
    """The names (without their folder) the writer gives the files of ``prefix``: ``requests-<UTC time>-<n>.tfrecord``
    for ``/logs/requests``, and not another prefix's that starts alike (``requests_canary-…``). Only the prefix's
    last part counts, so a URL (``gs://bucket/logs/requests``) gets the same pattern as a path."""
    return re.compile(re.escape(_split(prefix)[1]) + _NAME)


def beside_folder(prefix: str) -> str | None:
    """Where the files of ``prefix`` go when it names a folder that exists (a mounted volume) without a trailing
    separator: beside the folder, not in it (said as a warning); None for any other prefix."""
    if prefix.endswith(os.sep) or not os.path.isdir(prefix):
        return None
    folder, start = _split(prefix)
    return (f"filename_prefix {prefix!r} names a folder: the request log files go beside it, in {folder}, named "
            f"{start}<UTC time>-<n>{SUFFIX}; end it with '/' to write them inside the folder")


def log_files(prefix: str) -> list[str]:
    """The log files written under ``prefix``, oldest first (names hold the UTC time they were opened)."""
    folder, _ = _split(prefix)
    pattern = name_pattern(prefix)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return [os.path.join(folder, name) for name in sorted(names) if pattern.fullmatch(name)]


def read_logs(prefix: str):
    """Every complete record under ``prefix`` as a ``tensorflow.serving.PredictionLog``, oldest first."""
    from tensorflow_serving.apis import prediction_log_pb2

    for path in log_files(prefix):
        for data in read_records(path):
            yield prediction_log_pb2.PredictionLog.FromString(data)


def fill_metadata(record, model_name: str, signature_name: str, version: int, sampling_rate: float,
                  request_origin: str = "", timestamp: float | None = None):
    """Sets a PredictionLog's ``log_metadata``: the model spec that answered (name, signature, version), the
    sampling config, the SavedModel tags (``serve``), the time (``timestamp_secs``) and the request origin.
    Works on the real message and on :mod:`core.prediction_log`'s (same field names). Returns ``record``."""
    metadata = record.log_metadata
    metadata.model_spec.name = model_name
    metadata.model_spec.signature_name = signature_name
    metadata.model_spec.version.value = version
    metadata.sampling_config.sampling_rate = sampling_rate
    metadata.saved_model_tags.append("serve")
    metadata.timestamp_secs = int(time.time() if timestamp is None else timestamp)
    if request_origin:
        metadata.request_origin = request_origin
    return record


# ------------------------------------------------------------------------------------------ writer
def _delete_unless_open(path: str) -> bool:
    """Deletes a log file unless a writer holds it (its shared lock); True when it is gone."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return True
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError:   # no locks on this file system: pruned as before locks were taken
            pass
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return True


def _check_folder(folder: str) -> None:
    """Makes ``folder`` if it is missing and proves a log file can be created in it (one made and removed): a
    folder that cannot be written (a read-only mount, no permission) raises OSError naming it, as one that cannot
    be made does, where each record had failed later. The reason is the system's: a file where the folder should be
    is Not a directory (makedirs had said File exists), and a failure to create a file in the folder says so
    (/proc exists, but a file made in it is No such file or directory)."""
    try:
        os.makedirs(folder, exist_ok=True)
    except FileExistsError:   # exist_ok takes a folder only: a file (or a link to one) stands there
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), folder) from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=folder)
    except OSError as err:
        raise OSError(err.errno, f"cannot create a file in this folder ({err.strerror})", folder) from None
    os.close(fd)
    os.unlink(probe)


def _failure_kind(exc: Exception) -> str:
    """What failed, for telling one failure from the next: an OSError's class and errno (its message names the
    file it tried, a new one each time), another error's message."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{type(exc).__name__} {exc.errno}"
    return f"{type(exc).__name__}: {exc}"


class RequestLogWriter:
    """Samples and appends PredictionLog records under ``filename_prefix`` (see the module's docstring). Making
    one raises OSError when the prefix's folder cannot be created or written.

    ``write(record)`` takes a message (anything with ``SerializeToString``) or its bytes and raises OSError if
    the disk refuses; ``log(build)`` samples, calls ``build()`` only when sampled, writes, and never raises: the
    record is dropped, so logging never fails the request being logged. A failure (a full disk, a read-only
    folder, a record that cannot be built) is logged as an ERROR when it starts, not again for each record while
    it lasts (another kind of failure is logged in turn), and its end as an INFO with the count of records
    dropped, so the next failure is logged again. ``close()`` closes the open file (a later write opens a new one).
    """

    def __init__(self, filename_prefix: str, sampling_rate: float = 1.0,
                 max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
                 rng: random.Random | None = None):
        if not filename_prefix:
            raise ValueError("the request log needs a filename_prefix")
        if max_file_bytes < 1 or max_total_bytes < max_file_bytes:
            raise ValueError(f"request log bounds must satisfy 0 < max_file_bytes <= max_total_bytes, got "
                             f"{max_file_bytes} and {max_total_bytes}")
        self.prefix = filename_prefix
        self.sampling_rate = check_sampling_rate(sampling_rate)
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self._random = (rng or random.Random()).random
        self._lock = threading.Lock()
        self._file = None
        self._path = None
        self._size = 0
        self._sequence = 0
        self._unchecked = 0         # records written since the open file was last checked for deletion
        self._checked_at = 0.0      # time.monotonic() of that check
        self._failure = None   # the kind of failure (_failure_kind) dropping the records since the last one written
        self._dropped = 0
        self._report_lock = threading.Lock()
        _check_folder(_split(filename_prefix)[0])

    def sample(self) -> bool:
        """True for a share ``sampling_rate`` of the calls (uniformly at random)."""
        rate = self.sampling_rate
        return rate >= 1.0 or (rate > 0.0 and self._random() < rate)

    def log(self, build, outcome=None) -> bool:
        """Writes ``build()`` if this request is sampled; True when a record was written. ``outcome``, if given,
        is called for each sampled record with the error that dropped it, or None when it was written."""
        if not self.sample():
            return False
        try:
            self.write(build())
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self._failed(exc)
            if outcome is not None:
                outcome(exc)
            return False
        if self._failure is not None:
            self._resumed()
        if outcome is not None:
            outcome(None)
        return True

    def _failed(self, exc: Exception) -> None:
        """Counts a dropped record; an ERROR when writing starts failing, or fails otherwise."""
        kind = _failure_kind(exc)
        with self._report_lock:
            self._dropped += 1
            if kind == self._failure:
                return
            self._failure = kind
        log.error("Could not write the request log under %s: %s: %s; records are dropped until writing succeeds",
                  self.prefix, type(exc).__name__, exc)

    def _resumed(self) -> None:
        with self._report_lock:
            if self._failure is None:
                return
            dropped, self._failure, self._dropped = self._dropped, None, 0
        log.info("Writing the request log under %s again, after %d record(s) dropped", self.prefix, dropped)

    def write(self, record) -> str:
        """Appends one record; returns the path of the file it went to."""
        frame = tfrecord(record if isinstance(record, bytes) else record.SerializeToString())
        with self._lock:
            if self._file is None or (self._size and self._size + len(frame) > self.max_file_bytes):
                self._rotate(len(frame))
            elif self._deleted():
                log.warning("The request log file %s was deleted while being written (its folder removed?): the "
                            "records go to a new file (%d record(s) had gone to the deleted one since it was last "
                            "seen, %.1f s ago)", self._path, self._unchecked - 1, time.monotonic() - self._checked_at)
                self._rotate(len(frame))
            view = memoryview(frame)
            try:
                while view:
                    view = view[self._file.write(view):]
            except BaseException:
                self._abandon()
                raise
            self._size += len(frame)
            return self._path

    def _deleted(self) -> bool:
        """Whether the open file has been deleted (no link left), checked every CHECK_RECORDS records or
        CHECK_SECONDS, whichever comes first; False between checks."""
        self._unchecked += 1
        now = time.monotonic()
        if self._unchecked < CHECK_RECORDS and now < self._checked_at + CHECK_SECONDS:
            return False
        try:
            deleted = os.fstat(self._file.fileno()).st_nlink == 0
        except OSError:
            deleted = False
        if not deleted:
            self._unchecked, self._checked_at = 0, now
        return deleted

    def _abandon(self) -> None:
        """After a write that failed part-way (a full disk): the partial record cut off, and the next record
        written where it began, in the same file (a full disk had left one new empty file per dropped record).
        If it cannot be cut off, the file is closed, so the next record starts a new file instead of following
        the garbage (a reader stops at a damaged record); an empty one is removed."""
        try:
            os.ftruncate(self._file.fileno(), self._size)
            self._file.seek(self._size)
            return
        except OSError:
            pass
        try:
            self._file.close()
        except OSError:
            pass
        self._file = None
        if self._size == 0:
            with contextlib.suppress(OSError):
                os.unlink(self._path)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _rotate(self, incoming: int) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._prune(self.max_total_bytes - max(self.max_file_bytes, incoming))
        stamp = time.strftime(_STAMP, time.gmtime())
        folder, start = _split(self.prefix)
        made_again = False
        while True:
            self._sequence += 1
            path = os.path.join(folder, f"{start}{stamp}-{self._sequence % 1_000_000:06d}{SUFFIX}")
            try:
                self._file = open(path, "xb", buffering=0)   # never appends to another writer's file
            except FileExistsError:
                continue
            except FileNotFoundError:   # the folder was removed or renamed while logging: made again, once
                if made_again:
                    raise
                os.makedirs(folder, exist_ok=True)
                made_again = True
                log.warning("The request log folder %s was gone (removed or renamed): made it again", folder)
                continue
            try:   # in use: another writer's pruning leaves it (best effort: some file systems have no locks)
                fcntl.flock(self._file.fileno(), fcntl.LOCK_SH)
            except OSError:
                pass
            break
        self._path, self._size = path, 0
        self._unchecked, self._checked_at = 0, time.monotonic()

    def _prune(self, budget: int) -> None:
        """Deletes the prefix's oldest files until the others take at most ``budget`` bytes; a file another
        writer has open (one sharing the prefix: a second server replica, the web client) is left to it."""
        sizes = []
        for path in log_files(self.prefix):
            try:
                sizes.append((path, os.path.getsize(path)))
            except FileNotFoundError:
                continue
        total = sum(size for _, size in sizes)
        for path, size in sizes:
            if total <= budget:
                break
            if _delete_unless_open(path):
                total -= size
