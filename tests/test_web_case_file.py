"""Issue 14 points 2 and 5 through the real app (TestClient) over a real SQLite store: the perf and JUnit store of
the test views (tests.test_web_flaky_api: 14 nightlies with a step at night 10 and its change-point alert, a PR
with two checked pushes, JUnit history with fresh-process reruns and a rerun plan) plus JUnit results on that
PR's newest push. The alert page as a case file, triage across sign-in, bulk triage that keeps states, the run
page (summary, baseline column, regressions first, compare links), the runs list's status, the JUnit run page,
the PR list and page, the reruns page and the baselines page."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html import unescape

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from guardrail.store import junit_models as tm
from guardrail.store import models as m
from guardrail.store.db import session_scope
from tests.test_web_api import MARKUP_MESSAGE, MARKUP_WORKLOAD
from tests.timeline import NOW, at

PR = 42
SEEN_AGAIN = "regression seen again after a rerun: confirmed"


def fill_case_db(url: str, tmp) -> dict:
    from guardrail.ingest.junit_writer import ingest_junit
    from guardrail.schema import CIInfo, Source
    from tests.test_web_flaky_api import JUNIT, fill_flaky_db, passing_suite

    ids = fill_flaky_db(url, tmp)
    # the PR's tests: the real pytorch_reruns.xml (a test that fails, then passes in a fresh process) and a bulk
    src = Source(
        repo="org/project", commit="cc33" * 10, pr=PR, branch="feature", ci=CIInfo(provider="gha", run_id="prt")
    )
    bulk = passing_suite(tmp / "pr-bulk" / "pipeline.xml")
    ingest_junit(url, [JUNIT / "pytorch_reruns.xml", bulk], source=src, lane="tests", hardware="Ascend910B3",
                 started_at=NOW - timedelta(hours=3))  # fmt: skip
    with session_scope(url, write=True) as s:
        runs = {r.ci_run_id: r for r in s.scalars(select(m.Run).where(m.Run.ci_run_id.is_not(None)))}
        ids["pr_tests_run"] = runs["prt"].id
        ids["unchecked_nightly"] = runs["n5"].id
        ids["change_run"] = runs["n10"].id
        # what `guardrail rerun-plan` stores for a regression an open alert already holds: nothing was rerun
        s.add(
            tm.RerunDecision(
                run_id=runs["n12"].id,
                kind="workload",
                target=f"{MARKUP_WORKLOAD}/denoise_step_latency@H100",
                action="none",
                attempts=0,
                blocking=True,
                reason=SEEN_AGAIN,
                created_at=at(minutes=-1),
            )  # fmt: skip
        )
    return ids


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("case")
    url = f"sqlite:///{tmp / 'guardrail.db'}"
    ids = fill_case_db(url, tmp)
    yield url, ids
    from guardrail.store import db as store_db

    store_db.get_engine(url).dispose()


@pytest.fixture()
def client(store):
    from web.app import create_app

    with TestClient(create_app(store[0]), raise_server_exceptions=True) as c:
        yield c


def _main(html: str) -> str:
    return html.split("<main>", 1)[1].split("</main>", 1)[0]


def _alert_id(store) -> int:
    url, _ = store
    with session_scope(url) as s:
        aid = s.scalar(select(m.Alert.id).where(m.Alert.kind == "regression").order_by(m.Alert.id))
    assert aid is not None
    return aid


# ---------------------------------------------------------------- the alert page


def test_alert_page_is_a_case_file(client, store):
    aid = _alert_id(store)
    r = client.get(f"/alerts/{aid}")
    assert r.status_code == 200
    page = _main(r.text)
    # headline: metric, size and direction, before -> after with the unit
    head = unescape(re.search(r'id="case-headline">(.*?)</p>', page, re.S).group(1))
    assert "denoise_step_latency" in head and "worse" in head and "lower is better" in head
    assert re.search(r"\+[78]\.\d% denoise_step_latency", head) and " ms" in head
    # the change happened with night 10 (its first run), detected when the scan stored the alert
    assert re.search(r'id="changed-at">([^<]+)<', page).group(1) == at(days=-11, hours=-7).strftime("%Y-%m-%d %H:%M")
    # (the suite's clock runs on from NOW: the scan stored the alert at some instant after it)
    detected = client.get(f"/api/v1/alerts/{aid}").json()["detected_at"]
    assert detected >= NOW.isoformat()[:16]
    assert re.search(r'id="detected-at">([^<]+)<', page).group(1) == detected[:16].replace("T", " ")
    # the chart: the series page's script and data block, with before/after bands and the change marked once
    assert '<script src="/static/series-chart.js" defer></script>' in page
    data = json.loads(
        re.search(r'<script type="application/json" id="series-data">(.*?)</script>', page, re.S).group(1)
    )
    assert data["unit"] == "ms" and len(data["x"]) == len(data["main"]) >= 10
    t0 = at(days=-11, hours=-7).timestamp()
    before = {round(h, 6) for t, h in zip(data["x"], data["band_high"], strict=True) if t < t0}
    after = {round(h, 6) for t, h in zip(data["x"], data["band_high"], strict=True) if t >= t0}
    assert len(before) == 1 and len(after) == 1 and after.pop() > before.pop() * 1.05  # two levels, 8% apart
    assert data["band_label"] == "level ±1%, before / after the change"  # the legend names what is shaded
    changes = [mk for mk in data["marks"] if mk["kind"] == "change"]
    assert [mk["t"] for mk in changes] == [t0] and changes[0]["label"].startswith("this change +")
    # metrics with unit and direction
    row = re.search(r'<table id="alert-metrics".*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    assert "denoise_step_latency" in row and "<td>ms</td>" in row and "lower is better" in row and "worse" in row
    # the commit range: GitHub links and the stored subjects (escaped)
    assert 'href="https://github.com/org/project/compare/09' in page and "...10" in page
    assert 'href="https://github.com/org/project/commit/10' + "ab" * 19 + '"' in page
    assert "fix &lt;img src=x onerror=alert(2)&gt; speed" in page and MARKUP_MESSAGE not in page
    # next actions: copyable commands, the bisection from the alert itself, the workload name shell-quoted
    actions = unescape(re.search(r'<ol class="actions" id="next-actions">(.*?)</ol>', page, re.S).group(1))
    assert "guardrail run --lane nightly --workload '" + MARKUP_WORKLOAD + "'" in actions
    assert f"guardrail bisect {aid} --repo . --dispatch local" in actions and "not built" not in actions
    assert 'id="bisection"' not in page  # none started for this alert
    assert "guardrail baseline pin --run" in actions
    # triage history: the scan's placement event
    assert "placed at change point" in page


def test_alert_json_keeps_its_keys_and_adds_the_case_file(client, store):
    aid = _alert_id(store)
    d = client.get(f"/api/v1/alerts/{aid}").json()
    for key in ("id", "kind", "workload", "hardware", "from_commit", "to_commit", "detected_at", "state", "metrics",
                "events", "change", "headline", "run_id", "note"):  # fmt: skip
        assert key in d
    assert d["changed_at"].startswith(at(days=-11, hours=-7).isoformat()[:16])
    assert d["worst"]["metric"] == "denoise_step_latency" and d["worst"]["unit"] == "ms"
    roles = [c["role"] for c in d["commit_range"]["commits"]]
    assert roles[0] == "last good" and roles[-1] == "first bad"


def test_signed_out_triage_keeps_the_note_across_sign_in(client, store):
    _, ids = store
    aid = _alert_id(store)
    note = "looking <b>into</b> it"
    r = client.post(f"/alerts/{aid}/triage", data={"state": "acknowledged", "note": note}, follow_redirects=False)
    assert r.status_code == 401
    page = _main(r.text)
    assert '<input type="hidden" name="note" value="looking &lt;b&gt;into&lt;/b&gt; it">' in page
    assert f'<input type="hidden" name="next" value="/alerts/{aid}">' in page
    # a wrong token keeps it too
    bad = client.post("/login", data={"token": "nope", "next": f"/alerts/{aid}", "note": note}, follow_redirects=False)
    assert bad.status_code == 401 and "looking &lt;b&gt;into&lt;/b&gt; it" in bad.text
    r = client.post(
        "/login",
        data={"token": ids["token"], "next": f"/alerts/{aid}", "state": "acknowledged", "note": note},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].startswith(f"/alerts/{aid}?")
    page = _main(client.get(r.headers["location"]).text)
    assert 'name="note" size="50" value="looking &lt;b&gt;into&lt;/b&gt; it"' in page and 'id="kept-notice"' in page
    assert '<option value="acknowledged" selected>' in page
    # saving it now (signed in) stores it and comes back to the alert
    r = client.post(f"/alerts/{aid}/triage", data={"state": "acknowledged", "note": note}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/alerts/{aid}"
    d = client.get(f"/api/v1/alerts/{aid}").json()
    assert d["state"] == "acknowledged" and d["note"] == note and d["events"][0]["author"] == "ci-bot"
    # a login from elsewhere cannot send anyone off the site
    r = client.post("/login", data={"token": ids["token"], "next": "//evil.example/x"}, follow_redirects=False)
    assert r.headers["location"] == "/alerts"


def test_bulk_note_keeps_states_unless_one_is_picked(client, store):
    _, ids = store
    client.post("/login", data={"token": ids["token"]}, follow_redirects=False)
    aid = _alert_id(store)
    client.post(f"/alerts/{aid}/triage", data={"state": "confirmed", "note": "first"}, follow_redirects=False)
    page = _main(client.get("/alerts").text)
    bulk = re.search(r'<fieldset class="bulk">(.*?)</fieldset>', page, re.S).group(1)
    assert """<option value="" selected>keep each alert's state</option>""" in bulk
    assert '<option value="untriaged">' in bulk and 'untriaged" selected' not in bulk
    r = client.post(
        "/alerts/triage", data={"ids": [aid], "note": "bulk note", "next": "/alerts"}, follow_redirects=False
    )
    assert r.status_code == 303
    d = client.get(f"/api/v1/alerts/{aid}").json()
    assert d["state"] == "confirmed" and d["note"] == "bulk note"
    assert d["events"][0]["state"] == "confirmed" and d["events"][0]["note"] == "bulk note"
    # neither a state nor a note: nothing changes
    r = client.post("/alerts/triage", data={"ids": [aid], "next": "/alerts"}, follow_redirects=False)
    assert r.status_code == 422 and client.get(f"/api/v1/alerts/{aid}").json()["note"] == "bulk note"
    # a state picked: it is set
    client.post("/alerts/triage", data={"ids": [aid], "state": "acknowledged"}, follow_redirects=False)
    assert client.get(f"/api/v1/alerts/{aid}").json()["state"] == "acknowledged"


