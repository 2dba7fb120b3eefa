"""`guardrail comment`: one sticky PR comment, a commit status and the job summary for a check."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from guardrail.cli.app import DbOption, app, resolve_db
from guardrail.errors import InfraError, InputError
from guardrail.schema import json_path
from guardrail.verdicts import RunInfo, VerdictsDoc, WorkloadError


def load_verdicts(path: Path) -> VerdictsDoc | None:
    """The document in a file; None for an empty object (nothing checked yet: the status stays pending)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    except ValueError as exc:
        raise InputError(f"not JSON: {exc}", file=str(path)) from None
    if not isinstance(doc, dict):
        raise InputError("expected a JSON object", file=str(path))
    schema = doc.get("schema")
    if schema is not None and not str(schema).startswith("guardrail.verdicts/"):
        raise InputError(f"expected guardrail.verdicts/v1, got {schema!r}", file=str(path), field="schema")
    try:
        return VerdictsDoc.model_validate(doc) if doc else None
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise InputError(err["msg"], file=str(path), field=json_path(tuple(err["loc"]))) from None


def write_step_summary(markdown: str, env: dict[str, str] | None = None) -> Path | None:
    """Append to $GITHUB_STEP_SUMMARY (GitHub shows it on the run's page) when the variable is set."""
    target = (env if env is not None else os.environ).get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    try:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(markdown.rstrip("\n") + "\n\n")
    except OSError as exc:
        raise InfraError(f"{target}: cannot write the job summary: {exc.strerror or exc}") from None
    return Path(target)


def _target_url(run: RunInfo, dashboard_url: str | None) -> str | None:
    if dashboard_url:
        base = dashboard_url.rstrip("/")
        return f"{base}/runs/{run.id}" if run.id is not None else base
    return run.url if run.url and run.url.startswith(("https://", "http://")) else None


@app.command("comment")
def comment(
    repo: Annotated[
        str | None,
        typer.Option("--repo", help="OWNER/NAME (default: $GITHUB_REPOSITORY).", show_default=False),
    ] = None,
    pr: Annotated[int | None, typer.Option("--pr", help="Pull request number; without it, no comment.")] = None,
    sha: Annotated[
        str | None, typer.Option("--sha", help="Commit for the status (default: the checked run's commit).")
    ] = None,
    verdicts: Annotated[
        Path | None,
        typer.Option("--verdicts", help="Output of guardrail check --format json (else: read from the database)."),
    ] = None,
    dashboard_url: Annotated[
        str | None,
        typer.Option(
            "--dashboard-url",
            help="Dashboard base URL (default: $GUARDRAIL_DASHBOARD_URL).",
            show_default=False,
        ),
    ] = None,
    lane: Annotated[
        str | None,
        typer.Option("--lane", help="Lane for the status context (default: the checked run's lane)."),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="Names the sticky comment and status context (default: the lane).",
            show_default=False,
        ),
    ] = None,
    pending: Annotated[
        bool, typer.Option("--pending", help="Only mark the commit status pending (before the run).")
    ] = False,
    error: Annotated[
        str | None,
        typer.Option("--error", help="Report an infrastructure error (the check could not run) with this message."),
    ] = None,
    title: Annotated[str, typer.Option("--title", help="Heading of the comment.")] = "Performance guardrail",
    previous: Annotated[
        Path | None,
        typer.Option(
            "--previous",
            help="The previous push's verdicts file, for a line on what changed since (else, with --db or "
            "$GUARDRAIL_DB, the PR's previous checked push in the database).",
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Upsert one sticky PR comment and a commit status, and append the report to $GITHUB_STEP_SUMMARY."""
    repo = repo or os.environ.get("GITHUB_REPOSITORY")
    if not repo:
        raise InputError("--repo OWNER/NAME is required (or set GITHUB_REPOSITORY)")
    if pr is not None and pr <= 0:
        raise InputError(f"--pr must be a positive number, got {pr}")
    dashboard_url = dashboard_url or os.environ.get("GUARDRAIL_DASHBOARD_URL") or None

    if pending and error:
        raise InputError("--pending and --error exclude each other")
    doc: VerdictsDoc | None  # None: pending, or no check stored yet
    if pending:
        doc = None
    elif error is not None:
        doc = VerdictsDoc(
            run=RunInfo(lane=lane, commit=sha),
            errors=[WorkloadError(workload="performance check", status="error", message=error)],
            status="error",
        )
    elif verdicts is not None:
        doc = load_verdicts(verdicts)
    else:
        from guardrail.store.queries import latest_verdicts_doc

        doc = latest_verdicts_doc(resolve_db(db), repo=repo, pr=pr, commit=sha)
    run = (doc.run if doc else None) or RunInfo()
    before: VerdictsDoc | None = None
    if previous is not None:
        before = load_verdicts(previous)
    elif doc is not None and pr is not None and (db or os.environ.get("GUARDRAIL_DB")):
        from guardrail.store.queries import previous_push_doc

        before = previous_push_doc(resolve_db(db), repo=repo, pr=pr, commit=sha or run.commit)
    from guardrail.reports.github import DEFAULT_API_URL, GitHub, marker_for
    from guardrail.reports.markdown import doc_status, render_markdown, summary_text

    state = doc_status(doc)
    lane = lane or run.lane or "presubmit"
    key = key or lane
    sha = sha or run.commit

    # Actions sets GITHUB_SERVER_URL: on GitHub Enterprise, runs on that host are linked too.
    markdown = render_markdown(
        doc,
        dashboard_url=dashboard_url,
        title=title,
        github_server_url=os.environ.get("GITHUB_SERVER_URL"),
        previous=before,
    )
    if not pending:
        summary_path = write_step_summary(markdown)
        if summary_path:
            typer.echo(f"job summary appended to {summary_path}")

    token = os.environ.get("GITHUB_TOKEN")
    if not token:
        raise InputError("GITHUB_TOKEN is not set; the comment and status need a token")
    api_url = os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL
    if pending or not doc:
        description = "waiting for the performance check"
    elif error is not None:
        description = " ".join(error.split())  # the status says why there is no verdict (cut to 140 by GitHub)
    else:
        description = summary_text(doc)
    with GitHub(repo, token=token, api_url=api_url) as gh:
        if pr is not None and not pending:
            result = gh.upsert_comment(pr, marker_for(key), markdown)
            typer.echo(f"comment {result.action} on {repo}#{pr}" + (f": {result.url}" if result.url else ""))
        if sha:
            context = f"perf-guardrail/{key}"
            gh.set_status(
                sha,
                state=state,
                context=context,
                description=description,
                target_url=_target_url(run, dashboard_url),
            )
            typer.echo(f"status {state} set on {sha[:12]} ({context})")
        else:
            raise InputError("no commit SHA for the status: pass --sha (the verdicts document names none)")
