"""Reference cases: rows of the sample and the model's answers on them, kept in the bundle.

``save`` picks up to :data:`MAX_CASES` rows of ``sample_input`` (every class the model predicts
on the sample, the first row missing each column, evenly spaced rows for the rest), runs them
and writes ``artifacts/reference-cases.json``: an artifact like any other, hashed in the
manifest and so pinned by the digest. ``load`` runs them again through the loaded model before
handing it out and compares: labels exactly, numbers within :data:`TOLERANCES`. A changed answer
is a :class:`~modelkit.ReproducibilityError` (or a warning, as the ``check`` policy says); answers
that all match turn the environment's version warning into evidence.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from . import _environment
from ._bundle import Artifacts
from ._jsonable import to_jsonable
from ._manifest import ARTIFACTS_DIR, Environment, Manifest
from ._protocol import Runner, first_line
from ._spec import Table, TabularInputs, is_missing
from ._validation import TabularValidator
from .errors import BundleError, ReproducibilityError, ReproducibilityWarning

__all__ = [
    "ARTIFACT",
    "MAX_CASES",
    "POLICIES",
    "TOLERANCES",
    "CheckPolicy",
    "Tolerance",
    "Verdict",
    "count",
    "enforce",
    "failure_text",
    "read",
    "run",
    "select",
    "write",
]

logger = logging.getLogger("modelkit")

#: The artifact's path under ``artifacts/``.
ARTIFACT = "reference-cases.json"
#: The most rows a bundle keeps: enough to cover the classes, the missing values and the range
#: of a sample, few enough that checking them costs milliseconds and the file a few kilobytes.
MAX_CASES = 50
CheckPolicy = Literal["auto", "error", "warn", "off"]
POLICIES: tuple[CheckPolicy, ...] = ("auto", "error", "warn", "off")
_CASES_VERSION = 1
_ROWS_SHOWN = 5


@dataclass(frozen=True)
class Tolerance:
    """Two numbers agree when ``|now - then| <= atol + rtol * |then|`` (numpy's ``isclose``)."""

    rtol: float
    atol: float


#: By the dtype the model answered in. float64: the same algorithm computing in another order
#: (a new BLAS, a vectorized loop) moves results by about 1e-15 relative; 1e-6 leaves that nine
#: digits of room and still sees any change of the model itself. float32 (ONNX graphs): the
#: machine epsilon is 1.2e-7 and onnxruntime's kernels may fuse or reorder sums over hundreds of
#: trees between releases, so 1e-4, the tolerance conversion parity allows against float64.
TOLERANCES = {
    "float64": Tolerance(rtol=1e-6, atol=1e-9),
    "float32": Tolerance(rtol=1e-4, atol=1e-6),
}


def _tolerance(dtype: str) -> Tolerance:
    return TOLERANCES["float64" if np.dtype(dtype).itemsize >= 8 else "float32"]


# -- the artifact -----------------------------------------------------------------------------


class _Field(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: str = Field(max_length=50)
    values: list[JsonValue]


class _Cases(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    sample_rows: list[int]
    inputs: list[dict[str, JsonValue]]
    outputs: dict[str, _Field]


@dataclass(frozen=True)
class Cases:
    """The reference cases of a bundle: the sample rows they came from, inputs and answers."""

    sample_rows: tuple[int, ...]
    inputs: list[dict[str, Any]]
    outputs: Mapping[str, _Field]

    def __len__(self) -> int:
        return len(self.inputs)


def read(artifacts: Artifacts) -> Cases | None:
    """The bundle's reference cases, or ``None`` when it has none (saved without a sample, or
    before modelkit kept them). The bytes were verified against the manifest already.

    Raises:
        BundleError: the artifact is not reference cases this modelkit reads.
    """
    # Not `in`: looking up a missing artifact raises BundleError, not KeyError.
    if ARTIFACT not in set(artifacts):
        return None
    where = f"{ARTIFACTS_DIR}/{ARTIFACT}"
    try:
        parsed = _Cases.model_validate_json(artifacts[ARTIFACT])
    except ValidationError as exc:
        first = exc.errors()[0]
        at = ".".join(str(part) for part in first["loc"]) or "(root)"
        raise BundleError(
            f"{where} is not valid reference cases: {at}: {first['msg']}.", path=where
        ) from None
    rows = len(parsed.inputs)
    if len(parsed.sample_rows) != rows or any(
        len(field.values) != rows for field in parsed.outputs.values()
    ):
        raise BundleError(
            f"{where} is not valid reference cases: its inputs, rows and outputs differ in length.",
            path=where,
        )
    return Cases(tuple(parsed.sample_rows), list(parsed.inputs), parsed.outputs)


def count(artifacts: Artifacts) -> int:
    """How many reference cases a bundle keeps (0 when none)."""
    cases = read(artifacts)
    return 0 if cases is None else len(cases)


# -- saving -----------------------------------------------------------------------------------


def select(
    inputs: TabularInputs, table: Table, outputs: Mapping[str, Any], *, limit: int = MAX_CASES
) -> list[int]:
    """The sample rows to keep, in sample order: deterministic, at most ``limit``.

    First the first row of each class the model predicts, then the first row missing each
    column, the rows of the lowest and highest value (regressors), then evenly spaced rows. A
    row whose top two probabilities are within the tolerance is left out: its label may flip
    while every number still agrees, so it would prove nothing.
    """
    if table.length == 0 or limit <= 0:
        return []
    eligible = np.flatnonzero(~_near_ties(outputs, table.length))
    if eligible.size == 0:
        return []
    chosen: dict[int, None] = {}  # insertion-ordered set: priority order
    labels = outputs.get("label")
    if labels is not None:
        seen: set[Any] = set()
        predicted = np.asarray(labels)[eligible].tolist()
        for row, label in zip(eligible.tolist(), predicted, strict=True):
            key = (type(label), label)
            if key not in seen:
                seen.add(key)
                chosen[row] = None
    columns = table.columns()
    for column in inputs.columns:
        missing = eligible[_missing_mask(columns[column.name])[eligible]]
        if missing.size:
            chosen[int(missing[0])] = None
    values = outputs.get("value")
    if values is not None:
        flat = np.asarray(values, dtype=np.float64).reshape(table.length, -1)[eligible, 0]
        finite = np.flatnonzero(np.isfinite(flat))
        if finite.size:
            chosen[int(eligible[finite[np.argmin(flat[finite])]])] = None
            chosen[int(eligible[finite[np.argmax(flat[finite])]])] = None
    spread = np.linspace(0, eligible.size - 1, num=min(limit, eligible.size)).round().astype(int)
    for position in spread.tolist():
        chosen[int(eligible[position])] = None
    return sorted(list(chosen)[:limit])


def _near_ties(outputs: Mapping[str, Any], length: int) -> np.ndarray:
    probabilities = outputs.get("probabilities")
    if probabilities is None:
        return np.zeros(length, dtype=bool)
    matrix = np.asarray(probabilities, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] < 2:
        return np.zeros(length, dtype=bool)
    tolerance = _tolerance(str(np.asarray(probabilities).dtype))
    top2 = -np.partition(-matrix, 1, axis=1)[:, :2]
    # Both could move by the tolerance in opposite directions.
    margin = 2 * (tolerance.atol + tolerance.rtol * np.abs(top2[:, 0]))
    return np.asarray(~(top2[:, 0] - top2[:, 1] > margin))


def _missing_mask(column: np.ndarray) -> np.ndarray:
    if column.dtype.kind == "f":
        return np.asarray(np.isnan(column))
    if column.dtype.kind == "M":
        return np.asarray(np.isnat(column))
    if column.dtype.kind == "O":
        return np.fromiter((is_missing(v) for v in column), dtype=bool, count=column.size)
    return np.zeros(column.size, dtype=bool)


def write(
    directory: Any, inputs: TabularInputs, runner: Runner, table: Table, outputs: Mapping[str, Any]
) -> int:
    """Choose reference cases from a sample the runner answered, run them again from their JSON
    form (as ``load`` will) and write the artifact into ``directory``; return how many.

    The answers kept are those to the JSON records, not to the caller's objects: what ``load``
    compares is then the same computation on the same values.
    """
    rows = select(inputs, table, outputs)
    if not rows:
        return 0
    picked = Table(table.names, len(rows), {k: v[rows] for k, v in table.columns().items()})
    records = [_json_record(inputs, record) for record in picked.records()]
    answers = runner.run(TabularValidator(inputs).batch(records))
    document = {
        "version": _CASES_VERSION,
        "sample_rows": rows,
        "inputs": records,
        "outputs": {
            name: {"dtype": str(array.dtype), "values": to_jsonable(array.tolist())}
            for name, value in answers.items()
            if value is not None
            for array in (np.asarray(value),)
        },
    }
    text = json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    (directory / ARTIFACT).write_text(text + "\n", encoding="utf-8")
    return len(rows)


def _json_record(inputs: TabularInputs, record: Mapping[str, Any]) -> dict[str, Any]:
    values = to_jsonable(dict(record))
    for column in inputs.columns:
        value = values.get(column.name)
        # An integer column with gaps is held as floats; its values are integers again.
        if column.type == "integer" and isinstance(value, float) and value.is_integer():
            values[column.name] = int(value)
    return dict(values)


# -- checking ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """The largest difference found: in which output, at which case, then and now."""

    field: str
    case: int
    then: Any
    now: Any
    amount: float | None  # None for a label, or a value that became missing


@dataclass(frozen=True)
class Verdict:
    """How the loaded model answered its reference cases.

    Attributes:
        total: how many cases.
        identical: cases answered bit for bit as at save time.
        differing: the cases (positions) whose answers differ beyond the tolerance.
        sample_rows: each case's row in the sample it was chosen from.
        largest: the largest numeric difference beyond the tolerance, if any.
        changed: the first case whose label (or other exact output) changed, if any.
        refused: why the model refused the cases' inputs, if it did.
    """

    total: int
    identical: int
    differing: tuple[int, ...]
    sample_rows: tuple[int, ...]
    largest: Difference | None = None
    changed: Difference | None = None
    refused: str | None = None

    @property
    def passed(self) -> bool:
        """Whether every case was answered within the tolerance."""
        return not self.differing and self.refused is None

    def summary(self) -> str:
        """``50 of 50 reference cases identical`` and the like."""
        if self.refused is not None:
            return f"the model refused its {self.total} reference cases ({self.refused})"
        matching = self.total - len(self.differing)
        if self.identical == self.total:
            return f"{matching} of {self.total} reference cases identical"
        return (
            f"{matching} of {self.total} reference cases match "
            f"({self.identical} identical, the rest within the tolerance)"
        )


def run(cases: Cases, manifest: Manifest, runner: Runner) -> Verdict:
    """Run the reference cases through ``runner`` and compare its answers with the stored ones."""
    inputs = manifest.signature.inputs
    total = len(cases)
    try:
        if not isinstance(inputs, TabularInputs):
            raise TypeError("reference cases need a tabular signature")
        answers = runner.run(TabularValidator(inputs).batch(cases.inputs))
    except Exception as exc:  # noqa: BLE001 - whatever the model raises is the verdict
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        return Verdict(total, 0, tuple(range(total)), cases.sample_rows, refused=first_line(cause))
    bad = np.zeros(total, dtype=bool)
    same = np.ones(total, dtype=bool)
    largest: Difference | None = None
    changed: Difference | None = None
    for name, stored in cases.outputs.items():
        found = answers.get(name)
        field_bad, field_same, worst = _compare(name, stored, found, total)
        bad |= field_bad
        same &= field_same
        if worst is None:
            continue
        if worst.amount is None:
            if changed is None or worst.case < changed.case:
                changed = worst
        elif largest is None or (largest.amount or 0.0) < worst.amount:
            largest = worst
    return Verdict(
        total,
        int(np.count_nonzero(same)),
        tuple(np.flatnonzero(bad).tolist()),
        cases.sample_rows,
        largest,
        changed,
    )


def _compare(
    name: str, stored: _Field, found: Any, total: int
) -> tuple[np.ndarray, np.ndarray, Difference | None]:
    """Which cases differ beyond the tolerance, which are identical, and the worst difference."""
    everything = np.ones(total, dtype=bool)
    if found is None:
        return everything, ~everything, Difference(name, 0, stored.values[0], None, None)
    actual = np.asarray(found)
    if name != "label" and np.dtype(stored.dtype).kind == "f":
        then = np.array(
            [math.nan if v is None else v for v in _flat(stored.values)], dtype=np.float64
        )
        try:
            now = actual.astype(np.float64).reshape(-1)
        except (TypeError, ValueError):
            return everything, ~everything, Difference(name, 0, stored.values[0], None, None)
        if now.size != then.size or then.size % max(total, 1):
            return everything, ~everything, Difference(name, 0, stored.values[0], None, None)
        tolerance = _tolerance(stored.dtype)
        missing_alike = ~np.isfinite(then) & ~np.isfinite(now) & (np.isnan(then) | (then == now))
        with np.errstate(invalid="ignore"):
            gap = np.abs(now - then)
            close = (gap <= tolerance.atol + tolerance.rtol * np.abs(then)) | missing_alike
            equal = (now == then) | missing_alike
        per_row = then.size // total if total else 1
        bad = ~close.reshape(total, per_row).all(axis=1)
        same = equal.reshape(total, per_row).all(axis=1)
        worst = None
        if (~close).any():
            gaps = np.where(close, -np.inf, np.nan_to_num(gap, nan=np.inf))
            at = int(np.argmax(gaps))
            amount = float(gaps[at])
            worst = Difference(
                name,
                at // per_row,
                _number(then[at]),
                _number(now[at]),
                None if math.isinf(amount) else amount,
            )
        return bad, same, worst
    now_values = actual.tolist()
    if not isinstance(now_values, list) or len(now_values) != total:
        return everything, ~everything, Difference(name, 0, stored.values[0], None, None)
    differs = np.array(
        [not _identical(a, b) for a, b in zip(stored.values, now_values, strict=True)], dtype=bool
    )
    worst = None
    if differs.any():
        at = int(np.argmax(differs))
        worst = Difference(name, at, stored.values[at], now_values[at], None)
    return differs, ~differs, worst


def _flat(values: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if isinstance(value, list):
            out.extend(_flat(value))
        else:
            out.append(value)
    return out


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _identical(then: Any, now: Any) -> bool:
    """Equal values of the same type: the label 1 is not the label "1", nor True."""
    if isinstance(then, list) and isinstance(now, list):
        return len(then) == len(now) and all(map(_identical, then, now))
    if then is None or (isinstance(now, float) and math.isnan(now)):
        return then is None and (now is None or (isinstance(now, float) and math.isnan(now)))
    return type(then) is type(now) and bool(then == now)


def enforce(
    verdict: Verdict | None,
    policy: CheckPolicy,
    *,
    label: str,
    manifest: Manifest,
    mild: Mapping[str, _environment.Mismatch],
) -> None:
    """Act on a verdict as ``policy`` says, and give the environment's version warning.

    A failed verdict raises (``"error"``, and ``"auto"``, which ran the cases because the library
    versions differ) or warns (``"warn"``), naming the cases, the largest
    difference and the versions then and now; the plain version warning is then redundant. A
    passed one is the version warning's evidence.

    Raises:
        ReproducibilityError: the verdict failed and the policy is ``"error"`` or ``"auto"``.
    """
    if verdict is None or verdict.passed:
        _environment.warn(mild, label, evidence=None if verdict is None else verdict.summary())
        return
    message = failure_text(verdict, label, manifest)
    if policy in ("error", "auto"):
        raise ReproducibilityError(
            message + " Pass check='warn' to load it anyway.",
            rows=[verdict.sample_rows[case] for case in verdict.differing],
            largest_difference=None if verdict.largest is None else verdict.largest.amount,
            versions=_versions(manifest.environment),
        )
    logger.warning(message)
    warnings.warn(message, ReproducibilityWarning, stacklevel=4)


def failure_text(verdict: Verdict, label: str, manifest: Manifest) -> str:
    """What a failed verdict means: the rows, the largest difference, the versions then and
    now, and what to do."""
    rows = [verdict.sample_rows[case] for case in verdict.differing]
    shown = ", ".join(str(row) for row in rows[:_ROWS_SHOWN])
    more = f" and {len(rows) - _ROWS_SHOWN} more" if len(rows) > _ROWS_SHOWN else ""
    if verdict.refused is not None:
        what = f"it refuses their inputs: {verdict.refused}."
    else:
        what = (
            f"{len(rows)} of {verdict.total} differ (rows {shown}{more} of the sample it was "
            f"saved with)."
        )
        for found in (verdict.changed, verdict.largest):
            if found is not None:
                what += " " + _difference_text(found, verdict.sample_rows)
    versions = ", ".join(
        f"{name} {then} → {now or 'not installed'}"
        for name, (then, now) in sorted(_versions(manifest.environment).items())
    )
    return (
        f"Model {manifest.name!r} {manifest.version} from {label!r} no longer answers its "
        f"reference cases as when it was saved: {what} Versions then → now: {versions}. Install "
        "the versions it was saved with, or check the new answers and save the model again "
        "in this environment."
    )


def _difference_text(worst: Difference, sample_rows: Sequence[int]) -> str:
    row = sample_rows[worst.case]
    if worst.amount is None:
        return f"The {worst.field} of row {row} was {worst.then!r} and is now {worst.now!r}."
    return (
        f"The largest difference is {worst.amount:.3g} in {worst.field} (row {row}: "
        f"{worst.then!r} then, {worst.now!r} now)."
    )


def _versions(recorded: Environment) -> dict[str, tuple[str, str | None]]:
    found: dict[str, tuple[str, str | None]] = {
        name: (version, _environment.installed_version(name))
        for name, version in recorded.packages.items()
    }
    found["python"] = (recorded.python, platform.python_version())
    return found
