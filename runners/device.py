"""Device layer: pick npu/cuda/cpu, time on the device, read its memory, name it.

torch (and torch_npu) are imported lazily: `import runners` works without them.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from typing import Any

from guardrail.errors import InputError

DEVICE_TYPES = ("auto", "npu", "cuda", "cpu")


def _npu_available() -> bool:
    try:
        import torch_npu
    except ImportError:
        return False
    try:
        return bool(torch_npu.npu.is_available()) and torch_npu.npu.device_count() > 0
    except Exception:  # a broken driver install is "no NPU", auto falls through
        return False


def resolve(requested: str) -> str:
    """auto -> npu (torch_npu importable and a device present) else cuda else cpu."""
    if requested not in DEVICE_TYPES:
        raise InputError(f"unknown device {requested!r}; known: {', '.join(DEVICE_TYPES)}", field="--device")
    if requested == "npu":
        try:
            import torch_npu  # noqa: F401  (only: is it installed and importable)
        except ImportError:
            raise InputError(
                "--device npu needs torch_npu, which is not installed; install the 'npu' extra "
                "(pip install 'perf-guardrail[npu]') on a machine with the Ascend CANN toolkit",
                field="--device",
            ) from None
        return "npu"
    if requested == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InputError("--device cuda but torch sees no CUDA device", field="--device")
        return "cuda"
    if requested == "cpu":
        return "cpu"
    if _npu_available():
        return "npu"
    try:
        import torch

        if torch.cuda.is_available():
            return "cuda"
    except ImportError:
        pass
    return "cpu"


# The CPU lane's threads: one intra-op thread and one inter-op thread. On a 2-core machine shared with other
# jobs, two OpenMP threads that wait on each other at every op's barrier turn any neighbour's load into a
# stall of the whole op (a tiny step measured 4 ms alone and 95 ms beside a busy neighbour); one thread only
# loses its time slice, which process CPU time does not count. GUARDRAIL_CPU_THREADS overrides the count.
CPU_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def cpu_threads_wanted() -> int:
    raw = os.environ.get("GUARDRAIL_CPU_THREADS", "1")
    try:
        n = int(raw)
    except ValueError:
        raise InputError(f"not an integer: {raw!r}", field="GUARDRAIL_CPU_THREADS") from None
    if n < 1:
        raise InputError(f"must be at least 1, got {n}", field="GUARDRAIL_CPU_THREADS")
    return n


def pin_cpu_threads() -> dict[str, object]:
    """Pin the process's CPU threads before torch is first imported (OpenMP reads its environment once, when
    the library loads) and return what is now in effect (`thread_settings`)."""
    n = cpu_threads_wanted()
    for var in CPU_THREAD_ENV:
        os.environ[var] = str(n)
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or inter-op work already started: record what is in effect
        pass
    return thread_settings()


def thread_settings() -> dict[str, object]:
    """The CPU threads in effect: torch's intra-/inter-op counts and the OpenMP/BLAS environment."""
    import torch

    return {
        "intra_op": torch.get_num_threads(),
        "inter_op": torch.get_num_interop_threads(),
        "env": {var: os.environ.get(var) for var in CPU_THREAD_ENV},
    }


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


@dataclass
class Device:
    type: str  # npu | cuda | cpu

    @property
    def torch_device(self) -> str:
        return self.type if self.type == "cpu" else f"{self.type}:0"

    @property
    def _mod(self) -> Any:
        import torch

        if self.type == "npu":
            import torch_npu  # noqa: F401  (registers torch.npu)
        return getattr(torch, self.type) if self.type in ("cuda", "npu") else None

    def name(self) -> str:
        if self.type == "cpu":
            return cpu_model()
        return str(self._mod.get_device_name(0))

    def count(self) -> int:
        return 1 if self.type == "cpu" else int(self._mod.device_count())

    def synchronize(self) -> None:
        if self._mod is not None:
            self._mod.synchronize()

    def event(self) -> Mark:
        """A point on the device's timeline (device event; wall clock and process CPU time on CPU)."""
        if self._mod is None:
            return Mark(wall=time.perf_counter(), cpu=time.process_time())
        ev = self._mod.Event(enable_timing=True)
        ev.record()
        return Mark(event=ev)

    def reset_peak(self) -> None:
        if self._mod is not None:
            self._mod.reset_peak_memory_stats()
        else:
            _cpu_peak_reset()

    def peak_mib(self) -> float:
        if self._mod is not None:
            return self._mod.max_memory_allocated() / 2**20
        return _cpu_peak_mib()

    def reserved_mib(self) -> float:
        if self._mod is not None:
            return self._mod.max_memory_reserved() / 2**20
        return _cpu_rss_mib()

    def empty_cache(self) -> None:
        if self._mod is not None:
            self._mod.empty_cache()


@dataclass
class Mark:
    event: Any = None
    wall: float | None = None
    # Process CPU time (all threads) at the mark, on CPU only: on a shared machine it leaves out the time the
    # process waited for a core, which wall time counts (docs/runners.md, "The CPU lane").
    cpu: float | None = None

    def ms_until(self, later: Mark) -> float:
        """Milliseconds from this mark to a later one (call after synchronize on devices)."""
        if self.event is not None:
            return float(self.event.elapsed_time(later.event))
        assert self.wall is not None and later.wall is not None
        return (later.wall - self.wall) * 1000.0

    def cpu_ms_until(self, later: Mark) -> float | None:
        """Process CPU milliseconds from this mark to a later one; None off CPU (device time is not CPU time)."""
        if self.cpu is None or later.cpu is None:
            return None
        return (later.cpu - self.cpu) * 1000.0


# CPU "memory": the process's resident set. Peak is read from /proc (VmHWM), reset via clear_refs
# where the kernel allows it (else the peak is since process start, still one number per process).
def _cpu_peak_reset() -> None:
    # Hand the allocator's free heap back first, so the peak starts from what the process holds, not from what
    # glibc happened to keep of the warm-up generation (measured: the tiny Wan2.2's peak CV between processes
    # 3.4% -> 0.6%; the tiny Qwen's, up to 10% apart, did not steady: docs/runners.md, "The calibrated step ratio").
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _proc_status_kib(key: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def _cpu_peak_mib() -> float:
    v = _proc_status_kib("VmHWM")
    if v is None:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return v / 1024


def _cpu_rss_mib() -> float:
    v = _proc_status_kib("VmRSS")
    return (v or 0.0) / 1024
