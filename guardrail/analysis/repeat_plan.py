"""Repeats to start a run with: enough fresh processes that the check resolves its threshold at once and finds
a real change of twice the threshold.

Two standard-error budgets (log scale), the smaller one binding:

* resolve: the check resolves a series' threshold when its interval is narrower than the threshold on each side,
  z[1 - alpha/2] * se <= log(1 + threshold). A resolved series whose estimate is no discovery is `no_change` (the
  false-discovery step folds it), so an unchanged candidate is quiet; an unresolved one whose estimate leaves the
  threshold is `inconclusive` and asks for a rerun.
* detect: a change of DETECT_FACTOR x threshold on one of the check's m gating series is a discovery with
  DETECT_POWER when (z[1 - fdr/(2m)] + z[power]) * se <= log(1 + 2 threshold).

The plan is the smallest `k` between the lane's repeats and its maximum whose standard error meets both, the
standard error at `k` candidate repeats taken from the same two-level noise model and baseline level the
comparison uses (compare.variance_parts), measured on the series' own history.

Where no `k` up to the maximum resolves it (the run-to-run part of the noise dominates), the plan stops where one
more repeat would narrow the interval by less than FLOOR_MARGIN of what infinitely many would leave: more repeats
would spend device time for nothing. A history shorter than MIN_PLAN_RUNS runs says too little about the noise to
plan from: the lane's repeats.

Why: bimodal processes (GPU/NPU clock states, half of them 1.5% slower) give a standard error of 0.6-0.7% at
2 repeats, so a 1% threshold is not resolved and about one A/A metric in 12 asks for a rerun (bench/
synthetic_regimes.py: 19% of 30-metric A/A checks quiet); planned up front the
lane runs more repeats on those series only (docs/statistics.md, "Synthetic regimes").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.special import ndtri

from guardrail.analysis.compare import TREND_MIN_RUNS, _all_positive, _median_of, baseline_level, variance_parts
from guardrail.analysis.noise_model import PRIOR_BETWEEN_CV, estimate_noise, flatten

# Fewer history runs than this: the noise estimate leans on its prior, so it cannot justify extra repeats.
MIN_PLAN_RUNS = 8
FLOOR_MARGIN = 0.10
# The change a check must find (issue 12: 2% at a 1% threshold, 95% of the time, among 30 gating series).
DETECT_FACTOR = 2.0
DETECT_POWER = 0.95


@dataclass(frozen=True)
class RepeatPlan:
    """The repeats one series asks for, and why (`se` and `budget` on the log scale, ~relative)."""

    repeats: int
    se: float | None  # the comparison's standard error at `repeats` (None: not planned from the history)
    budget: float  # the largest standard error that resolves the threshold and finds twice it
    reason: str


def resolve_se_budget(threshold: float, alpha: float = 0.05) -> float:
    """The largest standard error (log scale) at which the two-sided (1 - alpha) interval resolves `threshold`."""
    return math.log1p(abs(threshold)) / float(ndtri(1.0 - alpha / 2.0))


def detect_se_budget(threshold: float, gating_series: int, fdr: float = 0.05, power: float = DETECT_POWER) -> float:
    """The largest standard error at which a change of DETECT_FACTOR x `threshold` on one of `gating_series` is a
    discovery with probability `power` (its two-sided p-value under fdr / gating_series, Benjamini-Hochberg's bar
    for a lone change)."""
    z = float(ndtri(1.0 - fdr / (2.0 * max(gating_series, 1)))) + float(ndtri(power))
    return math.log1p(DETECT_FACTOR * abs(threshold)) / z


def plan_repeats(
    history: Sequence[Sequence[Sequence[float]]],
    *,
    window: int,
    threshold: float,
    min_repeats: int,
    max_repeats: int,
    gating_series: int = 1,
    alpha: float = 0.05,
    fdr: float = 0.05,
    prior_cv: float = PRIOR_BETWEEN_CV,
) -> RepeatPlan:
    """The repeats a candidate of this series should start with.

    `history`: the series' runs on the lane's baseline branch, newest first (runs -> repeats -> samples), as the
    check reads them; its first `window` runs are the baseline. `gating_series`: how many gating series the
    check judges together (false-discovery control over them raises the bar a real change must clear).
    Returns at least `min_repeats` and at most `max_repeats`.
    """
    if min_repeats < 1 or max_repeats < min_repeats:
        raise ValueError("need 1 <= min_repeats <= max_repeats")
    budget = min(resolve_se_budget(threshold, alpha), detect_se_budget(threshold, gating_series, fdr))
    runs = [run for run in history if any(len(rep) for rep in run)]
    if len(runs) < MIN_PLAN_RUNS:
        return RepeatPlan(min_repeats, None, budget, f"{len(runs)} history runs: too few to plan from")
    log_scale = _all_positive(runs)
    scale = 1.0 if log_scale else abs(_median_of(runs) or 1.0)  # as compare_metric scales a linear series
    hist = flatten(runs, log_scale=log_scale, scale=scale)
    base = flatten(runs[: max(window, 1)], log_scale=log_scale, scale=scale)
    noise = estimate_noise(hist, prior_cv=prior_cv)
    _, _, level_factor = baseline_level(
        base, hist if hist.runs >= TREND_MIN_RUNS else None, noise.run_var, noise.repeat_var
    )
    kbar = float(base.run_sizes.mean())

    def se(k: int) -> float:
        return math.sqrt(sum(variance_parts(noise, level_factor, kbar, k)))

    for k in range(min_repeats, max_repeats + 1):
        if se(k) <= budget:
            why = "the lane's repeats suffice" if k == min_repeats else f"{k} repeats resolve the threshold"
            return RepeatPlan(k, se(k), budget, f"{why} (se {se(k):.2%} <= {budget:.2%})")
    # Out of reach: the run-to-run part dominates. Repeats still narrow the interval towards its floor (what
    # infinitely many would leave); stop where one more would buy less than FLOOR_MARGIN of it.
    floor = math.sqrt(variance_parts(noise, level_factor, kbar, 1)[0] + noise.repeat_var * level_factor / kbar)
    k = next((k for k in range(min_repeats, max_repeats + 1) if se(k) <= (1.0 + FLOOR_MARGIN) * floor), max_repeats)
    return RepeatPlan(
        k,
        se(k),
        budget,
        f"se {se(k):.2%} at {k} repeats, within {FLOOR_MARGIN:.0%} of the {floor:.2%} that run-to-run noise leaves "
        f"(over the {budget:.2%} budget: more would not help)",
    )
