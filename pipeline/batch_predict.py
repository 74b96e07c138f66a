"""Batch predictions over a folder of images, into a CSV.

    letters-batch-predict --images DIR --out predictions.csv                 # in-process SavedModel
    letters-batch-predict --images DIR --out p.csv --via rest --server-url http://127.0.0.1:8501
    letters-batch-predict --images DIR --out p.csv --via grpc --server-url 127.0.0.1:8500

Every image file under ``--images`` (recursively) gets a row: path, the top-3 classes with their letters and
probabilities, and the model version that answered. Unreadable files get a row with the reason instead
(nothing is silently dropped). ``--via local`` loads the SavedModel (``--model``: a serving directory, whose
highest version is used, or a version directory); ``--via rest`` sends the same bytes to a TF Serving REST
endpoint (real or embedded) and records the version it reports; ``--via grpc`` does the same through TF Serving's
gRPC PredictionService. All give the same answers.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import os
import sys
import time
import uuid
import urllib.parse
from pathlib import Path

import numpy as np
from tqdm import tqdm

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)
from core import configs, image_io
from core.files import printable
from core.signals import sigterm_as_interrupt
from pipeline.evaluate import ImageRefused, answers_each
from pipeline.flags import defaults_from_env, non_negative_int, output_file, positive_int
from core.labels import CLASS_NAMES, GLYPHS
from serving.client import RestConnection, ServingUnavailable, error_text, version_states

TOP_K = 3
COLUMNS = (["path", "model_version"] + [f"{kind}_{i}" for i in range(1, TOP_K + 1)
                                         for kind in ("class", "letter", "probability")] + ["error"])


class LocalPredictor:
    def __init__(self, model: str):
        from core.model_dirs import resolve_model_dir
        from pipeline.evaluate import load_image_signature, signature_call
        self.model_dir = resolve_model_dir(model)
        self.version = Path(self.model_dir).name
        self._call = signature_call(load_image_signature(self.model_dir))

    def __call__(self, images: list[bytes]) -> tuple[np.ndarray, str]:
        return self._call(images), self.version


class RestPredictor:
    """Calls ``POST {url}/v1/models/{name}[/versions/N]:predict`` with the image signature, b64 instances."""

    def __init__(self, server_url: str, model_name: str = configs.MODEL_NAME, version: str | None = None,
                 timeout: float = 60.0):
        self.connection = RestConnection(server_url, timeout=timeout)   # ValueError for a URL that is not http(s)
        self.model_path = "/v1/models/" + urllib.parse.quote(model_name, safe="")
        self.version = version or self._latest_available()
        # A 400 to a prediction is taken for an image the server's decoder refused: a model without the image
        # signature (also a 400 over REST) is found here instead, before any image is sent.
        signatures = self._request(f"{self.model_path}/versions/{self.version}/metadata").get("metadata", {}).get(
            "signature_def", {}).get("signature_def", {})
        if configs.IMAGE_SIGNATURE not in signatures:
            raise RuntimeError(f"{self.connection.base_url}{self.model_path} version {self.version} has no "
                               f"{configs.IMAGE_SIGNATURE!r} signature (it has {', '.join(sorted(signatures)) or 'none'})")

    def _request(self, path: str, body: dict | None = None) -> dict:
        url = self.connection.base_url + path
        try:
            status, answer = self.connection.request("POST" if body is not None else "GET", path, body)
        except ServingUnavailable as err:
            raise RuntimeError(f"the model server cannot be reached: {err.message}") from None
        if status == 400 and body is not None:   # the server's decoder refused an image of the request
            raise ImageRefused(error_text(answer) or str(answer))
        if status != 200:
            raise RuntimeError(f"{url}: HTTP {status}: {error_text(answer) or answer}")
        return answer

    def _latest_available(self) -> str:
        states = version_states(self._request(self.model_path))
        available = [int(version) for version, state in states.items() if state == "AVAILABLE"]
        if not available:
            raise RuntimeError(f"{self.connection.base_url}{self.model_path}: no AVAILABLE version")
        return str(max(available))

    def __call__(self, images: list[bytes]) -> tuple[np.ndarray, str]:
        body = {"signature_name": configs.IMAGE_SIGNATURE,
                "instances": [{configs.IMAGE_INPUT: {"b64": base64.b64encode(i).decode()}} for i in images]}
        # Pin the version so every row names the version that really answered.
        out = self._request(f"{self.model_path}/versions/{self.version}:predict", body)
        preds = out["predictions"]
        probs = [p[configs.PROBABILITIES_OUTPUT] if isinstance(p, dict) else p for p in preds]
        return np.asarray(probs, dtype=np.float32), self.version


class GrpcPredictor:
    """Calls ``PredictionService.Predict`` on the image signature (the version pinned, as ``RestPredictor``)."""

    def __init__(self, target: str, model_name: str = configs.MODEL_NAME, version: str | None = None,
                 timeout: float = 60.0):
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self._grpc, self.target, self.model_name, self.timeout = grpc, target, model_name, timeout
        channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 2 ** 31 - 1),
                                                         ("grpc.max_send_message_length", 2 ** 31 - 1)])
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(channel)
        self.version = version or self._latest_available()

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except self._grpc.RpcError as err:
            if err.code() == self._grpc.StatusCode.INVALID_ARGUMENT and method is self._predictions.Predict:
                raise ImageRefused(err.details()) from None
            raise RuntimeError(f"{self.target}: {err.code().name}: {err.details()}") from None

    def _latest_available(self) -> str:
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model_name
        status = self._call(self._models.GetModelStatus, request).model_version_status
        available = [s.version for s in status if s.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE]
        if not available:
            raise RuntimeError(f"{self.target}: model {self.model_name}: no AVAILABLE version")
        return str(max(available))

    def __call__(self, images: list[bytes]) -> tuple[np.ndarray, str]:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest(output_filter=[configs.PROBABILITIES_OUTPUT])
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = configs.IMAGE_SIGNATURE
        request.model_spec.version.value = int(self.version)
        request.inputs[configs.IMAGE_INPUT].CopyFrom(tf.make_tensor_proto(images))
        out = self._call(self._predictions.Predict, request)
        return tf.make_ndarray(out.outputs[configs.PROBABILITIES_OUTPUT]).astype(np.float32), self.version


def list_images(folder: str) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    # Everything but folders: a broken link or a pipe gets an error row rather than going unmentioned. Not the
    # generator's manifest beside generated class folders (as the ExampleGen leaves it).
    return sorted(p for p in root.rglob("*") if not p.is_dir() and not p.name.startswith(".")
                  and p != root / configs.GENERATED_MANIFEST)


def _row(rel: str, version: str, probs: np.ndarray | None, error: str = "") -> dict:
    row = {"path": rel, "model_version": version, "error": error}
    if probs is not None:
        for rank, idx in enumerate(np.argsort(-probs)[:TOP_K], start=1):
            row[f"class_{rank}"] = CLASS_NAMES[idx]
            row[f"letter_{rank}"] = GLYPHS[idx]
            row[f"probability_{rank}"] = f"{float(probs[idx]):.6f}"
    return row


def predict_folder(predictor, folder: str, out_csv: str, batch_size: int = 64, progress: bool = True,
                   files: list[Path] | None = None) -> dict:
    """Writes ``out_csv`` (complete, or not at all: rows go to a ``.partial`` file renamed at the end).
    ``files``: ``list_images(folder)`` when the caller has it already."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    files = list_images(folder) if files is None else files
    root = Path(folder)
    counts = {"images": 0, "errors": 0}
    started = time.monotonic()
    out = os.path.abspath(out_csv)   # a temporary file of this run's own: two runs on one --out do not mix rows
    tmp = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with open(tmp, "x", newline="", encoding="utf-8") as f:   # created as any file is (umask), not 0600
            _write_rows(predictor, files, root, f, batch_size, progress, counts)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    counts["seconds"] = round(time.monotonic() - started, 2)
    return counts


