"""Micro-batching: concurrent single-record calls coalesced into one call, each caller served."""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import modelkit
from modelkit import Batching, InvalidInputError, ModelkitError
from tests.custom_models import Keywords
from tests.otel import Otel

# A hang is a failure, not a slow pass: waits that should end at once give up after this.
HANG = 30.0


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sum_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A regression that predicts ``a + 1000 * b`` exactly: each answer names its record."""
    import numpy as np
    from sklearn.linear_model import LinearRegression

    X = np.random.default_rng(0).uniform(0, 100, size=(200, 2))
    regression = LinearRegression().fit(X, X[:, 0] + 1000 * X[:, 1])
    path = tmp_path_factory.mktemp("bundles") / "sum"
    modelkit.save(regression, path, name="sum", version="1.0.0", sample_input=X[:20])
    return path


@pytest.fixture(scope="module")
def plan_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline whose encoder refuses categories it never saw, which the signature allows."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"plan": ["free", "pro"] * 20, "tenure": [float(i) for i in range(40)]})
    pipeline = make_pipeline(
        ColumnTransformer(
            [("plan", OneHotEncoder(handle_unknown="error"), ["plan"])], remainder="passthrough"
        ),
        LogisticRegression(),
    ).fit(frame, frame["plan"] == "pro")
    path = tmp_path_factory.mktemp("bundles") / "plans"
    modelkit.save(pipeline, path, name="plans", version="1.0.0", sample_input=frame)
    return path


@pytest.fixture
def load() -> Iterator[Callable[..., modelkit.Model[Any, Any]]]:
    """``modelkit.load``, closing every model the test loaded when it ends."""
    loaded: list[modelkit.Model[Any, Any]] = []

    def load(path: Path, **options: Any) -> modelkit.Model[Any, Any]:
        loaded.append(modelkit.load(path, **options))
        return loaded[-1]

    yield load
    for model in loaded:
        model.close()


def batching_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("modelkit-batching-")]


class Gate:
    """Holds the model's runtime closed, so that calls queue up behind a first one.

    Records the number of rows of every call the runtime gets.
    """

    def __init__(self, model: modelkit.Model[Any, Any]) -> None:
        self.model = model
        self.sizes: list[int] = []
        self.threads: list[int] = []
        self.entered = threading.Event()
        self.opened = threading.Event()
        runner = model.runner  # type: ignore[attr-defined]
        run, run_record = runner.run, runner.run_record
        model._runner = self  # type: ignore[attr-defined]
        model._run_record = self.run_record  # type: ignore[attr-defined]
        self._run, self._run_record = run, run_record

    def _pass(self, size: int) -> None:
        self.sizes.append(size)
        self.threads.append(threading.get_ident())
        self.entered.set()
        assert self.opened.wait(HANG)

    def run(self, inputs: Any) -> Mapping[str, Any]:
        self._pass(inputs.length)
        return self._run(inputs)  # type: ignore[no-any-return]

    def run_record(self, values: Any) -> Mapping[str, Any]:
        self._pass(1)
        return self._run_record(values)  # type: ignore[no-any-return]

    def queued(self) -> int:
        return self.model._batcher.pending  # type: ignore[attr-defined,no-any-return]

    def wait_until_queued(self, count: int) -> None:
        for _ in range(int(HANG * 100)):
            if self.queued() >= count:
                return
            time.sleep(0.01)
        raise AssertionError(f"{self.queued()} calls queued, expected {count}")


def call_held(
    gate: Gate, records: list[Any], *, first: Any
) -> tuple[Future[Any], ThreadPoolExecutor, list[Future[Any]]]:
    """Start ``predict(first)`` (held in the runtime), then queue ``records`` behind it."""
    pool = ThreadPoolExecutor(len(records) + 2)  # one spare thread for a later call
    head = pool.submit(gate.model.predict, first)
    assert gate.entered.wait(HANG)
    futures = [pool.submit(gate.model.predict, record) for record in records]
    return head, pool, futures


def approx(expected: Any) -> Any:
    """Equal up to the rounding of the regression's arithmetic."""
    return pytest.approx(expected, abs=1e-6)


