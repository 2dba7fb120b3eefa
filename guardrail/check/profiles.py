"""A check's regressions with their profile diffs: when a regression's candidate results and its baseline carry
profiles (`guardrail run --profile`, stored in `extra.profile`), the diff of the newest of each is attached to the
verdict row (guardrail.verdicts.ProfileDiffInfo), so the PR comment, the run and alert pages and the API show the
ops that made it slower."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from guardrail.analysis.profile_diff import diff_profiles
from guardrail.store import models as m
from guardrail.verdicts import ProfileContributor, ProfileDiffInfo, VerdictRow, VerdictsDoc

STEP_METRIC = "denoise_step_latency"  # its medians are ms per step, the diff's unit
TOP = 5


def profile_of(result: m.Result) -> dict[str, Any] | None:
    p = (result.extra or {}).get("profile")
    if isinstance(p, dict) and "error" not in p and isinstance(p.get("ops"), list):
        return p
    return None


def newest_profiled(results: Sequence[m.Result]) -> tuple[m.Result, dict[str, Any]] | None:
    """The newest result (by its run's start, then id) that carries a usable profile."""
    ranked = sorted(results, key=lambda r: (r.run.started_at, r.run_id, r.id), reverse=True)
    for r in ranked:
        p = profile_of(r)
        if p is not None:
            return r, p
    return None


def diff_info(
    base: tuple[m.Result, dict[str, Any]], cand: tuple[m.Result, dict[str, Any]], change_ms: float | None
) -> ProfileDiffInfo:
    d = diff_profiles(base[1], cand[1], change_ms=change_ms)

    def rows(key: str) -> list[ProfileContributor]:
        return [ProfileContributor.model_validate(r) for r in d[key][:TOP]]

    b_run = base[0].run
    return ProfileDiffInfo(
        baseline_run=b_run.id,
        baseline_commit=b_run.commit.sha if b_run.commit else None,
        candidate_run=cand[0].run_id,
        time_basis=d["time_basis"],
        change_ms=d["change_ms"],
        explained_ms=d["explained_ms"],
        explained_share=d["explained_share"],
        explains=d["explains"],
        note=d["note"],
        contributors=rows("contributors"),
        modules=rows("modules"),
        new_ops=d["new_ops"][:10],
        vanished_ops=d["vanished_ops"][:10],
        trace=cand[1].get("trace"),
    )


def attach_profile_diffs(
    doc: VerdictsDoc,
    candidates: Mapping[int, Sequence[m.Result]],
    baselines: Mapping[int, Sequence[m.Result]],
) -> VerdictsDoc:
    """`candidates` and `baselines`: workload id -> its results in the run judged and in its baseline."""
    by_name: dict[str, tuple[tuple[m.Result, dict[str, Any]], tuple[m.Result, dict[str, Any]]]] = {}
    for wid, results in candidates.items():
        cand = newest_profiled(results)
        base = newest_profiled(baselines.get(wid, ()))
        if cand is not None and base is not None:
            by_name[results[0].workload.name] = (base, cand)
    if not by_name:
        return doc
    rows: list[VerdictRow] = []
    for v in doc.verdicts:
        pair = by_name.get(v.workload)
        if v.verdict == "regression" and pair is not None and (v.unit in (None, "ms", "s")):
            change = None
            if v.metric == STEP_METRIC and v.candidate.median is not None and v.baseline.median is not None:
                change = v.candidate.median - v.baseline.median
            v = v.model_copy(update={"profile_diff": diff_info(pair[0], pair[1], change)})
        rows.append(v)
    return doc.model_copy(update={"verdicts": rows})
