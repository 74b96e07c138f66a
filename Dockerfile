# The letters pipeline image for Kubeflow Pipelines v2: the project and its pinned stack, the same Keras mode as
# local runs, and TFX's KFP v2 container entrypoint. kubeflow_runner.py compiles specs that run this image.
#
#   docker build -t REGISTRY/letters:TAG .                                    # pipeline image (default target)
#   docker build --target dataflow-worker -t REGISTRY/letters:TAG-dataflow .  # Beam workers for --dataflow
#
# Base image: python:3.11-slim-bookworm. The project runs on exactly Python 3.11 (pyproject.toml, Makefile)
# and installs every library from requirements/constraints.txt, as local runs and CI do, so the image holds the
# same versions that were tested. The official tensorflow/tensorflow image would bring its own Python and
# TensorFlow build (which pip would then replace to honour the pins) and a much larger base for nothing the
# pipeline uses: training is a small convolutional network on CPU. Debian slim already has the C++ runtime TensorFlow needs;
# g++ is there only while the stack installs (pyfarmhash 0.3.2, TFDV's pin, has no wheel and is compiled).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG BEAM_SDK_IMAGE=apache/beam_python3.11_sdk:2.60.0

FROM ${BEAM_SDK_IMAGE} AS beam-sdk

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Keras mode: the values of core/keras_mode.py's ENV (tests/kubeflow checks they are equal). TFX, TFT and
# the trainer then use tf_keras (Keras 2) as tf.keras in every process of the image, whatever imports first.
ENV TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /opt/letters

# 1. The pinned stack (a layer of its own: it changes only with pyproject.toml or the constraints).
#    tfx 1.16's metadata says Python < 3.11 although every library ships cp311 wheels: --ignore-requires-python.
#    As the Makefile's venv: pip, setuptools and wheel pinned first, and PIP_CONSTRAINT for what pip builds in
#    isolation (pyfarmhash, the project), which -c does not reach: else built with the newest setuptools and wheel.
COPY pyproject.toml README.md ./
COPY requirements/constraints.txt requirements/constraints.txt
RUN apt-get update && apt-get install -y --no-install-recommends g++ \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install --ignore-requires-python -c requirements/constraints.txt pip setuptools wheel \
 && PIP_CONSTRAINT=/opt/letters/requirements/constraints.txt \
    pip install --ignore-requires-python -c requirements/constraints.txt -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt \
 && apt-get purge -y --auto-remove g++ && rm -rf /var/lib/apt/lists/*

# 2. The project: Transform and Trainer name their code by module path (models.preprocessing.preprocessing_fn,
#    models.trainer.run_fn) and the custom executors live in components/, so the packages are installed.
COPY core core
COPY models models
COPY serving serving
COPY components components
COPY pipeline pipeline
COPY web web
COPY kubeflow kubeflow
COPY local_runner.py kubeflow_runner.py ./
RUN PIP_CONSTRAINT=/opt/letters/requirements/constraints.txt \
    pip install --ignore-requires-python -c requirements/constraints.txt --no-deps . \
 && cd / && python -c "import core, pipeline, components.image_example_gen, components.atomic_pusher, \
models.preprocessing, models.trainer, pipeline.monitor.cli, \
tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"

# The KFP launcher writes the local copies of artifacts under /gcs, /s3 or /minio and its metadata under
# /tmp/kfp_outputs; they are made writable for the non-root user the pipeline runs as.
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin letters \
 && mkdir -p /gcs /s3 /minio /tmp/kfp_outputs \
 && chown letters /gcs /s3 /minio /tmp/kfp_outputs
WORKDIR /home/letters

# Dataflow workers (kubeflow_runner.py --dataflow passes --sdk_container_image=<this image>): the same project
# and environment, started by the Beam SDK harness of the same Beam version.
FROM base AS dataflow-worker
COPY --from=beam-sdk /opt/apache/beam /opt/apache/beam
ENTRYPOINT ["/opt/apache/beam/boot"]

# The monitor (serving/deploy/k8s/monitor/monitor-cronjob.yaml) runs in the pipeline image with its own command:
# `letters-monitor` (python -m pipeline.monitor), installed above with the project's other commands.

# The pipeline image (default target). The compiled spec names the command itself; the ENTRYPOINT is the same
# so that `docker run IMAGE --executor_class_path … --json_serialized_invocation_args …` works too.
FROM base AS pipeline
USER 10001
ENTRYPOINT ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
