"""One way to read settings: frozen dataclasses filled from their defaults, environment variables and flags.

Every settings class of the project (:class:`core.configs.Config`, ``web.config.WebConfig``,
``serving.config.ServerOptions``) is a dataclass. This module turns the text of an environment variable or a
flag into the field's type (bad text is an error naming the variable or the flag), reads a class's variables,
adds flags for chosen fields to an ``argparse`` parser and maps the parsed flags back onto the fields. Every
command reads its path flags one way (:func:`absolute`, :func:`path_or_default`, :func:`path`): ``~`` expanded,
an empty one its default, never the current folder. Each command warns at its start of the ``LETTERS_*``
variables that no setting reads (:func:`warn_unknown_variables`).
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import sys
from typing import Mapping

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")

PREFIX = "LETTERS_"


def kind(cls, name: str) -> str:
    """The field's type name (``bool``, ``int``, ``float`` or ``str``)."""
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    return field.type if isinstance(field.type, str) else field.type.__name__


def parse(kind_name: str, raw, source: str):
    """``raw`` as a value of ``kind_name``; ValueError naming ``source`` (``LETTERS_EPOCHS``, ``--epochs``)."""
    if not isinstance(raw, str):
        return raw
    try:
        if kind_name == "bool":
            if raw.lower() in TRUE:
                return True
            if raw.lower() in FALSE:
                return False
            raise ValueError(raw)
        if kind_name == "int":
            return int(raw)
        if kind_name == "float":
            return float(raw)
        return raw
    except ValueError:
        raise ValueError(f"{source}={raw!r} is not a valid {kind_name}") from None


def from_env(cls, variables: Mapping[str, str], environ: Mapping[str, str] | None = None, paths=()):
    """``cls()`` with each field of ``variables`` (field name -> variable) that is set and not empty replaced;
    in the fields named in ``paths`` a leading ``~`` is expanded, as the shell expands a flag's (a variable's
    ``~/letters`` is not a folder named ``~``). The class checks the values (``__post_init__``); both kinds of
    error are ValueErrors naming the problem."""
    environ = os.environ if environ is None else environ
    changes = {name: parse(kind(cls, name), environ[variable], variable)
               for name, variable in variables.items() if environ.get(variable, "") != ""}
    changes.update({name: os.path.expanduser(changes[name]) for name in paths
                    if isinstance(changes.get(name), str) and changes[name].startswith("~")})
    defaults = cls()   # outside the try: the defaults are no variable's doing
    try:
        return dataclasses.replace(defaults, **changes)
    except ValueError as err:
        raise ValueError(f"{_culprits(defaults, changes, variables, environ)}: {err}") from None


def _culprits(defaults, changes: Mapping, variables: Mapping[str, str], environ: Mapping[str, str]) -> str:
    """The variables behind a refused set of ``changes`` to ``defaults``: those refused on their own, else (values
    that are wrong only together) every variable that was set."""
    def refused(name):
        try:
            dataclasses.replace(defaults, **{name: changes[name]})
        except ValueError:
            return True
        return False
    names = [name for name in changes if refused(name)] or list(changes)
    return ", ".join(variable_text(variable, environ)   # (once each: two fields may read one variable)
                     for variable in dict.fromkeys(variables[name] for name in names))


def variable_text(variable: str, environ: Mapping[str, str] | None = None) -> str:
    """A variable as an error names it, with its text: ``LETTERS_EPOCHS='many'``."""
    environ = os.environ if environ is None else environ
    return f"{variable}={environ.get(variable, '')!r}"


def is_url(path: str) -> bool:
    """gs://…, s3://…: read where the command or the pipeline runs, not checked here."""
    return "://" in path


FILE_SCHEME = "file://"


def local_path(path: str) -> str:
    """The local path ``path`` names: file:///x is /x, as TensorFlow's local file system reads a file URI (the path
    io::ParseURI finds after the host, which it drops); a local path or another URL as given."""
    if not path.startswith(FILE_SCHEME):
        return path
    rest = path[len(FILE_SCHEME):]
    return rest[rest.index("/"):] if "/" in rest else ""


