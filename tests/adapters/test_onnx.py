"""The onnx adapter: whatever onnxruntime runs gives the same outputs through modelkit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelkit

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
helper = onnx.helper
TensorProto = onnx.TensorProto


def _model(nodes: list[Any], inputs: list[Any], outputs: list[Any], opset: int = 17) -> Any:
    graph = helper.make_graph(nodes, "test", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _graphs() -> dict[str, tuple[Any, dict[str, np.ndarray]]]:
    """Graphs covering several inputs and outputs, each element type, and dynamic axes."""
    v = helper.make_tensor_value_info
    return {
        "two-inputs-two-outputs": (
            _model(
                [
                    helper.make_node("Add", ["a", "b"], ["sum"]),
                    helper.make_node("Mul", ["a", "b"], ["product"]),
                ],
                [v("a", TensorProto.FLOAT, ["N", 3]), v("b", TensorProto.FLOAT, ["N", 3])],
                [v("sum", TensorProto.FLOAT, ["N", 3]), v("product", TensorProto.FLOAT, ["N", 3])],
            ),
            {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones((2, 3), np.float32)},
        ),
        "double": (
            _model(
                [helper.make_node("Neg", ["x"], ["y"])],
                [v("x", TensorProto.DOUBLE, [None, 2])],
                [v("y", TensorProto.DOUBLE, [None, 2])],
            ),
            {"x": np.array([[1.5, -2.0]])},
        ),
        "int64": (
            _model(
                [helper.make_node("Abs", ["x"], ["y"])],
                [v("x", TensorProto.INT64, ["batch"])],
                [v("y", TensorProto.INT64, ["batch"])],
            ),
            {"x": np.array([-3, 4, -5], dtype=np.int64)},
        ),
        "int32": (
            _model(
                [helper.make_node("Neg", ["x"], ["y"])],
                [v("x", TensorProto.INT32, [2, 2])],
                [v("y", TensorProto.INT32, [2, 2])],
            ),
            {"x": np.array([[1, 2], [3, 4]], dtype=np.int32)},
        ),
        "bool": (
            _model(
                [helper.make_node("Not", ["x"], ["y"])],
                [v("x", TensorProto.BOOL, ["N"])],
                [v("y", TensorProto.BOOL, ["N"])],
            ),
            {"x": np.array([True, False, True])},
        ),
        "string": (
            _model(
                [helper.make_node("Identity", ["x"], ["y"])],
                [v("x", TensorProto.STRING, ["N"])],
                [v("y", TensorProto.STRING, ["N"])],
            ),
            {"x": np.array(["a", "bc", ""], dtype=object)},
        ),
        "mixed-types": (
            _model(
                [
                    helper.make_node("Cast", ["flag"], ["flag_float"], to=TensorProto.FLOAT),
                    helper.make_node("Mul", ["x", "flag_float"], ["y"]),
                ],
                [v("x", TensorProto.FLOAT, ["N"]), v("flag", TensorProto.BOOL, ["N"])],
                [v("y", TensorProto.FLOAT, ["N"])],
            ),
            {"x": np.array([1.0, 2.0], np.float32), "flag": np.array([True, False])},
        ),
        "scalar": (
            _model(
                [helper.make_node("Sqrt", ["x"], ["y"])],
                [v("x", TensorProto.FLOAT, [])],
                [v("y", TensorProto.FLOAT, [])],
            ),
            {"x": np.array(4.0, dtype=np.float32)},
        ),
        "3-d-dynamic": (
            _model(
                [helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0, axes=[2])],
                [v("x", TensorProto.FLOAT, ["N", "T", 4])],
                [v("y", TensorProto.FLOAT, ["N", "T"])],
                opset=12,
            ),
            {"x": np.ones((2, 5, 4), np.float32)},
        ),
    }


GRAPHS = _graphs()


def _raw(model: Any, feed: dict[str, np.ndarray]) -> dict[str, Any]:
    """What onnxruntime gives with modelkit's default session options (one intra-op thread:
    tree ensembles sum in another order, so the last bits differ, on other thread counts)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feed), strict=True))


