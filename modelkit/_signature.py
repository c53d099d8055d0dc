"""Signatures: what a model takes and gives, and the checks that hold every call to them.

A signature is either *tabular* (named, typed columns: one record is one row) or *tensor* (named
arrays whose dtypes and shapes the graph declares), or *schema* for custom models typed by pydantic.
Validation is compiled once per signature into plain Python checks, so the single-record path
costs a few microseconds and builds no pydantic object, while :meth:`Signature.input_model` still
gives the equivalent pydantic model and JSON Schema for documentation and web integrations.
"""

from __future__ import annotations

import datetime as dt
import math
import operator
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
import pydantic
from pydantic import BaseModel, ConfigDict, Field

from .errors import InvalidInputError

__all__ = [
    "ColumnSpec",
    "Signature",
    "Table",
    "TensorSpec",
    "infer_tabular_signature",
]

ColumnType = Literal["number", "integer", "boolean", "string", "datetime"]
Task = Literal["classification", "regression", "tensor", "custom"]

# Cap on how many problems one InvalidInputError lists: enough to fix a batch, small enough to log.
_MAX_REPORTED_ERRORS = 20
_NUMBERS = frozenset({float, int})


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ColumnSpec(_Spec):
    """One named column of a tabular signature.

    Attributes:
        name: the field name records use.
        type: ``number``, ``integer``, ``boolean``, ``string`` or ``datetime``.
        dtype: the dtype the model was trained on (numpy or pandas name), used to rebuild inputs.
        categories: the allowed values, when declared by the user (``Literal[...]``); ``None``
            means any value of the type goes to the model, which decides.
        nullable: whether the model takes a missing value (``None``, NaN, ``pd.NA``, ``pd.NaT``)
            here. Saving a fitted model finds this out by asking the model, column by column.
        dtype_categories: for a pandas ``category`` column, the categories the model was trained
            on, in order, to rebuild the Categorical; values outside them still reach the model.
        missing_marker: how the model saw a missing value in an ``object`` column: ``"nan"``
            (as pandas reads files) or ``"none"`` (a model that learned ``None`` as a value of
            its own, which scikit-learn's imputers do not take for missing).
    """

    name: str = Field(min_length=1)
    type: ColumnType
    dtype: str
    categories: tuple[str | int | float | bool, ...] | None = None
    nullable: bool = False
    dtype_categories: tuple[str | int | float | bool, ...] | None = None
    missing_marker: Literal["nan", "none"] = "nan"


class TensorSpec(_Spec):
    """One named tensor: element type and shape (``None`` or a name for a dynamic axis)."""

    name: str
    dtype: str
    shape: tuple[int | str | None, ...] | None = None

    @property
    def has_batch_axis(self) -> bool:
        """Whether the first axis is dynamic, so that rows can be stacked along it."""
        return bool(self.shape) and not isinstance(self.shape[0], int)  # type: ignore[index]


class TabularInputs(_Spec):
    kind: Literal["tabular"] = "tabular"
    columns: tuple[ColumnSpec, ...] = Field(min_length=1)


class TensorInputs(_Spec):
    kind: Literal["tensor"] = "tensor"
    tensors: tuple[TensorSpec, ...] = Field(min_length=1)


class SchemaInputs(_Spec):
    kind: Literal["schema"] = "schema"
    json_schema: dict[str, Any]


class Outputs(_Spec):
    """What a model gives back.

    Attributes:
        task: ``classification`` (``.label`` and ``.probabilities``), ``regression`` (``.value``),
            ``tensor`` (named arrays) or ``custom`` (a pydantic model, see ``json_schema``).
        classes: the classifier's classes, in the order of its probability columns.
        has_probabilities: whether the classifier gives probabilities.
        tensors: the named outputs of a tensor model.
        json_schema: the JSON Schema of a custom model's output.
    """

    task: Task
    classes: tuple[str | int | float | bool, ...] | None = None
    has_probabilities: bool = False
    tensors: tuple[TensorSpec, ...] | None = None
    json_schema: dict[str, Any] | None = None


