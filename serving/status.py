"""Canonical status codes, the error type every module raises, and TF Serving's code -> HTTP mapping."""
from __future__ import annotations

import errno
import logging
import os
import re

log = logging.getLogger("serving.status")

HTTP_STATUS = {  # http_server.cc ToHTTPStatusCode
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501,
    "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}

# tf.errors.OpError.error_code (absl numeric codes) -> name
CODE_NAMES = {
    0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
    6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION",
    10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE",
    15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}

# errno -> code, as TensorFlow's IOError status has it (tsl/platform/errors.cc ErrnoToCode); others UNKNOWN
_ERRNO_CODES = {
    **dict.fromkeys(("EINVAL", "ENAMETOOLONG", "E2BIG", "EFAULT", "EILSEQ", "ENOTTY", "ESPIPE"), "INVALID_ARGUMENT"),
    **dict.fromkeys(("ETIMEDOUT", "ETIME"), "DEADLINE_EXCEEDED"),
    **dict.fromkeys(("ENODEV", "ENOENT", "ENXIO", "ESRCH"), "NOT_FOUND"),
    **dict.fromkeys(("EEXIST",), "ALREADY_EXISTS"),
    **dict.fromkeys(("EPERM", "EACCES", "EROFS"), "PERMISSION_DENIED"),
    **dict.fromkeys(("ENOTEMPTY", "EISDIR", "ENOTDIR", "EBADF", "EBUSY", "EPIPE", "ETXTBSY"), "FAILED_PRECONDITION"),
    **dict.fromkeys(("ENOSPC", "EDQUOT", "EMFILE", "EMLINK", "ENFILE", "ENOBUFS", "ENOMEM"), "RESOURCE_EXHAUSTED"),
    **dict.fromkeys(("EFBIG", "EOVERFLOW", "ERANGE"), "OUT_OF_RANGE"),
    **dict.fromkeys(("ENOSYS", "ENOTSUP", "EXDEV"), "UNIMPLEMENTED"),
    **dict.fromkeys(("EAGAIN", "EINTR", "ENOLCK"), "UNAVAILABLE"),
    **dict.fromkeys(("EDEADLK", "ESTALE"), "ABORTED"),
    "ECANCELED": "CANCELLED",
}
# by number: names share numbers (EDEADLK and EDEADLOCK), and errno.errorcode keeps one name each
_CODE_OF_ERRNO = {getattr(errno, name): code for name, code in _ERRNO_CODES.items() if hasattr(errno, name)}
# by its text: TensorFlow's IOError message is "<context>; <strerror(errno)>" (tsl/platform/errors.cc IOError)
_CODE_OF_STRERROR = {os.strerror(number): code for number, code in _CODE_OF_ERRNO.items()}


def error_code(exc: BaseException | None) -> str:
    """The status code name of a failure (``OK`` for None): a ServingError's own code, an OSError's as
    TensorFlow maps its errno, otherwise UNKNOWN."""
    if exc is None:
        return "OK"
    if isinstance(exc, ServingError):
        return exc.code
    if isinstance(exc, OSError) and exc.errno is not None:
        return _CODE_OF_ERRNO.get(exc.errno, "UNKNOWN")
    return "UNKNOWN"


def io_error_message(path: str, exc: OSError) -> str:
    """TensorFlow's IOError message for an OSError on ``path`` (tsl/platform/errors.cc: the path and the errno's
    text, as "models.config; No such file or directory"); the error's own text if it has no errno."""
    return f"{path}; {os.strerror(exc.errno)}" if exc.errno else str(exc)


def io_error(path: str, exc: OSError) -> "ServingError":
    """TensorFlow's IOError status for an OSError on ``path``: its errno's code (:func:`error_code`) and
    :func:`io_error_message` (NOT_FOUND: models.config; No such file or directory)."""
    return ServingError(error_code(exc), io_error_message(path, exc))


def io_error_code(message: str) -> str | None:
    """The code of a TensorFlow IOError (``<context>; <strerror(errno)>``) as ErrnoToCode gives it, from its message
    alone (a Python layer that lost the code, such as the checkpoint reader's, which raises UNKNOWN); None for a
    message that does not end in a known errno's text."""
    context, _, reason = message.rpartition("; ")
    return _CODE_OF_STRERROR.get(reason) if context else None


# Python's preamble to a graph's runtime error: "Graph execution error:", a blank line, then for each node the message
# names where it was defined, as a function's error has it (atomic_function.InterpolateRuntimeError: the node's name,
# then each frame of traceback.format_list and a blank line, or "<stack traces unavailable>") or a TF1 session's
# (error_interpolation.interpolate_graph: the name quoted, each frame's lines indented, then "Node: 'name'")
_FRAME = r'  (?:File "[^\n]*", line \d+, in [^\n]*|\[Previous line repeated \d+ more times?\])\n(?:    [^\n]*\n)*'
_DEFINED_AT = r" defined at \(most recent call last\):\n"
_EAGER_PREFIX = re.compile(rf"^Graph execution error:\n\n(?:Detected at node [^'\n][^\n]*{_DEFINED_AT}"
                           rf"(?:<stack traces unavailable>\n|(?:{_FRAME}\n)*)"
                           rf"|Detected at node '[^\n]*'{_DEFINED_AT}(?:  [^\n]*\n)*Node: '[^\n]*'\n)*")
_EAGER_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\](?: name: [^\n]*)?\s*$")
_OP_SUFFIX = re.compile(rb" \[Op:[^\]]*\](?: name: [^\n]*)?$")        # the one Python eager appends, exactly
_EAGER_WRAPPER = re.compile(r"\{\{function_node __wrapped__[^}]*\}\} ?")   # Python's wrapping of one eager op