def _assert_same(actual: Any, expected: dict[str, Any]) -> None:
    assert set(actual) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value)
        assert np.asarray(actual[name]).dtype == np.asarray(value).dtype


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_bundle_gives_what_onnxruntime_gives(name: str, tmp_path: Path) -> None:
    model_proto, feed = GRAPHS[name]
    modelkit.save(model_proto, tmp_path / name, name=name, version="1")
    model = modelkit.load(tmp_path / name)
    assert model.signature.kind == "tensor"
    _assert_same(model.predict(feed), _raw(model_proto, feed))


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_bare_onnx_file_gives_what_onnxruntime_gives(name: str, tmp_path: Path) -> None:
    model_proto, feed = GRAPHS[name]
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(model_proto.SerializeToString())
    model = modelkit.load(path)
    assert model.version == "unversioned"
    _assert_same(model.predict(feed), _raw(model_proto, feed))
    assert modelkit.digest(path).startswith("sha256:")


def test_mapping_batch_splits_rows_along_a_declared_batch_axis(tmp_path: Path) -> None:
    model_proto, feed = GRAPHS["two-inputs-two-outputs"]
    modelkit.save(model_proto, tmp_path / "m", name="m", version="1")
    predictions = modelkit.load(tmp_path / "m").predict_batch(feed)
    assert len(predictions) == 2
    np.testing.assert_array_equal(predictions["sum"], _raw(model_proto, feed)["sum"])
    np.testing.assert_array_equal(predictions[1]["product"], _raw(model_proto, feed)["product"][1])


def test_mapping_batch_without_a_batch_axis_is_refused(tmp_path: Path) -> None:
    model_proto, feed = GRAPHS["int32"]
    modelkit.save(model_proto, tmp_path / "m", name="m", version="1")
    model = modelkit.load(tmp_path / "m")
    with pytest.raises(modelkit.InvalidInputError, match="no batch axis"):
        model.predict_batch(feed)
    predictions = model.predict_batch([feed, feed])
    assert len(predictions) == 2
    np.testing.assert_array_equal(predictions[0]["y"], -feed["x"])


def test_tensor_inputs_are_checked_against_the_graph(tmp_path: Path) -> None:
    model_proto, _ = GRAPHS["two-inputs-two-outputs"]
    modelkit.save(model_proto, tmp_path / "m", name="m", version="1")
    model = modelkit.load(tmp_path / "m")
    good = np.ones((1, 3), np.float32)
    with pytest.raises(modelkit.InvalidInputError, match="'b' is missing"):
        model.predict({"a": good})
    with pytest.raises(modelkit.InvalidInputError, match="shape") as info:
        model.predict({"a": np.ones((1, 4), np.float32), "b": good})
    assert info.value.field == "a"
    with pytest.raises(modelkit.InvalidInputError, match="expects float32"):
        model.predict({"a": np.array([["x", "y", "z"]]), "b": good})
    np.testing.assert_array_equal(model.predict({"a": good, "b": good})["sum"], good * 2)


def test_converted_classifier_is_served_as_a_classifier(
    onnx_bundle: Path, onnx_classifier: Any, numeric_data: Any
) -> None:
    X = numeric_data[0]
    model = modelkit.load(onnx_bundle)
    assert model.signature.outputs.task == "classification"
    assert model.signature.outputs.classes == (0, 1)
    raw = _raw(onnx_classifier, {"X": X})
    predictions = model.predict_batch(X)
    np.testing.assert_array_equal(predictions["label"], raw["label"])
    np.testing.assert_array_equal(predictions["probabilities"], raw["probabilities"])
    one = model.predict({f"x{i}": float(v) for i, v in enumerate(X[3])})
    assert one.label == raw["label"][3]
    assert one.probabilities == dict(zip((0, 1), raw["probabilities"][3].tolist(), strict=True))


