"""Change points in a series' history: E-divisive candidates, a t-test, and a minimum magnitude.

Two passes, in the spirit of Hunter/Apache Otava (Fleming et al. 2023) but our own code:

1. Split: slide a window of `window` points (half-overlapping, plus one window flush with the end so the
   newest points are always judged in full context). Inside each window, recursively split at the point
   that maximises the energy (E-divisive) statistic of Matteson & James, keeping splits whose pooled
   two-sample t-test passes a relaxed level (10x `p_value`): these are weak candidates.
2. Merge: re-test every candidate against its neighbours (up to `window` points on each side), drop the
   weakest one that fails `p_value` or `min_magnitude`, re-test its neighbours, repeat. A failing
   candidate next to a smaller shift is kept when dropping that neighbour lets it pass: a big step beside
   a small one leaves a 2-point segment between them, too short to test either, and the small one goes.
   The merge's p-value is Bonferroni-adjusted for the positions the split could take between its
   neighbours (the split was searched for, so the nominal p is too small), and each side is tested
   without its strays (points far out of the rest of that side), so one odd night does not hide a step.

Then `detect_suspects` flags one-night spikes inside a segment: a point far from the rest of its segment
(a prediction t-test, Bonferroni over the segment's points) whose two neighbours both stay at the level.
A suspect is never a change point; it is reported beside them.

Values are tested on the log scale when all are positive (relative noise), so one threshold fits series
of any size. A short segment (fewer than SHORT_SEGMENT points, e.g. the newest two nights) must agree in
direction point by point, so a single outlier does not become a change point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import stdtr

MIN_SEGMENT = 2
SHORT_SEGMENT = 5
WEAK_FACTOR = 10.0
STRAY_P = 0.001  # a point of a side this far out of the rest of it (before Bonferroni) is left out of the test


@dataclass(frozen=True)
class ChangePoint:
    index: int  # 0-based position where the new level starts
    before: float  # mean of the segment before (as measured)
    after: float  # mean of the segment after
    change: float  # after / before - 1
    p_value: float  # two-sided pooled t-test between the two segments, adjusted for the split's search

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "before": self.before,
            "after": self.after,
            "change": self.change,
            "p_value": self.p_value,
        }


@dataclass(frozen=True)
class Suspect:
    """A one-night outlier: the series leaves its level at `index` and returns on the next point."""

    index: int
    value: float  # the point as measured
    level: float  # mean of the rest of its segment
    change: float  # value / level - 1
    p_value: float  # two-sided prediction t-test of the point against the rest of its segment

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "value": self.value,
            "level": self.level,
            "change": self.change,
            "p_value": self.p_value,
        }


def _t_test(left: np.ndarray, right: np.ndarray) -> float:
    """Two-sided pooled-variance t-test p-value (Student), NaN-free."""
    n1, n2 = left.size, right.size
    if n1 < 1 or n2 < 1 or n1 + n2 < 3:
        return 1.0
    m1, m2 = left.mean(), right.mean()
    ss = float(((left - m1) ** 2).sum() + ((right - m2) ** 2).sum())
    df = n1 + n2 - 2
    diff = abs(m2 - m1)
    if ss <= 0:
        return 0.0 if diff > 0 else 1.0
    se = math.sqrt(ss / df * (1.0 / n1 + 1.0 / n2))
    return float(2.0 * stdtr(df, -diff / se))


def _consistent(left: np.ndarray, right: np.ndarray) -> bool:
    """A short side must lie wholly on its own side of the midpoint between the two means."""
    mid = 0.5 * (left.mean() + right.mean())
    up = right.mean() > left.mean()
    if right.size < SHORT_SEGMENT and not (np.all(right > mid) if up else np.all(right < mid)):
        return False
    if left.size < SHORT_SEGMENT and not (np.all(left < mid) if up else np.all(left > mid)):
        return False
    return True


def _energy_split(y: np.ndarray) -> int | None:
    """The split (index of the first point after it) maximising the E-divisive statistic, or None."""
    n = y.size
    if n < 2 * MIN_SEGMENT:
        return None
    d = np.abs(y[:, None] - y[None, :])
    p = np.zeros((n + 1, n + 1))
    p[1:, 1:] = d.cumsum(0).cumsum(1)
    tau = np.arange(MIN_SEGMENT, n - MIN_SEGMENT + 1)
    within_a = p[tau, tau]
    within_b = p[n, n] - p[tau, n] - p[n, tau] + p[tau, tau]
    cross = p[tau, n] - p[tau, tau]
    m, k = tau.astype(float), (n - tau).astype(float)
    energy = 2.0 * cross / (m * k) - within_a / (m * m) - within_b / (k * k)
    q = m * k / n * energy
    return int(tau[int(np.argmax(q))])


def _split_window(y: np.ndarray, start: int, level: float, out: set[int]) -> None:
    """Recursive binary segmentation of y (absolute offset `start`), collecting weak candidates."""
    stack = [(0, y.size)]
    while stack:
        s, e = stack.pop()
        seg = y[s:e]
        tau = _energy_split(seg)
        if tau is None:
            continue
        left, right = seg[:tau], seg[tau:]
        if _t_test(left, right) < level and _consistent(left, right):
            out.add(start + s + tau)
            stack.append((s, s + tau))
            stack.append((s + tau, e))


def _loo_p_values(side: np.ndarray) -> np.ndarray:
    """For each point, the prediction t-test p-value of it against the rest of `side` (leave-one-out)."""
    m = side.size
    mean = side.mean()
    dev = side - mean
    rest_mean = mean - dev / (m - 1)
    rest_ss = np.maximum(float((dev**2).sum()) - dev**2 * m / (m - 1), 0.0)
    diff = np.abs(side - rest_mean)
    df = m - 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t = diff / np.sqrt(rest_ss / df * (1.0 + 1.0 / (m - 1)))
    p = 2.0 * stdtr(df, -np.where(np.isnan(t), 0.0, t))
    return np.where(rest_ss > 0, p, np.where(diff > 0, 0.0, 1.0))


def _without_strays(side: np.ndarray, level: float = STRAY_P) -> np.ndarray:
    """`side` without the points that stand out of the rest of it (leave-one-out, Bonferroni over the
    side), so one odd night (a first run, a spike) does not hide a step next to it."""
    if side.size < 4:
        return side
    keep = _loo_p_values(side) >= level / side.size
    return side[keep] if keep.sum() >= 2 else side


def _stats(y: np.ndarray, x: np.ndarray, cps: list[int], i: int, window: int) -> tuple[float, float, bool]:
    """p-value, relative magnitude and consistency of change point cps[i] against its neighbours."""
    lo = cps[i - 1] if i > 0 else 0
    hi = cps[i + 1] if i + 1 < len(cps) else y.size
    c = cps[i]
    lo = max(lo, c - window)
    hi = min(hi, c + window)
    left, right = y[lo:c], y[c:hi]
    # The split was searched for: Bonferroni over the positions it could take in [lo, hi).
    positions = hi - lo - 2 * MIN_SEGMENT + 1
    p = min(1.0, _t_test(_without_strays(left), _without_strays(right)) * max(positions, 1))
    before, after = float(x[lo:c].mean()), float(x[c:hi].mean())
    mag = abs(after / before - 1.0) if before != 0 else math.inf
    return p, mag, _consistent(left, right)


def _to_drop(
    y: np.ndarray,
    x: np.ndarray,
    cps: list[int],
    stats: list[tuple[float, float, bool]],
    worst: int,
    window: int,
    p_value: float,
) -> int:
    """The candidate to drop when `worst` fails its p-value: itself, unless a neighbour with a smaller shift
    hides it (with that neighbour gone, `worst` passes); then that neighbour (the smaller if both do)."""
    drop = worst
    for j in (worst - 1, worst + 1):
        if not 0 <= j < len(cps) or stats[j][1] >= stats[worst][1]:
            continue
        if drop != worst and stats[j][1] >= stats[drop][1]:
            continue
        rest = cps[:j] + cps[j + 1 :]
        p, _, consistent = _stats(y, x, rest, rest.index(cps[worst]), window)
        if p < p_value and consistent:
            drop = j
    return drop


def _segment_bounds(c: int, cps: Sequence[int], n: int, window: int) -> tuple[int, int]:
    i = cps.index(c)
    lo = max(cps[i - 1] if i > 0 else 0, c - window)
    hi = min(cps[i + 1] if i + 1 < len(cps) else n, c + window)
    return lo, hi


def detect_change_points(
    values: Sequence[float],
    *,
    window: int = 50,
    p_value: float = 0.001,
    min_magnitude: float = 0.01,
) -> list[ChangePoint]:
    """Change points of `values` (oldest first); each `index` is where the new level starts. Deterministic
    (no permutations)."""
    if window < 2 * MIN_SEGMENT:
        raise ValueError(f"window must be at least {2 * MIN_SEGMENT}")
    x = _validated(values)
    n = x.size
    if n < 2 * MIN_SEGMENT:
        return []
    y = np.log(x) if np.all(x > 0) else x
    weak: set[int] = set()
    step = max(window // 2, 1)
    starts = list(range(0, max(n - window, 0) + 1, step))
    if starts[-1] + window < n:
        starts.append(n - window)
    for s in starts:
        _split_window(y[s : s + window], s, WEAK_FACTOR * p_value, weak)

    cps = sorted(weak)
    while cps:
        stats = [_stats(y, x, cps, i, window) for i in range(len(cps))]
        # Weakest first: a failing p-value, then an inconsistent short side, then too small a change.
        worst = max(range(len(cps)), key=lambda i: stats[i][0])
        if stats[worst][0] >= p_value:
            del cps[_to_drop(y, x, cps, stats, worst, window, p_value)]
            continue
        bad = [i for i in range(len(cps)) if not stats[i][2]]
        if bad:
            del cps[bad[0]]
            continue
        smallest = min(range(len(cps)), key=lambda i: stats[i][1])
        if stats[smallest][1] < min_magnitude:
            del cps[smallest]
            continue
        break

    result = []
    for i, c in enumerate(cps):
        lo, hi = _segment_bounds(c, cps, n, window)
        before, after = float(x[lo:c].mean()), float(x[c:hi].mean())
        change = after / before - 1.0 if before != 0 else math.inf
        result.append(ChangePoint(c, before, after, change, _stats(y, x, cps, i, window)[0]))
    return result


def _validated(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError("values must be one-dimensional")
    if not np.all(np.isfinite(x)):
        raise ValueError("values must be finite")
    return x


def detect_suspects(
    values: Sequence[float],
    change_points: Sequence[ChangePoint],
    *,
    window: int = 50,
    p_value: float = 0.001,
    min_magnitude: float = 0.01,
) -> list[Suspect]:
    """One-night outliers of `values` inside the segments that `change_points` (of the same values) leave.

    A point is a suspect when both its neighbours lie in its segment and on the level's side of the midpoint
    between the level and the point (the series returns), it differs from the rest of its segment (at most
    `window` points each side) by at least `min_magnitude`, and a prediction t-test of it against that rest
    passes `p_value` divided by the segment's length (one false suspect per series at most as often as
    `p_value`). The newest point is never judged: whether the series returns is not known yet."""
    x = _validated(values)
    n = x.size
    y = np.log(x) if n and np.all(x > 0) else x
    bounds = [0, *(c.index for c in change_points), n]
    out = []
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        level_p = p_value / max(hi - lo, 1)
        for i in range(lo + 1, hi - 1):
            a, b = max(lo, i - window), min(hi, i + window + 1)
            rest = np.r_[y[a:i], y[i + 1 : b]]
            if rest.size < 2:
                continue
            mid = 0.5 * (rest.mean() + y[i])
            up = y[i] > rest.mean()
            if not all((y[k] < mid) if up else (y[k] > mid) for k in (i - 1, i + 1)):
                continue
            level = float(np.r_[x[a:i], x[i + 1 : b]].mean())
            change = float(x[i] / level - 1.0) if level != 0 else math.inf
            if abs(change) < min_magnitude:
                continue
            p = _t_test(y[i : i + 1], rest)
            if p < level_p:
                out.append(Suspect(i, float(x[i]), level, change, p))
    return out
