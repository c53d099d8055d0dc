"""``modelkit.load`` on bundles that are self-consistent but unusable: clear BundleErrors."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import modelkit


def _rewrite(bundle: Path, *, artifact: bytes | None = None, **changes: Any) -> None:
    """Change a bundle and re-pin its manifest, as an attacker or a buggy tool could."""
    manifest_path = bundle / "modelkit.json"
    document = json.loads(manifest_path.read_text())
    if artifact is not None:
        entry = document["artifacts"][0]
        (bundle / entry["path"]).write_bytes(artifact)
        entry["sha256"] = hashlib.sha256(artifact).hexdigest()
        entry["size"] = len(artifact)
    for key, value in changes.items():
        document[key] = value
    manifest_path.write_text(json.dumps(document))


@pytest.fixture
def bundle_copy(iris_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(iris_bundle, tmp_path / "iris"))


def test_undecodable_artifact_is_a_bundle_error(bundle_copy: Path) -> None:
    _rewrite(bundle_copy, artifact=b"\x80\x05 this is not a pickle")
    with pytest.raises(modelkit.BundleError, match="joblib adapter cannot load"):
        modelkit.load(bundle_copy)


def test_garbage_adapter_details_are_a_bundle_error(bundle_copy: Path) -> None:
    document = json.loads((bundle_copy / "modelkit.json").read_text())
    _rewrite(
        bundle_copy, adapter={**document["adapter"], "layout": "array", "dtype": "no-such-dtype"}
    )
    with pytest.raises(modelkit.BundleError, match="cannot load"):
        modelkit.load(bundle_copy)


def test_unknown_format_in_a_manifest_is_named(bundle_copy: Path) -> None:
    _rewrite(bundle_copy, format="pickle5")
    with pytest.raises(modelkit.BundleError, match="Unknown format 'pickle5'"):
        modelkit.load(bundle_copy)


def test_unknown_adapter_option_is_refused_before_loading(iris_bundle: Path) -> None:
    with pytest.raises(TypeError, match=r"joblib adapter option .threads.\. It takes none"):
        modelkit.load(iris_bundle, adapter_options={"threads": 2})


def test_missing_path_is_a_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(modelkit.BundleError, match="does not exist"):
        modelkit.load(tmp_path / "nothing-here")


def test_a_directory_without_manifest_is_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(modelkit.BundleError, match=r"no modelkit\.json"):
        modelkit.load(tmp_path / "empty")


@pytest.mark.parametrize("bad", ["", "has space", "../up", "a/b", "x" * 101, 3])
def test_save_refuses_bad_names(bad: Any, tmp_path: Path, iris_classifier: Any, iris: Any) -> None:
    with pytest.raises(ValueError, match="name must be"):
        modelkit.save(
            iris_classifier, tmp_path / "m", name=bad, version="1", sample_input=iris[0].head()
        )


def test_save_refuses_metadata_that_is_not_json(
    tmp_path: Path, iris_classifier: Any, iris: Any
) -> None:
    with pytest.raises(modelkit.BundleError, match="metadata must hold JSON values"):
        modelkit.save(
            iris_classifier,
            tmp_path / "m",
            name="m",
            version="1",
            sample_input=iris[0].head(),
            metadata={"when": object()},
        )
    assert not (tmp_path / "m").exists()


def test_saved_manifest_records_what_the_issue_lists(iris_bundle: Path) -> None:
    manifest = modelkit.load(iris_bundle).manifest
    assert manifest is not None
    assert (manifest.name, manifest.version, manifest.format, manifest.task) == (
        "iris",
        "1.0.0",
        "joblib",
        "classification",
    )
    assert manifest.classes == [0, 1, 2]
    assert manifest.artifacts[0].path == "artifacts/model.joblib"
    assert len(manifest.artifacts[0].sha256) == 64
    assert {"scikit-learn", "joblib", "numpy"} <= set(manifest.environment.packages)
    assert manifest.environment.python.count(".") == 2
    assert manifest.created_at.tzinfo is not None


def test_saved_bundle_is_readable_by_other_users(iris_bundle: Path) -> None:
    assert iris_bundle.stat().st_mode & 0o055 == 0o055
