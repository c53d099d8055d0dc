"""How the real tables fare: joblib answers exactly, ONNX converts with parity or refuses.

For every table x pipeline of the real-data suite, this runs the suite's own checks and prints
one line per pair, the totals (per pair and per table), and the distinct failures grouped by
cause. It asserts nothing and exits 0; the tests are the judge, this is the report.

Run it from the repository root: ``python -m tests.real_data.survey`` (``--tables penguins,cars``
or ``--pipelines xgboost`` for a part).
"""

# ruff: noqa: T201 - a report printed to the terminal, as the benchmarks print theirs

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import modelkit
from tests.real_data import checks, pipelines, tables

PASS = "pass"
PARITY = "parity"
REFUSED = "refused by name"
"""Refused with an error that names the step (or the datetime column) it cannot convert."""


@dataclass(frozen=True)
class Outcome:
    """What one table x pipeline x format did: ``PASS``, ``PARITY``, ``REFUSED`` or a failure."""

    status: str
    detail: str = ""

    @property
    def is_good(self) -> bool:
        return self.status in (PASS, PARITY, REFUSED)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _attempt(check: Callable[[], Outcome]) -> Outcome:
    try:
        return check()
    except AssertionError as error:
        return Outcome("disagrees", _first_line(error))
    except Exception as error:  # noqa: BLE001 - every failure is reported, none stops the survey
        return Outcome("error", _first_line(error))


def survey_joblib(table: str, pipeline: str, directory: Path) -> Outcome:
    def check() -> Outcome:
        real = tables.load(table)
        model = modelkit.load(checks.save(real, pipeline, directory))
        fitted = pipelines.fitted(table, pipeline)
        checks.check_batch(model, fitted, real.X)
        checks.check_records(model, fitted, real.X)
        return Outcome(PASS)

    return _attempt(check)


def survey_onnx(table: str, pipeline: str, directory: Path) -> Outcome:
    def check() -> Outcome:
        real = tables.load(table)
        fitted = pipelines.fitted(table, pipeline)
        try:
            path = checks.save(real, pipeline, directory, format="onnx")
        except modelkit.ConversionError as error:
            try:
                checks.check_refusal(error, fitted, real.X)
            except AssertionError:
                return Outcome("refused, naming nothing", _first_line(error))
            return Outcome(REFUSED, _first_line(error))
        model = modelkit.load(path)
        checks.check_converted_batch(model, fitted, real.X)
        checks.check_records(model, fitted, real.X, exact=False)
        return Outcome(PARITY)

    return _attempt(check)


def _cause(detail: str) -> str:
    """A failure's message with row numbers, counts and values blurred, to group alike ones."""
    return re.sub(r"\d+(\.\d+)?(e-?\d+)?", "N", detail)[:160]


def _print_totals(
    results: dict[tuple[str, str], tuple[Outcome, Outcome]], names: Sequence[str]
) -> None:
    pairs = len(results)
    joblib_ok = sum(j.is_good for j, _ in results.values())
    onnx = Counter(o.status for _, o in results.values())
    print()
    print(f"pairs (table x pipeline): {pairs}")
    print(f"  joblib answers exactly (batch and records): {joblib_ok} of {pairs}")
    print(f"  ONNX converts with parity:                  {onnx[PARITY]} of {pairs}")
    print(f"  ONNX refused, naming the step or column:    {onnx[REFUSED]} of {pairs}")
    for status, count in sorted(onnx.items()):
        if status not in (PARITY, REFUSED):
            print(f"  ONNX {status + ':':<38} {count} of {pairs}")
    by_table: dict[str, list[tuple[Outcome, Outcome]]] = defaultdict(list)
    for (table, _), outcomes in results.items():
        by_table[table].append(outcomes)
    every_joblib = [t for t in names if all(j.is_good for j, _ in by_table[t])]
    every_onnx = [t for t in names if all(o.status == PARITY for _, o in by_table[t])]
    onnx_accounted = [t for t in names if all(o.is_good for _, o in by_table[t])]
    print(f"tables: {len(names)}")
    print(f"  every pipeline passes joblib exactly:       {len(every_joblib)} of {len(names)}")
    print(f"  every pipeline converts with parity:        {len(every_onnx)} of {len(names)}")
    print(f"  every pipeline converts or refused by name: {len(onnx_accounted)} of {len(names)}")


def _print_causes(results: dict[tuple[str, str], tuple[Outcome, Outcome]]) -> None:
    """Every message (failures and refusals), once per cause, with the pairs that gave it."""
    causes: dict[tuple[str, str, str], list[tuple[str, str]]] = defaultdict(list)
    for (table, pipeline), (joblib, onnx) in results.items():
        for format_, outcome in (("joblib", joblib), ("onnx", onnx)):
            if outcome.detail:
                key = (format_, outcome.status, _cause(outcome.detail))
                causes[key].append((f"{table}-{pipeline}", outcome.detail))
    if not causes:
        return
    print()
    print("failures and refusals, grouped by message:")
    for (format_, status, _), pairs in sorted(causes.items(), key=lambda item: -len(item[1])):
        print(f"- {format_} {status} ({len(pairs)}): {pairs[0][1][:400]}")
        print(f"    {', '.join(name for name, _ in pairs)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--tables", help="comma-separated table names (default: all)")
    parser.add_argument("--pipelines", help="comma-separated pipeline names (default: all)")
    args = parser.parse_args(argv)
    names = args.tables.split(",") if args.tables else list(tables.NAMES)
    models = args.pipelines.split(",") if args.pipelines else list(pipelines.NAMES)
    warnings.filterwarnings("ignore", message=checks.EMPTY_FEATURES_WARNING)
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)  # a refused graph's log lines say it again
    started = time.perf_counter()
    results: dict[tuple[str, str], tuple[Outcome, Outcome]] = {}
    width = max(len(f"{t}-{p}") for t in names for p in models)
    print(f"{'table-pipeline':<{width}}  {'joblib':<10}  onnx")
    with checks.one_thread(), tempfile.TemporaryDirectory(prefix="modelkit-survey-") as scratch:
        for table in names:
            for pipeline in models:
                directory = Path(scratch)
                joblib = survey_joblib(table, pipeline, directory)
                onnx = survey_onnx(table, pipeline, directory)
                results[table, pipeline] = (joblib, onnx)
                print(f"{table + '-' + pipeline:<{width}}  {joblib.status:<10}  {onnx.status}")
                sys.stdout.flush()
    _print_totals(results, names)
    _print_causes(results)
    print()
    print(f"surveyed in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
