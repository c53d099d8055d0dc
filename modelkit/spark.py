"""Score Spark DataFrames with a bundle: the same model, across a cluster, without rewriting it.

:func:`predict` adds one struct column holding each row's output to a DataFrame; :func:`udf`
gives the same scoring as a column expression for ``select`` and ``withColumn``::

    import modelkit.spark

    scored = modelkit.spark.predict(spark.read.parquet("customers"), "models/churn")
    scored.select("customer_id", "prediction.label", "prediction.probabilities")

How it runs:

- On the driver, the bundle is verified (every artifact hash) and its manifest read, never
  deserialized: the signature gives the output column's type, so Spark knows the schema without
  sampling, and the DataFrame's columns are checked against the inputs before any job runs.
- The task closure carries the bundle's path (or its :meth:`SparkContext.addFile` name) and its
  digest, never the model. Each Python worker loads the bundle once, pinned to that digest, and
  keeps it for its lifetime: a bundle changed after the driver looked at it is refused.
- Scoring is vectorized: Arrow batches of rows (``spark.sql.execution.arrow.maxRecordsPerBatch``,
  10,000 by default) go through :meth:`Model.predict_batch`; the output struct is assembled in the
  JVM from plain columns.

Errors raised on the executors are modelkit errors with self-contained messages; Spark shows them
inside its own exception (``PythonException``, or a ``Py4JJavaError`` / ``SparkException`` whose
text holds the Python traceback).
"""

from __future__ import annotations

import collections
import difflib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ._bundle import normalize_digest, open_bundle
from ._deps import require
from ._signature import ColumnSpec, Outputs, Signature, TabularInputs, TensorInputs, TensorSpec
from .errors import (
    BundleError,
    EnvironmentMismatchError,
    IntegrityError,
    InvalidInputError,
    MissingDependencyError,
    ModelkitError,
)

__all__ = ["ModelUDF", "predict", "udf"]

logger = logging.getLogger("modelkit.spark")

OnError = Literal["raise", "null"]
_ON_ERROR = ("raise", "null")
_FEATURE = "modelkit.spark"
# How many models one Python worker keeps loaded; a job rarely scores with more than a few.
_MAX_CACHED_MODELS = 8


# --------------------------------------------------------------------------------------------
# The driver side
# --------------------------------------------------------------------------------------------


def predict(
    df: Any,
    path: str | os.PathLike[str],
    *,
    output_col: str = "prediction",
    on_error: OnError = "raise",
    error_col: str = "prediction_error",
    sha256: str | None = None,
    ship: bool = False,
    adapter_options: Mapping[str, Any] | None = None,
) -> Any:
    """Score a Spark DataFrame with a bundle, adding one struct column with each row's output.

    The input columns are matched by name to the model's signature (other columns are ignored
    and kept), and checked before any job runs. The result is lazy, as any DataFrame: the model
    runs when an action (``write``, ``count``, ``collect``) needs the output column.

    The output column is typed from the signature: ``struct<label, probabilities:
    map<string,double>>`` for a classifier (``label`` has the classes' type; ``probabilities``
    is null when the model gives none), ``struct<value: double>`` for a regressor, and a struct
    of one array (or number) per output for a tensor model.

    Args:
        df: the DataFrame to score.
        path: the bundle (directory or ``.zip``, or a bare ``.onnx`` file). Without ``ship``,
            every executor must be able to read this path (local mode, a shared file system).
        output_col: the name of the new output column.
        on_error: ``"raise"`` fails the job on the first row that does not fit the signature,
            naming its partition and row; ``"null"`` gives such rows a null output and the
            reason in ``error_col``, and scores the others.
        error_col: the column holding each row's error (null when scored), with
            ``on_error="null"``.
        sha256: the digest the bundle must have (see :func:`modelkit.digest`).
        ship: copy the bundle to every executor with ``SparkContext.addFile``, for clusters
            whose executors cannot read the driver's disk. The bundle's file name must be unique
            among the files the session ships.
        adapter_options: options for the format's runtime on the executors, such as
            ``{"intra_op_num_threads": 1}`` for onnx.

    Returns:
        ``df`` with ``output_col`` (and ``error_col``) added.

    Raises:
        InvalidInputError: a column the model needs is missing or has a type it cannot take
            (``err.errors`` lists every problem).
        BundleError: the bundle cannot be read, or its model cannot run on Spark.
        IntegrityError: the bundle does not match its manifest, or ``sha256``.
        MissingDependencyError: pyspark, pyarrow or pandas is not installed on the driver.
        ValueError: ``output_col`` or ``error_col`` already names a column, or a bad option.
    """
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be 'raise' or 'null', got {on_error!r}")
    columns = list(df.columns)
    taken = [name for name in (output_col, error_col if on_error == "null" else None) if name]
    for name in taken:
        if name in columns:
            raise ValueError(
                f"The DataFrame already has a column {name!r}; pass another name "
                f"(output_col= or error_col=) so that no input column is replaced."
            )
    if on_error == "null" and error_col == output_col:
        raise ValueError("output_col and error_col must differ.")
    scorer = _Scorer.prepare(
        path,
        sha256=sha256,
        ship=ship,
        spark_context=_spark_context(df) if ship else None,
        adapter_options=adapter_options,
        with_errors=on_error == "null",
    )
    inputs = scorer.input_columns(df)
    wire = scorer.wire_column(inputs)
    output = scorer.output_column(wire)
    if on_error == "null":
        return df.select("*", output.alias(output_col), wire["error"].alias(error_col))
    return df.withColumn(output_col, output)


