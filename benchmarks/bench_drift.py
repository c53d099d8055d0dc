"""What drift statistics cost per record, next to what the prediction itself costs.

A 10-feature reference (10,000 rows) is profiled, and a :class:`DriftMonitor` counts records one
at a time (``update_record``, the cost ``predict(record)`` pays with ``drift=True``) and in
batches of 10,000 rows (``update_table``, per row). For context, the same run measures an ONNX
logistic regression's ``predict(record)`` and ``predict_batch`` per row, when scikit-learn and
skl2onnx are installed. Every benchmark runs once per round, in an order that rotates each round,
so machine noise lands on all of them; the table reports the median over rounds and the spread.
Nothing is asserted: this is a report, and the exit status is 0 whatever it says.

Run it with ``python benchmarks/bench_drift.py`` (``--quick`` for a smoke run, ~5x shorter).
"""

from __future__ import annotations

import gc
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _report import (
    format_time,
    print_environment,
    print_load_average,
    print_table,
    quick_parser,
    spread,
)

N_FEATURES = 10
NAMES = [f"x{j}" for j in range(N_FEATURES)]
REFERENCE_ROWS = 10_000
BATCH_ROWS = 10_000
# Records are cycled from a small pool so that each call gets different values, as in a service.
RECORD_POOL = 64
# The target for drift statistics on one 10-feature record (docs/performance.md).
RECORD_TARGET_NS = 2_000


@dataclass(frozen=True)
class Plan:
    """How many rounds to run, and how many calls one round of a per-record benchmark makes.

    Rounds are short and many: a burst of load from a neighbouring process then spoils a few
    rounds of each benchmark instead of a whole one.
    """

    rounds: int
    record_calls: int
    warmup_calls: int


FULL = Plan(rounds=41, record_calls=2_000, warmup_calls=500)
QUICK = Plan(rounds=8, record_calls=2_000, warmup_calls=100)


@dataclass
class Benchmark:
    """One measurement: ``function`` over ``inputs``, reported per row.

    With ``unpack``, each input is a tuple of arguments: ``function(*item)``.
    """

    name: str
    function: Callable[..., Any]
    inputs: Sequence[Any]
    rows_per_input: int = 1
    target_ns: float | None = None
    unpack: bool = False
    times: list[float] = field(default_factory=list)

    def run_round(self) -> None:
        # Collect outside the timed loop; the collector stays on inside it, because a real
        # caller pays for the garbage its own calls make.
        gc.collect()
        function = self.function
        if self.unpack:
            start = time.perf_counter_ns()
            for arguments in self.inputs:
                function(*arguments)
        else:
            start = time.perf_counter_ns()
            for item in self.inputs:
                function(item)
        elapsed = time.perf_counter_ns() - start
        self.times.append(elapsed / (len(self.inputs) * self.rows_per_input))

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else math.nan


# -- reporting --------------------------------------------------------------------------------


def print_results(benchmarks: list[Benchmark]) -> None:
    header = ("benchmark", "median per row", "fastest round", "IQR", "target", "met")
    rows = [header]
    for bench in benchmarks:
        times = bench.times
        target = "(context)" if bench.target_ns is None else f"<= {format_time(bench.target_ns)}"
        met = (
            "" if bench.target_ns is None else ("yes" if bench.median <= bench.target_ns else "NO")
        )
        rows.append(
            (
                bench.name,
                format_time(bench.median),
                format_time(min(times)),
                spread(times),
                target,
                met,
            )
        )
    print_table(rows, left={0, 4, 5})


def print_setup(plan: Plan, *, quick: bool) -> None:

    print_environment(
        ["numpy", "modelkit"],
        f"{'quick' if quick else 'full'}: {plan.rounds} rounds; {plan.record_calls} calls per "
        f"round of each per-record benchmark; one {BATCH_ROWS}-row batch per round of each "
        "batch one",
    )


# -- the benchmarks ---------------------------------------------------------------------------


