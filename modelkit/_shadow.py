"""Shadow traffic: a route's inputs also sent to another model, off the callers' path.

The registry hands each call's inputs and answer to :class:`ShadowTraffic`; its worker thread
runs the shadow model on them and counts whether the answers match (the
``modelkit.shadow.comparisons`` counter). A caller never waits for a shadow, never sees its
errors, and never has its answer changed by it; when the queue is full, comparisons are dropped
and counted as such.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from pydantic import BaseModel

from ._model import Model
from ._predictions import ClassifierOutput, RegressorOutput, TensorOutput
from ._worker import Worker, after_fork_in_child
from .telemetry import Telemetry

__all__ = ["SHADOW_QUEUE_SIZE", "SHADOW_TOLERANCE", "ShadowTraffic"]

#: Regression values and tensors count as matching their shadow's within this relative
#: difference (the tolerance conversion to ONNX is held to).
SHADOW_TOLERANCE = 1e-4
#: Shadow calls waiting for the shadow worker; beyond this they are dropped (and counted).
SHADOW_QUEUE_SIZE = 1000

_OUTCOMES = ("match", "mismatch", "error", "dropped")
# One queued comparison: the route's name, the shadow model, the inputs, the primary's answer,
# and whether it was a batch.
_Comparison = tuple[str, "Model[Any, Any]", Any, Any, bool]


class ShadowTraffic:
    """Runs shadow models off the callers' path, and counts how their answers compare.

    Args:
        telemetry: where the comparison counter goes.
    """

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        self._lock = threading.Lock()
        #: Comparisons so far by outcome (the metric's values, also without an SDK).
        self.counts = dict.fromkeys(_OUTCOMES, 0)
        self._worker: Worker[_Comparison] = Worker(
            self._compare_each, name="modelkit-shadow", max_size=SHADOW_QUEUE_SIZE
        )
        after_fork_in_child(self._after_fork_in_child)

    def submit(
        self,
        name: str,
        shadow: Model[Any, Any],
        inputs: Any,
        result: Any,
        *,
        is_batch: bool = False,
    ) -> None:
        """Queue a comparison; drop it (and count it) when the queue is full."""
        # A copy: the caller may change its dict or frame as soon as predict returns.
        if not self._worker.put((name, shadow, _snapshot(inputs), result, is_batch)):
            self._count(name, shadow, "dropped", len(result) if is_batch else 1)

    def compare(
        self, name: str, model: Model[Any, Any], inputs: Any, expected: Any, is_batch: bool
    ) -> None:
        """Run the shadow on ``inputs`` and count whether it answers ``expected``."""
        try:
            actual = model.predict_batch(inputs) if is_batch else model.predict(inputs)
        except Exception:  # noqa: BLE001 - a failing shadow is counted, never raised
            self._count(name, model, "error", len(expected) if is_batch else 1)
            return
        if not is_batch:
            self._count(name, model, "match" if _same_output(expected, actual) else "mismatch")
            return
        matches = sum(_same_output(e, a) for e, a in zip(expected, actual, strict=True))
        self._count(name, model, "match", matches)
        self._count(name, model, "mismatch", len(expected) - matches)

    def _compare_each(self, comparisons: list[_Comparison]) -> None:
        for comparison in comparisons:
            self.compare(*comparison)

    def _count(self, name: str, model: Model[Any, Any], outcome: str, amount: int = 1) -> None:
        if amount <= 0:
            return
        with self._lock:  # callers count drops while the worker thread counts comparisons
            self.counts[outcome] += amount
        tel = self._telemetry
        if tel.is_active and tel.meter is not None:
            tel.shadow_comparisons.add(
                amount,
                {
                    "modelkit.model.name": name,
                    "modelkit.model.version": model.version,
                    "modelkit.model.variant": "shadow",
                    "modelkit.shadow.outcome": outcome,
                },
            )

    def join(self) -> None:
        """Wait until every queued comparison is done (for tests and shutdown)."""
        self._worker.join()

    def close(self) -> None:
        """Finish the queued comparisons, then stop the worker thread."""
        self._worker.close()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # the parent's may be held by a thread the child lacks


def _same_output(expected: Any, actual: Any) -> bool:
    """Whether a shadow's answer matches the primary's: same label, or values within
    :data:`SHADOW_TOLERANCE`."""
    if isinstance(expected, ClassifierOutput) and isinstance(actual, ClassifierOutput):
        return bool(expected.label == actual.label)
    if isinstance(expected, RegressorOutput) and isinstance(actual, RegressorOutput):
        return _close(expected.value, actual.value)
    if isinstance(expected, TensorOutput) and isinstance(actual, TensorOutput):
        return set(expected) == set(actual) and all(
            _close(expected[name], actual[name]) for name in expected
        )
    return bool(expected == actual)


def _close(expected: Any, actual: Any) -> bool:
    try:
        a = np.asarray(expected, dtype=np.float64)
        b = np.asarray(actual, dtype=np.float64)
    except (TypeError, ValueError):
        return bool(np.array_equal(np.asarray(expected), np.asarray(actual)))
    return a.shape == b.shape and bool(
        np.allclose(a, b, rtol=SHADOW_TOLERANCE, atol=SHADOW_TOLERANCE, equal_nan=True)
    )


def _snapshot(inputs: Any) -> Any:
    """A copy of a record or batch deep enough that the caller's later changes do not reach it."""
    if isinstance(inputs, list):
        return [_snapshot(record) for record in inputs]
    if isinstance(inputs, dict):
        return dict(inputs)
    if isinstance(inputs, np.ndarray):
        return inputs.copy()
    if isinstance(inputs, BaseModel):
        return inputs.model_copy(deep=True)
    copy = getattr(inputs, "copy", None)  # a DataFrame, or another mapping
    return copy() if callable(copy) else inputs
