"""The gate cannot be talked out of a failure (issue 13, point 4): rerun attempts grouped by identity however far
apart, at least one rerun for a single failure in a small suite, and tests failing in every run of the window
never hidden by the infrastructure-failure rule -- on numbers and through the real CLI and store."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from guardrail import clock
from guardrail.analysis.case_reruns import final_verdict, plan_test_reruns
from guardrail.analysis.flaky_scores import (
    HistoricVerdict,
    QuarantineEntry,
    assess,
    infra_failed_runs,
    run_infra_failure,
)
from guardrail.analysis.junit_model import CaseIdentity, CaseVerdict
from guardrail.analysis.quarantine_rules import decide_quarantine
from guardrail.ingest.junit_verdicts import group_verdicts
from guardrail.ingest.junit_xml import iter_junit
from guardrail.quarantine import apply_rules
from guardrail.rerun_policy import CaseRerunPolicy
from guardrail.store.db import session_scope
from tests import test_junit_store_flaky as store_flaky
from tests.cli_inprocess import run_cli
from tests.test_junit_store_flaky import base, ingest
from tests.timeline import at

NOW = at()
NEW_MSG = "AssertionError: output is all NaN"
history_db = store_flaky.history_db  # the fixture: 8 runs, t0 flaky 3 times (quarantined by rule)


def tv(name: str, verdict: str) -> CaseVerdict:
    final = "fail" if verdict == "fail" else "pass"
    failed = 1 if verdict == "fail" else 0
    return CaseVerdict(CaseIdentity("s", "tests/test_x.py", None, name), verdict, "h", "b", final, 1, failed)  # type: ignore[arg-type]


# --- 2. pytest-rerunfailures attempts grouped by identity, wherever they are in the file -------------------


def test_rerunfailures_attempts_far_apart_are_one_test(tmp_path: Path) -> None:
    """An always-failing test's three attempts 600 and 1200 test cases apart: three failures, verdict fail."""
    fails = '<testcase classname="tests.test_io" name="test_always_fails" time="0.01">'
    fails += '<failure message="AssertionError: boom">trace</failure></testcase>'
    bare = '<testcase classname="tests.test_io" name="test_always_fails" time="0.01" />'
    filler = [f'<testcase classname="tests.test_f" name="t{i}" time="0.001" />' for i in range(1200)]
    body = bare + "".join(filler[:600]) + bare + "".join(filler[600:]) + fails
    p = tmp_path / "rerunfailures.xml"
    p.write_text(f'<testsuites><testsuite name="pytest">{body}</testsuite></testsuites>')
    recs = [r for r in iter_junit(p) if r.identity.name == "test_always_fails"]
    assert [(r.inprocess_attempt, r.outcome, r.final) for r in recs] == [
        (1, "fail", False),
        (2, "fail", False),
        (3, "fail", True),
    ]
    (v,) = [v for v in group_verdicts(iter_junit(p)) if v.identity.name == "test_always_fails"]
    assert (v.verdict, v.attempts, v.failed_attempts) == ("fail", 3, 3)


# --- 4. the rerun cap scales with suite size -----------------------------------------------------------------


def test_single_failure_in_a_small_suite_gets_its_rerun() -> None:
    plan, reason = plan_test_reruns([tv(f"ok{i}", "pass") for i in range(15)] + [tv("a", "fail")])  # 1 of 16: 6%
    assert [d.rerun for d in plan] == [True] and reason.startswith("1 of 1 failed tests to rerun")
    # two of 16 is beyond both 1 and 5% of 16 (0.8): no reruns
    plan, reason = plan_test_reruns([tv(f"ok{i}", "pass") for i in range(14)] + [tv("a", "fail"), tv("b", "fail")])
    assert not any(d.rerun for d in plan) and "at most 1 may fail" in reason
    # 5% of 100 is 5: five failures get reruns, six do not
    five = [tv(f"ok{i}", "pass") for i in range(95)] + [tv(f"f{i}", "fail") for i in range(5)]
    assert all(d.rerun for d in plan_test_reruns(five)[0])
    six = [tv(f"ok{i}", "pass") for i in range(94)] + [tv(f"f{i}", "fail") for i in range(6)]
    assert not any(d.rerun for d in plan_test_reruns(six)[0])
    assert [CaseRerunPolicy().failed_allowed(n) for n in (1, 16, 20, 39, 40, 100, 1000)] == [1, 1, 1, 1, 2, 5, 50]


