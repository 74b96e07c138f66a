"""Batch predictions over a folder of images, into a CSV.

    letters-batch-predict --images DIR --out predictions.csv                 # in-process SavedModel
    letters-batch-predict --images DIR --out p.csv --via rest --server-url http://127.0.0.1:8501
    letters-batch-predict --images DIR --out p.csv --via grpc --server-url 127.0.0.1:8500

Every image file under ``--images`` (recursively, into folders reached through symbolic links too, each real
folder once) gets a row: path, the top-3 classes with their letters and probabilities, and the model version that
answered. Unreadable files, and folders that cannot be listed, get a row with the reason instead (nothing is
silently dropped). ``--via local`` loads
the SavedModel (``--model``: a serving directory, whose ``--version`` or else highest version is used, or a
version directory); ``--via rest`` sends the images to a TF Serving REST endpoint (real or embedded) and
records the version it reports (a newer one once the server stops serving the one pinned at the start; a
server away mid-run is waited for, up to ``RECONNECT_SECONDS``; one that does not answer a request within its
timeout, 60 s, ends the run); ``--via grpc`` does the same through TF Serving's gRPC PredictionService. All give
the same answers: each reads an image as ``letters-evaluate``, the pipeline's ExampleGen and the web client read
it (``core.image_io.read_checked``), so the model gets it as a viewer shows it (an EXIF orientation turned upright,
a transparent GIF's background as alpha, the other images ``tf.io.decode_image`` reads otherwise re-encoded; most
files go as they are), which a direct REST or gRPC call with such a file's raw bytes does not. A flag the
``--via`` does not read is a usage error: ``--server-url`` or ``--model-name`` with ``--via local`` (also the
default), ``--model`` with ``--via rest`` or ``grpc``. A batch (``--batch-size`` images)
goes to a server in requests of at most ``REQUEST_BUDGET`` bytes (32 MiB: half the embedded server's default bound
on a request), as many as it needs, and of at most the images a server's batching takes (its max_batch_size, learnt
from its refusal of more, said once). ``--out`` is replaced whole at the end, as ``core.files.atomic_write``
replaces a file (a link to it keeps pointing there, the file keeps its permissions); a stop leaves it as it was.
This tool's CSVs under ``--images`` are no input: an earlier run's CSV there, under any name (known by its
header), gets no row; an ``--out`` naming any other file there is a usage error rather than replacing it.
"""
from __future__ import annotations

import argparse
import base64
import csv
import os
import re
import sys
import time
import urllib.parse
from pathlib import Path

import numpy as np
from tqdm import tqdm

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)
from core import configs, image_io, settings
from core.files import atomic_output, cannot_read, printable
from core.signals import sigterm_as_interrupt
from pipeline.evaluate import (DEFAULT_LIMITS, ImageRefused, Limits, answers_each, read_batches, top_classes,
                               unread_reason)
from pipeline.flags import (defaults_from_env, non_negative_int, output_file, path_or_default, positive_int,
                            refuse_ignored)
from core.labels import CLASS_NAMES, GLYPHS
from serving.client import RestConnection, ServingUnavailable, error_text, version_states

TOP_K = 3
COLUMNS = (["path", "model_version"] + [f"{kind}_{i}" for i in range(1, TOP_K + 1)
                                         for kind in ("class", "letter", "probability")] + ["error"])
# One request to a model server stays within this many bytes: half the bound the server puts on one (the embedded
# server's --max_request_bytes, which bounds its gRPC messages too: 64 MiB by default), the rest headroom for the
# JSON around the images. A batch is sent in as many requests as it needs.
REQUEST_BUDGET = configs.DEFAULT_MAX_REQUEST_BYTES // 2
JSON_PER_IMAGE = 64   # {"images": {"b64": "..."}} and the comma between instances
# TF Serving's words (shared_batch_scheduler.h; serving/batching.py) for a request of more images than its batching's
# max_batch_size: INVALID_ARGUMENT, HTTP 400, as for an image its decoder refuses.
BATCH_LIMIT = re.compile(r"Task size (\d+) is larger than maximum input batch size (\d+)")


