"""The JSON endpoints, independent of the web framework: Flask and Django call the same code.

Three endpoints under a prefix: the model list, one model's description (with its JSON Schemas),
and ``predict``; and, where a surface serves it, a model's report as an HTML page
(:meth:`Service.report`). Every answer is a :class:`Reply` (status and JSON body), and every
error has the same shape::

    {"error": {"type": "invalid_input", "message": "...",
               "details": [{"field": "tenure", "index": 3, "message": "..."}]}}

Statuses: 400 malformed request, 404 unknown model, 413 body or batch over its limit, 422 input
that does not fit the signature (each problem with its field and record index; a runtime's
refusal as one readable line, without its source paths), 500 anything else, without internals
(the exception goes to the ``modelkit`` logger), and 500 ``response_too_large`` for an answer over
its limit.

Three limits hold before work is done, so that one request cannot take a worker down:
the body is refused from its ``Content-Length`` and read no further than ``max_body_size`` + 1
bytes (:meth:`Service.read_body`), before any JSON is parsed; the records of a batch, and the rows
of a tensor record along its batch axis, are counted against ``max_batch_size`` before the model
runs; and the answer is refused before it is built once its arrays alone would pass
``max_response_size``, and written no further than that limit.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from ._jsonable import to_jsonable
from ._model import Model, report_page, run_off_loop
from ._predictions import Predictions, TensorOutput
from ._reasons import public_reason
from ._registry import Registry, Route
from ._worker import after_fork_in_child
from .errors import InvalidInputError, ModelkitError

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_RESPONSE_SIZE",
    "REPORT_MAX_AGE",
    "ROUTING_KEY_HEADER",
    "Reply",
    "ResponseTooLargeError",
    "Service",
    "Size",
]

logger = logging.getLogger("modelkit")

#: The request header whose value routes a call to a canary stickily (a user or account id).
ROUTING_KEY_HEADER = "X-Modelkit-Key"

#: The most records (or tensor rows) one predict request may hold.
DEFAULT_MAX_BATCH_SIZE = 1000
# 10 MiB holds a full default batch of wide records (1,000 records of 100 fields is about 2 MB)
# or a few images as nested lists, while the worst JSON for memory (``[{},{},...]``) still parses
# into less than about 300 MB.
#: The largest request body the predict endpoint reads, in bytes.
DEFAULT_MAX_BODY_SIZE = 10 * 2**20
# Answers are wider than questions (17-digit floats for float32 probabilities, one tensor output
# per row), so five times the body limit; the answer is built as text of at most this size.
#: The largest answer the predict endpoint sends, in bytes.
DEFAULT_MAX_RESPONSE_SIZE = 50 * 2**20

#: How long, in seconds, a model's report page is served again before it is drawn anew. Drawing
#: a page's charts takes about a second of CPU: a stream of requests must not multiply that.
REPORT_MAX_AGE = 10.0
# The report is a page of its own, with nothing to fetch: no script runs on it, and it reaches
# nothing, so a value the escaping missed could do nothing either.
_REPORT_HEADERS = (
    (
        "Content-Security-Policy",
        (
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
            "form-action 'none'"
        ),
    ),
    ("X-Content-Type-Options", "nosniff"),
    # What a model received is not for shared caches.
    ("Cache-Control", "no-store"),
)

# Reading a body, at most this much at once.
_READ_CHUNK = 64 * 1024
# Arrays larger than this are written as JSON a slice at a time, never as one Python list; so
# are all arrays of an answer once this many of their elements have been made Python values.
_ARRAY_CHUNK = 8192
_CONVERTED_ELEMENTS = 65536
# The fewest JSON characters an array element takes, its separator included, by dtype kind:
# a float is at least "0.0", a boolean "true", a string '""'; anything else one character.
_LEAST_CHARACTERS = {"f": 4, "b": 5, "U": 3}
_LENGTH_DIGITS = re.compile(r"[0-9]{1,19}")


@dataclasses.dataclass(frozen=True)
class Reply:
    """One response: an HTTP status and a JSON-ready body, or raw bytes.

    Attributes:
        status: the HTTP status.
        body: the body as Python data (large arrays may be left as numpy arrays); ``None``,
            without ``content``, for a response without a body.
        text: the body already written as JSON, when the service wrote it under its size limit.
        content: the whole body as bytes, sent instead of ``body`` (an Open Inference answer
            with binary tensor data, a report page).
        media_type: the ``Content-Type`` of ``content``.
        headers: headers to send with it, besides ``Content-Type``.
    """

    status: int
    body: Any
    text: str | None = dataclasses.field(default=None, repr=False, compare=False)
    content: bytes | None = dataclasses.field(default=None, repr=False, compare=False)
    media_type: str = "application/octet-stream"
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def has_body(self) -> bool:
        """Whether the response has a body (a 204, or an empty health answer, has none)."""
        return self.body is not None or self.content is not None

    @property
    def content_type(self) -> str:
        """The body's media type."""
        return "application/json" if self.content is None else self.media_type

    def to_json(self) -> str:
        """The body as JSON text (compact; no NaN or Infinity, which JSON lacks)."""
        if self.text is not None:
            return self.text
        return _dumps(self.body)

    def to_bytes(self) -> bytes:
        """The body as the bytes to send."""
        return self.content if self.content is not None else self.to_json().encode()


