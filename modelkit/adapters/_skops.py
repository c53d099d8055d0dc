"""The ``skops`` adapter: fitted scikit-learn estimators and pipelines, stored without pickle.

skops writes an estimator as a zip of a JSON schema and plain numpy arrays, and rebuilds from it
only the types it trusts by default and those its caller names. The caller's names reach the
adapter as its ``trusted_types`` option, from ``modelkit.load(trusted_types=...)``; nothing in
the bundle can add to them. Signature, probes and the runner are the joblib adapter's: only how
the estimator is stored differs.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .._deps import require
from .._protocol import SavedModel, first_line
from .._sklearn import ignore_version_warning, is_sklearn
from .._spec import Outputs, TabularInputs, TensorInputs
from ..errors import BundleError
from ._joblib import JoblibRunner, describe_estimator, runner_for

if TYPE_CHECKING:
    from .._bundle import Artifacts
    from .._manifest import Manifest

__all__ = [
    "ARTIFACT",
    "SkopsAdapter",
    "load_estimator",
    "trust_advice",
    "types_in",
    "untrusted_types",
]

ARTIFACT = "model.skops"
# A skops file is stored uncompressed (skops' default) or deflated; decompressed, its members
# may take at most this many times the file's size, plus a margin for small files. skops reads
# its schema whole, so a deflated member inflating a thousandfold would be read whole too.
_INFLATION = 16
_INFLATION_MARGIN = 16 * 2**20
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


class SkopsAdapter:
    """Saves with ``skops.io.dumps`` and loads with ``skops.io.loads`` from verified bytes,
    trusting only skops' default types and those the caller passes."""

    name = "skops"
    # Filled by modelkit.load from its own trusted_types argument, never from adapter_options.
    options = ("trusted_types",)

    def accepts(self, obj: object) -> bool:
        return is_sklearn(obj) and callable(getattr(obj, "predict", None))

    def save(
        self,
        obj: Any,
        directory: Path,
        *,
        sample_input: Any,
        inputs: TabularInputs | TensorInputs | None,
        outputs: Outputs | None,
    ) -> SavedModel:
        skops_io = _skops_io("Saving in the skops format")
        saved = describe_estimator(
            obj,
            fmt=self.name,
            artifact=ARTIFACT,
            sample_input=sample_input,
            inputs=inputs,
            outputs=outputs,
            packages=("skops",),
        )
        try:
            data = skops_io.dumps(obj)
        except Exception as exc:
            # skops refuses what it cannot represent without pickle (objects of C types
            # without state, lambdas...), each with its own exception.
            raise BundleError(
                f"skops cannot save {type(obj).__qualname__}: {first_line(exc)}. Save it with "
                "format='joblib', or format='onnx'."
            ) from exc
        try:
            # skops writes references it cannot rebuild (a lambda, a class defined in
            # __main__): a bundle that could never load is refused now, not at deployment. The
            # caller's own object, so the types it holds are trusted for this check.
            with warnings.catch_warnings():
                ignore_version_warning()
                skops_io.loads(data, trusted=skops_io.get_untrusted_types(data=data))
        except Exception as exc:
            raise BundleError(
                f"skops saved {type(obj).__qualname__} but cannot rebuild it: "
                f"{first_line(exc)}. Save it with format='joblib', or format='onnx'."
            ) from exc
        (directory / ARTIFACT).write_bytes(data)
        return saved

    def load(
        self, artifacts: Artifacts, manifest: Manifest, *, options: Mapping[str, Any]
    ) -> JoblibRunner:
        name = str(manifest.adapter.get("artifact", ARTIFACT))
        estimator = load_estimator(
            artifacts[name],
            tuple(options.get("trusted_types", ())),
            path=f"artifacts/{name}",
            refusing=f"Refusing to load model {manifest.name!r} {manifest.version}",
        )
        return runner_for(estimator, manifest)


