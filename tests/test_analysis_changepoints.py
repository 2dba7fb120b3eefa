"""Change points at known indices, no change points in stationary noise, speed on 10,000 points."""

from __future__ import annotations

import time

import numpy as np
import pytest

from guardrail.analysis.changepoints import detect_change_points


def test_single_step_found_at_its_index():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(100, 0.5, 120), rng.normal(104, 0.5, 80)]
    cps = detect_change_points(x)
    assert [c.index for c in cps] == [120]
    c = cps[0]
    assert c.before == pytest.approx(100, abs=0.3) and c.after == pytest.approx(104, abs=0.3)
    assert c.change == pytest.approx(0.04, abs=0.005)
    assert c.p_value < 1e-10


def test_several_steps_found_within_one_index():
    rng = np.random.default_rng(1)
    levels = [(100, 60), (103, 70), (99, 50), (106, 40)]
    x = np.concatenate([rng.normal(m, 0.6, n) for m, n in levels])
    idx = [c.index for c in detect_change_points(x)]
    assert len(idx) == 3
    for got, want in zip(idx, [60, 130, 180], strict=True):
        assert abs(got - want) <= 1


def test_stationary_noise_has_no_change_points():
    rng = np.random.default_rng(2)
    false = sum(len(detect_change_points(rng.normal(100, 1.0, 200))) for _ in range(20))
    assert false <= 1


def test_min_magnitude_filters_small_significant_steps():
    rng = np.random.default_rng(3)
    x = np.r_[rng.normal(100, 0.05, 100), rng.normal(100.5, 0.05, 100)]  # 0.5%, very significant
    assert [c.index for c in detect_change_points(x, min_magnitude=0.0)] == [100]
    assert detect_change_points(x, min_magnitude=0.01) == []


def test_newest_two_points_suffice_for_a_large_step_but_one_outlier_does_not():
    rng = np.random.default_rng(4)
    base = rng.normal(100, 0.5, 60)
    assert [c.index for c in detect_change_points(np.r_[base, [110.0, 110.4]])] == [60]
    assert detect_change_points(np.r_[base, [130.0]]) == []
    assert detect_change_points(np.r_[base[:30], [130.0], base[30:]]) == []


def test_short_and_constant_series():
    assert detect_change_points([1.0, 2.0, 3.0]) == []
    assert detect_change_points([5.0] * 100) == []
    assert [c.index for c in detect_change_points([5.0] * 50 + [6.0] * 50)] == [50]


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        detect_change_points([1.0, float("nan"), 1.0, 1.0])
    with pytest.raises(ValueError):
        detect_change_points([1.0] * 10, window=2)


def test_ten_thousand_points_in_under_a_second():
    rng = np.random.default_rng(5)
    x = rng.normal(100, 1.0, 10_000)
    x[4000:] *= 1.05
    t0 = time.perf_counter()
    cps = detect_change_points(x)
    elapsed = time.perf_counter() - t0
    assert any(abs(c.index - 4000) <= 1 for c in cps)
    assert elapsed < 2.0  # target < 1 s on the CI machine; bench/eval_verdicts.py records the figure
