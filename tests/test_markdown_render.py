"""render_markdown: the PR comment / job summary / `check --format markdown` body."""

from __future__ import annotations

import copy
import re

from guardrail.reports.markdown import derive_status, doc_status, escape_md, render_markdown

DOC = {
    "schema": "guardrail.verdicts/v1",
    "run": {
        "id": 12,
        "lane": "presubmit",
        "commit": "0123456789abcdef",
        "pr": 7,
        "hardware": ["H100"],
        "url": None,
    },
    "verdicts": [
        {
            "workload": "wan22-ti2v-5b-720p",
            "metric": "denoise_step_latency",
            "hardware": "H100",
            "verdict": "regression",
            "change": 0.034,
            "ci": [0.021, 0.047],
            "p_value": 0.0004,
            "q_value": 0.001,
            "unit": "ms",
            "direction": "lower_is_better",
            "threshold": 0.01,
            "repeats_needed": None,
            "baseline": {"runs": 10, "median": 1098.2},
            "candidate": {"repeats": 2, "median": 1135.5},
            "explanation": "3.4% slower (95% CI 2.1–4.7%), above the 1% threshold",
        },
        {
            "workload": "qwen-image-edit",
            "metric": "peak_memory",
            "hardware": "H100",
            "verdict": "no_change",
            "change": 0.0,
            "ci": [-0.001, 0.001],
            "unit": "MiB",
            "baseline": {"runs": 10, "median": 11776},
            "candidate": {"repeats": 2, "median": 11776},
            "explanation": "no change",
        },
    ],
    "summary": {
        "regression": 1,
        "improvement": 0,
        "no_change": 1,
        "inconclusive": 0,
        "noisy": 0,
        "missing": 0,
    },
    "expected_false_alarms": 0.05,
    "status": "failure",
}


