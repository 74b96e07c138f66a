"""JSON <-> tensor conversion details (spec sections 7 and 8)."""
import numpy as np
import pytest
from tensorflow.core.framework import types_pb2

from serving import tensors
from serving.status import ServingError


@pytest.mark.parametrize("value, text", [
    (3.0, "3.0"), (0.1, "0.1"), (999999.0, "999999.0"), (9e6, "9e+06"), (3e-5, "3e-05"),
    (float("nan"), "NaN"), (float("inf"), "Infinity"), (-float("inf"), "-Infinity"), (1 / 3, "0.333333343"),
])
def test_float_format(value, text):
    assert tensors.format_float(float(np.float32(value))) == text


def test_float_arrays_are_formatted_as_each_value_alone():
    """Long arrays take a vectorised path (the %g round-trip decided in numpy): same strings as format_float."""
    rng = np.random.default_rng(5)
    tricky = [0.0, -0.0, 3.0, 0.1, 999999.0, 999999.5, 1e6, -1e6, 9e6, 3e-5, 1 / 3, 123456.5, 1234565.0, 12345.65,
              16777217.0, 999999936.0, 1e9, 1e-45, 1.17549435e-38, 3.4028235e38, 1e-4, 99999.95, 9999995.0, 0.0625,
              float("nan"), float("inf"), -float("inf")]
    powers = np.float32(10.0) ** np.arange(-38, 39, dtype=np.float32)
    for dtype in (np.float32, np.float64):
        values = np.concatenate([np.array(tricky, dtype), rng.random(300).astype(dtype),
                                 (rng.standard_normal(300) * 10.0 ** rng.integers(-30, 30, 300)).astype(dtype),
                                 np.arange(-300, 300, dtype=dtype) / 4, powers.astype(dtype),
                                 np.nextafter(powers, np.float32(0)).astype(dtype)])
        expected = [tensors.format_float(v, double=dtype is np.float64) for v in values.tolist()]
        assert tensors._float_strings(values) == expected
        assert tensors._float_strings(values[:20]) == expected[:20]      # the path for a few values


def test_ints_reject_decimals_and_bools_need_json_bools():
    with pytest.raises(ServingError, match=r"JSON Value: 1.0 Type: Number is not of expected type: int32"):
        tensors.to_ndarray([1.0], types_pb2.DT_INT32)
    with pytest.raises(ServingError, match="Type: Number is not of expected type: bool"):
        tensors.to_ndarray([1], types_pb2.DT_BOOL)
    assert tensors.to_ndarray([1, 2], types_pb2.DT_FLOAT).dtype == np.float32


def test_nesting_errors():
    with pytest.raises(ServingError, match="Encountered list at unexpected size: 1 at level: 1 expected size: 2"):
        tensors.to_ndarray([[1, 2], [3]], types_pb2.DT_FLOAT)
    with pytest.raises(ServingError, match="Encountered list at unexpected level: 1 expected < 1"):
        tensors.to_ndarray([1, [2]], types_pb2.DT_FLOAT)
    with pytest.raises(ServingError, match="JSON Value: 3 found at incorrect level: 2 in the JSON DOM. Expected at "
                                           "level: 2"):
        tensors.to_ndarray([[1, 2], 3], types_pb2.DT_FLOAT)


def test_unsupported_dtype_is_501():
    with pytest.raises(ServingError) as info:
        tensors.to_ndarray([1], types_pb2.DT_HALF)
    assert info.value.http_status == 501 and info.value.message == "Conversion of JSON Value: [1] to type: half"


def test_b64_as_absl_base64_unescape_reads_it():
    assert tensors.b64decode("YQ") == b"a" and tensors.b64decode("YQ==") == b"a"
    assert tensors.b64decode("QUJD") == b"ABC" and tensors.b64decode("QUI=") == b"AB"
    # whitespace anywhere is skipped (base64 wrapped at 76 columns decodes), "." pads as "=" does
    for text in (" QUI=", "QUI=\n", "QU\r\nI", "Q U I", "QUI.", "\tQUI\v=\f"):
        assert tensors.b64decode(text) == b"AB", text
    assert tensors.b64decode("QQ..") == b"A" and tensors.b64decode("") == b""
    # padding left out, or exactly what the last group misses: "QQ=" and "QUJD=" are not base64
    for text in ("QUJD=", "QQ=", "QQ===", "Q", "QU=I", "QQ==QQ==", "QUé=", "QU\0I"):
        with pytest.raises(ServingError, match="Unable to base64 decode"):
            tensors.b64decode(text)
    with pytest.raises(ServingError, match="Unable to base64 decode"):
        tensors.b64decode("-_")


