"""Drift statistics: a cheap streaming comparison of what a model receives with its reference.

A :class:`DriftMonitor` reads the profile that :func:`~modelkit._profile.profile_reference` wrote
into the bundle at save time, counts which bin each value the model receives falls into, and
:meth:`DriftMonitor.report` compares those counts with the reference per column through the
population stability index (PSI)::

    PSI = sum over bins of (current - reference) * ln(current / reference)

where both sides are shares of all records, missing values form a bin of their own, and a share
of zero is replaced by :data:`EPSILON` so that the logarithm stays finite. The usual reading,
kept in :data:`MODERATE_THRESHOLD` and :data:`SIGNIFICANT_THRESHOLD`, is: below 0.1 the column is
stable, from 0.1 to 0.25 it has moved moderately, above 0.25 significantly.

Counting is built for the prediction path. A record is appended to a buffer under one lock; every
thousand records, and whenever a report is made, the buffer is binned column by column in numpy,
exactly as a batch is, with no Python loop over rows for numbers. A record's output is binned at
once, from a cache of the labels seen. A monitor is safe to share between threads, and across
``os.fork()``.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from ._deps import require
from ._profile import (
    PROFILE_VERSION,
    CategoricalBinner,
    NumericBinner,
    binned_values,
    category_key,
    category_keys,
    is_categorical,
)
from ._report import bin_labels, render_drift
from ._spec import ColumnSpec, Table, TabularInputs
from ._worker import at_fork

__all__ = [
    "EPSILON",
    "MIN_RECORDS",
    "MODERATE_THRESHOLD",
    "SIGNIFICANT_THRESHOLD",
    "DriftMonitor",
    "DriftReport",
    "DriftStatus",
    "FeatureDrift",
    "drift_status",
    "population_stability_index",
]

DriftStatus = Literal["stable", "moderate", "significant", "insufficient data"]

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
        bins: the name of each bin the score compares, the missing bin last: for numbers
            ``"< 3.5"``, the ranges between edges (``3.5`` to ``4.2`` joined by an en dash),
            ``"≥ 9"`` and ``"missing"``; otherwise the categories, ``"other"`` and ``"missing"``.
        reference_shares: the reference's share of each bin.
        current_shares: the share of each bin counted, ``None`` before any record.
        kind: ``"numeric"`` (bins between edges) or ``"categorical"`` (a bin per category).
    """

    name: str
    score: float | None
    status: DriftStatus
    count: int
    reference_missing_rate: float
    current_missing_rate: float | None
    bins: tuple[str, ...]
    reference_shares: tuple[float, ...]
    current_shares: tuple[float, ...] | None
    kind: Literal["numeric", "categorical"]

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serializable dict (the bins and shares as lists)."""
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
        """One row per input column (``role`` ``"input"``), then the outputs (``"output"``): the
        scores and missing rates (the bins and shares are in :meth:`to_dict`).

        Raises:
            MissingDependencyError: pandas is not installed.
        """
        pandas = require("pandas", extra="pandas", feature="DriftReport.to_pandas()")
        rows = [{"role": "input", **feature.to_dict()} for feature in self.features]
        if self.outputs is not None:
            rows.append({"role": "output", **self.outputs.to_dict()})
        return pandas.DataFrame(rows, columns=["name", "role", *_SCORE_FIELDS])

    def _repr_html_(self) -> str:
        # A notebook shows the table and each feature's reference and live distributions.
        return render_drift(self.to_dict())


# The columns of DriftReport.to_pandas() after the name and role.
_SCORE_FIELDS = (
    "score",
    "status",
    "count",
    "reference_missing_rate",
    "current_missing_rate",
)


# --------------------------------------------------------------------------------------------
# Monitoring
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    """One monitored column (or output): its binner and the reference's share of each bin."""

    name: str
    reference: tuple[float, ...]
    binner: NumericBinner | CategoricalBinner
    bins: tuple[str, ...]

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
            bins=self.bins,
            reference_shares=self.reference,
            current_shares=None if current is None else tuple(current),
            kind="numeric" if isinstance(self.binner, NumericBinner) else "categorical",
        )


def _compile_column(
    name: str, entry: Mapping[str, Any], column: ColumnSpec | None = None
) -> _Column:
    """Rebuild a column's bins from its profile entry (``column`` is ``None`` for outputs)."""
    try:
        kind = entry["kind"]
        proportions = [float(p) for p in entry["proportions"]]
        reference = (*proportions, float(entry["missing_rate"]))
        binner: NumericBinner | CategoricalBinner
        if kind == "numeric":
            edges = [e if isinstance(e, int) else float(e) for e in entry["edges"]]
            binner = NumericBinner(edges)
        elif kind == "categorical":
            categories = [str(c) for c in entry["categories"]]
            index = {category: i for i, category in enumerate(categories)}
            size = len(categories) + 2
            if column is None:
                binner = CategoricalBinner(index, size, by_str=True)
            else:
                binner = CategoricalBinner(_lookup(column, index), size)
        else:
            raise ValueError(f"unknown kind {kind!r}")
        if binner.size != len(reference):
            raise ValueError(f"{binner.size - 1} bins but {len(proportions)} proportions")
        if binner.size >= _MAX_BINS:
            raise ValueError(f"{binner.size} bins, more than {_MAX_BINS - 1}")
        bins = tuple(bin_labels(entry))
    # OverflowError: an integer too large for a float, which JSON allows.
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"The drift profile of {name!r} is malformed: {exc}.") from None
    return _Column(name, reference, binner, bins)


def _lookup(column: ColumnSpec, index: Mapping[str, int]) -> dict[Any, int]:
    """Map the values the validator gives for a column to their bins."""
    missing = len(index) + 1
    lookup: dict[Any, int]
    if column.categories is not None:
        key, _ = category_keys(column)
        lookup = {c: index[key(c)] for c in column.categories if key(c) in index}
    elif column.type == "boolean":
        lookup = {v: index[category_key(v)] for v in (True, False) if category_key(v) in index}
    else:
        lookup = dict(index)
    # The usual missing values resolve in the fast lookup; any other NaN takes the slow path.
    for value in (None, math.nan, np.nan):
        lookup.setdefault(value, missing)
    return lookup


def _column_values(binner: NumericBinner | CategoricalBinner, values: Sequence[Any]) -> np.ndarray:
    """One buffered column as an array its binner counts as it would bin each value alone."""
    if isinstance(binner, NumericBinner):
        array = np.asarray(values)
        if array.dtype.kind in "fiu":
            return array
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


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
            expected = "categorical" if is_categorical(spec) else "numeric"
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
        # Forked with the lock held, so that no update is caught halfway (gunicorn forks workers
        # from a process that may already be serving); the child gets a fresh lock.
        at_fork(
            before=self._lock_for_fork,
            after_in_parent=self._unlock_after_fork,
            after_in_child=self._renew_lock,
        )

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
                c.binner.count(binned_values(spec, data[c.name]))
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

    def _lock_for_fork(self) -> None:
        self._lock.acquire()

    def _unlock_after_fork(self) -> None:
        self._lock.release()

    def _renew_lock(self) -> None:
        # The child has one thread: its copy of the held lock would never be released.
        self._lock = threading.Lock()

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
                    column.binner.count(_column_values(column.binner, binned_values(spec, values)))
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
                        start + column.binner.index(binned_values(spec, [value]).tolist()[0])
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
