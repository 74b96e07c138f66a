"""The feedback store: images users labelled in the web client, kept so the pipeline can train on them.

Layout of a store (``--feedback-dir``, default ``outputs/feedback`` or ``$LETTERS_FEEDBACK_DIR``; a folder on a local or
mounted disk, not a URL: :func:`store_folder`)::

    feedback.sqlite            one row per feedback (SQLite, WAL mode, synchronous=FULL)
    images/<id[:2]>/<id>.<ext> the image bytes as checked by core.image_io (original or PNG)

Writes are crash-safe and concurrency-safe: the image is written to a temporary file in its final folder,
fsynced and renamed into place (``os.replace``) and the folder fsynced, and only then is the row committed (the
image is written in the transaction that looked its picture up: a picture stored already is not written again);
a crash in between leaves at most an orphan image that no row points at (never a row without its image). A stored
image lost or rotten since (no longer its sha256) is written again, the same way, when its bytes are sent or
imported again (:meth:`FeedbackStore.restore`).
SQLite's WAL journal and busy timeout let many threads and processes add rows at once.

Each row keeps the digest of its image's pixels (``pixel_digest``, :func:`core.image_io.pixel_digest`, the digest
the ExampleGen judges duplicates by) beside the sha256 of its bytes: a picture is stored once, whatever file it
came in (a re-compressed PNG, a BMP copy), so that it is not trained on under two labels. Schema 2 added the
column: a store written before (schema 1) is upgraded when it is opened, each row's digest made from its stored
image; code of schema 1 still reads and adds to an upgraded store (its rows, without a digest, get one at the next
opening, and are matched by their bytes until then); a store of a newer schema than this code's is refused.

Each row also names the served model that answered (``model_name``: the web client's ``--model``; NULL for a
letter imported without an answer and for a row added by code of before), so that ``letters-monitor --model``
judges a model on its own feedback. The column is added when a store is opened, every row kept, its name NULL;
the schema stays 2 (a nullable column, as the ``removed`` table: code of schema 1 and 2 of before still read and
add to the store, their rows without a model name).

The pipeline reads the store itself (``local_runner.py --feedback-dir``): each run exports it with
:func:`export_feedback` to ``<pipeline-root>/feedback/<class_folder>/<id>.png`` (``.jpg``: a photo whose PNG
would be over the file limit) and adds those images to the
train split only. ``letters-feedback export --out DIR`` writes the same layout for other uses. It is
idempotent: files already exported are left as they are, and the files of rows relabelled or removed since are
moved or removed. ``letters-feedback import DIR`` stores letters one already has (the same layout) as feedback:
:mod:`core.feedback_import`.

A wrong label is corrected with ``letters-feedback relabel ID LABEL`` (:meth:`FeedbackStore.relabel`) or removed
with ``letters-feedback remove ID`` (:meth:`FeedbackStore.remove`: the row first, then its image; its id is kept in
the ``removed`` table, which schema-2 code of before ignores, so that an export made before drops its file);
``letters-feedback list`` shows the rows and their ids.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as _dt
import errno
import hashlib
import io
import logging
import os
import queue
import shlex
import shutil
import sqlite3
import tempfile
import time
import urllib.parse
import uuid

from core import configs, image_io, settings
from core.files import atomic_write, exclusive, fsync_dir, is_temporary, waiting_for
from core.labels import CLASS_INDEX, CLASS_NAMES, label_index

log = logging.getLogger(__name__)

DB_FILE = "feedback.sqlite"
IMAGES_DIR = "images"
SCHEMA_VERSION = 2           # 2: pixel_digest (a store of schema 1 is upgraded when opened)
INT64_MAX = 2 ** 63 - 1      # model versions are SQLite INTEGERs
EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "BMP": "bmp"}
STALE_TEMPORARY_SECONDS = 3600   # a temporary image file this old is a killed writer's: opening the store removes it
EXPORT_LOCK = ".export.lock"   # in an export's folder, beside its class folders: one export at a time (hidden: the
                               # pipeline and letters-feedback import leave it out)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id              TEXT PRIMARY KEY,
    created_at      TEXT NOT NULL,     -- ISO 8601, UTC
    created_unix    REAL NOT NULL,
    true_label      TEXT NOT NULL,     -- class folder name (core.labels.CLASS_NAMES)
    true_index      INTEGER NOT NULL,
    predicted_label TEXT,              -- what the model said (NULL if unknown)
    predicted_index INTEGER,
    probability     REAL,              -- the model's probability of predicted_label
    model_version   INTEGER,
    route           TEXT,              -- stable / canary / latest
    confirmed       INTEGER NOT NULL,  -- 1: the user confirmed the prediction; 0: corrected it
    image_path      TEXT NOT NULL,     -- relative to the store folder
    image_format    TEXT NOT NULL,
    image_sha256    TEXT NOT NULL,
    image_bytes     INTEGER NOT NULL,
    width           INTEGER,
    height          INTEGER,
    pixel_digest    TEXT,              -- core.image_io.pixel_digest of the image (NULL: added by schema-1 code)
    model_name      TEXT               -- the served model that answered (NULL: imported, or added by code of before)
);
CREATE INDEX IF NOT EXISTS feedback_created ON feedback (created_unix);
CREATE INDEX IF NOT EXISTS feedback_image ON feedback (image_sha256);
CREATE TABLE IF NOT EXISTS removed (   -- the ids of rows removed (FeedbackStore.remove): an export drops their files
    id              TEXT PRIMARY KEY,
    removed_unix    REAL NOT NULL
);
"""
_PIXELS_INDEX = "CREATE INDEX IF NOT EXISTS feedback_pixels ON feedback (pixel_digest)"   # (after the upgrade)


_RECORDS_QUERY = "SELECT * FROM feedback ORDER BY created_unix, id"   # every row, oldest first


# The rows of one picture, by its pixels or its bytes (a row schema-1 code added has no pixel digest yet)
_SAME_PICTURE = "SELECT * FROM feedback WHERE pixel_digest = ? OR image_sha256 = ? ORDER BY created_unix, id"


class FeedbackStoreError(RuntimeError):
    """The store cannot be opened, read or written (its database is damaged, not a database, not accessible, or
    its disk is full: ``full``; its database removed or replaced while in use: ``gone``)."""

    def __init__(self, message: str, full: bool = False, gone: bool = False):
        super().__init__(message)
        self.full = full
        self.gone = gone


