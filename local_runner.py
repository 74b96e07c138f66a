"""Runs the letters pipeline on this machine: LocalDagRunner, Beam DirectRunner, SQLite ML Metadata.

    python local_runner.py                              # built-in generated data (made if missing)
    python local_runner.py --data-root ~/letters        # your letters, from a network of the built-in ones

The number of epochs, unless chosen, is sized from the number of training images (core.configs.sized_epochs;
the built-in generated letters train Config.generate_epochs) and printed before the pipeline starts.

Every flag defaults to core/configs.py, overridable there by LETTERS_<FIELD> environment variables.
"""
from __future__ import annotations

import argparse
import json
import logging as pylogging
import os
import re
import sys
import time

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)
from core import configs, settings, signals
from pipeline import flags
from core.configs import Config
from core.model_dirs import holds_saved_model

_PROGRESS = re.compile(r"^Component (\S+) is (running|finished)")
_CACHE_HIT = re.compile(r"^A cached execution \d+ is used")   # TFX's launcher, between a step's two lines
# Warnings TFX and Beam print on every run that say nothing about this run.
_NOISE = ("ArtifactQuery.property_predicate is not supported", "`custom_executor_spec` is deprecated",
          "Couldn't find python-snappy", "If direct_num_workers is not equal to 1")
# TFX's launcher's line for a step that ended in an error (its logging.error call): of a step a stop (Ctrl-C,
# SIGTERM) ended, it is left out, the run's one interrupted line saying so.
_EXECUTION_FAILED = "Execution %d failed."


def build_parser(defaults: Config) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Run the letters TFX pipeline locally: images → examples → statistics/schema/validation → "
                    "transform → train → evaluate (blessing gate) → push to a TF Serving model directory.",
        formatter_class=settings.DefaultsHelpFormatter)
    p.add_argument("--data-root", default=None,
                   help="folder of <class_folder>/<image> files (default, or empty: generated data in "
                        f"{defaults.data_root}, made if missing; a LETTERS_DATA_ROOT holding letters the generator "
                        "did not write is read as this flag)")
    p.add_argument("--pipeline-root", default=defaults.pipeline_root,
                   help="where artifacts are written (empty: the default)")
    p.add_argument("--metadata-path", default=None,
                   help=f"ML Metadata SQLite file, not a folder (default, or empty: {flags.metadata_default(defaults)})")
    p.add_argument("--serving-dir", default=defaults.serving_dir,
                   help="TF Serving model base directory the Pusher writes <version>/ into (empty: the default)")
    p.add_argument("--feedback-dir", default=defaults.feedback_dir,
                   help="the web client's feedback store: its images (confirmed and corrected answers) are trained on, "
                        "always in the train split (empty: the default; --no-feedback to leave it out)")
    p.add_argument("--no-feedback", action="store_true", help="ignore the feedback store")
    p.add_argument("--generate-per-class", type=flags.positive_int, default=defaults.generate_per_class,
                   help="images per class (simulated writers) when generating the default data; it trains "
                        f"{defaults.generate_epochs} epochs unless --epochs is given (LETTERS_GENERATE_EPOCHS)")
    p.add_argument("--pretrain-root", default=defaults.pretrain_root or None,
                   help="letters (folder per class) the network first trains on, generate_epochs epochs, in the same "
                        "run, before --data-root's (default with --data-root: the built-in generated letters, made "
                        "if missing; empty: none, as --no-pretrain; with --base-model: a usage error)")
    p.add_argument("--no-pretrain", action="store_true", help="train --data-root's letters from a random start")
    p.add_argument("--no-cache", action="store_true", help="re-run every component even if its inputs are unchanged")
    p.add_argument("--summary-json", default=None, type=flags.output_file,
                   help="also write the final summary to this file (a failed run's for a run ended before any step "
                        "was done; removed as the run starts, so a run stopped or refused leaves none)")
    p.add_argument("--quiet", action="store_true",
                   help="leave out the log: the per-component progress lines and TFX's warnings (absl logging below "
                        "ERROR); the runner's and the components' own lines and the final summary are still printed")
    flags.add_training_flags(p, defaults)
    flags.add_beam_flags(p.add_argument_group("Beam"), defaults)
    return p


