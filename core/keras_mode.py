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
