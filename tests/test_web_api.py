"""The JSON API and the pages over a real SQLite store filled by real ingest, check and change-point scans,
served by the real app (FastAPI's TestClient speaks ASGI to it; the browser tests use a real socket)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from guardrail.api_tokens import create_token, hash_token
from guardrail.store import models as m
from guardrail.store.db import session_scope
from tests.factories import noisy_repeats, result_doc, write
from tests.timeline import iso

MARKUP_WORKLOAD = "wan22-<b>bold</b><script>alert(1)</script>"
MARKUP_MESSAGE = "fix <img src=x onerror=alert(2)> speed"


def fill_db(url: str, tmp: Path, corpus: Path | None) -> dict:
    """A store like a real deployment's: the vLLM-Omni corpus, plus 14 nightlies on main of a workload whose
    name and commit messages carry markup, with an environment change and a step regression, checked and
    scanned for change points; a PR with two checked pushes; one API token."""
    from guardrail.check import check_runs
    from guardrail.history import scan_change_points
    from guardrail.ingest import ingest

    if corpus is not None:
        ingest(url, [corpus / "vllm-omni-nightly" / "buildkite_nightly_raw"])
    rng = np.random.default_rng(7)
    files = []
    for night in range(14):
        level = 1100.0 * (1.08 if night >= 10 else 1.0)
        doc = result_doc(
            workload=MARKUP_WORKLOAD,
            commit=f"{night:02d}" + "ab" * 19,
            started_at=iso(days=night - 21, hours=-7),
            run_id=f"n{night}",
            metrics={
                "denoise_step_latency": noisy_repeats(level, repeats=3, rng=rng),
                "denoise_latency": noisy_repeats(900.0, repeats=2, steps=1, rng=rng),
                "text_encode_latency": noisy_repeats(60.0, repeats=2, steps=1, rng=rng),
                "vae_decode_latency": noisy_repeats(140.0, repeats=2, steps=1, rng=rng),
            },
        )
        doc["run"]["source"]["message"] = MARKUP_MESSAGE
        doc["environment"]["software"]["triton"] = "3.4.0" if night < 7 else "3.5.0"
        doc["extra"] = {
            "output_fingerprint": {
                "shape": [1, 3, 64, 64],
                "mean": 0.41 + (0.01 if night >= 10 else 0),
                "std": 0.2,
                "min": 0.0,
                "max": 1.0,
            }
        }
        files.append(write(tmp / "docs" / f"nightly-{night:02d}.json", doc))
    for push, (sha, level) in enumerate((("aa11" * 10, 1100.0), ("bb22" * 10, 1180.0))):
        doc = result_doc(
            workload=MARKUP_WORKLOAD,
            lane="presubmit",
            commit=sha,
            pr=42,
            branch="feature",
            started_at=iso(days=-7, hours=push - 11),
            run_id=f"pr{push}",
            metrics={"denoise_step_latency": noisy_repeats(level, repeats=3, rng=rng)},
        )
        doc["run"]["source"]["base_commit"] = "09" + "ab" * 19
        files.append(write(tmp / "docs" / f"pr-{push}.json", doc))
    report = ingest(url, files)
    with session_scope(url, write=True) as s:
        runs = {r.ci_run_id: r for r in s.query(m.Run).filter(m.Run.ci_run_id.is_not(None))}
        for key in ("n12", "n13", "pr0", "pr1"):
            check_runs(s, [runs[key]])
        scan_change_points(s, lane="nightly", branch="main", window=20)
        _, token = create_token(s, "ci-bot")
        series = (
            s.query(m.Series)
            .join(m.Workload)
            .filter(m.Workload.name == MARKUP_WORKLOAD, m.Series.metric == "denoise_step_latency")
            .one()
        )
        ids = {
            "token": token,
            "series_id": series.id,
            "last_nightly": runs["n13"].id,
            "first_nightly": runs["n0"].id,
            "first_high": runs["n10"].id,  # the first nightly of the output drift (ids need not be consecutive)
            "pr_run": runs["pr1"].id,
            "alert_ids": [a.id for a in s.query(m.Alert)],
        }
    ids["stored"] = len(report.stored)
    return ids


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from tests.conftest import corpus_dir

    tmp = tmp_path_factory.mktemp("web")
    url = f"sqlite:///{tmp / 'guardrail.db'}"
    ids = fill_db(url, tmp, corpus_dir())
    yield url, ids, tmp
    from guardrail.store import db as store_db

    store_db.get_engine(url).dispose()


@pytest.fixture(scope="module")
def client(store):
    from web.app import create_app

    url, _, _ = store
    with TestClient(create_app(url), raise_server_exceptions=True) as c:
        yield c


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_token_is_stored_hashed_only(store):
    url, ids, _ = store
    with session_scope(url) as s:
        row = s.query(m.ApiToken).filter_by(name="ci-bot").one()
        assert row.token_hash == hash_token(ids["token"])
        assert ids["token"] not in row.token_hash


def test_fixture_raised_alerts(store):
    _, ids, _ = store
    assert ids["alert_ids"], "the step regression should raise at least one alert"


def test_overview_json_and_page(client, store):
    data = client.get("/api/v1/overview").json()
    names = [w["workload"] for w in data["workloads"]]
    assert MARKUP_WORKLOAD in names
    cell = next(w for w in data["workloads"] if w["workload"] == MARKUP_WORKLOAD)["cells"]["H100"]
    assert cell["run_id"] == store[1]["last_nightly"] and cell["verdict"] is not None
    assert data["open_alerts"]
    page = client.get("/")
    assert page.status_code == 200 and "status-grid" in page.text


def test_markup_is_inert_everywhere(client, store):
    _, ids, _ = store
    for path in (
        "/",
        "/alerts",
        f"/series/{ids['series_id']}",
        f"/runs/{ids['last_nightly']}",
        "/prs/42",
        f"/compare?a={ids['first_nightly']}&b={ids['last_nightly']}",
        "/runs",
    ):
        html = client.get(path).text
        assert "<script>alert(1)" not in html, path
        assert "<img src=x" not in html, path
        assert "<b>bold</b>" not in html, path
    run_page = client.get(f"/runs/{ids['last_nightly']}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in run_page
    assert "fix &lt;img src=x onerror=alert(2)&gt; speed" in run_page


def test_writes_reject_missing_and_wrong_tokens(client, store):
    _, ids, _ = store
    alert = ids["alert_ids"][0]
    body = {"state": "acknowledged", "note": "looking"}
    for headers in ({}, auth("gr_wrong"), {"Authorization": "Basic Zm9vOmJhcg=="}, auth("")):
        assert client.post(f"/api/v1/alerts/{alert}/triage", json=body, headers=headers).status_code == 401
        assert client.post("/api/v1/alerts/triage", json={**body, "ids": [alert]}, headers=headers).status_code == 401
        r = client.post(
            "/api/v1/ingest", json={"format": "auto", "documents": [{"name": "a.json", "content": {}}]}, headers=headers
        )
        assert r.status_code == 401
    # The page form refuses without the sign-in cookie, and nothing changed.
    r = client.post(f"/alerts/{alert}/triage", data={"state": "fixed"}, follow_redirects=False)
    assert r.status_code == 401
    assert client.get(f"/api/v1/alerts/{alert}").json()["state"] == "untriaged"


def test_revoked_token_is_refused(client, store):
    from guardrail.api_tokens import revoke_token

    url, ids, _ = store
    with session_scope(url, write=True) as s:
        _, token = create_token(s, "short-lived")
    assert (
        client.post(
            "/api/v1/alerts/triage", json={"ids": [ids["alert_ids"][0]], "state": "untriaged"}, headers=auth(token)
        ).status_code
        == 200
    )
    with session_scope(url, write=True) as s:
        revoke_token(s, "short-lived")
    assert (
        client.post(
            "/api/v1/alerts/triage", json={"ids": [ids["alert_ids"][0]], "state": "untriaged"}, headers=auth(token)
        ).status_code
        == 401
    )


def test_triage_writes_events_with_who_and_when(client, store):
    _, ids, _ = store
    alert = ids["alert_ids"][0]
    r = client.post(
        f"/api/v1/alerts/{alert}/triage",
        headers=auth(ids["token"]),
        json={"state": "confirmed", "note": "<i>real</i> slowdown", "issue_url": "https://example.org/i/1"},
    )
    assert r.status_code == 200, r.text
    detail = client.get(f"/api/v1/alerts/{alert}").json()
    assert detail["state"] == "confirmed" and detail["updated_by"] == "ci-bot" and detail["updated_at"]
    assert detail["events"][0]["note"] == "<i>real</i> slowdown" and detail["events"][0]["author"] == "ci-bot"
    page = client.get(f"/alerts/{alert}").text
    assert "&lt;i&gt;real&lt;/i&gt; slowdown" in page and "<i>real</i>" not in page
    bad = client.post(f"/api/v1/alerts/{alert}/triage", headers=auth(ids["token"]), json={"state": "bogus"})
    assert bad.status_code == 422
    js = client.post(
        f"/api/v1/alerts/{alert}/triage",
        headers=auth(ids["token"]),
        json={"state": "confirmed", "issue_url": "javascript:alert(1)"},
    )
    assert js.status_code == 422
    missing = client.post(
        "/api/v1/alerts/triage", headers=auth(ids["token"]), json={"state": "fixed", "ids": [alert, 999999]}
    )
    assert missing.status_code == 404
    assert client.get(f"/api/v1/alerts/{alert}").json()["state"] == "confirmed"  # all or nothing


def test_alert_filters(client, store):
    data = client.get("/api/v1/alerts", params={"state": ["confirmed", "untriaged"], "hardware": "H100"}).json()
    assert all(a["state"] in ("confirmed", "untriaged") and a["hardware"] == "H100" for a in data["alerts"])
    none = client.get("/api/v1/alerts", params={"workload": "no-such-workload%_"}).json()
    assert none["total"] == 0 and none["alerts"] == []


def test_series_history_has_band_change_points_and_environment_change(client, store):
    _, ids, _ = store
    d = client.get(f"/api/v1/series/{ids['series_id']}", params={"lane": "nightly"}).json()
    assert len(d["points"]) == 14
    assert all(p["low"] <= p["value"] <= p["high"] for p in d["points"])
    assert d["baseline"] and d["baseline"]["low"] < d["baseline"]["median"] < d["baseline"]["high"]
    assert any(c["index"] == 10 for c in d["change_points"])
    assert [e["index"] for e in d["environment_changes"]] == [7]
    assert d["environment_changes"][0]["changed"] == {"triton": ["3.4.0", "3.5.0"]}
    assert d["points"][0]["message"] == MARKUP_MESSAGE
    page = client.get(f"/series/{ids['series_id']}").text
    assert 'id="history"' in page and "triton 3.4.0 → 3.5.0" in page and f'href="/runs/{ids["last_nightly"]}"' in page
    samples = client.get(f"/api/v1/series/{ids['series_id']}/runs/{ids['last_nightly']}/samples").json()
    assert len(samples["repeats"]) == 3 and len(samples["repeats"][0]) == 20


def test_series_lookup_from_pr_comment_link(client, store):
    _, ids, _ = store
    r = client.get(
        "/series",
        params={"workload": MARKUP_WORKLOAD, "metric": "denoise_step_latency", "hardware": "H100"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == f"/series/{ids['series_id']}"


def test_run_page_verdicts_stages_drift(client, store):
    _, ids, _ = store
    d = client.get(f"/api/v1/runs/{ids['last_nightly']}").json()
    (res,) = [r for r in d["results"] if r["workload"] == MARKUP_WORKLOAD]
    by_metric = {x["metric"]: x for x in res["metrics"]}
    assert by_metric["denoise_step_latency"]["verdict"] is not None
    assert by_metric["denoise_step_latency"]["explanation"]
    assert {s["metric"] for s in res["stages"]} == {"text_encode_latency", "denoise_latency", "vae_decode_latency"}
    assert res["output_drift"]["verdict"] == "unchanged"
    first_high = client.get(f"/api/v1/runs/{ids['first_high']}").json()
    res10 = next(r for r in first_high["results"] if r["workload"] == MARKUP_WORKLOAD)
    assert res10["output_drift"]["verdict"] == "drifted"
    assert d["check"]["status"] in ("success", "failure")
    page = client.get(f"/runs/{ids['last_nightly']}").text
    assert "Stage breakdown" in page and "Output drift" in page
    assert f'href="https://github.com/org/project/commit/13{"ab" * 19}"' in page


def test_compare_two_runs(client, store):
    _, ids, _ = store
    d = client.get("/api/v1/compare", params={"a": ids["first_nightly"], "b": ids["last_nightly"]}).json()
    row = next(r for r in d["rows"] if r["metric"] == "denoise_step_latency")
    assert row["change"] == pytest.approx(0.08, abs=0.02)


def test_pr_page_shows_comment_over_pushes(client, store):
    d = client.get("/api/v1/prs/42").json()
    assert len(d["pushes"]) == 2
    assert d["pushes"][0]["run"]["commit"].startswith("bb22")  # newest first
    page = client.get("/prs/42").text
    assert "Performance guardrail" in page and "Latest push" in page and "<table>" in page


def test_not_found_and_bad_input(client):
    assert client.get("/api/v1/runs/999999").status_code == 404
    assert client.get("/api/v1/runs/0").status_code == 422
    assert client.get("/api/v1/runs/99999999999999999999").status_code == 422
    assert client.get("/runs/999999", headers={"accept": "text/html"}).status_code == 404


def test_flaky_and_reruns_pages_are_in_place(client):
    assert "No test results ingested yet" in client.get("/flaky").text
    assert "No test results ingested yet" in client.get("/reruns").text
    assert client.get("/api/v1/flaky").json()["tests"] == []


def test_no_cdn_anywhere(client, store):
    _, ids, _ = store
    for path in ("/", "/docs", f"/series/{ids['series_id']}", "/alerts", "/login"):
        html = client.get(path).text
        assets = re.findall(r"<(?:link|script|img|iframe)\b[^>]*?(?:src|href)=\"([^\"]*)\"", html)
        assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets), (path, assets)
        assert "@import" not in html and "cdn" not in html.lower(), path
    assert "url(" not in client.get("/static/style.css").text


def test_ingest_endpoint_contract(client, store, tmp_path):
    """The upload client's contract: all-or-nothing, idempotent, bad input 422 naming document and field."""
    from guardrail.upload import upload

    _, ids, _ = store
    good = result_doc(workload="uploaded", commit="up1", run_id="u1")
    f = write(tmp_path / "good.json", good)
    base = str(client.base_url)
    # The real client over the ASGI transport would need a socket; exercise the same payload here.
    payload = {"format": "auto", "documents": [{"name": "good.json", "content": good}]}
    r1 = client.post("/api/v1/ingest", json=payload, headers=auth(ids["token"]))
    assert r1.status_code == 200, r1.text
    assert len(r1.json()["stored"]) == 1 and r1.json()["stored"][0]["file"] == "good.json"
    r2 = client.post("/api/v1/ingest", json=payload, headers=auth(ids["token"]))
    assert r2.json()["stored"] == [] and len(r2.json()["skipped"]) == 1 and r2.json()["run_ids"] == r1.json()["run_ids"]
    bad = result_doc(workload="uploaded-bad", commit="up2", run_id="u2")
    bad["metrics"][0]["repeats"] = "fast"
    r3 = client.post(
        "/api/v1/ingest",
        headers=auth(ids["token"]),
        json={
            "format": "auto",
            "documents": [
                {"name": "ok.json", "content": result_doc(workload="never", commit="up3")},
                {"name": "bad.json", "content": bad},
            ],
        },
    )
    assert r3.status_code == 422
    detail = r3.json()["detail"]
    assert "bad.json" in detail and "repeats" in detail and "\n" not in detail and "/tmp" not in detail
    assert client.get("/api/v1/series", params={"workload": "never"}).json() == []  # nothing half-written
    from tests.conftest import corpus_dir

    if corpus_dir() is not None:  # an adapter format travels the same way (detected from name and content)
        src = sorted((corpus_dir() / "vllm-omni-nightly" / "local_nightly_raw").rglob("*.json"))[0]
        doc = {"name": src.name, "content": json.loads(src.read_text())}
        r = client.post("/api/v1/ingest", json={"documents": [doc]}, headers=auth(ids["token"]))
        assert r.status_code == 200 and r.json()["stored"] and r.json()["stored"][0]["file"] == src.name, r.text
    for odd in ("..", ".", "../../etc/passwd", "a\x00b.json", "é" * 120):
        r = client.post(
            "/api/v1/ingest",
            headers=auth(ids["token"]),
            json={"documents": [{"name": odd, "content": {"schema": "nope"}}]},
        )
        assert r.status_code == 422, (odd, r.text)
    r4 = client.post(
        "/api/v1/ingest", headers=auth(ids["token"]), json={"documents": [{"name": "x.xml", "content": "<testsuite/>"}]}
    )
    assert r4.status_code == 422
    assert f.exists() and base and upload  # the client module is importable beside the server


