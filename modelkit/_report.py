"""The model report: one self-contained HTML page about a model, readable offline.

The page shows what modelkit knows about a model: its identity (name, version, digest, library
versions, metadata), its signature, the conversion parity report, the reference cases' verdict,
the training profile per feature as charts, and, given drift statistics, the reference against
what the model received, the drifting features first::

    subject (a Model) + drift (DriftReport.to_dict()) + log summary -> render_page -> HTML

Everything is inline: the CSS, and the charts as SVG drawn by matplotlib (the ``report``
extra) with text kept as text. Without matplotlib the page still has every table, and says that
the charts need the extra. Every string read from a bundle or a log is escaped: a category named
``<script>`` is text on the page, never markup. A page charts at most 50 features and 40 bins
a chart, and says where it stops: a profile may name thousands.

This module sits below the model and the drift monitor (both render through it), so it takes
plain data: a :class:`ReportSubject` (what a model exposes), a drift report's ``to_dict()``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import html
import io
import itertools
import json
import math
import platform
import re
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from . import _environment
from ._deps import require
from ._hooks import CalledModel
from ._manifest import ARTIFACTS_DIR
from ._reference import ARTIFACT as CASES_ARTIFACT
from ._reference import keeps_cases
from ._spec import SchemaInputs, TabularInputs, TensorInputs
from ._version import __version__
from ._worker import after_fork_in_child
from .errors import MissingDependencyError

if TYPE_CHECKING:
    from ._manifest import Manifest
    from ._reference import Verdict
    from ._spec import Signature

__all__ = [
    "LIVE_COLOUR",
    "REFERENCE_COLOUR",
    "LogSummary",
    "ReportSubject",
    "bin_labels",
    "render_drift",
    "render_fragment",
    "render_page",
]

#: The colour of the reference (training) distribution in every chart.
REFERENCE_COLOUR = "#4c72b0"
#: The colour of the live distribution (what the model received) in every chart.
LIVE_COLOUR = "#dd8452"
_STATUS_COLOURS = {
    "significant": "#b03a2e",
    "moderate": "#b9770e",
    "stable": "#1e8449",
    "insufficient data": "#717d7e",
}
# Drifting features first: the statuses in the order the page lists them.
_STATUS_ORDER = {"significant": 0, "moderate": 1, "stable": 2, "insufficient data": 3}
_DRIFTING = ("significant", "moderate")
# A value from the bundle is cut to this many characters in a table cell, and a chart's tick
# label to fewer: a hostile manifest cannot make the page huge or a chart unreadable.
_CELL_CHARS = 300
_TICK_CHARS = 18
# Declared categories listed in the signature table before "and N more".
_CATEGORIES_SHOWN = 12
# Charts on a page, and bars in a chart (a profile modelkit writes has at most 22): each chart
# takes matplotlib a tenth of a second, so a hostile profile of thousands cannot take hours.
_CHARTS_SHOWN = 50
_BINS_SHOWN = 40
_WORST_SHOWN = 5
_EN_DASH = "\u2013"
_AXIS_LABELS = {"numeric": "value (bins at the reference's deciles)", "categorical": "category"}
_CHARTS_NOTE = (
    "Charts need matplotlib, which is not installed: install modelkit's 'report' extra "
    "(pip install 'modelkit[report]'). The tables below have every figure."
)


class ReportSubject(CalledModel, Protocol):
    """What the report reads of a model (a :class:`modelkit.Model` is one)."""

    @property
    def manifest(self) -> Manifest | None: ...
    @property
    def reference_verdict(self) -> Verdict | None: ...


@dataclass(frozen=True)
class LogSummary:
    """What reading a prediction log found, shown with the drift it gave.

    Attributes:
        source: the log's name (its path).
        lines: the lines read.
        used: the lines of this model whose inputs were counted.
        other_models: lines of other models, left out.
        errors: lines of failed calls (no output), left out.
        malformed: lines that are not JSON objects of the log's format, or too long.
        invalid: lines whose input does not fit the signature, left out.
        without_inputs: lines of this model with no input to count (logged without inputs, or
            redacted whole); their outputs are counted.
        redacted: the input columns redacted in at least one line: not compared.
    """

    source: str
    lines: int
    used: int
    other_models: int
    errors: int
    malformed: int
    invalid: int
    without_inputs: int = 0
    redacted: tuple[str, ...] = ()


# -- entry points -------------------------------------------------------------------------------


def render_page(
    subject: ReportSubject,
    *,
    drift: Mapping[str, Any] | None = None,
    log: LogSummary | None = None,
) -> str:
    """The report as a whole HTML document, self-contained (no network needed to open it).

    Args:
        subject: the model.
        drift: a drift report's ``to_dict()``, to compare the reference with live data.
        log: what reading a prediction log found, when ``drift`` comes from one.
    """
    title = f"{subject.name} {subject.version} · modelkit report"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_text(title)}</title></head>\n<body>\n"
        + render_fragment(subject, drift=drift, log=log)
        + "\n</body></html>\n"
    )


def render_fragment(
    subject: ReportSubject,
    *,
    drift: Mapping[str, Any] | None = None,
    log: LogSummary | None = None,
) -> str:
    """The report as an HTML fragment with its own scoped style (a notebook's ``_repr_html_``).

    Never raises on what the bundle holds: the report is how one looks at a strange bundle.
    """
    manifest = subject.manifest
    profile = manifest.profile if manifest is not None else None
    features = _features(profile, drift, log)
    charts = _Charts()
    parts = [
        _header(subject, drift, log),
        _section("Identity", _identity(subject)),
        _section("Signature", _signature(subject.signature)),
        _section("Reference cases", _verdict(subject)),
    ]
    parity = manifest.adapter.get("parity") if manifest is not None else None
    if manifest is not None and isinstance(parity, Mapping):
        parts.append(_section("Conversion parity", _parity(manifest, parity)))
    if drift is not None:
        parts.append(_section("Drift", _drift_table(features, drift, log)))
    if features:
        title = "Reference and live, per feature" if drift is not None else "Training profile"
        parts.append(_section(title, _feature_cards(features, charts, live=drift is not None)))
    parts.append(
        f"<footer>Made by modelkit {_text(__version__)} on "
        f"{_text(dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'))}.</footer>"
    )
    return _wrap(parts)


def render_drift(drift: Mapping[str, Any]) -> str:
    """A drift report alone as an HTML fragment: the table, then each feature's chart."""
    features = _features(None, drift, None)
    charts = _Charts()
    parts = [
        _section("Drift", _drift_table(features, drift, None)),
        _section("Reference and live, per feature", _feature_cards(features, charts, live=True)),
    ]
    return _wrap(parts)


def bin_labels(entry: Mapping[str, Any]) -> list[str]:
    """The names of a profile entry's bins, the missing bin last.

    A numeric column's are ``["< 3", "3-5", "≥ 5", "missing"]`` (an en dash between two edges), a
    categorical one's ``[*categories, "other", "missing"]`` (see
    :func:`modelkit._profile.profile_reference`).

    Raises:
        ValueError, KeyError, TypeError: the entry is not a profile entry.
    """
    if entry["kind"] == "categorical":
        return [*(str(c) for c in entry["categories"]), "other", "missing"]
    if entry["kind"] != "numeric":
        raise ValueError(f"unknown kind {entry['kind']!r}")
    shown = [_edge(edge, is_time=entry.get("type") == "datetime") for edge in entry["edges"]]
    if not shown:
        return ["any value", "missing"]
    inner = [f"{low}{_EN_DASH}{high}" for low, high in itertools.pairwise(shown)]
    return [f"< {shown[0]}", *inner, f"≥ {shown[-1]}", "missing"]


# -- the parts of the page -----------------------------------------------------------------------


def _header(subject: ReportSubject, drift: Mapping[str, Any] | None, log: LogSummary | None) -> str:
    badges = [
        _badge(subject.format),
        _badge(subject.signature.outputs.task),
        _verdict_badge(subject),
    ]
    if drift is not None:
        drifting = _drifting(drift, log)
        count = drift.get("count", 0)
        scored = any(
            isinstance(f, Mapping) and f.get("score") is not None for f in drift.get("features", ())
        )
        plural = "s" if len(drifting) != 1 else ""
        what = f"{len(drifting)} drifting feature{plural}" if drifting else ""
        outputs = drift.get("outputs")
        # The predictions drifting matters as much as an input doing so.
        if isinstance(outputs, Mapping) and outputs.get("status") in _DRIFTING:
            what = f"{what} and the output" if what else "the output drifts"
        if what:
            badge = _badge(f"{what} in {count} records", _STATUS_COLOURS["significant"])
        elif scored:
            badge = _badge(f"no drift in {count} records", _STATUS_COLOURS["stable"])
        else:
            badge = _badge(
                f"too few records to score drift ({count})", _STATUS_COLOURS["insufficient data"]
            )
        badges.append(badge)
    return (
        "<header><div class='mk-kicker'>modelkit model report</div>"
        f"<h1>{_text(subject.name)} <span class='mk-version'>{_text(subject.version)}</span></h1>"
        f"<div class='mk-badges'>{''.join(badges)}</div></header>"
    )


def _identity(subject: ReportSubject) -> str:
    manifest = subject.manifest
    rows: list[tuple[str, str]] = [
        ("name", _text(subject.name)),
        ("version", _text(subject.version)),
        ("format", _text(subject.format)),
        ("task", _text(subject.signature.outputs.task)),
        ("digest", f"<code>{_text(subject.digest or 'not saved')}</code>"),
    ]
    if manifest is None:
        return _key_values(rows) + "<p class='mk-note'>This model has not been saved.</p>"
    rows.append(("created", _text(manifest.created_at.isoformat(timespec="seconds"))))
    environment = manifest.environment
    libraries = [("Python", environment.python, platform.python_version())]
    libraries += [
        (name, version, _environment.installed_version(name) or "not installed")
        for name, version in sorted(environment.packages.items())
    ]
    versions = _table(
        ("library", "saved with", "installed now"),
        [
            (
                _text(name),
                _text(then),
                _text(now) if now == then else f"<strong>{_text(now)}</strong>",
            )
            for name, then, now in libraries
        ],
    )
    rows.append(("libraries", versions))
    if manifest.metadata:
        rows.append(
            (
                "metadata",
                _key_values([(_text(k), _text(_json(v))) for k, v in manifest.metadata.items()]),
            )
        )
    return _key_values(rows)


def _signature(signature: Signature) -> str:
    inputs = signature.inputs
    if isinstance(inputs, TabularInputs):
        body = _table(
            ("column", "type", "dtype", "nullable", "categories"),
            [
                (
                    f"<code>{_text(column.name)}</code>",
                    _text(column.type),
                    _text(column.dtype),
                    "yes" if column.nullable else "no",
                    _categories(column.categories),
                )
                for column in inputs.columns
            ],
        )
        heading = f"Inputs: a table of {_count(len(inputs.columns), 'column')}"
    elif isinstance(inputs, TensorInputs):
        body = _tensors(inputs.tensors)
        heading = f"Inputs: {_count(len(inputs.tensors), 'tensor')}"
    else:
        assert isinstance(inputs, SchemaInputs)
        body = f"<pre>{_text(_json(inputs.json_schema), limit=4 * _CELL_CHARS)}</pre>"
        heading = "Inputs: records of a JSON Schema"
    outputs = signature.outputs
    rows = [("task", _text(outputs.task))]
    if outputs.classes is not None:
        rows.append(("classes", _categories(outputs.classes)))
        rows.append(("probabilities", "yes" if outputs.has_probabilities else "no"))
    if outputs.tensors is not None:
        rows.append(("tensors", _tensors(outputs.tensors)))
    return f"<h3>{heading}</h3>{body}<h3>Outputs</h3>{_key_values(rows)}"


def _verdict(subject: ReportSubject) -> str:
    verdict = subject.reference_verdict
    if verdict is None:
        if _has_cases(subject.manifest):
            return (
                "<p><strong>Not run.</strong> The bundle keeps reference cases, but they were "
                "not run when this model was loaded (<code>check='auto'</code> runs them only "
                "when a library version differs from the bundle's). Load it with "
                "<code>check='error'</code>, or run <code>modelkit verify --run</code>.</p>"
            )
        return (
            "<p><strong>No reference cases.</strong> The bundle keeps none: it was saved "
            "without <code>sample_input</code>, by an older modelkit, or in a format that keeps "
            "none.</p>"
        )
    mark, colour = ("✔", "stable") if verdict.passed else ("✘", "significant")
    lines = [
        (
            f"<p class='mk-verdict' style='color:{_STATUS_COLOURS[colour]}'>{mark} "
            f"{_text(verdict.summary())}</p>"
        )
    ]
    rows: list[tuple[str, str]] = [
        ("cases", str(verdict.total)),
        ("identical", str(verdict.identical)),
        ("differing", str(len(verdict.differing))),
    ]
    if verdict.differing:
        sample = ", ".join(str(verdict.sample_rows[case]) for case in verdict.differing[:10])
        more = f" and {len(verdict.differing) - 10} more" if len(verdict.differing) > 10 else ""
        rows.append(("sample rows that differ", _text(sample + more)))
    for what, found in (("largest difference", verdict.largest), ("changed", verdict.changed)):
        if found is not None:
            amount = "" if found.amount is None else f" (difference {found.amount:.3g})"
            detail = found.problem or f"then {_short(found.then)}, now {_short(found.now)}"
            rows.append(
                (what, _text(f"output {found.field!r}, case {found.case}: {detail}{amount}"))
            )
    if verdict.refused is not None:
        rows.append(("refused", _text(verdict.refused)))
    if verdict.passed and verdict.largest is None:
        rows.append(("largest difference", "none beyond the tolerance"))
    return "".join(lines) + _key_values(rows)


def _parity(manifest: Manifest, parity: Mapping[str, Any]) -> str:
    rows: list[tuple[str, str]] = []
    source = manifest.adapter.get("converted_from")
    if source is not None:
        rows.append(("converted from", f"<code>{_text(source)}</code>"))
    worst: Any = None
    for key, value in parity.items():
        if key == "worst":
            worst = value
        elif isinstance(value, Mapping):
            rows.extend((_text(f"{key}: {k}"), _text(_scalar(v))) for k, v in value.items())
        elif not isinstance(value, list):
            rows.append((_text(key.replace("_", " ")), _text(_scalar(value))))
    body = _key_values(rows)
    if isinstance(worst, list) and worst:
        entries = [w for w in worst[:_WORST_SHOWN] if isinstance(w, Mapping)]
        body += "<h3>Largest differences</h3>" + _table(
            ("rows from", "row", "difference"),
            [
                (
                    _text(entry.get("source")),
                    _text(entry.get("row")),
                    _text(_scalar(entry.get("difference"))),
                )
                for entry in entries
            ],
        )
    return body


@dataclass(frozen=True)
class _Feature:
    """One feature (or the outputs) as the page shows it."""

    name: str
    role: str  # "input" or "output"
    kind: str  # "numeric", "categorical" or "" when unknown (a drift report alone)
    bins: tuple[str, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...] | None
    drift: Mapping[str, Any] | None  # the feature's entry of the drift report
    summary: str  # min, max and mean, or the number of categories
    redacted: bool = False


def _features(
    profile: Mapping[str, Any] | None,
    drift: Mapping[str, Any] | None,
    log: LogSummary | None,
) -> list[_Feature]:
    """The features to chart: from the drift report when given (drifting first), else the
    profile's columns in signature order, then the outputs."""
    entries: dict[str, Mapping[str, Any]] = {}
    columns = profile.get("columns") if isinstance(profile, Mapping) else None
    if isinstance(columns, Mapping):
        entries = {str(k): v for k, v in columns.items() if isinstance(v, Mapping)}
    outputs = profile.get("outputs") if isinstance(profile, Mapping) else None
    redacted = set(log.redacted) if log is not None else set()
    features: list[_Feature] = []
    if drift is not None:
        found = [(f, "input") for f in drift.get("features", ()) if isinstance(f, Mapping)]
        if isinstance(drift.get("outputs"), Mapping):
            found.append((drift["outputs"], "output"))
        for item, role in found:
            name = str(item.get("name"))
            entry = entries.get(name) if role == "input" else outputs
            is_redacted = role == "input" and name in redacted
            current = item.get("current_shares")
            features.append(
                _Feature(
                    name=name,
                    role=role,
                    kind=_kind(entry) or _kind(item),
                    bins=tuple(str(b) for b in item.get("bins", ())),
                    reference=_shares(item.get("reference_shares")),
                    current=None if current is None or is_redacted else _shares(current),
                    drift=item,
                    summary=_summary(entry),
                    redacted=is_redacted,
                )
            )
        features.sort(key=_drift_order)
        return features
    sources = [(name, entry, "input") for name, entry in entries.items()]
    if isinstance(outputs, Mapping):
        sources.append((str(outputs.get("name", "output")), outputs, "output"))
    for name, entry, role in sources:
        try:
            bins = tuple(bin_labels(entry))
            reference = _shares([*entry["proportions"], entry["missing_rate"]])
        except (KeyError, TypeError, ValueError):
            continue  # a profile entry this modelkit did not write: shown in no chart
        if len(bins) != len(reference):
            continue
        features.append(
            _Feature(name, role, _kind(entry), bins, reference, None, None, _summary(entry))
        )
    return features


def _drift_order(feature: _Feature) -> tuple[int, int, float]:
    status = str((feature.drift or {}).get("status"))
    score = (feature.drift or {}).get("score")
    rank = 4 if feature.redacted else _STATUS_ORDER.get(status, 4)
    # Outputs after the inputs of the same status; the largest score first.
    return (rank, feature.role == "output", -(_real(score) or -1.0))


def _drifting(drift: Mapping[str, Any], log: LogSummary | None) -> list[str]:
    redacted = set(log.redacted) if log is not None else set()
    return [
        str(f.get("name"))
        for f in drift.get("features", ())
        if isinstance(f, Mapping) and f.get("status") in _DRIFTING and f.get("name") not in redacted
    ]


def _drift_table(
    features: Sequence[_Feature], drift: Mapping[str, Any], log: LogSummary | None
) -> str:
    intro = (
        f"<p>{_text(drift.get('count', 0))} records compared with the reference by the "
        "population stability index (PSI): below 0.1 stable, 0.1 to 0.25 moderate, above "
        "significant. Drifting features first.</p>"
    )
    if log is not None:
        intro += _log_note(log)
    rows = []
    for feature in features:
        item = feature.drift or {}
        status = "redacted in the log" if feature.redacted else str(item.get("status"))
        colour = _STATUS_COLOURS.get(status, _STATUS_COLOURS["insufficient data"])
        rows.append(
            (
                f"<code>{_text(feature.name)}</code>"
                + (" <span class='mk-role'>output</span>" if feature.role == "output" else ""),
                f"<span class='mk-status' style='background:{colour}'>{_text(status)}</span>",
                "—" if feature.redacted else _number(item.get("score"), ".3f"),
                "—" if feature.redacted else _text(item.get("count")),
                _percent(item.get("reference_missing_rate")),
                "—" if feature.redacted else _percent(item.get("current_missing_rate")),
            )
        )
    return intro + _table(
        ("feature", "status", "PSI", "records", "missing (reference)", "missing (live)"), rows
    )


def _log_note(log: LogSummary) -> str:
    left_out = [
        (log.other_models, "of other models"),
        (log.errors, "of failed calls"),
        (log.invalid, "whose input does not fit the signature"),
        (log.without_inputs, "without an input (outputs counted)"),
        (log.malformed, "malformed (not a line of the prediction log, or too long)"),
    ]
    parts = [f"{n} {what}" for n, what in left_out if n]
    text = f"From the prediction log {_text(log.source)}: {log.lines} lines, {log.used} used"
    text += f"; left out: {_text(', '.join(parts))}." if parts else "."
    if log.redacted:
        text += f" Redacted in the log, so not compared: {_text(', '.join(log.redacted))}."
    return f"<p class='mk-note'>{text}</p>"


def _feature_cards(features: Sequence[_Feature], charts: _Charts, *, live: bool) -> str:
    cards = []
    for feature in features[:_CHARTS_SHOWN]:
        chart = charts.draw(feature)
        role = " <span class='mk-role'>output</span>" if feature.role == "output" else ""
        kind = f"<span class='mk-kind'>{_text(feature.kind)}</span>" if feature.kind else ""
        status = ""
        if feature.redacted:
            status = _badge("redacted in the log", _STATUS_COLOURS["insufficient data"])
        elif feature.drift is not None:
            state = str(feature.drift.get("status"))
            score = feature.drift.get("score")
            label = state if score is None else f"{state} · PSI {_number(score, '.3f')}"
            status = _badge(label, _STATUS_COLOURS.get(state, "#717d7e"))
        facts = [feature.summary] if feature.summary else []
        bins = len(_kept_bins(feature))
        if bins > _BINS_SHOWN:
            facts.append(f"the first {_BINS_SHOWN} of {bins} bins shown")
        line = f"<p class='mk-facts'>{_text(' · '.join(facts))}</p>" if facts else ""
        body = chart if chart is not None else _shares_table(feature, live=live)
        cards.append(
            f"<div class='mk-card'><h3><code>{_text(feature.name)}</code>{role} {kind} "
            f"{status}</h3>{line}{body}</div>"
        )
    notes = [] if charts.available else [_CHARTS_NOTE]
    if len(features) > _CHARTS_SHOWN:
        order = "the drifting first; the drift table" if live else "the signature"
        notes.append(
            f"The first {_CHARTS_SHOWN} of {len(features)} features are shown here "
            f"({order} lists every one)."
        )
    shown_notes = "".join(f"<p class='mk-note'>{_text(note)}</p>" for note in notes)
    return shown_notes + f"<div class='mk-cards'>{''.join(cards)}</div>"


def _shown_bins(feature: _Feature) -> list[int]:
    """The bins a chart or table shows: at most :data:`_BINS_SHOWN`."""
    return _kept_bins(feature)[:_BINS_SHOWN]


def _kept_bins(feature: _Feature) -> list[int]:
    """Every bin but an empty trailing "other" or "missing" one (empty on both sides)."""
    last = len(feature.bins) - 1
    return [
        i
        for i, name in enumerate(feature.bins)
        if not (
            i >= last - 1
            and name in ("other", "missing")
            and not _at(feature.reference, i)
            and not _at(feature.current, i)
        )
    ]


def _shares_table(feature: _Feature, *, live: bool) -> str:
    """A feature's shares as a table, when no chart can be drawn."""
    header = ("bin", "reference", "live") if live else ("bin", "reference")
    rows = []
    for index in _shown_bins(feature):
        row = [_text(feature.bins[index]), _percent(_at(feature.reference, index))]
        if live:
            row.append(_percent(_at(feature.current, index)))
        rows.append(tuple(row))
    return _table(header, rows)


# -- charts ---------------------------------------------------------------------------------------


class _Drawing:
    """The lock that draws one chart at a time; a forked child (a gunicorn worker) gets a fresh
    one, as a thread of the parent may have held it at the fork."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        after_fork_in_child(self._renew)

    def _renew(self) -> None:
        self.lock = threading.Lock()


_drawing = _Drawing()
# An SVG tag: matplotlib escapes "<" and ">" in text and attribute values, so none holds one.
_SVG_TAG = re.compile(r"<[^<>]*>")
# The C0 control characters but tab and newline: no font has a glyph for them.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class _Charts:
    """Draws each feature's distribution as inline SVG, or nothing without matplotlib."""

    def __init__(self) -> None:
        self.available = True
        self._drawn = 0

    def draw(self, feature: _Feature) -> str | None:
        if not self.available or not feature.bins or len(feature.reference) != len(feature.bins):
            return None
        try:
            matplotlib = require("matplotlib", extra="report", feature="The report's charts")
            figure_module = require(
                "matplotlib.figure", extra="report", feature="The report's charts"
            )
            ticker = require("matplotlib.ticker", extra="report", feature="The report's charts")
        except MissingDependencyError:
            self.available = False
            return None
        self._drawn += 1
        # rc_context sets matplotlib's global settings for its duration: one chart at a time
        # (a server's threads may render reports at once). The warnings filter is global too.
        with _drawing.lock, matplotlib.rc_context(_rc()), warnings.catch_warnings():
            # Text stays text, drawn by the browser's fonts: that matplotlib's font has no
            # glyph for a category in another script changes nothing on the page.
            warnings.filterwarnings("ignore", "Glyph .* missing from", UserWarning)
            svg = _svg(figure_module.Figure, ticker, feature)
        # The charts share one page's ids: each chart's ids (and its references to them, clip
        # paths and markers) get a prefix of their own, in tags only: text is never rewritten.
        prefix = f"mk{self._drawn}-"

        def renamed(tag: re.Match[str]) -> str:
            text = re.sub(r'\bid="', f'id="{prefix}', tag.group())
            return text.replace('href="#', f'href="#{prefix}').replace("url(#", f"url(#{prefix}")

        return f"<div class='mk-chart'>{_SVG_TAG.sub(renamed, svg)}</div>"


def _rc() -> dict[str, Any]:
    return {
        # Text stays text (small, selectable, crisp), and a "$" in a category is not mathtext.
        "svg.fonttype": "none",
        "text.parse_math": False,
        # The same chart draws the same SVG (matplotlib salts its ids at random otherwise).
        "svg.hashsalt": "modelkit",
        "font.size": 9,
        "font.family": "sans-serif",
        "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial", "sans-serif"],
        "axes.edgecolor": "#888888",
        "axes.labelcolor": "#333333",
        "xtick.color": "#333333",
        "ytick.color": "#333333",
        "axes.spines.top": False,
        "axes.spines.right": False,
    }


