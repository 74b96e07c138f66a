"""``tensorflow.serving.PredictionLog`` for a process that does not load TensorFlow (the web backend).

The generated modules of ``tensorflow-serving-api`` import TensorFlow (seconds to start, hundreds of MB). The
part of a PredictionLog that a predict log uses is declared here with the same package, message names, field
names, numbers and types as upstream (prediction_log.proto, logging.proto, logging_config.proto, predict.proto,
model.proto; tensor.proto, tensor_shape.proto and types.proto of TensorFlow), in a private descriptor pool, so
a record built here serializes to the bytes the real classes would write and parses with them
(``tests/test_request_log.py`` compares the declarations with the real descriptors).
"""
from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

from core import request_log

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
DT_FLOAT, DT_STRING = 1, 7   # tensorflow.DataType


def _field(name, number, type_, type_name=None, label=_OPTIONAL, oneof=None):
    field = _F(name=name, number=number, type=type_, label=label)
    if type_name:
        field.type_name = type_name
    if oneof is not None:
        field.oneof_index = oneof
    return field


def _map(message, field_name, number, value_type):
    """A ``map<string, value_type>`` field of a tensorflow.serving message (its nested ``<Name>Entry``
    message, as protoc declares it)."""
    entry = message.nested_type.add(name="".join(p.title() for p in field_name.split("_")) + "Entry",
                                    field=[_field("key", 1, _F.TYPE_STRING),
                                           _field("value", 2, _F.TYPE_MESSAGE, value_type)])
    entry.options.map_entry = True
    message.field.append(_field(field_name, number, _F.TYPE_MESSAGE,
                                f".tensorflow.serving.{message.name}.{entry.name}", _REPEATED))


def _build():
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)

    tensor = descriptor_pb2.FileDescriptorProto(name="tensorflow/core/framework/tensor.proto",
                                                package="tensorflow", syntax="proto3")
    data_type = tensor.enum_type.add(name="DataType")
    for name, number in (("DT_INVALID", 0), ("DT_FLOAT", DT_FLOAT), ("DT_INT32", 3), ("DT_STRING", DT_STRING),
                         ("DT_INT64", 9)):
        data_type.value.add(name=name, number=number)
    shape = tensor.message_type.add(name="TensorShapeProto", field=[
        _field("dim", 2, _F.TYPE_MESSAGE, ".tensorflow.TensorShapeProto.Dim", _REPEATED),
        _field("unknown_rank", 3, _F.TYPE_BOOL)])
    shape.nested_type.add(name="Dim", field=[_field("size", 1, _F.TYPE_INT64), _field("name", 2, _F.TYPE_STRING)])
    tensor.message_type.add(name="TensorProto", field=[
        _field("dtype", 1, _F.TYPE_ENUM, ".tensorflow.DataType"),
        _field("tensor_shape", 2, _F.TYPE_MESSAGE, ".tensorflow.TensorShapeProto"),
        _field("tensor_content", 4, _F.TYPE_BYTES),
        _field("float_val", 5, _F.TYPE_FLOAT, label=_REPEATED),
        _field("int_val", 7, _F.TYPE_INT32, label=_REPEATED),
        _field("string_val", 8, _F.TYPE_BYTES, label=_REPEATED),
        _field("int64_val", 10, _F.TYPE_INT64, label=_REPEATED)])
    pool.Add(tensor)

    serving = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/apis/prediction_log.proto", package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto", "tensorflow/core/framework/tensor.proto"])
    spec = serving.message_type.add(name="ModelSpec", field=[
        _field("name", 1, _F.TYPE_STRING),
        _field("version", 2, _F.TYPE_MESSAGE, ".google.protobuf.Int64Value", oneof=0),
        _field("version_label", 4, _F.TYPE_STRING, oneof=0),
        _field("signature_name", 3, _F.TYPE_STRING)])
    spec.oneof_decl.add(name="version_choice")
    serving.message_type.add(name="SamplingConfig", field=[
        _field("sampling_rate", 1, _F.TYPE_DOUBLE), _field("attributes", 2, _F.TYPE_INT32)])
    serving.message_type.add(name="LogMetadata", field=[
        _field("model_spec", 1, _F.TYPE_MESSAGE, ".tensorflow.serving.ModelSpec"),
        _field("sampling_config", 2, _F.TYPE_MESSAGE, ".tensorflow.serving.SamplingConfig"),
        _field("saved_model_tags", 3, _F.TYPE_STRING, label=_REPEATED),
        _field("timestamp_secs", 4, _F.TYPE_INT64),
        _field("dc", 5, _F.TYPE_STRING),
        _field("request_origin", 6, _F.TYPE_STRING),
        _field("request_criticality", 7, _F.TYPE_STRING)])
    request = serving.message_type.add(name="PredictRequest", field=[
        _field("model_spec", 1, _F.TYPE_MESSAGE, ".tensorflow.serving.ModelSpec")])
    _map(request, "inputs", 2, ".tensorflow.TensorProto")
    request.field.append(_field("output_filter", 3, _F.TYPE_STRING, label=_REPEATED))
    response = serving.message_type.add(name="PredictResponse", field=[
        _field("model_spec", 2, _F.TYPE_MESSAGE, ".tensorflow.serving.ModelSpec")])
    _map(response, "outputs", 1, ".tensorflow.TensorProto")
    serving.message_type.add(name="PredictLog", field=[
        _field("request", 1, _F.TYPE_MESSAGE, ".tensorflow.serving.PredictRequest"),
        _field("response", 2, _F.TYPE_MESSAGE, ".tensorflow.serving.PredictResponse")])
    prediction_log = serving.message_type.add(name="PredictionLog", field=[
        _field("log_metadata", 1, _F.TYPE_MESSAGE, ".tensorflow.serving.LogMetadata"),
        _field("predict_log", 6, _F.TYPE_MESSAGE, ".tensorflow.serving.PredictLog", oneof=0)])
    prediction_log.oneof_decl.add(name="log_type")
    pool.Add(serving)
    return pool


