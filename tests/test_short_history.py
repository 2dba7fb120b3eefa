"""New series and short history, on numbers alone (issue 12, point 3): a series' first run is `new`, not
`missing`; with few baseline runs the noise prior is its metric family's (measured, or wide by kind), so short
history gives `inconclusive`/`noisy`, never a false regression."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from guardrail.analysis.compare import compare_metric
from guardrail.analysis.judgement import SeriesInput, judge
from guardrail.analysis.noise_model import (
    FAMILY_MIN_CV,
    FAMILY_MIN_RUNS,
    PRIOR_BETWEEN_CV,
    WIDE_PRIOR_CV,
    family_cv,
    wide_prior_cv,
)
from guardrail.reports.markdown import render_markdown, summary_text
from guardrail.verdicts import BaselineInfo, exit_code


@dataclass(frozen=True)
class Rules:
    fdr: float = 0.05
    alpha: float = 0.05
    max_looks: int = 1
    limit: float = 0.05

    def threshold(self, metric: str) -> float:
        return self.limit

    def equivalence_bound(self, metric: str) -> None:
        return None  # no output-equivalence metrics here


def _runs(*levels: float) -> list[list[list[float]]]:
    return [[[v]] for v in levels]  # summary values: one per run


BASELINES = [_runs(100.0), _runs(100.0, 101.0), _runs(100.0, 101.0, 99.0)]


@pytest.mark.parametrize("baseline", BASELINES, ids=["1 run", "2 runs", "3 runs"])
def test_a_noisy_family_keeps_a_short_history_from_false_regressions(baseline):
    """stage_mean.queue_wait_ms +35.3% against 1-3 baseline runs, its family's CV 40%: not a regression."""
    c = compare_metric(baseline, [[135.3]], summary=True, threshold=0.05, prior_cv=0.40)
    assert c.verdict in ("inconclusive", "noisy"), c
    assert c.details["prior_used"] and c.details["prior_cv"] == 0.40
    # Under the old 2% prior for every metric the same numbers were a regression.
    assert compare_metric(baseline, [[135.3]], summary=True, threshold=0.05).verdict == "regression"


def test_a_quiet_family_still_catches_a_real_step_on_a_short_history():
    """Family CV 0.5%, 3 baseline runs: +5% is still a regression."""
    c = compare_metric(_runs(100.0, 100.3, 99.8), [[105.0]], summary=True, threshold=0.01, prior_cv=0.005)
    assert c.verdict == "regression", c
    assert c.details["prior_used"]


def test_the_prior_text_names_the_family_prior():
    c = compare_metric(_runs(100.0), [[135.3]], summary=True, threshold=0.05, prior_cv=0.40)
    assert c.explanation.endswith(
        "; only 1 baseline run: a conservative 40% noise prior applies until more baseline runs are recorded."
    ), c.explanation
    measured = compare_metric(_runs(100.0), [[104.0]], summary=True, threshold=0.01, prior_cv=0.011)
    assert "a conservative 1.1% noise prior" in measured.explanation, measured.explanation


def test_a_long_history_is_judged_on_its_own_noise():
    rng = np.random.default_rng(3)
    hist = _runs(*(100.0 * (1 + rng.normal(0, 0.004)) for _ in range(12)))
    quiet = compare_metric(hist, [[103.0]], summary=True, prior_cv=0.40)
    assert not quiet.details["prior_used"] and quiet.verdict == "regression"


@pytest.mark.parametrize(
    ("metric", "cv"),
    [
        ("stage_mean.queue_wait_ms", WIDE_PRIOR_CV),
        ("stage_mean.QwenImagePipeline.diffuse", WIDE_PRIOR_CV),
        ("mean_ttfp_ms", WIDE_PRIOR_CV),
        ("rtf", WIDE_PRIOR_CV),
        ("latency_mean", PRIOR_BETWEEN_CV),
        ("denoise_step_latency", PRIOR_BETWEEN_CV),
        ("throughput_qps", PRIOR_BETWEEN_CV),
        ("peak_memory_mb_max", PRIOR_BETWEEN_CV),
    ],
)
def test_the_wide_default_by_kind_of_metric(metric, cv):
    assert wide_prior_cv(metric) == cv


