"""Server flags (named like tensorflow_model_server's) and the text-proto config files they point at.

Config files are the same text protos the real server reads: ``ModelServerConfig`` (--model_config_file),
``MonitoringConfig`` (--monitoring_config_file) and ``BatchingParameters`` (--batching_parameters_file).
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import math
import os
import re
import stat
import sys

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from core import settings
from core.configs import DEFAULT_MAX_REQUEST_BYTES
from serving import protos
from serving.protos import BatchingParameters, MonitoringConfig
from serving.request_logging import check_logging_config
from serving.status import invalid, io_error

log = logging.getLogger("serving.config")

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
FAILED_TO_START = 255   # main.cc's `return -1;` (flags it cannot read, a failed BuildAndStart) as the exit status


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
    model_config_file_poll_wait_seconds: int = 0     # whole seconds on the command line, as TF Serving's int32
    file_system_poll_wait_seconds: int = 1
    allow_version_labels_for_unavailable_models: bool = False
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    monitoring_config_file: str = ""
    enable_batching: bool = False
    batching_parameters_file: str = ""
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES   # embedded server only: bound on one request body
    rest_api_header_timeout_in_ms: int = 10000   # embedded server only: a request head's time after its first byte
    rest_api_idle_timeout_in_ms: int = 60000     # embedded server only: an idle connection's (or stalled body's) time

    @property
    def rest_skipped(self) -> bool:
        """TF Serving starts no REST server when its port is the gRPC port (server.cc: an error logged, gRPC
        served)."""
        return bool(self.port) and self.port == self.rest_api_port

    def validate(self) -> None:
        """ValueError for flag values the server cannot take (each message names its flag): usage errors. The
        option combinations TF Serving's BuildAndStart refuses are start failures (:class:`serving.server.Server`)."""
        for name in ("file_system_poll_wait_seconds", "model_config_file_poll_wait_seconds"):
            value = getattr(self, name)   # int32 flags in TF Serving: inf, nan or 1e10 do not parse there
            if not math.isfinite(value) or abs(value) > 2 ** 31 - 1:
                raise ValueError(f"--{name}={value:g} is not a number of seconds TF Serving takes (an int32)")
        for name in ("rest_api_num_threads", "grpc_max_threads"):
            # 0: TF Serving's default, 4 x CPUs (server.h); its REST ThreadPool CHECKs for at least 1
            if getattr(self, name) < 0:
                raise ValueError(f"--{name}={getattr(self, name)} is not a number of threads (0 = 4 x CPUs)")
        if self.max_request_bytes < 1:   # a limit below 1 byte refuses every gRPC call and every REST request
            raise ValueError(f"--max_request_bytes={self.max_request_bytes} is not a number of bytes a request "
                             "may have (at least 1)")


HELP = {   # ServerOptions field -> help (the flags are named as tensorflow_model_server's)
    "rest_api_port": "REST port (0 = any free port)",
    "rest_api_host": "REST address to bind",
    "rest_api_num_threads": "request threads (0 = 4 x CPUs)",
    "rest_api_timeout_in_ms": "deadline of the model run of one REST request (504 after it; with batching, 429 "
                              "when it passed while the request waited in the batch queue), as TF Serving's "
                              "RunOptions.timeout_in_ms",
    "rest_api_enable_cors_support": "answer CORS preflights and add CORS headers",
    "port": "gRPC port (0 = gRPC off)",
    "grpc_host": "gRPC address to bind",
    "grpc_max_threads": "gRPC request threads (0 = 4 x CPUs)",
    "grpc_channel_arguments": "gRPC server options, key=value,... (e.g. grpc.max_receive_message_length=N)",
    "model_name": "model name (with --model_base_path)",
    "model_base_path": "folder of numbered versions <base>/<version>/saved_model.pb",
    "model_config_file": "a ModelServerConfig text proto (several models, versions, labels)",
    "model_config_file_poll_wait_seconds": "re-read --model_config_file this often (0 or less: read once, at "
                                           "start-up)",
    "file_system_poll_wait_seconds": "look for new versions this often (0: once, at start-up; less: never, and "
                                     "the start waits forever)",
    "allow_version_labels_for_unavailable_models": "allow a label on a version that is not loaded yet",
    "max_num_load_retries": "retries of a failed version load",
    "load_retry_interval_micros": "wait between load retries",
    "monitoring_config_file": "a MonitoringConfig text proto (Prometheus endpoint)",
    "enable_batching": "batch concurrent requests",
    "batching_parameters_file": "a BatchingParameters text proto",
    "max_request_bytes": "largest request body accepted (embedded server only)",
    "rest_api_header_timeout_in_ms": "time a request's line and headers may take after its first byte; then 408 and "
                                     "the connection is closed (0 = no limit; embedded server only)",
    "rest_api_idle_timeout_in_ms": "close a REST connection on which nothing arrives (between requests, within a "
                                   "body) or whose client reads nothing for this long (0 = never; embedded server "
                                   "only)",
}


