"""The fast path: a converted pipeline against scikit-learn and hand-written onnxruntime code.

For a pipeline of 8 numeric and 2 string DataFrame columns (StandardScaler + OneHotEncoder)
feeding a 100-tree GradientBoostingClassifier, saved with ``format="onnx"``, and a 20-feature
logistic regression, this script measures in one process:

- ``model.predict(record_dict)`` against ``pipeline.predict_proba`` on a one-row DataFrame;
- the same against hand-written onnxruntime code that builds its own arrays from the dict, on
  skl2onnx's default layout (one ``[1, 1]`` input per column);
- ``predict_batch`` of a 10,000-row DataFrame against hand-written onnxruntime code on the same
  DataFrame (on skl2onnx's default layout, and on the graph modelkit wrote);
- the logistic regression's ``predict(list_of_floats)`` against hand-written onnxruntime code;
- MLflow's pyfunc on the same pipeline, when mlflow is installed;
- whether the labels are identical to scikit-learn's on 1,000 rows.

Micro-batching throughput is measured by ``bench_batching.py``, which this script runs at the
end so that every figure of the performance page comes from one process.

Run it with ``python benchmarks/bench_speed.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
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
    raw_session,
)

NUMERIC = [f"n{i}" for i in range(8)]
CATEGORICAL = ["plan", "region"]
N_TREES = 100
BATCH_ROWS = 10_000
PARITY_ROWS = 1_000
LINEAR_FEATURES = 20
RECORD_POOL = 64
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


@dataclass(frozen=True)
class Plan:
    predict_rounds: int
    predict_calls: int
    sklearn_rounds: int
    sklearn_calls: int
    batch_rounds: int


FULL = Plan(
    predict_rounds=30, predict_calls=500, sklearn_rounds=15, sklearn_calls=20, batch_rounds=15
)
QUICK = Plan(
    predict_rounds=6, predict_calls=300, sklearn_rounds=3, sklearn_calls=10, batch_rounds=3
)


# -- the models -----------------------------------------------------------------------------


def mixed_data(rows: int, seed: int) -> tuple[Any, np.ndarray]:
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=rows, n_features=len(NUMERIC), n_informative=6, random_state=seed
    )
    frame = pd.DataFrame(X, columns=NUMERIC)
    rng = np.random.default_rng(seed)
    frame["plan"] = rng.choice(["basic", "pro", "team"], rows)
    frame["region"] = rng.choice(["eu", "us", "apac", "latam"], rows)
    return frame, y


def fit_pipeline(frame: Any, y: np.ndarray, final: Any = None) -> Any:
    """The numbers scaled and the strings one-hot encoded, then ``final`` (by default the
    100-tree gradient boosting the targets name), fitted."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    features = ColumnTransformer(
        [
            ("numbers", StandardScaler(), NUMERIC),
            ("categories", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
        ]
    )
    if final is None:
        final = GradientBoostingClassifier(n_estimators=N_TREES, random_state=0)
    return Pipeline([("features", features), ("model", final)]).fit(frame, y)


def default_layout_graph(pipeline: Any) -> bytes:
    """What skl2onnx gives by hand: one ``[N, 1]`` input per column, ZipMap off."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    initial = [(c, FloatTensorType([None, 1])) for c in NUMERIC]
    initial += [(c, StringTensorType([None, 1])) for c in CATEGORICAL]
    final = pipeline.steps[-1][1]
    graph = convert_sklearn(
        pipeline,
        initial_types=initial,
        target_opset=TARGET_OPSET,
        options={id(final): {"zipmap": False}},
    )
    data: bytes = graph.SerializeToString()
    return data


# -- hand-written code -----------------------------------------------------------------------

_ORT_FLOATS = {"tensor(float)": np.float32, "tensor(double)": np.float64}


def _float_type(session: Any, name: str) -> Any:
    """The numpy dtype a graph's numeric input takes, as hand-written code would look it up."""
    kind = next(i.type for i in session.get_inputs() if i.name == name)
    return _ORT_FLOATS[kind]


