"""The skops adapter: scikit-learn without pickle, loading only the types the caller trusts."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelkit
from modelkit.cli import cli
from tests.adapters import zoo

pytest.importorskip("skops")

TREE = "sklearn.tree._tree.Tree"
# What the pipeline below holds that skops does not trust by default: the dtype SimpleImputer
# records, and the forest's trees.
DTYPE = "numpy.dtype"
FOREST_TYPES = (DTYPE, TREE)
ARTIFACT = "artifacts/model.skops"
# Pickle's protocol marker (PROTO, then 2 to 5) opens every pickle joblib or pickle writes.
PICKLE_STARTS = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))
# One estimator for each kind of type skops does not trust by default (trees, neighbors,
# Gaussian process kernels, optimizers) and one it trusts. scikit-learn's whole zoo runs in the
# joblib tests (and passes through skops too, in 33 s: too long for CI); histogram boosting's
# TreePredictor runs in the real-data tests, on one thread (its own threads spin on busy CI).
SAMPLED_CLASSIFIERS = ("KNeighborsClassifier", "MLPClassifier", "RandomForestClassifier")
SAMPLED_REGRESSORS = ("GaussianProcessRegressor", "Ridge")


def _frame() -> tuple[Any, np.ndarray]:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "plan": pd.Categorical(["basic", "pro", "team", "basic"] * 15),
            "city": ["paris", "lyon", None, "nice"] * 15,
            "tenure": np.arange(60) % 13,
            "spend": np.linspace(1.0, 90.0, 60),
        }
    )
    return frame, np.arange(60) % 3


def _pipeline(final: Any) -> Any:
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, labels = _frame()
    return make_pipeline(
        make_column_transformer(
            (
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                ["plan", "city"],
            ),
            (StandardScaler(), ["tenure", "spend"]),
        ),
        final,
    ).fit(frame, labels)


def _forest() -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return _pipeline(RandomForestClassifier(n_estimators=5, random_state=0))


def _save(estimator: Any, path: Path) -> Path:
    frame, _ = _frame()
    modelkit.save(estimator, path, name="churn", version="1", format="skops", sample_input=frame)
    return path


@pytest.fixture(scope="module")
def forest_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(_forest(), tmp_path_factory.mktemp("skops") / "forest")


def _refuse_to_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt of skops to build an object fail the test."""
    import skops.io

    def built(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("skops built an object")

    monkeypatch.setattr(skops.io, "loads", built)
    monkeypatch.setattr(skops.io, "load", built)


# -- round trips ------------------------------------------------------------------------------


def test_a_pipeline_round_trips_exactly(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    pipeline = _pipeline(LogisticRegression(max_iter=500))
    frame, _ = _frame()
    model = modelkit.load(_save(pipeline, tmp_path / "p"), trusted_types=[DTYPE], check="error")
    assert model.format == "skops"
    batch = model.predict_batch(frame)
    np.testing.assert_array_equal(batch["label"], pipeline.predict(frame))
    np.testing.assert_array_equal(batch["probabilities"], pipeline.predict_proba(frame))
    record = frame.iloc[[2]].to_dict(orient="records")[0]
    assert model.predict(record).label == pipeline.predict(frame.iloc[[2]])[0]


def test_signature_and_one_pass_labels_are_the_joblib_bundles(
    tmp_path: Path, forest_bundle: Path
) -> None:
    joblib_path = tmp_path / "joblib"
    frame, _ = _frame()
    modelkit.save(_forest(), joblib_path, name="churn", version="1.0.0", sample_input=frame)
    joblib_model = modelkit.load(joblib_path)
    skops_model = modelkit.load(forest_bundle, trusted_types=FOREST_TYPES)
    assert skops_model.signature == joblib_model.signature
    skops_manifest, joblib_manifest = skops_model.manifest, joblib_model.manifest
    assert skops_manifest is not None
    assert joblib_manifest is not None
    assert skops_manifest.adapter == {**joblib_manifest.adapter, "artifact": "model.skops"}
    assert skops_manifest.adapter["labels"] == "argmax"
    assert skops_manifest.profile == joblib_manifest.profile
    assert "skops" in skops_manifest.environment.packages
    assert "joblib" not in skops_manifest.environment.packages


@pytest.mark.parametrize(
    ("name", "cls"),
    zoo.default_estimators("classifier", SAMPLED_CLASSIFIERS),
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_sampled_default_classifiers_round_trip(
    name: str, cls: type, classification_data: Any, tmp_path: Path
) -> None:
    estimator, X = zoo.fit(cls, *classification_data)
    zoo.assert_round_trip(estimator, X, tmp_path / name, task="classification", format="skops")


@pytest.mark.parametrize(
    ("name", "cls"),
    zoo.default_estimators("regressor", SAMPLED_REGRESSORS),
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_sampled_default_regressors_round_trip(
    name: str, cls: type, regression_data: Any, tmp_path: Path
) -> None:
    estimator, X = zoo.fit(cls, *regression_data)
    zoo.assert_round_trip(estimator, X, tmp_path / name, task="regression", format="skops")


def test_reference_cases_are_kept_and_answered_with_the_trusted_types(forest_bundle: Path) -> None:
    from modelkit._api import run_reference_cases

    assert (forest_bundle / "artifacts/reference-cases.json").is_file()
    with pytest.raises(modelkit.BundleError):
        run_reference_cases(forest_bundle)
    ran = run_reference_cases(forest_bundle, trusted_types=FOREST_TYPES)
    assert ran is not None
    _, verdict = ran
    assert verdict.passed
    assert verdict.identical == verdict.total > 0


def test_no_pickle_anywhere_in_the_bundle(forest_bundle: Path) -> None:
    files = [p for p in forest_bundle.rglob("*") if p.is_file()]
    assert {p.relative_to(forest_bundle).as_posix() for p in files} >= {"modelkit.json", ARTIFACT}
    for path in files:
        assert path.suffix not in (".pkl", ".pickle", ".joblib"), path
        data = path.read_bytes()
        assert not data.startswith(PICKLE_STARTS), path
        if path.suffix == ".json":
            json.loads(data)
    with zipfile.ZipFile(forest_bundle / ARTIFACT) as archive:
        names = archive.namelist()
        assert "schema.json" in names
        for name in names:
            member = archive.read(name)
            assert not member.startswith(PICKLE_STARTS), name
            assert name == "schema.json" or name.endswith(".npy"), name
            if name.endswith(".npy"):
                handle = io.BytesIO(member)
                version = np.lib.format.read_magic(handle)
                assert version == (1, 0), name
                _, _, dtype = np.lib.format.read_array_header_1_0(handle)
                assert not dtype.hasobject, name  # an object array is saved as a pickle


def test_an_object_skops_cannot_rebuild_is_not_saved(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = zoo.classification_data()
    pipeline = make_pipeline(FunctionTransformer(lambda x: x), LogisticRegression()).fit(X, y)
    with pytest.raises(modelkit.BundleError, match=r"cannot rebuild it.*format='joblib'"):
        modelkit.save(pipeline, tmp_path / "p", name="p", version="1", format="skops")
    assert not (tmp_path / "p").exists()


# -- trust ----------------------------------------------------------------------------------


def test_an_untrusted_type_is_refused_naming_it_and_how_to_trust_it(
    forest_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _refuse_to_build(monkeypatch)
    with pytest.raises(modelkit.BundleError) as info:
        modelkit.load(forest_bundle)
    error = info.value
    assert error.untrusted_types == FOREST_TYPES
    assert error.path == ARTIFACT
    assert f'trusted_types=["{DTYPE}", "{TREE}"]' in str(error)
    assert f"--trust-type {DTYPE} --trust-type {TREE}" in str(error)
    assert "reviewed" in str(error)


def test_the_listed_types_once_trusted_load_the_model(forest_bundle: Path) -> None:
    frame, _ = _frame()
    model = modelkit.load(forest_bundle, trusted_types=FOREST_TYPES, check="error")
    np.testing.assert_array_equal(model.predict_batch(frame)["label"], _forest().predict(frame))


@pytest.mark.parametrize(
    "near",
    [
        "sklearn.tree._tree.Tree2",
        "Tree",
        "sklearn.tree._tree",
        "sklearn.*",
        "*",
        "sklearn.tree._tree.Tree ",
        "sklearn.tree._tree.\u0422ree",  # a Cyrillic capital Te
    ],
)
def test_trusting_other_types_trusts_nothing_more(forest_bundle: Path, near: str) -> None:
    with pytest.raises(modelkit.BundleError) as info:
        modelkit.load(forest_bundle, trusted_types=[DTYPE, near])
    assert info.value.untrusted_types == (TREE,)


def test_trusted_types_may_be_any_iterable_of_names(forest_bundle: Path) -> None:
    model = modelkit.load(forest_bundle, trusted_types=(name for name in FOREST_TYPES))
    assert model.format == "skops"


@pytest.mark.parametrize("given_types", [TREE, [TREE, 3], [b"sklearn"]])
def test_trusted_types_must_be_a_list_of_names(forest_bundle: Path, given_types: Any) -> None:
    with pytest.raises(TypeError, match="list of full type names"):
        modelkit.load(forest_bundle, trusted_types=given_types)


def test_trusted_types_go_to_load_not_to_adapter_options(forest_bundle: Path) -> None:
    with pytest.raises(TypeError, match=r"trusted_types= to modelkit\.load"):
        modelkit.load(forest_bundle, adapter_options={"trusted_types": FOREST_TYPES})


def test_other_formats_ignore_trusted_types(tmp_path: Path) -> None:
    from tests.bundle_fixtures import fit_logistic, save_bundle

    model = modelkit.load(save_bundle(fit_logistic(), tmp_path / "b"), trusted_types=[TREE])
    assert model.format == "joblib"


def test_a_registry_config_passes_its_trusted_types(forest_bundle: Path) -> None:
    refused = {"models": {"churn": {"path": str(forest_bundle)}}}
    with pytest.raises(modelkit.BundleError, match=f"models.churn: .*{TREE}"):
        modelkit.Registry.from_config(refused)
    trusted = {
        "models": {"churn": {"path": str(forest_bundle), "trusted_types": list(FOREST_TYPES)}}
    }
    with modelkit.Registry.from_config(trusted) as registry:
        assert registry["churn"].model.format == "skops"


def test_a_registry_config_refuses_a_string_of_trusted_types(forest_bundle: Path) -> None:
    config = {"models": {"churn": {"path": str(forest_bundle), "trusted_types": TREE}}}
    with pytest.raises(ValueError, match=r"models\.churn\.trusted_types"):
        modelkit.Registry.from_config(config)


# -- tampered and hostile files ---------------------------------------------------------------


def _copy(bundle: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(bundle, target)
    return target


def test_a_tampered_artifact_is_refused_before_skops_reads_it(
    forest_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import skops.io

    from tests.bundle_fixtures import flip_byte, replace_artifact

    bundle = _copy(forest_bundle, tmp_path / "tampered")
    data = (bundle / ARTIFACT).read_bytes()
    replace_artifact(bundle, flip_byte(data), rehash=False, name=ARTIFACT)
    _refuse_to_build(monkeypatch)

    def read(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("skops read the tampered file")

    monkeypatch.setattr(skops.io, "get_untrusted_types", read)
    with pytest.raises(modelkit.IntegrityError) as info:
        modelkit.load(bundle, trusted_types=FOREST_TYPES)
    assert info.value.path == ARTIFACT


def _zip(*members: tuple[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def _skops_file(schema: Any) -> bytes:
    text = schema if isinstance(schema, bytes) else json.dumps(schema).encode()
    return _zip(("schema.json", text))


def _state(cls: str, module: str, loader: str, saved_id: int, **fields: Any) -> dict[str, Any]:
    return {
        "__class__": cls,
        "__module__": module,
        "__loader__": loader,
        "__id__": saved_id,
        **fields,
    }


def _references(depth: int) -> bytes:
    """Lists each holding the next twice, the second time as a bare back reference: ``depth``
    states for skops' audit to walk 2**depth times."""
    node = _state("str", "builtins", "JsonNode", depth + 1, content='"x"')
    for saved_id in range(depth, 0, -1):
        node = _state(
            "list", "builtins", "ListNode", saved_id, content=[node, {"__id__": saved_id + 1}]
        )
    return _skops_file({**node, "protocol": 2})


def _shared_member(readers: int, size: int) -> bytes:
    """One ``size``-byte array that ``readers`` objects each read again."""
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(size // 8))
    arrays = [
        _state("ndarray", "numpy", "NdArrayNode", i + 2, type="numpy", file="a.npy")
        for i in range(readers)
    ]
    schema = {**_state("list", "builtins", "ListNode", 1, content=arrays), "protocol": 2}
    return _zip(("schema.json", json.dumps(schema).encode()), ("a.npy", buffer.getvalue()))


def _lying_member(inflated: int) -> bytes:
    """A deflated schema whose stream inflates to ``inflated`` bytes, declared as its first few."""
    import zlib

    schema = json.dumps({**_state("list", "builtins", "ListNode", 1, content=[]), "protocol": 2})
    declared = _zip(("schema.json", schema.encode()), compression=zipfile.ZIP_DEFLATED)
    packer = zlib.compressobj(1, zlib.DEFLATED, -15)
    stream = packer.compress(schema.encode())
    stream += b"".join(packer.compress(bytes(2**20)) for _ in range(inflated // 2**20))
    stream += packer.flush()
    # The member's data is replaced by the long stream; only the sizes of its data move.
    header = (
        30 + int.from_bytes(declared[26:28], "little") + int.from_bytes(declared[28:30], "little")
    )
    old_size = int.from_bytes(declared[18:22], "little")
    data = bytearray(declared[:header] + stream + declared[header + old_size :])
    data[18:22] = len(stream).to_bytes(4, "little")
    directory = data.index(b"PK\x01\x02")
    data[directory + 20 : directory + 24] = len(stream).to_bytes(4, "little")
    end = data.rindex(b"PK\x05\x06")
    data[end + 16 : end + 20] = directory.to_bytes(4, "little")
    return bytes(data)


def _overlapping() -> bytes:
    """Two stored members, the first declared to run on over the second."""
    data = bytearray(_zip(("schema.json", b"{}"), ("b.npy", bytes(64))))
    directory = data.index(b"PK\x01\x02")
    for offset in (20, 24):  # compressed and uncompressed sizes, as a stored member has them
        data[directory + offset : directory + offset + 4] = (2 + 30 + 5 + 64).to_bytes(4, "little")
    return bytes(data)


def _deep(depth: int) -> bytes:
    """A schema of lists nested ``depth`` deep, written as text (json.dumps would recurse)."""
    node = '"__class__": "list", "__module__": "builtins", "__loader__": "ListNode"'
    leaf = '{"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode"}'
    body = ("{" + node + ', "content": [') * depth + leaf + "]}" * depth
    return ('{"protocol": 2, ' + node + ', "content": [' + body + "]}").encode()


HOSTILE = {
    "not a zip": b"PK\x03\x04 not really",
    "no schema": _zip(("other.json", b"{}")),
    "invalid json": _skops_file(b"{not json"),
    "no protocol": _skops_file({"__class__": "dict", "__module__": "builtins"}),
    "protocol from the future": _skops_file({"protocol": 10**6, "__loader__": "DictNode"}),
    "unknown loader": _skops_file(
        {"protocol": 2, "__class__": "X", "__module__": "m", "__loader__": "EvalNode"}
    ),
    "nested past the recursion limit": _skops_file(_deep(5000)),
    # Any compressed member: a deflated one inflates whole in one call, whatever it declares.
    "deflated": _zip(("schema.json", b"{}"), compression=zipfile.ZIP_DEFLATED),
    "bzip2": _zip(("schema.json", b"{}"), compression=zipfile.ZIP_BZIP2),
    "overlapping members": _overlapping(),
    "a member read for two objects": _shared_member(2, 64),
    "an object holding itself": _skops_file(
        {**_state("list", "builtins", "ListNode", 1, content=[{"__id__": 1}]), "protocol": 2}
    ),
    "back references doubling the audit": _references(3),
    "a type name with a terminal escape": _skops_file(
        {**_state("X\x1b[2J", "os", "ObjectNode", 1), "protocol": 2}
    ),
}


@pytest.mark.parametrize("data", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_skops_file_is_a_bundle_error(
    forest_bundle: Path, tmp_path: Path, data: bytes
) -> None:
    from tests.bundle_fixtures import replace_artifact

    bundle = _copy(forest_bundle, tmp_path / "hostile")
    replace_artifact(bundle, data, rehash=True, name=ARTIFACT)
    with pytest.raises(modelkit.BundleError) as info:
        modelkit.load(bundle, trusted_types=FOREST_TYPES)
    assert info.value.path == ARTIFACT


def test_a_file_calling_for_os_system_is_refused_as_untrusted(
    forest_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.bundle_fixtures import replace_artifact

    schema = {
        "protocol": 2,
        "_skops_version": "0.16.0",
        "__class__": "system",
        "__module__": "os",
        "__loader__": "TypeNode",
        "__id__": 1,
    }
    bundle = _copy(forest_bundle, tmp_path / "system")
    replace_artifact(bundle, _skops_file(schema), rehash=True, name=ARTIFACT)
    _refuse_to_build(monkeypatch)
    with pytest.raises(modelkit.BundleError) as info:
        modelkit.load(bundle, trusted_types=FOREST_TYPES)
    assert info.value.untrusted_types == ("os.system",)


def test_crafted_files_are_refused_in_time_and_memory_in_proportion_to_them(
    tmp_path: Path,
) -> None:
    from tests.limited import run_limited

    attacks = {
        # 60 states that skops' audit would walk 2**60 times.
        "references": _references(60),
        # 1.4 MB, read 3,000 times over: 3 GiB.
        "shared": _shared_member(3000, 2**20),
        # 0.5 MB declaring a 100-byte schema, inflating to 512 MiB in one call.
        "lying": _lying_member(2**29),
    }
    for name, data in attacks.items():
        (tmp_path / name).write_bytes(data)
    outcome = run_limited(
        f"""
        from pathlib import Path
        from modelkit.adapters._skops import untrusted_types
        from modelkit.errors import BundleError

        for name in {list(attacks)!r}:
            try:
                untrusted_types(Path({str(tmp_path)!r}, name).read_bytes(), path=name)
            except BundleError as error:
                report(name=name, error=str(error), peak=peak())
            else:
                report(name=name, error=None, peak=peak())
        """,
        memory=768 * 2**20,
        timeout=60,
    )
    results = [
        json.loads(line.removeprefix("@@result@@"))
        for line in outcome.stdout.splitlines()
        if line.startswith("@@result@@")
    ]
    assert [r["name"] for r in results] == list(attacks), outcome.stderr
    for result in results:
        assert result["error"] is not None, result
        assert "MemoryError" not in result["error"], result
        assert result["peak"] < 400 * 2**20, result


def test_inspect_lists_a_hostile_files_types_without_building_them(
    forest_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.bundle_fixtures import replace_artifact

    schema = {**_state("system", "os", "ConstructorFromReduceNode", 1), "protocol": 2}
    schema["content"] = _state("tuple", "builtins", "TupleNode", 2, content=[])
    listed = _copy(forest_bundle, tmp_path / "listed")
    replace_artifact(listed, _skops_file(schema), rehash=True, name=ARTIFACT)
    refused = _copy(forest_bundle, tmp_path / "refused")
    replace_artifact(
        refused, HOSTILE["a type name with a terminal escape"], rehash=True, name=ARTIFACT
    )
    _refuse_to_build(monkeypatch)
    runner = CliRunner()
    result = runner.invoke(cli, ["inspect", str(listed), "--json"])
    assert result.exit_code == 0, result.output
    types = {t["name"]: t["trusted_by_default"] for t in json.loads(result.output)["types"]}
    assert types == {"os.system": False}
    result = runner.invoke(cli, ["inspect", str(refused)])
    assert result.exit_code == 1
    assert f"{ARTIFACT} names a type that is no Python name: 'os.X\\x1b[2J'" in result.output


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["__class__", "__module__", "__loader__", "content", "protocol", "x"]),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=_JSON)
def test_any_schema_is_refused_or_read_never_a_raw_error(schema: Any) -> None:
    from modelkit.adapters._skops import types_in, untrusted_types

    data = _skops_file(schema)
    for read in (untrusted_types, types_in):
        try:
            read(data, path=ARTIFACT)
        except modelkit.BundleError as error:
            refused = error
        else:
            continue
        assert refused.path == ARTIFACT


# -- the command line -------------------------------------------------------------------------


def test_inspect_lists_the_types_without_building_them(
    forest_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _refuse_to_build(monkeypatch)
    runner = CliRunner()
    result = runner.invoke(cli, ["inspect", str(forest_bundle), "--json"])
    assert result.exit_code == 0, result.output
    types = {t["name"]: t["trusted_by_default"] for t in json.loads(result.output)["types"]}
    assert types[TREE] is False
    assert types["sklearn.pipeline.Pipeline"] is True
    assert types["sklearn.ensemble._forest.RandomForestClassifier"] is True
    assert not any(name.startswith("builtins.") for name in types)
    text = runner.invoke(cli, ["inspect", str(forest_bundle)]).output
    assert "2 not trusted by default" in text
    assert [line.split() for line in text.splitlines() if TREE in line] == [
        [TREE, "no:", "needs", "--trust-type"]
    ]


def test_convert_takes_a_skops_bundle_with_its_trusted_types(
    forest_bundle: Path, tmp_path: Path
) -> None:
    pytest.importorskip("skl2onnx")
    runner = CliRunner()
    refused = runner.invoke(cli, ["convert", str(forest_bundle), "-o", str(tmp_path / "a")])
    assert refused.exit_code == 1
    assert "--trust-type" in refused.output
    done = runner.invoke(
        cli,
        [
            *("convert", str(forest_bundle), "-o", str(tmp_path / "b")),
            *("--trust-type", DTYPE, "--trust-type", TREE),
        ],
    )
    assert done.exit_code == 0, done.output
    converted = modelkit.load(tmp_path / "b")
    assert converted.format == "onnx"
    assert converted.manifest is not None
    assert converted.manifest.metadata["converted_from"]["format"] == "skops"  # type: ignore[index,call-overload]
    frame, _ = _frame()
    np.testing.assert_array_equal(converted.predict_batch(frame)["label"], _forest().predict(frame))
