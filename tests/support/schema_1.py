"""Feedback stores as the code of schema 1 wrote them (no pixel digest: :mod:`core.feedback`), and a picture saved
again in another file, for the tests of their upgrade and of the pictures they hold under two labels."""
import hashlib
import io
import os
import sqlite3
from pathlib import Path

from PIL import Image

from core.feedback import DB_FILE
from core.labels import CLASS_NAMES


def resaved(png: bytes, fmt: str = "PNG", **options) -> bytes:
    """The picture of ``png`` in another file: other bytes, the same pixels."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).save(buffer, format=fmt, **options)
    assert buffer.getvalue() != png
    return buffer.getvalue()


SCHEMA_1 = """
CREATE TABLE feedback (
    id TEXT PRIMARY KEY, created_at TEXT NOT NULL, created_unix REAL NOT NULL, true_label TEXT NOT NULL,
    true_index INTEGER NOT NULL, predicted_label TEXT, predicted_index INTEGER, probability REAL,
    model_version INTEGER, route TEXT, confirmed INTEGER NOT NULL, image_path TEXT NOT NULL,
    image_format TEXT NOT NULL, image_sha256 TEXT NOT NULL, image_bytes INTEGER NOT NULL, width INTEGER,
    height INTEGER);
CREATE INDEX feedback_created ON feedback (created_unix);
CREATE INDEX feedback_image ON feedback (image_sha256);
PRAGMA user_version = 1;
"""


def empty_store(store_dir) -> Path:
    """``store_dir`` made, holding an empty store of schema 1 (no image yet)."""
    Path(store_dir).mkdir(parents=True)
    with sqlite3.connect(os.path.join(store_dir, DB_FILE)) as conn:
        conn.executescript(SCHEMA_1)
    conn.close()
    return Path(store_dir)


def insert_as_schema_1(store_dir, record_id: str, image: bytes, label: str, write_image: bool = True) -> None:
    """A row as the code of schema 1 adds it (no pixel digest), with its image."""
    rel = f"images/{record_id[:2]}/{record_id}.png"
    if write_image:
        os.makedirs(os.path.join(store_dir, "images", record_id[:2]), exist_ok=True)
        Path(store_dir, rel).write_bytes(image)
    with sqlite3.connect(os.path.join(store_dir, DB_FILE)) as conn:
        conn.execute("INSERT INTO feedback (id, created_at, created_unix, true_label, true_index, confirmed, "
                     "image_path, image_format, image_sha256, image_bytes) VALUES (?,?,?,?,?,?,?,?,?,?)",
                     (record_id, "2024-01-01T00:00:00.000+00:00", 1.0, label, CLASS_NAMES.index(label), 0, rel,
                      "PNG", hashlib.sha256(image).hexdigest(), len(image)))
        conn.execute("PRAGMA user_version = 1")   # (schema-1 code sets it at each opening)
    conn.close()
