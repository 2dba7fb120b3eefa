"""The vllm-omni-serve engine end to end: `guardrail run` starts a real loopback HTTP server as the "vllm serve"
command (tests/helpers/vllm_omni_standin_server.py), waits for /health, drives a benchmark client that sends real
requests to the images/videos endpoints and writes the client's metrics JSON, stops the server's process group,
and ingests the diffusion_result_*.json record through the vllm-omni-diffusion adapter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from guardrail import vllm_omni_cases as cases
from guardrail.ingest.reference import matches
from guardrail.ingest.reference_import import load_reference_baselines
from guardrail.schema import load_result
from runners.engines.vllm_omni_serve import LOG_RULES, classify
from tests.cli_inprocess import run_cli

DATA = Path(__file__).parent / "data" / "vllm_omni_cases"
HELPERS = Path(__file__).parent / "helpers"
EDIT = "test_qwen_image_edit_single_device"


@pytest.fixture
def standin(tmp_path, monkeypatch):
    """The stand-in server and client as the engine's commands (the variables a CI job would set)."""
    monkeypatch.setenv("GUARDRAIL_VLLM_OMNI_SERVER", f"{sys.executable} {HELPERS / 'vllm_omni_standin_server.py'}")
    monkeypatch.setenv("GUARDRAIL_VLLM_OMNI_CLIENT", f"{sys.executable} {HELPERS / 'vllm_omni_standin_bench.py'}")
    monkeypatch.setenv("STANDIN_PIDS", str(tmp_path / "pids.json"))
    monkeypatch.delenv("GUARDRAIL_HARDWARE", raising=False)
    monkeypatch.delenv("DIFFUSION_ATTENTION_BACKEND", raising=False)
    return tmp_path


def _workloads(wdir: Path, case_file: str, **vo: Any) -> dict[str, dict[str, Any]]:
    """The case's workloads as the import writes them, with test-sized timeouts merged into `vllm_omni`."""
    timeout = vo.pop("timeout_s", 60)
    docs = cases.convert(
        json.loads((DATA / case_file).read_text()), file=case_file, lanes=["nightly"], timeout_s=timeout
    )
    wdir.mkdir(exist_ok=True)
    for doc in docs:
        doc["vllm_omni"].update(vo)
        (wdir / f"{doc['name']}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return {d["name"]: d for d in docs}


def _run(capsys, tmp_path: Path, wdir: Path, name: str) -> tuple[int, str, list[Any]]:
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        capsys, "run", "--lane", "nightly", "--workload", name, "--workloads-dir", str(wdir), "--out", str(out)
    )
    results = [load_result(f) for f in sorted(out.glob("*.json"))]
    return code, stdout + err, results


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _no_orphans(tmp_path: Path) -> dict[str, Any]:
    pids = json.loads((tmp_path / "pids.json").read_text())
    assert not _alive(pids["server"]), "the server outlived the run"
    assert not _alive(pids["child"]), "the server's child (its engine worker) outlived the run"
    return pids


