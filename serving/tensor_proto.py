"""TensorProto <-> numpy for the gRPC API, as TF Serving converts them.

Requests: ``Tensor::FromProto`` (typed ``*_val`` fields or ``tensor_content``; fewer values than elements
repeat the last one, more are cut to the shape); a proto that does not parse is ``tensor parsing error: <alias>``. Responses:
``Tensor::AsProtoField`` (values in the typed ``*_val`` field, no ``tensor_content``), the default of
tensorflow_model_server.
"""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from serving.status import invalid

# numpy dtype -> (DataType, TensorProto field)
_FIELDS = {
    np.dtype(np.float32): (types_pb2.DT_FLOAT, "float_val"),
    np.dtype(np.float64): (types_pb2.DT_DOUBLE, "double_val"),
    np.dtype(np.int32): (types_pb2.DT_INT32, "int_val"),
    np.dtype(np.int16): (types_pb2.DT_INT16, "int_val"),
    np.dtype(np.int8): (types_pb2.DT_INT8, "int_val"),
    np.dtype(np.uint8): (types_pb2.DT_UINT8, "int_val"),
    np.dtype(np.uint16): (types_pb2.DT_UINT16, "int_val"),
    np.dtype(np.int64): (types_pb2.DT_INT64, "int64_val"),
    np.dtype(np.uint32): (types_pb2.DT_UINT32, "uint32_val"),
    np.dtype(np.uint64): (types_pb2.DT_UINT64, "uint64_val"),
    np.dtype(np.bool_): (types_pb2.DT_BOOL, "bool_val"),
    np.dtype(np.float16): (types_pb2.DT_HALF, "half_val"),
    np.dtype(ml_dtypes.bfloat16): (types_pb2.DT_BFLOAT16, "half_val"),
    np.dtype(np.complex64): (types_pb2.DT_COMPLEX64, "scomplex_val"),
    np.dtype(np.complex128): (types_pb2.DT_COMPLEX128, "dcomplex_val"),
}
MAX_DIMS = 254                 # TensorShape's kMaxDimensions
MAX_HELD_DIMS = 32             # the most numpy and TensorFlow's Python API hold (NPY_MAXDIMS)
INT64_MAX = 2 ** 63 - 1
# DataType -> (typed field, values per element) for the request side
_VALUES = {dtype: (field, 2 if "complex" in field else 1) for dtype, field in _FIELDS.values()}
_VALUES[types_pb2.DT_STRING] = ("string_val", 1)


class Unheld:
    """A request tensor that TensorFlow parses but numpy cannot hold (``DT_VARIANT``, ``DT_RESOURCE``), of a dtype
    the signature does not take: its DataType alone, which the feed check refuses as TensorFlow does."""

    def __init__(self, datatype: int):
        self.datatype = datatype


def to_array(proto: tensor_pb2.TensorProto, alias: str, wanted: int | None = None) -> np.ndarray | Unheld:
    """A request's TensorProto as a numpy array (strings: an object array of bytes), or ``tensor parsing error``
    where ``Tensor::FromProto`` fails; a parsed tensor numpy cannot hold is :class:`Unheld` when its dtype is not
    ``wanted`` (the signature's), else a parsing error too (this server cannot feed it)."""
    import tensorflow as tf

    if proto.dtype == types_pb2.DT_INVALID or not _valid_shape(proto.tensor_shape):
        raise invalid(f"tensor parsing error: {alias}")
    check_rank(alias, len(proto.tensor_shape.dim))
    shape = [d.size for d in proto.tensor_shape.dim]
    elements = math.prod(shape)
    typed = _VALUES.get(proto.dtype)
    if elements == 0:                                 # no element: FromProto reads no value, content nor typed
        proto = tensor_pb2.TensorProto(dtype=proto.dtype, tensor_shape=proto.tensor_shape)
    elif proto.dtype == types_pb2.DT_BOOL and proto.tensor_content.strip(b"\x00\x01"):
        raise invalid(f"tensor parsing error: {alias}")   # a bool's byte is 0 or 1 (FromProto's Decode)
    elif proto.dtype == types_pb2.DT_STRING and proto.tensor_content:
        strings = _string_content(proto, elements)
        if strings is None:
            raise invalid(f"tensor parsing error: {alias}")
        return strings
    elif typed and not proto.tensor_content:
        values, per_element = getattr(proto, typed[0]), typed[1]
        read = elements * per_element
        if len(values) > read:            # FromProtoField copies the first n values and ignores the rest
            proto = _copy(proto)
            del getattr(proto, typed[0])[read:]
    try:
        return tf.make_ndarray(proto)
    except Exception:  # noqa: BLE001 - any malformed proto (bad content size, unsupported dtype, ...)
        if wanted is not None and proto.dtype != wanted and _parses(proto, elements):
            return Unheld(proto.dtype)
        raise invalid(f"tensor parsing error: {alias}") from None


