"""JSON <-> tensor conversion with TF Serving's REST semantics (util/json_tensor.cc).

Requests: row (``instances``) and columnar (``inputs``) formats, ``{"b64": ...}`` for string inputs,
tf.Example lists for classify/regress. Responses: ``predictions``/``outputs``/``results`` bodies with TF
Serving's number formatting. Every malformed value raises :class:`serving.status.ServingError` with the
message TF Serving gives.
"""
from __future__ import annotations

import base64
import codecs
import functools
import math

import numpy as np
from tensorflow.core.example import feature_pb2
from tensorflow.core.framework import types_pb2

from core import base64_text
from serving.json_debug import debug_string, string_text
from serving.tensor_proto import MAX_HELD_DIMS, check_rank, dtype_enum, length_delimited
from serving.status import ServingError, invalid

# DataType enum -> (numpy dtype, DataTypeString name)
_DTYPES = {
    types_pb2.DT_FLOAT: (np.float32, "float"),
    types_pb2.DT_DOUBLE: (np.float64, "double"),
    types_pb2.DT_INT32: (np.int32, "int32"),
    types_pb2.DT_UINT8: (np.uint8, "uint8"),
    types_pb2.DT_INT16: (np.int16, "int16"),
    types_pb2.DT_INT8: (np.int8, "int8"),
    types_pb2.DT_STRING: (object, "string"),
    types_pb2.DT_INT64: (np.int64, "int64"),
    types_pb2.DT_BOOL: (np.bool_, "bool"),
    types_pb2.DT_UINT32: (np.uint32, "uint32"),
    types_pb2.DT_UINT64: (np.uint64, "uint64"),
}
_UNSUPPORTED_NAMES = {
    types_pb2.DT_HALF: "half", types_pb2.DT_BFLOAT16: "bfloat16", types_pb2.DT_UINT16: "uint16",
    types_pb2.DT_COMPLEX64: "complex64", types_pb2.DT_COMPLEX128: "complex128",
}
_INT32_RANGE = (-(2 ** 31), 2 ** 31 - 1)
_INT64_RANGE = (-(2 ** 63), 2 ** 63 - 1)
_UINT32_RANGE = (0, 2 ** 32 - 1)
_UINT64_RANGE = (0, 2 ** 64 - 1)
_INT_RANGES = {
    types_pb2.DT_INT32: _INT32_RANGE, types_pb2.DT_UINT8: _INT32_RANGE, types_pb2.DT_INT16: _INT32_RANGE,
    types_pb2.DT_INT8: _INT32_RANGE, types_pb2.DT_INT64: _INT64_RANGE, types_pb2.DT_UINT32: _UINT32_RANGE,
    types_pb2.DT_UINT64: _UINT64_RANGE,
}


# ----------------------------------------------------------------------------------------------- helpers
def _rapidjson_bytes(error: UnicodeEncodeError):
    chunk = error.object[error.start:error.end]
    return b"".join(bytes([ord(c) - 0xDC00]) if 0xDC80 <= ord(c) <= 0xDCFF else c.encode("utf-8", "surrogatepass")
                    for c in chunk), error.end


codecs.register_error("rapidjson", _rapidjson_bytes)


def to_bytes(text: str) -> bytes:
    """A JSON string of the request as the bytes rapidjson 1.1 holds: body bytes that were not UTF-8 (decoded with
    surrogateescape) as they came, a lone low-surrogate escape (accepted by rapidjson 1.1) as its 3-byte form."""
    return text.encode("utf-8", "rapidjson")


def dump(value) -> str:
    """A JSON value as TF Serving quotes it in error messages (``serving.json_debug``)."""
    return debug_string(value)


def json_type(value) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def is_b64(value) -> bool:
    """IsValBase64Object: an object whose only key is "b64", holding a string (an object that repeats a name,
    a serving.json_parse.JsonObject, is never one)."""
    return type(value) is dict and len(value) == 1 and type(value.get("b64")) is str


def _is_element_object(value) -> bool:
    return isinstance(value, dict) and not is_b64(value)


def b64decode(text: str) -> bytes:
    """A ``{"b64": ...}`` string's bytes as absl::Base64Unescape reads it (``core.base64_text``)."""
    try:
        return base64_text.decode(text)
    except ValueError:
        raise invalid("Unable to base64 decode") from None


