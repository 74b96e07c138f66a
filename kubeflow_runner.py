"""Compiles the letters pipeline for Kubeflow Pipelines (v2): the same ``create_pipeline()`` as local runs,
through TFX's ``KubeflowV2DagRunner``, into a KFP pipeline spec (YAML; ``.json`` writes a PipelineJob).

    python kubeflow_runner.py --image REGISTRY/letters:1.0 \\
        --pipeline-root gs://BUCKET/letters/root --data-root gs://BUCKET/letters/data \\
        --serving-dir gs://BUCKET/letters/serving/letters
    python kubeflow_runner.py ... --dataflow --project P --region europe-west1 --temp-location gs://BUCKET/tmp
    python kubeflow_runner.py ... --resources Trainer=cpu=8,memory=16Gi --resources '*=memory_request=2Gi'

Pipeline settings not on the command line (epochs, image size, thresholds …) come from core/configs.py and
its LETTERS_<FIELD> environment variables, as for local runs. See kubeflow/README.md for building the image,
uploading the spec and running it.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)
from kubeflow import beam_args as beam_args_lib
from kubeflow import gcs_bucket, image_reference
from kubeflow import spec as spec_lib
from core import configs, settings
from pipeline import flags
from core.configs import Config

DEFAULT_OUTPUT = os.path.join(configs.WORK_ROOT, "outputs", "kubeflow", "letters_pipeline.yaml")
DEFAULT_IMAGE = "letters-pipeline:latest"
IMAGE_VARIABLE = "LETTERS_KUBEFLOW_IMAGE"   # --image's default when set (not a Config field)
CLUSTER_SCHEMES = ("gs://",)      # TensorFlow in the pipeline image opens them (tensorflow-io-gcs-filesystem)
PLUGIN_SCHEMES = ("s3://",)       # only with what S3_NEEDS names added to the image (the Dockerfile adds none)
LOCAL_SCHEMES = ("file://",)      # a local path written as a URL
SPEC_SCHEMES = CLUSTER_SCHEMES + LOCAL_SCHEMES   # --output, written by TensorFlow on this machine (no S3 plugin loaded)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, settings.DefaultsHelpFormatter):
    """The epilog as written, and each flag's default after its help."""


