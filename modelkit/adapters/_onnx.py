"""The ``onnx`` adapter: any model onnxruntime runs, on one shared CPU session."""

from __future__ import annotations

import ctypes
import functools
import operator
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .._environment import installed_version
from .._infer import infer_tabular_signature
from .._onnx_graph import GraphError, external_tensors, graph_values, producer_name
from .._protocol import SavedModel, first_line, rejected
from .._spec import Outputs, Signature, Table, TabularInputs, Task, TensorInputs, TensorSpec
from .._worker import after_fork_in_child
from ..errors import BundleError, InvalidInputError

if TYPE_CHECKING:
    from .._bundle import Artifacts
    from .._manifest import Manifest

__all__ = ["OnnxAdapter", "OnnxRunner", "describe_graph"]

ARTIFACT = "model.onnx"
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": "string",
}
_LABEL_NAMES = ("label", "output_label")
_PROBABILITY_NAMES = ("probabilities", "output_probability")
_OPTIONS = (
    "intra_op_num_threads",
    "inter_op_num_threads",
    "allow_spinning",
    "graph_optimization_level",
    "providers",
)
# Threads inside one operator when the caller does not say (see make_session).
_DEFAULT_INTRA_OP_THREADS = 1
_OPTIMIZATION_LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def _onnxruntime() -> Any:
    # Imported on first use: loading onnxruntime costs ~100 ms that `import modelkit` should not.
    import onnxruntime

    return onnxruntime


def _model_bytes(obj: Any) -> bytes:
    if isinstance(obj, bytes | bytearray | memoryview):
        return bytes(obj)
    if isinstance(obj, str | os.PathLike):
        path = Path(obj)
        if path.suffix.lower() != ".onnx" or not path.is_file():
            raise BundleError(f"{str(path)!r} is not an .onnx file.", path=str(path))
        return path.read_bytes()
    serialize = getattr(obj, "SerializeToString", None)
    if callable(serialize):
        return bytes(serialize())
    raise BundleError(
        f"Cannot save a {type(obj).__qualname__} in the onnx format: expected an ONNX model "
        "(onnx.ModelProto, its bytes, or a path to an .onnx file), or a scikit-learn estimator "
        "to convert."
    )


def make_session(data: bytes, options: Mapping[str, Any] | None = None, *, label: str) -> Any:
    """An InferenceSession on the CPU provider (unless ``providers`` says otherwise).

    Raises:
        TypeError: a bad option value.
        BundleError: the model stores tensors outside its bytes, or onnxruntime cannot load it.
    """
    refuse_external_data(data, label=label)
    ort = _onnxruntime()
    options = dict(options or {})
    session_options = ort.SessionOptions()
    # One thread inside each operator unless asked otherwise (0 is onnxruntime's own default, a
    # thread per core): on the shared cores of a server, a pool's threads wait on each other's
    # cores and spin when idle, which made single records up to 2x slower. A pool pays for large
    # batches of heavy models on free cores (a 2 MB forest's 10,000 rows: 34 ms, against 61 ms
    # on one thread), where callers opt in (benchmarks/bench_session_options.py and
    # bench_core.py; the figures are in docs/performance.md).
    threads = options.get("intra_op_num_threads")
    session_options.intra_op_num_threads = (
        _DEFAULT_INTRA_OP_THREADS if threads is None else int(threads)
    )
    if options.get("inter_op_num_threads") is not None:
        session_options.inter_op_num_threads = int(options["inter_op_num_threads"])
    if options.get("allow_spinning") is not None:
        # Idle worker threads spin by default; on shared cores that steals time from callers.
        spinning = "1" if options["allow_spinning"] else "0"
        session_options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        session_options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    level = options.get("graph_optimization_level")
    if level is not None:
        if level not in _OPTIMIZATION_LEVELS:
            raise TypeError(
                f"graph_optimization_level must be one of {list(_OPTIMIZATION_LEVELS)}, "
                f"got {level!r}."
            )
        session_options.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, _OPTIMIZATION_LEVELS[level]
        )
    providers = list(options.get("providers") or ["CPUExecutionProvider"])
    try:
        return ort.InferenceSession(data, sess_options=session_options, providers=providers)
    except Exception as exc:
        raise BundleError(
            f"onnxruntime {installed_version('onnxruntime')} cannot load {label!r}: "
            f"{first_line(exc)}",
            path=label,
        ) from exc


