"""The OpenAPI 3.1 document of the JSON endpoints, built from the models a registry serves.

Framework-neutral, as :mod:`modelkit._serving` is: ``modelkit serve``, Flask and Django answer
``GET /openapi.json`` with :func:`openapi_document` of the registry they serve. Each model has
paths of its own (``GET {prefix}/<name>``, ``POST {prefix}/<name>/predict``), so that its predict
operation carries its own input and output JSON Schemas: the very ones ``GET {prefix}/<name>``
answers with (:meth:`Signature.input_json_schema` and :meth:`Signature.output_json_schema`). Every
error answer has one component schema, ``Error``, the shape :func:`modelkit._serving.error`
writes; the limits the endpoints enforce are written into the document (``maxItems`` on a
batch, the byte limit in the 413's description).

With ``has_open_inference``, it documents the Open Inference Protocol's ``/v2`` endpoints too
(:mod:`modelkit._oip`), with the protocol's own schemas as components under the names of
KServe's ``rest_predict_v2.yaml`` (``inference_request``, ``metadata_model_response``...). Each
model's inference path has a request schema of its own that names its inputs (a tabular
model's columns, each with the datatypes it takes and the values the signature allows; a
tensor model's graph inputs) and a response schema that names its outputs. What JSON Schema
cannot say is in the operation's description: every input holds the same number of rows, and
a shape agrees with its data's length.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from typing import Any

from ._oip_types import (
    COLUMN_DATATYPES,
    DATATYPES,
    EXTENSIONS,
    INFERENCE_HEADER,
    JSON_TYPES,
    as_text,
    input_metadata,
    output_metadata,
)
from ._registry import Registry, Route
from ._spec import Signature
from ._version import __version__

__all__ = ["OPENAPI_VERSION", "inlined", "openapi_document"]

#: The version of the OpenAPI Specification the document follows.
OPENAPI_VERSION = "3.1.0"

_SCHEMAS = "#/components/schemas/"
_RESPONSES = "#/components/responses/"


def _ref(component: str) -> dict[str, Any]:
    return {"$ref": f"{_SCHEMAS}{component}"}


# A component's name may hold only these characters (OpenAPI 3.1, "Components Object").
_NOT_IN_COMPONENT_NAME = re.compile(r"[^A-Za-z0-9._-]")


def _readiness() -> dict[str, Any]:
    """What ``GET /v2/health/ready`` and a model's ``/ready`` answer: no body either way (new
    at each call, as every part of a document is)."""
    return {
        "200": {"description": "Ready (no body)."},
        "400": {"description": "The models are loading (no body)."},
    }


def _component_name(name: str) -> str:
    """``name`` as a component's name (OpenAPI allows letters, digits, ``.``, ``_``, ``-``)."""
    return _NOT_IN_COMPONENT_NAME.sub("_", name)


# Keywords whose values are data, not schemas: a "$ref" key inside them is not a reference.
_DATA_KEYWORDS = frozenset({"const", "default", "enum", "example", "examples"})

