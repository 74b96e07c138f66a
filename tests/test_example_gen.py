"""The image ExampleGen: every kind of bad file is skipped and reported; splits are stable under renames."""
import collections
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components import image_example_gen as ieg
from core import configs, image_io
from core.labels import CLASS_INDEX, CLASS_NAMES
from tests.conftest import ROOT, letter_image, png_bytes

MAX_BYTES = 300_000
MAX_PIXELS = 4_000_000


def run_example_gen(data_root: Path, out: Path, feedback_root: Path | None = None,
                    feedback_repeat: int | None = None) -> tuple[dict, dict]:
    """Runs the executor; returns ({split: [tf.Example]}, report)."""
    custom = {"max_file_bytes": MAX_BYTES, "max_image_pixels": MAX_PIXELS}
    if feedback_root:
        custom["feedback_root"] = str(feedback_root)
    if feedback_repeat is not None:
        custom["feedback_repeat"] = feedback_repeat
    examples = standard_artifacts.Examples()
    examples.uri = str(out)
    exec_properties = {
        "input_base": str(data_root),
        "input_config": proto_utils.proto_to_json(example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name="images", pattern=ieg.INPUT_PATTERN)])),
        "output_config": proto_utils.proto_to_json(ieg.output_config(4, 1)),
        "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
        "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        "custom_config": json.dumps(custom),
    }
    # The runners' Beam arguments: without them TFX builds an sdist of itself in a temp folder on every run.
    context = ieg.Executor.Context(beam_pipeline_args=configs.beam_pipeline_args(configs.Config()))
    ieg.Executor(context).Do({}, {"examples": [examples]}, exec_properties)
    splits = {}
    for split in (configs.TRAIN_SPLIT, configs.EVAL_SPLIT):
        files = tf.io.gfile.glob(str(out / f"Split-{split}" / "*"))
        splits[split] = [tf.train.Example.FromString(r.numpy())
                         for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    report = json.loads((out / configs.INGEST_REPORT_FILE).read_text())
    return splits, report


def _feature(example, key):
    f = example.features.feature[key]
    return f.bytes_list.value[0] if f.HasField("bytes_list") else f.int64_list.value[0]


@pytest.fixture()
def messy_folder(tmp_path):
    root = tmp_path / "data"
    good = {
        "alef/a.png": png_bytes(letter_image(40, 50)),
        "alef/b.jpg": png_bytes(letter_image(60, 30, "RGB"), "JPEG"),
        "bet/c.png": png_bytes(letter_image(20, 80, "RGBA")),
        "bet/d.gif": png_bytes(letter_image(33, 33, "P"), "GIF"),
        "gimel/e.bmp": png_bytes(letter_image(50, 40, "RGB"), "BMP"),
        "gimel/f.webp": png_bytes(letter_image(40, 40, "RGB"), "WEBP"),
        "dalet/g.png": png_bytes(Image.fromarray(np.asarray(letter_image(30, 30)).astype(np.uint16) * 257)),
        "dalet/h.jpg": png_bytes(letter_image(30, 45, "CMYK"), "JPEG"),
        "tav/i.png": png_bytes(letter_image(25, 35, "LA")),
        "tav/no_extension": png_bytes(letter_image(25, 36)),
    }
    noise = (np.random.default_rng(0).random((400, 400, 3)) * 255).astype(np.uint8)
    bad = {
        "alef/empty.png": (b"", "empty"),
        "alef/truncated.png": (png_bytes(letter_image(200, 200))[:200], "truncated_or_corrupt"),
        "bet/notes.png": (b"these are not pixels", "not_an_image"),
        "bet/random.jpg": (bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)), "not_an_image"),
        "gimel/bomb.png": (png_bytes(Image.new("L", (4000, 4000), 255)), "decompression_bomb"),
        "gimel/blank.png": (png_bytes(Image.new("L", (60, 60), 255)), "no_ink"),          # a white page
        "dalet/black.jpg": (png_bytes(Image.new("RGB", (30, 30), 0), "JPEG"), "no_ink"),
        "gimel/huge_file.png": (png_bytes(Image.fromarray(noise)), "too_large"),
        "bet/.DS_Store": (b"\x00\x00\x00\x01Bud1", "hidden_file"),
        "bet/.tmp-x1.part": (png_bytes(letter_image(40, 40)), "hidden_file"),   # an export cut short: not read twice
        "elephant/j.png": (png_bytes(letter_image(30, 30)), "unknown_class"),
    }
    for rel, data in good.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    for rel, (data, _) in bad.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "alef" / "nested").mkdir()
    (root / "alef" / "nested" / "k.png").write_bytes(png_bytes(letter_image(30, 30)))
    (root / "README.txt").write_text("top-level files are not in a class folder: reported, not read")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")                 # hidden: not even reported
    (root / "generated.json").write_text("{}")                             # the generator's manifest: not either
    expected_bad = {rel: reason for rel, (_, reason) in bad.items()}
    expected_bad["alef/nested/k.png"] = "nested_folder"
    expected_bad["README.txt"] = "not_in_a_class_folder"
    return root, good, expected_bad


def test_bad_files_are_skipped_and_reported_good_ones_kept(messy_folder, tmp_path):
    root, good, expected_bad = messy_folder
    assert len(png_bytes(Image.fromarray((np.random.default_rng(0).random((400, 400, 3)) * 255)
                                         .astype(np.uint8)))) > MAX_BYTES
    splits, report = run_example_gen(root, tmp_path / "out")
    examples = splits["train"] + splits["eval"]
    assert report["kept"] == len(good) == len(examples)
    assert report["skipped"] == len(expected_bad)
    skipped = {item["file"]: reason for reason, items in report["skipped_files"].items() for item in items}
    assert skipped == expected_bad
    assert report["reencoded_to_png"] == 1  # the WebP
    assert report["kept_per_class"]["alef"] == 2 and report["kept_per_class"]["tav"] == 2
    assert report["kept_per_split"] == {"eval": len(splits["eval"]), "train": len(splits["train"])}
    eval_classes = {_feature(e, configs.LABEL_NAME_KEY).decode() for e in splits["eval"]}
    kept = {name for name, n in report["kept_per_class"].items() if n}
    assert report["classes_missing_from_split"]["eval"] == [n for n in CLASS_NAMES if n in kept - eval_classes]
    assert "he" in report["empty_classes"] and "alef" not in report["empty_classes"]
    by_source = {_feature(e, configs.SOURCE_KEY).decode(): e for e in examples}
    assert set(by_source) == set(good)
    for rel, example in by_source.items():
        label_name = rel.split("/")[0]
        assert _feature(example, configs.LABEL_NAME_KEY).decode() == label_name
        assert _feature(example, configs.LABEL_KEY) == CLASS_INDEX[label_name]
        pixels = tf.io.decode_image(_feature(example, configs.IMAGE_KEY), expand_animations=False)
        assert pixels.shape[0] > 1 and pixels.shape[1] > 1
    # Kept images are stored as they came unless TensorFlow cannot decode them.
    assert _feature(by_source["alef/b.jpg"], configs.IMAGE_KEY) == good["alef/b.jpg"]
    assert _feature(by_source["gimel/f.webp"], configs.IMAGE_KEY).startswith(b"\xff\xd8\xff")   # a lossy WebP: JPEG


