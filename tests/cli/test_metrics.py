"""``modelkit serve --metrics``'s provider and scrape: a real OpenTelemetry SDK read by the real
Prometheus exporter, parsed back with prometheus_client's own parser (the server on a real port
is tested in ``tests/test_cli.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import metrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

import modelkit
from modelkit.cli._metrics import PrometheusMetrics
from modelkit.errors import InvalidInputError

LABELS = {
    "modelkit_model_name": "iris",
    "modelkit_model_version": "1.0.0",
    "modelkit_model_format": "joblib",
    "modelkit_model_variant": "primary",
}


@pytest.fixture
def prometheus() -> Iterator[PrometheusMetrics]:
    exported = PrometheusMetrics()
    yield exported
    exported.close()


@pytest.fixture
def registry(prometheus: PrometheusMetrics, iris_bundle: Path) -> Iterator[modelkit.Registry]:
    with modelkit.Registry(meter_provider=prometheus.meter_provider) as models:
        models.add("iris", iris_bundle)
        yield models


def samples(prometheus: PrometheusMetrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    body, content_type = prometheus.scrape(None)
    assert content_type.startswith("text/plain; version=0.0.4")
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def test_the_documented_metrics_appear_with_their_attributes_as_labels(
    prometheus: PrometheusMetrics, registry: modelkit.Registry, iris: tuple[object, object]
) -> None:
    frame = iris[0]
    model = registry["iris"]
    for index in range(3):
        model.predict(frame.iloc[index].to_dict())  # type: ignore[attr-defined]
    model.predict_batch(frame.head(40))  # type: ignore[attr-defined]
    with pytest.raises(InvalidInputError):
        model.predict({"sepal length (cm)": "wide"})

    found = samples(prometheus)

    # A series without an attribute has the label empty, as the exporter writes it.
    counts = {
        labels["error_type"]: value
        for labels, value in found["modelkit_prediction_duration_seconds_count"]
        if LABELS.items() <= labels.items()
    }
    assert counts == {"": 4, "modelkit.errors.InvalidInputError": 1}
    sizes = [
        value
        for labels, value in found["modelkit_prediction_batch_size_sum"]
        if LABELS.items() <= labels.items()
    ]
    assert sizes == [43]
    # The buckets are modelkit's advice, from 10 µs up, not the SDK's defaults (from 5 ms up).
    bounds = {labels["le"] for labels, _ in found["modelkit_prediction_duration_seconds_bucket"]}
    assert {"1e-05", "0.0001", "10.0", "+Inf"} <= bounds
    # The load of the bundle was measured too, and the process's own collectors are there.
    assert any(
        labels["modelkit_model_name"] == "iris" and value == 1
        for labels, value in found["modelkit_model_load_duration_seconds_count"]
    )
    assert "process_cpu_seconds_total" in found or "python_gc_objects_collected_total" in found
    (target,) = found["target_info"]
    assert target[0]["service_name"] == "modelkit"


def test_a_scraper_that_asks_for_openmetrics_gets_it(
    prometheus: PrometheusMetrics, registry: modelkit.Registry, iris: tuple[object, object]
) -> None:
    registry["iris"].predict(iris[0].iloc[0].to_dict())  # type: ignore[attr-defined]
    accept = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"

    body, content_type = prometheus.scrape(accept)

    assert content_type.startswith("application/openmetrics-text")
    text = body.decode()
    assert text.endswith("# EOF\n")
    names = {family.name for family in openmetrics_families(text)}
    assert "modelkit_prediction_duration_seconds" in names


def test_the_process_wide_provider_is_left_alone(prometheus: PrometheusMetrics) -> None:
    assert metrics.get_meter_provider() is not prometheus.meter_provider


def test_two_servers_in_one_process_keep_their_metrics_apart(
    prometheus: PrometheusMetrics, registry: modelkit.Registry, iris: tuple[object, object]
) -> None:
    other = PrometheusMetrics()
    try:
        registry["iris"].predict(iris[0].iloc[0].to_dict())  # type: ignore[attr-defined]
        assert "modelkit_prediction_duration_seconds_count" in samples(prometheus)
        assert "modelkit_prediction_duration_seconds_count" not in samples(other)
    finally:
        other.close()