# tensorflow_model_server's flags (TF Serving 2.20.0 model_servers/main.cc) that the embedded server does not
# implement: accepted and ignored with a warning, where another argument is "unknown".
OTHER_TF_SERVING_FLAGS = frozenset("""
    enable_grpc_healthcheck_service enable_model_warmup enable_per_model_batching_parameters enable_profiler
    enable_serialization_as_tensor_content enable_signature_method_name_check flush_filesystem_caches
    grpc_socket_path mixed_precision num_load_threads num_request_iterations_for_warmup num_tflite_interpreters_per_pool
    num_tflite_pools num_unload_threads per_process_gpu_memory_fraction platform_config_file prefer_tflite_model
    remove_unused_fields_from_bundle_metagraph saved_model_tags skip_initialize_tpu ssl_config_file
    tensorflow_inter_op_parallelism tensorflow_intra_op_parallelism tensorflow_session_config_file
    tensorflow_session_parallelism thread_pool_factory_config_file use_alts_credentials xla_cpu_compilation_enabled
    xla_gpu_compilation_enabled""".split())


TF_TYPES = {"bool": "bool", "int": "int32", "str": "string"}   # a field's type as Flags::Usage names it
INT64_FLAGS = frozenset({"load_retry_interval_micros", "max_request_bytes"})
SCANF_INT = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+")    # what sscanf's "%d%c" reads as one whole number


def tf_type(name: str) -> str:
    """The flag's type as TensorFlow's Flags::Usage shows it (int32, int64, bool, string)."""
    return "int64" if name in INT64_FLAGS else TF_TYPES[settings.kind(ServerOptions, name)]


def parse_tf_flag_value(kind_name: str, raw: str, source: str):
    """``raw`` read as TensorFlow's command_line_flags reads a value: a bool is true or false (in any case), 1 or
    0; an int is a whole decimal number (0.5, 1e3 or 1_000 are not); otherwise a ValueError in its words
    (``Couldn't interpret value yes for flag enable_batching.``), ``source`` being the flag."""
    if kind_name == "bool" and (raw.lower() in ("true", "false") or raw in ("1", "0")):
        return raw.lower() in ("true", "1")
    if kind_name == "bool" or (kind_name == "int" and not SCANF_INT.fullmatch(raw)):
        raise ValueError(f"Couldn't interpret value {raw} for flag {source.removeprefix('--')}.")
    return settings.parse(kind_name, raw, source)


def unreadable_values(kept: list[str]) -> list[str]:
    """TensorFlow's message for each ``--name=value`` of ``kept`` (:func:`tf_flag_arguments`) whose value its flag
    parser cannot read: Flags::Parse reads every argument, logging each such value, before it fails."""
    kinds = {f.name: settings.kind(ServerOptions, f.name) for f in dataclasses.fields(ServerOptions)}
    refused = []
    for arg in kept:
        name, _, raw = arg[2:].partition("=")
        if name in kinds:   # not -h, --help
            try:
                parse_tf_flag_value(kinds[name], raw, f"--{name}")
            except ValueError as exc:
                refused.append(str(exc))
    return refused


