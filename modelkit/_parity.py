"""The parity check: a converted graph must answer like scikit-learn before anything is written.

Both runtimes score the training sample and rows generated from the signature (around the
sample's or a drift profile's values, some left missing); labels must match, and probabilities or
values agree within a tolerance. A different label where scikit-learn's own top two probabilities
tie is not counted (see :data:`TIE_TOLERANCE`). The report goes into the bundle's manifest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._protocol import RejectedError, first_line
from ._spec import ColumnSpec, Table, TabularInputs, is_missing, python_scalar
from ._validation import TabularValidator
from .errors import ConversionError, InvalidInputError

__all__ = [
    "GENERATED_ROWS",
    "MISSING_RATE",
    "PROBABILITY_TOLERANCE",
    "TIE_TOLERANCE",
    "VALUE_TOLERANCE",
    "check_parity",
    "compare",
    "generate_rows",
]

#: Largest absolute difference allowed between scikit-learn's and ONNX's probabilities. The graph
#: computes in float32 where scikit-learn uses float64; differences are typically below 1e-6.
PROBABILITY_TOLERANCE = 1e-4
#: Regression values must agree within ``VALUE_TOLERANCE * max(1, |value|)``.
VALUE_TOLERANCE = 1e-4
#: Rows generated from the signature, on top of the sample, for the parity check.
GENERATED_ROWS = 1000
#: The share of generated values left missing in each column the model accepts missing in.
MISSING_RATE = 0.1
#: scikit-learn's top two probabilities this close (relative to the top one) are a tie: a graph
#: computing in float32 may pick either label, so a different label there is no disagreement.
#: So is a gap within twice the row's probability difference (itself within the tolerance).
TIE_TOLERANCE = 1e-6
_TIES_SHOWN = 5
_SEED = 0
_WORST_SHOWN = 5


def check_parity(
    reference: Any,
    converted: Any,
    *,
    inputs: TabularInputs,
    sample_input: Any,
    profile: Mapping[str, Any] | None,
    task: str,
    has_probabilities: bool,
) -> dict[str, Any]:
    """Check that the converted runner answers like scikit-learn's; return the parity report.

    Both score the sample and :data:`GENERATED_ROWS` rows generated from it (or the profile).

    Args:
        reference: the scikit-learn runner.
        converted: the ONNX runner.
        inputs: the signature's inputs, which the rows must fit.
        sample_input: training rows, or ``None`` to check generated rows alone.
        profile: a drift profile to generate rows from, when there is no sample.
        task: ``"classification"`` or ``"regression"``.
        has_probabilities: whether the classifier gives probabilities to compare.

    Returns:
        The parity report the manifest records.

    Raises:
        ConversionError: the sample does not fit the signature, a runtime refuses rows, or the
            answers differ beyond the tolerances (the message shows the worst rows).
    """
    sample = None
    if sample_input is not None:
        try:
            sample = TabularValidator(inputs).batch(sample_input)
        except InvalidInputError as exc:
            raise ConversionError(f"The sample input does not fit the signature: {exc}") from exc
    generated = generate_rows(
        inputs,
        sample,
        profile,
        GENERATED_ROWS,
        np.random.default_rng(_SEED),
        missing_rate=MISSING_RATE,
    )
    report = compare(
        reference, converted, task, has_probabilities, {"sample": sample, "generated": generated}
    )
    if "generated_rows" in report:
        report["missing_rate"] = MISSING_RATE
    return report


def generate_rows(
    inputs: TabularInputs,
    sample: Table | None,
    profile: Mapping[str, Any] | None,
    count: int,
    rng: np.random.Generator,
    *,
    missing_rate: float = 0.0,
) -> Table | None:
    """Rows that fit the signature, drawn around the sample's (or the profile's) values.

    With ``missing_rate``, that share of the values of each nullable column is left missing.
    """
    data = sample.columns() if sample is not None else {}
    summaries = (profile or {}).get("columns") or {}
    generated: dict[str, np.ndarray] = {}
    for column in inputs.columns:
        values = _generate_column(
            column, data.get(column.name), summaries.get(column.name), count, rng
        )
        if values is None and column.nullable and missing_rate > 0:
            values = np.full(count, None, dtype=object)  # nothing seen but gaps: all missing
        if values is None:
            return None  # a column with nothing to draw from: the sample alone is checked
        if column.nullable and missing_rate > 0:
            values = values.astype(object)
            values[rng.random(count) < missing_rate] = None
        generated[column.name] = values
    rows = [dict(zip(generated, row, strict=True)) for row in zip(*generated.values(), strict=True)]
    try:
        return TabularValidator(inputs).batch(rows)
    except InvalidInputError:
        return None


def _generate_column(
    column: ColumnSpec,
    present: np.ndarray | None,
    summary: Mapping[str, Any] | None,
    count: int,
    rng: np.random.Generator,
) -> np.ndarray | None:
    observed = [] if present is None else [v for v in present.tolist() if not is_missing(v)]
    if column.categories is not None or column.type == "string":
        choices = list(column.categories or dict.fromkeys(observed))
        if not choices and summary is not None and column.type == "string":
            choices = list(summary.get("categories") or [])
        if not choices:
            return None
        picked = np.empty(count, dtype=object)
        picked[:] = [choices[i] for i in rng.integers(0, len(choices), count)]
        return picked
    if column.type == "boolean":
        return rng.integers(0, 2, count).astype(bool)
    if column.type not in ("number", "integer"):
        # Datetimes (and any later type): the values seen, drawn again.
        if not observed or present is None:
            return None
        seen = present[[not is_missing(v) for v in present.tolist()]]
        return seen[rng.integers(0, len(seen), count)]
    numbers = [float(v) for v in observed if math.isfinite(float(v))]
    if numbers:
        low, high = min(numbers), max(numbers)
    elif summary is not None and summary.get("min") is not None:
        low, high = float(summary["min"]), float(summary["max"])
        numbers = [float(summary.get("mean") or (low + high) / 2)]
    else:
        low, high, numbers = -1.0, 1.0, [0.0]
    span = (high - low) or max(abs(high), 1.0)
    # Half near real values (small jitter), half spread a little past the observed range.
    half = count // 2
    near = rng.choice(np.asarray(numbers), half) + rng.normal(0.0, 0.05 * span, half)
    spread = rng.uniform(low - 0.1 * span, high + 0.1 * span, count - half)
    values = np.concatenate([near, spread])
    if column.type == "integer":
        rounded: np.ndarray = np.clip(np.rint(values), math.floor(low), math.ceil(high))
        return rounded.astype(np.int64)
    return values.astype(np.float64)


def compare(
    reference: Any,
    converted: Any,
    task: str,
    has_probabilities: bool,
    tables: Mapping[str, Table | None],
) -> dict[str, Any]:
    """Compare both runtimes on each table of rows; the parity report, or a ConversionError."""
    checked: dict[str, Table] = {}
    expected: list[Mapping[str, Any]] = []
    actual: list[Mapping[str, Any]] = []
    for source, table in tables.items():
        rows = table
        answers = None
        if rows is not None and source == "generated":
            rows, answers = _rows_scikit_learn_accepts(reference, rows)
        if rows is None or rows.length == 0:
            continue
        if answers is None:
            answers = _run(reference, rows, f"scikit-learn refuses the {source} rows")
        expected.append(answers)
        actual.append(
            _run(converted, rows, f"The graph refuses {source} rows that scikit-learn accepts")
        )
        checked[source] = rows
    if not checked:
        raise ConversionError("No rows to check parity on: pass sample_input=.")
    sources = [(source, i) for source, rows in checked.items() for i in range(rows.length)]
    report: dict[str, Any] = {
        "rows": len(sources),
        **{f"{source}_rows": rows.length for source, rows in checked.items()},
        "seed": _SEED,
    }
    if task == "classification":
        differences, shown, ties = _compare_labels(expected, actual, has_probabilities, report)
        limit = PROBABILITY_TOLERANCE if has_probabilities else 0.0
        if has_probabilities:
            report["tie_examples"] = [
                {
                    "source": sources[i][0],
                    "row": sources[i][1],
                    "labels": {"scikit-learn": shown[i][0], "onnx": shown[i][1]},
                }
                # Ties where the labels differ first: those are the ones the rule forgave.
                for i in sorted(np.flatnonzero(ties), key=lambda i: shown[i][0] == shown[i][1])[
                    :_TIES_SHOWN
                ]
            ]
    else:
        differences, shown = _compare_values(expected, actual, report)
        limit = VALUE_TOLERANCE
    failed = ~(differences <= limit)  # NaN fails too
    order = np.argsort(-np.nan_to_num(differences, nan=np.inf), kind="stable")
    report["worst"] = [
        {"source": sources[i][0], "row": sources[i][1], "difference": _json_float(differences[i])}
        for i in order[:_WORST_SHOWN]
    ]
    if failed.any():
        records = {source: rows.records() for source, rows in checked.items()}
        lines = []
        for i in order[: min(_WORST_SHOWN, int(failed.sum()))]:
            source, row = sources[i]
            lines.append(
                f"  {source} row {row}: scikit-learn {shown[i][0]!r}, ONNX {shown[i][1]!r} "
                f"(difference {differences[i]:.3g}); input {records[source][row]}"
            )
        what = "labels and probabilities" if task == "classification" else "values"
        raise ConversionError(
            f"The converted model misses parity on {int(failed.sum())} of {len(sources)} rows: "
            f"its {what} must match scikit-learn's within the tolerance of "
            f"{limit:g}. Worst rows:\n"
            + "\n".join(lines)
            + "\nNothing was written; save this model with format='joblib' instead."
        )
    return report


def _run(runner: Any, rows: Table, refusal: str) -> Mapping[str, Any]:
    try:
        fields: Mapping[str, Any] = runner.run(rows)
    except RejectedError as exc:
        raise ConversionError(f"{refusal}: {first_line(exc.__cause__ or exc)}") from exc
    return fields


def _joined(parts: Sequence[Mapping[str, Any]], field: str) -> np.ndarray:
    return np.concatenate([np.asarray(part[field]) for part in parts])


def _compare_labels(
    expected: Sequence[Mapping[str, Any]],
    actual: Sequence[Mapping[str, Any]],
    has_probabilities: bool,
    report: dict[str, Any],
) -> tuple[np.ndarray, list[tuple[Any, Any]], np.ndarray]:
    """Per row: 1 for a different label, else the largest probability difference; and which
    rows scikit-learn itself answers with a tie (a different label there is not counted)."""
    expected_labels = [python_scalar(v) for v in _joined(expected, "label").tolist()]
    actual_labels = [python_scalar(v) for v in _joined(actual, "label").tolist()]
    shown = list(zip(expected_labels, actual_labels, strict=True))
    mismatched = np.array([e != a for e, a in shown], dtype=bool)
    ties = np.zeros(len(shown), dtype=bool)
    if has_probabilities:
        wanted = _joined(expected, "probabilities").astype(np.float64)
        gap = np.abs(wanted - _joined(actual, "probabilities").astype(np.float64)).max(axis=1)
        if wanted.shape[1] >= 2:
            top = np.sort(wanted, axis=1)[:, -2:]
            # A tie within float32 precision, or within what the graph's probabilities are
            # allowed to differ by on that row: a label that follows such a difference is not one.
            ties = top[:, 1] - top[:, 0] <= np.maximum(TIE_TOLERANCE * top[:, 1], 2 * gap)
        differences = np.maximum((mismatched & ~ties).astype(np.float64), gap)
        report["max_probability_difference"] = _json_float(float(gap.max()))
        report["tolerance"] = {"probability": PROBABILITY_TOLERANCE, "tie": TIE_TOLERANCE}
        report["tie_rows"] = int(ties.sum())
        report["tie_label_differences"] = int((mismatched & ties).sum())
    else:
        differences = mismatched.astype(np.float64)
    report["label_mismatches"] = int((mismatched & ~ties).sum())
    return differences, shown, ties


def _compare_values(
    expected: Sequence[Mapping[str, Any]],
    actual: Sequence[Mapping[str, Any]],
    report: dict[str, Any],
) -> tuple[np.ndarray, list[tuple[Any, Any]]]:
    """Per row: the largest difference relative to ``max(1, |value|)``."""
    wanted = _joined(expected, "value").astype(np.float64)
    got = _joined(actual, "value").astype(np.float64)
    wanted, got = wanted.reshape(len(wanted), -1), got.reshape(len(wanted), -1)
    gap = np.abs(wanted - got).max(axis=1)
    differences = gap / np.maximum(1.0, np.abs(wanted).max(axis=1))
    report["max_value_difference"] = _json_float(float(gap.max()))
    report["tolerance"] = {"value": VALUE_TOLERANCE, "relative_to": "max(1, |value|)"}
    shown = [(w.tolist(), g.tolist()) for w, g in zip(wanted, got, strict=True)]
    return differences, shown


def _rows_scikit_learn_accepts(
    reference: Any, table: Table
) -> tuple[Table | None, Mapping[str, Any] | None]:
    """The generated rows scikit-learn predicts on (an encoder may refuse a combination), and
    its answers when it took them all."""
    try:
        answers: Mapping[str, Any] = reference.run(table)
    except RejectedError:
        pass
    else:
        return table, answers
    columns = table.columns()
    keep = []
    for row in range(table.length):
        single = Table(table.names, 1, {n: c[row : row + 1] for n, c in columns.items()})
        try:
            reference.run(single)
        except RejectedError:
            continue
        keep.append(row)
    if not keep:
        return None, None
    return Table(table.names, len(keep), {n: c[keep] for n, c in columns.items()}), None


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
