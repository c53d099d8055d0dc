"""Hypothesis strategies for signatures, records and their mutations (one module, shared)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import strategies as st

from modelkit._spec import ColumnSpec, TabularInputs

column_names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12
)


@st.composite
def columns(draw: st.DrawFn) -> ColumnSpec:
    kind = draw(st.sampled_from(["number", "integer", "boolean", "string"]))
    categories = None
    if kind == "string" and draw(st.booleans()):
        categories = tuple(draw(st.lists(st.text(max_size=5), min_size=1, max_size=4, unique=True)))
    nullable = kind in ("number", "string") and draw(st.booleans())
    dtype = {"number": "float64", "integer": "int64", "boolean": "bool", "string": "object"}[kind]
    return ColumnSpec(
        name=draw(column_names), type=kind, dtype=dtype, categories=categories, nullable=nullable
    )


@st.composite
def tabular_inputs(draw: st.DrawFn) -> TabularInputs:
    specs = draw(st.lists(columns(), min_size=1, max_size=6, unique_by=lambda c: c.name))
    return TabularInputs(columns=tuple(specs))


def valid_value(column: ColumnSpec) -> st.SearchStrategy[Any]:
    if column.categories is not None:
        base: st.SearchStrategy[Any] = st.sampled_from(column.categories)
    elif column.type == "number":
        base = st.one_of(
            st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**53), 2**53)
        )
    elif column.type == "integer":
        base = st.integers(-(2**62), 2**62)
    elif column.type == "boolean":
        base = st.booleans()
    else:
        base = st.text(max_size=10)
    return st.one_of(base, st.none()) if column.nullable else base


def records(inputs: TabularInputs) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({c.name: valid_value(c) for c in inputs.columns})


def invalid_value(column: ColumnSpec) -> st.SearchStrategy[Any]:
    """Values that must be refused for this column."""
    junk = st.one_of(
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
        st.just(object()),
        st.binary(max_size=3),
    )
    if column.type == "number":
        bad = st.one_of(st.text(max_size=4), st.booleans(), st.just(math.inf), st.just(-math.inf))
        if not column.nullable:
            bad = st.one_of(bad, st.none(), st.just(math.nan))
    elif column.type == "integer":
        bad = st.one_of(st.text(max_size=4), st.booleans(), st.none(), st.just(1.5))
    elif column.type == "boolean":
        bad = st.one_of(st.text(max_size=4), st.integers(), st.none(), st.floats())
    else:
        bad = st.one_of(st.integers(), st.floats(), st.booleans())
        if not column.nullable:
            bad = st.one_of(bad, st.none())
        if column.categories is not None:
            bad = st.one_of(bad, st.text(max_size=6).filter(lambda v: v not in column.categories))
    return st.one_of(bad, junk)


def json_values() -> st.SearchStrategy[Any]:
    """Arbitrary JSON documents. NaN, infinities and integers past 64 bits have their own tests."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**63)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20)
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=12), children, max_size=4)
        ),
        max_leaves=12,
    )


