"""The local launcher itself, with a stand-in executor in place of the spec's TFX one (fast): where it puts the
outputs, what it reads back."""
import copy
import json
import os

from kubeflow import spec as spec_lib
from kubeflow.local_launcher import EXECUTOR_INPUT_PLACEHOLDER, LocalLauncher

# Writes what an executor writes, at the paths its ExecutorInput gives, resolved from the folder it runs in (as
# the TFX executor resolves them): a file in its examples artifact and the output metadata file.
STAND_IN = """
import json, os, sys
executor_input = json.loads(sys.argv[1])
examples = executor_input["outputs"]["artifacts"]["examples"]["artifacts"][0]
os.makedirs(examples["uri"])
open(os.path.join(examples["uri"], "data"), "w").close()
with open(executor_input["outputs"]["outputFile"], "w") as f:
    json.dump({"artifacts": {"examples": {"artifacts": [{"metadata": {"split_names": '["train"]'}}]}}}, f)
"""


def with_stand_in(spec: dict, task: str) -> dict:
    """A copy of ``spec`` whose ``task`` runs :data:`STAND_IN`."""
    spec = copy.deepcopy(spec)
    container = spec_lib.executor_of(spec, task)[1]["container"]
    container["command"], container["args"] = ["python", "-c", STAND_IN], [EXECUTOR_INPUT_PLACEHOLDER]
    return spec


def test_a_relative_pipeline_root_is_taken_from_where_the_launcher_runs(compiled, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    launcher = LocalLauncher(with_stand_in(compiled[0], "ImageExampleGen"), pipeline_root="rel")
    assert launcher.run(until="ImageExampleGen") == ["ImageExampleGen"]
    examples = launcher.outputs["ImageExampleGen"]["examples"]
    assert examples["uri"] == str(tmp_path / "rel" / "letters" / launcher.run_id / "ImageExampleGen" / "examples")
    assert os.path.exists(os.path.join(examples["uri"], "data"))
    assert json.loads(examples["metadata"]["split_names"]) == ["train"]   # the output metadata file was read
