"""The ``modelkit`` command, through ``main()`` and through real processes, on real bundles.

Most tests call :func:`modelkit.cli.main` in-process (as click's ``CliRunner`` does); the exit
codes and usage lines, ``serve`` and the million-row ``predict`` run the real entry points
(``python -m modelkit`` and the ``modelkit`` script) in a subprocess. What click gives the command
(near misses, ranges, usage lines) is tested through ``CliRunner`` in ``tests/cli/``.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest

import modelkit
from modelkit.cli import main

from .bundle_fixtures import (
    ARTIFACT,
    edit_manifest,
    flip_byte,
    malicious_pickle,
    replace_artifact,
    set_package_version,
)
from .limited import run_limited
from .serving_fixtures import (
    RUNTIME_INTERNALS,
    post_chunked,
    post_declared,
    save_all,
    save_zeros,
)

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
COMMANDS = ["inspect", "verify", "lock", "schema", "predict", "convert", "pack", "bench", "serve"]


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iris_frame() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True, as_frame=True)
    X.columns = COLUMNS
    return X, y.map(dict(enumerate(["setosa", "versicolor", "virginica"])))


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, iris_frame: tuple[Any, Any]) -> Path:
    """A directory of real bundles: iris (joblib and ONNX), a regressor and a mixed-type model."""
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LogisticRegression, Ridge

    root = tmp_path_factory.mktemp("cli-bundles")
    X, y = iris_frame
    classifier = LogisticRegression(max_iter=1000).fit(X, y)
    modelkit.save(classifier, root / "iris", name="iris", version="1.0.0", sample_input=X)
    modelkit.save(
        classifier, root / "iris-onnx", name="iris", version="1.1.0", format="onnx", sample_input=X
    )
    Xd, yd = load_diabetes(return_X_y=True, as_frame=True)
    modelkit.save(
        Ridge().fit(Xd, yd), root / "diabetes", name="diabetes", version="2.0.0", sample_input=Xd
    )
    _save_mixed(root / "churn")
    return root


def _save_mixed(path: Path) -> None:
    """A pipeline over integer, nullable number, boolean and string columns."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    rows = 200
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(0, 60, rows),
            "charges": np.where(rng.random(rows) < 0.1, np.nan, rng.uniform(20, 120, rows)),
            "active": rng.random(rows) < 0.5,
            "plan": rng.choice(["basic", "pro"], rows),
        }
    )
    features = ColumnTransformer(
        [
            ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ("numbers", SimpleImputer(), ["tenure", "charges"]),
            ("flag", "passthrough", ["active"]),
        ]
    )
    pipeline = make_pipeline(features, LogisticRegression(max_iter=1000))
    pipeline.fit(frame, (frame["tenure"] > 30).astype(int))
    modelkit.save(pipeline, path, name="churn", version="1.0.0", sample_input=frame)


@pytest.fixture
def iris(bundles: Path, tmp_path: Path) -> Path:
    """A private copy of the iris bundle, to tamper with."""
    import shutil

    return Path(shutil.copytree(bundles / "iris", tmp_path / "iris"))


def run(
    *args: Any, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m modelkit ARGS`` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "modelkit", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".partial" in p.name)


# -- the entry points, usage and errors ----------------------------------------------------------


def test_python_dash_m_help_lists_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: modelkit")
    for command in COMMANDS:
        assert command in result.stdout


def test_console_script_is_installed_and_runs() -> None:
    script = Path(sys.executable).parent / "modelkit"
    assert script.exists(), "reinstall modelkit: pip install -e ."
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"modelkit {modelkit.__version__}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: modelkit {command}")


def test_unknown_command_exits_2_with_usage_and_the_near_miss() -> None:
    result = run("verfy", "bundle")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0].startswith("usage: modelkit")
    assert "unknown command 'verfy'. Did you mean 'verify'?" in result.stderr
    assert result.stdout == ""


def test_no_command_exits_2() -> None:
    result = run()
    assert result.returncode == 2
    assert "usage: modelkit" in result.stderr


def test_missing_required_argument_exits_2_with_the_command_usage(bundles: Path) -> None:
    result = run("predict", bundles / "iris", "--output", "out.csv")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: modelkit predict")
    assert "--input" in result.stderr.splitlines()[-1]


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "b", "-i", "a.csv", "-o", "b.csv", "--chunk-size", "0"],
        ["serve", "b", "--port", "70000"],
        ["schema", "b", "--part", "both"],
        ["inspect", "b", "--unknown-flag"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "usage: modelkit" in err
    assert "error:" in err


def test_missing_bundle_is_one_line_on_stderr_and_exit_1(tmp_path: Path) -> None:
    result = run("inspect", tmp_path / "nowhere")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"modelkit: error: No bundle at '{tmp_path / 'nowhere'}': the path does not exist."
    ]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(where: str, tmp_path: Path) -> None:
    args = ["inspect", tmp_path / "nowhere"]
    args = ["--debug", *args] if where == "before" else [*args, "--debug"]
    result = run(*args)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith("the path does not exist.")


# -- inspect ------------------------------------------------------------------------------------


