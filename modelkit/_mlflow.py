"""``modelkit.import_mlflow``: a local MLflow model directory becomes a bundle, without MLflow.

The directory is read as hostile input, as a bundle is: every file is opened relative to the
directory's descriptor without following a link at any level, read within a size limit, and
named in the error when it is malformed. ``MLmodel`` is YAML (read with PyYAML's safe loader,
the ``mlflow-import`` extra); the signature and the input example are JSON.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._api import save, type_names
from ._bundle import DEFAULT_MAX_BUNDLE_SIZE, check_pin
from ._deps import require
from ._manifest import Manifest, normalize_digest
from ._sources import AT_SUPPORTED, OPEN_FLAGS, DirectorySource, consume, set_blocking
from ._spec import (
    ColumnSpec,
    ColumnType,
    Outputs,
    Signature,
    TabularInputs,
    TensorSpec,
)
from .errors import BundleError, IntegrityError

__all__ = ["import_mlflow"]

logger = logging.getLogger("modelkit")

MLMODEL = "MLmodel"
# MLflow writes a few KiB; a signature of thousands of columns stays far below this.
_MAX_MLMODEL_SIZE = 1024 * 1024
# MLflow's examples are a few rows; parsed, a row costs about a kilobyte, so 4 MiB of short rows
# still fit in a few hundred MiB.
_MAX_EXAMPLE_SIZE = 4 * 1024 * 1024
_EXTRA = "mlflow-import"
_FEATURE = "Importing an MLflow model"
# MLflow column types and what modelkit makes of them: the column type and the dtype MLflow's
# pyfunc casts the column to before the model sees it (mlflow.types.DataType).
_COLUMN_TYPES: dict[str, tuple[ColumnType, str]] = {
    "double": ("number", "float64"),
    "float": ("number", "float32"),
    "long": ("integer", "int64"),
    "integer": ("integer", "int32"),
    "boolean": ("boolean", "bool"),
    "string": ("string", "object"),
    "datetime": ("datetime", "datetime64[ns]"),
}
# The facts of MLmodel and of a flavor worth keeping in the bundle's metadata (scalars only).
_MODEL_KEYS = (
    "run_id",
    "model_uuid",
    "model_id",
    "artifact_path",
    "mlflow_version",
    "utc_time_created",
)
_FLAVOR_KEYS = (
    "sklearn_version",
    "serialization_format",
    "pickled_model",
    "onnx_version",
    "data",
    "python_version",
)
_MAX_FACT_LENGTH = 500
# The flavors modelkit imports, in the order it prefers them (an ONNX graph needs no trust), and
# the key naming each one's model file; MLflow's pyfunc names that file under its own keys.
_FILE_KEYS = {"onnx": "data", "sklearn": "pickled_model"}
_PYFUNC_FILE_KEYS = ("model_path", "data")
_NAME = re.compile(r"[^A-Za-z0-9._-]")


def import_mlflow(
    model_dir: str | os.PathLike[str],
    bundle_path: str | os.PathLike[str],
    *,
    name: str | None = None,
    version: str | None = None,
    trusted: bool = False,
    trusted_types: Sequence[str] | None = None,
    sha256: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    max_model_size: int | None = DEFAULT_MAX_BUNDLE_SIZE,
) -> Manifest:
    """Save a local MLflow model directory as a bundle, which then loads without MLflow.

    Reads the directory's ``MLmodel`` file and takes its ``onnx`` or ``sklearn`` flavor (pickle,
    cloudpickle and skops serializations). MLflow's signature becomes the bundle's (an optional
    column takes a missing value), its input example the sample, and so the reference cases and
    drift profile; the run id, model uuid and flavor versions go into ``metadata["mlflow"]``.
    Neither importing nor loading the bundle needs MLflow.

    Args:
        model_dir: the MLflow model directory (the one holding ``MLmodel``).
        bundle_path: the bundle directory, or ``.zip``, to create.
        name: the bundle's name; the directory's name by default.
        version: the bundle's version; ``"unversioned"`` by default (MLflow's registry versions
            are not part of the directory).
        trusted: allow a pickled scikit-learn model, which runs code while it loads, as
            ``modelkit.load(trusted=True)`` allows a bare pickle.
        trusted_types: for a model MLflow serialized with skops, the types it may hold beyond
            those skops trusts by default, by full name, after you reviewed them (the
            ``skops_trusted_types`` MLmodel lists are not used). The bundle is a skops bundle:
            pass the same to :func:`modelkit.load`.
        sha256: the SHA-256 the model file must have (with or without ``sha256:``), checked
            before anything in it is deserialized.
        metadata: JSON-compatible facts to keep in the manifest, next to ``"mlflow"``.
        overwrite: replace an existing bundle at ``bundle_path``.
        max_model_size: refuse a model file larger than this many bytes (2 GiB by default,
            ``None`` for no limit) before reading it.

    Returns:
        The new bundle's manifest.

    Raises:
        BundleError: the directory is not an MLflow model, a file is malformed, too large, a
            link or outside the directory, the flavor is not one modelkit imports (a custom
            pyfunc model among them, or a ``python_function`` flavor that would run other code
            or another file), a pickle without ``trusted``, a skops type not in
            ``trusted_types``, or a signature column modelkit cannot take.
        IntegrityError: the model file's SHA-256 is not ``sha256``.
        TypeError: ``trusted_types`` is a string, not a list of names.
        ValueError: ``sha256`` is not a SHA-256 digest.
        MissingDependencyError: PyYAML (or pandas, for a DataFrame model) is not installed.
    """
    names = type_names(trusted_types)
    pinned = None if sha256 is None else normalize_digest(sha256)
    label = os.fspath(model_dir)
    with _open_directory(label) as directory:
        document = _read_mlmodel(directory)
        flavor_name, flavor = _flavor(directory, document)
        relative = _model_file(directory, flavor_name, flavor)
        where = directory.file(relative)
        # Decided before any file is read: a pickle nobody trusted is refused at once.
        model_format = _model_format(where, flavor_name, flavor, trusted=trusted)
        mlflow_inputs = _signature_inputs(directory, document)
        # An ONNX graph declares its tensors, and a tensor bundle keeps no sample: its example
        # is read only for a model over columns.
        wants_example = flavor_name == "sklearn" or bool(mlflow_inputs and mlflow_inputs.columns)
        example = _read_example(directory, document, mlflow_inputs) if wants_example else None
        facts = _facts(directory, document, flavor_name, flavor)
        data = directory.read(relative, limit=max_model_size, what="the model file")
        check_pin(where, "sha256:" + hashlib.sha256(data).hexdigest(), pinned)
        if model_format == "onnx":
            obj: Any = data
            declared, sample = _onnx_inputs(mlflow_inputs, example)
        else:
            obj = _estimator(where, data, model_format, names)
            declared, sample = _sklearn_inputs(directory, obj, mlflow_inputs, example)
    signature = (
        None
        if declared is None
        else Signature(inputs=declared, outputs=_outputs(where, obj, declared))
    )
    return save(
        obj,
        bundle_path,
        name=name if name is not None else _default_name(label),
        version=version if version is not None else "unversioned",
        format=model_format,
        sample_input=sample,
        signature=signature,
        metadata={"mlflow": facts, **(metadata or {})},
        overwrite=overwrite,
    )


# -- reading the directory ----------------------------------------------------------------------


@dataclass
class _Directory:
    """An MLflow model directory, opened once: its files are read relative to it."""

    label: str
    source: DirectorySource

    def file(self, relative: str) -> str:
        return f"{self.label.rstrip('/')}/{relative}"

    def read(self, relative: str, *, limit: int | None, what: str) -> bytes:
        """A file's bytes: a relative path inside the directory, no link at any level."""
        where = self.file(relative)
        if (
            not relative
            or relative.startswith("/")
            or "\\" in relative
            or "\x00" in relative
            or re.match(r"^[A-Za-z]:", relative)
            or any(part in ("", ".", "..") for part in relative.split("/"))
            or len(relative) > _MAX_FACT_LENGTH
        ):
            raise BundleError(
                f"{what} {_shown(relative)} is not a plain relative path inside {self.label!r}; "
                "an MLflow model's files stay inside its directory.",
                path=where,
            )
        try:
            handle = self.source.open(relative)
        except IntegrityError:
            raise BundleError(
                f"{where!r} {_what_is_there(self.label, relative)}; modelkit reads only the "
                "regular files inside an MLflow model's directory, and follows no link.",
                path=where,
            ) from None
        except OSError as exc:
            raise BundleError(
                f"Cannot read {where!r}: {exc.strerror or exc}.", path=where
            ) from None
        with handle:
            size = self.source.size(handle)
            if limit is not None and size is not None and size > limit:
                raise BundleError(
                    f"{where!r} holds {size} bytes, more than the {limit} bytes allowed for "
                    f"{what}.",
                    path=where,
                )
            try:
                read = consume(handle, limit, keep=True, available=size)
            except OSError as exc:
                raise BundleError(
                    f"Cannot read {where!r}: {exc.strerror or exc}.", path=where
                ) from None
        if limit is not None and read.size > limit:
            raise BundleError(
                f"{where!r} holds more than the {limit} bytes allowed for {what}.", path=where
            )
        assert read.data is not None
        return read.data


