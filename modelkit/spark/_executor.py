"""The executors' side of modelkit.spark: load the bundle once per worker, score Arrow batches.

The driver ships only :func:`executor_function`'s closure, which holds the job description (the
bundle's path or shipped name, its digest, how to shape the output) and no model. In each Python
worker, :func:`score_partition` loads the bundle pinned to that digest, keeps it cached, and
turns each batch into the flat "wire" columns the driver's output struct is assembled from.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from .._scoring import problem_text, score_tolerant, take_rows
from ..errors import (
    BundleError,
    EnvironmentMismatchError,
    IntegrityError,
    InvalidInputError,
    MissingDependencyError,
    ModelkitError,
)

__all__ = ["executor_function", "load_seconds", "score_partition"]

# The package's name, not this module's: what applications configure logging for.
logger = logging.getLogger("modelkit.spark")

# How many models one Python worker keeps loaded; a job rarely scores with more than a few.
_MAX_CACHED_MODELS = 8


# --------------------------------------------------------------------------------------------
# What travels to the executors
# --------------------------------------------------------------------------------------------


def executor_function(job: dict[str, Any]) -> Callable[[Any], Any]:
    """The function Spark ships to the executors: it holds the job description, no model.

    It is a closure, so cloudpickle sends it by value and unpickling it needs neither modelkit
    nor this module; the job's holder checks the executor's Python first (see _ExecutorCheck).
    """
    checked: Any = _ExecutorCheck(job)

    def score_partitions(batches: Any) -> Any:
        # On the executor, `checked` is the job dict the check returned while unpickling.
        from modelkit.spark._executor import score_partition

        return score_partition(checked, batches)

    return score_partitions


class _ExecutorCheck:
    """Holds the job on the driver; unpickles as the job dict, after checking the executor.

    A Python worker without pyarrow, pandas or modelkit would otherwise fail with an import
    traceback from deep inside Spark; this check runs first, while the task's function is being
    unpickled, and names what to install.
    """

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job

    def __reduce__(self) -> tuple[Callable[[dict[str, Any]], dict[str, Any]], tuple[Any, ...]]:
        return (_make_executor_check(), (self.job,))


def _make_executor_check() -> Callable[[dict[str, Any]], dict[str, Any]]:
    # A closure, so that it too travels by value: it must run where modelkit may be missing.
    def check_executor(job: dict[str, Any]) -> dict[str, Any]:
        import importlib
        import socket
        import sys

        missing = []
        for module in ("pandas", "pyarrow", "modelkit"):
            try:
                importlib.import_module(module)
            except ImportError:
                missing.append(module)
        if missing:
            raise RuntimeError(
                f"modelkit.spark: the Python of a Spark executor ({sys.executable} on "
                f"{socket.gethostname()}) cannot import {', '.join(missing)}, needed to score "
                f"with model {job['name']!r}. Install modelkit with its 'spark' extra (pyspark, "
                "pyarrow, pandas) and the model's own libraries in the executors' Python "
                "environment, or ship a packed environment with spark-submit --archives and "
                "point spark.pyspark.python at it."
            )
        return job

    return check_executor


# --------------------------------------------------------------------------------------------
# The executor side
# --------------------------------------------------------------------------------------------

_models: collections.OrderedDict[tuple[str, str, str], Any] = collections.OrderedDict()
_models_lock = threading.Lock()
#: Seconds each bundle took to load in this process, by digest (benchmarks read it).
load_seconds: dict[str, float] = {}


def _executor_model(job: Mapping[str, Any]) -> Any:
    """The job's model, loaded once per Python worker process and cached by digest (and the
    runtime options it was loaded with)."""
    digest = (
        job["digest"],
        repr(sorted(job["adapter_options"].items())),
        repr(sorted(job["trusted_types"])),
    )
    with _models_lock:
        model = _models.get(digest)
        if model is not None:
            _models.move_to_end(digest)
            return model
        started = time.perf_counter()
        model = _load_on_executor(job)
        load_seconds[job["digest"]] = time.perf_counter() - started
        logger.info(
            "modelkit.spark: loaded %r %s (%s) in %.3f s in worker %d on %s",
            job["name"],
            job["version"],
            job["digest"],
            load_seconds[job["digest"]],
            os.getpid(),
            socket.gethostname(),
        )
        _models[digest] = model
        while len(_models) > _MAX_CACHED_MODELS:
            _models.popitem(last=False)
        return model


def _load_on_executor(job: Mapping[str, Any]) -> Any:
    from .._api import load

    host = socket.gethostname()
    where = f"Spark executor {host}"
    location = job["path"]
    if job["shipped"] is not None:
        from pyspark import SparkFiles

        location = SparkFiles.get(job["shipped"])
    try:
        return load(
            location,
            sha256=job["digest"],
            adapter_options=job["adapter_options"],
            trusted_types=job["trusted_types"],
        )
    except IntegrityError as exc:
        raise IntegrityError(
            f"modelkit.spark: the bundle {location!r} on {where} is not the one the driver "
            f"checked ({job['digest']}): {exc} Give every executor the same bundle, and do not "
            "change it while jobs use it (a shipped file cannot be replaced within a session: "
            "ship a new version under a new name).",
            path=location,
            expected=exc.expected,
            actual=exc.actual,
        ) from None
    except BundleError as exc:
        raise BundleError(
            f"modelkit.spark: {where} cannot read the bundle {location!r}: {exc} Put the bundle "
            "where every executor can read it (a shared or distributed file system), or pass "
            "ship=True to copy it to the executors with SparkContext.addFile.",
            path=location,
        ) from None
    except MissingDependencyError as exc:
        raise MissingDependencyError(
            f"modelkit.spark: {where} cannot load model {job['name']!r}: {exc} Install it in "
            "the executors' Python environment.",
            name=exc.name,
            extra=exc.extra,
        ) from None
    except EnvironmentMismatchError as exc:
        raise EnvironmentMismatchError(
            f"modelkit.spark: {where} cannot load model {job['name']!r}: {exc}",
            mismatches=exc.mismatches,
        ) from None


def _partition_id() -> int | None:
    from pyspark import TaskContext

    context = TaskContext.get()
    return None if context is None else int(context.partitionId())


def score_partition(job: Mapping[str, Any], batches: Iterator[Any]) -> Iterator[Any]:
    """Score one partition's Arrow batches; runs in the Python worker."""
    model = _executor_model(job)
    partition = _partition_id()
    offset = 0
    for frame in batches:
        if job["with_errors"]:
            yield _score_tolerant(job, model, frame)
        else:
            try:
                yield _wire_frame(job, model, frame)
            except InvalidInputError as exc:
                raise _positioned(job, exc, partition, offset, len(frame)) from None
        offset += len(frame)


