"""Reference cases: rows of the sample and the model's answers on them, kept in the bundle.

``save`` picks up to :data:`MAX_CASES` rows of ``sample_input`` (every class the model predicts
on the sample, the first row missing each column, evenly spaced rows for the rest), runs them
and writes ``artifacts/reference-cases.json``: an artifact like any other, hashed in the
manifest and so pinned by the digest. ``load`` runs them again through the loaded model before
handing it out and compares: labels exactly, numbers within :data:`TOLERANCES`. A changed answer
is a :class:`~modelkit.ReproducibilityError` (or a warning, as the ``check`` policy says); answers
that all match turn the environment's version warning into evidence.

Only the tabular bundles of :data:`FORMATS` keep them: in another format (a custom model's
``python`` bundle, a third-party adapter's) a file at that path is the adapter's own.
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
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

from . import _environment
from ._bundle import Artifacts
from ._jsonable import to_jsonable
from ._manifest import ARTIFACTS_DIR, Environment, Manifest
from ._protocol import Runner, first_line
from ._spec import Signature, Table, TabularInputs, is_missing
from ._validation import TabularValidator
from .errors import BundleError, InvalidInputError, ReproducibilityError, ReproducibilityWarning

__all__ = [
    "ARTIFACT",
    "FORMATS",
    "MAX_BYTES",
    "MAX_CASES",
    "POLICIES",
    "TOLERANCES",
    "CheckPolicy",
    "Tolerance",
    "Verdict",
    "enforce",
    "failure_text",
    "keeps_cases",
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
#: The largest file of reference cases modelkit writes or reads. 50 rows of a few hundred
#: columns take a few hundred kilobytes; a manifest declaring more is refused before the file is
#: parsed, and a sample whose cases would take more is saved without them.
MAX_BYTES = 1024**2
#: The formats whose tabular bundles keep reference cases: modelkit's own, whose artifacts it
#: lays out. A custom or third-party format's file at the same path belongs to its adapter.
FORMATS = ("joblib", "onnx", "skops")
CheckPolicy = Literal["auto", "error", "warn", "off"]
POLICIES: tuple[CheckPolicy, ...] = ("auto", "error", "warn", "off")
_CASES_VERSION = 1
_ROWS_SHOWN = 5
# A value or refusal quoted in a message is cut to about this many characters.
_SHOWN_CHARS = 80
# Output dtypes the file may name: bool, integers, floats, text and objects (what JSON holds).
_DTYPE_KINDS = frozenset("biufUO")
# JSON has no infinities: the file writes them as these strings, and NaN as null.
_INFINITIES = {"Infinity": math.inf, "-Infinity": -math.inf}


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
    values: list[JsonValue] = Field(max_length=MAX_CASES)

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        try:
            kind = np.dtype(value).kind
        except Exception:  # noqa: BLE001 - numpy raises several types on a name it cannot read
            raise ValueError(f"{value!r} is not a numpy dtype") from None
        if kind not in _DTYPE_KINDS:
            raise ValueError(f"{value!r} is not a bool, integer, float, text or object dtype")
        return value


class _Cases(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    sample_rows: list[int] = Field(max_length=MAX_CASES)
    inputs: list[dict[str, JsonValue]] = Field(min_length=1, max_length=MAX_CASES)
    outputs: dict[str, _Field] = Field(max_length=16)


@dataclass(frozen=True)
class Cases:
    """The reference cases of a bundle: the sample rows they came from, the inputs validated
    against the bundle's signature, and the answers."""

    sample_rows: tuple[int, ...]
    table: Table
    outputs: Mapping[str, _Field]

    def __len__(self) -> int:
        return self.table.length


def keeps_cases(format: str, signature: Signature) -> bool:
    """Whether bundles of this format and signature keep reference cases (:data:`FORMATS`)."""
    return format in FORMATS and isinstance(signature.inputs, TabularInputs)


def read(artifacts: Artifacts, manifest: Manifest) -> Cases | None:
    """The bundle's reference cases, or ``None`` when it has none (saved without a sample,
    before modelkit kept them, or in a format that keeps none). The bytes were verified against
    the manifest already.

    Raises:
        BundleError: the artifact declares more than :data:`MAX_BYTES`, or is not reference
            cases this modelkit reads for this bundle's signature.
    """
    where = f"{ARTIFACTS_DIR}/{ARTIFACT}"
    if not keeps_cases(manifest.format, manifest.signature):
        return None
    declared = next((a.size for a in manifest.artifacts if a.path == where), None)
    if declared is None:
        return None
    if declared > MAX_BYTES:
        raise BundleError(
            f"{where} declares {declared} bytes, more than the {MAX_BYTES} reference cases may "
            "take; it was not written by modelkit.",
            path=where,
        )
    return _parse(artifacts[ARTIFACT], manifest.signature)


