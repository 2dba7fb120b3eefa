"""`guardrail serve`: the dashboard and JSON API (uvicorn)."""

from __future__ import annotations

from typing import Annotated

import typer

from guardrail.cli.app import DbOption, app, resolve_db


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (use >1 with PostgreSQL).")] = 1,
    threads: Annotated[
        int | None, typer.Option(help="Requests one worker runs at once (default GUARDRAIL_WEB_THREADS, else 2).")
    ] = None,
    max_body_mb: Annotated[
        float | None,
        typer.Option(
            help="Refuse request bodies over this many MiB with 413 (default GUARDRAIL_MAX_BODY_MB, else 32)."
        ),
    ] = None,
    read_token: Annotated[bool, typer.Option("--read-token", help="Require a token for reads too.")] = False,
    db: DbOption = None,
) -> None:
    """Serve the dashboard and the JSON API (/api/v1, OpenAPI at /docs) over the store."""
    import os

    import uvicorn

    from guardrail.store.db import ensure_ready, redact
    from web.app import GuardedHttp  # reads none of an unauthenticated upload's body beyond the head's read

    url = resolve_db(db)
    ensure_ready(url)  # migrate SQLite / refuse an out-of-date PostgreSQL before listening
    typer.echo(f"serving {redact(url)} on http://{host}:{port}/", err=True)
    if threads:
        os.environ["GUARDRAIL_WEB_THREADS"] = str(threads)
    if max_body_mb:
        os.environ["GUARDRAIL_MAX_BODY_MB"] = str(max_body_mb)
    if workers > 1:
        # Workers import the app by name and read their settings from the environment.
        os.environ["GUARDRAIL_DB"] = url
        os.environ["GUARDRAIL_READ_TOKEN"] = "1" if read_token else ""
        uvicorn.run(
            "web.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            http=GuardedHttp,  # type: ignore[arg-type]  # a BufferedProtocol; uvicorn's hint names Protocol only
        )
    else:
        from web.app import create_app

        app_ = create_app(url, read_token_required=read_token)
        uvicorn.run(app_, host=host, port=port, log_level="warning", http=GuardedHttp)  # type: ignore[arg-type]
