"""`guardrail quarantine list|add|remove|apply-rules`: mute flaky tests (they run, they do not gate).

The functions below the commands take a session and are what an API endpoint would call too; every
change keeps its reason (and who made it) on the ``quarantine`` row, and rule decisions are also stored
as ``rerun_decisions`` rows of kind ``quarantine``.
"""

from __future__ import annotations

import getpass
import json
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:  # the database layer loads inside the commands, not at CLI start-up
    from sqlalchemy.orm import Session

from guardrail import clock
from guardrail.cli.app import DbOption, app, resolve_db
from guardrail.errors import InputError

quarantine_app = typer.Typer(help="Mute flaky tests: they still run but do not gate.", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")

ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept with the entry).")]
ByOption = Annotated[str | None, typer.Option("--by", help="Who (default: $GITHUB_ACTOR, else the OS user).")]
FormatOption = Annotated[str, typer.Option("--format", help="text or json.")]


def _who(by: str | None) -> str:
    if by:
        return by
    try:
        return os.environ.get("GITHUB_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return ""


def _row_dict(r: Any) -> dict[str, Any]:
    return {
        "test": r.test.key,
        "id": r.test.test_id,
        "hardware": r.test.hardware,
        "since": r.since.isoformat(),
        "reason": r.reason,
        "by": r.by,
        "signatures": list(r.signatures or ()),
        "released_at": r.released_at.isoformat() if r.released_at else None,
        "release_reason": r.release_reason,
        "released_by": r.released_by,
    }


# --- operations (session in, rows out) -------------------------------------------------------------


def list_entries(session: Session, *, include_released: bool = False) -> list[dict[str, Any]]:
    from sqlalchemy import func, select  # noqa: F401

    from guardrail.store import test_models as tm

    q = select(tm.QuarantineRow).order_by(tm.QuarantineRow.since.desc(), tm.QuarantineRow.id.desc())
    if not include_released:
        q = q.where(tm.QuarantineRow.released_at.is_(None))
    return [_row_dict(r) for r in session.scalars(q)]


def add_entry(session: Session, test: str, *, reason: str, by: str, now: datetime) -> list[dict[str, Any]]:
    """Quarantine by hand every variant of ``test`` (a key, or a node id for all its hardware variants)."""
    from sqlalchemy import func, select  # noqa: F401

    from guardrail.analysis.flaky import manual_quarantine
    from guardrail.store import test_models as tm
    from guardrail.store.test_queries import find_tests

    tests = find_tests(session, test)
    if not tests:
        raise InputError(f"no stored test {test!r} (give its node id or its key id@hardware)", field="TEST")
    out = []
    for t in tests:
        try:
            entry = manual_quarantine(t.key, reason=reason, by=by, now=now)
        except ValueError as exc:
            raise InputError(str(exc), field="--reason" if "reason" in str(exc) else "--by") from None
        active = session.scalar(
            select(tm.QuarantineRow).where(tm.QuarantineRow.test_pk == t.id, tm.QuarantineRow.released_at.is_(None))
        )
        if active is not None:
            out.append({**_row_dict(active), "action": "already quarantined"})
            continue
        row = tm.QuarantineRow(test=t, since=entry.since, reason=entry.reason, by=entry.by, signatures=[])
        session.add(row)
        session.flush()
        out.append({**_row_dict(row), "action": "added"})
    return out


def remove_entry(session: Session, test: str, *, reason: str, by: str, now: datetime) -> list[dict[str, Any]]:
    """Release every active quarantine of ``test`` by hand, with a reason."""
    from sqlalchemy import func, select  # noqa: F401

    from guardrail.store import test_models as tm
    from guardrail.store.test_queries import find_tests

    if not reason.strip():
        raise InputError("a release needs a reason", field="--reason")
    if not by.strip():
        raise InputError("a release by hand needs the name of who released it", field="--by")
    pks = [t.id for t in find_tests(session, test)]
    rows = (
        session.scalars(
            select(tm.QuarantineRow).where(tm.QuarantineRow.test_pk.in_(pks), tm.QuarantineRow.released_at.is_(None))
        ).all()
        if pks
        else []
    )
    if not rows:
        raise InputError(f"{test!r} is not quarantined", field="TEST")
    for r in rows:
        r.released_at, r.release_reason, r.released_by = now, reason.strip(), by.strip()
    return [{**_row_dict(r), "action": "removed"} for r in rows]


def apply_rules(session: Session, *, now: datetime, policy: Any = None) -> list[dict[str, Any]]:
    """Run ``decide_quarantine`` over every test that could enter (enough flaky verdicts lately) and every
    active entry; store each enter/release (on ``quarantine`` and as a ``rerun_decisions`` row)."""
    from datetime import timedelta

    from sqlalchemy import func, select  # noqa: F401

    from guardrail.analysis.flaky import QuarantineEntry, decide_quarantine
    from guardrail.analysis.rerun import load_policy
    from guardrail.store import test_models as tm
    from guardrail.store.test_queries import history

    pol = policy or load_policy()
    qp = pol.quarantine
    V = tm.TestVerdictRow
    since = now - timedelta(days=qp.enter_window_days)
    candidates = set(
        session.scalars(
            select(V.test_pk)
            .where(V.verdict == "flaky", V.at >= since, V.at <= now, V.infra_excluded.is_(False))
            .group_by(V.test_pk)
            .having(func.count() >= qp.enter_flaky_verdicts)
        )
    )
    active = {
        r.test_pk: r for r in session.scalars(select(tm.QuarantineRow).where(tm.QuarantineRow.released_at.is_(None)))
    }
    pks = sorted(candidates | set(active))
    # infrastructure-failed runs are already marked per verdict: leave them out here, so that
    # decide_quarantine (which re-derives them per run) sees each test's own clean history
    hist: dict[str, list[Any]] = {}
    keys: dict[int, str] = {}
    for i in range(0, len(pks), 500):
        for v in history(session, tests=pks[i : i + 500], include_excluded=False):
            hist.setdefault(v.test, []).append(v)
    for t in session.scalars(select(tm.TestCase).where(tm.TestCase.id.in_(pks))) if pks else []:
        keys[t.id] = t.key
    out = []
    for pk in pks:
        key = keys[pk]
        cur = active.get(pk)
        current = (
            QuarantineEntry(key, cur.since, cur.reason, cur.by, tuple(cur.signatures or ()))
            if cur is not None
            else None
        )
        d = decide_quarantine(key, hist.get(key, []), now=now, current=current, flakiness=pol.flakiness, policy=qp)
        if d.action == "enter" and d.entry is not None:
            session.add(
                tm.QuarantineRow(
                    test_pk=pk, since=d.entry.since, reason=d.entry.reason, by="rule",
                    signatures=list(d.entry.signatures),
                )
            )  # fmt: skip
        elif d.action == "release" and cur is not None:
            cur.released_at, cur.release_reason, cur.released_by = now, d.reason, "rule"
        if d.action in ("enter", "release"):
            session.add(
                tm.RerunDecision(
                    run_id=None, kind="quarantine", target=key, action=d.action, attempts=0, blocking=False,
                    reason=d.reason, detail=d.to_dict(), created_at=now,
                )
            )  # fmt: skip
        out.append(d.to_dict())
    return out


# --- commands --------------------------------------------------------------------------------------


def _now() -> datetime:
    return clock.now()


def _echo(fmt: str, doc: dict[str, Any], lines: list[str]) -> None:
    if fmt == "json":
        typer.echo(json.dumps(doc, indent=1))
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
    from guardrail.store.db import session_scope

    with session_scope(resolve_db(db)) as s:
        rows = list_entries(s, include_released=include_released)
    lines = [
        f"{r['test']}  since {r['since'][:10]} by {r['by']}: {r['reason']}"
        + (f"  [released {r['released_at'][:10]}: {r['release_reason']}]" if r["released_at"] else "")
        for r in rows
    ] or ["no test is quarantined"]
    _echo(fmt, {"schema": "guardrail.quarantine/v1", "entries": rows}, lines)


@quarantine_app.command("add")
def add_cmd(
    test: Annotated[str, typer.Argument(help="Node id (every hardware variant) or key id@hardware.")],
    reason: ReasonOption,
    by: ByOption = None,
    fmt: FormatOption = "text",
    db: DbOption = None,
) -> None:
    """Quarantine a test by hand (a reason is required)."""
    from guardrail.store.db import session_scope

    with session_scope(resolve_db(db), write=True) as s:
        rows = add_entry(s, test, reason=reason, by=_who(by), now=_now())
    _echo(fmt, {"schema": "guardrail.quarantine/v1", "entries": rows},
          [f"{r['action']}: {r['test']} ({r['reason']})" for r in rows])  # fmt: skip


@quarantine_app.command("remove")
def remove_cmd(
    test: Annotated[str, typer.Argument(help="Node id (every hardware variant) or key id@hardware.")],
    reason: ReasonOption,
    by: ByOption = None,
    fmt: FormatOption = "text",
    db: DbOption = None,
) -> None:
    """Release a quarantined test by hand (a reason is required)."""
    from guardrail.store.db import session_scope

    with session_scope(resolve_db(db), write=True) as s:
        rows = remove_entry(s, test, reason=reason, by=_who(by), now=_now())
    _echo(fmt, {"schema": "guardrail.quarantine/v1", "entries": rows},
          [f"removed: {r['test']} ({r['release_reason']})" for r in rows])  # fmt: skip


@quarantine_app.command("apply-rules")
def apply_rules_cmd(
    fmt: FormatOption = "text",
    policy: Annotated[Path | None, typer.Option("--policy", help="Rerun policy YAML.")] = None,
    db: DbOption = None,
) -> None:
    """Enter tests that the rule quarantines and release those that recovered; reasons are stored."""
    from guardrail.analysis.rerun import load_policy
    from guardrail.store.db import session_scope

    pol = load_policy(policy)
    with session_scope(resolve_db(db), write=True) as s:
        decisions = apply_rules(s, now=_now(), policy=pol)
    changed = [d for d in decisions if d["action"] in ("enter", "release")]
    lines = [f"{d['action']:<7} {d['test']}: {d['reason']}" for d in decisions]
    lines.append(f"{len(decisions)} tests judged, {len(changed)} changed")
    _echo(fmt, {"schema": "guardrail.quarantine-rules/v1", "decisions": decisions}, lines)