def test_alerts_list_says_when_the_change_happened(client, store):
    page = _main(client.get("/alerts").text)
    assert "<th>changed</th>" in page and at(days=-11, hours=-7).strftime("%Y-%m-%d %H:%M") in page


# ---------------------------------------------------------------- run pages


def test_run_page_summary_baseline_column_regressions_first_and_compare_links(client, store):
    _, ids = store
    page = _main(client.get(f"/runs/{ids['last_nightly']}").text)
    summary = re.sub(r"<[^>]+>", "", re.search(r'id="run-summary">(.*?)</p>', page, re.S).group(1))
    assert summary.startswith("1 regression,") and "no change" in summary and "across 1 workload" in summary
    table = re.search(r'<table class="metrics">(.*?)</table>', page, re.S).group(1)
    assert "<th>baseline</th>" in table
    rows = re.findall(r'<tr class="is-([a-z_]+)">', table)
    assert rows[0] == "regression" and "no_change" in rows[1:]
    assert re.search(r'<td class="num">1,1\d\d ms</td>', table)  # the baseline median, ~1,100 ms
    assert '<div class="scroll-box"><table class="metrics">' in page
    d = client.get(f"/api/v1/runs/{ids['last_nightly']}").json()
    base, prev = d["compare"]["baseline_run"], d["compare"]["previous_run"]
    assert base and prev
    assert f'href="/compare?a={base}&amp;b={ids["last_nightly"]}"' in page
    # the PR's newest push: its previous push, and the baseline run at its merge-base (night 9)
    pr = client.get(f"/api/v1/runs/{ids['pr_run']}").json()["compare"]
    assert pr["previous_kind"] == "push" and pr["previous_run"] is not None
    with session_scope(store[0]) as s:
        night9 = s.scalar(select(m.Run.id).where(m.Run.ci_run_id == "n9"))
    assert pr["baseline_run"] == night9


