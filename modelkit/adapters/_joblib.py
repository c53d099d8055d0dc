"""The ``joblib`` adapter: fitted scikit-learn estimators and pipelines, or any picklable object
with ``predict``."""

from __future__ import annotations

import functools
import io
import sys
import uuid
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._deps import require
from .._environment import distribution_of, installed_version
from .._infer import infer_tabular_signature
from .._protocol import SavedModel, rejected
from .._sklearn import (
    holds_none,
    ignore_version_warning,
    is_sklearn,
    labels_may_differ_from_argmax,
    pipeline_parts,
    task_of,
)
from .._spec import (
    ColumnSpec,
    Outputs,
    Signature,
    Table,
    TabularInputs,
    Task,
    TensorInputs,
    column_array,
    data_frame,
    is_missing,
    none_mask,
    python_scalar,
    record_table,
)
from .._validation import TabularValidator
from ..errors import BundleError, InvalidInputError

if TYPE_CHECKING:
    from .._bundle import Artifacts
    from .._manifest import Manifest

__all__ = ["JoblibAdapter", "JoblibRunner", "describe_estimator", "inputs_for", "runner_for"]

ARTIFACT = "model.joblib"
# What an estimator raises for inputs it cannot take (unseen categories, wrong shapes...).
_INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError)
# Sample rows each probe for missing values runs on: enough to reach every branch of a pipeline's
# column handling, few enough that probing a wide table stays cheap.
_PROBE_ROWS = 16
# Rows generated from the sample's to establish how the model's labels follow its probabilities.
_GENERATED_ROWS = 512


class JoblibAdapter:
    """Saves with ``joblib.dump`` and loads with ``joblib.load`` from verified bytes."""

    name = "joblib"
    options = ()

    def accepts(self, obj: object) -> bool:
        return callable(getattr(obj, "predict", None))

    def save(
        self,
        obj: Any,
        directory: Path,
        *,
        sample_input: Any,
        inputs: TabularInputs | TensorInputs | None,
        outputs: Outputs | None,
    ) -> SavedModel:
        import joblib

        saved = describe_estimator(
            obj,
            fmt=self.name,
            artifact=ARTIFACT,
            sample_input=sample_input,
            inputs=inputs,
            outputs=outputs,
            packages=("joblib",),
        )
        with open(directory / ARTIFACT, "wb") as handle:
            joblib.dump(obj, handle)
        return saved

    def load(
        self, artifacts: Artifacts, manifest: Manifest, *, options: Mapping[str, Any]
    ) -> JoblibRunner:
        import joblib

        details = manifest.adapter
        name = str(details.get("artifact", ARTIFACT))
        with warnings.catch_warnings():
            # Version differences were already reported, before unpickling, by the environment
            # check; scikit-learn's own warning would repeat it after the fact.
            ignore_version_warning()
            estimator = joblib.load(artifacts.open(name))
        return runner_for(estimator, manifest)

    def load_trusted_pickle(self, data: bytes) -> tuple[Any, Signature, dict[str, Any]]:
        """Unpickle a bare joblib/pickle file the caller trusts, and describe it."""
        import joblib

        estimator = joblib.load(io.BytesIO(data))
        inputs, layout, dtype = inputs_for(estimator, None, None)
        outputs = _outputs_of(estimator, task_of(estimator))
        details = {"artifact": ARTIFACT, "layout": layout, "dtype": dtype}
        return estimator, Signature(inputs=inputs, outputs=outputs), details


