"""The JSON endpoints, independent of the web framework: Flask and Django call the same code.

Three endpoints under a prefix: the model list, one model's description (with its JSON Schemas),
and ``predict``. Every answer is a :class:`Reply` (status and JSON body), and every error has
the same shape::

    {"error": {"type": "invalid_input", "message": "...",
               "details": [{"field": "tenure", "index": 3, "message": "..."}]}}

Statuses: 400 malformed request, 404 unknown model, 413 batch over the limit, 422 input that
does not fit the signature (each problem with its field and record index), 500 anything else,
without internals (the exception goes to the ``modelkit`` logger).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel

from ._predictions import Predictions
from ._registry import Registry, Route
from .errors import InvalidInputError

__all__ = ["ROUTING_KEY_HEADER", "Reply", "Service"]

logger = logging.getLogger("modelkit")

#: The request header whose value routes a call to a canary stickily (a user or account id).
ROUTING_KEY_HEADER = "X-Modelkit-Key"


@dataclasses.dataclass(frozen=True)
class Reply:
    """One response: an HTTP status and a JSON-ready body."""

    status: int
    body: dict[str, Any]

    def to_json(self) -> str:
        """The body as JSON text (compact; no NaN or Infinity, which JSON lacks)."""
        return json.dumps(self.body, separators=(",", ":"), allow_nan=False, default=str)


def error(
    status: int, kind: str, message: str, details: list[dict[str, Any]] | None = None
) -> Reply:
    """An error reply in the one shape every endpoint uses."""
    body: dict[str, Any] = {"type": kind, "message": message}
    if details is not None:
        body["details"] = details
    return Reply(status, {"error": body})


def to_jsonable(output: Any) -> Any:
    """One model output as JSON values."""
    to_dict = getattr(output, "to_dict", None)
    if callable(to_dict):
        return _finite(to_dict())
    if isinstance(output, BaseModel):
        return _finite(output.model_dump(mode="json"))
    return _finite(output)


def _finite(value: Any) -> Any:
    """Replace NaN and infinities (which JSON cannot carry) by None, and numpy values by
    Python ones."""
    # Exact types first: a batch answer is thousands of plain floats, strings and dicts, and
    # an isinstance check against Mapping costs more than the rest of the work on them.
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, np.generic):
        return _finite(value.item())
    return value


@dataclasses.dataclass(frozen=True)
class _Request:
    route: Route
    payload: Any
    is_batch: bool
    key: str | None


class Service:
    """The endpoints over a registry.

    Args:
        registry: the models, or a function that returns them (read on every request, so an
            application that swaps its registry is served the new one).
        max_batch_size: the most records one ``{"instances": [...]}`` request may hold; larger
            ones get 413. ``None`` for no limit.
        url_for: builds a model's URL from its name, for the links in the model list.
    """

    def __init__(
        self,
        registry: Registry | Callable[[], Registry],
        *,
        max_batch_size: int | None = 1000,
        url_for: Callable[[str], str] | None = None,
    ) -> None:
        self._registry = registry
        self.max_batch_size = max_batch_size
        self._url_for = url_for

    @property
    def registry(self) -> Registry:
        registry = self._registry
        return registry if isinstance(registry, Registry) else registry()

    # -- endpoints ------------------------------------------------------------------------------

    def index(self) -> Reply:
        """``GET {prefix}``: every model, with its version and digest."""
        registry = self.registry
        models = []
        for name in registry.names():
            route = registry[name]
            entry: dict[str, Any] = {
                "name": name,
                "version": route.version,
                "digest": route.digest,
                "task": route.signature.outputs.task,
            }
            if self._url_for is not None:
                entry["url"] = self._url_for(name)
            models.append(entry)
        return Reply(200, {"models": models})

    def describe(self, name: str) -> Reply:
        """``GET {prefix}/<name>``: name, version, digest and the JSON Schemas."""
        route = self._route(name)
        if isinstance(route, Reply):
            return route
        model = route.model
        signature = model.signature
        return Reply(
            200,
            {
                "name": route.name,
                "version": model.version,
                "digest": model.digest,
                "format": model.format,
                "task": signature.outputs.task,
                "input_schema": signature.input_json_schema(),
                "output_schema": signature.output_json_schema(),
            },
        )

    def predict(self, name: str, body: bytes | str, *, key: str | None = None) -> Reply:
        """``POST {prefix}/<name>/predict``: one record, or ``{"instances": [...]}``."""
        request = self._parse(name, body, key)
        if isinstance(request, Reply):
            return request
        try:
            if request.is_batch:
                result: Any = request.route.predict_batch(request.payload, key=request.key)
            else:
                result = request.route.predict(request.payload, key=request.key)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error reply
            return self._failed(name, exc)
        return self._answer(request, result)

    async def apredict(self, name: str, body: bytes | str, *, key: str | None = None) -> Reply:
        """:meth:`predict` for async views: the model never runs on the event loop."""
        request = self._parse(name, body, key)
        if isinstance(request, Reply):
            return request
        try:
            if request.is_batch:
                result: Any = await request.route.apredict_batch(request.payload, key=request.key)
            else:
                result = await request.route.apredict(request.payload, key=request.key)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error reply
            return self._failed(name, exc)
        return self._answer(request, result)

    # -- the parts ------------------------------------------------------------------------------

    def _route(self, name: str) -> Route | Reply:
        registry = self.registry
        if name not in registry:
            return error(
                404, "unknown_model", f"No model named {name!r} (models: {registry.names()})."
            )
        return registry[name]

    def _parse(self, name: str, body: bytes | str, key: str | None) -> _Request | Reply:
        route = self._route(name)
        if isinstance(route, Reply):
            return route
        if not body:
            return error(400, "malformed_request", "The request has no body; send a JSON object.")
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # nesting too deep
            return error(400, "malformed_request", f"The body is not valid JSON: {exc}")
        if not isinstance(document, dict):
            return error(
                400,
                "malformed_request",
                'Expected a JSON object: one record, or {"instances": [...]} for a batch; '
                f"got {type(document).__name__}.",
            )
        if "instances" not in document:
            return _Request(route, document, is_batch=False, key=key)
        instances = document["instances"]
        extra = sorted(set(document) - {"instances"})
        if extra or not isinstance(instances, list):
            return error(
                400,
                "malformed_request",
                'A batch is {"instances": [record, ...]} and nothing else'
                + (f"; unexpected keys {extra}." if extra else "."),
            )
        limit = self.max_batch_size
        if limit is not None and len(instances) > limit:
            return error(
                413,
                "batch_too_large",
                f"The batch has {len(instances)} records; this endpoint takes at most {limit}.",
            )
        return _Request(route, instances, is_batch=True, key=key)

    def _answer(self, request: _Request, result: Any) -> Reply:
        if request.is_batch:
            assert isinstance(result, Predictions)
            return Reply(200, {"predictions": [to_jsonable(row) for row in result]})
        return Reply(200, to_jsonable(result))

    def _failed(self, name: str, exc: Exception) -> Reply:
        if isinstance(exc, InvalidInputError):
            details = [
                {"field": e.get("field"), "index": e.get("index"), "message": e.get("message")}
                for e in exc.errors
            ]
            return error(422, "invalid_input", str(exc), details)
        # Unexpected: the details stay in the server's log, never in the response.
        logger.exception("modelkit: prediction by model %r failed", name)
        return error(
            500, "internal_error", f"Model {name!r} failed to predict; see the server log."
        )
