"""The tolerant scorer: score what you can, set aside what the model refuses, and say why.

``modelkit predict --rejects`` and ``modelkit.spark.predict(on_error="null")`` score files and
partitions that hold the odd bad row. Both go through :func:`score_tolerant`: the batch is scored
in one call, and only when that fails are the rows at fault found (the error names most of them;
the rest are bisected), set aside with their problems, and the other rows scored again.

:func:`prediction_columns` gives predictions as flat columns, with the one naming used for
tables everywhere (``label``, ``probability_<class>``, ``value``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._predictions import probability_column
from .errors import InvalidInputError

if TYPE_CHECKING:
    from ._predictions import Predictions

__all__ = [
    "Refused",
    "Scored",
    "prediction_columns",
    "problem_text",
    "score_tolerant",
    "take_rows",
]

_RECORD_PREFIX = re.compile(r"^Record \d+: ")


@dataclass(frozen=True)
class Refused:
    """One row set aside, with every problem reported for it.

    Attributes:
        row: the row's position in the batch.
        problems: ``{"field": ..., "message": ...}`` per problem, messages without the
            ``Record N:`` prefix (the row's position is the caller's to say).
    """

    row: int
    problems: tuple[Mapping[str, Any], ...]

    @property
    def field(self) -> str | None:
        """The field of the first problem, if it names one."""
        field = self.problems[0].get("field")
        return None if field is None else str(field)

    @property
    def message(self) -> str:
        """The first problem, then how many more there are."""
        text = str(self.problems[0].get("message", ""))
        more = len(self.problems) - 1
        if more:
            text += f" (and {more} more problem{'s' if more > 1 else ''})"
        return text

    @property
    def text(self) -> str:
        """Every problem, joined with ``"; "``."""
        return "; ".join(str(problem.get("message", "")) for problem in self.problems)


@dataclass(frozen=True)
class Scored:
    """What :func:`score_tolerant` made of a batch.

    Attributes:
        kept: positions of the rows scored, ascending.
        columns: the score's columns for those rows, in the order of ``kept`` (the score's own
            result, as it is, when the batch scored in one call).
        refused: the rows set aside, by position.
    """

    kept: np.ndarray
    columns: Mapping[str, Any]
    refused: list[Refused]


def score_tolerant(
    score: Callable[[Any], Mapping[str, np.ndarray]],
    batch: Any,
    length: int,
    take: Callable[[Any, np.ndarray], Any],
) -> Scored:
    """Score ``batch`` in one call; only if it fails, set the rows at fault aside and retry.

    Args:
        score: scores a batch into columns of its length; raises
            :class:`~modelkit.InvalidInputError` (naming rows by ``index`` where it can) when
            some row does not fit the signature or the model refuses it.
        batch: the rows to score.
        length: how many rows ``batch`` holds.
        take: ``take(batch, positions)`` is the batch of those rows, in that order.

    Returns:
        The scored rows' columns and the refused rows with their problems.
    """
    problems: dict[int, list[Mapping[str, Any]]] = {}
    parts: list[tuple[np.ndarray, Mapping[str, np.ndarray]]] = []
    pending = [np.arange(length)]
    while pending:
        rows = pending.pop()
        part = batch if len(rows) == length else take(batch, rows)
        try:
            parts.append((rows, score(part)))
            continue
        except InvalidInputError as exc:
            named = _named_rows(exc, len(rows))
        if named:
            for index, found in named.items():
                problems.setdefault(int(rows[index]), []).extend(found)
            rows = np.delete(rows, list(named))
        # The rest is halved: when an error names one row at a time (the runtime's refusals),
        # retrying the whole rest once per bad row would cost rows x bad rows.
        half = len(rows) // 2
        pending += [part for part in (rows[half:], rows[:half]) if len(part)]
    refused = [Refused(row, tuple(found)) for row, found in sorted(problems.items())]
    if len(parts) == 1 and not refused:
        return Scored(parts[0][0], parts[0][1], [])
    kept = np.concatenate([rows for rows, _ in parts]) if parts else np.arange(0)
    order = np.argsort(kept, kind="stable")
    columns: dict[str, np.ndarray] = {}
    for name in parts[0][1] if parts else ():
        columns[name] = np.concatenate([np.asarray(part[name]) for _, part in parts])[order]
    return Scored(kept[order], columns, refused)


def _named_rows(exc: InvalidInputError, size: int) -> dict[int, list[Mapping[str, Any]]]:
    """The problems of each row an error names; a batch of one row owns them all."""
    named: dict[int, list[Mapping[str, Any]]] = {}
    for problem in exc.errors:
        index = problem.get("index")
        if isinstance(index, int) and 0 <= index < size:
            named.setdefault(index, []).append(_unprefixed(problem))
    if size == 1 and not named:
        found = [_unprefixed(problem) for problem in exc.errors]
        named[0] = found or [{"field": exc.field, "message": str(exc).rstrip(".")}]
    return named


def _unprefixed(problem: Mapping[str, Any]) -> Mapping[str, Any]:
    return {**problem, "message": problem_text(problem)}


def problem_text(problem: Mapping[str, Any]) -> str:
    """A problem's message without its ``Record N:`` prefix or final period."""
    return _RECORD_PREFIX.sub("", str(problem.get("message", ""))).rstrip(".")


def prediction_columns(
    predictions: Predictions[Any], classes: Sequence[Any] | None
) -> dict[str, np.ndarray]:
    """Predictions as flat columns: ``label`` and ``probability_<class>`` for classifiers,
    ``value`` (or ``value_<j>`` per output) for regressors."""
    columns: dict[str, np.ndarray] = {}
    fields = predictions.fields
    if "label" in fields:
        columns["label"] = np.asarray(predictions["label"])
        if "probabilities" in fields:
            probabilities = predictions["probabilities"]
            for j, cls in enumerate(classes or ()):
                columns[probability_column(cls)] = probabilities[:, j]
    else:
        values = np.asarray(predictions["value"])
        if values.ndim == 1:
            columns["value"] = values
        else:
            for j in range(values.shape[1]):
                columns[f"value_{j}"] = values[:, j]
    return columns


def take_rows(batch: Any, rows: np.ndarray) -> Any:
    """``take`` for the batches modelkit accepts: a DataFrame, an array or a list of records."""
    if hasattr(batch, "iloc"):
        return batch.iloc[rows].reset_index(drop=True)
    if isinstance(batch, np.ndarray):
        return batch[rows]
    return [batch[int(row)] for row in rows]
