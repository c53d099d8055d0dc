"""``modelkit schema``: the JSON Schema of a bundle's input record and output."""

from __future__ import annotations

import json
from typing import Any

import click

from ._app import EXIT_OK, command, stdout_output_option
from ._common import describe_bundle, write_text

__all__ = ["schema"]


@command(
    "schema",
    epilog="\b\nExample:\n  modelkit schema bundles/churn --part input --output churn.schema.json",
)
@click.argument("path", metavar="PATH", type=click.Path())
@click.option("--part", type=click.Choice(("input", "output")), help="Print one schema only.")
@stdout_output_option
def schema(*, path: str, part: str | None, output: str | None) -> int:
    """Print the JSON Schema of a bundle's input record and output.

    PATH is a bundle directory, .zip or .onnx file. Prints {"input": ..., "output": ...};
    --part input (or output) prints that schema alone. The bundle is verified, never
    deserialized.
    """
    signature = describe_bundle(path).manifest.signature
    document: dict[str, Any] = {
        "input": signature.input_json_schema(),
        "output": signature.output_json_schema(),
    }
    if part is not None:
        document = document[part]
    write_text(output, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return EXIT_OK
