"""The ONNX format, against onnxruntime code written by hand.

The raw side calls ``session.run`` with arrays built from the same input, in
``bench_speed.py``'s hand-written helpers, on a session with modelkit's default options.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_speed
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import modelkit


@pytest.fixture(scope="session")
def linear(bundles: Path) -> tuple[Path, list[list[float]]]:
    """A logistic regression on 20 floats saved as ONNX, and a pool of records as lists."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(
        n_samples=2000, n_features=bench_speed.LINEAR_FEATURES, random_state=0
    )
    path = bundles / "linear-onnx"
    estimator = LogisticRegression(max_iter=1000).fit(X, y)
    modelkit.save(estimator, path, name="linear", version="1", format="onnx", sample_input=X)
    return path, [list(map(float, row)) for row in X[: bench_speed.RECORD_POOL]]


@pytest.fixture(scope="session")
def converted(pipelines: dict[str, Any], sample_input: Any, bundles: Path) -> Path:
    """The gradient boosting pipeline converted to ONNX (bench_speed.py's model)."""
    path = bundles / "gradient_boosting-onnx"
    modelkit.save(
        pipelines["gradient boosting"],
        path,
        name="gradient_boosting",
        version="1",
        format="onnx",
        sample_input=sample_input,
    )
    return path


def test_linear_predict(
    benchmark: BenchmarkFixture,
    side: str,
    linear: tuple[Path, list[list[float]]],
    ort_session: Callable[[Path | bytes], Any],
) -> None:
    """``predict(list of 20 floats)`` against ``session.run`` on the bundle's own graph."""
    benchmark.group = "onnx predict(list), 20-float logistic regression"
    path, pool = linear
    records = itertools.cycle(pool)
    if side == "raw":
        predict = bench_speed.raw_linear(ort_session(path / "artifacts" / "model.onnx"))
    else:
        predict = modelkit.load(path).predict
    benchmark(lambda: predict(next(records)))


@pytest.fixture(scope="session")
def hand_written(
    pipelines: dict[str, Any], ort_session: Callable[[Path | bytes], Any]
) -> Callable[[dict[str, Any]], Any]:
    """Hand-written onnxruntime code on skl2onnx's default layout of the same pipeline (one
    ``[1, 1]`` input per column)."""
    graph = bench_speed.default_layout_graph(pipelines["gradient boosting"])
    return bench_speed.raw_record(ort_session(graph))


def test_pipeline_predict(
    benchmark: BenchmarkFixture,
    side: str,
    converted: Path,
    hand_written: Callable[[dict[str, Any]], Any],
    record_pool: list[tuple[dict[str, Any], Any]],
) -> None:
    """``predict(dict)`` against hand-written onnxruntime on skl2onnx's default layout."""
    benchmark.group = "onnx predict(dict), gradient boosting pipeline"
    records = itertools.cycle([record for record, _ in record_pool])
    predict = hand_written if side == "raw" else modelkit.load(converted).predict
    benchmark(lambda: predict(next(records)))
