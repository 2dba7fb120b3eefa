"""CI-health figures: pass rate, flaky rate, CI minutes lost to reruns and infrastructure errors by kind,
per lane, hardware and day (``guardrail ci-health``, the dashboard's CI health page). Pure: rows in, document out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from guardrail.analysis.junit_model import VerdictKind

CI_HEALTH_SCHEMA = "guardrail.ci-health/v1"


@dataclass(frozen=True)
class HealthRow:
    """One test verdict of one job, with what the job cost: the input of :func:`ci_health`."""

    at: datetime
    lane: str
    hardware: str | None
    verdict: VerdictKind
    rerun_seconds: float = 0.0  # CaseVerdict.rerun_duration_s


@dataclass(frozen=True)
class InfraEvent:
    """An infrastructure error: a result with status infra_error/timeout, or an infra-failed test run."""

    at: datetime
    lane: str
    hardware: str | None
    kind: str  # device_lost, oom, collective_timeout, runner_crash, tests_mass_failure, ...


@dataclass(frozen=True)
class HealthFigure:
    lane: str
    hardware: str | None
    day: str  # YYYY-MM-DD (UTC)
    tests: int
    passed: int
    failed: int
    flaky: int
    rerun_minutes: float
    infra_errors: tuple[tuple[str, int], ...] = ()

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.tests if self.tests else None

    @property
    def flaky_rate(self) -> float | None:
        return self.flaky / self.tests if self.tests else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "lane": self.lane,
            "hardware": self.hardware,
            "day": self.day,
            "tests": self.tests,
            "passed": self.passed,
            "failed": self.failed,
            "flaky": self.flaky,
            "pass_rate": None if self.pass_rate is None else round(self.pass_rate, 4),
            "flaky_rate": None if self.flaky_rate is None else round(self.flaky_rate, 4),
            "rerun_minutes": round(self.rerun_minutes, 2),
            "infra_errors": dict(self.infra_errors),
        }


def ci_health(rows: Iterable[HealthRow], infra: Iterable[InfraEvent] = ()) -> dict[str, Any]:
    """Pass rate, flaky rate, CI minutes lost to reruns and infra errors by kind, per lane/hardware/day.

    Rates count test verdicts that ran (skips left out); ``figures`` are sorted by day, lane, hardware,
    and ``totals`` sums them per lane and hardware over the whole span.
    """
    acc: dict[tuple[str, str | None, str], dict[str, Any]] = {}

    def slot(lane: str, hw: str | None, at: datetime) -> dict[str, Any]:
        key = (lane, hw, at.date().isoformat())
        return acc.setdefault(key, {"tests": 0, "pass": 0, "fail": 0, "flaky": 0, "rerun_s": 0.0, "infra": {}})

    for r in rows:
        s = slot(r.lane, r.hardware, r.at)
        s["rerun_s"] += r.rerun_seconds
        if r.verdict == "skip":
            continue
        s["tests"] += 1
        s[r.verdict] += 1
    for e in infra:
        s = slot(e.lane, e.hardware, e.at)
        s["infra"][e.kind] = s["infra"].get(e.kind, 0) + 1

    def figure(lane: str, hw: str | None, day: str, s: dict[str, Any]) -> HealthFigure:
        return HealthFigure(
            lane, hw, day, s["tests"], s["pass"], s["fail"], s["flaky"], s["rerun_s"] / 60,
            tuple(sorted(s["infra"].items())),
        )  # fmt: skip

    figures = [figure(lane, hw, day, s) for (lane, hw, day), s in acc.items()]
    figures.sort(key=lambda f: (f.day, f.lane, f.hardware or ""))
    totals: dict[tuple[str, str | None], dict[str, Any]] = {}
    for f in figures:
        t = totals.setdefault(
            (f.lane, f.hardware), {"tests": 0, "pass": 0, "fail": 0, "flaky": 0, "rerun_s": 0.0, "infra": {}}
        )
        t["tests"] += f.tests
        t["pass"] += f.passed
        t["fail"] += f.failed
        t["flaky"] += f.flaky
        t["rerun_s"] += f.rerun_minutes * 60
        for k, n in f.infra_errors:
            t["infra"][k] = t["infra"].get(k, 0) + n
    span = f"{figures[0].day}..{figures[-1].day}" if figures else ""
    return {
        "schema": CI_HEALTH_SCHEMA,
        "figures": [f.to_dict() for f in figures],
        "totals": [
            figure(lane, hw, span, t).to_dict()
            for (lane, hw), t in sorted(totals.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
        ],
    }
