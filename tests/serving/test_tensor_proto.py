"""serving/tensor_proto.py: TensorProto <-> numpy as TF Serving's Tensor::FromProto / AsProtoField convert them."""
import sys
from types import SimpleNamespace

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import predict_pb2

from bench.tensor_proto import appended_one_by_one
from serving import inference, tensor_proto
from serving.status import ServingError


@pytest.mark.parametrize("array, field", [
    (np.array([[1.5, -2.0]], np.float32), "float_val"),
    (np.array([1.5, 2.25, -3.0], ml_dtypes.bfloat16), "half_val"),
    (np.array([0.5, 65504.0], np.float16), "half_val"),
    (np.array([1 + 2j, 3 - 4j], np.complex64), "scomplex_val"),
    (np.array([[1e300 + 1j]], np.complex128), "dcomplex_val"),
    (np.array([7, -1], np.int64), "int64_val"),
    (np.array([b"a", b"\xff"], object), "string_val"),
])
def test_outputs_in_their_typed_field_and_back(array, field):
    proto = tensor_proto.to_proto(array)
    assert proto.ListFields() and getattr(proto, field) and not proto.tensor_content
    assert proto.dtype == tf.make_tensor_proto(array).dtype            # TensorFlow's own enum for the dtype
    back = tf.make_ndarray(proto)                                     # as a client reads it
    assert back.dtype == array.dtype and back.shape == array.shape and (back == array).all()
    assert tensor_proto.dtype_enum(array) == proto.dtype
    assert (tensor_proto.to_array(proto, "x") == array).all()


def test_more_typed_values_than_the_shape_holds_are_cut_and_fewer_repeat_the_last():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.5, 2.5, 3.5])
    proto.tensor_shape.dim.add(size=2)
    assert tensor_proto.to_array(proto, "x").tolist() == [1.5, 2.5]
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_COMPLEX64, scomplex_val=[1, 2, 3, 4, 5, 6])
    proto.tensor_shape.dim.add(size=1)
    assert tensor_proto.to_array(proto, "x").tolist() == [1 + 2j]
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64, int64_val=[4])
    proto.tensor_shape.dim.add(size=3)
    assert tensor_proto.to_array(proto, "x").tolist() == [4, 4, 4]
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=np.zeros(3, np.float32).tobytes())
    proto.tensor_shape.dim.add(size=2)                              # a content of the wrong size is refused
    with pytest.raises(ServingError, match="tensor parsing error: x"):
        tensor_proto.to_array(proto, "x")


def _proto(dtype, dims, unknown_rank=False, **fields):
    proto = tensor_pb2.TensorProto(dtype=dtype, **fields)
    for size in dims:
        proto.tensor_shape.dim.add(size=size)
    proto.tensor_shape.unknown_rank = unknown_rank
    return proto


@pytest.mark.parametrize("proto", [
    _proto(types_pb2.DT_STRING, [2], tensor_content=b"\x03\x01abcd"),   # C++ AsProtoTensorContent's strings
    _proto(types_pb2.DT_STRING, [], tensor_content=b"\x00"),
    _proto(types_pb2.DT_STRING, [1], tensor_content=b"\x80\x80\x80\x80\x10"),   # a varint32's fifth byte
    _proto(types_pb2.DT_STRING, [1], True, string_val=[b"x"]),          # unknown_rank beside a full shape
    _proto(types_pb2.DT_FLOAT, [], True, float_val=[1.0]),
    _proto(types_pb2.DT_FLOAT, [0], tensor_content=b"abc"),             # no element: the content is not read
    _proto(types_pb2.DT_STRING, [0, 3], tensor_content=b"abc"),
    _proto(types_pb2.DT_FLOAT, [0], tensor_content=b"abc", float_val=[1, 2]),   # nor its typed values
    _proto(types_pb2.DT_STRING, [0], tensor_content=b"\x00", string_val=[b"a", b"b"]),
    _proto(types_pb2.DT_BOOL, [2], tensor_content=b"\x01\x00"),
    _proto(types_pb2.DT_FLOAT, [2], tensor_content=np.array([1, 2], np.float32).tobytes()),
], ids=lambda proto: str(proto).replace("\n", " "))
def test_parsed_as_tensorflow_parses_it(proto):
    expected = np.asarray(tf.io.parse_tensor(proto.SerializeToString(), tf.as_dtype(proto.dtype)))  # FromProto
    parsed = tensor_proto.to_array(proto, "x")
    assert parsed.shape == expected.shape and parsed.tolist() == expected.tolist()


