"""Bundles: saving, loading, verifying, digests, and refusing hostile files before unpickling."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import io
import json
import os
import re
import shutil
import sys
import uuid
import warnings
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelkit
from tests.bundle_fixtures import (
    ARTIFACT,
    MANIFEST,
    assert_predicts_like,
    bundle_members,
    edit_manifest,
    first_record,
    fit_logistic,
    fit_tree,
    flip_byte,
    iris,
    key_paths,
    malicious_pickle,
    read_manifest,
    replace_artifact,
    replace_at,
    save_bundle,
    set_package_version,
    snapshot,
    staging_leftovers,
    symlink_member,
    write_manifest,
    write_zip,
)
from tests.strategies import json_values

REFERENCE_CASES = "artifacts/reference-cases.json"

# --------------------------------------------------------------------------------------------
# Fixtures: one bundle saved per session, copied for each test that changes it
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def estimator() -> Any:
    return fit_logistic()


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory, estimator: Any) -> Path:
    return save_bundle(estimator, tmp_path_factory.mktemp("template") / "iris")


@pytest.fixture(scope="session")
def other_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_bundle(fit_tree(), tmp_path_factory.mktemp("other") / "tree", name="tree")


@pytest.fixture
def bundle(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "iris"))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """Where a malicious pickle in these tests would leave its mark, were it ever unpickled."""
    return tmp_path / "unpickled-marker"


def assert_names_file(err: modelkit.BundleError, file: str, where: Path) -> None:
    """The error is about ``file``, in attributes and text, and says which bundle."""
    assert err.path == file
    assert file in str(err)
    assert str(where) in str(err)


def assert_names_manifest(err: modelkit.BundleError, where: Path) -> None:
    """The error is about the manifest of the bundle at ``where``."""
    assert err.path == MANIFEST
    assert "manifest" in str(err).lower() or MANIFEST in str(err)
    assert str(where) in str(err)


# --------------------------------------------------------------------------------------------
# Artifacts: every byte is checked before any deserializer sees it
# --------------------------------------------------------------------------------------------


def test_intact_bundle_loads_and_predicts(bundle: Path, estimator: Any) -> None:
    model = modelkit.load(bundle)

    assert (model.name, model.version) == ("iris", "1.0.0")
    assert_predicts_like(model, estimator)


def test_saved_bundle_holds_exactly_the_manifest_and_its_artifacts(template: Path) -> None:
    files = sorted(p.relative_to(template).as_posix() for p in template.rglob("*") if p.is_file())

    assert files == [ARTIFACT, REFERENCE_CASES, MANIFEST]
    assert [a["path"] for a in read_manifest(template)["artifacts"]] == [ARTIFACT, REFERENCE_CASES]


def test_one_changed_byte_in_an_artifact_is_rejected(bundle: Path) -> None:
    original = (bundle / ARTIFACT).read_bytes()
    replace_artifact(bundle, flip_byte(original), rehash=False)

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(bundle)

    assert_names_file(caught.value, ARTIFACT, bundle)
    assert caught.value.expected == hashlib.sha256(original).hexdigest()
    assert caught.value.actual == hashlib.sha256(flip_byte(original)).hexdigest()


def test_artifact_swapped_for_another_models_artifact_is_rejected(
    bundle: Path, other_template: Path
) -> None:
    shutil.copyfile(other_template / ARTIFACT, bundle / ARTIFACT)

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(bundle)

    assert_names_file(caught.value, ARTIFACT, bundle)


def test_tampered_artifact_is_rejected_before_unpickling(bundle: Path, marker: Path) -> None:
    replace_artifact(bundle, malicious_pickle(marker), rehash=False)

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(bundle)

    assert_names_file(caught.value, ARTIFACT, bundle)
    assert not marker.exists()


def test_malicious_pickle_helper_really_runs_code_when_unpickled(marker: Path) -> None:
    # The control for every "marker never exists" assertion: unpickling does create it.
    joblib.load(io.BytesIO(malicious_pickle(marker)))

    assert marker.exists()


@pytest.mark.parametrize(
    "extra", ["artifacts/extra.bin", "notes.txt", "artifacts/nested/deeper.bin"]
)
def test_unlisted_extra_file_is_rejected(bundle: Path, extra: str) -> None:
    (bundle / extra).parent.mkdir(parents=True, exist_ok=True)
    (bundle / extra).write_bytes(b"not in the manifest")

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(bundle)

    assert_names_file(caught.value, extra, bundle)


def test_missing_artifact_is_rejected(bundle: Path) -> None:
    (bundle / ARTIFACT).unlink()

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(bundle)

    assert_names_file(caught.value, ARTIFACT, bundle)


@pytest.mark.parametrize("change", ["truncated", "extended"])
def test_artifact_of_the_wrong_size_is_rejected(bundle: Path, change: str) -> None:
    data = (bundle / ARTIFACT).read_bytes()
    changed = data[: len(data) // 2] if change == "truncated" else data + b"\0"
    (bundle / ARTIFACT).write_bytes(changed)

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(bundle)

    assert_names_file(caught.value, ARTIFACT, bundle)
    assert caught.value.expected == str(len(data))
    assert caught.value.actual == str(len(changed))


def test_artifact_replaced_by_a_symlink_is_rejected_even_when_its_target_matches(
    bundle: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.joblib"
    shutil.move(bundle / ARTIFACT, outside)
    (bundle / ARTIFACT).symlink_to(outside)

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(bundle)

    assert_names_file(caught.value, ARTIFACT, bundle)
    assert "link" in str(caught.value)


def test_extra_symlink_inside_the_bundle_is_rejected(bundle: Path) -> None:
    (bundle / "artifacts" / "passwd").symlink_to("/etc/passwd")

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(bundle)

    assert_names_file(caught.value, "artifacts/passwd", bundle)


def test_artifacts_directory_replaced_by_a_symlink_is_rejected(
    bundle: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside-artifacts"
    shutil.move(bundle / "artifacts", outside)
    (bundle / "artifacts").symlink_to(outside, target_is_directory=True)

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(bundle)

    assert_names_file(caught.value, "artifacts", bundle)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe_inside_the_bundle_is_rejected_without_reading_it(bundle: Path) -> None:
    # Opening a FIFO for reading blocks until a writer comes: it must be refused from its stat.
    os.mkfifo(bundle / "artifacts" / "pipe")

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(bundle)

    assert_names_file(caught.value, "artifacts/pipe", bundle)


def test_directory_without_a_manifest_is_not_a_bundle(bundle: Path) -> None:
    (bundle / MANIFEST).unlink()

    with pytest.raises(modelkit.BundleError) as caught:
        modelkit.load(bundle)

    assert_names_manifest(caught.value, bundle)


def test_missing_path_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"

    with pytest.raises(modelkit.BundleError) as caught:
        modelkit.load(missing)

    assert caught.value.path == str(missing)
    assert str(missing) in str(caught.value)


def test_digest_verifies_the_bundle_first(bundle: Path) -> None:
    replace_artifact(bundle, flip_byte((bundle / ARTIFACT).read_bytes()), rehash=False)

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.digest(bundle)

    assert_names_file(caught.value, ARTIFACT, bundle)


# --------------------------------------------------------------------------------------------
# The manifest: parsed and validated as hostile input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_path",
    [
        pytest.param("artifacts/../../outside.joblib", id="dotdot"),
        pytest.param("OUTSIDE", id="absolute"),
        pytest.param("artifacts\\model.joblib", id="backslash"),
        pytest.param("C:/outside.joblib", id="drive"),
        pytest.param("artifacts/./model.joblib", id="dot"),
        pytest.param("artifacts//model.joblib", id="empty-part"),
        pytest.param("model.joblib", id="outside-artifacts-dir"),
        pytest.param("", id="empty"),
    ],
)
def test_manifest_artifact_path_that_is_not_plainly_inside_the_bundle_is_rejected(
    bundle: Path, tmp_path: Path, bad_path: str
) -> None:
    # A genuine copy of the artifact waits outside, so following the path would pass the hash.
    outside = tmp_path / "outside.joblib"
    shutil.copyfile(bundle / ARTIFACT, outside)
    bad_path = str(outside) if bad_path == "OUTSIDE" else bad_path

    def point_outside(document: dict[str, Any]) -> None:
        document["artifacts"][0]["path"] = bad_path

    edit_manifest(bundle, point_outside)

    with pytest.raises(modelkit.BundleError) as caught:
        modelkit.load(bundle)

    assert_names_manifest(caught.value, bundle)
    assert bad_path in str(caught.value) or repr(bad_path)[1:-1] in str(caught.value)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"{not json", id="syntax"),
        pytest.param(b"", id="empty"),
        pytest.param(b'{"name": "iris"', id="truncated"),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deeply-nested"),
    ],
)
def test_manifest_that_is_not_valid_json_is_rejected(bundle: Path, raw: bytes) -> None:
    (bundle / MANIFEST).write_bytes(raw)

    with pytest.raises(modelkit.BundleError) as caught:
        modelkit.load(bundle)

    assert_names_manifest(caught.value, bundle)


@pytest.mark.parametrize("document", [[1, 2], "modelkit", 42, None, True])
def test_manifest_that_is_json_but_not_an_object_is_rejected(
    bundle: Path, document: object
) -> None:
    write_manifest(bundle, document)

    with pytest.raises(modelkit.BundleError) as caught:
        modelkit.load(bundle)

    assert_names_manifest(caught.value, bundle)
    assert "object" in str(caught.value)


def test_oversized_manifest_is_rejected(bundle: Path) -> None:
    def pad(document: dict[str, Any]) -> None:
        document["metadata"]["padding"] = "x" * (1024 * 1024)

    edit_manifest(bundle, pad)

    with pytest.raises(modelkit.BundleError) as caught:
        modelkit.load(bundle)

    assert_names_manifest(caught.value, bundle)
    assert "larger" in str(caught.value)


def test_manifest_from_a_future_format_version_asks_to_upgrade(bundle: Path) -> None:
    def from_the_future(document: dict[str, Any]) -> None:
        document["format_version"] = 2
        document["a_field_from_the_future"] = {"anything": True}

    edit_manifest(bundle, from_the_future)

    with pytest.raises(modelkit.BundleError) as caught:
        modelkit.load(bundle)

    assert_names_manifest(caught.value, bundle)
    assert "upgrade" in str(caught.value).lower()
    assert re.search(r"format_version\D{0,5}2\b", str(caught.value))


@pytest.mark.parametrize(
    "field",
    ["name", "version", "format", "task", "signature", "artifacts", "environment", "created_at"],
)
def test_manifest_missing_a_required_field_is_rejected(bundle: Path, field: str) -> None:
    edit_manifest(bundle, lambda document: document.pop(field))

    with pytest.raises(modelkit.BundleError) as caught:
        modelkit.load(bundle)

    assert_names_manifest(caught.value, bundle)
    assert field in str(caught.value)


def test_manifest_listing_the_same_artifact_twice_is_rejected(bundle: Path) -> None:
    def duplicate(document: dict[str, Any]) -> None:
        document["artifacts"].append(dict(document["artifacts"][0]))

    edit_manifest(bundle, duplicate)

    with pytest.raises(modelkit.BundleError) as caught:
        modelkit.load(bundle)

    assert_names_manifest(caught.value, bundle)
    assert "twice" in str(caught.value)


def test_manifest_with_an_unknown_field_is_rejected(bundle: Path) -> None:
    def add_field(document: dict[str, Any]) -> None:
        document["run_on_load"] = "import os"

    edit_manifest(bundle, add_field)

    with pytest.raises(modelkit.BundleError) as caught:
        modelkit.load(bundle)

    assert_names_manifest(caught.value, bundle)
    assert "run_on_load" in str(caught.value)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_manifest_holding_nan_or_infinity_is_rejected_as_a_bundle_error(
    bundle: Path, literal: str
) -> None:
    text = (bundle / MANIFEST).read_text(encoding="utf-8")
    (bundle / MANIFEST).write_text(
        text.replace('"metadata": {}', f'"metadata": {{"score": {literal}}}'), encoding="utf-8"
    )
    assert literal in (bundle / MANIFEST).read_text(encoding="utf-8")

    with pytest.raises(modelkit.BundleError) as caught:
        modelkit.load(bundle)

    assert_names_manifest(caught.value, bundle)


def test_manifest_holding_a_huge_integer_is_rejected_as_a_bundle_error(bundle: Path) -> None:
    text = (bundle / MANIFEST).read_text(encoding="utf-8")
    (bundle / MANIFEST).write_text(
        text.replace('"metadata": {}', '"metadata": {"n": 1' + "0" * 5000 + "}"),
        encoding="utf-8",
    )

    with pytest.raises(modelkit.BundleError) as caught:
        modelkit.load(bundle)

    assert_names_manifest(caught.value, bundle)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(document=json_values())
def test_any_json_document_that_is_not_a_manifest_is_refused_with_bundle_error(
    bundle: Path, document: Any
) -> None:
    write_manifest(bundle, document)

    with pytest.raises(modelkit.BundleError) as caught:
        modelkit.load(bundle)

    assert caught.value.path == MANIFEST


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_manifest_with_any_value_replaced_loads_or_raises_a_modelkit_error(
    bundle: Path, template: Path, data: st.DataObject
) -> None:
    # Whatever a hostile manifest says, the caller sees a model or a modelkit error, never a raw
    # TypeError/ValueError/KeyError from deep inside.
    document = read_manifest(template)
    path = data.draw(st.sampled_from(key_paths(document)), label="path")
    value = data.draw(json_values(), label="value")
    replace_at(document, path, value)
    write_manifest(bundle, document)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", modelkit.EnvironmentMismatchWarning)
        with contextlib.suppress(modelkit.ModelkitError):
            modelkit.load(bundle)


@pytest.mark.parametrize("dtype", [None, "not-a-dtype", 7])
def test_manifest_with_an_invalid_adapter_dtype_is_refused_with_a_bundle_error(
    bundle: Path, dtype: object
) -> None:
    edit_manifest(bundle, lambda document: document["adapter"].update(dtype=dtype))

    with pytest.raises(modelkit.BundleError) as caught:
        modelkit.load(bundle)

    assert caught.value.path in (MANIFEST, str(bundle))
    assert str(bundle) in str(caught.value)


def test_manifest_recording_an_empty_package_name_is_refused_with_a_modelkit_error(
    bundle: Path,
) -> None:
    set_package_version(bundle, "", "1.0")

    with pytest.raises(modelkit.ModelkitError):
        modelkit.load(bundle)


# --------------------------------------------------------------------------------------------
# Zip bundles
# --------------------------------------------------------------------------------------------


def test_save_to_a_zip_path_writes_one_zip_bundle_that_loads(
    tmp_path: Path, estimator: Any
) -> None:
    archive = save_bundle(estimator, tmp_path / "m.zip")

    assert zipfile.is_zipfile(archive)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.zip"]
    assert_predicts_like(modelkit.load(archive), estimator)


def test_zip_of_a_bundle_directory_with_a_top_level_folder_loads(
    bundle: Path, tmp_path: Path, estimator: Any
) -> None:
    archive = shutil.make_archive(
        str(tmp_path / "packed"), "zip", root_dir=bundle.parent, base_dir=bundle.name
    )
    with zipfile.ZipFile(archive) as packed:
        assert f"{bundle.name}/{MANIFEST}" in packed.namelist()

    assert_predicts_like(modelkit.load(archive), estimator)


def test_loading_a_zip_bundle_writes_nothing_to_disk(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, estimator: Any
) -> None:
    archive = write_zip(tmp_path / "m.zip", bundle_members(bundle))
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)

    assert_predicts_like(modelkit.load(archive), estimator)

    assert snapshot(tmp_path) == before


@pytest.fixture
def work_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A current directory inside tmp_path, so anything extracted "relative" lands in view."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_zip_member_escaping_with_dotdot_is_rejected_without_writing(
    bundle: Path, tmp_path: Path, work_dir: Path
) -> None:
    archive = write_zip(
        work_dir / "m.zip",
        [*bundle_members(bundle), ("../evil", b"escaped"), ("a/../../evil2", b"")],
    )
    before = snapshot(tmp_path)

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(archive)

    assert_names_file(caught.value, "../evil", archive)
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path.parent / "evil").exists()


def test_zip_member_with_an_absolute_path_is_rejected_without_writing(
    bundle: Path, tmp_path: Path, work_dir: Path
) -> None:
    existed = Path("/etc/x").exists()
    archive = write_zip(work_dir / "m.zip", [*bundle_members(bundle), ("/etc/x", b"absolute")])
    with zipfile.ZipFile(archive) as written:
        assert "/etc/x" in written.namelist()
    before = snapshot(tmp_path)

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(archive)

    assert_names_file(caught.value, "/etc/x", archive)
    assert snapshot(tmp_path) == before
    assert Path("/etc/x").exists() == existed


@pytest.mark.parametrize(
    "link", [pytest.param(ARTIFACT, id="artifact-is-link"), pytest.param("artifacts/x", id="extra")]
)
def test_zip_symlink_member_is_rejected_without_writing(
    bundle: Path, tmp_path: Path, work_dir: Path, link: str
) -> None:
    members = [(n, d) for n, d in bundle_members(bundle) if n != link]
    archive = write_zip(work_dir / "m.zip", [*members, symlink_member(link, "/etc/passwd")])
    before = snapshot(tmp_path)

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(archive)

    assert_names_file(caught.value, link, archive)
    assert "link" in str(caught.value)
    assert snapshot(tmp_path) == before


def test_tampered_zip_member_is_rejected_before_unpickling(
    bundle: Path, tmp_path: Path, marker: Path
) -> None:
    members = [
        (name, malicious_pickle(marker) if name == ARTIFACT else data)
        for name, data in bundle_members(bundle)
    ]
    archive = write_zip(tmp_path / "m.zip", members)

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(archive)

    assert_names_file(caught.value, ARTIFACT, archive)
    assert not marker.exists()


def test_zip_with_one_changed_byte_in_a_member_is_rejected(bundle: Path, tmp_path: Path) -> None:
    members = [
        (name, flip_byte(data) if name == ARTIFACT else data)
        for name, data in bundle_members(bundle)
    ]
    archive = write_zip(tmp_path / "m.zip", members)

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(archive)

    assert_names_file(caught.value, ARTIFACT, archive)


def test_zip_holding_the_same_member_twice_is_rejected(
    bundle: Path, tmp_path: Path, marker: Path
) -> None:
    # Tools disagree on which copy of a duplicated name wins; a bundle must not be ambiguous.
    archive = tmp_path / "m.zip"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
        write_zip(archive, [*bundle_members(bundle), (ARTIFACT, malicious_pickle(marker))])

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(archive)

    assert_names_file(caught.value, ARTIFACT, archive)
    assert not marker.exists()


def test_zip_manifest_that_inflates_past_the_size_cap_is_rejected(
    bundle: Path, tmp_path: Path
) -> None:
    members = [
        (name, data + b" " * (2 * 1024 * 1024) if name == MANIFEST else data)
        for name, data in bundle_members(bundle)
    ]
    archive = write_zip(tmp_path / "m.zip", members)
    assert archive.stat().st_size < 100_000

    with pytest.raises(modelkit.BundleError) as caught:
        modelkit.load(archive)

    assert_names_manifest(caught.value, archive)


def test_zip_without_a_manifest_is_not_a_bundle(bundle: Path, tmp_path: Path) -> None:
    members = [(n, d) for n, d in bundle_members(bundle) if n != MANIFEST]
    archive = write_zip(tmp_path / "m.zip", members)

    with pytest.raises(modelkit.BundleError) as caught:
        modelkit.load(archive)

    assert caught.value.path == str(archive)
    assert str(archive) in str(caught.value)


def test_file_named_zip_that_is_not_a_zip_is_rejected(tmp_path: Path) -> None:
    fake = tmp_path / "model.zip"
    fake.write_bytes(b"this is not a zip archive at all")

    with pytest.raises(modelkit.BundleError) as caught:
        modelkit.load(fake)

    assert caught.value.path == str(fake)
    assert str(fake) in str(caught.value)


# --------------------------------------------------------------------------------------------
# Bare model files: pickles need trusted=True, ONNX does not
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pkl", ".joblib", ".pickle", ".PKL"])
def test_bare_pickle_file_is_refused_without_trusted(
    tmp_path: Path, marker: Path, suffix: str
) -> None:
    bare = tmp_path / f"model{suffix}"
    bare.write_bytes(malicious_pickle(marker))

    with pytest.raises(modelkit.BundleError) as caught:
        modelkit.load(bare)

    assert caught.value.path == str(bare)
    assert bare.name in str(caught.value)
    assert "trusted=True" in str(caught.value)
    assert not marker.exists()


def test_digest_of_a_bare_pickle_file_does_not_unpickle_it(tmp_path: Path, marker: Path) -> None:
    bare = tmp_path / "model.joblib"
    bare.write_bytes(malicious_pickle(marker))

    assert modelkit.digest(bare) == "sha256:" + hashlib.sha256(bare.read_bytes()).hexdigest()
    assert not marker.exists()


def test_bare_joblib_file_loads_and_predicts_with_trusted(tmp_path: Path, estimator: Any) -> None:
    bare = tmp_path / "model.joblib"
    joblib.dump(estimator, bare)

    model = modelkit.load(bare, trusted=True)

    assert_predicts_like(model, estimator)


def _iris_onnx_bytes(estimator: Any) -> bytes:
    from skl2onnx import to_onnx

    features, _labels = iris()
    onnx_model = to_onnx(
        estimator,
        features[:1].astype(np.float32),
        options={id(estimator): {"zipmap": False}},
        target_opset=17,
    )
    data: bytes = onnx_model.SerializeToString()
    return data


def test_bare_onnx_file_loads_without_trusted(tmp_path: Path, estimator: Any) -> None:
    bare = tmp_path / "model.onnx"
    bare.write_bytes(_iris_onnx_bytes(estimator))
    features, _labels = iris()

    output = modelkit.load(bare).predict_batch({"X": features[:5].astype(np.float32)})

    assert list(output["label"]) == list(estimator.predict(features[:5]))
    assert modelkit.digest(bare) == "sha256:" + hashlib.sha256(bare.read_bytes()).hexdigest()


def test_tampered_onnx_artifact_is_rejected(tmp_path: Path, estimator: Any) -> None:
    bundle = tmp_path / "onnx-bundle"
    modelkit.save(_iris_onnx_bytes(estimator), bundle, name="iris", version="1.0.0", format="onnx")
    artifact = "artifacts/model.onnx"
    replace_artifact(
        bundle, flip_byte((bundle / artifact).read_bytes()), rehash=False, name=artifact
    )

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(bundle)

    assert_names_file(caught.value, artifact, bundle)


# --------------------------------------------------------------------------------------------
# Digests and pinning
# --------------------------------------------------------------------------------------------


def test_digest_is_the_same_for_a_copy_of_the_bundle(template: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(template, tmp_path / "elsewhere" / "renamed")

    assert modelkit.digest(copy) == modelkit.digest(template)


@pytest.mark.parametrize("prefix", ["", "iris/"], ids=["at-root", "in-folder"])
def test_digest_is_the_same_for_the_zip_form_of_the_bundle(
    template: Path, tmp_path: Path, prefix: str
) -> None:
    archive = write_zip(tmp_path / "iris.zip", bundle_members(template, prefix=prefix))

    assert modelkit.digest(archive) == modelkit.digest(template)


def test_digest_of_a_saved_zip_matches_its_unzipped_directory(
    tmp_path: Path, estimator: Any
) -> None:
    archive = save_bundle(estimator, tmp_path / "m.zip")
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(archive) as saved:
        saved.extractall(unpacked)

    assert modelkit.digest(unpacked) == modelkit.digest(archive)


def test_digest_ignores_manifest_whitespace_and_key_order(bundle: Path, template: Path) -> None:
    document = read_manifest(bundle)
    reordered = dict(reversed(list(document.items())))
    write_manifest(bundle, reordered, indent=None)
    assert (bundle / MANIFEST).read_bytes() != (template / MANIFEST).read_bytes()

    assert modelkit.digest(bundle) == modelkit.digest(template)


def test_digest_changes_when_an_artifact_byte_changes(bundle: Path, template: Path) -> None:
    replace_artifact(bundle, flip_byte((bundle / ARTIFACT).read_bytes()), rehash=True)

    assert modelkit.digest(bundle) != modelkit.digest(template)


def test_digest_changes_when_the_metadata_changes(bundle: Path, template: Path) -> None:
    edit_manifest(bundle, lambda document: document["metadata"].update(owner="someone else"))

    assert modelkit.digest(bundle) != modelkit.digest(template)


def test_digest_has_the_sha256_prefix(template: Path) -> None:
    value = modelkit.digest(template)

    assert value.startswith("sha256:")
    assert len(value.removeprefix("sha256:")) == 64


@pytest.mark.parametrize("form", ["prefixed", "bare-hex", "upper-case"])
def test_load_accepts_the_pinned_digest_with_or_without_prefix(
    bundle: Path, estimator: Any, form: str
) -> None:
    value = modelkit.digest(bundle)
    pin = {
        "prefixed": value,
        "bare-hex": value.removeprefix("sha256:"),
        "upper-case": value.upper(),
    }[form]

    assert_predicts_like(modelkit.load(bundle, sha256=pin), estimator)


def test_wrong_pinned_digest_is_rejected_before_unpickling(
    bundle: Path, template: Path, marker: Path
) -> None:
    # A self-consistent bundle (manifest re-hashed) that is not the one the application pinned.
    replace_artifact(bundle, malicious_pickle(marker), rehash=True)
    pinned = modelkit.digest(template)

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(bundle, sha256=pinned)

    assert caught.value.path == str(bundle)
    assert str(bundle) in str(caught.value)
    assert caught.value.expected == pinned
    assert caught.value.actual == modelkit.digest(bundle)
    assert not marker.exists()


def test_malformed_pinned_digest_is_a_value_error(bundle: Path) -> None:
    with pytest.raises(ValueError, match="sha256"):
        modelkit.load(bundle, sha256="sha256:not-hex")


# --------------------------------------------------------------------------------------------
# Saving over an existing path
# --------------------------------------------------------------------------------------------


def test_save_refuses_to_overwrite_an_existing_bundle(bundle: Path, estimator: Any) -> None:
    before = modelkit.digest(bundle)

    with pytest.raises(modelkit.BundleError) as caught:
        save_bundle(estimator, bundle, version="2.0.0")

    assert caught.value.path == str(bundle)
    assert "overwrite=True" in str(caught.value)
    assert modelkit.digest(bundle) == before
    assert staging_leftovers(bundle.parent) == []


def test_save_with_overwrite_replaces_an_existing_bundle(bundle: Path) -> None:
    tree = fit_tree()

    save_bundle(tree, bundle, version="2.0.0", overwrite=True)

    model = modelkit.load(bundle)
    assert model.version == "2.0.0"
    assert read_manifest(bundle)["adapter"]["estimator"].endswith("DecisionTreeClassifier")
    assert_predicts_like(model, tree)
    assert staging_leftovers(bundle.parent) == []


def test_save_with_overwrite_replaces_an_existing_zip_bundle(
    tmp_path: Path, estimator: Any
) -> None:
    archive = save_bundle(estimator, tmp_path / "m.zip")

    save_bundle(estimator, archive, version="2.0.0", overwrite=True)

    assert modelkit.load(archive).version == "2.0.0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.zip"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_save_refuses_to_replace_a_directory_that_is_not_a_bundle(
    tmp_path: Path, estimator: Any, overwrite: bool
) -> None:
    target = tmp_path / "thesis"
    target.mkdir()
    (target / "chapter1.tex").write_text("months of work")

    with pytest.raises(modelkit.BundleError) as caught:
        save_bundle(estimator, target, overwrite=overwrite)

    assert caught.value.path == str(target)
    assert str(target) in str(caught.value)
    assert (target / "chapter1.tex").read_text() == "months of work"
    assert staging_leftovers(tmp_path) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_save_refuses_to_replace_a_file_that_is_not_a_bundle(
    tmp_path: Path, estimator: Any, overwrite: bool
) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("keep me")

    with pytest.raises(modelkit.BundleError) as caught:
        save_bundle(estimator, target, overwrite=overwrite)

    assert caught.value.path == str(target)
    assert target.read_text() == "keep me"


def test_save_refuses_to_replace_a_zip_that_is_not_a_bundle_even_with_overwrite(
    tmp_path: Path, estimator: Any
) -> None:
    target = write_zip(tmp_path / "photos.zip", [("holiday.jpg", b"\xff\xd8 precious")])
    before = target.read_bytes()

    with pytest.raises(modelkit.BundleError) as caught:
        save_bundle(estimator, target, overwrite=True)

    assert caught.value.path == str(target)
    assert target.read_bytes() == before


def test_save_refuses_to_replace_a_symlink_to_a_bundle(
    bundle: Path, tmp_path: Path, estimator: Any
) -> None:
    link = tmp_path / "current"
    link.symlink_to(bundle, target_is_directory=True)
    before = modelkit.digest(bundle)

    with pytest.raises(modelkit.BundleError):
        save_bundle(estimator, link, version="2.0.0", overwrite=True)

    assert link.is_symlink()
    assert modelkit.digest(bundle) == before


# --------------------------------------------------------------------------------------------
# Package data through importlib.resources
# --------------------------------------------------------------------------------------------


@pytest.fixture
def package_name(tmp_path: Path) -> Iterator[str]:
    """A package name no other test uses; its modules and finders are forgotten afterwards."""
    name = f"modelkit_test_pkg_{uuid.uuid4().hex}"
    yield name
    for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        del sys.modules[module]
    for entry in [p for p in sys.path_importer_cache if p.startswith(str(tmp_path))]:
        del sys.path_importer_cache[entry]


def _package_members(package: str, bundle: Path) -> list[tuple[str, bytes]]:
    return [
        (f"{package}/__init__.py", b""),
        *bundle_members(bundle, prefix=f"{package}/bundles/iris/"),
    ]


def test_bundle_loads_from_package_data_on_disk(
    bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    package_name: str,
    estimator: Any,
) -> None:
    site = tmp_path / "site"
    for name, data in _package_members(package_name, bundle):
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_bytes(data)
    monkeypatch.syspath_prepend(str(site))

    resource = importlib.resources.files(package_name) / "bundles" / "iris"

    assert_predicts_like(modelkit.load(resource), estimator)
    assert modelkit.digest(resource) == modelkit.digest(bundle)


def test_bundle_loads_from_package_data_inside_a_zipped_package(
    bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    package_name: str,
    estimator: Any,
) -> None:
    archive = write_zip(tmp_path / "app.zip", _package_members(package_name, bundle))
    monkeypatch.syspath_prepend(str(archive))

    resource = importlib.resources.files(package_name) / "bundles" / "iris"
    assert isinstance(resource, zipfile.Path)

    assert_predicts_like(modelkit.load(resource), estimator)
    assert modelkit.digest(resource) == modelkit.digest(bundle)


def test_tampered_bundle_inside_a_zipped_package_is_rejected_before_unpickling(
    bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    package_name: str,
    marker: Path,
) -> None:
    replace_artifact(bundle, malicious_pickle(marker), rehash=False)
    archive = write_zip(tmp_path / "app.zip", _package_members(package_name, bundle))
    monkeypatch.syspath_prepend(str(archive))
    resource = importlib.resources.files(package_name) / "bundles" / "iris"

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(resource)

    assert caught.value.path == ARTIFACT
    assert ARTIFACT in str(caught.value)
    assert not marker.exists()


def test_unlisted_file_inside_a_zipped_package_bundle_is_rejected(
    bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    package_name: str,
) -> None:
    members = [
        *_package_members(package_name, bundle),
        (f"{package_name}/bundles/iris/artifacts/extra.bin", b"unlisted"),
    ]
    archive = write_zip(tmp_path / "app.zip", members)
    monkeypatch.syspath_prepend(str(archive))
    resource = importlib.resources.files(package_name) / "bundles" / "iris"

    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(resource)

    assert caught.value.path == "artifacts/extra.bin"


def test_artifact_size_claim_beyond_the_file_in_a_zipped_package_is_rejected(
    bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    package_name: str,
) -> None:
    edit_manifest(bundle, lambda document: document["artifacts"][0].update(size=10**15))
    archive = write_zip(tmp_path / "app.zip", _package_members(package_name, bundle))
    monkeypatch.syspath_prepend(str(archive))
    resource = importlib.resources.files(package_name) / "bundles" / "iris"

    with pytest.raises(modelkit.BundleError, match="size limit") as too_large:
        modelkit.load(resource)
    with pytest.raises(modelkit.IntegrityError) as caught:
        modelkit.load(resource, max_bundle_size=None)

    assert not isinstance(too_large.value, modelkit.IntegrityError)
    assert caught.value.path == ARTIFACT


def test_zip_bundle_shipped_as_package_data_in_a_zipped_package_loads(
    bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    package_name: str,
    estimator: Any,
) -> None:
    inner = write_zip(tmp_path / "iris.zip", bundle_members(bundle))
    members = [
        (f"{package_name}/__init__.py", b""),
        (f"{package_name}/bundles/iris.zip", inner.read_bytes()),
    ]
    archive = write_zip(tmp_path / "app.zip", members)
    monkeypatch.syspath_prepend(str(archive))

    resource = importlib.resources.files(package_name) / "bundles" / "iris.zip"

    assert_predicts_like(modelkit.load(resource), estimator)


# --------------------------------------------------------------------------------------------
# Environment policy: compared with this process before unpickling
# --------------------------------------------------------------------------------------------


def _sklearn_versions() -> tuple[str, str, str]:
    """(installed, another minor of the same major, another major) versions of scikit-learn."""
    installed = metadata.version("scikit-learn")
    major, minor = (int(part) for part in installed.split(".")[:2])
    return installed, f"{major}.{minor + 1}.0", f"{major + 1}.0.0"


def test_minor_version_difference_warns_and_the_model_still_predicts(
    bundle: Path, estimator: Any
) -> None:
    installed, other_minor, _other_major = _sklearn_versions()
    set_package_version(bundle, "scikit-learn", other_minor)

    with pytest.warns(modelkit.EnvironmentMismatchWarning) as caught:
        model = modelkit.load(bundle)

    message = str(caught[0].message)
    assert "scikit-learn" in message
    assert other_minor in message
    assert installed in message
    assert str(bundle) in message
    assert_predicts_like(model, estimator)


def test_error_policy_refuses_a_minor_difference_before_unpickling(
    bundle: Path, marker: Path
) -> None:
    installed, other_minor, _other_major = _sklearn_versions()
    replace_artifact(bundle, malicious_pickle(marker), rehash=True)
    set_package_version(bundle, "scikit-learn", other_minor)

    with pytest.raises(modelkit.EnvironmentMismatchError) as caught:
        modelkit.load(bundle, version_policy="error")

    assert caught.value.mismatches == {"scikit-learn": (other_minor, installed)}
    assert str(bundle) in str(caught.value)
    assert not marker.exists()


def test_major_version_difference_is_refused_by_default_before_unpickling(
    bundle: Path, marker: Path
) -> None:
    installed, _other_minor, other_major = _sklearn_versions()
    replace_artifact(bundle, malicious_pickle(marker), rehash=True)
    set_package_version(bundle, "scikit-learn", other_major)

    with pytest.raises(modelkit.EnvironmentMismatchError) as caught:
        modelkit.load(bundle)

    assert caught.value.mismatches == {"scikit-learn": (other_major, installed)}
    assert "scikit-learn" in str(caught.value)
    assert not marker.exists()


def _advised_policy(err: modelkit.EnvironmentMismatchError) -> str:
    advised = re.findall(r"version_policy='(\w+)'", str(err))
    assert advised, f"the message advises no version_policy: {err}"
    return str(advised[0])


@pytest.mark.parametrize(
    ("policy", "which"),
    [("warn", "major"), ("error", "minor"), ("error", "major")],
)
def test_environment_refusal_advises_a_version_policy_that_loads_the_bundle(
    bundle: Path, estimator: Any, policy: Any, which: str
) -> None:
    _installed, other_minor, other_major = _sklearn_versions()
    set_package_version(bundle, "scikit-learn", other_major if which == "major" else other_minor)
    with pytest.raises(modelkit.EnvironmentMismatchError) as caught:
        modelkit.load(bundle, version_policy=policy)

    advised = _advised_policy(caught.value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", modelkit.EnvironmentMismatchWarning)
        model = modelkit.load(bundle, version_policy=advised)  # type: ignore[arg-type]

    assert advised != policy
    assert_predicts_like(model, estimator)


def test_ignore_policy_loads_silently_despite_a_major_difference(
    bundle: Path, estimator: Any
) -> None:
    _installed, _other_minor, other_major = _sklearn_versions()
    set_package_version(bundle, "scikit-learn", other_major)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = modelkit.load(bundle, version_policy="ignore")

    assert_predicts_like(model, estimator)


def test_recorded_package_that_is_not_installed_is_refused(bundle: Path) -> None:
    absent = "modelkit-test-distribution-that-is-not-installed"
    set_package_version(bundle, absent, "1.0.0")

    with pytest.raises(modelkit.EnvironmentMismatchError) as caught:
        modelkit.load(bundle)

    assert caught.value.mismatches == {absent: ("1.0.0", None)}
    assert absent in str(caught.value)


def test_unknown_version_policy_is_a_value_error(bundle: Path) -> None:
    with pytest.raises(ValueError, match="version_policy"):
        modelkit.load(bundle, version_policy="lenient")  # type: ignore[arg-type]


def test_loaded_manifest_is_the_one_save_returned_and_wrote(tmp_path: Path, estimator: Any) -> None:
    features, _labels = iris()
    manifest = modelkit.save(
        estimator,
        tmp_path / "m",
        name="iris",
        version="1.0.0",
        sample_input=features[:10],
        metadata={"trained_on": "iris"},
    )

    assert modelkit.load(tmp_path / "m").manifest == manifest
    assert json.loads((tmp_path / "m" / MANIFEST).read_text())["metadata"] == {"trained_on": "iris"}
    assert modelkit.load(tmp_path / "m").predict(first_record()).label == 0


def test_manifest_with_a_duplicated_key_is_rejected(tmp_path: Path) -> None:
    bundle = save_bundle(fit_logistic(), tmp_path / "dup")
    raw = (bundle / MANIFEST).read_text()
    (bundle / MANIFEST).write_text(
        raw.replace(
            '{\n  "format_version": 1,', '{\n  "format_version": 1,\n  "format_version": 1,', 1
        )
    )
    with pytest.raises(modelkit.BundleError, match="appears twice"):
        modelkit.load(bundle)


def _other_python(document: dict[str, Any]) -> None:
    document["environment"]["python"] = "3.2.0"


def test_another_python_warns_for_a_pickled_bundle(bundle: Path) -> None:
    edit_manifest(bundle, _other_python)
    with pytest.warns(modelkit.EnvironmentMismatchWarning, match="python 3.2.0"):
        modelkit.load(bundle)


def test_another_python_does_not_matter_to_an_onnx_bundle(
    tmp_path: Path, onnx_bundle: Path
) -> None:
    copy = Path(shutil.copytree(onnx_bundle, tmp_path / "copy"))
    edit_manifest(copy, _other_python)
    modelkit.load(copy, version_policy="error")  # no warning, no error
