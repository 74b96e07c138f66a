"""The letters web client: a page to draw or upload a letter, and a small backend in front of TF Serving.

The backend (the standard library's HTTP server, no TensorFlow) serves the static page, validates uploads with :mod:`core.image_io`,
forwards predictions to TF Serving's REST API (stable/canary routing by version label) and stores user
feedback durably (:mod:`core.feedback`). Start it with ``letters-web``; see ``web/README.md``.
"""
import core  # noqa: F401  (first: fixes the Keras mode for anything that later loads TensorFlow)
