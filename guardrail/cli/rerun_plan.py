"""`guardrail rerun-plan`: which failed tests and which performance workloads of a run to rerun now, and why;
every decision is stored (``rerun_decisions``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from guardrail import clock
from guardrail.cli.app import DbOption, app, echo_json, resolve_db
from guardrail.cli.flaky_report import FormatOption, PolicyOption, text_or_json
from guardrail.errors import InputError


def _find_run(s: Any, run: str):
    from sqlalchemy import select

    from guardrail.store import models as m

    row = s.get(m.Run, int(run)) if run.isdigit() else None
    if row is None:  # a CI run id: its newest attempt
        row = s.scalar(
            select(m.Run).where(m.Run.ci_run_id == run).order_by(m.Run.ci_attempt.desc(), m.Run.id.desc()).limit(1)
        )
    if row is None:
        raise InputError(f"no stored run {run!r} (a run id from `guardrail ingest`, or a CI run id)", field="--run")
    return row


def _seen_regressions(s: Any, run: Any, check: Any) -> list[tuple[str, str, str]]:
    """(workload, metric, hardware) with an earlier open regression alert that the metric made worse: a regression
    seen again (an improving metric of the same alert is not)."""
    from sqlalchemy import or_, select

    from guardrail.alerts import worse
    from guardrail.store import models as m
    from guardrail.vocabulary import OPEN_STATES

    q = select(m.Alert).where(
        m.Alert.kind == "regression",
        m.Alert.state.in_(OPEN_STATES),
        or_(m.Alert.run_id.is_(None), m.Alert.run_id != run.id),
    )
    if check is not None:
        q = q.where(m.Alert.created_at <= check.created_at)
    out = []
    for a in s.scalars(q):
        for x in a.metrics or []:
            if x.get("change") is None or worse(x):  # a metric stored without its change counts
                out.append((a.workload.name, x.get("metric", ""), a.hardware))
    return out


@app.command("rerun-plan")
def rerun_plan_cmd(
    run: Annotated[str, typer.Option("--run", help="Stored run id (or CI run id: its newest attempt).")],
    fmt: FormatOption = "text",
    changed: Annotated[
        list[str] | None, typer.Option("--changed", help="A test id or file path the PR changed (repeatable).")
    ] = None,
    policy: PolicyOption = None,
    db: DbOption = None,
) -> None:
    """Which failed tests and performance workloads to rerun now; every decision is stored with its reason."""
    from sqlalchemy import select

    from guardrail.analysis.perf_reruns import PerfCandidate
    from guardrail.analysis.rerun_plan import rerun_plan
    from guardrail.rerun_policy.yaml_file import load_rerun_policy
    from guardrail.store import junit_models as jm
    from guardrail.store import models as m
    from guardrail.store.db import session_scope
    from guardrail.store.junit_queries import active_quarantine, flaky_stats, run_verdicts

    fmt = text_or_json(fmt)
    pol = load_rerun_policy(policy)
    with session_scope(resolve_db(db), write=True) as s:
        row = _find_run(s, run)
        verdicts = run_verdicts(s, row)
        check = s.scalar(select(m.Check).where(m.Check.run_id == row.id).order_by(m.Check.id.desc()).limit(1))
        perf: list[PerfCandidate] = []
        if check is not None:
            try:
                perf = [PerfCandidate.from_entry(e) for e in (check.doc or {}).get("verdicts", [])]
            except KeyError as exc:
                raise InputError(f"check {check.id} of run {row.id}: verdict without {exc}", field="verdicts") from None
        now = clock.now()
        failed = {v.identity.key for v in verdicts if v.final_outcome in ("fail", "error")}
        known_flaky = [st.test for st in flaky_stats(s, now=now, policy=pol.flakiness) if st.flaky] if failed else []
        plan = rerun_plan(
            str(row.id),
            verdicts,
            perf,
            policy=pol,
            known_flaky=known_flaky,
            quarantined=list(active_quarantine(s)),
            changed_tests=changed or [],
            seen_regressions=_seen_regressions(s, row, check),
        )
        decisions = [
            jm.RerunDecision(
                run_id=row.id, kind="job", target=str(row.id), action="plan", attempts=0, blocking=False,
                reason=plan.reason, detail={"failed_tests": plan.failed_tests, "ran_tests": plan.ran_tests},
                created_at=now,
            )
        ]  # fmt: skip
        decisions += [
            jm.RerunDecision(
                run_id=row.id, kind="test", target=t.test, action="rerun" if t.rerun else "none",
                attempts=t.attempts, blocking=False, reason=t.reason, detail={"id": t.id}, created_at=now,
            )
            for t in plan.tests
        ]  # fmt: skip
        decisions += [
            jm.RerunDecision(
                run_id=row.id, kind="workload", target=f"{w.workload}/{w.metric}@{w.hardware}", action=w.action,
                attempts=w.extra_repeats, blocking=w.blocking, reason=w.reason, detail=w.to_dict(), created_at=now,
            )
            for w in plan.workloads
        ]  # fmt: skip
        s.add_all(decisions)
        doc = plan.to_dict()
        doc["stored_decisions"] = len(decisions)
    if fmt == "json":
        echo_json(doc, indent=1)
        return
    typer.echo(f"run {doc['run_id']}: {doc['reason']}")
    for t in doc["tests"]:
        typer.echo(f"  {'rerun' if t['rerun'] else 'keep '} {t['id']}  x{t['attempts']}  ({t['reason']})")
    for w in doc["workloads"]:
        typer.echo(f"  {w['action']:<5} {w['workload']}/{w['metric']} on {w['hardware']}  +{w['extra_repeats']}"
                   f"{'  profile: true' if w.get('profile') else ''}  ({w['reason']})")  # fmt: skip
    sm = doc["summary"]
    typer.echo(
        f"{sm['tests_to_rerun']} tests and {sm['workloads_to_rerun']} workloads to rerun, "
        f"{sm['workloads_flagged']} flagged; {doc['stored_decisions']} decisions stored"
    )
