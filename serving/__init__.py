"""Serving for the letters model: configs for the real TF Serving, and an embedded TF Serving-compatible
REST and gRPC server (``python -m serving``) for laptops, CI and tests. See serving/README.md.

Importing this package does not import TensorFlow; entry points import ``core`` first (it fixes the Keras mode
before TensorFlow loads).
"""