_TASK = {"type": "string", "enum": ["classification", "regression", "tensor", "custom"]}
_DIGEST = {
    "type": ["string", "null"],
    "description": "The bundle's digest, which pins every byte of it.",
}
# Shared by every document; copied into each, which its caller may change.
_COMPONENT_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "The one shape of every error answer.",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "additionalProperties": False,
                "properties": {
                    "type": {
                        "type": "string",
                        "description": "What went wrong, for programs, such as malformed_request, "
                        "unknown_model, request_too_large, batch_too_large, invalid_input, "
                        "internal_error, response_too_large or not_ready.",
                        "examples": ["invalid_input"],
                    },
                    "message": {"type": "string", "description": "What went wrong, for people."},
                    "details": {
                        "type": "array",
                        "description": "The problems of an invalid input, each where it is.",
                        "items": {
                            "type": "object",
                            "required": ["field", "index", "message"],
                            "additionalProperties": False,
                            "properties": {
                                "field": {
                                    "type": ["string", "null"],
                                    "description": "The field, or null for the whole record.",
                                },
                                "index": {
                                    "type": ["integer", "null"],
                                    "description": "The record's position in the batch, or "
                                    "null for a single record.",
                                },
                                "message": {"type": "string"},
                            },
                        },
                    },
                },
            }
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["models"],
        "properties": {
            "models": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "version", "digest", "task"],
                    "properties": {
                        "name": {"type": "string"},
                        "version": {"type": "string"},
                        "digest": _DIGEST,
                        "task": _TASK,
                        "url": {"type": "string", "description": "Where it is described."},
                    },
                },
            }
        },
    },
    "ModelDescription": {
        "type": "object",
        "required": [
            "name",
            "version",
            "digest",
            "format",
            "task",
            "input_schema",
            "output_schema",
        ],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "digest": _DIGEST,
            "format": {"type": "string", "description": "The bundle's format (joblib, onnx...)."},
            "task": _TASK,
            "input_schema": {"type": "object", "description": "The JSON Schema of one record."},
            "output_schema": {"type": "object", "description": "The JSON Schema of one output."},
        },
    },
}
_ROUTING_KEY = {
    "name": "X-Modelkit-Key",
    "in": "header",
    "required": False,
    "description": "Routes the call to a canary stickily: the same key always reaches the same "
    "version (a user or account id).",
    "schema": {"type": "string"},
}
# The error answers by status: the component's name, and what the status means.
_ERRORS = {
    "400": ("MalformedRequest", "The body is empty, not JSON, or neither a record nor a batch."),
    "404": ("UnknownModel", "No model of this name is served (the registry changed since)."),
    "422": (
        "InvalidInput",
        "The input does not fit the model's signature: each problem with its field and record.",
    ),
    "500": (
        "ServerError",
        (
            "The model failed (the details are in the server's log), or its answer is over "
            "the response size limit (response_too_large)."
        ),
    ),
    "503": ("NotReady", "The models are loading; retry after Retry-After seconds."),
}


