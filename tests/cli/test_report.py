"""``modelkit report``: the page to a file or stdout, and prediction logs read as hostile input."""

from __future__ import annotations

import html
import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import joblib
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelkit
from modelkit._drift import DriftMonitor
from modelkit._report import LogSummary
from modelkit.cli import _report as report_command
from modelkit.cli import cli
from modelkit.cli._report import log_monitor, read_log
from tests.bundle_fixtures import ARTIFACT, edit_manifest, replace_artifact
from tests.limited import run_limited
from tests.strategies import json_values


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _written(tmp_path: Path, *args: str) -> tuple[Result, str]:
    """``modelkit report ARGS -o FILE``, which must succeed: its result, and the page unescaped."""
    result = invoke("report", *args, "-o", str(tmp_path / "r.html"))
    assert result.exit_code == 0, result.stderr
    return result, html.unescape((tmp_path / "r.html").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def log_lines(iris_bundle: Path, iris: Any) -> list[str]:
    """A real prediction log of the iris model: 300 shifted records, petal width redacted in
    the batch of 250 and logged plainly in 50 single calls."""
    model = modelkit.load(iris_bundle)
    lines: list[str] = []
    redacting = modelkit.PredictionLogger(lines.append, redact=["petal width (cm)"])
    model.add_hook(redacting)
    # The bundle's reference is the first 20 rows: drawn from them, only the shift drifts.
    X = iris[0].head(20).sample(300, replace=True, random_state=0)
    X = X.assign(**{"sepal length (cm)": X["sepal length (cm)"] + 1.5})
    model.predict_batch(X.iloc[:250])
    redacting.close()
    model.remove_hook(redacting)
    plain = modelkit.PredictionLogger(lines.append)
    model.add_hook(plain)
    for record in X.iloc[250:].to_dict(orient="records"):
        model.predict(record)
    plain.close()
    return lines


def _write(path: Path, lines: list[str | bytes]) -> Path:
    path.write_bytes(
        b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines)
    )
    return path


