"""Monitoring of the served model (``python -m pipeline.monitor``, ``letters-monitor``): request logs, feedback,
ML Metadata and server metrics → report.html, monitor.json, Prometheus gauges and an exit status.

request_logs (read PredictionLog TFRecords) · image_features (what each image looks like) · reference (the
blessed model's eval statistics, metrics and training images from ML Metadata) · drift (TFDV comparisons) ·
live_accuracy (feedback, Wilson intervals) · server_metrics (Prometheus) · windows · checks (one pass, alarms) ·
charts and report (outputs) · retrain (--retrain-when) · cli.
"""
