"""bench.reencode: prints both encodings of one lossy WebP photo, the JPEG the smaller, and how to reproduce."""
import re

import pytest

from bench import reencode


def test_prints_both_encodings_and_the_jpeg_is_smaller(capsys):
    assert reencode.main(["--width", "400", "--height", "300", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    sizes = {name: int(size.replace(",", "")) for name, size in re.findall(r"as (PNG|JPEG)\s*:\s*([\d,]+) bytes", out)}
    assert set(sizes) == {"PNG", "JPEG"} and sizes["JPEG"] < sizes["PNG"], out
    assert "reproduce: python -m bench.reencode --width 400 --height 300" in out


@pytest.mark.parametrize("quality, problem", [("150", "must be at most 100, got 150"),
                                              ("-5", "must be at least 0, got -5")])
def test_a_quality_outside_0_to_100_is_a_usage_error(quality, problem, capsys):
    with pytest.raises(SystemExit) as caught:
        reencode.main(["--width", "30", "--height", "20", "--quality", quality])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and f"argument --quality: {problem}" in err, err
