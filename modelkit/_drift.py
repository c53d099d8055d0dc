"""Drift statistics: a profile of the reference data, and a cheap streaming comparison with it.

At save time :func:`profile_reference` summarises the reference data (the training frame, or the
sample input) per column: numbers by the reference's deciles, strings, booleans and declared
categories by their most frequent values, and every column by its missing rate. The profile is
plain JSON and lives in the bundle's manifest.

At run time a :class:`DriftMonitor` counts which bin each value the model receives falls into,
and :meth:`DriftMonitor.report` compares those counts with the reference per column through the
population stability index (PSI)::

    PSI = sum over bins of (current - reference) * ln(current / reference)

where both sides are shares of all records, missing values form a bin of their own, and a share
of zero is replaced by :data:`EPSILON` so that the logarithm stays finite. The usual reading,
kept in :data:`MODERATE_THRESHOLD` and :data:`SIGNIFICANT_THRESHOLD`, is: below 0.1 the column is
stable, from 0.1 to 0.25 it has moved moderately, above 0.25 significantly.

Counting is built for the prediction path. A record is appended to a buffer under one lock; every
thousand records, and whenever a report is made, the buffer is binned column by column in numpy,
exactly as a batch is, with no Python loop over rows for numbers. A record's output is binned at
once, from a cache of the labels seen. A monitor is safe to share
between threads, and across ``os.fork()``.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import weakref
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from ._deps import require
from ._signature import ColumnSpec, Table, TabularInputs, is_missing

__all__ = [
    "EPSILON",
    "MAX_CATEGORIES",
    "MIN_RECORDS",
    "MODERATE_THRESHOLD",
    "PROFILE_VERSION",
    "SIGNIFICANT_THRESHOLD",
    "DriftMonitor",
    "DriftReport",
    "DriftStatus",
    "FeatureDrift",
    "drift_status",
    "population_stability_index",
    "profile_reference",
]

DriftStatus = Literal["stable", "moderate", "significant", "insufficient data"]

#: The version of the profile format that :func:`profile_reference` writes.
PROFILE_VERSION = 1
#: A PSI below this is ``stable``.
MODERATE_THRESHOLD = 0.1
#: A PSI above this is ``significant``; between the two thresholds it is ``moderate``.
SIGNIFICANT_THRESHOLD = 0.25
#: The share that stands in for an empty bin, on either side, so that the logarithm stays finite.
#: An empty bin against one holding a share ``p`` then adds about ``p * ln(p / 1e-4)``.
EPSILON = 1e-4
#: Records needed before a column gets a score. With ten bins, sampling noise alone gives an
#: expected PSI of about ``10 / n`` for ``n`` records drawn from the reference distribution: at
#: 30 records two columns in three would read "significant" with nothing changed; at 200, about
#: one in thirty reads "moderate" and none "significant".
MIN_RECORDS = 200
#: The most frequent categories a categorical column keeps as bins of their own; the rest share
#: one ``other`` bin, as do values never seen in the reference.
MAX_CATEGORIES = 20

# A profile has at most this many bins per column (a numeric column has 11, a categorical one
# MAX_CATEGORIES + 2): more means a profile this modelkit did not write.
_MAX_BINS = 255
# Records buffered before they are binned, vectorized, by the record that fills the buffer:
# about half a millisecond for 1024 records of 10 columns, never a long pause for that request.
_FLUSH_RECORDS = 1024
# Marks "no single output given" (None is a missing output, counted as such elsewhere).
_NO_OUTPUT = object()


# --------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------


def population_stability_index(reference: Sequence[float], current: Sequence[float]) -> float:
    """The population stability index between two distributions over the same bins.

    Args:
        reference: the share of the reference data in each bin.
        current: the share of the current data in each bin, in the same order.

    Returns:
        ``sum((current - reference) * ln(current / reference))``, with shares of zero replaced
        by :data:`EPSILON`. It is never negative, and zero when the two agree.

    Raises:
        ValueError: the two have different lengths.
    """
    total = 0.0
    for before, now in zip(reference, current, strict=True):
        expected = before if before > 0 else EPSILON
        actual = now if now > 0 else EPSILON
        # Both factors have the same sign, so every term is >= 0 even after rounding.
        total += (actual - expected) * math.log(actual / expected)
    return total


def drift_status(score: float | None) -> DriftStatus:
    """The conventional reading of a PSI: below 0.1 stable, up to 0.25 moderate, then significant.

    ``None`` (too few records to score) reads as ``"insufficient data"``.
    """
    if score is None:
        return "insufficient data"
    if score < MODERATE_THRESHOLD:
        return "stable"
    if score <= SIGNIFICANT_THRESHOLD:
        return "moderate"
    return "significant"


# --------------------------------------------------------------------------------------------
# Reference profiles
# --------------------------------------------------------------------------------------------


def profile_reference(
    inputs: TabularInputs,
    table: Table,
    *,
    outputs: Mapping[str, np.ndarray] | None = None,
    output_task: str | None = None,
    classes: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Summarise reference data per column, for drift statistics at run time.

    Numeric columns are binned at the reference's deciles (equal edges merged; a column that is
    almost constant gets the bins "below", "equal to" and "above" its value), with two
    open-ended outer bins, and keep their min, max and mean. String, boolean and categorical
    columns keep the shares of their :data:`MAX_CATEGORIES` most frequent values (booleans as
    ``"true"`` and ``"false"``), the rest pooled as ``other``. In both, ``proportions`` are
    shares of *all* rows, and ``missing_rate`` completes them to one.

    Args:
        inputs: the model's tabular inputs.
        table: the validated reference data.
        outputs: the model's outputs on the same rows (``"label"`` or ``"value"`` arrays), to
            profile its predictions too.
        output_task: ``"classification"`` (profile ``outputs["label"]``) or ``"regression"``
            (``outputs["value"]``); when ``None``, taken from which of the two ``outputs`` has.
        classes: a classifier's classes, so each gets a bin even if no reference row has it.

    Returns:
        A JSON-serializable dict (no NaN or infinity): ``version``, ``count``, ``columns``
        (name to summary, in signature order) and ``outputs`` (a summary with the ``name`` of
        the field and the ``task``, or ``None``).

    Raises:
        ValueError: the table is empty or does not have the inputs' columns, or ``outputs`` do
            not have one value per row.
    """
    names = tuple(column.name for column in inputs.columns)
    if table.names != names:
        raise ValueError(
            f"The reference table has columns {list(table.names)}, but the inputs are "
            f"{list(names)}."
        )
    if table.length == 0:
        raise ValueError("Cannot profile reference data with no rows.")
    data = table.columns()
    columns = {
        column.name: _profile_column(column, _binned_values(column, data[column.name]))
        for column in inputs.columns
    }
    return {
        "version": PROFILE_VERSION,
        "count": table.length,
        "columns": columns,
        "outputs": _profile_outputs(outputs, output_task, classes, table.length),
    }