def check_rank(alias: str, rank: int) -> None:
    """A 400 for input ``alias`` of ``rank`` dimensions where this server cannot feed it: above :data:`MAX_DIMS`,
    TensorFlow's ``tensor parsing error``; above :data:`MAX_HELD_DIMS`, a message of its own, as neither numpy nor
    TensorFlow's Python API holds such a tensor (TF Serving feeds it to the model, whose ops answer)."""
    if rank > MAX_DIMS:
        raise invalid(f"tensor parsing error: {alias}")
    if rank > MAX_HELD_DIMS:
        raise invalid(f"Input {alias} has {rank} dimensions: this server feeds tensors of at most {MAX_HELD_DIMS} "
                      "dimensions.")


MAX_UNHELD_ELEMENTS = 1 << 20   # FromProto allocates every element first: a shape of 2^40 took 10 s to refuse


def _parses(proto: tensor_pb2.TensorProto, elements: int) -> bool:
    """Whether ``Tensor::FromProto`` reads ``proto`` of ``elements`` elements (through the ParseTensor op, which
    calls it). More than :data:`MAX_UNHELD_ELEMENTS` elements are not tried: no request a letters model takes is
    that, and TensorFlow would allocate them all before answering."""
    return elements <= MAX_UNHELD_ELEMENTS and _from_proto(proto) is not None


def _from_proto(proto: tensor_pb2.TensorProto):
    """``Tensor::FromProto`` of ``proto``, through the ParseTensor op, which calls it: the tensor, or None where
    it fails."""
    import tensorflow as tf

    try:
        return tf.io.parse_tensor(proto.SerializeToString(), out_type=proto.dtype)
    except Exception:  # noqa: BLE001 - InvalidArgumentError, or a dtype TensorFlow does not know
        return None


def _copy(proto: tensor_pb2.TensorProto) -> tensor_pb2.TensorProto:
    copied = tensor_pb2.TensorProto()
    copied.CopyFrom(proto)
    return copied


def _valid_shape(shape: tensor_shape_pb2.TensorShapeProto) -> bool:
    """TensorShape::IsValid for a fully defined shape: ``unknown_rank`` is not looked at; no negative size, at most
    254 dimensions, an element count that fits an int64."""
    if len(shape.dim) > MAX_DIMS:
        return False
    elements = 1
    for dim in shape.dim:
        if dim.size < 0:
            return False
        elements *= dim.size
        if elements > INT64_MAX:
            return False
    return True


def _string_content(proto: tensor_pb2.TensorProto, elements: int) -> np.ndarray | None:
    """A ``DT_STRING`` tensor's ``tensor_content`` as an object array of bytes, decoded by TensorFlow's own
    DecodeStringList (tensor_coding.cc: ``elements`` varint32 lengths, then exactly that many bytes), in C++: 5
    million strings in a fraction of a second, where a Python loop took seconds holding the GIL. None if the
    content is not that. A content shorter than ``elements`` bytes (each length takes one at least) is refused
    before TensorFlow allocates every element."""
    if elements > len(proto.tensor_content):
        return None
    tensor = _from_proto(proto)
    return None if tensor is None else np.asarray(tensor.numpy(), dtype=object)


