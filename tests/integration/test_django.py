"""modelkit.django: the example project's real settings, Django's test clients, and uvicorn.

Django's settings are process-wide and cannot be unset, so this module configures them once
(the example's ``scoring.settings``, without a database) in a module fixture that restores the
environment variable and ``sys.path`` it changed; the other test modules never import Django.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import http.client
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import modelkit
from tests.custom_models import Review, Sentiment

django = pytest.importorskip("django")
uvicorn = pytest.importorskip("uvicorn")

from django.core.exceptions import ImproperlyConfigured  # noqa: E402 - after the skip
from django.test import AsyncClient, Client, override_settings  # noqa: E402

from modelkit.django import _loading, load_models, models  # noqa: E402
from tests.limited import run_limited  # noqa: E402
from tests.serving_fixtures import (  # noqa: E402
    RUNTIME_INTERNALS,
    post_chunked,
    save_all,
    uvicorn_server,
)
from tests.warmup_fixtures import (  # noqa: E402
    Watch,
    cases_in,
    save_iris_answering_otherwise,
)

pytestmark = pytest.mark.integration

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "django_project"
BUNDLE = EXAMPLE_DIR / "bundles" / "iris"
RECORD = {"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 5.1, "petal_width": 1.8}
PREDICT = "/models/iris/predict"
#: The example's MAX_BATCH_SIZE.
LIMIT = 100


# -- the project --------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def project() -> Iterator[None]:
    """Django set up with the example project's settings, as ``manage.py`` would."""
    from django.conf import settings
    from django.test.utils import setup_test_environment, teardown_test_environment

    saved_environment = os.environ.get("DJANGO_SETTINGS_MODULE")
    sys.path.insert(0, str(EXAMPLE_DIR))
    os.environ["DJANGO_SETTINGS_MODULE"] = "scoring.settings"
    before = set(threading.enumerate())
    try:
        django.setup()
        assert settings.SETTINGS_MODULE == "scoring.settings"
        setup_test_environment()  # the test client's host, and nothing else that matters here
        yield
        teardown_test_environment()
        _loading.reset()
    finally:
        sys.path.remove(str(EXAMPLE_DIR))
        if saved_environment is None:
            os.environ.pop("DJANGO_SETTINGS_MODULE", None)
        else:
            os.environ["DJANGO_SETTINGS_MODULE"] = saved_environment
    # Servers and registries are stopped. Process-wide pools stay: modelkit's apredict pool, and
    # the one thread asgiref runs thread-sensitive code on.
    from asgiref.sync import SyncToAsync

    shared = set(SyncToAsync.single_thread_executor._threads)

    def left_behind() -> list[threading.Thread]:
        return [
            thread
            for thread in set(threading.enumerate()) - before - shared
            if not thread.name.startswith("modelkit")
        ]

    # asgiref runs each async_to_sync event loop on a one-thread executor it never shuts down:
    # its thread ends once the executor is collected, which a reference cycle can delay.
    deadline = time.monotonic() + 5
    while (left := left_behind()) and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    assert not left, sorted(thread.name for thread in left)


@pytest.fixture
def client() -> Client:
    return Client()


def _error(response: Any) -> dict[str, Any]:
    assert response["Content-Type"] == "application/json"
    body: dict[str, Any] = json.loads(response.content)
    return body["error"]  # type: ignore[no-any-return]


def _copy_bundle(tmp_path: Path) -> Path:
    copy = tmp_path / "iris"
    shutil.copytree(BUNDLE, copy)
    return copy


# -- loading ------------------------------------------------------------------------------------


def test_importing_modelkit_django_needs_no_settings() -> None:
    environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = "from modelkit.django import models; print(repr(models))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True
    )
    assert result.stdout.strip() == "<modelkit.django.models (not loaded)>"


def test_ready_is_idempotent_and_loads_nothing() -> None:
    from django.apps import apps
    from django.core.checks.registry import registry as check_registry

    from modelkit.django.checks import check_models

    _loading.reset()
    config = apps.get_app_config("modelkit")
    assert config.name == "modelkit.django"
    config.ready()
    config.ready()
    assert _loading._registry is None
    assert [c for c in check_registry.get_checks() if c is check_models] == [check_models]
    assert "modelkit" in check_registry.tags_available()


def test_check_command_verifies_bundles_without_loading_them() -> None:
    from django.core.management import call_command

    _loading.reset()
    call_command("check", tags=["modelkit"], fail_level="WARNING")
    assert _loading._registry is None


