"""What conversion does around skl2onnx so that the pipelines people write convert faithfully.

modelkit converts a copy of the pipeline (:func:`faithful_copy`), whose steps it swaps for
subclasses with converters of its own where skl2onnx's differ from scikit-learn:

- Numbers: imputers and scalers compute in float64 on the graph's float64 input and round to
  float32 where scikit-learn does (:func:`feed_doubles` wires the input through); skl2onnx
  computes them in float32, a few ulps off, which moves values across trees' thresholds.
- Missing strings: a string tensor cannot hold ``None``, and skl2onnx's string imputer needs a
  string as missing marker. The copy's string imputers and encoders take a sentinel (a string no
  fitted category or statistic uses) where scikit-learn takes NaN; the runner feeds it.
- XGBoost: zeros of a sparse matrix are missing values to it; its feature names and types from a
  DataFrame are dropped, as onnxmltools reads ``f0, f1...``.

And while converting (:func:`converter_fixes`): skl2onnx's tree builders get scikit-learn's
learned routing of missing values (skl2onnx leaves it out) and integers where recent protobuf
refuses Python booleans (``HistGradientBoosting*``); onnxmltools' XGBoost and LightGBM converters
are registered when a pipeline has such a model. Errors are traced to the step skl2onnx was
converting and to their root cause. Everything here runs at save time only.
"""

from __future__ import annotations

import copy
import functools
import itertools
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ._deps import require
from ._sklearn import steps
from ._spec import is_missing

__all__ = [
    "AS_DOUBLE",
    "MISSING_STRING",
    "converter_fixes",
    "failing_step",
    "faithful_copy",
    "feed_doubles",
    "merge_one_hot",
    "missing_string_for",
    "root_cause",
    "simplify",
    "steps",
    "unsupported",
]

#: The missing-string sentinel, suffixed with ``_`` while a fitted value already uses it.
MISSING_STRING = "__modelkit_missing__"
#: Suffix of the float64 casts of modelkit's numeric converters, which the graph may feed the
#: float64 input directly (see :func:`feed_doubles`).
AS_DOUBLE = "__modelkit_as_double"

# skl2onnx's registries and the functions patched below are process-wide: one conversion at a time.
_LOCK = threading.RLock()


# -- missing strings ----------------------------------------------------------------------------


def _is_string_array(values: Any) -> bool:
    return isinstance(values, np.ndarray) and values.dtype.kind in "OUS"


def _kind(step: Any) -> str | None:
    """``imputer`` or ``encoder`` for the scikit-learn steps whose missing marker is rewritten."""
    for cls in type(step).__mro__:
        if cls.__module__.startswith("sklearn."):
            if cls.__name__ == "SimpleImputer":
                return "imputer"
            if cls.__name__ in ("OneHotEncoder", "OrdinalEncoder"):
                return "encoder"
    return None


def _fitted_strings(estimator: Any) -> set[str]:
    """Every string a step of the pipeline learned or was given: categories, statistics..."""
    found: set[str] = set()
    for _, step in steps(estimator):
        kind = _kind(step)
        arrays: list[Any] = []
        if kind == "encoder":
            arrays = list(getattr(step, "categories_", None) or [])
        elif kind == "imputer":
            arrays = [getattr(step, "statistics_", None)]
            if isinstance(step.fill_value, str):
                found.add(step.fill_value)
        for values in arrays:
            if _is_string_array(values):
                found.update(v for v in values.tolist() if isinstance(v, str))
    return found


def missing_string_for(estimator: Any) -> str:
    """The sentinel that stands for a missing string in the converted graph of ``estimator``."""
    taken = _fitted_strings(estimator)
    sentinel = MISSING_STRING
    while sentinel in taken:
        sentinel += "_"
    return sentinel


def faithful_copy(estimator: Any, missing_string: str | None) -> Any:
    """``estimator``, or a copy of it whose steps skl2onnx converts faithfully.

    - Numeric imputers and scalers compute in float64 like scikit-learn, on the float64 inputs,
      then round to float32 (float64 all the way into a linear model): skl2onnx's float32
      arithmetic (even its ``div_cast`` option rounds the offset) lands a few ulps off, enough to
      send a value to the other side of a tree's threshold. An imputer drops the columns it saw
      no value in, as scikit-learn does.
    - With ``missing_string``, string imputers and encoders take it for scikit-learn's NaN (the
      runner feeds it for a missing string): the copy answers as the original on the same rows
      with NaN replaced by it.
    - XGBoost fed a sparse matrix takes its zeros for missing values: a step turns them to NaN.
    - XGBoost models fitted on a DataFrame forget their feature names, which onnxmltools cannot
      read.

    The parity check then proves the graph of the copy against the original.
    """
    if not any(
        _rewrite_of(step, missing_string) or _sparse_before_xgboost(step)
        for _, step in steps(estimator)
    ):
        return estimator
    rewritten = copy.deepcopy(estimator)
    with _LOCK:  # _precise registers with skl2onnx
        for _, step in steps(rewritten):
            _fuse_imputers(step)
            _sparse_zeros_as_missing(step)
        for _, step in steps(rewritten):
            _rewrite(step, _rewrite_of(step, missing_string), missing_string)
        if _ends_in_linear_regression(rewritten):
            # A linear model sums many terms, which may cancel out: its inputs stay float64, as
            # scikit-learn's do (skl2onnx's linear regressors compute in float64 on float64
            # inputs). Probabilities have a tolerance that float32 keeps well within.
            for _, step in steps(rewritten):
                if type(step).__module__ == __name__ and hasattr(step, "modelkit_numbers_"):
                    step.modelkit_double_output_ = True
    return rewritten


