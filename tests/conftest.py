"""Shared fixtures. Importing ``core`` first fixes the Keras mode before TensorFlow loads."""
import io
import shutil
import signal
import subprocess
import sys
import json
from pathlib import Path

import core  # noqa: F401
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
# A test that needs one of these runs the whole pipeline (minutes), so it is marked slow.
PIPELINE_FIXTURES = {"pipeline_runs", "pushed_model_dir", "own_work"}


@pytest.hookimpl(tryfirst=True)   # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    """Marks the tests that need a pipeline run slow, and groups tests for ``pytest -n 2 --dist loadgroup``
    (make test): the tests sharing the pipeline runs on one worker (they are built once), the Kubeflow tests on
    one worker (one compiled spec), every other module on one worker (its module fixtures are built once)."""
    for item in items:
        if PIPELINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
            group = "pipeline_runs"
        elif item.path.parent.name == "kubeflow":
            group = "kubeflow"
        else:
            group = item.path.relative_to(ROOT).as_posix()
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(autouse=True)
def _stop_signals_as_they_were():
    """The SIGINT / SIGTERM handlers and the wakeup fd back as they were after each test: a command's main() run
    in-process (a server's, which installs core.signals.stop_on_signals before a start that fails) had left
    Ctrl-C ignored for the worker's later tests."""
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in handlers.items():
        if signal.getsignal(signum) is not handler:
            signal.signal(signum, handler)
            signal.set_wakeup_fd(-1)


def png_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def noise_rows_webp(width: int = 4000, height: int = 40) -> bytes:
    """A lossless WebP of three rows of noise repeated: a few kilobytes (WebP finds the repetition), as many bytes
    as pixels times three as the PNG it is re-encoded to (three rows of 4000 px are past zlib's 32 KiB window)."""
    rows = np.random.default_rng(0).integers(0, 256, (3, width, 3), dtype=np.uint8)
    return png_bytes(Image.fromarray(np.resize(rows, (height, width, 3)), "RGB"), "WEBP", lossless=True)


def letter_image(width: int, height: int, mode: str = "L", seed: int = 0) -> Image.Image:
    """Dark strokes on light paper, any size and mode."""
    rng = np.random.default_rng(seed)
    arr = np.full((height, width), 235, np.uint8)
    arr[height // 4: 3 * height // 4, max(0, width // 2 - max(1, width // 10)): width // 2 + max(1, width // 10)] = 20
    arr = np.clip(arr.astype(int) + rng.integers(-5, 5, arr.shape), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "L")
    return img if mode == "L" else img.convert(mode)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A small generated dataset (all 27 classes) in the --data-root layout."""
    from pipeline import generate_letters
    out = tmp_path_factory.mktemp("tiny_data")
    generate_letters.generate(out, per_class=8, seed=7, progress=False)
    return out


def run_pipeline(data_root, work, *extra, check=True):
    """Runs local_runner.py in a subprocess; returns (summary dict, completed process). Without --feedback-dir it
    runs with --no-feedback: the developer's own feedback store (outputs/feedback) never reaches a test; without
    --pretrain-root or --base-model, with --no-pretrain (no test waits for the built-in letters' pretraining)."""
    summary = Path(work) / f"summary-{len(list(Path(work).glob('summary-*')))}.json"
    if "--feedback-dir" not in extra:
        extra = (*extra, "--no-feedback")
    if not {"--pretrain-root", "--base-model"} & set(extra):   # a random start unless a test asks for another
        extra = (*extra, "--no-pretrain")
    cmd = [sys.executable, str(ROOT / "local_runner.py"), "--data-root", str(data_root),
           "--pipeline-root", str(Path(work) / "pipeline"), "--serving-dir", str(Path(work) / "serving"),
           "--summary-json", str(summary), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"pipeline failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return (json.loads(summary.read_text()) if summary.exists() else None), proc


@pytest.fixture(scope="session")
def pipeline_runs(tiny_dataset, tmp_path_factory):
    """The end-to-end pipeline run twice on tiny data: a first push, then an unchanged re-run."""
    work = tmp_path_factory.mktemp("e2e")
    first, first_proc = run_pipeline(tiny_dataset, work, "--epochs", "3", "--accuracy-floor", "0.0",
                                     "--max-regression", "1.0")
    second, _ = run_pipeline(tiny_dataset, work, "--epochs", "3", "--accuracy-floor", "0.0",
                             "--max-regression", "1.0")
    return {"work": work, "first": first, "second": second, "first_output": first_proc.stdout}


@pytest.fixture
def own_work(pipeline_runs, tmp_path):
    """A copy of the two runs' pipeline root (ML Metadata included) and serving dir, for a test that runs the
    pipeline again: what it adds never reaches another test, so the e2e tests pass in any order."""
    work = tmp_path / "work"
    shutil.copytree(pipeline_runs["work"], work, symlinks=True)
    return work


@pytest.fixture(scope="session")
def pushed_model_dir(pipeline_runs):
    return pipeline_runs["first"]["pushed_destination"]
