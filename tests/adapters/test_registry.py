"""The adapter registry: built-ins, third-party adapters by Protocol, and entry points."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelkit
from modelkit import adapters
from modelkit._infer import infer_tabular_signature
from modelkit._spec import Outputs, Signature, Table


class MeanRunner:
    def __init__(self, offset: float) -> None:
        self.offset = offset

    def run(self, inputs: Table | Mapping[str, Any]) -> Mapping[str, Any]:
        assert isinstance(inputs, Table)
        return {"value": inputs.matrix(np.float64).mean(axis=1) + self.offset}


class OffsetFormat:
    """A third-party format written without subclassing anything."""

    name = "offset-text"

    def accepts(self, obj: object) -> bool:
        return isinstance(obj, float)

    def save(
        self, obj: Any, directory: Path, *, sample_input: Any, inputs: Any, outputs: Any
    ) -> adapters.SavedModel:
        (directory / "offset.txt").write_text(repr(obj))
        tabular, _ = infer_tabular_signature(sample_input)
        return adapters.SavedModel(
            signature=Signature(inputs=tabular, outputs=Outputs(task="regression")),
            details={"note": "plain text"},
        )

    def load(
        self,
        artifacts: modelkit.Artifacts,
        manifest: modelkit.Manifest,
        *,
        options: Mapping[str, Any],
    ) -> MeanRunner:
        return MeanRunner(float(artifacts["offset.txt"].decode()))


@pytest.fixture
def offset_format() -> Any:
    fmt = OffsetFormat()
    adapters.register(fmt, replace=True)
    yield fmt
    adapters._registry.pop(fmt.name, None)


def test_builtin_adapters_satisfy_the_protocol() -> None:
    for name in ("joblib", "onnx", "python"):
        adapter = adapters.get(name)
        assert isinstance(adapter, adapters.Adapter)
        assert adapter.name == name


def test_unknown_format_suggests_the_near_miss(tmp_path: Path) -> None:
    with pytest.raises(modelkit.BundleError, match="Did you mean 'joblib'"):
        modelkit.save(object(), tmp_path / "m", name="m", version="1", format="jobllib")


def test_third_party_adapter_saves_and_loads(tmp_path: Path, offset_format: Any) -> None:
    assert "offset-text" in adapters.available()
    manifest = modelkit.save(0.5, tmp_path / "o", name="o", version="1", sample_input=[[1.0, 3.0]])
    assert manifest.format == "offset-text"
    model = modelkit.load(tmp_path / "o")
    assert model.predict([1.0, 3.0]).value == 2.5
    assert isinstance(model.runner, adapters.Runner)  # type: ignore[attr-defined]


def test_registering_a_taken_name_needs_replace(offset_format: Any) -> None:
    with pytest.raises(ValueError, match="already registered"):
        adapters.register(offset_format)


def test_entry_point_adapters_are_found_on_demand(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    entry = EntryPoint(
        name="offset-text", value=f"{__name__}:OffsetFormat", group=adapters.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(
        adapters,
        "entry_points",
        lambda group: [entry] if group == adapters.ENTRY_POINT_GROUP else [],
    )
    monkeypatch.setitem(adapters._entry_points, "loaded", False)
    try:
        assert isinstance(adapters.get("offset-text"), OffsetFormat)
    finally:
        adapters._registry.pop("offset-text", None)


def test_a_broken_plugin_only_fails_its_own_format(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = EntryPoint(
        name="broken", value="modelkit_no_such_plugin:Adapter", group=adapters.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(adapters, "entry_points", lambda group: [entry])
    monkeypatch.setitem(adapters._entry_points, "loaded", False)
    monkeypatch.setattr(adapters, "_broken", {})
    assert "joblib" in adapters.available()
    with pytest.raises(modelkit.BundleError, match="failed to import"):
        adapters.get("broken")


def test_an_object_no_adapter_accepts_is_refused(tmp_path: Path) -> None:
    with pytest.raises(modelkit.BundleError, match="No format can save"):
        modelkit.save(object(), tmp_path / "m", name="m", version="1")


class RefusingRunner:
    def run(self, inputs: Table | Mapping[str, Any]) -> Mapping[str, Any]:
        assert isinstance(inputs, Table)
        if (inputs.matrix() < 0).any():
            try:
                raise ValueError("negative values are not allowed")
            except ValueError as exc:
                raise adapters.rejected(exc) from exc
        return {"value": inputs.matrix().sum(axis=1)}


def test_a_third_party_runner_rejects_input_through_the_public_helper(
    tmp_path: Path, offset_format: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    modelkit.save(0.0, tmp_path / "o", name="o", version="1", sample_input=[[1.0, 3.0]])
    monkeypatch.setattr(
        OffsetFormat, "load", lambda self, artifacts, manifest, *, options: RefusingRunner()
    )
    model = modelkit.load(tmp_path / "o")
    with pytest.raises(
        modelkit.InvalidInputError, match="Record 1: the model rejected the input"
    ) as info:
        model.predict_batch([[1.0, 2.0], [-1.0, 2.0]])
    assert info.value.index == 1
    assert model.predict([1.0, 2.0]).value == 3.0


def test_the_first_refused_record_of_a_large_batch_is_named_in_a_few_runs(
    tmp_path: Path, offset_format: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past 10,000 rows (where a row-by-row search used to give up), halving the batch still
    # names the first refused record, in about log2(rows) runs rather than one per row.
    runner = RefusingRunner()
    runs: list[int] = []
    original = runner.run

    def counted(inputs: Table | Mapping[str, Any]) -> Mapping[str, Any]:
        assert isinstance(inputs, Table)
        runs.append(inputs.length)
        return original(inputs)

    runner.run = counted  # type: ignore[method-assign]
    modelkit.save(0.0, tmp_path / "o", name="o", version="1", sample_input=[[1.0, 3.0]])
    monkeypatch.setattr(OffsetFormat, "load", lambda self, artifacts, manifest, *, options: runner)
    model = modelkit.load(tmp_path / "o")
    rows = np.ones((50_000, 2))
    rows[[31_337, 40_000], 0] = -1.0
    with pytest.raises(modelkit.InvalidInputError, match="Record 31337: ") as info:
        model.predict_batch(rows)
    assert info.value.index == 31_337
    assert len(runs) <= 20
    assert sum(runs) <= 2 * len(rows)
