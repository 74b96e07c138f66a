"""Test helpers shared by the serving, web client and end-to-end suites.

* :func:`build_tiny_model` - a tf.Module SavedModel with the letters model's serving signatures
  (``serving_default``, ``predict_images``, ``transform_features``), built in about a second, no training.
  Version ``v`` always ranks class ``v % 27`` first, so a test can tell which version answered.
* :func:`publish_version` - copies a (cached) tiny model into ``<base>/<v>`` the way the Pusher does
  (write to a non-integer temp name, then rename); ``broken=True`` publishes an unloadable version.
* :func:`start_server` - the embedded server on a free loopback port, in-process or as a subprocess.
* :func:`png_bytes` - a small grayscale PNG (stdlib only).

Import ``pipeline`` before this module (it fixes the Keras mode before TensorFlow loads).
"""
from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import struct
import subprocess as _subprocess
import sys
import tempfile
import threading
import time
import zlib

from core import configs
from core.labels import NUM_CLASSES

_CACHE_DIR = None
_CACHE_LOCK = threading.Lock()


def png_bytes(value: int = 128, size: int = 8, noise_seed: int | None = None) -> bytes:
    """A ``size`` x ``size`` 8-bit grayscale PNG filled with ``value`` (or noise from ``noise_seed``)."""
    if noise_seed is None:
        rows = b"".join(b"\x00" + bytes([value % 256]) * size for _ in range(size))
    else:
        import random

        rng = random.Random(noise_seed)
        rows = b"".join(b"\x00" + bytes(rng.randrange(256) for _ in range(size)) for _ in range(size))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def example_bytes(image: bytes) -> bytes:
    """A serialized tf.Example with the raw image under ``image_raw``, as the ``examples`` inputs expect."""
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    example.features.feature[configs.IMAGE_KEY].bytes_list.value.append(image)
    return example.SerializeToString()


def build_tiny_model(export_dir: str, version: int = 1, image_size: int | None = None) -> str:
    """Saves the tiny stand-in of the letters model to ``export_dir`` and returns it.

    ``transform_features`` gives ``image`` float32 [N, image_size, image_size, 1] (default: the pipeline's
    configured image size)."""
    import tensorflow as tf

    from models.export import image_outputs

    image_size = image_size or configs.Config.from_env().image_size

    favourite = version % NUM_CLASSES

    class TinyLetters(tf.Module):
        def __init__(self):
            super().__init__()
            self.bias = tf.Variable(tf.one_hot(favourite, NUM_CLASSES) * 4.0, name="bias")

        def _pixels(self, images):
            def decode(data):
                image = tf.io.decode_image(data, channels=1, expand_animations=False)
                image = tf.image.resize(tf.cast(image, tf.float32) / 255.0, [image_size, image_size])
                return tf.ensure_shape(image, [image_size, image_size, 1])

            return tf.map_fn(decode, images, fn_output_signature=tf.TensorSpec([image_size, image_size, 1]))

        def _probabilities(self, images):
            brightness = tf.reduce_mean(self._pixels(images), axis=[1, 2, 3])
            ramp = tf.range(NUM_CLASSES, dtype=tf.float32) / NUM_CLASSES
            return tf.nn.softmax(self.bias[None, :] + brightness[:, None] * ramp[None, :], axis=-1)

        def _images_of(self, examples):
            features = tf.io.parse_example(examples, {configs.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)})
            return features[configs.IMAGE_KEY]

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=configs.EXAMPLES_INPUT)])
        def serving_default(self, examples):
            return {configs.PROBABILITIES_OUTPUT: self._probabilities(self._images_of(examples))}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=configs.IMAGE_INPUT)])
        def predict_images(self, images):
            return image_outputs(self._probabilities(images))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=configs.EXAMPLES_INPUT)])
        def transform_features(self, examples):
            return {configs.TRANSFORMED_IMAGE_KEY: self._pixels(self._images_of(examples))}

    module = TinyLetters()
    signatures = {
        configs.SERVING_DEFAULT_SIGNATURE: module.serving_default,
        configs.IMAGE_SIGNATURE: module.predict_images,
        configs.TRANSFORM_SIGNATURE: module.transform_features,
    }
    tf.saved_model.save(module, export_dir, signatures=signatures)
    return export_dir


