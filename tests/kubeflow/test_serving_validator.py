"""ServingValidator: the candidate model served by the embedded server, real images over REST, an InfraBlessing."""
import json
import os

import pytest

from core import configs

IMAGES = 10


def _examples_artifact(root, images):
    """An Examples artifact with a gzipped TFRecord eval split, as the ImageExampleGen writes it."""
    import tensorflow as tf
    from tfx.types import standard_artifacts

    from components.image_example_gen import make_example
    from core.labels import CLASS_NAMES

    artifact = standard_artifacts.Examples()
    artifact.uri = str(root)
    artifact.split_names = '["train", "eval"]'
    os.makedirs(os.path.join(root, "Split-eval"))
    path = os.path.join(root, "Split-eval", "data_tfrecord-00000-of-00001.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i, image in enumerate(images):
            writer.write(make_example(image, CLASS_NAMES[i % len(CLASS_NAMES)], f"x/{i}.png").SerializeToString())
    return artifact


def _model_artifact(root, build):
    from tfx.types import standard_artifacts

    artifact = standard_artifacts.Model()
    artifact.uri = str(root)
    build(os.path.join(root, "Format-Serving"))
    return artifact


def _run(tmp_path, model, examples, blessing_input=None, **props):
    from tfx.types import standard_artifacts

    from components import serving_validator

    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = str(tmp_path / "blessing")
    inputs = {"model": [model], "examples": [examples]}
    if blessing_input is not None:
        inputs["model_blessing"] = [blessing_input]
    serving_validator.Executor().Do(inputs, {"blessing": [blessing]},
                                    {"model_name": "letters", "num_examples": IMAGES, "max_latency_ms": 0.0,
                                     "split": "eval", **props})
    with open(os.path.join(blessing.uri, serving_validator.REPORT_FILE)) as f:
        return blessing, json.load(f)


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    from tests.support import serving as testing

    return _examples_artifact(tmp_path_factory.mktemp("examples"),
                              [testing.png_bytes(noise_seed=i, size=20) for i in range(IMAGES + 3)])


def test_a_servable_model_is_blessed(tmp_path, examples):
    from tests.support import serving as testing

    model = _model_artifact(tmp_path / "model", testing.build_tiny_model)
    blessing, report = _run(tmp_path, model, examples)
    assert report["blessed"], report
    assert blessing.get_int_custom_property("blessed") == 1
    assert os.path.exists(os.path.join(blessing.uri, "INFRA_BLESSED"))
    assert report["checks"]["status"]["versions"] == {"1": "AVAILABLE"}
    assert {configs.IMAGE_SIGNATURE, configs.SERVING_DEFAULT_SIGNATURE} <= set(report["checks"]["metadata"]["signatures"])
    assert report["checks"]["predict"]["images"] == IMAGES
    assert report["checks"]["predict"]["max_signature_difference"] < 1e-3
    # The Pusher reads the same property through TFX's helper.
    from tfx.components.util import model_utils
    assert model_utils.is_infra_validated(blessing)


def test_a_killed_checks_copy_of_the_model_is_removed_by_a_later_check(tmp_path, examples, monkeypatch, capsys):
    """The check serves a copy of the model from the temporary folder and removes it when done; a kill -9 left it
    there (about 9 MB each). A later check removes such copies nothing was written into for an hour; one in use
    by a check in progress stays."""
    import tempfile
    import time
    from components import serving_validator
    from tests.support import serving as testing

    temp = tmp_path / "temp"
    stale, live = temp / f"{serving_validator.WORK_PREFIX}killed", temp / f"{serving_validator.WORK_PREFIX}running"
    for folder in (stale, live):
        (folder / "letters" / "1").mkdir(parents=True)
        (folder / "letters" / "1" / "saved_model.pb").write_bytes(b"model")
    old = time.time() - serving_validator.STALE_WORK_SECONDS - 60
    for path in (stale, stale / "letters", stale / "letters" / "1", stale / "letters" / "1" / "saved_model.pb"):
        os.utime(path, (old, old))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    model = _model_artifact(tmp_path / "model", testing.build_tiny_model)
    _, report = _run(tmp_path, model, examples)
    assert report["blessed"], report
    left = sorted(name for name in os.listdir(temp) if name.startswith(serving_validator.WORK_PREFIX))
    assert left == [live.name]   # the stale copy, and the check's own, are gone
    assert f"removed {stale.name}" in capsys.readouterr().out


def test_a_model_without_the_image_signature_is_not_blessed(tmp_path, examples):
    import tensorflow as tf

    def build(path):
        class OnlyExamples(tf.Module):
            @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
            def serving_default(self, examples):
                return {"probabilities": tf.fill([tf.shape(examples)[0], 27], 1.0 / 27)}

        module = OnlyExamples()
        tf.saved_model.save(module, path, signatures={"serving_default": module.serving_default})

    blessing, report = _run(tmp_path, _model_artifact(tmp_path / "model", build), examples)
    assert not report["blessed"]
    assert "predict_images" in report["failure"]
    assert blessing.get_int_custom_property("blessed") == 0
    assert os.path.exists(os.path.join(blessing.uri, "INFRA_NOT_BLESSED"))


def test_a_model_whose_signature_def_names_other_tensors_than_its_functions_is_not_blessed(tmp_path, examples):
    """A SavedModel whose SignatureDef declares predict_images' probabilities as the tensor of its top scores (edited,
    or written by other tools) had been blessed: the embedded server answers through the functions the model was
    saved with, TF Serving by the tensor names the SignatureDef declares (predict_util.cc), [N, 3] numbers there."""
    from tensorflow.core.protobuf import saved_model_pb2

    from tests.support import serving as testing

    def build(path):
        testing.build_tiny_model(path)
        model = saved_model_pb2.SavedModel.FromString(open(os.path.join(path, "saved_model.pb"), "rb").read())
        outputs = model.meta_graphs[0].signature_def[configs.IMAGE_SIGNATURE].outputs
        probabilities, scores = outputs[configs.PROBABILITIES_OUTPUT], outputs[configs.TOP_SCORES_OUTPUT]
        probabilities_copy = type(probabilities).FromString(probabilities.SerializeToString())
        probabilities.CopyFrom(scores)
        scores.CopyFrom(probabilities_copy)
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(model.SerializeToString())

    _, report = _run(tmp_path, _model_artifact(tmp_path / "model", build), examples)
    assert not report["blessed"]
    assert (f"{configs.IMAGE_SIGNATURE}: output 'probabilities' is declared of shape [-1, 3], not [-1, 27]"
            in report["failure"]), report["failure"]


def test_an_unloadable_model_is_not_blessed(tmp_path, examples):
    def build(path):
        os.makedirs(path)
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(b"not a SavedModel")

    _, report = _run(tmp_path, _model_artifact(tmp_path / "model", build), examples)
    assert not report["blessed"] and "could not load" in report["failure"]


def test_a_model_the_evaluator_rejected_is_not_started(tmp_path, examples, capsys):
    """The report and the printed verdict say why the model was not started; "not started" had been stuck onto
    the Evaluator's verdict as if it were its reason (… did not bless this model: not started)."""
    from tfx.types import standard_artifacts

    rejected = standard_artifacts.ModelBlessing()
    rejected.uri = str(tmp_path / "model_blessing")
    rejected.set_int_custom_property("blessed", 0)
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "no-model-here")
    _, report = _run(tmp_path, model, examples, blessing_input=rejected)
    assert not report["blessed"] and report["checks"] == {}
    assert report["failure"] == "the Evaluator did not bless this model, so it was not started"
    assert ("ServingValidator: NOT blessed: the Evaluator did not bless this model, so it was not started "
            f"({tmp_path / 'no-model-here'}") in capsys.readouterr().out


