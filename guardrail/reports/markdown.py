"""Render a `guardrail.verdicts/v1` document as GitHub-flavoured markdown (PR comment, job summary, CLI)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

from guardrail.verdicts import (
    VerdictRow,
    VerdictsDoc,
    WorkloadError,
    baseline_lines,
    count,
    status_of,
    verdict_count,
)
from guardrail.vocabulary import DISPLAY_ORDER, Status

DEFAULT_TITLE = "Performance guardrail"

VERDICT_LABEL = {
    "output_mismatch": "❌ output mismatch",
    "regression": "🔴 regression",
    "missing": "⛔ missing baseline",
    "suspect": "🔍 suspect",
    "noisy": "🟠 noisy",
    "inconclusive": "🟡 inconclusive",
    "improvement": "🟢 improvement",
    "new": "🆕 new",
    "no_change": "⚪ no change",
}
STATUS_HEADLINE = {
    "failure": "🔴 **Performance regression**",
    "error": "⚠️ **Infrastructure error**",
    "success": "✅ **No performance regression**",
    "pending": "⏳ **Performance check pending**",
}
_UNCHANGED = {"no_change"}
_NEW = {"new"}  # a series' first run: folded like the unchanged rows, it asks nothing of the reader
# A series that cannot resolve its threshold at the lane's most repeats: a fact about the series, not about the
# change, and nothing the PR's author can act on; folded with its explanation (the `noise` command says more).
_NOISY = {"noisy"}
FOLDED = _UNCHANGED | _NEW | _NOISY  # verdicts folded away under the main table (bench/synthetic_regimes.py)

# Characters that change markdown meaning mid-line (a workload name is untrusted text). `<`, `>`, `&` are
# HTML-escaped first; with `[` `]` escaped, `(`, `)` and `!` cannot form links or images, and `#`, `+`,
# `-` only matter at the start of a line, where a cell or list item never puts them.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")

Report = VerdictsDoc | Mapping[str, Any] | None  # a document, as stored or read from a file; None: pending


# GitHub turns plain text into links after rendering markdown, on the HTML's text nodes: @user / @org/team
# mentions, #5 / org/repo#5 / GH-5 references, http(s)://, www. and e-mail autolinks. HTML entities do not
# stop that (`&#64;x` is decoded to `@x` first, then linked), and backslashes are not kept before `@` or `#`
# (GitHub still links `\@x`). A zero-width space (U+200B) inside the trigger does: the reference patterns
# need `@name`, `#123`, `scheme://`, `www.` contiguous, and the rendered text reads the same (Dependabot and
# Renovate break mentions the same way, `@&#8203;name`).
_ZWSP = "\u200b"
_AUTOLINK_TRIGGERS = re.compile(r"(@|#|://|(?i:www)\.|(?i:gh)-(?=\d))")


def _defuse(match: re.Match[str]) -> str:
    token = match.group(0)
    if token == "://":
        return ":" + _ZWSP + "//"
    if token.endswith("."):  # www.
        return token[:-1] + _ZWSP + "."
    return token + _ZWSP


# GitHub links a bare full commit SHA (40 hex digits) in a comment's text to that commit. A zero-width space after
# the 6th digit leaves no run of 7 or more of its digits from its start (the shortest SHA GitHub links). The
# comment's own commits are untouched: the run's is a code span, the baseline's range 10-digit prefixes.
_BARE_SHA = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{40}(?![0-9A-Za-z])")


def escape_md(value: Any) -> str:
    """One inert line of text from untrusted input (every user-supplied string in a report passes here):
    HTML-escaped, markdown specials backslashed, newlines flattened, and no mention, issue reference,
    commit link or autolink GitHub could make of it."""
    text = "" if value is None else str(value)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = " ".join(text.split())  # newlines would end the table row
    text = _AUTOLINK_TRIGGERS.sub(_defuse, text)
    text = _BARE_SHA.sub(lambda m: m.group(0)[:6] + _ZWSP + m.group(0)[6:], text)
    return _MD_SPECIAL.sub(r"\\\1", text)


def as_doc(doc: Report) -> VerdictsDoc | None:
    """The typed document; None while there is none yet (nothing, or an empty object: the check is pending)."""
    if doc is None or isinstance(doc, VerdictsDoc):
        return doc
    return VerdictsDoc.model_validate(doc) if doc else None


def doc_status(doc: Report) -> Status | Literal["pending"]:
    """success / failure / error / pending: the document's own `status`, or the one its rows give."""
    typed = as_doc(doc)
    return "pending" if typed is None else typed.outcome()


