"""The joblib adapter: every default scikit-learn classifier and regressor round-trips exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.linear_model import LogisticRegression

import modelkit
from tests.adapters import zoo


@pytest.mark.parametrize(
    ("name", "cls"),
    zoo.default_estimators("classifier"),
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_default_classifier_round_trips(
    name: str, cls: type, classification_data: Any, tmp_path: Path
) -> None:
    estimator, X = zoo.fit(cls, *classification_data)
    zoo.assert_round_trip(estimator, X, tmp_path / name, task="classification")


@pytest.mark.parametrize(
    ("name", "cls"),
    zoo.default_estimators("regressor"),
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_default_regressor_round_trips(
    name: str, cls: type, regression_data: Any, tmp_path: Path
) -> None:
    estimator, X = zoo.fit(cls, *regression_data)
    zoo.assert_round_trip(estimator, X, tmp_path / name, task="regression")


def test_a_pipeline_on_a_dataframe_with_strings_round_trips(tmp_path: Path) -> None:
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame(
        {
            "plan": pd.Categorical(["a", "b", "c", "a"] * 10),
            "city": ["x", "y", None, "x"] * 10,
            "tenure": [1, 5, 7, 2] * 10,
            "spend": [1.0, np.nan, 3.0, 4.0] * 10,
        }
    )
    target = np.arange(40, dtype=float)
    pipeline = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), ["plan", "city"]), remainder="passthrough"
        ),
        HistGradientBoostingRegressor(max_iter=10),
    ).fit(frame, target)
    modelkit.save(pipeline, tmp_path / "p", name="p", version="1", sample_input=frame)
    model = modelkit.load(tmp_path / "p")
    np.testing.assert_array_equal(model.predict_batch(frame)["value"], pipeline.predict(frame))
    record = {"plan": "b", "city": None, "tenure": 5, "spend": None}
    assert (
        model.predict(record).value
        == pipeline.predict(
            pd.DataFrame([record]).astype({"plan": frame["plan"].dtype, "spend": float})
        )[0]
    )


def test_any_picklable_object_with_predict_is_saved(tmp_path: Path) -> None:
    from tests.custom_models import DoubleIt

    modelkit.save(DoubleIt(), tmp_path / "d", name="d", version="1", sample_input=[[1.0, 2.0]])
    model = modelkit.load(tmp_path / "d")
    assert model.format == "joblib"
    assert model.predict([1.5, 2.0]).value == 3.5


def test_bare_joblib_file_loads_only_when_trusted(
    tmp_path: Path, iris_classifier: Any, iris: Any
) -> None:
    import joblib

    joblib.dump(iris_classifier, tmp_path / "model.joblib")
    with pytest.raises(modelkit.BundleError, match="trusted=True"):
        modelkit.load(tmp_path / "model.joblib")
    model = modelkit.load(tmp_path / "model.joblib", trusted=True)
    assert model.signature.names == tuple(iris[0].columns)
    assert (
        model.predict(iris[0].iloc[0].to_dict()).label
        == iris_classifier.predict(iris[0].head(1))[0]
    )


def test_estimator_without_features_needs_a_sample(tmp_path: Path) -> None:
    from tests.custom_models import DoubleIt

    with pytest.raises(modelkit.BundleError, match="sample_input"):
        modelkit.save(DoubleIt(), tmp_path / "d", name="d", version="1")


def test_a_model_that_cannot_predict_its_sample_is_not_saved(
    tmp_path: Path, iris_classifier: Any
) -> None:
    with pytest.raises(modelkit.BundleError, match="cannot predict"):
        modelkit.save(
            iris_classifier, tmp_path / "m", name="m", version="1", sample_input=np.zeros((2, 7))
        )
    assert not (tmp_path / "m").exists()
    assert list(tmp_path.iterdir()) == []


def test_forest_pipeline_labels_from_one_pass_match_predict(
    tmp_path: Path, classification_data: Any
) -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = classification_data
    pipeline = make_pipeline(
        StandardScaler(), RandomForestClassifier(n_estimators=7, random_state=0)
    ).fit(X, y)
    modelkit.save(pipeline, tmp_path / "p", name="p", version="1", sample_input=X[:5])
    model = modelkit.load(tmp_path / "p")
    assert model.runner._argmax_classes is not None  # type: ignore[attr-defined]
    predictions = model.predict_batch(X)
    np.testing.assert_array_equal(predictions["label"], pipeline.predict(X))
    np.testing.assert_array_equal(predictions["probabilities"], pipeline.predict_proba(X))
    assert predictions["label"].dtype == pipeline.predict(X).dtype


# -- one pass through the model per call ------------------------------------------------------


_TRANSFORMS = [0]


def _count(X: Any) -> Any:
    """A pipeline step that counts how often the pipeline transforms its input."""
    _TRANSFORMS[0] += 1
    return X


class _Equals(LogisticRegression):  # type: ignore[misc]
    """Class 0 wherever the first two features are equal: a rule rows drawn column by column
    almost never meet, and a sample may."""

    def predict(self, X: Any) -> Any:
        labels = super().predict(X)
        return np.where(X[:, 0] == X[:, 1], self.classes_[0], labels)


class _Narrow(LogisticRegression):  # type: ignore[misc]
    """Labels as int32 where its classes are int64 (as xgboost's multi:softmax gives them)."""

    def predict(self, X: Any) -> Any:
        return super().predict(X).astype(np.int32)


class _Cautious(LogisticRegression):  # type: ignore[misc]
    """Labels positive from a probability of 0.2: not the arg-max of its probabilities."""

    def predict(self, X: Any) -> Any:
        return self.classes_[(self.predict_proba(X)[:, 1] > 0.2).astype(int)]


def _labels_rule(model: Any) -> object:
    return model.manifest.adapter.get("labels")


@pytest.mark.filterwarnings("ignore:The `probability` parameter:FutureWarning")
@pytest.mark.parametrize(
    ("final", "rule"),
    [
        ("logistic", "argmax"),
        ("boosting", "argmax"),
        ("svc", "predict"),  # labels by the decision function, probabilities by Platt scaling
        ("threshold", "predict"),  # the cut-off moved from 0.5
    ],
)
def test_labels_come_from_one_pass_where_the_model_allows_and_the_pipeline_transforms_once(
    final: str, rule: str, tmp_path: Path
) -> None:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import FixedThresholdClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.svm import SVC

    X, y = make_classification(n_samples=300, n_features=5, random_state=1)
    estimator = {
        "logistic": LogisticRegression(),
        "boosting": HistGradientBoostingClassifier(max_iter=20),
        "svc": SVC(probability=True, random_state=0),
        "threshold": FixedThresholdClassifier(LogisticRegression(), threshold=0.3),
    }[final]
    pipeline = make_pipeline(FunctionTransformer(_count), estimator).fit(X, y)
    modelkit.save(pipeline, tmp_path / "m", name="m", version="1", sample_input=X[:20])
    model = modelkit.load(tmp_path / "m")
    assert _labels_rule(model) == rule

    _TRANSFORMS[0] = 0
    batch = model.predict_batch(X)
    assert _TRANSFORMS[0] == 1
    single = model.predict(X[7].tolist())
    assert _TRANSFORMS[0] == 2
    np.testing.assert_array_equal(batch["label"], pipeline.predict(X))
    np.testing.assert_array_equal(batch["probabilities"], pipeline.predict_proba(X))
    assert single.label == pipeline.predict(X[7:8])[0]


def test_labels_that_follow_a_moved_threshold_are_caught_on_generated_rows(
    tmp_path: Path,
) -> None:
    """A classifier of unknown type whose labels are not the arg-max of its probabilities, on a
    sample where they happen to agree: the rows generated from the sample tell."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=400, n_features=4, random_state=3)
    model = _Cautious().fit(X, y)
    positive = model.predict_proba(X)[:, 1]
    sample = X[(positive < 0.05) | (positive > 0.95)][:20]  # no row between the two cut-offs
    assert np.array_equal(
        model.predict(sample), model.classes_[model.predict_proba(sample).argmax(1)]
    )
    modelkit.save(model, tmp_path / "m", name="m", version="1", sample_input=sample)
    loaded = modelkit.load(tmp_path / "m")
    assert _labels_rule(loaded) == "predict"
    np.testing.assert_array_equal(loaded.predict_batch(X)["label"], model.predict(X))


_SEEN: list[Any] = []


def _remember(X: Any) -> Any:
    _SEEN.append(X)
    return X


def test_the_sample_itself_must_agree_for_labels_from_one_pass(tmp_path: Path) -> None:
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=300, n_features=4, random_state=5)
    model = _Equals().fit(X, y)
    sample = X[:20].copy()
    sample[:5, 1] = sample[:5, 0]  # rows where the rule, not the arg-max, decides
    positive = sample[:5]
    assert not np.array_equal(
        model.predict(positive), model.classes_[model.predict_proba(positive).argmax(1)]
    )
    modelkit.save(model, tmp_path / "m", name="m", version="1", sample_input=sample)
    loaded = modelkit.load(tmp_path / "m")
    assert _labels_rule(loaded) == "predict"
    np.testing.assert_array_equal(loaded.predict_batch(sample)["label"], model.predict(sample))


def test_labels_of_another_type_than_the_classes_keep_their_type(tmp_path: Path) -> None:
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=200, n_features=4, random_state=6)
    model = _Narrow().fit(X, y)
    modelkit.save(model, tmp_path / "m", name="m", version="1", sample_input=X[:20])
    loaded = modelkit.load(tmp_path / "m")
    assert _labels_rule(loaded) == "predict"
    assert loaded.predict_batch(X)["label"].dtype == np.int32


def test_rows_whose_probabilities_tie_are_labelled_as_the_model_labels_them(
    tmp_path: Path,
) -> None:
    """A logistic regression labels by the sign of its decision, whose probability rounds to
    exactly 0.5 just either side of the boundary: there the model, not the arg-max, decides."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=300, n_features=3, n_informative=2, n_redundant=0, random_state=7
    )
    model = LogisticRegression().fit(X, y)
    modelkit.save(model, tmp_path / "m", name="m", version="1", sample_input=X[:20])
    loaded = modelkit.load(tmp_path / "m")
    assert _labels_rule(loaded) == "argmax"
    # Points on the boundary, nudged by a few ulps along the first feature.
    w, b = model.coef_[0], model.intercept_[0]
    base = np.array([0.0, 0.3, -0.2])
    base[0] = -(b + w[1] * base[1] + w[2] * base[2]) / w[0]
    rows = np.array([base + np.array([k * 1e-16 / w[0], 0.0, 0.0]) for k in range(-3, 4)])
    decisions = model.decision_function(rows)
    assert (np.abs(decisions) < 1e-15).all()
    probabilities = model.predict_proba(rows)
    assert (probabilities[:, 0] == probabilities[:, 1]).any()  # the tie this test is about
    expected = model.predict(rows)
    np.testing.assert_array_equal(loaded.predict_batch(rows)["label"], expected)
    assert [loaded.predict(row.tolist()).label for row in rows] == expected.tolist()