class Signature(_Spec):
    """The inputs a model accepts and the outputs it gives."""

    inputs: TabularInputs | TensorInputs | SchemaInputs = Field(discriminator="kind")
    outputs: Outputs

    @property
    def kind(self) -> Literal["tabular", "tensor", "schema"]:
        """``tabular``, ``tensor`` or ``schema``."""
        return self.inputs.kind

    @property
    def columns(self) -> tuple[ColumnSpec, ...]:
        """The columns of a tabular signature (empty for other kinds)."""
        return self.inputs.columns if isinstance(self.inputs, TabularInputs) else ()

    @property
    def tensors(self) -> tuple[TensorSpec, ...]:
        """The input tensors of a tensor signature (empty for other kinds)."""
        return self.inputs.tensors if isinstance(self.inputs, TensorInputs) else ()

    @property
    def names(self) -> tuple[str, ...]:
        """The input field names, in signature order."""
        return tuple(c.name for c in self.columns) + tuple(t.name for t in self.tensors)

    def input_model(self) -> type[BaseModel]:
        """The pydantic model equivalent to one input record (for schemas and web frameworks)."""
        return _input_model(self)

    def input_json_schema(self) -> dict[str, Any]:
        """The JSON Schema of one input record."""
        if isinstance(self.inputs, SchemaInputs):
            return dict(self.inputs.json_schema)
        return self.input_model().model_json_schema(by_alias=True)

    def output_json_schema(self) -> dict[str, Any]:
        """The JSON Schema of one output."""
        return _output_json_schema(self.outputs)

    def __str__(self) -> str:
        if isinstance(self.inputs, TabularInputs):
            columns = self.inputs.columns
            inputs = ", ".join(f"{c.name}: {_column_label(c)}" for c in columns[:6])
            if len(columns) > 6:
                inputs += f", ... ({len(columns)} columns)"
        elif isinstance(self.inputs, TensorInputs):
            inputs = ", ".join(f"{t.name}: {_tensor_label(t)}" for t in self.inputs.tensors)
        else:
            inputs = str(self.inputs.json_schema.get("title", "record"))
        out = self.outputs
        if out.task == "classification":
            outputs = f"label of {list(out.classes)}" if out.classes else "label"
            outputs += " + probabilities" if out.has_probabilities else ""
        elif out.task == "regression":
            outputs = "value"
        elif out.task == "tensor":
            outputs = ", ".join(f"{t.name}: {_tensor_label(t)}" for t in out.tensors or ())
        else:
            outputs = str((out.json_schema or {}).get("title", "output"))
        return f"({inputs}) -> {outputs}"


def _column_label(column: ColumnSpec) -> str:
    label = column.type if column.categories is None else f"one of {list(column.categories)}"
    return f"{label} | None" if column.nullable else label


def _tensor_label(tensor: TensorSpec) -> str:
    dims = (
        "?"
        if tensor.shape is None
        else ", ".join("?" if d is None else str(d) for d in tensor.shape)
    )
    return f"{tensor.dtype}[{dims}]"


# --------------------------------------------------------------------------------------------
# Inference from sample inputs
# --------------------------------------------------------------------------------------------


def is_dataframe(obj: object) -> bool:
    # Duck-typed so that checking for a DataFrame never imports pandas.
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "columns") and hasattr(obj, "dtypes")


def is_series(obj: object) -> bool:
    # Duck-typed, as is_dataframe.
    return type(obj).__name__ == "Series" and hasattr(obj, "index") and hasattr(obj, "to_dict")


def infer_tabular_signature(sample: Any) -> tuple[TabularInputs, str]:
    """Infer tabular inputs from a sample batch.

    Args:
        sample: a pandas DataFrame, a 2-D array (or list of lists), or a list of dicts (one dict
            is taken as a batch of one).

    Returns:
        The inputs, and the layout the sample had: ``dataframe``, ``array`` or ``records``.

    Raises:
        InvalidInputError: the sample is empty, ragged, or has a column type signatures cannot hold.
    """
    if is_dataframe(sample):
        return TabularInputs(columns=tuple(_infer_frame_columns(sample))), "dataframe"
    if isinstance(sample, Mapping):
        sample = [sample]
    if (
        isinstance(sample, Sequence)
        and not isinstance(sample, str | bytes)
        and sample
        and all(isinstance(row, Mapping) for row in sample)
    ):
        return TabularInputs(columns=tuple(_infer_record_columns(sample))), "records"
    try:
        array = np.asarray(sample)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"Cannot infer a signature from the sample input: {exc}") from exc
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise InvalidInputError(
            "Cannot infer a signature from the sample input: expected a DataFrame, a non-empty "
            f"2-D array or a list of dicts, got {_describe_type(sample)} with shape {array.shape}."
        )
    columns = [
        _infer_array_column(f"x{j}", array[:, j], str(array.dtype)) for j in range(array.shape[1])
    ]
    return TabularInputs(columns=tuple(columns)), "array"


_KIND_TYPES: dict[str, ColumnType] = {
    "f": "number",
    "i": "integer",
    "u": "integer",
    "b": "boolean",
    "M": "datetime",
}


