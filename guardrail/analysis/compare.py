"""Compare a candidate against its baseline: relative change, CI, one-sided p-value and a verdict.

Method (docs/statistics.md has the long form): values are compared on the log scale (relative changes);
each repeat (a fresh process) is summarised by its mean; the variance of a repeat and of a run level come
from the series' history through the two-level noise model (noise_model.py), so 50 correlated steps
count as one process, not 50 observations. The difference of the candidate mean and the baseline level
gets a Student-t interval with Satterthwaite degrees of freedom. Verdicts:

- regression / improvement: the 95% CI excludes zero AND the estimate is beyond the practical threshold;
- no_change: the whole CI lies inside +-threshold;
- noisy: the CI is wider than the threshold on each side, so no_change is out of reach at this sample size;
- inconclusive: anything else (the CI straddles the threshold);
- missing: no baseline (fail closed) or no candidate values;
- new: the series' first run in the history its lane reads (`new_series`; the judge decides which it is).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.special import stdtr, stdtrit

from guardrail.analysis.noise_model import PRIOR_BETWEEN_CV, NoiseEstimate, SeriesData, estimate_noise, flatten
from guardrail.analysis.planner import REPEATS_UNREACHABLE, repeats_needed
from guardrail.verdicts import count
from guardrail.vocabulary import Verdict

DIRECTIONS = ("lower_is_better", "higher_is_better")
# A baseline run whose level sits this many standard deviations from the others is left out of the level.
BAD_RUN_SIGMAS = 5.0
# Huber's k (in noise SDs) for the candidate level, and the standard-error inflation applied when it bites
# (the Huber estimator's efficiency at the normal is ~95% at k=1.5).
HUBER_K = 1.5
HUBER_SE_FACTOR = 1.0 / math.sqrt(0.95)
# From this many history runs on, the baseline level follows the history's trend to its newest run (a drift).
TREND_MIN_RUNS = 6


@dataclass(frozen=True)
class MetricComparison:
    verdict: Verdict
    change: float | None  # candidate/baseline - 1 of the metric as measured (+0.034 on a latency = worse)
    ci: tuple[float, float] | None  # confidence interval on `change`
    p_value: float | None  # one-sided, in the metric's worse direction
    baseline_runs: int
    baseline_median: float | None
    candidate_repeats: int
    candidate_median: float | None
    threshold: float
    explanation: str  # one sentence for a PR comment
    repeats_needed: int | None = None
    q_value: float | None = None  # after false-discovery control (set by judge_check)
    details: dict[str, Any] = field(default_factory=dict)  # free-form: noise estimates, method, ...


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def _prior_pct(cv: float) -> str:
    # A whole percent (the defaults) as "2%", a measured family prior as "1.1%".
    return f"{cv:.0%}" if cv >= 0.1 or abs(cv * 100 - round(cv * 100)) < 1e-6 else f"{cv:.1%}"


def _median_of(runs: Sequence[Sequence[Sequence[float]]]) -> float | None:
    # statistics.median sorts a Python list: far cheaper than np.median on the tiny lists seen here.
    meds = [statistics.median(rep) for run in runs for rep in run if len(rep)]
    return float(statistics.median(meds)) if meds else None


def _all_positive(*groups: Sequence[Sequence[Sequence[float]]]) -> bool:
    return all(min(rep) > 0 for g in groups for run in g for rep in run if len(rep))


def _all_equal(*groups: Sequence[Sequence[Sequence[float]]]) -> bool:
    first = None
    for g in groups:
        for run in g:
            for rep in run:
                if len(rep):
                    lo, hi = min(rep), max(rep)
                    if lo != hi or (first is not None and lo != first):
                        return False
                    first = lo
    return True


def _robust_level(values: np.ndarray, scale: float) -> tuple[float, bool]:
    """Huber location of >= 3 candidate repeats with a known scale: one wild repeat cannot carry the verdict.

    Returns (level, whether any repeat was down-weighted). With fewer than 3 repeats an outlier cannot be
    told from the rest, so the plain mean is used.
    """
    mean = float(values.mean())
    if values.size < 3 or scale <= 0:
        return mean, False
    mu = float(np.median(values))
    w = np.ones_like(values)
    for _ in range(20):
        r = np.abs(values - mu) / scale
        w = np.minimum(1.0, HUBER_K / np.maximum(r, 1e-12))
        new = float((w * values).sum() / w.sum())
        if abs(new - mu) < 1e-9 * scale:
            mu = new
            break
        mu = new
    return mu, bool(np.any(w < 1.0))


def baseline_level(
    base: SeriesData, hist: SeriesData | None, run_var: float, repeat_var: float
) -> tuple[float, int, float]:
    """The baseline level at its newest run: (level, runs left out, variance factor of the level).

    Runs that sit BAD_RUN_SIGMAS away from the median are left out (a bad night). Given `hist` (the history,
    newest first, whose first runs are the baseline's) of at least TREND_MIN_RUNS runs, the window's mean is
    moved to its newest run along the history's least-squares slope: a history drifting 0.1% a night is then no
    0.5% change of the candidate. The slope comes from the whole history, so it costs little precision (the
    factor is ~0.15 for 10 of 30 runs, against 0.10 for the plain mean). The factor is the sum of the squared
    weights of the run levels in the estimate: a run level's variance times it is the level's variance.
    """
    means = base.run_means
    keep = np.ones(means.size, dtype=bool)
    if means.size >= 5:
        sd = math.sqrt(run_var + repeat_var / float(base.run_sizes.mean()))
        if sd > 0:
            far = np.abs(means - np.median(means)) > BAD_RUN_SIGMAS * sd
            if (~far).sum() >= 3:
                keep = ~far
    r = int(keep.sum())
    dropped = int(means.size - r)
    if hist is None or hist.runs < TREND_MIN_RUNS or hist.runs < means.size:
        return float(means[keep].mean()), dropped, 1.0 / r
    # Weights over the history's run levels: the window's mean, plus the slope times the distance from the
    # window's centre to its newest run (x = 0 at the newest run, older runs to the left).
    n = hist.runs
    use = np.ones(n, dtype=bool)
    use[: means.size] = keep
    x = -np.arange(n, dtype=float)
    xc = np.where(use, x - x[use].mean(), 0.0)
    sxx = float(xc @ xc)
    w = np.zeros(n)
    w[: means.size][keep] = 1.0 / r
    if sxx > 0:
        w += -float(x[: means.size][keep].mean()) * xc / sxx
    return float(w @ hist.run_means), dropped, float(w @ w)


def variance_parts(noise: NoiseEstimate, level_factor: float, baseline_repeats: float, k: int) -> tuple[float, float]:
    """The variance of (candidate mean - baseline level) in two parts: (run-level part, repeat part). A fresh run
    level on each side; process noise over the candidate's `k` repeats; the baseline level carries `level_factor`
    of one run level's variance (1/R for a plain mean of R runs of `baseline_repeats` repeats each)."""
    return (
        noise.run_var * (1.0 + level_factor),
        noise.repeat_var * (1.0 / k + level_factor / baseline_repeats),
    )


def compare_metric(
    baseline: Sequence[Sequence[Sequence[float]]],
    candidate: Sequence[Sequence[float]],
    *,
    direction: str = "lower_is_better",
    threshold: float = 0.01,
    history: Sequence[Sequence[Sequence[float]]] | None = None,
    summary: bool = False,
    alpha: float = 0.05,
    reference: bool = False,
    prior_cv: float = PRIOR_BETWEEN_CV,
    trend: bool = False,
    max_repeats: int | None = None,
) -> MetricComparison:
    """Judge a candidate (repeats -> samples) against baseline runs (runs -> repeats -> samples).

    `reference=True`: the one baseline run is a pinned reference value (cold start), and the texts say so.
    `prior_cv`: the noise prior blended in while the history is short (noise_model.estimate_noise).
    `trend=True`: the baseline runs and the history are newest first, the history starting with the baseline runs;
    from TREND_MIN_RUNS history runs on, the baseline level is taken at its newest run along the history's trend.
    `max_repeats`: the most repeats the lane can give the candidate (its repeats plus the rerun policy's extra
    ones); a series that cannot resolve its threshold within them is `noisy`. None: no cap.

    `history` (same series, newest first, may include the baseline runs) feeds the noise estimate; without
    it the baseline runs do. `summary=True` means each value is already a per-repeat summary (a mean or a
    p99 of one run), so one value is one observation and no step noise is estimated. The result is
    deterministic.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    threshold = abs(float(threshold))
    base_runs = [run for run in baseline if any(len(rep) for rep in run)]
    cand_reps = [rep for rep in candidate if len(rep)]
    hist_runs = [run for run in (history or []) if any(len(rep) for rep in run)]
    base_median = _median_of(base_runs)
    cand_median = _median_of([cand_reps]) if cand_reps else None
    # What every early answer shares: the counts and medians of what was given.
    missing = MetricComparison(
        verdict="missing",
        change=None,
        ci=None,
        p_value=None,
        baseline_runs=len(base_runs),
        baseline_median=base_median,
        candidate_repeats=len(cand_reps),
        candidate_median=cand_median,
        threshold=threshold,
        explanation="No baseline for this series: failing closed until one is recorded.",
    )
    if not base_runs:
        return missing
    if not cand_reps:
        return replace(missing, explanation="No candidate values for this metric.")

    if _all_equal(base_runs, [cand_reps]):
        # A deterministic metric (memory, counts): identical values are no change, whatever the history.
        return replace(
            missing,
            verdict="no_change",
            change=0.0,
            ci=(0.0, 0.0),
            p_value=0.5,
            explanation="Identical values in baseline and candidate.",
            details={"method": "identical"},
        )
    log_scale = _all_positive(base_runs, [cand_reps], hist_runs)
    scale = abs(base_median) if (not log_scale and base_median) else 1.0
    base = flatten(base_runs, log_scale=log_scale, scale=scale)
    cand = flatten([cand_reps], log_scale=log_scale, scale=scale)
    hist = flatten(hist_runs, log_scale=log_scale, scale=scale) if len(hist_runs) >= base.runs else base
    noise = estimate_noise(hist, cand, prior_cv=prior_cv)  # a given history includes the baseline runs

    level, dropped, level_factor = baseline_level(
        base, hist if (trend and hist is not base) else None, noise.run_var, noise.repeat_var
    )
    r_b = base.runs - dropped
    kbar_b = float(base.run_sizes.mean())
    k_c = cand.repeats
    comp_run, comp_rep = variance_parts(noise, level_factor, kbar_b, k_c)
    var = comp_run + comp_rep
    se = math.sqrt(var)
    denom = (comp_run**2 / noise.run_df if noise.run_df > 0 else 0.0) + (
        comp_rep**2 / noise.repeat_df if noise.repeat_df > 0 else 0.0
    )
    df = max(var * var / denom, 1.0) if denom > 0 else 1e6

    cand_level, downweighted = _robust_level(cand.repeat_means, math.sqrt(noise.repeat_var + noise.run_var))
    if downweighted:
        se *= HUBER_SE_FACTOR
    d = cand_level - level
    worse_d = d if direction == "lower_is_better" else -d
    if se > 0:
        p_one = float(stdtr(df, -worse_d / se))
        t_q = float(stdtrit(df, 1.0 - alpha / 2.0))
    else:
        p_one = 0.0 if worse_d > 0 else (1.0 if worse_d < 0 else 0.5)
        t_q = 0.0
    half = t_q * se
    lo, hi = d - half, d + half
    if log_scale:
        change, ci = math.expm1(d), (math.expm1(lo), math.expm1(hi))
        resolvable = half < math.log1p(threshold)
    else:
        change, ci = d / level if level else d, ((lo / level, hi / level) if level else (lo, hi))
        resolvable = half < threshold * abs(level or 1.0)
    sign = 1.0 if direction == "lower_is_better" else -1.0
    worse = sign * change
    worse_lo, worse_hi = sorted((sign * ci[0], sign * ci[1]))

    fixed_var = comp_run + noise.repeat_var * level_factor / kbar_b
    rep_cv = math.sqrt(noise.repeat_var)
    # Repeats to tell the threshold with 80% power; failing that, to narrow the interval under it (power 1/2:
    # the `noise` command's "resolves"). A series no repeats within the lane's maximum resolve is noisy.
    resolve = repeats_needed(rep_cv, 0.0, 1.0, threshold or 0.01, alpha=alpha, power=0.5, fixed_var=fixed_var)
    need = repeats_needed(rep_cv, 0.0, 1.0, threshold or 0.01, alpha=alpha, fixed_var=fixed_var)
    if need >= REPEATS_UNREACHABLE:
        need = resolve
    against = "against the pinned reference value" if reference else count(r_b, "baseline run")
    # What more repeats would do, counted from the ones that ran; nothing when those already suffice.
    if need < REPEATS_UNREACHABLE:
        need_txt = (
            f"; {count(need - k_c, 'more repeat')} ({need} in all) would resolve {threshold:.0%}" if need > k_c else ""
        )
    elif noise.prior_used:
        need_txt = (
            f"; only {'the pinned reference value' if reference else count(noise.runs, 'baseline run')}: "
            "a conservative "
            f"{_prior_pct(prior_cv)} noise prior applies until more baseline runs are recorded"
        )
    else:
        need_txt = f"; no number of repeats resolves {threshold:.0%}: the run-to-run noise is too high"
    ci_txt = (
        f"95% CI {_pct(ci[0])} to {_pct(ci[1])}"
        if alpha == 0.05
        else f"{1 - alpha:.0%} CI {_pct(ci[0])} to {_pct(ci[1])}"
    )
    repeats_out: int | None = None
    # Where the interval is wider than the threshold (the noisy regime) the bar for the lower bound rises
    # with the excess width: a regression on a noisy series must stand out by more than its own noise.
    # This keeps false alarms on wide, heavy-tailed series well under the nominal level.
    bar = max(0.0, (ci[1] - ci[0]) / 2.0 - threshold)
    significant = 2.0 * min(p_one, 1.0 - p_one) <= alpha  # two-sided, at this comparison's level
    unreachable = resolve >= REPEATS_UNREACHABLE or (max_repeats is not None and resolve > max_repeats)
    if worse_lo > bar and worse > threshold:
        verdict: Verdict = "regression"
        why = f"{_pct(change)} (worse; {ci_txt}), beyond the {threshold:.0%} threshold ({against})."
    elif worse_hi < -bar and worse < -threshold:
        verdict = "improvement"
        why = f"{_pct(change)} (better; {ci_txt}), beyond the {threshold:.0%} threshold ({against})."
    elif -threshold < ci[0] and ci[1] < threshold:
        verdict = "no_change"
        why = f"{_pct(change)} ({ci_txt}), inside the ±{threshold:.0%} threshold."
    elif unreachable:
        verdict = "noisy"
        repeats_out = need
        why = f"Too noisy to judge with {count(k_c, 'repeat')} ({_pct(change)}, {ci_txt}){need_txt}."
    elif abs(change) <= threshold and not significant:
        # The estimate is inside the threshold and nothing points to a change: no rerun is asked for. A change
        # worth the threshold is caught by its estimate (beyond it) or by its significance, not by the width.
        verdict = "no_change"
        why = f"{_pct(change)} ({ci_txt}): no significant change, inside the ±{threshold:.0%} threshold."
    elif not resolvable:
        verdict = "inconclusive"
        repeats_out = need
        why = f"{_pct(change)} ({ci_txt}): too wide to judge with {count(k_c, 'repeat')}{need_txt}."
    else:
        verdict = "inconclusive"
        repeats_out = need
        why = f"{_pct(change)} ({ci_txt}) straddles the {threshold:.0%} threshold{need_txt}."

    details = {
        "method": "two-level-t",
        "scale": "log" if log_scale else "linear",
        "df": df,
        "se": se,
        "repeat_cv": math.sqrt(noise.repeat_var),
        "run_cv": math.sqrt(noise.run_var),
        "between_cv": math.sqrt(noise.between_var),
        "within_cv": math.sqrt(noise.within_var) if (noise.within_var is not None and not summary) else None,
        "history_runs": noise.runs,
        "prior_used": noise.prior_used,
        "prior_cv": prior_cv,
        "baseline_runs_dropped": dropped,
        "baseline_trend": level_factor != 1.0 / r_b,
        "resolved": bool(resolvable),
        "alpha": alpha,
    }
    return MetricComparison(
        verdict=verdict,
        change=change,
        ci=ci,
        p_value=p_one,
        baseline_runs=base.runs,
        baseline_median=base_median,
        candidate_repeats=k_c,
        candidate_median=cand_median,
        threshold=threshold,
        explanation=why,
        repeats_needed=repeats_out,
        details=details,
    )


def new_series(candidate: Sequence[Sequence[float]], *, threshold: float = 0.01) -> MetricComparison:
    """The verdict of a series' first run: nothing to compare with yet, so it starts the history (never blocks)."""
    cand_reps = [rep for rep in candidate if len(rep)]
    return MetricComparison(
        verdict="new",
        change=None,
        ci=None,
        p_value=None,
        baseline_runs=0,
        baseline_median=None,
        candidate_repeats=len(cand_reps),
        candidate_median=_median_of([cand_reps]) if cand_reps else None,
        threshold=abs(float(threshold)),
        explanation="A new series: its first run here, recorded as the start of its history.",
    )
