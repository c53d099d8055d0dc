"""The Model interface on loaded and custom models: predict, batches, async, threads, repr."""

from __future__ import annotations

import asyncio
import copy
import gc
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydantic
import pytest

import modelkit
from tests.custom_models import CountsItself, Echo, Keywords, Review, Sentiment


def test_predict_gives_label_and_probabilities(iris_bundle: Path, iris: tuple[Any, Any]) -> None:
    model = modelkit.load(iris_bundle)
    output = model.predict(iris[0].iloc[0].to_dict())
    assert output.label == 0
    assert set(output.probabilities) == {0, 1, 2}
    assert sum(output.probabilities.values()) == pytest.approx(1.0)


def test_predict_batch_on_a_dataframe_matches_the_estimator(
    iris_bundle: Path, iris: tuple[Any, Any], iris_classifier: Any
) -> None:
    model = modelkit.load(iris_bundle)
    predictions = model.predict_batch(iris[0])
    assert len(predictions) == len(iris[0])
    np.testing.assert_array_equal(predictions["label"], iris_classifier.predict(iris[0]))
    np.testing.assert_array_equal(
        predictions["probabilities"], iris_classifier.predict_proba(iris[0])
    )
    assert predictions.classes == [0, 1, 2]


def test_predictions_behave_as_a_sequence(iris_bundle: Path, iris: tuple[Any, Any]) -> None:
    predictions = modelkit.load(iris_bundle).predict_batch(iris[0].head(5))
    assert [p.label for p in predictions] == list(predictions["label"])
    assert predictions[-1] == predictions[4]
    assert len(predictions[1:3]) == 2
    assert predictions[1:3][0] == predictions[1]
    with pytest.raises(IndexError):
        predictions[5]
    with pytest.raises(KeyError, match="not a field"):
        predictions["nope"]


def test_predictions_to_pandas_has_one_column_per_class(
    iris_bundle: Path, iris: tuple[Any, Any]
) -> None:
    frame = modelkit.load(iris_bundle).predict_batch(iris[0].head(4)).to_pandas()
    assert list(frame.columns) == ["label", "probability_0", "probability_1", "probability_2"]
    assert len(frame) == 4


def test_predictions_to_pandas_owns_its_data(iris_bundle: Path, iris: tuple[Any, Any]) -> None:
    predictions = modelkit.load(iris_bundle).predict_batch(iris[0].head(6))
    labels = predictions["label"].copy()
    probabilities = predictions["probabilities"].copy()
    frame = predictions.to_pandas()
    np.testing.assert_array_equal(frame["label"].to_numpy(), labels)
    np.testing.assert_array_equal(frame.iloc[:, 1:].to_numpy(), probabilities)
    frame.iloc[:, :] = 0
    predictions["probabilities"][:] = -1.0
    np.testing.assert_array_equal(predictions["label"], labels)
    assert (predictions.to_pandas().iloc[:, 1:].to_numpy() == -1.0).all()
    assert (frame.to_numpy() == 0).all()


@pytest.mark.parametrize(
    "fields",
    [
        {"label": np.array(["yes", "no", None], dtype=object), "probabilities": np.eye(3)[:, :2]},
        {"value": np.array([1.5, 2.0, np.nan])},
        {"value": np.array([1.5, 2, 3], dtype=np.float32), "flag": np.array([True, False, True])},
        {"value": np.arange(6.0).reshape(3, 2)},
        {"x": np.array(["a", "bc", "d"]), "when": np.arange(3).astype("datetime64[D]")},
    ],
    ids=["text labels", "values", "floats and booleans", "two outputs", "text and dates"],
)
def test_predictions_to_pandas_has_the_dtypes_pandas_gives_its_columns(
    fields: dict[str, np.ndarray],
) -> None:
    from modelkit._predictions import Predictions

    classes = ["no", "yes"] if "probabilities" in fields else None
    frame = Predictions(fields, length=3, row=lambda f, i: i, classes=classes).to_pandas()
    expected = {
        name: list(value) if value.ndim > 1 else value
        for name, value in fields.items()
        if name != "probabilities"
    }
    for j, cls in enumerate(classes or ()):
        expected[f"probability_{cls}"] = fields["probabilities"][:, j]
    pd.testing.assert_frame_equal(frame, pd.DataFrame(expected))


def test_every_batch_form_gives_the_same_predictions(
    iris_bundle: Path, iris: tuple[Any, Any]
) -> None:
    model = modelkit.load(iris_bundle)
    frame = iris[0].head(10)
    expected = model.predict_batch(frame)["label"]
    np.testing.assert_array_equal(model.predict_batch(frame.to_dict("records"))["label"], expected)
    np.testing.assert_array_equal(model.predict_batch(frame.to_numpy())["label"], expected)
    np.testing.assert_array_equal(model.predict_batch(frame.to_numpy().tolist())["label"], expected)
    assert [model.predict(row).label for row in frame.to_dict("records")] == list(expected)


