"""The Open Inference Protocol layer (modelkit._oip) on real bundles, without a server: the
routes, the binary tensor data codec both ways (decoded by tritonclient's own reader), missing
values, the limits, and hostile requests, which get a 4xx with a clear message, never a 500.

The same requests made by a real client over HTTP are in tests/oip_clients.py.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelkit
import modelkit._oip
from modelkit._oip import OpenInference
from modelkit._oip_types import DATATYPES, INFERENCE_HEADER
from modelkit._serving import Reply, Service
from tests.serving_fixtures import save_rows, save_zeros

tritonclient_http = pytest.importorskip("tritonclient.http")
from tritonclient.utils import serialize_byte_tensor  # noqa: E402 - after the skip

IRIS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


@pytest.fixture(scope="module")
def price_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A regressor over a string, a nullable number and an integer column."""
    pandas = pytest.importorskip("pandas")
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    frame = pandas.DataFrame(
        {
            "color": rng.choice(["red", "blue"], 40),
            "size": rng.normal(size=40),
            "count": rng.integers(0, 5, 40),
        }
    )
    frame.loc[3, "size"] = np.nan
    target = frame["count"] * 2.0 + (frame["color"] == "red")
    model = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), ["color"]),
            (SimpleImputer(), ["size"]),
            remainder="passthrough",
        ),
        LinearRegression(),
    ).fit(frame, target)
    path = tmp_path_factory.mktemp("bundles") / "price"
    modelkit.save(model, path, name="price", version="2.0.0", sample_input=frame)
    return path


def save_pairs(path: Path) -> Path:
    """``pairs``: a graph over the columns ``a`` and ``b`` (a column sample input, so tabular
    inputs) whose output is neither a classifier's nor a regressor's: ``Concat`` -> ``y`` [N, 2]
    (a ``tensor`` task)."""
    pandas = pytest.importorskip("pandas")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Concat", ["a", "b"], ["y"], axis=1)],
        "pairs",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 1]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    sample = pandas.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}, dtype=np.float32)
    modelkit.save(model, path, name="pairs", version="1.0.0", sample_input=sample)
    return path


@pytest.fixture(scope="module")
def registry(
    iris_bundle: Path, price_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[modelkit.Registry]:
    root = tmp_path_factory.mktemp("graphs")
    models = {
        "iris": str(iris_bundle),
        "price": str(price_bundle),
        "rows": str(save_rows(root / "rows")),
        "zeros": str(save_zeros(root / "zeros")),
        "pairs": str(save_pairs(root / "pairs")),
    }
    with modelkit.Registry.from_config({"models": models}) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def oip(registry: modelkit.Registry) -> OpenInference:
    service = Service(
        registry, max_batch_size=10, max_body_size=64 * 1024, max_response_size=64 * 1024
    )
    return OpenInference(service)


def send(
    oip: OpenInference,
    path: str,
    body: Any = None,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> Reply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    given_headers = {k.lower(): v for k, v in (headers or {}).items()}

    def read() -> bytes | Reply:
        return oip.service.read_body(_Reader(raw).read, len(raw))

    return oip.handle(method, path, lambda name: given_headers.get(name.lower()), read)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._at + size
        chunk = self._data[self._at : end]
        self._at += len(chunk)
        return chunk


def binary_request(
    inputs: list[tuple[str, str, list[int], bytes]], **document: Any
) -> tuple[bytes, dict[str, str]]:
    """A body with every input as binary data after the JSON part, and its header."""
    document["inputs"] = [
        {"name": n, "datatype": d, "shape": s, "parameters": {"binary_data_size": len(b)}}
        for n, d, s, b in inputs
    ]
    text = json.dumps(document).encode()
    return text + b"".join(b for *_, b in inputs), {INFERENCE_HEADER: str(len(text))}


def decoded(reply: Reply) -> Any:
    """The answer as tritonclient reads it."""
    assert reply.status == 200, reply.body
    length = dict(reply.headers).get(INFERENCE_HEADER)
    return tritonclient_http.InferResult.from_response_body(
        reply.to_bytes(), header_length=None if length is None else int(length)
    )


def iris_inputs(rows: np.ndarray, datatype: str = "FP64") -> list[dict[str, Any]]:
    return [
        {"name": name, "datatype": datatype, "shape": [len(rows)], "data": rows[:, j].tolist()}
        for j, name in enumerate(IRIS)
    ]


ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [5.9, 3.0, 5.1, 1.8], [6.7, 3.1, 4.7, 1.5]])


