"""False-discovery control across the metrics of one check (Benjamini-Hochberg).

Each comparison's one-sided p-value is turned into a two-sided one (a check flags both regressions and
improvements), the Benjamini-Hochberg step-up gives q-values, and a regression or improvement whose
q-value exceeds the check's FDR level is not a discovery: `no_change` where the sample resolves the threshold
(its interval is narrower than it), else `inconclusive`; an `inconclusive` that resolves the threshold and is no
discovery is `no_change` too. Verdicts are never upgraded to a regression or an improvement.
BH is valid for independent or positively dependent tests (PRDS), which is the case for metrics of one
workload that move together; under the global null it bounds the chance of any false alarm by `fdr`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from guardrail.analysis.compare import MetricComparison
from guardrail.verdicts import count


@dataclass(frozen=True)
class CheckJudgement:
    comparisons: list[MetricComparison]  # same order as given, verdicts adjusted after FDR, q_value set
    expected_false_alarms: float  # upper bound on the expected number of false regression/improvement flags
    method: str


def bh_qvalues(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input order."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(q_sorted, 1.0)
    return q


def bh_cutoff(p_values: Sequence[float], fdr: float) -> float:
    """The p-value cutoff BH uses at level `fdr` (the first rank's cutoff when nothing is rejected)."""
    p = np.sort(np.asarray(p_values, dtype=float))
    m = p.size
    if m == 0:
        return 0.0
    ok = np.nonzero(p <= fdr * np.arange(1, m + 1) / m)[0]
    return float(fdr * (ok[-1] + 1) / m) if ok.size else fdr / m


FLAGGED = ("regression", "improvement", "inconclusive")


def _not_discovered(c: MetricComparison, q: float, m: int, fdr: float) -> str:
    change = f"{c.change * 100:+.1f}%" if c.change is not None else "the change"
    level = 1.0 - float(c.details.get("alpha", 0.05))
    ci = f" ({level:.0%} CI {c.ci[0] * 100:+.1f}% to {c.ci[1] * 100:+.1f}%)" if c.ci else ""
    return (
        f"{change}{ci} is within what {count(m, 'metric')} show by chance (q={q:.2g} > {fdr:g} after false-discovery "
        "control): not counted as a change."
    )


def judge_check(comparisons: Sequence[MetricComparison], *, fdr: float = 0.05) -> CheckJudgement:
    """Apply BH across a check's comparisons; `missing` ones (no p-value) are left as they are."""
    idx = [i for i, c in enumerate(comparisons) if c.p_value is not None]
    out = list(comparisons)
    if not idx:
        return CheckJudgement(out, 0.0, "benjamini-hochberg")
    p1 = np.array([comparisons[i].p_value for i in idx], dtype=float)
    p2 = np.minimum(1.0, 2.0 * np.minimum(p1, 1.0 - p1))
    q = bh_qvalues(p2)
    for j, i in enumerate(idx):
        c = comparisons[i]
        qv = float(q[j])
        if c.verdict in FLAGGED and qv > fdr and c.details.get("resolved"):
            # Not a discovery, and the sample resolves the threshold: what is left is the noise a check of this
            # many metrics shows by chance. No change, and no rerun asked for (an A/A check stays quiet).
            out[i] = replace(c, verdict="no_change", q_value=qv, explanation=_not_discovered(c, qv, len(idx), fdr))
        elif c.verdict in ("regression", "improvement") and qv > fdr:
            why = (
                f"{c.explanation.rstrip('.')}, but not significant after false-discovery control across "
                f"{len(idx)} metrics (q={qv:.2g} > {fdr:g}): inconclusive."
            )
            out[i] = replace(c, verdict="inconclusive", q_value=qv, explanation=why)
        else:
            out[i] = replace(c, q_value=qv)
    # Under the null every p-value below the cutoff is a false alarm: m * cutoff bounds their expected count.
    expected = len(idx) * bh_cutoff(p2, fdr)
    return CheckJudgement(out, float(expected), "benjamini-hochberg")
