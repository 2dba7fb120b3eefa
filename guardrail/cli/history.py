"""`guardrail noise` and `guardrail changepoints`: the stored history of series, read by the analysis layer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from guardrail.cli.app import DbOption, app, echo_json, resolve_db


@app.command("noise")
def noise_cmd(
    lane: Annotated[str, typer.Option(help="Lane whose history, thresholds and baseline window are used.")] = "nightly",
    hardware: Annotated[str | None, typer.Option(help="Only this hardware.")] = None,
    workload: Annotated[str | None, typer.Option(help="Only this workload name.")] = None,
    history: Annotated[int, typer.Option(help="Newest runs per series.")] = 30,
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    db: DbOption = None,
) -> None:
    """Per series: within- and between-process CV, bimodality, outlier rate, LANE's threshold for its metric, and
    whether it is noisy: LANE's most repeats (a run's plus the rerun policy's extra) cannot resolve that threshold."""
    from guardrail.analysis.noise import noise_json, render_noise_table
    from guardrail.history import noise_rows
    from guardrail.store.db import session_scope

    with session_scope(resolve_db(db)) as s:
        rows = noise_rows(s, lane=lane, hardware=hardware, workload=workload, history=history)
    if fmt == "json":
        echo_json(noise_json(rows))
    else:
        typer.echo(render_noise_table(rows))


@app.command("plan-repeats")
def plan_repeats_cmd(
    lane: Annotated[str, typer.Option(help="Lane the run is for; its policy names the history and thresholds.")] = (
        "presubmit"
    ),
    hardware: Annotated[str | None, typer.Option(help="Only this hardware.")] = None,
    workload: Annotated[list[str] | None, typer.Option("--workload", help="Only this workload (repeatable).")] = None,
    min_repeats: Annotated[
        int, typer.Option("--min-repeats", help="A workload's repeats where its file names none for the lane.")
    ] = 2,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the JSON plan here (for `guardrail run --repeats-plan`).")
    ] = None,
    server: Annotated[
        str | None,
        typer.Option("--server", help="Ask a running service instead of a store (token: $GUARDRAIL_TOKEN)."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    db: DbOption = None,
) -> None:
    """How many repeats each workload's LANE run should start with, so that the check can resolve its thresholds
    without a rerun: more only where the stored history is noisy enough to need them (docs/statistics.md)."""
    from guardrail.errors import InputError
    from guardrail.history import REPEAT_PLAN_SCHEMA, repeat_plans
    from guardrail.store.db import session_scope

    if min_repeats < 1:
        raise InputError("must be at least 1", field="--min-repeats")
    if server:
        import os

        from guardrail.upload import fetch_repeat_plan

        doc = fetch_repeat_plan(
            server,
            token=os.environ.get("GUARDRAIL_TOKEN"),
            lane=lane,
            hardware=hardware,
            workloads=workload,
            min_repeats=min_repeats,
        )
        plans = doc["workloads"]
    else:
        with session_scope(resolve_db(db)) as s:
            plans = repeat_plans(s, lane=lane, hardware=hardware, workloads=workload, min_repeats=min_repeats)
        doc = {"schema": REPEAT_PLAN_SCHEMA, "lane": lane, "workloads": plans}
    if out is not None:
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(out)  # never half-written
    if fmt == "json":
        echo_json(doc)
        return
    if not plans:
        typer.echo(f"no stored history for lane {lane}'s baseline: every workload runs its own repeats")
        return
    for p in plans:
        more = p["repeats"] - p["lane_repeats"]
        head = f"{p['workload']} on {p['hardware']}: {p['repeats']} repeats"
        if more <= 0:
            typer.echo(f"{head} (the lane's)")
            continue
        top = max(p["series"], key=lambda x: x["repeats"])
        typer.echo(f"{head} ({more} more than the lane's {p['lane_repeats']}: {top['metric']}: {top['reason']})")
    added = sum(max(p["repeats"] - p["lane_repeats"], 0) for p in plans)
    typer.echo(
        f"{len(plans)} workload{'' if len(plans) == 1 else 's'}, {sum(p['repeats'] for p in plans)} repeats in all "
        f"({added} more than the lanes' own)"
    )


@app.command("changepoints")
def changepoints_cmd(
    lane: Annotated[str, typer.Option(help="Lane whose history is scanned.")] = "nightly",
    branch: Annotated[str | None, typer.Option(help="Only runs of this branch.")] = "main",
    hardware: Annotated[str | None, typer.Option(help="Only this hardware.")] = None,
    window: Annotated[int, typer.Option(help="Points compared on each side.")] = 50,
    p_value: Annotated[float, typer.Option("--p-value", help="Significance level.")] = 0.001,
    min_magnitude: Annotated[float, typer.Option("--min-magnitude", help="Smallest relative change.")] = 0.01,
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    db: DbOption = None,
) -> None:
    """Find change points on every stored series of LANE; new ones become alerts (one per workload and commit
    range). `guardrail detect SERIES.csv` does the same for one series in a file."""
    from guardrail.alerts import headline
    from guardrail.history import scan_change_points
    from guardrail.store.db import session_scope

    with session_scope(resolve_db(db), write=True) as s:
        alerts = scan_change_points(
            s,
            lane=lane,
            branch=branch,
            hardware=hardware,
            window=window,
            p_value=p_value,
            min_magnitude=min_magnitude,
        )
        out: list[dict[str, Any]] = [
            {
                "id": a.id,
                "kind": a.kind,
                "workload": a.workload.name,
                "hardware": a.hardware,
                "commit_range": [a.from_commit, a.to_commit],
                "change": a.change,
                "metrics": a.metrics,
            }
            for a in alerts
        ]
    if fmt == "json":
        echo_json({"schema": "guardrail.alerts/v1", "new_alerts": out})
        return
    for a in out:
        typer.echo(
            f"alert {a['id']} ({a['kind']}): {a['workload']} on {a['hardware']}, {headline(a['metrics'])}, between "
            f"{a['commit_range'][0] or '(start)'} and {a['commit_range'][1]} "
            f"({', '.join(x['metric'] for x in a['metrics'])})"
        )
    typer.echo(f"{len(out)} new change-point alert{'' if len(out) == 1 else 's'}")
