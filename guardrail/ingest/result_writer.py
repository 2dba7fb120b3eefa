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
from guardrail.store.shared_rows import SharedRows, insert_if_absent


def store_documents(session: Session, docs: Sequence[Document]) -> IngestReport:
    report = IngestReport()
    shared = SharedRows(session)
    # shared rows first, in the one order every ingest takes them (no deadlock between concurrent ingests)
    shared.prepare([doc.result for doc in docs])
    pending: list[tuple[Document, m.Result, m.Workload]] = []
    seen_in_batch: set[tuple[str, str, str]] = set()
    entries: list[tuple[int, Document, m.Run, m.Workload, m.Environment]] = []
    for doc in docs:
        r = doc.result
        run, _ = shared.run(r.run, r.environment.hardware)
        workload = shared.workload(r.workload)
        env = shared.environment(r.environment)
        entries.append((len(entries), doc, run, workload, env))
    # results in the order of their unique key, for the same reason
    outcome: dict[int, m.Result | None] = {}
    for k, doc, run, workload, env in sorted(entries, key=lambda e: (e[2].run_key, e[3].digest, e[1].content_hash)):
        r = doc.result
        ident = (run.run_key, r.workload.digest, doc.content_hash)
        if ident in seen_in_batch:
            outcome[k] = None
            continue
        seen_in_batch.add(ident)
        if (
            run.run_key not in shared.created_run_keys
            and session.scalar(
                select(m.Result.id).where(
                    m.Result.run_id == run.id,
                    m.Result.workload_id == workload.id,
                    m.Result.content_hash == doc.content_hash,
                )
            )
            is not None
        ):
            outcome[k] = None
            continue
        result_values: dict[str, Any] = {
            "run_id": run.id,
            "workload_id": workload.id,
            "environment_id": env.id,
            "status": r.status,
            "error_kind": r.error.kind if r.error else None,
            "error_message": r.error.message if r.error else None,
            "content_hash": doc.content_hash,
            "source_format": doc.format,
            "extra": dict(r.extra),
            "created_at": m.utcnow(),
        }
        # a concurrent ingest of the same result: the insert waits for it and then does nothing
        if session.scalar(insert_if_absent(session, m.Result, result_values)) is None:
            outcome[k] = None
            continue
        outcome[k] = session.scalars(
            select(m.Result).where(
                m.Result.run_id == run.id,
                m.Result.workload_id == workload.id,
                m.Result.content_hash == doc.content_hash,
            )
        ).one()
    for i, doc, run, workload, _env in entries:
        stored = outcome[i]
        if stored is None:
            report.skipped.append(
                {
                    "file": doc.path,
                    "run_id": run.id,
                    "lane": run.lane,
                    "hardware": run.hardware,
                    "workload": doc.result.workload.name,
                    "status": doc.result.status,
                    "reason": "already stored (same run, workload and content)",
                }
            )
        else:
            pending.append((doc, stored, workload))
    session.flush()

    shared.load_series({w.id for _, _, w in pending})
    # new series in the order of their unique key too
    wanted = {
        (w.id, metric.name, d.result.environment.hardware): (w, metric)
        for d, _, w in pending
        for metric in d.result.metrics
    }
    for key in sorted(wanted):
        shared.series(wanted[key][0], wanted[key][1], key[2])
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
