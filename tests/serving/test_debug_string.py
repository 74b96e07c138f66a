"""serving.debug_string: a message's text as C++ Message::DebugString() writes it (protobuf 3.21)."""
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from serving.debug_string import debug_string


def test_a_signature_def_as_cpp_debug_string_writes_it():
    """Map entries sorted by key, each with its key and value; fields by number (a TensorInfo's dtype, 2, before its
    coo_sparse, 4); strings CEscape'd (UTF-8 in octal); an enum value of no name by number; floats and doubles as
    SimpleFtoa / SimpleDtoa write them. str() had kept the insertion order, the .proto's order and raw UTF-8."""
    signature = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/classify")
    signature.outputs["y"].name = "é\t\x7f"
    signature.outputs["b"].coo_sparse.values_tensor_name = "v\n\"'\x01\\"
    signature.outputs["b"].dtype = types_pb2.DT_INT64
    signature.outputs["m"].dtype = 999
    signature.inputs["inputs"].tensor_shape.dim.add(size=-1, name="d")
    signature.defaults["inputs"].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, float_val=[0.1, 1.0, -0.0, 1e20, 3.4028234663852886e38, float("inf")],
        double_val=[2 / 3, 1.0], bool_val=[True], string_val=[b"\xff\x00a"]))
    signature.defaults[""].SetInParent()
    assert debug_string(signature) == (
        'inputs {\n  key: "inputs"\n  value {\n    tensor_shape {\n      dim {\n        size: -1\n        name: "d"\n'
        '      }\n    }\n  }\n}\n'
        'outputs {\n  key: "b"\n  value {\n    dtype: DT_INT64\n    coo_sparse {\n'
        '      values_tensor_name: "v\\n\\"\\\'\\001\\\\"\n    }\n  }\n}\n'
        'outputs {\n  key: "m"\n  value {\n    dtype: 999\n  }\n}\n'
        'outputs {\n  key: "y"\n  value {\n    name: "\\303\\251\\t\\177"\n  }\n}\n'
        'method_name: "tensorflow/serving/classify"\n'
        'defaults {\n  key: ""\n  value {\n  }\n}\n'
        'defaults {\n  key: "inputs"\n  value {\n    dtype: DT_FLOAT\n    float_val: 0.1\n    float_val: 1\n'
        '    float_val: -0\n    float_val: 1e+20\n    float_val: 3.40282347e+38\n    float_val: inf\n'
        '    double_val: 0.66666666666666663\n    double_val: 1\n    string_val: "\\377\\000a"\n    bool_val: true\n'
        '  }\n}\n')
