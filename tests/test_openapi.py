"""The OpenAPI document of the JSON endpoints and of the Open Inference Protocol's: valid OpenAPI
3.1, built from the signatures, and true to what the endpoints answer, which Schemathesis checks by
fuzzing them from it, on the WSGI application ``modelkit serve`` runs and on a Flask application."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema_rs
import pydantic
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import APIOperation, BaseSchema, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import modelkit
from modelkit import _serving
from modelkit._oip_types import COLUMN_DATATYPES
from modelkit._openapi import openapi_document
from modelkit.cli._wsgi import Application, Models
from tests.serving_fixtures import save_rows

LIMITS = {"max_batch_size": 5, "max_body_size": 4096, "max_response_size": 2**20}
#: A classifier and a regressor (joblib, tabular), an ONNX classifier (tabular) and an ONNX
#: graph over a float32[N, 2] tensor.
NAMES = ("iris", "diabetes", "forest", "rows")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Per operation and generation mode: enough to reach every status of a predict endpoint (200,
# 400, 413, 422) on each model, few enough that the module takes seconds.
EXAMPLES = 30


# -- models -------------------------------------------------------------------------------------


class Item(pydantic.BaseModel):
    sku: str
    quantity: int = pydantic.Field(ge=1)


class Basket(pydantic.BaseModel):
    items: list[Item]


class Total(pydantic.BaseModel):
    quantity: int


class Counts(modelkit.Model[Basket, Total]):
    """A custom model whose input nests a model of its own (a ``$defs`` entry in its schema)."""

    def run_batch(self, inputs: list[Basket]) -> list[Total]:
        return [Total(quantity=sum(item.quantity for item in basket.items)) for basket in inputs]


@pytest.fixture(scope="module")
def bundles(
    tmp_path_factory: pytest.TempPathFactory, iris_bundle: Path, onnx_bundle: Path
) -> dict[str, Path]:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    root = tmp_path_factory.mktemp("openapi")
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    diabetes = root / "diabetes"
    modelkit.save(Ridge().fit(X, y), diabetes, name="diabetes", version="2.0.0", sample_input=X)
    return {
        "iris": iris_bundle,
        "diabetes": diabetes,
        "forest": onnx_bundle,
        "rows": save_rows(root / "rows"),
    }


@pytest.fixture(scope="module")
def registry(bundles: dict[str, Path]) -> Iterator[modelkit.Registry]:
    with modelkit.Registry.from_config({"models": {k: str(v) for k, v in bundles.items()}}) as r:
        yield r


def document(registry: modelkit.Registry, **options: Any) -> dict[str, Any]:
    return openapi_document(
        registry,
        prefix=options.pop("prefix", "/models"),
        max_batch_size=LIMITS["max_batch_size"],
        max_body_size=LIMITS["max_body_size"],
        **options,
    )


# -- the document -------------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1(registry: modelkit.Registry) -> None:
    raw = document(registry, has_health_checks=True, has_open_inference=True)
    schema = schemathesis.openapi.from_dict(json.loads(json.dumps(raw)))
    schema.validate()  # against the OpenAPI 3.1 meta-schema (jsonschema-rs)
    with pytest.raises(jsonschema_rs.ValidationError):  # which does check
        schemathesis.openapi.from_dict({**raw, "info": {}}).validate()
    operations = sorted(op.ok().label for op in schema.get_all_operations())
    assert operations == sorted(
        [
            "GET /models",
            "GET /healthz",
            "GET /readyz",
            *(f"GET /models/{name}" for name in NAMES),
            *(f"POST /models/{name}/predict" for name in NAMES),
            "GET /v2",
            "GET /v2/health/live",
            "GET /v2/health/ready",
            *(
                f"{method} /v2/models/{name}{version}{action}"
                for name in NAMES
                for version in ("", "/versions/{version}")
                for method, action in (("GET", ""), ("GET", "/ready"), ("POST", "/infer"))
            ),
        ]
    )


def test_every_component_schema_is_a_json_schema_and_every_reference_resolves(
    registry: modelkit.Registry,
) -> None:
    raw = document(registry, has_open_inference=True)
    for name, component in raw["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(component), name
    for reference in _references(raw):
        target: Any = raw
        for part in reference.removeprefix("#/").split("/"):
            target = target[part]


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref":
                yield item
            else:
                yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def test_predict_takes_the_schemas_describe_gives(registry: modelkit.Registry) -> None:
    raw = document(registry)
    schemas = raw["components"]["schemas"]
    for name in NAMES:
        signature = registry[name].signature
        assert schemas[f"{name}.input"] == signature.input_json_schema()
        assert schemas[f"{name}.output"] == signature.output_json_schema()
        predict = raw["paths"][f"/models/{name}/predict"]["post"]
        record = {"$ref": f"#/components/schemas/{name}.input"}
        single, batch = predict["requestBody"]["content"]["application/json"]["schema"]["anyOf"]
        assert single == record
        assert batch["properties"]["instances"] == {
            "type": "array",
            "items": record,
            "maxItems": LIMITS["max_batch_size"],
        }
        assert set(predict["responses"]) == {"200", "400", "404", "413", "422", "500"}


@pytest.fixture(scope="module")
def counts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[modelkit.Registry]:
    path = tmp_path_factory.mktemp("custom") / "counts"
    modelkit.save(Counts(), path, name="counts", version="1.0.0")
    with modelkit.Registry() as registry:
        registry.add("counts", path)
        yield registry


def test_a_record_that_may_hold_instances_is_told_from_a_batch(
    counts: modelkit.Registry,
) -> None:
    """A body that holds ``instances`` is a batch: a record's schema that allows the key (a
    custom model's, without ``additionalProperties: false``) is kept from matching it."""
    raw = document(counts)
    body = raw["paths"]["/models/counts/predict"]["post"]["requestBody"]
    single = body["content"]["application/json"]["schema"]["anyOf"][0]
    assert single == {
        "allOf": [{"$ref": "#/components/schemas/counts.input"}],
        "not": {"required": ["instances"]},
    }


