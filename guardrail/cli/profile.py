"""`guardrail profile-diff BASE_RESULT CANDIDATE_RESULT`: which ops and modules made the candidate slower, from the
profiles `guardrail run --profile` stored in the two result files (guardrail.analysis.profile_diff)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Annotated, Any

import typer

from guardrail.cli.app import app, echo_json
from guardrail.errors import InputError
from guardrail.schema import Result

STEP_METRIC = "denoise_step_latency"


def profile_of(result: Result, file: str) -> dict[str, Any]:
    """The result's `extra.profile`, or one line of bad input saying why there is none."""
    profile = result.extra.get("profile")
    if not isinstance(profile, dict):
        raise InputError("no profile in this result (run it with `guardrail run --profile`)", file=file,
                         field="$.extra.profile")  # fmt: skip
    if "error" in profile:
        raise InputError(f"the profile failed: {profile['error']}", file=file, field="$.extra.profile.error")
    if not isinstance(profile.get("ops"), list):
        raise InputError("not a guardrail.profile/v1 aggregate (no 'ops' list)", file=file, field="$.extra.profile.ops")
    return profile


def timed_change_ms(baseline: Result, candidate: Result, metric: str = STEP_METRIC) -> float | None:
    """Candidate minus baseline median of the timed step latency (ms per step), when both measured it."""
    b, c = baseline.metric(metric), candidate.metric(metric)
    if b is None or c is None or b.unit != "ms" or c.unit != "ms":
        return None
    return statistics.median(x for r in c.repeats for x in r) - statistics.median(x for r in b.repeats for x in r)


@app.command("profile-diff")
def profile_diff_command(
    baseline: Annotated[Path, typer.Argument(help="The baseline's result file (with extra.profile).")],
    candidate: Annotated[Path, typer.Argument(help="The candidate's result file (with extra.profile).")],
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
) -> None:
    """Ranked contributors to the candidate's slowdown (ms per step, share of the change), new and vanished ops,
    changed call counts; says when the profiles cannot explain the timed change. Exit 0, or 2 on bad input."""
    from guardrail.analysis.profile_diff import diff_profiles, render_text
    from guardrail.schema import load_result

    if fmt not in ("text", "json"):
        raise InputError(f"unknown format {fmt!r}; one of text, json", field="--format")
    base, cand = load_result(baseline), load_result(candidate)
    diff = diff_profiles(
        profile_of(base, str(baseline)), profile_of(cand, str(candidate)), change_ms=timed_change_ms(base, cand)
    )
    diff = {**diff, "baseline": str(baseline), "candidate": str(candidate)}
    if fmt == "json":
        echo_json(diff)
    else:
        typer.echo(render_text(diff))