def tiny_model_dir(version: int = 1) -> str:
    """A cached tiny model for ``version`` (built once per process)."""
    global _CACHE_DIR
    with _CACHE_LOCK:
        if _CACHE_DIR is None:
            _CACHE_DIR = tempfile.mkdtemp(prefix="letters-tiny-models-")
            atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
        path = os.path.join(_CACHE_DIR, str(version))
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            build_tiny_model(path, version)
        return path


def publish_version(base_path: str, version: int, broken: bool = False, half_written: bool = False,
                    without_variables: bool = False) -> str:
    """Puts version ``version`` under ``base_path`` atomically (temp dir + rename), as the Pusher does.

    ``broken``: a saved_model.pb that is not a SavedModel. ``half_written``: variables but no saved_model.pb.
    ``without_variables``: saved_model.pb but no variables/ (a copy caught halfway).
    """
    os.makedirs(base_path, exist_ok=True)
    staging = os.path.join(base_path, f".staging-{version}-{os.getpid()}-{time.monotonic_ns()}")
    if broken or half_written:
        shutil.copytree(os.path.join(tiny_model_dir(1), "variables"), os.path.join(staging, "variables"))
        if broken:
            with open(os.path.join(staging, "saved_model.pb"), "wb") as handle:
                handle.write(b"this is not a SavedModel")
    else:
        shutil.copytree(tiny_model_dir(version), staging)
        if without_variables:
            shutil.rmtree(os.path.join(staging, "variables"))
    target = os.path.join(base_path, str(version))
    os.rename(staging, target)
    return target


def stand_in_version(folder, graphs: str = "saved_model.pb", content: bytes = b"") -> str:
    """A version folder ``folder`` as a serving dir's listing takes it (core.model_dirs.loadable_versions), no
    model in it: its graphs file ``graphs`` (saved_model.pb or .pbtxt) holding ``content``, and an empty
    variables/variables.index; returns the folder."""
    os.makedirs(os.path.join(folder, "variables"), exist_ok=True)
    with open(os.path.join(folder, graphs), "wb") as handle:
        handle.write(content)
    open(os.path.join(folder, "variables", "variables.index"), "wb").close()
    return str(folder)


def store_as_text(version_dir: str) -> str:
    """Rewrites a version folder's saved_model.pb as saved_model.pbtxt, the text form TensorFlow also loads, and
    removes the .pb; returns the .pbtxt's path."""
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    binary = os.path.join(version_dir, "saved_model.pb")
    with open(binary, "rb") as handle:
        saved_model = saved_model_pb2.SavedModel.FromString(handle.read())
    text = os.path.join(version_dir, "saved_model.pbtxt")
    with open(text, "w") as handle:
        handle.write(text_format.MessageToString(saved_model))
    os.remove(binary)
    return text


TINY_MODEL_NOTE = "the tiny test model (its per-image cost is far below the real network's: a worst case for the ratio)"


def pushed_or_stand_in(model_base_path, prefix: str, build=None,
                       description: str = TINY_MODEL_NOTE) -> tuple[str, dict, str]:
    """For benchmarks: the versions pushed under ``model_base_path`` as ``(base, {version: path}, "")``, or, when
    there are none, version 1 built by ``build(path)`` (default: the tiny test model) in a new temporary base,
    with a note naming ``description``; that base is removed when the process exits."""
    from serving import versions

    base = os.path.abspath(model_base_path)
    found = versions.list_versions(base, configs.MODEL_NAME) if os.path.isdir(base) else None
    if found:
        return base, found, ""
    stand_in = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, stand_in, ignore_errors=True)   # also after Ctrl-C (or SIGTERM made one)
    base = os.path.join(stand_in, configs.MODEL_NAME)
    if build is None:
        publish_version(base, 1)
    else:
        build(os.path.join(base, "1"))
    return (base, {1: os.path.join(base, "1")},
            f"NOTE: no pushed model under {model_base_path}; using {description} in {base}.")


