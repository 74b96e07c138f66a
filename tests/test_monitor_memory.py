"""bench/monitor_memory.py: its numbers checked before a log is written."""
import sys

import pytest

from bench import monitor_memory, reproduce
from core import configs
from tests.support.processes import sigterm_stops_all


@pytest.mark.parametrize("flags, message", [
    (["--repeat", "0"], "argument --repeat: must be at least 1, got 0"),
    (["--size-mib", "-1"], "--size-mib must be positive and finite, got -1"),
    (["--size-mib", "0"], "--size-mib must be positive and finite, got 0"),
    (["--size-mib", "nan"], "--size-mib must be positive and finite, got nan"),
    (["--size-mib", "inf"], "--size-mib must be positive and finite, got inf")])
def test_bad_numbers_are_usage_errors_before_any_work(flags, message, monkeypatch, capsys):
    """--repeat 0 had ended in a StatisticsError after the log was written, a negative --size-mib was taken, and an
    infinite one ended in an OverflowError."""
    monkeypatch.setattr(monitor_memory, "letter_images", lambda *a: pytest.fail("the letters were read"))
    with pytest.raises(SystemExit) as stop:
        monitor_memory.main(flags)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_a_stopped_bench_stops_the_monitor_it_runs(tmp_path):
    """SIGTERM had ended the bench alone: its probe and the monitor under it ran on."""
    pids = tmp_path / "pids"
    monitor = (f"import os, time; open({str(pids)!r} + '.part', 'w').write(f'{{os.getppid()}} {{os.getpid()}}'); "
               f"os.replace({str(pids)!r} + '.part', {str(pids)!r}); time.sleep(120)")
    command = [sys.executable, "-c",   # the letters and the log left out, a stand-in monitor that waits
               "import sys; from bench import monitor_memory as m; "
               "m.letter_images = lambda folder: []; m.write_log = lambda *args: 10; "
               f"m.monitor_command = lambda tmp, args: [sys.executable, '-c', {monitor!r}]; "
               "sys.exit(m.main(['--size-mib', '1']))"]
    assert sigterm_stops_all(command, pids, cwd=str(configs.PROJECT_ROOT)) == []


def test_a_failed_monitor_run_stops_the_bench_with_its_error_and_no_medians(monkeypatch, capsys):
    """A run that ended in a usage error had been printed as a peak RSS, its error thrown away, and counted in the
    medians."""
    monkeypatch.setattr(monitor_memory, "letter_images", lambda folder: [])
    monkeypatch.setattr(monitor_memory, "write_log", lambda *args: 10)
    failing = ("import sys; print('usage: letters-monitor …\\nletters-monitor: error: no such pipeline root', "
               "file=sys.stderr); sys.exit(2)")
    monkeypatch.setattr(monitor_memory, "monitor_command", lambda tmp, args: [sys.executable, "-c", failing])
    assert monitor_memory.main(["--size-mib", "1", "--repeat", "2"]) == 1
    out, err = capsys.readouterr()
    assert "median" not in out and "peak RSS" not in out
    assert err == ("error: run 1 of 2: the monitor failed (exit 2), its stderr ending:\nusage: letters-monitor …\n"
                   "letters-monitor: error: no such pipeline root\n")


def test_the_reproduce_line_carries_the_settings_and_the_commit(monkeypatch, capsys):
    """It had been built apart from bench.reproduce: no LETTERS_* settings, no commit."""
    monkeypatch.setattr(monitor_memory, "letter_images", lambda folder: [])
    monkeypatch.setattr(monitor_memory, "write_log", lambda *args: 10)
    monkeypatch.setattr(monitor_memory, "monitor_command", lambda tmp, args: [sys.executable, "-c", "pass"])
    monkeypatch.setattr(reproduce, "revision", lambda: "abc1234")
    monkeypatch.setenv("LETTERS_SEED", "7")
    assert monitor_memory.main(["--size-mib", "1", "--images", "/l l", "--pipeline-root", "/p"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line == (f"reproduce: LETTERS_SEED=7 {sys.executable} -m bench.monitor_memory --size-mib 1 --images '/l l' "
                    "--pipeline-root /p --window 1h --repeat 1  # at abc1234")
