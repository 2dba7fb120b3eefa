"""The PR comment reads in five seconds (issue 14 point 6): a headline naming the worst change, a compact table of
the changed metrics only, the "Why" list folded when long, the baseline named, and one line on what to do."""

from __future__ import annotations

from guardrail.reports.markdown import render_markdown


def row(workload: str, verdict: str, change: float, ci: tuple[float, float], **extra) -> dict:
    return {
        "workload": workload,
        "metric": extra.pop("metric", "denoise_step_latency"),
        "verdict": verdict,
        "change": change,
        "ci": list(ci),
        "unit": extra.pop("unit", "ms"),
        "direction": extra.pop("direction", "lower_is_better"),
        "threshold": 0.01,
        "baseline": {"runs": 10, "median": 100.0},
        "candidate": {"repeats": 2, "median": 100.0 * (1 + change)},
        "explanation": extra.pop("explanation", f"{workload}: {change:+.1%}"),
        **extra,
    }


def report(*rows: dict, status: str | None = None, **extra) -> dict:
    doc = {"schema": "guardrail.verdicts/v1", "verdicts": list(rows), **extra}
    if status:
        doc["status"] = status
    return doc


def headline(md: str) -> str:
    return md.splitlines()[2]


def main_part(md: str) -> str:
    """The comment before its first fold: what a reader sees without expanding anything."""
    return md.split("<details>")[0]


def test_the_headline_names_the_worst_regression_by_its_size():
    md = render_markdown(
        report(
            row("qwen-image", "regression", 0.021, (0.012, 0.03)),
            row("wan22-ti2v-5b", "regression", 0.051, (0.042, 0.060)),
            row("flux", "improvement", -0.2, (-0.25, -0.15)),  # larger, but an improvement
            row("hunyuan", "regression", 0.09, (0.05, 0.12), informational=True),  # never gates
        )
    )
    assert headline(md) == (
        "🔴 **Performance regression**: **will slow wan22-ti2v-5b denoise\\_step\\_latency by 5.1%** (95% CI 4.2–6.0%)"
        " · 3 regressions, 1 improvement"  # the counts take every row when the document has none
    )


def test_a_higher_is_better_metric_is_lowered_and_its_interval_turned_round():
    md = render_markdown(
        report(
            row("wan22", "regression", 0.03, (0.02, 0.04)),
            row(
                "wan22",
                "regression",
                -0.08,
                (-0.1, -0.06),
                metric="throughput",
                unit="img/s",
                direction="higher_is_better",
            ),
        )
    )
    assert headline(md).startswith(
        "🔴 **Performance regression**: **will lower wan22 throughput by 8.0%** (95% CI 6.0–10.0%) · "
    )


def test_a_memory_metric_is_raised_not_slowed():
    md = render_markdown(report(row("qwen", "regression", 0.04, (0.03, 0.05), metric="peak_memory", unit="MiB")))
    assert headline(md).startswith(
        "🔴 **Performance regression**: **will raise qwen peak\\_memory by 4.0%** (95% CI 3.0–5.0%)"
    )


def test_improvements_without_a_regression_speed_it_up():
    md = render_markdown(
        report(
            row("wan22", "improvement", -0.031, (-0.04, -0.022)),
            row("qwen", "improvement", -0.012, (-0.02, -0.004)),
            row("flux", "no_change", 0.0, (-0.002, 0.002)),
        )
    )
    assert headline(md) == (
        "✅ **No performance regression**: **speeds up wan22 denoise\\_step\\_latency by 3.1%** (95% CI 2.2–4.0%)"
        " · 2 improvements, 1 no change"
    )
    assert "What to do" not in md  # nothing to do


def test_nothing_changed_keeps_the_status_headline_and_no_table_or_step():
    md = render_markdown(report(row("a", "no_change", 0.0, (-0.01, 0.01)), row("b", "no_change", 0.0, (-0.01, 0.01))))
    assert headline(md) == "✅ **No performance regression**: 2 no change"
    assert "| workload |" not in main_part(md)
    assert "What to do" not in md and "**Why:**" not in md


def test_the_main_table_holds_the_changed_metrics_in_four_columns_and_the_values_fold():
    verdicts = ["regression", "missing", "suspect", "inconclusive", "improvement", "noisy", "new", "no_change"]
    md = render_markdown(report(*(row(f"w-{v}", v, 0.02, (0.01, 0.03)) for v in verdicts)))
    main = main_part(md)
    table = [line for line in main.splitlines() if line.startswith("| w-")]
    assert [line.split(" | ")[0][2:] for line in table] == [
        "w-regression",
        "w-missing",
        "w-suspect",
        "w-inconclusive",
        "w-improvement",
    ]
    assert "| workload | metric | change (95% CI) | verdict |" in main
    assert all(line.count(" | ") == 3 for line in table)
    assert "100.0 ms" not in main  # the values are one click away
    values = md.split("<summary>baseline and candidate values</summary>")[1].split("</details>")[0]
    assert "| w-regression | denoise\\_step\\_latency | 100.0 ms <sub>(10 runs)</sub> | 102.0 ms" in values
    assert "w-noisy" not in values and "w-no_change" not in values
    # The folds of noisy, new and unchanged rows stay as they were, one count each, singular.
    assert "<summary>1 too noisy to judge at its threshold</summary>" in md
    assert "<summary>1 new series</summary>" in md and "<summary>1 unchanged</summary>" in md


