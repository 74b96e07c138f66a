"""Feedback: the API, the durable store under concurrency, and the export the pipeline reads."""
import errno
import io
import os
import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from core import feedback_cli
from core.labels import CLASS_NAMES
from tests.support.schema_1 import empty_store, insert_as_schema_1, resaved
from tests.web.conftest import STABLE_CLASS, Api, b64, blank_png, letter_png, padded_png
from core.feedback import (DB_FILE, EXPORT_LOCK, FeedbackError, FeedbackStore, FeedbackStoreError, export_feedback,
                           read_records)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def image_files(store_dir):
    found = []
    for folder, _, files in os.walk(os.path.join(store_dir, "images")):
        found += [os.path.join(folder, f) for f in files]
    return found


def unique_png(number: int) -> bytes:
    """A 32-px letter with ``number`` written in the grey of its first row's pixels: one image per number."""
    img = Image.open(io.BytesIO(letter_png(size=32, seed=number)))
    for bit in range(16):
        img.putpixel((bit, 0), 200 if number >> bit & 1 else 255)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def png_of(img) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def web(start_web, serving_labelled):
    return start_web(serving_labelled.url)


def test_feedback_is_stored_with_its_image(web):
    api = Api(web.url)
    png = letter_png(seed=3)
    status, answer = api.predict(png)
    assert status == 200
    best = answer["top"][0]
    status, stored = api.feedback(png, "alef", predicted_label=best["class"], probability=best["probability"],
                                  model_version=answer["model_version"], route=answer["route"])
    assert status == 201, stored
    assert stored["stored"] is True and stored["label"] == "alef" and stored["confirmed"] is False
    record = web.backend.store.get(stored["id"])
    assert record.true_label == "alef" and record.predicted_label == STABLE_CLASS
    assert record.probability == pytest.approx(best["probability"])
    assert record.model_version == 1 and record.route == "stable" and record.image_format == "PNG"
    assert record.model_name == "letters"   # the model the web client asks (--model): letters-monitor --model reads it
    assert record.created_at.endswith("+00:00")
    with open(web.backend.store.image_path(record), "rb") as handle:
        assert handle.read() == png

    other = letter_png(seed=4)
    status, stored = api.feedback(other, STABLE_CLASS, predicted_label=STABLE_CLASS, probability=0.6,
                                  model_version="1")
    assert status == 201 and stored["confirmed"] is True
    assert web.backend.store.count() == 2


def test_an_image_is_stored_once(web):
    """The same image sent again (a second Recognise of an unchanged drawing, the same file uploaded twice) is not
    a second training example: under its label it is the stored record, under another label a 409."""
    api = Api(web.url)
    png = letter_png(seed=5)
    first = api.feedback(png, "alef", predicted_label="bet", probability=0.5, model_version=1)
    again = api.feedback(png, "alef", predicted_label="alef", probability=0.9, model_version=1)
    assert first[0] == again[0] == 201 and again[1]["id"] == first[1]["id"] and again[1]["label"] == "alef"
    status, refused = api.feedback(png, "bet", predicted_label="alef", probability=0.9, model_version=1)
    assert status == 409 and refused["reason"] == "already_stored"
    assert f"already stored as alef ({first[1]['id'][:8]})" in refused["error"]
    assert web.backend.store.count() == 1 and len(image_files(web.backend.store.root)) == 1

    results = []                                   # sent at once, many times, under two labels: one row
    barrier = threading.Barrier(40)
    other = letter_png(seed=6)

    def send(i):
        barrier.wait()
        results.append(api.feedback(other, ("gimel", "dalet")[i % 2], predicted_label="bet", probability=0.5)[0])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(set(results)) == [201, 409] and len(results) == 40
    assert web.backend.store.count() == 2 and len(image_files(web.backend.store.root)) == 2


def test_the_409_says_the_command_that_corrects_this_store(start_web, serving_labelled, tmp_path, monkeypatch):
    """The command the 409 names, run as shown, relabels the row: it names the web client's store when that is not
    the one letters-feedback reads by default (it had not, and the command said there was no store there)."""
    monkeypatch.delenv("LETTERS_FEEDBACK_DIR", raising=False)
    store_dir = tmp_path / "my store"                          # (a space: quoted for the shell)
    web = start_web(serving_labelled.url, feedback_dir=str(store_dir))
    api = Api(web.url)
    png = letter_png(seed=8)
    status, first = api.feedback(png, "nun_final")
    assert status == 201
    status, refused = api.feedback(png, "bet")
    assert status == 409
    command = re.search(r"\(if bet is right: (.*)\)$", refused["error"]).group(1)
    assert command == f"letters-feedback --feedback-dir '{store_dir}' relabel {first['id'][:8]} bet"
    _, *args = shlex.split(command)
    assert feedback_cli.main(args) == 0
    assert web.backend.store.get(first["id"]).true_label == "bet"
    monkeypatch.setenv("LETTERS_FEEDBACK_DIR", str(store_dir))  # the store letters-feedback reads: not named
    status, refused = api.feedback(png, "alef")
    assert status == 409
    assert refused["error"].endswith(f"(if alef is right: letters-feedback relabel {first['id'][:8]} alef)")


def test_the_same_picture_in_another_file_is_the_stored_image(web):
    """One picture re-saved (another PNG compression, a BMP) had been stored once per file, under two labels too,
    and the pipeline trained on it under both: the store judges by the pixels, as the ExampleGen does."""
    api = Api(web.url)
    png = letter_png(seed=7)
    status, first = api.feedback(png, "bet")
    assert status == 201
    status, refused = api.feedback(resaved(png, compress_level=9), "kaf")
    assert status == 409 and refused["reason"] == "already_stored"
    assert f"already stored as bet ({first['id'][:8]})" in refused["error"]
    for copy in (resaved(png, "BMP"), resaved(png, compress_level=1)):
        status, again = api.feedback(copy, "bet")
        assert status == 201 and again["id"] == first["id"]
    assert web.backend.store.count() == 1 and len(image_files(web.backend.store.root)) == 1
    with open(web.backend.store.image_path(web.backend.store.get(first["id"])), "rb") as handle:
        assert handle.read() == png                             # the first file, as it came


