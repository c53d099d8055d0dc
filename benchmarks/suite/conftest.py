"""The regression suite: each modelkit path next to the raw runtime under it, results kept in git.

Every benchmark runs once per ``side``: ``raw`` calls scikit-learn, joblib or onnxruntime as
hand-written code would, ``modelkit`` calls the same model, on the same inputs, through modelkit.
The two share a ``benchmark.group``, so pytest-benchmark's table shows them together; the hooks
below add the ratio of their medians (modelkit / raw) to each stored benchmark's ``extra_info``
and print the ratios at the end of the run, next to those of the run compared against, because
a ratio survives a busy machine better than an absolute time does.

Results are stored in ``benchmarks/results`` unless ``--benchmark-storage`` says otherwise;
benchmarks/README.md gives the commands. The models are fitted once per session with the data
and pipeline helpers of the benchmark scripts.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import warnings
from collections import defaultdict
from collections.abc import Callable, Generator, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.logger import PytestBenchmarkWarning
from pytest_benchmark.session import PerformanceRegression

BENCHMARKS = Path(__file__).resolve().parents[1]
# The scripts import their shared module as a top-level `_report`: put their directory on the path
# so that the suite imports their helpers instead of copying them.
sys.path.insert(0, str(BENCHMARKS))

import bench_joblib  # noqa: E402
import bench_speed  # noqa: E402
from _report import print_table, raw_session  # noqa: E402

import modelkit  # noqa: E402

RESULTS = BENCHMARKS / "results"
# What the suite changes of pytest-benchmark's defaults, as (its default, the suite's): results kept
# in the repository, longer runs than one second (two shared cores are noisy), and a table that
# shows the median that --benchmark-compare-fail judges, with the runs of one test side by side.
SUITE_OPTIONS: dict[str, tuple[object, object]] = {
    "benchmark_storage": ("file://./.benchmarks", f"file://{RESULTS}"),
    "benchmark_max_time": ("1.0", "3.0"),
    "benchmark_columns": (None, ["median", "iqr", "min", "max", "rounds"]),
    "benchmark_sort": ("min", "name"),
}
# modelkit's default intra-op threads for an ONNX session: the raw side runs with the same options,
# so that a ratio measures modelkit's work and not a choice of threads.
ONNX_THREADS = 1
TRAINING_ROWS = 5000
SAMPLE_ROWS = 500
RATIOS = pytest.StashKey[list[tuple[str, dict[str, float]]]]()


def pytest_configure(config: pytest.Config) -> None:
    # Runs before pytest-benchmark's own pytest_configure (trylast) reads the options; an option
    # given on the command line is left alone (unless it spells out the plugin's default).
    for name, (plugin_default, suite_default) in SUITE_OPTIONS.items():
        if config.getoption(name) == plugin_default:
            setattr(config.option, name, suite_default)
    # pytest-benchmark says through warnings that a stored run comes from another machine or
    # that there is nothing to compare with; the project's `filterwarnings = error` would turn
    # them into internal errors: shown instead, now (configuration is under way) and later.
    warnings.filterwarnings("default", category=PytestBenchmarkWarning)
    config.addinivalue_line(
        "filterwarnings",
        f"default::{PytestBenchmarkWarning.__module__}.{PytestBenchmarkWarning.__qualname__}",
    )


# -- the ratio of each pair ------------------------------------------------------------------


def _is_current(source: object) -> bool:
    """Whether a row of the grouped stats is this run's: compared runs have a file name."""
    return source in (None, False, "NOW")


def _ratios(rows: Iterable[tuple[str, str, str, float]]) -> dict[str, dict[str, float]]:
    """modelkit median / raw median for each group and run, from ``(group, run, side, median)``."""
    medians: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for group, run, side, median in rows:
        medians[group, run][side] = median
    ratios: dict[str, dict[str, float]] = defaultdict(dict)
    for (group, run), sides in medians.items():
        if sides.keys() == {"raw", "modelkit"}:
            ratios[group][run] = sides["modelkit"] / sides["raw"]
    return ratios


def _side(benchmark: Mapping[str, Any]) -> str:
    params: Mapping[str, Any] = benchmark.get("params") or {}
    return str(params.get("side", ""))


def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: list[Any], output_json: dict[str, Any]
) -> None:
    """Store each pair's ratio in both of its benchmarks, for whoever reads the JSON later."""
    entries = output_json["benchmarks"]
    ratios = _ratios(
        (entry["group"], "now", _side(entry), entry["stats"]["median"]) for entry in entries
    )
    for entry in entries:
        ratio = ratios.get(entry["group"], {}).get("now")
        if ratio is not None:
            entry["extra_info"]["ratio"] = round(ratio, 4)


