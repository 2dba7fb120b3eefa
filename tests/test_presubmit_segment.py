"""Presubmit never blames a PR for main (issue 12, point 2): the baseline is the segment of main's history that
holds the merge-base, never across a change on main, and the report names it. On a real store."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from guardrail.check import check_runs, find_runs
from guardrail.history import scan_change_points
from guardrail.ingest import ingest
from guardrail.store import models as m
from guardrail.store.db import session_scope
from guardrail.verdicts import VerdictsDoc, render_text
from tests.factories import noisy_repeats, result_doc, write
from tests.timeline import iso

STEP = 6  # nightly 6 is the first at +3%
LOW, HIGH = 1000.0, 1030.0


def _level(i: int) -> float:
    return HIGH if i >= STEP else LOW


def _nightly(url, tmp_path, i: int, level: float, rng) -> int:
    doc = result_doc(
        lane="nightly",
        commit=f"main{i:02d}",
        started_at=iso(days=-20 + i, hours=-9),
        run_id=f"n{i}",
        metrics={"denoise_step_latency": noisy_repeats(level, repeats=3, between_cv=0.002, within_cv=0.002, rng=rng)},
    )
    return ingest(url, [write(tmp_path / f"n{i}.json", doc)]).run_ids[0]


def _main_with_a_step(url, tmp_path, *, check: bool = False) -> list[int]:
    """Ten nightlies on main, +3% from nightly 6 on; each checked (raising the nightly lane's alerts) if asked."""
    rng = np.random.default_rng(3)
    run_ids = []
    for i in range(10):
        run_ids.append(_nightly(url, tmp_path, i, _level(i), rng))
        if check:
            _check(url, run_ids[-1])
    return run_ids


def _scan(url) -> list[m.Alert]:
    with session_scope(url, write=True) as s:
        scan_change_points(s, lane="nightly")
    with session_scope(url) as s:
        return list(s.scalars(select(m.Alert)))


def _pr(url, tmp_path, *, base: str, level: float, name: str) -> int:
    rng = np.random.default_rng(11)
    doc = result_doc(
        lane="presubmit",
        commit=f"feature-{name}",
        branch="feature",
        pr=7,
        started_at=iso(days=-1),
        run_id=f"pr-{name}",
        metrics={"denoise_step_latency": noisy_repeats(level, repeats=2, between_cv=0.002, within_cv=0.002, rng=rng)},
    )
    doc["run"]["source"]["base_commit"] = base
    return ingest(url, [write(tmp_path / f"pr-{name}.json", doc)]).run_ids[0]


def _check(url, run_id) -> dict:
    with session_scope(url, write=True) as s:
        return check_runs(s, find_runs(s, run_id=run_id, commit=None, lane=None)).to_dict()


def _row(doc) -> dict:
    return next(v for v in doc["verdicts"] if v["metric"] == "denoise_step_latency")


def _window(doc) -> dict:
    (window,) = doc["baseline"]["windows"]
    return window


def test_pr_at_main_head_is_judged_after_the_step_on_main(db_url, tmp_path):
    _main_with_a_step(db_url, tmp_path)
    # Without the change known, the ten nightlies at the merge-base straddle the step: the PR is blamed.
    blamed = _check(db_url, _pr(db_url, tmp_path, base="main09", level=HIGH, name="before-scan"))
    assert _row(blamed)["verdict"] == "regression"
    alerts = _scan(db_url)
    (step,) = [a for a in alerts if a.dedup_key.startswith("changepoint:")]
    assert step.to_commit == f"main{STEP:02d}"

    doc = _check(db_url, _pr(db_url, tmp_path, base="main09", level=HIGH, name="at-head"))
    row = _row(doc)
    assert row["verdict"] in ("no_change", "inconclusive"), row
    assert row["baseline"]["runs"] == 10 - STEP  # main06..main09, the runs after the step
    assert row["explanation"].startswith(f"main already regressed here: alert #{step.id}")
    window = _window(doc)
    assert window["runs"] == 10 - STEP and window["since_alert"] == step.id
    assert (window["from_commit"], window["to_commit"]) == ("main06", "main09")
    assert window["first_at"] < window["last_at"] and window["main_alerts"] == [step.id]
    assert f"since the change at main06 (alert #{step.id} of denoise_step_latency)" in doc["baseline"]["source"]
    assert doc["status"] == "success"
    lines = render_text(VerdictsDoc.model_validate(doc)).splitlines()
    assert lines[1].startswith(f"  baseline: 4 runs main06..main09 ({window['first_at'][:10]}..")
    assert lines[1].endswith(f", since the change at main06 (alert #{step.id})")
    assert (
        lines[2]
        == f"  main already regressed here: alert #{step.id} (judged against main after it, not blamed on this run)"
    )
    # The PR comment names the same baseline and main's alert.
    from guardrail.reports.markdown import render_markdown

    md = render_markdown(VerdictsDoc.model_validate(doc))
    # "#1" is defused (a zero-width space after `#`): GitHub would link it to the repository's issue 1.
    assert "baseline: 4 runs main06..main09" in md and f"since the change at main06 (alert #\u200b{step.id})" in md
    assert f"main already regressed here: alert #\u200b{step.id}" in md


def test_pr_based_before_the_step_is_judged_against_the_runs_before_it(db_url, tmp_path):
    _main_with_a_step(db_url, tmp_path)
    _scan(db_url)
    for base, runs in (("main05", 6), ("main03", 4)):
        doc = _check(db_url, _pr(db_url, tmp_path, base=base, level=LOW, name=base))
        row = _row(doc)
        assert row["baseline"]["runs"] == runs and row["verdict"] in ("no_change", "inconclusive"), row
        assert "main already regressed" not in row["explanation"]  # the step is not in the PR's history
        window = _window(doc)
        assert (window["from_commit"], window["to_commit"], window["runs"]) == ("main00", base, runs)
        assert "since_alert" not in window and window["main_alerts"] == []
        assert "since the change" not in doc["baseline"]["source"]


def test_nightly_after_the_step_is_judged_against_the_new_level(db_url, tmp_path):
    _main_with_a_step(db_url, tmp_path)
    (step,) = _scan(db_url)
    rng = np.random.default_rng(5)
    doc = _check(db_url, _nightly(db_url, tmp_path, 10, HIGH, rng))
    row = _row(doc)
    assert row["verdict"] in ("no_change", "inconclusive") and row["baseline"]["runs"] == 10 - STEP, row
    assert "main already regressed" not in row["explanation"]  # main's own check: its alerts say so
    assert _window(doc)["since_alert"] == step.id


def test_an_invalid_change_point_splits_nothing(sqlite_url, tmp_path):
    _main_with_a_step(sqlite_url, tmp_path)
    _scan(sqlite_url)
    with session_scope(sqlite_url, write=True) as s:
        s.scalars(select(m.Alert)).one().state = "invalid"
    doc = _check(sqlite_url, _pr(sqlite_url, tmp_path, base="main09", level=LOW, name="invalid"))
    assert _row(doc)["baseline"]["runs"] == 10 and "since_alert" not in _window(doc)


def test_an_open_alert_of_main_checks_splits_the_presubmit_history(db_url, tmp_path):
    """Before any change-point scan: the nightly checks raised an alert for the step; a PR based after it is
    judged against main after it and told so, not blamed."""
    _main_with_a_step(db_url, tmp_path, check=True)
    with session_scope(db_url) as s:
        open_alerts = [a for a in s.scalars(select(m.Alert)) if a.state == "untriaged"]
        assert open_alerts and all(a.kind == "regression" for a in open_alerts)
        first = min(open_alerts, key=lambda a: a.to_commit or "")
        first_id, first_commit = first.id, first.to_commit
    doc = _check(db_url, _pr(db_url, tmp_path, base="main09", level=HIGH, name="open"))
    row = _row(doc)
    assert row["verdict"] != "regression" and doc["status"] == "success", row
    assert "main already regressed here: alert #" in row["explanation"]
    assert first_commit is not None and first_commit >= f"main{STEP:02d}"
    assert first_id in [a for w in doc["baseline"]["windows"] for a in w["main_alerts"]]


def test_a_confirmed_alert_of_main_checks_re_anchors_the_nightly(sqlite_url, tmp_path):
    """Untriaged, a nightly check's own alert splits nothing for the nightly lane; confirmed, it does."""
    _main_with_a_step(sqlite_url, tmp_path, check=True)
    rng = np.random.default_rng(5)
    with session_scope(sqlite_url, write=True) as s:
        alert = min((a for a in s.scalars(select(m.Alert)) if a.state == "untriaged"), key=lambda a: a.id)
        alert_id, since = alert.id, alert.to_commit
    before = _check(sqlite_url, _nightly(sqlite_url, tmp_path, 10, HIGH, rng))
    assert _row(before)["baseline"]["runs"] == 10 and "since_alert" not in _window(before)
    with session_scope(sqlite_url, write=True) as s:
        s.get(m.Alert, alert_id).state = "confirmed"
    after = _check(sqlite_url, _nightly(sqlite_url, tmp_path, 11, HIGH, rng))
    window = _window(after)
    assert window["since_alert"] == alert_id and window["from_commit"] == since
    assert _row(after)["verdict"] != "regression"


def test_a_bisected_main_alert_names_its_culprit_in_the_pr_report(db_url, tmp_path):
    """Once `guardrail bisect` found the commit behind main's alert, the PR's report says which one."""
    from guardrail.reports.markdown import render_markdown
    from guardrail.store import models as m

    _main_with_a_step(db_url, tmp_path)
    (step,) = [a for a in _scan(db_url) if a.dedup_key.startswith("changepoint:")]
    culprit = f"main{STEP:02d}"
    with session_scope(db_url, write=True) as s:
        s.add(
            m.Bisection(
                alert_id=step.id,
                workload="w",
                metric="denoise_step_latency",
                good="main05",
                bad=culprit,
                commits=["main05", culprit],
                dispatch="local",
                state="culprit",
                culprit=culprit,
                low=0,
                high=1,
            )
        )
    doc = _check(db_url, _pr(db_url, tmp_path, base="main09", level=HIGH, name="after-bisect"))
    assert doc["baseline"]["culprits"] == {str(step.id): culprit}
    md = render_markdown(VerdictsDoc.model_validate(doc))
    assert f"main already regressed here: alert #\u200b{step.id} (bisected to {culprit})" in md
