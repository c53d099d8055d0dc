"""The model report: the page's parts, escaping, the drift order, and the page without charts."""

from __future__ import annotations

import html
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import modelkit
from modelkit import _report
from modelkit._manifest import Manifest
from modelkit._model import report_page
from modelkit._reference import Difference, Verdict
from modelkit._report import LogSummary, bin_labels, render_drift, render_fragment, render_page
from modelkit._spec import Signature
from modelkit.errors import MissingDependencyError
from tests.real_data.tables import load as load_table
from tests.strategies import json_values

HOSTILE = "<script>alert(1)</script>"


def _charts(page: str) -> int:
    return len(re.findall(r"<svg\b", page))


def _sections(page: str) -> list[str]:
    return re.findall(r"<h2>([^<]*)</h2>", page)


def _no_markup_from(page: str) -> None:
    """Nothing from the bundle became markup: the page has no script, image, link or URL."""
    assert not re.search(r"<(?:script|img|a|iframe|object)\b", page, re.IGNORECASE)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:|//)""", page)


@pytest.fixture(scope="module")
def iris_model(iris_bundle: Path) -> modelkit.Model[Any, Any]:
    return modelkit.load(iris_bundle)


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    def require(module: str, **_: Any) -> Any:
        raise MissingDependencyError("matplotlib is not installed", name="matplotlib")

    monkeypatch.setattr(_report, "require", require)


# -- the parts of the page -------------------------------------------------------------------------


def test_the_page_shows_identity_signature_verdict_and_one_chart_per_profiled_feature(
    iris_bundle: Path,
) -> None:
    model = modelkit.load(iris_bundle, check="error")
    page = render_page(model)
    assert page.startswith("<!DOCTYPE html>")
    assert _sections(page) == [
        "Identity",
        "Signature",
        "Reference cases",
        "Training profile",
    ]
    assert model.digest is not None
    assert model.digest in page
    assert "scikit-learn" in page
    assert "sepal length (cm)" in page
    assert model.reference_verdict is not None
    assert model.reference_verdict.passed
    assert f"{model.reference_verdict.total} of {model.reference_verdict.total} reference" in page
    # Four input columns and the predicted label.
    assert _charts(page) == 5
    assert "DejaVuSans-" not in page  # text kept as text: no glyph paths, no font subsets
    assert "bins shown" not in page  # every bin is charted
    assert "<text" in page
    _no_markup_from(page)


def test_a_model_loaded_without_running_its_cases_says_not_run(iris_bundle: Path) -> None:
    model = modelkit.load(iris_bundle, check="off")
    assert model.reference_verdict is None
    page = render_page(model)
    assert "Not run." in page
    assert "reference cases not run" in page


def test_a_bundle_without_cases_says_so(tmp_path: Path, iris: Any, iris_classifier: Any) -> None:
    modelkit.save(iris_classifier, tmp_path / "bare", name="bare", version="1")
    model = modelkit.load(tmp_path / "bare", check="error")
    page = render_page(model)
    assert model.reference_verdict is None
    assert "No reference cases." in page
    assert "Training profile" not in _sections(page)  # no sample, no profile, no chart
    assert _charts(page) == 0


@dataclass
class _Subject:
    """A ReportSubject without a model behind it, to give the page any verdict or manifest."""

    name: str
    version: str
    format: str
    digest: str | None
    signature: Signature
    manifest: Manifest | None
    reference_verdict: Verdict | None


def _subject(model: modelkit.Model[Any, Any], **changes: Any) -> _Subject:
    subject = _Subject(
        model.name,
        model.version,
        model.format,
        model.digest,
        model.signature,
        model.manifest,
        model.reference_verdict,
    )
    return replace(subject, **changes)


def test_a_failed_verdict_names_the_rows_and_the_largest_difference(iris_bundle: Path) -> None:
    model = modelkit.load(iris_bundle)
    verdict = Verdict(
        total=20,
        identical=17,
        differing=(1, 4),
        sample_rows=tuple(range(0, 40, 2)),
        largest=Difference("probabilities", 4, 0.25, 0.75, 0.5),
        changed=Difference("label", 1, "setosa", "versicolor", None),
    )
    page = render_page(_subject(model, reference_verdict=verdict))
    assert "18 of 20 reference cases match" in page
    assert "2 of 20 reference cases differ" in page
    assert "2, 8" in page  # the sample rows of cases 1 and 4
    assert "difference 0.5" in page
    assert "then setosa, now versicolor" in page


