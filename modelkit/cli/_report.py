"""``modelkit report``: the model report as one self-contained HTML page, with the drift of a
prediction log when one is given."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import click

from .._prediction_lines import REDACTED
from ..errors import BundleError, InvalidInputError, ModelkitError, ReproducibilityWarning
from ._app import (
    EXIT_OK,
    PROG,
    command,
    stdout_output_option,
    trust_type_option,
    version_policy_option,
)
from ._common import write_text

if TYPE_CHECKING:
    from .._drift import DriftMonitor
    from .._environment import VersionPolicy
    from .._model import Model
    from .._report import LogSummary

__all__ = ["MAX_LINE_BYTES", "log_monitor", "read_log", "report"]

#: The longest line of a prediction log read (a line holds one record, its text values cut to a
#: thousand characters): a longer one is counted as malformed and skipped, never held whole.
MAX_LINE_BYTES = 1024**2


@command(
    "report",
    epilog=(
        "\b\nExamples:\n"
        "  modelkit report bundles/churn -o churn.html\n"
        "  modelkit report bundles/churn --log predictions.jsonl -o churn.html"
    ),
)
@click.argument("path", metavar="BUNDLE", type=click.Path())
@click.option(
    "--log",
    "log_path",
    metavar="PREDICTIONS.jsonl",
    type=click.Path(exists=True, dir_okay=False),
    help="A prediction log (modelkit.PredictionLogger's JSON lines): this model's inputs and "
    "outputs in it are compared with the reference profile, per feature.",
)
@stdout_output_option
@version_policy_option
@trust_type_option
def report(
    *,
    path: str,
    log_path: str | None,
    output: str | None,
    version_policy: VersionPolicy,
    trusted_types: tuple[str, ...],
) -> int:
    """Write the model report: one HTML page that opens offline.

    It shows the bundle's identity, library versions, signature, conversion parity, the verdict
    of its reference cases (run now) and the training profile per feature as charts; with
    --log, each feature's live distribution against the reference with its drift score, the
    drifting features first. Charts need the 'report' extra (matplotlib); without it the page
    has the tables. The bundle is verified, then loaded to run its reference cases (a pickle
    runs code while it loads: use it on bundles you would load). Writes to stdout without -o.
    """
    from .. import load
    from .._report import render_page

    with warnings.catch_warnings():
        # A changed answer is logged as a warning line by the CLI; the page shows the verdict.
        warnings.simplefilter("ignore", ReproducibilityWarning)
        model = load(path, check="warn", version_policy=version_policy, trusted_types=trusted_types)
    drift = summary = None
    if log_path is not None:
        monitor = log_monitor(model, path)
        with open(log_path, "rb") as file:
            # A file name need not be UTF-8; the page must be.
            summary = read_log(file, model, monitor, source=click.format_filename(log_path))
        drift = monitor.report().to_dict()
        _warn_about(summary, model.name)
    write_text(output, render_page(model, drift=drift, log=summary))
    return EXIT_OK


def log_monitor(model: Model[Any, Any], path: str) -> DriftMonitor:
    """A drift monitor for the model's reference profile, over inputs that all take a missing
    value (a redacted field is read as one, and its column left out of the comparison).

    Raises:
        ModelkitError: the bundle at ``path`` has no reference profile, or no tabular inputs.
        BundleError: its reference profile is malformed.
    """
    from .._drift import DriftMonitor
    from .._spec import TabularInputs

    manifest = model.manifest
    inputs = model.signature.inputs
    profile = None if manifest is None else manifest.profile
    if not isinstance(inputs, TabularInputs) or profile is None:
        raise ModelkitError(
            f"{path!r} has no reference profile to compare a log with: it was saved without "
            "sample_input= or reference= (or its inputs are not a table)."
        )
    try:
        return DriftMonitor(profile, _nullable(inputs))
    except ValueError as exc:
        raise BundleError(f"The reference profile of {path!r} is unusable: {exc}") from None


def _nullable(inputs: Any) -> Any:
    columns = tuple(column.model_copy(update={"nullable": True}) for column in inputs.columns)
    return inputs.model_copy(update={"columns": columns})


@dataclass
class _Counts:
    lines: int = 0
    used: int = 0
    other_models: int = 0
    errors: int = 0
    malformed: int = 0
    invalid: int = 0
    without_inputs: int = 0
    redacted: dict[str, None] = field(default_factory=dict)  # an ordered set


def read_log(
    file: IO[bytes], model: Model[Any, Any], monitor: DriftMonitor, *, source: str
) -> LogSummary:
    """Count the inputs and outputs of ``model``'s lines of a prediction log into ``monitor``.

    Reads a line at a time (at most :data:`MAX_LINE_BYTES` of it in memory). Lines of other
    models and of failed calls are left out and counted; so are lines that are not JSON objects
    of the log's format (malformed) and inputs that do not fit the signature. A redacted field
    is not a value: it is read as missing and its column reported as redacted.

    Args:
        file: the log, opened in binary mode.
        model: the model whose lines are counted (by its name).
        monitor: the drift monitor to count into, over the model's inputs made nullable.
        source: the log's name, for the page.
    """
    from .._report import LogSummary

    reader = _LogReader(model, monitor)
    for line in _lines(file, reader.counts):
        reader.count(line)
    counts = reader.counts
    return LogSummary(
        source=source,
        lines=counts.lines,
        used=counts.used,
        other_models=counts.other_models,
        errors=counts.errors,
        malformed=counts.malformed,
        invalid=counts.invalid,
        without_inputs=counts.without_inputs,
        redacted=tuple(counts.redacted),
    )


def _lines(file: IO[bytes], counts: _Counts) -> Iterator[dict[str, Any] | None]:
    """Each non-blank line parsed as JSON (``None`` when it is not a JSON object)."""
    while True:
        raw = file.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            # Too long: skip to its end a chunk at a time, never holding it whole.
            while raw and not raw.endswith(b"\n"):
                raw = file.readline(MAX_LINE_BYTES)
            counts.lines += 1
            yield None
            continue
        if not raw.strip():
            continue
        counts.lines += 1
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            yield None
            continue
        yield parsed if isinstance(parsed, dict) else None


class _LogReader:
    """Counts one model's lines of a log into a drift monitor, and what it left out."""

    def __init__(self, model: Model[Any, Any], monitor: DriftMonitor) -> None:
        from .._spec import TabularInputs
        from .._validation import TabularValidator

        inputs = model.signature.inputs
        assert isinstance(inputs, TabularInputs)
        self.name = model.name
        self.columns = frozenset(column.name for column in inputs.columns)
        self.validator = TabularValidator(_nullable(inputs))
        self.output_field = _output_field(model)
        self.monitor = monitor
        self.counts = _Counts()

    def count(self, line: dict[str, Any] | None) -> None:
        counts = self.counts
        if line is None or not isinstance(line.get("model"), str):
            counts.malformed += 1
            return
        if line["model"] != self.name:
            counts.other_models += 1
            return
        if "error" in line:
            counts.errors += 1
            return
        outputs = _output(line.get("output"), self.output_field)
        record = line.get("input")
        if not isinstance(record, Mapping):
            if record is None or record == REDACTED:
                counts.without_inputs += 1
                if outputs is not None:
                    self.monitor.update_outputs(outputs)
            else:
                counts.invalid += 1
            return
        redacted = [
            column
            for column, value in record.items()
            if value == REDACTED and column in self.columns
        ]
        for column in redacted:
            counts.redacted[column] = None
        values = {**record, **dict.fromkeys(redacted)}
        try:
            validated = self.validator.record(values)
        except InvalidInputError:
            counts.invalid += 1
            return
        self.monitor.update_record(validated, outputs)
        counts.used += 1