def build_parser(defaults: Config) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Compile the letters TFX pipeline for Kubeflow Pipelines v2 (KubeflowV2DagRunner).",
        formatter_class=_HelpFormatter,
        epilog=f"""
storage:
  Every component reads and writes its artifacts directly through TensorFlow's filesystems, and the Beam ones
  (ImageExampleGen, StatisticsGen, Transform, Evaluator) through Beam's too, so the pipeline root, data root and
  serving dir must be where TensorFlow can open them from the pods, and the pipeline root where Beam can: gs://…
  works out of the box (credentials from the pod's service account / Workload Identity); s3://… needs an S3
  filesystem plugin for TensorFlow and, for the pipeline root, apache-beam[aws] (boto3) for Beam, with Beam's S3
  options (--beam-arg=--s3_region_name=…), both added to the image, which has neither; other schemes, KFP's
  default minio://… among them, are refused (TensorFlow in the image cannot open them), and so is a file://
  pipeline root (Beam has no filesystem for it: give the path). A KFP cluster and
  Vertex refuse a local pipeline root (a spec compiled with one runs under python -m kubeflow.local_launcher only,
  with --target vertex up to the Trainer); local data and serving paths must be mounted in the pods. With
  --dataflow the Dataflow workers, not the pods, read the images of the data, pretrain and feedback roots: these
  must be gs://… (a local one is refused, mounted in the pods or not), and so must the pipeline root they
  write. The serving dir is what tensorflow/serving reads: set base_path in the models.config of its ConfigMap (serving/deploy/k8s/configmap.yaml) to the gs://…
  serving dir (--model_base_path is ignored beside the --model_config_file it runs with), or share a volume: see
  kubeflow/README.md.

resources (--resources COMPONENT=key=value[,key=value…], repeatable):
  keys: cpu, memory (limits), cpu_request, memory_request; Kubernetes quantities (2, 500m, 8Gi).
  COMPONENT is a task name (ImageExampleGen, StatisticsGen, SchemaGen, ExampleValidator, Transform, Trainer,
  Evaluator, ServingValidator, Pusher) or * for all. Overrides merge field by field into the defaults:
  {_format_defaults()}
  Written into deploymentSpec.executors.<task>_executor.container.resources (string and numeric fields).

targets:
  kfp     open-source Kubeflow Pipelines 2.x: the latest-blessed-model resolver (a Vertex-only executor type)
          is removed, so the Evaluator gates on --accuracy-floor only; ExampleGen's cache is off.
  vertex  Vertex AI Pipelines: the spec as TFX compiles it.

Other pipeline settings come from LETTERS_<FIELD> environment variables (core/configs.py).
""")
    p.add_argument("--output", default=DEFAULT_OUTPUT,
                   help="spec file to write: .yaml (PipelineSpec, for KFP upload) or .json (PipelineJob); a local "
                        "path or gs://… (empty: the default)")
    p.add_argument("--image", default=os.environ.get(IMAGE_VARIABLE) or DEFAULT_IMAGE,   # empty = unset
                   help="pipeline image built from the Dockerfile (env LETTERS_KUBEFLOW_IMAGE); the default is a "
                        "name no documented build tags (the spec compiles with a note)")
    p.add_argument("--target", choices=("kfp", "vertex"), default="kfp", help="backend the spec is for")
    p.add_argument("--pipeline-root", default=defaults.pipeline_root,
                   help="where artifacts are written (gs://BUCKET/…); becomes the spec's defaultPipelineRoot "
                        "(empty: the default)")
    p.add_argument("--data-root", default=defaults.data_root,
                   help="folder of <class_folder>/<image> files the ImageExampleGen reads (gs://…; empty: the "
                        "default)")
    p.add_argument("--pretrain-root", default=defaults.pretrain_root or None,
                   help="letters (folder per class, gs://…) the network first trains on, generate_epochs epochs, "
                        "before --data-root's: e.g. the built-in generated ones (python -m pipeline.generate_letters "
                        "--out DIR, then copied to the bucket); default (unless LETTERS_PRETRAIN_ROOT), or empty: "
                        "none, a random start; with --base-model: a usage error")
    p.add_argument("--serving-dir", default=defaults.serving_dir,
                   help="TF Serving model base directory the Pusher writes <version>/ into (gs://…/letters; "
                        "empty: the default)")
    p.add_argument("--feedback-root", default=None,
                   help="the users' feedback exported as <class>/<id>.png (letters-feedback export --out DIR, then "
                        "copied to the bucket, or <pipeline-root>/feedback as local runs write it): read by "
                        "ImageExampleGen at run time, always into the train split; its cache is turned off so new "
                        "feedback is seen")
    p.add_argument("--display-name", default=None,
                   help=f"pipeline display name (default: none, shown as the pipeline's name, {configs.PIPELINE_NAME})")
    p.add_argument("--no-cache", action="store_true", help="compile with caching off for every task")
    p.add_argument("--no-serving-validation", action="store_true",
                   help="leave out the serving validator between Evaluator and Pusher (it serves the candidate "
                        "in the embedded TF Serving-compatible server and sends it eval images over REST)")

    flags.add_training_flags(p, defaults)
    beam = p.add_argument_group("Beam (default: DirectRunner inside each component's pod)")
    flags.add_beam_flags(beam, defaults)
    beam.add_argument("--dataflow", action="store_true", help="run the Beam work on Google Cloud Dataflow")
    beam.add_argument("--project", default=None, help="Dataflow: GCP project")
    beam.add_argument("--region", default=None, help="Dataflow: region (e.g. europe-west1)")
    beam.add_argument("--temp-location", default=None, help="Dataflow: gs://… for temporary files")
    beam.add_argument("--dataflow-image", default=None,
                      help="Dataflow worker image (docker build --target dataflow-worker); default: <image>-dataflow")
    beam.add_argument("--max-num-workers", type=flags.positive_int, default=None, help="Dataflow: autoscaling ceiling")
    beam.add_argument("--service-account", default=None, help="Dataflow: worker service account email")
    beam.add_argument("--beam-arg", action="append", default=[], metavar="ARG",
                      help="extra Beam option passed through as is (repeatable; write --beam-arg=--foo=bar), named "
                           "whole as Beam spells it (--num_workers, not --num-workers or --num). "
                           "Without --dataflow and with --runner=DirectRunner among them, they replace the "
                           "DirectRunner set (no other runner is taken); with --dataflow, options it sets from the "
                           "flags above (--project …) are refused")

    res = p.add_argument_group("resources")
    res.add_argument("--resources", action="append", default=[], metavar="COMPONENT=key=value,…",
                     help="per-component CPU/memory (repeatable; see below)")
    res.add_argument("--no-default-resources", action="store_true",
                     help="start from no resources instead of the defaults below")
    return p


