"""guardrail.frames on real SQLite and PostgreSQL stores filled by real ingest and check: columns, row counts,
values."""

from __future__ import annotations

import numpy as np
import pytest

from guardrail import frames
from guardrail.store import models as m
from guardrail.store.db import session_scope
from tests.factories import result_doc, write
from tests.timeline import NOW, iso

FORMULA_WORKLOAD = '=HYPERLINK("http://x")'


def fill(url: str, tmp) -> dict[int, str]:
    """Five nightlies on main (two repeats each, the last one 10% slower), one PR run, one failed result."""
    from guardrail.check import check_runs
    from guardrail.ingest import ingest

    files = []
    for night in range(5):
        level = 100.0 * (1.10 if night == 4 else 1.0)
        doc = result_doc(
            workload=FORMULA_WORKLOAD,
            commit=f"{night:02d}" + "cd" * 19,
            started_at=iso(days=night - 10),
            run_id=f"n{night}",
            metrics={"denoise_step_latency": [[level, level + 1, level + 2], [level + 2, level + 3, level + 4]]},
        )
        files.append(write(tmp / f"n{night}.json", doc))
    pr = result_doc(commit="ee" * 20, lane="presubmit", branch="feature", pr=7, started_at=iso(days=-3), run_id="p")
    files.append(write(tmp / "pr.json", pr))
    bad = result_doc(
        workload="broken", commit="ff" * 20, started_at=iso(days=-2), run_id="b", status="failed",
        error={"kind": "oom", "message": "out of memory"}, metrics={},
    )  # fmt: skip
    files.append(write(tmp / "bad.json", bad))
    ingest(url, files)
    with session_scope(url, write=True) as s:
        runs = {r.ci_run_id: r for r in s.query(m.Run)}
        check_runs(s, [runs["n4"]])
        return {r.id: k for k, r in runs.items()}


@pytest.fixture
def store(db_url, tmp_path):
    return db_url, fill(db_url, tmp_path)


def test_series_frame(store):
    url, _ = store
    df = frames.series(url, workload=FORMULA_WORKLOAD)
    assert list(df.columns) == frames.SERIES_COLUMNS
    assert len(df) == 5
    assert list(df["commit"]) == [f"{n:02d}" + "cd" * 19 for n in range(5)]  # oldest first
    # The value is the median of the repeats' medians (101, 103): 102; the last night's 112.
    assert df["value"].tolist() == pytest.approx([102.0] * 4 + [112.0])
    assert df["minimum"].iloc[0] == pytest.approx(101.0) and df["maximum"].iloc[0] == pytest.approx(103.0)
    assert (df["repeats"] == 2).all() and (df["unit"] == "ms").all()
    assert str(df["time"].dt.tz) == "UTC" and df["time"].max() < NOW
    assert frames.series(url, lane="presubmit")["pr"].tolist() == [7]
    assert len(frames.series(url, metric="no-such-metric")) == 0
    assert list(frames.series(url, metric="no-such-metric").columns) == frames.SERIES_COLUMNS


def test_runs_frame(store):
    url, ids = store
    df = frames.runs(url)
    assert list(df.columns) == frames.RUNS_COLUMNS
    assert len(df) == 7
    assert df["time"].is_monotonic_decreasing
    failed = df[df["failed_results"] > 0]
    assert [ids[r] for r in failed["run_id"]] == ["b"]
    assert len(frames.runs(url, lane="presubmit")) == 1
    assert frames.runs(url, pr=7)["branch"].tolist() == ["feature"]
    assert df["pr"].dtype.name == "Int64"


def test_verdicts_and_alerts_frames(store):
    url, ids = store
    run = next(r for r, k in ids.items() if k == "n4")
    df = frames.verdicts(url, run)
    assert list(df.columns) == frames.VERDICTS_COLUMNS
    assert len(df) == 1
    row = df.iloc[0]
    assert row["workload"] == FORMULA_WORKLOAD and row["metric"] == "denoise_step_latency"
    assert row["candidate_median"] == pytest.approx(112.0) and row["baseline_median"] == pytest.approx(102.0)
    assert np.isfinite(row["change"]) and row["change"] > 0.05
    assert len(frames.verdicts(url, run + 1000)) == 0
    alerts = frames.alerts(url)
    assert list(alerts.columns) == frames.ALERTS_COLUMNS
    assert row["verdict"] == "regression" and row["check_status"] == "failure"
    assert alerts["workload"].tolist() == [FORMULA_WORKLOAD]
    assert alerts["metrics"].tolist() == ["denoise_step_latency"] and alerts["state"].tolist() == ["untriaged"]
    assert [ids[r] for r in alerts["run_id"]] == ["n4"]
    assert len(frames.alerts(url, state="no-such-state")) == 0
