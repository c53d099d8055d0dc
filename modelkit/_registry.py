"""The models of an application: named routes with canary, shadow, hot reload and a lock file.

A :class:`Registry` maps names to :class:`Route` objects. A route is a live handle: it reads the
registry's current state on every call, so a canary, a shadow, a promotion or a reload applies to
routes obtained earlier. Each state is an immutable snapshot swapped in with one assignment:
callers never take a lock, and a call in flight finishes on the model it started on.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import math
import os
import queue
import random
import re
import sys
import threading
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from . import telemetry
from ._api import load
from ._bundle import normalize_digest
from ._model import Model, RunnerModel, _RejectedError
from ._predictions import ClassifierOutput, Predictions, RegressorOutput, TensorOutput
from ._signature import Signature
from .errors import (
    BundleError,
    EnvironmentMismatchError,
    IntegrityError,
    InvalidInputError,
    ModelkitError,
)

__all__ = ["LOCK_VERSION", "Registry", "Route"]

LOCK_VERSION = 1
Variant = Literal["primary", "canary", "shadow"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_LOAD_OPTIONS = frozenset(
    {
        "sha256",
        "trusted",
        "version_policy",
        "adapter_options",
        "drift",
        "batching",
        "tracer_provider",
        "meter_provider",
    }
)
#: Regression values and tensors count as matching their shadow's within this relative
#: difference (the tolerance conversion to ONNX is held to).
SHADOW_TOLERANCE = 1e-4
#: Shadow calls waiting for the shadow worker; beyond this they are dropped (and counted).
SHADOW_QUEUE_SIZE = 1000


# -- configuration ------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _BundleConfig(_Strict):
    path: str = Field(min_length=1)
    sha256: str | None = None
    version_policy: Literal["warn", "error", "ignore"] | None = None
    adapter_options: dict[str, JsonValue] | None = None
    drift: bool | None = None
    batching: bool | dict[str, JsonValue] | None = None


class _CanaryConfig(_BundleConfig):
    weight: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)


class _ModelConfig(_BundleConfig):
    canary: _CanaryConfig | None = None
    shadow: _BundleConfig | None = None


class _Config(_Strict):
    models: dict[str, _ModelConfig]


class _LockedBundle(_Strict):
    path: str
    sha256: str


class _LockedModel(_LockedBundle):
    canary: _LockedBundle | None = None
    shadow: _LockedBundle | None = None


class _Lock(_Strict):
    lock_version: Literal[1]
    models: dict[str, _LockedModel]


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        from ._deps import require

        tomllib = require("tomli", extra="toml", feature=f"Reading a {what}")
    try:
        with path.open("rb") as handle:
            document: dict[str, Any] = tomllib.load(handle)
    except FileNotFoundError:
        raise BundleError(f"The {what} {str(path)!r} does not exist.", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"Cannot read the {what} {str(path)!r}: {exc}", path=str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"The {what} {str(path)!r} is not valid TOML: {exc}") from exc
    return document


def _validated(schema: type[_Strict], document: Any, label: str) -> Any:
    """``document`` validated, or a ValueError naming the key (``models.churn.canary.weight``)."""
    if not isinstance(document, Mapping):
        raise ValueError(f"{label} must be a table (mapping), got {type(document).__name__}.")
    try:
        return schema.model_validate(document)
    except ValidationError as exc:
        problems = []
        for error in exc.errors()[:10]:
            where = ".".join(str(part) for part in error["loc"])
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                known = _known_keys(schema, error["loc"])
                near = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
                message = "unknown key" + (f" (did you mean {near[0]!r}?)" if near else "")
            problems.append(f"{where}: {message}")
        raise ValueError(f"Invalid {label}: " + "; ".join(problems)) from None


def _known_keys(schema: type[_Strict], location: tuple[Any, ...]) -> list[str]:
    """The keys allowed where ``location`` (ending in the unknown key) points."""
    model: Any = schema
    for part in location[:-1]:
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(part))
            if field is None:
                continue  # a free-form name, such as the model's
            model = field.annotation
            for arg in getattr(model, "__args__", ()):  # Optional[...] and dict[str, X]
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    model = arg
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _toml_string(name)


def _toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, the rest as is
    (the file is UTF-8; TOML has no surrogate escapes for characters beyond the BMP)."""
    escaped = []
    for char in value:
        if char in ('"', "\\"):
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


