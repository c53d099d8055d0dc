"""Writing bundles: hash the artifacts, write the manifest last, publish the whole atomically.

A bundle is built in a hidden staging directory next to its target and moved into place with
``os.replace``: a crash leaves the previous bundle, or none, never a partial one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from ._atomic import AtomicFile, fsync_directory, write_atomically
from ._manifest import ARTIFACTS_DIR, MANIFEST_NAME, Artifact, Manifest
from ._sources import consume, zip_prefix
from .errors import BundleError

__all__ = [
    "file_sha256",
    "is_bundle",
    "list_artifacts",
    "now",
    "publish",
    "staging_directory",
    "write_manifest",
    "write_zip",
]


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    with open(path, "rb") as handle:
        return consume(handle, None, keep=False).sha256


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
    write_atomically(root / MANIFEST_NAME, text.encode("utf-8"))


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as handle:
                os.fsync(handle.fileno())
        fsync_directory(Path(dirpath))


def is_bundle(path: Path) -> bool:
    """Whether ``path`` is a bundle directory or a zip bundle: the only things save may replace."""
    if path.is_symlink():
        return False
    if path.is_dir():
        return (path / MANIFEST_NAME).is_file()
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                zip_prefix(archive.namelist(), str(path))
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
        with AtomicFile(target, binary=True) as archive:  # synced before it replaces anything
            write_zip(staging, archive.handle)
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
    fsync_directory(target.parent)


def write_zip(root: Path, archive: IO[bytes]) -> None:
    """Zip a bundle directory reproducibly (sorted members, fixed timestamps) into ``archive``,
    a binary file (an :class:`~modelkit._atomic.AtomicFile`'s handle, to publish it whole)."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(
                file.relative_to(root).as_posix(), date_time=(1980, 1, 1, 0, 0, 0)
            )
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            out.writestr(info, file.read_bytes())


def now() -> datetime:
    """The creation time recorded in manifests (UTC, whole seconds)."""
    return datetime.now(timezone.utc).replace(microsecond=0)
