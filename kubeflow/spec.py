"""Edits and checks of the KFP v2 ``PipelineSpec`` that ``KubeflowV2DagRunner`` compiles.

TFX 1.16's compiler leaves a few things to do after compiling:

* **Pipeline root.** The YAML it writes holds only the ``PipelineSpec`` (the pipeline root goes into a
  ``PipelineJob.runtimeConfig`` that YAML output drops), so :func:`set_pipeline_root` sets
  ``defaultPipelineRoot``, the field KFP uses when a run does not name a root.
* **Per-component resources.** ``component.with_platform_config(ResourceSpec)`` is honoured for most
  components but dropped for ``FileBasedExampleGen`` (tensorflow/tfx#6146), so :func:`apply_resources` writes
  ``deploymentSpec.executors.<label>.container.resources`` directly, for every container executor alike, filling
  both the string fields newer KFP backends read (``resourceCpuLimit`` …) and the numeric fields older backends
  and Vertex read (``cpuLimit`` in cores, ``memoryLimit`` in GB), the way the kfp 2.13 SDK compiler does.
* **DirectRunner workers.** ``--direct_num_workers=0`` (``--beam-workers`` 0, the default) makes Beam start one
  worker per CPU of the *node* (``multiprocessing.cpu_count()``), not of the pod: :func:`set_direct_workers`
  replaces it in every executor with that executor's CPU limit.
* **Open-source KFP backend** (``target="kfp"``). Its compiler only implements container and importer executors
  (``backend/src/v2/compiler/visitor.go``: "non-container and non-importer executor not implemented"), so the
  ``latest_blessed_model_resolver`` (two MLMD-query *resolver* executors, a Vertex AI Pipelines feature) is
  removed together with the Evaluator's ``baseline_model`` input; and it never runs ``lifecycle.preCacheCheck``
  (the ExampleGen driver that fingerprints the input files), so ExampleGen's cache is turned off or new images
  would never be read. ``target="vertex"`` keeps both.

:func:`check` validates the result against the kfp-pipeline-spec proto (strict parse) and the DAG's references.
"""
from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any, Iterable

RESOLVER_NOTE = ("the latest-blessed-model resolver runs only on Vertex AI Pipelines; on open-source KFP the "
                 "Evaluator gates on the absolute accuracy floor only")

_CPU = re.compile(r"^(\d+(\.\d+)?|\d+m)$")
# Kubernetes' quantity grammar (apimachinery resource/quantity.go) for memory: a binary-SI suffix, a decimal-SI one
# (kilo is a lower-case k: "K" is refused by Kubernetes, though the kfp SDK's own check takes it) or an exponent.
_MEMORY = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|[eE][+-]?\d+)?$")
_MEMORY_UNITS = {"E": 10 ** 18, "Ei": 2 ** 60, "P": 10 ** 15, "Pi": 2 ** 50, "T": 10 ** 12, "Ti": 2 ** 40,
                 "G": 10 ** 9, "Gi": 2 ** 30, "M": 10 ** 6, "Mi": 2 ** 20, "k": 10 ** 3, "Ki": 2 ** 10, "": 1}
RESOURCE_KEYS = ("cpu", "memory", "cpu_request", "memory_request")


def cpu_to_float(cpu: str) -> float:
    """Kubernetes CPU quantity ("2", "0.5", "500m") → cores."""
    if not _CPU.match(cpu):
        raise ValueError(f"{cpu!r} is not a CPU quantity (e.g. 2, 0.5 or 500m)")
    return float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)


def memory_to_float(memory: str) -> float:
    """Kubernetes memory quantity ("8Gi", "512M", "2G") → GB (10^9 bytes), as KFP's ``memoryLimit``."""
    match = _MEMORY.match(memory)
    if not match:
        hint = " (kilo is a lower-case k in Kubernetes: 512k, or 512Ki)" if memory.endswith("K") else ""
        raise ValueError(f"{memory!r} is not a memory quantity (e.g. 8Gi, 512Mi or 2G){hint}")
    number, unit = match.group(1), match.group(2) or ""
    scale = 10 ** int(unit[1:]) if unit[:1] in ("e", "E") and unit[1:] else _MEMORY_UNITS[unit]
    try:
        return float(number) * scale / 10 ** 9
    except OverflowError:
        raise ValueError(f"{memory!r} is too large a memory quantity") from None


