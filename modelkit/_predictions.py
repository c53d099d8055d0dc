"""What predictions look like: one output per record, and a batch kept as columns."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

import numpy as np

from ._deps import require
from ._spec import data_frame

__all__ = ["ClassifierOutput", "Predictions", "RegressorOutput", "TensorOutput"]

Out = TypeVar("Out")


@dataclass(frozen=True, slots=True)
class ClassifierOutput:
    """A classifier's answer for one record.

    Attributes:
        label: the predicted class.
        probabilities: class -> probability, or ``None`` when the model gives none.
    """

    label: Any
    probabilities: dict[Any, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (probability keys become strings, as JSON requires)."""
        probabilities = (
            None
            if self.probabilities is None
            else {str(k): v for k, v in self.probabilities.items()}
        )
        return {"label": self.label, "probabilities": probabilities}


@dataclass(frozen=True, slots=True)
class RegressorOutput:
    """A regressor's answer for one record: ``value`` (a list for multi-output regressors)."""

    value: float | list[float]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"value": self.value}


class TensorOutput(Mapping[str, Any]):
    """A tensor model's named outputs for one call: ``output["probabilities"]`` is an array."""

    __slots__ = ("_outputs",)

    def __init__(self, outputs: Mapping[str, Any]) -> None:
        self._outputs = dict(outputs)

    def __getitem__(self, name: str) -> Any:
        try:
            return self._outputs[name]
        except KeyError:
            raise KeyError(
                f"{name!r} is not an output of this model (outputs: {list(self._outputs)})"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._outputs)

    def __len__(self) -> int:
        return len(self._outputs)

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={_short_array(v)}" for k, v in self._outputs.items())
        return f"TensorOutput({parts})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of nested lists."""
        return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in self._outputs.items()}


def _short_array(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array(shape={list(value.shape)}, dtype={value.dtype})"
    return repr(value)


class Predictions(Sequence[Out], Generic[Out]):
    """The outputs of a batch, in input order.

    Held as columns: ``predictions["label"]`` is an array, ``.to_pandas()`` a DataFrame, and no
    per-record object is built until you index or iterate.

    Example:
        >>> predictions = model.predict_batch(frame)
        >>> predictions["label"]          # numpy array, one label per row
        >>> predictions[0].probabilities  # one record's output
    """

    __slots__ = ("_classes", "_fields", "_length", "_row", "_rows")

    def __init__(
        self,
        fields: Mapping[str, Any],
        *,
        length: int,
        row: Callable[[Mapping[str, Any], int], Out],
        classes: Sequence[Any] | None = None,
        rows: list[Out] | None = None,
    ) -> None:
        self._fields = dict(fields)
        self._length = length
        self._row = row
        self._classes = None if classes is None else list(classes)
        self._rows = rows

    @classmethod
    def from_rows(cls, rows: Sequence[Out]) -> Predictions[Out]:
        """Predictions over outputs that already exist as objects (custom and tensor models)."""
        items = list(rows)
        return cls({}, length=len(items), row=lambda _fields, i: items[i], rows=items)

    @property
    def fields(self) -> tuple[str, ...]:
        """The names ``predictions[name]`` accepts."""
        if self._rows is not None and not self._fields:
            return _row_fields(self._rows[0]) if self._rows else ()
        return tuple(self._fields)

    @property
    def classes(self) -> list[Any] | None:
        """A classifier's classes, in the order of the probability columns."""
        return self._classes

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, key: int) -> Out: ...
    @overload
    def __getitem__(self, key: slice) -> Predictions[Out]: ...
    @overload
    def __getitem__(self, key: str) -> np.ndarray: ...

    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            return self._column(key)
        if isinstance(key, slice):
            indices = range(self._length)[key]
            if self._rows is not None:
                return Predictions.from_rows([self._rows[i] for i in indices])
            sliced = {name: value[key] for name, value in self._fields.items()}
            return Predictions(sliced, length=len(indices), row=self._row, classes=self._classes)
        if isinstance(key, int | np.integer):
            position = int(key)
            if position < 0:
                position += self._length
            if not 0 <= position < self._length:
                raise IndexError(
                    f"prediction index {key} out of range for {self._length} predictions"
                )
            if self._rows is not None:
                return self._rows[position]
            return self._row(self._fields, position)
        raise TypeError(f"Predictions indices must be int, slice or str, not {type(key).__name__}")

    def __iter__(self) -> Iterator[Out]:
        if self._rows is not None:
            return iter(self._rows)
        return (self._row(self._fields, i) for i in range(self._length))

    def __repr__(self) -> str:
        return f"<Predictions: {self._length} records, fields {list(self.fields)}>"

    def _column(self, name: str) -> np.ndarray:
        if name in self._fields:
            return self._fields[name]  # type: ignore[no-any-return]
        if self._rows is not None and name in self.fields:
            values = [_row_value(row, name) for row in self._rows]
            try:
                return (
                    np.stack(values)
                    if values and isinstance(values[0], np.ndarray)
                    else np.asarray(values)
                )
            except ValueError:
                array = np.empty(len(values), dtype=object)
                array[:] = values
                return array
        raise KeyError(
            f"{name!r} is not a field of these predictions (fields: {list(self.fields)})"
        )

    def to_list(self) -> list[Out]:
        """Every output as its own object."""
        return list(self)

    def to_pandas(self) -> Any:
        """A DataFrame with one row per record.

        Classifiers give ``label`` and one ``probability_<class>`` column per class (the naming
        of every flat table modelkit writes, ``modelkit predict`` files included); regressors
        ``value``; tensor and custom models one column per field.
        """
        pandas = require("pandas", extra="pandas", feature="Predictions.to_pandas()")
        names: list[str] = []
        columns: list[Any] = []
        for name in self.fields:
            value = self._column(name)
            if name == "probabilities" and self._classes is not None:
                names += [probability_column(cls) for cls in self._classes]
                columns += [value[:, j] for j in range(len(self._classes))]
            elif isinstance(value, np.ndarray) and value.ndim > 1:
                names.append(name)
                columns.append(list(value))
            else:
                names.append(name)
                columns.append(value)
        # No copies here: pandas stacks the numpy columns of each dtype into a block of its own,
        # so the frame owns its data, apart from the predictions'. Numbers and booleans are
        # what its constructor would make of them; anything else pandas reads as it would.
        plain = all(isinstance(c, np.ndarray) and c.dtype.kind in "biuf" for c in columns)
        return data_frame(pandas, names, columns, self._length, infer=not plain)


def probability_column(cls: Any) -> str:
    """The flat-table column of one class's probability: ``probability_<class>``."""
    return f"probability_{cls}"


def _row_fields(row: Any) -> tuple[str, ...]:
    if isinstance(row, Mapping):
        return tuple(row)
    if hasattr(type(row), "model_fields"):
        return tuple(type(row).model_fields)
    if hasattr(row, "__dataclass_fields__"):
        return tuple(row.__dataclass_fields__)
    return ()


def _row_value(row: Any, name: str) -> Any:
    return row[name] if isinstance(row, Mapping) else getattr(row, name)
