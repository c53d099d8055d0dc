"""Fit the iris classifier this example serves, and save it as an ONNX bundle with a lock file.

The bundle and ``models.lock`` are committed; run this only to regenerate them (from a
checkout, with the development environment)::

    python examples/fastapi_app/train.py
"""

from __future__ import annotations

import os
from pathlib import Path

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modelkit

HERE = Path(__file__).resolve().parent
BUNDLE = Path("bundles") / "iris"  # relative to HERE, as models.toml and the lock say it


def main() -> None:
    iris = load_iris(as_frame=True)
    X = iris.data.rename(columns=lambda c: c.removesuffix(" (cm)").replace(" ", "_"))
    y = iris.target.map(dict(enumerate(iris.target_names)))
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)

    # Relative paths from here on, so that the lock file records "bundles/iris" rather than
    # this machine's absolute path.
    os.chdir(HERE)
    BUNDLE.parent.mkdir(exist_ok=True)
    # Converted to ONNX (and checked for parity with scikit-learn) before anything is written;
    # serving it then needs onnxruntime only.
    manifest = modelkit.save(
        classifier,
        BUNDLE,
        name="iris",
        version="1.0.0",
        format="onnx",
        sample_input=X.head(20),
        reference=X,
        metadata={"dataset": "sklearn iris", "training_accuracy": classifier.score(X, y)},
        overwrite=True,
    )
    with modelkit.Registry.from_config("models.toml") as registry:
        registry.write_lock("models.lock")
    print(f"Saved {manifest.name} {manifest.version} ({manifest.format}) to {HERE / BUNDLE}")
    print(f"  digest {modelkit.digest(BUNDLE)}, pinned in {HERE / 'models.lock'}")


if __name__ == "__main__":
    main()