def _infer_frame_columns(frame: Any) -> Iterable[ColumnSpec]:
    if len(frame) == 0:
        raise InvalidInputError("Cannot infer a signature from an empty DataFrame.")
    for name in frame.columns:
        if not isinstance(name, str):
            raise InvalidInputError(
                f"Cannot infer a signature: column {name!r} is not named by a string.",
                field=str(name),
            )
        series = frame[name]
        dtype = series.dtype
        nullable = bool(series.isna().any())
        if str(dtype) == "category":
            # The model decides about values it never saw; the categories only rebuild its input.
            levels = tuple(python_scalar(c) for c in dtype.categories)
            kind = _common_type(name, levels) if levels else _frame_type(dtype.categories.dtype)
            yield ColumnSpec(
                name=name,
                type=kind or "string",
                dtype="category",
                nullable=nullable,
                dtype_categories=levels,
            )
            continue
        kind = _frame_type(dtype)
        marker: Literal["nan", "none"] = "nan"
        if kind is None and getattr(dtype, "kind", "O") in "OSU":
            # Object columns hold anything: their present values decide, and a column with none
            # in the sample is text, as a pandas column of missing values usually is.
            listed = series.tolist()
            values = [v for v in listed if not is_missing(v)]
            kind = _common_type(name, values) if values else "string"
            if None in listed:
                marker = "none"  # as the model was trained, if the sample is training data
        if kind is None:
            raise InvalidInputError(
                f"Cannot infer a signature: column {name!r} has dtype {dtype}, which signatures do "
                "not support; convert it to numbers, strings or datetimes first.",
                field=name,
            )
        yield ColumnSpec(
            name=name, type=kind, dtype=str(dtype), nullable=nullable, missing_marker=marker
        )


def _frame_type(dtype: Any) -> ColumnType | None:
    """The column type of a numpy or pandas dtype, or None when the values must decide."""
    if str(dtype) in ("str", "string"):
        return "string"
    kind = getattr(dtype, "kind", "O")
    # Nullable Int64, boolean and Float64 keep their kind: missing values do not change the type.
    return _KIND_TYPES.get(kind)


def _infer_array_column(name: str, values: np.ndarray, dtype: str) -> ColumnSpec:
    kind = values.dtype.kind
    if kind in "fiubM":
        mapped = _KIND_TYPES[kind]
        nullable = bool(
            (kind == "f" and np.isnan(values).any()) or (kind == "M" and np.isnat(values).any())
        )
        return ColumnSpec(name=name, type=mapped, dtype=dtype, nullable=nullable)
    if kind in "OSU":
        present = [v for v in values.tolist() if not is_missing(v)]
        nullable = len(present) != len(values)
        return ColumnSpec(
            name=name, type=_common_type(name, present), dtype=dtype, nullable=nullable
        )
    raise InvalidInputError(
        f"Cannot infer a signature: column {name!r} has dtype {values.dtype}.", field=name
    )


def _infer_record_columns(records: Sequence[Mapping[str, Any]]) -> Iterable[ColumnSpec]:
    names: dict[str, None] = {}
    for record in records:
        for key in record:
            if not isinstance(key, str):
                raise InvalidInputError(f"Cannot infer a signature: key {key!r} is not a string.")
            names.setdefault(key)
    for name in names:
        values = [record.get(name) for record in records]
        present = [v for v in values if not is_missing(v)]
        kind = _common_type(name, present)
        yield ColumnSpec(
            name=name, type=kind, dtype=_DEFAULT_DTYPES[kind], nullable=len(present) != len(values)
        )


_DEFAULT_DTYPES: dict[str, str] = {
    "number": "float64",
    "integer": "int64",
    "boolean": "bool",
    "string": "object",
    "datetime": "datetime64[us]",
}


def _common_type(name: str, values: Sequence[Any]) -> ColumnType:
    kinds = {_scalar_type(v) for v in values}
    if kinds == {"integer", "number"}:
        return "number"
    if len(kinds) == 1:
        return kinds.pop()
    if not kinds:
        raise InvalidInputError(
            f"Cannot infer a signature: column {name!r} has no values in the sample.", field=name
        )
    raise InvalidInputError(
        f"Cannot infer a signature: column {name!r} mixes {sorted(kinds)} values.", field=name
    )


def _scalar_type(value: Any) -> ColumnType:
    if isinstance(value, bool | np.bool_):
        return "boolean"
    if isinstance(value, int | np.integer):
        return "integer"
    if isinstance(value, float | np.floating):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dt.date | np.datetime64):  # datetime is a date
        return "datetime"
    raise InvalidInputError(
        f"Cannot infer a signature: unsupported value {_describe(value)} in the sample."
    )


def python_scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


_MISSING_TYPE_NAMES = frozenset({"NAType", "NaTType"})


def is_missing(value: Any) -> bool:
    """Whether ``value`` stands for a missing value: ``None``, NaN, ``pd.NA`` or ``pd.NaT``."""
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return bool(value != value)  # noqa: PLR0124 - NaN is unequal to itself
    if isinstance(value, np.datetime64 | np.timedelta64):
        return bool(np.isnat(value))
    # Told by type name so that checking never imports pandas.
    return type(value).__name__ in _MISSING_TYPE_NAMES


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


