"""Bundles: a model's artifacts plus the manifest that describes and pins them.

A bundle is a directory (or a ``.zip`` of one)::

    churn/
      modelkit.json      the manifest, written last
      artifacts/...      the adapter's files

Everything read from a bundle is untrusted until checked. The manifest is size-capped, validated
strictly and, when the caller pinned a digest, compared with the pin before any artifact is
opened; the declared sizes must fit a size budget; the file list must match the manifest exactly;
and every artifact's size and sha256 are checked on the bytes read into memory, which are then the
only bytes any deserializer sees. Files are read in bounded chunks, never beyond the size the
manifest declares, and directory bundles are opened relative to a directory descriptor without
following a link at any level.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import operator
import os
import re
import shutil
import stat
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
)

from ._signature import Signature, Task
from .errors import BundleError, IntegrityError

__all__ = [
    "DEFAULT_MAX_BUNDLE_SIZE",
    "MANIFEST_NAME",
    "Artifact",
    "Artifacts",
    "Environment",
    "Manifest",
    "VerifiedBundle",
    "digest",
    "open_bundle",
]

FORMAT_VERSION: Literal[1] = 1
MANIFEST_NAME = "modelkit.json"
ARTIFACTS_DIR = "artifacts"
# A manifest is a few kilobytes; a cap keeps a hostile one from exhausting memory or the parser.
MAX_MANIFEST_BYTES = 1024 * 1024
# The total of the artifact sizes a manifest may declare unless the caller says otherwise. An
# ONNX model is at most 2 GiB (protobuf's limit) and loading holds every artifact in memory, so a
# bundle declaring more is refused before anything is read.
DEFAULT_MAX_BUNDLE_SIZE = 2 * 1024**3
# A 1 MiB manifest can list fewer than 10,000 artifacts, so a bundle with more entries cannot be
# valid: stop listing there instead of walking millions of files.
MAX_BUNDLE_ENTRIES = 10_000
# Python's `re` lets `$` match before a trailing newline; `fullmatch` does not.
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DISTRIBUTION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?")
_CHUNK = 1024 * 1024


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


# --------------------------------------------------------------------------------------------
# Sources: where bundle bytes come from
# --------------------------------------------------------------------------------------------


class _Source:
    """Read-only access to the files of one bundle, with the checks each kind of storage needs."""

    label: str
    # What reading one file may raise, reported as a bad bundle naming the file.
    read_errors: tuple[type[Exception], ...] = (OSError,)

    def files(self) -> dict[str, int]:
        """Every file in the bundle (relative POSIX path -> size, or -1 when unknown).

        Refuses links, special files and names that escape the bundle.
        """
        raise NotImplementedError

    def open(self, relative: str) -> IO[bytes]:
        """A binary reader over one regular file of the bundle, as listed."""
        raise NotImplementedError

    def read_failed(self, relative: str, exc: Exception) -> BundleError:
        """The error for ``exc``, raised while reading ``relative``."""
        return BundleError(
            f"Cannot read {relative!r} in bundle {self.label!r}: {exc}", path=relative
        )


def _too_many_entries(label: str) -> BundleError:
    return BundleError(
        f"Bundle {label!r} holds more than {MAX_BUNDLE_ENTRIES} files and directories; a "
        "manifest cannot list that many, so it is not a modelkit bundle.",
        path=label,
    )


# Directory bundles. Where the platform allows (Linux, macOS, the BSDs), every file is opened
# relative to its parent directory's descriptor, one component at a time, each with O_NOFOLLOW:
# a component swapped for a link after the listing fails to open instead of leading elsewhere.
# O_NONBLOCK keeps a FIFO swapped in from blocking the open; fstat then refuses it.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_AT_SUPPORTED = (
    os.open in os.supports_dir_fd
    and os.stat in os.supports_dir_fd
    and os.scandir in os.supports_fd
    and bool(_NOFOLLOW)
    and hasattr(os, "O_DIRECTORY")
)
# A component that is not what the listing saw: a link (ELOOP; EMLINK on some BSDs), a file where
# a directory was (ENOTDIR), gone (ENOENT), or a socket (ENXIO).
_CHANGED = {errno.ELOOP, errno.EMLINK, errno.ENOTDIR, errno.ENOENT, errno.ENXIO}

_Directory = int | str  # a directory descriptor, or a path where descriptors are not supported


class _DirectorySource(_Source):
    def __init__(self, root: _Directory, label: str) -> None:
        self.root = root
        self.label = label

    def _open_at(self, parent: _Directory, name: str, flags: int) -> int:
        if isinstance(parent, int):
            return os.open(name, flags | _NOFOLLOW, dir_fd=parent)
        # Without openat (Windows): check that the name is not a link, then open it by path.
        # A swap between the two is not caught here; see docs/security.md.
        path = os.path.join(parent, name)
        if _is_link(os.lstat(path)):
            raise OSError(errno.ELOOP, "is a link", path)
        return os.open(path, flags)

    def _enter(self, parent: _Directory, name: str) -> _Directory:
        if isinstance(parent, int):
            return self._open_at(parent, name, _OPEN_FLAGS | os.O_DIRECTORY)
        child = os.path.join(parent, name)
        info = os.lstat(child)
        if _is_link(info) or not stat.S_ISDIR(info.st_mode):
            raise OSError(errno.ENOTDIR, "is not a directory", child)
        return child

    def _entry_error(self, relative: str, info: os.stat_result) -> IntegrityError | None:
        if _is_link(info):
            return IntegrityError(
                f"Bundle {self.label!r} contains a symbolic link, {relative!r}; bundles hold "
                "regular files only.",
                path=relative,
            )
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            return IntegrityError(
                f"Bundle {self.label!r} contains {relative!r}, which is not a regular file.",
                path=relative,
            )
        return None

    def files(self) -> dict[str, int]:
        found: dict[str, int] = {}
        entries = 0
        pending: list[tuple[str, _Directory]] = [("", self.root)]
        try:
            while pending:
                prefix, directory = pending.pop()
                try:
                    with os.scandir(directory) as listing:
                        for entry in listing:
                            entries += 1
                            if entries > MAX_BUNDLE_ENTRIES:
                                raise _too_many_entries(self.label)
                            relative = prefix + entry.name
                            info = entry.stat(follow_symlinks=False)
                            problem = self._entry_error(relative, info)
                            if problem is not None:
                                raise problem
                            if stat.S_ISDIR(info.st_mode):
                                child = self._enter_listed(directory, entry.name, relative)
                                pending.append((relative + "/", child))
                            else:
                                found[relative] = info.st_size
                finally:
                    if isinstance(directory, int) and directory != self.root:
                        os.close(directory)
        except OSError as exc:
            raise BundleError(
                f"Cannot list bundle {self.label!r}: {exc.strerror or exc}.", path=self.label
            ) from exc
        finally:
            for _prefix, directory in pending:
                if isinstance(directory, int):
                    os.close(directory)
        return found

    def _enter_listed(self, parent: _Directory, name: str, relative: str) -> _Directory:
        try:
            return self._enter(parent, name)
        except OSError as exc:
            if exc.errno in _CHANGED:
                raise _changed(self.label, relative) from exc
            raise

    def open(self, relative: str) -> IO[bytes]:
        parts = relative.split("/")
        opened: list[int] = []
        directory = self.root
        try:
            for depth, part in enumerate(parts[:-1]):
                try:
                    directory = self._enter(directory, part)
                except OSError as exc:
                    if exc.errno in _CHANGED:
                        raise _changed(self.label, "/".join(parts[: depth + 1])) from exc
                    raise
                if isinstance(directory, int):
                    opened.append(directory)
            try:
                fd = self._open_at(directory, parts[-1], _OPEN_FLAGS)
            except OSError as exc:
                if exc.errno in _CHANGED:
                    raise _changed(self.label, relative) from exc
                raise
        finally:
            for descriptor in opened:
                os.close(descriptor)
        return _regular_file(fd, self.label, relative)


def _is_link(info: os.stat_result) -> bool:
    # On Windows, junctions and other reparse points lead elsewhere as links do.
    return stat.S_ISLNK(info.st_mode) or bool(getattr(info, "st_reparse_tag", 0))


def _changed(label: str, relative: str) -> IntegrityError:
    return IntegrityError(
        f"{relative!r} in bundle {label!r} changed while the bundle was read: it is now a link, "
        "missing, or not a regular file or directory. Bundles hold regular files only.",
        path=relative,
    )


def _regular_file(fd: int, label: str, relative: str) -> IO[bytes]:
    """A reader over ``fd`` if it is a regular file; closes it and refuses anything else."""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise IntegrityError(
                f"{relative!r} in bundle {label!r} is not a regular file (it changed after the "
                "bundle was listed). Bundles hold regular files only.",
                path=relative,
            )
        _set_blocking(fd)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


# zipfile reads deflate with the output of each call bounded; its bzip2 and LZMA readers
# decompress a whole compressed chunk at once (bzip2 turns 200 bytes into 256 MiB), so a
# declared size could not bound them.
_ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_ZIP_READ_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    OSError,
    EOFError,
    ValueError,
    RuntimeError,  # also NotImplementedError: an unsupported method
    zlib.error,
)


class _ZipSource(_Source):
    read_errors = _ZIP_READ_ERRORS

    def __init__(self, archive: zipfile.ZipFile, label: str, *, within: str | None = None) -> None:
        """Check the members of ``archive`` that make up the bundle.

        Args:
            archive: the open archive.
            label: what to call it in messages.
            within: the bundle's directory inside a larger archive (package data in a wheel or
                zipapp); members outside it are not the bundle's and are ignored. ``None`` when
                the archive is the bundle.
        """
        self.archive = archive
        self.label = label
        self._members: dict[str, zipfile.ZipInfo] = {}
        infos = archive.infolist()
        if within is None:
            self.prefix = _zip_prefix([info.filename for info in infos], label)
        else:
            self.prefix = within
            infos = [info for info in infos if info.filename.startswith(within)]
        if len(infos) > MAX_BUNDLE_ENTRIES:
            raise _too_many_entries(label)
        for info in infos:
            name = info.filename
            _check_zip_member(info, label)
            if info.is_dir():
                continue
            if not name.startswith(self.prefix):
                raise IntegrityError(
                    f"Archive {label!r} has {name!r} outside its bundle directory.", path=name
                )
            relative = name[len(self.prefix) :]
            if relative in self._members:
                raise IntegrityError(f"Archive {label!r} holds {relative!r} twice.", path=relative)
            self._members[relative] = info

    def files(self) -> dict[str, int]:
        return {name: info.file_size for name, info in self._members.items()}

    def open(self, relative: str) -> IO[bytes]:
        info = self._members.get(relative)
        if info is None:
            raise BundleError(f"{relative!r} is missing from {self.label!r}.", path=relative)
        return self.archive.open(info)

    def read_failed(self, relative: str, exc: Exception) -> BundleError:
        return IntegrityError(
            f"Cannot read {relative!r} from archive {self.label!r}: {type(exc).__name__}: {exc}. "
            "The archive is corrupt.",
            path=relative,
        )


def _check_zip_member(info: zipfile.ZipInfo, label: str) -> None:
    """Refuse a member whose name escapes, that is a link, or that cannot be read boundedly."""
    name = info.filename
    if name.startswith("/") or "\\" in name or re.match(r"[A-Za-z]:", name):
        raise IntegrityError(
            f"Archive {label!r} has a member with an absolute path, {name!r}.", path=name
        )
    if any(part == ".." for part in name.split("/")):
        raise IntegrityError(
            f"Archive {label!r} has a member that escapes the bundle, {name!r}.", path=name
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        raise IntegrityError(
            f"Archive {label!r} contains a symbolic link, {name!r}; bundles hold regular files "
            "only.",
            path=name,
        )
    if info.is_dir():
        return
    if info.flag_bits & 0x1:
        raise BundleError(f"Archive {label!r} has an encrypted member, {name!r}.", path=name)
    if info.compress_type not in _ZIP_METHODS:
        raise BundleError(
            f"Archive {label!r} compresses {name!r} with method {info.compress_type}; bundle "
            "members are stored or deflated (as modelkit.save and zip -r write them).",
            path=name,
        )


def _zip_prefix(names: list[str], label: str) -> str:
    if MANIFEST_NAME in names:
        return ""
    manifests = [n for n in names if n.endswith("/" + MANIFEST_NAME) and n.count("/") == 1]
    if len(manifests) == 1:
        return manifests[0][: -len(MANIFEST_NAME)]
    raise BundleError(
        f"Archive {label!r} is not a bundle: expected {MANIFEST_NAME} at its root or in one "
        "top-level directory.",
        path=label,
    )


class _TraversableSource(_Source):
    """Package data through ``importlib.resources`` (other than a zip, which has its own)."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.label = str(root)

    def files(self) -> dict[str, int]:
        found: dict[str, int] = {}
        entries = 0
        stack: list[tuple[str, Any]] = [("", self.root)]
        while stack:
            prefix, node = stack.pop()
            for child in node.iterdir():
                entries += 1
                if entries > MAX_BUNDLE_ENTRIES:
                    raise _too_many_entries(self.label)
                relative = prefix + child.name
                if isinstance(child, os.PathLike) and os.path.islink(child):
                    raise IntegrityError(
                        f"Bundle {self.label!r} contains a symbolic link, {relative!r}; bundles "
                        "hold regular files only.",
                        path=relative,
                    )
                if child.is_dir():
                    stack.append((relative + "/", child))
                else:
                    # Sizes come from reading; Traversable has no stat(). Reads are bounded.
                    found[relative] = -1
        return found

    def open(self, relative: str) -> IO[bytes]:
        node = self.root
        for part in relative.split("/"):
            node = node.joinpath(part)
        handle: IO[bytes] = node.open("rb")
        return handle


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------


