"""Per-series noise report: within- and between-process CV, bimodality, outlier rate, and `noisy`.

`noisy` asks the lane's question: can its largest candidate (the run's repeats plus the reruns the rerun
policy allows) tell a change of the series' threshold from noise, against a baseline of the lane's window?
Bimodality and outliers are judged on residuals from the series' level segments (between change points), so
a real step is neither two modes nor outliers, and a constant series (spread below MIN_SPREAD) is neither.

`guardrail noise` (wired to the store by the CLI) prints one row per series with `render_noise_table`, or
`noise_json` for `--format json`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import ndtri

from guardrail.analysis.changepoints import MIN_SEGMENT, detect_change_points
from guardrail.analysis.noise_model import estimate_noise, flatten
from guardrail.analysis.planner import REPEATS_UNREACHABLE

# Sarle's bimodality coefficient above this (the value of a uniform distribution) suggests two modes.
BIMODALITY_CUTOFF = 5.0 / 9.0
MIN_BIMODALITY_N = 20
OUTLIER_SIGMAS = 5.0
MAX_OUTLIER_RATE = 0.05
MIN_OUTLIERS = 2  # one odd night is a suspect (a spike), not a property of the series' noise
# Spread (log scale, 0.01%) below which a series is constant: a float artifact such as 40960 vs 40960.000001
# is neither two modes nor an outlier, and far below any threshold.
MIN_SPREAD = 1e-4
# Defaults when no lane is given: 1 repeat + the rerun policy's 10 extra repeats, a baseline of 10 runs.
DEFAULT_MAX_REPEATS = 11
DEFAULT_BASELINE_RUNS = 10


@dataclass(frozen=True)
class NoiseReport:
    runs: int
    repeats: int
    samples_per_repeat: float
    within_cv: float | None  # one step around its process mean (None for summary values)
    between_cv: float  # between fresh processes (the independent unit)
    between_estimate: str  # how between_cv was estimated (see _between_var)
    run_cv: float  # extra night-to-night spread of run levels
    bimodality: float | None  # Sarle's coefficient on level residuals; > 0.555 hints at two modes
    bimodal: bool
    outlier_rate: float
    repeats_needed: int  # candidate repeats whose 95% interval is narrower than `threshold`
    max_repeats: int  # the most candidate repeats the lane reaches (run's repeats + reruns)
    threshold: float
    noisy: bool
    reason: str
    prior_used: bool

    def to_dict(self) -> dict:
        return asdict(self)


def bimodality_coefficient(x: np.ndarray) -> float | None:
    """Sarle's sample bimodality coefficient (g^2 + 1) / (k + 3 (n-1)^2 / ((n-2)(n-3)))."""
    n = x.size
    if n < 4:
        return None
    d = x - x.mean()
    m2 = float((d * d).mean())
    if m2 <= 0:
        return None
    g = float((d**3).mean()) / m2**1.5
    k = float((d**4).mean()) / m2**2 - 3.0
    # Bias-corrected skewness and excess kurtosis.
    g = g * math.sqrt(n * (n - 1)) / (n - 2)
    k = ((n + 1) * k + 6) * (n - 1) / ((n - 2) * (n - 3))
    return (g * g + 1.0) / (k + 3.0 * (n - 1) ** 2 / ((n - 2) * (n - 3)))


def _outliers(devs: Sequence[np.ndarray], floor: float) -> tuple[float, int]:
    """Share and count of deviations beyond both OUTLIER_SIGMAS robust sigmas (at least MIN_SPREAD) and
    `floor` (the threshold: a wobble smaller than it cannot sway a verdict)."""
    dev = np.concatenate(devs) if devs else np.empty(0)
    if dev.size == 0:
        return 0.0, 0
    sigma = max(1.4826 * float(np.median(np.abs(dev))), MIN_SPREAD)
    beyond = np.abs(dev) > max(OUTLIER_SIGMAS * sigma, floor)
    return float(np.mean(beyond)), int(beyond.sum())


def _segments(run_levels: Sequence[float]) -> np.ndarray:
    """Segment index of each run: the level segments between the change points of the run levels."""
    seg = np.zeros(len(run_levels), dtype=int)
    if len(run_levels) >= 2 * MIN_SEGMENT:
        for cp in detect_change_points(run_levels, window=max(len(run_levels), 2 * MIN_SEGMENT)):
            seg[cp.index :] += 1
    return seg


