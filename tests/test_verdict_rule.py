"""The one verdict rule on numbers alone (issue 12, points 4 and 5): drift, A/A quietness, detection, FDR texts."""

from __future__ import annotations

import numpy as np

from guardrail.analysis.compare import compare_metric
from guardrail.analysis.judgement import SeriesInput, judge
from guardrail.verdicts import BaselineInfo


class Rules:
    fdr = 0.05
    alpha = 0.05
    max_looks = 3

    def threshold(self, metric: str) -> float:
        return 0.01


def _procs(rng, level: float, repeats: int, between=0.005, within=0.005, steps=20) -> list[list[float]]:
    return (
        100.0 * np.exp(level + rng.normal(0, between, (repeats, 1)) + rng.normal(0, within, (repeats, steps)))
    ).tolist()


def _history(rng, runs=30, drift=0.0) -> list[list[list[float]]]:
    """Newest first, as the check passes it; the newest run at level 0, older ones `drift` lower per run."""
    return [_procs(rng, -drift * age, 2) for age in range(runs)]


def test_a_drifting_history_is_judged_at_its_newest_level_not_at_its_mean():
    rng = np.random.default_rng(11)
    plain, trended, alarms = [], [], 0
    for _ in range(150):
        hist = _history(rng, drift=0.001)
        cand = _procs(rng, 0.0, 2)
        plain.append(compare_metric(hist[:10], cand, history=hist).change)
        c = compare_metric(hist[:10], cand, history=hist, trend=True)
        trended.append(c.change)
        alarms += c.verdict in ("regression", "improvement")
    assert np.mean(plain) > 0.003  # the window's mean sits ~0.45% behind main's head
    assert abs(np.mean(trended)) < 0.001
    assert alarms / 150 <= 0.02


def test_the_trend_costs_little_precision_on_a_flat_history():
    rng = np.random.default_rng(12)
    hist = _history(rng)
    cand = _procs(rng, 0.0, 2)
    plain = compare_metric(hist[:10], cand, history=hist)
    trended = compare_metric(hist[:10], cand, history=hist, trend=True)
    assert trended.details["baseline_trend"] and not plain.details["baseline_trend"]
    assert trended.details["se"] < 1.1 * plain.details["se"]


def _check(rng, effect: float, repeats: int) -> list[str]:
    inputs = []
    for i in range(30):
        hist = _history(rng)
        level = float(np.log1p(effect)) if i == 0 else 0.0
        inputs.append(
            SeriesInput(
                workload=f"w{i // 5}",
                metric=f"m{i % 5}",
                hardware="H",
                unit="ms",
                direction="lower_is_better",
                candidate=_procs(rng, level, repeats),
                baseline=hist[:10],
                history=hist,
            )  # fmt: skip
        )
    doc = judge(inputs, Rules(), baseline=BaselineInfo(source="numbers"), max_extra_repeats=10)
    return [v.verdict for v in doc.verdicts]


def test_unchanged_checks_of_thirty_metrics_are_mostly_all_no_change():
    rng = np.random.default_rng(13)
    quiet = sum(all(v in ("no_change", "noisy") for v in _check(rng, 0.0, 3)) for _ in range(40))
    assert quiet >= 36  # the harness measures ~98% over 300 checks


def test_a_two_percent_regression_among_thirty_metrics_is_acted_on_at_the_first_look():
    rng = np.random.default_rng(14)
    acted = sum(_check(rng, 0.02, 3)[0] in ("regression", "inconclusive") for _ in range(40))
    assert acted >= 38  # a regression, or a discovery asking for its confirming repeats


def test_a_resolved_change_that_is_no_discovery_says_so_and_is_no_change():
    rng = np.random.default_rng(15)
    for _ in range(200):
        verdicts = None
        inputs = []
        for i in range(30):
            hist = _history(rng)
            inputs.append(
                SeriesInput(
                    workload="w",
                    metric=f"m{i}",
                    hardware="H",
                    unit="ms",
                    direction="lower_is_better",
                    candidate=_procs(rng, 0.0, 3),
                    baseline=hist[:10],
                    history=hist,
                )  # fmt: skip
            )
        doc = judge(inputs, Rules(), baseline=BaselineInfo(source="numbers"))
        verdicts = [v for v in doc.verdicts if "show by chance" in v.explanation]
        if verdicts:
            v = verdicts[0]
            assert v.verdict == "no_change"
            assert (
                "within what 30 metrics show by chance" in v.explanation and "not counted as a change" in v.explanation
            )
            return
    raise AssertionError("no non-discovered resolved change in 200 unchanged checks")
