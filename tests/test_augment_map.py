import numpy as np
import pytest

from bench import augment_map
from tests.support import letter_roots


def test_the_benchmark_times_both_maps_and_checks_one_seed_trains_one_network(tiny_dataset, capsys, monkeypatch):
    monkeypatch.setenv("LETTERS_BATCH_SIZE", "16")   # read as the other benchmarks read it
    assert augment_map.main(["--data-root", str(tiny_dataset), "--epochs", "1", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    runs = [line.split()[-2] for line in out.splitlines() if line.endswith(" s") and line.startswith(("one", "in"))]
    assert len(runs) == 4 and all(float(seconds) > 0 for seconds in runs)
    assert "216 images, 1 epochs per run, batches of 16; medians: one batch at a time" in out
    assert "ratio " in out
    assert "two runs one batch at a time ended with the same weights: yes" in out
    assert "reproduce: LETTERS_BATCH_SIZE=16 python -m bench.augment_map --data-root" in out


def test_one_run_each_way_compares_no_weights(tiny_dataset, capsys, monkeypatch):
    monkeypatch.setattr(augment_map, "train_once", lambda *args: (0.5, [np.zeros(1)]))
    assert augment_map.main(["--data-root", str(tiny_dataset), "--epochs", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "two runs one batch at a time ended with the same weights: not compared (one run)" in out, out


@pytest.mark.parametrize("name", letter_roots.NAMES)
def test_a_root_without_letters_is_a_usage_error_before_any_work(tmp_path, monkeypatch, capsys, name):
    """--data-root missing, empty or without class folders is refused as the command line is read; it had ended in a
    traceback (ValueError: no images in the class folders of …) once the letters were generated or trained on."""
    letter_roots.assert_refused(augment_map, ["--epochs", "1"], "--data-root", name, tmp_path, monkeypatch, capsys)
