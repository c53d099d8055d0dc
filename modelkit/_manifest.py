"""The manifest, ``modelkit.json``: what a bundle says about itself, and the digest that pins it.

The pydantic models validate a manifest strictly; its canonical JSON (keys sorted, no whitespace)
is what is validated and hashed, so a bundle's digest depends on what the manifest says and not
on how it is written. The manifest lists every artifact's sha256, so its digest pins every byte.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
)

from ._spec import Signature, Task
from .errors import BundleError

__all__ = [
    "ARTIFACTS_DIR",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "MAX_BUNDLE_ENTRIES",
    "MAX_MANIFEST_BYTES",
    "Artifact",
    "Environment",
    "Manifest",
    "check_relative_path",
    "normalize_digest",
    "parse_manifest",
]

FORMAT_VERSION: Literal[1] = 1
MANIFEST_NAME = "modelkit.json"
ARTIFACTS_DIR = "artifacts"
# A manifest is a few kilobytes; a cap keeps a hostile one from exhausting memory or the parser.
MAX_MANIFEST_BYTES = 1024 * 1024
# A 1 MiB manifest can list fewer than 10,000 artifacts, so a bundle with more entries cannot be
# valid: stop listing there instead of walking millions of files.
MAX_BUNDLE_ENTRIES = 10_000
# Python's `re` lets `$` match before a trailing newline; `fullmatch` does not.
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DISTRIBUTION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?")


class Artifact(BaseModel):
    """One file of a bundle: its path inside the bundle, sha256 and size in bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    sha256: str
    size: int = Field(ge=0)

    @field_validator("path")
    @classmethod
    def _path_stays_inside(cls, value: str) -> str:
        return check_relative_path(value)

    @field_validator("sha256")
    @classmethod
    def _is_hex_digest(cls, value: str) -> str:
        if not _HEX64.fullmatch(value):
            raise ValueError("must be 64 lowercase hexadecimal characters")
        return value


def check_relative_path(value: str) -> str:
    """Return ``value`` if it is a safe path inside ``artifacts/``; raise ``ValueError`` if not."""
    pure = PurePosixPath(value)
    if (
        not value
        or "\\" in value
        or "\x00" in value
        or pure.is_absolute()
        or re.match(r"[A-Za-z]:", value)
        or any(part in ("..", ".", "") for part in value.split("/"))
    ):
        raise ValueError(f"{value!r} is not a plain relative path inside the bundle")
    if pure.parts[0] != ARTIFACTS_DIR or len(pure.parts) < 2:
        raise ValueError(f"{value!r} is not under {ARTIFACTS_DIR}/")
    return value


class Environment(BaseModel):
    """Where a bundle was saved: the Python version and the packages the adapter needs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    python: str = Field(max_length=50)
    packages: dict[str, str] = Field(default_factory=dict, max_length=1000)

    @field_validator("packages")
    @classmethod
    def _names_are_distributions(cls, value: dict[str, str]) -> dict[str, str]:
        for name, version in value.items():
            if not _DISTRIBUTION.fullmatch(name) or not version or len(version) > 100:
                raise ValueError(f"{name!r}: {version!r} is not a distribution and its version")
        return value


class Manifest(BaseModel):
    """The description of a bundle (``modelkit.json``), validated before anything is loaded.

    A manifest read from a bundle is validated in pydantic's strict mode: ``"size": "96417"``,
    ``"format_version": true`` or ``"created_at": 0`` are errors, not values to convert.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: Literal[1] = FORMAT_VERSION
    name: str = Field(min_length=1, max_length=200)
    version: str = Field(min_length=1, max_length=100)
    format: str = Field(min_length=1, max_length=100)
    task: Task
    signature: Signature
    artifacts: tuple[Artifact, ...]
    environment: Environment
    created_at: AwareDatetime
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    adapter: dict[str, JsonValue] = Field(default_factory=dict)
    profile: dict[str, JsonValue] | None = None

    @field_validator("format_version", mode="before")
    @classmethod
    def _is_an_integer(cls, value: object) -> object:
        # A Literal compares by equality, and true == 1.0 == 1 in Python.
        if type(value) is not int:
            raise ValueError(f"must be the integer {FORMAT_VERSION}")
        return value

    @field_validator("artifacts")
    @classmethod
    def _paths_are_unique(cls, value: tuple[Artifact, ...]) -> tuple[Artifact, ...]:
        paths = [artifact.path for artifact in value]
        if len(set(paths)) != len(paths):
            raise ValueError("lists the same artifact twice")
        return value

    @property
    def classes(self) -> list[Any] | None:
        """A classifier's classes, in the order of its probability columns."""
        classes = self.signature.outputs.classes
        return None if classes is None else list(classes)


