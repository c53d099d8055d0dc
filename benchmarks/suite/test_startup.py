"""What an application pays once: ``import modelkit``, and loading a bundle."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_core
import joblib
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import modelkit

# The raw side of the import: the run-time dependencies that `import modelkit` loads itself, so
# the ratio grows with what modelkit adds on top of them.
IMPORTS = {
    "raw": "import numpy; from pydantic import BaseModel; from opentelemetry import metrics, trace",
    "modelkit": "import modelkit",
}


@pytest.fixture(scope="session")
def forest(tmp_path_factory: pytest.TempPathFactory) -> bench_core.Fixture:
    """bench_core.py's ~2 MB random forest, as a joblib bundle and as an ONNX bundle."""
    return bench_core.build_fixture(tmp_path_factory.mktemp("forest"))


def test_import(benchmark: BenchmarkFixture, side: str) -> None:
    """``import modelkit`` in a fresh interpreter, against importing its dependencies."""
    benchmark.group = "import modelkit, fresh interpreter"
    command = [sys.executable, "-c", IMPORTS[side]]
    # Bytecode is written (by the warm-up round), as an installed package has it: otherwise a
    # source file edited since its last cached bytecode is compiled again in every round.
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    benchmark.pedantic(  # type: ignore[no-untyped-call]
        subprocess.run,
        args=(command,),
        kwargs={"check": True, "env": environment},
        rounds=15,
        warmup_rounds=1,
    )


def test_load_joblib(benchmark: BenchmarkFixture, side: str, forest: bench_core.Fixture) -> None:
    """``modelkit.load`` of the joblib bundle against ``joblib.load`` of its artifact."""
    benchmark.group = "load, 2 MB forest, joblib bundle"
    if side == "raw":
        benchmark(joblib.load, forest.joblib_file)
    else:
        benchmark(modelkit.load, forest.joblib_bundle)


def test_load_onnx(
    benchmark: BenchmarkFixture,
    side: str,
    forest: bench_core.Fixture,
    ort_session: Callable[[Path | bytes], Any],
) -> None:
    """``modelkit.load`` of the ONNX bundle against an ``InferenceSession`` on its graph."""
    benchmark.group = "load, 2 MB forest, onnx bundle"
    if side == "raw":
        benchmark(ort_session, forest.onnx_file)
    else:
        benchmark(modelkit.load, forest.onnx_bundle)
