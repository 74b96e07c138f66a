"""bench/select_model.py: the quick writer-held-out comparison of training settings."""
import json

import pytest

from bench import select_model


@pytest.fixture
def numbered_dataset(tiny_dataset, tmp_path):
    """The generated letters renamed as HHD names them (<class>_<form>.png), so the writer split applies."""
    root = tmp_path / "numbered"
    for class_dir in sorted(p for p in tiny_dataset.iterdir() if p.is_dir()):
        (root / class_dir.name).mkdir(parents=True)
        for n, image in enumerate(sorted(class_dir.glob("*.png"))):
            (root / class_dir.name / f"7_{n}.png").symlink_to(image)
    return root


def test_select_model_scores_held_out_writers_and_caches_the_transform(numbered_dataset, tmp_path, capsys):
    cache, out = tmp_path / "cache", tmp_path / "result.json"
    args = ["--data-root", str(numbered_dataset), "--cache", str(cache), "--seeds", "1,2",
            "--set", "epochs=2", "--set", "conv_widths=8,16", "--json", str(out)]
    assert select_model.main(args) == 0
    result = json.loads(out.read_text())
    assert [r["seed"] for r in result["runs"]] == [1, 2]
    assert result["settings"]["epochs"] == 2 and result["settings"]["conv_widths"] == "8,16"
    assert 0.0 <= result["median_top1"] <= result["median_top3"] <= 1.0
    printed = capsys.readouterr().out
    assert "train 162, val 54 files" in printed and "reproduce: python bench/select_model.py" in printed
    cached = sorted(cache.iterdir())
    assert len(cached) == 2
    # A second run reads the cached transform instead of preprocessing again.
    assert select_model.main(args[:-2] + ["--seeds", "1"]) == 0
    assert sorted(cache.iterdir()) == cached and "preprocessing" not in capsys.readouterr().out


def test_select_model_refuses_unknown_settings(numbered_dataset, tmp_path):
    with pytest.raises(SystemExit, match="FIELD=VALUE"):
        select_model.main(["--data-root", str(numbered_dataset), "--set", "depth=3"])
    with pytest.raises(SystemExit, match="LETTERS_EPOCHS"):
        select_model.main(["--data-root", str(numbered_dataset), "--set", "epochs=many"])


def test_first_forms_keeps_the_earliest_writers_of_each_class():
    from bench.writer_split import first_forms
    paths = ["alef/0_10.png", "alef/0_2.png", "alef/0_1.png", "alef/0_3.png", "bet/1_5.png", "bet/1_4.png",
             "bet/notes.png"]
    assert first_forms(paths, 0.5) == [False, True, True, False, False, True, True]
    assert all(first_forms(paths, 1.0))


def test_train_share_trains_on_fewer_writers_and_keeps_validation(numbered_dataset, tmp_path, capsys):
    out = tmp_path / "result.json"
    args = ["--data-root", str(numbered_dataset), "--cache", str(tmp_path / "cache"), "--seeds", "1",
            "--set", "epochs=1", "--set", "conv_widths=8,16", "--train-share", "0.5", "--json", str(out)]
    assert select_model.main(args) == 0
    result = json.loads(out.read_text())
    assert result["train_share"] == 0.5 and result["train_images"] == 81     # half of each class's 6 train forms
    assert "training on the first 0.5 of each class's forms: 81 images" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        select_model.main(args[:-4] + ["--train-share", "0"])