def error(
    status: int, kind: str, message: str, details: list[dict[str, Any]] | None = None
) -> Reply:
    """An error reply in the one shape every endpoint uses."""
    body: dict[str, Any] = {"type": kind, "message": message}
    if details is not None:
        body["details"] = details
    return Reply(status, {"error": body})


#: What the catch-all route of every surface takes, so any method gets a JSON answer.
ANY_METHOD = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
#: What an endpoint that only reads takes.
READ_METHODS = ("GET", "HEAD")


def allow_header(allowed: tuple[str, ...]) -> str:
    """The ``Allow`` header of an endpoint that takes ``allowed`` (and always ``OPTIONS``)."""
    return ", ".join(dict.fromkeys((*allowed, "OPTIONS")))


def byte_length(value: str | None) -> int | None:
    """A length in bytes from a request header (``Content-Length``...), or ``None`` when it has
    none or it is not one: ASCII digits only (``"²".isdigit()`` is true, and ``int`` refuses
    it), at most 19 of them (``int`` refuses more than 4,300, and no body is that long)."""
    text = (value or "").strip()
    return int(text) if _LENGTH_DIGITS.fullmatch(text) else None


def refused_method(path: str, method: str, allowed: tuple[str, ...]) -> Reply | None:
    """``None`` when the endpoint takes ``method``; otherwise what to answer, with the
    ``Allow`` header of :func:`allow_header`: 204 without a body to ``OPTIONS``, else a JSON 405."""
    if method in allowed:
        return None
    if method == "OPTIONS":
        return Reply(204, None)
    takes = ", ".join(m for m in allowed if m != "OPTIONS")
    return error(405, "method_not_allowed", f"{path} takes {takes}, not {method}.")


def no_endpoint(path: str, index: str, base: str) -> Reply:
    """The JSON 404 for a URL under the prefix that names no endpoint.

    Args:
        path: the URL asked for.
        index: the index endpoint's URL.
        base: what a model's name follows in the other endpoints' URLs (``/models/``).
    """
    return error(
        404,
        "not_found",
        f"No endpoint at {path}: the endpoints are GET {index}, GET {base}<name> and "
        f"POST {base}<name>/predict.",
    )


def json_values(output: Any, size: Size | None = None) -> Any:
    """One model output (or any body) as JSON values; with ``size``, its arrays are counted
    against the answer's limit, and large ones kept for :func:`render` to write in slices."""
    if type(output) is TensorOutput:
        output = dict(output)  # not to_dict(), which makes one Python list of each whole array
    if size is None:
        return to_jsonable(output, default=str)
    counted = (size.least, size.elements)
    try:
        return to_jsonable(output, default=str, on_array=functools.partial(_convertible, size))
    except _KeepArraysError:
        # Seldom: an array too large to become Python values. Count again, and keep them.
        size.least, size.elements = counted
        return _kept(output, size)


class _KeepArraysError(Exception):
    """An answer holds an array to write a slice at a time (never leaves this module)."""


def _convertible(size: Size, array: np.ndarray) -> None:
    size.count(array)  # before tolist(), which would make a Python object per element
    if array.size > _ARRAY_CHUNK or size.elements > _CONVERTED_ELEMENTS:
        raise _KeepArraysError