def refuse_external_data(data: bytes, *, label: str) -> None:
    """Raise unless every tensor of the model is stored in ``data`` itself.

    A tensor with external data names a file that onnxruntime opens, relative to the working
    directory, while it builds a session: a file outside the verified bundle that no hash or pin
    covers, whose bytes could come back in the outputs. No graph of a bundle may have one.

    Raises:
        BundleError: naming the first such tensor, or the bytes are not an ONNX model.
    """
    try:
        external = external_tensors(data)
    except GraphError as exc:
        raise BundleError(
            f"modelkit cannot load {label!r}: it is not a valid ONNX model ({exc}).", path=label
        ) from None
    if external:
        more = f" (and {len(external) - 1} more)" if len(external) > 1 else ""
        raise BundleError(
            f"Refusing to load {label!r}: tensor {external[0]!r}{more} keeps its data in an "
            "external file, outside the verified bytes. modelkit loads self-contained graphs "
            "only: save the model with its tensors inside it "
            "(onnx.save_model(model, path, save_as_external_data=False)).",
            path=label,
        )


def _tensor_spec(node: Any) -> TensorSpec:
    dtype = _ORT_TYPES.get(node.type)
    if dtype is None:
        raise BundleError(
            f"The ONNX graph's {node.name!r} has type {node.type}; modelkit serves tensors of "
            f"{', '.join(sorted(set(_ORT_TYPES.values())))}."
        )
    shape = (
        None
        if node.shape is None
        else tuple(
            d if isinstance(d, int) and d >= 0 else (d if isinstance(d, str) else None)
            for d in node.shape
        )
    )
    return TensorSpec(name=node.name, dtype=dtype, shape=shape)


def _output_spec(node: Any) -> TensorSpec:
    if node.type in _ORT_TYPES:
        return _tensor_spec(node)
    # Sequences and maps (such as a ZipMap's output) are passed through as Python objects.
    return TensorSpec(name=node.name, dtype=node.type, shape=None)


def describe_graph(
    data: bytes,
    *,
    session: Any = None,
    sample_input: Any = None,
    inputs: TabularInputs | TensorInputs | None = None,
    outputs: Outputs | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    missing_string: str | None = None,
    label: str,
) -> SavedModel:
    """Inspect an ONNX model and decide its signature, input layout and task.

    ``groups`` (graph input name to the columns it stacks) selects the ``groups`` layout, which
    conversion from scikit-learn writes; otherwise the layout is read from the graph.
    ``missing_string`` is the string the graph takes for a missing value in a string column.
    """
    # Read from the protobuf, not a session: describing a graph must not run or optimize it
    # (constant folding alone can allocate gigabytes for a graph of a few hundred bytes).
    refuse_external_data(data, label=label)
    try:
        read_inputs, read_outputs = graph_values(data)
        producer = producer_name(data)
    except GraphError as exc:
        raise BundleError(
            f"modelkit cannot load {label!r}: it is not a valid ONNX model ({exc}).", path=label
        ) from None
    graph_inputs = [_tensor_spec(value) for value in read_inputs]
    graph_outputs = [_output_spec(value) for value in read_outputs]
    details: dict[str, Any] = {
        "artifact": ARTIFACT,
        "onnxruntime": installed_version("onnxruntime"),
        "inputs": [spec.model_dump(mode="json") for spec in graph_inputs],
        "outputs": [spec.name for spec in graph_outputs],
    }
    details["producer"] = producer

    if inputs is None:
        if sample_input is not None:
            inputs, _ = infer_tabular_signature(sample_input)
        else:
            inputs = TensorInputs(tensors=tuple(graph_inputs))
    if groups is not None:
        details["layout"] = "groups"
        details["groups"] = [{"input": k, "columns": list(v)} for k, v in groups.items()]
    else:
        details["layout"] = _layout(inputs, graph_inputs)
    if missing_string is not None:
        details["missing_string"] = missing_string
    classes = outputs.classes if outputs is not None and outputs.classes else None
    decided = _outputs(
        graph_outputs,
        tabular=isinstance(inputs, TabularInputs),
        task=outputs.task if outputs is not None else None,
        classes=classes if classes is not None else _declared_classes(data),
    )
    signature = Signature(inputs=inputs, outputs=decided)
    if sample_input is not None and isinstance(inputs, TabularInputs):
        if session is None:
            session = make_session(data, label=label)
        _check_sample(session, signature, str(details["layout"]), groups, sample_input)
    return SavedModel(signature=signature, details=details)


