"""The rows that many stored results share: environments, commits, runs, workloads and series.

Both writers -- results (:mod:`guardrail.ingest.result_writer`) and JUnit files
(:mod:`guardrail.ingest.junit_writer`) -- get them here, inside the caller's transaction. Each is looked up
once per transaction and cached. A missing one is inserted with ``INSERT … ON CONFLICT DO NOTHING`` and read
back: when a concurrent ingest created the same row a moment earlier, PostgreSQL waits for that transaction and
the insert does nothing (no ``UniqueViolation``), the read finds the other's row. Callers create these rows in one
fixed order (see :meth:`SharedRows.prepare`), so that two ingests never wait on each other's rows in a cycle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from guardrail import schema
from guardrail.store import models as m


def digest(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj``."""
    return "sha256:" + hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def run_key(run: schema.RunInfo, hardware: str) -> str:
    """A run is one lane on one hardware for one commit in one CI job attempt (or one local invocation)."""
    src, ci = run.source, run.source.ci
    ident = {
        "lane": run.lane,
        "hardware": hardware,
        "repo": src.repo,
        "commit": src.commit,
        "pr": src.pr,
        "ci": [ci.provider, ci.run_id, ci.attempt] if ci else None,
        # Without a CI run id, the start time is what tells two local invocations apart.
        "started_at": None if (ci and ci.run_id) else run.started_at.isoformat(),
    }
    return digest(ident)


def insert_if_absent(session: Session, model: Any, values: dict[str, Any]) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING id`` of one row of ``model`` in the session's dialect: the
    statement's scalar is the new id, or None when the row was there (the driver's rowcount cannot tell)."""
    dialect = session.get_bind().dialect.name
    ins = postgresql.insert(model) if dialect == "postgresql" else sqlite.insert(model)
    return ins.values(**values).on_conflict_do_nothing().returning(model.id)


class SharedRows:
    """Get-or-create of the shared rows within one session (one transaction)."""

    def __init__(self, session: Session):
        self.s = session
        self.envs: dict[str, m.Environment] = {}
        self.commits: dict[tuple[str, str], m.Commit] = {}
        self.runs: dict[str, m.Run] = {}
        self.workloads: dict[str, m.Workload] = {}
        self.series_rows: dict[tuple[int, str, str], m.Series] = {}
        self.created_run_keys: set[str] = set()  # the runs this transaction inserted

    def prepare(self, results: Sequence[schema.Result]) -> None:
        """Get or create the shared rows of ``results`` in one fixed order: commits, runs, workloads, environments,
        each sorted by its unique key. Every ingest takes the rows' insert locks in this order, so that two
        concurrent ingests wait for one another at most one way round (never a deadlock)."""
        commits = sorted({(r.run.source.repo or "", r.run.source.commit) for r in results if r.run.source.commit})
        by_commit = {(r.run.source.repo or "", r.run.source.commit): r.run.source for r in results}
        for repo, sha in commits:
            src = by_commit[(repo, sha)]
            self.commit(repo, sha, src.branch, src.message)
        runs = {run_key(r.run, r.environment.hardware): r for r in results}
        for key in sorted(runs):
            self.run(runs[key].run, runs[key].environment.hardware)
        for w in sorted({r.workload.digest: r.workload for r in results}.items()):
            self.workload(w[1])
        envs = {digest(r.environment.model_dump(mode="json")): r.environment for r in results}
        for fp in sorted(envs):
            self.environment(envs[fp])

    def environment(self, env: schema.Environment) -> m.Environment:
        fp = digest(env.model_dump(mode="json"))
        if fp not in self.envs:
            values = {
                "fingerprint": fp,
                "hardware": env.hardware,
                "device_type": env.device_type,
                "device_count": env.device_count,
                "software": dict(env.software),
                "extra": dict(env.extra),
            }
            self.envs[fp] = self._get_or_insert(m.Environment, values, m.Environment.fingerprint == fp)
        return self.envs[fp]

    def commit(self, repo: str, sha: str, branch: str | None, message: str | None) -> m.Commit:
        key = (repo, sha)
        if key not in self.commits:
            values = {"repo": repo, "sha": sha, "branch": branch, "message": message}
            row = self._get_or_insert(m.Commit, values, m.Commit.repo == repo, m.Commit.sha == sha)
            if message and not row.message:
                row.message = message
            self.commits[key] = row
        return self.commits[key]

    def run(self, run: schema.RunInfo, hardware: str) -> tuple[m.Run, bool]:
        """The run of ``run`` on ``hardware``, and whether it was created now."""
        key = run_key(run, hardware)
        if key in self.runs:
            return self.runs[key], key in self.created_run_keys
        row = self.s.scalar(select(m.Run).where(m.Run.run_key == key))
        created = False
        if row is None:
            src, ci = run.source, run.source.ci
            commit = self.commit(src.repo or "", src.commit, src.branch, src.message) if src.commit else None
            values = {
                "run_key": key,
                "lane": run.lane,
                "hardware": hardware,
                "started_at": run.started_at,
                "commit_id": commit.id if commit else None,
                "branch": src.branch,
                "pr": src.pr,
                "base_commit": src.base_commit,
                "ci_provider": ci.provider if ci else None,
                "ci_run_id": ci.run_id if ci else None,
                "ci_attempt": ci.attempt if ci else None,
                "ci_url": ci.url if ci else None,
                "created_at": m.utcnow(),
            }
            # created now only when this transaction's insert took: a concurrent ingest's run is not ours
            created = self.s.scalar(insert_if_absent(self.s, m.Run, values)) is not None
            if created:
                self.created_run_keys.add(key)
            row = self.s.scalars(select(m.Run).where(m.Run.run_key == key)).one()
        self.runs[key] = row
        return row, created

    def workload(self, w: schema.Workload) -> m.Workload:
        if w.digest not in self.workloads:
            values = {"digest": w.digest, "name": w.name, "family": w.family, "spec": dict(w.spec)}
            self.workloads[w.digest] = self._get_or_insert(m.Workload, values, m.Workload.digest == w.digest)
        return self.workloads[w.digest]

    def load_series(self, workload_ids: set[int]) -> None:
        """Read the stored series of these workloads at once (one query instead of one per metric)."""
        for row in self.s.scalars(select(m.Series).where(m.Series.workload_id.in_(workload_ids))):
            self.series_rows[(row.workload_id, row.metric, row.hardware)] = row

    def series(self, workload: m.Workload, metric: schema.Metric, hardware: str) -> m.Series:
        """The series of ``metric`` of ``workload`` on ``hardware``; :meth:`load_series` first reads the stored
        ones, so that a series missing here is new."""
        key = (workload.id, metric.name, hardware)
        if key not in self.series_rows:
            values = {
                "workload_id": workload.id,
                "metric": metric.name,
                "hardware": hardware,
                "unit": metric.unit,
                "direction": metric.direction,
                "summary": metric.summary,
            }
            self.series_rows[key] = self._get_or_insert(
                m.Series, values, m.Series.workload_id == workload.id, m.Series.metric == metric.name,
                m.Series.hardware == hardware,
            )  # fmt: skip
        return self.series_rows[key]

    def _get_or_insert(self, model: Any, values: dict[str, Any], *where: Any) -> Any:
        """The row of ``model`` under its unique key ``where``: the stored one, or one inserted now (by this
        transaction, or by a concurrent one that committed it while the insert waited)."""
        row = self.s.scalar(select(model).where(*where))
        if row is None:
            self.s.execute(insert_if_absent(self.s, model, values))
            row = self.s.scalars(select(model).where(*where)).one()
        return row