def test_read_token_required(store):
    from web.app import create_app

    url, ids, _ = store
    with TestClient(create_app(url, read_token_required=True)) as c:
        assert c.get("/api/v1/overview").status_code == 401
        assert c.get("/").status_code == 401
        assert c.get("/api/v1/overview", headers=auth(ids["token"])).status_code == 200


def test_openapi_lists_every_api_route(client):
    spec = client.get("/openapi.json").json()
    paths = set(spec["paths"])
    for p in (
        "/api/v1/overview",
        "/api/v1/alerts",
        "/api/v1/alerts/{alert_id}/triage",
        "/api/v1/series/{series_id}",
        "/api/v1/runs/{run_id}",
        "/api/v1/compare",
        "/api/v1/prs/{pr}",
        "/api/v1/ingest",
        "/api/v1/flaky",
    ):
        assert p in paths


def test_returned_series_shows_alerts_resolved(client, store):
    """Runs last in this module: three more nightlies back at the old level, ingested through the API and
    checked, resolve the open alerts (guardrail.check does that); the dashboard shows who and why."""
    from guardrail.check import check_runs

    url, ids, _ = store
    rng = np.random.default_rng(11)
    before = client.get("/api/v1/alerts", params={"state": ["untriaged", "acknowledged", "confirmed"]}).json()
    assert before["total"] >= 1
    docs = []
    for night in range(14, 17):
        doc = result_doc(
            workload=MARKUP_WORKLOAD,
            commit=f"{night:02d}" + "ab" * 19,
            started_at=iso(days=night - 21, hours=-7),
            run_id=f"n{night}",
            metrics={"denoise_step_latency": noisy_repeats(1100.0, repeats=3, rng=rng)},
        )
        doc["environment"]["software"]["triton"] = "3.5.0"
        docs.append({"name": f"nightly-{night}.json", "content": doc})
    r = client.post("/api/v1/ingest", json={"documents": docs}, headers=auth(ids["token"]))
    assert r.status_code == 200, r.text
    with session_scope(url, write=True) as s:
        for run_id in r.json()["run_ids"]:
            check_runs(s, [s.get(m.Run, run_id)])
    after = client.get("/api/v1/alerts", params={"state": ["fixed"]}).json()
    fixed = {a["id"] for a in after["alerts"]}
    regressions = {a["id"] for a in before["alerts"] if a["kind"] == "regression"}
    assert regressions and regressions <= fixed
    page = client.get(f"/alerts/{min(regressions)}").text
    assert "series returned to its earlier level" in page