def load_estimator(data: bytes, trusted_types: Sequence[str], *, path: str, refusing: str) -> Any:
    """Rebuild a skops file, trusting skops' default types and ``trusted_types`` only.

    Args:
        data: the file's verified bytes.
        trusted_types: the caller's trusted type names.
        path: the file, for messages and ``err.path``.
        refusing: how a refusal's message starts (``"Refusing to load model 'churn' 1.0"``).

    Raises:
        BundleError: the file holds types not trusted (listed in ``err.untrusted_types``,
            before anything is built), is not a skops file, or skops cannot rebuild it.
    """
    refused = [t for t in untrusted_types(data, path=path) if t not in trusted_types]
    if refused:
        raise BundleError(
            f"{refusing}: its skops file holds types skops does not trust by default: "
            f"{', '.join(refused)}. {trust_advice(refused)}",
            path=path,
            untrusted_types=tuple(refused),
        )
    skops_io = _skops_io("Loading a skops file")
    try:
        with warnings.catch_warnings():
            # Version differences were reported by the environment check already.
            ignore_version_warning()
            return skops_io.loads(data, trusted=list(trusted_types))
    except Exception as exc:
        raise BundleError(
            f"skops cannot rebuild the model from {path}: {first_line(exc)}", path=path
        ) from exc


def trust_advice(types: Sequence[str]) -> str:
    """How to trust ``types`` after reviewing them, for messages."""
    listed = json.dumps(list(types))
    flags = " ".join(f"--trust-type {name}" for name in types)
    return (
        "A type named there is rebuilt by its own code, with values the file's author chose: "
        "trust only the types you have reviewed, from a bundle whose origin you know, with "
        f"modelkit.load(..., trusted_types={listed}), trusted_types = {listed} in a registry "
        f"config table, or {flags} on the command line."
    )


def untrusted_types(data: bytes, *, path: str) -> list[str]:
    """The types a skops file holds that skops does not trust by default, read from its schema
    without building anything.

    Raises:
        BundleError: the file is not a skops file skops can read, or inflates too far.
    """
    skops_io = _skops_io("Reading a skops file")
    _check_archive(data, path)
    try:
        return list(skops_io.get_untrusted_types(data=data))
    except Exception as exc:
        # A malformed schema fails in skops' own parsing, with any exception (KeyError,
        # JSONDecodeError, RecursionError for deep nesting...).
        raise BundleError(f"{path} is not a skops file: {first_line(exc)}", path=path) from exc


def types_in(data: bytes, *, path: str) -> list[tuple[str, bool]]:
    """Every type (outside ``builtins``) a skops file names, sorted, each with whether skops
    trusts it by default; read from its schema, nothing built.

    Raises:
        BundleError: the file is not a skops file skops can read, or inflates too far.
    """
    untrusted = set(untrusted_types(data, path=path))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            schema = json.loads(archive.read("schema.json"))
    except Exception as exc:  # the schema parsed a moment ago; this only guards the reread
        raise BundleError(f"{path} is not a skops file: {first_line(exc)}", path=path) from exc
    names = set(untrusted)
    pending: list[Any] = [schema]
    while pending:  # iterative: a hostile schema may nest deeper than Python recurses
        node = pending.pop()
        if isinstance(node, dict):
            module, cls = node.get("__module__"), node.get("__class__")
            if isinstance(module, str) and isinstance(cls, str) and module != "builtins":
                names.add(f"{module}.{cls}")
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return [(name, name not in untrusted) for name in sorted(names)]


def _check_archive(data: bytes, path: str) -> None:
    """Refuse a file that is no zip, or whose members inflate past the bound, before skops
    reads any of them."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise BundleError(f"{path} is not a skops file: {first_line(exc)}", path=path) from exc
    odd = sorted({m.compress_type for m in members} - set(_METHODS))
    if odd:
        raise BundleError(
            f"{path} has members compressed with zip method {odd[0]}; skops files are stored "
            "or deflated.",
            path=path,
        )
    inflated = sum(m.file_size for m in members)
    if inflated > _INFLATION * len(data) + _INFLATION_MARGIN:
        raise BundleError(
            f"{path} declares {inflated:,} bytes once decompressed, from {len(data):,}: more than "
            f"{_INFLATION} times its size. Refused before decompressing.",
            path=path,
        )


def _skops_io(feature: str) -> ModuleType:
    return require("skops.io", extra="skops", feature=feature, package="skops")