def _format_defaults() -> str:
    lines = []
    for name, r in spec_lib.DEFAULT_RESOURCES.items():
        lines.append(f"{name}: cpu={r.cpu},memory={r.memory},cpu_request={r.cpu_request},"
                     f"memory_request={r.memory_request}")
    return "\n  ".join(lines)


def beam_pipeline_args(args: argparse.Namespace, config: Config) -> list[str]:
    if args.dataflow:
        return beam_args_lib.dataflow_args(
            args.project, args.region, args.temp_location,
            args.dataflow_image or beam_args_lib.dataflow_worker_image(args.image),
            max_num_workers=args.max_num_workers, service_account=args.service_account, extra=args.beam_arg)
    if beam_args_lib.runners(args.beam_arg):
        return list(args.beam_arg)
    return configs.beam_pipeline_args(config) + list(args.beam_arg)


DATAFLOW_ONLY = ("project", "region", "temp_location", "dataflow_image", "max_num_workers", "service_account")


def parse_args(argv=None) -> tuple[Config, argparse.Namespace, list[str], dict]:
    defaults = flags.defaults_from_env()
    parser = build_parser(defaults)
    args = parser.parse_args(argv)
    given = settings.given_flags(parser, argv, ("pretrain_root", "base_model", "beam_mode", "beam_workers",
                                                "feedback_repeat", "pipeline_root", "data_root", "serving_dir",
                                                "image"))
    dataflow_only = [f"--{name.replace('_', '-')}" for name in DATAFLOW_ONLY if getattr(args, name) is not None]
    if dataflow_only and not args.dataflow:
        parser.error(f"{', '.join(dataflow_only)} only apply with --dataflow (the Beam work would run in the "
                     "pods' DirectRunner and they would be ignored)")
    direct_only = [flag for flag, dest in (("--beam-mode", "beam_mode"), ("--beam-workers", "beam_workers"))
                   if dest in given]
    if args.dataflow and direct_only:
        parser.error(f"{', '.join(direct_only)} set the pods' DirectRunner; with --dataflow the Beam work runs on "
                     "Dataflow and they would be ignored")
    # Options Beam would drop or read as another, refused before the runner is looked for (--run=… is --runner); with
    # --dataflow, those it sets from its flags are named by dataflow_args
    problem = beam_args_lib.unread_option(args.beam_arg, skipped=beam_args_lib.FROM_FLAGS if args.dataflow else ())
    if problem:
        parser.error(problem)
    runners = beam_args_lib.runners(args.beam_arg)
    if args.dataflow and runners:
        parser.error("--dataflow sets --runner=DataflowRunner itself; leave --runner out of --beam-arg")
    if direct_only and runners:
        parser.error(f"{', '.join(direct_only)} set the DirectRunner; a --beam-arg naming a --runner replaces it, and "
                     "they would be ignored")
    for runner in runners:   # another would fail only in each Beam task's pod
        if beam_args_lib.runner_is(runner, "DataflowRunner"):
            parser.error(f"--beam-arg --runner={runner}: give --dataflow (with --project, --region and "
                         "--temp-location) instead, which also sets the workers' image holding this project's code")
        if not beam_args_lib.runner_is(runner, "DirectRunner"):
            parser.error(f"--beam-arg --runner={runner}: the Beam work runs on the DirectRunner (in each task's pod) "
                         "or, with --dataflow, on Dataflow; no other runner is supported")
    if not args.image.strip() or any(c.isspace() for c in args.image):
        # TFX would put its own public image (gcr.io/tfx-oss-public/tfx) in place of an empty one: it has none of
        # this project's components
        parser.error(f"{'--image' if 'image' in given else IMAGE_VARIABLE} must name the pipeline image built from "
                     f"the Dockerfile, got {args.image!r}")
    image_name = f"--image {args.image}" if "image" in given else settings.variable_text(IMAGE_VARIABLE)
    for name, image in ((image_name, args.image), (f"--dataflow-image {args.dataflow_image}", args.dataflow_image)):
        problem = image is not None and image_reference.problem(image)
        if problem:   # every pod would fail to start (InvalidImageName)
            parser.error(f"{name}: {problem} ({image_reference.GRAMMAR})")
    if not args.feedback_root and "feedback_repeat" in given:   # "" is none too
        parser.error("--feedback-repeat sets how often the feedback is trained on: it needs --feedback-root")
    changes = flags.training_changes(parser, args, defaults, given)
    flags.refuse_pretraining_beside_base_model(parser, args, given, changes["base_model"])
    config = defaults.replace(
        # an empty path is the default, as an empty LETTERS_<FIELD> and as for local runs; an empty pretrain root none,
        # and so is a LETTERS_PRETRAIN_ROOT beside a --base-model (the Trainer starts from the base model)
        pipeline_root=flags.path_or_default(args.pipeline_root, defaults.pipeline_root),
        data_root=flags.path_or_default(args.data_root, defaults.data_root),
        pretrain_root=flags.absolute(args.pretrain_root) if args.pretrain_root and not changes["base_model"] else "",
        serving_dir=flags.path_or_default(args.serving_dir, defaults.serving_dir), **changes)
    root_name = flags.named("pipeline_root", given, config.pipeline_root,
                            f"the default pipeline root ({config.pipeline_root})")
    flags.refuse_root_beam_cannot_write(parser, root_name, config.pipeline_root)
    args.feedback_root = flags.absolute(args.feedback_root) if args.feedback_root else None
    args.output = flags.path_or_default(args.output, DEFAULT_OUTPUT)   # written to; a ~ the shell left, expanded
    pods = pod_paths(config, args)
    paths = dict(pods) | {"--output": args.output}
    names = flags.path_names(paths, given)   # a path a LETTERS_<FIELD> variable set is named by it, not by a flag
    unreadable = [names[name] for name, value in pods if unreadable_url(value)]
    if unreadable:
        parser.error(unopened(unreadable, "in the pipeline image", "every component reads and writes its artifacts",
                              f"gs://BUCKET/… (s3://… with {S3_NEEDS})"))
    if unreadable_url(args.output, SPEC_SCHEMES):   # found now, not after the compile
        parser.error(unopened([names["--output"]], "on this machine", "this command writes the spec",
                              "gs://BUCKET/… or a local path"))
    for name, value in [*paths.items(), ("--temp-location", args.temp_location or "")]:
        problem = gcs_bucket.problem(value)
        if problem:   # found now, not when a task first opens the bucket
            parser.error(f"{names.get(name, f'{name} ({value})')}: {problem}")
    if args.dataflow:
        on_workers = [names[name] for name, value in pods if name in _LETTERS and local_path(value)]
        if on_workers:
            parser.error(f"{', '.join(on_workers)} {'is a local path' if len(on_workers) == 1 else 'are local paths'}"
                         f": {DATAFLOW_READS_LETTERS}")
        if local_path(config.pipeline_root):
            parser.error(f"{names['--pipeline-root']} is a local path: {DATAFLOW_WRITES_ARTIFACTS}")
    problem = flags.overlap(paths, OVERLAPS, names)
    if problem:
        parser.error(problem)
    try:
        beam = beam_pipeline_args(args, config)
        overrides = [spec_lib.parse_resources(text) for text in args.resources]
        resources = spec_lib.combine_resources(overrides, defaults=not args.no_default_resources)
    except ValueError as err:
        parser.error(str(err))
    if args.output.endswith((".yaml", ".yml", ".json")) is False:
        parser.error("--output must end in .yaml, .yml or .json")
    output = args.output
    if not flags.is_url(output):   # found now, not after the compile
        problem = "is a folder" if os.path.isdir(output) else flags.folder_problem(os.path.dirname(output))
        if problem:
            parser.error(f"--output {output}: {problem}")
    return config, args, beam, resources


