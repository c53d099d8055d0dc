"""Signatures built from what a user gives at save time: a sample input, or a pydantic model.

A sample (a DataFrame, a 2-D array or records) gives each column's type and whether it holds
missing values; a pydantic model declares them, ``Literal[...]`` fields declaring the allowed
values as well.
"""

from __future__ import annotations

import datetime as dt
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from ._spec import (
    PYTHON_TYPES,
    ColumnSpec,
    ColumnType,
    TabularInputs,
    describe_value,
    is_dataframe,
    is_missing,
    python_scalar,
)
from .errors import InvalidInputError

__all__ = ["infer_tabular_signature", "tabular_inputs_from_model"]


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
            f"2-D array or a list of dicts, got {type(sample).__name__} with shape {array.shape}."
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
        f"Cannot infer a signature: unsupported value {describe_value(value)} in the sample."
    )


# --------------------------------------------------------------------------------------------
# Inputs declared by a pydantic model
# --------------------------------------------------------------------------------------------

_ANNOTATION_TYPES: dict[Any, ColumnType] = {python: kind for kind, python in PYTHON_TYPES.items()}


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