def dtype_name(dtype: int) -> str:
    """A DataType enum as TensorFlow's DataTypeString names it (float, double, half, uint16...)."""
    if dtype in _DTYPES:
        return _DTYPES[dtype][1]
    return _UNSUPPORTED_NAMES.get(dtype, types_pb2.DataType.Name(dtype).lower().replace("dt_", ""))


def _shape_text(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


# ------------------------------------------------------------------------------------------ JSON -> numpy
@functools.lru_cache(maxsize=None)   # one converter per dtype, not one per instance of a request
def _leaf_converter(dtype: int):
    name = dtype_name(dtype)

    def mismatch(value):
        return invalid(f"JSON Value: {dump(value)} Type: {json_type(value)} is not of expected type: {name}")

    if dtype == types_pb2.DT_STRING:
        def convert(value):
            if type(value) is str:
                return to_bytes(value)
            if isinstance(value, dict):
                if is_b64(value):
                    return b64decode(value["b64"])
                raise invalid(f"JSON Value: {dump(value)} not formatted correctly for base64 data")
            raise mismatch(value)
    elif dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):
        def convert(value):
            if type(value) in (int, float):
                return value
            raise mismatch(value)
    elif dtype == types_pb2.DT_BOOL:
        def convert(value):
            if type(value) is bool:
                return value
            raise mismatch(value)
    elif dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]

        def convert(value):
            if type(value) is int and low <= value <= high:
                return value
            raise mismatch(value)
    else:
        def convert(value):
            raise ServingError("UNIMPLEMENTED", f"Conversion of JSON Value: {dump(value)} to type: {name}")
    return convert


class _Unheld:
    """A request tensor of more than :data:`MAX_HELD_DIMS` dimensions, which numpy cannot hold: its shape alone,
    kept until every value of the request is converted (a mistyped value is TF Serving's first error), then
    refused by :func:`_held`."""

    def __init__(self, shape: tuple):
        self.shape = shape
        self.size = math.prod(shape)


def to_ndarray(value, dtype: int) -> np.ndarray | _Unheld:
    """One JSON value (scalar, nested list or b64 object) -> a dense array of the signature dtype."""
    if dtype not in _DTYPES:
        raise ServingError("UNIMPLEMENTED", f"Conversion of JSON Value: {dump(value)} to type: {dtype_name(dtype)}")
    convert = _leaf_converter(dtype)
    shape = []
    probe = value
    while type(probe) is list:
        shape.append(len(probe))
        if not probe:
            break
        probe = probe[0]
    rank = len(shape)
    flat = []
    if rank == 1 and not any(type(v) is list for v in value):
        flat = [convert(v) for v in value]
    else:
        _fill(value, shape, convert, flat)
    if rank > MAX_HELD_DIMS:
        return _Unheld(tuple(shape))
    np_dtype = _DTYPES[dtype][0]
    if np_dtype is object:
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array.reshape(shape)
    with np.errstate(over="ignore"):
        return np.array(flat, dtype=np_dtype).reshape(shape)


def _fill(value, shape: list, convert, flat: list) -> None:
    """FillTensorProto's walk of ``value``, a tensor of ``shape``: each leaf converted into ``flat``, in order, and
    a list or leaf at a level the shape does not have it refused where the walk meets it. Depth first as the
    recursion is, with a list of the open lists' iterators instead (a request may nest as deep as
    serving.json_iterative parses, past Python's recursion limit)."""
    rank = len(shape)
    end = object()
    open_ = [iter((value,))]
    while open_:
        node = next(open_[-1], end)
        level = len(open_) - 1
        if node is end:
            open_.pop()
        elif type(node) is list:
            if level >= rank:
                raise invalid(f"Encountered list at unexpected level: {level} expected < {rank}")
            if len(node) != shape[level]:
                raise invalid(f"Encountered list at unexpected size: {len(node)} at level: {level} "
                              f"expected size: {shape[level]}")
            if level + 1 < rank:
                open_.append(iter(node))
                continue
            for item in node:   # the innermost lists' leaves, in one loop
                if type(item) is list:
                    raise invalid(f"Encountered list at unexpected level: {rank} expected < {rank}")
                flat.append(convert(item))
        elif level != rank:
            raise invalid(f"JSON Value: {dump(node)} found at incorrect level: {level + 1} in the JSON "
                          f"DOM. Expected at level: {rank}")
        else:
            flat.append(convert(node))


