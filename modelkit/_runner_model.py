"""Models loaded by a format adapter: validation, encoding and decoding around its runner.

The steps of :class:`~modelkit._model.Model`'s call path, for tabular and tensor signatures::

    record -> TabularValidator.record -> values -> runner.run_record (or run) -> fields -> output
    batch  -> TabularValidator.batch  -> Table  -> runner.run              -> fields -> Predictions

The run step is the one place a runner is called and drift is counted; micro-batching replaces
it for single records with a queue to the batching worker, which runs the same step.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._batching import Batcher, Batching, Call
from ._model import Features, Model, cannot_batch, run_off_loop
from ._observe import Observation, Observer
from ._predictions import ClassifierOutput, Predictions, RegressorOutput, TensorOutput
from ._protocol import RejectedError, Runner
from ._reasons import public_reason
from ._spec import Table, TabularInputs, TensorInputs, record_table
from ._validation import TabularValidator, TensorValidator, error_from
from .errors import BundleError, InvalidInputError, ModelkitError

if TYPE_CHECKING:
    from ._drift import DriftMonitor
    from ._manifest import Manifest

__all__ = ["RunnerModel"]


class RunnerModel(Model[Any, Any]):
    """A model loaded from a bundle by a format adapter: validation, encoding and decoding around
    the adapter's runner.

    Args:
        manifest: the bundle's manifest.
        digest: the bundle's digest.
        runner: what the format's adapter loaded.
        features: what the model was loaded with.
    """

    _kind_shown = "Model"

    def __init__(
        self, manifest: Manifest, digest: str, runner: Runner, features: Features | None = None
    ) -> None:
        features = features or Features()
        self._manifest = manifest
        self._digest = digest
        self._verdict = features.verdict
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
        drift = self._drift_monitor() if features.drift else None
        self._observer = Observer(self, tel=features.telemetry, drift=drift)
        if features.batching is not None:
            self._batcher = self._start_batching(features.batching)

    @property
    def runner(self) -> Runner:
        """The adapter's runner (the raw estimator or session sits behind it)."""
        return self._runner

    def _drift_monitor(self) -> DriftMonitor:
        from ._drift import DriftMonitor

        profile = self._manifest.profile if self._manifest is not None else None
        if self._tabular is None or not profile:
            raise BundleError(
                f"Bundle {self.name!r} has no reference profile for drift statistics: save it "
                "with sample_input= or reference= (a few hundred rows of training data)."
            )
        assert isinstance(self.signature.inputs, TabularInputs)
        try:
            return DriftMonitor(profile, self.signature.inputs)
        except ValueError as exc:
            raise BundleError(f"The drift profile of {self.name!r} is unusable: {exc}") from exc

    def _start_batching(self, config: Batching) -> Batcher:
        if self._tabular is None:
            raise cannot_batch(self.name, "its signature is a tensor signature")
        if self._task not in ("classification", "regression"):
            # A tensor output need not have a row per record, so it cannot be split among callers.
            raise cannot_batch(self.name, f"its task is {self._task!r}")
        batcher = Batcher(self._run_rows, config, name=self.name)
        # Stop the worker once nobody references the model (the worker holds it only weakly).
        weakref.finalize(self, batcher.close)
        return batcher

    # -- validate -> run -> decode, for one record -------------------------------------------------

    def _one(self, record: Any, observation: Observation | None = None) -> Any:
        tabular = self._tabular
        if tabular is None:
            assert self._tensor is not None
            return TensorOutput(self._call(self._runner.run, self._tensor.record(record), None))
        batcher = self._batcher
        if batcher is None:
            return self._answer(tabular.record(record))
        values = self._enter_queue(batcher, tabular, record)
        return self._coalesced(batcher.submit(values), values, observation)

    async def _aone(self, record: Any, observation: Observation | None) -> Any:
        batcher, tabular = self._batcher, self._tabular
        if batcher is None or tabular is None:  # closed meanwhile
            return await run_off_loop(self._one, record, observation)
        values = self._enter_queue(batcher, tabular, record)
        call = await batcher.asubmit(values)
        if call is None or call.fields is None:  # closed meanwhile, or the batch failed
            return await run_off_loop(self._answer, values)
        return self._coalesced(call, values, observation)

    def _enter_queue(self, batcher: Batcher, tabular: TabularValidator, record: Any) -> Any:
        """Validate a record in the caller's thread; a bad one never reaches the queue."""
        batcher.enter()
        try:
            return tabular.record(record)
        except BaseException:
            batcher.leave()
            raise

    def _coalesced(
        self, call: Call | None, values: tuple[Any, ...], observation: Observation | None
    ) -> Any:
        """One record's answer from the coalesced call that ran it (or alone, if none did)."""
        if call is None or call.fields is None:  # closed meanwhile, or the batch failed
            return self._answer(values)
        if observation is not None:
            observation.coalesced = call.size
            observation.first_of_coalesced = call.index == 0
        return self._row(call.fields, call.index)

    def _answer(self, values: tuple[Any, ...]) -> Any:
        """Run one validated record alone and decode its output."""
        return self._decode_one(self._run_values(values))

    # -- the run step: the only place the runner is called and drift counted ----------------------

    def _run_values(self, values: tuple[Any, ...]) -> Mapping[str, Any]:
        assert self._tabular is not None
        if self._run_record is not None:
            fields = self._call(self._run_record, values, None)
        else:
            table = record_table(self._tabular.columns, values)
            fields = self._call(self._runner.run, table, None)
        drift = self._observer.drift if self._observer is not None else None
        if drift is not None:
            drift.update_record(values, fields)
        return fields

    def _run_table(self, table: Table, *, name_rejected: bool = True) -> Mapping[str, Any]:
        fields = self._call(self._runner.run, table, table if name_rejected else None)
        drift = self._observer.drift if self._observer is not None else None
        if drift is not None:
            drift.update_table(table)
            drift.update_outputs(fields)
        return fields

    def _run_rows(self, rows: list[tuple[Any, ...]]) -> Mapping[str, Any]:
        """The batching worker's run: the records it coalesced, as one call."""
        if len(rows) == 1:
            return self._run_values(rows[0])
        assert self._tabular is not None
        # A refused batch is answered record by record by its callers, who name the bad one.
        return self._run_table(self._tabular.from_rows(rows), name_rejected=False)

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
        except RejectedError as exc:
            cause = exc.__cause__ or exc
            if table is not None and table.length > 1:
                index = self._first_rejected_row(table)
            where = "" if index is None else f"Record {index}: "
            raise InvalidInputError(
                f"{where}the model rejected the input: {public_reason(str(cause))}", index=index
            ) from cause

    def _first_rejected_row(self, table: Table) -> int | None:
        """The first record the runtime refuses, found (only on failure) by halving the batch:
        about log2(rows) runs, on half the rows each time at most."""
        columns = table.columns()

        def refuses(start: int, stop: int) -> bool:
            rows = {name: column[start:stop] for name, column in columns.items()}
            try:
                self._runner.run(Table(table.names, stop - start, rows))
            except RejectedError:
                return True
            return False

        start, stop = 0, table.length  # the first refused record is in [start, stop)
        while stop - start > 1:
            middle = (start + stop) // 2
            if refuses(start, middle):
                stop = middle
            else:
                start = middle
        # A runtime that refuses rows only together names no record.
        return start if refuses(start, start + 1) else None

    # -- decode ----------------------------------------------------------------------------------

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

    # -- validate -> run -> decode, for a batch ----------------------------------------------------

    def _many(self, records: Any) -> Predictions[Any]:
        if self._tabular is None:
            return self._tensor_batch(records)
        table = self._tabular.batch(records)
        if table.length == 0:
            return self._empty()
        fields = self._run_table(table)
        return Predictions(
            fields, length=table.length, row=self._row, classes=self._outputs.classes
        )

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