class FeedbackError(ValueError):
    """A feedback record that cannot be stored (bad label, probability, version ...). ``reason`` is
    ``unknown_label`` for a label outside the class list, ``invalid_feedback`` otherwise; for an id that names no
    row (:meth:`FeedbackStore.find`) ``unknown_id``, or several ``ambiguous_id``."""

    def __init__(self, message: str, reason: str = "invalid_feedback"):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Feedback:
    id: str
    created_at: str
    true_label: str
    predicted_label: str | None
    probability: float | None
    model_version: int | None
    route: str | None
    confirmed: bool
    image_path: str
    image_format: str
    image_sha256: str
    image_bytes: int
    width: int | None
    height: int | None
    pixel_digest: str | None = None   # None: read from a store of schema 1 not yet upgraded
    model_name: str | None = None     # the served model that answered; None: imported, or stored by code of before

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ExportSummary:
    out_dir: str
    exported: int = 0            # files written by this call, one per row
    replaced: int = 0            # of those, files written in the place of an earlier export's file of their row
                                 # (``overwrite``, or the photo's other extension: a JPEG over the file limit as PNG)
    already_present: int = 0     # files left as they were (exported before)
    missing_images: int = 0      # rows whose image file is gone (skipped)
    corrupt_images: int = 0      # rows whose image file no longer matches its checksum or cannot be read or decoded
                                 # (skipped)
    damaged_kept: int = 0        # rows whose image file is gone or rotten since an earlier export, whose copy is
                                 # kept (counted in already_present, not in missing / corrupt)
    moved: int = 0               # files of rows relabelled since, moved to their new class folder
    removed: int = 0             # files removed from the class folders: of rows relabelled or removed since (a
                                 # relabelled row's where its new folder has its file already), and the others
                                 # ``prune`` removes (not the store's)
    unknown_labels: list = dataclasses.field(default_factory=list)   # [id, label] of each row whose label is none of
                                 # the classes (a hand-edited database): not exported, its earlier file taken out
    per_class: dict = dataclasses.field(default_factory=dict)   # class -> files now in DIR/<class>/ from the store

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class FeedbackStore:
    """A folder holding the feedback database and images. Thread-safe; several processes may share it."""

    def __init__(self, root: str | os.PathLike, busy_timeout: float = 60.0, warn_later: bool = False):
        """``warn_later``: the warning of pictures under two labels that upgrading the store finds is left to
        :meth:`warn_if_upgraded`, for a command that changes rows to say after its change (relabel, remove: one
        that resolves such a picture had been warned about it)."""
        self.root = store_folder(root, "open")
        self._warn_later, self._upgraded = warn_later, False
        self.db_path = os.path.join(self.root, DB_FILE)
        self.busy_timeout = busy_timeout
        self._pool: queue.LifoQueue = queue.LifoQueue()
        try:
            os.makedirs(self.root, exist_ok=True)
            with self._connection() as conn:
                _check_schema(conn)
                # The write lock first (waits for other writers), so that no read turns into a write midway: a
                # process creating the tables beside another would get "database is locked" without waiting.
                conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
                self._upgrade(conn)
            os.makedirs(os.path.join(self.root, IMAGES_DIR), exist_ok=True)
            self._identity = _file_identity(self.db_path)
            self._remove_stale_temporary_files()
        except (sqlite3.DatabaseError, OSError, FeedbackStoreError) as err:
            raise FeedbackStoreError(f"cannot open the feedback store {self.root}: {err}") from None

    def _upgrade(self, conn: sqlite3.Connection) -> None:
        """Brings a store of schema 1 to this schema: the pixel_digest column and its index (and the model_name
        column to a store without it, every row kept, its name NULL), and a digest for each
        row without one (every row of a store written before; a row that schema-1 code added since), made from its
        stored image outside the write lock (one decode each), so that adds go on meanwhile; an image gone or no
        longer its bytes keeps the digest of its bytes, by which it was matched before."""
        with _write_transaction(conn):
            columns = {row["name"] for row in conn.execute("PRAGMA table_info(feedback)")}
            for column in ("pixel_digest", "model_name"):
                if column not in columns:
                    conn.execute(f"ALTER TABLE feedback ADD COLUMN {column} TEXT")
            conn.execute(_PIXELS_INDEX)
        rows = conn.execute("SELECT id, image_path, image_sha256 FROM feedback WHERE pixel_digest IS NULL").fetchall()
        if len(rows) >= 100:   # a store of schema 1: seconds per thousand images, before the web client listens
            log.warning("upgrading the feedback store %s: the pixel digests of %d stored images (one decode each)",
                        self.root, len(rows))
        digests = [(digest, row["id"]) for row in rows
                   for digest in [_stored_pixel_digest(self.root, row["image_path"], row["image_sha256"])]
                   if digest is not None]
        with _write_transaction(conn):
            conn.executemany("UPDATE feedback SET pixel_digest = ? WHERE id = ? AND pixel_digest IS NULL", digests)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        # Pictures stored twice before the store knew pixels: said once, when their digests are made.
        self._upgraded = bool(digests)
        if digests and not self._warn_later:
            self._warn_two_labels([_record(row) for row in conn.execute(_RECORDS_QUERY)])

    def _remove_stale_temporary_files(self) -> None:
        """Removes the temporary image files (:func:`temporary_files`) older than :data:`STALE_TEMPORARY_SECONDS`: a
        writer killed while storing an image (SIGKILL, a power cut) leaves one, which nothing reads; a younger one may
        be a running writer's, and is left."""
        stale = [path for path, age in temporary_files(self.root) if age > STALE_TEMPORARY_SECONDS]
        for path in stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        if stale:
            log.info("removed %d temporary file(s) from the feedback store %s, left by a writer stopped while storing "
                     "an image (older than %d s)", len(stale), self.root, STALE_TEMPORARY_SECONDS)

    def warn_if_upgraded(self) -> None:
        """Where opening the store (``warn_later``) made pixel digests: warns of the pictures it holds under more
        than one label now, once."""
        if self._upgraded:
            self._upgraded = False
            self._warn_two_labels(self.records())

    def _warn_two_labels(self, records: list[Feedback]) -> None:
        twice = two_label_pictures(records)
        if twice:
            log.warning("%d picture(s) in the feedback store %s are stored under more than one label (one of each is "
                        "wrong, and both are trained on; letters-feedback remove the wrong one's id): %s", len(twice),
                        self.root, "; ".join(" = ".join(f"{label} {record_id[:8]}" for record_id, label in group)
                                             for group in twice[:5]))

    def _check_database(self) -> None:
        """FeedbackStoreError if the database file opened is no longer at its path (the folder deleted, moved or
        replaced while in use): an open connection would go on writing into the deleted file, every feedback
        answered "stored" and lost."""
        try:
            same = _file_identity(self.db_path) == self._identity
        except OSError:
            same = False
        if not same:
            self.close()
            raise FeedbackStoreError(f"the feedback store {self.root} cannot be used: its database {DB_FILE} was "
                                     f"removed or replaced while in use (restart to open the store found there)",
                                     gone=True)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=self.busy_timeout, isolation_level=None,
                               check_same_thread=False)
        self._use_wal(conn)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        conn.row_factory = sqlite3.Row
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switches to write-ahead logging. SQLite answers "database is locked" at once, without its busy
        timeout, when another process opens a new store at the same moment: retried until the timeout."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @contextlib.contextmanager
    def _connection(self):
        """A pooled connection; SQLite's errors (a damaged database, a full disk) leave as FeedbackStoreError."""
        if hasattr(self, "_identity"):   # (not while __init__ creates the database)
            self._check_database()
        try:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                conn = self._connect()
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None
        try:
            yield conn
        except sqlite3.DatabaseError as err:
            conn.close()
            raise self._error(err) from None
        except BaseException:
            conn.close()
            raise
        else:
            self._pool.put(conn)

    def _error(self, err: sqlite3.DatabaseError) -> FeedbackStoreError:
        return FeedbackStoreError(f"the feedback store {self.root} cannot be used: {err}",
                                  full=getattr(err, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL)

    def close(self) -> None:
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                return

    # -- writing -------------------------------------------------------------------------------------------
    def add(self, image: bytes, image_format: str, true_label: str, **fields) -> Feedback:
        """Stores one feedback (the fields and ``once``: :meth:`_add`) and returns its record; with ``once``, the
        record stored already where the picture is stored under ``true_label``."""
        return self._add(image, image_format, true_label, **fields)[0]

    def add_once(self, image: bytes, image_format: str, true_label: str, **fields) -> tuple[Feedback, bool]:
        """``add(..., once=True)``, and whether this call added the row: False where the picture was stored already
        under ``true_label`` (by an earlier call, or by another process meanwhile), its stored record returned."""
        return self._add(image, image_format, true_label, once=True, **fields)

    def _add(self, image: bytes, image_format: str, true_label: str, *, predicted_label: str | None = None,
             probability: float | None = None, model_version: int | str | None = None, route: str | None = None,
             model_name: str | None = None, width: int | None = None, height: int | None = None,
             now: float | None = None, once: bool = False) -> tuple[Feedback, bool]:
        """Stores one feedback; returns its record and True, or the record stored already and False. ``image`` must
        already be checked (core.image_io.check_image).

        ``once``: an image already stored (the same pixels, :func:`core.image_io.pixel_digest`: the same bytes, or
        the picture re-saved in another file) is not stored again. Under the same label the stored record is
        returned; under another one it is a FeedbackError (reason ``already_stored``): one of the two labels is
        wrong, and both would be trained on (the ExampleGen takes the two files for one picture)."""
        true_index = _check_label(true_label, "label")
        predicted_index = None if predicted_label is None else _check_label(predicted_label, "predicted label")
        if probability is not None:
            if isinstance(probability, bool) or not isinstance(probability, (int, float)) \
                    or not (probability in (0, 1) if isinstance(probability, int) else 0.0 <= probability <= 1.0):
                raise FeedbackError("probability must be a number between 0 and 1")
            probability = float(probability)
        if model_version is not None:
            # An int, or its ASCII digits (TF Serving's JSON gives a version as a string): int() would also read
            # "1_0" as 10, "+5", " 7" or other scripts' digits.
            if isinstance(model_version, bool) or not isinstance(model_version, int) and not (
                    isinstance(model_version, str) and model_version.isascii() and model_version.isdigit()):
                raise FeedbackError(f"model version must be an integer, got {str(model_version)[:40]!r}")
            if isinstance(model_version, str):   # by its value: "0001" is 1 (int() refuses past 4,300 digits,
                digits = model_version.lstrip("0") or "0"   # zeros too: they are left out first)
                model_version = int(digits) if len(digits) <= 19 else INT64_MAX + 1
            if not 0 <= model_version <= INT64_MAX:
                raise FeedbackError(f"model version must be between 0 and {INT64_MAX}")
        if route is not None and route not in ("stable", "canary", "latest"):
            raise FeedbackError("route must be stable, canary or latest")
        if model_name is not None and (not isinstance(model_name, str) or not model_name):
            raise FeedbackError(f"model name must be a non-empty string, got {str(model_name)[:40]!r}")
        ext = EXTENSIONS.get(image_format.upper())
        if ext is None:
            raise FeedbackError(f"images are stored as {', '.join(EXTENSIONS)}; got {image_format!r}")
        if not image:
            raise FeedbackError("empty image")

        pixels = image_io.pixel_digest(image)   # (one decode, before the write lock is taken)
        now = time.time() if now is None else now
        self._check_database()           # before its image is written: a removed store is not made again
        record_id = uuid.uuid4().hex
        rel = f"{IMAGES_DIR}/{record_id[:2]}/{record_id}.{ext}"
        path = os.path.join(self.root, *rel.split("/"))
        record = Feedback(
            id=record_id, created_at=_dt.datetime.fromtimestamp(now, _dt.timezone.utc).isoformat(timespec="milliseconds"),
            true_label=true_label, predicted_label=predicted_label, probability=probability,
            model_version=model_version, route=route,
            confirmed=predicted_label is not None and predicted_label == true_label, image_path=rel,
            image_format=image_format.upper(), image_sha256=hashlib.sha256(image).hexdigest(),
            image_bytes=len(image), width=width, height=height, pixel_digest=pixels, model_name=model_name)
        stored, same_picture = None, (pixels, record.image_sha256)
        try:
            with self._connection() as conn:
                if once:   # a picture stored already is answered without writing it (a full disk refuses no re-send)
                    stored = conn.execute(_SAME_PICTURE, same_picture).fetchall() or None
                if stored is None:
                    atomic_write(path, image)   # (before the write lock: its fsyncs hold up no other writer)
                    with _write_transaction(conn):   # the look-up and the insert as one: two sends of one image
                        if once:
                            stored = conn.execute(_SAME_PICTURE, same_picture).fetchall() or None
                        if stored is None:
                            conn.execute(
                                "INSERT INTO feedback (id, created_at, created_unix, true_label, true_index, "
                                "predicted_label, predicted_index, probability, model_version, route, confirmed, "
                                "image_path, image_format, image_sha256, image_bytes, width, height, pixel_digest, "
                                "model_name) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                (record.id, record.created_at, now, true_label, true_index, predicted_label,
                                 predicted_index, probability, model_version, route, int(record.confirmed), rel,
                                 record.image_format, record.image_sha256, record.image_bytes, width, height,
                                 pixels, model_name))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        if stored is None:
            return record, True
        with contextlib.suppress(OSError):   # another send of it was stored between the look-ups
            os.unlink(path)
        stored = [_record(row) for row in stored]   # (more than one where an earlier store took it twice)
        same = [record for record in stored if record.true_label == true_label]
        if same:
            self.restore(same, image)   # (its image lost or rotten since: these bytes are it again)
            return same[0], False
        raise already_stored(stored, true_label, self.root)

    def restore(self, records: list[Feedback], image: bytes) -> bool:
        """Writes ``image`` as the stored image of the one of ``records`` (rows of its picture) whose bytes it is,
        where that file is gone or no longer those bytes (sha256): the picture sent or imported again. True where it
        was written. Only that one file is read. It is written as :meth:`add` writes a new one (a temporary file,
        fsynced, renamed into place), outside the write lock; a row removed meanwhile is left without it, as
        :meth:`remove` leaves it."""
        sha256 = hashlib.sha256(image).hexdigest()
        record = next((record for record in records if record.image_sha256 == sha256), None)
        if record is None or image_intact(self.image_path(record), sha256):
            return False
        self._check_database()   # (a removed store is not made again)
        path = self.image_path(record)
        atomic_write(path, image)
        if self.get(record.id) is None:   # removed meanwhile, its image unlinked before this one was written
            with contextlib.suppress(OSError):
                os.unlink(path)
            return False
        log.info("feedback %s (%s): its image, gone or corrupt, was written again from the same bytes sent again",
                 record.id, record.true_label)
        return True

    def find(self, record_id: str) -> Feedback:
        """The row whose id is ``record_id`` or starts with it (the 8 characters the store's messages show).
        FeedbackError: ``unknown_id`` when no row's does, ``ambiguous_id`` naming the rows when several do."""
        prefix = record_id.strip().lower() if isinstance(record_id, str) else ""
        rows = []
        if prefix and all(c in "0123456789abcdef" for c in prefix):   # (ids are hex: no GLOB wildcard gets in)
            with self._connection() as conn:
                rows = conn.execute("SELECT * FROM feedback WHERE id GLOB ? ORDER BY created_unix, id LIMIT 11",
                                    (prefix + "*",)).fetchall()
        if not rows:
            raise FeedbackError(f"no feedback with id {str(record_id)[:40]!r} in {self.root}", reason="unknown_id")
        if len(rows) > 1:
            shown = ", ".join(f"{row['id']} ({row['true_label']})" for row in rows[:10])
            raise FeedbackError(f"id {prefix!r} is the start of {'more than 10' if len(rows) > 10 else len(rows)} "
                                f"feedback ids: {shown}; give more of it", reason="ambiguous_id")
        return _record(rows[0])

    def relabel(self, record_id: str, label: str) -> Feedback:
        """Gives the row ``record_id`` (a whole id) the label ``label``, a class folder name; whether it confirmed the
        model's answer follows from the new label. Returns the row as it now is. The next export moves its image
        to the new class folder. FeedbackError for an unknown label (``unknown_label``) or id (``unknown_id``)."""
        index = _check_label(label, "label")
        with self._connection() as conn:
            with _write_transaction(conn):
                updated = conn.execute("UPDATE feedback SET true_label = ?, true_index = ?, "
                                       "confirmed = (predicted_label IS NOT NULL AND predicted_label = ?) WHERE id = ?",
                                       (label, index, label, record_id)).rowcount
        if not updated:
            raise FeedbackError(f"no feedback with id {record_id!r} in {self.root}", reason="unknown_id")
        return self.get(record_id)

    def remove(self, record_ids: list[str]) -> tuple[list[Feedback], dict[str, OSError], set[str]]:
        """Removes the rows ``record_ids`` (whole ids) and their images; returns the rows removed, why the image
        of each row whose image could not be deleted was not (a read-only images folder), by the row's id, and the
        ids of the rows whose image was gone already. The rows
        go first, in one transaction that also notes their ids (the ``removed`` table, by which an export drops their
        files), then each image, its folder fsynced: a crash in between, or an image that cannot be deleted, leaves
        images no row points at, as an interrupted :meth:`add` does, never a row without its image; the other images
        are deleted all the same. FeedbackError (``unknown_id``) when one of them is not stored: nothing is
        removed."""
        record_ids = list(dict.fromkeys(record_ids))
        now = time.time()
        with self._connection() as conn:
            with _write_transaction(conn):
                rows = [conn.execute("SELECT * FROM feedback WHERE id = ?", (record_id,)).fetchone()
                        for record_id in record_ids]
                missing = [record_id for record_id, row in zip(record_ids, rows) if row is None]
                if missing:
                    raise FeedbackError(f"no feedback with id {', '.join(map(repr, missing))} in {self.root}; "
                                        "nothing removed", reason="unknown_id")
                conn.executemany("DELETE FROM feedback WHERE id = ?", [(record_id,) for record_id in record_ids])
                conn.executemany("INSERT OR REPLACE INTO removed (id, removed_unix) VALUES (?, ?)",
                                 [(record_id, now) for record_id in record_ids])
        removed, not_deleted, gone = [_record(row) for row in rows], {}, set()
        for record in removed:
            try:
                os.unlink(self.image_path(record))
            except FileNotFoundError:
                gone.add(record.id)
            except OSError as err:
                not_deleted[record.id] = err
        for folder in {os.path.dirname(self.image_path(record)) for record in removed}:
            fsync_dir(folder)
        return removed, not_deleted, gone

    # -- reading -------------------------------------------------------------------------------------------
    def count(self) -> int:
        with self._connection() as conn:
            return conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]

    def records(self) -> list[Feedback]:
        with self._connection() as conn:
            rows = conn.execute(_RECORDS_QUERY).fetchall()
        return [_record(row) for row in rows]

    def get(self, record_id: str) -> Feedback | None:
        with self._connection() as conn:
            row = conn.execute("SELECT * FROM feedback WHERE id = ?", (record_id,)).fetchone()
        return None if row is None else _record(row)

    def image_path(self, record: Feedback) -> str:
        return image_file(self.root, record)

    def stats(self) -> dict:
        return summarize(self.records(), self.root)


