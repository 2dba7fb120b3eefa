"""`check` on a real database: baseline selection by policy, verdicts stored, exit codes, alerts."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from sqlalchemy import select

from guardrail.check import check_runs, find_runs
from guardrail.ingest import ingest
from guardrail.store import models as m
from guardrail.store.db import session_scope
from tests.factories import noisy_repeats, result_doc, write
from tests.timeline import iso


def _nightlies(url, tmp_path, n=10, level=1000.0, seed=0, hardware="H100"):
    rng = np.random.default_rng(seed)
    files = [
        write(
            tmp_path / f"n{hardware}{i}.json",
            result_doc(
                lane="nightly",
                hardware=hardware,
                commit=f"main{i:02d}",
                started_at=f"2026-11-{i + 1:02d}T03:00:00Z",
                run_id=f"n{i}",
                metrics={
                    "denoise_step_latency": noisy_repeats(level, repeats=3, rng=rng),
                    "peak_memory": [[11776.0], [11776.0], [11776.0]],
                },
            ),
        )
        for i in range(n)
    ]
    ingest(url, files)


def _presubmit(url, tmp_path, level, *, seed=1, base="main09", name="pr.json", hardware="H100", **kw):
    rng = np.random.default_rng(seed)
    doc = result_doc(
        lane="presubmit",
        hardware=hardware,
        commit="feature1",
        branch="feature",
        pr=7,
        started_at=iso(days=-2),
        run_id=f"pr-{name}",
        metrics={
            "denoise_step_latency": noisy_repeats(level, repeats=2, rng=rng),
            "peak_memory": [[11776.0], [11776.0]],
        },
        **kw,
    )
    doc["run"]["source"]["base_commit"] = base
    return ingest(url, [write(tmp_path / name, doc)]).run_ids[0]


def _check(url, run_id):
    with session_scope(url, write=True) as s:
        return check_runs(s, find_runs(s, run_id=run_id, commit=None, lane=None)).to_dict()


def _verdict(doc, metric="denoise_step_latency"):
    return next(v for v in doc["verdicts"] if v["metric"] == metric)


def test_same_level_passes_and_is_stored(db_url, tmp_path):
    _nightlies(db_url, tmp_path)
    run_id = _presubmit(db_url, tmp_path, 1000.0)
    doc = _check(db_url, run_id)
    v = _verdict(doc)
    assert v["verdict"] in ("no_change", "inconclusive"), v
    assert v["baseline"]["runs"] == 10 and v["candidate"]["repeats"] == 2
    assert doc["status"] == "success"
    assert "merge-base main09" in doc["baseline"]["source"]
    with session_scope(db_url) as s:
        check = s.scalars(select(m.Check)).one()
        assert check.status == "success" and len(check.verdicts) == 2
        assert check.doc["check_id"] == check.id


def test_ten_percent_slower_is_a_regression(db_url, tmp_path):
    _nightlies(db_url, tmp_path)
    run_id = _presubmit(db_url, tmp_path, 1100.0)
    doc = _check(db_url, run_id)
    v = _verdict(doc)
    assert v["verdict"] == "regression" and 0.07 < v["change"] < 0.13
    assert v["ci"][0] > 0.01 and doc["status"] == "failure"
    assert _verdict(doc, "peak_memory")["verdict"] == "no_change"


def test_merge_base_limits_the_history(db_url, tmp_path):
    _nightlies(db_url, tmp_path)
    run_id = _presubmit(db_url, tmp_path, 1000.0, base="main04")
    assert _verdict(_check(db_url, run_id))["baseline"]["runs"] == 5


def test_other_hardware_is_not_a_baseline(db_url, tmp_path):
    _nightlies(db_url, tmp_path, hardware="A3")
    run_id = _presubmit(db_url, tmp_path, 1000.0)
    doc = _check(db_url, run_id)
    assert {v["verdict"] for v in doc["verdicts"]} == {"missing"}
    assert doc["status"] == "failure"  # fail closed


def test_infra_error_is_never_a_regression(db_url, tmp_path):
    _nightlies(db_url, tmp_path)
    run_id = _presubmit(
        db_url,
        tmp_path,
        1000.0,
        status="infra_error",
        error={"kind": "device_lost", "message": "HCCL timeout"},
    )
    doc = _check(db_url, run_id)
    assert doc["verdicts"] == [] and doc["errors"][0]["kind"] == "device_lost"
    assert doc["status"] == "error"


def test_nightly_regression_raises_one_alert_per_workload(db_url, tmp_path):
    _nightlies(db_url, tmp_path)
    rng = np.random.default_rng(5)
    f = write(
        tmp_path / "late.json",
        result_doc(
            lane="nightly",
            commit="main10",
            started_at=iso(days=-1, hours=-9),
            run_id="n10",
            metrics={
                "denoise_step_latency": noisy_repeats(1100, repeats=3, rng=rng),
                "e2e_latency": [[5500.0]] * 3,
            },
        ),
    )
    run_id = ingest(db_url, [f]).run_ids[0]
    _check(db_url, run_id)
    _check(db_url, run_id)  # checking twice does not duplicate the alert
    with session_scope(db_url) as s:
        alerts = s.scalars(select(m.Alert)).all()
        assert len(alerts) == 1 and alerts[0].kind == "regression" and alerts[0].to_commit == "main10"
        assert [x["metric"] for x in alerts[0].metrics] == ["denoise_step_latency"]


def test_release_uses_the_pinned_run(sqlite_url, tmp_path):
    _nightlies(sqlite_url, tmp_path, n=3)
    env = {"GUARDRAIL_DB": sqlite_url}
    cli = [sys.executable, "-m", "guardrail"]
    pin = subprocess.run(
        [*cli, "baseline", "pin", "--run", "2", "--reason", "v1.0 release", "--author", "rel-eng"],
        env={**_env(), **env},
        capture_output=True,
        text=True,
    )
    assert pin.returncode == 0, pin.stderr
    rng = np.random.default_rng(3)
    rc = write(
        tmp_path / "rc.json",
        result_doc(
            lane="release",
            commit="rc1",
            started_at=iso(days=-1, hours=-9),
            run_id="rc",
            metrics={"denoise_step_latency": noisy_repeats(1000, repeats=3, rng=rng)},
        ),
    )
    run_id = ingest(sqlite_url, [rc]).run_ids[0]
    doc = _check(sqlite_url, run_id)
    assert "pinned run 2 (v1.0 release, by rel-eng)" in doc["baseline"]["source"]
    assert _verdict(doc)["baseline"]["runs"] == 1
    listing = subprocess.run([*cli, "baseline", "list"], env={**_env(), **env}, capture_output=True, text=True)
    assert "v1.0 release" in listing.stdout and "rel-eng" in listing.stdout
    unpin = subprocess.run(
        [*cli, "baseline", "unpin", "--hardware", "H100", "--reason", "superseded"],
        env={**_env(), **env},
        capture_output=True,
        text=True,
    )
    assert unpin.returncode == 0, unpin.stderr
    doc = _check(sqlite_url, run_id)
    assert _verdict(doc)["verdict"] == "missing"


def _env():
    import os

    return {k: v for k, v in os.environ.items() if k != "GUARDRAIL_DB"}


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_cli_check_formats_and_exit_codes(sqlite_url, tmp_path, fmt):
    _nightlies(sqlite_url, tmp_path)
    run_id = _presubmit(sqlite_url, tmp_path, 1100.0)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "guardrail",
            "check",
            "--run",
            str(run_id),
            "--format",
            fmt,
            "--db",
            sqlite_url,
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stderr
    if fmt == "json":
        doc = json.loads(proc.stdout)
        assert doc["schema"] == "guardrail.verdicts/v1" and doc["summary"]["regression"] == 1
    else:
        assert "regression" in proc.stdout.lower()
    by_commit = subprocess.run(
        [sys.executable, "-m", "guardrail", "check", "--commit", "feature1", "--db", sqlite_url],
        capture_output=True,
        text=True,
    )
    assert by_commit.returncode == 1 and "regression" in by_commit.stdout


def test_check_unknown_run_is_bad_input(sqlite_url):
    proc = subprocess.run(
        [sys.executable, "-m", "guardrail", "check", "--run", "999", "--db", sqlite_url],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "no run 999" in proc.stderr


def _regression_then(db_url, tmp_path, later_levels):
    """Ten nightlies at 1000, one at 1100 (alert), then more nightlies at the given levels."""
    _nightlies(db_url, tmp_path)
    rng = np.random.default_rng(9)
    run_ids = []
    for j, level in enumerate([1100.0, *later_levels]):
        f = write(
            tmp_path / f"later{j}.json",
            result_doc(
                lane="nightly",
                commit=f"main{10 + j}",
                started_at=f"2026-11-{21 + j}T03:00:00Z",
                run_id=f"n{10 + j}",
                metrics={"denoise_step_latency": noisy_repeats(level, repeats=3, rng=rng)},
            ),
        )
        run_ids.append(ingest(db_url, [f]).run_ids[0])
        _check(db_url, run_ids[-1])
    return run_ids


def test_alert_resolves_itself_when_the_series_returns(db_url, tmp_path):
    _regression_then(db_url, tmp_path, [1000.0])
    with session_scope(db_url) as s:
        alert = s.scalars(select(m.Alert)).one()
        assert alert.state == "fixed" and alert.updated_by == "guardrail"
        event = s.scalars(select(m.AlertEvent)).one()
        assert "returned to its earlier level" in event.note


def test_expected_change_rebaselines_the_series(sqlite_url, tmp_path):
    _regression_then(sqlite_url, tmp_path, [])
    with session_scope(sqlite_url, write=True) as s:
        s.scalars(select(m.Alert)).one().state = "expected"
    rng = np.random.default_rng(11)
    f = write(
        tmp_path / "after.json",
        result_doc(
            lane="nightly",
            commit="main12",
            started_at=iso(days=3, hours=-9),
            run_id="n12",
            metrics={"denoise_step_latency": noisy_repeats(1100.0, repeats=3, rng=rng)},
        ),
    )
    doc = _check(sqlite_url, ingest(sqlite_url, [f]).run_ids[0])
    v = _verdict(doc)
    assert v["baseline"]["runs"] == 1 and v["verdict"] != "regression"
    assert "since the expected change at main10" in doc["baseline"]["source"]


def test_cold_start_uses_pinned_reference_values(sqlite_url, corpus):
    """A vLLM-Omni nightly file with no history: metrics with a reference value in baselines/reference/ are
    judged against it; the others fail closed."""
    f = corpus / "vllm-omni-nightly/buildkite_nightly_raw/11865"
    wan = next(f.glob("diffusion_result_test_wan22_i2v_vllm_omni_*.json"))
    run_id = ingest(sqlite_url, [wan]).run_ids[0]
    doc = _check(sqlite_url, run_id)
    by = {(v["workload"], v["metric"]): v for v in doc["verdicts"]}
    v = by[("test_wan22_i2v_single_device/832x480_frames81_steps4", "latency_mean")]
    assert v["verdict"] != "missing" and v["baseline"]["runs"] == 1
    assert "pinned reference values (cold start)" in doc["baseline"]["source"]
    assert by[("test_wan22_i2v_single_device/832x480_frames81_steps4", "latency_p95")]["verdict"] == "missing"


def test_latest_verdicts_doc_for_a_commit_and_a_pr(db_url, tmp_path):
    from guardrail.store.queries import latest_verdicts_doc as typed_doc

    def latest_verdicts_doc(url, **kw):  # the JSON-ready document, as `comment` renders it
        doc = typed_doc(url, **kw)
        return None if doc is None else doc.to_dict()

    _nightlies(db_url, tmp_path)
    run_id = _presubmit(db_url, tmp_path, 1100.0)
    assert latest_verdicts_doc(db_url, repo="org/project", pr=None, commit="feature1") is None  # not checked yet
    _check(db_url, run_id)
    by_commit = latest_verdicts_doc(db_url, repo="org/project", pr=None, commit="feature1")
    by_pr = latest_verdicts_doc(db_url, repo="org/project", pr=7, commit=None)
    assert by_commit["run"]["id"] == run_id and by_commit["summary"]["regression"] == 1
    assert by_pr["check_id"] == by_commit["check_id"]
    assert latest_verdicts_doc(db_url, repo="org/project", pr=8, commit=None) is None


def test_first_seen_small_regression_is_confirmed_by_a_rerun(sqlite_url, tmp_path):
    """Presubmit allows 3 looks: a 2% slowdown with 2 repeats asks for more repeats; the rerun's result, appended
    to the same run, is pooled with the first and settles it at the second look's level."""
    _nightlies(sqlite_url, tmp_path)
    run_id = _presubmit(sqlite_url, tmp_path, 1020.0, seed=4)
    first = _verdict(_check(sqlite_url, run_id))
    assert first["verdict"] == "inconclusive" and "must be confirmed (look 1 of 3)" in first["explanation"], first
    assert first["repeats_needed"] >= 2
    rng = np.random.default_rng(8)
    doc = result_doc(
        lane="presubmit",
        commit="feature1",
        branch="feature",
        pr=7,
        started_at=iso(days=-2),
        run_id="pr-pr.json",
        metrics={"denoise_step_latency": noisy_repeats(1020.0, repeats=4, rng=rng)},
    )
    doc["run"]["source"]["base_commit"] = "main09"
    assert ingest(sqlite_url, [write(tmp_path / "rerun.json", doc)]).run_ids == [run_id]
    second = _verdict(_check(sqlite_url, run_id))
    assert second["candidate"]["repeats"] == 6
    assert second["verdict"] == "regression" and "look 2 of 3" in second["explanation"], second


