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

One line per record; a batch gives one line per record (made by ``modelkit._prediction_lines``).
Keys, in this order::

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

Values are converted to JSON as pydantic writes them (``modelkit._jsonable``): numpy scalars and
arrays become numbers and lists, NaN and infinity become null, dates become ISO strings, decimals
and UUIDs become text, and anything else becomes its ``repr``. Fields named in
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
import logging
import math
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace

from ._prediction_lines import LineFormat, LoggedCall, describe_error, truncate
from ._version import __version__
from ._worker import Worker, after_fork_in_child

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, MeterProvider

    from ._hooks import PredictionContext

__all__ = ["PredictionLogger"]

_log = logging.getLogger("modelkit")

DEFAULT_LOGGER_NAME: Final = "modelkit.predictions"

_SINK_WARNING_INTERVAL = 60.0
# Total time the interpreter's exit waits for queued lines before giving up on a stuck sink.
_EXIT_TIMEOUT = 5.0

# The token bucket's clock; a module attribute so tests can drive time.
_clock = time.monotonic


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
        self._format = LineFormat(redacted, include_inputs, include_outputs)
        self._meter_provider = meter_provider

        self._bucket = None if max_per_second is None else _TokenBucket(float(max_per_second))
        self._writer: Worker[LoggedCall] = Worker(
            self._write_each, name="modelkit-prediction-log", max_size=queue_size
        )
        self._lock = threading.Lock()  # the drop count and its counter
        self._counter: Counter | None = None
        self._dropped = 0
        self._sink_errors = 0
        self._last_warning = -math.inf
        _live_loggers.add(self)
        after_fork_in_child(self._after_fork_in_child)

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
        if self._writer.is_closed or self._sample_rate == 0.0:
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
        call = LoggedCall(
            timestamp=now - max(0.0, time.perf_counter() - ctx.start_time),
            model=model,
            name=model.name,
            version=model.version,
            digest=model.digest,
            is_batch=ctx.is_batch,
            duration=ctx.duration,
            span=trace.get_current_span(),
            inputs=(
                _snapshot(ctx.inputs, ctx.is_batch, count) if self._format.include_inputs else None
            ),
            outputs=outputs,
            error=None if exc is None else describe_error(exc, self._format.redact),
            count=count,
            has_index=has_index,
        )
        # Refused when the queue is full, and once closed by another thread since the check
        # above (not a drop: nothing is logged after close).
        if not self._writer.put(call) and not self._writer.is_closed:
            self._count_drop(call)

    def _count_drop(self, call: LoggedCall) -> None:
        with self._lock:
            self._dropped += call.count
            if self._counter is None:
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
            counter = self._counter
        counter.add(call.count, {"modelkit.model.name": call.name})

    # -- lifecycle ---------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued line has been written (or given to a sink that failed).

        Args:
            timeout: seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            Whether the queue emptied in time.
        """
        return self._writer.join(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Write what is queued, then stop the writer; later predictions are not logged.

        Called for every open logger when the interpreter exits. Calling it again does nothing.

        Args:
            timeout: seconds to wait at most for queued lines; what is left after is lost (a
                stuck sink keeps its daemon thread, which does not hold up the exit).
        """
        if not self._writer.is_closed:
            self._writer.close(timeout)

    def _after_fork_in_child(self) -> None:
        # The child has copies of the locks, which a thread it does not have may have held.
        # (Its writer starts afresh by itself; lines still queued are the parent's to write.)
        self._lock = threading.Lock()
        if self._bucket is not None:
            self._bucket.lock = threading.Lock()

    # -- the writer thread -------------------------------------------------------------------------

    def _write_each(self, calls: list[LoggedCall]) -> None:
        for call in calls:
            try:
                self._write(call)
            except Exception as exc:  # noqa: BLE001 - the writer must outlive any one record
                self._sink_failed(exc)

    def _write(self, call: LoggedCall) -> None:
        context = call.span.get_span_context()
        token = (
            otel_context.attach(trace.set_span_in_context(call.span)) if context.is_valid else None
        )
        try:
            for line in self._format.lines(call, context):
                self._emit(line)
        finally:
            if token is not None:
                otel_context.detach(token)

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
                truncate(str(exc)),
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


# --------------------------------------------------------------------------------------------------
# Process lifecycle: exit (a fork is the writer's business: see modelkit._worker)
# --------------------------------------------------------------------------------------------------

_live_loggers: weakref.WeakSet[PredictionLogger] = weakref.WeakSet()


def _close_all() -> None:
    deadline = time.monotonic() + _EXIT_TIMEOUT
    for logger in list(_live_loggers):
        logger.close(timeout=max(0.0, deadline - time.monotonic()))


atexit.register(_close_all)