def summarize(records: list[Feedback], feedback_dir: str | os.PathLike) -> dict:
    """Counts of stored feedback (``records``, of the store at ``feedback_dir``): all, confirmed, corrected,
    labelled without an answer, per class; the rows no run trains on (``not_trained_on``): those whose label is none
    of the classes and those whose image looks missing or corrupt (:func:`damage_at_a_glance`), each by label and
    store id; the temporary files a writer killed while storing an image left (:func:`temporary_files`); and the
    pictures stored under more than one label (by store id and label; stored before the store knew pixels)."""
    per_class = collections.Counter(r.true_label for r in records)
    confirmed = sum(r.confirmed for r in records)
    unanswered = sum(r.predicted_label is None for r in records)
    unknown = unknown_labels(records)
    damaged = {"missing_images": [], "corrupt_images": []}
    for record in records:
        damage = record.true_label in CLASS_INDEX and damage_at_a_glance(feedback_dir, record)
        if damage:
            damaged[damage].append(f"{record.true_label} {record.id}")
    root = store_folder(feedback_dir)
    return {"records": len(records), "confirmed": confirmed, "corrected": len(records) - confirmed - unanswered,
            "without_answer": unanswered,   # labelled without a model's answer (letters-feedback import)
            "per_class": {name: per_class.get(name, 0) for name in CLASS_NAMES},
            "not_trained_on": len(unknown) + sum(map(len, damaged.values())),
            "unknown_label": [f"{label} {record_id}" for record_id, label in unknown],
            **damaged,
            "temporary_files": [f"{os.path.relpath(path, root)} ({age / 60:.0f} min old)"
                                for path, age in temporary_files(root)],
            "under_two_labels": [[f"{label} {record_id}" for record_id, label in group]
                                 for group in two_label_pictures(records)]}


