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
import re
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
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
# A type name as Python spells it; anything else in a file is crafted, and would reach messages.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
# skops' audit of its own files takes one step per state; crafted back references multiply them.
_STEPS_PER_STATE = 2


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
        BundleError: the file is not a skops file skops can read, or one whose reading would
            take more than time and memory in proportion to its size.
    """
    return _read(data, path)[1]


def types_in(data: bytes, *, path: str) -> list[tuple[str, bool]]:
    """Every type (outside ``builtins``) a skops file's states name, sorted, each with whether
    skops trusts it by default; read from its schema, nothing built.

    Raises:
        BundleError: as :func:`untrusted_types`.
    """
    schema, untrusted = _read(data, path)
    names = set(untrusted)
    for state in _states(schema):
        module, cls = state.get("__module__"), state.get("__class__")
        if isinstance(module, str) and isinstance(cls, str) and module != "builtins":
            names.add(_type_name(f"{module}.{cls}", path))
    return [(name, name not in untrusted) for name in sorted(names)]


def _read(data: bytes, path: str) -> tuple[Any, list[str]]:
    """A skops file's schema, and the types in it skops does not trust by default."""
    skops_io = _skops_io("Reading a skops file")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            _check_members(archive.infolist(), len(data), path)
            schema = json.loads(archive.read("schema.json"))
        _check_references(schema, path)
        untrusted = skops_io.get_untrusted_types(data=data)
    except BundleError:
        raise
    except Exception as exc:
        # A malformed file fails in zipfile's, json's or skops' own parsing, with any exception
        # (KeyError, JSONDecodeError, RecursionError for deep nesting...).
        raise BundleError(f"{path} is not a skops file: {first_line(exc)}", path=path) from exc
    return schema, [_type_name(name, path) for name in untrusted]


def _type_name(name: str, path: str) -> str:
    """``name``, refused unless a dotted Python name: it goes into messages and terminals."""
    if not _NAME.match(name):
        raise BundleError(f"{path} names a type that is no Python name: {name!r}.", path=path)
    return name


def _check_members(members: list[zipfile.ZipInfo], size: int, path: str) -> None:
    """Refuse members skops would read at more than their share of the file's bytes.

    zipfile inflates a deflated member in one call however small its declared size, and reads
    overlapping members' bytes once each: only stored members that fit the file side by side
    are read in proportion to it.
    """
    compressed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED]
    if compressed:
        raise BundleError(
            f"{path} has compressed members ({compressed[0]}); skops files are stored "
            "uncompressed (skops' default), whose size no member can lie about.",
            path=path,
        )
    declared = sum(m.compress_size for m in members)
    if declared > size or any(m.file_size != m.compress_size for m in members):
        raise BundleError(
            f"{path} declares {declared:,} bytes of members in {size:,}: its members overlap or "
            "misstate their sizes.",
            path=path,
        )


def _check_references(schema: Any, path: str) -> None:
    """Refuse a schema whose reading would take more than time and memory linear in its size.

    skops builds one object per ``__id__``, and a later state with an ``__id__`` already seen
    (even ``{"__id__": 1}`` alone) stands for that object. Its audit, though, walks each such
    reference again, so 40 states referring twice to the next make 2**40 steps; and each state
    built reads its ``file`` member again. skops writes every occurrence of an object in full, so
    its own files are walked once per state and read each member once: more steps than states,
    a member read for two objects, or a cycle is a crafted file.
    """
    children: dict[Any, list[list[Any]]] = {}  # object -> the objects each of its states holds
    readers: dict[str, set[Any]] = {}
    states = 0
    for states, (state, holder, held) in enumerate(_walk(schema), start=1):
        key = _object_of(state, states - 1)
        children.setdefault(key, []).append(held)
        if holder is not None:
            holder.append(key)
        if isinstance(state.get("file"), str):
            readers.setdefault(state["file"], set()).add(key)
    shared = next((name for name, keys in readers.items() if len(keys) > 1), None)
    if shared is not None:
        raise BundleError(f"{path} reads its member {shared!r} for several objects.", path=path)
    limit = _STEPS_PER_STATE * states
    if _audit_steps(children, _object_of(schema, 0), limit=limit, path=path) > limit:
        raise BundleError(
            f"{path} refers back to the objects it describes so often that checking its types "
            f"would take more than {limit:,} steps, for {states:,} states.",
            path=path,
        )


def _walk(schema: Any) -> Iterator[tuple[dict[str, Any], list[Any] | None, list[Any]]]:
    """Each state of a schema (iteratively: it may nest deeper than Python recurses), with the
    list its holder collects the objects it holds in (``None`` for the root) and its own."""
    pending: list[tuple[Any, list[Any] | None]] = [(schema, None)]
    while pending:
        value, holder = pending.pop()
        if isinstance(value, dict):
            if _is_state(value):
                held: list[Any] = []
                yield value, holder, held
                holder = held
            pending.extend((v, holder) for v in value.values())
        elif isinstance(value, list):
            pending.extend((v, holder) for v in value)


def _states(schema: Any) -> Iterator[dict[str, Any]]:
    return (state for state, _, _ in _walk(schema))


def _is_state(value: dict[str, Any]) -> bool:
    """Whether skops may read ``value`` as a state: it has a loader, or refers to an object."""
    return isinstance(value.get("__loader__"), str) or isinstance(
        value.get("__id__"), int | float | str
    )


def _object_of(state: Any, count: int) -> Any:
    """The object the ``count``-th state stands for: its ``__id__`` as skops compares them (only
    true ones are shared), else the state itself."""
    saved = state.get("__id__") if isinstance(state, dict) else None
    return ("id", saved) if saved and isinstance(saved, int | float | str) else ("state", count)


def _audit_steps(children: dict[Any, list[list[Any]]], root: Any, *, limit: int, path: str) -> int:
    """How many steps skops' audit takes from ``root`` at most (counted up to past ``limit``):
    each object's, its largest state's plus those of the objects it holds."""
    steps: dict[Any, int] = {}
    open_: set[Any] = set()
    pending = [(root, False)]
    while pending:  # depth first, iteratively
        key, done = pending.pop()
        if done:
            open_.discard(key)
            totals = (1 + sum(steps[k] for k in held) for held in children.get(key, [[]]))
            steps[key] = min(max(totals), limit + 1)
        elif key not in steps:
            if key in open_:  # reached again from inside itself
                raise BundleError(f"{path} describes an object holding itself.", path=path)
            open_.add(key)
            pending.append((key, True))
            pending.extend((k, False) for held in children.get(key, []) for k in held)
    return steps[root]


def _skops_io(feature: str) -> ModuleType:
    return require("skops.io", extra="skops", feature=feature, package="skops")
