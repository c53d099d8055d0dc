"""modelkit.spark against predict_batch in one process, on the same rows and the same bundle.

A random forest is saved as a joblib bundle; 1,000,000 rows of 20 features are written to one
Parquet file. The Spark side scores them with ``modelkit.spark.predict`` in ``local[2]`` (read
Parquet, score, materialise every column with the ``noop`` writer); the in-process side reads
the same file with pandas and calls ``model.predict_batch`` once. The first Spark round starts
fresh Python workers (each loads the bundle); the next rounds reuse them, as a long job does.
The load time per worker is measured on the executors, where the bundle is loaded.
Nothing is asserted: this is a report, and the exit status is 0 whatever it says.

Run it with ``python benchmarks/bench_spark.py`` (``--quick`` for 100,000 rows and fewer rounds).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _report import print_environment, print_load_average, print_table, quick_parser

N_FEATURES = 20
NAMES = [f"x{j}" for j in range(N_FEATURES)]


def build(directory: Path, rows: int) -> tuple[Path, Path]:
    """Fit and save the forest; write ``rows`` rows of features to Parquet."""
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    import modelkit

    X, y = make_classification(n_samples=5000, n_features=N_FEATURES, random_state=0)
    train = pd.DataFrame(X, columns=NAMES)
    forest = RandomForestClassifier(n_estimators=30, max_depth=8, random_state=0).fit(train, y)
    bundle = directory / "forest"
    modelkit.save(forest, bundle, name="forest", version="1.0.0", sample_input=train.head(50))
    features = np.random.default_rng(0).standard_normal((rows, N_FEATURES))
    data = directory / "rows.parquet"
    pd.DataFrame(features, columns=NAMES).to_parquet(data)
    return bundle, data


def in_process(bundle: Path, data: Path, rounds: int) -> list[float]:
    """Seconds per ``predict_batch`` over all rows (read once, outside the timing)."""
    import pandas as pd

    import modelkit

    frame = pd.read_parquet(data)
    model = modelkit.load(bundle)
    model.predict_batch(frame.head(1000))
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        model.predict_batch(frame)
        times.append(time.perf_counter() - started)
    return times


def on_spark(bundle: Path, data: Path, rounds: int) -> tuple[list[float], list[tuple[int, float]]]:
    """Seconds per scoring job, and (worker pid, bundle load seconds) measured on executors."""
    from pyspark.sql import SparkSession

    import modelkit
    import modelkit.spark

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("modelkit-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    digest = modelkit.digest(bundle)
    try:
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            scored = modelkit.spark.predict(spark.read.parquet(str(data)), bundle)
            scored.write.format("noop").mode("overwrite").save()
            times.append(time.perf_counter() - started)

        def loads(batches: Any) -> Any:
            import pandas as pd

            import modelkit.spark as worker

            for _ in batches:
                seconds = worker.load_seconds.get(digest)
                yield pd.DataFrame({"pid": [os.getpid()], "seconds": [seconds]})

        # A pandas job, so that it runs in the same pool of Python workers as the scoring.
        found = [
            (row.pid, row.seconds)
            for row in spark.range(0, 8, numPartitions=8)
            .mapInPandas(loads, "pid long, seconds double")
            .collect()
        ]
    finally:
        spark.stop()
    measured = {pid: seconds for pid, seconds in found if seconds is not None}
    return times, sorted(measured.items())


def main(argv: Sequence[str] | None = None) -> int:
    parser = quick_parser(__doc__, "100,000 rows, fewer rounds")
    args = parser.parse_args(argv)
    rows = 100_000 if args.quick else 1_000_000
    rounds = 2 if args.quick else 4
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)

    print_environment(
        [
            "numpy",
            "scikit-learn",
            "pandas",
            "pyarrow",
            "pyspark",
            "modelkit",
        ],
        f"{'quick' if args.quick else 'full'}: {rows:,} rows, {rounds} rounds each, local[2]",
    )
    with tempfile.TemporaryDirectory(prefix="modelkit-bench-spark-") as directory:
        bundle, data = build(Path(directory), rows)
        print("measuring predict_batch in one process...", flush=True)
        local = in_process(bundle, data, rounds)
        print("measuring modelkit.spark.predict in local[2]...", flush=True)
        spark_times, loads = on_spark(bundle, data, rounds)

    local_median = statistics.median(local)
    warm = statistics.median(spark_times[1:]) if len(spark_times) > 1 else spark_times[0]
    table = [("run", "seconds", "rows/s", "vs predict_batch")]
    table.append(
        (
            "predict_batch, one process",
            f"{local_median:.2f}",
            f"{rows / local_median:,.0f}",
            "1.00x",
        )
    )
    for label, seconds in (
        ("spark, first job (fresh workers)", spark_times[0]),
        ("spark, later jobs (median)", warm),
    ):
        table.append(
            (label, f"{seconds:.2f}", f"{rows / seconds:,.0f}", f"{local_median / seconds:.2f}x")
        )
    print()
    print_table(table, left={0})
    print()
    print("rows/s ratio: Spark throughput / in-process throughput (above 1: Spark is faster).")
    print("bundle load time per Python worker, measured on the executors:")
    for pid, seconds in loads:
        print(f"  worker pid {pid}: {seconds * 1000:.0f} ms")
    if not loads:
        print("  (the measuring job ran in workers that had not scored; rerun to see them)")
    print_load_average()
    return 0


if __name__ == "__main__":
    sys.exit(main())