def absolute(path: str) -> str:
    """A path flag's value: URLs as given; local paths made absolute, a leading ``~`` expanded (the shell does not
    expand it after ``=``, in ``--feedback-dir=~/letters``, nor within quotes)."""
    return path if is_url(path) else os.path.abspath(os.path.expanduser(path))


BUCKET_SCHEMES = ("gs://", "s3://")   # the URLs gsutil copies to


def url_refusal(path: str, kind: str = "folder") -> str | None:
    """Why a command that writes a local ``kind`` ("file" or "folder") cannot take ``path``, or None: a URL
    (``gs://…``) had been taken for a relative path, a ``./gs:/…`` folder made where the command ran and said to be
    written. The one wording of every such refusal; for a bucket gsutil copies to (gs://, s3://) it says how."""
    if not is_url(path):
        return None
    refusal = f"{path}: the output is written to a local {kind}, not a URL; give one"
    if not path.lower().startswith(BUCKET_SCHEMES):
        return refusal
    copy = "gsutil cp FILE" if kind == "file" else "gsutil -m rsync -r FOLDER"
    return f"{refusal} and copy it to the bucket after ({copy} {path})"


def within(path: str, folder: str) -> bool:
    """``path`` is ``folder`` itself or anything under it (both absolute, links resolved by the caller)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default after its help, as ``argparse.ArgumentDefaultsHelpFormatter`` writes it, except a default
    of None or empty: such a flag's help says what giving none means (``default: <pipeline-root>/metadata.sqlite``,
    ``empty = none``), which a ``(default: None)`` after it had contradicted (``(default: )`` said nothing)."""

    def _get_help_string(self, action):
        return action.help if action.default in (None, "") else super()._get_help_string(action)


def path_or_default(value: str | None, default: str) -> str:
    """A path flag's value made :func:`absolute`; an empty one is ``default``, as an empty LETTERS_<FIELD> is the
    field's default (``abspath("")`` is the current directory: a command would have written its artifacts, pushed
    its models or read its feedback wherever it was started). An empty ``default`` (none, or one derived from
    another field) stays empty."""
    path = value or default
    return absolute(path) if path else ""


def path(text: str) -> str:
    """argparse type of a path flag that has no default: :func:`absolute`; an empty one is refused (it would have
    been the current directory)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path names nothing (give . for the current folder)")
    return absolute(text)


def flag_name(name: str, dashes: bool = True) -> str:
    return "--" + (name.replace("_", "-") if dashes else name)


def add_flags(parser, cls, helps: Mapping[str, str], defaults=None, dashes: bool = True,
              choices: Mapping[str, tuple] | None = None, parse_value=parse) -> None:
    """One flag per field named in ``helps`` (field -> help text), typed like the field and read by
    ``parse_value`` (:func:`parse` unless a command reads its flags as another parser does).

    With ``defaults`` (an instance) the flags default to its values (``argparse.ArgumentDefaultsHelpFormatter``
    shows them); without, they default to None so that :func:`flag_values` returns only the flags given. Booleans take an optional value
    (``--enable_batching``, ``--enable_batching=false``), as TF Serving's flags do.
    """
    for name, help_text in helps.items():
        flag, field_kind = flag_name(name, dashes), kind(cls, name)
        default = getattr(defaults, name) if defaults is not None else None

        def convert(raw, field_kind=field_kind, flag=flag):
            try:
                return parse_value(field_kind, raw, flag)
            except ValueError as err:
                raise argparse.ArgumentTypeError(str(err)) from None

        extra = {"nargs": "?", "const": True} if field_kind == "bool" else {}
        if choices and name in choices:
            extra["choices"] = choices[name]
        parser.add_argument(flag, type=convert, default=default, help=help_text.replace("%", "%%"), **extra)


def flag_values(args: argparse.Namespace, names) -> dict:
    """The fields among ``names`` whose flag was given (or has a non-None default)."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def named(name: str, given, variables: Mapping[str, str], value=None, dashes: bool = True,
          default: str | None = None) -> str:
    """How an error names the setting of field ``name``: its flag (with ``value``: ``--base-model (M)``) when the
    command line gave it (``given``: :func:`given_flags`), else the variable among ``variables`` (field -> variable)
    it came from, with its text (``LETTERS_BASE_MODEL='M'``), as :func:`from_env` names a refused variable: an
    error a variable alone caused names no flag that was never given. With ``default`` (``the default serving dir
    (…)``), a setting neither gave (its variable unset or empty, as unset) is named by it."""
    if name in given or name not in variables:
        return flag_name(name, dashes) + ("" if value is None else f" ({value})")
    if default is not None and not os.environ.get(variables[name]):
        return default
    return variable_text(variables[name])


