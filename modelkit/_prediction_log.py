"""Prediction logging: sampled records and outputs as JSON lines, written off the request path.

:class:`PredictionLogger` is a hook (see :class:`~modelkit.Hook`): add it to a model, or to every
model, and it writes one JSON line per predicted record to a standard :mod:`logging` logger (what
Splunk, Datadog and Elastic agents ingest) or to any callable taking a string::

    logging.getLogger("modelkit.predictions").setLevel(logging.INFO)  # and a handler
    prediction_log = modelkit.PredictionLogger(sample_rate=0.1, max_per_second=50, redact=["email"])
    model.add_hook(prediction_log)

While the logger is not enabled for ``INFO``, nothing is sampled, copied or queued.

On the caller's thread the hook only decides whether to log (``sample_rate``, then
``max_per_second``), takes a snapshot of references and identifiers, and puts it on a bounded
queue without waiting; a daemon thread turns it into JSON and writes it. When the queue is full
the records are dropped, never waited for, and counted in :attr:`PredictionLogger.dropped` and the
OpenTelemetry counter ``modelkit.prediction_log.dropped`` (unit ``{record}``, attribute
``modelkit.model.name``). A sink that raises is counted in :attr:`PredictionLogger.sink_errors`,
reported at most once a minute on the ``modelkit`` logger, and never stops the lines after it.

The line format
---------------

One line per record; a batch gives one line per record. Keys, in this order::

    {"timestamp": "2024-05-01T12:00:00.123456Z", "model": "churn", "version": "1.0.0",
     "digest": "sha256:...", "call": "predict", "index": 0, "duration_ms": 0.412,
     "trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331",
     "input": {"tenure": 12, "plan": "pro", "email": "[REDACTED]"},
     "output": {"label": "churn", "probabilities": {"churn": 0.8, "stay": 0.2}}}

- ``timestamp``: when the call started, ISO 8601 in UTC.
- ``model``, ``version``, ``digest``: the model's identity (``digest`` is null for a model that
  was not loaded from a bundle).
- ``call``: ``"predict"`` or ``"predict_batch"``.
- ``index``: the record's position in its batch (0 for ``predict``; null when a failed batch could
  not be split into records).
- ``duration_ms``: how long the whole call took, in milliseconds (shared by a batch's lines).
- ``trace_id`` / ``span_id``: the OpenTelemetry span current during the call, as lowercase hex;
  absent when there is none.
- ``input``: the record as a JSON object (positional records and array rows are keyed by the
  signature's column names); absent with ``include_inputs=False``.
- ``output``: the record's output (``to_dict()`` for modelkit's outputs, ``model_dump(mode="json")``
  for pydantic ones); absent with ``include_outputs=False``.
- ``error``: instead of ``output`` when the call failed: ``{"type": ..., "message": ...}``, the
  exception's class (qualified with its module unless built in) and message, without traceback.

Values are converted to JSON: numpy scalars and arrays become numbers and lists, NaN and infinity
become null, dates become ISO strings, and anything else becomes its ``repr``. Fields named in
``redact`` are replaced by ``"[REDACTED]"`` wherever they appear in the input and the output.
With ``redact`` set, a record that has no field names to go by is written as ``"input":
"[REDACTED]"`` whole: a positional record or array row whose length the signature refused, a
mapping keyed by positions, a scalar or a string cannot say which of its values is the secret.

What is copied
--------------

The writer runs after the call has returned, so the hook copies, shallowly, what a caller is likely
to reuse: a ``dict`` or ``list`` record, a batch's list of records and a batch's dict of arrays.
Everything else is held by reference and read later by the writer: the records inside a batch,
DataFrames, arrays, pydantic instances and the outputs. Do not mutate those after the call, or log
with ``include_inputs=False``.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime as dt
import enum
import json
import logging
import math
import os
import queue
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

import numpy as np
import pydantic
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace

from ._signature import is_dataframe, is_series
from ._version import __version__
from .errors import InvalidInputError
from .telemetry import error_type

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, MeterProvider

    from ._hooks import PredictionContext

__all__ = ["PredictionLogger"]

_log = logging.getLogger("modelkit")

#: What takes a field's value in a line when the field is redacted.
REDACTED: Final = "[REDACTED]"
DEFAULT_LOGGER_NAME: Final = "modelkit.predictions"

_SINK_WARNING_INTERVAL = 60.0
# Deeper structures are cut short with their repr: a cycle must not recurse forever.
_MAX_DEPTH = 32
_MAX_TEXT = 1000
# Total time the interpreter's exit waits for queued lines before giving up on a stuck sink.
_EXIT_TIMEOUT = 5.0
_MISSING_TYPES = frozenset({"NAType", "NaTType"})
# Records given by position, which the signature's names turn into objects.
_POSITIONAL = (list, tuple, np.ndarray)

# The token bucket's clock; a module attribute so tests can drive time.
_clock = time.monotonic


class _Stop:
    """Put on the queue by :meth:`PredictionLogger.close` to end the writer."""


_STOP: Final = _Stop()


@dataclass(slots=True)
class _Call:
    """What the caller's thread hands the writer: references and identifiers, no conversion."""

    timestamp: float
    model: Any
    name: str
    version: str
    digest: str | None
    is_batch: bool
    duration: float | None
    span: trace.Span
    inputs: Any
    outputs: Any
    error: dict[str, str] | None
    count: int
    has_index: bool


