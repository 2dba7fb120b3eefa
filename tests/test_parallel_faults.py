"""Faults of a parallel job end the whole job, classified, with no process left behind: a rank killed mid-run
(`crash`), a rank that raises inside the library (its own kind, the others stopped), a rank stopped while its peer
waits in a collective (`collective_timeout`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("diffusers")
pytest.importorskip("torch")

from guardrail.schema import load_result  # noqa: E402
from runners.launch import job_failure, run_job  # noqa: E402

pytestmark = [pytest.mark.runners, pytest.mark.slow]
GUARDRAIL = str(Path(sys.executable).parent / "guardrail")
WORKLOADS = Path(__file__).resolve().parent.parent / "workloads"


def _write(wdir: Path, source: str, name: str, parallel: dict, edit=None) -> Path:
    wdir.mkdir(exist_ok=True)
    data = yaml.safe_load((WORKLOADS / f"{source}.yaml").read_text())
    data["name"] = name
    data["lanes"] = ["presubmit"]
    data["parallel"] = parallel
    if edit:
        edit(data)
    f = wdir / f"{name}.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    return f


def _procs_mentioning(text: str) -> list[int]:
    """Live (non-zombie) processes whose command line mentions text: the torchrun agent and every rank."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmd and state != "Z":
            found.append(int(d.name))
    return found


def _wait_for(pred, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def _launch_in_thread(f: Path, job: Path, lines: list[str], env_timeout: str | None = None):
    box: dict = {}

    def go() -> None:
        box["outs"], box["wall"], box["timed_out"] = run_job(
            f,
            scale="tiny",
            device="cpu",
            world=2,
            job_dir=job,
            timeout_s=300,
            log=job.parent / "job.log",
            on_line=lines.append,
        )

    t = threading.Thread(target=go)
    t.start()
    return t, box


def test_rank_killed_mid_run_is_crash_and_leaves_no_process(tmp_path):
    f = _write(tmp_path / "w", "wan22-ti2v-5b-720p", "wan-u2-kill", {"ulysses": 2})
    job = tmp_path / "job"
    lines: list[str] = []
    t, box = _launch_in_thread(f, job, lines)
    # rank 1 is killed once it has its process group and is building or running the pipeline
    _wait_for(lambda: any(line.startswith("rank 1: building") for line in lines), 120)
    os.kill(int((job / "pid.1").read_text()), signal.SIGKILL)
    t.join(180)
    assert not t.is_alive()
    outs = box["outs"]
    failure = job_failure(outs)
    assert failure is not None and failure.kind == "crash"
    assert "rank 1 died without a result" in outs[1].message
    assert not _procs_mentioning(str(job))  # neither the agent nor rank 0 outlives the job


def test_rank_that_raises_in_the_library_ends_the_job_as_its_own_kind(tmp_path):
    # Qwen-Image's _cp_plan splits the text sequence; the negative prompt ' ' (the pinned full-scale one; the tiny
    # config pins an even one) has an odd token count, so diffusers' sharding raises inside the measured generation
    # (a real library error, not an injected one)
    def two_heads(d: dict) -> None:
        d["tiny"]["components"]["transformer"]["config"]["num_attention_heads"] = 2
        d["tiny"]["generation"]["negative_prompt"] = " "

    wdir = tmp_path / "w"
    _write(wdir, "qwen-image-edit-2511-1024", "qwen-u2-odd", {"ulysses": 2}, two_heads)
    out = tmp_path / "out"
    p = subprocess.run(
        [GUARDRAIL, "run", "--lane", "presubmit", "--device", "cpu", "--repeats", "1", "--quiet",
         "--out", str(out), "--workloads-dir", str(wdir)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 3, p.stderr
    (f,) = out.glob("qwen-u2-odd.*.json")
    r = load_result(f)
    assert r.status == "infra_error" and r.error is not None
    assert r.error.kind == "exception"
    assert "divisible by mesh size" in r.error.message and "rank " in r.error.message
    assert r.metrics == []  # never read as a performance result
    assert not _procs_mentioning(str(out))


def test_rank_stopped_in_a_collective_is_collective_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv("GUARDRAIL_COLLECTIVE_TIMEOUT_S", "5")
    f = _write(tmp_path / "w", "wan22-ti2v-5b-720p", "wan-u2-hang", {"ulysses": 2})
    job = tmp_path / "job"
    lines: list[str] = []
    t, box = _launch_in_thread(f, job, lines)
    # once rank 1 has applied the parallel config, stop it: rank 0 then waits in Ulysses' all-to-all
    _wait_for(lambda: any(line.startswith("rank 1: applying parallel") for line in lines), 120)
    os.kill(int((job / "pid.1").read_text()), signal.SIGSTOP)
    t.join(240)
    assert not t.is_alive()
    failure = job_failure(box["outs"])
    assert failure is not None and failure.kind == "collective_timeout", failure
    assert not _procs_mentioning(str(job))
