"""`guardrail check` (a stored run against its baseline policy) and `guardrail compare` (result files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from guardrail.cli.app import DbOption, app, resolve_db
from guardrail.errors import InputError

if TYPE_CHECKING:
    from guardrail.verdicts import VerdictsDoc

FormatOption = Annotated[str, typer.Option("--format", help="text, json or markdown.")]


def emit(doc: VerdictsDoc, fmt: str, dashboard_url: str | None = None) -> None:
    from guardrail.verdicts import exit_code, render_text

    if fmt == "json":
        typer.echo(json.dumps(doc.to_dict(), indent=1))
    elif fmt == "markdown":
        from guardrail.reports.markdown import render_markdown

        typer.echo(render_markdown(doc, dashboard_url=dashboard_url))
    elif fmt == "text":
        typer.echo(render_text(doc))
    else:
        raise InputError(f"unknown format {fmt!r}; one of text, json, markdown", field="--format")
    code = exit_code(doc)
    if code:
        raise typer.Exit(code)


@app.command("check")
def check_cmd(
    run: Annotated[int | None, typer.Option("--run", help="Run id to judge.")] = None,
    commit: Annotated[str | None, typer.Option("--commit", help="Judge the newest runs of this commit.")] = None,
    lane: Annotated[str | None, typer.Option("--lane", help="With --commit: only runs of this lane.")] = None,
    fmt: FormatOption = "text",
    dashboard_url: Annotated[
        str | None,
        typer.Option("--dashboard-url", envvar="GUARDRAIL_DASHBOARD_URL", help="Links in markdown output."),
    ] = None,
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not record the check.")] = False,
    db: DbOption = None,
) -> None:
    """Compare a stored run against its lane's baseline. Exit 1 on a regression or a missing baseline."""
    if fmt not in ("text", "json", "markdown"):
        raise InputError(f"unknown format {fmt!r}; one of text, json, markdown", field="--format")
    from guardrail.check import check_runs, find_runs
    from guardrail.store.db import session_scope

    with session_scope(resolve_db(db), write=not no_store) as session:
        runs = find_runs(session, run_id=run, commit=commit, lane=lane)
        doc = check_runs(session, runs, store=not no_store)
    emit(doc, fmt, dashboard_url)


@app.command("compare", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def compare_cmd(
    ctx: typer.Context,
    lane: Annotated[
        str | None,
        typer.Option(
            help="Judge with this lane's policy (default: the candidate's lane if it has one, else built-in defaults)."
        ),
    ] = None,
    threshold: Annotated[float | None, typer.Option(help="Practical threshold for every metric, e.g. 0.01.")] = None,
    fmt: FormatOption = "text",
) -> None:
    """The statistics of `check` on result files, without a database.

    Usage: guardrail compare --baseline FILE... --candidate FILE... [--format text|json|markdown]
    """
    from guardrail.compare_files import compare_files
    from guardrail.policy import BASELINES_DIR, Policy, load_lane_policy
    from guardrail.schema import load_result

    baseline, candidate = split_file_lists(ctx.args)
    if fmt not in ("text", "json", "markdown"):
        raise InputError(f"unknown format {fmt!r}; one of text, json, markdown", field="--format")
    lane = lane or (load_result(candidate[0]).run.lane if candidate else None)
    policy = load_lane_policy(lane) if lane and (BASELINES_DIR / f"{lane}.yaml").is_file() else Policy(lane=lane or "-")
    if threshold is not None:
        policy = policy.model_copy(update={"thresholds": {"default": threshold}})
    emit(compare_files(baseline, candidate, policy), fmt)


def split_file_lists(args: list[str]) -> tuple[list[Path], list[Path]]:
    """`--baseline A B --candidate C D` (each flag takes several files, and may repeat)."""
    lists: dict[str, list[Path]] = {"--baseline": [], "--candidate": []}
    current = None
    for arg in args:
        if arg in lists:
            current = arg
        elif arg.startswith("-"):
            raise InputError(f"unknown option {arg}", field=arg)
        elif current is None:
            raise InputError(f"{arg}: say whether it is a --baseline or a --candidate file", field="--baseline")
        else:
            lists[current].append(Path(arg))
    return lists["--baseline"], lists["--candidate"]
