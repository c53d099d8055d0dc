"""The Model interface: one way to call every model, whatever its format.

One call takes one path, written once for every kind of model::

    record or batch -> validate -> run -> decode -> caller
                        (observed: hooks, span and metrics around it; drift counts each run)

A model is built with the features it was loaded with (:class:`Features`: telemetry providers,
drift statistics, micro-batching); micro-batching plugs into the *run* step, so a coalesced call
is validated, decoded and observed exactly like a direct one.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import threading
import typing
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np
from pydantic import TypeAdapter, ValidationError

from . import telemetry
from ._batching import Batcher, Batching
from ._hooks import Hook
from ._observe import Observation, Observer
from ._predictions import Predictions
from ._report import render_fragment, render_page
from ._spec import (
    Outputs,
    SchemaInputs,
    Signature,
    is_dataframe,
)
from ._validation import error_from
from ._worker import after_fork_in_child
from .errors import BundleError, InvalidInputError, ModelkitError

if TYPE_CHECKING:
    from ._bundle import Artifacts
    from ._drift import DriftReport
    from ._manifest import Manifest
    from ._reference import Verdict

__all__ = [
    "Features",
    "Model",
    "cannot_batch",
    "observer_of",
    "report_page",
    "run_off_loop",
    "warm_up",
]

In = TypeVar("In")
Out = TypeVar("Out")
_M = TypeVar("_M", bound="Model[Any, Any]")


@dataclass(frozen=True)
class Features:
    """What a model was loaded with, given to it when it is built (never patched on later).

    Attributes:
        telemetry: the telemetry for the providers passed to ``load``, or ``None`` for the
            global ones.
        drift: keep drift statistics against the bundle's reference profile.
        batching: coalesce concurrent single-record calls, with these settings.
        verdict: how the model answered its reference cases when ``load`` ran them, or ``None``
            when it did not (see :attr:`Model.reference_verdict`).
    """

    telemetry: telemetry.Telemetry | None = None
    drift: bool = False
    batching: Batching | None = None
    verdict: Verdict | None = None


class _Executor:
    """The thread pool behind ``apredict``: created on first use, so importing starts no thread."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        after_fork_in_child(self._forget)

    def get(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        max_workers=min(32, (os.cpu_count() or 1) + 4),
                        thread_name_prefix="modelkit",
                    )
        return self._pool

    def _forget(self) -> None:
        # A forked child inherits the pool object but not its threads: the next call makes one.
        self._pool = None
        self._lock = threading.Lock()


_executor = _Executor()


async def run_off_loop(function: Callable[..., Out], *args: Any) -> Out:
    # copy_context carries contextvars (and so trace context) into the worker thread.
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    call = functools.partial(context.run, function, *args)
    return await loop.run_in_executor(_executor.get(), call)


