"""Table downloads through the real app (FastAPI's TestClient): CSV and Parquet, filenames, the links on the
pages, and the guard against spreadsheet formula injection."""

from __future__ import annotations

import csv
import io
import sys

import pytest
from fastapi.testclient import TestClient

from guardrail import frames
from guardrail.store import models as m
from guardrail.store.db import session_scope
from tests.test_frames import FORMULA_WORKLOAD, fill
from web.app import create_app
from web.pages.downloads import neutralise


@pytest.fixture
def client(db_url, tmp_path):
    ids = fill(db_url, tmp_path)
    with TestClient(create_app(db_url, cache_ttl=0)) as c:
        yield c, ids, db_url


def _rows(resp) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(resp.text)))


def test_series_csv_is_neutralised_and_named(client):
    c, _, url = client
    with session_scope(url) as s:
        sid = s.query(m.Series).join(m.Workload).filter(m.Workload.name == FORMULA_WORKLOAD).one().id
    resp = c.get(f"/download/series.csv?series={sid}&lane=nightly")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    assert resp.headers["content-disposition"] == f'attachment; filename="series-s{sid}-nightly.csv"'
    rows = _rows(resp)
    assert len(rows) == 5
    # The workload name is a formula in a spreadsheet: the cell starts with an apostrophe instead.
    assert {r["workload"] for r in rows} == {"'" + FORMULA_WORKLOAD}
    assert [float(r["value"]) for r in rows] == pytest.approx([102.0] * 4 + [112.0])
    assert all(not r[k].startswith(("=", "+", "-", "@")) for r in rows for k in r if k not in ("value",))
    # The series page links to it with its filters.
    page = c.get(f"/series/{sid}?lane=nightly", headers={"accept": "text/html"})
    assert f"/download/series.csv?series={sid}&amp;lane=nightly" in page.text


def test_runs_verdicts_alerts_csv(client):
    c, ids, _ = client
    runs = _rows(c.get("/download/runs.csv"))
    assert len(runs) == 7 and list(runs[0]) == frames.RUNS_COLUMNS
    pr_runs = c.get("/download/runs.csv?pr=7")
    assert pr_runs.headers["content-disposition"] == 'attachment; filename="runs-pr7.csv"'
    assert [r["branch"] for r in _rows(pr_runs)] == ["feature"]
    n4 = next(r for r, k in ids.items() if k == "n4")
    verdicts = _rows(c.get(f"/download/verdicts.csv?run={n4}"))
    assert [v["verdict"] for v in verdicts] == ["regression"]
    alerts = _rows(c.get("/download/alerts.csv?state=untriaged,acknowledged&kind=regression"))
    assert [a["workload"] for a in alerts] == ["'" + FORMULA_WORKLOAD]
    assert _rows(c.get("/download/alerts.csv?state=resolved")) == []
    for page, link in (("/runs", "/download/runs.csv"), ("/alerts", "/download/alerts.csv"),
                       (f"/runs/{n4}", f"/download/verdicts.csv?run={n4}")):  # fmt: skip
        assert link in c.get(page, headers={"accept": "text/html"}).text
    assert c.get("/download/nothing.csv").status_code == 422
    assert c.get("/download/runs.xlsx").status_code == 422


def test_parquet_round_trip(client):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    c, _, _ = client
    resp = c.get("/download/runs.parquet?lane=nightly")
    assert resp.status_code == 200
    assert resp.headers["content-disposition"] == 'attachment; filename="runs-nightly.parquet"'
    df = pd.read_parquet(io.BytesIO(resp.content))
    assert len(df) == 6 and set(df["lane"]) == {"nightly"}
    assert str(df["time"].dt.tz) == "UTC"


def test_parquet_without_pyarrow_names_the_extra(client, monkeypatch):
    c, _, _ = client
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ImportError
    resp = c.get("/download/alerts.parquet")
    assert resp.status_code == 406
    assert "perf-guardrail[parquet]" in resp.json()["detail"]


def test_neutralise():
    assert neutralise("=1+1") == "'=1+1"
    assert neutralise("+cmd") == "'+cmd" and neutralise("-2") == "'-2" and neutralise("@SUM(A1)") == "'@SUM(A1)"
    assert neutralise("\t=x") == "'\t=x"
    assert neutralise("wan22") == "wan22" and neutralise(-2.5) == -2.5 and neutralise(None) is None
