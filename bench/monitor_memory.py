"""Peak memory and wall time of ``python -m pipeline.monitor`` on a request log of a given size.

Writes a synthetic log into a temporary folder — PredictionLog records of 10 generated letters each (the PNGs of
``--images``, ``make demo``'s generated letters by default; ``pipeline.generate_letters`` makes more), answered
confidently by version 1, dated over the last 50 minutes, in 32 MiB files as ``core/request_log.py`` rotates them —
then runs the monitor on it in a subprocess, ``--repeat`` times, and prints its peak RSS (``getrusage`` of the
children), CPU time (user and system, of every thread: on a shared machine the wall time follows the other load)
and wall time, with the medians and the command to reproduce them::

    python -m bench.monitor_memory --size-mib 100 --pipeline-root outputs/pipeline
"""
from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import children, reproduce
from core.signals import sigterm_as_interrupt
from core import configs, request_log
from pipeline.flags import positive_int

IMAGES_PER_RECORD = 10
SPAN_SECONDS = 50 * 60
MONITOR_OK = (0, 1)   # letters-monitor's exit statuses of a run that read the log: ok, a threshold crossed


def letter_images(folder: str) -> list[tuple[bytes, int]]:
    """(PNG bytes, class index) of every letter under ``folder`` (a folder per class)."""
    from core.labels import CLASS_NAMES

    found = [(path.read_bytes(), CLASS_NAMES.index(path.parent.name))
             for path in sorted(Path(folder).glob("*/*.png")) if path.parent.name in CLASS_NAMES]
    if not found:
        raise SystemExit(f"no letters under {folder} (a folder per class of PNGs; python -m "
                         "pipeline.generate_letters --out FOLDER makes them)")
    return found


def records(images: list[tuple[bytes, int]]) -> list[bytes]:
    """Serialized PredictionLogs of IMAGES_PER_RECORD letters each (their timestamp set later), every letter once."""
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from core.labels import CLASS_NAMES

    made = []
    for start in range(0, len(images) - IMAGES_PER_RECORD + 1, IMAGES_PER_RECORD):
        batch = images[start:start + IMAGES_PER_RECORD]
        probs = np.full((len(batch), len(CLASS_NAMES)), 0.1 / (len(CLASS_NAMES) - 1), dtype=np.float32)
        probs[np.arange(len(batch)), [label for _, label in batch]] = 0.9
        log = prediction_log_pb2.PredictionLog()
        log.predict_log.request.inputs[configs.IMAGE_INPUT].CopyFrom(
            tf.make_tensor_proto([data for data, _ in batch], dtype=tf.string))
        log.predict_log.response.outputs[configs.PROBABILITIES_OUTPUT].CopyFrom(tf.make_tensor_proto(probs))
        request_log.fill_metadata(log, configs.MODEL_NAME, configs.IMAGE_SIGNATURE, 1, 1.0, "upload")
        made.append(log)
    return made


def write_log(folder: Path, size: int, images: list[tuple[bytes, int]]) -> int:
    """Writes about ``size`` bytes of records under ``folder``/requests; the number of answers written."""
    logs = records(images)
    per_record = sum(len(request_log.tfrecord(log.SerializeToString())) for log in logs) / len(logs)
    count = max(1, int(size / per_record))
    writer = request_log.RequestLogWriter(str(folder / "requests"),
                                          max_total_bytes=2 * max(size, request_log.DEFAULT_MAX_FILE_BYTES))
    now = time.time()
    for n in range(count):
        log = logs[n % len(logs)]
        log.log_metadata.timestamp_secs = int(now - SPAN_SECONDS + SPAN_SECONDS * n / count)
        writer.write(log)
    writer.close()
    return count * IMAGES_PER_RECORD


class MonitorFailed(RuntimeError):
    """A monitor run that ended with another status than 0 or 1; its message ends with the end of its stderr."""


