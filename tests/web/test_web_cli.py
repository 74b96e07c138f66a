"""``python -m web``: flags, environment, start and graceful stop."""
import os
import re
import signal
import subprocess
import sys

import pytest

from tests.web.conftest import Api, letter_png
from web.config import DEFAULT_FEEDBACK_DIR, WebConfig, default_feedback_dir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_config_defaults_and_environment(tmp_path):
    config = WebConfig()
    assert (config.host, config.tf_serving_url, config.model_name) == ("127.0.0.1", "http://127.0.0.1:8501",
                                                                         "letters")
    assert config.feedback_dir == DEFAULT_FEEDBACK_DIR and DEFAULT_FEEDBACK_DIR.endswith("outputs/feedback")
    env = {"LETTERS_FEEDBACK_DIR": str(tmp_path), "LETTERS_CANARY_SHARE": "0.25", "LETTERS_WEB_PORT": "9000"}
    config = WebConfig.from_env(env)
    assert (config.feedback_dir, config.canary_share, config.port) == (str(tmp_path), 0.25, 9000)
    assert default_feedback_dir(env) == str(tmp_path)
    with pytest.raises(ValueError, match="LETTERS_CANARY_SHARE"):
        WebConfig.from_env({"LETTERS_CANARY_SHARE": "lots"})
    for bad in ({"canary_share": 1.5}, {"tf_serving_url": "ftp://x"}, {"model_name": "a/b"},
                {"max_upload_bytes": 0}):
        with pytest.raises(ValueError):
            WebConfig(**bad)


def test_command_line_serves_and_stops(tmp_path, serving_labelled):
    proc = subprocess.Popen(
        [sys.executable, "-m", "web", "--port", "0", "--tf-serving-url", serving_labelled.url,
         "--model-name", "letters", "--feedback-dir", str(tmp_path / "fb"), "--canary-share", "1",
         "--max-upload-bytes", "100000", "--log-level", "WARNING"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
        assert match, line + proc.stderr.read() if proc.poll() is not None else line
        api = Api(match.group(1))
        assert api.get("/healthz") == (200, {"status": "ok"})
        status, answer = api.predict(letter_png())
        assert status == 200 and answer["route"] == "canary" and answer["model_version"] == "2"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert (tmp_path / "fb" / "feedback.sqlite").exists()


def test_command_line_rejects_bad_flags():
    proc = subprocess.run([sys.executable, "-m", "web", "--canary-share", "2"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "canary share must be between 0 and 1" in proc.stderr
