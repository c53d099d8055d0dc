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

from ._manifest import Environment
from .errors import EnvironmentMismatchError, EnvironmentMismatchWarning

__all__ = [
    "Mismatch",
    "PackageStatus",
    "VersionPolicy",
    "capture",
    "check",
    "depends_on_python",
    "differs",
    "distribution_of",
    "installed_version",
    "mismatch_text",
    "mismatches",
    "package_status",
    "python_status",
    "release",
    "same_release_line",
    "warn",
]

logger = logging.getLogger("modelkit")
VersionPolicy = Literal["warn", "error", "ignore"]
#: A package's recorded version and the installed one (``None``: not installed).
Mismatch = tuple[str, str | None]
#: How an installed package stands against the version a bundle recorded: the same version;
#: another on the same release line (loads, with a warning); another major version; none.
PackageStatus = Literal["ok", "differs", "incompatible", "missing"]
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


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string: ``"1.5.2rc1"`` -> ``(1, 5, 2)``."""
    match = re.match(r"^\s*v?(\d+(?:\.\d+)*)", version)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def same_release_line(saved: str, current: str) -> bool:
    """The one compatibility rule: a package loads across versions of the same major version
    (semantic versioning's promise); another major version may break the saved artifacts."""
    return release(saved)[:1] == release(current)[:1]


def package_status(recorded: str, installed: str | None) -> PackageStatus:
    """How the installed version of a package stands against the one a bundle recorded."""
    if installed is None:
        return "missing"
    if installed == recorded:
        return "ok"
    return "differs" if same_release_line(recorded, installed) else "incompatible"


def python_status(recorded: str, current: str) -> Literal["ok", "differs"]:
    """Whether this Python is the recorded one's minor version (pickles may differ across)."""
    return "ok" if release(current)[:2] == release(recorded)[:2] else "differs"


# Formats whose artifacts load the same on any Python (a pickle may not).
_PYTHON_INDEPENDENT_FORMATS = frozenset({"onnx", "skops"})


def depends_on_python(format: str) -> bool:
    """Whether a bundle format's artifacts may need the Python version they were saved with."""
    return format not in _PYTHON_INDEPENDENT_FORMATS


def check(
    recorded: Environment, policy: VersionPolicy, *, label: str, compare_python: bool = True
) -> dict[str, Mismatch]:
    """Compare a bundle's recorded environment with this process, before anything is unpickled.

    With ``policy="warn"`` (the default of :func:`modelkit.load`), a different major version or
    a missing package raises, and the minor and patch differences are returned for :func:`warn`
    to report once the reference cases have run; ``"error"`` raises on any difference;
    ``"ignore"`` checks nothing. ``compare_python=False`` leaves the Python version out, for
    formats whose artifacts do not depend on it (ONNX graphs).

    Returns:
        The differences to warn about.

    Raises:
        EnvironmentMismatchError: as the policy says.
        ValueError: an unknown policy.
    """
    severe, mild = mismatches(recorded, policy, compare_python=compare_python)
    if severe:
        raise EnvironmentMismatchError(
            f"Bundle {label!r} was saved with {mismatch_text(severe)}. Install the recorded "
            "versions, or pass version_policy='ignore' to load it anyway (results may differ).",
            mismatches=severe,
        )
    return mild


def warn(mild: Mapping[str, Mismatch], label: str, *, evidence: str | None = None) -> None:
    """Warn about the versions that differ from the recorded ones, if any.

    ``evidence`` is what the reference cases showed (``"50 of 50 reference cases identical"``):
    the warning then says what changed and that the answers did not, instead of a bare "results
    may differ".
    """
    if not mild:
        return
    if evidence is None:
        message = (
            f"Bundle {label!r} was saved with {mismatch_text(mild)}; results may differ "
            "slightly. Pass version_policy='ignore' to silence this, or re-save the model."
        )
    else:
        changes = ", ".join(
            f"{name} {saved} → {current}" for name, (saved, current) in sorted(mild.items())
        )
        message = (
            f"Bundle {label!r}: {changes}, {evidence}. Re-save the model to record these "
            "versions, or pass version_policy='ignore' to silence this."
        )
    logger.warning(message)
    warnings.warn(message, EnvironmentMismatchWarning, stacklevel=5)


def mismatches(
    recorded: Environment, policy: VersionPolicy, *, compare_python: bool = True
) -> tuple[dict[str, Mismatch], dict[str, Mismatch]]:
    """The differences between a bundle's recorded environment and this process, split into
    those the policy refuses to load and those it only warns about.

    Each maps a package name (or ``"python"``) to its recorded and installed versions (``None``
    when the package is missing). See :func:`check` for the policies.

    Raises:
        ValueError: an unknown policy.
    """
    if policy not in _POLICIES:
        raise ValueError(f"version_policy must be one of {_POLICIES}, got {policy!r}")
    severe: dict[str, Mismatch] = {}
    mild: dict[str, Mismatch] = {}
    if policy == "ignore":
        return severe, mild
    for name, saved in recorded.packages.items():
        current = installed_version(name)
        status = package_status(saved, current)
        if status == "differs":
            mild[name] = (saved, current)
        elif status != "ok":
            severe[name] = (saved, current)
    python_now = platform.python_version()
    if compare_python and python_status(recorded.python, python_now) == "differs":
        mild["python"] = (recorded.python, python_now)
    if policy == "error":
        severe.update(mild)
        mild = {}
    return severe, mild


def differs(recorded: Environment, *, compare_python: bool = True) -> bool:
    """Whether any recorded library (or Python, with ``compare_python``) has another version
    in this process, or is missing from it."""
    severe, _ = mismatches(recorded, "error", compare_python=compare_python)
    return bool(severe)


def mismatch_text(found: Mapping[str, Mismatch]) -> str:
    """Mismatches as text: ``scikit-learn 1.5.2 (this process has 1.6.0), ...``."""
    parts = [
        f"{name} {saved} (this process has {current or 'none installed'})"
        for name, (saved, current) in sorted(found.items())
    ]
    return ", ".join(parts)
