"""A bundle saved by an older scikit-learn, in a virtual environment made here from the package
index, loaded by this one: its reference cases run, and their verdict is right."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelkit
from tests.child_env import run, seeing_this_environment

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: An older release line whose wheels install on this Python and this numpy.
OLD_SKLEARN = "1.5.2"

SAVE = """
import json, sys
import numpy as np, pandas as pd, sklearn
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
import modelkit

assert sklearn.__version__ == sys.argv[2], sklearn.__version__
rng = np.random.default_rng(0)
frame = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
frame.loc[::17, "b"] = np.nan
score = frame["a"] + frame["b"].fillna(0)
labels = np.where(score > 0.3, "yes", np.where(frame["a"] < -1, "maybe", "no"))
answers = {}
for name, estimator in [
    ("forest", RandomForestClassifier(n_estimators=30, random_state=0)),
    ("logistic", LogisticRegression(max_iter=500)),
    ("imputed", make_pipeline(SimpleImputer(), LogisticRegression(max_iter=500))),
]:
    rows = frame.fillna(0.0) if name == "logistic" else frame
    estimator.fit(rows, labels)
    modelkit.save(estimator, f"{sys.argv[1]}/{name}", name=name, version="1", sample_input=rows)
    answers[name] = estimator.predict_proba(rows).tolist()
print(json.dumps(answers))
"""


def _run(*args: str | Path, cwd: Path) -> str:
    # Nothing pip downloads is cached outside the test's directory.
    return run(*args, cwd=cwd, env={**os.environ, "PIP_NO_CACHE_DIR": "1"})


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Bundles saved with scikit-learn OLD_SKLEARN, and its probabilities on the sample."""
    work = tmp_path_factory.mktemp("upgrade")
    # The older scikit-learn installed there comes before this environment's packages
    # (modelkit, numpy, pandas, joblib...), so nothing else is downloaded.
    python = seeing_this_environment(work / "venv")
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        f"scikit-learn=={OLD_SKLEARN}",
        cwd=work,
    )
    bundles = work / "bundles"
    bundles.mkdir()
    script = work / "save.py"
    script.write_text(textwrap.dedent(SAVE))
    answers = json.loads(_run(python, script, bundles, OLD_SKLEARN, cwd=work))
    return bundles, answers


@pytest.mark.parametrize("name", ["forest", "logistic"])
def test_an_upgrade_that_keeps_the_answers_says_so(
    saved: tuple[Path, dict[str, Any]], name: str
) -> None:
    import sklearn

    bundles, answers = saved
    manifest = json.loads((bundles / name / "modelkit.json").read_text())
    assert manifest["environment"]["packages"]["scikit-learn"] == OLD_SKLEARN

    with pytest.warns(modelkit.EnvironmentMismatchWarning) as caught:
        model = modelkit.load(bundles / name)

    (warning,) = caught
    assert f"scikit-learn {OLD_SKLEARN} → {sklearn.__version__}, 50 of 50 reference cases" in str(
        warning.message
    )
    # The verdict is right: this scikit-learn answers the whole sample as the old one did.
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    frame.loc[::17, "b"] = np.nan
    now = model.predict_batch(frame.fillna(0.0) if name == "logistic" else frame)
    classes = model.signature.outputs.classes
    assert classes is not None
    got = [[row.probabilities[c] for c in classes] for row in now]
    np.testing.assert_allclose(got, answers[name], rtol=1e-6, atol=1e-9)


def test_an_upgrade_that_changes_the_answers_is_caught(
    saved: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sklearn
    from sklearn.linear_model import LogisticRegression

    bundles, _answers = saved
    original = LogisticRegression.predict_proba

    # As if the new release computed the probabilities otherwise.
    def drifted(self: Any, features: Any) -> Any:
        probabilities = original(self, features) ** 1.1
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    monkeypatch.setattr(LogisticRegression, "predict_proba", drifted)

    with pytest.raises(modelkit.ReproducibilityError) as caught:
        modelkit.load(bundles / "logistic")

    assert f"scikit-learn {OLD_SKLEARN} → {sklearn.__version__}" in str(caught.value)
    assert caught.value.versions["scikit-learn"] == (OLD_SKLEARN, sklearn.__version__)
    assert caught.value.largest_difference is not None
    # The forest does not use the patched class: its cases still pass.
    with pytest.warns(modelkit.EnvironmentMismatchWarning, match="50 of 50 reference cases"):
        modelkit.load(bundles / "forest")


def test_a_pickle_the_new_release_cannot_run_is_caught_at_load(
    saved: tuple[Path, dict[str, Any]],
) -> None:
    bundles, _answers = saved

    # scikit-learn 1.5's SimpleImputer unpickles under a later release but cannot transform:
    # without the check, the first prediction would fail, in production.
    with pytest.raises(modelkit.ReproducibilityError, match="it refuses their inputs") as caught:
        modelkit.load(bundles / "imputed")

    assert f"scikit-learn {OLD_SKLEARN} → " in str(caught.value)
    with pytest.warns(modelkit.EnvironmentMismatchWarning):
        unchecked = modelkit.load(bundles / "imputed", check="off")
    with pytest.raises(Exception):  # noqa: B017 - whatever the broken pickle raises
        unchecked.predict({"a": 0.5, "b": 0.1})
