"""Spark types for a signature: which column types each input takes, and the output's types.

The driver checks and casts the DataFrame's columns with :func:`check_type` before any job runs,
and types the pandas UDF's flat "wire" struct (:func:`wire_type`) and the public output struct
(:func:`output_type`) from the signature, so Spark knows the schema without sampling.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._deps import require
from .._spec import ColumnSpec, Outputs, Signature, TensorSpec

__all__ = [
    "FEATURE",
    "check_type",
    "label_kind",
    "output_type",
    "probability_count",
    "row_rank",
    "wire_type",
]

#: The feature a MissingDependencyError names when pyspark, pyarrow or pandas is missing.
FEATURE = "modelkit.spark"

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


def check_type(spec: ColumnSpec | TensorSpec, data_type: Any) -> tuple[str | None, str | None]:
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
    rank = row_rank(spec)
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


def row_rank(tensor: TensorSpec) -> int:
    """How many axes one row of a batched tensor has."""
    return max(len(tensor.shape or ()) - 1, 0)


def label_kind(outputs: Outputs) -> str:
    """The Spark type of a classifier's labels: ``long``, ``double``, ``boolean`` or ``string``."""
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


def probability_count(outputs: Outputs) -> int:
    """How many probability columns the wire struct carries (none without probabilities)."""
    if outputs.task == "classification" and outputs.has_probabilities and outputs.classes:
        return len(outputs.classes)
    return 0


def _spark_type(kind: str) -> Any:
    types = require("pyspark.sql.types", extra="spark", feature=FEATURE)
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
    types = require("pyspark.sql.types", extra="spark", feature=FEATURE)
    element = types._parse_datatype_string(_TENSOR_KINDS.get(tensor.dtype, "double"))
    for _ in range(row_rank(tensor)):
        element = types.ArrayType(element)
    return element


def wire_type(job: Mapping[str, Any], signature: Signature) -> Any:
    """The pandas UDF's flat struct: ``label``, ``probability_<j>`` / ``value`` / ``tensor_<j>``."""
    types = require("pyspark.sql.types", extra="spark", feature=FEATURE)
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


def output_type(outputs: Outputs, kind: str) -> Any:
    """The public output struct's type; ``kind`` is the labels' (see :func:`label_kind`)."""
    types = require("pyspark.sql.types", extra="spark", feature=FEATURE)
    if outputs.task == "classification":
        return types.StructType(
            [
                types.StructField("label", _spark_type(kind)),
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
