"""The single-record fast path of TabularValidator: same answers as the slow path, only sooner."""

from __future__ import annotations

import math
import warnings
from typing import Annotated, Any, Literal

import numpy as np
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelkit
from modelkit._infer import tabular_inputs_from_model
from modelkit._spec import ColumnSpec, TabularInputs
from modelkit._validation import TabularValidator
from tests import strategies


def _inputs(*columns: ColumnSpec) -> TabularInputs:
    return TabularInputs(columns=columns)


def _input_model(inputs: TabularInputs) -> type[pydantic.BaseModel]:
    signature = modelkit.Signature(inputs=inputs, outputs=modelkit.Outputs(task="regression"))
    return signature.input_model()


def _outcome(check: Any, record: Any) -> tuple[str, Any]:
    # model_dump warns about values a constructed model should not hold; the values still count.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return "values", check(record)
        except modelkit.InvalidInputError as exc:
            return "errors", exc.errors


def _same_values(left: tuple[Any, ...], right: tuple[Any, ...]) -> bool:
    def same(a: Any, b: Any) -> bool:
        if type(a) is not type(b):
            return False
        if isinstance(a, float) and math.isnan(a):
            return math.isnan(b)
        return bool(a == b)

    return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))


def _slow_path_forbidden(validator: TabularValidator) -> TabularValidator:
    def refuse(record: Any, index: int | None) -> tuple[Any, ...]:
        raise AssertionError(f"{record!r} took the slow path")

    validator._record_slow = refuse  # type: ignore[method-assign]
    return validator


NUMBERS_20 = _inputs(*(ColumnSpec(name=f"x{i}", type="number", dtype="float64") for i in range(20)))
MIXED = _inputs(
    ColumnSpec(name="income", type="number", dtype="float64"),
    ColumnSpec(name="debt", type="number", dtype="float64", nullable=True),
    ColumnSpec(name="age", type="integer", dtype="int64"),
    ColumnSpec(name="active", type="boolean", dtype="bool"),
    ColumnSpec(name="city", type="string", dtype="object", nullable=True),
    ColumnSpec(name="plan", type="string", dtype="category", categories=("basic", "pro")),
)
GOOD = {"income": 1200.5, "debt": None, "age": 30, "active": True, "city": "Lyon", "plan": "pro"}
CHECKED_GOOD = (1200.5, math.nan, 30, True, "Lyon", "pro")


# -- the differential property ------------------------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), inputs=strategies.mixed_tabular_inputs())
def test_fast_path_agrees_with_the_slow_path(data: st.DataObject, inputs: TabularInputs) -> None:
    validator = TabularValidator(inputs)
    model = _input_model(inputs)
    for _ in range(3):  # the second and third records of a signature meet cached plans
        record = data.draw(strategies.any_records(inputs, model))
        fast = _outcome(validator.record, record)
        slow = _outcome(lambda r: validator._record_slow(r, None), record)
        assert fast[0] == slow[0], (record, fast, slow)
        if fast[0] == "values":
            assert _same_values(fast[1], slow[1]), (record, fast, slow)
        else:
            assert fast[1] == slow[1]


# -- what the fast path takes -------------------------------------------------------------------


def test_twenty_floats_in_a_list_skip_the_slow_path() -> None:
    values = [i + 0.5 for i in range(20)]
    assert _slow_path_forbidden(TabularValidator(NUMBERS_20)).record(values) == tuple(values)


@pytest.mark.parametrize(
    "record",
    [GOOD, list(GOOD.values()), tuple(GOOD.values())],
    ids=["dict", "list", "tuple"],
)
def test_a_well_formed_mixed_record_skips_the_slow_path(record: Any) -> None:
    checked = _slow_path_forbidden(TabularValidator(MIXED)).record(record)
    assert _same_values(checked, CHECKED_GOOD)


def test_an_instance_of_the_input_model_is_read_without_model_dump() -> None:
    validator = TabularValidator(MIXED)
    instance = _input_model(MIXED).model_validate(GOOD)
    assert _same_values(_slow_path_forbidden(validator).record(instance), CHECKED_GOOD)


def test_a_float_array_skips_the_slow_path() -> None:
    array = np.arange(20, dtype=np.float64)
    checked = _slow_path_forbidden(TabularValidator(NUMBERS_20)).record(array)
    assert _same_values(checked, tuple(float(v) for v in range(20)))


# -- the slow path's semantics hold on the fast path ----------------------------------------------


