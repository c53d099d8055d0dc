"""The JSON endpoints of :mod:`modelkit._serving` and the Open Inference Protocol of
:mod:`modelkit._oip` as a plain WSGI application, with health checks.

``modelkit serve`` runs it on waitress: no web framework sits between the server and the
endpoints. The answers are those the Flask and Django integrations give (the same service
writes them): ``GET {prefix}``, ``GET {prefix}/<name>``, ``POST {prefix}/<name>/predict``, a JSON
404 for any other URL and a JSON 405 (with ``Allow``) for a wrong method; every URL under
``/v2`` is the Open Inference Protocol's. ``GET /healthz`` answers while the process is up,
``GET /readyz`` (and ``GET /v2/health/ready``) once the models are loaded; until then the model
endpoints, and ``GET /openapi.json`` that documents them, answer 503 at once rather than wait for
the loading registry. With ``--metrics``,
``GET /metrics`` answers the Prometheus scrape (:mod:`modelkit.cli._metrics`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .._oip import OpenInference
from .._openapi import openapi_document
from .._serving import (
    ANY_METHOD,
    READ_METHODS,
    ROUTING_KEY_HEADER,
    Reply,
    Service,
    allow_header,
    byte_length,
    error,
    no_endpoint,
    refused_method,
)

if TYPE_CHECKING:
    from .. import Registry
    from ._metrics import PrometheusMetrics

__all__ = ["Application", "Models"]

logger = logging.getLogger("modelkit")

_Response = tuple[int, list[tuple[str, str]], bytes]
# The WSGI environ key of the routing-key header: X-Modelkit-Key -> HTTP_X_MODELKIT_KEY.
_ROUTING_KEY = "HTTP_" + ROUTING_KEY_HEADER.upper().replace("-", "_")


class Models:
    """A registry loaded once, in the background, while the server already answers.

    Args:
        build: loads the registry.
    """

    def __init__(self, build: Callable[[], Registry]) -> None:
        self._build = build
        self.registry: Registry | None = None
        #: Set once the registry is loaded.
        self.ready = threading.Event()

    def load(self) -> None:
        """Load the registry (the exceptions of ``build`` propagate)."""
        started = time.perf_counter()
        registry = self._build()
        self.registry = registry
        logger.info(
            "modelkit: loaded %d model(s) in %.0f ms (pid %d)",
            len(registry),
            1000 * (time.perf_counter() - started),
            os.getpid(),
        )
        self.ready.set()

    def loaded(self) -> Registry:
        """The registry, once :attr:`ready` is set."""
        registry = self.registry
        if registry is None:
            raise RuntimeError("The models are not loaded yet.")
        return registry

    def close(self) -> None:
        """Stop the registry's background work, if it was loaded."""
        if self.registry is not None:
            self.registry.close()


