"""``letters-feedback``: export, count or import the feedback store's letters (:mod:`core.feedback`).

    letters-feedback export --out DIR     # DIR/<class_folder>/<id>.png, the pipeline's --data-root layout
    letters-feedback stats                # counts per class, as JSON
    letters-feedback import DIR           # store the letters of DIR/<class_folder>/ (core.feedback_import)
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from core import image_io, settings
from core.feedback import DB_FILE, FeedbackStoreError, export_feedback, read_records, summarize
from core.feedback_import import describe, import_folder


def main(argv=None) -> int:
    from core import configs
    from core.configs import Config

    configs.warn_unknown_variables()

    parser = argparse.ArgumentParser(prog="letters-feedback", description=__doc__.split("\n\n")[0])
    try:
        config = Config.from_env()
    except ValueError as err:   # a bad LETTERS_* variable: one line, as the other commands say it
        parser.error(str(err))
    default_feedback_dir = config.feedback_dir
    parser.add_argument("--feedback-dir", default=None,
                        help=f"the store (default: $LETTERS_FEEDBACK_DIR or {Config().feedback_dir})")
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write DIR/<class_folder>/<id>.png (the pipeline reads the store "
                                                 "itself: local_runner.py --feedback-dir)")
    export.add_argument("--out", required=True, type=settings.path,
                        help="output folder (created; local: copy it to a bucket after)")
    export.add_argument("--overwrite", action="store_true", help="rewrite files already exported")
    commands.add_parser("stats", help="print counts per class as JSON")
    imports = commands.add_parser("import", help="store the images of DIR/<class_folder>/ as labelled feedback "
                                                 "(the store is created if missing; nothing is stored twice)")
    imports.add_argument("folder", metavar="DIR", help="one folder per class, as the pipeline's --data-root")
    args = parser.parse_args(argv)
    feedback_dir = settings.path_or_default(args.feedback_dir, default_feedback_dir)
    if args.command == "import":   # with the pipeline's file limits, so that nothing stored is dropped in training
        return import_command(feedback_dir, args.folder, config.max_file_bytes, config.max_image_pixels,
                              default_feedback_dir)
    if not os.path.exists(os.path.join(feedback_dir, DB_FILE)):
        print(f"error: no feedback store at {feedback_dir} (expected {DB_FILE} there)", file=sys.stderr)
        return 2
    if args.command == "export" and settings.is_url(args.out):
        parser.error(f"--out {args.out}: the export is written to a local folder; copy that to the bucket "
                     "(e.g. gsutil -m rsync -r DIR gs://…/feedback)")
    if args.command == "export":
        try:
            summary = export_feedback(feedback_dir, args.out, overwrite=args.overwrite)
        except (FeedbackStoreError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"exported {summary.exported} new image(s) to {summary.out_dir} "
              f"({summary.already_present} already there, {summary.missing_images} missing, "
              f"{summary.corrupt_images} corrupt)")
        print(f"the next pipeline run trains on the store itself: python local_runner.py --feedback-dir {feedback_dir}")
        return 0
    try:   # read-only: a store on a read-only mount is counted too
        print(json.dumps(summarize(read_records(feedback_dir)), indent=2))
    except FeedbackStoreError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def import_command(feedback_dir: str, folder: str, max_bytes: int = image_io.DEFAULT_MAX_BYTES,
                   max_pixels: int = image_io.DEFAULT_MAX_PIXELS, default_dir: str | None = None) -> int:
    """``letters-feedback import``; ``default_dir``: the store ``make retrain`` reads."""
    try:
        summary = import_folder(feedback_dir, folder, max_bytes=max_bytes, max_pixels=max_pixels,
                                progress=sys.stderr.isatty())
    except (FeedbackStoreError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(describe(summary))
    if not summary.imported and not summary.already_present:
        print(f"error: no usable image in {summary.source}: every file was skipped", file=sys.stderr)
        return 2
    if os.path.abspath(feedback_dir) == os.path.abspath(default_dir or feedback_dir):
        print(f"the next pipeline run trains on them: make retrain (or python local_runner.py --feedback-dir "
              f"{feedback_dir})")
    else:   # make retrain reads $LETTERS_FEEDBACK_DIR or outputs/feedback, not this store
        print(f"the next pipeline run trains on them: python local_runner.py --feedback-dir {feedback_dir} "
              f"(or LETTERS_FEEDBACK_DIR={feedback_dir} make retrain)")
    return 0


if __name__ == "__main__":
    import core  # noqa: F401  (the project's entry-point rule; nothing here loads TensorFlow)

    sys.exit(main())
