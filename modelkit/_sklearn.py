"""What modelkit reads from fitted scikit-learn objects, shared by the joblib adapter and the
converter: the task, the steps nested in pipelines, and values the model learned."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._spec import Task, none_mask

__all__ = ["holds_none", "ignore_version_warning", "is_sklearn", "steps", "task_of"]

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
