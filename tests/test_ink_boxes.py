"""bench/ink_boxes.py: each class's ink-box proportions, generated against real."""
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from bench import ink_boxes
from tests.support import letter_roots
from tests.conftest import png_bytes
from tests.test_short_letters import bar


def write(root, name: str, height: int, width: int, count: int = 3):
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"{name}_{i}.png").write_bytes(png_bytes(bar(height + i, width)))


def test_medians_and_ratios_of_each_class(tmp_path, capsys):
    generated, real = tmp_path / "generated", tmp_path / "real"
    write(generated, "vav", 40, 8)
    write(real, "vav", 60, 8)
    write(generated, "yod", 16, 8)
    write(real, "yod", 16, 8)
    write(real, "tav", 20, 20)          # only in one folder: not compared
    (real / "notes").mkdir()             # not a class folder: ignored
    rows = ink_boxes.compare(ink_boxes.medians(ink_boxes.measure(str(generated))),
                             ink_boxes.medians(ink_boxes.measure(str(real))))
    assert [r["class"] for r in rows] == ["vav", "yod"]   # the classes' order, not the folders'
    vav = rows[0]
    assert vav["aspect"]["generated"] == pytest.approx(41 / 8)
    assert vav["aspect"]["real"] == pytest.approx(61 / 8)
    assert vav["aspect"]["ratio"] == pytest.approx(61 / 41)
    assert vav["ink/h²"]["ratio"] == pytest.approx((8 / 61) / (8 / 41))
    assert rows[1]["aspect"]["ratio"] == pytest.approx(1.0)
    assert vav["lean"] == {"generated": 0.0, "real": 0.0, "difference": 0.0}   # upright bars

    out_json = tmp_path / "rows.json"
    assert ink_boxes.main(["--real-root", str(real), "--generated", str(generated), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "vav" in out and "tav" not in out and "reproduce: python -m bench.ink_boxes" in out
    assert f"median |log ratio| of the aspect: {np.median([abs(np.log(61 / 41)), 0.0]):.3f}" in out
    assert "mean lean of all the letters: generated 0.000 (sd 0.000), real 0.000 (sd 0.000)" in out
    assert json.loads(out_json.read_text()) == {"classes": rows, "lean_mean_sd": {"generated": [0.0, 0.0],
                                                                                  "real": [0.0, 0.0]}}


def sheared_bar(lean: float) -> Image.Image:
    """A 60 px bar 6 px wide whose centre line moves ``lean`` px right per px of height going up."""
    image = Image.new("L", (80, 70), 255)
    draw = ImageDraw.Draw(image)
    for y in range(5, 65):
        x = 40 + lean * (35 - y)
        draw.line([(x - 3, y), (x + 3, y)], fill=0)
    return image


def test_the_lean_is_the_ink_s_slope_and_its_difference_is_real_minus_generated(tmp_path):
    for root, slope in (("generated", 0.0), ("real", 0.25)):
        folder = tmp_path / root / "vav"
        folder.mkdir(parents=True)
        (folder / "a.png").write_bytes(png_bytes(sheared_bar(slope)))
        (folder / "b.png").write_bytes(png_bytes(sheared_bar(-slope).transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    generated, real = ink_boxes.measure(str(tmp_path / "generated")), ink_boxes.measure(str(tmp_path / "real"))
    assert ink_boxes.mean_lean(real)[0] == pytest.approx(0.25, abs=0.02)   # a mirrored left lean leans right
    assert ink_boxes.mean_lean(real)[1] == pytest.approx(0.0, abs=0.02)    # both lean alike
    assert ink_boxes.mean_lean(generated) == pytest.approx((0.0, 0.0), abs=0.02)
    row = ink_boxes.compare(ink_boxes.medians(generated), ink_boxes.medians(real))[0]
    assert row["lean"]["difference"] == pytest.approx(0.25, abs=0.02)


def test_no_shared_class_or_no_images_is_a_clear_error(tmp_path, capsys):
    write(tmp_path / "generated", "vav", 40, 8)
    write(tmp_path / "real", "yod", 16, 8)
    with pytest.raises(SystemExit) as stop:
        ink_boxes.main(["--real-root", str(tmp_path / "real"), "--generated", str(tmp_path / "generated")])
    assert stop.value.code == 2 and "share no class" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        ink_boxes.main(["--real-root", str(tmp_path / "real"), "--generated", str(tmp_path / "empty")])
    assert "argument --generated: no images in the class folders of" in capsys.readouterr().err


def test_without_a_folder_it_writes_the_generated_letters(tmp_path, capsys):
    write(tmp_path / "real", "vav", 40, 8)
    assert ink_boxes.main(["--real-root", str(tmp_path / "real"), "--writers", "1", "--seed", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[0] == "vav" and len(lines) == 5   # header, vav, the median line, the mean lean, reproduce


@pytest.mark.parametrize("name", letter_roots.NAMES)
def test_a_root_without_letters_is_a_usage_error_before_any_work(tmp_path, monkeypatch, capsys, name):
    """--real-root missing, empty or without class folders is refused as the command line is read; it had ended in a
    traceback (ValueError: no images in the class folders of …) once the letters were generated or trained on."""
    letter_roots.assert_refused(ink_boxes, ["--writers", "1"], "--real-root", name, tmp_path, monkeypatch, capsys)


def test_a_negative_seed_is_refused_before_the_letters_are_written(tmp_path, monkeypatch, capsys):
    """--seed -1 had been taken and ended in a traceback from the generator."""
    write(tmp_path / "real", "vav", 40, 8)
    letter_roots.refuse_work(monkeypatch, ink_boxes)
    with pytest.raises(SystemExit) as stop:
        ink_boxes.main(["--real-root", str(tmp_path / "real"), "--seed", "-1"])
    assert stop.value.code == 2 and "argument --seed: must be at least 0, got -1" in capsys.readouterr().err


def test_a_json_in_a_missing_folder_is_refused_before_the_letters_are_written(tmp_path, monkeypatch, capsys):
    """--json had been opened after all the work: a folder not made yet lost the rows in a traceback."""
    write(tmp_path / "real", "vav", 40, 8)
    letter_roots.refuse_work(monkeypatch, ink_boxes)
    with pytest.raises(SystemExit) as stop:
        ink_boxes.main(["--real-root", str(tmp_path / "real"), "--json", str(tmp_path / "not_made" / "rows.json")])
    assert stop.value.code == 2
    assert f"argument --json: the folder {tmp_path / 'not_made'} does not exist" in capsys.readouterr().err


def test_the_reproduce_line_names_the_checkout_as_it_ran_not_with_its_json(tmp_path, monkeypatch, capsys):
    """A --json inside the checkout had been written before the reproduce line, which then said the run had
    uncommitted changes."""
    from bench import reproduce
    write(tmp_path / "real", "vav", 40, 8)
    out_json = tmp_path / "rows.json"
    monkeypatch.setattr(reproduce, "revision", lambda: "abc1234" + (" + uncommitted changes" if out_json.exists()
                                                                    else ""))
    assert ink_boxes.main(["--real-root", str(tmp_path / "real"), "--generated", str(tmp_path / "real"),
                           "--json", str(out_json)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("  # at abc1234") and out_json.exists()