def describe_estimator(
    obj: Any,
    *,
    fmt: str,
    artifact: str,
    sample_input: Any,
    inputs: TabularInputs | TensorInputs | None,
    outputs: Outputs | None,
    packages: tuple[str, ...],
) -> SavedModel:
    """What a format that stores an estimator itself (joblib, skops) records about it.

    The signature, the layout the estimator takes its inputs in, and how its labels follow its
    probabilities (the estimator runs on the sample here, before anything is written).

    Args:
        obj: the fitted estimator.
        fmt: the format's name, for messages.
        artifact: the file the format writes the estimator to.
        sample_input: the caller's sample rows, or ``None``.
        inputs: inputs the caller declared, or ``None`` to infer them.
        outputs: outputs the caller declared, or ``None`` to infer them.
        packages: the distributions the format itself needs to load the estimator.

    Raises:
        BundleError: the object has no ``predict``, is no classifier or regressor, takes
            tensors, or cannot predict on its own sample.
    """
    if not callable(getattr(obj, "predict", None)):
        raise BundleError(
            f"The {fmt} format saves objects with a predict() method; "
            f"{type(obj).__qualname__} has none."
        )
    if isinstance(inputs, TensorInputs):
        raise BundleError(f"The {fmt} format needs tabular inputs (named columns).")
    inputs, layout, dtype = inputs_for(obj, sample_input, inputs)
    task = outputs.task if outputs is not None else task_of(obj)
    if task not in ("classification", "regression"):
        raise BundleError(f"The {fmt} format serves classifiers and regressors, not task {task!r}.")
    declared = _outputs_of(obj, task)
    full = Signature(inputs=inputs, outputs=declared)
    runner = JoblibRunner(obj, full, layout=layout, dtype=dtype)
    labels = None
    if sample_input is not None:
        has_probabilities, labels = runner.check_sample(sample_input)
        if has_probabilities != declared.has_probabilities:
            full = Signature(
                inputs=inputs,
                outputs=declared.model_copy(update={"has_probabilities": has_probabilities}),
            )
    needed = [*packages, "numpy"]
    if is_sklearn(obj):
        needed.append("scikit-learn")
    if layout == "dataframe":
        needed.append("pandas")
    owner = distribution_of(type(obj).__module__)
    if owner:
        needed.append(owner)
    versions = {p: v for p in needed if (v := installed_version(p)) is not None}
    details = {
        "artifact": artifact,
        "layout": layout,
        "dtype": dtype,
        "estimator": f"{type(obj).__module__}.{type(obj).__qualname__}",
    }
    if task == "classification" and labels is not None:
        details["labels"] = labels
    return SavedModel(signature=full, details=details, packages=versions)


def _outputs_of(obj: Any, task: Task) -> Outputs:
    """An estimator's outputs for ``task``: a classifier's classes (one label per row), and
    whether it gives probabilities."""
    if task != "classification":
        return Outputs(task=task)
    raw_classes = getattr(obj, "classes_", None)
    if raw_classes is None or np.ndim(raw_classes) != 1:
        return Outputs(task=task)
    classes = tuple(python_scalar(c) for c in np.asarray(raw_classes).tolist())
    return Outputs(
        task=task, classes=classes, has_probabilities=callable(getattr(obj, "predict_proba", None))
    )


def runner_for(estimator: Any, manifest: Manifest) -> JoblibRunner:
    """The runner of a deserialized estimator, as its manifest describes it."""
    details = manifest.adapter
    return JoblibRunner(
        estimator,
        manifest.signature,
        layout=str(details.get("layout", "array")),
        dtype=str(details.get("dtype", "float64")),
        labels=_labels_of(details.get("labels")),
    )


def inputs_for(
    obj: Any, sample_input: Any, declared: TabularInputs | None
) -> tuple[TabularInputs, str, str]:
    """The tabular inputs, the layout the estimator expects, and the array dtype."""
    names = getattr(obj, "feature_names_in_", None)
    if sample_input is not None:
        inputs, layout = infer_tabular_signature(sample_input)
        dtype = _sample_dtype(sample_input, layout)
        if names is not None and layout != "dataframe":
            layout = "dataframe"
        if declared is not None:
            _check_same_columns(declared, inputs)
            return declared, layout, dtype  # the declared nullability is the caller's decision
        return _with_missing_support(obj, inputs, layout, dtype, sample_input), layout, dtype
    if declared is not None:
        layout = "dataframe" if names is not None else "array"
        return declared, layout, _common_dtype(declared.columns)
    if names is not None:
        columns = tuple(ColumnSpec(name=str(n), type="number", dtype="float64") for n in names)
        return TabularInputs(columns=columns), "dataframe", "float64"
    count = getattr(obj, "n_features_in_", None)
    if isinstance(count, int) and count > 0:
        columns = tuple(
            ColumnSpec(name=f"x{j}", type="number", dtype="float64") for j in range(count)
        )
        return TabularInputs(columns=columns), "array", "float64"
    raise BundleError(
        f"Cannot tell what {type(obj).__qualname__} takes as input: pass sample_input= (a few "
        "rows of training data) or signature=."
    )