def _nightly(url, tmp_path, name, days, metrics, workload="wan22-ti2v-5b-720p", torch="2.9.0"):
    doc = result_doc(
        lane="nightly", workload=workload, commit=name, started_at=iso(days=days), run_id=name, metrics=metrics
    )
    doc["environment"]["software"]["torch"] = torch
    return ingest(url, [write(tmp_path / f"{name}.json", doc)]).run_ids[0]


def test_a_series_first_nightly_is_new_and_passes(db_url, tmp_path):
    """Issue 12, point 3: no earlier run of the series on main and this hardware: `new`, recorded, exit 0."""
    rng = np.random.default_rng(21)
    metrics = {"denoise_step_latency": noisy_repeats(1000.0, repeats=3, rng=rng), "peak_memory": [[11776.0]] * 3}
    first = _nightly(db_url, tmp_path, "first", -3, metrics)
    doc = _check(db_url, first)
    assert {v["verdict"] for v in doc["verdicts"]} == {"new"} and doc["status"] == "success"
    assert doc["summary"]["new"] == 2 and doc["summary"]["missing"] == 0
    with session_scope(db_url) as s:
        assert s.scalars(select(m.Check)).one().status == "success"
        assert s.scalars(select(m.Alert)).all() == []
    second = _nightly(
        db_url, tmp_path, "second", -2, {"denoise_step_latency": noisy_repeats(1000.0, repeats=3, rng=rng)}
    )
    v = _verdict(_check(db_url, second))
    assert v["verdict"] not in ("new", "missing") and v["baseline"]["runs"] == 1