def _output_field(model: Model[Any, Any]) -> str | None:
    """The output the drift profile compares: ``"label"`` or ``"value"``, if any."""
    manifest = model.manifest
    outputs = (
        None if manifest is None or manifest.profile is None else manifest.profile.get("outputs")
    )
    name = outputs.get("name") if isinstance(outputs, Mapping) else None
    return name if name in ("label", "value") else None


def _output(output: Any, field_name: str | None) -> dict[str, Any] | None:
    """The logged output's profiled field, when it holds a value of the profiled kind."""
    if field_name is None or not isinstance(output, Mapping):
        return None
    value = output.get(field_name)
    if value is None or value == REDACTED:
        return None
    if field_name == "value":
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        return {"value": value} if is_number and math.isfinite(value) else None
    return {"label": value} if isinstance(value, str | int | float | bool) else None


def _warn_about(summary: LogSummary, name: str) -> None:
    if summary.malformed:
        click.echo(
            f"{PROG}: warning: {summary.malformed} of {summary.lines} lines of "
            f"{summary.source!r} are not prediction-log lines (not JSON objects with a 'model', "
            f"or longer than {MAX_LINE_BYTES} bytes): skipped.",
            err=True,
        )
    if not summary.used:
        click.echo(
            f"{PROG}: warning: no line of {summary.source!r} has an input of model {name!r} "
            "to compare: the page shows no drift.",
            err=True,
        )
