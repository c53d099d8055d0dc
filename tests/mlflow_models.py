"""MLflow model directories written by real MLflow (``mlflow-skinny``), for the import tests.

A plain module, not a conftest: the tests import what they use. Importing MLflow takes about two
seconds, so each test module builds its directories once, through a module-scoped fixture.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

NUMBERS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]
WORDS = ["island", "sex"]
# Rows 3 and 8 have gaps: every column missing, then sex alone.
EXAMPLE_ROWS = [0, 1, 2, 3, 8, 9, 10, 150, 300]


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """MLflow's own warnings, which pytest's filterwarnings=error would raise."""
    with warnings.catch_warnings():
        # Issued when mlflow.pyfunc is imported (MLflow infers a schema of its own types).
        warnings.filterwarnings("ignore", message=r"(?s).*Any type hint is inferred as AnyType")
        # infer_signature's hint about integer columns, which cannot hold a missing value.
        warnings.filterwarnings("ignore", message=r"(?s).*Inferred schema contains integer")
        # mlflow.models.utils compares a DataFrame example's columns with a range (pandas 3).
        warnings.filterwarnings("ignore", message="Operation with range is deprecated")
        yield


def import_mlflow_module() -> ModuleType:
    """``mlflow``, with the flavors the tests use, or a skip when it is not installed."""
    pytest.importorskip("mlflow")
    with quiet_mlflow():
        import mlflow
        import mlflow.onnx
        import mlflow.pyfunc
        import mlflow.sklearn
    return mlflow


def penguins() -> tuple[Any, Any]:
    """The Palmer penguins: numbers and strings with gaps, an integer year; species to predict."""
    from palmerpenguins import load_penguins

    frame = load_penguins()
    return frame.drop(columns="species"), frame["species"]


def penguin_pipeline(X: Any, y: Any) -> Any:
    """A ColumnTransformer that imputes and scales numbers and one-hot encodes strings."""
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = make_column_transformer(
        (make_pipeline(SimpleImputer(), StandardScaler()), NUMBERS),
        (
            make_pipeline(
                SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
            ),
            WORDS,
        ),
    )
    return make_pipeline(columns, LogisticRegression(max_iter=1000)).fit(X, y)


def save_sklearn(
    mlflow: ModuleType, model: Any, X: Any, path: Path, serialization: str, **options: Any
) -> Path:
    """``mlflow.sklearn.save_model`` with a signature inferred from ``X`` and an input example.

    ``pip_requirements`` is given so that MLflow does not infer it (a child process per save).
    """
    from mlflow.models import infer_signature

    with quiet_mlflow():
        signature = infer_signature(X, model.predict(X))
        mlflow.sklearn.save_model(
            model,
            str(path),
            signature=signature,
            input_example=X.iloc[EXAMPLE_ROWS],
            serialization_format=serialization,
            pip_requirements=["scikit-learn"],
            **options,
        )
    return path


def save_onnx(mlflow: ModuleType, path: Path) -> tuple[Path, np.ndarray]:
    """An ONNX regressor over float32[N, 3], saved by ``mlflow.onnx.save_model`` with a tensor
    signature and example; and rows to predict."""
    from mlflow.models import infer_signature
    from skl2onnx import to_onnx
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3)).astype(np.float32)
    y = X @ np.array([1.5, -2.0, 0.5], dtype=np.float32) + 1.0
    graph = to_onnx(LinearRegression().fit(X, y), X[:1], target_opset=17)
    with quiet_mlflow():
        signature = infer_signature(X, y.reshape(-1, 1))
        mlflow.onnx.save_model(
            graph,
            str(path),
            signature=signature,
            input_example=X[:5],
            pip_requirements=["onnx"],
        )
    return path, X
