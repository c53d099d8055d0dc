"""modelkit quickstart: fit, save a bundle, load it back, predict one record and a batch.

Run it from a checkout:  python examples/quickstart.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import train_test_split

import modelkit


def main() -> None:
    # 1. A data scientist fits a model in a notebook, on a dataset scikit-learn ships.
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    classifier = HistGradientBoostingClassifier(random_state=0).fit(X_train, y_train)
    print(f"Trained {type(classifier).__name__} on {len(X_train)} rows, {X.shape[1]} features.")

    with tempfile.TemporaryDirectory() as workdir:
        bundle = Path(workdir) / "cancer"

        # 2. Save it as a bundle: artifacts plus a manifest with the signature and hashes.
        manifest = modelkit.save(
            classifier,
            bundle,
            name="cancer",
            version="1.0.0",
            sample_input=X_train.head(100),
            metadata={
                "dataset": "sklearn breast_cancer",
                "test_accuracy": classifier.score(X_test, y_test),
            },
        )
        print(f"Saved {manifest.name} {manifest.version} ({manifest.format}, {manifest.task})")
        print(f"  files:  {', '.join(f'{a.path} ({a.size:,} bytes)' for a in manifest.artifacts)}")
        print(f"  digest: {modelkit.digest(bundle)}")

        # 3. The application loads it at start-up; every byte is verified before unpickling.
        started = time.perf_counter()
        model = modelkit.load(bundle, sha256=modelkit.digest(bundle))
        print(f"Loaded {model!r} in {1000 * (time.perf_counter() - started):.1f} ms")

        # 4. One record, as a request handler would receive it.
        record = X_test.iloc[0].to_dict()
        output = model.predict(record)
        print(f"One record -> label {output.label}, P(benign) = {output.probabilities[1]:.3f}")

        # 5. A batch: columnar results, no Python object per row until you ask.
        predictions = model.predict_batch(X_test)
        accuracy = (predictions["label"] == y_test.to_numpy()).mean()
        print(f"A batch of {len(predictions)} -> accuracy {accuracy:.3f}")
        print(predictions.to_pandas().head(3).to_string())

        # 6. Bad input gets a clear error naming the field, and the model keeps serving.
        try:
            model.predict({**record, "mean radius": "large"})
        except modelkit.InvalidInputError as error:
            print(f"Refused a bad record: {error}")
        assert model.predict(record) == output


if __name__ == "__main__":
    main()
