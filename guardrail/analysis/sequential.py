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

`confirm_at_look` is the rule a check applies: the plain comparison's verdict where the look settles it,
else `inconclusive` with the repeats the next look needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from scipy.special import ndtr, ndtri

from guardrail.analysis.compare import MetricComparison, compare_metric
from guardrail.analysis.noise_model import PRIOR_BETWEEN_CV
from guardrail.analysis.planner import REPEATS_UNREACHABLE
from guardrail.verdicts import count
from guardrail.vocabulary import SETTLED


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


def _decide(
    compare: Callable[[float], MetricComparison], look_index: int, max_looks: int, alpha: float
) -> SequentialDecision:
    """The look's decision, given the comparison at a level (`compare(level)`)."""
    level = look_alpha(look_index, max_looks, alpha)
    comp = compare(level)
    spent = obrien_fleming_spent(look_index / max_looks, alpha)
    if comp.verdict in SETTLED or look_index == max_looks:
        note = f" (look {look_index} of {max_looks}, level {level:.2g}, alpha-spending)"
        comp = replace(comp, explanation=comp.explanation.rstrip(".") + note + ".")
        return SequentialDecision("stop", comp, look_index, max_looks, level, spent)
    return SequentialDecision("continue", comp, look_index, max_looks, level, spent)


def _comparer(
    baseline: Sequence[Sequence[Sequence[float]]],
    candidate: Sequence[Sequence[float]],
    **series: Any,
) -> Callable[[float], MetricComparison]:
    """compare_metric of one series at a chosen level: the looks differ only in alpha."""
    return lambda level: compare_metric(baseline, candidate, alpha=level, **series)


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
    reference: bool = False,
    prior_cv: float = PRIOR_BETWEEN_CV,
    trend: bool = False,
    max_repeats: int | None = None,
) -> SequentialDecision:
    """Decide at look `look_index` (1-based): stop with a final verdict, or continue with more repeats."""
    compare = _comparer(
        baseline, candidate_so_far, direction=direction, threshold=threshold, history=history,
        summary=summary, reference=reference, prior_cv=prior_cv, trend=trend, max_repeats=max_repeats,
    )  # fmt: skip
    return _decide(compare, look_index, max_looks, alpha)


def confirm_at_look(
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
    reference: bool = False,
    prior_cv: float = PRIOR_BETWEEN_CV,
    trend: bool = False,
    max_repeats: int | None = None,
) -> MetricComparison:
    """The verdict at look `look_index` of `max_looks`: tested at the look's alpha-spending level, so the error
    rate holds however many looks are taken; an unclear or not yet overwhelming result is `inconclusive` and
    says how many repeats the next look needs. The interval shown stays the plain 95% one. With one look in
    all this is the plain comparison."""
    compare = _comparer(
        baseline, candidate_so_far, direction=direction, threshold=threshold, history=history,
        summary=summary, reference=reference, prior_cv=prior_cv, trend=trend, max_repeats=max_repeats,
    )  # fmt: skip
    plain = compare(alpha)
    if max_looks == 1:
        return plain
    decision = _decide(compare, look_index, max_looks, alpha)
    note = f"look {look_index} of {max_looks}"
    if decision.action == "stop" and decision.comparison.verdict != plain.verdict:
        return decision.comparison
    # Stopping for no_change spends no error budget (it only withholds alarms), so it is final at any look.
    if decision.action == "stop" or plain.verdict == "no_change":
        return replace(plain, explanation=f"{plain.explanation.rstrip('.')} ({note}).")
    if plain.verdict == "noisy":  # more repeats of this kind cannot settle it: say so, don't ask for a rerun
        return plain
    was = {"regression": "looks like a regression", "improvement": "looks like an improvement"}.get(plain.verdict)
    why = f"{was} but must be confirmed" if was else "unresolved"
    need, ran = plain.repeats_needed or 0, plain.candidate_repeats
    if need >= REPEATS_UNREACHABLE:  # no rerun can settle it: never print the sentinel, never ask for one
        return replace(plain, verdict="inconclusive", explanation=f"{plain.explanation.rstrip('.')}; {why} ({note}).")
    # The repeats a look adds: what resolves the threshold, and at least as many as each look so far had (the
    # information fraction k/K assumes equal looks; one repeat more would confirm almost nothing).
    extra = max(1, need - ran, ran // look_index)
    return replace(
        plain,
        verdict="inconclusive",
        repeats_needed=ran + extra,
        explanation=f"{plain.explanation.rstrip('.')}; {why} ({note}): rerun with {count(extra, 'more repeat')} "
        f"({ran + extra} in all).",
    )
