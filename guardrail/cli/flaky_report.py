"""`guardrail flaky`: the flaky-test report (guardrail.flaky/v1): score, state and reason per test variant."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from guardrail import clock
from guardrail.cli.app import DbOption, app, echo_json, resolve_db
from guardrail.errors import InputError

FormatOption = Annotated[str, typer.Option("--format", help="text or json.")]
PolicyOption = Annotated[
    Path | None, typer.Option("--policy", help="Rerun policy YAML (default: baselines/rerun-policy.yaml).")
]


def text_or_json(fmt: str) -> str:
    if fmt not in ("text", "json"):
        raise InputError(f"unknown format {fmt!r}; text or json", field="--format")
    return fmt


@app.command("flaky")
def flaky_cmd(
    fmt: FormatOption = "text",
    lane: Annotated[str | None, typer.Option(help="Only verdicts of this lane.")] = None,
    hardware: Annotated[str | None, typer.Option(help="Only this hardware (the run's or the test's).")] = None,
    all_tests: Annotated[bool, typer.Option("--all", help="Healthy tests too (JSON always has them).")] = False,
    policy: PolicyOption = None,
    db: DbOption = None,
) -> None:
    """Flaky-test report: score, state and reason per test variant (guardrail.flaky/v1)."""
    from guardrail.analysis.flaky_scores import flaky_report
    from guardrail.rerun_policy.yaml_file import load_rerun_policy
    from guardrail.store.db import session_scope
    from guardrail.store.junit_queries import flaky_stats

    fmt = text_or_json(fmt)
    pol = load_rerun_policy(policy)
    with session_scope(resolve_db(db)) as s:
        stats = flaky_stats(s, now=clock.now(), policy=pol.flakiness, lane=lane, hardware=hardware)
    doc = flaky_report(stats, only_flagged=fmt == "text" and not all_tests)
    if fmt == "json":
        echo_json(doc, indent=1)
        return
    for t in doc["tests"]:
        typer.echo(f"{t['state']:<11} {t['score']:.3f}  {t['key']}  ({t['reason']})")
    sm = doc["summary"]
    typer.echo(
        f"{len(stats)} test variants: {sm['flaky']} flaky, {sm['broken']} broken, {sm['quarantined']} quarantined"
    )