# -- routes and metadata ------------------------------------------------------------------------


def test_server_metadata_health_and_readiness(registry: modelkit.Registry) -> None:
    loaded = False
    oip = OpenInference(Service(registry), is_ready=lambda: loaded)
    assert send(oip, "/v2", method="GET").body["extensions"] == ["binary_tensor_data"]
    assert (send(oip, "/v2/health/live", method="GET").status, loaded) == (200, False)
    not_ready = send(oip, "/v2/health/ready", method="GET")
    assert (not_ready.status, not_ready.has_body) == (400, False)
    assert send(oip, "/v2/models/iris/ready", method="GET").status == 400
    loading = send(oip, "/v2/models/iris", method="GET")
    assert (loading.status, loading.headers) == (503, (("Retry-After", "1"),))
    loaded = True
    assert send(oip, "/v2/health/ready", method="GET").status == 200
    assert send(oip, "/v2/models/iris/versions/1.0.0/ready", method="GET").status == 200


def test_model_metadata_of_each_kind(oip: OpenInference) -> None:
    iris = send(oip, "/v2/models/iris/versions/1.0.0", method="GET").body
    assert iris["platform"] == "modelkit_joblib"
    assert iris["outputs"][0] == {"name": "label", "datatype": "INT64", "shape": [-1]}
    assert iris["outputs"][1]["parameters"] == {"classes": "[0,1,2]"}
    price = send(oip, "/v2/models/price", method="GET").body
    assert price["inputs"] == [
        {"name": "color", "datatype": "BYTES", "shape": [-1]},
        {"name": "size", "datatype": "FP64", "shape": [-1]},
        {"name": "count", "datatype": "INT64", "shape": [-1]},
    ]
    assert price["outputs"] == [{"name": "value", "datatype": "FP64", "shape": [-1]}]
    rows = send(oip, "/v2/models/rows", method="GET").body
    assert (rows["platform"], rows["inputs"]) == (
        "onnx_onnxv1",
        [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
    )


def test_a_canarys_version_is_served_by_its_own_url(
    iris_bundle: Path, iris_classifier: Any, iris: tuple[Any, Any], tmp_path: Path
) -> None:
    canary = tmp_path / "iris-1.1.0"
    modelkit.save(iris_classifier, canary, name="iris", version="1.1.0", sample_input=iris[0])
    with modelkit.Registry() as registry:
        registry.add("iris", iris_bundle)
        registry.set_canary("iris", canary, weight=0.0)
        oip = OpenInference(Service(registry))
        assert send(oip, "/v2/models/iris", method="GET").body["versions"] == ["1.0.0", "1.1.0"]
        body = {"inputs": iris_inputs(ROWS)}
        answer = send(oip, "/v2/models/iris/versions/1.1.0/infer", body).body
        assert answer["model_version"] == "1.1.0"
        assert send(oip, "/v2/models/iris/versions/1.1.0/ready", method="GET").status == 200
        missing = send(oip, "/v2/models/iris/versions/2.0.0/infer", body)
        assert (missing.status, missing.body["error"]) == (
            404,
            "Model 'iris' has no version '2.0.0' (versions: ['1.0.0', '1.1.0']).",
        )
        registry.clear_canary("iris")
        assert send(oip, "/v2/models/iris/versions/1.1.0", method="GET").status == 404


def test_outputs_are_those_of_the_version_that_answers(
    iris_bundle: Path, iris: tuple[Any, Any], tmp_path: Path
) -> None:
    from sklearn.svm import LinearSVC

    # A canary of other outputs: text labels, and no probabilities.
    X, y = iris
    species = y.map({0: "setosa", 1: "versicolor", 2: "virginica"})
    canary = tmp_path / "iris-2.0.0"
    modelkit.save(LinearSVC().fit(X, species), canary, name="iris", version="2.0.0", sample_input=X)
    body = {"inputs": iris_inputs(ROWS)}
    probabilities = {**body, "outputs": [{"name": "probabilities"}]}
    with modelkit.Registry() as registry:
        registry.add("iris", iris_bundle)
        registry.set_canary("iris", canary, weight=1.0)  # the canary answers every call
        oip = OpenInference(Service(registry))
        labels = decoded(send(oip, "/v2/models/iris/infer", body))
        assert labels.get_output("label")["datatype"] == "BYTES"
        assert set(labels.as_numpy("label").tolist()) <= {"setosa", "versicolor", "virginica"}
        assert labels.get_output("probabilities") is None
        refused = send(oip, "/v2/models/iris/infer", probabilities)
        assert refused.status == 400  # not a 500 on the primary's output name
        assert refused.body["error"] == (
            "No output named 'probabilities'; the outputs of the version the route chose are "
            "['label']."
        )
        pinned = send(oip, "/v2/models/iris/versions/2.0.0/infer", probabilities)
        assert (pinned.status, pinned.body["error"]) == (
            400,
            "No output named 'probabilities'; the outputs are ['label'].",
        )
        primary = decoded(send(oip, "/v2/models/iris/versions/1.0.0/infer", probabilities))
        assert primary.as_numpy("probabilities").shape == (3, 3)
    with modelkit.Registry() as registry:  # the other way round: the canary's own outputs
        registry.add("iris", canary)
        registry.set_canary("iris", iris_bundle, weight=0.0)
        oip = OpenInference(Service(registry))
        pinned = decoded(send(oip, "/v2/models/iris/versions/1.0.0/infer", probabilities))
        assert pinned.as_numpy("probabilities").shape == (3, 3)
        assert decoded(send(oip, "/v2/models/iris/infer", body)).as_numpy("label").dtype == object


@pytest.mark.parametrize(
    ("method", "path", "status", "words"),
    [
        ("GET", "/v2/models/nope", 404, "No model named 'nope'"),
        ("GET", "/v2/models/iris/versions/9", 404, "has no version '9'"),
        ("POST", "/v2/models/iris/versions/9/infer", 404, "versions: ['1.0.0']"),
        ("GET", "/v2/models/iris/explain", 404, "No endpoint at /v2/models/iris/explain"),
        ("GET", "/v2/models", 404, "No endpoint"),
        ("POST", "/v2/models/iris", 405, "takes GET, HEAD, not POST"),
        ("DELETE", "/v2/health/live", 405, "not DELETE"),
    ],
)
def test_wrong_urls_and_methods(
    oip: OpenInference, method: str, path: str, status: int, words: str
) -> None:
    reply = send(oip, path, {}, method=method)
    assert reply.status == status
    assert words in reply.body["error"]


def test_options_answers_the_allowed_methods(oip: OpenInference) -> None:
    reply = send(oip, "/v2/models/iris/infer", method="OPTIONS")
    assert (reply.status, reply.has_body, reply.headers) == (
        204,
        False,
        (("Allow", "POST, OPTIONS"),),
    )


# -- inference ----------------------------------------------------------------------------------


def test_json_inference_matches_predict_batch(
    oip: OpenInference, registry: modelkit.Registry
) -> None:
    reply = send(oip, "/v2/models/iris/infer", {"id": "a", "inputs": iris_inputs(ROWS)})
    expected = registry["iris"].predict_batch([dict(zip(IRIS, r, strict=True)) for r in ROWS])
    result = decoded(reply)
    assert result.get_response()["id"] == "a"
    assert "model_version" not in result.get_response()  # a canary may answer: not pinned
    assert result.as_numpy("label").tolist() == expected["label"].tolist()
    np.testing.assert_array_equal(result.as_numpy("probabilities"), expected["probabilities"])
    # [N, 1] columns and FP32 data are the same rows.
    columns = [{**i, "shape": [3, 1]} for i in iris_inputs(ROWS.astype(np.float32), "FP32")]
    again = decoded(send(oip, "/v2/models/iris/infer", {"inputs": columns}))
    assert again.as_numpy("label").tolist() == expected["label"].tolist()


def test_binary_both_ways_and_outputs_chosen(oip: OpenInference) -> None:
    inputs = [(n, "FP64", [3], ROWS[:, j].tobytes()) for j, n in enumerate(IRIS)]
    body, headers = binary_request(
        inputs, outputs=[{"name": "probabilities", "parameters": {"binary_data": True}}]
    )
    reply = send(oip, "/v2/models/iris/versions/1.0.0/infer", body, headers=headers)
    assert reply.content_type == "application/octet-stream"
    result = decoded(reply)
    answer = result.get_response()
    assert answer["model_version"] == "1.0.0"
    assert [o["name"] for o in answer["outputs"]] == ["probabilities"]
    assert answer["outputs"][0]["parameters"]["binary_data_size"] == 3 * 3 * 8
    json_answer = decoded(send(oip, "/v2/models/iris/infer", {"inputs": iris_inputs(ROWS)}))
    np.testing.assert_array_equal(
        result.as_numpy("probabilities"), json_answer.as_numpy("probabilities")
    )
    # binary_data_output for all outputs, overridden by one output's binary_data.
    body, headers = binary_request(
        inputs,
        parameters={"binary_data_output": True},
        outputs=[
            {"name": "label", "parameters": {"binary_data": False}},
            {"name": "probabilities"},
        ],
    )
    answer = decoded(send(oip, "/v2/models/iris/infer", body, headers=headers)).get_response()
    assert "data" in answer["outputs"][0]
    assert "binary_data_size" in answer["outputs"][1]["parameters"]


def test_bytes_columns_and_missing_values(oip: OpenInference, registry: modelkit.Registry) -> None:
    colors = np.array(["red", "blue", "red"], dtype=object)
    sizes = np.array([0.5, np.nan, -1.0])  # NaN: missing, in binary FP64
    body, headers = binary_request(
        [
            ("color", "BYTES", [3], serialize_byte_tensor(colors).item()),
            ("size", "FP64", [3], sizes.tobytes()),
            ("count", "INT64", [3], np.array([1, 2, 3], np.int64).tobytes()),
        ]
    )
    values = decoded(send(oip, "/v2/models/price/infer", body, headers=headers)).as_numpy("value")
    records = [
        {"color": "red", "size": 0.5, "count": 1},
        {"color": "blue", "size": None, "count": 2},
        {"color": "red", "size": -1.0, "count": 3},
    ]
    expected = registry["price"].predict_batch(records)["value"]
    np.testing.assert_allclose(values, expected)
    # JSON null is a missing value in any datatype, BYTES included.
    inputs = [
        {"name": "color", "datatype": "BYTES", "shape": [3], "data": ["red", None, "red"]},
        {"name": "size", "datatype": "FP64", "shape": [3], "data": [0.5, None, -1.0]},
        {"name": "count", "datatype": "INT64", "shape": [3], "data": [1, 2, 3]},
    ]
    reply = send(oip, "/v2/models/price/infer", {"inputs": inputs})
    records[1]["color"] = None
    expected = registry["price"].predict_batch(records)["value"]
    np.testing.assert_allclose(decoded(reply).as_numpy("value"), expected)
    # A column that takes no missing values names the field and the row.
    inputs[2]["data"] = [1, None, 3]
    refused = send(oip, "/v2/models/price/infer", {"inputs": inputs})
    assert refused.status == 400
    assert refused.body["error"].startswith("row 1: field 'count'")
    assert "missing" in refused.body["error"]


def test_tensor_models_take_and_give_their_graphs_tensors(oip: OpenInference) -> None:
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    body, headers = binary_request([("x", "FP32", [3, 2], x.tobytes())])
    result = decoded(send(oip, "/v2/models/rows/infer", body, headers=headers))
    np.testing.assert_array_equal(result.as_numpy("y"), x)
    nested = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3, 2], "data": x.tolist()}]}
    answer = send(oip, "/v2/models/rows/infer", nested).body
    assert answer["outputs"] == [
        {"name": "y", "datatype": "FP32", "shape": [3, 2], "data": x.reshape(-1).tolist()}
    ]
    wrong = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [0.0] * 6}]}
    reply = send(oip, "/v2/models/rows/infer", wrong)
    assert (reply.status, reply.body) == (
        400,
        {"error": "input 'x' expects shape float32[N, 2], got [2, 3]."},
    )


