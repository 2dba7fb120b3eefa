"""Render a `guardrail.verdicts/v1` document as GitHub-flavoured markdown (PR comment, job summary, CLI)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

DEFAULT_TITLE = "Performance guardrail"

# Order in the table: what needs attention first.
VERDICT_ORDER = ("regression", "missing", "noisy", "inconclusive", "improvement", "no_change")
VERDICT_LABEL = {
    "regression": "🔴 regression",
    "missing": "⛔ missing baseline",
    "noisy": "🟠 noisy",
    "inconclusive": "🟡 inconclusive",
    "improvement": "🟢 improvement",
    "no_change": "⚪ no change",
}
STATUS_HEADLINE = {
    "failure": "🔴 **Performance regression**",
    "error": "⚠️ **Infrastructure error**",
    "success": "✅ **No performance regression**",
    "pending": "⏳ **Performance check pending**",
}
_UNCHANGED = {"no_change"}

# Characters that change markdown meaning mid-line (a workload name is untrusted text). `<`, `>`, `&` are
# HTML-escaped first; with `[` `]` escaped, `(`, `)` and `!` cannot form links or images, and `#`, `+`,
# `-` only matter at the start of a line, where a cell or list item never puts them.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def escape_md(value: Any) -> str:
    """One safe line of table text: HTML-escaped, markdown specials backslashed, newlines flattened."""
    text = "" if value is None else str(value)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = " ".join(text.split())  # newlines would end the table row
    text = text.replace("@", "@\u200b")  # no accidental @mentions of users or teams
    return _MD_SPECIAL.sub(r"\\\1", text)


def doc_status(doc: Mapping[str, Any]) -> str:
    """success / failure / error / pending, from the document's own `status` or derived from its rows."""
    status = doc.get("status")
    if status in STATUS_HEADLINE:
        return str(status)
    return derive_status(doc)


def derive_status(doc: Mapping[str, Any]) -> str:
    """Any regression or missing → failure; infra error with no regression → error; else success."""
    verdicts = list(doc.get("verdicts") or [])
    if not verdicts and not doc.get("errors"):
        return "pending" if not doc else "success"
    kinds = {v.get("verdict") for v in verdicts}
    if kinds & {"regression", "missing"}:
        return "failure"
    if _errors(doc):
        return "error"
    return "success"


