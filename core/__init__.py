"""The bottom layer of letters: what every part shares (the class labels, the settings, the image checks, the
feedback store, the request log, model folders, warm-up records), importing nothing else of the project.

Importing this package fixes the Keras mode for the whole process. It must happen before TensorFlow is
imported anywhere, so every entry point (runners, tests, the trainer module, the serving and web servers)
imports ``core`` first. TFX 1.16 and TFT 1.16 are built on Keras 2, so the project uses the legacy
``tf_keras`` package as ``tf.keras`` everywhere (``TF_USE_LEGACY_KERAS=1``).
"""
import warnings as _warnings

from core.keras_mode import apply as _apply_keras_mode

_apply_keras_mode()
# google.api_core warns on every import that Python 3.11 support ends in 2027; it says nothing actionable.
_warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.api_core\..*")