def test_a_tabular_model_of_the_tensor_task_gives_its_graphs_outputs(oip: OpenInference) -> None:
    metadata = send(oip, "/v2/models/pairs", method="GET").body
    assert metadata["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]
    inputs = [
        {"name": "a", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]},
        {"name": "b", "datatype": "FP64", "shape": [2, 1], "data": [[3.0], [4.0]]},
    ]
    answer = send(oip, "/v2/models/pairs/infer", {"inputs": inputs}).body
    assert answer["outputs"] == [
        {"name": "y", "datatype": "FP32", "shape": [2, 2], "data": [1.0, 3.0, 2.0, 4.0]}
    ]
    binary = {"inputs": inputs, "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}
    result = decoded(send(oip, "/v2/models/pairs/infer", binary))
    np.testing.assert_array_equal(result.as_numpy("y"), [[1.0, 3.0], [2.0, 4.0]])


# -- limits -------------------------------------------------------------------------------------


def test_the_limits_hold_before_work_is_done(oip: OpenInference) -> None:
    many = np.ones((11, 4))
    reply = send(oip, "/v2/models/iris/infer", {"inputs": iris_inputs(many)})
    assert (reply.status, reply.body["error"]) == (
        413,
        "The request holds 11 rows; this endpoint takes at most 10.",
    )
    rows = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [11, 2], "data": [0.0] * 22}]}
    assert send(oip, "/v2/models/rows/infer", rows).status == 413
    large = send(oip, "/v2/models/iris/infer", b"{" + b" " * 70_000 + b"}")
    assert large.status == 413
    assert "65536 bytes" in large.body["error"]
    # A few bytes that ask for an answer of 40 MB: 500, before the answer is built.
    zeros = {"inputs": [{"name": "shape", "datatype": "INT64", "shape": [1], "data": [10**7]}]}
    too_large = send(oip, "/v2/models/zeros/infer", zeros)
    assert too_large.status == 500
    assert "larger than the 65536 bytes" in too_large.body["error"]