def test_inspect_describes_identity_signature_artifacts_and_environment(
    bundles: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(bundles / "iris")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("iris 1.0.0\n")
    assert "joblib" in out
    assert "classification" in out
    assert modelkit.digest(bundles / "iris") in out
    assert "sepal_length" in out
    assert "artifacts/model.joblib" in out
    assert re.search(r"scikit-learn\s+\S+\s+\S+\s+ok", out)
    assert "Environment: matches this environment" in out


def test_inspect_json_is_machine_readable(
    bundles: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(bundles / "iris-onnx"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["name"] == "iris"
    assert report["format"] == "onnx"
    assert report["digest"] == modelkit.digest(bundles / "iris-onnx")
    assert [c["name"] for c in report["signature"]["inputs"]["columns"]] == COLUMNS
    artifact, cases = report["artifacts"]
    assert artifact["path"] == "artifacts/model.onnx"
    assert cases["path"] == "artifacts/reference-cases.json"
    assert report["has_reference_cases"] is True
    assert artifact["size"] == (bundles / "iris-onnx" / "artifacts" / "model.onnx").stat().st_size
    assert report["environment"]["python"]["status"] == "not compared"  # ONNX is Python-free
    assert {p["status"] for p in report["environment"]["packages"]} <= {"ok"}
    assert report["environment"]["verdict"] == "matches this environment"


def test_inspect_compares_recorded_and_installed_versions(
    iris: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from importlib.metadata import version

    major, minor, *_ = (int(part) for part in version("numpy").split(".")[:2])
    set_package_version(iris, "numpy", f"{major}.{minor + 1}.0")
    set_package_version(iris, "scikit-learn", "0.1.0")
    set_package_version(iris, "not-a-real-package", "1.0")
    assert main(["inspect", str(iris), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["environment"]
    statuses = {p["name"]: (p["status"], p["installed"]) for p in report["packages"]}
    assert statuses["numpy"] == ("differs", version("numpy"))
    assert statuses["scikit-learn"] == ("incompatible", version("scikit-learn"))
    assert statuses["not-a-real-package"] == ("missing", None)
    assert report["verdict"].startswith("load refuses it")


def test_inspect_never_unpickles(iris: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    replace_artifact(iris, malicious_pickle(marker), rehash=True)
    assert main(["inspect", str(iris)]) == 0
    assert main(["schema", str(iris)]) == 0
    assert main(["verify", str(iris)]) == 0
    assert not marker.exists()


def test_inspect_refuses_a_bare_pickle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bare = tmp_path / "model.pkl"
    bare.write_bytes(malicious_pickle(tmp_path / "pwned"))
    assert main(["inspect", str(bare)]) == 1
    assert "Refusing to load" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()


# -- verify -------------------------------------------------------------------------------------


def test_verify_prints_ok_and_the_digest_of_each_bundle(
    bundles: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = [str(bundles / "iris"), str(bundles / "diabetes")]
    assert main(["verify", *paths]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"OK {path} {modelkit.digest(path)}" for path in paths
    ]


def test_verify_names_the_tampered_file_with_expected_and_actual_hash(
    iris: Path, bundles: Path
) -> None:
    artifact = iris / ARTIFACT
    expected = modelkit._publish.file_sha256(artifact)
    artifact.write_bytes(flip_byte(artifact.read_bytes()))  # same size, other bytes
    actual = modelkit._publish.file_sha256(artifact)
    result = run("verify", iris, bundles / "diabetes")
    assert result.returncode == 1
    failed, ok = result.stdout.splitlines()
    assert failed.startswith(f"FAILED {iris}: 'artifacts/model.joblib'")
    assert f"expected {expected}" in failed
    assert f"got {actual}" in failed
    assert ok.startswith(f"OK {bundles / 'diabetes'} sha256:")
    assert result.stderr == "modelkit: error: 1 of 2 bundles failed verification\n"


def test_verify_reports_a_truncated_file_by_size(
    iris: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    artifact = iris / ARTIFACT
    size = artifact.stat().st_size
    artifact.write_bytes(artifact.read_bytes()[:-10])
    assert main(["verify", str(iris)]) == 1
    out = capsys.readouterr().out
    assert f"is {size - 10} bytes; the manifest says {size}" in out


def test_verify_refuses_an_unlisted_file(iris: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (iris / "artifacts" / "extra.bin").write_bytes(b"x")
    assert main(["verify", str(iris)]) == 1
    assert "artifacts/extra.bin" in capsys.readouterr().out


def test_verify_without_bundles_or_lock_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["verify"]) == 2
    assert "usage: modelkit verify" in capsys.readouterr().err


def _lock(directory: Path, models: dict[str, Path], name: str = "models.lock") -> Path:
    lock = directory / name
    assert main(["lock", *map(str, models.values()), "--output", str(lock)]) == 0
    return lock


def test_verify_lock_checks_every_bundle_it_names_relative_to_the_lock(
    bundles: Path, tmp_path: Path
) -> None:
    import shutil

    app = tmp_path / "app"
    for name in ("iris", "diabetes"):
        shutil.copytree(bundles / name, app / "bundles" / name)
    lock = _lock(app, {"iris": app / "bundles" / "iris", "diabetes": app / "bundles" / "diabetes"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run("verify", "--lock", lock, cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"OK bundles/iris {modelkit.digest(app / 'bundles' / 'iris')}",
        f"OK bundles/diabetes {modelkit.digest(app / 'bundles' / 'diabetes')}",
    ]


def test_verify_lock_fails_when_a_bundle_is_not_the_locked_one(
    iris: Path, bundles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = _lock(tmp_path, {"iris": iris})
    capsys.readouterr()
    locked = modelkit.digest(iris)
    set_package_version(iris, "numpy", "0.0.1")  # a self-consistent bundle, but another one
    assert main(["verify", "--lock", str(lock)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED iris: its digest is sha256:")
    assert f"pins {locked} for models.iris" in out


def test_verify_lock_reports_a_tampered_artifact(iris: Path, tmp_path: Path) -> None:
    lock = _lock(tmp_path, {"iris": iris})
    (iris / ARTIFACT).write_bytes(flip_byte((iris / ARTIFACT).read_bytes()))
    result = run("verify", "--lock", lock)
    assert result.returncode == 1
    assert "FAILED iris: 'artifacts/model.joblib'" in result.stdout


def test_verify_paths_against_a_lock(bundles: Path, tmp_path: Path) -> None:
    lock = _lock(tmp_path, {"iris": bundles / "iris"})
    ok = run("verify", "--lock", lock, bundles / "iris")
    assert ok.returncode == 0
    # Same name, other bundle: found by name, refused by digest.
    other = run("verify", "--lock", lock, bundles / "iris-onnx")
    assert other.returncode == 1
    assert "pins" in other.stdout
    unknown = run("verify", "--lock", lock, bundles / "diabetes")
    assert unknown.returncode == 1
    assert "no entry of the lock file" in unknown.stdout


def test_verify_with_a_missing_lock_file_is_one_line(tmp_path: Path) -> None:
    result = run("verify", "--lock", tmp_path / "missing.lock")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "does not exist" in result.stderr


def _corrupt_deflate(archive: Path, member: str) -> None:
    """Overwrite the start of a deflated member's data: zlib fails on it (block type 3)."""
    import struct
    import zipfile

    with zipfile.ZipFile(archive) as opened:
        offset = opened.getinfo(member).header_offset
    data = bytearray(archive.read_bytes())
    name_length, extra_length = struct.unpack_from("<HH", data, offset + 26)
    start = offset + 30 + name_length + extra_length
    data[start : start + 16] = b"\xff" * 16
    archive.write_bytes(bytes(data))


def test_verify_reports_every_path_when_some_fail_in_unusual_ways(
    bundles: Path, iris: Path, tmp_path: Path
) -> None:
    import shutil

    corrupt = Path(shutil.make_archive(str(tmp_path / "corrupt"), "zip", bundles / "iris"))
    _corrupt_deflate(corrupt, ARTIFACT)
    edit_manifest(iris, lambda document: document["metadata"].update(note="\ud800"))
    good = bundles / "diabetes"

    result = run("verify", corrupt, iris, good)

    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"FAILED {corrupt}: Cannot read 'artifacts/model.joblib'")
    assert "invalid block type" in lines[0]
    assert lines[1].startswith(f"FAILED {iris}: The manifest of")
    assert "surrogate" in lines[1]
    assert lines[2] == f"OK {good} {modelkit.digest(good)}"
    assert result.stderr == "modelkit: error: 2 of 3 bundles failed verification\n"


def test_verify_goes_on_after_an_unexpected_error(
    bundles: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Whatever goes wrong with one bundle, the others are still checked and reported.
    from modelkit import _bundle

    real = _bundle.open_bundle

    def fails_for_iris(path: Any, **options: Any) -> Any:
        if Path(path).name == "iris":
            raise RuntimeError("something no one planned for")
        return real(path, **options)

    monkeypatch.setattr(_bundle, "open_bundle", fails_for_iris)

    assert main(["verify", str(bundles / "iris"), str(bundles / "diabetes")]) == 1
    failed, ok = capsys.readouterr().out.splitlines()
    assert failed == (
        f"FAILED {bundles / 'iris'}: unexpected RuntimeError: something no one planned for "
        "(run with --debug for the traceback)"
    )
    assert ok.startswith(f"OK {bundles / 'diabetes'} sha256:")


def test_verify_max_size_fails_a_larger_bundle_before_reading_it(
    bundles: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    iris = bundles / "iris"

    assert main(["verify", "--max-size", "1KiB", str(iris)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"FAILED {iris}: '{iris}' declares ")
    assert "the size limit is 1024 bytes" in out
    assert main(["verify", "--max-size", "1GiB", str(iris)]) == 0


def test_verify_max_size_that_is_not_a_size_is_a_usage_error(
    bundles: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "--max-size", "lots", str(bundles / "iris")]) == 2
    assert "--max-size" in capsys.readouterr().err


# -- lock ---------------------------------------------------------------------------------------


def test_lock_of_paths_round_trips_through_the_registry(bundles: Path, tmp_path: Path) -> None:
    lock = _lock(tmp_path, {"iris": bundles / "iris", "diabetes": bundles / "diabetes"})
    text = lock.read_text(encoding="utf-8")
    assert "[models.iris]" in text
    assert "[models.diabetes]" in text
    config = tmp_path / "models.toml"
    config.write_text(
        f'[models]\niris = "{(bundles / "iris").as_posix()}"\n'
        f'diabetes = "{(bundles / "diabetes").as_posix()}"\n',
        encoding="utf-8",
    )
    with modelkit.Registry.from_config(config, lock=lock) as registry:
        assert registry.names() == ["iris", "diabetes"]
        assert registry.lock()["models"]["iris"]["sha256"] == modelkit.digest(bundles / "iris")


def test_lock_of_a_config_pins_canary_and_shadow_and_round_trips(
    bundles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    app = tmp_path / "app"
    for name in ("iris", "iris-onnx"):
        shutil.copytree(bundles / name, app / "bundles" / name)
    config = app / "models.toml"
    config.write_text(
        '[models.iris]\npath = "bundles/iris"\n\n'
        '[models.iris.canary]\npath = "bundles/iris-onnx"\nweight = 0.1\n\n'
        '[models.iris.shadow]\npath = "bundles/iris-onnx"\n',
        encoding="utf-8",
    )
    assert main(["lock", "--config", str(config)]) == 0  # to stdout
    printed = capsys.readouterr().out
    assert main(["lock", "--config", str(config), "--output", str(app / "models.lock")]) == 0
    written = (app / "models.lock").read_text(encoding="utf-8")
    assert printed == written
    assert '[models.iris.canary]\npath = "bundles/iris-onnx"' in written
    assert "[models.iris.shadow]" in written
    with modelkit.Registry.from_config(config, lock=app / "models.lock") as registry:
        assert registry.lock()["models"]["iris"]["canary"]["sha256"] == modelkit.digest(
            app / "bundles" / "iris-onnx"
        )
    assert run("verify", "--lock", app / "models.lock", cwd=tmp_path).returncode == 0


def test_lock_refuses_two_bundles_with_one_name(
    bundles: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lock", str(bundles / "iris"), str(bundles / "iris-onnx")]) == 1
    err = capsys.readouterr().err
    assert "are both named 'iris'" in err
    assert err.count("\n") == 1


def test_lock_refuses_a_tampered_bundle(iris: Path, tmp_path: Path) -> None:
    (iris / ARTIFACT).write_bytes(flip_byte((iris / ARTIFACT).read_bytes()))
    result = run("lock", iris, "--output", tmp_path / "models.lock")
    assert result.returncode == 1
    assert not (tmp_path / "models.lock").exists()


def test_lock_of_a_config_checks_the_config_pins(bundles: Path, tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(
        f'[models.iris]\npath = "{(bundles / "iris").as_posix()}"\nsha256 = "sha256:{"0" * 64}"\n',
        encoding="utf-8",
    )
    result = run("lock", "--config", config)
    assert result.returncode == 1
    assert "models.iris" in result.stderr
    assert "the config pins" in result.stderr


@pytest.mark.parametrize("argv", [["lock"], ["lock", "b", "--config", "models.toml"]])
def test_lock_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage: modelkit lock" in capsys.readouterr().err


# -- schema -------------------------------------------------------------------------------------


def test_schema_prints_the_input_and_output_schemas(
    bundles: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema", str(bundles / "iris")]) == 0
    document = json.loads(capsys.readouterr().out)
    assert list(document["input"]["properties"]) == COLUMNS
    assert document["input"]["additionalProperties"] is False
    assert set(document["output"]["properties"]) == {"label", "probabilities"}


def test_schema_writes_one_part_to_a_file(bundles: Path, tmp_path: Path) -> None:
    target = tmp_path / "input.schema.json"
    assert main(["schema", str(bundles / "churn"), "--part", "input", "-o", str(target)]) == 0
    schema = json.loads(target.read_text(encoding="utf-8"))
    assert set(schema["properties"]) == {"tenure", "charges", "active", "plan"}
    # The imputer takes a missing tenure, so the column is nullable.
    tenure = schema["properties"]["tenure"]
    assert {part["type"] for part in tenure["anyOf"]} == {"integer", "null"}


# -- predict ------------------------------------------------------------------------------------


def _iris_input(path: Path, frame: Any) -> Path:
    data = frame.assign(id=[f"row-{i}" for i in range(len(frame))])
    suffix = path.suffix
    if suffix == ".csv":
        data.to_csv(path, index=False)
    elif suffix == ".parquet":
        data.to_parquet(path)
    else:
        data.to_json(path, orient="records", lines=True)
    return path


def _read_any(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".csv":
        return read_csv(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_table(path).to_pylist())
    return read_jsonl(path)


@pytest.mark.parametrize("source", ["in.jsonl", "in.csv", "in.parquet"])
@pytest.mark.parametrize("target", ["out.jsonl", "out.csv", "out.parquet"])
def test_predict_reads_and_writes_every_format(
    source: str,
    target: str,
    *,
    bundles: Path,
    tmp_path: Path,
    iris_frame: tuple[Any, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    X, _ = iris_frame
    inputs = _iris_input(tmp_path / source, X)
    output = tmp_path / target
    assert main(["predict", str(bundles / "iris"), "-i", str(inputs), "-o", str(output)]) == 0
    assert capsys.readouterr().err.startswith(f"Scored 150 rows of {inputs}")
    rows = _read_any(output)
    assert len(rows) == 150
    assert list(rows[0]) == [
        *COLUMNS,
        "id",
        "label",
        "probability_setosa",
        "probability_versicolor",
        "probability_virginica",
    ]
    expected = modelkit.load(bundles / "iris").predict_batch(X)
    assert [row["label"] for row in rows] == expected["label"].tolist()
    assert [row["id"] for row in rows] == [f"row-{i}" for i in range(150)]
    first = expected["probabilities"][0]
    assert float(rows[0]["probability_virginica"]) == pytest.approx(first[2])
    assert float(rows[0]["sepal_length"]) == X.iloc[0, 0]


def test_predict_with_an_onnx_bundle_and_small_chunks(
    bundles: Path, tmp_path: Path, iris_frame: tuple[Any, Any]
) -> None:
    inputs = _iris_input(tmp_path / "in.csv", iris_frame[0])
    whole, chunked = tmp_path / "whole.csv", tmp_path / "chunked.csv"
    onnx = str(bundles / "iris-onnx")
    assert main(["predict", onnx, "-i", str(inputs), "-o", str(whole), "-q"]) == 0
    assert (
        main(["predict", onnx, "-i", str(inputs), "-o", str(chunked), "--chunk-size", "7", "-q"])
        == 0
    )
    assert whole.read_bytes() == chunked.read_bytes()
    assert len(read_csv(whole)) == 150


def test_predict_a_regressor_writes_value(bundles: Path, tmp_path: Path) -> None:
    from sklearn.datasets import load_diabetes

    X, _ = load_diabetes(return_X_y=True, as_frame=True)
    inputs = tmp_path / "in.jsonl"
    X.head(20).to_json(inputs, orient="records", lines=True)
    output = tmp_path / "out.jsonl"
    assert main(["predict", str(bundles / "diabetes"), "-i", str(inputs), "-o", str(output)]) == 0
    rows = read_jsonl(output)
    expected = modelkit.load(bundles / "diabetes").predict_batch(X.head(20))["value"]
    assert [row["value"] for row in rows] == pytest.approx(expected.tolist())


def test_predict_reads_csv_cells_as_the_signature_types(bundles: Path, tmp_path: Path) -> None:
    inputs = write_csv(
        tmp_path / "in.csv",
        ["plan", "active", "charges", "tenure", "customer"],
        [
            ["pro", "true", "70.5", "12", "a"],
            ["basic", "False", "", "40", "b"],  # an empty cell is missing in a nullable column
            ["pro", "1", " 99 ", "3.0", "c"],  # an integral float is an integer
        ],
    )
    output = tmp_path / "out.jsonl"
    assert main(["predict", str(bundles / "churn"), "-i", str(inputs), "-o", str(output)]) == 0
    rows = read_jsonl(output)
    assert rows[0]["tenure"] == 12
    assert rows[0]["active"] is True
    assert rows[1]["charges"] is None
    assert rows[2]["tenure"] == 3
    assert rows[2]["charges"] == 99.0
    assert [row["customer"] for row in rows] == ["a", "b", "c"]
    model = modelkit.load(bundles / "churn")
    records = [
        {"tenure": 12, "charges": 70.5, "active": True, "plan": "pro"},
        {"tenure": 40, "charges": None, "active": False, "plan": "basic"},
        {"tenure": 3, "charges": 99.0, "active": True, "plan": "pro"},
    ]
    assert [row["label"] for row in rows] == model.predict_batch(records)["label"].tolist()


def test_a_bad_row_fails_the_run_with_its_line_and_field_and_leaves_no_output(
    bundles: Path, tmp_path: Path
) -> None:
    rows = [["5.1", "3.5", "1.4", "0.2"]] * 3 + [["5.1", "wide", "1.4", "0.2"]]
    inputs = write_csv(tmp_path / "in.csv", COLUMNS, rows)
    output = tmp_path / "out.csv"
    result = run("predict", bundles / "iris", "--input", inputs, "--output", output)
    assert result.returncode == 1
    # The header is line 1: the fourth data row is line 5.
    assert result.stderr.splitlines() == [
        (
            f"modelkit: error: {inputs}: line 5: field 'sepal_width' expected a number, got "
            "'wide'. Nothing was written; pass --rejects FILE to set bad rows aside and score "
            "the rest."
        )
    ]
    assert not output.exists()
    assert leftovers(tmp_path) == []


def test_a_value_the_signature_refuses_is_reported_by_line(
    bundles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = tmp_path / "in.jsonl"
    good = {"tenure": 1, "charges": 2.0, "active": True, "plan": "pro"}
    lines = [good, good, {**good, "tenure": 1.5}]
    inputs.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"
    assert main(["predict", str(bundles / "churn"), "-i", str(inputs), "-o", str(output)]) == 1
    err = capsys.readouterr().err
    assert f"{inputs}: line 3: field 'tenure' expected an integer, got float 1.5" in err
    assert not output.exists()


def test_rejects_collects_bad_rows_and_the_rest_is_scored(
    bundles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = dict(zip(COLUMNS, [5.1, 3.5, 1.4, 0.2], strict=True))
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({**good, "petal_width": "thin"}),
        "",
        json.dumps([1, 2, 3, 4]),
        json.dumps({k: v for k, v in good.items() if k != "petal_length"}),
        json.dumps({**good, "sepal_length": float("nan")}),
        json.dumps({**good, "note": "kept"}),
    ]
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output, rejects = tmp_path / "out.jsonl", tmp_path / "rejects.jsonl"
    argv = ["predict", str(bundles / "iris"), "-i", str(inputs), "-o", str(output)]
    assert main([*argv, "--rejects", str(rejects)]) == 0
    scored = read_jsonl(output)
    assert len(scored) == 2
    assert scored[1]["note"] == "kept"
    bad = read_jsonl(rejects)
    assert [(r["line"], r["field"]) for r in bad] == [
        (2, None),
        (3, "petal_width"),
        (5, None),
        (6, "petal_length"),
        (7, "sepal_length"),
    ]
    assert bad[0]["error"].startswith("not valid JSON")
    assert bad[0]["content"] == "{not json"
    assert bad[1]["error"] == "field 'petal_width' expected a number, got str 'thin'"
    assert bad[2]["error"] == "expected a JSON object, got an array"
    assert bad[3]["error"] == "field 'petal_length' is missing"
    assert "NaN" in bad[4]["error"]
    assert capsys.readouterr().err.endswith(f"; 5 rejected into {rejects}.\n")


def test_rejects_of_a_csv_keep_the_row_as_written(bundles: Path, tmp_path: Path) -> None:
    inputs = write_csv(
        tmp_path / "in.csv",
        [*COLUMNS, "id"],
        [["5.1", "3.5", "1.4", "0.2", "a"], ["5.1", "", "1.4", "0.2", "b,c"], ["1", "2"]],
    )
    output, rejects = tmp_path / "out.csv", tmp_path / "rejects.jsonl"
    result = run("predict", bundles / "iris", "-i", inputs, "-o", output, "--rejects", rejects)
    assert result.returncode == 0, result.stderr
    assert [row["id"] for row in read_csv(output)] == ["a"]
    assert read_jsonl(rejects) == [
        {
            "line": 3,
            "field": "sepal_width",
            "error": "field 'sepal_width' is empty, and this column takes no missing values",
            "content": '5.1,,1.4,0.2,"b,c"',
        },
        {"line": 4, "field": None, "error": "expected 5 fields, got 2", "content": "1,2"},
    ]


def test_predictions_only(bundles: Path, tmp_path: Path, iris_frame: tuple[Any, Any]) -> None:
    inputs = _iris_input(tmp_path / "in.parquet", iris_frame[0])
    output = tmp_path / "out.csv"
    argv = ["predict", str(bundles / "iris"), "-i", str(inputs), "-o", str(output)]
    assert main([*argv, "--predictions-only", "-q"]) == 0
    rows = read_csv(output)
    assert list(rows[0]) == [
        "label",
        "probability_setosa",
        "probability_versicolor",
        "probability_virginica",
    ]
    assert len(rows) == 150


def test_a_column_named_like_a_prediction_is_refused(
    bundles: Path, tmp_path: Path, iris_frame: tuple[Any, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = iris_frame
    inputs = tmp_path / "in.csv"
    X.assign(label=y).to_csv(inputs, index=False)
    output = tmp_path / "out.csv"
    argv = ["predict", str(bundles / "iris"), "-i", str(inputs), "-o", str(output)]
    assert main(argv) == 1
    assert "The input has a column 'label'" in capsys.readouterr().err
    assert not output.exists()
    assert leftovers(tmp_path) == []
    assert main([*argv, "--predictions-only", "-q"]) == 0


def test_a_missing_column_fails_before_scoring(
    bundles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = write_csv(tmp_path / "in.csv", COLUMNS[:3], [["1", "2", "3"]])
    argv = ["predict", str(bundles / "iris"), "-i", str(inputs), "-o", str(tmp_path / "o.csv")]
    assert main(argv) == 1
    assert "line 1: the header has no column 'petal_width'" in capsys.readouterr().err


def test_formats_come_from_flags_when_extensions_do_not_tell(
    bundles: Path, tmp_path: Path, iris_frame: tuple[Any, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = tmp_path / "records.txt"
    iris_frame[0].head(5).to_csv(inputs, index=False)
    output = tmp_path / "scores.dat"
    argv = ["predict", str(bundles / "iris"), "-i", str(inputs), "-o", str(output)]
    assert main(argv) == 2
    assert "cannot tell the format of" in capsys.readouterr().err
    assert main([*argv, "--input-format", "csv", "--output-format", "jsonl", "-q"]) == 0
    assert len(read_jsonl(output)) == 5


def test_predict_refuses_to_overwrite_its_input(bundles: Path, tmp_path: Path) -> None:
    inputs = write_csv(tmp_path / "in.csv", COLUMNS, [["1", "2", "3", "4"]])
    argv = ["predict", str(bundles / "iris"), "-i", str(inputs), "-o", str(inputs)]
    assert main(argv) == 2
    assert inputs.read_text(encoding="utf-8").startswith("sepal_length")


def test_an_input_without_rows_gives_a_header_only_output(bundles: Path, tmp_path: Path) -> None:
    inputs = write_csv(tmp_path / "in.csv", COLUMNS, [])
    output = tmp_path / "out.csv"
    assert main(["predict", str(bundles / "iris"), "-i", str(inputs), "-o", str(output), "-q"]) == 0
    assert output.read_text(encoding="utf-8").splitlines() == [
        ",".join(
            [
                *COLUMNS,
                "label",
                "probability_setosa",
                "probability_versicolor",
                "probability_virginica",
            ]
        )
    ]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal(
    bundles: Path,
    tmp_path: Path,
    iris_frame: tuple[Any, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inputs = _iris_input(tmp_path / "in.csv", iris_frame[0])
    argv = ["predict", str(bundles / "iris"), "-i", str(inputs), "-o", str(tmp_path / "o.csv")]
    assert main(argv) == 0
    assert "\r" not in capsys.readouterr().err  # not a terminal: the summary only
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(argv) == 0, terminal.getvalue()
    shown = terminal.getvalue()
    assert "\r[" in shown
    assert "100%  150 rows" in shown


@pytest.mark.slow
def test_predict_streams_a_million_rows_in_bounded_memory(bundles: Path, tmp_path: Path) -> None:
    """The peak memory of ``predict`` does not grow with the file.

    The peak RSS of a run over 1,000,000 rows may exceed that of a run over 10,000 rows (the same
    imports, model and chunk size) by at most ``BOUND``. The file is about 23 MB on disk; its rows
    as Python records, which scoring the whole file at once would hold (plus the output), need
    over 170 MB.
    """
    bound = 48 * 1024 * 1024
    rows = 1_000_000
    big = tmp_path / "big.csv"
    rng = np.random.default_rng(0)
    with big.open("w", encoding="utf-8") as handle:
        handle.write("id," + ",".join(COLUMNS) + "\n")
        for start in range(0, rows, 100_000):
            block = np.round(rng.uniform(0.1, 8.0, (100_000, 4)), 1).tolist()
            handle.write(
                "".join(f"{start + i},{a},{b},{c},{d}\n" for i, (a, b, c, d) in enumerate(block))
            )
    small = tmp_path / "small.csv"
    with big.open(encoding="utf-8") as source:
        small.write_text("".join(next(source) for _ in range(10_001)), encoding="utf-8")

    small_peak, small_out = _peak_rss(bundles / "iris", small, tmp_path / "small-out.csv")
    big_peak, big_out = _peak_rss(bundles / "iris", big, tmp_path / "big-out.csv")

    with big_out.open(encoding="utf-8") as handle:
        header = next(handle)
        count = sum(1 for _ in handle)
    assert header.startswith("id,sepal_length")
    assert count == rows
    assert small_out.exists()
    assert big_peak - small_peak < bound, (
        f"peak RSS {big_peak / 2**20:.0f} MiB for {rows:,} rows against "
        f"{small_peak / 2**20:.0f} MiB for 10,000 rows"
    )


_PEAK = """
import resource, subprocess, sys
status = subprocess.run([sys.executable, "-m", "modelkit", *sys.argv[1:]]).returncode
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(peak * (1 if sys.platform == "darwin" else 1024))
sys.exit(status)
"""


def _peak_rss(bundle: Path, source: Path, target: Path) -> tuple[int, Path]:
    """Run ``predict`` in a child of a fresh process, whose RUSAGE_CHILDREN is that run alone."""
    result = subprocess.run(
        [sys.executable, "-c", _PEAK, "predict", str(bundle), "-i", str(source), "-o", str(target)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip()), target


# -- convert and pack -----------------------------------------------------------------------------


def test_convert_writes_an_onnx_bundle_and_shows_parity(
    bundles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "iris-onnx"
    argv = ["convert", str(bundles / "iris"), "--to", "onnx", "--output", str(target)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "(onnx): iris 1.0.0" in out
    assert re.search(r"Parity on [\d,]+ rows .*0 label mismatches", out)
    model = modelkit.load(target)
    assert model.format == "onnx"
    assert main(argv) == 1
    assert "pass --force" in capsys.readouterr().err
    assert main([*argv, "--force", "--model-version", "1.0.1"]) == 0
    assert modelkit.load(target).version == "1.0.1"


def test_convert_of_an_onnx_bundle_fails_clearly(
    bundles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["convert", str(bundles / "iris-onnx"), "--output", str(tmp_path / "x")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("modelkit: error: ")
    assert "is a onnx bundle" in err or "joblib" in err
    assert not (tmp_path / "x").exists()


def test_pack_writes_a_zip_with_the_directory_digest(
    bundles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "iris-1.0.0.zip"
    assert main(["pack", str(bundles / "iris"), "--output", str(archive)]) == 0
    digest = modelkit.digest(bundles / "iris")
    assert capsys.readouterr().out.rstrip().endswith(f"digest {digest}")
    assert modelkit.digest(archive) == digest
    assert modelkit.load(archive).predict(dict(zip(COLUMNS, [5.1, 3.5, 1.4, 0.2], strict=True)))
    assert main(["pack", str(bundles / "iris"), "--output", str(archive)]) == 1
    assert "pass --force" in capsys.readouterr().err
    assert main(["pack", str(bundles / "iris"), "--output", str(archive), "--force"]) == 0


def test_pack_refuses_a_tampered_bundle_and_writes_nothing(iris: Path, tmp_path: Path) -> None:
    (iris / ARTIFACT).write_bytes(flip_byte((iris / ARTIFACT).read_bytes()))
    archive = tmp_path / "out" / "iris.zip"
    archive.parent.mkdir()
    result = run("pack", iris, "--output", archive)
    assert result.returncode == 1
    assert "artifacts/model.joblib" in result.stderr
    assert list(archive.parent.iterdir()) == []


def test_pack_wants_a_zip_name(bundles: Path, tmp_path: Path) -> None:
    assert main(["pack", str(bundles / "iris"), "--output", str(tmp_path / "iris.tar")]) == 2


# -- bench ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bundle", "raw"), [("iris", "scikit-learn"), ("iris-onnx", "onnxruntime")]
)
def test_bench_prints_latency_and_throughput_next_to_the_raw_runtime(
    bundle: str, raw: str, bundles: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", str(bundles / bundle), "--quick", "--records", "30", "--batch-size", "50"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(rf"modelkit\s+{raw}\s+modelkit/raw", out)
    for label in ("p50", "p90", "p99", "throughput", "batch of 50", "median"):
        assert label in out


def test_bench_a_regressor(bundles: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", str(bundles / "diabetes"), "--quick", "--records", "20", "--batch-size", "10"]
    assert main(argv) == 0
    assert "diabetes 2.0.0 (joblib, regression)" in capsys.readouterr().out


# -- serve ----------------------------------------------------------------------------------------


class _Server:
    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.port = port

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            payload = None if body is None else json.dumps(body)
            connection.request(method, path, body=payload)
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            connection.close()


def _start_serve(log: IO[str], started: list[subprocess.Popen[str]], *args: Any) -> _Server:
    """``modelkit serve ARGS --port 0``, its stderr to ``log``; returns once it listens."""
    process = subprocess.Popen(
        [sys.executable, "-m", "modelkit", "serve", *map(str, args), "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
    )
    started.append(process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        log.seek(0)
        match = re.search(r"Serving on http://127\.0\.0\.1:(\d+)", log.read())
        if match:
            return _Server(process, int(match.group(1)))
        if process.poll() is not None:
            log.seek(0)
            pytest.fail(f"modelkit serve exited with {process.returncode}: {log.read()}")
        time.sleep(0.05)
    pytest.fail("modelkit serve did not start")


def _stop_serve(started: list[subprocess.Popen[str]], logs: list[IO[str]]) -> None:
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    for log in logs:
        log.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Start ``modelkit serve`` on a free port; stop it with SIGTERM afterwards."""
    started: list[subprocess.Popen[str]] = []
    logs: list[IO[str]] = []

    def start(*args: Any) -> _Server:
        log = (tmp_path / f"serve-{len(started)}.log").open("w+", encoding="utf-8")
        logs.append(log)
        return _start_serve(log, started, *args)

    yield start
    _stop_serve(started, logs)


def _wait_ready(server: _Server) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, _ = server.request("GET", "/readyz")
        if status == 200:
            return
        assert status == 503
        time.sleep(0.05)
    pytest.fail("the models never became ready")


@pytest.mark.integration
def test_serve_answers_health_readiness_and_predictions_then_stops_cleanly(
    bundles: Path, serve: Any
) -> None:
    server = serve(bundles / "iris")
    assert server.request("GET", "/healthz") == (200, {"status": "ok"})
    _wait_ready(server)
    assert server.request("GET", "/readyz") == (200, {"status": "ready", "models": ["iris"]})
    assert server.request("GET", "/metrics")[0] == 404  # only with --metrics
    status, listing = server.request("GET", "/models")
    assert status == 200
    assert listing["models"][0]["digest"] == modelkit.digest(bundles / "iris")
    record = dict(zip(COLUMNS, [6.7, 3.0, 5.2, 2.3], strict=True))
    assert server.request("POST", "/models/iris/predict", record)[1]["label"] == "virginica"
    status, batch = server.request("POST", "/models/iris/predict", {"instances": [record] * 3})
    assert status == 200
    assert len(batch["predictions"]) == 3
    status, problem = server.request("POST", "/models/iris/predict", {**record, "petal_width": "x"})
    assert status == 422
    assert problem["error"]["details"][0]["field"] == "petal_width"
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0


@pytest.mark.integration
def test_serve_answers_each_model_s_report_page_unless_told_not_to(
    bundles: Path, serve: Any
) -> None:
    server = serve(bundles / "iris")
    _wait_ready(server)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request("GET", "/models/iris/report")
        response = connection.getresponse()
        page = response.read().decode()
    finally:
        connection.close()
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/html; charset=utf-8"
    assert "default-src 'none'" in str(response.getheader("Content-Security-Policy"))
    assert page.count("<svg") >= 4  # one chart per feature, at least
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request("HEAD", "/models/iris/report")
        head = connection.getresponse()
        assert (head.status, head.read()) == (200, b"")
        assert head.getheader("Content-Type") == "text/html; charset=utf-8"
    finally:
        connection.close()
    assert server.request("GET", "/openapi.json")[1]["paths"]["/models/iris/report"]
    quiet = serve(bundles / "iris", "--no-report")
    _wait_ready(quiet)
    status, problem = quiet.request("GET", "/models/iris/report")
    assert status == 404
    assert problem["error"]["type"] == "not_found"
    assert "/models/iris/report" not in quiet.request("GET", "/openapi.json")[1]["paths"]


@pytest.mark.integration
def test_serve_metrics_are_scraped_in_prometheus_format(bundles: Path, serve: Any) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    server = serve(bundles / "iris", "--metrics")
    _wait_ready(server)
    record = dict(zip(COLUMNS, [6.7, 3.0, 5.2, 2.3], strict=True))
    for _ in range(3):
        assert server.request("POST", "/models/iris/predict", record)[0] == 200
    assert server.request("POST", "/models/iris/predict", {**record, "petal_width": "x"})[0] == 422
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        scrape = response.read().decode()
        assert (response.status, response.getheader("Content-Type")) == (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        connection.request("POST", "/metrics", body=b"")
        refused = connection.getresponse()
        assert (refused.status, refused.getheader("Allow")) == (405, "GET, HEAD, OPTIONS")
        refused.read()
    finally:
        connection.close()
    counts = {
        sample.labels["error_type"]: sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
        if sample.name == "modelkit_prediction_duration_seconds_count"
        and sample.labels["modelkit_model_name"] == "iris"
    }
    assert counts == {"": 3, "modelkit.errors.InvalidInputError": 1}
    assert "modelkit_model_load_duration_seconds_count" in scrape


@pytest.mark.parametrize("prefix", ["/metrics", "/metrics/"])
def test_serve_metrics_refuse_the_prefix_they_would_hide(
    bundles: Path, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", str(bundles / "iris"), "--metrics", "--url-prefix", prefix])
    assert code == 2
    assert "--url-prefix /metrics would hide" in capsys.readouterr().err


@pytest.mark.integration
def test_serve_a_registry_config_with_its_lock(bundles: Path, tmp_path: Path, serve: Any) -> None:
    config = tmp_path / "models.toml"
    config.write_text(
        f'[models]\niris = "{(bundles / "iris-onnx").as_posix()}"\n'
        f'diabetes = "{(bundles / "diabetes").as_posix()}"\n',
        encoding="utf-8",
    )
    lock = tmp_path / "models.lock"
    assert main(["lock", "--config", str(config), "--output", str(lock)]) == 0
    server = serve(config, "--lock", lock, "--url-prefix", "/v1")
    _wait_ready(server)
    status, listing = server.request("GET", "/v1")
    assert status == 200
    assert [m["name"] for m in listing["models"]] == ["iris", "diabetes"]
    status, description = server.request("GET", "/v1/diabetes")
    assert status == 200
    assert "bmi" in description["input_schema"]["properties"]
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0


@pytest.mark.integration
def test_serve_exits_1_when_the_models_cannot_load(bundles: Path, tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(f'[models]\niris = "{(bundles / "iris").as_posix()}"\n', encoding="utf-8")
    lock = tmp_path / "models.lock"
    assert main(["lock", str(bundles / "diabetes"), "--output", str(lock)]) == 0
    result = run("serve", config, "--lock", lock, "--port", "0", timeout=60)
    assert result.returncode == 1
    assert "modelkit: error: models.iris is not in the lock file" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_tampered_bundle_before_listening(iris: Path) -> None:
    (iris / ARTIFACT).write_bytes(flip_byte((iris / ARTIFACT).read_bytes()))
    result = run("serve", iris, "--port", "0", timeout=60)
    assert result.returncode == 1
    assert "Serving on" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("modelkit: error: 'artifacts/model.joblib'")


def test_serve_lock_goes_with_a_config(bundles: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", str(bundles / "iris"), "--lock", "models.lock"]) == 2
    assert "--lock goes with a registry config" in capsys.readouterr().err


# -- serve: limits and runtime errors -------------------------------------------------------------

BODY_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def guarded_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Server]:
    """``modelkit serve`` on the hostile graphs: 64 KiB bodies, 1,000 rows, 1 MiB answers."""
    root = tmp_path_factory.mktemp("hostile")
    bundles = save_all(root)
    config = root / "models.toml"
    config.write_text(
        "[models]\n" + "".join(f'{name} = "{path.as_posix()}"\n' for name, path in bundles.items()),
        encoding="utf-8",
    )
    started: list[subprocess.Popen[str]] = []
    logs = [(root / "serve.log").open("w+", encoding="utf-8")]
    limits = ["--max-body-size", "64KiB", "--max-batch-size", "1000"]
    limits += ["--max-response-size", "1MiB"]
    try:
        server = _start_serve(logs[0], started, config, *limits)
        _wait_ready(server)
        yield server
    finally:
        _stop_serve(started, logs)


@pytest.mark.integration
def test_serve_refuses_a_declared_body_over_the_limit_before_it_arrives(
    guarded_serve: _Server,
) -> None:
    # Only the headers are sent: an answer proves the body was never waited for, let alone read.
    status, answer = post_declared(guarded_serve.port, "/models/rows/predict", 200 * 2**20)
    assert status == 413
    assert answer["error"]["type"] == "request_too_large"
    assert "--max-body-size" in answer["error"]["message"]


@pytest.mark.integration
def test_serve_answers_a_malformed_request_in_the_json_error_shape(
    guarded_serve: _Server,
) -> None:
    with socket.create_connection(("127.0.0.1", guarded_serve.port), timeout=30) as sock:
        sock.sendall(b"POST /models/rows/predict HTTP/1.1\r\nContent-Length: ten\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 400
        assert response.getheader("Content-Type") == "application/json"
        assert json.loads(response.read())["error"]["type"] == "bad_request"


@pytest.mark.integration
def test_serve_refuses_a_chunked_body_over_the_limit(guarded_serve: _Server) -> None:
    status, answer = post_chunked(guarded_serve.port, "/models/rows/predict", [b" " * 8192] * 9)
    assert (status, answer["error"]["type"]) == (413, "request_too_large")
    status, answer = post_chunked(guarded_serve.port, "/models/rows/predict", [b'{"x": [[1, 2]]}'])
    assert (status, answer) == (200, {"y": [[1.0, 2.0]]})


@pytest.mark.integration
@pytest.mark.parametrize(("rows", "expected"), [(1000, 200), (1001, 413)], ids=["at", "over"])
def test_serve_counts_tensor_rows_against_max_batch_size(
    guarded_serve: _Server, rows: int, expected: int
) -> None:
    status, answer = guarded_serve.request("POST", "/models/rows/predict", {"x": [[0, 1]] * rows})
    assert status == expected
    if expected == 413:
        assert answer["error"]["type"] == "batch_too_large"


@pytest.mark.integration
def test_serve_refuses_an_answer_over_the_limit_and_keeps_serving(guarded_serve: _Server) -> None:
    zeros = "/models/zeros/predict"
    status, answer = guarded_serve.request("POST", zeros, {"shape": [10_000_000]})
    assert (status, answer["error"]["type"]) == (500, "response_too_large")
    assert guarded_serve.request("POST", "/models/zeros/predict", {"shape": [1]}) == (
        200,
        {"zeros": [0.0]},
    )


@pytest.mark.integration
def test_serve_reports_an_onnxruntime_refusal_without_its_internals(
    guarded_serve: _Server,
) -> None:
    status, answer = guarded_serve.request("POST", "/models/reshape/predict", {"x": [1, 2, 3]})
    assert status == 422
    for internal in RUNTIME_INTERNALS:
        assert internal not in json.dumps(answer)
    assert "cannot be reshaped" in answer["error"]["message"]


@pytest.mark.parametrize("size", ["0", "ten", "10MB", "-5", "1.5MiB"])
def test_serve_size_options_take_a_positive_number_of_bytes(
    bundles: Path, size: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for option in ("--max-body-size", "--max-response-size"):
        assert main(["serve", str(bundles / "iris"), option, size]) == 2
        assert "expected a positive size in bytes" in capsys.readouterr().err


def test_serve_limits_default_to_the_endpoints_defaults() -> None:
    from types import SimpleNamespace

    from modelkit import _serving
    from modelkit.cli import cli

    def parse(*argv: str) -> SimpleNamespace:
        """The options ``modelkit serve ARGV`` would run with (nothing is served)."""
        with cli.commands["serve"].make_context("serve", list(argv)) as ctx:
            return SimpleNamespace(**ctx.params)

    args = parse("bundles/churn")
    assert args.max_body_size == _serving.DEFAULT_MAX_BODY_SIZE
    assert args.max_batch_size == _serving.DEFAULT_MAX_BATCH_SIZE
    assert args.max_response_size == _serving.DEFAULT_MAX_RESPONSE_SIZE
    assert parse("b", "--max-body-size", "512KiB").max_body_size == 2**19


@pytest.mark.integration
def test_serve_answers_a_huge_answer_and_a_huge_body_within_a_memory_limit(
    tmp_path: Path,
) -> None:
    # The defaults (10 MiB bodies, 50 MiB answers): 60 million zeros would be 240 MB as an array
    # and over 2 GB as Python floats; the child has 1.5 GB.
    bundle = save_zeros(tmp_path / "zeros")
    with socket.socket() as probe:  # a free port, for the client thread to call
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outcome = run_limited(
        f"""
        import http.client, json, os, resource, signal, threading, time
        from modelkit.cli import main
        from tests.serving_fixtures import post_declared, request_json

        def attack():
            try:
                for _ in range(600):
                    try:
                        if request_json({port}, "GET", "/readyz")[0] == 200:
                            break
                    except OSError:
                        pass
                    time.sleep(0.05)
                zeros = "/models/zeros/predict"
                answer = request_json({port}, "POST", zeros, {{"shape": [60_000_000]}})
                body = post_declared({port}, zeros, 200 * 2**20)
                after = request_json({port}, "POST", zeros, {{"shape": [2]}})
                report(
                    answer=answer, body=body, after=after,
                    peak_mb=peak() // 2**20,
                )
            finally:
                os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=attack, daemon=True).start()
        raise SystemExit(main(["serve", {str(bundle)!r}, "--port", "{port}", "--threads", "2"]))
        """
    )
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    assert outcome.result is not None, outcome.stderr[-3000:]
    status, answer = outcome.result["answer"]
    assert (status, answer["error"]["type"]) == (500, "response_too_large")
    status, answer = outcome.result["body"]
    assert (status, answer["error"]["type"]) == (413, "request_too_large")
    assert outcome.result["after"] == [200, {"zeros": [0.0, 0.0]}]
    assert outcome.result["peak_mb"] < 1024


def test_the_cli_imports_nothing_heavy_for_help() -> None:
    code = (
        "import json, sys\nfrom modelkit.cli import main\nmain(['--help'])\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = {name.partition(".")[0] for name in json.loads(result.stdout.splitlines()[-1])}
    assert loaded.isdisjoint({"sklearn", "onnxruntime", "pandas", "pyarrow", "flask", "waitress"})


def test_main_reads_sys_argv_by_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["modelkit", "--version"])
    assert main() == 0
    assert capsys.readouterr().out == f"modelkit {modelkit.__version__}\n"


# -- describing a graph never runs it -------------------------------------------------------------


def _expanding_graph(path: Path) -> Path:
    """A graph of a few hundred bytes whose constant folding allocates 1 GiB
    (onnxruntime folds outputs up to that size)."""
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [1], [2**28])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    nodes = [
        helper.make_node("Constant", [], ["s"], value=shape),
        helper.make_node("Constant", [], ["o"], value=one),
        helper.make_node("Expand", ["o", "s"], ["big"]),
        helper.make_node("Add", ["x", "big"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "expand",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2**28])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("command", ["inspect", "schema"])
def test_describing_a_bare_onnx_file_builds_no_session(tmp_path: Path, command: str) -> None:
    from tests.limited import run_limited

    graph = _expanding_graph(tmp_path / "expand.onnx")
    assert graph.stat().st_size < 400
    # Without a memory limit onnxruntime would fold the graph (and use over 1 GB, as loading it
    # does); with one it skips folding quietly. So the child runs with room, and reports.
    outcome = run_limited(
        f"""
        from modelkit.cli import main
        code = main([{command!r}, {str(graph)!r}])
        report(code=code, onnxruntime="onnxruntime" in sys.modules, peak=peak())
        """,
        memory=4 * 2**30,
    )
    assert outcome.result is not None, outcome.stderr[-2000:]
    assert outcome.result["code"] == 0
    assert outcome.result["onnxruntime"] is False  # no session, not even the runtime
    assert outcome.result["peak"] < 512 * 2**20
    assert '"x"' in outcome.stdout or "x:" in outcome.stdout
