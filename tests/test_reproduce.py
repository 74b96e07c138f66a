"""bench/reproduce.py: the printed command carries the LETTERS_* settings the benchmark ran with."""
from bench import reproduce


def test_the_command_carries_the_settings_it_ran_with(monkeypatch):
    monkeypatch.setenv("LETTERS_SEED", "2")
    monkeypatch.setenv("LETTERS_AUGMENT_ASPECT", "0.5")
    monkeypatch.setenv("LETTERS_EMPTY", "")          # empty = unset: left out
    line = reproduce.command("bench.train_hhd", ["--data-root", "/d d", "--", "--epochs", "1"])
    assert line == ("LETTERS_AUGMENT_ASPECT=0.5 LETTERS_SEED=2 python -m bench.train_hhd --data-root '/d d' -- "
                    "--epochs 1")
