"""The statistics layer: numbers in, verdicts out (numpy/scipy only; no database, no HTTP, no torch).

Names are imported on first use (PEP 562), so that `import guardrail.analysis.flaky_scores` (pure Python) does
not pay for scipy.
"""

import importlib

_WHERE = {
    "ChangePoint": "changepoints",
    "detect_change_points": "changepoints",
    "MetricComparison": "compare",
    "Verdict": "compare",
    "compare_metric": "compare",
    "CheckJudgement": "fdr",
    "judge_check": "fdr",
    "NoiseReport": "noise",
    "noise_report": "noise",
    "render_noise_table": "noise",
    "repeats_needed": "planner",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"guardrail.analysis.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'guardrail.analysis' has no attribute {name!r}")
