"""Reads request logs: TFRecord files of TF Serving ``PredictionLog`` protos (what ``core/request_log.py`` writes).

A log is named by a **prefix**: a folder (every file in it, recursively), one file, or the ``filename_prefix`` its writer
was given (``/var/log/letters/requests`` → the files ``requests-<UTC time>-<n>.tfrecord`` that
``core/request_log.py`` names, not ``requests_canary-…`` of another model logging into the same folder), gs://
included; a folder holding no file, with such files beside it (a filename_prefix naming a folder), is read as that
prefix. Each ``predict_log`` holds the request —
``inputs["images"]`` (encoded image bytes, signature ``predict_images``) or ``inputs["examples"]`` (serialized
tf.Examples whose ``image_raw`` is the image, signature ``serving_default``) — the response's
``outputs["probabilities"]`` [N, 27] and, in ``log_metadata.model_spec``, the model (``name``) and version that
answered. Models whose ``logging_config`` is the same share one writer (as TF Serving's ServerRequestLogger), so a
log may hold other models' records: only the monitored model's are read (a record naming no model counts as its),
the others are counted by model name and left out.

A record is dated by ``log_metadata.timestamp_secs`` (which the project's writer sets) or, without it, by its file's
last modification (log files rotate, so a file spans minutes, not days); ``log_metadata.request_origin`` says
whether the web client's image came from the drawing pad or an upload. Nothing here raises on bad data: each problem
is counted in :class:`LogRead` by its kind and reported. A file is read one record at a time (TFRecord framing:
length, its checksum, data, their checksum): a record whose data fail their checksum is skipped (``corrupt_record``;
its length, checked apart, says where the next one starts), a length that fails its checksum ends the file's reading
(``corrupt_length``: the rest cannot be framed; a file that is not TFRecords too), and so does a last record cut
short (``truncated_tail``) or a file that cannot be opened or read (``unreadable_file``); a file too short to hold
one record, not empty, is not TFRecords or damaged (``too_short``: an empty one, a log file just opened, holds no
record); a record that does not parse (``unparsable_record``), is not a predict log or holds no image or no answer
is counted too. An answer that cannot be used (none, the wrong shape, not finite) is the served model's fault: each
is also kept, dated and versioned, as :class:`Unusable` (checks.unusable_shares).

A request's ``output_filter`` names the only outputs TF Serving runs and returns: an answer to one that left the
probabilities out is the answer asked for, not the model's fault. Its top-1 class and score are read from
``top_scores`` and a class output (``top_indices``, ``top_classes`` or ``top_letters``) when the filter kept them;
otherwise it is counted apart (:attr:`LogRead.filtered`), in no statistic and no alarm.
"""
from __future__ import annotations

import collections
import dataclasses
import glob
import os
import sys

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
from tqdm import tqdm

from core import configs, request_log
from core.labels import CLASS_NAMES, GLYPHS


class LogNotFound(FileNotFoundError):
    """The prefix names no folder and matches no file, or where it points cannot be read (a bucket not reached, no
    credentials: TensorFlow's reason said)."""


FRAMING_BYTES = 8 + 4 + 4   # around each TFRecord's data: its length, the length's CRC, the data's CRC
TRUNCATED = "the last record is cut short (its writer stopped or is writing it); the records before it were read"
CORRUPT = "its data do not match their checksum: skipped, the records after it read"
CORRUPT_LENGTH = ("a record's length does not match its checksum (or the file is not TFRecords): the records before "
                  "it were read, not the rest of the file")


@dataclasses.dataclass(frozen=True)
class Answer:
    """One image the server answered: what was sent, what came back (its top-1 class and score), which version,
    when."""
    time: float
    version: int | None
    image: bytes
    top1: int                   # index into CLASS_NAMES
    score: float                # the top-1 probability
    origin: str = ""            # log_metadata.request_origin: canvas / upload / unknown (web client logs)


@dataclasses.dataclass(frozen=True)
class Unusable:
    """One image the server answered with probabilities that cannot be used: which version, when."""
    time: float
    version: int | None


