"""``settings.MODELKIT``, validated once and cached until ``override_settings`` changes it.

Example::

    MODELKIT = {
        "MODELS": {"iris": "bundles/iris"},  # or "CONFIG": "models.toml"
        "LOCK": "models.lock",
        "LOADING": "eager",
        "MAX_BATCH_SIZE": 100,
        "MAX_BODY_SIZE": 2 * 2**20,
        "MAX_RESPONSE_SIZE": 20 * 2**20,
        "REPORT": True,  # each model's report page at models/<name>/report
    }
"""

from __future__ import annotations

import difflib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from django.conf import settings  # type: ignore[import-untyped]  # Django ships no types
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]

from .._serving import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_BODY_SIZE, DEFAULT_MAX_RESPONSE_SIZE

__all__ = ["DEFAULTS", "ModelkitSettings", "clear_cache", "get_settings"]

Loading = Literal["lazy", "eager"]

#: Every key of ``settings.MODELKIT`` and its default.
DEFAULTS: Mapping[str, Any] = {
    "MODELS": None,
    "CONFIG": None,
    "LOCK": None,
    "LOADING": "lazy",
    "MAX_BATCH_SIZE": DEFAULT_MAX_BATCH_SIZE,
    "MAX_BODY_SIZE": DEFAULT_MAX_BODY_SIZE,
    "MAX_RESPONSE_SIZE": DEFAULT_MAX_RESPONSE_SIZE,
    "REPORT": False,
}
_LOADING_MODES = ("lazy", "eager")


@dataclass(frozen=True)
class ModelkitSettings:
    """``settings.MODELKIT``, checked, with its paths made absolute.

    Attributes:
        models: the ``MODELS`` mapping (the ``models`` table of a registry config), or ``None``
            when the models come from ``config``.
        config: the registry config file (TOML), or ``None``.
        lock: the lock file every bundle must match, or ``None``.
        base_dir: what relative bundle paths in ``models`` are relative to (``BASE_DIR``).
        loading: ``"lazy"`` (load on first use) or ``"eager"`` (at the first request at the
            latest).
        max_batch_size: the most records one ``{"instances": [...]}`` request may hold (a
            tensor record counts its rows).
        max_body_size: the largest predict request body, in bytes (Django's
            ``DATA_UPLOAD_MAX_MEMORY_SIZE`` applies too, when smaller).
        max_response_size: the largest predict answer, in bytes.
        has_report: serve each model's report page at ``<name>/report`` under the JSON
            endpoints.
    """

    models: Mapping[str, Any] | None
    config: Path | None
    lock: Path | None
    base_dir: Path | None
    loading: Loading
    max_batch_size: int | None
    max_body_size: int | None
    max_response_size: int | None
    has_report: bool = False

    def registry_source(self) -> Mapping[str, Any] | Path:
        """What :meth:`modelkit.Registry.from_config` reads: the config file or the mapping."""
        if self.config is not None:
            return self.config
        return {"models": dict(self.models or {})}


_cache: ModelkitSettings | None = None
_cache_lock = threading.Lock()


def get_settings() -> ModelkitSettings:
    """The current ``settings.MODELKIT``, parsed on first use and cached.

    Raises:
        ImproperlyConfigured: the setting is missing or malformed (the message names the key).
    """
    cached = _cache
    if cached is not None:
        return cached
    with _cache_lock:
        if _cache is None:
            _store(_parse())
        assert _cache is not None
        return _cache


def _store(value: ModelkitSettings | None) -> None:
    global _cache  # noqa: PLW0603 - the one cached value, swapped whole
    _cache = value


def clear_cache() -> None:
    """Forget the parsed settings (``override_settings`` calls this through a signal)."""
    with _cache_lock:
        _store(None)


