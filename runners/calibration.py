"""A fixed CPU calibration kernel, timed between the denoising steps of a CPU generation.

Why: on the shared and virtual CPUs the CPU lane runs on, a process's speed drifts by 5-25% for seconds at a time
(a host-level neighbour; docs/runners.md, "The CPU lane"), and every stage of one process moves with it. A fixed
piece of the same kind of work (matmul, GELU, layer norm on fixed seeded tensors, one thread) timed right after
each step samples the speed of that moment, so step CPU time / calibration CPU time (`denoise_step_relative`)
keeps what the code under test changed and divides out what the machine did. Timed after every step, not once
before and after the loop: measured on the 2-core VM (8 fresh processes, tiny Wan2.2 transformer), the step's CPU
time varied 4.7% between processes, its ratio to an interleaved calibration 1.45%, to one before and one after the
loop 3.8%.

Limitations: a change that slows torch's CPU kernels themselves (a different torch build, thread settings) slows
the calibration too and is partly divided out of the ratio; the step CPU time beside it still shows it. And the
kernel tracks the machine only in part: when a neighbour slowed the tiny steps by 27-45%, it slowed the kernel by
19-25%, so the ratio still drifts from run to run (up to 16%), which is why the CPU lane judges it at 25%.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

# The kernel: ROUNDS x (a [N x N] @ [N x N] matmul, GELU, layer norm, a sum). About 9 ms of one thread on a
# 2-core EPYC VM: short beside the tiny steps (20-140 ms), long enough for the process clock.
N = 192
ROUNDS = 40
SEED = 20261203


@dataclass
class Calibration:
    """The kernel with its inputs built once; `__call__` runs one round set and returns its CPU milliseconds."""

    n: int = N
    rounds: int = ROUNDS
    _x: Any = field(default=None, repr=False)
    _w: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        import torch

        g = torch.Generator(device="cpu").manual_seed(SEED)
        self._x = torch.randn(self.n, self.n, generator=g)
        self._w = torch.randn(self.n, self.n, generator=g) / self.n**0.5

    def __call__(self) -> float:
        import torch
        import torch.nn.functional as F

        t = time.process_time()
        with torch.inference_mode():
            y = self._x
            acc = 0.0
            for _ in range(self.rounds):
                y = F.layer_norm(F.gelu(y @ self._w), (self.n,))
                acc += float(y.sum())
        del acc
        return (time.process_time() - t) * 1000.0

    def describe(self) -> dict[str, Any]:
        return {
            "kernel": f"{self.rounds} x ([{self.n}x{self.n}] matmul, gelu, layer_norm, sum), fp32, seeded",
            "clock": "process CPU time",
            "when": "after every step of the measured generation",
        }


def relative(step_cpu_ms: list[float], cal_ms: list[float]) -> list[float]:
    """Each step's CPU time over the mean of the calibrations either side of it (calibration i runs after step i;
    the first step, with none before it, uses the one after). [] when the lengths disagree."""
    if not step_cpu_ms or len(cal_ms) != len(step_cpu_ms):
        return []
    out = []
    for i, step in enumerate(step_cpu_ms):
        around = cal_ms[max(0, i - 1) : i + 1]
        ref = sum(around) / len(around)
        out.append(step / ref if ref > 0 else 0.0)
    return out
