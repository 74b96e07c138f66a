"""The compiled KFP v2 spec: the DAG, containers, executors, parameters and resources."""
import json
import subprocess
import sys

import pytest

from kubeflow import spec as spec_lib
from tests.kubeflow.conftest import IMAGE, ROOT

ENTRYPOINT = ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
EXECUTORS = {
    "ImageExampleGen": "components.image_example_gen.Executor",
    "StatisticsGen": "tfx.components.statistics_gen.executor.Executor",
    "SchemaGen": "tfx.components.schema_gen.executor.Executor",
    "ExampleValidator": "tfx.components.example_validator.executor.Executor",
    "Transform": "tfx.components.transform.executor.Executor",
    "Trainer": "tfx.components.trainer.executor.GenericExecutor",
    "Evaluator": "tfx.components.evaluator.executor.Executor",
    "ServingValidator": "components.serving_validator.Executor",
    "Pusher": "components.atomic_pusher.Executor",
}
# task → {input key: (producer task, producer output key)}
WIRING = {
    "ImageExampleGen": {},
    "StatisticsGen": {"examples": ("ImageExampleGen", "examples")},
    "SchemaGen": {"statistics": ("StatisticsGen", "statistics")},
    "ExampleValidator": {"statistics": ("StatisticsGen", "statistics"), "schema": ("SchemaGen", "schema")},
    "Transform": {"examples": ("ImageExampleGen", "examples"), "schema": ("SchemaGen", "schema")},
    "Trainer": {"examples": ("Transform", "transformed_examples"), "transform_graph": ("Transform", "transform_graph"),
                "schema": ("SchemaGen", "schema")},
    "Evaluator": {"examples": ("ImageExampleGen", "examples"), "model": ("Trainer", "model")},
    "ServingValidator": {"model": ("Trainer", "model"), "examples": ("ImageExampleGen", "examples"),
                         "model_blessing": ("Evaluator", "blessing")},
    "Pusher": {"model": ("Trainer", "model"), "model_blessing": ("Evaluator", "blessing"),
               "infra_blessing": ("ServingValidator", "blessing")},
}
BEAM = ["--runner=DirectRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1",
        "--sdk_container_image=this-environment"]   # no sdist of TFX built in each pod
DATAFLOW = ["--dataflow", "--project", "p", "--region", "r", "--temp-location", "gs://b/t"]


def _constant(spec, task, name):
    return spec_lib.tasks(spec)[task]["inputs"]["parameters"][name]["runtimeValue"]["constant"]


def _direct_workers(spec):
    """task → the --direct_num_workers values in its argument lists (its ExampleGen driver's too)."""
    def values(name):
        container = spec_lib.executor_of(spec, name)[1]["container"]
        return [arg.split("=", 1)[1] for args in spec_lib.command_lines(container) for arg in args
                if arg.startswith("--direct_num_workers=")]

    return {name: values(name) for name in spec_lib.container_tasks(spec)}


def test_spec_loads_with_the_kfp_client(compiled):
    from kfp import components
    from kfp.client import client

    spec, paths, stdout = compiled
    doc = client._extract_pipeline_yaml(str(paths["output"]))   # what create_run_from_pipeline_package reads
    assert doc.pipeline_spec.pipeline_info.name == "letters"
    assert doc.pipeline_spec.schema_version == "2.1.0"
    assert components.load_component_from_file(str(paths["output"])).name == "letters"
    spec_lib.check(spec)
    assert "9 tasks" in stdout


def test_dag_components_and_dependencies(compiled):
    spec, _, _ = compiled
    tasks = spec_lib.tasks(spec)
    assert set(tasks) == set(WIRING)
    for name, inputs in WIRING.items():
        task = tasks[name]
        wired = {key: (src["taskOutputArtifact"]["producerTask"], src["taskOutputArtifact"]["outputArtifactKey"])
                 for key, src in task.get("inputs", {}).get("artifacts", {}).items()}
        assert wired == inputs, name
        assert sorted(task.get("dependentTasks", [])) == sorted({p for p, _ in inputs.values()}), name
        assert task["taskInfo"]["name"] == name
    assert spec_lib.topological_order(spec)[0] == "ImageExampleGen"
    assert spec_lib.topological_order(spec)[-1] == "Pusher"


def test_containers_image_command_and_args(compiled):
    spec, _, _ = compiled
    for name, executor_class in EXECUTORS.items():
        label, executor = spec_lib.executor_of(spec, name)
        assert label == f"{name}_executor"
        container = executor["container"]
        assert container["image"] == IMAGE
        assert container["command"] == ENTRYPOINT
        args = container["args"]
        assert args[:4] == ["--executor_class_path", executor_class, "--json_serialized_invocation_args", "{{$}}"]
        assert args[4] == "--json_serialized_inputs_spec_args"
        inputs_spec = json.loads(args[5])
        component = spec["components"][spec_lib.tasks(spec)[name]["componentRef"]["name"]]
        assert inputs_spec == component["inputDefinitions"]
        assert args[6:] == BEAM


def test_every_executor_class_imports(compiled):
    from tfx.dsl.components.base import base_beam_executor, base_executor
    from tfx.utils import import_utils

    spec, _, _ = compiled
    beam_tasks = {"ImageExampleGen", "StatisticsGen", "Transform", "Evaluator"}   # Beam executors in TFX 1.16
    for name in spec_lib.container_tasks(spec):
        container = spec_lib.executor_of(spec, name)[1]["container"]
        cls = import_utils.import_class_by_path(container["args"][1])
        assert issubclass(cls, base_executor.BaseExecutor), name
        if name in beam_tasks:
            assert issubclass(cls, base_beam_executor.BaseBeamExecutor), name


def test_roots_and_settings_reach_the_components(compiled):
    spec, paths, _ = compiled
    assert spec["defaultPipelineRoot"] == str(paths["pipeline_root"])
    assert _constant(spec, "ImageExampleGen", "input_base") == str(paths["data_root"])
    assert json.loads(_constant(spec, "Pusher", "push_destination")) == {
        "filesystem": {"base_directory": str(paths["serving_dir"])}}
    assert json.loads(_constant(spec, "Trainer", "custom_config"))["epochs"] == 1
    assert "Training budget: 1 epoch (chosen)" in compiled[2]
    example_gen = json.loads(_constant(spec, "ImageExampleGen", "custom_config"))
    assert example_gen["feedback_root"] == str(paths["feedback_root"])   # read at run time: no compile-time
    assert "feedback_fingerprint" not in example_gen                      # fingerprint, and no cache
    assert not spec_lib.tasks(spec)["ImageExampleGen"].get("cachingOptions", {}).get("enableCache")
    assert _constant(spec, "Transform", "preprocessing_fn") == "models.preprocessing.preprocessing_fn"
    assert _constant(spec, "Trainer", "run_fn") == "models.trainer.run_fn"


