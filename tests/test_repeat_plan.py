"""Planned repeats: a run starts with enough fresh processes that the check resolves its threshold without a
rerun — more only where the history is noisy (bimodal clock states), never where repeats would not help."""

from __future__ import annotations

import json

import numpy as np
import pytest

from guardrail.analysis.repeat_plan import MIN_PLAN_RUNS, plan_repeats, resolve_se_budget
from guardrail.ingest import ingest
from tests.cli_inprocess import run_cli
from tests.factories import noisy_repeats, result_doc, write
from tests.timeline import iso

STEPS = 20


def _history(rng, *, runs=30, repeats=2, between=0.005, within=0.005, bimodal=0.0, night=0.0):
    """Newest first: runs -> repeats -> steps around 100 ms (log-normal), as the check reads a series."""
    out = []
    for _ in range(runs):
        level = rng.normal(0.0, night)
        proc = bimodal * (rng.random(repeats) < 0.5) if bimodal else rng.normal(0.0, between, repeats)
        steps = rng.normal(0.0, within, (repeats, STEPS))
        out.append((100.0 * np.exp(level + proc[:, None] + steps)).tolist())
    return out


def _plan(history, **kw):
    return plan_repeats(history, window=10, threshold=0.01, min_repeats=2, max_repeats=12, **kw)


def test_budget_is_the_threshold_over_the_normal_quantile():
    assert resolve_se_budget(0.01) == pytest.approx(np.log1p(0.01) / 1.959964, rel=1e-6)
    assert resolve_se_budget(0.02) > resolve_se_budget(0.01)


def test_quiet_process_noise_keeps_the_lanes_repeats():
    rng = np.random.default_rng(3)
    plans = [_plan(_history(rng, between=0.0026, within=0.013)) for _ in range(10)]
    assert all(p.repeats == 2 for p in plans)
    assert all(p.se is not None and p.se <= p.budget for p in plans)
    assert "lane's repeats" in plans[0].reason


def test_bimodal_processes_get_more_repeats_and_then_resolve():
    rng = np.random.default_rng(4)
    plans = [_plan(_history(rng, bimodal=0.015)) for _ in range(10)]
    assert sum(p.repeats > 2 for p in plans) >= 8  # 2 leave se ~0.6-0.7%, over the 0.51% budget, mostly
    resolved = [p for p in plans if p.se is not None and p.se <= p.budget]
    assert len(resolved) >= 8
    assert all(f"{p.repeats} repeats resolve" in p.reason for p in resolved if p.repeats > 2)


def test_run_to_run_noise_is_not_bought_off_with_repeats():
    # Nights differ by 2% while processes inside a night agree: no number of repeats resolves 1%, and the plan
    # stops where one more repeat would narrow the interval by less than 10% of its floor.
    rng = np.random.default_rng(5)
    p = _plan(_history(rng, between=0.001, within=0.002, night=0.02))
    assert p.repeats == 2
    assert p.se is not None and p.se > p.budget
    assert "more would not help" in p.reason


def test_short_history_plans_nothing():
    rng = np.random.default_rng(6)
    p = _plan(_history(rng, runs=MIN_PLAN_RUNS - 1, bimodal=0.015))
    assert (p.repeats, p.se) == (2, None)
    assert f"{MIN_PLAN_RUNS - 1} history runs" in p.reason


def test_bounds_are_checked():
    with pytest.raises(ValueError):
        plan_repeats([], window=10, threshold=0.01, min_repeats=3, max_repeats=2)