def _errors(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Infra errors from `errors` plus verdict-less rows (a workload that did not produce numbers)."""
    out = [dict(e) for e in (doc.get("errors") or []) if isinstance(e, Mapping)]
    for v in doc.get("verdicts") or []:
        if not v.get("verdict"):
            out.append(
                {
                    "workload": v.get("workload"),
                    "status": v.get("status") or "error",
                    "kind": v.get("kind") or (v.get("error") or {}).get("kind"),
                    "message": v.get("message") or (v.get("error") or {}).get("message") or v.get("explanation"),
                }
            )
    return out


def _num(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _fmt_value(x: Any, unit: str | None) -> str:
    f = _num(x)
    if f is None:
        return "—"
    if abs(f) >= 1000:
        s = f"{f:,.0f}" if f.is_integer() else f"{f:,.1f}"
    elif abs(f) >= 100:
        s = f"{f:.1f}"
    elif abs(f) >= 1:
        s = f"{f:.2f}"
    else:
        s = f"{f:.3g}"
    return f"{s} {escape_md(unit)}" if unit else s


def _fmt_pct(x: Any) -> str:
    f = _num(x)
    return "—" if f is None else f"{f * 100:+.1f}%"


def _fmt_change(v: Mapping[str, Any]) -> str:
    change = _fmt_pct(v.get("change"))
    ci = v.get("ci")
    if isinstance(ci, list | tuple) and len(ci) == 2 and _num(ci[0]) is not None and _num(ci[1]) is not None:
        return f"{change} ({_fmt_pct(ci[0])} … {_fmt_pct(ci[1])})"
    return change


def _side(v: Mapping[str, Any], key: str) -> str:
    side = v.get(key)
    if isinstance(side, Mapping):
        val = _fmt_value(side.get("median"), v.get("unit"))
        n = side.get("runs") if key == "baseline" else side.get("repeats")
        if n is not None and val != "—":
            word = "runs" if key == "baseline" else "repeats"
            return f"{val} <sub>({escape_md(n)} {word})</sub>"
        return val
    return _fmt_value(side, v.get("unit"))


def _series_url(dashboard_url: str, v: Mapping[str, Any]) -> str:
    params = {k: str(v[k]) for k in ("workload", "metric", "hardware", "series_id") if v.get(k) is not None}
    return f"{dashboard_url}/series?{urlencode(params)}"


def _row(v: Mapping[str, Any], dashboard_url: str | None) -> str:
    workload = escape_md(v.get("workload"))
    metric = escape_md(v.get("metric"))
    if v.get("hardware"):
        workload = f"{workload} <sub>{escape_md(v.get('hardware'))}</sub>"
    if dashboard_url:
        metric = f"[{metric}]({_series_url(dashboard_url, v)})"
    verdict = str(v.get("verdict"))
    label = VERDICT_LABEL.get(verdict, escape_md(verdict))
    cells = [workload, metric, _side(v, "baseline"), _side(v, "candidate"), _fmt_change(v), label]
    return "| " + " | ".join(cells) + " |"


def _table(rows: Iterable[Mapping[str, Any]], dashboard_url: str | None) -> list[str]:
    lines = [
        "| workload | metric | baseline | candidate | change (95% CI) | verdict |",
        "|---|---|---:|---:|---:|---|",
    ]
    lines += [_row(v, dashboard_url) for v in rows]
    return lines


def _sort_key(v: Mapping[str, Any]) -> tuple[int, str, str]:
    verdict = v.get("verdict")
    rank = VERDICT_ORDER.index(verdict) if verdict in VERDICT_ORDER else len(VERDICT_ORDER)
    return rank, str(v.get("workload")), str(v.get("metric"))


def _summary_line(doc: Mapping[str, Any], rows: list[Mapping[str, Any]]) -> str:
    summary = doc.get("summary")
    if not isinstance(summary, Mapping):
        summary = {}
        for v in rows:
            summary[v.get("verdict")] = summary.get(v.get("verdict"), 0) + 1
    parts = []
    for key in VERDICT_ORDER:
        n = summary.get(key) or 0
        if n:
            parts.append(f"{n} {key.replace('_', ' ')}")
    return ", ".join(parts) if parts else "no comparisons"


def summary_text(doc: Mapping[str, Any]) -> str:
    """One short line such as "1 regression, 29 no change" (a commit status description)."""
    rows = [v for v in (doc.get("verdicts") or []) if isinstance(v, Mapping) and v.get("verdict")]
    text = _summary_line(doc, rows)
    n_err = len(_errors(doc))
    if n_err:
        text += f", {n_err} workload error{'s' if n_err > 1 else ''}"
    return text


def _run_caption(doc: Mapping[str, Any], dashboard_url: str | None) -> str | None:
    run = doc.get("run")
    if not isinstance(run, Mapping):
        return None
    bits = []
    if run.get("lane"):
        bits.append(f"lane `{_code(run['lane'])}`")
    commit = run.get("commit")
    if commit:
        bits.append(f"commit `{_code(str(commit)[:12])}`")
    hardware = run.get("hardware")
    if hardware:
        hw = hardware if isinstance(hardware, list | tuple) else [hardware]
        bits.append("on " + ", ".join(escape_md(h) for h in hw))
    run_id = run.get("id")
    if run_id is not None and dashboard_url:
        bits.append(f"[run {escape_md(run_id)}]({dashboard_url}/runs/{run_id})")
    elif run_id is not None:
        bits.append(f"run {escape_md(run_id)}")
    ci_url = _safe_url(run.get("url"))
    if ci_url:
        bits.append(f"[CI job]({ci_url})")
    return " · ".join(bits) if bits else None


def render_markdown(
    doc: Mapping[str, Any],
    *,
    dashboard_url: str | None = None,
    collapse_unchanged: bool = True,
    title: str = DEFAULT_TITLE,
) -> str:
    """The whole report: headline, table of what needs attention, unchanged rows folded, errors, links."""
    dashboard_url = dashboard_url.rstrip("/") if dashboard_url else None
    status = doc_status(doc)
    all_rows = [v for v in (doc.get("verdicts") or []) if isinstance(v, Mapping)]
    rows = sorted((v for v in all_rows if v.get("verdict")), key=_sort_key)
    errors = _errors(doc)

    out = [f"### {escape_md(title)}", ""]
    out.append(f"{STATUS_HEADLINE.get(status, escape_md(status))}: {_summary_line(doc, rows)}")
    caption = _run_caption(doc, dashboard_url)
    if caption:
        out += ["", caption]
    out.append("")

    shown = [v for v in rows if not (collapse_unchanged and v.get("verdict") in _UNCHANGED)]
    folded = [v for v in rows if collapse_unchanged and v.get("verdict") in _UNCHANGED]
    if shown:
        out += _table(shown, dashboard_url)
        out.append("")
    if folded:
        out += [
            "<details>",
            f"<summary>{len(folded)} unchanged</summary>",
            "",
            *_table(folded, dashboard_url),
            "",
            "</details>",
            "",
        ]
    if not rows and status == "pending":
        out += ["The performance check has not reported yet.", ""]

    if errors:
        out += ["**Workloads that did not produce measurements** (not counted as regressions):", ""]
        for e in errors:
            kind = f" ({escape_md(e.get('kind'))})" if e.get("kind") else ""
            msg = f": {escape_md(e.get('message'))}" if e.get("message") else ""
            out.append(f"- {escape_md(e.get('workload'))}: `{_code(e.get('status'))}`{kind}{msg}")
        out.append("")

    explained = [v for v in rows if v.get("explanation") and v.get("verdict") not in _UNCHANGED]
    if explained:
        out += ["**Why:**", ""]
        for v in explained:
            out.append(
                f"- **{escape_md(v.get('workload'))} / {escape_md(v.get('metric'))}**: "
                f"{escape_md(v.get('explanation'))}"
            )
            if v.get("verdict") == "noisy" and v.get("repeats_needed"):
                out[-1] += f" — about {escape_md(v['repeats_needed'])} repeats would be needed."
        out.append("")

    efa = _num(doc.get("expected_false_alarms"))
    if efa is not None:
        out.append(
            f"<sub>Expected false alarms in this check: {efa:.2g} "
            "(false-discovery rate controlled across all metrics).</sub>"
        )
    if dashboard_url:
        out.append("")
        run_id = (doc.get("run") or {}).get("id") if isinstance(doc.get("run"), Mapping) else None
        link = f"{dashboard_url}/runs/{run_id}" if run_id is not None else dashboard_url
        out.append(f"<sub>[Open in the dashboard]({link})</sub>")
    return "\n".join(out).rstrip() + "\n"


def _safe_url(value: Any) -> str | None:
    """An http(s) URL fit for a markdown link target, else None (the URL may come from untrusted input)."""
    if not isinstance(value, str) or not re.match(r"^https?://[^\s]+$", value):
        return None
    return quote(value, safe=":/?#[]@!$&'*+,;=%-._~")


def _code(value: Any) -> str:
    """Text for inside a code span: no backticks, one line."""
    return " ".join(str(value or "error").replace("`", "'").split())
