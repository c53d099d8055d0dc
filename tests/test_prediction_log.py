"""PredictionLogger: sampled JSON lines, written off the caller's thread, never in its way."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydantic
import pytest
from hypothesis import given, settings
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint, Sum
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import modelkit
from modelkit import _prediction_log
from modelkit._hooks import Hook, PredictionContext
from modelkit._prediction_log import PredictionLogger
from tests import strategies
from tests.custom_models import Keywords, Review, Sentiment
from tests.strategies import json_values

WAIT = 10.0  # seconds: an upper bound for things that take milliseconds, never a measurement

MakeLogger = Callable[..., PredictionLogger]


@pytest.fixture
def make_logger() -> Iterator[MakeLogger]:
    """Build loggers that are closed (and their threads joined) when the test ends."""
    loggers: list[PredictionLogger] = []

    def make(*args: Any, **kwargs: Any) -> PredictionLogger:
        logger = PredictionLogger(*args, **kwargs)
        loggers.append(logger)
        return logger

    yield make
    for logger in loggers:
        logger.close(timeout=WAIT)


class Lines:
    """A callable sink that keeps the parsed lines."""

    def __init__(self) -> None:
        self.raw: list[str] = []

    def __call__(self, line: str) -> None:
        self.raw.append(line)

    @property
    def parsed(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.raw]


def context(
    inputs: Any,
    *,
    model: modelkit.Model[Any, Any] | None = None,
    is_batch: bool = False,
    batch_size: int | None = 1,
    duration: float | None = 0.0025,
) -> PredictionContext:
    return PredictionContext(
        model=model if model is not None else Keywords(),
        inputs=inputs,
        batch_size=batch_size,
        is_batch=is_batch,
        start_time=time.perf_counter(),
        duration=duration,
    )


def written(logger: PredictionLogger, sink: Lines) -> list[dict[str, Any]]:
    assert logger.flush(WAIT)
    return sink.parsed


# -- where lines go --------------------------------------------------------------------------------


def test_default_sink_is_the_modelkit_predictions_logger_at_info(
    make_logger: MakeLogger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelkit.predictions")
    logger = make_logger()
    logger.after_predict(context({"text": "good"}), Sentiment(positive=True))
    assert logger.flush(WAIT)
    (record,) = [r for r in caplog.records if r.name == "modelkit.predictions"]
    assert record.levelno == logging.INFO
    line = json.loads(record.getMessage())
    assert line["input"] == {"text": "good"}
    assert line["output"] == {"positive": True}


def test_a_logger_sink_not_enabled_for_info_gets_nothing(
    make_logger: MakeLogger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="modelkit.predictions")
    logger = make_logger(logging.getLogger("modelkit.predictions"))
    logger.after_predict(context({"text": "good"}), Sentiment(positive=True))
    assert logger.flush(WAIT)
    assert [r for r in caplog.records if r.name == "modelkit.predictions"] == []


def test_callable_sink_receives_one_json_line_per_prediction(make_logger: MakeLogger) -> None:
    sink = Lines()
    logger = make_logger(sink)
    for text in ("good", "bad"):
        logger.after_predict(context({"text": text}), Sentiment(positive=text == "good"))
    assert logger.flush(WAIT)
    assert len(sink.raw) == 2
    assert all("\n" not in line for line in sink.raw)
    assert [line["input"]["text"] for line in sink.parsed] == ["good", "bad"]


def test_line_has_the_documented_fields_in_order(make_logger: MakeLogger) -> None:
    sink = Lines()
    logger = make_logger(sink)
    before = dt.datetime.now(dt.timezone.utc)
    logger.after_predict(context({"text": "good"}, duration=0.0025), Sentiment(positive=True))
    (line,) = written(logger, sink)
    assert list(line) == [
        "timestamp",
        "model",
        "version",
        "digest",
        "call",
        "index",
        "duration_ms",
        "input",
        "output",
    ]
    assert line["timestamp"].endswith("Z")
    timestamp = dt.datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert before - dt.timedelta(seconds=5) <= timestamp <= dt.datetime.now(dt.timezone.utc)
    assert line["model"] == "Keywords"
    assert line["version"] == "unversioned"
    assert line["digest"] is None
    assert line["call"] == "predict"
    assert line["index"] == 0
    assert line["duration_ms"] == 2.5


def test_loaded_model_lines_carry_its_name_version_and_digest(
    make_logger: MakeLogger, iris_bundle: Path, iris: tuple[Any, Any]
) -> None:
    model = modelkit.load(iris_bundle)
    sink = Lines()
    logger = make_logger(sink)
    record = iris[0].iloc[0].to_dict()
    logger.after_predict(context(record, model=model), model.predict(record))
    (line,) = written(logger, sink)
    assert (line["model"], line["version"]) == ("iris", "1.0.0")
    assert line["digest"] == model.digest == modelkit.digest(iris_bundle)
    assert set(line["output"]) == {"label", "probabilities"}


# -- OpenTelemetry: trace ids on lines, nothing on spans -------------------------------------------


@pytest.fixture
def tracing() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
def metric_reader() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    yield provider, reader
    provider.shutdown()


def test_line_carries_the_current_trace_and_span_ids(
    make_logger: MakeLogger, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, _ = tracing
    sink = Lines()
    logger = make_logger(sink)
    with provider.get_tracer("test").start_as_current_span("predict Keywords") as span:
        logger.after_predict(context({"text": "good"}), Sentiment(positive=True))
    (line,) = written(logger, sink)
    assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert line["span_id"] == f"{span.get_span_context().span_id:016x}"


def test_line_has_no_trace_ids_outside_a_span(make_logger: MakeLogger) -> None:
    sink = Lines()
    logger = make_logger(sink)
    logger.after_predict(context({"text": "good"}), Sentiment(positive=True))
    (line,) = written(logger, sink)
    assert "trace_id" not in line
    assert "span_id" not in line


def test_logging_puts_nothing_on_the_span(
    make_logger: MakeLogger, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = tracing
    logger = make_logger(Lines(), redact=["text"])
    with provider.get_tracer("test").start_as_current_span("predict Keywords"):
        logger.after_predict(context({"text": "secret"}), Sentiment(positive=True))
        logger.on_error(context({"text": "secret"}), ValueError("secret"))
    assert logger.flush(WAIT)
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {}) == {}
    assert list(span.events) == []


def test_sink_runs_in_the_trace_context_of_the_call(
    make_logger: MakeLogger, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    from opentelemetry import trace

    seen: list[int] = []
    logger = make_logger(
        lambda _line: seen.append(trace.get_current_span().get_span_context().span_id)
    )
    provider, _ = tracing
    with provider.get_tracer("test").start_as_current_span("predict Keywords") as span:
        logger.after_predict(context({"text": "good"}), Sentiment(positive=True))
    assert logger.flush(WAIT)
    assert seen == [span.get_span_context().span_id]


# -- what lines contain ----------------------------------------------------------------------------


def test_redacted_fields_are_replaced_at_any_depth_in_inputs_and_outputs(
    make_logger: MakeLogger,
) -> None:
    sink = Lines()
    logger = make_logger(sink, redact=["email", "user_id"])
    record = {"text": "good", "email": "a@b.c", "profile": {"email": "x@y.z", "age": 3}}
    logger.after_predict(context(record), {"positive": True, "user_id": 42})
    (line,) = written(logger, sink)
    assert line["input"] == {
        "text": "good",
        "email": "[REDACTED]",
        "profile": {"email": "[REDACTED]", "age": 3},
    }
    assert line["output"] == {"positive": True, "user_id": "[REDACTED]"}
    assert "a@b.c" not in sink.raw[0]
    assert "x@y.z" not in sink.raw[0]


def test_positional_records_are_named_so_redaction_applies(
    make_logger: MakeLogger, iris_bundle: Path, iris: tuple[Any, Any]
) -> None:
    model = modelkit.load(iris_bundle)
    names = model.signature.names
    sink = Lines()
    logger = make_logger(sink, redact=[names[0]])
    values = iris[0].iloc[0].to_numpy()
    logger.after_predict(context(values, model=model), model.predict(values))
    (line,) = written(logger, sink)
    assert list(line["input"]) == list(names)
    assert line["input"][names[0]] == "[REDACTED]"
    assert line["input"][names[1]] == pytest.approx(float(values[1]))


def test_include_inputs_false_leaves_the_record_out(make_logger: MakeLogger) -> None:
    sink = Lines()
    logger = make_logger(sink, include_inputs=False)
    logger.after_predict(context({"text": "good"}), Sentiment(positive=True))
    (line,) = written(logger, sink)
    assert "input" not in line
    assert line["output"] == {"positive": True}


def test_include_outputs_false_leaves_the_output_out(make_logger: MakeLogger) -> None:
    sink = Lines()
    logger = make_logger(sink, include_outputs=False)
    logger.after_predict(context({"text": "good"}), Sentiment(positive=True))
    (line,) = written(logger, sink)
    assert "output" not in line
    assert line["input"] == {"text": "good"}


def test_modelkit_outputs_are_written_with_to_dict(make_logger: MakeLogger) -> None:
    sink = Lines()
    logger = make_logger(sink)
    logger.after_predict(context({"x": 1}), modelkit.ClassifierOutput(1, {0: 0.25, 1: 0.75}))
    logger.after_predict(context({"x": 1}), modelkit.RegressorOutput(np.float32(1.5)))
    logger.after_predict(
        context({"x": 1}), modelkit.TensorOutput({"scores": np.array([[0.5, 0.25]])})
    )
    lines = written(logger, sink)
    assert [line["output"] for line in lines] == [
        {"label": 1, "probabilities": {"0": 0.25, "1": 0.75}},
        {"value": 1.5},
        {"scores": [[0.5, 0.25]]},
    ]


def test_pydantic_records_and_outputs_are_dumped_as_json(make_logger: MakeLogger) -> None:
    class Event(pydantic.BaseModel):
        at: dt.datetime
        amount: float

    sink = Lines()
    logger = make_logger(sink)
    at = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    logger.after_predict(context(Review(text="good")), Event(at=at, amount=float("nan")))
    (line,) = written(logger, sink)
    assert line["input"] == {"text": "good"}
    assert line["output"] == {"at": "2024-05-01T12:00:00Z", "amount": None}


def test_nan_and_numpy_values_serialize(make_logger: MakeLogger) -> None:
    sink = Lines()
    logger = make_logger(sink)
    record = {
        "float32": np.float32(0.5),
        "int64": np.int64(7),
        "flag": np.bool_(True),
        "nan": float("nan"),
        "numpy_nan": np.float64("nan"),
        "inf": float("inf"),
        "vector": np.array([1.0, np.nan, 3.0]),
        "when": np.datetime64("2024-05-01T12:00:00"),
        "missing": pd.NA,
        "never": pd.NaT,
        "stamp": pd.Timestamp("2024-05-01T12:00:00"),
        3: "integer key",
    }
    logger.after_predict(context(record), {"scores": np.array([[0.1, np.inf]], dtype=np.float32)})
    (line,) = written(logger, sink)
    assert line["input"] == {
        "float32": 0.5,
        "int64": 7,
        "flag": True,
        "nan": None,
        "numpy_nan": None,
        "inf": None,
        "vector": [1.0, None, 3.0],
        "when": "2024-05-01T12:00:00",
        "missing": None,
        "never": None,
        "stamp": "2024-05-01T12:00:00",
        "3": "integer key",
    }
    assert line["output"] == {"scores": [[pytest.approx(0.1), None]]}
    assert "NaN" not in sink.raw[0]
    assert "Infinity" not in sink.raw[0]


@settings(deadline=None, max_examples=50)
@given(record=json_values())
def test_any_json_record_is_written_as_given(record: Any) -> None:
    sink = Lines()
    logger = PredictionLogger(sink)
    try:
        logger.after_predict(context(record), None)
        (line,) = written(logger, sink)
    finally:
        logger.close(timeout=WAIT)
    assert line["input"] == record


@settings(deadline=None, max_examples=50)
@given(record=strategies.messy_values, output=strategies.messy_values)
def test_any_record_gives_one_line_of_strict_json(record: Any, output: Any) -> None:
    def reject(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    sink = Lines()
    logger = PredictionLogger(sink)
    try:
        logger.after_predict(context(record), output)
        assert logger.flush(WAIT)
    finally:
        logger.close(timeout=WAIT)
    (raw,) = sink.raw
    assert set(json.loads(raw, parse_constant=reject)) >= {"input", "output"}
    assert logger.sink_errors == 0


def test_a_field_pydantic_cannot_serialize_becomes_its_repr(make_logger: MakeLogger) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque thing>"

    class Holder(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
        thing: Opaque
        count: int

    sink = Lines()
    logger = make_logger(sink)
    wrong = Holder.model_construct(thing=Opaque(), count="three")  # serializing it warns
    logger.after_predict(context({"x": 1}), wrong)
    (line,) = written(logger, sink)
    assert line["output"] == {"thing": "<Opaque thing>", "count": "three"}


def test_an_unserializable_value_becomes_its_repr(make_logger: MakeLogger) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque thing>"

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

        def to_dict(self) -> dict[str, Any]:
            raise RuntimeError("no dict")

    cycle: list[Any] = []
    cycle.append(cycle)
    sink = Lines()
    logger = make_logger(sink)
    logger.after_predict(context({"a": Opaque(), "b": Broken(), "c": cycle}), Opaque())
    (line,) = written(logger, sink)
    assert line["input"]["a"] == "<Opaque thing>"
    assert line["input"]["b"] == "<unrepresentable Broken>"
    assert isinstance(line["input"]["c"], list)
    assert line["output"] == "<Opaque thing>"
    assert logger.sink_errors == 0


def test_dataclass_outputs_become_objects(make_logger: MakeLogger) -> None:
    @dataclasses.dataclass
    class Score:
        value: float
        tags: tuple[str, ...]

    sink = Lines()
    logger = make_logger(sink)
    logger.after_predict(context({"x": 1}), Score(0.5, ("a", "b")))
    (line,) = written(logger, sink)
    assert line["output"] == {"value": 0.5, "tags": ["a", "b"]}


def test_a_dict_record_is_copied_before_the_call_returns(make_logger: MakeLogger) -> None:
    release = threading.Event()
    sink = Lines()

    def slow(line: str) -> None:
        release.wait(WAIT)
        sink(line)

    logger = make_logger(slow)
    record = {"text": "before"}
    try:
        logger.after_predict(context(record), Sentiment(positive=True))
        record["text"] = "after"  # the caller reuses its dict while the line is still queued
    finally:
        release.set()
    (line,) = written(logger, sink)
    assert line["input"] == {"text": "before"}


# -- batches ---------------------------------------------------------------------------------------


def test_batch_logs_one_line_per_record_with_its_index(make_logger: MakeLogger) -> None:
    model = Keywords()
    records = [{"text": "good"}, {"text": "bad"}, {"text": "good too"}]
    sink = Lines()
    logger = make_logger(sink)
    predictions = model.predict_batch(records)
    logger.after_predict(context(records, is_batch=True, batch_size=3), predictions)
    lines = written(logger, sink)
    assert [line["index"] for line in lines] == [0, 1, 2]
    assert {line["call"] for line in lines} == {"predict_batch"}
    assert [line["input"]["text"] for line in lines] == ["good", "bad", "good too"]
    assert [line["output"]["positive"] for line in lines] == [True, False, True]
    assert len({line["duration_ms"] for line in lines}) == 1


def test_dataframe_batch_rows_become_objects(
    make_logger: MakeLogger, iris_bundle: Path, iris: tuple[Any, Any]
) -> None:
    model = modelkit.load(iris_bundle)
    frame = iris[0].head(3)
    sink = Lines()
    logger = make_logger(sink)
    logger.after_predict(
        context(frame, model=model, is_batch=True, batch_size=3), model.predict_batch(frame)
    )
    lines = written(logger, sink)
    assert [line["input"] for line in lines] == frame.to_dict(orient="records")
    assert [line["output"]["label"] for line in lines] == [0, 0, 0]


def test_array_batch_rows_are_named_by_the_signature(
    make_logger: MakeLogger, iris_bundle: Path, iris: tuple[Any, Any]
) -> None:
    model = modelkit.load(iris_bundle)
    array = iris[0].head(2).to_numpy()
    sink = Lines()
    logger = make_logger(sink)
    logger.after_predict(
        context(array, model=model, is_batch=True, batch_size=2), model.predict_batch(array)
    )
    lines = written(logger, sink)
    assert [list(line["input"]) for line in lines] == [list(model.signature.names)] * 2
    assert [line["index"] for line in lines] == [0, 1]


def test_mapping_of_arrays_batch_is_split_into_records(make_logger: MakeLogger) -> None:
    batch = {"image": np.zeros((2, 2)), "mask": np.array([1, 0])}
    outputs = modelkit.Predictions.from_rows(
        [modelkit.TensorOutput({"score": np.float32(0.5)})] * 2
    )
    sink = Lines()
    logger = make_logger(sink)
    logger.after_predict(context(batch, is_batch=True, batch_size=2), outputs)
    lines = written(logger, sink)
    assert [line["input"] for line in lines] == [
        {"image": [0.0, 0.0], "mask": 1},
        {"image": [0.0, 0.0], "mask": 0},
    ]
    assert [line["output"] for line in lines] == [{"score": 0.5}] * 2


def test_empty_batch_logs_nothing(make_logger: MakeLogger) -> None:
    sink = Lines()
    logger = make_logger(sink)
    logger.after_predict(
        context([], is_batch=True, batch_size=0), modelkit.Predictions.from_rows([])
    )
    assert written(logger, sink) == []


# -- errors ----------------------------------------------------------------------------------------


def test_on_error_logs_the_type_and_message_instead_of_an_output(make_logger: MakeLogger) -> None:
    sink = Lines()
    logger = make_logger(sink)
    try:
        raise modelkit.InvalidInputError("field 'text': Field required.", field="text")
    except modelkit.InvalidInputError as exc:
        logger.on_error(context({"txt": "good"}), exc)
    (line,) = written(logger, sink)
    assert line["error"] == {
        "type": "modelkit.errors.InvalidInputError",
        "message": "field 'text': Field required.",
    }
    assert "output" not in line
    assert line["input"] == {"txt": "good"}
    assert "Traceback" not in sink.raw[0]


def test_builtin_error_types_are_not_qualified(make_logger: MakeLogger) -> None:
    sink = Lines()
    logger = make_logger(sink)
    logger.on_error(context({"x": 1}), ValueError("bad value"))
    (line,) = written(logger, sink)
    assert line["error"] == {"type": "ValueError", "message": "bad value"}


def test_failed_batch_logs_each_record_with_the_error(make_logger: MakeLogger) -> None:
    sink = Lines()
    logger = make_logger(sink)
    logger.on_error(context([{"x": 1}, {"x": 2}], is_batch=True, batch_size=2), ValueError("no"))
    lines = written(logger, sink)
    assert [(line["index"], line["input"], line["error"]["message"]) for line in lines] == [
        (0, {"x": 1}, "no"),
        (1, {"x": 2}, "no"),
    ]


def test_failed_batch_of_unknown_size_logs_one_line_without_index(
    make_logger: MakeLogger,
) -> None:
    sink = Lines()
    logger = make_logger(sink)
    logger.on_error(context("not a batch", is_batch=True, batch_size=None), TypeError("no"))
    (line,) = written(logger, sink)
    assert line["index"] is None
    assert line["input"] == "not a batch"


# -- sampling and rate -----------------------------------------------------------------------------


def test_sample_rate_zero_logs_nothing(make_logger: MakeLogger) -> None:
    sink = Lines()
    logger = make_logger(sink, sample_rate=0.0)
    for _ in range(50):
        logger.after_predict(context({"text": "good"}), Sentiment(positive=True))
        logger.on_error(context({"text": "good"}), ValueError("no"))
    assert written(logger, sink) == []


def test_sample_rate_one_logs_everything(make_logger: MakeLogger) -> None:
    sink = Lines()
    logger = make_logger(sink, sample_rate=1.0)
    for _ in range(50):
        logger.after_predict(context({"text": "good"}), Sentiment(positive=True))
    assert len(written(logger, sink)) == 50


def test_sample_rate_is_drawn_once_per_call(
    make_logger: MakeLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    draws = iter([0.9, 0.1])
    monkeypatch.setattr(random, "random", lambda: next(draws))
    sink = Lines()
    logger = make_logger(sink, sample_rate=0.5)
    records = [{"text": "a"}, {"text": "b"}, {"text": "c"}]
    outputs = Keywords().predict_batch(records)
    logger.after_predict(context(records, is_batch=True, batch_size=3), outputs)  # 0.9: skipped
    logger.after_predict(context(records, is_batch=True, batch_size=3), outputs)  # 0.1: whole batch
    assert [line["index"] for line in written(logger, sink)] == [0, 1, 2]


def test_max_per_second_caps_the_lines(make_logger: MakeLogger) -> None:
    sink = Lines()
    logger = make_logger(sink, max_per_second=2)
    started = time.monotonic()
    for _ in range(200):
        logger.after_predict(context({"text": "good"}), Sentiment(positive=True))
    elapsed = time.monotonic() - started
    # A full bucket (2) plus what refills while the loop runs: a bound, not a timing assertion.
    assert 2 <= len(written(logger, sink)) <= 2 + int(2 * elapsed) + 1


def test_max_per_second_refills_as_time_passes(
    make_logger: MakeLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(_prediction_log, "_clock", lambda: now[0])
    sink = Lines()
    logger = make_logger(sink, max_per_second=1)
    for step in range(10):
        now[0] += 0.5  # two calls a second against one allowed
        logger.after_predict(context({"step": step}), {"ok": True})
    assert [line["input"]["step"] for line in written(logger, sink)] == [0, 2, 4, 6, 8]


def test_batch_beyond_the_rate_logs_its_first_records(
    make_logger: MakeLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_prediction_log, "_clock", lambda: 1000.0)
    records = [{"text": str(i)} for i in range(10)]
    sink = Lines()
    logger = make_logger(sink, max_per_second=3)
    logger.after_predict(
        context(records, is_batch=True, batch_size=10), Keywords().predict_batch(records)
    )
    logger.after_predict(context({"text": "later"}), Sentiment(positive=False))
    assert [line["index"] for line in written(logger, sink)] == [0, 1, 2]


# -- never in the caller's way ---------------------------------------------------------------------


class BlockedSink(Lines):
    """Blocks on its first line until released, so the queue behind it fills up."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, line: str) -> None:
        self.started.set()
        self.release.wait(WAIT)
        super().__call__(line)


