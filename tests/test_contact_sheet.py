"""bench.contact_sheet: one row per simulated writer, and real letters beside them from an ordinary folder."""
import pytest
from PIL import Image

from bench import contact_sheet
from core.labels import CLASS_NAMES
from tests.conftest import letter_image, png_bytes


def test_a_row_is_one_writer_in_every_style(tmp_path, monkeypatch):
    rows_seen = []
    real_tile = contact_sheet.tile
    monkeypatch.setattr(contact_sheet, "tile", lambda rows, cell: rows_seen.append(rows) or real_tile(rows, cell))
    # into a folder not made yet: it is made
    assert contact_sheet.main(["--out", str(tmp_path / "new" / "sheet.png"), "--writers", "3", "--style", "mixed"]) == 0
    assert (tmp_path / "new" / "sheet.png").is_file()
    (rows,) = rows_seen
    for i, row in enumerate(rows):
        assert [p.parent.name for p in row] == list(CLASS_NAMES)
        assert all(p.name.endswith(f"_{i:04d}.png") for p in row), [p.name for p in row]


def test_real_letters_pass_over_hidden_and_non_image_files_and_name_a_missing_class(tmp_path, capsys):
    real = tmp_path / "real"
    for name in CLASS_NAMES:
        (real / name).mkdir(parents=True)
        (real / name / "1.png").write_bytes(png_bytes(letter_image(20, 30)))
    (real / "alef" / ".DS_Store").write_bytes(b"\0\1")
    (real / "alef" / "0_notes.txt").write_text("not a letter")
    assert contact_sheet.real_images(real / "alef", 2) == [real / "alef" / "1.png"]
    out = tmp_path / "sheet.png"
    assert contact_sheet.main(["--out", str(out), "--writers", "1", "--real-root", str(real)]) == 0
    assert Image.open(out).height > 2 * 48
    (real / "tav" / "1.png").unlink()
    (real / "tav").rmdir()
    with pytest.raises(SystemExit) as stopped:
        contact_sheet.main(["--out", str(out), "--writers", "1", "--real-root", str(real)])
    assert stopped.value.code == 2 and "has no class folder tav" in capsys.readouterr().err


@pytest.mark.parametrize("out, message", [("sheet", "does not end in .png"), ("a_file/s.png", "is not a folder"),
                                          ("a_dir.png", "is a folder")])
def test_a_bad_out_is_refused_before_any_letter_is_drawn(tmp_path, capsys, monkeypatch, out, message):
    (tmp_path / "a_dir.png").mkdir()
    (tmp_path / "a_file").write_text("x")
    monkeypatch.setattr(contact_sheet.generate_letters, "generate",
                        lambda *a, **k: pytest.fail("generated before --out was checked"))
    with pytest.raises(SystemExit) as caught:
        contact_sheet.main(["--out", str(tmp_path / out), "--writers", "1"])
    assert caught.value.code == 2 and message in capsys.readouterr().err


def damaged_image_data(png: bytes) -> bytes:
    """``png`` with its image data (IDAT) replaced by bytes that are no zlib stream, under a correct CRC: only
    decoding the pixels finds it."""
    import zlib
    at = 8
    while png[at + 4:at + 8] != b"IDAT":
        at += 12 + int.from_bytes(png[at:at + 4], "big")
    size = int.from_bytes(png[at:at + 4], "big")
    junk = bytes((7 + i) % 256 for i in range(size))
    chunk = size.to_bytes(4, "big") + b"IDAT" + junk + zlib.crc32(b"IDAT" + junk).to_bytes(4, "big")
    return png[:at] + chunk + png[at + 12 + size:]


def test_real_letters_pass_over_an_image_whose_pixels_cannot_be_decoded(tmp_path, capsys):
    """Such a file passed Pillow's verify() (which checks the chunks, not the pixels) and the sheet ended in a
    traceback when it was drawn."""
    real = tmp_path / "real"
    for name in CLASS_NAMES:
        (real / name).mkdir(parents=True)
        for n in (1, 2):
            (real / name / f"{n}.png").write_bytes(png_bytes(letter_image(20, 30, seed=n)))
    (real / "bet" / "0_damaged.png").write_bytes(damaged_image_data(png_bytes(letter_image(20, 30))))
    assert contact_sheet.real_images(real / "bet", 2) == [real / "bet" / "1.png", real / "bet" / "2.png"]
    out = tmp_path / "sheet.png"
    assert contact_sheet.main(["--out", str(out), "--writers", "2", "--real-root", str(real)]) == 0
    assert Image.open(out).height > 4 * 48


def test_a_transparent_or_16_bit_letter_is_shown_as_the_pipeline_reads_it(tmp_path):
    """Ink on a transparent background is shown over white and a 16-bit PNG by its high byte, as the pipeline reads
    them: they had been shown as a black square and a blank white one."""
    import numpy as np
    ink = np.zeros((40, 40), dtype=bool)
    ink[10:30, 18:22] = True
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[ink, 3] = 255                                                 # black ink, the rest transparent black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "transparent.png")
    Image.fromarray(np.where(ink, 2000, 60000).astype(np.uint16)).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I;16")
    for name in ("transparent.png", "deep.png"):
        cell = np.asarray(contact_sheet.tile([[tmp_path / name]], 48).crop((0, 0, 48, 48)))
        assert cell[1, 1] > 200 and cell.min() < 60, name           # paper light, ink dark


def test_real_root_is_checked_before_any_letter_is_drawn(tmp_path, capsys, monkeypatch):
    real = tmp_path / "real"
    for name in CLASS_NAMES:
        (real / name).mkdir(parents=True)
    monkeypatch.setattr(contact_sheet.generate_letters, "generate",
                        lambda *a, **k: pytest.fail("generated before --real-root was checked"))
    with pytest.raises(SystemExit) as stopped:
        contact_sheet.main(["--out", str(tmp_path / "s.png"), "--writers", "1", "--real-root", str(real)])
    assert stopped.value.code == 2
    assert "--real-root needs at least 1 image in every class folder" in capsys.readouterr().err
