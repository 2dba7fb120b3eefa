"""The PR comment's "since the previous push" line reads the PR's previous checked push from the store: the newest
checked runs of the PR at another commit than its head, started before it."""

from __future__ import annotations

from sqlalchemy import select

from guardrail.ingest import ingest
from guardrail.store import models as m
from guardrail.store.db import session_scope
from guardrail.store.queries import previous_push_doc
from tests.factories import result_doc, write
from tests.timeline import iso


def _push(url, tmp_path, commit: str, hours: int, verdict: str) -> None:
    doc = result_doc(lane="presubmit", commit=commit, branch="feature", pr=7, started_at=iso(hours=hours))
    run_id = ingest(url, [write(tmp_path / f"{commit}.json", doc)]).run_ids[0]
    verdicts = {"workload": "wan22-ti2v-5b-720p", "metric": "denoise_step_latency", "verdict": verdict}
    with session_scope(url, write=True) as s:
        s.add(m.Check(run_id=run_id, policy="presubmit", status="success", doc={"verdicts": [verdicts]}))


def test_the_previous_push_is_the_newest_checked_earlier_commit_of_the_pr(db_url, tmp_path):
    assert previous_push_doc(db_url, repo="org/project", pr=7, commit="c3") is None
    _push(db_url, tmp_path, "c1", -30, "regression")
    _push(db_url, tmp_path, "c2", -20, "no_change")
    _push(db_url, tmp_path, "c3", -10, "improvement")
    doc = previous_push_doc(db_url, repo="org/project", pr=7, commit="c3")
    assert doc is not None and [v.verdict for v in doc.verdicts] == ["no_change"]
    first = previous_push_doc(db_url, repo="org/project", pr=7, commit="c2")
    assert first is not None and [v.verdict for v in first.verdicts] == ["regression"]
    assert previous_push_doc(db_url, repo="org/project", pr=7, commit="c1") is None
    assert previous_push_doc(db_url, repo="org/project", pr=8, commit="c3") is None
    with session_scope(db_url) as s:
        assert len(s.scalars(select(m.Run)).all()) == 3
