"""Every page at a phone's 390 px and a laptop's 1280 px in real Chromium (issue 14 point 8): the document never
scrolls sideways (wide tables scroll inside their own box), text stays legible (no label under 10 px), every
page links the favicon. The store is the showcase the screenshots are taken of (bench/screenshots.py): the
vLLM-Omni corpus, the dashboard tests' perf and JUnit stores (a PR with two pushes, flaky tests, reruns) and a
synthetic Ascend NPU history with a regression, an improvement and an environment change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.factories import noisy_repeats, result_doc, write
from tests.test_browser_dashboard import ARGS, CHROMIUM, serving, sync_api  # noqa: F401  (skips as it does)
from tests.timeline import iso

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = (390, 1280)
NPU = "Ascend910B3"
NPU_WORKLOADS = ("wan22-ti2v-5b-720p", "hunyuan-image-2.1-tp2", "qwen-image-edit-2509")
NIGHTS = 24
STEP_NIGHT = 20  # wan22's denoise step is 6% slower from this night on (4 nights before the newest)
FAST_NIGHT = 18  # qwen's VAE decode 8% faster from here (an improvement, never a regression)
PR = 1234


def _npu_history(url: str, tmp: Path) -> dict[str, int]:
    """24 nightlies on main on Ascend910B3 of three workloads, CANN 8.5.0 -> 8.5.1 at night 12, a +6% step of
    wan22's denoise step latency at night 20, a -8% step of qwen's VAE decode at night 18; a PR with two pushes
    (the first 5% slower, the second back at main's level); checked and scanned for change points."""
    from guardrail.check import check_runs
    from guardrail.history import scan_change_points
    from guardrail.ingest import ingest
    from guardrail.store import models as m
    from guardrail.store.db import session_scope

    rng = np.random.default_rng(2026)
    files = []
    levels = {"wan22-ti2v-5b-720p": 1098.0, "hunyuan-image-2.1-tp2": 612.0, "qwen-image-edit-2509": 845.0}
    for night in range(NIGHTS):
        for w, level in levels.items():
            step = 1.06 if (w == "wan22-ti2v-5b-720p" and night >= STEP_NIGHT) else 1.0
            vae = 0.92 if (w == "qwen-image-edit-2509" and night >= FAST_NIGHT) else 1.0
            doc = result_doc(
                workload=w,
                hardware=NPU,
                commit=f"{night:02d}{'9a' * 19}",
                started_at=iso(days=night - NIGHTS, hours=-9),
                run_id=f"npu-n{night}",
                metrics={
                    "denoise_step_latency": noisy_repeats(level * step, repeats=3, rng=rng),
                    # the stages of one generation (the run page's stage breakdown): 20 denoise steps
                    "text_encode_latency": noisy_repeats(58.0, repeats=3, steps=1, rng=rng),
                    "denoise_latency": noisy_repeats(level * step * 20, repeats=3, steps=1, rng=rng),
                    "vae_decode_latency": noisy_repeats(140.0 * vae, repeats=3, steps=1, rng=rng),
                    "peak_memory": [[23552.0], [23552.0], [23552.0]],
                },
            )
            doc["environment"]["device_type"] = "npu"
            doc["environment"]["software"] = {"torch": "2.9.0", "torch_npu": "2.9.0", "diffusers": "0.42.1"}
            doc["environment"]["software"]["cann"] = "8.5.0" if night < 12 else "8.5.1"
            doc["run"]["source"]["message"] = f"nightly {night}: scheduler and attention work"
            files.append(write(tmp / "npu" / f"{w}-{night:02d}.json", doc))
    # The PR's first push slows hunyuan by 5%; its second is back at main's level (wan22 at main's new level).
    for push, (sha, slow) in enumerate((("f1" * 20, 1.05), ("f2" * 20, 1.0))):
        for w, level in levels.items():
            doc = result_doc(
                workload=w,
                hardware=NPU,
                lane="presubmit",
                commit=sha,
                pr=PR,
                branch="feature/faster-vae",
                started_at=iso(days=-1, hours=push * 3 - 12),
                run_id=f"npu-pr{push}",
                metrics={"denoise_step_latency": noisy_repeats(_pr_level(w, level, slow), repeats=3, rng=rng)},
            )
            doc["environment"]["device_type"] = "npu"
            doc["environment"]["software"] = {"torch": "2.9.0", "torch_npu": "2.9.0", "diffusers": "0.42.1"}
            doc["environment"]["software"]["cann"] = "8.5.1"
            doc["run"]["source"]["base_commit"] = f"{NIGHTS - 1:02d}{'9a' * 19}"
            files.append(write(tmp / "npu" / f"pr-{push}-{w}.json", doc))
    ingest(url, files)
    with session_scope(url, write=True) as s:
        runs = {r.ci_run_id: r for r in s.query(m.Run).filter(m.Run.ci_run_id.like("npu-%"))}
        for night in range(STEP_NIGHT - 3, NIGHTS):
            check_runs(s, [runs[f"npu-n{night}"]])
        check_runs(s, [runs["npu-pr0"], runs["npu-pr1"]])
        scan_change_points(s, lane="nightly", branch="main", hardware=NPU, window=30)
        series = (
            s.query(m.Series)
            .join(m.Workload)
            .filter(m.Workload.name == "wan22-ti2v-5b-720p", m.Series.metric == "denoise_step_latency")
            .one()
        )
        alert = s.query(m.Alert).filter(m.Alert.hardware == NPU).order_by(m.Alert.id).first()
        return {
            "npu_series": series.id,
            "npu_last": runs[f"npu-n{NIGHTS - 1}"].id,
            "npu_before": runs[f"npu-n{STEP_NIGHT - 1}"].id,
            "npu_pr_run": runs["npu-pr1"].id,
            "npu_alert": alert.id if alert else 0,
        }


def _pr_level(workload: str, level: float, slow: float) -> float:
    main = level * (1.06 if workload == "wan22-ti2v-5b-720p" else 1.0)
    return main * (slow if workload == "hunyuan-image-2.1-tp2" else 1.0)


def fill_showcase(url: str, tmp: Path) -> dict:
    """The store the width test and the screenshots use (see the module's docstring)."""
    from guardrail.ingest import ingest
    from tests.conftest import corpus_dir
    from tests.test_web_flaky_api import fill_flaky_db

    ids = fill_flaky_db(url, tmp)
    corpus = corpus_dir()
    if corpus is not None:
        raw = corpus / "vllm-omni-nightly"
        ingest(url, [p for p in (raw / "buildkite_nightly_raw", raw / "local_nightly_raw") if p.is_dir()])
    ids.update(_npu_history(url, tmp))
    return ids


def pages(ids: dict) -> dict[str, str]:
    """Every page of the dashboard, by a name (the screenshot's file name) -> its path."""
    return {
        "overview": "/",
        "alerts": "/alerts?state=untriaged,acknowledged,confirmed",
        "alert": f"/alerts/{ids['npu_alert'] or ids['alert_ids'][0]}",
        "runs": "/runs",
        "run": f"/runs/{ids['npu_last']}",
        "run-corpus": f"/runs/{ids['last_nightly']}",
        "run-junit": f"/runs/{ids['test_run']}",
        "compare": f"/compare?a={ids['npu_before']}&b={ids['npu_last']}",
        "compare-pick": "/compare",
        "series-index": "/series",
        "series-search": "/series?q=hunyuan",
        "series-fuzzy": "/series?q=hunyan+tp2",
        "series": f"/series/{ids['npu_series']}?lane=nightly",
        "series-markup": f"/series/{ids['series_id']}",
        "prs": "/prs",
        "pr": f"/prs/{PR}",
        "baselines": "/baselines",
        "matrix": "/matrix",
        "parity": "/parity",
        "flaky": "/flaky",
        "test": f"/tests/{ids['flaky_pk']}",
        "reruns": "/reruns",
        "login": "/login",
        "api-docs": "/docs",
        "not-found": "/runs/999999",
    }


# What a page may not do at a width: the document wider than the window, or text smaller than 10 px (chart labels
# included). Returns the document's width, the window's, and the smallest font size in use with an example.
MEASURE = """() => {
  const doc = document.documentElement;
  let small = null;
  for (const el of document.querySelectorAll('body *')) {
    if (!el.childNodes.length || el.closest('noscript, script, style, .sr')) continue;
    const hasText = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!hasText) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    let size = parseFloat(getComputedStyle(el).fontSize);
    // SVG text scales with its picture: the size on screen is the font size times the drawn/viewBox ratio.
    const svg = el.closest('svg');
    if (svg && svg.viewBox && svg.viewBox.baseVal && svg.viewBox.baseVal.width) {
      size *= svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
    }
    if (small === null || size < small.size) small = {size, text: el.textContent.trim().slice(0, 40), tag: el.tagName};
  }
  return {scroll: doc.scrollWidth, inner: window.innerWidth, small,
          favicon: !!document.querySelector('link[rel=icon][href="/static/favicon.svg"]')};
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from web.app import create_app

    tmp = tmp_path_factory.mktemp("widths")
    url = f"sqlite:///{tmp / 'guardrail.db'}"
    ids = fill_showcase(url, tmp)
    with serving(create_app(url, cache_ttl=0)) as base:
        yield base, ids


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_fits_the_width(server, browser, width):
    base, ids = server
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    problems = []
    try:
        for name, path in pages(ids).items():
            resp = page.goto(base + path)
            assert resp is not None and resp.status == (404 if name == "not-found" else 200), (name, path)
            if "/series/" in path:
                page.wait_for_selector("#series-chart[data-ready='1'] canvas")
            m = page.evaluate(MEASURE)
            if m["scroll"] > m["inner"]:
                problems.append(f"{name} ({path}): document {m['scroll']} px wide in a {m['inner']} px window")
            if m["small"] and m["small"]["size"] < 10:
                problems.append(f"{name} ({path}): {m['small']['size']:.1f} px text {m['small']}")
            if not m["favicon"]:
                problems.append(f"{name} ({path}): no favicon link")
    finally:
        context.close()
    assert not problems, "\n".join(problems)


def test_favicon_is_served(server):
    import httpx

    base, _ = server
    r = httpx.get(base + "/static/favicon.svg")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg") and b"<svg" in r.content


def test_search_box_finds_hunyuan_in_the_browser(server, browser):
    """Typed into the search box at 390 px and sent with Enter: the hunyuan series, on a phone's width."""
    base, _ = server
    context = browser.new_context(viewport={"width": 390, "height": 900})
    try:
        page = context.new_page()
        page.goto(base + "/series")
        page.fill("#series-q", "Hunyuan TP2")
        page.press("#series-q", "Enter")
        page.wait_for_url("**/series?q=Hunyuan+TP2*")
        workloads = page.locator("#series-found tr[data-workload]").evaluate_all(
            "rows => rows.map(r => r.dataset.workload)"
        )
        assert workloads and all("hunyuan" in w.lower() and "tp2" in w.lower() for w in workloads)
        assert "hunyuan-image-2.1-tp2" in workloads  # the synthetic NPU workload
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        # A typo still finds it, with the note saying these are the closest names.
        page.fill("#series-q", "hunyan-imge tp2")
        page.press("#series-q", "Enter")
        page.wait_for_selector("#fuzzy-note")
        assert page.locator("#series-found tr[data-workload='hunyuan-image-2.1-tp2']").count() == 5  # its 5 metrics
    finally:
        context.close()


def test_signed_in_pages_fit_a_phone(server, browser):
    """Signed in, the pages with forms (triage, bulk triage, quarantine) fit 390 px too."""
    base, ids = server
    context = browser.new_context(viewport={"width": 390, "height": 900})
    try:
        page = context.new_page()
        page.goto(base + "/login")
        page.fill("input[name=token]", ids["token"])
        page.click("#login button[type=submit]")
        page.wait_for_load_state()
        assert "sign out" in page.locator("header").inner_text()
        wide = []
        for name in ("overview", "alerts", "alert", "flaky", "test", "reruns", "run-junit"):
            page.goto(base + pages(ids)[name])
            m = page.evaluate(MEASURE)
            if m["scroll"] > m["inner"]:
                wide.append(f"{name}: {m['scroll']} px")
        assert not wide, wide
    finally:
        context.close()
