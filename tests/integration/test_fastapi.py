"""modelkit.fastapi: the router next to the Flask extension on test clients, and on uvicorn.

The same requests go to a Flask app (``ModelKit``) and to a FastAPI app (``router``) over the same
bundle and limits, and must get the same status, headers and body. The example
(``examples/fastapi_app``) and the hostile graphs of :mod:`tests.serving_fixtures` are served by
uvicorn on 127.0.0.1 and called over HTTP with the standard library.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http.client
import importlib.util
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import modelkit

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
flask = pytest.importorskip("flask")
httpx = pytest.importorskip("httpx")

import numpy as np  # noqa: E402 - after the skips
import pydantic  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402

import modelkit.fastapi  # noqa: E402
from modelkit.flask import ModelKit  # noqa: E402
from tests.otel import Otel  # noqa: E402
from tests.serving_fixtures import (  # noqa: E402
    RUNTIME_INTERNALS,
    post_chunked,
    post_declared,
    request_json,
    save_all,
    uvicorn_server,
)
from tests.warmup_fixtures import Watch, cases_in  # noqa: E402

pytestmark = pytest.mark.integration

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "fastapi_app"
BUNDLE = EXAMPLE_DIR / "bundles" / "iris"
RECORD = {"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 5.1, "petal_width": 1.8}
PREDICT = "/models/iris/predict"
JSON = {"Content-Type": "application/json"}
BODY_LIMIT = 64 * 1024
BATCH_LIMIT = 100


def batching_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("modelkit-batching-")]


def wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def served(app: Any) -> contextlib.AbstractContextManager[int]:
    """``app`` on uvicorn with its lifespan on, on a free port of 127.0.0.1."""
    return uvicorn_server(app, lifespan="on")


def call(
    port: int, method: str, path: str, body: bytes | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request(method, path, body=body, headers=JSON if body is not None else {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


# -- the same answers as Flask ------------------------------------------------------------------


@pytest.fixture(scope="module")
def clients() -> Iterator[tuple[Any, TestClient]]:
    """A Flask test client and a FastAPI one, over the same bundle with the same limits."""
    flask_app = flask.Flask("parity")
    flask_app.config.update(
        MODELKIT_MODELS={"iris": str(BUNDLE)},
        MODELKIT_MAX_BATCH_SIZE=BATCH_LIMIT,
        MODELKIT_MAX_BODY_SIZE=BODY_LIMIT,
    )
    ModelKit(flask_app, url_prefix="/models", oip=True)
    app = fastapi.FastAPI()
    config = {"models": {"iris": str(BUNDLE)}}
    routes = modelkit.fastapi.router(config, max_batch_size=BATCH_LIMIT, max_body_size=BODY_LIMIT)
    app.include_router(routes)
    try:
        with TestClient(app) as client:
            yield flask_app.test_client(), client
    finally:
        flask_app.extensions["modelkit"].close()


def _batch(*records: Any) -> bytes:
    return json.dumps({"instances": list(records)}).encode()


PARITY = [
    pytest.param("GET", "/models", None, id="index"),
    pytest.param("GET", "/models/", None, id="index-slash"),
    pytest.param("GET", "/models/iris", None, id="describe"),
    pytest.param("HEAD", "/models/iris", None, id="head"),
    pytest.param("OPTIONS", "/models/iris", None, id="options"),
    pytest.param("OPTIONS", PREDICT, None, id="options-predict"),
    pytest.param("POST", PREDICT, json.dumps(RECORD).encode(), id="record"),
    pytest.param("POST", PREDICT, _batch(RECORD, {**RECORD, "petal_width": 0.2}), id="batch"),
    pytest.param("POST", PREDICT, b"{not json", id="not-json"),
    pytest.param("POST", PREDICT, b"\xff\xfe\x00", id="not-utf8"),
    pytest.param("POST", PREDICT, b"[1, 2]", id="array"),
    pytest.param("POST", PREDICT, b"", id="empty"),
    pytest.param("POST", PREDICT, b'{"instances": 3}', id="malformed-batch"),
    pytest.param("POST", PREDICT, b'{"instances": [], "x": 1}', id="batch-extra-key"),
    pytest.param("POST", PREDICT, json.dumps({**RECORD, "sepal_length": "x"}).encode(), id="422"),
    pytest.param(
        "POST",
        PREDICT,
        _batch(RECORD, {**RECORD, "petal_width": None}, {**RECORD, "x": 1}),
        id="422-batch",
    ),
    pytest.param("POST", PREDICT, _batch(*[RECORD] * (BATCH_LIMIT + 1)), id="batch-over-limit"),
    pytest.param("POST", PREDICT, b" " * (BODY_LIMIT + 1), id="body-over-limit"),
    pytest.param("POST", "/models/nope/predict", b"{}", id="unknown-model"),
    pytest.param("GET", "/models/nope", None, id="unknown-description"),
    pytest.param("GET", "/models/iris/nothing/here", None, id="no-endpoint"),
    pytest.param("GET", PREDICT, None, id="get-predict"),
    pytest.param("PUT", PREDICT, b"{}", id="put-predict"),
    pytest.param("DELETE", "/models", None, id="delete-index"),
    pytest.param("POST", "/models/iris", b"{}", id="post-describe"),
    # The Open Inference Protocol: the same answers for the same URLs, trailing slashes too.
    pytest.param("GET", "/v2", None, id="v2"),
    pytest.param("GET", "/v2/", None, id="v2-slash"),
    pytest.param("GET", "/v2/models/iris", None, id="v2-model"),
    pytest.param("GET", "/v2/models/iris/", None, id="v2-model-slash"),
    pytest.param("GET", "/v2/models/iris/ready/", None, id="v2-ready-slash"),
    pytest.param("GET", "/v2/health/ready/", None, id="v2-health-slash"),
    pytest.param("POST", "/v2/models/iris/infer/", b"{}", id="v2-infer-slash"),
    pytest.param("POST", "/v2/health/live", b"{}", id="v2-post-live"),
    pytest.param("POST", "/v2/models/iris/infer", b"{}", id="v2-infer-no-inputs"),
]


@pytest.mark.parametrize(("method", "path", "body"), PARITY)
def test_answers_are_those_of_the_flask_extension(
    clients: tuple[Any, TestClient], method: str, path: str, body: bytes | None
) -> None:
    flask_client, client = clients
    headers = JSON if body is not None else {}
    expected = flask_client.open(path, method=method, data=body, headers=headers)
    got = client.request(method, path, content=body, headers=headers)
    assert got.status_code == expected.status_code, got.text
    assert got.headers.get("Allow") == expected.headers.get("Allow")
    if expected.data:
        assert got.headers["Content-Type"] == expected.headers["Content-Type"]
        assert got.json() == expected.get_json()
    else:  # Flask gives an empty answer a Content-Type of text/html all the same
        assert got.content == b""


def test_routing_key_header_reaches_the_route(tmp_path: Path) -> None:
    import pandas
    from sklearn.dummy import DummyClassifier

    frame = pandas.DataFrame([RECORD] * 4)
    constant = DummyClassifier(strategy="constant", constant="setosa").fit(frame, ["setosa"] * 4)
    modelkit.save(constant, tmp_path / "canary", name="iris", version="2", sample_input=frame)
    config = {
        "models": {
            "iris": {
                "path": str(BUNDLE),
                "canary": {"path": str(tmp_path / "canary"), "weight": 0.5},
            }
        }
    }
    app = fastapi.FastAPI()
    app.include_router(modelkit.fastapi.router(config))
    with TestClient(app) as client:

        def label(key: str) -> str:
            response = client.post(PREDICT, json=RECORD, headers={"X-Modelkit-Key": key})
            assert response.status_code == 200
            return str(response.json()["label"])

        labels = {key: label(key) for key in map(str, range(40))}
        assert set(labels.values()) == {"setosa", "virginica"}
        assert {key: label(key) for key in labels} == labels


# -- the OpenAPI document -----------------------------------------------------------------------


def test_each_model_has_its_schemas_in_the_openapi_document(
    clients: tuple[Any, TestClient],
) -> None:
    _, client = clients
    document = client.app.openapi()  # type: ignore[attr-defined]
    operation = document["paths"][PREDICT]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    record, batch = schema["anyOf"]
    assert set(record["properties"]) == set(RECORD)
    assert record["properties"]["sepal_length"]["type"] == "number"
    assert batch["properties"]["instances"]["items"] == record
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["anyOf"][0]["properties"]["label"]["enum"] == [
        "setosa",
        "versicolor",
        "virginica",
    ]
    assert set(operation["responses"]) == {"200", "400", "404", "413", "422", "500"}
    error = operation["responses"]["422"]["content"]["application/json"]["schema"]
    assert error["required"] == ["error"]
    # modelkit's error shape only: FastAPI's own validation error is never answered.
    assert "HTTPValidationError" not in json.dumps(document)
    # The framework-neutral document's paths and operations, and nothing of the hidden routes.
    json_paths = {path for path in document["paths"] if not path.startswith("/v2")}
    assert json_paths == {"/models", "/models/iris", PREDICT}
    assert operation["operationId"] == "predict_iris"


def test_the_open_inference_operations_are_in_the_openapi_document(
    clients: tuple[Any, TestClient],
) -> None:
    import schemathesis

    _, client = clients
    document = client.app.openapi()  # type: ignore[attr-defined]
    schemathesis.openapi.from_dict(document).validate()  # OpenAPI 3.1, as FastAPI merged it
    model = "/v2/models/iris"
    v2 = {path: set(item) for path, item in document["paths"].items() if path.startswith("/v2")}
    assert v2 == {
        "/v2": {"get"},
        "/v2/health/live": {"get"},
        "/v2/health/ready": {"get"},
        **{
            f"{model}{version}{action}": {method}
            for version in ("", "/versions/{version}")
            for method, action in (("get", ""), ("get", "/ready"), ("post", "/infer"))
        },
    }
    assert "$ref" not in json.dumps({path: document["paths"][path] for path in v2})
    infer = document["paths"][f"{model}/infer"]["post"]
    assert infer["operationId"] == "v2_infer_iris"
    request = infer["requestBody"]["content"]["application/json"]["schema"]
    inputs = request["properties"]["inputs"]["items"]["anyOf"]
    assert [i["properties"]["name"]["const"] for i in inputs] == list(RECORD)
    assert set(infer["responses"]) == {"200", "400", "404", "413", "500", "503"}
    answer = infer["responses"]["200"]["content"]["application/json"]["schema"]
    outputs = answer["properties"]["outputs"]["items"]["anyOf"]
    assert [o["properties"]["name"]["const"] for o in outputs] == ["label", "probabilities"]
    # The version parameter once (FastAPI adds none of its own), and health answers no body.
    versioned = document["paths"][f"{model}/versions/{{version}}"]["get"]
    assert [p["name"] for p in versioned["parameters"]] == ["version"]
    assert document["paths"]["/v2/health/ready"]["get"]["responses"]["200"] == {
        "description": "Ready (no body)."
    }
    # The documented routes answer as the protocol does, HEAD and other methods included.
    version = client.get(model).json()["versions"][0]
    assert client.get(f"{model}/versions/{version}").json()["name"] == "iris"
    assert client.get(f"{model}/versions/0.0.0").status_code == 404
    assert client.head(model).status_code == 200
    assert client.delete(f"{model}/infer").status_code == 405


def test_the_protocol_answers_beside_endpoints_at_the_root() -> None:
    app = fastapi.FastAPI()
    app.include_router(modelkit.fastapi.router({"models": {"iris": str(BUNDLE)}}, prefix=""))
    with TestClient(app) as client:
        assert client.get("/v2/models/iris").json()["name"] == "iris"
        assert client.get("/iris").json()["name"] == "iris"
        assert "/v2/models/iris/infer" in app.openapi()["paths"]


class Address(pydantic.BaseModel):
    city: str


class Parcel(pydantic.BaseModel):
    destination: Address


class Quote(pydantic.BaseModel):
    price: float


class Shipping(modelkit.Model[Parcel, Quote]):
    """A custom model whose input nests a model: its JSON Schema has ``$defs``."""

    def run_batch(self, inputs: list[Parcel]) -> list[Quote]:
        return [Quote(price=len(parcel.destination.city)) for parcel in inputs]


def test_nested_json_schema_references_are_inlined(tmp_path: Path) -> None:
    assert "$defs" in Parcel.model_json_schema()
    modelkit.save(Shipping(), tmp_path / "shipping", name="shipping", version="1")
    with modelkit.Registry() as registry:
        registry.add("shipping", tmp_path / "shipping")
        app = fastapi.FastAPI()
        app.include_router(modelkit.fastapi.router(registry))
        document = app.openapi()
        response = TestClient(app).post(
            "/models/shipping/predict", json={"destination": {"city": "Lyon"}}
        )
    assert (response.status_code, response.json()) == (200, {"price": 4.0})
    assert "$ref" not in json.dumps(document["paths"])
    body = document["paths"]["/models/shipping/predict"]["post"]["requestBody"]
    single = body["content"]["application/json"]["schema"]["anyOf"][0]
    (record,) = single["allOf"]  # a record of this schema could also hold "instances"
    assert record["properties"]["destination"]["properties"]["city"]["type"] == "string"


# -- the lifespan -------------------------------------------------------------------------------


def test_the_lifespan_closes_a_registry_it_loaded() -> None:
    config = {"models": {"iris": {"path": str(BUNDLE), "batching": {"max_wait_ms": 1}}}}
    app = fastapi.FastAPI()
    app.include_router(modelkit.fastapi.router(config))
    before = set(batching_threads())  # another test's server may be running
    with TestClient(app) as client:
        assert client.post(PREDICT, json=RECORD).json()["label"] == "virginica"
        (worker,) = set(batching_threads()) - before
    wait_until(lambda: not worker.is_alive(), "the batching worker outlived the app")


def test_the_lifespan_of_a_router_included_in_a_router_closes_the_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = modelkit.Registry()
    registry.add("iris", BUNDLE)
    closed: list[bool] = []
    monkeypatch.setattr(registry, "close", lambda: closed.append(True))
    api = fastapi.APIRouter()
    api.include_router(modelkit.fastapi.router(registry, prefix="/iris-models"))
    app = fastapi.FastAPI()
    app.include_router(api, prefix="/api")
    with TestClient(app) as client:
        index = client.get("/api/iris-models").json()
        assert index["models"][0]["url"] == "/api/iris-models/iris"
        assert client.post("/api/iris-models/iris/predict", json=RECORD).status_code == 200
        assert closed == []
    assert closed == [True]


# -- micro-batching under the event loop --------------------------------------------------------


class SlowRegression(LinearRegression):
    """A regression that takes 50 ms a call, so that concurrent calls queue behind each other."""

    def predict(self, X: Any) -> Any:
        time.sleep(0.05)
        return super().predict(X)


def test_concurrent_requests_on_one_event_loop_are_batched(tmp_path: Path) -> None:
    X = np.random.default_rng(0).uniform(0, 100, size=(50, 2))
    regression = SlowRegression().fit(X, X[:, 0] + 1000 * X[:, 1])
    modelkit.save(regression, tmp_path / "sum", name="sum", version="1", sample_input=X[:5])
    otel = Otel()
    registry = modelkit.Registry(meter_provider=otel.meter_provider)
    registry.add("sum", tmp_path / "sum", batching=modelkit.Batching(max_wait_ms=5))
    app = fastapi.FastAPI()
    app.include_router(modelkit.fastapi.router(registry))
    records = [{"x0": float(i), "x1": 1.0} for i in range(16)]

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            calls = [client.post("/models/sum/predict", json=record) for record in records]
            return await asyncio.gather(*calls)

    try:
        answers = asyncio.run(main())
    finally:
        registry.close()
    assert [a.json()["value"] for a in answers] == pytest.approx(
        [r["x0"] + 1000 for r in records], abs=1e-6
    )
    ((_, sizes),) = otel.points("modelkit.prediction.batch.size")
    assert sizes.sum == len(records)
    assert sizes.count < len(records)  # fewer runtime calls than requests
    assert sizes.max > 1


# -- the example on a real server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def example() -> Iterator[ModuleType]:
    """The example's ``app.py``, imported as a module (examples are not a package)."""
    name = "modelkit_fastapi_example"
    spec = importlib.util.spec_from_file_location(name, EXAMPLE_DIR / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves the models' annotations through it
    spec.loader.exec_module(module)
    yield module
    del sys.modules[name]


@pytest.fixture(scope="module")
def port(example: ModuleType) -> Iterator[int]:
    with served(example.create_app()) as port:
        yield port


def test_the_example_answers_concurrent_requests_on_uvicorn(port: int) -> None:
    rng = np.random.default_rng(7)
    records = [
        dict(zip(RECORD, map(float, row), strict=True))
        for row in np.round(rng.uniform([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], (60, 4)), 1)
    ]
    with modelkit.load(BUNDLE) as model:
        expected = [model.predict(record) for record in records]

    def single(index: int) -> None:
        status, body = request_json(port, "POST", PREDICT, records[index])
        assert status == 200, body
        assert body["label"] == expected[index].label
        assert body["probabilities"] == pytest.approx(expected[index].probabilities, abs=1e-6)

    def batch(start: int) -> None:
        status, body = request_json(
            port, "POST", PREDICT, {"instances": records[start : start + 10]}
        )
        assert status == 200, body
        labels = [output["label"] for output in body["predictions"]]
        assert labels == [output.label for output in expected[start : start + 10]]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(single, i) for i in range(len(records))]
        futures += [pool.submit(batch, start) for start in range(0, len(records), 10)]
        for future in futures:
            future.result()


