"""What watches a model's calls: its hooks, OpenTelemetry spans and metrics, and drift statistics.

Every model owns one :class:`Observer`, built from the features it was loaded with; the model's
call path asks it for an :class:`Observation` around each call, and its run step counts what the
model saw in the observer's drift monitor. Nothing here changes a prediction: a failing hook is
reported and counted, and the span and metrics only describe the call.
"""

from __future__ import annotations

import contextvars
import threading
import time
import traceback
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from . import telemetry
from ._hooks import (
    GLOBAL_HOOKS,
    CalledModel,
    Hook,
    HookList,
    PredictionContext,
    call_hooks,
    report_hook_failure,
)
from .errors import InvalidInputError

if TYPE_CHECKING:
    from ._drift import DriftMonitor

__all__ = ["Observation", "Observer"]

_T = TypeVar("_T")
_monotonic = time.monotonic


class Observer:
    """One model's hooks, telemetry providers, registry variant and drift monitor.

    Args:
        model: the model observed (hooks receive it; its identity goes on spans and metrics).
        tel: the telemetry for the providers it was loaded with, or ``None`` for the global ones.
        drift: the drift monitor, when it was loaded with ``drift=True``.
    """

    def __init__(
        self,
        model: CalledModel,
        *,
        tel: telemetry.Telemetry | None = None,
        drift: DriftMonitor | None = None,
    ) -> None:
        # Weakly: the drift gauge holds observers, and must not keep a dropped model alive.
        self._model = weakref.ref(model)
        self.telemetry = tel
        self.drift = drift
        self.hooks: HookList | None = None
        self.variant: str | None = None
        self._lock = threading.Lock()
        self._attributes: dict[str, AttributeValue] | None = None
        self.single_span_attributes: dict[str, AttributeValue] = {}
        self.span_name = ""
        if drift is not None:
            telemetry.watch_drift(self)

    @property
    def model(self) -> CalledModel:
        model = self._model()
        assert model is not None, "an observer outlived its model"
        return model

    def model_if_alive(self) -> CalledModel | None:
        """The model, or ``None`` once it is gone (for readers on other threads)."""
        return self._model()

    # -- configuration ---------------------------------------------------------------------------

    def add_hook(self, hook: Hook) -> None:
        with self._lock:
            if self.hooks is None:
                self.hooks = HookList()
        self.hooks.add(hook)

    def remove_hook(self, hook: Hook) -> None:
        if self.hooks is None:
            raise ValueError(f"{hook!r} is not registered")
        self.hooks.remove(hook)

    def set_variant(self, variant: str) -> None:
        """Say which variant of a registry route the model serves as (on spans and metrics)."""
        self.variant = variant
        self._attributes = None  # rebuilt with the variant on the next call

    def identity_changed(self) -> None:
        """The model was bound to a manifest: its name and version on spans change."""
        self._attributes = None

    # -- the hot path ----------------------------------------------------------------------------

    def active_telemetry(self) -> telemetry.Telemetry:
        return self.telemetry or telemetry.default()

    def attributes(self) -> dict[str, AttributeValue]:
        """The model's identity as span and metric attributes (built once, after each change)."""
        attributes = self._attributes
        if attributes is None:
            model = self.model
            attributes = {
                "modelkit.model.name": model.name,
                "modelkit.model.version": model.version,
                "modelkit.model.format": model.format,
            }
            if self.variant is not None:
                attributes["modelkit.model.variant"] = self.variant
            self.single_span_attributes = {**attributes, "modelkit.prediction.batch.size": 1}
            self.span_name = f"predict {model.name}"
            # Published last: another thread that sees it may use the two attributes above.
            self._attributes = attributes
        return attributes

    def is_observed(self) -> bool:
        """The check on every call, kept to a few attribute reads: with no hook and no SDK
        (and no time yet to look for one again), nothing else runs."""
        if (self.hooks is None or not self.hooks.hooks) and not GLOBAL_HOOKS.hooks:
            tel = self.telemetry or telemetry.DEFAULT
            return not (tel.tracer is None and tel.meter is None and _monotonic() < tel.next_check)
        return True

    def observation(self, inputs: Any, *, is_batch: bool) -> Observation | None:
        """The hooks, span and metrics of one call, or ``None`` when nothing observes it.

        Callers ask :meth:`is_observed` first: that cheap check is the whole cost of a call
        nothing observes.
        """
        tel = self.active_telemetry()
        hooks = (self.hooks.hooks if self.hooks else ()) + GLOBAL_HOOKS.hooks
        if not tel.is_active and not hooks:  # is_active also picks up a newly configured SDK
            return None
        return Observation(self, tel, hooks, inputs, is_batch=is_batch)

    def hook_failed(self, hook: Hook, exc: BaseException) -> None:
        self.active_telemetry().record_hook_error(
            {"modelkit.model.name": self.model.name, "modelkit.hook": type(hook).__qualname__}
        )
        report_hook_failure(hook, exc)


