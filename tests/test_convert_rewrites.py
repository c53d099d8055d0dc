"""The converted graph, simplified: the same answers from fewer nodes."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelkit._convert_rewrites import merge_one_hot, simplify

# Categories that overlap between columns, as a plan and a previous plan would.
CATEGORIES = [["basic", "pro"], ["pro", "team"], ["basic", "zeta"]]
TOTAL = sum(len(values) for values in CATEGORIES)


def _model(nodes: list[Any], inputs: list[Any], outputs: list[Any], **kwargs: Any) -> Any:
    graph = helper.make_graph(nodes, "g", inputs, outputs, **kwargs)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _run(model: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return list(session.run(None, feed))


def _copy(model: Any) -> Any:
    copied = onnx.ModelProto()
    copied.CopyFrom(model)
    return copied


def _one_hot_per_column(
    slices: list[Any],
    columns: list[str],
    *,
    zeros: int = 1,
    width: int = 3,
    constants: tuple[Any, ...] = (),
) -> Any:
    """skl2onnx's encoding of string columns: one OneHotEncoder per column, then Concat and
    Reshape."""
    encoders = [
        helper.make_node(
            "OneHotEncoder",
            [column],
            [f"{column}_out"],
            domain="ai.onnx.ml",
            cats_strings=CATEGORIES[j],
            zeros=zeros,
        )
        for j, column in enumerate(columns)
    ]
    nodes = [
        *slices,
        *encoders,
        helper.make_node("Concat", [f"{c}_out" for c in columns], ["joined"], axis=-1),
        helper.make_node("Reshape", ["joined", "shape"], ["encoded"]),
    ]
    total = sum(len(CATEGORIES[j]) for j in range(len(columns)))
    return _model(
        nodes,
        [helper.make_tensor_value_info("strings", TensorProto.STRING, [None, width])],
        [helper.make_tensor_value_info("encoded", TensorProto.FLOAT, [None, total])],
        initializer=[
            numpy_helper.from_array(np.array([-1, total], dtype=np.int64), "shape"),
            *constants,
        ],
    )


def _split_model(*, zeros: int = 1) -> Any:
    columns = ["a", "b", "c"]
    split = helper.make_node("Split", ["strings"], columns, axis=1)
    return _one_hot_per_column([split], columns, zeros=zeros)


def _every_row() -> np.ndarray:
    """Every row of known, other columns' and unknown values."""
    values = ["basic", "pro", "team", "zeta", "other"]
    return np.array(list(itertools.product(values, repeat=3)), dtype=object)


def test_one_hot_encoders_of_split_columns_merge_into_one_with_the_same_answers() -> None:
    model = _split_model()
    merged = _copy(model)
    merge_one_hot(onnx, merged)
    onnx.checker.check_model(merged)
    assert [node.op_type for node in merged.graph.node] == ["OneHotEncoder", "Reshape", "Gather"]
    rows = _every_row()
    (expected,) = _run(model, {"strings": rows})
    (encoded,) = _run(merged, {"strings": rows})
    assert expected.shape == (len(rows), TOTAL)
    np.testing.assert_array_equal(encoded, expected)


def test_one_hot_encoders_of_gathered_columns_merge_over_those_columns_only() -> None:
    # Columns 2 then 0 of a 4-column input, each picked by its own Gather as skl2onnx does.
    slices = [
        helper.make_node("Gather", ["strings", f"at_{j}"], [name], axis=1)
        for name, j in (("first", 2), ("second", 0))
    ]
    positions = tuple(
        numpy_helper.from_array(np.array([j], dtype=np.int64), f"at_{j}") for j in (0, 2)
    )
    model = _one_hot_per_column(slices, ["first", "second"], width=4, constants=positions)
    merged = _copy(model)
    merge_one_hot(onnx, merged)
    onnx.checker.check_model(merged)
    assert [node.op_type for node in merged.graph.node].count("OneHotEncoder") == 1
    rows = np.concatenate([_every_row(), _every_row()[:, :1]], axis=1)
    np.testing.assert_array_equal(
        _run(merged, {"strings": rows})[0], _run(model, {"strings": rows})[0]
    )


def test_encoders_that_refuse_unknown_values_are_not_merged() -> None:
    # With zeros=0 an unknown value is an error; another column's category must stay one.
    model = _split_model(zeros=0)
    merged = _copy(model)
    merge_one_hot(onnx, merged)
    assert merged == model


def test_encoders_too_wide_to_merge_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelkit import _convert_rewrites

    monkeypatch.setattr(_convert_rewrites, "_ONE_HOT_WIDTH", 3 * 4 - 1)  # 3 columns x 4 values
    model = _split_model()
    merged = _copy(model)
    merge_one_hot(onnx, merged)
    assert merged == model


def test_simplify_drops_round_trips_identities_and_unread_nodes() -> None:
    columns = ["a", "b", "c"]
    nodes = [
        helper.make_node("Split", ["x"], columns, axis=1),
        helper.make_node("Cast", ["a"], ["a_float"], to=TensorProto.FLOAT),  # read by nothing
        helper.make_node("Concat", columns, ["joined"], axis=1),
        helper.make_node("Identity", ["joined"], ["same"]),
        helper.make_node("Mul", ["same", "two"], ["doubled"]),
        helper.make_node("Identity", ["doubled"], ["y"]),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [None, 3])],
        initializer=[
            numpy_helper.from_array(np.array(2.0), "two"),
            numpy_helper.from_array(np.array(3.0), "unread"),
        ],
    )
    simplified = _copy(model)
    simplify(simplified.graph)
    onnx.checker.check_model(simplified)
    (node,) = simplified.graph.node
    assert (node.op_type, list(node.input), list(node.output)) == ("Mul", ["x", "two"], ["y"])
    assert [tensor.name for tensor in simplified.graph.initializer] == ["two"]
    x = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_array_equal(_run(simplified, {"x": x})[0], _run(model, {"x": x})[0])


def test_simplify_keeps_a_split_whose_parts_are_joined_out_of_order() -> None:
    nodes = [
        helper.make_node("Split", ["x"], ["a", "b"], axis=1),
        helper.make_node("Concat", ["b", "a"], ["y"], axis=1),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [None, 2])],
    )
    simplified = _copy(model)
    simplify(simplified.graph)
    assert simplified == model