def _write_rows(predictor, files: list[Path], root: Path, f, batch_size: int, progress: bool, counts: dict) -> None:
    """One row per file, in the order of ``files`` (an unreadable one's reason in its place)."""
    with tqdm(total=len(files), desc="predict", unit="file", disable=not progress, file=sys.stderr) as bar:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for start in range(0, len(files), batch_size):
            rows, batch, places = [], [], []
            for path in files[start:start + batch_size]:
                rel = printable(path.relative_to(root).as_posix())   # a name that is not UTF-8 shown, not fatal
                try:
                    batch.append(image_io.read_checked(str(path)).data)
                    places.append(len(rows))
                    rows.append(rel)
                except (image_io.ImageRejected, OSError) as err:
                    rows.append(_row(rel, "", None, str(err)))
                    counts["errors"] += 1
            if batch:
                for place, (answer, why) in zip(places, answers_each(_each(predictor), batch)):
                    if why is None:
                        rows[place] = _row(rows[place], answer[1], answer[0])
                        counts["images"] += 1
                    else:
                        rows[place] = _row(rows[place], "", None, why)
                        counts["errors"] += 1
            writer.writerows(rows)
            bar.update(len(files[start:start + batch_size]))


def _each(predictor):
    """``predictor`` as answers_each calls it: one (probabilities, version) per image."""
    def call(images: list[bytes]) -> list:
        probs, version = predictor(images)
        return [(p, version) for p in probs]
    return call


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", required=True, help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, type=output_file, help="CSV file to write")
    p.add_argument("--via", choices=("local", "rest", "grpc"), default="local")
    p.add_argument("--model", default=defaults_from_env().serving_dir,
                   help="--via local: serving directory or version directory (default: %(default)s)")
    p.add_argument("--server-url", default=None, help="--via rest: TF Serving REST address (default: "
                   "http://127.0.0.1:8501); --via grpc: host:port (default: 127.0.0.1:8500)")
    p.add_argument("--model-name", default=configs.MODEL_NAME, help="--via rest/grpc: model name")
    p.add_argument("--version", type=non_negative_int, default=None,
                   help="--via rest/grpc: a version (default: the latest AVAILABLE)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    args = p.parse_args(argv)
    version = None if args.version is None else str(args.version)
    try:
        files = list_images(args.images)
        if not files:   # before the model loads
            raise FileNotFoundError(f"no files under {args.images}")
        if args.via == "local":
            predictor = LocalPredictor(args.model)
        elif args.via == "rest":
            predictor = RestPredictor(args.server_url or "http://127.0.0.1:8501", args.model_name, version)
        else:
            predictor = GrpcPredictor(args.server_url or "127.0.0.1:8500", args.model_name, version)
        with sigterm_as_interrupt():   # a stopped job (timeout, kill) cleans up as Ctrl-C does
            counts = predict_folder(predictor, args.images, args.out, args.batch_size, files=files)
    except KeyboardInterrupt:
        print(f"interrupted: {args.out} not written (left as it was)", file=sys.stderr)
        return 130
    except (FileNotFoundError, RuntimeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:   # the output cannot be written (permissions, a name too long, a full disk)
        print(f"error: cannot write {args.out}: {err.strerror or err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {counts['images']} images predicted by version {predictor.version}, "
          f"{counts['errors']} unreadable or refused, in {counts['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
