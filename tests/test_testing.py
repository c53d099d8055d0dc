"""modelkit.testing: the tiny model, the answer assertions and the telemetry capture work, and
the assertions fail, saying where, when the answers differ."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

import modelkit
from modelkit.testing import (
    CapturedTelemetry,
    TinyModel,
    assert_answers_like,
    assert_bundle_valid,
    capture_telemetry,
    tiny_model,
)

# As an application's top-level conftest.py would have it.
pytest_plugins = ["modelkit.testing"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return tiny_model(path=tmp_path_factory.mktemp("tiny") / "iris")


@pytest.fixture(scope="module")
def regressor(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return tiny_model("regression", path=tmp_path_factory.mktemp("tiny") / "diabetes")


class Altered:
    """An estimator answering like ``estimator`` except where told."""

    def __init__(self, estimator: Any, *, labels: dict[int, Any] | None = None, shift: float = 0):
        self.estimator, self.labels, self.shift = estimator, labels or {}, shift
        if hasattr(estimator, "classes_"):
            self.classes_ = estimator.classes_

    def predict(self, X: Any) -> Any:
        answers = self.estimator.predict(X)
        if self.shift:
            return answers + self.shift
        answers = answers.astype(object)  # room for any label
        for row, label in self.labels.items():
            answers[row] = label
        return answers


class WithProbabilities(Altered):
    def predict_proba(self, X: Any) -> Any:
        return self.estimator.predict_proba(X)


# -- tiny_model ---------------------------------------------------------------------------------


def test_tiny_classifier_answers_iris_species_to_records(classifier: TinyModel) -> None:
    with modelkit.load(classifier) as model:  # a TinyModel is path-like
        output = model.predict(classifier.records[0])
        assert model.name == "iris"
        assert model.signature.names == (
            "sepal_length",
            "sepal_width",
            "petal_length",
            "petal_width",
        )
    assert output.label == "setosa"
    assert set(output.probabilities) == {"setosa", "versicolor", "virginica"}
    assert classifier.data.shape == (150, 4)


def test_tiny_regressor_answers_values(regressor: TinyModel) -> None:
    with modelkit.load(regressor.path) as model:
        value = model.predict(regressor.records[0]).value
    assert value == pytest.approx(regressor.estimator.predict(regressor.data[:1])[0])
    assert model.signature.names[:3] == ("age", "sex", "bmi")


def test_tiny_model_takes_the_callers_columns_classes_name_and_version(tmp_path: Path) -> None:
    tiny = tiny_model(
        columns=["tenure", "spend"],
        classes=["stay", "churn"],
        name="churn",
        version="2.1.0",
        path=tmp_path / "churn",
    )
    with modelkit.load(tmp_path / "churn") as model:
        output = model.predict({"tenure": 6.0, "spend": 3.0})
        assert (model.name, model.version) == ("churn", "2.1.0")
        assert model.signature.names == ("tenure", "spend")
        assert model.manifest is not None
        assert sorted(model.manifest.classes or []) == ["churn", "stay"]
    assert output.label in {"stay", "churn"}
    assert 0 < output.probabilities["churn"] < 1
    assert tiny.data.shape == (100, 2)
    assert set(tiny.target) == {"stay", "churn"}


def test_tiny_model_without_a_path_is_saved_in_a_temporary_directory() -> None:
    tiny = tiny_model(classes=[0, 1, 2])
    assert Path(tiny).is_dir()
    assert Path(os.fspath(tiny)).name == "iris"
    assert_bundle_valid(tiny)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"columns": []}, "1 to 4 distinct names"),
        ({"columns": ["a", "b", "c", "d", "e"]}, "1 to 4 distinct names"),
        ({"columns": ["a", "a"]}, "distinct"),
        ({"classes": ["only"]}, "2 or 3 distinct labels"),
        ({"classes": ["a", "b", "c", "d"]}, "2 or 3 distinct labels"),
        ({"classes": ["a", 1]}, "one type"),
        ({"task": "regression", "classes": ["a", "b"]}, "for classification"),
        ({"task": "clustering"}, "task must be"),
        ({"format": "pickle"}, "format must be"),
    ],
)
def test_tiny_model_refuses_what_the_data_set_cannot_give(
    options: dict[str, Any], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_model(path=tmp_path / "never", **options)
    assert not (tmp_path / "never").exists()


# -- assert_answers_like ------------------------------------------------------------------------


def test_a_bundle_answers_exactly_like_its_estimator(
    classifier: TinyModel, regressor: TinyModel
) -> None:
    assert_answers_like(classifier, classifier.estimator, classifier.data, rtol=0, atol=0)
    with modelkit.load(regressor) as model:
        assert_answers_like(model, regressor.estimator, regressor.data, rtol=0, atol=0)


def test_a_skops_tiny_model_holds_no_pickle_and_answers_like_its_estimator(
    tmp_path: Path, classifier: TinyModel
) -> None:
    pytest.importorskip("skops")
    skops = tiny_model(format="skops", path=tmp_path / "skops")
    assert not list(skops.path.rglob("*.joblib"))
    with modelkit.load(skops) as model:
        assert model.format == "skops"
    assert_answers_like(skops, skops.estimator, skops.data)


def test_an_onnx_tiny_model_answers_like_its_estimator_and_like_the_joblib_bundle(
    classifier: TinyModel, tmp_path: Path
) -> None:
    pytest.importorskip("skl2onnx")
    onnx = tiny_model(format="onnx", path=tmp_path / "onnx")
    with modelkit.load(onnx) as model:
        assert model.format == "onnx"
    assert_answers_like(onnx, onnx.estimator, onnx.data)
    assert_answers_like(onnx, classifier, classifier.records)  # two bundles, asked records


def test_a_different_model_fails_naming_rows_and_the_largest_difference(
    classifier: TinyModel,
) -> None:
    from sklearn.linear_model import LogisticRegression

    other = LogisticRegression(C=0.01, max_iter=1000).fit(classifier.data, classifier.target)
    with pytest.raises(AssertionError) as caught:
        assert_answers_like(classifier, other, classifier.data)
    lines = str(caught.value).splitlines()
    assert lines[0] == (
        "model 'iris' 1.0.0 does not answer like LogisticRegression on 150 of 150 rows "
        "(rtol=0.0001, atol=0.0001):"
    )
    assert re.fullmatch(r"  row 0: probability_setosa 0\.98\d*, expected 0\.7\d*", lines[1])
    assert [line.split(":")[0] for line in lines[2:6]] == [f"  row {i}" for i in range(1, 5)]
    assert lines[6] == "  ... and 145 more rows"
    assert re.fullmatch(r"largest difference: 0\.5\d* in probability_\w+, row \d+", lines[7])


def test_a_different_label_fails_on_that_row(classifier: TinyModel) -> None:
    source = WithProbabilities(classifier.estimator, labels={3: "virginica"})
    with pytest.raises(AssertionError) as caught:
        assert_answers_like(classifier, source, classifier.data)
    assert str(caught.value) == (
        "model 'iris' 1.0.0 does not answer like WithProbabilities on 1 of 150 rows "
        "(rtol=0.0001, atol=0.0001):\n  row 3: label 'setosa', expected 'virginica'"
    )


def test_values_pass_within_the_tolerance_and_fail_beyond_it(regressor: TinyModel) -> None:
    shifted = Altered(regressor.estimator, shift=0.1)  # values are about 25 to 350
    assert_answers_like(regressor, shifted, regressor.data, atol=0.2)
    with pytest.raises(AssertionError) as caught:
        assert_answers_like(regressor, shifted, regressor.data)
    lines = str(caught.value).splitlines()
    assert lines[0].endswith("on 442 of 442 rows (rtol=0.0001, atol=0.0001):")
    assert re.fullmatch(r"  row 0: value ([\d.]+), expected ([\d.]+)", lines[1])
    assert lines[-1].startswith("largest difference: 0.1 in value, row ")


def test_labels_alone_are_compared_when_the_source_has_no_probabilities(
    classifier: TinyModel,
) -> None:
    assert_answers_like(classifier, Altered(classifier.estimator), classifier.data)
    with pytest.raises(AssertionError, match="row 7: label 'setosa', expected 'other'"):
        assert_answers_like(
            classifier, Altered(classifier.estimator, labels={7: "other"}), classifier.data
        )


def test_a_regressor_never_answers_like_a_classifier(classifier: TinyModel, tmp_path: Path) -> None:
    regressor = tiny_model("regression", columns=["a", "b", "c", "d"], path=tmp_path / "four")
    with pytest.raises(AssertionError) as caught:
        assert_answers_like(regressor, classifier.estimator, regressor.data)
    assert str(caught.value) == (
        "model 'diabetes' 1.0.0 answers with ['value'], LogisticRegression with ['label']"
    )


# -- assert_bundle_valid ------------------------------------------------------------------------


def test_a_valid_bundle_gives_its_manifest(classifier: TinyModel) -> None:
    manifest = assert_bundle_valid(classifier, sha256=modelkit.digest(classifier))
    assert (manifest.name, manifest.version, manifest.format) == ("iris", "1.0.0", "joblib")


def test_a_bundle_pinned_to_another_digest_fails(classifier: TinyModel) -> None:
    with pytest.raises(AssertionError, match="not the pinned sha256:0000"):
        assert_bundle_valid(classifier, sha256="0" * 64)


def test_an_altered_artifact_fails_naming_the_file(tmp_path: Path) -> None:
    tiny = tiny_model(path=tmp_path / "iris")
    artifact = next(path for path in (tiny.path / "artifacts").rglob("*") if path.is_file())
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    with pytest.raises(AssertionError, match=artifact.name) as caught:
        assert_bundle_valid(tiny)
    assert isinstance(caught.value.__cause__, modelkit.IntegrityError)


def test_a_missing_bundle_fails(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="nowhere"):
        assert_bundle_valid(tmp_path / "nowhere")


# -- telemetry ----------------------------------------------------------------------------------


def test_captured_spans_and_metrics_of_a_loaded_model(classifier: TinyModel) -> None:
    with capture_telemetry() as captured, modelkit.load(classifier, **captured.providers) as model:
        model.predict_batch(classifier.data[:10])
        model.predict(classifier.records[0])
    assert [span.name for span in captured.spans()] == ["load iris", "predict iris", "predict iris"]
    first = captured.spans("predict iris")[0]
    assert first.attributes is not None
    assert first.attributes["modelkit.prediction.batch.size"] == 10
    (sizes,) = captured.points("modelkit.prediction.batch.size")
    assert (sizes.count, sizes.sum) == (2, 11)
    assert sizes.attributes["modelkit.model.name"] == "iris"
    assert captured.points("no.such.metric") == []


def test_the_fixture_captures_what_a_registry_reports(
    modelkit_telemetry: CapturedTelemetry, classifier: TinyModel
) -> None:
    registry = modelkit.Registry(**modelkit_telemetry.providers)
    try:
        registry.add("iris", classifier.path)
        modelkit_telemetry.clear()  # forget the load
        registry["iris"].predict(classifier.records[0])
    finally:
        registry.close()
    (span,) = modelkit_telemetry.spans()
    assert span.attributes is not None
    assert (span.name, span.attributes["modelkit.model.variant"]) == ("predict iris", "primary")


def test_a_model_reporting_after_the_block_adds_nothing(classifier: TinyModel) -> None:
    with capture_telemetry() as captured:
        model = modelkit.load(classifier, **captured.providers)
    with model:
        model.predict(classifier.records[0])
    assert [span.name for span in captured.spans()] == ["load iris"]
    assert captured.points("modelkit.prediction.duration") == []


def test_without_the_sdk_capture_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # import fails
    with pytest.raises(modelkit.MissingDependencyError, match="'testing' extra") as caught:
        CapturedTelemetry()
    assert caught.value.extra == "testing"