def test_empty_batch_gives_empty_predictions(iris_bundle: Path, onnx_bundle: Path) -> None:
    for path in (iris_bundle, onnx_bundle):
        predictions = modelkit.load(path).predict_batch([])
        assert len(predictions) == 0
        assert list(predictions) == []


def test_bad_record_raises_and_the_model_keeps_answering(
    iris_bundle: Path, iris: tuple[Any, Any]
) -> None:
    model = modelkit.load(iris_bundle)
    record = iris[0].iloc[0].to_dict()
    before = model.predict(record)
    for bad in ({**record, "sepal length (cm)": None}, "junk", 3, [1.0, 2.0], {}):
        with pytest.raises(modelkit.InvalidInputError):
            model.predict(bad)
    with pytest.raises(modelkit.InvalidInputError) as info:
        model.predict_batch([record, record, {**record, "petal width (cm)": float("inf")}])
    assert (info.value.index, info.value.field) == (2, "petal width (cm)")
    assert model.predict(record) == before


def test_model_rejection_of_valid_looking_input_is_an_invalid_input_error(tmp_path: Path) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"plan": ["a", "b", "a", "b"], "x": [1.0, 2.0, 3.0, 4.0]})
    pipeline = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="error"), ["plan"]), remainder="passthrough"
        ),
        LogisticRegression(),
    ).fit(frame, [0, 1, 0, 1])
    modelkit.save(pipeline, tmp_path / "m", name="m", version="1", sample_input=frame)
    model = modelkit.load(tmp_path / "m")
    # An unseen category goes to the model, which decides: this one refuses it.
    with pytest.raises(modelkit.InvalidInputError, match="rejected") as info:
        model.predict_batch([{"plan": "a", "x": 1.0}, {"plan": "zzz", "x": 1.0}])
    assert info.value.index == 1
    assert model.predict({"plan": "b", "x": 2.0}).label in (0, 1)


def test_unseen_category_reaches_a_model_that_ignores_it(tmp_path: Path) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"plan": ["a", "b", "a", "b"], "x": [1.0, 2.0, 3.0, 4.0]})
    pipeline = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), ["plan"]), remainder="passthrough"
        ),
        LogisticRegression(),
    ).fit(frame, [0, 1, 0, 1])
    modelkit.save(pipeline, tmp_path / "m", name="m", version="1", sample_input=frame)
    assert modelkit.load(tmp_path / "m").predict({"plan": "never seen", "x": 2.0}).label in (0, 1)


def test_sixteen_threads_get_the_sequential_answers(
    onnx_bundle: Path, iris_bundle: Path, numeric_data: Any, iris: tuple[Any, Any]
) -> None:
    for path, rows in (
        (onnx_bundle, numeric_data[0][:64].tolist()),
        (iris_bundle, iris[0].head(64).to_dict("records")),
    ):
        model = modelkit.load(path)
        expected = [model.predict(row) for row in rows]
        barrier = threading.Barrier(16)

        def work(
            offset: int, model: Any = model, rows: list[Any] = rows, barrier: Any = barrier
        ) -> list[Any]:
            barrier.wait()
            order = rows[offset:] + rows[:offset]
            return [model.predict(row) for row in order]

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(work, range(16)))
        for offset, result in enumerate(results):
            assert result == expected[offset:] + expected[:offset]


def test_apredict_runs_off_the_event_loop(onnx_bundle: Path, numeric_data: Any) -> None:
    model = modelkit.load(onnx_bundle)
    row = numeric_data[0][0].tolist()
    loop_thread: list[int] = []
    seen: list[int] = []
    original = model.runner.run_record  # type: ignore[attr-defined]

    def spy(values: Any) -> Any:
        seen.append(threading.get_ident())
        return original(values)

    model._run_record = spy  # type: ignore[attr-defined]

    async def main() -> tuple[Any, Any]:
        loop_thread.append(threading.get_ident())
        one = await model.apredict(row)
        many = await model.apredict_batch([row, row])
        return one, many

    one, many = asyncio.run(main())
    assert seen
    assert loop_thread[0] not in seen
    assert one == model.predict(row)
    assert len(many) == 2


def test_repr_and_html_show_identity(iris_bundle: Path) -> None:
    model = modelkit.load(iris_bundle)
    assert "'iris'" in repr(model)
    assert "1.0.0" in repr(model)
    html = model._repr_html_()
    assert "iris" in html
    assert "joblib" in html
    assert model.digest == modelkit.digest(iris_bundle)


