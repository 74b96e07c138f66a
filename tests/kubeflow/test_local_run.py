"""ExampleGen → StatisticsGen → SchemaGen → Transform of the compiled spec, run on this machine through the
container command and arguments the spec gives (no cluster), with the image's environment."""
import json
import os

import pytest

from kubeflow import spec as spec_lib
from kubeflow.local_launcher import EXECUTOR_INPUT_PLACEHOLDER, LocalLauncher


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
    assert json.loads(examples["metadata"]["split_names"]) == ["train", "eval"]
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
    assert json.loads(outputs["transformed_examples"]["metadata"]["split_names"]) == ["train", "eval"]
    for split in ("train", "eval"):
        assert os.listdir(os.path.join(outputs["transformed_examples"]["uri"], f"Split-{split}"))
    # The inputs Transform read are the artifacts the upstream tasks reported in their executor output.
    (line,) = launcher.commands["Transform"]
    executor_input = json.loads(line[line.index("--json_serialized_invocation_args") + 1])
    examples_in = executor_input["inputs"]["artifacts"]["examples"]["artifacts"][0]
    assert examples_in["uri"] == launcher.outputs["ImageExampleGen"]["examples"]["uri"]
    assert executor_input["inputs"]["parameterValues"]["preprocessing_fn"] == "models.preprocessing.preprocessing_fn"