def parse_args(argv=None) -> tuple[Config, argparse.Namespace]:
    defaults = flags.defaults_from_env()
    p = build_parser(defaults)
    args = p.parse_args(argv)
    # a flag given, told from its default (a LETTERS_<FIELD> setting it overrides, which may hold the same value)
    given = settings.given_flags(p, argv, ("pretrain_root", "feedback_repeat", "base_model", *flags.DEFAULT_PATHS))
    args.given = given   # for the errors of _main, which name what set a path (flags.named)
    args.data_root = args.data_root or None   # empty = the default, as an empty LETTERS_DATA_ROOT
    if args.no_pretrain and args.pretrain_root and "pretrain_root" in given:
        flags.refuse_ignored(p, f"--pretrain-root ({args.pretrain_root})", "--no-pretrain",
                             "starts the network at random")
    if args.no_feedback and "feedback_repeat" in given:
        flags.refuse_ignored(p, f"--feedback-repeat ({args.feedback_repeat})", "--no-feedback",
                             "leaves the feedback out")
    if args.no_pretrain and "base_model" not in given:
        args.base_model = ""   # a LETTERS_BASE_MODEL the flag overrides: the network starts at random
    pipeline_root = flags.path_or_default(args.pipeline_root, defaults.pipeline_root)
    changes = flags.training_changes(p, args, defaults, given,
                                     kept_version=lambda serving_dir: kept_base_model(pipeline_root, serving_dir))
    flags.refuse_pretraining_beside_base_model(p, args, given, changes["base_model"])
    config = defaults.replace(
        data_root=flags.absolute(args.data_root) if args.data_root else defaults.data_root,
        # "~" expanded in every path, as the shell would; an empty one is the default, as an empty LETTERS_<FIELD>
        pipeline_root=pipeline_root,
        metadata_path=flags.path_or_default(args.metadata_path, defaults.metadata_path),
        serving_dir=flags.path_or_default(args.serving_dir, defaults.serving_dir),
        feedback_dir="" if args.no_feedback else flags.path_or_default(args.feedback_dir, defaults.feedback_dir),
        generate_per_class=args.generate_per_class, **changes)
    # A LETTERS_DATA_ROOT of letters the generator did not write is trained on as a --data-root is (after the
    # built-in generated letters, at the default data root); kubeflow_runner reads it the same way.
    args.builtin_root, args.data_root_from_env = defaults.data_root, False
    if args.data_root is None and os.environ.get("LETTERS_DATA_ROOT"):
        from pipeline.generate_letters import generated_or_new
        if flags.is_url(config.data_root) or not generated_or_new(config.data_root):
            args.data_root, args.builtin_root, args.data_root_from_env = config.data_root, Config().data_root, True
    refuse_feedback_url(p, config.feedback_dir, given)
    paths = run_paths(config, args, args.builtin_root)
    names = flags.path_names(paths, given)
    flags.refuse_root_beam_cannot_write(p, names["--pipeline-root"], config.pipeline_root)
    problem = flags.overlap(paths, OVERLAPS, names)
    if problem:
        p.error(problem)
    return config, args


def refuse_feedback_url(parser: argparse.ArgumentParser, feedback_dir: str, given: set[str]) -> None:
    """A usage error (status 2) for a feedback store given as a URL (gs://…, a flag or LETTERS_FEEDBACK_DIR), in
    the store's own words (:func:`core.feedback.store_folder`): it had been said to be no store, and the run
    trained without feedback."""
    from core.feedback import FeedbackStoreError, store_folder
    if feedback_dir:
        try:
            store_folder(feedback_dir)
        except FeedbackStoreError as err:
            parser.error(f"{flags.named('feedback_dir', given)}: {err} (--no-feedback to leave feedback out)")


def run_paths(config: Config, args: argparse.Namespace, builtin_root: str) -> dict[str, str]:
    """The paths a run reads and writes, by flag ("" for one it does not use): the folder it pretrains on, if any
    (a --pretrain-root, or for a --data-root without one, the built-in generated letters at ``builtin_root``), the
    data root and the feedback store as given or by default, the base model (a URL as given, a local one as the
    version folder it stands for)."""
    pretrain_root = "" if args.no_pretrain or config.base_model else args.pretrain_root
    if pretrain_root is None:
        pretrain_root = flags.absolute(builtin_root) if args.data_root else ""
    elif pretrain_root:
        pretrain_root = flags.absolute(pretrain_root)   # (a "~" the shell left, in --pretrain-root=~/letters)
    return {"--summary-json": args.summary_json or "", "--metadata-path": config.metadata_file,
            "--pipeline-root": config.pipeline_root, "--serving-dir": config.serving_dir,
            "--data-root": config.data_root, "--pretrain-root": pretrain_root, "--feedback-dir": config.feedback_dir,
            "--base-model": config.base_model}


_WRITTEN = ("--pipeline-root", "--serving-dir", "--metadata-path", "--summary-json")   # what the run writes
OVERLAPS = (   # (flag, other flag, relation, what would happen): paths a run refuses (flags.overlap)
    ("--summary-json", "--metadata-path", flags.same, "the summary would be written over ML Metadata's database"),
    ("--summary-json", "--pipeline-root", flags.in_a_folder_of, flags.AMONG_ARTIFACTS),
    ("--summary-json", "--serving-dir", flags.in_a_folder_of, "its folders are the model versions served"),
    ("--serving-dir", "--pipeline-root", flags.same, flags.PUSHED_AMONG_ARTIFACTS),
    ("--base-model", "--serving-dir", flags.same, flags.BASE_MODEL_PUSHED),   # (a URL: a local one is a version's)
    *((flag, letters, flags.within, flags.READ_AS_LETTERS) for letters in ("--data-root", "--pretrain-root")
      for flag in (*_WRITTEN, "--feedback-dir")),
    *((flag, "--feedback-dir", flags.within, "it is the web client's feedback store") for flag in _WRITTEN),
    *((flag, "--pipeline-root", flags.within, flags.AMONG_ARTIFACTS)
      for flag in ("--data-root", "--pretrain-root", "--feedback-dir")),
)


