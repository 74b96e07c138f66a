"""bench/reproduce.py: the printed command carries the LETTERS_* settings the benchmark ran with and the commit of
the code it ran."""
import subprocess

from bench import reproduce


def test_the_command_carries_the_settings_it_ran_with(monkeypatch):
    monkeypatch.setattr(reproduce, "revision", lambda: "")       # not a git checkout: no comment
    monkeypatch.setenv("LETTERS_SEED", "2")
    monkeypatch.setenv("LETTERS_AUGMENT_ASPECT", "0.5")
    monkeypatch.setenv("LETTERS_EMPTY", "")          # empty = unset: left out
    line = reproduce.command("bench.train_hhd", ["--data-root", "/d d", "--", "--epochs", "1"])
    assert line == ("LETTERS_AUGMENT_ASPECT=0.5 LETTERS_SEED=2 python -m bench.train_hhd --data-root '/d d' -- "
                    "--epochs 1")


def test_the_command_says_which_commit_it_ran_and_whether_the_code_differed_from_it(tmp_path, monkeypatch):
    """A default changed since (batches of 64, then 32) makes the same command run other settings: the commit tells."""
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       check=True, capture_output=True)
    assert reproduce.revision(tmp_path) == ""                     # not a git checkout
    git("init", "-q")
    (tmp_path / "configs.py").write_text("batch_size = 64\n")
    git("add", "configs.py")
    git("commit", "-qm", "batches of 64")
    short = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True, check=True).stdout.strip()
    assert reproduce.revision(tmp_path) == short
    (tmp_path / "configs.py").write_text("batch_size = 32\n")
    assert reproduce.revision(tmp_path) == f"{short} + uncommitted changes"
    monkeypatch.setattr(reproduce.revision, "__defaults__", (tmp_path,))
    assert reproduce.command("bench.select_model", ["--seeds", "42"]).endswith(
        f"python -m bench.select_model --seeds 42  # at {short} + uncommitted changes")
