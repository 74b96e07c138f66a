"""The pipeline definition (``create_pipeline``) and the commands that run around it: data generation, the run
summary, releases, evaluation and batch predictions, the demo launcher."""
import core  # noqa: F401  (fixes the Keras mode before TensorFlow loads)
