"""The JSON endpoints as async views, with the bodies and statuses of :mod:`modelkit._serving`,
and the Open Inference Protocol of :mod:`modelkit._oip` (:func:`open_inference`).

Async, because under ASGI Django runs a sync view on asgiref's one thread-sensitive thread,
which would serialise every prediction of the process; an async view awaits ``apredict``, which
runs the model on modelkit's thread pool. Under WSGI, Django runs each async view in its own
short-lived event loop, so requests on different server threads still predict in parallel.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings  # type: ignore[import-untyped]  # Django ships no types
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
from django.core.signals import setting_changed  # type: ignore[import-untyped]
from django.http import HttpRequest, HttpResponse  # type: ignore[import-untyped]
from django.urls import NoReverseMatch, reverse  # type: ignore[import-untyped]

from .._oip import OpenInference
from .._openapi import openapi_document
from .._registry import Registry
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
from . import conf
from ._loading import aload_models, get_registry

__all__ = ["describe", "index", "not_found", "open_inference", "openapi", "predict", "report"]

logger = logging.getLogger("modelkit")

_Handler = Callable[..., Awaitable[Reply]]


def _endpoint(*allowed: str) -> Callable[[_Handler], Callable[..., Awaitable[Any]]]:
    """An async view around ``handle``: the method check, and every failure as a JSON reply."""
    allow = allow_header(allowed)

    def decorate(handle: _Handler) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(handle)
        async def view(request: HttpRequest, **arguments: Any) -> Any:
            refused = refused_method(request.path, str(request.method), allowed)
            if refused is not None:
                return _respond(refused, {"Allow": allow})
            try:
                reply = await handle(request, **arguments)
            except Exception:  # an endpoint answers in JSON whatever happens
                # The details stay in the server's log, never in the response.
                logger.exception("modelkit: %s %s failed", request.method, request.path)
                reply = error(500, "internal_error", "The request failed; see the server log.")
            return _respond(reply)

        # A JSON API for programs: no browser session authenticates it and nothing it does
        # changes state, so Django's CSRF check does not apply. (An attribute, because
        # csrf_exempt wraps async views only since Django 5.0.)
        view.csrf_exempt = True  # type: ignore[attr-defined]
        return view

    return decorate


@_endpoint(*READ_METHODS)
async def index(request: HttpRequest) -> Reply:
    """``GET models/``: every model, with its version, digest and URL."""
    service = await _service(request)
    return service.index() if isinstance(service, Service) else service


@_endpoint(*READ_METHODS)
async def describe(request: HttpRequest, name: str) -> Reply:
    """``GET models/<name>``: name, version, digest and the input and output JSON Schemas."""
    service = await _service(request)
    return service.describe(name) if isinstance(service, Service) else service


@_endpoint("POST")
async def predict(request: HttpRequest, name: str) -> Reply:
    """``POST models/<name>/predict``: one record, or ``{"instances": [...]}``."""
    service = await _service(request)
    if not isinstance(service, Service):
        return service
    # Not request.body, which reads a body without Content-Length (chunked, under ASGI) whole:
    # refused from Content-Length, and read no further than the limit.
    body = service.read_body(request.read, byte_length(request.META.get("CONTENT_LENGTH")))
    if isinstance(body, Reply):
        return body
    return await service.apredict(name, body, key=request.headers.get(ROUTING_KEY_HEADER))


async def report(request: HttpRequest, name: str) -> Any:
    """``GET models/<name>/report``: the model's report page (HTML), when
    ``settings.MODELKIT["REPORT"]`` is true; otherwise the URL is no endpoint, to any method
    (404, as any other URL under the prefix)."""
    if not conf.get_settings().has_report:
        return await not_found(request, path=f"{name}/report")
    return await _report(request, name=name)


report.csrf_exempt = True  # type: ignore[attr-defined]  # as the views of _endpoint are


@_endpoint(*READ_METHODS)
async def _report(request: HttpRequest, name: str) -> Reply:
    service = await _service(request)
    return await service.areport(name) if isinstance(service, Service) else service


@_endpoint(*READ_METHODS)
async def openapi(request: HttpRequest) -> Reply:
    """``GET openapi.json``: the OpenAPI 3.1 document of the endpoints ``modelkit.django.urls``
    serves, wherever they are included (under the ``modelkit`` namespace), and of the ``/v2``
    endpoints when ``modelkit.django.oip_urls`` is included at the site's root."""
    service = await _service(request)
    if not isinstance(service, Service):
        return service
    try:
        prefix = str(reverse("modelkit:index"))
    except NoReverseMatch:
        logger.exception("modelkit: openapi.json documents modelkit.django.urls, not included")
        return error(500, "internal_error", "The endpoints are not mounted; see the server log.")
    return Reply(
        200,
        openapi_document(
            service.registry,
            prefix=prefix,
            max_batch_size=service.max_batch_size,
            max_body_size=service.max_body_size,
            has_open_inference=_has_open_inference(),
            has_report=conf.get_settings().has_report,
        ),
    )