def test_full_queue_drops_without_blocking(make_logger: MakeLogger) -> None:
    sink = BlockedSink()
    logger = make_logger(sink, queue_size=2)
    try:
        logger.after_predict(context({"n": 0}), {"ok": True})  # taken by the writer, which blocks
        assert sink.started.wait(WAIT)
        for n in range(1, 6):  # two fit in the queue, three are dropped
            logger.after_predict(context({"n": n}), {"ok": True})
        # Every call above returned while the sink was still blocked on the first line.
        assert sink.raw == []
        assert logger.dropped == 3
    finally:
        sink.release.set()
    assert [line["input"]["n"] for line in written(logger, sink)] == [0, 1, 2]


def test_drops_are_counted_in_the_opentelemetry_metric(
    make_logger: MakeLogger, metric_reader: tuple[MeterProvider, InMemoryMetricReader]
) -> None:
    provider, reader = metric_reader
    sink = BlockedSink()
    logger = make_logger(sink, queue_size=1, meter_provider=provider)
    records = [{"text": "a"}, {"text": "b"}]
    try:
        logger.after_predict(context({"text": "first"}), {"ok": True})
        assert sink.started.wait(WAIT)
        logger.after_predict(context({"text": "queued"}), {"ok": True})
        logger.after_predict(  # a dropped batch counts its records
            context(records, is_batch=True, batch_size=2), Keywords().predict_batch(records)
        )
    finally:
        sink.release.set()
    data = reader.get_metrics_data()
    assert data is not None
    metrics = [
        metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        if scope.scope.name == "modelkit"
        for metric in scope.metrics
    ]
    (dropped,) = [m for m in metrics if m.name == "modelkit.prediction_log.dropped"]
    assert dropped.unit == "{record}"
    assert isinstance(dropped.data, Sum)
    assert dropped.data.is_monotonic
    (point,) = dropped.data.data_points
    assert isinstance(point, NumberDataPoint)
    assert point.value == 2
    assert dict(point.attributes or {}) == {"modelkit.model.name": "Keywords"}
    assert logger.dropped == 2