def test_split_follows_content_not_name(tmp_path, tiny_dataset):
    first, _ = run_example_gen(tiny_dataset, tmp_path / "a")
    moved = tmp_path / "renamed"
    shutil.copytree(tiny_dataset, moved)
    for path in sorted(moved.glob("*/*.png")):
        path.rename(path.with_name("renamed_" + path.name[::-1]))
    second, _ = run_example_gen(moved, tmp_path / "b")

    def split_of(splits):
        return {_feature(e, configs.IMAGE_KEY): name for name, exs in splits.items() for e in exs}

    a, b = split_of(first), split_of(second)
    assert a == b
    counts = {name: len(exs) for name, exs in first.items()}
    assert counts["train"] > counts["eval"] > 0   # about 4:1
    assert 0.1 < counts["eval"] / sum(counts.values()) < 0.35


def test_empty_input_is_a_clear_error(tmp_path):
    (tmp_path / "data" / "alef").mkdir(parents=True)
    (tmp_path / "data" / "alef" / "x.png").write_bytes(b"")
    with pytest.raises(Exception, match="no usable image"):
        run_example_gen(tmp_path / "data", tmp_path / "out")


def test_the_runners_precheck_stops_at_the_first_usable_image(tmp_path):
    data = tmp_path / "data"
    (data / "alef").mkdir(parents=True)
    (data / "alef" / "a.png").write_bytes(b"not an image")
    (data / "alef" / "b.png").write_bytes(b"")
    found, skips = ieg.find_usable_image(str(data))
    assert found is False and [(s[1], s[2]) for s in skips] == [("alef/a.png", "not_an_image"),
                                                                ("alef/b.png", "empty")]
    (data / "bet").mkdir()
    (data / "bet" / "c.png").write_bytes(png_bytes(letter_image(40, 50)))
    (data / "bet" / "d.png").write_bytes(b"never read")
    found, skips = ieg.find_usable_image(str(data))
    assert found is True and len(skips) == 2     # d.png, after the first usable image, was not read


@pytest.mark.parametrize("name", ["letters [v2]", "a*b?", "[x]"])
def test_folder_names_are_taken_literally_not_as_glob_patterns(tmp_path, name):
    """A data root (or a pipeline root holding the exported feedback) named with [, * or ? is still read: in
    'letters [v2]' the brackets were a character class, so no file matched and the feedback went untrained."""
    data = tmp_path / name
    (data / "alef").mkdir(parents=True)
    (data / "alef" / "a.png").write_bytes(png_bytes(letter_image(40, 50)))
    (tmp_path / "letters v").mkdir()                   # what the unescaped pattern matched instead
    assert ieg.list_inputs(str(data)) == [str(data / "alef" / "a.png")]
    assert ieg.count_candidates(str(data)) == 1 and ieg.folder_fingerprint(str(data))
    assert ieg.find_usable_image(str(data))[0] is True


def test_a_pipe_in_a_class_folder_is_skipped_not_read(tmp_path):
    import os
    (tmp_path / "alef").mkdir()
    os.mkfifo(tmp_path / "alef" / "pipe.png")
    outcome = ieg.read_one(str(tmp_path / "alef" / "pipe.png"), str(tmp_path), 10_000, 10_000)
    assert outcome[:3] == ("skip", "alef/pipe.png", "not_a_file")