def test_references_are_inlined_for_a_document_of_its_own() -> None:
    from modelkit._openapi import inlined

    document = {
        "components": {
            "schemas": {
                "Tree": {
                    "properties": {"children": {"items": {"$ref": "#/components/schemas/Tree"}}}
                },
                "a/b": {"type": "string"},
            }
        }
    }
    value = {
        "tree": {"$ref": "#/components/schemas/Tree"},
        "slash": {"$ref": "#/components/schemas/a~1b"},
        "remote": {"$ref": "https://example.com/schema"},
        "examples": [{"$ref": "#/not/a/reference"}],  # data, not a schema
    }
    assert inlined(document, value) == {
        "tree": {"properties": {"children": {"items": {}}}},  # recursive: cut where it recurs
        "slash": {"type": "string"},
        "remote": {"$ref": "https://example.com/schema"},
        "examples": [{"$ref": "#/not/a/reference"}],
    }


def test_nested_definitions_become_components_of_their_own(counts: modelkit.Registry) -> None:
    raw = document(counts)
    schemas = raw["components"]["schemas"]
    assert "$defs" not in schemas["counts.input"]
    assert schemas["counts.input"]["properties"]["items"]["items"] == {
        "$ref": "#/components/schemas/counts.input.Item"
    }
    assert schemas["counts.input.Item"]["properties"]["quantity"]["minimum"] == 1
    # The references resolve where the records are drawn and where the answers are checked.
    app = Application(_loaded(counts), "/models", **LIMITS)
    operation = schemathesis.openapi.from_dict(raw)["/models/counts/predict"]["POST"]
    _fuzz(app, operation, GenerationMode.POSITIVE)


def test_the_endpoints_can_live_at_the_root(registry: modelkit.Registry) -> None:
    paths = document(registry, prefix="")["paths"]
    assert {"/", "/iris", "/iris/predict"} <= set(paths)
    assert set(document(registry, prefix="/")["paths"]) == set(paths)


def test_a_prefix_with_a_slash_is_the_model_lists_path(registry: modelkit.Registry) -> None:
    """As Django's ``include()`` serves them: the list at /models/, a model at /models/iris."""
    with_slash = set(document(registry, prefix="/models/")["paths"])
    without = set(document(registry, prefix="/models")["paths"])
    assert with_slash - without == {"/models/"}
    assert without - with_slash == {"/models"}


def test_health_checks_and_not_ready_only_where_the_server_has_them(
    registry: modelkit.Registry,
) -> None:
    plain, served = document(registry), document(registry, has_health_checks=True)
    assert "/healthz" not in plain["paths"]
    assert "503" not in plain["paths"]["/models/iris/predict"]["post"]["responses"]
    assert "NotReady" not in plain["components"]["responses"]
    assert {"/healthz", "/readyz"} <= set(served["paths"])
    assert "503" in served["paths"]["/models/iris/predict"]["post"]["responses"]


def test_no_limit_leaves_the_batch_unbounded(registry: modelkit.Registry) -> None:
    raw = openapi_document(registry, prefix="/models", max_batch_size=None, max_body_size=None)
    schema = raw["paths"]["/models/iris/predict"]["post"]["requestBody"]["content"]
    assert (
        "maxItems"
        not in schema["application/json"]["schema"]["anyOf"][1]["properties"]["instances"]
    )