def refuse_flags(parser: argparse.ArgumentParser, messages: list[str]) -> None:
    """main.cc when Flags::Parse fails: each message logged at ERROR (as command_line_flags logs it), the usage on
    stdout, and ``return -1``: exit status :data:`FAILED_TO_START`."""
    for message in messages:
        log.error("%s", message)
    print(parser.format_help(), end="", flush=True)
    sys.exit(FAILED_TO_START)


class FlagsUsageFormatter(argparse.HelpFormatter):
    """--help as TensorFlow's Flags::Usage shows a flag: ``--name=default``, its type, then its description."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=38)   # Flags::Usage gives ``--name=default`` 33 columns

    def _format_action_invocation(self, action) -> str:
        if action.default is argparse.SUPPRESS:   # -h, --help
            return super()._format_action_invocation(action)
        default = action.default
        shown = str(default).lower() if isinstance(default, bool) else \
            f'"{default}"' if isinstance(default, str) else str(default)
        return f"{action.option_strings[0]}={shown}"

    def _get_help_string(self, action) -> str:
        if action.default is argparse.SUPPRESS:
            return action.help
        return f"{tf_type(action.dest)}: {action.help}"


def tf_flag_arguments(argv: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(arguments for argparse, tensorflow_model_server flags not implemented here, unknown arguments), read as
    TensorFlow's command_line_flags reads them: ``--name=value``; a boolean also as ``--name`` (true); so
    ``--rest_api_port 8502`` and ``--enable_batching false`` are not a port and a false (the words after are
    unknown arguments), and no flag name is abbreviated. A bare ``--`` ends the flags: it and every argument
    after it are unknown."""
    fields = {f.name: "bool" in str(f.type) for f in dataclasses.fields(ServerOptions)}
    kept, ignored, unknown = [], [], []
    for index, arg in enumerate(argv):
        name, equals, _ = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if arg == "--":
            unknown.extend(argv[index:])
            break
        if arg in ("-h", "--help"):
            kept.append(arg)
        elif name in fields and (equals or fields[name]):
            kept.append(arg if equals else f"--{name}=true")
        elif name in OTHER_TF_SERVING_FLAGS:
            ignored.append(arg)
        else:
            unknown.append(arg)
    return kept, ignored, unknown


def parse_flags(argv=None) -> ServerOptions:
    parser = argparse.ArgumentParser(
        formatter_class=FlagsUsageFormatter, prog="letters-model-server", allow_abbrev=False,
        usage="%(prog)s [--flag=value ...]",
        description="TF Serving-compatible REST and gRPC server for SavedModels laid out as <base_path>/<version>/.")
    settings.add_flags(parser, ServerOptions, {f.name: HELP.get(f.name, "") for f in dataclasses.fields(ServerOptions)},
                       ServerOptions(), dashes=False, parse_value=parse_tf_flag_value)
    argv = list(sys.argv[1:] if argv is None else argv)
    kept, ignored, unknown = tf_flag_arguments(argv)
    refused = unreadable_values(kept)
    if refused:   # before --version, which main.cc reads once Flags::Parse has succeeded
        refuse_flags(parser, refused)
    if "--version" in argv[:argv.index("--") if "--" in argv else None]:   # as tensorflow_model_server --version
        import tensorflow as tf
        print(f"TensorFlow ModelServer: letters embedded server (TF Serving 2.20.0's APIs)\n"
              f"TensorFlow Library: {tf.__version__}")
        sys.exit(0)
    for arg in ignored:
        print(f"warning: {arg.split('=', 1)[0]} is a tensorflow_model_server flag the embedded server does not "
              "implement; ignored", file=sys.stderr)
    if unknown:   # main.cc prints the first one and the usage, and runs
        print(f"unknown argument: {unknown[0]}\n{parser.format_help()}", end="")
    args = parser.parse_args(kept)
    options = ServerOptions(**vars(args))
    try:
        options.validate()
    except ValueError as exc:   # refused as a value TensorFlow's flag parser cannot read is
        refuse_flags(parser, [str(exc)])
    return options


