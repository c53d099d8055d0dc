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

This module verifies and opens bundles. The manifest and its digest are in ``_manifest``, the
storage a bundle is read from in ``_sources``, and writing bundles in ``_publish``.
"""

from __future__ import annotations

import contextlib
import io
import operator
import os
import stat
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from ._manifest import ARTIFACTS_DIR, MANIFEST_NAME, MAX_MANIFEST_BYTES, Manifest, parse_manifest
from ._sources import (
    AT_SUPPORTED,
    OPEN_FLAGS,
    ZIP_READ_ERRORS,
    DirectorySource,
    Source,
    TraversableSource,
    ZipSource,
    consume,
    set_blocking,
    zip_member,
)
from .errors import BundleError, IntegrityError

__all__ = [
    "DEFAULT_MAX_BUNDLE_SIZE",
    "Artifacts",
    "BundleKind",
    "Opened",
    "VerifiedBundle",
    "check_pin",
    "digest",
    "open_bundle",
    "verify_source",
]

# The total of the artifact sizes a manifest may declare unless the caller says otherwise. An
# ONNX model is at most 2 GiB (protobuf's limit) and loading holds every artifact in memory, so a
# bundle declaring more is refused before anything is read.
DEFAULT_MAX_BUNDLE_SIZE = 2 * 1024**3


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


def _manifest_bytes(source: Source, files: Mapping[str, int]) -> bytes:
    if MANIFEST_NAME not in files:
        raise BundleError(
            f"{source.label!r} is not a modelkit bundle: it has no {MANIFEST_NAME}. Save one with "
            "modelkit.save(), or load a bare .onnx file.",
            path=MANIFEST_NAME,
        )
    raw = source.read(MANIFEST_NAME, MAX_MANIFEST_BYTES, keep=True).data
    assert raw is not None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise BundleError(
            f"The manifest of {source.label!r} is larger than {MAX_MANIFEST_BYTES} bytes; "
            "it is not a modelkit manifest.",
            path=MANIFEST_NAME,
        )
    return raw


def check_pin(label: str, found: str, pinned: str | None) -> None:
    """Refuse what ``label`` names if a digest was pinned and ``found`` is not that digest.

    Raises:
        IntegrityError: the digests differ.
    """
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
    source: Source, *, pinned: str | None = None, max_size: int | None, read: bool = True
) -> VerifiedBundle:
    """Check a bundle completely and return its manifest and verified artifact bytes.

    The order matters: the manifest and the pin are checked before any artifact is opened, and
    the declared sizes against the budget before any is read.
    """
    present = source.files()
    manifest, bundle_digest = parse_manifest(_manifest_bytes(source, present), source.label)
    check_pin(source.label, bundle_digest, pinned)
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
        found = source.read(path, artifact.size, keep=read)
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


def _verified(label: str, source: Source, options: _Options) -> Opened:
    bundle = verify_source(
        source, pinned=options.pinned, max_size=options.max_size, read=options.read
    )
    return Opened("bundle", label, bundle.digest, bundle=bundle)


def _open_path(path: Path, options: _Options) -> Opened:
    label = str(path)
    if not AT_SUPPORTED and path.is_dir():
        return _verified(label, DirectorySource(str(path), label), options)
    try:
        # The bundle's own path may be a link (current -> churn-1.4.0): it is followed here,
        # and nowhere inside. O_NONBLOCK: a FIFO at the path must not block; fstat refuses it.
        fd = os.open(path, OPEN_FLAGS)
    except FileNotFoundError:
        raise BundleError(f"No bundle at {label!r}: the path does not exist.", path=label) from None
    except OSError as exc:
        raise BundleError(f"Cannot open {label!r}: {exc.strerror}.", path=label) from None
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(os.close, fd)
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            return _verified(label, DirectorySource(fd, label), options)
        if not stat.S_ISREG(info.st_mode):
            raise BundleError(
                f"Cannot load {label!r}: it is neither a directory nor a regular file (a FIFO, a "
                "socket or a device). Give a bundle directory, a .zip bundle or an .onnx file.",
                path=label,
            )
        try:
            set_blocking(fd)
            handle = cleanup.enter_context(os.fdopen(fd, "rb", closefd=False))
            head = handle.read(4)
            handle.seek(0)
            if path.suffix.lower() == ".zip" or head == b"PK\x03\x04":
                return _open_zip(handle, label, options)
            return _bare_file(
                path.name, label, handle, info.st_size, options, available=info.st_size
            )
        except OSError as exc:
            raise BundleError(f"Cannot read {label!r}: {exc.strerror or exc}.", path=label) from exc


def _open_zip_path(node: zipfile.Path, options: _Options) -> Opened:
    """Package data inside a zipped wheel or zipapp, with the member checks of a ``.zip``."""
    label = str(node)
    archive = node.root
    at: str = node.at
    if node.is_file():
        info = zip_member(archive, at, label)
        try:
            with archive.open(info) as handle:
                return _file_in_package(node.name, label, handle, info.file_size, options)
        except ZIP_READ_ERRORS as exc:
            raise IntegrityError(
                f"Cannot read {label!r}: {type(exc).__name__}: {exc}. The archive is corrupt.",
                path=label,
            ) from exc
    within = at if at == "" or at.endswith("/") else at + "/"
    if not any(name.startswith(within) for name in archive.namelist()):
        raise BundleError(f"No bundle at {label!r}: the resource does not exist.", path=label)
    return _verified(label, ZipSource(archive, label, within=within), options)


def _open_traversable(node: Any, options: _Options) -> Opened:
    label = str(node)
    if node.is_dir():
        return _verified(label, TraversableSource(node), options)
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
    whole = consume(handle, limit, keep=True)
    if limit is not None and whole.size > limit:
        raise _too_large(label, f"is more than {limit} bytes", limit)
    assert whole.data is not None
    return _open_zip(io.BytesIO(whole.data), label, options)


def _bare_file(
    name: str,
    label: str,
    handle: IO[bytes],
    size: int | None,
    options: _Options,
    *,
    available: int | None = None,
) -> Opened:
    """A bare model file of ``size`` bytes (as far as is known), read within the budget.

    ``available`` is its size when it is a regular file, not a size an archive claims: it is
    then read in one call (see :func:`consume`).
    """
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
    found = consume(handle, limit, keep=options.read, available=available)
    if limit is not None and found.size > limit:
        raise _too_large(label, f"is more than {limit} bytes", limit)
    file_digest = "sha256:" + found.sha256
    check_pin(label, file_digest, options.pinned)
    return Opened(kind, label, file_digest, data=found.data)


def _open_zip(file: IO[bytes], label: str, options: _Options) -> Opened:
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        # ValueError: among others, a member name flagged as UTF-8 that is not.
        raise BundleError(f"{label!r} is not a readable zip archive: {exc}.", path=label) from None
    with archive:
        return _verified(label, ZipSource(archive, label), options)


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