def outcome(future: Future[Any]) -> Any:
    error = future.exception(HANG)
    return error if error is not None else future.result()


def same(a: Any, b: Any) -> bool:
    """Equal outputs, up to the last bits that a batch's arithmetic may change."""
    if a.label != b.label:
        return False
    return all(
        math.isclose(a.probabilities[k], b.probabilities[k], rel_tol=1e-9, abs_tol=1e-12)
        for k in a.probabilities
    )


# -- configuration ----------------------------------------------------------------------------


def test_batching_defaults() -> None:
    assert Batching() == Batching(max_batch_size=64, max_wait_ms=2.0)


@pytest.mark.parametrize(
    "options",
    [
        {"max_batch_size": 0},
        {"max_batch_size": 2.5},
        {"max_batch_size": True},
        {"max_batch_size": "8"},
        {"max_wait_ms": -1},
        {"max_wait_ms": math.inf},
        {"max_wait_ms": math.nan},
        {"max_wait_ms": False},
        {"max_wait_ms": "2"},
    ],
)
def test_batching_rejects_bad_settings(options: dict[str, Any]) -> None:
    (name,) = options
    with pytest.raises(ValueError, match=name):
        Batching(**options)


def test_load_refuses_a_batching_value_of_another_type(iris_bundle: Path) -> None:
    with pytest.raises(TypeError, match=r"modelkit\.Batching"):
        modelkit.load(iris_bundle, batching={"max_batch_size": 8})


def test_batching_needs_a_tabular_signature(tmp_path: Path) -> None:
    modelkit.save(Keywords(), tmp_path / "keywords", name="keywords", version="1.0.0")
    with pytest.raises(ModelkitError, match="tabular signature"):
        modelkit.load(tmp_path / "keywords", batching=True)


# -- answers ----------------------------------------------------------------------------------


def test_batched_joblib_model_answers_like_the_plain_one(
    load: Callable[..., Any], iris_bundle: Path, iris: Any
) -> None:
    records = iris[0].to_dict(orient="records")
    expected = [modelkit.load(iris_bundle).predict(record) for record in records]
    model = load(iris_bundle, batching=True)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(model.predict, records))
    assert all(same(a, e) for a, e in zip(answers, expected, strict=True))


def test_batched_onnx_model_answers_like_the_plain_one(
    load: Callable[..., Any], onnx_bundle: Path, numeric_data: Any
) -> None:
    records = numeric_data[0][:100].tolist()
    expected = [modelkit.load(onnx_bundle).predict(record) for record in records]
    model = load(onnx_bundle, batching=Batching(max_batch_size=16))
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(model.predict, records))
    assert all(same(a, e) for a, e in zip(answers, expected, strict=True))


def test_each_of_many_threads_gets_its_own_answers(
    load: Callable[..., Any], sum_bundle: Path
) -> None:
    model = load(sum_bundle, batching=True)

    def work(thread: int) -> list[tuple[float, float]]:
        records = [{"x0": float(i), "x1": float(thread)} for i in range(50)]
        return [(r["x0"] + 1000 * r["x1"], model.predict(r).value) for r in records]

    with ThreadPoolExecutor(16) as pool:
        results = [pair for pairs in pool.map(work, range(16)) for pair in pairs]
    assert len(results) == 800
    for expected, got in results:
        assert got == approx(expected)


def test_queued_calls_run_as_one_batch(load: Callable[..., Any], sum_bundle: Path) -> None:
    gate = Gate(load(sum_bundle, batching=True))
    records = [{"x0": float(i), "x1": 0.0} for i in range(15)]
    head, pool, futures = call_held(gate, records, first={"x0": 0.0, "x1": 1.0})
    gate.wait_until_queued(15)
    gate.opened.set()
    answers = [outcome(f) for f in futures]
    pool.shutdown()
    assert gate.sizes == [1, 15]
    assert [a.value for a in answers] == approx([float(i) for i in range(15)])
    assert outcome(head).value == approx(1000.0)


