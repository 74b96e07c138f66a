"""bench.tensor_proto: prints the seconds of both ways to build an output's TensorProto, and how to reproduce."""
import re

from bench import tensor_proto


def test_prints_both_ways_side_by_side_and_how_to_reproduce(capsys):
    assert tensor_proto.main(["--shape", "10,3", "--dtypes", "float32,int32,bool", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^  (\w+) +appended one by one: [\d.]+ \([\d.-]+\)   to_proto: [\d.]+ \([\d.-]+\)$", out, re.M)
    assert rows == ["float32", "int32", "bool"]
    assert "reproduce: python -m bench.tensor_proto --shape 10,3 --dtypes float32,int32,bool --rounds 1" in out