def _store(url, tmp_path, rng):
    files = []
    for i in range(20):
        clock = 1.0 + 0.015 * (rng.random(2) < 0.5)  # each process in a fast or a slow clock state
        reps = noisy_repeats(1000.0, repeats=2, between_cv=0.0005, within_cv=0.005, rng=rng)
        bimodal = [[v * c for v in rep] for rep, c in zip(reps, clock, strict=True)]
        quiet = noisy_repeats(500.0, repeats=2, between_cv=0.001, within_cv=0.005, rng=rng)
        for name, reps in (("clocky", bimodal), ("steady", quiet)):
            files.append(
                write(
                    tmp_path / f"{name}{i:02d}.json",
                    result_doc(
                        workload=name,
                        commit=f"c{i:03d}",
                        started_at=iso(days=-30 + i),
                        run_id=f"n{i}-{name}",
                        metrics={"denoise_step_latency": reps, "load_time": [[1.0 + i]]},
                    ),
                )
            )
    ingest(url, files)


def test_cli_plans_per_workload_and_run_reads_the_plan(db_url, tmp_path, capsys):
    _store(db_url, tmp_path, np.random.default_rng(7))
    out = tmp_path / "plan.json"
    code, text, err = run_cli(capsys, "plan-repeats", "--lane", "presubmit", "--db", db_url, "--out", str(out))
    assert code == 0, err
    lines = {line.split(" on ")[0]: line for line in text.splitlines() if " on H100" in line}
    assert "(the lane's)" in lines["steady"]
    assert "more than the lane's 2" in lines["clocky"] and "denoise_step_latency" in lines["clocky"]
    doc = json.loads(out.read_text())
    assert doc["schema"] == "guardrail.repeat_plan/v1"
    by = {w["workload"]: w for w in doc["workloads"]}
    assert by["steady"]["repeats"] == 2 and by["clocky"]["repeats"] > 2
    assert {s["metric"] for s in by["clocky"]["series"]} == {"denoise_step_latency"}  # load_time is informational

    from guardrail.cli.run import _read_repeats_plan

    assert _read_repeats_plan(out)[("clocky", "H100")] == by["clocky"]["repeats"]


def test_a_bad_plan_file_is_named_with_its_field(tmp_path, capsys):
    bad = write(tmp_path / "plan.json", {"schema": "guardrail.repeat_plan/v1", "workloads": [{"workload": "w"}]})
    code, _, err = run_cli(
        capsys, "run", "--lane", "presubmit", "--out", str(tmp_path / "o"), "--repeats-plan", str(bad)
    )
    assert code == 2
    assert "plan.json" in err and "$.workloads[0]" in err
    assert not (tmp_path / "o").exists()  # nothing ran, nothing half-written


def test_on_a_cpu_the_wall_time_sizes_no_plan(db_url, tmp_path, capsys):
    """On a CPU result the lane's `informational_on: {cpu: [...]}` makes wall time informational: a bimodal wall-time
    series must not buy repeats there; the steady step/calibration ratio it sits beside sets the plan."""
    rng = np.random.default_rng(11)
    files = []
    for i in range(20):
        clock = 1.0 + 0.015 * (rng.random(2) < 0.5)
        reps = noisy_repeats(1000.0, repeats=2, between_cv=0.0005, within_cv=0.005, rng=rng)
        wall = [[v * c for v in rep] for rep, c in zip(reps, clock, strict=True)]
        ratio = noisy_repeats(9.0, repeats=2, between_cv=0.001, within_cv=0.005, rng=rng)
        metrics = {"denoise_step_latency": wall, "denoise_step_relative": ratio}
        doc = result_doc(workload="tiny-cpu", hardware="cpu-test", commit=f"c{i:03d}", started_at=iso(days=-30 + i),
                         run_id=f"n{i}", metrics=metrics)  # fmt: skip
        doc["environment"]["device_type"] = "cpu"
        files.append(write(tmp_path / f"r{i:02d}.json", doc))
    ingest(db_url, files)
    out = tmp_path / "plan.json"
    code, _, err = run_cli(capsys, "plan-repeats", "--lane", "presubmit", "--db", db_url, "--out", str(out))
    assert code == 0, err
    (w,) = json.loads(out.read_text())["workloads"]
    assert {s["metric"] for s in w["series"]} == {"denoise_step_relative"} and w["repeats"] == 2
