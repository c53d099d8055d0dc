"""scikit-learn to ONNX with skl2onnx, checked against scikit-learn before anything is written.

The converted graph takes one 2-D input per element type (numbers, integers and booleans in one
``double`` matrix with NaN for missing, strings in one ``string`` matrix with a sentinel for
missing), split back into skl2onnx's one-input-per-column inside the graph: onnxruntime then
binds two arrays per call instead of one per column, which is what makes a single record fast.
Probabilities come out as a plain ``[N, classes]`` tensor (no ZipMap).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._convert_rewrites import (
    converter_fixes,
    failing_step,
    faithful_copy,
    feed_doubles,
    missing_string_for,
    root_cause,
    steps,
    unsupported,
)
from ._deps import require
from ._environment import installed_version
from ._model import _RejectedError, first_line
from ._signature import (
    ColumnSpec,
    Outputs,
    Signature,
    Table,
    TabularInputs,
    TabularValidator,
    TensorInputs,
    is_missing,
    python_scalar,
)
from .adapters import SavedModel
from .errors import BundleError, ConversionError, InvalidInputError

__all__ = [
    "GENERATED_ROWS",
    "MISSING_RATE",
    "PROBABILITY_TOLERANCE",
    "TARGET_OPSET",
    "TIE_TOLERANCE",
    "VALUE_TOLERANCE",
    "Converted",
    "convert_estimator",
]

#: The opsets conversion targets: what onnxruntime 1.17 (the oldest supported) runs.
TARGET_OPSET: dict[str, int] = {"": 17, "ai.onnx.ml": 3}
#: Largest absolute difference allowed between scikit-learn's and ONNX's probabilities. The graph
#: computes in float32 where scikit-learn uses float64; differences are typically below 1e-6.
PROBABILITY_TOLERANCE = 1e-4
#: Regression values must agree within ``VALUE_TOLERANCE * max(1, |value|)``.
VALUE_TOLERANCE = 1e-4
#: Rows generated from the signature, on top of the sample, for the parity check.
GENERATED_ROWS = 1000
#: The share of generated values left missing in each column the model accepts missing in.
MISSING_RATE = 0.1
#: scikit-learn's top two probabilities this close (relative to the top one) are a tie: a graph
#: computing in float32 may pick either label, so a different label there is no disagreement.
#: So is a gap within twice the row's probability difference (itself within the tolerance).
TIE_TOLERANCE = 1e-6
_TIES_SHOWN = 5
_SEED = 0
_WORST_SHOWN = 5
# The graph input of each element type; suffixed with "_" when a column already has the name.
_GROUP_INPUTS = {
    "float32": "float_input",
    "float64": "double_input",
    "int64": "int64_input",
    "string": "string_input",
}


@dataclass(frozen=True)
class Converted:
    """A converted model: the ONNX bytes and what its bundle's manifest records about them."""

    data: bytes
    saved: SavedModel


