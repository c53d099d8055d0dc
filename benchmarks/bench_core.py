"""modelkit's core paths against the raw runtimes, measured side by side in one process.

Every comparison runs on the same files and the same inputs: the raw side loads the artifact
inside the bundle that modelkit loads, and calls the runtime the way hand-written code would.
Raw and modelkit rounds alternate (and swap order every round), so machine noise lands on both;
the table reports the median of each side and the ratio of the medians, next to the target.
Nothing is asserted: this is a report, and the exit status is 0 whatever it says.

Run it with ``python benchmarks/bench_core.py`` (``--quick`` for a smoke run, ~5x shorter).
"""

from __future__ import annotations

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

N_FEATURES = 20
NAMES = [f"x{j}" for j in range(N_FEATURES)]
# 135 trees of depth 10 on this data pickle to about 2 MB (the size the load target is set for).
N_ESTIMATORS = 135
MAX_DEPTH = 10
BATCH_ROWS = 10_000
# Records are cycled from a small pool so that each call gets different values, as in a service.
RECORD_POOL = 64


@dataclass(frozen=True)
class Plan:
    """How many rounds each kind of measurement takes, and how many calls one round makes.

    Rounds are short (tens of milliseconds) and many, rather than few and long: a burst of load
    from a neighbouring process then spoils a few rounds of each side instead of a whole side.
    """

    load_rounds: int
    predict_rounds: int
    predict_calls: int
    batch_rounds: int
    sklearn_rounds: int
    sklearn_calls: int
    warmup_calls: int


FULL = Plan(
    load_rounds=41,
    predict_rounds=40,
    predict_calls=750,
    batch_rounds=21,
    sklearn_rounds=15,
    sklearn_calls=10,
    warmup_calls=200,
)
# About 5x fewer rounds everywhere, for a smoke run.
QUICK = Plan(
    load_rounds=8,
    predict_rounds=8,
    predict_calls=750,
    batch_rounds=4,
    sklearn_rounds=3,
    sklearn_calls=10,
    warmup_calls=50,
)


def print_setup(plan: Plan, *, quick: bool) -> None:

    versions = [
        "numpy",
        "scikit-learn",
        "onnxruntime",
        "pandas",
        "joblib",
        "modelkit",
    ]
    print_environment(
        versions,
        f"{'quick' if quick else 'full'}: {plan.load_rounds} load rounds; {plan.predict_rounds} "
        f"rounds of {plan.predict_calls} single-record calls; {plan.batch_rounds} batch rounds",
    )


# -- the models -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fixture:
    X: np.ndarray
    joblib_bundle: Path
    joblib_file: Path
    onnx_bundle: Path
    onnx_file: Path


def build_fixture(directory: Path) -> Fixture:
    """Fit a ~2 MB forest, and save it as a joblib bundle and (converted) as an ONNX bundle."""
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    import modelkit

    X, y = make_classification(n_samples=5000, n_features=N_FEATURES, random_state=0)
    forest = RandomForestClassifier(
        n_estimators=N_ESTIMATORS, max_depth=MAX_DEPTH, random_state=0
    ).fit(X, y)

    joblib_bundle = directory / "forest-joblib"
    modelkit.save(forest, joblib_bundle, name="forest", version="1.0.0", sample_input=X[:50])

    onnx_model = to_onnx(
        forest,
        X[:1].astype(np.float32),
        options={id(forest): {"zipmap": False}},
        target_opset=17,
    )
    onnx_bundle = directory / "forest-onnx"
    modelkit.save(
        onnx_model,
        onnx_bundle,
        name="forest-onnx",
        version="1.0.0",
        sample_input=X[:50].astype(np.float32),
    )
    return Fixture(
        X=X,
        joblib_bundle=joblib_bundle,
        joblib_file=joblib_bundle / "artifacts" / "model.joblib",
        onnx_bundle=onnx_bundle,
        onnx_file=onnx_bundle / "artifacts" / "model.onnx",
    )


def raw_record_predictor(session: Any) -> Callable[[dict[str, float]], Any]:
    """What one writes by hand around onnxruntime for one record."""
    run = session.run
    names = NAMES

    def predict(record: dict[str, float]) -> Any:
        outputs = run(None, {"X": np.array([[record[k] for k in names]], dtype=np.float32)})
        return outputs[0][0], outputs[1][0]

    return predict


def raw_batch_predictor(session: Any) -> Callable[[Any], Any]:
    """What one writes by hand around onnxruntime for a DataFrame."""
    run = session.run

    def predict_batch(frame: Any) -> Any:
        outputs = run(None, {"X": frame.to_numpy(dtype=np.float32)})
        return outputs[0], outputs[1]

    return predict_batch


def raw_sklearn_predictor(estimator: Any) -> Callable[[dict[str, float]], Any]:
    """What one writes by hand around a scikit-learn classifier for one record."""
    predict_proba = estimator.predict_proba
    names = NAMES

    def predict(record: dict[str, float]) -> Any:
        return predict_proba(np.array([[record[k] for k in names]]))

    return predict