def test_the_why_list_covers_the_main_table_only_and_folds_past_three():
    three = [row(f"r{i}", "regression", 0.02, (0.01, 0.03), explanation=f"reason {i}") for i in range(3)]
    quiet = row("u", "no_change", 0.0, (-0.01, 0.01), explanation="inside the threshold")
    md = render_markdown(report(*three, quiet))
    why = main_part(md.split("**Why:**")[1])
    assert "reason 0" in why and "reason 2" in why and "inside the threshold" not in md.split("**Why:**")[1]

    four = [*three, row("r3", "inconclusive", 0.004, (-0.01, 0.02), explanation="reason 3")]
    md = render_markdown(report(*four, quiet))
    assert "**Why:**" not in md
    fold = md.split("<summary>Why: 4 explanations</summary>")[1].split("</details>")[0]
    assert all(f"reason {i}" in fold for i in range(4))


def test_the_baseline_stays_visible():
    window = {
        "workload": "wan22",
        "hardware": "Ascend910B3",
        "runs": 4,
        "from_commit": "aaaaaaaaaaaaaaaa",
        "to_commit": "bbbbbbbbbbbbbbbb",
        "main_alerts": [9],
    }
    md = render_markdown(
        report(row("wan22", "regression", 0.05, (0.03, 0.07)), baseline={"source": "lane", "windows": [window]})
    )
    assert "baseline: 4 runs aaaaaaaaaa..bbbbbbbbbb" in main_part(md)
    assert "main already regressed here: alert #\u200b9" in main_part(md)


def test_what_to_do_follows_the_table():
    md = render_markdown(report(row("wan22", "regression", 0.05, (0.03, 0.07)), row("b", "no_change", 0, (0, 0))))
    main = main_part(md)
    step = "**What to do:** rerun `guardrail check` after a fix, or mark it expected on the alert page."
    assert step in main and main.index("| wan22 ") < main.index(step)

    # Inconclusive: the repeats the rerun policy adds beyond those run, the largest request of them.
    maybe = [
        row("a", "inconclusive", 0.004, (-0.01, 0.02), repeats_needed=8),
        row("b", "inconclusive", 0.004, (-0.01, 0.02), repeats_needed=5),
    ]
    md = render_markdown(report(*maybe))
    assert "**What to do:** the rerun policy adds the repeats it needs (6 more repeats)." in main_part(md)
    md = render_markdown(report(row("a", "inconclusive", 0.004, (-0.01, 0.02), repeats_needed=3)))
    assert "(1 more repeat)." in md
    md = render_markdown(report(row("a", "inconclusive", 0.004, (-0.01, 0.02), repeats_needed=1_000_000)))
    assert "no number of repeats resolves" in md and "1000000" not in md and "more repeat" not in md

    both = render_markdown(report(row("r", "regression", 0.05, (0.03, 0.07)), *maybe))
    assert "alert page; the rerun policy adds the repeats it needs (6 more repeats)." in both


def test_each_changed_row_names_the_threshold_of_its_metric_family():
    """Thresholds by family (issue 12 point 7) are shown where the verdict is: peak memory judged at 2%, a latency
    at 1%."""
    memory = row("wan22", "regression", 0.031, (0.025, 0.037), metric="peak_memory_mb_max", unit="MiB")
    memory["threshold"] = 0.02
    md = main_part(render_markdown(report(memory, row("wan22", "regression", 0.015, (0.012, 0.018)))))
    lines = {line.split("|")[2].strip(): line for line in md.splitlines() if line.startswith("| wan22")}
    assert lines[r"peak\_memory\_mb\_max"].rstrip(" |").endswith("<sub>±2%</sub>")
    assert lines[r"denoise\_step\_latency"].rstrip(" |").endswith("<sub>±1%</sub>")


def test_a_line_says_what_changed_since_the_previous_push():
    latency = row("wan22", "regression", 0.031, (0.025, 0.037))
    now = report(latency, row("qwen", "no_change", 0.001, (-0.002, 0.004)), run={"commit": "b" * 40})
    before = report(
        row("wan22", "no_change", 0.0, (-0.003, 0.003)),
        row("qwen", "regression", 0.02, (0.012, 0.028)),
        run={"commit": "a" * 40},
    )
    md = main_part(render_markdown(now, previous=before))
    (line,) = [x for x in md.splitlines() if x.startswith("**Since the previous push**")]
    assert "`aaaaaaaaaa`" in line
    assert r"new: wan22 denoise\_step\_latency (regression)" in line
    assert r"no longer flagged: qwen denoise\_step\_latency (no change)" in line
    same = main_part(render_markdown(now, previous=now))
    assert "**Since the previous push** (`bbbbbbbbbb`): no verdict changed." in same
    assert "Since the previous push" not in render_markdown(now)