def test_each_document_is_new(registry: modelkit.Registry) -> None:
    first = document(registry)
    first["components"]["schemas"]["Error"]["required"].append("changed")
    first["components"]["schemas"]["iris.input"]["required"].append("changed")
    second = document(registry)
    assert second["components"]["schemas"]["Error"]["required"] == ["error"]
    assert "changed" not in second["components"]["schemas"]["iris.input"]["required"]
    assert "changed" not in registry["iris"].signature.input_json_schema()["required"]


# -- fuzzed from the document -------------------------------------------------------------------


@dataclass(frozen=True)
class Surface:
    """A WSGI application serving the registry, and its document."""

    app: Callable[..., Any]
    schema: BaseSchema


def _loaded(registry: modelkit.Registry) -> Models:
    models = Models(lambda: registry)
    models.load()
    return models


def _served(app: Callable[..., Any]) -> BaseSchema:
    """The document ``app`` serves at ``/openapi.json``, as Schemathesis reads it."""
    from werkzeug.test import Client

    answer = Client(app).get("/openapi.json")
    assert (answer.status_code, answer.mimetype) == (200, "application/json")
    return schemathesis.openapi.from_dict(answer.get_json())


@pytest.fixture(scope="module")
def serve(registry: modelkit.Registry) -> Surface:
    """The application ``modelkit serve`` runs (with the report pages, on by default), and the
    document it serves."""
    app = Application(_loaded(registry), "/models", **LIMITS, has_report=True)
    served = _served(app)
    assert served.raw_schema == document(
        registry, has_health_checks=True, has_open_inference=True, has_report=True
    )
    return Surface(app, served)


@pytest.fixture(scope="module")
def flask_app(bundles: dict[str, Path]) -> Iterator[Surface]:
    """A Flask application with the extension's endpoints, and the document it serves."""
    flask = pytest.importorskip("flask")
    from modelkit.flask import EXTENSION_KEY, ModelKit

    app = flask.Flask(__name__)
    app.config.update(
        MODELKIT_MODELS={name: str(path) for name, path in bundles.items()},
        MODELKIT_MAX_BATCH_SIZE=LIMITS["max_batch_size"],
        MODELKIT_MAX_BODY_SIZE=LIMITS["max_body_size"],
        MODELKIT_MAX_RESPONSE_SIZE=LIMITS["max_response_size"],
    )
    ModelKit(app, url_prefix="/models", openapi_url="/openapi.json", oip=True, report=True)
    state = app.extensions[EXTENSION_KEY]
    served = _served(app)
    assert served.raw_schema == document(state.registry, has_open_inference=True, has_report=True)
    yield Surface(app, served)
    state.close()


@pytest.fixture(params=["serve", "flask_app"])
def surface(request: pytest.FixtureRequest) -> Surface:
    chosen: Surface = request.getfixturevalue(request.param)
    return chosen