class _BadValueError(Exception):
    """A value does not fit its column; the message says why, without the field or index."""


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{_describe_type(value)} {text}"


def _describe_type(value: Any) -> str:
    return type(value).__name__


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
                raise _BadValueError(f"got {_describe(value)}, too large for a float") from None
        try:
            return _missing(value, nullable, math.nan)
        except _NotMissingError:
            raise _BadValueError(f"expected a number, got {_describe(value)}") from None

    return check


_INT64 = np.iinfo(np.int64)
_INT64_MIN = int(_INT64.min)
_INT64_MAX = int(_INT64.max)


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
                raise _BadValueError(f"expected an integer, got {_describe(value)}") from None
        # Models take 64-bit integers; a larger one would fail deep inside numpy.
        if not _INT64.min <= number <= _INT64.max:
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
            raise _BadValueError(f"expected true or false, got {_describe(value)}") from None

    return check


def _string_check(column: ColumnSpec) -> Callable[[Any], Any]:
    nullable = column.nullable

    def check(value: Any) -> Any:
        if isinstance(value, str):
            return value
        try:
            return _missing(value, nullable, None)
        except _NotMissingError:
            raise _BadValueError(f"expected a string, got {_describe(value)}") from None

    return check


# Microseconds, as pandas 3 keeps datetimes: nanoseconds reach only years 1678 to 2262, and real
# tables hold "9999-12-31" for an open end.
DATETIME_UNIT = "datetime64[us]"
_NAT = np.datetime64("NaT", "us")


def _datetime_check(column: ColumnSpec) -> Callable[[Any], Any]:
    nullable = column.nullable

    def check(value: Any) -> Any:
        if is_missing(value):
            return _missing(value, nullable, _NAT)
        try:
            return to_datetime64(value)
        except OverflowError:
            raise _BadValueError(f"got {_describe(value)}, a time out of range") from None
        except (TypeError, ValueError):
            raise _BadValueError(
                f"expected a date and time (ISO 8601, such as '2024-05-17T13:45:00'), "
                f"got {_describe(value)}"
            ) from None

    return check


def to_datetime64(value: Any) -> np.datetime64:
    """A timestamp as ``datetime64[us]``, in UTC when it carries a time zone.

    Takes ``datetime`` (and pandas' ``Timestamp``), ``date``, ``numpy.datetime64`` and ISO 8601
    strings; raises ``TypeError`` or ``ValueError`` for anything else, or a time out of range.
    """
    if isinstance(value, str):
        text = value.strip()
        # Python 3.10's fromisoformat does not read the common "Z" suffix.
        value = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        to_numpy = getattr(value, "to_datetime64", None)  # pandas' own unit
        value = to_numpy() if to_numpy else np.datetime64(value)
    if isinstance(value, np.datetime64):
        stamps = microseconds(np.asarray([value]))
        if np.isnat(stamps[0]) and not np.isnat(value):
            raise OverflowError("a time out of range")
        stamp: np.datetime64 = stamps[0]
        return stamp
    raise TypeError(f"not a date and time: {type(value).__name__}")


_COARSER_UNITS = frozenset({"Y", "M", "W", "D", "h", "m", "s", "ms", "generic"})


def microseconds(values: np.ndarray) -> np.ndarray:
    """Datetimes in microseconds; a value the unit cannot hold becomes NaT (numpy would wrap)."""
    stamps = values.astype(DATETIME_UNIT)
    if np.datetime_data(values.dtype)[0] in _COARSER_UNITS:
        # numpy casts without overflow checks: from a coarser unit (finer ones only truncate), a
        # value that does not come back was out of range.
        wrapped = (stamps.astype(values.dtype) != values) & ~np.isnat(values)
        if wrapped.any():
            stamps[wrapped] = np.datetime64("NaT")
    return stamps


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
        raise _BadValueError(f"got {_describe(value)}; expected one of {shown}")

    return check_category