def test_models_load_lazily_once_and_follow_override_settings(iris_bundle: Path) -> None:
    _loading.reset()
    assert models.names() == ["iris"]
    registry = models.registry
    assert models.registry is registry  # built once
    closed: list[bool] = []
    registry.close = lambda: closed.append(True)  # type: ignore[method-assign]
    with override_settings(MODELKIT={"MODELS": {"flowers": str(iris_bundle)}}):
        assert closed == [True]  # the old registry is closed
        assert list(models) == ["flowers"]
        assert models["flowers"].version == "1.0.0"
        assert "iris" not in models
    assert models.names() == ["iris"]  # rebuilt from the project's settings again


def test_load_models_loads_before_the_first_request() -> None:
    _loading.reset()
    registry = load_models()
    assert _loading._registry is registry
    assert load_models() is registry


def test_eager_loading_loads_at_the_first_request(client: Client) -> None:
    _loading.reset()
    client.get("/favicon.ico")  # any URL, even one without models
    assert _loading._registry is not None


def test_lazy_loading_waits_for_first_use(client: Client) -> None:
    with override_settings(MODELKIT={"MODELS": {"iris": str(BUNDLE)}, "LOADING": "lazy"}):
        client.get("/favicon.ico")
        assert _loading._registry is None
        assert models["iris"].name == "iris"


def test_relative_paths_start_from_base_dir(tmp_path: Path) -> None:
    (tmp_path / "bundles").mkdir()
    shutil.copytree(BUNDLE, tmp_path / "bundles" / "iris")
    with override_settings(BASE_DIR=tmp_path, MODELKIT={"MODELS": {"iris": "bundles/iris"}}):
        assert models["iris"].digest == modelkit.digest(BUNDLE)
        assert _loading._registry is not None
        assert _loading._registry.lock()["models"]["iris"]["path"] == str(
            tmp_path / "bundles" / "iris"
        )


def test_a_registry_config_file_and_its_lock(tmp_path: Path) -> None:
    shutil.copytree(BUNDLE, tmp_path / "iris")
    (tmp_path / "models.toml").write_text('[models.iris]\npath = "iris"\n')
    lock = tmp_path / "models.lock"
    lock.write_text(
        f'lock_version = 1\n[models.iris]\npath = "iris"\nsha256 = "{modelkit.digest(BUNDLE)}"\n'
    )
    with override_settings(MODELKIT={"CONFIG": str(tmp_path / "models.toml"), "LOCK": str(lock)}):
        assert models["iris"].digest == modelkit.digest(BUNDLE)


# -- the example's own views --------------------------------------------------------------------


def test_the_scoring_page_shows_the_species(client: Client) -> None:
    response = client.get("/", {**RECORD, "petal_length": 6.0, "petal_width": 2.3})
    assert response.status_code == 200
    assert b'<h2 id="species">virginica</h2>' in response.content


def test_the_async_scoring_view(client: Client) -> None:
    response = client.get("/score", RECORD)
    assert response.status_code == 200
    body = response.json()
    assert body["species"] == "virginica"
    assert body["model"]["digest"] == modelkit.digest(BUNDLE)
    assert client.get("/score", {"sepal_length": "long"}).status_code == 422


# -- the endpoints ------------------------------------------------------------------------------


def test_index_lists_the_models(client: Client) -> None:
    response = client.get("/models/")
    assert response.status_code == 200
    assert response.json() == {
        "models": [
            {
                "name": "iris",
                "version": "1.0.0",
                "digest": modelkit.digest(BUNDLE),
                "task": "classification",
                "url": "/models/iris",
            }
        ]
    }


def test_describe_gives_the_json_schemas(client: Client) -> None:
    body = client.get("/models/iris").json()
    assert (body["name"], body["version"], body["format"]) == ("iris", "1.0.0", "onnx")
    assert body["digest"] == modelkit.digest(BUNDLE)
    assert set(body["input_schema"]["properties"]) == set(RECORD)
    assert "label" in body["output_schema"]["properties"]


def test_predict_one_record_and_a_batch(client: Client) -> None:
    one = client.post(PREDICT, RECORD, content_type="application/json")
    assert one.status_code == 200
    assert one.json()["label"] == "virginica"
    batch = client.post(PREDICT, {"instances": [RECORD] * 3}, content_type="application/json")
    assert [p["label"] for p in batch.json()["predictions"]] == ["virginica"] * 3


