"""Fixtures the web-framework integration tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.warmup_fixtures import Watch, save_iris, watching


@pytest.fixture(scope="module")
def with_cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The iris classifier saved with reference cases, which warm-up runs."""
    return save_iris(tmp_path_factory.mktemp("warmup") / "iris")


@pytest.fixture
def watch(monkeypatch: pytest.MonkeyPatch) -> Iterator[Watch]:
    """What modelkit's runners and telemetry see during the test."""
    with watching(monkeypatch) as watched:
        yield watched