# -- hostile requests ---------------------------------------------------------------------------


def _iris_binary() -> tuple[bytes, dict[str, str]]:
    return binary_request([(n, "FP64", [3], ROWS[:, j].tobytes()) for j, n in enumerate(IRIS)])


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ("-5", "must be the length in bytes"),
        ("+5", "must be the length in bytes"),
        ("12abc", "must be the length in bytes"),
        ("\u00b2", "must be the length in bytes"),  # "²".isdigit() is true; int() refuses it
        ("\u0663", "must be the length in bytes"),  # an Arabic-Indic 3, which int() reads
        ("1" * 20, "must be the length in bytes"),
        ("1" * 5000, "must be the length in bytes"),  # int() refuses more than 4300 digits
        ("999999999", "the whole body is"),
        ("10", "not valid JSON"),
    ],
)
def test_bad_header_lengths(oip: OpenInference, header: str, words: str) -> None:
    body, _ = _iris_binary()
    reply = send(oip, "/v2/models/iris/infer", body, headers={INFERENCE_HEADER: header})
    assert reply.status == 400
    assert words in reply.body["error"]


def test_truncated_and_oversized_binary_data(oip: OpenInference) -> None:
    body, headers = _iris_binary()
    cut = send(oip, "/v2/models/iris/infer", body[:-1], headers=headers)
    assert cut.status == 400
    assert "declares 24 bytes of binary data, but the body ends 23 bytes" in cut.body["error"]
    extra = send(oip, "/v2/models/iris/infer", body + b"x", headers=headers)
    assert "1 bytes after the binary data" in extra.body["error"]
    huge = binary_request([("x", "FP32", [2**40, 2], b"")])[0]
    document = json.loads(huge)
    document["inputs"][0]["parameters"]["binary_data_size"] = 2**62
    text = json.dumps(document).encode()
    reply = send(oip, "/v2/models/rows/infer", text, headers={INFERENCE_HEADER: str(len(text))})
    assert (reply.status, "declares 4611686018427387904 bytes" in reply.body["error"]) == (
        400,
        True,
    )


