"""Drift statistics: reference profiles, streaming counts and population stability scores."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import warnings
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings

from modelkit import _profile
from modelkit._drift import (
    MIN_RECORDS,
    DriftMonitor,
    population_stability_index,
)
from modelkit._infer import infer_tabular_signature
from modelkit._profile import profile_reference
from modelkit._spec import ColumnSpec, Table, TabularInputs
from modelkit._validation import TabularValidator
from tests import strategies


def _reference(frame: pd.DataFrame) -> tuple[TabularInputs, Table]:
    inputs, _ = infer_tabular_signature(frame)
    return inputs, TabularValidator(inputs).batch(frame)


def _monitor(frame: pd.DataFrame, **options: Any) -> tuple[DriftMonitor, TabularValidator]:
    inputs, table = _reference(frame)
    return DriftMonitor(profile_reference(inputs, table), inputs, **options), TabularValidator(
        inputs
    )


@pytest.fixture(scope="module")
def diabetes() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    frame: pd.DataFrame = load_diabetes(as_frame=True).data
    return frame


@pytest.fixture(scope="module")
def plans() -> pd.DataFrame:
    """A numeric column, a categorical one and a nullable number with 2% missing."""
    rng = np.random.default_rng(0)
    size = 5000
    income = rng.normal(3000, 500, size)
    income[rng.random(size) < 0.02] = np.nan
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, size),
            "plan": rng.choice(["basic", "plus", "pro"], size, p=[0.6, 0.3, 0.1]),
            "income": income,
        }
    )


def _resample(frame: pd.DataFrame, size: int, seed: int = 1) -> pd.DataFrame:
    return frame.sample(size, replace=True, random_state=seed).reset_index(drop=True)


# -- profiles -------------------------------------------------------------------------------------


def test_profile_of_a_scikit_learn_dataset_is_json_serializable(diabetes: pd.DataFrame) -> None:
    inputs, table = _reference(diabetes)
    profile = profile_reference(inputs, table)
    text = json.dumps(profile, allow_nan=False)
    assert json.loads(text) == profile
    assert profile["version"] == 1
    assert profile["count"] == len(diabetes)
    assert list(profile["columns"]) == list(diabetes.columns)
    for entry in profile["columns"].values():
        assert entry["kind"] == "numeric"
        assert len(entry["proportions"]) == len(entry["edges"]) + 1
        assert math.isclose(sum(entry["proportions"]) + entry["missing_rate"], 1.0)
        assert entry["min"] <= entry["mean"] <= entry["max"]


def test_numbers_are_binned_at_the_reference_deciles() -> None:
    inputs, table = _reference(pd.DataFrame({"x": np.arange(1000, dtype=float)}))
    entry = profile_reference(inputs, table)["columns"]["x"]
    assert entry["edges"] == [float(100 * i - 1) for i in range(1, 10)]
    assert entry["proportions"] == pytest.approx([0.1] * 10, abs=0.002)


def test_categories_beyond_the_most_frequent_are_pooled_as_other() -> None:
    values = [f"c{i:02d}" for i in range(30) for _ in range(30 - i)]
    inputs, table = _reference(pd.DataFrame({"code": values}))
    entry = profile_reference(inputs, table)["columns"]["code"]
    assert entry["categories"] == [f"c{i:02d}" for i in range(20)]
    assert entry["proportions"][-1] == pytest.approx(sum(range(1, 11)) / len(values))


def test_booleans_are_profiled_as_true_and_false() -> None:
    inputs, table = _reference(pd.DataFrame({"active": [True, True, True, False]}))
    entry = profile_reference(inputs, table)["columns"]["active"]
    assert entry["categories"] == ["true", "false"]
    assert entry["proportions"] == [0.75, 0.25, 0.0]


def test_classifier_outputs_are_profiled_by_label() -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    labels = LogisticRegression(max_iter=500).fit(X, y).predict(X)
    inputs, table = _reference(X)
    profile = profile_reference(
        inputs, table, outputs={"label": labels}, output_task="classification", classes=[0, 1, 2]
    )
    json.dumps(profile, allow_nan=False)
    assert profile["outputs"]["name"] == "label"
    assert profile["outputs"]["categories"] == ["0", "1", "2"]
    monitor = DriftMonitor(profile, inputs)
    monitor.update_outputs({"label": np.repeat(labels, 2)})
    assert monitor.report().outputs is not None
    assert monitor.report().outputs.score == 0.0  # type: ignore[union-attr]


def test_profile_of_a_table_with_other_columns_is_refused(diabetes: pd.DataFrame) -> None:
    inputs, _ = _reference(diabetes)
    _, other = _reference(diabetes[["age", "bmi"]])
    with pytest.raises(ValueError, match="columns"):
        profile_reference(inputs, other)


# -- scores ---------------------------------------------------------------------------------------


def test_data_from_the_reference_distribution_is_stable(diabetes: pd.DataFrame) -> None:
    monitor, validator = _monitor(diabetes)
    monitor.update_table(validator.batch(_resample(diabetes, 20_000)))
    report = monitor.report()
    assert report.count == 20_000
    assert report.drifted == []
    assert all(f.status == "stable" and f.score is not None for f in report.features)
    assert max(f.score or 0.0 for f in report.features) < 0.05


def test_a_column_shifted_by_three_deviations_is_significant_and_the_others_stable(
    diabetes: pd.DataFrame,
) -> None:
    monitor, validator = _monitor(diabetes)
    current = _resample(diabetes, 20_000)
    current["bmi"] += 3 * diabetes["bmi"].std()
    monitor.update_table(validator.batch(current))
    report = monitor.report()
    assert report["bmi"].status == "significant"
    assert report.drifted == ["bmi"]
    assert {f.status for f in report.features if f.name != "bmi"} == {"stable"}


def test_a_change_of_category_frequencies_is_detected(plans: pd.DataFrame) -> None:
    monitor, validator = _monitor(plans)
    current = _resample(plans, 5000)
    rng = np.random.default_rng(2)
    current["plan"] = rng.choice(["basic", "plus", "pro"], len(current), p=[0.2, 0.3, 0.5])
    monitor.update_table(validator.batch(current))
    report = monitor.report()
    assert report["plan"].status == "significant"
    assert report["age"].status == report["income"].status == "stable"


def test_a_change_of_missing_rate_is_detected(plans: pd.DataFrame) -> None:
    monitor, validator = _monitor(plans)
    current = _resample(plans, 5000)
    current.loc[current.index % 10 < 3, "income"] = np.nan
    monitor.update_table(validator.batch(current))
    income = monitor.report()["income"]
    assert income.status == "significant"
    assert income.reference_missing_rate == pytest.approx(0.02, abs=0.005)
    assert income.current_missing_rate == current["income"].isna().mean()


def test_none_in_a_numeric_column_counts_as_missing(plans: pd.DataFrame) -> None:
    monitor, _ = _monitor(plans, min_records=1)
    monitor.update_record((40.0, "basic", None))
    monitor.update_record((40.0, "basic", math.nan))
    assert monitor.report()["income"].current_missing_rate == 1.0


def test_columns_have_insufficient_data_below_min_records(plans: pd.DataFrame) -> None:
    monitor, validator = _monitor(plans)
    current = validator.batch(_resample(plans, MIN_RECORDS - 1))
    monitor.update_table(current)
    report = monitor.report()
    assert {f.status for f in report.features} == {"insufficient data"}
    assert all(f.score is None for f in report.features)
    assert report.drifted == []
    monitor.update_record(validator.record(plans.iloc[0].to_dict()))
    assert all(f.score is not None for f in monitor.report().features)


def test_a_constant_reference_column_detects_a_new_value() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"version": np.full(1000, 3.0), "x": rng.normal(size=1000)})
    monitor, validator = _monitor(frame)
    monitor.update_table(validator.batch(frame))
    assert monitor.report()["version"].score == 0.0
    moved = frame.assign(version=4.0)
    monitor.reset()
    monitor.update_table(validator.batch(moved))
    assert monitor.report()["version"].status == "significant"
    assert monitor.report()["x"].score == 0.0


def test_an_unseen_category_counts_as_other() -> None:
    frame = pd.DataFrame({"plan": ["basic", "plus"] * 500})
    inputs, table = _reference(frame)
    profile = profile_reference(inputs, table)
    monitor = DriftMonitor(profile, inputs)
    for _ in range(300):
        monitor.update_record(("enterprise",))
    expected = population_stability_index([0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0])
    assert monitor.report()["plan"].score == pytest.approx(expected)


def test_an_output_label_shift_is_detected_batch_or_one_at_a_time() -> None:
    inputs, table = _reference(pd.DataFrame({"x": np.arange(400.0)}))
    labels = np.array(["no", "yes"] * 200)
    profile = profile_reference(inputs, table, outputs={"label": labels})
    batch, single = DriftMonitor(profile, inputs), DriftMonitor(profile, inputs)
    shifted = np.array(["yes"] * 300 + ["no"] * 50 + ["maybe"] * 50)
    batch.update_outputs({"label": shifted})
    for label in shifted:
        single.update_outputs({"label": np.array([label])})
    assert batch.report().outputs == single.report().outputs
    assert batch.report().outputs is not None
    assert batch.report().outputs.status == "significant"  # type: ignore[union-attr]


@settings(max_examples=300)
@given(pair=strategies.paired_shares())
def test_psi_is_non_negative_and_zero_for_identical_distributions(
    pair: tuple[list[float], list[float]],
) -> None:
    reference, current = pair
    assert population_stability_index(reference, current) >= 0.0
    assert population_stability_index(reference, reference) == 0.0


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=strategies.reference_data())
def test_any_reference_fed_back_scores_zero_by_record_and_by_table(
    data: tuple[TabularInputs, list[dict[str, Any]]],
) -> None:
    inputs, rows = data
    validator = TabularValidator(inputs)
    table = validator.batch(rows)
    profile = profile_reference(inputs, table)
    json.dumps(profile, allow_nan=False)
    by_record = DriftMonitor(profile, inputs, min_records=1)
    for row in rows:
        by_record.update_record(validator.record(row))
    report = by_record.report()
    assert all(feature.score == 0.0 for feature in report.features)
    # Short columns are binned by binary search, long ones by comparisons: both must agree.
    for compare_rows in (10**9, 0):
        with mock.patch.object(_profile, "_COMPARE_ROWS", compare_rows):
            by_table = DriftMonitor(profile, inputs, min_records=1)
            by_table.update_table(table)
            assert by_table.report() == report


# -- counting -------------------------------------------------------------------------------------


def test_update_record_and_update_table_count_alike(plans: pd.DataFrame) -> None:
    monitor_a, validator = _monitor(plans, min_records=1)
    monitor_b, _ = _monitor(plans, min_records=1)
    current = _resample(plans, 5000)  # more records than one buffer flush holds
    current.loc[::7, "age"] += 25.0
    current.loc[::11, "plan"] = "enterprise"
    monitor_a.update_table(validator.batch(current))
    for record in current.to_dict("records"):
        monitor_b.update_record(validator.record(record))
    assert monitor_a.count == monitor_b.count == len(current)
    assert monitor_a.report() == monitor_b.report()


def test_real_table_dtypes_count_alike_by_record_and_by_table() -> None:
    """Datetimes, nullable integers and booleans with gaps bin the same either way."""
    rng = np.random.default_rng(3)
    n = 1500
    stamps = pd.Series(pd.date_range("2024-01-01", periods=n, freq="h"))
    stamps[::9] = pd.NaT
    frame = pd.DataFrame(
        {
            "at": stamps,
            "count": pd.array(np.where(rng.random(n) < 0.2, None, rng.integers(0, 9, n)), "Int64"),
            "member": pd.array(np.where(rng.random(n) < 0.2, None, rng.random(n) < 0.5), "boolean"),
        }
    )
    monitor_a, validator = _monitor(frame, min_records=1)
    monitor_b, _ = _monitor(frame, min_records=1)
    monitor_a.update_table(validator.batch(frame))
    for record in frame.to_dict("records"):
        monitor_b.update_record(validator.record(record))
    assert monitor_a.count == monitor_b.count == n
    assert monitor_a.report() == monitor_b.report()
    assert all(feature.score == 0.0 for feature in monitor_a.report().features)


def test_integers_beyond_float_precision_count_alike_by_record_and_by_table() -> None:
    frame = pd.DataFrame({"id": np.arange(2**60, 2**60 + 500, dtype=np.int64)})
    monitor_a, validator = _monitor(frame, min_records=1)
    monitor_b, _ = _monitor(frame, min_records=1)
    current = frame.assign(id=frame["id"] + 1)
    monitor_a.update_table(validator.batch(current))
    for record in current.to_dict("records"):
        monitor_b.update_record(validator.record(record))
    assert monitor_a.report() == monitor_b.report()
    assert monitor_a.report()["id"].score != 0.0


def test_a_float32_batch_bins_as_its_records_do() -> None:
    # float32(9.9) < 9.9: compared in float32, numpy would round the edge and put it above.
    reference = pd.DataFrame({"x": np.arange(1000) / 10})
    monitor_a, validator = _monitor(reference, min_records=1)
    monitor_b, _ = _monitor(reference, min_records=1)
    current = reference.astype(np.float32)
    monitor_a.update_table(validator.batch(current))
    for record in current.to_dict("records"):
        monitor_b.update_record(validator.record(record))
    assert monitor_a.report() == monitor_b.report()


def test_a_record_and_its_output_count_together_as_separately() -> None:
    inputs, table = _reference(pd.DataFrame({"x": np.arange(400.0)}))
    profile = profile_reference(inputs, table, outputs={"value": np.arange(400.0) * 2})
    together, apart = DriftMonitor(profile, inputs), DriftMonitor(profile, inputs)
    for x in range(300):
        fields = {"value": np.array([x * 3.0])}
        together.update_record((float(x),), outputs=fields)
        apart.update_record((float(x),))
        apart.update_outputs(fields)
    assert together.report() == apart.report()
    assert together.report().outputs is not None
    assert together.report().outputs.count == 300  # type: ignore[union-attr]


def test_eight_threads_lose_no_count(diabetes: pd.DataFrame) -> None:
    monitor, validator = _monitor(diabetes)
    records = [validator.record(r) for r in _resample(diabetes, 2000).to_dict("records")]
    start = threading.Barrier(8)

    def feed() -> None:
        start.wait()
        for values in records:
            monitor.update_record(values)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to provoke lost updates
    try:
        threads = [threading.Thread(target=feed) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)

    single, _ = _monitor(diabetes)
    for values in records * 8:
        single.update_record(values)
    assert monitor.count == 8 * len(records)
    assert monitor.report() == single.report()
    assert {f.count for f in monitor.report().features} == {8 * len(records)}


def test_reset_forgets_every_count(plans: pd.DataFrame) -> None:
    monitor, validator = _monitor(plans)
    current = _resample(plans, 1000).assign(age=90.0)
    monitor.update_table(validator.batch(current))
    monitor.update_record(validator.record(current.iloc[0].to_dict()))
    assert monitor.report()["age"].status == "significant"
    monitor.reset()
    assert monitor.count == 0
    report = monitor.report()
    assert {f.status for f in report.features} == {"insufficient data"}
    assert all(f.count == 0 and f.current_missing_rate is None for f in report.features)
    monitor.update_table(validator.batch(_resample(plans, 1000)))
    assert monitor.report().drifted == []


def test_a_record_with_the_wrong_number_of_values_is_refused(plans: pd.DataFrame) -> None:
    monitor, _ = _monitor(plans)
    with pytest.raises(ValueError, match="3 values"):
        monitor.update_record((40.0, "basic"))
    assert monitor.count == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_counts_with_a_working_lock(plans: pd.DataFrame) -> None:
    monitor, validator = _monitor(plans)
    values = validator.record(plans.iloc[0].to_dict())
    monitor.update_record(values)
    # The fork hooks hold the lock across the fork: the child needs a fresh one to count.
    assert _fork_and_update(monitor, values) == 0
    monitor.update_record(values)  # and the parent's lock was released after the fork
    assert monitor.count == 2


def _fork_and_update(monitor: DriftMonitor, values: tuple[Any, ...]) -> int:
    """Fork; the child updates and reports, and exits 0 if its counts hold together."""
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process that has threads; the child only touches
        # the monitor, whose locks the fork hooks hand over.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            signal.alarm(10)  # a deadlock ends the child instead of the test run
            before = monitor.count
            monitor.update_record(values)
            report = monitor.report()
            counts = {feature.count for feature in report.features}
            code = 0 if report.count == before + 1 and counts == {before + 1} else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_process_forked_while_threads_update_gets_a_consistent_monitor(
    plans: pd.DataFrame,
) -> None:
    monitor, validator = _monitor(plans)
    values = validator.record(plans.iloc[0].to_dict())
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            monitor.update_record(values)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        codes = [_fork_and_update(monitor, values) for _ in range(5)]
    finally:
        stop.set()
        thread.join()
    assert codes == [0] * 5


# -- profiles that do not fit ---------------------------------------------------------------------


def test_a_profile_of_another_version_is_refused(plans: pd.DataFrame) -> None:
    inputs, table = _reference(plans)
    profile = {**profile_reference(inputs, table), "version": 2}
    with pytest.raises(ValueError, match="version 2"):
        DriftMonitor(profile, inputs)


def test_a_profile_without_a_column_of_the_inputs_is_refused(plans: pd.DataFrame) -> None:
    inputs, table = _reference(plans[["age"]])
    profile = profile_reference(inputs, table)
    wider, _ = _reference(plans)
    with pytest.raises(ValueError, match=r"\['plan', 'income'\]"):
        DriftMonitor(profile, wider)


def test_a_profile_binning_a_column_as_another_kind_is_refused(plans: pd.DataFrame) -> None:
    inputs, table = _reference(plans[["age"]])
    profile = profile_reference(inputs, table)
    as_string = TabularInputs(columns=(ColumnSpec(name="age", type="string", dtype="object"),))
    with pytest.raises(ValueError, match="'numeric'"):
        DriftMonitor(profile, as_string)


# -- reports --------------------------------------------------------------------------------------


def test_report_converts_to_json_and_pandas(plans: pd.DataFrame) -> None:
    monitor, validator = _monitor(plans)
    monitor.update_table(validator.batch(_resample(plans, 1000).assign(age=90.0)))
    report = monitor.report()
    document = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert document["count"] == 1000
    assert [f["name"] for f in document["features"]] == ["age", "plan", "income"]
    frame = report.to_pandas()
    assert list(frame["name"]) == ["age", "plan", "income"]
    assert list(frame.columns) == [
        "name",
        "role",
        "score",
        "status",
        "count",
        "reference_missing_rate",
        "current_missing_rate",
    ]
    assert report.drifted == ["age"]


def test_report_keeps_each_bin_with_its_reference_and_current_share(plans: pd.DataFrame) -> None:
    monitor, validator = _monitor(plans)
    assert monitor.report()["plan"].current_shares is None  # nothing counted yet
    current = _resample(plans, 1000).assign(plan="pro")
    monitor.update_table(validator.batch(current))
    report = monitor.report()
    plan = report["plan"]
    assert plan.kind == "categorical"
    assert plan.bins == ("basic", "plus", "pro", "other", "missing")
    assert plan.current_shares == (0.0, 0.0, 1.0, 0.0, 0.0)
    assert plan.reference_shares[:3] == pytest.approx((0.6, 0.3, 0.1), abs=0.02)
    assert plan.score == pytest.approx(
        population_stability_index(plan.reference_shares, plan.current_shares)
    )
    income = report["income"]
    assert income.kind == "numeric"
    assert len(income.bins) == len(income.reference_shares) == 11  # ten decile bins, missing
    assert income.bins[0].startswith("< ")
    assert income.bins[-2].startswith("≥ ")
    assert income.bins[-1] == "missing"
    assert income.reference_shares[-1] == income.reference_missing_rate
    assert income.current_shares is not None
    assert sum(income.current_shares) == pytest.approx(1.0)
    document = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert document["features"][1]["bins"] == list(plan.bins)
    assert document["outputs"] is None


def test_report_names_the_columns_when_one_is_unknown(plans: pd.DataFrame) -> None:
    monitor, _ = _monitor(plans)
    with pytest.raises(KeyError, match="'age', 'plan', 'income'"):
        monitor.report()["agee"]


def test_importing_the_drift_module_does_not_import_pandas() -> None:
    script = "import sys, modelkit._drift; print('pandas' in sys.modules)"
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "False"
