"""Any value as plain JSON data, on pydantic-core's serializer.

The prediction log and the HTTP endpoints turn records and outputs into JSON with
:func:`to_jsonable`. pydantic-core's ``to_jsonable_python`` does the work, in compiled code;
this module adds what JSON and modelkit need on top: NaN and infinities as ``null`` (JSON has
neither), numpy values as Python ones, pandas' missing values as ``null``, and a default for
everything else instead of an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

__all__ = ["to_jsonable"]

# pandas' missing values, recognised by name so that pandas need not be imported.
_MISSING_TYPES = frozenset({"NAType", "NaTType"})
# A part that cannot be converted (a list that contains itself) is taken apart this deep at
# most, then written with its default.
_MAX_DEPTH = 32
# What pydantic-core raises on a value it cannot convert: a cycle, bytes that are not UTF-8, a
# datetime it cannot read (pandas' NaT). Errors raised by ``on_array`` pass through.
_CONVERSION_ERRORS = (ValueError, TypeError, OverflowError, RecursionError)


def to_jsonable(
    value: Any,
    *,
    default: Callable[[Any], Any] = repr,
    on_array: Callable[[np.ndarray], object] | None = None,
) -> Any:
    """``value`` as JSON data: dicts with string keys, lists, strings, numbers, booleans, None.

    NaN and infinities become None; numpy scalars and arrays, Python numbers and (nested)
    lists; dates and times, ISO 8601 text; enums, their value; decimals, UUIDs and paths, text;
    tuples and sets, lists; pydantic models, what ``model_dump_json`` writes; dataclasses,
    other mappings and objects with ``to_dict()``, their fields; pandas' NA and NaT, None.
    Anything else becomes ``default(value)``.

    Args:
        value: what to convert.
        default: converts what nothing above covers (``repr``, or ``str`` as ``json.dumps``'s
            ``default=str`` does). A part that cannot be converted, such as a list that
            contains itself, also gets it, and the rest of the value is converted as usual.
        on_array: called with every numpy array before it is converted (to measure it; what
            it raises propagates).
    """
    return _convert(value, default, on_array, 0)


def _convert(
    value: Any,
    default: Callable[[Any], Any],
    on_array: Callable[[np.ndarray], object] | None,
    depth: int,
) -> Any:
    def fallback(unknown: Any) -> Any:
        return _unknown(unknown, default, on_array)

    try:
        return to_jsonable_python(_prepared(value), inf_nan_mode="null", fallback=fallback)
    except _CONVERSION_ERRORS:
        pass
    # Convert part by part, so that only the part that fails gets its default.
    deeper = depth + 1
    if depth < _MAX_DEPTH:
        if isinstance(value, Mapping):
            return {
                _key(key, default): _convert(item, default, on_array, deeper)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [_convert(item, default, on_array, deeper) for item in value]
    return _unknown(value, default, on_array)


def _prepared(value: Any) -> Any:
    if isinstance(value, BaseModel):
        # model_dump_json, not model_dump(mode="json"): only the JSON writer turns NaN into
        # null, for the model's fields and for those of the models inside it.
        try:
            return json.loads(value.model_dump_json(warnings=False))
        except Exception:  # noqa: BLE001 - a field pydantic cannot write: convert it here
            return value.model_dump(warnings=False)
    return value


def _unknown(
    value: Any,
    default: Callable[[Any], Any],
    on_array: Callable[[np.ndarray], object] | None,
) -> Any:
    """What pydantic-core leaves to us (its result is converted further by pydantic-core)."""
    if isinstance(value, np.ndarray):
        if on_array is not None:
            on_array(value)
        if value.dtype.kind in "mM":  # tolist() would give integers for nanosecond units
            text = value.astype(str).astype(object)
            text[np.isnat(value)] = None
            return text.tolist()
        return value.tolist()
    try:
        if isinstance(value, np.datetime64 | np.timedelta64):
            return None if np.isnat(value) else str(value)
        if isinstance(value, np.generic):
            return value.item()
        if type(value).__name__ in _MISSING_TYPES:
            return None
        if isinstance(value, Mapping):
            return dict(value)
        to_dict = getattr(value, "to_dict", None)
        if callable(to_dict):
            return to_dict()
    except Exception:  # noqa: BLE001, S110 - a value that fails to convert gets its default
        pass
    return default(value)


def _key(key: Any, default: Callable[[Any], Any]) -> str:
    """A mapping key as pydantic-core writes it (JSON keys are strings: 3 -> "3")."""
    if isinstance(key, str):
        return key
    try:
        (converted,) = to_jsonable_python(
            {key: None}, fallback=lambda unknown: _unknown(unknown, default, None)
        )
    except _CONVERSION_ERRORS:
        converted = key
    return str(converted)