def derive_status(doc: Report) -> Status | Literal["pending"]:
    """From the rows alone (guardrail.verdicts.status_of): a gating regression or missing baseline → failure;
    an infrastructure error with none → error; else success."""
    typed = as_doc(doc)
    return "pending" if typed is None else status_of(typed.verdicts, typed.errors)


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


def _fmt_change(v: VerdictRow) -> str:
    change = _fmt_pct(v.change)
    if v.ci is not None and _num(v.ci[0]) is not None and _num(v.ci[1]) is not None:
        return f"{change} ({_fmt_pct(v.ci[0])} … {_fmt_pct(v.ci[1])})"
    return change


def _side(median: float | None, n: int, word: str, unit: str | None) -> str:
    val = _fmt_value(median, unit)
    return f"{val} <sub>({escape_md(count(n, word))})</sub>" if val != "—" else val


def _series_url(dashboard_url: str, v: VerdictRow) -> str:
    fields = {"workload": v.workload, "metric": v.metric, "hardware": v.hardware, "series_id": v.series_id}
    params = {k: str(x) for k, x in fields.items() if x is not None}
    return f"{dashboard_url}/series?{urlencode(params)}"


def _cells(v: VerdictRow, dashboard_url: str | None, *, compact: bool = False) -> list[str]:
    workload = escape_md(v.workload)
    metric = escape_md(v.metric)
    if v.hardware:
        workload = f"{workload} <sub>{escape_md(v.hardware)}</sub>"
    if dashboard_url:
        metric = f"[{metric}]({_series_url(dashboard_url, v)})"
    values = (
        []
        if compact
        else [
            _side(v.baseline.median, v.baseline.runs, "run", v.unit),
            _side(v.candidate.median, v.candidate.repeats, "repeat", v.unit),
        ]
    )
    return [workload, metric, *values, _fmt_change(v), VERDICT_LABEL[v.verdict] + _threshold(v)]


def _threshold(v: VerdictRow) -> str:
    """The metric family's threshold the verdict was judged at (policy `thresholds`), e.g. " <sub>±2%</sub>"."""
    t = _num(v.threshold)
    return f" <sub>±{t * 100:.3g}%</sub>" if t else ""


def _row(v: VerdictRow, dashboard_url: str | None, *, compact: bool = False) -> str:
    return "| " + " | ".join(_cells(v, dashboard_url, compact=compact)) + " |"


def _table(rows: Iterable[VerdictRow], dashboard_url: str | None, *, compact: bool = False) -> list[str]:
    """The rows as a table; `compact` (the main table, read on a phone too) leaves the values out."""
    if compact:
        lines = ["| workload | metric | change (95% CI) | verdict |", "|---|---|---:|---|"]
        return lines + [_row(v, dashboard_url, compact=True) for v in rows]
    lines = [
        "| workload | metric | baseline | candidate | change (95% CI) | verdict |",
        "|---|---|---:|---:|---:|---|",
    ]
    lines += [_row(v, dashboard_url) for v in rows]
    return lines


def _sort_key(v: VerdictRow) -> tuple[int, str, str]:
    return DISPLAY_ORDER.index(v.verdict), v.workload, v.metric


def _summary_line(doc: VerdictsDoc) -> str:
    summary = doc.summary
    if summary is None:
        summary = {}
        for v in doc.verdicts:
            summary[v.verdict] = summary.get(v.verdict, 0) + 1
    parts = [verdict_count(summary[key], key) for key in DISPLAY_ORDER if summary.get(key)]
    return ", ".join(parts) if parts else "no comparisons"


