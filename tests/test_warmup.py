"""Warm-up: ``load(..., warmup=True)`` runs the reference cases through the call path before the
model is handed out, seen by no hook, span, metric, prediction log or drift statistic; a
registry warms up every bundle it loads (add, canary, shadow, reload) unless told otherwise."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import modelkit
from modelkit.adapters._joblib import JoblibRunner
from modelkit.cli._serve import _registry_builder
from tests.bundle_fixtures import fit_logistic
from tests.warmup_fixtures import Watch, cases_in, save_iris, watching


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_iris(tmp_path_factory.mktemp("warmup") / "iris")


@pytest.fixture(scope="module")
def bundle_2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same classifier, saved as version 2.0.0."""
    return save_iris(tmp_path_factory.mktemp("warmup") / "iris-2", version="2.0.0")


@pytest.fixture
def watch(monkeypatch: pytest.MonkeyPatch) -> Iterator[Watch]:
    with watching(monkeypatch) as watched:
        yield watched


def warmed_up(bundle: Path) -> Counter[str]:
    """The runs one warm-up makes: each case alone (the fast path), then all in one batch."""
    return Counter(run_record=len(cases_in(bundle)), run=1)


# -- load -----------------------------------------------------------------------------------------


def test_warmup_runs_every_case_alone_and_together_and_nothing_observes_it(
    bundle: Path, watch: Watch
) -> None:
    model = modelkit.load(bundle, warmup=True, check="off", drift=True)
    cases = cases_in(bundle)
    assert len(cases) > 1
    assert watch.runs == warmed_up(bundle)
    watch.assert_unobserved()
    assert watch.otel.points("modelkit.prediction.duration") == []
    assert model.drift().count == 0
    assert [s.name for s in watch.otel.spans()] == ["load iris"]  # the load span alone
    # The same instruments see a real call: the warm-up was kept out, not unobservable.
    model.predict(cases[0])
    assert watch.observed() == {"hook": 1, "log": 1, "spans": 1, "metrics": 1}
    assert model.drift().count == 1


def test_warmup_runs_through_the_batching_worker(bundle: Path, watch: Watch) -> None:
    with modelkit.load(bundle, warmup=True, check="off", batching=True, drift=True) as model:
        # The worker ran each queued record alone (nothing else was queued), then the batch.
        assert watch.runs == warmed_up(bundle)
        assert model.drift().count == 0
        assert model.predict(cases_in(bundle)[0]).label in (0, 1, 2)


def test_warmup_after_the_check_and_off_by_default(bundle: Path, watch: Watch) -> None:
    modelkit.load(bundle, check="off")
    assert watch.runs == {}
    modelkit.load(bundle, check="error", warmup=True)
    # The check's one batch, then the warm-up's.
    assert watch.runs == {"run_record": len(cases_in(bundle)), "run": 2}


def test_a_bundle_without_reference_cases_is_not_warmed_up(tmp_path: Path, watch: Watch) -> None:
    modelkit.save(fit_logistic(), tmp_path / "bare", name="bare", version="1")
    model = modelkit.load(tmp_path / "bare", warmup=True)
    assert watch.runs == {}
    assert model.predict([5.1, 3.5, 1.4, 0.2]).label == 0


def test_a_model_that_raises_on_its_cases_fails_the_warm_up(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Any, values: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(JoblibRunner, "run_record", broken)
    with pytest.raises(modelkit.ModelkitError, match="warming up: RuntimeError: boom") as failed:
        modelkit.load(bundle, check="off", warmup=True)
    assert isinstance(failed.value.__cause__, RuntimeError)


# -- the registry -------------------------------------------------------------------------------


def test_a_registry_warms_up_every_bundle_before_it_takes_traffic_unobserved(
    bundle: Path, bundle_2: Path, watch: Watch
) -> None:
    checked = Counter(run=1)  # the reference cases, as one batch, before the warm-up
    with modelkit.Registry() as registry:
        route = registry.add("iris", bundle, drift=True)
        assert watch.runs == warmed_up(bundle) + checked
        for change in (
            lambda: registry.set_canary("iris", bundle_2, weight=0.5),
            lambda: registry.set_shadow("iris", bundle_2),
            lambda: registry.reload("iris", bundle_2),
        ):
            watch.runs.clear()
            change()
            assert watch.runs == warmed_up(bundle_2) + checked
        watch.assert_unobserved()
        assert route.model.drift().count == 0
        route.predict(cases_in(bundle)[0], key="someone")
        registry._shadows.join()
        assert watch.observed()["spans"] == 2  # the call on its variant, and the shadow's


def test_warmup_false_turns_it_off_for_the_route_and_its_reloads(
    bundle: Path, bundle_2: Path, watch: Watch
) -> None:
    config = {"models": {"iris": {"path": str(bundle), "warmup": False}}}
    with modelkit.Registry.from_config(config) as registry:
        assert watch.runs == {"run": 1}  # the check alone
        registry.reload("iris", bundle_2)
        assert watch.runs == {"run": 2}  # the route keeps its options
        registry.reload("iris", warmup=True)  # unless the reload says otherwise
        assert watch.runs["run_record"] == len(cases_in(bundle_2))


@pytest.mark.parametrize("as_config", [False, True])
def test_serve_loads_its_models_warmed_up(
    bundle: Path, tmp_path: Path, watch: Watch, as_config: bool
) -> None:
    path = bundle
    if as_config:
        path = tmp_path / "models.toml"
        path.write_text(f'[models]\niris = "{bundle.as_posix()}"\n', encoding="utf-8")
    build = _registry_builder(str(path), None, is_config=as_config, meter_provider=None)
    assert watch.runs == {}  # nothing loads before the port is open
    with build():
        assert watch.runs["run_record"] == len(cases_in(bundle))
    watch.assert_unobserved()


def _batching_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("modelkit-batching-")]


def test_a_registry_model_whose_warm_up_raises_is_closed_and_never_served(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Any, values: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(JoblibRunner, "run_record", broken)
    before = _batching_threads()
    with modelkit.Registry() as registry:
        with pytest.raises(modelkit.ModelkitError, match=r"^models\.iris: .*RuntimeError: boom"):
            registry.add("iris", bundle, batching=True)
        assert "iris" not in registry
        # Its batching worker stopped with it: nothing holds the model that failed.
        assert _batching_threads() == before


def test_a_reload_whose_warm_up_raises_leaves_the_old_model_serving(
    bundle: Path, bundle_2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with modelkit.Registry() as registry:
        route = registry.add("iris", bundle, batching=True)
        serving = route.model
        threads = _batching_threads()
        answering = JoblibRunner.run_record

        def broken_when_new(self: Any, values: Any) -> Any:
            if self is not serving._runner:  # type: ignore[attr-defined]
                raise RuntimeError("boom")
            return answering(self, values)

        monkeypatch.setattr(JoblibRunner, "run_record", broken_when_new)
        with pytest.raises(modelkit.ModelkitError, match="RuntimeError: boom"):
            registry.reload("iris", bundle_2)
        assert route.model is serving
        assert route.predict(cases_in(bundle)[0]).label in (0, 1, 2)
        assert _batching_threads() == threads
