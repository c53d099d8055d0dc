"""The models of an application: named routes with canary, shadow, hot reload and a lock file.

A :class:`Registry` maps names to :class:`Route` objects. A route is a live handle: it reads the
registry's current state on every call, so a canary, a shadow, a promotion or a reload applies to
routes obtained earlier. Each state is an immutable snapshot swapped in with one assignment:
callers never take a lock, and a call in flight finishes on the model it started on.

Configs and lock files are read and written by :mod:`modelkit._config`; shadow traffic runs in
:mod:`modelkit._shadow`.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import random
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import telemetry
from ._api import load
from ._atomic import write_atomically
from ._config import (
    LOAD_OPTIONS,
    LOCK_VERSION,
    Variant,
    check_name,
    format_lock,
    pin_conflict,
    pins_of,
    read_config,
    read_lock,
    relative_path,
)
from ._manifest import normalize_digest
from ._model import Model, observer_of
from ._predictions import Predictions
from ._shadow import ShadowTraffic
from ._spec import Signature
from .errors import (
    BundleError,
    EnvironmentMismatchError,
    IntegrityError,
    ModelkitError,
    ReproducibilityError,
)

__all__ = ["Registry", "Route"]


# -- routing ------------------------------------------------------------------------------------


def _key_fraction(name: str, key: object) -> float:
    """Where a key falls in [0, 1) for a route: stable across processes and restarts."""
    digest = hashlib.sha256(f"{name}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass(frozen=True)
class _LoadedModel:
    """A model loaded into a route (its primary, canary or shadow), with where it came from and
    the options it was loaded with, to reload it and to lock it."""

    model: Model[Any, Any]
    path: Any
    options: Mapping[str, Any]


@dataclass(frozen=True)
class _State:
    primary: _LoadedModel
    canary: _LoadedModel | None = None
    weight: float = 0.0
    shadow: _LoadedModel | None = None


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

    @property
    def versions(self) -> dict[str, Model[Any, Any]]:
        """The models taking traffic now, by version: the primary's first, then the canary's."""
        state = self._entry.state
        models = {state.primary.model.version: state.primary.model}
        if state.canary is not None:
            models.setdefault(state.canary.model.version, state.canary.model)
        return models

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
            self._registry._shadows.submit(self._entry.name, state.shadow.model, record, result)
        return result

    def predict_batch(self, records: Any, *, key: object = None) -> Predictions[Any]:
        """Predict many records on one variant (all of the batch goes the same way)."""
        state = self._entry.state
        result = self._choose(state, key).predict_batch(records)
        if state.shadow is not None:
            self._registry._shadows.submit(
                self._entry.name, state.shadow.model, records, result, is_batch=True
            )
        return result

    async def apredict(self, record: Any, *, key: object = None) -> Any:
        """:meth:`predict`, never running the model on the event loop."""
        state = self._entry.state
        result = await self._choose(state, key).apredict(record)
        if state.shadow is not None:
            self._registry._shadows.submit(self._entry.name, state.shadow.model, record, result)
        return result

    async def apredict_batch(self, records: Any, *, key: object = None) -> Predictions[Any]:
        """:meth:`predict_batch`, never running the model on the event loop."""
        state = self._entry.state
        result = await self._choose(state, key).apredict_batch(records)
        if state.shadow is not None:
            self._registry._shadows.submit(
                self._entry.name, state.shadow.model, records, result, is_batch=True
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
        self._shadows = ShadowTraffic(telemetry.for_providers(tracer_provider, meter_provider))

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
        and load options (``version_policy``, ``check``, ``warmup``, ``adapter_options``,
        ``drift``, ``batching``), and optional ``[models.NAME.canary]`` (with ``weight``) and
        ``[models.NAME.shadow]`` tables of the same keys; ``NAME = "path"`` is short for a
        table with only ``path``.
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
        parsed = read_config(config, base_dir=base_dir)
        locked = None if lock is None else read_lock(lock)
        registry = cls(tracer_provider=tracer_provider, meter_provider=meter_provider)
        if locked is not None:
            registry._pins = pins_of(locked, parsed)
        try:
            for bundle in parsed.bundles:
                if bundle.variant == "primary":
                    registry._add(bundle.name, bundle.path, bundle.options, pinned=True)
                elif bundle.variant == "canary":
                    registry._set_canary(
                        bundle.name, bundle.path, bundle.weight, bundle.options, pinned=True
                    )
                else:
                    registry._set_shadow(bundle.name, bundle.path, bundle.options, pinned=True)
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
                ``check``, ``warmup``, ``adapter_options``, ``drift``, ``batching``...).
                ``check`` is ``"error"`` and ``warmup`` is ``True`` unless given: a model runs
                its reference cases, as a check and as a warm-up, before it takes traffic.

        Raises:
            ValueError: the name is taken or malformed, or an option is unknown.
        """
        return self._add(name, path, load_options)

    def _add(
        self, name: str, path: Any, options: Mapping[str, Any], *, pinned: bool = False
    ) -> Route:
        check_name(name)
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
    ) -> _LoadedModel:
        """Load (and verify) one bundle; with ``pinned``, it must have the lock file's digest."""
        unknown = sorted(set(options) - LOAD_OPTIONS)
        if unknown:
            raise ValueError(
                f"models.{name}: unknown load option(s) {unknown}; known: {sorted(LOAD_OPTIONS)}."
            )
        where = name if variant == "primary" else f"{name}.{variant}"
        options = dict(options)
        pin = self._pins.get(where) if pinned else None
        if pin is not None:
            given = options.get("sha256")
            if given is not None and normalize_digest(given) != pin:
                raise pin_conflict(where, normalize_digest(given), pin)
            options["sha256"] = pin
        try:
            # A model about to take traffic proves it answers its reference cases, whatever
            # the versions (load's own default runs them only when versions differ), and has
            # run them through its call path, so that its first callers pay no first-call cost.
            defaults = {"check": "error", "warmup": True, **self._providers}
            model = load(path, **{**defaults, **options})
        except ModelkitError as exc:
            located = _located(exc, f"models.{where}")
            if located is exc:
                raise
            raise located from exc
        observer_of(model).set_variant(variant)
        return _LoadedModel(model, path, options)

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
        The bundle is loaded as :meth:`add` loads one, checked and warmed up before it takes
        any traffic.

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
            observer_of(state.canary.model).set_variant("primary")
            entry.state = replace(state, primary=state.canary, canary=None, weight=0.0)
            self._pins.pop(name, None)
            pin = self._pins.pop(f"{name}.canary", None)
            if pin is not None:
                self._pins[name] = pin
        state.primary.model.close()

    def set_shadow(self, name: str, path: Any, **load_options: Any) -> None:
        """Also send ``name``'s inputs to another bundle, off the callers' path, and count
        whether its answers match the primary's (``modelkit.shadow.comparisons``). The bundle
        is loaded as :meth:`add` loads one.

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

        The new bundle is loaded, verified, checked against its reference cases and warmed up
        with them (unless the route says ``warmup=False``) while the old one keeps serving;
        then one assignment swaps them, and calls in flight finish on the old model. A reload
        that fails raises and leaves the old model serving. Reloads of one name run one at a
        time.

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
            ReproducibilityError: it no longer answers its reference cases (unless the route
                was added with ``check="warn"`` or ``"off"``).
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
                    bundle["path"] = relative_path(bundle["path"], target.parent)
        write_atomically(target, format_lock(lock))

    # -- shutting down --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the shadow worker and every model's background work (micro-batching)."""
        self._shadows.close()
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


def _same_path(a: Any, b: Any) -> bool:
    return _path_text(a) == _path_text(b)


def _path_text(path: Any) -> str:
    return os.fspath(path) if isinstance(path, str | os.PathLike) else str(path)


def _locked(bundle: _LoadedModel) -> dict[str, Any]:
    digest = bundle.model.digest
    assert digest is not None
    return {"path": _path_text(bundle.path), "sha256": digest}


def _located(exc: ModelkitError, where: str) -> ModelkitError:
    """The same error, its message prefixed with the config key it is about."""
    message = f"{where}: {exc}"
    if isinstance(exc, IntegrityError):
        return IntegrityError(message, path=exc.path, expected=exc.expected, actual=exc.actual)
    if isinstance(exc, BundleError):
        return BundleError(message, path=exc.path, untrusted_types=exc.untrusted_types)
    if isinstance(exc, EnvironmentMismatchError):
        return EnvironmentMismatchError(message, mismatches=exc.mismatches)
    if isinstance(exc, ReproducibilityError):
        return ReproducibilityError(
            message,
            rows=exc.rows,
            largest_difference=exc.largest_difference,
            versions=exc.versions,
        )
    if type(exc) is ModelkitError:
        return ModelkitError(message)
    return exc