def unknown_labels(records: list[Feedback]) -> list[list[str]]:
    """[id, label] of each row whose label is none of the classes (only a hand-edited database has one: :meth:`add`
    and :meth:`relabel` refuse such a label), oldest first: no export writes it, so no run trains on it."""
    return [[record.id, record.true_label] for record in records if record.true_label not in CLASS_INDEX]


def unknown_labels_note(rows: list[list[str]], feedback_dir: str | os.PathLike) -> str:
    """What export and the run say of the rows ``rows`` (:func:`unknown_labels`) of the store at ``feedback_dir``:
    their labels and ids, and the command that gives each its class."""
    shown = ", ".join(f"{label!r} (id {record_id[:8]})" for record_id, label in rows[:5])
    return (f"{len(rows)} row(s) with a label outside the {len(CLASS_NAMES)} classes not trained on: {shown}"
            + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
            + f"; letters-feedback{_store_flag(feedback_dir)} relabel ID LABEL gives each its class")


def damage_at_a_glance(feedback_dir: str | os.PathLike, record: Feedback) -> str | None:
    """``missing_images`` where ``record``'s stored image is gone, ``corrupt_images`` where it is no longer the size
    stored with its row or cannot be looked at, else None: one stat each (1,000 rows in 12 ms, where reading and
    hashing them as an export does takes 38 ms for letters of 0.8 KB and 139 ms for photos of 110 KB, from the page
    cache). A file of its size but other bytes is found by the export (:func:`stored_image`)."""
    try:
        size = os.stat(image_file(feedback_dir, record)).st_size
    except FileNotFoundError:
        return "missing_images"
    except OSError:
        return "corrupt_images"
    return None if size == record.image_bytes else "corrupt_images"


