"""bench.string_tensors: prints the seconds to convert both forms of a DT_STRING tensor, and how to reproduce."""
import re

from bench import string_tensors


def test_prints_both_forms_and_how_to_reproduce(capsys):
    assert string_tensors.main(["--elements", "1000", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert set(re.findall(r"as (tensor_content|string_val)\s*: [\d.]+ s", out)) == {"tensor_content", "string_val"}
    assert "reproduce: python -m bench.string_tensors --elements 1000 --rounds 1" in out