def test_flush_returns_false_while_the_sink_is_stuck(make_logger: MakeLogger) -> None:
    sink = BlockedSink()
    logger = make_logger(sink)
    try:
        logger.after_predict(context({"text": "good"}), {"ok": True})
        assert sink.started.wait(WAIT)
        assert logger.flush(timeout=0.01) is False
    finally:
        sink.release.set()
    assert logger.flush(WAIT) is True


def test_a_raising_sink_does_not_stop_later_lines(
    make_logger: MakeLogger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="modelkit")
    sink = Lines()

    def flaky(line: str) -> None:
        if '"fail"' in line:
            raise OSError("disk full")
        sink(line)

    logger = make_logger(flaky)
    for text in ("ok", "fail", "ok again"):
        logger.after_predict(context({"text": text}), {"ok": True})
    assert [line["input"]["text"] for line in written(logger, sink)] == ["ok", "ok again"]
    assert logger.sink_errors == 1


def test_sink_failures_are_reported_at_most_once_a_minute(
    make_logger: MakeLogger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="modelkit")

    def broken(_line: str) -> None:
        raise OSError("disk full")

    logger = make_logger(broken)
    for _ in range(5):
        logger.after_predict(context({"text": "x"}), {"ok": True})
    assert logger.flush(WAIT)
    warnings_logged = [
        r for r in caplog.records if r.name == "modelkit" and r.levelno == logging.WARNING
    ]
    assert len(warnings_logged) == 1
    assert "OSError: disk full" in warnings_logged[0].getMessage()
    assert logger.sink_errors == 5