def temporary_files(feedback_dir: str | os.PathLike) -> list[tuple[str, float]]:
    """(path, age in seconds) of each temporary file in the store's image folders: the image a writer was storing
    when it was killed (core.files.atomic_output's, renamed into place once whole), or one being stored now."""
    found, now = [], time.time()
    try:
        folders = [entry.path for entry in os.scandir(os.path.join(store_folder(feedback_dir), IMAGES_DIR))
                   if entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
    for folder in sorted(folders):
        for entry in os.scandir(folder):
            if is_temporary(entry.name):
                with contextlib.suppress(FileNotFoundError):   # (renamed into place meanwhile)
                    found.append((entry.path, now - entry.stat(follow_symlinks=False).st_mtime))
    return found


def relabel_hint(record_ids: list[str], label: str, feedback_dir: str | os.PathLike) -> str:
    """What to run when the rows ``record_ids`` of one picture, in the store at ``feedback_dir``, have the wrong
    label and ``label`` is right."""
    ids = [record_id[:8] for record_id in record_ids]
    command = "letters-feedback" + _store_flag(feedback_dir)
    return (f"if {label} is right: {command} relabel {ids[0]} {label}"
            + (f", then {command} remove {' '.join(ids[1:])}" if ids[1:] else ""))


def already_stored(stored: list[Feedback], label: str, feedback_dir: str | os.PathLike) -> FeedbackError:
    """The error (reason ``already_stored``) for a picture stored as the rows ``stored`` (oldest first, none of them
    under ``label``) and given again as ``label``: its labels and ids, and the commands that leave ``label`` alone."""
    hint = relabel_hint([r.id for r in stored], label, feedback_dir)
    return FeedbackError(f"this image is already stored as "
                         f"{' and '.join(f'{r.true_label} ({r.id[:8]})' for r in stored)}; "
                         f"a second label for it is not stored ({hint})", reason="already_stored")


def _store_flag(feedback_dir: str | os.PathLike) -> str:
    """`` --feedback-dir DIR`` (quoted for the shell) naming the store at ``feedback_dir``; none for the store
    letters-feedback reads without it."""
    if os.path.abspath(os.fspath(feedback_dir)) == os.path.abspath(configs.default_feedback_dir()):
        return ""
    return f" --feedback-dir {quoted_store(feedback_dir)}"


def quoted_store(feedback_dir: str | os.PathLike) -> str:
    """The store at ``feedback_dir`` as a command names it: its absolute path, quoted for the shell (a space or a
    quote in it is one word)."""
    return shlex.quote(os.path.abspath(os.fspath(feedback_dir)))


def two_label_pictures(records: list[Feedback]) -> list[list[tuple[str, str]]]:
    """[(store id, label), ...] of each picture (its pixels) stored under more than one label, oldest first. A row
    without a pixel digest (added by schema-1 code) is the picture of a row with its bytes, as :meth:`FeedbackStore.add`
    matches it: grouped by its sha256 where no row of its bytes has a digest."""
    digest_of_bytes = {record.image_sha256: record.pixel_digest for record in records if record.pixel_digest}
    groups = collections.defaultdict(list)
    for record in records:
        picture = record.pixel_digest or digest_of_bytes.get(record.image_sha256) or f"sha256:{record.image_sha256}"
        groups[picture].append((record.id, record.true_label))
    return [group for group in groups.values() if len({label for _, label in group}) > 1]


def image_file(feedback_dir: str | os.PathLike, record: Feedback) -> str:
    """The path of ``record``'s image in the store at ``feedback_dir``."""
    return os.path.join(os.path.abspath(os.fspath(feedback_dir)), *record.image_path.split("/"))


def stored_image(feedback_dir: str | os.PathLike, record: Feedback) -> tuple[bytes | None, str | None]:
    """(the bytes of ``record``'s stored image, its damage): None when intact, ``missing_images`` when the file is
    gone, ``corrupt_images`` when it is no longer its bytes (sha256) or cannot be read. An export leaves a damaged
    row out, so no run trains on it."""
    return _checked_bytes(image_file(feedback_dir, record), record.image_sha256)


def store_folder(feedback_dir: str | os.PathLike, what: str = "read") -> str:
    """``feedback_dir`` made absolute; FeedbackStoreError ("cannot ``what`` the feedback store …") for a URL
    (gs://…, as :func:`core.settings.is_url` tells one): the store is SQLite on a local (or mounted) disk, and a
    URL made absolute is a local folder named ``gs:``."""
    path = os.fspath(feedback_dir)
    if settings.is_url(path):
        raise FeedbackStoreError(f"cannot {what} the feedback store {path}: it is an SQLite database in a folder on a "
                                 "local (or mounted) disk, not a URL (a bucket gets an export of it: "
                                 "letters-feedback export --out DIR, then gsutil -m rsync -r DIR gs://…/feedback)")
    return os.path.abspath(path)


def stored_records(feedback_dir: str | os.PathLike) -> list[Feedback]:
    """:func:`read_records`, or none where no store was made yet (nothing is created: the folder may be a
    read-only mount)."""
    return stored_rows_and_removals(feedback_dir)[0]


def stored_rows_and_removals(feedback_dir: str | os.PathLike) -> tuple[list[Feedback], set[str]]:
    """The store's rows and the ids of the rows removed from it (:meth:`FeedbackStore.remove`), read at one moment
    as :func:`read_records` reads; none of either where no store was made yet."""
    if not os.path.exists(os.path.join(store_folder(feedback_dir), DB_FILE)):
        return [], set()
    return _read_only(feedback_dir, lambda conn: (_all_records(conn), _removed_ids(conn)))


def with_pixel_digests(feedback_dir: str | os.PathLike, records: list[Feedback]) -> list[Feedback]:
    """``records``, read from the store at ``feedback_dir``, each row without a pixel digest (a store of schema 1
    not yet upgraded, read read-only) given the digest of its stored image, as the upgrade makes it, nothing
    written: :func:`two_label_pictures` then finds a picture saved again under another label, as it does in an
    upgraded store (by its bytes, it had not)."""
    root = store_folder(feedback_dir)
    return [record if record.pixel_digest else dataclasses.replace(
                record, pixel_digest=_stored_pixel_digest(root, record.image_path, record.image_sha256))
            for record in records]


def read_records(feedback_dir: str | os.PathLike) -> list[Feedback]:
    """The store's rows, read through a read-only connection, so that a read-only mount of the store (the
    monitor's CronJob has one) can be read: no tables are made and no journal mode is set, as
    :class:`FeedbackStore` does.
    FeedbackStoreError when it cannot be read."""
    return _read_only(feedback_dir, _all_records)


def _all_records(conn: sqlite3.Connection) -> list[Feedback]:
    return [_record(row) for row in conn.execute(_RECORDS_QUERY).fetchall()]


def _removed_ids(conn: sqlite3.Connection) -> set[str]:
    """The ids in the ``removed`` table (none where code of before made the store and nothing was removed)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'removed'").fetchone() is None:
        return set()
    return {row[0] for row in conn.execute("SELECT id FROM removed")}


def _read_only(feedback_dir: str | os.PathLike, read):
    """``read(connection)`` in one read transaction of a read-only connection to the store (see
    :func:`read_records`)."""
    root = store_folder(feedback_dir)
    db_path = os.path.join(root, DB_FILE)
    try:
        try:   # a WAL database opens read-only while its -shm file exists or can be made (a writer has it open)
            return _read_with(db_path, read)
        except sqlite3.DatabaseError as err:
            if getattr(err, "sqlite_errorcode", None) != sqlite3.SQLITE_CANTOPEN:
                raise
        # A read-only folder without it: after the last writer closed the store (no -wal left either), it opens as
        # immutable, and no writer can be changing it then. A -wal without it (a writer killed before it
        # checkpointed) holds rows immutable would not read: a copy of the two is read, which SQLite replays.
        if not os.path.exists(db_path + "-wal"):
            return _read_with(db_path, read, immutable=True)
        with tempfile.TemporaryDirectory(prefix="letters-feedback-") as folder:
            copy = os.path.join(folder, DB_FILE)
            for suffix in ("-wal", ""):   # (the -wal first: a writer starting meanwhile checkpoints only its pages)
                shutil.copyfile(db_path + suffix, copy + suffix)
            return _read_with(copy, read)
    except (FeedbackStoreError, sqlite3.DatabaseError, OSError) as err:
        raise FeedbackStoreError(f"cannot read the feedback store {root}: {err}") from None


def _read_with(db_path: str, read, immutable: bool = False):
    """``read(connection)`` in one read transaction of the database at ``db_path``, opened read-only
    (``immutable``: without its -wal and -shm files, which SQLite then neither reads nor makes)."""
    uri = f"file:{urllib.parse.quote(db_path)}?mode=ro" + ("&immutable=1" if immutable else "")
    conn = sqlite3.connect(uri, uri=True, timeout=60.0)
    try:
        conn.row_factory = sqlite3.Row
        _check_schema(conn)
        conn.execute("BEGIN")   # (what read() reads in several queries is of one moment)
        return read(conn)
    finally:
        conn.close()


def _check_schema(conn: sqlite3.Connection) -> None:
    """FeedbackStoreError for a store of a newer schema than this code's, which no reader or writer here uses (the
    pipeline's export and ``stats`` had read what the web client and import refused)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise FeedbackStoreError(f"its database has schema {version}, written by a newer version of letters (this "
                                 f"one reads schema {SCHEMA_VERSION} and older)")