def udf(
    path: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    ship: bool = False,
    adapter_options: Mapping[str, Any] | None = None,
) -> ModelUDF:
    """Scoring with a bundle as a column expression, for ``select`` and ``withColumn``.

    Call the result with no argument to read the columns named as the signature's inputs, or
    with one column per input, in signature order::

        score = modelkit.spark.udf("models/iris")
        df.withColumn("prediction", score())
        df.select(score("sl", "sw", "pl", "pw").label.alias("species"))

    Unlike :func:`predict`, a column expression knows no DataFrame, so column types are checked
    by the validator on the executors rather than on the driver; a bad row fails the job.

    Args:
        path: the bundle; see :func:`predict`.
        sha256: the digest the bundle must have.
        ship: copy the bundle to the executors with ``SparkContext.addFile`` (needs an active
            Spark session).
        adapter_options: options for the format's runtime on the executors.

    Raises:
        BundleError, IntegrityError, MissingDependencyError: as :func:`predict`.
    """
    context = None
    if ship:
        pyspark = require("pyspark", extra="spark", feature=_FEATURE)
        context = pyspark.SparkContext._active_spark_context
        if context is None:
            raise ModelkitError(
                "modelkit.spark.udf(ship=True) needs an active Spark session to ship the bundle "
                "with; create the session first."
            )
    scorer = _Scorer.prepare(
        path,
        sha256=sha256,
        ship=ship,
        spark_context=context,
        adapter_options=adapter_options,
        with_errors=False,
    )
    return ModelUDF(scorer)


class ModelUDF:
    """A bundle as a Spark column function; made by :func:`udf`.

    Attributes:
        signature: the model's signature, as the driver read it from the manifest.
        digest: the bundle's digest; executors load only a bundle with this digest.
        return_type: the Spark type of the column it gives.
    """

    def __init__(self, scorer: _Scorer) -> None:
        self._scorer = scorer
        self.signature: Signature = scorer.signature
        self.digest: str = scorer.digest

    @property
    def return_type(self) -> Any:
        """The Spark ``StructType`` of each row's output."""
        return _output_type(self.signature.outputs, self._scorer.label_kind)

    def __call__(self, *columns: Any) -> Any:
        """The output column for these input columns (names or ``Column``), in signature order.

        Raises:
            TypeError: the number of columns differs from the signature's inputs.
        """
        functions = require("pyspark.sql.functions", extra="spark", feature=_FEATURE)
        names = self.signature.names
        if not columns:
            columns = tuple(_column_name(name) for name in names)
        if len(columns) != len(names):
            raise TypeError(
                f"This model takes {len(names)} input columns ({', '.join(names)}); "
                f"got {len(columns)}. Pass none to read the columns of those names."
            )
        inputs = [
            (functions.col(column) if isinstance(column, str) else column).alias(name)
            for column, name in zip(columns, names, strict=True)
        ]
        return self._scorer.output_column(self._scorer.wire_column(inputs))

    def __repr__(self) -> str:
        return f"<modelkit.spark.ModelUDF {self._scorer.label!r} {self.digest[:19]}...>"


def _spark_context(df: Any) -> Any:
    try:
        return df.sparkSession.sparkContext
    except Exception as exc:  # Spark Connect sessions have no SparkContext
        raise ModelkitError(
            "ship=True copies the bundle with SparkContext.addFile, which this session does not "
            f"offer ({type(exc).__name__}). Put the bundle on storage every executor can read "
            "and pass its path instead."
        ) from exc