# -- routing ------------------------------------------------------------------------------------


def _key_fraction(name: str, key: object) -> float:
    """Where a key falls in [0, 1) for a route: stable across processes and restarts."""
    digest = hashlib.sha256(f"{name}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass(frozen=True)
class _Bundle:
    """One loaded bundle in a route, with how it was loaded (to reload and lock it)."""

    model: Model[Any, Any]
    path: Any
    options: Mapping[str, Any]


@dataclass(frozen=True)
class _State:
    primary: _Bundle
    canary: _Bundle | None = None
    weight: float = 0.0
    shadow: _Bundle | None = None


class _Entry:
    """One name's state, swapped whole; the lock serialises the writers, never the callers."""

    def __init__(self, name: str, state: _State) -> None:
        self.name = name
        self.state = state
        self.writing = threading.Lock()


class Route:
    """A named model in a :class:`Registry`, with the :class:`modelkit.Model` interface.

    Each call reads the registry's current state: the canary, shadow, promotion or reload done
    after this object was obtained applies to it. ``key=`` makes canary routing sticky: the same
    key always reaches the same variant (only the weight moves keys, and only onto the canary).
    """

    __slots__ = ("__weakref__", "_entry", "_registry")

    def __init__(self, registry: Registry, entry: _Entry) -> None:
        self._registry = registry
        self._entry = entry

    @property
    def name(self) -> str:
        """The route's name in the registry."""
        return self._entry.name

    @property
    def model(self) -> Model[Any, Any]:
        """The primary model now."""
        return self._entry.state.primary.model

    @property
    def version(self) -> str:
        """The primary model's version."""
        return self.model.version

    @property
    def digest(self) -> str | None:
        """The primary bundle's digest."""
        return self.model.digest

    @property
    def signature(self) -> Signature:
        """The primary model's signature (a canary's is compatible with it)."""
        return self.model.signature

    def _choose(self, state: _State, key: object) -> Model[Any, Any]:
        canary = state.canary
        if canary is None:
            return state.primary.model
        point = random.random() if key is None else _key_fraction(self._entry.name, key)  # noqa: S311 - traffic splitting, not security
        return canary.model if point < state.weight else state.primary.model

    def predict(self, record: Any, *, key: object = None) -> Any:
        """Predict one record on the variant this call (or ``key``) is routed to."""
        state = self._entry.state
        result = self._choose(state, key).predict(record)
        if state.shadow is not None:
            self._registry._shadow_queue.submit(self._entry.name, state.shadow, record, result)
        return result

    def predict_batch(self, records: Any, *, key: object = None) -> Predictions[Any]:
        """Predict many records on one variant (all of the batch goes the same way)."""
        state = self._entry.state
        result = self._choose(state, key).predict_batch(records)
        if state.shadow is not None:
            self._registry._shadow_queue.submit(
                self._entry.name, state.shadow, records, result, is_batch=True
            )
        return result

    async def apredict(self, record: Any, *, key: object = None) -> Any:
        """:meth:`predict`, never running the model on the event loop."""
        state = self._entry.state
        result = await self._choose(state, key).apredict(record)
        if state.shadow is not None:
            self._registry._shadow_queue.submit(self._entry.name, state.shadow, record, result)
        return result

    async def apredict_batch(self, records: Any, *, key: object = None) -> Predictions[Any]:
        """:meth:`predict_batch`, never running the model on the event loop."""
        state = self._entry.state
        result = await self._choose(state, key).apredict_batch(records)
        if state.shadow is not None:
            self._registry._shadow_queue.submit(
                self._entry.name, state.shadow, records, result, is_batch=True
            )
        return result

    def __repr__(self) -> str:
        state = self._entry.state
        parts = [f"{self.name!r}", f"version={self.version!r}"]
        if state.canary is not None:
            parts.append(f"canary={state.canary.model.version!r} at {state.weight:g}")
        if state.shadow is not None:
            parts.append(f"shadow={state.shadow.model.version!r}")
        return f"<Route {' '.join(parts)}>"


# -- shadow traffic -----------------------------------------------------------------------------


def _same_output(expected: Any, actual: Any) -> bool:
    """Whether a shadow's answer matches the primary's: same label, or values within
    :data:`SHADOW_TOLERANCE`."""
    if isinstance(expected, ClassifierOutput) and isinstance(actual, ClassifierOutput):
        return bool(expected.label == actual.label)
    if isinstance(expected, RegressorOutput) and isinstance(actual, RegressorOutput):
        return _close(expected.value, actual.value)
    if isinstance(expected, TensorOutput) and isinstance(actual, TensorOutput):
        return set(expected) == set(actual) and all(
            _close(expected[name], actual[name]) for name in expected
        )
    return bool(expected == actual)


def _close(expected: Any, actual: Any) -> bool:
    try:
        a = np.asarray(expected, dtype=np.float64)
        b = np.asarray(actual, dtype=np.float64)
    except (TypeError, ValueError):
        return bool(np.array_equal(np.asarray(expected), np.asarray(actual)))
    return a.shape == b.shape and bool(
        np.allclose(a, b, rtol=SHADOW_TOLERANCE, atol=SHADOW_TOLERANCE, equal_nan=True)
    )


def _snapshot(inputs: Any) -> Any:
    """A copy of a record or batch deep enough that the caller's later changes do not reach it."""
    if isinstance(inputs, list):
        return [_snapshot(record) for record in inputs]
    if isinstance(inputs, dict):
        return dict(inputs)
    if isinstance(inputs, np.ndarray):
        return inputs.copy()
    if isinstance(inputs, BaseModel):
        return inputs.model_copy(deep=True)
    copy = getattr(inputs, "copy", None)  # a DataFrame, or another mapping
    return copy() if callable(copy) else inputs


class _ShadowQueue:
    """Runs shadow models off the callers' path: a bounded queue and one daemon thread."""

    def __init__(self, tel: telemetry.Telemetry) -> None:
        self._telemetry = tel
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(SHADOW_QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()
        #: Comparisons so far by outcome (the metric's values, also without an SDK).
        self.counts = dict.fromkeys(("match", "mismatch", "error", "dropped"), 0)

    def submit(
        self, name: str, shadow: _Bundle, inputs: Any, result: Any, *, is_batch: bool = False
    ) -> None:
        """Queue a comparison; drop it (and count it) when the queue is full."""
        if self._thread is None or self._pid != os.getpid():
            self._start()
        try:
            # A copy: the caller may change its dict or frame as soon as predict returns.
            self._queue.put_nowait((name, shadow.model, _snapshot(inputs), result, is_batch))
        except queue.Full:
            self._count(name, shadow.model, "dropped", len(result) if is_batch else 1)

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            if self._pid != os.getpid():  # a forked child: the parent's thread is not here
                self._queue = queue.Queue(SHADOW_QUEUE_SIZE)
                self._pid = os.getpid()
            self._thread = threading.Thread(
                target=_shadow_worker, args=(weakref.ref(self), self._queue), daemon=True
            )
            self._thread.name = "modelkit-shadow"
            self._thread.start()

    def compare(
        self, name: str, model: Model[Any, Any], inputs: Any, expected: Any, is_batch: bool
    ) -> None:
        try:
            actual = model.predict_batch(inputs) if is_batch else model.predict(inputs)
        except Exception:  # noqa: BLE001 - a failing shadow is counted, never raised
            self._count(name, model, "error", len(expected) if is_batch else 1)
            return
        if not is_batch:
            self._count(name, model, "match" if _same_output(expected, actual) else "mismatch")
            return
        matches = sum(_same_output(e, a) for e, a in zip(expected, actual, strict=True))
        self._count(name, model, "match", matches)
        self._count(name, model, "mismatch", len(expected) - matches)

    def _count(self, name: str, model: Model[Any, Any], outcome: str, amount: int = 1) -> None:
        if amount <= 0:
            return
        with self._lock:  # callers count drops while the shadow thread counts comparisons
            self.counts[outcome] += amount
        tel = self._telemetry
        if tel.is_active and tel.meter is not None:
            tel.shadow_comparisons.add(
                amount,
                {
                    "modelkit.model.name": name,
                    "modelkit.model.version": model.version,
                    "modelkit.model.variant": "shadow",
                    "modelkit.shadow.outcome": outcome,
                },
            )

    def join(self) -> None:
        """Wait until every queued comparison is done (for tests and shutdown)."""
        if self._thread is not None and self._pid == os.getpid():
            self._queue.join()

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None and self._pid == os.getpid():
            self._queue.put(None)
            thread.join()


def _shadow_worker(
    owner: weakref.ref[_ShadowQueue], items: queue.Queue[tuple[Any, ...] | None]
) -> None:
    while True:
        item = items.get()
        try:
            if item is None:
                return
            shadows = owner()
            if shadows is None:
                return
            shadows.compare(*item)
            del shadows
        finally:
            items.task_done()


# -- the registry -------------------------------------------------------------------------------


class Registry:
    """The models of an application, by name.

    Example:
        >>> registry = modelkit.Registry()
        >>> registry.add("churn", "bundles/churn")
        >>> registry.set_canary("churn", "bundles/churn-2", weight=0.1)
        >>> registry["churn"].predict(record, key=user_id)

    Args:
        tracer_provider: OpenTelemetry tracer provider for every model (the global one by
            default).
        meter_provider: OpenTelemetry meter provider for every model and the shadow counter.
    """

    def __init__(self, *, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self._providers = {
            key: value
            for key, value in (
                ("tracer_provider", tracer_provider),
                ("meter_provider", meter_provider),
            )
            if value is not None
        }
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._pins: dict[str, str] = {}  # "churn", "churn.canary": digests a lock file requires
        self._shadow_queue = _ShadowQueue(telemetry.for_providers(tracer_provider, meter_provider))

    # -- building -------------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        config: str | os.PathLike[str] | Mapping[str, Any],
        *,
        lock: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        tracer_provider: Any = None,
        meter_provider: Any = None,
    ) -> Registry:
        """A registry from a TOML file (or the same structure as a mapping).

        ``[models.NAME]`` tables hold ``path`` (relative to the file), an optional ``sha256``
        and load options (``version_policy``, ``adapter_options``, ``drift``, ``batching``),
        and optional ``[models.NAME.canary]`` (with ``weight``) and ``[models.NAME.shadow]``
        tables of the same keys; ``NAME = "path"`` is short for a table with only ``path``.
        With ``lock=``, every bundle must have the digest the lock file records for it (see
        :meth:`lock`), checked before it is deserialized.

        Args:
            config: a TOML file, or a mapping of the same structure.
            lock: a lock file (or its mapping) every bundle must match.
            base_dir: what relative paths are relative to: by default the config file's
                directory, or the working directory for a mapping.
            tracer_provider: as for :class:`Registry`.
            meter_provider: as for :class:`Registry`.

        Raises:
            ValueError: unknown keys, weights outside 0..1, and other malformed entries (the
                message names the model and the key).
            BundleError: a bundle is missing or unreadable.
            IntegrityError: a bundle's digest differs from the config's or the lock file's.
        """
        if isinstance(config, Mapping):
            document, base, label = config, Path.cwd(), "registry config"
        else:
            path = Path(os.fspath(config))
            document = _read_toml(path, "registry config")
            base, label = path.parent, f"registry config {str(path)!r}"
        if base_dir is not None:
            base = Path(os.fspath(base_dir))
        parsed: _Config = _validated(_Config, _expand_shorthand(document), label)
        locked = None if lock is None else _read_lock(lock)
        registry = cls(tracer_provider=tracer_provider, meter_provider=meter_provider)
        if locked is not None:
            registry._pins = _pins_of(locked, parsed)
        try:
            for name, entry in parsed.models.items():
                _check_name(name)
                primary = _bundle_options(entry, base)
                registry._add(name, primary.pop("path"), primary, pinned=True)
                if entry.canary is not None:
                    canary = _bundle_options(entry.canary, base)
                    weight = canary.pop("weight")
                    registry._set_canary(name, canary.pop("path"), weight, canary, pinned=True)
                if entry.shadow is not None:
                    shadow = _bundle_options(entry.shadow, base)
                    registry._set_shadow(name, shadow.pop("path"), shadow, pinned=True)
        except BaseException:
            registry.close()
            raise
        return registry

    def add(self, name: str, path: Any, **load_options: Any) -> Route:
        """Load a bundle and serve it under ``name``.

        Args:
            name: the route's name (letters, digits, ``.``, ``_``, ``-``).
            path: anything :func:`modelkit.load` takes.
            **load_options: passed to :func:`modelkit.load` (``sha256``, ``version_policy``,
                ``adapter_options``, ``drift``, ``batching``...).

        Raises:
            ValueError: the name is taken or malformed, or an option is unknown.
        """
        return self._add(name, path, load_options)

    def _add(
        self, name: str, path: Any, options: Mapping[str, Any], *, pinned: bool = False
    ) -> Route:
        _check_name(name)
        with self._lock:
            if name in self._entries:
                raise ValueError(f"A model named {name!r} is already in the registry.")
        bundle = self._load(name, "primary", path, options, pinned=pinned)
        with self._lock:
            if name in self._entries:
                bundle.model.close()
                raise ValueError(f"A model named {name!r} is already in the registry.")
            entry = self._entries[name] = _Entry(name, _State(primary=bundle))
        return Route(self, entry)

    def _load(
        self,
        name: str,
        variant: Variant,
        path: Any,
        options: Mapping[str, Any],
        *,
        pinned: bool = False,
    ) -> _Bundle:
        """Load (and verify) one bundle; with ``pinned``, it must have the lock file's digest."""
        unknown = sorted(set(options) - _LOAD_OPTIONS)
        if unknown:
            raise ValueError(
                f"models.{name}: unknown load option(s) {unknown}; known: {sorted(_LOAD_OPTIONS)}."
            )
        where = name if variant == "primary" else f"{name}.{variant}"
        options = dict(options)
        pin = self._pins.get(where) if pinned else None
        if pin is not None:
            given = options.get("sha256")
            if given is not None and normalize_digest(given) != pin:
                raise IntegrityError(
                    f"models.{where}: the config pins {normalize_digest(given)} but the lock "
                    f"file pins {pin}.",
                    expected=pin,
                    actual=normalize_digest(given),
                )
            options["sha256"] = pin
        try:
            model = load(path, **{**self._providers, **options})
        except ModelkitError as exc:
            located = _located(exc, f"models.{where}")
            if located is exc:
                raise
            raise located from exc
        model._set_variant(variant)
        return _Bundle(model, path, options)

    # -- the mapping ----------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Route:
        try:
            entry = self._entries[name]
        except KeyError:
            near = difflib.get_close_matches(str(name), list(self._entries), n=1)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            raise KeyError(
                f"No model named {name!r} in the registry (models: {sorted(self._entries)}).{hint}"
            ) from None
        return Route(self, entry)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """The models' names, in the order they were added."""
        return list(self._entries)

    def _entry(self, name: str) -> _Entry:
        return self[name]._entry

    # -- canary, shadow, promotion, reload --------------------------------------------------------

    def set_canary(self, name: str, path: Any, weight: float, **load_options: Any) -> None:
        """Send a share of ``name``'s traffic to another bundle (replacing any canary).

        ``weight`` is the share, from 0 to 1: with ``key=``, the keys whose hash falls below it;
        otherwise a weighted random choice. Raising the weight only moves more keys onto the
        canary. Setting the canary again with the path it has only changes the weight.

        Raises:
            ValueError: the weight is outside 0..1, or the canary's signature does not fit the
                primary's.
        """
        self._set_canary(name, path, weight, load_options)

    def _set_canary(
        self,
        name: str,
        path: Any,
        weight: float,
        options: Mapping[str, Any],
        *,
        pinned: bool = False,
    ) -> None:
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ValueError(f"models.{name}.canary: weight must be a number, got {weight!r}.")
        if not (math.isfinite(weight) and 0.0 <= weight <= 1.0):
            raise ValueError(f"models.{name}.canary: weight must be between 0 and 1, got {weight}.")
        entry = self._entry(name)
        with entry.writing:
            current = entry.state.canary
            if current is not None and _same_path(current.path, path) and not options:
                entry.state = replace(entry.state, weight=float(weight))
                return
            canary = self._load(name, "canary", path, options, pinned=pinned)
            try:
                _check_compatible(name, "canary", entry.state.primary.model, canary.model)
            except ValueError:
                canary.model.close()
                raise
            old = entry.state.canary
            entry.state = replace(entry.state, canary=canary, weight=float(weight))
            if not pinned:
                self._pins.pop(f"{name}.canary", None)  # the lock's digest was for another
        if old is not None:
            old.model.close()

    def clear_canary(self, name: str) -> None:
        """Send all of ``name``'s traffic back to the primary."""
        entry = self._entry(name)
        with entry.writing:
            old = entry.state.canary
            entry.state = replace(entry.state, canary=None, weight=0.0)
        if old is not None:
            old.model.close()

    def promote(self, name: str) -> None:
        """Make the canary the primary (all traffic), and retire the old primary.

        Raises:
            ModelkitError: ``name`` has no canary.
        """
        entry = self._entry(name)
        with entry.writing:
            state = entry.state
            if state.canary is None:
                raise ModelkitError(f"models.{name} has no canary to promote.")
            state.canary.model._set_variant("primary")
            entry.state = replace(state, primary=state.canary, canary=None, weight=0.0)
            self._pins.pop(name, None)
            pin = self._pins.pop(f"{name}.canary", None)
            if pin is not None:
                self._pins[name] = pin
        state.primary.model.close()

    def set_shadow(self, name: str, path: Any, **load_options: Any) -> None:
        """Also send ``name``'s inputs to another bundle, off the callers' path, and count
        whether its answers match the primary's (``modelkit.shadow.comparisons``).

        Raises:
            ValueError: the shadow's signature does not fit the primary's.
        """
        self._set_shadow(name, path, load_options)

    def _set_shadow(
        self, name: str, path: Any, options: Mapping[str, Any], *, pinned: bool = False
    ) -> None:
        entry = self._entry(name)
        with entry.writing:
            shadow = self._load(name, "shadow", path, options, pinned=pinned)
            try:
                _check_compatible(name, "shadow", entry.state.primary.model, shadow.model)
            except ValueError:
                shadow.model.close()
                raise
            old = entry.state.shadow
            entry.state = replace(entry.state, shadow=shadow)
            if not pinned:
                self._pins.pop(f"{name}.shadow", None)
        if old is not None:
            old.model.close()

    def clear_shadow(self, name: str) -> None:
        """Stop shadowing ``name``."""
        entry = self._entry(name)
        with entry.writing:
            old = entry.state.shadow
            entry.state = replace(entry.state, shadow=None)
        if old is not None:
            old.model.close()

    def reload(
        self, name: str, path: Any = None, *, unpin: bool = False, **load_options: Any
    ) -> None:
        """Load ``name``'s primary again (from ``path``, or where it came from) and swap it in.

        The new bundle is loaded, verified and warmed up while the old one keeps serving; then
        one assignment swaps them, and calls in flight finish on the old model. A reload that
        fails raises and leaves the old model serving. Reloads of one name run one at a time.

        A pinned route (a lock file's digest, or ``sha256=`` given when it was added) stays
        pinned, whatever ``path`` says: the new bundle must have that digest. Only an explicit
        call changes the pin: ``sha256=`` pins the new digest, ``unpin=True`` drops the pin.

        Args:
            name: the route.
            path: the bundle to load; ``None`` loads the route's path again.
            unpin: drop the route's pinned digest, to load a bundle it does not match.
            load_options: options for :func:`modelkit.load`, over the route's own.

        Raises:
            BundleError: the bundle is missing or malformed.
            IntegrityError: it does not match the pinned digest.
            ValueError: its signature does not fit the one it replaces.
        """
        entry = self._entry(name)
        with entry.writing:
            current = entry.state.primary
            # The route keeps its load options (batching, drift...) and its pin: a file changed
            # in place, or another path, must still have the pinned digest unless told otherwise.
            options = dict(current.options)
            repinned = unpin or "sha256" in load_options
            if unpin:
                options.pop("sha256", None)
            options.update(load_options)
            fresh = self._load(
                name,
                "primary",
                current.path if path is None else path,
                options,
                pinned=not repinned,
            )
            try:
                _check_compatible(name, "reload", current.model, fresh.model)
                _warm_up(fresh.model)
            except BaseException:
                fresh.model.close()
                raise
            entry.state = replace(entry.state, primary=fresh)
            if repinned:
                self._pins.pop(name, None)  # the lock file's digest was for the old bundle
        current.model.close()

    # -- the lock file --------------------------------------------------------------------------

    def lock(self) -> dict[str, Any]:
        """The digest of every bundle in use, in the lock-file structure
        :meth:`from_config` reads (``{"lock_version": 1, "models": {...}}``)."""
        models: dict[str, Any] = {}
        for name, entry in list(self._entries.items()):
            state = entry.state
            locked = _locked(state.primary)
            if state.canary is not None:
                locked["canary"] = _locked(state.canary)
            if state.shadow is not None:
                locked["shadow"] = _locked(state.shadow)
            models[name] = locked
        return {"lock_version": LOCK_VERSION, "models": models}

    def write_lock(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`lock` as a TOML lock file, to commit next to the config.

        Bundle paths are written relative to the lock file's directory, so the file holds
        wherever the application is checked out or installed.
        """
        target = Path(os.fspath(path))
        lock = self.lock()
        for model in lock["models"].values():
            for bundle in (model, model.get("canary"), model.get("shadow")):
                if bundle is not None:
                    bundle["path"] = _relative_to(bundle["path"], target.parent)
        target.write_text(format_lock(lock), encoding="utf-8")

    # -- shutting down --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the shadow worker and every model's background work (micro-batching)."""
        self._shadow_queue.close()
        with self._lock:
            entries = list(self._entries.values())
        for entry in entries:
            state = entry.state
            for bundle in (state.primary, state.canary, state.shadow):
                if bundle is not None:
                    bundle.model.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Registry {self.names()}>"


def _expand_shorthand(document: Any) -> Any:
    """``{"models": {"churn": "path"}}`` as ``{"models": {"churn": {"path": "path"}}}``."""
    if not isinstance(document, Mapping) or not isinstance(document.get("models"), Mapping):
        return document
    models = {
        name: {"path": os.fspath(entry)} if isinstance(entry, str | os.PathLike) else entry
        for name, entry in document["models"].items()
    }
    return {**document, "models": models}


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"A model's name must be 1-100 letters, digits, '.', '_' and '-', got {name!r}."
        )


def _bundle_options(entry: _BundleConfig, base: Path) -> dict[str, Any]:
    """Load options from a config table, its path made relative to the config file."""
    options = entry.model_dump(exclude_none=True, exclude={"canary", "shadow"})
    path = Path(options["path"]).expanduser()
    options["path"] = path if path.is_absolute() else base / path
    if isinstance(options.get("batching"), dict):
        from ._batching import Batching

        try:
            options["batching"] = Batching(**options["batching"])
        except TypeError as exc:
            raise ValueError(f"Invalid batching options {options['batching']}: {exc}") from exc
    return options


def _check_compatible(
    name: str, what: str, current: Model[Any, Any], other: Model[Any, Any]
) -> None:
    """Refuse a bundle whose inputs or task differ from the one it stands in for."""
    old, new = current.signature, other.signature
    problems = []
    if old.outputs.task != new.outputs.task:
        problems.append(f"its task is {new.outputs.task!r}, not {old.outputs.task!r}")
    if old.kind != new.kind:
        problems.append(f"its inputs are {new.kind}, not {old.kind}")
    elif old.kind == "tabular":
        before = {c.name: c.type for c in old.columns}
        after = {c.name: c.type for c in new.columns}
        if before != after:
            missing = sorted(set(before) - set(after))
            extra = sorted(set(after) - set(before))
            retyped = sorted(n for n in set(before) & set(after) if before[n] != after[n])
            details = [
                f"{label} {names}"
                for label, names in (("missing", missing), ("new", extra), ("retyped", retyped))
                if names
            ]
            problems.append(f"its input columns differ ({', '.join(details)})")
    elif old.kind == "tensor":
        before_t = {t.name: t.dtype for t in old.tensors}
        after_t = {t.name: t.dtype for t in new.tensors}
        if before_t != after_t:
            problems.append(f"its input tensors differ ({after_t} instead of {before_t})")
    elif old.input_json_schema() != new.input_json_schema():
        problems.append("its input schema differs")
    if problems:
        raise ValueError(
            f"models.{name}: the {what} bundle {other.name!r} {other.version} does not fit "
            f"{current.name!r} {current.version}: {'; '.join(problems)}."
        )


def _warm_up(model: Model[Any, Any]) -> None:
    """Run one record built from the reference profile, so the first caller pays no first-call
    cost; a record the model refuses only skips the warm-up."""
    manifest = model.manifest
    profile: Any = manifest.profile if manifest is not None else None
    if not isinstance(profile, dict) or model.signature.kind != "tabular":
        return
    summaries: dict[str, Any] = profile.get("columns") or {}
    record: dict[str, Any] = {}
    for column in model.signature.columns:
        summary: dict[str, Any] = summaries.get(column.name) or {}
        categories = summary.get("categories") or list(column.categories or ())
        if column.type == "string":
            record[column.name] = categories[0] if categories else ""
        elif column.type == "boolean":
            record[column.name] = False
        elif column.type == "integer":
            record[column.name] = int(summary.get("min") or 0)
        elif column.type == "datetime":
            record[column.name] = "2000-01-01T00:00:00"
        else:
            record[column.name] = float(summary.get("mean") or 0.0)
    # Below the public predict: no hook, span, metric, prediction log or drift count sees it.
    if not isinstance(model, RunnerModel) or model._tabular is None:
        return
    try:
        values = model._tabular.record(record)
    except InvalidInputError:
        return
    with contextlib.suppress(_RejectedError):
        model.runner.run(model._tabular._from_rows([values]))


def _same_path(a: Any, b: Any) -> bool:
    return _path_text(a) == _path_text(b)


def _path_text(path: Any) -> str:
    return os.fspath(path) if isinstance(path, str | os.PathLike) else str(path)


def _relative_to(path: str, directory: Path) -> str:
    """``path`` relative to ``directory`` (POSIX separators), or as it is if it cannot be."""
    try:
        relative = os.path.relpath(Path(path).resolve(), directory.resolve())
    except (OSError, ValueError):  # another drive, or not a filesystem path
        return path
    return Path(relative).as_posix()


def _locked(bundle: _Bundle) -> dict[str, Any]:
    digest = bundle.model.digest
    assert digest is not None
    return {"path": _path_text(bundle.path), "sha256": digest}


def format_lock(lock: Mapping[str, Any]) -> str:
    """A lock structure as TOML text."""
    parsed: _Lock = _validated(_Lock, lock, "lock file")
    lines = [
        "# modelkit lock file: the digest of every bundle in use. Generated; commit it, and",
        "# check it in CI with `modelkit verify --lock`.",
        f"lock_version = {parsed.lock_version}",
    ]
    for name, model in parsed.models.items():
        for suffix, bundle in (("", model), (".canary", model.canary), (".shadow", model.shadow)):
            if bundle is None:
                continue
            lines += [
                "",
                f"[models.{_toml_key(name)}{suffix}]",
                f"path = {_toml_string(bundle.path)}",
                f"sha256 = {_toml_string(bundle.sha256)}",
            ]
    return "\n".join(lines) + "\n"


def _read_lock(lock: str | os.PathLike[str] | Mapping[str, Any]) -> _Lock:
    if isinstance(lock, Mapping):
        return _validated(_Lock, lock, "lock file")  # type: ignore[no-any-return]
    path = Path(os.fspath(lock))
    return _validated(_Lock, _read_toml(path, "lock file"), f"lock file {str(path)!r}")  # type: ignore[no-any-return]


def _pins_of(lock: _Lock, config: _Config) -> dict[str, str]:
    """The digest each configured bundle must have; every one must be in the lock file."""
    pins: dict[str, str] = {}
    for name, entry in config.models.items():
        locked = lock.models.get(name)
        for suffix, configured, pinned in (
            ("", entry, locked),
            (".canary", entry.canary, locked.canary if locked else None),
            (".shadow", entry.shadow, locked.shadow if locked else None),
        ):
            if configured is None:
                continue
            if pinned is None:
                raise IntegrityError(
                    f"models.{name}{suffix} is not in the lock file: regenerate the lock file "
                    "after changing the config.",
                    path=configured.path,
                )
            try:
                pins[f"{name}{suffix}"] = normalize_digest(pinned.sha256)
            except (BundleError, ValueError) as exc:
                raise ValueError(f"lock file: models.{name}{suffix}.sha256: {exc}") from exc
    return pins


def _located(exc: ModelkitError, where: str) -> ModelkitError:
    """The same error, its message prefixed with the config key it is about."""
    message = f"{where}: {exc}"
    if isinstance(exc, IntegrityError):
        return IntegrityError(message, path=exc.path, expected=exc.expected, actual=exc.actual)
    if isinstance(exc, BundleError):
        return BundleError(message, path=exc.path)
    if isinstance(exc, EnvironmentMismatchError):
        return EnvironmentMismatchError(message, mismatches=exc.mismatches)
    return exc
