"""The CPU lane the main job runs: pinned threads, process CPU time beside wall time, tiny steps long enough to
time, warm-up left out (docs/runners.md, "The CPU lane")."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from runners.device import CPU_THREAD_ENV, Device, Mark
from runners.measurements import CATALOGUE, CPU_TIME, DEFAULT_METRICS
from runners.workloads import select

PRESUBMIT = ("hunyuanimage-2.1-2048", "qwen-image-edit-2511-1024", "wan22-ti2v-5b-720p")


def test_cpu_marks_carry_process_cpu_time_and_device_marks_do_not():
    a, b = Mark(wall=1.0, cpu=2.0), Mark(wall=1.5, cpu=2.25)
    assert a.ms_until(b) == 500.0 and a.cpu_ms_until(b) == 250.0
    assert Mark(event=object()).cpu_ms_until(Mark(event=object())) is None
    m = Device("cpu").event()
    assert m.wall is not None and m.cpu is not None  # both clocks read at the same point


def test_cpu_time_metrics_are_catalogued_but_leave_default_metrics_and_digests_as_they_were():
    for name in CPU_TIME:
        assert CATALOGUE[name].unit in ("ms", "ratio") and CATALOGUE[name].direction == "lower_is_better"
        assert name not in DEFAULT_METRICS  # recorded on CPU whatever a workload lists


def test_presubmit_tiny_workloads_measure_thirty_steps_after_a_warm_up_generation():
    chosen = {spec.name: spec for _, spec in select("presubmit")}
    assert set(chosen) == set(PRESUBMIT)
    for spec in chosen.values():
        gens, steps = spec.warmup_at("tiny")
        assert (gens, steps) == (1, 2), spec.name
        assert spec.generation_at("tiny").num_inference_steps - steps == 30, spec.name


def _pin(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "import json; from runners.device import pin_cpu_threads; print(json.dumps(pin_cpu_threads()))"
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**clean, **env}
    )


def test_pinning_sets_torch_and_openmp_threads_and_says_what_is_in_effect():
    pytest.importorskip("torch")
    r = _pin({})
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["intra_op"] == 1 and got["inter_op"] == 1
    assert got["env"] == dict.fromkeys(CPU_THREAD_ENV, "1") and "OMP_NUM_THREADS" in CPU_THREAD_ENV
    r = _pin({"GUARDRAIL_CPU_THREADS": "2"})
    assert r.returncode == 0 and json.loads(r.stdout)["intra_op"] == 2
    r = _pin({"GUARDRAIL_CPU_THREADS": "two"})
    assert r.returncode != 0 and "GUARDRAIL_CPU_THREADS" in r.stderr


@pytest.mark.slow
@pytest.mark.runners
def test_a_cpu_process_records_step_cpu_time_and_its_pinned_threads(tmp_path):
    pytest.importorskip("diffusers")
    from guardrail.schema import load_result
    from runners import run_lane

    files = run_lane(
        "presubmit",
        names=["wan22-ti2v-5b-720p"],
        device="cpu",
        scale="tiny",
        repeats=1,
        out_dir=tmp_path,
        progress=False,
    )
    r = load_result(files[0])
    assert r.status == "ok", r.error
    wall = r.metric("denoise_step_latency").repeats[0]
    cpu = r.metric("denoise_step_cpu_time").repeats[0]
    assert len(cpu) == len(wall) == 30  # the same steps, both clocks
    # one thread: a step's CPU time is at most its wall time (plus clock granularity); how much less depends on
    # the machine's load (the time the process waited for a core), so no lower bound is asserted
    assert all(0 < c <= w * 1.05 + 0.5 for c, w in zip(cpu, wall, strict=True))
    (e2e_cpu,) = r.metric("e2e_cpu_time").repeats[0]
    assert 0 < e2e_cpu <= r.metric("e2e_latency").repeats[0][0] * 1.05 + 0.5
    # the step over the calibration kernel timed after it (runners.calibration): one ratio per measured step
    rel = r.metric("denoise_step_relative").repeats[0]
    cal = r.extra["applied"]["calibration"]["cpu_ms"]
    assert len(rel) == 30 and len(cal) == 32 and all(c > 0 for c in cal)
    assert rel[0] == pytest.approx(cpu[0] / ((cal[1] + cal[2]) / 2), rel=1e-3)  # cpu_ms is rounded to 1 µs
    threads = r.extra["applied"]["cpu_threads"]
    assert threads["intra_op"] == 1 and threads["inter_op"] == 1 and threads["env"]["OMP_NUM_THREADS"] == "1"


def test_the_main_jobs_lanes_gate_the_calibrated_ratio_on_cpu_and_wall_time_on_devices():
    from guardrail.policy import load_lane_policy

    for lane in ("presubmit", "nightly"):
        p = load_lane_policy(lane)
        assert p.is_informational("denoise_step_latency", "cpu") and p.is_informational("e2e_latency", "cpu")
        assert p.is_informational("denoise_step_cpu_time", "cpu") and p.is_informational("e2e_cpu_time", "cpu")
        assert not p.is_informational("denoise_step_relative", "cpu") and not p.is_informational("peak_memory", "cpu")
        assert p.threshold("denoise_step_relative") == 0.25 and p.threshold("denoise_step_latency") == 0.01
        for device in ("cuda", "npu", None):
            assert not p.is_informational("denoise_step_latency", device)
            assert p.is_informational("load_time", device)  # the lane-wide list holds everywhere


def test_compare_marks_wall_time_informational_only_on_a_cpu_result():
    from guardrail.compare_files import compare_results
    from guardrail.policy import load_lane_policy
    from guardrail.schema import Result
    from tests.factories import result_doc
    from tests.timeline import iso

    policy = load_lane_policy("presubmit")
    metrics = {
        "denoise_step_latency": [[50.0, 50.2], [50.1, 49.9]],
        "denoise_step_cpu_time": [[49.0, 49.1], [49.2, 49.0]],
        "denoise_step_relative": [[4.90, 4.91], [4.92, 4.90]],
    }
    for device, wall_info in (("cpu", True), ("cuda", False)):

        def doc(days: int, device: str = device) -> Result:
            d = result_doc(lane="nightly", metrics=metrics, started_at=iso(days=days))
            d["environment"]["device_type"] = device
            return Result.model_validate(d)

        out = compare_results([doc(-2)], [doc(-1)], policy)
        info = {v.metric: v.informational for v in out.verdicts}
        want = {"denoise_step_latency": wall_info, "denoise_step_cpu_time": wall_info, "denoise_step_relative": False}
        assert info == want, device