_LETTERS = ("--data-root", "--pretrain-root", "--feedback-root")   # folders the ImageExampleGens read as letters
# Why the feedback root and the data root may not overlap: the ImageExampleGen lists both, and a data-root image with a
# feedback image's pixels always trains (components.image_example_gen.partition)
FEEDBACK_AMONG_LETTERS = ("the ImageExampleGen would list the same files as feedback and as the data root's letters, "
                          "and a data-root image with the pixels of a feedback image always trains (one folder for "
                          "both leaves the eval split empty, and the run fails)")
OVERLAPS = (   # (flag, other flag, relation, what would happen): paths refused together (flags.overlap), as local
    #            runs refuse them; the feedback exported into <pipeline-root>/feedback, as local runs write it, is not
    ("--serving-dir", "--pipeline-root", flags.same, flags.PUSHED_AMONG_ARTIFACTS),
    ("--base-model", "--serving-dir", flags.same, flags.BASE_MODEL_PUSHED),
    *((flag, letters, flags.within, flags.READ_AS_LETTERS) for letters in _LETTERS
      for flag in ("--pipeline-root", "--serving-dir", "--output")),
    *((flag, "--pipeline-root", flags.within, flags.AMONG_ARTIFACTS) for flag in ("--data-root", "--pretrain-root")),
    *((flag, other, flags.within, FEEDBACK_AMONG_LETTERS)
      for flag, other in (("--feedback-root", "--data-root"), ("--data-root", "--feedback-root"))),
)