def summary_text(doc: Report) -> str:
    """One short line such as "1 regression, 29 no change" (a commit status description)."""
    typed = as_doc(doc) or VerdictsDoc()
    text = _summary_line(typed)
    n_err = len(typed.errors)
    if n_err:
        text += f", {count(n_err, 'workload error')}"
    return text


def _run_caption(doc: VerdictsDoc, dashboard_url: str | None, hosts: Mapping[str, str] | None) -> str | None:
    run = doc.run
    if run is None:
        return None
    bits = []
    if run.lane:
        bits.append(f"lane `{_code(run.lane)}`")
    if run.commit:
        bits.append(f"commit `{_code(run.commit[:12])}`")
    if run.hardware:
        bits.append("on " + ", ".join(escape_md(h) for h in run.hardware))
    if run.id is not None and dashboard_url:
        bits.append(f"[run {escape_md(run.id)}]({dashboard_url}/runs/{run.id})")
    elif run.id is not None:
        bits.append(f"run {escape_md(run.id)}")
    ci_url = _safe_url(run.url, hosts)
    if ci_url:
        bits.append(f"[CI job]({ci_url})")
    return " · ".join(bits) if bits else None


def _error_line(e: WorkloadError) -> str:
    kind = f" ({escape_md(e.kind)})" if e.kind else ""
    msg = f": {escape_md(e.message)}" if e.message else ""
    return f"- {escape_md(e.workload)}: `{_code(e.status)}`{kind}{msg}"


def profile_lines(rows: Iterable[VerdictRow], top: int = 5) -> list[str]:
    """Under the regressions: each profiled workload's top contributors (ms added per step, share of the change),
    once per workload (the step-latency row's diff where several metrics regressed), and whether they explain it."""
    chosen: dict[str, VerdictRow] = {}
    for v in rows:
        if v.verdict != "regression" or v.profile_diff is None:
            continue
        if v.workload not in chosen or v.metric == "denoise_step_latency":
            chosen[v.workload] = v
    out: list[str] = []
    for name, v in chosen.items():
        d = v.profile_diff
        assert d is not None
        against = f" against run {d.baseline_run}" if d.baseline_run is not None else ""
        out.append(f"**Top contributors: {escape_md(name)}** ({escape_md(d.time_basis or 'profile')}{against}, "
                   f"{d.change_ms:+.2f} ms per step to explain)")  # fmt: skip
        out.append("")
        for c in d.contributors[:top]:
            share = f", {100 * c.share:.0f}%" if c.share is not None else ""
            calls = f", calls {c.baseline_calls:g} → {c.candidate_calls:g}" if c.calls_changed else ""
            tag = f" ({c.status})" if c.status != "changed" else ""
            out.append(f"- `{_code(c.name)}`{tag}: {c.delta_ms:+.2f} ms per step{share}{calls}")
        if not d.contributors:
            out.append("- no op changed beyond the profiles' noise")
        if not d.explains:
            out.append(f"- ⚠️ {escape_md(d.note)}")
        elif d.explained_share is not None:
            out.append(f"- together {100 * d.explained_share:.0f}% of the change")
        out.append("")
    return out


def _why_line(v: VerdictRow) -> str:
    return f"- **{escape_md(v.workload)} / {escape_md(v.metric)}**: {escape_md(v.explanation)}"


# The unit words of a duration: a lower-is-better metric measured in one of these gets slower when it grows; one in
# any other unit (MiB, bytes, watts) grows or shrinks. No unit: a duration (most stage metrics are latencies).
_TIME_UNITS = {"ns", "us", "µs", "μs", "ms", "s", "sec", "secs", "second", "seconds", "min", "minutes", "h"}
# guardrail.analysis.planner.REPEATS_UNREACHABLE: a `repeats_needed` this large means no number of repeats resolves
# the threshold (this layer does not import the analysis layer, so the sentinel is written here too).
_UNREACHABLE = 1_000_000