@dataclasses.dataclass
class LogRead:
    prefix: str
    model: str = configs.MODEL_NAME   # the model whose records are read
    files: list[str] = dataclasses.field(default_factory=list)
    records: int = 0
    other_models: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # name -> records
    answered: int = 0   # the answers read (each_answer yields them; read_logs keeps them in answers)
    answers: list[Answer] = dataclasses.field(default_factory=list)
    unusable: list[Unusable] = dataclasses.field(default_factory=list)   # one per image answered unusably
    filtered: int = 0   # images answered without probabilities or top-1 score: the request's output_filter
    problems: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # reason -> count
    examples: dict = dataclasses.field(default_factory=dict)   # reason -> first "file: detail"

    def problem(self, reason: str, where: str, detail: str = "", count: int = 1) -> None:
        self.problems[reason] += count
        self.examples.setdefault(reason, f"{where}: {detail}"[:300])

    def to_json(self) -> dict:
        return {"prefix": self.prefix, "model": self.model, "files": len(self.files), "records": self.records,
                "other_models": dict(self.other_models), "answers": self.answered, "filtered": self.filtered,
                "problems": dict(self.problems),
                "problem_examples": self.examples}


def holds_no_log(prefix: str) -> bool:
    """Whether ``prefix`` is a folder without a log file yet, as the web client's is from its start to its first
    answer; not one that cannot be listed (reading it says why), nor one its writer's files sit beside
    (:func:`beside`)."""
    try:
        return (tf.io.gfile.isdir(prefix) and not any(names for _, _, names in tf.io.gfile.walk(prefix))   # (lazily)
                and not _prefix_files(prefix))
    except tf.errors.OpError:
        return False


def _folder_files(folder: str) -> list[str]:
    return [os.path.join(root, name) for root, _, names in tf.io.gfile.walk(folder) for name in names]


def _prefix_files(prefix: str) -> list[str]:
    """The writer's files of ``prefix`` taken as a file-name prefix (core.request_log.name_pattern); none for a
    prefix ending in "/", whose writer writes inside the folder."""
    if prefix.endswith("/"):
        return []
    pattern = request_log.name_pattern(prefix)
    return [path for path in tf.io.gfile.glob(glob.escape(prefix) + "*")
            if pattern.fullmatch(os.path.basename(path)) and not tf.io.gfile.isdir(path)]


def beside(prefix: str, files: list[str]) -> bool:
    """Whether :func:`log_files` read ``files`` beside the folder ``prefix``, not in it: a writer given a
    filename_prefix that names a folder (a mounted volume, without a trailing "/") puts its files beside it, named
    ``<prefix>-<UTC time>-<n>.tfrecord``, and the folder holds none."""
    return bool(files) and not files[0].startswith(prefix.rstrip("/") + "/") and tf.io.gfile.isdir(prefix)


def log_files(prefix: str) -> list[str]:
    """The files a prefix names (sorted): a folder's files, one file named whole, or the writer's files of a
    file-name prefix (the pattern of core.request_log, read through tf.io.gfile for gs://); a folder that holds no
    file but has such files beside it (a filename_prefix naming a folder: :func:`beside`), those. LogNotFound when
    there are none or they cannot be listed."""
    gfile = tf.io.gfile
    try:
        if gfile.isdir(prefix):
            found = _folder_files(prefix) or _prefix_files(prefix)
        elif gfile.exists(prefix):
            found = [prefix]
        else:
            found = _prefix_files(prefix)
    except tf.errors.OpError as err:   # a URL not reached, no credentials: an input that cannot be read
        raise LogNotFound(f"cannot read the request log {prefix}: {_reason(err)}") from None
    if not found:
        raise LogNotFound(f"no request log at {prefix} (a folder of TFRecord files, a TFRecord file, or the "
                          f"filename_prefix of files named <prefix>-<UTC time>-<n>.tfrecord)")
    return sorted(found)


def _images(request, where: str, read: LogRead) -> list[bytes] | None:
    if configs.IMAGE_INPUT in request.inputs:
        return list(request.inputs[configs.IMAGE_INPUT].string_val)
    if configs.EXAMPLES_INPUT in request.inputs:
        images = []
        for serialized in request.inputs[configs.EXAMPLES_INPUT].string_val:
            example = tf.train.Example.FromString(serialized)
            values = example.features.feature[configs.IMAGE_KEY].bytes_list.value
            images.append(values[0] if values else b"")
        return images
    read.problem("no_image_input", where, f"inputs {sorted(request.inputs)}")
    return None


