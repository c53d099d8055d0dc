"""Warm-up: ``load(..., warmup=True)`` runs the reference cases through the call path before the
model is handed out, seen by no hook, span, metric, prediction log or drift statistic."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import modelkit
from modelkit._config import read_config, with_defaults
from modelkit.adapters._joblib import JoblibRunner
from modelkit.cli._serve import _registry_builder
from tests.bundle_fixtures import fit_logistic, iris
from tests.otel import Otel

CASES = "artifacts/reference-cases.json"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The iris classifier, saved with 60 sample rows (so with reference cases)."""
    path = tmp_path_factory.mktemp("warmup") / "iris"
    features, _labels = iris()
    modelkit.save(
        fit_logistic(), path, name="iris", version="1.0.0", sample_input=features[::2][:60]
    )
    return path


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often the joblib runner ran: ``run`` (tables) and ``run_record`` (one record)."""
    counts: Counter[str] = Counter()
    for name in ("run", "run_record"):
        original = getattr(JoblibRunner, name)

        def counted(self: Any, inputs: Any, _name: str = name, _original: Any = original) -> Any:
            counts[_name] += 1
            return _original(self, inputs)

        monkeypatch.setattr(JoblibRunner, name, counted)
    return counts


class Recorder:
    """A hook that records every call it sees."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def before_predict(self, context: Any) -> None:
        self.calls.append("before")

    def after_predict(self, context: Any, result: Any) -> None:
        self.calls.append("after")


@pytest.fixture
def observers() -> Iterator[tuple[Recorder, list[str], modelkit.PredictionLogger]]:
    """A process-wide hook and prediction log, removed afterwards."""
    hook, lines = Recorder(), []
    logger = modelkit.PredictionLogger(lines.append)
    modelkit.add_hook(hook)
    modelkit.add_hook(logger)
    yield hook, lines, logger
    modelkit.remove_hook(logger)
    modelkit.remove_hook(hook)
    logger.close()


def cases_in(bundle: Path) -> list[dict[str, Any]]:
    inputs: list[dict[str, Any]] = json.loads((bundle / CASES).read_text())["inputs"]
    return inputs


def test_warmup_runs_every_case_alone_and_together_and_nothing_observes_it(
    bundle: Path, runs: Counter[str], observers: Any
) -> None:
    hook, lines, logger = observers
    otel = Otel()
    model = otel.load(bundle, warmup=True, check="off", drift=True)
    cases = cases_in(bundle)
    assert len(cases) > 1
    # One single-record run per case (the fast path), and one batch of them all.
    assert runs == {"run_record": len(cases), "run": 1}
    logger.flush()
    assert hook.calls == []
    assert lines == []
    assert otel.spans("predict iris") == []
    assert otel.points("modelkit.prediction.duration") == []
    assert otel.points("modelkit.prediction.batch.size") == []
    assert model.drift().count == 0
    assert [s.name for s in otel.spans()] == ["load iris"]  # the load span alone
    # The same instruments see a real call: the warm-up was kept out, not unobservable.
    model.predict(cases[0])
    logger.flush()
    assert hook.calls == ["before", "after"]
    assert len(lines) == 1
    assert len(otel.spans("predict iris")) == 1
    assert model.drift().count == 1


def test_warmup_runs_through_the_batching_worker(bundle: Path, runs: Counter[str]) -> None:
    with modelkit.load(bundle, warmup=True, check="off", batching=True, drift=True) as model:
        cases = cases_in(bundle)
        # The worker ran each queued record alone (nothing else was queued), then the batch.
        assert runs == {"run_record": len(cases), "run": 1}
        assert model.drift().count == 0
        assert model.predict(cases[0]).label in (0, 1, 2)


def test_warmup_after_the_check_and_off_by_default(bundle: Path, runs: Counter[str]) -> None:
    modelkit.load(bundle, check="off")
    assert runs == {}
    modelkit.load(bundle, check="error", warmup=True)
    # The check's one batch, then the warm-up's.
    assert runs == {"run_record": len(cases_in(bundle)), "run": 2}


def test_a_bundle_without_reference_cases_is_not_warmed_up(
    tmp_path: Path, runs: Counter[str]
) -> None:
    modelkit.save(fit_logistic(), tmp_path / "bare", name="bare", version="1")
    model = modelkit.load(tmp_path / "bare", warmup=True)
    assert runs == {}
    assert model.predict([5.1, 3.5, 1.4, 0.2]).label == 0


def test_a_model_that_raises_on_its_cases_fails_the_warm_up(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Any, values: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(JoblibRunner, "run_record", broken)
    with pytest.raises(RuntimeError, match="boom"):
        modelkit.load(bundle, check="off", warmup=True)


def test_the_config_key_passes_warmup_to_load(bundle: Path, runs: Counter[str]) -> None:
    config = {"models": {"iris": {"path": str(bundle), "warmup": True, "check": "off"}}}
    (configured,) = read_config(config).bundles
    assert configured.options["warmup"] is True
    with modelkit.Registry.from_config(config):
        assert runs["run_record"] == len(cases_in(bundle))


def test_defaults_fill_every_bundle_table_that_does_not_set_them() -> None:
    document = {
        "models": {
            "short": "bundles/a",
            "full": {
                "path": "bundles/b",
                "warmup": False,
                "canary": {"path": "bundles/c", "weight": 0.1},
                "shadow": {"path": "bundles/d", "warmup": False},
            },
        }
    }
    models = with_defaults(document, warmup=True)["models"]
    assert models["short"] == {"path": "bundles/a", "warmup": True}
    assert models["full"]["warmup"] is False
    assert models["full"]["canary"] == {"path": "bundles/c", "weight": 0.1, "warmup": True}
    assert models["full"]["shadow"]["warmup"] is False
    assert document["models"]["short"] == "bundles/a"  # the document itself is left alone


@pytest.mark.parametrize("as_config", [False, True])
def test_serve_loads_its_models_warmed_up(
    bundle: Path, tmp_path: Path, runs: Counter[str], as_config: bool
) -> None:
    path = bundle
    if as_config:
        path = tmp_path / "models.toml"
        path.write_text(f'[models]\niris = "{bundle.as_posix()}"\n', encoding="utf-8")
    build = _registry_builder(str(path), None, is_config=as_config, meter_provider=None)
    assert runs == {}  # nothing loads before the port is open
    with build():
        assert runs["run_record"] == len(cases_in(bundle))
