"""The Django application: ``INSTALLED_APPS += ["modelkit.django"]``."""

from __future__ import annotations

from django.apps import AppConfig  # type: ignore[import-untyped]  # Django ships no types

__all__ = ["ModelkitConfig"]


class ModelkitConfig(AppConfig):  # type: ignore[misc]  # AppConfig is untyped (Any)
    """Registers the system checks; loads no model, so management commands stay fast."""

    name = "modelkit.django"
    label = "modelkit"
    verbose_name = "modelkit"

    def ready(self) -> None:
        # Idempotent: Django keeps its checks in a set. (The signal receivers are connected,
        # with dispatch_uids, when modelkit.django is imported, before this runs.)
        from . import checks

        checks.register()
