"""scikit-learn's default estimators, fitted and round-tripped through a bundle: the zoo the
joblib tests run whole and the skops tests run a sample of."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelkit


def default_estimators(kind: str, names: tuple[str, ...] | None = None) -> list[tuple[str, Any]]:
    """Every ``kind`` (classifier, regressor) with a default constructor, or those in ``names``."""
    from sklearn.utils import all_estimators

    found = []
    for name, cls in all_estimators(type_filter=kind):
        if names is not None and name not in names:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # deprecated estimators still count
                cls()
        except TypeError:  # meta-estimators need a base estimator: no default constructor
            continue
        found.append((name, cls))
    return found


def classification_data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=120, n_features=6, n_informative=4, n_classes=3, random_state=0
    )
    # Non-negative features so that estimators such as the naive Bayes variants accept them.
    return np.abs(X), y


def regression_data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_regression

    X, y = make_regression(n_samples=120, n_features=6, random_state=0)
    # Positive targets, so that Poisson and Gamma regressors fit too.
    return np.abs(X), np.abs(y) + 1.0


def fit(cls: type, X: np.ndarray, y: np.ndarray) -> tuple[Any, np.ndarray]:
    """Fit with defaults on ``X``; multi-output and one-feature estimators get the data they
    need (two targets, or ``X``'s first column)."""
    attempts = [(X, y), (X, np.column_stack([y, y[::-1]])), (X[:, :1], y)]
    errors = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence and similar warnings of default settings
        for features, target in attempts:
            try:
                return cls().fit(features, target), features
            except Exception as exc:  # noqa: BLE001 - try the next shape of data
                errors.append(str(exc))
    pytest.skip(f"{cls.__name__}() cannot fit with its defaults: {errors[0]}")


def _reference(estimator: Any, method: str, X: np.ndarray, path: Path) -> tuple[np.ndarray, bool]:
    """The estimator's own answer, and whether it is bit-stable: the same on a second call and
    after a plain joblib round trip. A few estimators differ in the last bits there, because
    BLAS kernels depend on memory alignment; those are compared to a tight tolerance."""
    import joblib

    first = getattr(estimator, method)(X)
    joblib.dump(estimator, path)
    copy = getattr(joblib.load(path), method)(X)
    is_stable = np.array_equal(first, getattr(estimator, method)(X)) and np.array_equal(first, copy)
    return first, bool(is_stable)


def _assert_same(actual: np.ndarray, expected: np.ndarray, *, is_deterministic: bool) -> None:
    if is_deterministic:
        np.testing.assert_array_equal(actual, expected)
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-12)


def load_trusting_its_types(path: Path) -> modelkit.Model[Any, Any]:
    """A bundle the test saved itself, loaded trusting the types it holds: a skops bundle is
    refused first, naming them, unless skops trusts them all by default."""
    try:
        return modelkit.load(path)
    except modelkit.BundleError as error:
        if not error.untrusted_types:
            raise
        return modelkit.load(path, trusted_types=error.untrusted_types)


def assert_round_trip(
    estimator: Any, X: np.ndarray, path: Path, *, task: str, format: str = "joblib"
) -> None:
    """Saved in ``format`` and loaded back, the estimator answers exactly as itself."""
    modelkit.save(estimator, path, name="m", version="1", format=format, sample_input=X[:10])
    field = "label" if task == "classification" else "value"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some estimators warn on every predict
        model = load_trusting_its_types(path)
        batch = model.predict_batch(X)
        singles = [getattr(model.predict(row), field) for row in X[:5]]
        expected, is_deterministic = _reference(estimator, "predict", X, path.with_suffix(".a"))
        # One row goes through the estimator as a one-row matrix, as predict() sends it.
        expected_singles = [estimator.predict(X[i : i + 1])[0] for i in range(5)]
        has_probabilities = model.signature.outputs.has_probabilities
        if has_probabilities:
            probabilities, same = _reference(estimator, "predict_proba", X, path.with_suffix(".b"))
    assert model.format == format
    assert model.signature.outputs.task == task
    _assert_same(batch[field], expected, is_deterministic=is_deterministic)
    _assert_same(np.array(singles), np.array(expected_singles), is_deterministic=is_deterministic)
    if has_probabilities:
        _assert_same(batch["probabilities"], probabilities, is_deterministic=same)