def _check_same_shape(first: np.ndarray, other: np.ndarray) -> None:
    if first.size != other.size:
        raise invalid(f"Expecting tensor size: {first.size} but got: {other.size}")
    if first.shape != other.shape:
        raise invalid(f"Expecting shape {_shape_text(first.shape)} but got: {_shape_text(other.shape)}")


def _stack(elements: list, dtype: int) -> np.ndarray | _Unheld:
    if len(elements[0].shape) >= MAX_HELD_DIMS:
        return _Unheld((len(elements),) + elements[0].shape)
    if _DTYPES[dtype][0] is object:
        out = np.empty((len(elements),) + elements[0].shape, dtype=object)
        for i, element in enumerate(elements):
            out[i, ...] = element
        return out
    return np.stack(elements)


def instances_to_arrays(instances: list, inputs: dict) -> dict:
    """Row format: ``instances`` (non-empty list) -> {input alias: array with a leading batch dim}.

    ``inputs`` maps input alias -> DataType enum. Follows FillTensorMapFromInstancesList: an object's members are
    converted in the order sent, a repeated name each time (the first one that is not an input, or whose value's
    size or shape differs from the first value of its name, fails), then its key set is compared.
    """
    names = sorted(inputs)
    columns = {}

    def add(i, key, value, where):
        try:
            if key not in inputs:
                raise invalid(f"JSON object: does not have named input: {key}")
            array = to_ndarray(value, inputs[key])
            if key in columns:
                _check_same_shape(columns[key][0], array)
        except ServingError as exc:
            raise invalid(f"Failed to process element: {i}{where} of 'instances' list. "
                          f"Error: {exc.to_string()}") from None
        columns.setdefault(key, []).append(array)

    if not isinstance(instances[0], dict) and len(names) > 1:
        raise invalid("instances is a plain list, but expecting list of objects as multiple input tensors "
                      "required as per tensorinfo_map")
    if _is_element_object(instances[0]):
        for i, element in enumerate(instances):
            if not _is_element_object(element):
                raise invalid(f"Expecting object but got list at item {i} of input list")
            for key, value in getattr(element, "pairs", element.items()):   # a repeated name too, as sent
                add(i, key, value, f" key: {key}")
            if set(element) != set(names):
                raise invalid(f"Failed to process element: {i} of 'instances' list. JSON object: {dump(element)} "
                              f"keys must be equal to: {','.join(names)}")
        rows = len(instances)   # a repeated name's values are extra ones, which Tensor::FromProto ignores
        return _held({name: _stack(column if len(column) == rows else column[:rows], inputs[name])
                      for name, column in columns.items()})

    name = names[0]
    dtype = inputs[name]
    if dtype == types_pb2.DT_STRING and len(names) == 1:  # fast path: a flat list of strings / b64 objects
        try:
            flat = [_string_leaf(element) for element in instances]
        except _NotFlat:
            pass
        else:
            array = np.empty(len(flat), dtype=object)
            array[:] = flat
            return {name: array}
    for i, element in enumerate(instances):
        if _is_element_object(element):
            raise invalid(f"Expecting value/list but got object at item {i} of input list")
        add(i, name, element, "")
    if len(names) > 1:   # a b64 object first: only the first input was filled (predict_util.cc)
        raise invalid(f"input size does not match signature: 1!={len(names)} len({{{name}}}) != "
                      f"len({{{','.join(names)}}}). Sent extra: {{}}. "
                      f"Missing but required: {{{','.join(names[1:])}}}.")
    return _held({name: _stack(columns[name], dtype)})


class _NotFlat(Exception):
    pass


def _string_leaf(element) -> bytes:
    if type(element) is str:
        return to_bytes(element)
    if is_b64(element):
        try:
            return b64decode(element["b64"])
        except ServingError:
            raise _NotFlat from None
    raise _NotFlat


def columnar_to_arrays(value, inputs: dict) -> dict:
    """Columnar format: ``inputs`` value -> {input alias: full tensor}."""
    if _is_element_object(value):   # extra keys are ignored
        arrays = {}
        for name in sorted(inputs):
            if name not in value:
                raise invalid(f"Missing named input: {name} in 'inputs' object.")
            arrays[name] = to_ndarray(value[name], inputs[name])
        return _held(arrays)
    if len(inputs) > 1:
        raise invalid("inputs is a plain value/list, but expecting an object as multiple input tensors required "
                      "as per tensorinfo_map")
    (name, dtype), = inputs.items()
    return _held({name: to_ndarray(value, dtype)})


