"""The prediction log's lines: one logged call turned into JSON lines, redacted.

The format (the keys of a line, how values are converted, what redaction replaces) is documented
in :mod:`modelkit._prediction_log`, whose ``PredictionLogger`` decides what is logged and when,
then writes these lines. All of this runs on the writer's thread except :func:`describe_error`,
which describes the caller's exception before the call lets it go; and nothing here lets a value
that cannot be read or converted lose its line.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pydantic
from opentelemetry import trace

from ._jsonable import to_jsonable
from ._spec import is_dataframe, is_series
from .errors import InvalidInputError
from .telemetry import error_type

__all__ = ["REDACTED", "LineFormat", "LoggedCall", "describe_error", "truncate"]

#: What takes a field's value in a line when the field is redacted.
REDACTED: Final = "[REDACTED]"

_MAX_TEXT = 1000
# Records given by position, which the signature's names turn into objects.
_POSITIONAL = (list, tuple, np.ndarray)


@dataclass(slots=True)
class LoggedCall:
    """What the caller's thread hands the writer: references and identifiers, no conversion."""

    timestamp: float
    model: Any
    name: str
    version: str
    digest: str | None
    is_batch: bool
    duration: float | None
    span: trace.Span
    inputs: Any
    outputs: Any
    error: dict[str, str] | None
    count: int
    has_index: bool


@dataclass(frozen=True, slots=True)
class LineFormat:
    """What a logger's lines carry: the fields to redact, and whether inputs and outputs appear."""

    redact: frozenset[str]
    include_inputs: bool
    include_outputs: bool

    def lines(self, call: LoggedCall, context: trace.SpanContext) -> Iterable[str]:
        """The call's lines, one per record; ``context`` is the span current during the call."""
        head: dict[str, Any] = {
            "timestamp": _iso_utc(call.timestamp),
            "model": call.name,
            "version": call.version,
            "digest": call.digest,
            "call": "predict_batch" if call.is_batch else "predict",
            "index": None,
            "duration_ms": None if call.duration is None else round(call.duration * 1000, 3),
        }
        if context.is_valid:
            head["trace_id"] = trace.format_trace_id(context.trace_id)
            head["span_id"] = trace.format_span_id(context.span_id)
        records = self._records(call) if self.include_inputs else None
        outputs = (
            _output_rows(call)
            if self.include_outputs and call.error is None
            else [None] * call.count
        )
        for position in range(call.count):
            line = dict(head)
            if call.has_index:
                line["index"] = position
            if records is not None:
                line["input"] = _jsonable(records[position], self.redact)
            if call.error is not None:
                line["error"] = call.error
            elif self.include_outputs:
                line["output"] = _jsonable(outputs[position], self.redact)
            yield _dumps(line)

    def _records(self, call: LoggedCall) -> list[Any]:
        if call.is_batch and call.has_index:
            records = _split(call.inputs, call.count)
        else:
            records = [call.inputs]
        if any(isinstance(record, _POSITIONAL) for record in records):
            naming = _Naming.of(call.model)
            records = [naming.name(record) for record in records]
        if self.redact:
            # Redaction goes by field name. A record without names (a positional record or row
            # whose length the signature refused, a scalar, a string) cannot say which of its
            # values is the secret, so none of them is written.
            records = [record if _is_keyed(record) else REDACTED for record in records]
        return records


def describe_error(exc: BaseException, redact: Any) -> dict[str, str]:
    """A failed call's ``error`` field: the exception's type and message, without traceback."""
    name = error_type(exc)
    if isinstance(exc, InvalidInputError) and redact:
        # Validation messages quote the offending value: with fields to redact, name the
        # fields (redacted ones as such) and leave the values out.
        fields = sorted({str(e["field"]) for e in exc.errors if e.get("field") is not None})
        shown = [REDACTED if field in redact else field for field in fields]
        return {"type": name, "message": f"invalid input ({', '.join(shown) or 'record'})"}
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - an exception whose str() fails still gets a line
        message = ""
    return {"type": name, "message": truncate(message)}


