"""Change points on stored series -> alerts, attributed to a commit range and deduplicated per workload.

Several metrics of one workload usually move together when a commit lands (latency, p99, a stage time):
that is one alert, not five. Change points of one workload are grouped when they start at the same
commit, i.e. share the commit range (previous commit, first commit of the new level).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from guardrail.analysis.changepoints import ChangePoint, detect_change_points
from guardrail.vocabulary import ChangeKind

K = TypeVar("K", bound=Hashable)  # what names a series: a tuple, a string, ...


@dataclass(frozen=True)
class SeriesChangePoint:
    """A change point of one series with the commit range it is attributed to."""

    change_point: ChangePoint
    commit: str  # first commit of the new level
    prev_commit: str | None  # last commit of the old level
    time: str | None = None


@dataclass(frozen=True)
class Alert(Generic[K]):
    key: str  # stable dedup key: "<workload>@<prev_commit>..<commit>"
    workload: str
    commit_range: tuple[str | None, str]
    members: tuple[tuple[K, SeriesChangePoint], ...]  # (series key, change point), one per metric
    worst_change: float  # the largest |change| among members, with its sign
    min_p_value: float
    kind: ChangeKind  # "regression", "improvement" or "mixed" (when directions are known), else "change"

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "workload": self.workload,
            "commit_range": list(self.commit_range),
            "kind": self.kind,
            "worst_change": self.worst_change,
            "min_p_value": self.min_p_value,
            "series": [
                {"series": str(k), "index": m.change_point.index, "time": m.time, **m.change_point.to_dict()}
                for k, m in self.members
            ],
        }


def default_workload_of(key: Hashable) -> str:
    """The workload of a series key: key[0] of a tuple, key['workload'] of a mapping, .workload, or the
    part before the first '/' of a string."""
    if isinstance(key, tuple) and key:
        return str(key[0])
    if isinstance(key, Mapping):
        return str(key["workload"])
    if hasattr(key, "workload"):
        return str(key.workload)
    return str(key).split("/", 1)[0]


def attribute(
    values: Sequence[float],
    commits: Sequence[str],
    times: Sequence[str] | None = None,
    *,
    window: int = 50,
    p_value: float = 0.001,
    min_magnitude: float = 0.01,
) -> list[SeriesChangePoint]:
    """Detect change points of one series (detect_change_points) and attribute each to its commit range."""
    if len(values) != len(commits) or (times is not None and len(times) != len(values)):
        raise ValueError("values, commits and times must have the same length")
    out = []
    for cp in detect_change_points(values, window=window, p_value=p_value, min_magnitude=min_magnitude):
        prev = commits[cp.index - 1] if cp.index > 0 else None
        out.append(SeriesChangePoint(cp, commits[cp.index], prev, times[cp.index] if times else None))
    return out


def _kind(members: Sequence[tuple[K, SeriesChangePoint]], directions: Mapping[K, str] | None) -> ChangeKind:
    if not directions:
        return "change"
    kinds: set[ChangeKind] = set()
    for key, m in members:
        direction = directions.get(key)
        if direction is None:
            continue
        worse = m.change_point.change > 0 if direction == "lower_is_better" else m.change_point.change < 0
        kinds.add("regression" if worse else "improvement")
    return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "change")


def attribute_and_dedup(
    series_points: Mapping[K, Sequence[SeriesChangePoint]],
    *,
    workload_of: Callable[[K], str] = default_workload_of,
    directions: Mapping[K, str] | None = None,
    known_keys: Collection[str] | Mapping[str, Collection[K]] = (),
) -> list[Alert[K]]:
    """One alert per (workload, commit range); alerts whose key is in `known_keys` are left out. Given as a
    mapping of alert keys to the series keys already alerted on, only those series are left out: a metric whose
    change point at a known range is found a night later (a series with fewer points after the change) still
    joins that alert.

    Ordered by commit range time of first appearance, then workload. `directions` maps a series key to
    "lower_is_better"/"higher_is_better" to label the alert a regression or an improvement.
    """
    groups: dict[tuple[str, str | None, str], list[tuple[K, SeriesChangePoint]]] = {}
    for key, points in series_points.items():
        workload = workload_of(key)
        for p in points:
            groups.setdefault((workload, p.prev_commit, p.commit), []).append((key, p))
    alerts = []
    for (workload, prev, commit), members in groups.items():
        akey = f"{workload}@{prev or ''}..{commit}"
        if isinstance(known_keys, Mapping):
            members = [x for x in members if x[0] not in known_keys.get(akey, ())]
            if not members:
                continue
        elif akey in known_keys:
            continue
        worst = max(members, key=lambda m: abs(m[1].change_point.change))[1].change_point.change
        alerts.append(
            Alert(
                key=akey,
                workload=workload,
                commit_range=(prev, commit),
                members=tuple(members),
                worst_change=worst,
                min_p_value=min(m.change_point.p_value for _, m in members),
                kind=_kind(members, directions),
            )
        )
    alerts.sort(key=lambda a: (min(m.time or "" for _, m in a.members), a.workload))
    return alerts
