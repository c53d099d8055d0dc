"""Registry configs and lock files, read, checked and written in one place.

A registry config is a TOML file (or the same structure as a mapping)::

    [models.churn]
    path = "bundles/churn"        # relative to the file
    sha256 = "sha256:..."         # optional: the digest the bundle must have
    check = "error"               # and the other load options: version_policy, adapter_options,
                                  # trusted_types, drift, batching, warmup

    [models.churn.canary]         # optional, the same keys and a weight
    path = "bundles/churn-2"
    weight = 0.1

    [models.churn.shadow]         # optional, the same keys
    path = "bundles/churn-3"

``churn = "bundles/churn"`` under ``[models]`` is short for a table with only ``path``.
:func:`read_config` reads one (TOML, then the shorthand expanded, then validated, every problem
named by its key) for the registry, the Flask and Django integrations and the CLI alike. A lock
file pins the digest of every bundle in use (:func:`read_lock`, :func:`format_lock`,
:func:`pins_of`).

This module is the documented seam for integrations: they use its plain names.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

from ._batching import Batching
from ._manifest import normalize_digest
from .errors import BundleError, IntegrityError

__all__ = [
    "LOAD_OPTIONS",
    "LOCK_VERSION",
    "BundleConfig",
    "CanaryConfig",
    "ConfiguredBundle",
    "Lock",
    "LockedBundle",
    "LockedModel",
    "ModelConfig",
    "RegistryConfig",
    "Variant",
    "check_name",
    "format_lock",
    "pin_conflict",
    "pin_mismatch",
    "pins_of",
    "read_config",
    "read_lock",
    "read_toml",
    "relative_path",
    "resolve",
]

#: The lock-file format this modelkit reads and writes.
LOCK_VERSION = 1
#: The load options a registry passes on to :func:`modelkit.load`, per bundle.
LOAD_OPTIONS = frozenset(
    {
        "sha256",
        "trusted",
        "trusted_types",
        "version_policy",
        "check",
        "warmup",
        "adapter_options",
        "drift",
        "batching",
        "tracer_provider",
        "meter_provider",
    }
)
Variant = Literal["primary", "canary", "shadow"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


# -- the schemas --------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BundleConfig(_Strict):
    """One bundle's table: its path, an optional pin, and its load options."""

    path: str = Field(min_length=1)
    sha256: str | None = None
    # The types a skops bundle may hold beyond skops' defaults, as load(trusted_types=) takes them.
    trusted_types: tuple[str, ...] | None = None
    version_policy: Literal["warn", "error", "ignore"] | None = None
    check: Literal["auto", "error", "warn", "off"] | None = None
    warmup: bool | None = None
    adapter_options: dict[str, JsonValue] | None = None
    drift: bool | None = None
    batching: bool | dict[str, JsonValue] | None = None


class CanaryConfig(BundleConfig):
    """A canary's table: a bundle's, and the share of traffic it gets."""

    weight: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)


class ModelConfig(BundleConfig):
    """A model's table: its primary bundle, and optionally a canary and a shadow."""

    canary: CanaryConfig | None = None
    shadow: BundleConfig | None = None

    def variants(self) -> list[tuple[Variant, BundleConfig]]:
        """The model's bundles: the primary, then its canary and shadow when configured."""
        found: list[tuple[Variant, BundleConfig]] = [("primary", self)]
        if self.canary is not None:
            found.append(("canary", self.canary))
        if self.shadow is not None:
            found.append(("shadow", self.shadow))
        return found


class _Document(_Strict):
    models: dict[str, ModelConfig]


class LockedBundle(_Strict):
    """One bundle in a lock file: its path (relative to the lock file) and its digest."""

    path: str
    sha256: str

    @field_validator("sha256")
    @classmethod
    def _normalized(cls, value: str) -> str:
        return normalize_digest(value)


class LockedModel(LockedBundle):
    """A model in a lock file: its primary bundle, and its canary's and shadow's."""

    canary: LockedBundle | None = None
    shadow: LockedBundle | None = None


