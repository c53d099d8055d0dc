"""Helpers for an application's own tests: a tiny model, answer assertions, captured telemetry.

The module is also a pytest plugin with one fixture, ``modelkit_telemetry``: enable it with
``pytest_plugins = ["modelkit.testing"]`` in the top-level ``conftest.py``. Its assertions write
their own messages, so pytest need not rewrite it (PYTEST_DONT_REWRITE), and a ``conftest.py``
may import from it before that line.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

import modelkit

from ._deps import require

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

__all__ = [
    "CapturedTelemetry",
    "TinyModel",
    "assert_answers_like",
    "assert_bundle_valid",
    "capture_telemetry",
    "tiny_model",
]

# The data sets scikit-learn ships, so a tiny model needs no download.
_COLUMNS = {
    "classification": ("sepal_length", "sepal_width", "petal_length", "petal_width"),
    "regression": ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"),
}
_SPECIES = ("setosa", "versicolor", "virginica")
# Rows of a failing comparison shown in the message; the count of the others follows.
_SHOWN_ROWS = 5


@dataclass(frozen=True, eq=False)
class TinyModel:
    """A bundle made by :func:`tiny_model`, with what it was fitted on.

    It is path-like, so it goes wherever a bundle path does (``modelkit.load(tiny)``).

    Attributes:
        path: the bundle directory.
        estimator: the fitted scikit-learn model the bundle was saved from.
        data: the training rows, a 2-D float array in column order (scikit-learn's ``X``).
        target: the labels or values it learned (``y``).
        records: the same rows as records (column -> float), as an application sends them.
    """

    path: Path
    estimator: Any = field(repr=False)
    data: np.ndarray = field(repr=False)
    target: np.ndarray = field(repr=False)
    records: list[dict[str, float]] = field(repr=False)

    def __fspath__(self) -> str:
        return os.fspath(self.path)


def tiny_model(
    task: Literal["classification", "regression"] = "classification",
    *,
    format: Literal["joblib", "skops", "onnx"] = "joblib",
    path: str | os.PathLike[str] | None = None,
    name: str | None = None,
    version: str = "1.0.0",
    columns: Sequence[str] | None = None,
    classes: Sequence[str | int | bool] | None = None,
) -> TinyModel:
    """Fit and save a small scikit-learn model, so tests of an application need no real one.

    A classifier is a logistic regression on iris (labels ``setosa``, ``versicolor``,
    ``virginica``); a regressor a linear regression on diabetes (columns ``age``, ``sex``,
    ``bmi``, ``bp``, ``s1`` to ``s6``). Both are deterministic and fit in milliseconds.

    Args:
        task: ``"classification"`` or ``"regression"``.
        format: ``"joblib"``, ``"skops"`` (no pickle; needs the ``skops`` extra), or ``"onnx"``
            (converted and parity-checked; needs the ``convert`` extra).
        path: where to save the bundle; by default a temporary directory removed at exit.
        name: the model's name (``"iris"`` or ``"diabetes"`` by default).
        version: the model's version.
        columns: input column names; the model uses that many leading features of the data set
            (1 to 4 for iris, 1 to 10 for diabetes).
        classes: a classifier's labels, 2 or 3 of one type, standing for the species in order;
            with two, versicolor and virginica, which overlap, so probabilities are not all 0
            or 1.

    Raises:
        ValueError: an unknown task or format, or ``columns`` or ``classes`` that do not fit
            the data set.
    """
    if task not in _COLUMNS:
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    if format not in ("joblib", "skops", "onnx"):
        raise ValueError(f"format must be 'joblib', 'skops' or 'onnx', got {format!r}")
    names = tuple(_COLUMNS[task] if columns is None else columns)
    if not 1 <= len(names) <= len(_COLUMNS[task]) or len(set(names)) != len(names):
        raise ValueError(
            f"columns must be 1 to {len(_COLUMNS[task])} distinct names, got {list(names)}"
        )
    from sklearn import datasets
    from sklearn.linear_model import LinearRegression, LogisticRegression

    if task == "classification":
        labels = list(_SPECIES if classes is None else classes)
        if len(labels) not in (2, 3) or len(set(labels)) != len(labels):
            raise ValueError(f"classes must be 2 or 3 distinct labels, got {labels}")
        if len({type(label) for label in labels}) > 1:
            raise ValueError(f"classes must all be of one type, got {labels}")
        data, target = datasets.load_iris(return_X_y=True)
        first = 3 - len(labels)  # two classes: versicolor and virginica
        kept = target >= first
        data, target = data[kept], np.asarray(labels)[target[kept] - first]
        estimator: Any = LogisticRegression(max_iter=1000)
    elif classes is not None:
        raise ValueError("classes= is for classification")
    else:
        data, target = datasets.load_diabetes(return_X_y=True)
        estimator = LinearRegression()
    data = np.ascontiguousarray(data[:, : len(names)])
    estimator.fit(data, target)
    records = [dict(zip(names, row, strict=True)) for row in data.tolist()]
    signature = modelkit.Signature(
        inputs=modelkit.TabularInputs(
            columns=tuple(
                modelkit.ColumnSpec(name=n, type="number", dtype="float64") for n in names
            )
        ),
        outputs=modelkit.Outputs(task=task),
    )
    name = name or ("iris" if task == "classification" else "diabetes")
    bundle = Path(path) if path is not None else _temporary() / name
    options: dict[str, Any] = {
        "name": name,
        "version": version,
        "signature": signature,
        "reference": records,
    }
    if format != "onnx":
        modelkit.save(estimator, bundle, format=format, **options)
    else:
        # save(format="onnx") types the graph from a sample whose column names must be the
        # signature's, which a NumPy-fitted estimator cannot take: convert a saved bundle instead.
        with tempfile.TemporaryDirectory(prefix="modelkit-tiny-") as scratch:
            source = Path(scratch) / "joblib"
            modelkit.save(estimator, source, **options)
            modelkit.convert(source, bundle)
    return TinyModel(bundle, estimator, data, target, records)


def _temporary() -> Path:
    directory = tempfile.mkdtemp(prefix="modelkit-tiny-")
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # a forked worker exiting must not remove its parent's files
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)
    return Path(directory)


# -- assertions ---------------------------------------------------------------------------------


def assert_answers_like(
    model: Any, source: Any, data: Any, *, rtol: float = 1e-4, atol: float = 1e-4
) -> None:
    """Assert that a model answers like its source: labels exactly, numbers within tolerance.

    The default tolerance is the parity ONNX conversion guarantees, so a converted bundle
    passes against the estimator it came from.

    Args:
        model: a :class:`modelkit.Model`, or a bundle path to load.
        source: a fitted estimator (``predict``, and ``predict_proba`` if it has one), another
            :class:`modelkit.Model`, or a bundle path.
        data: the rows to ask both: a 2-D array or a DataFrame (or records, when the source is
            a model too).
        rtol: relative tolerance for probabilities and values.
        atol: absolute tolerance for probabilities and values.

    Raises:
        AssertionError: the answers differ; the message shows the first rows that differ and
            the largest difference.
    """
    with contextlib.ExitStack() as stack:
        actual, actual_name = _answers(model, data, stack)
        expected, expected_name = _answers(source, data, stack)
    if not (_has_probabilities(actual) and _has_probabilities(expected)):
        # Labels alone are comparable when one side gives no probabilities.
        actual, expected = _labels_only(actual), _labels_only(expected)
    if actual.keys() != expected.keys():
        raise AssertionError(
            f"{actual_name} answers with {list(actual)}, {expected_name} with {list(expected)}"
        )
    sizes = {len(column) for column in [*actual.values(), *expected.values()]}
    if len(sizes) != 1:
        raise AssertionError(f"{actual_name} and {expected_name} give different numbers of rows")
    rows: dict[int, str] = {}
    largest = (0.0, 0, "")
    for column, got in actual.items():
        want = expected[column]
        if column == "label":
            far = got != want
        else:
            far = ~np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
            gaps = np.where(far, np.nan_to_num(np.abs(got - want), nan=np.inf), 0.0)
            if gaps.max() > largest[0]:
                largest = (float(gaps.max()), int(gaps.argmax()), column)
        for i in np.flatnonzero(far).tolist():
            rows.setdefault(i, f"{column} {_show(got[i])}, expected {_show(want[i])}")
    if not rows:
        return
    lines = [f"  row {i}: {rows[i]}" for i in sorted(rows)[:_SHOWN_ROWS]]
    if len(rows) > _SHOWN_ROWS:
        lines.append(f"  ... and {len(rows) - _SHOWN_ROWS} more rows")
    if largest[0] > 0:
        lines.append(f"largest difference: {largest[0]:.6g} in {largest[2]}, row {largest[1]}")
    raise AssertionError(
        f"{actual_name} does not answer like {expected_name} on {len(rows)} of {sizes.pop()} "
        f"rows (rtol={rtol:g}, atol={atol:g}):\n" + "\n".join(lines)
    )


def _has_probabilities(columns: dict[str, np.ndarray]) -> bool:
    return any(name.startswith("probability_") for name in columns)


def _labels_only(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in columns.items() if not k.startswith("probability_")}


def _show(value: Any) -> str:
    value = value.item() if isinstance(value, np.generic) else value
    return f"{value:.6g}" if isinstance(value, float) else repr(value)


def _answers(subject: Any, data: Any, stack: contextlib.ExitStack) -> tuple[dict[str, Any], str]:
    """One side's answers as flat columns (``label``, ``probability_<class>``, ``value``)."""
    if not isinstance(subject, modelkit.Model) and not hasattr(subject, "predict"):
        subject = stack.enter_context(modelkit.load(subject))
    if not isinstance(subject, modelkit.Model):
        columns: dict[str, Any] = {}
        values = np.asarray(subject.predict(data))
        classes = getattr(subject, "classes_", None)
        if classes is None:
            columns.update(_values(values))
        else:
            columns["label"] = values.astype(object)
            if callable(getattr(subject, "predict_proba", None)):
                probabilities = np.asarray(subject.predict_proba(data), dtype=float)
                columns.update(_probabilities(list(classes), probabilities))
        return columns, type(subject).__name__
    predictions = subject.predict_batch(data)
    label = f"model {subject.name!r} {subject.version}"
    columns = {}
    if "label" in predictions.fields:
        columns["label"] = np.asarray(predictions["label"]).astype(object)
        if "probabilities" in predictions.fields and predictions.classes is not None:
            probabilities = np.asarray(predictions["probabilities"], dtype=float)
            columns.update(_probabilities(predictions.classes, probabilities))
    elif "value" in predictions.fields:
        columns.update(_values(np.asarray(predictions["value"], dtype=float)))
    else:
        raise TypeError(f"{label} is neither a classifier nor a regressor")
    return columns, label


def _probabilities(classes: Sequence[Any], probabilities: np.ndarray) -> dict[str, np.ndarray]:
    return {f"probability_{c}": probabilities[:, j] for j, c in enumerate(classes)}


def _values(values: np.ndarray) -> dict[str, np.ndarray]:
    values = values.astype(float)
    if values.ndim == 1:
        return {"value": values}
    return {f"value[{j}]": values[:, j] for j in range(values.shape[1])}


def assert_bundle_valid(
    path: Any, *, sha256: str | None = None, **load_options: Any
) -> modelkit.Manifest:
    """Assert that a bundle is intact, has the pinned digest, and loads in this environment.

    Every artifact's size and hash are checked against the manifest, as :func:`modelkit.load`
    does, and the recorded library versions against this process.

    Args:
        path: anything :func:`modelkit.load` accepts.
        sha256: the digest the bundle must have (see :func:`modelkit.digest`).
        **load_options: passed to :func:`modelkit.load` (``version_policy``, ``trusted``...).

    Returns:
        The bundle's manifest.

    Raises:
        AssertionError: the bundle is missing, altered, pinned to another digest, or saved with
            library versions this process does not accept; the message says which.
    """
    try:
        with modelkit.load(path, sha256=sha256, **load_options) as model:
            manifest = model.manifest
    except (modelkit.BundleError, modelkit.EnvironmentMismatchError) as exc:
        raise AssertionError(str(exc)) from exc  # the message names the bundle and the fault
    assert manifest is not None  # a loaded bundle always has one
    return manifest


# -- telemetry ----------------------------------------------------------------------------------


class CapturedTelemetry:
    """OpenTelemetry SDK providers that keep spans and metrics in memory, for assertions.

    Give :attr:`providers` to what reports (``modelkit.load(path, **captured.providers)``,
    ``modelkit.Registry(**captured.providers)``, ``model.set_telemetry(**captured.providers)``).

    Attributes:
        tracer_provider: an SDK tracer provider exporting every finished span to memory.
        meter_provider: an SDK meter provider read on demand by :meth:`points`.
    """

    def __init__(self) -> None:
        def sdk(module: str) -> Any:
            return require(
                f"opentelemetry.sdk.{module}",
                extra="testing",
                feature="Capturing telemetry",
                package="opentelemetry-sdk",
            )

        self._exporter = sdk("trace.export.in_memory_span_exporter").InMemorySpanExporter()
        self.tracer_provider: TracerProvider = sdk("trace").TracerProvider()
        self.tracer_provider.add_span_processor(
            sdk("trace.export").SimpleSpanProcessor(self._exporter)
        )
        self._reader = sdk("metrics.export").InMemoryMetricReader()
        self.meter_provider: MeterProvider = sdk("metrics").MeterProvider(
            metric_readers=[self._reader]
        )
        self._closed: tuple[tuple[ReadableSpan, ...], Any] | None = None

    @property
    def providers(self) -> dict[str, Any]:
        """``tracer_provider`` and ``meter_provider``, to pass as keyword arguments."""
        return {"tracer_provider": self.tracer_provider, "meter_provider": self.meter_provider}

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """The finished spans, oldest first; only those called ``name`` if given."""
        found = self._exporter.get_finished_spans() if self._closed is None else self._closed[0]
        return [span for span in found if name is None or span.name == name]

    def points(self, name: str) -> list[Any]:
        """The data points of one metric, such as ``"modelkit.prediction.duration"``.

        A histogram's points have ``count``, ``sum`` and ``attributes``; a counter's ``value``.
        Metrics are cumulative from the first measurement: :meth:`clear` does not reset them.
        """
        data = self._reader.get_metrics_data() if self._closed is None else self._closed[1]
        return [
            point
            for resource in (data.resource_metrics if data is not None else ())
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def clear(self) -> None:
        """Forget the spans finished so far."""
        self._exporter.clear()

    def close(self) -> None:
        """Shut the providers down, keeping what they captured readable here."""
        if self._closed is None:
            self._closed = (self._exporter.get_finished_spans(), self._reader.get_metrics_data())
            # modelkit keeps each pair of providers it was given for the life of the process:
            # leave nothing in them to keep alive.
            self._exporter.clear()
            self.tracer_provider.shutdown()
            self.meter_provider.shutdown()


@contextlib.contextmanager
def capture_telemetry() -> Iterator[CapturedTelemetry]:
    """Capture spans and metrics in memory while the block runs, readable after it.

    Needs the OpenTelemetry SDK (the ``testing`` extra); modelkit itself never imports it.

    Example:
        >>> with capture_telemetry() as captured:
        ...     model = modelkit.load("models/iris", **captured.providers)
        ...     model.predict(record)
        >>> [span.name for span in captured.spans()]
        ['load iris', 'predict iris']

    Raises:
        MissingDependencyError: the OpenTelemetry SDK is not installed.
    """
    captured = CapturedTelemetry()
    try:
        yield captured
    finally:
        captured.close()


try:
    import pytest
except ImportError:  # pragma: no cover - only the fixture needs pytest
    pass
else:

    @pytest.fixture
    def modelkit_telemetry() -> Iterator[CapturedTelemetry]:
        """A :class:`CapturedTelemetry` for one test (see :func:`capture_telemetry`)."""
        with capture_telemetry() as captured:
            yield captured
