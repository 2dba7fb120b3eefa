"""Sample-size planning: how many repeats (fresh processes) and steps resolve a target change.

The comparison's standard error on the log scale, with k candidate repeats, is

    se(k)^2 = fixed + (between_cv^2 + within_cv^2 / steps) / k

where `fixed` is what more candidate repeats cannot shrink: night-to-night variance of the run level and
the uncertainty of the baseline level. A change `target` is detected with probability `power` at two-sided
level `alpha` when (z[1-alpha/2] + z[power]) * se <= target; when the verdict also needs the estimate to
pass a practical `threshold`, z[power] * se <= target - threshold as well.
"""

from __future__ import annotations

import math

from scipy.special import ndtri

# Returned when no number of candidate repeats can reach the target (the fixed part is already too big).
REPEATS_UNREACHABLE = 1_000_000


def se_budget(target_change: float, *, alpha: float = 0.05, power: float = 0.8, threshold: float = 0.0) -> float:
    """The largest standard error (log scale) at which `target_change` is detected with `power`."""
    target = math.log1p(abs(target_change))
    z_a = float(ndtri(1.0 - alpha / 2.0))
    z_b = float(ndtri(power))
    budget = target / (z_a + z_b)
    if threshold > 0:
        margin = target - math.log1p(threshold)
        budget = min(budget, margin / z_b) if margin > 0 else 0.0
    return budget


def repeats_needed(
    between_cv: float,
    within_cv: float,
    steps_per_repeat: float,
    target_change: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    fixed_var: float = 0.0,
    threshold: float = 0.0,
) -> int:
    """Candidate repeats needed to detect `target_change` (relative, e.g. 0.01); at least 1.

    `fixed_var` is the log-scale variance no repeat count removes (run-to-run + baseline uncertainty);
    returns REPEATS_UNREACHABLE when it alone exceeds the budget.
    """
    if target_change == 0:
        return REPEATS_UNREACHABLE
    per_repeat = between_cv**2 + within_cv**2 / max(steps_per_repeat, 1.0)
    budget = se_budget(target_change, alpha=alpha, power=power, threshold=threshold)
    room = budget * budget - fixed_var
    if room <= 0:
        return REPEATS_UNREACHABLE
    if per_repeat <= 0:
        return 1
    return max(1, min(REPEATS_UNREACHABLE, math.ceil(per_repeat / room - 1e-9)))
