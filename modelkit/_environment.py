"""Record the library versions a bundle was saved with, and compare them with this process."""

from __future__ import annotations

import functools
import logging
import platform
import re
import warnings
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Literal

from ._bundle import Environment
from .errors import EnvironmentMismatchError, EnvironmentMismatchWarning

__all__ = ["VersionPolicy", "capture", "check", "distribution_of", "installed_version"]

logger = logging.getLogger("modelkit")
VersionPolicy = Literal["warn", "error", "ignore"]
_POLICIES = ("warn", "error", "ignore")


@functools.lru_cache(maxsize=256)
def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution, or ``None`` (cached: metadata lookups are slow)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=256)
def distribution_of(module: str) -> str | None:
    """The distribution that provides a top-level module (``sklearn`` -> ``scikit-learn``)."""
    names = metadata.packages_distributions().get(module.partition(".")[0])
    return names[0] if names else None


def capture(distributions: Iterable[str]) -> Environment:
    """This process's Python version and the installed versions of ``distributions``."""
    packages = {}
    for name in sorted(set(distributions)):
        version = installed_version(name)
        if version is not None:
            packages[name] = version
    return Environment(python=platform.python_version(), packages=packages)


def _release(version: str) -> tuple[int, ...]:
    match = re.match(r"^\s*v?(\d+(?:\.\d+)*)", version)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


# Formats whose artifacts load the same on any Python (a pickle may not).
_PYTHON_INDEPENDENT_FORMATS = frozenset({"onnx"})


def depends_on_python(format: str) -> bool:
    """Whether a bundle format's artifacts may need the Python version they were saved with."""
    return format not in _PYTHON_INDEPENDENT_FORMATS


def check(
    recorded: Environment, policy: VersionPolicy, *, label: str, compare_python: bool = True
) -> None:
    """Compare a bundle's recorded environment with this process.

    With ``policy="warn"`` (the default of :func:`modelkit.load`), a different minor or patch
    version warns and a different major version or a missing package raises; ``"error"`` raises on
    any difference; ``"ignore"`` checks nothing. ``compare_python=False`` leaves the Python
    version out, for formats whose artifacts do not depend on it (ONNX graphs).

    Raises:
        EnvironmentMismatchError: as the policy says.
        ValueError: an unknown policy.
    """
    if policy not in _POLICIES:
        raise ValueError(f"version_policy must be one of {_POLICIES}, got {policy!r}")
    if policy == "ignore":
        return
    severe: dict[str, tuple[str, str | None]] = {}
    mild: dict[str, tuple[str, str | None]] = {}
    for name, saved in recorded.packages.items():
        current = installed_version(name)
        if current is None:
            severe[name] = (saved, None)
        elif current != saved:
            same_major = _release(current)[:1] == _release(saved)[:1]
            (mild if same_major else severe)[name] = (saved, current)
    python_now = platform.python_version()
    if compare_python and _release(python_now)[:2] != _release(recorded.python)[:2]:
        mild["python"] = (recorded.python, python_now)
    if policy == "error":
        severe.update(mild)
        mild = {}
    if severe:
        raise EnvironmentMismatchError(
            f"Bundle {label!r} was saved with {_describe(severe)}. Install the recorded versions, "
            "or pass version_policy='ignore' to load it anyway (results may differ).",
            mismatches=severe,
        )
    if mild:
        message = (
            f"Bundle {label!r} was saved with {_describe(mild)}; results may differ slightly. "
            "Pass version_policy='ignore' to silence this, or re-save the model."
        )
        logger.warning(message)
        warnings.warn(message, EnvironmentMismatchWarning, stacklevel=4)


def _describe(mismatches: Mapping[str, tuple[str, str | None]]) -> str:
    parts = [
        f"{name} {saved} (this process has {current or 'none installed'})"
        for name, (saved, current) in sorted(mismatches.items())
    ]
    return ", ".join(parts)