def test_the_example_serves_its_own_routes_and_its_openapi_document(port: int) -> None:
    status, body = request_json(port, "POST", "/species", RECORD)
    assert status == 200, body
    assert body["species"] == "virginica"
    assert 0.5 < body["probability"] <= 1
    status, body = request_json(port, "GET", "/healthz")
    assert (status, body) == (200, {"status": "ok", "models": {"iris": "1.0.0"}})
    status, document = request_json(port, "GET", "/openapi.json")
    assert status == 200
    assert {"/species", "/healthz", "/models", PREDICT} <= set(document["paths"])
    status, body = request_json(port, "POST", PREDICT, {**RECORD, "petal_width": "wide"})
    assert status == 422
    assert [(d["field"], d["index"]) for d in body["error"]["details"]] == [("petal_width", None)]


def test_the_example_refuses_a_declared_body_over_the_limit_unread(port: int) -> None:
    status, answer = post_declared(port, PREDICT, BODY_LIMIT + 1)
    assert (status, answer["error"]["type"]) == (413, "request_too_large")
    assert str(BODY_LIMIT) in answer["error"]["message"]


def test_stopping_the_server_closes_the_models(example: ModuleType) -> None:
    before = set(batching_threads())  # the other example server's, which goes on
    with served(example.create_app()) as port:
        status, _, _ = call(port, "POST", PREDICT, json.dumps(RECORD).encode())
        assert status == 200
        # The example's models.toml turns micro-batching on: a worker thread per model.
        (worker,) = set(batching_threads()) - before
    wait_until(lambda: not worker.is_alive(), "the batching worker outlived the server")


