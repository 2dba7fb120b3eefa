"""Node telemetry beside every result: the device sampled while each measured process runs.

The lane's own process samples the device in a thread while the worker runs (never inside the timed process):
on CUDA through NVML (`nvidia-ml-py`: SM and memory clocks, temperature, power, clock-event ("throttle")
reasons, the processes on the device, uncorrected ECC errors and XID events); on Ascend through `npu-smi`
(frequency, temperature, power, HBM use, health, the processes on the device). Off a device, or where the tool
is missing, the summary says so (`source: null`, `absent: why`). Every import is lazy.

A process's summary names its anomalies: clocks held down by the hardware (thermal or hardware slowdown,
power brake), another process on the device, an uncorrected ECC error or an XID event, an unhealthy NPU.
`guardrail check` turns a regression whose candidate ran beside an anomaly into `suspect` (rerun before
anyone is blamed); docs/runners.md, "Node telemetry".
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Protocol

INTERVAL_S = 0.25
MAX_SAMPLES = 4000  # 16 minutes at the interval; a longer process keeps every other sample

# NVML clock-event reasons that mean the hardware held the clocks down (not the normal power cap under load,
# application clocks or idle): nvmlClocksEventReason* names without the prefix.
HELD_DOWN = ("HwSlowdown", "HwThermalSlowdown", "SwThermalSlowdown", "HwPowerBrakeSlowdown")
REPORTED = (*HELD_DOWN, "SwPowerCap", "SyncBoost", "ApplicationsClocksSetting")


class _Backend(Protocol):
    source: str

    def sample(self) -> dict[str, Any]: ...
    def close(self) -> dict[str, Any]: ...


def _ours(pid: int) -> bool:
    """Whether `pid` is this process or one of its descendants (the measured worker and its children)."""
    me = os.getpid()
    seen = 0
    while pid > 1 and seen < 64:
        if pid == me:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the command name: ppid
        seen += 1
    return False


class _Nvml:
    source = "nvml"

    def __init__(self, index: int):
        import pynvml

        self.nv = pynvml
        pynvml.nvmlInit()
        self.h = pynvml.nvmlDeviceGetHandleByIndex(index)
        self.max_sm = self._try(pynvml.nvmlDeviceGetMaxClockInfo, self.h, pynvml.NVML_CLOCK_SM)
        self.ecc0 = self._ecc()
        self.events = None
        try:  # XID events (a GPU fault the driver logged) since the process started
            self.events = pynvml.nvmlEventSetCreate()
            pynvml.nvmlDeviceRegisterEvents(self.h, pynvml.nvmlEventTypeXidCriticalError, self.events)
        except Exception:
            self.events = None
        self.xids: list[int] = []
        self.reasons = {
            name: getattr(pynvml, f"nvmlClocksEventReason{name}", None)
            or getattr(pynvml, f"nvmlClocksThrottleReason{name}", 0)
            for name in REPORTED
        }

    @staticmethod
    def _try(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:
            return None

    def _ecc(self) -> int | None:
        nv = self.nv
        return self._try(
            nv.nvmlDeviceGetTotalEccErrors, self.h, nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nv.NVML_VOLATILE_ECC
        )

    def sample(self) -> dict[str, Any]:
        nv, h = self.nv, self.h
        get_reasons = (
            getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or nv.nvmlDeviceGetCurrentClocksThrottleReasons
        )
        bits = self._try(get_reasons, h) or 0
        power = self._try(nv.nvmlDeviceGetPowerUsage, h)
        procs = self._try(nv.nvmlDeviceGetComputeRunningProcesses, h) or []
        util = self._try(nv.nvmlDeviceGetUtilizationRates, h)
        if self.events is not None:
            ev = self._try(nv.nvmlEventSetWait_v2, self.events, 0) if hasattr(nv, "nvmlEventSetWait_v2") else None
            if ev is not None and getattr(ev, "eventData", None):
                self.xids.append(int(ev.eventData))
        return {
            "sm_mhz": self._try(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_SM),
            "mem_mhz": self._try(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_MEM),
            "temp_c": self._try(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU),
            "power_w": power / 1000.0 if power is not None else None,
            "util_pct": getattr(util, "gpu", None),
            "reasons": [name for name, bit in self.reasons.items() if bit and bits & bit],
            "pids": sorted({int(p.pid) for p in procs}),
        }

    def close(self) -> dict[str, Any]:
        ecc1 = self._ecc()
        out = {
            "sm_max_mhz": self.max_sm,
            "ecc_uncorrected": (ecc1 - self.ecc0) if ecc1 is not None and self.ecc0 is not None else None,
            "xid": self.xids,
        }
        try:
            if self.events is not None:
                self.nv.nvmlEventSetFree(self.events)
            self.nv.nvmlShutdown()
        except Exception:
            pass
        return out


# `npu-smi info -t <type> -i <card> [-c <chip>]` prints "Key : Value" lines; the keys vary by model and driver,
# so they are matched loosely.
_KV = re.compile(r"^\s*([^:]+?)\s*:\s*(.*?)\s*$")
_NPU_FIELDS = {
    "freq_mhz": re.compile(r"aicore.*freq|freq.*aicore", re.I),
    "temp_c": re.compile(r"^(npu |chip )?temperature", re.I),
    "power_w": re.compile(r"power", re.I),
    "hbm_usage_pct": re.compile(r"hbm usage rate", re.I),
    "aicore_usage_pct": re.compile(r"aicore usage rate", re.I),
}


def parse_npu_smi(text: str) -> dict[str, Any]:
    """The fields of `npu-smi info -t common|usages|health` output that telemetry keeps (numbers where numeric)."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        m = _KV.match(line)
        if not m:
            continue
        key, value = m.group(1), m.group(2)
        if re.search(r"health", key, re.I):
            out.setdefault("health", value)
            continue
        for name, pat in _NPU_FIELDS.items():
            if name not in out and pat.search(key):
                num = re.match(r"-?\d+(\.\d+)?", value)
                out[name] = float(num.group(0)) if num else None
    return out


