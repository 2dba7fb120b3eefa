"""The verdicts document (`guardrail.verdicts/v1`): built by the judge (guardrail.analysis.judgement), printed by
`check`/`compare`, stored with a check and read back with `VerdictsDoc.model_validate`, rendered into PR
comments and the dashboard. README "JSON outputs" documents its keys."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from guardrail.schema import VERDICTS_SCHEMA
from guardrail.vocabulary import BLOCKING, DISPLAY_ORDER, STATUS_RANK, Status, Verdict


class _Part(BaseModel):
    # Documents may come from other versions or tools: unknown keys are ignored on reading.
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")
    # Keys written only when they hold a value (the document has always left them out otherwise).
    omit_if_none: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _leave_out_unset_keys(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        # A statistic that came out NaN or infinite (a zero baseline, one sample) is unknown: null, since
        # json.dumps would otherwise write NaN/Infinity, which no JSON parser of a CI step reads.
        for key, value in out.items():
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = None
            elif isinstance(value, list | tuple) and any(isinstance(x, float) and not math.isfinite(x) for x in value):
                out[key] = None
        for key in self.omit_if_none:
            if out.get(key) is None:
                out.pop(key, None)
        return out


class RunInfo(_Part):
    """The run a check judged."""

    id: int | None = None
    lane: str | None = None
    hardware: list[str] = Field(default_factory=list)
    commit: str | None = None
    repo: str | None = None
    branch: str | None = None
    pr: int | None = None
    base_commit: str | None = None
    started_at: str | None = None
    url: str | None = None


class BaselineWindow(_Part):
    """The stored runs some series of one workload were judged against: the newest runs of one segment of main's
    history (between two changes), at or before the anchor."""

    omit_if_none = ("metrics", "since_alert", "since_commit")
    workload: str
    hardware: str
    metrics: list[str] | None = None  # the metrics it is for, where a workload's series use several; None: all
    runs: int = 0
    from_commit: str | None = None  # the oldest run's commit
    to_commit: str | None = None  # the newest run's commit
    first_at: str | None = None
    last_at: str | None = None
    since_alert: int | None = None  # the alert of the change on main the segment starts at
    since_commit: str | None = None
    main_alerts: list[int] = Field(default_factory=list)  # open alerts on main that made these series worse


class BaselineInfo(_Part):
    """Where the baseline came from: the lane policy and its selection (check), or the files given (compare);
    for a check, the windows of main's history its series were judged against."""

    omit_if_none = ("policy", "runs", "windows", "culprits")
    policy: str | None = None
    source: str = ""
    runs: int | None = None
    windows: list[BaselineWindow] | None = None
    culprits: dict[str, str] | None = None  # main alert id -> the commit `guardrail bisect` found for it


class BaselineSide(_Part):
    runs: int = 0
    median: float | None = None


class CandidateSide(_Part):
    repeats: int = 0
    median: float | None = None


class ProfileContributor(_Part):
    """One op (or transformer block) of a profile diff: what it costs per step on each side, and its share of the
    change explained (guardrail.analysis.profile_diff)."""

    omit_if_none = ("share",)
    name: str
    kind: str = "op"  # op | module
    status: str = "changed"  # changed | new | vanished
    delta_ms: float = 0.0
    share: float | None = None
    baseline_ms: float = 0.0
    candidate_ms: float = 0.0
    baseline_calls: float = 0.0
    candidate_calls: float = 0.0
    calls_changed: bool = False


class ProfileDiffInfo(_Part):
    """Why a regression got slower, from the profiles of its candidate run and of its newest profiled baseline run
    (`guardrail run --profile`): the top contributors, and whether they explain the change (docs/profiles.md)."""

    omit_if_none = ("baseline_run", "candidate_run", "baseline_commit", "trace", "explained_share")
    baseline_run: int | None = None
    baseline_commit: str | None = None
    candidate_run: int | None = None
    time_basis: str | None = None
    change_ms: float = 0.0  # the change explained, ms per step
    explained_ms: float = 0.0
    explained_share: float | None = None
    explains: bool = False
    note: str = ""
    contributors: list[ProfileContributor] = Field(default_factory=list)
    modules: list[ProfileContributor] = Field(default_factory=list)
    new_ops: list[str] = Field(default_factory=list)
    vanished_ops: list[str] = Field(default_factory=list)
    trace: str | None = None  # the candidate's trace file, relative to its result file


