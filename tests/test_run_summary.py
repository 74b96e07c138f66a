"""The runner's closing summary says why nothing was pushed: the gate, or the serving check after it."""
import os

import pytest

from pipeline.run_summary import format_summary
from tests.support.serving import publish_version, stand_in_version


def summary(**extra):
    base = {"run_id": "r1", "components": {"Trainer": "complete", "Pusher": "complete"},
            "examples_per_split": {"train": 80, "eval": 20}, "ingest": {"skipped": 0}}
    return {**base, **extra}


def test_pushed():
    text = format_summary(summary(blessed=True, serving_validated=True,
                                  serving_validation={"failure": "", "latency_ms": {"p50": 4.2, "max": 9.0}},
                                  pushed=True, pushed_version="17", pushed_destination="/s/17"), 12.0)
    assert "gate: BLESSED" in text and "serving check: passed (REST p50 4.2 ms, max 9.0 ms)" in text
    assert "pushed: version 17 → /s/17" in text and "wall time: 12 s" in text
    assert "examples: train 80, eval 20" in text


def test_not_blessed():
    text = format_summary(summary(blessed=False, validation_failures=["accuracy 0.40 is below the floor 0.50"],
                                  serving_validated=False, serving_validation={
                                      "failure": "the Evaluator did not bless this model, so it was not started"},
                                  pushed=False))
    assert "gate: NOT BLESSED — accuracy 0.40 is below the floor 0.50" in text
    assert "serving check" not in text            # it did not run: the gate is the reason
    assert "pushed: nothing (model not blessed)" in text


def test_blessed_but_refused_by_the_serving_check():
    text = format_summary(summary(blessed=True, serving_validated=False,
                                  serving_validation={"failure": "predict_images: HTTP 400: bad signature"},
                                  pushed=False))
    assert "gate: BLESSED" in text
    assert "serving check: FAILED — predict_images: HTTP 400: bad signature" in text
    assert "pushed: nothing (the serving check failed)" in text and "not blessed" not in text


def test_a_push_that_failed_says_why_after_the_verdicts():
    why = "the Pusher could not write to the serving dir /s: No space left on device"
    text = format_summary(summary(blessed=True, serving_validated=True, pushed=False, push_failed=why))
    assert "gate: BLESSED" in text and "serving check: passed" in text
    assert f"pushed: NOTHING — {why}" in text and "not blessed" not in text and "serving check failed" not in text


def test_feedback_images_and_their_copies_are_named():
    text = format_summary(summary(ingest={"skipped": 0, "feedback": 130, "feedback_repeat": 8}, blessed=True,
                                  pushed=False))
    assert "examples: train 80, eval 20; skipped 0; 130 user-labelled feedback images (in train, 8× each)" in text
    assert "feedback" not in format_summary(summary(blessed=True, pushed=False))


def test_classes_missing_from_a_split_are_warned_about():
    text = format_summary(summary(ingest={"skipped": 0, "classes_missing_from_split": {"train": ["zayin"], "eval": []}},
                                  blessed=True, pushed=False))
    assert "WARNING classes with no train images (all of theirs fell in the other split): zayin" in text
    assert "no eval images" not in text


def test_feedback_twins_are_said_with_the_times_they_train_and_the_eval_images_they_took():
    """A twin written 3 times as feedback trains 3 more times per epoch, not once; a class whose eval images its
    feedback twins took to train had been said to have all of them fall in the other split."""
    text = format_summary(summary(ingest={
        "skipped": 0, "feedback": 2, "feedback_repeat": 3, "duplicate_copies": 2, "duplicate_trainings": 6,
        "classes_missing_from_split": {"eval": ["alef", "gimel"]}, "classes_missing_by_feedback": {"eval": ["alef"]}},
        blessed=True, pushed=False))
    assert ("note: 2 extra copies of images already in the same class (trained on 6 more times per epoch: a "
            "feedback copy is written 3 times)") in text, text
    assert ("WARNING classes with no eval images (their feedback twins took them to train: the feedback store "
            "holds their pictures, and feedback always trains): alef") in text, text
    assert "WARNING classes with no eval images (all of theirs fell in the other split): gimel" in text, text


