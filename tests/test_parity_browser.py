"""The parity page in real Chromium at a phone's 390 px and a laptop's 1280 px: the known answer on screen, the
per-day chart drawn, the document never scrolls sideways (wide tables scroll in their own box), no text under
10 px -- the checks every other page passes (tests/test_browser_widths.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardrail.ingest.junit_writer import ingest_junit
from guardrail.schema import Source
from tests.test_browser_dashboard import ARGS, CHROMIUM, SHOTS, serving, sync_api  # noqa: F401  (skips as it does)
from tests.test_browser_widths import MEASURE
from tests.timeline import at

pytestmark = [pytest.mark.browser, pytest.mark.slow]
DATA = Path(__file__).parent / "data" / "junit" / "parity"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from web.app import create_app

    url = f"sqlite:///{tmp_path_factory.mktemp('parity') / 'guardrail.db'}"
    for f, lane, hw, days in (
        ("gpu-h100.xml", "gpu-unit", "H100", -1),
        ("npu-a3-older.xml", "npu-unit", "A3", -1),
        ("gpu-h100.xml", "gpu-unit", "H100", 0),
        ("npu-a3.xml", "npu-unit", "A3", 0),
    ):
        ingest_junit(url, [DATA / f], source=Source(commit=f"c{-days}"), lane=lane, hardware=hw,
                     started_at=at(days=days, hours=-1))  # fmt: skip
    with serving(create_app(url, cache_ttl=0)) as base:
        yield base


@pytest.mark.parametrize("width", (390, 1280))
def test_the_parity_page_fits_and_shows_the_answer(server, width):
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
            page.set_default_timeout(15000)
            resp = page.goto(server + "/parity")  # the default pair: H100 against A3
            assert resp is not None and resp.status == 200
            assert page.locator("#parity-total").inner_text().split()[:5] == ["cases", "ran", "run", "share", "passed"]
            assert "75.0%" in page.locator("#parity-total").inner_text()
            assert page.locator("#parity-failing code").all_inner_texts() == [
                "tests/ops/test_attention.py::test_rope_cache_cuda",
                "tests/ops/test_attention.py::test_rope_cache_npu",
            ]
            assert page.locator("#parity-chart circle").count() == 4 and page.locator("#parity-chart").is_visible()
            m = page.evaluate(MEASURE)
            assert m["scroll"] <= m["inner"], m
            assert m["small"] is None or m["small"]["size"] >= 10, m["small"]
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / f"parity-{width}.png"), full_page=True)
        finally:
            browser.close()