class Observation:
    """The hooks, span and metrics around one call, shared by the sync and async paths.

    Entering it starts the span and calls ``before_predict``; :meth:`succeeded` records the
    result (and passes it through); leaving it records a failure and ends the span.
    """

    __slots__ = (
        "_attributes",
        "_context",
        "_hooks",
        "_inputs",
        "_is_batch",
        "_observer",
        "_span",
        "_telemetry",
        "_token",
        "coalesced",
        "first_of_coalesced",
    )

    def __init__(
        self,
        observer: Observer,
        tel: telemetry.Telemetry,
        hooks: tuple[Hook, ...],
        inputs: Any,
        *,
        is_batch: bool,
    ) -> None:
        self._observer = observer
        self._telemetry = tel
        self._hooks = hooks
        self._inputs = inputs
        self._is_batch = is_batch
        self._span: trace.Span | None = None
        self._token: contextvars.Token[Any] | None = None
        #: The size of the coalesced model call that answered a micro-batched record.
        self.coalesced: int | None = None
        #: Whether this record came first in its coalesced call: that caller records the call's
        #: size in the batch size histogram, once for all of them.
        self.first_of_coalesced = False

    def __enter__(self) -> Observation:
        observer = self._observer
        batch_size = _batch_size(self._inputs) if self._is_batch else 1
        attributes = self._attributes = observer.attributes()
        self._context = PredictionContext(
            observer.model, self._inputs, batch_size, self._is_batch, time.perf_counter()
        )
        tracer = self._telemetry.tracer
        if tracer is not None:
            span_attributes = attributes
            if batch_size == 1:
                span_attributes = observer.single_span_attributes
            elif batch_size is not None:
                span_attributes = {**attributes, "modelkit.prediction.batch.size": batch_size}
            span = self._span = tracer.start_span(
                observer.span_name, kind=trace.SpanKind.INTERNAL, attributes=span_attributes
            )
            self._token = otel_context.attach(trace.set_span_in_context(span))
        if self._hooks:
            call_hooks(self._hooks, "before_predict", (self._context,), observer.hook_failed)
        return self

    def succeeded(self, result: _T) -> _T:
        """Record a successful call's duration, batch size and hooks; return ``result``."""
        ctx = self._context
        ctx.duration = time.perf_counter() - ctx.start_time
        span = self._span
        batch_size = ctx.batch_size
        if batch_size is None:
            ctx.batch_size = batch_size = len(result)  # type: ignore[arg-type]
            if span is not None:
                span.set_attribute("modelkit.prediction.batch.size", batch_size)
        if self.coalesced is not None:
            # The model ran once for every record of the coalesced call: that is its batch size.
            batch_size = self.coalesced
            if span is not None:
                span.set_attribute("modelkit.prediction.batch.size", batch_size)
        tel = self._telemetry
        if tel.meter is not None:
            tel.prediction_duration.record(ctx.duration, self._attributes)
            if self.coalesced is None or self.first_of_coalesced:
                tel.batch_size.record(batch_size, self._attributes)
        if self._hooks:
            call_hooks(self._hooks, "after_predict", (ctx, result), self._observer.hook_failed)
        return result

    def __exit__(self, exc_type: object, exc: BaseException | None, traceback: object) -> None:
        try:
            if isinstance(exc, Exception):
                self._failed(exc)
        finally:
            if self._token is not None:
                otel_context.detach(self._token)
            if self._span is not None:
                self._span.end()

    def _failed(self, exc: Exception) -> None:
        ctx = self._context
        ctx.duration = time.perf_counter() - ctx.start_time
        error_type = telemetry.error_type(exc)
        observer = self._observer
        if self._span is not None:
            _mark_failed(self._span, exc, error_type, observer.model.signature.names)
        tel = self._telemetry
        if tel.meter is not None:
            failed = {**self._attributes, "error.type": error_type}
            tel.prediction_duration.record(ctx.duration, failed)
        if self._hooks:
            call_hooks(self._hooks, "on_error", (ctx, exc), observer.hook_failed)


def _batch_size(records: Any) -> int | None:
    """The number of records in a batch, when it can be told without looking inside."""
    if isinstance(records, np.ndarray):
        return int(records.shape[0]) if records.ndim else None
    if isinstance(records, Mapping):
        return None  # tensors: known after the call, from the predictions
    try:
        return len(records)
    except TypeError:
        return None


def _mark_failed(
    span: trace.Span, exc: BaseException, error_type: str, names: tuple[str, ...]
) -> None:
    # Error messages can quote the offending input; spans get the error's type and, for invalid
    # input, where it was, never the values. A field is named only when it is one of the
    # signature's: an unknown key is the caller's data. The stack trace is frames only.
    description = error_type
    if isinstance(exc, InvalidInputError):
        field = ""
        if exc.field is not None:
            field = f"field {exc.field!r}" if exc.field in names else "an unknown field"
        where = [field, f"record {exc.index}" if exc.index is not None else ""]
        description = f"{error_type} ({', '.join(w for w in where if w) or 'input'})"
    span.set_attribute("error.type", error_type)
    span.set_status(trace.Status(trace.StatusCode.ERROR, description))
    span.record_exception(
        exc,
        attributes={
            "exception.message": description,
            "exception.stacktrace": "".join(traceback.format_tb(exc.__traceback__)),
        },
    )