class BatchTooLarge(Exception):
    """The model server refused a request of more images than its batching takes: ``limit``, the most it takes."""

    def __init__(self, limit: int, message: str):
        super().__init__(message)
        self.limit = limit


def refusal(message: str) -> Exception:
    """What a model server's INVALID_ARGUMENT to a prediction is: :class:`BatchTooLarge` when its message names its
    batching's limit, else :class:`ImageRefused` (an image its decoder refused)."""
    found = BATCH_LIMIT.search(message)
    return BatchTooLarge(int(found.group(2)), message) if found else ImageRefused(message)


def request_size(length: int) -> int:
    """What an image of ``length`` bytes adds to a request: its base64 (4 bytes for each 3) and the JSON around it
    (more than the few bytes that frame it in a gRPC tensor)."""
    return 4 * ((length + 2) // 3) + JSON_PER_IMAGE   # one image of the file limit (20 MiB) fits the budget alone


def in_requests(images: list[bytes], budget: int | None, most: int | None = None) -> list[list[bytes]]:
    """``images``, in order, in runs of at most ``budget`` bytes of request each (``request_size``) and at most
    ``most`` images; without either, one run."""
    runs, size = [], 0
    for image in images:
        cost = 0 if budget is None else request_size(len(image))
        if not runs or (budget is not None and size + cost > budget) or len(runs[-1]) == most:
            runs.append([])
            size = 0
        runs[-1].append(image)
        size += cost
    return runs


class LocalPredictor:
    """The SavedModel in process: ``model`` a version directory, or a serving directory whose ``version`` (default:
    the highest) is used (FileNotFoundError naming its versions if it has no such one; ValueError naming ``model``
    if it cannot be read or loaded)."""
    request_budget = None   # no request: a batch is one call

    def __init__(self, model: str, version: str | None = None):
        from core.model_dirs import version_number
        from pipeline.evaluate import load_image_signature, model_folder, signature_call
        self.model_dir = model_folder(model, None if version is None else int(version))
        name = Path(os.path.abspath(self.model_dir)).name   # "." (run inside a version folder) has no name
        number = version_number(name)   # the folder 005 is version 5, as a server reads it
        self.version = name if number is None else str(number)   # a folder not named for a version: its name
        self._call = signature_call(load_image_signature(self.model_dir))

    def __call__(self, images: list[bytes]) -> tuple[np.ndarray, str]:
        return self._call(images), self.version


class ServerAway(RuntimeError):
    """The model server cannot answer just now (unreachable, UNAVAILABLE). One reached that does not answer within
    the timeout is no such thing: the run ends (a RuntimeError), its request not sent again."""


class VersionGone(RuntimeError):
    """The model server does not serve the version asked for (404, NOT_FOUND: ``Servable not found for request``)."""


RECONNECT_SECONDS = 30.0   # how long a run waits for a model server that went away (a restart) before it fails
# A gRPC channel whose server went away tries to connect again after pauses growing from 1 s to 2 min, and calls
# meanwhile fail at once ("Connection refused", said again): a server back within the wait above had not been
# reached. With these options it tries again every second at most, so each call asking again reaches it.
RECONNECT_AT_ONCE = (("grpc.initial_reconnect_backoff_ms", 1000), ("grpc.max_reconnect_backoff_ms", 1000))


class ServerPredictor:
    """What ``RestPredictor`` and ``GrpcPredictor`` share. The version is pinned, so every row names the version
    that really answered: the one asked for, or the latest AVAILABLE at the start. When the server stops serving it
    (a newer version pushed: the default policy serves the latest only), the latest it serves then is pinned, said
    once; a version asked for is not replaced. A server that cannot answer (a restart) is asked again, with pauses
    growing from 0.5 s to 5 s, for up to ``reconnect_seconds``, said when the wait begins."""
    max_images = None   # the most images a request the server takes (its batching's limit), once it said so
    reconnect_seconds = RECONNECT_SECONDS

    def __init__(self, version: str | None):
        self.asked = version
        self._pin(version or self._latest_available())

    def _pin(self, version: str) -> None:
        """Pins ``version`` once the server says it serves it with the image signature (its model metadata): a
        version it does not serve is its NOT_FOUND (VersionGone), and a model without the image signature an
        error, both before any image is sent (an INVALID_ARGUMENT to a prediction is taken for an image the
        server's decoder refused)."""
        signatures = self._signatures(version)
        if configs.IMAGE_SIGNATURE not in signatures:
            raise RuntimeError(f"{self.where} version {version} has no {configs.IMAGE_SIGNATURE!r} signature "
                               f"(it has {', '.join(sorted(signatures)) or 'none'})")
        self.version = version

    def _latest_available(self) -> str:
        available = self._available()
        if not available:
            raise RuntimeError(f"{self.where}: no AVAILABLE version")
        return str(max(available))

    def _repin(self) -> bool:
        """Pins the version the server serves now, once it has stopped serving the pinned one; False when there is
        no other (the server loading, or the pinned version AVAILABLE again)."""
        try:
            available = self._available()
        except VersionGone:   # the model itself not (yet) served
            return False
        if not available or int(self.version) in available:
            return False
        if self.asked is not None:
            raise RuntimeError(f"{self.where}: version {self.asked} is no longer served (the server serves "
                               f"{', '.join(map(str, sorted(available)))})")
        gone = self.version
        self._pin(str(max(available)))
        tqdm.write(f"version {gone} is no longer served by {self.where}: going on with version {self.version} "
                   "(each row names the version that answered it)", file=sys.stderr)
        return True

    def __call__(self, images: list[bytes]) -> tuple[np.ndarray, str]:
        deadline, pause = None, 0.5
        while True:
            try:
                try:
                    probs = self._predict(images)
                    if deadline is not None:
                        tqdm.write(f"{self.where} answers again", file=sys.stderr)
                    return probs, self.version
                except VersionGone as err:
                    if self._repin():
                        continue
                    raise ServerAway(str(err)) from None   # waited for, as a server away
            except ServerAway as err:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.reconnect_seconds
                    tqdm.write(f"{err}: asking again for up to {self.reconnect_seconds:g} s", file=sys.stderr)
                if now >= deadline:
                    raise RuntimeError(f"{err} (asked again for {self.reconnect_seconds:g} s)") from None
                time.sleep(min(pause, deadline - now))
                pause = min(2 * pause, 5.0)


class RestPredictor(ServerPredictor):
    """Calls ``POST {url}/v1/models/{name}/versions/N:predict`` with the image signature, b64 instances, in
    requests of at most ``request_bytes`` each."""

    def __init__(self, server_url: str, model_name: str = configs.MODEL_NAME, version: str | None = None,
                 timeout: float = 60.0, request_bytes: int = REQUEST_BUDGET):
        self.request_budget = request_bytes
        self.connection = RestConnection(server_url, timeout=timeout)   # ValueError for a URL that is not http(s)
        self.model_path = "/v1/models/" + urllib.parse.quote(model_name, safe="")
        self.where = self.connection.base_url + self.model_path
        super().__init__(version)

    def _signatures(self, version: str) -> list[str]:
        """The signatures of ``version``'s model, from its metadata (``GET .../versions/N/metadata``)."""
        return list(self._request(f"{self.model_path}/versions/{version}/metadata").get("metadata", {}).get(
            "signature_def", {}).get("signature_def", {}))

    def _request(self, path: str, body: dict | None = None) -> dict:
        url = self.connection.base_url + path
        try:
            status, answer = self.connection.request("POST" if body is not None else "GET", path, body)
        except ServingUnavailable as err:
            if err.reason == "serving_timeout":   # reached, but no answer in time: not away, and not asked again
                raise RuntimeError(err.message) from None
            raise ServerAway(f"the model server cannot be reached: {err.message}") from None
        if status == 400 and body is not None:   # an image its decoder refused, or a batch over its batching's limit
            raise refusal(error_text(answer) or str(answer))
        if status == 413:   # a server whose bound on a request is below this tool's (a batch's requests' size)
            raise RuntimeError(f"{url}: HTTP 413: the model server refused a request of up to {self.request_budget} "
                               f"bytes as too large: {error_text(answer) or answer}")
        if status in (404, 503):
            raise (VersionGone if status == 404 else ServerAway)(f"{url}: HTTP {status}: {error_text(answer) or answer}")
        if status != 200:
            raise RuntimeError(f"{url}: HTTP {status}: {error_text(answer) or answer}")
        return answer

    def _available(self) -> list[int]:
        states = version_states(self._request(self.model_path))
        return [int(version) for version, state in states.items() if state == "AVAILABLE"]

    def _predict(self, images: list[bytes]) -> np.ndarray:
        body = {"signature_name": configs.IMAGE_SIGNATURE,
                "instances": [{configs.IMAGE_INPUT: {"b64": base64.b64encode(i).decode()}} for i in images]}
        out = self._request(f"{self.model_path}/versions/{self.version}:predict", body)
        preds = out["predictions"]
        probs = [p[configs.PROBABILITIES_OUTPUT] if isinstance(p, dict) else p for p in preds]
        return np.asarray(probs, dtype=np.float32)


class GrpcPredictor(ServerPredictor):
    """Calls ``PredictionService.Predict`` on the image signature (the version pinned and the requests' size bounded,
    as ``RestPredictor``)."""

    def __init__(self, target: str, model_name: str = configs.MODEL_NAME, version: str | None = None,
                 timeout: float = 60.0, request_bytes: int = REQUEST_BUDGET):
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self.request_budget = request_bytes
        self._grpc, self.target, self.model_name, self.timeout = grpc, target, model_name, timeout
        self.where = f"{target}: model {model_name}"
        channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 2 ** 31 - 1),
                                                         ("grpc.max_send_message_length", 2 ** 31 - 1),
                                                         *RECONNECT_AT_ONCE])
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(channel)
        super().__init__(version)

    def _signatures(self, version: str) -> list[str]:
        """The signatures of ``version``'s model, from its metadata (``PredictionService.GetModelMetadata``)."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = self.model_name
        request.model_spec.version.value = int(version)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        self._call(self._predictions.GetModelMetadata, request).metadata["signature_def"].Unpack(signatures)
        return list(signatures.signature_def)

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except self._grpc.RpcError as err:
            code = err.code()
            if code == self._grpc.StatusCode.INVALID_ARGUMENT and method is self._predictions.Predict:
                raise refusal(err.details()) from None
            if code == self._grpc.StatusCode.DEADLINE_EXCEEDED:   # as RestPredictor's timeout: not asked again
                raise RuntimeError(f"{self.target} did not answer within {self.timeout:g} s") from None
            kind = {self._grpc.StatusCode.NOT_FOUND: VersionGone,
                    self._grpc.StatusCode.UNAVAILABLE: ServerAway}.get(code, RuntimeError)
            raise kind(f"{self.target}: {code.name}: {err.details()}") from None

    def _available(self) -> list[int]:
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model_name
        status = self._call(self._models.GetModelStatus, request).model_version_status
        return [s.version for s in status if s.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE]

    def _predict(self, images: list[bytes]) -> np.ndarray:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest(output_filter=[configs.PROBABILITIES_OUTPUT])
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = configs.IMAGE_SIGNATURE
        request.model_spec.version.value = int(self.version)
        request.inputs[configs.IMAGE_INPUT].CopyFrom(tf.make_tensor_proto(images))
        out = self._call(self._predictions.Predict, request)
        return tf.make_ndarray(out.outputs[configs.PROBABILITIES_OUTPUT]).astype(np.float32)


def list_images(folder: str) -> list[Path]:
    """:func:`walk_images`' files."""
    return walk_images(folder)[0]


