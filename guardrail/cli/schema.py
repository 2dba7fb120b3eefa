"""`guardrail schema`: print the JSON Schema of the result file, generated from the pydantic models."""

from __future__ import annotations

import json

import typer

from guardrail.cli.app import app


@app.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of `guardrail.result/v1` (docs/result-schema.json is this output)."""
    from guardrail.schema import result_json_schema

    typer.echo(json.dumps(result_json_schema(), indent=1))