# --------------------------------------------------------------------------------------------------
# From references to JSON
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Naming:
    """How positional records get field names: the tabular columns, or the one tensor input."""

    columns: tuple[str, ...] = ()
    tensor: str | None = None

    @classmethod
    def of(cls, model: Any) -> _Naming:
        try:
            signature = model.signature
            columns = tuple(column.name for column in signature.columns)
            tensors = tuple(tensor.name for tensor in signature.tensors)
        except Exception:  # noqa: BLE001 - naming is a nicety; records are logged regardless
            return cls()
        return cls(columns, tensors[0] if len(tensors) == 1 else None)

    def name(self, record: Any) -> Any:
        if self.columns and isinstance(record, _POSITIONAL):
            if np.ndim(record) == 1 and len(record) == len(self.columns):
                return dict(zip(self.columns, record, strict=True))
        elif self.tensor is not None and isinstance(record, np.ndarray | list):
            return {self.tensor: record}
        return record


def _is_keyed(record: Any) -> bool:
    """Whether a record carries field names that redaction can go by (integer keys, as in
    ``{0: ..., 1: ...}`` or a Series without labels, are positions, not names)."""
    if isinstance(record, pydantic.BaseModel):
        return True
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return True
    if is_series(record):
        keys: Iterable[Any] = record.index
    elif isinstance(record, Mapping):
        keys = record.keys()
    else:
        return False
    return all(isinstance(key, str) for key in keys)


def _split(inputs: Any, count: int) -> list[Any]:
    """The first ``count`` records of a batch (``None`` for any that cannot be read)."""
    try:
        if is_dataframe(inputs):
            rows: list[Any] = inputs.iloc[:count].to_dict(orient="records")
        elif isinstance(inputs, Mapping):
            rows = [{name: _at(values, i) for name, values in inputs.items()} for i in range(count)]
        elif isinstance(inputs, Sequence | np.ndarray) and not isinstance(inputs, str | bytes):
            rows = list(inputs[:count])
        else:
            rows = []
    except Exception:  # noqa: BLE001 - an unreadable batch still gets its lines
        rows = []
    return rows + [None] * (count - len(rows))


def _at(values: Any, index: int) -> Any:
    try:
        return values[index]
    except Exception:  # noqa: BLE001
        return None


def _output_rows(call: LoggedCall) -> list[Any]:
    if not call.is_batch:
        return [call.outputs]
    rows = []
    for position in range(call.count):
        try:
            rows.append(call.outputs[position])
        except Exception:  # noqa: BLE001 - one unreadable output is logged as null
            rows.append(None)
    return rows


def _iso_utc(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp, dt.timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _dumps(line: dict[str, Any]) -> str:
    try:
        return json.dumps(line, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except Exception:  # noqa: BLE001 - should not happen after _jsonable; keep the line anyway
        return json.dumps({key: _repr(value) for key, value in line.items()}, separators=(",", ":"))


def _jsonable(value: Any, redact: frozenset[str]) -> Any:
    """``value`` as plain JSON data, redacted; never raises (what cannot be converted becomes
    its repr)."""
    converted = to_jsonable(value, default=_repr)
    return _redacted(converted, redact) if redact else converted


def _redacted(value: Any, redact: frozenset[str]) -> Any:
    """JSON data with the values of the fields named in ``redact`` replaced, at any depth."""
    if type(value) is dict:
        return {
            key: REDACTED if key in redact else _redacted(item, redact)
            for key, item in value.items()
        }
    if type(value) is list:
        return [_redacted(item, redact) for item in value]
    return value


def _repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not lose the line
        text = f"<unrepresentable {type(value).__name__}>"
    return truncate(text)


def truncate(text: str) -> str:
    """``text`` cut to a thousand characters, so one huge value cannot flood a log."""
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."