def _check_sample(
    session: Any,
    signature: Signature,
    layout: str,
    groups: Mapping[str, Sequence[str]] | None,
    sample: Any,
) -> None:
    """Run the sample through the graph before anything is written."""
    from .._validation import TabularValidator

    assert isinstance(signature.inputs, TabularInputs)
    try:
        table = TabularValidator(signature.inputs).batch(sample)
    except InvalidInputError as exc:
        raise BundleError(f"The sample input does not fit the signature: {exc}") from exc
    try:
        OnnxRunner(session, signature, layout=layout, groups=groups).run(table)
    except Exception as exc:  # whatever the graph raises, nothing is saved
        cause = exc.__cause__ or exc
        raise BundleError(
            f"The ONNX model cannot predict on its own sample input: {cause}"
        ) from exc


def _layout(inputs: TabularInputs | TensorInputs, graph: Sequence[TensorSpec]) -> str:
    if isinstance(inputs, TensorInputs):
        declared = {t.name for t in graph}
        if {t.name for t in inputs.tensors} != declared:
            raise BundleError(
                f"The signature's tensors differ from the graph's inputs {sorted(declared)}."
            )
        return "tensors"
    names = [c.name for c in inputs.columns]
    if len(graph) == 1 and graph[0].shape is not None and len(graph[0].shape) == 2:
        width = graph[0].shape[1]
        if width == len(names) or not isinstance(width, int):
            if graph[0].dtype == "string" and any(c.type != "string" for c in inputs.columns):
                raise BundleError(
                    "The graph takes one string tensor, but the sample has non-string columns."
                )
            return "matrix"
    if sorted(t.name for t in graph) == sorted(names) and all(
        t.shape is not None and len(t.shape) == 2 and t.shape[1] in (1, None) for t in graph
    ):
        return "columns"
    described = ", ".join(f"{t.name}: {t.dtype}{list(t.shape or [])}" for t in graph)
    raise BundleError(
        f"The sample input's {len(names)} columns do not fit the graph's inputs ({described}): "
        "expected one 2-D input with one column per field, or one [N, 1] input per field named "
        "like the columns."
    )


def _outputs(
    graph: Sequence[TensorSpec], *, tabular: bool, task: Task | None, classes: Any
) -> Outputs:
    looks_like_classifier = (
        len(graph) == 2
        and graph[0].dtype in ("int64", "int32", "string")
        and graph[0].name in _LABEL_NAMES
        and graph[1].name in _PROBABILITY_NAMES
    )
    looks_like_regressor = (
        len(graph) == 1
        and graph[0].dtype in ("float32", "float64")
        and graph[0].shape is not None
        and (len(graph[0].shape) == 1 or (len(graph[0].shape) == 2 and graph[0].shape[1] == 1))
    )
    if task is None:
        if tabular and looks_like_classifier and classes:
            task = "classification"
        elif tabular and looks_like_regressor:
            task = "regression"
        else:
            task = "tensor"
    if task == "classification":
        if not looks_like_classifier or not classes:
            raise BundleError(
                "Cannot serve this graph as a classifier: expected a label output and a "
                "probabilities output, and classes the graph declares (or a signature naming them)."
            )
        return Outputs(task="classification", classes=tuple(classes), has_probabilities=True)
    if task == "regression":
        if not looks_like_regressor:
            raise BundleError("Cannot serve this graph as a regressor: expected one float output.")
        return Outputs(task="regression")
    if task != "tensor":
        raise BundleError(
            f"The onnx format serves classification, regression or tensor tasks, not {task!r}."
        )
    return Outputs(task="tensor", tensors=tuple(graph))


