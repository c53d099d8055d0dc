"""scikit-learn to ONNX with skl2onnx, checked against scikit-learn before anything is written.

The converted graph takes one 2-D input per element type (numbers, integers and booleans in one
``double`` matrix with NaN for missing, strings in one ``string`` matrix with a sentinel for
missing), split back into skl2onnx's one-input-per-column inside the graph: onnxruntime then
binds two arrays per call instead of one per column, which is what makes a single record fast.
Probabilities come out as a plain ``[N, classes]`` tensor (no ZipMap).
"""

from __future__ import annotations

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
    merge_one_hot,
    missing_string_for,
    root_cause,
    simplify,
    unsupported,
)
from ._deps import require
from ._environment import installed_version
from ._parity import check_parity
from ._protocol import first_line
from ._sklearn import steps, task_of
from ._spec import ColumnSpec, Outputs, Signature, TabularInputs, TensorInputs, python_scalar
from .adapters import SavedModel
from .errors import BundleError, ConversionError

__all__ = ["TARGET_OPSET", "Converted", "convert_estimator"]

#: The opsets conversion targets: what onnxruntime 1.17 (the oldest supported) runs.
TARGET_OPSET: dict[str, int] = {"": 17, "ai.onnx.ml": 3}
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
            inputs and are checked for parity, with rows generated from them (see
            :func:`modelkit._parity.check_parity`).
        inputs: declared inputs, when the sample's should be overridden.
        outputs: declared outputs (at least the task), or ``None`` to take them from the
            estimator.
        profile: a drift profile to generate rows from, when there is no sample.

    Raises:
        ConversionError: skl2onnx cannot convert the estimator, or the graph's answers differ
            from scikit-learn's beyond the tolerances; the message names the step or shows the
            worst rows.
    """
    from .adapters._joblib import JoblibRunner, inputs_for
    from .adapters._onnx import OnnxRunner, describe_graph, make_session

    if isinstance(inputs, TensorInputs):
        raise ConversionError("Conversion from scikit-learn needs tabular inputs (named columns).")
    if sample_input is None and profile is None:
        raise ConversionError(
            "Converting to ONNX needs sample_input= (a few hundred training rows): they type the "
            "graph's inputs and check that it answers like scikit-learn."
        )
    try:
        inputs, layout, dtype = inputs_for(estimator, sample_input, inputs)
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
    task = outputs.task if outputs is not None else task_of(estimator)
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
        saved = describe_graph(
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

    parity = check_parity(
        reference,
        converted,
        inputs=inputs,
        sample_input=sample_input,
        profile=profile,
        task=task,
        has_probabilities=has_probabilities,
    )

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
    merge_one_hot(onnx, model)
    simplify(model.graph)
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
