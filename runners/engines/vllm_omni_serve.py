"""The `vllm-omni-serve` engine: one vLLM-Omni perf config against a server started for it.

What vLLM-Omni's `tests/dfx/perf/scripts/run_diffusion_benchmark.py` does, with the failures classified: start
`vllm serve MODEL --omni --host 127.0.0.1 --port P <serve_args>` in its own process group (server log kept under
`OUT/logs/`), wait for `GET /health` to answer 200 (up to `health_timeout_s`), run the benchmark client
(`diffusion_benchmark_serving.py`, which writes its metrics to `--output-file`) once per sweep step within the
workload's `timeout_s`, stop the server however that ended (SIGTERM to the group, `term_grace_s`, then SIGKILL of
the group), write the `diffusion_result_<test_name>_<stamp>.json` record the CI writes (kept as `….json.raw`), and
adapt it through the `vllm-omni-diffusion` adapter, so the results carry the case's own series identity.

A server that never became healthy, an OOM / HCCL / NCCL error in the logs (LOG_RULES), a client that failed or
ran past the timeout become `infra_error` / `timeout` results with a classified `error.kind`; `guardrail run`
then exits 3.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from guardrail import clock
from guardrail import vllm_omni_cases as cases
from guardrail.adapters import AdaptDefaults, adapt
from guardrail.adapters.hardware import normalize_hardware
from guardrail.errors import InputError
from guardrail.schema import ErrorInfo, Source, Status
from runners.process import run_logged
from runners.spec import VllmOmni, WorkloadSpec

HOST = "127.0.0.1"
SERVER_ENV = "GUARDRAIL_VLLM_OMNI_SERVER"
CLIENT_ENV = "GUARDRAIL_VLLM_OMNI_CLIENT"
HARDWARE_ENV = "GUARDRAIL_HARDWARE"
# (error kind, pattern) — the first rule matching a line of the server log (then the client's) names the failure.
# Collective timeouts before other collective errors: a watchdog timeout also says "NCCL error". Every rule needs
# error wording: a healthy vLLM server logs "using nccl==2.21.5" and its NCCL/HCCL settings at INFO.
LOG_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("oom", re.compile(r"out of memory|OutOfMemoryError|\bOOM\b|NPU memory.*(exhausted|insufficient)", re.I)),
    (
        "collective_timeout",
        re.compile(r"Watchdog caught collective|\b(HCCL|NCCL|c10d)\b.*\b(timed out|timeout (error|exceeded))", re.I),
    ),
    (
        "device_error",
        re.compile(r"\b(HCCL|NCCL)\b.*\b(error|fail\w*|abort\w*)\b|\b(hccl|nccl)\w*Error\b", re.I),
    ),
    ("device_error", re.compile(r"\bE[EHILZ]\d{4}\b")),  # Ascend error codes (EI0006, EZ9999, ...)
    ("device_error", re.compile(r"CUDA error|ACL error|device-side assert|Xid \d+|uncorrectable ECC", re.I)),
)
# Lines logged at INFO/DEBUG ("INFO 12-02 06:00:01 [file.py:12] ...", "(EngineCore pid=7) DEBUG ...") name no failure.
QUIET = re.compile(r"^[^:]{0,60}?\b(INFO|DEBUG)\b")
POLL_S = 0.2
# The client's metrics and the record are kept under OUT/work/ with this suffix, so that `guardrail ingest OUT/`
# (which reads every *.json below a directory) stores each result once, from its result file.
RAW = ".raw"

Failure = tuple[Status, str, str]  # (status, error kind, message)


def server_key(spec: WorkloadSpec) -> tuple[str, ...] | None:
    """Workloads with the same key can share one server: the same case, model, serve args and commands (as
    vLLM-Omni's runner starts one server per test case for all its configs)."""
    vo = spec.vllm_omni
    if vo is None:
        return None
    return (
        vo.test_name,
        vo.model,
        json.dumps(vo.serve_args, sort_keys=True),
        json.dumps([vo.server, vo.client, vo.health_timeout_s, vo.term_grace_s]),
    )


def run(
    spec: WorkloadSpec,
    lane: str,
    source: Source,
    out_dir: Path,
    hardware: str | None = None,
    lane_started: datetime | None = None,
) -> list[Path]:
    """Run one workload against a server started for it (see :func:`run_group`)."""
    return run_group([spec], lane, source, out_dir, hardware=hardware, lane_started=lane_started)


@dataclass
class _Bench:
    """One workload's part of a group: its sweep steps, their metrics and logs, and how it ended."""

    spec: WorkloadSpec
    steps: list[dict[str, Any]]
    work: Path
    metrics: list[dict[str, Any] | None]
    client_logs: list[Path]
    client_argv: list[list[str]]
    failure: Failure | None = None
    wall_s: float = 0.0


def run_group(
    specs: list[WorkloadSpec],
    lane: str,
    source: Source,
    out_dir: Path,
    hardware: str | None = None,
    lane_started: datetime | None = None,
) -> list[Path]:
    """Workloads of one :func:`server_key` against ONE server, each in turn within its own `timeout_s`; one result
    file per sweep step (failed steps too), written into `out_dir`. The results carry `lane_started` (one `guardrail
    run` is one run in the store), else the group's own start."""
    first = specs[0].vllm_omni
    assert first is not None and all(server_key(s) == server_key(specs[0]) for s in specs)
    started = clock.now()
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    out = Path(out_dir)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    hw = _hardware(first, hardware)
    server_log = logs / f"{specs[0].name if len(specs) == 1 else cases.workload_name(first.test_name, None)}.server.log"
    port = _free_port()
    server_cmd = [*_command(SERVER_ENV, first.server), first.model, "--omni", "--host", HOST, "--port", str(port)]
    server_cmd += cases.serve_flags(first.serve_args)
    benches = []
    for spec in specs:
        assert spec.vllm_omni is not None
        steps = cases.steps(spec.vllm_omni.benchmark_params)
        work = out / "work" / f"{spec.name}.{stamp}"
        work.mkdir(parents=True, exist_ok=True)
        benches.append(_Bench(spec, steps, work, [None] * len(steps), [], []))
    server_extra: dict[str, Any] = {
        "engine": "vllm-omni-serve",
        "server_argv": server_cmd,
        "server_log": str(server_log),
        "shared_by": [s.name for s in specs],
    }
    t0 = time.perf_counter()
    server = _Server(server_cmd, server_log, cwd=Path(os.environ.get("VLLM_OMNI_ROOT") or os.getcwd()))
    try:
        unhealthy = server.wait_healthy(f"http://{HOST}:{port}/health", first.health_timeout_s)
        server_extra["healthy_after_s"] = round(time.perf_counter() - t0, 3) if unhealthy is None else None
        for b in benches:
            if unhealthy is not None:
                b.failure = unhealthy
            elif server.exited():  # it died during an earlier workload of the group
                b.failure = (
                    "infra_error",
                    "server_exited",
                    f"the server exited ({server.returncode()}); see {server_log}",
                )
            else:
                _bench(b, server, port, logs, server_log)
    finally:
        server_extra["server_stop"] = server.stop(first.term_grace_s)
    server_extra["wall_s"] = round(time.perf_counter() - t0, 3)
    written: list[Path] = []
    for b in benches:
        written += _results(b, lane, source, out, hw, lane_started or started, stamp, server_log, server_extra)
    return written


def _bench(b: _Bench, server: _Server, port: int, logs: Path, server_log: Path) -> None:
    """Run the client once per sweep step of one workload, within its timeout; stops at the first failure."""
    vo = b.spec.vllm_omni
    assert vo is not None
    t0 = time.perf_counter()
    deadline = time.monotonic() + b.spec.timeout_s
    for k, step in enumerate(b.steps):
        out_file = b.work / f"metrics.{k}.json{RAW}"
        cmd = [*_rooted(_command(CLIENT_ENV, vo.client)), "--host", HOST, "--port", str(port), "--model", vo.model]
        if "endpoint" not in step:  # a config naming its endpoint passes it as its own flag instead
            cmd += ["--backend", cases.backend_of(step)]
        cmd += ["--dataset", str(step.get("dataset", "random"))]
        cmd += ["--task", str(step.get("task", "t2i")), "--output-file", str(out_file), *cases.client_flags(step)]
        log = logs / f"{b.spec.name}.bench.{k}.log"
        b.client_logs.append(log)
        b.client_argv.append(cmd)
        done = run_logged(cmd, log, timeout_s=max(deadline - time.monotonic(), 0.01), term_grace_s=5.0)
        if done.timed_out:
            why = f"the benchmark ran past the workload's timeout of {b.spec.timeout_s:g} s"
            b.failure = ("timeout", "timeout", why)
        elif server.exited():
            why = f"the server exited ({server.returncode()}) mid-benchmark; see {server_log}"
            b.failure = ("infra_error", "server_exited", why)
        elif done.returncode != 0:
            b.failure = ("infra_error", "benchmark_failed", f"the benchmark client exited {done.returncode}; see {log}")
        elif not out_file.is_file():
            b.failure = ("infra_error", "no_output", f"the benchmark client exited 0 but wrote no {out_file.name}")
        elif (m := _read_metrics(out_file)) is None:
            b.failure = ("infra_error", "bad_output", f"{out_file.name} is not a JSON object of metrics")
        else:
            b.metrics[k] = m
        if b.failure is not None:
            break
    b.wall_s = round(time.perf_counter() - t0, 3)


def _results(
    b: _Bench,
    lane: str,
    source: Source,
    out: Path,
    hw: str,
    started: datetime,
    stamp: str,
    server_log: Path,
    server_extra: dict[str, Any],
) -> list[Path]:
    """The record file vLLM-Omni's runner writes, adapted; steps without numbers carry the classified failure."""
    vo = b.spec.vllm_omni
    assert vo is not None
    failure = classify(b.failure, [server_log, *b.client_logs]) if b.failure is not None else None
    record_file = b.work / f"diffusion_result_{vo.test_name}_{started.strftime('%Y%m%d-%H%M%S')}.json{RAW}"
    records = [
        _record(vo, step, m, started, source, hw, server_log) for step, m in zip(b.steps, b.metrics, strict=True)
    ]
    record_file.write_text(json.dumps(records, indent=2, ensure_ascii=False))
    extra = {
        **server_extra,
        "client_argv": b.client_argv,
        "client_logs": [str(p) for p in b.client_logs],
        "bench_wall_s": b.wall_s,
        "record_file": str(record_file),
    }
    adapted = adapt(
        record_file, "vllm-omni-diffusion", records, defaults=AdaptDefaults(lane=lane, hardware=hw, source=source)
    )
    written = []
    for i, (r, m) in enumerate(zip(adapted, b.metrics, strict=True)):
        r = r.model_copy(update={"extra": {**r.extra, "vllm_omni_serve": extra}})
        if m is None:  # a step that never produced numbers: the classified failure, not "no result"
            status, kind, message = failure or ("infra_error", "not_run", "an earlier step of the sweep failed")
            r = r.model_copy(update={"status": status, "error": ErrorInfo(kind=kind, message=message[:4000])})
        f = out / f"{b.spec.name}.{i}.{stamp}.json"
        f.write_text(r.to_json())
        written.append(f)
    return written


# --- failure classification -------------------------------------------------------------------------------------
def classify(failure: Failure, logs: list[Path]) -> Failure:
    """The first log rule that matches a line of the logs names the kind, and the line is quoted; a timeout stays
    a timeout (the line only explains it)."""
    status, kind, message = failure
    for log in logs:
        hit = _first_match(log)
        if hit is None:
            continue
        rule_kind, line = hit
        note = f"{message}; {log.name}: {line[:300]}"
        return (status, kind, note) if status == "timeout" else ("infra_error", rule_kind, note)
    return failure


def _first_match(log: Path) -> tuple[str, str] | None:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    lines = [line for line in lines if not QUIET.search(line)]
    for rule_kind, pattern in LOG_RULES:
        for line in lines:
            if pattern.search(line):
                return rule_kind, line.strip()
    return None


# --- the server's process group ---------------------------------------------------------------------------------
@dataclass
class _Server:
    argv: list[str]
    log: Path
    cwd: Path

    def __post_init__(self) -> None:
        self._logf = open(self.log, "w")  # noqa: SIM115 - closed in stop(), however the run ended
        self._logf.write(f"cmd: {shlex.join(self.argv)}\n")
        self._logf.flush()
        try:
            self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                stdout=self._logf,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "VLLM_WORKER_MULTIPROC_METHOD": "spawn"},
                start_new_session=True,  # its own process group: stop() ends every process it started
            )
            self.start_error: str | None = None
        except OSError as exc:
            self.proc = None
            self.start_error = f"cannot start the server {self.argv[0]!r}: {exc.strerror or exc}"

    def exited(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    def wait_healthy(self, url: str, timeout_s: float) -> Failure | None:
        if self.proc is None:
            return ("infra_error", "server_start_failed", self.start_error or "the server did not start")
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return (
                    "infra_error",
                    "server_exited",
                    f"the server exited ({self.proc.returncode}) before it was healthy; see {self.log}",
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback URL we built
                    if resp.status == 200:
                        return None
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (OSError, ValueError) as exc:
                last = type(exc).__name__
            time.sleep(POLL_S)
        return (
            "infra_error",
            "server_unhealthy",
            f"the server never became healthy in {timeout_s:g} s ({url}: {last})",
        )

    def stop(self, grace_s: float) -> str:
        """SIGTERM to the group, `grace_s` for the group to go, then SIGKILL of the group; returns how it stopped."""
        how = "not started"
        try:
            if self.proc is not None:
                pgid = self.proc.pid
                how = "exited"
                if _group_alive(pgid):
                    _signal_group(pgid, signal.SIGTERM)
                    how = "sigterm"
                    end = time.monotonic() + grace_s
                    while time.monotonic() < end and _group_alive(pgid):
                        self.proc.poll()  # reap the leader, so that the group check sees only the living
                        time.sleep(0.05)
                    if _group_alive(pgid):
                        _signal_group(pgid, signal.SIGKILL)
                        how = "sigkill"
                self.proc.wait()
                end = time.monotonic() + 5
                while time.monotonic() < end and _group_alive(pgid):  # children reparented to init, being reaped
                    time.sleep(0.05)
        finally:
            self._logf.write(f"\n[guardrail] server stopped: {how}\n")
            self._logf.close()
        return how


def group_members(pgid: int) -> list[int]:
    """Living (not zombie) processes of a process group, from /proc; elsewhere, the leader's group as a whole."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    out = []
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(d.name))
    return out


def _group_alive(pgid: int) -> bool:
    return bool(group_members(pgid))


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


# --- the record vLLM-Omni's CI writes ---------------------------------------------------------------------------
def _record(
    vo: VllmOmni,
    step: dict[str, Any],
    metrics: dict[str, Any] | None,
    started: datetime,
    source: Source,
    hardware: str,
    server_log: Path,
) -> dict[str, Any]:
    """One `diffusion_result_*.json` record: the case, the client's metrics and the report columns."""
    attn = os.environ.get("DIFFUSION_ATTENTION_BACKEND") or cases.DEFAULT_ATTN_BACKEND
    columns = cases.report_columns(vo.model, vo.serve_args, step, attn)
    endpoint = (metrics or {}).get("endpoint") or cases.endpoint_of(step)
    rec: dict[str, Any] = {
        "test_name": vo.test_name,
        "endpoint": endpoint,
        "timestamp": started.strftime("%Y%m%d-%H%M%S"),
        "server_params": {"model": vo.model, "serve_args": vo.serve_args},
        "benchmark_params": {**step, **({"baseline": vo.baseline} if vo.baseline else {})},
        "result": metrics,
        "log_file": str(server_log),
        "Framework": "vllm-omni",
        "API Endpoint": endpoint,
        "Hardware": hardware,
        **columns,
        "commit_sha": source.commit or "",
        "build_url": (source.ci.url if source.ci and source.ci.provider == "buildkite" else None) or "",
        "source_file": vo.source.get("path") or "",
    }
    return rec


def _read_metrics(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# --- where and what ---------------------------------------------------------------------------------------------
def _command(env_name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(env_name, "").strip()
    return shlex.split(raw) if raw else list(default)


def _rooted(argv: list[str]) -> list[str]:
    """The default client path is relative to a vLLM-Omni checkout: resolved against $VLLM_OMNI_ROOT when set."""
    root = os.environ.get("VLLM_OMNI_ROOT")
    if not root:
        return argv
    return [str(Path(root) / a) if not Path(a).is_absolute() and (Path(root) / a).is_file() else a for a in argv]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _hardware(vo: VllmOmni, given: str | None) -> str:
    """The hardware the numbers belong to: the lane's, else $GUARDRAIL_HARDWARE, else the GPU nvidia-smi names,
    else the case's mark for an NPU host (npu-smi on PATH), else the case's only mark."""
    if given:
        return given
    if os.environ.get(HARDWARE_ENV, "").strip():
        return normalize_hardware(os.environ[HARDWARE_ENV])
    if shutil.which("nvidia-smi"):
        try:
            names = subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
            ).stdout.split("\n")
            m = re.search(r"\b([A-Z]{1,2}\d{2,4}[A-Z]?)\b", names[0]) if names and names[0].strip() else None
            if m:
                return m.group(1)
        except (OSError, subprocess.SubprocessError):
            pass
    if shutil.which("npu-smi") and vo.hardware_marks.get("npu"):
        return normalize_hardware(vo.hardware_marks["npu"])
    if len(set(vo.hardware_marks.values())) == 1:
        return normalize_hardware(next(iter(vo.hardware_marks.values())))
    raise InputError(
        f"cannot tell which hardware this runs on (marks: {vo.hardware_marks or 'none'}); set {HARDWARE_ENV}",
        field="vllm_omni.hardware_marks",
    )
