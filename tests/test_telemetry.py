"""OpenTelemetry spans and metrics, hooks and logging, checked with the real SDK in memory."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import modelkit
from modelkit import telemetry

from .otel import Otel


@pytest.fixture
def otel() -> Iterator[Otel]:
    sdk = Otel()
    yield sdk
    sdk.tracer_provider.shutdown()
    sdk.meter_provider.shutdown()


@pytest.fixture
def record(iris: tuple[Any, Any]) -> dict[str, float]:
    return iris[0].iloc[0].to_dict()


def test_predict_produces_the_documented_span(otel: Otel, iris_bundle: Path, record: Any) -> None:
    model = otel.load(iris_bundle)
    model.predict(record)
    (span,) = otel.spans("predict iris")
    assert span.kind is SpanKind.INTERNAL
    assert span.instrumentation_scope.name == "modelkit"
    assert span.instrumentation_scope.version == modelkit.__version__
    assert dict(span.attributes) == {
        "modelkit.model.name": "iris",
        "modelkit.model.version": "1.0.0",
        "modelkit.model.format": "joblib",
        "modelkit.prediction.batch.size": 1,
    }
    assert span.status.status_code is StatusCode.UNSET


def test_predict_records_duration_and_batch_size(otel: Otel, iris_bundle: Path, iris: Any) -> None:
    model = otel.load(iris_bundle)
    model.predict_batch(iris[0].head(7))
    ((duration_metric, duration),) = otel.points("modelkit.prediction.duration")
    assert duration_metric.unit == "s"
    assert duration.count == 1
    assert duration.sum > 0
    assert duration.explicit_bounds[0] == telemetry.DURATION_BUCKETS[0]
    assert dict(duration.attributes) == {
        "modelkit.model.name": "iris",
        "modelkit.model.version": "1.0.0",
        "modelkit.model.format": "joblib",
    }
    ((size_metric, size),) = otel.points("modelkit.prediction.batch.size")
    assert size_metric.unit == "{record}"
    assert (size.count, size.sum) == (1, 7)
    (span,) = otel.spans("predict iris")
    assert span.attributes["modelkit.prediction.batch.size"] == 7


def test_tensor_batch_size_is_known_after_the_call(otel: Otel, tmp_path: Path) -> None:
    import numpy as np
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    modelkit.save(proto, tmp_path / "neg", name="neg", version="1")
    otel.load(tmp_path / "neg").predict_batch({"x": np.ones(5, np.float32)})
    (span,) = otel.spans("predict neg")
    assert span.attributes["modelkit.prediction.batch.size"] == 5


def test_invalid_input_marks_the_span_failed_without_the_value(
    otel: Otel, iris_bundle: Path, record: Any
) -> None:
    model = otel.load(iris_bundle)
    secret = "s3cr3t-customer-42"
    with pytest.raises(modelkit.InvalidInputError):
        model.predict({**record, "sepal length (cm)": secret})
    (span,) = otel.spans("predict iris")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "modelkit.errors.InvalidInputError"
    (event,) = span.events
    assert event.name == "exception"
    assert "sepal length (cm)" in event.attributes["exception.message"]
    exported = repr(span.to_json())
    assert secret not in exported
    ((_, failed),) = otel.points("modelkit.prediction.duration")
    assert failed.attributes["error.type"] == "modelkit.errors.InvalidInputError"


def test_load_produces_a_span_and_a_duration(otel: Otel, iris_bundle: Path) -> None:
    otel.load(iris_bundle)
    (span,) = otel.spans("load iris")
    assert span.kind is SpanKind.INTERNAL
    assert span.attributes["modelkit.model.format"] == "joblib"
    ((metric, point),) = otel.points("modelkit.model.load.duration")
    assert metric.unit == "s"
    assert point.attributes["modelkit.model.name"] == "iris"


def test_failed_load_is_marked(otel: Otel, tmp_path: Path) -> None:
    with pytest.raises(modelkit.BundleError):
        otel.load(tmp_path / "missing")
    (span,) = otel.spans("load missing")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "modelkit.errors.BundleError"
    assert len(span.events) == 1


def test_apredict_span_is_a_child_of_the_callers_span(
    otel: Otel, iris_bundle: Path, record: Any
) -> None:
    model = otel.load(iris_bundle)
    tracer = otel.tracer_provider.get_tracer("app")

    async def handler() -> None:
        with tracer.start_as_current_span("request"):
            await model.apredict(record)
            await model.apredict_batch([record, record])

    asyncio.run(handler())
    (request,) = otel.spans("request")
    children = otel.spans("predict iris")
    assert len(children) == 2
    for child in children:
        assert child.parent is not None
        assert child.parent.span_id == request.context.span_id
        assert child.context.trace_id == request.context.trace_id


def test_spans_from_many_threads_are_all_recorded(
    otel: Otel, iris_bundle: Path, record: Any
) -> None:
    model = otel.load(iris_bundle)
    threads = [
        threading.Thread(target=lambda: [model.predict(record) for _ in range(10)])
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(otel.spans("predict iris")) == 80


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_telemetry_works_in_a_forked_child(iris_bundle: Path, record: Any) -> None:
    model = modelkit.load(iris_bundle)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a gunicorn worker after --preload
        os.close(read)
        try:
            sdk = Otel()
            model.set_telemetry(
                tracer_provider=sdk.tracer_provider, meter_provider=sdk.meter_provider
            )
            model.predict(record)
            asyncio.run(model.apredict(record))
            count = len(sdk.spans("predict iris")) + len(sdk.points("modelkit.prediction.duration"))
            os.write(write, str(count).encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        assert pipe.read() == "3"
    assert os.waitstatus_to_exitcode(status) == 0


def test_global_providers_are_used_once_the_host_configures_them(onnx_bundle: Path) -> None:
    script = f"""
