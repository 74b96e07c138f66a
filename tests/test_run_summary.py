"""The runner's closing summary says why nothing was pushed: the gate, or the serving check after it."""
from pipeline.run_summary import format_summary


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
                                      "failure": "the Evaluator did not bless this model: not started"},
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


def test_feedback_images_and_their_copies_are_named():
    text = format_summary(summary(ingest={"skipped": 0, "feedback": 130, "feedback_repeat": 8}, blessed=True,
                                  pushed=False))
    assert "examples: train 80, eval 20; skipped 0; 130 user-labelled feedback images (in train, 8× each)" in text
    assert "feedback" not in format_summary(summary(blessed=True, pushed=False))


def test_classes_missing_from_a_split_are_warned_about():
    text = format_summary(summary(ingest={"skipped": 0, "classes_missing_from_split": {"train": ["zayin"], "eval": []}},
                                  blessed=True, pushed=False))
    assert "WARNING classes with no train images (all theirs are in the other split): zayin" in text
    assert "no eval images" not in text


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
    """An ML Metadata store where each (split, blessed) is a Trainer run, its Model and a ModelBlessing."""
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
    for split, blessed in blessings:
        trainer = pb.Execution(type_id=trainer_type)
        trainer.custom_properties["custom_config"].string_value = json.dumps({"epochs": 2, "split": split})
        [execution_id] = store.put_executions([trainer])
        [model_id] = store.put_artifacts([pb.Artifact(type_id=model_type, uri=f"/m/{split}")])
        store.put_events([pb.Event(artifact_id=model_id, execution_id=execution_id, type=pb.Event.OUTPUT)])
        blessing = pb.Artifact(type_id=blessing_type)
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
    assert local_runner.gate_after_a_split_change(same) == same and capsys.readouterr().out == ""
    changed = local_runner.gate_after_a_split_change(config)   # the default 4:1
    assert changed.max_regression == 1.0 and changed.accuracy_floor == config.accuracy_floor
    assert "The split changed since the last blessed model (9:1 by pixels then, 4:1 by pixels now)" \
        in capsys.readouterr().out
    # a model split by the images' bytes (recorded as "9:1"): the same buckets hold other images now
    _store_with_blessings(tmp_path / "bytes.sqlite", [("9:1", True)])
    bytes_config = same.replace(pipeline_root=str(tmp_path / "x"), metadata_path=str(tmp_path / "bytes.sqlite"))
    assert local_runner.gate_after_a_split_change(bytes_config).max_regression == 1.0
    assert "(9:1 then, 9:1 by pixels now)" in capsys.readouterr().out
    # a model from before the split was recorded: split by bytes too
    monkeypatch.setattr(run_summary, "last_blessed_training", lambda _: {"epochs": 3})
    assert local_runner.gate_after_a_split_change(same).max_regression == 1.0
    assert "(unrecorded, by bytes then, 9:1 by pixels now)" in capsys.readouterr().out


def test_a_push_of_an_earlier_run_or_of_a_model_already_served_is_said_so():
    pushed = dict(blessed=True, pushed=True, pushed_version="17", pushed_destination="/s/17")
    text = format_summary(summary(**pushed, pushed_earlier=True, pushed_present=True,
                                  components={"Trainer": "cached", "Pusher": "cached"}))
    assert "pushed: version 17 → /s/17, by an earlier run" in text
    text = format_summary(summary(**pushed, pushed_earlier=True, pushed_present=False))
    assert "pushed: version 17 by an earlier run; it is no longer in /s/17: nothing of this model is served" in text
    text = format_summary(summary(**pushed, pushed_copied=False, pushed_present=True))
    assert "pushed: nothing new; this model is already served as version 17 → /s/17" in text


def test_a_run_without_the_feedback_the_last_blessed_model_trained_on_is_gated_by_the_floor_only(
        tmp_path, capsys, monkeypatch):
    """An image hashed into eval whose pixels were also feedback is trained on while the feedback is there; with
    that feedback left out (--no-feedback, an empty or another store, deleted rows) it is back in the eval split,
    where the last blessed model scores high for having trained on it."""
    import types

    import local_runner
    from core import feedback
    from core.configs import Config
    from pipeline import run_summary

    config = Config(pipeline_root=str(tmp_path), feedback_dir="")
    trained = {"split": "4:1 by pixels", "feedback_images": 2,
               "feedback_files": ["feedback/alef/aaaa.png", "feedback/bet/bbbb.jpg"]}
    monkeypatch.setattr(run_summary, "last_blessed_training", lambda _: trained)
    store = []
    monkeypatch.setattr(feedback, "stored_records", lambda _: [types.SimpleNamespace(id=i) for i in store])
    with_store = config.replace(feedback_dir=str(tmp_path / "fb"))
    for cfg, ids, left_out in ((config, [], 2), (with_store, [], 2), (with_store, ["aaaa"], 1),
                               (with_store, ["aaaa", "bbbb", "cccc"], 0)):
        store[:] = ids
        gated = local_runner.gate_after_a_split_change(cfg)
        out = capsys.readouterr().out
        if left_out:
            assert gated.max_regression == 1.0 and f"{left_out} of the feedback images the last blessed" in out
        else:
            assert gated == cfg and out == ""
    # an older report without the file names: the count alone, gated when this run has no feedback at all
    trained.pop("feedback_files")
    store[:] = []
    assert local_runner.gate_after_a_split_change(with_store).max_regression == 1.0
    store[:] = ["zzzz"]
    assert local_runner.gate_after_a_split_change(with_store) == with_store
