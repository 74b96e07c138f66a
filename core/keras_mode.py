"""The one place that decides which Keras ``tf.keras`` is.

TFT flips ``TF_USE_LEGACY_KERAS`` when it is imported, so the choice depends on import order unless it is
set explicitly before TensorFlow loads. The project pins Keras 2 (``tf_keras``) for every process: local
runs, tests, Beam workers and the Kubeflow image (the Dockerfile sets the same variables).
"""
import os

ENV = {
    "TF_USE_LEGACY_KERAS": "1",
    # TensorFlow's C++ INFO/WARNING chatter hides the pipeline's own progress.
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


def apply() -> None:
    """Sets the Keras mode for this process (and its children); refuses a conflicting setting."""
    for key, value in ENV.items():
        os.environ.setdefault(key, value)
    if os.environ["TF_USE_LEGACY_KERAS"] != ENV["TF_USE_LEGACY_KERAS"]:
        raise RuntimeError(
            f"TF_USE_LEGACY_KERAS={os.environ['TF_USE_LEGACY_KERAS']!r} is set in the environment; "
            f"this project runs with TF_USE_LEGACY_KERAS={ENV['TF_USE_LEGACY_KERAS']} (tf_keras).")


def skip_autograph_of_keras() -> None:
    """Keeps AutoGraph out of Keras' own code, as it was when Keras 2 lived in TensorFlow.

    AutoGraph rewrites the Python that a ``tf.function`` calls, except in the libraries on the list in
    ``tensorflow/python/autograph/core/config.py``; that list names ``keras`` but not ``tf_keras``. With the
    legacy package, the first predict, training step or export of every model re-wrote about 90 of Keras'
    functions: 15-35 s per process on 2 cores, against 0.4-2 s with this rule. Call it once TensorFlow is
    imported (``models`` does); TensorFlow's own tests extend the list the same way.
    """
    from tensorflow.python.autograph.core import config

    if not any(isinstance(rule, config.DoNotConvert) and rule.matches("tf_keras") for rule in config.CONVERSION_RULES):
        config.CONVERSION_RULES = (*config.CONVERSION_RULES, config.DoNotConvert("tf_keras"))