# -- limits and runtime errors, on a real server ------------------------------------------------

ANSWER_LIMIT = 2**20


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The hostile graphs on uvicorn, behind a 64 KiB body, 1,000 rows and 1 MiB answers."""
    bundles = save_all(tmp_path_factory.mktemp("hostile"))
    config = {"models": {name: str(path) for name, path in bundles.items()}}
    app = fastapi.FastAPI()
    routes = modelkit.fastapi.router(
        config, max_body_size=BODY_LIMIT, max_batch_size=1000, max_response_size=ANSWER_LIMIT
    )
    app.include_router(routes)
    with served(app) as port:
        yield port


def test_a_chunked_body_over_the_limit_is_413(guarded: int) -> None:
    status, answer = post_chunked(guarded, "/models/rows/predict", [b" " * 65536] * 16)
    assert (status, answer["error"]["type"]) == (413, "request_too_large")
    status, answer = post_chunked(guarded, "/models/rows/predict", [b'{"x": ', b"[[1, 2]]}"])
    assert (status, answer) == (200, {"y": [[1.0, 2.0]]})


@pytest.mark.parametrize(("rows", "status"), [(1000, 200), (1001, 413)], ids=["at", "over"])
def test_tensor_rows_count_against_max_batch_size(guarded: int, rows: int, status: int) -> None:
    got, answer = request_json(guarded, "POST", "/models/rows/predict", {"x": [[0.5, 1.5]] * rows})
    assert got == status
    if status == 413:
        assert answer["error"]["type"] == "batch_too_large"
    else:
        assert len(answer["y"]) == rows


def test_an_answer_over_max_response_size_is_a_json_500_and_the_server_goes_on(
    guarded: int,
) -> None:
    status, answer = request_json(guarded, "POST", "/models/zeros/predict", {"shape": [10_000_000]})
    assert (status, answer["error"]["type"]) == (500, "response_too_large")
    status, answer = request_json(guarded, "POST", "/models/zeros/predict", {"shape": [2]})
    assert (status, answer) == (200, {"zeros": [0.0, 0.0]})


def test_an_onnxruntime_refusal_carries_no_runtime_internals(guarded: int) -> None:
    status, answer = request_json(guarded, "POST", "/models/reshape/predict", {"x": [1.0, 2.0]})
    assert status == 422
    for internal in RUNTIME_INTERNALS:
        assert internal not in json.dumps(answer)
    assert "cannot be reshaped" in answer["error"]["message"]


def test_unexpected_failure_is_a_json_500_without_internals(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with modelkit.Registry() as registry:
        route = registry.add("iris", BUNDLE)

        async def broken(records: Any, **options: Any) -> Any:
            raise RuntimeError("secret internal detail")

        monkeypatch.setattr(route.model, "apredict", broken)
        monkeypatch.setattr(route.model, "apredict_batch", broken)
        app = fastapi.FastAPI()
        app.include_router(modelkit.fastapi.router(registry))
        client = TestClient(app)
        with caplog.at_level(logging.ERROR, logger="modelkit"):
            for payload in (RECORD, {"instances": [RECORD]}):
                response = client.post(PREDICT, json=payload)
                assert response.status_code == 500
                assert response.json()["error"]["type"] == "internal_error"
                assert "secret" not in response.text
        assert "secret internal detail" in caplog.text


# -- the Open Inference Protocol ----------------------------------------------------------------


def test_the_open_inference_protocol_on_uvicorn(port: int) -> None:
    from tests.oip_clients import exercise

    exercise(port)


def test_the_protocol_takes_the_body_limit_and_can_be_left_out(
    clients: tuple[Any, TestClient],
) -> None:
    _, client = clients
    response = client.post("/v2/models/iris/infer", content=b" " * (BODY_LIMIT + 1))
    assert response.status_code == 413
    assert set(response.json()) == {"error"}  # the protocol's error shape
    assert client.get("/v2/health/ready").status_code == 200
    with modelkit.Registry() as registry:
        app = fastapi.FastAPI()
        app.include_router(modelkit.fastapi.router(registry, oip=False))
        assert TestClient(app).get("/v2/health/ready").json() == {"detail": "Not Found"}


@pytest.mark.parametrize("warms", [True, False], ids=["warmup", "warmup-false"])
def test_models_are_warmed_up_unobserved_before_the_app_says_ready(
    with_cases: Path, watch: Watch, warms: bool
) -> None:
    table = {"path": str(with_cases), **({} if warms else {"warmup": False})}
    app = fastapi.FastAPI()
    app.include_router(modelkit.fastapi.router({"models": {"iris": table}}))
    cases = cases_in(with_cases)
    # Loaded as the router is built: the check's batch, then (warmed up) each case alone and
    # all of them in one batch.
    assert watch.runs == ({"run_record": len(cases), "run": 2} if warms else {"run": 1})
    with TestClient(app) as client:
        assert client.get("/v2/health/ready").status_code == 200
        watch.assert_unobserved()
        assert client.post(PREDICT, json=cases[0]).status_code == 200
        assert watch.observed() == {"hook": 1, "log": 1, "spans": 1, "metrics": 1}


def test_the_protocol_reads_no_body_it_would_not_use(clients: tuple[Any, TestClient]) -> None:
    """A POST to a URL that takes none, or that is none, is answered from its method and URL,
    its body never read (the protocol reads an inference body only)."""
    app = clients[1].app

    def answer(method: str, path: str) -> tuple[int, int]:
        reads = []

        async def receive() -> dict[str, Any]:
            reads.append(1)
            return {"type": "http.request", "body": b"{}", "more_body": False}

        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"test"), (b"content-length", b"2")],
            "client": ("127.0.0.1", 1),
            "server": ("test", 80),
        }
        asyncio.run(app(scope, receive, send))
        return sent[0]["status"], len(reads)

    assert answer("POST", "/v2/health/live") == (405, 0)
    assert answer("PUT", "/v2/models/iris/infer") == (405, 0)
    assert answer("POST", "/v2/models/iris/explain") == (404, 0)
    assert answer("POST", "/v2/models/iris/infer") == (400, 1)  # read, and found wanting


# -- the router's arguments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prefix": "models"}, "prefix must start with '/'"),
        ({"prefix": "/models/"}, "prefix must start with '/'"),
        ({"max_body_size": 0}, "max_body_size must be a positive integer or None"),
        ({"max_batch_size": True}, "max_batch_size must be a positive integer or None"),
        ({"max_response_size": 1.5}, "max_response_size must be a positive integer or None"),
        ({"lock": {"lock_version": 1, "models": {}}}, "lock= goes with a registry config"),
        ({"prefix": "/v2"}, r"prefix '/v2' is the Open Inference Protocol's \(/v2 and under\)"),
        ({"prefix": "/v2/models"}, "prefix '/v2/models' is the Open Inference Protocol's"),
    ],
)
def test_bad_arguments_are_refused(options: dict[str, Any], message: str) -> None:
    with modelkit.Registry() as registry, pytest.raises(ValueError, match=message):
        modelkit.fastapi.router(registry, **options)


def test_a_prefix_under_v2_is_free_without_the_protocol() -> None:
    with modelkit.Registry() as registry:
        app = fastapi.FastAPI()
        app.include_router(modelkit.fastapi.router(registry, prefix="/v2/models", oip=False))
        assert TestClient(app).get("/v2/models").json() == {"models": []}


def test_a_config_is_checked_against_its_lock_file(tmp_path: Path) -> None:
    lock = tmp_path / "models.lock"
    lock.write_text(
        f'lock_version = 1\n[models.iris]\npath = "x"\nsha256 = "sha256:{"0" * 64}"\n',
        encoding="utf-8",
    )
    with pytest.raises(modelkit.IntegrityError, match=r"models\.iris"):
        modelkit.fastapi.router({"models": {"iris": str(BUNDLE)}}, lock=lock)


def test_missing_fastapi_names_the_extra() -> None:
    code = (
        "import sys\nsys.modules['fastapi'] = None\n"
        "try:\n    import modelkit.fastapi\n"
        "except ModuleNotFoundError as exc:\n    print(type(exc).__name__, exc.extra, exc)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert output.startswith("MissingDependencyError fastapi ")
    assert "modelkit.fastapi" in output


# -- the report page ----------------------------------------------------------------------------


def test_the_report_page_is_served_on_uvicorn_when_asked_for() -> None:
    config = {"models": {"iris": str(BUNDLE)}}
    app = fastapi.FastAPI()
    app.include_router(modelkit.fastapi.router(config, report=True))
    with served(app) as port:
        status, headers, page = call(port, "GET", "/models/iris/report")
        assert status == 200
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert b"<svg" in page
        assert b"iris" in page
        status, headers, body = call(port, "HEAD", "/models/iris/report")
        assert (status, headers["Content-Type"], body) == (200, "text/html; charset=utf-8", b"")
        status, headers, _ = call(port, "POST", "/models/iris/report")
        assert status == 405
        assert "GET" in headers["Allow"]
        assert call(port, "GET", "/models/nope/report")[0] == 404
        _, _, document = call(port, "GET", "/openapi.json")
        operation = json.loads(document)["paths"]["/models/iris/report"]["get"]
        assert "text/html" in operation["responses"]["200"]["content"]


def test_the_report_page_is_off_by_default(clients: tuple[Any, TestClient]) -> None:
    response = clients[1].get("/models/iris/report")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"
