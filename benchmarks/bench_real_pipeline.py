"""A converted real pipeline, one record at a time: modelkit against scikit-learn and onnxruntime.

On a real table shipped offline (Palmer penguins by default: numbers with gaps, strings with
gaps, an integer year), the pipeline people write for a raw DataFrame -- numbers imputed and
scaled, strings imputed with the most frequent value and one-hot encoded, then a
HistGradientBoostingClassifier with its defaults -- is saved with ``format="onnx"`` and
``sample_input=X.head(100)``. In one process, this script measures:

- ``model.predict(record)`` on records straight from ``X.to_dict("records")`` against
  ``pipeline.predict_proba`` on the matching one-row DataFrame, with one OpenMP thread (the
  target: scikit-learn at its fastest on one row) and, for context, with its default threads
  (HistGradientBoosting wakes a thread team on every call, whose idle threads then spin and slow
  whatever runs next on a small machine, modelkit's rounds included);
- the same against hand-written onnxruntime code: ``session.run`` on the bundle's own graph,
  with the input arrays built by hand from the record dict, as the manifest lays them out;
- and whether the converted labels equal scikit-learn's on every row of the table off a tie.

Run it with ``python benchmarks/bench_real_pipeline.py`` (``--quick`` for a smoke run;
``--table cars`` or ``--model xgboost`` for another pipeline).
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
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

TABLES = {"penguins": "species", "cars": "Origin"}
MODELS = ("hist_gradient_boosting", "gradient_boosting", "xgboost", "lightgbm")
SAMPLE_ROWS = 100
TIE = 1e-6


@dataclass(frozen=True)
class Plan:
    predict_rounds: int
    predict_calls: int
    sklearn_rounds: int
    sklearn_calls: int


FULL = Plan(predict_rounds=30, predict_calls=500, sklearn_rounds=15, sklearn_calls=20)
QUICK = Plan(predict_rounds=6, predict_calls=300, sklearn_rounds=3, sklearn_calls=10)


# -- the table and the pipeline -----------------------------------------------------------------


def load_table(name: str) -> tuple[Any, Any]:
    """The raw features and the target of a table that a package ships (no network)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the packages read their files as pandas 2 did
        if name == "penguins":
            from palmerpenguins import load_penguins

            frame = load_penguins()
        else:
            from vega_datasets import local_data

            frame = local_data("cars")
            frame["Year"] = frame["Year"].dt.year  # the model year, as an integer
    target = TABLES[name]
    return frame.drop(columns=[target]), frame[target]


def fit_pipeline(X: Any, y: Any, model: str) -> Any:
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import LabelEncoder, OneHotEncoder, StandardScaler

    numbers = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    strings = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    features = ColumnTransformer(
        [
            ("numbers", numbers, make_column_selector(dtype_include=["number", "bool"])),
            ("strings", strings, make_column_selector(dtype_include=["object", "string"])),
        ]
    )
    if model == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier

        final: Any = HistGradientBoostingClassifier(random_state=0)
    elif model == "gradient_boosting":
        from sklearn.ensemble import GradientBoostingClassifier

        final = GradientBoostingClassifier(random_state=0)
    elif model == "xgboost":
        from xgboost import XGBClassifier

        final = XGBClassifier(n_estimators=100, random_state=0)
        y = LabelEncoder().fit_transform(y)  # XGBoost wants classes numbered 0..k-1
    else:
        from lightgbm import LGBMClassifier

        final = LGBMClassifier(n_estimators=100, random_state=0, verbose=-1)
    return Pipeline([("features", features), ("model", final)]).fit(X, y)


# -- hand-written onnxruntime -------------------------------------------------------------------


def hand_written(session: Any, adapter: dict[str, Any]) -> Callable[[dict[str, Any]], Any]:
    """onnxruntime code written by hand for the bundle's graph: one array per graph input,
    built from the record dict in the order the manifest gives, missing strings replaced by the
    marker the graph takes for missing."""
    kinds = {
        "tensor(float)": np.float32,
        "tensor(double)": np.float64,
        "tensor(int64)": np.int64,
        "tensor(bool)": np.bool_,
        "tensor(string)": object,
    }
    dtypes = {node.name: kinds[node.type] for node in session.get_inputs()}
    if adapter.get("layout") == "groups":
        groups = [(g["input"], list(g["columns"])) for g in adapter["groups"]]
    else:  # one [N, 1] input per column, named like it
        groups = [(name, [name]) for name in dtypes]
    missing = adapter.get("missing_string", "")
    strings = [(name, columns) for name, columns in groups if dtypes[name] is object]
    others = [
        (name, columns, dtypes[name]) for name, columns in groups if dtypes[name] is not object
    ]
    run = session.run

    def predict(record: dict[str, Any]) -> Any:
        feed = {
            name: np.array([[record[c] for c in columns]], dtype=dtype)
            for name, columns, dtype in others
        }
        for name, columns in strings:
            values = [record[c] if isinstance(record[c], str) else missing for c in columns]
            feed[name] = np.array([values], dtype=object)
        label, probabilities = run(None, feed)
        return label[0], probabilities[0]

    return predict