def raw_record(session: Any) -> Callable[[dict[str, Any]], Any]:
    """Hand-written onnxruntime code for one record on skl2onnx's default layout."""
    run = session.run

    def predict(record: dict[str, Any]) -> Any:
        feed = {c: np.array([[record[c]]], dtype=np.float32) for c in NUMERIC}
        feed.update({c: np.array([[record[c]]], dtype=object) for c in CATEGORICAL})
        label, probabilities = run(None, feed)
        return label[0], probabilities[0]

    return predict


def raw_batch(session: Any) -> Callable[[Any], Any]:
    """Hand-written onnxruntime code for a DataFrame on skl2onnx's default layout."""
    run = session.run

    def predict_batch(frame: Any) -> Any:
        feed = {c: frame[c].to_numpy(dtype=np.float32).reshape(-1, 1) for c in NUMERIC}
        feed.update({c: frame[c].to_numpy(dtype=object).reshape(-1, 1) for c in CATEGORICAL})
        return run(None, feed)

    return predict_batch


def raw_grouped_batch(session: Any) -> Callable[[Any], Any]:
    """Hand-written onnxruntime code for a DataFrame on the graph modelkit wrote."""
    run = session.run
    numbers = next(i.name for i in session.get_inputs() if i.type in _ORT_FLOATS)
    dtype = _float_type(session, numbers)

    def predict_batch(frame: Any) -> Any:
        return run(
            None,
            {
                numbers: frame[NUMERIC].to_numpy(dtype=dtype),
                "string_input": frame[CATEGORICAL].to_numpy(dtype=object),
            },
        )

    return predict_batch


def raw_linear(session: Any) -> Callable[[list[float]], Any]:
    run = session.run
    name = session.get_inputs()[0].name
    dtype = _float_type(session, name)

    def predict(values: list[float]) -> Any:
        label, probabilities = run(None, {name: np.array([values], dtype=dtype)})
        return label[0], probabilities[0]

    return predict


def mlflow_predictor(pipeline: Any, directory: Path) -> Callable[[Any], Any] | None:
    """MLflow's pyfunc around the same pipeline, when mlflow is installed."""
    if importlib.util.find_spec("mlflow") is None:
        return None
    import mlflow.pyfunc
    import mlflow.sklearn

    path = directory / "mlflow-model"
    # Pickled as MLflow has always done (newer MLflow defaults to skops, which refuses trees).
    mlflow.sklearn.save_model(
        pipeline, str(path), serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE
    )
    model = mlflow.pyfunc.load_model(str(path))
    return model.predict  # type: ignore[no-any-return]


# -- the run --------------------------------------------------------------------------------