def test_a_store_of_schema_1_is_upgraded_and_its_pictures_known_by_their_pixels(tmp_path, caplog):
    """A store written before the pixel digest: each row gets its image's digest when the store is opened, so a
    picture stored then is refused under another label in any file; a row whose image cannot be read is matched by
    its bytes and gets its digest at an opening that reads it (a digest of its bytes kept for good had let a
    re-saved copy in under another label once the image was back). A row that schema-1 code adds to the upgraded
    store is matched by its bytes, then upgraded. Pictures schema-1 code stored under two labels are said."""
    import sqlite3

    from core import image_io

    store_dir = tmp_path / "fb"
    empty_store(store_dir)
    old, gone, twice = letter_png(seed=8), letter_png(seed=9), letter_png(seed=11)
    insert_as_schema_1(store_dir, "a" * 32, old, "bet")
    insert_as_schema_1(store_dir, "b" * 32, gone, "gimel", write_image=False)
    insert_as_schema_1(store_dir, "d" * 32, twice, "vav")
    insert_as_schema_1(store_dir, "e" * 32, resaved(twice, compress_level=9), "nun_final")
    with caplog.at_level("WARNING", logger="core.feedback"):
        store = FeedbackStore(store_dir)
    assert "1 picture(s) in the feedback store" in caplog.text and "vav dddddddd = nun_final eeeeeeee" in caplog.text
    assert "upgrading the feedback store" not in caplog.text   # said for a store of 100 rows or more
    assert store.stats()["under_two_labels"] == [[f"vav {'d' * 32}", f"nun_final {'e' * 32}"]]
    # the picture under either of its stored labels is the row of that label; under a third, both are named
    assert store.add(twice, "PNG", "nun_final", once=True).id == "e" * 32
    with pytest.raises(FeedbackError, match=r"already stored as vav \(dddddddd\) and nun_final \(eeeeeeee\)"):
        store.add(twice, "PNG", "zayin", once=True)
    with sqlite3.connect(store_dir / DB_FILE) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()
    digests = {r.id: r.pixel_digest for r in store.records()}
    assert digests["a" * 32] == image_io.pixel_digest(old) and digests["b" * 32] is None
    with pytest.raises(FeedbackError, match="already stored as gimel"):
        store.add(gone, "PNG", "he", once=True)                 # its bytes, meanwhile
    store.close()
    back = store_dir / store.get("b" * 32).image_path                 # the image is back
    back.parent.mkdir(parents=True, exist_ok=True)
    back.write_bytes(gone)
    store = FeedbackStore(store_dir)
    assert store.get("b" * 32).pixel_digest == image_io.pixel_digest(gone)
    with pytest.raises(FeedbackError, match="already stored as gimel"):
        store.add(resaved(gone, "BMP"), "BMP", "he", once=True)
    with pytest.raises(FeedbackError, match=r"already stored as bet \(aaaaaaaa\)") as caught:
        store.add(resaved(old, "BMP"), "BMP", "kaf", once=True)
    assert caught.value.reason == "already_stored"
    assert store.add(resaved(old, compress_level=9), "PNG", "bet", once=True).id == "a" * 32

    newer = letter_png(seed=10)                               # schema-1 code, on the upgraded store
    insert_as_schema_1(store_dir, "c" * 32, newer, "dalet")
    assert store.get("c" * 32).pixel_digest is None
    with pytest.raises(FeedbackError, match="already stored as dalet"):
        store.add(newer, "PNG", "he", once=True)               # the same bytes: as schema-1 code judged
    store.close()
    reopened = FeedbackStore(store_dir)
    assert reopened.get("c" * 32).pixel_digest == image_io.pixel_digest(newer)
    with pytest.raises(FeedbackError, match="already stored as dalet"):
        reopened.add(resaved(newer, compress_level=1), "PNG", "he", once=True)
    assert reopened.count() == 5 and len(image_files(store_dir)) == 5


def test_a_long_upgrade_is_announced_before_it_starts(tmp_path, caplog):
    store_dir = tmp_path / "fb"
    empty_store(store_dir)
    for number in range(100):
        insert_as_schema_1(store_dir, f"{number:032x}", unique_png(number), "alef")
    with caplog.at_level("WARNING", logger="core.feedback"):
        FeedbackStore(store_dir).close()
    assert "the pixel digests of 100 stored images (one decode each)" in caplog.text


def test_a_store_of_a_newer_schema_is_refused_and_left_as_it_is(tmp_path):
    import sqlite3

    FeedbackStore(tmp_path / "fb").close()
    with sqlite3.connect(tmp_path / "fb" / DB_FILE) as conn:
        conn.execute("PRAGMA user_version = 3")
    conn.close()
    with pytest.raises(FeedbackStoreError, match="schema 3, written by a newer version of letters"):
        FeedbackStore(tmp_path / "fb")
    with pytest.raises(FeedbackStoreError, match="schema 3, written by a newer version of letters"):
        read_records(tmp_path / "fb")   # the pipeline's export and stats had read it
    with sqlite3.connect(tmp_path / "fb" / DB_FILE) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    conn.close()