def openapi_document(
    registry: Registry,
    *,
    prefix: str,
    max_batch_size: int | None,
    max_body_size: int | None,
    has_health_checks: bool = False,
    has_open_inference: bool = False,
    has_report: bool = False,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the JSON endpoints serving ``registry`` under ``prefix``.

    Written from the models the registry holds when it is called: an application that swaps or
    reloads its registry builds it again.

    Args:
        registry: the models served.
        prefix: the path of the model list (``"/models"``, or ``"/models/"`` as Django's
            ``include()`` serves it), which the models' paths extend; ``""`` for the root.
        max_batch_size: the most records one predict request may hold, as the endpoints were
            given it (``None`` for no limit).
        max_body_size: the largest predict body, in bytes (``None`` for no limit).
        has_health_checks: whether the server also answers ``GET /healthz`` and
            ``GET /readyz``, and 503 on the model endpoints while its models load, as
            ``modelkit serve`` does.
        has_open_inference: whether the server also speaks the Open Inference Protocol under
            ``/v2`` (:mod:`modelkit._oip`), whose paths the document then has too.
        has_report: whether the server also answers ``GET {prefix}/<name>/report``, the
            model's report page.

    Returns:
        The document as JSON-ready data, new at each call.
    """
    index, prefix = prefix or "/", prefix.rstrip("/")
    schemas = copy.deepcopy(_COMPONENT_SCHEMAS)
    # modelkit serve answers 503 on the model endpoints until its models are loaded.
    loading = ("503",) if has_health_checks else ()
    paths: dict[str, Any] = {
        index: {
            "get": {
                "operationId": "list_models",
                "summary": "The models served, with their versions and digests",
                "tags": ["models"],
                "responses": {
                    "200": _json("The models.", _ref("ModelList")),
                    **_error_refs("500", *loading),
                },
            }
        }
    }
    for name in registry.names():
        paths.update(
            _model_paths(
                registry,
                name,
                prefix=prefix,
                schemas=schemas,
                max_batch_size=max_batch_size,
                max_body_size=max_body_size,
                loading=loading,
            )
        )
        if has_report:
            paths[f"{prefix}/{name}/report"] = _report_path(registry, name, loading)
    tags = [{"name": "models", "description": "The models, and predictions by name."}]
    if has_health_checks:
        paths.update(_health_paths())
        tags.append({"name": "health", "description": "For load balancers and orchestrators."})
    responses = {
        name: _json(meaning, _ref("Error"))
        for status, (name, meaning) in _ERRORS.items()
        if status != "503" or has_health_checks
    }
    if has_open_inference:
        schemas.update(copy.deepcopy(_OIP_SCHEMAS))
        responses.update(
            (name, _json(meaning, _ref("inference_error_response")))
            for name, meaning in _OIP_ERRORS.values()
        )
        paths.update(_open_inference_paths(registry, schemas, max_batch_size, max_body_size))
        tags.append(
            {
                "name": "open-inference",
                "description": "The Open Inference Protocol v2 (KServe v2 REST), as Triton, "
                "MLServer and KServe speak it.",
            }
        )
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "modelkit",
            "version": __version__,
            "description": "The models of this application, by name. Each predict operation "
            'takes one record, or {"instances": [...]} for a batch, of its model\'s input '
            f"schema: {_limits(max_batch_size, max_body_size)}.",
        },
        "tags": tags,
        "paths": paths,
        "components": {"schemas": schemas, "responses": responses},
    }


def _report_path(registry: Registry, name: str, loading: tuple[str, ...]) -> dict[str, Any]:
    """The report page of one model: HTML, not JSON."""
    return {
        "get": {
            "operationId": f"report_{name}",
            "summary": f"The report of {name}, as an HTML page",
            "description": "Identity, signature, conversion parity, reference cases, the "
            "training profile per feature and, for a model loaded with drift statistics, what "
            "it has received: one self-contained page.",
            "tags": ["models"],
            "responses": {
                "200": {
                    "description": f"The report of {registry[name].model.name}.",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                },
                **_error_refs("404", "500"),
                # One page is drawn at a time, and no request waits for it.
                "503": _json(
                    "Another report page is being drawn and this model has none yet"
                    + (", or the models are loading" if loading else "")
                    + "; retry after Retry-After seconds.",
                    _ref("Error"),
                ),
            },
        }
    }


def _model_paths(
    registry: Registry,
    name: str,
    *,
    prefix: str,
    schemas: dict[str, Any],
    max_batch_size: int | None,
    max_body_size: int | None,
    loading: tuple[str, ...],
) -> dict[str, Any]:
    """The two paths of one model; its input and output schemas join ``schemas``."""
    model = registry[name].model
    input_schema = model.signature.input_json_schema()
    record = _component(input_schema, f"{name}.input", schemas)
    output = _component(model.signature.output_json_schema(), f"{name}.output", schemas)
    identity = f"{name} {model.version}" + (f" ({model.digest})" if model.digest else "")
    batch: dict[str, Any] = {"type": "array", "items": record}
    if max_batch_size is not None:
        batch["maxItems"] = max_batch_size
    return {
        f"{prefix}/{name}": {
            "get": {
                "operationId": f"describe_{name}",
                "summary": f"Describe {name}: its version, digest and JSON Schemas",
                "description": f"{identity}.",
                "tags": ["models"],
                "responses": {
                    "200": _json(f"{name}.", _ref("ModelDescription")),
                    **_error_refs("404", "500", *loading),
                },
            }
        },
        f"{prefix}/{name}/predict": {
            "post": {
                "operationId": f"predict_{name}",
                "summary": f"Predict with {name}",
                "description": f"{identity}. One record answers one output; "
                '{"instances": [...]} answers {"predictions": [...]}, in the same order.',
                "tags": ["models"],
                "parameters": [_ROUTING_KEY],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "anyOf": [
                                    _single(record, input_schema),
                                    _holding("instances", batch),
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        "The output, or the outputs of a batch.",
                        {
                            "anyOf": [
                                output,
                                _holding("predictions", {"type": "array", "items": output}),
                            ]
                        },
                    ),
                    **_error_refs("400", "404"),
                    "413": _json(
                        f"Over a limit: {_limits(max_batch_size, max_body_size)}.", _ref("Error")
                    ),
                    **_error_refs("422", "500", *loading),
                },
            }
        },
    }


def _health_paths() -> dict[str, Any]:
    """``GET /healthz`` and ``GET /readyz``, as ``modelkit serve`` answers them."""
    ready = {
        "type": "object",
        "required": ["status", "models"],
        "additionalProperties": False,
        "properties": {
            "status": {"const": "ready"},
            "models": {"type": "array", "items": {"type": "string"}},
        },
    }
    return {
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "Whether the process is up",
                "tags": ["health"],
                "responses": {
                    "200": _json("The process is up.", _holding("status", {"const": "ok"}))
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readiness",
                "summary": "Whether the models are loaded, checked and warmed",
                "tags": ["health"],
                "responses": {
                    "200": _json("The models are ready.", ready),
                    "503": _json(
                        "The models are loading.", _holding("status", {"const": "loading"})
                    ),
                },
            }
        },
    }


# -- the Open Inference Protocol ----------------------------------------------------------------

_STRINGS = {"type": "array", "items": {"type": "string"}}
_DIMENSIONS = {"type": "array", "items": {"type": "integer"}}
# Shared by every document that has them: the protocol's own schemas, under the names of
# KServe's rest_predict_v2.yaml. Each model's inference schemas are narrower versions of these.
_OIP_SCHEMAS: dict[str, Any] = {
    "parameters": {
        "type": "object",
        "description": "Parameters of a request, a tensor or an answer.",
        "additionalProperties": {"type": ["string", "number", "boolean"]},
    },
    "tensor_data": {
        "type": "array",
        "description": "A tensor's elements, flat in row-major order, or nested as its shape.",
    },
    "metadata_server_response": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": _STRINGS,
        },
    },
    "metadata_tensor": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"enum": list(DATATYPES)},
            "shape": {**_DIMENSIONS, "description": "-1 for an axis of any length."},
            "parameters": _ref("parameters"),
        },
    },
    "metadata_model_response": {
        "type": "object",
        "required": ["name", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": _STRINGS,
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _ref("metadata_tensor")},
            "outputs": {"type": "array", "items": _ref("metadata_tensor")},
        },
    },
    "request_input": {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": _DIMENSIONS,
            "datatype": {"enum": list(DATATYPES)},
            "parameters": _ref("parameters"),
            "data": _ref("tensor_data"),
        },
    },
    "request_output": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}, "parameters": _ref("parameters")},
    },
    "inference_request": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": _ref("parameters"),
            "inputs": {"type": "array", "items": _ref("request_input")},
            "outputs": {"type": "array", "items": _ref("request_output")},
        },
    },
    "response_output": {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": _DIMENSIONS,
            "datatype": {"enum": list(DATATYPES)},
            "parameters": _ref("parameters"),
            "data": _ref("tensor_data"),
        },
    },
    "inference_response": {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": _ref("parameters"),
            "outputs": {"type": "array", "items": _ref("response_output")},
        },
    },
    "inference_error_response": {
        "type": "object",
        "description": "The protocol's error answer.",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {"error": {"type": "string", "description": "What went wrong."}},
    },
}
# The protocol's error answers by status: the component's name, and what the status means.
_OIP_ERRORS = {
    "400": (
        "InferenceBadRequest",
        (
            "The request is malformed, or does not fit the model: the message names the input, "
            "and for a tabular model the field and row."
        ),
    ),
    "404": ("InferenceNotFound", "No such model or version (the registry changed since)."),
    "500": (
        "InferenceServerError",
        (
            "The model failed (the details are in the server's log), or its answer is over the "
            "response size limit."
        ),
    ),
    "503": (
        "InferenceNotReady",
        "The models are not loaded yet; retry after Retry-After seconds.",
    ),
}
_BINARY_BODY = (
    f"With the binary tensor data extension, the body is the JSON request (its length in the "
    f"{INFERENCE_HEADER} header) followed by the data of each input that has a "
    "binary_data_size parameter instead of data, in order: little-endian, row-major, and a "
    "BYTES element as a 4-byte little-endian length and its UTF-8 bytes."
)


def _open_inference_paths(
    registry: Registry,
    schemas: dict[str, Any],
    max_batch_size: int | None,
    max_body_size: int | None,
) -> dict[str, Any]:
    """The ``/v2`` paths: the server's, then each model's; its schemas join ``schemas``."""
    paths: dict[str, Any] = {
        "/v2": {
            "get": _v2_operation(
                "v2_server_metadata",
                "Server metadata: name, version and extensions",
                {
                    "200": _json(
                        "The server.",
                        {
                            "allOf": [_ref("metadata_server_response")],
                            "properties": {"extensions": {"const": list(EXTENSIONS)}},
                        },
                    )
                },
            )
        },
        "/v2/health/live": {
            "get": _v2_operation(
                "v2_server_live",
                "Whether the server is live",
                {"200": {"description": "Live (no body)."}},
            )
        },
        "/v2/health/ready": {
            "get": _v2_operation(
                "v2_server_ready",
                "Whether the models are loaded",
                _readiness(),
            )
        },
    }
    for name in registry.names():
        paths.update(_v2_model_paths(registry[name], schemas, max_batch_size, max_body_size))
    return paths


def _v2_model_paths(
    route: Route,
    schemas: dict[str, Any],
    max_batch_size: int | None,
    max_body_size: int | None,
) -> dict[str, Any]:
    """One model's six paths: metadata, readiness and inference, each also for a version."""
    name = route.name
    signature = route.signature
    base = f"/v2/models/{name}"
    version = {
        "name": "version",
        "in": "path",
        "required": True,
        "description": "One of the versions taking traffic now.",
        "schema": {"type": "string", "enum": list(route.versions)},
    }
    metadata = _component_name(f"{name}.v2.metadata")
    schemas[metadata] = {
        "allOf": [_ref("metadata_model_response")],
        "properties": {
            "name": {"const": name},
            "inputs": {"const": input_metadata(signature)},
            "outputs": {"const": output_metadata(signature)},
        },
    }
    ready = {**_readiness(), **_v2_error_refs("404")}
    infer = _v2_infer(route, schemas, max_batch_size, max_body_size)
    paths: dict[str, Any] = {}
    for suffix, what, parameters in (("", "", []), ("/versions/{version}", " version", [version])):
        described = _ref(metadata if not suffix else "metadata_model_response")
        label = f"{name}{what}"
        paths[f"{base}{suffix}"] = {
            "get": _v2_operation(
                f"v2_metadata_{name}{what.replace(' ', '_')}",
                f"Metadata of {label}: its inputs and outputs, with datatypes and shapes",
                {"200": _json(f"{name}.", described), **_v2_error_refs("404", "503")},
                parameters,
            )
        }
        paths[f"{base}{suffix}/ready"] = {
            "get": _v2_operation(
                f"v2_ready_{name}{what.replace(' ', '_')}",
                f"Whether {label} is ready",
                ready,
                parameters,
            )
        }
        paths[f"{base}{suffix}/infer"] = {
            "post": {
                **infer,
                "operationId": f"v2_infer_{name}{what.replace(' ', '_')}",
                "summary": f"Inference with {label}",
                "parameters": [*parameters, *infer["parameters"]],
            }
        }
    return paths


def _v2_infer(
    route: Route,
    schemas: dict[str, Any],
    max_batch_size: int | None,
    max_body_size: int | None,
) -> dict[str, Any]:
    """A model's inference operation; its request and response schemas join ``schemas``."""
    name = route.name
    signature = route.signature
    kind = signature.kind
    if kind == "tabular":
        record = schemas[_component_name(f"{name}.input")]
        request = _tabular_request(signature, record, max_batch_size)
        rows = (
            "One input per column, each of shape [N] or [N, 1] for the same N rows; a missing "
            "value is null in data (or NaN in FP data). "
        )
    elif kind == "tensor":
        request = _tensor_request(signature, max_batch_size)
        rows = "The graph's inputs; each shape agrees with its data. "
    else:
        request = None
    headers = [
        _ROUTING_KEY,
        {
            "name": INFERENCE_HEADER,
            "in": "header",
            "required": False,
            "description": "With binary tensor data: the length in bytes of the body's JSON part.",
            "schema": {"type": "integer", "minimum": 0},
        },
    ]
    errors = {
        **_v2_error_refs("400", "404"),
        "413": _json(
            f"Over a limit: {_limits(max_batch_size, max_body_size)}.",
            _ref("inference_error_response"),
        ),
        **_v2_error_refs("500", "503"),
    }
    if request is None:
        return {
            "tags": ["open-inference"],
            "description": f"Model {name!r} takes JSON records of its own schema, not tensors: "
            "it answers 400 here; send them to its JSON predict endpoint.",
            "parameters": headers,
            "requestBody": {"content": {"application/json": {"schema": _ref("inference_request")}}},
            "responses": errors,
        }
    component = _component_name(name)
    schemas[f"{component}.v2.request"] = request
    schemas[f"{component}.v2.response"] = _response(route)
    return {
        "tags": ["open-inference"],
        "description": f"{rows}The request's id is echoed, and its outputs, when given, choose "
        "the outputs and whether each goes as binary data (binary_data; binary_data_output "
        f"for all of them). {_BINARY_BODY} An answer with binary data is application/"
        "octet-stream in the same layout.",
        "parameters": headers,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _ref(f"{component}.v2.request")},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "responses": {
            "200": {
                "description": "The outputs.",
                "headers": {
                    INFERENCE_HEADER: {
                        "description": "With binary data: the length of the JSON part.",
                        "schema": {"type": "integer", "minimum": 0},
                    }
                },
                "content": {
                    "application/json": {"schema": _ref(f"{component}.v2.response")},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            **errors,
        },
    }


def _tabular_request(
    signature: Signature, record: dict[str, Any], max_batch_size: int | None
) -> dict[str, Any]:
    """A tabular model's request: one input per column, whose elements are the values its
    field in the JSON record schema allows, in each datatype the column takes."""
    shape = {
        "type": "array",
        "description": "[N] or [N, 1], for N rows.",
        "prefixItems": [_dimension(max_batch_size)],
        "items": {"const": 1},
        "minItems": 1,
        "maxItems": 2,
    }
    columns = []
    for column in signature.columns:
        field = record["properties"][column.name]
        by_json_type: dict[str, list[str]] = {}
        for datatype in COLUMN_DATATYPES[column.type]:
            by_json_type.setdefault(JSON_TYPES[datatype], []).append(datatype)
        # Each group of datatypes with the elements JSON writes for it (null: a missing value).
        variants = [
            {
                "datatype": {"enum": group},
                "data": _data({"allOf": [field, {"type": [json_type, "null"]}]}, 2),
            }
            for json_type, group in by_json_type.items()
        ]
        described: dict[str, Any] = {
            "type": "object",
            "required": ["name", "datatype", "shape", "data"],
            "properties": {
                "name": {"const": column.name},
                "shape": shape,
                "parameters": _ref("parameters"),
            },
        }
        if len(variants) == 1:
            described["properties"].update(variants[0])
        else:
            described["anyOf"] = [{"properties": variant} for variant in variants]
        columns.append(described)
    return _request([c.name for c in signature.columns], columns, signature)


def _tensor_request(signature: Signature, max_batch_size: int | None) -> dict[str, Any]:
    """A tensor model's request: its graph's inputs, each of its datatype and shape."""
    tensors = []
    for spec, described in zip(signature.tensors, input_metadata(signature), strict=True):
        datatype = described["datatype"]
        tensors.append(
            {
                "type": "object",
                "required": ["name", "datatype", "shape", "data"],
                "properties": {
                    "name": {"const": spec.name},
                    "datatype": {
                        "const": datatype,
                        "description": "Other numeric datatypes are converted when their "
                        "values fit.",
                    },
                    "shape": _shape(spec.shape, max_batch_size, is_input=True),
                    "data": _data(
                        {"type": JSON_TYPES[datatype]},
                        None if spec.shape is None else max(len(spec.shape), 1),
                    ),
                    "parameters": _ref("parameters"),
                },
            }
        )
    return _request([t.name for t in signature.tensors], tensors, signature)


def _request(
    names: list[str], inputs: list[dict[str, Any]], signature: Signature
) -> dict[str, Any]:
    """The inference request around a model's inputs: each of them once, in any order."""
    outputs = [output["name"] for output in output_metadata(signature)]
    return {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string", "description": "Echoed in the answer."},
            "parameters": {
                "type": "object",
                "properties": {"binary_data_output": {"type": "boolean"}},
            },
            "inputs": {
                "type": "array",
                "description": f"Each of {names} once, in any order.",
                "minItems": len(inputs),
                "maxItems": len(inputs),
                "items": {"anyOf": inputs},
                "allOf": [
                    {"contains": {"required": ["name"], "properties": {"name": {"const": n}}}}
                    for n in names
                ],
            },
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"enum": outputs},
                        "parameters": {
                            "type": "object",
                            "properties": {"binary_data": {"type": "boolean"}},
                        },
                    },
                },
            },
        },
    }


