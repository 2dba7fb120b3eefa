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
