"""The series chart in real Chromium (Debian's package, driven by Playwright) over a real uvicorn server on
127.0.0.1 and a SQLite store filled by real ingest and check: at 390 px and 1280 px the uPlot canvas renders, the
legend and the y unit show, the page does not scroll sideways, and ?from= narrows the points."""

from __future__ import annotations

import pytest

from tests.test_browser_dashboard import ARGS, CHROMIUM, serving, shot, sync_api
from tests.test_series_chart import NIGHTS, fill
from tests.timeline import iso

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from web.app import create_app

    tmp = tmp_path_factory.mktemp("browser-series")
    url = f"sqlite:///{tmp / 'guardrail.db'}"
    ids = fill(url, tmp)
    with serving(create_app(url)) as base:
        yield base, ids


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.mark.parametrize("width", [390, 1280])
def test_series_chart_renders(server, browser, width):
    base, ids = server
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{base}/series/{ids['series']}")
        page.wait_for_selector("#series-chart[data-ready='1'] canvas")
        box = page.locator("#series-chart canvas").bounding_box()
        assert box and box["width"] >= 250 and box["height"] >= 200
        assert page.locator("#series-chart canvas").bounding_box()["width"] <= width
        legend = page.locator("#series-chart .u-legend").inner_text()
        assert "H100 main" in legend and "presubmit / PR" in legend
        scroll = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert scroll[0] <= scroll[1], f"page scrolls sideways at {width} px: {scroll}"
        # Keyboard: focus the chart and step to the first run; the legend shows its value.
        page.focus("#series-chart")
        page.keyboard.press("Home")
        # The y unit: uPlot draws the axis label on the canvas; the legend's values carry it as text.
        assert "101 ms" in page.locator("#series-chart .u-legend").inner_text()
        shot(page, f"series-chart-{width}")
        n_all = page.evaluate("JSON.parse(document.getElementById('series-data').textContent).x.length")
        assert n_all == len(NIGHTS) + 1
        page.goto(f"{base}/series/{ids['series']}?from={iso(days=-21)[:10]}")
        page.wait_for_selector("#series-chart[data-ready='1'] canvas")
        n_range = page.evaluate("JSON.parse(document.getElementById('series-data').textContent).x.length")
        assert n_range == 4
        assert not errors, errors
    finally:
        context.close()