def _worse_sign(v: VerdictRow) -> int:
    """+1 when a larger value is worse (latency, memory), -1 for a higher-is-better metric (throughput)."""
    return -1 if v.direction == "higher_is_better" else 1


def _verb(v: VerdictRow, worse: bool) -> str:
    timed = v.unit is None or v.unit.strip().lower() in _TIME_UNITS
    if v.direction == "higher_is_better":
        return "will lower" if worse else "raises"
    if timed:
        return "will slow" if worse else "speeds up"
    return "will raise" if worse else "lowers"


def _magnitude(v: VerdictRow, worse: bool) -> tuple[str, str | None]:
    """The change by its size in the named direction, and its 95% interval the same way round: "5.1%",
    "4.2–6.0%"."""
    sign = _worse_sign(v) * (1 if worse else -1)
    size = f"{(_num(v.change) or 0.0) * sign * 100:.1f}%"
    bounds = [_num(x) for x in v.ci] if v.ci is not None else []
    if len(bounds) != 2 or None in bounds:
        return size, None
    lo, hi = sorted(x * sign * 100 for x in bounds if x is not None)
    return size, (f"{lo:.1f}–{hi:.1f}%" if lo >= 0 else f"{lo:.1f}% to {hi:.1f}%")  # "–" after a minus misreads


def _change_phrase(v: VerdictRow, *, worse: bool) -> str:
    on = f" on {escape_md(v.hardware)}" if v.hardware else ""
    size, ci = _magnitude(v, worse)
    text = f"**{_verb(v, worse)} {escape_md(v.workload)} {escape_md(v.metric)}{on} by {size}**"
    return f"{text} (95% CI {ci})" if ci else text


def _headline(status: str, rows: list[VerdictRow]) -> str:
    """The first line: the status and the worst gating regression by its size ("will slow w m by 5.1% (95% CI
    4.2–6.0%)"), or, with none, the largest improvement ("speeds up …"); then the counts."""
    gating = [v for v in rows if not v.informational and _num(v.change) is not None]
    regressions = [v for v in gating if v.verdict == "regression"]
    improvements = [v for v in gating if v.verdict == "improvement"]
    mismatched = [v for v in rows if v.verdict == "output_mismatch"]
    if mismatched:  # a changed picture outranks any speed
        first = mismatched[0]
        more = f" and {count(len(mismatched) - 1, 'more metric')}" if len(mismatched) > 1 else ""
        what = f"{escape_md(first.workload)} {escape_md(first.metric)}"
        return f"❌ **Output changed**: {what} outside its equivalence bound{more} · "
    if status == "failure" and regressions:
        worst = max(regressions, key=lambda v: (_num(v.change) or 0.0) * _worse_sign(v))
        return f"{STATUS_HEADLINE[status]}: {_change_phrase(worst, worse=True)} · "
    if status == "success" and improvements:
        best = max(improvements, key=lambda v: -(_num(v.change) or 0.0) * _worse_sign(v))
        return f"{STATUS_HEADLINE[status]}: {_change_phrase(best, worse=False)} · "
    return f"{STATUS_HEADLINE[status]}: "


def _reachable(v: VerdictRow) -> bool:
    return v.repeats_needed is not None and 0 < v.repeats_needed < _UNREACHABLE


def _what_to_do(rows: list[VerdictRow]) -> str | None:
    """One line after the main table: the step the PR's author takes next, or None when there is none."""
    gating = [v for v in rows if not v.informational]
    steps = []
    if any(v.verdict == "output_mismatch" for v in rows):
        steps.append(
            "the output no longer matches its reference (parallel vs single device, cached vs dense): fix the "
            "strategy or the cache before any speed counts"
        )
    if any(v.verdict == "regression" for v in gating):
        steps.append("rerun `guardrail check` after a fix, or mark it expected on the alert page")
    unresolved = [v for v in gating if v.verdict == "inconclusive"]
    if unresolved:
        # The rerun policy (guardrail.analysis.perf_reruns) asks, per series, what it still needs beyond the
        # repeats run; several metrics of one workload share one rerun, so the largest request is the one run.
        extra = [max(1, (v.repeats_needed or 0) - (v.candidate.repeats or 0)) for v in unresolved if _reachable(v)]
        if extra:
            steps.append(f"the rerun policy adds the repeats it needs ({count(max(extra), 'more repeat')})")
        elif any(not v.repeats_needed for v in unresolved):
            steps.append("the rerun policy adds the repeats it needs")
        else:
            steps.append("no number of repeats resolves the inconclusive rows: a person decides")
    return f"**What to do:** {'; '.join(steps)}." if steps else None