def _ends_in_linear_regression(estimator: Any) -> bool:
    pairs = getattr(estimator, "steps", None)
    final = pairs[-1][1] if isinstance(pairs, list) and pairs else estimator
    return type(final).__module__.startswith("sklearn.linear_model") and not hasattr(
        final, "classes_"
    )


def _numeric_imputer(step: Any) -> bool:
    """A scikit-learn SimpleImputer of numbers whose NaN modelkit's converter fills."""
    statistics = getattr(step, "statistics_", None)
    return (
        _is_exactly(step, "sklearn.impute", ("SimpleImputer",))
        and isinstance(statistics, np.ndarray)
        and statistics.dtype.kind == "f"
        and _is_nan(step.missing_values)
        and not step.add_indicator
    )


def _fuse_imputers(pipeline: Any) -> None:
    """A numeric imputer followed by a scaler computes both in float64, as scikit-learn does: a
    float32 imputed mean, scaled, is a few ulps from 0 where scikit-learn's is 0 (or 1e-16),
    and gradient-boosted trees put thresholds right there."""
    pairs = getattr(pipeline, "steps", None)
    if not isinstance(pairs, list):
        return
    for (_, first, *_), (_, second, *_) in itertools.pairwise(pairs):
        if (
            _numeric_imputer(first)
            and _is_exactly(second, "sklearn.preprocessing", _SCALERS)
            and getattr(second, "n_features_in_", None) == int(np.isfinite(first.statistics_).sum())
        ):
            first.__class__ = _precise(type(first))
            first.modelkit_numbers_ = True
            first.modelkit_scaler_ = second
            second.__class__ = _precise(type(second), passthrough=True)


def _rewrite(step: Any, rewrite: str | None, missing_string: str | None) -> None:
    if rewrite in ("scaler", "numbers"):
        step.__class__ = _precise(type(step))
        step.modelkit_numbers_ = True
    elif rewrite == "xgboost":
        # onnxmltools reads trees that name features f0, f1... with numeric split conditions: an
        # XGBoost model fitted on a DataFrame names them after its columns (in the same order)
        # and dumps boolean ones as indicators, without their condition.
        booster = step.get_booster()
        booster.feature_names = None
        booster.feature_types = None
    elif rewrite == "imputer":
        step.missing_values = missing_string
    elif rewrite == "encoder":
        assert missing_string is not None
        missing = [any(_is_nan(v) for v in values.tolist()) for values in step.categories_]
        step.categories_ = [_marked(values, missing_string) for values in step.categories_]
        if type(step).__name__ == "OrdinalEncoder":
            step.__class__ = _precise(type(step))
            # Which columns' last category is the missing one, for the converter below.
            step.modelkit_missing_last_ = missing


_SCALERS = ("StandardScaler", "RobustScaler", "MaxAbsScaler", "MinMaxScaler")


def _sparse_output(step: Any) -> bool:
    """Whether a fitted step gives scipy sparse matrices (as far as its attributes say)."""
    if type(step).__name__ == "ColumnTransformer":
        return bool(getattr(step, "sparse_output_", False))
    if type(step).__name__ == "OneHotEncoder":
        return bool(getattr(step, "sparse_output", False))
    nested = getattr(step, "steps", None)
    if isinstance(nested, list) and nested:
        return _sparse_output(nested[-1][1])
    return False


def _sparse_before_xgboost(pipeline: Any) -> list[int]:
    """Positions in ``pipeline.steps`` of XGBoost models fed a sparse matrix."""
    pairs = getattr(pipeline, "steps", None)
    if not isinstance(pairs, list):
        return []
    return [
        position + 1
        for position, ((_, first, *_), (_, second, *_)) in enumerate(itertools.pairwise(pairs))
        if type(second).__module__.startswith("xgboost.") and _sparse_output(first)
    ]


def _sparse_zeros_as_missing(pipeline: Any) -> None:
    """XGBoost takes what a sparse matrix leaves out (its zeros) as missing values; the graph's
    matrices are dense, so a step before the model turns zeros into NaN."""
    for position in reversed(_sparse_before_xgboost(pipeline)):
        pipeline.steps.insert(position, ("modelkit_zeros_as_missing", _zeros_as_missing()()))


@functools.cache
def _zeros_as_missing() -> type:
    from skl2onnx import update_registered_converter
    from skl2onnx.shape_calculators.identity import calculate_sklearn_identity
    from sklearn.base import BaseEstimator, TransformerMixin

    class ZerosAsMissing(TransformerMixin, BaseEstimator):  # type: ignore[misc]
        """Zeros to NaN: what XGBoost makes of a sparse matrix's implicit zeros."""

        def fit(self, features: Any, y: Any = None) -> ZerosAsMissing:
            return self

        def transform(self, features: Any) -> Any:
            dense = np.asarray(
                features.toarray() if hasattr(features, "toarray") else features,
                dtype=np.float64,
            )
            return np.where(dense == 0, np.nan, dense)

    ZerosAsMissing.__module__ = __name__
    update_registered_converter(
        ZerosAsMissing, "ModelkitZerosAsMissing", calculate_sklearn_identity, _convert_zeros
    )
    return ZerosAsMissing