def test_cli_check_of_a_first_nightly_exits_0(sqlite_url, tmp_path):
    rng = np.random.default_rng(22)
    run_id = _nightly(sqlite_url, tmp_path, "first", -3, {"denoise_step_latency": noisy_repeats(1000.0, rng=rng)})
    proc = subprocess.run(
        [sys.executable, "-m", "guardrail", "check", "--run", str(run_id), "--format", "markdown", "--db", sqlite_url],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "🆕 new" in proc.stdout


def test_a_metric_new_to_a_known_workload_is_new_the_others_are_judged(db_url, tmp_path):
    _nightlies(db_url, tmp_path, n=3)
    rng = np.random.default_rng(23)
    run_id = _nightly(
        db_url,
        tmp_path,
        "main03",
        -1,
        {
            "denoise_step_latency": noisy_repeats(1000.0, repeats=3, rng=rng),
            "vae_decode_latency": noisy_repeats(200.0, repeats=3, rng=rng),
        },
    )
    doc = _check(db_url, run_id)
    assert _verdict(doc, "vae_decode_latency")["verdict"] == "new"
    assert _verdict(doc)["verdict"] not in ("new", "missing") and _verdict(doc)["baseline"]["runs"] == 3
    assert doc["status"] == "success"


def test_history_on_main_without_a_usable_baseline_fails_closed(db_url, tmp_path):
    """Main has history for the series, but none with the pinned software (torch upgraded): `missing`, blocking."""
    _nightlies(db_url, tmp_path, n=3)
    rng = np.random.default_rng(24)
    metrics = {"denoise_step_latency": noisy_repeats(1000.0, repeats=3, rng=rng)}
    doc = _check(db_url, _nightly(db_url, tmp_path, "main03", -1, metrics, torch="2.10.0"))
    assert _verdict(doc)["verdict"] == "missing" and doc["status"] == "failure"


def test_a_short_history_takes_the_noise_prior_of_its_metric_family(db_url, tmp_path):
    """Three other workloads' denoise_step_latency series on this hardware, 8 quiet nightlies each: a new
    workload's +5% against its one earlier nightly is a regression under the family's measured prior (0.5%);
    the same +5% on a metric no other series has stays unresolved under the wide default (2%)."""
    rng = np.random.default_rng(25)
    for w in ("family-a", "family-b", "family-c"):
        for i in range(8):
            level = 1000.0 * (1 + rng.normal(0, 0.003))
            reps = noisy_repeats(level, repeats=1, between_cv=0.0, rng=rng)
            _nightly(db_url, tmp_path, f"{w}-{i}", -30 + i, {"denoise_step_latency": reps}, workload=w)

    def fresh(name, days, factor):
        metrics = {
            "denoise_step_latency": noisy_repeats(1000.0 * factor, repeats=1, between_cv=0.0, rng=rng),
            "vae_decode_latency": noisy_repeats(200.0 * factor, repeats=1, between_cv=0.0, rng=rng),
        }
        return _nightly(db_url, tmp_path, name, days, metrics, workload="fresh")

    fresh("fresh-0", -5, 1.0)
    doc = _check(db_url, fresh("fresh-1", -4, 1.05))
    step, vae = _verdict(doc), _verdict(doc, "vae_decode_latency")
    assert step["baseline"]["runs"] == 1 and step["verdict"] == "regression", step
    assert vae["baseline"]["runs"] == 1 and vae["verdict"] in ("inconclusive", "noisy"), vae