def check_agreement(fixture: Fixture, records: list[dict[str, float]]) -> None:
    """Say whether modelkit and the raw runtimes give the same answers (a sanity check only)."""
    import modelkit

    model = modelkit.load(fixture.onnx_bundle)
    predict = raw_record_predictor(raw_session(fixture.onnx_file, threads=1))
    same = all(
        model.predict(record).label == int(predict(record)[0])
        and np.allclose(
            list(model.predict(record).probabilities.values()), predict(record)[1], atol=1e-6
        )
        for record in records[:16]
    )
    print(f"modelkit and raw onnxruntime agree on 16 records: {'yes' if same else 'NO'}")


# -- the benchmarks ---------------------------------------------------------------------------


def run(plan: Plan, directory: Path) -> list[Result]:
    import joblib
    import pandas

    import modelkit

    started = time.perf_counter()
    fixture = build_fixture(directory)
    print(f"fitted, converted and saved the models in {time.perf_counter() - started:.1f} s")
    for label, path in (("joblib", fixture.joblib_file), ("onnx", fixture.onnx_file)):
        print(f"{label + ' artifact:':<17}{path.stat().st_size / 1e6:.2f} MB ({path})")

    rng = np.random.default_rng(0)
    pool = [
        {name: float(value) for name, value in zip(NAMES, row, strict=True)}
        for row in fixture.X[rng.choice(len(fixture.X), RECORD_POOL, replace=False)]
    ]
    check_agreement(fixture, pool)
    print()

    results = []
    print("measuring loads...", flush=True)
    results.append(
        compare(
            "load joblib bundle vs joblib.load",
            joblib.load,
            lambda _path: modelkit.load(fixture.joblib_bundle),
            [fixture.joblib_file],
            rounds=plan.load_rounds,
            warmup=[fixture.joblib_file] * 2,
            target=Target(max_ratio=1.1),
        )
    )
    results.append(
        compare(
            "load onnx bundle vs InferenceSession",
            # modelkit's default session options on both sides: a thread pool costs its creation.
            lambda path: raw_session(path, threads=1),
            lambda _path: modelkit.load(fixture.onnx_bundle),
            [fixture.onnx_file],
            rounds=plan.load_rounds,
            warmup=[fixture.onnx_file] * 2,
            target=Target(max_ratio=1.3),
        )
    )

    records = [pool[i % RECORD_POOL] for i in range(plan.predict_calls)]
    warmup = records[: plan.warmup_calls]
    print("measuring single-record predict...", flush=True)
    for label, threads in (("1 thread, the default", 1), ("a thread per core", 0)):
        options = {"intra_op_num_threads": threads}
        model = modelkit.load(fixture.onnx_bundle, adapter_options=options)
        results.append(
            compare(
                f"onnx predict(record), {label}",
                raw_record_predictor(raw_session(fixture.onnx_file, threads=threads)),
                model.predict,
                records,
                rounds=plan.predict_rounds,
                warmup=warmup,
                target=Target(max_extra_us=8),
            )
        )

    print("measuring predict_batch...", flush=True)
    features = np.random.default_rng(1).standard_normal((BATCH_ROWS, N_FEATURES))
    frames = {
        "float64": pandas.DataFrame(features, columns=NAMES),
        "float32": pandas.DataFrame(features.astype(np.float32), columns=NAMES),
    }
    for label, threads, dtype in (
        ("1 thread, the default", 1, "float64"),
        ("1 thread, the default", 1, "float32"),
        ("a thread per core", 0, "float64"),
    ):
        options = {"intra_op_num_threads": threads}
        model = modelkit.load(fixture.onnx_bundle, adapter_options=options)
        results.append(
            compare(
                f"onnx predict_batch({BATCH_ROWS} rows {dtype}), {label}",
                raw_batch_predictor(raw_session(fixture.onnx_file, threads=threads)),
                model.predict_batch,
                [frames[dtype]],
                rounds=plan.batch_rounds,
                warmup=[frames[dtype]] * 2,
                target=Target(max_ratio=1.15),
            )
        )

    print("measuring the joblib single-record predict (context)...", flush=True)
    sklearn_records = records[: plan.sklearn_calls]
    results.append(
        compare(
            "joblib predict(record) vs predict_proba",
            raw_sklearn_predictor(joblib.load(fixture.joblib_file)),
            modelkit.load(fixture.joblib_bundle).predict,
            sklearn_records,
            rounds=plan.sklearn_rounds,
            warmup=sklearn_records[:2],
            target=Target(),
        )
    )
    print()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = quick_parser(__doc__, "about 5x fewer rounds, for a smoke run")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    print_setup(plan, quick=args.quick)
    with tempfile.TemporaryDirectory(prefix="modelkit-bench-") as directory:
        results = run(plan, Path(directory))
    print_results(results)
    print_load_average()
    return 0


if __name__ == "__main__":
    sys.exit(main())
