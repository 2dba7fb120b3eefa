"""Noise report: variance components recovered, bimodality, outliers, noisy flag, renderers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from guardrail.analysis.noise import bimodality_coefficient, noise_json, noise_report, render_noise_table


def _runs(rng, runs=20, repeats=2, steps=50, between=0.005, within=0.005):
    return [
        [list(100 * np.exp(rng.normal(0, between) + rng.normal(0, within, steps))) for _ in range(repeats)]
        for _ in range(runs)
    ]


def test_recovers_within_and_between_cv():
    rng = np.random.default_rng(0)
    r = noise_report(_runs(rng, runs=40, between=0.01, within=0.004))
    assert r.within_cv == pytest.approx(0.004, rel=0.1)
    assert r.between_cv == pytest.approx(0.01, rel=0.35)
    assert not r.noisy and r.reason == "stable"
    assert r.runs == 40 and r.repeats == 80 and r.samples_per_repeat == 50


def test_high_between_noise_is_noisy_with_repeats_needed():
    rng = np.random.default_rng(1)
    r = noise_report(_runs(rng, between=0.04))
    assert r.noisy and r.repeats_needed > 8
    assert "repeats" in r.reason


def test_bimodal_steps_are_flagged():
    rng = np.random.default_rng(2)
    runs = [[list(np.where(rng.random(50) < 0.5, 100.0, 130.0) * np.exp(rng.normal(0, 0.002, 50)))] for _ in range(10)]
    r = noise_report(runs)
    assert r.bimodal and r.noisy


def test_outlier_rate():
    rng = np.random.default_rng(3)
    runs = _runs(rng, runs=10, repeats=1, steps=100)
    for run in runs:
        run[0][:10] = [500.0] * 10  # 10% wild steps
    r = noise_report(runs)
    assert r.outlier_rate == pytest.approx(0.1, abs=0.01)
    assert r.noisy


def test_bimodality_coefficient_reference_values():
    rng = np.random.default_rng(4)
    assert bimodality_coefficient(rng.normal(size=5000)) == pytest.approx(1 / 3, abs=0.03)
    assert bimodality_coefficient(rng.uniform(size=5000)) == pytest.approx(5 / 9, abs=0.03)
    assert bimodality_coefficient(np.array([1.0, 2.0])) is None


def test_summary_series_has_no_within_cv():
    rng = np.random.default_rng(5)
    runs = [[[float(v)]] for v in 10 * np.exp(rng.normal(0, 0.02, 20))]
    r = noise_report(runs, summary=True)
    assert r.within_cv is None
    assert r.between_cv == pytest.approx(0.02, rel=0.4)


def test_renderers():
    rng = np.random.default_rng(6)
    rows = {"wan22/denoise_step_latency/H100": noise_report(_runs(rng))}
    table = render_noise_table(rows)
    assert "wan22/denoise_step_latency/H100" in table and "between CV" in table
    doc = json.loads(json.dumps(noise_json(rows)))
    assert doc["schema"] == "guardrail.noise/v1"
    assert doc["series"][0]["series"] == "wan22/denoise_step_latency/H100"
    assert {"within_cv", "between_cv", "bimodal", "outlier_rate", "noisy"} <= set(doc["series"][0])


def test_short_history_is_not_called_noisy():
    rng = np.random.default_rng(7)
    r = noise_report(_runs(rng, runs=2, repeats=1))
    assert r.prior_used and not r.noisy
    assert "short history" in r.reason


def test_noisy_means_the_lane_cannot_resolve_the_threshold():
    rng = np.random.default_rng(8)
    runs = [[[float(v)]] for v in 100 * np.exp(rng.normal(0, 0.008, 20))]  # one nightly value, 0.8% CV
    at_1 = noise_report(runs, summary=True, threshold=0.01)
    assert not at_1.noisy and at_1.repeats_needed <= at_1.max_repeats == 11
    assert noise_report(runs, summary=True, threshold=0.01, extra_repeats=0).noisy  # one nightly alone cannot
    wide = [[[float(v)]] for v in 100 * np.exp(rng.normal(0, 0.03, 20))]
    r = noise_report(wide, summary=True, threshold=0.01)
    assert r.noisy and "11 repeats cannot resolve 1%" in r.reason
    assert not noise_report(wide, summary=True, threshold=0.05).noisy


def test_constant_series_is_neither_bimodal_nor_outliers():
    rng = np.random.default_rng(9)
    # peak memory at 40960 MB with floating-point artifacts in the last digits
    runs = [[list(40960.0 * (1 + rng.choice([0.0, 1e-12], 10))) for _ in range(3)] for _ in range(20)]
    r = noise_report(runs)
    assert r.bimodality is None and not r.bimodal and r.outlier_rate == 0.0
    assert not r.noisy


def test_a_real_step_is_neither_outliers_nor_bimodal():
    rng = np.random.default_rng(10)
    values = np.r_[np.full(5, 186.0), np.full(14, 100.0)] * np.exp(rng.normal(0, 0.005, 19))
    r = noise_report([[[float(v)]] for v in values], summary=True)
    assert r.outlier_rate == 0.0 and not r.bimodal
    assert not r.noisy, r.reason
    memory = noise_report([[[v]] for v in [35100.0] * 5 + [40960.0] * 14], summary=True, threshold=0.02)
    assert memory.between_cv < 1e-3 and memory.between_estimate.startswith("run levels around their segments")
    assert not memory.noisy, memory.reason  # a fitted step is a change, not noise
    sampled = [[list(lvl * np.exp(rng.normal(0, 0.004, 30)))] for lvl in values]
    s = noise_report(sampled)
    assert s.outlier_rate < 0.01 and not s.bimodal


def test_between_cv_is_not_zeroed_by_a_step_pattern_shared_by_every_process():
    rng = np.random.default_rng(11)
    pattern = rng.normal(0, 0.02, 40)  # per-step shape every process repeats (warm-up, schedule)
    runs = [
        [list(100 * np.exp(pattern + rng.normal(0, 0.001) + rng.normal(0, 0.0005, 40))) for _ in range(3)]
        for _ in range(20)
    ]
    r = noise_report(runs)
    assert r.between_cv == pytest.approx(0.001, rel=0.35)
    assert r.between_estimate == "process means less random step noise"
