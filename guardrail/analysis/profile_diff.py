"""Profile diff: a baseline's and a candidate's profile aggregates (`guardrail.profile/v1`, a result's
`extra.profile`) -> the ops and modules that account for a slowdown, ranked by milliseconds added per step.

Robust to one profile's noise: each op is compared by its median over the profiled steps, and a difference counts
only when it clears both a floor (a share of the step) and the steps' own spread (a median's standard error from
the MAD of each side). The diff says when it cannot explain the change: when the contributors it can stand behind
add up to less than half of the change being explained (the timed regression when the caller gives it, else the
profiles' own total). Pure: dicts of numbers in, a dict out (docs/profiles.md).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DIFF_SCHEMA = "guardrail.profile-diff/v1"
EXPLAINED_MIN = 0.5  # below this share of the change, the diff says it cannot explain it
FLOOR_SHARE = 0.002  # a difference under 0.2% of the baseline step is never a contributor
NOISE_Z = 2.0  # a difference must clear this many standard errors of the two medians
TOP = 10


@dataclass(frozen=True)
class Side:
    ms: float  # median per step
    calls: float
    steps: tuple[float, ...]


def _rows(profile: Mapping[str, Any], key: str) -> dict[str, Side]:
    out = {}
    for r in profile.get(key) or []:
        if not isinstance(r, Mapping) or "name" not in r:
            continue
        steps = tuple(float(x) for x in r.get("steps_ms") or ())
        out[str(r["name"])] = Side(float(r.get("ms_per_step") or 0.0), float(r.get("calls_per_step") or 0.0), steps)
    return out


def _se_median(steps: Sequence[float]) -> float:
    """Standard error of a median from the MAD (normal-consistent); 0 when one step (no spread to read)."""
    if len(steps) < 2:
        return 0.0
    med = statistics.median(steps)
    mad = statistics.median(abs(x - med) for x in steps) * 1.4826
    return 1.2533 * mad / math.sqrt(len(steps))


def _compare(base: dict[str, Side], cand: dict[str, Side], floor: float, kind: str) -> list[dict[str, Any]]:
    empty = Side(0.0, 0.0, ())
    out = []
    for name in sorted(set(base) | set(cand)):
        b, c = base.get(name, empty), cand.get(name, empty)
        delta = c.ms - b.ms
        noise = NOISE_Z * math.hypot(_se_median(b.steps), _se_median(c.steps))
        status = "new" if name not in base else "vanished" if name not in cand else "changed"
        out.append(
            {
                "name": name,
                "kind": kind,
                "status": status,
                "baseline_ms": round(b.ms, 4),
                "candidate_ms": round(c.ms, 4),
                "delta_ms": round(delta, 4),
                "noise_ms": round(noise, 4),
                "significant": abs(delta) > max(floor, noise),
                "baseline_calls": b.calls,
                "candidate_calls": c.calls,
                "calls_changed": status == "changed" and b.calls != c.calls,
            }
        )
    return out


def _total(profile: Mapping[str, Any]) -> float:
    steps = [float(x) for x in profile.get("steps_total_ms") or ()]
    return float(statistics.median(steps)) if steps else float(profile.get("total_ms_per_step") or 0.0)


def diff_profiles(
    baseline: Mapping[str, Any],
    candidate: Mapping[str, Any],
    *,
    change_ms: float | None = None,
    top: int = TOP,
) -> dict[str, Any]:
    """The ranked contributors of `candidate` over `baseline`.

    `change_ms`: the slowdown to explain, in ms per step (a timed regression's candidate minus baseline median of
    the step latency); None explains the profiles' own change of their total per step."""
    base_total, cand_total = _total(baseline), _total(candidate)
    profiled_change = cand_total - base_total
    target = profiled_change if change_ms is None else float(change_ms)
    floor = FLOOR_SHARE * base_total
    ops = _compare(_rows(baseline, "ops"), _rows(candidate, "ops"), floor, "op")
    modules = _compare(_rows(baseline, "modules"), _rows(candidate, "modules"), floor, "module")
    ops.sort(key=lambda r: (-r["delta_ms"], r["name"]))
    modules.sort(key=lambda r: (-r["delta_ms"], r["name"]))
    real = [r for r in ops if r["significant"]]
    explained = sum(r["delta_ms"] for r in real)
    for r in ops + modules:
        r["share"] = round(r["delta_ms"] / target, 4) if target > 0 else None
    share = explained / target if target > 0 else None
    notes = []
    if baseline.get("time_basis") != candidate.get("time_basis"):
        notes.append(
            f"the profiles measure different times ({baseline.get('time_basis')} vs {candidate.get('time_basis')})"
        )
    if target <= 0:
        explains = False
        notes.append(f"no slowdown to explain ({target:+.3f} ms per step)")
    elif share is None or share < EXPLAINED_MIN:
        explains = False
        notes.append(
            f"cannot explain the change: the ops that changed beyond noise account for {100 * (share or 0):.0f}% of "
            f"{target:+.3f} ms per step (under {100 * EXPLAINED_MIN:.0f}%); the rest is outside the profiled ops "
            "(host overhead, synchronisation, idle time) or within the profiles' noise"
        )
    else:
        explains = True
    contributors = [r for r in real if r["delta_ms"] > 0][:top]
    return {
        "schema": DIFF_SCHEMA,
        "time_basis": candidate.get("time_basis"),
        "baseline_total_ms": round(base_total, 4),
        "candidate_total_ms": round(cand_total, 4),
        "profiled_change_ms": round(profiled_change, 4),
        "change_ms": round(target, 4),
        "explained_ms": round(explained, 4),
        "explained_share": None if share is None else round(share, 4),
        "explains": explains,
        "note": "; ".join(notes),
        "contributors": contributors,
        "reductions": [r for r in reversed(real) if r["delta_ms"] < 0][:top],
        "modules": [r for r in modules if r["significant"] and r["delta_ms"] > 0][:top],
        "new_ops": [r["name"] for r in ops if r["status"] == "new"],
        "vanished_ops": [r["name"] for r in ops if r["status"] == "vanished"],
        "calls_changed": [
            {"name": r["name"], "baseline_calls": r["baseline_calls"], "candidate_calls": r["candidate_calls"]}
            for r in ops
            if r["calls_changed"]
        ],
    }