@pytest.mark.slow   # compiles the whole pipeline spec and runs a container command
def test_compiles_to_a_kfp_container_and_runs_through_the_entrypoint(tmp_path, examples, image_env):
    """A pipeline of two importers and the validator, compiled by KubeflowV2DagRunner; the validator task
    runs through the spec's container command with the importers' artifacts."""
    from tfx import v1 as tfx

    from components.serving_validator import ServingValidator
    from kubeflow import spec as spec_lib
    from kubeflow.local_launcher import LocalLauncher
    from tests.support import serving as testing

    model_uri = tmp_path / "model"
    testing.build_tiny_model(str(model_uri / "Format-Serving"))
    model = tfx.dsl.Importer(source_uri=str(model_uri), artifact_type=tfx.types.standard_artifacts.Model
                             ).with_id("model_importer")
    imported = tfx.dsl.Importer(source_uri=examples.uri, artifact_type=tfx.types.standard_artifacts.Examples,
                                properties={"split_names": '["train", "eval"]'}).with_id("examples_importer")
    validator = ServingValidator(model=model.outputs["result"], examples=imported.outputs["result"], num_examples=4)
    job = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image="letters:test",
                                                                        use_pipeline_spec_2_1=True),
    ).run(tfx.dsl.Pipeline(pipeline_name="validator-only", pipeline_root=str(tmp_path / "root"),
                           components=[model, imported, validator]), write_out=False)
    spec = job["pipelineSpec"]
    container = spec_lib.executor_of(spec, "ServingValidator")[1]["container"]
    assert container["args"][:2] == ["--executor_class_path", "components.serving_validator.Executor"]
    assert spec_lib.tasks(spec)["ServingValidator"]["inputs"]["parameters"]["num_examples"]["runtimeValue"][
        "constant"] == 4

    launcher = LocalLauncher(spec, pipeline_root=str(tmp_path / "root"), env=image_env)
    launcher.outputs["model_importer"] = {"result": {
        "name": "model", "uri": str(model_uri), "metadata": {},
        "type": spec["components"]["ServingValidator"]["inputDefinitions"]["artifacts"]["model"]["artifactType"]}}
    launcher.outputs["examples_importer"] = {"result": {
        "name": "examples", "uri": examples.uri, "metadata": {"split_names": '["train", "eval"]'},
        "type": spec["components"]["ServingValidator"]["inputDefinitions"]["artifacts"]["examples"]["artifactType"]}}
    outputs = launcher.run_task("ServingValidator")
    assert outputs["blessing"]["metadata"]["blessed"] == 1
    assert os.path.exists(os.path.join(outputs["blessing"]["uri"], "INFRA_BLESSED"))
    assert "ServingValidator: blessed" in launcher.logs["ServingValidator"]


