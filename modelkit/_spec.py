"""Signatures: what a model takes and gives, and the batch form validated inputs take.

A signature is either *tabular* (named, typed columns: one record is one row) or *tensor* (named
arrays whose dtypes and shapes the graph declares), or *schema* for custom models typed by pydantic.
:meth:`Signature.input_model` gives the pydantic model of one input record, and the JSON Schemas
follow from it, for documentation and web integrations. The helpers at the bottom tell missing
values, DataFrames and datetimes apart without importing pandas; the signature modules above
(``_infer``, ``_validation``, ``_fast_path``) and the adapters share them.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
import pydantic
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DATETIME_UNIT",
    "INT64_MAX",
    "INT64_MIN",
    "PYTHON_TYPES",
    "ColumnSpec",
    "ColumnType",
    "Outputs",
    "SchemaInputs",
    "Signature",
    "Table",
    "TabularInputs",
    "Task",
    "TensorInputs",
    "TensorSpec",
    "column_array",
    "data_frame",
    "describe_value",
    "is_dataframe",
    "is_missing",
    "is_series",
    "microseconds",
    "none_mask",
    "python_scalar",
    "record_table",
    "tensor_label",
    "to_datetime64",
]

ColumnType = Literal["number", "integer", "boolean", "string", "datetime"]
Task = Literal["classification", "regression", "tensor", "custom"]

# Models take 64-bit integers; a larger one would fail deep inside numpy.
INT64_MIN = int(np.iinfo(np.int64).min)
INT64_MAX = int(np.iinfo(np.int64).max)


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
        return _input_model(self.inputs)

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
            inputs = ", ".join(f"{t.name}: {tensor_label(t)}" for t in self.inputs.tensors)
        else:
            inputs = str(self.inputs.json_schema.get("title", "record"))
        out = self.outputs
        if out.task == "classification":
            outputs = f"label of {list(out.classes)}" if out.classes else "label"
            outputs += " + probabilities" if out.has_probabilities else ""
        elif out.task == "regression":
            outputs = "value"
        elif out.task == "tensor":
            outputs = ", ".join(f"{t.name}: {tensor_label(t)}" for t in out.tensors or ())
        else:
            outputs = str((out.json_schema or {}).get("title", "output"))
        return f"({inputs}) -> {outputs}"


def _column_label(column: ColumnSpec) -> str:
    label = column.type if column.categories is None else f"one of {list(column.categories)}"
    return f"{label} | None" if column.nullable else label


def tensor_label(tensor: TensorSpec) -> str:
    """A tensor's dtype and shape as messages show them: ``float32[?, 3]``."""
    dims = (
        "?"
        if tensor.shape is None
        else ", ".join("?" if d is None else str(d) for d in tensor.shape)
    )
    return f"{tensor.dtype}[{dims}]"


# --------------------------------------------------------------------------------------------
# The pydantic model and JSON Schema of a signature
# --------------------------------------------------------------------------------------------

PYTHON_TYPES: dict[ColumnType, Any] = {
    "number": float,
    "integer": int,
    "boolean": bool,
    "string": str,
    "datetime": dt.datetime,
}
"""The Python type of each column type, as a pydantic field declares it."""


