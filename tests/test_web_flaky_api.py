"""The test views (flaky tests, one test, reruns, CI health) and the quarantine writes, over a real SQLite
store filled by ingesting the real JUnit fixtures through `guardrail ingest --format junit` (several
commits, fresh-process reruns), `guardrail rerun-plan` and the dashboard's own perf store (tests.test_web_api)."""

from __future__ import annotations

import re
import shutil
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from guardrail import clock
from guardrail.store import junit_models as tm
from guardrail.store import models as m
from guardrail.store.db import session_scope
from tests.timeline import NOW

JUNIT = Path(__file__).resolve().parent / "fixtures" / "junit"
HW = "Ascend910B3"
FLAKY_ID = "test_attention.py::TestAttentionNPU::test_sdpa_npu_float16"
MARKUP_NAME = "test_<img src=x onerror=alert(9)>"
MARKUP_MSG = "RuntimeError: <script>alert(8)</script> HCCL"


def guardrail(*args: str) -> str:
    """The real CLI entry point, in-process (its exit codes included); returns what it printed."""
    import io
    from contextlib import redirect_stdout

    import guardrail.cli as c

    old, sys.argv = sys.argv, ["guardrail", *args]
    out = io.StringIO()
    try:
        with redirect_stdout(out):
            c.main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise AssertionError(f"guardrail {' '.join(args)} exited {exc.code}: {out.getvalue()}") from None
    finally:
        sys.argv = old
    return out.getvalue()


def markup_fixture(tmp: Path) -> Path:
    """pytorch_reruns.xml with markup in a test name and in a rerun message (escaped in the XML, as a real
    report would carry it)."""
    text = (JUNIT / "pytorch_reruns.xml").read_text()
    text = text.replace('name="test_sdpa_npu_float16"', 'name="test_&lt;img src=x onerror=alert(9)&gt;"')
    text = text.replace(
        "RuntimeError: ACL stream synchronize failed, error code is 507015",
        "RuntimeError: &lt;script&gt;alert(8)&lt;/script&gt; HCCL",
        1,
    )
    path = tmp / "junit-markup" / "markup_reruns.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def rerun_round(tmp: Path) -> Path:
    """What a `rerun-plan` round writes: the rerun test alone, passing this time."""
    path = tmp / "junit-rerun" / "rerun.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        '<testsuites><testsuite name="pytest" tests="1"><testcase classname="TestAttentionNPU" '
        'name="test_sdpa_npu_bfloat16" file="test_attention.py" time="2.301"/></testsuite></testsuites>'
    )
    return path


