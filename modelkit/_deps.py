"""Import optional dependencies when a feature needs them, never at ``import modelkit`` time."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

__all__ = ["require"]


def require(module: str, *, extra: str, feature: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install.

    Args:
        module: the module to import, such as ``"pandas"``.
        extra: the ``modelkit`` extra that installs it.
        feature: what the caller was doing, for the message ("Reading a DataFrame").
        package: the distribution that provides the module, when its name is not the module's
            top level (``opentelemetry-sdk`` for ``opentelemetry.sdk.trace``).

    Raises:
        MissingDependencyError: the module cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = package or module.partition(".")[0]
        raise MissingDependencyError(
            f"{feature} needs {top}, which is not installed. Install modelkit's {extra!r} extra "
            f"(from a modelkit checkout: pip install '.[{extra}]').",
            name=top,
            extra=extra,
        ) from exc
