"""`guardrail baseline pin|unpin|list`: pinned baselines with a reason and an author."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from guardrail import clock
from guardrail.cli.app import DbOption, app, resolve_db
from guardrail.errors import InputError

baseline_app = typer.Typer(help="Pin or unpin the baseline run of a lane on a hardware.", no_args_is_help=True)
app.add_typer(baseline_app, name="baseline")

Author = Annotated[str | None, typer.Option(help="Who (default: the login name).")]


@baseline_app.command("pin")
def pin(
    run: Annotated[int, typer.Option("--run", help="The run to pin.")],
    reason: Annotated[str, typer.Option(help="Why this run is the baseline.")],
    lane: Annotated[str, typer.Option(help="Lane whose baseline it becomes.")] = "release",
    author: Author = None,
    db: DbOption = None,
) -> None:
    """Pin RUN as the baseline of LANE on the run's hardware (replaces an earlier pin)."""
    from sqlalchemy import select

    from guardrail.store import models as m
    from guardrail.store.db import session_scope

    if not reason.strip():
        raise InputError("a pin needs a reason", field="--reason")
    with session_scope(resolve_db(db), write=True) as s:
        row = s.get(m.Run, run)
        if row is None:
            raise InputError(f"no run {run} in this database", field="--run")
        who = author or getpass.getuser()
        for old in s.scalars(
            select(m.BaselinePin).where(
                m.BaselinePin.lane == lane,
                m.BaselinePin.hardware == row.hardware,
                m.BaselinePin.active.is_(True),
            )
        ):
            old.active, old.removed_at, old.removed_by = False, clock.now(), who
            old.removed_reason = f"replaced by run {run}"
        s.add(m.BaselinePin(lane=lane, hardware=row.hardware, run_id=run, reason=reason, author=who))
    typer.echo(f"pinned run {run} as the {lane} baseline on {row.hardware} ({reason}, by {who})")


@baseline_app.command("unpin")
def unpin(
    hardware: Annotated[str, typer.Option(help="Hardware whose pin is removed.")],
    reason: Annotated[str, typer.Option(help="Why.")],
    lane: Annotated[str, typer.Option(help="Lane.")] = "release",
    author: Author = None,
    db: DbOption = None,
) -> None:
    """Remove the active pin of LANE on HARDWARE (kept in the history with who and why)."""
    from sqlalchemy import select

    from guardrail.store import models as m
    from guardrail.store.db import session_scope

    with session_scope(resolve_db(db), write=True) as s:
        pins = s.scalars(
            select(m.BaselinePin).where(
                m.BaselinePin.lane == lane, m.BaselinePin.hardware == hardware, m.BaselinePin.active.is_(True)
            )
        ).all()
        if not pins:
            raise InputError(f"no active {lane} pin on {hardware}", field="--hardware")
        who = author or getpass.getuser()
        for p in pins:
            p.active, p.removed_at, p.removed_by, p.removed_reason = False, clock.now(), who, reason
    typer.echo(f"unpinned the {lane} baseline on {hardware} ({reason}, by {who})")


@baseline_app.command("list")
def list_pins(
    all_: Annotated[bool, typer.Option("--all", help="Include removed pins.")] = False, db: DbOption = None
) -> None:
    """Pinned baselines, newest first."""
    from sqlalchemy import select

    from guardrail.store import models as m
    from guardrail.store.db import session_scope

    with session_scope(resolve_db(db)) as s:
        q = select(m.BaselinePin).order_by(m.BaselinePin.id.desc())
        if not all_:
            q = q.where(m.BaselinePin.active.is_(True))
        for p in s.scalars(q):
            state = "active" if p.active else f"removed {p.removed_at:%Y-%m-%d} by {p.removed_by}: {p.removed_reason}"
            typer.echo(
                f"{p.lane:<10} {p.hardware:<24} run {p.run_id:<6} {p.created_at:%Y-%m-%d} {p.author}: "
                f"{p.reason} [{state}]"
            )