class VerdictRow(_Part):
    """One workload x metric x hardware and its verdict."""

    omit_if_none = ("profile_diff", "node_anomaly")
    workload: str
    metric: str
    hardware: str | None = None
    unit: str | None = None
    direction: str | None = None
    verdict: Verdict
    change: float | None = None  # candidate/baseline - 1 of the metric as measured (+0.034 on a latency: worse)
    ci: tuple[float, float] | None = None  # 95% confidence interval on `change`
    p_value: float | None = None  # one-sided, in the metric's worse direction
    q_value: float | None = None  # after false-discovery control across the check
    threshold: float | None = None
    repeats_needed: int | None = None
    baseline: BaselineSide = BaselineSide()
    candidate: CandidateSide = CandidateSide()
    informational: bool = False  # reported, never gates
    summary: bool = False  # values are per-run summaries (one sample per run), not per-process samples
    series_id: int | None = None
    explanation: str = ""
    # the look of sequential confirmation this verdict was reached at, of the lane's max_looks: a regression at a
    # look after the first is a confirmation, not a first sighting (the rerun plan asks for no more repeats)
    look: int = 1
    max_looks: int = 1
    # a regression whose candidate and baseline runs both carry profiles: the ops that made it slower
    profile_diff: ProfileDiffInfo | None = None
    # what the device's telemetry saw while the candidate ran (clocks held down, another process on the device,
    # ECC/XID): a regression beside one is `suspect`, rerun before anyone is blamed (runners.telemetry)
    node_anomaly: str | None = None


class WorkloadError(_Part):
    """A workload that produced no measurements (its own failure, an infrastructure error, a timeout)."""

    workload: str | None = None
    hardware: str | None = None
    status: str = "error"
    kind: str | None = None
    message: str | None = None


def status_of(verdicts: Sequence[VerdictRow], errors: Sequence[WorkloadError]) -> Status:
    """The one status rule: a blocking verdict of a gating (not informational) row fails; else any workload
    error is an infrastructure error; else success."""
    if any(v.verdict in BLOCKING for v in verdicts if not v.informational):
        return "failure"
    if errors:
        return "error"
    return "success"


class VerdictsDoc(_Part):
    """The whole document: what was judged against what, a row per series, the workloads that failed, the counts
    and the status."""

    omit_if_none = ("check_id", "runs")
    schema_id: str = Field(default=VERDICTS_SCHEMA, alias="schema")
    run: RunInfo | None = None
    baseline: BaselineInfo | None = None
    verdicts: list[VerdictRow] = Field(default_factory=list)
    errors: list[WorkloadError] = Field(default_factory=list)
    summary: dict[str, int] | None = None  # verdict -> count of gating rows
    expected_false_alarms: float | None = None
    fdr_method: str | None = None
    status: Status | None = None
    check_id: int | None = None  # set once the check is stored
    runs: list[RunInfo] | None = None  # the runs of a document merged from several checks

    @model_validator(mode="before")
    @classmethod
    def _rows_without_a_verdict_are_errors(cls, data: Any) -> Any:
        """Documents of other tools list a workload that produced no numbers as a row without a verdict."""
        if not isinstance(data, Mapping) or not isinstance(data.get("verdicts"), list):
            return data
        rows = data["verdicts"]
        failed = [r for r in rows if isinstance(r, Mapping) and not r.get("verdict")]
        if not failed:
            return data
        kept = [r for r in rows if all(r is not f for f in failed)]
        errors = [
            {
                "workload": r.get("workload"),
                "status": r.get("status") or "error",
                "kind": r.get("kind") or (r.get("error") or {}).get("kind"),
                "message": r.get("message") or (r.get("error") or {}).get("message") or r.get("explanation"),
            }
            for r in failed
        ]
        return {
            **data,
            "verdicts": kept,
            "errors": [*(data.get("errors") or []), *errors],
        }

    def outcome(self) -> Status:
        """The document's status, or the one its rows give when it names none."""
        return self.status or status_of(self.verdicts, self.errors)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, keys as documented (`schema`, not the attribute name)."""
        return self.model_dump(by_alias=True)


def merge(docs: Sequence[VerdictsDoc]) -> VerdictsDoc:
    """One document for several checks (lanes, hardware) of one commit: rows, errors and counts added up, the
    worst status, the runs listed; the first check's baseline and id stand for the whole."""
    if len(docs) == 1:
        return docs[0]
    first = docs[0]
    summary = {k: sum((d.summary or {}).get(k, 0) for d in docs) for k in first.summary or {}}
    run = first.run or RunInfo()
    return first.model_copy(
        update={
            "runs": [d.run for d in docs],
            "run": run.model_copy(update={"hardware": sorted({h for d in docs for h in (d.run or run).hardware})}),
            "verdicts": [v for d in docs for v in d.verdicts],
            "errors": [e for d in docs for e in d.errors],
            "summary": summary,
            "expected_false_alarms": round(sum(d.expected_false_alarms or 0.0 for d in docs), 4),
            "status": max((d.outcome() for d in docs), key=STATUS_RANK.__getitem__),
        }
    )


