"""What instrumentation costs per prediction, measured against the uninstrumented call.

Three comparisons, each with interleaved rounds (the two sides alternate and swap order every
round) and medians per call:

1. No SDK configured: ``model.predict`` (which checks for hooks and an SDK on every call) against
   the same model's uninstrumented path. Target: at most +1 µs.
2. An SDK configured (spans to a batch processor with an exporter that drops them, metrics to an
   in-memory reader): what modelkit adds per call, against what the same call costs wrapped by
   hand in one ``start_as_current_span`` plus one histogram record. Target: within 1.5x.
3. Drift statistics on (``load(..., drift=True)``) against off, on a 10-feature record.
   Target: at most +2 µs per record. Skipped when the build has no drift support.

Nothing is asserted; run ``python benchmarks/bench_telemetry.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _report import quick_parser


def _per_call_ns(function: Callable[[], Any], calls: int) -> float:
    gc.collect()
    start = time.perf_counter_ns()
    for _ in range(calls):
        function()
    return (time.perf_counter_ns() - start) / calls


FASTEST: list[tuple[str, float, float]] = []


def compare(
    base: Callable[[], Any], other: Callable[[], Any], *, rounds: int, calls: int
) -> tuple[float, float]:
    """Median ns per call of ``base`` and ``other``, measured in alternating rounds.

    The fastest round of each side is kept too (in ``FASTEST``): on a shared machine it is the
    steadier estimate of what a call costs when nothing else interferes.
    """
    for _ in range(3):
        _per_call_ns(base, calls // 10 or 1)
        _per_call_ns(other, calls // 10 or 1)
    base_times: list[float] = []
    other_times: list[float] = []
    for index in range(rounds):
        pair: Sequence[tuple[list[float], Callable[[], Any]]] = (
            (base_times, base),
            (other_times, other),
        )
        for times, function in pair if index % 2 == 0 else reversed(pair):
            times.append(_per_call_ns(function, calls))
    FASTEST.append(("", min(base_times), min(other_times)))
    return statistics.median(base_times), statistics.median(other_times)


def _bundle(directory: Path, n_features: int) -> tuple[Path, list[dict[str, float]]]:
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    import modelkit

    X, y = make_classification(n_samples=2000, n_features=n_features, random_state=0)
    X = X.astype(np.float32)
    estimator = LogisticRegression().fit(X, y)
    onnx_model = to_onnx(
        estimator, X[:1], options={id(estimator): {"zipmap": False}}, target_opset=17
    )
    path = directory / f"logistic{n_features}"
    modelkit.save(onnx_model, path, name="logistic", version="1", sample_input=X[:500])
    records = [{f"x{j}": float(v) for j, v in enumerate(row)} for row in X[:64]]
    return path, records


def _echo_model() -> Any:
    import pydantic

    import modelkit

    class Point(pydantic.BaseModel):
        x: float

    class Echo(modelkit.Model[Point, Point]):
        def run_batch(self, inputs: list[Point]) -> list[Point]:
            return inputs

    return Echo()


def _cycle(function: Callable[[Any], Any], records: list[Any]) -> Callable[[], Any]:
    state = {"i": 0}

    def call() -> Any:
        state["i"] = (state["i"] + 1) % len(records)
        return function(records[state["i"]])

    return call


def _row(name: str, base: float, other: float, target: str) -> str:
    _, fastest_base, fastest_other = FASTEST[-1]
    return (
        f"{name:<58} {base / 1000:>9.2f} µs {other / 1000:>9.2f} µs "
        f"{(other - base) / 1000:>+8.2f} µs {other / base:>6.2f}x  "
        f"{(fastest_other - fastest_base) / 1000:>+8.2f} µs  {target}"
    )


def main() -> None:
    parser = quick_parser(__doc__, "about 5x fewer rounds")
    rounds, calls = (8, 1000) if parser.parse_args().quick else (40, 2000)

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    import modelkit

    class DropSpans(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    print(f"modelkit {modelkit.__version__}; {rounds} rounds of {calls} calls; medians per call")
    print(
        f"{'':<58} {'baseline':>12} {'measured':>12} {'diff':>11} {'ratio':>7} "
        f"{'fastest diff':>12}  target"
    )
    with tempfile.TemporaryDirectory() as workdir:
        path, records = _bundle(Path(workdir), 20)
        model = modelkit.load(path)
        plain = _cycle(model._one, records)
        observed = _cycle(model.predict, records)
        base, other = compare(plain, observed, rounds=rounds, calls=calls)
        print(_row("no SDK: predict vs uninstrumented path", base, other, "<= +1 µs"))
        # The same on a pure-Python model: no runtime thread pool adds its own noise.
        echo = _echo_model()
        one = [{"x": float(i)} for i in range(64)]
        base, other = compare(
            _cycle(echo._one, one), _cycle(echo.predict, one), rounds=rounds, calls=calls
        )
        print(_row("no SDK, pure-Python model: predict vs uninstrumented", base, other, "<= +1 µs"))

        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(BatchSpanProcessor(DropSpans()))
        meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        instrumented = modelkit.load(
            path, tracer_provider=tracer_provider, meter_provider=meter_provider
        )
        tracer = tracer_provider.get_tracer("baseline")
        histogram = meter_provider.get_meter("baseline").create_histogram("baseline", unit="s")
        attributes = {"modelkit.model.name": "logistic", "modelkit.model.version": "1"}

        def by_hand(record: Any) -> Any:
            # What an application would write around the call: one span, one histogram record.
            started = time.perf_counter()
            with tracer.start_as_current_span("predict logistic", attributes=attributes):
                output = instrumented._one(record)
            histogram.record(time.perf_counter() - started, attributes)
            return output

        plain = _cycle(instrumented._one, records)
        base, hand = compare(plain, _cycle(by_hand, records), rounds=rounds, calls=calls)
        sdk_cost = hand - base
        _, fastest_plain, fastest_hand = FASTEST[-1]
        base, other = compare(
            plain, _cycle(instrumented.predict, records), rounds=rounds, calls=calls
        )
        print(_row("SDK: predict vs uninstrumented path", base, other, ""))
        added = other - base
        _, fastest_base, fastest_other = FASTEST[-1]
        fastest_ratio = (fastest_other - fastest_base) / (fastest_hand - fastest_plain)
        print(
            f"{'SDK: modelkit added vs one span + one histogram record':<58} "
            f"{sdk_cost / 1000:>9.2f} µs {added / 1000:>9.2f} µs {'':>11} "
            f"{added / sdk_cost:>6.2f}x {fastest_ratio:>11.2f}x  <= 1.5x"
        )
        tracer_provider.shutdown()
        meter_provider.shutdown()

        path10, records10 = _bundle(Path(workdir), 10)
        try:
            drifting = modelkit.load(path10, drift=True)
        except TypeError:
            print("drift statistics: not in this build")
            return
        steady = modelkit.load(path10)
        base, other = compare(
            _cycle(steady.predict, records10),
            _cycle(drifting.predict, records10),
            rounds=rounds,
            calls=calls,
        )
        print(_row("drift on vs off, 10-feature record", base, other, "<= +2 µs"))


if __name__ == "__main__":
    main()
