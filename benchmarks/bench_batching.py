"""Micro-batching: throughput of single-record calls from many threads, with and without it.

A scikit-learn pipeline (scaling and one-hot encoding in a ColumnTransformer, then a logistic
regression, trained on a DataFrame of 8 numeric and 2 categorical columns) is saved as a joblib
bundle and loaded twice: plainly, and with ``modelkit.Batching``. Eight threads then call
``predict(record)`` with their own records; each round times a fixed number of calls per thread.
Rounds of every setting alternate (and rotate which goes first), so machine noise lands on all
of them; the table reports the median throughput of each and its ratio to the unbatched one,
next to the target. A second table shows what one lone thread pays per call for batching, on
that pipeline and on a small numeric model that answers in tens of microseconds.
Nothing is asserted: this is a report, and the exit status is 0 whatever it says.

Run it with ``python benchmarks/bench_batching.py`` (``--quick`` for a smoke run, ~3x shorter).
"""

from __future__ import annotations

import gc
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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

NUMERIC = [f"x{j}" for j in range(8)]
CATEGORICAL = ["plan", "region"]
PLANS = ["free", "basic", "pro", "team"]
REGIONS = ["eu", "us", "apac"]
THREADS = 8
# Records are cycled from a small pool so that each call gets different values, as in a service.
RECORD_POOL = 256
TARGET_RATIO = 6.0


@dataclass(frozen=True)
class Plan:
    """How many rounds each measurement takes, and how many calls one round makes."""

    throughput_rounds: int
    calls_per_thread: int
    latency_rounds: int
    latency_calls: int
    warmup_calls: int


FULL = Plan(
    throughput_rounds=9,
    calls_per_thread=80,
    latency_rounds=15,
    latency_calls=100,
    warmup_calls=20,
)
# About 3x fewer rounds, for a smoke run.
QUICK = Plan(
    throughput_rounds=3,
    calls_per_thread=80,
    latency_rounds=5,
    latency_calls=100,
    warmup_calls=10,
)


@dataclass(frozen=True)
class Setting:
    """One way to load the model: a label and the ``batching=`` argument."""

    label: str
    batching: Any


def settings() -> list[Setting]:
    import modelkit

    return [
        Setting("no batching", False),
        Setting("Batching() (64, 2 ms)", modelkit.Batching()),
        Setting("Batching(16, 1 ms)", modelkit.Batching(max_batch_size=16, max_wait_ms=1.0)),
        Setting("Batching(64, 0 ms)", modelkit.Batching(max_wait_ms=0.0)),
    ]


# -- the model --------------------------------------------------------------------------------