class Model(Generic[In, Out]):
    """The uniform interface of every model, and the base class of custom ones.

    Loaded models (:func:`modelkit.load`) are instances of it whatever their format. To ship your
    own code as a model, subclass ``Model[In, Out]`` with pydantic types, implement
    :meth:`run_batch`, and optionally :meth:`save_artifacts` / :meth:`from_artifacts` for files
    of your own; :func:`modelkit.save` then bundles it like any other model and the manifest
    records the class's import path (the code itself ships with your application).

    Example:
        >>> class Review(pydantic.BaseModel):
        ...     text: str
        >>> class Sentiment(pydantic.BaseModel):
        ...     positive: bool
        >>> class Keywords(modelkit.Model[Review, Sentiment]):
        ...     def run_batch(self, inputs):
        ...         return [Sentiment(positive="good" in r.text) for r in inputs]
        >>> Keywords().predict({"text": "good stuff"})
        Sentiment(positive=True)
    """

    #: Shown by ``name`` until the model is saved and loaded (then the manifest's name wins).
    model_name: ClassVar[str | None] = None
    _input_type: ClassVar[Any] = None
    _output_type: ClassVar[Any] = None
    _manifest: Manifest | None = None
    _digest: str | None = None
    _verdict: Verdict | None = None
    # Built by the loader with the model's features, or on first use for a model never loaded
    # (custom subclasses need not call ``Model.__init__``).
    _observer: Observer | None = None
    _batcher: Batcher | None = None
    # What repr calls the model: its class's name, or "Model" for models a format loaded.
    _kind_shown: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            if typing.get_origin(base) is Model:
                args = typing.get_args(base)
                if len(args) == 2:
                    cls._input_type, cls._output_type = args

    # -- identity --------------------------------------------------------------------------------

    @property
    def manifest(self) -> Manifest | None:
        """The manifest of the bundle this model was loaded from (``None`` if never saved)."""
        return self._manifest

    @property
    def name(self) -> str:
        """The model's name, from its manifest."""
        if self._manifest is not None:
            return self._manifest.name
        return self.model_name or type(self).__name__

    @property
    def version(self) -> str:
        """The model's version, from its manifest (``"unversioned"`` before it is saved)."""
        return self._manifest.version if self._manifest is not None else "unversioned"

    @property
    def format(self) -> str:
        """The adapter that loaded it: ``joblib``, ``onnx``, ``python``..."""
        return self._manifest.format if self._manifest is not None else "python"

    @property
    def digest(self) -> str | None:
        """The digest of the bundle it was loaded from (see :func:`modelkit.digest`)."""
        return self._digest

    @property
    def signature(self) -> Signature:
        """What the model takes and gives."""
        if self._manifest is not None:
            return self._manifest.signature
        return _custom_signature(type(self))  # type: ignore[arg-type]

    @property
    def reference_verdict(self) -> Verdict | None:
        """How the model answered its reference cases when ``load`` ran them (``total``,
        ``identical``, ``differing``, ``passed``, ``summary()``), or ``None`` when it did not:
        the bundle keeps none, or ``check`` did not run them (``"auto"`` runs them only when a
        library version differs)."""
        return self._verdict

    def _bind(self, manifest: Manifest, digest: str, features: Features) -> None:
        """Give a loaded model its identity and the features it was loaded with (once, by the
        loader, before anyone else sees the model)."""
        self._manifest = manifest
        self._digest = digest
        self._verdict = features.verdict
        if features.drift:
            raise BundleError(
                f"{self.name!r} has no tabular signature, so it has no drift statistics."
            )
        if features.batching is not None:
            raise cannot_batch(self.name, "it is a custom Python model")
        observer = self._observer
        if observer is None:
            self._observer = Observer(self, tel=features.telemetry)
            return
        # Hooks or telemetry the model set up for itself (in __init__, say) stay.
        if features.telemetry is not None:
            observer.telemetry = features.telemetry
        observer.identity_changed()

    def __getstate__(self) -> dict[str, Any]:
        # A copy or an unpickled model gets an observer of its own on first use, and no
        # batching worker: both hold threads, locks and a reference to this model.
        state = self.__dict__.copy()
        state.pop("_observer", None)
        state.pop("_batcher", None)
        return state

    def _watch(self) -> Observer:
        """The model's observer, made on first use for a model no loader built."""
        with _OBSERVER_LOCK:
            if self._observer is None:
                self._observer = Observer(self)
        return self._observer

    # -- hooks and telemetry -----------------------------------------------------------------------

    def add_hook(self, hook: Hook) -> None:
        """Call ``hook`` around every prediction of this model.

        Raises:
            TypeError: the object has none of the hook methods.
        """
        (self._observer or self._watch()).add_hook(hook)

    def remove_hook(self, hook: Hook) -> None:
        """Stop calling a hook added with :meth:`add_hook`.

        Raises:
            ValueError: the hook was not added to this model.
        """
        (self._observer or self._watch()).remove_hook(hook)

    def set_telemetry(self, *, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        """Report this model's spans and metrics to these providers instead of the global ones."""
        observer = self._observer or self._watch()
        observer.telemetry = telemetry.for_providers(tracer_provider, meter_provider)

    # -- drift -------------------------------------------------------------------------------------

    def drift(self) -> DriftReport:
        """Compare what the model received (and predicted) since loading with its reference data.

        Per feature, the population stability index between the reference profile saved in the
        bundle and the live counts: below 0.1 stable, 0.1 to 0.25 moderate, above significant.

        Raises:
            ModelkitError: the model was not loaded with ``drift=True``.
        """
        monitor = self._observer.drift if self._observer is not None else None
        if monitor is None:
            raise ModelkitError(
                f"Drift statistics are off for {self.name!r}: load it with "
                "modelkit.load(path, drift=True)."
            )
        return monitor.report()

    def reset_drift(self) -> None:
        """Forget the drift counts so far, to start a new window (in a forked worker, say).

        Raises:
            ModelkitError: the model was not loaded with ``drift=True``.
        """
        self.drift()  # raises the same clear error when drift statistics are off
        monitor = self._observer.drift if self._observer is not None else None
        assert monitor is not None
        monitor.reset()

    # -- closing -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop what the model runs in the background: its micro-batching worker, if any.

        The worker first answers every call already queued. Idempotent, and the model stays
        usable: calls made afterwards run directly, unbatched (an old reference a registry has
        swapped out keeps working).
        """
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.close()

    def __enter__(self: _M) -> _M:
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        self.close()

    # -- the interface ---------------------------------------------------------------------------

    def predict(self, record: Any) -> Out:
        """Predict one record.

        Args:
            record: a dict, an instance of the input model, or (tabular models) a sequence of
                values in signature order.

        Raises:
            InvalidInputError: the record does not fit the signature (the message names the field).
        """
        observer = self._observer or self._watch()
        if observer.is_observed():
            observation = observer.observation(record, is_batch=False)
            if observation is not None:
                with observation:
                    return observation.succeeded(self._one(record, observation))
        return self._one(record, None)

    def predict_batch(self, records: Any) -> Predictions[Out]:
        """Predict many records at once.

        Args:
            records: a list of records, a pandas DataFrame, a 2-D array, or (tensor models) a
                mapping of input name to batched array.

        Returns:
            :class:`Predictions` in input order; an empty batch gives empty predictions.

        Raises:
            InvalidInputError: a record does not fit (the message names the field and index).
        """
        observer = self._observer or self._watch()
        if observer.is_observed():
            observation = observer.observation(records, is_batch=True)
            if observation is not None:
                with observation:
                    return observation.succeeded(self._many(records))
        return self._many(records)

    async def apredict(self, record: Any) -> Out:
        """:meth:`predict` without blocking the event loop: on a worker thread, or (with
        micro-batching) queued for the batching worker."""
        if self._batcher is None:
            return await run_off_loop(self.predict, record)
        observer = self._observer or self._watch()
        observation = None
        if observer.is_observed():
            observation = observer.observation(record, is_batch=False)
        if observation is None:
            return await self._aone(record, None)
        with observation:
            return observation.succeeded(await self._aone(record, observation))

    async def apredict_batch(self, records: Any) -> Predictions[Out]:
        """:meth:`predict_batch` on a worker thread, so the event loop never waits on the model."""
        return await run_off_loop(self.predict_batch, records)

    # -- the steps of one call (custom models: pydantic validation around run_batch) ---------------

    def _one(self, record: Any, observation: Observation | None = None) -> Out:
        """Validate, run and decode one record."""
        return self._run_custom([record], single=True)[0]

    async def _aone(self, record: Any, observation: Observation | None) -> Out:
        """:meth:`_one` through the batching worker, awaited (only models that batch)."""
        raise NotImplementedError

    def _many(self, records: Any) -> Predictions[Out]:
        """Validate, run and decode a batch."""
        return Predictions.from_rows(self._run_custom(records, single=False))

    def _run_custom(self, records: Any, *, single: bool) -> list[Out]:
        inputs = self._validate_custom(records, single=single)
        if not inputs:
            return []
        outputs = list(self.run_batch(inputs))
        if len(outputs) != len(inputs):
            raise ModelkitError(
                f"{type(self).__qualname__}.run_batch returned {len(outputs)} outputs for "
                f"{len(inputs)} inputs; it must return one output per input, in order."
            )
        return [self._coerce_output(o) for o in outputs]

    # -- what custom models implement --------------------------------------------------------------

    def run_batch(self, inputs: list[In]) -> Sequence[Out]:
        """Compute one output per validated input, in order. Custom models implement this."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement run_batch(inputs)")

    def save_artifacts(self, directory: Path) -> None:
        """Write the files this model needs into ``directory`` (called by :func:`modelkit.save`)."""

    @classmethod
    def from_artifacts(cls, artifacts: Artifacts) -> Model[In, Out]:
        """Build the model from its verified artifacts (by default ``cls()``).

        Args:
            artifacts: the bytes :meth:`save_artifacts` wrote, keyed by relative path;
                ``artifacts.open(name)`` gives a file object.
        """
        return cls()

    # -- helpers ---------------------------------------------------------------------------------

    def _validate_custom(self, records: Any, *, single: bool) -> list[In]:
        adapter = _input_adapter(type(self))
        if is_dataframe(records):
            records = records.to_dict(orient="records")
        if isinstance(records, Mapping | str | bytes) or not isinstance(
            records, Sequence | np.ndarray
        ):
            raise InvalidInputError(
                f"Expected a batch (a list of records), got {type(records).__name__}; "
                "use predict() for one record."
            )
        validated = []
        problems: list[dict[str, Any]] = []
        for index, record in enumerate(records):
            try:
                validated.append(adapter.validate_python(record))
            except ValidationError as exc:
                for error in exc.errors()[:5]:
                    field = ".".join(str(p) for p in error["loc"]) or None
                    what = f"field {field!r}: " if field else ""
                    problems.append(
                        {
                            "field": field,
                            "index": None if single else index,
                            "message": f"{what}{error['msg']}",
                        }
                    )
        if problems:
            raise error_from(problems)
        return validated

    def _coerce_output(self, output: Any) -> Any:
        expected = type(self)._output_type
        if expected is None or (isinstance(expected, type) and isinstance(output, expected)):
            return output
        try:
            return _type_adapter(expected).validate_python(output)
        except ValidationError as exc:
            raise ModelkitError(
                f"{type(self).__qualname__}.run_batch returned {type(output).__name__}, which "
                f"does not fit its output type: {exc.errors()[0]['msg']}."
            ) from None

    def __repr__(self) -> str:
        kind = self._kind_shown or type(self).__name__
        return (
            f"<{kind} {self.name!r} version={self.version!r} format={self.format!r} "
            f"signature={self.signature}>"
        )

    def _repr_html_(self) -> str:
        # A notebook shows the model report; without matplotlib, the tables alone.
        return render_fragment(self, drift=self._live_drift())

    def _live_drift(self) -> dict[str, Any] | None:
        """What the model received against its reference, when it keeps drift statistics."""
        monitor = self._observer.drift if self._observer is not None else None
        return None if monitor is None else monitor.report().to_dict()


