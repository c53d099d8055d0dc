"""The Model interface: one way to call every model, whatever its format."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import html
import os
import threading
import time
import traceback
import typing
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue
from pydantic import TypeAdapter, ValidationError

from . import telemetry
from ._batching import Batcher, Batching, Call
from ._hooks import GLOBAL_HOOKS, Hook, HookList, PredictionContext, call_hooks, report_hook_failure
from ._predictions import ClassifierOutput, Predictions, RegressorOutput, TensorOutput
from ._reasons import public_reason
from ._signature import (
    Outputs,
    SchemaInputs,
    Signature,
    Table,
    TabularInputs,
    TabularValidator,
    TensorInputs,
    TensorValidator,
    error_from,
    is_dataframe,
    record_table,
)
from .errors import BundleError, InvalidInputError, ModelkitError
from .telemetry import Telemetry

if TYPE_CHECKING:
    from ._bundle import Artifacts, Manifest
    from ._drift import DriftMonitor, DriftReport
    from .adapters import Runner

__all__ = ["Model"]

In = TypeVar("In")
Out = TypeVar("Out")
_T = TypeVar("_T")
_M = TypeVar("_M", bound="Model[Any, Any]")

# Batches larger than this are not re-run row by row to find which record the model rejected.
_MAX_BISECT_ROWS = 10_000


class _Executor:
    """The thread pool behind ``apredict``: created on first use, so importing starts no thread."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def get(self) -> ThreadPoolExecutor:
        if self._pool is None or self._pid != os.getpid():
            with self._lock:
                if self._pool is None or self._pid != os.getpid():
                    # A forked child inherits the pool object but not its threads: make a new one.
                    self._pool = ThreadPoolExecutor(
                        max_workers=min(32, (os.cpu_count() or 1) + 4),
                        thread_name_prefix="modelkit",
                    )
                    self._pid = os.getpid()
        return self._pool


_executor = _Executor()