def given_flags(parser: argparse.ArgumentParser, argv, dests) -> set[str]:
    """Which of ``dests`` (``pretrain_root``, …) an option on the command line ``argv`` sets, whatever its value: a
    flag given its default, which a LETTERS_<FIELD> variable may have set, is given too. ``argv`` is parsed again
    into a namespace holding a marker in each of ``dests``, which argparse keeps where no option sets it (so each of
    them must be an option that stores its value, not one that appends or counts)."""
    unset = object()
    probe = parser.parse_args(argv, namespace=argparse.Namespace(**dict.fromkeys(dests, unset)))
    return {dest for dest in dests if getattr(probe, dest) is not unset}


def flag_text(parser: argparse.ArgumentParser, flag: str, argv=None) -> str | None:
    """The text the command line ``argv`` gives the long option ``flag`` (``--summary-json``), read as ``parser``
    reads it (``--flag X``, ``--flag=X``, or abbreviated where ``parser`` takes the abbreviation) but before, and
    whatever, its options' checks: for what is done even when the command line is refused. None when not given,
    or given without a value (``parser`` refuses that); the last one when given twice."""
    argv = sys.argv[1:] if argv is None else list(argv)
    others = [name for name in parser._option_string_actions if name != flag]
    spellings = {flag[:end] for end in range(3, len(flag) + 1) if flag[:end] == flag or (
        parser.allow_abbrev and not any(name.startswith(flag[:end]) for name in others))}
    text = None
    for at, arg in enumerate(argv):
        if arg == "--":   # the rest is positional
            break
        name, equals, value = arg.partition("=")
        if name in spellings:
            following = argv[at + 1] if at + 1 < len(argv) else None
            an_option = following is None or (len(following) > 1 and following[0] in parser.prefix_chars
                                               and " " not in following)   # as argparse tells one
            text = value if equals else None if an_option else following
    return text


def unknown_variables(known_names, environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """The ``LETTERS_*`` variables set in ``environ`` (not empty: an empty one is unset) that are not among
    ``known_names``, each with the known variable its name is closest to (None: none is close), in name order."""
    environ = os.environ if environ is None else environ
    known = {name[len(PREFIX):]: name for name in known_names}
    unknown = sorted(name for name, value in environ.items()
                     if name.startswith(PREFIX) and value != "" and name not in known.values())
    return {name: next((known[close] for close in difflib.get_close_matches(name[len(PREFIX):], known, n=1)), None)
            for name in unknown}


def warn_unknown_variables(known_names, environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """One warning line on stderr per :func:`unknown_variables` name, which it returns. Only a warning: a variable
    of another tool that shares the prefix is no reason to stop."""
    unknown = unknown_variables(known_names, environ)
    for name, close in unknown.items():
        hint = f" (did you mean {close}?)" if close else ""
        print(f"warning: {name} is not a setting{hint}; it is ignored", file=sys.stderr, flush=True)
    return unknown


def host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets (``[::1]:8500``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
