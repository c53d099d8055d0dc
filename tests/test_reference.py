"""Reference cases: chosen at save, pinned by the digest, run at load, by the registry and by
``modelkit verify --run``."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelkit
from modelkit import _reference
from modelkit._bundle import Artifacts
from modelkit._environment import installed_version
from modelkit._spec import ColumnSpec, Table, TabularInputs
from modelkit.cli import cli
from tests.bundle_fixtures import (
    ARTIFACT,
    edit_manifest,
    fit_logistic,
    iris,
    read_manifest,
    replace_artifact,
    set_package_version,
)
from tests.custom_models import Keywords
from tests.strategies import json_values

CASES = "artifacts/reference-cases.json"


def save_iris(path: Path, estimator: Any = None, **options: Any) -> Path:
    """The iris classifier saved with 60 sample rows (every class, more rows than are kept)."""
    features, _labels = iris()
    options.setdefault("name", "iris")
    options.setdefault("version", "1.0.0")
    options.setdefault("sample_input", features[::2][:60])
    modelkit.save(fit_logistic() if estimator is None else estimator, path, **options)
    return path


def drift(bundle: Path, change: Any) -> Any:
    """Rewrite the pickled estimator as ``change`` leaves a copy of it, the manifest re-hashed:
    the bundle is consistent, as after an upgrade that changed what the model computes."""
    estimator = copy.deepcopy(joblib.load(bundle / ARTIFACT))
    change(estimator)
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    replace_artifact(bundle, buffer.getvalue(), rehash=True)
    return estimator


def cases_of(bundle: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((bundle / CASES).read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_iris(tmp_path_factory.mktemp("reference") / "iris")


@pytest.fixture
def bundle(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "iris"))


# -- selection --------------------------------------------------------------------------------

COLUMNS = TabularInputs(
    columns=(
        ColumnSpec(name="a", type="number", dtype="float64", nullable=True),
        ColumnSpec(name="b", type="string", dtype="object", nullable=True),
    )
)


def table_of(a: list[float], b: list[Any]) -> Table:
    column_b = np.empty(len(b), dtype=object)
    column_b[:] = b
    return Table(("a", "b"), len(a), {"a": np.asarray(a, dtype=np.float64), "b": column_b})


def test_selection_covers_every_predicted_class_and_each_missing_column() -> None:
    rows = 1000
    a = [float(i) for i in range(rows)]
    a[321] = float("nan")
    b: list[Any] = ["x"] * rows
    b[777] = None
    labels = np.array(["common"] * rows, dtype=object)
    labels[901] = "rare"

    chosen = _reference.select(COLUMNS, table_of(a, b), {"label": labels})

    assert len(chosen) == _reference.MAX_CASES
    assert {321, 777, 901} <= set(chosen)
    assert chosen == sorted(chosen)


def test_selection_is_deterministic(template: Path, tmp_path: Path) -> None:
    again = save_iris(tmp_path / "again")

    assert (again / CASES).read_bytes() == (template / CASES).read_bytes()


def test_selection_leaves_out_rows_whose_top_probabilities_tie() -> None:
    probabilities = np.array([[0.5, 0.5], [0.9, 0.1], [0.5 + 1e-12, 0.5 - 1e-12], [0.2, 0.8]])
    labels = np.array([0, 0, 0, 1])

    chosen = _reference.select(
        COLUMNS,
        table_of([1.0, 2.0, 3.0, 4.0], ["x"] * 4),
        {"label": labels, "probabilities": probabilities},
    )

    assert chosen == [1, 3]


def test_selection_keeps_a_regressors_lowest_and_highest_value() -> None:
    values = np.linspace(0.0, 1.0, 500)
    values[123], values[456] = -5.0, 9.0

    chosen = _reference.select(COLUMNS, table_of(list(values), ["x"] * 500), {"value": values})

    assert {123, 456} <= set(chosen)


def test_a_small_sample_is_kept_whole(tmp_path: Path) -> None:
    features, _labels = iris()
    bundle = save_iris(tmp_path / "small", sample_input=features[:7])

    assert cases_of(bundle)["sample_rows"] == list(range(7))


# -- storage ----------------------------------------------------------------------------------


def test_cases_are_an_artifact_hashed_in_the_manifest(template: Path) -> None:
    listed = {a["path"]: a for a in read_manifest(template)["artifacts"]}
    data = (template / CASES).read_bytes()

    assert listed[CASES]["sha256"] == hashlib.sha256(data).hexdigest()
    document = cases_of(template)
    assert len(document["inputs"]) == _reference.MAX_CASES
    assert document["outputs"]["probabilities"]["dtype"] == "float64"
    # Every iris class the model predicts on the sample is there, typed as the model gives it.
    assert sorted(set(document["outputs"]["label"]["values"])) == [0, 1, 2]


def test_missing_values_are_kept_as_null_and_string_labels_as_strings(tmp_path: Path) -> None:
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=80), "y": rng.normal(size=80)})
    frame.loc[5, "y"] = np.nan
    labels = np.where(frame["x"] > 0, "yes", "no")
    model = HistGradientBoostingClassifier(max_iter=5).fit(frame, labels)
    bundle = tmp_path / "hgb"
    modelkit.save(model, bundle, name="hgb", version="1", sample_input=frame)

    document = cases_of(bundle)
    assert {"x": frame.loc[5, "x"], "y": None} in document["inputs"]
    assert set(document["outputs"]["label"]["values"]) == {"yes", "no"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        modelkit.load(bundle)


def test_tampered_cases_are_an_integrity_error_before_the_model_is_unpickled(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = cases_of(bundle)
    document["outputs"]["label"]["values"][0] = 2
    (bundle / CASES).write_text(json.dumps(document), encoding="utf-8")
    monkeypatch.setattr(joblib, "load", pytest.fail)

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(bundle)

    assert caught.value.path == CASES


def test_no_sample_no_cases(tmp_path: Path) -> None:
    manifest = modelkit.save(fit_logistic(), tmp_path / "bare", name="b", version="1")

    assert CASES not in [a.path for a in manifest.artifacts]
    modelkit.load(tmp_path / "bare")


def test_a_bundle_saved_before_reference_cases_loads_as_before(bundle: Path) -> None:
    (bundle / CASES).unlink()
    edit_manifest(
        bundle,
        lambda d: d.__setitem__("artifacts", [a for a in d["artifacts"] if a["path"] != CASES]),
    )

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = modelkit.load(bundle)
    assert model.predict([5.1, 3.5, 1.4, 0.2]).label == 0


def test_malformed_cases_are_a_bundle_error_naming_the_file(bundle: Path) -> None:
    replace_artifact(bundle, b'{"version": 1, "inputs": []}', rehash=True, name=CASES)

    with pytest.raises(modelkit.BundleError, match="malformed reference cases") as caught:
        modelkit.load(bundle, check="error")

    assert caught.value.path == CASES


def manifest_of(bundle: Path) -> modelkit.Manifest:
    return modelkit.Manifest.model_validate_json((bundle / "modelkit.json").read_bytes())


def read_document(document: Any, template: Path) -> _reference.Cases | None:
    data = json.dumps(document).encode()
    return _reference.read(Artifacts({"reference-cases.json": data}), manifest_of(template))


def two_cases(template: Path, **changes: Any) -> dict[str, Any]:
    document = {
        "version": 1,
        "sample_rows": [0, 1],
        "inputs": cases_of(template)["inputs"][:2],
        "outputs": {"value": {"dtype": "float64", "values": [0.5, 1.5]}},
    }
    document.update(changes)
    return document


MANY = _reference.MAX_CASES + 1


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"outputs": {"value": {"dtype": "not-a-dtype", "values": [1, 2]}}}, "not a numpy dtype"),
        ({"outputs": {"value": {"dtype": "datetime64[ns]", "values": [1, 2]}}}, "float, text"),
        ({"outputs": {"value": {"dtype": "f8,i4", "values": [1, 2]}}}, "float, text"),
        ({"outputs": {"value": {"dtype": "float64", "values": ["a", 1]}}}, "not numbers"),
        ({"outputs": {"value": {"dtype": "float64", "values": [[{}], 1]}}}, "not numbers"),
        ({"outputs": {"value": {"dtype": "float64", "values": [True, 1]}}}, "not numbers"),
        ({"inputs": [{"sepal length (cm)": "wide"}] * 2}, "do not fit the signature"),
        ({"inputs": [], "sample_rows": [], "outputs": {}}, "inputs: List should have at least"),
        ({"inputs": [{}] * MANY, "sample_rows": [0] * MANY, "outputs": {}}, "at most 50"),
        (
            {"outputs": {"probabilities": {"dtype": "float64", "values": [[0.1] * 4] * 2}}},
            "longer than its 3 classes",
        ),
    ],
)
def test_hostile_cases_are_a_bundle_error_before_anything_runs(
    template: Path, changes: dict[str, Any], reason: str
) -> None:
    with pytest.raises(modelkit.BundleError, match="malformed reference cases") as caught:
        read_document(two_cases(template, **changes), template)

    assert reason in str(caught.value)
    assert caught.value.path == CASES


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(dtype=st.text(max_size=12), values=st.lists(json_values(), min_size=2, max_size=2))
def test_any_outputs_read_as_cases_or_a_bundle_error(
    template: Path, dtype: str, values: list[Any]
) -> None:
    document = two_cases(template, outputs={"value": {"dtype": dtype, "values": values}})
    try:
        cases = read_document(document, template)
    except modelkit.BundleError:
        return
    assert cases is not None
    verdict = _reference.run(cases, Answers({"value": np.array([0.5, 1.5])}))
    _reference.failure_text(verdict, "here", manifest_of(template))


def test_cases_declaring_more_than_the_limit_are_refused_before_parsing(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    replace_artifact(bundle, b" " * (_reference.MAX_BYTES + 1), rehash=True, name=CASES)
    monkeypatch.setattr(_reference._Cases, "model_validate_json", pytest.fail)

    with pytest.raises(modelkit.BundleError, match=r"declares 1048577 bytes, more than"):
        modelkit.load(bundle, check="error")


def test_cases_larger_than_the_limit_are_not_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_reference, "MAX_BYTES", 1000)

    bundle = save_iris(tmp_path / "big")

    assert not (bundle / CASES).exists()
    assert "more than 1000" in caplog.text


def test_converted_onnx_bundle_keeps_float32_cases_that_pass(tmp_path: Path) -> None:
    pytest.importorskip("skl2onnx")
    bundle = save_iris(tmp_path / "onnx", format="onnx")

    assert cases_of(bundle)["outputs"]["probabilities"]["dtype"] == "float32"
    _manifest, verdict = modelkit._api.run_reference_cases(bundle)
    assert verdict is not None
    assert verdict.passed


def test_custom_models_keep_no_cases(tmp_path: Path) -> None:
    manifest = modelkit.save(
        Keywords(), tmp_path / "kw", name="kw", version="1", sample_input=[{"text": "great"}]
    )

    assert CASES not in [a.path for a in manifest.artifacts]


class KeepsAFileOfThatName(Keywords):
    """A custom model whose own artifacts include a file at the reference cases' path."""

    def save_artifacts(self, directory: Path) -> None:
        super().save_artifacts(directory)
        (directory / "reference-cases.json").write_text('{"mine": true}')