def _profile_outputs(
    outputs: Mapping[str, np.ndarray] | None,
    task: str | None,
    classes: Sequence[Any] | None,
    length: int,
) -> dict[str, Any] | None:
    if outputs is None:
        return None
    if task is None:
        task = (
            "classification" if "label" in outputs else "regression" if "value" in outputs else None
        )
    field = {"classification": "label", "regression": "value"}.get(task or "")
    if field is None or field not in outputs:
        return None  # tensor and custom outputs have no profile
    values = np.asarray(outputs[field])
    if values.ndim != 1:
        return None  # several regression targets per row: not profiled
    if len(values) != length:
        raise ValueError(
            f"The reference outputs have {len(values)} values in {field!r} for {length} rows."
        )
    if field == "label":
        # Labels are named str(label), so that any label type survives the JSON round trip.
        keys = [str(c) for c in classes] if classes is not None else None
        summary = _categorical_profile(values.tolist(), str, keys)
    else:
        summary = _numeric_profile(values)
    return {"name": field, "task": task, **summary}


def _binned_values(column: ColumnSpec, values: Any) -> Any:
    """A column's values as its bins compare them: datetimes as seconds since the epoch."""
    if column.type != "datetime":
        return values
    stamps = np.asarray(values, dtype="datetime64[us]")
    seconds = stamps.astype(np.int64) / 1e6
    seconds[np.isnat(stamps)] = math.nan
    return seconds


