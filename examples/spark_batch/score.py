"""Score a Parquet file with a modelkit bundle on Spark, and write the scores as Parquet.

Runs in local mode with plain ``python`` or with ``spark-submit`` (see README.md). With no
arguments it makes everything it needs in ./spark_batch_data/: an iris Parquet file and an iris
bundle, saved from scikit-learn's bundled data (no network).

    python score.py [--input rows.parquet] [--bundle BUNDLE] [--output scored.parquet]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import modelkit
import modelkit.spark

DATA = Path("spark_batch_data")
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def make_examples(directory: Path) -> tuple[Path, Path]:
    """An iris Parquet file and a bundle of a classifier trained on it."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    directory.mkdir(exist_ok=True)
    iris = load_iris(as_frame=True)
    features = iris.data.set_axis(COLUMNS, axis=1)
    species = iris.target.map(dict(enumerate(iris.target_names)))
    rows = directory / "iris.parquet"
    features.assign(flower_id=range(len(features))).to_parquet(rows)
    bundle = directory / "iris-bundle"
    if not bundle.exists():
        classifier = LogisticRegression(max_iter=500).fit(features, species)
        modelkit.save(classifier, bundle, name="iris", version="1.0.0", sample_input=features)
    return rows, bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--input", type=Path, help="Parquet file to score (default: iris)")
    parser.add_argument("--bundle", type=Path, help="modelkit bundle (default: an iris model)")
    parser.add_argument("--output", type=Path, default=DATA / "scored.parquet")
    parser.add_argument("--ship", action="store_true", help="copy the bundle to the executors")
    args = parser.parse_args(argv)
    if args.input is None or args.bundle is None:
        rows, bundle = make_examples(DATA)
        args.input = args.input or rows
        args.bundle = args.bundle or bundle

    # Local mode runs the Python workers on this interpreter unless told otherwise.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.appName("modelkit-spark-batch")
        .master(os.environ.get("SPARK_MASTER", "local[*]"))
        .getOrCreate()
    )
    try:
        frame = spark.read.parquet(str(args.input.resolve()))
        scored = modelkit.spark.predict(
            frame, args.bundle.resolve(), on_error="null", ship=args.ship
        )
        scored.printSchema()
        scored.write.mode("overwrite").parquet(str(args.output.resolve()))
        written = spark.read.parquet(str(args.output.resolve()))
        print(f"scored {written.count()} rows into {args.output}")
        shown = [c for c in ("flower_id",) if c in written.columns]
        written.select(*shown, "prediction.label", "prediction_error").show(5, truncate=False)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