@pytest.mark.parametrize("proto", [
    _proto(types_pb2.DT_STRING, [2], tensor_content=b"\x03\x01abc"),    # a byte short
    _proto(types_pb2.DT_STRING, [1], tensor_content=b"\x03abcd"),       # a byte over
    _proto(types_pb2.DT_STRING, [1], tensor_content=b"\x80\x80\x80\x80\x80\x00"),   # a six-byte varint
    _proto(types_pb2.DT_STRING, [3], tensor_content=b"\x00\x00"),
    _proto(types_pb2.DT_FLOAT, [-1], float_val=[1]),
    _proto(types_pb2.DT_FLOAT, [2 ** 40, 2 ** 40], float_val=[1]),      # more elements than an int64 counts
    _proto(types_pb2.DT_FLOAT, [1] * 255, float_val=[1]),               # more than 254 dimensions
    _proto(types_pb2.DT_BOOL, [2], tensor_content=b"\x02\x00"),         # a bool byte other than 0 or 1
], ids=lambda proto: str(proto).replace("\n", " ")[:80])
def test_refused_where_tensorflow_refuses_it(proto):
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.parse_tensor(proto.SerializeToString(), tf.as_dtype(proto.dtype))
    with pytest.raises(ServingError, match="^tensor parsing error: x$"):
        tensor_proto.to_array(proto, "x")


def _varint(size):
    """A length as DecodeStringList reads it: seven bits a byte, low first, the top bit set on all but the last."""
    out = bytearray()
    while size >= 0x80:
        out.append(size & 0x7F | 0x80)
        size >>= 7
    return bytes(out + bytes([size]))


@pytest.mark.parametrize("dims, content, strings", [
    ([1], b"\x00", [b""]),
    ([3], b"\x00\x00\x00", [b"", b"", b""]),
    ([2, 2], b"\x01\x00\x02\x00ahi", [[b"a", b""], [b"hi", b""]]),
    ([], b"\x02\xff\x00", b"\xff\x00"),                              # a scalar, its bytes as they are
    ([2], b"\xc8\x01\x00" + b"x" * 200, [b"x" * 200, b""]),          # a two-byte length
    ([1], b"\x81\x80\x80\x80\x70x", [b"x"]),                          # a fifth byte's bits past 32 dropped
], ids=lambda value: repr(value)[:40])
def test_string_content_decoded_to_its_strings(dims, content, strings):
    parsed = tensor_proto.to_array(_proto(types_pb2.DT_STRING, dims, tensor_content=content), "x")
    assert parsed.dtype == object and parsed.shape == tuple(dims) and parsed.tolist() == strings


@pytest.mark.parametrize("dims, content", [
    ([1], b"\x80"),                                # a truncated length
    ([2], b"\x00\x81"),                            # the second length truncated
    ([2], b"\x00\x81\x80\x80\x80\x80"),            # the second length over five bytes
    ([1], b"\x05abc"),                             # a length past the content
    ([2], b"\x01\x01a"),                           # lengths past the content by a byte
    ([1], b"\x00x"),                               # a byte after the strings
    ([2], b"\x00"),                                # fewer lengths than elements
    ([1 << 40], b"\x00"),                          # refused before TensorFlow would allocate 2^40 strings
], ids=lambda value: repr(value)[:40])
def test_string_content_not_as_decode_string_list_reads_it_is_refused(dims, content):
    with pytest.raises(ServingError, match="^tensor parsing error: x$"):
        tensor_proto.to_array(_proto(types_pb2.DT_STRING, dims, tensor_content=content), "x")


