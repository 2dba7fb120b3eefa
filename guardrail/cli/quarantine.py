"""`guardrail quarantine list|add|remove|apply-rules`: mute flaky tests (they run, they do not gate).

Parsing and printing only: the changes are :mod:`guardrail.quarantine`'s (the dashboard calls the same).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from guardrail import clock
from guardrail.cli.app import DbOption, app, echo_json, resolve_db
from guardrail.errors import InputError

quarantine_app = typer.Typer(help="Mute flaky tests: they still run but do not gate.", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")

TestArgument = Annotated[str, typer.Argument(help="Node id (every hardware variant) or key id@hardware.")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept with the entry).")]
ByOption = Annotated[str | None, typer.Option("--by", help="Who (default: $GITHUB_ACTOR, else the OS user).")]
FormatOption = Annotated[str, typer.Option("--format", help="text or json.")]
_FLAGS = {"test": "TEST", "reason": "--reason", "by": "--by"}  # the core's input fields, as this command names them


def _who(by: str | None) -> str:
    if by:
        return by
    try:
        return os.environ.get("GITHUB_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return ""


@contextmanager
def _flag_errors() -> Iterator[None]:
    try:
        yield
    except InputError as exc:
        if exc.file is None and exc.field in _FLAGS:
            raise InputError(exc.detail, field=_FLAGS[exc.field]) from None
        raise


def _echo(fmt: str, doc: dict[str, Any], lines: list[str]) -> None:
    if fmt == "json":
        echo_json(doc, indent=1)
    elif fmt == "text":
        for line in lines:
            typer.echo(line)
    else:
        raise InputError(f"unknown format {fmt!r}; text or json", field="--format")


@quarantine_app.command("list")
def list_cmd(
    fmt: FormatOption = "text",
    include_released: Annotated[bool, typer.Option("--all", help="Released entries too.")] = False,
    db: DbOption = None,
) -> None:
    """Quarantined tests, with since when, why and by whom."""
    from guardrail.quarantine import list_entries
    from guardrail.store.db import session_scope

    with session_scope(resolve_db(db)) as s:
        rows = list_entries(s, include_released=include_released)
    lines = [
        f"{r['test']}  since {r['since'][:10]} by {r['by']}: {r['reason']}"
        + (f"  [released {r['released_at'][:10]}: {r['release_reason']}]" if r["released_at"] else "")
        for r in rows
    ] or ["no test is quarantined"]
    _echo(fmt, {"schema": "guardrail.quarantine/v1", "entries": rows}, lines)


def _change(op: str, test: str, reason: str, by: str | None, fmt: str, db: str | None) -> None:
    """``add`` or ``remove`` by hand, in one transaction, and print what changed."""
    from guardrail.quarantine import add_entry, remove_entry
    from guardrail.store.db import session_scope

    change = add_entry if op == "add" else remove_entry
    with _flag_errors(), session_scope(resolve_db(db), write=True) as s:
        rows = change(s, test, reason=reason, by=_who(by), now=clock.now())
    if op == "add":
        lines = [f"{r['action']}: {r['test']} ({r['reason']})" for r in rows]
    else:
        lines = [f"removed: {r['test']} ({r['release_reason']})" for r in rows]
    _echo(fmt, {"schema": "guardrail.quarantine/v1", "entries": rows}, lines)


@quarantine_app.command("add")
def add_cmd(
    test: TestArgument, reason: ReasonOption, by: ByOption = None, fmt: FormatOption = "text", db: DbOption = None
) -> None:
    """Quarantine a test by hand (a reason is required)."""
    _change("add", test, reason, by, fmt, db)


@quarantine_app.command("remove")
def remove_cmd(
    test: TestArgument, reason: ReasonOption, by: ByOption = None, fmt: FormatOption = "text", db: DbOption = None
) -> None:
    """Release a quarantined test by hand (a reason is required)."""
    _change("remove", test, reason, by, fmt, db)


@quarantine_app.command("apply-rules")
def apply_rules_cmd(
    fmt: FormatOption = "text",
    policy: Annotated[Path | None, typer.Option("--policy", help="Rerun policy YAML.")] = None,
    db: DbOption = None,
) -> None:
    """Enter tests that the rule quarantines and release those that recovered; reasons are stored."""
    from guardrail.quarantine import apply_rules
    from guardrail.rerun_policy.yaml_file import load_rerun_policy
    from guardrail.store.db import session_scope

    pol = load_rerun_policy(policy)
    with session_scope(resolve_db(db), write=True) as s:
        decisions = apply_rules(s, now=clock.now(), policy=pol)
    changed = [d for d in decisions if d["action"] in ("enter", "release")]
    lines = [f"{d['action']:<7} {d['test']}: {d['reason']}" for d in decisions]
    lines.append(f"{len(decisions)} tests judged, {len(changed)} changed")
    _echo(fmt, {"schema": "guardrail.quarantine-rules/v1", "decisions": decisions}, lines)
