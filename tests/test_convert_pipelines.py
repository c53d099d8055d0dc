"""ONNX conversion of the pipelines people write on raw DataFrames: integer, boolean and nullable
columns, missing strings, encoders, scalers, tree ensembles, XGBoost and LightGBM; refusals that
name the step. Small data and few trees: each conversion takes a fraction of a second."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelkit
from modelkit._convert_rewrites import MISSING_STRING, root_cause
from modelkit._parity import GENERATED_ROWS, TIE_TOLERANCE, compare, generate_rows

ROWS = 300


@pytest.fixture(scope="module")
def frame() -> Any:
    """A table as people have them: floats with gaps, integers, flags, nullable integers and
    booleans, strings with NaN, a pandas category."""
    import pandas as pd

    rng = np.random.default_rng(0)
    data = pd.DataFrame(
        {
            "income": rng.normal(50, 10, ROWS).round(2),
            "age": rng.integers(18, 90, ROWS),
            "member": rng.random(ROWS) < 0.3,
            "children": pd.array(
                np.where(rng.random(ROWS) < 0.1, None, rng.integers(0, 4, ROWS)), dtype="Int64"
            ),
            "owner": pd.array(
                np.where(rng.random(ROWS) < 0.1, None, rng.random(ROWS) < 0.5), dtype="boolean"
            ),
            "city": pd.Series(rng.choice(["paris", "lyon", "nice", None], ROWS)).fillna(np.nan),
            "plan": pd.Series(rng.choice(["basic", "pro"], ROWS)).astype("category"),
        }
    )
    data.loc[rng.random(ROWS) < 0.1, "income"] = np.nan
    return data


@pytest.fixture(scope="module")
def labels(frame: Any) -> np.ndarray:
    score = frame["income"].fillna(50) / 10 + frame["age"] / 20 + frame["member"] * 2
    return np.where(score > score.median(), "yes", "no")


@pytest.fixture(scope="module")
def values(frame: Any) -> np.ndarray:
    return np.asarray(frame["income"].fillna(50) * 3 + frame["age"] - frame["member"] * 5)


NUMBERS = ["income", "age", "member", "children", "owner"]
STRINGS = ["city", "plan"]


def _features(encoder: str = "onehot", scaler: str = "standard", sparse: bool = False) -> Any:
    """The ColumnTransformer most people write."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import (
        MinMaxScaler,
        OneHotEncoder,
        OrdinalEncoder,
        StandardScaler,
    )

    scale = StandardScaler() if scaler == "standard" else MinMaxScaler()
    if encoder == "onehot":
        strings = make_pipeline(
            SimpleImputer(strategy="most_frequent"),
            OneHotEncoder(handle_unknown="ignore", sparse_output=sparse),
        )
    elif encoder == "onehot-nan":  # NaN is a category of its own
        strings = OneHotEncoder(handle_unknown="ignore", sparse_output=sparse)
    else:
        strings = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    return ColumnTransformer(
        [
            ("numbers", make_pipeline(SimpleImputer(), scale), NUMBERS),
            ("strings", strings, STRINGS),
        ],
        sparse_threshold=0.3 if sparse else 0.0,
    )


def _save_onnx(
    estimator: Any, X: Any, directory: Path, sample: int = 100
) -> tuple[modelkit.Model[Any, Any], Any]:
    manifest = modelkit.save(
        estimator,
        directory / "bundle",
        name="m",
        version="1",
        format="onnx",
        sample_input=X.head(sample),
    )
    return modelkit.load(directory / "bundle"), manifest


def _agrees(model: modelkit.Model[Any, Any], estimator: Any, X: Any) -> None:
    """The converted model answers as scikit-learn on every row, in batch and record by record
    (records straight from ``to_dict("records")``: NaN, None and pd.NA for missing)."""
    expected = estimator.predict(X)
    predictions = model.predict_batch(X)
    records = X.head(30).to_dict("records")
    if model.signature.outputs.task == "classification":
        assert np.asarray(predictions["label"]).tolist() == expected.tolist()
        got = [model.predict(record).label for record in records]
        assert got == expected[:30].tolist()
        probabilities = np.array(
            [[row.probabilities[c] for c in estimator.classes_] for row in predictions]
        )
        assert np.abs(probabilities - estimator.predict_proba(X)).max() <= 1e-4
    else:
        assert np.asarray(predictions["value"]) == pytest.approx(expected, rel=1e-4, abs=1e-4)
        got = [model.predict(record).value for record in records]
        assert got == pytest.approx(expected[:30], rel=1e-4, abs=1e-4)


