"""Signatures inferred from samples and declared by pydantic models."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
import pydantic
import pytest

import modelkit
from modelkit._infer import infer_tabular_signature, tabular_inputs_from_model
from modelkit._validation import TabularValidator

# -- inference ------------------------------------------------------------------------------------


def test_dataframe_sample_gives_types_nullability_and_categories() -> None:
    frame = pd.DataFrame(
        {
            "age": [30, 40],
            "income": [1.0, np.nan],
            "plan": pd.Categorical(["basic", "pro"]),
            "city": ["Lyon", None],
            "active": [True, False],
        }
    )
    inputs, layout = infer_tabular_signature(frame)
    assert layout == "dataframe"
    by_name = {c.name: c for c in inputs.columns}
    assert by_name["age"].type == "integer"
    assert by_name["income"].type == "number"
    assert by_name["income"].nullable
    # A Categorical's categories rebuild the model's input; they do not restrict values.
    assert by_name["plan"].categories is None
    assert by_name["plan"].dtype_categories == ("basic", "pro")
    assert by_name["city"].type == "string"
    assert by_name["city"].nullable
    assert by_name["city"].categories is None
    assert by_name["active"].type == "boolean"


def test_array_sample_names_columns_x0_to_xn() -> None:
    inputs, layout = infer_tabular_signature(np.zeros((3, 4)))
    assert layout == "array"
    assert [c.name for c in inputs.columns] == ["x0", "x1", "x2", "x3"]
    assert {c.type for c in inputs.columns} == {"number"}


def test_list_of_dicts_sample_infers_each_key() -> None:
    inputs, layout = infer_tabular_signature([{"a": 1, "b": "x"}, {"a": 2.5, "b": None}])
    assert layout == "records"
    assert [(c.name, c.type, c.nullable) for c in inputs.columns] == [
        ("a", "number", False),
        ("b", "string", True),
    ]


@pytest.mark.parametrize(
    "sample",
    [
        np.zeros((0, 3)),
        np.zeros(3),
        [],
        "text",
        pd.DataFrame({"span": pd.to_timedelta(["1 day"])}),
        [{"a": 1}, {"a": "x"}],
    ],
    ids=["no-rows", "1-d", "empty-list", "string", "timedelta", "mixed-types"],
)
def test_unusable_samples_are_refused_clearly(sample: Any) -> None:
    with pytest.raises(modelkit.InvalidInputError, match="Cannot infer a signature"):
        infer_tabular_signature(sample)


def test_pydantic_model_declares_columns() -> None:
    class Applicant(pydantic.BaseModel):
        age: int
        income: float
        plan: Literal["basic", "pro"]
        city: str | None

    inputs = tabular_inputs_from_model(Applicant)
    assert [(c.name, c.type, c.categories, c.nullable) for c in inputs.columns] == [
        ("age", "integer", None, False),
        ("income", "number", None, False),
        ("plan", "string", ("basic", "pro"), False),
        ("city", "string", None, True),
    ]


def test_pydantic_model_with_unsupported_field_is_refused() -> None:
    class Nested(pydantic.BaseModel):
        tags: list[str]

    with pytest.raises(TypeError, match="tags"):
        tabular_inputs_from_model(Nested)


def test_nullable_dtypes_keep_their_type_when_inferred() -> None:
    frame = pd.DataFrame(
        {
            "age": pd.array([1, None], dtype="Int64"),
            "member": pd.array([True, None], dtype="boolean"),
            "city": pd.array(["Oslo", None], dtype="string"),
            "joined": pd.to_datetime(["2024-01-02", None]).tz_localize("Europe/Oslo"),
            "empty": pd.Series([None, None], dtype=object),
            "flag": np.array([True, False]),
        }
    )
    inputs, _ = infer_tabular_signature(frame)
    assert [(c.name, c.type, c.nullable) for c in inputs.columns] == [
        ("age", "integer", True),
        ("member", "boolean", True),
        ("city", "string", True),
        ("joined", "datetime", True),
        ("empty", "string", True),  # no values in the sample: text, and nullable
        ("flag", "boolean", False),
    ]
    # The sample always fits the signature inferred from it.
    assert TabularValidator(inputs).batch(frame).length == 2


def test_an_unseen_category_of_a_categorical_column_reaches_the_model() -> None:
    frame = pd.DataFrame({"plan": pd.Categorical(["basic", "pro"])})
    inputs, _ = infer_tabular_signature(frame)
    assert TabularValidator(inputs).record({"plan": "gold"}) == ("gold",)
