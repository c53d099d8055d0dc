"""``modelkit verify``: check bundles completely, and against a lock file."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from .._bundle import DEFAULT_MAX_BUNDLE_SIZE
from ..errors import ModelkitError
from ._app import (
    EXIT_FAILURE,
    EXIT_OK,
    PROG,
    ByteSize,
    Run,
    command,
    error_message,
    trust_type_option,
    usage_error,
)

__all__ = ["verify"]


@command(
    "verify",
    epilog=(
        "\b\nExamples:\n"
        "  modelkit verify bundles/churn bundles/risk.zip\n"
        "  modelkit verify --lock models.lock          # every bundle the lock names\n"
        "  modelkit verify --lock models.lock bundles/churn\n"
        "  modelkit verify --run bundles/churn         # also runs its reference cases"
    ),
)
@click.argument("paths", metavar="[PATH]...", nargs=-1, type=click.Path())
@click.option(
    "--lock",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Each bundle's digest must equal this lock file's; without PATH, verify every bundle it "
    "names (relative paths are relative to the lock file).",
)
@click.option(
    "--max-size",
    type=ByteSize(),
    default=DEFAULT_MAX_BUNDLE_SIZE,
    metavar="BYTES",
    help="Fail a bundle whose manifest declares more bytes of artifacts, before reading them "
    "(2GiB; takes KiB, MiB, GiB).",
)
@click.option(
    "--run",
    "run_cases",
    is_flag=True,
    help="Also load each verified bundle and run its reference cases: the model must still "
    "answer them as when it was saved. This deserializes the model (a pickle runs code): use "
    "it on bundles you would load.",
)
@trust_type_option
@click.pass_obj
def verify(
    run: Run,
    *,
    paths: tuple[str, ...],
    lock: str | None,
    max_size: int,
    run_cases: bool,
    trusted_types: tuple[str, ...],
) -> int:
    """Check bundles completely (file list, sizes, sha256), and against a lock file.

    Without --run, nothing is deserialized or held in memory, so it is safe on untrusted files.
    Prints 'OK PATH DIGEST' or 'FAILED PATH: REASON' for every bundle given, even after a
    failure (with --run, the reference cases' verdict follows the digest); exits 1 if any
    failed.
    """
    if not paths and lock is None:
        raise usage_error("give the bundles to verify (PATH...), or --lock FILE")
    lock_path = None if lock is None else Path(lock)
    entries = [] if lock_path is None else _lock_entries(lock_path)
    checks: list[tuple[str, Path, _LockEntry | None]]
    if paths:
        checks = [(path, Path(path), None) for path in paths]
    else:
        checks = [(entry.path, entry.location, entry) for entry in entries]
    failed = 0
    for label, path, entry in checks:
        try:
            reason, found = _verify_one(
                path, entry, entries, lock_path, given=entry is None, max_size=max_size
            )
            if reason is None and run_cases:
                # Pinned to the digest just verified: the bundle run is the bundle checked.
                reason, verdict = _run_cases(
                    path, digest=found, max_size=max_size, trusted_types=trusted_types
                )
                found = f"{found} ({verdict})" if reason is None else found
        except Exception as exc:  # noqa: BLE001 - one bundle's surprise must not hide the others
            if run.debug:
                traceback.print_exc(file=sys.stderr)
            reason, found = error_message(exc, debug=run.debug), ""
        if reason is None:
            click.echo(f"OK {label} {found}")
        else:
            failed += 1
            click.echo(f"FAILED {label}: {reason}")
    if failed:
        click.echo(
            f"{PROG}: error: {failed} of {len(checks)} bundle{'s' if len(checks) != 1 else ''} "
            "failed verification",
            err=True,
        )
        return EXIT_FAILURE
    return EXIT_OK


@dataclass(frozen=True)
class _LockEntry:
    key: str  # "churn", "churn.canary"
    path: str  # as written in the lock file
    location: Path  # resolved against the lock file's directory
    sha256: str


def _lock_entries(lock_path: Path) -> list[_LockEntry]:
    from .._config import read_lock, resolve

    lock = read_lock(lock_path)  # digests come normalized
    return [
        _LockEntry(key, bundle.path, resolve(bundle.path, lock_path.parent), bundle.sha256)
        for key, bundle in lock.bundles().items()
    ]


def _verify_one(
    path: Path,
    entry: _LockEntry | None,
    entries: Sequence[_LockEntry],
    lock_path: Path | None,
    *,
    given: bool,
    max_size: int,
) -> tuple[str | None, str]:
    """Check one bundle; return (the reason it failed or None, its digest)."""
    from .._bundle import open_bundle

    try:
        # Verifies every file, hashing each in chunks; keeps and deserializes nothing.
        opened = open_bundle(path, max_bundle_size=max_size, read=False)
    except ModelkitError as exc:
        return str(exc), ""
    found = opened.digest
    name = None if opened.bundle is None else opened.bundle.manifest.name
    if lock_path is None:
        return None, found
    if given:
        entry = _entry_for(path, name, entries)
        if entry is None:
            return (
                f"no entry of the lock file {str(lock_path)!r} has this path"
                + ("" if name is None else f" or the name {name!r}"),
                found,
            )
    assert entry is not None
    if found != entry.sha256:
        reason = (
            f"its digest is {found}, but the lock file {str(lock_path)!r} pins "
            f"{entry.sha256} for models.{entry.key}. It is a different bundle: re-lock it "
            "after checking where it came from."
        )
        return reason, found
    return None, found


def _run_cases(
    path: Path, *, digest: str, max_size: int, trusted_types: tuple[str, ...]
) -> tuple[str | None, str]:
    """Load a verified bundle and run its reference cases; return (the failure or None, the
    verdict). A bundle without cases (or a bare model file) passes: there is nothing to
    compare."""
    from .._api import run_reference_cases
    from .._reference import failure_text

    try:
        ran = run_reference_cases(
            path, sha256=digest, max_bundle_size=max_size, trusted_types=trusted_types
        )
    except ModelkitError as exc:
        return str(exc), ""
    if ran is None:
        return None, "no reference cases"
    manifest, verdict = ran
    if not verdict.passed:
        return failure_text(verdict, str(path), manifest), ""
    return None, verdict.summary()


def _entry_for(path: Path, name: str | None, entries: Sequence[_LockEntry]) -> _LockEntry | None:
    """The lock entry with this bundle's path, or else the primary entry of its name."""
    resolved = path.resolve()
    for entry in entries:
        if entry.location.resolve() == resolved:
            return entry
    for entry in entries:
        if name is not None and entry.key == name:
            return entry
    return None