def compile_spec(config: Config, image: str, beam: list[str], resources: dict, target: str = "kfp",
                 enable_cache: bool = True, display_name: str | None = None,
                 serving_validation: bool = True, feedback_root: str | None = None) -> tuple[dict, list[str]]:
    """Compiles and edits the spec; returns (PipelineJob dict whose pipelineSpec is edited, notes)."""
    # Not through ``tfx.v1``: it imports every extension (the Vertex AI client alone takes seconds).
    from tfx.orchestration.kubeflow.v2.kubeflow_v2_dag_runner import KubeflowV2DagRunner, KubeflowV2DagRunnerConfig

    from pipeline.pipeline import create_pipeline

    tfx_pipeline = create_pipeline(config, beam_pipeline_args=beam, metadata_connection_config=None,
                                   enable_cache=enable_cache, with_pusher=True,
                                   with_serving_validation=serving_validation, feedback_root=feedback_root,
                                   fingerprint_folders=False)
    runner = KubeflowV2DagRunner(
        config=KubeflowV2DagRunnerConfig(
            display_name=display_name, default_image=image, use_pipeline_spec_2_1=True))
    job = runner.run(tfx_pipeline, write_out=False)
    spec = job["pipelineSpec"]
    if display_name:   # TFX puts it on the PipelineJob only, which YAML output (the PipelineSpec) drops
        spec["pipelineInfo"]["displayName"] = display_name
    notes = spec_lib.adapt_for_target(spec, target)
    if target == "vertex":   # Vertex runs TFX's driver, whose fingerprint globs the root unescaped
        roots = {"ImageExampleGen": config.data_root, "pretrain_example_gen": config.pretrain_root}
        for name in spec_lib.example_gen_tasks(spec):
            if glob.has_magic(roots.get(name) or "") and \
                    spec_lib.tasks(spec)[name].get("cachingOptions", {}).get("enableCache"):
                spec_lib.disable_cache(spec, name)
                notes.append(f"{name}: cache off ({roots[name]} has glob characters: the driver's fingerprint of "
                             "its files would match none, and a cached ExampleGen would never see new images)")
    if feedback_root:
        for name in spec_lib.example_gen_tasks(spec):
            if name != "ImageExampleGen":   # the pretraining one does not read the feedback
                continue
            if spec_lib.tasks(spec)[name].get("cachingOptions", {}).get("enableCache"):
                spec_lib.disable_cache(spec, name)
                notes.append(f"{name}: cache off (it reads the feedback at {feedback_root} at run time)")
    spec_lib.set_pipeline_root(spec, config.pipeline_root)
    spec_lib.apply_resources(spec, resources)
    workers = spec_lib.set_direct_workers(spec)
    if workers:
        notes.append("--direct_num_workers=0 became each task's CPU limit (Beam would start one worker per CPU of the "
                     "node): " + ", ".join(f"{name} {n}" for name, n in sorted(workers.items())))
    spec_lib.check(spec)
    return job, notes


