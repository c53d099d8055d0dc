"""The Open Inference Protocol v2 (KServe v2 REST), independent of the web framework.

`modelkit serve`, Flask and Django send every URL under ``/v2`` to :meth:`OpenInference.handle`
(or :meth:`OpenInference.ahandle` in async views) and write the :class:`Reply` it gives:

=================================================  =============================================
``GET  /v2``                                       server metadata
``GET  /v2/health/live``, ``/v2/health/ready``     200, or 400 while the models load (no body)
``GET  /v2/models/{name}[/versions/{v}]``          model metadata: inputs and outputs
``GET  /v2/models/{name}[/versions/{v}]/ready``    200, or 400 (no body)
``POST /v2/models/{name}[/versions/{v}]/infer``    inference
=================================================  =============================================

Errors are ``{"error": "..."}``: 400 for a request that is malformed or does not fit the
signature (the message names the input, and for tabular models the field and row), 404 for an
unknown model, version or URL, 405 for a wrong method, 413 past the body or batch limit, 503
while the models load, 500 when they could not be loaded, and otherwise (details in the log
only).

A tabular model takes one input per column, of shape ``[N]`` or ``[N, 1]``; its rows are checked
by the signature as the JSON endpoints check records. A missing value is ``null`` in JSON
``data`` (any datatype) or NaN in ``FP16``/``FP32``/``FP64`` data. It answers ``label`` and, when
the classifier gives them, ``probabilities`` (``[N, C]``, the classes in the output's
``parameters["classes"]`` as JSON text, since parameter values are strings, numbers or booleans),
or ``value`` for a regressor, or each of its graph's outputs for a ``tensor`` task. A tensor
model takes and gives its graph's tensors. A request holds at most as many inputs as the model
has, each once; the outputs it names are those of the version named, else of the version the
route chose (a canary's may differ: an output it lacks is a 400).

The binary tensor data extension works both ways: a request whose ``Inference-Header-Content-
Length`` header gives the length of its JSON part carries the inputs that have a
``binary_data_size`` parameter after it, in order (little-endian, row-major; a ``BYTES`` element
is a 4-byte little-endian length and its bytes); outputs asked for with ``binary_data`` (or all
of them with the request's ``binary_data_output``) are sent the same way.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import struct
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from ._model import Model
from ._oip_types import (
    DATATYPES,
    EXTENSIONS,
    INFERENCE_HEADER,
    JSON_TYPES,
    as_text,
    compact_json,
    datatype_of,
    input_metadata,
    label_datatype,
    output_metadata,
)
from ._predictions import Predictions
from ._registry import Route
from ._serving import (
    READ_METHODS,
    ROUTING_KEY_HEADER,
    Reply,
    ResponseTooLargeError,
    Service,
    Size,
    allow_header,
    byte_length,
    failure,
    json_values,
    render,
    response_too_large,
)
from ._spec import Signature, TensorSpec
from ._version import __version__

__all__ = ["OpenInference"]

logger = logging.getLogger("modelkit")

# The Python types of a JSON element of each datatype (null aside).
_PYTHON_TYPES = {
    "boolean": frozenset({bool}),
    "string": frozenset({str}),
    "integer": frozenset({int}),
    "number": frozenset({int, float}),
}
# numpy keeps at most 64 axes; a shape with more is refused before it reaches numpy.
_MAX_RANK = 32
# numpy refuses an array whose non-zero dimensions, times its element size (8 bytes at most
# here), multiply past its index type; a zero dimension beside them does not save it.
_MAX_ELEMENTS = int(np.iinfo(np.intp).max) // 8
_NONE = type(None)
_LENGTH = struct.Struct("<I")


class _BadRequestError(Exception):
    """The request is malformed: a 400 with this message (never leaves this module)."""


def _error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, {"error": message}, headers=headers)


def _as_protocol_error(reply: Reply) -> Reply:
    """A reply of the JSON endpoints' error shape in the protocol's: ``{"error": "..."}``; an
    input that does not fit the signature is a 400, each problem with its field and row."""
    problem = reply.body["error"]
    message = str(problem["message"])
    status = reply.status
    if problem["type"] == "invalid_input":
        status = 400
        rows = [
            ("" if item["index"] is None else f"row {item['index']}: ") + str(item["message"])
            for item in problem.get("details") or ()
        ]
        if rows:
            message = "; ".join(rows) + "."
    return _error(status, message, reply.headers)


@dataclasses.dataclass(frozen=True)
class _Endpoint:
    action: str  # "server", "live", "ready", "model", "model_ready", "infer"
    methods: tuple[str, ...] = READ_METHODS
    name: str = ""
    version: str | None = None


def _endpoint(path: str) -> _Endpoint | None:
    """What a URL under ``/v2`` names, or ``None``."""
    rest = path[len("/v2") :]
    if rest in ("", "/"):
        return _Endpoint("server")
    if rest == "/health/live":
        return _Endpoint("live")
    if rest == "/health/ready":
        return _Endpoint("ready")
    parts = rest.split("/")[1:]
    if len(parts) < 2 or parts[0] != "models" or not parts[1]:
        return None
    name, tail = parts[1], parts[2:]
    version = None
    if tail[:1] == ["versions"]:
        if len(tail) < 2 or not tail[1]:
            return None
        version, tail = tail[1], tail[2:]
    if not tail:
        return _Endpoint("model", name=name, version=version)
    if tail == ["ready"]:
        return _Endpoint("model_ready", name=name, version=version)
    if tail == ["infer"]:
        return _Endpoint("infer", ("POST",), name, version)
    return None


@dataclasses.dataclass(frozen=True)
class _Input:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Any = None
    raw: bytes | None = None

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    def where(self) -> str:
        return f"input {self.name!r} ({self.datatype}, shape {list(self.shape)})"


@dataclasses.dataclass(frozen=True)
class _Output:
    name: str
    datatype: str
    array: np.ndarray
    parameters: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class _Call:
    """A checked inference request, ready to run on its model and to be answered.

    Attributes:
        route: the model's route.
        model: the version the URL names, or ``None`` to let the route choose (canary).
        signature: the inputs and the task: the version's, or the primary's (a canary takes the
            same inputs, for the same task).
        document: the request's JSON object.
        payload: what the model takes: a tabular model's records, a tensor model's arrays.
        chosen: the outputs asked for, each with whether it goes as binary data; ``None`` for
            all of them.
        binary_default: whether the outputs go as binary data unless asked otherwise (the
            request's ``binary_data_output``).
        key: the routing key.
        max_response_size: the answer's limit.
    """

    route: Route
    model: Model[Any, Any] | None
    signature: Signature
    document: dict[str, Any]
    payload: Any
    chosen: list[tuple[str, bool]] | None
    binary_default: bool
    key: str | None
    max_response_size: int | None

    def run(self) -> Any:
        return self._prediction("predict")()

    async def arun(self) -> Any:
        return await self._prediction("apredict")()

    def _prediction(self, method: str) -> Callable[[], Any]:
        """The call of ``method`` (``predict`` or ``apredict``) that answers this request: a
        batch of records for a tabular model, on the version named or the route's choice."""
        if self.signature.kind == "tabular":
            method += "_batch"
        if self.model is not None:
            return functools.partial(getattr(self.model, method), self.payload)
        return functools.partial(getattr(self.route, method), self.payload, key=self.key)

    def failed(self, exc: Exception) -> Reply:
        """What a prediction that raised ``exc`` answers."""
        return _as_protocol_error(failure(self.route.name, exc))

    def answer(self, result: Any) -> Reply:
        if self.signature.kind == "tabular":
            outputs = _tabular_outputs(self.signature.outputs.task, result)
        else:
            outputs = _tensor_outputs(result)
        if self.chosen is None:
            chosen = [(output, self.binary_default) for output in outputs]
        else:
            by_name = {output.name: output for output in outputs}
            # Checked again against what ran: without a version, a canary may have answered.
            _check_outputs(
                self.chosen,
                list(by_name),
                "" if self.model is not None else " of the version the route chose",
            )
            chosen = [(by_name[name], binary) for name, binary in self.chosen]
        header: dict[str, Any] = {"model_name": self.route.name}
        if self.model is not None:
            header["model_version"] = self.model.version
        if "id" in self.document:
            header["id"] = self.document["id"]
        size = Size(self.max_response_size)
        blobs: list[bytes] = []
        described = []
        try:
            for output, binary in chosen:
                array = output.array
                entry: dict[str, Any] = {
                    "name": output.name,
                    "datatype": output.datatype,
                    "shape": list(array.shape),
                }
                parameters = dict(output.parameters)
                flat = array.reshape(-1)
                if binary:
                    size.add(_binary_size(flat, output.datatype))
                    blob = _pack(flat, output.datatype)
                    blobs.append(blob)
                    parameters["binary_data_size"] = len(blob)
                else:
                    entry["data"] = flat
                if parameters:
                    entry["parameters"] = parameters
                described.append(entry)
            header["outputs"] = described
            body = json_values(header, size)
            text = render(body, size)
            total = len(text) + sum(map(len, blobs))
            limit = size.limit
            if limit is not None and total > limit:
                raise ResponseTooLargeError(total, limit)
        except ResponseTooLargeError as exc:
            return _as_protocol_error(response_too_large(self.route.name, exc))
        if not blobs:
            return Reply(200, body, text)
        encoded = text.encode()
        return Reply(
            200,
            body,
            content=b"".join([encoded, *blobs]),
            headers=((INFERENCE_HEADER, str(len(encoded))),),
        )


class OpenInference:
    """The Open Inference Protocol's endpoints over a :class:`Service`'s registry and limits.

    Args:
        service: the registry, and the body, batch and response limits.
        is_ready: whether the models are loaded; until then the health endpoints say not
            ready and the model endpoints answer 503. When it raises, loading them failed:
            not ready either, and the model endpoints answer 500 (the exception is logged
            once, until the models load).
    """

    def __init__(self, service: Service, *, is_ready: Callable[[], bool] | None = None) -> None:
        self.service = service
        self._is_ready = is_ready if is_ready is not None else lambda: True
        self._has_logged_failure = False

    def reads_body(self, method: str, path: str) -> bool:
        """Whether :meth:`handle` may read the body of a ``method`` request to ``path`` (an
        inference request): a server that reads bodies ahead of the call reads no other."""
        endpoint = _endpoint(path)
        return endpoint is not None and method in endpoint.methods and endpoint.action == "infer"

    def handle(
        self,
        method: str,
        path: str,
        header: Callable[[str], str | None],
        body: Callable[[], bytes | Reply],
    ) -> Reply:
        """Answer one request to ``path`` (``/v2...``).

        Args:
            method: the HTTP method.
            path: the URL's path, from ``/v2``.
            header: the value of a request header by name, or ``None``.
            body: reads the request body within the service's limit (see
                :meth:`Service.read_body`); called only for an inference request.
        """
        started = _guarded(method, path, lambda: self._begin(method, path, header, body))
        if isinstance(started, Reply):
            return started
        try:
            result = started.run()
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error reply
            return started.failed(exc)
        return _guarded(method, path, lambda: started.answer(result))

    async def ahandle(
        self,
        method: str,
        path: str,
        header: Callable[[str], str | None],
        body: Callable[[], bytes | Reply],
    ) -> Reply:
        """:meth:`handle` for async views: the model never runs on the event loop."""
        started = _guarded(method, path, lambda: self._begin(method, path, header, body))
        if isinstance(started, Reply):
            return started
        try:
            result = await started.arun()
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error reply
            return started.failed(exc)
        return _guarded(method, path, lambda: started.answer(result))

    # -- the parts ------------------------------------------------------------------------------

    def _begin(
        self,
        method: str,
        path: str,
        header: Callable[[str], str | None],
        body: Callable[[], bytes | Reply],
    ) -> Reply | _Call:
        endpoint = _endpoint(path)
        if endpoint is None:
            return _error(
                404,
                f"No endpoint at {path}: the Open Inference Protocol's endpoints are GET /v2, "
                "GET /v2/health/live, GET /v2/health/ready, GET /v2/models/<name>"
                "[/versions/<version>][/ready] and POST /v2/models/<name>[/versions/<version>]"
                "/infer.",
            )
        allowed = endpoint.methods
        if method not in allowed:
            headers = (("Allow", allow_header(allowed)),)
            if method == "OPTIONS":
                return Reply(204, None, headers=headers)
            return _error(405, f"{path} takes {', '.join(allowed)}, not {method}.", headers=headers)
        action = endpoint.action
        if action == "server":
            return Reply(
                200, {"name": "modelkit", "version": __version__, "extensions": list(EXTENSIONS)}
            )
        if action == "live":
            return Reply(200, None)
        is_ready = self._readiness()
        if action == "ready":
            return Reply(200 if is_ready else 400, None)
        if not is_ready:
            if action == "model_ready":
                return Reply(400, None)
            if is_ready is None:
                return _error(500, "The models could not be loaded; see the server log.")
            return _error(
                503, "The models are loading; retry shortly.", headers=(("Retry-After", "1"),)
            )
        found = self._find(endpoint.name, endpoint.version)
        if isinstance(found, Reply):
            return found
        route, model = found
        if action == "model_ready":
            return Reply(200, None)
        if action == "model":
            return Reply(200, _metadata(route, model or route.model))
        raw = body()
        if isinstance(raw, Reply):
            return _as_protocol_error(raw)
        return self._call(route, model, raw, header)

    def _readiness(self) -> bool | None:
        """Whether the models are loaded, or ``None`` when loading them failed."""
        try:
            is_ready = self._is_ready()
        except Exception:
            # Once, not at every probe: a probe every few seconds would flood the log.
            if not self._has_logged_failure:
                self._has_logged_failure = True
                logger.exception("modelkit: the models could not be loaded")
            return None
        self._has_logged_failure = False
        return is_ready

    def _find(self, name: str, version: str | None) -> tuple[Route, Model[Any, Any] | None] | Reply:
        registry = self.service.registry
        if name not in registry:
            return _error(404, f"No model named {name!r} (models: {registry.names()}).")
        route = registry[name]
        if version is None:
            return route, None
        versions = route.versions
        model = versions.get(version)
        if model is None:
            return _error(
                404, f"Model {name!r} has no version {version!r} (versions: {list(versions)})."
            )
        return route, model

    def _call(
        self,
        route: Route,
        model: Model[Any, Any] | None,
        raw: bytes,
        header: Callable[[str], str | None],
    ) -> Reply | _Call:
        signature = (model if model is not None else route.model).signature
        if signature.kind not in ("tabular", "tensor"):
            raise _BadRequestError(
                f"Model {route.name!r} takes JSON records of its own schema, not tensors: send "
                "them to its JSON predict endpoint."
            )
        document, inputs = _parse(raw, header(INFERENCE_HEADER), list(signature.names))
        binary_default, chosen = _asked(document)
        if chosen is not None:
            # The version named, or any the route may choose; checked again once one has run.
            variants = [model] if model is not None else list(route.versions.values())
            names = (o["name"] for v in variants for o in output_metadata(v.signature))
            _check_outputs(chosen, list(dict.fromkeys(names)))
        limit = self.service.max_batch_size
        payload: Any
        if signature.kind == "tabular":
            payload = _records(signature, inputs, limit)
        else:
            payload = _tensors(signature.tensors, inputs, limit)
        if isinstance(payload, Reply):
            return payload
        return _Call(
            route,
            model,
            signature,
            document,
            payload,
            chosen,
            binary_default,
            header(ROUTING_KEY_HEADER),
            self.service.max_response_size,
        )


_Step = TypeVar("_Step")


def _guarded(method: str, path: str, step: Callable[[], _Step]) -> _Step | Reply:
    """``step()``, or the error reply for what it raised: a malformed request is a 400, anything
    else a 500 whose details stay in the server's log (an endpoint answers in JSON whatever
    happens)."""
    try:
        return step()
    except _BadRequestError as exc:
        return _error(400, str(exc))
    except Exception:
        logger.exception("modelkit: %s %s failed", method, path)
        return _error(500, "The request failed; see the server log.")


# -- metadata -----------------------------------------------------------------------------------


def _metadata(route: Route, model: Model[Any, Any]) -> dict[str, Any]:
    signature = model.signature
    return {
        "name": route.name,
        "versions": list(route.versions),
        "platform": "onnx_onnxv1" if model.format == "onnx" else f"modelkit_{model.format}",
        "inputs": input_metadata(signature),
        "outputs": output_metadata(signature),
    }


# -- requests -----------------------------------------------------------------------------------


def _parse(
    raw: bytes, header_length: str | None, names: list[str]
) -> tuple[dict[str, Any], list[_Input]]:
    """The request's JSON object and its inputs, their binary data cut out of the body; more
    inputs than the model's ``names`` are refused before any is read.

    Raises:
        _BadRequestError: anything malformed, with what and where.
    """
    if not raw:
        raise _BadRequestError("The request has no body; send an inference request object.")
    text, binary = raw, b""
    if header_length is not None:
        length = byte_length(header_length)
        if length is None:
            raise _BadRequestError(
                f"{INFERENCE_HEADER} must be the length in bytes of the body's JSON part, "
                f"got {header_length[:40]!r}."
            )
        if length > len(raw):
            raise _BadRequestError(
                f"{INFERENCE_HEADER} says the JSON part is {length} bytes; the whole body is "
                f"{len(raw)}."
            )
        text, binary = raw[:length], raw[length:]
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # nesting too deep
        raise _BadRequestError(f"The inference request is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise _BadRequestError(
            f"Expected an inference request object, got {type(document).__name__}."
        )
    if "id" in document and not isinstance(document["id"], str):
        raise _BadRequestError('The request\'s "id" must be a string.')
    _parameters(document, "the request")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _BadRequestError('The request\'s "inputs" must be a non-empty list of tensors.')
    if len(inputs) > len(names):
        raise _BadRequestError(
            f"The request has {len(inputs)} inputs; the model takes {len(names)}: {names}."
        )
    outputs = document.get("outputs", [])
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise _BadRequestError('The request\'s "outputs" must be a list of {"name": ...}.')
    parsed = []
    seen: set[str] = set()
    offset = 0
    for position, item in enumerate(inputs):
        parsed_input, size = _input(item, position)
        if parsed_input.name in seen:
            raise _BadRequestError(f"Input {parsed_input.name!r} is given more than once.")
        seen.add(parsed_input.name)
        if size is not None:
            if offset + size > len(binary):
                raise _BadRequestError(
                    f"{parsed_input.where()} declares {size} bytes of binary data, but the body "
                    f"ends {len(binary) - offset} bytes after the data before it."
                )
            parsed_input = dataclasses.replace(parsed_input, raw=binary[offset : offset + size])
            offset += size
        parsed.append(parsed_input)
    if offset != len(binary):
        raise _BadRequestError(
            f"The body holds {len(binary) - offset} bytes after the binary data its inputs "
            f"declare; {INFERENCE_HEADER} may be wrong."
        )
    return document, parsed


def _parameters(holder: dict[str, Any], what: str) -> dict[str, Any]:
    parameters = holder.get("parameters", {})
    if not isinstance(parameters, dict):
        raise _BadRequestError(f'The "parameters" of {what} must be an object.')
    return parameters


def _input(item: Any, position: int) -> tuple[_Input, int | None]:
    """One ``$request_input`` checked, and the size of its binary data if it has some."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise _BadRequestError(f'Input {position} must be an object with a "name".')
    name = item["name"]
    datatype = item.get("datatype")
    if datatype not in DATATYPES:
        raise _BadRequestError(
            f"Input {name!r} has datatype {datatype!r}; the datatypes are {list(DATATYPES)}."
        )
    shape = item.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > _MAX_RANK
        or not all(type(d) is int and d >= 0 for d in shape)
        or math.prod(d for d in shape if d) > _MAX_ELEMENTS
    ):
        raise _BadRequestError(
            f"Input {name!r} needs a shape: a list of at most {_MAX_RANK} whole numbers >= 0, "
            f"whose non-zero ones multiply to at most {_MAX_ELEMENTS}; got "
            f"{compact_json(shape)[:80]}."
        )
    parsed = _Input(name, datatype, tuple(shape), item.get("data"))
    size = _parameters(item, f"input {name!r}").get("binary_data_size")
    if size is None:
        if "data" not in item:
            raise _BadRequestError(
                f'{parsed.where()} has neither "data" nor a binary_data_size parameter.'
            )
        return parsed, None
    if type(size) is not int or size < 0:
        raise _BadRequestError(
            f"{parsed.where()}: binary_data_size must be a whole number of bytes, got "
            f"{compact_json(size)[:40]}."
        )
    if "data" in item:
        raise _BadRequestError(f'{parsed.where()} has both "data" and binary data.')
    return parsed, size


def _records(
    signature: Signature, inputs: list[_Input], limit: int | None
) -> list[dict[str, Any]] | Reply:
    """A tabular model's rows, as the records the JSON endpoints take, one input per column."""
    names = [c.name for c in signature.columns]
    given = {i.name: i for i in inputs}
    _match(names, given)
    rows: dict[str, int] = {}
    for item in inputs:
        if len(item.shape) not in (1, 2) or item.shape[1:] not in ((), (1,)):
            raise _BadRequestError(
                f"{item.where()}: a column's shape is [N] or [N, 1], for N rows."
            )
        rows[item.name] = item.shape[0]
    if len(set(rows.values())) > 1:
        raise _BadRequestError(f"The inputs have different numbers of rows: {rows}.")
    count = next(iter(rows.values()))
    if limit is not None and count > limit:
        return _error(413, f"The request holds {count} rows; this endpoint takes at most {limit}.")
    columns = [_decode(given[name], missing_ok=True).reshape(-1).tolist() for name in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def _tensors(
    specs: tuple[TensorSpec, ...], inputs: list[_Input], limit: int | None
) -> dict[str, np.ndarray] | Reply:
    """A tensor model's record: its inputs as arrays, their rows counted before they are read."""
    given = {i.name: i for i in inputs}
    _match([s.name for s in specs], given)
    if limit is not None:
        rows = max(
            (
                given[s.name].shape[0]
                for s in specs
                if given[s.name].shape and (s.shape is None or s.has_batch_axis)
            ),
            default=1,
        )
        if rows > limit:
            return _error(
                413,
                f"The request holds {rows} rows along the batch axis; this endpoint takes at "
                f"most {limit}.",
            )
    return {s.name: _decode(given[s.name], missing_ok=False) for s in specs}


def _match(names: list[str], given: dict[str, _Input]) -> None:
    known = set(names)
    missing = [n for n in names if n not in given]
    extra = [n for n in given if n not in known]
    if missing or extra:
        problems = [f"missing input(s) {missing}"] if missing else []
        problems += [f"unknown input(s) {extra}"] if extra else []
        raise _BadRequestError(f"{'; '.join(problems).capitalize()}: the inputs are {names}.")


def _decode(item: _Input, *, missing_ok: bool) -> np.ndarray:
    """An input's data as an array of its shape (``None`` for a missing value in an object
    array, when ``missing_ok``); raises _BadRequestError for data that does not fit."""
    count = item.count
    if item.raw is not None:
        return _shaped(item, _unpack(item, item.raw, count))
    flat = _flatten(item)
    if len(flat) != count:
        raise _BadRequestError(
            f"{item.where()} has {count} elements, but its data holds {len(flat)}."
        )
    kinds = set(map(type, flat))
    has_missing = _NONE in kinds
    bad = kinds - _PYTHON_TYPES[JSON_TYPES[item.datatype]] - {_NONE}
    if bad:
        index, value = next((i, v) for i, v in enumerate(flat) if type(v) in bad)
        raise _BadRequestError(
            f"{item.where()}: element {index} is {compact_json(value)[:40]}, not a "
            f"{item.datatype} value."
        )
    if has_missing and not missing_ok:
        raise _BadRequestError(
            f"{item.where()}: element {flat.index(None)} is null; a tensor takes no missing values."
        )
    present = [v for v in flat if v is not None] if has_missing else flat
    dtype = DATATYPES[item.datatype]
    _check_range(item, present, dtype)
    if has_missing or item.datatype == "BYTES":
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return _shaped(item, array)
    try:
        array = np.array(flat, dtype=dtype)
    except (ValueError, OverflowError) as exc:
        raise _BadRequestError(f"{item.where()}: {exc}") from None
    return _shaped(item, array)


def _shaped(item: _Input, flat: np.ndarray) -> np.ndarray:
    """``flat``, which holds the input's elements, in its shape."""
    try:
        return flat.reshape(item.shape)
    except (ValueError, OverflowError) as exc:  # a shape numpy cannot make, should one pass
        raise _BadRequestError(f"{item.where()}: {exc}") from None


def _check_range(item: _Input, values: list[Any], dtype: np.dtype[Any]) -> None:
    """Refuse a number the datatype cannot hold, which numpy would wrap or round to infinity."""
    if not values or dtype.kind not in "iuf":
        return
    if dtype.kind == "f":
        try:
            numbers = np.array(values, dtype=np.float64)
        except OverflowError:  # an integer past float64's range
            raise _BadRequestError(f"{item.where()}: a number is out of range.") from None
        # NaN and infinities (Python's JSON reads them) are left for the signature to judge.
        finite = np.abs(numbers[np.isfinite(numbers)])
        if finite.size and float(finite.max()) > float(np.finfo(dtype).max):
            raise _BadRequestError(
                f"{item.where()}: {float(finite.max())} is out of range for the datatype."
            )
        return
    info = np.iinfo(dtype)
    low, high = min(values), max(values)
    if low < info.min or high > info.max:
        bad = low if low < info.min else high
        raise _BadRequestError(f"{item.where()}: {bad} is out of range for the datatype.")


def _flatten(item: _Input) -> list[Any]:
    """The elements of nested JSON ``data`` in row-major order (without recursion: the depth is
    the client's)."""
    data = item.data
    if not isinstance(data, list):
        raise _BadRequestError(f'{item.where()}: "data" must be a list.')
    if not any(type(v) is list for v in data):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if type(value) is list:
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


def _unpack(item: _Input, raw: bytes, count: int) -> np.ndarray:
    """An input's binary data as a flat array of its datatype."""
    if item.datatype == "BYTES":
        return _unpack_bytes(item, raw, count)
    dtype = DATATYPES[item.datatype]
    if len(raw) != count * dtype.itemsize:
        raise _BadRequestError(
            f"{item.where()} takes {count * dtype.itemsize} bytes of binary data, got {len(raw)}."
        )
    if item.datatype == "BOOL":
        octets = np.frombuffer(raw, dtype=np.uint8)
        if octets.size and int(octets.max()) > 1:
            raise _BadRequestError(f"{item.where()}: a BOOL element is one byte, 0 or 1.")
        return octets.view(np.bool_)
    return np.frombuffer(raw, dtype=dtype)


def _unpack_bytes(item: _Input, raw: bytes, count: int) -> np.ndarray:
    """``BYTES`` elements: each a 4-byte little-endian length, then that many bytes of UTF-8."""
    values: list[str] = []
    offset, end = 0, len(raw)
    while len(values) < count:
        if offset + 4 > end:
            raise _BadRequestError(
                f"{item.where()}: its binary data ends after {len(values)} of {count} elements."
            )
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > end:
            raise _BadRequestError(
                f"{item.where()}: element {len(values)} declares {length} bytes; the binary "
                f"data has {end - offset} left."
            )
        try:
            values.append(raw[offset : offset + length].decode())
        except UnicodeDecodeError:
            raise _BadRequestError(
                f"{item.where()}: element {len(values)} is not UTF-8 text."
            ) from None
        offset += length
    if offset != end:
        raise _BadRequestError(
            f"{item.where()}: its binary data holds {end - offset} bytes after its {count} "
            "elements."
        )
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


# -- answers ------------------------------------------------------------------------------------


def _tabular_outputs(task: str, predictions: Predictions[Any]) -> list[_Output]:
    """A tabular model's outputs, as :func:`output_metadata` names them: a regressor's
    ``value``; a classifier's ``label`` (its datatype from the classes of the version that
    answered) and ``probabilities``; else each field of the graph's outputs, as an array."""
    if task == "regression":
        return [_Output("value", "FP64", np.asarray(predictions["value"], np.float64), {})]
    if task != "classification":
        return _tensor_outputs({name: predictions[name] for name in predictions.fields})
    datatype = label_datatype(predictions.classes)
    labels = np.asarray(predictions["label"])
    labels = _texts(labels) if datatype == "BYTES" else labels.astype(DATATYPES[datatype])
    found = [_Output("label", datatype, labels, {})]
    if "probabilities" in predictions.fields:
        classes = predictions.classes
        parameters = {} if classes is None else {"classes": compact_json(classes)}
        probabilities = np.asarray(predictions["probabilities"], np.float64)
        found.append(_Output("probabilities", "FP64", probabilities, parameters))
    return found


def _tensor_outputs(result: Any) -> list[_Output]:
    found = []
    for name, value in dict(result).items():
        array = np.asarray(value)
        try:
            datatype = datatype_of(array.dtype)
        except TypeError:
            datatype = "BYTES"
        if datatype == "BYTES":
            array = _texts(array)
        found.append(_Output(name, datatype, array, {}))
    return found


def _texts(array: np.ndarray) -> np.ndarray:
    """``BYTES`` elements as text: strings as they are, anything else as its JSON."""
    texts = np.empty(array.shape, dtype=object)
    texts.reshape(-1)[:] = [as_text(v) for v in array.reshape(-1).tolist()]
    return texts


def _asked(document: dict[str, Any]) -> tuple[bool, list[tuple[str, bool]] | None]:
    """Whether the outputs go as binary data unless asked otherwise (``binary_data_output``),
    and the outputs the request asks for, in its order, each with whether it goes as binary
    data (``None`` for all of them); their names are not yet checked against a model."""
    default = _flag(_parameters(document, "the request"), "binary_data_output", False)
    asked = document.get("outputs") or []
    if not asked:
        return default, None
    chosen = []
    seen: set[str] = set()
    for request in asked:
        name = request["name"]
        if name in seen:
            raise _BadRequestError(f"Output {name!r} is asked for more than once.")
        seen.add(name)
        parameters = _parameters(request, f"output {name!r}")
        chosen.append((name, _flag(parameters, "binary_data", default)))
    return default, chosen


def _check_outputs(chosen: list[tuple[str, bool]], names: list[str], whose: str = "") -> None:
    """Refuse an output asked for that is not among ``names`` (the outputs ``whose``)."""
    known = set(names)
    for name, _ in chosen:
        if name not in known:
            raise _BadRequestError(f"No output named {name!r}; the outputs{whose} are {names}.")


def _flag(parameters: dict[str, Any], name: str, default: bool) -> bool:
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise _BadRequestError(f"The parameter {name!r} must be true or false, got {value!r}.")
    return value


def _binary_size(flat: np.ndarray, datatype: str) -> int:
    """The least size of an output's binary data (a ``BYTES`` element: its 4-byte length)."""
    return 4 * flat.size if datatype == "BYTES" else flat.size * DATATYPES[datatype].itemsize


def _pack(flat: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        return b"".join(
            _LENGTH.pack(len(encoded)) + encoded for encoded in (v.encode() for v in flat.tolist())
        )
    return np.ascontiguousarray(flat, dtype=DATATYPES[datatype]).tobytes()