def _what_is_there(label: str, relative: str) -> str:
    """What stands at ``relative`` instead of a regular file, for a message (the refusal itself
    came from opening it without following links)."""
    parts = relative.split("/")
    path = label
    for depth, part in enumerate(parts, start=1):
        path = os.path.join(path, part)
        try:
            info = os.lstat(path)
        except OSError:
            return "does not exist"
        if stat.S_ISLNK(info.st_mode):
            return (
                "is a symbolic link"
                if depth == len(parts)
                else f"lies behind the symbolic link {path!r}"
            )
    return "is not a regular file"


@contextlib.contextmanager
def _open_directory(label: str) -> Iterator[_Directory]:
    if not AT_SUPPORTED:
        if not Path(label).is_dir():
            raise BundleError(f"{label!r} is not an MLflow model directory.", path=label)
        yield _Directory(label, DirectorySource(label, label))
        return
    try:
        # The directory's own path may be a link, as a bundle's may; nothing inside it is followed.
        fd = os.open(label, OPEN_FLAGS)
    except FileNotFoundError:
        raise BundleError(
            f"No MLflow model at {label!r}: the path does not exist.", path=label
        ) from None
    except OSError as exc:
        raise BundleError(f"Cannot open {label!r}: {exc.strerror}.", path=label) from None
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise BundleError(
                f"{label!r} is not a directory; give the MLflow model directory, the one "
                f"holding its {MLMODEL} file.",
                path=label,
            )
        set_blocking(fd)
        yield _Directory(label, DirectorySource(fd, label))
    finally:
        os.close(fd)


