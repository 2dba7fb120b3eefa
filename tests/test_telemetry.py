"""Node telemetry: the device sampled beside each measured process, its anomalies, and a regression beside one
judged `suspect` and rerun (runners.telemetry; guardrail.check.gather; guardrail.analysis.perf_reruns)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np

from guardrail.analysis.judgement import SeriesInput, judge
from guardrail.analysis.perf_reruns import PerfCandidate, plan_perf_reruns
from guardrail.policy import load_lane_policy
from guardrail.verdicts import BaselineInfo
from runners.telemetry import Sampler, parse_npu_smi, physical_index, result_telemetry, summarise

# `npu-smi info -t common -i 0 -c 0` and `-t usages` as a 910B prints them (keys as the driver writes them)
NPU_COMMON = """\
        NPU ID                         : 0
        Chip Count                     : 1

        Memory Usage Rate(%)           : 6
        HBM Usage Rate(%)              : 2
        Aicore Usage Rate(%)           : 0
        Aicore Freq(MHZ)               : 1800
        Aicore curFreq(MHZ)            : 1800
        Temperature(C)                 : 45
        NPU Real-time Power(W)         : 92.5
"""


def test_npu_smi_output_is_read_loosely():
    out = parse_npu_smi(NPU_COMMON + "        Health Status                  : Warning\n")
    assert out == {
        "hbm_usage_pct": 2.0,
        "aicore_usage_pct": 0.0,
        "freq_mhz": 1800.0,
        "temp_c": 45.0,
        "power_w": 92.5,
        "health": "Warning",
    }


def test_anomalies_are_named_and_normal_power_capping_is_not_one():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        samples = [
            {"sm_mhz": 1980, "reasons": ["SwPowerCap"], "pids": [child.pid]},  # ours, capped under load: fine
            {"sm_mhz": 1200, "reasons": ["HwSlowdown"], "pids": [child.pid, 1]},  # pid 1 is not ours
        ]
        s = summarise("nvml", samples, {"sm_max_mhz": 1980, "ecc_uncorrected": 2, "xid": [79]})
        assert summarise("nvml", samples[:1], {"ecc_uncorrected": 0, "xid": []})["anomalies"] == []
        # host PIDs seen from a container: one is the measured process, two at once are not all ours
        assert summarise("nvml", [{"pids": [999_999_991]}], {})["anomalies"] == []
        assert summarise("nvml", [{"pids": [999_999_991, 999_999_992]}], {})["anomalies"] == [
            "2 processes on the device at once (PIDs of another namespace)"
        ]
    finally:
        child.kill()
        child.wait()
    assert s["anomalies"] == [
        "clocks held down (HwSlowdown) in 50% of samples",
        "another process on the device (pid 1)",
        "2 uncorrected ECC error(s)",
        "XID event(s) 79",
    ]
    assert s["sm_mhz"] == {"min": 1200.0, "median": 1590.0, "max": 1980.0} and s["other_pids"] == [1]
    assert result_telemetry([s, {"source": "nvml", "anomalies": []}])["anomalies"][0].startswith("process 1: clocks")


def test_cpu_and_missing_tools_say_so(monkeypatch):
    with Sampler("cpu") as tel:
        pass
    assert tel.summary == {"source": None, "absent": "no device telemetry on cpu", "anomalies": []}
    monkeypatch.setenv("PATH", "/nonexistent")
    with Sampler("npu") as tel:
        pass
    assert tel.summary["absent"] == "npu-smi is not on PATH"
    assert physical_index("cuda", {"CUDA_VISIBLE_DEVICES": "3,4"}) == 3 and physical_index("cuda", {}) == 0


def test_npu_smi_is_sampled_while_the_process_runs(tmp_path, monkeypatch):
    """A stand-in `npu-smi` on PATH (the real tool's command line and output shape) answers the sampler."""
    tool = tmp_path / "npu-smi"
    tool.write_text(
        "#!/bin/sh\n"
        f'echo "$3" >> {tmp_path}/calls\n'
        'case "$3" in\n'
        f"  common|usages) cat <<'EOF'\n{NPU_COMMON}EOF\n;;\n"
        "  proc-mem) echo '        Process id : 1'; echo '        Process memory(MB) : 1024';;\n"
        "  health) echo '        Health Status : OK';;\n"
        "esac\n"
    )
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    # the measured process lasts until two samples are taken (each calls proc-mem once): a loaded machine's slow
    # stand-in tool cannot make it end first; bounded by a count of naps, not by a clock
    calls = tmp_path / "calls"
    calls.touch()
    waits = (
        "import pathlib, time\n"
        f"calls = pathlib.Path({str(calls)!r})\n"
        "for _ in range(3000):\n"
        "    if calls.read_text().count('proc-mem') >= 2: break\n"
        "    time.sleep(0.01)\n"
    )
    with Sampler("npu", interval_s=0.05) as tel:
        subprocess.run([sys.executable, "-c", waits], check=True)
    s = tel.summary
    assert s["source"] == "npu-smi" and s["samples"] >= 2
    assert s["freq_mhz"]["median"] == 1800.0 and s["temp_c"]["max"] == 45.0 and s["health"] == "OK"
    assert s["anomalies"] == ["another process on the device (pid 1)"]  # pid 1 is init: not ours


def _series(values: float, anomaly: str | None) -> SeriesInput:
    rng = np.random.default_rng(1)
    base = [[list(100 * (1 + rng.normal(0, 0.002, 10))) for _ in range(2)] for _ in range(10)]
    cand = [list(values * (1 + rng.normal(0, 0.002, 10))) for _ in range(2)]
    return SeriesInput(
        workload="w",
        metric="denoise_step_latency",
        hardware="H200",
        unit="ms",
        direction="lower_is_better",
        candidate=cand,
        baseline=base,
        history=base,
        look=3,
        node_anomaly=anomaly,
    )


def test_a_regression_beside_a_node_anomaly_is_suspect_and_rerun():
    policy = load_lane_policy("presubmit")
    plain = judge([_series(108.0, None)], policy, baseline=BaselineInfo(source="t")).verdicts[0]
    assert plain.verdict == "regression" and plain.node_anomaly is None
    odd = judge([_series(108.0, "process 1: clocks held down (HwSlowdown)")], policy, baseline=BaselineInfo(source="t"))
    row = odd.verdicts[0]
    assert row.verdict == "suspect" and odd.status == "success"
    assert "node anomaly (process 1: clocks held down (HwSlowdown))" in row.explanation
    assert row.node_anomaly == "process 1: clocks held down (HwSlowdown)"
    [plan] = plan_perf_reruns([PerfCandidate.from_entry(row.model_dump())])
    assert (plan.action, plan.extra_repeats, plan.blocking) == ("rerun", 2, False)
    assert "on another node" in plan.reason
    # an unchanged run beside the same anomaly is no_change: the anomaly only questions a regression
    quiet = judge([_series(100.0, "process 1: x")], policy, baseline=BaselineInfo(source="t")).verdicts[0]
    assert quiet.verdict == "no_change" and quiet.node_anomaly is None


def test_the_run_page_shows_telemetry_anomalies_and_failure_classes(tmp_path):
    """Result files with telemetry (one run beside a throttled GPU) and a failed workload, ingested, checked and
    served: the run page and its JSON say what the device did and whether the failure is the node's or the code's."""
    from fastapi.testclient import TestClient

    from guardrail.check import check_runs, find_runs
    from guardrail.ingest import ingest
    from guardrail.store.db import session_scope
    from tests.factories import noisy_repeats, result_doc, write
    from tests.timeline import iso
    from web.app import create_app

    url = f"sqlite:///{tmp_path / 'g.db'}"
    rng = np.random.default_rng(3)
    files = []
    for i in range(10):
        doc = result_doc(
            workload="w",
            commit=f"c{i:02d}",
            started_at=iso(days=-20 + i),
            run_id=f"n{i}",
            metrics={"denoise_step_latency": noisy_repeats(100.0, repeats=2, rng=rng, between_cv=0.001)},
        )
        files.append(write(tmp_path / f"n{i}.json", doc))
    slow = result_doc(
        workload="w",
        commit="c99",
        started_at=iso(days=-1),
        run_id="n99",
        metrics={"denoise_step_latency": noisy_repeats(110.0, repeats=2, rng=rng, between_cv=0.001)},
    )
    slow["extra"] = {
        "telemetry": {
            "source": "nvml",
            "anomalies": ["process 2: clocks held down (HwSlowdown) in 40% of samples"],
            "processes": [{"source": "nvml", "sm_mhz": {"min": 1100, "median": 1700, "max": 1980}, "anomalies": []}],
        }
    }
    files.append(write(tmp_path / "n99.json", slow))
    failed = result_doc(
        workload="v",
        commit="c99",
        started_at=iso(days=-1),
        run_id="n99",
        status="infra_error",
        error={"kind": "collective_timeout", "message": "HCCL timed out after 1800 s"},
        metrics={},
    )
    files.append(write(tmp_path / "v99.json", failed))
    ingest(url, files)
    with session_scope(url, write=True) as s:
        run = find_runs(s, run_id=None, commit="c99", lane="nightly")[0]
        rid = run.id
        doc = check_runs(s, [run])
    row = next(v for v in doc.verdicts if v.metric == "denoise_step_latency")
    assert row.verdict == "suspect" and "HwSlowdown" in (row.node_anomaly or "")
    with TestClient(create_app(url)) as c:
        page = c.get(f"/runs/{rid}").text
        data = c.get(f"/api/v1/runs/{rid}").json()
    assert "Node anomaly:</strong> process 2: clocks held down (HwSlowdown)" in page and "clock ≥ 1100 MHz" in page
    assert 'data-class="environment"' in page and "rule <code>collective-timeout</code>" in page
    by = {r["workload"]: r for r in data["results"]}
    assert by["v"]["error"]["failure"] == {
        "class": "environment",
        "rule": "collective-timeout",
        "why": "a rank waited out an HCCL/NCCL collective (a dead peer or a slow link)",
    }
    assert by["w"]["telemetry"]["anomalies"] and by["w"]["telemetry"]["sm_mhz_min"] == 1100


def test_failure_rules_are_data_and_bad_rules_name_their_field(tmp_path):
    import pytest

    from guardrail.errors import InputError
    from guardrail.rerun_policy.failure_rules import load_failure_rules

    rules = load_failure_rules()
    assert rules.classify("exception", "KeyError: 'vae'")["class"] == "code"
    assert rules.classify("device_error", "CUDA error: uncorrectable ECC error encountered")["rule"] == "device-fault"
    assert rules.classify("exception", "something else")["class"] == "unknown"
    bad = tmp_path / "rules.yaml"
    bad.write_text("rules:\n  - {name: x, class: environment, message: '(unclosed'}\n")
    with pytest.raises(InputError) as caught:
        load_failure_rules(bad)
    assert "rules.yaml" in str(caught.value) and "$.rules[0].message" in str(caught.value)