def test_an_int_in_a_number_column_becomes_a_float_as_on_the_slow_path() -> None:
    checked = TabularValidator(NUMBERS_20).record(list(range(20)))
    assert all(type(v) is float for v in checked)
    assert checked == tuple(float(v) for v in range(20))


def test_bool_is_not_accepted_as_a_number_on_the_fast_path() -> None:
    with pytest.raises(modelkit.InvalidInputError, match="expected a number, got bool") as info:
        TabularValidator(NUMBERS_20).record([True, *[1.0] * 19])
    assert info.value.field == "x0"


def test_integers_too_large_for_a_float_are_refused_even_when_their_sum_is_small() -> None:
    with pytest.raises(modelkit.InvalidInputError, match="too large for a float"):
        TabularValidator(NUMBERS_20).record(
            {"x0": 10**400, "x1": -(10**400), **{f"x{i}": 0.0 for i in range(2, 20)}}
        )


def test_nan_and_infinity_are_refused_with_the_slow_path_message() -> None:
    validator = TabularValidator(MIXED)
    with pytest.raises(modelkit.InvalidInputError, match="infinity") as info:
        validator.record({**GOOD, "debt": math.inf})
    assert info.value.field == "debt"
    with pytest.raises(modelkit.InvalidInputError, match="NaN"):
        validator.record({**GOOD, "income": math.nan})


def test_nan_in_a_nullable_number_column_is_kept() -> None:
    checked = TabularValidator(MIXED).record({**GOOD, "debt": math.nan})
    assert math.isnan(checked[1])


def test_numpy_scalars_are_converted_as_on_the_slow_path() -> None:
    checked = TabularValidator(MIXED).record(
        {**GOOD, "income": np.float32(2.5), "age": np.int64(3)}
    )
    assert (type(checked[0]), type(checked[2])) == (float, int)


def test_a_str_subclass_is_returned_as_the_slow_path_returns_it() -> None:
    value = strategies.TextSubclass("Lyon")
    assert TabularValidator(MIXED).record({**GOOD, "city": value})[4] is value


def test_integer_category_does_not_take_true_for_one() -> None:
    inputs = _inputs(ColumnSpec(name="seats", type="integer", dtype="int64", categories=(1, 5)))
    assert TabularValidator(inputs).record({"seats": 1}) == (1,)
    with pytest.raises(modelkit.InvalidInputError, match="expected an integer"):
        TabularValidator(inputs).record({"seats": True})


def test_number_category_compares_the_value_as_a_float() -> None:
    inputs = _inputs(ColumnSpec(name="rate", type="number", dtype="float64", categories=(1, 2.5)))
    checked = TabularValidator(inputs).record({"rate": 1})
    assert (checked, type(checked[0])) == ((1.0,), float)
    # float(2**60 + 1) rounds to 2.0**60: the slow path compares the float, and so does the fast.
    big = _inputs(ColumnSpec(name="n", type="number", dtype="float64", categories=(2.0**60,)))
    assert TabularValidator(big).record([2**60 + 1]) == (2.0**60,)


def test_an_unknown_category_is_named() -> None:
    with pytest.raises(modelkit.InvalidInputError, match="one of") as info:
        TabularValidator(MIXED).record({**GOOD, "plan": "gold"})
    assert info.value.field == "plan"


def test_integers_beyond_64_bits_are_refused_on_the_fast_path() -> None:
    with pytest.raises(modelkit.InvalidInputError, match="64-bit"):
        TabularValidator(MIXED).record({**GOOD, "age": 2**63})


def test_a_dict_subclass_is_read_as_a_mapping() -> None:
    assert _same_values(TabularValidator(MIXED).record(strategies.DictSubclass(GOOD)), CHECKED_GOOD)


# -- pydantic records that model_dump would change -----------------------------------------------


def test_a_field_serializer_is_honoured() -> None:
    class Doubled(pydantic.BaseModel):
        value: float

        @pydantic.field_serializer("value")
        def double(self, value: float) -> float:
            return value * 2

    validator = TabularValidator(tabular_inputs_from_model(Doubled))
    assert validator.record(Doubled(value=1.5)) == (3.0,)


def test_a_serialization_alias_is_honoured() -> None:
    class Aliased(pydantic.BaseModel):
        plan: Literal["basic", "pro"] = pydantic.Field(serialization_alias="tier")

    validator = TabularValidator(tabular_inputs_from_model(Aliased))
    with pytest.raises(modelkit.InvalidInputError, match="'plan' is missing"):
        validator.record(Aliased(plan="pro"))


