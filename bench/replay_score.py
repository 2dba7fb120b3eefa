"""Scoring of the corpus replay (pure): which detections real events explain, events found, false-alarm
nights and alerts per real change, for the guardrail and the rules it is compared with."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from replay_events import Event, short_range, short_workload


@dataclass(frozen=True)
class Detection:
    """One thing a method raised: a failing check's cause, an alert, an alarm of a rule, a change point."""

    hardware: str
    workload: str
    metrics: tuple[str, ...]
    night: str  # the night it belongs to: its run's, or the first night after the change
    commit_range: tuple[str | None, str | None] | None  # (last before, first after), where known
    source: str = "alarm"  # "check", "missing", "alert:<kind>" or "alarm" (rules, Otava)
    ident: int | None = None  # an alert's id

    @property
    def is_alert(self) -> bool:
        return self.source == "alarm" or self.source.startswith("alert")

    @property
    def has_range(self) -> bool:
        return self.commit_range is not None and all(self.commit_range)

    def explained_by(self, event: Event, metric: str) -> bool:
        """Located by its commit range where it has one (a wrong range is not the event), else by its night."""
        if self.has_range:
            return event.explains_detection(self.hardware, self.workload, metric, commit_range=self.commit_range)
        return event.explains_detection(self.hardware, self.workload, metric, night=self.night)

    def where(self) -> str:
        return short_range(*self.commit_range) if self.has_range and self.commit_range else self.night

    def describe(self) -> str:
        metrics = ", ".join(self.metrics[:2]) + (" …" if len(self.metrics) > 2 else "")
        return f"{self.source} {short_workload(self.workload)} [{metrics}] {self.where()}"


def _on_member(d: Detection, e: Event) -> bool:
    return any(d.workload == w and any(fnmatchcase(x, pat) for x in d.metrics) for w, pat in e.members)


def score(events: Sequence[Event], detections: Sequence[Detection]) -> dict[str, Any]:
    def explained(d: Detection) -> bool:
        return any(d.explained_by(e, m) for e in events for m in d.metrics)

    unexplained = [d for d in detections if not explained(d)]
    per_event: dict[str, dict[str, Any]] = {}
    for e in events:
        touching = [d for d in detections if any(e.covers(d.hardware, d.workload, m) for m in d.metrics)]
        if e.quiet:
            per_event[e.name] = {
                "quiet": True,
                "detections": len(touching),
                "nights": sorted({d.night for d in touching}),
            }
            continue
        mine = [d for d in touching if any(d.explained_by(e, m) for m in d.metrics)]

        def covered(ds: list[Detection], e: Event = e) -> int:
            """Members (workload, metric family) that one of `ds` flags at this event's place."""
            return sum(
                1
                for w, pat in e.members
                if any(
                    d.workload == w and any(fnmatchcase(x, pat) and d.explained_by(e, x) for x in d.metrics) for d in ds
                )
            )

        groups: dict[str, set[Any]] = defaultdict(set)
        for d in mine:
            if d.is_alert:
                groups[d.workload].add(d.ident if d.ident is not None else (d.commit_range, d.night))
        per_event[e.name] = {
            "quiet": False,
            "named": e.named,
            "members": len(e.members),
            "found": covered([d for d in mine if d.is_alert]),
            "flagged_by_checks": covered([d for d in mine if d.source == "check"]),
            "where": dict(Counter(d.where() for d in mine if d.is_alert and _on_member(d, e))),
            # alerts on the same series that no real event explains: a change put at the wrong commits
            "elsewhere": dict(Counter(d.where() for d in unexplained if d.is_alert and _on_member(d, e))),
            "alerts_per_workload": {w: len(groups.get(w, ())) for w in e.workloads},
            "explains": len(mine),
        }
    by_night: dict[str, list[str]] = defaultdict(list)
    for d in unexplained:
        by_night[d.night].append(d.describe())
    return {
        "has_checks": any(d.source == "check" for d in detections),
        "detections": len(detections),
        "unexplained": [d.describe() for d in unexplained],
        "false_alarm_nights": sorted({d.night for d in unexplained}),
        "by_night": {
            n: [d.describe() for d in unexplained if d.night == n] for n in sorted({d.night for d in unexplained})
        },
        "events": per_event,
    }


def _counts(where: dict[str, int]) -> str:
    return ", ".join(f"{w} ×{n}" for w, n in sorted(where.items(), key=lambda x: -x[1]))


def _event_cell(s: dict[str, Any], has_checks: bool) -> str:
    if s["quiet"]:
        nights = ", ".join(s["nights"][:5]) + (" …" if len(s["nights"]) > 5 else "")
        return "quiet" if not s["detections"] else f"{s['detections']} detections ({nights})"
    if not s["members"]:  # a change only there to account for what it caused
        return f"explains {s['explains']} detections"
    text = f"{s['found']}/{s['members']} series at {_counts(s['where']) or '–'}"
    if s["elsewhere"]:
        text += f"; also at {_counts(s['elsewhere'])} (wrong place)"
    text += f"; alerts per workload {', '.join(str(n) for n in s['alerts_per_workload'].values())}"
    if has_checks:
        text += f"; failing checks that night: {s['flagged_by_checks']}/{s['members']}"
    return text


def summary_tables(events: Sequence[Event], scores: dict[str, dict[str, Any]]) -> str:
    methods = list(scores)
    rows = ["| real event | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for e in events:
        label = e.name if e.named else f"{e.name} *(not in issue 12)*"
        rows.append(
            f"| {label} | "
            + " | ".join(_event_cell(scores[m]["events"][e.name], scores[m]["has_checks"]) for m in methods)
            + " |"
        )
    totals = [
        "| method | named events found (all series) | false-alarm nights | unexplained detections |"
        " alerts per real change (named events, per workload) |",
        "|---|---|---|---|---|",
    ]
    for m in methods:
        ev = [(e, scores[m]["events"][e.name]) for e in events if e.named and not e.quiet]
        complete = sum(1 for _, s in ev if s["found"] == s["members"])
        counts = [n for _, s in ev for n in s["alerts_per_workload"].values()]
        exact = sum(1 for n in counts if n == 1)
        totals.append(
            f"| {m} | {complete}/{len(ev)} | {len(scores[m]['false_alarm_nights'])} | {len(scores[m]['unexplained'])}"
            f" of {scores[m]['detections']} | exactly one: {exact}/{len(counts)} (counts {', '.join(map(str, counts))})"
            " |"
        )
    notes = []
    for m in methods:
        for night, items in scores[m]["by_night"].items():
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            notes.append(f"- {m}, {night}: " + "; ".join(items[:3]) + more)
    return "\n\n".join(
        [
            "#### Real events: found, where, alerts per change",
            "\n".join(rows),
            "#### Summary",
            "\n".join(totals),
            "#### False-alarm nights and what no real event explains",
            "\n".join(notes) or "none",
        ]
    )
