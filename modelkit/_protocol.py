"""The adapter protocol: what a serialization format provides, and what its runner raises.

This module is the seam between the model layer and the formats. It knows nothing of the
formats themselves (``modelkit.adapters`` keeps their table) nor of the model that drives a
runner, so both sides depend on it and not on each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._spec import Outputs, Signature, Table, TabularInputs, TensorInputs

if TYPE_CHECKING:
    from ._bundle import Artifacts
    from ._manifest import Manifest

__all__ = [
    "Adapter",
    "RejectedError",
    "Runner",
    "SavedModel",
    "first_line",
    "rejected",
]


@dataclass(frozen=True)
class SavedModel:
    """What an adapter reports after writing an object's artifacts.

    Attributes:
        signature: the inputs and outputs the saved model has.
        details: adapter-specific facts for the manifest's ``adapter`` section (JSON values).
        packages: distributions whose installed versions the manifest records and ``load``
            compares (``{"scikit-learn": "1.5.2"}``).
    """

    signature: Signature
    details: Mapping[str, Any] = field(default_factory=dict)
    packages: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class Runner(Protocol):
    """What an adapter's ``load`` returns: runs validated inputs through the model.

    ``run`` takes a :class:`~modelkit._spec.Table` for tabular signatures, or a mapping of
    input name to array for tensor signatures, and returns the output fields as arrays: ``label``
    and ``probabilities`` for classifiers, ``value`` for regressors, one entry per named output for
    tensor models. A runner may also define ``run_record(values)`` for one record's values in
    signature order, the fast path for single predictions.

    When the runtime refuses inputs that passed the signature (an unseen category, say), raise
    ``rejected(exc)``: modelkit turns it into an :class:`~modelkit.InvalidInputError` naming the
    record, where any other exception would propagate as a bug.
    """

    def run(self, inputs: Table | Mapping[str, Any]) -> Mapping[str, Any]: ...


@runtime_checkable
class Adapter(Protocol):
    """One serialization format.

    Attributes:
        name: the id recorded in manifests (``format``), such as ``"joblib"``.

    An adapter may also declare ``options``, the names ``load(adapter_options=...)`` accepts;
    modelkit then refuses any other name before loading.
    """

    name: str

    def accepts(self, obj: object) -> bool:
        """Whether ``format="auto"`` should pick this adapter for ``obj``."""
        ...

    def save(
        self,
        obj: Any,
        directory: Path,
        *,
        sample_input: Any,
        inputs: TabularInputs | TensorInputs | None,
        outputs: Outputs | None,
    ) -> SavedModel:
        """Write ``obj``'s artifacts into ``directory`` (the bundle's ``artifacts/``).

        Args:
            obj: the object to save.
            directory: where to write; every file written here becomes an artifact.
            sample_input: the caller's sample rows, or ``None``.
            inputs: inputs the caller declared, or ``None`` to infer them.
            outputs: outputs (at least the task) the caller declared, or ``None`` to infer them.
        """
        ...

    def load(
        self, artifacts: Artifacts, manifest: Manifest, *, options: Mapping[str, Any]
    ) -> Runner:
        """Build a :class:`Runner` from verified artifacts."""
        ...


class RejectedError(Exception):
    """The runtime refused inputs that passed the signature; wraps its own exception.

    Runners raise it through :func:`rejected`; the model turns it into an
    :class:`~modelkit.InvalidInputError` naming the record.
    """


def rejected(exc: BaseException) -> Exception:
    """Wrap a runtime's exception for inputs that passed the signature; a runner raises it.

    Example:
        >>> try:
        ...     labels = estimator.predict(frame)
        ... except ValueError as exc:
        ...     raise rejected(exc) from exc
    """
    wrapped = RejectedError(str(exc))
    wrapped.__cause__ = exc
    return wrapped


def first_line(exc: BaseException) -> str:
    """An exception's first line (or its type), at most 300 characters, for a one-line message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
