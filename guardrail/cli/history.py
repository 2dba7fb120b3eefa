"""`guardrail noise` and `guardrail changepoints`: the stored history of series, read by the analysis layer."""

from __future__ import annotations

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