def _declared_classes(data: bytes) -> list[Any] | None:
    """The class labels a classifier node declares, read with the onnx package when installed."""
    try:
        import onnx
    except ImportError:
        return None
    try:
        model = onnx.load_model_from_string(data)
    except Exception:  # noqa: BLE001 - onnxruntime already accepted the model; classes are optional
        return None
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name in ("classlabels_int64s", "classlabels_ints") and attribute.ints:
                return [int(v) for v in attribute.ints]
            if attribute.name == "classlabels_strings" and attribute.strings:
                return [v.decode("utf-8") for v in attribute.strings]
    return None


def _abandon(session: Any) -> None:
    """Keep a session inherited through fork alive for good: its destructor would join thread-pool
    threads that exist only in the parent, and wait forever."""
    _ABANDONED.append(session)
    # Held by the interpreter itself, so not even the module teardown at exit releases it.
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(session))


_ABANDONED: list[Any] = []


def _direct_run(session: Any) -> Callable[[list[str], dict[str, Any]], list[Any]]:
    """``session.run``, without the Python checks around it where they can never fire.

    ``InferenceSession.run`` checks that the feed names every required input, refuses sessions
    that capture graphs, checks the ownership of ``OrtValue`` inputs and, when an execution
    provider fails, retries on the fallback providers. A runner's feed holds numpy arrays for
    every input of the graph, built from the graph's own inputs, and a CPU-only session has
    no provider to fall back to; on one record of a small model those checks are a quarter
    of the call. Other sessions, and an onnxruntime whose session keeps no native ``run``,
    go through ``session.run``.
    """
    native = getattr(getattr(session, "_sess", None), "run", None)
    try:
        cpu_only = list(session.get_providers()) == ["CPUExecutionProvider"]
    except Exception:  # noqa: BLE001 - a session-like object without providers: the public run
        cpu_only = False
    if not callable(native) or not cpu_only:
        return cast("Callable[[list[str], dict[str, Any]], list[Any]]", session.run)

    def run(names: list[str], feed: dict[str, Any]) -> list[Any]:
        return cast("list[Any]", native(names, feed, None))

    return run


def _identity(values: Any) -> Any:
    return values


def _picker(indices: Sequence[int]) -> Callable[[Any], tuple[Any, ...]]:
    """A function giving a record's values at ``indices``, as a tuple (even for one index)."""
    if len(indices) == 1:
        (index,) = indices
        return lambda values: (values[index],)
    return operator.itemgetter(*indices)


def _filling(pick: Callable[[Any], Any], missing: str) -> Callable[[Any], list[Any]]:
    """``pick``, with ``missing`` in place of each None."""

    def fill(values: Any) -> list[Any]:
        return [missing if value is None else value for value in pick(values)]

    return fill


def _flat(values: Any) -> np.ndarray:
    array = np.asarray(values)
    return array if array.ndim == 1 else array.reshape(-1)


class OnnxAdapter:
    """Bundles an ONNX model as ``artifacts/model.onnx`` and runs it with onnxruntime."""

    name = "onnx"
    options = _OPTIONS

    def accepts(self, obj: object) -> bool:
        if isinstance(obj, str | os.PathLike):
            return str(obj).lower().endswith(".onnx")
        if isinstance(obj, bytes | bytearray | memoryview):
            return True  # no other format saves raw bytes; onnxruntime checks them
        return type(obj).__name__ == "ModelProto" and callable(
            getattr(obj, "SerializeToString", None)
        )

    def save(
        self,
        obj: Any,
        directory: Path,
        *,
        sample_input: Any,
        inputs: TabularInputs | TensorInputs | None,
        outputs: Outputs | None,
    ) -> SavedModel:
        data = _model_bytes(obj)
        label = "the ONNX model"
        # A bundle onnxruntime cannot load is no use: build the session before writing anything.
        session = make_session(data, label=label)
        saved = describe_graph(
            data,
            session=session,
            sample_input=sample_input,
            inputs=inputs,
            outputs=outputs,
            label=label,
        )
        (directory / ARTIFACT).write_bytes(data)
        return saved

    def load(
        self, artifacts: Artifacts, manifest: Manifest, *, options: Mapping[str, Any]
    ) -> OnnxRunner:
        name = str(manifest.adapter.get("artifact", ARTIFACT))
        data = artifacts[name]
        session = make_session(data, options, label=manifest.name)
        return OnnxRunner(
            session,
            manifest.signature,
            layout=str(manifest.adapter.get("layout", "tensors")),
            groups=_groups_of(manifest.adapter.get("groups")),
            missing_string=_missing_string_of(manifest.adapter.get("missing_string")),
            rebuild=functools.partial(make_session, data, options, label=manifest.name),
        )