FILTERED = "filtered"   # _top1's answer to a request whose output_filter left out what the monitor reads

# the image signature's class outputs [N, k], best first: each value -> its index into CLASS_NAMES
_CLASS_OUTPUTS = {configs.TOP_INDICES_OUTPUT: int,
                  configs.TOP_CLASSES_OUTPUT: lambda value: CLASS_NAMES.index(value.decode()),
                  configs.TOP_LETTERS_OUTPUT: lambda value: GLYPHS.index(value.decode())}


def _finite(values: np.ndarray, what: str, where: str, read: LogRead) -> bool:
    """Whether ``values`` are all finite (if not, a non_finite_answer problem)."""
    finite = bool(np.isfinite(values).all())
    if not finite:
        read.problem("non_finite_answer", where, f"{what} hold NaN or infinity")
    return finite


def _probabilities(response, count: int, where: str, read: LogRead) -> np.ndarray | None:
    probs = tf.make_ndarray(response.outputs[configs.PROBABILITIES_OUTPUT]).astype(np.float64)
    if probs.shape != (count, len(CLASS_NAMES)):
        read.problem("bad_answer_shape", where, f"probabilities {probs.shape} for {count} image(s)")
        return None
    return probs if _finite(probs, "probabilities", where, read) else None


def _top_outputs(response, count: int, where: str, read: LogRead) -> tuple[np.ndarray, np.ndarray] | None:
    """(top-1 class indices, top-1 scores) from ``top_scores`` and the first class output the response holds."""
    name = next(name for name in _CLASS_OUTPUTS if name in response.outputs)
    scores = tf.make_ndarray(response.outputs[configs.TOP_SCORES_OUTPUT]).astype(np.float64)
    classes = tf.make_ndarray(response.outputs[name])
    if scores.ndim != 2 or scores.shape[0] != count or not scores.shape[1] or classes.shape != scores.shape:
        read.problem("bad_answer_shape", where, f"{configs.TOP_SCORES_OUTPUT} {scores.shape} and {name} "
                                                f"{classes.shape} for {count} image(s)")
        return None
    try:
        top1 = np.array([_CLASS_OUTPUTS[name](value) for value in classes[:, 0]], dtype=np.int64)
    except (ValueError, UnicodeDecodeError):
        read.problem("unknown_class", where, f"{name} {classes[:, 0].tolist()!r}"[:200])
        return None
    if ((top1 < 0) | (top1 >= len(CLASS_NAMES))).any():
        read.problem("unknown_class", where, f"{name} {top1.tolist()}")
        return None
    return (top1, scores[:, 0]) if _finite(scores, configs.TOP_SCORES_OUTPUT, where, read) else None


def _top1(request, response, count: int, where: str, read: LogRead):
    """(top-1 class indices, top-1 scores) of the answer; None when it cannot be used (the model's fault, a
    problem counted); FILTERED when the request's output_filter left out the probabilities and what stands for
    them (``top_scores`` and a class output): TF Serving returned what was asked."""
    if configs.PROBABILITIES_OUTPUT in response.outputs:
        probs = _probabilities(response, count, where, read)
        return None if probs is None else (probs.argmax(axis=1), probs.max(axis=1))
    filtered = request.output_filter and configs.PROBABILITIES_OUTPUT not in request.output_filter
    if not filtered:
        read.problem("no_answer", where, "the response has no probabilities (a failed request?)")
        return None
    if configs.TOP_SCORES_OUTPUT in response.outputs and any(name in response.outputs for name in _CLASS_OUTPUTS):
        return _top_outputs(response, count, where, read)
    return FILTERED