def test_a_custom_models_own_file_at_that_path_is_left_alone(tmp_path: Path) -> None:
    bundle = tmp_path / "own"
    modelkit.save(KeepsAFileOfThatName(), bundle, name="own", version="1")

    assert cases_of(bundle) == {"mine": True}
    with modelkit.Registry() as registry:  # a registry runs the cases of every model it loads
        assert registry.add("own", bundle).predict({"text": "good"}).positive is True


def test_a_multi_output_classifier_saves_its_rows_of_labels(tmp_path: Path) -> None:
    from sklearn.ensemble import RandomForestClassifier

    features, labels = iris()
    both = np.c_[labels, (labels + 1) % 3]
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(features, both)
    bundle = tmp_path / "multi"

    modelkit.save(forest, bundle, name="m", version="1", sample_input=features[::10])

    assert [0, 1] in cases_of(bundle)["outputs"]["label"]["values"]
    modelkit.load(bundle, check="error")


def test_a_failure_while_choosing_the_cases_saves_without_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> list[int]:
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setattr(_reference, "select", broken)

    bundle = save_iris(tmp_path / "broken")

    assert not (bundle / CASES).exists()
    assert read_manifest(bundle)["profile"] is not None
    assert "Saving without reference cases: unhashable type" in caplog.text