def labelled_config_text(base_path, labels: dict[str, int], num_versions: int = 2,
                         model_name: str = configs.MODEL_NAME) -> str:
    """A text ModelServerConfig serving the newest ``num_versions`` of one model, with version labels."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(name=model_name, base_path=os.fspath(base_path),
                                                model_platform="tensorflow")
    model.model_version_policy.latest.num_versions = num_versions
    for label, version in labels.items():
        model.version_labels[label] = version
    return text_format.MessageToString(config)


def b64(data: bytes) -> dict:
    """``{"b64": ...}``: how REST requests carry bytes (images, serialized tf.Examples)."""
    import base64

    return {"b64": base64.b64encode(data).decode("ascii")}


class RestClient:
    """Raw HTTP against a server URL, for tests: ``request`` -> (status, headers, body bytes);
    ``get``/``post`` decode a JSON body (None when empty)."""

    def __init__(self, url: str, timeout: float = 60.0):
        from serving.client import RestConnection

        # no pooled connections: each request on a new one, as a test that looks at one exchange wants
        self.connection = RestConnection(url, timeout=timeout, max_idle=0)

    def request(self, method: str, path: str, body=None, headers=None):
        import json

        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode("utf-8")
        return self.connection.exchange(method, path, body, headers)

    def get(self, path: str):
        import json

        status, _, raw = self.request("GET", path)
        return status, (json.loads(raw) if raw else None)

    def post(self, path: str, body):
        import json

        status, _, raw = self.request("POST", path, body)
        return status, (json.loads(raw) if raw else None)


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class RunningServer:
    """A started server: ``.url``, ``.port``, ``.stop()``; a context manager."""

    def __init__(self, url: str, port: int, server=None, process=None, log_path=None):
        self.url = url
        self.port = port
        self.server = server          # serving.server.Server when in-process
        self.process = process        # subprocess.Popen when a subprocess
        self.log_path = log_path      # a subprocess's stderr; read and removed by stop()
        self._stopped_log = None

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stops gracefully (SIGTERM for a subprocess); returns the subprocess's exit code. A subprocess's log file
        is removed, its text still given by :meth:`log`."""
        if self.server is not None:
            self.server.stop()
            return None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except _subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self._stopped_log is None:
            self._stopped_log = self.log()
            _remove(self.log_path)
        return self.process.returncode if self.process is not None else None

    def log(self) -> str:
        if self._stopped_log is not None:
            return self._stopped_log
        if self.log_path and os.path.exists(self.log_path):
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        return ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_server(model_base_path: str | None = None, model_name: str = "letters", *, subprocess: bool = False,
                 host: str = "127.0.0.1", port: int = 0, grpc_port: int = 0, startup_timeout: float = 180.0,
                 **flags) -> RunningServer:
    """Starts the embedded server on a free loopback port once its models are loaded.

    ``flags`` are any other ``python -m serving`` flags by name (e.g. ``enable_batching=True``,
    ``model_config_file=...``, ``monitoring_config_file=...``, ``file_system_poll_wait_seconds=0.2``);
    ``grpc_port`` is ``--port`` (0: gRPC off). With ``subprocess`` they are flags, read as TF Serving reads them: a
    poll interval is then whole seconds.
    """
    flags.setdefault("file_system_poll_wait_seconds", 1)
    values = dict(flags, rest_api_host=host, rest_api_port=port, port=grpc_port)
    if model_base_path is not None:
        values.update(model_base_path=os.fspath(model_base_path), model_name=model_name)
    if not subprocess:
        from serving.config import ServerOptions
        from serving.server import Server

        server = Server(ServerOptions(**values))
        try:
            server.start()
        except BaseException:
            server.stop()
            raise
        return RunningServer(server.url, server.port, server=server)

    argv = [sys.executable, "-m", "serving"]
    for key, value in values.items():
        argv.append(f"--{key}={str(value).lower() if isinstance(value, bool) else value}")
    log_file = tempfile.NamedTemporaryFile(prefix="serving-", suffix=".log", delete=False)
    process = _subprocess.Popen(argv, stdout=_subprocess.PIPE, stderr=log_file, text=True,
                                cwd=str(configs.PROJECT_ROOT))
    log_file.close()
    found, printed = {}, []

    def read_stdout():
        for line in process.stdout:
            printed.append(line)   # main.cc's Failed to start server line is on stdout
            if "Exporting HTTP/REST API at:" in line and "port" not in found:
                found["port"] = int(line.split("at:", 1)[1].split()[0].rsplit(":", 1)[1])

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    deadline = time.monotonic() + startup_timeout
    try:   # killed if it does not start, or the wait is stopped (Ctrl-C; SIGTERM under sigterm_as_interrupt)
        while "port" not in found:
            if process.poll() is not None or time.monotonic() > deadline:
                if process.poll() is None:
                    process.kill()
                    process.wait()
                with open(log_file.name, encoding="utf-8", errors="replace") as handle:
                    tail = handle.read()[-4000:]
                reader.join(5)
                raise RuntimeError(f"serving subprocess did not start (exit {process.returncode}; its log kept: "
                                   f"{log_file.name}):\n{tail}{''.join(printed)[-4000:]}")
            time.sleep(0.05)
    except KeyboardInterrupt:
        process.kill()
        process.wait()
        _remove(log_file.name)
        raise
    url_host = f"[{host}]" if ":" in host else host
    return RunningServer(f"http://{url_host}:{found['port']}", found["port"], process=process,
                         log_path=log_file.name)