def test_many_threads_log_every_call_once(make_logger: MakeLogger) -> None:
    sink = Lines()
    logger = make_logger(sink)
    threads_count, calls = 8, 200

    def work(thread: int) -> None:
        for call in range(calls):
            logger.after_predict(context({"thread": thread, "call": call}), {"ok": True})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seen = [(line["input"]["thread"], line["input"]["call"]) for line in written(logger, sink)]
    assert sorted(seen) == [(t, c) for t in range(threads_count) for c in range(calls)]
    assert logger.dropped == 0


# -- lifecycle -------------------------------------------------------------------------------------


def test_close_writes_queued_lines_stops_the_writer_and_is_idempotent(
    make_logger: MakeLogger,
) -> None:
    sink = Lines()
    logger = make_logger(sink)
    before = set(threading.enumerate())
    logger.after_predict(context({"text": "good"}), {"ok": True})
    (writer,) = set(threading.enumerate()) - before
    logger.close(timeout=WAIT)
    logger.close(timeout=WAIT)
    assert len(sink.raw) == 1
    assert not writer.is_alive()


def test_predictions_after_close_are_not_logged(make_logger: MakeLogger) -> None:
    sink = Lines()
    logger = make_logger(sink)
    logger.close()
    logger.after_predict(context({"text": "good"}), {"ok": True})
    assert written(logger, sink) == []
    assert logger.dropped == 0


