"""The same Open Inference Protocol requests, made with a real client (``tritonclient.http``),
against any server that serves the examples' iris model (``modelkit serve``, Flask, Django).

A plain module, not a conftest: the tests import what they use.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

import numpy as np
import pytest

tritonclient_http = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402 - after the skip

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
CLASSES = ["setosa", "versicolor", "virginica"]
ROWS = np.array(
    [[5.1, 3.5, 1.4, 0.2], [5.9, 3.0, 5.1, 1.8], [6.0, 2.2, 4.0, 1.0], [6.7, 3.1, 4.7, 1.5]]
)


def _inputs(rows: np.ndarray, *, binary: bool) -> list[Any]:
    inputs = []
    for j, name in enumerate(FEATURES):
        tensor = tritonclient_http.InferInput(name, [len(rows)], "FP64")
        tensor.set_data_from_numpy(np.ascontiguousarray(rows[:, j]), binary_data=binary)
        inputs.append(tensor)
    return inputs


def _json_predictions(port: int, rows: np.ndarray) -> list[dict[str, Any]]:
    """What the JSON endpoint answers for the same rows."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        records = [dict(zip(FEATURES, row, strict=True)) for row in rows.tolist()]
        connection.request(
            "POST",
            "/models/iris/predict",
            body=json.dumps({"instances": records}),
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        assert response.status == 200
        predictions: list[dict[str, Any]] = json.loads(response.read())["predictions"]
        return predictions
    finally:
        connection.close()


def exercise(port: int, *, version: str = "1.0.0") -> None:
    """Health, metadata, inference in binary and in JSON, and the errors, with tritonclient."""
    client = tritonclient_http.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
        assert client.is_model_ready("iris")
        assert client.is_model_ready("iris", version)
        assert not client.is_model_ready("iris", "0.0.0")
        assert not client.is_model_ready("missing")

        metadata = client.get_model_metadata("iris")
        assert metadata["name"] == "iris"
        assert metadata["versions"] == [version]
        assert metadata["platform"] == "onnx_onnxv1"
        assert metadata["inputs"] == [
            {"name": name, "datatype": "FP64", "shape": [-1]} for name in FEATURES
        ]
        assert metadata["outputs"] == [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {
                "name": "probabilities",
                "datatype": "FP64",
                "shape": [-1, 3],
                "parameters": {"classes": json.dumps(CLASSES, separators=(",", ":"))},
            },
        ]

        expected = _json_predictions(port, ROWS)
        labels = [p["label"] for p in expected]
        probabilities = np.array([[p["probabilities"][c] for c in CLASSES] for p in expected])

        # The client's defaults: binary inputs, every output as binary data.
        result = client.infer("iris", _inputs(ROWS, binary=True), request_id="42")
        answer = result.get_response()
        assert answer["id"] == "42"
        assert answer["model_name"] == "iris"
        assert "data" not in answer["outputs"][0]
        assert [label.decode() for label in result.as_numpy("label")] == labels
        np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=1e-12)
        assert json.loads(result.get_output("probabilities")["parameters"]["classes"]) == CLASSES

        # JSON only, on both sides, and a pinned version.
        outputs = [
            tritonclient_http.InferRequestedOutput("label", binary_data=False),
            tritonclient_http.InferRequestedOutput("probabilities", binary_data=False),
        ]
        result = client.infer(
            "iris", _inputs(ROWS, binary=False), outputs=outputs, model_version=version
        )
        answer = result.get_response()
        assert answer["model_version"] == version
        assert answer["outputs"][0]["data"] == labels
        np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=1e-12)

        # One output asked for, in binary; the inputs mixed (FP32 binary, FP64 JSON).
        mixed = _inputs(ROWS, binary=False)
        mixed[0] = tritonclient_http.InferInput(FEATURES[0], [len(ROWS), 1], "FP32")
        mixed[0].set_data_from_numpy(ROWS[:, :1].astype(np.float32))
        only = [tritonclient_http.InferRequestedOutput("label")]
        result = client.infer("iris", mixed, outputs=only)
        assert [o["name"] for o in result.get_response()["outputs"]] == ["label"]
        assert [label.decode() for label in result.as_numpy("label")] == labels

        # Errors: the protocol's {"error": "..."} and status, the field and row named.
        bad = ROWS.copy()
        bad[2, 3] = np.nan  # the iris model takes no missing values
        with pytest.raises(InferenceServerException) as caught:
            client.infer("iris", _inputs(bad, binary=True))
        assert caught.value.status() == "400"
        assert "row 2" in caught.value.message()
        assert "petal_width" in caught.value.message()
        with pytest.raises(InferenceServerException) as caught:
            client.infer("missing", _inputs(ROWS, binary=True))
        assert caught.value.status() == "404"
        with pytest.raises(InferenceServerException) as caught:
            client.infer("iris", _inputs(ROWS, binary=True), model_version="0.0.0")
        assert caught.value.status() == "404"
        assert "versions: ['1.0.0']" in caught.value.message()
    finally:
        client.close()
