"""Beam options for the Beam-powered components (ImageExampleGen, StatisticsGen, Transform, Evaluator)
when the pipeline runs on a cluster (every executor gets the options; the others ignore them).

* In the pod (default): Beam's DirectRunner, as local runs (``core.configs.beam_pipeline_args``).
* Dataflow (``dataflow_args``): the Beam work runs on Dataflow workers started from the same image built with
  ``--target dataflow-worker`` (the Beam SDK boot entrypoint over the same installed project), so the workers
  have the project's code (the image ExampleGen's transforms, ``models.preprocessing``) and the same Keras mode.
* Anything else: pass Beam options through as they are (``--beam-arg`` on the runner's command line).
"""
from __future__ import annotations


def dataflow_worker_image(image: str) -> str:
    """The Dataflow worker image next to the pipeline image: ``repo/letters:1.2`` → ``repo/letters:1.2-dataflow``."""
    name, _, digest = image.partition("@")
    if digest:
        raise ValueError(f"{image}: give --dataflow-image explicitly for an image pinned by digest")
    last = name.rsplit("/", 1)[-1]
    return f"{name}-dataflow" if ":" in last else f"{name}:latest-dataflow"


def dataflow_args(project: str, region: str, temp_location: str, worker_image: str,
                  max_num_workers: int | None = None, service_account: str | None = None,
                  extra: list[str] | None = None) -> list[str]:
    if not (project and region and temp_location):
        raise ValueError("Dataflow needs a project, a region and a temp location (gs://…)")
    if not temp_location.startswith("gs://"):
        raise ValueError(f"the Dataflow temp location must be on GCS (gs://…), not {temp_location}")
    args = [
        "--runner=DataflowRunner",
        f"--project={project}",
        f"--region={region}",
        f"--temp_location={temp_location}",
        f"--sdk_container_image={worker_image}",
        # The workers' image already holds every package: no requirements or setup file to stage.
        "--sdk_location=container",
        "--experiments=use_runner_v2",
    ]
    if max_num_workers:
        args.append(f"--max_num_workers={max_num_workers}")
    if service_account:
        args.append(f"--service_account_email={service_account}")
    return args + list(extra or [])