def _kept(value: Any, size: Size) -> Any:
    """JSON values with large arrays left as arrays (counted), for render() to write."""
    if isinstance(value, np.ndarray):
        size.count(value)
        if value.size > _ARRAY_CHUNK or size.elements > _CONVERTED_ELEMENTS:
            size.has_arrays = True
            return value
        return to_jsonable(value, default=str)
    if isinstance(value, Mapping):
        return {str(key): _kept(item, size) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_kept(item, size) for item in value]
    return to_jsonable(value, default=str)


class ResponseTooLargeError(Exception):
    """An answer would be larger than the endpoint's ``max_response_size`` (the serving layer
    turns it into :func:`response_too_large`; it never reaches a caller)."""

    def __init__(self, least: int, limit: int) -> None:
        super().__init__(f"The answer is at least {least} bytes; the limit is {limit}.")
        self.least = least
        self.limit = limit


class Size:
    """The JSON size an answer is known to reach, checked against the limit as it grows."""

    __slots__ = ("elements", "has_arrays", "least", "limit")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.least = 0
        self.elements = 0
        self.has_arrays = False

    def count(self, array: np.ndarray) -> None:
        self.elements += array.size
        self.add(array.size * _LEAST_CHARACTERS.get(array.dtype.kind, 2))

    def add(self, characters: int) -> None:
        self.least += characters
        if self.limit is not None and self.least > self.limit:
            raise ResponseTooLargeError(self.least, self.limit)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False, default=str)


def render(body: Any, size: Size) -> str:
    """``body`` (from :func:`json_values` with ``size``) as JSON text within ``size.limit``.

    Raises:
        ResponseTooLargeError: the text would pass the limit; at most the limit (and one piece)
            was written before the check stopped it.
    """
    if not size.has_arrays:
        text = _dumps(body)
        if size.limit is not None and len(text) > size.limit:
            raise ResponseTooLargeError(len(text), size.limit)
        return text
    written = Size(size.limit)
    pieces = []
    for piece in _pieces(body):
        written.add(len(piece))
        pieces.append(piece)
    return "".join(pieces)


def _pieces(value: Any) -> Iterator[str]:
    """JSON text for a body that holds large arrays, piece by piece, as _dumps would write it."""
    if isinstance(value, np.ndarray):
        yield from _array_pieces(value)
    elif type(value) is dict:
        yield "{"
        for position, (key, item) in enumerate(value.items()):
            yield ("," if position else "") + _dumps(key) + ":"
            yield from _pieces(item)
        yield "}"
    elif type(value) is list:
        yield "["
        for position, item in enumerate(value):
            if position:
                yield ","
            yield from _pieces(item)
        yield "]"
    else:
        yield _dumps(value)


