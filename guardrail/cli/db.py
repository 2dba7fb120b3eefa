"""`guardrail db upgrade|downgrade|current`: the schema is changed by Alembic migrations only."""

from __future__ import annotations

from typing import Annotated

import typer

from guardrail.cli.app import DbOption, app, resolve_db

db_app = typer.Typer(help="Create or migrate the database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def upgrade(revision: Annotated[str, typer.Argument()] = "head", db: DbOption = None) -> None:
    """Migrate the schema up to REVISION (default: the newest)."""
    from guardrail.store import db as store_db

    url = resolve_db(db)
    store_db.upgrade(url, revision)
    typer.echo(f"{store_db.redact(url)}: schema at {store_db.current_revision(url)}")


@db_app.command("downgrade")
def downgrade(revision: Annotated[str, typer.Argument()] = "base", db: DbOption = None) -> None:
    """Migrate the schema down to REVISION (default: base, i.e. drop every guardrail table)."""
    from guardrail.store import db as store_db

    url = resolve_db(db)
    store_db.downgrade(url, revision)
    typer.echo(f"{store_db.redact(url)}: schema at {store_db.current_revision(url) or 'base'}")


@db_app.command("current")
def current(db: DbOption = None) -> None:
    """Print the schema revision of the database and the newest one this guardrail knows."""
    from guardrail.store import db as store_db

    url = resolve_db(db)
    typer.echo(
        f"{store_db.redact(url)}: at {store_db.current_revision(url) or 'base'}; newest {store_db.head_revision()}"
    )
