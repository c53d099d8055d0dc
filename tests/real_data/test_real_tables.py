"""Every real table x pipeline: the joblib bundle answers exactly as scikit-learn, in batch and
record by record (a skops bundle too, on two tables); the ONNX bundle agrees on every row off a
tie, or conversion is refused with an error that names the step (see ``tables.py`` for the
tables, ``pipelines.py`` for the pipelines)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import modelkit
from tests.real_data import checks, pipelines, tables

# scikit-learn warns on every transform of a column that had no value at fit (fertility's 2012
# and 2013): a fact of the pipeline, not something modelkit should hide or fail on.
pytestmark = pytest.mark.filterwarnings(f"ignore:{checks.EMPTY_FEATURES_WARNING}:UserWarning")

CASES = [
    pytest.param(table, pipeline, id=f"{table}-{pipeline}")
    for table in tables.NAMES
    for pipeline in pipelines.NAMES
]


class Bundles:
    """Bundles saved once per table x pipeline x format, for every test that needs them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.saved: dict[tuple[str, str, str], Path] = {}

    def get(self, table: str, pipeline: str, format: str) -> Path:
        key = (table, pipeline, format)
        if key not in self.saved:
            self.saved[key] = checks.save(
                tables.load(table), pipeline, self.directory, format=format
            )
        return self.saved[key]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    with checks.one_thread():
        yield


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    return Bundles(tmp_path_factory.mktemp("real-tables"))


@pytest.mark.parametrize(("table", "pipeline"), CASES)
def test_joblib_bundle_answers_the_table_exactly_as_scikit_learn(
    bundles: Bundles, table: str, pipeline: str
) -> None:
    model = modelkit.load(bundles.get(table, pipeline, "joblib"))
    checks.check_batch(model, pipelines.fitted(table, pipeline), tables.load(table).X)


@pytest.mark.parametrize(("table", "pipeline"), CASES)
def test_joblib_bundle_answers_each_record_exactly_as_scikit_learn(
    bundles: Bundles, table: str, pipeline: str
) -> None:
    model = modelkit.load(bundles.get(table, pipeline, "joblib"))
    checks.check_records(model, pipelines.fitted(table, pipeline), tables.load(table).X)


# skops: two tables (a classification with strings and gaps, a regression) through every
# pipeline; the code that runs a loaded pipeline is the joblib bundles', tested on every table.
SKOPS_CASES = [
    pytest.param(table, pipeline, id=f"{table}-{pipeline}")
    for table in ("penguins", "diabetes")
    for pipeline in pipelines.NAMES
]


@pytest.mark.parametrize(("table", "pipeline"), SKOPS_CASES)
def test_skops_bundle_refuses_its_untrusted_types_then_answers_exactly_as_scikit_learn(
    bundles: Bundles, table: str, pipeline: str
) -> None:
    path = bundles.get(table, pipeline, "skops")
    # Each pipeline holds types skops does not trust by default (SimpleImputer's numpy.dtype,
    # the column selector, the trees or boosters): the caller trusts them by name.
    with pytest.raises(modelkit.BundleError) as refused:
        modelkit.load(path)
    assert "numpy.dtype" in refused.value.untrusted_types
    model = modelkit.load(path, trusted_types=refused.value.untrusted_types)
    checks.check_batch(model, pipelines.fitted(table, pipeline), tables.load(table).X)


@pytest.mark.parametrize(("table", "pipeline"), CASES)
def test_onnx_bundle_agrees_off_ties_or_conversion_names_the_step(
    bundles: Bundles, table: str, pipeline: str
) -> None:
    fitted, X = pipelines.fitted(table, pipeline), tables.load(table).X
    try:
        path = bundles.get(table, pipeline, "onnx")
    except modelkit.ConversionError as error:
        checks.check_refusal(error, fitted, X)
        return
    model = modelkit.load(path)
    checks.check_converted_batch(model, fitted, X)
    checks.check_records(model, fitted, X, exact=False)