def _convert_zeros(scope: Any, operator: Any, container: Any) -> None:
    from skl2onnx.common.data_types import guess_numpy_type, guess_proto_type

    source = operator.inputs[0]
    dtype = guess_numpy_type(source.type)
    proto = guess_proto_type(source.type)
    zero = scope.get_unique_variable_name("zero")
    container.add_initializer(zero, proto, [], [0.0])
    nan = scope.get_unique_variable_name("nan")
    container.add_initializer(nan, proto, [], [float(np.asarray(np.nan, dtype=dtype))])
    is_zero = scope.get_unique_variable_name("is_zero")
    container.add_node("Equal", [source.onnx_name, zero], is_zero)
    container.add_node("Where", [is_zero, nan, source.onnx_name], operator.outputs[0].full_name)


def _is_exactly(step: Any, module: str, names: tuple[str, ...]) -> bool:
    """Whether ``step`` is one of scikit-learn's own classes (a user's subclass may compute
    differently)."""
    cls = type(step)
    return cls.__module__.startswith(module) and cls.__name__ in names


def _rewrite_of(step: Any, missing_string: str | None) -> str | None:
    if _is_exactly(step, "sklearn.preprocessing", _SCALERS):
        return "scaler"
    if _numeric_imputer(step):
        return "numbers"
    if type(step).__module__.startswith("xgboost.") and callable(
        getattr(step, "get_booster", None)
    ):
        try:
            booster = step.get_booster()
            named = booster.feature_names is not None or booster.feature_types is not None
        except Exception:  # noqa: BLE001 - not fitted: skl2onnx says so
            return None
        return "xgboost" if named else None
    if missing_string is not None and _needs_rewrite(step):
        return _kind(step)
    return None


def _needs_rewrite(step: Any) -> bool:
    kind = _kind(step)
    if kind == "imputer":
        # Only NaN: the runner feeds a missing string as NaN to scikit-learn, and an imputer
        # whose marker is None leaves NaN alone.
        return _is_string_array(getattr(step, "statistics_", None)) and _is_nan(step.missing_values)
    if kind == "encoder":
        # Only encoders of strings: one of numbers takes NaN in a float tensor, as it is.
        categories = getattr(step, "categories_", None) or []
        return all(_is_string_array(values) for values in categories) and any(
            is_missing(v) for values in categories for v in values.tolist()
        )
    return False


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value  # noqa: PLR0124 - NaN only


def _marked(values: np.ndarray, sentinel: str) -> np.ndarray:
    """String categories with NaN as the sentinel.

    A missing string reaches scikit-learn as NaN, so the NaN category (scikit-learn sorts it
    last) is the one missing values select; a None category, which NaN does not select, gets a
    marker the runner never feeds.
    """
    marked: np.ndarray = values.copy()
    for j, value in enumerate(values.tolist()):
        if _is_nan(value):
            marked[j] = sentinel
        elif is_missing(value):
            marked[j] = f"{sentinel}(none)"
    return marked


_PRECISE: dict[tuple[type, bool], type] = {}


def _precise(cls: type, *, passthrough: bool = False) -> type:
    """A subclass of a scikit-learn step, registered with skl2onnx with modelkit's converter.

    A subclass, so that only modelkit's copies convert differently: skl2onnx picks converters
    by class, and the user's own conversions keep skl2onnx's. ``passthrough``: the step's work
    is done by the step before it (a scaler fused into its imputer). Call it holding the lock.
    """
    known = _PRECISE.get((cls, passthrough))
    if known is not None:
        return known
    from skl2onnx import update_registered_converter
    from skl2onnx.shape_calculators.ordinal_encoder import (
        calculate_sklearn_ordinal_encoder_output_shapes,
    )

    prefix = "ModelkitFused" if passthrough else "Modelkit"
    subclass = type(f"{prefix}{cls.__name__}", (cls,), {"__module__": __name__})
    shapes: Callable[..., None] = _numbers_shape
    converter: Callable[..., None] = _convert_passthrough if passthrough else _convert_numbers
    if cls.__name__ == "OrdinalEncoder":
        shapes, converter = (
            calculate_sklearn_ordinal_encoder_output_shapes,
            _convert_ordinal_encoder,
        )
    update_registered_converter(subclass, subclass.__name__, shapes, converter)
    _PRECISE[cls, passthrough] = subclass
    return subclass


