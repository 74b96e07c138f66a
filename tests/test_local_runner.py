"""local_runner: how a run ends when it is stopped, and what it refuses before it starts."""
import signal

import pytest

import local_runner


@pytest.fixture
def tiny_letters(tmp_path_factory):
    from pipeline import generate_letters
    out = tmp_path_factory.mktemp("letters")
    generate_letters.generate(out, per_class=1, seed=3, progress=False)
    return out


def test_a_stop_whose_interrupt_was_lost_inside_the_pipeline_ends_the_run_as_stopped(tiny_letters, tmp_path,
                                                                                      monkeypatch, capsys):
    from tfx.orchestration.local import local_dag_runner

    from core import signals
    summarized = []

    def stopped_run(self, pipeline, run_options=None):   # every component "ran"; the SIGTERM's interrupt was lost
        try:
            signals.raise_interrupt(signal.SIGTERM)
        except KeyboardInterrupt:
            pass

    monkeypatch.setattr(local_dag_runner.LocalDagRunner, "run_with_ir", stopped_run)
    monkeypatch.setattr("pipeline.run_summary.summarize", lambda *a, **k: summarized.append(a) or {})
    assert local_runner.main(["--data-root", str(tiny_letters), "--pipeline-root", str(tmp_path / "p"),
                              "--serving-dir", str(tmp_path / "s"), "--no-feedback", "--no-pretrain", "--quiet",
                              "--epochs", "1", "--summary-json", str(tmp_path / "summary.json")]) == 130
    assert "interrupted: the run stopped where it was" in capsys.readouterr().err
    assert summarized == [] and not (tmp_path / "summary.json").exists()