def read_text(path: str) -> str:
    """A config file's text, with the errors ParseProtoTextFile gives, which maps it into memory (the POSIX file
    system's NewReadOnlyMemoryRegionFromFile: open, then mmap of the file's st_size bytes). A file that cannot be
    read is TensorFlow's IOError status (NOT_FOUND: <path>; No such file or directory); so is an empty one, whose
    mapping of 0 bytes fails (INVALID_ARGUMENT: <path>; Invalid argument), and a folder or other file that is not a
    regular one, which opens but cannot be mapped (NOT_FOUND: <path>; No such device). It is read, not mapped: a
    file cut short while mapped would end the server (SIGBUS), where a short read is a bad config the poll logs.
    Bytes that are not UTF-8 are kept as surrogates (surrogateescape): protobuf's tokenizer skips a # comment
    whatever its bytes, and :func:`parse_text_proto` refuses them in a string value."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            info = os.fstat(fd)
            if not info.st_size:   # mmap(2) refuses a length of 0, whatever the file
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            if not stat.S_ISREG(info.st_mode):   # and a folder's (ENODEV)
                raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
            with open(fd, "rb", closefd=False) as file:
                data = file.read()
        finally:
            os.close(fd)
    except OSError as exc:
        raise io_error(path, exc) from None
    return data.decode("utf-8", "surrogateescape")


def parse_model_server_config(text: str, source: str = "model config",
                              served=()) -> model_server_config_pb2.ModelServerConfig:
    """A ModelServerConfig from its text form; refuses what this server cannot serve (at start and on reload,
    ``served`` naming the models it would replace)."""
    config = read_model_server_config(text, source)
    check_model_server_config(config, source, served)
    return config


def read_model_server_config(text: str, source: str = "model config") -> model_server_config_pb2.ModelServerConfig:
    """A ModelServerConfig from its text form, not checked (TF Serving's ParseProtoTextFile: INVALID_ARGUMENT
    "Invalid protobuf file: …" when it does not parse)."""
    # parsed as 2.20.0 has the message (per-task sampling rates too), then read as the wheel's, which keeps them
    return protos.wheel_config(parse_text_proto(text, protos.ModelServerConfig(), source))


def check_model_server_config(config, source: str, served=()) -> None:
    """Refuses what this server cannot serve (a config file at start and on reload, a gRPC reload request):
    INVALID_ARGUMENT, as ServerCore's checks (a logging_config's: :func:`check_logging_config`); ``served``: the
    names of the models the config replaces (ServerCore's current config)."""
    if config.HasField("custom_model_config"):
        raise invalid(f"{source}: custom_model_config is not supported; use model_config_list")
    # ServerCore's ValidateModelConfigList (there is no --model_config_list_root_dir here): unique names, and base
    # paths that are absolute or URIs. Its messages, which name no source.
    if repeated := repeated_model_error(config):
        raise invalid(repeated)
    for model in config.model_config_list.config:
        if "://" not in model.base_path and not os.path.isabs(model.base_path):
            raise invalid(f"Expected model {model.name} to have an absolute path or URI; "
                          f"got base_path()={model.base_path}")
    for model in config.model_config_list.config:   # TF Serving's Env reads them; here the local file system only
        if settings.is_url(model.base_path) and not model.base_path.startswith(settings.FILE_SCHEME):
            raise invalid(f"Model {model.name}'s base_path {model.base_path} is a URL: this server reads local paths "
                          "only (file:///… is read as the local path); production TF Serving reads gs://, s3:// and "
                          "other file systems TensorFlow has, or mount the bucket (Cloud Storage FUSE, say) and give "
                          "a path in it")
    for model in config.model_config_list.config:   # ValidateNoModelsChangePlatforms; every served one is tensorflow
        if model.name in served and (platform := _platform(model)) != "tensorflow":
            raise invalid(f"Illegal to change a model's platform. For model {model.name} platform was tensorflow "
                          f"and new platform requested is {platform}")
    for model in config.model_config_list.config:
        platform = _platform(model)
        if platform != "tensorflow":   # ServerCore::CreateStoragePathRoutes: no source adapter for it
            raise invalid(f"Model {model.name} requests unsupported platform {platform}")
        check_logging_config(model, source)


def repeated_model_error(config) -> str | None:
    """ServerCore's ValidateModelConfigList's first check, in its words: a model the list names more than once (the
    first), which refuses the whole config; None when each is named once."""
    names = set()
    for model in config.model_config_list.config:
        if model.name in names:
            return f"Illegal to list model {model.name} multiple times in config list"
        names.add(model.name)
    return None


def _platform(model) -> str:
    """ServerCore's GetPlatform: model_platform, or the deprecated model_type; exactly one of them is set."""
    pb = model_server_config_pb2
    if model.model_type != pb.MODEL_TYPE_UNSPECIFIED:
        if model.model_platform:
            raise invalid("Illegal setting both ModelServerConfig::model_type (deprecated) and "
                          f"ModelServerConfig::model_platform, model name is {model.name}")
        if model.model_type != pb.TENSORFLOW:
            raise invalid(f"ModelServerConfig::model_type choice {model.model_type} not supported.")
        return "tensorflow"
    if not model.model_platform:
        raise invalid("Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
                      f"ModelServerConfig::model_platform, model name is {model.name}")
    return model.model_platform


def load_model_server_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    return parse_model_server_config(read_text(path), path)


def single_model_config(name: str, base_path: str) -> model_server_config_pb2.ModelServerConfig:
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = base_path
    model.model_platform = "tensorflow"
    check_model_server_config(config, "--model_base_path")   # a relative path is refused, as by TF Serving
    return config


def load_monitoring_config(path: str) -> MonitoringConfig:
    return parse_text_proto(read_text(path), MonitoringConfig(), path)


def parse_text_proto(text: str, message, source: str):
    """``message`` filled from its text form, as TF Serving's ParseProtoTextFile reads a file: INVALID_ARGUMENT
    "Invalid protobuf file: '<source>'" when it does not parse, the parser's words only logged, as protobuf's
    text parser logs them (Error parsing text-format <message type>: <line>:<column>: ...). A string value whose
    bytes are not UTF-8 (:func:`read_text` keeps them as surrogates) is refused so: protobuf's C++ parser takes
    the bytes as they are, a Python string cannot hold them. So is a text whose messages nest deeper than Python's
    parser can follow (its recursion limit: some hundreds of levels), which protobuf's C++ parser reads."""
    try:
        return text_format.Parse(text, message)
    except RecursionError:
        log.error("Error parsing text-format %s: Message is too deep: its messages nest deeper than this server's "
                  "text parser can follow", message.DESCRIPTOR.full_name)
        raise invalid(f"Invalid protobuf file: '{source}'") from None
    except text_format.ParseError as err:
        where, _, words = str(err).partition(" : ")
        if "surrogates not allowed" in words:
            words = "String field contains invalid UTF-8 data"
        log.error("Error parsing text-format %s: %s", message.DESCRIPTOR.full_name,
                  f"{where}: {words}" if words else where)
        raise invalid(f"Invalid protobuf file: '{source}'") from None


def prometheus_path(config) -> str | None:
    """The metrics path, or None when Prometheus export is off."""
    if config is None or not config.prometheus_config.enable:
        return None
    return config.prometheus_config.path or DEFAULT_PROMETHEUS_PATH


def schedulable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: taskset, a container's cpuset), as TensorFlow's
    port::NumSchedulableCPUs and port::MaxParallelism count them for TF Serving's thread defaults; every CPU of the
    host where the platform has no affinity mask."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def size_t(value: int) -> int:
    """``value`` as C++ stores it in a size_t (TF's queue options): a negative one becomes a huge count."""
    return value % 2 ** 64


def int32(value: int) -> int:
    """An int64 ``value`` as C++ stores it in an int: its low 32 bits, signed (2^32 becomes 0, 2^31 -2^31)."""
    return (value + 2 ** 31) % 2 ** 32 - 2 ** 31


@dataclasses.dataclass(frozen=True)
class Batching:
    """Effective batching settings: the file's values, else the batcher defaults TF Serving uses."""
    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int | None = None   # None (unset): the CPUs this process may run on
    allowed_batch_sizes: tuple = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int | None = None   # read by TF Serving only with enable_large_batch_splitting

    @classmethod
    def from_proto(cls, params) -> "Batching":
        values = {}
        for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads",
                     "enable_large_batch_splitting", "max_execution_batch_size"):
            if params.HasField(name):
                values[name] = getattr(params, name).value
        # int64 fields TF Serving stores in an int: SharedBatchScheduler's num_batch_threads (CreateBatchScheduler)
        # and BatchingSessionOptions' allowed_batch_sizes (WrapSessionForBatching)
        if "num_batch_threads" in values:
            values["num_batch_threads"] = int32(values["num_batch_threads"])
        values["allowed_batch_sizes"] = tuple(int32(size) for size in params.allowed_batch_sizes)
        values["pad_variable_length_inputs"] = params.pad_variable_length_inputs
        batching = cls(**values)
        batching.validate()
        return batching

    def validate(self) -> None:
        """Raises INVALID_ARGUMENT for settings TF Serving refuses, in TF Serving 2.16's words, code and order
        (SharedBatchScheduler::Create, WrapSessionForBatching, AddQueue), and for large batch splitting, which this
        server does not do. Only the last allowed batch size is checked, as there, against max_batch_size as an int
        (WrapSessionForBatching's ``const int max_size``); a negative max_batch_size or max_enqueued_batches is
        taken as TF's size_t takes it, a count too large ever to be reached."""
        if self.num_batch_threads is not None and self.num_batch_threads < 1:
            raise invalid(f"num_batch_threads must be positive; was {self.num_batch_threads}")
        if self.allowed_batch_sizes and self.allowed_batch_sizes[-1] != int32(self.max_batch_size):
            raise invalid("Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                          f"{self.allowed_batch_sizes[-1]}; expected {int32(self.max_batch_size)}")
        if self.max_batch_size == 0:
            raise invalid("input_batch_size_limit must be positive; was 0")
        if self.batch_timeout_micros < 0:
            raise invalid(f"batch_timeout_micros must be non-negative; was {self.batch_timeout_micros}")
        if self.enable_large_batch_splitting:
            raise invalid("enable_large_batch_splitting is not supported by this server, which never splits a "
                          "request across batches: leave it out or set it false (every batch then holds at most "
                          "max_batch_size rows, and max_execution_batch_size is not used, as in TF Serving)")

    @property
    def input_batch_size_limit(self) -> int:
        """The rows of a request and of a batch: ``max_batch_size`` as TF's queue option takes it."""
        return size_t(self.max_batch_size)

    @property
    def queue_batches(self) -> int:
        """The batches a queue holds: ``max_enqueued_batches`` as TF's queue option takes it, 0 as 1
        (SharedBatchScheduler's AddQueue rewrites 0 to 1 when large batches are not split, as here: models with
        very low QPS rely on it)."""
        return size_t(self.max_enqueued_batches) or 1

    @property
    def threads(self) -> int:
        """The batch threads: ``num_batch_threads``, unset the CPUs this process may run on (SharedBatchScheduler's
        default, port::MaxParallelism)."""
        return self.num_batch_threads if self.num_batch_threads is not None else schedulable_cpus()


def load_batching_parameters(path: str) -> Batching:
    return Batching.from_proto(parse_text_proto(read_text(path), BatchingParameters(), path))
