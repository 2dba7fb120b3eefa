"""Bisection of a commit range: which commit to measure next, what each commit reads as, and when to stop.

Pure and replayable: `decide` takes the range (first-parent commits, the good end first) and everything measured
so far at each position, and returns the next action. Nothing here keeps state between calls; the orchestration
(guardrail.bisect) stores each step and calls `decide` again when new results arrive, so an interrupted
bisection resumes where its results left it.

A commit reads with the guardrail's own comparison (compare.compare_metric), twice: its repeats against the
good end's and against the bad end's. It is `bad` when it is a regression against the good end and not an
improvement against the bad end, `good` in the mirror case, else `unclear` (more repeats, up to `max_looks`;
then it is skipped like `git bisect skip`). The ends are verified first: the bad end must read as a regression
against the good end, and the good end as an improvement against the bad end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from guardrail.analysis.compare import MetricComparison, compare_metric

Repeats = list[list[float]]  # repeats (fresh processes) -> values
Reading = Literal["good", "bad", "unclear"]
ActionKind = Literal["run", "culprit", "stop"]
# Why a bisection stopped without a culprit; `infra` is the one that maps onto exit 3.
StopReason = Literal["ends_not_different", "ends_unclear", "budget_spent", "only_skipped", "infra"]


@dataclass(frozen=True)
class Config:
    """The numbers behind every step (docs/bisect.md)."""

    direction: str = "lower_is_better"
    threshold: float = 0.05  # the practical change a side must exceed to read as a regression / improvement
    alpha: float = 0.05
    repeats: int = 2  # repeats asked for at a commit's first look (and at each end)
    max_looks: int = 3  # looks at one commit before an unclear commit is skipped
    confirm: bool = True  # one more look at the culprit before naming it
    max_infra: int = 2  # infra failures at an end before the bisection stops (a middle commit is skipped at once)
    budget_minutes: float | None = None


@dataclass(frozen=True)
class Observed:
    """What the store holds for one commit of the range: its repeats, its looks and failures, their cost."""

    repeats: Repeats = field(default_factory=list)
    infra_failures: int = 0  # results that failed for infrastructure reasons (never read as performance)
    minutes: float = 0.0  # device minutes its results took


@dataclass(frozen=True)
class Side:
    """One comparison of a commit's reading: against the good end or against the bad end."""

    verdict: str
    change: float | None
    p_value: float | None
    ci: tuple[float, float] | None

    @staticmethod
    def of(c: MetricComparison) -> Side:
        return Side(verdict=c.verdict, change=c.change, p_value=c.p_value, ci=c.ci)

    def to_dict(self, *, better: bool = False) -> dict[str, Any]:
        """`better=True`: the p-value of the other direction (compare's p is one-sided towards worse)."""
        p = self.p_value
        if better and p is not None:
            p = 1.0 - p
        return {"verdict": self.verdict, "change": self.change, "p_value": p, "ci": list(self.ci) if self.ci else None}


@dataclass(frozen=True)
class CommitReading:
    reading: Reading
    vs_good: Side
    vs_bad: Side


@dataclass(frozen=True)
class Action:
    """The next thing to do. `run`: measure `position` with `repeats` more repeats (`why` says which step)."""

    kind: ActionKind
    why: str
    position: int | None = None
    repeats: int = 0
    stop: StopReason | None = None
    low: int = 0  # the range still open: last good position ...
    high: int = 0  # ... first bad position
    confidence: dict[str, Any] = field(default_factory=dict)
    readings: dict[int, str] = field(default_factory=dict)  # position -> good | bad | unclear | skipped


def _side(baseline: Repeats, candidate: Repeats, cfg: Config) -> MetricComparison:
    return compare_metric([baseline], candidate, direction=cfg.direction, threshold=cfg.threshold, alpha=cfg.alpha)


def read_commit(candidate: Repeats, good: Repeats, bad: Repeats, cfg: Config) -> CommitReading:
    """A commit's repeats against both ends: bad, good, or unclear (both sides or neither say it)."""
    vs_good = _side(good, candidate, cfg)
    vs_bad = _side(bad, candidate, cfg)
    looks_bad = vs_good.verdict == "regression"
    looks_good = vs_bad.verdict == "improvement"
    reading: Reading = "bad" if looks_bad and not looks_good else "good" if looks_good and not looks_bad else "unclear"
    return CommitReading(reading, Side.of(vs_good), Side.of(vs_bad))


def verify_ends(
    good: Repeats, bad: Repeats, cfg: Config
) -> tuple[Literal["ok", "unclear", "not_different"], Side, Side]:
    """Does the bad end read as a regression against the good end, and the good end as an improvement against
    the bad end? `unclear` when either comparison could still go either way with more repeats."""
    bad_vs_good = _side(good, bad, cfg)
    good_vs_bad = _side(bad, good, cfg)
    sides = (Side.of(bad_vs_good), Side.of(good_vs_bad))
    if bad_vs_good.verdict == "regression" and good_vs_bad.verdict == "improvement":
        return "ok", *sides
    if "no_change" in (bad_vs_good.verdict, good_vs_bad.verdict) or bad_vs_good.verdict == "improvement":
        return "not_different", *sides
    return "unclear", *sides


def midpoint(low: int, high: int, excluded: set[int]) -> int | None:
    """The untried position nearest the middle of (low, high), the lower one on a tie; None if none is left."""
    inside = [p for p in range(low + 1, high) if p not in excluded]
    if not inside:
        return None
    mid = (low + high) / 2
    return min(inside, key=lambda p: (abs(p - mid), p))