def _svg(figure_class: Any, ticker: Any, feature: _Feature) -> str:
    keep = _shown_bins(feature)
    labels = [_tick(feature.bins[i]) for i in keep]
    reference = [feature.reference[i] for i in keep]
    figure = figure_class(figsize=(5.0, 2.5), layout="constrained")
    axes = figure.add_subplot()
    positions = list(range(len(keep)))
    if feature.current is None:
        axes.bar(positions, reference, 0.7, color=REFERENCE_COLOUR, label="reference")
    else:
        current = [_at(feature.current, i) or 0.0 for i in keep]
        left = [p - 0.2 for p in positions]
        right = [p + 0.2 for p in positions]
        axes.bar(left, reference, 0.4, color=REFERENCE_COLOUR, label="reference")
        axes.bar(right, current, 0.4, color=LIVE_COLOUR, label="live")
    rotate = len(keep) > 4 or max((len(label) for label in labels), default=0) > 8
    axes.set_xticks(
        positions, labels, rotation=35 if rotate else 0, ha="right" if rotate else "center"
    )
    axes.yaxis.set_major_formatter(ticker.PercentFormatter(1.0, decimals=0))
    axes.set_ylabel("share of records")
    axes.set_xlabel(_AXIS_LABELS.get(feature.kind, "bin"))
    axes.grid(axis="y", color="#e5e5e5", linewidth=0.6)
    axes.set_axisbelow(True)
    # Above the bars, never over them.
    axes.legend(frameon=False, fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    # Inline: the XML declaration and doctype belong to a file, not a page.
    return text[text.index("<svg") :]


# -- small pieces ---------------------------------------------------------------------------------


_STYLE = """
.mk-report{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
  color:#222;max-width:1100px;margin:0 auto;padding:8px 16px;line-height:1.45;font-size:14px}
.mk-report header{border-bottom:2px solid #4c72b0;padding-bottom:8px;margin-bottom:8px}
.mk-report .mk-kicker{text-transform:uppercase;letter-spacing:.08em;font-size:11px;color:#666}
.mk-report h1{margin:2px 0 6px;font-size:26px}
.mk-report .mk-version{color:#666;font-weight:400}
.mk-report h2{font-size:18px;margin:22px 0 8px;border-bottom:1px solid #ddd;padding-bottom:3px}
.mk-report h3{font-size:14px;margin:10px 0 6px}
.mk-report table{border-collapse:collapse;margin:4px 0 10px;font-size:13px}
.mk-report th,.mk-report td{text-align:left;padding:3px 10px 3px 0;vertical-align:top;
  border-bottom:1px solid #eee;overflow-wrap:anywhere}
.mk-report th{color:#555;font-weight:600}
.mk-report code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px}
.mk-report pre{white-space:pre-wrap;font-size:12px;background:#f6f6f6;padding:6px}
.mk-report .mk-badges{display:flex;flex-wrap:wrap;gap:6px}
.mk-report .mk-badge,.mk-report .mk-status{display:inline-block;border-radius:10px;
  padding:1px 9px;font-size:12px;color:#fff;background:#5d6d7e;font-weight:500}
.mk-report .mk-role,.mk-report .mk-kind{font-size:11px;color:#666;font-weight:400}
.mk-report .mk-note{color:#555;font-size:13px;background:#f4f6f8;padding:6px 10px;
  border-left:3px solid #aab7c4}
.mk-report .mk-verdict{font-weight:600;font-size:15px}
.mk-report .mk-cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));
  gap:12px}
.mk-report .mk-card{border:1px solid #e3e3e3;border-radius:6px;padding:6px 10px}
.mk-report .mk-card h3{margin:4px 0}
.mk-report .mk-facts{margin:0 0 4px;color:#555;font-size:12px}
.mk-report .mk-chart svg{width:100%;height:auto}
.mk-report footer{margin-top:24px;color:#888;font-size:12px}
"""


def _wrap(parts: Iterable[str]) -> str:
    return f"<div class='mk-report'><style>{_STYLE}</style>{''.join(parts)}</div>"


def _section(title: str, body: str) -> str:
    return f"<section><h2>{_text(title)}</h2>{body}</section>"


def _badge(text: str, colour: str | None = None) -> str:
    style = f" style='background:{colour}'" if colour else ""
    return f"<span class='mk-badge'{style}>{_text(text)}</span>"


def _verdict_badge(subject: ReportSubject) -> str:
    verdict = subject.reference_verdict
    if verdict is None:
        text = "reference cases not run" if _has_cases(subject.manifest) else "no reference cases"
        return _badge(text, _STATUS_COLOURS["insufficient data"])
    if verdict.passed:
        return _badge(
            f"{verdict.total - len(verdict.differing)} of {verdict.total} reference cases match",
            _STATUS_COLOURS["stable"],
        )
    return _badge(
        f"{len(verdict.differing)} of {verdict.total} reference cases differ",
        _STATUS_COLOURS["significant"],
    )


def _has_cases(manifest: Manifest | None) -> bool:
    if manifest is None or not keeps_cases(manifest.format, manifest.signature):
        return False
    where = f"{ARTIFACTS_DIR}/{CASES_ARTIFACT}"
    return any(artifact.path == where for artifact in manifest.artifacts)


def _key_values(rows: Iterable[tuple[str, str]]) -> str:
    """Rows of (escaped key, HTML value)."""
    body = "".join(f"<tr><th>{key}</th><td>{value}</td></tr>" for key, value in rows)
    return f"<table>{body}</table>"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table of HTML cells under a header of plain words."""
    head = "".join(f"<th>{_text(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _tensors(tensors: Sequence[Any]) -> str:
    return _table(
        ("tensor", "dtype", "shape"),
        [
            (
                f"<code>{_text(t.name)}</code>",
                _text(t.dtype),
                _text("any" if t.shape is None else list(t.shape)),
            )
            for t in tensors
        ],
    )


def _categories(categories: Sequence[Any] | None) -> str:
    if categories is None:
        return ""
    shown = ", ".join(_short(c) for c in categories[:_CATEGORIES_SHOWN])
    more = len(categories) - _CATEGORIES_SHOWN
    return _text(shown + (f" and {more} more" if more > 0 else ""))


def _kind(entry: Mapping[str, Any] | None) -> str:
    kind = entry.get("kind") if isinstance(entry, Mapping) else None
    return kind if kind in ("numeric", "categorical") else ""


def _summary(entry: Mapping[str, Any] | None) -> str:
    """A profile entry in a line: the range and mean of numbers, the count of categories."""
    if not isinstance(entry, Mapping):
        return ""
    missing = entry.get("missing_rate")
    gaps = f"{_percent(missing)} missing" if _real(missing) is not None else ""
    if entry.get("kind") == "numeric":
        low, high, mean = entry.get("min"), entry.get("max"), entry.get("mean")
        is_time = entry.get("type") == "datetime"
        numbers = [
            f"{what} {_edge(value, is_time=is_time)}"
            for what, value in (("min", low), ("mean", mean), ("max", high))
            if _real(value) is not None
        ]
        return " · ".join([*numbers, gaps] if gaps else numbers)
    categories = entry.get("categories")
    if isinstance(categories, list):
        return " · ".join(filter(None, [f"{len(categories)} categories profiled", gaps]))
    return gaps


def _shares(values: Any) -> tuple[float, ...]:
    """Shares of records: anything but a number from 0 to 1 (a hand-edited profile) as 0."""
    if not isinstance(values, list | tuple):
        return ()
    shares = (_real(v) for v in values)
    return tuple(share if share is not None and 0.0 <= share <= 1.0 else 0.0 for share in shares)


def _real(value: Any) -> float | None:
    """A finite number as a float; ``None`` for anything else (NaN, inf, an integer too large
    for a float, a string, a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _at(values: Sequence[float] | None, index: int) -> float | None:
    return values[index] if values is not None and index < len(values) else None


def _edge(value: Any, *, is_time: bool) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _short(value)
    if is_time and _real(value) is not None:
        try:
            stamp = dt.datetime.fromtimestamp(value, dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            pass  # beyond the calendar: shown as the number it is
        else:
            return stamp.strftime("%Y-%m-%d" if stamp.time() == dt.time() else "%Y-%m-%d %H:%M")
    if isinstance(value, int) and abs(value) < 10**6:
        return str(value)
    # Decimal: a JSON integer may be too large for a float.
    return f"{decimal.Decimal(value):.4g}" if isinstance(value, int) else f"{value:.4g}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _tick(label: str) -> str:
    cut = label if len(label) <= _TICK_CHARS else label[: _TICK_CHARS - 1] + "…"
    return _CONTROL.sub("\ufffd", cut)


def _number(value: Any, spec: str) -> str:
    number = _real(value)
    return "—" if number is None else format(number, spec)


def _percent(value: Any) -> str:
    number = _real(value)
    return "—" if number is None else f"{100 * number:.1f}%"


def _json(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _scalar(value: Any) -> str:
    """A number to three significant digits; anything else as :func:`_short` writes it."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return _short(value)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else _json(value)
    return text if len(text) <= _CELL_CHARS else text[: _CELL_CHARS - 1] + "…"


def _text(value: Any, *, limit: int = _CELL_CHARS) -> str:
    """Any value as escaped HTML text, cut to ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text, quote=True)