class _ProgressFilter(pylogging.Filter):
    """Lets through the orchestrator's 'Component X is running/finished' lines and warnings, nothing else; a step
    whose cached outputs TFX's launcher reuses ends with 'X cached (inputs unchanged)', as the closing summary
    says it, not 'X finished'; a step a stop ended is not said to have failed (:data:`_EXECUTION_FAILED`)."""

    def __init__(self, started: float):
        super().__init__()
        self.started = started
        self.running = self.cached = None   # the step under way; the one that was a cache hit

    def filter(self, record):
        if record.levelno >= pylogging.WARNING:
            if record.msg == _EXECUTION_FAILED and signals.stop_requested() is not None:
                return False
            return not any(noise in record.getMessage() for noise in _NOISE)
        message = record.getMessage()
        if _CACHE_HIT.match(message) and self.running:
            self.cached = self.running
            return self._progress(record, f"{self.running} cached (inputs unchanged)")
        match = _PROGRESS.match(message)
        if not match:
            return False
        step, state = match.groups()
        if state == "running":
            self.running = step
        elif step == self.cached:   # said already
            return False
        return self._progress(record, f"{step} {state}")

    def _progress(self, record, text: str) -> bool:
        elapsed = time.monotonic() - self.started
        record.msg, record.args = f"[{elapsed:5.0f} s] {text}", ()
        return True


class _Formatter(pylogging.Formatter):
    def format(self, record):
        text = record.getMessage()
        return text if record.levelno < pylogging.WARNING else f"{record.levelname}: {text}"


def _quiet_logging(started: float, quiet: bool) -> None:
    """Progress lines and real warnings only: TFX, Beam and TensorFlow log a great deal at INFO."""
    from absl import logging as absl_logging
    import tensorflow as tf
    absl_logging.set_verbosity(absl_logging.ERROR if quiet else absl_logging.INFO)
    tf.get_logger().setLevel(pylogging.ERROR)
    root = pylogging.getLogger()
    if not root.handlers:
        root.addHandler(pylogging.StreamHandler())
    root.setLevel(pylogging.INFO)
    for handler in root.handlers:
        handler.addFilter(_ProgressFilter(started))
        handler.setFormatter(_Formatter())


def ensure_default_data(config: Config) -> None:
    """The built-in default: generated letters, made on first use (or when settings changed)."""
    from pipeline import generate_letters
    faces = generate_letters.require_faces()
    missing = generate_letters.missing_script_faces(faces)
    if missing:
        print(f"warning: {missing}", file=sys.stderr, flush=True)
    generate_letters.generate(config.data_root, config.generate_per_class, config.generate_seed, faces)


def unusable_letters(flag: str, root: str, config: Config) -> str | None:
    """Why ``root`` cannot be read, as the ExampleGen would say it, before anything starts: not a folder, no class
    folder, or no image the ExampleGen would keep (whose skip report it prints); None for a folder of class folders
    with at least one such image. A ``file://`` root is checked as its local path (:func:`core.settings.local_path`),
    as TensorFlow reads it; the pipeline is given the URL."""
    local = settings.local_path(root)
    if not os.path.isdir(local):
        return f"{flag} {root} is not a folder"
    from components import image_example_gen as gen
    problem = gen.describe_layout_problem(local)
    if problem:
        return problem
    usable, skips = gen.find_usable_image(local, config.max_file_bytes, config.max_image_pixels)
    if not usable:   # every file would be skipped
        print(gen.format_report(gen.build_report(skips, local)), flush=True)
        return gen.no_usable_image(local)
    return None


def small_data_hint(config: Config) -> str | None:
    """A line for a data root with fewer than ``configs.SMALL_DATA_PER_CLASS`` images per class of the alphabet on
    average: how such letters do better (as feedback beside the built-in generated letters); None for a larger one.
    The images per class it says are the alphabet's average, the reason for the line; the classes without any are
    said too when there are some (100 images in 5 of the classes: about 4 per class, 22 classes with none)."""
    from components.image_example_gen import candidates_per_class
    from core.labels import NUM_CLASSES
    if flags.is_url(config.data_root):   # the import stores local files
        return None
    per_class = candidates_per_class(config.data_root)
    images = sum(per_class.values())
    if images >= configs.SMALL_DATA_PER_CLASS * NUM_CLASSES:
        return None
    none = NUM_CLASSES - len(per_class)
    empty = f" ({none} of the {NUM_CLASSES} classes with none)" if none else ""
    average = max(1, round(images / NUM_CLASSES))
    return (f"Data: {images} images in {config.data_root}, about {average} per class{empty}. So few read other "
            f"writers better as feedback beside the built-in generated letters: `letters-feedback import "
            f"{config.data_root}`, then `make retrain` (measured with 130 real letters: 0.821 against 0.800 trained "
            'from their own folder; docs/measurements.md, "A handful of real letters")')


def forget_removed_models(config: Config) -> list[str]:
    """Marks the last blessed model DELETED in ML Metadata when its folder is gone (removed by hand, say), and the
    one blessed before it while that is gone too, each with a line naming it; returns their folders. TFX's
    resolver reads live artifacts only, so the gate then compares with the last blessed model still there, or,
    with none left, applies the first run's rule (the accuracy floor alone): the Evaluator had failed on the
    missing folder after the Trainer, whatever the flags. A Trainer cached with that model trains again."""
    import tensorflow as tf
    from ml_metadata.proto import metadata_store_pb2
    from pipeline.run_summary import latest_blessed_model, open_store

    if not os.path.exists(config.metadata_file):
        return []
    store = open_store(config.metadata_file, writable=True)
    gone = []
    while (model := latest_blessed_model(store)) is not None and not tf.io.gfile.exists(model.uri):
        model.state = metadata_store_pb2.Artifact.DELETED
        store.put_artifacts([model])
        gone.append(model.uri)
        print(f"Last blessed model: {model.uri} is gone; marked deleted in ML Metadata (artifact {model.id}), so "
              "this run is compared with the blessed model before it that is still there, or, with none, gated by "
              "the accuracy floor alone", flush=True)
    return gone


