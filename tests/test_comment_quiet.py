"""An unchanged PR's comment is quiet: unchanged and noisy rows are folded, no main table, no "Why" list."""

from __future__ import annotations

from guardrail.reports.markdown import render_markdown


def _row(metric: str, verdict: str, explanation: str) -> dict:
    return {
        "workload": "wan22-ti2v-5b-720p",
        "metric": metric,
        "hardware": "H100",
        "verdict": verdict,
        "change": 0.004,
        "ci": [-0.012, 0.02],
        "unit": "ms",
        "direction": "lower_is_better",
        "threshold": 0.01,
        "baseline": {"runs": 10, "median": 100.0},
        "candidate": {"repeats": 2, "median": 100.4},
        "explanation": explanation,
    }


def test_unchanged_and_noisy_rows_leave_no_main_table_and_keep_the_noisy_reason_in_its_fold():
    noisy_why = "Too noisy to judge with 2 repeats (+0.4%, 95% CI -1.2% to +2.0%); no number of repeats resolves 1%."
    doc = {
        "schema": "guardrail.verdicts/v1",
        "verdicts": [_row(f"m{i}", "no_change", "+0.4% inside the threshold.") for i in range(29)]
        + [_row("latency_mean", "noisy", noisy_why)],
        "summary": {"no_change": 29, "noisy": 1},
        "status": "success",
    }
    md = render_markdown(doc)
    before_folds = md.split("<details>")[0]
    assert "| workload |" not in before_folds  # no main table
    assert "**Why:**" not in md
    noisy_fold = md.split("<details>")[1]
    assert "1 too noisy to judge at its threshold" in noisy_fold
    assert noisy_why in noisy_fold


def test_a_regression_still_gets_the_main_table_and_its_reason():
    doc = {
        "schema": "guardrail.verdicts/v1",
        "verdicts": [_row("m0", "no_change", "inside."), _row("latency_mean", "regression", "+3.4% (worse).")],
        "status": "failure",
    }
    md = render_markdown(doc)
    assert "| workload |" in md.split("<details>")[0]
    assert "**Why:**" in md and "+3.4% (worse)." in md