def exit_code(doc: VerdictsDoc) -> int:
    """0 nothing blocking; 1 a regression or a missing baseline; 3 only infrastructure errors."""
    return {"success": 0, "failure": 1, "error": 3}[doc.outcome()]


def count(n: int, noun: str) -> str:
    """The count and its noun, plural unless the count is one: 1 baseline run, 3 repeats."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def verdict_count(n: int, verdict: str) -> str:
    """A verdict's count in a summary line: 1 regression, 3 regressions, 2 improvements; the adjectives (noisy,
    suspect, inconclusive, missing) and "no change" take no plural."""
    if verdict in ("regression", "improvement"):
        return count(n, verdict)
    return f"{n} {verdict.replace('_', ' ')}"


def _window_key(w: BaselineWindow) -> tuple[Any, ...]:
    return (w.runs, w.from_commit, w.to_commit, w.first_at, w.last_at, w.since_alert, w.since_commit)


def _days(first: str, last: str) -> str:
    return first[:10] if first[:10] == last[:10] else f"{first[:10]}..{last[:10]}"


def baseline_lines(info: BaselineInfo | None) -> list[str]:
    """The stored runs a check was judged against, for reports: windows alike in runs and range on one line
    (naming their workloads where the windows differ), then main's open alerts on the judged series."""
    if info is None or not info.windows:
        return []
    groups: dict[tuple[Any, ...], list[BaselineWindow]] = {}
    for w in info.windows:
        groups.setdefault(_window_key(w), []).append(w)
    several_hw = len({w.hardware for w in info.windows}) > 1
    lines = []
    for ws in groups.values():
        w = ws[0]
        line = f"baseline: {count(w.runs, 'run')}"
        if w.from_commit and w.to_commit:
            line += f" {w.from_commit[:10]}..{w.to_commit[:10]}"
        if w.first_at and w.last_at:
            line += f" ({_days(w.first_at, w.last_at)})"
        if w.since_alert is not None and w.since_commit:
            line += f", since the change at {w.since_commit[:10]} (alert #{w.since_alert})"
        if len(groups) > 1:
            line += ": " + ", ".join(
                x.workload
                + (f"@{x.hardware}" if several_hw else "")
                + (f" [{', '.join(x.metrics)}]" if x.metrics else "")
                for x in ws
            )
        lines.append(line)
    main = sorted({a for w in info.windows for a in w.main_alerts})
    if main:
        found = info.culprits or {}
        alerts = ", ".join(
            f"alert #{a}" + (f" (bisected to {found[str(a)][:10]})" if str(a) in found else "") for a in main
        )
        lines.append(f"main already regressed here: {alerts} (judged against main after it, not blamed on this run)")
    return lines


def render_text(doc: VerdictsDoc) -> str:
    """A terminal report: what blocks first, then everything else in one aligned table."""
    order = {v: i for i, v in enumerate(DISPLAY_ORDER)}
    rows = sorted(doc.verdicts, key=lambda v: (v.informational, order[v.verdict], v.workload, v.metric))
    lines = []
    run = doc.run or RunInfo()
    head = {"success": "PASS", "failure": "FAIL", "error": "ERROR"}[doc.outcome()]
    where = f" run {run.id} ({run.lane}, {', '.join(run.hardware)})" if run.id else ""
    lines.append(
        f"{head}{where}: "
        + ", ".join(verdict_count(n, k) for k, n in (doc.summary or {}).items() if n)
        + f"; expected false alarms {doc.expected_false_alarms or 0.0:.2f}"
    )
    lines += [f"  {line}" for line in baseline_lines(doc.baseline)]
    if rows:
        w_wl = max(len(v.workload) for v in rows)
        w_m = max(len(v.metric) for v in rows)
        for v in rows:
            flag = "(info) " if v.informational else ""
            lines.append(
                f"  {v.verdict:<12} {v.workload:<{w_wl}}  {v.metric:<{w_m}}  {v.hardware}  {flag}{v.explanation}"
            )
    for e in doc.errors:
        lines.append(f"  {e.status:<12} {e.workload}: {e.kind or ''} {e.message or ''}".rstrip())
    return "\n".join(lines)