def _read_mlmodel(directory: _Directory) -> dict[str, Any]:
    yaml = require("yaml", extra=_EXTRA, feature=_FEATURE, package="pyyaml")
    where = directory.file(MLMODEL)
    text = directory.read(MLMODEL, limit=_MAX_MLMODEL_SIZE, what="the MLmodel file")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        document = yaml.load(text, Loader=loader)  # a safe loader, C or Python
    except (yaml.YAMLError, RecursionError, UnicodeDecodeError) as exc:
        raise BundleError(f"{where!r} is not valid YAML: {_one_line(exc)}", path=where) from None
    if not isinstance(document, dict):
        raise BundleError(f"{where!r} is not an MLmodel file: it holds no mapping.", path=where)
    _refuse_shared(where, document)
    return document


def _refuse_shared(where: str, document: dict[str, Any]) -> None:
    """Refuse a list or mapping reached twice (a YAML alias): MLflow writes none, and a few
    nested aliases in a kilobyte stand for a billion items once printed or walked."""
    seen: set[int] = set()
    pending: list[Any] = [document]
    while pending:
        value = pending.pop()
        # Tuples too: the safe loader builds !!omap and !!pairs as lists of them.
        if isinstance(value, dict | list | tuple):
            if id(value) in seen:
                raise BundleError(
                    f"{where!r} refers to a list or mapping twice (a YAML alias); MLflow writes "
                    "every value in full.",
                    path=where,
                )
            seen.add(id(value))
            pending.extend(value.values() if isinstance(value, dict) else value)


