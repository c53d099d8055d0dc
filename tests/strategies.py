"""Hypothesis strategies for signatures, records and their mutations (one module, shared)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import strategies as st

from modelkit._signature import ColumnSpec, TabularInputs

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
