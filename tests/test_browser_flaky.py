"""The test views in real Chromium (Debian's package, driven by Playwright) over a real uvicorn server on
127.0.0.1 and a SQLite store filled by `guardrail ingest --format junit`: quarantine a test from the flaky
page with a reason and see it shown, open a test and the reruns, and take screenshots (where:
test_browser_dashboard.SHOTS)."""

from __future__ import annotations

import pytest

from tests.test_browser_dashboard import ARGS, CHROMIUM, serving, shot, sync_api  # noqa: F401  (skips as it does)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MARKUP_NAME = "test_<img src=x onerror=alert(9)>"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.test_web_flaky_api import fill_flaky_db
    from web.app import create_app

    tmp = tmp_path_factory.mktemp("browserflaky")
    url = f"sqlite:///{tmp / 'guardrail.db'}"
    ids = fill_flaky_db(url, tmp)
    with serving(create_app(url, cache_ttl=0)) as base:
        yield base, ids


@pytest.fixture(scope="module")
def page():
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        pg = context.new_page()
        pg.set_default_timeout(15000)
        dialogs: list[str] = []
        pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        pg.dialogs = dialogs  # type: ignore[attr-defined]
        yield pg
        context.close()
        browser.close()


def test_flaky_page_strips_and_markup(server, page):
    base, ids = server
    page.goto(base + "/flaky")
    row = page.locator(f'#by-score tr[data-key="{ids["flaky_key"]}"]')
    assert row.locator(".state").inner_text() == "flaky"
    cells = row.locator("svg.hstrip rect")
    assert cells.count() == 12
    assert "flaky" in cells.first.locator("title").text_content()
    assert page.locator("#strip-legend li").count() == 6  # four verdicts, hollow = infra failure, direction
    # markup in a test name is shown as text, never run
    assert page.get_by_text(MARKUP_NAME).first.is_visible()
    assert page.locator("#by-minutes img").count() == 0
    assert not page.dialogs
    shot(page, "flaky")


def test_quarantine_from_the_flaky_page(server, page):
    base, ids = server
    key = ids["flaky_key"]
    row = f'#by-score tr[data-key="{key}"]'
    # Without signing in, the form is refused and the test is unchanged.
    page.goto(base + "/flaky")
    page.fill(f"{row} input[name=reason]", "ACL stream sync errors on 910B3")
    page.click(f"{row} button[type=submit]")
    assert "Sign in to quarantine" in page.content()
    page.goto(base + "/login")
    page.fill("input[name=token]", ids["token"])
    page.click("button[type=submit]")
    page.wait_for_url(base + "/alerts")
    page.goto(base + "/flaky")
    page.fill(f"{row} input[name=reason]", "ACL stream sync errors on <b>910B3</b>")
    page.click(f"{row} button[type=submit]")
    page.wait_for_url(base + "/flaky")
    assert page.locator(f"{row} .state").inner_text() == "quarantined"
    info = page.locator(f"{row} .qinfo").inner_text()
    assert "by ci-bot" in info and "ACL stream sync errors on <b>910B3</b>" in info
    assert page.locator(f"{row} button[type=submit]").inner_text() == "release"
    shot(page, "flaky-quarantined")
    # the test's own page shows the entry in its quarantine history
    page.click(f"{row} td.wl a")
    page.wait_for_url(f"{base}/tests/{ids['flaky_pk']}")
    assert page.locator("#test-state").inner_text().startswith("quarantined")
    hist = page.locator("#quarantine-history tbody tr").first.inner_text()
    assert "ci-bot" in hist and "active" in hist
    assert page.locator("#executions tbody tr").count() >= 12
    shot(page, "test")
    # release it from there, with a reason
    page.fill("form.qform input[name=reason]", "fixed by the driver update")
    page.click("form.qform button[type=submit]")
    page.wait_for_url(f"{base}/tests/{ids['flaky_pk']}")
    assert page.locator("#test-state").inner_text().startswith("flaky")
    assert "fixed by the driver update" in page.locator("#quarantine-history tbody tr").first.inner_text()
    assert not page.dialogs


def test_reruns_and_overview_health(server, page):
    base, ids = server
    page.goto(base + "/reruns")
    section = page.locator("section.rerun-run", has=page.locator(f'a[href="/runs/{ids["test_run"]}"]'))
    assert "flaky" in section.locator("tbody tr", has_text="rerun").first.inner_text()
    assert page.locator("section.rerun-run", has_text="workload").count() >= 1
    assert not page.dialogs
    shot(page, "reruns")
    page.goto(base + "/")
    for chart in ("health-pass-rate", "health-flaky-rate", "health-rerun-minutes", "health-infra-errors"):
        assert page.locator(f"svg#{chart} polyline").count() >= 1
    assert "tests_mass_failure" in page.locator("#test-health-totals").inner_text()
    shot(page, "overview-test-health")