def _flavor(directory: _Directory, document: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The flavor to import, ``onnx`` or ``sklearn``, and its section of MLmodel: the one MLflow's
    pyfunc loads when the model has both."""
    where = directory.file(MLMODEL)
    flavors = document.get("flavors")
    if not isinstance(flavors, dict) or not flavors:
        raise BundleError(f"{where!r} has no 'flavors' mapping.", path=where)
    python_function = flavors.get("python_function")
    loader = python_function.get("loader_module") if isinstance(python_function, dict) else None
    order = sorted(_FILE_KEYS, key=lambda flavor_name: loader != f"mlflow.{flavor_name}")
    for flavor_name in order:
        flavor = flavors.get(flavor_name)
        if flavor is None:
            continue
        if not isinstance(flavor, dict):
            raise BundleError(f"{where!r}: flavors.{flavor_name} is not a mapping.", path=where)
        if flavor.get("code"):
            raise BundleError(
                f"{where!r}: the model ships code of its own (flavors.{flavor_name}.code), which "
                "a bundle does not carry. Install that code as a package, load the model where "
                "it is importable, and save it with modelkit.save().",
                path=where,
            )
        _check_pyfunc(where, python_function, flavor_name, flavor)
        return flavor_name, flavor
    if isinstance(python_function, dict):
        how = _pyfunc_code(python_function)
        raise BundleError(
            f"{where!r} describes a custom MLflow pyfunc model ({how}) with no sklearn or onnx "
            "flavor. Its code runs through MLflow's pyfunc wrapper, so the bundle would need "
            "MLflow, and the custom code, to load: modelkit imports the sklearn and onnx "
            "flavors only, trusted or not. Save the estimator the pyfunc wraps with "
            "modelkit.save(), or port the code to a modelkit.Model subclass.",
            path=where,
        )
    raise BundleError(
        f"{where!r} has the flavors {_shown(sorted(map(str, flavors)))}; modelkit imports "
        "'sklearn' and 'onnx' models only.",
        path=where,
    )


def _check_pyfunc(
    where: str, python_function: Any, flavor_name: str, flavor: dict[str, Any]
) -> None:
    """Refuse a ``python_function`` flavor that would not answer with the imported model.

    MLflow's ``pyfunc.load_model`` follows ``python_function``, not the sklearn or onnx flavor:
    its own code, or another file, would answer there what the bundle answers differently.
    """
    if python_function is None:
        return
    if not isinstance(python_function, dict):
        raise BundleError(f"{where!r}: flavors.python_function is not a mapping.", path=where)
    loader = f"mlflow.{flavor_name}"
    if python_function.get("loader_module") != loader or "python_model" in python_function:
        raise BundleError(
            f"{where!r}: its python_function flavor runs {_pyfunc_code(python_function)}, not "
            f"{loader}, so what MLflow predicts is that code's answer, not the {flavor_name} "
            "model's. modelkit imports the model alone: save the estimator with "
            "modelkit.save(), or port the code to a modelkit.Model subclass.",
            path=where,
        )
    predict_fn = python_function.get("predict_fn", "predict")
    if predict_fn != "predict":
        logger.warning(
            "%s: MLflow's pyfunc answers with the model's %s; the bundle answers with predict "
            "(a classifier's probabilities included).",
            where,
            _shown(predict_fn),
        )
    named = flavor.get(_FILE_KEYS[flavor_name])
    for key in _PYFUNC_FILE_KEYS:
        if isinstance(named, str) and key in python_function and python_function[key] != named:
            raise BundleError(
                f"{where!r}: MLflow's pyfunc loads python_function.{key} "
                f"{_shown(python_function[key])}, the {flavor_name} flavor names {_shown(named)}; "
                "an MLmodel MLflow wrote names one file in both.",
                path=where,
            )


def _pyfunc_code(python_function: dict[str, Any]) -> str:
    """The code a ``python_function`` flavor runs, for messages."""
    if "python_model" in python_function or not isinstance(
        python_function.get("loader_module"), str
    ):
        return "a cloudpickled python_model"
    return f"loader_module {_shown(python_function['loader_module'])}"


def _model_file(directory: _Directory, flavor_name: str, flavor: dict[str, Any]) -> str:
    """The model file a flavor names, relative to the directory."""
    key = _FILE_KEYS[flavor_name]
    relative = flavor.get(key)
    if not isinstance(relative, str):
        where = directory.file(MLMODEL)
        raise BundleError(f"{where!r}: the flavor's {key!r} is not a file name.", path=where)
    return relative


def _model_format(where: str, flavor_name: str, flavor: dict[str, Any], *, trusted: bool) -> str:
    """The bundle format for the flavor's model file: its own, so that a model MLflow stored
    without pickle stays without; a pickle only when ``trusted``."""
    if flavor_name == "onnx":
        return "onnx"
    # MLflow's default before skops existed, and what an MLmodel without the key means.
    serialization = flavor.get("serialization_format", "cloudpickle")
    if serialization == "skops":
        return "skops"
    if serialization not in ("pickle", "cloudpickle"):
        raise BundleError(
            f"{where!r} is serialized with {_shown(serialization)}; modelkit imports "
            "scikit-learn models serialized with pickle, cloudpickle or skops.",
            path=where,
        )
    if not trusted:
        raise BundleError(
            f"Refusing to import {where!r}: MLflow saved this scikit-learn model with "
            f"{serialization}, which runs arbitrary code while it loads. Pass trusted=True "
            "(modelkit import mlflow --trusted) if the model comes from you; sha256= pins the "
            "file's bytes first.",
            path=where,
        )
    return "joblib"


def _estimator(where: str, data: bytes, model_format: str, trusted_types: tuple[str, ...]) -> Any:
    """The scikit-learn model in ``data``, rebuilt as ``model_format`` says."""
    if model_format == "skops":
        from .adapters._skops import load_estimator

        estimator = load_estimator(
            data,
            trusted_types,
            path=where,
            refusing=(
                f"Refusing to import {where!r} (import_mlflow takes trusted_types as load does; "
                "the MLmodel's skops_trusted_types are its author's list, and are not used)"
            ),
        )
    else:
        try:
            # cloudpickle writes pickles the standard unpickler reads (importing cloudpickle if
            # the model holds functions pickled by value).
            estimator = pickle.loads(data)
        except Exception as exc:
            raise BundleError(
                f"Cannot unpickle {where!r}: {type(exc).__name__}: {_one_line(exc)}", path=where
            ) from exc
    if not callable(getattr(estimator, "predict", None)):
        raise BundleError(
            f"{where!r} holds an object of type {type(estimator).__qualname__}, which has no "
            "predict method; modelkit imports fitted scikit-learn estimators and pipelines.",
            path=where,
        )
    return estimator


def _facts(
    directory: _Directory, document: dict[str, Any], flavor_name: str, flavor: dict[str, Any]
) -> dict[str, Any]:
    """What MLmodel says about where the model came from, for the bundle's metadata."""
    facts: dict[str, Any] = {"flavor": flavor_name}
    python_function = document.get("flavors", {}).get("python_function")
    sections: list[tuple[dict[str, Any], tuple[str, ...]]] = [
        (document, _MODEL_KEYS),
        (flavor, _FLAVOR_KEYS),
    ]
    if isinstance(python_function, dict):
        sections.append((python_function, ("python_version", "predict_fn")))
    for section, keys in sections:
        for key in keys:
            value = section.get(key)
            if value is None or key in facts:
                continue
            if not isinstance(value, str | int | float | bool):
                value = str(value)  # YAML reads an unquoted timestamp as a datetime
            if isinstance(value, str) and len(value) > _MAX_FACT_LENGTH:
                where = directory.file(MLMODEL)
                raise BundleError(
                    f"{where!r}: {key} is {len(value)} characters long; MLflow writes short "
                    "identifiers and versions there.",
                    path=where,
                )
            facts[key] = value
    return facts


def _default_name(label: str) -> str:
    return _NAME.sub("_", Path(label).resolve().name)[:100].lstrip("._-") or "model"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _shown(value: Any) -> str:
    """A value read from the directory, for a message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 100 else f"{text[:97]}..."


# -- the signature ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _MlflowInputs:
    """MLflow's input schema: columns (unnamed ones as ``x0``, ``x1``...), or tensors."""

    columns: tuple[tuple[str, str, bool], ...] = ()  # (name, MLflow type, required)
    positional: bool = False  # the columns are unnamed: an example's are taken by position
    tensors: tuple[TensorSpec, ...] = ()

    def declared(self) -> TabularInputs:
        """The columns as the bundle's signature declares them."""
        return TabularInputs(columns=tuple(_column(*column) for column in self.columns))


def _signature_inputs(directory: _Directory, document: dict[str, Any]) -> _MlflowInputs | None:
    where = directory.file(MLMODEL)
    signature = document.get("signature")
    if signature is None:
        return None
    if not isinstance(signature, dict) or not isinstance(signature.get("inputs"), str):
        raise BundleError(f"{where!r}: signature.inputs is not a JSON string.", path=where)
    try:
        specs = json.loads(signature["inputs"])
    except (ValueError, RecursionError) as exc:
        raise BundleError(
            f"{where!r}: signature.inputs is not valid JSON ({_one_line(exc)}).", path=where
        ) from None
    if not isinstance(specs, list) or not specs or not all(isinstance(s, dict) for s in specs):
        raise BundleError(f"{where!r}: signature.inputs is not a list of specs.", path=where)
    if all(spec.get("type") == "tensor" for spec in specs):
        return _MlflowInputs(tensors=tuple(_tensor(where, i, s) for i, s in enumerate(specs)))
    columns: list[tuple[str | None, str, bool]] = []
    for position, spec in enumerate(specs):
        column_name = spec.get("name")
        if column_name is not None and (not isinstance(column_name, str) or not column_name):
            raise BundleError(
                f"{where!r}: signature.inputs[{position}].name is not a column name.", path=where
            )
        kind = spec.get("type")
        shown = column_name if column_name is not None else f"#{position}"
        if not isinstance(kind, str) or kind not in _COLUMN_TYPES:
            raise BundleError(
                f"{where!r}: input column {_shown(shown)} has MLflow type {_shown(kind)}, which "
                f"modelkit cannot take; it takes {', '.join(_COLUMN_TYPES)}.",
                path=where,
            )
        if column_name is not None and column_name in {c[0] for c in columns}:
            raise BundleError(
                f"{where!r}: input column {_shown(column_name)} appears twice in the signature.",
                path=where,
            )
        columns.append((column_name, kind, spec.get("required", True) is not False))
    unnamed = {name is None for name, _, _ in columns}
    if len(unnamed) > 1:
        raise BundleError(
            f"{where!r}: signature.inputs names some columns and not others (MLflow names all "
            "or none).",
            path=where,
        )
    return _MlflowInputs(
        columns=tuple(
            (name or f"x{position}", kind, required)
            for position, (name, kind, required) in enumerate(columns)
        ),
        positional=unnamed == {True},
    )


def _tensor(where: str, position: int, spec: dict[str, Any]) -> TensorSpec:
    tensor = spec.get("tensor-spec")
    shown = spec.get("name", f"#{position}")
    if not isinstance(tensor, dict) or not isinstance(tensor.get("dtype"), str):
        raise BundleError(
            f"{where!r}: input tensor {_shown(shown)} has no tensor-spec dtype.", path=where
        )
    try:
        dtype = np.dtype(tensor["dtype"])
    except (TypeError, ValueError):
        raise BundleError(
            f"{where!r}: input tensor {_shown(shown)} has dtype {_shown(tensor['dtype'])}, which "
            "is not a numpy dtype.",
            path=where,
        ) from None
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape
    ):
        raise BundleError(
            f"{where!r}: input tensor {_shown(shown)} has a malformed shape.", path=where
        )
    tensor_name = spec.get("name")
    return TensorSpec(
        name=tensor_name if isinstance(tensor_name, str) else "",
        dtype="string" if dtype.kind in "OUS" else dtype.name,
        shape=tuple(None if d == -1 else d for d in shape),
    )