def test_the_writer_thread_starts_with_the_first_logged_prediction(
    make_logger: MakeLogger,
) -> None:
    before = set(threading.enumerate())
    logger = make_logger(Lines())
    assert set(threading.enumerate()) == before
    logger.after_predict(context({"text": "good"}), {"ok": True})
    (writer,) = set(threading.enumerate()) - before
    assert writer.name == "modelkit-prediction-log"
    assert writer.daemon


def test_lines_still_queued_at_exit_are_written(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import time
        from modelkit._hooks import PredictionContext
        from modelkit._prediction_log import PredictionLogger
        from tests.custom_models import Keywords

        def slow(line):
            time.sleep(0.2)  # still writing when the interpreter starts to exit
            print(line, flush=True)

        logger = PredictionLogger(slow)
        for n in range(3):
            context = PredictionContext(Keywords(), {"n": n}, 1, False, time.perf_counter())
            logger.after_predict(context, {"ok": True})
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
        timeout=60,
    )
    assert [json.loads(line)["input"]["n"] for line in result.stdout.splitlines()] == [0, 1, 2]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_starts_its_own_writer(make_logger: MakeLogger, tmp_path: Path) -> None:
    path = tmp_path / "lines.jsonl"

    def append(line: str) -> None:
        with path.open("a") as file:
            file.write(line + "\n")

    logger = make_logger(append)
    logger.after_predict(context({"who": "parent"}), {"ok": True})  # the parent's writer runs
    assert logger.flush(WAIT)
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process with threads; gunicorn does just that.
        warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report through the exit status, never return into pytest
        status = 1
        try:
            logger.after_predict(context({"who": "child"}), {"ok": True})
            if logger.flush(WAIT) and '"child"' in path.read_text():
                status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sorted(json.loads(line)["input"]["who"] for line in path.read_text().splitlines()) == [
        "child",
        "parent",
    ]


