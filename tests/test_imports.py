"""``import modelkit`` stays light, and serving ONNX never pulls in scikit-learn or pandas."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = (
    "sklearn",
    "onnxruntime",
    "pandas",
    "skl2onnx",
    "flask",
    "django",
    "fastapi",
    "starlette",
    "pyspark",
    "scipy",
    "prometheus_client",
)


def _modules_after(code: str) -> set[str]:
    script = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    return {name.partition(".")[0] for name in json.loads(output.splitlines()[-1])}


def test_import_modelkit_imports_no_heavy_library() -> None:
    loaded = _modules_after("import modelkit")
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_serving_an_onnx_bundle_imports_neither_sklearn_nor_pandas(onnx_bundle: Path) -> None:
    loaded = _modules_after(
        "import modelkit, numpy as np\n"
        f"model = modelkit.load({str(onnx_bundle)!r})\n"
        "model.predict([0.5] * 20)\n"
        "model.predict_batch(np.zeros((3, 20)))\n"
        "model.predict({f'x{i}': 1.0 for i in range(20)})\n"
    )
    assert "onnxruntime" in loaded
    assert "sklearn" not in loaded
    assert "pandas" not in loaded
