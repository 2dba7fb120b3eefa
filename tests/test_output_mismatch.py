"""`output_mismatch`: an output-equivalence metric outside its lane's bound blocks the check as a verdict of its own,
judged per repeat against the absolute bound (never against the baseline, never through false-discovery control)."""

from __future__ import annotations

import pytest

from guardrail.analysis.judgement import SeriesInput, judge
from guardrail.policy import EquivalenceBound, Policy, load_lane_policy
from guardrail.reports.markdown import render_markdown
from guardrail.verdicts import BaselineInfo, exit_code
from guardrail.vocabulary import BLOCKING


def _series(metric: str, values: list[float], *, unit: str = "dB", workload: str = "wan-ulysses2") -> SeriesInput:
    return SeriesInput(
        workload=workload,
        metric=metric,
        hardware="cpu",
        unit=unit,
        direction="higher_is_better",
        candidate=[[v] for v in values],
        baseline=[[[100.0], [100.0]]] * 3,
        history=[[[100.0], [100.0]]] * 3,
    )


def _step(level: float) -> SeriesInput:
    rep = [level * (1 + 0.001 * i) for i in range(10)]
    return SeriesInput(
        workload="wan-ulysses2",
        metric="denoise_step_latency",
        hardware="cpu",
        unit="ms",
        direction="lower_is_better",
        candidate=[rep, rep],
        baseline=[[rep, rep]] * 10,
        history=[[rep, rep]] * 10,
    )


def test_a_changed_picture_blocks_even_when_faster():
    policy = load_lane_policy("presubmit")
    doc = judge(
        [_step(100.0), _series("parallel_psnr", [48.0, 24.5]), _series("parallel_ssim", [0.99, 0.98], unit="ratio")],
        policy,
        baseline=BaselineInfo(source="test"),
    )
    by = {v.metric: v for v in doc.verdicts}
    assert by["parallel_psnr"].verdict == "output_mismatch"
    assert "1 repeat of 2 outside the equivalence bound (>= 30)" in by["parallel_psnr"].explanation
    assert (
        by["parallel_ssim"].verdict == "no_change"
        and "within the equivalence bound (>= 0.97)" in by["parallel_ssim"].explanation
    )
    assert doc.status == "failure" and exit_code(doc) == 1 and "output_mismatch" in BLOCKING
    assert doc.summary["output_mismatch"] == 1
    md = render_markdown(doc)
    assert "❌ **Output changed**: wan-ulysses2 parallel\\_psnr outside its equivalence bound" in md.splitlines()[2]
    assert "❌ output mismatch" in md and "before any speed counts" in md


def test_within_the_bound_the_baseline_does_not_matter():
    # PSNR 100 dB in the baseline (identical pictures), 40 dB now: a drop, yet inside the bound: no change.
    doc = judge(
        [_series("parallel_psnr", [40.0, 41.0])], load_lane_policy("nightly"), baseline=BaselineInfo(source="t")
    )
    assert doc.verdicts[0].verdict == "no_change" and doc.status == "success"
    assert doc.verdicts[0].q_value is None  # not put through false-discovery control


@pytest.mark.parametrize(
    ("metric", "values", "verdict"),
    [("cache_ssim", [0.89], "output_mismatch"), ("cache_ssim", [0.93], "no_change"), ("max_abs_diff_x", [9.0], None)],
)
def test_bounds_by_family_and_the_default(metric, values, verdict):
    policy = Policy(
        lane="x", equivalence={"cache_ssim": EquivalenceBound(min=0.90), "max_abs*": EquivalenceBound(max=1.0)}
    )
    doc = judge([_series(metric, values, unit="ratio")], policy, baseline=BaselineInfo(source="t"))
    assert doc.verdicts[0].verdict == (verdict or "output_mismatch")
    assert Policy(lane="y").equivalence_bound("parallel_ssim") == EquivalenceBound(min=0.97)  # the field's default
    assert Policy(lane="y").equivalence_bound("denoise_step_latency") is None
