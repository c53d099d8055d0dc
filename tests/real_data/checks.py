"""What a bundle of a real pipeline must do, shared by the tests and the survey.

Each ``check_*`` function raises ``AssertionError`` saying which rows disagree, and lets any
other exception through: an error modelkit raises on data scikit-learn accepts is a failure too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import modelkit
from tests.real_data import pipelines
from tests.real_data.tables import RealTable

SAMPLE_ROWS = 100
"""``sample_input=X.head(100)``, as the issue's user saves."""
RECORD_ROWS = 150
"""Rows checked one record at a time, those with a missing value first."""
TIE = 1e-6
"""Rows whose two largest scikit-learn probabilities are this close sit on a tie."""
LAST_BITS = 1e-12
"""How far a joblib bundle's probabilities and values may be from scikit-learn's, relatively."""
PROBABILITY_TOLERANCE = 1e-4
"""How far a converted classifier's probabilities may be from scikit-learn's."""
VALUE_TOLERANCE = 1e-4
"""A converted regressor's value may differ by this, relative to ``max(1, |value|)``."""
SHOWN = 5
EMPTY_FEATURES_WARNING = "Skipping features without any observed values"
"""What SimpleImputer warns, at fit and at every transform, about a column that was all missing."""

PLAIN_TYPES = (str, int, float, bool)


@dataclass(frozen=True)
class Expected:
    """scikit-learn's answers on the whole table."""

    predictions: np.ndarray
    probabilities: np.ndarray | None
    classes: list[Any] | None

    @classmethod
    def of(cls, pipeline: Any, X: Any) -> Expected:
        predictions = np.asarray(pipeline.predict(X))
        if not hasattr(pipeline, "classes_"):
            return cls(predictions, None, None)
        return cls(predictions, np.asarray(pipeline.predict_proba(X)), list(pipeline.classes_))

    def ties(self) -> np.ndarray:
        """Rows where the model itself cannot choose between its two likeliest classes."""
        if self.probabilities is None or self.probabilities.shape[1] < 2:
            return np.zeros(len(self.predictions), dtype=bool)
        top = np.sort(self.probabilities, axis=1)[:, -2:]
        return np.asarray(top[:, 1] - top[:, 0] <= TIE)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One OpenMP and BLAS thread: on two busy cores, HistGradientBoosting's threads can spin
    for a quarter of a second per one-row call. The answers are the same."""
    import lightgbm  # noqa: F401 - threadpoolctl limits only the runtimes already loaded
    import sklearn.ensemble  # noqa: F401
    import xgboost  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def save(table: RealTable, name: str, directory: Path, *, format: str = "joblib") -> Path:
    """Save the fitted pipeline ``name`` of ``table`` as the issue's user does; the bundle path."""
    path = directory / f"{table.name}-{name}-{format}"
    modelkit.save(
        pipelines.fitted(table.name, name),
        path,
        name=f"{table.name}-{name}",
        version="1.0.0",
        format=format,
        sample_input=table.X.head(SAMPLE_ROWS),
    )
    return path


def _show(X: Any, rows: np.ndarray, expected: Any, got: Any) -> str:
    lines = []
    for row in rows[:SHOWN]:
        record = X.iloc[int(row)].to_dict()
        lines.append(
            f"  row {row}: scikit-learn {expected[row]!r}, modelkit {got[row]!r}; {record}"
        )
    more = f"\n  ... and {len(rows) - SHOWN} more" if len(rows) > SHOWN else ""
    return "\n".join(lines) + more


def check_batch(model: Any, pipeline: Any, X: Any) -> None:
    """``predict_batch(X)`` gives scikit-learn's labels exactly, and its probabilities or values
    to the last bits."""
    expected = Expected.of(pipeline, X)
    predictions = model.predict_batch(X)
    assert len(predictions) == len(X), f"{len(predictions)} predictions for {len(X)} rows"
    if expected.classes is None:
        values = np.asarray(predictions["value"], dtype=np.float64)
        differ = np.flatnonzero(~_same_bits(values, expected.predictions))
        assert not len(differ), (
            f"{len(differ)} of {len(X)} values differ from scikit-learn's predict:\n"
            + _show(X, differ, expected.predictions, values)
        )
        answer = predictions[0].value
    else:
        labels = np.asarray(np.asarray(predictions["label"]).tolist(), dtype=object)
        differ = np.flatnonzero(labels != expected.predictions)
        assert not len(differ), (
            f"{len(differ)} of {len(X)} labels differ from scikit-learn's predict:\n"
            + _show(X, differ, expected.predictions, labels)
        )
        assert predictions.classes == expected.classes, (
            f"classes {predictions.classes!r}, scikit-learn has {expected.classes!r}"
        )
        assert expected.probabilities is not None
        probabilities = np.asarray(predictions["probabilities"], dtype=np.float64)
        differ = np.flatnonzero(~_same_bits(probabilities, expected.probabilities).all(axis=1))
        assert not len(differ), (
            f"{len(differ)} of {len(X)} rows have other probabilities than predict_proba:\n"
            + _show(X, differ, expected.probabilities, probabilities)
        )
        answer = predictions[0].label
    assert type(answer) in PLAIN_TYPES, f"predictions[0] holds a {type(answer)!r}, not a plain type"


