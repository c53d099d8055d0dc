"""Saving is atomic: a save that dies at any moment leaves the previous bundle or none at all."""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

import modelkit
from modelkit import adapters
from tests.bundle_fixtures import (
    assert_predicts_like,
    fit_logistic,
    fit_tree,
    read_manifest,
    save_bundle,
    staging_leftovers,
)

REPOSITORY = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------------
# A real save, SIGKILLed at varied moments
# --------------------------------------------------------------------------------------------

# The child imports once, then forks one saver per round (a fresh interpreter per kill would
# spend seconds importing scikit-learn). Each saver overwrites the target in a loop, so a kill
# can land in any phase: dumping, hashing, writing the manifest, syncing, or between renames.
# The model is a brute-force k-NN over 20k rows: cheap to fit, a ~2 MB artifact to write, and
# quick to verify, so many rounds fit in a few seconds (each round is one chance to catch a
# non-atomic step).
_CHILD = r"""
import os, sys, time, traceback
import numpy as np
from sklearn.neighbors import KNeighborsClassifier
import modelkit

target, scratch = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
features = rng.normal(size=(20_000, 10))
model = KNeighborsClassifier(algorithm="brute").fit(features, (features[:, 0] > 0).astype(int))

def save(path, version):
    modelkit.save(model, path, name="knn", version=version, overwrite=True)

save(scratch, "0")  # warm-up: lazy imports and first-call costs
start = time.perf_counter()
save(scratch, "0")
print(f"ready {time.perf_counter() - start:.6f}", flush=True)
for command in sys.stdin:
    pid = os.fork()
    if pid == 0:
        try:
            count = 0
            while True:
                count += 1
                save(target, str(count))
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(3)
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print(f"status {status}", flush=True)
"""

_ROUNDS = 32
_TIMEOUT = 60.0


class _Child:
    """The saving subprocess, spoken to one line at a time (with a timeout, so nothing hangs)."""

    def __init__(self, target: Path, workdir: Path) -> None:
        self.stderr_path = workdir / "child-stderr.txt"
        # One thread per library: forking after a parallel OpenMP region can deadlock the child.
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(
                [str(REPOSITORY), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(target), str(workdir / "scratch")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                cwd=workdir,
                text=True,
            )
        self.saver: int | None = None
        self._lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line.strip())
        self._lines.put("")

    def read(self) -> str:
        try:
            line = self._lines.get(timeout=_TIMEOUT)
        except queue.Empty:
            line = ""
        assert line, f"the saving process stopped answering:\n{self.errors()}"
        return line

    def start_saver(self) -> None:
        """Fork a saver that overwrites the target in a loop until it is killed."""
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        self.saver = int(self.read())

    def kill_saver(self) -> int:
        """SIGKILL the running saver; return its wait status."""
        assert self.saver is not None
        with contextlib.suppress(ProcessLookupError):  # it died by itself: the status says how
            os.kill(self.saver, signal.SIGKILL)
        self.saver = None
        return int(self.read().removeprefix("status "))

    def errors(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def close(self) -> None:
        if self.saver is not None:  # a failed test must not leave a saver writing forever
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.saver, signal.SIGKILL)
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def child(tmp_path: Path) -> Iterator[tuple[_Child, Path]]:
    target = tmp_path / "model"
    running = _Child(target, tmp_path)
    yield running, target
    running.close()


