"""An MLflow model imported into modelkit: one-row predictions and load time against pyfunc.

On Palmer penguins (numbers and strings with gaps, an integer year), a ColumnTransformer pipeline
(numbers imputed and scaled, strings imputed and one-hot encoded, then a logistic regression) is
saved by ``mlflow.sklearn.save_model`` with a signature and an input example, imported with
``modelkit.import_mlflow`` (a joblib bundle) and converted with ``modelkit.convert`` (an ONNX
bundle). In one process, this script measures, with ``mlflow.pyfunc.load_model(dir).predict``
on a one-row DataFrame as the raw side:

- the joblib bundle's ``predict_batch`` on the same one-row DataFrame, and its ``predict`` on the
  row as a dict (what an application holding a record calls);
- the ONNX bundle's ``predict`` on the dict;
- for context, the pipeline's own ``predict`` on the DataFrame: what MLflow's wrapper costs;
- load time: ``mlflow.pyfunc.load_model`` against ``modelkit.load`` of each bundle.

Run it with ``python benchmarks/bench_mlflow.py`` (``--quick`` for a smoke run). Needs
``mlflow-skinny`` (or ``mlflow``), PyYAML and skl2onnx, as the development environment has.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _report import (
    Result,
    Target,
    compare,
    print_environment,
    print_load_average,
    print_results,
    quick_parser,
)


@dataclass(frozen=True)
class Plan:
    predict_rounds: int
    predict_calls: int
    load_rounds: int
    load_calls: int


FULL = Plan(predict_rounds=20, predict_calls=200, load_rounds=20, load_calls=5)
QUICK = Plan(predict_rounds=4, predict_calls=50, load_rounds=3, load_calls=2)


def penguins() -> tuple[Any, Any]:
    from palmerpenguins import load_penguins

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package reads its file as pandas 2 did
        frame = load_penguins()
    return frame.drop(columns="species"), frame["species"]


def fit_pipeline(X: Any, y: Any) -> Any:
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]
    strings = make_pipeline(
        SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
    )
    features = make_column_transformer(
        (make_pipeline(SimpleImputer(), StandardScaler()), numbers), (strings, ["island", "sex"])
    )
    return make_pipeline(features, LogisticRegression(max_iter=1000)).fit(X, y)


def run(plan: Plan, directory: Path) -> list[Result]:
    import modelkit

    # MLflow 3 sends usage telemetry from a background thread: not from a benchmark, whose
    # timings another thread would disturb.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow warns about its own type inference
        import mlflow.pyfunc
        import mlflow.sklearn
        from mlflow.models import infer_signature

        X, y = penguins()
        pipeline = fit_pipeline(X, y)
        model_dir = directory / "mlflow-model"
        mlflow.sklearn.save_model(
            pipeline,
            str(model_dir),
            signature=infer_signature(X, pipeline.predict(X)),
            input_example=X.head(20),
            serialization_format="cloudpickle",
            pip_requirements=["scikit-learn", "pandas"],
        )
    print(f"fitted and saved by MLflow in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    modelkit.import_mlflow(model_dir, directory / "joblib", name="penguins", trusted=True)
    print(f"imported by modelkit in {time.perf_counter() - started:.2f} s")
    started = time.perf_counter()
    converted = modelkit.convert(directory / "joblib", directory / "onnx")
    parity = converted.adapter.get("parity", {})
    print(
        f"converted to ONNX in {time.perf_counter() - started:.1f} s ({parity.get('rows')} "
        f"rows checked, {parity.get('label_mismatches')} label mismatches)"
    )

    def load_pyfunc(_: object = None) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return mlflow.pyfunc.load_model(str(model_dir))

    pyfunc = load_pyfunc()
    joblib_model = modelkit.load(directory / "joblib")
    onnx_model = modelkit.load(directory / "onnx")
    expected = np.asarray(pyfunc.predict(X), dtype=object)
    verdicts = []
    for name, model in (("joblib", joblib_model), ("onnx", onnx_model)):
        labels = np.asarray(model.predict_batch(X)["label"], dtype=object)
        verdicts.append(f"{name} {'yes' if (labels == expected).all() else 'NO'}")
    print(f"labels equal to MLflow's on all {len(X)} rows: {', '.join(verdicts)}")
    print()

    records = X.to_dict("records")
    rows = [X.iloc[[i]] for i in range(len(X))]
    order = [i % len(X) for i in range(plan.predict_calls)]
    frames = [rows[i] for i in order]
    calls = [records[i] for i in order]
    frame_of = {id(record): rows[i] for i, record in zip(order, calls, strict=True)}

    def mlflow_on_frame(frame: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # schema enforcement warns about integer columns
            return pyfunc.predict(frame)

    def mlflow_on_record(record: dict[str, Any]) -> Any:
        return mlflow_on_frame(frame_of[id(record)])

    print("measuring one-row predictions...", flush=True)
    at_least_mlflow = Target(max_ratio=1.0)
    predictions = [
        ("joblib predict_batch(1-row DataFrame) vs mlflow pyfunc predict", mlflow_on_frame,
         joblib_model.predict_batch, frames, at_least_mlflow),
        ("joblib predict(dict) vs mlflow pyfunc predict(1-row DataFrame)", mlflow_on_record,
         joblib_model.predict, calls, at_least_mlflow),
        ("onnx predict(dict) vs mlflow pyfunc predict(1-row DataFrame)", mlflow_on_record,
         onnx_model.predict, calls, at_least_mlflow),
        ("(context) pipeline.predict(1-row DataFrame) vs mlflow pyfunc", mlflow_on_frame,
         pipeline.predict, frames, Target()),
    ]  # fmt: skip
    results = [
        compare(
            label, raw, ours, inputs, rounds=plan.predict_rounds, warmup=inputs[:5], target=target
        )
        for label, raw, ours, inputs, target in predictions
    ]
    print("measuring load time...", flush=True)
    loads = [None] * plan.load_calls
    results += [
        compare(
            f"modelkit.load({name} bundle) vs mlflow.pyfunc.load_model",
            load_pyfunc,
            lambda _, name=name: modelkit.load(directory / name),
            loads,
            rounds=plan.load_rounds,
            warmup=loads[:1],
            target=at_least_mlflow,
        )
        for name in ("joblib", "onnx")
    ]
    print()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = quick_parser(__doc__, "fewer rounds, for a smoke run").parse_args(argv)
    plan = QUICK if args.quick else FULL
    print_environment(
        [
            "numpy",
            "pandas",
            "scikit-learn",
            "skl2onnx",
            "onnxruntime",
            "mlflow-skinny",
            "mlflow",
            "modelkit",
        ],
        "quick" if args.quick else "full",
    )
    with tempfile.TemporaryDirectory(prefix="modelkit-bench-") as directory:
        results = run(plan, Path(directory))
    print("The target for each modelkit path is to be at least as fast as MLflow's pyfunc (1x).")
    print_results(results, sides="raw: MLflow's pyfunc model; modelkit: the imported bundle.")
    print_load_average()
    return 0


if __name__ == "__main__":
    sys.exit(main())