def convert_estimator(
    estimator: Any,
    *,
    sample_input: Any,
    inputs: TabularInputs | TensorInputs | None,
    outputs: Outputs | None,
    profile: Mapping[str, Any] | None = None,
) -> Converted:
    """Convert a fitted scikit-learn estimator or pipeline, and check parity.

    Args:
        estimator: the fitted estimator or pipeline.
        sample_input: training rows (DataFrame, 2-D array or records); they type the graph's
            inputs and are checked for parity, with :data:`GENERATED_ROWS` rows generated from
            them.
        inputs: declared inputs, when the sample's should be overridden.
        outputs: declared outputs (at least the task), or ``None`` to take them from the
            estimator.
        profile: a drift profile to generate rows from, when there is no sample.

    Raises:
        ConversionError: skl2onnx cannot convert the estimator, or the graph's answers differ
            from scikit-learn's beyond the tolerances; the message names the step or shows the
            worst rows.
    """
    from .adapters._joblib import JoblibRunner, _inputs_for, _task_of
    from .adapters._onnx import OnnxRunner, describe, make_session

    if isinstance(inputs, TensorInputs):
        raise ConversionError("Conversion from scikit-learn needs tabular inputs (named columns).")
    if sample_input is None and profile is None:
        raise ConversionError(
            "Converting to ONNX needs sample_input= (a few hundred training rows): they type the "
            "graph's inputs and check that it answers like scikit-learn."
        )
    try:
        inputs, layout, dtype = _inputs_for(estimator, sample_input, inputs)
    except BundleError as exc:
        raise ConversionError(str(exc)) from exc
    for column in inputs.columns:
        if column.missing_marker == "none":
            raise ConversionError(
                f"Cannot convert with column {column.name!r}: the model takes None there as a "
                "value of its own (its training data marked gaps with None, not NaN), which the "
                "ONNX converters cannot express. Refit on data with NaN for missing values "
                "(frame.fillna(numpy.nan)), or save this model with format='joblib'."
            )
    refused = unsupported(estimator)
    if refused is not None:
        path, step, reason, advice = refused
        where = f"step {path!r} ({type(step).__name__})" if path else type(step).__name__
        raise ConversionError(
            f"Cannot convert {where}: {reason}. Save this model with format='joblib', or {advice}."
        )
    task = outputs.task if outputs is not None else _task_of(estimator)
    if task not in ("classification", "regression"):
        raise ConversionError(f"Conversion serves classifiers and regressors, not task {task!r}.")
    classes: tuple[Any, ...] | None = None
    has_probabilities = False
    if task == "classification":
        raw = getattr(estimator, "classes_", None)
        if raw is None or np.ndim(raw) != 1:
            raise ConversionError(
                f"{type(estimator).__qualname__} has no one-dimensional classes_: only "
                "single-output classifiers convert."
            )
        classes = tuple(python_scalar(c) for c in np.asarray(raw).tolist())
        has_probabilities = callable(getattr(estimator, "predict_proba", None))
    declared = Outputs(task=task, classes=classes, has_probabilities=has_probabilities)
    reference = JoblibRunner(
        estimator, Signature(inputs=inputs, outputs=declared), layout=layout, dtype=dtype
    )

    # A string tensor cannot hold None: missing strings go in as a sentinel, which the converted
    # copy's imputers and encoders take for scikit-learn's NaN.
    missing_string = None
    if any(c.type == "string" and c.nullable for c in inputs.columns):
        missing_string = missing_string_for(estimator)
    convertible = faithful_copy(estimator, missing_string)
    data, groups, opsets = _to_onnx(convertible, inputs, layout, task)
    try:
        session = make_session(data, label="the converted model")
        saved = describe(
            data,
            session=session,
            inputs=inputs,
            outputs=declared,
            groups=groups,
            missing_string=missing_string,
            label="the converted model",
        )
    except BundleError as exc:
        raise ConversionError(f"skl2onnx gave a graph modelkit cannot serve: {exc}") from exc
    signature = saved.signature
    if task == "classification" and not has_probabilities:
        signature = signature.model_copy(
            update={"outputs": signature.outputs.model_copy(update={"has_probabilities": False})}
        )
    converted = OnnxRunner(
        session,
        signature,
        layout="groups" if groups else "matrix",
        groups=groups,
        missing_string=missing_string,
    )

    validator = TabularValidator(inputs)
    sample = None
    if sample_input is not None:
        try:
            sample = validator.batch(sample_input)
        except InvalidInputError as exc:
            raise ConversionError(f"The sample input does not fit the signature: {exc}") from exc
    generated = _generate(
        inputs,
        sample,
        profile,
        GENERATED_ROWS,
        np.random.default_rng(_SEED),
        missing_rate=MISSING_RATE,
    )
    parity = _check_parity(
        reference, converted, task, has_probabilities, {"sample": sample, "generated": generated}
    )
    if "generated_rows" in parity:
        parity["missing_rate"] = MISSING_RATE

    boosters = {type(step).__module__.partition(".")[0] for _, step in steps(estimator)}
    boosters &= {"xgboost", "lightgbm"}
    packages = ["skl2onnx", "onnx", "scikit-learn", *sorted(boosters)]
    packages += ["onnxmltools"] if boosters else []
    grouped = {name for columns in groups.values() for name in columns}
    unused = [c.name for c in inputs.columns if c.name not in grouped]
    details = {
        **saved.details,
        **({"unused_columns": unused} if unused else {}),
        "opsets": opsets,
        "converted_from": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
        "converter": {name: installed_version(name) for name in packages},
        "parity": parity,
    }
    return Converted(data=data, saved=SavedModel(signature=signature, details=details))