def test_family_cv_is_the_median_over_series_with_enough_runs():
    rng = np.random.default_rng(5)

    def series(cv: float, n: int = 12, step_at: int | None = None) -> list[float]:
        out = [1000.0 * (1 + rng.normal(0, cv)) for _ in range(n)]
        if step_at is not None:  # a real step (+30%) is not noise
            out[step_at:] = [v * 1.3 for v in out[step_at:]]
        return out

    cv = family_cv([series(0.01), series(0.02, step_at=6), series(0.03), series(0.5, n=FAMILY_MIN_RUNS - 1)])
    assert cv is not None and 0.01 < cv < 0.035
    assert family_cv([series(0.01), series(0.02)]) is None  # too few series to speak for the family
    assert family_cv([[5000.0] * 10] * 3) == FAMILY_MIN_CV  # constant memory: floored, not zero
    assert family_cv([[0.0] * 10, series(0.01), series(0.01)]) is None  # values <= 0 have no CV


def _series(**kw) -> SeriesInput:
    base = {"workload": "w", "metric": "latency_mean", "hardware": "H200", "unit": "s", "direction": "lower_is_better"}
    return SeriesInput(**{**base, "candidate": [[10.0]], "summary": True, **kw})


def test_a_first_run_is_new_and_passes():
    doc = judge([_series(has_history=False)], Rules(), baseline=BaselineInfo(source="nightly runs on main"))
    (row,) = doc.verdicts
    assert row.verdict == "new" and row.baseline.runs == 0 and row.candidate.median == 10.0
    assert row.explanation == "A new series: its first run here, recorded as the start of its history."
    assert doc.summary is not None and doc.summary["new"] == 1 and doc.summary["missing"] == 0
    assert doc.status == "success" and exit_code(doc) == 0
    assert "🆕 new" in render_markdown(doc) and summary_text(doc) == "1 new"


def test_no_baseline_where_there_is_history_still_fails_closed():
    doc = judge([_series(has_history=True)], Rules(), baseline=BaselineInfo(source="nightly runs on main"))
    assert doc.verdicts[0].verdict == "missing" and doc.status == "failure" and exit_code(doc) == 1


def test_a_pinned_reference_is_judged_even_for_a_new_series():
    doc = judge([_series(has_history=False, reference=10.0)], Rules(), baseline=BaselineInfo(source="reference"))
    assert doc.verdicts[0].verdict not in ("new", "missing")


def test_the_judge_takes_the_series_prior_else_the_wide_default():
    """The prior is a plain number per series; without one the judge uses the wide default of the metric."""
    stage = {"metric": "stage_mean.queue_wait_ms", "baseline": _runs(100.0), "history": _runs(100.0)}
    wide = judge([_series(**stage, candidate=[[135.3]])], Rules(), baseline=BaselineInfo())
    assert wide.verdicts[0].verdict in ("inconclusive", "noisy")
    narrow = judge([_series(**stage, candidate=[[135.3]], prior_cv=0.005)], Rules(), baseline=BaselineInfo())
    assert narrow.verdicts[0].verdict == "regression"


def test_new_series_are_folded_out_of_the_main_table():
    rows = [
        _series(workload="fresh", has_history=False),
        _series(workload="old", baseline=_runs(10.0, 10.0, 10.0), history=_runs(10.0, 10.0, 10.0), candidate=[[13.0]]),
    ]
    text = render_markdown(judge(rows, Rules(), baseline=BaselineInfo()))
    table, folded = text.split("<summary>1 new series</summary>")
    assert "🔴 regression" in table and "🆕 new" not in table
    assert "🆕 new" in folded and "fresh" in folded.split("</details>")[0]
    assert "A new series" not in text  # nothing to explain


def test_two_baseline_runs_far_apart_are_evidence_of_noise():
    """Two nights 50% apart (a step, or noise): their spread counts, so the later level is not a regression."""
    c = compare_metric(_runs(100.0, 150.0), [[150.0]], summary=True, threshold=0.01)
    assert c.verdict in ("inconclusive", "noisy"), c
    close = compare_metric(_runs(100.0, 100.2), [[105.0]], summary=True, threshold=0.01, prior_cv=0.005)
    assert close.verdict == "regression", close  # two close nights under a quiet family's prior still catch +5%