def since_previous(current: VerdictsDoc, previous: VerdictsDoc | None) -> str | None:
    """One line on what changed since the PR's previous push: the metrics whose verdict became or stopped being
    a change (regression, improvement, missing), by name; None without a previous push."""
    if previous is None:
        return None
    changed = ("regression", "improvement", "missing")

    def key(v: VerdictRow) -> tuple[str, str, str | None]:
        return (v.workload, v.metric, v.hardware)

    before = {key(v): v.verdict for v in previous.verdicts if not v.informational}
    now = {key(v): v.verdict for v in current.verdicts if not v.informational}
    new = [k for k, v in now.items() if v in changed and before.get(k) != v]
    gone = [k for k, v in before.items() if v in changed and now.get(k) != v]
    commit = (previous.run.commit or "")[:10] if previous.run else ""
    where = f" (`{commit}`)" if commit else ""
    if not new and not gone:
        return f"**Since the previous push**{where}: no verdict changed."

    def names(keys: list[tuple[str, str, str | None]]) -> str:
        shown = [
            f"{escape_md(w)} {escape_md(mt)} ({(now.get((w, mt, h)) or 'not judged').replace('_', ' ')})"
            for w, mt, h in keys[:3]
        ]
        return ", ".join(shown) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    parts = []
    if new:
        parts.append(f"new: {names(new)}")
    if gone:
        parts.append(f"no longer flagged: {names(gone)}")
    return f"**Since the previous push**{where}: " + "; ".join(parts) + "."


