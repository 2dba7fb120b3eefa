"""The alert page as a case file and the run/PR/reruns/baselines pages in real Chromium (Debian's package,
driven by Playwright) over uvicorn on 127.0.0.1 and the store of tests/test_web_case_file.py: the chart drawn
with its change marked, the commit links, a triage note kept across sign-in, and no page wider than a 390 px or
1280 px viewport. Screenshots as in tests/test_browser_dashboard.py (GUARDRAIL_SCREENSHOTS=docs/screenshots)."""

from __future__ import annotations

import pytest

from tests.test_browser_dashboard import ARGS, CHROMIUM, serving, shot, sync_api

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = (390, 1280)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.test_web_case_file import fill_case_db
    from web.app import create_app

    tmp = tmp_path_factory.mktemp("browser-case")
    url = f"sqlite:///{tmp / 'guardrail.db'}"
    ids = fill_case_db(url, tmp)
    from guardrail.store import models as m
    from guardrail.store.db import session_scope

    with session_scope(url) as s:
        ids["alert"] = s.query(m.Alert.id).filter(m.Alert.kind == "regression").order_by(m.Alert.id).first()[0]
    with serving(create_app(url)) as base:
        yield base, ids


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def _page(browser, width: int):
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    return context, page


def _fits(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.evaluate("window.innerWidth")
    assert width <= viewport, f"{page.url}: the page is {width} px wide in a {viewport} px viewport"


@pytest.mark.parametrize("width", WIDTHS)
def test_alert_case_file_shows_chart_links_and_actions(server, browser, width):
    base, ids = server
    context, page = _page(browser, width)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(f"{base}/alerts/{ids['alert']}")
        page.wait_for_selector("#series-chart[data-ready='1'] canvas")
        data = page.evaluate("JSON.parse(document.getElementById('series-data').textContent)")
        assert [mk["label"][:12] for mk in data["marks"] if mk["kind"] == "change"] == ["this change "]
        assert page.locator("#series-chart canvas").first.bounding_box()["width"] > 200
        legend = page.locator("#series-chart .u-legend").inner_text()
        assert "level ±1%, before / after the change" in legend and "baseline band" not in legend
        assert "denoise_step_latency" in page.locator("#case-headline").inner_text()
        compare = page.locator("#compare-link")
        assert compare.get_attribute("href").startswith("https://github.com/org/project/compare/09")
        assert page.locator("#range-commits a[href^='https://github.com/org/project/commit/']").count() == 2
        assert "fix <img src=x onerror=alert(2)> speed" in page.locator("#range-commits").inner_text()
        actions = page.locator("#next-actions").inner_text()
        assert "guardrail bisect" in actions and "--dispatch local" in actions
        _fits(page)
        assert not dialogs
        shot(page, f"alert-case-file-{width}")
    finally:
        context.close()


def test_triage_note_survives_sign_in(server, browser):
    base, ids = server
    context, page = _page(browser, 1280)
    try:
        page.goto(f"{base}/alerts/{ids['alert']}")
        page.select_option("#triage select[name=state]", "acknowledged")
        page.fill("#triage input[name=note]", "on it: <b>bisecting</b> tonight")
        page.click("#triage button[type=submit]")
        assert page.locator("#kept-note").inner_text() == "on it: <b>bisecting</b> tonight"
        page.fill("#login input[name=token]", ids["token"])
        page.click("#login button[type=submit]")
        page.wait_for_url(f"{base}/alerts/{ids['alert']}?*")
        assert page.locator("#triage input[name=note]").input_value() == "on it: <b>bisecting</b> tonight"
        assert page.locator("#triage select[name=state]").input_value() == "acknowledged"
        assert page.locator("#kept-notice").is_visible()
        page.click("#triage button[type=submit]")
        page.wait_for_url(f"{base}/alerts/{ids['alert']}")
        assert page.locator("#alert-note").inner_text() == "on it: <b>bisecting</b> tonight"
        assert page.locator("#alert-state").inner_text().startswith("acknowledged")
        # bulk: a note alone keeps the state
        page.goto(f"{base}/alerts")
        page.locator(f"#alerts input[name=ids][value='{ids['alert']}']").check()
        page.fill("#bulk input[name=note]", "still on it")
        page.click("#bulk fieldset button[type=submit]")
        page.wait_for_url(f"{base}/alerts")
        page.goto(f"{base}/alerts/{ids['alert']}")
        assert page.locator("#alert-note").inner_text() == "still on it"
        assert page.locator("#alert-state").inner_text().startswith("acknowledged")
    finally:
        context.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_run_pr_reruns_baselines_pages_fit(server, browser, width):
    base, ids = server
    context, page = _page(browser, width)
    try:
        pages = {
            "run": f"/runs/{ids['last_nightly']}",
            "run-junit": f"/runs/{ids['test_run']}",
            "runs": "/runs",
            "prs": "/prs",
            "pr": "/prs/42",
            "reruns": "/reruns",
            "baselines": "/baselines",
        }
        for name, path in pages.items():
            page.goto(base + path)
            _fits(page)
            shot(page, f"{name}-{width}")
        page.goto(f"{base}/runs/{ids['last_nightly']}")
        assert page.locator("#run-summary").inner_text().startswith("1 regression")
        assert page.locator("table.metrics tbody tr").first.get_attribute("class") == "is-regression"
        # the explanation keeps a readable width beside a long metric name
        expl = page.locator("table.metrics td.expl").first.bounding_box()
        assert expl["width"] >= 150
        page.click("#compare-baseline")
        page.wait_for_url(f"{base}/compare?*")
    finally:
        context.close()
