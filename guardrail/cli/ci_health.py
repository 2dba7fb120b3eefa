"""`guardrail ci-health`: pass rate, flaky rate, CI minutes lost to reruns and infrastructure errors by kind
(guardrail.ci-health/v1)."""

from __future__ import annotations

from typing import Annotated

import typer

from guardrail import clock
from guardrail.cli.app import DbOption, app, echo_json, resolve_db
from guardrail.cli.flaky_report import FormatOption, text_or_json


@app.command("ci-health")
def ci_health_cmd(
    fmt: FormatOption = "text",
    days: Annotated[int, typer.Option(help="Days back from now.", min=1)] = 14,
    lane: Annotated[str | None, typer.Option(help="Only this lane.")] = None,
    hardware: Annotated[str | None, typer.Option(help="Only this hardware.")] = None,
    db: DbOption = None,
) -> None:
    """Pass rate, flaky rate, CI minutes lost to reruns, infrastructure errors by kind (guardrail.ci-health/v1)."""
    from guardrail.store.db import session_scope
    from guardrail.store.junit_queries import ci_health_doc

    fmt = text_or_json(fmt)
    with session_scope(resolve_db(db)) as s:
        doc = ci_health_doc(s, now=clock.now(), days=days, lane=lane, hardware=hardware)
    if fmt == "json":
        echo_json(doc, indent=1)
        return
    if not doc["totals"]:
        typer.echo(f"no test verdicts in the last {days} days")
    for t in doc["totals"]:
        rate = "-" if t["pass_rate"] is None else f"{t['pass_rate']:.1%}"
        flaky = "-" if t["flaky_rate"] is None else f"{t['flaky_rate']:.1%}"
        infra = ", ".join(f"{k} {n}" for k, n in t["infra_errors"].items()) or "none"
        typer.echo(
            f"{t['lane']} on {t['hardware']}: {t['tests']} verdicts, pass {rate}, flaky {flaky}, "
            f"{t['rerun_minutes']:.1f} CI minutes on reruns, infra errors: {infra}"
        )
