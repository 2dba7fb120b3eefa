"""`guardrail gate`: the main job in one command — run a lane, ingest, check, report.

On the embedded default (SQLite, CPU, tiny workloads) a fresh machine has no history to compare with. Rather
than pass silently or invent numbers, the gate then measures a baseline first: the same workloads run as this
machine's `nightly` lane on `main`, and says so. Every number in the report was measured here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from guardrail import clock
from guardrail.cli.app import DbOption, app, resolve_db

# Fresh processes of the bootstrap baseline (unless --repeats says otherwise): 5 give the series 4 degrees of
# freedom of its own, so its first judgement uses the noise measured here instead of the conservative prior
# (docs/statistics.md, "prior"); with the nightly lane's 3 every A/A verdict was `noisy` by the prior alone.
BOOTSTRAP_REPEATS = 5


def _has_history(url: str, lanes: list[str], branch: str | None, digests: set[str]) -> bool:
    from sqlalchemy import select

    from guardrail.store import models as m
    from guardrail.store.db import session_scope

    with session_scope(url) as s:
        q = (
            select(m.Result.id)
            .join(m.Run, m.Result.run_id == m.Run.id)
            .join(m.Workload)
            .where(m.Run.lane.in_(lanes), m.Workload.digest.in_(digests), m.Result.status == "ok")
        )
        if branch:
            q = q.where(m.Run.branch == branch)
        return s.scalar(q.limit(1)) is not None


@app.command("gate")
def gate(
    lane: Annotated[str, typer.Option(help="Lane to run and judge.")] = "presubmit",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or npu.")] = "cpu",
    scale: Annotated[str, typer.Option(help="tiny or full.")] = "tiny",
    repeats: Annotated[int | None, typer.Option(help="Fresh processes per workload (default: the lane's).")] = None,
    out: Annotated[Path, typer.Option(help="Where result files go.")] = Path("guardrail-out"),
    bootstrap: Annotated[bool, typer.Option(help="With no baseline history, measure one first.")] = True,
    fmt: Annotated[str, typer.Option("--format", help="text, json or markdown.")] = "text",
    db: DbOption = None,
) -> None:
    """Run LANE, ingest its results, check them against the lane's baseline policy and print the report."""
    from guardrail.check import check_runs, find_runs
    from guardrail.cli.check import emit
    from guardrail.ingest import ingest
    from guardrail.policy import load_lane_policy
    from guardrail.store.db import redact, session_scope

    url = resolve_db(db)
    policy = load_lane_policy(lane)
    stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
    from guardrail.adapters.identity import digest
    from guardrail.ci_env import source_from_env
    from runners import run_lane
    from runners.spec import effective_spec
    from runners.workloads import select

    chosen = [spec for _, spec in select(lane)]
    digests = {digest(effective_spec(spec, scale)) for spec in chosen}
    base = policy.baseline
    if bootstrap and base.source == "history" and not _has_history(url, base.lanes, base.branch, digests):
        typer.secho(
            f"No {'/'.join(base.lanes)} history for these workloads in {redact(url)} yet: measuring a "
            f"baseline on this machine first (the same workloads, {repeats or BOOTSTRAP_REPEATS} fresh processes "
            f"each, recorded as this machine's "
            f"{base.lanes[0]} lane on {base.branch or 'this branch'}).",
            fg="yellow",
            err=True,
        )
        source = source_from_env()
        source = source.model_copy(update={"branch": base.branch or source.branch, "pr": None, "base_commit": None})
        files = run_lane(
            base.lanes[0],
            names=[s.name for s in chosen],
            device=device,
            scale=scale,
            repeats=repeats or BOOTSTRAP_REPEATS,
            out_dir=out / stamp / "baseline",
            source=source,
        )
        ingest(url, files)
    files = run_lane(lane, device=device, scale=scale, repeats=repeats, out_dir=out / stamp / lane)
    report = ingest(url, files)
    typer.echo(
        f"ingested {len(report.stored)} results into {redact(url)} (run {', '.join(map(str, report.run_ids))})",
        err=True,
    )
    with session_scope(url, write=True) as session:
        runs = [r for rid in report.run_ids for r in find_runs(session, run_id=rid, commit=None, lane=None)]
        doc = check_runs(session, runs)
    first = doc.run.id if doc.run else None
    typer.echo(
        f"next: guardrail serve --db {redact(url)}   then open http://127.0.0.1:8000/runs/{first}\n"
        f"      guardrail check --run {first} --format markdown   (the PR comment)",
        err=True,
    )
    emit(doc, fmt)
