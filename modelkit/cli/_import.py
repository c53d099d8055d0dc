"""``modelkit import``: models saved by other tools, as bundles (``modelkit import mlflow``)."""

from __future__ import annotations

import click

from ._app import EXIT_OK, Group, command, trust_type_option
from ._common import refuse_to_replace

__all__ = ["import_group"]


@click.group(
    "import",
    cls=Group,
    short_help="Save a model from another tool (MLflow) as a bundle.",
    epilog="\b\nExample:\n  modelkit import mlflow mlruns/0/abc/artifacts/model bundles/churn",
)
def import_group() -> None:
    """Save a model from another tool as a bundle, which then loads without that tool."""


@command(
    "mlflow",
    epilog=(
        "\b\nExamples:\n"
        "  modelkit import mlflow runs/model bundles/churn --name churn --model-version 1.4.0\n"
        "  modelkit import mlflow runs/model bundles/churn --trusted --sha256 sha256:9f2c..."
    ),
)
@click.argument("model_dir", metavar="MODEL_DIR", type=click.Path())
@click.argument("bundle", metavar="BUNDLE", type=click.Path())
@click.option("--name", metavar="NAME", help="The bundle's name (default: MODEL_DIR's name).")
@click.option(
    "--model-version", metavar="VERSION", help="The bundle's version (default: unversioned)."
)
@click.option(
    "--trusted",
    is_flag=True,
    help="Allow a pickled scikit-learn model, which runs code while it loads.",
)
@trust_type_option
@click.option(
    "--sha256", metavar="DIGEST", help="The SHA-256 the model file must have, checked first."
)
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
def mlflow(
    *,
    model_dir: str,
    bundle: str,
    name: str | None,
    model_version: str | None,
    trusted: bool,
    trusted_types: tuple[str, ...],
    sha256: str | None,
    force: bool,
) -> int:
    """Save a local MLflow model directory (its sklearn or onnx flavor) as a bundle.

    MODEL_DIR holds the MLmodel file; BUNDLE is the bundle directory (or .zip) to write. MLflow's
    signature, input example (the sample and reference cases), run id and versions come along.
    A model pickled by MLflow needs --trusted; one saved with skops needs --trust-type for the
    types skops does not trust by default. A custom pyfunc model is refused. Needs the
    'mlflow-import' extra (PyYAML); MLflow itself is not needed.
    """
    from .. import import_mlflow

    refuse_to_replace(bundle, force=force)
    manifest = import_mlflow(
        model_dir,
        bundle,
        name=name,
        version=model_version,
        trusted=trusted,
        trusted_types=trusted_types,
        sha256=sha256,
        overwrite=force,
    )
    facts = manifest.metadata.get("mlflow")
    flavor = facts.get("flavor") if isinstance(facts, dict) else None
    click.echo(
        f"Imported {model_dir} (MLflow {flavor} flavor) into {bundle} ({manifest.format}): "
        f"{manifest.name} {manifest.version}"
    )
    click.echo(f"Signature: {manifest.signature}")
    return EXIT_OK


import_group.add_command(mlflow)
