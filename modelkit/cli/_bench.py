"""``modelkit bench``: latency and throughput on generated inputs, next to the raw runtime."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from ..errors import ModelkitError
from ._app import EXIT_OK, command, trust_type_option, version_policy_option
from ._common import table

if TYPE_CHECKING:
    from .._environment import VersionPolicy
    from .._model import Model
    from .._spec import Table

__all__ = ["bench"]


@command("bench", epilog="\b\nExample:\n  modelkit bench bundles/churn --quick")
@click.argument("path", metavar="PATH", type=click.Path())
@click.option("--quick", is_flag=True, help="Fewer calls: a smoke run of a few seconds.")
@click.option(
    "--records",
    type=click.IntRange(min=1),
    metavar="N",
    help="Single-record calls to time (default 2,000; 200 with --quick).",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=1000, metavar="N", help="Default 1,000."
)
@version_policy_option
@trust_type_option
def bench(
    *,
    path: str,
    quick: bool,
    records: int | None,
    batch_size: int,
    version_policy: VersionPolicy,
    trusted_types: tuple[str, ...],
) -> int:
    """Measure latency and throughput on generated inputs, next to the raw runtime.

    PATH is the bundle to measure. Inputs are generated from the signature (around the reference
    profile when the bundle has one). 'raw' is the runtime alone (the estimator's
    predict_proba/predict, or onnxruntime's session.run) on arrays prepared beforehand: the
    floor modelkit's validation and decoding add to. Numbers depend on the machine and its load.
    """
    import numpy as np

    from .. import load
    from .._parity import generate_rows
    from .._spec import TabularInputs

    model = load(path, version_policy=version_policy, trusted_types=trusted_types)
    manifest = model.manifest
    assert manifest is not None
    inputs = model.signature.inputs
    if not isinstance(inputs, TabularInputs):
        raise ModelkitError(
            f"modelkit bench generates tabular records; {path!r} has a "
            f"{model.signature.kind} signature."
        )
    calls = records or (200 if quick else 2000)
    rounds = 3 if quick else 15
    pool = max(min(calls, 256), 1)
    generated = generate_rows(
        inputs, None, manifest.profile, max(pool, batch_size), np.random.default_rng(0)
    )
    if generated is None:
        raise ModelkitError(
            f"Cannot generate inputs for {path!r}: a string column has no declared categories "
            "and the bundle has no reference profile to draw values from. Save it with "
            "sample_input= (a few hundred training rows)."
        )
    rows = generated.records()
    batch = rows[:batch_size]

    ours = _Timing(
        single=_time_calls(model.predict, rows[:pool], calls),
        batch=_time_calls(lambda _: model.predict_batch(batch), [None], rounds),
    )
    raw_name, raw = _raw_runtime(
        model, generated, pool=pool, batch_size=batch_size, calls=calls, rounds=rounds
    )

    title = (
        f"{manifest.name} {manifest.version} ({manifest.format}, {manifest.task}): "
        f"{len(inputs.columns)} input columns, generated records"
    )
    text = table(
        ["", "", "modelkit", raw_name, "modelkit/raw"], _report(ours, raw, batch), indent=0
    )
    note = (
        f"{calls:,} single-record calls, {rounds} batches; raw = {raw_name} alone on inputs "
        "prepared beforehand. Figures vary with the machine and its load."
    )
    click.echo(f"{title}\n\n{text}\n\n{note}")
    return EXIT_OK


@dataclass
class _Timing:
    single: list[float] | None = None  # seconds per call
    batch: list[float] | None = None  # seconds per batch


def _report(ours: _Timing, raw: _Timing, batch: Sequence[Any]) -> list[list[str]]:
    """The rows of the table: percentiles and throughput, then the batch's."""
    import numpy as np

    rows: list[list[str]] = []
    for label, name, q in (("single record", "p50", 50), ("", "p90", 90), ("", "p99", 99)):
        mine = float(np.percentile(ours.single, q)) if ours.single else math.nan
        theirs = float(np.percentile(raw.single, q)) if raw.single else math.nan
        rows.append([label, name, _duration(mine), _duration(theirs), _ratio(mine, theirs)])
    mine_rate = len(ours.single or []) / sum(ours.single or [1.0])
    raw_rate = len(raw.single) / sum(raw.single) if raw.single else math.nan
    rows.append(["", "throughput", _rate(mine_rate), _rate(raw_rate), _ratio(raw_rate, mine_rate)])
    mine_batch = float(np.median(ours.batch)) if ours.batch else math.nan
    raw_batch = float(np.median(raw.batch)) if raw.batch else math.nan
    size = len(batch)
    rows.append(
        [
            f"batch of {size:,}",
            "median",
            _duration(mine_batch),
            _duration(raw_batch),
            _ratio(mine_batch, raw_batch),
        ]
    )
    rows.append(
        [
            "",
            "throughput",
            _rate(size / mine_batch),
            _rate(size / raw_batch),
            _ratio(size / raw_batch, size / mine_batch),
        ]
    )
    return rows


def _time_calls(call: Callable[[Any], Any], items: Sequence[Any], count: int) -> list[float]:
    clock = time.perf_counter
    for item in items[:5]:  # warm-up
        call(item)
    times = []
    size = len(items)
    for i in range(count):
        item = items[i % size]
        started = clock()
        call(item)
        times.append(clock() - started)
    return times


def _raw_runtime(
    model: Model[Any, Any], rows: Table, *, pool: int, batch_size: int, calls: int, rounds: int
) -> tuple[str, _Timing]:
    """The bundle's runtime called directly, on the same rows in the layout it expects."""
    from .._runner_model import RunnerModel
    from ..adapters._joblib import JoblibRunner
    from ..adapters._onnx import OnnxRunner

    runner = model.runner if isinstance(model, RunnerModel) else None
    singles = [_table_rows(rows, i, i + 1) for i in range(pool)]
    batch = _table_rows(rows, 0, batch_size)
    if isinstance(runner, JoblibRunner):
        estimator = runner.estimator
        method = (
            estimator.predict_proba
            if model.signature.outputs.has_probabilities
            else estimator.predict
        )
        encoded = [runner.encode(single) for single in singles]
        whole = runner.encode(batch)
        return "scikit-learn", _Timing(
            _time_calls(method, encoded, calls),
            _time_calls(lambda _: method(whole), [None], rounds),
        )
    if isinstance(runner, OnnxRunner):
        run = runner.session.run
        feeds = [runner.feed(single) for single in singles]
        whole_feed = runner.feed(batch)
        return "onnxruntime", _Timing(
            _time_calls(lambda feed: run(None, feed), feeds, calls),
            _time_calls(lambda _: run(None, whole_feed), [None], rounds),
        )
    return "raw (n/a)", _Timing()


def _table_rows(rows: Table, start: int, stop: int) -> Table:
    import numpy as np

    from .._spec import Table

    stop = min(stop, rows.length)
    if isinstance(rows.data, np.ndarray):
        data: Any = rows.data[start:stop]
    else:
        data = {name: column[start:stop] for name, column in rows.columns().items()}
    return Table(rows.names, stop - start, data)


def _duration(seconds: float) -> str:
    if seconds != seconds:  # noqa: PLR0124 - NaN: not measured
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:,.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:,.2f} ms"
    return f"{seconds:,.2f} s"


def _rate(per_second: float) -> str:
    if per_second != per_second:  # noqa: PLR0124 - NaN: not measured
        return "-"
    return f"{per_second:,.0f} rows/s"


def _ratio(mine: float, theirs: float) -> str:
    if mine != mine or theirs != theirs or not theirs:  # noqa: PLR0124 - NaN: not measured
        return "-"
    return f"{mine / theirs:.2f}x"