def walk_images(folder: str) -> tuple[list[Path], list[Path], dict[Path, OSError]]:
    """(every file under ``folder``, sorted, each to get a row; the hidden names left out; {folder: why} of the
    folders under it that cannot be listed, which are among the files, to get a row with the reason). Folders
    reached through symbolic links are walked too (pathlib's rglob does not enter them), each real folder once: a
    link back to a folder above, or a second link to a folder walked already, adds nothing. Everything but folders: a
    broken link, a link to itself or a pipe gets an error row rather than going unmentioned. Hidden names (a
    file or a folder whose name starts with a dot: ``.DS_Store``, ``.git``), as the ExampleGen leaves them, are
    left out and returned apart, so they are counted; so is the generator's manifest beside generated class
    folders, without a count. ``folder`` itself unreadable is a ValueError (``cannot read <folder>: <reason>``)."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{printable(folder)} is not a folder")
    found, hidden, unreadable, walked, pending = [], [], {}, set(), [root]
    while pending:   # depth first in sorted order: of two ways to one folder, the first in the rows' order is walked
        here = pending.pop()
        real = os.path.realpath(here)
        if real in walked:
            continue
        walked.add(real)
        try:
            entries = sorted(here.iterdir())
            folders = {p for p in entries if p.is_dir()}   # a folder read but not searchable: EACCES here too
        except OSError as err:
            if here == root:
                raise ValueError(cannot_read(folder, err)) from None
            unreadable[here] = err
            found.append(here)
            continue
        hidden.extend(p for p in entries if p.name.startswith("."))
        entries = [p for p in entries if not p.name.startswith(".")]
        pending.extend(reversed([p for p in entries if p in folders]))
        found.extend(p for p in entries if p not in folders and p != root / configs.GENERATED_MANIFEST)
    return sorted(found), sorted(hidden), unreadable


def _row(rel: str, version: str, probs: np.ndarray | None, error: str = "") -> dict:
    row = {"path": rel, "model_version": version, "error": error}
    if probs is not None:
        for rank, idx in enumerate(top_classes(probs, TOP_K), start=1):
            row[f"class_{rank}"] = CLASS_NAMES[idx]
            row[f"letter_{rank}"] = GLYPHS[idx]
            row[f"probability_{rank}"] = f"{float(probs[idx]):.6f}"
    return row


class OutputNotWritten(Exception):
    """The CSV could not be written (no permission, a name too long, a full disk): ``cannot write <out>: <reason>``,
    the file there left as it was."""


def predict_folder(predictor, folder: str, out_csv: str, batch_size: int = 64, progress: bool = True,
                   files: list[Path] | None = None, limits: Limits = DEFAULT_LIMITS,
                   unreadable: dict[Path, OSError] | None = None) -> dict:
    """Writes ``out_csv`` (complete, or not at all: rows stream to a temporary file of this run's own, which
    replaces it at the end as core.files.atomic_write does: a link to it keeps pointing there, the file keeps its
    permissions; :class:`OutputNotWritten` when it cannot be). ``files`` and ``unreadable``: :func:`walk_images`'
    when the caller has them already; ``limits``: the file limits the images are read with (the pipeline's,
    :meth:`pipeline.evaluate.Limits.of` its Config)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if files is None:
        files, _, unreadable = walk_images(folder)
    root = Path(folder)
    counts = {"images": 0, "errors": 0, "versions": {}}
    started = time.monotonic()
    try:   # the images' OSErrors are their rows' and a server's its own errors: an OSError here is the output's
        with atomic_output(out_csv, "w", newline="", encoding="utf-8") as f:
            _write_rows(predictor, files, root, f, batch_size, progress, counts, limits, unreadable or {})
    except OSError as err:   # said of --out, not of the run's temporary file beside it
        raise OutputNotWritten(f"cannot write {printable(out_csv)}: {err.strerror or err}") from None
    counts["seconds"] = round(time.monotonic() - started, 2)
    return counts


