"""What building a response's TensorProto costs (serving.tensor_proto.to_proto, as a gRPC Predict and a request log
record build each output): an output of ``--shape`` in each of ``--dtypes``, its values appended to the typed field
one by one (the path before packed wire bytes) and as to_proto builds it, seconds per conversion (medians of
interleaved rounds, side by side).

    python -m bench.tensor_proto [--shape 1000,48,48,1 --dtypes float32,int64,bool --rounds 5]
"""
from __future__ import annotations

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)

import argparse
import math
import statistics
import time

import numpy as np
from tensorflow.core.framework import tensor_pb2

from bench import reproduce
from pipeline.flags import int_list, positive_int
from serving import tensor_proto


def appended_one_by_one(array: np.ndarray) -> tensor_pb2.TensorProto:
    """``array``'s AsProtoField proto built by appending each value to its typed field (a Python object each)."""
    array = np.asarray(array)
    dtype, field = tensor_proto._FIELDS[array.dtype]
    proto = tensor_pb2.TensorProto(dtype=dtype)
    proto.tensor_shape.SetInParent()              # a 0-d tensor's shape too: present, with no dimension
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    getattr(proto, field).extend(tensor_proto.field_values(array.reshape(-1), field).tolist())
    return proto


def dtype_list(text: str) -> list[np.dtype]:
    """argparse type of comma-separated numpy dtypes to_proto converts (float32,int64,bool)."""
    try:
        dtypes = [np.dtype(name) for name in text.split(",")]
    except TypeError:
        raise argparse.ArgumentTypeError(f"want comma-separated numpy dtypes, got {text!r}") from None
    unknown = [str(d) for d in dtypes if d not in tensor_proto._FIELDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"not a dtype of a typed field: {','.join(unknown)}")
    return dtypes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", type=int_list(0), default=[1000, 48, 48, 1])
    p.add_argument("--dtypes", type=dtype_list, default=dtype_list("float32,int64,bool"))
    p.add_argument("--rounds", type=positive_int, default=5)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    builds = {"appended one by one": appended_one_by_one, "to_proto": tensor_proto.to_proto}
    print(f"to_proto of a {args.shape} output ({math.prod(args.shape):,} values), seconds, "
          f"median of {args.rounds} (min-max):")
    for dtype in args.dtypes:
        array = (rng.standard_normal(args.shape) * 1000).astype(dtype)
        seconds = {}
        for _ in range(args.rounds):   # alternately, so that a noisy machine weighs on both alike
            for name, build in builds.items():
                started = time.perf_counter()
                build(array)
                seconds.setdefault(name, []).append(time.perf_counter() - started)
        print(f"  {dtype.name:8} " + "   ".join(
            f"{name}: {statistics.median(runs):.3f} ({min(runs):.3f}-{max(runs):.3f})"
            for name, runs in seconds.items()))
    chosen = ["--shape", ",".join(map(str, args.shape)), "--dtypes", ",".join(d.name for d in args.dtypes),
              "--rounds", str(args.rounds)]
    print("reproduce: " + reproduce.command("bench.tensor_proto", chosen))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
