"""The WSGI application ``modelkit serve`` runs: health checks, the JSON endpoints under a prefix,
and JSON answers for every URL and method (the real server is in ``tests/test_cli.py``)."""

from __future__ import annotations

import io
import json
import wsgiref.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import modelkit
from modelkit.cli._wsgi import Application, Models

LIMITS = {"max_batch_size": 10, "max_body_size": 4096, "max_response_size": 2**20}


class Answer:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = int(status.split(maxsplit=1)[0])
        self.reason = status.partition(" ")[2]
        self.headers = dict(headers)
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def call(app: Application, method: str, path: str, body: bytes = b"", **headers: str) -> Answer:
    environ: dict[str, Any] = {}
    wsgiref.util.setup_testing_defaults(environ)
    environ.update(
        REQUEST_METHOD=method,
        PATH_INFO=path,
        CONTENT_LENGTH=str(len(body)),
        **{"wsgi.input": io.BytesIO(body)},
        **{f"HTTP_{name.upper()}": value for name, value in headers.items()},
    )
    started: list[Any] = []
    chunks = app(environ, lambda status, headers: started.extend([status, headers]))
    return Answer(started[0], started[1], b"".join(chunks))


@pytest.fixture
def models(iris_bundle: Path) -> Iterator[Models]:
    loaded = Models(lambda: modelkit.Registry.from_config({"models": {"iris": str(iris_bundle)}}))
    yield loaded
    loaded.close()


@pytest.fixture
def app(models: Models) -> Application:
    models.load()
    return Application(models, "/models", **LIMITS)


def record(iris: tuple[Any, Any]) -> dict[str, float]:
    return {str(k): float(v) for k, v in iris[0].iloc[0].items()}


# -- health and readiness -----------------------------------------------------------------------


def test_health_answers_while_the_models_load_and_the_rest_waits(models: Models) -> None:
    app = Application(models, "/models", **LIMITS)
    assert call(app, "GET", "/healthz").json() == {"status": "ok"}
    ready = call(app, "GET", "/readyz")
    assert (ready.status, ready.json()) == (503, {"status": "loading"})
    for path in ("/models", "/openapi.json"):
        waiting = call(app, "GET", path)
        assert waiting.status == 503
        assert waiting.headers["Retry-After"] == "1"
        assert waiting.json()["error"]["type"] == "not_ready"
    models.load()
    assert call(app, "GET", "/readyz").json() == {"status": "ready", "models": ["iris"]}
    document = call(app, "GET", "/openapi.json")
    assert (document.status, document.headers["Content-Type"]) == (200, "application/json")
    assert "/models/iris/predict" in document.json()["paths"]
    assert "/readyz" in document.json()["paths"]


# -- the endpoints ------------------------------------------------------------------------------


def test_the_endpoints_answer_as_the_service_writes(
    app: Application, iris_bundle: Path, iris: tuple[Any, Any]
) -> None:
    listing = call(app, "GET", "/models")
    assert listing.status == 200
    assert listing.headers["Content-Type"] == "application/json"
    assert listing.headers["Content-Length"] == str(len(listing.body))
    (entry,) = listing.json()["models"]
    assert entry["url"] == "/models/iris"
    assert entry["digest"] == modelkit.digest(iris_bundle)
    assert call(app, "GET", "/models/").json() == listing.json()
    assert "input_schema" in call(app, "GET", "/models/iris").json()
    one = call(app, "POST", "/models/iris/predict", json.dumps(record(iris)).encode())
    assert (one.status, one.json()["label"]) == (200, 0)
    batch = json.dumps({"instances": [record(iris)] * 3}).encode()
    assert len(call(app, "POST", "/models/iris/predict", batch).json()["predictions"]) == 3


def test_the_limits_hold(app: Application, iris: tuple[Any, Any]) -> None:
    batch = json.dumps({"instances": [record(iris)] * 11}).encode()
    assert call(app, "POST", "/models/iris/predict", batch).json()["error"]["type"] == (
        "batch_too_large"
    )
    large = call(app, "POST", "/models/iris/predict", b" " * 5000)
    assert (large.status, large.json()["error"]["type"]) == (413, "request_too_large")


def test_the_endpoints_can_live_at_the_root(models: Models) -> None:
    models.load()
    app = Application(models, "", **LIMITS)
    assert call(app, "GET", "/").json()["models"][0]["url"] == "/iris"
    assert call(app, "GET", "/iris").status == 200
    assert call(app, "GET", "/healthz").json() == {"status": "ok"}


# -- every other URL and method, in JSON --------------------------------------------------------


@pytest.mark.parametrize("path", ["/models/iris/explain", "/models/iris/", "/elsewhere", "/"])
def test_an_unknown_url_is_a_json_404_naming_the_endpoints(app: Application, path: str) -> None:
    answer = call(app, "GET", path)
    assert answer.status == 404
    problem = answer.json()["error"]
    assert problem["type"] == "not_found"
    assert problem["message"] == (
        f"No endpoint at {path}: the endpoints are GET /models, GET /models/<name> and "
        "POST /models/<name>/predict."
    )


def test_an_unknown_model_is_a_json_404(app: Application) -> None:
    answer = call(app, "GET", "/models/churn")
    assert (answer.status, answer.json()["error"]["type"]) == (404, "unknown_model")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/models/iris/predict", "POST, OPTIONS"),
        ("POST", "/models/iris", "GET, HEAD, OPTIONS"),
        ("DELETE", "/healthz", "GET, HEAD, OPTIONS"),
    ],
)
def test_a_wrong_method_is_a_json_405_with_allow(
    app: Application, method: str, path: str, allow: str
) -> None:
    answer = call(app, method, path)
    assert answer.status == 405
    assert answer.reason == "Method Not Allowed"
    assert answer.headers["Allow"] == allow
    assert answer.json()["error"]["type"] == "method_not_allowed"
    assert answer.json()["error"]["message"].startswith(f"{path} takes ")


def test_options_answers_what_a_url_allows(app: Application) -> None:
    answer = call(app, "OPTIONS", "/models/iris/predict")
    assert (answer.status, answer.headers["Allow"], answer.body) == (204, "POST, OPTIONS", b"")


def test_head_sends_the_headers_of_get_without_the_body(app: Application) -> None:
    head, get = call(app, "HEAD", "/models/iris"), call(app, "GET", "/models/iris")
    assert head.status == 200
    assert head.body == b""
    assert head.headers["Content-Length"] == str(len(get.body))


def test_an_unexpected_failure_is_a_json_500_without_internals(
    app: Application, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app.service, "index", broken)
    answer = call(app, "GET", "/models")
    assert answer.status == 500
    assert answer.json() == {
        "error": {"type": "internal_error", "message": "The request failed; see the server log."}
    }
    assert "secret internals" in caplog.text
