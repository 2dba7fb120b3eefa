"""One judgement: `check` (stored history) and `compare` (the same result files) give the same verdicts, looks
and cold-start references included; an informational regression alone never fails anything."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np

from guardrail.analysis.judgement import SeriesInput, judge
from guardrail.check import check_runs, find_runs
from guardrail.compare_files import compare_files
from guardrail.ingest import ingest
from guardrail.ingest.reference import load_reference_yaml
from guardrail.policy import REFERENCE_DIR, Policy, load_lane_policy
from guardrail.reports.markdown import derive_status, doc_status, render_markdown
from guardrail.store.db import session_scope
from guardrail.verdicts import BaselineInfo, status_of
from guardrail.vocabulary import VERDICTS
from tests.factories import noisy_repeats, result_doc, write
from tests.timeline import iso

COLD = "test_wan22_i2v_single_device/832x480_frames81_steps4"  # has pinned reference values on H100


def _history(tmp_path, rng, n=10):
    return [
        write(
            tmp_path / f"nightly{i}.json",
            result_doc(
                lane="nightly",
                commit=f"main{i:02d}",
                started_at=iso(days=-20 + i),
                run_id=f"n{i}",
                metrics={
                    "denoise_step_latency": noisy_repeats(1000.0, repeats=3, rng=rng),
                    "peak_memory": [[11776.0]] * 3,
                    "load_time": noisy_repeats(100.0, repeats=3, rng=rng),
                },
            ),
        )
        for i in range(n)
    ]


def _presubmit(tmp_path, rng, name, *, level, repeats=2):
    doc = result_doc(
        lane="presubmit",
        commit="feature1",
        branch="feature",
        pr=7,
        started_at=iso(days=-2),
        run_id="pr-1",
        metrics={
            "denoise_step_latency": noisy_repeats(level, repeats=repeats, rng=rng),
            "peak_memory": [[11776.0]] * repeats,
            "load_time": noisy_repeats(150.0, repeats=repeats, rng=rng),
        },
    )
    doc["run"]["source"]["base_commit"] = "main09"
    return write(tmp_path / name, doc)


def _cold_start(tmp_path):
    """A result of a workload with pinned reference values and no history: its latency_mean starts from them."""
    ref = next(r for r in load_reference_yaml(REFERENCE_DIR) if r.workload == COLD and r.metric == "latency_mean")
    doc = result_doc(
        lane="presubmit",
        workload=COLD,
        commit="feature1",
        branch="feature",
        pr=7,
        started_at=iso(days=-2),
        run_id="pr-1",
        metrics={"latency_mean": [[ref.value * 1.002]], "latency_p95": [[40.0]]},
    )
    doc["workload"]["spec"] = dict(ref.dims)
    for metric in doc["metrics"]:
        metric.update(unit="s", summary="mean")
    doc["run"]["source"]["base_commit"] = "main09"
    return write(tmp_path / "cold.json", doc)


def _rows(doc):
    rows = [{k: v for k, v in row.items() if k != "series_id"} for row in doc["verdicts"]]  # no ids in files
    return sorted(rows, key=lambda r: (r["workload"], r["metric"], r["hardware"]))


def test_check_and_compare_agree_on_the_same_history(db_url, tmp_path):
    rng = np.random.default_rng(3)
    history = _history(tmp_path, rng)
    candidates = [
        _presubmit(tmp_path, rng, "pr.json", level=1020.0),
        _presubmit(tmp_path, rng, "rerun.json", level=1020.0, repeats=4),  # a second look of the same workload
        _cold_start(tmp_path),
    ]
    ingest(db_url, history)
    (run_id,) = set(ingest(db_url, candidates).run_ids)
    with session_scope(db_url) as s:
        checked = check_runs(s, find_runs(s, run_id=run_id, commit=None, lane=None), store=False).to_dict()
    compared = compare_files(history, candidates, load_lane_policy("presubmit")).to_dict()

    assert _rows(checked) == _rows(compared)
    for key in ("summary", "errors", "expected_false_alarms", "fdr_method", "status"):
        assert checked[key] == compared[key], key
    by = {(r["workload"], r["metric"], r["hardware"]): r for r in _rows(compared)}
    looked = by[("wan22-ti2v-5b-720p", "denoise_step_latency", "H100")]
    assert looked["candidate"]["repeats"] == 6 and "look 2 of 3" in looked["explanation"], looked
    assert by[(COLD, "latency_mean", "H100")]["verdict"] != "missing"
    assert by[(COLD, "latency_p95", "H100")]["verdict"] == "missing"
    assert "pinned reference values (cold start)" in checked["baseline"]["source"]
    assert compared["baseline"] == {"source": "files; pinned reference values (cold start)", "runs": 10}


def test_an_informational_regression_alone_passes_everywhere(tmp_path):
    rng = np.random.default_rng(5)
    base = write(tmp_path / "base.json", result_doc(metrics={"load_time": noisy_repeats(100.0, repeats=3, rng=rng)}))
    cand = write(
        tmp_path / "cand.json",
        result_doc(started_at=iso(days=-1), metrics={"load_time": noisy_repeats(150.0, repeats=3, rng=rng)}),
    )
    policy = Policy(lane="nightly", informational=["load_time"])
    doc = compare_files([base], [cand], policy)
    (row,) = doc.verdicts
    assert row.verdict == "regression" and row.informational
    assert doc.status == "success" and status_of(doc.verdicts, doc.errors) == "success"
    stored = doc.to_dict()
    assert doc_status(stored) == "success" and "No performance regression" in render_markdown(stored)
    unstated = copy.deepcopy(stored)
    unstated.pop("status")
    assert derive_status(unstated) == "success" and doc_status(unstated) == "success"
    cli = [sys.executable, "-m", "guardrail", "compare", "--baseline", str(base), "--candidate", str(cand)]
    text = subprocess.run(cli, capture_output=True, text=True)  # the nightly policy: load_time is informational
    assert text.returncode == 0 and "PASS" in text.stdout and "(info)" in text.stdout, text.stdout + text.stderr
    as_json = json.loads(subprocess.run([*cli, "--format", "json"], capture_output=True, text=True).stdout)
    assert as_json["status"] == "success" and as_json["verdicts"][0]["verdict"] == "regression"


def test_judge_takes_plain_numbers():
    rng = np.random.default_rng(1)
    runs = [noisy_repeats(100.0, repeats=2, rng=rng) for _ in range(8)]
    same = SeriesInput("w", "latency", "H100", "ms", "lower_is_better", candidate=noisy_repeats(100.0, rng=rng))
    doc = judge(
        [
            SeriesInput(**{**same.__dict__, "baseline": runs, "history": runs}),
            SeriesInput(**{**same.__dict__, "metric": "p99"}),  # no baseline, no reference: fail closed
            SeriesInput(**{**same.__dict__, "metric": "mean", "reference": 100.0, "summary": True}),
        ],
        Policy(lane="x"),
        baseline=BaselineInfo(source="test"),
    )
    assert [v.verdict for v in doc.verdicts][1] == "missing" and doc.status == "failure"
    assert doc.verdicts[2].baseline.runs == 1 and doc.verdicts[2].verdict != "missing"
    assert doc.summary is not None and list(doc.summary) == list(VERDICTS) and sum(doc.summary.values()) == 3