def test_a_store_without_model_names_gets_the_column_and_keeps_every_row(tmp_path):
    """A store written before rows named their model: the model_name column is added when it is opened, every row
    kept as it was, named by no model; the schema stays 2, so that code of before still reads and adds to it."""
    import sqlite3

    store = FeedbackStore(tmp_path / "fb")
    for number, label in enumerate(("alef", "bet", "gimel")):
        store.add(unique_png(number), "PNG", label, predicted_label="alef", probability=0.5, model_version=3,
                  route="stable")
    before = [dict(r.to_json(), model_name=None) for r in store.records()]
    store.close()
    with sqlite3.connect(tmp_path / "fb" / DB_FILE) as conn:   # as code of before made it
        conn.execute("ALTER TABLE feedback DROP COLUMN model_name")
    conn.close()
    assert [r.to_json() for r in read_records(tmp_path / "fb")] == before   # read as it is by a reader of now

    store = FeedbackStore(tmp_path / "fb")
    assert [r.to_json() for r in store.records()] == before
    added = store.add(unique_png(9), "PNG", "dalet", predicted_label="dalet", model_version=4, model_name="other")
    store.close()
    with sqlite3.connect(tmp_path / "fb" / DB_FILE) as conn:
        assert "model_name" in {row[1] for row in conn.execute("PRAGMA table_info(feedback)")}
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        conn.execute("INSERT INTO feedback (id, created_at, created_unix, true_label, true_index, predicted_label, "
                     "predicted_index, probability, model_version, route, confirmed, image_path, image_format, "
                     "image_sha256, image_bytes, width, height, pixel_digest) "
                     "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",   # code of before adds a row
                     ("f" * 32, "2024-01-01T00:00:00.000+00:00", 1.0, "he", CLASS_NAMES.index("he"), None, None,
                      None, None, None, 0, added.image_path, "PNG", added.image_sha256, added.image_bytes, None, None,
                      None))
    conn.close()
    records = {r.id: r for r in read_records(tmp_path / "fb")}
    assert len(records) == 5 and records[added.id].model_name == "other" and records["f" * 32].model_name is None
    assert [records[row["id"]].to_json() for row in before] == before


@pytest.mark.parametrize("payload, reason", [
    ({"image": b64(letter_png())}, "missing_field"),
    ({"image": b64(letter_png()), "label": ""}, "missing_field"),
    ({"image": b64(letter_png()), "label": "omega"}, "unknown_label"),
    ({"image": b64(letter_png()), "label": "Alef"}, "unknown_label"),
    ({"image": b64(letter_png()), "label": ["alef"]}, "unknown_label"),
    ({"image": b64(letter_png()), "label": 0}, "unknown_label"),   # /api/classes' index: not a missing label
    ({"image": b64(letter_png()), "label": "alef", "predicted_label": "zeta"}, "unknown_label"),
    ({"image": b64(letter_png()), "label": "alef", "probability": 1.5}, "invalid_feedback"),
    ({"image": b64(letter_png()), "label": "alef", "probability": "high"}, "invalid_feedback"),
    ({"image": b64(letter_png()), "label": "alef", "model_version": "v2"}, "invalid_feedback"),
    ({"image": b64(letter_png()), "label": "alef", "probability": 10 ** 400}, "invalid_feedback"),
    ({"image": b64(letter_png()), "label": "alef", "model_version": str(2 ** 63)}, "invalid_feedback"),
    ({"image": b64(letter_png()), "label": "alef", "model_version": "9" * 5000}, "invalid_feedback"),
    ({"image": b64(letter_png()), "label": "alef", "model_version": "0" * 5000 + "9" * 20}, "invalid_feedback"),
    ({"image": b64(letter_png()), "label": "alef", "model_version": "1_0"}, "invalid_feedback"),   # int() reads 10
    ({"image": b64(letter_png()), "label": "alef", "model_version": "\u0663"}, "invalid_feedback"),   # Arabic 3
    ({"image": b64(letter_png()), "label": "alef", "model_version": " 7"}, "invalid_feedback"),
    ({"image": b64(letter_png()), "label": "alef", "model_version": 2.0}, "invalid_feedback"),
    ('{"label": "alef", "x": ' + "9" * 5000 + "}", "bad_json"),   # an integer past Python's digit limit
    ({"image": b64(letter_png()), "label": "alef", "route": "beta"}, "invalid_feedback"),
    ({"label": "alef"}, "missing_field"),
    ({"image": "%%%", "label": "alef"}, "bad_base64"),
    ({"image": b64(letter_png()[:60]), "label": "alef"}, "truncated_or_corrupt"),
    ({"image": b64(b"plain text"), "label": "alef"}, "not_an_image"),
    ({"image": b64(blank_png(255)), "label": "alef"}, "no_ink"),   # had been stored as alef, to be trained on
    # 4 kB, under every limit, and past the side TensorFlow's PNG decoder reads: stored, it failed a training batch
    ({"image": b64(png_of(Image.new("L", (1, 1_000_001), 255))), "label": "vav"}, "side_too_long"),
])
def test_malformed_feedback_is_rejected(web, payload, reason):
    status, answer = Api(web.url).post_json("/api/feedback", payload)
    assert (status, answer["reason"]) == (400, reason), answer
    assert web.backend.store.count() == 0 and image_files(web.backend.store.root) == []


def test_a_zero_padded_model_version_is_read_by_its_value_whatever_its_length(web):
    """A version's digits are read without their leading zeros: past 4,300 digits of them it had been a 500
    (int() refuses longer strings), where "0001" is version 1."""
    api = Api(web.url)
    for seed, version in enumerate(("0001", "0" * 5000 + "1")):
        status, stored = api.feedback(letter_png(seed=seed), "alef", model_version=version)
        assert status == 201, stored
        assert web.backend.store.get(stored["id"]).model_version == 1


def test_feedback_content_type_and_json(web):
    api = Api(web.url)
    assert api.post_json("/api/feedback", b"label=alef", "application/x-www-form-urlencoded")[0] == 415
    assert api.post_json("/api/feedback", b"{oops", "application/json")[1]["reason"] == "bad_json"
    assert api.post_json("/api/feedback", b'"alef"', "application/json")[1]["reason"] == "bad_json"


def test_feedback_takes_base64_without_its_padding(web):
    """An image in base64 without its trailing "=" is stored, as the model server reads {"b64": ...}; it had been
    refused as "'image' is not valid base64"."""
    png = padded_png()
    status, stored = Api(web.url).post_json("/api/feedback", {"image": {"b64": b64(png).rstrip("=")}, "label": "alef"})
    assert status == 201, stored
    with open(web.backend.store.image_path(web.backend.store.get(stored["id"])), "rb") as handle:
        assert handle.read() == png