def _sklearn_inputs(
    directory: _Directory, estimator: Any, mlflow_inputs: _MlflowInputs | None, example: Any
) -> tuple[TabularInputs | None, Any]:
    """The declared tabular inputs of a scikit-learn model, and its sample rows.

    Columns, types and dtypes are MLflow's. A column takes a missing value where MLflow calls
    it optional, and where the model takes one (asked on the example, as ``save`` asks).
    """
    from .adapters._joblib import inputs_for

    if mlflow_inputs is None:
        return None, example
    if mlflow_inputs.tensors:
        columns = list(_matrix_columns(directory, mlflow_inputs.tensors))
    else:
        columns = list(mlflow_inputs.declared().columns)
    if example is not None:
        probed = inputs_for(estimator, example, None)[0]
        by_name = {c.name: c for c in probed.columns}
        columns = [
            column.model_copy(
                update={
                    "nullable": column.nullable or by_name[column.name].nullable,
                    # The dtype the example has once cast as MLflow casts it (pandas 3 reads
                    # text as its "str" dtype, not object), when the example agrees.
                    "dtype": by_name[column.name].dtype
                    if by_name[column.name].type == column.type
                    else column.dtype,
                    "missing_marker": by_name[column.name].missing_marker,
                    "dtype_categories": by_name[column.name].dtype_categories,
                }
            )
            if column.name in by_name
            else column
            for column in columns
        ]
    return TabularInputs(columns=tuple(columns)), example