def _array_pieces(array: np.ndarray) -> Iterator[str]:
    if array.ndim == 0:
        yield _dumps(to_jsonable(array, default=str))
        return
    row = math.prod(array.shape[1:])
    yield "["
    if row > _ARRAY_CHUNK:  # one row is itself large: a slice of rows would be too
        for position in range(len(array)):
            if position:
                yield ","
            yield from _array_pieces(array[position])
    else:
        step = max(1, _ARRAY_CHUNK // max(row, 1))
        for start in range(0, len(array), step):
            rows = _dumps(to_jsonable(array[start : start + step], default=str))
            yield ("," if start else "") + rows[1:-1]
    yield "]"


def _public(message: str, cause: BaseException | None) -> str:
    """An input error's message without runtime internals. When the runtime refused the input,
    its reason is read again from the runtime's own exception (the message may have been cut
    before the reason, after the paths and signatures); modelkit's own messages stay as they are.
    """
    if cause is None or isinstance(cause, ModelkitError):
        return message
    lines = str(cause).strip().splitlines()
    start = message.find(lines[0][:40]) if lines and lines[0] else -1
    if start == -1:
        return public_reason(message)
    return public_reason(message[:start] + " ".join(lines))


def _tensor_rows(specs: tuple[Any, ...], record: Any) -> int:
    """How many rows a tensor record holds: the length of its inputs along their batch axis
    (an input of unknown shape counts its first axis too), at least 1."""
    if not isinstance(record, dict):
        return 1
    rows = 1
    for spec in specs:
        value = record.get(spec.name)
        if isinstance(value, list) and (spec.shape is None or spec.has_batch_axis):
            rows = max(rows, len(value))
    return rows


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
        max_batch_size: the most records one ``{"instances": [...]}`` request may hold, a tensor
            record counting each row along its batch axis; larger ones get 413. ``None`` for no
            limit.
        max_body_size: the largest body, in bytes, :meth:`read_body` reads and :meth:`predict`
            takes; larger ones get 413. ``None`` for no limit.
        max_response_size: the largest answer, in bytes, :meth:`predict` writes; a larger one
            gets 500 ``response_too_large``. ``None`` for no limit.
        url_for: builds a model's URL from its name, for the links in the model list.
    """

    def __init__(
        self,
        registry: Registry | Callable[[], Registry],
        *,
        max_batch_size: int | None = DEFAULT_MAX_BATCH_SIZE,
        max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
        max_response_size: int | None = DEFAULT_MAX_RESPONSE_SIZE,
        url_for: Callable[[str], str] | None = None,
    ) -> None:
        self._registry = registry
        self.max_batch_size = max_batch_size
        self.max_body_size = max_body_size
        self.max_response_size = max_response_size
        self._url_for = url_for

    @property
    def registry(self) -> Registry:
        registry = self._registry
        return registry if isinstance(registry, Registry) else registry()

    # -- the request body -----------------------------------------------------------------------

    def read_body(self, read: Callable[[int], bytes], content_length: int | None) -> bytes | Reply:
        """Read a request body, refusing it (413) past ``max_body_size`` before parsing it.

        A declared ``Content-Length`` over the limit is refused without reading a byte; a body
        without one (chunked), or longer than it says, is read no further than the limit + 1
        byte.

        Args:
            read: the body stream's ``read(n)``, which returns at most ``n`` bytes (``b""`` at
                the end).
            content_length: the request's ``Content-Length``, or ``None`` when it has none.
        """
        limit = self.max_body_size
        if limit is None:
            return read(-1)
        if content_length is not None and content_length > limit:
            return self._body_too_large(content_length)
        chunks = []
        received = 0
        while received <= limit:
            chunk = read(min(_READ_CHUNK, limit + 1 - received))
            if not chunk:
                break
            chunks.append(chunk)
            received += len(chunk)
        if received > limit:
            return self._body_too_large(None)
        return b"".join(chunks)

    def _body_too_large(self, size: int | None) -> Reply:
        declared = "" if size is None else f" ({size} bytes)"
        return error(
            413,
            "request_too_large",
            f"The request body{declared} is larger than the {self.max_body_size} bytes this "
            "endpoint accepts; send fewer records per request.",
        )

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

    def report(self, name: str) -> Reply:
        """``GET {prefix}/<name>/report``: the primary model's report, a self-contained HTML
        page (identity, signature, parity, reference cases, training profile and, for a model
        loaded with ``drift=True``, what it has received). Drawn at most once per
        :data:`REPORT_MAX_AGE` seconds for a model, one page at a time in the process: while
        another is drawn, the model's last page however old, or a 503 to retry after
        ``Retry-After`` seconds if it has none."""
        route = self._route(name)
        if isinstance(route, Reply):
            return route
        page = _report_pages.get(route.model)
        if page is None:
            busy = error(503, "busy", "Another report page is being drawn; retry shortly.")
            return dataclasses.replace(busy, headers=(("Retry-After", "1"),))
        return Reply(
            200,
            None,
            content=page,
            media_type="text/html; charset=utf-8",
            headers=_REPORT_HEADERS,
        )

    async def areport(self, name: str) -> Reply:
        """:meth:`report`, drawn off the event loop (on the pool ``apredict`` uses)."""
        return await run_off_loop(self.report, name)

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
            return failure(name, exc)
        return self._answer(name, request, result)

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
            return failure(name, exc)
        return self._answer(name, request, result)

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
        if self.max_body_size is not None and len(body) > self.max_body_size:
            return self._body_too_large(len(body))
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
            return self._within_batch_limit(_Request(route, document, is_batch=False, key=key))
        instances = document["instances"]
        extra = sorted(set(document) - {"instances"})
        if extra or not isinstance(instances, list):
            return error(
                400,
                "malformed_request",
                'A batch is {"instances": [record, ...]} and nothing else'
                + (f"; unexpected keys {extra}." if extra else "."),
            )
        return self._within_batch_limit(_Request(route, instances, is_batch=True, key=key))

    def _within_batch_limit(self, request: _Request) -> _Request | Reply:
        limit = self.max_batch_size
        if limit is None:
            return request
        tensors = request.route.signature.tensors
        records = request.payload if request.is_batch else [request.payload]
        if not tensors:
            if len(records) > limit:
                return error(
                    413,
                    "batch_too_large",
                    f"The batch has {len(records)} records; this endpoint takes at most {limit}.",
                )
            return request
        # A tensor record holds as many rows as its arrays have along the batch axis: counted
        # here, a single record of two million rows cannot pass for one.
        rows = 0
        for record in records:
            rows += _tensor_rows(tensors, record)
            if rows > limit:
                return error(
                    413,
                    "batch_too_large",
                    f"The request holds more than {limit} rows (each record counts its rows "
                    f"along the batch axis); this endpoint takes at most {limit}.",
                )
        return request

    def _answer(self, name: str, request: _Request, result: Any) -> Reply:
        size = Size(self.max_response_size)
        try:
            if request.is_batch:
                assert isinstance(result, Predictions)
                body: Any = {"predictions": [json_values(row, size) for row in result]}
            else:
                body = json_values(result, size)
            text = render(body, size)
        except ResponseTooLargeError as exc:
            return response_too_large(name, exc)
        return Reply(200, body, text)


class _ReportPages:
    """The report pages last drawn, by model, for every service of the process (Django builds
    a service per request). Held weakly: a reloaded model's page goes with it."""

    def __init__(self) -> None:
        self._pages: weakref.WeakKeyDictionary[Model[Any, Any], tuple[float, bytes]] = (
            weakref.WeakKeyDictionary()
        )
        self._drawing = threading.Lock()
        after_fork_in_child(self._renew)

    def get(self, model: Model[Any, Any]) -> bytes | None:
        """``model``'s page, drawn again once it is :data:`REPORT_MAX_AGE` seconds old; while
        another page is being drawn, the one kept however old, or ``None`` if there is none."""
        page = self._fresh(model)
        if page is not None:
            return page
        # One drawing at a time in the process, and nobody waits for it: a waiting request
        # would hold a server thread (or one of the pool apredict uses) that predictions need.
        if not self._drawing.acquire(blocking=False):
            kept = self._pages.get(model)
            return None if kept is None else kept[1]
        try:
            page = self._fresh(model)  # drawn by the caller that held the lock just now
            if page is None:
                page = report_page(model).encode()
                self._pages[model] = (time.monotonic(), page)
        finally:
            self._drawing.release()
        return page

    def _fresh(self, model: Model[Any, Any]) -> bytes | None:
        kept = self._pages.get(model)
        if kept is None or time.monotonic() - kept[0] >= REPORT_MAX_AGE:
            return None
        return kept[1]

    def _renew(self) -> None:
        # A child forked while a thread of the parent drew would find the lock held for ever.
        self._drawing = threading.Lock()


