"""Bundles: a model's artifacts plus the manifest that describes and pins them.

A bundle is a directory (or a ``.zip`` of one)::

    churn/
      modelkit.json      the manifest, written last
      artifacts/...      the adapter's files

Everything read from a bundle is untrusted until checked: the manifest is size-capped and
validated, the file list must match it exactly, and every artifact's size and sha256 are checked
on the bytes in memory, which are then the only bytes any deserializer sees.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

from ._signature import Signature, Task
from .errors import BundleError, IntegrityError

__all__ = [
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
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_DISTRIBUTION = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$")
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
        if not _HEX64.match(value):
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
        or re.match(r"^[A-Za-z]:", value)
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
            if not _DISTRIBUTION.match(name) or not version or len(version) > 100:
                raise ValueError(f"{name!r}: {version!r} is not a distribution and its version")
        return value


class Manifest(BaseModel):
    """The description of a bundle (``modelkit.json``), validated before anything is loaded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: Literal[1] = FORMAT_VERSION
    name: str = Field(min_length=1, max_length=200)
    version: str = Field(min_length=1, max_length=100)
    format: str = Field(min_length=1, max_length=100)
    task: Task
    signature: Signature
    artifacts: tuple[Artifact, ...]
    environment: Environment
    created_at: datetime
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    adapter: dict[str, JsonValue] = Field(default_factory=dict)
    profile: dict[str, JsonValue] | None = None

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

    def files(self) -> dict[str, int]:
        """Every file in the bundle (relative POSIX path -> size); refuses links and escapes."""
        raise NotImplementedError

    def read(self, relative: str, limit: int) -> bytes:
        """Read at most ``limit + 1`` bytes of one file (one more shows it is too long)."""
        raise NotImplementedError


