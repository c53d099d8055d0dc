"""FastAPI integration: the JSON endpoints as an ``APIRouter``, async end to end.

::

    from fastapi import FastAPI
    import modelkit.fastapi

    app = FastAPI()
    app.include_router(modelkit.fastapi.router("models.toml"))

The endpoints are those of :mod:`modelkit._serving`, with the bodies, statuses and error shape
of the Flask and Django integrations: ``GET {prefix}``, ``GET {prefix}/{name}`` and
``POST {prefix}/{name}/predict``, a JSON 404 for any other URL under the prefix and a JSON 405
(with ``Allow``) for a wrong method. Predictions are awaited (``apredict``): the model never runs
on the event loop, and micro-batching gathers the requests that arrive together. Each model has
its own documented predict route, so its input and output JSON Schemas are in the app's OpenAPI
document. The Open Inference Protocol of :mod:`modelkit._oip` answers under ``/v2``, each model's
paths documented as well (its inputs and outputs in the inference request and answer). The
router's lifespan closes the registry when the application stops (``include_router`` merges it
into the app's).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

from ._deps import require

require("fastapi", extra="fastapi", feature="The FastAPI integration (modelkit.fastapi)")

import anyio.to_thread  # noqa: E402 - after the check; anyio comes with FastAPI
import fastapi  # noqa: E402
from starlette.requests import ClientDisconnect, Request  # noqa: E402
from starlette.responses import Response  # noqa: E402

from ._oip import OpenInference  # noqa: E402
from ._openapi import inlined, openapi_document  # noqa: E402
from ._registry import Registry  # noqa: E402
from ._serving import (  # noqa: E402
    ANY_METHOD,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_RESPONSE_SIZE,
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

__all__ = ["router"]

logger = logging.getLogger("modelkit")

_Handler = Callable[..., Awaitable[Reply]]


def router(
    registry_or_config: Registry | str | os.PathLike[str] | Mapping[str, Any],
    *,
    lock: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    prefix: str = "/models",
    max_batch_size: int | None = DEFAULT_MAX_BATCH_SIZE,
    max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
    max_response_size: int | None = DEFAULT_MAX_RESPONSE_SIZE,
    oip: bool = True,
    report: bool = False,
) -> fastapi.APIRouter:
    """The JSON endpoints over a registry, as a router to include in a FastAPI app.

    A registry config is loaded now, every bundle verified, its reference cases checked and
    run to warm the model up (unless its table says ``warmup = false``): a broken one stops
    the app from being built, a server that imports the app before forking loads it once, and
    the app never answers, nor says ready, before its models are. Each model then gets its own
    documented predict route. The router's lifespan closes the registry,
    given or loaded, when the app stops: ``app.include_router`` merges it into the app's.

    Args:
        registry_or_config: a :class:`modelkit.Registry` (the app's, which it may also call in
            its own routes), or a registry config to load: a TOML file, or a mapping of the
            same structure (relative paths from the working directory).
        lock: with a config, a lock file (or its mapping) every bundle must match.
        prefix: where the endpoints live (``"/models"``); ``""`` for the root, where the router
            answers every URL the app's routes before it do not.
        max_batch_size: the most records (or tensor rows) one predict request may hold;
            more get 413. ``None`` for no limit.
        max_body_size: the largest predict body, in bytes: refused (413) from its
            ``Content-Length`` before a byte is read, and read no further than this + 1 byte.
            ``None`` for no limit.
        max_response_size: the largest predict answer, in bytes; a larger one gets 500
            ``response_too_large``. ``None`` for no limit.
        oip: also serve the Open Inference Protocol v2 under ``/v2`` (``GET /v2/models/{name}``,
            ``POST /v2/models/{name}/infer``...), with the same registry and limits.
        report: also serve each model's report page at ``{prefix}/{name}/report`` (HTML:
            identity, signature, reference cases, training profile and live drift; the charts
            need the ``report`` extra). Off by default: it shows the training data's
            distributions, which not every application may publish.

    Raises:
        ValueError: a malformed prefix (or, with ``oip``, one at or under ``/v2``), limit or
            config entry, or ``lock`` with a registry.
        BundleError: a bundle, the config or the lock file is missing or malformed.
        IntegrityError: a bundle does not have the digest its config or lock file pins.
    """
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        raise ValueError(f"prefix must start with '/' and not end with one, got {prefix!r}.")
    if oip and (prefix == "/v2" or prefix.startswith("/v2/")):
        raise ValueError(
            f"prefix {prefix!r} is the Open Inference Protocol's (/v2 and under); choose another."
        )
    limits = {
        "max_batch_size": max_batch_size,
        "max_body_size": max_body_size,
        "max_response_size": max_response_size,
    }
    for key, value in limits.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"{key} must be a positive integer or None (no limit), got {value!r}.")
    if isinstance(registry_or_config, Registry):
        if lock is not None:
            raise ValueError("lock= goes with a registry config, not a Registry.")
        registry = registry_or_config
    else:
        registry = Registry.from_config(registry_or_config, lock=lock)
    service = Service(
        registry,
        max_batch_size=max_batch_size,
        max_body_size=max_body_size,
        max_response_size=max_response_size,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            # Close waits for the micro-batching workers to answer what is queued: not on the loop.
            await anyio.to_thread.run_sync(registry.close)

    # Each model's operations as the framework-neutral document writes them, references
    # inlined: FastAPI writes its own document, whose components hold only its models.
    document = openapi_document(
        registry,
        prefix=prefix,
        max_batch_size=max_batch_size,
        max_body_size=max_body_size,
        has_open_inference=oip,
        has_report=report,
    )
    api = fastapi.APIRouter(lifespan=lifespan)
    if oip:
        # First: at the root prefix, the JSON endpoints' catch-all would answer /v2 too.
        _add_open_inference(api, service, document)
    _add_routes(api, service, prefix, document, has_report=report)
    return api


def _documented(document: Mapping[str, Any], path: str, method: str) -> dict[str, Any]:
    """The operation at ``path`` and ``method`` of ``document``, its references inlined."""
    operation: dict[str, Any] = inlined(document, document["paths"][path][method])
    return operation


def _add_routes(
    api: fastapi.APIRouter,
    service: Service,
    prefix: str,
    document: Mapping[str, Any],
    *,
    has_report: bool,
) -> None:
    registry = service.registry

    async def index(request: Request) -> Reply:
        # The models' URLs from the index's own, whatever prefix the app includes the router
        # under (the limits do not matter here).
        base = request.url.path.rstrip("/")
        return Service(registry, url_for=lambda name: f"{base}/{quote(name)}").index()

    async def describe(request: Request, name: str) -> Reply:
        return service.describe(name)

    async def predict(request: Request, name: str) -> Reply:
        body = await _read_body(request, service)
        if isinstance(body, Reply):
            return body
        return await service.apredict(name, body, key=request.headers.get(ROUTING_KEY_HEADER))

    async def report(request: Request, name: str) -> Reply:
        return await service.areport(name)

    async def elsewhere(request: Request, path: str) -> Reply:
        """A wrong method on an endpoint (405, or 204 to OPTIONS), or no endpoint (404)."""
        name, slash, action = path.partition("/")
        allowed: tuple[str, ...]
        if not name:
            allowed, handle = READ_METHODS, functools.partial(index, request)
        elif not slash:
            allowed, handle = READ_METHODS, functools.partial(describe, request, name)
        elif action == "predict":
            allowed, handle = ("POST",), functools.partial(predict, request, name)
        elif action == "report" and has_report:
            allowed, handle = READ_METHODS, functools.partial(report, request, name)
        else:
            return no_endpoint(request.url.path, prefix or "/", f"{prefix}/")
        refused = refused_method(request.url.path, request.method, allowed)
        if refused is None:  # HEAD, which routes declared for GET do not take
            return await handle()
        return dataclasses.replace(refused, headers=(("Allow", allow_header(allowed)),))

    # Every endpoint returns a Response it built: no response model to validate against.
    add = functools.partial(api.add_api_route, response_model=None)
    add(
        prefix or "/",
        _endpoint(index),
        methods=["GET"],
        name="modelkit_index",
        openapi_extra=_documented(document, prefix or "/", "get"),
    )
    # A route per model, so that the document has its JSON Schemas; the generic routes below
    # serve models added to the registry later.
    endpoints: list[tuple[str, _Handler, str]] = [
        ("", describe, "get"),
        ("/predict", predict, "post"),
        *([("/report", report, "get")] if has_report else []),
    ]
    for name in registry.names():
        for suffix, handle, verb in endpoints:
            path = f"{prefix}/{name}{suffix}"
            add(
                path,
                _endpoint(_bound(handle, name)),
                methods=[verb.upper()],
                name=f"modelkit_{handle.__name__}_{name}",
                openapi_extra=_documented(document, path, verb),
            )
    for path, handle, method in (
        (f"{prefix}/{{name}}", describe, "GET"),
        (f"{prefix}/{{name}}/predict", predict, "POST"),
        *([(f"{prefix}/{{name}}/report", report, "GET")] if has_report else []),
        # Last: every other method and URL under the prefix gets a JSON answer, not FastAPI's.
        (f"{prefix}/{{path:path}}", elsewhere, ANY_METHOD),
    ):
        methods = [method] if isinstance(method, str) else list(method)
        add(path, _endpoint(handle), methods=methods, include_in_schema=False)
    if prefix:  # the index's own URL, which the route above does not match

        async def elsewhere_index(request: Request) -> Reply:
            return await elsewhere(request, "")

        add(prefix, _endpoint(elsewhere_index), methods=list(ANY_METHOD), include_in_schema=False)


def _add_open_inference(
    api: fastapi.APIRouter, service: Service, document: Mapping[str, Any]
) -> None:
    """The Open Inference Protocol's URLs, ``/v2`` and everything under it."""
    protocol = OpenInference(service)

    async def v2(request: Request, path: str) -> Reply:
        """The protocol at ``path`` (``/v2...``, as the URL has it: a trailing slash is another
        URL, as on the other servers)."""
        method = request.method
        # The protocol reads an inference body synchronously: read first, within the limit,
        # and only the body of a request the protocol may read it for (not a POST that gets
        # a 405 or a 404 from the URL alone).
        body = await _read_body(request, service) if protocol.reads_body(method, path) else b""
        return await protocol.ahandle(method, path, request.headers.get, lambda: body)

    def forward(template: str) -> _Handler:
        """The protocol at one documented path (``{version}`` from the URL)."""

        async def documented(request: Request) -> Reply:
            return await v2(
                request, template.replace("{version}", request.path_params.get("version", ""))
            )

        return documented

    # Each path of the document a route of its own, so that the app's document has it; the
    # generic routes below answer HEAD, other methods and other URLs (and models added later).
    for path, operations in document["paths"].items():
        if path != "/v2" and not path.startswith("/v2/"):
            continue
        for method, operation in operations.items():
            api.add_api_route(
                path,
                _endpoint(forward(path)),
                methods=[method.upper()],
                name=f"modelkit_{operation['operationId']}",
                response_model=None,
                # No media type of its own: the health answers have no body.
                response_class=Response,
                openapi_extra=_documented(document, path, method),
            )

    async def root(request: Request) -> Reply:
        return await v2(request, "/v2")

    async def under(request: Request, path: str) -> Reply:
        return await v2(request, f"/v2/{path}")

    methods = list(ANY_METHOD)
    api.add_api_route("/v2", _endpoint(root), methods=methods, include_in_schema=False)
    api.add_api_route("/v2/{path:path}", _endpoint(under), methods=methods, include_in_schema=False)


