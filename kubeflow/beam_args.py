"""Beam options for the Beam-powered components (ImageExampleGen, StatisticsGen, Transform, Evaluator)
when the pipeline runs on a cluster (every executor gets the options; the others ignore them).

* In the pod (default): Beam's DirectRunner, as local runs (``core.configs.beam_pipeline_args``).
* Dataflow (``dataflow_args``): the Beam work runs on Dataflow workers started from the same image built with
  ``--target dataflow-worker`` (the Beam SDK boot entrypoint over the same installed project), so the workers
  have the project's code (the image ExampleGen's transforms, ``models.preprocessing``) and the same Keras mode.
* Anything else: pass Beam options through as they are (``--beam-arg`` on the runner's command line), each named
  whole as Beam spells it (``unread_option``); with Dataflow, not those it sets from the runner's own flags
  (``FROM_FLAGS``), and no runner but these two (``runner_is``).
"""
from __future__ import annotations

import functools


def dataflow_worker_image(image: str) -> str:
    """The Dataflow worker image next to the pipeline image: ``repo/letters:1.2`` → ``repo/letters:1.2-dataflow``."""
    name, _, digest = image.partition("@")
    if digest:
        raise ValueError(f"{image}: give --dataflow-image explicitly for an image pinned by digest")
    last = name.rsplit("/", 1)[-1]
    return f"{name}-dataflow" if ":" in last else f"{name}:latest-dataflow"


# The Beam options ``dataflow_args`` sets from the runner's own flags. Given in a --beam-arg too, one of them would
# override the flag's (Beam takes the last) or, the flag not given, stand in for it unchecked: it is refused, naming the
# flag. Written with dashes (--temp-location), Beam would drop it as unknown: refused alike.
FROM_FLAGS = {"project": "--project", "region": "--region", "temp_location": "--temp-location",
              "sdk_container_image": "--dataflow-image", "max_num_workers": "--max-num-workers",
              "service_account_email": "--service-account"}


def option_name(arg: str) -> str | None:
    """The Beam option an argument names (``--temp_location=gs://b/t`` → ``temp_location``), or None for a value."""
    return arg[2:].partition("=")[0].replace("-", "_") if arg.startswith("--") else None


@functools.cache
def beam_options() -> frozenset[str]:
    """Every option string of Beam's pipeline options (``--runner``, ``--num_workers``, …), as
    ``PipelineOptions.get_all_options`` builds its parser: each subclass's ``_add_argparse_args``; not ``--help``."""
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    parser = _BeamArgumentParser(add_help=False)
    for cls in {str(cls): cls for cls in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)  # pylint: disable=protected-access
    return frozenset(option for action in parser._actions for option in action.option_strings)


def unread_option(args: list[str], skipped=()) -> str | None:
    """Why Beam would not read one of ``args`` (Beam arguments, each given as ``--beam-arg=ARG``) as the option it
    names, or None: a name Beam has not is none of its options (a dashed spelling of one, ``--num-workers``, is
    dropped: ``Discarding unparseable args``); a prefix of one is read by argparse as that option
    (``--run=DataflowRunner`` as ``--runner``, in the view of the options that holds it). Values (an argument not
    starting with ``--``) and the options named in ``skipped`` (with underscores) are not looked at."""
    known = beam_options()
    for arg in args:
        name = option_name(arg)
        if name is None or name in skipped:
            continue
        written = arg.partition("=")[0]
        if written in known:
            continue
        if name and f"--{name}" in known:
            return f"--beam-arg={arg}: Beam's option is --{name} (it drops {written} as unparseable)"
        read_as = sorted(option for option in known if written != "--" and option.startswith(written))
        if read_as:
            return (f"--beam-arg={arg}: Beam reads {written} as the option it abbreviates ({' or '.join(read_as)}); "
                    "write it whole")
        return f"--beam-arg={arg}: {written} is none of Beam's pipeline options"
    return None


def runners(args: list[str]) -> list[str]:
    """The ``--runner`` values among Beam arguments (``--runner=X``, or ``--runner`` then ``X``)."""
    return [arg.partition("=")[2] if "=" in arg else (args[i + 1] if i + 1 < len(args) else "")
            for i, arg in enumerate(args) if option_name(arg) == "runner"]


def runner_is(value: str, runner: str) -> bool:
    """Whether Beam takes the --runner ``value`` for the known ``runner`` (``DirectRunner``): as
    ``apache_beam.runners.runner.create_runner`` reads it, its name in any case with or without ``Runner``, or its
    class's path."""
    return value.lower() in (runner.lower(), runner.lower().removesuffix("runner")) or value == _PATHS[runner]


_PATHS = {"DirectRunner": "apache_beam.runners.direct.direct_runner.DirectRunner",
          "DataflowRunner": "apache_beam.runners.dataflow.dataflow_runner.DataflowRunner"}


def dataflow_args(project: str, region: str, temp_location: str, worker_image: str,
                  max_num_workers: int | None = None, service_account: str | None = None,
                  extra: list[str] | None = None) -> list[str]:
    for arg in extra or []:
        flag = FROM_FLAGS.get(option_name(arg))
        if flag:
            raise ValueError(f"--beam-arg={arg}: give {flag} instead (--dataflow sets --{option_name(arg)} from it)")
    missing = [flag for flag, value in (("--project", project), ("--region", region),
                                        ("--temp-location gs://…", temp_location)) if not value]
    if missing:
        raise ValueError(f"--dataflow needs {', '.join(missing[:-1])}{' and ' if len(missing) > 1 else ''}"
                         f"{missing[-1]}")
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
