"""`guardrail noise` on the real vLLM-Omni corpus (issue 12, point 8): quiet latency series are not `noisy` at
the nightly lane's thresholds, a constant memory series is not bimodal, a real step is not outliers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from guardrail.analysis.noise import noise_report
from guardrail.policy import load_lane_policy
from guardrail.rerun_policy.yaml_file import load_rerun_policy

REPO = Path(__file__).resolve().parents[1]
TP4 = "H200/test_hunyuan_image_tp4/1024x1024_steps8"


def _corpus_series(corpus: Path) -> dict:
    spec = importlib.util.spec_from_file_location("corpus_series_for_noise", REPO / "bench" / "corpus_series.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["corpus_series_for_noise"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return {"/".join(s.key): s for s in mod.load_series(corpus / "vllm-omni-nightly", min_points=8)}


def _nightly_report(series):
    policy = load_lane_policy("nightly")
    return noise_report(
        [[[v]] for v in series.values],
        summary=True,
        threshold=policy.threshold(series.metric),
        extra_repeats=load_rerun_policy().performance.max_extra_repeats,
        baseline_runs=policy.baseline.window,
        alpha=policy.alpha,
    )


def _night_to_night_cv(values) -> float:
    """Robust CV from successive log differences (one step moves one difference only)."""
    d = np.diff(np.log(np.asarray(values, float)))
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))


def test_quiet_latency_series_are_not_noisy(corpus: Path):
    """Every latency_mean series whose night-to-night CV is under the 1% threshold is judgeable (12 of 17);
    the five that are not (CV 1.2-4.2%: cache-dit, one vae_patch4) cannot be: 11 repeats against 10 baseline
    nights resolve 1% only below about 1.5% CV."""
    latency = [s for s in _corpus_series(corpus).values() if s.metric == "latency_mean"]
    assert len(latency) == 17
    rows = [(_night_to_night_cv(s.values), _nightly_report(s)) for s in latency]
    assert all(not r.noisy and r.threshold == 0.01 for cv, r in rows if cv < 0.01)
    noisy = [(cv, r) for cv, r in rows if r.noisy]
    assert len(noisy) == 5
    assert all(cv > 0.01 and "11 repeats cannot resolve 1%" in r.reason for cv, r in noisy)


def test_constant_memory_series_are_not_bimodal_and_have_no_outliers(corpus: Path):
    flat = [
        s
        for s in _corpus_series(corpus).values()
        if "memory" in s.metric and np.ptp(s.values) <= 1e-3 * np.median(s.values)
    ]
    assert len(flat) >= 10
    for s in flat:
        r = _nightly_report(s)
        assert not r.bimodal and r.outlier_rate == 0.0 and not r.noisy, s.key


def test_a_real_step_is_not_counted_as_outliers(corpus: Path):
    """The TP4 speed-up of 06-15 (-46% latency, +10% memory): a step, not 26% outliers."""
    series = _corpus_series(corpus)
    for metric in ("latency_mean", "throughput_qps", "peak_memory_mb_max"):
        r = _nightly_report(series[f"{TP4}/{metric}"])
        assert r.outlier_rate <= 1 / 19 and "outliers" not in r.reason and not r.bimodal, (metric, r.reason)
        assert not r.noisy, (metric, r.reason)
        assert r.between_cv < 0.015, metric  # the step is fitted, not counted as night-to-night noise