def _column_name(name: str) -> str:
    """A column reference that takes ``name`` literally (dots and backticks included)."""
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class _Scorer:
    """What the driver knows about a bundle, and the column expressions that score with it."""

    label: str
    signature: Signature
    name: str
    version: str
    digest: str
    label_kind: str
    job: dict[str, Any]

    @classmethod
    def prepare(
        cls,
        path: str | os.PathLike[str],
        *,
        sha256: str | None,
        ship: bool,
        spark_context: Any,
        adapter_options: Mapping[str, Any] | None,
        with_errors: bool,
    ) -> _Scorer:
        for module in ("pyspark", "pyarrow", "pandas"):
            require(module, extra="spark", feature=_FEATURE)
        if not isinstance(path, str | os.PathLike):
            raise BundleError(
                f"modelkit.spark needs a path to the bundle that executors can read (or ship), "
                f"got a {type(path).__name__}."
            )
        location = os.fspath(path)
        # Verified here, on the driver, but not deserialized: only the manifest is needed.
        opened = open_bundle(location)
        if opened.kind == "pickle":
            raise BundleError(
                f"modelkit.spark scores bundles (and bare .onnx files), not the bare pickle "
                f"{location!r}; save the model as a bundle with modelkit.save().",
                path=location,
            )
        if opened.bundle is not None:
            manifest = opened.bundle.manifest
            signature, name, version = manifest.signature, manifest.name, manifest.version
            digest = opened.bundle.digest
        else:
            from ._api import load

            model = load(location, adapter_options=adapter_options)
            signature, name, version = model.signature, model.name, model.version
            digest = model.digest or ""
        if sha256 is not None and normalize_digest(sha256) != digest:
            raise IntegrityError(
                f"Bundle {location!r} has digest {digest}, not the pinned "
                f"{normalize_digest(sha256)}.",
                path=location,
                expected=normalize_digest(sha256),
                actual=digest,
            )
        _check_supported(signature, location)
        label_kind = _label_kind(signature.outputs)
        shipped = _ship(spark_context, location) if ship else None
        job = {
            "path": location,
            "shipped": shipped,
            "digest": digest,
            "name": name,
            "version": version,
            "task": signature.outputs.task,
            "label_kind": label_kind,
            "n_probabilities": _probability_count(signature.outputs),
            "tensor_inputs": [(t.name, _row_rank(t)) for t in signature.tensors],
            "tensor_outputs": [(t.name, _row_rank(t)) for t in signature.outputs.tensors or ()],
            "with_errors": with_errors,
            "adapter_options": dict(adapter_options or {}),
        }
        return cls(location, signature, name, version, digest, label_kind, job)

    # -- columns ------------------------------------------------------------------------------

    def input_columns(self, df: Any) -> list[Any]:
        """The DataFrame's columns for the signature's inputs, checked and cast; no job runs."""
        functions = require("pyspark.sql.functions", extra="spark", feature=_FEATURE)
        fields = {field.name: field for field in df.schema.fields}
        problems: list[dict[str, Any]] = []
        columns = []
        specs: Sequence[ColumnSpec | TensorSpec] = self.signature.columns or self.signature.tensors
        for spec in specs:
            field = fields.get(spec.name)
            if field is None:
                problems.append(_missing(spec.name, list(fields)))
                continue
            cast, problem = _check_type(spec, field.dataType)
            if problem is not None:
                problems.append({"field": spec.name, "index": None, "message": problem})
                continue
            column = functions.col(_column_name(spec.name))
            columns.append((column if cast is None else column.cast(cast)).alias(spec.name))
        if problems:
            text = problems[0]["message"]
            if len(problems) > 1:
                text += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
            raise InvalidInputError(
                f"Cannot score this DataFrame with model {self.name!r} {self.version}: {text}.",
                field=problems[0]["field"],
                errors=problems,
            )
        return columns

    def wire_column(self, inputs: Sequence[Any]) -> Any:
        """The pandas UDF's output: a flat struct of plain columns (label, probability_0, ...)."""
        functions = require("pyspark.sql.functions", extra="spark", feature=_FEATURE)
        pandas = require("pandas", extra="spark", feature=_FEATURE)
        scoring = _executor_function(self.job)
        # Spark infers the UDF kind (iterator of DataFrames -> iterator of DataFrames) from these.
        frame: Any = pandas.DataFrame
        scoring.__annotations__ = {"batches": Iterator[frame], "return": Iterator[frame]}
        wire_udf = functions.pandas_udf(scoring, _wire_type(self.job, self.signature))
        return wire_udf(functions.struct(*inputs))

    def output_column(self, wire: Any) -> Any:
        """The public output struct, assembled in the JVM from the wire columns."""
        functions = require("pyspark.sql.functions", extra="spark", feature=_FEATURE)
        outputs = self.signature.outputs
        if outputs.task == "classification":
            if outputs.has_probabilities and outputs.classes:
                pairs = []
                for j, cls in enumerate(outputs.classes):
                    pairs += [functions.lit(str(cls)), wire[f"probability_{j}"]]
                probabilities = functions.create_map(*pairs)
            else:
                probabilities = functions.lit(None).cast("map<string,double>")
            fields = [wire["label"].alias("label"), probabilities.alias("probabilities")]
        elif outputs.task == "regression":
            fields = [wire["value"].alias("value")]
        else:
            fields = [
                wire[f"tensor_{j}"].alias(tensor.name)
                for j, tensor in enumerate(outputs.tensors or ())
            ]
        output = functions.struct(*fields)
        if self.job["with_errors"]:
            output = functions.when(wire["error"].isNull(), output)
        return output