def _column(name: str, kind: str, required: bool) -> ColumnSpec:
    column_type, dtype = _COLUMN_TYPES[kind]
    return ColumnSpec(name=name, type=column_type, dtype=dtype, nullable=not required)


def _matrix_columns(
    directory: _Directory, tensors: tuple[TensorSpec, ...]
) -> tuple[ColumnSpec, ...]:
    """A scikit-learn model fed a 2-D array: one column per feature, as ``save`` names them."""
    tensor = tensors[0]
    shape = tensor.shape or ()
    if len(tensors) != 1 or len(shape) != 2 or not isinstance(shape[1], int):
        where = directory.file(MLMODEL)
        raise BundleError(
            f"{where!r}: a scikit-learn model's tensor input must be one 2-D tensor of a fixed "
            f"width, [-1, n]; MLflow records {[t.model_dump() for t in tensors]}.",
            path=where,
        )
    kind = np.dtype(object if tensor.dtype == "string" else tensor.dtype).kind
    column_type: ColumnType = {"f": "number", "i": "integer", "u": "integer", "b": "boolean"}.get(
        kind, "string"
    )  # type: ignore[assignment]
    dtype = "object" if tensor.dtype == "string" else tensor.dtype
    return tuple(ColumnSpec(name=f"x{j}", type=column_type, dtype=dtype) for j in range(shape[1]))