def test_rerun_plan_cli_reruns_the_one_failure_of_a_16_test_suite(db_url, tmp_path, capsys) -> None:
    cases = {f"t{k}": "pass" for k in range(16)} | {"t3": "fail"}
    rep = ingest(db_url, tmp_path, 1, cases, NOW)
    code, out, _ = run_cli(
        capsys, "rerun-plan", "--run", str(rep.stored[0]["run_id"]), "--format", "json", "--db", db_url
    )
    doc = json.loads(out)
    assert code == 0 and [(t["id"], t["rerun"]) for t in doc["tests"]] == [("tests/test_s.py::t3", True)]


# --- 1. a quarantined test that is broken now gates again, and its quarantine is released -------------------

SIG_TIMEOUT = "sig-timeout"


def quarantined_entry(since) -> QuarantineEntry:
    return QuarantineEntry("tests/test_x.py::q", since, "flaky (...)", "rule", (SIG_TIMEOUT,))


def test_final_verdict_of_a_quarantined_test_that_is_broken_now() -> None:
    ident = CaseIdentity("s", "tests/test_x.py", None, "q")
    always = CaseVerdict(ident, "fail", "h", "b", "fail", 3, 3, ("sig-nan",))
    fv = final_verdict(always, quarantined=True, quarantined_for=(SIG_TIMEOUT,))
    assert (fv.gate, fv.recorded, fv.flagged) == ("fail", "fail", True) and fv.reason.startswith("broken: failed all 3")
    new_sig = CaseVerdict(ident, "flaky", "h", "b", "fail", 2, 2, ("sig-nan",))  # passed once, new message
    fv = final_verdict(new_sig, quarantined=True, quarantined_for=(SIG_TIMEOUT,))
    assert fv.gate == "fail" and "new failure signature sig-nan" in fv.reason
    # the known flake still does not gate; a quarantine by hand (no signatures given) stays neutral
    known = CaseVerdict(ident, "flaky", "h", "b", "fail", 2, 1, (SIG_TIMEOUT,))
    assert final_verdict(known, quarantined=True, quarantined_for=(SIG_TIMEOUT,)).gate == "neutral"
    assert final_verdict(always, quarantined=True).gate == "neutral"


def test_decide_quarantine_releases_a_broken_test_by_rule() -> None:
    entry = quarantined_entry(NOW - timedelta(days=2))
    hv = lambda verdict, days, sigs: HistoricVerdict(  # noqa: E731
        "tests/test_x.py::q", verdict, NOW - timedelta(days=days), f"c{days}", f"r{days}", sigs
    )
    flakes = [hv("flaky", d, (SIG_TIMEOUT,)) for d in (5, 4, 3)]
    d = decide_quarantine("tests/test_x.py::q", [*flakes, hv("fail", 1, ("sig-nan",))], now=NOW, current=entry)
    assert d.action == "release" and d.reason.startswith("released: broken: failed all")
    d = decide_quarantine("tests/test_x.py::q", [*flakes, hv("flaky", 1, ("sig-nan",))], now=NOW, current=entry)
    assert d.action == "release" and "new failure signature sig-nan" in d.reason
    d = decide_quarantine("tests/test_x.py::q", [*flakes, hv("flaky", 1, (SIG_TIMEOUT,))], now=NOW, current=entry)
    assert d.action == "keep"  # the flake it was quarantined for
    by_hand = QuarantineEntry("tests/test_x.py::q", entry.since, "known broken", "alice")
    d = decide_quarantine("tests/test_x.py::q", [*flakes, hv("fail", 1, ())], now=NOW, current=by_hand)
    assert d.action == "keep"  # a person muted it on purpose