@contextlib.contextmanager
def _write_transaction(conn: sqlite3.Connection):
    """A transaction holding the write lock from its start (BEGIN IMMEDIATE: no read in it turns into a write
    midway), committed, or rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:   # (a failed COMMIT may have rolled back already)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _file_identity(path: str) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _check_label(name, what: str) -> int:
    try:
        return label_index(name, what)
    except ValueError as err:
        raise FeedbackError(str(err), reason="unknown_label") from None


def _record(row: sqlite3.Row) -> Feedback:
    return Feedback(
        id=row["id"], created_at=row["created_at"], true_label=row["true_label"],
        predicted_label=row["predicted_label"], probability=row["probability"],
        model_version=row["model_version"], route=row["route"], confirmed=bool(row["confirmed"]),
        image_path=row["image_path"], image_format=row["image_format"], image_sha256=row["image_sha256"],
        image_bytes=row["image_bytes"], width=row["width"], height=row["height"],
        pixel_digest=row["pixel_digest"] if "pixel_digest" in row.keys() else None,
        model_name=row["model_name"] if "model_name" in row.keys() else None)


def _stored_pixel_digest(root: str, image_path: str, image_sha256: str) -> str | None:
    """The pixel digest of a stored image; None where it cannot be read now or is no longer its bytes (the row is
    matched by its bytes meanwhile, and tried again at the next opening: a digest of the bytes kept for good had let
    a re-saved copy of the picture in under another label once its image was back)."""
    data = _intact_bytes(os.path.join(root, *image_path.split("/")), image_sha256)
    return image_io.pixel_digest(data) if data is not None else None


def image_intact(path: str, image_sha256: str) -> bool:
    """Whether the file at ``path`` can be read and is the bytes whose sha256 is ``image_sha256``."""
    return _intact_bytes(path, image_sha256) is not None


def _intact_bytes(path: str, image_sha256: str) -> bytes | None:
    """The bytes of the file at ``path`` if it can be read and they are those whose sha256 is ``image_sha256``."""
    data, damage = _checked_bytes(path, image_sha256)
    return None if damage else data


def _checked_bytes(path: str, image_sha256: str) -> tuple[bytes | None, str | None]:
    """(the bytes of the file at ``path``, its damage): None when they are those whose sha256 is ``image_sha256``,
    ``missing_images`` when the file is gone, ``corrupt_images`` when it holds other bytes or cannot be read."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None, "missing_images"
    except OSError:   # unreadable (EACCES, EIO on a bad sector, a link loop): damaged as a rotten one is
        return None, "corrupt_images"
    return data, None if hashlib.sha256(data).hexdigest() == image_sha256 else "corrupt_images"