def check_records(model: Any, pipeline: Any, X: Any, *, exact: bool = True) -> None:
    """``predict(record)`` on records straight from ``X.to_dict("records")``, and
    ``predict_batch`` on a list of them, answer as scikit-learn does on ``X``.

    Args:
        exact: labels exactly and numbers to the last bits (joblib), or labels on rows off a tie
            and numbers within the tolerances (a converted model).
    """
    rows = pipelines.rows_for_records(X, RECORD_ROWS)
    records = X.to_dict("records")
    expected = Expected.of(pipeline, X)
    is_classifier = expected.classes is not None
    skip = expected.ties() if not exact else np.zeros(len(X), dtype=bool)
    problems: list[str] = []
    for row in rows:
        output = model.predict(records[row])
        want = expected.predictions[row]
        if not is_classifier:
            answer = output.value
            close = _close([answer], [want], VALUE_TOLERANCE, exact=exact, relative=True)
        else:
            assert expected.probabilities is not None
            answer = output.label
            probabilities = [output.probabilities[c] for c in expected.classes or []]
            close = (bool(skip[row]) or answer == want) and _close(
                probabilities, expected.probabilities[row], PROBABILITY_TOLERANCE, exact=exact
            )
        if not close:
            problems.append(f"  row {row}: scikit-learn {want!r}, modelkit {output!r}")
        elif type(answer) not in PLAIN_TYPES:
            problems.append(f"  row {row}: modelkit answers a {type(answer)!r}, not a plain type")
    assert not problems, (
        f"{len(problems)} of {len(rows)} records answer otherwise than scikit-learn:\n"
        + "\n".join(problems[:SHOWN])
    )
    batch = model.predict_batch([records[row] for row in rows])
    if is_classifier:
        got = np.asarray(batch["label"]).tolist()
        differ = [
            i
            for i, (row, label) in enumerate(zip(rows, got, strict=True))
            if label != expected.predictions[row] and not skip[row]
        ]
    else:
        got = np.asarray(batch["value"], dtype=np.float64).tolist()
        differ = [
            i
            for i, (row, value) in enumerate(zip(rows, got, strict=True))
            if not _close(
                [value], [expected.predictions[row]], VALUE_TOLERANCE, exact=exact, relative=True
            )
        ]
    assert not differ, (
        f"predict_batch(list of records) differs on {len(differ)} of {len(rows)} records, "
        f"first at row {rows[differ[0]]}: scikit-learn {expected.predictions[rows[differ[0]]]!r}, "
        f"modelkit {got[differ[0]]!r}"
    )


def _same_bits(got: Any, want: Any) -> np.ndarray:
    """Equal to the last bits: scikit-learn itself rounds the last bit of a matrix product
    differently when the same rows come in another memory layout (a DataFrame rebuilt column by
    column, as any wrapper must), so equality is asked to within :data:`LAST_BITS`."""
    got_array = np.asarray(got, dtype=np.float64)
    want_array = np.asarray(want, dtype=np.float64)
    return np.asarray(np.isclose(got_array, want_array, rtol=LAST_BITS, atol=0.0, equal_nan=True))


def _close(got: Any, want: Any, tolerance: float, *, exact: bool, relative: bool = False) -> bool:
    if exact:
        return bool(_same_bits(got, want).all())
    got_array = np.asarray(got, dtype=np.float64)
    want_array = np.asarray(want, dtype=np.float64)
    scale = np.maximum(1.0, np.abs(want_array)) if relative else 1.0
    return bool((np.abs(got_array - want_array) <= tolerance * scale).all())


def check_converted_batch(model: Any, pipeline: Any, X: Any) -> None:
    """A converted bundle gives scikit-learn's labels on every row off a tie, probabilities and
    values within the tolerances."""
    expected = Expected.of(pipeline, X)
    predictions = model.predict_batch(X)
    if expected.classes is None:
        values = np.asarray(predictions["value"], dtype=np.float64)
        want = expected.predictions.astype(np.float64)
        gap = np.abs(values - want) / np.maximum(1.0, np.abs(want))
        differ = np.flatnonzero(gap > VALUE_TOLERANCE)
        assert not len(differ), (
            f"{len(differ)} of {len(X)} values differ from scikit-learn's by more than "
            f"{VALUE_TOLERANCE:g} (relative):\n" + _show(X, differ, want, values)
        )
        return
    ties = expected.ties()
    labels = np.asarray(np.asarray(predictions["label"]).tolist(), dtype=object)
    differ = np.flatnonzero((labels != expected.predictions) & ~ties)
    assert not len(differ), (
        f"{len(differ)} of {len(X)} labels differ from scikit-learn's on rows off a tie "
        f"({int(ties.sum())} rows on a tie):\n" + _show(X, differ, expected.predictions, labels)
    )
    assert predictions.classes == expected.classes, (
        f"classes {predictions.classes!r}, scikit-learn has {expected.classes!r}"
    )
    assert expected.probabilities is not None
    probabilities = np.asarray(predictions["probabilities"], dtype=np.float64)
    gap = np.abs(probabilities - expected.probabilities).max(axis=1)
    differ = np.flatnonzero(gap > PROBABILITY_TOLERANCE)
    assert not len(differ), (
        f"{len(differ)} of {len(X)} rows have probabilities further than "
        f"{PROBABILITY_TOLERANCE:g} from predict_proba (worst {gap.max():.3g}):\n"
        + _show(X, differ, expected.probabilities, probabilities)
    )


def check_refusal(error: modelkit.ConversionError, pipeline: Any, X: Any) -> None:
    """A refusal names the step it could not convert (or the datetime column it cannot take)."""
    message = str(error)
    names = pipelines.step_names(pipeline)
    datetimes = {f"'{c}'" for c in X.columns if X[c].dtype.kind == "M"}
    named = sorted(n for n in names | datetimes if n in message)
    assert named, (
        f"the refusal names no step of the pipeline ({sorted(names)}) nor a datetime column "
        f"({sorted(datetimes)}): {message}"
    )
