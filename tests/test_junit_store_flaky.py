"""Flakiness, quarantine, rerun-plan and CI health over a real store (SQLite and PostgreSQL): the SQL-aggregated
report equals the pure functions, rule and hand quarantine keep their reasons, rerun decisions are stored
with their reasons, and the commands exit with the right codes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from guardrail.analysis.flaky_scores import assess
from guardrail.ingest.junit_writer import ingest_junit
from guardrail.quarantine import apply_rules
from guardrail.rerun_policy.yaml_file import load_rerun_policy
from guardrail.schema import CIInfo, Source
from guardrail.store import junit_models as tm
from guardrail.store import models as m
from guardrail.store.db import session_scope
from guardrail.store.junit_queries import ci_health_doc, flaky_stats, flaky_top, history, reruns, verdict_strip
from tests.cli_inprocess import run_cli
from tests.timeline import at

NOW = at()
MSG = "RuntimeError: HCCL timeout after 1800 s on rank 3"


def junit(path: Path, cases: dict[str, str], msg: str = MSG) -> Path:
    """tests/test_s.py cases: pass, fail, or flaky (a PyTorch-style <rerun> failure, then a pass)."""
    body = []
    for name, outcome in cases.items():
        inner = {
            "pass": "",
            "fail": f'<failure message="{msg}">trace</failure>',
            "flaky": f'<rerun message="{msg}" time="0.5"/>',
        }[outcome]
        body.append(f'<testcase classname="tests.test_s" name="{name}" time="0.25">{inner}</testcase>')
    path.write_text(f'<testsuites><testsuite name="pytest">{"".join(body)}</testsuite></testsuites>')
    return path


def ingest(url: str, tmp: Path, i: int, cases: dict[str, str], at: datetime, *, msg: str = MSG, run_id=None):
    src = Source(repo="org/p", commit=f"{i:07x}", ci=CIInfo(provider="gha", run_id=run_id or f"r{i}", attempt=1))
    path = junit(tmp / f"run{i}-{len(list(tmp.iterdir()))}.xml", cases, msg)
    return ingest_junit(url, [path], source=src, lane="tests", hardware=None, started_at=at)


def base(n: int = 12) -> dict[str, str]:
    return {f"t{k}": "pass" for k in range(n)}


@pytest.fixture
def history_db(db_url, tmp_path):
    """8 runs over 8 days: t0 flaky 3 times, t1 broken in the last 2, t2 flaky once, run 4 an infra failure."""
    for i in range(8):
        cases = base()
        if i in (1, 3, 5):
            cases["t0"] = "flaky"
        if i in (6, 7):
            cases["t1"] = "fail"
        if i == 2:
            cases["t2"] = "flaky"
        if i == 4:
            cases.update({f"t{k}": "fail" for k in range(3, 8)})  # 5 of 12 failed: infrastructure
        ingest(db_url, tmp_path, i, cases, NOW - timedelta(days=8 - i))
    return db_url


def test_flaky_report_over_stored_history_matches_the_pure_functions(history_db, capsys):
    with session_scope(history_db) as s:
        sql = flaky_stats(s, now=NOW)
        pure = assess(list(history(s)), now=NOW)

    def row(x):
        return (x.test, x.state, x.verdicts, x.flaky_verdicts, x.failed_verdicts, round(x.score, 9), x.last_at)

    assert [row(x) for x in sql] == [row(x) for x in pure]
    by = {x.test: x for x in sql}
    t0, t1, t2 = by["tests/test_s.py::t0"], by["tests/test_s.py::t1"], by["tests/test_s.py::t2"]
    assert (t0.state, t0.flaky_verdicts, t0.verdicts) == ("flaky", 3, 7)  # run 4 excluded
    assert t1.state == "broken" and t2.state == "healthy"
    assert by["tests/test_s.py::t3"].failed_verdicts == 0  # its infra-run failure does not count
    code, out, _ = run_cli(capsys, "flaky", "--format", "json", "--db", history_db)
    doc = json.loads(out)
    assert code == 0 and doc["schema"] == "guardrail.flaky/v1"
    assert doc["tests"][0]["key"] == "tests/test_s.py::t1" and doc["summary"]["flaky"] == 1
    assert {t["key"]: t["score"] for t in doc["tests"]}["tests/test_s.py::t0"] == round(3.5 / 8, 4)
    code, out, _ = run_cli(capsys, "flaky", "--db", history_db, "--lane", "tests")
    assert code == 0 and "flaky" in out and "tests/test_s.py::t0" in out and "t5" not in out
    code, out, _ = run_cli(capsys, "flaky", "--db", history_db, "--lane", "nightly", "--format", "json")
    assert json.loads(out)["tests"] == []
    with session_scope(history_db) as s:
        top = flaky_top(s, now=NOW, by="minutes")
        strip = verdict_strip(s, "tests/test_s.py::t0")
    assert top[0]["key"] == "tests/test_s.py::t0" and top[0]["rerun_seconds"] == 0.8
    verdicts = strip["variants"][0]["verdicts"]
    assert len(verdicts) == 8 and verdicts[0]["verdict"] == "pass" and verdicts[2]["verdict"] == "flaky"


def test_quarantine_by_rule_enters_and_releases_with_reasons(history_db, tmp_path, capsys):
    with session_scope(history_db, write=True) as s:
        decisions = {d["test"]: d for d in apply_rules(s, now=NOW)}
    assert decisions["tests/test_s.py::t0"]["action"] == "enter"
    assert "failure signature seen before" in decisions["tests/test_s.py::t0"]["reason"]
    assert "tests/test_s.py::t2" not in decisions  # one flaky verdict: not even a candidate
    code, out, _ = run_cli(capsys, "quarantine", "list", "--format", "json", "--db", history_db)
    (entry,) = json.loads(out)["entries"]
    assert code == 0 and entry["test"] == "tests/test_s.py::t0" and entry["by"] == "rule"
    with session_scope(history_db) as s:
        stored = s.scalars(select(tm.RerunDecision).where(tm.RerunDecision.kind == "quarantine")).all()
        assert [(d.target, d.action) for d in stored] == [("tests/test_s.py::t0", "enter")]
        assert next(x for x in flaky_stats(s, now=NOW) if x.test.endswith("t0")).state == "quarantined"
    # 30 passes over 8 clean days: released
    for i in range(30):
        ingest(history_db, tmp_path, 100 + i, base(), NOW + timedelta(hours=6 * i + 1))
    with session_scope(history_db, write=True) as s:
        (d,) = [d for d in apply_rules(s, now=NOW + timedelta(days=8)) if d["test"].endswith("t0")]
    assert d["action"] == "release" and d["reason"].startswith("released: 32/30 consecutive passes")
    code, out, _ = run_cli(capsys, "quarantine", "list", "--all", "--format", "json", "--db", history_db)
    (entry,) = json.loads(out)["entries"]
    assert entry["released_at"] and entry["release_reason"] == d["reason"]


def test_quarantine_rule_refuses_a_new_failure_signature(db_url, tmp_path):
    for i, msg in enumerate([MSG, MSG, "ValueError: shape mismatch"]):
        ingest(db_url, tmp_path, i, {**base(), "t0": "flaky"}, NOW - timedelta(days=3 - i), msg=msg)
    with session_scope(db_url, write=True) as s:
        (d,) = apply_rules(s, now=NOW)
    assert d["action"] == "none" and "new failure signature" in d["reason"]
    with session_scope(db_url) as s:
        assert s.scalars(select(tm.QuarantineRow)).all() == []


def test_quarantine_by_hand_needs_a_reason_and_keeps_it(history_db, capsys):
    db = ["--db", history_db]
    code, out, _ = run_cli(
        capsys, "quarantine", "add", "tests/test_s.py::t5", *db, "--reason", "driver bug #7", "--by", "li"
    )
    assert code == 0 and "added: tests/test_s.py::t5 (driver bug #7)" in out
    code, out, _ = run_cli(capsys, "quarantine", "add", "tests/test_s.py::t5", *db, "--reason", "again", "--by", "li")
    assert code == 0 and "already quarantined" in out
    code, _, err = run_cli(capsys, "quarantine", "add", "tests/test_s.py::t5", *db, "--by", "li")
    assert code == 2 and "--reason" in err
    code, _, err = run_cli(capsys, "quarantine", "add", "tests/test_s.py::t5", *db, "--reason", " ", "--by", "li")
    assert code == 2 and "reason" in err
    code, _, err = run_cli(capsys, "quarantine", "add", "tests/nope.py::t", *db, "--reason", "x", "--by", "li")
    assert code == 2 and "no stored test" in err
    code, out, _ = run_cli(capsys, "quarantine", "list", "--format", "json", *db)
    (entry,) = json.loads(out)["entries"]
    assert (entry["test"], entry["reason"], entry["by"]) == ("tests/test_s.py::t5", "driver bug #7", "li")
    code, out, _ = run_cli(
        capsys, "quarantine", "remove", "tests/test_s.py::t5", *db, "--reason", "fixed in #8", "--by", "li"
    )
    assert code == 0 and "fixed in #8" in out
    code, _, err = run_cli(capsys, "quarantine", "remove", "tests/test_s.py::t5", *db, "--reason", "again")
    assert code == 2 and "not quarantined" in err
    code, out, _ = run_cli(capsys, "quarantine", "list", "--all", "--format", "json", *db)
    (entry,) = json.loads(out)["entries"]
    assert entry["release_reason"] == "fixed in #8" and entry["released_by"] == "li"


def _check(url: str, run_id: int, verdicts: list[dict]) -> None:
    with session_scope(url, write=True) as s:
        s.add(m.Check(run_id=run_id, policy="presubmit", status="failure", doc={"verdicts": verdicts}))


def test_rerun_plan_stores_every_decision_with_its_reason(db_url, tmp_path, capsys):
    many = base(40)
    for i in range(2):  # t0 known flaky
        ingest(db_url, tmp_path, i, {**many, "t0": "flaky"}, NOW - timedelta(days=2 - i))
    rep = ingest(db_url, tmp_path, 9, {**many, "t0": "fail"}, NOW - timedelta(hours=2), run_id="ci9")
    run_id = rep.stored[0]["run_id"]
    perf = [
        {"workload": "wan22", "metric": "latency", "hardware": "H100", "verdict": "inconclusive",
         "repeats_needed": 6, "candidate": {"repeats": 2}},
        {"workload": "wan22", "metric": "memory", "hardware": "H100", "verdict": "regression",
         "candidate": {"repeats": 2}},
        {"workload": "qwen", "metric": "latency", "hardware": "H100", "verdict": "noisy", "repeats_needed": 40},
    ]  # fmt: skip
    _check(db_url, run_id, perf)
    code, out, _ = run_cli(capsys, "rerun-plan", "--run", str(run_id), "--format", "json", "--db", db_url)
    doc = json.loads(out)
    assert code == 0 and doc["schema"] == "guardrail.rerun-plan/v1"
    (t,) = doc["tests"]
    assert (t["id"], t["rerun"], t["attempts"]) == ("tests/test_s.py::t0", True, 2)
    assert t["reason"].startswith("known flaky")
    wl = {(w["workload"], w["metric"]): w for w in doc["workloads"]}
    assert (wl["wan22", "latency"]["action"], wl["wan22", "latency"]["extra_repeats"]) == ("rerun", 4)
    assert wl["wan22", "memory"]["action"] == "rerun" and "first-seen regression" in wl["wan22", "memory"]["reason"]
    assert wl["qwen", "latency"]["action"] == "flag" and not wl["qwen", "latency"]["blocking"]
    with session_scope(db_url) as s:
        stored = reruns(s, run_id=run_id)
    assert len(stored) == doc["stored_decisions"] == 5 and all(d["reason"] for d in stored)
    assert {(d["kind"], d["action"]) for d in stored} >= {("job", "plan"), ("test", "rerun"), ("workload", "flag")}

    # the rerun round: t0 passes in a fresh process -> the stored decision shows the outcome
    ingest(db_url, tmp_path, 9, {"t0": "pass"}, NOW - timedelta(hours=1), run_id="ci9")
    with session_scope(db_url) as s:
        (test_decision,) = [d for d in reruns(s, run_id=run_id) if d["kind"] == "test"]
    assert test_decision["outcome"] == {"verdict": "flaky", "process_attempts": 2, "final_outcome": "pass"}

    # the regression seen again (an earlier open alert for the workload): confirmed, blocking, not rerun
    with session_scope(db_url, write=True) as s:
        w = m.Workload(digest="sha256:wan22", name="wan22")
        s.add(w)
        s.flush()
        s.add(m.Alert(dedup_key="wan22-H100", kind="regression", workload_id=w.id, hardware="H100", lane="perf",
                      metrics=[{"metric": "memory"}], created_at=NOW - timedelta(days=1)))  # fmt: skip
    _check(db_url, run_id, perf)
    code, out, _ = run_cli(
        capsys, "rerun-plan", "--run", "ci9", "--format", "json", "--db", db_url, "--changed", "tests/test_s.py"
    )
    doc = json.loads(out)
    mem = next(w for w in doc["workloads"] if w["metric"] == "memory")
    assert (mem["action"], mem["blocking"]) == ("none", True) and "confirmed" in mem["reason"]
    assert doc["tests"] == []  # t0 passed on rerun: nothing failed any more


def test_rerun_plan_refuses_reruns_when_too_many_failed_and_unknown_runs(db_url, tmp_path, capsys):
    rep = ingest(db_url, tmp_path, 1, {**base(20), "t0": "fail", "t1": "fail"}, NOW)  # 10% failed
    code, out, _ = run_cli(capsys, "rerun-plan", "--run", str(rep.stored[0]["run_id"]), "--db", db_url)
    assert code == 0 and "no reruns: 2 of 20 tests failed" in out and "2 decisions" not in out
    with session_scope(db_url) as s:
        rows = s.scalars(select(tm.RerunDecision)).all()
    assert len(rows) == 3 and all("no reruns" in r.reason for r in rows)
    code, _, err = run_cli(capsys, "rerun-plan", "--run", "12345", "--db", db_url)
    assert code == 2 and "no stored run" in err


def test_ci_health_figures(db_url, tmp_path, capsys):
    day = NOW - timedelta(days=1)
    ingest(db_url, tmp_path, 1, {**base(10), "t0": "flaky", "t1": "fail"}, day)
    # run 2: 3 of 10 failed, none of them failing every attempt the run before (t1 would be a broken test)
    ingest(db_url, tmp_path, 2, {**base(10), "t0": "fail", "t2": "fail", "t3": "fail"}, day + timedelta(hours=1))
    with session_scope(db_url) as s:
        doc = ci_health_doc(s, now=NOW, days=7)
    (total,) = doc["totals"]
    assert (total["lane"], total["hardware"], total["tests"]) == ("tests", "any", 20)
    assert (total["passed"], total["failed"], total["flaky"]) == (15, 4, 1)
    assert total["pass_rate"] == 0.75 and total["flaky_rate"] == 0.05
    assert total["rerun_minutes"] == round(0.25 / 60, 2)  # t0's pass after its in-process rerun
    assert total["infra_errors"] == {"tests_mass_failure": 1}  # run 2: 3 of 10 failed
    assert [f["day"] for f in doc["figures"]] == sorted(
        {day.date().isoformat(), (day + timedelta(hours=1)).date().isoformat()}
    )
    code, out, _ = run_cli(capsys, "ci-health", "--format", "json", "--days", "7", "--db", db_url)
    assert code == 0 and json.loads(out)["totals"][0]["tests"] == 20
    code, out, _ = run_cli(capsys, "ci-health", "--db", db_url)
    assert code == 0 and "pass 75.0%" in out and "tests_mass_failure 1" in out
    code, _, _ = run_cli(capsys, "ci-health", "--days", "0", "--db", db_url)
    assert code == 2
    code, _, err = run_cli(capsys, "flaky", "--format", "xml", "--db", db_url)
    assert code == 2 and "--format" in err


def test_policy_file_is_the_one_the_commands_read():
    pol = load_rerun_policy()
    assert pol.tests.max_reruns_per_test == 2 and pol.flakiness.window_verdicts == 100


def test_an_improving_metric_of_a_regression_alert_is_not_a_regression_seen_again(db_url, tmp_path, capsys):
    """A mixed alert (latency worse, memory better): a first-seen memory regression of the next run is confirmed by
    a rerun, not taken as the alert's regression seen again."""
    rep = ingest(db_url, tmp_path, 1, base(20), NOW - timedelta(hours=2), run_id="ci1")
    run_id = rep.stored[0]["run_id"]
    with session_scope(db_url, write=True) as s:
        w = m.Workload(digest="sha256:wan22", name="wan22")
        s.add(w)
        s.flush()
        metrics = [
            {"metric": "latency", "direction": "lower_is_better", "change": 0.05},
            {"metric": "memory", "direction": "lower_is_better", "change": -0.04},
        ]
        s.add(m.Alert(dedup_key="wan22-H100", kind="regression", workload_id=w.id, hardware="H100", lane="perf",
                      metrics=metrics, created_at=NOW - timedelta(days=1)))  # fmt: skip
    perf = [
        {"workload": "wan22", "metric": metric, "hardware": "H100", "verdict": "regression",
         "candidate": {"repeats": 2}}
        for metric in ("latency", "memory")
    ]  # fmt: skip
    _check(db_url, run_id, perf)
    code, out, _ = run_cli(capsys, "rerun-plan", "--run", str(run_id), "--format", "json", "--db", db_url)
    wl = {w["metric"]: w for w in json.loads(out)["workloads"]}
    assert code == 0 and "confirmed" in wl["latency"]["reason"] and wl["latency"]["action"] == "none"
    assert wl["memory"]["action"] == "rerun" and "first-seen regression" in wl["memory"]["reason"]
