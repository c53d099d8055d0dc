"""What the warm-up tests share: a bundle with reference cases, and everything that watches calls.

``Watch`` counts the runs of the joblib runner (the warm-up's own evidence) and holds what must
never see a warm-up: a process-wide hook, a prediction log, and the real OpenTelemetry SDK,
exporting to memory, in place of the global providers modelkit reports to by default (so
models loaded by a server or an integration report to it too).

A plain module, not a conftest: the tests import what they use.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import modelkit
from modelkit import telemetry
from modelkit.adapters._joblib import JoblibRunner
from tests.bundle_fixtures import fit_logistic, fit_tree, iris, replace_artifact
from tests.otel import Otel

CASES = "artifacts/reference-cases.json"


def save_iris(path: Path, version: str = "1.0.0") -> Path:
    """The iris classifier, saved with 60 sample rows (so with reference cases), at ``path``."""
    features, _labels = iris()
    sample = features[::2][:60]
    modelkit.save(fit_logistic(), path, name="iris", version=version, sample_input=sample)
    return path


def save_iris_answering_otherwise(path: Path) -> Path:
    """:func:`save_iris` with a decision tree in place of its classifier, the manifest re-hashed:
    a consistent bundle that no longer answers its reference cases (as after an upgrade that
    changed what the model computes)."""
    import joblib

    save_iris(path)
    pickled = io.BytesIO()
    joblib.dump(fit_tree(), pickled)
    replace_artifact(path, pickled.getvalue(), rehash=True)
    return path


def cases_in(bundle: Path) -> list[Any]:
    """The inputs of a bundle's reference cases."""
    inputs: list[Any] = json.loads((bundle / CASES).read_text(encoding="utf-8"))["inputs"]
    return inputs


class Recorder:
    """A hook that records every call it sees."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def before_predict(self, context: Any) -> None:
        self.calls.append("before")

    def after_predict(self, context: Any, result: Any) -> None:
        self.calls.append("after")


class Watch:
    """The joblib runner's runs, and the hook, prediction log and telemetry that see calls."""

    def __init__(self) -> None:
        #: How often the joblib runner ran: ``run`` (tables) and ``run_record`` (one record).
        self.runs: Counter[str] = Counter()
        self.hook = Recorder()
        self.lines: list[str] = []
        self.log = modelkit.PredictionLogger(self.lines.append)
        self.otel = Otel()

    def observed(self, name: str = "iris") -> dict[str, int]:
        """What saw calls of model ``name``: the calls the hook and the log saw (the log
        flushed first), the spans, and the metric's data points (one per set of attributes)."""
        self.log.flush()
        return {
            "hook": len(self.hook.calls) // 2,
            "log": len(self.lines),
            "spans": len(self.otel.spans(f"predict {name}")),
            "metrics": len(self.otel.points("modelkit.prediction.batch.size")),
        }

    def assert_unobserved(self, name: str = "iris") -> None:
        """Nothing has seen a call of model ``name`` (its load span aside)."""
        assert self.observed(name) == {"hook": 0, "log": 0, "spans": 0, "metrics": 0}


@contextlib.contextmanager
def watching(monkeypatch: pytest.MonkeyPatch) -> Iterator[Watch]:
    """A :class:`Watch` installed until the block ends (``monkeypatch`` undoes the rest)."""
    watched = Watch()
    for name in ("run", "run_record"):
        original = getattr(JoblibRunner, name)

        def counted(self: Any, inputs: Any, _name: str = name, _original: Any = original) -> Any:
            watched.runs[_name] += 1
            return _original(self, inputs)

        monkeypatch.setattr(JoblibRunner, name, counted)
    monkeypatch.setattr(
        telemetry,
        "DEFAULT",
        telemetry.Telemetry(watched.otel.tracer_provider, watched.otel.meter_provider),
    )
    modelkit.add_hook(watched.hook)
    modelkit.add_hook(watched.log)
    try:
        yield watched
    finally:
        modelkit.remove_hook(watched.log)
        modelkit.remove_hook(watched.hook)
        watched.log.close()
        watched.otel.tracer_provider.shutdown()
        watched.otel.meter_provider.shutdown()