def test_open_source_kfp_edits(compiled):
    spec, _, stdout = compiled
    executors = spec["deploymentSpec"]["executors"].values()
    assert all("container" in e for e in executors), "resolver executors do not run on open-source KFP"
    assert "baseline_model" not in spec["components"]["Evaluator"]["inputDefinitions"]["artifacts"]
    assert not spec_lib.tasks(spec)["ImageExampleGen"].get("cachingOptions", {}).get("enableCache")
    assert spec_lib.tasks(spec)["Transform"]["cachingOptions"]["enableCache"] is True
    assert "resolver" in stdout


def test_resources_on_every_container_including_example_gen(compiled):
    spec, _, _ = compiled
    for name in EXECUTORS:
        resources = spec_lib.executor_of(spec, name)[1]["container"]["resources"]
        expected = spec_lib.DEFAULT_RESOURCES[spec_lib.ALL].merged(
            spec_lib.DEFAULT_RESOURCES.get(name, spec_lib.Resources()))
        if name == "Trainer":
            expected = expected.merged(spec_lib.Resources(cpu="3", memory="6Gi"))
        assert resources == expected.to_spec(), name
    trainer = spec_lib.executor_of(spec, "Trainer")[1]["container"]["resources"]
    assert trainer["resourceCpuLimit"] == "3" and trainer["cpuLimit"] == 3.0
    assert trainer["resourceMemoryLimit"] == "6Gi" and trainer["memoryLimit"] == pytest.approx(6 * 2 ** 30 / 1e9)


def test_resource_quantities_match_the_kfp_sdk():
    from kfp.compiler import compiler_utils

    for cpu in ("2", "0.5", "250m"):
        assert spec_lib.cpu_to_float(cpu) == compiler_utils._cpu_to_float(cpu)
    for memory in ("8Gi", "512Mi", "2G", "1500M", "1Ti", "1024"):
        assert spec_lib.memory_to_float(memory) == pytest.approx(compiler_utils._memory_to_float(memory))
    # Kubernetes' own grammar, which the cluster applies to the string written: kilo is "k" (the kfp SDK takes "K",
    # which Kubernetes refuses), decimals and exponents are quantities too
    for memory, gb in (("16000000k", 16.0), ("1e9", 1.0), ("1.5G", 1.5), ("2E3", 2e-6)):
        assert spec_lib.memory_to_float(memory) == pytest.approx(gb)
    with pytest.raises(ValueError, match="kilo is a lower-case k"):
        spec_lib.memory_to_float("16000000K")
    with pytest.raises(ValueError, match="too large"):
        spec_lib.memory_to_float("1e400")
    name, resources = spec_lib.parse_resources("Transform=cpu=2,memory-request=4Gi")
    assert name == "Transform" and resources == spec_lib.Resources(cpu="2", memory_request="4Gi")
    for bad in ("Trainer", "Trainer=gpu=1", "Trainer=cpu=two", "Trainer=memory=8GB", "=cpu=1"):
        with pytest.raises(ValueError):
            spec_lib.parse_resources(bad)


@pytest.fixture(scope="module")
def config(compiled):
    from core.configs import Config

    _, paths, _ = compiled
    return Config().replace(pipeline_root="gs://bucket/letters/root", data_root="gs://bucket/letters/data",
                            serving_dir="gs://bucket/letters/serving/letters")


def test_vertex_target_keeps_the_resolver_and_the_example_gen_driver(config):
    import kubeflow_runner

    job, notes = kubeflow_runner.compile_spec(config, IMAGE, BEAM, {}, target="vertex")
    spec = job["pipelineSpec"]
    assert notes == []
    resolvers = [n for n in spec_lib.tasks(spec) if "resolver" in spec_lib.executor_of(spec, n)[1]]
    assert sorted(resolvers) == ["latest_blessed_model_resolver-model-blessing-resolver",
                                 "latest_blessed_model_resolver-model-resolver"]
    assert spec_lib.tasks(spec)["Evaluator"]["inputs"]["artifacts"]["baseline_model"]["taskOutputArtifact"][
        "producerTask"] == "latest_blessed_model_resolver-model-resolver"
    # The queries name no pipeline: every pipeline blessing models in the project and region shares one baseline
    # (kubeflow/README.md, "The baseline on Vertex"); a TFX that scopes them changes these strings.
    queries = {n: spec_lib.executor_of(spec, n)[1]["resolver"]["outputArtifactQueries"] for n in resolvers}
    assert queries["latest_blessed_model_resolver-model-blessing-resolver"]["model_blessing"]["filter"] == (
        'schema_title="tfx.ModelBlessing" AND state=LIVE AND metadata.blessed.number_value=1')
    assert queries["latest_blessed_model_resolver-model-resolver"]["model"]["filter"] == (
        'schema_title="tfx.Model" AND state=LIVE AND '
        'name="{{$.inputs.artifacts[\'input\'].metadata[\'current_model_id\']}}"')
    hook = spec_lib.executor_of(spec, "ImageExampleGen")[1]["container"]["lifecycle"]["preCacheCheck"]
    assert hook["command"] == ["python", "-m", "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver"]
    assert spec_lib.tasks(spec)["ImageExampleGen"]["cachingOptions"]["enableCache"] is True
    assert spec["defaultPipelineRoot"] == "gs://bucket/letters/root"
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/letters/root"
    assert all("resources" not in spec_lib.executor_of(spec, n)[1]["container"]
               for n in spec_lib.container_tasks(spec))


def test_dataflow_args_reach_every_beam_command(config):
    import kubeflow_runner

    _, args, beam, resources = kubeflow_runner.parse_args([
        "--image", "europe-docker.pkg.dev/p/r/letters:1.4", "--dataflow", "--project", "p",
        "--region", "europe-west4", "--temp-location", "gs://bucket/tmp", "--max-num-workers", "8",
        "--beam-arg=--machine_type=n2-standard-4", "--no-default-resources", "--data-root", "gs://bucket/data",
        "--pipeline-root", "gs://bucket/root"])
    assert beam == ["--runner=DataflowRunner", "--project=p", "--region=europe-west4",
                    "--temp_location=gs://bucket/tmp",
                    "--sdk_container_image=europe-docker.pkg.dev/p/r/letters:1.4-dataflow",
                    "--sdk_location=container", "--experiments=use_runner_v2", "--max_num_workers=8",
                    "--machine_type=n2-standard-4"]
    assert resources == {}
    job, _ = kubeflow_runner.compile_spec(config, args.image, beam, resources, target="kfp")
    spec = job["pipelineSpec"]
    for name in spec_lib.container_tasks(spec):
        assert spec_lib.executor_of(spec, name)[1]["container"]["args"][-len(beam):] == beam, name
    assert not any(_direct_workers(spec).values())   # the DataflowRunner sizes its own workers