def test_healthy_run_is_ingested_with_the_cases_series(standin, capsys):
    tmp_path = standin
    docs = _workloads(tmp_path / "w", "test_qwen_image_edit_vllm_omni.json")
    name = f"{EDIT}.512x512_steps20_i2i"
    code, output, results = _run(capsys, tmp_path, tmp_path / "w", name)
    assert code == 0, output
    assert len(results) == 1
    r = results[0]
    assert r.status == "ok"
    # The series vLLM-Omni's CI history holds: the adapter's name and the digest the import recorded.
    assert r.workload.name == f"{EDIT}/512x512_steps20_i2i"
    assert r.workload.digest == docs[name]["vllm_omni"]["series"][0]["digest"]
    assert r.environment.hardware == "H100"  # the case's only hardware mark
    assert r.run.lane == "nightly"
    metrics = {m.name: m for m in r.metrics}
    assert {"latency_mean", "throughput_qps", "peak_memory_mb_max", "stage_mean.denoise"} <= set(metrics)
    assert metrics["peak_memory_mb_max"].repeats == [[1234.5]]  # read where vLLM-Omni puts it in the response
    assert r.extra["completed_requests"] == 10 and r.extra["endpoint"] == "/v1/chat/completions"
    served = r.extra["vllm_omni_serve"]
    assert served["server_stop"] == "sigterm"
    log = Path(served["server_log"])
    assert log.is_file() and "standin vllm serve Qwen/Qwen-Image-Edit --omni" in log.read_text()
    assert log.read_text().count("POST /v1/chat/completions") == 10
    pids = _no_orphans(tmp_path)
    assert (
        pids["argv"][:2] == ["Qwen/Qwen-Image-Edit", "--omni"]
        and "--enable-diffusion-pipeline-profiler" in pids["argv"]
    )
    record = json.loads(Path(served["record_file"]).read_text())[0]
    assert record["test_name"] == EDIT and record["Hardware"] == "H100" and record["Attn_backend"] == "FLASH_ATTN"

    # The case's own baselines (what the import writes as cold-start references) apply to this result's series.
    refs = [ref for ref in load_reference_baselines(DATA / "test_qwen_image_edit_vllm_omni.json") if matches(ref, r)]
    assert sorted(ref.metric for ref in refs) == sorted(
        ["throughput_qps", "latency_mean", "peak_memory_mb_max", "peak_memory_mb_mean"]
    )
    assert {ref.metric for ref in refs} <= set(metrics)

    # ... and the result file goes into the store as that series.
    db = f"sqlite:///{tmp_path / 'g.db'}"
    assert run_cli(capsys, "db", "upgrade", "--db", db)[0] == 0
    code, out, err = run_cli(capsys, "ingest", str(tmp_path / "out"), "--db", db)  # the whole directory, as CI does
    assert code == 0, err
    assert "1 stored" in out  # the result file only: the raw record and metrics under work/ are not read again
    from sqlalchemy import create_engine, text

    with create_engine(db).connect() as conn:
        stored = conn.execute(text("SELECT name, digest FROM workloads")).all()
    assert (r.workload.name, r.workload.digest) in [tuple(row) for row in stored]


def test_video_case_uses_the_videos_endpoint_and_the_hardware_variable(standin, capsys, monkeypatch):
    tmp_path = standin
    monkeypatch.setenv("GUARDRAIL_HARDWARE", "h200")
    _workloads(tmp_path / "w", "test_wan22_i2v_vllm_omni.json")
    code, output, results = _run(
        capsys, tmp_path, tmp_path / "w", "test_wan22_i2v_usp2_vae_patch2_hsdp_slicing.832x480_frames81_steps4"
    )
    assert code == 0, output
    (r,) = results
    assert r.environment.hardware == "H200" and r.environment.device_count == 2
    assert r.extra["endpoint"] == "/v1/videos"
    server_log = Path(r.extra["vllm_omni_serve"]["server_log"]).read_text()
    assert server_log.count("POST /v1/videos ") == 10 and server_log.count("DELETE /v1/videos/") == 10
    assert "--usp" in r.extra["vllm_omni_serve"]["server_argv"]
    client = r.extra["vllm_omni_serve"]["client_argv"][0]
    assert client[client.index("--backend") + 1] == "v1/videos"
    assert json.loads(client[client.index("--random-request-config") + 1])[0]["num_frames"] == 81


def test_server_that_never_becomes_healthy_is_an_infra_result_and_is_killed(standin, capsys, monkeypatch):
    tmp_path = standin
    monkeypatch.setenv("STANDIN_MODE", "never_healthy")  # also ignores SIGTERM: the group must be SIGKILLed
    _workloads(tmp_path / "w", "test_qwen_image_edit_vllm_omni.json", health_timeout_s=1.5, term_grace_s=0.5)
    code, output, results = _run(capsys, tmp_path, tmp_path / "w", f"{EDIT}.512x512_steps20_i2i")
    assert code == 3, output
    (r,) = results
    assert r.status == "infra_error" and r.error is not None
    assert r.error.kind == "server_unhealthy" and "never became healthy in 1.5 s" in r.error.message
    assert r.workload.name == f"{EDIT}/512x512_steps20_i2i"  # a failure of this series, never a regression
    assert r.metrics == []
    assert r.extra["vllm_omni_serve"]["server_stop"] == "sigkill"
    _no_orphans(tmp_path)


@pytest.mark.parametrize(
    "mode,kind,quoted",
    [("oom", "oom", "CUDA out of memory"), ("hccl", "device_error", "HCCL function error")],
)
def test_errors_in_the_server_log_are_classified(standin, capsys, monkeypatch, mode, kind, quoted):
    tmp_path = standin
    monkeypatch.setenv("STANDIN_MODE", mode)
    _workloads(tmp_path / "w", "test_qwen_image_edit_vllm_omni.json", health_timeout_s=30)
    code, output, results = _run(capsys, tmp_path, tmp_path / "w", f"{EDIT}.512x512_steps20_i2i")
    assert code == 3, output
    (r,) = results
    assert r.status == "infra_error" and r.error is not None
    assert r.error.kind == kind
    assert quoted in r.error.message and "server.log" in r.error.message
    assert f"{kind}" in output  # guardrail run's summary line names the kind
    _no_orphans(tmp_path)