def _remove(path: str | None) -> None:
    if path:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def save_scorer(path: str) -> None:
    """A model whose signatures have the shapes classify and regress expect: ``serving_default`` classifies
    (classes yes/no, scores x and 1 - x), ``regress_x`` regresses (2x, plus 10 when ``tag`` is "bonus")."""
    import tensorflow as tf

    class Scorer(tf.Module):
        def _x(self, inputs):
            return tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([], tf.float32),
                                                "tag": tf.io.FixedLenFeature([], tf.string, default_value="")})

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def classify(self, inputs):
            x = self._x(inputs)["x"]
            classes = tf.tile(tf.constant([["yes", "no"]]), [tf.shape(x)[0], 1])
            return {"classes": classes, "scores": tf.stack([x, 1.0 - x], axis=1)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress(self, inputs):
            features = self._x(inputs)
            return {"outputs": features["x"] * 2.0 + tf.where(features["tag"] == "bonus", 10.0, 0.0)}

    module = Scorer()
    tf.saved_model.save(module, path, signatures={"serving_default": module.classify, "regress_x": module.regress})


def save_gate(path: str) -> None:
    """A model whose run lasts until the test lets it go: ``serving_default`` (input ``folder``, one string) writes
    ``<folder>/started``, then runs until ``<folder>/release`` exists, and answers ``released`` [True]."""
    import tensorflow as tf

    class Gate(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="folder")])
        def wait(self, folder):
            with tf.control_dependencies([tf.io.write_file(folder[0] + "/started", "")]):
                released = tf.identity(False)
            released, = tf.while_loop(lambda done: tf.logical_not(done),
                                      lambda done: (tf.size(tf.io.matching_files(folder[0] + "/release")) > 0,),
                                      (released,))
            return {"released": tf.reshape(released, [1])}

    module = Gate()
    tf.saved_model.save(module, path, signatures={"serving_default": module.wait})


def save_shapes(path: str) -> None:
    """A model whose outputs have the shapes a batch does not: ``echo_s`` (input ``x``, strings of any shape)
    answers it as ``y`` and ``y_bytes``; ``onlyscal`` (input ``x``, [None] floats) answers only the scalar sum
    ``total``; ``scal`` answers ``total`` and ``y``, ``x`` as it came."""
    import tensorflow as tf

    class Shapes(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec(None, tf.string, name="x")])
        def echo(self, x):
            return {"y": tf.identity(x), "y_bytes": tf.identity(x)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def total(self, x):
            return {"total": tf.reduce_sum(x)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def total_and_rows(self, x):
            return {"total": tf.reduce_sum(x), "y": tf.identity(x)}

    module = Shapes()
    tf.saved_model.save(module, path, signatures={"echo_s": module.echo, "onlyscal": module.total,
                                                  "scal": module.total_and_rows})


def start_grpc_server(**flags) -> RunningServer:
    """The embedded server in-process with gRPC on a free loopback port too (``.server.grpc_port``)."""
    return start_server(grpc_port=free_port(), **flags)


def wait_for(predicate, timeout=60.0, interval=0.05):
    """``predicate()``'s first true value within ``timeout`` seconds; AssertionError after."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def statuses(client, name="letters"):
    """GET /v1/models/<name> by version: (state, error_code, error_message); {} when not 200."""
    status, body = client.get(f"/v1/models/{name}")
    if status != 200:
        return {}
    return {int(v["version"]): (v["state"], v["status"]["error_code"], v["status"]["error_message"])
            for v in body["model_version_status"]}
