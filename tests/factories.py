"""Build guardrail.result/v1 documents for tests (plain dicts, written as real files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tests.timeline import iso


def result_doc(
    *,
    workload: str = "wan22-ti2v-5b-720p",
    lane: str = "nightly",
    hardware: str = "H100",
    commit: str = "c0ffee",
    started_at: str | None = None,
    run_id: str | None = None,
    metrics: dict[str, Any] | None = None,
    status: str = "ok",
    error: dict | None = None,
    branch: str | None = "main",
    pr: int | None = None,
) -> dict[str, Any]:
    started_at = started_at or iso(days=-2, hours=-7)
    metrics = metrics if metrics is not None else {"denoise_step_latency": [[1098.1, 1097.9, 1098.6]]}
    return {
        "schema": "guardrail.result/v1",
        "run": {
            "lane": lane,
            "started_at": started_at,
            "source": {
                "repo": "org/project",
                "commit": commit,
                "branch": branch,
                "pr": pr,
                "ci": {"provider": "github-actions", "run_id": run_id, "attempt": 1} if run_id else None,
            },
        },
        "environment": {
            "hardware": hardware,
            "device_type": "cuda",
            "device_count": 1,
            "software": {"torch": "2.9.0", "diffusers": "0.42.1"},
        },
        "workload": {"name": workload, "family": "wan2.2", "digest": f"sha256:{workload}", "spec": {}},
        "status": status,
        **({"error": error} if error else {}),
        "metrics": [
            {
                "name": name,
                "unit": "MiB" if "memory" in name else "ms",
                "direction": "higher_is_better" if name == "throughput" else "lower_is_better",
                "repeats": reps,
            }
            for name, reps in metrics.items()
        ],
    }


def noisy_repeats(
    level: float,
    *,
    repeats: int = 2,
    steps: int = 20,
    between_cv: float = 0.005,
    within_cv: float = 0.005,
    rng: np.random.Generator,
) -> list[list[float]]:
    """Two-level noise: each fresh process has its own offset, each step its own jitter."""
    out = []
    for _ in range(repeats):
        proc = level * (1 + rng.normal(0, between_cv))
        out.append([float(v) for v in proc * (1 + rng.normal(0, within_cv, steps))])
    return out


def write(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path
