"""`guardrail alerts`: the alerts in the store, one line each or as the guardrail.alerts/v1 document (the same
document the JSON API serves). Parsing and printing only: the document is guardrail.alerts'."""

from __future__ import annotations

from typing import Annotated

import typer

from guardrail.cli.app import DbOption, app, echo_json, resolve_db
from guardrail.errors import InputError
from guardrail.vocabulary import ALERT_KINDS, OPEN_STATES, TRIAGE_STATES


def _more(n: int) -> str:
    return f" (+{n} more metric{'' if n == 1 else 's'})" if n else ""


@app.command("alerts")
def alerts_cmd(
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            help=f"Only this triage state, repeatable; 'all' for every one (default: {', '.join(OPEN_STATES)}).",
        ),
    ] = None,
    kind: Annotated[str | None, typer.Option("--kind", help=f"Only this kind: {' or '.join(ALERT_KINDS)}.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    db: DbOption = None,
) -> None:
    """List alerts, newest first: one per change of a workload on a hardware, with every metric it moved."""
    from guardrail.alerts import alerts_doc, headline, list_alerts
    from guardrail.store.db import session_scope

    states = list(OPEN_STATES) if not state else [] if state == ["all"] else state
    for s in states:
        if s not in TRIAGE_STATES:
            raise InputError(f"unknown state {s!r}; one of {', '.join(TRIAGE_STATES)} or all", field="--state")
    if kind is not None and kind not in ALERT_KINDS:
        raise InputError(f"unknown kind {kind!r}; {' or '.join(ALERT_KINDS)}", field="--kind")
    if fmt not in ("text", "json"):
        raise InputError(f"unknown format {fmt!r}; text or json", field="--format")
    with session_scope(resolve_db(db)) as session:
        rows = list_alerts(session, states=states, kind=kind)
        doc = alerts_doc(rows)
        lines = [
            f"#{a.id} {a.kind} {a.state}: {a.workload.name} on {a.hardware} "
            f"{f'{a.from_commit}..{a.to_commit}' if a.from_commit else f'at {a.to_commit}'}: {headline(a.metrics)}"
            + _more(len(a.metrics) - 1)
            for a in rows
        ]
    if fmt == "json":
        echo_json(doc, indent=1)
        return
    for line in lines:
        typer.echo(line)
    typer.echo(f"{len(rows)} alert{'' if len(rows) == 1 else 's'}")