def test_converted_regressor_with_dataframe_columns(tmp_path: Path) -> None:
    import pandas as pd
    from skl2onnx import to_onnx
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X = X.astype(np.float32)
    ridge = Ridge().fit(X, y)
    onx = to_onnx(ridge, X.to_numpy()[:1], target_opset=17)
    modelkit.save(onx, tmp_path / "r", name="r", version="1", sample_input=X.head(10))
    model = modelkit.load(tmp_path / "r")
    assert model.signature.outputs.task == "regression"
    assert model.signature.names == tuple(X.columns)
    expected = _raw(onx, {"X": X.to_numpy()})["variable"].ravel()
    np.testing.assert_array_equal(model.predict_batch(X)["value"], expected)
    assert model.predict(X.iloc[7].to_dict()).value == pytest.approx(float(expected[7]))
    assert isinstance(model.predict_batch(X).to_pandas(), pd.DataFrame)


def test_per_column_inputs_are_fed_as_columns(tmp_path: Path) -> None:
    v = helper.make_tensor_value_info
    proto = _model(
        [
            helper.make_node("Concat", ["age", "income"], ["both"], axis=1),
            helper.make_node("ReduceSum", ["both"], ["total"], keepdims=1, axes=[1]),
        ],
        [v("age", TensorProto.FLOAT, [None, 1]), v("income", TensorProto.FLOAT, [None, 1])],
        [v("total", TensorProto.FLOAT, [None, 1])],
        opset=12,
    )
    modelkit.save(
        proto, tmp_path / "c", name="c", version="1", sample_input=[{"age": 30.0, "income": 2.5}]
    )
    model = modelkit.load(tmp_path / "c")
    assert model.manifest is not None
    assert model.manifest.adapter["layout"] == "columns"
    assert model.predict({"age": 1.0, "income": 2.0}).value == 3.0
    np.testing.assert_array_equal(
        model.predict_batch([{"age": 1, "income": 2}, {"age": 3, "income": 4}])["value"], [3.0, 7.0]
    )


def test_zipmap_classifier_probabilities_become_a_matrix(tmp_path: Path, numeric_data: Any) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    X, y = numeric_data
    logistic = LogisticRegression().fit(X, y)
    onx = to_onnx(logistic, X[:1], target_opset=17)  # zipmap on: a list of dicts per batch
    modelkit.save(onx, tmp_path / "z", name="z", version="1", sample_input=X[:5])
    model = modelkit.load(tmp_path / "z")
    assert model.signature.outputs.task == "classification"
    probabilities = model.predict_batch(X[:4])["probabilities"]
    np.testing.assert_allclose(probabilities, logistic.predict_proba(X[:4]), rtol=1e-5, atol=1e-6)


def test_sample_that_does_not_fit_the_graph_is_refused(
    tmp_path: Path, onnx_classifier: Any
) -> None:
    with pytest.raises(modelkit.BundleError, match="do not fit the graph"):
        modelkit.save(
            onnx_classifier, tmp_path / "m", name="m", version="1", sample_input=np.zeros((2, 7))
        )
    assert not (tmp_path / "m").exists()


def test_session_options_are_applied_and_unknown_ones_refused(onnx_bundle: Path) -> None:
    model = modelkit.load(
        onnx_bundle,
        adapter_options={
            "intra_op_num_threads": 1,
            "graph_optimization_level": "basic",
            "allow_spinning": False,
        },
    )
    options = model.runner.session.get_session_options()  # type: ignore[attr-defined]
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert model.runner.session.get_providers() == ["CPUExecutionProvider"]  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="Did you mean 'intra_op_num_threads'"):
        modelkit.load(onnx_bundle, adapter_options={"intra_op_threads": 1})


def test_one_intra_op_thread_is_the_default_and_zero_is_onnxruntimes(onnx_bundle: Path) -> None:
    def threads(model: Any) -> int:
        return int(model.runner.session.get_session_options().intra_op_num_threads)

    assert threads(modelkit.load(onnx_bundle)) == 1
    assert threads(modelkit.load(onnx_bundle, adapter_options={"intra_op_num_threads": 0})) == 0
    assert threads(modelkit.load(onnx_bundle, adapter_options={"intra_op_num_threads": 2})) == 2


def test_a_file_onnxruntime_cannot_read_is_a_bundle_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a protobuf at all")
    with pytest.raises(modelkit.BundleError, match="cannot load"):
        modelkit.load(path)


