"""`guardrail ingest`: validate every file, then store them all in one transaction (or post to a server)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from guardrail.cli.app import DbOption, app, resolve_db
from guardrail.errors import InputError


@app.command("ingest")
def ingest_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Result files or directories of them.", show_default=False)],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="auto, result, vllm-omni-diffusion, vllm-bench, tts-bench, pytest-benchmark or junit.",
        ),
    ] = "auto",
    lane: Annotated[str | None, typer.Option(help="Lane for formats that do not name one.")] = None,
    hardware: Annotated[str | None, typer.Option(help="Hardware for formats that do not name it.")] = None,
    commit: Annotated[str | None, typer.Option(help="Commit for formats that do not name it.")] = None,
    branch: Annotated[
        str | None, typer.Option(help="Branch for formats that do not name it (e.g. main for nightly files).")
    ] = None,
    pr: Annotated[int | None, typer.Option(help="Pull request number (junit and adapters).")] = None,
    base_commit: Annotated[str | None, typer.Option("--base-commit", help="PR base commit.")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="CI run id.")] = None,
    attempt: Annotated[int | None, typer.Option(help="CI run attempt.")] = None,
    server: Annotated[
        str | None,
        typer.Option(
            help="Post to a running guardrail service instead of --db; the token comes from $GUARDRAIL_TOKEN."
        ),
    ] = None,
    output: Annotated[str, typer.Option("--output", help="text or json.")] = "text",
    db: DbOption = None,
) -> None:
    """Validate result files and store them (all or nothing). Re-ingesting stored results is a no-op."""
    if server:
        from guardrail.upload import upload

        # Directories go as they are, so that the client ignores stray files in them as the local ingest does.
        files = list(_expand(paths, fmt)) if fmt == "junit" else list(paths)
        reply = upload(server, files, token=os.environ.get("GUARDRAIL_TOKEN"), fmt=fmt)
        if output == "json":
            typer.echo(json.dumps(reply, indent=1, allow_nan=False))
        else:
            typer.echo(_summarise_reply(reply))
            for s in reply.get("ignored", []):
                typer.echo(f"ignored  {s['file']}: {s['reason']}")
        return
    from guardrail.ci_env import source_from_env

    source = None
    in_ci = os.environ.get("GITHUB_ACTIONS") == "true" or os.environ.get("BUILDKITE") == "true"
    if any(v is not None for v in (commit, branch, pr, base_commit, run_id, attempt)) or in_ci:
        # The file's own commit wins over these; never guess it from the local checkout.
        source = source_from_env(
            commit=commit,
            branch=branch,
            pr=pr,
            base_commit=base_commit,
            run_id=run_id,
            attempt=attempt,
            use_git=False,
        )
    url = resolve_db(db)
    if fmt == "junit":
        from guardrail.ingest.junit_writer import ingest_junit

        # A JUnit file names no commit: like `guardrail run`, take it from the flags, the CI, or the checkout.
        source = source_from_env(
            commit=commit, branch=branch, pr=pr, base_commit=base_commit, run_id=run_id, attempt=attempt
        )

        report = ingest_junit(url, paths, source=source, lane=lane, hardware=hardware)
    else:
        from guardrail.adapters import AdaptDefaults
        from guardrail.ingest import ingest

        # no --lane: the adapters' default lane
        defaults = AdaptDefaults(**({"lane": lane} if lane is not None else {}), hardware=hardware, source=source)
        report = ingest(url, paths, fmt, defaults)
    if output == "json":
        typer.echo(json.dumps(report.to_dict(), indent=1, allow_nan=False))
        return
    for s in report.stored:
        typer.echo(
            f"stored   {s['file']}: {s['workload']} [{s['status']}] on {s['hardware']} -> run {s['run_id']}"
            + (f", {s['metrics']} metrics, {s['samples']} samples" if "samples" in s else "")
        )
    for s in report.skipped:
        typer.echo(f"skipped  {s['file']}: {s['workload']} in run {s['run_id']}: {s['reason']}")
    for s in report.ignored:
        typer.echo(f"ignored  {s['file']}: {s['reason']}")
    typer.echo(
        f"{len(report.stored)} stored, {len(report.skipped)} already there; runs: "
        f"{', '.join(map(str, report.run_ids)) or '-'}"
    )


def _expand(paths: list[Path], fmt: str) -> list[Path]:
    from guardrail.ingest import expand_paths

    return expand_paths(paths, (".xml",) if fmt == "junit" else (".json",))


def _summarise_reply(reply: dict) -> str:
    if not isinstance(reply, dict):
        raise InputError("the server's reply is not a JSON object", field="--server")
    stored, skipped = reply.get("stored", []), reply.get("skipped", [])
    return f"{len(stored)} stored, {len(skipped)} already there; runs: {reply.get('run_ids', '-')}"