def _assert_absent_or_complete(target: Path) -> None:
    """Nothing is at ``target``, or a bundle that verifies, loads and predicts."""
    if not target.exists():
        return
    model = modelkit.load(target)
    assert modelkit.digest(target) == model.digest
    assert model.predict([0.0] * 10).label in (0, 1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the saving child forks one saver per kill")
def test_save_killed_at_any_moment_leaves_no_bundle_or_a_complete_one(
    child: tuple[_Child, Path],
) -> None:
    process, target = child
    word, duration = process.read().split()
    assert word == "ready", process.errors()
    rng = random.Random(20240611)
    for round_ in range(_ROUNDS):
        process.start_saver()
        # Spread the kills over about two saves: the first save or an overwrite, in any phase.
        delay = float(duration) * 2 * (round_ + rng.random()) / _ROUNDS
        threading.Event().wait(delay)
        status = process.kill_saver()
        assert os.WIFSIGNALED(status), f"the saver failed by itself:\n{process.errors()}"
        assert os.WTERMSIG(status) == signal.SIGKILL

        _assert_absent_or_complete(target)


# --------------------------------------------------------------------------------------------
# Failures inside this process: the previous bundle stays, and save cleans up after itself
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def estimator() -> Any:
    return fit_logistic()


@pytest.fixture
def previous(tmp_path: Path, estimator: Any) -> tuple[Path, str]:
    """An existing bundle, about to be overwritten, and its digest."""
    target = save_bundle(estimator, tmp_path / "iris")
    return target, modelkit.digest(target)


def _assert_unchanged(target: Path, expected_digest: str, estimator: Any) -> None:
    assert modelkit.digest(target) == expected_digest
    assert read_manifest(target)["version"] == "1.0.0"
    assert_predicts_like(modelkit.load(target), estimator)
    assert staging_leftovers(target.parent) == []


def _failing_after(call: Callable[..., Any], error: BaseException) -> Callable[..., Any]:
    """``call``, then ``error``: the failure comes after the function did part of its work."""

    def fail(*args: Any, **kwargs: Any) -> Any:
        call(*args, **kwargs)
        raise error

    return fail


@pytest.mark.parametrize(
    "error",
    [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()],
    ids=["disk-full", "interrupted"],
)
def test_failure_after_the_adapter_wrote_artifacts_keeps_the_previous_bundle(
    previous: tuple[Path, str],
    estimator: Any,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
) -> None:
    target, digest = previous
    adapter_class = type(adapters.get("joblib"))
    monkeypatch.setattr(adapter_class, "save", _failing_after(adapter_class.save, error))

    with pytest.raises(type(error)):
        save_bundle(fit_tree(), target, version="2.0.0", overwrite=True)

    _assert_unchanged(target, digest, estimator)


def test_failure_while_writing_the_manifest_keeps_the_previous_bundle(
    previous: tuple[Path, str], estimator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, digest = previous

    def write_half(root: Path, manifest: modelkit.Manifest) -> None:
        text = manifest.model_dump_json()
        (root / "modelkit.json").write_text(text[: len(text) // 2])
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("modelkit._api.write_manifest", write_half)

    with pytest.raises(OSError, match="Input/output"):
        save_bundle(fit_tree(), target, version="2.0.0", overwrite=True)

    _assert_unchanged(target, digest, estimator)


def test_interrupt_while_syncing_keeps_the_previous_bundle(
    previous: tuple[Path, str], estimator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, digest = previous

    def interrupted(_root: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("modelkit._publish._fsync_tree", interrupted)

    with pytest.raises(KeyboardInterrupt):
        save_bundle(fit_tree(), target, version="2.0.0", overwrite=True)

    _assert_unchanged(target, digest, estimator)


def test_failed_first_save_leaves_no_bundle_and_no_staging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter_class = type(adapters.get("joblib"))
    failure = OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(adapter_class, "save", _failing_after(adapter_class.save, failure))

    with pytest.raises(OSError, match="No space"):
        save_bundle(fit_tree(), tmp_path / "iris")

    assert list(tmp_path.iterdir()) == []


def test_failed_rename_into_place_keeps_the_previous_bundle(
    previous: tuple[Path, str], estimator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, digest = previous
    real_replace = os.replace

    def replace(source: Any, destination: Any) -> None:
        if Path(destination) == target and Path(source).name.endswith(".partial"):
            raise OSError(errno.EIO, "Input/output error")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace)

    with pytest.raises(OSError, match="Input/output"):
        save_bundle(fit_tree(), target, version="2.0.0", overwrite=True)

    monkeypatch.undo()
    _assert_unchanged(target, digest, estimator)


def test_failure_while_writing_a_zip_keeps_the_previous_zip_and_no_partial_archive(
    tmp_path: Path, estimator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = save_bundle(estimator, tmp_path / "iris.zip")
    digest = modelkit.digest(target)
    real_writestr = zipfile.ZipFile.writestr
    calls = []

    def writestr(self: zipfile.ZipFile, *args: Any, **kwargs: Any) -> None:
        calls.append(args[0])
        if len(calls) == 2:  # the first member is written, the second fails
            raise OSError(errno.ENOSPC, "No space left on device")
        real_writestr(self, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", writestr)

    with pytest.raises(OSError, match="No space"):
        save_bundle(fit_tree(), target, version="2.0.0", overwrite=True)

    monkeypatch.undo()
    assert modelkit.digest(target) == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iris.zip"]


def test_save_succeeds_beside_staging_left_by_a_killed_save(
    previous: tuple[Path, str], estimator: Any
) -> None:
    target, _digest = previous
    # What SIGKILL leaves behind: a half-built staging directory and a retired old bundle.
    for leftover in (f".{target.name}.abc123.partial", f".{target.name}.def456.partial.old"):
        (target.parent / leftover / "artifacts").mkdir(parents=True)
        (target.parent / leftover / "artifacts" / "model.joblib").write_bytes(b"half")
    tree = fit_tree()

    save_bundle(tree, target, version="2.0.0", overwrite=True)

    assert modelkit.load(target).version == "2.0.0"
    assert_predicts_like(modelkit.load(target), tree)


@pytest.mark.parametrize("name", ["churn", "churn.zip"])
def test_save_creates_missing_parent_folders(tmp_path: Path, name: str) -> None:
    target = save_bundle(fit_logistic(), tmp_path / "models" / "v1" / name)
    assert_predicts_like(modelkit.load(target), fit_logistic())


def test_save_under_a_file_is_a_bundle_error_naming_the_folder(tmp_path: Path) -> None:
    (tmp_path / "models").write_text("not a folder")
    with pytest.raises(modelkit.BundleError, match="Cannot create the directory") as info:
        save_bundle(fit_logistic(), tmp_path / "models" / "churn")
    assert info.value.path == str(tmp_path / "models" / "churn")
