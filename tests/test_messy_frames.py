"""Pipelines fitted on Hypothesis-generated messy DataFrames: every dtype a real table has,
missing values anywhere, columns with no value in the sample or none at all.

Whatever scikit-learn fits, modelkit saves, and its joblib bundle answers as scikit-learn does,
in batch and record by record; bad records get modelkit's errors, never pandas', numpy's or
scikit-learn's.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import modelkit
from tests.real_data import checks, pipelines
from tests.strategies import hostile_values, messy_frames

MODELS = ("linear", "random_forest", "hist_gradient_boosting", "native_hist_gradient_boosting")
"""The pipelines of the real-data suite, and HistGradientBoosting taking missing values itself
(numbers passed through, strings ordinal-encoded with missing kept missing)."""

pytestmark = pytest.mark.filterwarnings(f"ignore:{checks.EMPTY_FEATURES_WARNING}:UserWarning")

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    with checks.one_thread():
        yield


def _pipeline(kind: str) -> Any:
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    if kind == "native_hist_gradient_boosting":
        features = ColumnTransformer(
            [
                (
                    "numbers",
                    "passthrough",
                    make_column_selector(dtype_include=pipelines.NUMBER_DTYPES),
                ),
                (
                    "strings",
                    OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                    make_column_selector(dtype_include=pipelines.STRING_DTYPES),
                ),
            ]
        )
        model = HistGradientBoostingClassifier(max_iter=5, random_state=0)
        return Pipeline([("features", features), ("model", model)])
    final = {
        "linear": LogisticRegression(max_iter=500),
        "random_forest": RandomForestClassifier(n_estimators=3, random_state=0),
        "hist_gradient_boosting": HistGradientBoostingClassifier(max_iter=5, random_state=0),
    }[kind]
    features = pipelines.preprocessing(dense=kind == "hist_gradient_boosting")
    return Pipeline([("features", features), ("model", final)])


def _fitted_or_none(kind: str, frame: Any, target: Any) -> Any:
    """The pipeline fitted on ``frame``, or ``None`` when scikit-learn itself refuses it."""
    pipeline = _pipeline(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence on 8 random rows is not what is tested
        try:
            pipeline.fit(frame, target)
            pipeline.predict_proba(frame)
        except (ValueError, TypeError):
            return None  # e.g. nothing left after dropping all-missing columns, or pd.NA strings
    return pipeline


def _save(pipeline: Any, frame: Any, sample_rows: int, directory: str) -> Path:
    path = Path(directory) / "messy"
    modelkit.save(pipeline, path, name="messy", version="1", sample_input=frame.head(sample_rows))
    return path


@SETTINGS
@given(case=messy_frames(), kind=st.sampled_from(MODELS))
def test_bundle_of_a_pipeline_fitted_on_a_messy_frame_answers_as_scikit_learn(
    case: tuple[Any, Any, int], kind: str
) -> None:
    frame, target, sample_rows = case
    pipeline = _fitted_or_none(kind, frame, target)
    assume(pipeline is not None)
    with tempfile.TemporaryDirectory() as directory:
        model = modelkit.load(_save(pipeline, frame, sample_rows, directory))
        checks.check_batch(model, pipeline, frame)
        checks.check_records(model, pipeline, frame)


@SETTINGS
@given(case=messy_frames(), kind=st.sampled_from(MODELS), data=st.data())
def test_bad_values_in_records_of_a_messy_frame_raise_only_modelkit_errors(
    case: tuple[Any, Any, int], kind: str, data: st.DataObject
) -> None:
    frame, target, sample_rows = case
    pipeline = _fitted_or_none(kind, frame, target)
    assume(pipeline is not None)
    records = frame.to_dict("records")
    with tempfile.TemporaryDirectory() as directory:
        model = modelkit.load(_save(pipeline, frame, sample_rows, directory))
        bad = []
        for record in records[:5]:
            column = data.draw(st.sampled_from(list(frame.columns)), label="column")
            bad.append({**record, column: data.draw(hostile_values, label="value")})
        # Refusing is fine; any other exception (pandas', numpy's, scikit-learn's) fails.
        for record in bad:
            with contextlib.suppress(modelkit.ModelkitError):
                model.predict(record)
        with contextlib.suppress(modelkit.ModelkitError):
            model.predict_batch(bad)


@pytest.mark.parametrize(
    ("dtype", "missing"),
    [("object", None), ("object", math.nan), ("str", math.nan), ("category", math.nan)],
    ids=["object-None", "object-NaN", "str-NaN", "category-NaN"],
)
@pytest.mark.parametrize("sample_rows", [5, 30], ids=["sample-without-gaps", "sample-with-gaps"])
def test_a_missing_string_reaches_the_pipeline_as_it_was_fitted(
    tmp_path: Path, dtype: str, missing: Any, sample_rows: int
) -> None:
    # SimpleImputer(missing_values=np.nan) does not take None for missing in an object column:
    # scikit-learn one-hot encodes None as a category of its own, so feeding NaN instead (or
    # None to a column fitted on NaN) imputes the most frequent value and answers otherwise.
    import pandas as pd

    length = 35
    gaps = {20, 22}  # a minority, so that imputing them changes the answer
    colours = [missing if row in gaps else "red" for row in range(length)]
    frame = pd.DataFrame(
        {
            "amount": [float(row % 7) for row in range(length)],
            "colour": pd.Series(colours, dtype=dtype),
        }
    )
    target = pd.Series(["yes" if row in gaps or row == 3 else "no" for row in range(length)])
    pipeline = _fitted_or_none("linear", frame, target)
    assert pipeline is not None
    model = modelkit.load(_save(pipeline, frame, sample_rows, str(tmp_path)))
    checks.check_batch(model, pipeline, frame)
    checks.check_records(model, pipeline, frame)
