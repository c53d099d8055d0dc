"""Reading ONNX protobufs without onnxruntime: external data anywhere, inputs and outputs."""

from __future__ import annotations

import contextlib
import random
import tracemalloc
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelkit import _onnx_graph
from modelkit._onnx_graph import GraphError, external_tensors, graph_values

onnx = pytest.importorskip("onnx")
helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto


def _external(tensor: Any, location: str = ".env") -> Any:
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.external_data[:]
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    tensor.ClearField("raw_data")
    return tensor


def _tensor(name: str) -> Any:
    return numpy_helper.from_array(np.arange(4, dtype=np.float32), name)


def _model(graph: Any, **kwargs: Any) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], **kwargs)
    return bytes(model.SerializeToString())


def _identity_graph(name: str = "main", **kwargs: Any) -> Any:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    return helper.make_graph(
        kwargs.pop("nodes", [helper.make_node("Identity", ["x"], ["y"])]), name, [x], [y], **kwargs
    )


def test_a_plain_graph_has_no_external_tensor() -> None:
    assert external_tensors(_model(_identity_graph(initializer=[_tensor("w")]))) == []


def test_an_external_initializer_is_named() -> None:
    data = _model(_identity_graph(initializer=[_tensor("w"), _external(_tensor("secret"))]))
    assert external_tensors(data) == ["secret"]


def test_a_constant_node_with_external_data_is_named() -> None:
    constant = helper.make_node("Constant", [], ["c"], value=_external(_tensor("leak")))
    nodes = [constant, helper.make_node("Identity", ["x"], ["y"])]
    assert external_tensors(_model(_identity_graph(nodes=nodes))) == ["leak"]


def test_a_tensor_inside_nested_subgraphs_is_named() -> None:
    inner_constant = helper.make_node("Constant", [], ["c"], value=_external(_tensor("deep")))
    out = helper.make_tensor_value_info("c", TensorProto.FLOAT, [4])
    then_branch = helper.make_graph([inner_constant], "then", [], [out])
    else_branch = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=_tensor("fine"))], "else", [], [out]
    )
    condition = helper.make_node(
        "If", ["cond"], ["c"], then_branch=then_branch, else_branch=else_branch
    )
    loop_body = helper.make_graph([condition], "body", [], [out])
    loop = helper.make_node("Loop", ["", ""], ["z"], body=loop_body)
    nodes = [loop, helper.make_node("Identity", ["x"], ["y"])]
    assert external_tensors(_model(_identity_graph(nodes=nodes))) == ["deep"]


def test_a_sparse_initializer_and_a_function_are_searched() -> None:
    values = _external(numpy_helper.from_array(np.ones(2, dtype=np.float32), "sparse_values"))
    indices = numpy_helper.from_array(np.array([0, 3], dtype=np.int64), "sparse_indices")
    sparse = helper.make_sparse_tensor(values, indices, [4])
    function = helper.make_function(
        "local",
        "f",
        ["a"],
        ["b"],
        [helper.make_node("Constant", [], ["b"], value=_external(_tensor("in_function")))],
        [helper.make_opsetid("", 17)],
    )
    data = _model(_identity_graph(sparse_initializer=[sparse]), functions=[function])
    assert sorted(external_tensors(data)) == ["in_function", "sparse_values"]


def test_inputs_and_outputs_are_read_without_initializers() -> None:
    graph = _identity_graph(initializer=[_tensor("w")])
    graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [4]))
    inputs, outputs = graph_values(_model(graph))
    assert [(v.name, v.type, v.shape) for v in inputs] == [("x", "tensor(float)", ("batch", 4))]
    assert [(v.name, v.type, v.shape) for v in outputs] == [("y", "tensor(float)", ("batch", 4))]


