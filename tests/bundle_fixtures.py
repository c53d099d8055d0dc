"""Helpers shared by the bundle tests: small fitted models, bundle surgery and hostile files.

A plain module, not a conftest: the tests import what they use, so each test reads on its own.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
import pickle
import stat
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

import modelkit

MANIFEST = "modelkit.json"
ARTIFACT = "artifacts/model.joblib"


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


@functools.cache
def iris() -> tuple[np.ndarray, np.ndarray]:
    """The iris features and labels (loaded once per process)."""
    from sklearn.datasets import load_iris

    features, labels = load_iris(return_X_y=True)
    return features, labels


def fit_logistic() -> Any:
    from sklearn.linear_model import LogisticRegression

    features, labels = iris()
    return LogisticRegression(max_iter=1000).fit(features, labels)


def fit_tree() -> Any:
    from sklearn.tree import DecisionTreeClassifier

    features, labels = iris()
    return DecisionTreeClassifier(max_depth=3, random_state=0).fit(features, labels)


def save_bundle(estimator: Any, path: Path, **options: Any) -> Path:
    """Save ``estimator`` as the iris bundle at ``path`` and return the path."""
    features, _labels = iris()
    options.setdefault("name", "iris")
    options.setdefault("version", "1.0.0")
    modelkit.save(estimator, path, sample_input=features[:10], **options)
    return path


def first_record() -> list[float]:
    features, _labels = iris()
    return [float(value) for value in features[0]]


def assert_predicts_like(model: modelkit.Model[Any, Any], estimator: Any) -> None:
    """The loaded model gives the estimator's label for the first iris record."""
    features, _labels = iris()
    assert model.predict(first_record()).label == estimator.predict(features[:1])[0]


# --------------------------------------------------------------------------------------------
# Bundle surgery
# --------------------------------------------------------------------------------------------


def read_manifest(bundle: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((bundle / MANIFEST).read_text(encoding="utf-8"))
    return document


def write_manifest(bundle: Path, document: Any, *, indent: int | None = 2) -> None:
    (bundle / MANIFEST).write_text(json.dumps(document, indent=indent), encoding="utf-8")


def edit_manifest(bundle: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``change`` to the parsed manifest and write it back."""
    document = read_manifest(bundle)
    change(document)
    write_manifest(bundle, document)


def replace_artifact(bundle: Path, data: bytes, *, rehash: bool, name: str = ARTIFACT) -> None:
    """Write ``data`` as an artifact; with ``rehash``, also record its sha256 and size in the
    manifest, so the bundle is self-consistent (as a careful attacker would leave it)."""
    (bundle / name).write_bytes(data)
    if not rehash:
        return

    def record(document: dict[str, Any]) -> None:
        for artifact in document["artifacts"]:
            if artifact["path"] == name:
                artifact["sha256"] = hashlib.sha256(data).hexdigest()
                artifact["size"] = len(data)

    edit_manifest(bundle, record)


def flip_byte(data: bytes, index: int | None = None) -> bytes:
    """``data`` with one byte changed (the middle one by default)."""
    position = len(data) // 2 if index is None else index
    return data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1 :]


def set_package_version(bundle: Path, package: str, version: str) -> None:
    """Record another version of ``package`` in the manifest's environment (nothing else)."""

    def change(document: dict[str, Any]) -> None:
        document["environment"]["packages"][package] = version

    edit_manifest(bundle, change)


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every entry under ``root`` (relative path -> kind, size), to show nothing was written."""
    entries: dict[str, tuple[str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            full = Path(dirpath, name)
            info = full.lstat()
            kind = "dir" if stat.S_ISDIR(info.st_mode) else "file"
            entries[full.relative_to(root).as_posix()] = (kind, info.st_size)
    return entries


def staging_leftovers(directory: Path) -> list[str]:
    """Names in ``directory`` that look like save's temporary siblings."""
    return sorted(p.name for p in directory.iterdir() if ".partial" in p.name)


# --------------------------------------------------------------------------------------------
# Zip archives
# --------------------------------------------------------------------------------------------


def bundle_members(bundle: Path, *, prefix: str = "") -> list[tuple[str, bytes]]:
    """The files of a bundle directory as ``(member name, bytes)``, sorted."""
    return [
        (prefix + file.relative_to(bundle).as_posix(), file.read_bytes())
        for file in sorted(bundle.rglob("*"))
        if file.is_file()
    ]


def write_zip(archive: Path, members: Iterable[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    """Write ``members`` into a new zip archive, exactly as given (hostile names included)."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for name, data in members:
            out.writestr(name, data)
    return archive


def symlink_member(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    """A zip member that unzip tools would extract as a symbolic link to ``target``."""
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


# --------------------------------------------------------------------------------------------
# Hostile pickles
# --------------------------------------------------------------------------------------------


class _TouchOnUnpickle:
    """Pickles to a payload that creates ``marker`` when unpickled: code runs during loading."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def malicious_pickle(marker: Path) -> bytes:
    """A pickle that creates ``marker`` if anything ever unpickles it."""
    return pickle.dumps(_TouchOnUnpickle(marker))


# --------------------------------------------------------------------------------------------
# Walking parsed JSON documents (the Hypothesis strategies live in tests/strategies.py)
# --------------------------------------------------------------------------------------------


def key_paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path of keys and indexes into a parsed JSON document (the root excluded)."""
    paths: list[tuple[Any, ...]] = []
    children: Iterable[tuple[Any, Any]]
    if isinstance(document, dict):
        children = document.items()
    elif isinstance(document, list):
        children = enumerate(document)
    else:
        return paths
    for key, value in children:
        paths.append((*prefix, key))
        paths.extend(key_paths(value, (*prefix, key)))
    return paths


def replace_at(document: Any, path: tuple[Any, ...], value: Any) -> None:
    """Set the value found at ``path`` (from :func:`key_paths`) to ``value``, in place."""
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
