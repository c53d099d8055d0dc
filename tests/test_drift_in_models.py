"""Drift statistics through the Model interface: profiled at save, counted on every call."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import modelkit


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    path = tmp_path_factory.mktemp("drift") / "diabetes"
    modelkit.save(
        Ridge().fit(X, y), path, name="diabetes", version="1", sample_input=X.head(5), reference=X
    )
    return path, X


def test_save_stores_a_profile_of_the_reference(diabetes: tuple[Path, Any]) -> None:
    path, X = diabetes
    manifest = modelkit.load(path).manifest
    assert manifest is not None
    assert manifest.profile is not None
    assert set(manifest.profile["columns"]) == set(X.columns)  # type: ignore[arg-type]


def test_same_distribution_is_stable(diabetes: tuple[Path, Any]) -> None:
    path, X = diabetes
    model = modelkit.load(path, drift=True)
    model.predict_batch(X)
    report = model.drift()
    assert report.count == len(X)
    assert report.drifted == []


def test_shifted_feature_is_significant_and_single_records_count(
    diabetes: tuple[Path, Any],
) -> None:
    path, X = diabetes
    model = modelkit.load(path, drift=True)
    shifted = X.assign(bmi=X["bmi"] + 3 * X["bmi"].std())
    for record in shifted.to_dict("records"):
        model.predict(record)
    report = model.drift()
    assert report.count == len(X)
    assert report["bmi"].status == "significant"
    assert "age" not in report.drifted


def test_drift_is_off_unless_asked(diabetes: tuple[Path, Any]) -> None:
    with pytest.raises(modelkit.ModelkitError, match="drift=True"):
        modelkit.load(diabetes[0]).drift()


def test_bundle_without_a_profile_cannot_watch_drift(tmp_path: Path, onnx_classifier: Any) -> None:
    modelkit.save(onnx_classifier, tmp_path / "m", name="m", version="1")
    with pytest.raises(modelkit.BundleError, match=r"no tabular signature|no reference profile"):
        modelkit.load(tmp_path / "m", drift=True)


def test_drift_scores_are_exported_as_a_gauge(diabetes: tuple[Path, Any]) -> None:
    path, X = diabetes
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        model = modelkit.load(path, drift=True, meter_provider=provider)
        model.predict_batch(X)
        data = reader.get_metrics_data()
        points = [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == "modelkit.drift.score"
            for point in metric.data.data_points
        ]
    finally:
        provider.shutdown()
    features = {p.attributes["modelkit.drift.feature"] for p in points}
    assert set(X.columns) <= features
    assert all(p.attributes["modelkit.model.name"] == "diabetes" for p in points)
    assert all(np.isfinite(p.value) for p in points)


def test_reset_drift_starts_a_new_window(diabetes: tuple[Path, Any]) -> None:
    path, X = diabetes
    model = modelkit.load(path, drift=True)
    model.predict_batch(X)
    model.reset_drift()
    assert model.drift().count == 0


def test_the_drift_gauge_skips_a_model_dropped_while_it_reads(diabetes: tuple[Path, Any]) -> None:
    # The gauge's callback runs on the metric reader's thread while a registry may drop a model:
    # an observer it already holds whose model is gone is skipped, not an error that would lose
    # every other model's scores.
    from modelkit import telemetry
    from modelkit._model import observer_of

    path, X = diabetes
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        dropped = modelkit.load(path, drift=True, meter_provider=provider)
        kept = modelkit.load(path, drift=True, meter_provider=provider)
        kept.predict_batch(X)
        observer_of(dropped).set_variant("primary")  # its attributes are built on next read
        held = list(telemetry._watched)  # what the callback iterates, taken before the drop
        del dropped
        gc.collect()
        tel = telemetry.for_providers(None, provider)
        observations = list(tel._observe_drift(None))  # type: ignore[arg-type]
        assert held
    finally:
        provider.shutdown()
    assert observations
    assert {o.attributes["modelkit.model.name"] for o in observations} == {"diabetes"}