def _with_missing_support(
    obj: Any, inputs: TabularInputs, layout: str, dtype: str, sample: Any
) -> TabularInputs:
    """The inputs, with each column nullable where the fitted model takes a missing value.

    A sample without gaps in a column says nothing about whether the model can take one there
    (an imputer can; a bare linear model cannot), so the model is asked: sample rows are run
    with each column set missing in turn, all at once first, since that usually succeeds.
    """
    try:
        table = TabularValidator(inputs).batch(sample)
    except InvalidInputError:
        return inputs  # the sample check after this names the problem
    rows = min(table.length, _PROBE_ROWS)
    base = {name: values[:rows] for name, values in table.columns().items()}
    probed = [c for c in inputs.columns if not c.nullable]
    if not probed or rows == 0:
        return inputs
    signature = Signature(inputs=inputs, outputs=Outputs(task="regression"))
    runner = JoblibRunner(obj, signature, layout=layout, dtype=dtype)

    def blank(column: ColumnSpec) -> dict[str, np.ndarray]:
        missing = column.model_copy(update={"nullable": True})
        return {**base, column.name: column_array(missing, [None] * rows)}

    def accepts(tables: list[dict[str, np.ndarray]]) -> bool:
        data = {name: np.concatenate([t[name] for t in tables]) for name in base}
        probe = Table(table.names, rows * len(tables), data)
        return _answer(obj.predict, runner, probe) is not None

    if accepts([blank(c) for c in probed]):
        accepted = {c.name for c in probed}
    else:
        accepted = {c.name for c in probed if accepts([blank(c)])}
    inputs = TabularInputs(
        columns=tuple(
            c.model_copy(update={"nullable": True}) if c.name in accepted else c
            for c in inputs.columns
        )
    )
    return _with_missing_markers(obj, inputs, layout=layout, dtype=dtype, base=base, unseen=probed)


def _with_missing_markers(
    obj: Any,
    inputs: TabularInputs,
    *,
    layout: str,
    dtype: str,
    base: dict[str, np.ndarray],
    unseen: list[ColumnSpec],
) -> TabularInputs:
    """The inputs, with ``missing_marker="none"`` on the object columns where the model learned
    ``None`` as a value, when the sample had no gap there to tell.

    A model fitted on ``None`` in an object column learned it as a value of its own (scikit-learn
    imputes NaN, not ``None``), so feeding NaN would answer otherwise. The model is asked: where
    ``None`` gets another answer than a string it cannot have seen, ``None`` is a value it knows.
    Only models holding ``None`` in a fitted attribute are asked.
    """
    gapless = {c.name for c in unseen}
    candidates = [
        c.name
        for c in inputs.columns
        if c.name in gapless and c.type == "string" and c.dtype == "object" and c.categories is None
    ]
    if not candidates or not holds_none(obj):
        return inputs
    rows = len(next(iter(base.values())))
    columns = tuple(
        c.model_copy(update={"nullable": True, "missing_marker": "none"})
        if c.name in candidates
        else c
        for c in inputs.columns
    )
    signature = Signature(inputs=TabularInputs(columns=columns), outputs=Outputs(task="regression"))
    runner = JoblibRunner(obj, signature, layout=layout, dtype=dtype)
    never_seen = f"__modelkit_unseen_{uuid.uuid4().hex}__"

    # Probabilities tell apart what labels may not.
    method = getattr(obj, "predict_proba", obj.predict)

    def answer(name: str, value: str | None) -> np.ndarray | None:
        column = np.full(rows, value, dtype=object)
        return _answer(method, runner, Table(tuple(base), rows, {**base, name: column}))

    decided = set()
    for name in candidates:
        known, stranger = answer(name, None), answer(name, never_seen)
        if known is not None and (stranger is None or not np.array_equal(known, stranger)):
            decided.add(name)
    return TabularInputs(
        columns=tuple(
            c.model_copy(update={"missing_marker": "none"}) if c.name in decided else c
            for c in inputs.columns
        )
    )