def _table_rows(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| workload")]


def test_header_table_and_links():
    md = render_markdown(DOC, dashboard_url="https://perf.example.org/")
    assert md.splitlines()[2] == (
        "🔴 **Performance regression**: **will slow wan22-ti2v-5b-720p denoise\\_step\\_latency on H100 by 3.4%**"
        " (95% CI 2.1–4.7%)"
        " · 1 regression, 1 no change"
    )
    main, values = md.split("<summary>baseline and candidate values</summary>")
    assert "| workload | metric | change (95% CI) | verdict |" in main  # compact: no value columns
    reg = next(r for r in _table_rows(main) if "wan22" in r)
    assert "+3.4% (+2.1% … +4.7%)" in reg and "regression" in reg and "1,098.2" not in reg
    assert "| workload | metric | baseline | candidate | change (95% CI) | verdict |" in values
    reg = next(r for r in _table_rows(values) if "wan22" in r)
    assert "1,098.2 ms" in reg and "1,135.5 ms" in reg and "+3.4% (+2.1% … +4.7%)" in reg
    assert "https://perf.example.org/runs/12" in md
    assert "https://perf.example.org/series?workload=wan22-ti2v-5b-720p&metric=denoise_step_latency" in md
    assert "Expected false alarms in this check: 0.05" in md
    assert "3.4% slower" in md


def test_unchanged_rows_are_collapsed_and_can_be_expanded():
    md = render_markdown(DOC)
    start = md.index("<summary>1 unchanged</summary>")
    details = md[start : md.index("</details>", start)]
    assert "qwen-image-edit" in details and "wan22" not in details
    assert "1 unchanged" in details
    flat = render_markdown(DOC, collapse_unchanged=False)
    assert "<details>" not in flat
    assert len(_table_rows(flat)) == 2


def test_untrusted_names_cannot_break_the_table_or_inject_html():
    doc = copy.deepcopy(DOC)
    doc["verdicts"][0]["workload"] = "evil | <img src=x onerror=alert(1)> `code`\n| injected | row |"
    doc["verdicts"][0]["metric"] = "@octocat [link](http://x)"
    md = render_markdown(doc, dashboard_url="https://perf.example.org")
    main, values = (next(r for r in _table_rows(part) if "evil" in r) for part in md.split("<details>")[:2])
    # exactly 5 unescaped pipes: the main table's 4 columns; 7 in the values' 6 columns
    assert len(re.findall(r"(?<!\\)\|", main)) == 5
    assert len(re.findall(r"(?<!\\)\|", values)) == 7
    row = main
    assert "<img" not in md and "&lt;img" in md
    assert "`code`" not in md
    assert "@octocat" not in md  # no mention pings
    assert "injected" in row  # the newline was flattened into the same cell
    assert "[link](http://x)" not in md and "\\[link\\](http:\u200b//x)" in md


def test_escape_md_plain_names_untouched():
    assert escape_md("wan22-ti2v-5b-720p") == "wan22-ti2v-5b-720p"
    assert escape_md("a|b") == "a\\|b"
    assert escape_md(None) == ""


def test_status_mapping():
    assert derive_status(DOC) == "failure"
    ok = copy.deepcopy(DOC)
    ok["verdicts"] = ok["verdicts"][1:]
    ok.pop("status")
    assert derive_status(ok) == "success"
    missing = copy.deepcopy(ok)
    missing["verdicts"][0]["verdict"] = "missing"
    assert derive_status(missing) == "failure"
    infra = copy.deepcopy(ok)
    infra["errors"] = [{"workload": "w", "status": "infra_error", "kind": "oom", "message": "boom"}]
    assert derive_status(infra) == "error"
    assert derive_status({}) == "pending"
    assert doc_status({"status": "error", "verdicts": []}) == "error"


def test_verdictless_rows_and_errors_are_listed_not_counted():
    doc = copy.deepcopy(DOC)
    doc.pop("status")
    doc["verdicts"] = [
        DOC["verdicts"][1],
        {
            "workload": "hunyuan-image-2.1",
            "metric": None,
            "verdict": None,
            "status": "timeout",
            "message": "hung",
        },
    ]
    doc["errors"] = [{"workload": "wan22", "status": "infra_error", "kind": "device_lost", "message": "NPU 3 lost"}]
    doc["summary"] = {"no_change": 1}
    md = render_markdown(doc)
    assert doc_status(doc) == "error"
    assert "Infrastructure error" in md
    assert "hunyuan-image-2.1: `timeout`" in md
    assert "wan22: `infra_error` (device\\_lost): NPU 3 lost" in md
    assert len(_table_rows(md)) == 1


def test_pending_and_noisy():
    md = render_markdown({})
    assert "pending" in md.lower()
    doc = copy.deepcopy(DOC)
    doc["verdicts"][0].update(verdict="noisy", repeats_needed=9)
    doc.pop("status")
    doc.pop("summary")
    md = render_markdown(doc, title="Perf | NPU")
    assert md.startswith("### Perf \\| NPU")
    assert "repeats would be needed" not in md  # the explanation alone says what more repeats would do
    assert "1 noisy, 1 no change" in md


def test_counts_take_their_plural_and_no_sentinel_is_printed():
    from guardrail.reports.markdown import summary_text
    from guardrail.verdicts import VerdictsDoc, render_text

    doc = copy.deepcopy(DOC)
    reg = doc["verdicts"][0]
    doc["verdicts"] = [dict(reg, workload=f"w{i}") for i in range(3)] + [doc["verdicts"][1]]
    doc["verdicts"][0].update(baseline={"runs": 1, "median": 1098.2}, candidate={"repeats": 1, "median": 1135.5})
    unreachable = "Too noisy to judge with 1 repeat (+3.4%); no number of repeats resolves 1%: the noise is too high."
    doc["verdicts"].append(dict(reg, workload="n", verdict="noisy", repeats_needed=1_000_000, explanation=unreachable))
    doc["summary"] = {"regression": 3, "improvement": 1, "no_change": 1, "inconclusive": 0, "noisy": 1, "missing": 0}
    doc["errors"] = [{"workload": "e", "status": "timeout"}]
    md = render_markdown(doc)
    assert md.splitlines()[2] == (
        "🔴 **Performance regression**: **will slow w0 denoise\\_step\\_latency on H100 by 3.4%** (95% CI 2.1–4.7%)"
        " · 3 regressions, 1 noisy, 1 improvement, 1 no change"
    )
    values = md.split("<summary>baseline and candidate values</summary>")[1]
    w0 = next(r for r in _table_rows(values) if r.startswith("| w0 "))
    assert "1,098.2 ms <sub>(1 run)</sub> | 1,135.5 ms <sub>(1 repeat)</sub>" in w0
    w1 = next(r for r in _table_rows(values) if r.startswith("| w1 "))
    assert "1,098.2 ms <sub>(10 runs)</sub> | 1,135.5 ms <sub>(2 repeats)</sub>" in w1
    assert f"- **n / denoise\\_step\\_latency**: {unreachable}\n" in md  # nothing appended to the sentence
    assert "1000000" not in md and "1,000,000" not in md
    assert summary_text(doc) == "3 regressions, 1 noisy, 1 improvement, 1 no change, 1 workload error"
    doc["summary"] = {"regression": 1, "improvement": 2}
    doc["errors"] += [{"workload": "f", "status": "timeout"}]
    assert summary_text(doc) == "1 regression, 2 improvements, 2 workload errors"
    text = render_text(VerdictsDoc.model_validate(doc))
    assert (
        text.splitlines()[0]
        == "FAIL run 12 (presubmit, H100): 1 regression, 2 improvements; expected false alarms 0.05"
    )
    assert "1000000" not in text