def _random_within_var(reps: Sequence[Sequence[np.ndarray]], plain: float | None) -> float | None:
    """Step variance around the process mean once the step pattern shared by a run's processes (warm-up,
    per-step shapes) is taken out: only runs whose repeats have the same step count can show that pattern;
    the others keep their plain deviations. None for summary values."""
    if plain is None:
        return None
    ss, df = 0.0, 0.0
    for run in reps:
        lengths = {r.size for r in run}
        if len(run) >= 2 and len(lengths) == 1 and next(iter(lengths)) >= 2:
            arr = np.vstack(run)
            dev = arr - arr.mean(axis=1, keepdims=True)
            resid = dev - dev.mean(axis=0, keepdims=True)
            ss += float((resid * resid).sum())
            df += (arr.shape[0] - 1) * (arr.shape[1] - 1)
        else:
            for r in run:
                ss += float(((r - r.mean()) ** 2).sum())
                df += r.size - 1
    return ss / df if df > 0 else plain


def _level_residuals(
    reps: Sequence[Sequence[np.ndarray]], seg: np.ndarray, *, summary: bool
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Residuals from the level segments `seg` of the runs (a real step between runs is neither two modes nor
    outliers) and the deviations outliers are counted on: summary values around their segment, steps around
    their process."""
    values = [np.array([r.mean()]) if summary else r for run in reps for r in run]
    if not values:
        return np.empty(0), []
    seg_of = np.repeat(seg, [len(run) for run in reps])
    level = {
        int(k): float(np.median(np.concatenate([v for v, g in zip(values, seg_of, strict=True) if g == k])))
        for k in set(seg_of)
    }
    resid = np.concatenate([v - level[int(g)] for v, g in zip(values, seg_of, strict=True)])
    return resid, ([resid] if summary else [r - np.median(r) for r in values if r.size >= 3])


def _step_free_var(levels: np.ndarray, seg: np.ndarray) -> float | None:
    """Variance of run levels around their segment medians (None without a change point to fit)."""
    n_seg = int(seg.max()) + 1 if seg.size else 1
    if n_seg < 2 or levels.size <= n_seg:
        return None
    med = np.array([np.median(levels[seg == k]) for k in range(n_seg)])
    res = levels - med[seg]
    return float(res @ res) / (levels.size - n_seg)


def noise_report(
    runs: Sequence[Sequence[Sequence[float]]],
    *,
    summary: bool = False,
    threshold: float = 0.01,
    extra_repeats: int = DEFAULT_MAX_REPEATS - 1,
    baseline_runs: int = DEFAULT_BASELINE_RUNS,
    alpha: float = 0.05,
) -> NoiseReport:
    """Noise of one series from its runs (oldest first): runs -> repeats (fresh processes) -> samples.

    `threshold`, `extra_repeats` (reruns on top of a run's repeats) and `baseline_runs` are the lane's."""
    runs = [[rep for rep in run if len(rep)] for run in runs]
    runs = [run for run in runs if run]
    positive = all(min(rep) > 0 for run in runs for rep in run)
    med = float(np.median([v for run in runs for rep in run for v in rep])) if runs else 1.0
    scale = abs(med) or 1.0
    data = flatten(runs, log_scale=positive, scale=scale)
    est = estimate_noise(data)
    reps = [[np.log(np.asarray(r, float)) if positive else np.asarray(r, float) / scale for r in run] for run in runs]
    within_var = None if summary else est.within_var
    within_cv = None if within_var is None else math.sqrt(within_var)
    step_part = (_random_within_var(reps, within_var) or 0.0) / max(data.steps, 1.0)
    multi = bool(np.any(data.run_sizes > 1))
    seg = _segments([float(np.median(np.concatenate([np.asarray(r, float) for r in run]))) for run in runs])
    if multi:
        # The spread of the per-process means, less the random step noise they carry; where that leaves
        # nothing, the per-process means' spread itself (an upper bound) rather than a false 0.
        repeat_var, run_var = est.repeat_var, est.run_var
        between_var, how = repeat_var - step_part, "process means less random step noise"
        if between_var <= 0:
            between_var, how = repeat_var, "process means (step noise not separable)"
    else:  # one process per run: night-to-night and process-to-process spread cannot be told apart
        repeat_var, run_var, how = est.run_var + est.repeat_var, 0.0, "run levels"
        # A fitted step is a change, not noise (a constant memory series with one step is not 2% noisy).
        step_free = None if est.prior_used else _step_free_var(data.run_means, seg)
        if step_free is not None and step_free < repeat_var:
            repeat_var, how = step_free, "run levels around their segments"
        between_var = max(repeat_var - step_part, 0.0)
        how += " less random step noise (one process per run)"
    between_cv, run_cv = math.sqrt(between_var), math.sqrt(run_var)

    resid, out_devs = _level_residuals(reps, seg, summary=summary)
    constant = resid.size == 0 or float(np.std(resid)) < MIN_SPREAD
    bc = bimodality_coefficient(resid) if resid.size >= MIN_BIMODALITY_N and not constant else None
    bimodal = bc is not None and bc > BIMODALITY_CUTOFF
    t = math.log1p(threshold) if positive else threshold
    outliers, n_outliers = (0.0, 0) if constant else _outliers(out_devs, t)

    # Resolution: the 95% interval of candidate (k repeats) vs baseline (baseline_runs runs of r repeats)
    # is narrower than the threshold when repeat_var / k + fixed <= (log1p(threshold) / z)^2.
    mean_size = float(data.run_sizes.mean()) if data.runs else 1.0
    max_repeats = max(1, round(mean_size)) + extra_repeats
    fixed = run_var * (1.0 + 1.0 / baseline_runs) + repeat_var / (baseline_runs * mean_size)
    half = t / float(ndtri(1.0 - alpha / 2.0))
    room = half * half - fixed
    if room <= 0:
        need = REPEATS_UNREACHABLE
    else:
        need = max(1, min(REPEATS_UNREACHABLE, math.ceil(repeat_var / room - 1e-9)))
    thr = f"{threshold * 100:g}%"
    reasons = []
    # A short history is not instability: with the prior in use, only the shape of the data can make it noisy.
    if need > max_repeats and not est.prior_used:
        why = f"needs {need}" if need < REPEATS_UNREACHABLE else "run-to-run and baseline noise alone exceed it"
        reasons.append(f"{max_repeats} repeats cannot resolve {thr} ({why})")
    if bimodal:
        reasons.append(f"bimodal (coefficient {bc:.2f})")
    if outliers > MAX_OUTLIER_RATE and n_outliers >= MIN_OUTLIERS:
        reasons.append(f"{outliers:.0%} outliers")
    noisy = bool(reasons)
    if est.prior_used:
        reasons.append(f"short history ({data.runs} runs): conservative prior in use")
    return NoiseReport(
        runs=data.runs,
        repeats=data.repeats,
        samples_per_repeat=data.steps,
        within_cv=within_cv,
        between_cv=between_cv,
        between_estimate=how,
        run_cv=run_cv,
        bimodality=bc,
        bimodal=bimodal,
        outlier_rate=outliers,
        repeats_needed=need,
        max_repeats=max_repeats,
        threshold=threshold,
        noisy=noisy,
        reason="; ".join(reasons) if reasons else "stable",
        prior_used=est.prior_used,
    )


def _rows(
    rows: Mapping[str, NoiseReport] | Iterable[tuple[str, NoiseReport]],
) -> list[tuple[str, NoiseReport]]:
    return list(rows.items()) if isinstance(rows, Mapping) else list(rows)


def noise_json(rows: Mapping[str, NoiseReport] | Iterable[tuple[str, NoiseReport]]) -> dict:
    """`guardrail noise --format json`: {"schema": "guardrail.noise/v1", "series": [{"series": ...}]}."""
    return {"schema": "guardrail.noise/v1", "series": [{"series": k, **r.to_dict()} for k, r in _rows(rows)]}


def render_noise_table(rows: Mapping[str, NoiseReport] | Iterable[tuple[str, NoiseReport]]) -> str:
    """A plain-text table, one line per series."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x * 100:.2f}%"

    items = _rows(rows)
    header = (
        "series",
        "runs",
        "within CV",
        "between CV",
        "run CV",
        "bimodal",
        "outliers",
        "threshold",
        "repeats@thr",
        "noisy",
    )
    body = [
        (
            name,
            str(r.runs),
            pct(r.within_cv),
            pct(r.between_cv),
            pct(r.run_cv),
            "yes" if r.bimodal else "no",
            f"{r.outlier_rate:.1%}",
            f"{r.threshold * 100:g}%",
            str(r.repeats_needed) if r.repeats_needed < REPEATS_UNREACHABLE else "inf",
            ("yes: " + r.reason) if r.noisy else "no",
        )
        for name, r in items
    ]
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in body]
    return "\n".join(lines)