def _answer(method: Callable[[Any], Any], runner: JoblibRunner, probe: Table) -> np.ndarray | None:
    """What the model answers to a save-time probe, or ``None`` if it refuses it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a probe's warnings are not the caller's
            return np.asarray(method(runner.encode(probe)))
    except Exception:  # noqa: BLE001 - any failure is a refusal
        return None


def _sample_dtype(sample: Any, layout: str) -> str:
    if layout != "array":
        return "object"
    return str(np.asarray(sample).dtype)


def _common_dtype(columns: tuple[ColumnSpec, ...]) -> str:
    types = {column.type for column in columns}
    if types <= {"number", "integer"}:
        return "float64"
    return "object"


def _check_same_columns(declared: TabularInputs, inferred: TabularInputs) -> None:
    given = tuple(c.name for c in declared.columns)
    found = tuple(c.name for c in inferred.columns)
    if given != found:
        raise BundleError(
            f"The signature's columns {list(given)} differ from the sample input's {list(found)}."
        )


class JoblibRunner:
    """Runs a deserialized estimator on validated inputs, in the layout it was trained on."""

    def __init__(
        self,
        estimator: Any,
        signature: Signature,
        *,
        layout: str,
        dtype: str,
        labels: str | None = None,
    ) -> None:
        if not isinstance(signature.inputs, TabularInputs):
            raise BundleError("The joblib format needs a tabular signature.")
        self.estimator = estimator
        self._columns = signature.inputs.columns
        self._names = [c.name for c in self._columns]
        self._layout = layout
        self._dtype = np.dtype(dtype)
        self._is_classifier = signature.outputs.task == "classification"
        self._has_probabilities = signature.outputs.has_probabilities
        self._transforms, self._final = pipeline_parts(estimator)
        # Where predict() is the arg-max of predict_proba() (established at save, see
        # labels_rule), one call gives labels and probabilities.
        self._argmax_classes = (
            _argmax_classes(self._final, labels) if self._has_probabilities else None
        )
        # Ties need the model's own word, unless its predict() takes the first of them too.
        self._ties_matter = not _predicts_the_argmax(self._final)
        self._none_columns = frozenset(
            j for j, c in enumerate(self._columns) if c.missing_marker == "none"
        )

    def run(self, inputs: Table | Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(inputs, Table):
            raise TypeError("The joblib format runs tabular inputs only.")
        return self._predict(self.encode, inputs)

    def run_record(self, values: tuple[Any, ...]) -> dict[str, Any]:
        if self._layout == "array":
            return self._predict(self._encode_record, values)
        return self._predict(self.encode, record_table(self._columns, values))

    def _encode_record(self, values: tuple[Any, ...]) -> np.ndarray:
        if self._dtype.kind in "iub" and any(is_missing(v) for v in values):
            # An integer array has no missing value: NaN (as an imputer takes it) needs floats.
            return np.array([values], dtype=np.float64)
        row = np.array([values], dtype=self._dtype)
        return self._array_missing(row) if row.dtype.kind == "O" else row

    def _array_missing(self, matrix: np.ndarray) -> np.ndarray:
        """An object matrix with each column's missing values as the model was fitted on them."""
        keep = self._none_columns
        if not keep:
            return _missing_as_nan(matrix)
        matrix = matrix.copy()
        for j in range(matrix.shape[1]):
            if j not in keep:
                matrix[:, j] = _missing_as_nan(matrix[:, j])
        return matrix

    def encode(self, table: Table) -> Any:
        """The batch as the estimator was trained on it: a DataFrame, an array or records."""
        if self._layout == "array":
            if self._dtype.kind in "iub":
                as_is = table.matrix()
                if as_is.dtype.kind == "O" or (as_is.dtype.kind == "f" and np.isnan(as_is).any()):
                    # Missing values: floats with NaN, as an imputer takes them (a cast to the
                    # integers the model was trained on would turn NaN into -2**63).
                    return np.asarray(_missing_as_nan(as_is), dtype=np.float64)
            matrix = table.matrix(self._dtype)
            return self._array_missing(matrix) if matrix.dtype.kind == "O" else matrix
        if self._layout == "records":
            return table.records()
        if table.frame is not None:
            return table.frame
        pandas = require("pandas", extra="pandas", feature="This model (trained on a DataFrame)")
        columns = table.columns()
        arrays = [_pandas_column(pandas, c, columns[c.name]) for c in self._columns]
        return data_frame(pandas, self._names, arrays, table.length)

    def _predict(self, encode: Callable[[Any], Any], raw: Any) -> dict[str, Any]:
        # Encoding is inside the try: a value the trained dtype cannot hold is the input's fault.
        # Overflow is the estimator's own business: trees cast to float32, where a number past
        # its range becomes inf and takes the branch scikit-learn gives it; numpy's warning about
        # that cast would be a raw traceback wherever warnings are errors.
        with np.errstate(over="ignore"):
            try:
                features = self._transform(encode(raw))
                if self._argmax_classes is not None:
                    probabilities = np.asarray(self._final.predict_proba(features))
                    labels = self._argmax_classes.take(_winners(probabilities), axis=0)
                    if self._ties_matter:
                        labels = self._settle_ties(features, probabilities, labels)
                    return {"label": labels, "probabilities": probabilities}
                labels = np.asarray(self._final.predict(features))
                if not self._is_classifier:
                    return {"value": labels}
                fields: dict[str, Any] = {"label": _plain_labels(labels)}
                if self._has_probabilities:
                    fields["probabilities"] = np.asarray(self._final.predict_proba(features))
                return fields
            except (*_INPUT_ERRORS, OverflowError) as exc:
                raise rejected(exc) from exc

    def _settle_ties(self, features: Any, probabilities: np.ndarray, labels: np.ndarray) -> Any:
        """``labels``, with ``predict`` asked for the rows whose top probabilities tie.

        Where two classes have the same probability the arg-max takes the first, while the model
        may decide otherwise: a linear model labels by the sign of its decision, whose logistic
        rounds to exactly 0.5 within about 1e-16 of the boundary. Only those rows are asked.
        """
        if probabilities.shape[1] == 2:  # the usual case, in a fiftieth of the general one
            tied = np.flatnonzero(probabilities[:, 0] == probabilities[:, 1])
        else:
            top = probabilities.max(axis=1, keepdims=True)
            tied = np.flatnonzero(np.count_nonzero(probabilities == top, axis=1) > 1)
        if not tied.size:
            return labels
        rows = features.iloc[tied] if hasattr(features, "iloc") else features[tied]
        labels = labels.copy()
        labels[tied] = _plain_labels(np.asarray(self._final.predict(rows)))
        return labels

    def _transform(self, inputs: Any) -> Any:
        """The inputs through a pipeline's transformers, once for all the calls that follow."""
        for step in self._transforms:
            inputs = step.transform(inputs)
        return inputs

    def labels_rule(self, table: Table) -> str:
        """``argmax`` where the model's labels are the arg-max of its probabilities (the same
        values, of the same type) on the sample's rows and on rows generated from them, else
        ``predict``.

        Established once, at save, for the fitted model (the manifest keeps it), so that each
        call asks the model once instead of twice.
        """
        if not self._has_probabilities or labels_may_differ_from_argmax(self._final):
            return "predict"
        classes = np.asarray(getattr(self._final, "classes_", ()))
        if classes.ndim != 1 or classes.size == 0 or table.length == 0:
            return "predict"
        agreed = False
        for rows in (table, _generated_rows(self._columns, table)):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the save's own warnings came already
                    features = self._transform(self.encode(rows))
                    labels = np.asarray(self._final.predict(features))
                    probabilities = np.asarray(self._final.predict_proba(features))
            except Exception:  # noqa: BLE001, S112 - generated rows it refuses: the others decide
                continue
            if probabilities.shape != (rows.length, classes.size):
                return "predict"
            derived = classes.take(probabilities.argmax(axis=1))
            # The same values of the same type (xgboost labels int32 where classes_ are int64).
            if not np.array_equal(labels, derived) or (
                _plain_labels(labels).dtype != _plain_labels(derived).dtype
            ):
                return "predict"
            agreed = True
        return "argmax" if agreed else "predict"

    def check_sample(self, sample: Any) -> tuple[bool, str]:
        """Run the sample through the estimator at save time; return whether it gives
        probabilities (some estimators advertise ``predict_proba`` but refuse to run it), and
        how its labels follow them (:meth:`labels_rule`)."""
        validator = TabularValidator(TabularInputs(columns=self._columns))
        try:
            table = validator.batch(sample)
        except InvalidInputError as exc:
            raise BundleError(f"The sample input does not fit the signature: {exc}") from exc
        encoded = self.encode(table)
        try:
            self.estimator.predict(encoded)
        except Exception as exc:
            raise BundleError(
                f"The model cannot predict on its own sample input: {type(exc).__name__}: {exc}"
            ) from exc
        if not self._has_probabilities:
            return False, "predict"
        try:
            self.estimator.predict_proba(encoded)
        except Exception:  # noqa: BLE001 - then the model simply gives no probabilities
            self._has_probabilities = False
            return False, "predict"
        return True, self.labels_rule(table)