def _parse(data: bytes, signature: Signature) -> Cases:
    """Reference cases from the artifact's bytes, every part checked against ``signature``."""
    where = f"{ARTIFACTS_DIR}/{ARTIFACT}"

    def malformed(reason: str) -> BundleError:
        return BundleError(f"{where} holds malformed reference cases: {reason}.", path=where)

    try:
        parsed = _Cases.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        at = ".".join(str(part) for part in first["loc"]) or "(root)"
        raise malformed(f"{at}: {first['msg']}") from None
    rows = len(parsed.inputs)
    if len(parsed.sample_rows) != rows or any(
        len(field.values) != rows for field in parsed.outputs.values()
    ):
        raise malformed("its inputs, rows and outputs differ in length")
    for name, field in parsed.outputs.items():
        if _numeric(name, field.dtype) and not all(map(_is_number, _flat(field.values))):
            raise malformed(f"outputs.{name} holds values that are not numbers")
    classes = signature.outputs.classes
    probabilities = parsed.outputs.get("probabilities")
    if (
        probabilities is not None
        and classes is not None
        and any(not isinstance(p, list) or len(p) > len(classes) for p in probabilities.values)
    ):
        raise malformed(f"outputs.probabilities has rows longer than its {len(classes)} classes")
    assert isinstance(signature.inputs, TabularInputs)
    try:
        table = TabularValidator(signature.inputs).batch(parsed.inputs)
    except InvalidInputError as exc:
        raise malformed(f"its inputs do not fit the signature: {_short(first_line(exc))}") from None
    return Cases(tuple(parsed.sample_rows), table, parsed.outputs)


def _numeric(name: str, dtype: str) -> bool:
    """Whether an output is compared as numbers, within the tolerance (labels never are)."""
    return name != "label" and np.dtype(dtype).kind == "f"


def _is_number(value: Any) -> bool:
    if isinstance(value, str):
        return value in _INFINITIES
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


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
        seen: set[str] = set()
        predicted = np.asarray(labels)[eligible].tolist()
        for row, label in zip(eligible.tolist(), predicted, strict=True):
            # JSON text tells 1 from "1", 1.0 and True, and is hashable when the label is a list
            # (a multi-output model's row of labels).
            key = json.dumps(label, default=repr)
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
    directory: Any, signature: Signature, runner: Runner, table: Table, outputs: Mapping[str, Any]
) -> int:
    """Choose reference cases from a sample the runner answered, run them again from their JSON
    form (as ``load`` will) and write the artifact into ``directory``; return how many.

    The answers kept are those to the JSON records, not to the caller's objects: what ``load``
    compares is then the same computation on the same values. None are kept, and a warning
    logged, when choosing or running them fails, when the model answers them otherwise than it
    answered the sample (a model that draws at random would fail them at every load), or when
    they would not read back (more than :data:`MAX_BYTES`, or outputs the file cannot hold).
    """
    try:
        document = _document(signature, runner, table, outputs)
    except Exception as exc:  # noqa: BLE001 - the cases are a bonus; the bundle stands without
        logger.warning("Saving without reference cases: %s", _short(first_line(exc)))
        return 0
    if document is None:
        return 0
    data, count = document
    (directory / ARTIFACT).write_bytes(data)
    return count


def _document(
    signature: Signature, runner: Runner, table: Table, outputs: Mapping[str, Any]
) -> tuple[bytes, int] | None:
    """The artifact's bytes and how many cases they hold, or ``None`` (with a warning logged)
    when they cannot be trusted."""
    inputs = signature.inputs
    assert isinstance(inputs, TabularInputs)
    rows = select(inputs, table, outputs)
    if not rows:
        return None
    picked = Table(table.names, len(rows), {k: v[rows] for k, v in table.columns().items()})
    records = [_json_record(inputs, record) for record in picked.records()]
    answers = runner.run(TabularValidator(inputs).batch(records))
    document = {
        "version": _CASES_VERSION,
        "sample_rows": rows,
        "inputs": records,
        "outputs": {
            name: {"dtype": str(array.dtype), "values": _stored(name, array)}
            for name, value in answers.items()
            if value is not None
            for array in (np.asarray(value),)
        },
    }
    text = json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    data = (text + "\n").encode("utf-8")
    if len(data) > MAX_BYTES:
        logger.warning(
            "Saving without reference cases: %d rows take %d bytes, more than %d.",
            len(rows),
            len(data),
            MAX_BYTES,
        )
        return None
    first = {name: np.asarray(value)[rows] for name, value in outputs.items() if value is not None}
    verdict = _judge(_parse(data, signature), first)
    if not verdict.passed:
        logger.warning(
            "Saving without reference cases: the model answered %d of %d of the rows chosen "
            "differently when they ran again, so it would fail them at every load.",
            len(verdict.differing),
            verdict.total,
        )
        return None
    return data, len(rows)