def _fuzz(
    app: Callable[..., Any],
    operation: APIOperation,
    mode: GenerationMode,
    *,
    examples: int = EXAMPLES,
) -> None:
    """Call ``app`` with cases Schemathesis generates for ``operation``, checking each answer."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        # Records of twenty fields, in batches, can take longer to draw than Hypothesis allows on
        # a shared machine; max_examples bounds the time instead.
        suppress_health_check=[HealthCheck.too_slow],
    )
    def call(case: Case) -> None:
        case.call_and_validate(app=app, checks=CHECKS)

    call()


# Valid but extreme numbers (1e308) overflow the models' arithmetic: numpy warns, as it does in
# production, where a warning is not an error.
overflows = pytest.mark.filterwarnings("ignore:(overflow|invalid value) encountered:RuntimeWarning")


@overflows
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_predict_answers_as_the_document_says(
    surface: Surface, name: str, mode: GenerationMode
) -> None:
    """No 500, and every answer's status, media type and body as documented: records of the
    schema (positive) and bodies that break it (negative: not JSON, wrong types, extra keys)."""
    _fuzz(surface.app, surface.schema[f"/models/{name}/predict"]["POST"], mode)


@overflows
def test_the_read_endpoints_answer_as_the_document_says(
    surface: Surface, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The report pages as the document says they answer, not their charts: a page of its own
    # is quick to draw (tests/test_report.py draws real ones).
    drawn: list[str] = []
    monkeypatch.setattr(
        _serving, "report_page", lambda model: drawn.append(model.name) or "<!doctype html>"
    )
    for result in surface.schema.get_all_operations():
        operation = result.ok()
        if operation.method == "get":
            _fuzz(surface.app, operation, GenerationMode.POSITIVE)
    assert sorted(drawn) == sorted(NAMES)  # each report fuzzed; drawn once, then kept


# -- the Open Inference Protocol ----------------------------------------------------------------

#: Per /v2 operation and generation mode: the bodies are rarely valid (JSON Schema cannot tie a
#: shape to its data), so the answers are mostly 400s, which a few examples reach.
V2_EXAMPLES = 10


def test_the_open_inference_paths_only_where_the_server_speaks_it(
    registry: modelkit.Registry,
) -> None:
    plain = document(registry)
    assert not [path for path in plain["paths"] if path.startswith("/v2")]
    assert "inference_request" not in plain["components"]["schemas"]
    assert "InferenceBadRequest" not in plain["components"]["responses"]


def _metadata(surface: Surface, name: str) -> dict[str, Any]:
    from werkzeug.test import Client

    answer = Client(surface.app).get(f"/v2/models/{name}")
    assert answer.status_code == 200
    metadata: dict[str, Any] = answer.get_json()
    return metadata


def test_each_inference_request_names_the_models_inputs_and_its_answer_the_outputs(
    serve: Surface,
) -> None:
    schemas = serve.schema.raw_schema["components"]["schemas"]
    for name in NAMES:
        metadata = _metadata(serve, name)
        described = schemas[f"{name}.v2.metadata"]["properties"]
        assert described["inputs"]["const"] == metadata["inputs"]
        assert described["outputs"]["const"] == metadata["outputs"]
        inputs = schemas[f"{name}.v2.request"]["properties"]["inputs"]
        names = [i["properties"]["name"]["const"] for i in inputs["items"]["anyOf"]]
        assert names == [i["name"] for i in metadata["inputs"]]
        assert inputs["minItems"] == inputs["maxItems"] == len(names)
        outputs = schemas[f"{name}.v2.response"]["properties"]["outputs"]["items"]["anyOf"]
        assert [o["properties"]["name"]["const"] for o in outputs] == [
            o["name"] for o in metadata["outputs"]
        ]
    # A tabular column takes every datatype of its type; a tensor, its graph's.
    (sepal, *_) = schemas["iris.v2.request"]["properties"]["inputs"]["items"]["anyOf"]
    taken = [d for variant in sepal["anyOf"] for d in variant["properties"]["datatype"]["enum"]]
    assert sorted(taken) == sorted(COLUMN_DATATYPES["number"])
    (x,) = schemas["rows.v2.request"]["properties"]["inputs"]["items"]["anyOf"]
    assert x["properties"]["datatype"]["const"] == "FP32"
    assert x["properties"]["shape"]["prefixItems"] == [
        {"type": "integer", "minimum": 0, "maximum": LIMITS["max_batch_size"]},
        {"const": 2},
    ]


def _valid_request(metadata: dict[str, Any], *, binary: bool) -> dict[str, Any]:
    """Two rows of every input the metadata lists (numeric, as these models' are)."""
    inputs = []
    for item in metadata["inputs"]:
        shape = [2, *(1 if d < 0 else d for d in item["shape"][1:])]
        value = 1 if "INT" in item["datatype"] else 0.5
        inputs.append({**item, "shape": shape, "data": [value] * math.prod(shape)})
    return {"id": "fuzz", "inputs": inputs, "parameters": {"binary_data_output": binary}}


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_a_valid_inference_answers_as_the_document_says(surface: Surface, binary: bool) -> None:
    """The answers fuzzing rarely reaches: 200, in JSON or with binary tensor data."""
    for name in NAMES:
        for path in (f"/v2/models/{name}/infer", f"/v2/models/{name}/versions/{{version}}/infer"):
            operation = surface.schema[path]["POST"]
            body = _valid_request(_metadata(surface, name), binary=binary)
            version = {"version": _metadata(surface, name)["versions"][0]} if "{" in path else {}
            case = operation.Case(body=body, media_type="application/json", path_parameters=version)
            response = case.call(app=surface.app)
            case.validate_response(response, checks=CHECKS)
            assert response.status_code == 200, response.text
            expected = "application/octet-stream" if binary else "application/json"
            assert response.headers["content-type"] == [expected]


@overflows
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_open_inference_endpoints_answer_as_the_document_says(
    surface: Surface, mode: GenerationMode
) -> None:
    """The /v2 operations that take input, fuzzed: no 500, and every answer as documented.
    Each model's inference body, and the version of each versioned read (a versioned
    inference takes the same body as its model's)."""
    for result in surface.schema.get_all_operations():
        operation = result.ok()
        path = operation.path
        is_versioned = "{version}" in path
        if path.startswith("/v2/") and is_versioned != (operation.method == "post"):
            _fuzz(surface.app, operation, mode, examples=V2_EXAMPLES)


def test_a_flask_url_with_a_newline_gets_the_json_404(flask_app: Surface) -> None:
    """Found by fuzzing: Werkzeug's ``path`` converter stops at a newline, so such a URL got
    Flask's HTML 404, which the document does not have."""
    from werkzeug.test import Client

    for url in ("/v2/models/iris/versions/1%0A", "/v2/models/x%0Ay/ready", "/models/iris/x%0Ay"):
        answer = Client(flask_app.app).get(url)
        assert (answer.status_code, answer.mimetype) == (404, "application/json"), url