def test_images_under_two_labels_and_extra_copies_are_said_by_a_run_that_reused_the_examples(tmp_path, monkeypatch):
    """The ingest report's conflicting labels were printed by the run that built the examples only: a later run
    reusing them, which trained and pushed a model on both labels, said nothing, nor did its --summary-json."""
    import json
    from types import SimpleNamespace

    from pipeline import run_summary

    (tmp_path / "ingest_report.json").write_text(json.dumps(
        {"kept": 10, "skipped": 0, "skipped_by_reason": {}, "empty_classes": [],
         "conflicting_labels": [["alef/1.png", "bet/1.png"]], "duplicate_copies": 3, "duplicate_trainings": 2,
         "duplicate_files": [["alef/2.png", "alef/3.png", "alef/4.png"]],
         "duplicate_files_in_eval": [["gimel/1.png", "gimel/2.png"]]}))
    run = {"run_id": "r2", "components": {"ImageExampleGen": {
        "state": "cached", "execution_id": 1, "outputs": {"examples": [SimpleNamespace(uri=str(tmp_path))]}}}}
    monkeypatch.setattr(run_summary, "last_run", lambda *_, **__: run)
    found = run_summary.summarize(str(tmp_path / "metadata.sqlite"))
    assert found["ingest"]["conflicting_labels"] == [["alef/1.png", "bet/1.png"]]
    assert found["ingest"]["duplicate_copies"] == 3
    assert found["ingest"]["duplicate_files"] == [["alef/2.png", "alef/3.png", "alef/4.png"]]
    assert found["ingest"]["duplicate_files_in_eval"] == [["gimel/1.png", "gimel/2.png"]]
    text = format_summary({**found, "examples_per_split": {"train": 8, "eval": 2}})
    assert ("WARNING 1 image(s) under more than one label (the same pixels; one label is wrong): "
            "alef/1.png = bet/1.png") in text, text
    assert ("note: 2 extra copies of images already in the same class (trained on that many more times): "
            "alef/2.png = alef/3.png = alef/4.png") in text, text
    assert ("note: 1 extra copy of an image already in the same class in the eval split (not trained on, but scored "
            "that many more times: each of these pictures counts once per copy in the eval score): "
            "gimel/1.png = gimel/2.png") in text, text
    clean = format_summary(summary(ingest={"skipped": 0, "conflicting_labels": [], "duplicate_copies": 0}))
    assert "more than one label" not in clean and "extra cop" not in clean


def test_the_example_validators_anomalies_are_read_and_printed(tmp_path):
    from tensorflow_metadata.proto.v0 import anomalies_pb2
    from pipeline.run_summary import data_anomalies
    for split, anomaly in (("train", None), ("eval", "Examples contain values missing from the schema: he (~2%).")):
        found = anomalies_pb2.Anomalies()
        if anomaly:
            found.anomaly_info["label_name"].description = anomaly
        (tmp_path / f"Split-{split}").mkdir()
        (tmp_path / f"Split-{split}" / "SchemaDiff.pb").write_bytes(found.SerializeToString())
    anomalies = data_anomalies(str(tmp_path))
    assert anomalies == {"eval": ["label_name: Examples contain values missing from the schema: he (~2%)."]}
    text = format_summary(summary(anomalies=anomalies, blessed=True, pushed=False))
    assert "WARNING data anomalies in eval (ExampleValidator): label_name: Examples contain values missing" in text


def _store_with_blessings(path, blessings):
    """An ML Metadata store where each (split, blessed[, model folder]) is a Trainer run, its Model and a
    ModelBlessing, live as TFX records them."""
    import json

    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb

    cfg = pb.ConnectionConfig()
    cfg.sqlite.filename_uri = str(path)
    cfg.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(cfg)
    model_type = store.put_artifact_type(pb.ArtifactType(name="Model"))
    blessing_type = store.put_artifact_type(pb.ArtifactType(name="ModelBlessing"))
    trainer_type = store.put_execution_type(pb.ExecutionType(name="Trainer"))
    for split, blessed, *folder in blessings:
        trainer = pb.Execution(type_id=trainer_type)
        trainer.custom_properties["custom_config"].string_value = json.dumps({"epochs": 2, "split": split})
        [execution_id] = store.put_executions([trainer])
        [model_id] = store.put_artifacts([pb.Artifact(type_id=model_type, uri=str(folder[0]) if folder
                                                      else f"/m/{split}", state=pb.Artifact.LIVE)])
        store.put_events([pb.Event(artifact_id=model_id, execution_id=execution_id, type=pb.Event.OUTPUT)])
        blessing = pb.Artifact(type_id=blessing_type, state=pb.Artifact.LIVE)
        blessing.custom_properties["blessed"].int_value = int(blessed)
        blessing.custom_properties["current_model_id"].int_value = model_id
        store.put_artifacts([blessing])