def test_instances_size_mismatch():
    with pytest.raises(ServingError, match="Expecting tensor size: 2 but got: 3"):
        tensors.instances_to_arrays([[1, 2], [1, 2, 3]], {"x": types_pb2.DT_FLOAT})


def test_responses():
    outputs = {"y": np.array([[1, 2]], dtype=np.float32), "names_bytes": np.array([b"\x00a"], dtype=object)}
    import json
    assert json.loads(tensors.row_response(outputs)) == {"predictions": [{"y": [1.0, 2.0], "names_bytes": {"b64": "AGE="}}]}
    assert json.loads(tensors.columnar_response({"y": np.array([0.5, 2], np.float32)})) == {"outputs": [0.5, 2.0]}
    assert json.loads(tensors.row_response({"y": np.zeros((0, 2), np.float32)})) == {"predictions": []}
    with pytest.raises(ServingError, match="Tensor name: b has inconsistent batch size: 1 expecting: 2"):
        tensors.row_response({"a": np.zeros(2), "b": np.zeros(1)})


def test_runtime_messages_lose_the_eager_preamble():
    from serving.status import runtime_message
    raw = ("Graph execution error:\n\nDetected at node map/DecodeImage defined at (most recent call last):\n"
           "<stack traces unavailable>\nUnknown image file format. One of JPEG, PNG, GIF, BMP required.\n"
           "\t [[{{node map/DecodeImage}}]] [Op:__inference_signature_wrapper_2501]")
    assert runtime_message(raw) == ("Unknown image file format. One of JPEG, PNG, GIF, BMP required.\n"
                                    "\t [[{{node map/DecodeImage}}]]")


def test_runtime_messages_lose_the_node_definitions_of_a_tf1_session():
    """A TF1 session's error (error_interpolation.interpolate_graph: the node's name quoted, the frames where it
    was made indented, then "Node: 'name'") loses them as a function's does."""
    import tensorflow as tf

    from serving.status import runtime_message
    with tf.Graph().as_default() as graph:
        strings = tf.compat.v1.placeholder(tf.string, [None])
        numbers = tf.strings.to_number(strings)
    with tf.compat.v1.Session(graph=graph) as session, pytest.raises(tf.errors.InvalidArgumentError) as caught:
        session.run(numbers, {strings: ["a"]})
    assert "most recent call last" in caught.value.message
    assert runtime_message(caught.value.message) == ("StringToNumberOp could not correctly convert string: a\n"
                                                     "\t [[{{node StringToNumber}}]]")


ONE_STRING = {"examples": types_pb2.DT_STRING}
TWO = {"a": types_pb2.DT_STRING, "b": types_pb2.DT_FLOAT}


@pytest.mark.parametrize("instances, inputs, message", [
    # FillTensorMapFromInstancesList: keys in the order sent, the first unknown one fails (AddInstanceItem) ...
    ([{"b64": "YQ==", "extra": 1}], ONE_STRING, "Failed to process element: 0 key: b64 of 'instances' list. Error: "
                                                "INVALID_ARGUMENT: JSON object: does not have named input: b64"),
    ([{"nope": "x"}], ONE_STRING, "Failed to process element: 0 key: nope of 'instances' list. Error: "
                                  "INVALID_ARGUMENT: JSON object: does not have named input: nope"),
    ([{"examples": "a", "x": 1}], ONE_STRING, "Failed to process element: 0 key: x of 'instances' list. Error: "
                                              "INVALID_ARGUMENT: JSON object: does not have named input: x"),
    ([{"b64": 5}], ONE_STRING, "Failed to process element: 0 key: b64 of 'instances' list. Error: "
                               "INVALID_ARGUMENT: JSON object: does not have named input: b64"),
    ([{"b": 1.0, "a": 5, "c": 1}], TWO, "Failed to process element: 0 key: a of 'instances' list. Error: "
                                        "INVALID_ARGUMENT: JSON Value: 5 Type: Number is not of expected type: string"),
    ([{"b": [1.0], "a": "x"}, {"a": "y", "b": [2.0, 3.0]}], TWO,
     "Failed to process element: 1 key: b of 'instances' list. Error: INVALID_ARGUMENT: Expecting tensor size: 1 "
     "but got: 2"),
    # ... and only then the key sets are compared.
    ([{}], ONE_STRING, "Failed to process element: 0 of 'instances' list. JSON object: {} keys must be equal to: "
                       "examples"),
    ([{"b": 1.0}], TWO, "Failed to process element: 0 of 'instances' list. JSON object: {\n    \"b\": 1.0\n} keys "
                        "must be equal to: a,b"),
    ([{"a": "x", "b": 1.0}, {"a": "y", "b": 2.0, "z": 0}], TWO,
     "Failed to process element: 1 key: z of 'instances' list. Error: INVALID_ARGUMENT: JSON object: does not have "
     "named input: z"),
    # A b64 object is a value, not an object of named inputs.
    ([{"b64": "YQ=="}, {"examples": "a"}], ONE_STRING, "Expecting value/list but got object at item 1 of input list"),
    ([{"a": "x", "b": 1.0}, {"b64": "YQ=="}], TWO, "Expecting object but got list at item 1 of input list"),
    (["x"], TWO, "instances is a plain list, but expecting list of objects as multiple input tensors required as per "
                 "tensorinfo_map"),
    ([{"b64": "YQ=="}], TWO, "input size does not match signature: 1!=2 len({a}) != len({a,b}). Sent extra: {}. "
                             "Missing but required: {b}."),
])
def test_instance_objects_follow_json_tensor_cc(instances, inputs, message):
    with pytest.raises(ServingError) as info:
        tensors.instances_to_arrays(instances, inputs)
    assert (info.value.code, info.value.message) == ("INVALID_ARGUMENT", message)


