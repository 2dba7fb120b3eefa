"""The `guardrail` app with every command registered: importing a command module registers its commands."""

# The import order is the order of `guardrail --help`: the workflow's order, not the alphabet's.
# isort: off
from guardrail.cli import db, ingest, check, run, analysis, history, alerts, baseline, comment
from guardrail.cli import flaky_report, rerun_plan, ci_health, quarantine, tokens, serve, main_job, schema, matrix
from guardrail.cli import buildkite, profile, workloads, bisect, parity

# isort: on
from guardrail.cli.app import app

COMMAND_MODULES = (
    *(db, ingest, check, run, analysis, history, alerts, baseline, comment),
    *(flaky_report, rerun_plan, ci_health, quarantine, tokens, serve, main_job, schema, matrix),
    buildkite,
    profile,
    workloads,
    bisect,
    parity,
)

__all__ = ["COMMAND_MODULES", "app"]