def test_the_split_of_the_last_blessed_model_decides_whether_it_gates(tmp_path, capsys, monkeypatch):
    """A new --split moves images the last blessed model trained on into the eval split it is compared on:
    that run is gated by the accuracy floor only, and says so."""
    import local_runner
    from core.configs import Config
    from pipeline import run_summary
    from pipeline.run_summary import last_blessed_training

    assert last_blessed_training(str(tmp_path / "none.sqlite")) is None
    _store_with_blessings(tmp_path / "metadata.sqlite", [("4:1 by pixels", True), ("9:1 by pixels", True),
                                                         ("3:1 by pixels", False)])
    assert last_blessed_training(str(tmp_path / "metadata.sqlite"))["split"] == "9:1 by pixels"   # newest blessed
    config = Config(pipeline_root=str(tmp_path))
    assert config.metadata_file == str(tmp_path / "metadata.sqlite")
    same = config.replace(train_buckets=9, eval_buckets=1)
    assert local_runner.gate_after_a_split_change(same) == (same, None) and capsys.readouterr().out == ""
    changed, why = local_runner.gate_after_a_split_change(config)   # the default 4:1
    assert changed.max_regression == 1.0 and changed.accuracy_floor == config.accuracy_floor
    assert why.startswith("the split changed since the last blessed model (9:1 by pixels then, 4:1 by pixels now)")
    assert "The split changed since the last blessed model (9:1 by pixels then, 4:1 by pixels now)" \
        in capsys.readouterr().out
    # a model split by the images' bytes (recorded as "9:1"): the same buckets hold other images now
    _store_with_blessings(tmp_path / "bytes.sqlite", [("9:1", True)])
    bytes_config = same.replace(pipeline_root=str(tmp_path / "x"), metadata_path=str(tmp_path / "bytes.sqlite"))
    assert local_runner.gate_after_a_split_change(bytes_config)[0].max_regression == 1.0
    assert "(9:1 then, 9:1 by pixels now)" in capsys.readouterr().out
    # a model from before the split was recorded: split by bytes too
    monkeypatch.setattr(run_summary, "last_blessed_training", lambda _: {"epochs": 3})
    assert local_runner.gate_after_a_split_change(same)[0].max_regression == 1.0
    assert "(unrecorded, by bytes then, 9:1 by pixels now)" in capsys.readouterr().out


def test_a_blessed_model_whose_folder_is_gone_is_marked_deleted_before_the_run(tmp_path, capsys):
    """The resolver picks the last blessed model from ML Metadata alone: with its folder removed, every later run
    failed in the Evaluator, after training, whatever the flags. Marked deleted first (the resolver reads live
    artifacts only), the gate compares with the last blessed model still there, or with none."""
    import shutil

    import local_runner
    from core.configs import Config
    from ml_metadata.proto import metadata_store_pb2 as pb
    from pipeline.run_summary import last_blessed_training, latest_blessed_model, open_store

    kept, refused, removed, newest = (tmp_path / "Trainer" / "model" / str(n) for n in (1, 2, 3, 4))
    kept.mkdir(parents=True)
    refused.mkdir()
    _store_with_blessings(tmp_path / "metadata.sqlite", [("4:1 by pixels", True, kept), ("3:1 by pixels", False, refused),
                                                         ("9:1 by pixels", True, removed), ("2:1 by pixels", True, newest)])
    config = Config(pipeline_root=str(tmp_path))
    assert local_runner.forget_removed_models(config) == [str(newest), str(removed)]
    out = capsys.readouterr().out
    assert f"Last blessed model: {newest} is gone; marked deleted in ML Metadata" in out
    assert f"Last blessed model: {removed} is gone" in out
    store = open_store(config.metadata_file)
    assert latest_blessed_model(store).uri == str(kept)
    assert [m.state for m in store.get_artifacts_by_type("Model")] == [pb.Artifact.LIVE, pb.Artifact.LIVE,
                                                                       pb.Artifact.DELETED, pb.Artifact.DELETED]
    assert last_blessed_training(config.metadata_file)["split"] == "4:1 by pixels"   # the gate's baseline
    assert local_runner.forget_removed_models(config) == [] and capsys.readouterr().out == ""
    shutil.rmtree(kept)                                  # none left: the first run's rule
    assert local_runner.forget_removed_models(config) == [str(kept)]
    assert last_blessed_training(config.metadata_file) is None
    assert local_runner.forget_removed_models(Config(pipeline_root=str(tmp_path / "new"))) == []


