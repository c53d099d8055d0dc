"""Compiled validation: records, batches, missing values and tensors, each bad field named."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
import pandas as pd
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelkit
from modelkit._infer import tabular_inputs_from_model
from modelkit._spec import ColumnSpec, TabularInputs, TensorInputs, TensorSpec
from modelkit._validation import TabularValidator, TensorValidator
from tests import strategies
from tests.test_spec import GOOD, MIXED

# -- single records -------------------------------------------------------------------------------


def test_a_good_record_gives_values_in_signature_order() -> None:
    validator = TabularValidator(MIXED)
    assert validator.record(GOOD) == (30, 1200.5, "pro", "Lyon", True)
    assert validator.record(list(GOOD.values())) == (30, 1200.5, "pro", "Lyon", True)


@pytest.mark.parametrize(
    ("record", "field", "text"),
    [
        ({k: v for k, v in GOOD.items() if k != "age"}, "age", "missing"),
        ({**GOOD, "extra": 1}, "extra", "not an input"),
        ({**GOOD, "income": None}, "income", "no missing values"),
        ({**GOOD, "income": "12"}, "income", "expected a number"),
        ({**GOOD, "income": True}, "income", "expected a number"),
        ({**GOOD, "income": math.nan}, "income", "NaN"),
        ({**GOOD, "income": math.inf}, "income", "infinity"),
        ({**GOOD, "age": 3.5}, "age", "integer"),
        ({**GOOD, "plan": "gold"}, "plan", "one of"),
        ({**GOOD, "active": "yes"}, "active", "true or false"),
        ({**GOOD, "city": {"nested": ["junk"]}}, "city", "expected a string"),
    ],
)
def test_a_bad_field_is_named(record: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(modelkit.InvalidInputError, match=text) as info:
        TabularValidator(MIXED).record(record)
    assert info.value.field == field
    assert info.value.index is None
    assert field in str(info.value)


@pytest.mark.parametrize("record", ["a string", 42, None, 3.5, [1, 2], np.zeros((2, 5))], ids=repr)
def test_something_that_is_not_a_record_is_refused(record: Any) -> None:
    with pytest.raises(modelkit.InvalidInputError):
        TabularValidator(MIXED).record(record)


def test_nullable_string_takes_none() -> None:
    assert TabularValidator(MIXED).record({**GOOD, "city": None})[3] is None


def test_pydantic_instance_is_a_record() -> None:
    model = TabularValidator(MIXED)
    signature = modelkit.Signature(inputs=MIXED, outputs=modelkit.Outputs(task="regression"))
    record = signature.input_model().model_validate(GOOD)
    assert model.record(record) == model.record(GOOD)


def test_every_problem_of_a_record_is_listed() -> None:
    with pytest.raises(modelkit.InvalidInputError) as info:
        TabularValidator(MIXED).record({**GOOD, "age": "x", "income": "y"})
    assert {e["field"] for e in info.value.errors} == {"age", "income"}


# -- batches --------------------------------------------------------------------------------------


def test_a_bad_record_in_a_batch_is_named_by_index() -> None:
    batch = [GOOD, GOOD, {**GOOD, "income": "oops"}, GOOD]
    with pytest.raises(modelkit.InvalidInputError, match="Record 2") as info:
        TabularValidator(MIXED).batch(batch)
    assert (info.value.field, info.value.index) == ("income", 2)


def test_dataframe_batch_with_nan_names_row_and_column() -> None:
    numeric = TabularInputs(
        columns=tuple(ColumnSpec(name=n, type="number", dtype="float64") for n in "abc")
    )
    frame = pd.DataFrame(np.ones((5, 3)), columns=list("abc"))
    frame.loc[3, "b"] = np.nan
    with pytest.raises(modelkit.InvalidInputError) as info:
        TabularValidator(numeric).batch(frame)
    assert (info.value.field, info.value.index) == ("b", 3)


def test_dataframe_batch_missing_and_extra_columns_are_named() -> None:
    frame = pd.DataFrame([{**GOOD, "id": 1}]).drop(columns=["age"])
    with pytest.raises(modelkit.InvalidInputError) as info:
        TabularValidator(MIXED).batch(frame)
    assert {e["field"] for e in info.value.errors} == {"age", "id"}


def test_dataframe_batch_with_unknown_category_names_row() -> None:
    frame = pd.DataFrame([GOOD, {**GOOD, "plan": "gold"}])
    with pytest.raises(modelkit.InvalidInputError) as info:
        TabularValidator(MIXED).batch(frame)
    assert (info.value.field, info.value.index) == ("plan", 1)


def test_array_batch_of_the_wrong_width_is_refused() -> None:
    numeric = TabularInputs(columns=(ColumnSpec(name="a", type="number", dtype="float64"),) * 1)
    with pytest.raises(modelkit.InvalidInputError, match="1 columns"):
        TabularValidator(numeric).batch(np.zeros((2, 3)))


def test_a_mapping_is_not_a_batch() -> None:
    with pytest.raises(modelkit.InvalidInputError, match="predict\\(\\) for one record"):
        TabularValidator(MIXED).batch(GOOD)


def test_empty_batch_gives_an_empty_table() -> None:
    assert TabularValidator(MIXED).batch([]).length == 0


def test_the_number_of_reported_problems_is_capped() -> None:
    with pytest.raises(modelkit.InvalidInputError) as info:
        TabularValidator(MIXED).batch([{**GOOD, "age": "x"}] * 500)
    assert 0 < len(info.value.errors) <= 20


# -- property tests -------------------------------------------------------------------------------


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), inputs=strategies.tabular_inputs())
def test_generated_records_are_accepted(data: st.DataObject, inputs: TabularInputs) -> None:
    record = data.draw(strategies.records(inputs))
    values = TabularValidator(inputs).record(record)
    assert len(values) == len(inputs.columns)
    table = TabularValidator(inputs).batch([record, record])
    assert table.length == 2


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), inputs=strategies.tabular_inputs())
def test_mutated_records_are_refused_naming_the_field(
    data: st.DataObject, inputs: TabularInputs
) -> None:
    record = data.draw(strategies.records(inputs))
    column = data.draw(st.sampled_from(inputs.columns))
    mutation = data.draw(st.sampled_from(["replace", "drop", "add"]))
    if mutation == "replace":
        record[column.name] = data.draw(strategies.invalid_value(column))
        field = column.name
    elif mutation == "drop":
        del record[column.name]
        field = column.name
    else:
        field = data.draw(strategies.column_names.filter(lambda n: n not in record))
        record[field] = 1
    validator = TabularValidator(inputs)
    with pytest.raises(modelkit.InvalidInputError) as info:
        validator.record(record)
    assert field in {e["field"] for e in info.value.errors}
    with pytest.raises(modelkit.InvalidInputError) as info:
        validator.batch([data.draw(strategies.records(inputs)), record])
    assert info.value.index == 1


@given(
    junk=st.recursive(
        st.none() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=8,
    )
)
def test_arbitrary_junk_never_escapes_as_another_exception(junk: Any) -> None:
    validator = TabularValidator(MIXED)
    with contextlib.suppress(modelkit.InvalidInputError):
        validator.record(junk)
    with contextlib.suppress(modelkit.InvalidInputError):
        validator.batch(junk)


# -- tensors --------------------------------------------------------------------------------------

TENSORS = TensorInputs(
    tensors=(
        TensorSpec(name="image", dtype="float32", shape=("batch", 3)),
        TensorSpec(name="mask", dtype="bool", shape=(None,)),
        TensorSpec(name="words", dtype="string", shape=(2,)),
    )
)


def test_tensor_record_is_cast_to_declared_dtypes() -> None:
    arrays = TensorValidator(TENSORS).record(
        {"image": [[1, 2, 3]], "mask": [True, False], "words": ["a", "b"]}
    )
    assert arrays["image"].dtype == np.float32
    assert arrays["words"].dtype == object


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        ({"image": [1, 2, 3]}, "image", "shape"),
        ({"image": [[1, 2]]}, "image", "shape"),
        ({"image": [["a", "b", "c"]]}, "image", "expects float32"),
        ({"mask": [1, 0]}, "mask", "expects bool"),
        ({"words": ["a", "b", "c"]}, "words", "shape"),
        ({"words": [1, 2]}, "words", "expects string"),
        ({"image": [[1, 2], [3]]}, "image", "not an array|shape|expects"),
    ],
)
def test_tensor_mismatches_name_the_input(change: dict[str, Any], field: str, text: str) -> None:
    record = {"image": [[1, 2, 3]], "mask": [True], "words": ["a", "b"], **change}
    with pytest.raises(modelkit.InvalidInputError, match=text) as info:
        TensorValidator(TENSORS).record(record)
    assert info.value.field == field


def test_integer_tensor_refuses_out_of_range_values() -> None:
    inputs = TensorInputs(tensors=(TensorSpec(name="ids", dtype="int8", shape=(None,)),))
    with pytest.raises(modelkit.InvalidInputError, match="range"):
        TensorValidator(inputs).record({"ids": [1, 1000]})


def test_batch_axis_is_only_what_the_graph_declares() -> None:
    assert TensorValidator(
        TensorInputs(tensors=(TensorSpec(name="x", dtype="float32", shape=(None, 3)),))
    ).has_batch_axis
    assert not TensorValidator(
        TensorInputs(tensors=(TensorSpec(name="x", dtype="float32", shape=(1, 3)),))
    ).has_batch_axis


def test_integers_beyond_64_bits_are_refused() -> None:
    inputs = TabularInputs(columns=(ColumnSpec(name="n", type="integer", dtype="int64"),))
    with pytest.raises(modelkit.InvalidInputError, match="64-bit") as info:
        TabularValidator(inputs).record({"n": 2**70})
    assert info.value.field == "n"
    with pytest.raises(modelkit.InvalidInputError, match="64-bit"):
        TabularValidator(inputs).batch([{"n": 1}, {"n": -(2**64)}])


def test_nullable_integer_and_boolean_columns_take_none() -> None:
    class Form(pydantic.BaseModel):
        count: int | None
        agreed: bool | None

    validator = TabularValidator(tabular_inputs_from_model(Form))
    assert validator.record({"count": None, "agreed": None}) == (None, None)
    assert (
        validator.batch([{"count": 3, "agreed": True}, {"count": None, "agreed": None}]).length == 2
    )


# -- missing values and real-table dtypes ------------------------------------------------

NULLABLE = TabularInputs(
    columns=(
        ColumnSpec(name="income", type="number", dtype="float64", nullable=True),
        ColumnSpec(name="age", type="integer", dtype="Int64", nullable=True),
        ColumnSpec(name="member", type="boolean", dtype="boolean", nullable=True),
        ColumnSpec(name="city", type="string", dtype="str", nullable=True),
        ColumnSpec(name="joined", type="datetime", dtype="datetime64[ns]", nullable=True),
    )
)
MISSING_MARKERS = [None, math.nan, np.float32("nan"), pd.NA, pd.NaT, np.datetime64("NaT")]


@pytest.mark.parametrize("marker", MISSING_MARKERS, ids=repr)
@pytest.mark.parametrize("field", [c.name for c in NULLABLE.columns])
def test_every_missing_marker_is_missing_in_every_nullable_column(field: str, marker: Any) -> None:
    record = {"income": 1.5, "age": 3, "member": True, "city": "Oslo", "joined": "2024-01-02"}
    values = TabularValidator(NULLABLE).record({**record, field: marker})
    position = [c.name for c in NULLABLE.columns].index(field)
    assert modelkit_missing(values[position])


@pytest.mark.parametrize("marker", MISSING_MARKERS, ids=repr)
@pytest.mark.parametrize("field", ["age", "income", "plan", "active"])
def test_a_missing_marker_in_a_column_that_takes_none_is_named(field: str, marker: Any) -> None:
    with pytest.raises(modelkit.InvalidInputError, match="no missing values") as info:
        TabularValidator(MIXED).record({**GOOD, field: marker})
    assert info.value.field == field


def modelkit_missing(value: Any) -> bool:
    from modelkit._spec import is_missing

    return is_missing(value)


def test_a_record_and_its_dataframe_agree_on_missing_values() -> None:
    frame = pd.DataFrame(
        {
            "income": [1.0, np.nan],
            "age": pd.array([1, None], dtype="Int64"),
            "member": pd.array([True, None], dtype="boolean"),
            "city": pd.array(["Oslo", None], dtype="str"),
            "joined": pd.to_datetime(["2024-01-02", None]),
        }
    )
    validator = TabularValidator(NULLABLE)
    table = validator.batch(frame)
    columns = table.columns()
    assert np.isnan(columns["income"][1])
    assert np.isnan(columns["age"][1])
    assert columns["member"].tolist() == [True, None]
    assert columns["city"].tolist() == ["Oslo", None]
    assert np.isnat(columns["joined"][1])
    # Records straight from the frame, pandas' own markers included, give the same values.
    for index, record in enumerate(frame.to_dict("records")):
        values = validator.record(record)
        expected = table.records()[index]
        for name, value in zip(validator.names, values, strict=True):
            if modelkit_missing(expected[name]):
                assert modelkit_missing(value), name
        assert _none_for_nan(validator.batch([record]).records()[0]) == _none_for_nan(expected)


def _none_for_nan(record: dict[str, Any]) -> dict[str, Any]:
    return {k: None if modelkit_missing(v) else v for k, v in record.items()}


def test_an_integer_column_refuses_a_fraction_in_records_and_frames() -> None:
    validator = TabularValidator(NULLABLE)
    record = {"income": 1.0, "age": 3.5, "member": True, "city": "a", "joined": None}
    with pytest.raises(modelkit.InvalidInputError, match="expected an integer") as info:
        validator.record(record)
    assert info.value.field == "age"
    frame = pd.DataFrame([{**record, "age": 1.0}, record])
    with pytest.raises(modelkit.InvalidInputError, match="expected an integer") as info:
        validator.batch(frame)
    assert (info.value.field, info.value.index) == ("age", 1)


def test_an_integer_column_read_as_floats_with_gaps_stays_integral() -> None:
    validator = TabularValidator(NULLABLE)
    frame = pd.DataFrame(
        {
            "income": [1.0, 2.0],
            "age": [4.0, np.nan],
            "member": [True, False],
            "city": ["a", "b"],
            "joined": pd.to_datetime(["2024-01-02", "2024-01-03"]),
        }
    )
    assert validator.batch(frame).columns()["age"].tolist()[0] == 4.0
    assert validator.batch(frame.iloc[:1]).columns()["age"].dtype == np.int64


def test_datetimes_are_read_from_iso_strings_and_objects_alike() -> None:
    import datetime as dt

    inputs = TabularInputs(
        columns=(ColumnSpec(name="at", type="datetime", dtype="datetime64[ns]"),)
    )
    validator = TabularValidator(inputs)
    expected = np.datetime64("2024-05-17T11:45:00", "ns")
    for value in (
        "2024-05-17T11:45:00",
        "2024-05-17T13:45:00+02:00",
        "2024-05-17T11:45:00Z",
        dt.datetime(2024, 5, 17, 11, 45),
        pd.Timestamp("2024-05-17 13:45", tz="Europe/Paris"),
        np.datetime64("2024-05-17T11:45"),
    ):
        assert validator.record({"at": value}) == (expected,), value
    with pytest.raises(modelkit.InvalidInputError, match="ISO 8601") as info:
        validator.record({"at": "next tuesday"})
    assert info.value.field == "at"
    assert "date-time" in str(
        modelkit.Signature(inputs=inputs, outputs={"task": "regression"}).input_json_schema()
    )


# -- a DataFrame already of the trained dtypes ----------------------------------------------------

_TEXT = TabularInputs(
    columns=(
        ColumnSpec(name="size", type="number", dtype="float64"),
        ColumnSpec(name="plan", type="string", dtype="str"),
        ColumnSpec(name="city", type="string", dtype="str", nullable=True),
    )
)


def _text_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "size": [1.5, 2.0, 3.25],
            "plan": pd.array(["basic", "pro", "pro"], dtype="str"),
            "city": pd.array(["Lyon", None, "Oslo"], dtype="str"),
        }
    )


def test_a_frame_of_the_trained_dtypes_is_kept_and_read_as_any_other() -> None:
    frame = _text_frame()
    validator = TabularValidator(_TEXT)
    kept = validator.batch(frame)
    rebuilt = validator.batch(frame.astype({"plan": object, "city": object}))
    assert kept.frame is frame
    assert rebuilt.frame is None
    assert kept.columns().keys() == rebuilt.columns().keys()
    for name, values in rebuilt.columns().items():
        assert kept.columns()[name].dtype == values.dtype
        assert kept.columns()[name].tolist() == values.tolist()
    assert kept.matrix().tolist() == rebuilt.matrix().tolist()
    reordered = validator.batch(frame[["city", "size", "plan"]])
    assert list(reordered.frame.columns) == ["size", "plan", "city"]
    # A filtered batch is numbered from 0, as a rebuilt frame is.
    filtered = validator.batch(frame[frame["size"] > 1.8])
    assert list(filtered.frame.index) == [0, 1]
    assert filtered.frame["size"].tolist() == [2.0, 3.25]


def test_a_gap_in_a_text_column_that_takes_none_is_named_in_a_kept_frame() -> None:
    frame = _text_frame()
    frame.loc[1, "plan"] = None
    with pytest.raises(modelkit.InvalidInputError) as caught:
        TabularValidator(_TEXT).batch(frame)
    assert (caught.value.field, caught.value.index) == ("plan", 1)


def test_a_frame_of_other_dtypes_than_the_trained_ones_is_rebuilt() -> None:
    frame = _text_frame().astype({"size": "float32"})
    assert TabularValidator(_TEXT).batch(frame).frame is None


def test_each_frame_is_checked_against_its_own_columns() -> None:
    # The layout of the last column index is kept between calls; another index is read anew.
    validator = TabularValidator(_TEXT)
    frame = _text_frame()
    assert validator.batch(frame).frame is frame
    with pytest.raises(modelkit.InvalidInputError, match="column 'city' is missing"):
        validator.batch(frame.drop(columns="city"))
    reordered = validator.batch(frame[["city", "plan", "size"]])
    assert reordered.columns()["size"].tolist() == [1.5, 2.0, 3.25]
    assert reordered.columns()["city"].tolist() == ["Lyon", None, "Oslo"]
    renamed = frame.copy()
    renamed.columns = ["size", "plan", "town"]  # a new index on the same frame
    with pytest.raises(modelkit.InvalidInputError) as caught:
        validator.batch(renamed)
    assert caught.value.field == "city"
    assert validator.batch(frame).frame is frame


def test_gaps_of_an_object_text_column_are_none_or_named() -> None:
    frame = pd.DataFrame(
        {
            "size": [1.5, 2.0, 3.25, 4.0],
            "plan": pd.Series(["basic", "pro", "pro", "basic"], dtype=object),
            "city": pd.Series(["Lyon", math.nan, pd.NA, None], dtype=object),
        }
    )
    table = TabularValidator(_TEXT).batch(frame)
    assert table.columns()["city"].tolist() == ["Lyon", None, None, None]
    assert frame["city"].iloc[1] is not None  # the caller's frame is left as it was
    frame.loc[2, "plan"] = math.nan
    with pytest.raises(modelkit.InvalidInputError) as caught:
        TabularValidator(_TEXT).batch(frame)
    assert (caught.value.field, caught.value.index) == ("plan", 2)


def test_the_columns_of_a_frame_reach_the_model_read_only() -> None:
    # The columns share the caller's memory: a model that writes into its input must not
    # change the caller's frame (it gets numpy's "read-only" refusal, as it did from a Series).
    frame = _text_frame().astype({"plan": object})  # rebuilt: its arrays go to the model
    table = TabularValidator(_TEXT).batch(frame)
    assert table.frame is None
    size = table.columns()["size"]
    assert np.shares_memory(size, frame["size"].to_numpy())
    with pytest.raises(ValueError, match="read-only"):
        size[0] = 999.0
    assert frame["size"].iloc[0] == 1.5


def test_a_frame_not_labelled_by_strings_is_rebuilt_with_the_inputs_names() -> None:
    inputs = TabularInputs(
        columns=tuple(ColumnSpec(name=n, type="number", dtype="float64") for n in ("0", "1"))
    )
    frame = pd.DataFrame({0: [1.0, 2.0], 1: [3.0, 4.0]})  # labels 0 and 1, not "0" and "1"
    table = TabularValidator(inputs).batch(frame)
    assert table.frame is None
    assert table.columns()["1"].tolist() == [3.0, 4.0]
    named = frame.rename(columns=str)
    assert TabularValidator(inputs).batch(named).frame is not None
