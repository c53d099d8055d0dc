"""What several commands share: a bundle described without deserializing it, an output not
replaced without --force, text written to a file atomically (or to stdout), and plain-text
tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .._atomic import write_atomically
from ..errors import BundleError

if TYPE_CHECKING:
    from .._manifest import Manifest

__all__ = [
    "BundleDescription",
    "describe_bundle",
    "format_size",
    "refuse_to_replace",
    "table",
    "write_text",
]


@dataclass(frozen=True)
class BundleDescription:
    """A bundle's manifest and digest, read without deserializing anything."""

    label: str
    manifest: Manifest
    digest: str


def describe_bundle(path: str) -> BundleDescription:
    """Verify ``path`` and return its manifest: a bundle's own, or a bare ``.onnx`` file's.

    A bare pickle is refused, as :func:`modelkit.load` refuses it.
    """
    from .._bundle import open_bundle

    # Verified as loading verifies, but an artifact's bytes are hashed and let go, not kept.
    opened = open_bundle(path, read=False)
    if opened.bundle is not None:
        return BundleDescription(path, opened.bundle.manifest, opened.bundle.digest)
    if opened.kind == "onnx":
        from .._api import describe_bare_onnx

        opened = open_bundle(path)
        assert opened.data is not None
        # Read from the file, never run: no session, so no graph optimization either.
        manifest = describe_bare_onnx(opened.label, opened.data, opened.digest)
        return BundleDescription(path, manifest, opened.digest)
    from .. import load

    model = load(path)  # a bare pickle: refused, as load refuses it
    assert model.manifest is not None
    assert model.digest is not None
    return BundleDescription(path, model.manifest, model.digest)


def refuse_to_replace(path: str, *, force: bool) -> None:
    """Refuse an output that exists (a dangling symlink too) unless ``--force`` was given.

    Raises:
        BundleError: ``path`` exists and ``force`` is false.
    """
    target = Path(path)
    if (target.exists() or target.is_symlink()) and not force:
        raise BundleError(f"{path!r} already exists; pass --force to replace it.", path=path)


def write_text(path: str | None, text: str) -> None:
    """``text`` to ``path`` (written atomically), or to stdout when ``path`` is None."""
    if path is None:
        click.echo(text, nl=False)
    else:
        write_atomically(path, text)


def format_size(size: int) -> str:
    """``512 B``, ``1.5 KiB``, ``20.0 MiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def table(header: Sequence[str], rows: Sequence[Sequence[str]], *, indent: int = 2) -> str:
    """Left-aligned columns two spaces apart, under a header line."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = []
    for row in (header, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append(" " * indent + "  ".join(cells).rstrip())
    return "\n".join(lines)