def _write_rows(predictor, files: list[Path], root: Path, f, batch_size: int, progress: bool, counts: dict,
                limits: Limits, unreadable: dict[Path, OSError]) -> None:
    """One row per file, in the order of ``files`` (an unreadable one's reason in its place; a folder of
    ``unreadable``, ``name/``, the reason it could not be listed)."""
    with tqdm(total=len(files), desc="predict", unit="file", disable=None if progress else True,   # a terminal only
              file=sys.stderr) as bar:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for start, read in zip(range(0, len(files), batch_size), read_batches(files, batch_size, limits)):
            rows, batch, places = [], [], []
            for path, (data, err) in zip(files[start:start + batch_size], read):
                rel = printable(path.relative_to(root).as_posix())   # a name that is not UTF-8 shown, not fatal
                if path in unreadable:   # a folder: its reason, not that it is no regular file
                    rel, data, err = rel + "/", None, unreadable[path]
                if err is not None and is_predictions_csv_refused(path, err):   # no input: no row
                    continue
                if err is None:
                    batch.append(data)
                    places.append(len(rows))
                    rows.append(rel)
                else:
                    rows.append(_row(rel, "", None, unread_reason(err)))   # as letters-evaluate words it
                    counts["errors"] += 1
            if batch:
                answers = _answers(predictor, batch)
                for place, (answer, why) in zip(places, answers):
                    if why is None:
                        rows[place] = _row(rows[place], answer[1], answer[0])
                        counts["images"] += 1
                        counts["versions"].setdefault(answer[1])   # in the order they answered
                    else:
                        rows[place] = _row(rows[place], "", None, why)
                        counts["errors"] += 1
            writer.writerows(rows)
            bar.update(len(files[start:start + batch_size]))


