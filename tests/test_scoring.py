"""The tolerant scorer: what it sets aside, what it keeps, and what it costs."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelkit._scoring import score_tolerant, take_rows
from modelkit.errors import InvalidInputError


class Runtime:
    """Scores rows (the value doubled) and refuses negative ones like a runtime does: naming
    only the first refused row of the batch (``names_all`` names every one, as a validator)."""

    def __init__(self, *, names_all: bool = False, names_none: bool = False) -> None:
        self.names_all = names_all
        self.names_none = names_none
        self.rows_scored = 0

    def __call__(self, part: np.ndarray) -> Mapping[str, np.ndarray]:
        self.rows_scored += len(part)
        bad = np.flatnonzero(part < 0)
        if len(bad):
            if self.names_none and len(part) > 1:
                raise InvalidInputError("the model rejected the input")
            named = bad if self.names_all else bad[:1]
            raise InvalidInputError(
                f"Record {named[0]}: value {part[named[0]]} is negative",
                index=int(named[0]),
                errors=[
                    {"field": "x", "index": int(i), "message": f"Record {i}: negative"}
                    for i in named
                ],
            )
        return {"value": part * 2}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(-3, 20), max_size=60),
    st.sampled_from(["first", "all", "none"]),
)
def test_every_good_row_is_scored_and_every_bad_one_set_aside(
    values: list[int], naming: str
) -> None:
    batch = np.array(values, dtype=float)
    runtime = Runtime(names_all=naming == "all", names_none=naming == "none")
    scored = score_tolerant(runtime, batch, len(batch), take_rows)
    good = np.flatnonzero(batch >= 0)
    assert scored.kept.tolist() == good.tolist()
    assert scored.columns.get("value", np.array([])).tolist() == (batch[good] * 2).tolist()
    assert [refused.row for refused in scored.refused] == np.flatnonzero(batch < 0).tolist()
    for refused in scored.refused:
        assert not refused.message.startswith("Record")  # the caller says where


@pytest.mark.parametrize("bad", [1, 30, 300])
def test_the_cost_grows_with_rows_times_log_of_bad_rows_not_rows_times_bad_rows(
    bad: int,
) -> None:
    # A runtime names one refused row per failed call; retrying the whole rest after each
    # would score about rows x bad rows; halving keeps it near rows x log2(bad rows).
    rows = 3000
    batch = np.arange(rows, dtype=float)
    batch[np.linspace(0, rows - 1, bad).astype(int)] = -1.0
    runtime = Runtime()
    scored = score_tolerant(runtime, batch, rows, take_rows)
    assert len(scored.refused) == bad
    assert runtime.rows_scored <= 4 * rows * (math.log2(bad) + 2)
