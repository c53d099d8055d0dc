"""JSON conversion on pydantic-core: strict JSON out of whatever a record or output holds."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pydantic
import pytest

from modelkit._jsonable import to_jsonable


class Item(pydantic.BaseModel):
    score: float


class Answer(pydantic.BaseModel):
    items: list[Item]


def test_nan_in_a_model_inside_a_model_becomes_null() -> None:
    answer = Answer(items=[Item(score=float("nan")), Item(score=0.5)])
    assert to_jsonable(answer) == {"items": [{"score": None}, {"score": 0.5}]}


def test_numpy_and_pandas_values_become_plain_json() -> None:
    value = {
        "scores": np.array([[0.5, np.inf]], dtype=np.float32),
        "count": np.int64(3),
        "when": np.array(["2024-05-01", "NaT"], dtype="datetime64[ns]"),
        "missing": [pd.NA, pd.NaT],
        (1, 2): "a tuple key",
    }
    converted = to_jsonable(value)
    assert converted == {
        "scores": [[0.5, None]],
        "count": 3,
        "when": ["2024-05-01T00:00:00.000000000", None],
        "missing": [None, None],
        "1,2": "a tuple key",
    }
    json.dumps(converted, allow_nan=False)


def test_only_the_part_that_cannot_be_converted_gets_the_default() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    converted = to_jsonable({"ok": 1.5, "bad": b"\xff", "cycle": cycle}, default=lambda _: "?")
    assert converted["ok"] == 1.5
    assert converted["bad"] == "?"
    json.dumps(converted, allow_nan=False)


def test_on_array_sees_every_array_and_may_stop_the_conversion() -> None:
    seen: list[tuple[int, ...]] = []
    to_jsonable({"a": np.zeros((2, 3)), "b": [np.ones(4)]}, on_array=lambda a: seen.append(a.shape))
    assert sorted(seen) == [(2, 3), (4,)]

    def refuse(array: np.ndarray) -> None:
        raise OverflowError("too large")

    with pytest.raises(OverflowError, match="too large"):
        to_jsonable({"a": np.zeros(3)}, on_array=refuse)
