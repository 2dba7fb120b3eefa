"""`guardrail bisect ALERT`: the alert's workload, hardware, metric and commit range; the bisection is stored
under the alert, and GET /api/v1/alerts/{id}/bisection serves it (the read model the alert page uses)."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from guardrail.store.db import session_scope
from guardrail.store.models import Alert, Workload
from tests.bisect_repo import HARDWARE, WORKLOAD, build_repo
from tests.cli_inprocess import run_cli


def test_bisect_an_alert_and_read_it_from_the_api(tmp_path, capsys, db_url):
    shas = build_repo(tmp_path / "repo", n=5, slow_at=3)
    db = db_url  # SQLite and PostgreSQL
    with session_scope(db, write=True) as s:
        w = Workload(digest="sha256:tiny", name=WORKLOAD, family="tiny", spec={})
        s.add(w)
        s.flush()
        a = Alert(dedup_key="k1", kind="regression", workload_id=w.id, hardware=HARDWARE, lane="nightly",
                  metrics=[{"metric": "time", "change": 1.0}], change=1.0, from_commit=shas[0][:12],
                  to_commit=shas[-1])  # fmt: skip
        s.add(a)
        s.flush()
        alert_id = a.id
    code, out, err = run_cli(capsys, "bisect", str(alert_id), "--repo", str(tmp_path / "repo"), "--db", db,
                             "--format", "json")  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["alert_id"], doc["workload"], doc["metric"], doc["hardware"]) == (alert_id, WORKLOAD, "time", HARDWARE)
    assert doc["good"] == shas[0] and doc["commits"] == shas and doc["steps"][0]["sha"] == shas[0]

    from web.app import create_app

    with TestClient(create_app(db)) as c:
        r = c.get(f"/api/v1/alerts/{alert_id}/bisection")
        assert r.status_code == 200
        body = r.json()
        assert body["bisection"]["id"] == doc["id"] and body["bisection"]["state"] == "running"
        progress = {"commits": 5, "tried": 2, "measured": 0, "open": 3, "midpoints_left": 2}  # both ends printed
        assert body["bisection"]["progress"] == progress
        assert c.get("/api/v1/alerts/999/bisection").status_code == 404

    code, _, err = run_cli(capsys, "bisect", "999", "--repo", str(tmp_path / "repo"), "--db", db)
    assert code == 2 and "no alert 999" in err
