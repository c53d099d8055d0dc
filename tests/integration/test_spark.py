"""modelkit.spark on a real local Spark session: the same answers as predict_batch, checked
columns, positioned errors, and bundles verified on the executors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelkit

pyspark = pytest.importorskip("pyspark", reason="modelkit.spark needs pyspark (the spark extra)")
pytest.importorskip("pyarrow", reason="modelkit.spark needs pyarrow (the spark extra)")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Spark needs Java (17); none on PATH or in JAVA_HOME", allow_module_level=True)

import modelkit.spark  # noqa: E402 - after the skips, so a machine without pyspark skips cleanly

pytestmark = [
    pytest.mark.integration,
    # pyspark 4 warns on every pandas UDF when pandas is 3.x; it runs these tests correctly.
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]

IRIS_NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    saved = {name: os.environ.get(name) for name in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("modelkit-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        # Small Arrow batches, so that a partition spans several and row offsets are exercised.
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "64")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("OFF")
    yield session
    session.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def iris_frame() -> Any:
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True, as_frame=True)
    X.columns = IRIS_NAMES
    return X, y.map(dict(enumerate(["setosa", "versicolor", "virginica"])))


def _iris_bundle(path: Path, iris_frame: Any, *, version: str = "1.0.0") -> Path:
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame
    model = LogisticRegression(max_iter=500).fit(X, y)
    modelkit.save(model, path, name="iris", version=version, sample_input=X.head(20))
    return path


@pytest.fixture(scope="module")
def iris_bundle(tmp_path_factory: pytest.TempPathFactory, iris_frame: Any) -> Path:
    return _iris_bundle(tmp_path_factory.mktemp("spark") / "iris", iris_frame)


def _with_ids(frame: Any) -> Any:
    return frame.assign(row_id=np.arange(len(frame)), note=[f"n{i}" for i in range(len(frame))])


def _collect(df: Any) -> list[Any]:
    return df.orderBy("row_id").collect()


def test_joblib_labels_and_probabilities_match_predict_batch(
    spark: Any, iris_bundle: Path, iris_frame: Any
) -> None:
    X, _ = iris_frame
    frame = _with_ids(X)

    rows = _collect(modelkit.spark.predict(spark.createDataFrame(frame), iris_bundle))

    expected = modelkit.load(iris_bundle).predict_batch(X)
    assert [row.prediction.label for row in rows] == expected["label"].tolist()
    for row, probabilities in zip(rows, expected["probabilities"], strict=True):
        assert row.prediction.probabilities == dict(
            zip(["setosa", "versicolor", "virginica"], probabilities.tolist(), strict=True)
        )


def test_input_columns_are_kept_and_the_output_is_typed_without_a_job(
    spark: Any, iris_bundle: Path, iris_frame: Any
) -> None:
    group = f"typed-{uuid.uuid4().hex}"
    spark.sparkContext.setJobGroup(group, "modelkit.spark test")
    frame = _with_ids(iris_frame[0])
    df = spark.createDataFrame(frame)

    scored = modelkit.spark.predict(df, iris_bundle, output_col="species")

    assert scored.columns == [*df.columns, "species"]
    assert scored.schema["species"].dataType.simpleString() == (
        "struct<label:string,probabilities:map<string,double>>"
    )
    assert _jobs_in_group(spark, group) == []
    rows = _collect(scored)
    assert [row.note for row in rows] == frame["note"].tolist()
    assert [row.petal_width for row in rows] == frame["petal_width"].tolist()


def test_onnx_bundle_labels_match_predict_batch(spark: Any, tmp_path: Path) -> None:
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_classification(n_samples=400, n_features=6, random_state=0)
    frame = pd.DataFrame(X.astype(np.float32), columns=[f"f{j}" for j in range(6)])
    forest = RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0).fit(frame, y)
    path = tmp_path / "forest"
    modelkit.save(
        forest, path, name="forest", version="1.0.0", format="onnx", sample_input=frame.head(50)
    )

    rows = _collect(modelkit.spark.predict(spark.createDataFrame(_with_ids(frame)), path))

    expected = modelkit.load(path).predict_batch(frame)
    assert [row.prediction.label for row in rows] == expected["label"].tolist()
    # onnxruntime sums float32 trees in an order that depends on the batch size (Spark sends
    # batches of 64 rows here), so probabilities agree to float32 precision, not bit for bit.
    np.testing.assert_allclose(
        [row.prediction.probabilities["1"] for row in rows],
        expected["probabilities"][:, 1],
        rtol=0,
        atol=1e-6,
    )


def test_regressor_values_match_predict_batch(spark: Any, tmp_path: Path) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import GradientBoostingRegressor

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = GradientBoostingRegressor(n_estimators=20, random_state=0).fit(X, y)
    path = tmp_path / "diabetes"
    modelkit.save(model, path, name="diabetes", version="1.0.0", sample_input=X.head(20))

    scored = modelkit.spark.predict(spark.createDataFrame(_with_ids(X)), path)

    assert scored.schema["prediction"].dataType.simpleString() == "struct<value:double>"
    expected = modelkit.load(path).predict_batch(X)["value"].tolist()
    assert [row.prediction.value for row in _collect(scored)] == expected


def _jobs_in_group(spark: Any, group: str) -> list[int]:
    return list(spark.sparkContext.statusTracker().getJobIdsForGroup(group))


def test_a_missing_column_is_refused_before_any_job(
    spark: Any, iris_bundle: Path, iris_frame: Any
) -> None:
    group = f"missing-{uuid.uuid4().hex}"
    spark.sparkContext.setJobGroup(group, "modelkit.spark test")
    df = spark.createDataFrame(_with_ids(iris_frame[0])).withColumnRenamed("petal_width", "PW")

    with pytest.raises(modelkit.InvalidInputError) as info:
        modelkit.spark.predict(df, iris_bundle)

    assert info.value.field == "petal_width"
    assert "column 'petal_width' is missing" in str(info.value)
    assert _jobs_in_group(spark, group) == []
    df.count()  # the tracker does see this group's jobs
    assert _jobs_in_group(spark, group) != []


def test_a_mistyped_column_names_the_expected_and_actual_types(
    spark: Any, iris_bundle: Path, iris_frame: Any
) -> None:
    group = f"mistyped-{uuid.uuid4().hex}"
    spark.sparkContext.setJobGroup(group, "modelkit.spark test")
    df = spark.createDataFrame(_with_ids(iris_frame[0]))
    df = df.withColumn("sepal_width", df["sepal_width"].cast("string"))

    with pytest.raises(modelkit.InvalidInputError) as info:
        modelkit.spark.predict(df, iris_bundle)

    assert info.value.field == "sepal_width"
    assert "column 'sepal_width' is string, but the model takes a number" in str(info.value)
    assert _jobs_in_group(spark, group) == []


def test_integer_columns_are_accepted_for_number_inputs(
    spark: Any, iris_bundle: Path, iris_frame: Any
) -> None:
    X = (iris_frame[0] * 10).round().astype("int64")

    rows = _collect(modelkit.spark.predict(spark.createDataFrame(_with_ids(X)), iris_bundle))

    expected = modelkit.load(iris_bundle).predict_batch(X)["label"].tolist()
    assert [row.prediction.label for row in rows] == expected


def test_a_tampered_bundle_is_refused_on_the_executors(
    spark: Any, tmp_path: Path, iris_frame: Any
) -> None:
    # Its own version, so its digest is new and no worker holds it in its cache.
    path = _iris_bundle(tmp_path / "iris", iris_frame, version=f"tampered.{uuid.uuid4().hex}")
    scored = modelkit.spark.predict(spark.createDataFrame(_with_ids(iris_frame[0])), path)
    artifact = path / "artifacts" / "model.joblib"
    data = bytearray(artifact.read_bytes())
    data[-10] ^= 0xFF
    artifact.write_bytes(bytes(data))

    with pytest.raises(Exception) as info:
        scored.collect()

    assert "IntegrityError: modelkit.spark: the bundle" in str(info.value)
    assert "is not the one the driver checked" in str(info.value)


def test_a_skops_bundle_scores_with_the_types_the_caller_trusts(
    spark: Any, tmp_path: Path, iris_frame: Any
) -> None:
    pytest.importorskip("skops")
    from sklearn.tree import DecisionTreeClassifier

    X, y = iris_frame
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
    path = tmp_path / "tree"
    modelkit.save(tree, path, name="tree", version=uuid.uuid4().hex, format="skops", sample_input=X)
    df = spark.createDataFrame(_with_ids(X))

    with pytest.raises(Exception) as refused:
        modelkit.spark.predict(df, path).collect()
    assert "--trust-type sklearn.tree._tree.Tree" in str(refused.value)

    trusted = ["sklearn.tree._tree.Tree"]
    rows = _collect(modelkit.spark.predict(df, path, trusted_types=trusted))
    expected = modelkit.load(path, trusted_types=trusted).predict_batch(X)
    assert [row.prediction.label for row in rows] == expected["label"].tolist()


def test_an_unreadable_bundle_path_says_to_ship_it(
    spark: Any, tmp_path: Path, iris_frame: Any
) -> None:
    path = _iris_bundle(tmp_path / "iris", iris_frame, version=f"moved.{uuid.uuid4().hex}")
    scored = modelkit.spark.predict(spark.createDataFrame(_with_ids(iris_frame[0])), path)
    path.rename(tmp_path / "elsewhere")

    with pytest.raises(Exception) as info:
        scored.collect()

    assert "cannot read the bundle" in str(info.value)
    assert "pass ship=True" in str(info.value)


def test_a_shipped_bundle_is_read_from_the_executors_copy(
    spark: Any, tmp_path: Path, iris_frame: Any
) -> None:
    name = f"iris-{uuid.uuid4().hex}"
    path = _iris_bundle(tmp_path / name, iris_frame, version="shipped")
    X = iris_frame[0]

    scored = modelkit.spark.predict(spark.createDataFrame(_with_ids(X)), path, ship=True)

    assert any(entry.rstrip("/").endswith(name) for entry in spark.sparkContext.listFiles)
    expected = modelkit.load(path).predict_batch(X)["label"].tolist()
    assert [row.prediction.label for row in _collect(scored)] == expected
    # Local mode's executor shares the driver's SparkFiles directory: the copy is there.
    copy = Path(pyspark.SparkFiles.getRootDirectory()) / name
    assert modelkit.digest(copy) == modelkit.digest(path)


def _with_bad_rows(iris_frame: Any, bad: list[int]) -> Any:
    frame = _with_ids(iris_frame[0])
    frame["petal_width"] = frame["petal_width"].astype(object)
    for row in bad:
        frame.loc[row, "petal_width"] = None
    return frame


def test_a_bad_row_raises_with_its_partition_and_row(
    spark: Any, iris_bundle: Path, iris_frame: Any
) -> None:
    df = spark.createDataFrame(_with_bad_rows(iris_frame, [100])).coalesce(1)

    with pytest.raises(Exception) as info:
        modelkit.spark.predict(df, iris_bundle).collect()

    message = str(info.value)
    assert "InvalidInputError: modelkit.spark: model 'iris' 1.0.0 cannot score" in message
    assert "partition 0, row 100 of the partition: field 'petal_width' got NaN" in message


def test_on_error_null_gives_bad_rows_a_null_output_and_their_error(
    spark: Any, iris_bundle: Path, iris_frame: Any
) -> None:
    bad = [3, 70, 71, 149]
    frame = _with_bad_rows(iris_frame, bad)

    scored = modelkit.spark.predict(spark.createDataFrame(frame), iris_bundle, on_error="null")
    rows = _collect(scored)

    assert [row.row_id for row in rows if row.prediction is None] == bad
    assert {row.prediction_error for row in rows if row.prediction is None} == {
        "field 'petal_width' got NaN, but this field takes no missing values"
    }
    good = [row for row in rows if row.prediction is not None]
    assert all(row.prediction_error is None for row in good)
    X = iris_frame[0].drop(index=bad)
    expected = modelkit.load(iris_bundle).predict_batch(X)["label"].tolist()
    assert [row.prediction.label for row in good] == expected


def test_udf_scores_in_select(spark: Any, iris_bundle: Path, iris_frame: Any) -> None:
    score = modelkit.spark.udf(iris_bundle)
    df = spark.createDataFrame(_with_ids(iris_frame[0])).withColumnRenamed("sepal_length", "sl")

    rows = _collect(
        df.select(
            "row_id",
            score("sl", "sepal_width", "petal_length", "petal_width").label.alias("species"),
        )
    )

    expected = modelkit.load(iris_bundle).predict_batch(iris_frame[0])["label"].tolist()
    assert [row.species for row in rows] == expected
    assert score.return_type["label"].dataType.simpleString() == "string"


def test_the_task_closure_carries_no_model_and_checks_the_executors_python(
    iris_bundle: Path,
) -> None:
    from pyspark import cloudpickle

    from modelkit.spark._executor import executor_function
    from modelkit.spark._plan import Scorer

    scorer = Scorer.prepare(
        iris_bundle,
        sha256=None,
        ship=False,
        spark_context=None,
        adapter_options=None,
        trusted_types=None,
        with_errors=False,
    )
    payload = cloudpickle.dumps(executor_function(scorer.job))
    assert len(payload) < 20_000
    assert (iris_bundle / "artifacts" / "model.joblib").read_bytes()[:64] not in payload

    # Unpickled where modelkit and pyarrow cannot be imported, as on a badly set up executor.
    code = (
        "import sys, pickle\n"
        "sys.modules['modelkit'] = None\n"
        "sys.modules['pyarrow'] = None\n"
        "try:\n"
        "    pickle.loads(sys.stdin.buffer.read())\n"
        "except RuntimeError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], input=payload, capture_output=True, check=True
    )
    message = result.stdout.decode()
    assert "cannot import pyarrow, modelkit" in message
    assert "with model 'iris'" in message
    assert "spark-submit --archives" in message


def test_nulls_of_a_real_table_score_as_predict_batch(spark: Any, tmp_path: Path) -> None:
    """Penguins, with gaps in numbers, strings and an integer column: Spark's nulls are missing."""
    from palmerpenguins import load_penguins
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    table = load_penguins()
    X, y = table.drop(columns=["species"]), table["species"]
    numbers = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]
    pipeline = make_pipeline(
        make_column_transformer(
            (SimpleImputer(), numbers),
            (
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
                ),
                ["island", "sex"],
            ),
        ),
        HistGradientBoostingClassifier(max_iter=20),
    ).fit(X, y)
    path = tmp_path / "penguins"
    modelkit.save(pipeline, path, name="penguins", version="1", sample_input=X.dropna().head(50))
    frame = X.astype({"island": object, "sex": object, "year": "Int64"})
    frame = frame.assign(row_id=range(len(X)))
    frame.loc[::5, "year"] = None  # an integer column with gaps, as a real export has
    df = spark.createDataFrame(frame.astype(object).where(frame.notna(), None))

    rows = _collect(modelkit.spark.predict(df, path))

    expected = modelkit.load(path).predict_batch(frame.drop(columns=["row_id"]))
    assert [row.prediction.label for row in rows] == expected["label"].tolist()