def test_the_page_goes_to_the_file_given(iris_bundle: Path, tmp_path: Path) -> None:
    result = invoke("report", str(iris_bundle), "-o", str(tmp_path / "iris.html"))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    page = (tmp_path / "iris.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    # The command runs the reference cases itself.
    assert "reference cases identical" in page
    assert page.count("<svg") == 5


def test_without_output_the_page_goes_to_stdout(iris_bundle: Path) -> None:
    result = invoke("report", str(iris_bundle))
    assert result.exit_code == 0
    assert result.stdout.startswith("<!DOCTYPE html>")
    assert result.stdout.rstrip().endswith("</html>")


def test_a_model_that_no_longer_answers_its_cases_gets_a_red_verdict_not_a_failure(
    iris_bundle: Path, tmp_path: Path
) -> None:
    bundle = Path(shutil.copytree(iris_bundle, tmp_path / "iris"))
    estimator = joblib.load(bundle / ARTIFACT)
    estimator.coef_ = -estimator.coef_  # as if an upgrade changed what the model computes
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    replace_artifact(bundle, buffer.getvalue(), rehash=True)
    result, page = _written(tmp_path, str(bundle))
    assert "modelkit: warning: " in result.stderr
    assert "no longer answers its reference cases" in result.stderr
    assert "Traceback" not in result.stderr
    assert "reference cases differ" in page
    assert "✘" in page


def test_a_log_gives_the_drift_with_the_redacted_column_left_out(
    iris_bundle: Path, tmp_path: Path, log_lines: list[str]
) -> None:
    log = _write(tmp_path / "predictions.jsonl", log_lines)
    result, page = _written(tmp_path, str(iris_bundle), "--log", str(log))
    assert result.stderr == ""
    assert "300 lines, 300 used." in page
    assert "Redacted in the log, so not compared: petal width (cm)" in page
    order = re.findall(r"<h3><code>([^<]*)</code>", page)
    assert order[0] == "sepal length (cm)"  # shifted: the one drifting feature
    assert order[-1] == "petal width (cm)"
    assert "1 drifting feature in 300 records" in page


def test_malformed_lines_are_counted_on_the_page_and_on_stderr(
    iris_bundle: Path, tmp_path: Path, log_lines: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report_command, "MAX_LINE_BYTES", 4096)
    good = log_lines[250:]
    one = json.loads(good[0])
    bad: list[str | bytes] = [
        "not json",
        "[1, 2, 3]",
        '{"input": {}}',  # no model
        '{"model": 7}',
        "x" * 20_000,  # longer than the limit: skipped in chunks
        b'{"model": "iris", "input": "\xff"}',  # not UTF-8
        "[" * 3000,  # nested past the parser's recursion limit
        json.dumps({**one, "model": "churn"}),
        json.dumps({**one, "error": {"type": "InvalidInputError", "message": "no"}}),
        json.dumps({**one, "input": {"sepal length (cm)": "tall"}}),
        json.dumps({**one, "input": [1, 2, 3, 4]}),
        json.dumps({**one, "input": "[REDACTED]", "output": {"label": 1}}),
        json.dumps({**one, "output": {"label": {"nested": True}}}),
        "",
    ]
    log = _write(tmp_path / "messy.jsonl", [*good, *bad])
    result, page = _written(tmp_path, str(iris_bundle), "--log", str(log))
    assert "modelkit: warning: 7 of 63 lines of" in result.stderr
    assert "Traceback" not in result.stderr
    assert "63 lines, 51 used; left out: 1 of other models, 1 of failed calls" in page
    assert "2 whose input does not fit the signature" in page
    assert "1 without an input (outputs counted)" in page
    assert "7 malformed" in page


def test_a_log_with_no_line_of_the_model_warns(iris_bundle: Path, tmp_path: Path) -> None:
    log = _write(tmp_path / "other.jsonl", ['{"model": "churn", "input": {}}'])
    result = invoke("report", str(iris_bundle), "--log", str(log), "-o", str(tmp_path / "r.html"))
    assert result.exit_code == 0
    assert "no line of" in result.stderr
    assert "model 'iris'" in result.stderr


def test_a_bundle_without_a_profile_cannot_take_a_log(tmp_path: Path, iris_classifier: Any) -> None:
    modelkit.save(iris_classifier, tmp_path / "bare", name="bare", version="1")
    log = _write(tmp_path / "log.jsonl", [])
    result = invoke("report", str(tmp_path / "bare"), "--log", str(log))
    assert result.exit_code == 1
    assert result.stderr.startswith("modelkit: error: ")
    assert "no reference profile" in result.stderr


def _first_column(manifest: dict[str, Any]) -> dict[str, Any]:
    columns = manifest["profile"]["columns"]
    first: dict[str, Any] = columns[next(iter(columns))]
    return first


def test_a_malformed_profile_cannot_take_a_log_and_says_which_bundle(
    iris_bundle: Path, tmp_path: Path
) -> None:
    bundle = Path(shutil.copytree(iris_bundle, tmp_path / "iris"))
    edit_manifest(bundle, lambda m: _first_column(m).clear())
    log = _write(tmp_path / "log.jsonl", [])
    result = invoke("report", str(bundle), "--log", str(log))
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert f"The reference profile of {str(bundle)!r} is unusable" in result.stderr


def test_integers_beyond_a_float_in_the_profile_make_a_page(
    iris_bundle: Path, tmp_path: Path, log_lines: list[str]
) -> None:
    bundle = Path(shutil.copytree(iris_bundle, tmp_path / "iris"))
    edit_manifest(bundle, lambda m: _first_column(m)["edges"].append(10**400))
    edit_manifest(bundle, lambda m: _first_column(m)["proportions"].append(0))
    log = _write(tmp_path / "predictions.jsonl", log_lines)
    _, page = _written(tmp_path, str(bundle), "--log", str(log))
    assert "≥ 1.000e+400" in page


def test_a_log_whose_name_is_not_utf8_is_named_on_a_utf8_page(
    iris_bundle: Path, tmp_path: Path, log_lines: list[str]
) -> None:
    log = _write(Path(os.fsdecode(bytes(tmp_path) + b"/\xff.jsonl")), log_lines)
    _, page = _written(tmp_path, str(iris_bundle), "--log", str(log))
    assert "\ufffd.jsonl: 300 lines" in page


def test_a_line_longer_than_memory_is_skipped_in_chunks(
    iris_bundle: Path, tmp_path: Path, log_lines: list[str]
) -> None:
    # A sparse file: 1.25 GiB of NUL bytes on one line between two good ones, written in no
    # time. Held whole it would not fit in the child's 1 GiB (the command takes 0.7 GiB).
    log = tmp_path / "huge.jsonl"
    with log.open("wb") as file:
        file.write(log_lines[0].encode() + b"\n")
        file.truncate(file.tell() + 5 * 2**28)
        file.seek(0, os.SEEK_END)
        file.write(b"\n" + log_lines[1].encode() + b"\n")
    outcome = run_limited(
        f"""
        from modelkit.cli import main
        arguments = ["report", {str(iris_bundle)!r}, "--log", {str(log)!r}]
        code = main([*arguments, "-o", {str(tmp_path / "r.html")!r}])
        report(code=code)
        """,
        memory=2**30,
    )
    assert outcome.result is not None, outcome.stderr[-2000:]
    assert outcome.result["code"] == 0
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "3 lines, 2 used; left out: 1 malformed" in page


def test_a_skops_bundle_is_reported_with_the_types_the_caller_trusts(
    tmp_path: Path, iris: Any
) -> None:
    pytest.importorskip("skops")
    from sklearn.tree import DecisionTreeClassifier

    X, y = iris
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
    bundle = tmp_path / "tree"
    modelkit.save(tree, bundle, name="tree", version="1", format="skops", sample_input=X)
    refused = invoke("report", str(bundle), "-o", str(tmp_path / "refused.html"))
    assert refused.exit_code == 1
    assert "--trust-type sklearn.tree._tree.Tree" in refused.stderr
    assert not (tmp_path / "refused.html").exists()
    _, page = _written(tmp_path, str(bundle), "--trust-type", "sklearn.tree._tree.Tree")
    assert "reference cases identical" in page


def test_a_missing_log_is_a_usage_error(iris_bundle: Path, tmp_path: Path) -> None:
    result = invoke("report", str(iris_bundle), "--log", str(tmp_path / "absent.jsonl"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_a_missing_bundle_fails_with_one_line(tmp_path: Path) -> None:
    result = invoke("report", str(tmp_path / "absent"))
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1


@pytest.fixture(scope="module")
def iris_model(iris_bundle: Path) -> modelkit.Model[Any, Any]:
    return modelkit.load(iris_bundle)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.lists(st.binary(max_size=200) | st.text(max_size=200).map(str.encode), max_size=20))
def test_any_bytes_are_counted_never_raised(
    iris_model: modelkit.Model[Any, Any], data: list[bytes]
) -> None:
    monitor = log_monitor(iris_model, "iris")
    summary = read_log(io.BytesIO(b"\n".join(data)), iris_model, monitor, source="fuzz")
    _assert_counted_once(summary, monitor)


# Any JSON value a field may hold, NaN, infinities and integers past a float included.
_values = json_values() | st.floats() | st.integers() | st.just("[REDACTED]")
_IRIS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


@st.composite
def _log_lines(draw: st.DrawFn) -> str:
    names = st.sampled_from(["iris", "churn"])
    line: dict[str, Any] = {"model": draw(st.one_of(st.just("iris"), names, json_values()))}
    if draw(st.booleans()):
        # A record of the model's columns: of numbers, of anything, or of other fields.
        numbers = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-99, 99)
        valid = st.fixed_dictionaries(dict.fromkeys(_IRIS, numbers | st.none()))
        messy = st.fixed_dictionaries(dict.fromkeys(_IRIS, numbers | _values))
        other = st.dictionaries(st.sampled_from(_IRIS) | st.text(max_size=4), _values, max_size=5)
        line["input"] = draw(st.one_of(valid, messy, other, _values))
    if draw(st.booleans()):
        line["output"] = draw(st.fixed_dictionaries({"label": _values}) | _values)
    if draw(st.integers(0, 9)) == 0:
        line["error"] = {"type": "InvalidInputError", "message": "no"}
    return json.dumps(line)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(_log_lines(), max_size=12))
def test_every_line_of_the_log_format_is_counted_once(
    iris_model: modelkit.Model[Any, Any], lines: list[str]
) -> None:
    monitor = log_monitor(iris_model, "iris")
    summary = read_log(io.BytesIO("\n".join(lines).encode()), iris_model, monitor, source="fuzz")
    assert summary.lines == len(lines)
    _assert_counted_once(summary, monitor)
    monitor.report()


def _assert_counted_once(summary: LogSummary, monitor: DriftMonitor) -> None:
    left_out = [
        summary.other_models,
        summary.errors,
        summary.malformed,
        summary.invalid,
        summary.without_inputs,
    ]
    assert summary.used + sum(left_out) == summary.lines
    assert monitor.count == summary.used