def test_instance_objects_any_key_order():
    arrays = tensors.instances_to_arrays([{"b": 1.0, "a": "x"}, {"a": {"b64": "eQ=="}, "b": 2.0}], TWO)
    assert arrays["a"].tolist() == [b"x", b"y"] and arrays["b"].tolist() == [1.0, 2.0]
    # an object that repeats a name is still an object (read with its first value)
    from serving.json_parse import parse_json
    repeated = parse_json(b'{"instances": [{"b": 1.0, "a": "x", "b": 3.0}]}')["instances"]
    assert tensors.instances_to_arrays(repeated, TWO)["b"].tolist() == [1.0]


@pytest.mark.parametrize("body, message", [
    (b'{"instances": [{"zz": 1, "zz": 2, "yy": 3}]}',
     "Failed to process element: 0 key: zz of 'instances' list. Error: INVALID_ARGUMENT: JSON object: does not "
     "have named input: zz"),
    (b'{"instances": [{"b": 1.0, "b": [2.0], "a": "x"}]}',
     "Failed to process element: 0 key: b of 'instances' list. Error: INVALID_ARGUMENT: Expecting shape [] but "
     "got: [1]"),
    (b'{"instances": [{"a": "x", "b": 1.0}, {"b": 2.0, "a": "y", "b": "z"}]}',
     "Failed to process element: 1 key: b of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: \"z\" Type: "
     "String is not of expected type: float"),
])
def test_instance_objects_check_every_member_as_sent(body, message):
    """FillTensorMapFromInstancesList loops over each object's members as sent (GetObject), a repeated name
    each time, and checks each with AddInstanceItem."""
    from serving.json_parse import parse_json
    with pytest.raises(ServingError) as info:
        tensors.instances_to_arrays(parse_json(body)["instances"], TWO)
    assert (info.value.code, info.value.message) == ("INVALID_ARGUMENT", message)


def test_a_repeated_names_values_are_extra_values_of_its_tensor():
    """Every value of a repeated name is added to its tensor, of as many rows as objects: Tensor::FromProto
    keeps the first values, so the repeat takes the next row's place."""
    from serving.json_parse import parse_json
    repeated = parse_json(b'{"instances": [{"b": 1.0, "a": "x", "b": 3.0}, {"a": "y", "b": 2.0}]}')["instances"]
    arrays = tensors.instances_to_arrays(repeated, TWO)
    assert arrays["b"].tolist() == [1.0, 3.0] and arrays["a"].tolist() == [b"x", b"y"]


@pytest.mark.parametrize("value, message", [
    ({"b64": "YQ==", "extra": 1}, "Missing named input: examples in 'inputs' object."),
    ({"b64": 5}, "Missing named input: examples in 'inputs' object."),
    ([{"b64": 5}], 'JSON Value: {\n    "b64": 5\n} not formatted correctly for base64 data'),
    ([{"b64": "YQ==", "x": 1}], 'JSON Value: {\n    "b64": "YQ==",\n    "x": 1\n} not formatted correctly for base64 data'),
])
def test_columnar_b64_objects(value, message):
    with pytest.raises(ServingError) as info:
        tensors.columnar_to_arrays(value, ONE_STRING)
    assert (info.value.code, info.value.message) == ("INVALID_ARGUMENT", message)