def _answers(predictor, images: list[bytes]) -> list:
    """:func:`answers_each`' pairs for ``images``, in requests a model server takes: within the predictor's
    ``request_budget`` (~1 MB photos: 64 are over 64 MiB in JSON) and its ``max_images``, the limit the server's
    batching names when it refuses a request over it (said once, and kept for the rest of the run)."""
    pairs = []
    for run in in_requests(images, getattr(predictor, "request_budget", None), getattr(predictor, "max_images", None)):
        try:
            pairs += answers_each(_each(predictor), run)
        except BatchTooLarge as err:
            if not 0 < err.limit < len(run):   # no smaller request would be taken
                raise RuntimeError(f"the model server refused a request of {len(run)} images: {err}") from None
            predictor.max_images = err.limit
            tqdm.write(f"the model server takes at most {err.limit} images a request (its batching's "
                       f"max_batch_size): sending {err.limit} at a time", file=sys.stderr)
            pairs += _answers(predictor, run)
    return pairs


def _each(predictor):
    """``predictor`` as answers_each calls it: one (probabilities, version) per image."""
    def call(images: list[bytes]) -> list:
        probs, version = predictor(images)
        return [(p, version) for p in probs]
    return call


def leave_out_output(parser: argparse.ArgumentParser, files: list[Path], out: str) -> list[Path]:
    """``files`` without ``out``, when it is among them and one of this tool's CSVs; ``out`` among them as any
    other file (``--out`` under ``--images``) is a usage error (status 2) naming it instead of replacing it with
    the CSV. Other CSVs of this tool (an earlier run's, under any name: their header this tool's), no input either,
    are known as they are read (:func:`is_predictions_csv_refused`), so that each image is opened once."""
    real = os.path.realpath(out)
    if not any(os.path.realpath(path) == real for path in files):
        return files
    if not _is_predictions_csv(out):
        parser.error(f"--out {printable(out)} is one of the input files under --images; give another file")
    return [path for path in files if os.path.realpath(path) != real]


