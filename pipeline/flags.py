"""Command-line flags both runners share (training, the Evaluator's gate, Beam), each mapped onto a Config field.

Defaults come from core/configs.py and its LETTERS_<FIELD> environment variables.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

from core import configs, settings
from core.configs import Config
from core.settings import absolute, is_url, path_or_default, within   # noqa: F401  (the commands' one way to read
#                                                                       paths; within: an :func:`overlap` relation)

BEAM_MODES = configs.BEAM_MODES


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
    return value


def int_list(low: int):
    """argparse type of comma-separated integers, each at least ``low`` (training seeds: 0; counts: 1)."""
    def parse(text: str) -> list[int]:
        try:
            values = [int(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"want comma-separated integers, got {text!r}") from None
        if min(values) < low:
            raise argparse.ArgumentTypeError(f"want integers of at least {low}, got {text!r}")
        return values
    return parse


def refuse_url(path: str, kind: str) -> None:
    """ArgumentTypeError for an output flag given a URL (``gs://…``): the command writes a local ``kind`` (file or
    folder), to be copied to the bucket after (:func:`core.settings.url_refusal`)."""
    refusal = settings.url_refusal(path, kind)
    if refusal:
        raise argparse.ArgumentTypeError(refusal)


def output_file(path: str) -> str:
    """argparse type: a local file that can be created (its folder exists, and it is not a folder itself), its
    name read as :func:`core.settings.path` reads it; a URL is refused (:func:`refuse_url`)."""
    path = settings.path(path)
    refuse_url(path, "file")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path} is a folder; give a file name")
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write into {folder}")
    return path


def folder_problem(path: str) -> str | None:
    """Why a run could not create or write into the local folder ``path`` (None when it can), said before the
    run starts instead of when its last step writes there. Nothing is created."""
    path = os.path.abspath(path)
    if os.path.islink(path) and not os.path.exists(path):   # a link to a volume not mounted, say
        return f"{path} is a link to {os.readlink(path)}, which does not exist"
    if os.path.exists(path):
        if not os.path.isdir(path):
            return f"{path} is not a folder"
        return None if os.access(path, os.W_OK | os.X_OK) else f"cannot write into {path}"
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        if os.path.islink(parent):
            return f"cannot create {path}: {parent} is a link to {os.readlink(parent)}, which does not exist"
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"cannot create {path}: {parent} is not a folder"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"cannot create {path}: cannot write into {parent}"


def refuse_root_beam_cannot_write(parser: argparse.ArgumentParser, name: str, pipeline_root: str) -> None:
    """Both runners: a usage error (status 2) for a pipeline root Beam, which writes the pipeline's artifacts under
    it, cannot write, ``name`` saying what gave it (:func:`named`); said before anything runs.

    - A path holding a glob character (``*``, ``?``, ``[``): Beam finds the files it wrote by matching ``<its
      temporary folder>/*`` with the folder's name unescaped: under ``w/p [v2]`` the ExampleGen's write fails
      (BeamIOError: src and dst files do not exist), under ``w/p*`` its temporary folders are left among the
      examples and a later step fails reading one.
    - A ``file://`` URL: Beam has no filesystem for it (the ExampleGen's write fails, after the local runner had
      made a relative ``file:/…`` folder where it ran); a ``file://`` data root, read by TensorFlow, works."""
    if pipeline_root.startswith("file://"):
        parser.error(f"{name} is a file:// URL: Beam, which writes the pipeline's artifacts there, has no "
                     "filesystem for file:// (the ImageExampleGen's write would fail); give the local path itself")
    if glob.has_magic(pipeline_root):
        parser.error(f"{name} holds a glob character (*, ? or [): Beam, which writes the pipeline's artifacts "
                     "there, reads such a folder name as a pattern; give another")


def file_problem(path: str) -> str | None:
    """Why a run could not create or write the local file ``path`` (None when it can): a folder of that name (SQLite
    cannot open it as its database), or :func:`folder_problem` of the folder it goes into. Nothing is created."""
    if os.path.isdir(path):
        return f"{os.path.abspath(path)} is a folder; give a file name"
    return folder_problem(os.path.dirname(os.path.abspath(path)))


def same(path: str, other: str) -> bool:
    """:func:`overlap` relation: one path."""
    return path == other


def in_a_folder_of(path: str, folder: str) -> bool:
    """:func:`overlap` relation: ``folder`` itself or anything in its folders (not a file directly in it)."""
    return within(path, folder) and os.path.dirname(path) != folder


# Why a run refuses paths that overlap (the ``why`` of :func:`overlap`'s rules), in both runners' words
READ_AS_LETTERS = "every file under it is read as letters, so each run would read what is written there"
AMONG_ARTIFACTS = "the pipeline writes its artifacts in its folders"
PUSHED_AMONG_ARTIFACTS = "the versions pushed would be among its artifacts"
# Why a --base-model that is the serving dir is refused: a URL is read when the Trainer runs, a serving dir as its newest
# version then (a local path is resolved to a version folder before the run, never the serving dir itself)
BASE_MODEL_PUSHED = ("the Trainer would start from its newest version when it runs, the one the run before pushed "
                     "there, so every run would train on from the last")
# Config path field -> what it is when no setting gave it (:func:`path_names`)
DEFAULT_PATHS = {"data_root": "the default data root", "pipeline_root": "the default pipeline root",
                 "metadata_path": "ML Metadata's file", "serving_dir": "the default serving dir",
                 "feedback_dir": "the default feedback store",
                 "pretrain_root": "the built-in generated letters pretrained on"}


def path_names(paths: dict[str, str], given: set[str]) -> dict[str, str]:
    """How a usage error names each of ``paths`` (flag -> path, as :func:`overlap` takes them), with its path: by
    its flag when the command line gave it, else by the LETTERS_<FIELD> variable that set it, else as what it is by
    default (``the default serving dir (…)``, ``ML Metadata's file (<pipeline root>/metadata.sqlite)``): never by a
    flag not given."""
    names = {}
    for flag, path in paths.items():
        field = flag[2:].replace("-", "_")
        default = f"{DEFAULT_PATHS[field]} ({path})" if field in DEFAULT_PATHS else None
        names[flag] = named(field, given, path, default)
    return names


def compared(path: str) -> str:
    """``path`` as :func:`overlap` compares it: a local one (``file://`` URLs among them) absolute, links resolved;
    another URL as written, trailing slashes aside (``gs://b/p/`` is ``gs://b/p``): read nowhere, only compared."""
    path = settings.local_path(path)
    if not is_url(path):
        return os.path.realpath(path)
    scheme, rest = path.split("://", 1)
    return f"{scheme}://{rest.rstrip('/')}"


def overlap(paths: dict[str, str], refused, names: dict[str, str] | None = None) -> str | None:
    """Why a run cannot use ``paths`` (flag -> local path or URL; empty ones left out) together, or None: the
    first of ``refused`` ((flag, other flag, relation, why), …) whose paths (:func:`compared`: links resolved, URLs
    as written) stand in that relation (:func:`same`, :func:`within`, :func:`in_a_folder_of`), said naming both
    paths and what ``why`` says would happen. A URL never stands in one with a local path, nor with one of another
    scheme or bucket. ``names`` (flag -> text) says how the error names a path (``LETTERS_SERVING_DIR='…'``:
    :func:`named`, :func:`path_names`); one it leaves out is named by its flag and path. Found before the run,
    instead of a run that reads what it writes or writes over what it keeps."""
    real = {flag: compared(path) for flag, path in paths.items() if path}
    name = {flag: f"{flag} ({path})" for flag, path in paths.items()} | (names or {})
    for flag, other, relation, why in refused:
        if flag in real and other in real and relation(real[flag], real[other]):
            where = "the same path as" if real[flag] == real[other] else "inside"
            return f"{name[flag]} is {where} {name[other]}: {why}; give it another"
    return None


def refuse_ignored(parser: argparse.ArgumentParser, ignored: str, by: str, why: str,
                   remedy: str = "give one of the two") -> None:
    """A usage error (status 2) for a flag that another flag on the same command line makes the run ignore: said
    before anything runs, instead of a run that does something else than one of the two flags asked for.
    ``ignored`` and ``by`` name the flags (with their values), ``why`` says what ``by`` does, ``remedy`` what to
    give instead."""
    parser.error(f"{by} {why}: {ignored} would be ignored; {remedy}")


def refuse_pretraining_beside_base_model(parser: argparse.ArgumentParser, args: argparse.Namespace,
                                         given: set[str], base_model: str) -> None:
    """Both runners: the Trainer starts from ``base_model`` (--base-model, resolved), so letters to pretrain on
    would be ignored: :func:`refuse_ignored` when a --pretrain-root is given beside it, and when both come from
    LETTERS_* settings. A LETTERS_PRETRAIN_ROOT that a --base-model on the command line overrides is no conflict, as
    for the other refusals: the run starts from the base model, unpretrained. ``given``: the flags the command line
    gave (:func:`core.settings.given_flags`), whatever their values; a setting that is no flag given is named by
    its variable (:func:`named`). A --no-pretrain (local runs) beside a base model is refused too: the run would
    not start at random (the local runner lets it override a LETTERS_BASE_MODEL)."""
    if base_model and getattr(args, "no_pretrain", False):
        refuse_ignored(parser, "--no-pretrain", named("base_model", given, base_model),
                       "gives the network to start from")
    pretrain_root = None if getattr(args, "no_pretrain", False) else args.pretrain_root
    if not (base_model and pretrain_root):
        return
    if "pretrain_root" not in given and "base_model" in given:
        return
    refuse_ignored(parser, named("pretrain_root", given, absolute(pretrain_root)),
                   named("base_model", given, base_model), "gives the network to start from")


def named(name: str, given: set[str], value=None, default: str | None = None) -> str:
    """How an error names the Config field ``name``'s setting: its flag when the command line gave it, else its
    LETTERS_<FIELD> variable, else ``default`` if given (:func:`core.settings.named`)."""
    return settings.named(name, given, configs.ENV, value, default=default)


def output_dir(path: str) -> str:
    """argparse type: a local folder that exists or can be created (:func:`folder_problem`, said before the long
    work that follows), read as :func:`core.settings.path` reads it; a URL is refused (:func:`refuse_url`). Nothing
    is created: the command makes the folder when it writes its results, so a run that fails on its inputs leaves
    none behind."""
    path = settings.path(path)
    refuse_url(path, "folder")
    problem = folder_problem(path)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return path


def metadata_default(defaults: Config) -> str:
    """What --metadata-path is when not given (or empty), for its help: LETTERS_METADATA_PATH's file when that set
    one, else the pipeline root's."""
    return (f"{defaults.metadata_path}, from {configs.ENV['metadata_path']}" if defaults.metadata_path
            else "<pipeline-root>/metadata.sqlite")


def defaults_from_env() -> Config:
    """Config.from_env(), or exit with a usage error (status 2) naming the bad LETTERS_<FIELD>."""
    try:
        return Config.from_env()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


TRAINING_FLAGS = {   # Config field -> help; one flag each, shared by both runners
    "epochs": f"passes over the training split; 0 = sized from the number of training images "
              f"({configs.budget_rule()}; local runs on the built-in generated letters: generate_epochs)",
    "batch_size": "images per training step",
    "learning_rate": "Adam's initial learning rate (cosine decay to 0)",
    "image_size": "model input side in pixels",
    "architecture": "network",
    "conv_widths": "channels per stage, comma-separated; empty = the architecture's own",
    "base_model": "an exported letters model whose network training starts from (same architecture and channel "
                  "widths): a version folder, or a serving dir such as make demo's serving/models/letters (its "
                  "newest version; a URL, gs://…, is read when the Trainer runs, a serving dir as its newest "
                  "version then); empty = none: the network starts at random, or from one pretrained in the "
                  "same run (--pretrain-root; local runs on a --data-root pretrain on the built-in generated "
                  "letters unless --no-pretrain)",
    "feedback_repeat": f"each feedback image (a confirmed or corrected answer) this many times in the train split; "
                       f"0 = {configs.feedback_rule()}",
    "accuracy_floor": "blessing needs at least this top-1 accuracy on the eval split",
    "max_regression": "blessing allows at most this drop in accuracy against the last blessed model",
}
BEAM_FLAGS = {
    "beam_mode": "Beam DirectRunner running mode",
    "beam_workers": "DirectRunner workers for --beam-mode multi_processing / multi_threading (in_memory runs in one "
                    "process and ignores it); 0 = the machine's CPU count (kubeflow_runner.py: each task's CPU limit, "
                    "see --resources)",
}
CHOICES = {"architecture": configs.ARCHITECTURES, "beam_mode": BEAM_MODES}


def add_training_flags(parser: argparse.ArgumentParser, defaults: Config) -> None:
    g = parser.add_argument_group("training and blessing (defaults from core/configs.py, LETTERS_<FIELD>)")
    g.add_argument("--split", default=f"{defaults.train_buckets}:{defaults.eval_buckets}", metavar="TRAIN:EVAL",
                   help="hash buckets of the train and eval splits (9:1 keeps 90%% for training)")
    settings.add_flags(g, Config, TRAINING_FLAGS, defaults, choices=CHOICES)
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=defaults.augment,
                   help="train with augmentation (--no-augment: without)")


def add_beam_flags(group, defaults: Config) -> None:
    settings.add_flags(group, Config, BEAM_FLAGS, defaults, choices=CHOICES)


def training_changes(parser: argparse.ArgumentParser, args: argparse.Namespace, defaults: Config,
                     given: set[str], kept_version=None) -> dict:
    """The Config fields the shared flags set; bad values end in ``parser.error`` (a usage error). ``given``: the
    flags the command line gave (:func:`core.settings.given_flags`), base_model among those asked about;
    ``kept_version``: as :func:`local_base_model` takes it. A ``file://`` base model is its local path
    (:func:`core.settings.local_path`), in ``args`` too: checked, hashed and pinned as the path itself is."""
    args.base_model = settings.local_path(args.base_model) or args.base_model
    try:
        train_buckets, eval_buckets = (int(part) for part in args.split.split(":"))
    except ValueError:
        parser.error(f"--split must look like 4:1 (train and eval hash buckets), got {args.split!r}")
    if train_buckets < 1 or eval_buckets < 1:
        parser.error(f"--split needs at least one bucket on each side, got {args.split!r}")
    changes = {**settings.flag_values(args, {**TRAINING_FLAGS, **BEAM_FLAGS}),
               "train_buckets": train_buckets, "eval_buckets": eval_buckets,
               "augment": args.augment}
    try:
        config = defaults.replace(**changes)   # Config checks the values it can check on its own
    except ValueError as err:
        parser.error(str(err))
    if config.base_model and not is_url(config.base_model):   # a remote one is read only at run time
        changes["base_model"] = local_base_model(parser, config, named("base_model", given), kept_version)
    return changes


def local_base_model(parser: argparse.ArgumentParser, config: Config, source: str, kept_version=None) -> str:
    """Before anything runs: the version folder --base-model stands for, holding a letters model whose network
    this run can start from; otherwise a usage error naming ``source`` (the flag, or LETTERS_BASE_MODEL='…').
    A serving dir stands for its newest version, or for the one ``kept_version(serving_dir)`` gives as
    ``(version folder, where it is kept)`` (local_runner's pipeline root keeps the one it first started from):
    the version the run will read is the one checked."""
    from core.model_dirs import resolve_model_dir
    from models import warm_start
    given = absolute(config.base_model)
    try:
        folder = resolve_model_dir(given)
    except FileNotFoundError as err:
        parser.error(f"{source}: {err}; {warm_start.WHAT_TO_GIVE}")
    kept = kept_version(given) if kept_version and os.path.normpath(folder) != os.path.normpath(given) else None
    folder, where = kept or (folder, "")
    try:
        warm_start.network_weights(folder, config)
    except warm_start.BaseModelError as err:
        parser.error(f"{source}: {err}" + (f" ({where})" if where else ""))
    return folder