def to_png(data: bytes, image_format: str) -> bytes:
    """PNG bytes of a stored image (PNG kept byte for byte; others converted, alpha preserved)."""
    if image_format.upper() == "PNG":
        return data
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return image_io.to_png(img)


def trained_within(data: bytes, image_format: str, max_file_bytes: int) -> bool:
    """Whether a stored image reaches training under the pipeline's file limit ``max_file_bytes``: the file
    :func:`export_feedback` writes of it, its PNG or, where that is over the limit, its own bytes (a photo's JPEG, a
    BMP), is at most that many bytes (image_io.read_checked refuses a larger one as too_large)."""
    if len(data) <= max_file_bytes:
        return True
    return image_format.upper() != "PNG" and len(to_png(data, image_format)) <= max_file_bytes


def check_export_folder(feedback_dir: str | os.PathLike, out_dir: str | os.PathLike) -> None:
    """ValueError for a folder :func:`export_feedback` cannot write to: a URL (it writes local files), or the store
    itself or a folder in it (links resolved), where class folders of copies would sit beside the store's own
    images and go wherever the store is copied or backed up."""
    out, store = os.fspath(out_dir), os.fspath(feedback_dir)
    refusal = settings.url_refusal(out)
    if refusal:
        raise ValueError(refusal)
    real_out, real_store = os.path.realpath(out), os.path.realpath(store)
    if settings.within(real_out, real_store):
        where = "the feedback store" if real_out == real_store else "inside the feedback store"
        raise ValueError(f"{out} is {where} {store}: the export is a copy for training elsewhere; give a folder "
                         "outside it")


class ExportStopped(OSError):
    """An OSError that stopped :func:`export_feedback` partway; its message names the folder and the error (its file
    named), and says what was done before it: the files written are whole and kept."""


def export_feedback(feedback_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                    overwrite: bool = False, prune: bool = False,
                    max_file_bytes: int = image_io.DEFAULT_MAX_BYTES) -> ExportSummary:
    """Writes every stored feedback image to ``out_dir/<true class folder>/<id>.png`` (the pipeline's
    ``--data-root`` layout; all 27 class folders are created); a JPEG (or GIF, BMP) whose PNG would be over
    ``max_file_bytes``, the pipeline's file limit, keeps its own format (``<id>.jpg``), so that it is trained on. Files already there are kept unless
    ``overwrite``; those of rows relabelled since are moved to their new class folder, those of rows removed are
    removed. A row whose stored image is gone or no longer its bytes (sha256) is counted as missing or corrupt and
    left out, unless an earlier export wrote its copy: that copy, made while the image was whole and maybe the last
    one, is kept and counted as ``damaged_kept``. ``prune``: the class folders are made to hold exactly the store's
    usable images, every other file in them removed (left by another store, by a row no longer there, or by an
    export cut short); for a folder that
    is the pipeline's own. Safe to run while the web client is adding feedback (it exports what is committed).

    An OSError (a full disk, a file where a class folder goes) stops it, naming the file it was writing, as
    :class:`ExportStopped`, which says what was done before; every file written is whole, and an export again
    finishes it."""
    check_export_folder(feedback_dir, out_dir)
    out_dir = os.path.abspath(os.fspath(out_dir))
    summary = ExportSummary(out_dir=out_dir)   # counted into as it goes: what was done before a stop is said
    try:
        if os.path.lexists(out_dir) and not os.path.isdir(out_dir):   # (makedirs says "File exists" of it)
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory (a file is where the export's folder goes)",
                                     out_dir)
        # One export at a time per folder: two at once each moved or removed files the other had listed (and found
        # them gone), and an older reading of the store could undo a newer one's moves. The store is read once the
        # lock is held, so that the one after reads it as new or newer. A wait for another is said, naming its process.
        with exclusive(os.path.join(out_dir, EXPORT_LOCK), waiting=waiting_for(f"another export into {out_dir}")):
            return _export(feedback_dir, out_dir, summary, overwrite, prune, max_file_bytes)
    except OSError as err:
        raise ExportStopped(_stopped(summary, err)) from err