def test_the_routing_key_header_reaches_the_registry(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys: list[object] = []
    route_type = type(models["iris"])
    original = route_type.apredict

    async def spy(self: Any, record: Any, *, key: object = None) -> Any:
        keys.append(key)
        return await original(self, record, key=key)

    monkeypatch.setattr(route_type, "apredict", spy)
    client.post(PREDICT, RECORD, content_type="application/json", headers={"X-Modelkit-Key": "u7"})
    assert keys == ["u7"]


BAD_REQUESTS = [
    pytest.param("post", PREDICT, b"{not json", (400, "malformed_request"), id="json"),
    pytest.param("post", PREDICT, b"\xff\xfe\x00", (400, "malformed_request"), id="utf8"),
    pytest.param("post", PREDICT, b"[1, 2]", (400, "malformed_request"), id="array"),
    pytest.param("post", PREDICT, b"", (400, "malformed_request"), id="empty"),
    pytest.param("post", PREDICT, b'{"instances": 3}', (400, "malformed_request"), id="batch"),
    pytest.param("post", "/models/nope/predict", b"{}", (404, "unknown_model"), id="model"),
    pytest.param("get", "/models/nope", None, (404, "unknown_model"), id="description"),
    pytest.param("get", "/models/iris/nothing/here", None, (404, "not_found"), id="path"),
    pytest.param(
        "post",
        PREDICT,
        json.dumps({"instances": [RECORD] * (LIMIT + 1)}).encode(),
        (413, "batch_too_large"),
        id="batch-over-limit",
    ),
    pytest.param(
        "post",
        PREDICT,
        b" " * (64 * 1024 + 1),
        (413, "request_too_large"),
        id="body-over-data-upload-max-memory-size",
    ),
    pytest.param("get", PREDICT, None, (405, "method_not_allowed"), id="get-predict"),
    pytest.param("delete", "/models/", None, (405, "method_not_allowed"), id="delete-index"),
    pytest.param("put", "/models/iris", b"{}", (405, "method_not_allowed"), id="put-model"),
]


@pytest.mark.parametrize(("method", "path", "body", "expected"), BAD_REQUESTS)
@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=64 * 1024)
def test_bad_requests_get_the_documented_status_and_body(
    client: Client, method: str, path: str, body: bytes | None, expected: tuple[int, str]
) -> None:
    send = getattr(client, method)
    response = send(path) if body is None else send(path, body, content_type="application/json")
    assert (response.status_code, _error(response)["type"]) == expected
    if expected[0] == 405:
        assert "OPTIONS" in response["Allow"]
    # and the server keeps serving
    assert client.post(PREDICT, RECORD, content_type="application/json").status_code == 200


def test_invalid_input_is_422_with_field_and_index_per_problem(client: Client) -> None:
    bad = {**RECORD, "petal_width": "wide"}
    response = client.post(
        PREDICT, {"instances": [RECORD, bad, {}]}, content_type="application/json"
    )
    assert response.status_code == 422
    error = _error(response)
    assert error["type"] == "invalid_input"
    problems = {(d["field"], d["index"]) for d in error["details"]}
    assert ("petal_width", 1) in problems
    assert {("sepal_length", 2), ("petal_width", 2)} <= problems


def test_options_lists_the_allowed_methods(client: Client) -> None:
    response = client.options(PREDICT)
    assert response.status_code == 204
    assert response["Allow"] == "POST, OPTIONS"