@pytest.mark.parametrize("shape", [[0, 10**30], [0, 2**62], [2**31, 2**31, 0], [0, -1]])
@pytest.mark.parametrize("binary", [True, False])
def test_a_shape_numpy_cannot_make_is_400_on_both_paths(
    oip: OpenInference, shape: list[int], binary: bool
) -> None:
    item: dict[str, Any] = {"name": "x", "datatype": "FP32", "shape": shape}
    item.update({"parameters": {"binary_data_size": 0}} if binary else {"data": []})
    text = json.dumps({"inputs": [item]}).encode()
    headers = {INFERENCE_HEADER: str(len(text))} if binary else {}
    reply = send(oip, "/v2/models/rows/infer", text, headers=headers)
    assert reply.status == 400, reply.body
    assert "Input 'x' needs a shape" in reply.body["error"]


def test_decoding_a_shape_numpy_cannot_make_is_a_bad_request() -> None:
    from modelkit._oip import _BadRequestError, _decode, _Input

    for item in (_Input("x", "FP32", (0, 2**62), raw=b""), _Input("x", "FP32", (0, 2**62), [])):
        with pytest.raises(_BadRequestError, match="too big"):
            _decode(item, missing_ok=False)


def test_more_inputs_than_the_model_has_are_refused_before_any_is_read(
    registry: modelkit.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = []
    checked = modelkit._oip._input
    monkeypatch.setattr(modelkit._oip, "_input", lambda *a: read.append(a) or checked(*a))
    oip = OpenInference(Service(registry, max_body_size=None))
    tiny = {"name": "x", "datatype": "FP32", "shape": [0], "data": []}
    reply = send(oip, "/v2/models/rows/infer", {"inputs": [tiny] * 40_000})
    assert (reply.status, reply.body["error"]) == (
        400,
        "The request has 40000 inputs; the model takes 1: ['x'].",
    )
    assert read == []
    # As many as the model has, one given twice: refused as soon as it comes again.
    inputs = iris_inputs(ROWS)
    inputs[3] = inputs[0]
    reply = send(oip, "/v2/models/iris/infer", {"inputs": inputs})
    assert (reply.status, reply.body["error"]) == (
        400,
        "Input 'sepal length (cm)' is given more than once.",
    )
    assert len(read) == 4


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ({"datatype": "FP128", "shape": [3], "data": [1, 2, 3]}, "has datatype 'FP128'"),
        ({"datatype": "FP64", "shape": [3, -1], "data": [1, 2, 3]}, "needs a shape"),
        ({"datatype": "FP64", "shape": [True], "data": [1]}, "needs a shape"),
        (
            {"datatype": "FP64", "shape": [3], "data": [1, 2, 3, 4]},
            "has 3 elements, but its data holds 4",
        ),
        ({"datatype": "FP64", "shape": [3], "data": 1.0}, '"data" must be a list'),
        ({"datatype": "FP64", "shape": [3], "data": [1, "x", 3]}, 'element 1 is "x"'),
        ({"datatype": "FP64", "shape": [3], "data": [1, True, 3]}, "element 1 is true"),
        ({"datatype": "INT8", "shape": [3], "data": [1, 300, 3]}, "300 is out of range"),
        ({"datatype": "INT64", "shape": [3], "data": [1, 2**70, 3]}, "out of range"),
        ({"datatype": "FP32", "shape": [3], "data": [1, 1e300, 3]}, "out of range"),
        ({"datatype": "FP64", "shape": [3]}, 'neither "data" nor a binary_data_size'),
        (
            {"datatype": "FP64", "shape": [3, 2], "data": [1] * 6},
            "a column's shape is [N] or [N, 1]",
        ),
    ],
)
def test_malformed_inputs_are_400_naming_the_input(
    oip: OpenInference, item: dict[str, Any], words: str
) -> None:
    inputs = iris_inputs(ROWS)
    inputs[0] = {"name": IRIS[0], **item}
    reply = send(oip, "/v2/models/iris/infer", {"inputs": inputs})
    assert reply.status == 400, reply.body
    assert words in reply.body["error"]


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ([], "Expected an inference request object"),
        ({"inputs": []}, '"inputs" must be a non-empty list'),
        ({"id": 5, "inputs": iris_inputs(ROWS)}, '"id" must be a string'),
        ({"parameters": [], "inputs": iris_inputs(ROWS)}, '"parameters" of the request'),
        ({"inputs": iris_inputs(ROWS)[:3]}, "Missing input(s) ['petal width (cm)']"),
        (
            {"inputs": [*iris_inputs(ROWS)[:3], {**iris_inputs(ROWS)[0], "name": "x"}]},
            "unknown input(s) ['x']",
        ),
        ({"inputs": [*iris_inputs(ROWS), iris_inputs(ROWS)[0]]}, "has 5 inputs"),
        ({"inputs": [*iris_inputs(ROWS)[:3], iris_inputs(ROWS)[0]]}, "more than once"),
        ({"inputs": iris_inputs(ROWS), "outputs": [{"name": "score"}]}, "No output named 'score'"),
        (
            {"inputs": iris_inputs(ROWS), "outputs": [{"name": "label"}, {"name": "label"}]},
            "Output 'label' is asked for more than once.",
        ),
        (
            {
                "inputs": iris_inputs(ROWS),
                "outputs": [{"name": "label", "parameters": {"binary_data": 1}}],
            },
            "true or false",
        ),
    ],
)
def test_malformed_requests_are_400(oip: OpenInference, document: Any, words: str) -> None:
    reply = send(oip, "/v2/models/iris/infer", document)
    assert reply.status == 400, reply.body
    assert words in reply.body["error"]