_FUNCTION_TAG = re.compile(r"\{\{function_node [^}]*\}\} ?")
_STRAY_BYTE = re.compile("[\udc80-\udcff]")
_C_ESCAPES = {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", ord('"'): '\\"', ord("'"): "\\'",
              ord("\\"): "\\\\"}


def c_escape(data: bytes) -> str:
    """absl::CEscape: \\n \\r \\t \\" \\' \\\\, octal \\ooo for every other byte that is not printable ASCII."""
    return "".join(_C_ESCAPES.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\{b:03o}") for b in data)


def undecodable_runtime_message(raw: bytes) -> str:
    """A TF runtime error whose message is not UTF-8 (an op quoted raw input bytes, e.g. ParseExample's
    ``Could not parse example input, value: '...'``): TF's Python binding cannot decode it, so the message is
    rebuilt from the raw bytes as ``runtime_message`` would give it, the quoted value C-escaped."""
    text = _FUNCTION_TAG.sub("", raw.decode("utf-8", "surrogateescape"))
    first, last = text.find("'"), text.rfind("'")
    if first < last:
        text = text[:first + 1] + c_escape(text[first + 1:last].encode("utf-8", "surrogateescape")) + text[last:]
    return runtime_message(_STRAY_BYTE.sub(lambda m: c_escape(m.group().encode("utf-8", "surrogateescape")), text))


# TF errors that quote an input value's bytes, by the op type that raises them: (the words just before the value,
# those just after it). TF's Python binding cuts such a message at the value's first NUL byte.
QUOTING_OPS = {
    **dict.fromkeys(("ParseExample", "ParseExampleV2", "ParseSingleExample", "ParseSequenceExample",
                     "ParseSequenceExampleV2", "ParseSingleSequenceExample"),
                    ("Could not parse example input, value: '", "'")),
    "StringToNumber": ("StringToNumberOp could not correctly convert string: ", ""),
}


def whole_message(raw: bytes, values, quoting_nodes: dict) -> str | None:
    """The message of a TF runtime error (``raw``: its bytes as TF's Python binding got them) that the binding cut at
    the first NUL byte of an input value it quoted, made whole again from that value, its quoted bytes rendered as
    ``undecodable_runtime_message`` renders them when they are not UTF-8, then the words after the value
    (QUOTING_OPS) and the node context the whole message has. ``values`` are the run's input bytes, and
    ``quoting_nodes`` {node name: op type} the nodes of its function that may quote them. None (the message stands)
    when the message does not end in a quoting op's opening words and a value's bytes before its NUL, or when which
    value or op it was is not sure: two distinct values, or ops with other closing words, end it alike."""
    cut = _OP_SUFFIX.sub(b"", raw)   # as it ended at the NUL, its trailing whitespace kept
    ends = {(value, QUOTING_OPS[op][1], node) for value in set(values) if b"\0" in value
            for node, op in quoting_nodes.items()
            if cut.endswith(QUOTING_OPS[op][0].encode() + value[:value.index(b"\0")])}
    if len({(value, closing) for value, closing, _ in ends}) != 1:
        return None
    value, closing, _ = next(iter(ends))
    nodes = {node for *_, node in ends}
    context = f"\n\t [[{{{{node {nodes.pop()}}}}}]]" if len(nodes) == 1 else ""   # not sure which: none
    whole = cut + value[value.index(b"\0"):] + closing.encode() + context.encode()
    try:
        return runtime_message(whole.decode("utf-8"))
    except UnicodeDecodeError:
        return undecodable_runtime_message(whole)


_NODE_CONTEXT = re.compile(r"\s*\[\[\{\{node .*", re.DOTALL)


def own_words(message: str) -> str:
    """A TF error's own words, for a person rather than a TF Serving client: without the ``{{function_node …}}``
    tag of the function it ran in or the ``[[{{node …}}]]`` graph context after it."""
    return _NODE_CONTEXT.sub("", _FUNCTION_TAG.sub("", message)).strip() or message


def runtime_message(message: str) -> str:
    """A TF runtime error as the C++ session reports it: without Python eager's "Graph execution error" and
    "Detected at node" preamble, its ``{{function_node __wrapped__…}}`` tag of an eager op, or its trailing
    ``[Op:...] name: ...``."""
    return _EAGER_SUFFIX.sub("", _EAGER_WRAPPER.sub("", _EAGER_PREFIX.sub("", message))).strip("\n")


class ServingError(Exception):
    """A status with a canonical code name and the bare message clients see in ``{"error": ...}``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    def to_string(self) -> str:
        """``Status::ToString()``: the form nested messages carry (``INVALID_ARGUMENT: ...``)."""
        return f"{self.code}: {self.message}"

    def __repr__(self):
        return f"ServingError({self.code}, {self.message!r})"


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def from_exception(exc: BaseException) -> ServingError:
    """Maps a TensorFlow (or any) exception to a status, keeping TF's code and message; an UNKNOWN one that is
    TensorFlow's IOError in words gets its errno's code (:func:`io_error_code`)."""
    if isinstance(exc, ServingError):
        return exc
    code = getattr(exc, "error_code", None)
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(code, int):
        name = CODE_NAMES.get(code, "UNKNOWN")
        message = runtime_message(message)
        return ServingError(name if name != "UNKNOWN" else io_error_code(message) or name, message)
    return ServingError("UNKNOWN", message or type(exc).__name__)


def request_error(exc: BaseException) -> ServingError:
    """What a client is told about an exception raised while serving its request: a ServingError or TF error keeps
    its code and message; anything else is a server bug, logged with its traceback and answered 500 INTERNAL
    without Python's text."""
    if isinstance(exc, ServingError) or isinstance(getattr(exc, "error_code", None), int):
        return from_exception(exc)
    log.error("Internal error serving a request", exc_info=exc)
    return ServingError("INTERNAL", "Internal server error")