def test_a_run_stopped_during_the_check_blesses_nothing_even_if_its_interrupt_was_lost(tmp_path, examples,
                                                                                       monkeypatch):
    import signal

    from components import serving_validator
    from core import signals
    from tests.support import serving as testing

    real_validate = serving_validator.validate

    def stopped_while_loading(*args, **kwargs):   # SIGTERM recorded; its KeyboardInterrupt died in a weakref callback
        monkeypatch.setattr(signals, "_stop_requested", int(signal.SIGTERM))
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(serving_validator, "validate", stopped_while_loading)
    model = _model_artifact(tmp_path / "model", testing.build_tiny_model)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, model, examples)
    assert not os.path.exists(tmp_path / "blessing")


def test_a_stop_lost_before_the_check_does_not_start_it(tmp_path, examples, monkeypatch):
    import signal

    from components import serving_validator
    from core import signals
    from tests.support import serving as testing

    started = []
    monkeypatch.setattr(serving_validator, "validate", lambda *args, **kwargs: started.append(args))
    monkeypatch.setattr(signals, "_stop_requested", int(signal.SIGINT))   # recorded during the Trainer, then lost
    model = _model_artifact(tmp_path / "model", testing.build_tiny_model)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, model, examples)
    assert started == [] and not os.path.exists(tmp_path / "blessing")


def _model_with_probabilities(shape_after_n, value):
    """A model with both signatures whose ``probabilities`` for n images is ``value`` in the shape
    [n, *shape_after_n] (its top classes valid), built as a small tf.Module."""
    import tensorflow as tf

    def build(path):
        class WrongProbabilities(tf.Module):
            def probabilities(self, inputs):   # its shape left undeclared (a cond of two ranks): the answers say it
                values = tf.fill([tf.shape(inputs)[0], *shape_after_n], value)
                return tf.cond(tf.size(inputs) >= 0, lambda: values, lambda: tf.reshape(values, [-1, 1, 1, 1]))

            @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=configs.EXAMPLES_INPUT)])
            def serving_default(self, examples):
                return {configs.PROBABILITIES_OUTPUT: self.probabilities(examples)}

            @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=configs.IMAGE_INPUT)])
            def predict_images(self, images):
                n = tf.shape(images)[0]
                return {configs.PROBABILITIES_OUTPUT: self.probabilities(images),
                        configs.TOP_CLASSES_OUTPUT: tf.tile([["alef", "bet", "gimel"]], [n, 1]),
                        configs.TOP_LETTERS_OUTPUT: tf.tile([["א", "ב", "ג"]], [n, 1]),
                        configs.TOP_SCORES_OUTPUT: tf.fill([n, 3], 1.0 / 27),
                        configs.TOP_INDICES_OUTPUT: tf.tile([[0, 1, 2]], [n, 1])}

        module = WrongProbabilities()
        tf.saved_model.save(module, path, signatures={configs.SERVING_DEFAULT_SIGNATURE: module.serving_default,
                                                      configs.IMAGE_SIGNATURE: module.predict_images})

    return build