def test_runs_list_has_a_status_column(client, store):
    _, ids = store
    page = _main(client.get("/runs?offset=0").text)
    assert "<th>status</th>" in page
    runs = {r["id"]: r["status"]["outcome"] for r in client.get("/api/v1/runs?limit=200").json()["runs"]}
    assert runs[ids["last_nightly"]] == "regression"
    assert runs[ids["unchecked_nightly"]] == "not checked"
    assert runs[ids["test_run"]] == "tests passed"  # its failures passed on the rerun: flaky, not failed


def test_junit_run_page_shows_its_tests_not_a_check_command(client, store):
    _, ids = store
    page = _main(client.get(f"/runs/{ids['test_run']}").text)
    assert "guardrail check --run" not in page and "a run of test results only" in page
    summary = re.sub(r"<[^>]+>", "", re.search(r'id="tests-summary">(.*?)</p>', page, re.S).group(1))
    assert "flaky" in summary and "pass" in summary
    failed = re.search(r'<table class="tests" id="tests-failed">(.*?)</table>', page, re.S).group(1)
    assert "test_sdpa_npu_bfloat16" in failed and "tv-flaky" in failed
    reruns = re.search(r'<table class="tests" id="tests-reruns">(.*?)</table>', page, re.S).group(1)
    assert "2 process attempts, final pass" in reruns
    assert '<details class="folded"><summary>' in page and " passed" in page
    assert "compare with previous" not in page