def looks(o: Observed, cfg: Config) -> int:
    """How many looks a commit has had: its repeats in units of the repeats one look asks for."""
    return -(-len(o.repeats) // cfg.repeats)


def spent_minutes(observed: Mapping[int, Observed]) -> float:
    return sum(o.minutes for o in observed.values())


def decide(n: int, observed: Mapping[int, Observed], cfg: Config) -> Action:
    """The next action for a range of `n` first-parent commits (position 0 the good end, n - 1 the bad end)."""
    if n < 2:
        raise ValueError("a range needs a good and a bad end")
    good_end, bad_end = 0, n - 1
    obs = {p: observed.get(p, Observed()) for p in range(n)}
    spent = spent_minutes(obs)

    def run(position: int, why: str, repeats: int, low: int, high: int, readings: dict[int, str]) -> Action:
        if cfg.budget_minutes is not None and spent >= cfg.budget_minutes:
            return Action(
                "stop",
                f"budget spent: {spent:.1f} of {cfg.budget_minutes:g} device minutes",
                stop="budget_spent",
                low=low,
                high=high,
                readings=readings,
            )
        return Action("run", why, position=position, repeats=repeats, low=low, high=high, readings=readings)

    # 1. The ends: measured, free of infra failures, and reading as good and bad.
    for end, name in ((good_end, "good"), (bad_end, "bad")):
        o = obs[end]
        if not o.repeats:
            if o.infra_failures >= cfg.max_infra:
                return Action(
                    "stop",
                    f"the {name} end failed {o.infra_failures} times for infrastructure reasons",
                    stop="infra",
                    low=good_end,
                    high=bad_end,
                )
            return run(end, f"verify the {name} end", cfg.repeats, good_end, bad_end, {})
    ends, bad_side, good_side = verify_ends(obs[good_end].repeats, obs[bad_end].repeats, cfg)
    if ends == "not_different":
        return Action(
            "stop",
            f"the ends do not read as good and bad (bad vs good: {bad_side.verdict}, good vs bad: {good_side.verdict})",
            stop="ends_not_different",
            low=good_end,
            high=bad_end,
            confidence={"bad_vs_good": bad_side.to_dict(), "good_vs_bad": good_side.to_dict()},
        )
    if ends == "unclear":
        end = min((good_end, bad_end), key=lambda p: (looks(obs[p], cfg), p))
        if looks(obs[end], cfg) >= cfg.max_looks:
            return Action(
                "stop",
                f"the ends stay unclear after {cfg.max_looks} looks",
                stop="ends_unclear",
                low=good_end,
                high=bad_end,
                confidence={"bad_vs_good": bad_side.to_dict(), "good_vs_bad": good_side.to_dict()},
            )
        return run(end, "the ends are unclear: more repeats", cfg.repeats, good_end, bad_end, {})

    # 2. Every measured commit inside the range, read against both ends.
    good_r, bad_r = obs[good_end].repeats, obs[bad_end].repeats
    reads: dict[int, CommitReading] = {
        good_end: CommitReading("good", Side("no_change", 0.0, None, None), good_side),
        bad_end: CommitReading("bad", bad_side, Side("no_change", 0.0, None, None)),
    }
    labels: dict[int, str] = {good_end: "good", bad_end: "bad"}
    skipped: set[int] = set()
    for p in range(1, n - 1):
        o = obs[p]
        if o.repeats:
            reads[p] = read_commit(o.repeats, good_r, bad_r, cfg)
            labels[p] = reads[p].reading
            if reads[p].reading == "unclear" and looks(o, cfg) >= cfg.max_looks:
                skipped.add(p)
                labels[p] = "skipped"
        elif o.infra_failures:
            skipped.add(p)  # git bisect skip: an infra failure says nothing of performance; move on
            labels[p] = "skipped"
    high = min(p for p, r in reads.items() if r.reading == "bad" and p not in skipped)
    low = max(p for p, r in reads.items() if r.reading == "good" and p < high and p not in skipped)

    # 3. An unclear commit inside the open range gets more repeats before anything else.
    for p in range(low + 1, high):
        if p in reads and p not in skipped and reads[p].reading == "unclear":
            return run(p, f"unclear after {looks(obs[p], cfg)} look(s): more repeats", cfg.repeats, low, high, labels)

    # 4. Adjacent (or only skipped commits between): the culprit, once confirmed.
    nxt = midpoint(low, high, skipped | set(reads))
    if nxt is None:
        if any(low < p < high for p in skipped):
            return Action(
                "stop",
                f"only skipped commits are left between positions {low} and {high}",
                stop="only_skipped",
                low=low,
                high=high,
                readings=labels,
            )
        culprit = high
        if cfg.confirm and looks(obs[culprit], cfg) < 2:
            return run(culprit, "confirm the culprit once more", cfg.repeats, low, high, labels)
        confidence = {
            # the culprit reads as a regression against the good end (one-sided p of "slower") ...
            "culprit_vs_good": reads[culprit].vs_good.to_dict(),
            # ... and its parent as an improvement against the bad end (one-sided p of "faster": 1 - p of slower)
            "parent_vs_bad": reads[low].vs_bad.to_dict(better=True),
        }
        return Action("culprit", "found", position=culprit, low=low, high=high, confidence=confidence, readings=labels)
    return run(nxt, "midpoint", cfg.repeats, low, high, labels)


def steps_left(low: int, high: int) -> int:
    """Midpoints still to measure in the worst case for the open range (low, high): ceil(log2(high - low))."""
    span, k = high - low, 0
    while span > 1:
        span = (span + 1) // 2
        k += 1
    return k
