"""What every benchmark script prints: the machine it ran on, and tables of timings."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from collections.abc import Sequence


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


def print_environment(versions: Sequence[tuple[str, str]], mode: str) -> None:
    """The interpreter, the libraries measured, the CPUs and load, and the run's mode."""
    print("environment")
    print(f"  python        {platform.python_version()} ({sys.executable})")
    print(f"  platform      {platform.platform()}")
    for name, version in versions:
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
