"""compare_metric on numbers alone: A/A, known shifts, directions, missing, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from guardrail.analysis.compare import compare_metric
from guardrail.analysis.planner import REPEATS_UNREACHABLE


def _run(rng, level, repeats=2, steps=20, between=0.005, within=0.005):
    return [list(level * np.exp(rng.normal(0, between) + rng.normal(0, within, steps))) for _ in range(repeats)]


def _history(rng, runs=10, **kw):
    return [_run(rng, 100.0, **kw) for _ in range(runs)]


def test_empty_baseline_is_missing_and_fails_closed():
    rng = np.random.default_rng(0)
    c = compare_metric([], _run(rng, 100.0))
    assert c.verdict == "missing"
    assert c.change is None and c.p_value is None
    assert "baseline" in c.explanation.lower()


def test_empty_candidate_is_missing():
    rng = np.random.default_rng(0)
    assert compare_metric(_history(rng), []).verdict == "missing"


def test_aa_false_positive_rate_is_below_one_percent():
    rng = np.random.default_rng(1)
    flagged = 0
    trials = 600
    for _ in range(trials):
        c = compare_metric(_history(rng), _run(rng, 100.0))
        flagged += c.verdict in ("regression", "improvement")
    assert flagged / trials <= 0.01


@pytest.mark.parametrize(("shift", "min_rate"), [(0.02, 0.95), (0.05, 0.99)])
def test_known_shift_detected_at_target_power(shift, min_rate):
    rng = np.random.default_rng(2)
    trials = 300
    hits = sum(
        compare_metric(_history(rng), _run(rng, 100.0 * (1 + shift))).verdict == "regression" for _ in range(trials)
    )
    assert hits / trials >= min_rate


def test_change_ci_and_p_value_are_consistent_with_the_shift():
    rng = np.random.default_rng(3)
    c = compare_metric(_history(rng), _run(rng, 110.0))
    assert c.verdict == "regression"
    assert c.ci[0] < c.change < c.ci[1]
    assert 0.08 < c.change < 0.12
    assert c.p_value < 1e-6
    assert c.baseline_runs == 10 and c.candidate_repeats == 2
    assert "worse" in c.explanation and "%" in c.explanation


def test_higher_is_better_flips_the_direction():
    rng = np.random.default_rng(4)
    hist = _history(rng)
    drop = compare_metric(hist, _run(rng, 90.0), direction="higher_is_better")
    rise = compare_metric(hist, _run(rng, 110.0), direction="higher_is_better")
    assert drop.verdict == "regression" and drop.change < 0
    assert rise.verdict == "improvement" and rise.p_value > 0.99


def test_exact_equality_is_no_change():
    base = [[[11776.0]], [[11776.0]], [[11776.0]]]
    c = compare_metric(base, [[11776.0], [11776.0]], summary=True)
    assert c.verdict == "no_change"
    assert c.change == 0.0


def test_short_history_uses_the_conservative_prior():
    rng = np.random.default_rng(5)
    c = compare_metric(_history(rng, runs=2), _run(rng, 100.5))
    assert c.details["prior_used"] is True
    assert c.verdict in ("inconclusive", "noisy")
    assert c.repeats_needed is not None


def test_noisy_series_says_how_many_repeats_are_needed():
    rng = np.random.default_rng(6)
    hist = _history(rng, between=0.03)
    c = compare_metric(hist, _run(rng, 100.0, between=0.03))
    assert c.verdict == "noisy"
    assert c.repeats_needed is not None and c.repeats_needed > 2
    assert "repeats" in c.explanation


def test_one_bad_night_in_history_does_not_blind_the_comparison():
    rng = np.random.default_rng(7)
    hist = _history(rng, runs=12)
    hist[5] = [[v * 1.5 for v in rep] for rep in hist[5]]  # one wild night
    c = compare_metric(hist, _run(rng, 103.0))
    assert c.verdict == "regression"
    assert c.details["baseline_runs_dropped"] == 1


def test_summary_values_one_per_repeat():
    rng = np.random.default_rng(8)
    hist = [[[float(v)]] for v in 10.0 * np.exp(rng.normal(0, 0.01, 15))]
    same = compare_metric(hist, [[10.0]], summary=True, threshold=0.05)
    worse = compare_metric(hist, [[13.0]], summary=True, threshold=0.05)
    assert same.verdict in ("no_change", "inconclusive")
    assert worse.verdict == "regression"
    assert same.details["within_cv"] is None


def test_deterministic():
    rng = np.random.default_rng(9)
    hist, cand = _history(rng), _run(rng, 101.0)
    assert compare_metric(hist, cand) == compare_metric(hist, cand)


def test_rejects_unknown_direction():
    with pytest.raises(ValueError):
        compare_metric([[[1.0]]], [[1.0]], direction="sideways")


def test_non_positive_values_fall_back_to_a_linear_scale():
    c = compare_metric([[[0.0, 1.0]], [[0.0, 1.0]], [[0.0, 1.0]]], [[0.0, 1.0]])
    assert c.details["scale"] == "linear"
    assert c.change == pytest.approx(0.0)


def test_one_wild_repeat_among_four_does_not_carry_a_regression():
    rng = np.random.default_rng(10)
    hist = _history(rng, runs=12)
    cand = _run(rng, 100.0, repeats=4)
    cand[3] = [v * 1.08 for v in cand[3]]  # one repeat 8% slow (a noisy neighbour), three normal
    c = compare_metric(hist, cand)
    assert c.verdict != "regression"
    assert c.change < 0.01  # the plain mean would say about +2%


def _two_level(spread: float, runs: int = 10) -> list[list[list[float]]]:
    """Baseline runs of two summary repeats `spread` apart: the repeat noise is known, run to run there is none."""
    return [[[100.0], [100.0 + spread]] for _ in range(runs)]


def test_texts_count_the_repeats_still_to_run_with_correct_plurals():
    wide = compare_metric(_two_level(0.7), [[101.4]], summary=True)
    assert (wide.verdict, wide.repeats_needed) == ("inconclusive", 3)
    assert wide.explanation == (
        "+1.0% (95% CI -0.1% to +2.2%): too wide to judge with 1 repeat; 2 more repeats (3 in all) would resolve 1%."
    )
    one = compare_metric(_two_level(0.6), [[101.3]], summary=True)
    assert one.explanation == (
        "+1.0% (95% CI +0.0% to +2.0%) straddles the 1% threshold; 1 more repeat (2 in all) would resolve 1%."
    )
    two = compare_metric(_two_level(0.8), [[101.3], [101.5]], summary=True)
    assert two.explanation.endswith("; 1 more repeat (3 in all) would resolve 1%.")


def test_estimate_inside_the_threshold_without_significance_is_no_change_and_asks_for_nothing():
    # The interval is wider than +-1%, but the estimate is inside it and nothing points to a change: no rerun.
    c = compare_metric(_two_level(1.0), [[101.0], [101.5]], summary=True)
    assert (c.verdict, c.repeats_needed) == ("no_change", None)
    assert c.explanation == "+0.7% (95% CI -0.4% to +1.9%): no significant change, inside the ±1% threshold."
    # The same estimate where the lane's most repeats cannot resolve 1% is noisy, not a silent pass.
    capped = compare_metric(_two_level(1.0), [[101.0], [101.5]], summary=True, max_repeats=1)
    assert capped.verdict == "noisy"


def test_texts_never_ask_for_repeats_that_already_ran():
    c = compare_metric(_two_level(0.6), [[100.9], [101.6]], summary=True)
    assert (c.verdict, c.repeats_needed, c.candidate_repeats) == ("inconclusive", 2, 2)
    assert c.explanation == "+0.9% (95% CI +0.2% to +1.7%) straddles the 1% threshold."


def test_texts_carry_no_sentinel_when_no_number_of_repeats_resolves_the_threshold():
    c = compare_metric([[[100.0 + (3 if i % 2 else 0)]] for i in range(10)], [[101.0]], summary=True)
    assert c.verdict == "noisy" and c.repeats_needed == REPEATS_UNREACHABLE
    assert c.explanation == (
        "Too noisy to judge with 1 repeat (-0.5%, 95% CI -5.8% to +5.2%); "
        "no number of repeats resolves 1%: the run-to-run noise is too high."
    )
    assert str(REPEATS_UNREACHABLE) not in c.explanation


def test_texts_name_one_baseline_run_in_the_singular():
    c = compare_metric([[[100.0]]], [[130.0], [131.0]], summary=True)
    assert c.explanation == "+30.5% (worse; 95% CI +22.6% to +39.0%), beyond the 1% threshold (1 baseline run)."
    prior = compare_metric([[[100.0]], [[100.5]]], [[101.0], [101.2]], summary=True)
    assert prior.explanation.endswith(
        "; only 2 baseline runs: a conservative 2% noise prior applies until more baseline runs are recorded."
    )


def test_a_cold_start_reference_is_called_by_its_name():
    from guardrail.analysis.compare import compare_metric

    c = compare_metric([[[1000.0]]], [[1100.0, 1101.0], [1099.0, 1100.5]], summary=True, reference=True)
    assert "only the pinned reference value" in c.explanation and "1 baseline run" not in c.explanation
