"""Atomic single-file writes: a temporary sibling, synced to disk, renamed onto the target.

A reader, or a crash, sees the old file or the new one, never half of one: the data goes to a
hidden sibling on the same filesystem, is synced, and ``os.replace`` swaps it in with one rename;
the directory is synced afterwards, so that the rename itself survives a power cut. Bundle
directories are published the same way (``modelkit._publish``), a staging directory at a time.
"""

from __future__ import annotations

import errno
import os
import secrets
import sys
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = ["AtomicFile", "fsync_directory", "write_atomically"]


class AtomicFile:
    """A file written under a temporary name beside ``target`` and renamed onto it by
    :meth:`commit`: a failed or interrupted write never leaves a file that looks complete.

    As a context manager it commits when the block succeeds and discards the file when it
    raises::

        with AtomicFile(path) as file:
            file.handle.write(text)

    Args:
        target: the file to write (replaced whole if it exists).
        binary: open :attr:`handle` for bytes rather than UTF-8 text.

    Raises:
        FileNotFoundError: the target's directory does not exist.
    """

    def __init__(self, target: str | os.PathLike[str], *, binary: bool = False) -> None:
        self.target = Path(os.fspath(target))
        if not self.target.parent.is_dir():
            raise FileNotFoundError(
                errno.ENOENT,
                f"Cannot write {str(self.target)!r}: its directory does not exist.",
            )
        #: Where the data goes until :meth:`commit`: hidden, and on the target's filesystem
        #: (a rename across filesystems is a copy, which is not atomic).
        self.temporary = self.target.with_name(
            f".{self.target.name}.{secrets.token_hex(4)}.partial"
        )
        # "x": never write through a file (or a link) that is already at that name.
        # newline="": what is written is what lands on disk (csv writes its own line endings).
        self.handle: IO[Any] = open(  # noqa: SIM115 - closed by commit or discard
            self.temporary,
            "xb" if binary else "x",
            encoding=None if binary else "utf-8",
            newline=None if binary else "",
        )

    def commit(self) -> None:
        """Sync the data to disk and rename the file onto the target.

        On failure the temporary file is removed and the target is left as it was.
        """
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            os.replace(self.temporary, self.target)
        except BaseException:
            self.discard()
            raise
        fsync_directory(self.target.parent)

    def discard(self) -> None:
        """Close and delete the temporary file; the target is untouched."""
        self.handle.close()
        self.temporary.unlink(missing_ok=True)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def write_atomically(target: str | os.PathLike[str], data: str | bytes) -> None:
    """Replace ``target`` with ``data`` (text is written as UTF-8) in one step.

    Raises:
        FileNotFoundError: the target's directory does not exist.
        OSError: the file cannot be written; the target is left as it was.
    """
    with AtomicFile(target, binary=isinstance(data, bytes)) as file:
        file.handle.write(data)


def fsync_directory(path: Path) -> None:
    """Sync a directory, so that the renames and new names in it survive a crash."""
    if sys.platform == "win32":  # directories cannot be opened there; NTFS journals renames
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