# -- the run ------------------------------------------------------------------------------------


def run(plan: Plan, directory: Path, table: str, model_name: str) -> list[Result]:
    from threadpoolctl import threadpool_limits

    import modelkit

    started = time.perf_counter()
    X, y = load_table(table)
    pipeline = fit_pipeline(X, y, model_name)
    bundle = directory / "real"
    try:
        saved = modelkit.save(
            pipeline,
            bundle,
            name=f"{table}-{model_name}",
            version="1",
            format="onnx",
            sample_input=X.head(SAMPLE_ROWS),
        )
    except modelkit.ConversionError as error:
        print(f"conversion refused, nothing to measure: {error}")
        return []
    model = modelkit.load(bundle)
    session = raw_session(bundle / "artifacts" / "model.onnx", threads=1)  # modelkit's default
    print(
        f"{table} ({len(X)} rows, {X.shape[1]} columns, {int(X.isna().sum().sum())} missing "
        f"values), {type(pipeline[-1]).__name__}: fitted, converted and saved in "
        f"{time.perf_counter() - started:.1f} s"
    )
    parity = saved.adapter.get("parity", {})
    print(
        f"parity at save: {parity.get('rows')} rows, {parity.get('label_mismatches')} label "
        f"mismatches, max probability difference {parity.get('max_probability_difference')}"
    )
    probabilities = pipeline.predict_proba(X)
    top = np.sort(probabilities, axis=1)[:, -2:]
    off_tie = top[:, 1] - top[:, 0] > TIE
    labels = np.asarray(np.asarray(model.predict_batch(X)["label"]).tolist(), dtype=object)
    same = (labels == np.asarray(pipeline.predict(X), dtype=object)) | ~off_tie
    print(
        f"labels identical to scikit-learn's on {int(off_tie.sum())} rows off a tie (of "
        f"{len(X)}): {'yes' if same.all() else f'NO, {int((~same).sum())} differ'}"
    )
    print()

    records = X.to_dict("records")
    frames = {id(record): X.iloc[[i]] for i, record in enumerate(records)}
    calls = [records[i % len(records)] for i in range(plan.predict_calls)]
    sklearn_calls = calls[: plan.sklearn_calls]
    predict_proba = pipeline.predict_proba

    def sklearn_one_thread(record: dict[str, Any]) -> Any:
        with threadpool_limits(limits=1):
            return predict_proba(frames[id(record)])

    results = []
    print("measuring single records against scikit-learn...", flush=True)
    results.append(
        compare(
            "predict(dict) vs sklearn predict_proba(1-row DataFrame), 1 thread",
            sklearn_one_thread,
            model.predict,
            sklearn_calls,
            rounds=plan.sklearn_rounds,
            warmup=sklearn_calls[:3],
            target=Target(max_ratio=1 / 50),
        )
    )
    results.append(
        compare(
            "predict(dict) vs sklearn, its default threads",
            lambda record: predict_proba(frames[id(record)]),
            model.predict,
            sklearn_calls,
            rounds=plan.sklearn_rounds,
            warmup=sklearn_calls[:3],
            target=Target(),
        )
    )
    print("measuring single records against hand-written onnxruntime...", flush=True)
    results.append(
        compare(
            "predict(dict) vs hand-written onnxruntime, same graph",
            hand_written(session, dict(saved.adapter)),
            model.predict,
            calls,
            rounds=plan.predict_rounds,
            warmup=calls[:100],
            target=Target(max_ratio=1.2),
        )
    )
    print()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = quick_parser(__doc__, "fewer rounds, for a smoke run")
    parser.add_argument("--table", choices=sorted(TABLES), default="penguins")
    parser.add_argument("--model", choices=MODELS, default="hist_gradient_boosting")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    print_environment(
        [
            "numpy",
            "pandas",
            "scikit-learn",
            "skl2onnx",
            "onnxruntime",
            "xgboost",
            "lightgbm",
            "onnxmltools",
            "modelkit",
        ],
        f"{'quick' if args.quick else 'full'}; table {args.table}; model {args.model}",
    )
    with tempfile.TemporaryDirectory(prefix="modelkit-bench-") as directory:
        results = run(plan, Path(directory), args.table, args.model)
    if results:
        print("Against scikit-learn the target is a ratio of 1/50: modelkit at least 50x faster.")
        print_results(results)
    print_load_average()
    return 0


if __name__ == "__main__":
    sys.exit(main())