def _scaling(scaler: Any) -> list[tuple[str, np.ndarray]]:
    """scikit-learn's ``transform`` of a scaler, as (ONNX operator, float64 constant) steps."""
    name = next(c.__name__ for c in type(scaler).__mro__ if c.__name__ in _SCALERS)
    operations: list[tuple[str, np.ndarray]] = []
    if name == "StandardScaler":
        if scaler.with_mean:
            operations.append(("Sub", scaler.mean_))
        if scaler.with_std:
            operations.append(("Div", scaler.scale_))
    elif name == "RobustScaler":
        if scaler.with_centering:
            operations.append(("Sub", scaler.center_))
        if scaler.with_scaling:
            operations.append(("Div", scaler.scale_))
    elif name == "MaxAbsScaler":
        operations.append(("Div", scaler.scale_))
    else:
        operations += [("Mul", scaler.scale_), ("Add", scaler.min_)]
        if getattr(scaler, "clip", False):
            operations.append(("Clip", np.asarray(scaler.feature_range, dtype=np.float64)))
    return operations


def _numbers_shape(operator: Any) -> None:
    """Output of modelkit's numeric steps: one column per input column (less those an imputer
    drops), float32, or float64 when ``modelkit_double_output_`` says so (or passed through)."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    step = operator.raw_operator
    widths = [variable.get_second_dimension() for variable in operator.inputs]
    width = sum(widths) if all(isinstance(w, int) for w in widths) else None
    statistics = getattr(step, "statistics_", None)
    if statistics is not None and not getattr(step, "keep_empty_features", False):
        width = int(np.isfinite(statistics).sum())
    rows = operator.inputs[0].get_first_dimension()
    if type(step).__name__.startswith("ModelkitFused"):
        kind = type(operator.inputs[0].type)
    elif getattr(step, "modelkit_double_output_", False):
        kind = DoubleTensorType
    else:
        kind = FloatTensorType
    operator.outputs[0].type = kind([rows, width])


def _convert_passthrough(scope: Any, operator: Any, container: Any) -> None:
    from skl2onnx.operator_converters.common import concatenate_variables

    features = concatenate_variables(scope, operator.inputs, container)
    container.add_node("Identity", features, operator.outputs[0].full_name)


def _convert_numbers(scope: Any, operator: Any, container: Any) -> None:
    """A scaler, or an imputer and the scaler after it, computed as scikit-learn does: in
    float64 with the fitted float64 constants, rounded to float32 at the end.

    Each input is cast to float64 under a name ending in :data:`AS_DOUBLE`, so that the graph
    can later feed it the float64 column itself (scikit-learn scales the value it was given, not
    its float32 rounding).
    """
    from skl2onnx.common.data_types import guess_proto_type
    from skl2onnx.proto import onnx_proto

    step = operator.raw_operator
    double = onnx_proto.TensorProto.DOUBLE
    casts = []
    for variable in operator.inputs:
        cast = scope.get_unique_variable_name(f"{variable.onnx_name}{AS_DOUBLE}")
        container.add_node("Cast", variable.onnx_name, cast, to=double)
        casts.append(cast)
    current = casts[0]
    if len(casts) > 1:
        current = scope.get_unique_variable_name("numbers_double")
        container.add_node("Concat", casts, current, axis=1)

    def constant(values: Any) -> str:
        array = np.asarray(values, dtype=np.float64)
        name = str(scope.get_unique_variable_name("numbers_constant"))
        container.add_initializer(name, double, list(array.shape), array.ravel().tolist())
        return name

    operations: list[tuple[str, np.ndarray]] = []
    if hasattr(step, "statistics_"):  # an imputer, maybe with the scaler after it
        missing = scope.get_unique_variable_name("numbers_missing")
        container.add_node("IsNaN", current, missing)
        imputed = scope.get_unique_variable_name("numbers_imputed")
        container.add_node("Where", [missing, constant(step.statistics_), current], imputed)
        current = imputed
        empty = np.isnan(step.statistics_)
        if empty.any() and not getattr(step, "keep_empty_features", False):
            # scikit-learn drops the columns it saw no value in.
            kept = scope.get_unique_variable_name("numbers_kept")
            container.add_initializer(
                kept, onnx_proto.TensorProto.INT64, [int((~empty).sum())], np.flatnonzero(~empty)
            )
            gathered = scope.get_unique_variable_name("numbers_gathered")
            container.add_node("Gather", [current, kept], gathered, axis=1)
            current = gathered
        scaler = getattr(step, "modelkit_scaler_", None)
        if scaler is not None:
            operations = _scaling(scaler)
    else:
        operations = _scaling(step)
    for op_type, values in operations:
        result = scope.get_unique_variable_name(f"numbers_{op_type.lower()}")
        if op_type == "Clip":
            container.add_node("Clip", [current, constant(values[0]), constant(values[1])], result)
        else:
            container.add_node(op_type, [current, constant(values)], result)
        current = result
    container.add_node(
        "Cast",
        current,
        operator.outputs[0].full_name,
        to=guess_proto_type(operator.outputs[0].type),
    )


def _convert_ordinal_encoder(scope: Any, operator: Any, container: Any) -> None:
    """Per string column, a LabelEncoder from categories to float codes; missing and unknown
    categories get scikit-learn's ``encoded_missing_value`` and ``unknown_value``."""
    from skl2onnx.common._apply_operation import apply_cast, apply_concat
    from skl2onnx.proto import onnx_proto

    encoder = operator.raw_operator
    if getattr(encoder, "_infrequent_enabled", False):
        raise NotImplementedError(
            "OrdinalEncoder with max_categories or min_frequency and missing strings"
        )
    unknown = (
        float(encoder.unknown_value)
        if encoder.handle_unknown == "use_encoded_value" and encoder.unknown_value is not None
        else float("nan")  # scikit-learn refuses the row; the parity check leaves it out
    )
    # (input, column in it) for each feature: string inputs cannot be concatenated into one.
    sources = [
        (variable.onnx_name, j)
        for variable in operator.inputs
        for j in range(variable.get_second_dimension() or 1)
    ]
    if len(sources) != len(encoder.categories_):
        raise RuntimeError(
            f"OrdinalEncoder has {len(encoder.categories_)} features but gets {len(sources)} "
            "columns (or inputs of unknown width)."
        )
    columns = []
    for index, categories in enumerate(encoder.categories_):
        position = scope.get_unique_variable_name("ordinal_index")
        source, within = sources[index]
        container.add_initializer(position, onnx_proto.TensorProto.INT64, [1], [within])
        column = scope.get_unique_variable_name("ordinal_column")
        container.add_node(
            "ArrayFeatureExtractor",
            [source, position],
            column,
            op_domain="ai.onnx.ml",
            name=scope.get_unique_operator_name("ArrayFeatureExtractor"),
        )
        values = np.arange(len(categories), dtype=np.float32)
        keys = [str(c) for c in categories.tolist()]
        if encoder.modelkit_missing_last_[index]:
            values[-1] = np.float32(encoder.encoded_missing_value)
        codes = scope.get_unique_variable_name("ordinal_codes")
        container.add_node(
            "LabelEncoder",
            column,
            codes,
            op_domain="ai.onnx.ml",
            op_version=2,
            keys_strings=[k.encode("utf-8") for k in keys],
            values_floats=values,
            default_float=unknown,
            name=scope.get_unique_operator_name("LabelEncoder"),
        )
        columns.append(codes)
    joined = scope.get_unique_variable_name("ordinal_joined")
    apply_concat(scope, columns, joined, container, axis=1)
    floating = np.issubdtype(encoder.dtype, np.floating)
    apply_cast(
        scope,
        joined,
        operator.outputs[0].full_name,
        container,
        to=onnx_proto.TensorProto.FLOAT if floating else onnx_proto.TensorProto.INT64,
    )