@dataclass(frozen=True)
class Table:
    """A validated tabular batch: columns in signature order, as a matrix or per column.

    Numeric signatures keep one 2-D matrix (no copy per column); mixed ones keep one array per
    column. Adapters take the form they need through :meth:`matrix` and :meth:`columns`.

    Columns by type, missing values included: numbers are ``float64`` (NaN); integers ``int64``,
    or ``float64`` with NaN when a value is missing; booleans ``bool``, or objects with ``None``
    when a value is missing; strings objects (``None``); datetimes ``datetime64[us]`` (NaT).
    Columns with declared categories (other than numbers) are objects.
    """

    names: tuple[str, ...]
    length: int
    data: np.ndarray | dict[str, np.ndarray]

    def matrix(self, dtype: Any = None) -> np.ndarray:
        """All columns as one 2-D array, cast to ``dtype`` when given."""
        if isinstance(self.data, np.ndarray):
            matrix = self.data
        elif not self.names:
            matrix = np.empty((self.length, 0))
        else:
            matrix = np.column_stack([self.data[name] for name in self.names])
        return matrix if dtype is None else matrix.astype(dtype, copy=False)

    def columns(self) -> dict[str, np.ndarray]:
        """Each column as a 1-D array."""
        if isinstance(self.data, np.ndarray):
            return {name: self.data[:, j] for j, name in enumerate(self.names)}
        return self.data

    def records(self) -> list[dict[str, Any]]:
        """One dict of Python values per row (datetimes as ``datetime``, missing as ``None``)."""
        columns = [
            # tolist() gives nanoseconds as bare integers; microseconds give datetime objects.
            column.astype("datetime64[us]").tolist()
            if column.dtype.kind == "M"
            else column.tolist()
            for column in self.columns().values()
        ]
        return [dict(zip(self.names, row, strict=True)) for row in zip(*columns, strict=True)]


def record_table(columns: Sequence[ColumnSpec], values: Sequence[Any]) -> Table:
    """One checked record as a one-row :class:`Table`, its columns typed as in a batch."""
    data = {c.name: column_array(c, (v,)) for c, v in zip(columns, values, strict=True)}
    return Table(tuple(data), 1, data)