def test_the_conversion_parity_report_is_shown(iris_bundle: Path) -> None:
    model = modelkit.load(iris_bundle)
    assert model.manifest is not None
    parity = {
        "rows": 120,
        "sample_rows": 20,
        "label_mismatches": 0,
        "max_probability_difference": 3e-7,
        "tolerance": {"probability": 1e-4},
        "worst": [{"source": "generated", "row": 7, "difference": 3e-7}],
    }
    manifest = model.manifest.model_copy(
        update={"adapter": {**model.manifest.adapter, "parity": parity, "converted_from": "x.Y"}}
    )
    page = render_page(_subject(model, manifest=manifest))
    assert "Conversion parity" in _sections(page)
    assert "label mismatches" in page
    assert "tolerance: probability" in page
    assert "generated" in page


# -- hostile bundles -------------------------------------------------------------------------------


def test_names_categories_and_metadata_from_the_bundle_are_text_not_markup(
    tmp_path: Path,
) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            HOSTILE: rng.choice([HOSTILE, "<img src=x onerror=alert(1)>", "$\\frac{1}{0}$"], 300),
            "x": rng.normal(size=300),
        }
    )
    labels = rng.choice(["<b>yes</b>", "no"], 300)
    pipeline = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), [HOSTILE]), remainder="passthrough"
        ),
        LogisticRegression(),
    ).fit(frame, labels)
    modelkit.save(
        pipeline,
        tmp_path / "hostile",
        name="hostile",
        version="1",
        sample_input=frame,
        metadata={HOSTILE: HOSTILE, "owner": "<a href='https://evil.example'>x</a>"},
    )
    model = modelkit.load(tmp_path / "hostile", drift=True)
    model.predict_batch(frame)
    page = render_page(model, drift=model.drift().to_dict())
    _no_markup_from(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerro…" in page  # a chart's tick label, cut
    # A dollar sign is not mathtext: the category is drawn as written.
    assert "$\\frac{1}{0}$" in page
    assert _charts(page) == 3


def test_a_huge_metadata_value_is_cut(iris_bundle: Path) -> None:
    model = modelkit.load(iris_bundle)
    assert model.manifest is not None
    manifest = model.manifest.model_copy(update={"metadata": {"notes": "x" * 1_000_000}})
    page = render_page(_subject(model, manifest=manifest))
    assert len(page) < 200_000


def test_a_malformed_profile_draws_no_chart_and_does_not_fail(iris_bundle: Path) -> None:
    model = modelkit.load(iris_bundle)
    assert model.manifest is not None
    profile = {"version": 1, "columns": {"a": {"kind": "numeric"}, "b": 3}, "outputs": "x"}
    manifest = model.manifest.model_copy(update={"profile": profile})
    page = render_page(_subject(model, manifest=manifest))
    assert _charts(page) == 0
    assert "Identity" in _sections(page)


def _with_column(model: modelkit.Model[Any, Any], entry: dict[str, Any]) -> _Subject:
    """The model with its first profiled column replaced by ``entry``."""
    assert model.manifest is not None
    profile = json.loads(json.dumps(model.manifest.profile))
    first = next(iter(profile["columns"]))
    profile["columns"][first] = entry
    return _subject(model, manifest=model.manifest.model_copy(update={"profile": profile}))


def _categorical(categories: list[str]) -> dict[str, Any]:
    share = 1 / (len(categories) + 1)
    return {
        "kind": "categorical",
        "categories": categories,
        "proportions": [share] * (len(categories) + 1),
        "missing_rate": 0.0,
    }


def _drawn_text(page: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r"<text\b[^>]*>([^<]*)</text>", page)]


def test_a_category_that_looks_like_an_id_or_a_reference_is_drawn_as_written(
    iris_bundle: Path,
) -> None:
    # Each chart's ids get a prefix of their own; the category names around them must not.
    tricky = ['a id="x', "url(#clip)", 'href="#q', "--><script>", "</svg><img src=x>"]
    page = render_page(_with_column(modelkit.load(iris_bundle), _categorical(tricky)))
    drawn = _drawn_text(page)
    assert all(name in drawn for name in tricky)
    _no_markup_from(page)
    tags = "".join(re.findall(r"<[^<>]*>", page))
    ids = re.findall(r' id="([^"]+)"', tags)
    assert len(ids) == len(set(ids))
    # Every reference to an id points at one of this page's.
    assert set(re.findall(r'(?:href="#|url\(#)([^")]+)', tags)) <= set(ids)


