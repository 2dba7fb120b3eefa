"""`guardrail token create|list|revoke`: write tokens for the service's API (stored hashed)."""

from __future__ import annotations

from typing import Annotated

import typer

from guardrail.cli.app import DbOption, app, resolve_db

token_app = typer.Typer(
    help="Create, list or revoke API tokens for the service's write endpoints.", no_args_is_help=True
)
app.add_typer(token_app, name="token")


@token_app.command("create")
def create_cmd(
    name: Annotated[str, typer.Argument(help="What the token is for (e.g. ci-npu).")], db: DbOption = None
) -> None:
    """Create a token and print it once; only its SHA-256 is stored."""
    from guardrail.api_tokens import create_token
    from guardrail.store.db import session_scope

    with session_scope(resolve_db(db), write=True) as session:
        row, token = create_token(session, name)
        ident = row.id
    typer.echo(token)
    typer.echo(
        f"token {ident} ({name}) created; it is shown only now: store it as a secret (GUARDRAIL_TOKEN)", err=True
    )


@token_app.command("list")
def list_cmd(db: DbOption = None) -> None:
    """Tokens by id, name, creation, last use and state (never the token itself)."""
    from guardrail.api_tokens import list_tokens
    from guardrail.store.db import session_scope

    with session_scope(resolve_db(db)) as session:
        for t in list_tokens(session):
            used = t.last_used_at.isoformat(timespec="seconds") if t.last_used_at else "never"
            typer.echo(
                f"{t.id:>4}  {t.name:<30} created {t.created_at.isoformat(timespec='seconds')}  "
                f"last used {used}  {'revoked' if t.revoked else 'active'}"
            )


@token_app.command("revoke")
def revoke_cmd(token: Annotated[str, typer.Argument(help="Token id or name.")], db: DbOption = None) -> None:
    """Revoke a token by id or name; requests with it are refused from now on."""
    from guardrail.api_tokens import revoke_token
    from guardrail.store.db import session_scope

    with session_scope(resolve_db(db), write=True) as session:
        row = revoke_token(session, token)
        typer.echo(f"token {row.id} ({row.name}) revoked")