class Artifacts(Mapping[str, bytes]):
    """The verified bytes of a bundle's artifacts, keyed by path relative to ``artifacts/``.

    Adapters deserialize from these bytes only, so what was hashed is exactly what is loaded.
    """

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self._files = dict(files)

    def __getitem__(self, name: str) -> bytes:
        try:
            return self._files[name]
        except KeyError:
            raise BundleError(
                f"The bundle has no artifact {name!r} (artifacts: {sorted(self._files)}).",
                path=f"{ARTIFACTS_DIR}/{name}",
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def open(self, name: str) -> IO[bytes]:
        """A read-only binary file object over one artifact's verified bytes."""
        return io.BytesIO(self[name])


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose manifest, file list, sizes and hashes have all been checked.

    ``artifacts`` is empty when the bundle was only verified (``open_bundle(read=False)``).
    """

    label: str
    manifest: Manifest
    artifacts: Artifacts
    digest: str


@dataclass(frozen=True)
class _Read:
    data: bytes | None  # None when only hashed
    size: int
    sha256: str


def _read(source: _Source, relative: str, limit: int, *, keep: bool) -> _Read:
    """Read at most ``limit + 1`` bytes of one file of ``source`` (see :func:`_consume`)."""
    try:
        with source.open(relative) as handle:
            return _consume(handle, limit, keep=keep)
    except source.read_errors as exc:
        raise source.read_failed(relative, exc) from exc


def _consume(handle: IO[bytes], limit: int | None, *, keep: bool) -> _Read:
    """Read at most ``limit + 1`` bytes (all of them if ``limit`` is None) in bounded chunks,
    hashing them on the way.

    One byte past ``limit`` shows the file is longer than allowed without reading the rest, and
    nothing is allocated for bytes that are not there. With ``keep`` the bytes are kept, in one
    buffer that grows as they arrive; without, only their hash is.
    """
    hasher = hashlib.sha256()
    kept = io.BytesIO() if keep else None
    size = 0
    while limit is None or size <= limit:
        chunk = handle.read(_CHUNK if limit is None else min(_CHUNK, limit + 1 - size))
        if not chunk:
            break
        size += len(chunk)
        hasher.update(chunk)
        if kept is not None:
            kept.write(chunk)
    # getvalue() hands over BytesIO's buffer without copying it.
    return _Read(None if kept is None else kept.getvalue(), size, hasher.hexdigest())


def _manifest_bytes(source: _Source, files: Mapping[str, int]) -> bytes:
    if MANIFEST_NAME not in files:
        raise BundleError(
            f"{source.label!r} is not a modelkit bundle: it has no {MANIFEST_NAME}. Save one with "
            "modelkit.save(), or load a bare .onnx file.",
            path=MANIFEST_NAME,
        )
    raw = _read(source, MANIFEST_NAME, MAX_MANIFEST_BYTES, keep=True).data
    assert raw is not None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise BundleError(
            f"The manifest of {source.label!r} is larger than {MAX_MANIFEST_BYTES} bytes; "
            "it is not a modelkit manifest.",
            path=MANIFEST_NAME,
        )
    return raw


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


def _check_pin(label: str, found: str, pinned: str | None) -> None:
    # Compared before anything is deserialized: a pinned digest is the strongest check we have.
    if pinned is not None and found != pinned:
        raise IntegrityError(
            f"Bundle {label!r} has digest {found}, not the pinned {pinned}. "
            "It is a different model: re-pin it after checking where it came from.",
            path=label,
            expected=pinned,
            actual=found,
        )


def _too_large(label: str, what: str, max_size: int) -> BundleError:
    return BundleError(
        f"{label!r} {what}; the size limit is {max_size} bytes ({_in_units(max_size)}). If this "
        "is the model you expect, raise the limit: max_bundle_size= for load and digest, "
        "--max-size for modelkit verify.",
        path=label,
    )


def _in_units(size: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


def verify_source(
    source: _Source, *, pinned: str | None = None, max_size: int | None, read: bool = True
) -> VerifiedBundle:
    """Check a bundle completely and return its manifest and verified artifact bytes.

    The order matters: the manifest and the pin are checked before any artifact is opened, and
    the declared sizes against the budget before any is read.
    """
    present = source.files()
    manifest, bundle_digest = parse_manifest(_manifest_bytes(source, present), source.label)
    _check_pin(source.label, bundle_digest, pinned)
    declared = sum(artifact.size for artifact in manifest.artifacts)
    if max_size is not None and declared > max_size:
        raise _too_large(source.label, f"declares {declared} bytes of artifacts", max_size)
    listed = {artifact.path: artifact for artifact in manifest.artifacts}
    present.pop(MANIFEST_NAME, None)
    unlisted = sorted(set(present) - set(listed))
    if unlisted:
        raise IntegrityError(
            f"Bundle {source.label!r} contains {unlisted[0]!r}, which its manifest does not list. "
            "A bundle holds exactly the files its manifest names.",
            path=unlisted[0],
        )
    missing = sorted(set(listed) - set(present))
    if missing:
        raise IntegrityError(
            f"Bundle {source.label!r} is missing {missing[0]!r}, which its manifest lists.",
            path=missing[0],
        )
    for path, artifact in listed.items():
        if present[path] not in (-1, artifact.size):
            raise IntegrityError(
                f"{path!r} in bundle {source.label!r} is {present[path]} bytes; the manifest "
                f"says {artifact.size}. The file was changed or truncated.",
                path=path,
                expected=str(artifact.size),
                actual=str(present[path]),
            )
    files: dict[str, bytes] = {}
    for path, artifact in listed.items():
        found = _read(source, path, artifact.size, keep=read)
        if found.size != artifact.size:
            raise IntegrityError(
                f"{path!r} in bundle {source.label!r} is "
                f"{'longer' if found.size > artifact.size else f'{found.size} bytes'}; the "
                f"manifest says {artifact.size}. The file was changed or truncated.",
                path=path,
                expected=str(artifact.size),
                actual=str(found.size),
            )
        if found.sha256 != artifact.sha256:
            raise IntegrityError(
                f"{path!r} in bundle {source.label!r} does not match its sha256 in the manifest "
                f"(expected {artifact.sha256}, got {found.sha256}). The file was changed.",
                path=path,
                expected=artifact.sha256,
                actual=found.sha256,
            )
        if found.data is not None:
            files[path[len(ARTIFACTS_DIR) + 1 :]] = found.data
    return VerifiedBundle(source.label, manifest, Artifacts(files), bundle_digest)


# --------------------------------------------------------------------------------------------
# Opening paths
# --------------------------------------------------------------------------------------------

BundleKind = Literal["bundle", "onnx", "pickle"]
_PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")


@dataclass(frozen=True)
class Opened:
    """What a path turned out to be: a verified bundle, or a bare model file's bytes.

    ``digest`` is the bundle's digest, or a bare file's ``"sha256:<hex>"``. ``data`` holds a bare
    file's bytes, unless it was only verified (``open_bundle(read=False)``).
    """

    kind: BundleKind
    label: str
    digest: str
    bundle: VerifiedBundle | None = None
    data: bytes | None = None


@dataclass(frozen=True)
class _Options:
    pinned: str | None
    max_size: int | None
    read: bool


def open_bundle(
    path: Any,
    *,
    sha256: str | None = None,
    max_bundle_size: int | None = DEFAULT_MAX_BUNDLE_SIZE,
    read: bool = True,
) -> Opened:
    """Open and verify whatever ``path`` names: a bundle directory, a ``.zip``, package data,
    or a bare ``.onnx`` or pickle file (read, not deserialized).

    Args:
        path: anything :func:`modelkit.load` accepts.
        sha256: the digest it must have, normalized (:func:`normalize_digest`); a bundle's is
            compared right after its manifest is parsed, before any artifact is opened.
        max_bundle_size: the most bytes of artifacts a bundle may declare (or a bare file
            hold); ``None`` for no limit.
        read: keep the artifacts' bytes, to load them; ``False`` only hashes them, in chunks.

    Raises:
        BundleError: the path does not exist, is not a bundle, or is larger than
            ``max_bundle_size``.
        IntegrityError: the bundle fails verification, or its digest is not ``sha256``.
    """
    options = _Options(sha256, _checked_max_size(max_bundle_size), read)
    if isinstance(path, str | os.PathLike):
        return _open_path(Path(os.fspath(path)), options)
    if isinstance(path, zipfile.Path):
        return _open_zip_path(path, options)
    if hasattr(path, "iterdir") and hasattr(path, "open") and hasattr(path, "is_dir"):
        return _open_traversable(path, options)
    raise BundleError(
        f"Cannot load from a {type(path).__name__}: expected a path to a bundle directory, a .zip "
        "bundle or an .onnx file, or an importlib.resources Traversable."
    )


def _checked_max_size(value: int | None) -> int | None:
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        size = operator.index(value)  # an int, or a numpy integer
    except TypeError:
        raise TypeError(
            f"max_bundle_size must be a number of bytes or None, got {value!r}"
        ) from None
    if size < 0:
        raise ValueError(f"max_bundle_size must be at least 0, got {size}")
    return size


def _verified(label: str, source: _Source, options: _Options) -> Opened:
    bundle = verify_source(
        source, pinned=options.pinned, max_size=options.max_size, read=options.read
    )
    return Opened("bundle", label, bundle.digest, bundle=bundle)


def _open_path(path: Path, options: _Options) -> Opened:
    label = str(path)
    if not _AT_SUPPORTED and path.is_dir():
        return _verified(label, _DirectorySource(str(path), label), options)
    try:
        # The bundle's own path may be a link (current -> churn-1.4.0): it is followed here,
        # and nowhere inside. O_NONBLOCK: a FIFO at the path must not block; fstat refuses it.
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise BundleError(f"No bundle at {label!r}: the path does not exist.", path=label) from None
    except OSError as exc:
        raise BundleError(f"Cannot open {label!r}: {exc.strerror}.", path=label) from None
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(os.close, fd)
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            return _verified(label, _DirectorySource(fd, label), options)
        if not stat.S_ISREG(info.st_mode):
            raise BundleError(
                f"Cannot load {label!r}: it is neither a directory nor a regular file (a FIFO, a "
                "socket or a device). Give a bundle directory, a .zip bundle or an .onnx file.",
                path=label,
            )
        try:
            _set_blocking(fd)
            handle = cleanup.enter_context(os.fdopen(fd, "rb", closefd=False))
            head = handle.read(4)
            handle.seek(0)
            if path.suffix.lower() == ".zip" or head == b"PK\x03\x04":
                return _open_zip(handle, label, options)
            return _bare_file(path.name, label, handle, info.st_size, options)
        except OSError as exc:
            raise BundleError(f"Cannot read {label!r}: {exc.strerror or exc}.", path=label) from exc


def _set_blocking(fd: int) -> None:
    # Reads from a regular file never block, but clear O_NONBLOCK so none returns EAGAIN.
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)


def _open_zip_path(node: zipfile.Path, options: _Options) -> Opened:
    """Package data inside a zipped wheel or zipapp, with the member checks of a ``.zip``."""
    label = str(node)
    archive = node.root
    at: str = node.at
    if node.is_file():
        info = _zip_member(archive, at, label)
        try:
            with archive.open(info) as handle:
                return _file_in_package(node.name, label, handle, info.file_size, options)
        except _ZIP_READ_ERRORS as exc:
            raise IntegrityError(
                f"Cannot read {label!r}: {type(exc).__name__}: {exc}. The archive is corrupt.",
                path=label,
            ) from exc
    within = at if at == "" or at.endswith("/") else at + "/"
    if not any(name.startswith(within) for name in archive.namelist()):
        raise BundleError(f"No bundle at {label!r}: the resource does not exist.", path=label)
    return _verified(label, _ZipSource(archive, label, within=within), options)


def _zip_member(archive: zipfile.ZipFile, name: str, label: str) -> zipfile.ZipInfo:
    infos = [info for info in archive.infolist() if info.filename == name]
    if len(infos) != 1:
        raise IntegrityError(f"Archive {label!r} holds {name!r} {len(infos)} times.", path=name)
    _check_zip_member(infos[0], label)
    return infos[0]


def _open_traversable(node: Any, options: _Options) -> Opened:
    label = str(node)
    if node.is_dir():
        return _verified(label, _TraversableSource(node), options)
    if not node.is_file():
        raise BundleError(f"No bundle at {label!r}: the resource does not exist.", path=label)
    try:
        with node.open("rb") as handle:
            return _file_in_package(str(node.name), label, handle, None, options)
    except OSError as exc:
        raise BundleError(f"Cannot read {label!r}: {exc.strerror or exc}.", path=label) from exc


def _file_in_package(
    name: str, label: str, handle: IO[bytes], size: int | None, options: _Options
) -> Opened:
    """A ``.zip`` bundle or a bare model file shipped as package data."""
    if not name.lower().endswith(".zip"):
        return _bare_file(name, label, handle, size, options)
    # zipfile needs to seek; a member of a zip cannot, so the archive is read into memory. It
    # holds the artifacts plus a manifest and its own headers: allow that much more.
    limit = None if options.max_size is None else options.max_size + 2 * MAX_MANIFEST_BYTES
    if size is not None and limit is not None and size > limit:
        raise _too_large(label, f"is {size} bytes", limit)
    whole = _consume(handle, limit, keep=True)
    if limit is not None and whole.size > limit:
        raise _too_large(label, f"is more than {limit} bytes", limit)
    assert whole.data is not None
    return _open_zip(io.BytesIO(whole.data), label, options)


def _bare_file(
    name: str, label: str, handle: IO[bytes], size: int | None, options: _Options
) -> Opened:
    lower = name.lower()
    kind: BundleKind
    if lower.endswith(".onnx"):
        kind = "onnx"
    elif lower.endswith(_PICKLE_SUFFIXES):
        kind = "pickle"
    else:
        raise BundleError(
            f"Cannot load {label!r}: expected a bundle directory, a .zip bundle, an .onnx file, "
            "or (with trusted=True) a .joblib/.pkl file.",
            path=label,
        )
    # No manifest: the whole file is the artifact, its hash the digest, read within the budget.
    limit = options.max_size
    if size is not None and limit is not None and size > limit:
        raise _too_large(label, f"is {size} bytes", limit)
    found = _consume(handle, limit, keep=options.read)
    if limit is not None and found.size > limit:
        raise _too_large(label, f"is more than {limit} bytes", limit)
    file_digest = "sha256:" + found.sha256
    _check_pin(label, file_digest, options.pinned)
    return Opened(kind, label, file_digest, data=found.data)


def _open_zip(file: IO[bytes], label: str, options: _Options) -> Opened:
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        # ValueError: among others, a member name flagged as UTF-8 that is not.
        raise BundleError(f"{label!r} is not a readable zip archive: {exc}.", path=label) from None
    with archive:
        return _verified(label, _ZipSource(archive, label), options)


def digest(path: Any, *, max_bundle_size: int | None = DEFAULT_MAX_BUNDLE_SIZE) -> str:
    """The digest that pins a bundle: ``"sha256:<hex>"``.

    It is computed over the manifest's canonical JSON, which lists the sha256 of every artifact,
    so it is the same for every copy of the bundle (directory or zip, on any machine) and changes
    when any artifact byte or anything the manifest says changes. The bundle is verified first,
    hashing each artifact in chunks without holding it in memory. For a bare ``.onnx`` file, the
    digest is the sha256 of the file.

    Args:
        path: anything :func:`modelkit.load` accepts.
        max_bundle_size: refuse a bundle whose artifacts total more bytes (2 GiB by default;
            ``None`` for no limit).

    Raises:
        BundleError: not a bundle, or larger than ``max_bundle_size``.
        IntegrityError: the bundle does not match its own manifest.
    """
    return open_bundle(path, max_bundle_size=max_bundle_size, read=False).digest


def normalize_digest(value: str) -> str:
    """Accept ``"sha256:<hex>"`` or a bare hex digest; return the prefixed lowercase form."""
    text = value.strip().lower()
    hexdigest = text.removeprefix("sha256:")
    if not _HEX64.fullmatch(hexdigest):
        raise ValueError(f"{value!r} is not a sha256 digest (expected 'sha256:' and 64 hex digits)")
    return "sha256:" + hexdigest


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest_ = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest_.update(chunk)
    return digest_.hexdigest()


def list_artifacts(root: Path) -> list[Artifact]:
    """Hash every file under ``root/artifacts`` (sorted, so manifests are reproducible)."""
    artifacts = []
    for file in sorted((root / ARTIFACTS_DIR).rglob("*")):
        if file.is_symlink():
            raise BundleError(
                f"The adapter wrote a symbolic link, {file.name!r}; bundles hold regular "
                "files only."
            )
        if file.is_file():
            relative = file.relative_to(root).as_posix()
            artifacts.append(
                Artifact(path=relative, sha256=file_sha256(file), size=file.stat().st_size)
            )
    return artifacts


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Write ``modelkit.json`` (last, after the artifacts it pins are on disk)."""
    text = manifest.model_dump_json(indent=2) + "\n"
    _write_synced(root / MANIFEST_NAME, text.encode("utf-8"))


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_directory(Path(dirpath))


def _fsync_directory(path: Path) -> None:
    if sys.platform == "win32":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_bundle(path: Path) -> bool:
    """Whether ``path`` is a bundle directory or a zip bundle: the only things save may replace."""
    if path.is_symlink():
        return False
    if path.is_dir():
        return (path / MANIFEST_NAME).is_file()
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                _zip_prefix(archive.namelist(), str(path))
        except (BundleError, zipfile.BadZipFile, OSError):
            return False
        return True
    return False


def staging_directory(target: Path) -> Path:
    """A fresh hidden sibling of ``target`` to build a bundle in, on the same filesystem."""
    staging = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    )
    # mkdtemp makes the directory private (0700); a bundle is read by other users and images.
    staging.chmod(0o755)
    return staging