def _bound(handle: _Handler, name: str) -> _Handler:
    """``handle`` for one model: a route of its own, without a ``name`` parameter."""

    async def bound(request: Request) -> Reply:
        return await handle(request, name)

    return bound


def _endpoint(handle: _Handler) -> Callable[..., Awaitable[Response]]:
    """A FastAPI endpoint around ``handle``: every failure as a JSON reply."""

    @functools.wraps(handle)
    async def endpoint(request: Request, **arguments: Any) -> Response:
        try:
            reply = await handle(request, **arguments)
        except Exception:  # an endpoint answers in JSON whatever happens
            # The details stay in the server's log, never in the response.
            logger.exception("modelkit: %s %s failed", request.method, request.url.path)
            reply = error(500, "internal_error", "The request failed; see the server log.")
        return _respond(reply)

    return endpoint


async def _read_body(request: Request, service: Service) -> bytes | Reply:
    """The request body, refused (413) from its ``Content-Length`` before a byte is read, and
    read from the stream no further than the limit + 1 byte (a chunked body)."""
    declared = byte_length(request.headers.get("content-length"))
    limit = service.max_body_size
    received = bytearray()
    if limit is None or declared is None or declared <= limit:
        try:
            async with contextlib.aclosing(request.stream()) as chunks:
                async for chunk in chunks:
                    received += chunk
                    if limit is not None and len(received) > limit:
                        break
        except ClientDisconnect:
            return error(400, "malformed_request", "The client left before sending the body.")
    # The service applies the limits to what was read, in the one wording of every surface.
    return service.read_body(io.BytesIO(received).read, declared)


def _respond(reply: Reply) -> Response:
    headers = dict(reply.headers)
    if not reply.has_body:
        return Response(status_code=reply.status, headers=headers)
    return Response(
        reply.to_bytes(), status_code=reply.status, headers=headers, media_type=reply.content_type
    )
