"""Writing validated results into the store, inside the caller's transaction.

Rows that many results share (environments, commits, runs, workloads, series) are looked up once per
transaction and cached; measurements go in as one bulk insert.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from guardrail.ingest import Document, IngestReport
from guardrail.schema import Result as ResultDoc
from guardrail.store import models as m


def _digest(obj: Any) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def run_key(doc: ResultDoc) -> str:
    """A run is one lane on one hardware for one commit in one CI job attempt (or one local invocation)."""
    src, ci = doc.run.source, doc.run.source.ci
    ident = {
        "lane": doc.run.lane,
        "hardware": doc.environment.hardware,
        "repo": src.repo,
        "commit": src.commit,
        "pr": src.pr,
        "ci": [ci.provider, ci.run_id, ci.attempt] if ci else None,
        # Without a CI run id, the start time is what tells two local invocations apart.
        "started_at": None if (ci and ci.run_id) else doc.run.started_at.isoformat(),
    }
    return _digest(ident)


class _Cache:
    def __init__(self, session: Session):
        self.s = session
        self.envs: dict[str, m.Environment] = {}
        self.commits: dict[tuple[str, str], m.Commit] = {}
        self.runs: dict[str, m.Run] = {}
        self.workloads: dict[str, m.Workload] = {}
        self.series: dict[tuple[int, str, str], m.Series] = {}

    def environment(self, doc: ResultDoc) -> m.Environment:
        env = doc.environment
        payload = env.model_dump(mode="json")
        fp = _digest(payload)
        if fp not in self.envs:
            row = self.s.scalar(select(m.Environment).where(m.Environment.fingerprint == fp))
            if row is None:
                row = m.Environment(
                    fingerprint=fp,
                    hardware=env.hardware,
                    device_type=env.device_type,
                    device_count=env.device_count,
                    software=dict(env.software),
                    extra=dict(env.extra),
                )
                self.s.add(row)
            self.envs[fp] = row
        return self.envs[fp]

    def commit(self, repo: str, sha: str, branch: str | None, message: str | None) -> m.Commit:
        key = (repo, sha)
        if key not in self.commits:
            row = self.s.scalar(select(m.Commit).where(m.Commit.repo == repo, m.Commit.sha == sha))
            if row is None:
                row = m.Commit(repo=repo, sha=sha, branch=branch, message=message)
                self.s.add(row)
            elif message and not row.message:
                row.message = message
            self.commits[key] = row
        return self.commits[key]

    def run(self, doc: ResultDoc) -> tuple[m.Run, bool]:
        key = run_key(doc)
        if key in self.runs:
            return self.runs[key], False
        row = self.s.scalar(select(m.Run).where(m.Run.run_key == key))
        created = row is None
        if created:
            src, ci = doc.run.source, doc.run.source.ci
            commit = self.commit(src.repo or "", src.commit, src.branch, src.message) if src.commit else None
            row = m.Run(
                run_key=key,
                lane=doc.run.lane,
                hardware=doc.environment.hardware,
                started_at=doc.run.started_at,
                commit=commit,
                branch=src.branch,
                pr=src.pr,
                base_commit=src.base_commit,
                ci_provider=ci.provider if ci else None,
                ci_run_id=ci.run_id if ci else None,
                ci_attempt=ci.attempt if ci else None,
                ci_url=ci.url if ci else None,
            )
            self.s.add(row)
        self.runs[key] = row
        return row, created

    def workload(self, doc: ResultDoc) -> m.Workload:
        w = doc.workload
        if w.digest not in self.workloads:
            row = self.s.scalar(select(m.Workload).where(m.Workload.digest == w.digest))
            if row is None:
                row = m.Workload(digest=w.digest, name=w.name, family=w.family, spec=dict(w.spec))
                self.s.add(row)
            self.workloads[w.digest] = row
        return self.workloads[w.digest]

    def load_series(self, workload_ids: set[int]) -> None:
        for row in self.s.scalars(select(m.Series).where(m.Series.workload_id.in_(workload_ids))):
            self.series[(row.workload_id, row.metric, row.hardware)] = row

    def one_series(self, workload: m.Workload, metric, hardware: str) -> m.Series:
        key = (workload.id, metric.name, hardware)
        if key not in self.series:
            row = m.Series(
                workload_id=workload.id,
                metric=metric.name,
                hardware=hardware,
                unit=metric.unit,
                direction=metric.direction,
                summary=metric.summary,
            )
            self.s.add(row)
            self.series[key] = row
        return self.series[key]


def store_documents(session: Session, docs: Sequence[Document]) -> IngestReport:
    report = IngestReport()
    cache = _Cache(session)
    pending: list[tuple[Document, m.Result, m.Workload]] = []
    seen_in_batch: set[tuple[str, str, str]] = set()
    for doc in docs:
        r = doc.result
        run, run_created = cache.run(r)
        workload = cache.workload(r)
        env = cache.environment(r)
        session.flush()
        ident = (run.run_key, r.workload.digest, doc.content_hash)
        exists = ident in seen_in_batch or (
            not run_created
            and session.scalar(
                select(m.Result.id).where(
                    m.Result.run_id == run.id,
                    m.Result.workload_id == workload.id,
                    m.Result.content_hash == doc.content_hash,
                )
            )
            is not None
        )
        entry = {
            "file": doc.path,
            "run_id": run.id,
            "lane": run.lane,
            "hardware": run.hardware,
            "workload": r.workload.name,
            "status": r.status,
        }
        if exists:
            report.skipped.append({**entry, "reason": "already stored (same run, workload and content)"})
            continue
        seen_in_batch.add(ident)
        row = m.Result(
            run=run,
            workload=workload,
            environment=env,
            status=r.status,
            error_kind=r.error.kind if r.error else None,
            error_message=r.error.message if r.error else None,
            content_hash=doc.content_hash,
            source_format=doc.format,
            extra=dict(r.extra),
        )
        session.add(row)
        pending.append((doc, row, workload))
    session.flush()

    cache.load_series({w.id for _, _, w in pending})
    rows: list[dict[str, Any]] = []
    for doc, row, workload in pending:
        n_samples = 0
        for metric in doc.result.metrics:
            series = cache.one_series(workload, metric, doc.result.environment.hardware)
            for i, values in enumerate(metric.repeats):
                arr = np.asarray(values, dtype="<f8")
                n_samples += arr.size
                rows.append(
                    {
                        "result_id": row.id,
                        "series": series,
                        "repeat_index": i,
                        "n": int(arr.size),
                        "median": float(np.median(arr)),
                        "mean": float(arr.mean()),
                        "minimum": float(arr.min()),
                        "maximum": float(arr.max()),
                        "samples": arr.tobytes(),
                    }
                )
        report.stored.append(
            {
                "file": doc.path,
                "run_id": row.run_id,
                "result_id": row.id,
                "lane": doc.result.run.lane,
                "hardware": doc.result.environment.hardware,
                "workload": workload.name,
                "status": row.status,
                "metrics": len(doc.result.metrics),
                "samples": n_samples,
            }
        )
    session.flush()  # series ids
    for r in rows:
        r["series_id"] = r.pop("series").id
    if rows:
        session.execute(insert(m.Measurement), rows)
    return report
