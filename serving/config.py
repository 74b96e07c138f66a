"""Server flags (named like tensorflow_model_server's) and the text-proto config files they point at.

Config files are the same text protos the real server reads: ``ModelServerConfig`` (--model_config_file),
``MonitoringConfig`` (--monitoring_config_file) and ``BatchingParameters`` (--batching_parameters_file).
"""
from __future__ import annotations

import argparse
import dataclasses
import os

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.protos import BatchingParameters, MonitoringConfig

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass
class ServerOptions:
    rest_api_port: int = 8501            # 0: any free port (the real server treats 0 as "REST disabled")
    rest_api_host: str = "127.0.0.1"
    rest_api_num_threads: int = 0        # 0: 4 x CPUs, as tensorflow_model_server
    rest_api_timeout_in_ms: int = 30000
    rest_api_enable_cors_support: bool = False
    port: int = 0                        # gRPC port; 0: gRPC off (the real server's default is 8500)
    grpc_host: str = "127.0.0.1"         # embedded server only: the gRPC bind address (the real one: 0.0.0.0)
    grpc_max_threads: int = 0            # 0: 4 x CPUs, as tensorflow_model_server
    grpc_channel_arguments: str = ""     # "key=value,..." grpc server options, as tensorflow_model_server
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: float = 0
    file_system_poll_wait_seconds: float = 1
    allow_version_labels_for_unavailable_models: bool = False
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    monitoring_config_file: str = ""
    enable_batching: bool = False
    batching_parameters_file: str = ""
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES   # embedded server only: bound on one request body

    def validate(self) -> None:
        if not self.model_config_file and not self.model_base_path:
            raise ValueError("Both server_options.model_base_path and server_options.model_config_file are "
                             "empty!")
        if self.batching_parameters_file and not self.enable_batching:
            raise ValueError("--batching_parameters_file is set without setting --enable_batching=true.")
        if self.port and self.port == self.rest_api_port:
            raise ValueError("server_options.http_port cannot be same as grpc_port. Please use a different port "
                             "for HTTP/REST API.")


def _bool(text) -> bool:
    if isinstance(text, bool):
        return text
    lowered = str(text).lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def parse_flags(argv=None) -> ServerOptions:
    parser = argparse.ArgumentParser(
        prog="python -m serving",
        description="TF Serving-compatible REST and gRPC server for SavedModels laid out as <base_path>/<version>/.")
    for field in dataclasses.fields(ServerOptions):
        kind = field.type if isinstance(field.type, str) else field.type.__name__
        if kind == "bool":
            parser.add_argument(f"--{field.name}", type=_bool, nargs="?", const=True, default=field.default)
        else:
            caster = {"int": int, "float": float, "str": str}[kind]
            parser.add_argument(f"--{field.name}", type=caster, default=field.default)
    args = parser.parse_args(argv)
    options = ServerOptions(**vars(args))
    try:
        options.validate()
    except ValueError as exc:
        parser.error(str(exc))
    return options


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def parse_model_server_config(text: str, source: str = "model config") -> model_server_config_pb2.ModelServerConfig:
    """A ModelServerConfig from its text form; refuses what this server cannot serve (at start and on reload)."""
    try:
        config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as err:   # TF Serving: InvalidArgument "Invalid protobuf file: '<file>'"
        raise ValueError(f"Invalid protobuf file: '{source}' ({err})") from None
    check_model_server_config(config, source)
    return config


def check_model_server_config(config, source: str) -> None:
    """Refuses what this server cannot serve (a config file at start and on reload, a gRPC reload request)."""
    if config.HasField("custom_model_config"):
        raise ValueError(f"{source}: custom_model_config is not supported; use model_config_list")
    for model in config.model_config_list.config:
        if model.model_platform not in ("", "tensorflow"):
            raise ValueError(f"{source}: model {model.name}: unsupported model_platform {model.model_platform!r}")


def load_model_server_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    return parse_model_server_config(read_text(path), path)


def single_model_config(name: str, base_path: str) -> model_server_config_pb2.ModelServerConfig:
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = base_path
    model.model_platform = "tensorflow"
    return config


def load_monitoring_config(path: str) -> MonitoringConfig:
    return text_format.Parse(read_text(path), MonitoringConfig())


def prometheus_path(config) -> str | None:
    """The metrics path, or None when Prometheus export is off."""
    if config is None or not config.prometheus_config.enable:
        return None
    return config.prometheus_config.path or DEFAULT_PROMETHEUS_PATH


@dataclasses.dataclass(frozen=True)
class Batching:
    """Effective batching settings: the file's values, else the batcher defaults TF Serving uses."""
    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = 0   # 0: number of CPUs
    allowed_batch_sizes: tuple = ()
    pad_variable_length_inputs: bool = False

    @classmethod
    def from_proto(cls, params) -> "Batching":
        values = {}
        for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
            if params.HasField(name):
                values[name] = getattr(params, name).value
        values["allowed_batch_sizes"] = tuple(params.allowed_batch_sizes)
        values["pad_variable_length_inputs"] = params.pad_variable_length_inputs
        batching = cls(**values)
        batching.validate()
        return batching

    def validate(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be positive")
        if self.allowed_batch_sizes:
            sizes = list(self.allowed_batch_sizes)
            if sizes != sorted(sizes) or sizes[-1] != self.max_batch_size:
                raise ValueError("allowed_batch_sizes must be increasing and end with max_batch_size")

    @property
    def threads(self) -> int:
        return self.num_batch_threads or os.cpu_count() or 1


def load_batching_parameters(path: str) -> Batching:
    return Batching.from_proto(text_format.Parse(read_text(path), BatchingParameters()))
