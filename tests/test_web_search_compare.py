"""Finding and comparing (issue 14 point 4): the series search (tokens in any order and case, separators alike,
a typo-tolerant fallback) on the page and in the JSON API, and the compare view (units, a 95% CI on b / a - 1 from
the same judgement as `guardrail compare`, better/worse by direction, sorting, a regressions-only filter), over a
real store filled by real ingest and served by the real app."""

from __future__ import annotations

import html as html_lib
import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.factories import noisy_repeats, result_doc, write
from tests.timeline import iso

HUNYUAN = [
    "test_hunyuan_image_tp2_cfgp2/1024x1024_steps8",
    "test_hunyuan_image_tp2_sp2/1024x1024_steps8",
    "test_hunyuan_image_tp4/1024x1024_steps8",
]
OTHER = "test_wan22_i2v_single_device/832x480_frames81_steps4"
CMP = "cmp-workload"


def _fill(url: str, tmp: Path) -> dict[str, int]:
    """Hunyuan and Wan series on two hardware, and two runs of CMP on H100: +10% latency (a regression),
    +20% throughput (higher is better: an improvement), an unchanged stage, a metric only the first run has."""
    from guardrail.ingest import ingest
    from guardrail.store import models as m
    from guardrail.store.db import session_scope

    rng = np.random.default_rng(11)
    files = []
    for i, name in enumerate([*HUNYUAN, OTHER]):
        for hw in ("H200", "Ascend910B3"):
            doc = result_doc(
                workload=name,
                hardware=hw,
                commit=f"{i:02d}" + "cd" * 19,
                started_at=iso(days=-3, hours=i),
                metrics={"latency_mean": [[2.0 + i]], "peak_memory": [[1000.0]]},
            )
            files.append(write(tmp / "docs" / f"s-{i}-{hw}.json", doc))
    for k, (lat, thr) in enumerate(((1000.0, 10.0), (1100.0, 12.0))):
        metrics = {
            "denoise_step_latency": noisy_repeats(lat, repeats=3, rng=rng),
            "throughput": noisy_repeats(thr, repeats=3, steps=1, between_cv=0.002, rng=rng),
            "vae_decode_latency": noisy_repeats(140.0, repeats=3, rng=rng),
        }
        if k == 0:
            metrics["text_encode_latency"] = noisy_repeats(60.0, repeats=2, rng=rng)
        doc = result_doc(
            workload=CMP,
            commit=f"{k:02d}" + "ef" * 19,
            started_at=iso(days=-2, hours=k),
            run_id=f"c{k}",
            metrics=metrics,
        )
        files.append(write(tmp / "cmp" / f"c{k}.json", doc))
    ingest(url, files)
    with session_scope(url) as s:
        runs = {r.ci_run_id: r.id for r in s.query(m.Run).filter(m.Run.ci_run_id.is_not(None))}
    return {"a": runs["c0"], "b": runs["c1"]}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search")
    url = f"sqlite:///{tmp / 'guardrail.db'}"
    ids = _fill(url, tmp)
    yield url, ids, tmp
    from guardrail.store import db as store_db

    store_db.get_engine(url).dispose()


@pytest.fixture(scope="module")
def client(store):
    from web.app import create_app

    with TestClient(create_app(store[0]), raise_server_exceptions=True) as c:
        yield c


def _listed(html: str) -> list[tuple[str, str]]:
    """(workload, hardware) of each series row of the series page's result table (grouped under workload rows)."""
    body = html.split('id="series-found"', 1)[1].split("</table>", 1)[0] if 'id="series-found"' in html else ""
    rows = re.findall(r'<tr data-workload="([^"]*)"><td><a href="/series/\d+">[^<]*</a>.*?</td><td>([^<]*)</td>', body)
    return [(html_lib.unescape(w), h) for w, h in rows]


# ------------------------------------------------------------------ search


