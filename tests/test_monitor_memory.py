"""bench/monitor_memory.py: its numbers checked before a log is written."""
import pytest

from bench import monitor_memory


@pytest.mark.parametrize("flags, message", [
    (["--repeat", "0"], "argument --repeat: must be at least 1, got 0"),
    (["--size-mib", "-1"], "--size-mib must be positive, got -1"),
    (["--size-mib", "0"], "--size-mib must be positive, got 0")])
def test_bad_numbers_are_usage_errors_before_any_work(flags, message, monkeypatch, capsys):
    """--repeat 0 had ended in a StatisticsError after the log was written, and a negative --size-mib was taken."""
    monkeypatch.setattr(monitor_memory, "letter_images", lambda *a: pytest.fail("the letters were read"))
    with pytest.raises(SystemExit) as stop:
        monitor_memory.main(flags)
    assert stop.value.code == 2 and message in capsys.readouterr().err
