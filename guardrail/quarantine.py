"""Quarantine: mute a test (it still runs, it does not gate), by hand or by rule.

What ``guardrail quarantine`` and the dashboard both call, inside the caller's transaction. Every change keeps
its reason and who made it on the ``quarantine`` row; rule decisions are also stored as ``rerun_decisions``
rows of kind ``quarantine``. Bad input is an :class:`InputError` whose field is ``test``, ``reason`` or ``by``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from guardrail.analysis.flaky_scores import HistoricVerdict, QuarantineEntry
from guardrail.analysis.quarantine_rules import MissingWhoOrWhy, decide_quarantine, manual_quarantine, who_and_why
from guardrail.errors import InputError
from guardrail.rerun_policy import RerunPolicy
from guardrail.store import junit_models as jm
from guardrail.store.junit_queries import find_tests, history

Q = jm.QuarantineRow


def entry_dict(r: jm.QuarantineRow) -> dict[str, Any]:
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


def list_entries(session: Session, *, include_released: bool = False) -> list[dict[str, Any]]:
    q = select(Q).order_by(Q.since.desc(), Q.id.desc())
    if not include_released:
        q = q.where(Q.released_at.is_(None))
    return [entry_dict(r) for r in session.scalars(q)]


def _active(session: Session, test_pks: list[int]) -> list[jm.QuarantineRow]:
    if not test_pks:
        return []
    return list(session.scalars(select(Q).where(Q.test_pk.in_(test_pks), Q.released_at.is_(None))))


@contextmanager
def _as_input_error() -> Iterator[None]:
    """A change by hand without its reason or its author, as the InputError of that field."""
    try:
        yield
    except MissingWhoOrWhy as exc:
        raise InputError(str(exc), field=exc.field) from None


def add_entry(session: Session, test: str, *, reason: str, by: str, now: datetime) -> list[dict[str, Any]]:
    """Quarantine by hand every variant of ``test`` (a key, or a node id for all its hardware variants)."""
    tests = find_tests(session, test)
    if not tests:
        raise InputError(f"no stored test {test!r} (give its node id or its key id@hardware)", field="test")
    active = {r.test_pk: r for r in _active(session, [t.id for t in tests])}
    with _as_input_error():
        entries = [manual_quarantine(t.key, reason=reason, by=by, now=now) for t in tests]
    out = []
    for t, entry in zip(tests, entries, strict=True):
        if t.id in active:
            out.append({**entry_dict(active[t.id]), "action": "already quarantined"})
            continue
        row = Q(test=t, since=entry.since, reason=entry.reason, by=entry.by, signatures=[])
        session.add(row)
        session.flush()
        out.append({**entry_dict(row), "action": "added"})
    return out


def remove_entry(session: Session, test: str, *, reason: str, by: str, now: datetime) -> list[dict[str, Any]]:
    """Release every active quarantine of ``test`` by hand, with a reason."""
    with _as_input_error():
        why, who = who_and_why(reason, by, change="release", verb="released")
    rows = _active(session, [t.id for t in find_tests(session, test)])
    if not rows:
        raise InputError(f"{test!r} is not quarantined", field="test")
    for r in rows:
        r.released_at, r.release_reason, r.released_by = now, why, who
    return [{**entry_dict(r), "action": "removed"} for r in rows]


def apply_rules(session: Session, *, now: datetime, policy: RerunPolicy | None = None) -> list[dict[str, Any]]:
    """Run ``decide_quarantine`` over every test that could enter (enough flaky verdicts lately) and every
    active entry; store each enter/release (on ``quarantine`` and as a ``rerun_decisions`` row)."""
    from guardrail.rerun_policy.yaml_file import load_rerun_policy

    pol = policy or load_rerun_policy()
    qp = pol.quarantine
    V = jm.CaseVerdictRow
    since = now - timedelta(days=qp.enter_window_days)
    candidates = set(
        session.scalars(
            select(V.test_pk)
            .where(V.verdict == "flaky", V.at >= since, V.at <= now, V.infra_excluded.is_(False))
            .group_by(V.test_pk)
            .having(func.count() >= qp.enter_flaky_verdicts)
        )
    )
    active = {r.test_pk: r for r in session.scalars(select(Q).where(Q.released_at.is_(None)))}
    pks = sorted(candidates | set(active))
    # infrastructure-failed runs are already marked per verdict: leave them out here, so that
    # decide_quarantine (which re-derives them per run) sees each test's own clean history
    hist: dict[str, list[HistoricVerdict]] = {}
    for i in range(0, len(pks), 500):
        for v in history(session, tests=pks[i : i + 500], include_excluded=False):
            hist.setdefault(v.test, []).append(v)
    keys = {t.id: t.key for t in session.scalars(select(jm.CaseRow).where(jm.CaseRow.id.in_(pks)))} if pks else {}
    out = []
    for pk in pks:
        key = keys[pk]
        cur = active.get(pk)
        current = QuarantineEntry(key, cur.since, cur.reason, cur.by, tuple(cur.signatures or ())) if cur else None
        d = decide_quarantine(key, hist.get(key, []), now=now, current=current, flakiness=pol.flakiness, policy=qp)
        if d.action == "enter" and d.entry is not None:
            session.add(
                Q(
                    test_pk=pk,
                    since=d.entry.since,
                    reason=d.entry.reason,
                    by="rule",
                    signatures=list(d.entry.signatures),
                )
            )
        elif d.action == "release" and cur is not None:
            cur.released_at, cur.release_reason, cur.released_by = now, d.reason, "rule"
        if d.action in ("enter", "release"):
            session.add(
                jm.RerunDecision(
                    run_id=None, kind="quarantine", target=key, action=d.action, attempts=0, blocking=False,
                    reason=d.reason, detail=d.to_dict(), created_at=now,
                )
            )  # fmt: skip
        out.append(d.to_dict())
    return out
