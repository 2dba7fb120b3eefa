"""The one judgement of `check` (stored history) and `compare` (result files): series in, verdicts document out.

Each series is compared with its baseline at its look (sequential.confirm_at_look; with one look in all, the
plain compare_metric), the gating series go through false-discovery control together (fdr.judge_check), a
summary series' first night off its level is `suspect` where the lane asks for confirmation, and the rows,
counts and status make the `guardrail.verdicts/v1` document. The callers only gather the inputs.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from guardrail.analysis.compare import MetricComparison, new_series
from guardrail.analysis.fdr import judge_check
from guardrail.analysis.noise_model import wide_prior_cv
from guardrail.analysis.sequential import confirm_at_look
from guardrail.verdicts import (
    BaselineInfo,
    BaselineSide,
    CandidateSide,
    RunInfo,
    VerdictRow,
    VerdictsDoc,
    WorkloadError,
    count,
    status_of,
)
from guardrail.vocabulary import VERDICTS, Verdict

Repeats = list[list[float]]  # one run: repeats (fresh processes) -> values


class Bound(Protocol):
    """An absolute bound on an output-equivalence metric (guardrail.policy.EquivalenceBound is one)."""

    def violated_by(self, value: float) -> bool: ...
    def describe(self) -> str: ...


class LaneRules(Protocol):
    """What the judgement takes from a lane's policy (guardrail.policy.Policy is one)."""

    @property
    def fdr(self) -> float: ...
    @property
    def alpha(self) -> float: ...
    @property
    def max_looks(self) -> int: ...
    def threshold(self, metric: str) -> float: ...


def _bound(rules: LaneRules, metric: str) -> Bound | None:
    """The output-equivalence bound of `metric`, where the rules have them (a lane policy does; rules built for
    one comparison may not, and then nothing is an equivalence metric)."""
    get = getattr(rules, "equivalence_bound", None)
    return get(metric) if get is not None else None


@dataclass(frozen=True)
class SeriesInput:
    """One workload x metric x hardware to judge, as plain numbers."""

    workload: str
    metric: str
    hardware: str
    unit: str
    direction: str
    candidate: Repeats  # the candidate's repeats, pooled over its looks
    baseline: list[Repeats] = field(default_factory=list)  # baseline runs, newest first
    history: list[Repeats] = field(default_factory=list)  # runs for the noise estimate (includes the baseline)
    look: int = 1  # how many results of the candidate there are: the look of sequential confirmation
    informational: bool = False  # reported, never gates (left out of false-discovery control)
    summary: bool = False  # values are per-run summaries (one sample per run)
    series_id: int | None = None
    # A pinned reference value (cold start), judged as the one baseline run of a series with no baseline.
    reference: float | None = None
    # The noise prior (a CV) while the series' own history is short: measured on its metric's family by the
    # caller, else (None) the wide default of the metric's kind (noise_model.wide_prior_cv).
    prior_cv: float | None = None
    # Whether the history the lane reads holds this series at all. Without a baseline, a series with history
    # is `missing` (fail closed); one without is `new` (its first run: recorded, never blocks).
    has_history: bool = True
    # Whether this series' previous check on the lane was already off its level (`regression` or `suspect`).
    previous_regressed: bool = False
    # A node anomaly seen while the candidate ran (its results' telemetry): a regression beside it is `suspect`.
    node_anomaly: str | None = None


def _equivalence(s: SeriesInput, bound: Bound) -> MetricComparison:
    """An output-equivalence metric is judged against its absolute bound, every repeat on its own: one picture
    outside it is a changed picture (`output_mismatch`), whatever the speed and whatever the baseline did."""
    reps = [rep for rep in s.candidate if len(rep)]
    values = [float(v) for rep in reps for v in rep]

    def made(verdict: Verdict, why: str) -> MetricComparison:
        return MetricComparison(
            verdict=verdict,
            change=None,
            ci=None,
            p_value=None,
            baseline_runs=len(s.baseline),
            baseline_median=None,
            candidate_repeats=len(reps),
            candidate_median=statistics.median(values) if values else None,
            threshold=0.0,
            explanation=why,
            details={"method": "equivalence_bound", "bound": bound.describe()},
        )

    if not values:
        return made("missing", "No candidate values for this metric.")
    bad = [i for i, rep in enumerate(reps) if any(bound.violated_by(float(v)) for v in rep)]
    unit = f" {s.unit}" if s.unit and s.unit not in ("ratio", "abs") else ""
    span = f"{min(values):.4g}{unit}" if min(values) == max(values) else f"{min(values):.4g}..{max(values):.4g}{unit}"
    if bad:
        why = (
            f"{s.metric} {span}: {count(len(bad), 'repeat')} of {len(reps)} outside the equivalence bound "
            f"({bound.describe()}): the output differs from its reference, however fast the run is."
        )
        return made("output_mismatch", why)
    why = f"{s.metric} {span}: within the equivalence bound ({bound.describe()}) in every repeat."
    return made("no_change", why)