def any_input(files: list[Path]) -> bool:
    """Whether ``files`` hold one that is not this tool's CSV: the files are opened, in order, up to the first
    that is not one (its first bytes only)."""
    return not all(map(_is_predictions_csv, files))


def is_predictions_csv_refused(path, err: Exception) -> bool:
    """Whether the file ``path``, refused as an image (``err``, :func:`pipeline.evaluate.read_image`'s), is one of
    this tool's CSVs: no input, to get no row. Only a file refused as no image or as too large is opened again."""
    return isinstance(err, image_io.ImageRejected) and err.reason in ("not_an_image", "too_large") and \
        _is_predictions_csv(path)


def _is_predictions_csv(path) -> bool:
    """Whether ``path`` is a regular file that begins with this tool's CSV header (a pipe is not opened)."""
    header = ",".join(COLUMNS).encode()
    try:
        if not os.path.isfile(path):
            return False
        with open(path, "rb") as f:
            return f.read(len(header) + 2).splitlines()[:1] == [header]
    except OSError:
        return False


def refuse_flags_the_via_ignores(parser: argparse.ArgumentParser, args: argparse.Namespace, via_given: bool) -> None:
    """A usage error (status 2) for a flag given beside a ``--via`` that does not read it: ``--server-url`` or
    ``--model-name`` with ``--via local`` (given or the default), ``--model`` with ``--via rest`` or ``grpc``;
    said before the model loads, instead of predictions from another model than the one asked for."""
    local = args.via == "local"
    for dest in ("server_url", "model_name") if local else ("model",):
        value = getattr(args, dest)
        if value is None:
            continue
        ignored = f"--{dest.replace('_', '-')} ({value})"
        if local:
            refuse_ignored(parser, ignored, "--via local" + ("" if via_given else " (the default)"),
                           "predicts in process, with the SavedModel of --model",
                           "give --via rest or --via grpc to ask a model server")
        refuse_ignored(parser, ignored, f"--via {args.via}", "asks the model server at --server-url",
                       "leave it out, or give --via local to predict in process")