def test_pinned_baselines_are_shown_with_reason_and_author(tmp_path):
    """`guardrail baseline pin` is visible on the Baselines page, the run page and in the API (markup inert)."""
    import subprocess
    import sys

    from fastapi.testclient import TestClient

    from guardrail.ingest import ingest
    from tests.factories import result_doc, write
    from web.app import create_app

    url = f"sqlite:///{tmp_path / 'pins.db'}"
    run_id = ingest(url, [write(tmp_path / "r.json", result_doc(lane="release", run_id="rc1"))]).run_ids[0]
    pin = subprocess.run(
        [
            sys.executable,
            "-m",
            "guardrail",
            "baseline",
            "pin",
            "--run",
            str(run_id),
            "--reason",
            "v1.0 <b>GA</b>",
            "--author",
            "rel-eng",
            "--db",
            url,
        ],
        capture_output=True,
        text=True,
    )
    assert pin.returncode == 0, pin.stderr
    client = TestClient(create_app(url))
    pins = client.get("/api/v1/baselines/pins").json()["pins"]
    assert [(p["run_id"], p["reason"], p["author"], p["active"]) for p in pins] == [
        (run_id, "v1.0 <b>GA</b>", "rel-eng", True)
    ]
    page = client.get("/baselines").text
    assert "rel-eng" in page and "v1.0 &lt;b&gt;GA&lt;/b&gt;" in page and "<b>GA</b>" not in page
    run_page = client.get(f"/runs/{run_id}").text
    assert "pinned as the release baseline on H100 by rel-eng" in run_page