# -- arguments and protocol ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sample_rate": -0.1}, "sample_rate must be a number from 0 to 1"),
        ({"sample_rate": 1.5}, "sample_rate must be a number from 0 to 1"),
        ({"sample_rate": float("nan")}, "sample_rate must be a number from 0 to 1"),
        ({"max_per_second": 0}, "max_per_second must be a positive number"),
        ({"max_per_second": -5}, "max_per_second must be a positive number"),
        ({"queue_size": 0}, "queue_size must be an integer of at least 1"),
        ({"queue_size": 2.5}, "queue_size must be an integer of at least 1"),
    ],
)
def test_invalid_arguments_raise_value_error(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PredictionLogger(Lines(), **kwargs)


def test_redact_given_one_string_is_refused() -> None:
    with pytest.raises(TypeError, match=r"redact=\['email'\]"):
        PredictionLogger(Lines(), redact="email")


def test_a_sink_that_is_neither_logger_nor_callable_is_refused() -> None:
    with pytest.raises(TypeError, match=r"sink must be a logging.Logger or a callable"):
        PredictionLogger("modelkit.predictions")  # type: ignore[arg-type]


def test_prediction_logger_is_a_hook() -> None:
    assert isinstance(PredictionLogger(Lines()), Hook)


def test_logs_predictions_through_model_add_hook(make_logger: MakeLogger) -> None:
    sink = Lines()
    logger = make_logger(sink)
    model = Keywords()
    model.add_hook(logger)
    assert model.predict({"text": "good"}) == Sentiment(positive=True)
    model.predict_batch([{"text": "bad"}, {"text": "good"}])
    lines = written(logger, sink)
    assert [(line["call"], line["index"]) for line in lines] == [
        ("predict", 0),
        ("predict_batch", 0),
        ("predict_batch", 1),
    ]
    assert lines[0]["output"] == {"positive": True}


def test_a_raising_sink_never_changes_a_prediction(make_logger: MakeLogger) -> None:
    def broken(_line: str) -> None:
        raise OSError("disk full")

    logger = make_logger(broken)
    model = Keywords()
    model.add_hook(logger)
    assert model.predict({"text": "good"}) == Sentiment(positive=True)
    assert logger.flush(WAIT)
    assert logger.sink_errors == 1


def test_redacted_fields_do_not_leak_through_validation_errors() -> None:
    lines: list[str] = []
    logger = PredictionLogger(lines.append, redact=["email"])
    try:
        error = modelkit.InvalidInputError(
            "field 'email' expected a number, got str 'jane@example.com'.",
            field="email",
            index=None,
        )
        logger.on_error(context({"email": "jane@example.com"}), error)
        logger.flush(timeout=WAIT)
    finally:
        logger.close(timeout=WAIT)
    (line,) = lines
    assert "jane@example.com" not in line
    assert json.loads(line)["error"]["message"] == "invalid input ([REDACTED])"


# -- refused records and redaction -----------------------------------------------------------------

SECRET = "jane@example.com"


@pytest.fixture(scope="module")
def email_model(tmp_path_factory: pytest.TempPathFactory) -> modelkit.Model[Any, Any]:
    """A real pipeline whose signature has an ``email`` column (dropped before the estimator)."""
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    frame = pd.DataFrame(
        {"email": [f"user{i}@example.com" for i in range(20)], "tenure": range(20)}
    )
    pipeline = make_pipeline(
        make_column_transformer(("drop", ["email"]), remainder="passthrough"),
        LogisticRegression(),
    ).fit(frame, [i % 2 for i in range(20)])
    path = tmp_path_factory.mktemp("email") / "churn"
    modelkit.save(pipeline, path, name="churn", version="1.0.0", sample_input=frame)
    return modelkit.load(path)


@contextlib.contextmanager
def hooked(model: modelkit.Model[Any, Any], hook: PredictionLogger) -> Iterator[None]:
    model.add_hook(hook)
    try:
        yield
    finally:
        model.remove_hook(hook)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda model: model.predict((SECRET, 3, "extra")), id="record-too-long"),
        pytest.param(lambda model: model.predict([SECRET]), id="record-too-short"),
        pytest.param(
            lambda model: model.predict_batch(np.array([[SECRET, 3, "x"], [SECRET, 4, "y"]])),
            id="array-batch-too-wide",
        ),
        pytest.param(lambda model: model.predict(SECRET), id="a-string"),
        pytest.param(lambda model: model.predict({0: SECRET, 1: 3}), id="keyed-by-position"),
    ],
)
def test_a_refused_record_without_field_names_is_not_written_when_redacting(
    make_logger: MakeLogger, email_model: modelkit.Model[Any, Any], call: Any
) -> None:
    sink = Lines()
    logger = make_logger(sink, redact=["email"])
    with hooked(email_model, logger), pytest.raises(modelkit.InvalidInputError):
        call(email_model)
    lines = written(logger, sink)
    assert lines
    assert all(line["input"] == "[REDACTED]" for line in lines)
    assert all("error" in line for line in lines)
    assert not any(SECRET in raw for raw in sink.raw)


def test_a_refused_record_with_field_names_is_written_redacted(
    make_logger: MakeLogger, email_model: modelkit.Model[Any, Any]
) -> None:
    sink = Lines()
    logger = make_logger(sink, redact=["email"])
    with hooked(email_model, logger), pytest.raises(modelkit.InvalidInputError):
        email_model.predict({"email": SECRET, "tenure": "long"})
    (line,) = written(logger, sink)
    assert line["input"] == {"email": "[REDACTED]", "tenure": "long"}
    assert SECRET not in sink.raw[0]


def test_without_redaction_a_refused_record_is_written_as_given(
    make_logger: MakeLogger, email_model: modelkit.Model[Any, Any]
) -> None:
    sink = Lines()
    logger = make_logger(sink)
    with hooked(email_model, logger), pytest.raises(modelkit.InvalidInputError):
        email_model.predict((SECRET, 3, "extra"))
    (line,) = written(logger, sink)
    assert line["input"] == [SECRET, 3, "extra"]
