"""The driver's side of modelkit.spark: read the bundle, check the DataFrame, build the columns.

:class:`Scorer` verifies the bundle and reads its manifest without deserializing the model,
checks the DataFrame's columns against the signature before any job runs, ships the bundle when
asked, and builds the column expressions: the pandas UDF that scores on the executors (see
``_executor``) and the public output struct assembled in the JVM from its plain columns.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._api import type_names
from .._bundle import check_pin, open_bundle
from .._deps import require
from .._manifest import normalize_digest
from .._spec import ColumnSpec, Signature, TabularInputs, TensorInputs, TensorSpec
from ..errors import BundleError, InvalidInputError
from ._executor import executor_function
from ._types import FEATURE, check_type, label_kind, probability_count, row_rank, wire_type

__all__ = ["Scorer", "column_name"]


def column_name(name: str) -> str:
    """A column reference that takes ``name`` literally (dots and backticks included)."""
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class Scorer:
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
        trusted_types: Sequence[str] | None,
        with_errors: bool,
    ) -> Scorer:
        """Verify the bundle and describe the job for the executors, before any job runs.

        Raises:
            BundleError, IntegrityError, MissingDependencyError: as :func:`modelkit.spark.predict`.
        """
        for module in ("pyspark", "pyarrow", "pandas"):
            require(module, extra="spark", feature=FEATURE)
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
            from .._api import load

            model = load(location, adapter_options=adapter_options, trusted_types=trusted_types)
            signature, name, version = model.signature, model.name, model.version
            digest = model.digest or ""
        check_pin(location, digest, None if sha256 is None else normalize_digest(sha256))
        _check_supported(signature, location)
        kind = label_kind(signature.outputs)
        shipped = _ship(spark_context, location) if ship else None
        job = {
            "path": location,
            "shipped": shipped,
            "digest": digest,
            "name": name,
            "version": version,
            "task": signature.outputs.task,
            "label_kind": kind,
            "n_probabilities": probability_count(signature.outputs),
            "tensor_inputs": [(t.name, row_rank(t)) for t in signature.tensors],
            "tensor_outputs": [(t.name, row_rank(t)) for t in signature.outputs.tensors or ()],
            "with_errors": with_errors,
            "adapter_options": dict(adapter_options or {}),
            # Checked (a list of names) before any job runs; the executors load with them.
            "trusted_types": list(type_names(trusted_types)),
        }
        return cls(location, signature, name, version, digest, kind, job)

    # -- columns ------------------------------------------------------------------------------

    def input_columns(self, df: Any) -> list[Any]:
        """The DataFrame's columns for the signature's inputs, checked and cast; no job runs."""
        functions = require("pyspark.sql.functions", extra="spark", feature=FEATURE)
        fields = {field.name: field for field in df.schema.fields}
        problems: list[dict[str, Any]] = []
        columns = []
        specs: Sequence[ColumnSpec | TensorSpec] = self.signature.columns or self.signature.tensors
        for spec in specs:
            field = fields.get(spec.name)
            if field is None:
                problems.append(_missing(spec.name, list(fields)))
                continue
            cast, problem = check_type(spec, field.dataType)
            if problem is not None:
                problems.append({"field": spec.name, "index": None, "message": problem})
                continue
            column = functions.col(column_name(spec.name))
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
        functions = require("pyspark.sql.functions", extra="spark", feature=FEATURE)
        pandas = require("pandas", extra="spark", feature=FEATURE)
        scoring = executor_function(self.job)
        # Spark infers the UDF kind (iterator of DataFrames -> iterator of DataFrames) from these.
        frame: Any = pandas.DataFrame
        scoring.__annotations__ = {"batches": Iterator[frame], "return": Iterator[frame]}
        wire_udf = functions.pandas_udf(scoring, wire_type(self.job, self.signature))
        return wire_udf(functions.struct(*inputs))

    def output_column(self, wire: Any) -> Any:
        """The public output struct, assembled in the JVM from the wire columns."""
        functions = require("pyspark.sql.functions", extra="spark", feature=FEATURE)
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