def test_thousand_concurrent_feedback_posts(web):
    api = Api(web.url, timeout=120)
    total, threads_count = 1000, 1000   # every post on its own thread, released at once
    barrier = threading.Barrier(threads_count)
    results, errors = [], []
    lock = threading.Lock()
    images = [unique_png(i) for i in range(total)]   # each image once (the store keeps one record per image)

    def worker(w):
        barrier.wait()
        for i in range(w, total, threads_count):
            try:
                status, answer = api.feedback(images[i % len(images)], CLASS_NAMES[i % len(CLASS_NAMES)],
                                              predicted_label="bet", probability=0.5, model_version=1)
                with lock:
                    results.append((status, answer.get("id")))
            except Exception as err:   # noqa: BLE001 - collected and reported below
                with lock:
                    errors.append(repr(err))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert errors == []
    assert len(results) == total and {status for status, _ in results} == {201}
    assert len({record_id for _, record_id in results}) == total
    store = web.backend.store
    assert store.count() == total
    files = image_files(store.root)
    assert len(files) == total and not [f for f in files if ".tmp-" in f]
    assert sorted(r.id for r in store.records()) == sorted(record_id for _, record_id in results)
    assert store.stats()["per_class"]["alef"] == len(range(0, total, len(CLASS_NAMES)))


def test_store_is_wal_and_a_failed_insert_leaves_no_image(tmp_path):
    import sqlite3

    store = FeedbackStore(tmp_path / "fb")
    store.add(letter_png(), "PNG", "alef")
    with sqlite3.connect(tmp_path / "fb" / DB_FILE) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    for label, predicted in (("nope", None), ("alef", "Bet"), ("alef", 3), (None, None)):
        with pytest.raises(FeedbackError, match="unknown (predicted )?label") as caught:
            store.add(letter_png(), "PNG", label, predicted_label=predicted)
        assert caught.value.reason == "unknown_label"
    with pytest.raises(FeedbackError) as caught:
        store.add(letter_png(), "PNG", "alef", probability=float("nan"))
    assert caught.value.reason == "invalid_feedback"

    class Broken(Exception):
        pass

    def failing_connection():
        raise Broken()

    with sqlite3.connect(tmp_path / "fb" / DB_FILE) as conn:   # the insert fails after the image was written
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON feedback BEGIN SELECT RAISE(ABORT, 'refused'); END")
    with pytest.raises(Exception, match="refused"):
        store.add(letter_png(seed=5), "PNG", "bet")
    assert len(image_files(store.root)) == 1   # the one committed record only
    with sqlite3.connect(tmp_path / "fb" / DB_FILE) as conn:
        conn.execute("DROP TRIGGER refuse")
    store._pool = type("Pool", (), {"get_nowait": staticmethod(failing_connection)})()
    with pytest.raises(Broken):                  # no connection: nothing written
        store.add(letter_png(), "PNG", "bet")
    assert len(image_files(store.root)) == 1
    reopened = FeedbackStore(tmp_path / "fb")
    assert reopened.count() == 1


@pytest.mark.parametrize("how", ["removed", "replaced"])
def test_a_store_removed_or_replaced_while_in_use_stores_nothing_and_says_so(web, how):
    """Its open connections had gone on writing into the deleted database: each feedback answered 201 "stored"
    and lost, its image left in a folder made again without a database."""
    api, store = Api(web.url), web.backend.store
    assert api.post_json("/api/feedback", {"image": b64(unique_png(1)), "label": "alef"})[0] == 201
    moved = store.root + ".old"
    os.rename(store.root, moved)
    if how == "replaced":
        FeedbackStore(store.root).close()            # another, empty store where the first one was
    status, answer = api.post_json("/api/feedback", {"image": b64(unique_png(2)), "label": "bet"})
    assert (status, answer["reason"]) == (503, "not_stored") and "nothing was saved" in answer["error"], answer
    assert "until the web client is restarted" in answer["error"] and "try again later" not in answer["error"]
    assert os.path.isdir(store.root) == (how == "replaced") and image_files(store.root) == []
    with pytest.raises(FeedbackStoreError, match="removed or replaced while in use"):
        store.count()
    assert [r.true_label for r in FeedbackStore(moved).records()] == ["alef"]


def test_export_for_the_pipeline(tmp_path):
    store_dir = tmp_path / "fb"
    store = FeedbackStore(store_dir)
    png = letter_png(seed=5)
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(png)).save(jpeg, format="JPEG")
    first = store.add(png, "PNG", "alef", predicted_label="bet", probability=0.7, model_version=3)
    second = store.add(jpeg.getvalue(), "JPEG", "tav")
    third = store.add(png, "PNG", "alef")
    store.close()

    out = tmp_path / "export"
    summary = export_feedback(store_dir, out)
    assert (summary.exported, summary.already_present, summary.missing_images) == (3, 0, 0)
    assert summary.per_class["alef"] == 2 and summary.per_class["tav"] == 1 and summary.per_class["bet"] == 0
    assert sorted(os.listdir(out)) == sorted([*CLASS_NAMES, EXPORT_LOCK])   # (hidden: the pipeline leaves it out)
    assert (out / "alef" / f"{first.id}.png").read_bytes() == png
    assert sorted(os.listdir(out / "alef")) == sorted([f"{first.id}.png", f"{third.id}.png"])
    converted = Image.open(out / "tav" / f"{second.id}.png")
    assert converted.format == "PNG" and converted.size == (48, 48)

    again = export_feedback(store_dir, out)          # idempotent
    assert (again.exported, again.already_present) == (0, 3)

    # The pipeline's own reader accepts every exported file with the right label.
    from components import image_example_gen

    outcomes = [image_example_gen.read_one(path, str(out), 20 * 1024 * 1024, 40_000_000)
                for path in image_example_gen.list_inputs(str(out))]
    assert [o[0] for o in outcomes] == ["ok"] * 3
    assert sorted(o[2] for o in outcomes) == ["alef", "alef", "tav"]


