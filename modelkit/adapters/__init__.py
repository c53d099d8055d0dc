"""Adapters: one serialization format each, and the registry that finds them.

An adapter saves an object into a bundle's ``artifacts/`` and loads verified artifacts back into
something that predicts. It is a :class:`typing.Protocol`, so a third-party format needs no
subclassing: implement the methods and register the object, either with :func:`register` or
through the ``modelkit.adapters`` entry-point group::

    [project.entry-points."modelkit.adapters"]
    xgboost = "my_package.modelkit_adapter:XGBoostAdapter"

Built in: ``joblib`` (scikit-learn and other picklable objects with ``predict``), ``skops``
(scikit-learn without pickle), ``onnx`` (any model onnxruntime runs) and ``python`` (subclasses
of :class:`modelkit.Model`).
"""

from __future__ import annotations

import difflib
import importlib
import threading
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from .._protocol import Adapter, Runner, SavedModel, rejected
from .._spec import Table
from ..errors import BundleError

__all__ = [
    "Adapter",
    "Runner",
    "SavedModel",
    "Table",
    "available",
    "check_options",
    "get",
    "register",
    "rejected",
]

ENTRY_POINT_GROUP = "modelkit.adapters"

# The built-in formats, loaded on first use by import path as entry points are: the table needs
# none of them to import, and the ``python`` format lives beside the model class it saves.
_BUILTIN = {
    "joblib": "modelkit.adapters._joblib:JoblibAdapter",
    "onnx": "modelkit.adapters._onnx:OnnxAdapter",
    "python": "modelkit._custom:PythonAdapter",
    "skops": "modelkit.adapters._skops:SkopsAdapter",
}


_registry: dict[str, Adapter] = {}
# Plugins that failed to import, by name: reported when that format is asked for, not before.
_broken: dict[str, Exception] = {}
_lock = threading.Lock()
_entry_points = {"loaded": False}


def register(adapter: Adapter, *, replace: bool = False) -> None:
    """Make ``adapter`` available to :func:`modelkit.save` and :func:`modelkit.load`.

    Raises:
        ValueError: an adapter of that name is registered already and ``replace`` is false.
    """
    with _lock:
        if adapter.name in _registry and not replace:
            raise ValueError(
                f"An adapter named {adapter.name!r} is already registered; pass replace=True."
            )
        _registry[adapter.name] = adapter


def get(name: str) -> Adapter:
    """The adapter registered under ``name``.

    Raises:
        BundleError: no adapter has that name (the message suggests the nearest one).
    """
    _ensure_builtin()
    adapter = _registry.get(name)
    if adapter is None:
        _load_entry_points()
        adapter = _registry.get(name)
    if adapter is None and name in _broken:
        raise BundleError(
            f"The adapter for format {name!r} is installed but failed to import: {_broken[name]}"
        ) from _broken[name]
    if adapter is None:
        known = sorted(_registry)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise BundleError(
            f"Unknown format {name!r}.{hint} Known formats: {', '.join(known)}. A third-party "
            f"format is installed with its package (entry-point group {ENTRY_POINT_GROUP!r})."
        )
    return adapter


def available() -> list[str]:
    """The names of every registered adapter, entry points included."""
    _ensure_builtin()
    _load_entry_points()
    return sorted(_registry)


def for_object(obj: object) -> Adapter:
    """The adapter ``format="auto"`` picks for ``obj``.

    Raises:
        BundleError: no adapter accepts the object.
    """
    _ensure_builtin()
    for name in ("python", "onnx", "joblib"):
        if _registry[name].accepts(obj):
            return _registry[name]
    _load_entry_points()
    for adapter in _registry.values():
        if adapter.accepts(obj):
            return adapter
    raise BundleError(
        f"No format can save a {type(obj).__module__}.{type(obj).__qualname__}: expected a "
        "fitted estimator or any object with predict(), an ONNX model, or a modelkit.Model. "
        "Pass format= to choose one."
    )


def check_options(adapter: Adapter, options: Mapping[str, Any]) -> None:
    """Refuse options the adapter does not declare (in its optional ``options`` attribute).

    Raises:
        TypeError: an unknown option; the message suggests the nearest known one.
    """
    allowed = getattr(adapter, "options", None)
    if allowed is None:
        return  # a third-party adapter that declares nothing checks its own options
    for key in options:
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            known = f"Options: {', '.join(allowed)}." if allowed else "It takes none."
            raise TypeError(f"Unknown {adapter.name} adapter option {key!r}.{hint} {known}")


def _ensure_builtin() -> None:
    if "joblib" in _registry:
        return
    built = []
    for path in _BUILTIN.values():
        module, _, attribute = path.partition(":")
        built.append(getattr(importlib.import_module(module), attribute)())
    with _lock:
        for adapter in built:
            _registry.setdefault(adapter.name, adapter)


def _load_entry_points() -> None:
    if _entry_points["loaded"]:
        return
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in _registry:
            continue
        try:
            loaded = entry.load()
            adapter = loaded() if isinstance(loaded, type) else loaded
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the other formats
            _broken[entry.name] = exc
            continue
        with _lock:
            _registry.setdefault(entry.name, adapter)
    _entry_points["loaded"] = True
