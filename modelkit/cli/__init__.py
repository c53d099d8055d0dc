"""The ``modelkit`` command: inspect, verify, pin, convert, score, benchmark and serve bundles.

Run ``modelkit --help`` (or ``python -m modelkit --help``). Every command works with modelkit's
run-time dependencies alone, except ``predict`` on Parquet files (the ``parquet`` extra),
``convert`` (``convert``), ``import mlflow`` (``mlflow-import``) and ``serve`` (``serve``).

The command is a click group, :data:`cli`, one module per command; :func:`main` runs it and
returns the exit status: 0 when the command did what it was asked; 1 when it failed (one line
on stderr, ``modelkit: error: ...``; ``--debug`` adds the traceback) or a bundle failed
verification; 2 for usage errors (unknown command, bad or missing arguments), after a usage
line; 130 when interrupted.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._app import cli
from ._bench import bench
from ._convert import convert
from ._import import import_group
from ._inspect import inspect
from ._lock import lock
from ._pack import pack
from ._predict import predict
from ._report import report
from ._schema import schema
from ._serve import serve
from ._verify import verify

__all__ = ["cli", "main"]

# In the order `modelkit --help` lists them: what one does with a bundle, roughly in turn.
for _command in (
    inspect,
    verify,
    lock,
    schema,
    report,
    predict,
    convert,
    import_group,
    pack,
    bench,
    serve,
):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``modelkit`` command with ``argv`` (``sys.argv[1:]`` by default).

    Returns:
        The exit status: 0 success, 1 failure, 2 usage error (130 when interrupted).
    """
    status: int = cli.main(argv, standalone_mode=False)
    return status
