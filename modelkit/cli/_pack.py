"""``modelkit pack``: a bundle directory as one reproducible ``.zip`` bundle."""

from __future__ import annotations

from pathlib import Path

import click

from .._atomic import AtomicFile
from ..errors import BundleError, IntegrityError
from ._app import EXIT_OK, command, usage_error
from ._common import format_size, refuse_to_replace

__all__ = ["pack"]


@command(
    "pack",
    epilog="\b\nExample:\n  modelkit pack bundles/churn --output dist/churn-1.4.0.zip",
)
@click.argument("path", metavar="DIR", type=click.Path())
@click.option(
    "--output",
    "-o",
    required=True,
    metavar="FILE.zip",
    type=click.Path(dir_okay=False),
    help="The archive.",
)
@click.option("--force", is_flag=True, help="Replace an existing archive.")
def pack(*, path: str, output: str, force: bool) -> int:
    """Verify a bundle directory and write it as one .zip bundle.

    The archive is reproducible (sorted members, fixed timestamps) and has the same digest as
    the directory.
    """
    from .._bundle import digest, open_bundle
    from .._publish import write_zip

    source, target = Path(path), Path(output)
    if not source.is_dir():
        raise BundleError(
            f"{path!r} is not a bundle directory; pack zips a directory bundle.", path=path
        )
    if target.suffix.lower() != ".zip":
        raise usage_error(f"the archive's name must end in .zip, got {output!r}")
    refuse_to_replace(output, force=force)
    if not target.parent.is_dir():
        raise BundleError(f"The directory {str(target.parent)!r} does not exist.", path=output)
    opened = open_bundle(source)  # every file checked before it is packed
    assert opened.bundle is not None
    archive = AtomicFile(target, binary=True)
    try:
        write_zip(source, archive.handle)
        archive.handle.flush()
        packed = digest(archive.temporary)
        if packed != opened.bundle.digest:  # the directory changed while it was packed
            raise IntegrityError(
                f"The archive's digest {packed} differs from the directory's "
                f"{opened.bundle.digest}: the bundle changed while it was packed. Try again.",
                path=output,
                expected=opened.bundle.digest,
                actual=packed,
            )
    except BaseException:
        archive.discard()
        raise
    archive.commit()
    click.echo(
        f"Packed {path} into {output} ({format_size(target.stat().st_size)}), digest {packed}"
    )
    return EXIT_OK