@dataclasses.dataclass(frozen=True)
class Resources:
    """Container resources of one component; Kubernetes quantity strings, None = not set."""

    cpu: str | None = None              # limit
    memory: str | None = None           # limit
    cpu_request: str | None = None
    memory_request: str | None = None

    def __post_init__(self):
        for name in ("cpu", "cpu_request"):
            if getattr(self, name) is not None:
                cpu_to_float(getattr(self, name))
        for name in ("memory", "memory_request"):
            if getattr(self, name) is not None:
                memory_to_float(getattr(self, name))

    def merged(self, other: "Resources") -> "Resources":
        """``other``'s fields where set, else this one's."""
        return Resources(**{k: v if v is not None else getattr(self, k)
                            for k, v in dataclasses.asdict(other).items()})

    def to_spec(self) -> dict[str, Any]:
        """The ``PipelineContainerSpec.ResourceSpec`` JSON (as kfp 2.13's compiler writes it)."""
        out: dict[str, Any] = {}
        if self.cpu is not None:
            out["resourceCpuLimit"] = self.cpu
            out["cpuLimit"] = cpu_to_float(self.cpu)
        if self.memory is not None:
            out["resourceMemoryLimit"] = self.memory
            out["memoryLimit"] = memory_to_float(self.memory)
        if self.cpu_request is not None:
            out["resourceCpuRequest"] = self.cpu_request
            out["cpuRequest"] = cpu_to_float(self.cpu_request)
        if self.memory_request is not None:
            out["resourceMemoryRequest"] = self.memory_request
            out["memoryRequest"] = memory_to_float(self.memory_request)
        return out


# Sized for the in-pod DirectRunner on the default data; with Dataflow the Beam work leaves the pod and the
# Beam-heavy components need far less. Every value can be overridden per component (--resources).
ALL = "*"
DEFAULT_RESOURCES: dict[str, Resources] = {
    ALL: Resources(cpu="1", memory="2Gi", cpu_request="500m", memory_request="1Gi"),
    "ImageExampleGen": Resources(cpu="2", memory="4Gi", cpu_request="1", memory_request="2Gi"),
    "StatisticsGen": Resources(cpu="2", memory="4Gi", cpu_request="1", memory_request="2Gi"),
    "Transform": Resources(cpu="2", memory="8Gi", cpu_request="1", memory_request="4Gi"),
    "Trainer": Resources(cpu="4", memory="8Gi", cpu_request="2", memory_request="4Gi"),
    # With --pretrain-root (pipeline.pipeline.pretraining): like the ExampleGen, Transform and Trainer.
    "pretrain_example_gen": Resources(cpu="2", memory="4Gi", cpu_request="1", memory_request="2Gi"),
    "pretrain_statistics_gen": Resources(cpu="2", memory="4Gi", cpu_request="1", memory_request="2Gi"),
    "pretrain_transform": Resources(cpu="2", memory="8Gi", cpu_request="1", memory_request="4Gi"),
    "pretrainer": Resources(cpu="4", memory="8Gi", cpu_request="2", memory_request="4Gi"),
    "Evaluator": Resources(cpu="2", memory="8Gi", cpu_request="1", memory_request="4Gi"),
}


def parse_resources(text: str) -> tuple[str, Resources]:
    """``"Trainer=cpu=4,memory=16Gi"`` → ("Trainer", Resources(cpu="4", memory="16Gi")); ``*`` = every component."""
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise ValueError(f"{text!r}: expected COMPONENT=key=value[,key=value…] (keys: {', '.join(RESOURCE_KEYS)})")
    values = {}
    for item in rest.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in RESOURCE_KEYS or not value.strip():
            raise ValueError(f"{text!r}: {item!r} is not key=value with key one of {', '.join(RESOURCE_KEYS)}")
        values[key] = value.strip()
    return name.strip(), Resources(**values)


class ResourceTable(dict):
    """Component → Resources, and ``named``: the components an override named (the others are defaults)."""
    named: frozenset = frozenset()


def combine_resources(overrides: Iterable[tuple[str, Resources]], defaults: bool = True) -> ResourceTable:
    """The defaults (unless ``defaults`` is False) with each override merged field by field: an override for
    ``*`` over every default (a component's own default gives way to it), then one for a component over both."""
    overrides = list(overrides)
    table = ResourceTable(DEFAULT_RESOURCES) if defaults else ResourceTable()
    for name, resources in overrides:
        if name == ALL:
            table = ResourceTable({component: default.merged(resources) for component, default in table.items()})
    for name, resources in overrides:   # (a "*" override again merges into the "*" entry: merging is idempotent)
        table[name] = table.get(name, Resources()).merged(resources)
    table.named = frozenset(name for name, _ in overrides)
    return table