def test_linear_classifier_without_zipmap_is_a_classifier(
    tmp_path: Path, numeric_data: Any
) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    X, y = numeric_data
    logistic = LogisticRegression().fit(X, y)
    onx = to_onnx(logistic, X[:1], options={id(logistic): {"zipmap": False}}, target_opset=17)
    modelkit.save(onx, tmp_path / "l", name="l", version="1", sample_input=X[:5])
    model = modelkit.load(tmp_path / "l")
    assert model.signature.outputs.classes == (0, 1)
    np.testing.assert_array_equal(model.predict_batch(X)["label"], logistic.predict(X))


def test_single_input_tensor_model_takes_an_array_batch(tmp_path: Path) -> None:
    model_proto, _ = GRAPHS["double"]
    modelkit.save(model_proto, tmp_path / "d", name="d", version="1")
    predictions = modelkit.load(tmp_path / "d").predict_batch(np.array([[1.0, 2.0], [3.0, 4.0]]))
    np.testing.assert_array_equal(predictions["y"], [[-1.0, -2.0], [-3.0, -4.0]])


def test_sklearn_object_with_onnx_format_and_no_sample_explains_what_to_do(
    tmp_path: Path, iris_classifier: Any
) -> None:
    with pytest.raises(modelkit.ConversionError, match="needs sample_input="):
        modelkit.save(iris_classifier, tmp_path / "m", name="m", version="1", format="onnx")


def test_object_that_is_neither_onnx_nor_an_estimator_is_refused(tmp_path: Path) -> None:
    with pytest.raises(modelkit.BundleError, match="expected an ONNX model"):
        modelkit.save(object(), tmp_path / "m", name="m", version="1", format="onnx")


def _predict_in_forked_child(model: Any, record: Any, original_session: Any, pipe: Any) -> None:
    output = model.predict(record)
    pipe.send((output.label, model.runner.session is not original_session))
    pipe.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_session_is_rebuilt_in_a_forked_child(
    onnx_bundle: Path, numeric_data: tuple[Any, Any]
) -> None:
    import multiprocessing
    import warnings

    model = modelkit.load(onnx_bundle)  # onnxruntime's default thread pool
    record = numeric_data[0][0].tolist()
    expected = model.predict(record).label
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, Python 3.12+
        child = context.Process(
            target=_predict_in_forked_child, args=(model, record, model.runner.session, sender)
        )
        child.start()
    assert receiver.poll(60), "the forked child did not answer"
    label, rebuilt = receiver.recv()
    child.join(10)
    assert child.exitcode == 0
    assert label == expected
    assert rebuilt
    assert model.predict(record).label == expected  # the parent's session is untouched


# -- external data: nothing outside the verified bytes ------------------------------------------

SECRET = b"API_KEY=hunter2hunter2hunter2!!!"  # 32 bytes: eight float32 values