def test_pr_list_and_page(client, store):
    _, ids = store
    page = _main(client.get("/prs").text)
    head = re.search(r"<thead>(.*?)</thead>", page).group(1)
    assert [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<th[^>]*>.*?</th>", head)] == [
        "PR", "title", "author", "status", "runs", "last run"]  # fmt: skip
    row = re.search(rf'<tr><td><a href="/prs/{PR}">#{PR}</a></td>(.*?)</tr>', page, re.S).group(1)
    assert "tests passed" in row or "tests failed" in row  # the newest push is the JUnit one
    data = {p["pr"]: p for p in client.get("/api/v1/prs").json()}
    assert data[PR]["newest_run"] == ids["pr_tests_run"] and data[PR]["runs"] == 3
    page = _main(client.get(f"/prs/{PR}").text)
    assert 'id="pr-tests"' in page and "tv-flaky" in page and "test_sdpa_npu_float16" in page
    assert "Latest push" in page  # the checked pushes' comments stay


def test_reruns_page_puts_what_was_rerun_first_and_folds_the_rest(client, store):
    _, ids = store
    page = _main(client.get("/reruns").text)
    assert "seen again after a rerun" not in page
    assert "confirmed, not rerun" in page
    section = re.search(
        rf'<a href="/runs/{ids["last_nightly"]}">Run {ids["last_nightly"]}</a>(.*?)</section>', page, re.S
    )
    body = section.group(1)
    acted = re.search(r'<table class="reruns acted">(.*?)</table>', body, re.S).group(1)
    assert "<td>rerun</td>" in acted and "v-regression" in acted
    assert acted.index("<td>rerun</td>") < acted.index("<td>plan</td>")  # the job's plan after what was rerun
    assert '<details class="folded"><summary>' in body
    quiet = re.search(r'<table class="reruns quiet">(.*?)</table>', body, re.S).group(1)
    assert "<td>rerun</td>" not in quiet and "<td>none</td>" in quiet
    assert body.index("reruns acted") < body.index("reruns quiet")