def test_batch_size_is_capped(load: Callable[..., Any], sum_bundle: Path) -> None:
    gate = Gate(load(sum_bundle, batching=Batching(max_batch_size=4)))
    records = [{"x0": float(i), "x1": 0.0} for i in range(10)]
    _, pool, futures = call_held(gate, records, first={"x0": 0.0, "x1": 1.0})
    gate.wait_until_queued(10)
    gate.opened.set()
    for future in futures:
        outcome(future)
    pool.shutdown()
    assert gate.sizes == [1, 4, 4, 2]


# -- errors -----------------------------------------------------------------------------------


def test_a_record_that_fails_the_signature_fails_only_its_caller(
    load: Callable[..., Any], sum_bundle: Path
) -> None:
    gate = Gate(load(sum_bundle, batching=True))
    good = [{"x0": float(i), "x1": 0.0} for i in range(4)]
    _, pool, futures = call_held(gate, good, first={"x0": 0.0, "x1": 1.0})
    bad = pool.submit(gate.model.predict, {"x0": "many", "x1": 0.0})
    assert isinstance(bad.exception(HANG), InvalidInputError)  # before the runtime is free
    gate.wait_until_queued(4)
    gate.opened.set()
    assert [outcome(f).value for f in futures] == approx([0.0, 1.0, 2.0, 3.0])
    pool.shutdown()
    assert gate.sizes == [1, 4]


def test_a_record_the_runtime_rejects_fails_only_its_caller(
    load: Callable[..., Any], plan_bundle: Path
) -> None:
    unseen = {"plan": "enterprise", "tenure": 3.0}
    with pytest.raises(InvalidInputError) as plain:
        modelkit.load(plan_bundle).predict(unseen)
    gate = Gate(load(plan_bundle, batching=True))
    records = [{"plan": "pro", "tenure": 1.0}, unseen, {"plan": "free", "tenure": 2.0}]
    _, pool, futures = call_held(gate, records, first={"plan": "free", "tenure": 0.0})
    gate.wait_until_queued(3)
    gate.opened.set()
    good, rejected, other = (outcome(f) for f in futures)
    pool.shutdown()
    assert gate.sizes[:2] == [1, 3]  # the three shared one batch, which the runtime refused
    assert good.label is True
    assert other.label is False
    assert isinstance(rejected, InvalidInputError)
    assert str(rejected) == str(plain.value)


def test_apredict_of_a_rejected_record_raises_invalid_input(
    load: Callable[..., Any], plan_bundle: Path
) -> None:
    model = load(plan_bundle, batching=True)

    async def main() -> list[Any]:
        calls = [
            model.apredict({"plan": "pro", "tenure": 1.0}),
            model.apredict({"plan": "enterprise", "tenure": 1.0}),
        ]
        return await asyncio.gather(*calls, return_exceptions=True)

    good, rejected = asyncio.run(main())
    assert good.label is True
    assert isinstance(rejected, InvalidInputError)


# -- async ------------------------------------------------------------------------------------


def test_apredict_coalesces_off_the_event_loop(load: Callable[..., Any], sum_bundle: Path) -> None:
    gate = Gate(load(sum_bundle, batching=True))
    loop_thread: list[int] = []
    ticks: list[int] = []

    async def ticker() -> None:
        # Only a running loop can open the gate: the model must be working elsewhere meanwhile.
        while len(ticks) < 3 or not gate.entered.is_set():
            ticks.append(1)
            await asyncio.sleep(0.001)
        gate.opened.set()

    async def main() -> list[Any]:
        loop_thread.append(threading.get_ident())
        calls = [gate.model.apredict({"x0": float(i), "x1": 0.0}) for i in range(32)]
        answers, _ = await asyncio.gather(asyncio.gather(*calls), ticker())
        return answers  # type: ignore[no-any-return]

    answers = asyncio.run(main())
    assert [a.value for a in answers] == approx([float(i) for i in range(32)])
    assert sum(gate.sizes) == 32
    assert max(gate.sizes) > 1
    # On the batching worker: neither the loop nor an executor thread held per pending call.
    (worker,) = batching_threads()
    assert set(gate.threads) == {worker.ident}
    assert loop_thread[0] != worker.ident