import time, modelkit
from modelkit import telemetry
model = modelkit.load({str(onnx_bundle)!r})
model.predict([0.0] * 20)
assert not telemetry.default().is_active, "active with no SDK"

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
time.sleep(telemetry._RECHECK_SECONDS + 0.1)
model.predict([0.0] * 20)
names = [s.name for s in exporter.get_finished_spans()]
assert names == ["predict forest"], names
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)


# -- hooks ----------------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def before_predict(self, ctx: modelkit.PredictionContext) -> None:
        self.calls.append(("before", ctx.batch_size))

    def after_predict(self, ctx: modelkit.PredictionContext, outputs: Any) -> None:
        assert ctx.duration is not None
        self.calls.append(("after", outputs))

    def on_error(self, ctx: modelkit.PredictionContext, exc: BaseException) -> None:
        self.calls.append(("error", type(exc)))


class Exploding:
    def before_predict(self, ctx: modelkit.PredictionContext) -> None:
        raise RuntimeError("before")

    def after_predict(self, ctx: modelkit.PredictionContext, outputs: Any) -> None:
        raise RuntimeError("after")

    def on_error(self, ctx: modelkit.PredictionContext, exc: BaseException) -> None:
        raise RuntimeError("on_error")


def test_model_hooks_see_each_call(iris_bundle: Path, record: Any) -> None:
    model = modelkit.load(iris_bundle)
    recorder = Recorder()
    model.add_hook(recorder)
    output = model.predict(record)
    with pytest.raises(modelkit.InvalidInputError):
        model.predict({})
    predictions = model.predict_batch([record, record])
    assert recorder.calls == [
        ("before", 1),
        ("after", output),
        ("before", 1),
        ("error", modelkit.InvalidInputError),
        ("before", 2),
        ("after", predictions),
    ]
    model.remove_hook(recorder)
    model.predict(record)
    assert len(recorder.calls) == 6


def test_global_hooks_apply_to_every_model(
    iris_bundle: Path, onnx_bundle: Path, record: Any
) -> None:
    recorder = Recorder()
    modelkit.add_hook(recorder)
    try:
        modelkit.load(iris_bundle).predict(record)
        modelkit.load(onnx_bundle).predict([0.0] * 20)
    finally:
        modelkit.remove_hook(recorder)
    assert [c[0] for c in recorder.calls] == ["before", "after", "before", "after"]
    with pytest.raises(ValueError, match="not registered"):
        modelkit.remove_hook(recorder)


def test_a_raising_hook_changes_neither_answers_nor_errors(
    otel: Otel, iris_bundle: Path, record: Any, caplog: pytest.LogCaptureFixture
) -> None:
    model = otel.load(iris_bundle)
    expected = model.predict(record)
    model.add_hook(Exploding())
    with caplog.at_level(logging.WARNING, logger="modelkit"):
        assert model.predict(record) == expected
        with pytest.raises(modelkit.InvalidInputError):
            model.predict({})
    assert any("Exploding" in r.getMessage() for r in caplog.records)
    points = otel.points("modelkit.hook.errors")
    assert sum(p.value for _, p in points) == 4  # before and after, then before and on_error


def test_an_object_without_hook_methods_is_refused(iris_bundle: Path) -> None:
    with pytest.raises(TypeError, match="not a hook"):
        modelkit.load(iris_bundle).add_hook(object())  # type: ignore[arg-type]


def test_custom_models_are_observed_too(otel: Otel) -> None:
    from tests.custom_models import Keywords

    model = Keywords()
    model.set_telemetry(tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    model.predict({"text": "good"})
    (span,) = otel.spans("predict Keywords")
    assert span.attributes["modelkit.model.format"] == "python"


# -- logging --------------------------------------------------------------------------------------


def test_load_logs_what_from_where_with_which_digest(
    iris_bundle: Path, caplog: pytest.LogCaptureFixture, record: Any
) -> None:
    with caplog.at_level(logging.DEBUG, logger="modelkit"):
        model = modelkit.load(iris_bundle)
        model.predict(record)
    (message,) = [r.getMessage() for r in caplog.records if r.name == "modelkit"]
    assert "'iris'" in message
    assert str(iris_bundle) in message
    assert modelkit.digest(iris_bundle) in message
    assert str(record["sepal length (cm)"]) not in message


def test_an_unknown_key_never_reaches_the_span(otel: Otel, iris_bundle: Path, record: Any) -> None:
    model = otel.load(iris_bundle)
    with pytest.raises(modelkit.InvalidInputError):
        model.predict({**record, "jane.doe@example.com": 1.0})
    (span,) = otel.spans("predict iris")
    assert "jane.doe" not in repr(span.to_json())
    assert "an unknown field" in span.status.description
