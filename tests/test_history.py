"""Stored history: per-run points, noise per series, and change points on main becoming deduplicated alerts."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from sqlalchemy import select

from guardrail.history import noise_rows, scan_change_points, series_points
from guardrail.ingest import ingest
from guardrail.store import models as m
from guardrail.store.db import session_scope
from tests.factories import noisy_repeats, result_doc, write


def _history(url, tmp_path, levels):
    rng = np.random.default_rng(0)
    files = []
    for i, level in enumerate(levels):
        files.append(
            write(
                tmp_path / f"n{i:03d}.json",
                result_doc(
                    lane="nightly",
                    commit=f"c{i:03d}",
                    started_at=f"2026-10-{1 + i:02d}T03:00:00Z",
                    run_id=f"n{i}",
                    metrics={
                        "denoise_step_latency": noisy_repeats(level, repeats=3, rng=rng),
                        "e2e_latency": noisy_repeats(level * 50, repeats=3, steps=1, rng=rng),
                    },
                ),
            )
        )
    ingest(url, files)


def test_step_change_becomes_one_alert_for_the_workload(db_url, tmp_path):
    _history(db_url, tmp_path, [1000.0] * 15 + [1050.0] * 10)
    with session_scope(db_url, write=True) as s:
        created = scan_change_points(s)
        assert len(created) == 1  # two metrics moved at the same commit: one alert
        alert = created[0]
        assert (alert.from_commit, alert.to_commit) == ("c014", "c015")
        assert {x["metric"] for x in alert.metrics} == {"denoise_step_latency", "e2e_latency"}
        assert 0.03 < alert.change < 0.07
    with session_scope(db_url, write=True) as s:
        assert scan_change_points(s) == []  # already known: not raised again


def test_flat_history_raises_nothing(db_url, tmp_path):
    _history(db_url, tmp_path, [1000.0] * 20)
    with session_scope(db_url, write=True) as s:
        assert scan_change_points(s) == []
        assert s.scalars(select(m.Alert)).all() == []


def test_series_points_and_noise(sqlite_url, tmp_path):
    _history(sqlite_url, tmp_path, [1000.0] * 12)
    with session_scope(sqlite_url) as s:
        series = s.scalars(select(m.Series).where(m.Series.metric == "denoise_step_latency")).one()
        pts = series_points(s, series.id, lanes=["nightly"])
        assert len(pts) == 12 and pts[0].commit == "c000" and pts[0].repeats == 3
        assert all(p.low <= p.value <= p.high for p in pts)
        rows = dict(noise_rows(s))
        report = rows["wan22-ti2v-5b-720p/denoise_step_latency@H100"]
        assert 0.001 < report.between_cv < 0.02


def test_cli_changepoints_and_noise(sqlite_url, tmp_path):
    _history(sqlite_url, tmp_path, [1000.0] * 15 + [1100.0] * 10)
    out = subprocess.run(
        [sys.executable, "-m", "guardrail", "changepoints", "--format", "json", "--db", sqlite_url],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    alerts = json.loads(out.stdout)["new_alerts"]
    assert len(alerts) == 1 and alerts[0]["commit_range"] == ["c014", "c015"]
    noise = subprocess.run(
        [sys.executable, "-m", "guardrail", "noise", "--format", "json", "--db", sqlite_url],
        capture_output=True,
        text=True,
    )
    assert noise.returncode == 0 and "denoise_step_latency" in noise.stdout