def test_beam_workers_0_is_each_pods_cpu_limit(config):
    """Beam turns --direct_num_workers=0 into the node's CPU count, whatever the pod's CPU limit."""
    import kubeflow_runner
    from core import configs

    def compile_with(*argv):
        _, args, beam, resources = kubeflow_runner.parse_args(
            ["--image", IMAGE, "--beam-mode", "multi_processing", *argv])
        job, notes = kubeflow_runner.compile_spec(config, args.image, beam, resources, target="kfp")
        return beam, _direct_workers(job["pipelineSpec"]), notes

    beam, workers, notes = compile_with("--resources", "StatisticsGen=cpu=3500m",
                                        "--resources", "Pusher=cpu=250m,cpu_request=250m")
    assert "--direct_num_workers=0" in beam   # the DirectRunner set local runs use, unchanged
    assert "--direct_num_workers=0" in configs.beam_pipeline_args(configs.Config(beam_mode="multi_processing"))
    assert workers == {"ImageExampleGen": ["2", "2"], "StatisticsGen": ["3"], "SchemaGen": ["1"],
                       "ExampleValidator": ["1"], "Transform": ["2"], "Trainer": ["4"], "Evaluator": ["2"],
                       "ServingValidator": ["1"], "Pusher": ["1"]}   # ImageExampleGen: the executor and the driver
    assert any(note.startswith("--direct_num_workers=0 became each task's CPU limit") for note in notes)
    _, workers, _ = compile_with("--beam-workers", "3")   # a number chosen is kept
    assert set(map(tuple, workers.values())) == {("3",), ("3", "3")}
    _, workers, notes = compile_with("--no-default-resources", "--resources", "Trainer=memory=8Gi")
    assert set(map(tuple, workers.values())) == {("0",), ("0", "0")}   # no CPU limit: the pod may use the node's
    assert not any("direct_num_workers" in note for note in notes)


