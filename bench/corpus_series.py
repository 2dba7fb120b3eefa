"""Read the vLLM-Omni nightly corpus into time-ordered metric series (json module only).

A series is (hardware folder, test_name, benchmark_params.name, metric); its values are per-run
summaries (a mean, a p99, a peak) ordered by the entry's timestamp, then the build number.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "vllm-omni-nightly"

# (metric name, direction) read from `result`; stage durations are added per stage key.
TOP_METRICS = {
    "latency_mean": "lower_is_better",
    "latency_p99": "lower_is_better",
    "peak_memory_mb_max": "lower_is_better",
    "peak_memory_mb_mean": "lower_is_better",
    "throughput_qps": "higher_is_better",
}


@dataclass
class Series:
    key: tuple[str, str, str, str]  # (hardware, test_name, config name, metric)
    direction: str
    times: list[str] = field(default_factory=list)
    builds: list[str] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    @property
    def workload(self) -> str:
        return f"{self.key[0]}/{self.key[1]}/{self.key[2]}"

    @property
    def metric(self) -> str:
        return self.key[3]


def _entries(corpus: Path):
    for path in sorted(corpus.glob("*/*/diffusion_result_*.json")):
        hardware = "H100" if path.parts[-3] == "buildkite_nightly_raw" else "H200"
        build = path.parts[-2]
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(data, list):
            continue
        for entry in data:
            if isinstance(entry, dict) and isinstance(entry.get("result"), dict):
                yield hardware, build, entry


def load_series(corpus: Path = DEFAULT_CORPUS, *, min_points: int = 8) -> list[Series]:
    """Every metric series with at least `min_points` positive values, oldest first."""
    series: dict[tuple[str, str, str, str], Series] = {}
    rows = []
    for hardware, build, e in _entries(corpus):
        test = str(e.get("test_name", ""))
        config = str((e.get("benchmark_params") or {}).get("name", ""))
        ts = str(e.get("timestamp", ""))
        res = e["result"]
        metrics = {m: (res.get(m), d) for m, d in TOP_METRICS.items()}
        for stage, v in (res.get("stage_durations_mean") or {}).items():
            metrics[f"stage_mean:{stage}"] = (v, "lower_is_better")
        rows.append((ts, build, hardware, test, config, str(e.get("commit_sha") or ""), metrics))
    rows.sort(key=lambda r: (r[0], r[1]))
    for ts, build, hardware, test, config, commit, metrics in rows:
        for metric, (v, direction) in metrics.items():
            if not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
                continue
            key = (hardware, test, config, metric)
            s = series.setdefault(key, Series(key, direction))
            s.times.append(ts)
            s.builds.append(build)
            s.commits.append(commit or f"build-{build}")
            s.values.append(float(v))
    return [s for s in series.values() if len(s.values) >= min_points]