def test_folder_without_class_folders_is_a_clear_error(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(Exception, match="one folder per class"):
        run_example_gen(tmp_path / "data", tmp_path / "out")


def test_a_folder_named_like_a_class_that_has_no_folder_is_refused_naming_the_class(tmp_path):
    """Bet (capital first letter) or Pe-Final beside alef: their images had been skipped as unknown_class and the
    run had trained on alef alone. A folder only close to a class that has no folder (test, trash, val beside no
    tet, resh, vav: ordinary folders of a data root still missing classes), close to none (misc) or beside its
    class's folder stays a skip."""
    data = tmp_path / "data"
    for rel in ("alef/a.png", "Bet/b.png", "Pe-Final/c.png", "misc/d.png", "test/e.png", "trash/f.png", "val/g.png"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(png_bytes(letter_image(40, 50)))
    problem = ieg.describe_layout_problem(str(data))
    assert problem and "'Bet' is not a class folder: did you mean 'bet'?" in problem, problem
    assert "'Pe-Final' is not a class folder: did you mean 'pe_final'?" in problem, problem
    assert not any(f"'{name}'" in problem for name in ("misc", "test", "trash", "val")), problem
    assert "Folder names are the class names in lower case: alef, bet, gimel" in problem
    (data / "Bet").rename(data / "bet")
    (data / "Pe-Final").rename(data / "pe_final")
    (data / "BET").mkdir()
    (data / "BET" / "e.png").write_bytes(png_bytes(letter_image(40, 50)))   # bet has its folder: a skip
    assert ieg.describe_layout_problem(str(data)) is None


@pytest.mark.parametrize("folder", ["pe.final", "Pe.Final", "pe__final", "pe. final"])
def test_a_class_folder_spelled_with_dots_or_repeated_separators_is_refused_as_other_separators_are(tmp_path, folder):
    """pe.final beside no pe_final: it had only been skipped (unknown_class, did you mean 'pe_final'?), its images
    not read, where pe-final and pe final are refused. pefinal and final_pe, which spell no class, stay a skip."""
    data = tmp_path / "data"
    for rel in ("alef/a.png", f"{folder}/b.png", "pefinal/c.png", "final_pe/d.png"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(png_bytes(letter_image(40, 50)))
    problem = ieg.describe_layout_problem(str(data))
    assert problem and f"{folder!r} is not a class folder: did you mean 'pe_final'?" in problem, problem
    assert "'pefinal'" not in problem and "'final_pe'" not in problem, problem


def test_an_unknown_class_folders_skip_names_the_class_it_is_likely_meant_as(tmp_path):
    for rel in ("Bet/b.png", "shim/c.png", "misc/d.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(png_bytes(letter_image(40, 50)))
    outcomes = [ieg.read_one(str(tmp_path / rel), str(tmp_path), MAX_BYTES, MAX_PIXELS)
                for rel in ("Bet/b.png", "shim/c.png", "misc/d.png")]
    text = ieg.format_report(ieg.build_report(outcomes, str(tmp_path)))
    assert "Bet/b.png: folder 'Bet' is not one of the 27 classes: did you mean 'bet'?" in text, text
    assert "shim/c.png: folder 'shim' is not one of the 27 classes: did you mean 'shin'?" in text, text
    assert "misc/d.png: folder 'misc' is not one of the 27 classes\n" in text, text


def test_a_folder_named_with_the_hebrew_letter_is_skipped_naming_its_class(tmp_path):
    """A folder named ``א`` or ``ץ`` had been skipped with no hint; it is still not read as that class's images."""
    for rel in ("א/a.png", "ץ/b.png", "alef/c.png", "בּ/d.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(png_bytes(letter_image(40, 50)))
    outcomes = [ieg.read_one(path, str(tmp_path), MAX_BYTES, MAX_PIXELS) for path in ieg.list_inputs(str(tmp_path))]
    text = ieg.format_report(ieg.build_report([o for o in outcomes if o[0] == "skip"], str(tmp_path)))
    assert "א/a.png: folder 'א' is not one of the 27 classes: did you mean 'alef'?" in text, text
    assert "ץ/b.png: folder 'ץ' is not one of the 27 classes: did you mean 'tsadi_final'?" in text, text
    assert "בּ/d.png: folder 'בּ' is not one of the 27 classes: did you mean 'bet'?" in text, text
    assert [o[2] for o in outcomes if o[0] == "ok"] == ["alef"]
    assert ieg.describe_layout_problem(str(tmp_path)) is None    # a hint, not a refusal of the data root


@pytest.mark.parametrize("folder, meant", [
    ("kuf", "qof"), ("kof", "qof"), ("koph", "qof"), ("qoph", "qof"), ("Quf", "qof"),
    ("vet", "bet"), ("beth", "bet"), ("veth", "bet"),
    ("fe", "pe"), ("fey", "pe"), ("feh", "pe"), ("pey", "pe"), ("peh", "pe"),
    ("fe_sofit", "pe_final"), ("Fe-Final", "pe_final"), ("pe sofit", "pe_final"), ("chaf_sofit", "kaf_final"),
    ("chaf", "kaf"), ("kaph", "kaf"), ("waw", "vav"), ("sav", "tav"),
    ("aleph", "alef"), ("shim", "shin"), ("mem_sofit", "mem_final"), ("misc", None)])
def test_a_common_transliteration_of_a_letter_is_named_as_that_letter(tmp_path, folder, meant):
    """difflib alone had read kuf as kaf, vet as tet and sav as vav, and found nothing for koph, qoph, fe or waw: the
    usual spellings (core.labels.TRANSLITERATIONS, and each with _sofit or _final) are looked up first. A hint for
    a folder that is skipped, never a refusal of the data root."""
    from core.labels import did_you_mean
    assert did_you_mean(folder) == (f": did you mean {meant!r}?" if meant else "")
    (tmp_path / "alef").mkdir()
    (tmp_path / "alef" / "a.png").write_bytes(png_bytes(letter_image(40, 50)))
    (tmp_path / folder).mkdir()
    (tmp_path / folder / "b.png").write_bytes(png_bytes(letter_image(40, 50)))
    assert ieg.describe_layout_problem(str(tmp_path)) is None


@pytest.fixture()
def corrections(tmp_path):
    """Two exported corrections per class."""
    from pipeline import generate_letters
    feedback = tmp_path / "feedback"
    generate_letters.generate(feedback, per_class=2, seed=31, progress=False)
    (feedback / "generated.json").unlink()
    return feedback


def test_corrections_always_train_and_leave_the_main_split_as_it_was(tmp_path, tiny_dataset, corrections):
    feedback = corrections
    without, _ = run_example_gen(tiny_dataset, tmp_path / "a")
    with_fb, report = run_example_gen(tiny_dataset, tmp_path / "b", feedback_root=feedback)
    sources = {name: {_feature(e, configs.SOURCE_KEY).decode() for e in exs} for name, exs in with_fb.items()}
    corrections = {s for s in sources["train"] if s.startswith("feedback/")}
    assert len(corrections) == 2 * 27 == report["feedback"]
    assert not any(s.startswith("feedback/") for s in sources["eval"])
    for name in ("train", "eval"):
        assert sources[name] - corrections == {_feature(e, configs.SOURCE_KEY).decode() for e in without[name]}
    assert "feedback images (all in train)" in ieg.format_report(report)


def test_a_feedback_folder_that_is_not_there_is_said(tmp_path, tiny_dataset, capsys):
    splits, report = run_example_gen(tiny_dataset, tmp_path / "out", feedback_root=tmp_path / "no-such-feedback")
    assert report["feedback"] == 0 and splits["train"]
    assert (f"WARNING no feedback folder at {tmp_path / 'no-such-feedback'}: this run trains on no feedback"
            in capsys.readouterr().out)


def test_a_data_root_image_sent_again_as_feedback_is_not_scored_in_eval(tmp_path, tiny_dataset):
    """A user uploads a letter of the data root and confirms it: trained on as feedback, its data-root copy must
    not stay in the eval split the gate scores models on."""
    without, _ = run_example_gen(tiny_dataset, tmp_path / "a")
    in_eval = sorted(_feature(e, configs.SOURCE_KEY).decode() for e in without["eval"])[:3]
    feedback = tmp_path / "feedback"
    for rel in in_eval:
        (feedback / rel.split("/")[0]).mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny_dataset / rel, feedback / rel.split("/")[0] / f"sent_{rel.split('/')[1]}")
    with_fb, report = run_example_gen(tiny_dataset, tmp_path / "b", feedback_root=feedback)
    sources = {name: {_feature(e, configs.SOURCE_KEY).decode() for e in exs} for name, exs in with_fb.items()}
    assert set(in_eval) <= sources["train"] and not set(in_eval) & sources["eval"]
    assert sources["eval"] == {_feature(e, configs.SOURCE_KEY).decode() for e in without["eval"]} - set(in_eval)
    assert (report["feedback_twins"], report["moved_to_train"]) == (3, {"eval": 3})   # said in one note line
    assert [line for line in ieg.format_report(report).splitlines() if "moved to train" in line] == [
        "  note: 3 eval image(s) of the data root moved to train: the feedback store holds their pixels, and "
        "feedback always trains"]


def test_feedback_twins_are_counted_as_written_and_named_for_the_eval_images_they_took():
    """Each feedback twin written 3 times trains 3 more times per epoch than its data-root image alone (the note
    had said 2 extra copies for two twins); a class whose eval images their twins took to train had been said to
    have all of them fall in the other split."""
    hashed = {"d1": "eval", "d2": "eval", "d3": "eval", "d4": "train"}
    outcomes = [("ok", "alef", False, False, "train", ("d1", "alef/a.png")),
                ("ok", "alef", False, True, "train", ("d1", "feedback/alef/x.png")),
                ("ok", "bet", False, False, "train", ("d2", "bet/b.png")),
                ("ok", "bet", False, True, "train", ("d2", "feedback/bet/y.png")),
                ("ok", "bet", False, False, "eval", ("d3", "bet/c.png")),
                ("ok", "gimel", False, False, "train", ("d4", "gimel/g.png"))]
    report = ieg.build_report(outcomes, "data", 3, ("train", "eval"), hashed.get)
    assert (report["duplicate_copies"], report["duplicate_trainings"]) == (2, 6)
    assert report["classes_missing_from_split"]["eval"] == ["alef", "gimel"]
    assert report["classes_missing_by_feedback"] == {"train": [], "eval": ["alef"]}
    text = ieg.format_report(report)
    assert ("note: 2 extra copies of images already in the same class (trained on 6 more times per epoch: a "
            "feedback copy is written 3 times):\n    alef/a.png = feedback/alef/x.png\n"
            "    bet/b.png = feedback/bet/y.png") in text, text
    assert ("WARNING: no eval images for 1 classes (their feedback twins took them to train: the feedback store "
            "holds their pictures, and feedback always trains): alef") in text, text
    assert "WARNING: no eval images for 1 classes (all of theirs fell in the other split): gimel" in text, text
    plain = ieg.build_report(outcomes[2:3] + [("ok", "bet", False, False, "train", ("d2", "bet/b2.png"))], "data", 3)
    assert "(trained on that many more times)" in ieg.format_report(plain)


def test_feedback_holding_the_data_roots_images_names_them_as_the_cause_of_an_empty_eval_split(tmp_path):
    """letters-feedback import of the data root, then a run on it: every image trained as its feedback twin's, and
    the empty eval split had been blamed on the hash split of all the images, feedback counted as the data root's,
    with --split suggested, which cannot help."""
    root = tmp_path / "data"
    (root / "alef").mkdir(parents=True)
    for seed in range(10):
        (root / "alef" / f"{seed}.png").write_bytes(png_bytes(letter_image(30, 40, seed=seed)))
    hashed = [ieg.hashed_split(image_io.pixel_digest((root / "alef" / f"{seed}.png").read_bytes()), 4, 1)
              for seed in range(10)]
    assert set(hashed) == {"train", "eval"}
    shutil.copytree(root, tmp_path / "feedback")
    with pytest.raises(ieg.EmptyDatasetError) as caught:
        run_example_gen(root, tmp_path / "out", feedback_root=tmp_path / "feedback")
    assert str(caught.value).startswith(
        f"the eval split is empty: all of the 10 usable images of {root} have a twin in the feedback store (the same "
        "pixels), and a feedback image always trains, its twin with it; leave that feedback out or give other "
        "feedback (local_runner.py: --no-feedback or another --feedback-dir; kubeflow_runner.py: no --feedback-root "
        "or another)")
    assert "--split" not in str(caught.value)
    (tmp_path / "feedback" / "alef" / f"{hashed.index('train')}.png").unlink()   # one of the data root's own, in train
    with pytest.raises(ieg.EmptyDatasetError, match=r"the eval split is empty: 9 of the 10 usable images of .*; "
                       r"the hash split put none of the other 1 there; leave that feedback out or give other "
                       r"feedback \(local_runner.py: --no-feedback or another --feedback-dir; kubeflow_runner.py: "
                       r"no --feedback-root or another\), or change --split"):
        run_example_gen(root, tmp_path / "out2", feedback_root=tmp_path / "feedback")


def test_a_jpeg_of_the_data_root_sent_as_feedback_is_matched_by_its_pixels(tmp_path):
    """The feedback export writes a JPEG upload as PNG: its bytes differ from the data root's JPEG, its pixels
    do not."""
    from core.feedback import FeedbackStore, export_feedback
    root = tmp_path / "data"
    for i, name in enumerate(CLASS_NAMES[:3] * 10):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / f"{i}.jpg").write_bytes(png_bytes(letter_image(40 + i, 50, "RGB"), "JPEG"))
    without, _ = run_example_gen(root, tmp_path / "a")
    in_eval = sorted(_feature(e, configs.SOURCE_KEY).decode() for e in without["eval"])[:2]
    assert len(without["eval"]) > 2
    store = FeedbackStore(tmp_path / "store")
    for rel in in_eval:
        store.add((root / rel).read_bytes(), "JPEG", rel.split("/")[0])
    store.close()
    export_feedback(tmp_path / "store", tmp_path / "export")
    with_fb, _ = run_example_gen(root, tmp_path / "b", feedback_root=tmp_path / "export")
    eval_sources = {_feature(e, configs.SOURCE_KEY).decode() for e in with_fb["eval"]}
    assert not set(in_eval) & eval_sources


def test_the_runner_finds_a_pictures_split_and_the_feedback_a_model_trained_on_as_the_executor_does(
        tmp_path, tiny_dataset):
    """local_runner's gate asks, without running the ExampleGen, which data-root pictures the eval split holds
    (kept_pixel_digests, hashed_split) and which pictures the last blessed model trained on as feedback (the
    report's feedback_digests): the executor's own answers. A data-root picture also sent as feedback is in train
    whatever its hash."""
    sent = [path for path in sorted(tiny_dataset.glob("*/*.png"))
            if ieg.hashed_split(image_io.pixel_digest(path.read_bytes()), 4, 1) == configs.EVAL_SPLIT][:2]
    for i, path in enumerate(sent):
        (tmp_path / "feedback" / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, tmp_path / "feedback" / path.parent.name / f"id{i}.png")
    splits, report = run_example_gen(tiny_dataset, tmp_path / "out", feedback_root=tmp_path / "feedback")
    sent_digests = {image_io.pixel_digest(path.read_bytes()) for path in sent}
    assert report["feedback_digests"] == sorted(sent_digests)
    data_root = {name: {image_io.pixel_digest(_feature(e, configs.IMAGE_KEY)) for e in exs
                        if not ieg.is_feedback(e)} for name, exs in splits.items()}
    for name, digests in data_root.items():
        assert all(ieg.hashed_split(d, 4, 1) == name for d in digests - sent_digests)
    assert set(ieg.kept_pixel_digests(str(tiny_dataset), MAX_BYTES, MAX_PIXELS)) == \
        data_root[configs.TRAIN_SPLIT] | data_root[configs.EVAL_SPLIT]
    assert len(sent_digests) == 2 and sent_digests <= data_root[configs.TRAIN_SPLIT]


def test_the_same_image_under_two_labels_and_extra_copies_are_reported(tmp_path, tiny_dataset):
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    bet = sorted((root / "bet").iterdir())[0]
    shutil.copy(bet, root / "dalet" / "copy_of_bet.png")          # a mislabelled copy
    he = sorted((root / "he").iterdir())[0]
    shutil.copy(he, root / "he" / "again.png")                    # an extra copy in its own class
    _, report = run_example_gen(root, tmp_path / "out")
    assert report["conflicting_labels"] == [[f"bet/{bet.name}", "dalet/copy_of_bet.png"]]
    assert report["duplicate_copies"] == 1
    text = ieg.format_report(report)
    assert "WARNING: 1 image(s) under more than one label" in text and f"bet/{bet.name} = dalet/copy_of_bet.png" in text


def test_extra_copies_in_one_class_are_named_and_those_in_eval_said_to_be_scored_not_trained_on():
    """The note of extra copies named no file (images under two labels are named file by file), and said copies in
    the eval split were trained on that many more times, where they are not trained on but scored again."""
    outcomes = [("ok", "yod", False, False, "eval", ("d1", "yod/yod_hand_0006.png")),
                ("ok", "yod", False, False, "eval", ("d1", "yod/copy_c.png")),
                ("ok", "yod", False, False, "train", ("d2", "yod/yod_hand_0000.png")),
                ("ok", "yod", False, False, "train", ("d2", "yod/copy_b.png")),
                ("ok", "yod", False, False, "train", ("d2", "yod/copy_a.png")),
                ("ok", "yod", False, False, "train", ("d3", "yod/yod_hand_0001.png"))]
    report = ieg.build_report(outcomes, "data", 1, ("train", "eval"))
    assert (report["duplicate_copies"], report["duplicate_trainings"]) == (3, 2)
    assert report["duplicate_files"] == [["yod/copy_a.png", "yod/copy_b.png", "yod/yod_hand_0000.png"]]
    assert report["duplicate_files_in_eval"] == [["yod/copy_c.png", "yod/yod_hand_0006.png"]]
    assert ieg.format_report(report).splitlines()[-4:] == [
        "  note: 2 extra copies of images already in the same class (trained on that many more times):",
        "    yod/copy_a.png = yod/copy_b.png = yod/yod_hand_0000.png",
        "  note: 1 extra copy of an image already in the same class in the eval split (not trained on, but scored "
        "that many more times: each of these pictures counts once per copy in the eval score):",
        "    yod/copy_c.png = yod/yod_hand_0006.png"]
    many = [("ok", "yod", False, False, "train", (f"d{i}", f"yod/{i}{copy}.png")) for i in range(12) for copy in "ab"]
    text = ieg.format_report(ieg.build_report(many, "data", 1, ("train", "eval")))
    assert "    yod/7a.png = yod/7b.png\n    … 2 more (see ingest_report.json)" in text, text


def test_feedback_repeat_oversamples_the_corrections_in_train_only(tmp_path, tiny_dataset, corrections):
    once, _ = run_example_gen(tiny_dataset, tmp_path / "a", feedback_root=corrections, feedback_repeat=1)
    thrice, report = run_example_gen(tiny_dataset, tmp_path / "b", feedback_root=corrections, feedback_repeat=3)
    def count(examples):
        return collections.Counter(_feature(e, configs.SOURCE_KEY).decode() for e in examples)
    train_once, train_thrice = count(once["train"]), count(thrice["train"])
    fed = {s for s in train_once if s.startswith("feedback/")}
    assert len(fed) == 2 * 27 == report["feedback"]          # the report counts images, not copies
    assert report["kept"] == len(once["train"]) + len(once["eval"]) and report["feedback_repeat"] == 3
    assert "feedback images (all in train, 3 times each)" in ieg.format_report(report)
    assert all(train_thrice[s] == 3 and train_once[s] == 1 for s in fed)
    assert {s: n for s, n in train_thrice.items() if s not in fed} == {s: n for s, n in train_once.items()
                                                                       if s not in fed}
    assert count(thrice["eval"]) == count(once["eval"])
    copies = [e for e in thrice["train"] if _feature(e, configs.SOURCE_KEY).decode() == sorted(fed)[0]]
    assert len({e.SerializeToString() for e in copies}) == 1


def test_feedback_repeat_0_chooses_the_copies_from_the_numbers_of_images(tmp_path, tiny_dataset, corrections):
    main = len(list(tiny_dataset.glob("*/*.png")))                      # 8 per class
    expected = configs.feedback_copies(0, round(main * 4 / 5), 2 * 27)
    assert expected == 1                                                # 54 feedback images beside 173: once
    more = tmp_path / "data"
    shutil.copytree(tiny_dataset, more)
    for path in list(more.glob("*/*.png")):                             # the same letters twice
        shutil.copy(path, path.with_name(f"{path.stem}-again.png"))
    expected = configs.feedback_copies(0, round(2 * main * 4 / 5), 2 * 27)
    assert expected == 3                                                # beside 346: three times
    splits, report = run_example_gen(more, tmp_path / "out", feedback_root=corrections)
    counts = collections.Counter(_feature(e, configs.SOURCE_KEY).decode() for e in splits["train"])
    assert {n for s, n in counts.items() if s.startswith("feedback/")} == {3} and report["feedback_repeat"] == 3


def test_feedback_fingerprint_changes_with_new_corrections(tmp_path):
    (tmp_path / "alef").mkdir()
    assert ieg.folder_fingerprint(str(tmp_path / "missing")) == ""
    empty = ieg.folder_fingerprint(str(tmp_path))
    (tmp_path / "alef" / "1.png").write_bytes(png_bytes(letter_image(20, 20)))
    one = ieg.folder_fingerprint(str(tmp_path))
    assert one != empty and ieg.folder_fingerprint(str(tmp_path)) == one


def test_a_hidden_file_leaves_the_fingerprint_and_a_new_image_changes_it(tmp_path):
    """The executor skips hidden names (hidden_file); a ``.DS_Store`` in a class folder had changed the cache key,
    and the whole pipeline trained and pushed a new version of the same model."""
    (tmp_path / "alef").mkdir()
    (tmp_path / "alef" / "1.png").write_bytes(png_bytes(letter_image(20, 20)))
    before = ieg.folder_fingerprint(str(tmp_path))
    (tmp_path / "alef" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    assert ieg.folder_fingerprint(str(tmp_path)) == before == _cache_key_fingerprint(tmp_path)
    (tmp_path / "alef" / "2.png").write_bytes(png_bytes(letter_image(24, 20)))
    assert ieg.folder_fingerprint(str(tmp_path)) != before


def test_a_file_beside_the_class_folders_added_or_removed_changes_the_cache_key(tmp_path):
    """The executor reports each file beside the class folders (not_in_a_class_folder), but the fingerprint listed
    the class folders' files only: one added or removed after a run left the cache key as it was, and the re-run
    reused the examples with their report, which did not name it. The generator's manifest and hidden names are
    neither reported nor in the key."""
    (tmp_path / "alef").mkdir()
    (tmp_path / "alef" / "1.png").write_bytes(png_bytes(letter_image(20, 20)))
    before = ieg.folder_fingerprint(str(tmp_path))
    (tmp_path / "generated.json").write_text("{}")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    assert ieg.folder_fingerprint(str(tmp_path)) == before == _cache_key_fingerprint(tmp_path)
    (tmp_path / "alef_hand_0019.png").write_bytes(png_bytes(letter_image(24, 20)))   # an image put in the wrong place
    one = ieg.folder_fingerprint(str(tmp_path))
    assert one == _cache_key_fingerprint(tmp_path) != before
    (tmp_path / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    two = ieg.folder_fingerprint(str(tmp_path))
    assert two == _cache_key_fingerprint(tmp_path) not in (before, one)
    outcomes = [ieg.read_one(path, str(tmp_path), MAX_BYTES, MAX_PIXELS) for path in ieg.list_entries(str(tmp_path))]
    assert [o[1:3] for o in outcomes if o[0] == "skip"] == [("Thumbs.db", "not_in_a_class_folder"),
                                                            ("alef_hand_0019.png", "not_in_a_class_folder")]
    (tmp_path / "Thumbs.db").unlink()                                   # removed: the key is the one without it
    assert ieg.folder_fingerprint(str(tmp_path)) == one
    (tmp_path / "alef_hand_0019.png").unlink()
    assert ieg.folder_fingerprint(str(tmp_path)) == before == _cache_key_fingerprint(tmp_path)


def test_a_hidden_folder_in_the_data_root_is_neither_read_nor_in_the_cache_key(tmp_path):
    """A ``.git`` in the data root had been read as data (``.git/HEAD``: folder '.git' is not one of the 27 classes;
    ``.git/objects``: folders inside a class folder are not read) and its files' times were in the cache key: a
    ``git commit`` with no image changed re-ran every component and pushed a new version."""
    (tmp_path / "alef").mkdir()
    (tmp_path / "alef" / "1.png").write_bytes(png_bytes(letter_image(20, 20)))
    before = ieg.folder_fingerprint(str(tmp_path))
    (tmp_path / ".git" / "objects" / "ab").mkdir(parents=True)
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / "alef" / ".cache").mkdir()
    (tmp_path / "alef" / ".cache" / "2.png").write_bytes(png_bytes(letter_image(24, 20)))
    assert ieg.folder_fingerprint(str(tmp_path)) == before == _cache_key_fingerprint(tmp_path)
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/other\n")      # a commit, a checkout
    assert ieg.folder_fingerprint(str(tmp_path)) == before
    outcomes = [ieg.read_one(path, str(tmp_path), MAX_BYTES, MAX_PIXELS) for path in ieg.list_inputs(str(tmp_path))]
    assert [o[:3] for o in outcomes] == [("skip", "alef/.cache", "hidden_file"), ("ok",) + outcomes[1][1:3]]
    assert ieg.read_one(str(tmp_path / ".git" / "HEAD"), str(tmp_path), MAX_BYTES, MAX_PIXELS)[2] == "hidden_file"


def test_a_folder_in_a_folder_that_is_not_a_class_is_reported_with_that_folder(tmp_path):
    """``__MACOSX/alef`` (a macOS zip's) had been skipped as a folder inside a class folder."""
    (tmp_path / "__MACOSX" / "alef").mkdir(parents=True)
    (tmp_path / "alef" / "inner").mkdir(parents=True)
    macosx = ieg.read_one(str(tmp_path / "__MACOSX" / "alef"), str(tmp_path), MAX_BYTES, MAX_PIXELS)
    assert macosx == ("skip", "__MACOSX/alef", "unknown_class", "folder '__MACOSX' is not one of the 27 classes")
    nested = ieg.read_one(str(tmp_path / "alef" / "inner"), str(tmp_path), MAX_BYTES, MAX_PIXELS)
    assert nested[2] == "nested_folder"


def test_a_url_data_root_is_listed_as_a_local_one_without_a_look_at_each_file(tmp_path, monkeypatch):
    """A URL's entries (files beside the class folders, each file of a folder inside a class folder, an unknown
    class folder's folders) come from three globs, as a local root's from its listing: one look at each file
    (fileio.isdir) had been a request to the object store each, one after another before any image was read."""
    import glob

    from components import image_example_gen
    from core import configs

    root = tmp_path / "root"
    for rel in ("alef/1.png", "alef/.DS_Store", "alef/.cache/x.png", "alef/sub/2.png", "alef/sub/deeper/3.png",
                "alef/sub/.hid/4.png", "bet/5.png", "misc/6.png", "misc/inner/7.png", ".git/HEAD", "beside.png",
                ".hidden_beside", configs.GENERATED_MANIFEST):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    looked = []
    monkeypatch.setattr(image_example_gen.fileio, "isdir", lambda path: looked.append(path) or os.path.isdir(path))
    local = image_example_gen.list_entries(str(root))
    assert image_example_gen.globbed_entries(str(root), lambda p: glob.glob(p, include_hidden=True)) == local
    assert [os.path.relpath(p, root) for p in local] == [
        "alef/.DS_Store", "alef/.cache", "alef/1.png", "alef/sub/.hid", "alef/sub/2.png", "alef/sub/deeper/3.png",
        "beside.png", "bet/5.png", "misc/6.png", "misc/inner"]
    assert looked == []

    def with_markers(pattern):
        """As Cloud Storage globs a bucket with folder markers ("alef/", made by the console's "Create folder" or
        tf.io.gfile.makedirs): each folder also as its marker, where a pattern's last * matches nothing."""
        found = glob.glob(pattern, include_hidden=True)
        folders = glob.glob(os.path.dirname(pattern), include_hidden=True) if pattern.count("*") > 1 else []
        return found + [folder + "/" for folder in folders if os.path.isdir(folder)]

    (root / "empty").mkdir()   # a marker alone: no entry, as an empty local folder has none
    assert image_example_gen.globbed_entries(str(root), with_markers) == local


def test_each_file_in_a_folder_inside_a_class_folder_is_counted_named_and_in_the_cache_key(tmp_path, tiny_dataset):
    """Images in a folder inside a class folder had been one nested_folder skip for the folder ("mem/sub: folders
    inside a class folder are not read"), however many it held and at whatever depth, and none of them was in the
    cache key: the report's totals left them out, and one added or removed went unseen. Each file under it is a
    skip of its own, named; a link to a folder is reported itself, not followed (a link back up is no loop)."""
    tmp_path = tmp_path / "data"
    shutil.copytree(tiny_dataset, tmp_path)
    letter = sorted((tmp_path / "mem").glob("*.png"))[0].read_bytes()
    (tmp_path / "mem" / "sub" / "deeper").mkdir(parents=True)
    seen = [ieg.folder_fingerprint(str(tmp_path))]
    for rel in ("sub/a.png", "sub/b.png", "sub/deeper/c.png"):   # (one in deeper/ leaves sub/'s own times as they were)
        (tmp_path / "mem" / rel).write_bytes(letter)
        seen.append(ieg.folder_fingerprint(str(tmp_path)))
        assert seen[-1] not in seen[:-1], rel
    (tmp_path / "mem" / "sub" / "deeper" / "up").symlink_to(tmp_path / "mem", target_is_directory=True)
    (tmp_path / "mem" / "sub" / ".cache").mkdir()
    (tmp_path / "mem" / "sub" / ".cache" / "d.png").write_bytes(letter)
    (tmp_path / "bet" / "link").symlink_to(tmp_path / "bet", target_is_directory=True)
    with_them = ieg.folder_fingerprint(str(tmp_path))
    kept = len(ieg.list_inputs(str(tiny_dataset)))
    outcomes = [ieg.read_one(path, str(tmp_path), MAX_BYTES, MAX_PIXELS) for path in ieg.list_entries(str(tmp_path))]
    report = ieg.build_report([("ok", o[2], o[3]) if o[0] == "ok" else o for o in outcomes], str(tmp_path))
    assert report["kept"] == kept and report["skipped_by_reason"] == {"hidden_file": 1, "nested_folder": 5}
    assert {item["file"]: item["detail"] for item in report["skipped_files"]["nested_folder"]} == {
        "bet/link": "folders inside a class folder are not read",
        **{f"mem/{rel}": "files in a folder inside a class folder are not read"
           for rel in ("sub/a.png", "sub/b.png", "sub/deeper/c.png", "sub/deeper/up")}}
    text = ieg.format_report(report, max_files=3)
    assert f"ExampleGen: {kept} images kept, 6 skipped" in text and "  skipped 5 × nested_folder\n" in text, text
    assert "    mem/sub/a.png: files in a folder inside a class folder are not read\n" in text, text
    assert "    … 2 more (see ingest_report.json)" in text, text
    (tmp_path / "mem" / "sub" / ".cache" / "e.png").write_bytes(letter)   # hidden: no new data
    assert ieg.folder_fingerprint(str(tmp_path)) == with_them
    (tmp_path / "mem" / "sub" / "deeper" / "c.png").unlink()
    assert ieg.folder_fingerprint(str(tmp_path)) != with_them


def test_an_image_replaced_in_place_with_its_size_and_time_kept_is_seen(tmp_path):
    """The fingerprint had TensorFlow's whole-second mtime: a same-size image replaced within the same second (or
    with its time kept, as cp -p and rsync -a keep it) went unseen, and the old examples were trained on."""
    (tmp_path / "alef").mkdir()
    image = tmp_path / "alef" / "1.png"
    image.write_bytes(png_bytes(letter_image(20, 20)))
    before, kept = ieg.folder_fingerprint(str(tmp_path)), os.stat(image)
    other = bytearray(image.read_bytes())
    other[len(other) // 2] ^= 0xFF                                       # other bytes, the same size
    image.write_bytes(other)
    os.utime(image, ns=(kept.st_atime_ns, kept.st_mtime_ns))            # the same modification time
    assert os.stat(image).st_size == kept.st_size and os.stat(image).st_mtime_ns == kept.st_mtime_ns
    assert ieg.folder_fingerprint(str(tmp_path)) != before


def _cache_key_fingerprint(root) -> str:
    component = ieg.ImageExampleGen(input_base=str(root))
    return json.loads(component.exec_properties["custom_config"])["input_fingerprint"]


def test_the_data_roots_fingerprint_is_in_the_cache_key_and_sees_relabelled_images(tmp_path):
    """TFX fingerprints input_base by file count, bytes and times only, with its path unescaped in a glob: an image
    moved to another class folder (mtime kept, as mv keeps it) and any change under a root named with "[" went
    unseen, and the cached examples were trained on."""
    for root in (tmp_path / "plain", tmp_path / "letters [v2]"):
        (root / "alef").mkdir(parents=True)
        (root / "bet").mkdir()
        (root / "alef" / "1.png").write_bytes(png_bytes(letter_image(20, 20)))
        (root / "bet" / "2.png").write_bytes(png_bytes(letter_image(24, 20)))
        before = _cache_key_fingerprint(root)
        assert before == ieg.folder_fingerprint(str(root)) != ieg.folder_fingerprint(str(tmp_path / "nowhere"))
        os.rename(root / "alef" / "1.png", root / "bet" / "1.png")          # relabelled; size and mtime kept
        relabelled = _cache_key_fingerprint(root)
        assert relabelled != before
        (root / "alef" / "3.png").write_bytes(png_bytes(letter_image(30, 20)))
        assert _cache_key_fingerprint(root) not in (before, relabelled)
    assert "input_fingerprint" not in ieg.ImageExampleGen(input_base=str(tmp_path / "plain"),
                                                           fingerprint_folders=False).exec_properties["custom_config"]


def test_broken_links_loops_and_names_that_are_not_utf8_are_skipped_not_fatal(tmp_path, tiny_dataset):
    """A broken symlink or a link loop in a class folder, and a file name that is not UTF-8 (a cp1255 Hebrew name
    from a zip), had crashed the run before it started (the cache key's fingerprint, TensorFlow's glob)."""
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    (root / "bet" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (root / "bet" / "loop.png").symlink_to(root / "bet" / "loop.png")
    bad = os.path.join(os.fsencode(root / "alef"), b"\xe1\xeb.png")
    with open(bad, "wb") as f:
        f.write(png_bytes(letter_image(24, 24)))
    assert ieg.folder_fingerprint(str(root)) and ieg.describe_layout_problem(str(root)) is None
    assert ieg.count_candidates(str(root)) == ieg.count_candidates(str(tiny_dataset)) + 2
    splits, report = run_example_gen(root, tmp_path / "out")
    assert report["skipped_by_reason"].get("name_not_utf8") == 1 and report["skipped_by_reason"]["unreadable"] == 2
    assert [s["file"] for s in report["skipped_files"]["name_not_utf8"]] == ["alef/\\xe1\\xeb.png"]
    unreadable = {item["file"]: item["detail"] for item in report["skipped_files"]["unreadable"]}
    assert unreadable["bet/gone.png"] == f"a symbolic link to a missing file ({tmp_path / 'nowhere.png'})"
    assert "missing file" not in unreadable["bet/loop.png"]
    assert sum(len(examples) for examples in splits.values()) == report["kept"] > 0
    assert "name_not_utf8" in ieg.format_report(report)


def test_an_empty_split_stops_the_run_with_one_sentence(tmp_path):
    """Three images that all hash into train left the eval split empty: SchemaGen then deprecated every feature
    and the Transform failed with a KeyError deep in a traceback."""
    root = tmp_path / "data"
    (root / "alef").mkdir(parents=True)
    seed = 0
    while len(list((root / "alef").iterdir())) < 3:                      # images the 4:1 split puts into train
        data = png_bytes(letter_image(30, 40, seed=seed))
        example = ieg.make_example(data, "alef", "x")
        if ieg.partition(example, 2, [4, 5], ieg.output_config(4, 1).split_config, 0) == 0:
            (root / "alef" / f"{seed}.png").write_bytes(data)
        seed += 1
    with pytest.raises(ieg.EmptyDatasetError, match=r"the eval split is empty: the hash split of the 3 usable images"):
        run_example_gen(root, tmp_path / "out")
    feedback = tmp_path / "feedback"   # feedback images are not counted as the data root's
    (feedback / "bet").mkdir(parents=True)
    (feedback / "bet" / "x.png").write_bytes(png_bytes(letter_image(30, 40, seed=1000)))
    with pytest.raises(ieg.EmptyDatasetError, match=r"the hash split of the 3 usable images of .* put none of them "
                       r"there \(the 1 feedback images always train\); add images"):
        run_example_gen(root, tmp_path / "out-fb", feedback_root=feedback)
    # The runner in its own process: it sets up logging for the pipeline, which later tests here would inherit.
    proc = subprocess.run([sys.executable, "local_runner.py", "--data-root", str(root), "--no-pretrain",
                           "--no-feedback", "--quiet", "--pipeline-root", str(tmp_path / "p"), "--serving-dir",
                           str(tmp_path / "s")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "error: the eval split is empty" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_a_change_to_the_example_gens_code_changes_its_cache_key():
    from pipeline import pipeline
    from pipeline.code_fingerprint import import_closure
    config = configs.Config()
    gen = pipeline.image_examples(config, "/data")
    code = json.loads(gen.exec_properties["custom_config"])["code"]
    assert code and code == pipeline.fingerprint(pipeline.EXAMPLE_GEN_MODULE)
    assert {"components/image_example_gen.py", "core/image_io.py"} <= set(import_closure(pipeline.EXAMPLE_GEN_MODULE))


def test_the_report_names_the_feedback_images_a_model_trains_on():
    """The model's lineage: its ExampleGen's report lists the feedback images (by their store ids), and the
    examples artifact carries their number in ML Metadata (``feedback_images``, read by letters-releases)."""
    from components.image_example_gen import build_report
    outcomes = [("ok", "alef", False, True, "train", ("d1", "feedback/alef/aa11.png")),
                ("ok", "bet", False, False, "eval", ("d2", "bet/1.png")),
                ("ok", "bet", False, True, "train", ("d3", "feedback/bet/bb22.png")),
                ("skip", "gimel/x.png", "not_an_image", "cannot identify image data")]
    report = build_report(outcomes, "/data", feedback_repeat=8, splits=("train", "eval"))
    assert report["feedback"] == 2 and report["feedback_files"] == ["feedback/alef/aa11.png", "feedback/bet/bb22.png"]
    assert report["feedback_digests"] == ["d1", "d3"]   # their pixels: the next run's gate looks for them in eval


def test_releases_list_shows_the_feedback_each_version_trained_on():
    from pipeline.releases import format_versions
    text = format_versions([{"version": 7, "pushed_at": "t", "labels": ["stable"], "top1": 0.9, "top3": 0.99,
                             "blessed": True, "feedback_images": 130},
                            {"version": 8, "pushed_at": "t", "labels": [], "blessed": None}])
    header, first, second = text.splitlines()
    assert "feedback" in header and first.split()[5] == "130" and second.split()[5] == "-"


def test_a_run_through_tfx_s_driver_takes_broken_links_and_names_that_are_not_utf8(tmp_path, tiny_dataset):
    """The component's driver fingerprints the data root for the cache key before the executor runs: TFX's own
    fingerprint (TensorFlow's glob and stat of every file) ended the run on a broken link or a name that is not
    UTF-8, which the executor skips and reports. The component alone, run by the LocalDagRunner as the pipeline
    runs it (in a subprocess: a run installs logging handlers)."""
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    (root / "bet" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with open(os.path.join(os.fsencode(root / "alef"), b"\xe1\xeb.png"), "wb") as f:
        f.write(png_bytes(letter_image(24, 24)))
    from tfx.components.example_gen import input_processor
    from tfx.proto import example_gen_pb2
    splits = [example_gen_pb2.Input.Split(name="images", pattern=ieg.INPUT_PATTERN)]
    with pytest.raises(Exception):   # what TFX's own driver does with this folder
        input_processor.FileBasedInputProcessor(str(root), splits).resolve_span_and_version()
    ours = ieg._FolderInputProcessor(str(root), splits)
    assert ours.resolve_span_and_version() == (0, None)
    assert ieg.folder_fingerprint(str(root)) in ours.get_input_fingerprint(0, None)
    script = f"""
from tfx.orchestration import metadata, pipeline
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from components import image_example_gen as ieg
component = ieg.ImageExampleGen({str(root)!r})
assert component.driver_class is ieg.Driver
LocalDagRunner().run(pipeline.Pipeline(
    pipeline_name="driver", pipeline_root={str(tmp_path / "root")!r}, components=[component],
    metadata_connection_config=metadata.sqlite_metadata_connection_config({str(tmp_path / "m.sqlite")!r}),
    beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"]))
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (report,) = (tmp_path / "root").glob("ImageExampleGen/*/*/ingest_report.json")
    skipped = json.loads(report.read_text())["skipped_by_reason"]
    assert skipped == {"name_not_utf8": 1, "unreadable": 1}


def test_one_picture_saved_in_two_formats_is_in_one_split_and_two_labels_for_it_are_flagged(tmp_path):
    """The split hashes each image's pixels: a PNG saved again with another compression and a lossless WebP copy
    of it land in its split (by bytes, a third of re-saved images changed split: trained on in one, scored in the
    other); the same picture under two labels is a conflict in the report whatever its encoding."""
    root = tmp_path / "data"
    for name in ("alef", "bet", "gimel"):
        (root / name).mkdir(parents=True)
    originals = []
    for seed in range(12):
        image = letter_image(30, 40, seed=seed)
        (root / "alef" / f"{seed}.png").write_bytes(png_bytes(image))
        buffer = io.BytesIO()
        image.save(buffer, "PNG", compress_level=1)
        (root / "alef" / f"{seed}_again.png").write_bytes(buffer.getvalue())
        originals.append(image)
    webp = io.BytesIO()
    originals[0].save(webp, "WEBP", lossless=True)
    (root / "alef" / "0_copy.webp").write_bytes(webp.getvalue())
    (root / "bet" / "0_mislabelled.png").write_bytes(png_bytes(originals[1]))
    (root / "gimel" / "x.png").write_bytes(png_bytes(letter_image(20, 20, seed=99)))
    splits, report = run_example_gen(root, tmp_path / "out")
    split_of = {ex.features.feature[configs.SOURCE_KEY].bytes_list.value[0].decode(): split
                for split, examples in splits.items() for ex in examples}
    for seed in range(12):
        assert split_of[f"alef/{seed}.png"] == split_of[f"alef/{seed}_again.png"], seed
    assert split_of["alef/0_copy.webp"] == split_of["alef/0.png"]
    assert len(set(split_of.values())) == 2                       # both splits are used
    assert ["alef/1.png", "alef/1_again.png", "bet/0_mislabelled.png"] in report["conflicting_labels"]
    assert report["duplicate_copies"] == 12   # seed 0: its copy and the WebP; seeds 2-11: one copy each
