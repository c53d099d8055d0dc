"""OpenTelemetry for modelkit: spans and metrics through the API only.

modelkit never imports the OpenTelemetry SDK: the host application configures one (or not), and
every prediction and load reports to it. The names follow the semantic-convention style:

=================================  =========  ===============================================
instrument or span                 unit       attributes
=================================  =========  ===============================================
span ``predict {name}`` (INTERNAL)            ``modelkit.model.name``, ``.version``, ``.format``,
                                              ``modelkit.prediction.batch.size``, ``error.type``;
                                              in a registry, ``modelkit.model.variant``
span ``load {name}`` (INTERNAL)               ``modelkit.model.name``, ``.version``, ``.format``
``modelkit.prediction.duration``   ``s``      model name, version, format; ``error.type``
``modelkit.prediction.batch.size`` {record}   model name, version, format
``modelkit.model.load.duration``   ``s``      model name, version, format; ``error.type``
``modelkit.hook.errors``           {error}    model name, ``modelkit.hook``
``modelkit.shadow.comparisons``    {compar.}  model name, version, ``modelkit.model.variant``,
                                              ``modelkit.shadow.outcome``
``modelkit.drift.score`` (gauge)   ``1``      model name, version, format,
                                              ``modelkit.drift.feature``
=================================  =========  ===============================================

Models served by a :class:`modelkit.Registry` add ``modelkit.model.variant`` (``primary``,
``canary`` or ``shadow``) to their spans and metrics. Raw inputs, outputs and routing keys never
go on spans or metrics.

With no SDK configured, the global providers are OpenTelemetry's proxies, and modelkit skips the
whole instrumentation (a check that costs well under a microsecond); it looks again at most
every half second, so an SDK configured after start-up is picked up. Pass providers explicitly
with ``modelkit.load(..., tracer_provider=..., meter_provider=...)`` or :class:`Telemetry` for
tests and for several applications in one process.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.util.types import AttributeValue

from ._version import __version__

__all__ = [
    "DURATION_BUCKETS",
    "SCOPE",
    "Telemetry",
    "default",
]

SCOPE = "modelkit"
#: Bucket advice for the duration histograms: from 10 µs (one ONNX record) to 10 s (big batches).
DURATION_BUCKETS = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)
# How often the global providers are looked at again while they are OpenTelemetry's no-op proxies.
_RECHECK_SECONDS = 0.5


def error_type(exc: BaseException) -> str:
    """The ``error.type`` of an exception: its class, qualified by its module unless built in."""
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _is_placeholder_tracer_provider(provider: Any) -> bool:
    return isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _is_placeholder_meter_provider(provider: Any) -> bool:
    # The API's proxy class is private; it is the provider get_meter_provider() returns until
    # the host sets one, and it is recognised by name so that modelkit needs no private import.
    return isinstance(provider, metrics.NoOpMeterProvider) or (
        type(provider).__name__ == "_ProxyMeterProvider"
    )


class Telemetry:
    """The tracer and instruments modelkit reports to.

    Args:
        tracer_provider: where spans go; ``None`` for the global provider.
        meter_provider: where metrics go; ``None`` for the global provider.
    """

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self._explicit_tracer_provider = tracer_provider
        self._explicit_meter_provider = meter_provider
        self.tracer: trace.Tracer | None = None
        self.meter: metrics.Meter | None = None
        #: When to look at the global providers again while they are placeholders.
        self.next_check = 0.0
        self._lock = threading.Lock()

    @property
    def is_active(self) -> bool:
        """Whether a real tracer or meter is attached (checked cheaply, re-checked lazily)."""
        if self.tracer is not None and self.meter is not None:
            return True
        if time.monotonic() < self.next_check:
            return self.tracer is not None or self.meter is not None
        self._resolve()
        return self.tracer is not None or self.meter is not None

    def _resolve(self) -> None:
        with self._lock:
            if self.tracer is None:
                provider = self._explicit_tracer_provider or trace.get_tracer_provider()
                if not _is_placeholder_tracer_provider(provider):
                    self.tracer = provider.get_tracer(SCOPE, __version__)
            if self.meter is None:
                provider = self._explicit_meter_provider or metrics.get_meter_provider()
                if not _is_placeholder_meter_provider(provider):
                    meter = provider.get_meter(SCOPE, __version__)
                    self._create_instruments(meter)
                    self.meter = meter
            self.next_check = time.monotonic() + _RECHECK_SECONDS

    def _create_instruments(self, meter: metrics.Meter) -> None:
        self.prediction_duration = meter.create_histogram(
            "modelkit.prediction.duration",
            unit="s",
            description="Duration of predict and predict_batch calls.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.batch_size = meter.create_histogram(
            "modelkit.prediction.batch.size",
            unit="{record}",
            description="Number of records per prediction call.",
            explicit_bucket_boundaries_advisory=BATCH_SIZE_BUCKETS,
        )
        self.load_duration = meter.create_histogram(
            "modelkit.model.load.duration",
            unit="s",
            description="Duration of modelkit.load, verification included.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        meter.create_observable_gauge(
            "modelkit.drift.score",
            callbacks=[self._observe_drift],
            unit="1",
            description="Population stability index of each input (and the output) against the "
            "reference data, for models loaded with drift=True.",
        )
        self.shadow_comparisons = meter.create_counter(
            "modelkit.shadow.comparisons",
            unit="{comparison}",
            description="Shadow models' answers compared with the primary's, by outcome "
            "(match, mismatch, error, dropped).",
        )
        self.hook_errors = meter.create_counter(
            "modelkit.hook.errors",
            unit="{error}",
            description="Exceptions raised by prediction hooks (the predictions were unaffected).",
        )

    def _observe_drift(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        for observer in list(_watched):
            if (observer.telemetry or DEFAULT) is not self or observer.drift is None:
                continue
            # Held for the loop: a model a registry drops meanwhile is still described right.
            model = observer.model_if_alive()
            if model is None:
                continue
            report = observer.drift.report()
            base = observer.attributes()
            features = [*report.features, *([report.outputs] if report.outputs else [])]
            for feature in features:
                if feature.score is not None:
                    yield metrics.Observation(
                        feature.score, {**base, "modelkit.drift.feature": feature.name}
                    )

    def record_hook_error(self, attributes: Mapping[str, AttributeValue]) -> None:
        """Count one failed hook call."""
        if self.is_active and self.meter is not None:
            self.hook_errors.add(1, attributes)


# The observers of models with drift statistics on, read by the drift gauge while they live.
_watched: weakref.WeakSet[Any] = weakref.WeakSet()


def watch_drift(observer: Any) -> None:
    """Report an observer's drift statistics through the ``modelkit.drift.score`` gauge."""
    _watched.add(observer)


_telemetries: dict[tuple[int, int], Telemetry] = {}
_telemetries_lock = threading.Lock()
#: The telemetry bound to the global providers.
DEFAULT = Telemetry()


def default() -> Telemetry:
    """The telemetry bound to the global providers."""
    return DEFAULT


def for_providers(tracer_provider: Any = None, meter_provider: Any = None) -> Telemetry:
    """One :class:`Telemetry` per pair of providers, so instruments are created once."""
    if tracer_provider is None and meter_provider is None:
        return DEFAULT
    key = (id(tracer_provider), id(meter_provider))
    with _telemetries_lock:
        found = _telemetries.get(key)
        if found is None:
            found = Telemetry(tracer_provider, meter_provider)
            # Keep the providers alive with their telemetry, so an id is never reused for another.
            found._providers = (tracer_provider, meter_provider)  # type: ignore[attr-defined]
            _telemetries[key] = found
        return found