def _input_model(inputs: TabularInputs | TensorInputs | SchemaInputs) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    if isinstance(inputs, TabularInputs):
        for position, column in enumerate(inputs.columns):
            annotation: Any = PYTHON_TYPES[column.type]
            if column.categories is not None:
                annotation = Literal[tuple(column.categories)]
            if column.nullable:
                annotation = annotation | None
            allow_inf_nan = False if column.type == "number" else None
            fields[f"field_{position}"] = (
                annotation,
                Field(alias=column.name, allow_inf_nan=allow_inf_nan),
            )
    elif isinstance(inputs, TensorInputs):
        for position, tensor in enumerate(inputs.tensors):
            fields[f"field_{position}"] = (
                list[Any],
                Field(alias=tensor.name, description=f"{tensor_label(tensor)} as nested lists"),
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
        # JSON has no NaN or infinity: an answer writes them as null (a model's arithmetic
        # overflows on extreme inputs).
        fields["probabilities"] = (dict[str, float | None] | None, None)
    elif outputs.task == "regression":
        fields["value"] = (float | None | list[float | None], ...)
    else:
        for position, tensor in enumerate(outputs.tensors or ()):
            fields[f"field_{position}"] = (list[Any], Field(alias=tensor.name))
    model = pydantic.create_model("ModelOutput", **fields)
    return cast(dict[str, Any], model.model_json_schema(by_alias=True))


# --------------------------------------------------------------------------------------------
# Validated batches
# --------------------------------------------------------------------------------------------


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
    #: The matrix, the columns, or a function giving the columns when first asked for (a
    #: DataFrame taken as is converts its text columns only if something reads them).
    data: np.ndarray | dict[str, np.ndarray] | Callable[[], dict[str, np.ndarray]]
    #: The caller's DataFrame of exactly these rows and columns, in order, when validation found
    #: every column already of the dtype the model was trained on and left its values as they
    #: were: a model trained on a DataFrame takes it as is instead of a rebuilt copy.
    frame: Any = field(default=None, compare=False, repr=False)

    def matrix(self, dtype: Any = None) -> np.ndarray:
        """All columns as one 2-D array, cast to ``dtype`` when given."""
        if isinstance(self.data, np.ndarray):
            matrix = self.data
        elif not self.names:
            matrix = np.empty((self.length, 0))
        else:
            columns = self.columns()
            matrix = np.column_stack([columns[name] for name in self.names])
        return matrix if dtype is None else matrix.astype(dtype, copy=False)

    def columns(self) -> dict[str, np.ndarray]:
        """Each column as a 1-D array."""
        data = self.data
        if isinstance(data, np.ndarray):
            return {name: data[:, j] for j, name in enumerate(self.names)}
        if callable(data):
            data = data()
            object.__setattr__(self, "data", data)  # converted once; any thread gets the same
        return data

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


# --------------------------------------------------------------------------------------------
# Missing values, pandas objects and datetimes, told apart without importing pandas
# --------------------------------------------------------------------------------------------

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


def none_mask(values: np.ndarray) -> np.ndarray:
    """Where an object array holds ``None``."""
    mask: np.ndarray = np.equal(values, np.array(None, dtype=object))
    return mask


def is_dataframe(obj: object) -> bool:
    """Whether ``obj`` is a pandas DataFrame (or a subclass of one)."""
    # Without pandas imported there is no DataFrame: the check never imports it, and never asks
    # the frame for a property (``dtypes`` builds a Series on every call).
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(obj, pandas.DataFrame)


def is_series(obj: object) -> bool:
    """Whether ``obj`` is a pandas Series (one row of a DataFrame, as ``df.iloc[i]`` gives it)."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(obj, pandas.Series)


def data_frame(
    pandas: Any, names: Sequence[str], arrays: Sequence[Any], length: int, *, infer: bool = False
) -> Any:
    """A DataFrame of equal-length columns, built as cheaply as pandas allows.

    pandas' ``DataFrame._from_arrays`` (what ``DataFrame.from_records`` builds on) takes arrays
    in order, in less than half the time of the dict constructor, which aligns them again; and
    the column index, whose names pandas 3 reads into a string array at about 100 us a time, is
    built once per set of names. With ``infer``, pandas reads each column's dtype as its
    constructor does (text becomes pandas 3's ``str``); without, the arrays are already what
    the frame should hold. Series and lists (aware datetimes, object columns, rows of a
    tensor) and a pandas without it take the public constructor.
    """
    index = pandas.RangeIndex(length)
    from_arrays = getattr(pandas.DataFrame, "_from_arrays", None)
    if from_arrays is not None and not any(isinstance(a, pandas.Series | list) for a in arrays):
        try:
            return from_arrays(
                arrays, columns=_column_index(tuple(names)), index=index, verify_integrity=infer
            )
        except TypeError:  # another signature in another pandas: the public constructor
            pass
    return pandas.DataFrame(dict(zip(names, arrays, strict=True)), index=index, copy=False)


@functools.lru_cache(maxsize=256)
def _column_index(names: tuple[str, ...]) -> Any:
    """The column index of frames with these names, built once (immutable, so shared)."""
    import pandas

    return pandas.Index(names)


def python_scalar(value: Any) -> Any:
    """A numpy scalar as the Python value it holds; anything else as it is."""
    return value.item() if isinstance(value, np.generic) else value


def describe_value(value: Any) -> str:
    """A value as error messages show it: its type and a short repr."""
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


# Microseconds, as pandas 3 keeps datetimes: nanoseconds reach only years 1678 to 2262, and real
# tables hold "9999-12-31" for an open end.
DATETIME_UNIT = "datetime64[us]"


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
