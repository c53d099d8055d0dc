"""Validation: the checks that hold every call to a signature, compiled once per signature.

Validation is compiled into plain Python checks, so the single-record path costs a few
microseconds and builds no pydantic object (see ``_fast_path``). :class:`TabularValidator` checks
records and batches (lists of records, DataFrames, 2-D arrays) into a :class:`Table`;
:class:`TensorValidator` checks named arrays against their declared dtypes and shapes. Errors
name every bad field and record, up to a cap.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

from ._fast_path import MAX_PLANS, ModelRoute, Plan, plan_for, tuple_getter
from ._spec import (
    INT64_MAX,
    INT64_MIN,
    ColumnSpec,
    Table,
    TabularInputs,
    TensorInputs,
    TensorSpec,
    column_array,
    describe_value,
    is_dataframe,
    is_missing,
    is_series,
    microseconds,
    tensor_label,
    to_datetime64,
)
from .errors import InvalidInputError

__all__ = ["TabularValidator", "TensorValidator", "error_from"]

# Cap on how many problems one InvalidInputError lists: enough to fix a batch, small enough to log.
_MAX_REPORTED_ERRORS = 20

_FLOATS = frozenset({float})
_STRINGS = frozenset({str})
_STRINGS_OR_NONE = frozenset({str, type(None)})


# --------------------------------------------------------------------------------------------
# One value of a column
# --------------------------------------------------------------------------------------------


class _BadValueError(Exception):
    """A value does not fit its column; the message says why, without the field or index."""


_NO_MISSING = "but this field takes no missing values"


def _missing(value: Any, nullable: bool, missing: Any) -> Any:
    """``missing`` for a missing value in a nullable column; raises for any other value."""
    if is_missing(value):
        if nullable:
            return missing
        raise _BadValueError(f"got {_describe_missing(value)}, {_NO_MISSING}")
    raise _NotMissingError


class _NotMissingError(Exception):
    """The value is not a missing value: the column's own message applies."""


