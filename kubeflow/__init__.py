"""Kubeflow Pipelines (v2) support for the letters pipeline.

* :mod:`kubeflow.spec`          post-compile edits of the KFP v2 pipeline spec (pipeline root, per-component
                                resources, the open-source KFP backend's limits) and a structural check of it.
* :mod:`kubeflow.beam_args`     Beam options for the cluster: in-pod DirectRunner or Dataflow.
* :mod:`kubeflow.image_reference` checks an image reference against Docker's grammar, as Kubernetes reads it.
* :mod:`kubeflow.local_launcher` runs tasks of a compiled spec on this machine the way the KFP launcher runs them
                                in a pod: same command and arguments, ``{{$}}`` filled with an ExecutorInput.

The compiler itself is ``kubeflow_runner.py`` at the top of the repository. This package runs on the machine that
compiles or tests the spec; the pipeline image does not need it.
"""