def _response(route: Route) -> dict[str, Any]:
    """A model's inference answer in JSON: the outputs of any version taking traffic."""
    outputs: list[dict[str, Any]] = []
    for model in route.versions.values():
        signature = model.signature
        specs = {t.name: t for t in signature.outputs.tensors or ()}
        classes = signature.outputs.classes
        for described in output_metadata(signature):
            output_name, datatype = described["name"], described["datatype"]
            element: dict[str, Any] = {"type": _answer_type(datatype)}
            if output_name == "label" and classes is not None:
                element["enum"] = [as_text(c) if datatype == "BYTES" else c for c in classes]
            spec = specs.get(output_name)
            dims = spec.shape if spec is not None else described["shape"]
            parameters = described.get("parameters", {})
            schema = {
                "type": "object",
                "required": [
                    "name",
                    "datatype",
                    "shape",
                    "data",
                    *(["parameters"] * bool(parameters)),
                ],
                "additionalProperties": False,
                "properties": {
                    "name": {"const": output_name},
                    "datatype": {"const": datatype},
                    "shape": _shape(dims, None, is_input=False),
                    "data": {"type": "array", "items": element},
                    "parameters": {
                        "type": "object",
                        "required": list(parameters),
                        "additionalProperties": False,
                        "properties": {k: {"const": v} for k, v in parameters.items()},
                    },
                },
            }
            if schema not in outputs:
                outputs.append(schema)
    return {
        "type": "object",
        "required": ["model_name", "outputs"],
        "additionalProperties": False,
        "properties": {
            "model_name": {"const": route.name},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": {"anyOf": outputs}},
        },
    }


