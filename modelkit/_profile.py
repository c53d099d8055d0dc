"""Reference profiles: what drift statistics compare with, summarised when a bundle is saved.

:func:`profile_reference` summarises the reference data (the training frame, or the sample
input) per column: numbers by the reference's deciles, strings, booleans and declared categories
by their most frequent values, and every column by its missing rate. The profile is plain JSON
and lives in the bundle's manifest.

The bins are defined here for both sides: :class:`NumericBinner` counts the reference at save
time and what the model receives at run time (in :class:`~modelkit._drift.DriftMonitor`), and
:func:`category_keys` names a category alike on both, so that the reference fed back to its own
monitor scores zero.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ._spec import ColumnSpec, Table, TabularInputs, is_missing

__all__ = [
    "MAX_CATEGORIES",
    "PROFILE_VERSION",
    "CategoricalBinner",
    "NumericBinner",
    "binned_values",
    "category_key",
    "category_keys",
    "is_categorical",
    "profile_reference",
]

#: The version of the profile format that :func:`profile_reference` writes.
PROFILE_VERSION = 1
#: The most frequent categories a categorical column keeps as bins of their own; the rest share
#: one ``other`` bin, as do values never seen in the reference.
MAX_CATEGORIES = 20


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
        column.name: _profile_column(column, binned_values(column, data[column.name]))
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


def _profile_column(column: ColumnSpec, values: np.ndarray) -> dict[str, Any]:
    if is_categorical(column):
        key, declared = category_keys(column)
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
    counts = NumericBinner(edges).count(values).tolist()
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


def _json_number(value: Any) -> int | float | None:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, int):
        return value
    number = float(value)
    return number if math.isfinite(number) else None


# --------------------------------------------------------------------------------------------
# Bins, shared with the monitor
# --------------------------------------------------------------------------------------------


def binned_values(column: ColumnSpec, values: Any) -> Any:
    """A column's values as its bins compare them: datetimes as seconds since the epoch."""
    if column.type != "datetime":
        return values
    stamps = np.asarray(values, dtype="datetime64[us]")
    seconds = stamps.astype(np.int64) / 1e6
    seconds[np.isnat(stamps)] = math.nan
    return seconds


def is_categorical(column: ColumnSpec) -> bool:
    """Whether a column is binned by category (declared ones, strings, booleans), not by number."""
    return column.categories is not None or column.type in ("string", "boolean")


def category_keys(column: ColumnSpec) -> tuple[Callable[[Any], str], list[str] | None]:
    """How a column's values are named in a profile, and its declared categories by name."""
    if column.categories is None:
        return category_key, None
    # A declared category is named as declared, whatever form the validator gives it (1.0 for 1).
    names = {category: category_key(category) for category in column.categories}

    def key(value: Any) -> str:
        name = names.get(value)
        return category_key(value) if name is None else name

    return key, list(names.values())


def category_key(value: Any) -> str:
    """A value's name in a profile: ``"true"`` or ``"false"`` for a boolean, else its text."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


_INT64 = np.iinfo(np.int64)
# Integers up to this size convert to float64 exactly, so comparing them as floats is exact.
_EXACT_FLOAT_INT = 2**53
# Columns at least this long are binned by comparisons with each edge rather than searchsorted.
_COMPARE_ROWS = 256


class NumericBinner:
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


class CategoricalBinner:
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


def _count_each(binner: NumericBinner | CategoricalBinner, values: np.ndarray) -> np.ndarray:
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
