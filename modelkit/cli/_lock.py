"""``modelkit lock``: a lock file with the digest of each bundle."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ..errors import BundleError
from ._app import EXIT_OK, command, stdout_output_option, usage_error
from ._common import write_text

__all__ = ["lock"]


@command(
    "lock",
    epilog=(
        "\b\nExamples:\n"
        "  modelkit lock bundles/churn bundles/risk --output models.lock\n"
        "  modelkit lock --config models.toml --output models.lock"
    ),
)
@click.argument("paths", metavar="[PATH]...", nargs=-1, type=click.Path())
@click.option(
    "--config",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="A registry config (TOML) to lock.",
)
@stdout_output_option
def lock(*, paths: tuple[str, ...], config: str | None, output: str | None) -> int:
    """Write a lock file with the digest of each bundle, as Registry.from_config(lock=) reads.

    Bundles given as PATHs are keyed by their manifest's name; with --config, every primary,
    canary and shadow the registry config names is locked under its key. Paths are written
    relative to the lock file's directory (for stdout: to the config's directory, or the
    working directory).
    """
    from .._config import LOCK_VERSION, format_lock

    if config is not None and paths:
        raise usage_error("give bundles (PATH...) or --config FILE, not both")
    if config is None and not paths:
        raise usage_error("give the bundles to lock (PATH...), or --config FILE")
    target = None if output is None else Path(output)
    if config is not None:
        config_path = Path(config)
        base = target.parent if target is not None else config_path.parent
        models = _lock_config(config_path, base)
    else:
        models = _lock_paths(paths, target.parent if target is not None else Path.cwd())
    text = format_lock({"lock_version": LOCK_VERSION, "models": models})
    write_text(output, text)
    if target is not None:
        count = sum(1 + ("canary" in m) + ("shadow" in m) for m in models.values())
        click.echo(f"Locked {count} bundle{'s' if count != 1 else ''} in {target}", err=True)
    return EXIT_OK


def _digest_and_name(path: Path) -> tuple[str, str]:
    from .._bundle import open_bundle

    opened = open_bundle(path, read=False)
    if opened.bundle is None:
        raise BundleError(
            f"{str(path)!r} is a bare model file, not a bundle; lock files pin bundles. Save it "
            "with modelkit.save() first.",
            path=str(path),
        )
    return opened.bundle.digest, opened.bundle.manifest.name


def _lock_paths(paths: Sequence[str], base: Path) -> dict[str, Any]:
    from .._config import relative_path

    models: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for path in paths:
        found, name = _digest_and_name(Path(path))
        if name in models:
            raise ValueError(
                f"{origins[name]!r} and {path!r} are both named {name!r}; a lock file keys "
                "bundles by name. Lock a registry config (--config) to pin a canary or shadow."
            )
        origins[name] = path
        models[name] = {"path": relative_path(path, base), "sha256": found}
    return models


def _lock_config(config: Path, base: Path) -> dict[str, Any]:
    from .._config import pin_mismatch, read_config, relative_path
    from .._manifest import normalize_digest

    models: dict[str, dict[str, Any]] = {}
    for bundle in read_config(config).bundles:
        try:
            found, _ = _digest_and_name(bundle.path)
        except BundleError as exc:
            raise type(exc)(f"models.{bundle.key}: {exc}", path=exc.path) from exc
        written = bundle.table.path
        if bundle.table.sha256 is not None:
            pinned = normalize_digest(bundle.table.sha256)
            if pinned != found:
                raise pin_mismatch(bundle.key, written, found, pinned)
        # A path written absolute stays as written; a relative one, relative to the lock file.
        if not Path(written).expanduser().is_absolute():
            written = relative_path(bundle.path, base)
        locked = {"path": written, "sha256": found}
        model = models.setdefault(bundle.name, {})
        if bundle.variant == "primary":
            model.update(locked)
        else:
            model[bundle.variant] = locked
    return models