# -- conversion ---------------------------------------------------------------------------------


def _to_onnx(
    estimator: Any, inputs: TabularInputs, layout: str, task: str
) -> tuple[bytes, dict[str, tuple[str, ...]], dict[str, int]]:
    """The graph's bytes, its input groups (graph input to columns) and its opsets."""
    skl2onnx = require("skl2onnx", extra="convert", feature="Converting to ONNX")
    onnx = require("onnx", extra="convert", feature="Converting to ONNX")
    from skl2onnx.common import data_types

    types = {
        "float32": data_types.FloatTensorType,
        "int64": data_types.Int64TensorType,
        "string": data_types.StringTensorType,
        "datetime": data_types.DoubleTensorType,  # typed for skl2onnx; the graph must not use it
    }
    options: dict[int, dict[str, Any]] = {}
    if task == "classification":
        options = {id(step): {"zipmap": False} for step in _classifiers(estimator)}
    columns = inputs.columns
    # Integers and booleans go in as floats, as scikit-learn's float transformers take them
    # (and NaN stands for missing); int64 inputs only when a step refuses floats, for the
    # integer columns that cannot be missing.
    as_floats = {c.name: _element_type(c) for c in columns}
    as_integers = {
        c.name: "int64" if c.type == "integer" and not c.nullable else as_floats[c.name]
        for c in columns
    }
    elements = set(as_floats.values())
    # A ColumnTransformer names its columns, so it needs one input per column (regrouped after);
    # a bare estimator takes one matrix, possible when all columns share an element type.
    attempts: list[tuple[str, dict[str, str]]] = []
    if layout != "array":
        attempts.append(("columns", as_floats))
        if as_integers != as_floats:
            attempts.append(("columns", as_integers))
    if len(elements) == 1 and elements != {"datetime"}:
        attempts.append(("matrix", as_floats))
    if not attempts:
        raise ConversionError(
            "An estimator trained on an array of mixed types cannot be typed for ONNX; train it "
            "on a DataFrame, or save it with format='joblib'."
        )
    failure: Exception | None = None
    with converter_fixes(estimator):
        for attempt, element_of in attempts:
            if attempt == "columns":
                initial = [(c.name, types[element_of[c.name]]([None, 1])) for c in columns]
            else:
                (element,) = elements
                initial = [(_GROUP_INPUTS[element], types[element]([None, len(columns)]))]
            try:
                model = skl2onnx.convert_sklearn(
                    estimator,
                    initial_types=initial,
                    target_opset=dict(TARGET_OPSET),
                    options=options,
                )
            except Exception as exc:  # noqa: BLE001 - the next attempt, or the error below
                failure = failure or exc  # the first attempt's reason is the one to give
                continue
            break
        else:
            assert failure is not None
            datetimes = [c for c in columns if c.type == "datetime"]
            if datetimes and attempts[0][0] != "columns":
                raise _untyped(datetimes[0]) from failure
            raise _conversion_failed(estimator, failure, inputs) from failure
    opsets = {entry.domain or "ai.onnx": int(entry.version) for entry in model.opset_import}
    if attempt == "columns":
        groups = _group_inputs(onnx, model, columns, element_of, opsets.get("ai.onnx", 17))
    else:
        groups = _matrix_input(onnx, model, columns)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ConversionError(f"skl2onnx produced an invalid graph: {first_line(exc)}") from exc
    return model.SerializeToString(), groups, opsets


def _element_type(column: ColumnSpec) -> str:
    if column.type in ("string", "datetime"):
        return column.type
    return "float32"


def _untyped(column: ColumnSpec) -> ConversionError:
    return ConversionError(
        f"Column {column.name!r} holds {column.type} values, which the ONNX conversion does not "
        "take (unless the pipeline drops the column). Save this model with format='joblib', or "
        f"train it on numbers derived from {column.name!r} (a timestamp, a year, a day of the "
        "week...)."
    )