def test_export_command_line(tmp_path):
    store = FeedbackStore(tmp_path / "fb")
    record = store.add(letter_png(), "PNG", "shin")
    store.close()
    env = dict(os.environ, LETTERS_FEEDBACK_DIR=str(tmp_path / "fb"))
    proc = subprocess.run([sys.executable, "-m", "core.feedback_cli", "export", "--out", str(tmp_path / "out")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "exported 1 new image(s)" in proc.stdout and f"--feedback-dir {tmp_path / 'fb'}" in proc.stdout
    assert (tmp_path / "out" / "shin" / f"{record.id}.png").exists()
    proc = subprocess.run([sys.executable, "-m", "core.feedback_cli", "--feedback-dir", str(tmp_path / "none"), "export",
                           "--out", str(tmp_path / "out2")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no feedback store" in proc.stderr
    # A bucket is not written through a local path (it had made ./gs:/bucket/... and said it exported there).
    proc = subprocess.run([sys.executable, "-m", "core.feedback_cli", "export", "--out", "gs://bucket/feedback"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--out gs://bucket/feedback: the output is written to a local folder, not a URL" in proc.stderr
    assert not (tmp_path / "gs:").exists()
    with pytest.raises(ValueError, match="local folder"):
        export_feedback(tmp_path / "fb", "gs://bucket/feedback")
    proc = subprocess.run([sys.executable, "-m", "core.feedback_cli", "stats"], cwd=ROOT, capture_output=True, text=True,
                          env=dict(env, LETTERS_BATCH_SIZE="abc"), timeout=120)
    assert proc.returncode == 2 and "LETTERS_BATCH_SIZE='abc'" in proc.stderr and "Traceback" not in proc.stderr


def test_export_into_the_store_is_refused(tmp_path, capsys):
    """--out the store's own folder, or one in it, had been accepted: 27 class folders of copies beside the
    store's database and images, carried along wherever the store is copied or backed up."""
    from core import feedback_cli
    store = FeedbackStore(tmp_path / "fb")
    store.add(letter_png(), "PNG", "shin")
    store.close()
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    os.symlink(tmp_path / "fb", tmp_path / "link")
    for out, where in ((tmp_path / "fb", "is the feedback"), (tmp_path / "fb" / "export", "is inside the feedback"),
                       (tmp_path / "link" / "export", "is inside the feedback")):
        with pytest.raises(SystemExit) as stop:
            feedback_cli.main(["--feedback-dir", str(tmp_path / "fb"), "export", "--out", str(out)])
        assert stop.value.code == 2
        assert f"--out {out} {where} store {tmp_path / 'fb'}: " in capsys.readouterr().err
        with pytest.raises(ValueError, match="give a folder outside it"):
            export_feedback(tmp_path / "fb", out)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.name != "link") == before
    assert feedback_cli.main(["--feedback-dir", str(tmp_path / "fb"), "export", "--out", str(tmp_path / "out")]) == 0


def test_processes_share_a_store(tmp_path):
    """Several processes (e.g. backends behind one proxy) add to the same store at once."""
    code = ("import core, sys\n"
            "from core.feedback import FeedbackStore\n"
            "from tests.web.conftest import letter_png\n"
            "store = FeedbackStore(sys.argv[1])\n"
            "png = letter_png(size=24)\n"
            "for i in range(60):\n"
            "    store.add(png, 'PNG', 'kaf_final', predicted_label='kaf', probability=0.4, model_version=2)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "fb")], cwd=ROOT) for _ in range(3)]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    store = FeedbackStore(tmp_path / "fb")
    assert store.count() == 180 and len(image_files(store.root)) == 180
    assert store.stats()["per_class"]["kaf_final"] == 180 and store.stats()["corrected"] == 180


def test_export_skips_damaged_images_and_exports_the_rest(tmp_path):
    store = FeedbackStore(tmp_path / "fb")
    good = store.add(letter_png(seed=1), "PNG", "alef")
    rotten = store.add(letter_png(seed=2), "PNG", "bet")
    gone = store.add(letter_png(seed=3), "PNG", "gimel")
    with open(store.image_path(rotten), "r+b") as f:      # same size, different bytes: bit rot
        f.seek(20)
        f.write(b"\xff\xff\xff\xff")
    os.unlink(store.image_path(gone))
    store.close()
    summary = export_feedback(tmp_path / "fb", tmp_path / "out")
    assert (summary.exported, summary.missing_images, summary.corrupt_images) == (1, 1, 1)
    assert [p.name for p in (tmp_path / "out").rglob("*.png")] == [f"{good.id}.png"]


def test_an_export_over_an_earlier_one_counts_the_images_damaged_since_and_keeps_their_copies(tmp_path):
    """An image exported before counted as already there whatever had become of the store's own: one deleted and
    one rotten since were said to be "0 missing, 0 corrupt" by every later export. They are counted now, and the
    copies the earlier export made while they were whole, maybe the last ones, are kept (pruned or not); an export
    to a new folder leaves them out as a first export does."""
    store = FeedbackStore(tmp_path / "fb")
    good = store.add(letter_png(seed=1), "PNG", "alef")
    rotten = store.add(letter_png(seed=2), "PNG", "bet")
    gone = store.add(letter_png(seed=3), "PNG", "gimel")
    store.close()
    for prune in (False, True):
        out = tmp_path / f"out-{prune}"
        assert export_feedback(tmp_path / "fb", out).exported == 3
    with open(store.image_path(rotten), "r+b") as f:      # same size, different bytes: bit rot
        f.seek(20)
        f.write(b"\xff\xff\xff\xff")
    os.unlink(store.image_path(gone))
    for prune in (False, True):
        summary = export_feedback(tmp_path / "fb", tmp_path / f"out-{prune}", prune=prune)
        assert (summary.exported, summary.already_present, summary.damaged_kept, summary.missing_images,
                summary.corrupt_images) == (0, 3, 2, 0, 0)
        assert summary.per_class["alef"] == summary.per_class["bet"] == summary.per_class["gimel"] == 1
        assert sorted(p.name for p in (tmp_path / f"out-{prune}").rglob("*.png")) == sorted(
            f"{row.id}.png" for row in (good, rotten, gone))
    summary = export_feedback(tmp_path / "fb", tmp_path / "new", prune=True)
    assert (summary.exported, summary.damaged_kept, summary.missing_images, summary.corrupt_images) == (1, 0, 1, 1)
    assert [p.name for p in (tmp_path / "new").rglob("*.png")] == [f"{good.id}.png"]


def test_a_relabelled_row_damaged_since_keeps_its_copy_moved_to_its_new_class(tmp_path):
    """A relabelled row's earlier copy is moved to its new class folder: it had been deleted before the rows were
    read, so a row whose stored image was gone since lost its last copy (0 kept, 1 missing, 1 removed)."""
    store = FeedbackStore(tmp_path / "fb")
    row = store.add(letter_png(seed=1), "PNG", "bet")
    whole = store.add(letter_png(seed=2), "PNG", "bet")
    assert export_feedback(tmp_path / "fb", tmp_path / "out", prune=True).exported == 2
    os.unlink(store.image_path(row))
    store.relabel(row.id, "kaf")
    store.relabel(whole.id, "gimel")
    store.close()
    summary = export_feedback(tmp_path / "fb", tmp_path / "out", prune=True)
    assert (summary.exported, summary.already_present, summary.damaged_kept, summary.missing_images,
            summary.removed) == (0, 2, 1, 0, 0)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")) == sorted(
        [f"kaf/{row.id}.png", f"gimel/{whole.id}.png"])


def test_a_lost_or_rotten_image_is_written_again_when_its_picture_is_sent_again(tmp_path):
    """A stored image deleted or rotten since had been answered "stored" when its picture came again, and every
    export skipped it for good: the same bytes sent again write it back (only that row's file is read), under its
    label; another label is still refused and writes nothing."""
    store = FeedbackStore(tmp_path / "fb")
    gone, rotten = (store.add(letter_png(seed=s), "PNG", "alef", once=True) for s in (1, 2))
    os.unlink(store.image_path(gone))
    with open(store.image_path(rotten), "r+b") as f:      # same size, different bytes: bit rot
        f.seek(20)
        f.write(b"\xff\xff\xff\xff")
    with pytest.raises(FeedbackError, match="already stored"):
        store.add(letter_png(seed=1), "PNG", "bet", once=True)
    assert not os.path.exists(store.image_path(gone))
    for seed, row in ((1, gone), (2, rotten)):
        again, added = store.add_once(letter_png(seed=seed), "PNG", "alef")
        assert (again.id, added) == (row.id, False)
        assert Path(store.image_path(row)).read_bytes() == letter_png(seed=seed)
    assert store.count() == 2 and len(image_files(store.root)) == 2
    store.close()
    summary = export_feedback(tmp_path / "fb", tmp_path / "out")
    assert (summary.exported, summary.missing_images, summary.corrupt_images) == (2, 0, 0)


def test_a_stored_image_that_cannot_be_read_is_counted_and_the_rest_exported(tmp_path):
    """An image the store cannot read (here a folder in its place: IsADirectoryError, as EACCES or EIO) had ended
    the whole export, and with it every pipeline run, in a traceback."""
    store = FeedbackStore(tmp_path / "fb")
    rows = [store.add(letter_png(seed=s), "PNG", "bet") for s in (1, 2, 3)]
    store.close()
    assert export_feedback(tmp_path / "fb", tmp_path / "old", prune=True).exported == 3
    for row in rows[:2]:
        os.unlink(store.image_path(row))
        os.mkdir(store.image_path(row))
    summary = export_feedback(tmp_path / "fb", tmp_path / "new", prune=True)
    assert (summary.exported, summary.corrupt_images) == (1, 2)
    summary = export_feedback(tmp_path / "fb", tmp_path / "old", prune=True)
    assert (summary.already_present, summary.damaged_kept, summary.corrupt_images) == (3, 2, 0)


def test_a_store_whose_database_is_damaged_is_a_clear_error(tmp_path):
    (tmp_path / "fb").mkdir()
    (tmp_path / "fb" / DB_FILE).write_bytes(b"this is not a database" * 100)
    with pytest.raises(FeedbackStoreError, match="cannot open the feedback store"):
        FeedbackStore(tmp_path / "fb")
    assert sorted(os.listdir(tmp_path / "fb")) == [DB_FILE]          # nothing created beside it
    for command in (["stats"], ["export", "--out", str(tmp_path / "out")]):
        proc = subprocess.run([sys.executable, "-m", "core.feedback_cli", "--feedback-dir", str(tmp_path / "fb"),
                               *command], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and proc.stderr.startswith("error: cannot read the feedback store"), proc.stderr
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("code, status", [(errno.ENOSPC, 507), (errno.EROFS, 503)])
def test_a_store_that_cannot_write_is_said_plainly(web, monkeypatch, code, status):
    """A full disk or a read-only store is not a 500: the user is told nothing was saved and may try again."""
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(web.backend.store, "add", fail)
    got, answer = Api(web.url).feedback(letter_png(), "alef")
    assert (got, answer["reason"]) == (status, "not_stored")
    assert os.strerror(code) in answer["error"] and "nothing was saved" in answer["error"]


def test_an_image_stored_already_is_answered_though_the_disk_is_full(web, monkeypatch):
    """Sent again while nothing can be written, a stored picture is still the stored record under its label and a
    409 under another: nothing of it needs writing (its image had been written before the look-up: a 507)."""
    from core import feedback

    api = Api(web.url)
    png = letter_png(seed=7)
    status, first = api.feedback(png, "alef")
    assert status == 201

    def full(*args, **kwargs):   # (the tests may run as root, whom a read-only folder does not stop)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(feedback, "atomic_write", full)
    status, again = api.feedback(png, "alef", predicted_label="alef")
    assert (status, again["id"], again["label"]) == (201, first["id"], "alef")
    status, refused = api.feedback(png, "bet")
    assert (status, refused["reason"]) == (409, "already_stored")
    status, answer = api.feedback(letter_png(seed=8), "alef")   # a new picture needs the disk: nothing saved
    assert (status, answer["reason"]) == (507, "not_stored")
    assert web.backend.store.count() == 1 and len(image_files(web.backend.store.root)) == 1


def _damage_pages(db_path, first=2, count=20):
    """Overwrites pages of a checkpointed SQLite file, its header left intact: it opens, its reads fail."""
    with open(db_path, "r+b") as f:
        f.seek(first * 4096)
        f.write(b"\xff" * 4096 * count)


def test_a_database_damaged_past_its_header_is_a_clear_error_not_a_traceback(tmp_path):
    store = FeedbackStore(tmp_path / "fb")
    for i in range(300):
        store.add(letter_png(size=24), "PNG", CLASS_NAMES[i % 27])
    with store._connection() as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    _damage_pages(tmp_path / "fb" / DB_FILE)
    for command in (["stats"], ["export", "--out", str(tmp_path / "out")]):
        proc = subprocess.run([sys.executable, "-m", "core.feedback_cli", "--feedback-dir", str(tmp_path / "fb"),
                               *command], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "malformed" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    from pipeline import generate_letters
    generate_letters.generate(tmp_path / "data", per_class=1, seed=3, progress=False)
    # The runner in its own process: it sets up logging for the pipeline, which later tests here would inherit.
    proc = subprocess.run([sys.executable, "local_runner.py", "--data-root", str(tmp_path / "data"), "--no-pretrain",
                           "--feedback-dir", str(tmp_path / "fb"), "--pipeline-root", str(tmp_path / "p"), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "malformed" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_the_web_client_refuses_a_store_that_is_not_a_database_in_one_line(tmp_path):
    (tmp_path / "fb").mkdir()
    (tmp_path / "fb" / DB_FILE).write_bytes(b"this is not a database" * 100)
    proc = subprocess.run([sys.executable, "-m", "web", "--port", "0", "--feedback-dir", str(tmp_path / "fb")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: cannot open the feedback store" in proc.stderr


def test_a_database_that_cannot_grow_is_507_and_keeps_no_image(web):
    """SQLite's "database or disk is full" (here: its page limit, as a full disk would) is the full disk's 507."""
    store = web.backend.store
    with store._connection() as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
    images = len(image_files(store.root))
    answers = [Api(web.url).feedback(unique_png(i), "alef") for i in range(40)]
    full = [answer for status, answer in answers if status != 201]
    assert full and all(answer["reason"] == "not_stored" and "the disk is full" in answer["error"] for answer in full)
    assert {status for status, _ in answers} == {201, 507}   # the connection that failed is replaced
    assert len(image_files(store.root)) == images + sum(status == 201 for status, _ in answers) == store.count()


def test_the_pipelines_export_holds_exactly_the_stores_images(tmp_path, capsys):
    """Another store's images, and the temporary files of an export cut short, are not trained on."""
    import local_runner
    from core import configs
    first, second = FeedbackStore(tmp_path / "a"), FeedbackStore(tmp_path / "b")
    for i in range(5):
        first.add(letter_png(seed=i), "PNG", "alef")
    kept = second.add(letter_png(seed=9), "PNG", "bet")
    first.close(), second.close()
    config = configs.Config(pipeline_root=str(tmp_path / "p"), feedback_dir=str(tmp_path / "a"))
    out = local_runner.export_feedback(config)
    (tmp_path / "p" / "feedback" / "bet" / ".tmp-cut.part").write_bytes(letter_png(seed=9))
    assert local_runner.export_feedback(config.replace(feedback_dir=str(tmp_path / "b"))) == out
    assert [p.relative_to(out).as_posix() for p in sorted(Path(out).rglob("*")) if p.is_file()] == [
        EXPORT_LOCK, f"bet/{kept.id}.png"]
    assert "6 files no longer in the store removed" in capsys.readouterr().out
    summary = export_feedback(tmp_path / "a", tmp_path / "mine")            # the command's export prunes nothing
    (tmp_path / "mine" / "alef" / "notes.txt").write_text("mine")
    assert export_feedback(tmp_path / "b", tmp_path / "mine").removed == 0 and summary.exported == 5
    assert (tmp_path / "mine" / "alef" / "notes.txt").exists()


@pytest.fixture
def read_only_view(tmp_path):
    """A read-only bind mount of a folder (as the monitor's CronJob mounts the store); needs mount privileges."""
    mounts = []

    def view(folder):
        target = tmp_path / f"ro-{len(mounts)}"
        target.mkdir()
        done = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(target)], capture_output=True)
        if done.returncode:
            pytest.skip(f"no bind mounts here (not root): {done.stderr.decode().strip()}")
        mounts.append(target)
        return target

    yield view
    for target in mounts:
        subprocess.run(["umount", str(target)], check=False)


def test_the_store_is_read_from_a_read_only_mount_while_written_and_after(tmp_path, read_only_view):
    from core.feedback import read_records
    from pipeline.monitor import cli
    store = FeedbackStore(tmp_path / "fb")
    ids = [store.add(letter_png(seed=i), "PNG", "alef").id for i in range(3)]
    view = read_only_view(tmp_path / "fb")
    with pytest.raises(FeedbackStoreError):
        FeedbackStore(view)                                            # it would make its tables there
    assert [r.id for r in read_records(view)] == ids                   # a writer has it open (-wal, -shm)
    store.close()
    assert not (tmp_path / "fb" / (DB_FILE + "-wal")).exists()
    assert [r.id for r in read_records(view)] == ids                   # the last writer closed it
    config, _, _ = cli.parse_args(["--feedback-dir", str(view), "--pipeline-root", str(tmp_path / "p")])
    assert [r.id for r in cli._feedback(config)] == ids


def test_rows_in_the_wal_of_a_read_only_store_without_its_shm_file_are_read(tmp_path, read_only_view):
    """A writer killed before it checkpointed leaves rows in feedback.sqlite-wal; a read-only folder without the
    -shm file opens only as immutable, which ignores the WAL: those rows had been left out without a word (the
    table too, in a store whose WAL held it: "no such table")."""
    import shutil
    store = FeedbackStore(tmp_path / "fb")
    ids = [store.add(letter_png(seed=0), "PNG", "alef").id]
    store.close()                                                      # checkpointed into feedback.sqlite
    store = FeedbackStore(tmp_path / "fb")
    ids += [store.add(letter_png(seed=i), "PNG", "bet").id for i in (1, 2)]
    (tmp_path / "killed").mkdir()
    for name in (DB_FILE, DB_FILE + "-wal"):   # as a writer killed now leaves them, the -shm file gone
        shutil.copyfile(tmp_path / "fb" / name, tmp_path / "killed" / name)
    store.close()
    view = read_only_view(tmp_path / "killed")
    assert [r.id for r in read_records(view)] == ids
    assert sorted(os.listdir(view)) == [DB_FILE, DB_FILE + "-wal"]


def test_reading_the_store_changes_nothing_and_a_damaged_one_is_an_error(tmp_path):
    from core.feedback import read_records
    store = FeedbackStore(tmp_path / "fb")
    store.add(letter_png(), "PNG", "bet")
    store.close()
    before = (tmp_path / "fb" / DB_FILE).read_bytes()
    assert [r.true_label for r in read_records(tmp_path / "fb")] == ["bet"]
    assert (tmp_path / "fb" / DB_FILE).read_bytes() == before
    (tmp_path / "fb" / DB_FILE).write_bytes(b"this is not a database" * 100)
    with pytest.raises(FeedbackStoreError, match="cannot read the feedback store"):
        read_records(tmp_path / "fb")


def test_the_web_client_on_a_busy_port_says_so_in_one_line(tmp_path):
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "web", "--port", str(port), "--feedback-dir", str(tmp_path / "fb")],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use (--port chooses another)" in proc.stderr


def test_a_feedback_store_that_is_not_there_is_said(tmp_path, capsys):
    import local_runner
    from core import configs
    config = configs.Config(pipeline_root=str(tmp_path / "p"), feedback_dir=str(tmp_path / "typo"))
    assert local_runner.export_feedback(config) is None
    assert f"Feedback: none, no feedback store at {tmp_path / 'typo'}" in capsys.readouterr().out


def test_feedback_over_the_pipelines_file_limit_is_refused_and_its_prediction_answered(start_web, serving_labelled,
                                                                                        monkeypatch):
    """With --max-upload-bytes above the pipeline's file limit (LETTERS_MAX_FILE_BYTES), feedback the pipeline
    would refuse as too_large had been answered 201 stored, and never trained on: it is a 413 saying so. A BMP over
    the limit whose PNG is under it is trained on (the export writes the PNG): stored."""
    import numpy as np

    from web.config import WebConfig
    monkeypatch.setenv("LETTERS_MAX_FILE_BYTES", "50000")
    assert WebConfig.from_env().max_file_bytes == 50_000
    web = start_web(serving_labelled.url, max_upload_bytes=200_000, max_file_bytes=50_000)
    api = Api(web.url)
    noise = png_of(Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300), dtype=np.uint8)))
    assert 50_000 < len(noise) < 200_000
    assert api.predict(noise)[0] == 200
    status, refused = api.feedback(noise, "alef")
    assert (status, refused["reason"]) == (413, "too_large")
    assert (f"{len(noise)} bytes is over the pipeline's 50000-byte file limit (LETTERS_MAX_FILE_BYTES): it is "
            "recognised, not stored as feedback") in refused["error"]
    assert web.backend.store.count() == 0 and image_files(web.backend.store.root) == []
    bmp = io.BytesIO()
    Image.open(io.BytesIO(letter_png(size=200))).convert("RGB").save(bmp, format="BMP")
    assert len(bmp.getvalue()) > 50_000
    assert api.feedback(bmp.getvalue(), "alef")[0] == 201
    assert export_feedback(web.backend.store.root, web.backend.store.root + "-export",
                           max_file_bytes=50_000).exported == 1


def test_feedback_over_the_pipelines_pixel_limit_is_refused(tmp_path, monkeypatch):
    """With --max-image-pixels above the pipeline's pixel limit (LETTERS_MAX_IMAGE_PIXELS), a large drawing had been
    answered 201 stored, and the ExampleGen then skipped it as a decompression bomb: it is refused, saying so."""
    from web.config import WebConfig
    from web.server import ApiError, Backend
    monkeypatch.setenv("LETTERS_MAX_IMAGE_PIXELS", "1000000")
    assert WebConfig.from_env().pipeline_max_image_pixels == 1_000_000
    config = WebConfig(feedback_dir=str(tmp_path / "fb"), max_image_pixels=4_000_000,
                       pipeline_max_image_pixels=1_000_000)
    backend = Backend(config)
    big = letter_png(size=1500)
    try:
        with pytest.raises(ApiError) as refused:
            backend.feedback({"image": b64(big), "label": "alef"})
        assert (refused.value.status, refused.value.reason) == (400, "decompression_bomb")
        assert ("(1500x1500 = 2250000 pixels is over the pipeline's 1000000-pixel limit (LETTERS_MAX_IMAGE_PIXELS): "
                "it is recognised, not stored as feedback, as training would not read it)") in refused.value.message
        assert backend.store.count() == 0 and image_files(backend.store.root) == []
        assert backend.feedback({"image": b64(letter_png(size=1000)), "label": "alef"})["stored"]
    finally:
        backend.close()
