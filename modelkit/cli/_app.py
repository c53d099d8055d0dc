"""The ``modelkit`` command group: usage lines, the options every command shares, and one way of
reporting what went wrong.

Exit codes: 0 when the command did what it was asked; 1 when it failed (one line on stderr,
``modelkit: error: ...``; ``--debug`` adds the traceback) or a bundle failed verification; 2 for
usage errors (unknown command, bad or missing arguments), after the usage line; 130 when
interrupted.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .._version import __version__
from ..errors import EnvironmentMismatchWarning, ModelkitError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "LOG_HANDLER",
    "PROG",
    "ByteSize",
    "Command",
    "Group",
    "Run",
    "cli",
    "command",
    "error_message",
    "stdout_output_option",
    "usage_error",
    "version_policy_option",
]

PROG = "modelkit"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: The name of the log handler that shows modelkit's warnings while a command runs.
LOG_HANDLER = "modelkit-cli"

_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass
class Run:
    """What one run of the command knows besides its options: whether to show tracebacks.

    It is the root context's ``obj``, so every command reaches it (``click.pass_obj``).
    """

    debug: bool = False


# -- usage lines and help -----------------------------------------------------------------------


class _Formatter(click.HelpFormatter):
    """Click's help, with the lower-case ``usage:`` line scripts have matched since argparse."""

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, args, "usage: " if prefix is None else prefix)


class _Context(click.Context):
    formatter_class = _Formatter


class Command(click.Command):
    """A subcommand whose usage line names its required options: ``PATH --input FILE ...``."""

    context_class = _Context

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        arguments = [
            piece
            for param in self.get_params(ctx)
            if isinstance(param, click.Argument)
            for piece in param.get_usage_pieces(ctx)
        ]
        required = [
            f"{param.opts[0]} {param.make_metavar(ctx)}"
            for param in self.get_params(ctx)
            if isinstance(param, click.Option) and param.required
        ]
        return [*arguments, *required, *filter(None, [self.options_metavar])]


class Group(click.Group):
    """A group of subcommands under ``modelkit`` (``modelkit import mlflow``): the usage lines
    and help of a command, its subcommands listed in the order they were added."""

    context_class = _Context

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


