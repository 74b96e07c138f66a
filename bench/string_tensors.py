"""What converting a large ``DT_STRING`` request tensor costs (serving.tensor_proto.to_array, as a gRPC Predict
converts each input before the batch size is checked): ``--elements`` empty strings sent as ``tensor_content``
(varint lengths, decoded as Tensor::FromProto's DecodeStringList) and as ``string_val``, seconds per conversion
(medians).

    python -m bench.string_tensors [--elements 5000000 --rounds 5]
"""
from __future__ import annotations

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)

import argparse
import statistics
import time

from tensorflow.core.framework import tensor_pb2, types_pb2

from bench import reproduce
from pipeline.flags import positive_int
from serving import tensor_proto


def protos(elements: int) -> dict[str, tensor_pb2.TensorProto]:
    """``elements`` empty strings, as ``tensor_content`` (one zero length each) and as ``string_val``."""
    content = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_content=b"\x00" * elements)
    typed = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b""] * elements)
    for proto in (content, typed):
        proto.tensor_shape.dim.add(size=elements)
    return {"tensor_content": content, "string_val": typed}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--elements", type=positive_int, default=5_000_000)
    p.add_argument("--rounds", type=positive_int, default=5)
    args = p.parse_args(argv)
    requests = protos(args.elements)
    tensor_proto.to_array(protos(1)["tensor_content"], "images")   # TensorFlow's first op, out of the timings
    seconds = {}
    for _ in range(args.rounds):   # alternately, so that a noisy machine weighs on both alike
        for name, proto in requests.items():
            started = time.perf_counter()
            array = tensor_proto.to_array(proto, "images")
            seconds.setdefault(name, []).append(time.perf_counter() - started)
            assert array.shape == (args.elements,)
            del array
    print(f"{args.elements:,} empty strings in a DT_STRING TensorProto, to_array:")
    for name, runs in seconds.items():
        print(f"  as {name:14}: {statistics.median(runs):.3f} s (median of {len(runs)}; "
              f"min {min(runs):.3f}, max {max(runs):.3f})")
    chosen = ["--elements", args.elements, "--rounds", args.rounds]
    print("reproduce: " + reproduce.command("bench.string_tensors", [str(a) for a in chosen]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
