"""`guardrail run`: execute a lane's workloads and write one result file per workload execution."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from guardrail.cli.app import app
from guardrail.errors import InfraError


@app.command("run")
def run_command(
    lane: Annotated[str, typer.Option("--lane", help="presubmit | nightly | extended | release")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the result files (created).")],
    workload: Annotated[
        list[str] | None, typer.Option("--workload", help="Run only this workload (repeatable).")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | npu")] = "auto",
    scale: Annotated[str, typer.Option("--scale", help="tiny (CPU-sized configs) | full (real architecture)")] = "tiny",
    repeats: Annotated[int | None, typer.Option("--repeats", help="Fresh processes per workload.")] = None,
    repeats_plan: Annotated[
        Path | None,
        typer.Option("--repeats-plan", help="Repeats per workload and hardware from `guardrail plan-repeats --out`."),
    ] = None,
    workloads_dir: Annotated[
        Path | None, typer.Option("--workloads-dir", help="Workload YAML directory (default: ./workloads).")
    ] = None,
    commit: Annotated[str | None, typer.Option("--commit")] = None,
    branch: Annotated[str | None, typer.Option("--branch")] = None,
    pr: Annotated[int | None, typer.Option("--pr")] = None,
    base_commit: Annotated[str | None, typer.Option("--base-commit")] = None,
    repo: Annotated[str | None, typer.Option("--repo")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress display.")] = False,
    profile: Annotated[
        bool,
        typer.Option(
            "--profile", help="After the timed repeats, one more process profiles each workload (docs/profiles.md)."
        ),
    ] = False,
    oversubscribe: Annotated[
        bool,
        typer.Option(
            "--oversubscribe",
            help="CPU only: a parallel job may start up to 4 ranks per core (the picture is validated; the job's "
            "timings do not measure scaling, so no scaling efficiency is recorded).",
        ),
    ] = False,
) -> None:
    """Run workloads through the real pipelines. Exit 0 all ok, 3 if any failed or timed out, 2 bad input."""
    from guardrail.ci_env import source_from_env
    from guardrail.schema import load_result
    from runners import run_lane

    source = source_from_env(repo=repo, commit=commit, branch=branch, pr=pr, base_commit=base_commit)
    planned = _read_repeats_plan(repeats_plan) if repeats_plan is not None else None
    files = run_lane(
        lane,
        names=workload or None,
        device=device,
        scale=scale,
        repeats=repeats,
        planned_repeats=planned,
        out_dir=out,
        progress=not quiet,
        source=source,
        workloads_dir=workloads_dir,
        profile=profile,
        oversubscribe=oversubscribe,
    )
    failed = []
    for f in files:
        r = load_result(f)
        typer.echo(f"{r.status:12s} {r.workload.name}  {f}")
        if r.status != "ok":
            failed.append(f"{r.workload.name} ({r.status}: {r.error.kind if r.error else '?'})")
    if failed:
        raise InfraError(f"{len(failed)} of {len(files)} workloads did not complete: {', '.join(failed)}")


def _read_repeats_plan(path: Path) -> dict[tuple[str, str], int]:
    """(workload, hardware) -> repeats, from a `guardrail.repeat_plan/v1` file; bad input names the file and field."""
    import json

    from guardrail.errors import InputError

    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the repeats plan ({exc})", file=str(path)) from None
    if not isinstance(doc, dict) or doc.get("schema") != "guardrail.repeat_plan/v1":
        raise InputError("not a guardrail.repeat_plan/v1 file", file=str(path), field="$.schema")
    out: dict[tuple[str, str], int] = {}
    for i, w in enumerate(doc.get("workloads") or []):
        n = w.get("repeats") if isinstance(w, dict) else None
        if not isinstance(n, int) or isinstance(n, bool) or n < 1 or not w.get("workload") or not w.get("hardware"):
            raise InputError("needs workload, hardware and repeats >= 1", file=str(path), field=f"$.workloads[{i}]")
        out[(str(w["workload"]), str(w["hardware"]))] = n
    return out
