"""The built-in data generator: deterministic, laid out for --data-root, and clear when fonts are missing."""
import hashlib
import subprocess
import sys

import pytest
from PIL import Image

from pipeline import generate_letters
from pipeline.labels import CLASS_NAMES
from tests.conftest import ROOT


def digest(folder):
    h = hashlib.sha256()
    for path in sorted(folder.glob("*/*.png")):
        h.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def test_layout_and_determinism(tmp_path):
    classes = CLASS_NAMES[:4]
    generate_letters.generate(tmp_path / "a", per_class=3, seed=5, classes=classes, progress=False)
    generate_letters.generate(tmp_path / "b", per_class=3, seed=5, classes=classes, progress=False)
    generate_letters.generate(tmp_path / "c", per_class=3, seed=6, classes=classes, progress=False)
    assert sorted(p.name for p in (tmp_path / "a").iterdir() if p.is_dir()) == sorted(classes)
    assert all(len(list((tmp_path / "a" / c).glob("*.png"))) == 3 for c in classes)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")
    img = Image.open(next((tmp_path / "a" / "alef").glob("*.png")))
    assert img.mode == "L" and min(img.size) >= 8


def test_second_run_with_same_settings_leaves_files_untouched(tmp_path):
    generate_letters.generate(tmp_path, per_class=2, seed=1, classes=CLASS_NAMES[:2], progress=False)
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/*.png")}
    generate_letters.generate(tmp_path, per_class=2, seed=1, classes=CLASS_NAMES[:2], progress=False)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/*.png")} == mtimes
    generate_letters.generate(tmp_path, per_class=3, seed=1, classes=CLASS_NAMES[:2], progress=False)
    assert len(list(tmp_path.glob("*/*.png"))) == 6


def test_handwriting_faces_are_found_and_preferred():
    faces = generate_letters.find_faces()
    assert faces, "the Hebrew fonts (culmus, culmus-fancy, fonts-ldco) are installed by `make fonts`"
    assert faces[0].script and any(not f.script for f in faces)


def test_missing_fonts_name_the_package_to_install(tmp_path):
    with pytest.raises(generate_letters.NoHebrewFontError, match="apt-get install culmus"):
        generate_letters.require_faces(font_dirs=[str(tmp_path)])
    code = ("import sys, pipeline.generate_letters as g; g.FONT_DIRS = (sys.argv[1],); "
            "sys.exit(g.main(['--out', sys.argv[2], '--per-class', '1']))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "apt-get install culmus culmus-fancy fonts-ldco" in proc.stderr