def test_a_dataframe_of_the_trained_dtypes_reaches_the_pipeline_as_given(tmp_path: Path) -> None:
    """No rebuilt copy of a batch that is already what the model was trained on; a column of
    another dtype (objects here) is rebuilt, and both answer as scikit-learn does."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    frame, y = _penguins()
    data = frame[["bill_length_mm", "flipper_length_mm", "island", "sex"]].astype(
        {"island": "str", "sex": "str"}
    )
    final = LogisticRegression(max_iter=1000)
    pipeline = make_pipeline(FunctionTransformer(_remember), _standard_pipeline(final))
    pipeline.fit(data, y)
    modelkit.save(pipeline, tmp_path / "m", name="m", version="1", sample_input=data.head(50))
    model = modelkit.load(tmp_path / "m")

    _SEEN.clear()
    as_given = model.predict_batch(data)
    assert len(_SEEN) == 1
    assert _SEEN[0] is data
    _SEEN.clear()
    rebuilt = model.predict_batch(data.astype({"island": object, "sex": object}))
    assert len(_SEEN) == 1
    assert _SEEN[0] is not data
    np.testing.assert_array_equal(as_given["label"], rebuilt["label"])
    np.testing.assert_array_equal(as_given["label"], pipeline.predict(data))
    np.testing.assert_array_equal(as_given["probabilities"], pipeline.predict_proba(data))


# -- missing values follow the model ------------------------------------------------------------


def _standard_pipeline(final: Any) -> Any:
    """The pipeline most people write for a raw DataFrame: impute, scale, one-hot."""
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = make_pipeline(SimpleImputer(), StandardScaler())
    strings = make_pipeline(
        SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
    )
    features = ColumnTransformer(
        [
            ("numbers", numbers, make_column_selector(dtype_include="number")),
            ("strings", strings, make_column_selector(dtype_exclude="number")),
        ]
    )
    return make_pipeline(features, final)


def _penguins() -> tuple[Any, Any]:
    from palmerpenguins import load_penguins

    frame = load_penguins()
    return frame.drop(columns=["species"]), frame["species"]


def test_a_column_without_gaps_in_the_sample_takes_missing_values_the_model_imputes(
    tmp_path: Path,
) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = _penguins()
    pipeline = _standard_pipeline(LogisticRegression(max_iter=2000)).fit(X, y)
    sample = X.dropna().head(50)  # no gaps at all: only asking the model can tell
    modelkit.save(pipeline, tmp_path / "m", name="m", version="1", sample_input=sample)
    model = modelkit.load(tmp_path / "m")
    assert all(column.nullable for column in model.signature.columns)
    expected = pipeline.predict(X).tolist()
    assert model.predict_batch(X)["label"].tolist() == expected
    singles = [model.predict(record).label for record in X.to_dict("records")]
    assert singles == expected
    assert {type(label) for label in singles} == {str}


def test_a_column_the_model_cannot_take_missing_keeps_a_clear_error(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    import pandas as pd

    frame = pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40)})
    model_ = LinearRegression().fit(frame, frame["a"] * 2)
    modelkit.save(model_, tmp_path / "m", name="m", version="1", sample_input=frame)
    model = modelkit.load(tmp_path / "m")
    assert not any(column.nullable for column in model.signature.columns)
    with pytest.raises(modelkit.InvalidInputError, match="no missing values") as info:
        model.predict({"a": 1.0, "b": None})
    assert info.value.field == "b"


def test_only_the_columns_the_model_imputes_become_nullable(tmp_path: Path) -> None:
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"imputed": rng.normal(size=40), "raw": rng.normal(size=40)})
    pipeline = make_pipeline(
        make_column_transformer((SimpleImputer(), ["imputed"]), ("passthrough", ["raw"])),
        LinearRegression(),
    ).fit(frame, frame["raw"])
    modelkit.save(pipeline, tmp_path / "m", name="m", version="1", sample_input=frame)
    nullable = {c.name: c.nullable for c in modelkit.load(tmp_path / "m").signature.columns}
    assert nullable == {"imputed": True, "raw": False}


def test_real_table_dtypes_round_trip_exactly(tmp_path: Path) -> None:
    """Nullable Int64 and boolean, pandas strings, a category, numpy bools, all-missing sample
    columns: a pipeline scikit-learn fits on them answers the same through modelkit."""
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(1)
    n = 300
    frame = pd.DataFrame(
        {
            "count": pd.array(np.where(rng.random(n) < 0.2, None, rng.integers(0, 9, n)), "Int64"),
            "member": pd.array(np.where(rng.random(n) < 0.2, None, rng.random(n) < 0.5), "boolean"),
            "city": pd.Series(rng.choice(["Oslo", "Lyon", None], n), dtype="str"),
            "plan": pd.Categorical(rng.choice(["basic", "pro"], n)),
            "flag": rng.random(n) < 0.5,
            "rare": pd.Series([None] * 100 + list(rng.choice(["x", "y"], n - 100)), dtype="str"),
        }
    )
    target = rng.normal(size=n)
    # scikit-learn imputes nullable booleans as numbers (its most_frequent strategy fails on them).
    numbers = make_pipeline(SimpleImputer(), StandardScaler())
    strings = make_pipeline(
        SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
    )
    features = make_column_transformer(
        (numbers, ["count", "member", "flag"]), (strings, ["city", "plan", "rare"])
    )
    pipeline = make_pipeline(features, HistGradientBoostingRegressor(max_iter=20))
    pipeline.fit(frame, target)
    modelkit.save(pipeline, tmp_path / "m", name="m", version="1", sample_input=frame.head(50))
    model = modelkit.load(tmp_path / "m")
    expected = pipeline.predict(frame)
    np.testing.assert_array_equal(model.predict_batch(frame)["value"], expected)
    records = frame.to_dict("records")[:60]
    singles = [model.predict(record).value for record in records]
    np.testing.assert_array_equal(singles, expected[:60])
    # A pandas Series is one record, as a row of the frame.
    assert model.predict(frame.iloc[7]).value == expected[7]
    with pytest.raises(modelkit.InvalidInputError, match="expected an integer") as info:
        model.predict({**frame.iloc[0].to_dict(), "count": 3.5})
    assert info.value.field == "count"


def test_the_frame_a_record_becomes_is_the_one_pandas_builds_publicly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quick construction of a one-row frame gives exactly what the public constructor
    gives, for every dtype a model can be trained on."""
    import pandas as pd
    from sklearn.dummy import DummyRegressor

    frame = pd.DataFrame(
        {
            "size": [1.5, np.nan, 3.0],
            "count": pd.array([1, None, 3], "Int64"),
            "member": pd.array([True, None, False], "boolean"),
            "city": pd.Series(["Oslo", None, "Lyon"], dtype="str"),
            "plan": pd.Categorical(["basic", "pro", "basic"]),
            "flag": [True, False, True],
            "seen": pd.to_datetime(["2024-01-01", None, "2024-03-01"]),
        }
    )
    model = DummyRegressor().fit(frame, [1.0, 2.0, 3.0])
    modelkit.save(model, tmp_path / "m", name="m", version="1", sample_input=frame)
    runner = modelkit.load(tmp_path / "m").runner
    validator = modelkit.load(tmp_path / "m")._tabular  # type: ignore[attr-defined]
    records = frame.to_dict("records")
    from modelkit._spec import record_table

    tables = [record_table(runner._columns, validator.record(r)) for r in records]  # type: ignore[attr-defined]
    built = []
    from_arrays = pd.DataFrame._from_arrays

    def counted(cls: Any, *args: Any, **kwargs: Any) -> Any:
        built.append(1)
        return from_arrays(*args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "_from_arrays", classmethod(counted))
    quick = [runner.encode(t) for t in tables]  # type: ignore[attr-defined]
    assert len(built) == len(tables)
    monkeypatch.delattr(pd.DataFrame, "_from_arrays")
    public = [runner.encode(t) for t in tables]  # type: ignore[attr-defined]
    for fast, slow in zip(quick, public, strict=True):
        pd.testing.assert_frame_equal(fast, slow)
        assert list(fast.dtypes.astype(str)) == list(frame.dtypes.astype(str))