def _profile_column(column: ColumnSpec, values: np.ndarray) -> dict[str, Any]:
    if _is_categorical(column):
        key, declared = _category_keys(column)
        if declared is None and column.type == "boolean":
            declared = ["true", "false"]
        summary = _categorical_profile(values.tolist(), key, declared)
    else:
        summary = _numeric_profile(values)
    return {"type": column.type, **summary}


def _numeric_profile(values: np.ndarray) -> dict[str, Any]:
    count = len(values)
    ordered = np.sort(_present_numbers(values))
    edges = _decile_edges(ordered)
    counts = _NumericBinner(edges).count(values).tolist()
    if ordered.size:
        low, high = _json_number(ordered[0]), _json_number(ordered[-1])
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                mean = _json_number(float(np.mean(ordered, dtype=np.float64)))
        except (OverflowError, TypeError):
            mean = None  # integers beyond a float's range
    else:
        low = high = mean = None
    return {
        "kind": "numeric",
        "count": count,
        "missing_rate": counts[-1] / count,
        "edges": edges,
        "proportions": [n / count for n in counts[:-1]],
        "min": low,
        "max": high,
        "mean": mean,
    }


def _present_numbers(values: np.ndarray) -> np.ndarray:
    """The finite values of a numeric column, integers kept exact."""
    if values.dtype.kind == "f":
        finite: np.ndarray = values[np.isfinite(values)]
        return finite
    if values.dtype.kind in "iu":
        return values
    present = [
        v
        for v in values.tolist()
        if not is_missing(v) and (not isinstance(v, float) or math.isfinite(v))
    ]
    # Integers past 64 bits stay Python ints in an object array, and still sort exactly.
    return np.asarray(present) if present else np.empty(0)


