"""The dashboard in real Chromium (Debian's package, driven by Playwright) over a real uvicorn server on
127.0.0.1 and a SQLite store filled by real ingest: triage an alert, open series and run pages, and save
screenshots (to docs/screenshots/ with GUARDRAIL_SCREENSHOTS=docs/screenshots)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Screenshots go to a scratch folder, or to docs/screenshots/ when refreshing them on purpose:
#   GUARDRAIL_SCREENSHOTS=docs/screenshots pytest tests/test_browser_*.py
SHOTS = Path(os.environ.get("GUARDRAIL_SCREENSHOTS") or Path(tempfile.gettempdir()) / "guardrail-screenshots")

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app):
    """A real uvicorn server for `app` on a free 127.0.0.1 port, in a thread; yields its base URL."""
    import uvicorn

    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 20 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.conftest import corpus_dir
    from tests.test_web_api import fill_db
    from web.app import create_app

    tmp = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{tmp / 'guardrail.db'}"
    ids = fill_db(url, tmp, corpus_dir())
    with serving(create_app(url)) as base:
        yield base, ids


@pytest.fixture(scope="module")
def page():
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        pg = context.new_page()
        pg.set_default_timeout(15000)
        yield pg
        context.close()
        browser.close()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_overview_shows_grid_and_open_alerts(server, page):
    base, _ = server
    page.goto(base + "/")
    assert page.locator("#status-grid").is_visible()
    # The markup in the workload name is shown as text, not run.
    assert page.get_by_text("wan22-<b>bold</b><script>alert(1)</script>").first.is_visible()
    assert page.locator("#status-grid b").count() == 0
    shot(page, "overview")


def test_triage_an_alert_in_the_browser(server, page):
    base, ids = server
    alert_id = ids["alert_ids"][0]
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    # Without signing in, the form is refused and the alert is unchanged.
    page.goto(f"{base}/alerts/{alert_id}")
    page.select_option("#triage select[name=state]", "acknowledged")
    page.click("#triage button[type=submit]")
    assert "Sign in to triage" in page.content()
    # Sign in with the token, then triage with a note that carries markup.
    page.goto(base + "/login")
    page.fill("input[name=token]", ids["token"])
    page.click("button[type=submit]")
    page.wait_for_url(base + "/alerts")
    page.goto(f"{base}/alerts/{alert_id}")
    page.select_option("#triage select[name=state]", "confirmed")
    page.fill("#triage input[name=note]", "bisected: <script>alert(3)</script>")
    page.fill("#triage input[name=issue_url]", "https://example.org/issues/7")
    page.click("#triage button[type=submit]")
    page.wait_for_url(f"{base}/alerts/{alert_id}")
    assert page.locator("#alert-state").inner_text().startswith("confirmed")
    assert page.locator("#alert-who").inner_text() == "ci-bot"
    assert page.locator("#alert-when").inner_text().startswith("20")
    assert page.locator("#alert-note").inner_text() == "bisected: <script>alert(3)</script>"
    row = page.locator("#events tbody tr").first
    assert "ci-bot" in row.inner_text() and "confirmed" in row.inner_text()
    assert not dialogs, "markup in the note ran as script"
    shot(page, "alert-triaged")


def test_bulk_triage_from_the_list(server, page):
    base, ids = server
    page.goto(base + "/alerts")
    boxes = page.locator("#alerts input[name=ids]")
    assert boxes.count() >= 1
    for i in range(boxes.count()):
        boxes.nth(i).check()
    page.select_option("#bulk select[name=state]", "expected")
    page.fill("#bulk input[name=note]", "intended: new scheduler")
    page.click("#bulk fieldset button[type=submit]")
    page.wait_for_url(base + "/alerts")
    states = page.locator("#alerts tbody tr td:nth-child(10)").all_inner_texts()
    assert states and all(s.strip() == "expected" for s in states)
    shot(page, "alerts")


def test_series_page_chart_hover_and_click_through(server, page):
    # The chart is uPlot's canvas (tests/test_browser_series.py); the server's SVG is its no-JavaScript fallback.
    base, ids = server
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{base}/series/{ids['series_id']}?lane=nightly")
    page.wait_for_selector("#series-chart[data-ready='1'] canvas")
    data = page.evaluate("JSON.parse(document.getElementById('series-data').textContent)")
    assert sum(v is not None for v in data["main"]) == 14
    assert len([mk for mk in data["marks"] if mk["kind"] == "change"]) >= 1
    assert len([mk for mk in data["marks"] if mk["kind"] == "env"]) == 1
    page.locator("#series-chart .u-over").hover()
    shot(page, "series")
    page.focus("#series-chart")
    page.keyboard.press("End")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/runs/{ids['last_nightly']}")
    assert not dialogs


def test_series_page_svg_without_javascript(server, page):
    base, ids = server
    context = page.context.browser.new_context(viewport={"width": 1360, "height": 900}, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{base}/series/{ids['series_id']}?lane=nightly")
        chart = page.locator("svg#history")
        assert chart.is_visible()
        assert page.locator("svg#history .pt").count() == 14
        assert page.locator("svg#history .cp").count() >= 1
        assert page.locator("svg#history .envchange").count() == 1
        assert page.locator("svg#history .band").count() == 1
        titles = page.locator("svg#history .pt title").all_text_contents()
        assert any("fix <img src=x onerror=alert(2)> speed" in t for t in titles)  # commit message, as text
        page.locator("svg#history .pt").last.click()
        page.wait_for_url(f"{base}/runs/{ids['last_nightly']}")
    finally:
        context.close()


def test_run_page_and_compare(server, page):
    base, ids = server
    page.goto(f"{base}/runs/{ids['last_nightly']}")
    assert page.get_by_text("Stage breakdown").first.is_visible()
    assert page.locator("svg.stages rect").count() == 3
    assert page.locator("table.metrics .badge").count() >= 1
    assert "Output drift" in page.content()
    shot(page, "run")
    page.fill("input[name=b]", str(ids["first_nightly"]))
    page.click("form.filters button[type=submit]")
    page.wait_for_url(f"{base}/compare?a={ids['last_nightly']}&b={ids['first_nightly']}")
    assert page.locator("#compare tbody tr").count() >= 4
    shot(page, "compare")


def test_pr_page(server, page):
    base, _ = server
    page.goto(base + "/prs/42")
    assert page.get_by_text("Latest push").is_visible()
    assert page.locator(".md table").first.is_visible()
    shot(page, "pr")
