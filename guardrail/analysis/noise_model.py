"""The two-level noise model of one series: within-process and between-process variance.

A series value is taken on the log scale, so variances are squared coefficients of variation and a
difference of means is a relative change. A repeat (one fresh process) is the independent unit:

    y[run, repeat] = level + run_effect[run] + process_effect[run, repeat] + mean(step noise)

`repeat_var` is the variance of one repeat summary inside a run (process effect + step noise / steps);
it is pooled over every run with two or more repeats, which is immune to level shifts between runs.
`run_var` is the extra night-to-night variance on top of that, estimated from successive differences of
run means (robust to one bad night and to a level shift in the history). When the history is too short
to say, a stated conservative prior is blended in: a CV per series (`prior_cv`), worth `PRIOR_DF` degrees of
freedom. The caller measures it on the metric's family (`family_cv`: other series of the same metric on the same
hardware) or takes the wide default of the metric's kind (`wide_prior_cv`).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from itertools import chain

import numpy as np

# Conservative fallback when a series has too little history: a CV worth PRIOR_DF degrees of freedom. Short
# history therefore widens intervals (inconclusive/noisy), never raises alarms. 2% is the prior of step
# latencies, throughputs and memory (night-to-night CV about 1% on the corpus); every other metric (stage
# means, queue waits, TTS request latencies: CV up to 15-40% on the corpus) gets the wide 10%.
PRIOR_BETWEEN_CV = 0.02
WIDE_PRIOR_CV = 0.10
NARROW_PRIOR_FAMILIES = ("*latency*", "*throughput*", "*memory*")
WIDE_PRIOR_FAMILIES = ("stage_mean.*", "*queue*")  # a stage's or a queue's latency is as wide as any stage
PRIOR_DF = 4.0
# A family prior: the median over series of that metric with at least FAMILY_MIN_RUNS runs (fewer runs would
# give the prior no more than the series' own history has), trusted down to FAMILY_MIN_CV (below it a handful
# of runs cannot tell a deterministic metric from a quiet one).
FAMILY_MIN_RUNS = 8
FAMILY_MIN_SERIES = 3
FAMILY_MIN_CV = 0.005
# Below this many degrees of freedom (about 8 single-value runs, or 4 runs of 2 repeats) the prior is blended in.
MIN_OWN_DF = 4.0
# Successive differences larger than this many robust sigmas are winsorised (one bad night).
WINSOR_SIGMAS = 2.5
# Relative efficiency of the winsorised successive-difference variance (for degrees of freedom).
MSSD_EFFICIENCY = 0.6


@dataclass(frozen=True)
class SeriesData:
    """One side of a comparison, flattened: repeat summaries and their run membership (log scale)."""

    repeat_means: np.ndarray  # one value per repeat: mean of log samples
    repeat_run: np.ndarray  # run index of each repeat
    run_means: np.ndarray  # mean of the repeat means of each run, in run order
    run_sizes: np.ndarray  # repeats per run
    within_ss: float  # sum of squared deviations of log samples around their repeat mean
    within_df: float  # degrees of freedom of within_ss
    steps: float  # mean samples per repeat
    log_scale: bool

    @property
    def runs(self) -> int:
        return int(self.run_means.size)

    @property
    def repeats(self) -> int:
        return int(self.repeat_means.size)


def flatten(runs: Sequence[Sequence[Sequence[float]]], *, log_scale: bool = True, scale: float = 1.0) -> SeriesData:
    """Runs -> repeats -> samples into per-repeat means (log of values when log_scale, else value/scale)."""
    sizes: list[int] = []
    counts: list[int] = []
    chunks: list[Sequence[float]] = []
    for run in runs:
        n_rep = 0
        for rep in run:
            if len(rep) == 0:
                continue
            chunks.append(rep)
            counts.append(len(rep))
            n_rep += 1
        if n_rep:
            sizes.append(n_rep)
    if not chunks:
        empty = np.empty(0)
        return SeriesData(empty, np.empty(0, dtype=int), empty, np.empty(0, dtype=int), 0.0, 0.0, 0.0, log_scale)
    values = np.fromiter(chain.from_iterable(chunks), dtype=float, count=sum(counts))
    if not np.all(np.isfinite(values)):
        raise ValueError("non-finite value in series")
    values = np.log(values) if log_scale else values / scale
    counts_arr = np.asarray(counts)
    rep_idx = np.repeat(np.arange(counts_arr.size), counts_arr)
    rep_means = np.bincount(rep_idx, weights=values) / counts_arr
    dev = values - rep_means[rep_idx]
    within_ss = float(dev @ dev)
    within_df = float(values.size - counts_arr.size)
    sizes_arr = np.asarray(sizes)
    rep_run = np.repeat(np.arange(sizes_arr.size), sizes_arr)
    run_means = np.bincount(rep_run, weights=rep_means) / sizes_arr
    return SeriesData(
        rep_means, rep_run, run_means, sizes_arr, within_ss, within_df, float(counts_arr.mean()), log_scale
    )


@dataclass(frozen=True)
class NoiseEstimate:
    """Variance components on the log scale (a variance of 1e-4 is a 1% CV)."""

    repeat_var: float  # one repeat summary around its run's level (between-process + step noise/steps)
    repeat_df: float
    run_var: float  # extra run-to-run variance (nights, machines) beyond repeat_var / repeats
    run_df: float
    within_var: float | None  # one step around its process mean (None: summary values, one per repeat)
    steps: float
    runs: int
    prior_used: bool

    @property
    def between_var(self) -> float:
        """Between-process variance: the repeat variance less the step noise it carries."""
        within = (self.within_var or 0.0) / max(self.steps, 1.0)
        return max(self.repeat_var - within, 0.0)


def _pooled_repeat_var(sides: Sequence[SeriesData]) -> tuple[float, float]:
    """Pooled variance of repeat means around their run mean, with per-run variances capped (robust)."""
    per_run_var: list[np.ndarray] = []
    per_run_df: list[np.ndarray] = []
    for s in sides:
        if s.repeats == 0:
            continue
        dev = s.repeat_means - s.run_means[s.repeat_run]
        ss = np.bincount(s.repeat_run, weights=dev * dev, minlength=s.runs)
        df = s.run_sizes - 1.0
        keep = df > 0
        per_run_var.append(ss[keep] / df[keep])
        per_run_df.append(df[keep])
    if not per_run_var:
        return 0.0, 0.0
    v = np.concatenate(per_run_var)
    d = np.concatenate(per_run_df)
    if v.size == 0:
        return 0.0, 0.0
    if v.size >= 3:
        # One bad night must not inflate the pool: cap at 9x the upper quartile of the run variances. Not the
        # median: with 2 repeats a run's variance is 0 whenever both processes share a clock state (half the runs
        # of a bimodal series), so the median is 0 and the cap would zero the pool, moving all the process noise
        # into the run-to-run part that no repeat reduces.
        v = np.minimum(v, 9.0 * float(np.percentile(v, 75)) + 1e-18)
    return float((v * d).sum() / d.sum()), float(d.sum())


def _run_level_var(run_means: np.ndarray) -> tuple[float, float]:
    """Variance of run means from winsorised successive differences (robust to outliers and level shifts).
    Two runs already count: a baseline of two nights 50% apart is evidence of noise, not of none."""
    if run_means.size < 2:
        return 0.0, 0.0
    diffs = np.abs(np.diff(run_means))
    robust_sigma = float(np.median(diffs)) / 0.6745
    if robust_sigma > 0:
        diffs = np.minimum(diffs, WINSOR_SIGMAS * robust_sigma)
    return float((diffs * diffs).mean() / 2.0), MSSD_EFFICIENCY * (run_means.size - 1)


def wide_prior_cv(metric: str) -> float:
    """The prior CV of a metric whose family has no measured noise: 2% for latencies, throughputs and memory,
    10% for stage and queue metrics and anything else."""
    if any(fnmatchcase(metric, p) for p in WIDE_PRIOR_FAMILIES):
        return WIDE_PRIOR_CV
    if any(fnmatchcase(metric, p) for p in NARROW_PRIOR_FAMILIES):
        return PRIOR_BETWEEN_CV
    return WIDE_PRIOR_CV


def family_cv(run_levels: Iterable[Sequence[float]]) -> float | None:
    """The prior CV measured on a metric's family: per series (its run levels in time order, all > 0), the
    run-to-run CV from winsorised successive differences of the log levels (robust to a real step); the
    median over the series with >= FAMILY_MIN_RUNS runs, floored at FAMILY_MIN_CV. None with fewer than
    FAMILY_MIN_SERIES such series."""
    cvs = [
        float(np.sqrt(_run_level_var(np.log(np.asarray(levels, dtype=float)))[0]))
        for levels in run_levels
        if len(levels) >= FAMILY_MIN_RUNS and min(levels) > 0
    ]
    if len(cvs) < FAMILY_MIN_SERIES:
        return None
    return max(statistics.median(cvs), FAMILY_MIN_CV)


def estimate_noise(history: SeriesData, *extra: SeriesData, prior_cv: float = PRIOR_BETWEEN_CV) -> NoiseEstimate:
    """Variance components of a series from its history (plus the within-run spread of `extra` sides); with
    less than MIN_OWN_DF degrees of freedom of its own, `prior_cv` is blended in."""
    hist_var, hist_df = _pooled_repeat_var([history])
    repeat_var, repeat_df = _pooled_repeat_var([history, *extra])
    run_total, run_df = _run_level_var(history.run_means)
    mean_size = float(history.run_sizes.mean()) if history.runs else 1.0
    if hist_df > 0:
        run_var = max(run_total - repeat_var / mean_size, 0.0)
    else:  # one repeat per run: run means carry the process variance once
        run_var = max(run_total - repeat_var, 0.0)
    prior_used = False
    own_df = repeat_df + run_df
    if own_df < MIN_OWN_DF:
        # Too little history: blend in the conservative prior on the variance of one new repeat; it may
        # only widen the interval, never narrow it.
        total = run_var + repeat_var
        blended = (PRIOR_DF * prior_cv**2 + own_df * total) / (PRIOR_DF + own_df)
        if blended > total:
            run_var += blended - total
            run_df = PRIOR_DF + own_df
            prior_used = True
    within_df = history.within_df + sum(s.within_df for s in extra)
    within_ss = history.within_ss + sum(s.within_ss for s in extra)
    within_var = within_ss / within_df if within_df > 0 else None
    return NoiseEstimate(
        repeat_var=repeat_var,
        repeat_df=repeat_df,
        run_var=run_var,
        run_df=run_df,
        within_var=within_var,
        steps=history.steps or 1.0,
        runs=history.runs,
        prior_used=prior_used,
    )