def _decile_edges(ordered: np.ndarray) -> list[Any]:
    """The reference's deciles, merged where equal: the bins' inner edges."""
    n = len(ordered)
    if n == 0:
        return []
    # The inverted CDF (the smallest value with at least i/10 of the data at or below it) picks
    # values of the data itself: exact for integers, never an interpolation that overflows.
    positions = [-(-i * n // 10) - 1 for i in range(1, 10)]
    edges = sorted(set(ordered[positions].tolist()))
    if len(edges) == 1:
        # Nine deciles on one value: bins "below", "equal to" and "above" it, so that a change of
        # the constant still shows.
        (value,) = edges
        above = value + 1 if isinstance(value, int) else math.nextafter(value, math.inf)
        if math.isfinite(above):
            edges.append(above)
    return edges


def _categorical_profile(
    values: list[Any], key: Callable[[Any], str], declared: Sequence[str] | None
) -> dict[str, Any]:
    count = len(values)
    missing = 0
    shares: Counter[str] = Counter()
    for value, n in Counter(values).items():
        if is_missing(value):
            missing += n
        else:
            shares[key(value)] += n
    if declared is not None and len(declared) <= MAX_CATEGORIES:
        categories = list(dict.fromkeys(declared))
    else:
        ranked = sorted(shares.items(), key=lambda item: (-item[1], item[0]))
        categories = [name for name, _ in ranked[:MAX_CATEGORIES]]
    kept = sum(shares[name] for name in categories)
    return {
        "kind": "categorical",
        "count": count,
        "missing_rate": missing / count,
        "categories": categories,
        "proportions": [shares[name] / count for name in categories]
        + [(count - missing - kept) / count],
    }


def _is_categorical(column: ColumnSpec) -> bool:
    return column.categories is not None or column.type in ("string", "boolean")


def _category_keys(column: ColumnSpec) -> tuple[Callable[[Any], str], list[str] | None]:
    """How a column's values are named in a profile, and its declared categories by name."""
    if column.categories is None:
        return _category_key, None
    # A declared category is named as declared, whatever form the validator gives it (1.0 for 1).
    names = {category: _category_key(category) for category in column.categories}

    def key(value: Any) -> str:
        name = names.get(value)
        return _category_key(value) if name is None else name

    return key, list(names.values())


def _category_key(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _json_number(value: Any) -> int | float | None:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, int):
        return value
    number = float(value)
    return number if math.isfinite(number) else None


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureDrift:
    """How far one column (or the model's outputs) has moved from the reference.

    Attributes:
        name: the column's name (``"label"`` or ``"value"`` for outputs).
        score: the population stability index, or ``None`` before :data:`MIN_RECORDS` records.
        status: ``"stable"`` (score < 0.1), ``"moderate"`` (0.1 to 0.25), ``"significant"``
            (> 0.25) or ``"insufficient data"``.
        count: the records counted.
        reference_missing_rate: the share of missing values in the reference.
        current_missing_rate: the share of missing values counted, ``None`` before any record.
    """

    name: str
    score: float | None
    status: DriftStatus
    count: int
    reference_missing_rate: float
    current_missing_rate: float | None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serializable dict."""
        return asdict(self)


@dataclass(frozen=True)
class DriftReport:
    """Drift of every input column, and of the outputs when they are monitored.

    Example:
        >>> report = monitor.report()
        >>> report["age"].score, report.drifted
    """

    features: tuple[FeatureDrift, ...]
    outputs: FeatureDrift | None
    count: int

    def __getitem__(self, name: str) -> FeatureDrift:
        for feature in self.features:
            if feature.name == name:
                return feature
        names = [feature.name for feature in self.features]
        raise KeyError(f"No input column {name!r} in this report (columns: {names}).")

    @property
    def drifted(self) -> list[str]:
        """The input columns whose status is ``"moderate"`` or ``"significant"``."""
        return [f.name for f in self.features if f.status in ("moderate", "significant")]

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-serializable dict (for logs and HTTP responses)."""
        return {
            "count": self.count,
            "features": [feature.to_dict() for feature in self.features],
            "outputs": None if self.outputs is None else self.outputs.to_dict(),
        }

    def to_pandas(self) -> Any:
        """One row per input column (``role`` ``"input"``), then the outputs (``"output"``).

        Raises:
            MissingDependencyError: pandas is not installed.
        """
        pandas = require("pandas", extra="pandas", feature="DriftReport.to_pandas()")
        rows = [{"role": "input", **feature.to_dict()} for feature in self.features]
        if self.outputs is not None:
            rows.append({"role": "output", **self.outputs.to_dict()})
        columns = ["name", "role", *(f for f in FeatureDrift.__dataclass_fields__ if f != "name")]
        return pandas.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------------
# Monitoring
# --------------------------------------------------------------------------------------------

_INT64 = np.iinfo(np.int64)
# Integers up to this size convert to float64 exactly, so comparing them as floats is exact.
_EXACT_FLOAT_INT = 2**53
# Columns at least this long are binned by comparisons with each edge rather than searchsorted.
_COMPARE_ROWS = 256


class _NumericBinner:
    """Bins numbers at fixed edges: bin ``i`` holds ``edges[i - 1] <= x < edges[i]``.

    With ``k`` edges there are ``k + 1`` value bins, the outer two open-ended, then the missing
    bin. The edges used end with +inf, so that ``bisect_right`` sends NaN (and the +inf that
    validation never lets through) past every value bin, into the missing one. Every path
    compares exactly, as ``bisect_right`` on Python numbers does, so that a record and a batch
    holding it always land in the same bins.
    """

    def __init__(self, edges: Sequence[Any]) -> None:
        self.edges: list[Any] = [*edges, math.inf]
        self.size = len(edges) + 2
        # Float edges (sentinel included) compare exactly with floats, and with integers that
        # float64 holds exactly; integer edges (an integer column's) with any int64.
        self._floats = (
            self.edges
            if all(isinstance(e, float) or abs(e) <= _EXACT_FLOAT_INT for e in edges)
            else None
        )
        self._ints = (
            list(edges)
            if all(isinstance(e, int) and _INT64.min <= e <= _INT64.max for e in edges)
            else None
        )

    def index(self, value: Any) -> int:
        return self.size - 1 if value is None else bisect_right(self.edges, value)

    def count(self, values: np.ndarray) -> np.ndarray:
        kind = values.dtype.kind
        if values.size == 0:
            return np.zeros(self.size, dtype=np.int64)
        if kind == "f" and self._floats is not None:
            # float32 is widened first: compared with a Python float, numpy would round the edge.
            bins = _bins(values.astype(np.float64, copy=False), self._floats)
        elif kind in "iu" and self._ints is not None and int(values.max()) <= _INT64.max:
            # No NaN in an integer array: the bins of the edges proper are all there is.
            bins = _bins(values.astype(np.int64, copy=False), self._ints)
        elif (
            kind in "iu"
            and self._floats is not None
            and int(values.min()) >= -_EXACT_FLOAT_INT
            and int(values.max()) <= _EXACT_FLOAT_INT
        ):
            bins = _bins(values.astype(np.int64, copy=False), self._floats)
        else:
            # Object columns (nullable integers hold None or NaN) and integers too large for
            # float64: each distinct value is binned as a record's would be.
            return _count_each(self, values)
        return np.bincount(bins, minlength=self.size)


def _bins(values: np.ndarray, edges: list[Any]) -> np.ndarray:
    """``bisect_right(edges, x)`` for each of ``values`` (NaN after every edge, as there)."""
    if len(values) < _COMPARE_ROWS:
        return np.searchsorted(np.asarray(edges), values, side="right")
    # For long columns, one pass per edge counting the edges above each value is several times
    # faster than searchsorted's binary search: bisect_right = edges - edges above. NaN is below
    # no edge, so it lands after all of them, as in the binary search.
    values = np.ascontiguousarray(values)
    above = np.zeros(len(values), dtype=np.uint8)
    for edge in edges:
        np.add(above, values < edge, out=above, casting="unsafe")
    bins: np.ndarray = len(edges) - above
    return bins


class _CategoricalBinner:
    """Bins values by lookup: one bin per profiled category, then ``other``, then missing."""

    def __init__(self, lookup: dict[Any, int], size: int, *, by_str: bool = False) -> None:
        self.lookup = lookup
        self.size = size
        self._by_str = by_str  # outputs: labels are profiled by str(label)

    def index(self, value: Any) -> int:
        found = self.lookup.get(str(value) if self._by_str else value)
        if found is not None:
            return found
        return self.size - 1 if is_missing(value) else self.size - 2

    def count(self, values: np.ndarray) -> np.ndarray:
        return _count_each(self, values)


def _count_each(binner: _NumericBinner | _CategoricalBinner, values: np.ndarray) -> np.ndarray:
    """Count values by binning each distinct one as a record's would be."""
    counts = np.zeros(binner.size, dtype=np.int64)
    # Counting distinct values first (in C) leaves Python work per distinct value, not per row.
    pairs: Iterable[tuple[Any, int]]
    if values.dtype.kind in "biufU":
        distinct, repeats = np.unique(values, return_counts=True)
        pairs = zip(distinct.tolist(), repeats.tolist(), strict=True)
    else:
        pairs = Counter(values.tolist()).items()
    for value, n in pairs:
        counts[binner.index(value)] += n
    return counts


@dataclass(frozen=True)
class _Column:
    """One monitored column (or output): its binner and the reference's share of each bin."""

    name: str
    reference: tuple[float, ...]
    binner: _NumericBinner | _CategoricalBinner

    def drift(self, counts: np.ndarray, min_records: int) -> FeatureDrift:
        total = int(counts.sum())
        current = (counts / total).tolist() if total else None
        score = (
            population_stability_index(self.reference, current)
            if current is not None and total >= min_records
            else None
        )
        return FeatureDrift(
            name=self.name,
            score=score,
            status=drift_status(score),
            count=total,
            reference_missing_rate=self.reference[-1],
            current_missing_rate=None if current is None else current[-1],
        )


def _compile_column(
    name: str, entry: Mapping[str, Any], column: ColumnSpec | None = None
) -> _Column:
    """Rebuild a column's bins from its profile entry (``column`` is ``None`` for outputs)."""
    try:
        kind = entry["kind"]
        proportions = [float(p) for p in entry["proportions"]]
        reference = (*proportions, float(entry["missing_rate"]))
        binner: _NumericBinner | _CategoricalBinner
        if kind == "numeric":
            edges = [e if isinstance(e, int) else float(e) for e in entry["edges"]]
            binner = _NumericBinner(edges)
        elif kind == "categorical":
            categories = [str(c) for c in entry["categories"]]
            index = {category: i for i, category in enumerate(categories)}
            size = len(categories) + 2
            if column is None:
                binner = _CategoricalBinner(index, size, by_str=True)
            else:
                binner = _CategoricalBinner(_lookup(column, index), size)
        else:
            raise ValueError(f"unknown kind {kind!r}")
        if binner.size != len(reference):
            raise ValueError(f"{binner.size - 1} bins but {len(proportions)} proportions")
        if binner.size >= _MAX_BINS:
            raise ValueError(f"{binner.size} bins, more than {_MAX_BINS - 1}")
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"The drift profile of {name!r} is malformed: {exc}.") from None
    return _Column(name, reference, binner)


def _lookup(column: ColumnSpec, index: Mapping[str, int]) -> dict[Any, int]:
    """Map the values the validator gives for a column to their bins."""
    missing = len(index) + 1
    lookup: dict[Any, int]
    if column.categories is not None:
        key, _ = _category_keys(column)
        lookup = {c: index[key(c)] for c in column.categories if key(c) in index}
    elif column.type == "boolean":
        lookup = {v: index[_category_key(v)] for v in (True, False) if _category_key(v) in index}
    else:
        lookup = dict(index)
    # The usual missing values resolve in the fast lookup; any other NaN takes the slow path.
    for value in (None, math.nan, np.nan):
        lookup.setdefault(value, missing)
    return lookup


def _column_values(
    binner: _NumericBinner | _CategoricalBinner, values: Sequence[Any]
) -> np.ndarray:
    """One buffered column as an array its binner counts as it would bin each value alone."""
    if isinstance(binner, _NumericBinner):
        array = np.asarray(values)
        if array.dtype.kind in "fiu":
            return array
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


# Live monitors, so that a fork can quiesce their locks and give the child fresh ones. The
# registry's own lock keeps a monitor created in another thread from changing the set while a
# fork walks it; it is always taken before a monitor's lock, never while holding one.
_MONITORS: weakref.WeakSet[DriftMonitor] = weakref.WeakSet()
_MONITORS_LOCK = threading.Lock()
_HELD: list[DriftMonitor] = []


def _register(monitor: DriftMonitor) -> None:
    with _MONITORS_LOCK:
        _MONITORS.add(monitor)


def _before_fork() -> None:
    # Fork with every monitor's lock held, so that no monitor is caught halfway through an
    # update (gunicorn forks workers from a process that may already be serving).
    _MONITORS_LOCK.acquire()
    for monitor in list(_MONITORS):
        monitor._lock.acquire()
        _HELD.append(monitor)


def _after_fork_in_parent() -> None:
    while _HELD:
        _HELD.pop()._lock.release()
    _MONITORS_LOCK.release()


def _after_fork_in_child() -> None:
    # The child has one thread, and its copies of the held locks would never be released.
    global _MONITORS_LOCK  # noqa: PLW0603 - replaced once per fork, in the child only
    _MONITORS_LOCK = threading.Lock()
    _HELD.clear()
    for monitor in list(_MONITORS):
        monitor._lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


class DriftMonitor:
    """Counts what a model receives (and predicts) and compares it with the reference profile.

    Safe to share between threads: every update takes one lock, so no count is lost. A forked
    child (a gunicorn worker) gets fresh locks and starts from the parent's counts.

    Args:
        profile: what :func:`profile_reference` returned for the model's reference data.
        inputs: the model's tabular inputs, in the order records give their values.
        min_records: records needed before a column gets a score.

    Raises:
        ValueError: the profile has another format version, does not cover the inputs' columns,
            or bins a column as another kind (numeric or categorical) than the inputs make it.
    """

    def __init__(
        self,
        profile: Mapping[str, Any],
        inputs: TabularInputs,
        *,
        min_records: int = MIN_RECORDS,
    ) -> None:
        version = profile.get("version")
        if version != PROFILE_VERSION:
            raise ValueError(
                f"Drift profile version {version!r} is not supported (this modelkit reads version "
                f"{PROFILE_VERSION}); upgrade modelkit to read it."
            )
        entries = profile.get("columns")
        if not isinstance(entries, Mapping):
            raise ValueError("The drift profile has no 'columns' mapping.")
        absent = [c.name for c in inputs.columns if c.name not in entries]
        if absent:
            raise ValueError(f"The drift profile has no entry for the input columns {absent}.")
        self.min_records = min_records
        self._names = tuple(column.name for column in inputs.columns)
        self._specs = inputs.columns
        columns = []
        for spec in inputs.columns:
            entry = entries[spec.name]
            expected = "categorical" if _is_categorical(spec) else "numeric"
            if not isinstance(entry, Mapping) or entry.get("kind") != expected:
                kind = entry.get("kind") if isinstance(entry, Mapping) else None
                raise ValueError(
                    f"The drift profile bins column {spec.name!r} as {kind!r}, "
                    f"but the inputs make it {expected}."
                )
            columns.append(_compile_column(spec.name, entry, spec))
        self._columns = tuple(columns)
        outputs = profile.get("outputs")
        if outputs is not None and not (
            isinstance(outputs, Mapping) and isinstance(outputs.get("name"), str)
        ):
            raise ValueError("The drift profile's outputs have no field 'name'.")
        self._outputs = None if outputs is None else _compile_column(outputs["name"], outputs)

        self._width = len(columns)
        ends = np.cumsum([c.binner.size for c in columns])
        self._starts = ends - [c.binner.size for c in columns]

        self._lock = threading.Lock()
        self._counts = np.zeros(int(ends[-1]), dtype=np.int64)
        self._counted = 0  # records in self._counts; those in self._rows come on top
        # Records wait here and are binned a thousand at a time, vectorized: appending a
        # record costs a fraction of binning it alone.
        self._rows: list[Sequence[Any]] = []
        self._output_counts = np.zeros(
            0 if self._outputs is None else self._outputs.binner.size, dtype=np.int64
        )
        self._output_name = None if self._outputs is None else self._outputs.name
        # One prediction's output waits here like its record, and is binned with the others.
        self._output_values: list[Any] = []
        _register(self)

    @property
    def count(self) -> int:
        """The records counted since creation or the last :meth:`reset`."""
        with self._lock:
            return self._counted + len(self._rows)

    def update_record(
        self, values: Sequence[Any], outputs: Mapping[str, Any] | None = None
    ) -> None:
        """Count one validated record, and optionally the model's output for it.

        Args:
            values: the record's values in signature order, as the validator returns them
                (``float``, ``int``, ``bool``, ``str``; NaN or ``None`` for a missing value).
            outputs: the prediction's fields (``"label"`` or ``"value"``: a one-element array
                or the value itself), counted under the same lock as the record; the same as
                calling :meth:`update_outputs` afterwards, for less.

        Raises:
            ValueError: ``values`` does not have one value per input column.
        """
        if len(values) != self._width:
            raise ValueError(
                f"Expected {self._width} values in signature order, got {len(values)}."
            )
        output = _NO_OUTPUT if outputs is None else self._output_value(outputs)
        # acquire/release rather than `with`: on this path it saves a tenth of the cost.
        lock = self._lock
        lock.acquire()
        try:
            rows = self._rows
            rows.append(values)
            if output is not _NO_OUTPUT:
                self._output_values.append(output)
            if len(rows) >= _FLUSH_RECORDS:
                self._flush()
        finally:
            lock.release()

    def update_table(self, table: Table) -> None:
        """Count a validated batch, column by column.

        Raises:
            ValueError: the table's columns are not the inputs'.
        """
        if table.names != self._names:
            raise ValueError(
                f"Expected a table with columns {list(self._names)}, got {list(table.names)}."
            )
        if table.length == 0:
            return
        data = table.columns()
        counts = np.concatenate(
            [
                c.binner.count(_binned_values(spec, data[c.name]))
                for c, spec in zip(self._columns, self._specs, strict=True)
            ]
        )
        with self._lock:
            self._counts += counts
            self._counted += table.length

    def update_outputs(self, fields: Mapping[str, Any]) -> None:
        """Count outputs: the array ``fields["label"]`` or ``fields["value"]``, as profiled.

        Does nothing when the profile has no outputs, or ``fields`` lacks the profiled one.
        """
        one = self._output_value(fields)
        if one is not _NO_OUTPUT:
            with self._lock:
                self._output_values.append(one)
                if len(self._output_values) >= _FLUSH_RECORDS:
                    self._flush()
            return
        outputs = self._outputs
        if outputs is None or outputs.name not in fields:
            return
        values = np.asarray(fields[outputs.name])
        if values.ndim != 1 or len(values) == 0:
            return  # several regression targets per row are not profiled
        counts = outputs.binner.count(values)
        with self._lock:
            self._output_counts += counts

    def _output_value(self, fields: Mapping[str, Any]) -> Any:
        """One prediction's output value, or ``_NO_OUTPUT`` when ``fields`` holds no single one."""
        name = self._output_name
        if name is None:
            return _NO_OUTPUT
        value = fields.get(name)
        if type(value) is np.ndarray:
            if value.size != 1:
                return _NO_OUTPUT  # a batch's outputs
            value = value.item()
        elif isinstance(value, list | tuple):
            if len(value) != 1:
                return _NO_OUTPUT
            value = value[0]
        return _NO_OUTPUT if value is None else value

    def report(self) -> DriftReport:
        """Compare what was counted with the reference, column by column."""
        with self._lock:
            self._flush()
            counts = self._counts.copy()
            output_counts = self._output_counts.copy()
            counted = self._counted
        features = tuple(
            column.drift(counts[start : start + column.binner.size], self.min_records)
            for column, start in zip(self._columns, self._starts.tolist(), strict=True)
        )
        outputs = (
            None if self._outputs is None else self._outputs.drift(output_counts, self.min_records)
        )
        return DriftReport(features=features, outputs=outputs, count=counted)

    def reset(self) -> None:
        """Forget every count, to start a new window."""
        with self._lock:
            self._rows = []
            self._counts[:] = 0
            self._output_counts[:] = 0
            self._output_values = []
            self._counted = 0

    def _flush(self) -> None:
        # Called with the lock held: bin the buffered records, column by column, vectorized.
        outputs, values = self._outputs, self._output_values
        if outputs is not None and values:
            self._output_values = []
            # Outputs of another type than profiled are not comparable, so they are not counted.
            with contextlib.suppress(TypeError, ValueError):
                self._output_counts += outputs.binner.count(_column_values(outputs.binner, values))
        rows = self._rows
        if not rows:
            return
        self._rows = []
        try:
            by_column = list(zip(*rows, strict=True))
            counts = np.concatenate(
                [
                    column.binner.count(_column_values(column.binner, _binned_values(spec, values)))
                    for column, spec, values in zip(
                        self._columns, self._specs, by_column, strict=True
                    )
                ]
            )
        except (TypeError, ValueError):
            # A value a column cannot bin (only possible when records bypass validation):
            # count the others one by one and leave that record out.
            counts = np.zeros_like(self._counts)
            kept = 0
            for row in rows:
                try:
                    bins = [
                        start + column.binner.index(_binned_values(spec, [value]).tolist()[0])
                        if spec.type == "datetime"
                        else start + column.binner.index(value)
                        for column, spec, start, value in zip(
                            self._columns, self._specs, self._starts.tolist(), row, strict=True
                        )
                    ]
                except (TypeError, ValueError):
                    continue
                np.add.at(counts, bins, 1)
                kept += 1
            self._counts += counts
            self._counted += kept
            return
        self._counts += counts
        self._counted += len(rows)

    def __repr__(self) -> str:
        return f"<DriftMonitor columns={len(self._names)} count={self.count}>"