def test_columnar_ignores_extra_keys():
    arrays = tensors.columnar_to_arrays({"examples": [{"b64": "YQ=="}], "x": 1}, ONE_STRING)
    assert arrays["examples"].tolist() == [b"a"]


def test_c_escape_like_absl():
    from serving.status import c_escape
    assert c_escape(b"\x89PNG\r\n\x1a\n\t\"'\\ ~\x7f\x00") == "\\211PNG\\r\\n\\032\\n\\t\\\"\\'\\\\ ~\\177\\000"


def test_undecodable_runtime_message_is_rebuilt_with_the_quoted_value_escaped():
    from serving.status import undecodable_runtime_message
    raw = (b"{{function_node __inference_signature_wrapper_serving_default_700}} Could not parse example input, "
           b"value: '\x89PNG\r\n'x'\n\t [[{{function_node __inference_serving_default_694}}{{node ParseExample/"
           b"ParseExampleV2}}]] [Op:__inference_signature_wrapper_serving_default_700]")
    assert undecodable_runtime_message(raw) == ("Could not parse example input, value: '\\211PNG\\r\\n\\'x'\n"
                                                "\t [[{{node ParseExample/ParseExampleV2}}]]")
    assert undecodable_runtime_message(b"{{function_node f}} bad \xff byte") == "bad \\377 byte"


def test_a_message_cut_at_a_nul_byte_is_made_whole_from_the_one_value_it_quoted():
    from serving.status import whole_message
    parse = {"ParseExample/ParseExampleV2": "ParseExampleV2"}
    node = "\n\t [[{{node ParseExample/ParseExampleV2}}]]"
    cut = b"Graph execution error:\n\nCould not parse example input, value: 'ab  [Op:__inference_signature_wrapper_9]"
    whole = "Could not parse example input, value: 'ab \x00cd'" + node
    assert whole_message(cut, [b"ab \x00cd", b"ab \x00cd", b"x\x00"], parse) == whole
    # not UTF-8 (its code lost, the function's tag kept): the quoted value C-escaped, as any such value
    cut = b"{{function_node __inference_f_7}} Could not parse example input, value: '\x89PNG\r\n [Op:f]"
    whole = "Could not parse example input, value: '\\211PNG\\r\\n\\000\\032\\''"
    assert whole_message(cut, [b"\x89PNG\r\n\x00\x1a'"], parse) == whole + node
    # of two ops that quote alike, which one did is not known: no node context
    both = {**parse, "ParseExample_1/ParseExampleV2": "ParseExampleV2"}
    assert whole_message(cut, [b"\x89PNG\r\n\x00\x1a'"], both) == whole
    number = {"StringToNumber": "StringToNumber"}
    assert whole_message(b"StringToNumberOp could not correctly convert string: 1 [Op:f]", [b"1\x002"], number) == (
        "StringToNumberOp could not correctly convert string: 1\x002\n\t [[{{node StringToNumber}}]]")
    # not sure which value: the message stands
    cut = b"Could not parse example input, value: 'ab [Op:f]"
    assert whole_message(cut, [b"ab\x00cd", b"ab\x00ef"], parse) is None
    assert whole_message(cut, [b"ab"], parse) is None                                  # no NUL: not cut
    assert whole_message(cut, [b"b\x00cd"], parse) is None                            # other bytes before it
    assert whole_message(b"value: 'ab [Op:f]", [b"ab\x00cd"], parse) is None          # other words before it
    assert whole_message(cut, [b"ab\x00cd"], {}) is None                              # no op that quotes
    uncut = b"Could not parse example input, value: 'ab'" + node.encode() + b" [Op:f]"
    assert whole_message(uncut, [b"ab\x00cd"], parse) is None


def test_request_errors_never_carry_python_text():
    from serving.status import request_error
    error = request_error(KeyError("secret internals"))
    assert (error.code, error.http_status, error.message) == ("INTERNAL", 500, "Internal server error")
    assert request_error(ServingError("NOT_FOUND", "x")).message == "x"


def test_json_strings_keep_their_bytes():
    assert tensors.to_bytes("a\udc89\udc00") == b"a\x89\xed\xb0\x80"


def test_strings_are_escaped_as_rapidjson_writes_them():
    """rapidjson's Writer::WriteString: a control character as \\u00XX in uppercase hex (or its short escape),
    ``"`` and ``\\``, nothing else; in string outputs, output names and error bodies alike."""
    value = "a\x1fb\x00\n\t\"\\/\x7f\u05d0"
    escaped = '"a\\u001Fb\\u0000\\n\\t\\"\\\\/\x7f\u05d0"'
    for _ in range(2):   # written, then from the cache
        assert tensors.row_texts({"y": np.array([value.encode()], dtype=object)}) == [escaped]
    assert tensors.row_texts({"n\x1b": np.array([1]), "m": np.array([2])}) == ['{"n\\u001B": 1, "m": 2}']
    assert tensors.error_body("key: \x1f") == b'{\n    "error": "key: \\u001F"\n}'