def _group_inputs(
    onnx: Any,
    model: Any,
    columns: Sequence[ColumnSpec],
    element_of: Mapping[str, str],
    opset: int,
) -> dict[str, tuple[str, ...]]:
    """Replace the one-per-column inputs by one 2-D input per element type, split in the graph.

    Numbers go in as float64, rounded to the float32 skl2onnx typed them as, except where
    modelkit's numeric converters compute in float64 as scikit-learn does.
    """
    helper, tensor_proto = onnx.helper, onnx.TensorProto
    elements = {
        "float64": tensor_proto.DOUBLE,
        "int64": tensor_proto.INT64,
        "string": tensor_proto.STRING,
    }
    graph = model.graph
    declared = [node.name for node in graph.input]
    if len(declared) != len(columns):
        raise ConversionError(
            f"skl2onnx gave a graph with {len(declared)} inputs for {len(columns)} columns."
        )
    # skl2onnx keeps the inputs in the order given, with names made safe ("a b" -> "a_b").
    by_type: dict[str, list[tuple[str, str]]] = {}
    used = {name for node in graph.node for name in node.input}
    for column, graph_name in zip(columns, declared, strict=True):
        element = element_of[column.name]
        if element == "datetime":
            if graph_name in used:
                raise _untyped(column)
            continue  # the pipeline drops it: the graph does without
        by_type.setdefault("float64" if element == "float32" else element, []).append(
            (column.name, graph_name)
        )
    taken = {*declared, *(n for node in graph.node for n in node.output)}

    def unique(name: str) -> str:
        while name in taken:
            name += "_"
        taken.add(name)
        return name

    groups: dict[str, tuple[str, ...]] = {}
    doubles: dict[str, str] = {}
    new_inputs, nodes = [], []
    for element, pairs in by_type.items():
        name = unique(_GROUP_INPUTS[element])
        groups[name] = tuple(column for column, _ in pairs)
        names = [graph_name for _, graph_name in pairs]
        new_inputs.append(
            helper.make_tensor_value_info(name, elements[element], [None, len(names)])
        )
        parts = names
        if element == "float64":
            parts = [unique(f"{graph_name}_double") for graph_name in names]
            doubles.update(zip(names, parts, strict=True))
        if len(parts) == 1:
            nodes.append(helper.make_node("Identity", [name], parts, name=unique(f"{name}_id")))
        else:
            # Opset 18 made the number of outputs an attribute; before, Split infers it.
            extra = {"num_outputs": len(parts)} if opset >= 18 else {}
            nodes.append(
                helper.make_node(
                    "Split", [name], parts, axis=1, name=unique(f"{name}_split"), **extra
                )
            )
        if element == "float64":
            nodes += [
                helper.make_node(
                    "Cast", [part], [graph_name], to=tensor_proto.FLOAT, name=unique(f"{part}_cast")
                )
                for part, graph_name in zip(parts, names, strict=True)
            ]
    del graph.input[:]
    graph.input.extend(new_inputs)
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *existing])
    feed_doubles(onnx, graph, doubles)
    return groups


def _matrix_input(
    onnx: Any, model: Any, columns: Sequence[ColumnSpec]
) -> dict[str, tuple[str, ...]]:
    """The graph's one input, as float64 when it takes numbers (see :func:`_group_inputs`)."""
    graph = model.graph
    (declared,) = graph.input
    names = tuple(c.name for c in columns)
    if declared.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        return {declared.name: names}
    taken = {declared.name, *(n for node in graph.node for n in node.output)}
    name = _GROUP_INPUTS["float64"]
    while name in taken:
        name += "_"
    cast = onnx.helper.make_node(
        "Cast", [name], [declared.name], to=onnx.TensorProto.FLOAT, name=f"{name}_cast"
    )
    double = onnx.helper.make_tensor_value_info(name, onnx.TensorProto.DOUBLE, [None, len(columns)])
    del graph.input[:]
    graph.input.append(double)
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend([cast, *existing])
    feed_doubles(onnx, graph, {declared.name: name})
    return {name: names}


def _classifiers(estimator: Any) -> Iterator[Any]:
    """The estimator and every step inside it, so each classifier's ZipMap can be turned off."""
    for _, step in steps(estimator):
        if hasattr(step, "predict_proba") or getattr(step, "_estimator_type", None) == "classifier":
            yield step


