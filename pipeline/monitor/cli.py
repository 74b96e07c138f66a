"""``letters-monitor`` / ``python -m pipeline.monitor``: how the served model is doing.

    letters-monitor --logs /var/log/letters/requests --pipeline-root outputs/pipeline --out outputs/monitor
    letters-monitor ... --metrics-url http://127.0.0.1:8501/monitoring/prometheus/metrics --window 6h
    letters-monitor ... --retrain-when accuracy -- --epochs 8   # local_runner on the monitored pipeline (its
                                                                # data and serving dir); args after -- go to it
    letters-monitor ... --watch 3600                            # every hour

Exit status: 0 no threshold crossed, 1 a threshold crossed (see report.html / monitor.json; a --metrics-url page that
cannot be read is one, of any address of a host that has several: their pages are summed), 2 usage error (bad flag or
setting, a --logs that does not exist or cannot be listed, pipeline metadata or an artifact it records (the training
split, the eval statistics) missing when answers are to be judged or --retrain-when decides, a request log from which
no answer could be read: its files empty, their data unreadable or not PredictionLogs, or other models' records only,
named; with no request log at all (none by default, or a folder that holds no log yet, as the web client's before
its first answer), said on stderr, only feedback and server metrics are judged (no feedback store,
said there too, is no feedback yet), and a --metrics-url page of other models' requests only is an error naming
them), 3 the retraining run it started failed, 4 the pass could not finish: its outputs could not be written (a full
disk, say; each file is whole or left as it was) or an unexpected error (shown with its traceback). With --watch a
pass that ends 3 or 4 is reported and the next pass runs. Thresholds are core/configs.py's ``monitor_*`` fields:
LETTERS_MONITOR_<NAME> environment variables or the flags below.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import traceback

from core import configs, settings
from core.signals import sigterm_as_interrupt
from core.configs import Config
from pipeline import flags

OK, CROSSED, USAGE, RETRAIN_FAILED, NOT_FINISHED, INTERRUPTED = 0, 1, 2, 3, 4, 130
THRESHOLD_FLAGS = {
    "monitor_label_js": "predicted classes vs eval labels: Jensen-Shannon divergence above this is drift",
    "monitor_label_linf": "predicted classes vs eval labels: L-infinity distance above this is drift",
    "monitor_feature_js": "image features vs training: Jensen-Shannon divergence above this is skew",
    "monitor_feature_linf": "image format vs training: L-infinity distance above this is skew",
    "monitor_low_confidence": "a top-1 score below this is a low-confidence answer",
    "monitor_max_low_confidence_share": "more low-confidence answers than this share is an alarm",
    "monitor_min_accuracy": "live accuracy floor (alarm when the 95% interval is entirely below)",
    "monitor_min_requests": "a window with fewer answers is shown but not judged",
    "monitor_min_feedback": "a version with fewer feedback rows is shown but not judged",
    "monitor_max_unusable": "a window's share of answers that cannot be used (none, the wrong shape, not finite: the "
                            "served model's fault) above this is an alarm",
    "monitor_max_error_share": "server: share of requests that failed on the server's side above this is an alarm "
                               "(INVALID_ARGUMENT and NOT_FOUND, the client's mistakes, are counted apart)",
    "monitor_max_latency_ms": "server: p95 latency above this (ms) is an alarm",
}


def build_parser(defaults: Config) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="letters-monitor", description=__doc__.split("\n\n")[0],
                                formatter_class=settings.DefaultsHelpFormatter,
                                epilog="exit status: 0 ok, 1 threshold crossed (a metrics page that cannot be read "
                                       "too), 2 usage error, 3 retraining failed, 4 outputs not written or an "
                                       "unexpected error, 130 stopped (Ctrl-C or SIGTERM)")
    p.add_argument("--logs", default=defaults.request_log_dir if os.path.isdir(defaults.request_log_dir) else None,
                   help="request log: a folder of TFRecord PredictionLog files (all of them), one such file, or a writer's "
                        "filename_prefix (PREFIX-<UTC time>-<n>.tfrecord files only; gs:// too); default: "
                        "where make demo's web client logs, if it exists; without one, or a folder that holds no log "
                        "yet, only feedback and metrics are read")
    p.add_argument("--model", default=configs.MODEL_NAME,
                   help="the served model judged: the log's records of other models (log_metadata.model_spec.name; "
                        "models with the same logging_config share one writer), the metrics page's requests of "
                        "other models (model_name) and the feedback of other models (the model the web client "
                        "asked; a row naming no model, imported or stored before rows named it, is this model's "
                        "only while no row names another model) are counted and left out; a log, or without one a "
                        "page, of other models only is an error (status 2) naming them")
    p.add_argument("--pipeline-root", default=defaults.pipeline_root,
                   help="the pipeline root whose ML Metadata and artifacts are the reference")
    p.add_argument("--metadata-path", default=None,
                   help=f"ML Metadata: a SQLite file (default: {flags.metadata_default(defaults)}) or "
                        "grpc://HOST:PORT (Kubeflow's metadata-grpc-service)")
    p.add_argument("--feedback-dir", default=defaults.feedback_dir, help="the web client's feedback store")
    p.add_argument("--metrics-url", default=None,
                   help="a model server's Prometheus page (http(s)://…/monitoring/prometheus/metrics) for latency "
                        "and errors; a host with several addresses (a headless Service's pods) is each address's "
                        "page, summed; a page that cannot be read, or is not Prometheus text, is an alarm")
    p.add_argument("--out", default="", type=lambda path: flags.output_dir(path) if path else "",
                   help="folder for report.html, its PNGs, monitor.json and monitor.prom (default, or empty: "
                        "monitor beside the pipeline root, or beside the default one for a gs:// root)")
    p.add_argument("--window", default="day", help="group answers by day, all, or a duration (6h, 30m, 2d)")
    p.add_argument("--retrain-when", default=None, metavar="POLICY",
                   help="run the pipeline with the feedback when: drift, accuracy or feedback>=N, judged on the "
                        "answers and feedback newer than the last pipeline run that trained (its Trainer ended) "
                        "only; it runs local_runner on this pipeline root and ML Metadata (a SQLite file) with the "
                        "data root and serving dir its last run used, as ML Metadata records them (arguments after "
                        "-- win)")
    p.add_argument("--dry-run", action="store_true",
                   help="with --retrain-when: print the command (fired or not), do not run it")
    p.add_argument("--watch", type=flags.positive_int, default=None, metavar="SECONDS",
                   help="run again every SECONDS (until stopped or --max-runs; a pass that cannot read its inputs, "
                        "status 2, ends it)")
    p.add_argument("--max-runs", type=flags.positive_int, default=None, help="with --watch: stop after this many")
    settings.add_flags(p.add_argument_group("thresholds (core/configs.py, LETTERS_MONITOR_*)"), Config,
                       THRESHOLD_FLAGS, defaults)
    return p


def parse_args(argv=None):
    from pipeline.monitor import retrain, server_metrics, windows

    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    defaults = flags.defaults_from_env()
    parser = build_parser(defaults)
    args = parser.parse_args(argv)
    try:
        config = defaults.replace(**settings.flag_values(args, THRESHOLD_FLAGS))
        args.window_seconds = windows.parse(args.window)
        args.policy = retrain.parse(args.retrain_when) if args.retrain_when else None
    except ValueError as err:
        parser.error(str(err))
    if args.max_runs and not args.watch:
        parser.error("--max-runs needs --watch")
    if not args.model:
        parser.error("--model must name the served model")
    if args.metrics_url and (problem := server_metrics.url_problem(args.metrics_url)):
        parser.error(problem)
    # an empty path flag is its default; absolute: the retraining runs elsewhere
    args.pipeline_root = flags.path_or_default(args.pipeline_root, defaults.pipeline_root)
    args.logs = flags.path_or_default(args.logs, parser.get_default("logs") or "")
    if not args.out:   # beside the pipeline root given, by the flag or LETTERS_PIPELINE_ROOT
        try:
            args.out = flags.output_dir(default_out(args.pipeline_root))
        except argparse.ArgumentTypeError as err:
            parser.error(f"argument --out: {err}")
    config = config.replace(pipeline_root=args.pipeline_root,
                            metadata_path=flags.path_or_default(args.metadata_path, config.metadata_path),
                            feedback_dir=flags.path_or_default(args.feedback_dir, defaults.feedback_dir),
                            request_log_dir=flags.path_or_default(config.request_log_dir, ""))
    _refuse_out_among_logs(parser, argv, args)
    if args.policy and config.metadata_file.startswith("grpc://"):
        parser.error(f"--retrain-when runs the local runner, whose ML Metadata is a SQLite file, not "
                     f"{config.metadata_file}: retrain a Kubeflow pipeline by running it there "
                     "(kubeflow_runner.py --feedback-root)")
    return config, args, extra


def default_out(pipeline_root: str) -> str:
    """The report's folder when --out gives none: ``monitor`` beside the pipeline root, or for a pipeline root in a
    bucket (the report is written locally) beside the default one."""
    root = Config().pipeline_root if flags.is_url(pipeline_root) else pipeline_root
    return os.path.join(os.path.dirname(root.rstrip(os.sep)), "monitor")


def _refuse_out_among_logs(parser: argparse.ArgumentParser, argv: list[str], args) -> None:
    """A usage error (status 2) for an --out that is the --logs folder or lies in it (:func:`pipeline.flags.overlap`:
    by the paths as given or with links resolved): every file under a log folder is read as a request log, so each
    later pass would read the report, its PNGs, monitor.json and monitor.prom as logs. Each path is named by its
    flag when given, else as its default (the request log by LETTERS_REQUEST_LOG_DIR when that set it)."""
    given = settings.given_flags(parser, argv, ("logs", "out"))
    names = {"--out": f"--out ({args.out})" if "out" in given else f"the default --out ({args.out})",
             "--logs": f"--logs ({args.logs})" if "logs" in given else
             flags.named("request_log_dir", given, default=f"the default request log ({args.logs})")}
    why = ("every file under a request log folder is read as a request log, so the next pass would read this one's "
           "report")
    if problem := flags.overlap({"--out": args.out, "--logs": args.logs}, [("--out", "--logs", flags.within, why)],
                                names):
        parser.error(problem)


def _feedback(config: Config) -> list:
    from core.feedback import DB_FILE, read_records

    if not config.feedback_dir:
        return []
    if not os.path.exists(os.path.join(config.feedback_dir, DB_FILE)):   # a note: a new deployment has none yet
        print(f"monitor: feedback: none, no feedback store at {config.feedback_dir} (the web client makes it with "
              "the first answer confirmed or corrected; --feedback-dir names one)", file=sys.stderr)
        return []
    return read_records(config.feedback_dir)   # read-only: the CronJob mounts the store so


def _nothing_read(logs) -> str | None:
    """What a request log read gave instead of the model's answers — its files empty, every record unreadable,
    unparsable or not a predict log, or other models' records only (a --model mistyped, say) — or None when it gave
    any (answers, unusable ones, filtered ones). Such a log is a corrupt file, another format or another model's,
    not a quiet day: judged, it would be an all-clear. ``logs`` has been read (request_logs.each_answer): its
    counts say what it gave."""
    from pipeline.monitor.report import counts

    if logs.answered or logs.unusable or logs.filtered:
        return None
    files = ", ".join(logs.files[:5]) + (f" and {len(logs.files) - 5} more" if len(logs.files) > 5 else "")
    found = [f"{n} × {reason} (first: {logs.examples[reason]})" for reason, n in logs.problems.items()]
    if logs.other_models:
        found.append(f"no record of model {logs.model} (--model), other models' only: {counts(logs.other_models)}")
    return (f"no answer could be read from the request log {logs.prefix} ({len(logs.files)} file(s): {files}): "
            + ("; ".join(found) or "its files hold no record"))


def _nothing_served(server: dict) -> str | None:
    """Why the --metrics-url page's summary holds nothing of the model when it holds other models' requests only
    (none of the model's, not even a status check), else None: judged without the model's answers, it would be an
    all-clear on another model's server or a --model mistyped."""
    from pipeline.monitor.report import counts

    if server.get("error") or server["requests"] or server["status_checks"] or not server["other_models"]:
        return None
    return (f"no request of model {server['model']} (--model) on the metrics page {server['url']}, other models' "
            f"only: {counts(server['other_models'])}")


def _server(args) -> dict | None:
    """The --metrics-url page's summary with its ``url``, ``{'url', 'error'}`` when it cannot be read, None
    without one."""
    from pipeline.monitor import server_metrics

    if not args.metrics_url:
        return None
    try:
        return {"url": args.metrics_url, **server_metrics.read(args.metrics_url, args.model)}
    except server_metrics.Unreadable as err:   # an alarm (checks.alarms), not a pass without a server
        return {"url": args.metrics_url, "error": str(err)}


def once(config: Config, args, extra: list[str]) -> int:
    """One pass: read, judge, write the report, maybe retrain. Returns the exit status."""
    from core.feedback import FeedbackStoreError
    from pipeline.monitor import checks, live_accuracy, reference, report, request_logs, retrain, server_metrics

    path, why = args.logs, "does not exist"
    if path == config.request_log_dir and not os.path.isdir(path):
        path = None   # the default folder, removed since the flags were read (--watch)
    if path and request_logs.holds_no_log(path):
        path, why = None, "holds no log yet"   # a folder the web client made at its start, before its first answer
    if not path:   # no log: say so rather than report an all-clear on nothing
        where = (f"--logs {args.logs} {why}" if args.logs and args.logs != config.request_log_dir else
                 f"the default, {config.request_log_dir}, {why}; --logs names one")
        print(f"monitor: no request log ({where}): served answers are not judged, only feedback and server metrics",
              file=sys.stderr)
    traffic = checks.Traffic(args.window_seconds, max_pixels=config.max_image_pixels)
    try:
        logs = request_logs.open_logs(path, args.model) if path else None
        if logs and request_logs.beside(path, logs.files):
            print(f"monitor: --logs {path} is a folder holding no log file: read the {len(logs.files)} file(s) beside "
                  f"it that a writer given it as its filename_prefix writes ({path}-<UTC time>-<n>.tfrecord)",
                  file=sys.stderr)
        if logs:   # read as a stream: each answer's image features, not its image, are kept
            traffic.add_all(request_logs.each_answer(logs))
            if unread := _nothing_read(logs):
                print(f"error: {unread}", file=sys.stderr)
                return USAGE
        ref = reference.load(config.metadata_file) if logs and logs.answered or args.policy else None
        records, other_feedback = live_accuracy.of_model(_feedback(config), args.model)
        server = _server(args)
        if server and not logs and (unserved := _nothing_served(server)):   # (a log read gave the model's answers)
            print(f"error: {unserved}", file=sys.stderr)
            return USAGE
        # judging answers reads the reference's training split: missing, it is a reference that cannot be read too
        result = checks.run(traffic, records, ref, server, config, logs.unusable if logs else [])
    except (request_logs.LogNotFound, reference.NoReference, FeedbackStoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return USAGE
    result["logs"] = logs.to_json() if logs else None
    result["feedback_other_models"] = other_feedback
    if args.policy:
        fires, why = retrain.decide(args.policy, result, records, ref.trained_runs if ref else (), config,
                                    result["generated_at"])
        cmd, defaults = retrain.command(config, retrain.recorded_folders(config.metadata_file), extra)
        result["retrain"] = {"policy": str(args.policy), "fires": fires, "why": why, "command": cmd,
                             "defaults": defaults,
                             "text": f"{args.policy}: {'fires' if fires else 'does not fire'} — {why}"}
        print(f"retrain ({args.policy}): {'fires' if fires else 'no'} — {why}")
        if fires or args.dry_run:
            if defaults:
                print(f"retrain: {defaults}")
            print(f"retrain command{'' if fires else ' (when it fires)'}: {shlex.join(cmd)}", flush=True)
            if not args.dry_run:
                from core.configs import WORK_ROOT
                result["retrain"]["returncode"] = retrain.run(cmd, cwd=str(WORK_ROOT))
                reference.training_features.cache_clear()
    try:
        html = report.write_all(result, args.out)["html"]
    except report.NotWritten as err:
        print(f"error: {err}", file=sys.stderr)
        html = None
    for alarm in result["alarms"]:
        print(f"ALARM {alarm['text']}")
    if logs and logs.problems:
        print("log problems: " + ", ".join(f"{n} × {r}" for r, n in logs.problems.items()))
    if logs and logs.other_models:
        print(f"other models' records left out (model {logs.model} is judged): {report.counts(logs.other_models)}")
    if other_feedback:
        print(f"other models' feedback left out (model {args.model} is judged): {report.counts(other_feedback)}")
    if server and (unread := server_metrics.status_unread(server)):
        print(unread)
    if server and (others := server_metrics.left_out(server)):
        print(f"other models' server requests left out (model {server['model']} is judged): {report.counts(others)}")
    ahead = result["future_dated"]
    if ahead["answers"] or ahead["feedback"]:
        print(f"warning: {ahead['answers']} answers and {ahead['feedback']} feedback rows are dated after now "
              "(a clock ahead?): left out of the checks", file=sys.stderr)
    if logs and logs.filtered:
        print(f"{logs.filtered} answers without probabilities (filtered by the request: its output_filter left "
              "them out): not checked")
    answers = logs.answered if logs else 0
    print(f"monitor: {answers} answers, {len(records)} feedback rows, {len(result['alarms'])} alarm(s); "
          + (f"report {html}" if html else "report NOT written"), flush=True)
    if result.get("retrain", {}).get("returncode", 0) != 0:
        print(f"error: the retraining run failed (exit {result['retrain']['returncode']})", file=sys.stderr)
        return RETRAIN_FAILED
    if html is None:
        return NOT_FINISHED
    return CROSSED if result["crossed"] else OK


def guarded(config: Config, args, extra: list[str]) -> int:
    """:func:`once`, with an unexpected error shown (traceback, then one line) as status 4: Python's own exit
    status for it, 1, means a threshold crossed, and under --watch it had ended the loop."""
    try:
        return once(config, args, extra)
    except Exception:   # noqa: BLE001 - a bug or an environment failure; KeyboardInterrupt still stops
        traceback.print_exc()
        print("error: the monitoring pass failed (the traceback above)", file=sys.stderr, flush=True)
        return NOT_FINISHED


def main(argv=None) -> int:
    configs.warn_unknown_variables()
    config, args, extra = parse_args(argv)
    runs, status = 0, OK
    try:
        with sigterm_as_interrupt():   # --watch runs until stopped: Ctrl-C or a service manager's SIGTERM
            while True:
                status = guarded(config, args, extra)
                runs += 1
                if not args.watch or status == USAGE or (args.max_runs and runs >= args.max_runs):
                    return status
                time.sleep(args.watch)
    except KeyboardInterrupt:
        print(f"monitor: stopped after {runs} pass(es)", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
