"""Sources: read-only access to the files of one bundle, wherever it is stored.

A bundle is read from a directory, a zip archive, or package data (``importlib.resources``). Each
source lists the bundle's files, refusing links, special files and names that escape the bundle,
and opens one file at a time; :meth:`Source.read` reads it in bounded chunks, hashing on the way.
Directory bundles are opened relative to a directory descriptor without following a link at any
level, where the platform allows it.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO, Any

from ._manifest import MANIFEST_NAME, MAX_BUNDLE_ENTRIES
from .errors import BundleError, IntegrityError

__all__ = [
    "AT_SUPPORTED",
    "OPEN_FLAGS",
    "ZIP_READ_ERRORS",
    "DirectorySource",
    "Read",
    "Source",
    "TraversableSource",
    "ZipSource",
    "consume",
    "set_blocking",
    "zip_member",
    "zip_prefix",
]

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Read:
    """What :func:`consume` read: the bytes (``None`` when only hashed), their count and sha256."""

    data: bytes | None
    size: int
    sha256: str


def consume(
    handle: IO[bytes], limit: int | None, *, keep: bool, available: int | None = None
) -> Read:
    """Read at most ``limit + 1`` bytes (all of them if ``limit`` is None) in bounded chunks,
    hashing them on the way.

    One byte past ``limit`` shows the file is longer than allowed without reading the rest, and
    nothing is allocated for bytes that are not there: chunks are at most 1 MiB, except that
    bytes to keep from a file known to hold ``available`` bytes (a regular file's size when it
    was opened, not a size an archive claims) are read in one call, whose buffer is then kept as
    it is. With ``keep`` the bytes are kept in one buffer; without, only their hash is.
    """
    hasher = hashlib.sha256()
    kept: io.BytesIO | None = None
    size = 0
    step = available + 1 if keep and available is not None else _CHUNK
    while limit is None or size <= limit:
        chunk = handle.read(step if limit is None else min(step, limit + 1 - size))
        if not chunk:
            break
        size += len(chunk)
        hasher.update(chunk)
        if keep and kept is None:
            # BytesIO shares the first chunk's buffer, and copies it only if another follows:
            # a file read in one call is kept without a copy.
            kept = io.BytesIO(chunk)
            kept.seek(0, io.SEEK_END)
        elif kept is not None:
            kept.write(chunk)
        step = _CHUNK
    # getvalue() hands over BytesIO's buffer without copying it.
    data = None if not keep else b"" if kept is None else kept.getvalue()
    return Read(data, size, hasher.hexdigest())


class Source:
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

    def size(self, handle: IO[bytes]) -> int | None:
        """How many bytes an opened file holds, if the storage can say so truthfully."""
        return None

    def read(self, relative: str, limit: int, *, keep: bool) -> Read:
        """Read at most ``limit + 1`` bytes of one file (see :func:`consume`)."""
        try:
            with self.open(relative) as handle:
                return consume(handle, limit, keep=keep, available=self.size(handle))
        except self.read_errors as exc:
            raise self.read_failed(relative, exc) from exc


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
OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
AT_SUPPORTED = (
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


class DirectorySource(Source):
    """A bundle directory: a descriptor of it (a path where descriptors are not supported)."""

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
            return self._open_at(parent, name, OPEN_FLAGS | os.O_DIRECTORY)
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
                fd = self._open_at(directory, parts[-1], OPEN_FLAGS)
            except OSError as exc:
                if exc.errno in _CHANGED:
                    raise _changed(self.label, relative) from exc
                raise
        finally:
            for descriptor in opened:
                os.close(descriptor)
        return _regular_file(fd, self.label, relative)

    def size(self, handle: IO[bytes]) -> int | None:
        # A regular file (checked when it was opened): its size is what a read will find.
        return os.fstat(handle.fileno()).st_size


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
        set_blocking(fd)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def set_blocking(fd: int) -> None:
    """Clear ``O_NONBLOCK`` (from :data:`OPEN_FLAGS`) on a descriptor known to be a regular file."""
    # Reads from a regular file never block, but clear O_NONBLOCK so none returns EAGAIN.
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)


# zipfile reads deflate with the output of each call bounded; its bzip2 and LZMA readers
# decompress a whole compressed chunk at once (bzip2 turns 200 bytes into 256 MiB), so a
# declared size could not bound them.
_ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
ZIP_READ_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    OSError,
    EOFError,
    ValueError,
    RuntimeError,  # also NotImplementedError: an unsupported method
    zlib.error,
)


class ZipSource(Source):
    """A bundle in a zip archive, at its root, in one top-level directory, or ``within`` one."""

    read_errors = ZIP_READ_ERRORS

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
            self.prefix = zip_prefix([info.filename for info in infos], label)
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


def zip_prefix(names: list[str], label: str) -> str:
    """Where the bundle is in an archive with these member names: ``""`` or ``"<directory>/"``.

    Raises:
        BundleError: the archive holds no manifest at its root or in one top-level directory.
    """
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


def zip_member(archive: zipfile.ZipFile, name: str, label: str) -> zipfile.ZipInfo:
    """The one member of ``archive`` called ``name``, checked as a bundle member is."""
    infos = [info for info in archive.infolist() if info.filename == name]
    if len(infos) != 1:
        raise IntegrityError(f"Archive {label!r} holds {name!r} {len(infos)} times.", path=name)
    _check_zip_member(infos[0], label)
    return infos[0]


class TraversableSource(Source):
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