async def _run_off_loop(function: Callable[..., Out], *args: Any) -> Out:
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

    def _bind(self, manifest: Manifest, digest: str) -> None:
        self._manifest = manifest
        self._digest = digest
        self._attributes = None

    # -- hooks and telemetry -----------------------------------------------------------------------

    _hook_list: HookList | None = None
    _telemetry: Telemetry | None = None
    _attributes: dict[str, AttributeValue] | None = None
    _single_span_attributes: dict[str, AttributeValue]
    _span_name: str

    def add_hook(self, hook: Hook) -> None:
        """Call ``hook`` around every prediction of this model.

        Raises:
            TypeError: the object has none of the hook methods.
        """
        with _HOOK_LIST_LOCK:
            if self._hook_list is None:
                self._hook_list = HookList()
        self._hook_list.add(hook)

    def remove_hook(self, hook: Hook) -> None:
        """Stop calling a hook added with :meth:`add_hook`.

        Raises:
            ValueError: the hook was not added to this model.
        """
        if self._hook_list is None:
            raise ValueError(f"{hook!r} is not registered")
        self._hook_list.remove(hook)

    def set_telemetry(self, *, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        """Report this model's spans and metrics to these providers instead of the global ones."""
        self._telemetry = telemetry.for_providers(tracer_provider, meter_provider)

    _variant: str | None = None

    def _set_variant(self, variant: str) -> None:
        """Say which variant of a registry route this model serves as (on spans and metrics)."""
        self._variant = variant
        self._attributes = None  # rebuilt with the variant on the next call

    def _telemetry_attributes(self) -> dict[str, AttributeValue]:
        attributes = self._attributes
        if attributes is None:
            attributes = {
                "modelkit.model.name": self.name,
                "modelkit.model.version": self.version,
                "modelkit.model.format": self.format,
            }
            if self._variant is not None:
                attributes["modelkit.model.variant"] = self._variant
            self._single_span_attributes = {**attributes, "modelkit.prediction.batch.size": 1}
            self._span_name = f"predict {self.name}"
            # Published last: another thread that sees it may use the two attributes above.
            self._attributes = attributes
        return attributes

    def _observe(self, function: Callable[[Any], Any], inputs: Any, *, is_batch: bool) -> Any:
        """Run one call with hooks, a span and metrics around it."""
        observation = self._observation(inputs, is_batch=is_batch)
        if observation is None:
            return function(inputs)
        with observation:
            return observation.succeeded(function(inputs))

    def _observation(self, inputs: Any, *, is_batch: bool) -> _Observation | None:
        """The hooks, span and metrics of one call, or ``None`` when nothing observes it."""
        tel = self._telemetry or telemetry.default()
        hooks = (self._hook_list.hooks if self._hook_list else ()) + GLOBAL_HOOKS.hooks
        if not tel.is_active and not hooks:  # is_active also picks up a newly configured SDK
            return None
        return _Observation(self, tel, hooks, inputs, is_batch=is_batch)

    def _is_observed(self) -> bool:
        """The check on every call, kept to a few attribute reads: with no hook and no SDK
        (and no time yet to look for one again), nothing else runs."""
        if (self._hook_list is None or not self._hook_list.hooks) and not GLOBAL_HOOKS.hooks:
            tel = self._telemetry or telemetry.DEFAULT
            return not (tel.tracer is None and tel.meter is None and _monotonic() < tel.next_check)
        return True

    # -- drift -------------------------------------------------------------------------------------

    def drift(self) -> DriftReport:
        """Compare what the model received (and predicted) since loading with its reference data.

        Per feature, the population stability index between the reference profile saved in the
        bundle and the live counts: below 0.1 stable, 0.1 to 0.25 moderate, above significant.

        Raises:
            ModelkitError: the model was not loaded with ``drift=True``.
        """
        monitor = self._drift_monitor
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
        assert self._drift_monitor is not None
        self._drift_monitor.reset()

    _drift_monitor: DriftMonitor | None = None

    def _start_drift(self) -> None:
        raise BundleError(f"{self.name!r} has no tabular signature, so it has no drift statistics.")

    # -- micro-batching and closing ----------------------------------------------------------------

    _batcher: Batcher | None = None

    def _start_batching(self, config: Batching) -> None:
        raise _cannot_batch(self.name, "it is a custom Python model")

    def close(self) -> None:
        """Stop what the model runs in the background: its micro-batching worker, if any.

        The worker first answers every call already queued. Idempotent, and the model stays
        usable: calls made afterwards run directly, unbatched (an old reference a registry has
        swapped out keeps working).
        """

    def __enter__(self: _M) -> _M:
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        self.close()

    def _hook_failed(self, hook: Hook, exc: BaseException) -> None:
        tel = self._telemetry or telemetry.default()
        tel.record_hook_error(
            {"modelkit.model.name": self.name, "modelkit.hook": type(hook).__qualname__}
        )
        report_hook_failure(hook, exc)

    # -- the interface ---------------------------------------------------------------------------

    def predict(self, record: Any) -> Out:
        """Predict one record.

        Args:
            record: a dict, an instance of the input model, or (tabular models) a sequence of
                values in signature order.

        Raises:
            InvalidInputError: the record does not fit the signature (the message names the field).
        """
        if self._is_observed():
            return self._observe(self._predict_one, record, is_batch=False)  # type: ignore[no-any-return]
        return self._predict_one(record)

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
        if self._is_observed():
            return self._observe(self._predict_many, records, is_batch=True)  # type: ignore[no-any-return]
        return self._predict_many(records)

    def _predict_one(self, record: Any) -> Out:
        return self._run_custom([record], single=True)[0]

    def _predict_many(self, records: Any) -> Predictions[Out]:
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

    async def apredict(self, record: Any) -> Out:
        """:meth:`predict` on a worker thread, so the event loop never waits on the model."""
        return await _run_off_loop(self.predict, record)

    async def apredict_batch(self, records: Any) -> Predictions[Out]:
        """:meth:`predict_batch` on a worker thread, so the event loop never waits on the model."""
        return await _run_off_loop(self.predict_batch, records)

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
        kind = "Model" if isinstance(self, RunnerModel) else type(self).__name__
        return (
            f"<{kind} {self.name!r} version={self.version!r} format={self.format!r} "
            f"signature={self.signature}>"
        )

    def _repr_html_(self) -> str:
        rows = [
            ("name", self.name),
            ("version", self.version),
            ("format", self.format),
            ("task", self.signature.outputs.task),
            ("signature", str(self.signature)),
        ]
        if self._digest:
            rows.append(("digest", self._digest))
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        return f"<table><caption>modelkit model</caption>{body}</table>"


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


# --------------------------------------------------------------------------------------------------
# Models backed by an adapter's runner
# --------------------------------------------------------------------------------------------------


class _RejectedError(Exception):
    """The runtime refused inputs that passed the signature; wraps its own exception."""


class RunnerModel(Model[Any, Any]):
    """A model loaded from a bundle by a format adapter: validation, encoding and decoding around
    the adapter's runner."""

    def __init__(self, manifest: Manifest, digest: str, runner: Runner) -> None:
        self._bind(manifest, digest)
        self._runner = runner
        signature = manifest.signature
        self._outputs = signature.outputs
        self._classes = list(signature.outputs.classes or ())
        self._task = signature.outputs.task
        self._tabular: TabularValidator | None = None
        self._tensor: TensorValidator | None = None
        if isinstance(signature.inputs, TabularInputs):
            self._tabular = TabularValidator(signature.inputs)
        elif isinstance(signature.inputs, TensorInputs):
            self._tensor = TensorValidator(signature.inputs)
        else:
            raise ModelkitError(f"The {manifest.format} adapter cannot serve a schema signature.")
        self._run_record: Callable[[tuple[Any, ...]], Mapping[str, Any]] | None = getattr(
            runner, "run_record", None
        )

    def _start_drift(self) -> None:
        from ._drift import DriftMonitor

        profile = self._manifest.profile if self._manifest is not None else None
        if self._tabular is None or not profile:
            raise BundleError(
                f"Bundle {self.name!r} has no reference profile for drift statistics: save it "
                "with sample_input= or reference= (a few hundred rows of training data)."
            )
        assert isinstance(self.signature.inputs, TabularInputs)
        try:
            self._drift_monitor = DriftMonitor(profile, self.signature.inputs)
        except ValueError as exc:
            raise BundleError(f"The drift profile of {self.name!r} is unusable: {exc}") from exc
        telemetry.watch_drift(self)

    # -- micro-batching ----------------------------------------------------------------------------

    def _start_batching(self, config: Batching) -> None:
        if self._tabular is None:
            raise _cannot_batch(self.name, "its signature is a tensor signature")
        if self._task not in ("classification", "regression"):
            # A tensor output need not have a row per record, so it cannot be split among callers.
            raise _cannot_batch(self.name, f"its task is {self._task!r}")
        batcher = Batcher(self._run_rows, config, name=self.name)
        self._batcher = batcher
        # Stop the worker once nobody references the model (the worker holds it only weakly).
        weakref.finalize(self, batcher.close)

    def close(self) -> None:
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.close()

    def predict(self, record: Any) -> Any:
        batcher = self._batcher
        if batcher is None:
            return super().predict(record)
        observation = self._observation(record, is_batch=False) if self._is_observed() else None
        if observation is None:
            return self._predict_queued(batcher, record, None)
        with observation:
            return observation.succeeded(self._predict_queued(batcher, record, observation))

    async def apredict(self, record: Any) -> Any:
        batcher = self._batcher
        if batcher is None:
            return await super().apredict(record)
        observation = self._observation(record, is_batch=False) if self._is_observed() else None
        if observation is None:
            return await self._apredict_queued(batcher, record, None)
        with observation:
            return observation.succeeded(await self._apredict_queued(batcher, record, observation))

    def _predict_queued(
        self, batcher: Batcher, record: Any, observation: _Observation | None
    ) -> Any:
        values = self._enter_queue(batcher, record)
        call = batcher.submit(values)
        if call is None or call.fields is None:  # closed meanwhile, or the batch failed
            return self._predict_values(values)
        return self._coalesced_output(call, observation)

    async def _apredict_queued(
        self, batcher: Batcher, record: Any, observation: _Observation | None
    ) -> Any:
        values = self._enter_queue(batcher, record)
        call = await batcher.asubmit(values)
        if call is None or call.fields is None:  # closed meanwhile, or the batch failed
            return await _run_off_loop(self._predict_values, values)
        return self._coalesced_output(call, observation)

    def _enter_queue(self, batcher: Batcher, record: Any) -> tuple[Any, ...]:
        """Validate a record in the caller's thread; a bad one never reaches the queue."""
        assert self._tabular is not None
        batcher.enter()
        try:
            return self._tabular.record(record)
        except BaseException:
            batcher.leave()
            raise

    def _coalesced_output(self, call: Call, observation: _Observation | None) -> Any:
        assert call.fields is not None
        if observation is not None:
            observation.coalesced = call.size
        return self._row(call.fields, call.index)

    def _run_rows(self, rows: list[tuple[Any, ...]]) -> Mapping[str, Any]:
        """Run the records the batching worker coalesced as one call, on the worker's thread."""
        assert self._tabular is not None
        monitor = self._drift_monitor
        if len(rows) == 1 and self._run_record is not None:
            fields = self._run_record(rows[0])
            if monitor is not None:
                monitor.update_record(rows[0], fields)
        else:
            table = self._tabular._from_rows(rows)
            fields = self._runner.run(table)
            if monitor is not None:
                monitor.update_table(table)
                monitor.update_outputs(fields)
        tel = self._telemetry or telemetry.default()
        if tel.is_active and tel.meter is not None:
            tel.batch_size.record(len(rows), self._telemetry_attributes())
        return fields

    @property
    def runner(self) -> Runner:
        """The adapter's runner (the raw estimator or session sits behind it)."""
        return self._runner

    def _decode_one(self, fields: Mapping[str, Any]) -> Any:
        """One record's output from the runner's fields (the single-record hot path)."""
        task = self._task
        if task == "classification":
            labels = fields["label"]
            label = labels.item(0) if type(labels) is np.ndarray else _item(labels, 0)
            probabilities = fields.get("probabilities")
            if probabilities is None:
                return ClassifierOutput(label, None)
            row = probabilities[0] if probabilities.ndim == 2 else probabilities
            return ClassifierOutput(label, dict(zip(self._classes, row.tolist(), strict=True)))
        if task == "tensor":
            return TensorOutput(fields)
        return self._row(fields, 0)

    def _row(self, fields: Mapping[str, Any], index: int) -> Any:
        if self._task == "classification":
            probabilities = fields.get("probabilities")
            return ClassifierOutput(
                _item(fields["label"], index),
                None
                if probabilities is None
                else dict(zip(self._classes, probabilities[index].tolist(), strict=True)),
            )
        if self._task == "regression":
            return RegressorOutput(_scalar_or_list(fields["value"][index]))
        return TensorOutput({name: value[index] for name, value in fields.items()})

    def _predict_one(self, record: Any) -> Any:
        if self._tabular is not None:
            return self._predict_values(self._tabular.record(record))
        assert self._tensor is not None
        tensors = self._tensor.record(record)
        return TensorOutput(self._call(self._runner.run, tensors, None))

    def _predict_values(self, values: tuple[Any, ...]) -> Any:
        """One validated tabular record, run alone."""
        assert self._tabular is not None
        if self._run_record is not None:
            fields = self._call(self._run_record, values, None)
        else:
            fields = self._call(self._runner.run, _table_from_values(self._tabular, values), None)
        monitor = self._drift_monitor
        if monitor is not None:
            monitor.update_record(values, fields)
        return self._decode_one(fields)

    def _predict_many(self, records: Any) -> Predictions[Any]:
        if self._tabular is not None:
            table = self._tabular.batch(records)
            if table.length == 0:
                return self._empty()
            fields = self._call(self._runner.run, table, table)
            monitor = self._drift_monitor
            if monitor is not None:
                monitor.update_table(table)
                monitor.update_outputs(fields)
            return Predictions(
                fields, length=table.length, row=self._row, classes=self._outputs.classes
            )
        assert self._tensor is not None
        return self._tensor_batch(records)

    def _tensor_batch(self, records: Any) -> Predictions[Any]:
        assert self._tensor is not None
        if isinstance(records, np.ndarray) and len(self._tensor.names) == 1:
            records = {self._tensor.names[0]: records}
        if isinstance(records, Mapping):
            if not self._tensor.has_batch_axis:
                raise InvalidInputError(
                    "This model's inputs declare no batch axis, so a mapping of arrays cannot be "
                    "split into records; pass a list of records, or call predict() with the "
                    "mapping."
                )
            tensors = self._tensor.record(records)
            lengths = {len(array) for array in tensors.values()}
            if len(lengths) != 1:
                sizes = {name: len(array) for name, array in tensors.items()}
                raise InvalidInputError(f"The input arrays have different batch sizes: {sizes}.")
            (length,) = lengths
            if length == 0:
                return Predictions.from_rows([])
            outputs = dict(self._call(self._runner.run, tensors, None))
            return Predictions(outputs, length=length, row=self._row)
        if isinstance(records, str | bytes) or not isinstance(records, Sequence):
            raise InvalidInputError(
                f"Expected a list of records or a mapping of input name to array, got "
                f"{type(records).__name__}."
            )
        validated = []
        problems: list[dict[str, Any]] = []
        for index, record in enumerate(records):
            try:
                validated.append(self._tensor.record(record, index))
            except InvalidInputError as exc:
                problems.extend(exc.errors)
        if problems:
            raise error_from(problems)
        rows = []
        for index, tensors in enumerate(validated):
            rows.append(TensorOutput(self._call(self._runner.run, tensors, None, index=index)))
        return Predictions.from_rows(rows)

    def _empty(self) -> Predictions[Any]:
        fields: dict[str, Any]
        if self._task == "classification":
            fields = {"label": np.array([], dtype=object)}
            if self._outputs.has_probabilities:
                fields["probabilities"] = np.empty((0, len(self._classes)))
        else:
            fields = {"value": np.array([], dtype=np.float64)}
        return Predictions(fields, length=0, row=self._row, classes=self._outputs.classes)

    def _call(
        self,
        function: Callable[[Any], Mapping[str, Any]],
        inputs: Any,
        table: Table | None,
        *,
        index: int | None = None,
    ) -> Mapping[str, Any]:
        try:
            return function(inputs)
        except _RejectedError as exc:
            cause = exc.__cause__ or exc
            if table is not None and 1 < table.length <= _MAX_BISECT_ROWS:
                index = self._first_rejected_row(table)
            where = "" if index is None else f"Record {index}: "
            raise InvalidInputError(
                f"{where}the model rejected the input: {public_reason(str(cause))}", index=index
            ) from cause

    def _first_rejected_row(self, table: Table) -> int | None:
        # Only on failure: re-run rows one at a time to name the record the model refused.
        columns = table.columns()
        for row in range(table.length):
            single = Table(
                table.names, 1, {name: column[row : row + 1] for name, column in columns.items()}
            )
            try:
                self._runner.run(single)
            except _RejectedError:
                return row
        return None


_monotonic = time.monotonic
_HOOK_LIST_LOCK = threading.Lock()


def _batch_size(records: Any) -> int | None:
    """The number of records in a batch, when it can be told without looking inside."""
    if isinstance(records, np.ndarray):
        return int(records.shape[0]) if records.ndim else None
    if isinstance(records, Mapping):
        return None  # tensors: known after the call, from the predictions
    try:
        return len(records)
    except TypeError:
        return None


class _Observation:
    """The hooks, span and metrics around one call, shared by the sync and async paths.

    Entering it starts the span and calls ``before_predict``; :meth:`succeeded` records the
    result (and passes it through); leaving it records a failure and ends the span.
    """

    __slots__ = (
        "_attributes",
        "_context",
        "_hooks",
        "_inputs",
        "_is_batch",
        "_model",
        "_span",
        "_telemetry",
        "_token",
        "coalesced",
    )

    def __init__(
        self,
        model: Model[Any, Any],
        tel: Telemetry,
        hooks: tuple[Hook, ...],
        inputs: Any,
        *,
        is_batch: bool,
    ) -> None:
        self._model = model
        self._telemetry = tel
        self._hooks = hooks
        self._inputs = inputs
        self._is_batch = is_batch
        self._span: trace.Span | None = None
        self._token: contextvars.Token[Any] | None = None
        #: The size of the coalesced call that answered a micro-batched record: the batching
        #: worker records it in the batch size histogram, once for all its callers.
        self.coalesced: int | None = None

    def __enter__(self) -> _Observation:
        model = self._model
        batch_size = _batch_size(self._inputs) if self._is_batch else 1
        attributes = self._attributes = model._telemetry_attributes()
        self._context = PredictionContext(
            model, self._inputs, batch_size, self._is_batch, time.perf_counter()
        )
        tracer = self._telemetry.tracer
        if tracer is not None:
            span_attributes = attributes
            if batch_size == 1:
                span_attributes = model._single_span_attributes
            elif batch_size is not None:
                span_attributes = {**attributes, "modelkit.prediction.batch.size": batch_size}
            span = self._span = tracer.start_span(
                model._span_name, kind=trace.SpanKind.INTERNAL, attributes=span_attributes
            )
            self._token = otel_context.attach(trace.set_span_in_context(span))
        if self._hooks:
            call_hooks(self._hooks, "before_predict", (self._context,), model._hook_failed)
        return self

    def succeeded(self, result: _T) -> _T:
        """Record a successful call's duration, batch size and hooks; return ``result``."""
        ctx = self._context
        ctx.duration = time.perf_counter() - ctx.start_time
        span = self._span
        batch_size = ctx.batch_size
        if batch_size is None:
            ctx.batch_size = batch_size = len(result)  # type: ignore[arg-type]
            if span is not None:
                span.set_attribute("modelkit.prediction.batch.size", batch_size)
        if self.coalesced is not None and span is not None:
            span.set_attribute("modelkit.prediction.batch.size", self.coalesced)
        tel = self._telemetry
        if tel.meter is not None:
            tel.prediction_duration.record(ctx.duration, self._attributes)
            if self.coalesced is None:
                tel.batch_size.record(batch_size, self._attributes)
        if self._hooks:
            call_hooks(self._hooks, "after_predict", (ctx, result), self._model._hook_failed)
        return result

    def __exit__(self, exc_type: object, exc: BaseException | None, traceback: object) -> None:
        try:
            if isinstance(exc, Exception):
                self._failed(exc)
        finally:
            if self._token is not None:
                otel_context.detach(self._token)
            if self._span is not None:
                self._span.end()

    def _failed(self, exc: Exception) -> None:
        ctx = self._context
        ctx.duration = time.perf_counter() - ctx.start_time
        error_type = telemetry.error_type(exc)
        model = self._model
        if self._span is not None:
            _mark_failed(self._span, exc, error_type, model.signature.names)
        tel = self._telemetry
        if tel.meter is not None:
            failed = {**self._attributes, "error.type": error_type}
            tel.prediction_duration.record(ctx.duration, failed)
        if self._hooks:
            call_hooks(self._hooks, "on_error", (ctx, exc), model._hook_failed)


def _cannot_batch(name: str, reason: str) -> ModelkitError:
    return ModelkitError(
        f"Cannot batch {name!r}: micro-batching needs a classifier or regressor with a tabular "
        f"signature, loaded by a format adapter (joblib, onnx), and {reason}. Load it without "
        "batching=, and pass many records to predict_batch() instead."
    )


def _mark_failed(
    span: trace.Span, exc: BaseException, error_type: str, names: tuple[str, ...]
) -> None:
    # Error messages can quote the offending input; spans get the error's type and, for invalid
    # input, where it was, never the values. A field is named only when it is one of the
    # signature's: an unknown key is the caller's data. The stack trace is frames only.
    description = error_type
    if isinstance(exc, InvalidInputError):
        field = ""
        if exc.field is not None:
            field = f"field {exc.field!r}" if exc.field in names else "an unknown field"
        where = [field, f"record {exc.index}" if exc.index is not None else ""]
        description = f"{error_type} ({', '.join(w for w in where if w) or 'input'})"
    span.set_attribute("error.type", error_type)
    span.set_status(trace.Status(trace.StatusCode.ERROR, description))
    span.record_exception(
        exc,
        attributes={
            "exception.message": description,
            "exception.stacktrace": "".join(traceback.format_tb(exc.__traceback__)),
        },
    )


def _table_from_values(validator: TabularValidator, values: tuple[Any, ...]) -> Table:
    return record_table(validator.columns, values)


def _item(values: Any, index: int) -> Any:
    """One element as a Python value (``ndarray.item`` is the cheapest way there)."""
    if isinstance(values, np.ndarray):
        return values.item(index)
    value = values[index]
    return value.item() if isinstance(value, np.generic) else value


def _scalar_or_list(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if isinstance(value, np.generic) else value


def first_line(exc: BaseException) -> str:
    """An exception's first line (or its type), at most 300 characters, for a one-line message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def rejected(exc: BaseException) -> Exception:
    """Wrap a runtime's exception for inputs that passed the signature; a runner raises it.

    Example:
        >>> try:
        ...     labels = estimator.predict(frame)
        ... except ValueError as exc:
        ...     raise rejected(exc) from exc
    """
    wrapped = _RejectedError(str(exc))
    wrapped.__cause__ = exc
    return wrapped
