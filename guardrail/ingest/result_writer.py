"""Writing validated results into the store, inside the caller's transaction.

The rows that many results share (environments, commits, runs, workloads, series) come from
:class:`guardrail.store.shared_rows.SharedRows`; measurements go in as one bulk insert.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from guardrail.ingest.documents import Document, IngestReport
from guardrail.store import models as m
from guardrail.store.shared_rows import SharedRows


def store_documents(session: Session, docs: Sequence[Document]) -> IngestReport:
    report = IngestReport()
    shared = SharedRows(session)
    pending: list[tuple[Document, m.Result, m.Workload]] = []
    seen_in_batch: set[tuple[str, str, str]] = set()
    for doc in docs:
        r = doc.result
        run, run_created = shared.run(r.run, r.environment.hardware)
        workload = shared.workload(r.workload)
        env = shared.environment(r.environment)
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

    shared.load_series({w.id for _, _, w in pending})
    rows: list[tuple[m.Series, dict[str, Any]]] = []
    for doc, row, workload in pending:
        n_samples = 0
        for metric in doc.result.metrics:
            series = shared.series(workload, metric, doc.result.environment.hardware)
            for i, values in enumerate(metric.repeats):
                arr = np.asarray(values, dtype="<f8")
                n_samples += arr.size
                rows.append(
                    (
                        series,
                        {
                            "result_id": row.id,
                            "repeat_index": i,
                            "n": int(arr.size),
                            "median": float(np.median(arr)),
                            "mean": float(arr.mean()),
                            "minimum": float(arr.min()),
                            "maximum": float(arr.max()),
                            "samples": arr.tobytes(),
                        },
                    )
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
    if rows:
        session.execute(insert(m.Measurement), [{**values, "series_id": series.id} for series, values in rows])
    return report
