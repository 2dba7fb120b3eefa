"""The rows that many stored results share: environments, commits, runs, workloads and series.

Both writers -- results (:mod:`guardrail.ingest.result_writer`) and JUnit files
(:mod:`guardrail.ingest.junit_writer`) -- get them here, inside the caller's transaction. Each is looked up
once per transaction and cached; a missing one is added to the session. Every get-or-create of these rows
lives in this module, so that making them safe under concurrent writers is a change in one place.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select
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


class SharedRows:
    """Get-or-create of the shared rows within one session (one transaction)."""

    def __init__(self, session: Session):
        self.s = session
        self.envs: dict[str, m.Environment] = {}
        self.commits: dict[tuple[str, str], m.Commit] = {}
        self.runs: dict[str, m.Run] = {}
        self.workloads: dict[str, m.Workload] = {}
        self.series_rows: dict[tuple[int, str, str], m.Series] = {}

    def environment(self, env: schema.Environment) -> m.Environment:
        fp = digest(env.model_dump(mode="json"))
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

    def run(self, run: schema.RunInfo, hardware: str) -> tuple[m.Run, bool]:
        """The run of ``run`` on ``hardware``, and whether it was created now."""
        key = run_key(run, hardware)
        if key in self.runs:
            return self.runs[key], False
        row = self.s.scalar(select(m.Run).where(m.Run.run_key == key))
        created = row is None
        if row is None:
            src, ci = run.source, run.source.ci
            commit = self.commit(src.repo or "", src.commit, src.branch, src.message) if src.commit else None
            row = m.Run(
                run_key=key,
                lane=run.lane,
                hardware=hardware,
                started_at=run.started_at,
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

    def workload(self, w: schema.Workload) -> m.Workload:
        if w.digest not in self.workloads:
            row = self.s.scalar(select(m.Workload).where(m.Workload.digest == w.digest))
            if row is None:
                row = m.Workload(digest=w.digest, name=w.name, family=w.family, spec=dict(w.spec))
                self.s.add(row)
            self.workloads[w.digest] = row
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
            row = m.Series(
                workload_id=workload.id,
                metric=metric.name,
                hardware=hardware,
                unit=metric.unit,
                direction=metric.direction,
                summary=metric.summary,
            )
            self.s.add(row)
            self.series_rows[key] = row
        return self.series_rows[key]
