"""Registry configs and lock files, read and written without loading any bundle.

How a registry uses them (loading, pinning, reloading) is in ``test_registry.py``; the Flask and
Django integrations and the CLI read configs through the same functions.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import modelkit
from modelkit._batching import Batching
from modelkit._config import (
    LOCK_VERSION,
    format_lock,
    pin_conflict,
    pin_mismatch,
    pins_of,
    read_config,
    read_lock,
    relative_path,
)

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_config_file_is_read_with_paths_relative_to_it(tmp_path: Path) -> None:
    config = read_config(
        write(
            tmp_path / "models.toml",
            '[models]\nsimple = "bundles/simple"\n\n'
            '[models.churn]\npath = "bundles/a"\ndrift = true\n'
            "batching = { max_batch_size = 8 }\n\n"
            '[models.churn.canary]\npath = "/srv/b"\nweight = 0.25\n\n'
            '[models.churn.shadow]\npath = "bundles/c"\nversion_policy = "ignore"\n',
        )
    )
    assert config.base == tmp_path
    assert config.label == f"registry config {str(tmp_path / 'models.toml')!r}"
    assert [(b.key, b.variant, b.path) for b in config.bundles] == [
        ("simple", "primary", tmp_path / "bundles" / "simple"),
        ("churn", "primary", tmp_path / "bundles" / "a"),
        ("churn.canary", "canary", Path("/srv/b")),
        ("churn.shadow", "shadow", tmp_path / "bundles" / "c"),
    ]
    churn, canary, shadow = config.bundles[1:]
    assert churn.options == {"drift": True, "batching": Batching(max_batch_size=8)}
    assert (canary.weight, dict(canary.options)) == (0.25, {})
    assert shadow.options == {"version_policy": "ignore"}
    assert canary.table.path == "/srv/b"  # as written


def test_document_makes_every_path_absolute(tmp_path: Path) -> None:
    config = read_config(
        {"models": {"churn": {"path": "a", "shadow": {"path": "b"}}}}, base_dir=tmp_path
    )
    assert config.document() == {
        "models": {
            "churn": {
                "path": os.fspath(tmp_path / "a"),
                "shadow": {"path": os.fspath(tmp_path / "b")},
            }
        }
    }


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"models": {"churn": {"path": "a", "batching": {"size": 3}}}}, "Invalid batching options"),
        ({"models": {"bad name": "a"}}, "A model's name must be"),
        ({"models": {"churn": {"path": "a", "sha256": 3}}}, r"models\.churn\.sha256"),
        ({"models": "a"}, r"models: Input should be a valid dictionary"),
    ],
)
def test_a_bad_config_is_refused_before_anything_loads(document: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_config(document)  # type: ignore[arg-type]


def test_a_missing_config_file_is_a_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(modelkit.BundleError, match="does not exist"):
        read_config(tmp_path / "missing.toml")


def test_a_lock_file_round_trips_with_normalized_digests(tmp_path: Path) -> None:
    lock = {
        "lock_version": LOCK_VERSION,
        "models": {
            "churn": {"path": "a", "sha256": "A" * 64, "canary": {"path": "b", "sha256": DIGEST_B}},
            "odd name": {"path": 'quote " and \\ back', "sha256": DIGEST_B},
        },
    }
    parsed = read_lock(write(tmp_path / "models.lock", format_lock(lock)))
    assert {key: (b.path, b.sha256) for key, b in parsed.bundles().items()} == {
        "churn": ("a", DIGEST_A),
        "churn.canary": ("b", DIGEST_B),
        "odd name": ('quote " and \\ back', DIGEST_B),
    }


def test_a_malformed_digest_in_a_lock_file_names_its_key() -> None:
    lock = {"lock_version": 1, "models": {"churn": {"path": "a", "sha256": "nope"}}}
    with pytest.raises(ValueError, match=r"models\.churn\.sha256: 'nope' is not a sha256 digest"):
        read_lock(lock)


def test_pins_cover_every_configured_bundle(tmp_path: Path) -> None:
    config = read_config({"models": {"churn": {"path": "a", "canary": {"path": "b", "weight": 1}}}})
    lock = read_lock(
        {
            "lock_version": 1,
            "models": {
                "churn": {
                    "path": "a",
                    "sha256": DIGEST_A,
                    "canary": {"path": "b", "sha256": DIGEST_B},
                }
            },
        }
    )
    assert pins_of(lock, config) == {"churn": DIGEST_A, "churn.canary": DIGEST_B}
    partial = read_lock({"lock_version": 1, "models": {"churn": {"path": "a", "sha256": DIGEST_A}}})
    with pytest.raises(modelkit.IntegrityError, match=r"models\.churn\.canary is not in the lock"):
        pins_of(partial, config)


def test_pin_errors_say_which_pin_disagrees() -> None:
    conflict = pin_conflict("churn.canary", DIGEST_A, DIGEST_B)
    assert str(conflict) == (
        f"models.churn.canary: the config pins {DIGEST_A} but the lock file pins {DIGEST_B}."
    )
    assert (conflict.expected, conflict.actual) == (DIGEST_B, DIGEST_A)
    mismatch = pin_mismatch("churn", "bundles/a", DIGEST_B, DIGEST_A, pinned_by="lock file")
    assert str(mismatch) == (
        f"models.churn: the bundle 'bundles/a' has digest {DIGEST_B}, but the lock file pins "
        f"{DIGEST_A}."
    )
    assert (mismatch.path, mismatch.expected, mismatch.actual) == ("bundles/a", DIGEST_A, DIGEST_B)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_relative_paths_keep_a_symbolic_link_as_written(tmp_path: Path) -> None:
    (tmp_path / "bundles" / "1.4.0").mkdir(parents=True)
    (tmp_path / "bundles" / "current").symlink_to("1.4.0")
    (tmp_path / "locks").mkdir()
    assert (
        relative_path(tmp_path / "bundles" / "current", tmp_path / "locks") == "../bundles/current"
    )