_report_pages = _ReportPages()


def response_too_large(name: str, exc: ResponseTooLargeError) -> Reply:
    """The 500 for an answer over its limit. The model answered; only the answer is too large
    to send. Nothing was built beyond the limit, so the worker carries on."""
    logger.warning(
        "modelkit: the answer of model %r is over max_response_size (at least %d bytes, "
        "limit %d); answered 500 response_too_large",
        name,
        exc.least,
        exc.limit,
    )
    return error(
        500,
        "response_too_large",
        f"The answer would be larger than the {exc.limit} bytes this endpoint sends; "
        "ask for fewer records or smaller outputs per request.",
    )


def failure(name: str, exc: Exception) -> Reply:
    """What a failed prediction answers: 422 for input that does not fit the signature (each
    problem with its field and record index), else 500 without internals (logged)."""
    if isinstance(exc, InvalidInputError):
        # A runtime's refusal carries its source paths and signatures: one readable line.
        cause = exc.__cause__
        details = [
            {
                "field": e.get("field"),
                "index": e.get("index"),
                "message": _public(str(e.get("message")), cause),
            }
            for e in exc.errors
        ]
        return error(422, "invalid_input", _public(str(exc), cause), details)
    # Unexpected: the details stay in the server's log, never in the response.
    logger.exception("modelkit: prediction by model %r failed", name)
    return error(500, "internal_error", f"Model {name!r} failed to predict; see the server log.")