def _winners(probabilities: np.ndarray) -> np.ndarray:
    """The arg-max of each row (the first of equal ones); two classes without numpy's strided
    arg-max, which costs ten times more on a tall matrix of two columns."""
    if probabilities.ndim == 2 and probabilities.shape[1] == 2:
        first, second = probabilities[:, 0], probabilities[:, 1]
        wins = second > first
        # As numpy's arg-max, the second also wins where it alone is NaN: looked for only when
        # there is a NaN (one pass over the contiguous matrix, not two over strided columns).
        if np.isnan(probabilities).any():
            wins |= np.isnan(second) & ~np.isnan(first)
        return wins.view(np.uint8)  # 0 or 1, the index take() wants, without a cast
    return np.asarray(probabilities.argmax(axis=1))


def _labels_of(recorded: object) -> str | None:
    """The manifest's ``labels`` rule; a value this version does not know asks ``predict``."""
    if recorded is None:
        return None
    return "argmax" if recorded == "argmax" else "predict"


def _argmax_classes(final: Any, labels: str | None) -> np.ndarray | None:
    """The classes, when the last step's ``predict`` is exactly the arg-max of its
    ``predict_proba``.

    ``labels`` is what the manifest says (see :meth:`JoblibRunner.labels_rule`). Bundles saved
    before it was recorded use the arg-max only for estimators whose ``predict`` is known to be
    it (scikit-learn's forests, as is or ending a pipeline).
    """
    classes = getattr(final, "classes_", None)
    if labels == "argmax":
        return None if classes is None else _plain_labels(np.asarray(classes))
    if labels is not None:
        return None
    if _predicts_the_argmax(final):
        return _plain_labels(np.asarray(final.classes_))
    return None