def check_requests(name: str, resources: Resources) -> None:
    """ValueError for a request above its limit (Kubernetes refuses such a pod)."""
    for request, limit, to_float in (("cpu_request", "cpu", cpu_to_float), ("memory_request", "memory",
                                                                             memory_to_float)):
        asked, cap = getattr(resources, request), getattr(resources, limit)
        if asked is not None and cap is not None and to_float(asked) > to_float(cap):
            raise ValueError(f"{name}: {request} {asked} is above its limit {limit} {cap} (Kubernetes refuses "
                             "such a pod); --resources sets both")


# ------------------------------------------------------------------------------------------ spec helpers
def tasks(spec: dict) -> dict[str, dict]:
    return spec["root"]["dag"]["tasks"]


def executor_of(spec: dict, task_name: str) -> tuple[str, dict]:
    """(executor label, executor spec) of a root-DAG task."""
    component = spec["components"][tasks(spec)[task_name]["componentRef"]["name"]]
    label = component["executorLabel"]
    return label, spec["deploymentSpec"]["executors"][label]


def container_tasks(spec: dict) -> list[str]:
    return sorted(name for name in tasks(spec) if "container" in executor_of(spec, name)[1])


def set_pipeline_root(spec: dict, pipeline_root: str) -> None:
    spec["defaultPipelineRoot"] = pipeline_root


def apply_resources(spec: dict, table: dict[str, Resources]) -> dict[str, dict]:
    """Writes ``container.resources`` of every container task; returns task → resources written."""
    names = container_tasks(spec)
    # A default for a component this pipeline leaves out (the pretrainer's) is not an error, even with the
    # override for every component merged in; an override naming it is.
    named = getattr(table, "named", set(table))
    unknown = sorted(set(named) - set(names) - {ALL})
    if unknown:
        raise ValueError(f"no component named {', '.join(unknown)} in the pipeline (components: {', '.join(names)})")
    written = {}
    for name in names:
        resources = table.get(ALL, Resources()).merged(table.get(name, Resources()))
        check_requests(name, resources)
        body = resources.to_spec()
        container = executor_of(spec, name)[1]["container"]
        if body:
            container["resources"] = body
            written[name] = body
        else:
            container.pop("resources", None)
    return written


def command_lines(container: dict) -> list[list[str]]:
    """The argument lists of a container executor: its own and its ExampleGen driver's (``preCacheCheck``)."""
    return [container.get("args", []), container.get("lifecycle", {}).get("preCacheCheck", {}).get("args", [])]


DIRECT_WORKERS_FLAG = "--direct_num_workers"


def set_direct_workers(spec: dict) -> dict[str, int]:
    """Replaces ``--direct_num_workers=0`` in every container task's arguments (its ExampleGen driver's too) with
    the task's CPU limit, a whole number of at least 1; returns task → workers. A task without a CPU limit keeps
    0: its pod may use every CPU of the node."""
    unset = f"{DIRECT_WORKERS_FLAG}=0"
    written = {}
    for name in container_tasks(spec):
        container = executor_of(spec, name)[1]["container"]
        limit = container.get("resources", {}).get("cpuLimit")
        if limit is None:
            continue
        workers = max(1, int(limit))
        for args in command_lines(container):
            for i, arg in enumerate(args):
                if arg == unset:
                    args[i] = f"{DIRECT_WORKERS_FLAG}={workers}"
                    written[name] = workers
    return written


def strip_resolvers(spec: dict) -> list[str]:
    """Removes resolver tasks (and the inputs that consume them); returns the removed task names."""
    removed = [name for name in tasks(spec) if "resolver" in executor_of(spec, name)[1]]
    for name in removed:
        label, _ = executor_of(spec, name)
        component = tasks(spec)[name]["componentRef"]["name"]
        del tasks(spec)[name]
        spec["components"].pop(component, None)
        spec["deploymentSpec"]["executors"].pop(label, None)
    removed_set = set(removed)
    for name, task in tasks(spec).items():
        if "dependentTasks" in task:
            task["dependentTasks"] = [t for t in task["dependentTasks"] if t not in removed_set]
            if not task["dependentTasks"]:
                del task["dependentTasks"]
        artifacts = task.get("inputs", {}).get("artifacts", {})
        for key in [k for k, v in artifacts.items()
                    if v.get("taskOutputArtifact", {}).get("producerTask") in removed_set]:
            del artifacts[key]
            definitions = spec["components"][task["componentRef"]["name"]].get("inputDefinitions", {})
            definitions.get("artifacts", {}).pop(key, None)
            refresh_inputs_spec_args(spec, name)
    return removed


INPUTS_SPEC_FLAG = "--json_serialized_inputs_spec_args"


