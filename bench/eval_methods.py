"""The practices we are compared against, re-implemented from their documented rules.

- `ten_pct_three_nightlies`: alert when three consecutive nightlies are each more than 10% worse than the
  baseline value (today's vLLM-Omni practice); as a change detector, it re-baselines after each alert.
- `bencher_t_test`: Bencher's t-test threshold: the last <= 64 values, a Student-t prediction interval with
  boundary 0.99 (one-sided upper for a regression; both sides as a change detector).
- Apache Otava with its defaults (window 50, p 0.001, min magnitude 0): the real package, run in its own
  virtual environment through bench/otava_runner.py (see `OtavaRunner`).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy.special import stdtrit

BENCHER_MAX_SAMPLES = 64
BENCHER_BOUNDARY = 0.99
BENCHER_MIN_SAMPLES = 2
TEN_PCT = 0.10
NIGHTLIES = 3


def bencher_limits(history: np.ndarray) -> tuple[float, float] | None:
    """(lower, upper) prediction limits of the next value from the last 64 values, or None if too few."""
    h = history[-BENCHER_MAX_SAMPLES:]
    n = h.size
    if n < BENCHER_MIN_SAMPLES:
        return None
    mean, sd = float(h.mean()), float(h.std(ddof=1))
    half = float(stdtrit(n - 1, BENCHER_BOUNDARY)) * sd * math.sqrt(1.0 + 1.0 / n)
    return mean - half, mean + half


def bencher_regression(history: np.ndarray, candidate: float, direction: str = "lower_is_better") -> bool:
    lim = bencher_limits(history)
    if lim is None:
        return False
    return candidate > lim[1] if direction == "lower_is_better" else candidate < lim[0]


def ten_pct_regression(reference: float, next_values: np.ndarray, direction: str = "lower_is_better") -> bool:
    """Three consecutive nightlies each more than 10% worse than the reference."""
    if next_values.size < NIGHTLIES:
        return False
    v = next_values[:NIGHTLIES]
    if direction == "lower_is_better":
        return bool(np.all(v > reference * (1 + TEN_PCT)))
    return bool(np.all(v < reference * (1 - TEN_PCT)))


def ten_pct_change_points(x: np.ndarray, *, warmup: int = 10) -> list[tuple[int, int]]:
    """Online: (change index, alarm index) pairs; the reference is the mean of the first `warmup` values and
    is reset to the new level after each alarm (a release engineer updating the baseline)."""
    out: list[tuple[int, int]] = []
    if x.size <= warmup:
        return out
    ref = float(x[:warmup].mean())
    run = 0
    sign = 0
    for t in range(warmup, x.size):
        rel = x[t] / ref - 1.0
        s = 1 if rel > TEN_PCT else (-1 if rel < -TEN_PCT else 0)
        if s != 0 and s == sign:
            run += 1
        else:
            run, sign = (1, s) if s != 0 else (0, 0)
        if run >= NIGHTLIES:
            start = t - NIGHTLIES + 1
            out.append((start, t))
            ref = float(x[start : t + 1].mean())
            run, sign = 0, 0
    return out


def bencher_change_points(x: np.ndarray, *, warmup: int = 5, merge_gap: int = 3) -> list[tuple[int, int]]:
    """Online: (change index, alarm index) pairs; consecutive alarms within `merge_gap` are one change."""
    out: list[tuple[int, int]] = []
    last_alarm = -(10**9)
    for t in range(warmup, x.size):
        lim = bencher_limits(x[:t])
        if lim is None:
            continue
        if x[t] < lim[0] or x[t] > lim[1]:
            if t - last_alarm > merge_gap:
                out.append((t, t))
            last_alarm = t
    return out


class OtavaRunner:
    """Runs the real apache-otava package (in a separate venv) over batches of series."""

    def __init__(self, python: str | None):
        self.python = python
        self.version: str | None = None
        if python:
            res = subprocess.run(
                [python, "-c", "import importlib.metadata as m; print(m.version('apache-otava'))"],
                capture_output=True,
                text=True,
            )
            self.version = res.stdout.strip() if res.returncode == 0 else None
            if self.version is None:
                self.python = None

    @property
    def available(self) -> bool:
        return self.python is not None

    def change_points(
        self,
        series: list[list[float]],
        *,
        window_len: int = 50,
        max_pvalue: float = 0.001,
        min_magnitude: float = 0.0,
    ) -> list[list[int]]:
        if not self.python:
            raise RuntimeError("Otava is not available")
        job = {
            "window_len": window_len,
            "max_pvalue": max_pvalue,
            "min_magnitude": min_magnitude,
            "series": series,
        }
        res = subprocess.run(
            [self.python, str(Path(__file__).with_name("otava_runner.py"))],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(res.stdout)


def find_otava_python(explicit: str | None = None, *, install: bool = True) -> str | None:
    """OTAVA_PYTHON, else ~/.cache/guardrail-bench/otava-venv (created with `pip install apache-otava`)."""
    for cand in (explicit, os.environ.get("OTAVA_PYTHON")):
        if cand and Path(cand).exists():
            return cand
    venv = Path.home() / ".cache" / "guardrail-bench" / "otava-venv"
    py = venv / "bin" / "python"
    if py.exists():
        return str(py)
    if not install:
        return None
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "apache-otava==0.8.0"],
            check=True,
            capture_output=True,
            timeout=600,
        )
    except (subprocess.SubprocessError, OSError):
        return None
    return str(py)
