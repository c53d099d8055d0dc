"""The framework-neutral JSON endpoints: statuses and bodies for every kind of request, and the
limits on bodies, batches and answers that hold before any work is done."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import modelkit
from modelkit import _serving
from modelkit._serving import Reply, Service
from tests import strategies
from tests.serving_fixtures import RUNTIME_INTERNALS, save_all

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


# -- limits: the body, the batch (tensor rows too) and the answer -------------------------------

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return save_all(tmp_path_factory.mktemp("hostile"))


@pytest.fixture
def guarded(hostile: dict[str, Path]) -> Iterator[Service]:
    """The hostile graphs behind a body limit of 64 KiB, 1,000 rows and answers of 1 MiB."""
    with modelkit.Registry() as registry:
        for name, path in hostile.items():
            registry.add(name, path)
        yield Service(registry, max_batch_size=1000, max_body_size=LIMIT, max_response_size=2**20)


class Stream:
    """A request body stream that counts what is read from it; endless unless ``data`` ends."""

    def __init__(self, data: bytes | None = None, *, piece: int | None = None) -> None:
        self.data = data
        self.piece = piece
        self.read_bytes = 0

    def read(self, size: int) -> bytes:
        if size < 0:
            raise AssertionError("a body read without a limit")
        if self.piece is not None:
            size = min(size, self.piece)
        if self.data is None:
            chunk = b" " * size
        else:
            chunk = self.data[self.read_bytes : self.read_bytes + size]
        self.read_bytes += len(chunk)
        return chunk


def test_a_declared_body_over_the_limit_is_refused_without_reading_it(guarded: Service) -> None:
    stream = Stream()
    reply = guarded.read_body(stream.read, LIMIT + 1)
    assert isinstance(reply, Reply)
    assert (reply.status, _json(reply)["error"]["type"]) == (413, "request_too_large")
    assert str(LIMIT) in _json(reply)["error"]["message"]
    assert stream.read_bytes == 0


@pytest.mark.parametrize("declared", [None, 10], ids=["chunked", "longer-than-declared"])
def test_a_body_is_read_no_further_than_the_limit_plus_one_byte(
    guarded: Service, declared: int | None
) -> None:
    stream = Stream()  # endless: a chunked body, or one that outruns its Content-Length
    reply = guarded.read_body(stream.read, declared)
    assert isinstance(reply, Reply)
    assert (reply.status, _json(reply)["error"]["type"]) == (413, "request_too_large")
    assert stream.read_bytes == LIMIT + 1


def test_a_body_within_the_limit_is_read_whole_whatever_the_pieces(guarded: Service) -> None:
    data = json.dumps({"x": [[0.5, 1.5]] * 3000}).encode()[:LIMIT]
    assert guarded.read_body(Stream(data, piece=1000).read, None) == data
    assert guarded.read_body(Stream(data).read, len(data)) == data


@pytest.mark.parametrize(
    ("value", "length"),
    [
        ("0", 0),
        (" 1024 ", 1024),
        ("9" * 19, int("9" * 19)),
        (None, None),
        ("", None),
        ("-5", None),
        ("+5", None),
        ("1_000", None),  # int() reads it
        ("\u00b2", None),  # "²".isdigit() is true; int() refuses it
        ("\u0663", None),  # an Arabic-Indic 3, which int() reads
        ("1" * 20, None),
        ("1" * 5000, None),  # int() refuses more than 4300 digits
    ],
)
def test_a_byte_length_header_is_ascii_digits_or_none(
    value: str | None, length: int | None
) -> None:
    assert _serving.byte_length(value) == length


def test_without_a_body_limit_the_body_is_read_whole(hostile: dict[str, Path]) -> None:
    with modelkit.Registry() as registry:
        service = Service(registry, max_body_size=None)
        assert service.read_body(lambda size: b"{}" if size < 0 else b"", None) == b"{}"


def test_predict_refuses_a_body_over_the_limit_before_parsing_it(guarded: Service) -> None:
    reply = guarded.predict("rows", b"[" * (LIMIT + 1))  # would be a JSON error if parsed
    assert (reply.status, _json(reply)["error"]["type"]) == (413, "request_too_large")


def _rows(count: int) -> dict[str, Any]:
    return {"x": [[0.5, 1.5]] * count}


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        pytest.param(_rows(1000), 200, id="one-record-at-the-limit"),
        pytest.param(_rows(1001), 413, id="one-record-over"),
        pytest.param({"instances": [_rows(500), _rows(500)]}, 200, id="batch-at-the-limit"),
        pytest.param({"instances": [_rows(600), _rows(600)]}, 413, id="batch-over"),
        pytest.param({"instances": [_rows(1)] * 1001}, 413, id="records-over"),
    ],
)
def test_tensor_rows_count_against_the_batch_limit(
    guarded: Service, payload: dict[str, Any], status: int
) -> None:
    reply = guarded.predict("rows", json.dumps(payload))
    assert reply.status == status, reply.to_json()
    if status == 413:
        assert _json(reply)["error"]["type"] == "batch_too_large"


def test_an_answer_over_the_limit_is_refused_and_the_service_keeps_serving(
    guarded: Service, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="modelkit"):
        reply = guarded.predict("zeros", json.dumps({"shape": [10_000_000]}))
    assert reply.status == 500
    error = _json(reply)["error"]
    assert error["type"] == "response_too_large"
    assert str(2**20) in error["message"]
    assert "max_response_size" in caplog.text
    small = guarded.predict("zeros", json.dumps({"shape": [3]}))
    assert (small.status, _json(small)) == (200, {"zeros": [0.0, 0.0, 0.0]})


@pytest.mark.parametrize("rows", [1000, 5000], ids=["written-whole", "written-in-pieces"])
def test_an_answer_is_measured_as_written_not_only_estimated(
    hostile: dict[str, Path], rows: int
) -> None:
    # float32 0.1 is written as 0.10000000149011612: far more than the estimate's 4 characters.
    payload = json.dumps({"x": [[0.1, 0.1]] * rows})
    with modelkit.Registry() as registry:
        registry.add("rows", hostile["rows"])
        limit = 8 * 2 * rows  # twice the estimate, under half the text
        refused = Service(
            registry, max_batch_size=None, max_body_size=None, max_response_size=limit
        ).predict("rows", payload)
        allowed = Service(
            registry, max_batch_size=None, max_body_size=None, max_response_size=None
        ).predict("rows", payload)
    assert _json(refused)["error"]["type"] == "response_too_large"
    assert allowed.status == 200
    assert len(allowed.to_json()) > limit


_ARRAYS = hnp.arrays(
    dtype=st.sampled_from(["float32", "float64", "int64", "bool", "U3"]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
    elements={"allow_subnormal": False},
)


@given(arrays=st.lists(_ARRAYS, max_size=3), scalar=strategies.json_values())
@settings(deadline=None)
def test_an_answer_written_in_pieces_is_the_same_json(arrays: list[Any], scalar: Any) -> None:
    body = {"predictions": [{"array": array, "value": scalar} for array in arrays], "n": 1}
    whole = _serving.render(_serving.json_values(body, _serving.Size(None)), _serving.Size(None))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_serving, "_ARRAY_CHUNK", 2)  # every array of 3 elements or more in pieces
        patch.setattr(_serving, "_CONVERTED_ELEMENTS", 3)  # and any array after 3 elements
        size = _serving.Size(None)
        pieces = _serving.render(_serving.json_values(body, size), size)
    assert pieces == whole
    assert json.loads(whole) == json.loads(json.dumps(_serving.json_values(body), default=str))


def test_a_runtime_refusal_is_one_readable_line_without_internals(guarded: Service) -> None:
    reply = guarded.predict("reshape", json.dumps({"x": [1.0, 2.0, 3.0]}))
    assert reply.status == 422
    text = reply.to_json()
    for internal in RUNTIME_INTERNALS:
        assert internal not in text
    error = _json(reply)["error"]
    assert error["type"] == "invalid_input"
    assert "cannot be reshaped to the requested shape" in error["message"]
    assert "\n" not in error["message"]
    assert [d["message"] for d in error["details"]] == [error["message"]]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(
            "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Status Message: "
            "/onnxruntime_src/onnxruntime/core/providers/cpu/tensor/reshape_helper.h:91 "
            "onnxruntime::ReshapeHelper::ReshapeHelper(const onnxruntime::TensorShape&, "
            "onnxruntime::TensorShapeVector&, bool) size == requested was false. Bad shape.",
            "Status Message: size == requested was false. Bad shape.",
            id="onnxruntime",
        ),
        pytest.param(
            "C:\\build\\src\\kernel.cpp:12: overflow in Kernel::Run(int) const at row 3",
            "overflow in Kernel::Run(int) const at row 3",
            id="windows-path-then-text",
        ),
        pytest.param(
            "value out of range\nTraceback (most recent call last):\n"
            '  File "/srv/app/model.py", line 3, in run\nValueError: secret',
            "value out of range",
            id="python-traceback",
        ),
        pytest.param(
            'bad value (File "/srv/app/model.py", line 3, in run)',
            "bad value ()",
            id="python-frame",
        ),
        pytest.param("field 'x' expected a number", "field 'x' expected a number", id="plain"),
    ],
)
def test_public_reason_keeps_the_reason_and_drops_internals(message: str, expected: str) -> None:
    assert _serving.public_reason(message) == expected


# -- the report page ----------------------------------------------------------------------------


@pytest.fixture
def drawings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The models whose report page was drawn, in order (the drawing itself is the report's)."""
    drawn: list[str] = []

    def draw(model: modelkit.Model[Any, Any]) -> str:
        drawn.append(model.version)
        return f"<!doctype html><title>{model.name} {model.version}</title>"

    monkeypatch.setattr(_serving, "report_page", draw)
    return drawn


