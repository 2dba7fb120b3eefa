"""Sample-size planner: monotonicity and the closed form."""

from __future__ import annotations

import math

from scipy.stats import norm

from guardrail.analysis.planner import REPEATS_UNREACHABLE, repeats_needed, se_budget


def test_closed_form():
    k = repeats_needed(0.01, 0.0, 1, 0.01, alpha=0.05, power=0.8)
    expected = math.ceil(0.01**2 / (math.log1p(0.01) / (norm.ppf(0.975) + norm.ppf(0.8))) ** 2)
    assert k == expected


def test_more_noise_needs_more_repeats():
    ks = [repeats_needed(b, 0.005, 20, 0.01) for b in (0.001, 0.005, 0.01, 0.02)]
    assert ks == sorted(ks) and ks[0] < ks[-1]


def test_bigger_target_needs_fewer_repeats():
    ks = [repeats_needed(0.01, 0.005, 20, t) for t in (0.005, 0.01, 0.02, 0.05)]
    assert ks == sorted(ks, reverse=True) and ks[0] > ks[-1]


def test_more_power_and_smaller_alpha_need_more_repeats():
    assert repeats_needed(0.01, 0, 1, 0.01, power=0.95) > repeats_needed(0.01, 0, 1, 0.01, power=0.8)
    assert repeats_needed(0.01, 0, 1, 0.01, alpha=0.001) > repeats_needed(0.01, 0, 1, 0.01, alpha=0.05)


def test_more_steps_help_only_the_within_part():
    few = repeats_needed(0.005, 0.02, 5, 0.01)
    many = repeats_needed(0.005, 0.02, 500, 0.01)
    assert many < few
    assert many == repeats_needed(0.005, 0.0, 1, 0.01) or many == repeats_needed(0.005, 0.0, 1, 0.01) + 1


def test_fixed_variance_beyond_budget_is_unreachable():
    budget = se_budget(0.01)
    assert repeats_needed(0.005, 0, 1, 0.01, fixed_var=(budget * 1.01) ** 2) == REPEATS_UNREACHABLE


def test_threshold_tightens_the_budget():
    assert se_budget(0.012, threshold=0.01) < se_budget(0.012)
    assert se_budget(0.01, threshold=0.01) == 0.0