def test_graph_values_are_described_as_onnxruntime_describes_them() -> None:
    """Every input and output of a converted classifier (ZipMap included) reads as a session
    reads it, without building one."""
    ort = pytest.importorskip("onnxruntime")
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    model = skl2onnx.to_onnx(LogisticRegression(max_iter=500).fit(X, y), X[:1].astype(np.float32))
    data = model.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    inputs, outputs = graph_values(data)
    for ours, theirs in ((inputs, session.get_inputs()), (outputs, session.get_outputs())):
        assert [(v.name, v.type, v.shape) for v in ours] == [
            (n.name, n.type, None if n.type.startswith(("seq", "map")) else tuple(n.shape))
            for n in theirs
        ]
    assert _onnx_graph.producer_name(data) == session.get_modelmeta().producer_name


def test_field_numbers_are_onnx_protos() -> None:
    expected = {
        "_MODEL_GRAPH": ("ModelProto", "graph"),
        "_MODEL_TRAINING_INFO": ("ModelProto", "training_info"),
        "_MODEL_FUNCTIONS": ("ModelProto", "functions"),
        "_TRAINING_INITIALIZATION": ("TrainingInfoProto", "initialization"),
        "_TRAINING_ALGORITHM": ("TrainingInfoProto", "algorithm"),
        "_FUNCTION_NODE": ("FunctionProto", "node"),
        "_FUNCTION_ATTRIBUTE": ("FunctionProto", "attribute_proto"),
        "_GRAPH_NODE": ("GraphProto", "node"),
        "_GRAPH_INITIALIZER": ("GraphProto", "initializer"),
        "_GRAPH_SPARSE_INITIALIZER": ("GraphProto", "sparse_initializer"),
        "_GRAPH_INPUT": ("GraphProto", "input"),
        "_GRAPH_OUTPUT": ("GraphProto", "output"),
        "_NODE_ATTRIBUTE": ("NodeProto", "attribute"),
        "_ATTRIBUTE_TENSOR": ("AttributeProto", "t"),
        "_ATTRIBUTE_GRAPH": ("AttributeProto", "g"),
        "_ATTRIBUTE_TENSORS": ("AttributeProto", "tensors"),
        "_ATTRIBUTE_GRAPHS": ("AttributeProto", "graphs"),
        "_ATTRIBUTE_SPARSE_TENSOR": ("AttributeProto", "sparse_tensor"),
        "_ATTRIBUTE_SPARSE_TENSORS": ("AttributeProto", "sparse_tensors"),
        "_SPARSE_VALUES": ("SparseTensorProto", "values"),
        "_SPARSE_INDICES": ("SparseTensorProto", "indices"),
        "_TENSOR_NAME": ("TensorProto", "name"),
        "_TENSOR_EXTERNAL_DATA": ("TensorProto", "external_data"),
        "_TENSOR_DATA_LOCATION": ("TensorProto", "data_location"),
        "_VALUE_NAME": ("ValueInfoProto", "name"),
        "_VALUE_TYPE": ("ValueInfoProto", "type"),
        "_TYPE_TENSOR": ("TypeProto", "tensor_type"),
        "_TYPE_SEQUENCE": ("TypeProto", "sequence_type"),
        "_TYPE_MAP": ("TypeProto", "map_type"),
        "_SEQUENCE_ELEMENT": ("TypeProto.Sequence", "elem_type"),
        "_MAP_KEY": ("TypeProto.Map", "key_type"),
        "_MAP_VALUE": ("TypeProto.Map", "value_type"),
        "_MODEL_PRODUCER_NAME": ("ModelProto", "producer_name"),
        "_TENSOR_TYPE_ELEMENT": ("TypeProto.Tensor", "elem_type"),
        "_TENSOR_TYPE_SHAPE": ("TypeProto.Tensor", "shape"),
        "_SHAPE_DIM": ("TensorShapeProto", "dim"),
        "_DIM_VALUE": ("TensorShapeProto.Dimension", "dim_value"),
        "_DIM_PARAM": ("TensorShapeProto.Dimension", "dim_param"),
    }
    for constant, (message, field) in expected.items():
        descriptor: Any = onnx
        for part in message.split("."):
            descriptor = getattr(descriptor, part)
        number = descriptor.DESCRIPTOR.fields_by_name[field].number
        assert getattr(_onnx_graph, constant) == number, constant
    assert _onnx_graph._EXTERNAL == TensorProto.EXTERNAL
    onnx_names: dict[str, str] = {}
    for number, name in _onnx_graph._ELEMENT_TYPES.items():
        assert TensorProto.DataType.Name(number) == onnx_names.get(name, name.upper()), name


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_junk_bytes_give_graph_error_or_an_answer(data: bytes) -> None:
    with contextlib.suppress(GraphError):
        external_tensors(data)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_a_truncated_or_corrupted_model_never_escapes_graph_error(data: st.DataObject) -> None:
    model = _model(_identity_graph(initializer=[_external(_tensor("w"))]))
    cut = data.draw(st.integers(0, len(model)))
    flipped = bytearray(model[:cut])
    if flipped:
        position = data.draw(st.integers(0, len(flipped) - 1))
        flipped[position] = data.draw(st.integers(0, 255))
    with contextlib.suppress(GraphError):
        external_tensors(bytes(flipped))


