"""Per-series noise report: within- and between-process CV, bimodality, outlier rate, and `noisy`.

`guardrail noise` (wired to the store by the CLI) prints one row per series with `render_noise_table`, or
`noise_json` for `--format json`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from guardrail.analysis.noise_model import estimate_noise, flatten
from guardrail.analysis.planner import REPEATS_UNREACHABLE, repeats_needed

# Sarle's bimodality coefficient above this (the value of a uniform distribution) suggests two modes.
BIMODALITY_CUTOFF = 5.0 / 9.0
MIN_BIMODALITY_N = 20
OUTLIER_SIGMAS = 5.0
# A series is `noisy` when resolving its threshold would take more candidate repeats than this.
MAX_PRACTICAL_REPEATS = 8
MAX_OUTLIER_RATE = 0.05


@dataclass(frozen=True)
class NoiseReport:
    runs: int
    repeats: int
    samples_per_repeat: float
    within_cv: float | None  # one step around its process mean (None for summary values)
    between_cv: float  # between fresh processes (the independent unit)
    run_cv: float  # extra night-to-night spread of run levels
    bimodality: float | None  # Sarle's coefficient; > 0.555 hints at two modes
    bimodal: bool
    outlier_rate: float
    repeats_needed: int  # candidate repeats to resolve `threshold` at alpha 0.05, power 0.8
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


def _outlier_rate(groups: Iterable[np.ndarray]) -> float:
    """Share of values more than OUTLIER_SIGMAS robust sigmas from their group's median."""
    devs = [g - np.median(g) for g in groups if g.size >= 3]
    if not devs:
        return 0.0
    dev = np.concatenate(devs)
    sigma = 1.4826 * float(np.median(np.abs(dev)))
    if sigma <= 0:
        return float(np.mean(dev != 0))
    return float(np.mean(np.abs(dev) > OUTLIER_SIGMAS * sigma))


def noise_report(
    runs: Sequence[Sequence[Sequence[float]]],
    *,
    summary: bool = False,
    threshold: float = 0.01,
    candidate_repeats: int = 2,
) -> NoiseReport:
    """Noise of one series from its runs (oldest first): runs -> repeats (fresh processes) -> samples."""
    runs = [run for run in runs if any(len(rep) for rep in run)]
    positive = all(min(rep) > 0 for run in runs for rep in run if len(rep))
    med = float(np.median([v for run in runs for rep in run for v in rep])) if runs else 1.0
    data = flatten(runs, log_scale=positive, scale=abs(med) or 1.0)
    est = estimate_noise(data)
    within_cv = None if summary or est.within_var is None else math.sqrt(est.within_var)
    if bool(np.any(data.run_sizes > 1)):
        between_var, run_var = (est.repeat_var if summary else est.between_var), est.run_var
    else:  # one process per run: night-to-night and process-to-process spread cannot be told apart
        steps_part = 0.0 if summary or est.within_var is None else est.within_var / max(data.steps, 1.0)
        between_var, run_var = max(est.run_var + est.repeat_var - steps_part, 0.0), 0.0
    between_cv, run_cv = math.sqrt(between_var), math.sqrt(run_var)

    if summary or not runs:
        values = data.repeat_means
        groups = [values]
    else:
        groups = [
            np.log(np.asarray(rep, float)) if positive else np.asarray(rep, float) / (abs(med) or 1.0)
            for run in runs
            for rep in run
            if len(rep)
        ]
        values = np.concatenate(groups) if groups else np.empty(0)
    bc = bimodality_coefficient(values) if values.size >= MIN_BIMODALITY_N else None
    bimodal = bc is not None and bc > BIMODALITY_CUTOFF
    outliers = _outlier_rate(groups)
    need = repeats_needed(
        math.sqrt(est.repeat_var),
        0.0,
        1.0,
        threshold,
        fixed_var=est.run_var + est.repeat_var / max(data.repeats, 1),
    )
    reasons = []
    # A short history is not instability: with the prior in use, only the shape of the data can make it noisy.
    if need > MAX_PRACTICAL_REPEATS and not est.prior_used:
        reasons.append(f"resolving {threshold:.0%} needs {need if need < REPEATS_UNREACHABLE else 'unbounded'} repeats")
    if bimodal:
        reasons.append(f"bimodal (coefficient {bc:.2f})")
    if outliers > MAX_OUTLIER_RATE:
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
        run_cv=run_cv,
        bimodality=bc,
        bimodal=bimodal,
        outlier_rate=outliers,
        repeats_needed=need,
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
            str(r.repeats_needed) if r.repeats_needed < REPEATS_UNREACHABLE else "inf",
            ("yes: " + r.reason) if r.noisy else "no",
        )
        for name, r in items
    ]
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in body]
    return "\n".join(lines)