def drift_benchmarks(plan: Plan) -> list[Benchmark]:
    """The monitor's updates, on a numeric and on a mixed 10-column signature."""
    from modelkit._drift import DriftMonitor
    from modelkit._infer import infer_tabular_signature
    from modelkit._profile import profile_reference
    from modelkit._validation import TabularValidator

    rng = np.random.default_rng(0)
    numeric = rng.standard_normal((REFERENCE_ROWS + BATCH_ROWS, N_FEATURES))
    labels = (numeric[:, 0] + numeric[:, 1] > 0).astype(np.int64)
    mixed: list[dict[str, Any]] = []
    for row in numeric.tolist():
        record: dict[str, Any] = dict(zip(NAMES[:7], row[:7], strict=True))
        record["plan"] = ("basic", "plus", "pro")[int(abs(row[7]) * 2) % 3]
        record["country"] = f"c{int(abs(row[8]) * 10) % 25}"  # more than the 20 kept categories
        record["active"] = row[9] > 0
        mixed.append(record)

    benchmarks = []
    for label, reference, current in (
        ("numeric", numeric[:REFERENCE_ROWS], numeric[REFERENCE_ROWS:]),
        ("7 numeric + 3 categorical", mixed[:REFERENCE_ROWS], mixed[REFERENCE_ROWS:]),
    ):
        inputs, _ = infer_tabular_signature(reference)
        validator = TabularValidator(inputs)
        profile = profile_reference(
            inputs, validator.batch(reference), outputs={"label": labels[:REFERENCE_ROWS]}
        )
        monitor = DriftMonitor(profile, inputs)
        rows = current if isinstance(current, list) else current.tolist()
        pool = [validator.record(rows[i]) for i in range(RECORD_POOL)]
        records = [pool[i % RECORD_POOL] for i in range(plan.record_calls)]
        for values in records[: plan.warmup_calls]:
            monitor.update_record(values)
        benchmarks.append(
            Benchmark(
                f"update_record, 10 features ({label})",
                monitor.update_record,
                records,
                target_ns=RECORD_TARGET_NS if label == "numeric" else None,
            )
        )
        if label == "numeric":
            # What predict(record) pays with drift on: the record and its output, as the ONNX
            # adapter gives it (an array of one label, and the probabilities, not monitored).
            outputs = [
                {
                    "label": labels[REFERENCE_ROWS + i : REFERENCE_ROWS + i + 1],
                    "probabilities": None,
                }
                for i in range(RECORD_POOL)
            ]
            pairs = [
                (pool[i % RECORD_POOL], outputs[i % RECORD_POOL]) for i in range(plan.record_calls)
            ]
            benchmarks.append(
                Benchmark(
                    f"update_record(values, fields), 10 features ({label})",
                    monitor.update_record,
                    pairs,
                    target_ns=RECORD_TARGET_NS,
                    unpack=True,
                )
            )
            benchmarks.append(
                Benchmark(
                    f"update_record(values); update_outputs(fields) ({label})",
                    _record_then_output(monitor),
                    pairs,
                    unpack=True,
                )
            )
        table = validator.batch(current)
        monitor.update_table(table)
        benchmarks.append(
            Benchmark(
                f"update_table, {BATCH_ROWS} rows ({label}), per row",
                monitor.update_table,
                [table],
                rows_per_input=table.length,
            )
        )
        benchmarks.append(
            Benchmark(f"report(), 10 features ({label})", _report_of(monitor), [None] * 20)
        )
    return benchmarks


def _report_of(monitor: Any) -> Callable[[Any], Any]:
    return lambda _: monitor.report()


def _record_then_output(monitor: Any) -> Callable[[Any, Any], None]:
    update_record, update_outputs = monitor.update_record, monitor.update_outputs

    def update(values: Any, fields: Any) -> None:
        update_record(values)
        update_outputs(fields)

    return update


def prediction_benchmarks(plan: Plan, directory: Path) -> list[Benchmark]:
    """ONNX predict with drift statistics off and on, for scale (skipped when unavailable)."""
    import modelkit

    try:
        import pandas
        from skl2onnx import to_onnx
        from sklearn.linear_model import LogisticRegression
    except ImportError as exc:
        print(f"no prediction baseline: {exc}")
        return []
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2000, N_FEATURES))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    estimator = LogisticRegression().fit(X, y)
    path = directory / "logistic-onnx"
    try:
        onnx_model = to_onnx(
            estimator,
            X[:1].astype(np.float32),
            options={id(estimator): {"zipmap": False}},
            target_opset=17,
        )
        modelkit.save(
            onnx_model,
            path,
            name="logistic",
            version="1.0.0",
            sample_input=X[:1000].astype(np.float32),
        )
        models = {"off": modelkit.load(path)}
    except Exception as exc:  # noqa: BLE001 - the baseline is optional context
        print(f"no prediction baseline: {type(exc).__name__}: {exc}")
        return []
    try:
        models["on"] = modelkit.load(path, drift=True)  # type: ignore[call-arg]
    except Exception as exc:  # noqa: BLE001 - drift=True comes with the integration
        print(f"no drift=True predictions: {type(exc).__name__}: {exc}")
    pool = [dict(zip(NAMES, row, strict=True)) for row in X[:RECORD_POOL].tolist()]
    records = [pool[i % RECORD_POOL] for i in range(plan.record_calls)]
    frame = pandas.DataFrame(rng.standard_normal((BATCH_ROWS, N_FEATURES)), columns=NAMES)
    benchmarks = []
    for state, model in models.items():
        for record in records[: plan.warmup_calls]:
            model.predict(record)
        model.predict_batch(frame)
        benchmarks.append(Benchmark(f"onnx predict(record), drift {state}", model.predict, records))
        benchmarks.append(
            Benchmark(
                f"onnx predict_batch({BATCH_ROWS} rows), drift {state}, per row",
                model.predict_batch,
                [frame],
                rows_per_input=BATCH_ROWS,
            )
        )
    return benchmarks


def _nothing(_item: Any) -> None:
    return None


def run(plan: Plan, directory: Path) -> list[Benchmark]:
    started = time.perf_counter()
    # A call that does nothing shows how fast (and how steady) the machine is during the run.
    calibration = Benchmark("a Python call doing nothing (calibration)", _nothing, [None] * 2000)
    benchmarks = [calibration, *drift_benchmarks(plan), *prediction_benchmarks(plan, directory)]
    print(f"built the references, monitors and models in {time.perf_counter() - started:.1f} s")
    print("measuring...", flush=True)
    for round_ in range(plan.rounds):
        shift = round_ % len(benchmarks)
        for bench in benchmarks[shift:] + benchmarks[:shift]:
            bench.run_round()
    print()
    return benchmarks


def main(argv: Sequence[str] | None = None) -> int:
    parser = quick_parser(__doc__, "about 5x fewer rounds, for a smoke run")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    print_setup(plan, quick=args.quick)
    with tempfile.TemporaryDirectory(prefix="modelkit-bench-") as directory:
        benchmarks = run(plan, Path(directory))
    print("Medians over rounds, per record (per row for batches); fastest round for reference;")
    print("IQR: spread of the rounds, as % of the median.")
    print()
    print_results(benchmarks)
    print_load_average()
    return 0


if __name__ == "__main__":
    sys.exit(main())