def refresh_inputs_spec_args(spec: dict, task_name: str) -> None:
    """Rewrites the copy of the component's inputDefinitions that schema 2.1 passes on the command line."""
    import json

    component = spec["components"][tasks(spec)[task_name]["componentRef"]["name"]]
    text = json.dumps(component.get("inputDefinitions", {}), indent=2, sort_keys=True)
    container = executor_of(spec, task_name)[1].get("container", {})
    for args in command_lines(container):
        for i, arg in enumerate(args[:-1]):
            if arg == INPUTS_SPEC_FLAG:
                args[i + 1] = text


def disable_cache(spec: dict, task_name: str) -> None:
    tasks(spec)[task_name]["cachingOptions"] = {"enableCache": False}


def example_gen_tasks(spec: dict) -> list[str]:
    """Tasks whose executor has the FileBasedExampleGen driver hook (``lifecycle.preCacheCheck``)."""
    return sorted(name for name in container_tasks(spec)
                  if "lifecycle" in executor_of(spec, name)[1]["container"])


def adapt_for_target(spec: dict, target: str) -> list[str]:
    """Applies the open-source-KFP edits (``target="kfp"``); returns notes saying what changed."""
    if target == "vertex":
        return []
    if target != "kfp":
        raise ValueError(f"unknown target {target!r} (kfp or vertex)")
    notes = []
    removed = strip_resolvers(spec)
    if removed:
        notes.append(f"removed {', '.join(removed)}: {RESOLVER_NOTE}")
    for name in example_gen_tasks(spec):
        if tasks(spec)[name].get("cachingOptions", {}).get("enableCache"):
            disable_cache(spec, name)
            notes.append(f"{name}: cache off (open-source KFP does not run the driver that fingerprints the input "
                         "files, so a cached ExampleGen would never see new images)")
    return notes


def check(spec: dict) -> None:
    """Strict parse as ``PipelineSpec`` plus DAG consistency; raises ValueError on the first problem."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    try:
        json_format.ParseDict(copy.deepcopy(spec), pipeline_spec_pb2.PipelineSpec())
    except json_format.ParseError as err:
        raise ValueError(f"not a valid PipelineSpec: {err}") from None
    all_tasks = tasks(spec)
    for name, task in all_tasks.items():
        component_name = task["componentRef"]["name"]
        if component_name not in spec["components"]:
            raise ValueError(f"task {name}: no component {component_name}")
        component = spec["components"][component_name]
        if component["executorLabel"] not in spec["deploymentSpec"]["executors"]:
            raise ValueError(f"task {name}: no executor {component['executorLabel']}")
        for dep in task.get("dependentTasks", []):
            if dep not in all_tasks:
                raise ValueError(f"task {name} depends on missing task {dep}")
        declared = component.get("inputDefinitions", {}).get("artifacts", {})
        for key, source in task.get("inputs", {}).get("artifacts", {}).items():
            if key not in declared:
                raise ValueError(f"task {name}: input {key} is not declared by component {component_name}")
            producer = source.get("taskOutputArtifact", {}).get("producerTask")
            if producer is None:
                continue
            if producer not in all_tasks:
                raise ValueError(f"task {name}: input {key} comes from missing task {producer}")
            out_key = source["taskOutputArtifact"]["outputArtifactKey"]
            producer_component = spec["components"][all_tasks[producer]["componentRef"]["name"]]
            if out_key not in producer_component.get("outputDefinitions", {}).get("artifacts", {}):
                raise ValueError(f"task {name}: {producer} has no output {out_key}")
        for key in declared:
            if key not in task.get("inputs", {}).get("artifacts", {}) and not declared[key].get("isOptional"):
                raise ValueError(f"task {name}: required input {key} is not connected")
        container = spec["deploymentSpec"]["executors"][component["executorLabel"]].get("container", {})
        args = container.get("args", [])
        if INPUTS_SPEC_FLAG in args:
            import json

            passed = json.loads(args[args.index(INPUTS_SPEC_FLAG) + 1])
            if passed != component.get("inputDefinitions", {}):
                raise ValueError(f"task {name}: {INPUTS_SPEC_FLAG} differs from the component's inputDefinitions")
    order = topological_order(spec)
    if len(order) != len(all_tasks):
        raise ValueError("the task graph has a cycle")


def topological_order(spec: dict) -> list[str]:
    """Root-DAG tasks in an order that runs producers first (dependentTasks and data inputs; ties by name)."""
    remaining = {name: set(task.get("dependentTasks", [])) | {
        source["taskOutputArtifact"]["producerTask"] for source in task.get("inputs", {}).get("artifacts", {}).values()
        if "taskOutputArtifact" in source} for name, task in tasks(spec).items()}
    order = []
    while True:
        ready = sorted(name for name, deps in remaining.items() if not deps)
        if not ready:
            break
        for name in ready:
            order.append(name)
            del remaining[name]
        for deps in remaining.values():
            deps.difference_update(ready)
    return order