def _onnx_inputs(
    mlflow_inputs: _MlflowInputs | None, example: Any
) -> tuple[TabularInputs | None, Any]:
    """An ONNX model's declared inputs: MLflow's columns, else the graph's own tensors."""
    if mlflow_inputs is None or mlflow_inputs.tensors:
        return None, None
    return mlflow_inputs.declared(), example


def _outputs(where: str, obj: Any, declared: TabularInputs) -> Outputs:
    """What the model gives: a scikit-learn model's task, or what the ONNX graph declares."""
    if isinstance(obj, bytes):
        from .adapters._onnx import describe_graph

        # Read from the protobuf, not run: the graph's outputs given MLflow's columns.
        return describe_graph(obj, inputs=declared, label=where).signature.outputs
    from ._sklearn import task_of

    return Outputs(task=task_of(obj))


# -- the input example --------------------------------------------------------------------------


def _read_example(
    directory: _Directory, document: dict[str, Any], mlflow_inputs: _MlflowInputs | None
) -> Any:
    """The saved input example as a DataFrame or an array, cast as MLflow's pyfunc casts it."""
    info = document.get("saved_input_example_info")
    if info is None:
        return None
    where = directory.file(MLMODEL)
    if not isinstance(info, dict) or not isinstance(info.get("artifact_path"), str):
        raise BundleError(
            f"{where!r}: saved_input_example_info.artifact_path is not a file name.", path=where
        )
    relative = info["artifact_path"]
    example_file = directory.file(relative)
    text = directory.read(relative, limit=_MAX_EXAMPLE_SIZE, what="the input example")
    try:
        # MLflow writes NaN for a missing number, which strict JSON has not.
        decoded = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BundleError(
            f"{example_file!r} is not valid JSON ({_one_line(exc)}).", path=example_file
        ) from None
    if info.get("params") is not None and isinstance(decoded, dict):
        decoded = decoded.get("inputs")
    kind = info.get("type")
    if kind == "dataframe":
        return _example_frame(
            example_file, decoded, info.get("pandas_orient", "split"), mlflow_inputs
        )
    if kind == "ndarray":
        return _example_array(example_file, decoded, mlflow_inputs)
    logger.warning(
        "Importing %s without its input example: modelkit takes DataFrame and array examples, "
        "not %s.",
        directory.label,
        _shown(kind),
    )
    return None