def _careful_fields(message: memoryview) -> list[tuple[int, bytes]]:
    # The field-by-field decoder, with no fast skipping of scalar runs.
    return [(n, bytes(v)) for n, v in _onnx_graph._values(message) if isinstance(v, memoryview)]


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


_FIELD = st.one_of(
    st.tuples(st.just(0), st.integers(1, 40), st.integers(0, 2**64 - 1)),
    st.tuples(st.just(5), st.integers(1, 40), st.binary(min_size=4, max_size=4)),
    st.tuples(st.just(1), st.integers(1, 40), st.binary(min_size=8, max_size=8)),
    # Lengths around 128, where a length stops fitting in one byte.
    st.tuples(
        st.just(2),
        st.integers(1, 40),
        st.binary(max_size=12) | st.binary(min_size=120, max_size=130),
    ),
)
# Fields as protobuf writes repeated ones: the same field several times in a row.
_RUNS = st.lists(st.tuples(_FIELD, st.integers(1, 4)), max_size=20)


def _encoded(field: tuple[int, int, Any]) -> bytes:
    wire, number, value = field
    key = _varint_bytes((number << 3) | wire)
    if wire == 0:
        return key + _varint_bytes(value)
    if wire == 2:
        return key + _varint_bytes(len(value)) + value
    return key + bytes(value)


@settings(max_examples=300, deadline=None)
@given(
    _RUNS,
    st.integers(0, 8),
    st.binary(max_size=3),
    st.none() | st.frozensets(st.integers(1, 40)),
)
def test_skipping_runs_reads_the_same_fields_as_decoding_each(
    runs: list[tuple[tuple[int, int, Any], int]],
    cut: int,
    junk: bytes,
    wanted: frozenset[int] | None,
) -> None:
    # The fast steps (runs of numbers, and of short strings nobody asked for, skipped in one
    # match; short strings read inline; fields nobody asked for not sliced) must find the same
    # length-delimited fields as the careful decoder, and refuse what it refuses: on real
    # protobuf, cut short, or with junk after it.
    data = b"".join(_encoded(field) * count for field, count in runs)
    data = data[: max(0, len(data) - cut)] + junk
    view = memoryview(data)
    try:
        expected = [(n, v) for n, v in _careful_fields(view) if wanted is None or n in wanted]
    except GraphError:
        with pytest.raises(GraphError):
            list(_onnx_graph._fields(view, wanted))
        return
    assert [(n, bytes(v)) for n, v in _onnx_graph._fields(view, wanted)] == expected


def _run_value(wire: int, rng: random.Random) -> bytes:
    if wire == 0:
        if rng.random() < 0.01:
            return b"\xff" * rng.randint(9, 11) + b"\x01"  # ten bytes, or too long
        return _varint_bytes(rng.getrandbits(rng.choice([3, 7, 8, 14, 20, 35, 64])))
    return rng.randbytes(4 if wire == 5 else 8)