def _conversion_failed(estimator: Any, exc: Exception, inputs: TabularInputs) -> ConversionError:
    """A ConversionError for skl2onnx's exception: the step, the root cause, what to do."""
    text = str(exc)
    match = re.search(r"<class '([\w.]+)'>", text) or re.search(r"type '?([\w.]+)'?", text)
    missing = type(exc).__name__ in ("MissingShapeCalculator", "MissingConverter") or (
        "Unable to find a shape calculator" in text or "Unable to find converter" in text
    )
    if missing and match:
        qualified = match.group(1)
        short = qualified.rsplit(".", 1)[-1]
        where = next(
            (path for path, step in steps(estimator) if type(step).__name__ == short), None
        )
        step = f"step {where!r} ({short})" if where else short
        return ConversionError(
            f"skl2onnx has no converter for {step}. Save this model with format='joblib', or "
            "replace that step with one skl2onnx converts (or register a converter for it with "
            "skl2onnx.update_registered_converter)."
        )
    cause = root_cause(exc)
    reason = f"{type(cause).__name__}: {first_line(cause)}".rstrip(".")
    found = failing_step(exc, estimator)
    if found is None:
        where = type(estimator).__qualname__
    else:
        path, step = found
        where = f"step {path!r} ({type(step).__name__})" if path else type(step).__name__
    strings = [c.name for c in inputs.columns if c.type == "string"]
    if strings and "input(s) is(are) supported" in str(cause):
        # A model fed the raw frame, string columns included (pandas categories, say).
        return ConversionError(
            f"skl2onnx cannot convert {where}: it takes the string columns {strings} as they "
            "are, and its ONNX converter takes one matrix of numbers. Encode them in the "
            "pipeline (a ColumnTransformer with OneHotEncoder or OrdinalEncoder), or save this "
            "model with format='joblib'."
        )
    return ConversionError(
        f"skl2onnx cannot convert {where}: {reason}. Save this model with format='joblib', or "
        "change that step."
    )


# -- parity -------------------------------------------------------------------------------------


def _generate(
    inputs: TabularInputs,
    sample: Table | None,
    profile: Mapping[str, Any] | None,
    count: int,
    rng: np.random.Generator,
    *,
    missing_rate: float = 0.0,
) -> Table | None:
    """Rows that fit the signature, drawn around the sample's (or the profile's) values.

    With ``missing_rate``, that share of the values of each nullable column is left missing.
    """
    data = sample.columns() if sample is not None else {}
    summaries = (profile or {}).get("columns") or {}
    generated: dict[str, np.ndarray] = {}
    for column in inputs.columns:
        values = _generate_column(
            column, data.get(column.name), summaries.get(column.name), count, rng
        )
        if values is None and column.nullable and missing_rate > 0:
            values = np.full(count, None, dtype=object)  # nothing seen but gaps: all missing
        if values is None:
            return None  # a column with nothing to draw from: the sample alone is checked
        if column.nullable and missing_rate > 0:
            values = values.astype(object)
            values[rng.random(count) < missing_rate] = None
        generated[column.name] = values
    rows = [dict(zip(generated, row, strict=True)) for row in zip(*generated.values(), strict=True)]
    try:
        return TabularValidator(inputs).batch(rows)
    except InvalidInputError:
        return None


