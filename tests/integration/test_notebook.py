"""The notebook path (examples/notebook.ipynb), executed by a real Jupyter kernel as a data
scientist would run it, its outputs checked, so the notebook never rots."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")
pytest.importorskip("palmerpenguins")

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NOTEBOOK = Path(__file__).parents[2] / "examples" / "notebook.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The notebook run top to bottom in a fresh kernel, in a directory of its own; its code
    cells by tag."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    workdir = tmp_path_factory.mktemp("notebook")
    client = nbclient.NotebookClient(
        notebook,
        timeout=180,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    cells = {}
    for cell in notebook.cells:
        for tag in cell.metadata.get("tags", []):
            cells[tag] = cell
    return {"cells": cells, "workdir": workdir}


def _text(cell: Any) -> str:
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in {"execute_result", "display_data"}:
            parts.append(output.data.get("text/plain", ""))
    return "".join(parts)


def _html(cell: Any) -> str:
    return "".join(
        output.data.get("text/html", "")
        for output in cell.outputs
        if output.output_type in {"execute_result", "display_data"}
    )


def test_the_stored_notebook_has_no_outputs() -> None:
    # Outputs are made by running it; stored ones would go stale and bloat every diff.
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == []
            assert cell.execution_count is None


def test_the_table_has_the_gaps_the_notebook_speaks_of(executed: dict[str, Any]) -> None:
    text = _text(executed["cells"]["table"])
    assert re.search(r"sex\s+11", text)
    assert re.search(r"bill_length_mm\s+2", text)


def test_the_pipeline_fits_and_saves_a_verified_bundle(executed: dict[str, Any]) -> None:
    accuracy = float(re.search(r"test accuracy ([0-9.]+)", _text(executed["cells"]["fit"]))[1])
    assert accuracy > 0.95
    saved = _text(executed["cells"]["save"])
    assert "sex" in saved
    assert re.search(r"sha256:[0-9a-f]{64}", saved)
    bundle = executed["workdir"] / "penguins"
    assert (bundle / "modelkit.json").is_file()
    assert (bundle / "artifacts" / "reference-cases.json").is_file()


def test_the_model_shows_its_report_inline(executed: dict[str, Any]) -> None:
    page = _html(executed["cells"]["model"])
    assert "penguins" in page
    assert "1.0.0" in page
    assert "reference cases" in page
    # One chart per feature of the training profile, drawn by the report extra.
    assert page.count("<svg") >= 7


def test_a_record_with_a_missing_value_gets_a_label(executed: dict[str, Any]) -> None:
    text = _text(executed["cells"]["predict"])
    assert re.fullmatch(r"ClassifierOutput\(label='Gentoo', probabilities=\{.*\}\)", text.strip())


def test_the_batch_answers_the_test_rows(executed: dict[str, Any]) -> None:
    cell = executed["cells"]["batch"]
    accuracy = float(re.search(r"accuracy ([0-9.]+)", _text(cell))[1])
    assert accuracy > 0.95
    assert "<table" in _html(cell)


def test_the_drift_report_shows_inline(executed: dict[str, Any]) -> None:
    page = _html(executed["cells"]["drift"])
    assert "bill_length_mm" in page
    assert "<svg" in page