def test_apply_rules_releases_a_quarantined_test_that_now_fails_every_attempt(history_db, tmp_path, capsys):
    with session_scope(history_db, write=True) as s:
        entered = {d["test"]: d["action"] for d in apply_rules(s, now=NOW)}
    assert entered["tests/test_s.py::t0"] == "enter"
    for i in range(2):  # the timeout flake became a hard failure with a new message
        ingest(history_db, tmp_path, 200 + i, {**base(), "t0": "fail"}, NOW + timedelta(hours=1 + i), msg=NEW_MSG)
    with clock.frozen(NOW + timedelta(hours=3)):
        code, out, _ = run_cli(capsys, "quarantine", "apply-rules", "--format", "json", "--db", history_db)
        assert code == 0, out
        doc = json.loads(out)
        (d,) = [d for d in doc["decisions"] if d["test"] == "tests/test_s.py::t0"]
        assert d["action"] == "release" and "broken: failed all" in d["reason"]
        code, out, _ = run_cli(capsys, "quarantine", "list", "--all", "--format", "json", "--db", history_db)
        (entry,) = json.loads(out)["entries"]
        assert entry["released_at"] and entry["released_by"] == "rule" and entry["release_reason"] == d["reason"]
        # apply-rules again: not quarantined again (it fails every attempt), and the report shows it broken
        code, out, _ = run_cli(capsys, "quarantine", "apply-rules", "--format", "json", "--db", history_db)
        assert all(x["action"] != "enter" for x in json.loads(out)["decisions"])
        code, out, _ = run_cli(capsys, "flaky", "--all", "--format", "json", "--db", history_db)
        t0 = next(t for t in json.loads(out)["tests"] if t["key"] == "tests/test_s.py::t0")
        assert t0["state"] == "broken"


# --- 3. the infrastructure-failure rule never hides tests that fail in every run ------------------------------


def window_history(extra_failures: dict[int, int] | None = None) -> list[HistoricVerdict]:
    """10 daily runs of 10 tests; t0..t2 fail every run; ``extra_failures`` {run: n} fails n more tests."""
    out = []
    for r in range(10):
        for t in range(10):
            failing = t < 3 or 3 <= t < 3 + (extra_failures or {}).get(r, 0)
            out.append(
                HistoricVerdict(f"t{t}", "fail" if failing else "pass", NOW - timedelta(days=10 - r), f"c{r}", f"r{r}")
            )
    return out


def test_tests_failing_every_run_do_not_make_every_run_an_infra_failure() -> None:
    hist = window_history()
    # the first run cannot tell them from a mass failure (nothing failed before it); every later one can
    assert list(infra_failed_runs(hist)) == ["r0"]
    states = {s.test: s for s in assess(hist, now=NOW)}
    assert [(states[t].state, states[t].failed_verdicts) for t in ("t0", "t1", "t2")] == [("broken", 9)] * 3
    assert states["t5"].state == "healthy"
    # a real mass failure beside them is still one: 4 more tests failed in run 6 (4 of 10 > 20%)
    infra = infra_failed_runs(window_history({6: 4}))
    assert set(infra) == {"r0", "r6"} and infra["r6"].startswith("4 of 10 tests failed (and 3 still failing")
    assert run_infra_failure([tv(f"t{i}", "fail" if i < 3 else "pass") for i in range(10)], still_failing=3) is None


def test_flaky_all_shows_tests_failing_every_run_as_broken(db_url, tmp_path, capsys) -> None:
    for r in range(10):
        cases = {f"t{k}": "fail" if k < 3 else "pass" for k in range(10)}
        ingest(db_url, tmp_path, r, cases, NOW - timedelta(days=10 - r))
    with clock.frozen(NOW):
        code, out, _ = run_cli(capsys, "flaky", "--all", "--format", "json", "--db", db_url)
    doc = json.loads(out)
    by = {t["id"]: t for t in doc["tests"]}
    for k in range(3):
        t = by[f"tests/test_s.py::t{k}"]
        assert (t["state"], t["failed_verdicts"], t["verdicts"]) == ("broken", 9, 9)
    assert doc["summary"]["broken"] == 3 and by["tests/test_s.py::t5"]["state"] == "healthy"