def write_spec(job: dict, path: str) -> None:
    import yaml

    from tfx.dsl.io import fileio

    directory = os.path.dirname(path)
    if directory:
        fileio.makedirs(directory)
    with fileio.open(path, "w") as f:
        if path.endswith(".json"):
            json.dump(job, f, indent=1, sort_keys=True)
        else:
            spec = job["pipelineSpec"]
            f.write(f"# PIPELINE DEFINITION\n# Name: {spec['pipelineInfo']['name']}\n"
                    f"# Compiled by kubeflow_runner.py from pipeline/pipeline.py ({spec['sdkVersion']})\n")
            yaml.safe_dump(spec, f, sort_keys=True)


def pod_paths(config: Config, args: argparse.Namespace) -> list[tuple[str, str]]:
    """(flag, value) of every path given that the pods read or write."""
    return [(name, value) for name, value in (
        ("--pipeline-root", config.pipeline_root), ("--data-root", config.data_root),
        ("--serving-dir", config.serving_dir), ("--feedback-root", args.feedback_root),
        ("--pretrain-root", config.pretrain_root), ("--base-model", config.base_model)) if value]


def local_path(value: str) -> bool:
    """A path on the machine that opens it (a ``file://`` URL too), not in a bucket."""
    return not flags.is_url(value) or value.startswith(LOCAL_SCHEMES)


# Why a local data, pretrain or feedback root is refused with --dataflow: the ImageExampleGen lists the files in its
# pod but reads each one on a Dataflow worker, where a missing file is skipped as unreadable
DATAFLOW_READS_LETTERS = ("with --dataflow the Dataflow workers read the images there, not the pods, and a local "
                          "path is on none of them (mounted in the pods or not, every image would be skipped as "
                          "unreadable); use gs://BUCKET/…")


# Why a local pipeline root is refused with --dataflow: the components' Beam work (the ExampleGen's examples, the
# statistics, the Transform's output, the Evaluator's results) is written there by the workers
DATAFLOW_WRITES_ARTIFACTS = ("with --dataflow the Dataflow workers write the components' examples, statistics, "
                             "transformed data and evaluations there, and a local path is on none of them; use "
                             "gs://BUCKET/…")


def unreadable_url(value: str, opened: tuple[str, ...] = CLUSTER_SCHEMES + PLUGIN_SCHEMES + LOCAL_SCHEMES) -> bool:
    """A URL of a scheme TensorFlow has no filesystem for: of none of ``opened``, by default the schemes TensorFlow
    in the pipeline image may open (minio://, hdfs://, … are not)."""
    return flags.is_url(value) and not value.startswith(opened)


def unopened(paths: list[str], where: str, what: str, instead: str) -> str:
    """The usage error for ``paths`` (flag and value) that are :func:`unreadable_url`: TensorFlow ``where`` it runs
    cannot open them, and ``what`` goes through it; ``instead``: what to give."""
    return f"{', '.join(paths)}: TensorFlow {where} cannot open such URLs, and {what} through it: use {instead}"


# What runs a spec compiled with a local pipeline root, by target: the backends take bucket URLs only, and the local
# launcher runs container and importer tasks, not the resolver that only Vertex runs.
LOCAL_ROOT_NOTES = {
    "kfp": "a Kubeflow Pipelines cluster refuses it as the pipeline root (its backend takes bucket URLs only: "
           "gs://BUCKET/…); the spec runs as compiled only under python -m kubeflow.local_launcher",
    "vertex": "Vertex AI Pipelines refuses it as the pipeline root (it takes gs://BUCKET/… only), and nothing runs "
              "this spec whole: python -m kubeflow.local_launcher runs its tasks up to the Trainer (--until Trainer), "
              "not the latest-blessed-model resolver the Evaluator reads, which queries Vertex ML Metadata; compiled "
              "with --target kfp (no resolver), the spec runs whole under the launcher",
}


# What the pipeline image needs for s3:// paths: TensorFlow opens every path, Beam writes the artifacts of the Beam
# components under the pipeline root (beam.io.WriteToTFRecord('s3://…'): AssertionError: Missing boto3 requirement)
S3_NEEDS = ("an S3 filesystem plugin for TensorFlow and, for the pipeline root, apache-beam[aws] (boto3) for Beam, "
            "with Beam's S3 options (--beam-arg=--s3_region_name=…), both added to the image")