# -- converter fixes ----------------------------------------------------------------------------


@contextmanager
def converter_fixes(estimator: Any) -> Iterator[None]:
    """Register what ``estimator`` needs with skl2onnx, and fix its tree converters meanwhile."""
    with _LOCK:
        for _, step in steps(estimator):
            package = type(step).__module__.partition(".")[0]
            if package in ("xgboost", "lightgbm"):
                _register_boosting_converters(package)
        restore = _patch_tree_builders()
        try:
            yield
        finally:
            restore()


@functools.cache
def _register_boosting_converters(package: str) -> None:
    """onnxmltools' converters for XGBoost's or LightGBM's scikit-learn estimators."""
    require("onnxmltools", extra="convert", feature=f"Converting {package} models to ONNX")
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    if package == "xgboost":
        import xgboost
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import (
            convert_xgboost,
        )

        update_registered_converter(
            xgboost.XGBClassifier,
            "XGBoostXGBClassifier",
            calculate_linear_classifier_output_shapes,
            convert_xgboost,
            options=classifier_options,
        )
        update_registered_converter(
            xgboost.XGBRegressor,
            "XGBoostXGBRegressor",
            calculate_linear_regressor_output_shapes,
            convert_xgboost,
        )
    else:
        import lightgbm
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import (
            convert_lightgbm,
        )

        update_registered_converter(
            lightgbm.LGBMClassifier,
            "LightGbmLGBMClassifier",
            calculate_linear_classifier_output_shapes,
            convert_lightgbm,
            options=classifier_options,
        )
        update_registered_converter(
            lightgbm.LGBMRegressor,
            "LightGbmLGBMRegressor",
            calculate_linear_regressor_output_shapes,
            convert_lightgbm,
            options={"split": None},
        )


def _patch_tree_builders() -> Callable[[], None]:
    """Swap skl2onnx's tree builders for fixed ones wherever bound; the result undoes it."""
    from skl2onnx.common import tree_ensemble

    fixes = {
        tree_ensemble.add_tree_to_attribute_pairs: _routed(
            tree_ensemble.add_tree_to_attribute_pairs, learned=True
        ),
        tree_ensemble.add_tree_to_attribute_pairs_hist_gradient_boosting: _routed(
            tree_ensemble.add_tree_to_attribute_pairs_hist_gradient_boosting, learned=False
        ),
    }
    swapped: list[tuple[Any, str, Any]] = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("skl2onnx") or module is None:
            continue
        for attribute, value in list(vars(module).items()):
            fixed = fixes.get(value) if callable(value) else None
            if fixed is not None:
                setattr(module, attribute, fixed)
                swapped.append((module, attribute, value))

    def restore() -> None:
        for module, attribute, value in swapped:
            setattr(module, attribute, value)

    return restore


