"""The statistics layer: numbers in, verdicts out (numpy/scipy only; no database, no HTTP, no torch)."""

from guardrail.analysis.changepoints import ChangePoint, detect_change_points
from guardrail.analysis.compare import MetricComparison, Verdict, compare_metric
from guardrail.analysis.fdr import CheckJudgement, judge_check
from guardrail.analysis.noise import NoiseReport, noise_report, render_noise_table
from guardrail.analysis.planner import repeats_needed

__all__ = [
    "ChangePoint",
    "CheckJudgement",
    "MetricComparison",
    "NoiseReport",
    "Verdict",
    "compare_metric",
    "detect_change_points",
    "judge_check",
    "noise_report",
    "render_noise_table",
    "repeats_needed",
]
