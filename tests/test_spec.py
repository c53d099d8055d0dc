"""The signature types: their pydantic model and JSON Schema views."""

from __future__ import annotations

import modelkit
from modelkit._spec import ColumnSpec, TabularInputs

MIXED = TabularInputs(
    columns=(
        ColumnSpec(name="age", type="integer", dtype="int64"),
        ColumnSpec(name="income", type="number", dtype="float64"),
        ColumnSpec(name="plan", type="string", dtype="object", categories=("basic", "pro")),
        ColumnSpec(name="city", type="string", dtype="object", nullable=True),
        ColumnSpec(name="active", type="boolean", dtype="bool"),
    )
)
GOOD = {"age": 30, "income": 1200.5, "plan": "pro", "city": "Lyon", "active": True}


def test_input_json_schema_lists_columns_with_types() -> None:
    signature = modelkit.Signature(inputs=MIXED, outputs=modelkit.Outputs(task="regression"))
    schema = signature.input_json_schema()
    assert set(schema["required"]) == set(GOOD)
    assert schema["properties"]["plan"]["enum"] == ["basic", "pro"]
    assert schema["properties"]["age"]["type"] == "integer"
    assert schema["additionalProperties"] is False


def test_output_json_schema_of_a_classifier_names_label_and_probabilities() -> None:
    signature = modelkit.Signature(
        inputs=MIXED,
        outputs=modelkit.Outputs(task="classification", classes=(0, 1), has_probabilities=True),
    )
    schema = signature.output_json_schema()
    assert set(schema["properties"]) == {"label", "probabilities"}
