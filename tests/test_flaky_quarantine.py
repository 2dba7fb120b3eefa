"""Quarantine: entering by rule, the cases it must never enter automatically, release, and by hand."""

from __future__ import annotations

from datetime import timedelta

import pytest

from guardrail.analysis.flaky_scores import HistoricVerdict, QuarantineEntry
from guardrail.analysis.quarantine_rules import decide_quarantine, manual_quarantine
from guardrail.rerun_policy import QuarantinePolicy
from tests.timeline import at

NOW = at(hours=-6)
T = "tests/test_pipe.py::test_denoise[bf16]@Ascend910B3"
SIG = "aaaa1111bbbb2222"


def hv(verdict: str, days_ago: float, commit: str = "c1", sigs=(SIG,), run: str | None = None) -> HistoricVerdict:
    sigs = sigs if verdict in ("fail", "flaky") else ()
    return HistoricVerdict(T, verdict, NOW - timedelta(days=days_ago), commit, run, tuple(sigs), test_id=T)


def flaky_history() -> list[HistoricVerdict]:
    """An old occurrence of the signature, then 3 flaky verdicts on 2 commits in the last week."""
    return [
        hv("flaky", 10, "c0"),
        *[hv("pass", 9 - i * 0.5, "c0") for i in range(6)],
        hv("flaky", 5, "c1"),
        hv("pass", 4, "c1"),
        hv("flaky", 3, "c2"),
        hv("flaky", 1, "c2"),
    ]


def test_enters_by_rule_with_its_reason() -> None:
    d = decide_quarantine(T, flaky_history(), now=NOW)
    assert d.action == "enter"
    assert "3 flaky verdicts on 2 commits in 7 days" in d.reason and "signature seen before" in d.reason
    assert d.entry is not None and d.entry.by == "rule" and d.entry.since == NOW and d.entry.signatures == (SIG,)


def test_needs_three_flaky_verdicts_on_two_commits_within_seven_days() -> None:
    # same three flaky verdicts all on one commit: not enough distinct commits
    one_commit = [
        v if v.verdict != "flaky" or v.commit == "c0" else hv("flaky", (NOW - v.at).days, "c9") for v in flaky_history()
    ]
    d = decide_quarantine(T, one_commit, now=NOW)
    assert d.action == "none" and "3 flaky verdicts on 1 commits" in d.reason
    # only two in the last 7 days
    d = decide_quarantine(T, flaky_history()[:-1], now=NOW)
    assert d.action == "none" and "2 flaky verdicts" in d.reason
    # looser policy: 2 flaky on 2 commits is enough
    loose = QuarantinePolicy(enter_flaky_verdicts=2)
    assert decide_quarantine(T, flaky_history()[:-1], now=NOW, policy=loose).action == "enter"


def test_never_for_a_new_failure_signature() -> None:
    hist = flaky_history()
    hist[-1] = hv("flaky", 1, "c2", sigs=("ffff0000ffff0000",))
    d = decide_quarantine(T, hist, now=NOW)
    assert d.action == "none" and "new failure signature ffff0000ffff0000" in d.reason
    # no message recorded at all (pytest-rerunfailures keeps none for reruns): cannot be checked
    hist[-1] = hv("flaky", 1, "c2", sigs=())
    assert "cannot be checked" in decide_quarantine(T, hist, now=NOW).reason


def test_never_for_a_test_that_fails_every_attempt() -> None:
    hist = [*flaky_history(), hv("fail", 0.5, "c3")]
    d = decide_quarantine(T, hist, now=NOW)
    assert d.action == "none" and "fails every attempt" in d.reason


def test_never_for_a_test_the_pr_changed() -> None:
    d = decide_quarantine(T, flaky_history(), now=NOW, changed_by_pr=True)
    assert d.action == "none" and "the PR changed this test" in d.reason


def test_not_for_a_healthy_test() -> None:
    d = decide_quarantine(T, [hv("pass", i) for i in range(10)], now=NOW)
    assert d.action == "none" and d.reason.startswith("not flaky")


def test_infrastructure_failed_runs_do_not_count_towards_entry() -> None:
    # the two recent flaky verdicts on c2 came from runs where 30% of all tests failed (other tests each time:
    # the same tests failing in both runs would be broken tests, not a mass failure)
    hist = flaky_history()
    others = []
    for run, days, first in (("bad1", 3, 0), ("bad2", 1, 3)):
        hist = [hv("flaky", days, "c2", run=run) if v.at == NOW - timedelta(days=days) else v for v in hist]
        others += [
            HistoricVerdict(
                f"t{i}", "fail" if first <= i < first + 3 else "pass", NOW - timedelta(days=days), "c2", run
            )
            for i in range(10)
        ]
    assert decide_quarantine(T, hist, now=NOW).action == "enter"  # alone, the runs look fine
    d = decide_quarantine(T, hist + others, now=NOW)
    assert d.action == "none" and "1 flaky verdicts on 1 commits" in d.reason


def _release_history(passes: int, last_bad_days: float) -> list[HistoricVerdict]:
    return [hv("flaky", last_bad_days, "c5")] + [
        hv("pass", last_bad_days * (1 - (i + 1) / (passes + 1)), "c6") for i in range(passes)
    ]


def test_release_after_30_consecutive_passes_and_7_clean_days() -> None:
    entry = QuarantineEntry(T, NOW - timedelta(days=20), "flaky", by="rule")
    d = decide_quarantine(T, _release_history(30, 8), now=NOW, current=entry)
    assert d.action == "release" and "30/30 consecutive passes" in d.reason
    d = decide_quarantine(T, _release_history(29, 8), now=NOW, current=entry)
    assert d.action == "keep" and "29/30 consecutive passes" in d.reason and d.entry is entry
    d = decide_quarantine(T, _release_history(40, 6), now=NOW, current=entry)
    assert d.action == "keep" and "6.0/7 clean days" in d.reason
    # the clean days count from the quarantine's start when that is later than the last failure
    young = QuarantineEntry(T, NOW - timedelta(days=2), "flaky", by="rule")
    assert decide_quarantine(T, _release_history(40, 9), now=NOW, current=young).action == "keep"


def test_by_hand_needs_a_reason_and_a_name() -> None:
    e = manual_quarantine(T, reason="HCCL timeouts on 910B, tracked in #812", by="alice", now=NOW)
    assert (e.by, e.reason, e.since) == ("alice", "HCCL timeouts on 910B, tracked in #812", NOW)
    assert e.to_dict()["since"] == NOW.isoformat()
    with pytest.raises(ValueError, match="reason"):
        manual_quarantine(T, reason="  ", by="alice", now=NOW)
    with pytest.raises(ValueError, match="name"):
        manual_quarantine(T, reason="x", by="rule", now=NOW)
    # a test that fails every attempt can still be muted by hand, and the release rule applies to it too
    d = decide_quarantine(T, [hv("fail", 1)], now=NOW, current=e)
    assert d.action == "keep"