def test_zero_width_rows_are_empty_lists():
    """TF Serving's MakeRowFormatJsonFromTensors writes an empty array for a row with no elements."""
    assert tensors.row_texts({"x": np.zeros((2, 0), np.float32)}) == ["[]", "[]"]
    assert tensors.row_texts({"x": np.zeros((1, 2, 0), np.float32)}) == ["[[], []]"]
    assert tensors.row_texts({"x": np.zeros((2, 0), np.float32), "y": np.ones((2, 1), np.int64)}) == [
        '{"x": [], "y": [1]}'] * 2


def _features(serialized: bytes) -> dict:
    from tensorflow.core.example import example_pb2
    example = example_pb2.Example.FromString(serialized)
    return {name: feature for name, feature in example.features.feature.items()}


@pytest.mark.parametrize("document, message", [
    # json_tensor.cc's AddValueToFeature / MakeExampleFromJsonObject, element by element
    ({"examples": [5]}, "Example must be JSON object but got JSON Number"),
    ({"examples": [{"x": None}]}, "Feature: x has element with unexpected JSON type: Null"),
    ({"examples": [{"x": ["a", None]}]}, "Feature: x has element with unexpected JSON type: Null"),
    ({"examples": [{"x": [[1]]}]}, "Feature: x has element with unexpected JSON type: Array"),
    ({"examples": [{"x": {"a": 1}}]}, "Feature: x has element with unexpected JSON type: Object"),
    ({"examples": [{"x": ["a", 1]}]}, "Unexpected element type in feature: x expecting type: bytes"),
    ({"examples": [{"x": [1, 1.5]}]}, "Unexpected element type in feature: x expecting type: int64"),
    ({"examples": [{"x": [1.5, True]}]}, "Unexpected element type in feature: x expecting type: float"),
    ({"examples": [{"x": 2 ** 64 - 1}]}, "Feature: x has uint64_t element. Only int64_t is supported."),
    # the context is read before the examples key is looked for
    ({"context": 5}, "Example must be JSON object but got JSON Number"),
    ({"context": {"c": None}, "examples": []}, "Feature: c has element with unexpected JSON type: Null"),
])
def test_examples_follow_json_tensor_cc(document, message):
    with pytest.raises(ServingError) as info:
        tensors.examples_from_json(document, "classify")
    assert (info.value.code, info.value.message) == ("INVALID_ARGUMENT", message)


def test_example_features_as_tf_serving_fills_them():
    [serialized] = tensors.examples_from_json(
        {"examples": [{"empty": [], "flag": True, "big": 2 ** 64, "s": ["a", {"b64": "Yg=="}], "f": 0.5}]}, "classify")
    features = _features(serialized)
    assert features["empty"].WhichOneof("kind") is None             # accepted, an empty Feature
    assert list(features["flag"].int64_list.value) == [1]
    assert list(features["big"].float_list.value) == [float(2 ** 64)]   # past uint64 rapidjson has a double
    assert list(features["s"].bytes_list.value) == [b"a", b"b"] and list(features["f"].float_list.value) == [0.5]


@pytest.mark.parametrize("dtype, name", [
    (np.uint16, "uint16"), (np.float16, "half"), ("bfloat16", "bfloat16"), (np.complex64, "complex64"),
])
def test_outputs_tf_serving_cannot_write_are_refused_with_datatypestring_names(dtype, name):
    """AddSingleValueAndAdvance writes only the dtypes a request may carry; another fails at its first value."""
    import ml_dtypes

    array = np.ones((2, 1), ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)
    for respond in (tensors.row_response, tensors.columnar_response):
        with pytest.raises(ServingError) as caught:
            respond({"y": array})
        assert str(caught.value) == f"Failed to write JSON value for tensor type: {name}"
    assert tensors.columnar_response({"y": array[:, :0]}) == '{\n    "outputs": [[], []]\n}'   # no value to fail on


def test_unsigned_outputs_tf_serving_writes():
    outputs = {"a": np.array([4294967295], np.uint32), "b": np.array([18446744073709551615], np.uint64),
               "c": np.array([255], np.uint8)}
    assert tensors.row_response(outputs) == ('{\n    "predictions": [\n        {"a": 4294967295, '
                                             '"b": 18446744073709551615, "c": 255}\n    ]\n}')