class _NpuSmi:
    source = "npu-smi"

    def __init__(self, card: int, chip: int = 0, exe: str = "npu-smi"):
        self.args = ["-i", str(card), "-c", str(chip)]
        self.exe = exe

    def _info(self, kind: str) -> str:
        try:
            done = subprocess.run(
                [self.exe, "info", "-t", kind, *self.args], capture_output=True, text=True, timeout=5, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout

    def sample(self) -> dict[str, Any]:
        out = parse_npu_smi(self._info("common") + "\n" + self._info("usages"))
        procs = self._info("proc-mem")
        out["pids"] = sorted({int(p) for p in re.findall(r"Process id\s*:\s*(\d+)", procs, re.I)})
        return out

    def close(self) -> dict[str, Any]:
        return {"health": parse_npu_smi(self._info("health")).get("health")}


def _backend(device_type: str, index: int) -> tuple[_Backend | None, str | None]:
    if device_type == "cuda":
        try:
            return _Nvml(index), None
        except ImportError:
            return None, "nvidia-ml-py is not installed"
        except Exception as exc:  # no driver, no device: said, not fatal
            return None, f"NVML unavailable: {type(exc).__name__}: {exc}"
    if device_type == "npu":
        exe = shutil.which("npu-smi")
        if exe is None:
            return None, "npu-smi is not on PATH"
        return _NpuSmi(index, exe=exe), None
    return None, f"no device telemetry on {device_type}"


def _span(values: list[Any]) -> dict[str, float] | None:
    xs = [float(v) for v in values if isinstance(v, (int, float))]
    if not xs:
        return None
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}


def summarise(source: str | None, samples: list[dict[str, Any]], closing: dict[str, Any]) -> dict[str, Any]:
    """One process's telemetry summary, with the anomalies that would make a regression `suspect`."""
    anomalies: list[str] = []
    held = sorted({r for s in samples for r in s.get("reasons", []) if r in HELD_DOWN})
    if held:
        share = sum(1 for s in samples if set(s.get("reasons", [])) & set(HELD_DOWN)) / max(len(samples), 1)
        anomalies.append(f"clocks held down ({', '.join(held)}) in {share:.0%} of samples")
    # A process on the device that is not ours. Inside a container NVML names host PIDs, which /proc here does not
    # show: one such process is taken to be the measured one, two or more at once mean another is there.
    others = sorted({p for s in samples for p in s.get("pids", []) if Path(f"/proc/{p}").exists() and not _ours(p)})
    unseen = max((sum(1 for p in s.get("pids", []) if not Path(f"/proc/{p}").exists()) for s in samples), default=0)
    if others:
        anomalies.append(f"another process on the device (pid {', '.join(map(str, others[:5]))})")
    elif unseen >= 2:
        anomalies.append(f"{unseen} processes on the device at once (PIDs of another namespace)")
    if closing.get("ecc_uncorrected"):
        anomalies.append(f"{closing['ecc_uncorrected']} uncorrected ECC error(s)")
    if closing.get("xid"):
        anomalies.append(f"XID event(s) {', '.join(map(str, closing['xid'][:5]))}")
    health = closing.get("health")
    if health and str(health).strip().upper() not in ("OK", "HEALTHY", "NORMAL"):
        anomalies.append(f"NPU health {health}")
    out: dict[str, Any] = {"source": source, "samples": len(samples), "anomalies": anomalies}
    for key in ("sm_mhz", "mem_mhz", "freq_mhz", "temp_c", "power_w", "util_pct", "hbm_usage_pct", "aicore_usage_pct"):
        span = _span([s.get(key) for s in samples])
        if span is not None:
            out[key] = span
    reasons = sorted({r for s in samples for r in s.get("reasons", [])})
    if reasons:
        out["clock_event_reasons"] = reasons
    if others:
        out["other_pids"] = others
    out.update({k: v for k, v in closing.items() if v not in (None, [])})
    return out