def gate_after_a_split_change(config: Config, feedback_root: str | None = None) -> tuple[Config, str | None]:
    """The "no worse than the last blessed model" gate compares both models on this run's eval split, so that
    split must hold no image the last blessed model trained on. Images are split by hash over train + eval
    buckets, so a new --split moves images it trained on into the eval split; and feedback it trained on that
    this run leaves out can put images with the same pixels back there (:func:`eval_images_trained_as_feedback`).
    Either way it scores high for having seen them: the run is gated by the accuracy floor only, and says so.
    ``feedback_root``: this run's exported feedback (None without). Returns the config to run and why it is not
    compared with the last blessed model (None when it is, or when --max-regression already allows any drop)."""
    from pipeline.pipeline import split_text
    from pipeline.run_summary import last_blessed_training

    if config.max_regression >= 1:
        return config, None
    baseline = last_blessed_training(config.metadata_file) or {}
    # a model that recorded no split came before the split was recorded, when images were split by their bytes
    before, now = baseline.get("split", "unrecorded, by bytes" if baseline else None), split_text(config)
    if before is not None and before != now:
        reason = (f"the split changed since the last blessed model ({before} then, {now} now): part of this run's "
                  "eval split trained that model")
    else:
        reason = eval_images_trained_as_feedback(config, baseline, feedback_root)
    if reason is None:
        return config, None
    print(f"{reason[0].upper()}{reason[1:]}, so this run is gated by the accuracy floor only, not compared with it",
          flush=True)
    return config.replace(max_regression=1.0), reason


def eval_images_trained_as_feedback(config: Config, baseline: dict, feedback_root: str | None) -> str | None:
    """Why this run's eval split holds images the last blessed model trained on as feedback, or None. A data-root
    image with the pixels of a feedback image goes to train with it (components.image_example_gen.partition);
    when this run leaves that feedback out (--no-feedback, another store, deleted rows), an image with its pixels
    hashed into eval is scored there. Only such feedback turns the comparison off: a row deleted for its wrong
    label, its picture not in the data root, keeps it. Found by pixel digest (the ingest report's
    ``feedback_digests``); the data root is read only when a left-out picture hashes into eval, until each such
    picture is found. A report from before the digests were recorded: any feedback image left out, by its store
    id (:func:`feedback_left_out`), since which of them have twins in the data root is not known."""
    from components import image_example_gen as gen
    trained = baseline.get("feedback_digests")
    if trained is None:
        missing = feedback_left_out(baseline, feedback_root)
        return (f"{missing} of the feedback images the last blessed model trained on are not in this run's feedback "
                "and its ingest report does not record their pixels: eval images with the same pixels may have "
                "trained that model") if missing else None
    hashed_into_eval = {digest for digest in trained
                        if gen.hashed_split(digest, config.train_buckets, config.eval_buckets) == configs.EVAL_SPLIT}
    if hashed_into_eval:   # (this run's feedback is decoded only then: the ExampleGen decodes it again)
        hashed_into_eval -= gen.feedback_digests(feedback_root, config.max_file_bytes, config.max_image_pixels)
    found = set()
    if hashed_into_eval:
        for digest in gen.kept_pixel_digests(config.data_root, config.max_file_bytes, config.max_image_pixels):
            if digest in hashed_into_eval:
                found.add(digest)
                if found == hashed_into_eval:
                    break
    if not found:
        return None
    return (f"{len(found)} of the feedback images the last blessed model trained on are not in this run's feedback "
            "and images with their pixels are in this run's eval split: that model trained on those eval images")


def feedback_left_out(baseline: dict, feedback_root: str | None) -> int:
    """How many of the feedback images the last blessed model trained on this run leaves out (feedback off, an
    empty or another store, deleted rows); by their feedback store id, which names the files of its ingest report
    and of this run's export (``feedback_root``)."""
    from components.image_example_gen import list_inputs
    trained = baseline.get("feedback_files")
    if not baseline.get("feedback_images") and not trained:
        return 0

    def store_id(path: str) -> str:
        return os.path.splitext(os.path.basename(path))[0]

    now = {store_id(path) for path in list_inputs(feedback_root)} if feedback_root else set()
    if trained is None:   # an older report without the file names: the count alone
        return baseline["feedback_images"] if not now else 0
    return sum(1 for path in trained if store_id(path) not in now)


def feedback_store_exists(config: Config) -> bool:
    from core.feedback import DB_FILE
    return bool(config.feedback_dir) and os.path.exists(os.path.join(config.feedback_dir, DB_FILE))


