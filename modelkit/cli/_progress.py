"""The progress line of a long command, on stderr, only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import click

__all__ = ["Progress"]


class Progress:
    """A one-line progress bar on stderr, redrawn at most five times a second.

    Not ``click.progressbar``: the bar shows the share of the input read while the figures count
    the rows scored, two different measures; and nothing is drawn when stderr is not a terminal
    (CI, pipes, logs).

    Args:
        total: the size of the work, in the units ``done`` counts.
        done: how much of ``total`` is done so far.
        enabled: draw the bar; when False, :meth:`update` does nothing.
    """

    def __init__(self, total: int, done: Callable[[], int], *, enabled: bool) -> None:
        self.total = total
        self.done = done
        self.enabled = enabled
        self.started = time.perf_counter()
        self.shown = 0.0

    @classmethod
    def on_terminal(cls, total: int, done: Callable[[], int], *, quiet: bool) -> Progress:
        """A bar that is drawn unless ``quiet`` or stderr is not a terminal."""
        return cls(total, done, enabled=not quiet and sys.stderr.isatty())

    def update(self, rows: int, *, final: bool = False) -> None:
        """Redraw with ``rows`` rows processed; ``final`` draws 100% and ends the line."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if not final and now - self.shown < 0.2:
            return
        self.shown = now
        elapsed = max(now - self.started, 1e-9)
        total = self.total
        fraction = 1.0 if final else (min(self.done() / total, 1.0) if total else 0.0)
        filled = int(fraction * 30)
        bar = "#" * filled + "." * (30 - filled)
        line = f"\r[{bar}] {fraction:4.0%}  {rows:,} rows  {rows / elapsed:,.0f} rows/s"
        click.echo(line + ("\n" if final else ""), err=True, nl=False)