def _answer_type(datatype: str) -> str | list[str]:
    """An answer's element type: NaN is null in JSON."""
    json_type = JSON_TYPES[datatype]
    return [json_type, "null"] if json_type == "number" else json_type


def _dimension(limit: int | None) -> dict[str, Any]:
    """An axis of any length (at most ``limit``, the batch axis of a request)."""
    return {"type": "integer", "minimum": 0, **({} if limit is None else {"maximum": limit})}


def _shape(dims: Any, max_batch_size: int | None, *, is_input: bool) -> dict[str, Any]:
    """A shape's schema: a fixed axis its length, a dynamic one any (the first, in a request,
    at most the batch limit); ``None`` for any shape.

    An answer's shape gives only its rank: Schemathesis checks answers with ``prefixItems``
    rewritten as draft 7's ``items`` list, which a 2020-12 validator refuses.
    """
    any_length = _dimension(None)
    if dims is None:
        if not is_input:
            return {"type": "array", "items": any_length}
        return {"type": "array", "prefixItems": [_dimension(max_batch_size)], "items": any_length}
    if not is_input:
        return {
            "type": "array",
            "description": f"The shape {_label(dims)}.",
            "items": any_length,
            "minItems": len(dims),
            "maxItems": len(dims),
        }
    axes = [
        {"const": d}
        if isinstance(d, int) and d >= 0
        else (_dimension(max_batch_size) if i == 0 else any_length)
        for i, d in enumerate(dims)
    ]
    return {"type": "array", "prefixItems": axes, "minItems": len(axes), "maxItems": len(axes)}