def choose_pretraining(config: Config, args: argparse.Namespace, builtin_root: str) -> Config:
    """``config`` with the folder its network first trains on, and a line saying so. Your data (--data-root)
    starts from a network of the built-in generated letters (``builtin_root``) unless --no-pretrain or --base-model
    (measured: about a point more on writers never seen, docs/measurements.md); the built-in letters themselves start
    at random. An empty --pretrain-root is none, as an empty ``Config.pretrain_root``; beside a base model
    only a LETTERS_PRETRAIN_ROOT gets here (parse_args refuses a --pretrain-root), and it is none too."""
    given = args.pretrain_root
    if args.no_pretrain or given == "" or config.base_model or (given is None and args.data_root is None):
        if given and config.base_model and not args.no_pretrain:
            print(f"Pretraining: none, --base-model gives the network to start from (LETTERS_PRETRAIN_ROOT={given} "
                  "is not used)", flush=True)
        return config.replace(pretrain_root="")
    if given is None:
        root = os.path.abspath(builtin_root)
        if root == config.data_root:
            return config.replace(pretrain_root="")
        from pipeline.generate_letters import NoHebrewFontError, NotGeneratedFolder, os_error
        try:
            ensure_default_data(config.replace(data_root=root))
        except (NoHebrewFontError, NotGeneratedFolder, OSError) as err:
            said = os_error(err) if isinstance(err, OSError) else err
            print(f"Pretraining: none, the built-in generated letters cannot be made ({said})", flush=True)
            return config.replace(pretrain_root="")
        what = f"the built-in generated letters ({config.generate_per_class} simulated writers, {root})"
    else:
        root = flags.absolute(given)   # (as the overlap checks read it: a URL as given)
        what = root
    epochs = f"{config.generate_epochs} epoch{'s' if config.generate_epochs != 1 else ''}"
    print(f"Pretraining: the network first trains {epochs} on {what}, then on your data "
          "(--no-pretrain to start at random)", flush=True)
    return config.replace(pretrain_root=root)


BASE_MODEL_RECORD = "base_model.json"   # in the pipeline root: {serving dir given: the version it stood for}


def base_model_record(pipeline_root: str) -> tuple[str, dict]:
    """The pipeline root's record of the version each serving dir given as --base-model first stood for: its
    path, and {serving dir: version folder} ({} if none or unreadable)."""
    path = os.path.join(pipeline_root, BASE_MODEL_RECORD)
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        record = {}
    return path, record if isinstance(record, dict) else {}


def kept_base_model(pipeline_root: str, serving_dir: str) -> tuple[str, str] | None:
    """The version folder a --base-model serving dir stands for in this pipeline root, if recorded and there
    (saved_model.pb or .pbtxt), with where it is kept, for the check before the run (flags.local_base_model)."""
    path, record = base_model_record(pipeline_root)
    kept = record.get(serving_dir)
    if isinstance(kept, str) and holds_saved_model(kept):
        return kept, (f"the version of {serving_dir} {pipeline_root} first started from, kept in {path}: give "
                      f"a version folder to start from another, or delete {path} for the newest")
    return None


def pinned_base_model(config: Config, given: str | None) -> None:
    """A --base-model that names a serving dir stands for its newest version when this pipeline root first
    starts from it, and for that version on later runs (recorded in the pipeline root): otherwise each run
    started from the version the run before had pushed there, so an unchanged re-run trained and pushed again.
    parse_args has already chosen and checked that version (config.base_model, :func:`kept_base_model`); this
    says which it is and records it. A version folder, or a remote path, is used as given."""
    if not given or flags.is_url(given) or not config.base_model:
        return
    given = flags.absolute(given)
    if os.path.normpath(given) == os.path.normpath(config.base_model):   # a version folder
        return
    record_path, record = base_model_record(config.pipeline_root)
    if record.get(given) == config.base_model:
        print(f"Base model: {config.base_model}, the newest version of {given} when {config.pipeline_root} first "
              f"started from it (give a version folder to start from another; delete {record_path} for the newest)",
              flush=True)
        return
    record[given] = config.base_model
    from core.files import atomic_write
    atomic_write(record_path, json.dumps(record, indent=2).encode())
    print(f"Base model: {config.base_model}, the newest version of {given} (later runs of this pipeline root "
          "start from it too)", flush=True)


class FeedbackNotExported(Exception):
    """The feedback store's images could not all be exported to the pipeline root (a full disk, an OSError): the
    message names the folder and the error, and says how many were written (each whole, kept for the next run)."""


def export_feedback(config: Config) -> str | None:
    """Exports the feedback store's images to <pipeline_root>/feedback (folder per class); None if none.
    FeedbackNotExported when an OSError stops it."""
    from core.feedback import export_feedback as export, unknown_labels_note
    store = config.feedback_dir
    if not store:
        return None
    if not feedback_store_exists(config):   # a mistyped folder trains without feedback: say so
        print(f"Feedback: none, no feedback store at {store} (the web client makes it with the first answer "
              "confirmed or corrected; --no-feedback to leave feedback out)", flush=True)
        return None
    out = os.path.join(config.pipeline_root, "feedback")
    try:   # (prune: exactly the store's images, none of another store's or a cut export)
        summary = export(store, out, prune=True, max_file_bytes=config.max_file_bytes)
    except OSError as err:   # (ExportStopped: what was written before it, and the error)
        raise FeedbackNotExported(f"{err}; run the same command again once it can be written: they are kept, the "
                                  "rest exported") from err
    total = summary.exported + summary.already_present
    damaged = summary.missing_images + summary.corrupt_images
    print(f"Feedback: {total} user-labelled images from {store} ({summary.exported - summary.replaced} new"
          + (f"; {summary.replaced} written again in the other format under another file limit" if summary.replaced
             else "")
          + (f"; {summary.missing_images} missing and {summary.corrupt_images} corrupt images skipped" if damaged
             else "")
          + (f"; {summary.damaged_kept} images gone or corrupt in the store since an earlier export, its copies "
             f"in {out} trained on" if summary.damaged_kept else "")
          + (f"; {summary.moved} of rows relabelled since moved to their new class folder" if summary.moved else "")
          + (f"; {summary.removed} files no longer in the store removed from {out}" if summary.removed else "")
          + (f"; {unknown_labels_note(summary.unknown_labels, store)}" if summary.unknown_labels else "")
          + ")", flush=True)
    return out if total else None


