"""`guardrail parity --reference H100 --target A3`: the share of the reference hardware's test cases that also
run and pass on the target, per suite and per day, with the missing, skipped, failing and excluded cases and the
CI minutes per lane (guardrail.parity/v1, docs/parity.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from guardrail import clock
from guardrail.cli.app import DbOption, app, echo_json, resolve_db
from guardrail.cli.flaky_report import FormatOption, text_or_json
from guardrail.errors import InputError

DEFAULT_DAYS = 30


def _since(value: str | None, now: datetime) -> datetime:
    if value is None:
        return now - timedelta(days=DEFAULT_DAYS)
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"expected a date or time such as 2026-11-01, got {value!r}", field="--since") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _text(doc: dict[str, Any]) -> None:
    echo = typer.echo
    echo(
        f"parity of {doc['target']} against {doc['reference']}: run share {_pct(doc['run_share'])} "
        f"({doc['ran']}/{doc['cases']}), pass share {_pct(doc['pass_share'])} ({doc['passed']}/{doc['cases']}); "
        f"goal {doc['goal']:.0%}: {'met' if doc['meets_goal'] else 'not met'}"
    )
    for role in ("reference", "target"):
        runs = doc["runs"][role]
        echo(f"  {role} runs: " + (", ".join(f"{r['lane']} #{r['run_id']} ({r['at'][:10]})" for r in runs) or "none"))
    if doc["suites"]:
        echo("per suite:")
        for s in doc["suites"]:
            echo(
                f"  {s['suite']}: run {_pct(s['run_share'])}, pass {_pct(s['pass_share'])} of {s['cases']}"
                f" (missing {s['missing']}, skipped {s['skipped']}, failing {s['failing']}, excluded {s['excluded']})"
            )
    for kind in ("missing", "skipped", "failing"):
        if doc[kind]:
            echo(f"{kind} ({len(doc[kind])}):")
            for c in doc[kind]:
                there = f" -> {c['target_test']} [{c['verdict']}]" if "target_test" in c else ""
                echo(f"  {c['test']}{there}")
    if doc["excluded"]:
        echo(f"excluded by rule ({len(doc['excluded'])}):")
        for c in doc["excluded"]:
            echo(f"  {c['test']}: {c['reason']}")
    if doc["series"]:
        echo("per day: " + "; ".join(f"{p['day']} run {_pct(p['run_share'])} pass {_pct(p['pass_share'])}"
                                     for p in doc["series"]))  # fmt: skip
    mins = doc["ci_minutes"]
    for ln in mins["lanes"]:
        echo(
            f"CI minutes {ln['lane']} on {ln['hardware']} ({ln['role']}): {ln['runs']} runs, "
            f"median {ln['median_minutes']:.1f} min per run"
        )
    if mins["target_vs_reference"] is not None:
        echo(
            f"newest runs: {mins['target_latest']:.1f} min on {doc['target']} vs {mins['reference_latest']:.1f} min "
            f"on {doc['reference']} (x{mins['target_vs_reference']:.2f})"
        )


@app.command("parity")
def parity_cmd(
    reference: Annotated[str, typer.Option(help="The reference hardware (e.g. H100), as stored.")],
    target: Annotated[str, typer.Option(help="The target hardware (e.g. A3, Ascend910B3), as stored.")],
    lane: Annotated[
        list[str] | None, typer.Option(help="Only runs of these lanes (repeat the option); default every lane.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help=f"Runs started on or after this date (default: {DEFAULT_DAYS} days ago).")
    ] = None,
    rules: Annotated[Path | None, typer.Option(help="Parity rules YAML (default baselines/parity-rules.yaml).")] = None,
    min_share: Annotated[
        float | None,
        typer.Option("--min-share", help="Exit 1 when the pass share is below this (0..1), or nothing was compared."),
    ] = None,
    fmt: FormatOption = "text",
    db: DbOption = None,
) -> None:
    """GPU↔NPU parity from stored JUnit results: run share, pass share, per suite and day (guardrail.parity/v1)."""
    from guardrail.parity import parity_doc
    from guardrail.store.db import session_scope

    fmt = text_or_json(fmt)
    if min_share is not None and not 0 <= min_share <= 1:
        raise InputError(f"expected a share between 0 and 1, got {min_share}", field="--min-share")
    now = clock.now()
    with session_scope(resolve_db(db)) as s:
        doc = parity_doc(
            s,
            reference=reference,
            target=target,
            now=now,
            lanes=lane or (),
            since=_since(since, now),
            rules_file=str(rules) if rules is not None else None,
        )
    if fmt == "json":
        echo_json(doc, indent=1)
    else:
        _text(doc)
    if min_share is not None and (doc["pass_share"] is None or doc["pass_share"] < min_share):
        raise typer.Exit(1)