def _label(dims: Any) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) and d >= 0 else "N" for d in dims) + "]"


def _data(element: dict[str, Any], depth: int | None) -> dict[str, Any]:
    """Tensor data: its elements flat, or nested as deep as ``depth`` axes (any depth for
    ``None``)."""
    if depth is None:
        return {**_ref("tensor_data"), "description": "Nested as the shape, or flat."}
    nested: dict[str, Any] = element
    for _ in range(depth - 1):
        nested = {"anyOf": [element, {"type": "array", "items": nested}]}
    return {"type": "array", "items": nested}


def _v2_operation(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["open-inference"],
        "responses": responses,
    }
    if parameters:
        operation["parameters"] = parameters
    return operation


def _v2_error_refs(*statuses: str) -> dict[str, Any]:
    return {status: {"$ref": f"{_RESPONSES}{_OIP_ERRORS[status][0]}"} for status in statuses}


def _limits(max_batch_size: int | None, max_body_size: int | None) -> str:
    records = (
        "any number of records"
        if max_batch_size is None
        else f"at most {max_batch_size} records (or tensor rows)"
    )
    body = "any size" if max_body_size is None else f"at most {max_body_size} bytes"
    return f"{records} per request, in a body of {body}"


def _single(record: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """One record as the body: a body that holds ``instances`` is a batch, whatever the schema
    of a record allows."""
    properties = schema.get("properties") or {}
    if schema.get("additionalProperties") is False and "instances" not in properties:
        return record
    return {"allOf": [record], "not": {"required": ["instances"]}}


def _holding(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An object of one required ``key``, and nothing else."""
    return {
        "type": "object",
        "required": [key],
        "additionalProperties": False,
        "properties": {key: schema},
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error_refs(*statuses: str) -> dict[str, Any]:
    return {status: {"$ref": f"{_RESPONSES}{_ERRORS[status][0]}"} for status in statuses}


def _component(schema: dict[str, Any], name: str, schemas: dict[str, Any]) -> dict[str, Any]:
    """Add a JSON Schema to ``schemas`` as ``name``, and return a reference to it.

    Its ``$defs`` become components of their own (``{name}.{definition}``): inside an OpenAPI
    document, ``#/$defs/...`` would point into the document, not into the schema.
    """
    name = _component_name(name)
    schema = copy.deepcopy(schema)
    definitions = schema.pop("$defs", {})
    targets = {"#": f"{_SCHEMAS}{name}"}
    for key in definitions:
        targets[f"#/$defs/{key}"] = f"{_SCHEMAS}{name}.{_component_name(key)}"
    schemas[name] = _retargeted(schema, targets)
    for key, definition in definitions.items():
        schemas[targets[f"#/$defs/{key}"].removeprefix(_SCHEMAS)] = _retargeted(definition, targets)
    return _ref(name)


def _retargeted(schema: Any, targets: dict[str, str]) -> Any:
    """``schema`` with its local ``$ref`` pointers replaced as ``targets`` says."""

    def retarget(holder: dict[str, Any]) -> Any:
        return {**holder, "$ref": targets.get(holder["$ref"], holder["$ref"])}

    return _references_replaced(schema, retarget)


def inlined(
    document: Mapping[str, Any], value: Any, expanding: frozenset[str] = frozenset()
) -> Any:
    """``value`` (a part of ``document``) with each local reference (``#/components/...``)
    replaced by what it names in ``document``, for a framework that writes its own document
    (whose components are its own); a reference met again inside itself (a recursive schema)
    becomes ``{}``."""

    def inline(holder: dict[str, Any]) -> Any:
        reference = holder["$ref"]
        if not reference.startswith("#/"):
            return holder
        if reference in expanding:
            return {}
        target: Any = document
        for part in reference[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        return inlined(document, target, expanding | {reference})

    return _references_replaced(value, inline)


def _references_replaced(value: Any, replace: Callable[[dict[str, Any]], Any]) -> Any:
    """``value`` with each object that holds a ``$ref`` (its other values walked first)
    replaced by what ``replace`` makes of it; values that are data are left as they are."""
    if isinstance(value, list):
        return [_references_replaced(item, replace) for item in value]
    if not isinstance(value, Mapping):
        return value
    walked = {
        key: item if key in _DATA_KEYWORDS else _references_replaced(item, replace)
        for key, item in value.items()
    }
    return replace(walked) if isinstance(walked.get("$ref"), str) else walked