def test_a_baseline_the_serving_check_refused_is_named_as_never_pushed(tmp_path):
    """The gate's baseline is the newest model the Evaluator blessed (TFX's LatestBlessedModelStrategy), pushed or
    not: one the serving check refused was compared with as "last blessed model", the summary silent that the
    model served is another."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb
    from pipeline.run_summary import compared_model
    from tests.support import fake_pipeline

    cfg = pb.ConnectionConfig()
    cfg.sqlite.filename_uri = str(tmp_path / "metadata.sqlite")
    store = metadata_store.MetadataStore(cfg)
    types = {name: store.put_artifact_type(pb.ArtifactType(name=name))
             for name in ("Model", "InfraBlessing", "PushedModel")}
    step = store.put_execution_type(pb.ExecutionType(name="step"))

    def run_step(inputs: dict, outputs: dict) -> int:
        [execution] = store.put_executions([pb.Execution(type_id=step)])
        fake_pipeline.link(store, execution, inputs, outputs)
        return execution

    def artifact(kind: str, uri: str = "", **properties) -> int:
        made = pb.Artifact(type_id=types[kind], uri=uri, state=pb.Artifact.LIVE)
        for name, value in properties.items():
            made.custom_properties[name].int_value = value
        return store.put_artifacts([made])[0]

    served, refused, unpushed = (artifact("Model", f"/p/Trainer/model/{n}") for n in (1, 2, 3))
    run_step({"model": served}, {"blessing": artifact("InfraBlessing", blessed=1)})
    run_step({"model": served}, {"pushed_model": artifact("PushedModel", pushed=1)})
    run_step({"model": refused}, {"blessing": artifact("InfraBlessing", blessed=0)})
    run_step({"model": refused}, {"pushed_model": artifact("PushedModel", pushed=0)})
    metadata = str(tmp_path / "metadata.sqlite")
    assert compared_model(metadata, run_step({"baseline_model": served}, {})) == {
        "uri": "/p/Trainer/model/1", "not_pushed": None}
    assert compared_model(metadata, run_step({"baseline_model": refused}, {})) == {
        "uri": "/p/Trainer/model/2", "not_pushed": "it failed the serving check"}
    assert compared_model(metadata, run_step({"baseline_model": unpushed}, {}))["not_pushed"] == \
        "the Pusher did not push it"
    assert compared_model(metadata, run_step({}, {})) is None   # the first run: none

    evaluation = {"overall": {"sparse_categorical_accuracy": 0.9}, "baseline": {"sparse_categorical_accuracy": 0.95},
                  "diff": {"sparse_categorical_accuracy": -0.05}, "per_class": {}}
    text = format_summary(summary(evaluation=evaluation, baseline_model="/p/Trainer/model/2",
                                  baseline_not_pushed="it failed the serving check", blessed=False, pushed=False))
    assert ("WARNING the last blessed model (/p/Trainer/model/2) was never pushed (it failed the serving check): "
            "compared with it, not with the model served") in text
    assert "never pushed" not in format_summary(summary(evaluation=evaluation, baseline_model="/p/Trainer/model/1",
                                                        baseline_not_pushed=None, blessed=True, pushed=False))


def test_a_push_of_an_earlier_run_or_of_a_model_already_served_is_said_so():
    pushed = dict(blessed=True, pushed=True, pushed_version="17", pushed_destination="/s/17")
    text = format_summary(summary(**pushed, pushed_earlier=True, pushed_present=True,
                                  components={"Trainer": "cached", "Pusher": "cached"}))
    assert "pushed: version 17 → /s/17, by an earlier run" in text
    text = format_summary(summary(**pushed, pushed_earlier=True, pushed_present=False))
    assert "pushed: version 17 by an earlier run; it is no longer in /s/17: nothing of this model is served" in text
    text = format_summary(summary(**pushed, pushed_copied=False, pushed_present=True))
    assert "pushed: nothing new; this model is already served as version 17 → /s/17" in text


def test_a_cached_trainers_training_is_said_to_be_an_earlier_runs(tmp_path, monkeypatch):
    """A re-run with nothing changed had printed the cached Trainer's training time as if this run had trained
    (and --summary-json's "training" had said nothing else), where its push line says "by an earlier run"."""
    import json
    from types import SimpleNamespace

    from pipeline import run_summary
    from pipeline.pipeline import PRETRAINER_NODE

    (tmp_path / "training_summary.json").write_text(json.dumps(
        {"epochs": 1, "steps": 4, "train_examples": 123, "budget": "chosen", "train_seconds": 24.4,
         "parameters": 690875, "base_model": "/p/pretrainer/model/3"}))
    trained = {"outputs": {"model_run": [SimpleNamespace(uri=str(tmp_path))]}}
    for state, earlier in (("cached", True), ("complete", False)):
        run = {"run_id": "r2", "components": {PRETRAINER_NODE: {**trained, "state": state, "execution_id": 1},
                                              "Trainer": {**trained, "state": state, "execution_id": 2}}}
        monkeypatch.setattr(run_summary, "last_run", lambda *_, **__: run)
        found = run_summary.summarize(str(tmp_path / "metadata.sqlite"))
        assert found["training"]["trained_earlier"] is earlier and found["pretraining"]["trained_earlier"] is earlier
        text = format_summary(found)
        line = ("training: 1 epoch (4 steps, chosen; 123 training images) in 24.4 s, 690,875 parameters, starting "
                "from the pretrained network")
        assert (f"{line}, by an earlier run (the Trainer's inputs are unchanged)\n" in text) is earlier
        assert f"{line}\n" in text or earlier
        assert ("690,875 parameters, by an earlier run (the pretrainer's inputs are unchanged)" in text) is earlier


def test_a_trainer_of_the_generated_letters_epochs_is_said_so(tmp_path, monkeypatch):
    """A training summary's "budget": "generated" (generate_epochs, nobody chose them) had been said chosen."""
    import json
    from types import SimpleNamespace

    from pipeline import run_summary
    trained = {"outputs": {"model_run": [SimpleNamespace(uri=str(tmp_path))]}}
    run = {"run_id": "r1", "components": {"Trainer": {**trained, "state": "complete", "execution_id": 2}}}
    monkeypatch.setattr(run_summary, "last_run", lambda *_, **__: run)
    for budget, said in (("generated", "the generated letters' epochs;"), ("chosen", "chosen;"),
                         ("sized", "sized from")):
        (tmp_path / "training_summary.json").write_text(json.dumps(
            {"epochs": 12, "steps": 36, "train_examples": 90, "budget": budget, "train_seconds": 4.4,
             "parameters": 690875, "base_model": ""}))
        text = format_summary(run_summary.summarize(str(tmp_path / "metadata.sqlite")))
        assert f"training: 12 epochs (36 steps, {said} 90 training images) in 4.4 s, 690,875 parameters\n" in text


def _picture(seed: int) -> bytes:
    from tests.conftest import letter_image, png_bytes
    return png_bytes(letter_image(28, 28, seed=seed))


def _pictures_hashed_into(split: str, count: int, first_seed: int = 0) -> list[bytes]:
    """``count`` different pictures the default 4:1 split hashes into ``split``."""
    from components.image_example_gen import hashed_split
    from core.image_io import pixel_digest
    found, seed = [], first_seed
    while len(found) < count:
        if hashed_split(pixel_digest(_picture(seed)), 4, 1) == split:
            found.append(_picture(seed))
        seed += 1
    return found


def test_only_feedback_left_out_whose_pixels_are_in_this_runs_eval_split_turns_the_comparison_off(
        tmp_path, capsys, monkeypatch):
    """An image with the pixels of a feedback image is in train with it; with that feedback left out (--no-feedback,
    another store, deleted rows) it is back in the eval split, where the last blessed model scores high for having
    trained on it: that run is gated by the floor only. Feedback left out without such an eval twin (a row deleted
    for its wrong label, its picture not in the data root; or its twin hashed into train) keeps the comparison
    on: the eval split is the one the last blessed model was judged on."""
    import itertools

    import local_runner
    from components import image_example_gen as gen
    from core.configs import Config
    from pipeline import run_summary

    twin_in_eval, not_in_data_root = _pictures_hashed_into("eval", 2)
    (twin_in_train,) = _pictures_hashed_into("train", 1)
    data = tmp_path / "data"
    for i, picture in enumerate([twin_in_eval, twin_in_train, *_pictures_hashed_into("eval", 3, first_seed=100)]):
        (data / "alef").mkdir(parents=True, exist_ok=True)
        (data / "alef" / f"{i}.png").write_bytes(picture)
    feedback = {"aaaa": twin_in_eval, "bbbb": twin_in_train, "cccc": not_in_data_root}
    trained = {"split": "4:1 by pixels", "feedback_images": 3,
               "feedback_files": [f"feedback/alef/{i}.png" for i in feedback],
               "feedback_digests": sorted(gen.pixel_digest(picture) for picture in feedback.values())}
    monkeypatch.setattr(run_summary, "last_blessed_training", lambda _: trained)
    reads = []
    digests = gen.kept_pixel_digests
    monkeypatch.setattr(gen, "kept_pixel_digests", lambda *a: reads.append(a[0]) or digests(*a))
    config = Config(pipeline_root=str(tmp_path), data_root=str(data))
    exports = itertools.count()

    def gate(rows: dict | None):
        """(max_regression, reason, printed) of a run whose exported feedback holds ``rows`` (None: no feedback)."""
        root = None
        if rows is not None:
            root = tmp_path / f"export{next(exports)}"
            (root / "alef").mkdir(parents=True)
            for store_id, picture in rows.items():
                (root / "alef" / f"{store_id}.png").write_bytes(picture)
        gated, why = local_runner.gate_after_a_split_change(config, str(root) if root else None)
        return gated.max_regression, why, capsys.readouterr().out

    assert gate(feedback) == (config.max_regression, None, "")
    assert gate({"aaaa": twin_in_eval, "bbbb": twin_in_train}) == (config.max_regression, None, "")   # a wrong label
    assert reads == [str(data)]    # its picture hashes into eval: the data root was read, and holds no twin
    assert gate({"aaaa": twin_in_eval, "cccc": not_in_data_root}) == (config.max_regression, None, "")
    assert reads == [str(data)]    # its twin hashes into train: nothing to look for in the data root
    assert gate({"bbbb": twin_in_train, "dddd": twin_in_eval}) == (config.max_regression, None, "")   # same pixels
    for rows in ({"bbbb": twin_in_train, "cccc": not_in_data_root}, {}, None):   # deleted, an empty store, none
        regression, why, out = gate(rows)
        assert regression == 1.0 and why.startswith("1 of the feedback images the last blessed model trained on")
        assert f"{why[0].upper()}{why[1:]}, so this run is gated by the accuracy floor only" in out
    # an older report without the digests: any feedback image left out, by its store id
    trained.pop("feedback_digests")
    assert gate({"aaaa": twin_in_eval, "bbbb": twin_in_train})[0] == 1.0
    assert gate(feedback)[0] == config.max_regression
    # without the file names either: the count alone, gated when this run has no feedback at all
    trained.pop("feedback_files")
    assert gate({})[0] == 1.0 and gate(None)[0] == 1.0
    assert gate({"zzzz": not_in_data_root})[0] == config.max_regression


def test_a_run_not_compared_with_the_last_blessed_model_says_so_instead_of_a_change():
    accuracy = {"sparse_categorical_accuracy": 0.0145}
    evaluation = {"overall": accuracy, "baseline": accuracy, "diff": {"sparse_categorical_accuracy": 0.0},
                  "per_class": {}}
    why = "1 of the feedback images the last blessed model trained on are not in this run's feedback"
    text = format_summary(summary(evaluation=evaluation, blessed=True, not_compared_because=why))
    assert f"eval accuracy: top-1 0.0145; last blessed model 0.0145 (compared: no — {why})" in text
    assert "(change " not in text and "gate: BLESSED by the accuracy floor only" in text
    compared = format_summary(summary(evaluation=evaluation, blessed=True, not_compared_because=None))
    assert "last blessed model 0.0145 (change +0.0000)" in compared and "floor only" not in compared


def test_a_candidate_compared_with_itself_is_named_as_the_baseline(tmp_path):
    """A Trainer cached with the last blessed model gives the Evaluator that model as both inputs: TFX records
    one INPUT event whose path holds both keys. Its baseline had read as none, and the never-pushed warning
    could not fire."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb
    from pipeline.run_summary import compared_model

    cfg = pb.ConnectionConfig()
    cfg.sqlite.filename_uri = str(tmp_path / "metadata.sqlite")
    store = metadata_store.MetadataStore(cfg)
    model_type = store.put_artifact_type(pb.ArtifactType(name="Model"))
    step = store.put_execution_type(pb.ExecutionType(name="Evaluator"))

    def evaluated_against_itself(uri: str) -> int:
        [model] = store.put_artifacts([pb.Artifact(type_id=model_type, uri=uri, state=pb.Artifact.LIVE)])
        [execution] = store.put_executions([pb.Execution(type_id=step)])
        event = pb.Event(artifact_id=model, execution_id=execution, type=pb.Event.INPUT)
        for key in ("model", "baseline_model"):   # as TFX's event_lib.add_event_path adds them
            event.path.steps.add().key = key
            event.path.steps.add().index = 0
        store.put_events([event])
        return execution

    assert compared_model(str(tmp_path / "metadata.sqlite"), evaluated_against_itself("/p/Trainer/model/5")) == {
        "uri": "/p/Trainer/model/5", "not_pushed": "the Pusher did not push it"}


def test_a_baseline_other_than_the_model_served_is_named_with_the_one_served(tmp_path):
    """TFX's LatestBlessedModelStrategy takes the newest model blessed (by artifact id): an older model blessed
    again (its Trainer cached) and pushed since is served, yet the gate compared later candidates with the newer
    one, the summary calling it "last blessed model" without a word."""
    from components.atomic_pusher import push_model
    from pipeline.run_summary import not_served, served_model

    newer, older = tmp_path / "p" / "Trainer" / "model" / "19", tmp_path / "p" / "Trainer" / "model" / "13"
    for model in (newer, older):
        stand_in_version(model / "Format-Serving", content=model.name.encode())
    serving = tmp_path / "serving"
    assert served_model(str(serving)) is None                       # nothing pushed yet
    push_model(str(newer / "Format-Serving"), str(serving))
    version, _ = push_model(str(older / "Format-Serving"), str(serving))   # blessed again, pushed as the newest
    served = served_model(str(serving))
    assert served == {"version": version, "model": str(older)}
    assert not_served(str(newer), served) == served and not_served(f"{older}/", served) is None
    assert not_served(str(newer), None) is None
    (serving / str(version + 1)).mkdir()                # half-written (no saved_model.pb): not served, not loadable
    assert served_model(str(serving)) == served
    publish_version(str(serving), version + 2, without_variables=True)   # no variables/variables.index: neither
    assert served_model(str(serving)) == served

    evaluation = {"overall": {"sparse_categorical_accuracy": 0.0149},
                  "baseline": {"sparse_categorical_accuracy": 0.1642},
                  "diff": {"sparse_categorical_accuracy": -0.1493}, "per_class": {}}
    text = format_summary(summary(evaluation=evaluation, baseline_model=str(newer), baseline_not_pushed=None,
                                  baseline_not_served=served, blessed=False, pushed=False))
    assert (f"WARNING the last blessed model ({newer}) is not the one served (version {version}, {older}): TFX's "
            "LatestBlessedModelStrategy takes the newest model blessed, not the one blessed or pushed last: "
            "compared with it, not with the model served") in text
    never_pushed = format_summary(summary(evaluation=evaluation, baseline_model=str(newer), blessed=False,
                                          baseline_not_pushed="it failed the serving check",
                                          baseline_not_served=served, pushed=False))
    assert "was never pushed" in never_pushed and "is not the one served" not in never_pushed   # one warning
    assert "WARNING" not in format_summary(summary(evaluation=evaluation, baseline_model=str(older),
                                                   baseline_not_pushed=None, baseline_not_served=None,
                                                   blessed=True, pushed=False))


def _evaluated_run(monkeypatch, baseline_uri, trained_uri="/p/Trainer/model/13", accuracy=(0.2, 0.2)):
    """summarize() of a run whose Evaluator compared the Trainer's model (``trained_uri``) with ``baseline_uri``
    (None: no blessed model before), blessed, at top-1 ``accuracy`` (candidate, baseline)."""
    from types import SimpleNamespace

    from ml_metadata.proto import metadata_store_pb2 as pb

    from pipeline import run_summary

    blessing = pb.Artifact()
    blessing.custom_properties["blessed"].int_value = 1
    run = {"run_id": "r2", "components": {
        "Trainer": {"state": "cached", "execution_id": 1, "outputs": {"model": [SimpleNamespace(uri=trained_uri)]}},
        "Evaluator": {"state": "complete", "execution_id": 2,
                      "outputs": {"evaluation": [SimpleNamespace(uri="/p/Evaluator/evaluation/14")],
                                  "blessing": [blessing]}}}}
    candidate, base = accuracy
    metrics = {"overall": {"sparse_categorical_accuracy": candidate}, "per_class": {},
               "baseline": {} if baseline_uri is None else {"sparse_categorical_accuracy": base},
               "diff": {} if baseline_uri is None else {"sparse_categorical_accuracy": candidate - base}}
    monkeypatch.setattr(run_summary, "last_run", lambda *_, **__: run)
    monkeypatch.setattr(run_summary, "compared_model", lambda *_: baseline_uri and {
        "uri": baseline_uri, "not_pushed": "the Pusher did not push it"})
    monkeypatch.setattr(run_summary, "evaluation_metrics", lambda _: metrics)
    monkeypatch.setattr(run_summary.tfma, "load_validation_result",
                        lambda _: SimpleNamespace(validation_ok=True, metric_validations_per_slice=[]))
    return run_summary


def test_a_baseline_that_is_this_runs_model_is_said_to_be_no_comparison(monkeypatch):
    """A re-run with only the accuracy floor changed (the Trainer cached) gives the Evaluator the last blessed
    model as candidate and baseline: the summary had printed "last blessed model 0.2000 (change +0.0000)", as if
    the gate had compared two models."""
    run_summary = _evaluated_run(monkeypatch, "/p/Trainer/model/13/")
    served = {"version": 3, "model": "/p/Trainer/model/13"}
    found = run_summary.summarize("/p/metadata.sqlite", served=served)
    assert found["baseline_is_this_model"] is True and found["compared_with_last_blessed"] is False
    assert found["not_compared_because"] == "it is this same model (/p/Trainer/model/13/)"
    assert found["baseline_not_pushed"] is None and found["baseline_not_served"] is None
    text = format_summary(found)
    assert ("eval accuracy: top-1 0.2000; last blessed model 0.2000 (compared: no — it is this same model "
            "(/p/Trainer/model/13/))") in text
    assert "(change " not in text and "gate: BLESSED by the accuracy floor only" in text and "WARNING" not in text
    # another model served (pushed since by hand, by another pipeline): this one was compared with none
    found = run_summary.summarize("/p/metadata.sqlite", served={"version": 4, "model": "/q/Trainer/model/2"})
    assert found["baseline_not_served"] == {"version": 4, "model": "/q/Trainer/model/2"}
    assert ("WARNING the serving dir already served version 4 (/q/Trainer/model/2) when this run started: this model "
            "was never compared with it") in format_summary(found)
    # another model as baseline: compared, as before
    run_summary = _evaluated_run(monkeypatch, "/p/Trainer/model/9", accuracy=(0.2, 0.15))
    found = run_summary.summarize("/p/metadata.sqlite")
    assert found["baseline_is_this_model"] is False and found["compared_with_last_blessed"] is True
    assert "last blessed model 0.1500 (change +0.0500)" in format_summary(found)


def test_a_serving_dir_that_serves_another_pipelines_model_is_warned_of_on_a_first_run(monkeypatch):
    """A first run of a pipeline root pushing into a serving dir another pipeline fills had said only "no blessed
    model before this one" (baseline_not_served null): the versions served there were never compared with it."""
    run_summary = _evaluated_run(monkeypatch, None)
    other = {"version": 7, "model": "/p1/Trainer/model/5"}
    found = run_summary.summarize("/p2/metadata.sqlite", served=other)
    assert found["baseline_model"] is None and found["baseline_not_served"] == other
    text = format_summary(found)
    assert "; no blessed model before this one\n  WARNING the serving dir already served version 7 " \
           "(/p1/Trainer/model/5) when this run started: this model was never compared with it" in text
    assert run_summary.summarize("/p2/metadata.sqlite")["baseline_not_served"] is None   # an empty serving dir
    assert "WARNING" not in format_summary(run_summary.summarize("/p2/metadata.sqlite"))


def test_a_version_put_in_the_serving_dir_by_hand_is_served_and_warned_of(monkeypatch, tmp_path):
    """A version without a push record (copied in by hand, exported by another tool, its record lost) had counted
    as nothing served: a run with no model to compare with replaced it without a word. It is served, of unknown
    origin; a newer folder still being written (no saved_model.pb) is not what the server serves."""
    from pipeline.run_summary import served_model

    serving = tmp_path / "serving"
    stand_in_version(serving / "0012", content=b"by hand")
    (serving / "13" / "variables").mkdir(parents=True)          # a copy under way: no saved_model.pb yet
    hand = {"version": 12, "model": None}
    assert served_model(str(serving)) == hand
    run_summary = _evaluated_run(monkeypatch, None)
    found = run_summary.summarize("/p/metadata.sqlite", served=hand)
    assert found["baseline_not_served"] == hand
    assert ("; no blessed model before this one\n  WARNING the serving dir already served version 12 (a model of "
            "unknown origin: no push record) when this run started: this model was never compared with it"
            ) in format_summary(found)
    evaluation = {"overall": {"sparse_categorical_accuracy": 0.2}, "baseline": {"sparse_categorical_accuracy": 0.15},
                  "diff": {"sparse_categorical_accuracy": 0.05}, "per_class": {}}
    assert ("WARNING the last blessed model (/p/Trainer/model/9) is not the one served (version 12, a model of "
            "unknown origin: no push record)") in format_summary(summary(
        evaluation=evaluation, baseline_model="/p/Trainer/model/9", baseline_not_pushed=None,
        baseline_not_served=hand, blessed=True, pushed=False))


def test_a_run_not_recorded_yet_is_a_lookup_error_and_makes_no_file(tmp_path):
    """A run that failed before ML Metadata made its file: LookupError, as for a file without runs (the caller's
    failed-before-any-step summary), not ML Metadata's "unable to open database file"."""
    from pipeline import run_summary

    with pytest.raises(LookupError, match="no pipeline run recorded in"):
        run_summary.last_run(str(tmp_path / "metadata.sqlite"))
    assert os.listdir(tmp_path) == []