def main(argv=None) -> int:
    configs.warn_unknown_variables()
    defaults = defaults_from_env()
    serving_dir = defaults.serving_dir
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", required=True, type=settings.path, help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, type=output_file, help="CSV file to write")
    p.add_argument("--via", choices=("local", "rest", "grpc"), default=None,
                   help="local: the SavedModel of --model, in process (the default); rest, grpc: a model server "
                   "(--server-url, --model-name). A flag of the other kind is a usage error")
    p.add_argument("--model", default=None,
                   help=f"--via local: serving directory (its --version, default the highest) or version "
                   f"directory (default: {serving_dir.replace('%', '%%')})")
    p.add_argument("--server-url", default=None, help="--via rest: TF Serving REST address (default: "
                   "http://127.0.0.1:8501); --via grpc: host:port (default: 127.0.0.1:8500)")
    p.add_argument("--model-name", default=None, help=f"--via rest/grpc: model name (default: {configs.MODEL_NAME})")
    p.add_argument("--version", type=non_negative_int, default=None,
                   help="a version: --via rest/grpc, one the server serves (default: the latest AVAILABLE); "
                   "--via local, a version folder of --model (default: the highest)")
    p.add_argument("--batch-size", type=positive_int, default=64,
                   help="images read and predicted at a time (--via rest/grpc: at most this many per request) "
                        "(default: %(default)s)")
    args = p.parse_args(argv)
    via_given, args.via = args.via is not None, args.via or "local"
    refuse_flags_the_via_ignores(p, args, via_given)
    args.model = path_or_default(args.model, serving_dir)
    version = None if args.version is None else str(args.version)
    model_name = configs.MODEL_NAME if args.model_name is None else args.model_name
    try:
        files, hidden, unreadable = walk_images(args.images)
        files = leave_out_output(p, files, args.out)
        if hidden:
            print(f"left out {len(hidden)} hidden name(s) (starting with a dot), e.g. "
                  f"{printable(hidden[0].relative_to(args.images).as_posix())}", file=sys.stderr)
        if unreadable:
            first, why = next(iter(unreadable.items()))
            print(f"could not read {len(unreadable)} folder(s), e.g. "
                  f"{printable(first.relative_to(args.images).as_posix())}/: {why.strerror or why} "
                  "(a row each says so; the files in them are not predicted)", file=sys.stderr)
        if not any_input(files):   # before the model loads
            raise FileNotFoundError(f"no files under {printable(args.images)}" + (" but hidden ones" if hidden else ""))
        if args.via == "local":
            predictor = LocalPredictor(args.model, version)
        elif args.via == "rest":
            predictor = RestPredictor(args.server_url or "http://127.0.0.1:8501", model_name, version)
        else:
            predictor = GrpcPredictor(args.server_url or "127.0.0.1:8500", model_name, version)
        with sigterm_as_interrupt():   # a stopped job (timeout, kill) cleans up as Ctrl-C does
            counts = predict_folder(predictor, args.images, args.out, args.batch_size, files=files,
                                    limits=Limits.of(defaults), unreadable=unreadable)   # the pipeline's limits
    except KeyboardInterrupt:
        print(f"interrupted: {printable(args.out)} not written (left as it was)", file=sys.stderr)
        return 130
    except (FileNotFoundError, RuntimeError, ValueError, OutputNotWritten) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    versions = list(counts["versions"]) or [predictor.version]
    print(f"wrote {printable(args.out)}: {counts['images']} images predicted by version{'s' * (len(versions) > 1)} "
          f"{', '.join(versions)}, "
          f"{counts['errors']} unreadable or refused, in {counts['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