@pytest.hookimpl(wrapper=True)
def pytest_benchmark_group_stats(
    config: pytest.Config, benchmarks: list[dict[str, Any]], group_by: str
) -> Generator[None, Any, Any]:
    """Note the ratios of this run and of the runs compared against, as the table is grouped."""
    ratios = _ratios(
        (
            bench["group"],
            "now" if _is_current(bench["source"]) else str(bench["source"]),
            _side(bench),
            bench["median"],
        )
        for bench in benchmarks
    )
    config.stash[RATIOS] = sorted(ratios.items())
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> Generator[None, None, None]:
    # After pytest-benchmark's table, and also when it has just listed regressions: its exception
    # would end the run in a traceback, where a one-line exit with status 1 says as much.
    try:
        yield
    except PerformanceRegression:
        _write_ratios(terminalreporter, config)
        pytest.exit("benchmarks slower than --benchmark-compare-fail allows (listed above)", 1)
    else:
        _write_ratios(terminalreporter, config)


def _write_ratios(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    ratios = config.stash.get(RATIOS, [])
    if ratios:
        terminalreporter.section("modelkit / raw, ratio of medians (lower is better)")
        terminalreporter.write(_ratio_table(ratios))


def _ratio_table(ratios: list[tuple[str, dict[str, float]]]) -> str:
    runs = ["now", *sorted({run for _, by_run in ratios for run in by_run} - {"now"})]
    rows = [("group", *map(_short_run_name, runs))]
    for group, by_run in ratios:
        rows.append((group, *(f"{by_run[run]:.3f}x" if run in by_run else "-" for run in runs)))
    with contextlib.redirect_stdout(io.StringIO()) as table:
        print_table(rows, left={0})
    return table.getvalue()


def _short_run_name(run: str) -> str:
    """``0001_<commit>_<date>_...`` (an autosaved run) as ``0001_<short commit>``, as
    pytest-benchmark's own table names it; a run saved under a name keeps it."""
    number, _, rest = run.partition("_")
    commit = rest.partition("_")[0]
    if re.fullmatch("[0-9a-f]{40}", commit):
        return f"{number}_{commit[:7]}"
    return run


# -- the models, fitted once per session -----------------------------------------------------


@pytest.fixture(params=["raw", "modelkit"])
def side(request: pytest.FixtureRequest) -> str:
    """Which side of a pair a benchmark measures: the raw runtime, or modelkit over it."""
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def ort_session() -> Callable[[Path | bytes], Any]:
    """Create an onnxruntime session as hand-written code does, with modelkit's default threads."""

    def create(model: Path | bytes) -> Any:
        return raw_session(model, threads=ONNX_THREADS)

    return create


@pytest.fixture(scope="session")
def training() -> tuple[Any, Any]:
    """bench_speed.py's table: 8 numbers and 2 strings, and a binary target."""
    return bench_speed.mixed_data(TRAINING_ROWS, seed=0)


@pytest.fixture(scope="session")
def sample_input(training: tuple[Any, Any]) -> Any:
    """The rows each bundle is saved with."""
    return training[0][:SAMPLE_ROWS]


@pytest.fixture(scope="session")
def fresh() -> Any:
    """10,000 rows the models have not seen: the batch, and the pool of single records."""
    frame, _ = bench_speed.mixed_data(bench_speed.BATCH_ROWS, seed=1)
    return frame


@pytest.fixture(scope="session")
def record_pool(fresh: Any) -> list[tuple[dict[str, Any], Any]]:
    """Records as a service receives them, each with the 1-row DataFrame scikit-learn takes."""
    rows = fresh[: bench_speed.RECORD_POOL]
    return [(record, rows.iloc[[i]]) for i, record in enumerate(rows.to_dict("records"))]


@pytest.fixture(scope="session")
def pipelines(training: tuple[Any, Any]) -> dict[str, Any]:
    """bench_joblib.py's pipelines, by name: logistic regression, random forest and gradient
    boosting after the same ColumnTransformer, fitted."""
    frame, y = training
    return {
        name: bench_speed.fit_pipeline(frame, y, final)
        for name, final in bench_joblib.pipelines().items()
    }


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bundles")


@pytest.fixture(scope="session")
def joblib_models(
    pipelines: dict[str, Any], sample_input: Any, bundles: Path
) -> dict[str, modelkit.Model[Any, Any]]:
    """The pipelines saved with the default format (joblib), and loaded."""
    models = {}
    for name, pipeline in pipelines.items():
        slug = name.replace(" ", "-")
        path = bundles / f"{slug}-joblib"
        modelkit.save(pipeline, path, name=slug, version="1", sample_input=sample_input)
        models[name] = modelkit.load(path)
    return models