class Sampler:
    """`with Sampler(device_type, index) as tel: <run the measured process>`; then `tel.summary`."""

    def __init__(self, device_type: str, index: int = 0, interval_s: float = INTERVAL_S):
        self.device_type, self.index, self.interval_s = device_type, index, interval_s
        self.summary: dict[str, Any] = {}
        self._samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._backend: _Backend | None = None

    def __enter__(self) -> Sampler:
        self._backend, why = _backend(self.device_type, self.index)
        if self._backend is None:
            self.summary = {"source": None, "absent": why, "anomalies": []}
            return self
        self._thread = threading.Thread(target=self._loop, name="guardrail-telemetry", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        assert self._backend is not None
        while not self._stop.is_set():
            try:
                self._samples.append(self._backend.sample())
            except Exception:  # a failed sample is a gap, never a failed measurement
                pass
            if len(self._samples) > MAX_SAMPLES:
                self._samples = self._samples[::2]
            self._nap()

    def _nap(self) -> None:
        # Short sleeps, not Event.wait(timeout): a timed wait never wakes under libfaketime, which the suite's
        # clock check (scripts/test-clock) runs everything under. Stopping waits at most one slice.
        end = time.monotonic() + self.interval_s
        while not self._stop.is_set() and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))

    def __exit__(self, *exc: object) -> None:
        if self._backend is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            closing = self._backend.close()
        except Exception:
            closing = {}
        self.summary = summarise(self._backend.source, self._samples, closing)


def physical_index(device_type: str, env: dict[str, str] | None = None) -> int:
    """The device the measured process sees as its first, in the numbering NVML / npu-smi use (physical): the
    first entry of CUDA_VISIBLE_DEVICES / ASCEND_RT_VISIBLE_DEVICES when it is a number, else 0."""
    env = dict(os.environ if env is None else env)
    var = {"cuda": "CUDA_VISIBLE_DEVICES", "npu": "ASCEND_RT_VISIBLE_DEVICES"}.get(device_type)
    first = (env.get(var, "") if var else "").split(",")[0].strip()
    return int(first) if first.isdigit() else 0


class JobSampler:
    """The devices of a parallel job (one per rank, physical indices from the first visible one), each sampled
    like a single process's; `summaries(label)` gives one summary per rank, labelled "job 1 rank 0"..."""

    def __init__(self, device_type: str, world: int):
        first = physical_index(device_type)
        self.samplers = [Sampler(device_type, first + r) for r in range(max(world, 1))]

    def __enter__(self) -> JobSampler:
        for s in self.samplers:
            s.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for s in self.samplers:
            s.__exit__(*exc)

    def summaries(self, label: str) -> list[dict[str, Any]]:
        return [{**s.summary, "label": f"{label} rank {r}"} for r, s in enumerate(self.samplers)]


def result_telemetry(per_process: list[dict[str, Any]]) -> dict[str, Any]:
    """The result's `extra.telemetry`: each measured process's summary and, flattened, the anomalies seen."""
    anomalies = [
        f"{s.get('label') or f'process {i + 1}'}: {a}"
        for i, s in enumerate(per_process)
        for a in s.get("anomalies", [])
    ]
    source = next((s.get("source") for s in per_process if s.get("source")), None)
    out: dict[str, Any] = {"source": source, "processes": per_process, "anomalies": anomalies}
    if source is None and per_process:
        out["absent"] = per_process[0].get("absent")
    return out


def sample_now(device_type: str, index: int = 0) -> dict[str, Any]:
    """One sample, for `guardrail run`'s environment line and for tests on a real device."""
    with Sampler(device_type, index) as tel:
        time.sleep(INTERVAL_S * 2)
    return tel.summary