@pytest.mark.parametrize("shape_after_n, value, reason", [
    ([], 1.0, "probabilities has shape [10], expected [N, 27]"),
    ([27, 1], 1.0 / 27, "probabilities has shape [10, 27, 1], expected [N, 27]"),
    ([27], "0.037", "output 'probabilities' is declared DT_STRING, not DT_FLOAT"),
], ids=["one per image", "a column per class", "strings"])
def test_a_model_whose_probabilities_are_not_n_by_27_numbers_is_not_blessed(tmp_path, examples, shape_after_n, value,
                                                                             reason):
    model = _model_artifact(tmp_path / "model", _model_with_probabilities(shape_after_n, value))
    blessing, report = _run(tmp_path, model, examples)
    assert not report["blessed"] and reason in report["failure"], report
    assert blessing.get_int_custom_property("blessed") == 0
    assert os.path.exists(os.path.join(blessing.uri, "INFRA_NOT_BLESSED"))


def _model_with_top_outputs(change):
    """A model with both signatures whose probabilities agree, its ``predict_images`` top outputs (those of
    models.export.image_outputs) passed through ``change`` (a dict of tensors to a dict of tensors)."""
    import tensorflow as tf

    from models.export import image_outputs

    def build(path):
        class ChangedTop(tf.Module):
            def probabilities(self, inputs):
                return tf.nn.softmax(tf.tile(tf.range(27, dtype=tf.float32)[None, :] / 9.0,
                                             [tf.shape(inputs)[0], 1]), axis=-1)

            @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=configs.EXAMPLES_INPUT)])
            def serving_default(self, examples):
                return {configs.PROBABILITIES_OUTPUT: self.probabilities(examples)}

            @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=configs.IMAGE_INPUT)])
            def predict_images(self, images):
                return change(image_outputs(self.probabilities(images)))

        module = ChangedTop()
        tf.saved_model.save(module, path, signatures={configs.SERVING_DEFAULT_SIGNATURE: module.serving_default,
                                                      configs.IMAGE_SIGNATURE: module.predict_images})

    return build


def _shift_indices(outputs):
    return {**outputs, configs.TOP_INDICES_OUTPUT: (outputs[configs.TOP_INDICES_OUTPUT] + 1) % 27}


def _roll_letters(outputs):
    import tensorflow as tf

    return {**outputs, configs.TOP_LETTERS_OUTPUT: tf.roll(outputs[configs.TOP_LETTERS_OUTPUT], shift=1, axis=1)}


def _without_scores(outputs):
    return {name: value for name, value in outputs.items() if name != configs.TOP_SCORES_OUTPUT}


@pytest.mark.parametrize("change, check, reason", [
    (lambda outputs: outputs, None, None),
    (_shift_indices, "predict", "image 0: the prediction's top scores are not the probabilities of its top classes"),
    (_roll_letters, "predict", "image 0: the prediction's top_letters"),
    (_without_scores, "metadata", "predict_images: output 'top_scores' missing"),
], ids=["as exported", "top_indices shifted", "top_letters out of order", "no top_scores"])
def test_a_model_whose_top_classes_break_the_web_clients_contract_is_not_blessed(tmp_path, examples, change, check,
                                                                                 reason):
    """The web client refuses (a 502) an answer whose top indices, scores, classes and letters do not agree with its
    probabilities (core.prediction_contract): such a model is not blessed, the report naming the check and why."""
    blessing, report = _run(tmp_path, _model_artifact(tmp_path / "model", _model_with_top_outputs(change)), examples)
    if check is None:
        assert report["blessed"] and "failed_check" not in report, report
        return
    assert not report["blessed"] and report["failed_check"] == check and reason in report["failure"], report
    assert blessing.get_int_custom_property("blessed") == 0