def test_benchmark_timeout_is_classified_and_the_server_stopped(standin, capsys, monkeypatch):
    tmp_path = standin
    monkeypatch.setenv("STANDIN_MODE", "slow")
    monkeypatch.setenv("STANDIN_REQUEST_S", "60")
    _workloads(tmp_path / "w", "test_qwen_image_edit_vllm_omni.json", timeout_s=2, term_grace_s=2)
    code, output, results = _run(capsys, tmp_path, tmp_path / "w", f"{EDIT}.512x512_steps20_i2i")
    assert code == 3, output
    (r,) = results
    assert r.status == "timeout" and r.error is not None and r.error.kind == "timeout"
    assert "timeout of 2 s" in r.error.message
    assert r.extra["vllm_omni_serve"]["server_stop"] in ("sigterm", "sigkill")
    _no_orphans(tmp_path)


def test_a_sweep_runs_the_client_once_per_step_against_one_server(standin, capsys):
    tmp_path = standin
    docs = _workloads(tmp_path / "w", "test_qwen_image_vllm_omni.json")
    name = "test_qwen_image_single_device_step_execution_high_concurrency.512x512_steps20_high_concurrency"
    code, output, results = _run(capsys, tmp_path, tmp_path / "w", name)
    assert code == 0, output
    assert [r.workload.digest for r in results] == [s["digest"] for s in docs[name]["vllm_omni"]["series"]]
    assert [r.extra["completed_requests"] for r in results] == [20, 40, 80, 160]
    assert [r.workload.spec["max_concurrency"] for r in results] == ["1", "2", "4", "8"]
    _no_orphans(tmp_path)


def test_log_rules_name_the_kind_and_a_timeout_stays_a_timeout(tmp_path):
    log = tmp_path / "x.server.log"
    log.write_text(
        "INFO loading\n[rank1] Watchdog caught collective operation timeout: NCCL WorkNCCL(...) ran for 600000 ms\n"
    )
    assert classify(("infra_error", "server_exited", "exited"), [log])[1] == "collective_timeout"
    status, kind, message = classify(("timeout", "timeout", "ran past"), [log])
    assert (status, kind) == ("timeout", "timeout") and "Watchdog" in message
    clean = tmp_path / "clean.log"
    clean.write_text(
        "INFO 12-02 06:00:01 [pynccl.py:69] vLLM is using nccl==2.21.5\n"
        "(EngineCore pid=7) INFO 12-02 06:00:02 [parallel_state.py:1] HCCL_CONNECT_TIMEOUT=1800, NCCL error checks on\n"
        "Loading weights took 42.1 s\n"
    )
    assert classify(("infra_error", "server_exited", "exited"), [clean]) == ("infra_error", "server_exited", "exited")
    assert [k for k, _ in LOG_RULES][:2] == ["oom", "collective_timeout"]
    ascend = tmp_path / "npu.log"
    ascend.write_text("[ERROR] RUNTIME: EI0006: Getting socket times out. Reason: remote rank 3 did not connect\n")
    assert classify(("infra_error", "server_unhealthy", "never healthy"), [ascend])[1] == "device_error"
    assert os.environ.get("GUARDRAIL_NOW")  # the suite's clock, not the wall clock, stamps the results


def test_configs_of_one_case_share_one_server_and_one_run(standin, capsys):
    """As vLLM-Omni's runner: one server per test case for all its configs (a 14B model loads once), and one
    `guardrail run` is one run in the store."""
    tmp_path = standin
    _workloads(tmp_path / "w", "test_qwen_image_edit_vllm_omni.json")
    out = tmp_path / "out"
    code, _, err = run_cli(
        capsys,
        *("run", "--lane", "nightly", "--workloads-dir", str(tmp_path / "w"), "--out", str(out)),
        *("--workload", f"{EDIT}.512x512_steps20_i2i", "--workload", f"{EDIT}.1536x1536_steps35_i2i"),
    )
    assert code == 0, err
    results = [load_result(f) for f in sorted(out.glob("*.json"))]
    assert len(results) == 2 and len({r.run.started_at for r in results}) == 1
    assert len({r.workload.digest for r in results}) == 2 and all(r.status == "ok" for r in results)
    served = [r.extra["vllm_omni_serve"] for r in results]
    assert served[0]["server_log"] == served[1]["server_log"] and len(served[0]["shared_by"]) == 2
    log = Path(served[0]["server_log"]).read_text()
    assert log.count("standin vllm serve") == 1 and log.count("POST /v1/chat/completions") == 20
    _no_orphans(tmp_path)


