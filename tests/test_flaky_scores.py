"""Flakiness scores, windows, infrastructure exclusion, states, the flaky report document and CI health."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from guardrail.analysis.ci_health import HealthRow, InfraEvent, ci_health
from guardrail.analysis.flaky_scores import (
    HistoricVerdict,
    QuarantineEntry,
    assess,
    flakiness_score,
    flaky_report,
    infra_failed_runs,
)
from guardrail.ingest.junit_verdicts import group_verdicts
from guardrail.ingest.junit_xml import iter_junit
from guardrail.rerun_policy import FlakinessPolicy
from tests.timeline import at, day

NOW = at(hours=-6)
FIX = Path(__file__).parent / "fixtures" / "junit"


def hv(
    test: str, verdict: str, days_ago: float, *, run: str | None = None, commit: str = "c", sigs=()
) -> HistoricVerdict:
    return HistoricVerdict(test, verdict, NOW - timedelta(days=days_ago), commit, run, tuple(sigs), test_id=test)


def one(stats, test):
    return next(s for s in stats if s.test == test)


def test_score_is_the_bayesian_estimate() -> None:
    assert flakiness_score(3, 3) == pytest.approx(0.875)  # the DESIGN.md example
    assert flakiness_score(0, 0) == 0.5
    assert flakiness_score(0, 99) == pytest.approx(0.005)


def test_flaky_needs_two_flaky_verdicts_and_one_percent() -> None:
    one_flake = [hv("t", "flaky", 1)] + [hv("t", "pass", 1 + i / 10) for i in range(5)]
    s = one(assess(one_flake, now=NOW), "t")
    assert (s.flaky, s.state, s.flaky_verdicts, s.verdicts) == (False, "healthy", 1, 6)
    two = one_flake + [hv("t", "flaky", 2)]
    s = one(assess(two, now=NOW), "t")
    assert (s.flaky, s.state, s.score) == (True, "flaky", pytest.approx(2.5 / 8))
    # 2 flaky verdicts among 300 in the window: score 2.5/301 < 1% -> not flaky
    many = [hv("t", "flaky", 0.5), hv("t", "flaky", 0.6)] + [hv("t", "pass", 0.001 * i) for i in range(298)]
    s = one(assess(many, now=NOW), "t")
    assert s.verdicts == 300 and not s.flaky and s.state == "healthy"


def test_window_is_14_days_or_100_verdicts_whichever_holds_more() -> None:
    # 150 verdicts within 14 days: all of them count (days window holds more)
    dense = [hv("d", "pass", i * 0.05) for i in range(150)]
    assert one(assess(dense, now=NOW), "d").verdicts == 150
    # 5 verdicts in 14 days, 120 older ones: the last 100 count
    sparse = [hv("s", "pass", i) for i in range(5)] + [hv("s", "flaky", 20 + i) for i in range(115)]
    s = one(assess(sparse, now=NOW), "s")
    assert s.verdicts == 100 and s.flaky_verdicts == 95
    # only old verdicts beyond both windows drop out
    old = [hv("o", "flaky", 400), hv("o", "flaky", 401)] + [hv("o", "pass", i) for i in range(100)]
    s = one(assess(old, now=NOW), "o")
    assert s.flaky_verdicts == 0 and not s.flaky
    # skips count neither way
    assert one(assess([hv("k", "skip", 1), hv("k", "pass", 1)], now=NOW), "k").verdicts == 1


def test_infrastructure_failed_runs_are_excluded() -> None:
    tests = [f"t{i}" for i in range(20)]
    good = [hv(t, "pass", 1, run="r1") for t in tests]
    # run r2: 5 of 20 failed or flaked (25% > 20%): the device was lost, not the tests
    bad = [hv(t, "flaky" if i < 3 else "fail" if i < 5 else "pass", 0.5, run="r2") for i, t in enumerate(tests)]
    # run r3: 4 of 20 (20%, not above): counts
    ok = [hv(t, "flaky" if i < 4 else "pass", 0.2, run="r3") for i, t in enumerate(tests)]
    excluded = infra_failed_runs(good + bad + ok)
    assert set(excluded) == {"r2"} and "5 of 20 tests failed (25% > 20%)" in excluded["r2"]
    stats = assess(good + bad + ok, now=NOW)
    assert one(stats, "t0").verdicts == 2 and one(stats, "t0").flaky_verdicts == 1
    # a tiny run (< infra_min_tests) is never called an infrastructure failure
    assert infra_failed_runs([hv("a", "fail", 1, run="small"), hv("b", "pass", 1, run="small")]) == {}
    assert infra_failed_runs(good + bad, FlakinessPolicy(infra_failed_share=0.3)) == {}


def test_states_broken_and_quarantined() -> None:
    hist = [hv("b", "pass", 3), hv("b", "fail", 2), hv("b", "fail", 1)]
    hist += [
        hv("q", "flaky", 2),
        hv("q", "flaky", 1),
        hv("f", "flaky", 2),
        hv("f", "flaky", 1),
        hv("h", "pass", 1),
    ]
    q = {"q": QuarantineEntry("q", NOW - timedelta(days=1), "NPU HCCL timeout, #812", by="alice")}
    q["gone"] = QuarantineEntry("gone", NOW - timedelta(days=1), "renamed test", by="bob")
    stats = {s.test: s for s in assess(hist, now=NOW, quarantined=q)}
    assert stats["b"].state == "broken" and "failed every attempt" in stats["b"].reason
    assert stats["q"].state == "quarantined" and "alice" in stats["q"].reason
    assert stats["f"].state == "flaky" and stats["h"].state == "healthy"
    assert stats["gone"].state == "quarantined" and stats["gone"].verdicts == 0
    # one failing verdict alone is not "broken" (broken_after = 2)
    assert one(assess([hv("x", "pass", 2), hv("x", "fail", 1)], now=NOW), "x").state == "healthy"


def test_flaky_report_document_from_real_junit_runs() -> None:
    """Three runs of the pytest-rerunfailures fixture on three commits: test_flaky_then_pass is flaky."""
    hist = []
    for i, commit in enumerate(("c1", "c2", "c3")):
        verdicts = group_verdicts(iter_junit(FIX / "pytest_rerunfailures.xml"), head_commit=commit)
        hist += [HistoricVerdict.from_verdict(v, at=NOW - timedelta(days=3 - i), run_id=f"run{i}") for v in verdicts]
    doc = flaky_report(assess(hist, now=NOW))
    json.dumps(doc)
    assert doc["schema"] == "guardrail.flaky/v1"
    t = next(x for x in doc["tests"] if x["id"] == "tests/test_io.py::test_flaky_then_pass")
    assert t == {**t, "flaky": True, "state": "flaky", "score": 0.875, "flaky_verdicts": 3, "verdicts": 3}
    always = next(x for x in doc["tests"] if x["id"] == "tests/test_io.py::test_always_fails")
    assert always["state"] == "broken" and not always["flaky"]
    assert doc["summary"]["flaky"] == 1 and doc["summary"]["broken"] == 3  # + setup and teardown errors
    assert doc["tests"][0]["state"] == "broken"  # worst first
    flagged = flaky_report(assess(hist, now=NOW), only_flagged=True)
    assert {x["state"] for x in flagged["tests"]} == {"flaky", "broken"}


def test_ci_health_figures_per_lane_hardware_day() -> None:
    d1 = at(days=-2, hours=-9)
    d2 = d1 + timedelta(days=1)
    rows = (
        [HealthRow(d1, "presubmit", "Ascend910B3", "pass") for _ in range(8)]
        + [HealthRow(d1, "presubmit", "Ascend910B3", "flaky", rerun_seconds=90)]
        + [HealthRow(d1, "presubmit", "Ascend910B3", "fail", rerun_seconds=150)]
        + [HealthRow(d1, "presubmit", "Ascend910B3", "skip")]
        + [HealthRow(d2, "presubmit", "Ascend910B3", "pass") for _ in range(4)]
        + [HealthRow(d1, "nightly", "H100", "pass") for _ in range(3)]
    )
    infra = [
        InfraEvent(d1, "presubmit", "Ascend910B3", "device_lost"),
        InfraEvent(d1, "presubmit", "Ascend910B3", "device_lost"),
        InfraEvent(d2, "presubmit", "Ascend910B3", "oom"),
    ]
    doc = ci_health(rows, infra)
    assert doc["schema"] == "guardrail.ci-health/v1"
    figs = {(f["lane"], f["hardware"], f["day"]): f for f in doc["figures"]}
    f = figs[("presubmit", "Ascend910B3", day(days=-2))]
    assert (f["tests"], f["passed"], f["failed"], f["flaky"]) == (10, 8, 1, 1)
    assert (f["pass_rate"], f["flaky_rate"], f["rerun_minutes"]) == (0.8, 0.1, 4.0)
    assert f["infra_errors"] == {"device_lost": 2}
    assert figs[("presubmit", "Ascend910B3", day(days=-1))]["infra_errors"] == {"oom": 1}
    total = next(t for t in doc["totals"] if t["lane"] == "presubmit")
    assert total["tests"] == 14 and total["infra_errors"] == {"device_lost": 2, "oom": 1}
    assert total["day"] == f"{day(days=-2)}..{day(days=-1)}"
    assert ci_health([]) == {"schema": "guardrail.ci-health/v1", "figures": [], "totals": []}


def test_sql_aggregated_counts_classify_like_the_history() -> None:
    """The lead's store may aggregate WindowCounts in SQL; classify() must agree with assess()."""
    from guardrail.analysis.flaky_scores import WindowCounts, classify

    hist = [hv("t", "flaky", 3), hv("t", "pass", 2.5), hv("t", "flaky", 2), hv("t", "fail", 1), hv("t", "fail", 0.5)]
    via_history = one(assess(hist, now=NOW), "t")
    counts = WindowCounts("t", verdicts=5, flaky_verdicts=2, failed_verdicts=2, trailing_fails=2, last_at=hist[-1].at)
    assert classify(counts) == via_history
    assert via_history.state == "broken"


def test_one_real_run_judged_as_infrastructure_failure() -> None:
    from guardrail.analysis.flaky_scores import run_infra_failure

    verdicts = group_verdicts(iter_junit(FIX / "pytest_rerunfailures.xml"))
    # 4 of 8 tests that ran had a failed attempt, but 8 tests are below infra_min_tests (10)
    assert run_infra_failure(verdicts) is None
    reason = run_infra_failure(verdicts, FlakinessPolicy(infra_min_tests=5))
    assert reason is not None and reason.startswith("4 of 8 tests failed (50% > 20%)")


def test_mostly_failing_test_with_one_rerun_pass_is_broken_not_healthy():
    from guardrail.analysis.flaky_scores import WindowCounts, classify

    stats = classify(WindowCounts(test="t", verdicts=11, flaky_verdicts=1, failed_verdicts=10, trailing_fails=0))
    assert stats.state == "broken" and "10 of 11" in stats.reason
    fine = classify(WindowCounts(test="t", verdicts=11, flaky_verdicts=1, failed_verdicts=1, trailing_fails=0))
    assert fine.state == "healthy"
