"""Sequential confirmation: add repeats to an unclear result without inflating the false-alarm rate.

An `inconclusive` result, or a regression seen for the first time, may ask for more candidate repeats,
up to `max_looks` looks in all (look 1 is the ordinary check). Looking again until something turns up
would inflate the false-alarm rate, so each look k of K is tested at its own level, an increment of an
O'Brien-Fleming-type alpha-spending function (Lan & DeMets 1983):

    spent(t) = 2 - 2 * Phi(z[1 - alpha/2] / sqrt(t)),   t = k / K   (information fraction)
    level(k) = spent(k / K) - spent((k - 1) / K)

The levels sum to `alpha`, so by the union bound the chance of any false regression or improvement over
all looks is at most `alpha`, however the looks are correlated and whenever one stops (that is the
optional-stopping guarantee; it is conservative because it ignores the correlation between looks).
Early looks get tiny levels (a first-seen regression must be overwhelming to stand alone); the last look
gets most of alpha. Stopping early for `no_change` costs no error budget: it can only withhold alarms.
The information fraction assumes each look adds the same number of repeats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from scipy.special import ndtr, ndtri

from guardrail.analysis.compare import MetricComparison, compare_metric

FINAL_AT_ANY_LOOK = ("regression", "improvement", "no_change", "missing")


def obrien_fleming_spent(t: float, alpha: float) -> float:
    """Cumulative two-sided alpha spent at information fraction t in (0, 1]."""
    if t <= 0:
        return 0.0
    t = min(t, 1.0)
    return float(2.0 - 2.0 * ndtr(float(ndtri(1.0 - alpha / 2.0)) / math.sqrt(t)))


def look_alpha(look_index: int, max_looks: int, alpha: float) -> float:
    """The level of look `look_index` (1-based) of `max_looks`."""
    if not 1 <= look_index <= max_looks:
        raise ValueError(f"look_index must be in 1..{max_looks}, got {look_index}")
    return obrien_fleming_spent(look_index / max_looks, alpha) - obrien_fleming_spent(
        (look_index - 1) / max_looks, alpha
    )


@dataclass(frozen=True)
class SequentialDecision:
    action: Literal["continue", "stop"]
    comparison: MetricComparison  # this look's comparison, its CI at this look's level
    look_index: int
    max_looks: int
    look_alpha: float
    alpha_spent: float  # cumulative, including this look

    @property
    def verdict(self) -> str | None:
        """The final verdict when stopping, else None."""
        return self.comparison.verdict if self.action == "stop" else None


def sequential_decision(
    baseline: Sequence[Sequence[Sequence[float]]],
    candidate_so_far: Sequence[Sequence[float]],
    look_index: int,
    max_looks: int,
    *,
    direction: str = "lower_is_better",
    threshold: float = 0.01,
    history: Sequence[Sequence[Sequence[float]]] | None = None,
    summary: bool = False,
    alpha: float = 0.05,
) -> SequentialDecision:
    """Decide at look `look_index` (1-based): stop with a final verdict, or continue with more repeats."""
    level = look_alpha(look_index, max_looks, alpha)
    comp = compare_metric(
        baseline,
        candidate_so_far,
        direction=direction,
        threshold=threshold,
        history=history,
        summary=summary,
        alpha=level,
    )
    spent = obrien_fleming_spent(look_index / max_looks, alpha)
    if comp.verdict in FINAL_AT_ANY_LOOK or look_index == max_looks:
        note = f" (look {look_index} of {max_looks}, level {level:.2g}, alpha-spending)"
        comp = replace(comp, explanation=comp.explanation.rstrip(".") + note + ".")
        return SequentialDecision("stop", comp, look_index, max_looks, level, spent)
    return SequentialDecision("continue", comp, look_index, max_looks, level, spent)


def judge_look(decisions: Sequence[SequentialDecision]) -> list[SequentialDecision]:
    """False-discovery control across the metrics of one check at one look.

    Benjamini-Hochberg (judge_check) at this look's level: under the global null the chance of any false
    alarm at look k is at most level(k), so over all looks and all metrics it stays at most alpha. A
    regression or improvement that BH downgrades keeps going (more repeats) unless this is the last look.
    """
    from guardrail.analysis.fdr import judge_check

    if not decisions:
        return []
    level = decisions[0].look_alpha
    judged = judge_check([d.comparison for d in decisions], fdr=level).comparisons
    out = []
    for d, c in zip(decisions, judged, strict=True):
        if c.verdict != d.comparison.verdict and d.look_index < d.max_looks:
            out.append(replace(d, action="continue", comparison=c))
        else:
            out.append(replace(d, comparison=c))
    return out