def test_hardware_comes_from_nvidia_smi_when_the_lane_does_not_say(standin, capsys, monkeypatch):
    """A CUDA host: the GPU nvidia-smi names (here a stand-in on PATH printing what an H200 prints), not the mark."""
    tmp_path = standin
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H200'\necho 'NVIDIA H200'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    _workloads(tmp_path / "w", "test_qwen_image_edit_vllm_omni.json")
    code, output, results = _run(capsys, tmp_path, tmp_path / "w", f"{EDIT}.512x512_steps20_i2i")
    assert code == 0, output
    assert results[0].environment.hardware == "H200" and results[0].environment.device_type == "cuda"


def test_an_nccl_crash_mid_case_fails_every_config_that_shared_the_server(standin, capsys, monkeypatch):
    tmp_path = standin
    monkeypatch.setenv("STANDIN_MODE", "nccl_crash")  # dies after 3 of the first config's 10 requests
    _workloads(tmp_path / "w", "test_qwen_image_edit_vllm_omni.json")
    out = tmp_path / "out"
    code, _, err = run_cli(
        capsys,
        *("run", "--lane", "nightly", "--workloads-dir", str(tmp_path / "w"), "--out", str(out)),
        *("--workload", f"{EDIT}.512x512_steps20_i2i", "--workload", f"{EDIT}.1536x1536_steps35_i2i"),
    )
    assert code == 3
    results = [load_result(f) for f in sorted(out.glob("*.json"))]
    assert [r.status for r in results] == ["infra_error", "infra_error"]
    assert all(r.error is not None and r.error.kind == "device_error" for r in results)
    assert all(r.error is not None and "ncclUnhandledCudaError" in r.error.message for r in results)
    assert "device_error" in err
    _no_orphans(tmp_path)


def test_import_run_ingest_check_against_the_cases_own_baselines(standin, capsys):
    """The chain a CI job runs: the case's baselines become cold-start references, and `guardrail check` judges the
    first run of the series against them (the stand-in is ~400x faster than an H100, so: improvements)."""
    tmp_path = standin
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    for policy in (Path(__file__).parents[1] / "baselines").glob("*.yaml"):
        (baselines / policy.name).write_text(policy.read_text())
    case = DATA / "test_qwen_image_edit_vllm_omni.json"
    code, _, err = run_cli(
        capsys,
        "workloads",
        "import-vllm-omni",
        str(case),
        "--out",
        str(tmp_path / "w"),
        "--references",
        str(baselines / "reference"),
    )
    assert code == 0, err
    code, output, results = _run(capsys, tmp_path, tmp_path / "w", f"{EDIT}.512x512_steps20_i2i")
    assert code == 0, output
    db = f"sqlite:///{tmp_path / 'g.db'}"
    assert run_cli(capsys, "db", "upgrade", "--db", db)[0] == 0
    assert run_cli(capsys, "ingest", *map(str, sorted((tmp_path / "out").glob("*.json"))), "--db", db)[0] == 0
    # A fresh process: the reference directory is read from $GUARDRAIL_BASELINES when the policy module loads.
    done = subprocess.run(
        [sys.executable, "-m", "guardrail", "check", "--run", "1", "--db", db, "--format", "json"],
        env={**os.environ, "GUARDRAIL_BASELINES": str(baselines)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    verdicts = {v["metric"]: v for v in json.loads(done.stdout)["verdicts"]}
    for metric in ("throughput_qps", "latency_mean", "peak_memory_mb_max", "peak_memory_mb_mean"):
        assert verdicts[metric]["verdict"] == "improvement", verdicts[metric]
        assert verdicts[metric]["workload"] == f"{EDIT}/512x512_steps20_i2i" and verdicts[metric]["hardware"] == "H100"
    assert verdicts["latency_median"]["verdict"] == "new"  # no reference for it: the series starts here