class Application:
    """The WSGI application: health checks, then the endpoints under ``prefix``.

    Args:
        models: the registry, loading or loaded.
        prefix: where the endpoints live (``/models``), or ``""`` for the root.
        max_batch_size: as for :class:`modelkit._serving.Service`.
        max_body_size: as for :class:`modelkit._serving.Service`.
        max_response_size: as for :class:`modelkit._serving.Service`.
        metrics: what ``GET /metrics`` answers, or ``None`` for no such endpoint.
        has_report: serve ``GET {prefix}/<name>/report``, the model's report page.
    """

    def __init__(
        self,
        models: Models,
        prefix: str,
        *,
        max_batch_size: int,
        max_body_size: int,
        max_response_size: int,
        metrics: PrometheusMetrics | None = None,
        has_report: bool = False,
    ) -> None:
        self.models = models
        self.metrics = metrics
        self.has_report = has_report
        self.prefix = prefix
        self.service = Service(
            models.loaded,
            max_batch_size=max_batch_size,
            max_body_size=max_body_size,
            max_response_size=max_response_size,
            url_for=lambda name: f"{prefix}/{quote(name)}",
        )
        self.oip = OpenInference(self.service, is_ready=models.ready.is_set)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        # PEP 3333 hands the path over as latin-1; URLs are UTF-8.
        path = str(environ.get("PATH_INFO") or "/").encode("latin-1").decode("utf-8", "replace")
        try:
            status, headers, body = self._handle(method, path, environ)
        except Exception:  # an endpoint answers in JSON whatever happens
            # The details stay in the server's log, never in the response.
            logger.exception("modelkit: %s %s failed", method, path)
            reply = error(500, "internal_error", "The request failed; see the server log.")
            status, headers, body = _write(reply)
        headers.append(("Content-Length", str(len(body))))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [b"" if method == "HEAD" else body]

    def _handle(self, method: str, path: str, environ: dict[str, Any]) -> _Response:
        if path == "/healthz":
            return _endpoint(method, path, READ_METHODS, lambda: Reply(200, {"status": "ok"}))
        if path == "/readyz":
            return _endpoint(method, path, READ_METHODS, self._readiness)
        if path == "/metrics" and self.metrics is not None:
            return self._scrape(method, path, self.metrics, environ)
        if path == "/v2" or path.startswith("/v2/"):
            # Its own readiness: health answers at once, the rest 503 while the models load.
            reply = self.oip.handle(
                method,
                path,
                lambda name: environ.get("HTTP_" + name.upper().replace("-", "_")),
                lambda: self._read_body(environ),
            )
            return _write(reply)
        if not self.models.ready.is_set():
            # The model endpoints would wait for the loading registry: answer 503 at once.
            reply = error(503, "not_ready", "The models are loading; retry shortly.")
            return _write(reply, [("Retry-After", "1")])
        prefix = self.prefix
        if path == "/openapi.json":
            return _endpoint(method, path, READ_METHODS, self._openapi)
        if path in (prefix or "/", f"{prefix}/"):
            return _endpoint(method, path, READ_METHODS, self.service.index)
        if path.startswith(f"{prefix}/"):
            name, slash, action = path[len(prefix) + 1 :].partition("/")
            if name and not slash:
                return _endpoint(method, path, READ_METHODS, lambda: self.service.describe(name))
            if name and action == "predict":
                return _endpoint(method, path, ("POST",), lambda: self._predict(name, environ))
            if name and action == "report" and self.has_report:
                return _endpoint(method, path, READ_METHODS, lambda: self.service.report(name))
        return _endpoint(method, path, ANY_METHOD, lambda: self._not_found(path))

    def _scrape(
        self, method: str, path: str, metrics: PrometheusMetrics, environ: dict[str, Any]
    ) -> _Response:
        refused = refused_method(path, method, READ_METHODS)
        if refused is not None:
            return _write(refused, [("Allow", allow_header(READ_METHODS))])
        # Answered while the models load too: a scrape of a starting server is not an error.
        body, content_type = metrics.scrape(environ.get("HTTP_ACCEPT"))
        return 200, [("Content-Type", content_type)], body

    def _openapi(self) -> Reply:
        service = self.service
        document = openapi_document(
            service.registry,
            prefix=self.prefix,
            max_batch_size=service.max_batch_size,
            max_body_size=service.max_body_size,
            has_health_checks=True,
            has_open_inference=True,
            has_report=self.has_report,
        )
        return Reply(200, document)

    def _readiness(self) -> Reply:
        registry = self.models.registry
        if self.models.ready.is_set() and registry is not None:
            return Reply(200, {"status": "ready", "models": registry.names()})
        return Reply(503, {"status": "loading"})

    def _predict(self, name: str, environ: dict[str, Any]) -> Reply:
        body = self._read_body(environ)
        if isinstance(body, Reply):
            return body
        return self.service.predict(name, body, key=environ.get(_ROUTING_KEY))

    def _read_body(self, environ: dict[str, Any]) -> bytes | Reply:
        # Refused from Content-Length before a byte is read, and read no further than the limit
        # (chunked bodies).
        return self.service.read_body(
            environ["wsgi.input"].read, byte_length(environ.get("CONTENT_LENGTH"))
        )

    def _not_found(self, path: str) -> Reply:
        return no_endpoint(path, self.prefix or "/", f"{self.prefix}/")


def _endpoint(
    method: str, path: str, allowed: tuple[str, ...], handle: Callable[[], Reply]
) -> _Response:
    """``handle``'s reply, after the method check (405 with ``Allow``, or 204 to ``OPTIONS``)."""
    refused = refused_method(path, method, allowed)
    if refused is None:
        return _write(handle())
    return _write(refused, [("Allow", allow_header(allowed))])


def _write(reply: Reply, headers: list[tuple[str, str]] | None = None) -> _Response:
    extra = [*reply.headers, *(headers or [])]
    if not reply.has_body:
        return reply.status, extra, b""
    return reply.status, [("Content-Type", reply.content_type), *extra], reply.to_bytes()