def estimated_budget(config: Config, feedback_root: str | None = None) -> configs.TrainingBudget:
    """The Trainer's budget as far as it is known before the pipeline runs: the data root's images times the
    train share of the split, plus the feedback images (always trained on, each :func:`feedback_copies` times).
    The Trainer sizes it again from the examples it gets (files that turn out unusable are not among them, and the
    hash split is not exact)."""
    from components.image_example_gen import count_candidates
    images = (round(count_candidates(config.data_root) * train_share(config))
              + count_candidates(feedback_root) * feedback_copies(config, feedback_root))
    return configs.config_budget(images, config)


def train_share(config: Config) -> float:
    return config.train_buckets / (config.train_buckets + config.eval_buckets)


def feedback_copies(config: Config, feedback_root: str | None) -> int:
    """How many times the ExampleGen will write each feedback image into the train split."""
    from components.image_example_gen import feedback_copies as copies, list_inputs
    return copies(config.feedback_repeat, list_inputs(config.data_root),
                  list_inputs(feedback_root) if feedback_root else [], train_share(config))


def describe_feedback_copies(config: Config, feedback_root: str) -> str:
    """The copies of each feedback image, why, and the share of the training images they make (a few images
    stay a small share even at the cap)."""
    from components.image_example_gen import count_candidates
    copies = feedback_copies(config, feedback_root)
    why = "chosen" if config.feedback_repeat else f"{configs.feedback_rule()}; --feedback-repeat N to choose"
    feedback = count_candidates(feedback_root) * copies
    total = round(count_candidates(config.data_root) * train_share(config)) + feedback
    share = f"; {feedback:,} of about {total:,} training images, {feedback / total:.0%}" if total else ""
    return f"Feedback: each image trained {copies} time{'s' if copies != 1 else ''} per epoch ({why}{share})"


def new_run_id() -> str:
    """A run's id, the name of its pipeline_run context in ML Metadata: the time it starts, as LocalDagRunner
    names a run."""
    import datetime
    return datetime.datetime.now().isoformat()


