"""``modelkit.import_mlflow`` on model directories written by real MLflow: the predictions are
MLflow's own, the signature is MLflow's, the bundle loads and serves without MLflow; and on
hostile directories (paths out of the directory, links, a huge MLmodel, custom code, pickles
nobody trusted), which get a ``BundleError`` naming the file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelkit
from modelkit import BundleError, IntegrityError
from tests.limited import run_limited
from tests.mlflow_models import (
    EXAMPLE_ROWS,
    import_mlflow_module,
    penguin_pipeline,
    penguins,
    quiet_mlflow,
    save_onnx,
    save_sklearn,
)

pytest.importorskip("yaml")


@pytest.fixture(scope="module")
def mlflow() -> Any:
    return import_mlflow_module()


@pytest.fixture(scope="module")
def data() -> tuple[Any, Any]:
    return penguins()


@pytest.fixture(scope="module")
def pipeline(data: tuple[Any, Any]) -> Any:
    return penguin_pipeline(*data)


@pytest.fixture(scope="module")
def saved(
    mlflow: Any, pipeline: Any, data: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The penguin pipeline saved by MLflow with each serialization, once for the module."""
    root = tmp_path_factory.mktemp("mlflow")
    X = data[0]
    return {
        "pickle": save_sklearn(mlflow, pipeline, X, root / "pickle", "pickle"),
        "cloudpickle": save_sklearn(mlflow, pipeline, X, root / "cloudpickle", "cloudpickle"),
    }


