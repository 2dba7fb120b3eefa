"""Import every command module so that its commands register on the app."""

import importlib

for _name in (
    "db",
    "ingest",
    "check",
    "run",
    "analysis",
    "history",
    "baseline",
    "comment",
    "flaky_report",
    "rerun_plan",
    "ci_health",
    "quarantine",
    "tokens",
    "serve",
    "main_job",
    "schema",
):
    try:
        importlib.import_module(f"guardrail.cli.{_name}")
    except ModuleNotFoundError as exc:  # a module not written yet; never hide a missing dependency
        if exc.name != f"guardrail.cli.{_name}":
            raise