def _example_frame(
    where: str, decoded: Any, orient: Any, mlflow_inputs: _MlflowInputs | None
) -> Any:
    pandas = require("pandas", extra=_EXTRA, feature=_FEATURE)
    if orient == "split":
        if (
            not isinstance(decoded, dict)
            or not isinstance(decoded.get("data"), list)
            or not isinstance(decoded.get("columns"), list)
            or not all(isinstance(c, str) for c in decoded["columns"])
            or len(set(decoded["columns"])) != len(decoded["columns"])
        ):
            raise BundleError(
                f"{where!r} is not a DataFrame in MLflow's split form ({{'columns': [...], "
                "'data': [[...], ...]}, one name per column).",
                path=where,
            )
        width = len(decoded["columns"])
        rows = decoded["data"]
        bad = next(
            (i for i, row in enumerate(rows) if not isinstance(row, list) or len(row) != width),
            None,
        )
        if bad is not None:
            raise BundleError(
                f"{where!r}: data row {bad} does not hold one value per column ({width}).",
                path=where,
            )
        frame = pandas.DataFrame(rows, columns=decoded["columns"])
    elif (
        orient == "records"
        and isinstance(decoded, list)
        and all(isinstance(r, dict) for r in decoded)
    ):
        frame = pandas.DataFrame.from_records(decoded)
    else:
        raise BundleError(
            f"{where!r}: modelkit reads DataFrame examples in the split or records orient, "
            f"not {_shown(orient)}.",
            path=where,
        )
    if frame.empty:
        raise BundleError(f"{where!r} holds no rows.", path=where)
    if mlflow_inputs is None or not mlflow_inputs.columns:
        return frame
    return _as_mlflow_sees(pandas, frame, mlflow_inputs, where)


def _as_mlflow_sees(pandas: Any, frame: Any, mlflow_inputs: _MlflowInputs, where: str) -> Any:
    """The example as MLflow's pyfunc hands it to the model: the signature's columns in its
    order (others dropped, unnamed ones by position), each cast to its MLflow type."""
    columns = mlflow_inputs.columns
    if mlflow_inputs.positional:
        if len(frame.columns) != len(columns):
            raise BundleError(
                f"{where!r} has {len(frame.columns)} columns; the signature's {len(columns)} "
                "unnamed columns are taken by position.",
                path=where,
            )
        frame = frame.set_axis([name for name, _, _ in columns], axis=1)
    taken = {}
    for column_name, kind, required in columns:
        if column_name in frame.columns:
            taken[column_name] = _cast(pandas, frame[column_name], kind, where)
        elif required:
            raise BundleError(
                f"{where!r} has no column {_shown(column_name)}, which the signature requires.",
                path=where,
            )
        else:  # MLflow leaves an optional column out; the bundle's signature has it, missing
            taken[column_name] = pandas.Series(None, index=frame.index, dtype=object)
    return pandas.DataFrame(taken, index=frame.index)


def _cast(pandas: Any, series: Any, kind: str, where: str) -> Any:
    """A column cast to the dtype of its MLflow type, as MLflow's pyfunc casts it."""
    try:
        if kind == "datetime":
            return pandas.to_datetime(series)
        if kind == "string":
            return series if isinstance(series.dtype, pandas.StringDtype) else series.astype(object)
        if kind == "boolean":
            return series.where(series.isna(), series.astype(bool))
        return series.astype(_COLUMN_TYPES[kind][1])
    except (TypeError, ValueError, OverflowError) as exc:
        raise BundleError(
            f"{where!r}: column {_shown(series.name)} does not hold MLflow type {kind!r} "
            f"({_one_line(exc)}).",
            path=where,
        ) from None


def _example_array(where: str, decoded: Any, mlflow_inputs: _MlflowInputs | None) -> Any:
    dtype = None
    if mlflow_inputs is not None and len(mlflow_inputs.tensors) == 1:
        declared = mlflow_inputs.tensors[0].dtype
        dtype = object if declared == "string" else declared
    try:
        array = np.asarray(decoded, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise BundleError(
            f"{where!r} is not an array of one dtype ({_one_line(exc)}).", path=where
        ) from None
    if array.ndim != 2:
        raise BundleError(
            f"{where!r} holds a {array.ndim}-D array; modelkit takes 2-D array examples (rows of "
            "features).",
            path=where,
        )
    return array
