"""Train the example's model and ship it inside the package: a bundle plus its lock file.

Run it from the modelkit checkout:  python examples/packaged_model/train.py

It writes ``churn_app/bundles/churn`` (an ONNX bundle, so the application needs neither
scikit-learn nor skl2onnx at run time) and ``churn_app/models.lock`` (its digest). Commit both;
CI checks them with ``modelkit verify --lock churn_app/models.lock``.
"""

from __future__ import annotations

from pathlib import Path

from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modelkit

PACKAGE = Path(__file__).parent / "churn_app"
FEATURES = ["mean radius", "mean texture", "mean smoothness", "worst area"]


def main() -> None:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X[FEATURES]
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    bundle = PACKAGE / "bundles" / "churn"
    bundle.parent.mkdir(exist_ok=True)
    manifest = modelkit.save(
        pipeline,
        bundle,
        name="churn",
        version="1.0.0",
        format="onnx",
        sample_input=X,
        metadata={"training_rows": len(X), "dataset": "sklearn breast_cancer"},
        overwrite=True,
    )
    with modelkit.Registry() as registry:
        registry.add("churn", bundle)
        # Paths in the lock file are relative to it: it holds wherever the package is installed.
        registry.write_lock(PACKAGE / "models.lock")
    print(f"Saved {manifest.name} {manifest.version} to {bundle}, digest {modelkit.digest(bundle)}")


if __name__ == "__main__":
    main()
