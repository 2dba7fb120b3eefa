"""Benjamini-Hochberg across a check: q-values, downgrades, expected false alarms."""

from __future__ import annotations

import numpy as np
import pytest

from guardrail.analysis.compare import MetricComparison, compare_metric
from guardrail.analysis.fdr import bh_cutoff, bh_qvalues, judge_check


def _comp(verdict: str, p: float | None) -> MetricComparison:
    return MetricComparison(verdict, 0.05, (0.02, 0.08), p, 10, 1.0, 2, 1.05, 0.01, "x.")


def test_bh_qvalues_match_hand_computation():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005, 0.01, 0.03, 0.04 -> *4/rank: 0.02, 0.02, 0.04, 0.04 (monotone already)
    assert bh_qvalues(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])


def test_bh_qvalues_are_monotone_and_capped():
    q = bh_qvalues([0.9, 0.8, 0.001])
    assert q.max() <= 1.0
    assert q[2] == pytest.approx(0.003)
    assert q[0] == pytest.approx(0.9) and q[1] == pytest.approx(0.9)


def test_bh_cutoff():
    assert bh_cutoff([0.001, 0.02, 0.5], 0.05) == pytest.approx(0.05 * 2 / 3)
    assert bh_cutoff([0.5, 0.6], 0.05) == pytest.approx(0.025)


def test_weak_regression_among_many_is_downgraded_and_strong_one_kept():
    # one-sided p 0.02 -> two-sided 0.04; with 30 metrics its q is far above 0.05
    comps = [_comp("regression", 1e-8), _comp("regression", 0.02)] + [_comp("no_change", 0.5)] * 28
    j = judge_check(comps, fdr=0.05)
    assert j.comparisons[0].verdict == "regression"
    assert j.comparisons[1].verdict == "inconclusive"
    assert "false-discovery" in j.comparisons[1].explanation
    assert all(c.q_value is not None for c in j.comparisons)
    assert j.method == "benjamini-hochberg"
    assert j.expected_false_alarms == pytest.approx(30 * 0.05 / 30)


def test_missing_is_left_alone_and_never_upgraded():
    comps = [_comp("missing", None), _comp("inconclusive", 1e-9)]
    j = judge_check(comps)
    assert j.comparisons[0].verdict == "missing" and j.comparisons[0].q_value is None
    assert j.comparisons[1].verdict == "inconclusive"
    assert [c.verdict for c in j.comparisons].count("missing") == 1  # (was CheckJudgement.summary, dead code)


def test_aa_checks_of_30_metrics_rarely_raise_any_alarm():
    rng = np.random.default_rng(11)

    def run(level):
        return [list(level * np.exp(rng.normal(0, 0.005) + rng.normal(0, 0.005, 10))) for _ in range(2)]

    checks, any_alarm = 60, 0
    for _ in range(checks):
        comps = [compare_metric([run(100.0) for _ in range(10)], run(100.0)) for _ in range(30)]
        j = judge_check(comps)
        any_alarm += any(c.verdict in ("regression", "improvement") for c in j.comparisons)
    assert any_alarm / checks <= 0.05
