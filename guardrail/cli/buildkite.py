"""`guardrail buildkite annotate|upload-results` (inside a Buildkite job) and `guardrail import buildkite`."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from guardrail.cli.app import DbOption, app, resolve_db
from guardrail.errors import InfraError, InputError

buildkite_app = typer.Typer(help="Report to the Buildkite build this job runs in.", no_args_is_help=True)
app.add_typer(buildkite_app, name="buildkite")
import_app = typer.Typer(help="Import history that already exists in a CI provider.", no_args_is_help=True)
app.add_typer(import_app, name="import")


def _agent(argv: list[str], stdin: str | None = None) -> None:
    """Run the real buildkite-agent; a missing agent or a failed call is infrastructure (exit 3), one line."""
    found = shutil.which(argv[0])
    if found is None:
        raise InfraError(f"{argv[0]} is not on PATH (these commands run inside a Buildkite job)")
    try:
        # Without a body the agent gets no stdin at all: `annotate` would otherwise wait on ours.
        if stdin is None:
            done = subprocess.run(
                [found, *argv[1:]], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300
            )
        else:
            done = subprocess.run([found, *argv[1:]], input=stdin, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        raise InfraError(f"{argv[0]} {argv[1]}: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()
        raise InfraError(
            f"{argv[0]} {' '.join(argv[1:3])} exited {done.returncode}" + (f": {last[-1][:300]}" if last else "")
        )


@buildkite_app.command("annotate")
def annotate_cmd(
    key: Annotated[str, typer.Option("--key", help="Lane key: one annotation context per key (presubmit, …).")],
    verdicts: Annotated[
        Path | None, typer.Option("--verdicts", help="Output of guardrail check --format json.")
    ] = None,
    error: Annotated[
        str | None, typer.Option("--error", help="No verdict could be made: annotate this reason instead.")
    ] = None,
    lane: Annotated[str | None, typer.Option("--lane", help="Lane named in an --error annotation.")] = None,
    sha: Annotated[str | None, typer.Option("--sha", help="Commit named in an --error annotation.")] = None,
    dashboard_url: Annotated[
        str | None,
        typer.Option(
            "--dashboard-url", help="Dashboard base URL (default: $GUARDRAIL_DASHBOARD_URL).", show_default=False
        ),
    ] = None,
    title: Annotated[str, typer.Option("--title", help="Heading of the annotation.")] = "Performance guardrail",
) -> None:
    """Annotate the build with the check's report: style error (regression), warning (no verdict), success."""
    from guardrail.cli.comment import load_verdicts
    from guardrail.reports.buildkite import annotate_argv, annotation, error_doc
    from guardrail.verdicts import VerdictsDoc

    if (verdicts is None) == (error is None):
        raise InputError("give exactly one of --verdicts FILE and --error WHY")
    doc: VerdictsDoc | None  # None: an empty document, the check is still pending (style info)
    if error is not None:
        doc = error_doc(error, lane=lane, commit=sha)
    else:
        assert verdicts is not None  # one of the two, checked above
        doc = load_verdicts(verdicts)
    ann = annotation(
        doc, key=key, dashboard_url=dashboard_url or os.environ.get("GUARDRAIL_DASHBOARD_URL") or None, title=title
    )
    _agent(annotate_argv(ann), stdin=ann.body)
    typer.echo(f"annotation {ann.context} ({ann.style}), {len(ann.body.encode())} bytes")


@buildkite_app.command("upload-results")
def upload_results_cmd(
    patterns: Annotated[
        list[str] | None, typer.Argument(help='Globs to upload (default: "results/**/*").', show_default=False)
    ] = None,
) -> None:
    """Keep the result files as artifacts of this job (`buildkite-agent artifact upload`)."""
    from guardrail.reports.buildkite import RESULT_PATTERNS, artifact_upload_argv

    chosen = tuple(patterns or RESULT_PATTERNS)
    _agent(artifact_upload_argv(chosen))
    typer.echo(f"artifacts uploaded: {';'.join(chosen)}")


def _since(value: str) -> datetime:
    from datetime import UTC

    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"expected a date or time such as 2026-06-01, got {value!r}", field="--since") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@import_app.command("buildkite")
def import_buildkite_cmd(
    org: Annotated[str, typer.Option("--org", help="Organization slug (buildkite.com/<org>/…).")],
    pipeline: Annotated[str, typer.Option("--pipeline", help="Pipeline slug.")],
    since: Annotated[str, typer.Option("--since", help="Builds created on or after this date (ISO 8601).")],
    branch: Annotated[str | None, typer.Option("--branch", help="Only builds of this branch.")] = None,
    lane: Annotated[str, typer.Option("--lane", help="Lane of result files that name none.")] = "nightly",
    hardware: Annotated[str | None, typer.Option("--hardware", help="Hardware of result files that name none.")] = None,
    api: Annotated[
        str, typer.Option("--api", help="REST API base URL.", envvar="BUILDKITE_API_URL")
    ] = "https://api.buildkite.com",
    db: DbOption = None,
) -> None:
    """Read builds and their result-file artifacts through Buildkite's REST API and ingest them (idempotent).

    The token comes from $BUILDKITE_API_TOKEN (read_builds and read_artifacts scopes); it is never printed."""
    from guardrail.buildkite_import import import_builds

    token = os.environ.get("BUILDKITE_API_TOKEN")
    report = import_builds(
        resolve_db(db),
        org=org,
        pipeline=pipeline,
        since=_since(since),
        token=token,
        api=api,
        branch=branch,
        lane=lane,
        hardware=hardware,
    )
    for line in report.lines():
        typer.echo(line)
    if report.failed:  # the others are stored; the exit code still says that some input was bad
        numbers = ", ".join(str(b.number) for b in report.failed)
        raise InputError(f"build(s) {numbers} not imported: their result files are bad input (listed above)")