class Lock(_Strict):
    """A lock file: the digest of every bundle in use, by model."""

    lock_version: Literal[1]
    models: dict[str, LockedModel]

    def bundles(self) -> dict[str, LockedBundle]:
        """Every locked bundle by key: ``"churn"``, ``"churn.canary"``, ``"churn.shadow"``."""
        found: dict[str, LockedBundle] = {}
        for name, model in self.models.items():
            found[name] = model
            if model.canary is not None:
                found[f"{name}.canary"] = model.canary
            if model.shadow is not None:
                found[f"{name}.shadow"] = model.shadow
        return found


# -- registry configs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfiguredBundle:
    """One bundle a registry config names: a model's primary, canary or shadow.

    Attributes:
        name: the model's name.
        variant: which of the model's bundles it is.
        path: where it is, relative paths resolved against the config's directory.
        table: its table as written.
        options: the load options it gives :func:`modelkit.load` (``batching`` as a
            :class:`~modelkit.Batching`), without ``path`` and ``weight``.
    """

    name: str
    variant: Variant
    path: Path
    table: BundleConfig
    options: Mapping[str, Any]

    @property
    def key(self) -> str:
        """How messages and lock files name it: ``churn``, ``churn.canary``."""
        return self.name if self.variant == "primary" else f"{self.name}.{self.variant}"

    @property
    def weight(self) -> float:
        """A canary's share of traffic (0 for the other variants)."""
        return self.table.weight if isinstance(self.table, CanaryConfig) else 0.0


@dataclass(frozen=True)
class RegistryConfig:
    """A registry config, read and checked (see :func:`read_config`).

    Attributes:
        models: each model's table, by name, in the order written.
        base: what relative bundle paths start from.
        label: how messages name the config (``registry config 'models.toml'``).
        bundles: every bundle it names, model by model: primary, canary, shadow.
    """

    models: Mapping[str, ModelConfig]
    base: Path
    label: str
    bundles: tuple[ConfiguredBundle, ...]

    def document(self) -> dict[str, Any]:
        """The config as a mapping with absolute bundle paths, which reads the same wherever
        it is read from (configs from several directories can be merged this way)."""
        models: dict[str, Any] = {}
        for name, entry in self.models.items():
            table = entry.model_dump(exclude_none=True)
            for bundle in (table, table.get("canary"), table.get("shadow")):
                if bundle is not None:
                    bundle["path"] = os.fspath(resolve(bundle["path"], self.base))
            models[name] = table
        return {"models": models}


def read_config(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    label: str | None = None,
) -> RegistryConfig:
    """Read and check a registry config, without loading any bundle.

    Args:
        source: a TOML file, or a mapping of the same structure.
        base_dir: what relative bundle paths start from: by default the file's directory, or
            the working directory for a mapping.
        label: how messages name the config (by default ``registry config`` and the path).

    Raises:
        BundleError: the file is missing or unreadable.
        ValueError: the file is not TOML; or an unknown key, a weight outside 0..1, invalid
            batching options, a malformed model name (the message names the model and the
            key, ``models.churn.canary.weight``).
    """
    if isinstance(source, Mapping):
        document: Any = source
        base, default_label = Path.cwd(), "registry config"
    else:
        path = Path(os.fspath(source))
        document = read_toml(path, "registry config")
        base, default_label = path.parent, f"registry config {str(path)!r}"
    if base_dir is not None:
        base = Path(os.fspath(base_dir))
    parsed: _Document = _validated(_Document, _expand_shorthand(document), label or default_label)
    bundles = []
    for name, entry in parsed.models.items():
        check_name(name)
        for variant, table in entry.variants():
            bundles.append(
                ConfiguredBundle(
                    name, variant, resolve(table.path, base), table, _load_options(table)
                )
            )
    return RegistryConfig(parsed.models, base, label or default_label, tuple(bundles))


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file's document; ``what`` names the file in messages (``registry config``).

    Raises:
        BundleError: the file is missing or unreadable.
        ValueError: it is not valid TOML.
    """
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


def check_name(name: object) -> None:
    """Refuse a model name a registry cannot serve (URLs and lock files carry it).

    Raises:
        ValueError: not 1-100 letters, digits, ``.``, ``_`` and ``-``, starting with a letter
            or digit.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"A model's name must be 1-100 letters, digits, '.', '_' and '-', got {name!r}."
        )