def test_series_page_markup_built_outside_jinja_is_escaped(client, store):
    """The series chart, points table and run picker are built as strings (web.chart_svg, web.pages.series): every text
    in them is escaped as autoescape would."""
    _, ids, _ = store
    html = client.get(f"/series/{ids['series_id']}").text
    escaped = "fix &lt;img src=x onerror=alert(2)&gt; speed"
    assert f'<code title="{escaped}">' in html  # points table
    assert f": {escaped}</title>" in html  # chart point titles
    assert html.count('<a href="/runs/') >= 14 and '<svg id="history"' in html
    assert '<svg class="strip"' in html and '<svg class="hist"' in html and "<option value=" in html
    assert "<img src=x" not in html


def test_median_equals_numpy():
    from web.charts import median

    rng = np.random.default_rng(3)
    for n in range(1, 25):
        for _ in range(200):
            v = list(rng.normal(1000, 50, n) * rng.uniform(1e-3, 1e6))
            assert median(v) == float(np.median(v))


def _no_check_times(text: str) -> str:
    """Checks are stamped with the time they ran, which differs between the two stores."""
    return re.sub(r'"created_at":"[^"]*"', "", text)


@pytest.mark.postgres
def test_series_and_run_pages_on_postgres_equal_sqlite(pg_url, tmp_path):
    """The series and run read models use PostgreSQL-only SQL (`= ANY(:ids)`): the same store on PostgreSQL
    and on SQLite gives the same pages and JSON, byte for byte."""
    from guardrail.store.db import upgrade
    from web.app import create_app

    lite = f"sqlite:///{tmp_path / 'lite.db'}"
    upgrade(pg_url)
    fill_db(lite, tmp_path / "a", None)
    fill_db(pg_url, tmp_path / "b", None)
    with session_scope(lite) as s:
        series_ids = s.scalars(select(m.Series.id)).all()
        run_ids = s.scalars(select(m.Run.id)).all()
    paths = [f"/series/{i}" for i in series_ids] + [f"/api/v1/series/{i}" for i in series_ids]
    paths += [f"/series/{series_ids[0]}?lane=presubmit", f"/series/{series_ids[0]}?run={run_ids[0]}"]
    paths += [f"/runs/{i}" for i in run_ids] + [f"/api/v1/runs/{i}" for i in run_ids] + ["/series/999999"]
    with TestClient(create_app(lite)) as a, TestClient(create_app(pg_url)) as b:
        for path in paths:
            ra, rb = a.get(path), b.get(path)
            assert ra.status_code == rb.status_code, path
            assert _no_check_times(ra.text) == _no_check_times(rb.text), path
    from guardrail.store import db as store_db

    store_db.get_engine(lite).dispose()
