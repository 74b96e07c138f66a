"""Runs tasks of a compiled KFP v2 spec on this machine, the way the KFP launcher runs them in a pod.

For each task, in dependency order, it builds the ``ExecutorInput`` the KFP driver would (the task's constant
parameters, its upstream tasks' output artifacts with their metadata, output artifacts under
``<pipeline root>/<pipeline name>/<run id>/<task>/<output key>``, an output metadata file), substitutes it for
the ``{{$}}`` placeholder in the executor's ``args``, and runs the executor's ``command`` + ``args`` in a
subprocess with the image's environment. Afterwards it reads the ``ExecutorOutput`` the executor wrote and merges
its artifact metadata into the outputs (as the launcher's ``mergeRuntimeArtifacts`` does) for downstream tasks.
An importer task runs no container: its output is the artifact at the URI it names, with the metadata it gives,
as the KFP importer launcher records it. A resolver task (a query of ML Metadata for earlier runs' artifacts, which
only Vertex AI Pipelines runs) cannot run here: a run that needs one is refused before its first task.

``python`` at the head of a command is this interpreter (the image's ``python`` is the one holding the stack).
With ``run_driver=True`` an ExampleGen's ``lifecycle.preCacheCheck`` driver runs first, as Vertex AI Pipelines
does; open-source KFP does not run it.

    python -m kubeflow.local_launcher outputs/kubeflow/letters_pipeline.yaml --until Transform
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import subprocess
import sys
import time
import uuid

import yaml

from core import keras_mode
from kubeflow import spec as spec_lib
from pipeline import flags

EXECUTOR_INPUT_PLACEHOLDER = "{{$}}"
_PLACEHOLDER = re.compile(r"\{\{\$[^}]*\}\}")
# The image's recipe, in a source checkout; an installed copy (the wheel, the image) has none.
DOCKERFILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Dockerfile")


def load_spec(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        if path.endswith(".json"):
            data = json.load(f)
            return data.get("pipelineSpec", data)
        return yaml.safe_load(f)


def dockerfile_env(dockerfile: str) -> dict[str, str]:
    """The ``ENV KEY=value`` settings of a Dockerfile (one or more pairs per line), last stage wins."""
    env: dict[str, str] = {}
    with open(dockerfile, encoding="utf-8") as f:
        text = f.read().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line.upper().startswith("ENV "):
            continue
        for token in line[4:].split():
            key, sep, value = token.partition("=")
            if sep:
                env[key] = value.strip('"')
    return env


def image_env(dockerfile: str | None) -> dict[str, str]:
    """The image's ``ENV`` settings: those of ``dockerfile``, by default :data:`DOCKERFILE`. Without that file
    (an installed copy), the Keras mode of ``core.keras_mode`` (the Dockerfile sets the same values), saying so."""
    if dockerfile is None and not os.path.exists(DOCKERFILE):
        print(f"note: no Dockerfile at {DOCKERFILE} (an installed copy): the tasks get the Keras mode from "
              "core/keras_mode.py and this environment, without the Dockerfile's other ENV lines", flush=True)
        return dict(keras_mode.ENV)
    return dockerfile_env(dockerfile or DOCKERFILE)


class TaskFailed(RuntimeError):
    def __init__(self, task: str, returncode: int, log: str):
        super().__init__(f"task {task} exited with {returncode}:\n{log[-6000:]}")
        self.task, self.returncode, self.log = task, returncode, log


class LocalLauncher:
    def __init__(self, spec: dict, pipeline_root: str | None = None, workdir: str | None = None,
                 env: dict[str, str] | None = None, python: str = sys.executable, run_id: str | None = None,
                 timeout: float = 1200.0):
        self.spec = copy.deepcopy(spec)
        # Absolute: each executor runs in its own task folder, where a relative URI would lead elsewhere.
        self.pipeline_root = flags.path_or_default(pipeline_root, spec.get("defaultPipelineRoot") or "")
        if not self.pipeline_root:
            raise ValueError("no pipeline root: the spec has no defaultPipelineRoot and none was given")
        self.run_id = run_id or f"local-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.workdir = flags.path_or_default(workdir, os.path.join(self.pipeline_root, ".launcher", self.run_id))
        if flags.is_url(self.workdir):   # os.makedirs would make a relative folder named after the URL
            raise ValueError(f"the tasks run in local folders, and {self.workdir} (under the pipeline root) is a URL: "
                             "give --pipeline-root a local folder")
        self.env = dict(os.environ if env is None else env)
        self.python = python
        self.timeout = timeout
        self.outputs: dict[str, dict[str, dict]] = {}     # task → output key → runtime artifact (JSON)
        self.commands: dict[str, list[list[str]]] = {}    # task → the command lines run
        self.logs: dict[str, str] = {}

    # ------------------------------------------------------------------------------------ executor input
    def _component(self, task_name: str) -> dict:
        return self.spec["components"][spec_lib.tasks(self.spec)[task_name]["componentRef"]["name"]]

    def output_uri(self, task_name: str, key: str) -> str:
        return "/".join([self.pipeline_root.rstrip("/"), self.spec["pipelineInfo"]["name"], self.run_id,
                         task_name, key])

    def artifact(self, task_name: str, key: str, uri: str, metadata: dict | None = None) -> dict:
        """The runtime artifact (JSON) of the task's output ``key`` at ``uri``."""
        definition = self._component(task_name)["outputDefinitions"]["artifacts"][key]
        return {"name": f"{self.run_id}/{task_name}/{key}", "type": definition["artifactType"], "uri": uri,
                "metadata": copy.deepcopy(metadata or {})}

    def parameter_values(self, task_name: str) -> dict:
        """The task's input parameters: the component's defaults, then the task's constants."""
        task = spec_lib.tasks(self.spec)[task_name]
        parameter_values = {}
        for key, definition in self._component(task_name).get("inputDefinitions", {}).get("parameters", {}).items():
            if "defaultValue" in definition:
                parameter_values[key] = definition["defaultValue"]
        for key, source in task.get("inputs", {}).get("parameters", {}).items():
            runtime = source.get("runtimeValue", {})
            if "constant" not in runtime:
                raise NotImplementedError(f"{task_name}.{key}: only constant parameters are supported ({source})")
            parameter_values[key] = runtime["constant"]
        return parameter_values

    def executor_input(self, task_name: str) -> dict:
        """The ``ExecutorInput`` (JSON) for a task whose upstream tasks have run."""
        task = spec_lib.tasks(self.spec)[task_name]
        component = self._component(task_name)
        parameter_values = self.parameter_values(task_name)
        input_artifacts = {}
        for key, source in task.get("inputs", {}).get("artifacts", {}).items():
            upstream = source.get("taskOutputArtifact")
            if upstream is None:
                raise NotImplementedError(f"{task_name}.{key}: only task output artifacts are supported")
            producer, out_key = upstream["producerTask"], upstream["outputArtifactKey"]
            if producer not in self.outputs:
                raise RuntimeError(f"{task_name} needs {producer}, which has not run")
            input_artifacts[key] = {"artifacts": [copy.deepcopy(self.outputs[producer][out_key])]}
        output_artifacts = {key: {"artifacts": [self.artifact(task_name, key, self.output_uri(task_name, key))]}
                            for key in component.get("outputDefinitions", {}).get("artifacts", {})}
        return {
            "inputs": {"parameterValues": parameter_values, "artifacts": input_artifacts},
            "outputs": {"artifacts": output_artifacts,
                        "outputFile": os.path.join(self.workdir, task_name, "output_metadata.json")},
        }

    # ------------------------------------------------------------------------------------------- running
    def command_line(self, container: dict, executor_input: dict) -> list[str]:
        """``command`` + ``args`` with ``{{$}}`` filled in; refuses any placeholder left unfilled."""
        filled = json.dumps(executor_input)
        line = list(container.get("command", [])) + [
            arg.replace(EXECUTOR_INPUT_PLACEHOLDER, filled) for arg in container.get("args", [])]
        if not container.get("command"):
            raise ValueError("the executor has no command (the image's ENTRYPOINT would be used)")
        for arg in line:
            if arg != filled and _PLACEHOLDER.search(arg):
                raise NotImplementedError(f"unsupported placeholder in {arg!r}")
        if line[0] == "python":
            line[0] = self.python
        return line

    def _execute(self, task_name: str, line: list[str]) -> None:
        self.commands.setdefault(task_name, []).append(line)
        cwd = os.path.join(self.workdir, task_name)
        os.makedirs(cwd, exist_ok=True)
        proc = subprocess.run(line, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=self.timeout)
        self.logs[task_name] = self.logs.get(task_name, "") + proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise TaskFailed(task_name, proc.returncode, proc.stdout[-3000:] + proc.stderr)

    def cannot_run(self, task_name: str) -> str | None:
        """Why this launcher cannot run the task (None when it can): it runs container and importer executors."""
        label, executor = spec_lib.executor_of(self.spec, task_name)
        if "container" in executor:
            return None
        if "importer" in executor:
            uri = executor["importer"].get("artifactUri", {})
            if "constant" in uri or uri.get("runtimeParameter") in self.parameter_values(task_name):
                return None
            return f"imports from {uri}, neither a constant URI nor one of its parameters"
        if "resolver" in executor:
            return ("is a resolver: it queries ML Metadata for earlier runs' artifacts, which only Vertex AI "
                    "Pipelines does (this launcher runs container and importer tasks)")
        return f"has an executor ({label}) of a kind this launcher does not run: {', '.join(sorted(executor))}"

    def imported(self, task_name: str, importer: dict) -> dict[str, dict]:
        """An importer task's output: the artifact at the URI its spec names (a constant, or the task's parameter
        it names), with the spec's metadata, as the KFP importer launcher records it; nothing is run or copied."""
        uri = importer["artifactUri"]
        uri = uri["constant"] if "constant" in uri else self.parameter_values(task_name)[uri["runtimeParameter"]]
        (key,) = self._component(task_name)["outputDefinitions"]["artifacts"]
        return {key: self.artifact(task_name, key, uri, importer.get("metadata"))}

    def run_task(self, task_name: str, run_driver: bool = False) -> dict[str, dict]:
        why = self.cannot_run(task_name)
        if why:
            raise ValueError(f"task {task_name} {why}")
        _, executor = spec_lib.executor_of(self.spec, task_name)
        if "importer" in executor:
            self.outputs[task_name] = self.imported(task_name, executor["importer"])
            return self.outputs[task_name]
        container = executor["container"]
        executor_input = self.executor_input(task_name)
        output_file = executor_input["outputs"]["outputFile"]
        os.makedirs(os.path.dirname(output_file), exist_ok=True)
        if os.path.exists(output_file):
            os.remove(output_file)
        hook = container.get("lifecycle", {}).get("preCacheCheck")
        if run_driver and hook:
            self._execute(task_name, self.command_line(hook, executor_input))
        self._execute(task_name, self.command_line(container, executor_input))
        outputs = {key: value["artifacts"][0] for key, value in executor_input["outputs"]["artifacts"].items()}
        if os.path.exists(output_file):
            with open(output_file, encoding="utf-8") as f:
                written = json.load(f)
            for key, artifacts in written.get("artifacts", {}).items():
                if key in outputs and artifacts.get("artifacts"):
                    produced = artifacts["artifacts"][0]
                    if produced.get("uri"):
                        outputs[key]["uri"] = produced["uri"]
                    outputs[key]["metadata"].update(produced.get("metadata", {}))
        self.outputs[task_name] = outputs
        return outputs

    def plan(self, until: str | None = None, only: list[str] | None = None) -> list[str]:
        """The root DAG's tasks to run, in dependency order, up to and including ``until`` (of them, those in
        ``only``); ValueError if one of them is a task this launcher cannot run (:meth:`cannot_run`)."""
        order = spec_lib.topological_order(self.spec)
        if until is not None:
            if until not in order:
                raise ValueError(f"no task {until}")
            needed, stack = set(), [until]
            while stack:
                name = stack.pop()
                if name not in needed:
                    needed.add(name)
                    stack.extend(spec_lib.tasks(self.spec)[name].get("dependentTasks", []))
            order = [name for name in order if name in needed]
        if only is not None:
            order = [name for name in order if name in only]
        for name in order:
            why = self.cannot_run(name)
            if why:
                raise ValueError(f"task {name} {why}: give --until a task that does not need it")
        return order

    def run(self, until: str | None = None, only: list[str] | None = None, run_driver: bool = False,
            progress=None) -> list[str]:
        """Runs the root DAG's tasks in dependency order, up to and including ``until``; returns those run.
        A task this launcher cannot run is refused before the first runs (:meth:`plan`)."""
        order = self.plan(until, only)
        for name in order:
            started = time.monotonic()
            self.run_task(name, run_driver=run_driver)
            if progress:
                progress(f"{name} finished in {time.monotonic() - started:.0f} s")
        return order


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Run tasks of a compiled letters KFP spec locally, through the "
                                            "same container commands and arguments the spec gives.")
    p.add_argument("spec", help="compiled spec (.yaml or .json) from kubeflow_runner.py")
    p.add_argument("--pipeline-root", default=None, help="local pipeline root (default: the spec's)")
    p.add_argument("--until", default=None, help="run this task and what it needs (default: every task)")
    p.add_argument("--driver", action="store_true", help="run ExampleGen's preCacheCheck driver (as Vertex)")
    p.add_argument("--dockerfile", default=None, help="take the environment from this Dockerfile's ENV lines "
                   "(default: the source checkout's; an installed copy, which has none, takes the Keras mode from "
                   "core/keras_mode.py)")
    args = p.parse_args(argv)
    env = dict(os.environ)
    try:
        env.update(image_env(args.dockerfile))
        try:
            spec = load_spec(args.spec)
        except (yaml.YAMLError, ValueError) as err:   # ValueError: JSON's
            raise ValueError(f"{args.spec} is not a compiled pipeline spec ({str(err).splitlines()[0]})") from None
        if not isinstance(spec, dict) or "root" not in spec:
            raise ValueError(f"{args.spec} is not a compiled pipeline spec (kubeflow_runner.py writes one)")
        launcher = LocalLauncher(spec, pipeline_root=args.pipeline_root, env=env)
        if args.until is not None and args.until not in spec["root"].get("dag", {}).get("tasks", {}):
            raise ValueError(f"no task {args.until!r} in {args.spec}: its tasks are "
                             + ", ".join(sorted(spec["root"].get("dag", {}).get("tasks", {}))))
        launcher.plan(args.until)   # a task it cannot run, found before any runs
    except (OSError, ValueError) as err:   # a bad path or spec: one line, a usage error
        print(f"error: {getattr(err, 'strerror', None) and f'{err.filename}: {err.strerror}' or err}",
              file=sys.stderr)
        return 2
    try:
        launcher.run(until=args.until, run_driver=args.driver, progress=lambda m: print(m, flush=True))
    except TaskFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for task, outputs in launcher.outputs.items():
        for key, artifact in outputs.items():
            print(f"{task}.{key}: {artifact['uri']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