def storage_notes(config: Config, args: argparse.Namespace) -> list[str]:
    """A note for every path the pods read or write that is not a gs:// URL: an s3:// one needs a plugin for
    TensorFlow in the image and, the pipeline root, Beam's S3 filesystem (apache-beam[aws]) too; a local pipeline
    root is refused by a cluster; other local paths must be mounted in the pods (with --dataflow, a local data,
    pretrain or feedback root is refused: :data:`DATAFLOW_READS_LETTERS`). And one for a --base-model URL: it is
    read when the Trainer runs, a serving dir as its newest version then."""
    notes = []
    for name, value in pod_paths(config, args):
        if name == "--base-model" and flags.is_url(value):   # a local path was resolved to its version here
            notes.append(f"note: {name} {value} is read when the Trainer runs, not now: a serving dir stands for "
                         "its newest version then; give a version folder (<serving-dir>/<version>) to start every "
                         "run from the same model")
        if value.startswith(CLUSTER_SCHEMES):
            continue
        if value.startswith(PLUGIN_SCHEMES):
            beam = ("" if name != "--pipeline-root" else
                    ", and Beam, which writes the ImageExampleGen's, StatisticsGen's, Transform's and Evaluator's "
                    "artifacts there, only with apache-beam[aws] (boto3) and Beam's S3 options "
                    "(--beam-arg=--s3_region_name=…): the image has neither")
            notes.append(f"note: {name} {value}: TensorFlow in the pipeline image opens s3:// only with an S3 "
                         f"filesystem plugin added to the image{beam} (kubeflow/README.md, Storage)")
        elif name == "--pipeline-root":
            notes.append(f"note: {name} {value} is a local path: {LOCAL_ROOT_NOTES[args.target]}")
        else:
            notes.append(f"note: {name} {value} is a local path: pods can only use it if it is mounted there")
    return notes


def image_notes(args: argparse.Namespace) -> list[str]:
    """A note when the spec names :data:`DEFAULT_IMAGE`, which no documented build tags: which image the tasks
    (and with --dataflow, the workers) would pull, and how to name the one built from the Dockerfile."""
    if args.image != DEFAULT_IMAGE:
        return []
    workers = ""
    if args.dataflow and not args.dataflow_image:
        workers = f" and the Dataflow workers {beam_args_lib.dataflow_worker_image(args.image)}"
    return [f"note: the spec names the image {args.image}{workers}, the default, a name no documented build tags "
            "(the Dockerfile and kubeflow/README.md build REGISTRY/letters:TAG), so a cluster runs the spec only if that name is pushed where its nodes "
            "pull from; name the image built with --image REGISTRY/letters:TAG or LETTERS_KUBEFLOW_IMAGE"]


def main(argv=None) -> int:
    configs.warn_unknown_variables()
    config, args, beam, resources = parse_args(argv)
    for note in storage_notes(config, args) + image_notes(args):
        print(note, file=sys.stderr)
    try:
        job, notes = compile_spec(config, args.image, beam, resources, target=args.target,
                                  enable_cache=not args.no_cache, display_name=args.display_name,
                                  serving_validation=not args.no_serving_validation, feedback_root=args.feedback_root)
    except ValueError as err:   # resources for a component this pipeline has not, or a request above its limit
        print(f"error: {err}", file=sys.stderr)
        return 2
    output = args.output
    import tensorflow as tf   # loaded by the compile

    try:
        write_spec(job, output)
    except (OSError, tf.errors.OpError) as err:   # a bucket not reached, no credentials, a full disk
        print(f"error: --output {output}: the spec could not be written: {' '.join(str(err).split())}",
              file=sys.stderr)
        return 2
    spec = job["pipelineSpec"]
    print(f"Wrote {output} ({args.target}): {len(spec_lib.tasks(spec))} tasks, image {args.image}, "
          f"root {config.pipeline_root}")
    print(f"Beam: {' '.join(beam)}")
    print(f"Training budget: {configs.plural(config.epochs, 'epoch')} (chosen)" if config.epochs else
          f"Training budget: sized by the Trainer from the training images it gets ({configs.budget_rule()}; "
          f"--epochs N to choose)")
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