def passing_suite(path: Path, n: int = 40, failing: int = 0) -> Path:
    """The bulk of a real run: tests that pass (without them the fixtures' failures make every run an
    infrastructure failure: more than 20% of its tests failed); ``failing`` of them fail (a mass failure)."""
    fail = '<failure message="RuntimeError: device lost">trace</failure>'
    cases = "".join(
        f'<testcase classname="tests.test_pipeline" name="test_step_{k}" time="0.{k % 9 + 1}">'
        f"{fail if k < failing else ''}</testcase>"
        for k in range(n)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<testsuites><testsuite name="pytest" tests="{n}">{cases}</testsuite></testsuites>')
    return path


def fill_flaky_db(url: str, tmp: Path) -> dict:
    """The perf store of the dashboard tests, plus JUnit history: six earlier days (ingest_junit, the function
    behind the CLI, which has no date flag) and six commits today through `guardrail ingest --format junit`,
    on lane `tests` / Ascend910B3 and lane `gpu-tests` / H100; a rerun plan for the newest test run and for
    the newest nightly. Day 3 fails 12 of the bulk's tests: an infrastructure failure (mass failure)."""
    from guardrail.ingest.junit_writer import ingest_junit
    from guardrail.schema import CIInfo, Source
    from tests.test_web_api import fill_db

    ids = fill_db(url, tmp, None)
    now = NOW
    files = tmp / "junit"
    files.mkdir()
    for name in ("pytorch_reruns.xml", "pytest_rerunfailures.xml", "pytest_xunit1.xml", "surefire_reruns.xml"):
        (files / name).mkdir()
        shutil.copy(JUNIT / name, files / name / name)
    bulk = passing_suite(files / "bulk" / "pipeline.xml")
    for day in range(6, 0, -1):
        src = Source(repo="org/p", commit=f"{day:02d}" + "de" * 19, ci=CIInfo(provider="gha", run_id=f"d{day}"))
        paths = [files / "pytorch_reruns.xml", files / ("pytest_xunit1.xml" if day % 2 else "pytest_rerunfailures.xml")]
        # day 3: the device was lost mid-run, failing 12 of the bulk's tests that pass on every other day
        paths.append(bulk if day != 3 else passing_suite(files / "bulk-lost" / "pipeline.xml", failing=12))
        ingest_junit(url, paths, source=src, lane="tests", hardware=HW, started_at=now - timedelta(days=day))
        if day % 2 == 0:
            src = Source(repo="org/p", commit=f"{day:02d}" + "ef" * 19, ci=CIInfo(provider="gha", run_id=f"g{day}"))
            ingest_junit(
                url, [files / "surefire_reruns.xml"], source=src, lane="gpu-tests", hardware="H100",
                started_at=now - timedelta(days=day),
            )  # fmt: skip
    for i in range(5):
        extra = "pytest_rerunfailures.xml" if i % 2 == 0 else "pytest_xunit1.xml"
        common = ["--db", url, "--commit", f"{i:02d}" + "cd" * 19, "--run-id", f"t{i}", "--attempt", "1"]
        guardrail("ingest", "--format", "junit", "--lane", "tests", "--hardware", HW, *common,
                  str(files / "pytorch_reruns.xml"), str(files / extra), str(bulk))  # fmt: skip
    guardrail("ingest", "--format", "junit", "--lane", "tests", "--hardware", HW, "--db", url,
              "--commit", "04" + "cd" * 19, "--run-id", "t4", "--attempt", "1", str(markup_fixture(tmp)))  # fmt: skip
    # the newest run: few failures, so rerun-plan reruns the failed test; the rerun round (a fresh process
    # in the same CI run) passes, which makes the test flaky on this commit
    t5 = ["--lane", "tests", "--hardware", HW, "--db", url, "--commit", "05" + "cd" * 19, "--run-id", "t5"]
    big = passing_suite(files / "bulk150" / "pipeline.xml", 150)
    guardrail("ingest", "--format", "junit", *t5, str(files / "pytorch_reruns.xml"), str(big))
    guardrail("rerun-plan", "--run", "t5", "--db", url)
    guardrail("ingest", "--format", "junit", *t5, str(rerun_round(tmp)))
    guardrail("rerun-plan", "--run", str(ids["last_nightly"]), "--db", url)
    with session_scope(url) as s:
        t = s.scalar(select(tm.CaseRow).where(tm.CaseRow.test_id == FLAKY_ID))
        markup = s.scalar(select(tm.CaseRow).where(tm.CaseRow.name == MARKUP_NAME))
        t5 = s.scalar(select(m.Run).where(m.Run.ci_run_id == "t5"))
        ids.update(flaky_pk=t.id, flaky_key=t.key, markup_pk=markup.id, markup_key=markup.key, test_run=t5.id)
    return ids


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("webflaky")
    url = f"sqlite:///{tmp / 'guardrail.db'}"
    ids = fill_flaky_db(url, tmp)
    yield url, ids
    from guardrail.store import db as store_db

    store_db.get_engine(url).dispose()


@pytest.fixture(scope="module")
def client(store):
    from web.app import create_app

    url, _ = store
    with TestClient(create_app(url, cache_ttl=0), raise_server_exceptions=True) as c:
        yield c


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_flaky_api_ranks_the_flaky_test_with_its_strip(client, store):
    _, ids = store
    data = client.get("/api/v1/flaky").json()
    by_key = {t["key"]: t for t in data["tests"]}
    top = by_key[ids["flaky_key"]]
    # flaky in each of its 12 commit pairs, one of them an infrastructure failure (day 3, not counted):
    # the score is (11 + 0.5) / (11 + 1)
    assert top["state"] == "flaky" and top["flaky_verdicts"] == 11 and top["verdicts"] == 11
    assert top["score"] == pytest.approx(11.5 / 12, abs=1e-4)
    assert sum(v["infra_excluded"] for v in top["strip"]) == 1
    assert top["test_pk"] == ids["flaky_pk"]
    assert len(top["strip"]) == 12 and {v["verdict"] for v in top["strip"]} == {"flaky"}
    assert [v["at"] for v in top["strip"]] == sorted(v["at"] for v in top["strip"])  # oldest first
    scores = [t["score"] for t in data["tests"]]
    assert scores == sorted(scores, reverse=True) and data["tests"][0]["key"] == ids["flaky_key"]
    broken = [t for t in data["tests"] if t["state"] == "broken"]
    assert any(t["id"].endswith("test_always_fails") for t in broken)
    assert data["by_minutes"] and data["by_minutes"][0]["rerun_minutes"] > 0
    mins = [t["rerun_seconds"] for t in data["by_minutes"]]
    assert mins == sorted(mins, reverse=True)


def test_flaky_filters_by_lane_and_hardware(client):
    gpu = client.get("/api/v1/flaky", params={"lane": "gpu-tests"}).json()
    assert gpu["tests"] and all("com.example" in t["id"] for t in gpu["tests"])
    assert {t["state"] for t in gpu["tests"]} <= {"flaky", "broken", "quarantined"}
    npu = client.get("/api/v1/flaky", params={"hardware": HW}).json()
    assert npu["tests"] and not any("com.example" in t["id"] for t in npu["tests"])
    assert client.get("/api/v1/flaky", params={"lane": "no-such-lane"}).json()["tests"] == []


def test_test_detail_has_history_executions_and_quarantine(client, store):
    _, ids = store
    d = client.get(f"/api/v1/tests/{ids['flaky_pk']}").json()
    assert d["key"] == ids["flaky_key"] and d["state"] == "flaky"
    assert len(d["verdicts"]) == 12
    failed = [e for e in d["executions"] if e["outcome"] == "fail"]
    assert failed and all(e["signature"] and "507015" in e["message"] for e in failed)
    assert any(e["outcome"] == "pass" and e["final"] for e in d["executions"])
    assert max(e["inprocess_attempt"] for e in d["executions"]) == 2
    assert d["quarantine"] == [] or all("since" in q for q in d["quarantine"])
    assert client.get("/api/v1/tests/999999").status_code == 404
    assert client.get("/tests/999999", headers={"accept": "text/html"}).status_code == 404


def test_reruns_api_per_run_with_reason_and_outcome(client, store):
    _, ids = store
    data = client.get("/api/v1/reruns").json()
    runs = {g["run_id"]: g for g in data["runs"]}
    assert ids["test_run"] in runs and ids["last_nightly"] in runs
    tests = [x for x in runs[ids["test_run"]]["decisions"] if x["kind"] == "test"]
    assert tests and all(x["reason"] for x in tests)
    rerun = [x for x in tests if x["action"] == "rerun"]
    assert [x["target"].split("::")[-1] for x in rerun] == ["test_sdpa_npu_bfloat16@Ascend910B3"]
    assert rerun[0]["outcome"] == {"verdict": "flaky", "process_attempts": 2, "final_outcome": "pass"}
    work = [x for x in runs[ids["last_nightly"]]["decisions"] if x["kind"] == "workload"]
    assert work and all(x["reason"] for x in work)
    only = client.get("/api/v1/reruns", params={"run": ids["test_run"], "kind": "test"}).json()
    assert {g["run_id"] for g in only["runs"]} == {ids["test_run"]}
    assert all(x["kind"] == "test" for x in only["reruns"])
    newest = [g["newest"] for g in data["runs"]]
    assert newest == sorted(newest, reverse=True)


def test_ci_health_api_and_overview(client):
    doc = client.get("/api/v1/ci-health", params={"days": 30}).json()
    assert doc["schema"] == "guardrail.ci-health/v1"
    groups = {(f["lane"], f["hardware"]) for f in doc["figures"]}
    assert ("tests", HW) in groups and ("gpu-tests", "H100") in groups
    days = {f["day"] for f in doc["figures"] if f["lane"] == "tests"}
    assert len(days) >= 6
    total = next(t for t in doc["totals"] if t["lane"] == "tests")
    assert 0 < total["flaky_rate"] < 1 and total["rerun_minutes"] > 0
    assert client.get("/api/v1/ci-health", params={"lane": "gpu-tests"}).json()["figures"]
    assert client.get("/api/v1/ci-health", params={"days": 0}).status_code == 422
    overview = client.get("/api/v1/overview").json()
    assert overview["test_health"]["figures"]
    html = client.get("/", headers={"accept": "text/html"}).text
    for chart in ("health-pass-rate", "health-flaky-rate", "health-rerun-minutes", "health-infra-errors"):
        assert f'id="{chart}"' in html
    assert "test flaky rate" in html and 'id="test-health-totals"' in html


def test_pages_render_and_show_markup_as_text(client, store):
    _, ids = store
    page = client.get("/flaky").text
    assert 'id="by-score"' in page and 'id="by-minutes"' in page and 'id="strip-legend"' in page
    assert f'href="/tests/{ids["flaky_pk"]}"' in page
    assert "<svg" in page and "<script" not in page
    assert "test_&lt;img src=x onerror=alert(9)&gt;" in page and "<img src=x" not in page
    lane_page = client.get("/flaky", params={"lane": "gpu-tests"}).text
    assert "com.example" in lane_page and "test_sdpa_npu_float16" not in lane_page
    test = client.get(f"/tests/{ids['markup_pk']}").text
    assert "&lt;script&gt;alert(8)&lt;/script&gt;" in test and "<script>" not in test
    assert 'id="executions"' in test and 'id="verdicts"' in test
    reruns = client.get("/reruns").text
    assert f'href="/runs/{ids["test_run"]}"' in reruns and "workload" in reruns
    assert re.search(r"<td class=\"reason\">[^<]+</td>", reruns)


def test_quarantine_writes_need_a_valid_token(client, store):
    _, ids = store
    body = {"test": ids["flaky_key"], "reason": "flaky on NPU"}
    assert client.post("/api/v1/quarantine", json=body).status_code == 401
    assert client.post("/api/v1/quarantine", json=body, headers=auth("gr_wrong")).status_code == 401
    assert client.delete("/api/v1/quarantine", params=body, headers=auth("nope")).status_code == 401
    # the HTML form: without the sign-in cookie, and with a wrong one, nothing changes
    form = {"test": ids["flaky_key"], "action": "quarantine", "reason": "x", "next": "/flaky"}
    assert client.post("/flaky/quarantine", data=form).status_code == 401
    client.cookies.set("guardrail_token", "gr_wrong")
    try:
        assert client.post("/flaky/quarantine", data=form).status_code == 401
    finally:
        client.cookies.clear()
    assert client.get(f"/api/v1/tests/{ids['flaky_pk']}").json()["quarantine"] == []


def test_quarantine_and_release_through_the_api(client, store):
    url, ids = store
    token = ids["token"]
    r = client.post(
        "/api/v1/quarantine", json={"test": ids["markup_key"], "reason": "<b>HCCL</b> timeouts"}, headers=auth(token)
    )
    assert r.status_code == 200, r.text
    assert r.json()["entries"][0]["action"] == "added" and r.json()["by"] == "ci-bot"
    # stored through the CLI's functions: `guardrail quarantine list` shows who and why
    listed = guardrail("quarantine", "list", "--db", url)
    assert "by ci-bot: <b>HCCL</b> timeouts" in listed
    d = client.get(f"/api/v1/tests/{ids['markup_pk']}").json()
    assert d["state"] == "quarantined" and d["quarantine"][0]["by"] == "ci-bot"
    page = client.get("/flaky").text
    assert "&lt;b&gt;HCCL&lt;/b&gt; timeouts" in page
    assert (
        client.post("/api/v1/quarantine", json={"test": "no::such", "reason": "x"}, headers=auth(token)).status_code
        == 404
    )
    assert (
        client.post(
            "/api/v1/quarantine", json={"test": ids["markup_key"], "reason": "  "}, headers=auth(token)
        ).status_code
        == 422
    )
    r = client.delete("/api/v1/quarantine", params={"test": ids["markup_key"], "reason": "fixed in HCCL 8.1"},
                      headers=auth(token))  # fmt: skip
    assert r.status_code == 200 and r.json()["entries"][0]["released_by"] == "ci-bot"
    again = client.delete(
        "/api/v1/quarantine", params={"test": ids["markup_key"], "reason": "again"}, headers=auth(token)
    )
    assert again.status_code == 422  # not quarantined any more
    hist = client.get(f"/api/v1/tests/{ids['markup_pk']}").json()["quarantine"]
    assert hist[0]["release_reason"] == "fixed in HCCL 8.1" and not hist[0]["active"]


def test_openapi_lists_the_test_endpoints(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for p in ("/api/v1/flaky", "/api/v1/tests/{test_pk}", "/api/v1/reruns", "/api/v1/ci-health"):
        assert "get" in paths[p]
    assert {"post", "delete"} <= set(paths["/api/v1/quarantine"])


def test_web_aggregates_equal_the_store_queries(client, store):
    """The page-side shortcuts (per-day counts in SQL, one test's stats from its own history) give what
    the store's queries give."""
    from guardrail.store.junit_queries import ci_health_doc, flaky_stats
    from web.read import junit_results as fq

    url, ids = store
    at = clock.now()
    with session_scope(url) as s:
        for kw in ({}, {"lane": "gpu-tests"}, {"hardware": HW}, {"days": 3}):
            assert fq.ci_health(s, at=at, **kw) == ci_health_doc(s, now=at, **kw)
        stats = {x.test: x.to_dict() for x in flaky_stats(s, now=at)}
        for pk in (ids["flaky_pk"], ids["markup_pk"]):
            d = fq.case_detail(s, pk, at=at)
            assert d["stats"] == stats[d["key"]]


def test_test_views_on_postgresql(pg_url, tmp_path):
    """The same views over PostgreSQL (its own day grouping in UTC, its window query): equal to the store's
    queries, and the pages render."""
    from guardrail.ingest.junit_writer import ingest_junit
    from guardrail.schema import CIInfo, Source
    from guardrail.store.db import upgrade
    from guardrail.store.junit_queries import ci_health_doc, flaky_stats
    from web.app import create_app
    from web.read import junit_results as fq

    upgrade(pg_url)
    now = NOW
    bulk = passing_suite(tmp_path / "bulk" / "pipeline.xml")
    for day in range(5, -1, -1):
        src = Source(repo="org/p", commit=f"{day:02d}" + "de" * 19, ci=CIInfo(provider="gha", run_id=f"d{day}"))
        ingest_junit(pg_url, [JUNIT / "pytorch_reruns.xml", bulk], source=src, lane="tests", hardware=HW,
                     started_at=now - timedelta(days=day, hours=23))  # fmt: skip
    at = clock.now()
    with session_scope(pg_url) as s:
        for kw in ({}, {"hardware": HW}, {"days": 2}):
            assert fq.ci_health(s, at=at, **kw) == ci_health_doc(s, now=at, **kw)
        stats = {x.test: x.to_dict() for x in flaky_stats(s, now=at)}
        data = fq.flaky(s, at=at)
        top = data["tests"][0]
        assert top["id"] == FLAKY_ID and top["flaky_verdicts"] == 6 and len(top["strip"]) == 6
        assert fq.case_detail(s, top["test_pk"], at=at)["stats"] == stats[top["key"]]
    with TestClient(create_app(pg_url, cache_ttl=0)) as c:
        for path in ("/flaky", f"/tests/{top['test_pk']}", "/", "/api/v1/ci-health"):
            assert c.get(path).status_code == 200, path


def test_cached_flaky_report_follows_quarantine_writes(store):
    """With the default 10 s cache, a quarantine write through the service shows at once."""
    from web.app import create_app

    url, ids = store
    with TestClient(create_app(url)) as c:

        def state() -> str:
            rows = c.get("/api/v1/flaky").json()["tests"]
            return next(t["state"] for t in rows if t["key"] == ids["flaky_key"])

        assert state() == "flaky"
        body = {"test": ids["flaky_key"], "reason": "cache check"}
        assert c.post("/api/v1/quarantine", json=body, headers=auth(ids["token"])).status_code == 200
        assert state() == "quarantined"
        assert 'class="badge t-quarantined"' in c.get("/flaky").text
        assert c.delete("/api/v1/quarantine", params=body, headers=auth(ids["token"])).status_code == 200
        assert state() == "flaky"
