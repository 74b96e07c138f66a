"""Distribution checks with TFDV: statistics of a window of served traffic validated against a schema whose
comparators carry the thresholds (core/configs.py ``monitor_*``).

* predicted classes against the eval split's labels (StatisticsGen's ``label_name``): a **drift** comparator
  (Jensen-Shannon divergence and L-infinity distance) with the eval statistics as the previous statistics;
* image features (:mod:`.image_features`) against the same features of the training split: a **skew**
  comparator (training statistics vs serving statistics): Jensen-Shannon divergence on the judged numeric features
  (``image_features.JUDGED``: aspect, ink share, mean intensity; the crop's width and height are shown, not
  judged), L-infinity distance on the image format. ``source`` is reported, not compared: training data are never
  drawn on the web client's pad.
"""
from __future__ import annotations

import dataclasses

import pandas as pd
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2

from core import configs
from core.configs import Config
from pipeline.monitor import image_features

_MEASURES = {anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE: "jensen_shannon",
             anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY: "l_infinity"}


@dataclasses.dataclass
class Comparison:
    kind: str                                        # label_drift | input_skew
    measurements: list[dict] = dataclasses.field(default_factory=list)   # feature, measure, value, threshold
    anomalies: dict = dataclasses.field(default_factory=dict)            # feature -> TFDV's description

    @property
    def crossed(self) -> bool:
        return any(m["crossed"] for m in self.measurements)

    def to_json(self) -> dict:
        return {"kind": self.kind, "crossed": self.crossed, "measurements": self.measurements,
                "anomalies": self.anomalies}


def statistics(rows: list[dict], columns) -> "tfdv.DatasetFeatureStatisticsList":
    """TFDV statistics of a list of feature dicts (missing numeric values are NaN)."""
    return column_statistics({column: [row.get(column) for row in rows] for column in columns})


def column_statistics(columns: dict) -> "tfdv.DatasetFeatureStatisticsList":
    """TFDV statistics of feature columns: name -> its values, a row each (a missing numeric value is None or
    NaN)."""
    frame = pd.DataFrame({column: pd.Series(values) for column, values in columns.items()})
    for column in columns:
        if column in image_features.NUMERIC:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return tfdv.generate_statistics_from_dataframe(frame)


def label_statistics(class_names: list[str]):
    return statistics([{configs.LABEL_NAME_KEY: name} for name in class_names], [configs.LABEL_NAME_KEY])


def feature_statistics(rows: list[dict]):
    return statistics(rows, image_features.NUMERIC + image_features.CATEGORICAL)


def label_schema(config: Config) -> schema_pb2.Schema:
    schema = schema_pb2.Schema()
    feature = schema.feature.add(name=configs.LABEL_NAME_KEY, type=schema_pb2.BYTES)
    feature.drift_comparator.jensen_shannon_divergence.threshold = config.monitor_label_js
    feature.drift_comparator.infinity_norm.threshold = config.monitor_label_linf
    return schema


def feature_schema(training_statistics, config: Config) -> schema_pb2.Schema:
    """Inferred from the training features, open domains (a new format is drift to measure, not a type error),
    and a skew comparator on every compared feature."""
    schema = tfdv.infer_schema(training_statistics)
    del schema.string_domain[:]
    for feature in schema.feature:
        feature.ClearField("domain")
        feature.ClearField("presence")
        if feature.name in image_features.JUDGED:
            feature.skew_comparator.jensen_shannon_divergence.threshold = config.monitor_feature_js
        elif feature.name == "format":
            feature.skew_comparator.infinity_norm.threshold = config.monitor_feature_linf
    return schema


def _measurements(anomalies, skew: bool) -> list[dict]:
    found = []
    for info in anomalies.drift_skew_info:
        feature = ".".join(info.path.step)
        for m in (info.skew_measurements if skew else info.drift_measurements):
            found.append({"feature": feature, "measure": _MEASURES.get(m.type, str(m.type)),
                          "value": round(m.value, 6), "threshold": m.threshold, "crossed": m.value > m.threshold})
    return sorted(found, key=lambda m: (m["feature"], m["measure"]))


def _comparison(kind: str, anomalies, skew: bool) -> Comparison:
    return Comparison(kind=kind, measurements=_measurements(anomalies, skew),
                      anomalies={name: info.description for name, info in sorted(anomalies.anomaly_info.items())})


def compare_labels(predicted: list[str], eval_statistics, config: Config) -> Comparison:
    anomalies = tfdv.validate_statistics(label_statistics(predicted), label_schema(config),
                                         previous_statistics=eval_statistics)
    return _comparison("label_drift", anomalies, skew=False)


def compare_features(columns: dict, training_statistics, schema: schema_pb2.Schema) -> Comparison:
    """Served image features (columns of :func:`column_statistics`) against the training ones."""
    anomalies = tfdv.validate_statistics(training_statistics, schema,
                                         serving_statistics=column_statistics(columns))
    return _comparison("input_skew", anomalies, skew=True)


def category_shares(stats, feature_name: str) -> dict[str, float]:
    """Each value's share of a categorical feature in TFDV statistics (from its rank histogram)."""
    for dataset in stats.datasets:
        for feature in dataset.features:
            if ".".join(feature.path.step) == feature_name or feature.name == feature_name:
                counts = {b.label: b.sample_count for b in feature.string_stats.rank_histogram.buckets}
                total = sum(counts.values()) or 1
                return {name: count / total for name, count in counts.items()}
    return {}