@pytest.mark.parametrize("argv, message", [
    # TFX would write its own public image in place of an empty one
    (["--image="], "--image must name the pipeline image"), (["--image", "reg/letters:1 extra"], "--image must"),
    # references Kubernetes refuses (every pod InvalidImageName), or the README's placeholder registry left in
    (["--image", "REGISTRY/letters:1.0"], "error: --image REGISTRY/letters:1.0: REGISTRY is kubeflow/README.md's "
                                          "placeholder: name the registry the image was pushed to ([HOST[:PORT]/]PATH"),
    (["--image", "Letters:1.0"], "error: --image Letters:1.0: the repository name (Letters) must be lowercase"),
    (["--image", "reg.io/p/Letters"], "--image reg.io/p/Letters: the repository name (p/Letters) must be lowercase"),
    (["--image", "reg.io/letters:-1"], "the tag '-1' must be 1 to 128 letters, digits, _, . or -, not starting with"),
    (["--image", f"reg.io/letters:{'1' * 129}"], "must be 1 to 128 letters"),
    (["--image", "reg.io/letters:"], "--image reg.io/letters:: the tag '' must be"),
    (["--image", "reg.io/letters@sha256:abc"], "the digest 'sha256:abc' must be sha256: and 64 lowercase hex digits"),
    (["--image", "reg.io/let..ters"], "the repository name (let..ters) has the component 'let..ters': each is"),
    (["--image", "reg_io:5000/letters"], "the registry host 'reg_io:5000' is not a host name"),
    ([*DATAFLOW, "--dataflow-image", "r/W:1"], "error: --dataflow-image r/W:1: the repository name (r/W) must be"),
    # settings the spec would silently leave out
    (["--feedback-repeat", "3"], "it needs --feedback-root"),
    (["--feedback-root", "", "--feedback-repeat", "3"], "it needs --feedback-root"),   # an empty root is none
    (["--base-model", "gs://b/m/1", "--pretrain-root", "gs://b/pre"], "--pretrain-root (gs://b/pre) would be ignored"),
    (["--beam-mode", "multi_processing", "--beam-arg=--runner=PortableRunner"], "--beam-mode set the DirectRunner"),
    # runners this project does not run on, found now rather than in each Beam task's pod
    (["--beam-arg=--runner=PortableRunner"], "error: --beam-arg --runner=PortableRunner: the Beam work runs on the "
                                             "DirectRunner (in each task's pod) or, with --dataflow, on Dataflow; no "
                                             "other runner is supported\n"),
    (["--beam-arg=--runner", "--beam-arg=SparkRunner"], "error: --beam-arg --runner=SparkRunner: the Beam work"),
    (["--beam-arg=--runner=Directt"], "error: --beam-arg --runner=Directt: the Beam work runs on"),
    (["--beam-arg=--runner=dataflow"], "error: --beam-arg --runner=dataflow: give --dataflow (with --project, --region "
                                       "and --temp-location) instead, which also sets the workers' image"),
    # options Beam would drop as unparseable, or read as the option they abbreviate (--run=… as --runner=…)
    (["--beam-arg=--num-workers=3"], "error: --beam-arg=--num-workers=3: Beam's option is --num_workers (it drops "
                                     "--num-workers as unparseable)\n"),
    ([*DATAFLOW, "--beam-arg=--machine-type=n2-standard-4"], "error: --beam-arg=--machine-type=n2-standard-4: Beam's "
                                                             "option is --machine_type"),
    (["--beam-arg=--run=DataflowRunner"], "error: --beam-arg=--run=DataflowRunner: Beam reads --run as the option it "
                                          "abbreviates (--runner or --runtime_type_check); write it whole\n"),
    (["--beam-arg=--runn", "--beam-arg=PortableRunner"], "Beam reads --runn as the option it abbreviates (--runner)"),
    (["--beam-arg=--direct_running_mode=in_memory", "--beam-arg=--no_such_option=1"],
     "error: --beam-arg=--no_such_option=1: --no_such_option is none of Beam's pipeline options\n"),
    (["--beam-arg=--help"], "error: --beam-arg=--help: --help is none of Beam's pipeline options\n"),
    # Dataflow's missing flags named; its options given as --beam-args, not counted or overriding: the flag asked for
    (["--dataflow", "--project", "p", "--region", "r", "--beam-arg=--temp_location=gs://b/t"],
     "error: --beam-arg=--temp_location=gs://b/t: give --temp-location instead (--dataflow sets --temp_location from "
     "it)\n"),
    ([*DATAFLOW, "--beam-arg=--project=q"], "error: --beam-arg=--project=q: give --project instead"),
    ([*DATAFLOW, "--beam-arg=--temp-location=gs://c/t"], "give --temp-location instead (--dataflow sets"),
    ([*DATAFLOW, "--beam-arg=--sdk_container_image=r/w:1"], "give --dataflow-image instead"),
    ([*DATAFLOW, "--beam-arg=--max_num_workers=3"], "give --max-num-workers instead"),
    ([*DATAFLOW, "--beam-arg=--service_account_email=a@b"], "give --service-account instead"),
    (["--dataflow", "--project", "p", "--region", "r"], "error: --dataflow needs --temp-location gs://…\n"),
    (["--dataflow", "--project", "p"], "error: --dataflow needs --region and --temp-location gs://…\n"),
    (["--dataflow"], "error: --dataflow needs --project, --region and --temp-location gs://…\n"),
    (["--dataflow", "--region", "r", "--temp-location", "gs://b/t"], "error: --dataflow needs --project\n"),
    # --dataflow's own runner named again, or another one: said alike, without calling the same runner another
    *(([*DATAFLOW, f"--beam-arg=--runner={runner}"],
       "error: --dataflow sets --runner=DataflowRunner itself; leave --runner out of --beam-arg\n")
      for runner in ("DataflowRunner", "DirectRunner")),
    # URLs TensorFlow in the image has no filesystem for (KFP's default minio:// root among them): no task could
    # read or write there
    (["--pipeline-root", "minio://mlpipeline/root"],
     "--pipeline-root (minio://mlpipeline/root): TensorFlow in the pipeline image cannot open such URLs"),
    (["--data-root", "hdfs://nn/data", "--serving-dir", "minio://b/serving"],
     "--data-root (hdfs://nn/data), --serving-dir (minio://b/serving): TensorFlow in the pipeline image cannot open"),
    (["--feedback-root", "http://host/feedback"], "--feedback-root (http://host/feedback): TensorFlow in the"),
    # a bucket Cloud Storage cannot have, the README's placeholder left in among them: found when a task opens it
    (["--pipeline-root", "gs://BUCKET/letters/root"], "error: --pipeline-root (gs://BUCKET/letters/root): BUCKET is "
                                                      "kubeflow/README.md's placeholder: name your bucket\n"),
    (["--serving-dir", "gs://My_Bucket/s"], "error: --serving-dir (gs://My_Bucket/s): the bucket name 'My_Bucket' is "
                                            "not one Cloud Storage allows (lowercase letters, digits, -, _ or ., "
                                            "beginning and ending with a letter or digit)\n"),
    (["--output", "gs://specs-/x.yaml"], "error: --output (gs://specs-/x.yaml): the bucket name 'specs-' is not one"),
    ([*DATAFLOW[:-1], "gs://Tmp/t"], "error: --temp-location (gs://Tmp/t): the bucket name 'Tmp' is not one"),
    # Beam, in the tasks, matches what it wrote under the pipeline root with the folder's name as a pattern
    (["--pipeline-root", "gs://b/root [v2]"], "--pipeline-root (gs://b/root [v2]) holds a glob character (*, ? or "
                                              "[): Beam, which writes the pipeline's artifacts there, reads such"),
    (["--pipeline-root", "{tmp}/root*"], "--pipeline-root ({tmp}/root*) holds a glob character"),
    # Beam has no file:// filesystem: the ImageExampleGen's write would fail (a file:// data root is read, and works)
    (["--pipeline-root", "file://{tmp}/root"], "--pipeline-root (file://{tmp}/root) is a file:// URL: Beam, which "
                                               "writes the pipeline's artifacts there, has no filesystem for file://"),
    # paths of two roles that overlap, refused as local runs refuse them, URLs compared as written
    (["--serving-dir", "gs://b/root/"], "--serving-dir (gs://b/root/) is the same path as --pipeline-root "
                                        "(gs://b/root): the versions pushed would be among its artifacts"),
    (["--pipeline-root", "{tmp}/kq", "--serving-dir", "{tmp}/kq", "--data-root", "{tmp}/kq/data"],
     "--serving-dir ({tmp}/kq) is the same path as --pipeline-root ({tmp}/kq)"),
    (["--pipeline-root", "{tmp}/kq", "--data-root", "{tmp}/kq/data"],
     "--data-root ({tmp}/kq/data) is inside --pipeline-root ({tmp}/kq): the pipeline writes its artifacts"),
    (["--pipeline-root", "gs://b/data/root"], "--pipeline-root (gs://b/data/root) is inside --data-root (gs://b/data): "
                                              "every file under it is read as letters"),
    (["--feedback-root", "gs://b"], "--pipeline-root (gs://b/root) is inside --feedback-root (gs://b): every file"),
    # a remote base model is read when the Trainer runs: the serving dir would give it the version the run before pushed
    (["--base-model", "gs://b/serving/"], "error: --base-model (gs://b/serving/) is the same path as --serving-dir "
                                          "(gs://b/serving): the Trainer would start from its newest version when it "
                                          "runs, the one the run before pushed there"),
    # the feedback read as the data root's letters too: every twin trains, and one folder for both empties eval
    (["--feedback-root", "gs://b/data/"], "--feedback-root (gs://b/data/) is the same path as --data-root "
                                          "(gs://b/data): the ImageExampleGen would list the same files as feedback"),
    (["--feedback-root", "gs://b/data/fb"], "--feedback-root (gs://b/data/fb) is inside --data-root (gs://b/data)"),
    (["--data-root", "gs://b/fb/data", "--feedback-root", "gs://b/fb"],
     "--data-root (gs://b/fb/data) is inside --feedback-root (gs://b/fb): the ImageExampleGen would list"),
    (["--output", "{tmp}/d/spec.yaml", "--data-root", "{tmp}/d"],
     "--output ({tmp}/d/spec.yaml) is inside --data-root ({tmp}/d)"),
    # an output that cannot be written, found before the compile
    (["--output", "{tmp}"], "--output {tmp}.yaml: is a folder"),
    (["--output", "{tmp}/a_file/spec.yaml"], "a_file is not a folder"),
    # a ~ the shell left (--output='~/…') is checked as the path written to: it had failed after the compile
    (["--output", "~/a_file/spec.yaml"], "--output {tmp}/a_file/spec.yaml: {tmp}/a_file is not a folder"),
    # a URL TensorFlow here cannot write (no S3 plugin is loaded): it had failed after the compile, a traceback
    (["--output", "minio://b/x.yaml"], "--output (minio://b/x.yaml): TensorFlow on this machine cannot open such URLs, "
                                       "and this command writes the spec through it: use gs://BUCKET/… or a local"),
    (["--output", "s3://b/x.yaml"], "--output (s3://b/x.yaml): TensorFlow on this machine cannot open such URLs"),
    (["--output", "hdfs://nn/x.json"], "--output (hdfs://nn/x.json): TensorFlow on this machine cannot open"),
])
def test_flags_the_spec_would_ignore_or_could_not_hold_are_usage_errors(argv, message, tmp_path, capsys,
                                                                           monkeypatch):
    import kubeflow_runner

    monkeypatch.delenv("LETTERS_KUBEFLOW_IMAGE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "a_file").write_text("x")
    (tmp_path.parent / f"{tmp_path.name}.yaml").mkdir(exist_ok=True)
    argv = [a.replace("{tmp}", str(tmp_path)) if a != "{tmp}" else f"{tmp_path}.yaml" for a in argv]
    with pytest.raises(SystemExit) as caught:
        kubeflow_runner.parse_args(["--pipeline-root", "gs://b/root", "--data-root", "gs://b/data",
                                    "--serving-dir", "gs://b/serving", *argv])
    assert caught.value.code == 2 and message.replace("{tmp}", str(tmp_path)) in capsys.readouterr().err


def test_an_empty_output_is_the_default_spec_file():
    """An empty path flag is its default, as for every command (README): --output "" had been refused as a file not
    ending in .yaml."""
    import kubeflow_runner

    roots = ["--pipeline-root", "gs://b/root", "--data-root", "gs://b/data", "--serving-dir", "gs://b/serving"]
    for empty in (["--output", ""], ["--output="]):
        assert kubeflow_runner.parse_args(roots + empty)[1].output == kubeflow_runner.DEFAULT_OUTPUT


def test_a_spec_that_cannot_be_written_is_one_error_line(tmp_path, capsys, monkeypatch):
    """A write that fails after the compile (a bucket not reached, no credentials, a folder gone meanwhile) is one
    error line with the reason, status 2: it had been a TensorFlow traceback, status 1."""
    import kubeflow_runner

    job = {"pipelineSpec": {"pipelineInfo": {"name": "letters"}, "sdkVersion": "tfx-1"}}

    def compile_spec(*args, **kwargs):   # the compile's result; meanwhile a file takes the output's folder's name
        (tmp_path / "spec").write_text("x")
        return job, []

    monkeypatch.setattr(kubeflow_runner, "compile_spec", compile_spec)
    assert kubeflow_runner.main(["--pipeline-root", "gs://b/root", "--data-root", "gs://b/data", "--serving-dir",
                                 "gs://b/serving", "--output", str(tmp_path / "spec" / "letters.yaml")]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith(f"error: --output {tmp_path}/spec/letters.yaml: the spec could not be written: "), err
    assert "Traceback" not in err


def test_overlapping_paths_are_named_by_what_set_them_and_feedback_in_the_root_is_taken(monkeypatch, capsys):
    """A clash a LETTERS_* variable caused names the variable, not a flag never given; the feedback exported into
    the pipeline root (<pipeline-root>/feedback, as local runs write it) is no clash."""
    import kubeflow_runner

    monkeypatch.setenv("LETTERS_SERVING_DIR", "gs://b/root")
    with pytest.raises(SystemExit) as caught:
        kubeflow_runner.parse_args(["--pipeline-root", "gs://b/root", "--data-root", "gs://b/data"])
    assert caught.value.code == 2 and ("error: LETTERS_SERVING_DIR='gs://b/root' is the same path as --pipeline-root "
                                       "(gs://b/root)") in capsys.readouterr().err
    monkeypatch.delenv("LETTERS_SERVING_DIR")
    kubeflow_runner.parse_args(["--pipeline-root", "gs://b/root", "--data-root", "gs://b/data", "--serving-dir",
                                "gs://b/serving", "--feedback-root", "gs://b/root/feedback"])


@pytest.mark.parametrize("variable, value, message", [
    ("LETTERS_DATA_ROOT", "minio://x/d", "error: LETTERS_DATA_ROOT='minio://x/d': TensorFlow in the pipeline image "
                                         "cannot open such URLs"),
    ("LETTERS_PIPELINE_ROOT", "gs://BUCKET/r", "error: LETTERS_PIPELINE_ROOT='gs://BUCKET/r': BUCKET is "
                                               "kubeflow/README.md's placeholder"),
    ("LETTERS_KUBEFLOW_IMAGE", "REGISTRY/letters:1.0", "error: LETTERS_KUBEFLOW_IMAGE='REGISTRY/letters:1.0': "
                                                       "REGISTRY is kubeflow/README.md's placeholder"),
    ("LETTERS_KUBEFLOW_IMAGE", "r/letters 1", "error: LETTERS_KUBEFLOW_IMAGE must name the pipeline image"),
])
def test_a_path_or_image_a_variable_set_is_named_by_it_in_an_error(variable, value, message, monkeypatch, capsys):
    """Not by the flag that was never given (error: --data-root minio://x/d: …, --image REGISTRY/letters:1.0: …)."""
    import kubeflow_runner

    monkeypatch.delenv("LETTERS_KUBEFLOW_IMAGE", raising=False)
    monkeypatch.setenv(variable, value)
    paths = {"--pipeline-root": "gs://b/root", "--data-root": "gs://b/data", "--serving-dir": "gs://b/serving"}
    argv = [part for flag, path in paths.items() if flag[2:].replace("-", "_").upper() not in variable
            for part in (flag, path)]
    with pytest.raises(SystemExit) as caught:
        kubeflow_runner.parse_args(argv)
    assert caught.value.code == 2 and message in capsys.readouterr().err


def test_each_path_the_pods_use_that_is_not_gs_gets_the_note_true_of_it(tmp_path):
    """s3:// needs a plugin the image has not, and for the pipeline root Beam's S3 filesystem; a local pipeline
    root is refused by a cluster's backend (only the local launcher runs such a spec); local data and serving
    paths (file:// too) must be mounted."""
    import kubeflow_runner

    def notes(*argv):
        return kubeflow_runner.storage_notes(*kubeflow_runner.parse_args(list(argv))[:2])

    assert notes("--pipeline-root", "gs://b/root", "--data-root", "gs://b/data", "--serving-dir", "gs://b/s") == []
    assert notes("--pipeline-root", "s3://b/root", "--data-root", "gs://b/data", "--serving-dir", "s3://b/s") == [
        # Beam writes the Beam components' artifacts there: WriteToTFRecord('s3://…') needs boto3 (apache-beam[aws])
        "note: --pipeline-root s3://b/root: TensorFlow in the pipeline image opens s3:// only with an S3 filesystem "
        "plugin added to the image, and Beam, which writes the ImageExampleGen's, StatisticsGen's, Transform's and "
        "Evaluator's artifacts there, only with apache-beam[aws] (boto3) and Beam's S3 options "
        "(--beam-arg=--s3_region_name=…): the image has neither (kubeflow/README.md, Storage)",
        "note: --serving-dir s3://b/s: TensorFlow in the pipeline image opens s3:// only with an S3 filesystem "
        "plugin added to the image (kubeflow/README.md, Storage)"]
    assert notes("--pipeline-root", str(tmp_path / "root"), "--data-root", f"file://{tmp_path}/data",
                 "--serving-dir", "gs://b/s") == [
        f"note: --pipeline-root {tmp_path}/root is a local path: a Kubeflow Pipelines cluster refuses it as the "
        "pipeline root (its backend takes bucket URLs only: gs://BUCKET/…); the spec runs as compiled only under "
        "python -m kubeflow.local_launcher",
        f"note: --data-root file://{tmp_path}/data is a local path: pods can only use it if it is mounted there"]
    # a remote base model is not resolved to a version now: a serving dir there is its newest when the Trainer runs
    assert notes("--pipeline-root", "gs://b/root", "--data-root", "gs://b/data", "--serving-dir", "gs://b/s",
                 "--base-model", "gs://b/other/letters") == [
        "note: --base-model gs://b/other/letters is read when the Trainer runs, not now: a serving dir stands for its "
        "newest version then; give a version folder (<serving-dir>/<version>) to start every run from the same model"]


def test_with_dataflow_a_local_root_of_letters_is_a_usage_error(tmp_path, monkeypatch, capsys):
    """On Dataflow the workers read the images the ImageExampleGen lists (its ReadImage step), where a local data,
    pretrain or feedback root is not: every image would be skipped as unreadable, and the note had said mounting it
    in the pods would do. A local serving dir or base model, which the pods open, keeps its note."""
    import kubeflow_runner

    monkeypatch.delenv("LETTERS_DATA_ROOT", raising=False)
    dataflow = ["--dataflow", "--project", "p", "--region", "r", "--temp-location", "gs://b/t",
                "--pipeline-root", "gs://b/root", "--serving-dir", "gs://b/s"]
    for argv, named in (
            (["--data-root", str(tmp_path / "data")], f"--data-root ({tmp_path}/data)"),
            ([], f"the default data root ({kubeflow_runner.configs.Config().data_root})"),
            (["--data-root", "gs://b/data", "--feedback-root", f"file://{tmp_path}/fb"],
             f"--feedback-root (file://{tmp_path}/fb)"),
            (["--data-root", "gs://b/data", "--pretrain-root", "/tmp/pre"], "--pretrain-root (/tmp/pre)")):
        with pytest.raises(SystemExit) as caught:
            kubeflow_runner.parse_args(dataflow + argv)
        err = capsys.readouterr().err
        assert caught.value.code == 2 and f"error: {named} is a local path: with --dataflow the Dataflow workers " \
            "read the images there" in err and "use gs://BUCKET/…" in err, (argv, err)
    # the workers write the components' outputs under the pipeline root too
    with pytest.raises(SystemExit) as caught:
        kubeflow_runner.parse_args(dataflow + ["--data-root", "gs://b/data", "--pipeline-root", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and f"error: --pipeline-root ({tmp_path}/r) is a local path: with --dataflow the " \
        "Dataflow workers write the components' examples" in err, err
    config, args, _, _ = kubeflow_runner.parse_args(
        dataflow[:-2] + ["--serving-dir", str(tmp_path / "s"), "--data-root", "gs://b/data", "--pretrain-root",
                         "gs://b/pre", "--feedback-root", "gs://b/fb"])
    assert kubeflow_runner.storage_notes(config, args) == [
        f"note: --serving-dir {tmp_path}/s is a local path: pods can only use it if it is mounted there"]


def test_a_local_root_vertex_spec_is_not_promised_to_the_local_launcher(tmp_path):
    """Vertex takes gs:// roots only, and the launcher does not run the resolver the Evaluator reads: the note says
    how far the launcher runs such a spec, and that the kfp spec runs whole under it."""
    import kubeflow_runner

    config, args, _, _ = kubeflow_runner.parse_args(["--target", "vertex", "--pipeline-root", str(tmp_path / "root"),
                                                     "--data-root", "gs://b/data", "--serving-dir", "gs://b/s"])
    (note,) = kubeflow_runner.storage_notes(config, args)
    assert note.startswith(f"note: --pipeline-root {tmp_path}/root is a local path: Vertex AI Pipelines refuses it")
    assert "runs its tasks up to the Trainer (--until Trainer)" in note and "runs as compiled only" not in note
    assert "compiled with --target kfp (no resolver), the spec runs whole under the launcher" in note


def test_the_direct_runner_named_as_beam_takes_it_replaces_the_direct_runner_set():
    import kubeflow_runner

    paths = ["--pipeline-root", "gs://b/root", "--data-root", "gs://b/data", "--serving-dir", "gs://b/serving"]
    for runner in (["--beam-arg=--runner=DirectRunner"], ["--beam-arg=--runner=direct"],
                   ["--beam-arg=--runner", "--beam-arg=DIRECTRUNNER"],
                   ["--beam-arg=--runner=apache_beam.runners.direct.direct_runner.DirectRunner"]):
        beam = kubeflow_runner.parse_args([*paths, *runner, "--beam-arg=--direct_running_mode=multi_threading"])[2]
        assert beam == [arg.removeprefix("--beam-arg=") for arg in runner] + ["--direct_running_mode=multi_threading"]


@pytest.mark.parametrize("image", [
    "letters", "r/letters:1", "europe-docker.pkg.dev/p/r/letters:1.4", "localhost:5000/letters:1.0-dataflow",
    "[::1]:5000/a__b/c--d/e.f:T_1", "Registry/letters", f"reg.io/letters:v{'1' * 127}",
    f"reg.io/letters:1@sha256:{'0a' * 32}", f"letters@sha512:{'f' * 128}"])
def test_image_references_kubernetes_pulls_compile(image):
    """Docker's grammar as the kubelet reads it: an upper-case first component is a registry host, not a path."""
    from kubeflow import image_reference

    assert image_reference.problem(image) is None


def test_an_empty_image_variable_is_unset(monkeypatch):
    import kubeflow_runner

    monkeypatch.setenv("LETTERS_KUBEFLOW_IMAGE", "")
    _, args, _, _ = kubeflow_runner.parse_args(["--pipeline-root", "gs://b/root", "--data-root", "gs://b/data",
                                                "--serving-dir", "gs://b/serving"])
    assert args.image == kubeflow_runner.DEFAULT_IMAGE


def test_the_default_image_is_noted_with_how_to_name_the_built_one(monkeypatch, capsys):
    """letters-pipeline:latest is a name no documented build tags (they build REGISTRY/letters:TAG): a spec compiled
    without --image or LETTERS_KUBEFLOW_IMAGE had named it without a word. It still compiles, with a note."""
    import kubeflow_runner

    monkeypatch.delenv("LETTERS_KUBEFLOW_IMAGE", raising=False)
    paths = ["--pipeline-root", "gs://b/root", "--data-root", "gs://b/data", "--serving-dir", "gs://b/serving"]
    dataflow = ["--dataflow", "--project", "p", "--region", "r", "--temp-location", "gs://b/t"]
    howto = ("the default, a name no documented build tags (the "
             "Dockerfile and kubeflow/README.md build REGISTRY/letters:TAG), so a cluster runs the spec only if that "
             "name is pushed where its nodes pull from; name the image built with --image REGISTRY/letters:TAG or "
             "LETTERS_KUBEFLOW_IMAGE")
    notes = kubeflow_runner.image_notes
    assert notes(kubeflow_runner.parse_args(paths)[1]) == [
        f"note: the spec names the image letters-pipeline:latest, {howto}"]
    assert notes(kubeflow_runner.parse_args(paths + dataflow)[1]) == [
        "note: the spec names the image letters-pipeline:latest and the Dataflow workers "
        f"letters-pipeline:latest-dataflow, {howto}"]
    assert notes(kubeflow_runner.parse_args(paths + dataflow + ["--dataflow-image", "r/w:1"])[1]) == [
        f"note: the spec names the image letters-pipeline:latest, {howto}"]
    assert notes(kubeflow_runner.parse_args(paths + ["--image", "r/letters:1"])[1]) == []
    monkeypatch.setenv("LETTERS_KUBEFLOW_IMAGE", "r/letters:1")
    assert notes(kubeflow_runner.parse_args(paths)[1]) == []
    monkeypatch.delenv("LETTERS_KUBEFLOW_IMAGE")
    monkeypatch.setattr(kubeflow_runner, "compile_spec", lambda *a, **k: (_ for _ in ()).throw(ValueError("stop")))
    assert kubeflow_runner.main(paths) == 2   # the notes are said before the compile
    assert f"note: the spec names the image letters-pipeline:latest, {howto}\n" in capsys.readouterr().err


def test_command_line_errors_and_help():
    import kubeflow_runner

    for argv in (["--dataflow", "--project", "p"],                       # no region / temp location
                 ["--dataflow", "--project", "p", "--region", "r", "--temp-location", "/tmp/x"],
                 ["--resources", "Trainer=cpu=lots"], ["--output", "spec.txt"], ["--epochs", "-1"],
                 ["--project", "p", "--region", "r"],                  # Dataflow flags without --dataflow
                 ["--dataflow", "--project", "p", "--region", "r", "--temp-location", "gs://b/t",
                  "--max-num-workers", "-5"],
                 ["--conv-widths", "32"], ["--architecture", "vgg", "--image-size", "4"],   # unbuildable networks
                 # DirectRunner settings, or another runner, with --dataflow: they would be ignored
                 ["--dataflow", "--project", "p", "--region", "r", "--temp-location", "gs://b/t", "--beam-mode",
                  "multi_processing"],
                 ["--dataflow", "--project", "p", "--region", "r", "--temp-location", "gs://b/t", "--beam-workers",
                  "8"],
                 ["--dataflow", "--project", "p", "--region", "r", "--temp-location", "gs://b/t",
                  "--beam-arg=--runner=DirectRunner"]):
        with pytest.raises(SystemExit):
            kubeflow_runner.parse_args(argv)
    config, args, _, _ = kubeflow_runner.parse_args(["--pipeline-root", "gs://b/root", "--data-root", "gs://b/data",
                                                     "--serving-dir", "gs://b/serving", "--pretrain-root", "/tmp/pre"])
    assert args.image == kubeflow_runner.DEFAULT_IMAGE
    assert kubeflow_runner.storage_notes(config, args) == [
        "note: --pretrain-root /tmp/pre is a local path: pods can only use it if it is mounted there"]
    with pytest.raises(ValueError, match="no component named Trainr"):
        spec_lib.apply_resources({"root": {"dag": {"tasks": {}}}}, {"Trainr": spec_lib.Resources(cpu="1")})
    out = subprocess.run([sys.executable, str(ROOT / "kubeflow_runner.py"), "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120).stdout
    for flag in ("--image", "--pipeline-root", "--data-root", "--serving-dir", "--dataflow", "--project",
                 "--region", "--temp-location", "--beam-arg", "--resources", "--target", "gs://", "Transform"):
        assert flag in out, flag
    # a store_false flag had shown the default of its dest; only --augment/--no-augment says augmentation's
    assert out.count("(default: True)") == 1 and "--augment, --no-augment" in out[:out.index("(default: True)")][-150:]


def test_vertex_spec_reads_the_feedback_at_run_time_with_the_cache_off(kfp_data, tmp_path):
    import kubeflow_runner
    from core.configs import Config

    config = Config(pipeline_root="gs://bucket/root", data_root=str(kfp_data), serving_dir="gs://bucket/serving",
                    feedback_repeat=5)
    job, notes = kubeflow_runner.compile_spec(config, IMAGE, BEAM, {}, target="vertex",
                                              feedback_root="gs://bucket/root/feedback")
    spec = job["pipelineSpec"]
    example_gen = json.loads(_constant(spec, "ImageExampleGen", "custom_config"))
    assert example_gen["feedback_root"] == "gs://bucket/root/feedback"
    assert example_gen["feedback_repeat"] == 5                           # oversampled as the Config says
    assert not spec_lib.tasks(spec)["ImageExampleGen"]["cachingOptions"].get("enableCache")
    assert any("feedback" in note for note in notes)


def test_a_base_model_is_imported_and_feeds_the_trainer(kfp_data):
    import kubeflow_runner
    from core.configs import Config

    config = Config(pipeline_root="gs://bucket/root", data_root=str(kfp_data), serving_dir="gs://bucket/serving",
                    base_model="gs://bucket/serving/7")
    job, _ = kubeflow_runner.compile_spec(config, IMAGE, BEAM, {})
    spec = job["pipelineSpec"]
    tasks = spec_lib.tasks(spec)
    source = tasks["Trainer"]["inputs"]["artifacts"]["base_model"]["taskOutputArtifact"]
    assert source == {"producerTask": "base_model_importer", "outputArtifactKey": "result"}
    assert "base_model_importer" in tasks["Trainer"]["dependentTasks"]
    importer = spec["deploymentSpec"]["executors"]["base_model_importer_executor"]["importer"]
    assert importer["artifactUri"]["constant"] == "gs://bucket/serving/7"
    assert importer["typeSchema"]["instanceSchema"].startswith("title: tfx.Model")
    # a remote base model is read only at run time: no digest in the Trainer's cache key
    assert "base_model_digest" not in json.loads(_constant(spec, "Trainer", "custom_config"))


def test_a_pretrainer_feeds_the_trainer_with_the_trainers_resources(kfp_data, tmp_path):
    import kubeflow_runner
    from core.configs import Config

    config = Config(pipeline_root="gs://bucket/root", data_root=str(kfp_data), serving_dir="gs://bucket/serving",
                    pretrain_root="gs://bucket/generated", epochs=3)
    job, _ = kubeflow_runner.compile_spec(config, IMAGE, BEAM, spec_lib.combine_resources([]))
    spec = job["pipelineSpec"]
    tasks = spec_lib.tasks(spec)
    source = tasks["Trainer"]["inputs"]["artifacts"]["base_model"]["taskOutputArtifact"]
    assert source == {"producerTask": "pretrainer", "outputArtifactKey": "model"}
    assert _constant(spec, "pretrain_example_gen", "input_base") == "gs://bucket/generated"
    pretrainer = json.loads(_constant(spec, "pretrainer", "custom_config"))
    assert (pretrainer["epochs"], pretrainer["stage"]) == (config.generate_epochs, "pretraining")
    assert json.loads(_constant(spec, "Trainer", "custom_config"))["epochs"] == 3
    inputs = tasks["pretrainer"]["inputs"]["artifacts"]
    assert inputs["examples"]["taskOutputArtifact"]["producerTask"] == "pretrain_transform"
    assert inputs["schema"]["taskOutputArtifact"]["producerTask"] == "pretrain_schema_gen"
    for name, like in (("pretrainer", "Trainer"), ("pretrain_transform", "Transform"),
                       ("pretrain_example_gen", "ImageExampleGen"), ("pretrain_statistics_gen", "StatisticsGen")):
        assert (spec_lib.executor_of(spec, name)[1]["container"]["resources"]
                == spec_lib.executor_of(spec, like)[1]["container"]["resources"]), name
    # Without a pretrain root the defaults for its components are not an error; an override of them is.
    job, _ = kubeflow_runner.compile_spec(config.replace(pretrain_root=""), IMAGE, BEAM, spec_lib.combine_resources([]))
    assert "pretrainer" not in spec_lib.tasks(job["pipelineSpec"])
    with pytest.raises(ValueError, match="no component named pretrainer"):
        kubeflow_runner.compile_spec(config.replace(pretrain_root=""), IMAGE, BEAM,
                                     spec_lib.combine_resources([spec_lib.parse_resources("pretrainer=cpu=8")]))
    # An override for every component (`*`) is merged into those defaults too, and is not an error either.
    every = spec_lib.combine_resources([spec_lib.parse_resources("*=memory_request=2Gi"),
                                        spec_lib.parse_resources("Trainer=cpu=8,memory=16Gi")])
    job, _ = kubeflow_runner.compile_spec(config.replace(pretrain_root=""), IMAGE, BEAM, every)
    written = {name: spec_lib.executor_of(job["pipelineSpec"], name)[1]["container"]["resources"]
               for name in ("Trainer", "Transform")}
    assert written["Trainer"]["cpuLimit"] == 8.0 and written["Transform"]["cpuLimit"] == 2.0
    assert written["Trainer"]["memoryRequest"] == written["Transform"]["memoryRequest"] == 2 * 1024 ** 3 / 1e9
    with pytest.raises(ValueError, match="no component named pretrainer"):
        kubeflow_runner.compile_spec(config.replace(pretrain_root=""), IMAGE, BEAM, spec_lib.combine_resources(
            [spec_lib.parse_resources("*=cpu=3"), spec_lib.parse_resources("pretrainer=cpu=8")]))


def test_a_resource_override_for_every_component_overrides_their_defaults_and_requests_stay_under_limits():
    table = spec_lib.combine_resources([spec_lib.parse_resources("*=memory_request=3Gi,memory=6Gi,cpu=3"),
                                        spec_lib.parse_resources("Trainer=memory=12Gi")])
    assert table["Transform"].memory == "6Gi" and table["Transform"].memory_request == "3Gi"   # default gave way
    assert table["Transform"].cpu == "3" and table["Transform"].cpu_request == "1"             # kept
    assert table["Trainer"].memory == "12Gi" and table["Trainer"].memory_request == "3Gi"       # its own wins
    assert table[spec_lib.ALL].memory_request == "3Gi"
    tasks = {"root": {"dag": {"tasks": {"Trainer": {"componentRef": {"name": "c"}}}}},
             "components": {"c": {"executorLabel": "e"}},
             "deploymentSpec": {"executors": {"e": {"container": {}}}}}
    bad = spec_lib.combine_resources([spec_lib.parse_resources("Trainer=memory=2Gi,cpu=1")])
    with pytest.raises(ValueError, match="Trainer: cpu_request 2 is above its limit cpu 1"):
        spec_lib.apply_resources(tasks, bad)


def test_display_name_reaches_the_yaml_and_feedback_turns_off_only_its_example_gens_cache(kfp_data, tmp_path):
    import kubeflow_runner
    from core.configs import Config

    config = Config(pipeline_root="gs://bucket/root", data_root=str(kfp_data), serving_dir="gs://bucket/serving",
                    pretrain_root="gs://bucket/pre")
    job, notes = kubeflow_runner.compile_spec(config, IMAGE, BEAM, {}, target="vertex", display_name="Letters staging",
                                              feedback_root="gs://bucket/root/feedback")
    spec = job["pipelineSpec"]
    assert spec["pipelineInfo"]["displayName"] == "Letters staging"
    assert not spec_lib.tasks(spec)["ImageExampleGen"]["cachingOptions"].get("enableCache")
    assert spec_lib.tasks(spec)["pretrain_example_gen"]["cachingOptions"]["enableCache"] is True
    assert [n for n in notes if "feedback" in n] == [
        "ImageExampleGen: cache off (it reads the feedback at gs://bucket/root/feedback at run time)"]
    kubeflow_runner.write_spec(job, str(tmp_path / "spec.yaml"))
    assert "displayName: Letters staging" in (tmp_path / "spec.yaml").read_text()


def test_every_star_override_merges_without_the_defaults_too():
    table = spec_lib.combine_resources([spec_lib.parse_resources("*=cpu=2"), spec_lib.parse_resources("*=memory=4Gi"),
                                        spec_lib.parse_resources("Trainer=cpu=4")], defaults=False)
    assert (table["*"].cpu, table["*"].memory) == ("2", "4Gi")
    assert (table["Trainer"].cpu, table["Trainer"].memory) == ("4", None)


def test_a_vertex_example_gen_whose_root_has_glob_characters_is_not_cached(kfp_data, tmp_path):
    """Vertex's driver fingerprints the root with an unescaped glob: "letters [v2]" matches no file, so a cached
    ExampleGen would never see new images."""
    import shutil

    import kubeflow_runner
    from core.configs import Config
    root = tmp_path / "letters [v2]"
    shutil.copytree(kfp_data, root)
    config = Config(pipeline_root="gs://bucket/root", data_root=str(root), serving_dir="gs://bucket/serving")
    job, notes = kubeflow_runner.compile_spec(config, IMAGE, BEAM, {}, target="vertex")
    assert not spec_lib.tasks(job["pipelineSpec"])["ImageExampleGen"]["cachingOptions"].get("enableCache")
    assert any("glob characters" in note for note in notes)


def test_the_local_launcher_answers_a_bad_spec_task_or_dockerfile_in_one_line(compiled, tmp_path, capsys):
    from kubeflow import local_launcher

    spec_path = str(compiled[1]["output"])
    for argv, message in (([str(tmp_path / "missing.yaml")], "No such file or directory"),
                          ([spec_path, "--until", "Trainr"], "no task 'Trainr' in"),
                          ([str(ROOT / "README.md")], "is not a compiled pipeline spec"),
                          ([spec_path, "--dockerfile", str(tmp_path / "Dockerfile")], "No such file or directory")):
        assert local_launcher.main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