def _compare(s: SeriesInput, rules: LaneRules, max_extra_repeats: int | None) -> MetricComparison:
    bound = _bound(rules, s.metric)
    if bound is not None:
        return _equivalence(s, bound)
    baseline, history, summary = s.baseline, s.history, s.summary
    if not baseline and s.reference is None and not s.has_history:
        return new_series(s.candidate, threshold=rules.threshold(s.metric))
    if not baseline and s.reference is not None:
        baseline = history = [[[s.reference]]]
        summary = True  # one value stands for a whole run
    return confirm_at_look(
        baseline,
        s.candidate,
        min(s.look, rules.max_looks),
        rules.max_looks,
        direction=s.direction,
        threshold=rules.threshold(s.metric),
        history=history,
        summary=summary,
        alpha=rules.alpha,
        reference=not s.baseline and s.reference is not None,
        prior_cv=s.prior_cv if s.prior_cv is not None else wide_prior_cv(s.metric),
        trend=True,  # the baseline runs are newest first (gather, compare_files)
        max_repeats=None if max_extra_repeats is None else len(s.candidate) + max_extra_repeats,
    )


SUSPECT_NOTE = "One night off its level; judged again on the next run before blaming."


def _first_night(s: SeriesInput) -> bool:
    return s.summary and not s.previous_regressed


NODE_NOTE = "It ran beside a node anomaly ({}): rerun, on another node where the CI allows, before blaming the code."


def _node_suspect(c: MetricComparison, anomaly: str) -> MetricComparison:
    return replace(c, verdict="suspect", explanation=f"{c.explanation} {NODE_NOTE.format(anomaly)}")


def _suspect(c: MetricComparison) -> MetricComparison:
    """A regression of a per-run summary that its previous run did not show: one value of one run, too little
    to blame a commit for (a node anomaly or a one-run spike looks the same). The next run confirms it."""
    return replace(c, verdict="suspect", explanation=f"{c.explanation} {SUSPECT_NOTE}")


def _round(x: float | None, nd: int = 6) -> float | None:
    return None if x is None else round(float(x), nd)


def _significant(p: float | None) -> float | None:
    return None if p is None else float(f"{p:.4g}")


def _row(s: SeriesInput, c: MetricComparison, max_looks: int) -> VerdictRow:
    return VerdictRow(
        workload=s.workload,
        metric=s.metric,
        hardware=s.hardware,
        unit=s.unit,
        direction=s.direction,
        verdict=c.verdict,
        change=_round(c.change),
        ci=(round(float(c.ci[0]), 6), round(float(c.ci[1]), 6)) if c.ci else None,
        p_value=_significant(c.p_value),
        q_value=_significant(c.q_value),
        threshold=c.threshold,
        repeats_needed=c.repeats_needed,
        baseline=BaselineSide(runs=c.baseline_runs, median=_round(c.baseline_median)),
        candidate=CandidateSide(repeats=c.candidate_repeats, median=_round(c.candidate_median)),
        informational=s.informational,
        summary=s.summary,
        series_id=s.series_id,
        explanation=c.explanation,
        look=min(s.look, max_looks),
        max_looks=max_looks,
        node_anomaly=s.node_anomaly if c.verdict == "suspect" else None,
    )


def judge(
    series: Sequence[SeriesInput],
    rules: LaneRules,
    *,
    baseline: BaselineInfo,
    run: RunInfo | None = None,
    errors: Sequence[WorkloadError] = (),
    confirm_summary_regressions: bool = False,
    max_extra_repeats: int | None = None,
) -> VerdictsDoc:
    """The verdicts document of one candidate: every series judged, false-discovery control across the gating
    ones (informational series are left as they are), rows in the order given. With
    `confirm_summary_regressions`, a summary series' regression that its previous run did not show is
    `suspect`. `max_extra_repeats` (the rerun policy's cap): a series that cannot resolve its threshold with its
    repeats plus these is `noisy`; None: only one that no number of repeats resolves."""
    comparisons = [_compare(s, rules, max_extra_repeats) for s in series]
    # False-discovery control picks what needs attention among a check's first looks. A confirmation look (a
    # rerun of a workload that look 1 picked) is a test of its own at the look's alpha-spending level, so it is
    # not put through the check-wide control a second time.
    # Output-equivalence series are absolute tests of their own bound, not discoveries among the check's metrics.
    gating = [
        i
        for i, s in enumerate(series)
        if not s.informational and min(s.look, rules.max_looks) == 1 and _bound(rules, s.metric) is None
    ]
    fdr = judge_check([comparisons[i] for i in gating], fdr=rules.fdr)
    for i, adjusted in zip(gating, fdr.comparisons, strict=True):
        comparisons[i] = adjusted
    for i, s in enumerate(series):
        c = comparisons[i]
        if c.verdict == "regression" and s.node_anomaly:
            comparisons[i] = _node_suspect(c, s.node_anomaly)
        elif confirm_summary_regressions and not s.informational and c.verdict == "regression" and _first_night(s):
            comparisons[i] = _suspect(c)
    rows = [_row(s, c, rules.max_looks) for s, c in zip(series, comparisons, strict=True)]
    summary: Counter[str] = Counter(dict.fromkeys(VERDICTS, 0))
    summary.update(r.verdict for r in rows if not r.informational)
    return VerdictsDoc(
        run=run,
        baseline=baseline,
        verdicts=rows,
        errors=list(errors),
        summary=dict(summary),
        expected_false_alarms=round(fdr.expected_false_alarms, 4),
        fdr_method=fdr.method,
        status=status_of(rows, errors),
    )