def test_baselines_page_shows_each_lanes_policy_and_window(client, store):
    page = _main(client.get("/baselines").text)
    nightly = re.search(r'<section class="policy" id="policy-nightly">(.*?)</section>', page, re.S).group(1)
    assert "baselines/nightly.yaml" in nightly and "10 runs at the latest run" in nightly
    assert '<code>stage_mean.*</code></td><td class="num">5%</td>' in nightly and "FDR" in nightly
    assert "Window of the latest check" in nightly and "03abababab" in nightly  # nights 3..12 judged night 13
    presubmit = re.search(r'<section class="policy" id="policy-presubmit">(.*?)</section>', page, re.S).group(1)
    assert "at the merge-base" in presubmit and "09abababab" in presubmit
    assert "rerun-policy" not in page  # not a lane policy
    assert "Pinned baselines" in page


def test_junit_run_page_marks_a_quarantined_test(client, store):
    """Quarantined through the API (the real write, with the token): the run page and the PR page say so."""
    _, ids = store
    headers = {"Authorization": f"Bearer {ids['token']}"}
    body = {"test": ids["flaky_key"], "reason": "flaky on NPU: ACL sync"}
    assert client.post("/api/v1/quarantine", json=body, headers=headers).status_code == 200
    for path in (f"/runs/{ids['test_run']}", f"/prs/{PR}"):
        page = _main(client.get(path).text)
        summary = re.sub(r"<[^>]+>", "", re.search(r'id="[a-z-]*tests-summary">(.*?)</p>', page, re.S).group(1))
        assert "1 quarantined" in summary, path
        assert "t-quarantined" in page and "flaky on NPU: ACL sync" in page, path


_TIMES = re.compile(r"\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d+)?)?(\+00:00)?)?")


@pytest.mark.postgres
def test_case_file_pages_on_postgres_equal_sqlite(pg_url, tmp_path):
    """The queries of these pages (grouped commit times, run statuses, compare runs, test results) give the same
    pages on PostgreSQL as on SQLite. Instants are left out of the comparison: checks and ingests are stamped
    with the time they ran."""
    from guardrail.store.db import upgrade
    from web.app import create_app

    lite = f"sqlite:///{tmp_path / 'lite.db'}"
    upgrade(pg_url)
    a_ids = fill_case_db(lite, tmp_path / "a")
    b_ids = fill_case_db(pg_url, tmp_path / "b")
    assert {k: v for k, v in a_ids.items() if k != "token"} == {k: v for k, v in b_ids.items() if k != "token"}
    with session_scope(lite) as s:
        run_ids = s.scalars(select(m.Run.id)).all()
        alert_ids = s.scalars(select(m.Alert.id)).all()
    paths = [f"/alerts/{i}" for i in alert_ids] + [f"/api/v1/alerts/{i}" for i in alert_ids]
    paths += [f"/runs/{i}" for i in run_ids] + [f"/api/v1/runs/{i}" for i in run_ids]
    paths += ["/alerts", "/runs", "/api/v1/runs", "/prs", "/api/v1/prs", f"/prs/{PR}", "/reruns", "/baselines"]
    with TestClient(create_app(lite)) as a, TestClient(create_app(pg_url)) as b:
        for path in paths:
            ra, rb = a.get(path), b.get(path)
            assert ra.status_code == rb.status_code == 200, path
            assert _TIMES.sub("", ra.text) == _TIMES.sub("", rb.text), path
    from guardrail.store import db as store_db

    store_db.get_engine(lite).dispose()


def test_an_alert_whose_metrics_lack_p_values_and_levels_still_renders(sqlite_url, tmp_path):
    """Alerts stored by older versions (or written by hand) name a metric and its change only."""
    from web.app import create_app

    with session_scope(sqlite_url, write=True) as s:
        w = m.Workload(digest="sha256:old", name="old-workload")
        s.add(w)
        s.flush()
        a = m.Alert(dedup_key="old", kind="regression", workload_id=w.id, hardware="H100", lane="nightly",
                    metrics=[{"metric": "denoise_step_latency", "change": 0.03}], to_commit="abc")  # fmt: skip
        s.add(a)
        s.flush()
        aid = a.id
    with TestClient(create_app(sqlite_url), raise_server_exceptions=True) as c:
        page = c.get(f"/alerts/{aid}")
        assert page.status_code == 200 and "denoise_step_latency" in page.text and "+3.0%" in page.text