def _stored(name: str, array: np.ndarray) -> Any:
    """An output's values as JSON: numbers with NaN as null and infinities as strings."""
    if not _numeric(name, str(array.dtype)):
        return to_jsonable(array.tolist())
    values = array.astype(object)
    values[np.isnan(array)] = None
    values[np.isposinf(array)] = "Infinity"
    values[np.isneginf(array)] = "-Infinity"
    return values.tolist()


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
    amount: float | None  # None for a label, a value that became missing, or a changed shape
    problem: str | None = None  # what changed, when the output no longer has its shape


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
            return f"the model refused its {self.total} reference cases ({_refusal(self.refused)})"
        matching = self.total - len(self.differing)
        if self.identical == self.total:
            return f"{matching} of {self.total} reference cases identical"
        return (
            f"{matching} of {self.total} reference cases match "
            f"({self.identical} identical, the rest within the tolerance)"
        )


def run(cases: Cases, runner: Runner) -> Verdict:
    """Run the reference cases through ``runner`` and compare its answers with the stored ones."""
    try:
        answers = runner.run(cases.table)
    except Exception as exc:  # noqa: BLE001 - whatever the model raises is the verdict
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        total = len(cases)
        return Verdict(total, 0, tuple(range(total)), cases.sample_rows, refused=first_line(cause))
    return _judge(cases, answers)


def _judge(cases: Cases, answers: Mapping[str, Any]) -> Verdict:
    """Compare answers with the stored ones, output by output."""
    total = len(cases)
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

    def reshaped(problem: str) -> tuple[np.ndarray, np.ndarray, Difference]:
        return everything, ~everything, Difference(name, 0, None, None, None, problem)

    if found is None:
        return reshaped(f"The model no longer answers with output {name!r}.")
    actual = np.asarray(found)
    if _numeric(name, stored.dtype):
        then = np.array(
            [math.nan if v is None else _INFINITIES.get(v, v) for v in _flat(stored.values)],
            dtype=np.float64,
        )
        try:
            now = actual.astype(np.float64).reshape(-1)
        except (TypeError, ValueError):
            return reshaped(f"Output {name!r} no longer holds numbers (now {actual.dtype}).")
        if now.size != then.size or then.size % total:
            return reshaped(
                f"Output {name!r} changed shape: {now.size} values for the {total} cases, "
                f"{then.size} when saved."
            )
        tolerance = _tolerance(stored.dtype)
        # NaN matches only NaN; an infinity only the same infinity.
        alike = (np.isnan(then) & np.isnan(now)) | (np.isinf(then) & (then == now))
        with np.errstate(invalid="ignore"):
            gap = np.abs(now - then)
            within = gap <= tolerance.atol + tolerance.rtol * np.abs(then)
            close = (within & np.isfinite(then)) | alike
            equal = (now == then) | alike
        per_row = then.size // total
        bad = ~close.reshape(total, per_row).all(axis=1)
        same = equal.reshape(total, per_row).all(axis=1)
        worst = None
        if (~close).any():
            gaps = np.where(close, -np.inf, np.nan_to_num(gap, nan=np.inf, posinf=np.inf))
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
        return reshaped(
            f"Output {name!r} changed shape: {actual.shape} now, one per case when saved."
        )
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
        what = f"it refuses their inputs: {_refusal(verdict.refused)}."
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
    if worst.problem is not None:
        return worst.problem
    row = sample_rows[worst.case]
    then, now = _short(repr(worst.then)), _short(repr(worst.now))
    if worst.amount is None:
        return f"In row {row}, the {worst.field} changed from {then} to {now}."
    return (
        f"The largest difference is {worst.amount:.3g} in {worst.field} (row {row}: "
        f"{then} then, {now} now)."
    )


def _short(text: str) -> str:
    """``text`` cut to about :data:`_SHOWN_CHARS` characters: a message quotes, not dumps."""
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _refusal(reason: str) -> str:
    """The model's refusal, short and without a closing period (the sentence adds its own)."""
    return _short(reason).rstrip(".")


def _versions(recorded: Environment) -> dict[str, tuple[str, str | None]]:
    found: dict[str, tuple[str, str | None]] = {
        name: (version, _environment.installed_version(name))
        for name, version in recorded.packages.items()
    }
    found["python"] = (recorded.python, platform.python_version())
    return found