# -- custom models --------------------------------------------------------------------------------


def test_custom_model_validates_with_its_pydantic_types() -> None:
    model = Keywords()
    assert model.predict({"text": "a good day"}) == Sentiment(positive=True)
    assert model.predict(Review(text="bad")) == Sentiment(positive=False)
    with pytest.raises(modelkit.InvalidInputError, match="text") as info:
        model.predict_batch([{"text": "ok"}, {"txt": "oops"}])
    assert info.value.index == 1


def test_custom_model_round_trips_with_its_artifacts(tmp_path: Path) -> None:
    manifest = modelkit.save(
        Keywords(words=("great", "fine")), tmp_path / "kw", name="kw", version="3"
    )
    assert manifest.format == "python"
    assert manifest.adapter["class"] == "tests.custom_models:Keywords"
    model = modelkit.load(tmp_path / "kw")
    assert isinstance(model, Keywords)
    assert model.words == ("great", "fine")
    assert model.predict({"text": "fine"}).positive
    assert model.name == "kw"
    assert model.version == "3"
    assert model.signature.outputs.task == "custom"


def test_custom_model_output_is_coerced_to_its_type() -> None:
    assert Echo().predict({"text": "hi"}) == Sentiment(positive=True)


def test_custom_model_defined_in_main_cannot_be_saved(tmp_path: Path) -> None:
    class Local(modelkit.Model[Review, Sentiment]):
        def run_batch(self, inputs: list[Review]) -> list[Sentiment]:
            return [Sentiment(positive=True) for _ in inputs]

    with pytest.raises(modelkit.BundleError, match="inside a function"):
        modelkit.save(Local(), tmp_path / "local", name="local", version="1")


def test_manifest_naming_a_non_model_class_is_refused(tmp_path: Path) -> None:
    import json

    modelkit.save(Keywords(), tmp_path / "kw", name="kw", version="1")
    manifest_path = tmp_path / "kw" / "modelkit.json"
    document = json.loads(manifest_path.read_text())
    document["adapter"]["class"] = "pathlib:Path"
    manifest_path.write_text(json.dumps(document))
    with pytest.raises(modelkit.BundleError, match="not a subclass"):
        modelkit.load(tmp_path / "kw")


def test_pydantic_signature_declares_inputs_for_an_estimator(
    tmp_path: Path, iris: tuple[Any, Any]
) -> None:
    from sklearn.tree import DecisionTreeClassifier

    X, y = iris
    frame = X.set_axis(["a", "b", "c", "d"], axis=1)
    tree = DecisionTreeClassifier(random_state=0).fit(frame.to_numpy(), y)

    class Flower(pydantic.BaseModel):
        a: float
        b: float
        c: float
        d: float

    modelkit.save(tree, tmp_path / "tree", name="tree", version="1", signature=Flower)
    model = modelkit.load(tmp_path / "tree")
    assert model.signature.names == ("a", "b", "c", "d")
    assert model.predict(Flower(a=5.1, b=3.5, c=1.4, d=0.2)).label == 0


def test_custom_model_without_artifacts_round_trips(tmp_path: Path) -> None:
    manifest = modelkit.save(Echo(), tmp_path / "echo", name="echo", version="1")
    assert manifest.artifacts == ()
    assert modelkit.load(tmp_path / "echo").predict({"text": "x"}).positive


def test_hooks_a_custom_model_adds_to_itself_survive_loading(tmp_path: Path) -> None:
    modelkit.save(CountsItself(), tmp_path / "counts", name="counts", version="1")
    model = modelkit.load(tmp_path / "counts")
    assert isinstance(model, CountsItself)
    model.predict({"text": "hi"})
    assert model.calls == ["counts"]  # the hook ran, and saw the loaded identity


def test_a_custom_model_that_was_called_copies_and_pickles() -> None:
    # The observer a call creates holds a lock and a weak reference to its model: copies and
    # pickles leave it behind and make their own, whose hooks see the copy.
    model = Keywords(words=("fine",))
    seen: list[Any] = []

    class Seen:
        def after_predict(self, ctx: Any, outputs: Any) -> None:
            seen.append(ctx.model)

    model.add_hook(Seen())
    model.predict({"text": "fine"})
    for twin in (copy.copy(model), copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert twin.predict({"text": "fine"}) == Sentiment(positive=True)
        assert twin.words == ("fine",)
    shallow = copy.copy(model)
    shallow.add_hook(Seen())
    del model
    gc.collect()
    shallow.predict({"text": "fine"})
    assert seen[-1] is shallow