def test_different_row_counts_and_nulls_in_tensors(oip: OpenInference) -> None:
    inputs = iris_inputs(ROWS)
    inputs[1] = iris_inputs(ROWS[:2])[1]
    reply = send(oip, "/v2/models/iris/infer", {"inputs": inputs})
    assert "different numbers of rows" in reply.body["error"]
    nulls = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, None]}]}
    reply = send(oip, "/v2/models/rows/infer", nulls)
    assert (reply.status, "element 1 is null" in reply.body["error"]) == (400, True)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (struct.pack("<I", 5) + b"red", "declares 5 bytes"),
        (struct.pack("<I", 3) + b"red", "ends after 1 of 2 elements"),
        (struct.pack("<I", 2) + b"\xff\xfe" + struct.pack("<I", 0), "element 0 is not UTF-8"),
        (struct.pack("<I", 0) * 3, "holds 4 bytes after its 2 elements"),
    ],
)
def test_malformed_bytes_elements(oip: OpenInference, raw: bytes, words: str) -> None:
    body, headers = binary_request(
        [
            ("color", "BYTES", [2], raw),
            ("size", "FP64", [2], np.zeros(2).tobytes()),
            ("count", "INT64", [2], np.zeros(2, np.int64).tobytes()),
        ]
    )
    reply = send(oip, "/v2/models/price/infer", body, headers=headers)
    assert reply.status == 400
    assert words in reply.body["error"]


