"""modelkit.flask: the extension on test clients, and the example app on real servers.

The example (``examples/flask_app``) is served by waitress in a background thread on 127.0.0.1
and called over HTTP with the standard library, from several threads at once; then by gunicorn
``--preload`` with two workers, which must answer with the models the master loaded before it
forked.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import importlib.util
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import modelkit

flask = pytest.importorskip("flask")
waitress = pytest.importorskip("waitress")

from modelkit.flask import ModelKit, ModelKitState, models  # noqa: E402 - after the skip
from tests.limited import run_limited  # noqa: E402
from tests.serving_fixtures import RUNTIME_INTERNALS, post_chunked, save_all  # noqa: E402
from tests.warmup_fixtures import Watch, cases_in  # noqa: E402

pytestmark = pytest.mark.integration

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "flask_app"
BUNDLE = EXAMPLE_DIR / "bundles" / "iris"
RECORD = {"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 5.1, "petal_width": 1.8}
JSON = {"Content-Type": "application/json"}
PREDICT = "/models/iris/predict"


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def no_threads_left_behind() -> Iterator[None]:
    """Every server, client and registry this module starts is stopped by its end."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while (left := set(threading.enumerate()) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, sorted(thread.name for thread in left)


@pytest.fixture(scope="module")
def example() -> Iterator[ModuleType]:
    """The example's ``app.py``, imported as a module (examples are not a package)."""
    name = "modelkit_flask_example"
    spec = importlib.util.spec_from_file_location(name, EXAMPLE_DIR / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # Flask finds the app's root path (templates) through it
    spec.loader.exec_module(module)
    yield module
    del sys.modules[name]


@pytest.fixture
def make_app(example: ModuleType) -> Iterator[Callable[..., flask.Flask]]:
    """The example's factory; every app it makes has its models closed after the test."""
    apps: list[flask.Flask] = []

    def make(config: Mapping[str, Any] | None = None) -> flask.Flask:
        app: flask.Flask = example.create_app(config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["modelkit"].close()


class Server:
    """A waitress server on 127.0.0.1 (a free port), running in a background thread."""

    def __init__(self, app: flask.Flask) -> None:
        self._server = waitress.create_server(app, host="127.0.0.1", port=0, threads=8)
        self.port = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._server.run, name="waitress-loop")
        self._thread.start()

    def stop(self) -> None:
        server = self._server

        def close_everything() -> None:  # on the server's loop thread, which then returns
            for dispatcher in list(server._map.values()):
                dispatcher.close()

        server.trigger.pull_trigger(close_everything)
        self._thread.join(10)
        server.task_dispatcher.shutdown()
        assert not self._thread.is_alive()


@pytest.fixture(scope="module")
def served(example: ModuleType) -> Iterator[tuple[flask.Flask, int]]:
    app = example.create_app()
    server = Server(app)
    yield app, server.port
    server.stop()
    app.extensions["modelkit"].close()


@pytest.fixture
def port(served: tuple[flask.Flask, int]) -> int:
    return served[1]


def call(
    port: int,
    method: str,
    path: str,
    body: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, http.client.HTTPMessage, Any]:
    """One request on its own connection: the status, the headers and the decoded JSON body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    decoded = json.loads(data) if response.getheader("Content-Type") == "application/json" else data
    return response.status, response.headers, decoded


def predict(port: int, payload: Any, **headers: str) -> tuple[int, Any]:
    status, _, body = call(
        port, "POST", "/models/iris/predict", json.dumps(payload), {**JSON, **headers}
    )
    return status, body


def flower_records(count: int = 150) -> list[dict[str, float]]:
    """Measurements in the ranges of the iris data set, different on every call of a run."""
    rng = random.Random(count)
    ranges = {"sepal_length": (4.3, 7.9), "sepal_width": (2.0, 4.4)}
    ranges |= {"petal_length": (1.0, 6.9), "petal_width": (0.1, 2.5)}
    return [
        {name: round(rng.uniform(low, high), 1) for name, (low, high) in ranges.items()}
        for _ in range(count)
    ]


def assert_same_output(served: Any, direct: Any) -> None:
    assert served["label"] == direct.label
    assert served["probabilities"] == pytest.approx(direct.probabilities, abs=1e-6)


def assert_serving(port: int) -> None:
    status, body = predict(port, RECORD)
    assert status == 200, body
    assert body["label"] == "virginica"


# -- the example on a real server ---------------------------------------------------------------


def test_concurrent_requests_get_the_models_answers(served: tuple[flask.Flask, int]) -> None:
    app, port = served
    records = flower_records()
    with app.app_context():
        expected = [models["iris"].predict(record) for record in records]

    def single(index: int) -> None:
        status, body = predict(port, records[index])
        assert status == 200, body
        assert_same_output(body, expected[index])

    def batch(start: int) -> None:
        status, body = predict(port, {"instances": records[start : start + 10]})
        assert status == 200, body
        assert len(body["predictions"]) == 10
        for output, direct in zip(body["predictions"], expected[start : start + 10], strict=True):
            assert_same_output(output, direct)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(single, i) for i in range(len(records))]
        futures += [pool.submit(batch, start) for start in range(0, len(records), 10)]
        for future in futures:
            future.result()


def test_index_and_description(port: int) -> None:
    digest = modelkit.digest(BUNDLE)
    status, _, body = call(port, "GET", "/models")
    assert status == 200
    assert body == {
        "models": [
            {
                "name": "iris",
                "version": "1.0.0",
                "digest": digest,
                "task": "classification",
                "url": "/models/iris",
            }
        ]
    }
    status, _, body = call(port, "GET", "/models/iris")
    assert status == 200
    assert (body["name"], body["version"], body["digest"], body["format"]) == (
        "iris",
        "1.0.0",
        digest,
        "onnx",
    )
    assert set(body["input_schema"]["properties"]) == set(RECORD)
    assert body["input_schema"]["properties"]["sepal_length"]["type"] == "number"
    assert "label" in body["output_schema"]["properties"]


BAD_REQUESTS = [
    pytest.param("POST", PREDICT, b"{not json", (400, "malformed_request"), id="json"),
    pytest.param("POST", PREDICT, b"\xff\xfe\x00", (400, "malformed_request"), id="utf8"),
    pytest.param("POST", PREDICT, b"[1, 2]", (400, "malformed_request"), id="array"),
    pytest.param("POST", PREDICT, b"", (400, "malformed_request"), id="empty"),
    pytest.param("POST", PREDICT, b'{"instances": 3}', (400, "malformed_request"), id="batch"),
    pytest.param("POST", "/models/nope/predict", b"{}", (404, "unknown_model"), id="model"),
    pytest.param("GET", "/models/nope", None, (404, "unknown_model"), id="description"),
    pytest.param("GET", "/models/iris/nothing/here", None, (404, "not_found"), id="path"),
    pytest.param(
        "POST",
        PREDICT,
        json.dumps({"instances": [RECORD] * 101}).encode(),
        (413, "batch_too_large"),
        id="batch-over-limit",
    ),
    pytest.param(
        "POST",
        PREDICT,
        b" " * (64 * 1024 + 1),
        (413, "request_too_large"),
        id="body-over-max-content-length",
    ),
    pytest.param("GET", PREDICT, None, (405, "method_not_allowed"), id="get-predict"),
    pytest.param("DELETE", "/models", None, (405, "method_not_allowed"), id="delete-index"),
]


@pytest.mark.parametrize(("method", "path", "body", "expected"), BAD_REQUESTS)
def test_bad_requests_get_the_documented_status_and_body(
    port: int, method: str, path: str, body: bytes | None, expected: tuple[int, str]
) -> None:
    status, kind = expected
    got, headers, answer = call(port, method, path, body, JSON if body is not None else None)
    assert got == status, answer
    assert headers["Content-Type"] == "application/json"
    assert set(answer) == {"error"}
    assert answer["error"]["type"] == kind
    assert isinstance(answer["error"]["message"], str)
    assert_serving(port)


def test_wrong_method_lists_the_allowed_ones(port: int) -> None:
    status, headers, _ = call(port, "PUT", "/models/iris/predict", b"{}", JSON)
    assert status == 405
    assert headers["Allow"] == "POST, OPTIONS"
    status, headers, _ = call(port, "OPTIONS", "/models/iris")
    assert status == 204
    assert headers["Allow"] == "GET, HEAD, OPTIONS"


def test_invalid_record_is_422_with_each_field(port: int) -> None:
    status, body = predict(port, {**RECORD, "sepal_length": "long"})
    assert status == 422
    error = body["error"]
    assert error["type"] == "invalid_input"
    assert [(d["field"], d["index"]) for d in error["details"]] == [("sepal_length", None)]
    assert "sepal_length" in error["details"][0]["message"]
    status, body = predict(port, {"sepal_length": 1.0, "petal_length": 1.0})
    assert status == 422
    assert {(d["field"], d["index"]) for d in body["error"]["details"]} == {
        ("sepal_width", None),
        ("petal_width", None),
    }


def test_invalid_batch_is_422_with_field_and_index(port: int) -> None:
    instances = [RECORD, RECORD, {**RECORD, "petal_width": None}, RECORD, {**RECORD, "x": 1}]
    status, body = predict(port, {"instances": instances})
    assert status == 422
    details = body["error"]["details"]
    assert [(d["field"], d["index"]) for d in details] == [("petal_width", 2), ("x", 4)]
    assert_serving(port)


def test_unexpected_failure_is_500_without_internals(
    served: tuple[flask.Flask, int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, port = served
    model = app.extensions["modelkit"].registry["iris"].model

    def broken(records: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(model, "predict", broken)
    monkeypatch.setattr(model, "predict_batch", broken)
    with caplog.at_level(logging.ERROR, logger="modelkit"):
        for payload in (RECORD, {"instances": [RECORD]}):
            status, _, body = call(port, "POST", "/models/iris/predict", json.dumps(payload), JSON)
            assert status == 500
            assert body["error"]["type"] == "internal_error"
            assert "secret" not in json.dumps(body)
            assert "Traceback" not in json.dumps(body)
    assert "secret internal detail" in caplog.text
    monkeypatch.undo()
    assert_serving(port)


def test_scoring_page(port: int) -> None:
    form = "sepal_length=6.7&sepal_width=3.0&petal_length=5.2&petal_width=2.3"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, page = call(port, "POST", "/", form, headers)
    assert status == 200
    assert b"Prediction: virginica" in page
    status, _, page = call(port, "POST", "/", form.replace("=3.0", "=wide"), headers)
    assert status == 200
    assert b"enter a number" in page


# -- the extension ------------------------------------------------------------------------------


def test_each_app_gets_its_own_models(make_app: Callable[..., flask.Flask]) -> None:
    first, second = make_app(), make_app({"MODELKIT_MAX_BATCH_SIZE": 1})
    assert first.extensions["modelkit"].registry is not second.extensions["modelkit"].registry
    with first.app_context():
        in_first = models._get_current_object()  # type: ignore[attr-defined]
    with second.app_context():
        assert models._get_current_object() is second.extensions["modelkit"].registry  # type: ignore[attr-defined]
        assert models["iris"].predict(RECORD).label == "virginica"
    assert in_first is first.extensions["modelkit"].registry
    batch = {"instances": [RECORD, RECORD]}
    assert first.test_client().post("/models/iris/predict", json=batch).status_code == 200
    assert second.test_client().post("/models/iris/predict", json=batch).status_code == 413
    second.extensions["modelkit"].close()
    assert first.test_client().post("/models/iris/predict", json=RECORD).status_code == 200


def test_one_extension_serves_apps_with_different_models() -> None:
    kit = ModelKit(url_prefix="/api/models")
    apps = []
    for name in ("setosa-detector", "species"):
        app = flask.Flask(__name__)
        app.config["MODELKIT_MODELS"] = {name: str(BUNDLE)}
        kit.init_app(app)
        apps.append(app)
    try:
        for app, name in zip(apps, ("setosa-detector", "species"), strict=True):
            index = app.test_client().get("/api/models").get_json()
            assert [m["name"] for m in index["models"]] == [name]
            assert index["models"][0]["url"] == f"/api/models/{name}"
    finally:
        for app in apps:
            app.extensions["modelkit"].close()


def test_without_url_prefix_there_are_no_endpoints(tmp_path: Path) -> None:
    app = flask.Flask(__name__, root_path=str(tmp_path))
    app.config["MODELKIT_MODELS"] = {"iris": str(BUNDLE)}
    ModelKit(app)
    try:
        assert [rule.endpoint for rule in app.url_map.iter_rules()] == ["static"]
        with app.app_context():
            assert models.names() == ["iris"]
    finally:
        app.extensions["modelkit"].close()


def test_lazy_loading_loads_once_on_first_use(
    make_app: Callable[..., flask.Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = []
    original = modelkit.Registry.from_config

    def counted(*args: Any, **kwargs: Any) -> modelkit.Registry:
        builds.append(threading.get_ident())
        time.sleep(0.05)  # long enough for the other threads to arrive while it loads
        return original(*args, **kwargs)

    monkeypatch.setattr(modelkit.Registry, "from_config", counted)
    app = make_app({"MODELKIT_LAZY": True})
    state: ModelKitState = app.extensions["modelkit"]
    assert not state.is_loaded
    assert builds == []
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        registries = list(pool.map(lambda _: state.registry, range(8)))
    assert len(builds) == 1
    assert all(registry is registries[0] for registry in registries)
    assert app.test_client().post("/models/iris/predict", json=RECORD).status_code == 200


def test_lazy_app_serves_its_first_request(make_app: Callable[..., flask.Flask]) -> None:
    app = make_app({"MODELKIT_LAZY": True})
    assert not app.extensions["modelkit"].is_loaded
    response = app.test_client().post("/models/iris/predict", json=RECORD)
    assert response.status_code == 200
    assert response.get_json()["label"] == "virginica"
    assert app.extensions["modelkit"].is_loaded


def test_models_outside_an_app_context_says_so() -> None:
    with pytest.raises(RuntimeError, match="outside of a Flask application context"):
        models["iris"]


def test_models_in_an_app_without_modelkit_says_so() -> None:
    app = flask.Flask("plain")
    with app.app_context(), pytest.raises(RuntimeError, match=r"not initialised on .*'plain'"):
        models.names()


def test_closed_models_cannot_be_used(make_app: Callable[..., flask.Flask]) -> None:
    app = make_app()
    state: ModelKitState = app.extensions["modelkit"]
    state.close()
    state.close()  # twice is fine
    with app.app_context(), pytest.raises(RuntimeError, match="closed"):
        models["iris"]
    response = app.test_client().get("/models")
    assert response.status_code == 500
    assert response.get_json()["error"]["type"] == "internal_error"


def test_init_app_twice_is_refused(make_app: Callable[..., flask.Flask]) -> None:
    app = make_app()
    with pytest.raises(RuntimeError, match="already initialised"):
        ModelKit().init_app(app)


def test_url_prefix_must_be_a_path() -> None:
    with pytest.raises(ValueError, match="must start with '/'"):
        ModelKit(url_prefix="models")


def test_routing_key_header_makes_canary_routing_sticky(
    make_app: Callable[..., flask.Flask], tmp_path: Path
) -> None:
    from sklearn.dummy import DummyClassifier

    X = [list(RECORD.values())] * 4
    constant = DummyClassifier(strategy="constant", constant="setosa").fit(X, ["setosa"] * 4)
    import pandas

    sample = pandas.DataFrame([RECORD] * 4)
    modelkit.save(constant, tmp_path / "canary", name="iris", version="2", sample_input=sample)
    app = make_app(
        {
            "MODELKIT_MODELS": {
                "iris": {
                    "path": "bundles/iris",
                    "version_policy": "ignore",
                    "canary": {"path": str(tmp_path / "canary"), "weight": 0.5},
                }
            },
            "MODELKIT_LOCK": None,
        }
    )
    client = app.test_client()

    def label(key: str) -> str:
        response = client.post("/models/iris/predict", json=RECORD, headers={"X-Modelkit-Key": key})
        assert response.status_code == 200
        return str(response.get_json()["label"])

    labels = {key: label(key) for key in map(str, range(40))}
    assert set(labels.values()) == {"setosa", "virginica"}
    assert {key: label(key) for key in labels} == labels


# -- configuration ------------------------------------------------------------------------------


def _app(tmp_path: Path, **config: Any) -> flask.Flask:
    app = flask.Flask("configured", root_path=str(tmp_path))
    app.config.update(config)
    return app


def test_config_file_and_models_merge_with_relative_paths(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "models.toml").write_text(
        f'[models.from-file]\npath = "{os.path.relpath(BUNDLE, config_dir)}"\n'
        'version_policy = "ignore"\n',
        encoding="utf-8",
    )
    app = _app(
        tmp_path,
        MODELKIT_CONFIG="config/models.toml",  # relative to the app's root path
        MODELKIT_MODELS={
            "from-mapping": {"path": os.path.relpath(BUNDLE, tmp_path), "version_policy": "ignore"}
        },
    )
    ModelKit(app)
    try:
        with app.app_context():
            assert sorted(models.names()) == ["from-file", "from-mapping"]
            assert models["from-file"].digest == models["from-mapping"].digest
    finally:
        app.extensions["modelkit"].close()


def test_lock_file_pins_every_model(tmp_path: Path) -> None:
    digest = modelkit.digest(BUNDLE)
    other = "sha256:" + "0" * 64
    lock = tmp_path / "models.lock"
    lock.write_text(
        f'lock_version = 1\n[models.iris]\npath = "x"\nsha256 = "{other}"\n', encoding="utf-8"
    )
    app = _app(
        tmp_path,
        MODELKIT_MODELS={"iris": str(BUNDLE)},
        MODELKIT_LOCK="models.lock",
    )
    with pytest.raises(modelkit.IntegrityError, match=r"models\.iris") as caught:
        ModelKit(app)
    assert caught.value.actual == digest


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [
        pytest.param(
            {"MODELKIT_MODEL": {"iris": "x"}},
            ValueError,
            "'MODELKIT_MODEL'.*Did you mean 'MODELKIT_MODELS'",
            id="key-typo",
        ),
        pytest.param(
            {"MODELKIT_MODELS": ["iris"]}, ValueError, "MODELKIT_MODELS must map", id="not-mapping"
        ),
        pytest.param(
            {"MODELKIT_MODELS": {"iris": {"pth": "bundles/iris"}}},
            ValueError,
            r"Invalid MODELKIT_MODELS: .*models\.iris\.pth: unknown key \(did you mean 'path'\?\)",
            id="option-typo",
        ),
        pytest.param(
            {"MODELKIT_MODELS": {"iris": {"path": "x", "canary": {"path": "y", "weight": 2}}}},
            ValueError,
            r"models\.iris\.canary\.weight",
            id="canary-weight",
        ),
        pytest.param(
            {"MODELKIT_MODELS": {"iris": "no/such/bundle"}},
            modelkit.BundleError,
            r"models\.iris",
            id="missing-bundle",
        ),
        pytest.param(
            {"MODELKIT_CONFIG": "missing.toml"},
            modelkit.BundleError,
            "MODELKIT_CONFIG: .*missing.toml.* does not exist",
            id="missing-config",
        ),
        pytest.param(
            {"MODELKIT_MODELS": {}, "MODELKIT_LOCK": "missing.lock"},
            modelkit.BundleError,
            "missing.lock",
            id="missing-lock",
        ),
        pytest.param({"MODELKIT_LAZY": "yes"}, ValueError, "MODELKIT_LAZY", id="lazy"),
        pytest.param(
            {"MODELKIT_MAX_BATCH_SIZE": 0}, ValueError, "MODELKIT_MAX_BATCH_SIZE", id="batch-size"
        ),
        pytest.param({"MODELKIT_CONFIG": 3}, ValueError, "MODELKIT_CONFIG must be", id="config"),
    ],
)
def test_config_errors_name_the_key(
    tmp_path: Path, config: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        ModelKit(_app(tmp_path, **config))


def test_a_model_in_both_sources_is_refused(tmp_path: Path) -> None:
    (tmp_path / "models.toml").write_text('[models]\niris = "a"\n', encoding="utf-8")
    app = _app(tmp_path, MODELKIT_CONFIG="models.toml", MODELKIT_MODELS={"iris": "b"})
    with pytest.raises(ValueError, match=r"models\.iris is configured twice.*MODELKIT_MODELS"):
        ModelKit(app)


def test_lazy_apps_check_their_config_at_start(tmp_path: Path) -> None:
    app = _app(tmp_path, MODELKIT_LAZY=True, MODELKIT_MODELS={"iris": {"weight": 1}})
    with pytest.raises(ValueError, match=r"models\.iris"):
        ModelKit(app)


def test_missing_flask_names_the_extra() -> None:
    code = (
        "import sys\nsys.modules['flask'] = None\n"
        "try:\n    import modelkit.flask\n"
        "except ModuleNotFoundError as exc:\n    print(type(exc).__name__, exc.extra, exc)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert output.startswith("MissingDependencyError flask ")
    assert "modelkit.flask" in output


# -- gunicorn --preload -------------------------------------------------------------------------


@pytest.fixture
def gunicorn() -> Iterator[tuple[int, int]]:
    """``gunicorn --preload -w 2`` on the example app: the master's pid and the port."""
    if importlib.util.find_spec("gunicorn") is None:
        pytest.skip("gunicorn is not installed")
    command = [sys.executable, "-m", "gunicorn"]
    options = subprocess.run(
        [*command, "--help"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    command += ["--preload", "--workers=2", "--bind=127.0.0.1:0", "--graceful-timeout=3"]
    command.append("--config=python:modelkit.gunicorn")  # workers exit without hanging
    if "--no-control-socket" in options:  # gunicorn 24+ would make one in the home directory
        command.append("--no-control-socket")
    command += [f"--chdir={EXAMPLE_DIR}", "app:create_app()"]
    repository = str(EXAMPLE_DIR.parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([repository, os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if sum("Booting worker" in seen for seen in lines) >= 2 and any(
                "Listening at" in seen for seen in lines
            ):
                ready.set()

    reader = threading.Thread(target=read, name="gunicorn-log")
    reader.start()
    try:
        if not ready.wait(30):
            pytest.fail("gunicorn did not start:\n" + "".join(lines))
        listening = next(line for line in lines if "Listening at" in line)
        match = re.search(r"127\.0\.0\.1:(\d+)", listening)
        assert match is not None, listening
        yield process.pid, int(match.group(1))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(5)
        assert process.stderr is not None
        process.stderr.close()
    assert process.returncode == 0, "".join(lines)


def test_gunicorn_preload_workers_serve_the_models_loaded_before_the_fork(
    gunicorn: tuple[int, int],
) -> None:
    master, port = gunicorn
    records = flower_records()
    with modelkit.Registry() as registry:  # the same bundle, loaded here, for the answers
        route = registry.add("iris", BUNDLE)
        expected = [route.predict(record) for record in records]

    def health(_: int) -> int:
        status, _, body = call(port, "GET", "/healthz")
        assert status == 200, body
        assert body["booted_by"] == master  # the app (and its models) came from the master
        assert body["pid"] != master
        return int(body["pid"])

    def single(index: int) -> None:
        status, body = predict(port, records[index])
        assert status == 200, body
        assert_same_output(body, expected[index])

    single(0)  # one call first: a worker that cannot predict fails here, not 50 times over
    workers: set[int] = set()
    deadline = time.monotonic() + 20
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
    try:
        while len(workers) < 2 and time.monotonic() < deadline:
            predictions = [pool.submit(single, i) for i in range(0, len(records), 3)]
            workers.update(pool.map(health, range(16)))
            for future in predictions:
                future.result()
    finally:
        pool.shutdown(cancel_futures=True)  # on a failure, stop at the calls in flight
    assert len(workers) == 2, workers


# -- limits and runtime errors, on a real server ------------------------------------------------

BODY_LIMIT = 64 * 1024
ANSWER_LIMIT = 2**20


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The hostile graphs on waitress, behind a 64 KiB body, 1,000 rows and 1 MiB answers."""
    bundles = save_all(tmp_path_factory.mktemp("hostile"))
    app = flask.Flask(__name__)
    app.config.update(
        MODELKIT_MODELS={name: str(path) for name, path in bundles.items()},
        MODELKIT_MAX_BODY_SIZE=BODY_LIMIT,
        MODELKIT_MAX_BATCH_SIZE=1000,
        MODELKIT_MAX_RESPONSE_SIZE=ANSWER_LIMIT,
    )
    ModelKit(app, url_prefix="/models")
    server = Server(app)
    yield server.port
    server.stop()
    app.extensions["modelkit"].close()


def test_a_body_over_modelkit_max_body_size_is_413_before_it_is_parsed(guarded: int) -> None:
    body = b"[" * (BODY_LIMIT + 1)  # JSON nested past any parser's depth, had it been parsed
    status, headers, answer = call(guarded, "POST", "/models/rows/predict", body, JSON)
    assert status == 413
    assert headers["Content-Type"] == "application/json"
    assert answer["error"]["type"] == "request_too_large"
    assert str(BODY_LIMIT) in answer["error"]["message"]


def test_a_chunked_body_over_the_limit_is_413(guarded: int) -> None:
    status, answer = post_chunked(guarded, "/models/rows/predict", [b" " * 65536] * 16)
    assert (status, answer["error"]["type"]) == (413, "request_too_large")
    status, answer = post_chunked(guarded, "/models/rows/predict", [b'{"x": ', b"[[1, 2]]}"])
    assert (status, answer) == (200, {"y": [[1.0, 2.0]]})


@pytest.mark.parametrize(
    ("rows", "status"), [(1000, 200), (1001, 413)], ids=["at-the-limit", "over"]
)
def test_tensor_rows_count_against_modelkit_max_batch_size(
    guarded: int, rows: int, status: int
) -> None:
    got, _, answer = call(
        guarded, "POST", "/models/rows/predict", json.dumps({"x": [[0.5, 1.5]] * rows}), JSON
    )
    assert got == status
    if status == 413:
        assert answer["error"]["type"] == "batch_too_large"
    else:
        assert len(answer["y"]) == rows


def test_an_answer_over_modelkit_max_response_size_is_a_json_500_and_the_server_goes_on(
    guarded: int,
) -> None:
    status, headers, answer = call(
        guarded, "POST", "/models/zeros/predict", json.dumps({"shape": [10_000_000]}), JSON
    )
    assert status == 500
    assert headers["Content-Type"] == "application/json"
    assert answer["error"]["type"] == "response_too_large"
    status, _, answer = call(
        guarded, "POST", "/models/zeros/predict", json.dumps({"shape": [2]}), JSON
    )
    assert (status, answer) == (200, {"zeros": [0.0, 0.0]})


def test_an_onnxruntime_refusal_over_http_carries_no_runtime_internals(guarded: int) -> None:
    status, _, answer = call(
        guarded, "POST", "/models/reshape/predict", json.dumps({"x": [1.0, 2.0, 3.0]}), JSON
    )
    assert status == 422
    for internal in RUNTIME_INTERNALS:
        assert internal not in json.dumps(answer)
    assert "cannot be reshaped" in answer["error"]["message"]


@pytest.mark.parametrize(
    "key", ["MODELKIT_MAX_BODY_SIZE", "MODELKIT_MAX_RESPONSE_SIZE", "MODELKIT_MAX_BATCH_SIZE"]
)
@pytest.mark.parametrize("value", [0, -1, "10MiB", True, 1.5])
def test_limit_settings_must_be_positive_integers(tmp_path: Path, key: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"{key} must be a positive integer or None"):
        ModelKit(_app(tmp_path, **{key: value}))


def test_a_huge_chunked_body_is_refused_within_a_memory_limit() -> None:
    # 100 MB of "{}," would parse into 33 million dicts (over 2 GB); the child has 1.5 GB.
    outcome = run_limited(
        f"""
        import resource, threading
        import flask, waitress
        from modelkit.flask import ModelKit
        from tests.serving_fixtures import post_chunked

        app = flask.Flask("limited")
        app.config["MODELKIT_MODELS"] = {{"iris": {str(BUNDLE)!r}}}
        ModelKit(app, url_prefix="/models")
        server = waitress.create_server(app, host="127.0.0.1", port=0, threads=2)
        threading.Thread(target=server.run, daemon=True).start()
        port = server.effective_port
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


def test_the_open_inference_protocol_on_a_real_server(tmp_path: Path) -> None:
    from tests.oip_clients import exercise

    app = _app(tmp_path, MODELKIT_MODELS={"iris": str(BUNDLE)})
    ModelKit(app, url_prefix="/models", oip=True)
    server = Server(app)
    try:
        exercise(server.port)
    finally:
        server.stop()
        app.extensions["modelkit"].close()


def test_the_protocol_is_opt_in_and_keeps_its_error_shape(tmp_path: Path) -> None:
    app = _app(tmp_path, MODELKIT_MODELS={"iris": str(BUNDLE)}, MAX_CONTENT_LENGTH=1024)
    ModelKit(app, url_prefix="/models")
    client = app.test_client()
    assert client.get("/v2").status_code == 404  # Flask's own page: the app has no /v2
    app.extensions["modelkit"].close()

    app = _app(
        tmp_path, MODELKIT_MODELS={"iris": str(BUNDLE)}, MODELKIT_LAZY=True, MAX_CONTENT_LENGTH=1024
    )
    ModelKit(app, oip=True)
    client = app.test_client()
    state = app.extensions["modelkit"]
    assert not state.is_loaded
    live = client.get("/v2/health/live")
    assert (live.status_code, live.data) == (200, b"")
    assert client.get("/v2/health/ready").status_code == 200  # the first probe loads them
    assert state.is_loaded
    too_large = client.post("/v2/models/iris/infer", data=b"x" * 2048)
    assert too_large.status_code == 413
    assert "1024 bytes" in too_large.get_json()["error"]
    wrong = client.get("/v2/models/iris/infer")
    assert (wrong.status_code, wrong.headers["Allow"]) == (405, "POST, OPTIONS")
    assert isinstance(wrong.get_json()["error"], str)
    state.close()


@pytest.mark.parametrize("prefix", ["/v2", "/v2/", "/v2/models", "/v2/models/"])
def test_a_prefix_at_or_under_v2_is_refused_with_the_protocol(prefix: str) -> None:
    with pytest.raises(ValueError, match=r"is the Open Inference Protocol's \(/v2 and under\)"):
        ModelKit(url_prefix=prefix, oip=True)
    assert ModelKit(url_prefix=prefix).url_prefix == prefix  # without it, the URLs are free
    assert ModelKit(url_prefix="/v2models", oip=True).url_prefix == "/v2models"


def test_a_lazy_load_that_fails_is_not_ready_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = _app(tmp_path, MODELKIT_MODELS={"iris": "missing"}, MODELKIT_LAZY=True)
    ModelKit(app, oip=True)
    client = app.test_client()
    with caplog.at_level(logging.ERROR, logger="modelkit"):
        for _ in range(3):  # a probe every few seconds
            ready = client.get("/v2/health/ready")
            assert (ready.status_code, ready.data) == (400, b"")
        assert client.get("/v2/models/iris/ready").status_code == 400
        failed = client.get("/v2/models/iris")
        assert (failed.status_code, failed.get_json()) == (
            500,
            {"error": "The models could not be loaded; see the server log."},
        )
        assert client.get("/v2/health/live").status_code == 200
    logged = [r for r in caplog.records if r.getMessage().startswith("modelkit: the models")]
    assert len(logged) == 1
    assert "missing" in caplog.text  # the reason, with its traceback
    app.extensions["modelkit"].close()


# -- warm-up and readiness -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "warms"),
    [
        pytest.param({}, True, id="eager"),
        pytest.param({"MODELKIT_LAZY": True}, True, id="lazy"),
        pytest.param({"warmup": False}, False, id="warmup-false"),
    ],
)
def test_models_are_warmed_up_unobserved_before_the_server_says_ready(
    tmp_path: Path, with_cases: Path, watch: Watch, settings: dict[str, Any], warms: bool
) -> None:
    is_lazy = settings.pop("MODELKIT_LAZY", False)
    table = {"path": str(with_cases), "drift": True, **settings}
    app = _app(tmp_path, MODELKIT_MODELS={"iris": table}, MODELKIT_LAZY=is_lazy)
    ModelKit(app, url_prefix="/models", oip=True)
    cases = cases_in(with_cases)
    # The check's batch, then (warmed up) each case alone and all of them in one batch.
    loaded = {"run_record": len(cases), "run": 2} if warms else {"run": 1}
    assert watch.runs == ({} if is_lazy else loaded)  # a lazy app loads on the first probe
    server = Server(app)
    try:
        status, _, _ = call(server.port, "GET", "/v2/health/ready")
        assert status == 200
        assert watch.runs == loaded
        watch.assert_unobserved()
        with app.app_context():
            assert models["iris"].model.drift().count == 0
        status, _, _ = call(server.port, "POST", PREDICT, json.dumps(cases[0]), JSON)
        assert status == 200
        assert watch.observed() == {"hook": 1, "log": 1, "spans": 1, "metrics": 1}
    finally:
        server.stop()
        app.extensions["modelkit"].close()


# -- the OpenAPI document -------------------------------------------------------------------------


def test_the_openapi_document_is_served_only_where_asked(tmp_path: Path) -> None:
    from modelkit._openapi import openapi_document

    app = _app(
        tmp_path, MODELKIT_MODELS={"iris": {"path": str(BUNDLE), "version_policy": "ignore"}}
    )
    ModelKit(app, url_prefix="/api/models", openapi_url="/api/openapi.json")
    bare = _app(
        tmp_path, MODELKIT_MODELS={"iris": {"path": str(BUNDLE), "version_policy": "ignore"}}
    )
    ModelKit(bare, url_prefix="/models")
    try:
        answer = app.test_client().get("/api/openapi.json")
        assert answer.status_code == 200
        state = app.extensions["modelkit"]
        assert answer.get_json() == openapi_document(
            state.registry,
            prefix="/api/models",
            max_batch_size=state.max_batch_size,
            max_body_size=state.max_body_size,
        )
        # Mounted under a path, the document says so, and its paths stay the app's own.
        mounted = app.test_client().get("/api/openapi.json", base_url="http://localhost/svc/")
        assert mounted.get_json()["servers"] == [{"url": "/svc"}]
        assert "/api/models/iris/predict" in mounted.get_json()["paths"]
        assert app.test_client().post("/api/openapi.json").status_code == 405
        assert bare.test_client().get("/openapi.json").status_code == 404
    finally:
        app.extensions["modelkit"].close()
        bare.extensions["modelkit"].close()


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"url_prefix": "/models", "openapi_url": "openapi.json"}, "must start with '/'"),
        ({"openapi_url": "/openapi.json"}, "give url_prefix too"),
    ],
)
def test_the_openapi_url_is_checked(options: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        ModelKit(**options)


# -- the report page ----------------------------------------------------------------------------


def test_the_report_page_is_off_unless_asked_for(port: int) -> None:
    status, _, problem = call(port, "GET", "/models/iris/report")
    assert status == 404
    assert problem["error"]["type"] == "not_found"


def test_the_report_page_is_served_over_http_when_asked_for() -> None:
    app = flask.Flask("reported")
    app.config.update(MODELKIT_MODELS={"iris": str(BUNDLE)})
    ModelKit(app, url_prefix="/models", openapi_url="/openapi.json", report=True)
    server = Server(app)
    try:
        status, headers, page = call(server.port, "GET", "/models/iris/report")
        assert status == 200
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert headers["Cache-Control"] == "no-store"
        assert b"<svg" in page
        assert b"iris" in page
        status, headers, body = call(server.port, "HEAD", "/models/iris/report")
        assert (status, headers["Content-Type"], body) == (200, "text/html; charset=utf-8", b"")
        status, headers, _ = call(server.port, "POST", "/models/iris/report")
        assert status == 405
        assert "GET" in headers["Allow"]
        assert call(server.port, "GET", "/models/nope/report")[0] == 404
        _, _, document = call(server.port, "GET", "/openapi.json")
        operation = document["paths"]["/models/iris/report"]["get"]
        assert "text/html" in operation["responses"]["200"]["content"]
    finally:
        server.stop()
        app.extensions["modelkit"].close()


def test_the_report_page_needs_the_json_endpoints() -> None:
    with pytest.raises(ValueError, match="give url_prefix too"):
        ModelKit(report=True)
