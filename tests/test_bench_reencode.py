"""bench.reencode: prints both encodings of one lossy WebP photo, the JPEG the smaller, and how to reproduce."""
import re

from bench import reencode


def test_prints_both_encodings_and_the_jpeg_is_smaller(capsys):
    assert reencode.main(["--width", "400", "--height", "300", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    sizes = {name: int(size.replace(",", "")) for name, size in re.findall(r"as (PNG|JPEG)\s*:\s*([\d,]+) bytes", out)}
    assert set(sizes) == {"PNG", "JPEG"} and sizes["JPEG"] < sizes["PNG"], out
    assert "reproduce: python -m bench.reencode --width 400 --height 300" in out