def _groups_of(value: Any) -> dict[str, tuple[str, ...]] | None:
    """The ``groups`` of a manifest's adapter section: graph input name to its columns."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(g, dict)
        and isinstance(g.get("input"), str)
        and isinstance(g.get("columns"), list)
        and all(isinstance(c, str) for c in g["columns"])
        for g in value
    ):
        raise BundleError("The manifest's onnx input groups are malformed.")
    return {g["input"]: tuple(g["columns"]) for g in value}


def _missing_string_of(value: Any) -> str | None:
    """The ``missing_string`` of a manifest's adapter section."""
    if value is None or isinstance(value, str):
        return value
    raise BundleError("The manifest's onnx missing_string is not a string.")


class OnnxRunner:
    """Feeds validated inputs to one shared InferenceSession (``run`` is thread-safe).

    Layouts: ``matrix`` (one 2-D input, one column per field), ``columns`` (one ``[N, 1]`` input
    per field, named like it), ``groups`` (one 2-D input per group of fields, as conversion
    writes: one for the numbers, one for the strings), ``tensors`` (named tensors as given).

    ``missing_string`` is fed for a missing (``None``) value of a nullable string column in the
    ``groups`` layout: a string tensor cannot hold ``None``, and the converted graph takes that
    string as missing. Missing numbers, integers and booleans go in as NaN.
    """

    def __init__(
        self,
        session: Any,
        signature: Signature,
        *,
        layout: str,
        groups: Mapping[str, Sequence[str]] | None = None,
        missing_string: str | None = None,
        rebuild: Callable[[], Any] | None = None,
    ) -> None:
        if layout not in ("matrix", "columns", "groups", "tensors"):
            raise BundleError(f"Unknown onnx input layout {layout!r} in the manifest.")
        self.session = session
        self._layout = layout
        self._task = signature.outputs.task
        self._graph_inputs = [_tensor_spec(node) for node in session.get_inputs()]
        self._input_name = self._graph_inputs[0].name
        self._dtypes = {
            t.name: np.dtype(object if t.dtype == "string" else t.dtype) for t in self._graph_inputs
        }
        self._dtype = self._dtypes[self._input_name]
        self._output_names = [node.name for node in session.get_outputs()]
        self._classes = list(signature.outputs.classes or ())
        self._bool_labels = bool(self._classes) and all(type(c) is bool for c in self._classes)
        self._has_probabilities = signature.outputs.has_probabilities
        self._column_names = [c.name for c in signature.columns]
        # For "groups": (graph input, its columns, their values from a record, dtype, whether
        # missing strings are replaced).
        self._groups: list[
            tuple[str, tuple[str, ...], Callable[[Any], Any], np.dtype[Any], bool]
        ] = []
        self._missing_string = missing_string
        if layout == "groups":
            if not groups or set(groups) != set(self._dtypes):
                raise BundleError(
                    "The manifest's onnx input groups do not match the graph's inputs "
                    f"{sorted(self._dtypes)}."
                )
            position = {name: j for j, name in enumerate(self._column_names)}
            grouped = [c for cs in groups.values() for c in cs]
            # A column in no group is one the graph does without (the pipeline dropped it).
            if any(c not in position for c in grouped) or len(set(grouped)) != len(grouped):
                raise BundleError(
                    "The manifest's onnx input groups name columns the signature does not have, "
                    "or one column twice."
                )
            nullable = {c.name for c in signature.columns if c.nullable}
            for name, columns in groups.items():
                indices = [position[c] for c in columns]
                pick: Callable[[Any], Any] = (
                    _identity
                    if indices == list(range(len(self._column_names)))
                    else _picker(indices)
                )
                dtype = self._dtypes[name]
                # Only a string group with a nullable column pays for the replacement.
                fills = False
                if (
                    missing_string is not None
                    and dtype == np.dtype(object)
                    and any(c in nullable for c in columns)
                ):
                    pick, fills = _filling(pick, missing_string), True
                self._groups.append((name, tuple(columns), pick, dtype, fills))
        # What one record's feed needs of each group, unpacked once rather than on every call.
        self._picks = [(name, pick, dtype) for name, _, pick, dtype, _ in self._groups]
        self._run = _direct_run(session)
        # A session's thread pool does not survive fork (gunicorn --preload): a child process
        # builds its own session from the same bytes before its first call.
        self._rebuild = rebuild
        # Set in a forked child: onnxruntime's thread pools did not survive the fork, so the
        # session is rebuilt there before its first run.
        self._forked = False
        after_fork_in_child(self._mark_forked)
        self._fork_lock = threading.Lock()

    def run(self, inputs: Table | Mapping[str, Any]) -> dict[str, Any]:
        try:
            feed = self.feed(inputs)
        except (ValueError, TypeError, OverflowError) as exc:
            raise rejected(exc) from exc  # a value the graph's dtype cannot hold
        return self._fields(self._session_run(feed))

    def feed(self, inputs: Table | Mapping[str, Any]) -> dict[str, Any]:
        """The ``session.run`` feed for validated inputs (``modelkit bench`` times the raw run)."""
        if isinstance(inputs, Table):
            if self._layout == "matrix":
                feed = {self._input_name: inputs.matrix(self._dtype)}
            elif self._layout == "groups":
                feed = {}
                for name, names, pick, dtype, fills in self._groups:
                    if pick is _identity:
                        matrix = inputs.matrix(dtype)
                    else:
                        columns = inputs.columns()
                        matrix = np.column_stack([columns[n] for n in names]).astype(
                            dtype, copy=False
                        )
                    if fills:
                        # NaN too: the contract says None, but a NaN must not reach a string tensor.
                        missing = (matrix == None) | (matrix != matrix)  # noqa: E711, PLR0124
                        if missing.any():
                            matrix = matrix.copy()
                            matrix[missing] = self._missing_string
                    feed[name] = matrix
            else:
                columns = inputs.columns()
                feed = {
                    name: np.asarray(columns[name])
                    .astype(self._dtypes[name], copy=False)
                    .reshape(-1, 1)
                    for name in self._column_names
                }
        else:
            feed = dict(inputs)
        return feed

    def run_record(self, values: tuple[Any, ...]) -> dict[str, Any]:
        try:
            if self._layout == "matrix":
                feed = {self._input_name: np.array([values], dtype=self._dtype)}
            elif self._layout == "groups":
                feed = {
                    name: np.array([pick(values)], dtype=dtype) for name, pick, dtype in self._picks
                }
            else:
                feed = {
                    name: np.array([[value]], dtype=self._dtypes[name])
                    for name, value in zip(self._column_names, values, strict=True)
                }
        except (ValueError, TypeError, OverflowError) as exc:
            raise rejected(exc) from exc  # a value the graph's dtype cannot hold
        return self._fields(self._session_run(feed))

    def _session_run(self, feed: dict[str, Any]) -> list[Any]:
        if self._forked:
            self._after_fork()
        try:
            outputs: list[Any] = self._run(self._output_names, feed)
        except Exception as exc:
            raise rejected(exc) from exc
        return outputs

    def _mark_forked(self) -> None:
        self._forked = True

    def _after_fork(self) -> None:
        with self._fork_lock:
            if not self._forked:
                return
            if self._rebuild is not None:
                _abandon(self.session)
                self.session = self._rebuild()
                self._run = _direct_run(self.session)
            self._forked = False

    def _fields(self, outputs: list[Any]) -> dict[str, Any]:
        if self._task == "classification":
            if self._bool_labels:
                # skl2onnx writes boolean classes as 0 and 1; scikit-learn answers True/False.
                outputs = [_flat(outputs[0]).astype(bool), *outputs[1:]]
            if not self._has_probabilities:
                return {"label": _flat(outputs[0])}
            probabilities = outputs[1]
            if isinstance(probabilities, list):  # a ZipMap: one dict per row
                probabilities = np.array(
                    [[row[c] for c in self._classes] for row in probabilities], dtype=np.float64
                )
            return {"label": _flat(outputs[0]), "probabilities": probabilities}
        if self._task == "regression":
            return {"value": _flat(outputs[0])}
        return dict(zip(self._output_names, outputs, strict=True))
