"""The overview says what needs someone now: a headline naming the worst open regression, open regressions
listed apart from improvements, and the status grid worst row first with each cell's age and stale cells marked.
Served by the real app over a real SQLite store filled by real ingest and check, plus alerts of known size."""

from __future__ import annotations

import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from guardrail.store import models as m
from guardrail.store.db import session_scope
from tests.factories import noisy_repeats, result_doc, write
from tests.timeline import at, iso

HW = "Ascend910B3"


def _text(fragment: str) -> str:
    """The words of an HTML fragment, tags dropped and spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", fragment).replace("&amp;", "&").split())


def _element(body: str, tag: str, id_: str) -> str:
    """The markup of the element with that id (tables, paragraphs: not nested in their own kind here)."""
    match = re.search(rf'<{tag}\b[^>]*\bid="{id_}"[^>]*>.*?</{tag}>', body, re.S)
    assert match, f"no <{tag} id={id_}>"
    return match.group(0)


def _rows(table: str) -> list[str]:
    return re.findall(r"<tr\b.*?</tr>", table, re.S)


def _alert(s, key: str, workload: m.Workload, *, kind: str, change: float, state: str = "untriaged", days: float):
    before = 1000.0
    s.add(
        m.Alert(
            dedup_key=key,
            kind=kind,
            workload_id=workload.id,
            hardware=HW,
            lane="nightly",
            metrics=[
                {
                    "metric": "denoise_step_latency",
                    "unit": "ms",
                    "direction": "lower_is_better",
                    "before": before,
                    "after": before * (1 + change),
                    "change": change,
                },
                # a second metric of the same step, smaller: the headline names the worst one
                {"metric": "denoise_latency", "unit": "ms", "direction": "lower_is_better", "change": change / 3},
            ],
            change=change,
            from_commit="aa" * 20,
            to_commit="bb" * 20,
            state=state,
            created_at=at(days=-days),
            updated_at=at(days=-days),
        )
    )


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from guardrail.check import check_runs
    from guardrail.ingest import ingest
    from web.app import create_app

    tmp = tmp_path_factory.mktemp("overview")
    url = f"sqlite:///{tmp / 'guardrail.db'}"
    rng = np.random.default_rng(11)
    files = []
    for night in range(12):
        # "steady" never moves; "stepped" steps up 4% on the last two nights (the check finds a regression)
        for name, level in (("steady", 500.0), ("stepped", 800.0 * (1.04 if night >= 10 else 1.0))):
            doc = result_doc(
                workload=name,
                hardware=HW,
                commit=f"{night:02d}{name[:2]}" + "cd" * 18,
                started_at=iso(days=night - 12, hours=-1),
                run_id=f"{name}-{night}",
                metrics={"denoise_step_latency": noisy_repeats(level, repeats=3, within_cv=0.002, rng=rng)},
            )
            files.append(write(tmp / f"{name}-{night:02d}.json", doc))
    # a workload last run 20 days ago: a stale cell
    files.append(
        write(tmp / "old.json", result_doc(workload="aaa-old", hardware=HW, started_at=iso(days=-20), run_id="old"))
    )
    # a workload whose latest nightly hit an infrastructure error: above the quiet rows, below the regression
    files.append(
        write(
            tmp / "infra.json",
            result_doc(
                workload="broken",
                hardware=HW,
                started_at=iso(days=-1),
                run_id="infra",
                status="infra_error",
                error={"kind": "oom", "message": "NPU out of memory"},
                metrics={},
            ),
        )
    )
    ingest(url, files)
    with session_scope(url, write=True) as s:
        runs = {r.ci_run_id: r for r in s.query(m.Run)}
        check_runs(s, [runs["steady-11"], runs["stepped-11"], runs["old"]])
        wan = m.Workload(name="wan22-ti2v-5b", family="wan2.2", digest="sha256:wan22")
        s.add(wan)
        s.flush()
        _alert(s, "worst", wan, kind="regression", change=0.062, days=3.2)
        _alert(s, "smaller", wan, kind="regression", change=0.051, days=1.5)
        # larger in size than any regression, but an improvement: never the headline, never a regression row
        _alert(s, "better", wan, kind="improvement", change=-0.30, days=2)
        # resolved: not open, whatever its size
        _alert(s, "fixed", wan, kind="regression", change=0.50, state="fixed", days=5)
        ids = {a.dedup_key: a.id for a in s.query(m.Alert)}
    with TestClient(create_app(url), raise_server_exceptions=True) as c:
        c.ids = ids  # type: ignore[attr-defined]
        yield c
    from guardrail.store import db as store_db

    store_db.get_engine(url).dispose()


def _open_regressions(c) -> int:
    return sum(1 for k in c.ids if k not in ("better", "fixed"))


def test_headline_names_the_worst_open_regression(client):
    doc = client.get("/api/v1/overview").json()
    headline = _element(client.get("/").text, "p", "headline")
    text = _text(headline)
    n = _open_regressions(client)
    assert text.startswith(f"{n} regressions open on {HW}"), text
    assert "worst +6.2% denoise_step_latency on wan22-ti2v-5b since 3 nights" in text, text
    assert "30.0%" not in text and "50.0%" not in text
    assert f'href="/alerts/{client.ids["worst"]}"' in headline
    assert doc["headline"]["text"] == text
    assert doc["open_regressions_total"] == n
    assert {"workloads", "open_alerts", "open_improvements", "ci_health"} <= set(doc)  # the keys it always had


def test_improvements_never_among_regressions(client):
    body = client.get("/").text
    rows = [r for r in _rows(_element(body, "table", "open-regressions")) if "data-alert" in r]
    listed = [int(re.search(r'data-alert="(\d+)"', r).group(1)) for r in rows]
    assert client.ids["better"] not in listed and client.ids["fixed"] not in listed
    assert {client.ids["worst"], client.ids["smaller"]} <= set(listed)
    assert {re.search(r'data-kind="(\w+)"', r).group(1) for r in rows} == {"regression"}
    # worst first, with before -> after and its unit, its direction, and how long it has been open
    assert listed[0] == client.ids["worst"]
    row = _text(rows[0])
    assert "1000 → 1062 ms" in row and "+6.2%" in row and "3 days" in row and "lower is better" in row, row
    improvements = _element(body, "table", "open-improvements")
    assert set(map(int, re.findall(r'data-alert="(\d+)"', improvements))) == {client.ids["better"]}
    # the regressions are listed above the improvements, and both above the grid
    assert body.index('id="open-regressions"') < body.index('id="open-improvements"') < body.index("status-grid")


def test_grid_worst_first_with_age_and_stale_marked(client):
    grid = _element(client.get("/").text, "table", "status-grid")
    body_rows = _rows(grid.split("<tbody>", 1)[1])
    cells = {}
    for r in body_rows:
        name = _text(re.search(r"<th\b.*?</th>", r, re.S).group(0))
        cells[name] = re.search(r"<td\b.*?</td>", r, re.S).group(0)
    order = list(cells)
    # regression, then the infrastructure error, then a first result ("new"), then no change
    assert order == ["stepped", "broken", "aaa-old", "steady"], order
    assert "regression" in _text(cells["stepped"]) and "1 day ago" in _text(cells["stepped"])
    old = cells["aaa-old"]
    assert old.startswith('<td class="stale"') and re.search(r"\bstale\b", _text(old))
    assert "20 days ago" in _text(old)
    assert "stale" not in cells["steady"]
    api = {w["workload"]: w for w in client.get("/api/v1/overview").json()["workloads"]}
    assert api["aaa-old"]["cells"][HW]["stale"] is True and api["steady"]["cells"][HW]["stale"] is False


def test_no_open_regressions_headline(tmp_path):
    from guardrail.ingest import ingest
    from web.app import create_app

    url = f"sqlite:///{tmp_path / 'g.db'}"
    ingest(url, [write(tmp_path / "r.json", result_doc(hardware=HW, run_id="r"))])
    with session_scope(url, write=True) as s:
        wl = s.query(m.Workload).one()
        _alert(s, "b", wl, kind="improvement", change=-0.1, days=1)
    with TestClient(create_app(url)) as c:
        text = _text(_element(c.get("/").text, "p", "headline"))
    assert text == "No open regressions · 1 improvement open"
    from guardrail.store import db as store_db

    store_db.get_engine(url).dispose()


def test_age_words_and_since():
    from datetime import timedelta

    from web.read.overview import _since, age_words

    assert age_words(timedelta(days=1, hours=3)) == "1 day" and age_words(timedelta(days=20)) == "20 days"
    assert age_words(timedelta(hours=5, minutes=9)) == "5 hours" and age_words(timedelta(seconds=5)) == "under a minute"
    assert _since(3.2, "nightly") == " since 3 nights" and _since(1.0, "presubmit") == " since 1 day"
    assert _since(0.25, "nightly") == " for 6 hours" and _since(0.0, "nightly") == ", just detected"
