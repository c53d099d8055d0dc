"""The framework-neutral JSON endpoints: statuses and bodies for every kind of request."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import modelkit
from modelkit._serving import Reply, Service

RECORD = {
    "sepal length (cm)": 5.1,
    "sepal width (cm)": 3.5,
    "petal length (cm)": 1.4,
    "petal width (cm)": 0.2,
}


@pytest.fixture
def service(iris_bundle: Path) -> Iterator[Service]:
    with modelkit.Registry() as registry:
        registry.add("iris", iris_bundle)
        yield Service(registry, max_batch_size=5, url_for=lambda name: f"/models/{name}")


def _json(reply: Reply) -> Any:
    return json.loads(reply.to_json())


def test_index_lists_models(service: Service, iris_bundle: Path) -> None:
    reply = service.index()
    assert reply.status == 200
    assert _json(reply) == {
        "models": [
            {
                "name": "iris",
                "version": "1.0.0",
                "digest": modelkit.digest(iris_bundle),
                "task": "classification",
                "url": "/models/iris",
            }
        ]
    }


def test_describe_gives_the_json_schemas(service: Service) -> None:
    body = _json(service.describe("iris"))
    assert body["name"] == "iris"
    assert body["format"] == "joblib"
    assert set(body["input_schema"]["properties"]) == set(RECORD)
    assert "label" in body["output_schema"]["properties"]


def test_predict_one_record(service: Service) -> None:
    reply = service.predict("iris", json.dumps(RECORD))
    assert reply.status == 200
    body = _json(reply)
    assert body["label"] == 0
    assert set(body["probabilities"]) == {"0", "1", "2"}


def test_predict_a_batch(service: Service) -> None:
    reply = service.predict("iris", json.dumps({"instances": [RECORD, RECORD]}))
    assert reply.status == 200
    assert [p["label"] for p in _json(reply)["predictions"]] == [0, 0]


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (b"", 400, "malformed_request"),
        (b"{not json", 400, "malformed_request"),
        (b"\xff\xfe", 400, "malformed_request"),
        (b"[1, 2, 3, 4]", 400, "malformed_request"),
        (b'"text"', 400, "malformed_request"),
        (b'{"instances": {"a": 1}}', 400, "malformed_request"),
        (b'{"instances": [], "extra": 1}', 400, "malformed_request"),
        (json.dumps({"instances": [RECORD] * 6}).encode(), 413, "batch_too_large"),
    ],
)
def test_malformed_requests_get_the_documented_status(
    service: Service, body: bytes, status: int, kind: str
) -> None:
    reply = service.predict("iris", body)
    assert reply.status == status
    assert _json(reply)["error"]["type"] == kind


def test_unknown_model_is_404(service: Service) -> None:
    for reply in (service.describe("nope"), service.predict("nope", json.dumps(RECORD))):
        assert reply.status == 404
        assert _json(reply)["error"]["type"] == "unknown_model"


def test_invalid_input_is_422_with_field_and_index(service: Service) -> None:
    bad = {**RECORD, "petal width (cm)": "wide"}
    reply = service.predict("iris", json.dumps({"instances": [RECORD, bad]}))
    assert reply.status == 422
    error = _json(reply)["error"]
    assert error["type"] == "invalid_input"
    assert error["details"] == [
        {"field": "petal width (cm)", "index": 1, "message": error["details"][0]["message"]}
    ]
    single = _json(service.predict("iris", json.dumps({"sepal length (cm)": 1.0})))["error"]
    assert {d["field"] for d in single["details"]} == {
        "sepal width (cm)",
        "petal length (cm)",
        "petal width (cm)",
    }
    assert all(d["index"] is None for d in single["details"])


def test_nan_in_json_is_invalid_input(service: Service) -> None:
    reply = service.predict(
        "iris",
        '{"sepal length (cm)": NaN, "sepal width (cm)": 1, '
        '"petal length (cm)": 1, "petal width (cm)": 1}',
    )
    assert reply.status == 422


def test_unexpected_failure_is_500_without_internals(
    service: Service, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    model = service.registry["iris"].model

    def broken(record: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(model, "predict", broken)
    with caplog.at_level(logging.ERROR, logger="modelkit"):
        reply = service.predict("iris", json.dumps(RECORD))
    assert reply.status == 500
    assert "secret" not in reply.to_json()
    assert "secret internal detail" in caplog.text
    monkeypatch.undo()
    assert service.predict("iris", json.dumps(RECORD)).status == 200  # and it keeps serving


def test_async_predict_matches_sync(service: Service) -> None:
    sync = service.predict("iris", json.dumps({"instances": [RECORD]}))
    asynchronous = asyncio.run(service.apredict("iris", json.dumps({"instances": [RECORD]})))
    assert (asynchronous.status, asynchronous.body) == (sync.status, sync.body)
    failed = asyncio.run(service.apredict("iris", b"{"))
    assert failed.status == 400


def test_routing_key_reaches_the_route(iris_bundle: Path, tmp_path: Path, iris: Any) -> None:
    from sklearn.dummy import DummyClassifier

    X, y = iris
    constant = DummyClassifier(strategy="constant", constant=2).fit(X, y)
    modelkit.save(constant, tmp_path / "two", name="iris", version="2", sample_input=X.head())
    with modelkit.Registry() as registry:
        registry.add("iris", iris_bundle)
        registry.set_canary("iris", tmp_path / "two", weight=0.5)
        service = Service(registry)
        labels = {
            key: _json(service.predict("iris", json.dumps(RECORD), key=key))["label"]
            for key in map(str, range(40))
        }
        again = {
            key: _json(service.predict("iris", json.dumps(RECORD), key=key))["label"]
            for key in labels
        }
    assert labels == again
    assert set(labels.values()) == {0, 2}


def test_deeply_nested_json_is_a_malformed_request(service: Service) -> None:
    body = '{"a": ' * 100_000 + "1" + "}" * 100_000
    reply = service.predict("iris", body)
    assert reply.status == 400
    assert _json(reply)["error"]["type"] == "malformed_request"


@pytest.fixture(scope="module")
def penguins_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The usual impute + one-hot pipeline on a real table with gaps, sampled without them."""
    from palmerpenguins import load_penguins
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = load_penguins()
    X, y = frame.drop(columns=["species"]), frame["species"]
    features = ColumnTransformer(
        [
            (
                "numbers",
                make_pipeline(SimpleImputer(), StandardScaler()),
                make_column_selector(dtype_include="number"),
            ),
            (
                "strings",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
                ),
                make_column_selector(dtype_exclude="number"),
            ),
        ]
    )
    pipeline = make_pipeline(features, LogisticRegression(max_iter=2000)).fit(X, y)
    path = tmp_path_factory.mktemp("penguins") / "penguins"
    modelkit.save(pipeline, path, name="penguins", version="1", sample_input=X.dropna().head(50))
    return path


def test_null_and_nan_in_json_are_missing_values(penguins_bundle: Path) -> None:
    record = {
        "island": "Biscoe",
        "bill_length_mm": None,
        "bill_depth_mm": 17.0,
        "flipper_length_mm": 200.0,
        "body_mass_g": 4000.0,
        "sex": None,
        "year": 2008,
    }
    with modelkit.Registry() as registry:
        registry.add("penguins", penguins_bundle)
        service = Service(registry, max_batch_size=5, url_for=lambda name: f"/models/{name}")
        one = service.predict("penguins", json.dumps(record))
        # Python's json module writes (and reads) NaN, as many clients do.
        batch = service.predict(
            "penguins", json.dumps({"instances": [record, {**record, "bill_depth_mm": math.nan}]})
        )
        refused = service.predict("penguins", json.dumps({**record, "island": 3}))
    assert one.status == 200, one.to_json()
    assert _json(one)["label"] in {"Adelie", "Chinstrap", "Gentoo"}
    assert batch.status == 200, batch.to_json()
    assert refused.status == 422
    assert "island" in refused.to_json()
