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

# The package's modules: _plan (driver: checks, column expressions, shipping), _types (signature
# to Spark types) and _executor (what runs in the Python workers: loading, scoring partitions).

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .._deps import require
from .._spec import Signature
from ..errors import ModelkitError
from ._executor import load_seconds as load_seconds  # public: benchmarks read it
from ._plan import Scorer, column_name
from ._types import FEATURE, output_type

__all__ = ["ModelUDF", "predict", "udf"]

OnError = Literal["raise", "null"]
_ON_ERROR = ("raise", "null")


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
    trusted_types: Sequence[str] | None = None,
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
            ``{"intra_op_num_threads": 0}`` for onnx (a thread per core).
        trusted_types: for a skops bundle, the types the executors may build beyond skops'
            defaults, as :func:`modelkit.load` takes them.

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
    scorer = Scorer.prepare(
        path,
        sha256=sha256,
        ship=ship,
        spark_context=_spark_context(df) if ship else None,
        adapter_options=adapter_options,
        trusted_types=trusted_types,
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
    trusted_types: Sequence[str] | None = None,
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
        trusted_types: for a skops bundle, the types the executors may build beyond skops'
            defaults.

    Raises:
        BundleError, IntegrityError, MissingDependencyError: as :func:`predict`.
    """
    context = None
    if ship:
        pyspark = require("pyspark", extra="spark", feature=FEATURE)
        context = pyspark.SparkContext._active_spark_context
        if context is None:
            raise ModelkitError(
                "modelkit.spark.udf(ship=True) needs an active Spark session to ship the bundle "
                "with; create the session first."
            )
    scorer = Scorer.prepare(
        path,
        sha256=sha256,
        ship=ship,
        spark_context=context,
        adapter_options=adapter_options,
        trusted_types=trusted_types,
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

    def __init__(self, scorer: Scorer) -> None:
        self._scorer = scorer
        self.signature: Signature = scorer.signature
        self.digest: str = scorer.digest

    @property
    def return_type(self) -> Any:
        """The Spark ``StructType`` of each row's output."""
        return output_type(self.signature.outputs, self._scorer.label_kind)

    def __call__(self, *columns: Any) -> Any:
        """The output column for these input columns (names or ``Column``), in signature order.

        Raises:
            TypeError: the number of columns differs from the signature's inputs.
        """
        functions = require("pyspark.sql.functions", extra="spark", feature=FEATURE)
        names = self.signature.names
        if not columns:
            columns = tuple(column_name(name) for name in names)
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
