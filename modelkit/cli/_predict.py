"""``modelkit predict``: score a file of records into another, a chunk at a time."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._atomic import AtomicFile
from ..errors import InvalidInputError, ModelkitError
from ._app import EXIT_OK, command, trust_type_option, usage_error, version_policy_option
from ._files import DEFAULT_CHUNK_SIZE, FORMAT_NAMES, READERS, WRITERS, Chunk, Reject, format_of
from ._progress import Progress

if TYPE_CHECKING:
    from .._environment import VersionPolicy
    from .._model import Model
    from .._spec import Outputs

__all__ = ["predict"]


@command(
    "predict",
    epilog=(
        "\b\nExamples:\n"
        "  modelkit predict bundles/churn --input customers.csv --output scores.csv\n"
        "  modelkit predict bundles/churn --input events.jsonl --output scores.parquet \\\n"
        "      --rejects rejects.jsonl"
    ),
)
@click.argument("path", metavar="PATH", type=click.Path())
@click.option(
    "--input",
    "-i",
    "source",
    required=True,
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Records to score.",
)
@click.option(
    "--output",
    "-o",
    "target",
    required=True,
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Where to write the predictions.",
)
@click.option("--input-format", type=click.Choice(FORMAT_NAMES), help="Override the extension.")
@click.option("--output-format", type=click.Choice(FORMAT_NAMES), help="Override the extension.")
@click.option(
    "--rejects",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Write bad rows here (JSON lines) and score the rest, instead of failing.",
)
@click.option(
    "--predictions-only",
    is_flag=True,
    help="Write the prediction columns only, not the input columns.",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=DEFAULT_CHUNK_SIZE,
    metavar="N",
    help=f"Records per chunk (default {DEFAULT_CHUNK_SIZE:,}); memory grows with it.",
)
@version_policy_option
@trust_type_option
@click.option("--quiet", "-q", is_flag=True, help="No progress and no summary.")
def predict(
    *,
    path: str,
    source: str,
    target: str,
    input_format: str | None,
    output_format: str | None,
    rejects: str | None,
    predictions_only: bool,
    chunk_size: int,
    version_policy: VersionPolicy,
    trusted_types: tuple[str, ...],
    quiet: bool,
) -> int:
    """Score a file of records (JSON lines, CSV or Parquet) into another, in chunks.

    PATH is the bundle to score with. Formats come from the extensions (.jsonl/.ndjson, .csv,
    .parquet/.pq) or the --input-format/--output-format flags. Output rows are the input
    columns followed by the predictions: label and probability_<class> for classifiers, value
    for regressors (--predictions-only writes the predictions alone).

    A bad row stops the run with its line number and field, and no output is left; with
    --rejects FILE, bad rows go there (JSON lines: line, field, error, content) and the rest is
    scored.
    """
    from .. import load
    from .._spec import TabularInputs

    reading = format_of(source, input_format, "--input-format")
    writing = format_of(target, output_format, "--output-format")
    paths = [Path(source), Path(target)] + ([] if rejects is None else [Path(rejects)])
    resolved = [p.resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise usage_error("--input, --output and --rejects must be different files")
    if not Path(source).is_file():
        raise ModelkitError(f"The input file {source!r} does not exist.")

    model = load(path, version_policy=version_policy, trusted_types=trusted_types)
    signature = model.signature
    inputs = signature.inputs
    if not isinstance(inputs, TabularInputs) or signature.outputs.task not in (
        "classification",
        "regression",
    ):
        raise ModelkitError(
            f"modelkit predict scores tabular classifiers and regressors; {path!r} is a "
            f"{signature.kind} model with task {signature.outputs.task!r}. Call predict_batch "
            "from Python instead."
        )
    reader = READERS[reading](Path(source), inputs, keep_rows=not predictions_only)
    progress = Progress.on_terminal(reader.total, reader.done, quiet=quiet)
    started = time.perf_counter()
    scored = rejected = 0
    writer = None
    rejects_file: AtomicFile | None = None
    try:
        writer = WRITERS[writing](
            AtomicFile(Path(target), binary=writing == "parquet"),
            reader,
            _prediction_names(signature.outputs),
        )
        if rejects is not None:
            rejects_file = AtomicFile(Path(rejects))
        for chunk in reader.chunks(chunk_size):
            good, predictions = _score(model, chunk, reader.content)
            for reject in sorted(good.rejects, key=lambda r: r.line):
                if rejects_file is None:
                    raise InvalidInputError(
                        f"{source}: {reader.unit} {reject.line}: {reject.error}. Nothing was "
                        "written; pass --rejects FILE to set bad rows aside and score the rest.",
                        field=reject.field,
                    )
                rejects_file.handle.write(_reject_line(reader.unit, reject))
                rejected += 1
            if good.records:
                writer.write(good.rows, predictions)
                scored += len(good.records)
            progress.update(scored)
        writer.commit()
        if rejects_file is not None:
            rejects_file.commit()
    except BaseException:
        if writer is not None:
            writer.discard()
        if rejects_file is not None:
            rejects_file.discard()
        raise
    finally:
        reader.close()
    progress.update(scored, final=True)
    if not quiet:
        elapsed = time.perf_counter() - started
        summary = f"Scored {scored:,} rows of {source} into {target} in {elapsed:.1f} s"
        if rejects is not None:
            summary += f"; {rejected:,} rejected into {rejects}"
        click.echo(summary + ".", err=True)
    return EXIT_OK


def _reject_line(unit: str, reject: Reject) -> str:
    record = {
        unit: reject.line,
        "field": reject.field,
        "error": reject.error,
        "content": reject.content,
    }
    return json.dumps(record, ensure_ascii=False, default=str) + "\n"


def _score(
    model: Model[Any, Any], chunk: Chunk, render: Callable[[Any], Any]
) -> tuple[Chunk, dict[str, list[Any]]]:
    """Predict a chunk; rows the signature or the model refuses move to ``chunk.rejects``."""
    from .._scoring import prediction_columns, score_tolerant, take_rows

    if not chunk.records:
        return chunk, {}
    classes = model.signature.outputs.classes
    result = score_tolerant(
        lambda records: prediction_columns(model.predict_batch(records), classes),
        chunk.records,
        len(chunk.records),
        take_rows,
    )
    for refused in result.refused:
        where = refused.row
        chunk.rejects.append(
            Reject(
                chunk.lines[where], refused.field, refused.message, render(chunk.contents[where])
            )
        )
    good = chunk.subset(result.kept.tolist()) if result.refused else chunk
    return good, {name: column.tolist() for name, column in result.columns.items()}


def _prediction_names(outputs: Outputs) -> list[str]:
    """The prediction columns a model writes, for the header of an output without rows."""
    from .._predictions import probability_column

    if outputs.task == "regression":
        return ["value"]
    names = ["label"]
    if outputs.has_probabilities:
        names += [probability_column(cls) for cls in outputs.classes or ()]
    return names