@pytest.fixture(scope="module")
def imported(saved: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pickled directory imported once, for the tests that only read the bundle."""
    bundle = tmp_path_factory.mktemp("bundles") / "penguins"
    modelkit.import_mlflow(saved["pickle"], bundle, name="penguins", version="1.0", trusted=True)
    return bundle


def copy_of(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(source, target)
    return target


def edit_mlmodel(directory: Path, old: str, new: str) -> None:
    mlmodel = directory / "MLmodel"
    text = mlmodel.read_text()
    assert old in text
    mlmodel.write_text(text.replace(old, new))


# -- what the bundle holds ----------------------------------------------------------------------


@pytest.mark.parametrize("serialization", ["pickle", "cloudpickle"])
def test_the_bundle_predicts_what_mlflow_predicts(
    mlflow: Any,
    saved: dict[str, Path],
    data: tuple[Any, Any],
    serialization: str,
    tmp_path: Path,
) -> None:
    X = data[0]
    manifest = modelkit.import_mlflow(
        saved[serialization], tmp_path / "penguins", trusted=True, version="1.0"
    )
    assert manifest.format == "joblib"
    assert manifest.name == serialization  # the directory's name
    model = modelkit.load(tmp_path / "penguins", check="error")
    with quiet_mlflow():
        expected = mlflow.pyfunc.load_model(str(saved[serialization])).predict(X)
    # Every row of the table, those with gaps included.
    assert X.isna().any(axis=1).sum() > 5
    np.testing.assert_array_equal(model.predict_batch(X)["label"], np.asarray(expected))
    assert model.predict(X.iloc[3].to_dict()).label == expected[3]


def test_the_signature_is_mlflows(saved: dict[str, Path], imported: Path) -> None:
    import yaml

    document = yaml.safe_load((saved["pickle"] / "MLmodel").read_text())
    specs = json.loads(document["signature"]["inputs"])
    types = {"double": "number", "long": "integer", "string": "string"}
    manifest = modelkit.load(imported).manifest
    assert manifest is not None
    columns = manifest.signature.columns
    assert [(c.name, c.type) for c in columns] == [(s["name"], types[s["type"]]) for s in specs]
    optional = {s["name"] for s in specs if s["required"] is False}
    assert optional == {
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "sex",
    }
    assert all(c.nullable for c in columns if c.name in optional)
    assert manifest.signature.outputs.task == "classification"
    assert manifest.signature.outputs.classes == ("Adelie", "Chinstrap", "Gentoo")


def test_the_input_example_becomes_the_reference_cases_and_profile(
    imported: Path, data: tuple[Any, Any]
) -> None:
    manifest = modelkit.load(imported).manifest
    assert manifest is not None
    cases = json.loads((imported / "artifacts" / "reference-cases.json").read_text())
    assert len(cases["inputs"]) == len(EXAMPLE_ROWS)
    assert cases["inputs"][3]["bill_length_mm"] is None  # row 3 of the example has gaps
    assert manifest.profile is not None
    assert manifest.profile["count"] == len(EXAMPLE_ROWS)


def test_mlflows_facts_go_into_the_metadata(saved: dict[str, Path], imported: Path) -> None:
    import yaml

    document = yaml.safe_load((saved["pickle"] / "MLmodel").read_text())
    manifest = modelkit.load(imported).manifest
    assert manifest is not None
    facts = manifest.metadata["mlflow"]
    assert facts == {
        "flavor": "sklearn",
        "model_uuid": document["model_uuid"],
        "mlflow_version": document["mlflow_version"],
        "utc_time_created": document["utc_time_created"],
        "sklearn_version": document["flavors"]["sklearn"]["sklearn_version"],
        "serialization_format": "pickle",
        "pickled_model": "model.pkl",
        "python_version": document["flavors"]["python_function"]["python_version"],
        "predict_fn": "predict",
    }


def test_metadata_of_ones_own_is_kept_next_to_mlflows(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    manifest = modelkit.import_mlflow(
        saved["pickle"], tmp_path / "b", trusted=True, metadata={"owner": "ml-team"}
    )
    assert manifest.metadata["owner"] == "ml-team"
    assert manifest.metadata["mlflow"]["flavor"] == "sklearn"
    assert manifest.version == "unversioned"


def test_the_bundle_loads_and_predicts_without_mlflow(
    imported: Path, data: tuple[Any, Any]
) -> None:
    row = json.dumps(data[0].iloc[0].to_dict())
    script = f"""
import json, sys
sys.modules["mlflow"] = None  # any import of mlflow fails
import modelkit
model = modelkit.load({str(imported)!r}, check="error")
print(model.predict(json.loads({row!r})).label)
assert not any(name.startswith("mlflow") and sys.modules[name] is not None for name in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Adelie"


def test_an_imported_bundle_converts_to_onnx(
    imported: Path, data: tuple[Any, Any], tmp_path: Path
) -> None:
    pytest.importorskip("skl2onnx")
    manifest = modelkit.convert(imported, tmp_path / "onnx")
    assert manifest.format == "onnx"
    assert manifest.metadata["mlflow"]["flavor"] == "sklearn"
    X = data[0].dropna()
    expected = modelkit.load(imported).predict_batch(X)["label"]
    np.testing.assert_array_equal(
        modelkit.load(tmp_path / "onnx").predict_batch(X)["label"], expected
    )


def test_the_bundle_is_served_by_the_json_and_oip_endpoints(
    imported: Path, data: tuple[Any, Any]
) -> None:
    pytest.importorskip("fastapi")
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    import modelkit.fastapi

    app = FastAPI()
    app.include_router(modelkit.fastapi.router({"models": {"penguins": str(imported)}}))
    record = {
        "island": "Biscoe",
        "bill_length_mm": 48.6,
        "bill_depth_mm": 16.0,
        "flipper_length_mm": 230.0,
        "body_mass_g": 5800.0,
        "sex": None,
        "year": 2009,
    }
    expected = modelkit.load(imported).predict(record).label
    with TestClient(app) as client:
        answer = client.post("/models/penguins/predict", json=record)
        assert answer.status_code == 200, answer.text
        assert answer.json()["label"] == expected
        refused = client.post("/models/penguins/predict", json={**record, "year": "recent"})
        assert refused.status_code == 422
        inputs = [
            {
                "name": name,
                "datatype": "BYTES" if isinstance(value, str) else "FP64",
                "shape": [1],
                "data": [value],
            }
            for name, value in record.items()
            if value is not None
        ]
        inputs.append({"name": "sex", "datatype": "BYTES", "shape": [1], "data": ["male"]})
        infer = client.post("/v2/models/penguins/infer", json={"inputs": inputs})
        assert infer.status_code == 200, infer.text
        outputs = {output["name"]: output for output in infer.json()["outputs"]}
        assert outputs["label"]["data"] == [
            modelkit.load(imported).predict({**record, "sex": "male"}).label
        ]


# -- other flavors and serializations -----------------------------------------------------------


def test_an_onnx_model_imports_with_its_tensor_signature(mlflow: Any, tmp_path: Path) -> None:
    pytest.importorskip("skl2onnx")
    directory, X = save_onnx(mlflow, tmp_path / "onnx-model")
    manifest = modelkit.import_mlflow(directory, tmp_path / "bundle")  # no trust needed
    assert manifest.format == "onnx"
    assert manifest.metadata["mlflow"]["flavor"] == "onnx"
    (tensor,) = manifest.signature.tensors
    assert (tensor.dtype, tensor.shape[1:]) == ("float32", (3,))
    model = modelkit.load(tmp_path / "bundle")
    with quiet_mlflow():
        # A tensor signature: MLflow's pyfunc takes the array, and answers output by name.
        expected = mlflow.pyfunc.load_model(str(directory)).predict(X)
    got = model.predict_batch({tensor.name: X})
    (name,) = got.fields
    assert list(expected) == [name]
    np.testing.assert_array_equal(got[name], expected[name])


def test_a_skops_model_imports_trusting_only_the_callers_types(
    mlflow: Any, pipeline: Any, data: tuple[Any, Any], tmp_path: Path
) -> None:
    pytest.importorskip("skops")
    X = data[0]
    # MLflow lists the types its author trusted in MLmodel; modelkit does not take them.
    directory = save_sklearn(
        mlflow, pipeline, X, tmp_path / "skops-model", "skops", skops_trusted_types=["numpy.dtype"]
    )
    with pytest.raises(BundleError, match=r"trusted_types=\[\"numpy.dtype\"\]") as refused:
        modelkit.import_mlflow(directory, tmp_path / "bundle")
    assert refused.value.untrusted_types == ("numpy.dtype",)
    assert not (tmp_path / "bundle").exists()
    manifest = modelkit.import_mlflow(directory, tmp_path / "bundle", trusted_types=["numpy.dtype"])
    assert manifest.format == "skops"
    model = modelkit.load(tmp_path / "bundle", trusted_types=["numpy.dtype"])
    with quiet_mlflow():
        expected = mlflow.pyfunc.load_model(str(directory)).predict(X)
    np.testing.assert_array_equal(model.predict_batch(X)["label"], np.asarray(expected))


def test_a_custom_pyfunc_model_is_refused_even_when_trusted(mlflow: Any, tmp_path: Path) -> None:
    with quiet_mlflow():

        class Shout(mlflow.pyfunc.PythonModel):
            # Hints MLflow builds a schema from (without them, it warns).
            def predict(
                self, context: Any, model_input: list[str], params: Any = None
            ) -> list[str]:
                return [text.upper() for text in model_input]

        mlflow.pyfunc.save_model(
            str(tmp_path / "custom"), python_model=Shout(), pip_requirements=["pandas"]
        )
    for trusted in (False, True):
        with pytest.raises(BundleError, match="custom MLflow pyfunc model") as refused:
            modelkit.import_mlflow(tmp_path / "custom", tmp_path / "bundle", trusted=trusted)
        assert "modelkit.Model subclass" in str(refused.value)
    assert not (tmp_path / "bundle").exists()


# -- trust --------------------------------------------------------------------------------------


def test_a_pickle_is_refused_unless_trusted(saved: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="runs arbitrary code") as refused:
        modelkit.import_mlflow(saved["cloudpickle"], tmp_path / "bundle")
    assert "trusted=True" in str(refused.value)
    assert refused.value.path == f"{saved['cloudpickle']}/model.pkl"
    assert not (tmp_path / "bundle").exists()


class Poison:
    """Unpickled, it creates ``marker``: the file's absence shows nothing was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.marker.touch, ())


@pytest.mark.parametrize(
    ("serialization", "trusted", "words"),
    [
        ("pickle", False, "runs arbitrary code"),
        # A skops flavor over a pickle goes to skops, which reads no pickle, trusted or not.
        ("skops", False, "is not a skops file"),
        ("skops", True, "is not a skops file"),
    ],
)
def test_a_pickle_nobody_trusted_never_runs(
    saved: dict[str, Path], tmp_path: Path, serialization: str, trusted: bool, words: str
) -> None:
    directory = copy_of(saved["pickle"], tmp_path)
    marker = tmp_path / "unpickled"
    (directory / "model.pkl").write_bytes(pickle.dumps(Poison(marker)))
    edit_mlmodel(
        directory, "serialization_format: pickle", f"serialization_format: {serialization}"
    )
    with pytest.raises(BundleError, match=words):
        modelkit.import_mlflow(directory, tmp_path / "bundle", trusted=trusted)
    assert not marker.exists()


def test_a_trusted_pickle_that_is_no_model_is_refused(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    directory = copy_of(saved["pickle"], tmp_path)
    (directory / "model.pkl").write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    with pytest.raises(BundleError, match="holds an object of type dict, which has no predict"):
        modelkit.import_mlflow(directory, tmp_path / "bundle", trusted=True)


def test_trusted_types_as_a_bare_string_is_a_type_error(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(TypeError, match="list of full type names"):
        modelkit.import_mlflow(saved["pickle"], tmp_path / "b", trusted_types="numpy.dtype")  # type: ignore[arg-type]


def test_a_pinned_pickle_is_checked_before_it_is_unpickled(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    directory = copy_of(saved["pickle"], tmp_path)
    pin = hashlib.sha256((directory / "model.pkl").read_bytes()).hexdigest()
    # A different pickle that would run code: refused by the pin, before it is read as one.
    marker = tmp_path / "unpickled"
    (directory / "model.pkl").write_bytes(pickle.dumps(Poison(marker)))
    with pytest.raises(IntegrityError, match="not the pinned"):
        modelkit.import_mlflow(directory, tmp_path / "bundle", trusted=True, sha256=pin)
    assert not marker.exists()
    shutil.copy(saved["pickle"] / "model.pkl", directory / "model.pkl")
    manifest = modelkit.import_mlflow(
        directory, tmp_path / "bundle", trusted=True, sha256=f"sha256:{pin}"
    )
    assert manifest.format == "joblib"


# -- hostile directories ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["../model.pkl", "/etc/passwd", "sub/../../model.pkl", "C:/model.pkl", "a\\b.pkl"]
)
def test_a_model_path_out_of_the_directory_is_refused(
    saved: dict[str, Path], tmp_path: Path, path: str
) -> None:
    directory = copy_of(saved["pickle"], tmp_path)
    # Both keys naming the file, as MLflow writes them, so that only the path is wrong.
    edit_mlmodel(directory, "model_path: model.pkl", f"model_path: '{path}'")
    edit_mlmodel(directory, "pickled_model: model.pkl", f"pickled_model: '{path}'")
    with pytest.raises(BundleError, match="not a plain relative path"):
        modelkit.import_mlflow(directory, tmp_path / "bundle", trusted=True)


@pytest.mark.parametrize("name", ["model.pkl", "MLmodel", "input_example.json"])
def test_a_symbolic_link_in_the_directory_is_refused(
    saved: dict[str, Path], tmp_path: Path, name: str
) -> None:
    directory = copy_of(saved["pickle"], tmp_path)
    outside = tmp_path / f"outside-{name}"
    (directory / name).rename(outside)
    (directory / name).symlink_to(outside)
    with pytest.raises(BundleError, match="symbolic link") as refused:
        modelkit.import_mlflow(directory, tmp_path / "bundle", trusted=True)
    assert refused.value.path == f"{directory}/{name}"


def test_a_file_behind_a_linked_directory_is_refused(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    directory = copy_of(saved["pickle"], tmp_path)
    (directory / "sub").symlink_to(saved["pickle"])
    edit_mlmodel(directory, "model_path: model.pkl", "model_path: sub/model.pkl")
    edit_mlmodel(directory, "pickled_model: model.pkl", "pickled_model: sub/model.pkl")
    with pytest.raises(BundleError, match="lies behind the symbolic link") as refused:
        modelkit.import_mlflow(directory, tmp_path / "bundle", trusted=True)
    assert refused.value.path == f"{directory}/sub/model.pkl"


def test_a_fifo_as_the_model_file_is_refused_without_blocking(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    directory = copy_of(saved["pickle"], tmp_path)
    (directory / "model.pkl").unlink()
    os.mkfifo(directory / "model.pkl")
    with pytest.raises(BundleError, match="not a regular file"):
        modelkit.import_mlflow(directory, tmp_path / "bundle", trusted=True)


def test_a_huge_mlmodel_is_refused_before_it_is_parsed(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    directory = copy_of(saved["pickle"], tmp_path)
    with (directory / "MLmodel").open("a") as handle:
        handle.write("# padding\n" * 110_000)
    with pytest.raises(
        BundleError, match="more than the 1048576 bytes allowed for the MLmodel file"
    ):
        modelkit.import_mlflow(directory, tmp_path / "bundle", trusted=True)


def billion_laughs(entry: str) -> list[str]:
    """Nine levels of ten aliases, in a kilobyte: 10**9 strings once printed or walked, which
    PyYAML's safe loader builds as shared lists without expanding them."""
    levels = [entry.format(0, '["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]')]
    levels += [entry.format(i, f"[{', '.join([f'*a{i - 1}'] * 10)}]") for i in range(1, 9)]
    return levels


@pytest.mark.parametrize(
    "mlmodel",
    [
        "\n".join(billion_laughs("a{0}: &a{0} {1}")) + "\nrun_id: *a8\n",
        # Inside an ordered mapping, which the safe loader builds as a list of tuples.
        f"run_id: !!omap [{', '.join(billion_laughs('{{a{0}: &a{0} {1}}}'))}]\n",
    ],
    ids=["anchors", "omap"],
)
def test_yaml_aliases_are_refused_before_they_expand(tmp_path: Path, mlmodel: str) -> None:
    (tmp_path / "MLmodel").write_text(mlmodel + "flavors: {sklearn: {pickled_model: m.pkl}}\n")
    outcome = run_limited(
        f"""
        import modelkit
        try:
            modelkit.import_mlflow({str(tmp_path)!r}, {str(tmp_path / "bundle")!r}, trusted=True)
        except modelkit.BundleError as exc:
            report(message=str(exc))
        """,
        memory=1024 * 2**20,
        timeout=60,
    )
    assert outcome.result is not None, outcome.stderr[-2000:]
    assert "a YAML alias" in str(outcome.result["message"])


def test_a_huge_input_example_is_refused_before_it_is_parsed(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    directory = copy_of(saved["pickle"], tmp_path)
    row = '["Dream", 1, 1, 1, 1, "male", 2007]'
    rows = ", ".join([row] * (4 * 2**20 // len(row)))
    (directory / "input_example.json").write_text(f'{{"columns": [], "data": [{rows}]}}')
    with pytest.raises(BundleError, match="bytes allowed for the input example") as refused:
        modelkit.import_mlflow(directory, tmp_path / "bundle", trusted=True)
    assert refused.value.path == f"{directory}/input_example.json"


def test_a_model_file_over_the_size_limit_is_refused_before_it_is_read(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(BundleError, match="more than the 1000 bytes allowed for the model file"):
        modelkit.import_mlflow(
            saved["pickle"], tmp_path / "bundle", trusted=True, max_model_size=1000
        )


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        (
            '{"type": "string", "name": "sex"',
            '{"type": "binary", "name": "sex"',
            "'sex' has MLflow type 'binary'",
        ),
        (
            '{"type": "long", "name": "year"',
            '{"type": {"type": "array"}, "name": "year"',
            "'year' has MLflow type",
        ),
        ("flavors:\n", "flavors:\n  xgboost: {}\n", None),
        ("code: null", "code: code", "ships code of its own"),
        (
            "serialization_format: pickle",
            "serialization_format: joblib",
            "serialized with 'joblib'",
        ),
        ("pickled_model: model.pkl", "pickled_model: [1, 2]", "'pickled_model' is not a file name"),
        # MLflow's pyfunc would run other code, or load another file, than the bundle holds.
        (
            "loader_module: mlflow.sklearn",
            "loader_module: mlflow.pyfunc.model\n    python_model: python_model.pkl",
            "runs a cloudpickled python_model, not mlflow.sklearn",
        ),
        (
            "model_path: model.pkl",
            "model_path: other.pkl",
            "python_function.model_path 'other.pkl'",
        ),
        ('{"type": "string", "name": "island"', '{"type": "string"', "names some columns and not"),
        (
            '{"type": "string", "name": "island"',
            '{"type": "string", "name": ""',
            "not a column name",
        ),
        (
            "artifact_path: input_example.json",
            "artifact_path: 7",
            "artifact_path is not a file name",
        ),
    ],
)
def test_an_mlmodel_modelkit_cannot_take_is_refused_naming_the_key(
    saved: dict[str, Path], tmp_path: Path, old: str, new: str, words: str | None
) -> None:
    directory = copy_of(saved["pickle"], tmp_path)
    if old.startswith("{"):
        # The signature is a JSON string inside the YAML, wrapped over lines: rewrite it whole.
        import yaml

        document = yaml.safe_load((directory / "MLmodel").read_text())
        inputs = document["signature"]["inputs"]
        assert old in inputs
        document["signature"]["inputs"] = inputs.replace(old, new)
        (directory / "MLmodel").write_text(yaml.safe_dump(document))
    else:
        edit_mlmodel(directory, old, new)
    if words is None:  # another flavor besides: the sklearn one is still taken
        modelkit.import_mlflow(directory, tmp_path / "bundle", trusted=True)
        return
    with pytest.raises(BundleError, match=words.replace("(", r"\(")) as refused:
        modelkit.import_mlflow(directory, tmp_path / "bundle", trusted=True)
    assert str(directory) in str(refused.value)
    assert not (tmp_path / "bundle").exists()


def test_of_two_flavors_the_one_mlflows_pyfunc_loads_is_taken(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    directory = copy_of(saved["pickle"], tmp_path)
    # An ONNX flavor besides, which modelkit would prefer were MLflow's pyfunc not the sklearn one.
    edit_mlmodel(directory, "flavors:\n", "flavors:\n  onnx:\n    data: model.onnx\n")
    manifest = modelkit.import_mlflow(directory, tmp_path / "bundle", trusted=True)
    assert (manifest.format, manifest.metadata["mlflow"]["flavor"]) == ("joblib", "sklearn")


def test_a_directory_without_a_model_flavor_modelkit_takes_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "model"
    directory.mkdir()
    with pytest.raises(BundleError, match="MLmodel' does not exist"):
        modelkit.import_mlflow(directory, tmp_path / "bundle")
    (directory / "MLmodel").write_text("flavors:\n  xgboost: {data: model.xgb}\n")
    with pytest.raises(BundleError, match=r"flavors \['xgboost'\]; modelkit imports"):
        modelkit.import_mlflow(directory, tmp_path / "bundle")
    with pytest.raises(BundleError, match="is not a directory"):
        modelkit.import_mlflow(directory / "MLmodel", tmp_path / "bundle")
    with pytest.raises(BundleError, match="does not exist"):
        modelkit.import_mlflow(tmp_path / "nowhere", tmp_path / "bundle")


def rewrite_example(directory: Path, columns: list[str], rows: list[list[Any]]) -> None:
    (directory / "input_example.json").write_text(json.dumps({"columns": columns, "data": rows}))


def test_the_example_is_taken_as_mlflow_hands_it_to_the_model(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    directory = copy_of(saved["pickle"], tmp_path)
    example = json.loads((directory / "input_example.json").read_text())
    # Columns in another order, and one the signature does not name: MLflow's pyfunc passes the
    # signature's columns, in its order.
    columns = ["extra", *reversed(example["columns"])]
    rewrite_example(directory, columns, [[1, *reversed(row)] for row in example["data"]])
    manifest = modelkit.import_mlflow(directory, tmp_path / "bundle", trusted=True)
    cases = json.loads((tmp_path / "bundle" / "artifacts" / "reference-cases.json").read_text())
    assert list(cases["inputs"][0]) == [c.name for c in manifest.signature.columns]
    assert "extra" not in cases["inputs"][0]
    # An optional column may be absent (MLflow leaves it out); a required one may not.
    without_sex = [c for c in example["columns"] if c != "sex"]
    positions = [example["columns"].index(c) for c in without_sex]
    rewrite_example(
        directory, without_sex, [[row[i] for i in positions] for row in example["data"]]
    )
    modelkit.import_mlflow(directory, tmp_path / "bundle", trusted=True, overwrite=True)
    rewrite_example(directory, example["columns"][:-1], [row[:-1] for row in example["data"]])
    with pytest.raises(BundleError, match="has no column 'year', which the signature requires"):
        modelkit.import_mlflow(directory, tmp_path / "bundle", trusted=True, overwrite=True)
    rewrite_example(directory, example["columns"], [])
    with pytest.raises(BundleError, match=r"input_example\.json' holds no rows"):
        modelkit.import_mlflow(directory, tmp_path / "bundle", trusted=True, overwrite=True)


def test_a_pyfunc_answering_with_another_method_is_recorded(
    saved: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = copy_of(saved["pickle"], tmp_path)
    edit_mlmodel(directory, "predict_fn: predict", "predict_fn: predict_proba")
    manifest = modelkit.import_mlflow(directory, tmp_path / "bundle", trusted=True)
    assert manifest.metadata["mlflow"]["predict_fn"] == "predict_proba"
    assert "MLflow's pyfunc answers with the model's 'predict_proba'" in caplog.text


def test_a_malformed_input_example_is_refused_naming_it(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    directory = copy_of(saved["pickle"], tmp_path)
    example = json.loads((directory / "input_example.json").read_text())
    example["data"][2] = example["data"][2][:3]
    (directory / "input_example.json").write_text(json.dumps(example))
    with pytest.raises(
        BundleError, match="data row 2 does not hold one value per column"
    ) as refused:
        modelkit.import_mlflow(directory, tmp_path / "bundle", trusted=True)
    assert refused.value.path == f"{directory}/input_example.json"
    example["data"][2] = ["Biscoe", "long", 1, 2, 3, "male", 2007]
    (directory / "input_example.json").write_text(json.dumps(example))
    with pytest.raises(
        BundleError, match="column 'bill_length_mm' does not hold MLflow type 'double'"
    ):
        modelkit.import_mlflow(directory, tmp_path / "bundle", trusted=True)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.one_of(
        st.text(max_size=300),
        st.sampled_from(
            [
                "[" * 5000,
                "a: &x [1]\nb: *x\n",
                "flavors: 3",
                "!!python/object:os.system {}",
                "\udcff",
            ]
        ),
    )
)
def test_any_mlmodel_text_is_a_bundle_error_or_imports(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    directory = tmp_path_factory.mktemp("any")
    (directory / "MLmodel").write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(BundleError):
        modelkit.import_mlflow(directory, directory / "bundle")


def test_without_pyyaml_the_error_names_the_extra(
    saved: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed
    with pytest.raises(modelkit.MissingDependencyError, match=r"pip install '\.\[mlflow-import\]'"):
        modelkit.import_mlflow(saved["pickle"], tmp_path / "bundle", trusted=True)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)
COLUMNS = [
    "island",
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
    "sex",
    "year",
]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    example=st.one_of(
        JSON,
        st.fixed_dictionaries(
            {
                "columns": st.just(COLUMNS),
                "data": st.lists(st.lists(JSON, min_size=7, max_size=7), max_size=3),
            }
        ),
        st.fixed_dictionaries({"columns": st.lists(st.text(max_size=3), max_size=8), "data": JSON}),
    )
)
def test_any_input_example_imports_or_is_refused_with_a_modelkit_error(
    saved: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, example: Any
) -> None:
    directory = copy_of(saved["pickle"], tmp_path_factory.mktemp("any"))
    (directory / "input_example.json").write_text(json.dumps(example))
    # Imported, or refused with one of modelkit's errors: never pandas' or numpy's own.
    with contextlib.suppress(BundleError, modelkit.InvalidInputError):
        modelkit.import_mlflow(directory, directory.parent / "bundle", trusted=True)


def test_a_logged_models_run_id_goes_into_the_metadata(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    # What mlflow.sklearn.log_model adds to MLmodel inside a run (it needs a tracking store).
    directory = copy_of(saved["pickle"], tmp_path)
    run_id = "0f6d4c2b9a8e4e0f8d1b2c3d4e5f6a7b"
    edit_mlmodel(
        directory, "mlflow_version:", f"run_id: {run_id}\nartifact_path: model\nmlflow_version:"
    )
    manifest = modelkit.import_mlflow(directory, tmp_path / "bundle", trusted=True)
    facts = manifest.metadata["mlflow"]
    assert (facts["run_id"], facts["artifact_path"]) == (run_id, "model")
    edit_mlmodel(directory, f"run_id: {run_id}", "run_id: " + "x" * 600)
    with pytest.raises(BundleError, match="run_id is 600 characters long"):
        modelkit.import_mlflow(directory, tmp_path / "bundle", trusted=True, overwrite=True)