def test_the_report_is_an_html_page_that_fetches_nothing(iris_bundle: Path) -> None:
    with modelkit.Registry() as registry:
        registry.add("iris", iris_bundle)
        reply = Service(registry).report("iris")
    assert reply.status == 200
    assert reply.content_type == "text/html; charset=utf-8"
    headers = dict(reply.headers)
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert reply.to_bytes().decode().lower().startswith("<!doctype html>")


def test_an_unknown_model_has_no_report(service: Service, drawings: list[str]) -> None:
    reply = service.report("<script>")
    assert reply.status == 404
    assert _json(reply)["error"]["type"] == "unknown_model"
    assert drawings == []


def test_a_report_is_drawn_once_per_max_age_whatever_the_requests(
    service: Service, drawings: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import concurrent.futures

    first = service.report("iris").to_bytes()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        pages = list(pool.map(lambda _: service.report("iris").to_bytes(), range(16)))
    assert set(pages) == {first}
    # Another service of the same process (Django builds one per request) gets the same page.
    assert Service(service.registry).report("iris").to_bytes() == first
    assert drawings == ["1.0.0"]
    clock = _serving.time.monotonic() + _serving.REPORT_MAX_AGE + 1
    monkeypatch.setattr(_serving.time, "monotonic", lambda: clock)
    service.report("iris")
    assert drawings == ["1.0.0", "1.0.0"]


@pytest.fixture
def slow_drawing(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Report pages that are drawn only once the event is set (set at the end in any case)."""
    finish = threading.Event()

    def draw(model: modelkit.Model[Any, Any]) -> str:
        assert finish.wait(30)
        return f"<!doctype html><title>{model.name} {model.version}</title>"

    monkeypatch.setattr(_serving, "report_page", draw)
    yield finish
    finish.set()


def test_a_slow_drawing_blocks_no_prediction_and_no_report_request_waits_for_it(
    service: Service, slow_drawing: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as drawer:
        drawn = drawer.submit(service.report, "iris")
        while not _serving._report_pages._drawing.locked():
            time.sleep(0.01)
        # As many report requests as a server has threads (or apredict's pool): none waits,
        # none holds a thread the predictions need.
        busy = [asyncio.run(service.areport("iris")) for _ in range(8)]
        assert {reply.status for reply in busy} == {503}
        assert dict(busy[0].headers) == {"Retry-After": "1"}
        assert _json(busy[0])["error"]["type"] == "busy"
        assert asyncio.run(service.apredict("iris", json.dumps(RECORD))).status == 200
        assert service.predict("iris", json.dumps(RECORD)).status == 200
        assert not drawn.done()
        slow_drawing.set()
        assert drawn.result(timeout=30).status == 200
    # While the page is redrawn, the model's last page is served, however old.
    clock = _serving.time.monotonic() + _serving.REPORT_MAX_AGE + 1
    monkeypatch.setattr(_serving.time, "monotonic", lambda: clock)
    slow_drawing.clear()
    with concurrent.futures.ThreadPoolExecutor(1) as drawer:
        redrawn = drawer.submit(service.report, "iris")
        while not _serving._report_pages._drawing.locked():
            time.sleep(0.01)
        stale = service.report("iris")
        assert (stale.status, stale.to_bytes()) == (200, drawn.result().to_bytes())
        slow_drawing.set()
        assert redrawn.result(timeout=30).status == 200


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_a_page_is_drawn_draws_its_own(
    service: Service, drawings: list[str]
) -> None:
    # As gunicorn --preload forks its workers: whatever the parent's threads held then.
    with _serving._report_pages._drawing, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # forking a process with threads
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                signal.alarm(10)
                code = 0 if service.report("iris").status == 200 else 2
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_reloaded_model_gets_a_report_of_its_own(
    iris_bundle: Path,
    iris: tuple[Any, Any],
    iris_classifier: Any,
    tmp_path: Path,
    drawings: list[str],
) -> None:
    newer = tmp_path / "iris-2"
    modelkit.save(iris_classifier, newer, name="iris", version="2.0.0", sample_input=iris[0][:20])
    with modelkit.Registry() as registry:
        registry.add("iris", iris_bundle)
        service = Service(registry)
        assert b"iris 1.0.0" in service.report("iris").to_bytes()
        registry.reload("iris", newer)
        assert b"iris 2.0.0" in service.report("iris").to_bytes()
    assert drawings == ["1.0.0", "2.0.0"]


def test_areport_draws_off_the_event_loop(service: Service, drawings: list[str]) -> None:
    reply = asyncio.run(service.areport("iris"))
    assert reply.status == 200
    assert drawings == ["1.0.0"]