# Numbers as numpy and Python give them, NaN and infinities included: the mess lines must survive.
messy_values = st.recursive(
    st.floats()
    | st.integers()
    | st.text(max_size=5)
    | st.builds(np.float32, st.floats(width=32))
    | st.builds(np.int64, st.integers(-(2**63), 2**63 - 1))
    | st.builds(np.array, st.lists(st.floats(), max_size=3)),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


# -- drift statistics -----------------------------------------------------------------------------


def _shares(size: int) -> st.SearchStrategy[list[float]]:
    """A distribution over ``size`` bins, as counts over their total (so some bins may be empty)."""
    return (
        st.lists(st.integers(0, 10_000), min_size=size, max_size=size)
        .filter(any)
        .map(lambda counts: [count / sum(counts) for count in counts])
    )


@st.composite
def paired_shares(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    """Two distributions over the same bins: a reference and a current one."""
    size = draw(st.integers(min_value=1, max_value=25))
    return draw(_shares(size)), draw(_shares(size))


@st.composite
def reference_data(draw: st.DrawFn) -> tuple[TabularInputs, list[dict[str, Any]]]:
    """A signature and 1 to 60 valid records of it, to profile as reference data."""
    inputs = draw(tabular_inputs())
    rows = draw(st.lists(records(inputs), min_size=1, max_size=60))
    return inputs, rows


# -- single-record fast path ----------------------------------------------------------------------


class TextSubclass(str):
    """A str subclass: the slow path accepts it as a string, the fast path must not decide."""

    __slots__ = ()


class FloatSubclass(float):
    """A float subclass, taken by the number check but not by an exact-type test."""


_CATEGORY_POOLS: dict[str, st.SearchStrategy[Any]] = {
    # Mixes ints, floats and booleans on purpose: 1 == 1.0 == True hash alike in a frozenset.
    "number": st.one_of(
        st.integers(-3, 3),
        st.floats(-3, 3, allow_nan=False),
        st.sampled_from([2**60, 2.0**60, 1e308, True]),
    ),
    "integer": st.one_of(st.integers(-3, 3), st.sampled_from([2**62, True])),
    "boolean": st.booleans(),
    "string": st.one_of(st.text(max_size=3), st.sampled_from(["1", "True"])),
}


@st.composite
def any_columns(draw: st.DrawFn) -> ColumnSpec:
    """A column of any type, with or without declared categories, nullable or not."""
    kind = draw(st.sampled_from(["number", "integer", "boolean", "string"]))
    categories = None
    if draw(st.booleans()):
        categories = tuple(
            draw(st.lists(_CATEGORY_POOLS[kind], min_size=1, max_size=4, unique_by=repr))
        )
    dtype = {"number": "float64", "integer": "int64", "boolean": "bool", "string": "object"}[kind]
    return ColumnSpec(
        name=draw(column_names),
        type=kind,
        dtype=dtype,
        categories=categories,
        nullable=draw(st.booleans()),
    )


@st.composite
def mixed_tabular_inputs(draw: st.DrawFn) -> TabularInputs:
    """Signatures mixing every column type, categories and nullable columns."""
    specs = draw(st.lists(any_columns(), min_size=1, max_size=6, unique_by=lambda c: c.name))
    return TabularInputs(columns=tuple(specs))


hostile_values: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(
        [
            None,
            True,
            False,
            0,
            1,
            1.0,
            -0.0,
            math.nan,
            math.inf,
            -math.inf,
            10**400,
            -(10**400),
            2**63,
            2**63 - 1,
            -(2**63) - 1,
            2**60 + 1,
            2.0**60,
            1e308,
            "1",
            "True",
        ]
    ),
    st.floats(),
    st.integers(),
    st.text(max_size=3),
    st.builds(np.float64, st.floats()),
    st.builds(np.float32, st.floats(width=32)),
    st.builds(np.int64, st.integers(-(2**63), 2**63 - 1)),
    st.builds(np.bool_, st.booleans()),
    st.builds(TextSubclass, st.text(max_size=3)),
    st.builds(FloatSubclass, st.floats()),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.binary(max_size=2),
)
"""Values a column may or may not take: each one's verdict is the slow path's to give."""


class DictSubclass(dict[str, Any]):
    """A dict subclass, which the slow path reads as any mapping."""


RECORD_SHAPES = (
    "dict",
    "dict-missing-key",
    "dict-extra-key",
    "dict-subclass",
    "list",
    "tuple",
    "list-too-short",
    "list-too-long",
    "array",
    "2-d-array",
    "pydantic",
    "pydantic-constructed",
    "string",
)


@st.composite
def any_records(draw: st.DrawFn, inputs: TabularInputs, model: Any) -> Any:
    """A record for ``inputs`` in any shape, well formed or hostile.

    ``model`` is the signature's input model, for pydantic records.
    """
    is_well_formed = draw(st.booleans())
    values = [
        draw(
            valid_value(c)
            if is_well_formed or draw(st.booleans())
            else st.one_of(valid_value(c), hostile_values)
        )
        for c in inputs.columns
    ]
    names = [c.name for c in inputs.columns]
    shape = draw(st.sampled_from(RECORD_SHAPES))
    if shape == "dict":
        return dict(zip(names, values, strict=True))
    if shape == "dict-missing-key":
        return dict(zip(names[1:], values[1:], strict=True))
    if shape == "dict-extra-key":
        extra = draw(column_names.filter(lambda n: n not in names))
        return {**dict(zip(names, values, strict=True)), extra: values[0]}
    if shape == "dict-subclass":
        return DictSubclass(zip(names, values, strict=True))
    if shape == "list":
        return values
    if shape == "tuple":
        return tuple(values)
    if shape == "list-too-short":
        return values[1:]
    if shape == "list-too-long":
        return [*values, values[0]]
    if shape == "array":
        try:
            return np.array(values)
        except ValueError:
            array = np.empty(len(values), dtype=object)
            for position, value in enumerate(values):
                array[position] = value
            return array
    if shape == "2-d-array":
        return np.zeros((2, len(values)))
    fields = {f"field_{position}": value for position, value in enumerate(values)}
    if shape == "pydantic":
        try:
            return model.model_validate(fields)
        except ValueError:
            return model.model_construct(**fields)
    if shape == "pydantic-constructed":
        return model.model_construct(**fields)
    return "not a record"


# -- messy DataFrames, as real tables come ------------------------------------------------------

MESSY_KINDS = (
    "float",
    "int64",
    "Int64",
    "bool",
    "boolean",
    "str",
    "object",
    "string",
    "category",
)
"""Column dtypes a real table has: numpy floats, ints and bools; pandas' nullable ``Int64`` and
``boolean``; pandas 3's default ``str``, ``object`` strings with ``None`` for missing, the
nullable ``string`` dtype (with ``pd.NA``) and ``category``."""

_HOLDS_MISSING = frozenset(MESSY_KINDS) - {"int64", "bool"}

MISSING_PATTERNS = ("none", "some", "sample", "all")
"""Where a column's values are missing: nowhere, anywhere, in exactly the sample's rows (so the
sample has none of its values), or in every row."""

_WORDS = st.sampled_from(["red", "green", "blue", "", "a b", "Ünï", "1", "None", "nan"])


def _messy_values(kind: str) -> st.SearchStrategy[Any]:
    if kind == "float":
        return st.one_of(
            st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False),
            st.integers(-5, 5).map(float),
        )
    if kind in ("int64", "Int64"):
        return st.one_of(st.integers(-5, 5), st.integers(-(2**40), 2**40))
    if kind in ("bool", "boolean"):
        return st.booleans()
    return _WORDS


