"""Custom models used by the tests; importable, as a saved custom model's class must be."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydantic

import modelkit


class Review(pydantic.BaseModel):
    text: str


class Sentiment(pydantic.BaseModel):
    positive: bool


class Keywords(modelkit.Model[Review, Sentiment]):
    """Positive when the text contains one of its words; the words are its artifact."""

    def __init__(self, words: tuple[str, ...] = ("good",)) -> None:
        self.words = tuple(words)

    def run_batch(self, inputs: list[Review]) -> list[Sentiment]:
        return [Sentiment(positive=any(w in r.text for w in self.words)) for r in inputs]

    def save_artifacts(self, directory: Path) -> None:
        (directory / "words.json").write_text(json.dumps(list(self.words)))

    @classmethod
    def from_artifacts(cls, artifacts: modelkit.Artifacts) -> Keywords:
        return cls(tuple(json.loads(artifacts["words.json"])))


class Echo(modelkit.Model[Review, Sentiment]):
    """Returns plain dicts, which the interface turns into its output type."""

    def run_batch(self, inputs: list[Review]) -> list[Any]:
        return [{"positive": True} for _ in inputs]


class DoubleIt:
    """Not scikit-learn: any picklable object with predict() is saved with joblib."""

    def predict(self, X: Any) -> Any:
        import numpy as np

        return np.asarray(X, dtype=float).sum(axis=1)


class CountsItself(modelkit.Model[Review, Sentiment]):
    """Adds a hook to itself when it is built, as a model that reports its own calls would."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.add_hook(self)

    def after_predict(self, ctx: Any, outputs: Any) -> None:
        self.calls.append(ctx.model.name)

    def run_batch(self, inputs: list[Review]) -> list[Sentiment]:
        return [Sentiment(positive=True) for _ in inputs]
