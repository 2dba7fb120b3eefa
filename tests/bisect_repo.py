"""A real git repository for the bisection tests: a tiny numpy workload over N commits, one of which doubles its
work (an extra block of matrix multiplies), run by the external-command engine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

WORKLOAD = "tiny-matmul"
HARDWARE = "bisect-test-cpu"
# The slow commit doubles the work: a commit reads bad only if it carries 30% of it, so a shared test machine's
# load drift between commits (a few %) never reads as a step (`guardrail bisect --threshold`, docs/bisect.md).
THRESHOLD = ("--threshold", "0.3")

BENCH = '''"""A tiny workload: rounds of matrix multiplies, timed per round, written as pytest-benchmark JSON."""
import json, os, time
os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"  # one thread: CPU time = the work
import numpy as np

BLOCKS = {blocks}  # the slow commit adds a block
rng = np.random.default_rng(0)
a = rng.standard_normal((96, 96))
ref = a.copy()
for _ in range(20):  # warm-up: BLAS start-up is not the workload
    a = np.tanh(a @ a)
    ref = np.tanh(ref @ ref)
times = []
for _ in range(6):
    # CPU time, not wall time, and in units of a fixed reference block timed just before it in the same round:
    # the test machine is shared, and another process on the sibling core slows both alike, so neither the
    # other processes' load nor its drift between commits reads as the workload's own
    # (a GPU workload would be timed on the device; see runners.device)
    t0 = time.process_time()
    for _ in range(150):
        ref = np.tanh(ref @ ref)
    t1 = time.process_time()
    for _ in range(BLOCKS * 150):
        a = np.tanh(a @ a)
    times.append(0.01 * (time.process_time() - t1) / (t1 - t0))  # 10 ms per reference block
doc = {{
    "datetime": "2026-11-22T12:00:00Z",
    "version": "4.0.0",
    "machine_info": {{"cpu": {{"brand_raw": "{hardware}"}}}},
    "benchmarks": [{{"name": "{workload}", "fullname": "{workload}", "stats": {{"data": times}}}}],
}}
with open("result.json", "w") as f:
    json.dump(doc, f)
'''


def _git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_AUTHOR_DATE": "2026-11-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2026-11-01T00:00:00Z", "PATH": "/usr/bin:/bin"}  # fmt: skip
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()  # fmt: skip


def build_repo(repo: Path, n: int = 16, slow_at: int = 11, fail_at: tuple[int, ...] = ()) -> list[str]:
    """`n` commits (position 0 the good end); from position `slow_at` on the workload does twice the work;
    at the positions in `fail_at` the workload exits 1 (a broken build: the commit is skipped).
    Returns the SHAs, oldest first."""
    repo.mkdir(parents=True, exist_ok=True)
    _git(repo, "init", "-q", "-b", "main")
    (repo / "workloads").mkdir()
    spec = {
        "name": WORKLOAD,
        "family": "tiny",
        "lanes": ["nightly"],
        "engine": "command",
        "timeout_s": 60,
        "command": {
            # the command engine runs in a work directory of its own; the checkout comes from the bisection
            "argv": ["sh", "-c", f'exec {sys.executable} "$GUARDRAIL_BISECT_CHECKOUT/bench.py"'],
            "output": "result.json",
            "adapter": "pytest-benchmark",
        },
    }
    (repo / "workloads" / f"{WORKLOAD}.yaml").write_text(yaml.safe_dump(spec))
    shas = []
    for i in range(n):
        bench = BENCH.format(blocks=2 if i >= slow_at else 1, hardware=HARDWARE, workload=WORKLOAD)
        if i in fail_at:
            bench = "raise SystemExit(1)\n"
        (repo / "bench.py").write_text(bench)
        (repo / "CHANGES").write_text(f"change {i}\n")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", f"change {i}" + (" (slower: an extra block)" if i == slow_at else ""))
        shas.append(_git(repo, "rev-parse", "HEAD"))
    return shas