@functools.cache
def _type_adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


def _input_adapter(cls: type[Model[Any, Any]]) -> TypeAdapter[Any]:
    return _type_adapter(cls._input_type if cls._input_type is not None else Any)


@functools.cache
def _custom_signature(cls: type[Model[Any, Any]]) -> Signature:
    def schema(tp: Any) -> dict[str, Any]:
        try:
            return _type_adapter(tp if tp is not None else Any).json_schema()
        except Exception:  # noqa: BLE001 - some types have no JSON Schema; the signature still works
            return {}

    return Signature(
        inputs=SchemaInputs(json_schema=schema(cls._input_type)),
        outputs=Outputs(task="custom", json_schema=schema(cls._output_type)),
    )


_OBSERVER_LOCK = threading.Lock()


def cannot_batch(name: str, reason: str) -> ModelkitError:
    return ModelkitError(
        f"Cannot batch {name!r}: micro-batching needs a classifier or regressor with a tabular "
        f"signature, loaded by a format adapter (joblib, onnx), and {reason}. Load it without "
        "batching=, and pass many records to predict_batch() instead."
    )


def warm_up(model: Model[Any, Any], records: list[Any]) -> None:
    """Run ``records`` through a freshly loaded model's call path before it is handed out: each
    alone (the single-record path, through the batching worker when it batches), then all as
    one batch. Nothing observes them: no hook, span, metric or prediction log, and no drift
    count (the run step reads the drift monitor from the observer, set aside meanwhile).

    Only the loader calls it, before anyone else holds the model; the drift gauge watches the
    observer itself, which is untouched.
    """
    observer, model._observer = model._observer, None
    try:
        for record in records:
            model._one(record)
        model._many(records)
    finally:
        model._observer = observer


def report_page(model: Model[Any, Any]) -> str:
    """The model report as a whole HTML page, self-contained: identity, signature, parity,
    reference cases, training profile and, when the model keeps drift statistics, what it has
    received since it was loaded. What ``modelkit report`` writes without a log, and a server
    answers at ``/models/{name}/report``."""
    return render_page(model, drift=model._live_drift())


def observer_of(model: Model[Any, Any]) -> Observer:
    """The observer of ``model``: its hooks, telemetry, registry variant and drift monitor.

    The seam through which the loader reads a model's identity attributes and the registry sets
    the variant a model serves as.
    """
    return model._observer or model._watch()