def test_a_datetime_column_reaches_the_pipeline_as_datetime64(tmp_path: Path) -> None:
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    days = pd.date_range("2024-01-01", periods=60, freq="D")
    frame = pd.DataFrame({"day": days, "x": np.arange(60.0)})
    pipeline = make_pipeline(
        make_column_transformer(
            (FunctionTransformer(_day_of_week), ["day"]), ("passthrough", ["x"])
        ),
        LinearRegression(),
    ).fit(frame, frame["x"] + days.day_of_week)
    modelkit.save(pipeline, tmp_path / "m", name="m", version="1", sample_input=frame)
    model = modelkit.load(tmp_path / "m")
    assert model.signature.columns[0].type == "datetime"
    expected = pipeline.predict(frame)
    np.testing.assert_allclose(model.predict_batch(frame)["value"], expected)
    record = {"day": "2024-01-03T00:00:00", "x": 2.0}
    np.testing.assert_allclose(model.predict(record).value, expected[2])


def _day_of_week(frame: Any) -> Any:
    return frame.apply(lambda column: column.dt.day_of_week).to_numpy(dtype=float)


def test_labels_are_plain_python_values(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array(["low", "low", "high", "high"])  # numpy str_ labels
    modelkit.save(
        LogisticRegression().fit(X, y), tmp_path / "m", name="m", version="1", sample_input=X
    )
    model = modelkit.load(tmp_path / "m")
    assert type(model.predict([0.0]).label) is str
    assert {type(v) for v in model.predict_batch(X)["label"].tolist()} == {str}
    assert {type(p.label) for p in model.predict_batch(X)} == {str}


def test_a_categorical_column_keeps_its_codes_and_passes_unseen_values_on(tmp_path: Path) -> None:
    """HistGradientBoosting reads a Categorical's categories natively: modelkit rebuilds it with
    the trained categories in order, and an unseen value reaches the model as a new one."""
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(2)
    plan = pd.Categorical(
        rng.choice(["basic", "pro", "team"], 200), categories=["team", "pro", "basic"]
    )
    frame = pd.DataFrame({"plan": plan, "seats": rng.integers(1, 50, 200)})
    target = frame["seats"] * (frame["plan"] == "pro") + rng.normal(size=200)
    model_ = HistGradientBoostingRegressor(max_iter=20, categorical_features="from_dtype")
    model_.fit(frame, target)
    modelkit.save(model_, tmp_path / "m", name="m", version="1", sample_input=frame.head(20))
    model = modelkit.load(tmp_path / "m")
    np.testing.assert_array_equal(model.predict_batch(frame)["value"], model_.predict(frame))
    unseen = model.predict({"plan": "enterprise", "seats": 10}).value
    as_missing = model_.predict(
        pd.DataFrame({"plan": pd.Categorical([None], categories=plan.categories), "seats": [10]})
    )[0]
    assert unseen == as_missing  # what the estimator does with a category it never saw


@pytest.mark.parametrize("huge", [3.5e38, 1e300, -1e300])
def test_a_number_past_float32_is_refused_as_scikit_learn_refuses_it(
    tmp_path: Path, huge: float
) -> None:
    # Trees cast inputs to float32, where such a number becomes inf, which scikit-learn refuses.
    # numpy first warns about the cast, and warnings are errors here (pytest's filterwarnings),
    # as they are in some applications: the refusal must still be modelkit's, naming the record.
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    modelkit.save(forest, tmp_path / "forest", name="forest", version="1", sample_input=X[:20])
    model = modelkit.load(tmp_path / "forest")
    huge_row, good_row = [huge, 3.0, 4.0, 1.0], X[0].tolist()
    with pytest.raises(modelkit.InvalidInputError, match="infinity or a value too large"):
        model.predict(huge_row)
    with pytest.raises(modelkit.InvalidInputError, match="Record 1: ") as info:
        model.predict_batch([good_row, huge_row])
    assert info.value.index == 1
    assert model.predict(good_row).label == forest.predict(X[:1])[0]


@given(
    arrays(
        np.float64,
        st.tuples(st.integers(0, 30), st.integers(1, 4)),
        elements=st.sampled_from([0.0, 0.25, 0.5, 1.0, np.nan, np.inf, -np.inf]) | st.floats(0, 1),
    )
)
def test_the_winners_of_each_row_are_numpys_arg_max(probabilities: np.ndarray) -> None:
    from modelkit.adapters._joblib import _winners

    np.testing.assert_array_equal(_winners(probabilities), probabilities.argmax(axis=1))