def render_text(diff: Mapping[str, Any]) -> str:
    """The diff for a terminal: the totals, the verdict on explaining, then the ranked contributors."""
    lines = [
        f"profile diff ({diff.get('time_basis')}): {diff['baseline_total_ms']:.3f} -> {diff['candidate_total_ms']:.3f}"
        f" ms per step ({diff['profiled_change_ms']:+.3f}); change explained: {diff['change_ms']:+.3f} ms per step",
    ]
    share = diff.get("explained_share")
    lines.append(
        f"explained: {diff['explained_ms']:+.3f} ms ({'n/a' if share is None else f'{100 * share:.0f}%'})"
        + ("" if diff["explains"] else f" — {diff['note']}")
    )
    if diff["contributors"]:
        lines.append("top contributors:")
        w = max(len(r["name"]) for r in diff["contributors"])
        for r in diff["contributors"]:
            sh = "" if r.get("share") is None else f"  {100 * r['share']:5.1f}%"
            calls = f"  calls {r['baseline_calls']:g} -> {r['candidate_calls']:g}" if r["calls_changed"] else ""
            tag = f"  [{r['status']}]" if r["status"] != "changed" else ""
            lines.append(f"  {r['name']:<{w}}  {r['delta_ms']:+9.3f} ms/step{sh}{calls}{tag}")
    if diff["modules"]:
        lines.append("modules: " + ", ".join(f"{r['name']} {r['delta_ms']:+.3f} ms" for r in diff["modules"][:5]))
    for key, label in (("new_ops", "new ops"), ("vanished_ops", "vanished ops")):
        if diff[key]:
            lines.append(f"{label}: {', '.join(diff[key][:12])}" + (" ..." if len(diff[key]) > 12 else ""))
    if diff["calls_changed"]:
        changed = [f"{c['name']} {c['baseline_calls']:g}->{c['candidate_calls']:g}" for c in diff["calls_changed"][:8]]
        lines.append("calls changed: " + ", ".join(changed))
    return "\n".join(lines)
