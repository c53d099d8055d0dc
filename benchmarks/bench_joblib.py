"""The path most users start on: a scikit-learn pipeline saved with the default (joblib) format.

For a ``ColumnTransformer`` pipeline of 8 numbers and 2 strings (``StandardScaler`` and
``OneHotEncoder``) ending in a logistic regression, a random forest or gradient boosting,
saved with ``modelkit.save`` and its defaults, this script measures in one process:

- ``model.predict(record_dict)`` against ``pipeline.predict_proba`` on a one-row DataFrame
  (the DataFrame built beforehand, so scikit-learn's side is its own cost alone);
- ``model.predict_batch(frame).to_pandas()`` against ``pipeline.predict_proba(frame)`` on a
  10,000-row DataFrame.

Rounds alternate between the two sides; ratios are of medians. Run it with
``python benchmarks/bench_joblib.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _report import (
    Result,
    Target,
    compare,
    print_environment,
    print_load_average,
    print_results,
    quick_parser,
)
from bench_speed import fit_pipeline, mixed_data

RECORDS = 32
BATCH_ROWS = 10_000


@dataclass(frozen=True)
class Plan:
    record_rounds: int
    record_calls: int
    batch_rounds: int
    batch_calls: int


FULL = Plan(record_rounds=15, record_calls=40, batch_rounds=15, batch_calls=4)
QUICK = Plan(record_rounds=5, record_calls=15, batch_rounds=5, batch_calls=1)


def pipelines() -> dict[str, Any]:
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    return {
        "logistic regression": LogisticRegression(max_iter=1000),
        "random forest": RandomForestClassifier(n_estimators=100, random_state=0),
        "gradient boosting": GradientBoostingClassifier(n_estimators=100, random_state=0),
    }


def run(plan: Plan, directory: Path) -> list[Result]:
    import modelkit

    frame, y = mixed_data(5000, seed=0)
    fresh, _ = mixed_data(BATCH_ROWS, seed=1)
    records = [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in fresh[:RECORDS].to_dict("records")
    ]
    one_row_frames = {id(r): fresh.iloc[i : i + 1] for i, r in enumerate(records)}
    calls = [records[i % RECORDS] for i in range(plan.record_calls)]
    results = []
    for name, final in pipelines().items():
        pipeline = fit_pipeline(frame, y, final)
        bundle = directory / name.replace(" ", "-")
        saved = modelkit.save(pipeline, bundle, name="m", version="1", sample_input=frame[:100])
        model = modelkit.load(bundle)
        print(f"{name}: saved, labels by {saved.adapter.get('labels')!r}", flush=True)
        predict_proba = pipeline.predict_proba
        results.append(
            compare(
                f"{name}: predict(dict) vs predict_proba(1-row DataFrame)",
                lambda record, p=predict_proba: p(one_row_frames[id(record)]),
                model.predict,
                calls,
                rounds=plan.record_rounds,
                warmup=calls[:3],
                target=Target(max_ratio=1.1),
            )
        )
        results.append(
            compare(
                f"{name}: predict_batch({BATCH_ROWS}).to_pandas() vs predict_proba(frame)",
                predict_proba,
                lambda batch, m=model: m.predict_batch(batch).to_pandas(),
                # The same frame object on both sides, a few calls a round: one call of a
                # 10-ms pipeline is within the noise of a shared machine.
                [fresh] * plan.batch_calls,
                rounds=plan.batch_rounds,
                warmup=[fresh],
                target=Target(max_ratio=1.05),
            )
        )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = quick_parser(__doc__, "fewer rounds, for a smoke run")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    print_environment(
        ["numpy", "pandas", "scikit-learn", "modelkit"], "quick" if args.quick else "full"
    )
    with tempfile.TemporaryDirectory(prefix="modelkit-bench-") as directory:
        results = run(plan, Path(directory))
    print()
    print_results(results, sides="raw: scikit-learn's predict_proba; modelkit: the bundle.")
    print_load_average()
    return 0


if __name__ == "__main__":
    sys.exit(main())