def _record_answers(raw: bytes, when: float, where: str, read: LogRead) -> list[Answer]:
    """The answers of one record; whatever else it holds is counted in ``read``."""
    try:
        log = prediction_log_pb2.PredictionLog.FromString(raw)
    except Exception as err:   # protobuf's DecodeError; any other failure to parse counts the same
        read.problem("unparsable_record", where, type(err).__name__)
        return []
    name = log.log_metadata.model_spec.name
    if name and name != read.model:   # another model logging through the same writer
        read.other_models[name] += 1
        return []
    kind = log.WhichOneof("log_type")
    if kind != "predict_log":
        read.problem(f"not_predict_log:{kind}", where)
        return []
    try:
        images = _images(log.predict_log.request, where, read)
        if images is None:
            return []
        top = _top1(log.predict_log.request, log.predict_log.response, len(images), where, read)
    except Exception as err:   # a tensor or tf.Example that does not decode
        read.problem("bad_tensor", where, f"{type(err).__name__}: {err}")
        return []
    metadata = log.log_metadata
    spec = metadata.model_spec
    version = spec.version.value if spec.HasField("version") else None
    when = metadata.timestamp_secs or when   # the writer's time of the request; else the file's
    if top is None:   # the model answered, unusably: counted against its version's window
        read.unusable.extend([Unusable(time=when, version=version)] * max(1, len(images)))
        return []
    if top is FILTERED:   # the answer asked for, without what the checks read
        read.filtered += len(images)
        return []
    return [Answer(time=when, version=version, image=image, top1=int(top1), score=float(score),
                   origin=metadata.request_origin) for image, top1, score in zip(images, *top)]


def open_logs(prefix: str, model: str = configs.MODEL_NAME) -> LogRead:
    """The log's files, nothing read yet (LogNotFound if the prefix names nothing)."""
    return LogRead(prefix=prefix, model=model, files=log_files(prefix))


def each_answer(read: LogRead, progress: bool | None = None):
    """Every answer of ``read.model`` in ``read.files``, one at a time as its record is read (a log's images are not
    held at once: it may be a gigabyte); the rest is counted in ``read`` as it goes. ``progress``: a bar of the bytes
    read on stderr (None: when stderr is a terminal)."""
    with tqdm(total=sum(map(_size, read.files)), desc="read log", unit="B", unit_scale=True,
              disable=None if progress is None else not progress, file=sys.stderr) as bar:
        for path in read.files:
            yield from _file_answers(path, read, bar)


def _size(path: str) -> int:
    """The file's size in bytes (0 when it cannot be read: said as it is read)."""
    try:
        return tf.io.gfile.stat(path).length
    except (tf.errors.OpError, OSError):
        return 0


def _file_answers(path: str, read: LogRead, bar):
    """:func:`each_answer` of one file, its records read one at a time; a record whose checksum fails is skipped,
    and a file cut short, whose rest cannot be framed, or unreadable is counted in ``read``."""
    try:
        when = tf.io.gfile.stat(path).mtime_nsec / 1e9   # the file's time
        with tf.io.gfile.GFile(path, "rb") as handle:
            for n, (offset, record, intact) in enumerate(request_log.frames(handle)):
                bar.update(FRAMING_BYTES + len(record))
                if not intact:   # its length, checked apart, still frames the next record
                    read.problem("corrupt_record", f"{path}#{n}", f"{CORRUPT} (at byte {offset})")
                    continue
                read.records += 1
                for answer in _record_answers(record, when, f"{path}#{n}", read):
                    read.answered += 1
                    yield answer
    except request_log.TooShort as err:   # no record framed: not a cut tail
        read.problem("too_short", path, f"the file holds {err}")
    except request_log.TruncatedRecord:
        read.problem("truncated_tail", path, TRUNCATED)
    except request_log.CorruptLength as err:
        read.problem("corrupt_length", path, f"{CORRUPT_LENGTH} (at byte {err.offset})")
    except (tf.errors.OpError, OSError) as err:   # a file that cannot be opened or read
        read.problem("unreadable_file", path, _reason(err))


def _reason(err: Exception) -> str:
    """Why a read failed, in one line: the first of the error's (TensorFlow adds ``when reading …``)."""
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def read_logs(prefix: str, model: str = configs.MODEL_NAME) -> LogRead:
    """Every answer of ``model`` in the log, kept in ``answers`` with its image (LogNotFound if the prefix names
    nothing)."""
    read = open_logs(prefix, model)
    read.answers = list(each_answer(read, progress=False))
    return read
