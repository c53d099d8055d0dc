"""The default format: a scikit-learn pipeline saved with joblib, against the pipeline itself.

The raw side is what an application without modelkit calls: ``predict_proba`` on a 1-row
DataFrame for one record, on the whole DataFrame for a batch.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import modelkit

PIPELINES = ("logistic regression", "random forest", "gradient boosting")


@pytest.fixture(params=PIPELINES, ids=lambda name: name.replace(" ", "-"))
def pipeline(
    request: pytest.FixtureRequest,
    pipelines: dict[str, Any],
    joblib_models: dict[str, modelkit.Model[Any, Any]],
) -> tuple[str, Any, modelkit.Model[Any, Any]]:
    """One pipeline: its name, the fitted scikit-learn object, and its loaded joblib bundle."""
    name: str = request.param
    return name, pipelines[name], joblib_models[name]


def test_predict_record(
    benchmark: BenchmarkFixture,
    side: str,
    pipeline: tuple[str, Any, modelkit.Model[Any, Any]],
    record_pool: list[tuple[dict[str, Any], Any]],
) -> None:
    """``predict(record)`` against ``predict_proba`` on the record's 1-row DataFrame."""
    name, fitted, model = pipeline
    benchmark.group = f"joblib predict(record), {name} pipeline"
    # Both sides cycle through the same pool: each call gets other values, as in a service.
    if side == "raw":
        frames = itertools.cycle([frame for _, frame in record_pool])
        predict_proba = fitted.predict_proba
        benchmark(lambda: predict_proba(next(frames)))
    else:
        records = itertools.cycle([record for record, _ in record_pool])
        predict = model.predict
        benchmark(lambda: predict(next(records)))


def test_predict_batch(
    benchmark: BenchmarkFixture,
    side: str,
    pipelines: dict[str, Any],
    joblib_models: dict[str, modelkit.Model[Any, Any]],
    fresh: Any,
) -> None:
    """``predict_batch(frame).to_pandas()`` against ``predict_proba(frame)`` on 10,000 rows."""
    benchmark.group = "joblib predict_batch(10k-row DataFrame), logistic regression pipeline"
    if side == "raw":
        predict_proba = pipelines["logistic regression"].predict_proba
        benchmark(lambda: predict_proba(fresh))
    else:
        predict_batch = joblib_models["logistic regression"].predict_batch
        benchmark(lambda: predict_batch(fresh).to_pandas())