def test_a_model_that_answers_at_random_is_saved_without_cases(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from sklearn.dummy import DummyClassifier

    features, labels = iris()
    dummy = DummyClassifier(strategy="stratified").fit(features, labels)

    save_iris(tmp_path / "dummy", dummy)

    assert not (tmp_path / "dummy" / CASES).exists()
    assert "differently when they ran again" in caplog.text
    with modelkit.Registry() as registry:
        registry.add("dummy", tmp_path / "dummy")


# -- the verdict and the policies ----------------------------------------------------------------


def test_a_drifting_model_is_refused_naming_rows_difference_and_versions(bundle: Path) -> None:
    def nudge(estimator: Any) -> None:
        estimator.coef_ = estimator.coef_ * 1.05

    drift(bundle, nudge)

    with pytest.raises(modelkit.ReproducibilityError) as caught:
        modelkit.load(bundle, check="error")

    error = caught.value
    message = str(error)
    assert "no longer answers its reference cases" in message
    assert "largest difference" in message
    assert "probabilities" in message
    sklearn = installed_version("scikit-learn")
    assert f"scikit-learn {sklearn} → {sklearn}" in message
    assert "check='warn'" in message
    assert error.rows
    assert error.rows == sorted(error.rows)
    assert set(error.rows) <= set(cases_of(bundle)["sample_rows"])
    assert error.largest_difference is not None
    assert error.largest_difference > 1e-6
    assert error.versions["scikit-learn"] == (sklearn, sklearn)
    assert isinstance(error, modelkit.ModelkitError)


def test_a_changed_label_is_named_with_its_values_then_and_now(bundle: Path) -> None:
    def invert(estimator: Any) -> None:
        estimator.coef_ = -estimator.coef_

    drift(bundle, invert)

    with pytest.raises(
        modelkit.ReproducibilityError, match=r"In row \d+, the label changed from \d to \d\."
    ):
        modelkit.load(bundle, check="error")


def test_check_warn_hands_the_model_out_with_one_warning(bundle: Path) -> None:
    drift(bundle, lambda e: setattr(e, "coef_", e.coef_ * 1.05))
    set_package_version(bundle, "scikit-learn", "1.0.0")

    with pytest.warns(modelkit.ReproducibilityWarning, match="scikit-learn 1.0.0 →") as caught:
        model = modelkit.load(bundle, check="warn")

    assert [w.category for w in caught] == [modelkit.ReproducibilityWarning]
    assert model.predict([5.1, 3.5, 1.4, 0.2]).label == 0


def test_auto_runs_the_cases_only_when_the_versions_differ(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drift(bundle, lambda e: setattr(e, "coef_", -e.coef_))
    with monkeypatch.context() as patched:
        # The same versions run the same code: nothing to prove, and nothing to pay at load.
        patched.setattr(_reference, "run", pytest.fail)
        modelkit.load(bundle)
    set_package_version(bundle, "scikit-learn", "1.0.0")

    with pytest.raises(modelkit.ReproducibilityError, match=r"scikit-learn 1\.0\.0 →"):
        modelkit.load(bundle)


def test_check_off_runs_nothing(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drift(bundle, lambda e: setattr(e, "coef_", -e.coef_))
    monkeypatch.setattr(_reference, "run", pytest.fail)

    modelkit.load(bundle, check="off")


def test_an_unknown_policy_is_refused(template: Path) -> None:
    with pytest.raises(ValueError, match="check must be one of"):
        modelkit.load(template, check="strict")  # type: ignore[arg-type]


def test_other_versions_with_identical_answers_say_so(bundle: Path) -> None:
    set_package_version(bundle, "scikit-learn", "1.0.0")

    with pytest.warns(modelkit.EnvironmentMismatchWarning) as caught:
        modelkit.load(bundle)

    (warning,) = caught
    sklearn = installed_version("scikit-learn")
    assert f"scikit-learn 1.0.0 → {sklearn}, 50 of 50 reference cases identical" in str(
        warning.message
    )


def test_the_plain_version_warning_stays_without_cases(bundle: Path) -> None:
    set_package_version(bundle, "scikit-learn", "1.0.0")

    with pytest.warns(modelkit.EnvironmentMismatchWarning, match="results may differ"):
        modelkit.load(bundle, check="off")


# -- tolerances ---------------------------------------------------------------------------------


class Answers:
    """A runner that answers the stored cases with chosen outputs."""

    def __init__(self, outputs: dict[str, Any]) -> None:
        self.outputs = outputs

    def run(self, inputs: Any) -> dict[str, Any]:
        return self.outputs


def verdict_for(stored: dict[str, Any], now: dict[str, Any], template: Path) -> _reference.Verdict:
    """The verdict on two cases whose stored outputs are ``stored`` and answers ``now``."""
    cases = read_document(two_cases(template, outputs=stored), template)
    assert cases is not None
    return _reference.run(cases, Answers(now))


@pytest.mark.parametrize(
    ("dtype", "relative", "passes"),
    [
        ("float64", 0.9e-6, True),
        ("float64", 1.1e-6, False),
        ("float32", 0.9e-4, True),
        ("float32", 1.1e-4, False),
    ],
)
def test_numbers_agree_within_the_tolerance_of_their_dtype(
    template: Path, dtype: str, relative: float, passes: bool
) -> None:
    then = [[0.25, 0.75], [0.5, 0.5]]
    now = np.asarray(then, dtype=dtype) * np.asarray(1 + relative, dtype=dtype)

    verdict = verdict_for({"p": {"dtype": dtype, "values": then}}, {"p": now}, template)

    assert verdict.passed is passes
    assert verdict.identical == 0


def test_missing_numbers_match_only_missing_numbers(template: Path) -> None:
    stored = {"value": {"dtype": "float64", "values": [None, 1.0]}}

    assert verdict_for(stored, {"value": np.array([np.nan, 1.0])}, template).identical == 2
    failed = verdict_for(stored, {"value": np.array([0.0, 1.0])}, template)
    assert failed.differing == (0,)
    assert verdict_for(stored, {"value": np.array([np.inf, 1.0])}, template).differing == (0,)


def test_infinities_are_stored_apart_from_missing_numbers_and_match_only_themselves(
    template: Path,
) -> None:
    stored = {"value": {"dtype": "float64", "values": ["Infinity", "-Infinity"]}}

    assert verdict_for(stored, {"value": np.array([np.inf, -np.inf])}, template).identical == 2
    for now in ([np.nan, -np.inf], [-np.inf, -np.inf], [1e308, -np.inf]):
        verdict = verdict_for(stored, {"value": np.array(now)}, template)
        assert verdict.differing == (0,)
        assert verdict.changed is not None or verdict.largest is not None
        assert verdict.largest is None or verdict.largest.amount is None  # never 1.8e308


def test_a_saved_infinity_is_written_as_text(tmp_path: Path) -> None:
    from sklearn.dummy import DummyRegressor

    features, _labels = iris()
    regressor = DummyRegressor(strategy="constant", constant=0.0).fit(features, features[:, 0])
    regressor.constant_ = np.array([[np.inf]])
    bundle = tmp_path / "inf"
    modelkit.save(regressor, bundle, name="inf", version="1", sample_input=features[:5])

    assert set(cases_of(bundle)["outputs"]["value"]["values"]) == {"Infinity"}
    drift(bundle, lambda e: setattr(e, "constant_", np.array([[np.nan]])))
    with pytest.raises(modelkit.ReproducibilityError, match="changed from inf to None"):
        modelkit.load(bundle, check="error")


def test_a_changed_shape_is_named_and_long_values_are_cut(template: Path) -> None:
    manifest = manifest_of(template)
    shape = verdict_for(
        {"value": {"dtype": "float64", "values": [0.5, 1.5]}},
        {"value": np.zeros((2, 3))},
        template,
    )
    message = _reference.failure_text(shape, "here", manifest)
    assert "Output 'value' changed shape: 6 values for the 2 cases, 2 when saved." in message
    assert "None" not in message

    long = verdict_for(
        {"label": {"dtype": "object", "values": ["x" * 5000, "y"]}},
        {"label": np.array(["z" * 5000, "y"], dtype=object)},
        template,
    )
    assert len(_reference.failure_text(long, "here", manifest)) < 1000


def test_labels_must_be_equal_and_of_the_same_type(template: Path) -> None:
    stored = {"label": {"dtype": "int64", "values": [1, 0]}}

    assert verdict_for(stored, {"label": np.array([1, 0])}, template).passed
    as_text = np.array(["1", "0"], dtype=object)
    assert verdict_for(stored, {"label": as_text}, template).differing == (0, 1)
    assert verdict_for(stored, {"label": np.array([True, False])}, template).differing == (0, 1)


def test_a_model_that_refuses_its_cases_fails_them(template: Path) -> None:
    class Refuses:
        def run(self, inputs: Any) -> dict[str, Any]:
            raise ValueError("unknown category 'x'.")

    manifest = manifest_of(template)
    cases = _reference.read(
        Artifacts({"reference-cases.json": (template / CASES).read_bytes()}), manifest
    )
    assert cases is not None

    verdict = _reference.run(cases, Refuses())

    assert not verdict.passed
    assert "unknown category 'x'" in (verdict.refused or "")
    message = _reference.failure_text(verdict, "here", manifest)
    assert "it refuses their inputs: unknown category 'x'. Versions" in message


# -- registry and command line --------------------------------------------------------------------


def test_reload_refuses_a_drifting_version_and_the_old_one_keeps_serving(
    bundle: Path, tmp_path: Path
) -> None:
    with modelkit.Registry() as registry:
        registry.add("iris", bundle)
        before = registry["iris"].model
        drifted = Path(shutil.copytree(bundle, tmp_path / "drifted"))
        drift(drifted, lambda e: setattr(e, "coef_", -e.coef_))

        with pytest.raises(modelkit.ReproducibilityError, match=r"^models\.iris: "):
            registry.reload("iris", drifted)

        assert registry["iris"].model is before
        assert registry["iris"].predict([5.1, 3.5, 1.4, 0.2]).label == 0


def test_a_config_refuses_a_drifting_bundle_unless_it_says_warn(bundle: Path) -> None:
    drift(bundle, lambda e: setattr(e, "coef_", e.coef_ * 1.05))

    with pytest.raises(modelkit.ReproducibilityError, match=r"^models\.iris: ") as caught:
        modelkit.Registry.from_config({"models": {"iris": {"path": str(bundle)}}})
    assert caught.value.rows

    config = {"models": {"iris": {"path": str(bundle), "check": "warn"}}}
    with pytest.warns(modelkit.ReproducibilityWarning):
        modelkit.Registry.from_config(config).close()


def test_verify_run_reports_the_verdict(template: Path) -> None:
    result = CliRunner().invoke(cli, ["verify", "--run", str(template)])

    assert result.exit_code == 0, result.output
    assert "50 of 50 reference cases identical" in result.output


def test_verify_run_fails_a_drifting_bundle_that_plain_verify_passes(bundle: Path) -> None:
    drift(bundle, lambda e: setattr(e, "coef_", -e.coef_))

    assert CliRunner().invoke(cli, ["verify", str(bundle)]).exit_code == 0
    result = CliRunner().invoke(cli, ["verify", "--run", str(bundle)])

    assert result.exit_code == 1
    assert f"FAILED {bundle}: " in result.output
    assert "no longer answers its reference cases" in result.output


def test_verify_run_passes_a_bare_onnx_file_and_pins_what_it_verified(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = tmp_path / "model.onnx"
    bare.write_bytes(b"not parsed: a bare file keeps no cases")
    pins: list[str | None] = []
    real = modelkit._api.run_reference_cases

    def spy(path: Any, **options: Any) -> Any:
        pins.append(options.get("sha256"))
        return real(path, **options)

    monkeypatch.setattr(modelkit._api, "run_reference_cases", spy)

    result = CliRunner().invoke(cli, ["verify", "--run", str(bare), str(template)])

    assert result.exit_code == 0, result.output
    assert f"OK {bare} sha256:" in result.output
    assert "(no reference cases)" in result.output
    assert pins == [modelkit.digest(bare), modelkit.digest(template)]


def test_verify_run_keeps_the_environment_check(bundle: Path) -> None:
    set_package_version(bundle, "scikit-learn", "0.1.0")

    result = CliRunner().invoke(cli, ["verify", "--run", str(bundle)])

    assert result.exit_code == 1
    assert "scikit-learn 0.1.0" in result.output


def test_inspect_says_whether_a_bundle_keeps_cases(template: Path) -> None:
    result = CliRunner().invoke(cli, ["inspect", "--json", str(template)])

    assert json.loads(result.output)["has_reference_cases"] is True