def test_apredict_without_batching_runs_on_the_executor(iris_bundle: Path, iris: Any) -> None:
    model = modelkit.load(iris_bundle)
    record = iris[0].iloc[0].to_dict()
    assert asyncio.run(model.apredict(record)) == model.predict(record)
    assert not batching_threads()


# -- telemetry, hooks and drift ---------------------------------------------------------------


def test_metrics_record_the_real_batch_sizes(sum_bundle: Path) -> None:
    otel = Otel()
    gate = Gate(otel.load(sum_bundle, batching=True))
    records = [{"x0": float(i), "x1": 0.0} for i in range(7)]
    _, pool, futures = call_held(gate, records, first={"x0": 0.0, "x1": 1.0})
    gate.wait_until_queued(7)
    gate.opened.set()
    for future in futures:
        outcome(future)
    pool.shutdown()
    gate.model.close()
    ((_, sizes),) = otel.points("modelkit.prediction.batch.size")
    assert (sizes.count, sizes.sum, sizes.max) == (2, 8, 7)
    ((_, durations),) = otel.points("modelkit.prediction.duration")
    assert durations.count == 8  # one per caller


def test_spans_carry_the_coalesced_batch_size(sum_bundle: Path) -> None:
    otel = Otel()
    gate = Gate(otel.load(sum_bundle, batching=True))
    records = [{"x0": float(i), "x1": 0.0} for i in range(5)]
    _, pool, futures = call_held(gate, records, first={"x0": 0.0, "x1": 1.0})
    gate.wait_until_queued(5)
    gate.opened.set()
    for future in futures:
        outcome(future)
    pool.shutdown()
    gate.model.close()
    sizes = sorted(
        s.attributes["modelkit.prediction.batch.size"] for s in otel.spans("predict sum")
    )
    assert sizes == [1, 5, 5, 5, 5, 5]


def test_hooks_see_every_batched_call(load: Callable[..., Any], sum_bundle: Path) -> None:
    seen: list[tuple[str, Any]] = []

    class Recorder:
        def before_predict(self, ctx: modelkit.PredictionContext) -> None:
            seen.append(("before", ctx.batch_size))

        def after_predict(self, ctx: modelkit.PredictionContext, outputs: Any) -> None:
            seen.append(("after", outputs.value))

    model = load(sum_bundle, batching=True)
    model.add_hook(Recorder())
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(model.predict, [{"x0": float(i), "x1": 0.0} for i in range(40)]))
    assert sorted(kind for kind, _ in seen) == ["after"] * 40 + ["before"] * 40
    assert {size for kind, size in seen if kind == "before"} == {1}
    answers = sorted(value for kind, value in seen if kind == "after")
    assert answers == approx([float(i) for i in range(40)])


def test_drift_counts_each_record_once(
    load: Callable[..., Any], iris_bundle: Path, iris: Any
) -> None:
    model = load(iris_bundle, batching=True, drift=True)
    records = iris[0].to_dict(orient="records")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(model.predict, records))
    assert model.drift().count == len(records)


# -- closing, forking and lifetime ------------------------------------------------------------