def _has_open_inference() -> bool:
    """Whether ``modelkit.django.oip_urls`` is included at ``/v2``, where the document puts the
    protocol's paths (included elsewhere, it is left out rather than misplaced)."""
    try:
        return str(reverse("modelkit_oip:v2")) == "/v2"
    except NoReverseMatch:
        return False


@_endpoint(*ANY_METHOD)
async def not_found(request: HttpRequest, path: str) -> Reply:
    """Any other URL under the prefix: a JSON 404 naming the endpoints."""
    prefix = str(reverse(f"{_namespace(request)}:index"))
    return no_endpoint(request.path, prefix, prefix)


async def open_inference(request: HttpRequest, path: str | None = None) -> Any:
    """Every URL under ``v2``: the Open Inference Protocol (``GET v2/models/<name>``,
    ``POST v2/models/<name>/infer``...), once the models are loaded, checked and warmed up; when
    they cannot be (a broken ``settings.MODELKIT``, a bad bundle), readiness is 400 and the model
    URLs answer the protocol's 500, the reason logged once."""
    with contextlib.suppress(ImproperlyConfigured):
        # Loaded off the event loop; a failure is the protocol's to answer, and to log.
        await aload_models()
    protocol = _protocol()
    reply = await protocol.ahandle(
        str(request.method),
        "/v2" + (path or ""),
        request.headers.get,
        # Not request.body, which reads a body without Content-Length whole (see predict).
        lambda: protocol.service.read_body(
            request.read, byte_length(request.META.get("CONTENT_LENGTH"))
        ),
    )
    return _respond(reply)


# A JSON API for programs, as the views of _endpoint are: no CSRF check applies.
open_inference.csrf_exempt = True  # type: ignore[attr-defined]

# One protocol for the settings in force, so that a failed load is logged once, not at every
# readiness probe; built on first use, and again after any setting changes (its limits).
_in_force: OpenInference | None = None


def _protocol() -> OpenInference:
    global _in_force  # noqa: PLW0603 - the one protocol, swapped whole
    protocol = _in_force
    if protocol is None:
        try:
            service = _limited(get_registry)
        except ImproperlyConfigured:  # broken settings: never ready, and no body is read
            service = Service(get_registry)
        protocol = _in_force = OpenInference(service, is_ready=_is_loaded)
    return protocol


def _is_loaded() -> bool:
    return get_registry() is not None  # raises what loading raised


def _forget_protocol(**kwargs: Any) -> None:
    global _in_force, _logged_failure  # noqa: PLW0603
    _in_force = _logged_failure = None


setting_changed.connect(_forget_protocol, dispatch_uid="modelkit.django.views.setting_changed")


# What the JSON endpoints last logged of a failed load: logged once, as the protocol logs it, not
# at every request (a traceback per request would flood the log); forgotten with the protocol.
_logged_failure: str | None = None


async def _service(request: HttpRequest) -> Service | Reply:
    global _logged_failure  # noqa: PLW0603
    try:
        registry = await aload_models()
    except ImproperlyConfigured as exc:
        if str(exc) != _logged_failure:
            _logged_failure = str(exc)
            logger.exception("modelkit: the models could not be loaded")
        return error(500, "internal_error", "The models could not be loaded; see the server log.")
    namespace = _namespace(request)

    def url_for(name: str) -> str:
        return str(reverse(f"{namespace}:model", kwargs={"name": name}))

    return _limited(registry, url_for)


def _limited(
    registry: Registry | Callable[[], Registry], url_for: Callable[[str], str] | None = None
) -> Service:
    """A service over ``registry`` with the limits of ``settings.MODELKIT``."""
    limits = conf.get_settings()
    return Service(
        registry,
        max_batch_size=limits.max_batch_size,
        max_body_size=_smallest(limits.max_body_size, settings.DATA_UPLOAD_MAX_MEMORY_SIZE),
        max_response_size=limits.max_response_size,
        url_for=url_for,
    )


def _smallest(*limits: int | None) -> int | None:
    """The tightest of several limits (``None``: no limit)."""
    given = [limit for limit in limits if limit is not None]
    return min(given) if given else None


def _namespace(request: HttpRequest) -> str:
    match = request.resolver_match
    return str(match.namespace) if match is not None and match.namespace else "modelkit"


def _respond(reply: Reply, headers: dict[str, str] | None = None) -> Any:
    merged = {**dict(reply.headers), **(headers or {})}
    if not reply.has_body:
        return HttpResponse(status=reply.status, headers=merged)
    return HttpResponse(
        reply.to_bytes(), status=reply.status, headers=merged, content_type=reply.content_type
    )
