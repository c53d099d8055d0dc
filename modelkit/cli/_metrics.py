"""``modelkit serve --metrics``: the documented metrics in Prometheus's text format.

There is one instrumentation path. The models report through the OpenTelemetry API, as they do
in any application. The server gives the registry an SDK meter provider whose only reader is
OpenTelemetry's Prometheus exporter, and ``GET /metrics`` renders that reader's collector
registry. The library itself still depends only on the API: the SDK and the exporter come with
the ``prometheus`` extra and are imported here, when the flag is given.

The exporter names each instrument from its name and unit, so ``modelkit.prediction.duration``
(unit ``s``) is scraped as ``modelkit_prediction_duration_seconds`` (``_bucket``, ``_sum`` and
``_count``). Attributes become labels, ``modelkit.model.name`` becoming ``modelkit_model_name``.
The registry also holds the process's own collectors (CPU, memory, open files, garbage
collection), as ``prometheus_client``'s default registry would.

The provider is the server's own. The process-wide one stays untouched, so an OpenTelemetry SDK
the host configured keeps receiving its spans.
"""

from __future__ import annotations

from typing import Any

from .._deps import require

__all__ = ["PrometheusMetrics"]

_FEATURE = "modelkit serve --metrics"


class PrometheusMetrics:
    """An SDK meter provider read by the Prometheus exporter, and the scrape it answers."""

    def __init__(self) -> None:
        client = require("prometheus_client", extra="prometheus", feature=_FEATURE)
        sdk_metrics = require("opentelemetry.sdk.metrics", extra="prometheus", feature=_FEATURE)
        resources = require("opentelemetry.sdk.resources", extra="prometheus", feature=_FEATURE)
        exporter = require(
            "opentelemetry.exporter.prometheus",
            extra="prometheus",
            feature=_FEATURE,
            package="opentelemetry-exporter-prometheus",
        )
        self._exposition = require(
            "prometheus_client.exposition", extra="prometheus", feature=_FEATURE
        )
        # A registry of the server's own, not prometheus_client's global one: a host process
        # that already exports that one would otherwise see every series twice.
        self._registry = client.CollectorRegistry()
        client.ProcessCollector(registry=self._registry)
        client.PlatformCollector(registry=self._registry)
        client.GCCollector(registry=self._registry)
        reader = exporter.PrometheusMetricReader(registry=self._registry)
        # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, which the
        # exporter publishes as the target_info series.
        resource = resources.Resource.create({"service.name": "modelkit"})
        #: The meter provider to hand to the registry.
        self.meter_provider: Any = sdk_metrics.MeterProvider(
            metric_readers=[reader], resource=resource
        )

    def scrape(self, accept: str | None) -> tuple[bytes, str]:
        """The current metrics, in the format the scraper's ``Accept`` header asks for.

        Args:
            accept: the request's ``Accept`` header, if any. Prometheus asks for OpenMetrics
                when it can; anything else gets the classic text format.

        Returns:
            The body and its ``Content-Type``.
        """
        encoder, content_type = self._exposition.choose_encoder(accept or "")
        body: bytes = encoder(self._registry)
        return body, content_type

    def close(self) -> None:
        """Stop the provider (the exporter unregisters its collector)."""
        self.meter_provider.shutdown()