def test_a_large_string_content_is_decoded_to_its_strings_with_no_python_work_per_string():
    """100,000 strings of 0 to 299 bytes (one- and two-byte lengths) come back as sent; the Python calls made
    converting 10,000 strings are as many as for 10 (TensorFlow's C++ DecodeStringList decodes them): a varint
    loop in Python had taken 9 s, holding the GIL, for the 5 million empty strings of one refused request."""
    rng = np.random.default_rng(0)
    strings = [rng.bytes(size) for size in rng.integers(0, 300, 100_000)]
    content = b"".join(_varint(len(s)) for s in strings) + b"".join(strings)
    parsed = tensor_proto.to_array(_proto(types_pb2.DT_STRING, [len(strings)], tensor_content=content), "x")
    assert parsed.dtype == object and parsed.tolist() == strings

    def python_calls(count):
        proto = _proto(types_pb2.DT_STRING, [count], tensor_content=b"\x01" * count + b"a" * count)
        calls = []
        sys.setprofile(lambda frame, event, arg: calls.append(event))
        try:
            tensor_proto.to_array(proto, "x")
        finally:
            sys.setprofile(None)
        return len(calls)

    python_calls(10), python_calls(10_000)                          # TensorFlow's first calls, out of the count
    assert python_calls(10_000) < 2 * python_calls(10)


@pytest.mark.parametrize("dtype, name", [(types_pb2.DT_VARIANT, "variant"), (types_pb2.DT_RESOURCE, "resource")])
def test_a_tensor_numpy_cannot_hold_is_refused_for_its_dtype_as_tensorflow_refuses_it(dtype, name, monkeypatch):
    """A variant or resource TensorProto that Tensor::FromProto reads is fed, and the signature's dtype refuses it
    (it was a parsing error, which tf.make_ndarray's failure had made it); after the output filter's check, as
    RunPredict checks them. One FromProto refuses, or fed to a signature that takes its dtype, stays a parsing
    error."""
    def predict(proto, takes=types_pb2.DT_STRING, output_filter=()):
        signature = meta_graph_pb2.SignatureDef()
        signature.inputs["images"].dtype = takes
        signature.outputs["scores"].dtype = types_pb2.DT_FLOAT
        request = predict_pb2.PredictRequest(output_filter=output_filter)
        request.inputs["images"].CopyFrom(proto)
        return inference.predict_request(SimpleNamespace(signature_defs={"s": signature}), "s", request)

    parsed = _proto(dtype, [2])
    tf.io.parse_tensor(parsed.SerializeToString(), tf.as_dtype(dtype))     # FromProto reads it
    with pytest.raises(ServingError, match=rf"^Expects arg\[0\] to be string but {name} is provided$"):
        predict(parsed)
    with pytest.raises(ServingError, match="^output tensor alias not found in signature: nope "):
        predict(parsed, output_filter=["nope"])
    with pytest.raises(ServingError, match="^tensor parsing error: images$"):
        predict(parsed, takes=dtype)
    huge = _proto(dtype, [1 << 40])   # not handed to TensorFlow, which would allocate 2^40 elements first
    parsed_here = []
    monkeypatch.setattr(tf.io, "parse_tensor", lambda *args, **kw: parsed_here.append(args))
    with pytest.raises(ServingError, match="^tensor parsing error: images$"):
        predict(huge)
    assert parsed_here == []
    monkeypatch.undo()
    refused = _proto(dtype, [1], tensor_content=b"abc")
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.parse_tensor(refused.SerializeToString(), tf.as_dtype(dtype))
    with pytest.raises(ServingError, match="^tensor parsing error: images$"):
        predict(refused)