def _check_supported(signature: Signature, label: str) -> None:
    if isinstance(signature.inputs, TabularInputs | TensorInputs) and signature.outputs.task in (
        "classification",
        "regression",
        "tensor",
    ):
        if isinstance(signature.inputs, TensorInputs):
            for tensor in signature.inputs.tensors:
                if not tensor.has_batch_axis:
                    raise BundleError(
                        f"modelkit.spark cannot score {label!r}: its input {tensor.name!r} has "
                        f"no batch axis (shape {list(tensor.shape or ())}), so rows cannot be "
                        "stacked into one call.",
                        path=label,
                    )
        for tensor in signature.outputs.tensors or ():
            if tensor.shape is None or not tensor.has_batch_axis:
                raise BundleError(
                    f"modelkit.spark cannot score {label!r}: its output {tensor.name!r} does not "
                    "declare a batch axis, so its type per row is unknown.",
                    path=label,
                )
        return
    raise BundleError(
        f"modelkit.spark scores models with tabular or tensor inputs and classification, "
        f"regression or tensor outputs; {label!r} is a {signature.kind} model with "
        f"{signature.outputs.task} outputs. Score it with predict_batch() inside mapInPandas.",
        path=label,
    )


def _ship(context: Any, location: str) -> str:
    """Copy the bundle to the executors; return the name ``SparkFiles.get`` finds it by."""
    path = Path(location).resolve()
    name = path.name
    uri = path.as_uri()
    listed = [str(entry) for entry in getattr(context, "listFiles", [])]
    clash = [entry for entry in listed if entry.rstrip("/").rsplit("/", 1)[-1] == name]
    if clash and all(entry.rstrip("/") != uri.rstrip("/") for entry in clash):
        raise BundleError(
            f"Cannot ship {location!r}: this Spark session already ships another file named "
            f"{name!r} ({clash[0]}). Give the bundle a unique name, such as churn-1.4.0.",
            path=location,
        )
    if not clash:
        context.addFile(str(path), recursive=path.is_dir())
    return name


