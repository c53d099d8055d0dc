"""System checks (``python manage.py check``): the models of ``settings.MODELKIT`` are usable.

Every bundle is verified as loading would verify it (manifest, file list, sizes, every
artifact's sha256, the pinned digests, the recorded library versions) without deserializing
anything, so ``check`` runs no model code.

=================  ==========================================================================
``modelkit.E001``  ``settings.MODELKIT``, its registry config or its lock file is invalid
``modelkit.E002``  a bundle is missing, unreadable or not a bundle
``modelkit.E003``  a bundle's files do not match its manifest, or its digest differs from the
                   ``sha256`` in the config or the lock file (or the lock file lacks it)
``modelkit.E004``  the library versions differ and the version policy refuses to load it
``modelkit.W001``  the library versions differ; it loads with a warning
=================  ==========================================================================

Loading reports the same ids, and one more the checks cannot find without running a model:
``modelkit.E005``, a model that no longer answers its reference cases.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core import checks  # type: ignore[import-untyped]  # Django ships no types
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]

from .. import adapters
from .._bundle import Opened, open_bundle
from .._config import pin_conflict, pin_mismatch, pins_of, read_config, read_lock
from .._environment import VersionPolicy, depends_on_python, mismatch_text, mismatches
from .._manifest import normalize_digest
from ..errors import BundleError, IntegrityError
from . import conf

__all__ = ["TAG", "check_models", "register"]

#: The tag of modelkit's checks: ``python manage.py check --tag modelkit``.
TAG = "modelkit"

_HINTS = {
    "modelkit.E001": "Fix settings.MODELKIT (see the modelkit Django guide).",
    "modelkit.E002": "Check the path, or save the bundle again with modelkit.save().",
    "modelkit.E003": (
        "If the bundle changed on purpose, regenerate the lock file (or update the sha256); "
        "otherwise restore the bundle from your release."
    ),
    "modelkit.E004": (
        "Install the recorded library versions, or set version_policy='ignore' for this model."
    ),
    "modelkit.W001": (
        "Install the recorded versions, re-save the model, or set version_policy='ignore'."
    ),
}


def register() -> None:
    """Register :func:`check_models` (idempotent: Django keeps its checks in a set)."""
    checks.register(check_models, TAG)


def check_models(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[Any]:
    """Check ``settings.MODELKIT`` and every bundle it names."""
    try:
        settings = conf.get_settings()
    except ImproperlyConfigured as exc:
        return [_message("modelkit.E001", str(exc))]
    messages: list[Any] = []
    try:
        planned = list(_planned(settings, messages))
    except (ValueError, BundleError) as exc:
        # A registry config or lock file that cannot be read or parsed.
        return [*messages, _message("modelkit.E001", str(exc))]
    for bundle in planned:
        messages.extend(_verify(bundle))
    return messages


def _message(check_id: str, text: str, *, obj: Any = None) -> Any:
    kind = checks.Warning if check_id.startswith("modelkit.W") else checks.Error
    return kind(text, hint=_HINTS[check_id], obj=obj, id=check_id)


@dataclass(frozen=True)
class _Planned:
    """One bundle the registry would load, with what it must match."""

    key: str  # "iris", "iris.canary"
    path: Path
    sha256: str | None
    pin: str | None
    version_policy: VersionPolicy


def _planned(settings: conf.ModelkitSettings, messages: list[Any]) -> Iterator[_Planned]:
    """The bundles ``Registry.from_config`` would load, read the way it reads them."""
    source = settings.registry_source()
    if isinstance(source, Path):
        config = read_config(source)
    else:
        # conf refused relative paths without BASE_DIR
        base = settings.base_dir or Path.cwd()
        config = read_config(source, base_dir=base, label="settings.MODELKIT['MODELS']")
    pins: dict[str, str] = {}
    if settings.lock is not None:
        locked = read_lock(settings.lock)
        try:
            pins = pins_of(locked, config)
        except IntegrityError as exc:
            # Reported once; the bundles are still checked, against the config's pins only.
            messages.append(_message("modelkit.E003", f"lock file: {exc}"))
    for bundle in config.bundles:
        yield _Planned(
            key=bundle.key,
            path=bundle.path,
            sha256=bundle.table.sha256,
            pin=pins.get(bundle.key),
            version_policy=bundle.table.version_policy or "warn",
        )


def _verify(bundle: _Planned) -> list[Any]:
    where = f"models.{bundle.key}"
    try:
        expected = None if bundle.sha256 is None else normalize_digest(bundle.sha256)
    except ValueError as exc:
        return [_message("modelkit.E001", f"{where}.sha256: {exc}")]
    if expected is not None and bundle.pin is not None and expected != bundle.pin:
        return [_message("modelkit.E003", str(pin_conflict(bundle.key, expected, bundle.pin)))]
    try:
        opened = open_bundle(bundle.path)
    except IntegrityError as exc:
        return [_message("modelkit.E003", f"{where}: {exc}", obj=str(bundle.path))]
    except (BundleError, OSError) as exc:
        return [_message("modelkit.E002", f"{where}: {exc}", obj=str(bundle.path))]
    messages = []
    found = _digest(opened)
    pinned = expected or bundle.pin
    if pinned is not None and found != pinned:
        error = pin_mismatch(
            bundle.key,
            bundle.path,
            found,
            pinned,
            pinned_by="config" if expected is not None else "lock file",
        )
        messages.append(_message("modelkit.E003", str(error), obj=str(bundle.path)))
    if opened.kind == "pickle":
        messages.append(
            _message(
                "modelkit.E002",
                f"{where}: {str(bundle.path)!r} is a bare pickle, which a registry does not "
                "load; save the model as a bundle with modelkit.save().",
                obj=str(bundle.path),
            )
        )
    if opened.bundle is not None:
        manifest = opened.bundle.manifest
        try:
            adapters.get(manifest.format)
        except BundleError as exc:
            messages.append(_message("modelkit.E002", f"{where}: {exc}", obj=str(bundle.path)))
        messages.extend(_environment(where, bundle, manifest))
    return messages


def _digest(opened: Opened) -> str:
    if opened.bundle is not None:
        return opened.bundle.digest
    assert opened.data is not None
    return "sha256:" + hashlib.sha256(opened.data).hexdigest()


def _environment(where: str, bundle: _Planned, manifest: Any) -> list[Any]:
    if bundle.version_policy == "ignore":
        return []
    refused, warned = mismatches(
        manifest.environment,
        bundle.version_policy,
        compare_python=depends_on_python(manifest.format),
    )
    if not refused and not warned:
        return []
    described = mismatch_text({**refused, **warned})
    check_id = "modelkit.E004" if refused else "modelkit.W001"
    outcome = "refuses to load it" if refused else "loads it with a warning"
    return [
        _message(
            check_id,
            f"{where}: the bundle {str(bundle.path)!r} was saved with {described}; "
            f"version_policy={bundle.version_policy!r} {outcome}.",
            obj=str(bundle.path),
        )
    ]