def _parse() -> ModelkitSettings:
    raw = getattr(settings, "MODELKIT", None)
    if raw is None:
        raise ImproperlyConfigured(
            "settings.MODELKIT is missing. Add MODELKIT = {'MODELS': {'name': 'path/to/bundle'}} "
            "(or {'CONFIG': 'models.toml'}) to your settings."
        )
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(f"settings.MODELKIT must be a dict, got {type(raw).__name__}.")
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        near = difflib.get_close_matches(str(unknown[0]), list(DEFAULTS), n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise ImproperlyConfigured(
            f"settings.MODELKIT has unknown key {unknown[0]!r}.{hint} "
            f"Known keys: {', '.join(DEFAULTS)}."
        )
    values = {**DEFAULTS, **raw}
    models, config = values["MODELS"], values["CONFIG"]
    if (models is None) == (config is None):
        raise ImproperlyConfigured(
            "settings.MODELKIT needs exactly one of 'MODELS' (a dict of name to bundle path) "
            "and 'CONFIG' (a registry config file)."
        )
    if models is not None and not isinstance(models, Mapping):
        raise ImproperlyConfigured(
            f"settings.MODELKIT['MODELS'] must be a dict of name to bundle path (or to a table "
            f"of options), got {type(models).__name__}."
        )
    loading = values["LOADING"]
    if loading not in _LOADING_MODES:
        raise ImproperlyConfigured(
            f"settings.MODELKIT['LOADING'] must be 'lazy' or 'eager', got {loading!r}."
        )
    max_batch_size = _limit(values, "MAX_BATCH_SIZE")
    max_body_size = _limit(values, "MAX_BODY_SIZE")
    max_response_size = _limit(values, "MAX_RESPONSE_SIZE")
    has_report = values["REPORT"]
    if not isinstance(has_report, bool):
        raise ImproperlyConfigured(
            f"settings.MODELKIT['REPORT'] must be True or False, got {has_report!r}."
        )
    base_dir = getattr(settings, "BASE_DIR", None)
    base = None if base_dir is None else Path(os.fspath(base_dir))
    if models is not None:
        for name, path in _bundle_paths(models):
            _absolute("MODELS", path, base, what=f"the bundle of {name!r}")
    return ModelkitSettings(
        models=models,
        config=None if config is None else _absolute("CONFIG", config, base),
        lock=None if values["LOCK"] is None else _absolute("LOCK", values["LOCK"], base),
        base_dir=base,
        loading=loading,
        max_batch_size=max_batch_size,
        max_body_size=max_body_size,
        max_response_size=max_response_size,
        has_report=has_report,
    )


def _limit(values: Mapping[str, Any], key: str) -> int | None:
    value = values[key]
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ImproperlyConfigured(
            f"settings.MODELKIT[{key!r}] must be a positive integer or None, got {value!r}."
        )
    return None if value is None else int(value)


def _bundle_paths(models: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The path of every bundle ``MODELS`` names (primaries, canaries and shadows)."""
    found: list[tuple[str, Any]] = []
    for name, entry in models.items():
        if isinstance(entry, str | os.PathLike):
            found.append((str(name), entry))
            continue
        if not isinstance(entry, Mapping):
            continue  # the registry config's own validation reports it, naming the key
        for suffix, table in (
            ("", entry),
            (".canary", entry.get("canary")),
            (".shadow", entry.get("shadow")),
        ):
            if isinstance(table, Mapping) and isinstance(table.get("path"), str | os.PathLike):
                found.append((f"{name}{suffix}", table["path"]))
    return found


def _absolute(key: str, value: Any, base: Path | None, *, what: str | None = None) -> Path:
    if not isinstance(value, str | os.PathLike) or not os.fspath(value):
        raise ImproperlyConfigured(f"settings.MODELKIT[{key!r}] must be a path, got {value!r}.")
    path = Path(os.fspath(value)).expanduser()
    if path.is_absolute():
        return path
    if base is None:
        # A path relative to the working directory breaks as soon as the server starts
        # elsewhere (a process manager, a container); refuse it rather than guess.
        raise ImproperlyConfigured(
            f"settings.MODELKIT[{key!r}]: {what or 'the path'} {os.fspath(value)!r} is relative, "
            "and settings.BASE_DIR (which relative paths start from) is not set. Set BASE_DIR "
            "or use an absolute path."
        )
    return base / path