def _messy_column(kind: str, values: list[Any], missing: list[bool]) -> Any:
    import pandas as pd

    if kind == "float":
        return pd.Series(
            [math.nan if gap else v for v, gap in zip(values, missing, strict=True)],
            dtype="float64",
        )
    if kind in ("int64", "bool"):
        return pd.Series(values, dtype=kind)
    if kind in ("Int64", "boolean", "string"):
        return pd.Series(
            [pd.NA if gap else v for v, gap in zip(values, missing, strict=True)], dtype=kind
        )
    if kind == "object":
        return pd.Series(
            [None if gap else v for v, gap in zip(values, missing, strict=True)], dtype=object
        )
    dtype = "str" if kind == "str" else "category"
    return pd.Series(
        [math.nan if gap else v for v, gap in zip(values, missing, strict=True)], dtype=dtype
    )


@st.composite
def messy_frames(draw: st.DrawFn) -> tuple[Any, Any, int]:
    """A DataFrame of random dtypes and missing patterns, a target, and how many of its first
    rows make the sample (``sample_input=frame.head(n)``).

    Some columns have no values in the sample, some none at all; the target has two or three
    classes (strings, integers or booleans) and every class appears.
    """
    import pandas as pd

    length = draw(st.integers(min_value=8, max_value=40))
    sample = draw(st.integers(min_value=1, max_value=length - 1))
    names = draw(
        st.lists(
            st.text(alphabet="abcxyz_ É1", min_size=1, max_size=6),
            min_size=1,
            max_size=6,
            unique=True,
        )
    )
    columns = {}
    for name in names:
        kind = draw(st.sampled_from(MESSY_KINDS))
        values = draw(st.lists(_messy_values(kind), min_size=length, max_size=length))
        pattern = draw(st.sampled_from(MISSING_PATTERNS)) if kind in _HOLDS_MISSING else "none"
        if pattern == "some":
            missing = draw(st.lists(st.booleans(), min_size=length, max_size=length))
        else:
            missing = [
                pattern == "all" or (pattern == "sample" and row < sample) for row in range(length)
            ]
        columns[name] = _messy_column(kind, values, missing)
    frame = pd.DataFrame(columns)
    labels = draw(
        st.sampled_from([["no", "yes"], ["a", "b", "c"], [0, 1], [3, 1, 2], [False, True]])
    )
    picked = draw(st.lists(st.sampled_from(labels), min_size=length, max_size=length))
    for position, label in enumerate(labels):  # every class appears at least once
        picked[position] = label
    order = draw(st.permutations(range(length)))
    target = pd.Series([picked[i] for i in order])
    return frame, target, sample