def _positioned(
    job: Mapping[str, Any], exc: InvalidInputError, partition: int | None, offset: int, size: int
) -> InvalidInputError:
    """The batch's error, with the row's position in the partition instead of in the batch."""
    problems: list[dict[str, Any]] = []
    for problem in exc.errors:
        index = problem.get("index")
        problems.append({**problem, "index": offset + index if isinstance(index, int) else None})
    first = problems[0]
    part = "" if partition is None else f"partition {partition}, "
    if first["index"] is not None:
        where = f"{part}row {first['index']} of the partition"
    else:
        where = f"{part}rows {offset} to {offset + size - 1} of the partition"
    more = len(problems) - 1
    text = problem_text(exc.errors[0]) or str(exc).rstrip(".")
    if more:
        text += f" (and {more} more problem{'s' if more > 1 else ''} in that batch)"
    return InvalidInputError(
        f"modelkit.spark: model {job['name']!r} {job['version']} cannot score {where}: {text}. "
        "Fix or filter such rows, or pass on_error='null' to modelkit.spark.predict() to score "
        "the other rows and record each bad row's error.",
        field=first.get("field"),
        index=first["index"],
        errors=problems,
    )


def _model_inputs(job: Mapping[str, Any], frame: Any) -> Any:
    if not job["tensor_inputs"]:
        return frame
    return {name: _stack(frame[name].to_numpy(), rank) for name, rank in job["tensor_inputs"]}


def _stack(values: np.ndarray, rank: int) -> np.ndarray:
    """Rows of (nested) arrays, as Arrow gives them to pandas, as one array."""
    if rank == 0:
        return values
    if len(values) == 0:
        return np.asarray(values)
    return np.stack([_stack(np.asarray(v, dtype=object), rank - 1) for v in values]).astype(
        _common_dtype(values, rank)
    )