def render_markdown(
    doc: Report,
    *,
    dashboard_url: str | None = None,
    collapse_unchanged: bool = True,
    title: str = DEFAULT_TITLE,
    github_server_url: str | None = None,
    previous: Report | None = None,
) -> str:
    """The whole report: headline, table of what needs attention, unchanged rows folded, errors, links.
    `github_server_url` names a GitHub Enterprise host whose Actions runs may be linked (besides github.com
    and buildkite.com); `previous`, the PR's previous push's verdicts, adds a line on what changed since."""
    dashboard_url = dashboard_url.rstrip("/") if dashboard_url else None
    status = doc_status(doc)
    typed = as_doc(doc) or VerdictsDoc()
    rows = sorted(typed.verdicts, key=_sort_key)

    out = [f"### {escape_md(title)}", ""]
    out.append(_headline(status, rows) + _summary_line(typed))
    caption = _run_caption(typed, dashboard_url, ci_hosts(github_server_url))
    if caption:
        out += ["", caption]
    # The baseline named (runs, commit range, dates, the change it starts after; main's open alerts), so a
    # reader knows what the PR was judged against and whether main had already moved.
    based = baseline_lines(typed.baseline)
    if based:
        out += ["", *(f"<sub>{escape_md(line)}</sub><br>" for line in based)]
    out.append("")

    shown = [v for v in rows if not (collapse_unchanged and v.verdict in FOLDED)]
    if shown:
        # Folding on, the main table holds the changed metrics only, in four columns a phone shows whole; the
        # values they were judged on are one click away.
        out += _table(shown, dashboard_url, compact=collapse_unchanged)
        out.append("")
    todo = _what_to_do(shown)
    if todo:
        out += [todo, ""]
    out += profile_lines(shown)
    since = since_previous(typed, as_doc(previous)) if previous is not None else None
    if since:
        out += [since, ""]
    if shown and collapse_unchanged:
        out += [
            "<details>",
            "<summary>baseline and candidate values</summary>",
            "",
            *_table(shown, dashboard_url),
            "",
            "</details>",
            "",
        ]
    folds = ((_NOISY, "too noisy to judge at {their} threshold{s}"), (_NEW, "new series"), (_UNCHANGED, "unchanged"))
    for kind, label in folds:
        folded = [v for v in rows if collapse_unchanged and v.verdict in kind]
        if folded:
            one = len(folded) == 1
            text = label.format(their="its" if one else "their", s="" if one else "s")
            # A noisy series' explanation says what it would take (its repeats, or none): kept inside the fold.
            why = [_why_line(v) for v in folded if v.explanation] if kind is _NOISY else []
            out += [
                "<details>",
                f"<summary>{len(folded)} {text}</summary>",
                "",
                *_table(folded, dashboard_url),
                "",
                *([*why, ""] if why else []),
                "</details>",
                "",
            ]
    if not rows and status == "pending":
        out += ["The performance check has not reported yet.", ""]

    if typed.errors:
        out += ["**Workloads that did not produce measurements** (not counted as regressions):", ""]
        out += [_error_line(e) for e in typed.errors]
        out.append("")

    explained = [v for v in shown if v.explanation and v.verdict not in FOLDED]
    # The explanation already says what more repeats would do (or that none would): nothing is added to it.
    why = [_why_line(v) for v in explained]
    if len(why) > 3:  # a long list would bury the table: folded, its count named
        out += [
            "<details>",
            f"<summary>Why: {count(len(why), 'explanation')}</summary>",
            "",
            *why,
            "",
            "</details>",
            "",
        ]
    elif why:
        out += ["**Why:**", "", *why, ""]

    efa = _num(typed.expected_false_alarms)
    if efa is not None:
        out.append(
            f"<sub>Expected false alarms in this check: {efa:.2g} "
            "(false-discovery rate controlled across all metrics).</sub>"
        )
    if dashboard_url:
        out.append("")
        run_id = typed.run.id if typed.run else None
        link = f"{dashboard_url}/runs/{run_id}" if run_id is not None else dashboard_url
        out.append(f"<sub>[Open in the dashboard]({link})</sub>")
    return "\n".join(out).rstrip() + "\n"


GITHUB_HOST = "github.com"
BUILDKITE_HOST = "buildkite.com"
# The CI pages a run's URL may link to, per provider host: GitHub Actions runs and Buildkite builds.
_CI_PATHS = {
    "github": re.compile(r"^/[^/]+/[^/]+/actions/runs/\d+(/|$)"),
    "buildkite": re.compile(r"^/[^/]+/[^/]+/builds/\d+(/|$)"),
}


def ci_hosts(github_server_url: str | None = None) -> dict[str, str]:
    """Host → provider of the CI pages a report links: github.com, the GitHub Enterprise host of
    `github_server_url` (Actions' GITHUB_SERVER_URL) and buildkite.com."""
    hosts = {GITHUB_HOST: "github", BUILDKITE_HOST: "buildkite"}
    ghe = urlsplit(github_server_url).hostname if github_server_url else None
    if ghe:
        hosts[ghe.lower()] = "github"
    return hosts


def _safe_url(value: Any, hosts: Mapping[str, str] | None = None) -> str | None:
    """A CI run's URL fit for a link: https, on a known CI provider's host (no user, no port), pointing at a
    run or build page; else None. The URL comes from a result file, so any other host stays unlinked."""
    if not isinstance(value, str) or not re.match(r"^https://[^\s]+$", value):
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    provider = (hosts or ci_hosts()).get(host)
    if provider is None or parts.username or parts.password or port is not None:
        return None
    if not _CI_PATHS[provider].match(parts.path):
        return None
    return quote(value, safe=":/?#[]@!$&'*+,;=%-._~")


def _code(value: Any) -> str:
    """Text for inside a code span: no backticks, one line."""
    return " ".join(str(value or "error").replace("`", "'").split())