def test_search_finds_hunyuan_on_the_page_without_javascript(client):
    page = client.get("/series", params={"q": "hunyuan"})
    assert page.status_code == 200
    # A plain GET form: it works without JavaScript.
    assert re.search(r'<form method="get" action="/series"[^>]*>', page.text)
    assert 'name="q"' in page.text and 'value="hunyuan"' in page.text
    listed = _listed(page.text)
    assert {w for w, _ in listed} == set(HUNYUAN)
    assert {h for _, h in listed} == {"H200", "Ascend910B3"}
    assert len(listed) == len(HUNYUAN) * 2 * 2  # two metrics on two hardware each
    assert 'id="fuzzy-note"' not in page.text


def test_search_tokens_in_any_order_case_and_separators(client):
    for q in ("TP2 Hunyuan", "hunyuan-image-tp2", "tp2 HUNYUAN_image latency"):
        got = client.get("/api/v1/series", params={"q": q}).json()
        assert {x["workload"] for x in got} == set(HUNYUAN[:2]), q
        assert all(x["match"] == "substring" for x in got)
    got = client.get("/api/v1/series", params={"q": "hunyuan ascend peak"}).json()
    assert [(x["hardware"], x["metric"]) for x in got] == [("Ascend910B3", "peak_memory")] * 3


def test_search_tolerates_typos_best_first(client):
    got = client.get("/api/v1/series", params={"q": "hunyan tp2"}).json()
    assert got and all(x["match"] == "fuzzy" for x in got)
    # tp2 is a short word, matched as it is: tp4 is not a typo of it.
    assert {x["workload"] for x in got} == set(HUNYUAN[:2])
    page = client.get("/series", params={"q": "hunyan tp2"}).text
    assert 'id="fuzzy-note"' in page and {w for w, _ in _listed(page)} == set(HUNYUAN[:2])
    wan = client.get("/api/v1/series", params={"q": "wan22 i2v singel"}).json()
    assert {x["workload"] for x in wan} == {OTHER}
    scores = [x["score"] for x in wan]
    assert scores == sorted(scores, reverse=True) and 0.75 <= min(scores) < 1.0