def test_a_bool_byte_other_than_0_or_1_is_refused(oip: OpenInference) -> None:
    body, headers = binary_request([("x", "BOOL", [1, 2], b"\x00\x02")])
    reply = send(oip, "/v2/models/rows/infer", body, headers=headers)
    assert "a BOOL element is one byte, 0 or 1" in reply.body["error"]


_HEADERS = st.one_of(
    st.none(),
    st.integers(-10, 400).map(str),
    st.text(max_size=30),
    # Digits of every script (int() reads some, refuses others), and numbers of any length.
    st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=6),
    st.integers(0, 6000).map(lambda digits: "7" * digits),
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=300), header=_HEADERS)
def test_any_bytes_get_a_4xx_never_a_500(
    oip: OpenInference, body: bytes, header: str | None
) -> None:
    headers = {} if header is None else {INFERENCE_HEADER: header}
    for path in ("/v2/models/iris/infer", "/v2/models/rows/infer", "/v2/models/price/infer"):
        reply = send(oip, path, body, headers=headers)
        assert 400 <= reply.status < 500, reply.body
        assert isinstance(reply.body["error"], str)


_JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=3)
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    datatype=st.sampled_from(sorted(DATATYPES)),
    shape=st.lists(st.integers(0, 4), max_size=3),
    data=st.recursive(
        st.lists(_JSON_VALUES, max_size=6), lambda inner: st.lists(inner, max_size=3)
    ),
)
def test_any_tensor_json_gets_an_answer_never_a_500(
    oip: OpenInference, datatype: str, shape: list[int], data: Any
) -> None:
    request = {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]}
    reply = send(oip, "/v2/models/rows/infer", request)
    assert reply.status in (200, 400), reply.body
    if reply.status == 400:
        assert isinstance(reply.body["error"], str)
        assert "Traceback" not in reply.body["error"]


