"""The project's registry: built from ``settings.MODELKIT`` once, rebuilt when it changes.

Loading runs the same validation as the system checks (they cannot run under WSGI or ASGI), and
turns a failure into an ``ImproperlyConfigured`` that starts with the check's id (any other
failure into one too, without an id), remembered until the settings change.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
from django.core.signals import (  # type: ignore[import-untyped]  # Django ships no types
    request_started,
    setting_changed,
)

from .._registry import Registry, Route
from ..errors import (
    BundleError,
    EnvironmentMismatchError,
    IntegrityError,
    ReproducibilityError,
)
from . import conf

__all__ = ["Models", "aload_models", "get_registry", "load_models", "models", "reset"]

logger = logging.getLogger("modelkit")

_lock = threading.Lock()
_registry: Registry | None = None
# A failed load is remembered (until the settings change or load_models() is called), so a
# misconfigured server answers quickly instead of re-verifying every bundle on every request.
_failure: ImproperlyConfigured | None = None


def check_id(exc: BaseException, settings: conf.ModelkitSettings | None = None) -> str:
    """The system check id that reports ``exc`` (see :mod:`modelkit.django.checks`);
    ``modelkit.E005``, which only loading finds, for reference cases that fail."""
    if isinstance(exc, BundleError) and settings is not None:
        # A missing or unreadable config or lock file is a configuration problem, not a bundle's.
        files = {str(path) for path in (settings.config, settings.lock) if path is not None}
        if exc.path in files:
            return "modelkit.E001"
    if isinstance(exc, IntegrityError):
        return "modelkit.E003"
    if isinstance(exc, BundleError):
        return "modelkit.E002"
    if isinstance(exc, EnvironmentMismatchError):
        return "modelkit.E004"
    if isinstance(exc, ReproducibilityError):
        return "modelkit.E005"
    return "modelkit.E001"


def _build() -> Registry:
    try:
        settings = conf.get_settings()
    except ImproperlyConfigured as exc:
        raise ImproperlyConfigured(f"modelkit.E001: {exc}") from exc
    try:
        return Registry.from_config(
            settings.registry_source(),
            lock=settings.lock,
            base_dir=settings.base_dir if settings.config is None else None,
        )
    except (ValueError, BundleError, EnvironmentMismatchError, ReproducibilityError) as exc:
        found = check_id(exc, settings)
        # The system checks run no model code: reference cases fail only when the models load.
        see = (
            "`modelkit verify --run` runs the reference cases of a bundle"
            if found == "modelkit.E005"
            else "run `python manage.py check` to see every problem"
        )
        raise ImproperlyConfigured(
            f"{found}: cannot load the models of settings.MODELKIT: {exc} ({see})."
        ) from exc
    except Exception as exc:
        # Anything else a model's own code raised while it loaded (or warmed up): reported and
        # remembered the same way, so that no request, nor the request machinery, fails on it.
        raise ImproperlyConfigured(
            f"cannot load the models of settings.MODELKIT: {type(exc).__name__}: {exc}"
        ) from exc


def _load(*, retry: bool) -> Registry:
    global _registry, _failure  # noqa: PLW0603 - the one registry, swapped whole under _lock
    with _lock:
        if _registry is not None:
            return _registry
        if _failure is not None and not retry:
            raise ImproperlyConfigured(str(_failure)) from _failure
        try:
            registry = _build()
        except ImproperlyConfigured as exc:
            _failure = exc
            raise
        _registry, _failure = registry, None
        return registry


def get_registry() -> Registry:
    """The registry, loaded on first use (thread-safe: one thread loads, the others wait).

    Raises:
        ImproperlyConfigured: ``settings.MODELKIT`` is invalid or a bundle fails verification.
    """
    registry = _registry
    return registry if registry is not None else _load(retry=False)


def load_models() -> Registry:
    """Load every model of ``settings.MODELKIT`` now, if not loaded yet, and return the registry.

    Call it in ``wsgi.py`` or ``asgi.py`` after ``get_wsgi_application()`` /
    ``get_asgi_application()``, so the models are verified and loaded before the first request
    (and before gunicorn ``--preload`` forks its workers), and a bad bundle stops the start-up.
    It retries a load that failed before.

    Raises:
        ImproperlyConfigured: ``settings.MODELKIT`` is invalid or a bundle fails verification
            (the message starts with the system check's id, such as ``modelkit.E002``).
    """
    registry = _registry
    return registry if registry is not None else _load(retry=True)


async def aload_models() -> Registry:
    """:func:`get_registry` for async code: a first load runs on a worker thread, never on the
    event loop."""
    registry = _registry
    if registry is not None:
        return registry
    return await asyncio.to_thread(get_registry)


def reset() -> None:
    """Close the registry; the next use builds it again from the settings."""
    global _registry, _failure
    with _lock:
        old, _registry, _failure = _registry, None, None
        conf.clear_cache()
    if old is not None:
        old.close()


class Models(Mapping[str, Route]):
    """The models of ``settings.MODELKIT`` by name: ``models["iris"].predict(record)``.

    A live view: each access reads the current registry (loading it on first use), so it follows
    ``override_settings``. Look a model up in the view rather than at import time.
    """

    @property
    def registry(self) -> Registry:
        """The :class:`modelkit.Registry` behind it (for canaries, shadows and reloads)."""
        return get_registry()

    def __getitem__(self, name: str) -> Route:
        return get_registry()[name]

    def __contains__(self, name: object) -> bool:
        return name in get_registry()

    def __iter__(self) -> Iterator[str]:
        return iter(get_registry())

    def __len__(self) -> int:
        return len(get_registry())

    def names(self) -> list[str]:
        """The models' names, in configuration order."""
        return get_registry().names()

    def __repr__(self) -> str:
        registry = _registry
        return "<modelkit.django.models (not loaded)>" if registry is None else repr(registry)


#: The project's models; see :class:`Models`.
models = Models()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("MODELKIT", "BASE_DIR"):
        reset()


def _on_request_started(**kwargs: Any) -> None:
    """In eager mode, load before the first request's view runs (if ``load_models()`` did not)."""
    if _registry is not None or _failure is not None:
        return
    try:
        is_eager = conf.get_settings().loading == "eager"
    except ImproperlyConfigured:
        return  # the system checks report it, and so does the first use of the models
    if not is_eager:
        return
    try:
        get_registry()
    except ImproperlyConfigured:
        # The view that uses the models reports it; a signal receiver must not break the
        # request machinery (or every URL of the site, including those without models).
        logger.exception("modelkit: loading the models failed")


# Connected on import (not only in AppConfig.ready), so override_settings is followed even in a
# project that uses modelkit.django without listing it in INSTALLED_APPS.
setting_changed.connect(_on_setting_changed, dispatch_uid="modelkit.django.setting_changed")
request_started.connect(_on_request_started, dispatch_uid="modelkit.django.request_started")
