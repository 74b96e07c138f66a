from bench import augment_map


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