def publish(staging: Path, target: Path, *, overwrite: bool) -> None:
    """Move a complete bundle from ``staging`` to ``target`` (a directory or a ``.zip``).

    ``os.replace`` makes each step atomic: a crash leaves the previous bundle, or (between the two
    renames of an overwrite, or of a first save) no bundle, never a partial one.
    """
    if target.suffix.lower() == ".zip":
        archive = staging.with_name(staging.name + ".zip")
        try:
            write_zip(staging, archive)  # synced to disk before it replaces anything
            os.replace(archive, target)
        except BaseException:
            archive.unlink(missing_ok=True)
            raise
        shutil.rmtree(staging)
    else:
        _fsync_tree(staging)
        if not target.exists():
            os.replace(staging, target)
        elif not overwrite:
            raise BundleError(
                f"A bundle already exists at {str(target)!r}; pass overwrite=True to replace it.",
                path=str(target),
            )
        else:
            retired = staging.with_name(staging.name + ".old")
            os.replace(target, retired)
            try:
                os.replace(staging, target)
            except BaseException:
                os.replace(retired, target)  # put the previous bundle back
                raise
            shutil.rmtree(retired, ignore_errors=True)
    _fsync_directory(target.parent)


def write_zip(root: Path, archive: Path) -> None:
    """Zip a bundle directory reproducibly (sorted members, fixed timestamps), synced to disk."""
    with open(archive, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as out:
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(
                file.relative_to(root).as_posix(), date_time=(1980, 1, 1, 0, 0, 0)
            )
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            out.writestr(info, file.read_bytes())
        out.close()
        raw.flush()
        os.fsync(raw.fileno())


def now() -> datetime:
    """The creation time recorded in manifests (UTC, whole seconds)."""
    return datetime.now(timezone.utc).replace(microsecond=0)
