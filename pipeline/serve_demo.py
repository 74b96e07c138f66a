"""The end of ``make demo``: the embedded TF Serving server on the Pusher's directory, and the web client.

    letters-demo-serve [--serving-port 8501] [--web-port 8080]

Both bind 127.0.0.1. The model server reads ``models.config`` beside the serving dir (written to serve the
latest version if absent) and polls it, so ``letters-releases promote`` moves its labels. A version it fails to
load is not retried (``--max_num_load_retries=0``: the Pusher renames complete versions into place, so a retry
would fail again), so a promote to it ends at once with the server's error. Refused before anything starts: a
busy or repeated port, and a config that would serve a version folder a server cannot load or none at all.
Prints the page's URL, then runs until Ctrl-C (or SIGTERM), which stops both cleanly.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from core import configs
from core.model_dirs import holds_saved_model, not_a_directory, resolve_model_dir
from core.signals import raise_interrupt
from pipeline import releases
from pipeline.flags import absolute, defaults_from_env, path_or_default
from serving import versions as serving_versions
from serving.client import RestConnection, ServingUnavailable, version_states


MONITORING_CONFIG = configs.PROJECT_ROOT / "serving" / "deploy" / "monitoring.config"   # the deployment's own
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"                                   # its path


def _wait_until_up(base_url: str, path: str, proc: subprocess.Popen, what: str, timeout: float) -> object:
    """Polls ``GET base_url + path`` until it answers 200; returns the decoded body."""
    connection = RestConnection(base_url, timeout=2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            status, body = connection.request("GET", path)
            if status == 200:
                return body
        except ServingUnavailable:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not answer {base_url}{path} within {timeout:.0f} s")


def _port_in_use(port: int) -> bool:
    """Whether something already listens on 127.0.0.1:``port`` (another server would answer in our place)."""
    if not port:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _port(text: str) -> int:
    """argparse type: a TCP port number."""
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {port}")
    return port


def _known_port(text: str) -> int:
    """argparse type: a port this command can wait on (not 0, "any free port": it would not know which)."""
    port = _port(text)
    if port == 0:
        raise argparse.ArgumentTypeError("0 (any free port) cannot be waited on here: give a port number")
    return port


def _default_web_port(parser: argparse.ArgumentParser) -> int:
    """LETTERS_WEB_PORT, which the web client reads too (web/config.py), or 8080; a usage error if it is no port.
    Read only when --web-port is not given, after the parse (so that --help and the flag are never blocked by it)."""
    text = os.environ.get("LETTERS_WEB_PORT") or "8080"   # empty = unset, as every LETTERS_* setting
    try:
        return _known_port(text)
    except (ValueError, argparse.ArgumentTypeError):
        parser.error(f"LETTERS_WEB_PORT={text!r} is not a port (1..65535); --web-port chooses one")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def no_model_problem(serving_dir: Path, detail: str = "") -> str:
    """Why ``serving_dir`` holds no model to serve (``make demo`` serves it even when the run before pushed
    nothing, as a run whose model was not blessed ends well): the pipeline pushes a model only when the gate blesses
    it and the serving check passes it; what the last run of the pipeline root that pushes here (the runner's
    default, as make demo runs it) decided, when ML Metadata says."""
    how = ("the pipeline pushes a model only when the gate blesses it (top-1 accuracy at least --accuracy-floor, "
           "and no worse than the last blessed model by more than --max-regression) and the serving check passes it")
    none = f"no pushed model in {serving_dir}" + (f" ({detail})" if detail else "")
    verdict = last_run_verdict(serving_dir)
    if verdict:
        return f"{none}; {verdict}: {how} (the run's closing summary says more)"
    return f"{none}; {how}: run it (make pipeline); a run that pushes nothing says why in its closing summary"


def last_run_verdict(serving_dir: Path) -> str | None:
    """What kept the newest run of the default pipeline root from pushing into ``serving_dir``: "the last pipeline
    run (…) did not bless its model (<the gate's failures>)" or "… blessed its model; the serving check refused it
    (…)"; None when that root records no run, pushes elsewhere, pushed, or cannot be read."""
    metadata = defaults_from_env().metadata_file
    if not os.path.exists(metadata):
        return None
    try:
        from pipeline.monitor.retrain import recorded_folders
        from pipeline.run_summary import summarize
        pushed_to = recorded_folders(metadata).serving_dir
        if not pushed_to or os.path.realpath(pushed_to) != os.path.realpath(serving_dir):
            return None
        summary = summarize(metadata)
    except Exception:  # noqa: BLE001 - an old, foreign or busy store: the general advice stands
        return None
    run = f"the last pipeline run ({summary['run_id']}, {metadata})"
    if summary.get("blessed") is False:
        failures = "; ".join(summary.get("validation_failures") or [])
        return f"{run} did not bless its model" + (f" ({failures})" if failures else "")
    if summary.get("serving_validated") is False:
        failure = summary.get("serving_validation", {}).get("failure")
        return f"{run} blessed its model; the serving check refused it" + (f" ({failure})" if failure else "")
    return None


def config_problem(config_file: str, serving_dir: Path) -> str | None:
    """Why ``config_file`` would not serve the letters model of ``serving_dir`` (the folder just checked for a
    pushed model), or None."""
    try:
        config = releases.load_config(config_file)
    except ValueError as err:
        return str(err)
    model = next((m for m in config.model_config_list.config if m.name == configs.MODEL_NAME), None)
    if model is None:
        return (f"{config_file} serves no model named {configs.MODEL_NAME!r}, the name the web client asks for: "
                "fix it, or remove it and a new one is written")
    if os.path.realpath(model.base_path) != os.path.realpath(serving_dir):
        return (f"{config_file} serves {configs.MODEL_NAME} from {model.base_path}, not from {serving_dir}: give "
                f"--serving-dir {model.base_path}, or fix its base_path (or remove it and a new one is written)")
    return served_version_problem(model, config_file, serving_dir)


def served_version_problem(model, config_file: str, serving_dir: Path) -> str | None:
    """Why the versions ``model``'s policy picks from ``serving_dir`` would not serve, or None: none at all (no
    version folder, or its ``specific`` versions are all missing), or one the server cannot load
    (``releases.version_problem``: the newest folder half-written, say, which the ``latest`` policy picks even when
    an older one is complete)."""
    found = serving_versions.list_versions(str(serving_dir), configs.MODEL_NAME, warn=False,
                                           policy=model.model_version_policy) or {}
    served = serving_versions.aspired_versions(model.model_version_policy, found, configs.MODEL_NAME, warn=False)
    if not served and model.model_version_policy.WhichOneof("policy_choice") != "specific":   # latest or all
        return no_model_problem(serving_dir, "no folder named for a version the server reads, an integer below 2^63")
    if not served:
        wanted = ", ".join(map(str, model.model_version_policy.specific.versions))
        return (f"{config_file} serves versions {wanted} of {configs.MODEL_NAME} (specific), none of which is in "
                f"{serving_dir}: promote a pushed version (letters-releases promote --server-url ''), or remove it "
                "and a new one is written")
    for version in sorted(served, reverse=True):
        folder = served[version]
        problem = releases.version_problem(folder)
        if problem:
            return (f"version folder {folder}, which {config_file} serves, is {problem}: a server cannot load it; "
                    "finish or remove it")
    return None


def main(argv=None) -> int:
    unknown = configs.warn_unknown_variables()
    defaults = defaults_from_env()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--serving-dir", default=defaults.serving_dir,
                   help="TF Serving model base directory the pipeline pushes <version>/ into, whose models are served "
                        "(default: %(default)s; $LETTERS_SERVING_DIR; empty: the default)")
    p.add_argument("--serving-port", type=_known_port, default=8501,
                   help="the model server's REST port (default: %(default)s)")
    p.add_argument("--grpc-port", type=_port, default=8500,
                   help="the model server's gRPC port (default: %(default)s; 0 = no gRPC; not the REST port: the "
                        "server would skip REST)")
    p.add_argument("--web-port", type=_known_port, default=None,
                   help="the web client's port (default: $LETTERS_WEB_PORT, else 8080)")
    p.add_argument("--model-config-file", default=None,
                   help="the models.config to serve from and poll (default: the one beside the serving dir, which "
                        "`letters-releases promote` edits; written to serve the latest version if absent)")
    args = p.parse_args(argv)
    if args.web_port is None:
        args.web_port = _default_web_port(p)
    flags = {"serving-port": args.serving_port, "grpc-port": args.grpc_port, "web-port": args.web_port}
    same = [f"--{flag}" for flag, port in flags.items() if port and list(flags.values()).count(port) > 1]
    if same:   # the model server would skip its REST API (as server.cc does), or the web client fail to bind
        print(f"error: {' and '.join(same)} are the same port ({flags[same[0][2:]]}); give each its own",
              file=sys.stderr)
        return 2
    # absolute ("~" expanded; empty: the default): the servers run in the project root, the paths were given here
    serving_dir = Path(path_or_default(args.serving_dir, defaults.serving_dir))
    args.model_config_file = path_or_default(args.model_config_file, "")
    if holds_saved_model(str(serving_dir)):   # a version folder: the server serves the folder above it
        print(f"error: {serving_dir} is a version folder; give its serving dir, {serving_dir.parent}",
              file=sys.stderr)
        return 2
    there = next((folder for folder in (serving_dir, *serving_dir.parents) if folder.exists()), None)
    if there is not None and not there.is_dir():   # a file where it (or a folder above it) would be: none pushes there
        print(f"error: {not_a_directory(str(there))}", file=sys.stderr)
        return 2
    try:   # a version folder with its saved_model.pb or .pbtxt (an empty or half-written one is no model to serve)
        resolve_model_dir(str(serving_dir))
    except FileNotFoundError:
        print(f"error: {no_model_problem(serving_dir)}", file=sys.stderr)
        return 2
    serving_url = f"http://127.0.0.1:{args.serving_port}"
    config_file = args.model_config_file or releases.default_config_file(defaults.replace(serving_dir=str(serving_dir)))
    if not args.model_config_file and releases.ensure_config(config_file, str(serving_dir)):
        print(f"Wrote {config_file} (the latest version; `letters-releases promote` adds labels)")
    problem = config_problem(config_file, serving_dir)
    if problem:   # it would serve another folder (a moved or renamed serving dir), or another name
        print(f"error: {problem}", file=sys.stderr)
        return 2
    serving_cmd = [sys.executable, "-m", "serving", f"--rest_api_port={args.serving_port}", f"--port={args.grpc_port}",
                   "--file_system_poll_wait_seconds=2", "--enable_batching=true",
                   f"--model_config_file={config_file}", "--model_config_file_poll_wait_seconds=2",
                   "--allow_version_labels_for_unavailable_models=true",   # labels in the startup config
                   "--max_num_load_retries=0",   # a failed load ends at once (END with its error): see the docstring
                   f"--monitoring_config_file={MONITORING_CONFIG}"]          # Prometheus, for letters-monitor
    web_cmd = [sys.executable, "-m", "web", "--host=127.0.0.1", f"--port={args.web_port}",   # whatever LETTERS_WEB_HOST
               f"--tf-serving-url={serving_url}",
               f"--request-log-dir={absolute(defaults.request_log_dir)}",
               f"--feedback-dir={absolute(defaults.feedback_dir)}", f"--model-name={configs.MODEL_NAME}"]
    busy = [f"{what} port {port} (--{flag})" for what, port, flag in
            (("the model server's REST", args.serving_port, "serving-port"),
             ("the model server's gRPC", args.grpc_port, "grpc-port"), ("the web client's", args.web_port, "web-port"))
            if _port_in_use(port)]
    if busy:   # a server already there would answer in our place, and ours would fail to start
        print(f"error: something already listens on {', '.join(busy)}; stop it or choose another port",
              file=sys.stderr)
        return 2
    # the children read none of the variables warned of: left out, they are not warned of twice more
    env = {name: value for name, value in os.environ.items() if name not in unknown}
    procs, names = [], ["the model server", "the web client"]
    signal.signal(signal.SIGTERM, raise_interrupt)   # before the first child, so that no child outlives us
    try:
        procs.append(subprocess.Popen(serving_cmd, cwd=configs.WORK_ROOT, env=env))
        body = _wait_until_up(serving_url, f"/v1/models/{configs.MODEL_NAME}", procs[0], "the model server", 180)
        versions = ", ".join(v for v, state in version_states(body).items() if state == "AVAILABLE")
        procs.append(subprocess.Popen(web_cmd, cwd=configs.WORK_ROOT, env=env))
        web_url = f"http://127.0.0.1:{args.web_port}/"
        _wait_until_up(web_url, "/healthz", procs[1], "the web client", 60)
        grpc = f", gRPC 127.0.0.1:{args.grpc_port}" if args.grpc_port else ""
        print(f"\nModel server (TF Serving REST API): {serving_url}/v1/models/{configs.MODEL_NAME}{grpc} "
              f"(version {versions}, batching on; Prometheus: {serving_url}{PROMETHEUS_PATH})\n"
              f"Web client: {web_url}\nCtrl-C stops both.", flush=True)
        while all(proc.poll() is None for proc in procs):
            time.sleep(0.5)
        dead = next(i for i, proc in enumerate(procs) if proc.poll() is not None)
        print(f"error: {names[dead]} exited with code {procs[dead].returncode}; stopping the other",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        # Stopping the children is not to be cut short by a second Ctrl-C or SIGTERM.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for proc in reversed(procs):
            _stop(proc)


if __name__ == "__main__":
    sys.exit(main())