# -- the codec ----------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    datatype=st.sampled_from(sorted(set(DATATYPES) - {"BYTES"})),
    shape=st.lists(st.integers(0, 3), min_size=1, max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_binary_data_round_trips_every_datatype(datatype: str, shape: list[int], seed: int) -> None:
    from modelkit._oip import _decode, _Input, _pack

    rng = np.random.default_rng(seed)
    dtype = DATATYPES[datatype]
    count = math.prod(shape)
    if dtype.kind == "b":
        array = rng.integers(0, 2, count).astype(bool)
    elif dtype.kind == "f":
        array = rng.normal(size=count).astype(dtype)
    else:
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, count, dtype=dtype, endpoint=True)
    raw = _pack(array, datatype)
    assert raw == array.astype(dtype).tobytes()
    back = _decode(_Input("x", datatype, tuple(shape), raw=raw), missing_ok=False)
    np.testing.assert_array_equal(back, array.reshape(shape))


@given(st.lists(st.text(max_size=8), max_size=6))
def test_bytes_elements_round_trip(texts: list[str]) -> None:
    from modelkit._oip import _decode, _Input, _pack

    array = np.array(texts, dtype=object)
    raw = _pack(array, "BYTES")
    assert raw == (serialize_byte_tensor(array).item() if texts else b"")
    back = _decode(_Input("s", "BYTES", (len(texts),), raw=raw), missing_ok=False)
    assert back.tolist() == texts
