"""What every benchmark script shares: alternating measurement rounds, targets, and the
printed report (the machine it ran on, and tables of timings)."""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any


def format_time(ns: float) -> str:
    """A duration in nanoseconds, in the unit that reads best."""
    if abs(ns) >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if abs(ns) >= 1e3:
        return f"{ns / 1e3:.2f} us"
    return f"{ns:.0f} ns"


def spread(samples: list[float]) -> str:
    """The interquartile range as a percentage of the median: how noisy the rounds were."""
    if len(samples) < 4:
        return "-"
    q1, _, q3 = statistics.quantiles(samples, n=4)
    return f"{100 * (q3 - q1) / statistics.median(samples):.0f}%"


def print_table(rows: Sequence[Sequence[str]], *, left: set[int]) -> None:
    """Print ``rows`` (the first is the header) in aligned columns; ``left`` ones left-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(width) if i in left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))


def print_environment(packages: Sequence[str], mode: str) -> None:
    """The interpreter, the libraries measured (by distribution name), the CPUs and load, and
    the run's mode."""
    print("environment")
    print(f"  python        {platform.python_version()} ({sys.executable})")
    print(f"  platform      {platform.platform()}")
    for name in packages:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "not installed"
        print(f"  {name:<13} {version}")
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"  cpus          {os.cpu_count()} (usable by this process: {affinity})")
    if hasattr(os, "getloadavg"):
        print(f"  load average  {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for variable in ("OPENBLAS_CORETYPE", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        if variable in os.environ:
            print(f"  {variable:<13} {os.environ[variable]}")
    print(f"  mode          {mode}")
    print()


@dataclass(frozen=True)
class Target:
    """What modelkit should stay within: a ratio of medians, or a difference in microseconds."""

    max_ratio: float | None = None
    max_extra_us: float | None = None

    def describe(self) -> str:
        if self.max_ratio is not None:
            return f"<= {self.max_ratio:g}x"
        if self.max_extra_us is not None:
            return f"<= +{self.max_extra_us:g} us"
        return "(context)"

    def is_met(self, raw_ns: float, wrapped_ns: float) -> str:
        if self.max_ratio is not None:
            return "yes" if wrapped_ns / raw_ns <= self.max_ratio else "NO"
        if self.max_extra_us is not None:
            return "yes" if (wrapped_ns - raw_ns) / 1000 <= self.max_extra_us else "NO"
        return ""


@dataclass(frozen=True)
class Result:
    name: str
    raw: list[float]
    wrapped: list[float]
    target: Target

    @property
    def raw_median(self) -> float:
        return statistics.median(self.raw)

    @property
    def wrapped_median(self) -> float:
        return statistics.median(self.wrapped)

    @property
    def paired_ratio(self) -> float:
        """The median of each round's ratio: the two sides of a round ran back to back, so a
        slow stretch of the machine cancels out of their ratio."""
        return statistics.median(w / r for r, w in zip(self.raw, self.wrapped, strict=True))


def raw_session(model: Path | bytes, *, threads: int | None = None) -> Any:
    """An onnxruntime session on the CPU, as hand-written code creates one."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(
        model if isinstance(model, bytes) else str(model),
        sess_options=options,
        providers=["CPUExecutionProvider"],
    )


# -- measuring --------------------------------------------------------------------------------


def time_per_call(function: Callable[[Any], Any], inputs: Sequence[Any]) -> float:
    """Nanoseconds per call of ``function`` over ``inputs``, garbage collected beforehand."""
    # Collect outside the timed loop so neither side pays for the other's garbage; the collector
    # stays enabled inside it, because a real caller pays for the garbage its own calls make.
    gc.collect()
    start = time.perf_counter_ns()
    for item in inputs:
        function(item)
    return (time.perf_counter_ns() - start) / len(inputs)


def compare(
    name: str,
    raw: Callable[[Any], Any],
    wrapped: Callable[[Any], Any],
    inputs: Sequence[Any],
    *,
    rounds: int,
    warmup: Sequence[Any],
    target: Target,
) -> Result:
    """Alternate rounds of ``raw`` and ``wrapped`` on the same inputs, swapping who goes first."""
    for item in warmup:
        raw(item)
        wrapped(item)
    raw_times: list[float] = []
    wrapped_times: list[float] = []
    for round_ in range(rounds):
        pair = [(raw, raw_times), (wrapped, wrapped_times)]
        if round_ % 2:
            pair.reverse()
        for function, times in pair:
            times.append(time_per_call(function, inputs))
    return Result(name, raw_times, wrapped_times, target)


def quick_parser(doc: str | None, quick_help: str) -> argparse.ArgumentParser:
    """The command line every script takes: its docstring's first line, and ``--quick``."""
    parser = argparse.ArgumentParser(description=(doc or "").partition("\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    return parser


def print_results(results: list[Result], *, per: str = "call", sides: str = "") -> None:
    """The legend, then one row per comparison; ``sides`` says what raw and modelkit are."""
    legend = f"Medians per {per}. {sides + ' ' if sides else ''}ratio: modelkit median / raw "
    legend += "median (what 'met' judges); paired: median of the per-round ratios; IQR: spread "
    legend += "of the rounds, as % of the median."
    print(textwrap.fill(legend, width=96, break_on_hyphens=False))
    print()
    header = (
        "benchmark",
        "raw",
        "modelkit",
        "diff",
        "ratio",
        "paired",
        "target",
        "met",
        "IQR raw/mk",
    )
    rows = [header]
    for result in results:
        raw, wrapped = result.raw_median, result.wrapped_median
        diff = wrapped - raw
        rows.append(
            (
                result.name,
                format_time(raw),
                format_time(wrapped),
                ("+" if diff >= 0 else "-") + format_time(abs(diff)),
                f"{wrapped / raw:.3f}x",
                f"{result.paired_ratio:.3f}x",
                result.target.describe(),
                result.target.is_met(raw, wrapped),
                f"{spread(result.raw)}/{spread(result.wrapped)}",
            )
        )
    print_table(rows, left={0, 6, 7})


def print_load_average() -> None:
    """The load average at the end of a run: compare it with the one printed at the start."""
    if hasattr(os, "getloadavg"):
        print()
        print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