def test_a_model_serializer_is_honoured() -> None:
    class Halved(pydantic.BaseModel):
        value: float

        @pydantic.model_serializer
        def dump(self) -> dict[str, float]:
            return {"value": self.value / 2}

    validator = TabularValidator(_inputs(ColumnSpec(name="value", type="number", dtype="float64")))
    assert validator.record(Halved(value=3.0)) == (1.5,)


def test_an_annotated_serializer_is_honoured() -> None:
    class Rounded(pydantic.BaseModel):
        value: Annotated[float, pydantic.PlainSerializer(round)]

    validator = TabularValidator(_inputs(ColumnSpec(name="value", type="number", dtype="float64")))
    assert validator.record(Rounded(value=2.75)) == (3.0,)


def test_an_overridden_model_dump_is_honoured() -> None:
    class Doubled(pydantic.BaseModel):
        value: float

        def model_dump(self, **options: Any) -> dict[str, Any]:
            return {"value": self.value * 2}

    validator = TabularValidator(_inputs(ColumnSpec(name="value", type="number", dtype="float64")))
    assert validator.record(Doubled(value=1.5)) == (3.0,)


def test_an_excluded_field_is_missing() -> None:
    class Hidden(pydantic.BaseModel):
        price: float = pydantic.Field(exclude=True)

    validator = TabularValidator(_inputs(ColumnSpec(name="price", type="number", dtype="float64")))
    with pytest.raises(modelkit.InvalidInputError, match="'price' is missing"):
        validator.record(Hidden(price=1.0))


def test_an_allowed_extra_field_is_an_extra_field() -> None:
    class Open(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="allow")
        price: float

    validator = TabularValidator(_inputs(ColumnSpec(name="price", type="number", dtype="float64")))
    with pytest.raises(modelkit.InvalidInputError, match="'tax' is not an input"):
        validator.record(Open(price=1.0, tax=0.2))  # type: ignore[call-arg]


def test_a_plain_model_with_aliases_is_read_without_model_dump() -> None:
    class Applicant(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(alias_generator=str.upper)
        income: float = pydantic.Field(gt=0)
        city: str | None = None
        plan: Literal["basic", "pro"] = pydantic.Field(serialization_alias="tier")

    inputs = _inputs(
        ColumnSpec(name="INCOME", type="number", dtype="float64"),
        ColumnSpec(name="CITY", type="string", dtype="object", nullable=True),
        ColumnSpec(name="tier", type="string", dtype="object", categories=("basic", "pro")),
    )
    record = Applicant.model_validate({"INCOME": 2.5, "PLAN": "pro"})
    assert _slow_path_forbidden(TabularValidator(inputs)).record(record) == (2.5, None, "pro")


def test_a_computed_field_is_an_extra_field() -> None:
    class WithTotal(pydantic.BaseModel):
        price: float

        @pydantic.computed_field  # type: ignore[prop-decorator]
        @property
        def total(self) -> float:
            return self.price * 1.2

    validator = TabularValidator(_inputs(ColumnSpec(name="price", type="number", dtype="float64")))
    with pytest.raises(modelkit.InvalidInputError, match="'total' is not an input"):
        validator.record(WithTotal(price=1.0))


def test_a_constructed_model_with_an_int_in_a_float_field_gives_the_slow_path_answer() -> None:
    model = _input_model(MIXED)
    instance = model.model_construct(**{f"field_{i}": v for i, v in enumerate(GOOD.values())})
    object.__setattr__(instance, "field_0", 7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # model_dump warns: the field holds an int
        checked = TabularValidator(MIXED).record(instance)
    assert (checked[0], type(checked[0])) == (7.0, float)


def test_nan_gaps_as_pandas_records_give_them_skip_the_slow_path() -> None:
    """df.to_dict("records") writes every gap as NaN, whatever the column's type."""
    inputs = _inputs(
        ColumnSpec(name="debt", type="number", dtype="float64", nullable=True),
        ColumnSpec(name="age", type="integer", dtype="Int64", nullable=True),
        ColumnSpec(name="active", type="boolean", dtype="boolean", nullable=True),
        ColumnSpec(name="city", type="string", dtype="str", nullable=True),
    )
    record = {"debt": math.nan, "age": math.nan, "active": math.nan, "city": math.nan}
    checked = _slow_path_forbidden(TabularValidator(inputs)).record(record)
    assert _same_values(checked, (math.nan, None, None, None))
    # A float that is not NaN is for the slow path to judge: a whole one fits an integer column.
    assert TabularValidator(inputs).record({**record, "age": 3.0})[1] == 3
    with pytest.raises(modelkit.InvalidInputError, match="expected a string"):
        TabularValidator(inputs).record({**record, "city": 1.5})