def _missing(name: str, present: list[str]) -> dict[str, Any]:
    folded = [c for c in present if c.lower() == name.lower()]
    close = folded or difflib.get_close_matches(name, present, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    shown = ", ".join(repr(c) for c in present[:8]) + (", ..." if len(present) > 8 else "")
    return {
        "field": name,
        "index": None,
        "message": f"column {name!r} is missing (the DataFrame has {shown}).{hint}".rstrip("."),
    }


_INTEGRAL = ("ByteType", "ShortType", "IntegerType", "LongType")
_NUMERIC = (*_INTEGRAL, "FloatType", "DoubleType", "DecimalType")
_STRING = ("StringType", "VarcharType", "CharType")
_TIMESTAMP = ("TimestampType", "TimestampNTZType", "DateType")
_SPARK_NAMES = {
    "number": "byte, short, int, long, float, double or decimal",
    "integer": "byte, short, int or long",
    "boolean": "boolean",
    "string": "string",
    "datetime": "timestamp, timestamp_ntz or date",
}
_ARTICLES = {"number": "a", "integer": "an", "boolean": "a", "string": "a", "datetime": "a"}
_CASTS = {
    "number": "double",
    "integer": "long",
    "boolean": "boolean",
    "string": "string",
    "datetime": "timestamp",
}


def _check_type(spec: ColumnSpec | TensorSpec, data_type: Any) -> tuple[str | None, str | None]:
    """The cast to apply to a column, or the problem with its type."""
    if isinstance(spec, ColumnSpec):
        kind = spec.type
        accepted = {
            "number": _NUMERIC,
            "integer": _INTEGRAL,
            "boolean": ("BooleanType",),
            "string": _STRING,
            "datetime": _TIMESTAMP,
        }[kind]
        if type(data_type).__name__ in accepted:
            return _CASTS[kind], None
        return None, (
            f"column {spec.name!r} is {data_type.simpleString()}, but the model takes "
            f"{_ARTICLES[kind]} {kind} (Spark {_SPARK_NAMES[kind]}); cast it first, e.g. "
            f"df.withColumn({spec.name!r}, df[{spec.name!r}].cast({_CASTS[kind]!r}))"
        )
    rank = _row_rank(spec)
    element = data_type
    for _ in range(rank):
        if type(element).__name__ != "ArrayType":
            break
        element = element.elementType
    else:
        name = type(element).__name__
        if spec.dtype == "string" and name in _STRING:
            return None, None
        if spec.dtype != "string" and (name in _NUMERIC or name == "BooleanType"):
            return None, None
    wanted = "array<" * rank + ("string" if spec.dtype == "string" else "number") + ">" * rank
    return None, (
        f"column {spec.name!r} is {data_type.simpleString()}, but the model's input "
        f"{spec.name!r} takes {wanted} per row ({spec.dtype}, shape "
        f"{list(spec.shape or ())})"
    )


def _row_rank(tensor: TensorSpec) -> int:
    """How many axes one row of a batched tensor has."""
    return max(len(tensor.shape or ()) - 1, 0)


def _label_kind(outputs: Outputs) -> str:
    if outputs.task != "classification" or not outputs.classes:
        return "string"
    kinds = {type(c) for c in outputs.classes}
    if kinds == {bool}:
        return "boolean"
    if kinds == {int}:
        return "long"
    if kinds <= {int, float}:
        return "double"
    return "string"


def _probability_count(outputs: Outputs) -> int:
    if outputs.task == "classification" and outputs.has_probabilities and outputs.classes:
        return len(outputs.classes)
    return 0


def _spark_type(kind: str) -> Any:
    types = require("pyspark.sql.types", extra="spark", feature=_FEATURE)
    return {
        "string": types.StringType(),
        "long": types.LongType(),
        "double": types.DoubleType(),
        "boolean": types.BooleanType(),
    }[kind]


_TENSOR_KINDS = {
    "float64": "double",
    "float32": "float",
    "float16": "float",
    "int64": "long",
    "int32": "int",
    "int16": "short",
    "int8": "byte",
    "uint8": "short",
    "uint16": "int",
    "uint32": "long",
    "bool": "boolean",
    "string": "string",
}


def _tensor_type(tensor: TensorSpec) -> Any:
    types = require("pyspark.sql.types", extra="spark", feature=_FEATURE)
    element = types._parse_datatype_string(_TENSOR_KINDS.get(tensor.dtype, "double"))
    for _ in range(_row_rank(tensor)):
        element = types.ArrayType(element)
    return element


def _wire_type(job: Mapping[str, Any], signature: Signature) -> Any:
    types = require("pyspark.sql.types", extra="spark", feature=_FEATURE)
    outputs = signature.outputs
    fields = []
    if outputs.task == "classification":
        fields.append(types.StructField("label", _spark_type(job["label_kind"])))
        fields += [
            types.StructField(f"probability_{j}", types.DoubleType())
            for j in range(job["n_probabilities"])
        ]
    elif outputs.task == "regression":
        fields.append(types.StructField("value", types.DoubleType()))
    else:
        fields += [
            types.StructField(f"tensor_{j}", _tensor_type(tensor))
            for j, tensor in enumerate(outputs.tensors or ())
        ]
    if job["with_errors"]:
        fields.append(types.StructField("error", types.StringType()))
    return types.StructType(fields)


def _output_type(outputs: Outputs, label_kind: str) -> Any:
    types = require("pyspark.sql.types", extra="spark", feature=_FEATURE)
    if outputs.task == "classification":
        return types.StructType(
            [
                types.StructField("label", _spark_type(label_kind)),
                types.StructField(
                    "probabilities", types.MapType(types.StringType(), types.DoubleType())
                ),
            ]
        )
    if outputs.task == "regression":
        return types.StructType([types.StructField("value", types.DoubleType())])
    return types.StructType(
        [types.StructField(t.name, _tensor_type(t)) for t in outputs.tensors or ()]
    )


# --------------------------------------------------------------------------------------------
# What travels to the executors
# --------------------------------------------------------------------------------------------


def _executor_function(job: dict[str, Any]) -> Callable[[Any], Any]:
    """The function Spark ships to the executors: it holds the job description, no model.

    It is a closure, so cloudpickle sends it by value and unpickling it needs neither modelkit
    nor this module; the job's holder checks the executor's Python first (see _ExecutorCheck).
    """
    checked: Any = _ExecutorCheck(job)

    def score_partitions(batches: Any) -> Any:
        # On the executor, `checked` is the job dict the check returned while unpickling.
        from modelkit.spark import _score_partition

        return _score_partition(checked, batches)

    return score_partitions


class _ExecutorCheck:
    """Holds the job on the driver; unpickles as the job dict, after checking the executor.

    A Python worker without pyarrow, pandas or modelkit would otherwise fail with an import
    traceback from deep inside Spark; this check runs first, while the task's function is being
    unpickled, and names what to install.
    """

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job

    def __reduce__(self) -> tuple[Callable[[dict[str, Any]], dict[str, Any]], tuple[Any, ...]]:
        return (_make_executor_check(), (self.job,))


def _make_executor_check() -> Callable[[dict[str, Any]], dict[str, Any]]:
    # A closure, so that it too travels by value: it must run where modelkit may be missing.
    def check_executor(job: dict[str, Any]) -> dict[str, Any]:
        import importlib
        import socket
        import sys

        missing = []
        for module in ("pandas", "pyarrow", "modelkit"):
            try:
                importlib.import_module(module)
            except ImportError:
                missing.append(module)
        if missing:
            raise RuntimeError(
                f"modelkit.spark: the Python of a Spark executor ({sys.executable} on "
                f"{socket.gethostname()}) cannot import {', '.join(missing)}, needed to score "
                f"with model {job['name']!r}. Install modelkit with its 'spark' extra (pyspark, "
                "pyarrow, pandas) and the model's own libraries in the executors' Python "
                "environment, or ship a packed environment with spark-submit --archives and "
                "point spark.pyspark.python at it."
            )
        return job

    return check_executor


# --------------------------------------------------------------------------------------------
# The executor side
# --------------------------------------------------------------------------------------------

_models: collections.OrderedDict[tuple[str, str], Any] = collections.OrderedDict()
_models_lock = threading.Lock()
#: Seconds each bundle took to load in this process, by digest (benchmarks read it).
load_seconds: dict[str, float] = {}


def _executor_model(job: Mapping[str, Any]) -> Any:
    """The job's model, loaded once per Python worker process and cached by digest (and the
    runtime options it was loaded with)."""
    digest = (job["digest"], repr(sorted(job["adapter_options"].items())))
    with _models_lock:
        model = _models.get(digest)
        if model is not None:
            _models.move_to_end(digest)
            return model
        started = time.perf_counter()
        model = _load_on_executor(job)
        load_seconds[job["digest"]] = time.perf_counter() - started
        logger.info(
            "modelkit.spark: loaded %r %s (%s) in %.3f s in worker %d on %s",
            job["name"],
            job["version"],
            job["digest"],
            load_seconds[job["digest"]],
            os.getpid(),
            socket.gethostname(),
        )
        _models[digest] = model
        while len(_models) > _MAX_CACHED_MODELS:
            _models.popitem(last=False)
        return model


def _load_on_executor(job: Mapping[str, Any]) -> Any:
    from ._api import load

    host = socket.gethostname()
    where = f"Spark executor {host}"
    location = job["path"]
    if job["shipped"] is not None:
        from pyspark import SparkFiles

        location = SparkFiles.get(job["shipped"])
    try:
        return load(location, sha256=job["digest"], adapter_options=job["adapter_options"])
    except IntegrityError as exc:
        raise IntegrityError(
            f"modelkit.spark: the bundle {location!r} on {where} is not the one the driver "
            f"checked ({job['digest']}): {exc} Give every executor the same bundle, and do not "
            "change it while jobs use it (a shipped file cannot be replaced within a session: "
            "ship a new version under a new name).",
            path=location,
            expected=exc.expected,
            actual=exc.actual,
        ) from None
    except BundleError as exc:
        raise BundleError(
            f"modelkit.spark: {where} cannot read the bundle {location!r}: {exc} Put the bundle "
            "where every executor can read it (a shared or distributed file system), or pass "
            "ship=True to copy it to the executors with SparkContext.addFile.",
            path=location,
        ) from None
    except MissingDependencyError as exc:
        raise MissingDependencyError(
            f"modelkit.spark: {where} cannot load model {job['name']!r}: {exc} Install it in "
            "the executors' Python environment.",
            name=exc.name,
            extra=exc.extra,
        ) from None
    except EnvironmentMismatchError as exc:
        raise EnvironmentMismatchError(
            f"modelkit.spark: {where} cannot load model {job['name']!r}: {exc}",
            mismatches=exc.mismatches,
        ) from None


def _partition_id() -> int | None:
    from pyspark import TaskContext

    context = TaskContext.get()
    return None if context is None else int(context.partitionId())


def _score_partition(job: Mapping[str, Any], batches: Iterator[Any]) -> Iterator[Any]:
    """Score one partition's Arrow batches; runs in the Python worker."""
    model = _executor_model(job)
    partition = _partition_id()
    offset = 0
    for frame in batches:
        if job["with_errors"]:
            yield _score_tolerant(job, model, frame)
        else:
            try:
                yield _wire_frame(job, model, frame)
            except InvalidInputError as exc:
                raise _positioned(job, exc, partition, offset, len(frame)) from None
        offset += len(frame)


_RECORD_PREFIX = re.compile(r"^Record \d+: ")


def _problem_text(problem: Mapping[str, Any]) -> str:
    return _RECORD_PREFIX.sub("", str(problem.get("message", ""))).rstrip(".")


def _positioned(
    job: Mapping[str, Any], exc: InvalidInputError, partition: int | None, offset: int, size: int
) -> InvalidInputError:
    """The batch's error, with the row's position in the partition instead of in the batch."""
    problems: list[dict[str, Any]] = []
    for problem in exc.errors:
        index = problem.get("index")
        problems.append({**problem, "index": offset + index if isinstance(index, int) else None})
    first = problems[0]
    part = "" if partition is None else f"partition {partition}, "
    if first["index"] is not None:
        where = f"{part}row {first['index']} of the partition"
    else:
        where = f"{part}rows {offset} to {offset + size - 1} of the partition"
    more = len(problems) - 1
    text = _problem_text(exc.errors[0]) or str(exc).rstrip(".")
    if more:
        text += f" (and {more} more problem{'s' if more > 1 else ''} in that batch)"
    return InvalidInputError(
        f"modelkit.spark: model {job['name']!r} {job['version']} cannot score {where}: {text}. "
        "Fix or filter such rows, or pass on_error='null' to modelkit.spark.predict() to score "
        "the other rows and record each bad row's error.",
        field=first.get("field"),
        index=first["index"],
        errors=problems,
    )


def _model_inputs(job: Mapping[str, Any], frame: Any) -> Any:
    if not job["tensor_inputs"]:
        return frame
    return {name: _stack(frame[name].to_numpy(), rank) for name, rank in job["tensor_inputs"]}


def _stack(values: np.ndarray, rank: int) -> np.ndarray:
    """Rows of (nested) arrays, as Arrow gives them to pandas, as one array."""
    if rank == 0:
        return values
    if len(values) == 0:
        return np.asarray(values)
    return np.stack([_stack(np.asarray(v, dtype=object), rank - 1) for v in values]).astype(
        _common_dtype(values, rank)
    )


def _common_dtype(values: np.ndarray, rank: int) -> Any:
    item: Any = values[0]
    for _ in range(rank):
        item = item[0] if len(item) else 0.0
    return np.asarray(item).dtype


def _wire_frame(job: Mapping[str, Any], model: Any, frame: Any) -> Any:
    """The wire columns (label, probability_j / value / tensor_j) for one batch."""
    import pandas

    length = len(frame)
    task = job["task"]
    columns: dict[str, Any] = {}
    if length == 0:
        return _empty_wire(job)
    predictions = model.predict_batch(_model_inputs(job, frame))
    if task == "classification":
        columns["label"] = _labels(job["label_kind"], predictions["label"])
        if job["n_probabilities"]:
            probabilities = np.asarray(predictions["probabilities"], dtype=np.float64)
            for j in range(job["n_probabilities"]):
                columns[f"probability_{j}"] = probabilities[:, j]
    elif task == "regression":
        values = np.asarray(predictions["value"], dtype=np.float64)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1:
            raise ModelkitError(
                f"modelkit.spark: model {job['name']!r} gives {values.shape[1:]} values per row; "
                "modelkit.spark scores regressors with one value per row. Score it with "
                "predict_batch() inside mapInPandas."
            )
        columns["value"] = values
    else:
        for j, (name, rank) in enumerate(job["tensor_outputs"]):
            array = np.asarray(predictions[name])
            columns[f"tensor_{j}"] = array if rank == 0 else _rows(array, rank)
    if job["with_errors"]:
        columns["error"] = np.full(length, None, dtype=object)
    return pandas.DataFrame(columns)


def _rows(array: np.ndarray, rank: int) -> np.ndarray:
    """One (nested) list per row, as Arrow takes arrays from pandas."""
    rows = np.empty(len(array), dtype=object)
    rows[:] = list(array) if rank == 1 else array.tolist()
    return rows


def _labels(kind: str, labels: Any) -> np.ndarray:
    array = np.asarray(labels)
    if kind == "long":
        return array.astype(np.int64)
    if kind == "double":
        return array.astype(np.float64)
    if kind == "boolean":
        return array.astype(bool)
    if array.dtype == object and all(type(v) is str for v in array.tolist()):
        return array
    strings = np.empty(len(array), dtype=object)
    strings[:] = [str(v) for v in array.tolist()]
    return strings


_EMPTY_DTYPES = {"string": object, "long": np.int64, "double": np.float64, "boolean": bool}


def _empty_wire(job: Mapping[str, Any], length: int = 0) -> Any:
    """Wire columns of the right dtypes, all placeholders (rows whose output will be null)."""
    import pandas

    columns: dict[str, Any] = {}
    if job["task"] == "classification":
        columns["label"] = np.zeros(length, dtype=_EMPTY_DTYPES[job["label_kind"]])
        if job["label_kind"] == "string":
            columns["label"][:] = ""
        for j in range(job["n_probabilities"]):
            columns[f"probability_{j}"] = np.zeros(length)
    elif job["task"] == "regression":
        columns["value"] = np.zeros(length)
    else:
        for j, _ in enumerate(job["tensor_outputs"]):
            columns[f"tensor_{j}"] = np.full(length, None, dtype=object)
    if job["with_errors"]:
        columns["error"] = np.full(length, None, dtype=object)
    return pandas.DataFrame(columns)


def _score_tolerant(job: Mapping[str, Any], model: Any, frame: Any) -> Any:
    """Score a batch in one call; only if it fails, set the rows at fault aside and retry.

    The validator names the rows it refuses (up to a cap per call), so most batches with bad
    rows take a few calls; when an error names no row, the rows are bisected.
    """
    length = len(frame)
    errors: dict[int, list[str]] = {}
    parts: list[tuple[np.ndarray, Any]] = []
    pending = [np.arange(length)]
    while pending:
        rows = pending.pop()
        part = frame if len(rows) == length else frame.iloc[rows].reset_index(drop=True)
        try:
            parts.append((rows, _wire_frame(job, model, part)))
            continue
        except InvalidInputError as exc:
            named: dict[int, list[str]] = {}
            for problem in exc.errors:
                index = problem.get("index")
                if isinstance(index, int) and 0 <= index < len(rows):
                    named.setdefault(index, []).append(_problem_text(problem))
            if len(rows) == 1 and not named:
                named[0] = [_problem_text(exc.errors[0]) or str(exc).rstrip(".")]
        if named:
            for index, texts in named.items():
                errors.setdefault(int(rows[index]), []).extend(texts)
            rest = np.delete(rows, list(named))
            if len(rest):
                pending.append(rest)
        else:
            half = len(rows) // 2
            pending += [rows[half:], rows[:half]]
    if not errors and len(parts) == 1:
        return parts[0][1]
    wire = _empty_wire(job, length)
    for rows, scored in parts:
        for name in scored.columns:
            values = wire[name].to_numpy(copy=True)
            values[rows] = scored[name].to_numpy()
            wire[name] = values
    messages = np.full(length, None, dtype=object)
    for row, texts in errors.items():
        messages[row] = "; ".join(texts)
    wire["error"] = messages
    return wire
