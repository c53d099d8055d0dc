"""The single-record fast path: plans that check a record by the exact types of its values.

:meth:`TabularValidator.record <modelkit._validation.TabularValidator.record>` reads a
well-formed record's values and looks up the :class:`Plan` for their types (built once by
:func:`plan_for`): what is left to check once every value has a type its column takes as it is.
A plan returns exactly what the slow path would, or ``None`` to let the slow path decide and
explain. :class:`ModelRoute` reads a pydantic record's values without ``model_dump`` when the
model dumps its fields as they are.
"""

from __future__ import annotations

import math
import operator
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import UnionType
from typing import Any, Literal

from pydantic import BaseModel, RootModel
from pydantic.fields import FieldInfo

from ._spec import INT64_MAX, INT64_MIN, ColumnSpec

__all__ = ["MAX_PLANS", "ModelRoute", "Plan", "plan_for", "tuple_getter"]

# Bounds how many plans (and pydantic routes) a validator keeps: hostile callers could send
# endless mixes of types.
MAX_PLANS = 64

# The exact types a well-formed value of each column type has; their slow-path checks return them
# unchanged, except an int in a number column, which becomes a float. Anything else (a bool in a
# number column, numpy scalars, str subclasses) takes the slow path.
_PLAIN_TYPES: dict[str, frozenset[type]] = {
    "number": frozenset({float, int}),
    "integer": frozenset({int}),
    "boolean": frozenset({bool}),
    "string": frozenset({str}),
    "datetime": frozenset(),  # always checked (and parsed) by the slow path
}
# Column types whose checked missing value is None, given as NaN by pandas' records.
_NAN_AS_NONE = frozenset({"string", "integer", "boolean"})


def tuple_getter(keys: Sequence[Any]) -> Callable[[Any], tuple[Any, ...]]:
    """``operator.itemgetter`` that gives a tuple even for one key."""
    if len(keys) == 1:
        key = keys[0]
        return lambda container: (container[key],)
    return operator.itemgetter(*keys)


class Plan(typing.NamedTuple):
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
            if not INT64_MIN <= values[position] <= INT64_MAX:
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


def plan_for(
    columns: Sequence[ColumnSpec], types: tuple[type, ...], route: ModelRoute | None
) -> Plan | None:
    """The plan for values of these exact types, or None to take the slow path.

    Args:
        columns: the signature's columns.
        types: the exact type of each value, in signature order.
        route: how the values were read from a pydantic record, or None for other records.
    """
    floats: list[int] = []
    nan_allowed: list[int] = []
    to_float: list[int] = []
    to_nan: list[int] = []
    nan_to_none: list[int] = []
    int64: list[int] = []
    categories: list[tuple[int, frozenset[Any]]] = []
    for position, (column, kind) in enumerate(zip(columns, types, strict=True)):
        if route is not None and kind not in route.field_types[position]:
            return None  # model_dump might not give this value back as it is
        if kind is type(None):
            if not column.nullable or column.type == "datetime":
                return None
            if column.type == "number":
                to_nan.append(position)
            continue  # a missing value skips the category check, as in the slow path
        if kind is float and column.nullable and column.type in _NAN_AS_NONE:
            # NaN for missing, as df.to_dict("records") gives it: None if it is NaN.
            nan_to_none.append(position)
            continue
        if kind not in _PLAIN_TYPES[column.type]:
            return None
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
    return Plan(
        tuple_getter(floats) if floats else None,
        tuple(floats),
        frozenset(nan_allowed),
        tuple(to_float),
        tuple(to_nan),
        tuple(nan_to_none),
        tuple(int64),
        tuple(categories),
    )


# --------------------------------------------------------------------------------------------
# Pydantic records
# --------------------------------------------------------------------------------------------

_PLAIN_FIELD_TYPES = frozenset({float, int, bool, str})
_UNIONS = (typing.Union, UnionType)


@dataclass(frozen=True)
class ModelRoute:
    """How to read a pydantic record's values without ``model_dump``.

    Only for models whose fields are plain scalars dumped as they are (no serializers, computed
    or excluded fields, extra fields or nested models), so that ``model_dump(by_alias=True)``
    holds the same objects as the instance's ``__dict__``.
    """

    getter: Callable[[dict[str, Any]], tuple[Any, ...]]
    field_types: tuple[frozenset[type], ...]  # types each field dumps unchanged, by position
    plans: dict[tuple[type, ...], Plan | None]

    @classmethod
    def of(cls, model: type[BaseModel], columns: Sequence[ColumnSpec]) -> ModelRoute | None:
        """The route for records of ``model``, or None if ``model_dump`` must read them."""
        fields = model.model_fields
        if len(fields) != len(columns) or not _dumps_fields_as_they_are(model):
            return None
        position = {column.name: j for j, column in enumerate(columns)}
        attributes: list[str | None] = [None] * len(columns)
        field_types: list[frozenset[type]] = [frozenset()] * len(columns)
        for attribute, field in fields.items():
            j = position.get(_dumped_name(attribute, field))
            types = None if j is None else _dumped_as_is(field, columns[j])
            if j is None or types is None or attributes[j] is not None:
                return None
            attributes[j] = attribute
            field_types[j] = types
        return cls(tuple_getter(attributes), tuple(field_types), {})


def _dumps_fields_as_they_are(model: type[BaseModel]) -> bool:
    """Whether ``model_dump`` gives exactly the model's fields, without serializers."""
    # __pydantic_decorators__ is among BaseModel's documented attributes; should its shape ever
    # change, the getattr defaults send records to model_dump.
    decorators = getattr(model, "__pydantic_decorators__", None)
    return (
        not issubclass(model, RootModel)
        and model.model_config.get("extra") in (None, "forbid", "ignore")
        and not model.model_computed_fields
        # A serializer (@field_serializer, @model_serializer) may change any value it dumps.
        and decorators is not None
        and not getattr(decorators, "field_serializers", True)
        and not getattr(decorators, "model_serializers", True)
        # The slow path calls the model's own model_dump, whatever it does.
        and model.model_dump is BaseModel.model_dump
    )


def _dumped_name(attribute: str, field: FieldInfo) -> str:
    """The key ``model_dump(by_alias=True)`` gives a field."""
    if field.serialization_alias is not None:
        return field.serialization_alias
    return attribute if field.alias is None else field.alias


def _dumped_as_is(field: FieldInfo, column: ColumnSpec) -> frozenset[type] | None:
    """The value types a field dumps unchanged, or None if unsure."""
    if field.exclude or getattr(field, "exclude_if", None) is not None:
        return None
    # Constraints (Gt, Strict, AllowInfNan, ...) only validate; an annotation with a schema hook
    # of its own (serializers, validators, custom types) may dump values otherwise.
    if any(hasattr(item, "__get_pydantic_core_schema__") for item in field.metadata):
        return None
    annotation = field.annotation
    nullable = False
    if typing.get_origin(annotation) in _UNIONS:
        rest = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(rest) != 1:
            return None
        nullable = True
        annotation = rest[0]
    plain: type | None = None
    if isinstance(annotation, type) and annotation in _PLAIN_FIELD_TYPES:
        plain = annotation
    elif typing.get_origin(annotation) is Literal:
        # String literals matching the column's categories; others take model_dump.
        expected = typing.get_args(annotation)
        if (
            column.categories is not None
            and all(type(v) is str for v in expected)
            and frozenset(expected) == frozenset(column.categories)
        ):
            plain = str
    if plain is None:
        return None
    return frozenset({plain, type(None)} if nullable else {plain})