def dtype_enum(array: np.ndarray | Unheld) -> int:
    if isinstance(array, Unheld):
        return array.datatype
    if array.dtype == object or array.dtype.kind in "SU":
        return types_pb2.DT_STRING
    entry = _FIELDS.get(array.dtype)
    if entry:
        return entry[0]
    import tensorflow as tf

    try:   # the quantized types (qint8, quint16, ...), which tf.make_ndarray gives as numpy records
        return tf.as_dtype(array.dtype).as_datatype_enum
    except TypeError:
        return types_pb2.DT_INVALID


def to_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """``Tensor::AsProtoField``: dtype, shape and the values in the dtype's ``*_val`` field. A field of fixed-width
    values (float_val, double_val, the complex ones) or of bools is given as its packed wire bytes, built by numpy
    and parsed by protobuf's C++ (:func:`packed_field`): the same proto, byte for byte, as appending the values
    one by one, which took about a second a million floats, holding the GIL. The varint fields of the integers
    and halfs are appended so still: numpy's varints were no faster."""
    array = np.asarray(array)
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d)
                                                   for d in array.shape])
    flat = array.reshape(-1)
    if dtype_enum(array) == types_pb2.DT_STRING:
        values = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in flat.tolist()]
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape, string_val=values)
    dtype, field = _FIELDS[array.dtype]
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape)
    values = field_values(flat, field)
    packed = packed_field(field, values)
    if packed is None:
        getattr(proto, field).extend(values.tolist())
    elif values.size:
        proto.MergeFromString(packed)
    return proto


def field_values(flat: np.ndarray, field: str) -> np.ndarray:
    """A flat array's values as its typed ``field`` holds them: float16 and bfloat16 as their 16 bits, a complex
    number as its real and imaginary parts, interleaved; any other dtype as it is."""
    if field == "half_val":
        return flat.view(np.uint16)
    if field in ("scomplex_val", "dcomplex_val"):
        return flat.view(np.float32 if field == "scomplex_val" else np.float64)
    return flat


# TensorProto's fields whose packed values numpy writes as they are on the wire: little-endian fixed-width
# values, and bools (a varint of one byte, 0 or 1)
_WIRE_VALUES = {FieldDescriptor.TYPE_FLOAT: "<f4", FieldDescriptor.TYPE_DOUBLE: "<f8",
                FieldDescriptor.TYPE_FIXED32: "<u4", FieldDescriptor.TYPE_FIXED64: "<u8",
                FieldDescriptor.TYPE_SFIXED32: "<i4", FieldDescriptor.TYPE_SFIXED64: "<i8",
                FieldDescriptor.TYPE_BOOL: "u1"}


def packed_field(field: str, values: np.ndarray) -> bytes | None:
    """TensorProto's repeated scalar ``field`` holding ``values``, as packed wire bytes (its tag, the payload's
    varint length, the payload), or None for a field of multi-byte varints."""
    descriptor = tensor_pb2.TensorProto.DESCRIPTOR.fields_by_name[field]
    wire = _WIRE_VALUES.get(descriptor.type)
    if wire is None:
        return None
    return length_delimited(descriptor.number, values.astype(wire, copy=False).tobytes())


def length_delimited(field: int, payload: bytes) -> bytes:
    """Field number ``field`` holding ``payload`` on the wire, length-delimited (a message, bytes, or a packed
    repeated field): its tag, the payload's varint length, the payload."""
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _varint(number: int) -> bytes:
    """A non-negative int as a protobuf base-128 varint: seven bits a byte, low first, the top bit on all but the
    last."""
    out = bytearray()
    while number > 0x7F:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)