def _predicts_the_argmax(final: Any) -> bool:
    """Whether ``predict`` is, by its code, the arg-max of ``predict_proba``, ties included
    (scikit-learn's forests with one output)."""
    forest = sys.modules.get("sklearn.ensemble._forest")
    return (
        forest is not None
        and getattr(type(final), "predict", None) is forest.ForestClassifier.predict
        and getattr(final, "n_outputs_", None) == 1
    )


def _generated_rows(columns: tuple[ColumnSpec, ...], sample: Table) -> Table:
    """Rows made from the sample's: each column drawn on its own from the sample's values, and
    numbers also spread over and past the sample's range, with gaps where a column takes them.

    They reach combinations, and labels near the decision boundary, that a few training rows
    may not, to test a rule about the model rather than about its sample.
    """
    rng = np.random.default_rng(0)
    count = _GENERATED_ROWS
    data: dict[str, np.ndarray] = {}
    for column, (name, values) in zip(columns, sample.columns().items(), strict=True):
        drawn = values[rng.integers(0, len(values), count)]
        if drawn.dtype.kind == "f":
            finite = values[np.isfinite(values)]
            if finite.size:
                low, high = float(finite.min()), float(finite.max())
                span = (high - low) or 1.0
                spread = rng.uniform(low - span / 2, high + span / 2, count)
                drawn = np.where(rng.random(count) < 0.5, spread, drawn).astype(drawn.dtype)
        if column.nullable:
            gaps = rng.random(count) < 0.1
            drawn = drawn.copy()
            if drawn.dtype.kind == "f":
                drawn[gaps] = np.nan
            elif drawn.dtype.kind == "O":
                drawn[gaps] = None
        data[name] = drawn
    return Table(sample.names, count, data)


