"""The Typer application and the options every command shares."""

from __future__ import annotations

import json
import math
import os
from typing import Annotated, Any

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


def _finite(obj: Any) -> Any:
    """`obj` with every NaN or infinite float as None: JSON has no such numbers, and most parsers refuse them."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def echo_json(doc: Any, *, indent: int = 1) -> None:
    """Print a `--format json` document: valid JSON always (a non-finite number is written as null)."""
    typer.echo(json.dumps(_finite(doc), indent=indent, allow_nan=False))
