"""What modelkit reads from fitted scikit-learn objects, shared by the joblib adapter and the
converter: the task, the steps nested in pipelines, and values the model learned."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._spec import Task, none_mask

__all__ = [
    "holds_none",
    "ignore_version_warning",
    "is_sklearn",
    "labels_may_differ_from_argmax",
    "pipeline_parts",
    "steps",
    "task_of",
]

# Where pipelines and meta-estimators keep their parts: lists of (name, step, ...) tuples...
_STEP_LISTS = ("steps", "transformers_", "transformer_list")
# ...and single estimators, as configured (the converter's view) or as fitted.
CONFIGURED = ("estimator", "base_estimator", "final_estimator_")
FITTED = ("estimator_", "estimators_", "final_estimator_", "base_estimator_")


def is_sklearn(obj: Any) -> bool:
    """Whether unpickling ``obj`` needs scikit-learn (its estimators, or subclasses of them)."""
    base = sys.modules.get("sklearn.base")
    return base is not None and isinstance(obj, base.BaseEstimator)


def ignore_version_warning() -> None:
    """Silence scikit-learn's own version warning: modelkit compares versions itself."""
    try:
        from sklearn.exceptions import InconsistentVersionWarning
    except ImportError:  # scikit-learn absent, or too old to have the warning
        return
    warnings.simplefilter("ignore", InconsistentVersionWarning)


def task_of(obj: Any) -> Task:
    """``classification`` or ``regression``: scikit-learn's word, else duck typing."""
    estimator_type = getattr(obj, "_estimator_type", None)
    try:
        from sklearn.base import is_classifier, is_regressor

        if is_classifier(obj):
            return "classification"
        if is_regressor(obj):
            return "regression"
    except (ImportError, AttributeError, TypeError):
        pass  # scikit-learn absent, or an object it does not know: duck typing decides
    if estimator_type == "classifier" or getattr(obj, "classes_", None) is not None:
        return "classification"
    return "regression"


def steps(
    estimator: Any, path: str = "", *, members: tuple[str, ...] = CONFIGURED, depth: int = 0
) -> Iterator[tuple[str, Any]]:
    """``(path, object)`` for the estimator and everything nested in pipelines and transformers.

    Paths name steps as the pipeline does: ``columntransformer > cat > onehotencoder``.

    Args:
        estimator: the fitted object.
        path: the estimator's own path.
        members: the attributes holding single (or lists of) nested estimators to walk into:
            :data:`CONFIGURED` or :data:`FITTED`.
        depth: how deep the walk is already; it stops at 20 levels.
    """
    yield path, estimator
    if depth >= 20:
        return
    children: list[tuple[str, Any]] = []
    for attribute in _STEP_LISTS:
        nested = getattr(estimator, attribute, None)
        if isinstance(nested, list):
            children += [
                (str(entry[0]), entry[1])
                for entry in nested
                if isinstance(entry, tuple) and len(entry) > 1
            ]
    for attribute in members:
        child = getattr(estimator, attribute, None)
        for member in child if isinstance(child, list) else [child]:
            if member is not None and hasattr(member, "get_params"):
                children.append((attribute, member))
    for name, child in children:
        if isinstance(child, str):  # "drop" and "passthrough"
            continue
        yield from steps(
            child, f"{path} > {name}" if path else name, members=members, depth=depth + 1
        )


def holds_none(estimator: Any) -> bool:
    """Whether a fitted estimator (or a step inside it) learned ``None`` as a value."""
    for _, step in steps(estimator, members=FITTED):
        for attribute in ("categories_", "statistics_"):
            learned = getattr(step, attribute, None)
            if learned is None:
                continue
            for values in learned if isinstance(learned, list) else [learned]:
                array = np.asarray(values)
                if array.dtype.kind == "O" and none_mask(array).any():
                    return True
        if getattr(step, "missing_values", np.nan) is None:
            return True
    return False


def pipeline_parts(estimator: Any) -> tuple[tuple[Any, ...], Any]:
    """The transformers a scikit-learn ``Pipeline`` runs before its last step, and that step.

    A pipeline's ``predict`` and ``predict_proba`` each run every transformer again; with the
    parts, one call transforms once and asks the last step for both. Nested pipelines ending a
    pipeline are flattened. Anything else (a subclass of ``Pipeline`` too, which may change what
    predict does) is its own last step, with no transformers.
    """
    module = sys.modules.get("sklearn.pipeline")
    transforms: list[Any] = []
    final = estimator
    while module is not None and type(final) is module.Pipeline and final.steps:
        *head, (_, last) = final.steps
        transforms += [step for _, step in head if step is not None and step != "passthrough"]
        if last is None or last == "passthrough":
            return (), estimator  # no estimator at the end: the pipeline answers for itself
        final = last
    return tuple(transforms), final


def labels_may_differ_from_argmax(final: Any) -> bool:
    """Whether a classifier's ``predict`` is known not to be the arg-max of ``predict_proba``.

    Support vector machines label by their decision function and calibrate probabilities apart
    from it (Platt scaling), and threshold classifiers move the cut-off: their labels and
    probabilities can disagree on any row, even when a sample happens not to show it.
    """
    for module_name, class_name in (
        ("sklearn.svm._base", "BaseSVC"),
        ("sklearn.model_selection._classification_threshold", "BaseThresholdClassifier"),
    ):
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if cls is not None and isinstance(final, cls):
            return True
    return False