def resolve(path: str | os.PathLike[str], base: Path) -> Path:
    """``path`` (``~`` expanded) as it is when absolute, else relative to ``base``."""
    resolved = Path(os.fspath(path)).expanduser()
    return resolved if resolved.is_absolute() else base / resolved


def _expand_shorthand(document: Any) -> Any:
    """``{"models": {"churn": "path"}}`` as ``{"models": {"churn": {"path": "path"}}}``."""
    if not isinstance(document, Mapping) or not isinstance(document.get("models"), Mapping):
        return document
    models = {
        name: {"path": os.fspath(entry)} if isinstance(entry, str | os.PathLike) else entry
        for name, entry in document["models"].items()
    }
    return {**document, "models": models}


def _load_options(table: BundleConfig) -> dict[str, Any]:
    options = table.model_dump(exclude_none=True, exclude={"path", "weight", "canary", "shadow"})
    if isinstance(options.get("batching"), dict):
        try:
            options["batching"] = Batching(**options["batching"])
        except TypeError as exc:
            raise ValueError(f"Invalid batching options {options['batching']}: {exc}") from exc
    return options


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
            elif error["type"] == "value_error":  # our own validators: their message as is
                message = str(error.get("ctx", {}).get("error", message))
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


# -- lock files ---------------------------------------------------------------------------------


def read_lock(source: str | os.PathLike[str] | Mapping[str, Any]) -> Lock:
    """Read and check a lock file (or its structure as a mapping); digests come normalized.

    Raises:
        BundleError: the file is missing or unreadable.
        ValueError: it is not TOML, or not a lock file (the message names the key).
    """
    if isinstance(source, Mapping):
        return _validated(Lock, source, "lock file")  # type: ignore[no-any-return]
    path = Path(os.fspath(source))
    lock: Lock = _validated(Lock, read_toml(path, "lock file"), f"lock file {str(path)!r}")
    return lock


def format_lock(lock: Mapping[str, Any]) -> str:
    """A lock structure (``{"lock_version": 1, "models": {...}}``) as the text of a lock file.

    Raises:
        ValueError: the structure is not a lock file's.
    """
    parsed: Lock = _validated(Lock, lock, "lock file")
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


def pins_of(lock: Lock, config: RegistryConfig) -> dict[str, str]:
    """The digest each bundle of ``config`` must have, by key (``churn``, ``churn.canary``).

    Raises:
        IntegrityError: a configured bundle is not in the lock file.
    """
    locked = lock.bundles()
    pins: dict[str, str] = {}
    for bundle in config.bundles:
        pinned = locked.get(bundle.key)
        if pinned is None:
            raise IntegrityError(
                f"models.{bundle.key} is not in the lock file: regenerate the lock file after "
                "changing the config.",
                path=bundle.table.path,
            )
        pins[bundle.key] = pinned.sha256
    return pins


def pin_conflict(key: str, configured: str, locked: str) -> IntegrityError:
    """The error for a bundle the config and the lock file pin to different digests."""
    return IntegrityError(
        f"models.{key}: the config pins {configured} but the lock file pins {locked}.",
        expected=locked,
        actual=configured,
    )


def pin_mismatch(
    key: str,
    path: str | os.PathLike[str],
    found: str,
    pinned: str,
    *,
    pinned_by: Literal["config", "lock file"] = "config",
) -> IntegrityError:
    """The error for a bundle whose digest is not the one its config or lock file pins."""
    return IntegrityError(
        f"models.{key}: the bundle {os.fspath(path)!r} has digest {found}, but the {pinned_by} "
        f"pins {pinned}.",
        path=os.fspath(path),
        expected=pinned,
        actual=found,
    )


def relative_path(path: str | os.PathLike[str], base: Path) -> str:
    """``path`` relative to ``base`` with POSIX separators (as lock files hold paths), or
    absolute when it cannot be (another drive)."""
    # abspath, not resolve: a bundle path may be a symbolic link on purpose (current -> 1.4.0).
    absolute = os.path.abspath(os.fspath(path))
    try:
        return Path(os.path.relpath(absolute, os.path.abspath(base))).as_posix()
    except ValueError:  # another drive on Windows
        return absolute


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