_POOL = _build()


def message_class(full_name: str):
    """A message class of this pool, e.g. ``message_class("tensorflow.serving.PredictionLog")``."""
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(full_name))


PredictionLog = message_class("tensorflow.serving.PredictionLog")
TensorProto = message_class("tensorflow.TensorProto")


def bytes_tensor(values: list) -> TensorProto:
    """A DT_STRING tensor of shape [len(values)]."""
    proto = TensorProto(dtype=DT_STRING, string_val=values)
    proto.tensor_shape.dim.add(size=len(values))
    return proto


def float_tensor(rows: list) -> TensorProto:
    """A DT_FLOAT tensor of shape [len(rows), len(rows[0])] (a batch of equally long float lists)."""
    proto = TensorProto(dtype=DT_FLOAT, float_val=[value for row in rows for value in row])
    proto.tensor_shape.dim.add(size=len(rows))
    proto.tensor_shape.dim.add(size=len(rows[0]) if rows else 0)
    return proto


def predict_log(model_name: str, signature_name: str, version: int, inputs: dict, outputs: dict,
                sampling_rate: float, request_origin: str = "", timestamp: float | None = None):
    """A PredictionLog with a ``predict_log``: the request (model, signature, version and ``inputs``) and the
    response (``outputs``) of one predict call, with its ``log_metadata`` (:func:`core.request_log.fill_metadata`).
    ``inputs``/``outputs``: {alias: TensorProto of this module}."""
    record = PredictionLog()
    for spec in (record.predict_log.request.model_spec, record.predict_log.response.model_spec):
        spec.name, spec.signature_name = model_name, signature_name
        spec.version.value = version
    for alias, value in inputs.items():
        record.predict_log.request.inputs[alias].CopyFrom(value)
    for alias, value in outputs.items():
        record.predict_log.response.outputs[alias].CopyFrom(value)
    return request_log.fill_metadata(record, model_name, signature_name, version, sampling_rate, request_origin,
                                     timestamp)