def run_once(cmd: list[str]) -> tuple[float, float, float, int]:
    """(peak RSS in MiB, CPU seconds, wall seconds, exit status) of one monitor run, in a fresh process so that the
    children's peak RSS and CPU time are this run's alone. MonitorFailed when it failed: its numbers are not the
    monitor's work."""
    probe = ("import resource, subprocess, sys, time; start = time.monotonic(); "
             "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
             "used = resource.getrusage(resource.RUSAGE_CHILDREN); "
             "print(used.ru_maxrss / 1024, used.ru_utime + used.ru_stime, time.monotonic() - start, code)")
    with children.started([sys.executable, "-c", probe, *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:   # the probe and the monitor stopped with the bench
        out, err = proc.communicate()   # err: the monitor's stderr (the probe's own too, if it failed)
    if proc.returncode:
        raise MonitorFailed(f"the probe around the monitor failed (exit {proc.returncode}){_tail(err)}")
    rss, cpu, seconds, code = out.split()
    if int(code) not in MONITOR_OK:
        raise MonitorFailed(f"the monitor failed (exit {code}){_tail(err)}")
    return float(rss), float(cpu), float(seconds), int(code)


def _tail(stderr: str, lines: int = 20) -> str:
    kept = stderr.rstrip().splitlines()[-lines:]
    return ", its stderr ending:\n" + "\n".join(kept) if kept else ", nothing on its stderr"


def monitor_command(tmp: Path, args: argparse.Namespace) -> list[str]:
    """The monitor's command line, on the log written under ``tmp``/logs."""
    return [sys.executable, "-m", "pipeline.monitor", "--logs", str(tmp / "logs"), "--pipeline-root",
            args.pipeline_root, "--out", str(tmp / "report"), "--feedback-dir", str(tmp / "none"),
            "--window", args.window]


@sigterm_as_interrupt()   # a stopped bench (timeout, kill) stops the monitor as Ctrl-C does
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mib", type=float, default=100, help="the log's size")
    p.add_argument("--images", default=str(configs.Config().data_root),
                   help="generated letters, a folder per class (python -m pipeline.generate_letters)")
    p.add_argument("--pipeline-root", default=configs.Config().pipeline_root,
                   help="a pipeline root whose last run is the monitor's reference")
    p.add_argument("--window", default="1h")
    p.add_argument("--repeat", type=positive_int, default=1)
    args = p.parse_args(argv)
    if not (math.isfinite(args.size_mib) and args.size_mib > 0):
        p.error(f"--size-mib must be positive and finite, got {args.size_mib:g}")
    images = letter_images(args.images)
    with tempfile.TemporaryDirectory(prefix="monitor-memory-") as tmp:
        answers = write_log(Path(tmp) / "logs", int(args.size_mib * 1024 * 1024), images)
        cmd = monitor_command(Path(tmp), args)
        runs = []
        for n in range(1, args.repeat + 1):
            try:
                runs.append(run_once(cmd))
            except MonitorFailed as err:   # no median over runs that did not do the monitor's work
                print(f"error: run {n} of {args.repeat}: {err}", file=sys.stderr)
                return 1
            rss, cpu, seconds, code = runs[-1]
            print(f"peak RSS {rss:.0f} MiB, CPU {cpu:.1f} s, wall {seconds:.1f} s (exit {code})", flush=True)
    median = lambda n: statistics.median(run[n] for run in runs)   # noqa: E731
    print(f"{args.size_mib:g} MiB log, {answers} answers: median peak RSS {median(0):.0f} MiB, median CPU "
          f"{median(1):.1f} s, median wall {median(2):.1f} s over {len(runs)} run(s)")
    print("reproduce:", reproduce.command("bench.monitor_memory", [   # every value, the defaults too
        "--size-mib", f"{args.size_mib:g}", "--images", args.images, "--pipeline-root", args.pipeline_root,
        "--window", args.window, "--repeat", str(args.repeat)], python=sys.executable))
    return 0


if __name__ == "__main__":
    sys.exit(main())