def test_categories_in_other_scripts_and_control_characters_draw_without_a_warning(
    iris_bundle: Path,
) -> None:
    # matplotlib's font has no glyph for these; the browser's fonts do (filterwarnings=error).
    page = render_page(
        _with_column(modelkit.load(iris_bundle), _categorical(["北京", "東京", "a\x00b\x1b"]))
    )
    assert {"北京", "東京", "a\ufffdb\ufffd"} <= set(_drawn_text(page))


@pytest.mark.parametrize(
    "entry",
    [
        # Integers too large for a float (JSON allows them), NaN and infinities.
        {"kind": "numeric", "edges": [1, 10**400], "proportions": [0.2, 0.3, 0.4]},
        {"kind": "numeric", "edges": [1.0, 2.0], "proportions": [0.5, 10**400, 0.1]},
        {"kind": "numeric", "edges": [1, 2], "proportions": [0.5, 0.4, 0.1], "mean": 10**400},
        {"kind": "numeric", "edges": [float("nan"), float("inf")], "proportions": [0.3] * 3},
        # Shares that are no shares: the chart would collapse under a bar of 1e308.
        {"kind": "numeric", "edges": [1, 2], "proportions": [1e308, -5.0, 0.5]},
        {
            "kind": "numeric",
            "type": "datetime",
            "edges": [1e300, 10**400],
            "proportions": [0.3] * 3,
        },
    ],
)
def test_numbers_no_float_holds_in_a_profile_are_shown_not_raised(
    iris_bundle: Path, entry: dict[str, Any]
) -> None:
    page = render_page(
        _with_column(modelkit.load(iris_bundle), {"missing_rate": 10**400, "min": 1, **entry})
    )
    assert _charts(page) == 5


# Numbers no float holds among the rest; mostly well-formed entries, so the charts are drawn.
_numbers = st.floats() | st.integers() | st.integers(min_value=2**1024)
_anything = _numbers | json_values()


