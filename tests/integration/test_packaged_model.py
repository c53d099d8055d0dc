"""Shipping a bundle inside an application's wheel: built, installed into a fresh virtual
environment, verified against its lock file and used, from site-packages, an editable install
and a zip."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.child_env import run, seeing_this_environment

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "packaged_model"
RECORD = {"mean radius": 14.0, "mean texture": 19.0, "mean smoothness": 0.1, "worst area": 880.0}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example application's wheel, built from a copy of its sources."""
    work = tmp_path_factory.mktemp("build")
    source = Path(shutil.copytree(EXAMPLE, work / "packaged_model"))
    dist = work / "dist"
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--wheel-dir",
        dist,
        source,
        cwd=work,
    )
    (built,) = dist.glob("churn_app-*.whl")
    return built


@pytest.fixture
def fresh_python(tmp_path: Path) -> Path:
    """A new virtual environment that sees this environment's packages (modelkit and its
    dependencies, so the test needs no network) but has nothing of the example installed."""
    return seeing_this_environment(tmp_path / "venv")


def _pip_install(python: Path, *args: str | Path, cwd: Path) -> None:
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", *args, cwd=cwd)


def _installed_lock(python: Path, cwd: Path) -> Path:
    location = run(
        python, "-c", "import churn_app, os; print(os.path.dirname(churn_app.__file__))", cwd=cwd
    ).strip()
    return Path(location) / "models.lock"


def test_wheel_ships_the_bundle_and_its_lock(wheel: Path) -> None:
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    assert "churn_app/models.lock" in names
    assert "churn_app/bundles/churn/modelkit.json" in names
    assert "churn_app/bundles/churn/artifacts/model.onnx" in names


def test_installed_wheel_verifies_its_lock_and_predicts(
    wheel: Path, fresh_python: Path, tmp_path: Path
) -> None:
    _pip_install(fresh_python, "--no-index", wheel, cwd=tmp_path)
    lock = _installed_lock(fresh_python, tmp_path)
    assert "site-packages" in str(lock)
    output = run(fresh_python, "-m", "modelkit", "verify", "--lock", lock, cwd=tmp_path)
    assert "OK" in output
    answer = json.loads(run(fresh_python, "-m", "churn_app", json.dumps(RECORD), cwd=tmp_path))
    assert answer["label"] in (0, 1)
    assert set(answer["probabilities"]) == {"0", "1"}


def test_tampered_installed_bundle_is_refused(
    wheel: Path, fresh_python: Path, tmp_path: Path
) -> None:
    _pip_install(fresh_python, "--no-index", wheel, cwd=tmp_path)
    lock = _installed_lock(fresh_python, tmp_path)
    artifact = lock.parent / "bundles" / "churn" / "artifacts" / "model.onnx"
    artifact.write_bytes(artifact.read_bytes() + b"\x00")
    verify = subprocess.run(
        [str(fresh_python), "-m", "modelkit", "verify", "--lock", str(lock)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verify.returncode == 1
    assert "model.onnx" in verify.stdout + verify.stderr
    scored = subprocess.run(
        [str(fresh_python), "-m", "churn_app", json.dumps(RECORD)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert scored.returncode != 0
    assert "IntegrityError" in scored.stderr


def test_editable_install_loads_the_bundle_from_the_source_tree(
    fresh_python: Path, tmp_path: Path
) -> None:
    source = Path(shutil.copytree(EXAMPLE, tmp_path / "packaged_model"))
    _pip_install(fresh_python, "--no-build-isolation", "--editable", source, cwd=tmp_path)
    lock = _installed_lock(fresh_python, tmp_path)
    assert lock == source / "churn_app" / "models.lock"
    answer = json.loads(run(fresh_python, "-m", "churn_app", json.dumps(RECORD), cwd=tmp_path))
    assert answer["label"] in (0, 1)


def test_package_imported_from_a_zip_loads_its_bundle(wheel: Path, tmp_path: Path) -> None:
    # A wheel is a zip: on sys.path, the package and its data are read from inside it.
    env = {**os.environ, "PYTHONPATH": str(wheel)}
    code = (
        "import json, churn_app; "
        "assert '.whl' in churn_app.__file__, churn_app.__file__; "
        f"print(json.dumps(churn_app.predict({RECORD!r})))"
    )
    answer = json.loads(run(sys.executable, "-c", code, cwd=tmp_path, env=env))
    assert answer["label"] in (0, 1)
