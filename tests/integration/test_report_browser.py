"""The model report in a real browser: headless Chromium opens the page with every network fetch
made to fail, and the charts are in its DOM and on its screenshot.

Chromium comes from Debian's package (``apt-get install -y chromium``); without it the test is
skipped, saying so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import modelkit
from modelkit._report import LIVE_COLOUR, REFERENCE_COLOUR, render_page

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(
        "headless Chromium is not installed (apt-get install -y chromium)", allow_module_level=True
    )
Image = pytest.importorskip("PIL.Image")

# Every request fails: a proxy on the discard port, and no host name resolves.
OFFLINE = ["--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND"]


def chromium(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            f"--user-data-dir={tmp_path / 'profile'}",
            *OFFLINE,
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory, iris_bundle: Path, iris: Any) -> Path:
    model = modelkit.load(iris_bundle, check="error", drift=True)
    X = iris[0].head(20).sample(300, replace=True, random_state=0)
    model.predict_batch(X.assign(**{"petal width (cm)": X["petal width (cm)"] + 0.5}))
    path = tmp_path_factory.mktemp("report") / "iris.html"
    path.write_text(render_page(model, drift=model.drift().to_dict()), encoding="utf-8")
    return path


def test_the_page_needs_nothing_from_the_network(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    # References point inside the page (an SVG's markers and clip paths); the SVG namespaces
    # name URLs, but nothing is fetched from them.
    assert not re.search(
        r"""(?:src|href)\s*=\s*["'](?!#)|url\((?!#)|@import|<link\b|<script\b""", text
    )
    # Several charts share the page's ids: each chart's are its own.
    ids = re.findall(r' id="([^"]+)"', text)
    assert len(ids) == len(set(ids))


def test_chromium_offline_draws_every_chart(page: Path, tmp_path: Path) -> None:
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    # Four input features and the predicted label: one chart each, each with both series.
    charts = re.findall(r"<div class=\"mk-chart\"><svg\b", dom)
    assert len(charts) == 5
    assert len(re.findall(r"<svg\b", dom)) == 5
    assert dom.count(">reference<") == dom.count(">live<") == 5
    assert "significant" in dom


def test_chromium_offline_screenshot_shows_the_charts(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    chromium(
        tmp_path,
        "--hide-scrollbars",
        "--window-size=1100,3200",
        f"--screenshot={shot}",
        page.as_uri(),
    )
    with Image.open(shot) as image:
        pixels = image.convert("RGB")
        colours = pixels.getcolors(maxcolors=1 << 20)
    assert colours is not None
    assert len(colours) > 50  # text, badges, bars and their anti-aliased edges: not blank
    counts = {colour: n for n, colour in colours}
    for name, hex_colour in (("reference", REFERENCE_COLOUR), ("live", LIVE_COLOUR)):
        rgb = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
        # Bars of five charts: thousands of pixels of each series' colour.
        assert counts.get(rgb, 0) > 2000, f"no {name} bars on the screenshot"