def run(plan: Plan, directory: Path, threads: int) -> list[Result]:
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    import modelkit

    options = {"intra_op_num_threads": threads}
    started = time.perf_counter()
    frame, y = mixed_data(5000, seed=0)
    pipeline = fit_pipeline(frame, y)
    bundle = directory / "churn"
    saved = modelkit.save(
        pipeline, bundle, name="churn", version="1", format="onnx", sample_input=frame[:500]
    )
    model = modelkit.load(bundle, adapter_options=options)
    hand = raw_session(default_layout_graph(pipeline), threads=threads)
    grouped = raw_session(bundle / "artifacts" / "model.onnx", threads=threads)

    X, yl = make_classification(n_samples=2000, n_features=LINEAR_FEATURES, random_state=0)
    linear = LogisticRegression(max_iter=1000).fit(X, yl)
    linear_bundle = directory / "linear"
    modelkit.save(linear, linear_bundle, name="lr", version="1", format="onnx", sample_input=X)
    linear_model = modelkit.load(linear_bundle, adapter_options=options)
    linear_session = raw_session(linear_bundle / "artifacts" / "model.onnx", threads=threads)
    print(f"fitted, converted and saved the models in {time.perf_counter() - started:.1f} s")
    parity = saved.adapter["parity"]
    print(
        f"parity at save: {parity['rows']} rows, {parity['label_mismatches']} label mismatches, "
        f"max probability difference {parity['max_probability_difference']:.2g}"
    )

    fresh, _ = mixed_data(BATCH_ROWS, seed=1)
    labels = np.asarray(model.predict_batch(fresh[:PARITY_ROWS])["label"])
    same = (labels == pipeline.predict(fresh[:PARITY_ROWS])).all()
    print(
        f"labels identical to scikit-learn's on {PARITY_ROWS} new rows: {'yes' if same else 'NO'}"
    )

    records = [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in fresh[:RECORD_POOL].to_dict("records")
    ]
    rows = [fresh.iloc[i : i + 1] for i in range(RECORD_POOL)]
    calls = [records[i % RECORD_POOL] for i in range(plan.predict_calls)]
    frames = {id(r): rows[i] for i, r in enumerate(records)}
    print()

    results = []
    print("measuring single records against scikit-learn...", flush=True)
    sklearn_calls = calls[: plan.sklearn_calls]
    predict_proba = pipeline.predict_proba
    results.append(
        compare(
            "predict(dict) vs sklearn predict_proba(1-row DataFrame)",
            lambda record: predict_proba(frames[id(record)]),
            model.predict,
            sklearn_calls,
            rounds=plan.sklearn_rounds,
            warmup=sklearn_calls[:3],
            target=Target(max_ratio=1 / 50),
        )
    )
    with tempfile.TemporaryDirectory() as scratch:
        pyfunc = mlflow_predictor(pipeline, Path(scratch))
        if pyfunc is not None:
            results.append(
                compare(
                    "predict(dict) vs MLflow pyfunc predict(1-row DataFrame)",
                    lambda record: pyfunc(frames[id(record)]),
                    model.predict,
                    sklearn_calls,
                    rounds=plan.sklearn_rounds,
                    warmup=sklearn_calls[:3],
                    target=Target(),
                )
            )
        else:
            print("  (mlflow is not installed: no pyfunc row)")

    print("measuring single records against hand-written onnxruntime...", flush=True)
    results.append(
        compare(
            "predict(dict) vs onnxruntime, default layout",
            raw_record(hand),
            model.predict,
            calls,
            rounds=plan.predict_rounds,
            warmup=calls[:100],
            target=Target(max_ratio=0.9),
        )
    )
    pool = [list(map(float, row)) for row in X[:RECORD_POOL]]
    linear_calls = [pool[i % RECORD_POOL] for i in range(plan.predict_calls)]
    results.append(
        compare(
            "logistic regression predict(list of 20 floats)",
            raw_linear(linear_session),
            linear_model.predict,
            linear_calls,
            rounds=plan.predict_rounds,
            warmup=linear_calls[:100],
            target=Target(max_ratio=1.5),
        )
    )

    print("measuring predict_batch...", flush=True)
    batch = pd.DataFrame(fresh)
    for label, raw in (
        ("default layout", raw_batch(hand)),
        ("modelkit's graph", raw_grouped_batch(grouped)),
    ):
        results.append(
            compare(
                f"predict_batch({BATCH_ROWS} rows) vs onnxruntime, {label}",
                raw,
                model.predict_batch,
                [batch],
                rounds=plan.batch_rounds,
                warmup=[batch],
                target=Target(max_ratio=1.15),
            )
        )
    print()
    return results


def main(argv: Sequence[str] | None = None) -> int:

    parser = quick_parser(__doc__, "fewer rounds, for a smoke run")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="onnxruntime intra-op threads for both sides (default: 1, modelkit's default; "
        "0: onnxruntime's, a thread per core)",
    )
    parser.add_argument(
        "--no-batching", action="store_true", help="skip the micro-batching benchmark"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    print_environment(
        [
            "numpy",
            "scikit-learn",
            "skl2onnx",
            "onnxruntime",
            "modelkit",
        ],
        f"{'quick' if args.quick else 'full'}; onnxruntime intra-op threads: "
        f"{args.threads or 'one per core'}",
    )
    with tempfile.TemporaryDirectory(prefix="modelkit-bench-") as directory:
        results = run(plan, Path(directory), args.threads)
    print("Against scikit-learn the target is a ratio of 1/50: modelkit at least 50x faster.")
    print_results(results)
    if not args.no_batching:
        print()
        import bench_batching

        bench_batching.main(["--quick"] if args.quick else [])
    print_load_average()
    return 0


if __name__ == "__main__":
    sys.exit(main())