def _leaking_graph(where: str) -> Any:
    """A graph whose output is a tensor stored as external data in '.env' (the secret)."""
    from onnx import TensorProto, helper, numpy_helper

    leak = numpy_helper.from_array(np.zeros(8, dtype=np.float32), "leak")
    leak.ClearField("raw_data")
    leak.data_location = TensorProto.EXTERNAL
    for key, value in (("location", ".env"), ("offset", "0"), ("length", str(len(SECRET)))):
        entry = leak.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [8])
    if where == "initializer":
        nodes = [helper.make_node("Add", ["x", "leak"], ["y"])]
        graph = helper.make_graph(nodes, "g", [x], [y], initializer=[leak])
    elif where == "constant":
        nodes = [
            helper.make_node("Constant", [], ["c"], value=leak),
            helper.make_node("Add", ["x", "c"], ["y"]),
        ]
        graph = helper.make_graph(nodes, "g", [x], [y])
    else:  # a branch of an If, as a subgraph
        out = helper.make_tensor_value_info("c", TensorProto.FLOAT, [8])
        branch = helper.make_graph(
            [helper.make_node("Constant", [], ["c"], value=leak)], "b", [], [out]
        )
        condition = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
        nodes = [
            helper.make_node("If", ["cond"], ["c"], then_branch=branch, else_branch=branch),
            helper.make_node("Add", ["x", "c"], ["y"]),
        ]
        graph = helper.make_graph(nodes, "g", [x, condition], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("where", ["initializer", "constant", "if-branch"])
def test_external_data_in_a_bare_onnx_file_is_refused_before_onnxruntime_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    (tmp_path / ".env").write_bytes(SECRET)
    path = tmp_path / "model.onnx"
    path.write_bytes(_leaking_graph(where).SerializeToString())
    monkeypatch.chdir(tmp_path)  # onnxruntime resolves the location against the working directory
    with pytest.raises(modelkit.BundleError, match=r"'leak'.*external file"):
        modelkit.load(path, adapter_options={"graph_optimization_level": "disabled"})


def test_the_leaking_graph_does_leak_without_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the check prevents: onnxruntime reads the file and returns its bytes."""
    (tmp_path / ".env").write_bytes(SECRET)
    monkeypatch.chdir(tmp_path)
    data = _leaking_graph("initializer").SerializeToString()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - this onnxruntime refuses on its own: nothing to show
        pytest.skip("this onnxruntime refuses external data in a model given as bytes")
    (leaked,) = session.run(None, {"x": np.zeros(8, dtype=np.float32)})
    assert leaked.tobytes() == SECRET


def test_external_data_in_a_rehashed_bundle_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.bundle_fixtures import replace_artifact

    honest = _leaking_graph("initializer")
    del honest.graph.initializer[:]
    honest.graph.initializer.append(
        onnx.numpy_helper.from_array(np.zeros(8, dtype=np.float32), "leak")
    )
    bundle = tmp_path / "bundle"
    modelkit.save(honest, bundle, name="leaky", version="1")
    replace_artifact(
        bundle,
        _leaking_graph("initializer").SerializeToString(),
        rehash=True,
        name="artifacts/model.onnx",
    )
    (tmp_path / ".env").write_bytes(SECRET)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(modelkit.BundleError, match="external file"):
        modelkit.load(bundle)


def test_a_runtime_refusal_reaches_python_callers_as_its_reason(tmp_path: Path) -> None:
    """The reason, not onnxruntime's build paths and C++ signatures cut at 300 characters."""
    from tests.serving_fixtures import save_reshape

    model = modelkit.load(save_reshape(tmp_path / "reshape"))
    with pytest.raises(modelkit.InvalidInputError) as info:
        model.predict({"x": [1.0, 2.0, 3.0]})
    message = str(info.value)
    assert "cannot be reshaped to the requested shape" in message
    assert "onnxruntime_src" not in message
    assert "::" not in message


class _Proxy:
    """A session-like object: what a wrapper around an InferenceSession looks like."""

    def __init__(self, session: Any, providers: list[str], *, native: bool) -> None:
        self._session = session
        self._providers = providers
        self.calls = 0
        if native:
            self._sess = session._sess

    def get_providers(self) -> list[str]:
        return self._providers

    def run(self, names: Any, feed: Any, run_options: Any = None) -> Any:
        self.calls += 1
        return self._session.run(names, feed, run_options)


def test_a_cpu_session_runs_natively_and_others_through_session_run(onnx_bundle: Path) -> None:
    from modelkit.adapters._onnx import _direct_run

    model = modelkit.load(onnx_bundle)
    session = model.runner.session  # type: ignore[attr-defined]
    names = [o.name for o in session.get_outputs()]
    (graph_input,) = session.get_inputs()
    feed = {graph_input.name: np.ones((2, graph_input.shape[1]), dtype=np.float32)}
    for expected, got in zip(
        session.run(names, feed), _direct_run(session)(names, feed), strict=True
    ):
        np.testing.assert_array_equal(expected, got)

    cpu = _Proxy(session, ["CPUExecutionProvider"], native=True)
    _direct_run(cpu)(names, feed)
    assert cpu.calls == 0  # the native run, not the Python one
    for proxy in (
        _Proxy(session, ["CUDAExecutionProvider", "CPUExecutionProvider"], native=True),
        _Proxy(session, ["CPUExecutionProvider"], native=False),
    ):
        _direct_run(proxy)(names, feed)
        assert proxy.calls == 1