def test_search_no_match_and_exact_fields(client, store):
    page = client.get("/series", params={"q": "zzqqxx"}).text
    assert "No series match" in page and _listed(page) == []
    assert client.get("/api/v1/series", params={"q": "zzqqxx"}).json() == []
    # An exact lookup of one series (the PR comment's link) still goes straight to it...
    r = client.get(
        "/series",
        params={"workload": OTHER, "metric": "latency_mean", "hardware": "H200"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and re.fullmatch(r"/series/\d+", r.headers["location"])
    # ...and a field that names no series exactly is searched as text.
    page = client.get("/series", params={"workload": "hunyuan"}, follow_redirects=False)
    assert page.status_code == 200 and {w for w, _ in _listed(page.text)} == set(HUNYUAN)


def test_search_markup_in_the_query_is_text(client):
    page = client.get("/series", params={"q": '"><script>alert(1)</script>'}).text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


@pytest.mark.parametrize("q", ["hunyuan", "hunyan"])
def test_search_same_on_sqlite_and_postgresql(db_url, tmp_path, q):
    from guardrail.store.db import session_scope
    from web.read.series import find_series

    _fill(db_url, tmp_path)
    with session_scope(db_url) as s:
        got = find_series(s, q=q, limit=500)
    assert {x["workload"] for x in got} == set(HUNYUAN)


# ------------------------------------------------------------------ compare


def _rows(d: dict) -> dict[str, dict]:
    return {r["metric"]: r for r in d["rows"]}


def test_compare_ci_is_the_compare_commands(client, store):
    """The CI and verdict on each metric are those `guardrail compare` gives the same two result files."""
    from guardrail.compare_files import compare_files
    from guardrail.policy import load_lane_policy

    _, ids, tmp = store
    d = client.get("/api/v1/compare", params={"a": ids["a"], "b": ids["b"]}).json()
    rows = _rows(d)
    files = compare_files([tmp / "cmp" / "c0.json"], [tmp / "cmp" / "c1.json"], load_lane_policy("nightly"))
    by_metric = {v.metric: v for v in files.verdicts}
    for metric in ("denoise_step_latency", "throughput", "vae_decode_latency"):
        assert rows[metric]["change"] == pytest.approx(by_metric[metric].change)
        assert rows[metric]["ci"] == pytest.approx(list(by_metric[metric].ci))
        assert rows[metric]["verdict"] == by_metric[metric].verdict
    lat, thr = rows["denoise_step_latency"], rows["throughput"]
    assert lat["change"] == pytest.approx(0.10, abs=0.02) and 0 < lat["ci"][0] < 0.10 < lat["ci"][1]
    assert lat["verdict"] == "regression" and lat["worse"] == 1 and lat["unit"] == "ms"
    # Higher throughput is better: a rise is an improvement, coloured as better.
    assert thr["change"] == pytest.approx(0.20, abs=0.03) and thr["verdict"] == "improvement" and thr["worse"] == -1
    assert rows["text_encode_latency"]["verdict"] == "only_in_a" and rows["text_encode_latency"]["ci"] is None
    assert d["summary"]["regression"] == 1 and d["summary"]["improvement"] == 1


def test_compare_sorting_and_filter(client, store):
    _, ids, _ = store
    base = {"a": ids["a"], "b": ids["b"]}
    by_change = [r["metric"] for r in client.get("/api/v1/compare", params=base).json()["rows"]]
    assert by_change[0] == "denoise_step_latency" and by_change[-1] == "throughput"
    by_name = [r["metric"] for r in client.get("/api/v1/compare", params={**base, "sort": "name"}).json()["rows"]]
    assert by_name == sorted(by_name)
    only = client.get("/api/v1/compare", params={**base, "only": "regressions"}).json()
    assert [r["metric"] for r in only["rows"]] == ["denoise_step_latency"]
    assert only["summary"]["improvement"] == 1  # the counts are of every row
    changed = client.get("/api/v1/compare", params={**base, "only": "changed"}).json()
    assert {r["metric"] for r in changed["rows"]} == {"denoise_step_latency", "throughput"}
    assert client.get("/api/v1/compare", params={**base, "sort": "bogus"}).status_code == 422


def test_compare_page_units_ci_colours_and_links(client, store):
    _, ids, _ = store
    html = client.get("/compare", params={"a": ids["a"], "b": ids["b"]}).text
    body = html.split('id="compare"', 1)[1]
    rows = re.findall(r"<tr class=\"row-(\w+)\">(.*?)</tr>", body, flags=re.S)
    assert [v for v, _ in rows][:1] == ["regression"] and rows[-1][0] != "regression"
    reg = dict(rows)["regression"]
    assert '<span class="dir" title="lower is better">↓</span>' in reg and re.search(
        r'<td class="num">[\d,.]+ ms</td>', reg
    )
    assert re.search(r'class="num chg worse"[^>]*>\+\d+\.\d%<br><small class="ci">\+\d+\.\d% … \+\d+\.\d%</small>', reg)
    imp = dict(rows)["improvement"]
    assert 'class="num chg better"' in imp and "↑" in imp
    # Changes inside the noise are not coloured.
    assert all(
        "chg worse" not in r and "chg better" not in r for v, r in rows if v not in ("regression", "improvement")
    )
    assert "1 regression</strong>" in html and "1 improvement</strong>" in html
    # Sorting and the filter are links: no JavaScript needed.
    assert f'href="/compare?a={ids["a"]}&amp;b={ids["b"]}&amp;sort=name"' in html
    assert f'href="/compare?a={ids["a"]}&amp;b={ids["b"]}&amp;sort=change&amp;only=regressions"' in html
    only = client.get("/compare", params={"a": ids["a"], "b": ids["b"], "only": "regressions"}).text
    assert [v for v, _ in re.findall(r"<tr class=\"row-(\w+)\">(.*?)</tr>", only, flags=re.S)] == ["regression"]
    none = client.get("/compare", params={"a": ids["a"], "b": ids["a"], "only": "regressions"}).text
    assert 'id="compare-empty"' in none and "No regressions." in none


def test_compare_picker_swap_and_series_links(client, store):
    _, ids, _ = store
    # Without both runs the page offers the newest runs to pick from (a GET form), not a 422.
    pick = client.get("/compare", params={"a": ids["a"]})
    assert pick.status_code == 200 and 'id="compare-pick"' in pick.text
    assert re.search(rf'<select name="a" required>.*?<option value="{ids["a"]}" selected>', pick.text, flags=re.S)
    assert f'<option value="{ids["b"]}">run {ids["b"]} · nightly · H100' in pick.text
    assert client.get("/api/v1/compare", params={"a": ids["a"]}).status_code == 422  # the API needs both
    html = client.get("/compare", params={"a": ids["a"], "b": ids["b"], "only": "changed"}).text
    assert f'id="compare-swap" href="/compare?a={ids["b"]}&amp;b={ids["a"]}&amp;sort=change&amp;only=changed"' in html
    changed = client.get("/api/v1/compare", params={"a": ids["a"], "b": ids["b"], "only": "changed"}).json()["rows"]
    assert len(changed) == 2
    for r in changed:  # each metric links to its series
        assert f'<a class="metric" href="/series/{r["series_id"]}">{r["metric"]}</a>' in html
    swapped = _rows(client.get("/api/v1/compare", params={"a": ids["b"], "b": ids["a"]}).json())
    assert swapped["denoise_step_latency"]["change"] < 0 and swapped["denoise_step_latency"]["verdict"] == "improvement"


# ------------------------------------------------------------------ the API docs page (issue 14 point 8)


def test_api_docs_page_renders_markdown_and_documents_post_bodies(client):
    import json

    page = client.get("/docs").text
    spec = client.get("/openapi.json").json()
    # The description's `code` spans are rendered: no literal backtick outside the example blocks.
    assert "`" not in re.sub(r"<pre.*?</pre>", "", page, flags=re.S)
    assert "<code>Authorization: Bearer &lt;token&gt;</code>" in page
    # One section per operation of the OpenAPI description.
    sections = re.findall(r'<section class="op" id="([^"]+)">', page)
    assert len(sections) == sum(len(item) for item in spec["paths"].values()) and len(set(sections)) == len(sections)
    ingest = page.split("/api/v1/ingest</code></h3>", 1)[1].split("</section>", 1)[0]
    for field in ("format", "documents", "documents[].name", "documents[].content"):
        assert f"<code>{field}</code>" in ingest
    assert "at most 5000 items" in ingest and "401" in ingest
    body = html_lib.unescape(re.search(r"-d '(.*?)' \\", ingest, flags=re.S).group(1))
    assert json.loads(body) == {"documents": [{"name": "…", "content": {}}]}
    triage = page.split("/api/v1/alerts/triage</code></h3>", 1)[1].split("</section>", 1)[0]
    assert '<code>ids</code> <span class="req">required</span>' in triage
    assert "one of untriaged, acknowledged, confirmed" in triage
    search = page.split("/api/v1/series</code></h3>", 1)[1].split("</section>", 1)[0]
    assert "<code>q</code>" in search


def test_a_stored_infinity_reads_as_null_not_a_500(tmp_path):
    """A sample of -inf in the store (rows written before the schema refused them) makes that value unknown in the
    JSON answer; the rest of the comparison still comes back."""
    from sqlalchemy import select

    from guardrail.store import models as m
    from guardrail.store.db import session_scope
    from web.app import create_app

    url = f"sqlite:///{tmp_path / 'guardrail.db'}"
    ids = _fill(url, tmp_path)
    with session_scope(url, write=True) as s:
        run_a = s.get(m.Run, ids["a"])
        meas = s.scalars(
            select(m.Measurement)
            .join(m.Result, m.Measurement.result_id == m.Result.id)
            .join(m.Series, m.Measurement.series_id == m.Series.id)
            .where(m.Result.run_id == run_a.id, m.Series.metric == "vae_decode_latency")
        ).all()
        for x in meas:
            x.samples = np.full(4, -np.inf, dtype="<f8").tobytes()
    with TestClient(create_app(url), raise_server_exceptions=True) as c:
        r = c.get("/api/v1/compare", params={"a": ids["a"], "b": ids["b"]})
    assert r.status_code == 200, r.text[:300]
    rows = _rows(r.json())
    assert rows["vae_decode_latency"]["a"] is None
    assert rows["denoise_step_latency"]["verdict"] == "regression"  # the rest is judged as before