class TabularValidator:
    """Compiled checks for one tabular signature."""

    def __init__(self, inputs: TabularInputs) -> None:
        self.columns = inputs.columns
        self.names = tuple(column.name for column in inputs.columns)
        self._name_set = frozenset(self.names)
        self._checks = tuple((c.name, _column_check(c)) for c in self.columns)
        self._check_by_name = dict(self._checks)
        self._getter = _tuple_getter(self.names)
        # All plain numbers: batches are one float matrix, missing values NaN where allowed.
        self._is_numeric = all(c.type == "number" and c.categories is None for c in self.columns)
        self._nullable = np.array([c.nullable for c in self.columns], dtype=bool)
        # Plans for the fast path, by the exact types of a record's values; see _plan.
        self._plans: dict[tuple[type, ...], _Plan | None] = {}
        self._model_routes: dict[type, _ModelRoute | None] = {}

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
        route: _ModelRoute | None = None
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
        plans: dict[tuple[type, ...], _Plan | None],
        route: _ModelRoute | None,
    ) -> _Plan | None:
        """The checks left for values of these exact types, or None to take the slow path."""
        floats: list[int] = []
        nan_allowed: list[int] = []
        to_float: list[int] = []
        to_nan: list[int] = []
        nan_to_none: list[int] = []
        int64: list[int] = []
        categories: list[tuple[int, frozenset[Any]]] = []
        plan: _Plan | None = None
        for position, (column, kind) in enumerate(zip(self.columns, types, strict=True)):
            if route is not None and kind not in route.field_types[position]:
                break  # model_dump might not give this value back as it is
            if kind is type(None):
                if not column.nullable or column.type == "datetime":
                    break
                if column.type == "number":
                    to_nan.append(position)
                continue  # a missing value skips the category check, as in the slow path
            if kind is float and column.nullable and column.type in _NAN_AS_NONE:
                # NaN for missing, as df.to_dict("records") gives it: None if it is NaN.
                nan_to_none.append(position)
                continue
            if kind not in _PLAIN_TYPES[column.type]:
                break
            if column.type == "number":
                if kind is float:
                    floats.append(position)
                    if column.nullable:
                        nan_allowed.append(position)
                else:
                    to_float.append(position)
            elif column.type == "integer":
                int64.append(position)
            if column.categories is not None:
                categories.append((position, frozenset(column.categories)))
        else:
            plan = _Plan(
                _tuple_getter(floats) if floats else None,
                tuple(floats),
                frozenset(nan_allowed),
                tuple(to_float),
                tuple(to_nan),
                tuple(nan_to_none),
                tuple(int64),
                tuple(categories),
            )
        # Bounded: hostile callers could send endless mixes of types.
        if len(plans) < _MAX_PLANS:
            plans[types] = plan
        return plan

    def _model_route(self, cls: type) -> _ModelRoute | None:
        try:
            return self._model_routes[cls]
        except KeyError:
            pass
        route = _ModelRoute.of(cls, self.columns)
        if len(self._model_routes) < _MAX_PLANS:
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
            f"got {_describe(record)}",
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
                    (name, index, f"field {name!r} cannot be read: {_describe(value)} ({exc})")
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
                f"{_describe(batch)}; use predict() for one record."
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
        return self._from_rows(rows)

    def _from_rows(self, rows: list[tuple[Any, ...]]) -> Table:
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
        present = [str(c) for c in frame.columns]
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
        if len(set(present)) != len(present):
            problems.append((None, None, "the DataFrame has duplicate column names"))
        if problems:
            raise _invalid_many(problems)
        if self._is_numeric:
            in_order = tuple(present) == self.names
            values = (frame if in_order else frame[list(self.names)]).to_numpy()
            if values.dtype.kind in "fiu":
                return self._numeric_matrix(values)
        data = {c.name: self._column(c, _series_values(frame[c.name], c)) for c in self.columns}
        return Table(self.names, len(frame), data)

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

    def _numeric_matrix(self, matrix: np.ndarray) -> Table:
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
        return Table(self.names, matrix.shape[0], matrix)

    def _column(self, column: ColumnSpec, values: np.ndarray) -> np.ndarray:
        """Check one column of a batch, vectorized where the dtype allows it."""
        kind = values.dtype.kind
        if column.categories is None:
            if column.type == "number" and kind in "fiu":
                as_float = values.astype(np.float64, copy=False)
                bad = ~np.isfinite(as_float)
                if column.nullable:
                    bad &= ~np.isnan(as_float)
                if bad.any():
                    self._raise_first_bad(column, values, np.flatnonzero(bad))
                return as_float
            if column.type == "integer" and (
                kind == "i" or (kind == "u" and (not values.size or values.max() <= _INT64.max))
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
        bad[~missing] |= (present < _INT64_MIN) | (present >= 2.0**63)
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


# -- the single-record fast path ---------------------------------------------------------------

_FLOATS = frozenset({float})
_STRINGS = frozenset({str})
_STRINGS_OR_NONE = frozenset({str, type(None)})
# The exact types a well-formed value of each column type has; their slow-path checks return them
# unchanged, except an int in a number column, which becomes a float. Anything else (a bool in a
# number column, numpy scalars, str subclasses) takes the slow path.
_PLAIN_TYPES: dict[str, frozenset[type]] = {
    "number": _NUMBERS,
    "integer": frozenset({int}),
    "boolean": frozenset({bool}),
    "string": frozenset({str}),
    "datetime": frozenset(),  # always checked (and parsed) by the slow path
}
_MAX_PLANS = 64
# Column types whose checked missing value is None, given as NaN by pandas' records.
_NAN_AS_NONE = frozenset({"string", "integer", "boolean"})


def _tuple_getter(keys: Sequence[Any]) -> Callable[[Any], tuple[Any, ...]]:
    """``operator.itemgetter`` that gives a tuple even for one key."""
    if len(keys) == 1:
        key = keys[0]
        return lambda container: (container[key],)
    return operator.itemgetter(*keys)


class _Plan(typing.NamedTuple):
    """What is left to check once every value has a type its column takes as it is."""

    floats: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None  # finite, or NaN where allowed
    float_positions: tuple[int, ...]
    nan_allowed: frozenset[int]  # float positions of nullable number columns
    to_float: tuple[int, ...]  # ints in number columns
    to_nan: tuple[int, ...]  # None in nullable number columns
    nan_to_none: tuple[int, ...]  # floats in nullable string, integer and boolean columns
    int64: tuple[int, ...]  # ints in integer columns
    categories: tuple[tuple[int, frozenset[Any]], ...]

    def apply(self, values: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The values as the slow path returns them, or None if it must decide."""
        # One finite sum means no NaN or infinity; otherwise look at each (rarely: a gap).
        if self.floats is not None and not math.isfinite(sum(self.floats(values))):
            for position in self.float_positions:
                value = values[position]
                if not math.isfinite(value) and not (
                    math.isnan(value) and position in self.nan_allowed
                ):
                    return None
        for position in self.int64:
            if not _INT64_MIN <= values[position] <= _INT64_MAX:
                return None
        if self.to_float or self.to_nan or self.nan_to_none:
            converted = list(values)
            try:
                for position in self.to_float:
                    converted[position] = float(converted[position])
            except OverflowError:
                return None
            for position in self.to_nan:
                converted[position] = math.nan
            for position in self.nan_to_none:
                if not math.isnan(converted[position]):
                    return None  # 3.0 in an integer column, 1.5 in a string one: slow path
                converted[position] = None
            values = tuple(converted)
        # After conversion, as the slow path compares the checked value: float(2**60 + 1) is in
        # {2.0**60} while 2**60 + 1 is not.
        for position, allowed in self.categories:
            if values[position] not in allowed:
                return None
        return values


_FIELD_TYPES: dict[str, type] = {"float": float, "int": int, "bool": bool, "str": str}
_PLAIN_FIELD_KEYS = frozenset(
    {"type", "schema", "metadata", "serialization_alias", "validation_alias"}
)


@dataclass(frozen=True)
class _ModelRoute:
    """How to read a pydantic record's values without ``model_dump``.

    Only for models whose fields are plain scalars serialized as they are (no serializers,
    computed or excluded fields, extra fields or nested models), so that
    ``model_dump(by_alias=True)`` holds the same objects as the instance's ``__dict__``.
    """

    getter: Callable[[dict[str, Any]], tuple[Any, ...]]
    field_types: tuple[frozenset[type], ...]  # types each field dumps unchanged, by position
    plans: dict[tuple[type, ...], _Plan | None]

    @classmethod
    def of(cls, model: type, columns: Sequence[ColumnSpec]) -> _ModelRoute | None:
        try:
            schema = model.__pydantic_core_schema__  # type: ignore[attr-defined]
            if schema.get("type") != "model" or "serialization" in schema:
                return None
            if schema.get("root_model") or schema.get("config", {}).get(
                "extra_fields_behavior"
            ) not in (None, "forbid", "ignore"):
                return None
            fields_schema = schema["schema"]
            if (
                fields_schema.get("type") != "model-fields"
                or fields_schema.get("computed_fields")
                or "serialization" in fields_schema
                or fields_schema.get("extra_behavior") not in (None, "forbid", "ignore")
            ):
                return None
            position = {column.name: j for j, column in enumerate(columns)}
            attributes: list[str | None] = [None] * len(columns)
            field_types: list[frozenset[type]] = [frozenset()] * len(columns)
            fields = fields_schema["fields"]
            if len(fields) != len(columns):
                return None
            for attribute, field in fields.items():
                if not _PLAIN_FIELD_KEYS.issuperset(field):
                    return None
                j = position.get(field.get("serialization_alias", attribute))
                types = None if j is None else _dumped_as_is(field["schema"], columns[j])
                if j is None or types is None or attributes[j] is not None:
                    return None
                attributes[j] = attribute
                field_types[j] = types
        except (AttributeError, KeyError, TypeError):
            return None  # a schema shaped otherwise than expected: use model_dump
        return cls(_tuple_getter(attributes), tuple(field_types), {})


def _dumped_as_is(schema: dict[str, Any], column: ColumnSpec) -> frozenset[type] | None:
    """The value types a field's schema dumps unchanged, or None if unsure."""
    nullable = False
    while schema.get("type") in ("default", "nullable"):
        if "serialization" in schema:
            return None
        nullable = nullable or schema["type"] == "nullable"
        schema = schema["schema"]
    if "serialization" in schema:
        return None
    kind = schema.get("type")
    plain = _FIELD_TYPES.get(kind)  # type: ignore[arg-type]
    if plain is None and kind == "literal":
        # String literals matching the column's categories; others take model_dump.
        expected = schema.get("expected", ())
        if (
            column.categories is not None
            and all(type(v) is str for v in expected)
            and frozenset(expected) == frozenset(column.categories)
        ):
            plain = str
    if plain is None:
        return None
    return frozenset({plain, type(None)} if nullable else {plain})


def _series_values(series: Any, column: ColumnSpec) -> Any:
    """A pandas column as numpy values, with pandas' missing markers made numpy's."""
    dtype = series.dtype
    if isinstance(dtype, np.dtype):
        if dtype.kind == "O" and column.type == "string" and column.nullable:
            # NaN is how pandas marks a missing string: as None, the column checks in one pass.
            return series.to_numpy(dtype=object, na_value=None)
        return series.to_numpy()
    kind = getattr(dtype, "kind", "O")
    if kind == "M":  # datetimes with a time zone: compared in UTC, as single values are
        return series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    has_missing = bool(series.isna().any())
    # Nullable Int64, Float64 and boolean columns: floats with NaN, or the plain dtype.
    if kind in "fiu" and column.type in ("number", "integer"):
        if has_missing or kind == "f":
            return series.to_numpy(dtype=np.float64, na_value=math.nan)
        return series.to_numpy(dtype=np.int64 if kind in "iu" else np.float64)
    if kind == "b" and column.type == "boolean" and not has_missing:
        return series.to_numpy(dtype=np.bool_)
    # Strings, categoricals and the rest: objects, missing as None.
    return series.to_numpy(dtype=object, na_value=None)


def none_mask(values: np.ndarray) -> np.ndarray:
    """Where an object array holds ``None``."""
    mask: np.ndarray = np.equal(values, np.array(None, dtype=object))
    return mask


def column_array(column: ColumnSpec, values: Sequence[Any]) -> np.ndarray:
    """Checked values as the batch column their type gives (see :class:`Table`)."""
    if column.type == "number":
        return np.asarray([math.nan if v is None else v for v in values], dtype=np.float64)
    if column.type == "datetime":
        return np.asarray(values, dtype=DATETIME_UNIT)
    if column.categories is None and column.type in ("integer", "boolean"):
        if None not in values:
            return np.asarray(values, dtype=np.int64 if column.type == "integer" else np.bool_)
        if column.type == "integer":
            # As pandas holds an integer column with gaps: floats, NaN for the missing values.
            return np.asarray([math.nan if v is None else v for v in values], dtype=np.float64)
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


# -- tensors -----------------------------------------------------------------------------------

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
                f"got {_describe(record)}",
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
                f"input {spec.name!r} expects shape {_tensor_label(spec)}, got {list(array.shape)}",
            )
        return array.astype(dtype, copy=False)


# -- errors --------------------------------------------------------------------------------------


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
    first = problems[0]
    text = _where(first["index"]) + first["message"]
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    text += "."
    return InvalidInputError(text, field=first["field"], index=first["index"], errors=problems)


# -- pydantic models ------------------------------------------------------------------------------

_PYTHON_TYPES: dict[str, Any] = {
    "number": float,
    "integer": int,
    "boolean": bool,
    "string": str,
    "datetime": dt.datetime,
}


def _input_model(signature: Signature) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    if isinstance(signature.inputs, TabularInputs):
        for position, column in enumerate(signature.inputs.columns):
            annotation: Any = _PYTHON_TYPES[column.type]
            if column.categories is not None:
                annotation = Literal[tuple(column.categories)]
            if column.nullable:
                annotation = annotation | None
            allow_inf_nan = False if column.type == "number" else None
            fields[f"field_{position}"] = (
                annotation,
                Field(alias=column.name, allow_inf_nan=allow_inf_nan),
            )
    elif isinstance(signature.inputs, TensorInputs):
        for position, tensor in enumerate(signature.inputs.tensors):
            fields[f"field_{position}"] = (
                list[Any],
                Field(alias=tensor.name, description=f"{_tensor_label(tensor)} as nested lists"),
            )
    else:
        raise TypeError("a schema signature carries its own JSON Schema, not a generated model")
    model = pydantic.create_model(
        "ModelInput",
        __config__=ConfigDict(extra="forbid", populate_by_name=True),
        **fields,
    )
    return cast(type[BaseModel], model)


def _output_json_schema(outputs: Outputs) -> dict[str, Any]:
    if outputs.task == "custom":
        return dict(outputs.json_schema or {})
    fields: dict[str, Any] = {}
    if outputs.task == "classification":
        label: Any = Literal[tuple(outputs.classes)] if outputs.classes else Any
        fields["label"] = (label, ...)
        fields["probabilities"] = (dict[str, float] | None, None)
    elif outputs.task == "regression":
        fields["value"] = (float | list[float], ...)
    else:
        for position, tensor in enumerate(outputs.tensors or ()):
            fields[f"field_{position}"] = (list[Any], Field(alias=tensor.name))
    model = pydantic.create_model("ModelOutput", **fields)
    return cast(dict[str, Any], model.model_json_schema(by_alias=True))


_ANNOTATION_TYPES: dict[Any, ColumnType] = {
    float: "number",
    int: "integer",
    bool: "boolean",
    str: "string",
    dt.datetime: "datetime",
}


def tabular_inputs_from_model(model: type[BaseModel]) -> TabularInputs:
    """Tabular inputs declared by a pydantic model: one column per field.

    ``float`` fields become numbers, ``int`` integers, ``bool`` booleans, ``str`` strings,
    ``datetime`` datetimes, a ``Literal[...]`` declares the allowed values and ``X | None`` makes
    a column nullable.

    Raises:
        TypeError: a field has a type a column cannot hold.
    """
    columns = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        nullable = False
        args = typing.get_args(annotation)
        if type(None) in args:
            nullable = True
            rest = [a for a in args if a is not type(None)]
            annotation = rest[0] if len(rest) == 1 else annotation
        categories = None
        if typing.get_origin(annotation) is Literal:
            categories = tuple(typing.get_args(annotation))
            kinds = {_scalar_type(c) for c in categories}
            kind: ColumnType = "number" if kinds == {"integer", "number"} else kinds.pop()
        elif annotation in _ANNOTATION_TYPES:
            kind = _ANNOTATION_TYPES[annotation]
        else:
            raise TypeError(
                f"Field {name!r} of {model.__name__} has type {annotation!r}; tabular signatures "
                "take float, int, bool, str, datetime, Literal[...] and their optional forms."
            )
        columns.append(
            ColumnSpec(
                name=field.alias or name,
                type=kind,
                dtype=_DEFAULT_DTYPES[kind],
                categories=categories,
                nullable=nullable,
            )
        )
    return TabularInputs(columns=tuple(columns))
