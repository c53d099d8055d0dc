"""Read an ONNX model's protobuf without onnxruntime or the onnx package.

Two things must be known about a graph before onnxruntime sees it, and neither may cost what
running it costs: whether any tensor points at *external data* (a file onnxruntime would open
next to the working directory, outside the verified bundle), and what its inputs and outputs are
(for ``modelkit inspect`` and ``schema``, which must not build a session: constant folding alone
can allocate gigabytes). The ONNX format is protobuf; this module walks its wire format with the
field numbers of ``onnx.proto``, copying nothing, so it works with only the run-time
dependencies installed and on graphs of any size.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["GraphError", "GraphValue", "external_tensors", "graph_values", "producer_name"]

# Subgraphs nest (If inside Loop inside Scan...); real models stay far below this.
_MAX_DEPTH = 64
# The ONNX element types, by their TensorProto.DataType number, named as onnxruntime names them.
_ELEMENT_TYPES = {
    1: "float",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "string",
    9: "bool",
    10: "float16",
    11: "double",
    12: "uint32",
    13: "uint64",
    14: "complex64",
    15: "complex128",
    16: "bfloat16",
}

# Field numbers from onnx.proto (checked against the onnx package in the tests).
_MODEL_PRODUCER_NAME, _MODEL_GRAPH, _MODEL_TRAINING_INFO, _MODEL_FUNCTIONS = 2, 7, 20, 25
_TRAINING_INITIALIZATION, _TRAINING_ALGORITHM = 1, 2
_FUNCTION_NODE, _FUNCTION_ATTRIBUTE = 7, 11
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_GRAPH_INPUT, _GRAPH_OUTPUT = 11, 12
_NODE_ATTRIBUTE = 5
_ATTRIBUTE_TENSOR, _ATTRIBUTE_GRAPH, _ATTRIBUTE_TENSORS, _ATTRIBUTE_GRAPHS = 5, 6, 10, 11
_ATTRIBUTE_SPARSE_TENSOR, _ATTRIBUTE_SPARSE_TENSORS = 22, 23
# The fields of each message the search for external data reads; the others are stepped over.
_GRAPH_HOLDERS = frozenset({_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER})
_NODE_HOLDERS = frozenset({_NODE_ATTRIBUTE})
_ATTRIBUTE_HOLDERS = frozenset(
    {
        _ATTRIBUTE_TENSOR,
        _ATTRIBUTE_GRAPH,
        _ATTRIBUTE_TENSORS,
        _ATTRIBUTE_GRAPHS,
        _ATTRIBUTE_SPARSE_TENSOR,
        _ATTRIBUTE_SPARSE_TENSORS,
    }
)
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 8, 13, 14
_VALUE_NAME, _VALUE_TYPE = 1, 2
_TYPE_TENSOR, _TYPE_SEQUENCE, _TYPE_MAP = 1, 4, 5
_SEQUENCE_ELEMENT = 1
_MAP_KEY, _MAP_VALUE = 1, 2
_TENSOR_TYPE_ELEMENT, _TENSOR_TYPE_SHAPE = 1, 2
_SHAPE_DIM = 1
_DIM_VALUE, _DIM_PARAM = 1, 2

_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


class GraphError(ValueError):
    """The bytes are not a well-formed ONNX protobuf."""


@dataclass(frozen=True)
class GraphValue:
    """A graph input or output, described as onnxruntime's ``NodeArg`` describes it.

    Attributes:
        name: the input or output name.
        type: onnxruntime's type string: ``tensor(float)``, ``seq(map(int64,tensor(float)))``...
        shape: a tensor's dimensions (an int, a name, or ``None`` when unknown), or ``None``.
    """

    name: str
    type: str
    shape: tuple[int | str | None, ...] | None


def external_tensors(data: bytes) -> list[str]:
    """The names of every tensor that stores its data outside the model bytes.

    Looks everywhere a tensor can be: initializers and sparse initializers, ``Constant`` and
    other node attributes, the subgraphs of ``If``/``Loop``/``Scan`` (at any depth), functions
    and training graphs.

    Raises:
        GraphError: the bytes are not a well-formed ONNX model.
    """
    found: list[str] = []
    view = memoryview(data)
    for number, value in _fields(view):
        if number == _MODEL_GRAPH:
            _graph_tensors(value, found, 0)
        elif number == _MODEL_TRAINING_INFO:
            for inner, graph in _fields(value):
                if inner in (_TRAINING_INITIALIZATION, _TRAINING_ALGORITHM):
                    _graph_tensors(graph, found, 0)
        elif number == _MODEL_FUNCTIONS:
            for inner, part in _fields(value):
                if inner == _FUNCTION_NODE:
                    _node_tensors(part, found, 0)
                elif inner == _FUNCTION_ATTRIBUTE:
                    _attribute_tensors(part, found, 0)
    return found


def graph_values(data: bytes) -> tuple[list[GraphValue], list[GraphValue]]:
    """The main graph's inputs (initializers excluded) and outputs, read without running it.

    Raises:
        GraphError: the bytes are not a well-formed ONNX model, or it has no graph.
    """
    view = memoryview(data)
    graphs = [value for number, value in _fields(view) if number == _MODEL_GRAPH]
    if not graphs:
        raise GraphError("the model has no graph")
    inputs: list[GraphValue] = []
    outputs: list[GraphValue] = []
    initialized: set[str] = set()
    for number, value in _fields(graphs[-1]):
        if number == _GRAPH_INPUT:
            inputs.append(_graph_value(value))
        elif number == _GRAPH_OUTPUT:
            outputs.append(_graph_value(value))
        elif number == _GRAPH_INITIALIZER:
            initialized.add(_tensor_name(value))
    # Old graphs list initializers among the inputs too; they are not fed by the caller.
    return [v for v in inputs if v.name not in initialized], outputs


def producer_name(data: bytes) -> str | None:
    """The tool that wrote the model (``skl2onnx``, ``pytorch``...), when it says.

    Raises:
        GraphError: the bytes are not a well-formed ONNX model.
    """
    for number, value in _fields(memoryview(data)):
        if number == _MODEL_PRODUCER_NAME:
            return _text(value) or None
    return None


# -- walking ------------------------------------------------------------------------------------


def _graph_tensors(graph: memoryview, found: list[str], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise GraphError(f"subgraphs nest deeper than {_MAX_DEPTH} levels")
    for number, value in _fields(graph, _GRAPH_HOLDERS):
        if number == _GRAPH_INITIALIZER:
            _tensor(value, found)
        elif number == _GRAPH_SPARSE_INITIALIZER:
            _sparse_tensor(value, found)
        elif number == _GRAPH_NODE:
            _node_tensors(value, found, depth)


def _node_tensors(node: memoryview, found: list[str], depth: int) -> None:
    for number, value in _fields(node, _NODE_HOLDERS):
        if number == _NODE_ATTRIBUTE:
            _attribute_tensors(value, found, depth)


def _attribute_tensors(attribute: memoryview, found: list[str], depth: int) -> None:
    for number, value in _fields(attribute, _ATTRIBUTE_HOLDERS):
        if number in (_ATTRIBUTE_TENSOR, _ATTRIBUTE_TENSORS):
            _tensor(value, found)
        elif number in (_ATTRIBUTE_SPARSE_TENSOR, _ATTRIBUTE_SPARSE_TENSORS):
            _sparse_tensor(value, found)
        elif number in (_ATTRIBUTE_GRAPH, _ATTRIBUTE_GRAPHS):
            _graph_tensors(value, found, depth + 1)


def _sparse_tensor(sparse: memoryview, found: list[str]) -> None:
    for number, value in _fields(sparse):
        if number in (_SPARSE_VALUES, _SPARSE_INDICES):
            _tensor(value, found)


def _tensor(tensor: memoryview, found: list[str]) -> None:
    name = ""
    external = False
    for number, value in _values(tensor):
        if number == _TENSOR_NAME and isinstance(value, memoryview):
            name = _text(value)
        # Either field is enough for onnxruntime to go looking for a file.
        external = external or number == _TENSOR_EXTERNAL_DATA
        external = external or (number == _TENSOR_DATA_LOCATION and value == _EXTERNAL)
    if external:
        found.append(name or "<unnamed tensor>")


def _tensor_name(tensor: memoryview) -> str:
    for number, value in _fields(tensor):
        if number == _TENSOR_NAME:
            return _text(value)
    return ""


def _graph_value(value_info: memoryview) -> GraphValue:
    name = ""
    kind = "unknown"
    shape: tuple[int | str | None, ...] | None = None
    for number, value in _fields(value_info):
        if number == _VALUE_NAME:
            name = _text(value)
        elif number == _VALUE_TYPE:
            kind, shape = _type(value, 0)
    return GraphValue(name, kind, shape)


def _type(type_proto: memoryview, depth: int) -> tuple[str, tuple[int | str | None, ...] | None]:
    """onnxruntime's name for a TypeProto, and a tensor's shape."""
    if depth > _MAX_DEPTH:
        raise GraphError(f"types nest deeper than {_MAX_DEPTH} levels")
    for number, value in _fields(type_proto):
        if number == _TYPE_TENSOR:
            return _tensor_type(value)
        if number == _TYPE_SEQUENCE:
            inner = "unknown"
            for field, element in _fields(value):
                if field == _SEQUENCE_ELEMENT:
                    inner, _ = _type(element, depth + 1)
            return f"seq({inner})", None
        if number == _TYPE_MAP:
            key, inner = "unknown", "unknown"
            for field, part in _values(value):
                if field == _MAP_KEY and isinstance(part, int):
                    key = _ELEMENT_TYPES.get(part, "unknown")
                elif field == _MAP_VALUE and isinstance(part, memoryview):
                    inner, _ = _type(part, depth + 1)
            return f"map({key},{inner})", None
    return "unknown", None


def _tensor_type(tensor_type: memoryview) -> tuple[str, tuple[int | str | None, ...] | None]:
    element = "unknown"
    shape: tuple[int | str | None, ...] | None = None
    for number, value in _values(tensor_type):
        if number == _TENSOR_TYPE_ELEMENT and isinstance(value, int):
            element = _ELEMENT_TYPES.get(value, "unknown")
        elif number == _TENSOR_TYPE_SHAPE and isinstance(value, memoryview):
            dims: list[int | str | None] = []
            for kind, dimension in _fields(value):
                if kind == _SHAPE_DIM:
                    dims.append(_dimension(dimension))
            shape = tuple(dims)
    return f"tensor({element})", shape


def _dimension(dimension: memoryview) -> int | str | None:
    for number, value in _values(dimension):
        if number == _DIM_VALUE and isinstance(value, int):
            return value
        if number == _DIM_PARAM and isinstance(value, memoryview):
            return _text(value) or None
    return None


def _text(value: memoryview) -> str:
    return bytes(value).decode("utf-8", errors="replace")


# -- the protobuf wire format -------------------------------------------------------------------


# A run is up to this many fields under one one-byte key (fields 1 to 15), stepped over in one
# regex match. Bounded: the regex engine keeps a backtracking record per repetition, ~170 bytes,
# so an unbounded run of a hostile graph's few hundred megabytes would take gigabytes; and a
# long match is slower than several short ones. A run of numbers that goes on is finished with
# array operations (:func:`_numbers_end`).
_RUN_FIELDS = 128
# The bytes :func:`_numbers_end` looks at first, and at most, at once: a window doubles while the
# run fills it, so a run costs about its own length, and memory stays bounded.
_FIRST_WINDOW = 4096
_LAST_WINDOW = 256 * 1024
# After its key, the value of a number (a varint of at most ten bytes) or a fixed-size value.
_SCALAR_VALUES = {0: b"[\\x80-\\xff]{0,9}[\\x00-\\x7f]", 1: b".{8}", 5: b".{4}"}
# The value of a string or message shorter than 128 bytes: its one-byte length, then that many
# bytes (a branch per length: a regex cannot read a length and skip by it).
_SHORT_VALUE = b"(?:" + b"|".join(b"\\x%02x.{%d}" % (n, n) for n in range(128)) + b")"

_Match = Callable[[memoryview, int], re.Match[bytes] | None]


def _run_of(keys: Iterable[int], value: bytes) -> _Match:
    key_class = b"".join(b"\\x%02x" % key for key in keys)
    pattern = b"(?:[" + key_class + b"]" + value + b"){1,%d}" % _RUN_FIELDS
    return re.compile(pattern, re.DOTALL).match


@functools.cache
def _scalar_run(key: int) -> _Match:
    """A run of numbers or fixed-size values under one key, as proto2 writes a repeated field
    unpacked (a tree ensemble's attributes hold tens of thousands, one key each)."""
    return _run_of([key], _SCALAR_VALUES[key & 7])


class _Runs(dict[int, _Match | None]):
    """What :func:`_fields` steps over in C, by the byte a field starts with, for one set of
    wanted fields: runs of numbers and fixed-size values, and runs of short strings and
    messages nobody asked for (a tree ensemble's ``nodes_modes`` is a string per node).

    A run cut short (by the end of the message, or a value too long) ends where it stops
    matching; the field there is left to the field-by-field decoder, which reads or refuses it.
    Patterns are compiled when a key is first met, not at import: one with a branch per length
    takes a millisecond.
    """

    def __init__(self, wanted: frozenset[int] | None) -> None:
        super().__init__()
        self._skipped = [] if wanted is None else [n for n in range(1, 16) if n not in wanted]
        self._strings: _Match | None = None

    def __missing__(self, key: int) -> _Match | None:
        match: _Match | None = None
        if 0x08 <= key < 0x80 and key & 7 in _SCALAR_VALUES:
            match = _scalar_run(key)
        elif 0x08 <= key < 0x80 and key & 7 == 2 and key >> 3 in self._skipped:
            if self._strings is None:
                self._strings = _run_of([(n << 3) | 2 for n in self._skipped], _SHORT_VALUE)
            match = self._strings
        self[key] = match
        return match


@functools.lru_cache(maxsize=32)
def _runs(wanted: frozenset[int] | None) -> _Runs:
    return _Runs(wanted)


def _fields(
    message: memoryview, wanted: frozenset[int] | None = None
) -> Iterator[tuple[int, memoryview]]:
    """``(field number, value)`` for each length-delimited field (messages, strings, bytes),
    or only for the ``wanted`` field numbers (the others are stepped over, not sliced)."""
    runs = _runs(wanted)
    position = 0
    end = len(message)
    while position < end:
        key = message[position]
        skip = runs[key]
        run = None if skip is None else skip(message, position)
        if run is not None:
            position = run.end()
            if position < end and message[position] == key and key & 7 in _SCALAR_VALUES:
                position = _numbers_end(message, position, key)
            continue
        if (
            0x08 <= key < 0x80
            and key & 7 == 2
            and position + 1 < end
            and message[position + 1] < 0x80
        ):
            # A one-byte key and a one-byte length, as most names and strings have: read here,
            # without the general decoder's calls.
            start = position + 2
            position = start + message[position + 1]
            if position > end:
                raise GraphError("a field runs past the end of its message")
            if wanted is None or key >> 3 in wanted:
                yield key >> 3, message[start:position]
            continue
        number, value, position = _next_value(message, position)
        if isinstance(value, memoryview) and (wanted is None or number in wanted):
            yield number, value


def _numbers_end(message: memoryview, position: int, key: int) -> int:
    """Where a run of numbers or fixed-size values under the one-byte ``key`` that starts at
    ``position`` ends: at the first field that is not a whole one under ``key`` (or the end).

    It steps over exactly the fields the run patterns match, with array operations on a window
    at a time instead of a regex repetition per field: a tree ensemble's attributes hold tens
    of thousands.
    """
    data = np.frombuffer(message, dtype=np.uint8)
    end = len(data)
    width = {1: 9, 5: 5}.get(key & 7)
    window = _FIRST_WINDOW
    while position < end and data[position] == key:
        chunk = data[position : position + window]
        if width is None:
            step = _whole_varints(chunk, key)
        else:
            keys = chunk[: len(chunk) // width * width : width]
            wrong = np.flatnonzero(keys != key)
            step = (int(wrong[0]) if len(wrong) else len(keys)) * width
        if step == 0:
            break
        position += step
        window = min(2 * window, _LAST_WINDOW)
    return position


def _whole_varints(chunk: np.ndarray[Any, np.dtype[np.uint8]], key: int) -> int:
    """The length of the run of whole ``key`` + varint fields at the start of ``chunk``, whose
    first byte is ``key`` (below 0x80)."""
    # Bytes below 0x80 end a varint; a key below 0x80 is one too. In a run they alternate: a
    # key, the last byte of its value (one to ten bytes after it), the next key right after.
    ends = np.flatnonzero(chunk < 0x80)
    values = ends[1::2]
    keys = ends[: 2 * len(values) : 2]
    whole = (chunk[keys] == key) & (values - keys <= 10)
    whole[1:] &= keys[1:] == values[:-1] + 1
    count = len(whole) if whole.all() else int(np.argmin(whole))
    return int(values[count - 1]) + 1 if count else 0


def _values(message: memoryview) -> Iterator[tuple[int, memoryview | int]]:
    """``(field number, value)`` for each field: a view of a length-delimited value, or the
    integer of a varint; fixed-size values (floats, fixed ints) are skipped."""
    position = 0
    while position < len(message):
        number, value, position = _next_value(message, position)
        if value is not None:
            yield number, value


def _next_value(message: memoryview, position: int) -> tuple[int, memoryview | int | None, int]:
    """The field at ``position``: its number, its value (``None`` for a fixed-size one) and
    where the next field starts."""
    end = len(message)
    key, position = _varint(message, position)
    number, wire = key >> 3, key & 7
    if number == 0:
        raise GraphError("a field numbered 0")
    value: memoryview | int | None = None
    if wire == 0:
        value, position = _varint(message, position)
    elif wire == 2:
        length, position = _varint(message, position)
        if length > end - position:
            raise GraphError("a field runs past the end of its message")
        value = message[position : position + length]
        position += length
    elif wire == 1:
        position += 8
    elif wire == 5:
        position += 4
    else:  # groups (3, 4) are not used by ONNX; anything else is not protobuf
        raise GraphError(f"wire type {wire}, which ONNX does not use")
    if position > end:
        raise GraphError("a field runs past the end of its message")
    return number, value, position


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    result = 0
    for shift in range(0, 70, 7):
        if position >= len(data):
            raise GraphError("a number runs past the end of the data")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
    raise GraphError("a number longer than ten bytes")
