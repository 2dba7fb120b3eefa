"""Real tiny pipelines on CPU, in fresh processes: result files, failures as results, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("diffusers")
pytest.importorskip("torch")

from guardrail.schema import load_result  # noqa: E402
from runners.worker import classify  # noqa: E402

pytestmark = [pytest.mark.runners]
GUARDRAIL = str(Path(sys.executable).parent / "guardrail")
WORKLOADS = Path(__file__).resolve().parent.parent / "workloads"
REQUIRED = {
    "denoise_step_latency",
    "e2e_latency",
    "text_encode_latency",
    "denoise_latency",
    "vae_decode_latency",
    "peak_memory",
    "load_time",
    "throughput",
}


def _copy(wdir: Path, source: str, name: str, edit=None) -> None:
    data = yaml.safe_load((WORKLOADS / f"{source}.yaml").read_text())
    data["name"] = name
    data["lanes"] = ["presubmit"]
    if edit:
        edit(data)
    (wdir / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.slow
def test_tiny_workload_two_fresh_processes_writes_a_valid_result(tmp_path):
    from runners import run_lane

    files = run_lane(
        "presubmit",
        names=["qwen-image-edit-2511-1024"],
        device="cpu",
        scale="tiny",
        repeats=2,
        out_dir=tmp_path,
        progress=False,
    )
    assert len(files) == 1
    r = load_result(files[0])
    assert r.status == "ok" and r.error is None
    assert r.workload.digest.startswith("sha256:") and r.workload.spec["scale"] == "tiny"
    assert r.environment.device_type == "cpu" and r.environment.hardware
    assert r.environment.software["torch"] and r.environment.software["diffusers"] == "0.42.1"
    names = {m.name for m in r.metrics}
    assert REQUIRED <= names
    steps = r.metric("denoise_step_latency")
    assert len(steps.repeats) == 2  # one list per fresh process
    assert all(len(p) == 30 for p in steps.repeats)  # 32 steps, the first 2 (warm-up) excluded
    assert all(x > 0 for p in steps.repeats for x in p)
    assert r.metric("throughput").direction == "higher_is_better"
    assert len(r.extra["warmup"]) == 2 and len(r.extra["warmup"][0]["step_latency_ms"]) == 2
    fp = r.extra["output_fingerprint"]
    assert fp[0]["sha256_u8"] == fp[1]["sha256_u8"]  # same seed, same output, in two processes
    assert fp[0]["shape"][-1] == 3 and len(fp[0]["thumb_first"]) == 8
    assert r.extra["applied"]["compile"] == "none"
    # CPU peak memory is counted in tensor bytes (weights + the profiler's allocation peak), not the resident set:
    # the same in both processes to the byte, and above the weights alone
    peaks = [p[0] for p in r.metric("peak_memory").repeats]
    assert peaks[0] == peaks[1] > r.extra["applied"]["cpu_peak_memory"]["weights_mib"] > 0
    # node telemetry: on a CPU there is none, and the result says so per process
    tel = r.extra["telemetry"]
    assert tel["source"] is None and tel["anomalies"] == [] and len(tel["processes"]) == 2
    assert tel["absent"] == "no device telemetry on cpu"


@pytest.mark.slow
def test_failing_and_timed_out_workloads_become_results_and_the_rest_still_run(tmp_path):
    wdir = tmp_path / "w"
    wdir.mkdir()
    # raises inside the real pipeline: the transformer expects 48-dim text embeddings, the encoder gives 32
    _copy(
        wdir,
        "wan22-ti2v-5b-720p",
        "a-raises",
        lambda d: d["tiny"]["components"]["transformer"]["config"].update(text_dim=48),
    )
    _copy(wdir, "wan22-ti2v-5b-720p", "b-ok")
    _copy(wdir, "wan22-ti2v-5b-720p", "c-times-out", lambda d: d.update(timeout_s=1))
    out = tmp_path / "out"
    r = subprocess.run(
        [
            GUARDRAIL,
            "run",
            "--lane",
            "presubmit",
            "--device",
            "cpu",
            "--scale",
            "tiny",
            "--repeats",
            "1",
            "--out",
            str(out),
            "--workloads-dir",
            str(wdir),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ},
    )
    assert r.returncode == 3, r.stdout + r.stderr
    results = {load_result(f).workload.name: load_result(f) for f in out.glob("*.json")}
    assert set(results) == {"a-raises", "b-ok", "c-times-out"}
    raised = results["a-raises"]
    assert raised.status == "infra_error" and raised.error.kind == "exception"
    assert "RuntimeError" in raised.error.message or "Error" in raised.error.message
    assert results["b-ok"].status == "ok" and results["b-ok"].metric("e2e_latency")
    timed = results["c-times-out"]
    assert timed.status == "timeout" and timed.error.kind == "timeout" and not timed.metrics
    assert "2 of 3 workloads did not complete" in r.stderr


def test_error_classification_on_real_exception_types():
    import torch

    assert classify(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")) == "oom"
    assert classify(RuntimeError("NPU out of memory. Tried to allocate")) == "oom"
    assert classify(RuntimeError("Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1)")) == (
        "collective_timeout"
    )
    assert classify(RuntimeError("HCCL function error: hcclAllReduce, timed out")) == "collective_timeout"
    assert classify(RuntimeError("CUDA error: an illegal memory access was encountered")) == "device_error"
    assert classify(ValueError("height must be positive")) == "exception"


@pytest.mark.slow
def test_cache_dit_option_is_applied_through_the_library(tmp_path):
    pytest.importorskip("cache_dit")
    wdir = tmp_path / "w"
    wdir.mkdir()
    cfg = {"Fn_compute_blocks": 1, "Bn_compute_blocks": 0, "max_warmup_steps": 1, "residual_diff_threshold": 0.5}
    _copy(
        wdir, "wan22-ti2v-5b-720p", "wan-cache", lambda d: d.update(options={"cache": "cache_dit", "cache_config": cfg})
    )
    from runners import run_lane

    files = run_lane(
        "presubmit", device="cpu", scale="tiny", repeats=1, out_dir=tmp_path / "o", progress=False, workloads_dir=wdir
    )
    r = load_result(files[0])
    assert r.status == "ok", r.error
    assert r.extra["applied"]["cache"] == "cache_dit" and r.extra["applied"]["cache_config"] == cfg
    assert r.workload.spec["options"]["cache"] == "cache_dit"
