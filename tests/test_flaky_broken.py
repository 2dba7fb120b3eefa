"""The gate cannot be talked out of a failure (issue 13, point 4): rerun attempts grouped by identity however far
apart, at least one rerun for a single failure in a small suite, and tests failing in every run of the window
never hidden by the infrastructure-failure rule -- on numbers and through the real CLI and store."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from guardrail.analysis.case_reruns import plan_test_reruns
from guardrail.analysis.flaky_scores import HistoricVerdict, assess, infra_failed_runs, run_infra_failure
from guardrail.analysis.junit_model import CaseIdentity, CaseVerdict
from guardrail.ingest.junit_verdicts import group_verdicts
from guardrail.ingest.junit_xml import iter_junit
from guardrail.rerun_policy import CaseRerunPolicy
from tests.test_junit_store_flaky import cli, ingest
from tests.timeline import at

NOW = at()


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
    code, out, _ = cli(
        capsys, "rerun-plan", "--run", str(rep.stored[0]["run_id"]), "--format", "json", "--db", db_url
    )
    doc = json.loads(out)
    assert code == 0 and [(t["id"], t["rerun"]) for t in doc["tests"]] == [("tests/test_s.py::t3", True)]
