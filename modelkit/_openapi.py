"""The OpenAPI 3.1 document of the JSON endpoints, built from the models a registry serves.

Framework-neutral, as :mod:`modelkit._serving` is: ``modelkit serve``, Flask and Django answer
``GET /openapi.json`` with :func:`openapi_document` of the registry they serve. Each model has
paths of its own (``GET {prefix}/<name>``, ``POST {prefix}/<name>/predict``), so that its predict
operation carries its own input and output JSON Schemas: the very ones ``GET {prefix}/<name>``
answers with (:meth:`Signature.input_json_schema` and :meth:`Signature.output_json_schema`). Every
error answer has one component schema, ``Error``, the shape :func:`modelkit._serving.error`
writes; the limits the endpoints enforce are written into the document (``maxItems`` on a
batch, the byte limit in the 413's description).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from ._registry import Registry
from ._version import __version__

__all__ = ["OPENAPI_VERSION", "openapi_document"]

#: The version of the OpenAPI Specification the document follows.
OPENAPI_VERSION = "3.1.0"

_SCHEMAS = "#/components/schemas/"
_RESPONSES = "#/components/responses/"
# A component's name may hold only these characters (OpenAPI 3.1, "Components Object").
_NOT_IN_COMPONENT_NAME = re.compile(r"[^A-Za-z0-9._-]")
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
    tags = [{"name": "models", "description": "The models, and predictions by name."}]
    if has_health_checks:
        paths.update(_health_paths())
        tags.append({"name": "health", "description": "For load balancers and orchestrators."})
    # The Open Inference Protocol's /v2 paths join here, with the spec's own schemas as
    # components beside these.
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
        "components": {
            "schemas": schemas,
            "responses": {
                name: _json(meaning, _ref("Error"))
                for status, (name, meaning) in _ERRORS.items()
                if status != "503" or has_health_checks
            },
        },
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
                "parameters": [
                    {
                        "name": "X-Modelkit-Key",
                        "in": "header",
                        "required": False,
                        "description": "Routes the call to a canary stickily: the same key "
                        "always reaches the same version (a user or account id).",
                        "schema": {"type": "string"},
                    }
                ],
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


def _ref(component: str) -> dict[str, Any]:
    return {"$ref": f"{_SCHEMAS}{component}"}


def _error_refs(*statuses: str) -> dict[str, Any]:
    return {status: {"$ref": f"{_RESPONSES}{_ERRORS[status][0]}"} for status in statuses}


def _component(schema: dict[str, Any], name: str, schemas: dict[str, Any]) -> dict[str, Any]:
    """Add a JSON Schema to ``schemas`` as ``name``, and return a reference to it.

    Its ``$defs`` become components of their own (``{name}.{definition}``): inside an OpenAPI
    document, ``#/$defs/...`` would point into the document, not into the schema.
    """
    name = _NOT_IN_COMPONENT_NAME.sub("_", name)
    schema = copy.deepcopy(schema)
    definitions = schema.pop("$defs", {})
    targets = {"#": f"{_SCHEMAS}{name}"}
    for key in definitions:
        targets[f"#/$defs/{key}"] = f"{_SCHEMAS}{name}.{_NOT_IN_COMPONENT_NAME.sub('_', key)}"
    schemas[name] = _retargeted(schema, targets)
    for key, definition in definitions.items():
        schemas[targets[f"#/$defs/{key}"].removeprefix(_SCHEMAS)] = _retargeted(definition, targets)
    return _ref(name)


def _retargeted(schema: Any, targets: dict[str, str]) -> Any:
    """``schema`` with its local ``$ref`` pointers replaced as ``targets`` says."""
    if isinstance(schema, list):
        return [_retargeted(item, targets) for item in schema]
    if not isinstance(schema, dict):
        return schema
    retargeted: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "$ref" and isinstance(value, str):
            retargeted[key] = targets.get(value, value)
        elif key in _DATA_KEYWORDS:
            retargeted[key] = value
        else:
            retargeted[key] = _retargeted(value, targets)
    return retargeted
