"""TF Serving config messages that the ``tensorflow-serving-api`` wheel does not ship (or ships older).

``tensorflow_serving.config.model_server_config_pb2`` comes with the wheel; ``MonitoringConfig``
(tensorflow_serving/config/monitoring_config.proto) and ``BatchingParameters``
(tensorflow_serving/servables/tensorflow/session_bundle_config.proto) do not. They are declared here with
the same package, message names, field names, numbers and types as upstream (``BatchingParameters`` as
2.16.1 has it, fields 1-9), so text written for tensorflow_model_server parses
here unchanged. ``ModelServerConfig`` and ``SamplingConfig`` are the wheel's with 2.20.0's per-task sampling
rates and ``LoggingConfig.custom_logging_config`` added (a config file is parsed with them, then read as the
wheel's message, which keeps the new fields: :func:`wheel_config`, :func:`config_text`). They live in a private
descriptor pool so they can never clash with generated modules.
"""
from __future__ import annotations

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

_F = descriptor_pb2.FieldDescriptorProto


def _field(name, number, type_, label=_F.LABEL_OPTIONAL, type_name=None):
    field = _F(name=name, number=number, type=type_, label=label)
    if type_name:
        field.type_name = type_name
    return field


def _build():
    pool = descriptor_pool.DescriptorPool()
    for module in (wrappers_pb2, any_pb2):
        well_known = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(well_known)
        pool.Add(well_known)

    monitoring = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto", package="tensorflow.serving", syntax="proto3")
    monitoring.message_type.add(name="PrometheusConfig", field=[
        _field("enable", 1, _F.TYPE_BOOL),
        _field("path", 2, _F.TYPE_STRING),
    ])
    monitoring.message_type.add(name="MonitoringConfig", field=[
        _field("prometheus_config", 1, _F.TYPE_MESSAGE, type_name=".tensorflow.serving.PrometheusConfig"),
    ])
    pool.Add(monitoring)

    batching = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        package="tensorflow.serving", syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    int64 = ".google.protobuf.Int64Value"
    batching.message_type.add(name="BatchingParameters", field=[
        _field("max_batch_size", 1, _F.TYPE_MESSAGE, type_name=int64),
        _field("batch_timeout_micros", 2, _F.TYPE_MESSAGE, type_name=int64),
        _field("max_enqueued_batches", 3, _F.TYPE_MESSAGE, type_name=int64),
        _field("num_batch_threads", 4, _F.TYPE_MESSAGE, type_name=int64),
        _field("thread_pool_name", 5, _F.TYPE_MESSAGE, type_name=".google.protobuf.StringValue"),
        _field("allowed_batch_sizes", 6, _F.TYPE_INT64, label=_F.LABEL_REPEATED),
        _field("pad_variable_length_inputs", 7, _F.TYPE_BOOL),
        _field("enable_large_batch_splitting", 8, _F.TYPE_MESSAGE, type_name=".google.protobuf.BoolValue"),
        _field("max_execution_batch_size", 9, _F.TYPE_MESSAGE, type_name=int64),
    ])
    pool.Add(batching)

    # ModelServerConfig as 2.20.0 has it: the wheel's (2.16.1) files, with SamplingConfig's per-task rates
    # (logging_config.proto: ``repeated PerTaskSamplingConfig per_task_sampling_configs = 3``) and LoggingConfig's
    # ``google.protobuf.Any custom_logging_config = 3`` added.
    def add_with_dependencies(file_descriptor):
        for dependency in file_descriptor.dependencies:
            add_with_dependencies(dependency)
        try:
            pool.FindFileByName(file_descriptor.name)
            return
        except KeyError:
            pass
        proto = descriptor_pb2.FileDescriptorProto()
        file_descriptor.CopyToProto(proto)
        if proto.name == "tensorflow_serving/config/logging_config.proto":
            per_task = proto.message_type.add(name="PerTaskSamplingConfig", field=[
                _field("dc", 1, _F.TYPE_STRING),
                _field("task_index", 2, _F.TYPE_INT32),
                _field("sampling_rate", 3, _F.TYPE_DOUBLE),
            ])
            per_task.field[1].proto3_optional = True          # ``optional int32 task_index``: has_task_index()
            per_task.field[1].oneof_index = 0
            per_task.oneof_decl.add(name="_task_index")
            sampling = next(m for m in proto.message_type if m.name == "SamplingConfig")
            sampling.field.append(_field("per_task_sampling_configs", 3, _F.TYPE_MESSAGE, _F.LABEL_REPEATED,
                                         ".tensorflow.serving.PerTaskSamplingConfig"))
            proto.dependency.append("google/protobuf/any.proto")
            logging_config = next(m for m in proto.message_type if m.name == "LoggingConfig")
            logging_config.field.append(_field("custom_logging_config", 3, _F.TYPE_MESSAGE,
                                               type_name=".google.protobuf.Any"))
        pool.Add(proto)

    add_with_dependencies(model_server_config_pb2.DESCRIPTOR)

    def cls(name):
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))

    return (cls("tensorflow.serving.PrometheusConfig"), cls("tensorflow.serving.MonitoringConfig"),
            cls("tensorflow.serving.BatchingParameters"), cls("tensorflow.serving.ModelServerConfig"),
            cls("tensorflow.serving.SamplingConfig"))


PrometheusConfig, MonitoringConfig, BatchingParameters, ModelServerConfig, SamplingConfig = _build()


def wheel_config(config):
    """This module's ``ModelServerConfig`` as the wheel's message, which the servers use (2.20.0's fields ride
    along as unknown fields, so they are kept when it is written again)."""
    return model_server_config_pb2.ModelServerConfig.FromString(config.SerializeToString())


def config_text(config) -> str:
    """The wheel's ``ModelServerConfig`` as text, 2.20.0's fields included."""
    return text_format.MessageToString(ModelServerConfig.FromString(config.SerializeToString()))


def per_task_sampling_configs(sampling_config) -> list:
    """2.20.0's ``per_task_sampling_configs`` of the wheel's ``SamplingConfig``."""
    return list(SamplingConfig.FromString(sampling_config.SerializeToString()).per_task_sampling_configs)
