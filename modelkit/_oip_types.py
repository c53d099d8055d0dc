"""The Open Inference Protocol's vocabulary: its datatypes, and a signature's inputs and outputs
in its terms.

Below both :mod:`modelkit._oip`, which speaks the protocol, and :mod:`modelkit._openapi`, which
documents it, so that the document names the very datatypes, shapes and outputs the endpoints
take and give.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._jsonable import to_jsonable
from ._spec import Signature, TensorSpec

__all__ = [
    "COLUMN_DATATYPES",
    "DATATYPES",
    "EXTENSIONS",
    "INFERENCE_HEADER",
    "JSON_TYPES",
    "as_text",
    "compact_json",
    "datatype_of",
    "input_metadata",
    "label_datatype",
    "output_metadata",
]

#: The header that gives the length of the JSON part of a body with binary tensor data.
INFERENCE_HEADER = "Inference-Header-Content-Length"
#: The extensions ``GET /v2`` names.
EXTENSIONS = ("binary_tensor_data",)

#: Each datatype's numpy element type, little-endian as the binary extension sends it.
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
#: The JSON Schema type of an element of each datatype in JSON ``data`` (null aside).
JSON_TYPES: dict[str, str] = {
    "BOOL": "boolean",
    "BYTES": "string",
    **{name: "integer" for name in DATATYPES if "INT" in name},
    **{name: "number" for name in DATATYPES if name.startswith("FP")},
}
# Widest first: model metadata names the first of a column's datatypes.
_INTEGERS = ("INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8")
_FLOATS = ("FP64", "FP32", "FP16")
#: The datatypes a tabular column takes, by column type; model metadata names the first. The
#: signature judges the values: an integer column takes floats with whole values.
COLUMN_DATATYPES: dict[str, tuple[str, ...]] = {
    "number": (*_FLOATS, *_INTEGERS),
    "integer": (*_INTEGERS, *_FLOATS),
    "boolean": ("BOOL",),
    "string": ("BYTES",),
    "datetime": ("BYTES",),
}


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The protocol's name for a numpy element type (strings and objects are ``BYTES``).

    Raises:
        TypeError: no datatype holds it (a complex or a date, say).
    """
    kind = dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return f"{'U' if kind == 'u' else ''}INT{8 * dtype.itemsize}"
    if kind == "f" and dtype.itemsize in (2, 4, 8):
        return f"FP{8 * dtype.itemsize}"
    if kind in "OUS":
        return "BYTES"
    raise TypeError(f"no Open Inference datatype for {dtype}")


def label_datatype(classes: Sequence[Any] | None) -> str:
    """The datatype of a classifier's labels, from its classes (text without them)."""
    kinds = {type(c) for c in classes or ("",)}
    if kinds == {bool}:
        return "BOOL"
    if kinds == {int}:
        return "INT64"
    if kinds <= {int, float}:
        return "FP64"
    return "BYTES"


def compact_json(value: Any) -> str:
    """``value`` as compact JSON text (anything JSON lacks as its ``str``)."""
    return json.dumps(to_jsonable(value, default=str), separators=(",", ":"))


def as_text(value: Any) -> str:
    """A ``BYTES`` element's text: a string as it is, anything else as its JSON."""
    return value if isinstance(value, str) else compact_json(value)


def input_metadata(signature: Signature) -> list[dict[str, Any]]:
    """The inputs, as model metadata lists them: a tabular model's columns (shape ``[-1]``),
    a tensor model's graph inputs."""
    columns = [
        {"name": c.name, "datatype": COLUMN_DATATYPES[c.type][0], "shape": [-1]}
        for c in signature.columns
    ]
    return columns + [_tensor_metadata(t) for t in signature.tensors]


def output_metadata(signature: Signature) -> list[dict[str, Any]]:
    """The outputs, as model metadata lists them: ``label`` and ``probabilities`` (the classes
    in its ``parameters``) for a classifier, ``value`` for a regressor, else the graph's."""
    outputs = signature.outputs
    if outputs.task == "classification":
        label: dict[str, Any] = {
            "name": "label",
            "datatype": label_datatype(outputs.classes),
            "shape": [-1],
        }
        if not outputs.has_probabilities:
            return [label]
        probabilities: dict[str, Any] = {"name": "probabilities", "datatype": "FP64"}
        classes = outputs.classes
        probabilities["shape"] = [-1, -1 if classes is None else len(classes)]
        if classes is not None:
            probabilities["parameters"] = {"classes": compact_json(list(classes))}
        return [label, probabilities]
    if outputs.task == "regression":
        return [{"name": "value", "datatype": "FP64", "shape": [-1]}]
    return [_tensor_metadata(t) for t in outputs.tensors or ()]


def _tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    try:
        datatype = datatype_of(np.dtype(object if spec.dtype == "string" else spec.dtype))
    except TypeError:  # a sequence or map (a ZipMap's output): sent as JSON text
        datatype = "BYTES"
    shape = [-1] if spec.shape is None else [d if isinstance(d, int) else -1 for d in spec.shape]
    return {"name": spec.name, "datatype": datatype, "shape": shape}
