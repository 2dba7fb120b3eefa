"""The series chart's read model and page on real SQLite and PostgreSQL stores filled by real ingest and check:
x values are timestamps (gaps show), each run's band is the baseline that judged it, PR points are kept out of
main's line, the time range narrows the points, overlays, and the page's JSON block and static scripts."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from guardrail.store import models as m
from guardrail.store.db import session_scope
from tests.factories import result_doc, write
from tests.timeline import iso
from web import charts
from web.app import create_app
from web.read.series import series_detail

WL = "chart-wl</script><!--"  # a name that would break out of a script block if the JSON were not escaped
METRIC = "denoise_step_latency"
NIGHTS = (-30, -29, -28, -20, -19, -18)  # a 8-day gap between the third and fourth night


def fill(url: str, tmp) -> dict[str, int]:
    from guardrail.check import check_runs
    from guardrail.ingest import ingest

    files = []
    for i, day in enumerate(NIGHTS):
        level = 100.0 + i  # each night 1 ms slower: the baselines differ from run to run
        for hw in ("H100", "A100"):
            doc = result_doc(
                workload=WL, hardware=hw, commit=f"{i:02d}" + "ab" * 19, started_at=iso(days=day),
                run_id=f"n{i}-{hw}", metrics={METRIC: [[level, level + 1, level + 2], [level, level + 1, level + 2]]},
            )  # fmt: skip
            files.append(write(tmp / f"n{i}-{hw}.json", doc))
    pr = result_doc(
        workload=WL, commit="ee" * 20, lane="presubmit", branch="feature", pr=7, started_at=iso(days=-19, hours=6),
        run_id="p", metrics={METRIC: [[150.0, 151.0, 152.0], [150.0, 151.0, 152.0]]},
    )  # fmt: skip
    files.append(write(tmp / "pr.json", pr))
    ingest(url, files)
    with session_scope(url, write=True) as s:
        runs = {r.ci_run_id: r for r in s.query(m.Run)}
        for i in range(3, len(NIGHTS)):
            check_runs(s, [runs[f"n{i}-H100"]])
        check_runs(s, [runs["p"]])
        sid = s.query(m.Series).join(m.Workload).filter(m.Workload.name == WL, m.Series.hardware == "H100").one().id
        return {"series": sid, **{k: r.id for k, r in runs.items()}}


@pytest.fixture
def store(db_url, tmp_path):
    return db_url, fill(db_url, tmp_path)


def _detail(url, sid, **kw):
    with session_scope(url) as s:
        return series_detail(s, sid, **kw)


def test_points_on_a_time_axis_with_per_run_bands_and_pr_apart(store):
    url, ids = store
    d = _detail(url, ids["series"])
    pts = d["points"]
    assert len(pts) == len(NIGHTS) + 1
    # x values are seconds since 1970 of each run's start: the 8-day gap is 8 days of x, not one step.
    xs = [p["t"] for p in pts]
    assert xs == sorted(xs)
    main = [p for p in pts if p["kind"] == "main"]
    gaps = [round((b["t"] - a["t"]) / 86400) for a, b in zip(main, main[1:], strict=False)]
    assert gaps == [1, 1, 8, 1, 1]
    assert (
        main[0]["t"] == datetime.fromisoformat(iso(days=NIGHTS[0]).replace("Z", "+00:00")).astimezone(UTC).timestamp()
    )
    # The PR run is its own kind, with its PR number.
    prs = [p for p in pts if p["kind"] == "pr"]
    assert [(p["pr"], p["lane"], p["value"]) for p in prs] == [(7, "presubmit", pytest.approx(151.0))]
    # Each checked run carries the band of the baseline that judged it; the baselines differ run to run.
    checked = [p for p in main if p["band_median"] is not None]
    assert [p["run_id"] for p in checked] == [ids[f"n{i}-H100"] for i in range(3, len(NIGHTS))]
    medians = [p["band_median"] for p in checked]
    assert len(set(medians)) == len(medians)
    for p in checked:
        assert p["band_low"] < p["band_median"] < p["band_high"]
        assert p["band_median"] < p["value"]  # each night is slower than the nights before it
    assert all(p["band_low"] is None for p in main[:3])  # never checked: no band drawn there


def test_plot_data_keeps_pr_points_out_of_mains_line(store):
    url, ids = store
    d = _detail(url, ids["series"])
    plot = charts.series_plot_data(d)
    assert plot is not None and plot["unit"] == "ms"
    pr_i = [i for i, v in enumerate(plot["pr"]) if v is not None]
    assert len(pr_i) == 1 and plot["main"][pr_i[0]] is None
    assert plot["runs"][pr_i[0]]["pr"] == 7
    assert sum(v is not None for v in plot["main"]) == len(NIGHTS)
    assert plot["x"] == [p["t"] for p in d["points"]]
    assert sum(v is not None for v in plot["band_low"]) == 4  # three checked nights and the checked PR run


def test_time_range_and_overlays(store):
    url, ids = store
    since = datetime.fromisoformat(iso(days=-21).replace("Z", "+00:00"))
    d = _detail(url, ids["series"], since=since)
    assert [p["kind"] for p in d["points"]] == ["main", "main", "pr", "main"]
    until = datetime.fromisoformat(iso(days=-25).replace("Z", "+00:00"))
    assert len(_detail(url, ids["series"], until=until)["points"]) == 3
    hw = _detail(url, ids["series"], overlay="hardware")["overlay"]
    assert [o["label"] for o in hw] == ["A100"] and len(hw[0]["t"]) == len(NIGHTS)
    lanes = _detail(url, ids["series"], lane="nightly", overlay="lane")["overlay"]
    assert [o["label"] for o in lanes] == []  # the presubmit lane's only run is a PR run: never a line
    lanes = _detail(url, ids["series"], overlay="lane")["overlay"]
    assert [(o["label"], len(o["t"])) for o in lanes] == [("lane nightly", len(NIGHTS))]
    plot = charts.series_plot_data(_detail(url, ids["series"], overlay="hardware"))
    assert plot["overlay"][0]["label"] == "A100"
    assert sum(v is not None for v in plot["overlay"][0]["values"]) == len(NIGHTS)


def test_page_json_block_scripts_and_range(store):
    url, ids = store
    sid = ids["series"]
    with TestClient(create_app(url, cache_ttl=0)) as c:
        page = c.get(f"/series/{sid}", headers={"accept": "text/html"})
        assert page.status_code == 200
        html = page.text
        assert '<script src="/static/uplot/uPlot.iife.min.js" defer></script>' in html
        assert '<script src="/static/series-chart.js" defer></script>' in html
        # No inline executable script: every <script> either has a src or is a JSON data block.
        for tag in re.findall(r"<script[^>]*>", html):
            assert "src=" in tag or 'type="application/json"' in tag
        block = re.search(r'<script type="application/json" id="series-data">(.*?)</script>', html, re.S)
        assert block and "</script" not in block.group(1) and "<!--" not in block.group(1)
        data = json.loads(block.group(1))
        assert len(data["x"]) == len(NIGHTS) + 1 and data["unit"] == "ms"
        assert "<noscript>" in html and "<svg" in html  # the server's SVG without JavaScript
        narrowed = c.get(f"/series/{sid}?from={iso(days=-21)[:10]}", headers={"accept": "text/html"}).text
        nb = re.search(r'id="series-data">(.*?)</script>', narrowed, re.S)
        assert nb and len(json.loads(nb.group(1))["x"]) == 4
        assert c.get(f"/series/{sid}?from=yesterday").status_code == 422
        assert c.get(f"/series/{sid}?range=all").status_code == 200
        assert c.get(f"/series/{sid}?overlay=hardware", headers={"accept": "text/html"}).text.count("A100") >= 2
        for asset in ("/static/uplot/uPlot.iife.min.js", "/static/uplot/uPlot.min.css", "/static/series-chart.js"):
            assert c.get(asset).status_code == 200


def test_series_index_sparklines(store):
    url, ids = store
    from web.read.series import sparklines

    with session_scope(url) as s:
        sparks = sparklines(s, [ids["series"]])
    # Main's newest runs by time, oldest first: the six nights (100..105 ms + 1); the PR run (151) is not in it.
    assert sparks[ids["series"]] == pytest.approx([101.0, 102.0, 103.0, 104.0, 105.0, 106.0])
    with TestClient(create_app(url, cache_ttl=0)) as c:
        html = c.get("/series?metric=" + METRIC, headers={"accept": "text/html"}).text
    assert html.count('<svg class="spark"') == 2  # H100 and A100