def test_an_unexpected_failure_is_500_without_internals(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    model = models["iris"].model

    def broken(record: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(model, "predict", broken)
    response = client.post(PREDICT, RECORD, content_type="application/json")
    assert response.status_code == 500
    assert _error(response)["type"] == "internal_error"
    assert b"secret" not in response.content
    assert "secret internal detail" in caplog.text
    monkeypatch.undo()
    assert client.post(PREDICT, RECORD, content_type="application/json").status_code == 200


def test_models_that_cannot_load_give_a_json_500(
    client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with override_settings(MODELKIT={"MODELS": {"iris": str(tmp_path / "missing")}}):
        for response in (client.get("/models/"), client.post(PREDICT, RECORD)):
            assert response.status_code == 500
            assert _error(response)["type"] == "internal_error"
            assert str(tmp_path) not in response.content.decode()
        assert "modelkit.E002" in caplog.text


def test_async_client_gets_the_same_answers() -> None:
    async def scenario() -> list[Any]:
        client = AsyncClient()
        return [
            await client.post(PREDICT, RECORD, content_type="application/json"),
            await client.post(PREDICT, b"{", content_type="application/json"),
            await client.get("/models/nope"),
        ]

    sync = Client()
    expected = [
        sync.post(PREDICT, RECORD, content_type="application/json"),
        sync.post(PREDICT, b"{", content_type="application/json"),
        sync.get("/models/nope"),
    ]
    for got, want in zip(asyncio.run(scenario()), expected, strict=True):
        assert (got.status_code, got.content) == (want.status_code, want.content)


# -- system checks, and the same validation at load time ----------------------------------------


def _check_ids() -> list[str]:
    from django.core.checks import run_checks

    return [message.id for message in run_checks(tags=["modelkit"])]


def _edit_manifest(bundle: Path, key: str, value: Any) -> None:
    manifest_path = bundle / "modelkit.json"
    manifest = json.loads(manifest_path.read_text())
    section, _, field = key.partition(".")
    manifest[section][field] = value
    manifest_path.write_text(json.dumps(manifest))


def test_the_example_passes_its_checks() -> None:
    assert _check_ids() == []


@pytest.mark.parametrize(
    "setting",
    [
        pytest.param({"MODLES": {"iris": str(BUNDLE)}}, id="unknown-setting"),
        pytest.param({"MODELS": {"iris": {"paht": str(BUNDLE)}}}, id="unknown-model-key"),
        pytest.param({"MODELS": {"iris": str(BUNDLE)}, "LOADING": "soon"}, id="loading-mode"),
        pytest.param({"MODELS": {"iris": str(BUNDLE)}, "LOCK": "/no/such.lock"}, id="no-lock"),
        pytest.param({"MODELS": {"iris": {"path": str(BUNDLE), "sha256": "x"}}}, id="sha256"),
        pytest.param({"MODELS": {"iris": str(BUNDLE)}, "MAX_BODY_SIZE": 0}, id="body-size"),
        pytest.param(
            {"MODELS": {"iris": str(BUNDLE)}, "MAX_RESPONSE_SIZE": "50MiB"}, id="response-size"
        ),
        pytest.param({"MODELS": {"iris": str(BUNDLE)}, "MAX_BATCH_SIZE": True}, id="batch-size"),
    ],
)
def test_e001_invalid_config(setting: dict[str, Any]) -> None:
    with override_settings(MODELKIT=setting):
        assert _check_ids() == ["modelkit.E001"]
        with pytest.raises(ImproperlyConfigured, match=r"^modelkit\.E001: "):
            load_models()


def test_e001_relative_path_without_base_dir() -> None:
    with override_settings(BASE_DIR=None, MODELKIT={"MODELS": {"iris": "bundles/iris"}}):
        assert _check_ids() == ["modelkit.E001"]
        with pytest.raises(ImproperlyConfigured, match=r"^modelkit\.E001: .*BASE_DIR"):
            load_models()


def test_e001_names_the_near_miss() -> None:
    from django.core.checks import run_checks

    with override_settings(MODELKIT={"MODELS": {"iris": {"path": str(BUNDLE), "wieght": 1}}}):
        (message,) = run_checks(tags=["modelkit"])
        assert "models.iris.wieght" in message.msg


def test_e002_missing_bundle(tmp_path: Path) -> None:
    with override_settings(MODELKIT={"MODELS": {"iris": str(tmp_path / "gone")}}):
        assert _check_ids() == ["modelkit.E002"]
        with pytest.raises(ImproperlyConfigured, match=r"^modelkit\.E002: .*models\.iris"):
            load_models()


def test_e003_tampered_artifact(tmp_path: Path) -> None:
    copy = _copy_bundle(tmp_path)
    artifact = copy / "artifacts" / "model.onnx"
    data = bytearray(artifact.read_bytes())
    data[-1] ^= 0xFF
    artifact.write_bytes(bytes(data))
    with override_settings(MODELKIT={"MODELS": {"iris": str(copy)}}):
        assert _check_ids() == ["modelkit.E003"]
        with pytest.raises(ImproperlyConfigured, match=r"^modelkit\.E003: "):
            load_models()


def test_e003_digest_differs_from_the_config() -> None:
    wrong = "sha256:" + "0" * 64
    with override_settings(MODELKIT={"MODELS": {"iris": {"path": str(BUNDLE), "sha256": wrong}}}):
        assert _check_ids() == ["modelkit.E003"]
        with pytest.raises(ImproperlyConfigured, match=r"^modelkit\.E003: "):
            load_models()


def test_e003_digest_differs_from_the_lock_file(tmp_path: Path) -> None:
    copy = _copy_bundle(tmp_path)
    _edit_manifest(copy, "metadata.note", "rebuilt")  # another manifest: another digest
    setting = {"MODELS": {"iris": str(copy)}, "LOCK": str(EXAMPLE_DIR / "models.lock")}
    with override_settings(MODELKIT=setting):
        assert _check_ids() == ["modelkit.E003"]
        with pytest.raises(ImproperlyConfigured, match=r"^modelkit\.E003: "):
            load_models()


def test_e003_model_missing_from_the_lock_file() -> None:
    setting = {
        "MODELS": {"iris": str(BUNDLE), "other": str(BUNDLE)},
        "LOCK": str(EXAMPLE_DIR / "models.lock"),
    }
    with override_settings(MODELKIT=setting):
        assert _check_ids() == ["modelkit.E003"]


def test_e004_environment_the_policy_refuses(tmp_path: Path) -> None:
    copy = _copy_bundle(tmp_path)
    _edit_manifest(copy, "environment.packages", {"numpy": "0.1.0"})  # another major version
    with override_settings(MODELKIT={"MODELS": {"iris": str(copy)}}):
        assert _check_ids() == ["modelkit.E004"]
        with pytest.raises(ImproperlyConfigured, match=r"^modelkit\.E004: "):
            load_models()


def test_w001_environment_that_loads_with_a_warning(tmp_path: Path) -> None:
    from importlib.metadata import version

    major = version("numpy").split(".")[0]
    copy = _copy_bundle(tmp_path)
    _edit_manifest(copy, "environment.packages", {"numpy": f"{major}.0.0.dev0"})
    with override_settings(MODELKIT={"MODELS": {"iris": str(copy)}}):
        assert _check_ids() == ["modelkit.W001"]
        with pytest.warns(modelkit.EnvironmentMismatchWarning):
            load_models()
    with override_settings(
        MODELKIT={"MODELS": {"iris": {"path": str(copy), "version_policy": "error"}}}
    ):
        assert _check_ids() == ["modelkit.E004"]


# -- concurrency: predictions never serialise on one thread -------------------------------------

#: The number of predictions that must run at once for the gate to open.
PARTIES = 4
_gate = threading.Barrier(PARTIES)


class Gate(modelkit.Model[Review, Sentiment]):
    """Answers only when PARTIES predictions wait at once: serialised calls break the barrier."""

    def run_batch(self, inputs: list[Review]) -> list[Sentiment]:
        _gate.wait(timeout=10)
        return [Sentiment(positive=True) for _ in inputs]


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[str]:
    """MODELKIT with the example's iris and the gate model; the barrier reset for each test."""
    modelkit.save(Gate(), tmp_path / "gate", name="gate", version="1.0.0")
    _gate.reset()
    setting = {
        "MODELS": {"iris": str(BUNDLE), "gate": str(tmp_path / "gate")},
        "MAX_BATCH_SIZE": LIMIT,
    }
    with override_settings(MODELKIT=setting):
        load_models()
        yield "/models/gate/predict"


def test_async_views_under_asgi_predict_concurrently(gate: str) -> None:
    async def scenario() -> list[int]:
        client = AsyncClient()
        responses = await asyncio.gather(
            *(
                client.post(gate, {"text": "hi"}, content_type="application/json")
                for _ in range(PARTIES)
            )
        )
        return [response.status_code for response in responses]

    assert asyncio.run(scenario()) == [200] * PARTIES


def test_async_views_under_wsgi_threads_predict_concurrently(gate: str) -> None:
    def call(_: int) -> int:
        return int(Client().post(gate, {"text": "hi"}, content_type="application/json").status_code)

    with concurrent.futures.ThreadPoolExecutor(PARTIES) as pool:
        assert list(pool.map(call, range(PARTIES))) == [200] * PARTIES


# -- a real server ------------------------------------------------------------------------------


def _asgi_server() -> contextlib.AbstractContextManager[int]:
    """The example's ASGI application on uvicorn, on a free port of 127.0.0.1."""
    from scoring.asgi import application

    return uvicorn_server(application, lifespan="off")


@pytest.fixture
def server(gate: str) -> Iterator[int]:
    """The example's ASGI application on uvicorn, with the gate model."""
    with _asgi_server() as port:
        yield port


def _request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def test_a_real_asgi_server_predicts_concurrently_and_survives_bad_requests(
    server: int, gate: str
) -> None:
    record = json.dumps(RECORD).encode()
    bad = [
        ("POST", PREDICT, b"{not json", 400),
        ("POST", PREDICT, json.dumps({**RECORD, "sepal_length": "x"}).encode(), 422),
        ("POST", "/models/nope/predict", record, 404),
        ("POST", PREDICT, json.dumps({"instances": [RECORD] * (LIMIT + 1)}).encode(), 413),
        ("GET", PREDICT, None, 405),
    ]
    with concurrent.futures.ThreadPoolExecutor(PARTIES + len(bad)) as pool:
        gated = [
            pool.submit(_request, server, "POST", gate, b'{"text": "hi"}') for _ in range(PARTIES)
        ]
        refused = [pool.submit(_request, server, m, p, b) for m, p, b, _ in bad]
        assert [future.result()[0] for future in gated] == [200] * PARTIES
        for future, (_, _, _, status) in zip(refused, bad, strict=True):
            answer_status, answer = future.result()
            assert answer_status == status
            assert set(answer["error"]) >= {"type", "message"}
    status, answer = _request(server, "POST", PREDICT, record)
    assert (status, answer["label"]) == (200, "virginica")


# -- limits and runtime errors ------------------------------------------------------------------

BODY_LIMIT = 64 * 1024
ANSWER_LIMIT = 2**20


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return save_all(tmp_path_factory.mktemp("hostile"))


@pytest.fixture
def guarded(hostile: dict[str, Path]) -> Iterator[None]:
    """The hostile graphs behind a 64 KiB body, 1,000 rows and 1 MiB answers."""
    setting = {
        "MODELS": {name: str(path) for name, path in hostile.items()},
        "MAX_BODY_SIZE": BODY_LIMIT,
        "MAX_BATCH_SIZE": 1000,
        "MAX_RESPONSE_SIZE": ANSWER_LIMIT,
    }
    with override_settings(MODELKIT=setting):
        load_models()
        yield


def test_a_body_over_max_body_size_is_413_before_it_is_parsed(
    client: Client, guarded: None
) -> None:
    body = b"[" * (BODY_LIMIT + 1)  # JSON nested past any parser's depth, had it been parsed
    response = client.post("/models/rows/predict", body, content_type="application/json")
    assert response.status_code == 413
    error = _error(response)
    assert error["type"] == "request_too_large"
    assert str(BODY_LIMIT) in error["message"]


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024)
def test_data_upload_max_memory_size_applies_when_smaller(client: Client, guarded: None) -> None:
    response = client.post(
        "/models/rows/predict", {"x": [[0.5, 1.5]] * 200}, content_type="application/json"
    )
    assert (response.status_code, _error(response)["type"]) == (413, "request_too_large")
    assert "1024 bytes" in _error(response)["message"]


@pytest.mark.parametrize(("rows", "status"), [(1000, 200), (1001, 413)], ids=["at", "over"])
def test_tensor_rows_count_against_max_batch_size(
    client: Client, guarded: None, rows: int, status: int
) -> None:
    response = client.post(
        "/models/rows/predict", {"x": [[0.5, 1.5]] * rows}, content_type="application/json"
    )
    assert response.status_code == status
    if status == 413:
        assert _error(response)["type"] == "batch_too_large"


def test_an_answer_over_max_response_size_is_a_json_500_and_the_server_goes_on(
    client: Client, guarded: None
) -> None:
    response = client.post(
        "/models/zeros/predict", {"shape": [10_000_000]}, content_type="application/json"
    )
    assert (response.status_code, _error(response)["type"]) == (500, "response_too_large")
    response = client.post("/models/zeros/predict", {"shape": [2]}, content_type="application/json")
    assert (response.status_code, json.loads(response.content)) == (200, {"zeros": [0.0, 0.0]})


def test_an_onnxruntime_refusal_carries_no_runtime_internals(client: Client, guarded: None) -> None:
    response = client.post(
        "/models/reshape/predict", {"x": [1.0, 2.0, 3.0]}, content_type="application/json"
    )
    assert response.status_code == 422
    for internal in RUNTIME_INTERNALS:
        assert internal not in response.content.decode()
    assert "cannot be reshaped" in _error(response)["message"]


def test_a_chunked_body_over_the_limit_is_413_on_a_real_asgi_server(guarded: None) -> None:
    # No Content-Length: Django's request.body would read it whole; the view reads 64 KiB + 1.
    with _asgi_server() as port:
        status, answer = post_chunked(port, "/models/rows/predict", [b" " * 65536] * 32)
        assert (status, answer["error"]["type"]) == (413, "request_too_large")
        status, answer = post_chunked(port, "/models/rows/predict", [b'{"x": [[1, 2]]}'])
        assert (status, answer) == (200, {"y": [[1.0, 2.0]]})


def test_a_huge_chunked_body_is_refused_under_asgi_within_a_memory_limit() -> None:
    # 100 MB of "{}," would parse into 33 million dicts (over 2 GB); the child has 1.5 GB.
    outcome = run_limited(
        f"""
        import os, resource, socket, sys, threading, time
        sys.path.insert(0, {str(EXAMPLE_DIR)!r})
        os.environ["DJANGO_SETTINGS_MODULE"] = "scoring.settings"
        import uvicorn
        from scoring.asgi import application
        from tests.serving_fixtures import post_chunked

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            application, lifespan="off", ws="none", http="h11", loop="asyncio", log_level="error"
        )
        server = uvicorn.Server(config)
        threading.Thread(target=server.run, kwargs={{"sockets": [sock]}}, daemon=True).start()
        while not server.started:
            time.sleep(0.01)
        port = sock.getsockname()[1]
        chunks = [b'{{"instances": ['] + [b"{{}}," * 349_525] * 100
        huge = post_chunked(port, "/models/iris/predict", chunks)
        after = post_chunked(port, "/models/iris/predict", [{json.dumps(RECORD).encode()!r}])
        report(
            huge=huge, after_status=after[0],
            peak_mb=peak() // 2**20,
        )
        """
    )
    assert outcome.result is not None, outcome.stderr[-3000:]
    status, answer = outcome.result["huge"]
    assert (status, answer["error"]["type"]) == (413, "request_too_large")
    assert outcome.result["after_status"] == 200
    assert outcome.result["peak_mb"] < 512


# -- the Open Inference Protocol ------------------------------------------------------------------

#: This module as a URLconf: the example's URLs, and the protocol at the root.
urlpatterns: list[Any] = []


@pytest.fixture
def open_inference() -> Iterator[None]:
    """The example's URLs with ``modelkit.django.oip_urls`` included at the root."""
    from django.urls import include, path
    from scoring.urls import urlpatterns as example

    urlpatterns[:] = [path("", include("modelkit.django.oip_urls")), *example]
    try:
        with override_settings(ROOT_URLCONF=__name__):
            yield
    finally:
        urlpatterns.clear()


def test_the_open_inference_protocol_on_a_real_asgi_server(open_inference: None) -> None:
    from tests.oip_clients import exercise

    with _asgi_server() as port:
        exercise(port)


def test_the_protocol_on_the_test_clients(open_inference: None) -> None:
    body = {
        "id": "7",
        "inputs": [
            {"name": n, "shape": [1], "datatype": "FP64", "data": [RECORD[n]]} for n in RECORD
        ],
    }
    answer = Client().post("/v2/models/iris/infer", body, content_type="application/json")
    assert answer.status_code == 200
    assert answer.json()["id"] == "7"
    assert answer.json()["outputs"][0] == {
        "name": "label",
        "datatype": "BYTES",
        "shape": [1],
        "data": ["virginica"],
    }

    async def scenario() -> Any:
        return await AsyncClient().post(
            "/v2/models/iris/infer", body, content_type="application/json"
        )

    assert asyncio.run(scenario()).content == answer.content
    # Over the example's MAX_BATCH_SIZE: 413 before the model runs, in the protocol's shape.
    rows = [{**item, "shape": [LIMIT + 1], "data": [1.0] * (LIMIT + 1)} for item in body["inputs"]]
    refused = Client().post(
        "/v2/models/iris/infer", {"inputs": rows}, content_type="application/json"
    )
    assert refused.status_code == 413
    assert f"at most {LIMIT}" in refused.json()["error"]
    missing = Client().get("/v2/models/nope")
    assert (missing.status_code, missing["Content-Type"]) == (404, "application/json")
    assert "nope" in missing.json()["error"]


@pytest.mark.parametrize(
    "setting",
    [
        pytest.param({"MODELS": {"iris": "missing"}}, id="bad-bundle"),
        pytest.param({"MODLES": {"iris": str(BUNDLE)}}, id="broken-settings"),
    ],
)
def test_models_that_cannot_load_are_not_ready_and_answer_the_protocols_500(
    open_inference: None,
    tmp_path: Path,
    setting: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> list[Any]:
        # asyncio.run shuts the loop's executor down, where the failed load ran.
        client = AsyncClient()
        return [
            await client.get("/v2/health/live"),
            await client.get("/v2/health/ready"),
            await client.get("/v2/models/iris/ready"),
            await client.get("/v2/models/iris"),
            await client.post("/v2/models/iris/infer", {}, content_type="application/json"),
        ]

    if "MODELS" in setting:
        setting = {"MODELS": {"iris": str(tmp_path / "missing")}}
    with override_settings(MODELKIT=setting):
        live, ready, model_ready, *failed = asyncio.run(scenario())
    assert live.status_code == 200
    assert (ready.status_code, ready.content) == (400, b"")
    assert (model_ready.status_code, model_ready.content) == (400, b"")
    for response in failed:  # not a 503 that says to retry, forever
        assert (response.status_code, response["Content-Type"]) == (500, "application/json")
        assert response.json() == {"error": "The models could not be loaded; see the server log."}
    assert "modelkit.E00" in caplog.text


def test_any_failure_to_load_is_the_protocols_json_500(
    open_inference: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")

    _loading.reset()
    monkeypatch.setattr(_loading.Registry, "from_config", broken)
    ready = Client().get("/v2/health/ready")
    assert (ready.status_code, ready.content) == (400, b"")
    response = Client().get("/v2/models/iris")
    assert (response.status_code, response["Content-Type"]) == (500, "application/json")
    assert "secret" not in response.content.decode()
    assert "secret internal detail" in caplog.text


# -- warm-up and readiness -----------------------------------------------------------------------


@pytest.mark.parametrize("loading", ["lazy", "eager"])
@pytest.mark.parametrize("warms", [True, False], ids=["warmup", "warmup-false"])
def test_models_are_warmed_up_unobserved_before_the_protocol_says_ready(
    open_inference: None, with_cases: Path, watch: Watch, loading: str, warms: bool
) -> None:
    bundle = with_cases
    table = {"path": str(bundle), "drift": True, **({} if warms else {"warmup": False})}
    with override_settings(MODELKIT={"MODELS": {"iris": table}, "LOADING": loading}):
        assert watch.runs == {}
        ready = Client().get("/v2/health/ready")  # loads the models (eager: before the view)
        assert (ready.status_code, ready.content) == (200, b"")
        cases = cases_in(bundle)
        # The check's batch, then (warmed up) each case alone and all of them in one batch.
        assert watch.runs == ({"run_record": len(cases), "run": 2} if warms else {"run": 1})
        watch.assert_unobserved()
        assert models["iris"].model.drift().count == 0
        answer = Client().post(PREDICT, cases[0], content_type="application/json")
        assert answer.status_code == 200
        assert watch.observed() == {"hook": 1, "log": 1, "spans": 1, "metrics": 1}


def test_a_model_that_fails_its_reference_cases_is_not_ready_and_logged_once(
    open_inference: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = save_iris_answering_otherwise(tmp_path / "iris")
    with (
        override_settings(MODELKIT={"MODELS": {"iris": str(bundle)}, "LOADING": "eager"}),
        caplog.at_level(logging.ERROR, logger="modelkit"),
    ):
        for _ in range(3):  # a probe every few seconds
            ready = Client().get("/v2/health/ready")
            assert (ready.status_code, ready.content) == (400, b"")
        failed = Client().get("/v2/models/iris")
        assert failed.json() == {"error": "The models could not be loaded; see the server log."}
        for _ in range(3):
            assert Client().get("/models/iris").status_code == 500
        assert Client().get("/favicon.ico").status_code == 404  # the rest of the site answers
    logged = [r for r in caplog.records if r.getMessage().startswith("modelkit: the models")]
    assert len(logged) == 2  # once by the protocol, once by the JSON endpoints
    assert "modelkit.E005" in caplog.text
    assert "no longer answers its reference cases" in caplog.text


# -- the OpenAPI document -------------------------------------------------------------------------


def test_the_openapi_document_describes_the_included_endpoints(open_inference: None) -> None:
    from django.conf import settings
    from django.urls import include, path

    from modelkit._openapi import openapi_document
    from modelkit.django import conf

    urlpatterns.insert(0, path("", include("modelkit.django.openapi_urls")))

    async def scenario() -> tuple[Any, Any]:
        client = AsyncClient()
        return await client.get("/openapi.json"), await client.post("/openapi.json")

    answer, refused = asyncio.run(scenario())
    assert (answer.status_code, answer["Content-Type"]) == (200, "application/json")
    limits = conf.get_settings()
    assert answer.json() == openapi_document(
        load_models(),
        prefix="/models/",
        max_batch_size=limits.max_batch_size,
        max_body_size=min(limits.max_body_size, settings.DATA_UPLOAD_MAX_MEMORY_SIZE),
        has_open_inference=True,
    )
    assert {"/models/iris/predict", "/v2/models/iris/infer"} <= set(answer.json()["paths"])
    assert (refused.status_code, refused["Allow"]) == (405, "GET, HEAD, OPTIONS")


def test_the_openapi_document_leaves_out_the_protocol_when_it_is_not_mounted() -> None:
    from django.urls import include, path
    from scoring.urls import urlpatterns as example

    urlpatterns[:] = [path("", include("modelkit.django.openapi_urls")), *example]
    try:
        with override_settings(ROOT_URLCONF=__name__):
            load_models()

            async def scenario() -> Any:
                return await AsyncClient().get("/openapi.json")

            paths = asyncio.run(scenario()).json()["paths"]
    finally:
        urlpatterns.clear()
    assert "/models/iris/predict" in paths
    assert not [url for url in paths if url.startswith("/v2")]


# -- the report page ----------------------------------------------------------------------------


def test_the_report_page_is_served_only_when_the_settings_ask_for_it(client: Client) -> None:
    from django.conf import settings

    # Off, the URL is no endpoint to any method: no 405 or Allow header says it could be one.
    for method in ("get", "head", "post", "options"):
        off = getattr(client, method)("/models/iris/report")
        assert off.status_code == 404, method
        assert "Allow" not in off
    assert _error(client.get("/models/iris/report"))["type"] == "not_found"
    with override_settings(MODELKIT={**settings.MODELKIT, "REPORT": True}):
        refused = client.post("/models/iris/report")
        assert refused.status_code == 405
        assert refused["Allow"] == "GET, HEAD, OPTIONS"
        response = client.get("/models/iris/report")
        assert response.status_code == 200
        assert response["Content-Type"] == "text/html; charset=utf-8"
        assert response["Content-Security-Policy"].startswith("default-src 'none'")
        page = response.content.decode()
        assert "<svg" in page
        assert "iris" in page
        assert _error(client.get("/models/nope/report"))["type"] == "unknown_model"


def test_a_report_setting_that_is_not_a_boolean_is_refused() -> None:
    from django.conf import settings

    from modelkit.django import conf

    with (
        override_settings(MODELKIT={**settings.MODELKIT, "REPORT": "yes"}),
        pytest.raises(ImproperlyConfigured, match=r"\['REPORT'\] must be True or False"),
    ):
        conf.get_settings()
