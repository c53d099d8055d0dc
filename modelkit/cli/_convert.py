"""``modelkit convert``: a scikit-learn bundle (joblib or skops) to ONNX, parity checked first."""

from __future__ import annotations

from typing import Any

import click

from ._app import EXIT_OK, command, trust_type_option
from ._common import refuse_to_replace

__all__ = ["convert"]


@command(
    "convert",
    epilog="\b\nExample:\n  modelkit convert bundles/churn --to onnx --output bundles/churn-onnx",
)
@click.argument("path", metavar="PATH", type=click.Path())
@click.option(
    "--to",
    "target_format",
    type=click.Choice(("onnx",)),
    default="onnx",
    help="The target format (onnx).",
)
@click.option(
    "--output", "-o", required=True, metavar="DIR", type=click.Path(), help="The new bundle."
)
@click.option("--name", metavar="NAME", help="The new bundle's name (the source's by default).")
@click.option(
    "--model-version", metavar="VERSION", help="The new bundle's version (default: same)."
)
@click.option("--sha256", metavar="DIGEST", help="The digest the source must have.")
@trust_type_option
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
def convert(
    *,
    path: str,
    target_format: str,
    output: str,
    name: str | None,
    model_version: str | None,
    sha256: str | None,
    trusted_types: tuple[str, ...],
    force: bool,
) -> int:
    """Convert a scikit-learn (joblib or skops) bundle to ONNX, checked for parity first.

    PATH is the joblib or skops bundle to convert. Needs the 'convert' extra (skl2onnx). Nothing is
    written unless the converted model answers like the original on the sample and generated
    rows.
    """
    from .. import convert as convert_bundle

    refuse_to_replace(output, force=force)
    manifest = convert_bundle(
        path,
        output,
        to=target_format,
        name=name,
        version=model_version,
        sha256=sha256,
        trusted_types=trusted_types,
        overwrite=force,
    )
    click.echo(
        f"Converted {path} into {output} ({manifest.format}): {manifest.name} {manifest.version}"
    )
    parity: Any = manifest.adapter.get("parity") or {}
    if isinstance(parity, dict):
        click.echo(_parity_line(parity))
    return EXIT_OK


def _parity_line(parity: dict[str, Any]) -> str:
    checked = ", ".join(
        f"{parity[key]:,} {key.removesuffix('_rows')}"
        for key in ("sample_rows", "generated_rows")
        if isinstance(parity.get(key), int)
    )
    details = []
    if "label_mismatches" in parity:
        details.append(f"{parity['label_mismatches']} label mismatches")
    if parity.get("max_probability_difference") is not None:
        details.append(f"largest probability difference {parity['max_probability_difference']:.2g}")
    if parity.get("max_value_difference") is not None:
        details.append(f"largest value difference {parity['max_value_difference']:.2g}")
    return f"Parity on {parity.get('rows', 0):,} rows ({checked}): {', '.join(details)}"
