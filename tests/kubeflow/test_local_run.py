"""ExampleGen → StatisticsGen → SchemaGen → Transform of the compiled spec, run on this machine through the
container command and arguments the spec gives (no cluster), with the image's environment."""
import json
import os

import pytest

from core import settings
from kubeflow import spec as spec_lib
from kubeflow.local_launcher import EXECUTOR_INPUT_PLACEHOLDER, LocalLauncher

pytestmark = pytest.mark.slow   # runs the compiled spec's containers


@pytest.fixture(scope="module")
def launched(compiled, image_env, tmp_path_factory):
    spec, paths, _ = compiled
    launcher = LocalLauncher(spec, workdir=str(tmp_path_factory.mktemp("kfp_launcher")), env=image_env)
    ran = launcher.run(until="Transform")
    return launcher, ran, spec, paths


def test_tasks_ran_in_dependency_order(launched):
    _, ran, _, _ = launched
    assert ran == ["ImageExampleGen", "StatisticsGen", "SchemaGen", "Transform"]


def test_commands_are_the_specs_with_the_executor_input_filled_in(launched):
    launcher, ran, spec, _ = launched
    for name in ran:
        container = spec_lib.executor_of(spec, name)[1]["container"]
        (line,) = launcher.commands[name]       # open-source KFP: no ExampleGen driver hook
        assert line[1:3] == container["command"][1:3] and container["command"][0] == "python"
        index = container["args"].index(EXECUTOR_INPUT_PLACEHOLDER)
        assert line[3:] == container["args"][:index] + [line[3 + index]] + container["args"][index + 1:]
        executor_input = json.loads(line[3 + index])
        assert set(executor_input["outputs"]["artifacts"]) == set(
            spec["components"][name]["outputDefinitions"]["artifacts"])
        for key, value in executor_input["outputs"]["artifacts"].items():
            assert value["artifacts"][0]["uri"].startswith(spec["defaultPipelineRoot"] + "/letters/")


def test_example_gen_wrote_both_splits_and_its_report(launched):
    launcher, _, _, paths = launched
    examples = launcher.outputs["ImageExampleGen"]["examples"]
    assert sorted(json.loads(examples["metadata"]["split_names"])) == ["eval", "train"]
    for split in ("train", "eval"):
        files = os.listdir(os.path.join(examples["uri"], f"Split-{split}"))
        assert files and all(f.endswith(".gz") for f in files)
    with open(os.path.join(examples["uri"], "ingest_report.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert report["kept"] == 81 and report["skipped"] == 0 and report["input_base"] == str(paths["data_root"])


def test_transform_produced_a_graph_and_transformed_examples(launched):
    import tensorflow_transform as tft

    launcher, _, _, _ = launched
    outputs = launcher.outputs["Transform"]
    graph = tft.TFTransformOutput(outputs["transform_graph"]["uri"])
    assert "image" in graph.transformed_feature_spec()
    assert sorted(json.loads(outputs["transformed_examples"]["metadata"]["split_names"])) == ["eval", "train"]
    for split in ("train", "eval"):
        assert os.listdir(os.path.join(outputs["transformed_examples"]["uri"], f"Split-{split}"))
    # The inputs Transform read are the artifacts the upstream tasks reported in their executor output.
    (line,) = launcher.commands["Transform"]
    executor_input = json.loads(line[line.index("--json_serialized_invocation_args") + 1])
    examples_in = executor_input["inputs"]["artifacts"]["examples"]["artifacts"][0]
    assert examples_in["uri"] == launcher.outputs["ImageExampleGen"]["examples"]["uri"]
    assert executor_input["inputs"]["parameterValues"]["preprocessing_fn"] == "models.preprocessing.preprocessing_fn"


def test_vertex_example_gen_runs_its_driver_hook_first(compiled, image_env, tmp_path):
    """Vertex AI Pipelines runs ExampleGen's lifecycle.preCacheCheck driver before the executor; the executor
    then reads the span and input fingerprint the driver wrote into the output metadata file."""
    import kubeflow_runner
    from core.configs import Config

    _, paths, _ = compiled
    config = Config().replace(pipeline_root=str(tmp_path / "root"), data_root=str(paths["data_root"]),
                              serving_dir=str(tmp_path / "serving"))
    job, _ = kubeflow_runner.compile_spec(config, "letters:test", ["--runner=DirectRunner"], {}, target="vertex")
    launcher = LocalLauncher(job["pipelineSpec"], env=image_env)
    assert launcher.run(until="ImageExampleGen", run_driver=True) == ["ImageExampleGen"]
    driver, executor = launcher.commands["ImageExampleGen"]
    assert driver[1:3] == ["-m", "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver"]
    assert executor[1:3] == ["-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
    log = launcher.logs["ImageExampleGen"]
    assert "Calculated fingerprint: split:images,num_files:81" in log
    assert "'input_fingerprint': 'split:images,num_files:81" in log and "'span': 0" in log
    examples = launcher.outputs["ImageExampleGen"]["examples"]
    assert os.listdir(os.path.join(examples["uri"], "Split-eval"))


@pytest.mark.skipif(not settings.parse("bool", os.environ.get("LETTERS_KUBEFLOW_FULL") or "0", "LETTERS_KUBEFLOW_FULL"),
                    reason="the whole spec takes about 3-5 minutes on 2 cores: LETTERS_KUBEFLOW_FULL=1 runs it")
def test_the_whole_open_source_kfp_spec_runs_and_pushes(compiled, image_env, tmp_path):
    spec, paths, _ = compiled
    launcher = LocalLauncher(spec, workdir=str(tmp_path / "launcher"), env=image_env)
    assert launcher.run() == ["ImageExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform",
                              "Trainer", "Evaluator", "ServingValidator", "Pusher"]
    assert launcher.outputs["Evaluator"]["blessing"]["metadata"]["blessed"] == 1
    pushed = launcher.outputs["Pusher"]["pushed_model"]["metadata"]
    assert pushed["pushed"] == 1
    version = os.path.basename(pushed["pushed_destination"])
    assert os.path.exists(os.path.join(paths["serving_dir"], version, "saved_model.pb"))
