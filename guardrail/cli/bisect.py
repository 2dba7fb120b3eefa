"""`guardrail bisect ALERT | --good SHA --bad SHA --workload W`: which commit of a range made the workload slower.

Exit codes (docs/bisect.md): 0 culprit found, or the plan printed / runs dispatched and waiting for results;
1 stopped without a culprit (the ends do not differ, budget spent, only skipped commits left);
2 bad input (unknown SHA, good == bad, good not on bad's first-parent history, unknown alert);
3 infrastructure: the ends, or every commit of the range, failed for infrastructure reasons.
`--run-at SHA` measures one commit and stores it as lane bisect (exit 0, or 3 when no repeat completed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from guardrail.cli.app import DbOption, app, echo_json, resolve_db
from guardrail.errors import InfraError, InputError


@app.command("bisect")
def bisect_command(
    alert: Annotated[int | None, typer.Argument(help="An alert id: its workload, hardware and commit range.")] = None,
    good: Annotated[str | None, typer.Option("--good", help="The last good commit.")] = None,
    bad: Annotated[str | None, typer.Option("--bad", help="The first bad commit.")] = None,
    workload: Annotated[str | None, typer.Option("--workload", help="The workload to bisect.")] = None,
    hardware: Annotated[str | None, typer.Option("--hardware", help="Only results on this hardware.")] = None,
    metric: Annotated[
        str | None,
        typer.Option("--metric", help="The metric to judge (default: the alert's, else the one that moved most)."),
    ] = None,
    lane: Annotated[
        str, typer.Option("--lane", help="The lane the workload runs in (`guardrail run --lane`).")
    ] = "nightly",
    repo: Annotated[Path, typer.Option("--repo", help="A git checkout holding the range.")] = Path("."),
    dispatch: Annotated[str, typer.Option("--dispatch", help="print | local | github | buildkite")] = "print",
    command: Annotated[
        str | None,
        typer.Option(
            "--command", help="--dispatch local: the command run in a worktree at each commit (docs/bisect.md)."
        ),
    ] = None,
    scale: Annotated[
        str, typer.Option("--scale", help="tiny | full, for the default local command and the plan.")
    ] = "tiny",
    repeats: Annotated[int, typer.Option("--repeats", help="Repeats (fresh processes) per look at a commit.")] = 2,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            help="The practical change (a fraction) a commit must carry to read bad; default: the bisect lane "
            "policy's for the metric. Near half the step being bisected keeps a shared machine's drift from "
            "reading as a step.",
        ),
    ] = None,
    budget_minutes: Annotated[
        float | None, typer.Option("--budget-minutes", help="Stop once the results' durations add up to this.")
    ] = None,
    wait: Annotated[
        float, typer.Option("--wait", help="github/buildkite: seconds to wait for results before returning.")
    ] = 0.0,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between looks at the store while waiting.")] = 10.0,
    github_repo: Annotated[str | None, typer.Option("--github-repo", help="OWNER/NAME for --dispatch github.")] = None,
    workflow: Annotated[str, typer.Option("--workflow", help="Workflow file for --dispatch github.")] = "bisect.yml",
    ref: Annotated[str, typer.Option("--ref", help="Git ref the workflow runs from / Buildkite branch.")] = "main",
    buildkite_org: Annotated[str | None, typer.Option("--buildkite-org")] = None,
    buildkite_pipeline: Annotated[str | None, typer.Option("--buildkite-pipeline")] = None,
    buildkite_api: Annotated[str, typer.Option("--buildkite-api")] = "https://api.buildkite.com",
    token_env: Annotated[
        str | None, typer.Option("--token-env", help="Env var holding the token (GITHUB_TOKEN / BUILDKITE_API_TOKEN).")
    ] = None,
    run_at: Annotated[
        str | None,
        typer.Option("--run-at", help="Only measure this commit and store it as lane bisect (a dispatched CI job)."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="text | json")] = "text",
    db: DbOption = None,
) -> None:
    """Bisect a first-parent commit range: verify both ends, measure midpoints, name the culprit with its p-values."""
    from guardrail import bisect as bs
    from guardrail.analysis.bisection import Config
    from guardrail.policy import load_lane_policy

    if fmt not in ("text", "json"):
        raise InputError(f"unknown format {fmt!r}; one of text, json", field="--format")
    if dispatch not in bs.DISPATCHERS:
        raise InputError(f"unknown dispatcher {dispatch!r}; one of {', '.join(bs.DISPATCHERS)}", field="--dispatch")
    if repeats < 1:
        raise InputError("must be at least 1", field="--repeats")
    if threshold is not None and not 0 < threshold < 10:
        raise InputError(f"{threshold} is not a fraction of change (e.g. 0.1 for 10%)", field="--threshold")
    if budget_minutes is not None and budget_minutes <= 0:
        raise InputError("must be positive", field="--budget-minutes")
    url = resolve_db(db)
    if run_at is not None:
        if not workload:
            raise InputError("required with --run-at", field="--workload")
        detail = bs.run_at(repo, url, run_at, workload, repeats=repeats, lane=lane, scale=scale,
                           template=command or bs.LOCAL_TEMPLATE, say=typer.echo)  # fmt: skip
        if fmt == "json":
            echo_json({"schema": "guardrail.bisect-run/v1", **detail})
        else:
            typer.echo(f"{detail['commit'][:12]}: {detail['repeats']} repeat(s) of {workload} stored as lane bisect")
        if not detail["repeats"]:
            raise InfraError(f"no repeat of {workload} completed at {detail['commit'][:12]}")
        return
    target: bs.Target | int
    if alert is not None:
        if good or bad:
            raise InputError("give an ALERT or --good/--bad, not both", field="ALERT")
        target = alert
    else:
        for value, flag in ((good, "--good"), (bad, "--bad"), (workload, "--workload")):
            if not value:
                raise InputError("required without an ALERT", field=flag)
        assert good and bad and workload
        target = bs.Target(workload=workload, good=good, bad=bad, metric=metric, hardware=hardware, lane=lane)
    policy = load_lane_policy(bs.LANE)
    lines: list[str] = []

    def say(line: str) -> None:
        if fmt == "text":
            typer.echo(line)
        lines.append(line)

    def cfg_for(metric_name: str, direction: str) -> Config:
        lane_threshold = policy.threshold(metric_name) if metric_name else policy.thresholds.get("default", 0.01)
        return Config(
            direction=direction,
            threshold=lane_threshold if threshold is None else threshold,
            alpha=policy.alpha,
            repeats=repeats,
            max_looks=policy.max_looks,
            budget_minutes=budget_minutes,
        )

    def dispatcher_for(t: bs.Target) -> bs.Dispatcher:
        run_lane = t.lane if alert is not None else lane
        if dispatch == "local":
            return bs.LocalDispatcher(repo=repo, db_url=url, template=command or bs.LOCAL_TEMPLATE, lane=run_lane,
                                      scale=scale, say=say)  # fmt: skip
        if dispatch == "github":
            if not github_repo:
                raise InputError("required for --dispatch github", field="--github-repo")
            return bs.GitHubDispatcher(
                repo=github_repo, workflow=workflow, ref=ref, token_env=token_env or "GITHUB_TOKEN"
            )
        if dispatch == "buildkite":
            if not buildkite_org or not buildkite_pipeline:
                raise InputError("required for --dispatch buildkite", field="--buildkite-org/--buildkite-pipeline")
            return bs.BuildkiteDispatcher(
                org=buildkite_org,
                pipeline=buildkite_pipeline,
                branch=ref,
                token_env=token_env or "BUILDKITE_API_TOKEN",
                api_url=buildkite_api,
            )
        return bs.PrintDispatcher(say=say, lane=run_lane, scale=scale, repo=repo)

    out = bs.run_bisection(
        url, repo, target, dispatcher_for=dispatcher_for, dispatch=dispatch, cfg_for=cfg_for, say=say,
        wait_s=wait, poll_s=poll,
    )  # fmt: skip
    if fmt == "json":
        echo_json({**out.doc, "exit_code": out.exit_code, "lines": lines})
    if out.exit_code:
        raise typer.Exit(out.exit_code)