def _export(feedback_dir, out_dir: str, summary: ExportSummary, overwrite: bool, prune: bool,
            max_file_bytes: int) -> ExportSummary:
    """:func:`export_feedback`'s work, its folder's lock held."""
    records, removed = stored_rows_and_removals(feedback_dir)   # read-only: a store on a read-only mount exports too
    for name in CLASS_NAMES:
        os.makedirs(os.path.join(out_dir, name), exist_ok=True)
    summary.moved, summary.removed = _drop_relabelled_and_removed(out_dir, records, removed)
    summary.unknown_labels = unknown_labels(records)
    written: set[str] = set()
    for record in records:
        if record.true_label not in CLASS_INDEX:   # a hand-edited database's (add() refuses it): named, not exported
            continue
        as_png = os.path.join(out_dir, record.true_label, f"{record.id}.png")
        as_is = os.path.join(out_dir, record.true_label, f"{record.id}.{EXTENSIONS.get(record.image_format, 'png')}")
        target = as_png
        earlier = [path for path in dict.fromkeys((as_png, as_is)) if os.path.exists(path)]   # an earlier export's
        present = earlier[0] if earlier else None
        if present == as_png != as_is and os.path.getsize(present) > max_file_bytes:
            present = None     # a PNG an earlier export wrote over the limit: the photo is written as it is
        # The store's image is checked whether or not an earlier export wrote it, so that damage to the store is
        # reported (reading and hashing the images of 3,000 rows exported before, from the page cache: 0.5 s more
        # for letters of 0.2 KB, 1.1 s for photos of 120 KB)
        data, damage = stored_image(feedback_dir, record)
        keep = present and not overwrite
        if damage and keep:
            summary.damaged_kept += 1
        elif damage:
            setattr(summary, damage, getattr(summary, damage) + 1)
            continue
        if keep:
            summary.already_present += 1
            target = present
        else:
            try:
                png = to_png(data, record.image_format)
            except (ValueError, OSError):   # PIL's UnidentifiedImageError is an OSError
                summary.corrupt_images += 1
                continue
            if len(png) > max_file_bytes and as_is != target:   # (a noisy photo's PNG: several times its JPEG)
                target, png = as_is, data
            try:
                atomic_write(target, png)
            except OSError as err:   # a failed write (ENOSPC) names no file: the one it was writing is said
                if err.filename is None and err.errno is not None:
                    raise OSError(err.errno, err.strerror, target) from err
                raise
            summary.exported += 1
            summary.replaced += bool(earlier)
        # One file per row: the one of the other extension (a PNG an export under a lower file limit wrote, or a
        # photo's JPEG one under a higher limit wrote) is taken out once this one is in place, kept or written.
        for other in {as_png, as_is} - {target}:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(other)
        summary.per_class[record.true_label] = summary.per_class.get(record.true_label, 0) + 1
        written.add(target)
    if prune:
        summary.removed += _prune(out_dir, written)
    summary.per_class = {name: summary.per_class.get(name, 0) for name in CLASS_NAMES}
    return summary


def _stopped(summary: ExportSummary, err: OSError) -> str:
    """What an export an OSError stopped partway had done (``summary``, counted into by :func:`export_feedback`),
    and the error, its file named: the files written before it are whole and kept (:class:`ExportStopped`)."""
    done = (f"{summary.exported} file(s) written before it stopped, {summary.already_present} there already, each "
            "whole" if summary.exported or summary.already_present else "nothing written")
    return f"cannot export the feedback store's images to {summary.out_dir}: {err} ({done})"


def _drop_relabelled_and_removed(out_dir: str, records: list[Feedback], removed: set[str]) -> tuple[int, int]:
    """Moves the files an earlier export wrote of rows relabelled since (a row's file in another class folder than
    its label's) to their label's folder, and removes those of rows since removed from the store (their ids in
    ``removed``) or relabelled whose new folder has their file already; returns how many were moved and how many
    removed. A moved file is the copy an earlier export made, which the export keeps if the store's image has been
    damaged since. The file of a row whose label is now none of the classes (a hand-edited database) is taken out,
    not counted: the row is still in the store, and the export names it (``unknown_labels``). Other files are left:
    ``out_dir`` may hold another store's export too."""
    label_of = {record.id: record.true_label for record in records}
    moved = dropped = 0
    for name in CLASS_NAMES:
        for entry in os.scandir(os.path.join(out_dir, name)):
            record_id, ext = os.path.splitext(entry.name)
            label = label_of.get(record_id)
            stale = label != name if label is not None else record_id in removed
            if not stale or ext[1:] not in EXTENSIONS.values() or entry.is_dir(follow_symlinks=False):
                continue
            moved_to = os.path.join(out_dir, label, entry.name) if label in CLASS_INDEX else None
            if moved_to and not os.path.lexists(moved_to):
                os.replace(entry.path, moved_to)
                moved += 1
            else:
                os.unlink(entry.path)
                dropped += label is None or label in CLASS_INDEX
    return moved, dropped


def _prune(out_dir: str, keep: set[str]) -> int:
    """Removes every file of ``out_dir``'s class folders that is not in ``keep``; returns how many."""
    removed = 0
    for name in CLASS_NAMES:
        folder = os.path.join(out_dir, name)
        for entry in os.scandir(folder):
            if entry.path not in keep and not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
                removed += 1
    return removed