def parse_manifest(raw: bytes, label: str) -> tuple[Manifest, str]:
    """Validate manifest bytes; return the manifest and the bundle's digest.

    The digest is computed here, from the manifest alone, so that a pin can be checked before
    any artifact is opened. What pydantic validates is the canonical JSON that is hashed.

    Raises:
        BundleError: the bytes are not a valid manifest of a supported format version.
    """
    try:
        document = json.loads(
            raw.decode("utf-8"),
            parse_constant=_refuse_constant,
            object_pairs_hook=_refuse_duplicate_keys,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, NaN/Infinity and integers too long to convert.
        raise BundleError(
            f"The manifest of {label!r} is not valid JSON: {exc}", path=MANIFEST_NAME
        ) from None
    if not isinstance(document, dict):
        raise BundleError(f"The manifest of {label!r} is not a JSON object.", path=MANIFEST_NAME)
    version = document.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise BundleError(
            f"Bundle {label!r} has format_version {version}, but this modelkit reads up to "
            f"{FORMAT_VERSION}. Upgrade modelkit to load it.",
            path=MANIFEST_NAME,
        )
    canonical = _canonical_json(document, label)
    try:
        # Strict: JSON types are not converted ("1" is not an integer, 0 is not a datetime).
        manifest = Manifest.model_validate_json(canonical, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise BundleError(
            f"The manifest of {label!r} is invalid: {where}: {first['msg']}{more}.",
            path=MANIFEST_NAME,
        ) from None
    return manifest, "sha256:" + hashlib.sha256(canonical).hexdigest()


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Parsers disagree on which of two equal keys wins; a manifest must mean one thing to all.
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"the key {key!r} appears twice in one object")
        document[key] = value
    return document


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's parser accepts them unless told otherwise.
    raise ValueError(f"{name} is not a JSON value")


def _canonical_json(document: Any, label: str) -> bytes:
    """The manifest's canonical JSON: keys sorted, no whitespace, UTF-8.

    The manifest lists every artifact's sha256, so its hash pins every byte; canonical JSON makes
    the digest depend on what the manifest says, not on its whitespace or key order.
    """
    try:
        return json.dumps(
            document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except UnicodeEncodeError as exc:
        # JSON's \ud800 escape parses to a lone surrogate, which is not Unicode text.
        raise BundleError(
            f"The manifest of {label!r} is invalid: it holds a lone surrogate "
            f"({exc.object[exc.start : exc.end]!a}), which is not a Unicode character.",
            path=MANIFEST_NAME,
        ) from None
    except (ValueError, RecursionError) as exc:
        # A number such as 1e999 parses to infinity, which JSON cannot hold.
        raise BundleError(
            f"The manifest of {label!r} is invalid: {exc}.", path=MANIFEST_NAME
        ) from None


def normalize_digest(value: str) -> str:
    """Accept ``"sha256:<hex>"`` or a bare hex digest; return the prefixed lowercase form."""
    text = value.strip().lower()
    hexdigest = text.removeprefix("sha256:")
    if not _HEX64.fullmatch(hexdigest):
        raise ValueError(f"{value!r} is not a sha256 digest (expected 'sha256:' and 64 hex digits)")
    return "sha256:" + hexdigest