def test_close_answers_every_queued_call(load: Callable[..., Any], sum_bundle: Path) -> None:
    gate = Gate(load(sum_bundle, batching=True))
    records = [{"x0": float(i), "x1": 0.0} for i in range(20)]
    head, pool, futures = call_held(gate, records, first={"x0": 0.0, "x1": 1.0})
    gate.wait_until_queued(20)
    closing = threading.Thread(target=gate.model.close)
    closing.start()
    gate.opened.set()
    closing.join(HANG)
    assert not closing.is_alive()
    assert [outcome(f).value for f in futures] == approx([float(i) for i in range(20)])
    assert outcome(head).value == approx(1000.0)
    pool.shutdown()
    assert gate.sizes == [1, 20]
    assert not batching_threads()


def test_calls_racing_with_close_all_get_answers(
    load: Callable[..., Any], sum_bundle: Path
) -> None:
    model = load(sum_bundle, batching=Batching(max_wait_ms=1.0))
    started = threading.Barrier(9)

    def work(thread: int) -> list[float]:
        started.wait()
        return [model.predict({"x0": float(i), "x1": float(thread)}).value for i in range(30)]

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(work, t) for t in range(8)]
        started.wait()
        model.close()
        results = [future.result(HANG) for future in futures]
    for thread, values in enumerate(results):
        assert values == approx([i + 1000.0 * thread for i in range(30)])
    assert not batching_threads()


def test_a_closed_model_still_predicts_unbatched(
    load: Callable[..., Any], sum_bundle: Path
) -> None:
    model = load(sum_bundle, batching=True)
    model.predict({"x0": 1.0, "x1": 0.0})
    model.close()
    model.close()  # idempotent
    assert model.predict({"x0": 2.0, "x1": 1.0}).value == approx(1002.0)
    assert asyncio.run(model.apredict({"x0": 3.0, "x1": 0.0})).value == approx(3.0)
    assert not batching_threads()


def test_a_model_is_a_context_manager_that_closes(sum_bundle: Path) -> None:
    with modelkit.load(sum_bundle, batching=True) as model:
        model.predict({"x0": 1.0, "x1": 0.0})
        assert len(batching_threads()) == 1
    assert not batching_threads()


def test_close_is_a_no_op_on_a_model_without_batching(iris_bundle: Path, iris: Any) -> None:
    with Keywords() as custom:
        custom.close()
    assert custom.predict({"text": "good"}).positive is True
    model = modelkit.load(iris_bundle)
    model.close()
    assert model.predict(iris[0].iloc[0].to_dict()).label == 0


def test_the_worker_starts_on_the_first_call(load: Callable[..., Any], sum_bundle: Path) -> None:
    model = load(sum_bundle, batching=True)
    assert not batching_threads()
    model.predict({"x0": 1.0, "x1": 0.0})
    assert [t.name for t in batching_threads()] == ["modelkit-batching-sum"]


def test_the_worker_does_not_keep_an_unreferenced_model_alive(sum_bundle: Path) -> None:
    model = modelkit.load(sum_bundle, batching=True)
    model.predict({"x0": 1.0, "x1": 0.0})
    (worker,) = batching_threads()
    del model
    gc.collect()
    worker.join(HANG)
    assert not worker.is_alive()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_its_own_worker(load: Callable[..., Any], sum_bundle: Path) -> None:
    model = load(sum_bundle, batching=True)
    model.predict({"x0": 1.0, "x1": 0.0})  # the parent's worker is running
    read, write = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a threaded process may deadlock: that is what the
        # fork handler is for, and what this test checks.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: a gunicorn worker after --preload
        os.close(read)
        try:
            with ThreadPoolExecutor(4) as pool:
                values = list(
                    pool.map(model.predict, [{"x0": float(i), "x1": 1.0} for i in range(8)])
                )
            threads = [t.name for t in batching_threads()]
            os.write(write, json.dumps([[v.value for v in values], threads]).encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        values, threads = json.loads(pipe.read())
    assert values == approx([1000.0 + i for i in range(8)])
    assert threads == ["modelkit-batching-sum"]
    assert os.waitstatus_to_exitcode(status) == 0
    assert model.predict({"x0": 2.0, "x1": 0.0}).value == approx(2.0)
