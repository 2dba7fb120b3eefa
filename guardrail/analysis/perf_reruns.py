"""Performance workloads: which judged series get extra repeats now, which are flagged, which block.

Pure functions over the entries of a ``guardrail.verdicts/v1`` document; every decision carries its reason.
Numbers: the ``performance`` section of baselines/rerun-policy.yaml; rules in docs/flaky.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from guardrail.rerun_policy import RerunPolicy
from guardrail.vocabulary import BLOCKING

# guardrail.analysis.planner.REPEATS_UNREACHABLE (not imported: the planner loads scipy): no number of repeats
# resolves the comparison
REPEATS_UNREACHABLE = 1_000_000
# Verdicts whose workloads are profiled when run again: the profile diff says why they got slower.
PROFILED = ("regression", "suspect")


@dataclass(frozen=True)
class PerfRerun:
    workload: str
    metric: str
    hardware: str
    verdict: str
    action: Literal["rerun", "flag", "none"]
    extra_repeats: int
    repeats_needed: int | None
    blocking: bool
    reason: str
    # the rerun (or next run) of a regression or a suspect carries a profile (guardrail run --profile), so that
    # its verdict can say which ops made it slower (docs/profiles.md)
    profile: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "metric": self.metric,
            "hardware": self.hardware,
            "verdict": self.verdict,
            "action": self.action,
            "extra_repeats": self.extra_repeats,
            "repeats_needed": self.repeats_needed,
            "blocking": self.blocking,
            "reason": self.reason,
            "profile": self.profile,
        }


@dataclass(frozen=True)
class PerfCandidate:
    """One judged series: an entry of a ``guardrail.verdicts/v1`` document, or the same fields."""

    workload: str
    metric: str
    hardware: str
    verdict: str
    repeats_needed: int | None = None
    candidate_repeats: int | None = None
    informational: bool = False
    look: int = 1  # the look of sequential confirmation the verdict was reached at, of max_looks
    max_looks: int = 1
    node_anomaly: str | None = None  # a suspect beside a node anomaly: rerun (on another node) before blaming

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.workload, self.metric, self.hardware)

    @classmethod
    def from_entry(cls, e: Mapping[str, Any]) -> PerfCandidate:
        return cls(
            workload=e["workload"],
            metric=e["metric"],
            hardware=e.get("hardware") or "",
            verdict=e["verdict"],
            repeats_needed=e.get("repeats_needed"),
            candidate_repeats=(e.get("candidate") or {}).get("repeats"),
            informational=bool(e.get("informational", False)),
            look=int(e.get("look") or 1),
            max_looks=int(e.get("max_looks") or 1),
            node_anomaly=e.get("node_anomaly"),
        )


def plan_perf_reruns(
    candidates: Iterable[PerfCandidate],
    *,
    policy: RerunPolicy = RerunPolicy(),
    seen_regressions: Iterable[tuple[str, str, str]] = (),
) -> list[PerfRerun]:
    """Extra repeats for inconclusive and first-seen regression series; noisy series flagged.

    ``seen_regressions``: (workload, metric, hardware) already judged ``regression`` for this head
    commit in an earlier attempt -- a regression seen twice blocks instead of being rerun again.
    Several metrics of one workload share its rerun: the largest request wins.
    """
    pp = policy.performance
    seen = set(seen_regressions)
    return _cap_workloads([_decide(c, policy, seen) for c in candidates], pp.max_workloads_per_job)


def _decide(c: PerfCandidate, policy: RerunPolicy, seen: set[tuple[str, str, str]]) -> PerfRerun:
    pp = policy.performance
    need = c.repeats_needed

    def decision(action: Literal["rerun", "flag", "none"], extra: int, blocking: bool, reason: str) -> PerfRerun:
        profile = c.verdict in PROFILED and not c.informational
        return PerfRerun(c.workload, c.metric, c.hardware, c.verdict, action, extra, need, blocking, reason, profile)

    if c.informational:
        return decision("none", 0, False, "informational metric")
    if c.verdict == "suspect" and c.node_anomaly:
        # The device misbehaved while it ran: the same repeats again (on another node where the CI allows), not
        # more of them on a node that is off.
        extra = max(c.candidate_repeats or 1, 1)
        return decision(
            "rerun", min(extra, pp.max_extra_repeats), False,
            f"suspect: ran beside a node anomaly ({c.node_anomaly}); rerun, on another node where the CI allows",
        )  # fmt: skip
    if c.verdict == "noisy":
        how = (
            "no number of repeats resolves it"
            if need is not None and need >= REPEATS_UNREACHABLE
            else f"about {need} repeats would be needed"
            if need
            else "the repeats needed are unknown"
        )
        return decision("flag", 0, False, f"noisy series: {how}; flagged, never blocking")
    # A regression is confirmed when seen again for this commit, or at the lane's last look. One reached at an
    # earlier confirmation look is confirmed once more: stopping there raised the A/A false alarms of bimodal
    # processes from 5% to 9% of 30-metric checks (bench/synthetic_regimes.py, 2026-12-02).
    last_look = c.max_looks > 1 and c.look >= c.max_looks
    first_seen = c.verdict == "regression" and c.key not in seen and not last_look
    if c.verdict not in pp.rerun_verdicts or (c.verdict == "regression" and not first_seen):
        blocking = c.verdict in BLOCKING
        why = {
            "regression": f"regression at the last look ({c.look} of {c.max_looks}): confirmed"
            if last_look
            else "regression already seen on this commit or open as an alert: confirmed, not rerun",
            # a one-night spike of a nightly summary series: the next nightly judges it again, at no extra cost
            "suspect": "suspect: off its level for one night; the next nightly judges it again",
        }.get(c.verdict, c.verdict)
        return decision("none", 0, blocking, why)
    if last_look:  # the lane's looks are spent: more repeats cannot be judged
        return decision("flag", 0, False, f"{c.verdict} after the last look ({c.look} of {c.max_looks}); flagged")
    if need is not None and need >= REPEATS_UNREACHABLE:
        reason = f"{c.verdict}: no number of repeats resolves it; flagged for a human"
        return decision("flag", 0, c.verdict == "regression", reason)
    have = c.candidate_repeats or 0
    extra = need - have if need is not None else pp.default_extra_repeats
    extra = max(1, extra)
    capped = min(extra, pp.max_extra_repeats)
    note = f" (needs {extra}, capped at {pp.max_extra_repeats})" if capped < extra else ""
    what = (
        ("first-seen regression: confirm" if c.look == 1 else f"regression at look {c.look}: confirm once more")
        if first_seen
        else "inconclusive: resolve"
    )
    return decision("rerun", capped, False, f"{what} with {capped} more repeats{note}")


def _cap_workloads(decisions: list[PerfRerun], cap: int) -> list[PerfRerun]:
    chosen: list[tuple[str, str]] = []
    out = []
    for d in decisions:
        if d.action == "rerun":
            wl = (d.workload, d.hardware)
            if wl not in chosen and len(chosen) >= cap:
                d = replace(
                    d, action="none", extra_repeats=0, blocking=d.verdict == "regression",
                    reason=f"job cap reached: {cap} workloads rerun already",
                )  # fmt: skip
            elif wl not in chosen:
                chosen.append(wl)
        out.append(d)
    return out