class _Group(Group):
    """The ``modelkit`` group: commands listed in the order they were added, and every failure
    reported as one line with its exit status, however the group is run (the console script,
    :func:`modelkit.cli.main` or click's ``CliRunner``)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        run = Run()
        with _diagnostics():
            try:
                result = super().main(
                    args,
                    PROG,  # not argv[0]: `python -m modelkit` is the same command
                    complete_var,
                    standalone_mode=False,
                    windows_expand_args=windows_expand_args,
                    obj=run,
                    **extra,
                )
                status = EXIT_OK if result is None else int(result)
            except click.UsageError as exc:
                _show_usage_error(exc)
                status = EXIT_USAGE
            except click.ClickException as exc:
                click.echo(f"{PROG}: error: {exc.format_message()}", err=True)
                status = exc.exit_code
            except click.Abort:  # click's name for KeyboardInterrupt
                click.echo(f"{PROG}: interrupted", err=True)
                status = EXIT_INTERRUPTED
            except Exception as exc:  # noqa: BLE001 - every failure becomes one line (or --debug)
                if run.debug:
                    traceback.print_exc(file=sys.stderr)
                click.echo(f"{PROG}: error: {error_message(exc, debug=run.debug)}", err=True)
                status = EXIT_FAILURE
        if standalone_mode:
            sys.exit(status)
        return status


def _show_usage_error(exc: click.UsageError) -> None:
    ctx = exc.ctx
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        click.echo(exc.format_message(), err=True)  # a bare `modelkit`: the whole help
        return
    if ctx is not None:
        click.echo(ctx.get_usage(), err=True)
        click.echo(f"Try '{ctx.command_path} -h' for help.", err=True)
    where = PROG if ctx is None else ctx.command_path
    click.echo(f"{where}: error: {_usage_message(exc)}", err=True)


def _usage_message(exc: click.UsageError) -> str:
    if not isinstance(exc, click.NoSuchCommand):
        return exc.format_message()
    message = f"unknown command {exc.command_name!r}"
    if exc.possibilities:  # click's near misses, the closest first
        return f"{message}. Did you mean {exc.possibilities[0]!r}?"
    ctx = exc.ctx
    if ctx is not None and isinstance(ctx.command, click.Group):
        message += f" (commands: {', '.join(ctx.command.list_commands(ctx))})"
    return message


def usage_error(message: str) -> click.UsageError:
    """Arguments that parse but do not make sense together: exit 2 after the usage line."""
    return click.UsageError(message, click.get_current_context(silent=True))


def error_message(exc: BaseException, *, debug: bool) -> str:
    """The one line a failure is shown as, after ``modelkit: error:``."""
    if isinstance(exc, ModelkitError | ValueError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename!s}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    hint = "" if debug else " (run with --debug for the traceback)"
    return f"unexpected {type(exc).__name__}: {exc}{hint}"


@contextlib.contextmanager
def _diagnostics() -> Iterator[None]:
    """Show modelkit's warnings as one ``modelkit: warning:`` line each, once.

    Loading logs a version mismatch on the ``modelkit`` logger and also issues an
    ``EnvironmentMismatchWarning``; a command shows the log line and silences the duplicate.
    """
    logger = logging.getLogger("modelkit")
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(LOG_HANDLER)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(f"{PROG}: warning: %(message)s"))
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False  # shown once, by this handler
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EnvironmentMismatchWarning)
            yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


# -- shared options -----------------------------------------------------------------------------


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(Run).debug = True


def _debug_option(*, hidden: bool) -> Callable[[_F], _F]:
    # On the group and on every command, so that `modelkit CMD ... --debug` works too.
    return click.option(
        "--debug",
        is_flag=True,
        expose_value=False,
        callback=_set_debug,
        hidden=hidden,
        help="Show the traceback of an error (for bug reports).",
    )


def stdout_output_option(function: _F) -> _F:
    """``--output``/``-o`` of the commands that print to stdout by default."""
    return click.option(
        "--output",
        "-o",
        metavar="FILE",
        type=click.Path(dir_okay=False),
        help="Write here instead of stdout.",
    )(function)


def version_policy_option(function: _F) -> _F:
    """``--version-policy``: what loading does about a bundle saved with other versions."""
    return click.option(
        "--version-policy",
        type=click.Choice(("warn", "error", "ignore")),
        default="warn",
        help="When the bundle was saved with other library versions (default: warn).",
    )(function)


def trust_type_option(function: _F) -> _F:
    """``--trust-type``: a type a skops bundle may hold beyond skops' defaults (repeatable)."""
    return click.option(
        "--trust-type",
        "trusted_types",
        metavar="NAME",
        multiple=True,
        help=(
            "Trust this type in a skops bundle, by full name (such as sklearn.tree._tree.Tree), "
            "after reviewing it; repeat for several. Other formats ignore it."
        ),
    )(function)


_BYTE_UNITS = {"": 1, "b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30}


if TYPE_CHECKING:
    _IntType = click.ParamType[int]
else:  # click < 8.5 has no type parameters on ParamType
    _IntType = click.ParamType


class ByteSize(_IntType):
    """A positive number of bytes: ``1048576``, ``512KiB``, ``10MiB``, ``1GiB``."""

    name = "bytes"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value  # a default
        text = str(value)
        match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", text)
        unit = _BYTE_UNITS.get(match.group(2).lower()) if match else None
        if match is None or unit is None or int(match.group(1)) < 1:
            self.fail(
                f"expected a positive size in bytes (such as 1048576, 512KiB or 10MiB), got "
                f"{text!r}",
                param,
                ctx,
            )
        return int(match.group(1)) * unit


def command(name: str, *, epilog: str | None = None) -> Callable[[Callable[..., int]], Command]:
    """Make a function a subcommand: its docstring is the help, its first line the summary."""

    def decorate(function: Callable[..., int]) -> Command:
        summary = (function.__doc__ or "").strip().splitlines()[0]
        return click.command(name, cls=Command, short_help=summary, epilog=epilog)(
            _debug_option(hidden=True)(function)
        )

    return decorate


# -- the group ----------------------------------------------------------------------------------


@click.group(
    PROG,
    cls=_Group,
    invoke_without_command=True,
    no_args_is_help=True,
    subcommand_metavar="COMMAND [ARGS]...",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=(
        "\b\nExit status: 0 success, 1 failure (one line on stderr), 2 usage error.\n"
        f"Run '{PROG} COMMAND --help' for a command's options."
    ),
)
@click.version_option(__version__, "--version", prog_name=PROG, message="%(prog)s %(version)s")
@_debug_option(hidden=False)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Inspect, verify, pin, convert, score, benchmark and serve modelkit bundles."""
    # Called without a command only with options (`modelkit --debug`); bare, it shows the help.
    if ctx.invoked_subcommand is None:
        group = ctx.command
        assert isinstance(group, click.Group)
        raise usage_error(f"missing command: one of {', '.join(group.list_commands(ctx))}")