def _generate_column(
    column: ColumnSpec,
    present: np.ndarray | None,
    summary: Mapping[str, Any] | None,
    count: int,
    rng: np.random.Generator,
) -> np.ndarray | None:
    observed = [] if present is None else [v for v in present.tolist() if not is_missing(v)]
    if column.categories is not None or column.type == "string":
        choices = list(column.categories or dict.fromkeys(observed))
        if not choices and summary is not None and column.type == "string":
            choices = list(summary.get("categories") or [])
        if not choices:
            return None
        picked = np.empty(count, dtype=object)
        picked[:] = [choices[i] for i in rng.integers(0, len(choices), count)]
        return picked
    if column.type == "boolean":
        return rng.integers(0, 2, count).astype(bool)
    if column.type not in ("number", "integer"):
        # Datetimes (and any later type): the values seen, drawn again.
        if not observed or present is None:
            return None
        seen = present[[not is_missing(v) for v in present.tolist()]]
        return seen[rng.integers(0, len(seen), count)]
    numbers = [float(v) for v in observed if math.isfinite(float(v))]
    if numbers:
        low, high = min(numbers), max(numbers)
    elif summary is not None and summary.get("min") is not None:
        low, high = float(summary["min"]), float(summary["max"])
        numbers = [float(summary.get("mean") or (low + high) / 2)]
    else:
        low, high, numbers = -1.0, 1.0, [0.0]
    span = (high - low) or max(abs(high), 1.0)
    # Half near real values (small jitter), half spread a little past the observed range.
    half = count // 2
    near = rng.choice(np.asarray(numbers), half) + rng.normal(0.0, 0.05 * span, half)
    spread = rng.uniform(low - 0.1 * span, high + 0.1 * span, count - half)
    values = np.concatenate([near, spread])
    if column.type == "integer":
        rounded: np.ndarray = np.clip(np.rint(values), math.floor(low), math.ceil(high))
        return rounded.astype(np.int64)
    return values.astype(np.float64)


def _check_parity(
    reference: Any,
    converted: Any,
    task: str,
    has_probabilities: bool,
    tables: Mapping[str, Table | None],
) -> dict[str, Any]:
    """Compare both runtimes on each table of rows; the parity report, or a ConversionError."""
    checked: dict[str, Table] = {}
    expected: list[Mapping[str, Any]] = []
    actual: list[Mapping[str, Any]] = []
    for source, table in tables.items():
        rows = table
        answers = None
        if rows is not None and source == "generated":
            rows, answers = _rows_scikit_learn_accepts(reference, rows)
        if rows is None or rows.length == 0:
            continue
        if answers is None:
            answers = _run(reference, rows, f"scikit-learn refuses the {source} rows")
        expected.append(answers)
        actual.append(
            _run(converted, rows, f"The graph refuses {source} rows that scikit-learn accepts")
        )
        checked[source] = rows
    if not checked:
        raise ConversionError("No rows to check parity on: pass sample_input=.")
    sources = [(source, i) for source, rows in checked.items() for i in range(rows.length)]
    report: dict[str, Any] = {
        "rows": len(sources),
        **{f"{source}_rows": rows.length for source, rows in checked.items()},
        "seed": _SEED,
    }
    if task == "classification":
        differences, shown, ties = _compare_labels(expected, actual, has_probabilities, report)
        limit = PROBABILITY_TOLERANCE if has_probabilities else 0.0
        if has_probabilities:
            report["tie_examples"] = [
                {
                    "source": sources[i][0],
                    "row": sources[i][1],
                    "labels": {"scikit-learn": shown[i][0], "onnx": shown[i][1]},
                }
                # Ties where the labels differ first: those are the ones the rule forgave.
                for i in sorted(np.flatnonzero(ties), key=lambda i: shown[i][0] == shown[i][1])[
                    :_TIES_SHOWN
                ]
            ]
    else:
        differences, shown = _compare_values(expected, actual, report)
        limit = VALUE_TOLERANCE
    failed = ~(differences <= limit)  # NaN fails too
    order = np.argsort(-np.nan_to_num(differences, nan=np.inf), kind="stable")
    report["worst"] = [
        {"source": sources[i][0], "row": sources[i][1], "difference": _json_float(differences[i])}
        for i in order[:_WORST_SHOWN]
    ]
    if failed.any():
        records = {source: rows.records() for source, rows in checked.items()}
        lines = []
        for i in order[: min(_WORST_SHOWN, int(failed.sum()))]:
            source, row = sources[i]
            lines.append(
                f"  {source} row {row}: scikit-learn {shown[i][0]!r}, ONNX {shown[i][1]!r} "
                f"(difference {differences[i]:.3g}); input {records[source][row]}"
            )
        what = "labels and probabilities" if task == "classification" else "values"
        raise ConversionError(
            f"The converted model misses parity on {int(failed.sum())} of {len(sources)} rows: "
            f"its {what} must match scikit-learn's within the tolerance of "
            f"{limit:g}. Worst rows:\n"
            + "\n".join(lines)
            + "\nNothing was written; save this model with format='joblib' instead."
        )
    return report