def test_api_has_run_tests_lane_policies_and_the_repeat_plan(client, store):
    """What the run page's tests, the baselines page's policies and `guardrail plan-repeats` show, as JSON."""
    _, ids = store
    r = client.get(f"/api/v1/runs/{ids['test_run']}/tests")
    assert r.status_code == 200 and r.json()["run_id"] == ids["test_run"]
    assert "test_sdpa_npu_bfloat16" in r.text and "flaky" in r.text
    assert client.get("/api/v1/runs/999999/tests").status_code == 404
    policies = {p["lane"]: p for p in client.get("/api/v1/baselines/policies").json()["policies"]}
    assert policies["nightly"]["window"] == 10 and policies["presubmit"]["anchor"] == "base_commit"
    assert policies["nightly"]["latest"]["windows"]  # the window its newest check was judged against
    plan = client.get("/api/v1/repeat-plan", params={"lane": "presubmit"}).json()
    assert plan["schema"] == "guardrail.repeat_plan/v1" and plan["workloads"]
    assert all(w["repeats"] >= w["lane_repeats"] >= 1 for w in plan["workloads"])
    assert client.get("/api/v1/repeat-plan", params={"min_repeats": 0}).status_code == 422


def test_alert_page_shows_its_bisection_culprit_or_progress(tmp_path):
    """A bisection stored for the alert (as `guardrail bisect ID` stores it): the culprit with its commit link and
    both sides' p-values, or, while it runs, the open range and a command that resumes it."""
    from web.app import create_app

    url = f"sqlite:///{tmp_path / 'guardrail.db'}"
    fill_case_db(url, tmp_path)
    shas = [f"{i:02d}" + "ab" * 19 for i in range(9, 11)]
    with session_scope(url, write=True) as s:
        aid = s.scalar(select(m.Alert.id).where(m.Alert.kind == "regression").order_by(m.Alert.id))
        b = m.Bisection(
            alert_id=aid, workload="w", metric="denoise_step_latency", hardware="H100", good=shas[0], bad=shas[1],
            commits=shas, dispatch="local", state="culprit", culprit=shas[1], low=0, high=1, spent_minutes=3.25,
            confidence={"culprit_vs_good": {"verdict": "regression", "change": 0.081, "p_value": 1e-6},
                        "parent_vs_bad": {"verdict": "improvement", "change": -0.075, "p_value": 2e-6}},
        )  # fmt: skip
        b.steps = [
            m.BisectionStep(
                seq=1, action="run", position=0, sha=shas[0], why="verify the good end", repeats=2, outcome="ok"
            ),
            m.BisectionStep(seq=2, action="culprit", position=1, sha=shas[1], why="found", outcome="found"),
        ]
        s.add(b)
    with TestClient(create_app(url)) as c:
        page = _main(c.get(f"/alerts/{aid}").text)
        culprit = unescape(re.search(r'id="bisection-culprit">(.*?)</p>', page, re.S).group(1))
        assert f'href="https://github.com/org/project/commit/{shas[1]}"' in culprit
        assert "+8.1% against the good end" in culprit and "3.2 device minutes" in culprit
        actions = unescape(re.search(r'<ol class="actions" id="next-actions">(.*?)</ol>', page, re.S).group(1))
        assert "guardrail bisect" not in actions  # done: nothing to bisect
        assert "2 steps (dispatch local)" in page
        with session_scope(url, write=True) as s:
            row = s.scalars(select(m.Bisection)).one()
            row.state, row.culprit = "running", None
        page = _main(c.get(f"/alerts/{aid}").text)
        assert "1 of 2 commits measured" in unescape(
            re.search(r'id="bisection-progress">(.*?)</p>', page, re.S).group(1)
        )
        assert "Resume the bisection" in page
        assert c.get(f"/api/v1/alerts/{aid}/bisection").json()["bisection"]["state"] == "running"