@settings(max_examples=150, deadline=None)
@given(
    wire=st.sampled_from([0, 1, 5]),
    number=st.integers(1, 15),
    count=st.integers(_onnx_graph._RUN_FIELDS - 2, 40 * _onnx_graph._RUN_FIELDS),
    seed=st.integers(0, 2**32),
    damage=st.none() | st.tuples(st.floats(0, 1), st.integers(0, 255)),
    cut=st.integers(0, 12),
    after=st.sampled_from([b"", b"\x2a\x00", b"\x2a\x03abc", b"\x08", b"\x80"]),
)
def test_long_runs_of_numbers_read_the_same_fields_as_decoding_each(
    *,
    wire: int,
    number: int,
    count: int,
    seed: int,
    damage: tuple[float, int] | None,
    cut: int,
    after: bytes,
) -> None:
    # Runs longer than one regex match are finished with array operations, window by window:
    # they must step over exactly the fields the careful decoder steps over, and refuse what
    # it refuses, wherever a byte is changed or the run is cut.
    rng = random.Random(seed)
    key = _varint_bytes((number << 3) | wire)
    data = bytearray(b"".join(key + _run_value(wire, rng) for _ in range(count)))
    if damage is not None:
        data[int(damage[0] * (len(data) - 1))] = damage[1]
    view = memoryview(bytes(data[: len(data) - cut]) + after)
    wanted = frozenset({5})
    try:
        expected = [(n, v) for n, v in _careful_fields(view) if n in wanted]
    except GraphError:
        with pytest.raises(GraphError):
            list(_onnx_graph._fields(view, wanted))
        return
    assert [(n, bytes(v)) for n, v in _onnx_graph._fields(view, wanted)] == expected


def test_a_tree_ensemble_attribute_walk_skips_unpacked_numbers_and_strings() -> None:
    # 20,000 unpacked ints, floats and strings (proto2 repeats them one key each), then a tensor
    # with external data after them: still found, and a varint cut short at the end still
    # refused.
    attribute = helper.make_attribute("nodes_featureids", list(range(20_000)))
    floats = helper.make_attribute("nodes_values", [0.5] * 20_000)
    modes = helper.make_attribute("nodes_modes", ["BRANCH_LEQ", "LEAF"] * 10_000)
    node = helper.make_node("Constant", [], ["c"], name="constant")
    node.attribute.extend(
        [attribute, floats, modes, helper.make_attribute("value", _external(_tensor("hidden")))]
    )
    graph = _identity_graph()
    graph.node.insert(0, node)
    assert external_tensors(_model(graph)) == ["hidden"]
    encoded = bytes(attribute.SerializeToString())
    with pytest.raises(GraphError):
        list(_onnx_graph._fields(memoryview(encoded + b"\x40\x80")))


@pytest.mark.parametrize(
    "count", [n * _onnx_graph._RUN_FIELDS + d for n in (1, 40) for d in (-1, 0, 1)]
)
@pytest.mark.parametrize("field", [b"\x4a\x04LEAF", b"\x40\x96\x01", b"\x3d\x00\x00\x00\x3f"])
def test_a_field_after_a_run_longer_than_one_match_is_found(count: int, field: bytes) -> None:
    # A run is stepped over a bounded number of fields at a time: what follows it is still read.
    tensor = bytes(_external(_tensor("after")).SerializeToString())
    attribute = field * count + b"\x2a" + _varint_bytes(len(tensor)) + tensor
    assert [bytes(v) for _, v in _onnx_graph._fields(memoryview(attribute), frozenset({5}))] == [
        tensor
    ]
    with pytest.raises(GraphError):
        list(_onnx_graph._fields(memoryview(field * count + field[:-1]), frozenset({5})))


def test_a_long_run_is_stepped_over_in_bounded_memory() -> None:
    # The regex engine keeps a record per repetition of a match: an unbounded run of a hostile
    # graph's two million numbers held ~180 MiB (gigabytes for a few hundred megabytes).
    run = memoryview(b"\x08\x01" * 2_000_000 + b"\x2a\x00")
    tracemalloc.start()
    try:
        found = list(_onnx_graph._fields(run, frozenset({5})))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(n, bytes(v)) for n, v in found] == [(5, b"")]
    assert peak < 8 * 2**20