def _plain_labels(labels: np.ndarray) -> np.ndarray:
    """Labels whose elements are Python values (``str``, not ``numpy.str_``), as ONNX gives."""
    if labels.dtype.kind in "US":
        return labels.astype(object)
    if labels.dtype.kind == "O" and labels.size and isinstance(labels.flat[0], np.generic):
        plain = np.empty(labels.shape, dtype=object)
        plain.flat[:] = [python_scalar(v) for v in labels.flat]
        return plain
    return labels


def _missing_as_nan(values: np.ndarray) -> np.ndarray:
    """Object values with NaN for ``None``: what scikit-learn's imputers take as missing."""
    missing = none_mask(values)
    if not missing.any():
        return values
    values = values.copy()
    values[missing] = np.nan
    return values


def _pandas_column(pandas: Any, column: ColumnSpec, values: np.ndarray) -> Any:
    """One validated column as the dtype the model was trained on (see ``Table``)."""
    trained = column.dtype
    kind = values.dtype.kind
    if trained == "category":
        levels = list(column.dtype_categories or column.categories or ())
        known = set(levels)
        # Unseen values join the categories (after the trained ones, so known codes keep their
        # meaning): the model, not a silent NaN, decides about them.
        unseen = [v for v in dict.fromkeys(values.tolist()) if not is_missing(v) and v not in known]
        present = _missing_as_nan(values) if kind == "O" else values
        return pandas.Categorical(present, categories=levels + unseen)
    target = _trained_dtype(trained)
    if column.type == "datetime":
        if getattr(target, "tz", None) is not None:
            return pandas.Series(values).dt.tz_localize("UTC").dt.tz_convert(target.tz)
        if isinstance(target, np.dtype) and target.kind == "M":
            return _cast_checked(column, values, target)
        # datetime objects (NaT as None), as an object column of them holds
        return pandas.Series(values.astype(object), dtype=object, copy=False)
    if isinstance(target, np.dtype) or target is None:
        if kind == "O":
            if column.missing_marker != "none":  # else the model learned None itself as a value
                values = _missing_as_nan(values)  # strings, and booleans with gaps, as pandas has
            # An object column stays one: pandas 3 would make strings "str", None turned NaN.
            return pandas.Series(values, dtype=object, copy=False)
        if kind == "f" and target is not None and target.kind in "iub":
            return values  # integers with gaps stay floats, as pandas reads them
        if target is not None and target != values.dtype and target.kind != "O":
            return _cast_checked(column, values, target)
        return values
    # pandas' own dtypes (Int64, boolean, string, Float64...) take None and NaN as missing.
    numpy_dtype = getattr(target, "numpy_dtype", None)
    if isinstance(numpy_dtype, np.dtype) and numpy_dtype.kind in "iu" and kind in "iu":
        _cast_checked(column, values, numpy_dtype)  # Int8 and the like: refuse what wraps
    return pandas.array(values, dtype=target)


@functools.lru_cache(maxsize=256)
def _trained_dtype(name: str) -> Any:
    """The dtype a column was trained on, or None for one this pandas does not know ("str"
    before pandas 3); cached, as every call of a record through a DataFrame needs it."""
    import pandas

    try:
        return pandas.api.types.pandas_dtype(name)
    except TypeError:
        return None


def _cast_checked(column: ColumnSpec, values: np.ndarray, target: np.dtype[Any]) -> np.ndarray:
    """``values`` as ``target``; a ValueError naming the field for a value it cannot hold.

    numpy casts without range checks: 300 in a uint8 column would reach the model as 44, and a
    year 9999 in nanoseconds as a date in 1815.
    """
    cast = values.astype(target)
    if target.kind in "iuM":
        back = cast.astype(values.dtype)
        changed = back != values
        if values.dtype.kind == "M":
            changed &= ~np.isnat(values)
        elif values.dtype.kind == "f":
            changed &= ~np.isnan(values)
        if changed.any():
            value = values[np.flatnonzero(changed)[0]]
            raise ValueError(
                f"field {column.name!r} got {value}, which the model's {target} column cannot hold"
            )
    return cast