def build_bundles(directory: Path) -> tuple[Path, Path, list[dict[str, Any]]]:
    """Fit the pipeline on a synthetic DataFrame and a small logistic regression on its numeric
    columns (as an array), save both, and return a pool of records."""
    import pandas
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    import modelkit

    rng = np.random.default_rng(0)
    rows = 5000
    frame = pandas.DataFrame(rng.standard_normal((rows, len(NUMERIC))), columns=NUMERIC)
    frame["plan"] = rng.choice(PLANS, rows)
    frame["region"] = rng.choice(REGIONS, rows)
    target = (frame["x0"] + frame["x1"] + (frame["plan"] == "pro") > 0.5).astype(int)
    pipeline = make_pipeline(
        ColumnTransformer(
            [
                ("numeric", StandardScaler(), NUMERIC),
                ("categorical", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
            ]
        ),
        LogisticRegression(max_iter=500),
    ).fit(frame, target)
    path = directory / "churn"
    modelkit.save(pipeline, path, name="churn", version="1.0.0", sample_input=frame.head(200))
    numeric = frame[NUMERIC].to_numpy()
    small = directory / "small"
    modelkit.save(
        LogisticRegression().fit(numeric, target),
        small,
        name="small",
        version="1.0.0",
        sample_input=numeric[:200],
    )
    pool = frame.sample(RECORD_POOL, random_state=1).to_dict(orient="records")
    return path, small, pool


# -- measuring --------------------------------------------------------------------------------


def calls_per_second(predict: Callable[[Any], Any], inputs: Sequence[Sequence[Any]]) -> float:
    """Throughput of ``len(inputs)`` threads each calling ``predict`` on its own inputs."""
    barrier = threading.Barrier(len(inputs) + 1)

    def work(records: Sequence[Any]) -> None:
        barrier.wait()
        for record in records:
            predict(record)

    threads = [threading.Thread(target=work, args=(records,)) for records in inputs]
    for thread in threads:
        thread.start()
    gc.collect()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    return sum(len(records) for records in inputs) / elapsed


def time_per_call(predict: Callable[[Any], Any], records: Sequence[Any]) -> float:
    """Nanoseconds per call of one thread calling ``predict`` on ``records``."""
    gc.collect()
    start = time.perf_counter_ns()
    for record in records:
        predict(record)
    return (time.perf_counter_ns() - start) / len(records)


def alternate(functions: Sequence[Callable[[], float]], rounds: int) -> list[list[float]]:
    """Run every function once per round, rotating which goes first; return each one's samples."""
    samples: list[list[float]] = [[] for _ in functions]
    for round_ in range(rounds):
        for offset in range(len(functions)):
            index = (round_ + offset) % len(functions)
            samples[index].append(functions[index]())
    return samples


def check_agreement(models: Sequence[Any], pool: Sequence[dict[str, Any]]) -> None:
    """Say whether every setting gives the same labels as the unbatched model (sanity only)."""
    expected = [models[0].predict(record).label for record in pool[:32]]
    same = all(
        [model.predict(record).label for record in pool[:32]] == expected for model in models[1:]
    )
    print(f"all settings agree on 32 records: {'yes' if same else 'NO'}")


# -- the benchmarks ---------------------------------------------------------------------------


def run(plan: Plan, directory: Path) -> None:
    import modelkit

    started = time.perf_counter()
    path, small, pool = build_bundles(directory)
    print(f"fitted and saved the models in {time.perf_counter() - started:.1f} s")
    chosen = settings()
    models = [modelkit.load(path, batching=setting.batching) for setting in chosen]
    check_agreement(models, pool)
    print()

    per_thread = [
        [pool[(t * 37 + i) % RECORD_POOL] for i in range(plan.calls_per_thread)]
        for t in range(THREADS)
    ]
    for model in models:
        calls_per_second(model.predict, [records[: plan.warmup_calls] for records in per_thread])
    print(f"measuring {THREADS} threads x {plan.calls_per_thread} calls...", flush=True)
    throughput = alternate(
        [lambda model=model: calls_per_second(model.predict, per_thread) for model in models],
        plan.throughput_rounds,
    )

    print("measuring one lone thread...", flush=True)
    records = [pool[i % RECORD_POOL] for i in range(plan.latency_calls)]
    small_records = [[record[name] for name in NUMERIC] for record in records]
    # A lone caller pays the same whatever the settings: compare Batching() with none.
    lone = [
        ("pipeline", models[0], records),
        ("pipeline, Batching()", models[1], records),
        ("small model", modelkit.load(small), small_records),
        ("small model, Batching()", modelkit.load(small, batching=True), small_records),
    ]
    for _, model, inputs in lone:
        time_per_call(model.predict, inputs[: plan.warmup_calls])
    latency = alternate(
        [
            lambda model=model, inputs=inputs: time_per_call(model.predict, inputs)
            for _, model, inputs in lone
        ],
        plan.latency_rounds,
    )
    for model in [*models, *(model for _, model, _ in lone)]:
        model.close()
    print()

    base = statistics.median(throughput[0])
    rows = [("8 threads, predict(record)", "calls/s", "ratio", "target", "met", "IQR")]
    for setting, samples in zip(chosen, throughput, strict=True):
        median = statistics.median(samples)
        is_baseline = setting.batching is False
        rows.append(
            (
                setting.label,
                f"{median:,.0f}",
                f"{median / base:.2f}x",
                "(baseline)" if is_baseline else f">= {TARGET_RATIO:g}x",
                "" if is_baseline else ("yes" if median / base >= TARGET_RATIO else "NO"),
                spread(samples),
            )
        )
    print_table(rows, left={0, 3, 4})
    print()

    rows = [("1 thread, predict(record)", "per call", "diff", "IQR")]
    for index, ((label, _, _), samples) in enumerate(zip(lone, latency, strict=True)):
        median = statistics.median(samples)
        diff = median - statistics.median(latency[index - index % 2])
        rows.append(
            (
                label,
                format_time(median),
                "" if index % 2 == 0 else ("+" if diff >= 0 else "-") + format_time(abs(diff)),
                spread(samples),
            )
        )
    print_table(rows, left={0})


def print_setup(plan: Plan, *, quick: bool) -> None:

    versions = [
        "numpy",
        "scikit-learn",
        "pandas",
        "modelkit",
    ]
    print_environment(
        versions,
        f"{'quick' if quick else 'full'}: {plan.throughput_rounds} rounds of {THREADS} threads x "
        f"{plan.calls_per_thread} calls; {plan.latency_rounds} rounds of {plan.latency_calls} "
        "calls from one thread",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = quick_parser(__doc__, "about 3x fewer rounds, for a smoke run")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    print_setup(plan, quick=args.quick)
    with tempfile.TemporaryDirectory(prefix="modelkit-bench-") as directory:
        run(plan, Path(directory))
    print()
    print("Medians of alternating rounds. ratio: throughput / the unbatched throughput;")
    print("IQR: spread of the rounds, as % of the median.")
    print_load_average()
    return 0


if __name__ == "__main__":
    sys.exit(main())
