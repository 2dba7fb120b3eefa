"""The Typer application and the options every command shares."""

from __future__ import annotations

import os
from typing import Annotated

import typer

app = typer.Typer(
    name="guardrail",
    help="CI performance guardrail: run workloads, ingest results, judge them against baselines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULT_DB = "sqlite:///guardrail.db"

_debug = False


@app.callback()
def _global_options(
    debug: Annotated[
        bool,
        typer.Option("--debug", help="On an internal error (exit 4), print the traceback (also GUARDRAIL_DEBUG=1)."),
    ] = False,
) -> None:
    global _debug
    _debug = debug


def debug_enabled() -> bool:
    """Whether an internal error prints its traceback: `guardrail --debug ...` or GUARDRAIL_DEBUG=1."""
    return _debug or os.environ.get("GUARDRAIL_DEBUG", "").strip().lower() in {"1", "true", "yes"}


def default_db() -> str:
    return os.environ.get("GUARDRAIL_DB") or DEFAULT_DB


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", help="Database URL (default: $GUARDRAIL_DB, else sqlite:///guardrail.db).", show_default=False
    ),
]


def resolve_db(db: str | None) -> str:
    return db or default_db()
