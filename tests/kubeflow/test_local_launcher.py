"""The local launcher itself, with a stand-in executor in place of the spec's TFX one (fast): where it puts the
outputs, what it reads back."""
import copy
import json
import os
import shutil
import subprocess
import sys

from core import keras_mode
from kubeflow import spec as spec_lib
from kubeflow.local_launcher import EXECUTOR_INPUT_PLACEHOLDER, LocalLauncher
from tests.kubeflow.conftest import ROOT

# Writes what an executor writes, at the paths its ExecutorInput gives, resolved from the folder it runs in (as
# the TFX executor resolves them): its environment in its examples artifact and the output metadata file.
STAND_IN = """
import json, os, sys
executor_input = json.loads(sys.argv[1])
examples = executor_input["outputs"]["artifacts"]["examples"]["artifacts"][0]
os.makedirs(examples["uri"])
with open(os.path.join(examples["uri"], "env.json"), "w") as f:
    json.dump(dict(os.environ), f)
with open(executor_input["outputs"]["outputFile"], "w") as f:
    json.dump({"artifacts": {"examples": {"artifacts": [{"metadata": {"split_names": '["train"]'}}]}}}, f)
"""


# Keeps the ExecutorInput it is given, in the folder it runs in.
RECORDER = """
import sys
with open("executor_input.json", "w") as f:
    f.write(sys.argv[1])
"""


def with_stand_in(spec: dict, task: str, code: str = STAND_IN) -> dict:
    """A copy of ``spec`` whose ``task`` runs ``code`` (:data:`STAND_IN`)."""
    spec = copy.deepcopy(spec)
    container = spec_lib.executor_of(spec, task)[1]["container"]
    container["command"], container["args"] = ["python", "-c", code], [EXECUTOR_INPUT_PLACEHOLDER]
    return spec


def recording(spec: dict) -> dict:
    """A copy of ``spec`` whose container tasks all run :data:`RECORDER`."""
    for task in spec_lib.container_tasks(spec):
        spec = with_stand_in(spec, task, RECORDER)
    return spec


def compiled_with(kfp_data, tmp_path, target: str = "kfp", **fields) -> dict:
    """The spec of the pipeline compiled with local roots under ``tmp_path`` and the Config ``fields``."""
    import kubeflow_runner
    from core.configs import Config

    config = Config(pipeline_root=str(tmp_path / "root"), data_root=str(kfp_data),
                    serving_dir=str(tmp_path / "serving"), **fields)
    return kubeflow_runner.compile_spec(config, "letters:test", ["--runner=DirectRunner"], {}, target=target)[0][
        "pipelineSpec"]


def test_a_relative_pipeline_root_is_taken_from_where_the_launcher_runs(compiled, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    launcher = LocalLauncher(with_stand_in(compiled[0], "ImageExampleGen"), pipeline_root="rel")
    assert launcher.run(until="ImageExampleGen") == ["ImageExampleGen"]
    examples = launcher.outputs["ImageExampleGen"]["examples"]
    assert examples["uri"] == str(tmp_path / "rel" / "letters" / launcher.run_id / "ImageExampleGen" / "examples")
    assert os.path.exists(os.path.join(examples["uri"], "env.json"))
    assert json.loads(examples["metadata"]["split_names"]) == ["train"]   # the output metadata file was read


def test_a_url_work_folder_is_refused_before_any_task_runs_and_nothing_is_made_where_it_runs(compiled, tmp_path,
                                                                                               monkeypatch, capsys):
    """The tasks run in local folders under the pipeline root: a spec's gs:// root, or a file:// one given, had made
    relative gs:/… and file:/… folders in the current directory before the first task failed."""
    from kubeflow import local_launcher

    monkeypatch.chdir(tmp_path)
    spec = with_stand_in(compiled[0], "ImageExampleGen")
    spec["defaultPipelineRoot"] = "gs://bucket/root"
    (tmp_path / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    for argv in (["spec.json"], ["spec.json", "--pipeline-root", f"file://{tmp_path}/root"]):
        assert local_launcher.main([*argv, "--until", "ImageExampleGen"]) == 2
        err = capsys.readouterr().err
        assert "is a URL: give --pipeline-root a local folder" in err and len(err.strip().splitlines()) == 1, err
    assert os.listdir(tmp_path) == ["spec.json"]


def test_an_installed_copy_without_the_dockerfile_runs_its_tasks_in_the_keras_mode(compiled, tmp_path):
    """The wheel and the image hold the package but not the Dockerfile: the tasks get the Keras mode it would
    have given them from core/keras_mode.py, and the launcher says the Dockerfile was not read."""
    installed = tmp_path / "site-packages"
    shutil.copytree(ROOT / "kubeflow", installed / "kubeflow", ignore=shutil.ignore_patterns("__pycache__"))
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(with_stand_in(compiled[0], "ImageExampleGen")), encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key not in keras_mode.ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(installed), str(ROOT)])
    proc = subprocess.run([sys.executable, "-m", "kubeflow.local_launcher", str(spec_path), "--pipeline-root",
                           str(tmp_path / "root"), "--until", "ImageExampleGen"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"note: no Dockerfile at {installed / 'Dockerfile'} (an installed copy)" in proc.stdout
    examples = proc.stdout.splitlines()[-1].removeprefix("ImageExampleGen.examples: ")
    with open(os.path.join(examples, "env.json"), encoding="utf-8") as f:
        task_env = json.load(f)
    assert {key: task_env.get(key) for key in keras_mode.ENV} == keras_mode.ENV


def test_an_importer_task_hands_the_artifact_at_its_uri_to_the_tasks_that_read_it(kfp_data, tmp_path):
    """A --base-model spec's base_model_importer runs no container: the Trainer gets the artifact at the importer's
    URI, of the importer's type, as the KFP importer launcher records it."""
    spec = recording(compiled_with(kfp_data, tmp_path, base_model="gs://bucket/serving/7"))
    launcher = LocalLauncher(spec, workdir=str(tmp_path / "work"))
    assert "base_model_importer" in launcher.run(until="Trainer")
    assert "base_model_importer" not in launcher.commands
    with open(tmp_path / "work" / "Trainer" / "executor_input.json", encoding="utf-8") as f:
        (base_model,) = json.load(f)["inputs"]["artifacts"]["base_model"]["artifacts"]
    assert base_model["uri"] == "gs://bucket/serving/7"
    assert base_model["type"]["instanceSchema"].startswith("title: tfx.Model")


def test_a_resolver_task_is_refused_in_one_line_before_any_task_runs(kfp_data, tmp_path, capsys):
    """A --target vertex spec's resolvers query ML Metadata, which only Vertex does: the launcher names the first one
    and runs nothing; the tasks that do not need them run."""
    from kubeflow import local_launcher

    spec = recording(compiled_with(kfp_data, tmp_path, target="vertex"))
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    assert local_launcher.main([str(spec_path), "--pipeline-root", str(tmp_path / "root")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: task latest_blessed_model_resolver-model-blessing-resolver is a resolver: it "
                          "queries ML Metadata") and len(err.strip().splitlines()) == 1, err
    assert not os.path.exists(tmp_path / "root")   # nothing ran
    assert local_launcher.main([str(spec_path), "--pipeline-root", str(tmp_path / "root"), "--until", "Trainer"]) == 0
