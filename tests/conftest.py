"""Shared fixtures: small models fitted on data scikit-learn ships, saved as bundles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelkit


@pytest.fixture(scope="session")
def iris() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="session")
def iris_classifier(iris: tuple[Any, Any]) -> Any:
    from sklearn.linear_model import LogisticRegression

    X, y = iris
    return LogisticRegression(max_iter=500).fit(X, y)


@pytest.fixture(scope="session")
def iris_bundle(
    tmp_path_factory: pytest.TempPathFactory, iris: tuple[Any, Any], iris_classifier: Any
) -> Path:
    path = tmp_path_factory.mktemp("bundles") / "iris"
    modelkit.save(
        iris_classifier, path, name="iris", version="1.0.0", sample_input=iris[0].head(20)
    )
    return path


@pytest.fixture(scope="session")
def numeric_data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=300, n_features=20, random_state=0)
    return X.astype(np.float32), y


@pytest.fixture(scope="session")
def onnx_classifier(numeric_data: tuple[np.ndarray, np.ndarray]) -> Any:
    """A random forest converted to ONNX (labels and a plain probability tensor)."""
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    X, y = numeric_data
    forest = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(X, y)
    return to_onnx(forest, X[:1], options={id(forest): {"zipmap": False}}, target_opset=17)


@pytest.fixture(scope="session")
def onnx_bundle(
    tmp_path_factory: pytest.TempPathFactory,
    onnx_classifier: Any,
    numeric_data: tuple[np.ndarray, np.ndarray],
) -> Path:
    path = tmp_path_factory.mktemp("bundles") / "forest"
    modelkit.save(
        onnx_classifier, path, name="forest", version="2.0.0", sample_input=numeric_data[0][:20]
    )
    return path