def run_dag(pipeline, run_id: str | None = None) -> str:
    """Runs the pipeline with TFX's LocalDagRunner as the run ``run_id`` (a :func:`new_run_id` without); returns
    the run id. LocalDagRunner names the run from the time as it starts and does not say it: it is chosen here
    and substituted first (LocalDagRunner's substitution then finds nothing left to fill)."""
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    from tfx.orchestration.portable import runtime_parameter_utils
    from tfx.dsl.compiler import constants

    run_id = run_id or new_run_id()

    class _NamedRun(LocalDagRunner):
        def run_with_ir(self, ir, run_options=None):
            runtime_parameter_utils.substitute_runtime_parameter(
                ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
            return super().run_with_ir(ir, run_options)

    _NamedRun().run(pipeline)
    return run_id


def beam_message(err: Exception) -> str:
    """An exception's text without the "[while running '<step>']" Beam appends to a failure inside a pipeline."""
    return str(err).split(" [while running")[0]


FAILURE_LOG = "failed_run.log"   # in the pipeline root: the traceback of the last run a step failed in


def record_failure(config: Config, run_id: str, err: Exception) -> dict:
    """A failed step's exception, as the run's summary says it: {'failed_because': its one line (TensorFlow's
    or the system's words, Beam's "[while running …]" left out), 'failure_log': the file under the pipeline root
    its whole traceback is written to (and logged at DEBUG), for its reader, not the terminal}."""
    import traceback

    from core.files import atomic_write
    text = beam_message(err).strip().splitlines()
    reason = text[0] if text else ""
    if not isinstance(err, (OSError, ValueError)) or not reason:   # their words say what went wrong
        reason = f"{type(err).__name__}: {reason}" if reason else type(err).__name__
    trace = "".join(traceback.format_exception(err))
    pylogging.getLogger(__name__).debug("run %s failed:\n%s", run_id, trace)
    path = os.path.join(config.pipeline_root, FAILURE_LOG)
    try:
        atomic_write(path, f"run {run_id}\n{trace}".encode())
    except OSError:
        path = None
    return {"failed_because": reason, "failure_log": path}


def run(config: Config, enable_cache: bool = True, quiet: bool = False, run_id: str | None = None) -> dict:
    """Runs the pipeline and prints its summary, which it returns. A Pusher that could not write to the serving
    dir (a full disk, no permission) ends the run with the summary's ``push_failed`` saying so: the components
    before it, the gate and the serving check, are done, and their verdicts are still the run's. Any other step
    that fails (an exception other than an empty data set's, which its caller says) ends the run with the
    summary's ``failed_step`` and ``failed_because`` saying which and why (:func:`record_failure`), as far as it
    got: nothing after that step ran, the serving dir is as it was. ``run_id``: the run's (a :func:`new_run_id`
    without)."""
    from tfx.orchestration.metadata import sqlite_metadata_connection_config

    from components.atomic_pusher import PushFailed
    from components.image_example_gen import EmptyDatasetError
    from core.signals import stop_if_requested
    from pipeline.pipeline import create_pipeline
    from pipeline.run_summary import failed_before_any_step, format_summary, served_model, summarize

    started = time.monotonic()
    _quiet_logging(started, quiet)
    os.makedirs(config.pipeline_root, exist_ok=True)
    metadata = sqlite_metadata_connection_config(config.metadata_file)
    print(f"Pipeline: data {config.data_root} → serving {config.serving_dir} "
          f"(artifacts in {config.pipeline_root})", flush=True)
    feedback_root = export_feedback(config)
    if feedback_root:
        print(describe_feedback_copies(config, feedback_root), flush=True)
    forget_removed_models(config)   # before anything reads the last blessed model
    config, not_compared = gate_after_a_split_change(config, feedback_root)   # on the feedback this run trains on
    print(estimated_budget(config, feedback_root).describe(estimated=True), flush=True)
    served = served_model(config.serving_dir)   # before the Pusher: the model the gate's baseline may differ from
    run_id, push_failure, failure = run_id or new_run_id(), None, None
    try:
        run_dag(create_pipeline(
            config, beam_pipeline_args=configs.beam_pipeline_args(config),
            metadata_connection_config=metadata, enable_cache=enable_cache, feedback_root=feedback_root), run_id)
    except PushFailed as err:   # the last component: every other one is done
        push_failure = f"the Pusher could not write to the serving dir {err.base}: {err.reason}"
    except EmptyDatasetError:   # every file was skipped: the ExampleGen's report says why, its caller the error
        raise
    except Exception as err:  # noqa: BLE001 - any step's failure: the summary says which and why, not a traceback
        stop_if_requested()   # one that a stop caused ends the run as stopped
        failure = record_failure(config, run_id, err)
    stop_if_requested()   # a stop whose KeyboardInterrupt was lost inside a component still ends the run as stopped
    wall = time.monotonic() - started
    try:
        summary = summarize(config.metadata_file, not_compared=not_compared, run_id=run_id,   # not a later run's
                            served=served, push_failure=push_failure, failure=failure)
    except LookupError:   # the run failed before ML Metadata recorded it
        if failure is None:
            raise
        summary = failed_before_any_step(run_id, failure, served)
    summary["wall_seconds"] = round(wall, 1)
    print(format_summary(summary, wall), flush=True)
    return summary


def main(argv=None) -> int:
    from core.signals import sigterm_as_interrupt
    configs.warn_unknown_variables()
    try:
        with sigterm_as_interrupt():
            return _main(argv)
    except KeyboardInterrupt:   # Ctrl-C or SIGTERM: one line, not a traceback from wherever the run was
        print("\ninterrupted: the run stopped where it was (a model is pushed whole or not at all); run the same "
              "command again: finished steps are reused from the cache, and unfinished generated letters are "
              "completed first", file=sys.stderr)
        return 130


def remove_last_summary(argv=None) -> None:
    """Removes the file --summary-json names on the command line, before anything can refuse the run (a usage
    error, a bad LETTERS_<FIELD>): a run that ends with no summary (stopped, refused) leaves none, not the last
    run's. A name the flag refuses (a folder, in a missing folder) is left alone, and so is any file that is not a
    run's summary: the flags are not checked yet, and the rules that refuse a --summary-json naming ML Metadata's
    file, a served model's or the feedback store's come after."""
    text = settings.flag_text(build_parser(Config()), "--summary-json", argv)
    try:
        path = flags.output_file(text) if text else None
    except argparse.ArgumentTypeError:
        return
    if path and os.path.isfile(path) and is_run_summary(path):
        os.remove(path)


def is_run_summary(path: str) -> bool:
    """Whether ``path`` holds what :func:`write_summary` writes: a JSON object with the run's id and components."""
    try:
        with open(path, "rb") as f:
            summary = json.loads(f.read(64 * 1024 * 1024))
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and {"run_id", "components"} <= summary.keys()


def _main(argv=None) -> int:
    remove_last_summary(argv)
    config, args = parse_args(argv)
    if args.summary_json and os.path.isfile(args.summary_json):   # the flags' rules passed: whatever it holds, a
        os.remove(args.summary_json)                               # run that ends with no summary leaves none
    for field, path, problem_of in (("pipeline_root", config.pipeline_root, flags.folder_problem),
                                    ("serving_dir", config.serving_dir, flags.folder_problem),
                                    ("metadata_path", config.metadata_file, flags.file_problem)):
        problem = None if flags.is_url(path) else problem_of(path)
        if problem:   # found now, not after the data is read and the model trained; named by what set it
            print(f"error: {flags.named(field, args.given, default=flags.DEFAULT_PATHS[field])}: {problem}",
                  file=sys.stderr)
            return 2
    builtin_root = args.builtin_root   # LETTERS_DATA_ROOT's or data/generated
    if args.data_root_from_env:
        print(f"Data: LETTERS_DATA_ROOT={config.data_root} holds letters the generator did not write: they are "
              "trained on as with --data-root", flush=True)
    if args.data_root is None:
        from pipeline.generate_letters import NoHebrewFontError, NotGeneratedFolder, os_error
        try:
            ensure_default_data(config)
        except (NoHebrewFontError, NotGeneratedFolder) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except OSError as err:   # a data root that cannot be written (or read), named by what set it
            print(f"error: {flags.named('data_root', args.given, default=flags.DEFAULT_PATHS['data_root'])}: "
                  f"{os_error(err)}", file=sys.stderr)
            return 2
        if not config.epochs:
            print(f"The built-in generated letters train {config.generate_epochs} epochs (more do not help on them; "
                  "--epochs N to choose)", flush=True)
        config = configs.generated_budget(config)
    unusable = unusable_letters("--data-root", config.data_root, config)
    if unusable:   # the run ends as the ExampleGen would end it, with a failed run's --summary-json
        return ended_before_any_step(config, args, new_run_id(), unusable)
    hint = small_data_hint(config) if args.data_root is not None else None
    if hint:
        print(hint, flush=True)
    try:
        os.makedirs(config.pipeline_root, exist_ok=True)
    except OSError as err:
        print(f"error: cannot create --pipeline-root {config.pipeline_root}: {err.strerror or err}", file=sys.stderr)
        return 2
    from core.files import LockHeld, exclusive
    metadata_lock = metadata_run_lock(config)
    try:
        with exclusive(os.path.join(config.pipeline_root, RUN_LOCK), wait=False), \
                exclusive(metadata_lock, wait=False):
            return _run_alone(config, args, builtin_root)
    except LockHeld as err:   # two runs would read and write one ML Metadata store and one cache at once
        holder = err.who
        if err.lock_path == metadata_lock:   # a run on another pipeline root with this ML Metadata file
            name = flags.path_names({"--metadata-path": config.metadata_file}, args.given)["--metadata-path"]
            print(f"error: {name} is in use by another run ({holder}); wait for it to end or give another "
                  "--metadata-path", file=sys.stderr)
        else:
            print(f"error: --pipeline-root {config.pipeline_root} is in use by another run ({holder}); wait for it "
                  "to end or give another --pipeline-root", file=sys.stderr)
        return 2


RUN_LOCK = ".run.lock"   # in the pipeline root: held (flock) by the run using it, released by the OS when it ends


def metadata_run_lock(config: Config) -> str:
    """The lock file a run holds (flock) for its ML Metadata file, beside it (``metadata.sqlite.run.lock``), as
    :data:`RUN_LOCK` for its pipeline root: a run on another pipeline root with the same --metadata-path would
    read and write one store and take this run's cached steps from this run's root."""
    return config.metadata_file + RUN_LOCK


def _run_alone(config: Config, args: argparse.Namespace, builtin_root: str) -> int:
    """The run itself, the pipeline root held by this process."""
    pinned_base_model(config, args.base_model)
    config = choose_pretraining(config, args, builtin_root)
    run_id = new_run_id()
    unusable = (unusable_letters("--pretrain-root", config.pretrain_root, config)
                if args.pretrain_root and config.pretrain_root else None)
    if unusable:
        return ended_before_any_step(config, args, run_id, unusable)
    from components import image_example_gen as gen
    from core.feedback import FeedbackStoreError
    from pipeline import run_summary
    try:
        summary = run(config, enable_cache=not args.no_cache, quiet=args.quiet, run_id=run_id)
    except FeedbackStoreError as err:
        return ended_before_any_step(config, args, run_id, str(err), "; --no-feedback runs without it")
    except FeedbackNotExported as err:   # (a full pipeline root: one line, not the OSError's traceback)
        return ended_before_any_step(config, args, run_id, str(err))
    except run_summary.MetadataInUse as err:
        return ended_before_any_step(config, args, run_id, str(err))
    except gen.EmptyDatasetError as err:   # every file was skipped: the ExampleGen report above says why
        return ended_before_any_step(config, args, run_id, beam_message(err))
    write_summary(args, summary)
    cached = "" if args.no_cache else ", finished steps are reused from the cache"
    if summary.get("failed_because"):
        log = f"; the whole traceback is in {summary['failure_log']}" if summary.get("failure_log") else ""
        print(f"error: {run_summary.failed_where(summary)} failed: {summary['failed_because']} (nothing was pushed{log}: run the same command "
              f"again once it is fixed{cached})", file=sys.stderr)
        return 2
    if summary.get("push_failed"):
        checked = " and passed the serving check" if summary.get("serving_validated") else ""
        print(f"error: {summary['push_failed']} (nothing was published; the model was blessed{checked}: run the "
              f"same command again once it can be written{cached})", file=sys.stderr)
        return 2
    return 0


def write_summary(args: argparse.Namespace, summary: dict) -> None:
    """Writes the run's summary to --summary-json, if given."""
    if args.summary_json:
        with open(args.summary_json, "w") as f:
            json.dump(summary, f, indent=2, default=str)


def ended_before_any_step(config: Config, args: argparse.Namespace, run_id: str, reason: str, hint: str = "") -> int:
    """Ends a run that stopped before any step was done (a feedback store it cannot read or export, ML Metadata
    locked, no usable image: found by :func:`unusable_letters` before the pipeline starts, or by the ExampleGen)
    with one error line, ``reason`` and ``hint``, status 2; its --summary-json is a failed
    run's (run_summary.failed_before_any_step: ``failed_because`` the reason, nothing pushed, the version still
    served), not the last run's."""
    from pipeline.run_summary import failed_before_any_step, served_model
    print(f"error: {reason}{hint}", file=sys.stderr)
    write_summary(args, failed_before_any_step(run_id, {"failed_because": reason, "failure_log": None},
                                               served_model(config.serving_dir)))
    return 2


if __name__ == "__main__":
    sys.exit(main())
