"""The JSON API under /api/v1: every page's data, plus the two writes (ingest, triage) behind a token."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as ApiPath
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from guardrail import alerts, clock
from guardrail.errors import InputError, NotFound
from guardrail.quarantine import add_entry, remove_entry
from guardrail.store.db import session_scope
from guardrail.store.junit_queries import find_tests
from guardrail.vocabulary import AlertKind, TriageState
from web.auth import require_reader, require_writer
from web.cached_reads import cached_flaky, cached_overview
from web.params import MAX_ID, PathId
from web.read import alerts as alert_reads
from web.read import junit_results, runs, series
from web.read.baselines import baseline_pins, lane_policies
from web.read.compare import compare_runs
from web.read.prs import pr_checks, prs

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Text = Annotated[str, Query(max_length=300)]

router = APIRouter(prefix="/api/v1", tags=["api"])
reads = APIRouter(dependencies=[Depends(require_reader)])


def db(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.db_url) as session:
        yield session


# ------------------------------------------------------------------ reads


@reads.get("/overview", summary="Latest nightly status per workload x hardware, open alerts, CI health")
def get_overview(request: Request, lane: Text = "nightly") -> dict[str, Any]:
    return cached_overview(request, lane)


@reads.get("/alerts", summary="Alerts, filterable by triage state, kind, hardware, lane and workload")
def get_alerts(
    request: Request,
    state: Annotated[list[TriageState] | None, Query()] = None,
    kind: Annotated[AlertKind | None, Query()] = None,
    hardware: Annotated[str | None, Query(max_length=200)] = None,
    lane: Annotated[str | None, Query(max_length=50)] = None,
    workload: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    session=Depends(db),
) -> dict[str, Any]:
    return alert_reads.alerts(
        session, states=state, kind=kind, hardware=hardware, lane=lane, workload=workload, limit=limit, offset=offset
    )


@reads.get("/alerts/{alert_id}", summary="One alert with its triage history")
def get_alert(alert_id: PathId, session=Depends(db)) -> dict[str, Any]:
    return alert_reads.alert_detail(session, alert_id)


@reads.get("/alerts/{alert_id}/bisection", summary="The newest bisection of an alert: steps, progress and the culprit")
def get_alert_bisection(alert_id: PathId, session=Depends(db)) -> dict[str, Any]:
    from web.read.bisections import alert_bisection

    return alert_bisection(session, alert_id)


@reads.get("/series", summary="Find series: free text q (any order, typo-tolerant), exact workload, metric, hardware")
def get_series_list(
    q: Annotated[str | None, Query(max_length=300)] = None,
    workload: Annotated[str | None, Query(max_length=300)] = None,
    metric: Annotated[str | None, Query(max_length=200)] = None,
    hardware: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    session=Depends(db),
) -> list[dict[str, Any]]:
    return series.find_series(session, q=q, workload=workload, metric=metric, hardware=hardware, limit=limit)


@reads.get("/series/{series_id}", summary="History of one series: points, baseline band, change points")
def get_series(
    series_id: PathId,
    lane: Annotated[str | None, Query(max_length=50)] = None,
    branch: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=2000)] = series.MAX_POINTS,
    session=Depends(db),
) -> dict[str, Any]:
    return series.series_detail(session, series_id, lane=lane, branch=branch, limit=limit)


@reads.get("/series/{series_id}/runs/{run_id}/samples", summary="Every sample of one series in one run")
def get_samples(series_id: PathId, run_id: PathId, session=Depends(db)) -> dict[str, Any]:
    return series.run_samples(session, series_id, run_id)


@reads.get("/runs", summary="Runs, newest first")
def get_runs(
    lane: Annotated[str | None, Query(max_length=50)] = None,
    hardware: Annotated[str | None, Query(max_length=200)] = None,
    pr: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    session=Depends(db),
) -> dict[str, Any]:
    return runs.runs(session, lane=lane, hardware=hardware, pr=pr, limit=limit, offset=offset)


@reads.get("/runs/{run_id}", summary="One run: every workload x metric with verdict, samples, stages, drift")
def get_run(run_id: PathId, session=Depends(db)) -> dict[str, Any]:
    return runs.run_detail(session, run_id)


@reads.get("/runs/{run_id}/tests", summary="One run's test results (JUnit): per test its verdict, attempts, failure")
def get_run_tests(run_id: PathId, session=Depends(db)) -> dict[str, Any]:
    runs.run_detail(session, run_id)  # 404 for a run that does not exist
    return {"run_id": run_id, "tests": junit_results.run_tests(session, [run_id])}


@reads.get("/baselines/pins", summary="Pinned baselines with reason and author, active first")
def get_pins(session=Depends(db)) -> dict[str, Any]:
    return baseline_pins(session)


@reads.get("/baselines/policies", summary="Each lane's baseline policy and the windows its newest check used")
def get_policies(session=Depends(db)) -> dict[str, Any]:
    return {"policies": lane_policies(session)}


@reads.get("/repeat-plan", summary="Repeats each workload's run should start with (`guardrail plan-repeats`)")
def get_repeat_plan(
    lane: Annotated[str, Query(max_length=50)] = "presubmit",
    hardware: Annotated[str | None, Query(max_length=200)] = None,
    workload: Annotated[list[str] | None, Query()] = None,
    min_repeats: Annotated[int, Query(ge=1, le=100)] = 2,
    session=Depends(db),
) -> dict[str, Any]:
    from guardrail.history import REPEAT_PLAN_SCHEMA, repeat_plans

    plans = repeat_plans(session, lane=lane, hardware=hardware, workloads=workload, min_repeats=min_repeats)
    return {"schema": REPEAT_PLAN_SCHEMA, "lane": lane, "workloads": plans}


@reads.get("/compare", summary="Two runs side by side: b / a - 1 with a 95% CI per metric, sorted and filtered")
def get_compare(
    a: Annotated[int, Query(ge=1, le=MAX_ID)],
    b: Annotated[int, Query(ge=1, le=MAX_ID)],
    sort: Literal["change", "name"] = "change",
    only: Literal["regressions", "changed"] | None = None,
    session=Depends(db),
) -> dict[str, Any]:
    return compare_runs(session, a, b, sort=sort, only=only)


@reads.get("/prs", summary="Pull requests with runs, most recent first")
def get_prs(session=Depends(db)) -> list[dict[str, Any]]:
    return prs(session)


@reads.get("/prs/{pr}", summary="The checks of a PR's pushes, newest first (what its comment said)")
def get_pr(pr: Annotated[int, ApiPath(ge=0, le=MAX_ID)], session=Depends(db)) -> dict[str, Any]:
    return pr_checks(session, pr)


@reads.get("/flaky", summary="Top flaky tests by flakiness score (tests) and by CI minutes lost to reruns")
def get_flaky(
    request: Request,
    lane: Annotated[str | None, Query(max_length=50)] = None,
    hardware: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    session=Depends(db),
) -> dict[str, Any]:
    if not junit_results.has_tests(session):
        return {
            "schema": "guardrail.web.flaky/v1",
            "tests": [],
            "by_minutes": [],
            "note": "no test results ingested yet",
        }
    return cached_flaky(request, lane, hardware, limit)


@reads.get("/tests/{test_pk}", summary="One test: state, recent verdicts, executions, quarantine history")
def get_test(test_pk: PathId, session=Depends(db)) -> dict[str, Any]:
    return junit_results.case_detail(session, test_pk)


@reads.get("/reruns", summary="Rerun decisions with their reason and outcome, newest first, per run")
def get_reruns(
    run: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    kind: Annotated[Literal["test", "workload", "job", "quarantine"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=2000)] = 500,
    session=Depends(db),
) -> dict[str, Any]:
    return junit_results.reruns(session, run_id=run, kind=kind, limit=limit)


@reads.get(
    "/ci-health", summary="Pass rate, flaky rate, CI minutes lost to reruns, infra errors per lane x hardware x day"
)
def get_ci_health(
    days: Annotated[int, Query(ge=1, le=366)] = 14,
    lane: Annotated[str | None, Query(max_length=50)] = None,
    hardware: Annotated[str | None, Query(max_length=200)] = None,
    session=Depends(db),
) -> dict[str, Any]:
    return junit_results.ci_health(session, days=days, lane=lane, hardware=hardware)


@reads.get("/parity", summary="GPU↔NPU parity: run and pass share of the reference's test cases on the target")
def get_parity(
    reference: Annotated[str, Query(max_length=200)],
    target: Annotated[str, Query(max_length=200)],
    lane: Annotated[list[str] | None, Query(max_length=50)] = None,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
    session=Depends(db),
) -> dict[str, Any]:
    from web.read.parity import parity

    return parity(session, reference=reference, target=target, lanes=lane or (), days=days)


# ------------------------------------------------------------------ writes


class TriageRequest(BaseModel):
    state: TriageState
    note: str | None = Field(default=None, max_length=10000)
    issue_url: str | None = Field(default=None, max_length=2000, pattern=r"^(https?://\S+)?$")


class BulkTriageRequest(TriageRequest):
    ids: list[Id] = Field(min_length=1, max_length=1000)


@router.post("/alerts/{alert_id}/triage", summary="Set an alert's triage state (token required)")
def post_triage(
    request: Request, alert_id: PathId, body: TriageRequest, author: str = Depends(require_writer)
) -> dict[str, Any]:
    return _triage(request, [alert_id], body, author)


@router.post("/alerts/triage", summary="Set the triage state of several alerts at once (token required)")
def post_bulk_triage(
    request: Request, body: BulkTriageRequest, author: str = Depends(require_writer)
) -> dict[str, Any]:
    return _triage(request, sorted(set(body.ids)), body, author)


def _triage(request: Request, ids: list[int], body: TriageRequest, author: str) -> dict[str, Any]:
    """All or none (guardrail.alerts.triage): an unknown id answers 404 and changes nothing."""
    with session_scope(request.app.state.db_url, write=True) as session:
        rows = alerts.triage(session, ids, state=body.state, note=body.note, issue_url=body.issue_url, author=author)
        return {"alerts": [alert_reads.alert_dict(a) for a in rows]}


class QuarantineRequest(BaseModel):
    test: str = Field(min_length=1, max_length=5000, description="node id (every hardware variant) or key id@hardware")
    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S")


def _quarantine(request: Request, op: str, test: str, reason: str, author: str) -> dict[str, Any]:
    with session_scope(request.app.state.db_url, write=True) as session:
        if not find_tests(session, test):
            raise NotFound("no stored test with that node id or key")
        fn = add_entry if op == "add" else remove_entry
        entries = fn(session, test, reason=reason.strip(), by=author, now=clock.now())
    request.app.state.cache.clear()
    return {"schema": "guardrail.quarantine/v1", "entries": entries, "by": author}


@router.post("/quarantine", summary="Quarantine a test with a reason (token required; who = the token's name)")
def post_quarantine(request: Request, body: QuarantineRequest, author: str = Depends(require_writer)) -> dict[str, Any]:
    return _quarantine(request, "add", body.test, body.reason, author)


@router.delete("/quarantine", summary="Release a quarantined test with a reason (token required)")
def delete_quarantine(
    request: Request,
    test: Annotated[str, Query(min_length=1, max_length=5000)],
    reason: Annotated[str, Query(min_length=1, max_length=2000, pattern=r"\S")],
    author: str = Depends(require_writer),
) -> dict[str, Any]:
    return _quarantine(request, "remove", test, reason, author)


class IngestDocument(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    content: dict[str, Any] | list[Any] | str


class IngestRequest(BaseModel):
    format: str = Field(default="auto", max_length=50)
    documents: list[IngestDocument] = Field(min_length=1, max_length=5000)


@router.post("/ingest", summary="Validate result documents and store them all in one transaction (token required)")
def post_ingest(body: IngestRequest, request: Request, author: str = Depends(require_writer)) -> dict[str, Any]:
    from guardrail.ingest import load_documents
    from guardrail.ingest.result_writer import store_documents

    if body.format == "junit" or any(isinstance(d.content, str) for d in body.documents):
        bad = next((d.name for d in body.documents if isinstance(d.content, str)), body.documents[0].name)
        raise InputError("JUnit XML is not stored by this service yet; send result or adapter JSON", file=bad)
    with tempfile.TemporaryDirectory(prefix="guardrail-ingest-") as tmp:
        # The adapters detect formats from file names and contents, so each document becomes a real file
        # under its own (sanitised) name; errors are mapped back to the document's name.
        paths, names = [], {}
        for i, d in enumerate(body.documents):
            name = PurePath(d.name.replace("\\", "/").replace("\x00", "")).name
            if name in ("", ".", "..") or len(name.encode()) > 200:
                name = f"document-{i}.json"
            path = Path(tmp) / str(i) / name
            path.parent.mkdir()
            path.write_text(json.dumps(d.content))
            paths.append(path)
            names[str(path)] = d.name
        docs = []
        for path in paths:  # one at a time, so that any failure names its document
            try:
                docs.extend(load_documents([path], body.format))
            except InputError as exc:
                raise InputError(str(exc).replace(str(path), names[str(path)])) from None
            except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
                # An adapter tripped over a shape it does not expect: still the document's fault, not a 500.
                raise InputError(
                    f"not a valid {body.format} document ({type(exc).__name__})", file=names[str(path)]
                ) from None
    docs = [dataclasses.replace(doc, path=names.get(doc.path, doc.path)) for doc in docs]
    with session_scope(request.app.state.db_url, write=True) as session:
        report = store_documents(session, docs)
    request.app.state.cache.clear()
    return {**report.to_dict(), "by": author}


router.include_router(reads)
