"""``modelkit import mlflow`` through click's ``CliRunner``, on a directory written by real
MLflow: what it prints, the trust it asks for, and its usage lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import modelkit
from modelkit.cli import cli
from tests.mlflow_models import import_mlflow_module, penguin_pipeline, penguins, save_sklearn

pytest.importorskip("yaml")


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    mlflow = import_mlflow_module()
    X, y = penguins()
    root = tmp_path_factory.mktemp("mlflow")
    return save_sklearn(mlflow, penguin_pipeline(X, y), X, root / "penguins", "cloudpickle")


def test_import_writes_a_bundle_and_says_what_it_made(model_dir: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundles" / "penguins"
    result = invoke(
        "import", "mlflow", model_dir, bundle, "--trusted", "--name", "penguins",
        "--model-version", "2.0",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    model = modelkit.load(bundle)
    assert result.stdout.splitlines() == [
        f"Imported {model_dir} (MLflow sklearn flavor) into {bundle} (joblib): penguins 2.0",
        f"Signature: {model.signature}",
    ]
    assert str(model.signature).startswith("(island: string | None, bill_length_mm: number")
    assert (model.name, model.version, model.format) == ("penguins", "2.0", "joblib")
    # An existing bundle is replaced only with --force.
    again = invoke("import", "mlflow", model_dir, bundle, "--trusted")
    assert again.exit_code == 1
    assert "already exists; pass --force to replace it" in again.stderr
    forced = invoke("import", "mlflow", model_dir, bundle, "--trusted", "--force")
    assert forced.exit_code == 0, forced.output
    assert modelkit.load(bundle).version == "unversioned"


def test_a_pickle_without_trusted_is_one_error_line_saying_what_to_pass(
    model_dir: Path, tmp_path: Path
) -> None:
    result = invoke("import", "mlflow", model_dir, tmp_path / "bundle")
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"modelkit: error: Refusing to import '{model_dir}/model.pkl'")
    assert "--trusted" in line
    assert not (tmp_path / "bundle").exists()


def test_a_wrong_pin_is_refused(model_dir: Path, tmp_path: Path) -> None:
    result = invoke(
        "import", "mlflow", model_dir, tmp_path / "bundle", "--trusted", "--sha256", "0" * 64
    )
    assert result.exit_code == 1
    assert "not the pinned sha256:" + "0" * 64 in result.stderr


def test_usage_errors_show_the_usage_line() -> None:
    result = invoke("import", "mlflow", "somewhere")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "usage: modelkit import mlflow MODEL_DIR BUNDLE [OPTIONS]",
        "Try 'modelkit import mlflow -h' for help.",
        "modelkit import mlflow: error: Missing argument 'BUNDLE'.",
    ]
    unknown = invoke("import", "mlflw", "a", "b")
    assert unknown.exit_code == 2
    assert unknown.stderr.splitlines()[-1] == (
        "modelkit import: error: unknown command 'mlflw'. Did you mean 'mlflow'?"
    )


def test_help_lists_the_importers() -> None:
    result = invoke("import", "--help")
    assert result.exit_code == 0
    assert result.stdout.startswith("usage: modelkit import [OPTIONS] COMMAND [ARGS]...")
    assert "mlflow  Save a local MLflow model directory" in result.stdout
