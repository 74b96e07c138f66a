"""``letters-feedback``: export, count, import, list, relabel or remove the feedback store's letters.

    letters-feedback export --out DIR     # DIR/<class_folder>/<id>.png, the pipeline's --data-root layout
    letters-feedback stats                # counts per class, as JSON
    letters-feedback import DIR           # store the letters of DIR/<class_folder>/ (core.feedback_import)
    letters-feedback list [--label L]     # the rows: id, label, predicted label, time, source
    letters-feedback relabel ID LABEL     # correct a row's label (ID: the whole id or its start, e.g. 8 characters)
    letters-feedback remove ID [ID ...]   # remove rows and their images

The store: :mod:`core.feedback`.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import sys

from core import image_io, settings
from core.feedback import (DB_FILE, Feedback, FeedbackError, FeedbackStore, FeedbackStoreError, export_feedback,
                           quoted_store, read_records, store_folder, summarize, unknown_labels_note,
                           with_pixel_digests)
from core.feedback_import import ImportSummary, describe, import_folder
from core.labels import CLASS_NAMES, label_index
from core.signals import sigterm_as_interrupt

INTERRUPTED = 130   # stopped by Ctrl-C or SIGTERM, as the project's other commands end


def main(argv=None) -> int:
    """Runs the command; a reader that stops reading its output (``| head``) ends it quietly, as Unix tools end:
    exit status 141 (128 + SIGPIPE), no traceback. Ctrl-C (or SIGTERM) ends it with one ``interrupted:`` line,
    status 130: import, export, relabel and remove say there what they had done."""
    try:
        with sigterm_as_interrupt():   # a stopped job (timeout, kill) ends as Ctrl-C does
            status = _main(argv)
            sys.stdout.flush()   # (what is still buffered: a reader gone is found here, not at exit)
        return status
    except KeyboardInterrupt:   # (stats, list, or before the command's work: nothing was changed)
        print("interrupted: nothing changed", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # Nothing more reaches the reader: stdout goes to devnull, so that Python's flush at exit raises no more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _main(argv) -> int:
    from core import configs
    from core.configs import Config

    configs.warn_unknown_variables()

    parser = argparse.ArgumentParser(prog="letters-feedback", description=__doc__.split("\n\n")[0])
    try:
        config = Config.from_env()
    except ValueError as err:   # a bad LETTERS_* variable: one line, as the other commands say it
        parser.error(str(err))
    default_feedback_dir = config.feedback_dir
    store_help = f"the store (default: $LETTERS_FEEDBACK_DIR or {Config().feedback_dir})"
    parser.add_argument("--feedback-dir", default=None, help=store_help)
    # --feedback-dir after the command too (the one after read when both are given): SUPPRESS, so that a command
    # without it keeps the value given before it, which its default would overwrite.
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--feedback-dir", default=argparse.SUPPRESS, help=store_help)
    commands = parser.add_subparsers(dest="command", required=True)
    add_command = functools.partial(commands.add_parser, parents=[store])
    export = add_command("export", help="write DIR/<class_folder>/<id>.png (the pipeline reads the store "
                                        "itself: local_runner.py --feedback-dir)")
    export.add_argument("--out", required=True, type=settings.path,
                        help="output folder (created; local: copy it to a bucket after)")
    export.add_argument("--overwrite", action="store_true", help="rewrite files already exported")
    add_command("stats", help="print counts per class as JSON")
    imports = add_command("import", help="store the images of DIR/<class_folder>/ as labelled feedback "
                                        "(the store is created if missing; nothing is stored twice)")
    imports.add_argument("folder", metavar="DIR", type=settings.path,
                         help="one folder per class, as the pipeline's --data-root")
    listing = add_command("list", help="print the rows, oldest first: id, label, predicted label, time, "
                                      "source (the model version and route that answered)")
    listing.add_argument("--label", help="only the rows of this class")
    relabel = add_command("relabel", help="correct a row's label (the next export moves its image)")
    relabel.add_argument("id", metavar="ID", help="the row's id, or its start (the 8 characters messages show)")
    relabel.add_argument("label", metavar="LABEL", help="the right class folder name")
    remove = add_command("remove", help="remove rows and their images (the next export drops them)")
    remove.add_argument("ids", nargs="+", metavar="ID", help="a row's id, or its start")
    args = parser.parse_args(argv)
    if getattr(args, "label", None) is not None:   # (list --label, relabel's LABEL)
        try:
            label_index(args.label, "label")
        except ValueError as err:
            parser.error(str(err))
    feedback_dir = settings.path_or_default(args.feedback_dir, default_feedback_dir)
    try:   # a URL: the store's own refusal, not "no feedback store at gs://…"
        store_folder(feedback_dir, "read" if args.command in ("export", "stats", "list") else "open")
    except FeedbackStoreError as err:
        parser.error(str(err))
    if args.command == "import":   # with the pipeline's file limits, so that nothing stored is dropped in training
        return import_command(feedback_dir, args.folder, config.max_file_bytes, config.max_image_pixels,
                              default_feedback_dir)
    if not os.path.exists(os.path.join(feedback_dir, DB_FILE)):
        print(f"error: no feedback store at {feedback_dir} (expected {DB_FILE} there)", file=sys.stderr)
        return 2
    if args.command == "export":
        try:
            summary = export_feedback(feedback_dir, args.out, overwrite=args.overwrite,   # the pipeline's file limit
                                      max_file_bytes=config.max_file_bytes)
        except ValueError as err:   # an --out it cannot write to (check_export_folder), found before anything is done
            parser.error(f"--out {err}")
        except FeedbackStoreError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except OSError as err:   # a full disk, a file where a folder goes: the file named, and what was written
            print(f"error: {err}; letters-feedback export again finishes it once the folder can be written (the files "
                  "written are kept)", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"interrupted: {args.out} holds what was exported before the stop, each file whole; letters-feedback "
                  "export again finishes it", file=sys.stderr)
            return INTERRUPTED
        print(f"exported {summary.exported - summary.replaced} new image(s) to {summary.out_dir} ("
              + (f"{summary.replaced} written again in the place of an earlier export's, " if summary.replaced else "")
              + f"{summary.already_present} already there, {summary.missing_images} missing, "
              f"{summary.corrupt_images} corrupt"
              + (f"; {summary.damaged_kept} of those there gone or corrupt in the store, their copies here kept"
                 if summary.damaged_kept else "")
              + (f"; {summary.moved} file(s) of relabelled rows moved to their new class folder" if summary.moved
                 else "")
              + (f"; {summary.removed} file(s) of relabelled or removed rows taken out" if summary.removed else "")
              + (f"; {unknown_labels_note(summary.unknown_labels, feedback_dir)}" if summary.unknown_labels else "")
              + ")")
        print(f"the next pipeline run trains on the store itself: {pipeline_run(feedback_dir)}")
        return 0
    if args.command in ("relabel", "remove"):
        return change_command(feedback_dir, args)
    try:   # read-only: a store on a read-only mount is counted and listed too
        records = read_records(feedback_dir)
    except FeedbackStoreError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.command == "list":
        print("\n".join(list_lines([r for r in records if args.label in (None, r.true_label)])))
    else:   # (the pixel digests a store not yet upgraded lacks, made here: the pictures under two labels are found)
        print(json.dumps(summarize(with_pixel_digests(feedback_dir, records), feedback_dir), indent=2))
    return 0


def list_lines(records: list[Feedback]) -> list[str]:
    """A header and a line per row: id, label, predicted label (- for none), time, source (the model version and
    route that answered; - for a letter stored without a model's answer, as ``import`` stores them)."""
    width = max(map(len, CLASS_NAMES))
    lines = [f"{'id':32}  {'label':{width}}  {'predicted':{width}}  {'time':29}  source"]
    for r in records:
        source = " ".join(part for part in (r.model_version is not None and f"v{r.model_version}", r.route) if part)
        lines.append(f"{r.id:32}  {r.true_label:{width}}  {r.predicted_label or '-':{width}}  {r.created_at:29}  "
                     f"{source or '-'}")
    return lines


def change_command(feedback_dir: str, args: argparse.Namespace) -> int:
    """``letters-feedback relabel`` and ``remove``: each id (or its start) is found first, and nothing is changed
    when one names no row or several. What was changed is printed after the store's work: an error writing it (a
    reader gone, BrokenPipeError) is not the store's, and reaches :func:`main`. A removed row whose image could not
    be deleted (a read-only images folder) is said so, and the reason in an ``error:`` line: status 2, the other
    rows' lines and images as they would have been."""
    errors = []
    try:
        store = FeedbackStore(feedback_dir, warn_later=True)   # (of the store as the change leaves it)
        try:
            if args.command == "relabel":
                before = store.find(args.id)
                after = store.relabel(before.id, args.label)
                lines = [f"{after.id}: {before.true_label} -> {after.true_label}"
                         if after.true_label != before.true_label
                         else f"{after.id}: already {after.true_label}, nothing changed"]
            else:
                removed, not_deleted, gone = store.remove([store.find(record_id).id for record_id in args.ids])
                lines = [f"removed {record.id} ({record.true_label})"
                         + ("; its image not deleted" if record.id in not_deleted
                            else "; its image was gone already" if record.id in gone else " and its image")
                         for record in removed]
                errors = [f"error: the image of {record_id} was not deleted: {err} (its row is removed: nothing "
                          "reads the image; delete it by hand)" for record_id, err in not_deleted.items()]
        finally:
            try:
                store.warn_if_upgraded()
            finally:
                store.close()
    except (FeedbackError, FeedbackStoreError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:   # (the rows are changed in one transaction: all of them or none)
        print("interrupted: the store holds what was changed before the stop (letters-feedback list shows it)",
              file=sys.stderr)
        return INTERRUPTED
    print("\n".join(lines))
    print(f"the next pipeline run trains on the store as it is now ({pipeline_run(feedback_dir)}); an export made "
          "before is brought up to date by letters-feedback export again")
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 2
    return 0


def import_command(feedback_dir: str, folder: str, max_bytes: int = image_io.DEFAULT_MAX_BYTES,
                   max_pixels: int = image_io.DEFAULT_MAX_PIXELS, default_dir: str | None = None) -> int:
    """``letters-feedback import``; ``default_dir``: the store ``make retrain`` reads. An import stopped partway
    (Ctrl-C, a store it cannot write to) says what it had stored and skipped before it stopped."""
    summary = ImportSummary(source=os.path.abspath(folder))
    try:
        summary = import_folder(feedback_dir, folder, max_bytes=max_bytes, max_pixels=max_pixels,
                                progress=sys.stderr.isatty(), summary=summary)
    except KeyboardInterrupt:
        print(f"interrupted: {stored_before(summary, 'the stop')}", file=sys.stderr)
        return INTERRUPTED
    except (FeedbackStoreError, OSError, ValueError) as err:
        if summary.imported or summary.already_present or summary.skipped:   # (it had begun: said, then why not more)
            print(f"stopped by the error below: {stored_before(summary, 'it')}", file=sys.stderr)
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(describe(summary))
    if not summary.imported and not summary.already_present:
        print(f"error: no usable image in {summary.source}: every file was skipped", file=sys.stderr)
        return 2
    if os.path.abspath(feedback_dir) == os.path.abspath(default_dir or feedback_dir):
        print(f"the next pipeline run trains on them: make retrain (or {pipeline_run(feedback_dir)})")
    else:   # make retrain reads $LETTERS_FEEDBACK_DIR or outputs/feedback, not this store
        print(f"the next pipeline run trains on them: {pipeline_run(feedback_dir)} "
              f"(or LETTERS_FEEDBACK_DIR={quoted_store(feedback_dir)} make retrain)")
    return 0


def pipeline_run(feedback_dir: str) -> str:
    """The command of a pipeline run that trains on the store at ``feedback_dir`` (its path quoted for the shell)."""
    return f"python local_runner.py --feedback-dir {quoted_store(feedback_dir)}"


def stored_before(summary: ImportSummary, stop: str) -> str:
    """What an import stopped partway had done (``stop``: what stopped it), and how the rest is stored."""
    return (f"{summary.imported} image(s) of {summary.source} stored before {stop} ({summary.already_present} "
            f"already in the store, {summary.skipped_count} skipped); the rest not looked at: import the folder "
            "again to store them (nothing is stored twice)")


if __name__ == "__main__":
    import core  # noqa: F401  (the project's entry-point rule; nothing here loads TensorFlow)

    sys.exit(main())