def _describe_missing(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "NaN"
    return "None" if value is None else repr(value)


def _number_check(column: ColumnSpec) -> Callable[[Any], Any]:
    nullable = column.nullable

    def check(value: Any) -> Any:
        kind = type(value)
        if kind is float or isinstance(value, np.floating):
            number = float(value)
            if math.isfinite(number):
                return number
            if math.isnan(number):
                if nullable:
                    return number
                raise _BadValueError(f"got NaN, {_NO_MISSING}")
            raise _BadValueError("got infinity; expected a finite number")
        if kind is int or (isinstance(value, int | np.integer) and not isinstance(value, bool)):
            try:
                return float(value)
            except OverflowError:
                too_large = f"got {describe_value(value)}, too large for a float"
                raise _BadValueError(too_large) from None
        try:
            return _missing(value, nullable, math.nan)
        except _NotMissingError:
            raise _BadValueError(f"expected a number, got {describe_value(value)}") from None

    return check


def _integer_check(column: ColumnSpec) -> Callable[[Any], Any]:
    nullable = column.nullable

    def check(value: Any) -> Any:
        if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
            number = int(value)
        elif isinstance(value, float | np.floating) and float(value).is_integer():
            number = int(value)  # an integer column read as float because it had gaps
        else:
            try:
                return _missing(value, nullable, None)
            except _NotMissingError:
                raise _BadValueError(f"expected an integer, got {describe_value(value)}") from None
        if not INT64_MIN <= number <= INT64_MAX:
            raise _BadValueError("got an integer outside the 64-bit range")
        return number

    return check


def _boolean_check(column: ColumnSpec) -> Callable[[Any], Any]:
    nullable = column.nullable

    def check(value: Any) -> Any:
        if isinstance(value, bool | np.bool_):
            return bool(value)
        try:
            return _missing(value, nullable, None)
        except _NotMissingError:
            raise _BadValueError(f"expected true or false, got {describe_value(value)}") from None

    return check


def _string_check(column: ColumnSpec) -> Callable[[Any], Any]:
    nullable = column.nullable

    def check(value: Any) -> Any:
        if isinstance(value, str):
            return value
        try:
            return _missing(value, nullable, None)
        except _NotMissingError:
            raise _BadValueError(f"expected a string, got {describe_value(value)}") from None

    return check


_NAT = np.datetime64("NaT", "us")


def _datetime_check(column: ColumnSpec) -> Callable[[Any], Any]:
    nullable = column.nullable

    def check(value: Any) -> Any:
        if is_missing(value):
            return _missing(value, nullable, _NAT)
        try:
            return to_datetime64(value)
        except OverflowError:
            raise _BadValueError(f"got {describe_value(value)}, a time out of range") from None
        except (TypeError, ValueError):
            raise _BadValueError(
                f"expected a date and time (ISO 8601, such as '2024-05-17T13:45:00'), "
                f"got {describe_value(value)}"
            ) from None

    return check


def _scalar_check(column: ColumnSpec) -> Callable[[Any], Any]:
    if column.type == "number":
        return _number_check(column)
    if column.type == "integer":
        return _integer_check(column)
    if column.type == "boolean":
        return _boolean_check(column)
    if column.type == "datetime":
        return _datetime_check(column)
    return _string_check(column)


def _column_check(column: ColumnSpec) -> Callable[[Any], Any]:
    check = _scalar_check(column)
    if column.categories is None:
        return check
    allowed = frozenset(column.categories)
    shown = list(column.categories)[:10]

    def check_category(value: Any) -> Any:
        value = check(value)
        if value in allowed or (column.nullable and is_missing(value)):
            return value
        raise _BadValueError(f"got {describe_value(value)}; expected one of {shown}")

    return check_category


# --------------------------------------------------------------------------------------------
# Tabular signatures
# --------------------------------------------------------------------------------------------


class TabularValidator:
    """Compiled checks for one tabular signature."""

    def __init__(self, inputs: TabularInputs) -> None:
        self.columns = inputs.columns
        self.names = tuple(column.name for column in inputs.columns)
        self._name_set = frozenset(self.names)
        self._checks = tuple((c.name, _column_check(c)) for c in self.columns)
        self._check_by_name = dict(self._checks)
        self._getter = tuple_getter(self.names)
        # All plain numbers: batches are one float matrix, missing values NaN where allowed.
        self._is_numeric = all(c.type == "number" and c.categories is None for c in self.columns)
        self._nullable = np.array([c.nullable for c in self.columns], dtype=bool)
        # Plans for the fast path, by the exact types of a record's values; see _fast_path.
        self._plans: dict[tuple[type, ...], Plan | None] = {}
        self._model_routes: dict[type, ModelRoute | None] = {}
        # The last DataFrame column index seen, and where the inputs are in it; see _frame_layout.
        self._last_layout: tuple[Any, tuple[int, ...], bool, bool] | None = None
        # How frames are checked, by their columns' dtypes; see _frame_plan.
        self._frame_checks: dict[tuple[Any, ...], tuple[tuple[int, str], ...] | None] = {}

    # -- single records ----------------------------------------------------------------------

    def record(self, record: Any, index: int | None = None) -> tuple[Any, ...]:
        """Check one record and return its values in signature order.

        Raises:
            InvalidInputError: naming the field and, inside a batch, the record's index.
        """
        # The fast path takes well-formed dicts, lists, tuples, 1-D arrays and pydantic records
        # with plain values, and returns exactly what the slow path would. Anything unusual goes
        # to the slow path, which alone decides what is wrong and says so.
        kind = type(record)
        width = len(self.names)
        values: tuple[Any, ...] | None = None
        route: ModelRoute | None = None
        if kind is dict:
            if len(record) == width:
                try:
                    values = self._getter(record)
                except KeyError:
                    values = None
        elif kind is list or kind is tuple:
            if len(record) == width:
                values = tuple(record)
        elif kind is np.ndarray:
            if record.ndim == 1 and len(record) == width:
                values = tuple(record.tolist())  # as the slow path reads an array
        elif isinstance(record, BaseModel):
            route = self._model_route(kind)
            fields = record.__dict__
            if route is not None and len(fields) == width:
                try:
                    values = route.getter(fields)
                except KeyError:
                    values = None
        if values is not None:
            if route is None and self._is_numeric and _FLOATS.issuperset(map(type, values)):
                # All floats: one finite sum means no NaN or infinity among them.
                if math.isfinite(sum(values)):
                    return values
            else:
                plans = self._plans if route is None else route.plans
                types = tuple(map(type, values))
                try:
                    plan = plans[types]
                except KeyError:
                    plan = self._plan(types, plans, route)
                if plan is not None:
                    checked = plan.apply(values)
                    if checked is not None:
                        return checked
        return self._record_slow(record, index)

    def _plan(
        self,
        types: tuple[type, ...],
        plans: dict[tuple[type, ...], Plan | None],
        route: ModelRoute | None,
    ) -> Plan | None:
        plan = plan_for(self.columns, types, route)
        if len(plans) < MAX_PLANS:
            plans[types] = plan
        return plan

    def _model_route(self, cls: type[BaseModel]) -> ModelRoute | None:
        try:
            return self._model_routes[cls]
        except KeyError:
            pass
        route = ModelRoute.of(cls, self.columns)
        if len(self._model_routes) < MAX_PLANS:
            self._model_routes[cls] = route
        return route

    def _record_slow(self, record: Any, index: int | None) -> tuple[Any, ...]:
        if isinstance(record, BaseModel):
            record = record.model_dump(by_alias=True)
        elif is_series(record):
            record = record.to_dict()  # one row of a DataFrame, as df.iloc[i] gives it
        if isinstance(record, Mapping):
            return self._mapping(record, index)
        if isinstance(record, np.ndarray) and record.ndim != 1:
            raise _invalid(None, index, f"expected a record, got an array of shape {record.shape}")
        if isinstance(record, Sequence | np.ndarray) and not isinstance(record, str | bytes):
            if len(record) != len(self.names):
                raise _invalid(
                    None,
                    index,
                    f"expected {len(self.names)} values in signature order "
                    f"({_preview(self.names)}), got {len(record)}",
                )
            values = record.tolist() if isinstance(record, np.ndarray) else record
            return self._values(zip(self.names, values, strict=True), index)
        raise _invalid(
            None,
            index,
            f"expected a record (a dict with fields {_preview(self.names)}), "
            f"got {describe_value(record)}",
        )

    def _mapping(self, record: Mapping[Any, Any], index: int | None) -> tuple[Any, ...]:
        inputs = f"is not an input of this model (inputs: {_preview(self.names)})"
        problems = [(name, "is missing") for name in self.names if name not in record]
        problems += [(str(key), inputs) for key in record if key not in self._name_set]
        if problems:
            raise _invalid_many(
                [(field, index, f"field {field!r} {text}") for field, text in problems]
            )
        return self._values(((name, record[name]) for name in self.names), index)

    def _values(self, pairs: Iterable[tuple[str, Any]], index: int | None) -> tuple[Any, ...]:
        values = []
        problems = []
        checks = self._check_by_name
        for name, value in pairs:
            try:
                values.append(checks[name](value))
            except _BadValueError as exc:
                problems.append((name, index, f"field {name!r} {exc}"))
            except Exception as exc:  # noqa: BLE001 - junk values may fail in arbitrary ways
                problems.append(
                    (name, index, f"field {name!r} cannot be read: {describe_value(value)} ({exc})")
                )
        if problems:
            raise _invalid_many(problems)
        return tuple(values)

    # -- batches -------------------------------------------------------------------------------

    def batch(self, batch: Any) -> Table:
        """Check a batch: a list of records, a DataFrame or a 2-D array.

        Raises:
            InvalidInputError: naming each bad field and record index (up to a cap).
        """
        if is_dataframe(batch):
            return self._frame(batch)
        if isinstance(batch, np.ndarray):
            return self._array(batch)
        if isinstance(batch, Mapping | str | bytes) or not isinstance(batch, Iterable):
            raise InvalidInputError(
                "Expected a batch (a list of records, a DataFrame or a 2-D array), got "
                f"{describe_value(batch)}; use predict() for one record."
            )
        rows = []
        problems: list[dict[str, Any]] = []
        for index, record in enumerate(batch):
            try:
                rows.append(self.record(record, index))
            except InvalidInputError as exc:
                problems.extend(exc.errors)
                if len(problems) >= _MAX_REPORTED_ERRORS:
                    break
        if problems:
            raise error_from(problems)
        return self.from_rows(rows)

    def from_rows(self, rows: list[tuple[Any, ...]]) -> Table:
        """A table of records already validated by :meth:`record` (micro-batching's input)."""
        if self._is_numeric:
            matrix = np.array(rows, dtype=np.float64).reshape(len(rows), len(self.names))
            return Table(self.names, len(rows), matrix)
        transposed = list(zip(*rows, strict=True)) if rows else [()] * len(self.names)
        data = {
            column.name: column_array(column, values)
            for column, values in zip(self.columns, transposed, strict=True)
        }
        return Table(self.names, len(rows), data)

    def _frame(self, frame: Any) -> Table:
        positions, in_order, named = self._frame_layout(frame.columns)
        # Each column's values as pandas keeps them, without a Series around each (12 us apiece,
        # the most of checking a tall frame whose columns need no conversion).
        arrays = _column_arrays(frame, positions)
        dtypes = tuple(a.dtype for a in arrays)
        try:
            checks = self._frame_checks[dtypes]
        except KeyError:
            checks = self._frame_plan(dtypes)
        if not named:
            checks = None  # rebuilt, so that the model sees the names it was trained with
        ordered = frame
        if not in_order and (checks is not None or self._is_numeric):
            ordered = frame.iloc[:, list(positions)]
        as_is = None if checks is None else _numbered(ordered)
        if self._is_numeric:
            values = ordered.to_numpy()
            if values.dtype.kind in "fiu":
                return self._numeric_matrix(values, frame=as_is)
        if checks is None:
            data = {
                c.name: self._column(c, _numpy_values(a, c))
                for a, c in zip(arrays, self.columns, strict=True)
            }
            return Table(self.names, len(frame), data)
        checked: dict[str, np.ndarray] = {}
        for j, check in checks:
            column, values = self.columns[j], arrays[j]
            if check == _NO_GAP:
                if not values.isna().any():
                    continue  # converted only if something reads it
                good = False
            elif check == _FINITE:
                good = bool(np.isfinite(values).all())
            elif check == _NO_INFINITY:
                good = not np.isinf(values).any()
            else:
                good = False
            # The column's own check converts it, or names the bad values.
            checked[column.name] = (
                values if good else self._column(column, _numpy_values(values, column))
            )

        def columns() -> dict[str, np.ndarray]:
            return {
                c.name: checked[c.name]
                if c.name in checked
                else _numpy_values(values, c).astype(object, copy=False)
                for values, c in zip(arrays, self.columns, strict=True)
            }

        lazy = len(checked) < len(self.names)
        return Table(self.names, len(frame), columns if lazy else checked, frame=as_is)

    def _frame_plan(self, dtypes: tuple[Any, ...]) -> tuple[tuple[int, str], ...] | None:
        """How a DataFrame of these column dtypes (in signature order) is checked: ``None``
        when it is rebuilt, else the check of each column of the frame taken as is.

        Text of a string dtype holds only strings: a column of it taking no missing values is
        checked for gaps, and its values converted only if something reads them. Plans are kept
        by dtypes, as the record fast path keeps them by types.
        """
        checks: tuple[tuple[int, str], ...] | None = None
        if all(_keeps_values(d, c) for d, c in zip(dtypes, self.columns, strict=True)):
            checks = tuple(
                (j, check)
                for j, (d, c) in enumerate(zip(dtypes, self.columns, strict=True))
                if (check := _kept_check(d, c)) is not None
            )
        if len(self._frame_checks) < MAX_PLANS:
            self._frame_checks[dtypes] = checks
        return checks

    def _frame_layout(self, labels: Any) -> tuple[tuple[int, ...], bool, bool]:
        """Where each input is among a DataFrame's column ``labels``, whether they are in
        signature order, and whether they are all strings (a frame labelled ``0`` or with a
        MultiIndex matches the inputs by ``str`` but is never handed to the model as it is);
        raises naming the missing, unknown and duplicate columns.

        The answer for the last ``labels`` seen is kept: a column index is immutable, and a
        service passes frames of the same columns over and over (reading pandas 3's string
        labels back costs about 10 us a call).
        """
        last = self._last_layout
        if last is not None and last[0] is labels:
            return last[1], last[2], last[3]
        present = [str(c) for c in labels]
        present_set = set(present)
        missing = [name for name in self.names if name not in present_set]
        extra = [name for name in present if name not in self._name_set]
        problems: list[tuple[str | None, int | None, str]] = [
            (n, None, f"column {n!r} is missing") for n in missing
        ]
        problems += [
            (
                n,
                None,
                f"column {n!r} is not an input of this model (inputs: {_preview(self.names)})",
            )
            for n in extra
        ]
        if len(present_set) != len(present):
            problems.append((None, None, "the DataFrame has duplicate column names"))
        if problems:
            raise _invalid_many(problems)
        where = {name: j for j, name in enumerate(present)}
        positions = tuple(where[name] for name in self.names)
        in_order = tuple(present) == self.names
        named = all(type(label) is str for label in labels)
        self._last_layout = (labels, positions, in_order, named)
        return positions, in_order, named

    def _array(self, array: np.ndarray) -> Table:
        if array.ndim != 2:
            if array.ndim == 1 and len(self.names) != 1:
                hint = "; use predict() for one record or reshape to (n_rows, n_columns)"
            else:
                hint = ""
            raise InvalidInputError(
                f"Expected a 2-D array of shape (n_rows, {len(self.names)}), "
                f"got shape {array.shape}{hint}."
            )
        if array.shape[1] != len(self.names):
            raise InvalidInputError(
                f"Expected {len(self.names)} columns ({_preview(self.names)}), "
                f"got {array.shape[1]}."
            )
        if self._is_numeric and array.dtype.kind in "fiu":
            return self._numeric_matrix(array)
        data = {c.name: self._column(c, array[:, j]) for j, c in enumerate(self.columns)}
        return Table(self.names, array.shape[0], data)

    def _numeric_matrix(self, matrix: np.ndarray, *, frame: Any = None) -> Table:
        if matrix.dtype.kind == "f":
            bad = ~np.isfinite(matrix)
            if bad.any() and self._nullable.any():
                bad &= ~(np.isnan(matrix) & self._nullable)
            if bad.any():
                rows, cols = np.nonzero(bad)
                problems = []
                for row, col in list(zip(rows.tolist(), cols.tolist(), strict=True))[
                    :_MAX_REPORTED_ERRORS
                ]:
                    value = matrix[row, col]
                    text = (
                        f"got NaN, {_NO_MISSING}"
                        if np.isnan(value)
                        else "got infinity; expected a finite number"
                    )
                    problems.append((self.names[col], row, f"field {self.names[col]!r} {text}"))
                raise _invalid_many(problems)
        return Table(self.names, matrix.shape[0], matrix, frame=frame)

    def _column(self, column: ColumnSpec, values: np.ndarray) -> np.ndarray:
        """Check one column of a batch, vectorized where the dtype allows it."""
        kind = values.dtype.kind
        if column.categories is None:
            if column.type == "number" and kind in "fiu":
                as_float = values.astype(np.float64, copy=False)
                # One pass over the column when it is good, the usual case; the mask only if not.
                good = (
                    not np.isinf(as_float).any()
                    if column.nullable
                    else bool(np.isfinite(as_float).all())
                )
                if not good:
                    bad = ~np.isfinite(as_float)
                    if column.nullable:
                        bad &= ~np.isnan(as_float)
                    self._raise_first_bad(column, values, np.flatnonzero(bad))
                return as_float
            if column.type == "integer" and (
                kind == "i" or (kind == "u" and (not values.size or values.max() <= INT64_MAX))
            ):
                return values
            if column.type == "integer" and kind == "f":
                return self._integral_floats(column, values)
            if column.type == "boolean" and kind == "b":
                return values
            if column.type == "datetime" and kind == "M":
                stamps = microseconds(values)
                bad = np.isnat(stamps) & ~np.isnat(values)  # out of range
                if not column.nullable:
                    bad |= np.isnat(values)
                if bad.any():
                    self._raise_first_bad(column, values, np.flatnonzero(bad))
                return stamps
        if column.type == "string" and kind in "OU":
            # All plain str (and declared categories): one pass at C speed, the common case of
            # a DataFrame's text column. Anything else is checked value by value below.
            listed = values.tolist()
            types = set(map(type, listed))
            if (_STRINGS.issuperset(types) or (column.nullable and types <= _STRINGS_OR_NONE)) and (
                column.categories is None
                or frozenset(column.categories).issuperset(v for v in listed if v is not None)
            ):
                return values if kind == "O" else values.astype(object)
        # Object, string or categorical data: check each value, as records are checked.
        return column_array(column, self._checked_values(column, values.tolist()))

    def _checked_values(self, column: ColumnSpec, values: list[Any]) -> list[Any]:
        check = _column_check(column)
        name = column.name
        out = []
        problems = []
        for index, value in enumerate(values):
            try:
                out.append(check(value))
            except _BadValueError as exc:
                problems.append((name, index, f"field {name!r} {exc}"))
                if len(problems) >= _MAX_REPORTED_ERRORS:
                    break
        if problems:
            raise _invalid_many(problems)
        return out

    def _integral_floats(self, column: ColumnSpec, values: np.ndarray) -> np.ndarray:
        """An integer column given as floats (pandas reads integers with gaps as floats)."""
        missing = np.isnan(values)
        present = values[~missing]
        bad = ~missing & ~(np.isfinite(values) & (np.floor(values) == values))
        bad[~missing] |= (present < INT64_MIN) | (present >= 2.0**63)
        if not column.nullable:
            bad |= missing
        if bad.any():
            self._raise_first_bad(column, values, np.flatnonzero(bad))
        if missing.any():
            return values.astype(np.float64, copy=False)  # NaN stands for the missing values
        return values.astype(np.int64)

    def _raise_first_bad(self, column: ColumnSpec, values: np.ndarray, indices: np.ndarray) -> None:
        check = _column_check(column)
        problems = []
        for index in indices[:_MAX_REPORTED_ERRORS].tolist():
            try:
                check(values[index])
            except _BadValueError as exc:
                problems.append((column.name, index, f"field {column.name!r} {exc}"))
        raise _invalid_many(problems)


def _keeps_values(dtype: Any, column: ColumnSpec) -> bool:
    """Whether a DataFrame column of ``dtype`` reaches the model as it would after validation:
    the dtype the model was trained on, for numbers, booleans and strings (objects, categories
    and datetimes are rebuilt: missing markers, unseen categories and time zones change)."""
    if _dtype_name(dtype) != column.dtype:
        return False
    if isinstance(dtype, np.dtype):
        return dtype.kind in "fiub"
    if _is_text(dtype):
        return column.type == "string" and column.categories is None
    return getattr(dtype, "kind", "O") in "fiub"


# The checks of a column in a DataFrame taken as is (see TabularValidator._frame_plan): the
# column's own check runs only when one of them fails, to name the bad values.
_FINITE = "finite"  # float64 numbers taking no missing value
_NO_INFINITY = "no infinity"  # float64 numbers taking missing values
_NO_GAP = "no gap"  # text taking no missing value
_COLUMN = "column"  # anything else: the column's own check


def _kept_check(dtype: Any, column: ColumnSpec) -> str | None:
    """The check of a column of ``dtype`` in a frame taken as is; ``None`` for text that takes
    missing values, which holds nothing else."""
    if _is_text(dtype):
        return None if column.nullable else _NO_GAP
    if dtype == np.float64 and column.type == "number" and column.categories is None:
        return _NO_INFINITY if column.nullable else _FINITE
    return _COLUMN


@functools.lru_cache(maxsize=256)
def _dtype_name(dtype: Any) -> str:
    """``str(dtype)``, which numpy spells out anew at about 2 us a call."""
    return str(dtype)


def _column_arrays(frame: Any, positions: Sequence[int]) -> list[Any]:
    """The columns at ``positions`` as pandas keeps them: numpy arrays for numpy dtypes (the
    frame's own memory, not copies, read-only so that nothing downstream writes into the
    caller's frame), extension arrays for pandas' own dtypes.

    ``DataFrame._get_column_array`` reads them straight from the frame's blocks; a pandas
    without it goes through a Series per column.
    """
    get = getattr(frame, "_get_column_array", None)
    if get is None:
        arrays = [frame.iloc[:, j].array for j in positions]
    else:
        arrays = [get(j) for j in positions]
    columns: list[Any] = []
    for values in arrays:
        if isinstance(values.dtype, np.dtype):
            # Datetimes and timedeltas of numpy dtypes come in pandas' arrays around numpy's.
            plain = values if isinstance(values, np.ndarray) else np.asarray(values.to_numpy())
            columns.append(_read_only(plain))
        else:
            columns.append(values)
    return columns


def _read_only(values: np.ndarray) -> np.ndarray:
    """A read-only view of ``values`` (the caller's memory stays the caller's)."""
    view: np.ndarray = values.view()
    view.flags.writeable = False
    return view


def _numbered(frame: Any) -> Any:
    """``frame`` with rows numbered from 0, as a rebuilt frame has them (a filtered batch keeps
    its labels, which a pipeline joining frames of its own would misalign); a shallow copy."""
    pandas = sys.modules["pandas"]  # imported: the frame is one of its DataFrames
    index = frame.index
    if isinstance(index, pandas.RangeIndex) and index.start == 0 and index.step == 1:
        return frame
    return frame.set_axis(pandas.RangeIndex(len(frame)), axis=0)


def _is_text(dtype: Any) -> bool:
    """Whether ``dtype`` is one of pandas' string dtypes, which hold only strings and gaps."""
    return not isinstance(dtype, np.dtype) and getattr(dtype, "name", "") in ("str", "string")


def _numpy_values(values: Any, column: ColumnSpec) -> Any:
    """A DataFrame column's values (see :func:`_column_arrays`) as numpy values, with pandas'
    missing markers made numpy's."""
    dtype = values.dtype
    if isinstance(dtype, np.dtype):
        if dtype.kind == "O" and column.type == "string" and column.nullable:
            # NaN is how pandas marks a missing string: as None, the column checks in one pass.
            missing = sys.modules["pandas"].isna(values)
            if missing.any():
                values = values.copy()
                values[missing] = None
        return values
    kind = getattr(dtype, "kind", "O")
    if kind == "M":  # datetimes with a time zone: compared in UTC, as single values are
        return values.tz_convert("UTC").tz_localize(None).to_numpy()
    has_missing = bool(values.isna().any())
    # Nullable Int64, Float64 and boolean columns: floats with NaN, or the plain dtype.
    if kind in "fiu" and column.type in ("number", "integer"):
        if has_missing or kind == "f":
            return values.to_numpy(dtype=np.float64, na_value=math.nan)
        return values.to_numpy(dtype=np.int64 if kind in "iu" else np.float64)
    if kind == "b" and column.type == "boolean" and not has_missing:
        return values.to_numpy(dtype=np.bool_)
    # Strings, categoricals and the rest: objects, missing as None.
    return values.to_numpy(dtype=object, na_value=None)


# --------------------------------------------------------------------------------------------
# Tensor signatures
# --------------------------------------------------------------------------------------------

_TENSOR_KINDS = {
    "f": "fiub",  # a float tensor takes floats, integers and booleans
    "i": "iub",
    "u": "iub",
    "b": "b",
    "O": "OUS",
    "U": "OUS",
}


class TensorValidator:
    """Compiled checks for one tensor signature: names, element kinds and declared shapes."""

    def __init__(self, inputs: TensorInputs) -> None:
        self.tensors = inputs.tensors
        self.names = tuple(t.name for t in inputs.tensors)
        self._dtypes = {
            t.name: np.dtype(object if t.dtype == "string" else t.dtype) for t in self.tensors
        }

    @property
    def has_batch_axis(self) -> bool:
        """Whether every input declares a dynamic first axis."""
        return all(t.has_batch_axis for t in self.tensors)

    def record(self, record: Any, index: int | None = None) -> dict[str, np.ndarray]:
        """Check one mapping of input name to array and return the arrays, cast to their dtypes."""
        if isinstance(record, np.ndarray) and len(self.names) == 1:
            record = {self.names[0]: record}
        if not isinstance(record, Mapping):
            raise _invalid(
                None,
                index,
                f"expected a mapping of input name to array ({_preview(self.names)}), "
                f"got {describe_value(record)}",
            )
        missing = [n for n in self.names if n not in record]
        extra = [k for k in record if k not in self._dtypes]
        problems = [(n, index, f"input {n!r} is missing") for n in missing]
        problems += [
            (
                str(k),
                index,
                f"input {k!r} is not an input of this model (inputs: {_preview(self.names)})",
            )
            for k in extra
        ]
        if problems:
            raise _invalid_many(problems)
        return {t.name: self._tensor(t, record[t.name], index) for t in self.tensors}

    def _tensor(self, spec: TensorSpec, value: Any, index: int | None) -> np.ndarray:
        dtype = self._dtypes[spec.name]
        try:
            array = np.asarray(value)
        except Exception as exc:  # noqa: BLE001 - ragged or exotic values fail in many ways
            raise _invalid(
                spec.name, index, f"input {spec.name!r} is not an array: {exc}"
            ) from None
        accepted = _TENSOR_KINDS.get(dtype.kind, dtype.kind)
        if array.dtype.kind not in accepted:
            raise _invalid(
                spec.name,
                index,
                f"input {spec.name!r} expects {spec.dtype} values, got an array of {array.dtype}",
            )
        if dtype.kind in "iu" and array.dtype.kind in "iu" and array.size:
            info = np.iinfo(dtype.type)
            if array.min() < info.min or array.max() > info.max:
                raise _invalid(
                    spec.name,
                    index,
                    f"input {spec.name!r} has values outside the {spec.dtype} range",
                )
        if (
            dtype.kind == "O"
            and array.size
            and not all(isinstance(v, str) for v in array.ravel().tolist())
        ):
            raise _invalid(spec.name, index, f"input {spec.name!r} expects strings")
        if spec.shape is not None and (
            array.ndim != len(spec.shape)
            or any(
                isinstance(d, int) and d != n for d, n in zip(spec.shape, array.shape, strict=True)
            )
        ):
            raise _invalid(
                spec.name,
                index,
                f"input {spec.name!r} expects shape {tensor_label(spec)}, got {list(array.shape)}",
            )
        return array.astype(dtype, copy=False)


# --------------------------------------------------------------------------------------------
# Errors naming each bad field and record
# --------------------------------------------------------------------------------------------


def _preview(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _where(index: int | None) -> str:
    return "" if index is None else f"Record {index}: "


def _invalid(field: str | None, index: int | None, message: str) -> InvalidInputError:
    return _invalid_many([(field, index, message)])


def _invalid_many(problems: Sequence[tuple[str | None, int | None, str]]) -> InvalidInputError:
    return error_from([{"field": f, "index": i, "message": m} for f, i, m in problems])


def error_from(problems: list[dict[str, Any]]) -> InvalidInputError:
    """One error for a list of problems (``field``, ``index``, ``message``), the first one told."""
    first = problems[0]
    text = _where(first["index"]) + first["message"]
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    text += "."
    return InvalidInputError(text, field=first["field"], index=first["index"], errors=problems)
