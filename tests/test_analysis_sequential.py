"""Sequential confirmation: alpha spending sums to alpha and holds under optional stopping."""

from __future__ import annotations

import numpy as np
import pytest

from guardrail.analysis.sequential import look_alpha, obrien_fleming_spent, sequential_decision


def test_spending_sums_to_alpha_and_grows():
    levels = [look_alpha(k, 4, 0.05) for k in range(1, 5)]
    assert sum(levels) == pytest.approx(0.05)
    assert levels == sorted(levels)
    assert obrien_fleming_spent(1.0, 0.05) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        look_alpha(5, 4, 0.05)


def _run(rng, level, repeats=2):
    return [list(level * np.exp(rng.normal(0, 0.005) + rng.normal(0, 0.005, 10))) for _ in range(repeats)]


def test_optional_stopping_keeps_false_alarms_below_alpha():
    rng = np.random.default_rng(0)
    trials, alarms = 300, 0
    for _ in range(trials):
        hist = [_run(rng, 100.0) for _ in range(10)]
        cand: list = []
        for look in range(1, 4):
            cand += _run(rng, 100.0)
            d = sequential_decision(hist, cand, look, 3, threshold=0.003)  # small threshold: p decides
            if d.action == "stop":
                alarms += d.verdict in ("regression", "improvement")
                break
    assert alarms / trials <= 0.05


def test_real_regression_is_confirmed_and_last_look_is_final():
    rng = np.random.default_rng(1)
    hist = [_run(rng, 100.0) for _ in range(10)]
    cand = _run(rng, 103.0)
    d = sequential_decision(hist, cand, 1, 3)
    assert d.look_alpha < 0.01
    while d.action == "continue":
        cand += _run(rng, 103.0)
        d = sequential_decision(hist, cand, d.look_index + 1, 3)
    assert d.verdict == "regression"
    assert "alpha-spending" in d.comparison.explanation
    last = sequential_decision(hist, _run(rng, 100.4), 3, 3)
    assert last.action == "stop"


def test_confirm_at_look_settles_no_change_at_any_look_and_asks_to_confirm_a_first_seen_regression():
    from guardrail.analysis.compare import compare_metric
    from guardrail.analysis.sequential import confirm_at_look

    rng = np.random.default_rng(4)
    hist = [_run(rng, 100.0) for _ in range(10)]
    same = _run(rng, 100.0, repeats=3)
    assert compare_metric(hist, same, threshold=0.02).verdict == "no_change"
    # At look 1's tiny level the interval is wider than +-2%, but the estimate is inside and not significant: no
    # change, final at the first look (stopping for no_change spends no error budget).
    early = sequential_decision(hist, same, 1, 3, threshold=0.02)
    assert (early.action, early.verdict) == ("stop", "no_change")
    settled = confirm_at_look(hist, same, 1, 3, threshold=0.02)
    assert settled.verdict == "no_change" and settled.explanation.endswith("(look 1 of 3).")
    slower = _run(rng, 101.5)
    assert compare_metric(hist, slower).verdict == "regression"
    first = confirm_at_look(hist, slower, 1, 3)
    assert first.verdict == "inconclusive" and "must be confirmed (look 1 of 3)" in first.explanation
    assert first.repeats_needed is not None and first.repeats_needed >= 2


def test_unresolvable_looks_never_print_the_sentinel_and_count_extra_repeats():
    """An inconclusive look that no number of repeats resolves asks for no rerun (and never prints the planner's
    unreachable sentinel); one that can be resolved asks for the repeats still to run, with correct plurals."""
    from guardrail.analysis.planner import REPEATS_UNREACHABLE
    from guardrail.analysis.sequential import confirm_at_look

    rng = np.random.default_rng(3)
    seen_rerun = False
    for _ in range(400):
        cv = rng.choice([0.002, 0.01, 0.03])
        hist = [[list(100 * (1 + rng.normal(0, cv, 1)) + rng.normal(0, 0.1, 5))] for _ in range(rng.integers(2, 8))]
        level = 100 * (1 + rng.normal(0.01, 0.01))
        cand = [list(level + rng.normal(0, cv * 100, 5)) for _ in range(2)]
        c = confirm_at_look(hist, cand, 1, 3)
        assert str(REPEATS_UNREACHABLE) not in c.explanation
        assert "1 more repeats" not in c.explanation
        if c.verdict == "inconclusive" and "rerun with" in c.explanation:
            seen_rerun = True
            extra = c.repeats_needed - c.candidate_repeats
            assert extra >= 1 and f"rerun with {extra} more repeat" in c.explanation
        if c.verdict == "inconclusive" and (c.repeats_needed or 0) >= REPEATS_UNREACHABLE:
            assert "rerun" not in c.explanation
    assert seen_rerun
