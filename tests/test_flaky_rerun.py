"""Rerun policy: the YAML file, which failed tests to rerun, final verdicts, performance repeats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardrail.analysis.case_reruns import final_verdict, job_conclusion, plan_test_reruns
from guardrail.analysis.junit_model import CaseIdentity, CaseVerdict
from guardrail.analysis.perf_reruns import PerfCandidate, plan_perf_reruns
from guardrail.analysis.rerun_plan import rerun_plan
from guardrail.errors import InputError
from guardrail.ingest.junit_verdicts import group_verdicts
from guardrail.ingest.junit_xml import iter_junit
from guardrail.rerun_policy import CaseRerunPolicy, RerunPolicy
from guardrail.rerun_policy.yaml_file import DEFAULT_POLICY_PATH, load_rerun_policy

FIX = Path(__file__).parent / "fixtures" / "junit"


def tv(name: str, verdict: str, *, attempts=1, failed=None, final=None, processes=1, dur=1.0) -> CaseVerdict:
    failed = failed if failed is not None else {"pass": 0, "fail": attempts, "flaky": 1, "skip": 0}[verdict]
    final = final or {"pass": "pass", "fail": "fail", "flaky": "pass", "skip": "skip"}[verdict]
    ident = CaseIdentity("pytest", "tests/test_x.py", None, name, None, "Ascend910B3")
    return CaseVerdict(ident, verdict, "h", "b", final, attempts, failed, duration_s=dur, process_attempts=processes)


def key(name: str) -> str:
    return f"tests/test_x.py::{name}@Ascend910B3"


# --- policy file ---------------------------------------------------------------------------------


def test_shipped_policy_file_holds_the_documented_numbers() -> None:
    p = load_rerun_policy(DEFAULT_POLICY_PATH)
    assert p == RerunPolicy()  # the YAML and the code defaults agree
    assert (p.tests.max_reruns_per_test, p.tests.max_failed_share) == (2, 0.05)
    assert (p.flakiness.window_days, p.flakiness.window_verdicts, p.flakiness.infra_failed_share) == (
        14,
        100,
        0.2,
    )
    assert (p.quarantine.release_passes, p.quarantine.release_clean_days) == (30, 7)


def test_policy_overrides_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("tests:\n  max_tests_per_job: 3\nperformance:\n  rerun_verdicts: [inconclusive]\n")
    p = load_rerun_policy(f)
    assert p.tests.max_tests_per_job == 3 and p.tests.max_reruns_per_test == 2
    assert p.performance.rerun_verdicts == ("inconclusive",)
    for text, field in [
        ("tests:\n  max_test_per_job: 3\n", "tests.max_test_per_job"),
        ("retries:\n  n: 1\n", "retries"),
        ("tests:\n  max_tests_per_job: 2.5\n", "tests.max_tests_per_job"),
        ("tests:\n  max_failed_share: -1\n", "tests.max_failed_share"),
        ("tests: 3\n", "tests"),
    ]:
        f.write_text(text)
        with pytest.raises(InputError) as exc:
            load_rerun_policy(f)
        assert exc.value.field == field and exc.value.file == str(f)
    f.write_text("tests: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_rerun_policy(f)


# --- which tests to rerun --------------------------------------------------------------------------


def test_reruns_failed_tests_in_a_fresh_process_up_to_two() -> None:
    verdicts = [tv(f"ok{i}", "pass") for i in range(100)] + [
        tv("a", "fail", dur=5.0),
        tv("b", "fail", dur=1.0),
        tv("c", "fail", attempts=2, processes=2),
        tv("d", "fail", attempts=3, processes=3),
    ]
    plan, reason = plan_test_reruns(verdicts, known_flaky=[key("a")])
    by = {d.test: d for d in plan}
    assert [d.test for d in plan][:2] == [key("a"), key("b")]  # known flaky first, then cheapest
    assert by[key("a")].rerun and by[key("a")].attempts == 2 and "known flaky" in by[key("a")].reason
    assert by[key("b")].id == "tests/test_x.py::b"  # the node id to select it
    assert by[key("c")].rerun and by[key("c")].attempts == 1
    assert not by[key("d")].rerun and "already rerun 2 times" in by[key("d")].reason
    assert reason.startswith("3 of 4 failed tests to rerun")


def test_no_reruns_when_more_than_five_percent_failed() -> None:
    verdicts = [tv(f"ok{i}", "pass") for i in range(18)] + [tv("a", "fail"), tv("b", "fail")]  # 10%
    plan, reason = plan_test_reruns(verdicts)
    assert not any(d.rerun for d in plan) and "2 of 20 tests failed (10.0% > 5%)" in reason
    assert all(d.reason == reason for d in plan)


def test_job_cap_changed_and_quarantined_tests() -> None:
    verdicts = [tv(f"ok{i}", "pass") for i in range(200)] + [tv(f"f{i}", "fail", dur=i) for i in range(6)]
    policy = RerunPolicy(tests=CaseRerunPolicy(max_tests_per_job=2))
    plan, _ = plan_test_reruns(verdicts, policy=policy, changed_tests=["tests/test_x.py::f0"], quarantined=[key("f1")])
    by = {d.test: d for d in plan}
    assert not by[key("f0")].rerun and "the PR changed this test" in by[key("f0")].reason
    assert not by[key("f1")].rerun and "quarantined" in by[key("f1")].reason
    assert [by[key(f"f{i}")].rerun for i in range(2, 6)] == [True, True, False, False]
    assert "job cap reached: 2" in by[key("f4")].reason
    assert plan_test_reruns([tv("ok", "pass"), tv("s", "skip")]) == ([], "nothing failed")
    # the PR's changed paths work too: every test of a changed file counts as changed
    plan, _ = plan_test_reruns(verdicts, changed_tests=["tests/test_x.py"])
    assert not any(d.rerun for d in plan) and all("PR changed" in d.reason for d in plan)


def test_plan_from_a_real_rerunfailures_file() -> None:
    """pytest-rerunfailures already retried 3 tests in-process; the plan asks for fresh processes."""
    verdicts = group_verdicts(iter_junit(FIX / "pytest_rerunfailures.xml"), head_commit="h", base_commit="b")
    plan = rerun_plan("run-1", verdicts, policy=RerunPolicy(tests=CaseRerunPolicy(max_failed_share=0.5)))
    doc = plan.to_dict()
    json.dumps(doc)
    assert doc["schema"] == "guardrail.rerun-plan/v1" and doc["run_id"] == "run-1"
    assert {t["id"] for t in doc["tests"] if t["rerun"]} == {
        "tests/test_io.py::test_always_fails",
        "tests/test_io.py::test_setup_error",
        "tests/test_io.py::test_teardown_error",
    }
    # the flaky test passed on its last attempt: nothing to rerun; 3 of 8 that ran failed
    assert (doc["failed_tests"], doc["ran_tests"]) == (3, 8)
    # with the shipped policy 3/8 failed is far above 5%: no reruns at all
    assert rerun_plan("run-1", verdicts).to_dict()["summary"]["tests_to_rerun"] == 0


# --- final verdicts --------------------------------------------------------------------------------


def test_final_verdict_rules() -> None:
    flaky = tv("t", "flaky", attempts=2, failed=1)
    f = final_verdict(flaky, known_flaky=True)
    assert (f.gate, f.recorded, f.flagged) == ("pass", "flaky", False) and "known flaky" in f.reason
    f = final_verdict(flaky)
    assert (f.gate, f.recorded, f.flagged) == ("neutral", "flaky", True) and "first flake" in f.reason
    f = final_verdict(flaky, known_flaky=True, changed_by_pr=True)
    assert (f.gate, f.recorded) == ("fail", "flaky") and "PR changed" in f.reason

    broken = tv("t", "fail", attempts=3)
    f = final_verdict(broken, known_flaky=True)
    assert (f.gate, f.recorded) == ("fail", "fail") and f.reason == "failed all 3 attempts"
    f = final_verdict(broken, quarantined=True)
    assert (f.gate, f.flagged) == ("neutral", True) and "quarantined" in f.reason
    f = final_verdict(broken, failing_on_base=True)
    assert f.gate == "neutral" and "base commit too" in f.reason

    late_fail = tv("t", "flaky", attempts=2, failed=1, final="fail")  # passed first, failed last
    assert final_verdict(late_fail, known_flaky=True).gate == "fail"
    assert final_verdict(late_fail, failing_on_base=True).gate == "neutral"
    assert final_verdict(tv("t", "pass")).gate == "pass"
    assert final_verdict(tv("t", "skip")).gate == "skip"


def test_job_conclusion_from_real_fixture() -> None:
    verdicts = group_verdicts(iter_junit(FIX / "surefire_reruns.xml"))
    finals = [final_verdict(v, quarantined=v.identity.name == "testBrokenNpe") for v in verdicts]
    conclusion, reason = job_conclusion(finals)
    assert conclusion == "fail" and reason == "1 failing test(s): com.example.serving.PipelineTest::testBrokenAssert"
    by = {f.id.split("::")[1]: f for f in finals}
    assert by["testFlakyConnect"].gate == "neutral"  # healthy test flaked once: flagged, not blocking
    assert job_conclusion([f for f in finals if f.gate != "fail"]) == ("pass", "no test gates the job")


# --- performance workloads -------------------------------------------------------------------------


def pc(verdict: str, need=None, have=2, workload="wan22", metric="latency", **kw) -> PerfCandidate:
    return PerfCandidate(workload, metric, "Ascend910B3", verdict, need, have, **kw)


def test_perf_inconclusive_gets_the_repeats_the_planner_asks_for_up_to_the_cap() -> None:
    d = plan_perf_reruns([pc("inconclusive", need=6)])[0]
    assert (d.action, d.extra_repeats, d.blocking) == ("rerun", 4, False) and "4 more repeats" in d.reason
    d = plan_perf_reruns([pc("inconclusive", need=40)])[0]
    assert d.extra_repeats == 10 and "needs 38, capped at 10" in d.reason
    d = plan_perf_reruns([pc("inconclusive", need=None)])[0]
    assert d.extra_repeats == 3  # the policy's default
    d = plan_perf_reruns([pc("inconclusive", need=1_000_000)])[0]
    assert d.action == "flag" and "no number of repeats" in d.reason


def test_perf_regression_rerun_only_when_first_seen() -> None:
    d = plan_perf_reruns([pc("regression", need=5)])[0]
    assert (d.action, d.extra_repeats, d.blocking) == (
        "rerun",
        3,
        False,
    ) and "first-seen regression" in d.reason
    d = plan_perf_reruns([pc("regression", need=5)], seen_regressions=[("wan22", "latency", "Ascend910B3")])[0]
    assert (d.action, d.blocking) == ("none", True) and "confirmed" in d.reason


def test_perf_noisy_is_flagged_never_blocking_with_repeats_shown() -> None:
    d = plan_perf_reruns([pc("noisy", need=24)])[0]
    assert (d.action, d.blocking, d.repeats_needed) == ("flag", False, 24)
    assert "about 24 repeats would be needed" in d.reason and "never blocking" in d.reason
    assert [x.action for x in plan_perf_reruns([pc("no_change"), pc("improvement")])] == ["none", "none"]
    missing = plan_perf_reruns([pc("missing")])[0]
    assert (missing.action, missing.blocking) == ("none", True)
    info = plan_perf_reruns([pc("inconclusive", need=9, informational=True)])[0]
    assert info.action == "none" and info.reason == "informational metric"


def test_perf_workload_cap_counts_workloads_not_metrics() -> None:
    cands = [pc("inconclusive", need=4, workload=f"w{i}", metric=m) for i in range(10) for m in ("latency", "peak")]
    out = plan_perf_reruns(cands)
    rerun = {d.workload for d in out if d.action == "rerun"}
    assert rerun == {f"w{i}" for i in range(8)}
    assert all("job cap reached: 8" in d.reason for d in out if d.workload in ("w8", "w9"))


def test_perf_candidate_from_a_verdicts_document_entry() -> None:
    entry = {
        "workload": "wan22-ti2v-5b-720p", "metric": "denoise_step_latency", "hardware": "H100",
        "verdict": "inconclusive", "repeats_needed": 7, "candidate": {"repeats": 2, "median": 1135.5},
    }  # fmt: skip
    c = PerfCandidate.from_entry(entry)
    assert (c.key, c.repeats_needed, c.candidate_repeats) == (
        ("wan22-ti2v-5b-720p", "denoise_step_latency", "H100"),
        7,
        2,
    )
    plan = rerun_plan("r", [], [c]).to_dict()
    assert plan["workloads"][0]["extra_repeats"] == 5 and plan["summary"]["workloads_to_rerun"] == 1


def test_a_regression_is_confirmed_once_more_until_the_last_look_which_asks_for_nothing():
    def entry(verdict, look):
        return {"workload": "w", "metric": "m", "hardware": "H", "verdict": verdict, "repeats_needed": 6,
                "candidate": {"repeats": 4}, "look": look, "max_looks": 3}  # fmt: skip

    (first,) = plan_perf_reruns([PerfCandidate.from_entry(entry("regression", 1))])
    assert first.action == "rerun" and "first-seen" in first.reason
    (again,) = plan_perf_reruns([PerfCandidate.from_entry(entry("regression", 2))])
    assert again.action == "rerun" and "look 2: confirm once more" in again.reason
    (final,) = plan_perf_reruns([PerfCandidate.from_entry(entry("regression", 3))])
    assert (final.action, final.blocking) == ("none", True) and "last look (3 of 3): confirmed" in final.reason
    (last,) = plan_perf_reruns([PerfCandidate.from_entry(entry("inconclusive", 3))])
    assert (last.action, last.extra_repeats, last.blocking) == ("flag", 0, False) and "last look" in last.reason
    (mid,) = plan_perf_reruns([PerfCandidate.from_entry(entry("inconclusive", 2))])
    assert mid.action == "rerun" and mid.extra_repeats == 2