def _mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` three times in four, anything the rest (``|`` would weigh it as one of many)."""
    return st.integers(0, 3).flatmap(lambda i: valid if i else _anything)


_profile_entries = st.fixed_dictionaries(
    {
        "kind": _mostly(st.sampled_from(["numeric", "categorical"])),
        "edges": _mostly(st.lists(_numbers, max_size=8)),
        "proportions": _mostly(st.lists(_numbers, max_size=10)),
    },
    optional={
        "type": _mostly(st.sampled_from(["datetime", "number"])),
        "categories": _mostly(st.lists(_anything, max_size=8)),
        **dict.fromkeys(("missing_rate", "min", "max", "mean"), _mostly(_numbers)),
    },
)


@settings(max_examples=40, deadline=None)
@given(entry=_profile_entries)
def test_any_profile_entry_makes_a_page(iris_model: modelkit.Model[Any, Any], entry: Any) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_report, "_CHARTS_SHOWN", 1)  # the entry's column only, to stay fast
        page = render_page(_with_column(iris_model, entry))
    assert "<h2>Identity</h2>" in page


def test_an_integer_beyond_a_float_gets_a_bin_label() -> None:
    assert bin_labels({"kind": "numeric", "edges": [0, 10**400]})[1:3] == [
        "0\u20131.000e+400",
        "≥ 1.000e+400",
    ]


def test_a_huge_profile_charts_a_bounded_number_of_features_and_bins_and_says_so(
    iris_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_report, "_CHARTS_SHOWN", 3)  # of 5; each chart takes a tenth of a second
    categories = [f"c{i}" for i in range(20_000)]
    page = render_page(_with_column(modelkit.load(iris_bundle), _categorical(categories)))
    assert _charts(page) == 3
    assert "The first 3 of 5 features are shown here (the signature lists every one)." in page
    assert f"the first {_report._BINS_SHOWN} of 20001 bins shown" in page
    assert "c39" in _drawn_text(page)
    assert "c40" not in _drawn_text(page)
    assert len(page) < 200_000


@pytest.mark.usefixtures("no_matplotlib")
def test_without_matplotlib_a_huge_category_list_is_cut_in_its_table(iris_bundle: Path) -> None:
    categories = [f"c{i}" for i in range(20_000)]
    page = render_page(_with_column(modelkit.load(iris_bundle), _categorical(categories)))
    assert "<td>c39</td>" in page
    assert "<td>c40</td>" not in page


def test_threads_rendering_at_once_draw_what_one_thread_draws(iris_bundle: Path) -> None:
    # matplotlib's settings are global: a server renders reports from several threads.
    model = modelkit.load(iris_bundle)

    def charts() -> list[str]:
        return re.findall(r"<svg\b.*?</svg>", render_fragment(model), re.DOTALL)

    alone = charts()
    start = threading.Barrier(6)

    def at_once(_: int) -> list[str]:
        start.wait()
        return charts()

    with ThreadPoolExecutor(6) as pool:
        drawn = list(pool.map(at_once, range(6)))
    assert all(result == alone for result in drawn)


# -- drift -----------------------------------------------------------------------------------------


def _drifted(iris_bundle: Path, iris: Any) -> tuple[modelkit.Model[Any, Any], dict[str, Any]]:
    model = modelkit.load(iris_bundle, drift=True)
    X = iris[0].sample(600, replace=True, random_state=0)
    model.predict_batch(X.assign(**{"petal width (cm)": X["petal width (cm)"] + 0.6}))
    return model, model.drift().to_dict()


def test_drifting_features_come_first_in_the_table_and_the_charts(
    iris_bundle: Path, iris: Any
) -> None:
    model, drift = _drifted(iris_bundle, iris)
    page = render_page(model, drift=drift)
    assert _sections(page)[-2:] == ["Drift", "Reference and live, per feature"]
    order = re.findall(r"<h3><code>([^<]*)</code>", page)
    statuses = {f["name"]: f["status"] for f in [*drift["features"], drift["outputs"]]}
    assert statuses["petal width (cm)"] == "significant"
    assert order[0] == "petal width (cm)"
    ranks = [["significant", "moderate", "stable"].index(statuses[name]) for name in order]
    assert ranks == sorted(ranks)
    assert "drifting feature" in page
    # Each chart compares both: the legend names the reference and the live data.
    assert page.count(">reference<") == page.count(">live<") == _charts(page) == 5


def test_a_drifting_output_is_in_the_summary_badge(iris_bundle: Path, iris: Any) -> None:
    model, drift = _drifted(iris_bundle, iris)
    stable = [{**f, "status": "stable"} for f in drift["features"]]
    outputs = {**drift["outputs"], "status": "significant"}
    page = render_page(model, drift={**drift, "features": stable, "outputs": outputs})
    assert "the output drifts in 600 records" in page
    assert "no drift" not in page
    one = [{**stable[0], "status": "significant"}, *stable[1:]]
    page = render_page(model, drift={**drift, "features": one, "outputs": outputs})
    assert "1 drifting feature and the output in 600 records" in page


def test_the_drift_report_renders_alone_in_a_notebook(iris_bundle: Path, iris: Any) -> None:
    model, _ = _drifted(iris_bundle, iris)
    fragment = model.drift()._repr_html_()
    assert fragment.startswith("<div class='mk-report'>")
    assert _sections(fragment) == ["Drift", "Reference and live, per feature"]
    assert _charts(fragment) == 5
    assert render_drift(model.drift().to_dict()) == fragment


def test_the_model_in_a_notebook_shows_its_report_and_live_drift(
    iris_bundle: Path, iris: Any
) -> None:
    model, _ = _drifted(iris_bundle, iris)
    fragment = model._repr_html_()
    assert "<html" not in fragment
    assert "Drift" in _sections(fragment)
    assert modelkit.load(iris_bundle)._repr_html_().count("<svg") == 5


def test_the_page_of_a_model_has_its_live_drift_when_it_keeps_drift_statistics(
    iris_bundle: Path, iris: Any
) -> None:
    model, _ = _drifted(iris_bundle, iris)
    page = report_page(model)
    assert page.startswith("<!DOCTYPE html>")
    assert "Drift" in _sections(page)
    assert "Drift" not in _sections(report_page(modelkit.load(iris_bundle)))


def test_a_log_summary_is_shown_with_the_redacted_columns(iris_bundle: Path, iris: Any) -> None:
    model, drift = _drifted(iris_bundle, iris)
    log = LogSummary(
        source="predictions.jsonl",
        lines=610,
        used=600,
        other_models=4,
        errors=3,
        malformed=2,
        invalid=1,
        redacted=("petal width (cm)",),
    )
    page = render_page(model, drift=drift, log=log)
    assert "610 lines, 600 used" in page
    assert "4 of other models, 3 of failed calls" in page
    assert "2 malformed" in page
    assert "Redacted in the log, so not compared: petal width (cm)" in page
    # A redacted column is not compared: listed last, with no score or live chart.
    order = re.findall(r"<h3><code>([^<]*)</code>", page)
    assert order[-1] == "petal width (cm)"
    assert _charts(page) == 5
    assert page.count(">live<") == 4


# -- without matplotlib ----------------------------------------------------------------------------


@pytest.mark.usefixtures("no_matplotlib")
def test_without_matplotlib_the_page_has_every_table_and_says_why_no_chart(
    iris_bundle: Path, iris: Any
) -> None:
    model, drift = _drifted(iris_bundle, iris)
    page = render_page(model, drift=drift)
    assert _charts(page) == 0
    assert "pip install 'modelkit[report]'" in html.unescape(page)
    assert "Drift" in _sections(page)
    # The shares each chart would draw, as tables.
    assert page.count("<th>reference</th><th>live</th>") == 5
    assert "Drift" in _sections(model._repr_html_())
    assert _charts(model.drift()._repr_html_()) == 0


# -- bins ------------------------------------------------------------------------------------------


def test_bin_labels_name_the_edges_categories_and_missing_bin() -> None:
    assert bin_labels({"kind": "numeric", "edges": [1, 2.5, 1e7]}) == [
        "< 1",
        "1\u20132.5",
        "2.5\u20131e+07",
        "≥ 1e+07",
        "missing",
    ]
    assert bin_labels({"kind": "numeric", "edges": []}) == ["any value", "missing"]
    assert bin_labels({"kind": "numeric", "type": "datetime", "edges": [0, 86400.5]}) == [
        "< 1970-01-01",
        "1970-01-01\u20131970-01-02 00:00",
        "≥ 1970-01-02 00:00",
        "missing",
    ]
    assert bin_labels({"kind": "categorical", "categories": ["a", 1]}) == [
        "a",
        "1",
        "other",
        "missing",
    ]
    with pytest.raises(ValueError, match="unknown kind"):
        bin_labels({"kind": "text"})


# -- models never saved, and real tables -----------------------------------------------------------


class _Review(pydantic.BaseModel):
    text: str


class _Sentiment(pydantic.BaseModel):
    positive: bool


class _Keywords(modelkit.Model[_Review, _Sentiment]):
    def run_batch(self, inputs: list[_Review]) -> list[_Sentiment]:
        return [_Sentiment(positive="good" in r.text) for r in inputs]


def test_a_custom_model_never_saved_shows_its_schema() -> None:
    fragment = render_fragment(_Keywords())
    assert "has not been saved" in fragment
    assert "Inputs: records of a JSON Schema" in fragment
    assert "No reference cases." in fragment
    assert "has not been saved" in _Keywords()._repr_html_()


def test_a_tensor_model_shows_its_tensors_and_no_chart(
    tmp_path: Path, onnx_classifier: Any
) -> None:
    modelkit.save(onnx_classifier, tmp_path / "forest", name="forest", version="1")
    fragment = modelkit.load(tmp_path / "forest")._repr_html_()
    assert "Inputs: 1 tensor<" in fragment
    assert "No reference cases." in fragment
    assert _charts(fragment) == 0


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        # NaN numbers, strings with gaps and an integer year.
        ("penguins", {"bill_length_mm": "numeric", "sex": "categorical", "year": "numeric"}),
        # A boolean column (PSI) and an integer target.
        ("spector", {"PSI": "categorical", "GPA": "numeric"}),
    ],
)
def test_a_real_table_gets_a_chart_per_column(
    tmp_path: Path, table: str, expected: dict[str, str]
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from tests.real_data.pipelines import preprocessing

    real = load_table(table)
    pipeline = make_pipeline(preprocessing(), LogisticRegression(max_iter=2000)).fit(real.X, real.y)
    modelkit.save(pipeline, tmp_path / table, name=table, version="1", sample_input=real.X)
    model = modelkit.load(tmp_path / table, check="error", drift=True)
    model.predict_batch(real.X)
    page = render_page(model, drift=model.drift().to_dict())
    assert _charts(page) == len(real.X.columns) + 1
    for column, kind in expected.items():
        assert re.search(
            rf"<h3><code>{re.escape(column)}</code> <span class='mk-kind'>{kind}</span>", page
        )
    # The same data as the reference: nothing drifts (spector's 32 rows are too few to score).
    assert ("no drift in" if len(real.X) >= 200 else "too few records to score drift") in page
    if table == "penguins":
        assert "missing" in page