# -- the pipelines ------------------------------------------------------------------------------


def _classifier(name: str) -> Any:
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression

    if name == "xgboost":
        from xgboost import XGBClassifier

        return XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1)
    if name == "lightgbm":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(n_estimators=10, verbose=-1, n_jobs=1)
    return {
        "logistic": LogisticRegression(max_iter=1000),
        "hist_gradient_boosting": HistGradientBoostingClassifier(max_iter=10),
        "random_forest": RandomForestClassifier(n_estimators=10, random_state=0),
        "gradient_boosting": GradientBoostingClassifier(n_estimators=10, random_state=0),
    }[name]


def _regressor(name: str) -> Any:
    from sklearn.ensemble import (
        GradientBoostingRegressor,
        HistGradientBoostingRegressor,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LinearRegression

    if name == "xgboost":
        from xgboost import XGBRegressor

        return XGBRegressor(n_estimators=10, max_depth=3, n_jobs=1)
    if name == "lightgbm":
        from lightgbm import LGBMRegressor

        return LGBMRegressor(n_estimators=10, verbose=-1, n_jobs=1)
    return {
        "linear": LinearRegression(),
        "hist_gradient_boosting": HistGradientBoostingRegressor(max_iter=10),
        "random_forest": RandomForestRegressor(n_estimators=10, random_state=0),
        "gradient_boosting": GradientBoostingRegressor(n_estimators=10, random_state=0),
    }[name]


CLASSIFIERS = [
    "logistic",
    "hist_gradient_boosting",
    "random_forest",
    "gradient_boosting",
    "xgboost",
    "lightgbm",
]
REGRESSORS = ["linear", "hist_gradient_boosting", "random_forest", "gradient_boosting"]
REGRESSORS += ["xgboost", "lightgbm"]


def _numeric_labels(name: str, labels: np.ndarray) -> np.ndarray:
    # XGBoost takes classes 0..n-1 only.
    return (labels == "yes").astype(int) if name == "xgboost" else labels


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_after_the_usual_column_transformer_converts(
    tmp_path: Path, frame: Any, labels: np.ndarray, name: str
) -> None:
    from sklearn.pipeline import make_pipeline

    pipeline = make_pipeline(_features(), _classifier(name)).fit(
        frame, _numeric_labels(name, labels)
    )
    model, manifest = _save_onnx(pipeline, frame, tmp_path)
    _agrees(model, pipeline, frame)
    parity = manifest.adapter["parity"]
    assert parity["label_mismatches"] == 0
    assert parity["generated_rows"] == GENERATED_ROWS


@pytest.mark.parametrize("name", REGRESSORS)
def test_regressor_after_the_usual_column_transformer_converts(
    tmp_path: Path, frame: Any, values: np.ndarray, name: str
) -> None:
    from sklearn.pipeline import make_pipeline

    pipeline = make_pipeline(_features(scaler="minmax"), _regressor(name)).fit(frame, values)
    model, manifest = _save_onnx(pipeline, frame, tmp_path)
    _agrees(model, pipeline, frame)
    assert manifest.adapter["parity"]["max_value_difference"] < 1e-4


def test_integer_and_boolean_columns_go_in_as_numbers_with_nan_for_missing(
    tmp_path: Path, frame: Any, labels: np.ndarray
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipeline = make_pipeline(_features(), LogisticRegression(max_iter=1000)).fit(frame, labels)
    model, manifest = _save_onnx(pipeline, frame, tmp_path)
    groups = {g["input"]: g["columns"] for g in manifest.adapter["groups"]}
    assert groups == {"double_input": NUMBERS, "string_input": STRINGS}
    record = frame.iloc[0].to_dict() | {"age": None, "member": None, "children": None}
    expected = pipeline.predict(frame.iloc[:1].assign(age=np.nan, member=np.nan, children=None))
    assert model.predict(record).label == expected[0]


def test_missing_strings_reach_the_graph_as_the_sentinel(
    tmp_path: Path, frame: Any, labels: np.ndarray
) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline

    pipeline = make_pipeline(_features(), HistGradientBoostingClassifier(max_iter=10))
    pipeline.fit(frame, labels)
    model, manifest = _save_onnx(pipeline, frame, tmp_path)
    assert manifest.adapter["missing_string"] == MISSING_STRING
    row = frame.iloc[[3]].assign(city=np.nan)
    expected = pipeline.predict_proba(row)[0]
    for missing in (None, float("nan")):
        output = model.predict(row.iloc[0].to_dict() | {"city": missing})
        assert [output.probabilities[c] for c in pipeline.classes_] == pytest.approx(
            expected, abs=1e-5
        )
    batch = model.predict_batch(row)
    assert batch[0].probabilities == model.predict(row.iloc[0].to_dict()).probabilities


def test_the_sentinel_never_collides_with_a_fitted_category(
    tmp_path: Path, frame: Any, labels: np.ndarray
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    odd = frame.assign(city=frame["city"].where(frame.index % 7 != 0, MISSING_STRING))
    pipeline = make_pipeline(_features(), LogisticRegression(max_iter=1000)).fit(odd, labels)
    model, manifest = _save_onnx(pipeline, odd, tmp_path, sample=ROWS)
    assert manifest.adapter["missing_string"] == MISSING_STRING + "_"
    _agrees(model, pipeline, odd)


@pytest.mark.parametrize("encoder", ["onehot-nan", "ordinal"])
def test_encoders_fitted_on_nan_as_a_category_convert(
    tmp_path: Path, frame: Any, labels: np.ndarray, encoder: str
) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline

    pipeline = make_pipeline(_features(encoder), HistGradientBoostingClassifier(max_iter=10))
    pipeline.fit(frame, labels)
    model, _ = _save_onnx(pipeline, frame, tmp_path)
    _agrees(model, pipeline, frame)


def test_xgboost_after_a_sparse_column_transformer_takes_zeros_as_missing(
    tmp_path: Path, frame: Any, labels: np.ndarray
) -> None:
    from sklearn.pipeline import make_pipeline
    from xgboost import XGBClassifier

    wide = frame.assign(
        **{
            f"code{k}": np.random.default_rng(k).choice(list("abcdefghijklmnop"), ROWS)
            for k in range(4)
        }
    )
    features = _features(sparse=True)
    features.transformers[1] = (
        "strings",
        features.transformers[1][1],
        [*STRINGS, "code0", "code1", "code2", "code3"],
    )
    pipeline = make_pipeline(features, XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1))
    pipeline.fit(wide, (labels == "yes").astype(int))
    assert pipeline[0].sparse_output_
    model, _ = _save_onnx(pipeline, wide, tmp_path)
    _agrees(model, pipeline, wide)


# -- estimators alone, with their own missing values ----------------------------------------------


def _gappy(n: int = ROWS) -> tuple[Any, np.ndarray]:
    """Numbers with NaN the model itself handles, and a flag."""
    import pandas as pd

    rng = np.random.default_rng(1)
    X = pd.DataFrame(
        {"a": rng.normal(size=n), "b": rng.normal(size=n), "flag": rng.random(n) < 0.5}
    )
    X.loc[rng.random(n) < 0.2, "a"] = np.nan
    # Missing "a" means a high class: a model that routes NaN wrongly is visibly wrong.
    y = np.where(X["a"].fillna(3) + X["b"] > 0.5, 1, 0)
    return X, y


@pytest.mark.parametrize(
    "name",
    ["hist_gradient_boosting", "random_forest", "decision_tree", "xgboost", "lightgbm"],
)
def test_estimators_handling_missing_values_natively_keep_doing_so(
    tmp_path: Path, name: str
) -> None:
    from sklearn.tree import DecisionTreeClassifier

    X, y = _gappy()
    estimator = (
        DecisionTreeClassifier(random_state=0) if name == "decision_tree" else _classifier(name)
    ).fit(X, y)
    model, manifest = _save_onnx(estimator, X, tmp_path)
    _agrees(model, estimator, X)
    assert manifest.signature.columns[0].nullable
    gaps = X[X["a"].isna()]
    assert (
        np.asarray(model.predict_batch(gaps)["label"]).tolist() == estimator.predict(gaps).tolist()
    )


def test_hist_gradient_boosting_regressor_keeps_its_missing_value_handling(tmp_path: Path) -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    X, y = _gappy()
    estimator = HistGradientBoostingRegressor(max_iter=10).fit(X, y + X["b"])
    model, _ = _save_onnx(estimator, X, tmp_path)
    _agrees(model, estimator, X)


def test_tree_converter_fixes_are_undone_after_conversion(tmp_path: Path) -> None:
    from skl2onnx.common import tree_ensemble
    from skl2onnx.operator_converters import random_forest
    from sklearn.ensemble import RandomForestClassifier

    before = random_forest.add_tree_to_attribute_pairs
    X, y = _gappy()
    _save_onnx(RandomForestClassifier(n_estimators=3).fit(X, y), X, tmp_path)
    assert random_forest.add_tree_to_attribute_pairs is before
    assert tree_ensemble.add_tree_to_attribute_pairs is before


# -- ties -----------------------------------------------------------------------------------------


def test_forest_ties_are_reported_not_refused(tmp_path: Path) -> None:
    from sklearn.ensemble import RandomForestClassifier

    X, y = _gappy()
    forest = RandomForestClassifier(n_estimators=4, random_state=0).fit(X, y)
    _, manifest = _save_onnx(forest, X, tmp_path)
    parity = manifest.adapter["parity"]
    assert parity["tie_rows"] > 0  # four pure-leaved trees: 2 against 2 happens
    assert parity["tolerance"]["tie"] == TIE_TOLERANCE
    example = parity["tie_examples"][0]
    assert set(example) == {"source", "row", "labels"}


class _Answers:
    """A runner that answers fixed labels and probabilities."""

    def __init__(self, labels: list[int], probabilities: list[list[float]]) -> None:
        self.fields = {"label": np.array(labels), "probabilities": np.array(probabilities)}

    def run(self, rows: Any) -> dict[str, Any]:
        return self.fields


def _parity(expected: _Answers, actual: _Answers) -> dict[str, Any]:
    from modelkit._spec import Table

    rows = Table(("x",), 3, {"x": np.zeros(3)})
    return compare(expected, actual, "classification", True, {"sample": rows})


def test_a_different_label_on_a_tie_is_not_a_disagreement() -> None:
    tied = [[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]
    report = _parity(_Answers([0, 0, 1], tied), _Answers([1, 0, 1], tied))
    assert report["label_mismatches"] == 0
    assert report["tie_rows"] == 1
    assert report["tie_label_differences"] == 1
    assert report["tie_examples"] == [
        {"source": "sample", "row": 0, "labels": {"scikit-learn": 0, "onnx": 1}}
    ]


def test_a_different_label_off_a_tie_is_refused() -> None:
    close = [[0.51, 0.49], [0.9, 0.1], [0.2, 0.8]]
    with pytest.raises(modelkit.ConversionError, match="misses parity on 1 of 3 rows"):
        _parity(_Answers([0, 0, 1], close), _Answers([1, 0, 1], close))


def test_probabilities_on_a_tie_are_still_compared() -> None:
    with pytest.raises(modelkit.ConversionError, match="misses parity on 1 of 3 rows"):
        _parity(
            _Answers([0, 0, 1], [[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]),
            _Answers([1, 0, 1], [[0.4, 0.6], [0.9, 0.1], [0.2, 0.8]]),
        )


# -- generated rows -------------------------------------------------------------------------------


def test_generated_rows_leave_nullable_columns_missing_at_the_missing_rate(frame: Any) -> None:
    from modelkit._infer import infer_tabular_signature
    from modelkit._spec import TabularInputs, is_missing
    from modelkit._validation import TabularValidator

    inputs, _ = infer_tabular_signature(frame)
    strict = TabularInputs(
        columns=tuple(c.model_copy(update={"nullable": c.name != "age"}) for c in inputs.columns)
    )
    sample = TabularValidator(strict).batch(frame.fillna({"age": 0}))
    table = generate_rows(strict, sample, None, 1000, np.random.default_rng(0), missing_rate=0.1)
    assert table is not None
    columns = table.columns()
    missing = {
        name: sum(is_missing(v) for v in column.tolist()) for name, column in columns.items()
    }
    assert missing["age"] == 0
    for name in ("income", "children", "owner", "city", "member"):
        assert 50 <= missing[name] <= 150, name


# -- refusals -------------------------------------------------------------------------------------


def test_a_refusal_names_the_step_and_the_root_cause(
    tmp_path: Path, frame: Any, labels: np.ndarray
) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    features = ColumnTransformer(
        [
            (
                "cat",
                make_pipeline(
                    OneHotEncoder(max_categories=2, handle_unknown="infrequent_if_exist")
                ),
                ["city"],
            )
        ]
    )
    X = frame[["city"]].fillna("paris")
    pipeline = make_pipeline(features, LogisticRegression()).fit(X, labels)
    with pytest.raises(modelkit.ConversionError) as info:
        _save_onnx(pipeline, X, tmp_path)
    message = str(info.value)
    assert "'columntransformer > cat > onehotencoder' (OneHotEncoder)" in message
    assert "NotImplementedError: Infrequent categories are not implemented" in message
    assert "\n" not in message
    assert "format='joblib'" in message
    assert list(tmp_path.iterdir()) == []


def test_hist_gradient_boosting_with_categorical_features_is_refused_by_name(
    tmp_path: Path, frame: Any, labels: np.ndarray
) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    X = frame[["income", "plan"]]  # plan is a pandas category: a categorical feature
    booster = HistGradientBoostingClassifier(max_iter=5).fit(X, labels)
    with pytest.raises(modelkit.ConversionError, match="categorical_features") as info:
        _save_onnx(booster, X, tmp_path)
    assert "HistGradientBoostingClassifier" in str(info.value)


def test_a_model_fed_raw_strings_is_refused_with_what_to_encode(
    tmp_path: Path, frame: Any, labels: np.ndarray
) -> None:
    from lightgbm import LGBMClassifier

    X = frame[["income", "plan"]]
    booster = LGBMClassifier(n_estimators=5, verbose=-1).fit(X, labels)
    with pytest.raises(modelkit.ConversionError, match=r"string columns \['plan'\]") as info:
        _save_onnx(booster, X, tmp_path)
    assert "OneHotEncoder" in str(info.value)


def test_a_datetime_column_the_pipeline_drops_is_left_out_of_the_graph(
    tmp_path: Path, frame: Any, labels: np.ndarray
) -> None:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    dated = frame.assign(joined=pd.date_range("2020-01-01", periods=ROWS, freq="D"))
    pipeline = make_pipeline(_features(), LogisticRegression(max_iter=1000)).fit(dated, labels)
    model, manifest = _save_onnx(pipeline, dated, tmp_path)
    assert manifest.adapter["unused_columns"] == ["joined"]
    assert "joined" not in {c for g in manifest.adapter["groups"] for c in g["columns"]}
    _agrees(model, pipeline, dated)


def test_a_datetime_column_the_model_uses_is_refused_naming_it() -> None:
    from modelkit._convert import _untyped
    from modelkit._spec import ColumnSpec

    error = _untyped(ColumnSpec(name="joined", type="datetime", dtype="datetime64[ns]"))
    assert "'joined'" in str(error)
    assert "format='joblib'" in str(error)


def _raised(raise_it: Any) -> BaseException:
    try:
        raise_it()
    except Exception as exc:  # noqa: BLE001 - returned for inspection
        return exc
    raise AssertionError("nothing raised")


def _wrapped_twice() -> None:
    try:
        raise TypeError("Expected an int, got a boolean")
    except TypeError as inner:
        raise ValueError("Unable to create node 'TreeEnsembleClassifier' ...") from inner


def _wrapped_from_none() -> None:
    try:
        _wrapped_twice()
    except ValueError:
        raise RuntimeError("conversion failed") from None


def test_root_cause_walks_past_wrappers() -> None:
    assert str(root_cause(_raised(_wrapped_twice))) == "Expected an int, got a boolean"
    outer = _raised(_wrapped_from_none)
    assert root_cause(outer) is outer  # `from None`: nothing below to blame


# -- real tables ----------------------------------------------------------------------------------


def test_the_issue_pipelines_convert_on_penguins(tmp_path: Path) -> None:
    """The pipeline of the issue, on the quickstart's own data: integer year, NaN in strings."""
    import palmerpenguins
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    penguins = palmerpenguins.load_penguins()
    X, y = penguins.drop(columns=["species"]), penguins["species"]
    features = ColumnTransformer(
        [
            (
                "num",
                make_pipeline(SimpleImputer(), StandardScaler()),
                make_column_selector(dtype_include="number"),
            ),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
                ),
                make_column_selector(dtype_exclude="number"),
            ),
        ]
    )
    pipeline = make_pipeline(features, HistGradientBoostingClassifier(max_iter=20)).fit(X, y)
    model, manifest = _save_onnx(pipeline, X, tmp_path)
    _agrees(model, pipeline, X)
    written = json.loads((tmp_path / "bundle" / "modelkit.json").read_text())
    assert written["adapter"]["parity"]["label_mismatches"] == 0
    assert manifest.adapter["converter"]["skl2onnx"]
