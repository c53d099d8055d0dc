"""Which onnxruntime session options suit single records on shared cores: measured, not guessed.

For the two ONNX models of ``bench_speed.py`` (a converted pipeline of 8 numbers and 2 strings
feeding 100 boosted trees, and a 20-feature logistic regression), this script times
``model.predict(record)`` and ``model.predict_batch`` of 10,000 rows under each set of session
options modelkit could default to: onnxruntime's own defaults (a thread pool of one thread per
core, idle threads spinning), the same pool with spinning off, and one intra-op thread. Each is
measured on an idle machine and again with one CPU-bound process competing for the cores, as on
a shared server. modelkit's default is the last (``None`` below: no options given). Rounds of
the option sets alternate, and each row is the median of its rounds.

The figures are the basis of modelkit's default (see ``docs/performance.md``). Run it with
``python benchmarks/bench_session_options.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import gc
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _report import (
    format_time,
    print_environment,
    print_load_average,
    print_table,
    quick_parser,
    time_per_call,
)
from bench_speed import LINEAR_FEATURES, fit_pipeline, mixed_data

OPTIONS: dict[str, dict[str, Any] | None] = {
    "onnxruntime defaults": {"intra_op_num_threads": 0},
    "spinning off": {"intra_op_num_threads": 0, "allow_spinning": False},
    "one intra-op thread (modelkit)": None,
}
RECORDS = 64
BATCH_ROWS = 10_000


def _spin(stop: Any) -> None:
    """A CPU-bound neighbour: what another worker process on the same cores looks like."""
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def _models(directory: Path) -> dict[str, tuple[Path, list[Any], Any]]:
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    import modelkit

    frame, y = mixed_data(5000, seed=0)
    modelkit.save(
        fit_pipeline(frame, y),
        directory / "pipeline",
        name="pipeline",
        version="1",
        format="onnx",
        sample_input=frame[:500],
    )
    fresh, _ = mixed_data(BATCH_ROWS, seed=1)
    records = [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in fresh[:RECORDS].to_dict("records")
    ]
    X, labels = make_classification(
        n_samples=BATCH_ROWS, n_features=LINEAR_FEATURES, random_state=0
    )
    modelkit.save(
        LogisticRegression(max_iter=1000).fit(X, labels),
        directory / "linear",
        name="linear",
        version="1",
        format="onnx",
        sample_input=X[:500],
    )
    return {
        "converted pipeline": (directory / "pipeline", records, pd.DataFrame(fresh)),
        "logistic regression (20 floats)": (
            directory / "linear",
            [list(map(float, row)) for row in X[:RECORDS]],
            X,
        ),
    }


def _measure(
    bundle: Path, records: list[Any], batch: Any, *, rounds: int, calls: int
) -> dict[str, tuple[float, float]]:
    """Median time per record and per batch for each option set, rounds alternating.

    Each round loads the model afresh with each option set in turn and drops it after timing,
    so that only one session's thread pool exists at a time: idle pool threads spinning in a
    session that is not being timed would otherwise slow the one that is.
    """
    import modelkit

    single: dict[str, list[float]] = {name: [] for name in OPTIONS}
    whole: dict[str, list[float]] = {name: [] for name in OPTIONS}
    inputs = [records[i % len(records)] for i in range(calls)]
    names = list(OPTIONS)
    for round_ in range(rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            model = modelkit.load(bundle, adapter_options=OPTIONS[name])
            for record in inputs[:100]:
                model.predict(record)
            model.predict_batch(batch)
            single[name].append(time_per_call(model.predict, inputs))
            whole[name].append(time_per_call(model.predict_batch, [batch]))
            del model
            gc.collect()
    return {
        name: (statistics.median(single[name]), statistics.median(whole[name])) for name in names
    }


def run(rounds: int, calls: int) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="modelkit-bench-") as scratch:
        models = _models(Path(scratch))
        for model_name, (bundle, records, batch) in models.items():
            for neighbour in (False, True):
                stop = multiprocessing.Event()
                spinner = multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
                if neighbour:
                    spinner.start()
                    time.sleep(0.5)
                try:
                    figures = _measure(bundle, records, batch, rounds=rounds, calls=calls)
                finally:
                    stop.set()
                    if neighbour:
                        spinner.join()
                base_single, base_batch = figures["onnxruntime defaults"]
                for name, (single, whole) in figures.items():
                    rows.append(
                        (
                            model_name,
                            "one busy neighbour" if neighbour else "idle",
                            name,
                            format_time(single),
                            f"{single / base_single:.2f}x",
                            format_time(whole),
                            f"{whole / base_batch:.2f}x",
                        )
                    )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = quick_parser(__doc__, "fewer rounds and calls, for a smoke run")
    args = parser.parse_args(argv)
    rounds, calls = (4, 300) if args.quick else (12, 1000)
    print_environment(
        ["numpy", "scikit-learn", "skl2onnx", "onnxruntime", "modelkit"],
        f"{'quick' if args.quick else 'full'}; {rounds} rounds of {calls} records",
    )
    rows = run(rounds, calls)
    header = (
        "model",
        "machine",
        "session options",
        "predict(record)",
        "vs defaults",
        f"predict_batch({BATCH_ROWS})",
        "vs defaults",
    )
    print_table([header, *rows], left={0, 1, 2})
    print_load_average()
    return 0


if __name__ == "__main__":
    sys.exit(main())