def _held(arrays: dict) -> dict:
    """``arrays``, once every one is of a rank this server feeds (:func:`serving.tensor_proto.check_rank`)."""
    for name in sorted(arrays):
        check_rank(name, len(arrays[name].shape))
    return arrays


# -------------------------------------------------------------------------------- tf.Example (classify)
def examples_from_json(document: dict, method: str) -> list:
    """``{"context"?: {...}, "examples": [...]}`` -> serialized tf.Examples (context merged into each), checked in
    the order of FillClassifyRegressRequestFromJson: the context first, then the examples key, then each example."""
    context = b""
    if "context" in document:
        context = _example(document["context"])
    examples = document.get("examples")
    if "examples" not in document:
        raise invalid(f"JSON Value: {dump(document)} When method is classify, key 'examples' is expected and "
                      f"was not found")
    if type(examples) is not list:
        raise invalid(f"JSON Value: {dump(document)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise invalid(f"JSON Value: {dump(document)} 'examples' value is an empty array")
    return [context + _example(item) for item in examples]


def _example(value) -> bytes:
    """A serialized tf.Example (MakeExampleFromJsonObject). Encoded by hand: a feature name keeps the request's
    bytes even when they are not UTF-8 (TF Serving's C++ protobuf writes them; Python's refuses)."""
    if not isinstance(value, dict):
        raise invalid(f"Example must be JSON object but got JSON {json_type(value)}")
    entries = b""   # every member, a repeated name too (each checked; the last one's feature is the map's)
    for name, feature_value in getattr(value, "pairs", value.items()):
        feature = feature_pb2.Feature()
        for item in feature_value if type(feature_value) is list else [feature_value]:
            _add_to_feature(feature, name, item)
        entries += length_delimited(1, length_delimited(1, to_bytes(name))
                                     + length_delimited(2, feature.SerializeToString()))
    return length_delimited(1, entries)   # Example.features; Features.feature is a map<string, Feature>


_FEATURE_LISTS = {"bytes": "bytes_list", "float": "float_list", "int64": "int64_list"}


def _add_to_feature(feature: feature_pb2.Feature, name: str, value) -> None:
    """One JSON value into the feature (AddValueToFeature): null, nested arrays and objects other than b64 are
    refused; a value of another kind than the feature's earlier ones is refused; integers past int64 that fit in
    uint64 are refused, larger ones are doubles (as rapidjson parses them) and go to the float list."""
    if value is None or type(value) is list or (isinstance(value, dict) and not is_b64(value)):
        raise invalid(f"Feature: {name} has element with unexpected JSON type: {json_type(value)}")
    if type(value) is str or type(value) is dict:
        kind = "bytes"
    elif type(value) is bool or (type(value) is int and _INT64_RANGE[0] <= value <= 2 ** 64 - 1):
        kind = "int64"
    else:
        kind, value = "float", float(value)
    current = feature.WhichOneof("kind")
    if current is not None and current != _FEATURE_LISTS[kind]:
        raise invalid(f"Unexpected element type in feature: {name} expecting type: {current[:-len('_list')]}")
    if kind == "bytes":
        feature.bytes_list.value.append(b64decode(value["b64"]) if type(value) is dict else to_bytes(value))
    elif kind == "int64":
        if value > _INT64_RANGE[1]:
            raise invalid(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        feature.int64_list.value.append(int(value))
    else:
        feature.float_list.value.append(value)


# ------------------------------------------------------------------------------------------ numpy -> JSON
def format_float(value: float, double: bool = False) -> str:
    """absl::StrCat-style: %g if it round-trips, else %.9g/%.17g; whole numbers get '.0'."""
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    text = "%g" % value
    if double:
        if float(text) != value:
            text = "%.17g" % value
    elif np.float32(float(text)) != np.float32(value):
        text = "%.9g" % value
    if "." not in text and "e" not in text:
        text += ".0"
    return text


_POWERS_OF_TEN = 10.0 ** np.arange(23)        # exact in float64
_SHORT_OR_WIDE = {False: ("%.9g", "%.9g.0", "%g", "%g.0"), True: ("%.17g", "%.17g.0", "%g", "%g.0")}
_FEW_FLOATS = 96   # below this many values, the fixed cost of the numpy passes outweighs what they save


def _few_float_strings(flat: np.ndarray, values: list, double: bool) -> list:
    """format_float over a few values: ``%g`` for all, the round-trip check in one numpy parse."""
    strings = ["%g" % v for v in values]
    finite = np.isfinite(flat)
    with np.errstate(all="ignore"):
        parsed = np.array(strings, dtype=np.float64 if double else np.float32) if strings else flat
    wide = "%.17g" if double else "%.9g"
    for i in np.flatnonzero((parsed != flat) | ~finite).tolist():
        strings[i] = format_float(values[i], double=double) if not finite[i] else wide % values[i]
    return [t if ("." in t or "e" in t or t[-1] in "ynN") else t + ".0" for t in strings]


def _float_strings(flat: np.ndarray) -> list:
    """format_float over a float32/float64 array: one string formatting per value.

    Whether ``%g`` (6 significant digits) round-trips is decided in numpy: the value rounded to 6 significant
    digits is ``rint(|v| * 10**shift) / 10**shift`` (one correctly rounded operation on exact operands, so the
    double nearest the decimal ``%g`` prints), compared with the value (as float32 for float32). Values where that
    arithmetic could round differently from the decimal rounding (near a tie, an uncertain leading digit, a shift
    past 10**22) and non-finite ones go through format_float."""
    double = flat.dtype == np.float64
    values = flat.tolist()
    if len(values) < _FEW_FLOATS:
        return _few_float_strings(flat, values, double)
    with np.errstate(all="ignore"):
        wide = flat.astype(np.float64)
        magnitude = np.abs(wide)
        shift = 5.0 - np.floor(np.log10(magnitude))
        exact = np.abs(shift) <= 22.0
        power = _POWERS_OF_TEN[np.where(exact, np.abs(shift), 0.0).astype(np.intp)]
        up = shift >= 0
        scaled = np.where(up, magnitude * power, magnitude / power)
        digits = np.rint(scaled)
        rounded = np.where(up, digits / power, digits * power)
        certain = exact & (np.abs(scaled - np.floor(scaled) - 0.5) > 1e-6) & (scaled >= 1e5) & (scaled < 999999.5)
        short = (rounded == magnitude) if double else (rounded.astype(np.float32) == np.abs(flat))
        whole_short = (rounded == np.rint(rounded)) & (rounded < 1e6)           # %g prints no point
        whole_wide = (magnitude == np.rint(magnitude)) & (magnitude < (1e17 if double else 1e9))
        codes = np.where(short, 2 + whole_short, whole_wide.astype(np.intp))
        codes[~certain] = 4
        codes[magnitude == 0] = 3
        codes[~np.isfinite(wide)] = 4
    formats = _SHORT_OR_WIDE[double]
    return [formats[code] % value if code != 4 else format_float(value, double)
            for code, value in zip(codes.tolist(), values)]


def _leaf_strings(array: np.ndarray, alias: str) -> list:
    """The JSON text of each value (AddSingleValueAndAdvance). Only the dtypes a request may carry are written;
    another (uint16, half, bfloat16, complex...) fails at its first value with DataTypeString's name, so an empty
    tensor of it is still written."""
    flat = array.reshape(-1)
    dtype = dtype_enum(array)
    if dtype not in _DTYPES:
        if not flat.size:
            return []
        raise invalid(f"Failed to write JSON value for tensor type: {dtype_name(dtype)}")
    kind = array.dtype.kind
    if kind == "f":          # float32, float64
        return _float_strings(flat)
    if kind in "iu":
        return [str(v) for v in flat.tolist()]
    if kind == "b":
        return ["true" if v else "false" for v in flat.tolist()]
    values = [v if isinstance(v, bytes) else str(v).encode() for v in flat.tolist()]   # strings
    if alias.endswith("_bytes"):
        return ['{"b64": "' + base64.b64encode(v).decode("ascii") + '"}' for v in values]
    return [_json_string(v) for v in values]


_JSON_STRINGS: dict = {}     # string outputs repeat (class names, letters): their JSON text, by value
_MAX_JSON_STRINGS = 4096
_MAX_CACHED_STRING = 256


def _json_string(value: bytes) -> str:
    text = _JSON_STRINGS.get(value)
    if text is None:
        # rapidjson's Writer::String writes the bytes unchecked: bytes that are not UTF-8 kept as undecoded
        # characters, which to_bytes writes back as they were
        text = string_text(value.decode("utf-8", "surrogateescape"))
        if len(value) <= _MAX_CACHED_STRING:
            if len(_JSON_STRINGS) >= _MAX_JSON_STRINGS:
                _JSON_STRINGS.clear()
            _JSON_STRINGS[value] = text
    return text


def _nest(strings: list, shape: tuple, start: int = 0) -> str:
    if not shape:
        return strings[start]
    if len(shape) == 1:
        return "[" + ", ".join(strings[start:start + shape[0]]) + "]"
    step = math.prod(shape[1:])
    return "[" + ", ".join(_nest(strings, shape[1:], start + i * step) for i in range(shape[0])) + "]"


_name = string_text   # an output's name as rapidjson writes it


def row_texts(outputs: dict) -> list:
    """The JSON text of each batch row of a ``{"predictions": [...]}`` answer (see :func:`predictions_body`)."""
    batch = None
    for alias, array in outputs.items():
        if array.ndim == 0:
            raise invalid(f"Tensor name: {alias} has no shape information ")
        if batch is None:
            batch = array.shape[0]
        elif array.shape[0] != batch:
            raise invalid(f"Tensor name: {alias} has inconsistent batch size: {array.shape[0]} expecting: {batch}")
    columns = []
    for alias, array in outputs.items():
        strings = _leaf_strings(array, alias)
        inner = array.shape[1:]
        step = math.prod(inner)
        if len(inner) == 1 and step:
            columns.append(["[" + ", ".join(strings[start:start + step]) + "]"
                            for start in range(0, array.shape[0] * step, step)])
        elif inner:
            columns.append([_nest(strings, inner, i * step) for i in range(array.shape[0])])
        else:
            columns.append(strings)
    if len(columns) == 1:
        return columns[0]
    names = [_name(alias) + ": " for alias in outputs]
    return ["{" + ", ".join(name + column[i] for name, column in zip(names, columns)) + "}"
            for i in range(batch or 0)]


def predictions_body(rows: list) -> str:
    """``{"predictions": [...]}`` of row texts (:func:`row_texts`)."""
    if not rows:
        return '{\n    "predictions": []\n}'
    return '{\n    "predictions": [\n        ' + ",\n        ".join(rows) + "\n    ]\n}"


def row_response(outputs: dict) -> str:
    """``{"predictions": [...]}``: one element per batch row."""
    return predictions_body(row_texts(outputs))


def columnar_response(outputs: dict) -> str:
    """``{"outputs": ...}``: the whole tensor, or an object of tensors when there are several."""
    encoded = {alias: _nest(_leaf_strings(array, alias), array.shape) for alias, array in outputs.items()}
    if len(encoded) == 1:
        body = next(iter(encoded.values()))
    else:
        body = "{\n        " + ",\n        ".join(f"{_name(a)}: {v}" for a, v in encoded.items()) + "\n    }"
    return '{\n    "outputs": ' + body + "\n}"


def classify_response(result, classes=None) -> str:
    """``{"results": [[[label, score], ...], ...]}`` of a ``ClassificationResult`` (MakeJsonFromClassificationResult:
    rapidjson's PrettyWriter, each example's classes on one line, the outer array closed on a line of its own).
    The labels are the bytes of the run's ``classes`` output when given, as TF Serving sets them (set_label(data,
    size)) and rapidjson writes them (no kWriteValidateEncodingFlag): bytes that are not UTF-8 come as they are,
    undecoded characters (surrogateescape) for :func:`to_bytes`, where the result's string labels hold U+FFFD."""
    def label(i: int, c: int, entry) -> str:
        return _name(entry.label) if classes is None else _json_string(classes[i, c])

    rows = ["[" + ", ".join(f"[{label(i, c, entry)}, {format_float(entry.score)}]"
                            for c, entry in enumerate(row.classes)) + "]"
            for i, row in enumerate(result.classifications)]
    return '{\n    "results": [' + ", ".join(rows) + "\n    ]\n}"


def regress_response(result) -> str:
    """``{"results": [value, ...]}`` of a ``RegressionResult`` (MakeJsonFromRegressionResult)."""
    return '{\n    "results": [' + ", ".join(format_float(r.value) for r in result.regressions) + "]\n}"


def error_body(message: str) -> bytes:
    """MakeJsonFromStatus's ``{"error": message}``, written by rapidjson's PrettyWriter without
    kWriteValidateEncodingFlag: bytes of the request that are not UTF-8 (a model name or label in the URL, a body
    string), held as undecoded characters, go out as they came (:func:`to_bytes`)."""
    return to_bytes('{\n    "error": ' + string_text(message) + "\n}")