class _TokenBucket:
    """Allows ``rate`` records a second on average, in bursts of at most one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.updated = _clock()
        self.lock = threading.Lock()

    def take(self, wanted: int) -> int:
        """Take up to ``wanted`` tokens; return how many were granted."""
        with self.lock:
            now = _clock()
            elapsed = max(0.0, now - self.updated)
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
            self.updated = now
            granted = min(wanted, int(self.tokens))
            self.tokens -= granted
            return granted


class PredictionLogger:
    """A hook that writes sampled predictions as JSON lines, off the request's path.

    Use it to keep a record of what a model receives and answers in production, in the log
    pipeline you already run. See the module documentation for the line format.

    Args:
        sink: where lines go: a :class:`logging.Logger` (each line is one ``INFO`` message) or a
            callable taking the line. Defaults to the ``modelkit.predictions`` logger; configure
            it at ``INFO`` with a handler, or nothing is written (and nothing is queued).
        sample_rate: the fraction of calls logged, drawn once per call, so a batch is logged
            whole or not at all.
        max_per_second: at most this many records a second on average (bursts up to one
            second's worth); a batch beyond the allowance logs its first records.
        redact: field names whose values are replaced by ``"[REDACTED]"``, at any depth of the
            input and the output.
        include_inputs: whether lines carry the record.
        include_outputs: whether lines carry the output.
        queue_size: how many calls may wait to be written (a batch counts once); beyond that,
            calls are dropped and counted.
        meter_provider: where the drop counter goes (default: the global meter provider).

    Raises:
        ValueError: ``sample_rate`` is outside 0..1, ``max_per_second`` is not positive or
            ``queue_size`` is below 1.
        TypeError: ``sink`` is neither a logger nor callable, or ``redact`` is a single string.
    """

    def __init__(
        self,
        sink: logging.Logger | Callable[[str], None] | None = None,
        *,
        sample_rate: float = 1.0,
        max_per_second: float | None = None,
        redact: Iterable[str] = (),
        include_inputs: bool = True,
        include_outputs: bool = True,
        queue_size: int = 10_000,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        if sink is None:
            sink = logging.getLogger(DEFAULT_LOGGER_NAME)
        if not isinstance(sink, logging.Logger) and not callable(sink):
            raise TypeError(
                f"sink must be a logging.Logger or a callable taking a string, got "
                f"{type(sink).__name__}."
            )
        if isinstance(sample_rate, bool) or not 0.0 <= sample_rate <= 1.0:
            raise ValueError(
                f"sample_rate must be a number from 0 to 1 (the fraction of calls logged), "
                f"got {sample_rate!r}."
            )
        if max_per_second is not None and (
            isinstance(max_per_second, bool) or not 0.0 < max_per_second < math.inf
        ):
            raise ValueError(
                f"max_per_second must be a positive number of records, or None for no limit, "
                f"got {max_per_second!r}."
            )
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue_size must be an integer of at least 1, got {queue_size!r}.")
        if isinstance(redact, str | bytes):
            raise TypeError(
                f"redact takes a collection of field names, not one string: use "
                f"redact=[{redact!r}]."
            )
        redacted = frozenset(redact)
        if not all(isinstance(name, str) for name in redacted):
            raise TypeError(
                f"redact takes field names (strings), got {sorted(map(repr, redacted))}."
            )

        self._sink = sink
        self._logger = sink if isinstance(sink, logging.Logger) else None
        self._write_line: Callable[[str], None] = (
            sink.info if isinstance(sink, logging.Logger) else sink
        )
        self._sample_rate = float(sample_rate)
        self._max_per_second = max_per_second
        self._redact = redacted
        self._include_inputs = include_inputs
        self._include_outputs = include_outputs
        self._queue_size = queue_size
        self._meter_provider = meter_provider

        self._bucket = None if max_per_second is None else _TokenBucket(float(max_per_second))
        self._queue: queue.Queue[_Call | _Stop] = queue.Queue(queue_size)
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._counter: Counter | None = None
        self._is_closed = False
        self._dropped = 0
        self._sink_errors = 0
        self._last_warning = -math.inf
        _live_loggers.add(self)

    def __repr__(self) -> str:
        sink = self._logger.name if self._logger is not None else repr(self._sink)
        return (
            f"<PredictionLogger sink={sink!r} sample_rate={self._sample_rate} "
            f"max_per_second={self._max_per_second}>"
        )

    # -- counts ----------------------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Records dropped because the queue was full."""
        return self._dropped

    @property
    def sink_errors(self) -> int:
        """Lines the sink raised on (each is lost; the lines after it are still written)."""
        return self._sink_errors

    # -- the hook ----------------------------------------------------------------------------------

    def before_predict(self, ctx: PredictionContext) -> None:
        """Does nothing: defined so a logger satisfies the :class:`~modelkit.Hook` protocol."""

    def after_predict(self, ctx: PredictionContext, outputs: Any) -> None:
        """Queue the call's records and outputs for logging, if sampled; never blocks."""
        self._submit(ctx, outputs, None)

    def on_error(self, ctx: PredictionContext, exc: BaseException) -> None:
        """Queue the call's records with the error's type and message, if sampled."""
        self._submit(ctx, None, exc)

    def _submit(self, ctx: PredictionContext, outputs: Any, exc: BaseException | None) -> None:
        # Runs on the caller's thread: decide, take references, hand over. No conversion here.
        if self._is_closed or self._sample_rate == 0.0:
            return
        # random, not secrets: a sample needs speed, not unpredictability.
        if self._sample_rate < 1.0 and random.random() >= self._sample_rate:  # noqa: S311
            return
        if self._logger is not None and not self._logger.isEnabledFor(logging.INFO):
            return
        count, has_index = _record_count(ctx, outputs, is_error=exc is not None)
        if count and self._bucket is not None:
            count = self._bucket.take(count)
        if not count:
            return
        model = ctx.model
        now = time.time()
        call = _Call(
            timestamp=now - max(0.0, time.perf_counter() - ctx.start_time),
            model=model,
            name=model.name,
            version=model.version,
            digest=model.digest,
            is_batch=ctx.is_batch,
            duration=ctx.duration,
            span=trace.get_current_span(),
            inputs=_snapshot(ctx.inputs, ctx.is_batch, count) if self._include_inputs else None,
            outputs=outputs,
            error=None if exc is None else _describe(exc, self._redact),
            count=count,
            has_index=has_index,
        )
        if self._worker is None and not self._start():
            return
        # Under the lock, so that nothing is queued after close() queued the writer's stop.
        with self._lock:
            if self._is_closed:  # closed by another thread since the check above
                return  # type: ignore[unreachable]
            try:
                self._queue.put_nowait(call)
            except queue.Full:
                is_full = True
            else:
                is_full = False
        if is_full:
            self._count_drop(call)

    def _start(self) -> bool:
        with self._lock:
            if self._is_closed:
                return False
            if self._worker is None:
                provider = self._meter_provider
                meter = (
                    provider.get_meter("modelkit", __version__)
                    if provider is not None
                    else metrics.get_meter("modelkit", __version__)
                )
                self._counter = meter.create_counter(
                    "modelkit.prediction_log.dropped",
                    unit="{record}",
                    description="Prediction log records dropped because the queue was full.",
                )
                worker = threading.Thread(
                    target=self._run,
                    args=(self._queue,),
                    name="modelkit-prediction-log",
                    daemon=True,
                )
                worker.start()
                self._worker = worker
            return True

    def _count_drop(self, call: _Call) -> None:
        with self._lock:
            self._dropped += call.count
        if self._counter is not None:
            self._counter.add(call.count, {"modelkit.model.name": call.name})

    # -- lifecycle ---------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued line has been written (or given to a sink that failed).

        Args:
            timeout: seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            Whether the queue emptied in time.
        """
        pending = self._queue
        deadline = None if timeout is None else time.monotonic() + timeout
        with pending.all_tasks_done:
            while pending.unfinished_tasks:
                if deadline is None:
                    pending.all_tasks_done.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                pending.all_tasks_done.wait(remaining)
        return True

    def close(self, timeout: float | None = None) -> None:
        """Write what is queued, then stop the writer; later predictions are not logged.

        Called for every open logger when the interpreter exits. Calling it again does nothing.

        Args:
            timeout: seconds to wait at most for queued lines; what is left after is lost.
        """
        with self._lock:
            if self._is_closed:
                return
            self._is_closed = True
            worker = self._worker
        if worker is None:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        self.flush(timeout)
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            return  # The sink is stuck: leave the daemon thread rather than wait on it.
        worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _reset_after_fork(self) -> None:
        # The child has copies of the queue and locks but not the writer thread (and a lock may
        # have been held by a thread that no longer exists): start afresh, lazily. Lines still
        # queued belong to the parent, which writes them.
        self._lock = threading.Lock()
        self._queue = queue.Queue(self._queue_size)
        self._worker = None
        if self._bucket is not None:
            self._bucket.lock = threading.Lock()

    # -- the writer thread -------------------------------------------------------------------------

    def _run(self, pending: queue.Queue[_Call | _Stop]) -> None:
        while True:
            call = pending.get()
            try:
                if isinstance(call, _Stop):
                    return
                self._write(call)
            except Exception as exc:  # noqa: BLE001 - the writer must outlive any one record
                self._sink_failed(exc)
            finally:
                pending.task_done()

    def _write(self, call: _Call) -> None:
        context = call.span.get_span_context()
        token = (
            otel_context.attach(trace.set_span_in_context(call.span)) if context.is_valid else None
        )
        try:
            for line in self._lines(call, context):
                self._emit(line)
        finally:
            if token is not None:
                otel_context.detach(token)

    def _lines(self, call: _Call, context: trace.SpanContext) -> Iterable[str]:
        head: dict[str, Any] = {
            "timestamp": _iso_utc(call.timestamp),
            "model": call.name,
            "version": call.version,
            "digest": call.digest,
            "call": "predict_batch" if call.is_batch else "predict",
            "index": None,
            "duration_ms": None if call.duration is None else round(call.duration * 1000, 3),
        }
        if context.is_valid:
            head["trace_id"] = trace.format_trace_id(context.trace_id)
            head["span_id"] = trace.format_span_id(context.span_id)
        records = self._records(call) if self._include_inputs else None
        outputs = (
            _output_rows(call)
            if self._include_outputs and call.error is None
            else [None] * call.count
        )
        for position in range(call.count):
            line = dict(head)
            if call.has_index:
                line["index"] = position
            if records is not None:
                line["input"] = _jsonable(records[position], self._redact)
            if call.error is not None:
                line["error"] = call.error
            elif self._include_outputs:
                line["output"] = _jsonable(outputs[position], self._redact)
            yield _dumps(line)

    def _records(self, call: _Call) -> list[Any]:
        if call.is_batch and call.has_index:
            records = _split(call.inputs, call.count)
        else:
            records = [call.inputs]
        if any(isinstance(record, _POSITIONAL) for record in records):
            naming = _Naming.of(call.model)
            records = [naming.name(record) for record in records]
        if self._redact:
            # Redaction goes by field name. A record without names (a positional record or row
            # whose length the signature refused, a scalar, a string) cannot say which of its
            # values is the secret, so none of them is written.
            records = [record if _is_keyed(record) else REDACTED for record in records]
        return records

    def _emit(self, line: str) -> None:
        try:
            self._write_line(line)
        except Exception as exc:  # noqa: BLE001 - a failing sink loses its line, nothing more
            self._sink_failed(exc)

    def _sink_failed(self, exc: Exception) -> None:
        self._sink_errors += 1
        now = time.monotonic()
        if now - self._last_warning < _SINK_WARNING_INTERVAL:
            return
        self._last_warning = now
        # Reporting must not stop the writer either.
        with contextlib.suppress(Exception):
            _log.warning(
                "The prediction log sink %r failed: %s: %s (%d lines lost so far; this warning "
                "repeats at most once a minute).",
                self._sink,
                type(exc).__name__,
                _truncate(str(exc)),
                self._sink_errors,
            )


# --------------------------------------------------------------------------------------------------
# Caller's thread: cheap decisions and snapshots
# --------------------------------------------------------------------------------------------------


def _record_count(ctx: PredictionContext, outputs: Any, *, is_error: bool) -> tuple[int, bool]:
    """How many lines the call gives, and whether they carry an index (False: one line, null)."""
    if not ctx.is_batch:
        return 1, True
    if not is_error:
        try:
            return len(outputs), True
        except Exception:  # noqa: BLE001, S110 - not sized: fall back on the context's count
            pass
    if ctx.batch_size is not None:
        return ctx.batch_size, True
    return 1, False


def _snapshot(inputs: Any, is_batch: bool, count: int) -> Any:
    if not is_batch:
        if isinstance(inputs, dict):
            return dict(inputs)
        if isinstance(inputs, list):
            return list(inputs)
        return inputs
    if isinstance(inputs, list | tuple):
        return inputs[:count]
    if isinstance(inputs, dict):
        return dict(inputs)
    return inputs


def _describe(exc: BaseException, redact: Any) -> dict[str, str]:
    name = error_type(exc)
    if isinstance(exc, InvalidInputError) and redact:
        # Validation messages quote the offending value: with fields to redact, name the
        # fields (redacted ones as such) and leave the values out.
        fields = sorted({str(e["field"]) for e in exc.errors if e.get("field") is not None})
        shown = ["[REDACTED]" if field in redact else field for field in fields]
        return {"type": name, "message": f"invalid input ({', '.join(shown) or 'record'})"}
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - an exception whose str() fails still gets a line
        message = ""
    return {"type": name, "message": _truncate(message)}


# --------------------------------------------------------------------------------------------------
# Writer thread: from references to JSON
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Naming:
    """How positional records get field names: the tabular columns, or the one tensor input."""

    columns: tuple[str, ...] = ()
    tensor: str | None = None

    @classmethod
    def of(cls, model: Any) -> _Naming:
        try:
            signature = model.signature
            columns = tuple(column.name for column in signature.columns)
            tensors = tuple(tensor.name for tensor in signature.tensors)
        except Exception:  # noqa: BLE001 - naming is a nicety; records are logged regardless
            return cls()
        return cls(columns, tensors[0] if len(tensors) == 1 else None)

    def name(self, record: Any) -> Any:
        if self.columns and isinstance(record, _POSITIONAL):
            if np.ndim(record) == 1 and len(record) == len(self.columns):
                return dict(zip(self.columns, record, strict=True))
        elif self.tensor is not None and isinstance(record, np.ndarray | list):
            return {self.tensor: record}
        return record


def _is_keyed(record: Any) -> bool:
    """Whether a record carries field names that redaction can go by (integer keys, as in
    ``{0: ..., 1: ...}`` or a Series without labels, are positions, not names)."""
    if isinstance(record, pydantic.BaseModel):
        return True
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return True
    if is_series(record):
        keys: Iterable[Any] = record.index
    elif isinstance(record, Mapping):
        keys = record.keys()
    else:
        return False
    return all(isinstance(key, str) for key in keys)


def _split(inputs: Any, count: int) -> list[Any]:
    """The first ``count`` records of a batch (``None`` for any that cannot be read)."""
    try:
        if is_dataframe(inputs):
            rows: list[Any] = inputs.iloc[:count].to_dict(orient="records")
        elif isinstance(inputs, Mapping):
            rows = [{name: _at(values, i) for name, values in inputs.items()} for i in range(count)]
        elif isinstance(inputs, Sequence | np.ndarray) and not isinstance(inputs, str | bytes):
            rows = list(inputs[:count])
        else:
            rows = []
    except Exception:  # noqa: BLE001 - an unreadable batch still gets its lines
        rows = []
    return rows + [None] * (count - len(rows))


def _at(values: Any, index: int) -> Any:
    try:
        return values[index]
    except Exception:  # noqa: BLE001
        return None


def _output_rows(call: _Call) -> list[Any]:
    if not call.is_batch:
        return [call.outputs]
    rows = []
    for position in range(call.count):
        try:
            rows.append(call.outputs[position])
        except Exception:  # noqa: BLE001 - one unreadable output is logged as null
            rows.append(None)
    return rows


def _iso_utc(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp, dt.timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _dumps(line: dict[str, Any]) -> str:
    try:
        return json.dumps(line, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except Exception:  # noqa: BLE001 - should not happen after _jsonable; keep the line anyway
        return json.dumps({key: _repr(value) for key, value in line.items()}, separators=(",", ":"))


def _jsonable(value: Any, redact: frozenset[str], depth: int = 0) -> Any:
    """``value`` as plain JSON data; never raises (what cannot be converted becomes its repr)."""
    # Exact types first: records are mostly dicts of str, int and float, and the abstract
    # isinstance checks below cost several times more than the conversion itself.
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if depth > _MAX_DEPTH:
        return _repr(value)
    deeper = depth + 1
    if kind is dict:
        return {
            key if type(key) is str else _key(key, redact, deeper): (
                REDACTED if key in redact else _jsonable(item, redact, deeper)
            )
            for key, item in value.items()
        }
    if kind is list:
        return [_jsonable(item, redact, deeper) for item in value]
    if isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    try:
        if isinstance(value, np.ndarray):
            if value.dtype.kind in "mM":
                return [_jsonable(item, redact, deeper) for item in value]
            return _jsonable(value.tolist(), redact, deeper)
        if isinstance(value, np.datetime64 | np.timedelta64):
            return None if np.isnat(value) else str(value)
        if isinstance(value, np.generic):
            return _jsonable(value.item(), redact, deeper)
        if isinstance(value, Mapping):
            return {
                key if isinstance(key, str) else _key(key, redact, deeper): (
                    REDACTED if key in redact else _jsonable(item, redact, deeper)
                )
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [_jsonable(item, redact, deeper) for item in value]
        if isinstance(value, set | frozenset):
            items = [_jsonable(item, redact, deeper) for item in value]
            try:
                return sorted(items)
            except TypeError:
                return items
        if type(value).__name__ in _MISSING_TYPES:
            return None
        if isinstance(value, dt.datetime | dt.date | dt.time):
            return value.isoformat()
        if isinstance(value, enum.Enum):
            return _jsonable(value.value, redact, deeper)
        if isinstance(value, Decimal | UUID | PurePath):
            return _jsonable(
                float(value) if isinstance(value, Decimal) else str(value), redact, depth
            )
        if isinstance(value, pydantic.BaseModel):
            try:
                dumped = value.model_dump(mode="json", warnings=False)
            except Exception:  # noqa: BLE001 - a field pydantic cannot serialize: convert here
                dumped = value.model_dump(warnings=False)
            return _jsonable(dumped, redact, deeper)
        to_dict = getattr(value, "to_dict", None)
        if callable(to_dict):
            return _jsonable(to_dict(), redact, deeper)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
            return _jsonable(fields, redact, deeper)
    except Exception:  # noqa: BLE001, S110 - fall through to the repr
        pass
    return _repr(value)


def _key(key: Any, redact: frozenset[str], depth: int) -> str:
    # JSON keys are strings: 3 -> "3", np.int64(3) -> "3", None -> "None".
    return str(_jsonable(key, redact, depth))


def _repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not lose the line
        text = f"<unrepresentable {type(value).__name__}>"
    return _truncate(text)


def _truncate(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


# --------------------------------------------------------------------------------------------------
# Process lifecycle: exit and fork
# --------------------------------------------------------------------------------------------------

_live_loggers: weakref.WeakSet[PredictionLogger] = weakref.WeakSet()


def _close_all() -> None:
    deadline = time.monotonic() + _EXIT_TIMEOUT
    for logger in list(_live_loggers):
        logger.close(timeout=max(0.0, deadline - time.monotonic()))


def _reset_all_after_fork() -> None:
    for logger in list(_live_loggers):
        logger._reset_after_fork()


atexit.register(_close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_all_after_fork)