def test_a_mistyped_feed_is_numbered_by_its_tensor_name_as_the_session_numbers_it():
    """DirectSession numbers the feeds in the order of their tensor names: inputs ``a`` (float) and ``a0`` (int32)
    fed as serving_default_a:0 and serving_default_a0:0 are arg[1] and arg[0], ':' sorting after '0'. Of several
    mistyped feeds, the first by tensor name is named."""
    signature = meta_graph_pb2.SignatureDef()
    for alias, dtype in (("a", types_pb2.DT_FLOAT), ("a0", types_pb2.DT_INT32)):
        signature.inputs[alias].name, signature.inputs[alias].dtype = f"serving_default_{alias}:0", dtype
    signature.outputs["out"].dtype = types_pb2.DT_FLOAT
    servable = SimpleNamespace(signature_defs={"serving_default": signature})

    def predict(**inputs):
        request = predict_pb2.PredictRequest()
        for alias, value in inputs.items():
            request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
        return inference.predict_request(servable, "serving_default", request)

    with pytest.raises(ServingError, match=r"^Expects arg\[1\] to be float but int32 is provided$"):
        predict(a=np.array([1], np.int32), a0=np.array([1], np.int32))
    with pytest.raises(ServingError, match=r"^Expects arg\[0\] to be int32 but float is provided$"):
        predict(a=np.array([1], np.int32), a0=np.array([1], np.float32))
    arrays, _ = predict(a=np.array([1], np.float32), a0=np.array([1], np.int32))
    assert sorted(arrays) == ["a", "a0"]


_SPECIAL = [0.0, -0.0, 1.5, -2.25, np.nan, -np.nan, np.inf, -np.inf, 1e-40, 3.4e38]


@pytest.mark.parametrize("dtype", sorted(tensor_proto._FIELDS, key=str))
@pytest.mark.parametrize("shape", [(0,), (2, 0, 3), (), (7,), (2, 3, 5)])
def test_an_output_proto_is_the_one_appending_each_value_builds(dtype, shape):
    """Packed wire bytes parsed (float_val, double_val, the complex fields, bool_val) or values appended (the
    varint fields): the same proto, byte for byte, for every dtype, empty, 0-d, negative, NaN and infinite values,
    the values in their order."""
    size = int(np.prod(shape))
    if np.dtype(dtype).kind in "fc" or dtype == ml_dtypes.bfloat16:
        values = np.resize(np.array(_SPECIAL, np.float64), size)
        if np.dtype(dtype).kind == "c":
            values = values.astype(np.complex128)
            values.imag = values.real[::-1]
    elif np.dtype(dtype).kind == "b":
        values = np.arange(size) % 3 == 0
    else:
        info = np.iinfo(dtype)
        values = np.resize(np.array([0, 1, info.min, info.max, info.min + 1, 127, 128, -1 if info.min else 300]),
                           size)
    with np.errstate(all="ignore"):
        array = values.astype(dtype).reshape(shape)
    proto, expected = tensor_proto.to_proto(array), appended_one_by_one(array)
    assert proto.SerializeToString() == expected.SerializeToString()
    if not np.isnan(values).any():      # a NaN is equal to no value, in a proto as elsewhere
        assert proto == expected
    parsed = tensor_pb2.TensorProto.FromString(proto.SerializeToString())
    assert parsed.SerializeToString() == proto.SerializeToString()


def test_a_large_float_output_becomes_a_proto_without_a_python_object_per_value():
    """A [1000, 48, 48, 1] float32 output: its values are copied as bytes, where a list of 2.3 million Python
    floats had been made (and appended one by one holding the GIL, 2.9 s); a float's bits are kept as the C++
    AsProtoField keeps them (a signalling NaN as it is, which a Python float made quiet)."""
    import tracemalloc

    array = np.random.default_rng(0).random((1000, 48, 48, 1), dtype=np.float32)
    tracemalloc.start()
    try:
        proto = tensor_proto.to_proto(array)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * array.nbytes
    assert proto == appended_one_by_one(array)
    signalling = np.array([0x7F800001, 0xFFA00000], np.uint32).view(np.float32)
    assert tensor_proto.to_proto(signalling).SerializeToString().endswith(signalling.tobytes())