def _routed(build: Callable[..., None], *, learned: bool) -> Callable[..., None]:
    """``build`` (one tree into the ensemble's attributes), then where each node sends a
    missing value: an integer (the onnx package refuses booleans), taken from scikit-learn's
    ``missing_go_to_left`` when ``learned`` (skl2onnx leaves it 0: always the false branch)."""

    def fixed(
        attr_pairs: dict[str, list[Any]], is_classifier: Any, tree: Any, *args: Any, **kwargs: Any
    ) -> None:
        tracks = attr_pairs["nodes_missing_value_tracks_true"]
        start = len(tracks)
        build(attr_pairs, is_classifier, tree, *args, **kwargs)
        left = getattr(tree, "missing_go_to_left", None) if learned else None
        modes = attr_pairs["nodes_modes"]
        for k in range(start, len(tracks)):
            if left is not None:
                tracks[k] = int(modes[k] != "LEAF" and bool(left[k - start]))
            else:
                tracks[k] = int(tracks[k])

    return fixed


# -- errors -------------------------------------------------------------------------------------


def unsupported(estimator: Any) -> tuple[str, Any, str, str] | None:
    """A step skl2onnx would convert wrongly without saying so: ``(path, step, reason, advice)``.

    The parity check would catch it too; this names the step and what to change instead of
    showing rows.
    """
    for path, step in steps(estimator):
        categorical = getattr(step, "is_categorical_", None)
        if (
            type(step).__name__.startswith("HistGradientBoosting")
            and categorical is not None
            and bool(np.any(categorical))
        ):
            return (
                path,
                step,
                "skl2onnx converts its numeric splits only, not its categorical_features",
                "encode those columns with a OneHotEncoder instead of categorical_features",
            )
    return None


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of the chain that says something: wrappers add no reason."""
    chain = [exc]
    seen = {id(exc)}
    current: BaseException | None = exc
    while current is not None:
        following = current.__cause__
        if following is None and not current.__suppress_context__:
            following = current.__context__
        if following is None or id(following) in seen:
            break
        seen.add(id(following))
        chain.append(following)
        current = following
    for candidate in reversed(chain):
        if str(candidate).strip() and not isinstance(
            candidate, KeyError | IndexError | StopIteration | AttributeError
        ):
            return candidate
    return exc


def failing_step(exc: BaseException, estimator: Any) -> tuple[str, Any] | None:
    """The ``(path, step)`` skl2onnx was converting (or typing) when it raised ``exc``."""
    by_id = {id(step): (path, step) for path, step in steps(estimator)}
    found: tuple[str, Any] | None = None
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        trace = current.__traceback__
        while trace is not None:
            operator = trace.tb_frame.f_locals.get("operator")
            raw = getattr(operator, "raw_operator", None)
            if raw is not None and id(raw) in by_id:
                found = by_id[id(raw)]  # the innermost frame wins
            trace = trace.tb_next
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return None


# -- float64 inputs -----------------------------------------------------------------------------

# Operators that only move values around: the same operator on float64 gives the float64 values.
_MOVES = frozenset(
    {"Identity", "Concat", "ArrayFeatureExtractor", "Gather", "Slice", "Reshape", "Flatten"}
)


def feed_doubles(onnx: Any, graph: Any, doubles: dict[str, str]) -> None:
    """Feed modelkit's float64 casts (see :data:`AS_DOUBLE`) from the float64 inputs.

    ``doubles`` maps each float32 tensor that rounds an input to the float64 tensor it rounds.
    A cast whose float32 input comes from those through operators that only move values is
    replaced by the same moves on the float64 tensors: scikit-learn's arithmetic sees the
    values it would have seen.
    """
    producers = {output: node for node in graph.node for output in node.output}
    taken = {*producers, *(i.name for i in graph.input), *(i.name for i in graph.initializer)}
    known: dict[str, str | None] = dict(doubles)
    pending: list[Any] = []

    def unique(name: str) -> str:
        while name in taken:
            name += "_"
        taken.add(name)
        return name

    def double_of(name: str) -> str | None:
        if name in known:
            return known[name]
        known[name] = None  # until proven otherwise (and no cycles)
        node = producers.get(name)
        if node is None or node.op_type not in _MOVES or len(node.output) != 1:
            return None
        count = len(node.input) if node.op_type == "Concat" else 1
        sources = [double_of(n) for n in node.input[:count]]
        if any(source is None for source in sources):
            return None
        moved = onnx.NodeProto()
        moved.CopyFrom(node)
        del moved.input[:]
        moved.input.extend([*(s for s in sources if s is not None), *node.input[count:]])
        del moved.output[:]
        moved.output.append(unique(f"{name}{AS_DOUBLE}"))
        moved.name = unique(f"{node.name or node.op_type}{AS_DOUBLE}")
        pending.append(moved)
        output = str(moved.output[0])
        known[name] = output
        return output

    rebuilt = []
    for node in graph.node:
        if node.op_type == "Cast" and AS_DOUBLE in node.output[0]:
            source = double_of(node.input[0])
            rebuilt += pending
            pending.clear()
            if source is not None:
                rebuilt.append(
                    onnx.helper.make_node("Identity", [source], list(node.output), name=node.name)
                )
                continue
        rebuilt.append(node)
    del graph.node[:]
    graph.node.extend(rebuilt)


# -- the graph, simplified ------------------------------------------------------------------------


def simplify(graph: Any) -> None:
    """Drop what the graph computes for nothing, keeping its inputs, outputs and answers.

    onnxruntime runs every node of a graph, and on one record a node's fixed cost (about a
    microsecond) is most of its work: the regrouped inputs leave a Split whose parts a Concat
    joins again, Identity nodes, and the float32 casts of columns that modelkit's numeric
    converters read as float64 instead. A Concat of every output of a Split, in order and on
    the same axis, is that Split's input; an Identity is its input; a node whose outputs nothing
    reads is left out, and so is an initializer nothing reads.
    """
    outputs = {value.name for value in graph.output}
    producers = {output: node for node in graph.node for output in node.output}
    alias: dict[str, str] = {}

    def resolved(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    for node in graph.node:
        source = _passed_through(node, producers, resolved)
        if source is not None and node.output[0] not in outputs:
            alias[node.output[0]] = source
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name in alias:
                node.input[position] = resolved(name)
    # An Identity giving a graph output: its producer names the output itself, when nothing
    # else needs the tensor's old name.
    read = [name for node in graph.node for name in node.input]
    for node in graph.node:
        if node.op_type != "Identity" or node.output[0] not in outputs:
            continue
        source = node.input[0]
        producer = producers.get(source)
        if producer is None or source in outputs or read.count(source) != 1:
            continue
        producer.output[list(producer.output).index(source)] = node.output[0]
        node.ClearField("output")  # nothing reads it now: dropped below
    _drop_unread(graph)


def _passed_through(
    node: Any, producers: dict[str, Any], resolved: Callable[[str], str]
) -> str | None:
    """The tensor ``node`` gives back unchanged, if it does."""
    if node.op_type == "Identity" or (node.op_type == "Concat" and len(node.input) == 1):
        return resolved(node.input[0])
    if node.op_type != "Concat" or not node.input:
        return None
    split = producers.get(node.input[0])
    if (
        split is None
        or split.op_type != "Split"
        or list(node.input) != list(split.output)
        or _axis(split, default=0) != _axis(node, default=None)
    ):
        return None
    return resolved(split.input[0])


def _axis(node: Any, *, default: int | None) -> int | None:
    return next((int(a.i) for a in node.attribute if a.name == "axis"), default)


def _drop_unread(graph: Any) -> None:
    """Leave out the nodes whose outputs nothing reads, then the unread initializers."""
    needed = {value.name for value in graph.output}
    kept = []
    for node in reversed(graph.node):
        if not any(output in needed for output in node.output if output):
            continue
        kept.append(node)
        needed.update(node.input)
        needed.update(_read_in_subgraphs(node))
    del graph.node[:]
    graph.node.extend(reversed(kept))
    initializers = [tensor for tensor in graph.initializer if tensor.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    produced = {output for node in graph.node for output in node.output}
    described = [value for value in graph.value_info if value.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(described)


def _read_in_subgraphs(node: Any) -> set[str]:
    """Every name the subgraphs of ``node`` (an If's branches, a Loop's body) read."""
    names: set[str] = set()
    for attribute in node.attribute:
        for subgraph in [*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs]:
            for inner in subgraph.node:
                names.update(inner.input)
                names.update(_read_in_subgraphs(inner))
    return names


#: The most floats one record's merged one-hot encoding may take (see :func:`merge_one_hot`).
_ONE_HOT_WIDTH = 256


def merge_one_hot(onnx: Any, model: Any) -> None:
    """One OneHotEncoder for the string columns of a tensor, where skl2onnx writes one per column.

    skl2onnx encodes each column with its own OneHotEncoder, on a slice of its input (a Split
    output, or a Gather or ArrayFeatureExtractor of one column), then concatenates them: on one
    record those nodes cost more than their work. One encoder over the union of the
    categories, on all the columns at once, followed by a Gather of each column's own
    categories, gives the same matrix: a value another column knows selects a position the
    Gather leaves out, which is what an unknown value gives when unknown values are ignored
    (``zeros=1``; an encoder that refuses them is left alone). The encoder's output holds every
    column against the union, so the merge is done only while that stays small.
    """
    numpy_helper, helper = onnx.numpy_helper, onnx.helper
    graph = model.graph
    widths = _widths(onnx, model)
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {value.name for value in graph.output}
    taken = {*producers, *constants, *(value.name for value in graph.input)}

    def unique(name: str) -> str:
        while name in taken:
            name += "_"
        taken.add(name)
        return name

    replaced: dict[int, list[Any]] = {}  # position of the Reshape in graph.node -> new nodes
    dropped: set[int] = set()
    for position, reshape in enumerate(graph.node):
        found = _one_hot_columns(
            reshape,
            producers=producers,
            readers=readers,
            constants=constants,
            widths=widths,
            outputs=outputs,
        )
        if found is None:
            continue
        source, columns, encoders = found
        categories = [list(_attribute(encoder, "cats_strings")) for encoder in encoders]
        union = sorted({value for values in categories for value in values})
        if len(columns) * len(union) > _ONE_HOT_WIDTH:
            continue
        index = {value: j for j, value in enumerate(union)}
        selected = [
            k * len(union) + index[value] for k, values in enumerate(categories) for value in values
        ]
        nodes = []
        if columns != list(range(widths.get(source, -1))):
            picked = unique(f"{source}_strings")
            indices = unique(f"{source}_columns")
            graph.initializer.append(
                numpy_helper.from_array(np.asarray(columns, dtype=np.int64), indices)
            )
            nodes.append(helper.make_node("Gather", [source, indices], [picked], axis=1))
            source = picked
        encoded, flat, shape, kept = (
            unique(f"{source}_one_hot"),
            unique(f"{source}_one_hot_flat"),
            unique(f"{source}_one_hot_shape"),
            unique(f"{source}_one_hot_kept"),
        )
        graph.initializer.extend(
            [
                numpy_helper.from_array(
                    np.asarray([-1, len(columns) * len(union)], dtype=np.int64), shape
                ),
                numpy_helper.from_array(np.asarray(selected, dtype=np.int64), kept),
            ]
        )
        nodes += [
            helper.make_node(
                "OneHotEncoder",
                [source],
                [encoded],
                domain="ai.onnx.ml",
                cats_strings=union,
                zeros=1,
                name=unique(f"{source}_one_hot_encoder"),
            ),
            helper.make_node("Reshape", [encoded, shape], [flat]),
            helper.make_node("Gather", [flat, kept], list(reshape.output), axis=1),
        ]
        replaced[position] = nodes
        dropped.add(position)
    if not replaced:
        return
    rebuilt = []
    for position, node in enumerate(graph.node):
        rebuilt += replaced.get(position, [] if position in dropped else [node])
    del graph.node[:]
    graph.node.extend(rebuilt)
    _drop_unread(graph)


def _one_hot_columns(
    reshape: Any,
    *,
    producers: dict[str, Any],
    readers: dict[str, list[Any]],
    constants: dict[str, np.ndarray],
    widths: dict[str, int],
    outputs: set[str],
) -> tuple[str, list[int], list[Any]] | None:
    """``(tensor, its columns, their encoders)`` when ``reshape`` flattens skl2onnx's per-column
    string one-hot encoding of columns of one tensor; otherwise ``None``."""
    if reshape.op_type != "Reshape" or len(reshape.input) != 2:
        return None
    concat = producers.get(reshape.input[0])
    if concat is None or concat.op_type != "Concat" or _axis(concat, default=None) not in (-1, 2):
        return None
    encoders = [producers[name] for name in concat.input if name in producers]
    if (
        len(encoders) < 2
        or len(encoders) != len(concat.input)
        or not all(
            encoder.op_type == "OneHotEncoder"
            and _attribute(encoder, "zeros") == 1
            and _attribute(encoder, "cats_strings")
            for encoder in encoders
        )
    ):
        return None
    total = sum(len(_attribute(encoder, "cats_strings")) for encoder in encoders)
    shape = constants.get(reshape.input[1])
    if shape is None or shape.tolist() != [-1, total]:
        return None
    # Each intermediate tensor must be read by the next node alone (and be no graph output).
    chain = [reshape.input[0], *concat.input]
    if any(len(readers.get(name, [])) != 1 or name in outputs for name in chain):
        return None
    slices = [_column_of(encoder.input[0], producers, constants, widths) for encoder in encoders]
    sources = {found[0] for found in slices if found is not None}
    if None in slices or len(sources) != 1:
        return None
    for encoder in encoders:
        if len(readers.get(encoder.input[0], [])) != 1 or encoder.input[0] in outputs:
            return None
    return sources.pop(), [found[1] for found in slices if found is not None], encoders


def _column_of(
    name: str,
    producers: dict[str, Any],
    constants: dict[str, np.ndarray],
    widths: dict[str, int],
) -> tuple[str, int] | None:
    """``(tensor, column)`` when ``name`` is one column of a 2-D tensor, as ``[N, 1]``."""
    node = producers.get(name)
    if node is None:
        return None
    if node.op_type == "Split" and _axis(node, default=0) == 1:
        source = node.input[0]
        sizes = constants.get(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        single = (
            sizes.tolist() == [1] * len(node.output)
            if sizes is not None
            else widths.get(source) == len(node.output)
        )
        if not single:
            return None
        return source, list(node.output).index(name)
    if node.op_type in ("Gather", "ArrayFeatureExtractor"):
        if node.op_type == "Gather" and _axis(node, default=0) != 1:
            return None
        index = constants.get(node.input[1])
        if index is None or index.shape != (1,) or int(index[0]) < 0:
            return None
        return node.input[0], int(index[0])
    return None


def _attribute(node: Any, name: str) -> Any:
    for attribute in node.attribute:
        if attribute.name == name:
            if attribute.strings:
                return [value.decode("utf-8") for value in attribute.strings]
            return int(attribute.i)
    return None


def _widths(onnx: Any, model: Any) -> dict[str, int]:
    """The static second dimension of the graph's 2-D tensors, as shape inference finds them."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    widths = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 2 and dims[1].HasField("dim_value"):
            widths[value.name] = int(dims[1].dim_value)
    return widths
