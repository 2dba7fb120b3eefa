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
        typer.Option("--profile", help="After the timed repeats, one more process profiles each workload (docs/profiles.md)."),
    ] = False,
) -> None:
    """Run workloads through the real pipelines. Exit 0 all ok, 3 if any failed or timed out, 2 bad input."""
    from guardrail.ci_env import source_from_env
    from guardrail.schema import load_result
    from runners import run_lane

    source = source_from_env(repo=repo, commit=commit, branch=branch, pr=pr, base_commit=base_commit)
    files = run_lane(
        lane,
        names=workload or None,
        device=device,
        scale=scale,
        repeats=repeats,
        out_dir=out,
        progress=not quiet,
        source=source,
        workloads_dir=workloads_dir,
        profile=profile,
    )
    failed = []
    for f in files:
        r = load_result(f)
        typer.echo(f"{r.status:12s} {r.workload.name}  {f}")
        if r.status != "ok":
            failed.append(f"{r.workload.name} ({r.status}: {r.error.kind if r.error else '?'})")
    if failed:
        raise InfraError(f"{len(failed)} of {len(files)} workloads did not complete: {', '.join(failed)}")