def _run(runner: Any, rows: Table, refusal: str) -> Mapping[str, Any]:
    try:
        fields: Mapping[str, Any] = runner.run(rows)
    except _RejectedError as exc:
        raise ConversionError(f"{refusal}: {first_line(exc.__cause__ or exc)}") from exc
    return fields


def _joined(parts: Sequence[Mapping[str, Any]], field: str) -> np.ndarray:
    return np.concatenate([np.asarray(part[field]) for part in parts])


def _compare_labels(
    expected: Sequence[Mapping[str, Any]],
    actual: Sequence[Mapping[str, Any]],
    has_probabilities: bool,
    report: dict[str, Any],
) -> tuple[np.ndarray, list[tuple[Any, Any]], np.ndarray]:
    """Per row: 1 for a different label, else the largest probability difference; and which
    rows scikit-learn itself answers with a tie (a different label there is not counted)."""
    expected_labels = [python_scalar(v) for v in _joined(expected, "label").tolist()]
    actual_labels = [python_scalar(v) for v in _joined(actual, "label").tolist()]
    shown = list(zip(expected_labels, actual_labels, strict=True))
    mismatched = np.array([e != a for e, a in shown], dtype=bool)
    ties = np.zeros(len(shown), dtype=bool)
    if has_probabilities:
        wanted = _joined(expected, "probabilities").astype(np.float64)
        gap = np.abs(wanted - _joined(actual, "probabilities").astype(np.float64)).max(axis=1)
        if wanted.shape[1] >= 2:
            top = np.sort(wanted, axis=1)[:, -2:]
            # A tie within float32 precision, or within what the graph's probabilities are
            # allowed to differ by on that row: a label that follows such a difference is not one.
            ties = top[:, 1] - top[:, 0] <= np.maximum(TIE_TOLERANCE * top[:, 1], 2 * gap)
        differences = np.maximum((mismatched & ~ties).astype(np.float64), gap)
        report["max_probability_difference"] = _json_float(float(gap.max()))
        report["tolerance"] = {"probability": PROBABILITY_TOLERANCE, "tie": TIE_TOLERANCE}
        report["tie_rows"] = int(ties.sum())
        report["tie_label_differences"] = int((mismatched & ties).sum())
    else:
        differences = mismatched.astype(np.float64)
    report["label_mismatches"] = int((mismatched & ~ties).sum())
    return differences, shown, ties


def _compare_values(
    expected: Sequence[Mapping[str, Any]],
    actual: Sequence[Mapping[str, Any]],
    report: dict[str, Any],
) -> tuple[np.ndarray, list[tuple[Any, Any]]]:
    """Per row: the largest difference relative to ``max(1, |value|)``."""
    wanted = _joined(expected, "value").astype(np.float64)
    got = _joined(actual, "value").astype(np.float64)
    wanted, got = wanted.reshape(len(wanted), -1), got.reshape(len(wanted), -1)
    gap = np.abs(wanted - got).max(axis=1)
    differences = gap / np.maximum(1.0, np.abs(wanted).max(axis=1))
    report["max_value_difference"] = _json_float(float(gap.max()))
    report["tolerance"] = {"value": VALUE_TOLERANCE, "relative_to": "max(1, |value|)"}
    shown = [(w.tolist(), g.tolist()) for w, g in zip(wanted, got, strict=True)]
    return differences, shown


def _rows_scikit_learn_accepts(
    reference: Any, table: Table
) -> tuple[Table | None, Mapping[str, Any] | None]:
    """The generated rows scikit-learn predicts on (an encoder may refuse a combination), and
    its answers when it took them all."""
    try:
        answers: Mapping[str, Any] = reference.run(table)
    except _RejectedError:
        pass
    else:
        return table, answers
    columns = table.columns()
    keep = []
    for row in range(table.length):
        single = Table(table.names, 1, {n: c[row : row + 1] for n, c in columns.items()})
        try:
            reference.run(single)
        except _RejectedError:
            continue
        keep.append(row)
    if not keep:
        return None, None
    return Table(table.names, len(keep), {n: c[keep] for n, c in columns.items()}), None


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
