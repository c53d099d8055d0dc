"""Watching models in production: prediction logs and drift statistics.

- :class:`PredictionLogger` is a hook that samples records and outputs, redacts fields, and
  writes JSON lines to a ``logging`` logger or any callable, off the request's path.
- Drift statistics compare what a model receives and predicts with its reference data, profiled
  when the bundle was saved: load with ``modelkit.load(path, drift=True)``, then call
  ``model.drift()`` for a :class:`DriftReport` (also exported as the ``modelkit.drift.score``
  OpenTelemetry gauge).
"""

from ._drift import (
    MIN_RECORDS,
    MODERATE_THRESHOLD,
    SIGNIFICANT_THRESHOLD,
    DriftReport,
    DriftStatus,
    FeatureDrift,
)
from ._prediction_log import PredictionLogger

__all__ = [
    "MIN_RECORDS",
    "MODERATE_THRESHOLD",
    "SIGNIFICANT_THRESHOLD",
    "DriftReport",
    "DriftStatus",
    "FeatureDrift",
    "PredictionLogger",
]
