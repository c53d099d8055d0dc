"""scikit-learn to ONNX: ``save(format="onnx")`` and ``modelkit.convert``, with parity checks."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelkit
from modelkit import _convert, _parity

NUMERIC = [f"n{i}" for i in range(8)]
CATEGORICAL = ["plan", "region"]


@pytest.fixture(scope="module")
def mixed_frame() -> tuple[Any, np.ndarray]:
    """8 numeric and 2 string columns, as in a churn model."""
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=1200, n_features=8, n_informative=5, random_state=0)
    frame = pd.DataFrame(X, columns=NUMERIC)
    rng = np.random.default_rng(0)
    frame["plan"] = rng.choice(["basic", "pro", "team"], len(frame))
    frame["region"] = rng.choice(["eu", "us", "apac", "latam"], len(frame))
    return frame, y


def _pipeline(final: Any) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    features = ColumnTransformer(
        [
            ("numbers", StandardScaler(), NUMERIC),
            ("categories", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
        ]
    )
    return Pipeline([("features", features), ("model", final)])


@pytest.fixture(scope="module")
def boosted(mixed_frame: tuple[Any, np.ndarray]) -> Any:
    from sklearn.ensemble import GradientBoostingClassifier

    frame, y = mixed_frame
    return _pipeline(GradientBoostingClassifier(n_estimators=30, random_state=0)).fit(frame, y)


@pytest.fixture(scope="module")
def boosted_bundle(
    tmp_path_factory: pytest.TempPathFactory, boosted: Any, mixed_frame: tuple[Any, np.ndarray]
) -> Path:
    path = tmp_path_factory.mktemp("converted") / "churn"
    modelkit.save(
        boosted,
        path,
        name="churn",
        version="1.0.0",
        format="onnx",
        sample_input=mixed_frame[0][:300],
    )
    return path


def _graph(bundle: Path) -> Any:
    import onnx

    return onnx.load_model_from_string((bundle / "artifacts" / "model.onnx").read_bytes())


def test_pipeline_with_string_columns_converts_with_one_input_per_element_type(
    boosted_bundle: Path,
) -> None:
    graph = _graph(boosted_bundle).graph
    inputs = {node.name: node.type.tensor_type.elem_type for node in graph.input}
    assert inputs == {"double_input": 11, "string_input": 8}  # DOUBLE and STRING
    manifest = json.loads((boosted_bundle / "modelkit.json").read_text())
    assert manifest["format"] == "onnx"
    assert manifest["adapter"]["layout"] == "groups"
    assert manifest["adapter"]["groups"] == [
        {"input": "double_input", "columns": NUMERIC},
        {"input": "string_input", "columns": CATEGORICAL},
    ]


def test_probabilities_are_a_plain_tensor_without_zipmap(boosted_bundle: Path) -> None:
    graph = _graph(boosted_bundle).graph
    assert [output.name for output in graph.output] == ["label", "probabilities"]
    assert not any(node.op_type == "ZipMap" for node in graph.node)


def test_converted_graph_computes_nothing_it_does_not_answer(boosted_bundle: Path) -> None:
    graph = _graph(boosted_bundle).graph
    read = {name for node in graph.node for name in node.input}
    answered = {output.name for output in graph.output}
    assert all(set(node.output) & (read | answered) for node in graph.node)
    kinds = [node.op_type for node in graph.node]
    # The two string columns share one encoder; the regrouped inputs are not split again.
    assert kinds.count("OneHotEncoder") == 1
    assert not {"Split", "Identity"} & set(kinds)


def test_target_opset_is_pinned(boosted_bundle: Path) -> None:
    opsets = json.loads((boosted_bundle / "modelkit.json").read_text())["adapter"]["opsets"]
    assert opsets["ai.onnx"] <= _convert.TARGET_OPSET[""]
    assert opsets["ai.onnx.ml"] <= _convert.TARGET_OPSET["ai.onnx.ml"]


def test_manifest_records_the_parity_report(boosted_bundle: Path) -> None:
    manifest = modelkit.load(boosted_bundle).manifest
    assert manifest is not None
    parity = manifest.adapter["parity"]
    assert parity["sample_rows"] == 300
    assert parity["generated_rows"] == _parity.GENERATED_ROWS
    assert parity["rows"] == 300 + _parity.GENERATED_ROWS
    assert parity["label_mismatches"] == 0
    assert 0 <= parity["max_probability_difference"] <= _parity.PROBABILITY_TOLERANCE
    assert parity["tolerance"] == {
        "probability": _parity.PROBABILITY_TOLERANCE,
        "tie": _parity.TIE_TOLERANCE,
    }
    assert parity["tie_rows"] == 0
    assert parity["tie_examples"] == []
    assert len(parity["worst"]) == 5
    assert manifest.adapter["converter"]["skl2onnx"]
    assert manifest.adapter["converted_from"] == "sklearn.pipeline.Pipeline"


def test_converted_labels_match_scikit_learn_on_a_thousand_rows(
    boosted_bundle: Path, boosted: Any, mixed_frame: tuple[Any, np.ndarray]
) -> None:
    frame = mixed_frame[0].iloc[200:1200]
    predictions = modelkit.load(boosted_bundle).predict_batch(frame)
    assert np.asarray(predictions["label"]).tolist() == boosted.predict(frame).tolist()
    probabilities = np.array(
        [[row.probabilities[c] for c in (0, 1)] for row in predictions], dtype=np.float64
    )
    difference = np.abs(probabilities - boosted.predict_proba(frame)).max()
    assert difference <= _parity.PROBABILITY_TOLERANCE


def test_single_record_of_the_converted_model_matches_scikit_learn(
    boosted_bundle: Path, boosted: Any, mixed_frame: tuple[Any, np.ndarray]
) -> None:
    model = modelkit.load(boosted_bundle)
    frame = mixed_frame[0]
    for row in range(5):
        record = {k: (v.item() if hasattr(v, "item") else v) for k, v in frame.iloc[row].items()}
        output = model.predict(record)
        assert output.label == boosted.predict(frame.iloc[row : row + 1])[0]
        expected = boosted.predict_proba(frame.iloc[row : row + 1])[0]
        assert output.probabilities[1] == pytest.approx(expected[1], abs=1e-4)


def test_bad_records_for_a_converted_model_raise_invalid_input(boosted_bundle: Path) -> None:
    model = modelkit.load(boosted_bundle)
    good = dict.fromkeys(NUMERIC, 0.5) | {"plan": "pro", "region": "eu"}
    with pytest.raises(modelkit.InvalidInputError, match="'n3'"):
        model.predict(good | {"n3": "high"})
    with pytest.raises(modelkit.InvalidInputError, match="'plan'"):
        model.predict(good | {"plan": 7})
    with pytest.raises(modelkit.InvalidInputError, match="'region'"):
        model.predict({k: v for k, v in good.items() if k != "region"})
    with pytest.raises(modelkit.InvalidInputError, match="'n0'"):
        model.predict(good | {"n0": float("nan")})
    assert model.predict(good).label in (0, 1)  # and the model keeps serving


def test_regressor_trained_on_an_array_converts_to_one_matrix(tmp_path: Path) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    X, y = load_diabetes(return_X_y=True)
    ridge = Ridge().fit(X, y)
    manifest = modelkit.save(
        ridge, tmp_path / "ridge", name="ridge", version="1", format="onnx", sample_input=X[:50]
    )
    assert manifest.task == "regression"
    assert [g["input"] for g in manifest.adapter["groups"]] == ["double_input"]
    assert manifest.adapter["parity"]["max_value_difference"] >= 0
    model = modelkit.load(tmp_path / "ridge")
    assert model.predict(list(X[0])).value == pytest.approx(ridge.predict(X[:1])[0], rel=1e-4)


def test_bare_estimator_on_a_dataframe_with_odd_column_names_converts(
    tmp_path: Path, iris: tuple[Any, Any], iris_classifier: Any
) -> None:
    X, _ = iris  # columns such as "sepal length (cm)"
    modelkit.save(
        iris_classifier, tmp_path / "iris", name="iris", version="1", format="onnx", sample_input=X
    )
    model = modelkit.load(tmp_path / "iris")
    labels = np.asarray(model.predict_batch(X)["label"]).tolist()
    assert labels == iris_classifier.predict(X).tolist()


def test_column_transformer_over_odd_column_names_converts(
    tmp_path: Path, iris: tuple[Any, Any]
) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = iris
    columns = list(X.columns)
    pipeline = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        ("scaled", StandardScaler(), columns[:2]),
                        ("kept", "passthrough", columns[2:]),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=500)),
        ]
    ).fit(X, y)
    modelkit.save(pipeline, tmp_path / "p", name="p", version="1", format="onnx", sample_input=X)
    model = modelkit.load(tmp_path / "p")
    assert np.asarray(model.predict_batch(X)["label"]).tolist() == pipeline.predict(X).tolist()


def test_integer_columns_go_in_with_the_numbers_and_strings_apart(tmp_path: Path) -> None:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, 400),
            "income": rng.normal(50_000, 10_000, 400),
            "city": rng.choice(["paris", "lyon"], 400),
        }
    )
    labels = np.where(frame["age"] > 50, "senior", "junior")
    pipeline = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        ("numbers", StandardScaler(), ["age", "income"]),
                        ("city", OneHotEncoder(), ["city"]),
                    ]
                ),
            ),
            ("tree", DecisionTreeClassifier(max_depth=3, random_state=0)),
        ]
    ).fit(frame, labels)
    manifest = modelkit.save(
        pipeline, tmp_path / "t", name="t", version="1", format="onnx", sample_input=frame
    )
    assert {g["input"]: g["columns"] for g in manifest.adapter["groups"]} == {
        "double_input": ["age", "income"],
        "string_input": ["city"],
    }
    assert manifest.signature.outputs.classes == ("junior", "senior")
    model = modelkit.load(tmp_path / "t")
    output = model.predict({"age": 70, "income": 40_000.0, "city": "lyon"})
    assert output.label == "senior"


def test_classifier_without_predict_proba_gives_no_probabilities(
    tmp_path: Path, iris: tuple[Any, Any]
) -> None:
    from sklearn.svm import LinearSVC

    X, y = iris
    svc = LinearSVC().fit(X, y)
    manifest = modelkit.save(
        svc, tmp_path / "svc", name="svc", version="1", format="onnx", sample_input=X
    )
    assert manifest.signature.outputs.has_probabilities is False
    assert "max_probability_difference" not in manifest.adapter["parity"]
    output = modelkit.load(tmp_path / "svc").predict(X.iloc[0].tolist())
    assert output.label == svc.predict(X.iloc[:1])[0]
    assert output.probabilities is None


def test_missing_converter_names_the_step_and_writes_nothing(
    tmp_path: Path, iris: tuple[Any, Any]
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import SplineTransformer

    X, y = iris
    pipeline = Pipeline(
        [("splines", SplineTransformer()), ("model", LogisticRegression(max_iter=500))]
    ).fit(X, y)
    target = tmp_path / "splines"
    with pytest.raises(modelkit.ConversionError, match=r"'splines' \(SplineTransformer\)") as info:
        modelkit.save(pipeline, target, name="s", version="1", format="onnx", sample_input=X)
    assert "format='joblib'" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def _sharpened(X: Any, y: Any) -> Any:
    """Labels like logistic regression, probabilities squared, registered with the logistic
    regression converter, which cannot reproduce them: a genuine parity failure."""
    from sklearn.linear_model import LogisticRegression

    class Sharpened(LogisticRegression):
        def predict_proba(self, X: Any) -> Any:
            squared = super().predict_proba(X) ** 2
            return squared / squared.sum(axis=1, keepdims=True)

    from skl2onnx import update_registered_converter
    from skl2onnx.operator_converters.linear_classifier import convert_sklearn_linear_classifier
    from skl2onnx.shape_calculators.linear_classifier import (
        calculate_linear_classifier_output_shapes,
    )

    update_registered_converter(
        Sharpened,
        "ModelkitTestSharpened",
        calculate_linear_classifier_output_shapes,
        convert_sklearn_linear_classifier,
        options={
            "zipmap": [True, False, "columns"],
            "nocl": [True, False],
            "raw_scores": [True, False],
        },
    )
    return Sharpened(max_iter=500).fit(X, y)


def test_parity_failure_shows_the_worst_rows_and_writes_nothing(
    tmp_path: Path, iris: tuple[Any, Any]
) -> None:
    X, y = iris
    estimator = _sharpened(X, y)
    with pytest.raises(modelkit.ConversionError, match="misses parity") as info:
        modelkit.save(
            estimator, tmp_path / "s", name="s", version="1", format="onnx", sample_input=X
        )
    message = str(info.value)
    assert "Worst rows" in message
    assert "scikit-learn" in message
    assert "ONNX" in message
    assert "sepal length (cm)" in message  # the rows' inputs are shown
    assert list(tmp_path.iterdir()) == []


def test_conversion_needs_a_sample(tmp_path: Path, iris_classifier: Any) -> None:
    with pytest.raises(modelkit.ConversionError, match="sample_input"):
        modelkit.save(iris_classifier, tmp_path / "x", name="x", version="1", format="onnx")


def test_conversion_without_skl2onnx_names_the_extra(
    tmp_path: Path, iris: tuple[Any, Any], iris_classifier: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "skl2onnx", None)
    with pytest.raises(modelkit.MissingDependencyError, match=r"\[convert\]"):
        modelkit.save(
            iris_classifier,
            tmp_path / "x",
            name="x",
            version="1",
            format="onnx",
            sample_input=iris[0],
        )


# -- modelkit.convert ---------------------------------------------------------------------------


def test_convert_turns_a_joblib_bundle_into_an_onnx_bundle(
    tmp_path: Path, iris_bundle: Path, iris: tuple[Any, Any], iris_classifier: Any
) -> None:
    manifest = modelkit.convert(iris_bundle, tmp_path / "iris-onnx")
    source = modelkit.load(iris_bundle)
    assert (manifest.name, manifest.version, manifest.format) == ("iris", "1.0.0", "onnx")
    assert manifest.metadata["converted_from"] == {
        "digest": source.digest,
        "format": "joblib",
        "version": "1.0.0",
    }
    assert source.manifest is not None
    assert manifest.profile == source.manifest.profile  # drift reference carried over
    # No sample given: parity ran on rows generated from the reference profile.
    assert manifest.adapter["parity"]["generated_rows"] == _parity.GENERATED_ROWS
    assert "sample_rows" not in manifest.adapter["parity"]
    converted = modelkit.load(tmp_path / "iris-onnx")
    X = iris[0]
    assert (
        np.asarray(converted.predict_batch(X)["label"]).tolist()
        == iris_classifier.predict(X).tolist()
    )


def test_convert_with_a_sample_and_new_version(
    tmp_path: Path, iris_bundle: Path, iris: tuple[Any, Any]
) -> None:
    manifest = modelkit.convert(
        iris_bundle, tmp_path / "o", sample_input=iris[0], version="1.0.0-onnx", metadata={"a": 1}
    )
    assert manifest.version == "1.0.0-onnx"
    assert manifest.metadata["a"] == 1
    assert manifest.adapter["parity"]["sample_rows"] == len(iris[0])


def test_convert_refuses_an_onnx_bundle(tmp_path: Path, onnx_bundle: Path) -> None:
    with pytest.raises(modelkit.ConversionError, match="onnx bundle"):
        modelkit.convert(onnx_bundle, tmp_path / "again")
    assert not (tmp_path / "again").exists()


def test_convert_refuses_other_targets(tmp_path: Path, iris_bundle: Path) -> None:
    with pytest.raises(ValueError, match="'onnx' only"):
        modelkit.convert(iris_bundle, tmp_path / "x", to="tflite")


def test_convert_checks_the_pinned_digest_first(tmp_path: Path, iris_bundle: Path) -> None:
    with pytest.raises(modelkit.IntegrityError):
        modelkit.convert(iris_bundle, tmp_path / "x", sha256="0" * 64)


def test_convert_refuses_to_overwrite(tmp_path: Path, iris_bundle: Path) -> None:
    modelkit.convert(iris_bundle, tmp_path / "o")
    with pytest.raises(modelkit.BundleError, match="overwrite=True"):
        modelkit.convert(iris_bundle, tmp_path / "o")
    modelkit.convert(iris_bundle, tmp_path / "o", overwrite=True)
