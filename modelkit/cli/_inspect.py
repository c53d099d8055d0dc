"""``modelkit inspect``: a bundle's identity, signature, artifacts and recorded environment."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from ._app import EXIT_OK, command
from ._common import BundleDescription, describe_bundle, format_size, table

if TYPE_CHECKING:
    from .._manifest import Manifest

__all__ = ["inspect"]


@command(
    "inspect",
    epilog="\b\nExample:\n  modelkit inspect bundles/churn --json",
)
@click.argument("path", metavar="PATH", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def inspect(*, path: str, as_json: bool) -> int:
    """Describe a bundle: identity, digest, signature, artifacts and recorded environment.

    PATH is a bundle directory, .zip or .onnx file. The bundle is verified, never deserialized.
    The environment table compares the recorded library versions with this one: ok, differs
    (loading warns), incompatible or missing (loading refuses unless version_policy='ignore').
    A skops bundle's types are listed from its schema, each marked trusted by default or not
    (loading needs --trust-type / trusted_types for those).
    """
    described = describe_bundle(path)
    report = _inspection(described)
    if described.manifest.format == "skops":
        report["types"] = _skops_types(path, described.manifest)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        click.echo(_inspection_text(described.manifest, report), nl=False)
    return EXIT_OK


def _inspection(described: BundleDescription) -> dict[str, Any]:
    manifest = described.manifest
    signature = manifest.signature
    return {
        "path": described.label,
        "name": manifest.name,
        "version": manifest.version,
        "format": manifest.format,
        "task": manifest.task,
        "digest": described.digest,
        "format_version": manifest.format_version,
        "created_at": manifest.created_at.isoformat(),
        "signature": signature.model_dump(mode="json"),
        "artifacts": [artifact.model_dump(mode="json") for artifact in manifest.artifacts],
        "size": sum(artifact.size for artifact in manifest.artifacts),
        "environment": _environment_report(manifest),
        "metadata": manifest.metadata,
        "has_profile": manifest.profile is not None,
        "has_reference_cases": _has_reference_cases(manifest),
    }


def _skops_types(path: str, manifest: Manifest) -> list[dict[str, Any]]:
    """The types a skops bundle's file names, read from its verified schema, nothing built."""
    from .._bundle import open_bundle
    from ..adapters._skops import ARTIFACT, types_in

    opened = open_bundle(path)
    assert opened.bundle is not None
    name = str(manifest.adapter.get("artifact", ARTIFACT))
    types = types_in(opened.bundle.artifacts[name], path=f"artifacts/{name}")
    return [{"name": type_name, "trusted_by_default": trusted} for type_name, trusted in types]


def _has_reference_cases(manifest: Manifest) -> bool:
    from .._manifest import ARTIFACTS_DIR
    from .._reference import ARTIFACT, keeps_cases

    # In other formats a file at that path is the adapter's own, not reference cases.
    return keeps_cases(manifest.format, manifest.signature) and any(
        a.path == f"{ARTIFACTS_DIR}/{ARTIFACT}" for a in manifest.artifacts
    )


def _environment_report(manifest: Manifest) -> dict[str, Any]:
    """Each recorded package next to the installed one, with what loading would do about it."""
    from .._environment import (
        depends_on_python,
        installed_version,
        package_status,
        python_status,
    )

    packages = []
    for name, recorded in sorted(manifest.environment.packages.items()):
        installed = installed_version(name)
        status = package_status(recorded, installed)
        packages.append(
            {"name": name, "recorded": recorded, "installed": installed, "status": status}
        )
    python_now = platform.python_version()
    recorded_python = manifest.environment.python
    shown_python = (
        python_status(recorded_python, python_now)
        if depends_on_python(manifest.format)
        else "not compared"
    )
    statuses = {entry["status"] for entry in packages} | {shown_python}
    if statuses & {"missing", "incompatible"}:
        verdict = "load refuses it (unless version_policy='ignore')"
    elif "differs" in statuses:
        verdict = "load warns (results may differ slightly)"
    else:
        verdict = "matches this environment"
    return {
        "python": {"recorded": recorded_python, "installed": python_now, "status": shown_python},
        "packages": packages,
        "verdict": verdict,
    }


def _inspection_text(manifest: Manifest, report: Mapping[str, Any]) -> str:
    created = manifest.created_at.isoformat()
    size = format_size(report["size"])
    count = len(manifest.artifacts)
    fields = [
        ("path", report["path"]),
        ("format", f"{manifest.format} (bundle format {manifest.format_version})"),
        ("task", manifest.task),
        ("digest", report["digest"]),
        ("created", created),
        ("size", f"{size} in {count} artifact{'s' if count != 1 else ''}"),
        ("reference", "cases kept" if report["has_reference_cases"] else "no cases"),
    ]
    width = max(len(name) for name, _ in fields)
    parts = [f"{manifest.name} {manifest.version}"]
    parts += [f"  {name.ljust(width)}  {value}" for name, value in fields]

    signature = manifest.signature
    parts += ["", "Signature", f"  {signature}"]
    if signature.columns:
        rows = [
            [
                column.name,
                column.type,
                "yes" if column.nullable else "no",
                "-" if column.categories is None else _short(list(column.categories)),
            ]
            for column in signature.columns
        ]
        parts += ["", "Inputs", table(["name", "type", "nullable", "categories"], rows)]
    elif signature.tensors:
        rows = [[t.name, t.dtype, _shape(t.shape)] for t in signature.tensors]
        parts += ["", "Inputs", table(["name", "dtype", "shape"], rows)]
    outputs = signature.outputs
    if outputs.task == "classification":
        classes = "?" if outputs.classes is None else _short(list(outputs.classes))
        probabilities = "with" if outputs.has_probabilities else "without"
        parts += ["", "Outputs", f"  label of {classes}, {probabilities} probabilities"]
    elif outputs.task == "regression":
        parts += ["", "Outputs", "  value"]
    elif outputs.tensors:
        rows = [[t.name, t.dtype, _shape(t.shape)] for t in outputs.tensors]
        parts += ["", "Outputs", table(["name", "dtype", "shape"], rows)]

    rows = [[a.path, format_size(a.size), a.sha256] for a in manifest.artifacts]
    parts += ["", "Artifacts", table(["path", "size", "sha256"], rows)]

    environment = report["environment"]
    python = environment["python"]
    rows = [["python", python["recorded"], python["installed"], python["status"]]]
    rows += [
        [p["name"], p["recorded"], p["installed"] or "-", p["status"]]
        for p in environment["packages"]
    ]
    parts += [
        "",
        f"Environment: {environment['verdict']}",
        table(["package", "recorded", "installed", "status"], rows),
    ]
    if "types" in report:
        rows = [
            [t["name"], "by default" if t["trusted_by_default"] else "no: needs --trust-type"]
            for t in report["types"]
        ]
        untrusted = sum(not t["trusted_by_default"] for t in report["types"])
        parts += [
            "",
            f"Types (skops; {untrusted} not trusted by default, review before trusting)",
            table(["type", "trusted"], rows),
        ]
    if manifest.metadata:
        rows = [[key, _short(value)] for key, value in manifest.metadata.items()]
        parts += ["", "Metadata", table(["key", "value"], rows)]
    return "\n".join(parts) + "\n"


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shape(shape: Sequence[Any] | None) -> str:
    if shape is None:
        return "?"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