def _common_dtype(values: np.ndarray, rank: int) -> Any:
    item: Any = values[0]
    for _ in range(rank):
        item = item[0] if len(item) else 0.0
    return np.asarray(item).dtype


def _wire_frame(job: Mapping[str, Any], model: Any, frame: Any) -> Any:
    """The wire columns (label, probability_j / value / tensor_j) for one batch."""
    import pandas

    length = len(frame)
    task = job["task"]
    columns: dict[str, Any] = {}
    if length == 0:
        return _empty_wire(job)
    predictions = model.predict_batch(_model_inputs(job, frame))
    if task == "classification":
        columns["label"] = _labels(job["label_kind"], predictions["label"])
        if job["n_probabilities"]:
            probabilities = np.asarray(predictions["probabilities"], dtype=np.float64)
            for j in range(job["n_probabilities"]):
                columns[f"probability_{j}"] = probabilities[:, j]
    elif task == "regression":
        values = np.asarray(predictions["value"], dtype=np.float64)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1:
            raise ModelkitError(
                f"modelkit.spark: model {job['name']!r} gives {values.shape[1:]} values per row; "
                "modelkit.spark scores regressors with one value per row. Score it with "
                "predict_batch() inside mapInPandas."
            )
        columns["value"] = values
    else:
        for j, (name, rank) in enumerate(job["tensor_outputs"]):
            array = np.asarray(predictions[name])
            columns[f"tensor_{j}"] = array if rank == 0 else _rows(array, rank)
    if job["with_errors"]:
        columns["error"] = np.full(length, None, dtype=object)
    return pandas.DataFrame(columns)


def _rows(array: np.ndarray, rank: int) -> np.ndarray:
    """One (nested) list per row, as Arrow takes arrays from pandas."""
    rows = np.empty(len(array), dtype=object)
    rows[:] = list(array) if rank == 1 else array.tolist()
    return rows


def _labels(kind: str, labels: Any) -> np.ndarray:
    array = np.asarray(labels)
    if kind == "long":
        return array.astype(np.int64)
    if kind == "double":
        return array.astype(np.float64)
    if kind == "boolean":
        return array.astype(bool)
    if array.dtype == object and all(type(v) is str for v in array.tolist()):
        return array
    strings = np.empty(len(array), dtype=object)
    strings[:] = [str(v) for v in array.tolist()]
    return strings


_EMPTY_DTYPES = {"string": object, "long": np.int64, "double": np.float64, "boolean": bool}


def _empty_wire(job: Mapping[str, Any], length: int = 0) -> Any:
    """Wire columns of the right dtypes, all placeholders (rows whose output will be null)."""
    import pandas

    columns: dict[str, Any] = {}
    if job["task"] == "classification":
        columns["label"] = np.zeros(length, dtype=_EMPTY_DTYPES[job["label_kind"]])
        if job["label_kind"] == "string":
            columns["label"][:] = ""
        for j in range(job["n_probabilities"]):
            columns[f"probability_{j}"] = np.zeros(length)
    elif job["task"] == "regression":
        columns["value"] = np.zeros(length)
    else:
        for j, _ in enumerate(job["tensor_outputs"]):
            columns[f"tensor_{j}"] = np.full(length, None, dtype=object)
    if job["with_errors"]:
        columns["error"] = np.full(length, None, dtype=object)
    return pandas.DataFrame(columns)


def _score_tolerant(job: Mapping[str, Any], model: Any, frame: Any) -> Any:
    """Score a batch in one call; only if it fails, set the rows at fault aside and retry."""
    import pandas

    def score(part: Any) -> Any:
        return _wire_frame(job, model, part)  # a DataFrame: a mapping of column to values

    length = len(frame)
    scored = score_tolerant(score, frame, length, take_rows)
    if not scored.refused:
        # Usually the wire frame of the one call, kept as it is (copy=False).
        return pandas.DataFrame(scored.columns, copy=False)
    wire = _empty_wire(job, length)
    for name, values in scored.columns.items():
        column = wire[name].to_numpy(copy=True)
        column[scored.kept] = values
        wire[name] = column
    messages = np.full(length, None, dtype=object)
    for refused in scored.refused:
        messages[refused.row] = refused.text
    wire["error"] = messages
    return wire