class _DirectorySource(_Source):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = str(root)

    def files(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            for name in [*dirnames, *filenames]:
                full = os.path.join(dirpath, name)
                relative = Path(full).relative_to(self.root).as_posix()
                info = os.lstat(full)
                if stat.S_ISLNK(info.st_mode):
                    raise IntegrityError(
                        f"Bundle {self.label!r} contains a symbolic link, {relative!r}; bundles "
                        "hold regular files only.",
                        path=relative,
                    )
                if stat.S_ISREG(info.st_mode):
                    found[relative] = info.st_size
                elif not stat.S_ISDIR(info.st_mode):
                    raise IntegrityError(
                        f"Bundle {self.label!r} contains {relative!r}, which is not a regular "
                        "file.",
                        path=relative,
                    )
        return found

    def read(self, relative: str, limit: int) -> bytes:
        path = self.root.joinpath(*relative.split("/"))
        # O_NOFOLLOW: a file swapped for a link after listing still cannot lead outside the bundle.
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            raise BundleError(
                f"Cannot read {relative!r} in bundle {self.label!r}: {exc.strerror}.", path=relative
            ) from exc
        with os.fdopen(fd, "rb") as handle:
            return handle.read(limit + 1)


class _ZipSource(_Source):
    def __init__(self, archive: zipfile.ZipFile, label: str) -> None:
        self.archive = archive
        self.label = label
        self._members: dict[str, zipfile.ZipInfo] = {}
        names = [info.filename for info in archive.infolist()]
        self.prefix = _zip_prefix(names, label)
        for info in archive.infolist():
            name = info.filename
            if name.startswith("/") or "\\" in name or re.match(r"^[A-Za-z]:", name):
                raise IntegrityError(
                    f"Archive {label!r} has a member with an absolute path, {name!r}.", path=name
                )
            if any(part == ".." for part in name.split("/")):
                raise IntegrityError(
                    f"Archive {label!r} has a member that escapes the bundle, {name!r}.", path=name
                )
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise IntegrityError(
                    f"Archive {label!r} contains a symbolic link, {name!r}; bundles hold regular "
                    "files only.",
                    path=name,
                )
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

    def read(self, relative: str, limit: int) -> bytes:
        info = self._members.get(relative)
        if info is None:
            raise BundleError(f"{relative!r} is missing from {self.label!r}.", path=relative)
        try:
            with self.archive.open(info) as handle:
                # Read no more than the manifest allows, whatever the member header claims:
                # a compressed member can expand far beyond its declared size.
                return handle.read(limit + 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as exc:
            raise IntegrityError(
                f"Cannot read {relative!r} from archive {self.label!r}: {exc}", path=relative
            ) from exc


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
    """Package data through ``importlib.resources``, also inside a zipped wheel or zipapp."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.label = str(root)

    def files(self) -> dict[str, int]:
        found: dict[str, int] = {}
        stack: list[tuple[str, Any]] = [("", self.root)]
        while stack:
            prefix, node = stack.pop()
            for child in node.iterdir():
                relative = prefix + child.name
                if child.is_dir():
                    stack.append((relative + "/", child))
                else:
                    # Sizes come from reading; Traversable has no stat(). Reads are bounded later.
                    found[relative] = -1
        return found

    def read(self, relative: str, limit: int) -> bytes:
        node = self.root
        for part in relative.split("/"):
            node = node.joinpath(part)
        with node.open("rb") as handle:
            data: bytes = handle.read(limit + 1)
            return data


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
    """A bundle whose manifest, file list, sizes and hashes have all been checked."""

    label: str
    manifest: Manifest
    artifacts: Artifacts
    digest: str


def _manifest_bytes(source: _Source, files: Mapping[str, int]) -> bytes:
    if MANIFEST_NAME not in files:
        raise BundleError(
            f"{source.label!r} is not a modelkit bundle: it has no {MANIFEST_NAME}. Save one with "
            "modelkit.save(), or load a bare .onnx file.",
            path=MANIFEST_NAME,
        )
    raw = source.read(MANIFEST_NAME, MAX_MANIFEST_BYTES)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise BundleError(
            f"The manifest of {source.label!r} is larger than {MAX_MANIFEST_BYTES} bytes; "
            "it is not a modelkit manifest.",
            path=MANIFEST_NAME,
        )
    return raw


def parse_manifest(raw: bytes, label: str) -> tuple[Manifest, Any]:
    """Validate manifest bytes; return the manifest and the parsed JSON (for the digest).

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
    try:
        manifest = Manifest.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise BundleError(
            f"The manifest of {label!r} is invalid: {where}: {first['msg']}{more}.",
            path=MANIFEST_NAME,
        ) from None
    return manifest, document


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


def canonical_digest(document: Any) -> str:
    """The digest of a parsed manifest: sha256 over its canonical JSON form.

    The manifest lists every artifact's sha256, so it pins every byte; canonical JSON makes the
    digest depend on what the manifest says, not on its whitespace or key order.
    """
    canonical = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def verify_source(source: _Source) -> VerifiedBundle:
    """Check a bundle completely and return its manifest and verified artifact bytes."""
    present = source.files()
    manifest, document = parse_manifest(_manifest_bytes(source, present), source.label)
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
    files: dict[str, bytes] = {}
    for path, artifact in listed.items():
        if present[path] not in (-1, artifact.size):
            raise IntegrityError(
                f"{path!r} in bundle {source.label!r} is {present[path]} bytes; the manifest "
                f"says {artifact.size}. The file was changed or truncated.",
                path=path,
                expected=str(artifact.size),
                actual=str(present[path]),
            )
        data = source.read(path, artifact.size)
        if len(data) != artifact.size:
            raise IntegrityError(
                f"{path!r} in bundle {source.label!r} is "
                f"{'longer' if len(data) > artifact.size else f'{len(data)} bytes'}; the manifest "
                f"says {artifact.size}. The file was changed or truncated.",
                path=path,
                expected=str(artifact.size),
                actual=str(len(data)),
            )
        actual = hashlib.sha256(data).hexdigest()
        if actual != artifact.sha256:
            raise IntegrityError(
                f"{path!r} in bundle {source.label!r} does not match its sha256 in the manifest "
                f"(expected {artifact.sha256}, got {actual}). The file was changed.",
                path=path,
                expected=artifact.sha256,
                actual=actual,
            )
        files[path[len(ARTIFACTS_DIR) + 1 :]] = data
    return VerifiedBundle(source.label, manifest, Artifacts(files), canonical_digest(document))


# --------------------------------------------------------------------------------------------
# Opening paths
# --------------------------------------------------------------------------------------------

BundleKind = Literal["bundle", "onnx", "pickle"]
_PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")


@dataclass(frozen=True)
class Opened:
    """What a path turned out to be: a verified bundle, or a bare model file's bytes."""

    kind: BundleKind
    label: str
    bundle: VerifiedBundle | None = None
    data: bytes | None = None


def open_bundle(path: Any) -> Opened:
    """Open and verify whatever ``path`` names: a bundle directory, a ``.zip``, package data,
    or a bare ``.onnx`` or pickle file (read, not deserialized).

    Raises:
        BundleError: the path does not exist or is not a bundle.
        IntegrityError: the bundle fails verification.
    """
    if isinstance(path, str | os.PathLike):
        return _open_path(Path(os.fspath(path)))
    if hasattr(path, "iterdir") and hasattr(path, "open") and hasattr(path, "is_dir"):
        return _open_traversable(path)
    raise BundleError(
        f"Cannot load from a {type(path).__name__}: expected a path to a bundle directory, a .zip "
        "bundle or an .onnx file, or an importlib.resources Traversable."
    )


def _open_path(path: Path) -> Opened:
    label = str(path)
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise BundleError(f"No bundle at {label!r}: the path does not exist.", path=label) from None
    except OSError as exc:
        raise BundleError(f"Cannot open {label!r}: {exc.strerror}.", path=label) from None
    if stat.S_ISLNK(info.st_mode):
        path = path.resolve()
        info = path.stat()
    if stat.S_ISDIR(info.st_mode):
        return Opened("bundle", label, bundle=verify_source(_DirectorySource(path)))
    with open(path, "rb") as handle:
        head = handle.read(4)
    if path.suffix.lower() == ".zip" or head == b"PK\x03\x04":
        return Opened("bundle", label, bundle=_verify_zip(path, label))
    return _bare_file(path.name, label, path.read_bytes)


def _open_traversable(node: Any) -> Opened:
    label = str(node)
    if node.is_dir():
        return Opened("bundle", label, bundle=verify_source(_TraversableSource(node)))
    if not node.is_file():
        raise BundleError(f"No bundle at {label!r}: the resource does not exist.", path=label)
    name = str(node.name)
    if name.lower().endswith(".zip"):
        return Opened("bundle", label, bundle=_verify_zip(io.BytesIO(node.read_bytes()), label))
    return _bare_file(name, label, node.read_bytes)


def _bare_file(name: str, label: str, read: Any) -> Opened:
    lower = name.lower()
    if lower.endswith(".onnx"):
        return Opened("onnx", label, data=read())
    if lower.endswith(_PICKLE_SUFFIXES):
        return Opened("pickle", label, data=read())
    raise BundleError(
        f"Cannot load {label!r}: expected a bundle directory, a .zip bundle, an .onnx file, or "
        "(with trusted=True) a .joblib/.pkl file.",
        path=label,
    )


def _verify_zip(file: Path | IO[bytes], label: str) -> VerifiedBundle:
    try:
        with zipfile.ZipFile(file) as archive:
            return verify_source(_ZipSource(archive, label))
    except zipfile.BadZipFile as exc:
        raise BundleError(f"{label!r} is not a readable zip archive: {exc}.", path=label) from None


def digest(path: Any) -> str:
    """The digest that pins a bundle: ``"sha256:<hex>"``.

    It is computed over the manifest's canonical JSON, which lists the sha256 of every artifact,
    so it is the same for every copy of the bundle (directory or zip, on any machine) and changes
    when any artifact byte or anything the manifest says changes. The bundle is verified first.
    For a bare ``.onnx`` file, the digest is the sha256 of the file.

    Args:
        path: anything :func:`modelkit.load` accepts.

    Raises:
        BundleError: not a bundle.
        IntegrityError: the bundle does not match its own manifest.
    """
    opened = open_bundle(path)
    if opened.bundle is not None:
        return opened.bundle.digest
    assert opened.data is not None
    return "sha256:" + hashlib.sha256(opened.data).hexdigest()


def normalize_digest(value: str) -> str:
    """Accept ``"sha256:<hex>"`` or a bare hex digest; return the prefixed lowercase form."""
    text = value.strip().lower()
    hexdigest = text.removeprefix("sha256:")
    if not _HEX64.match(hexdigest):
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
