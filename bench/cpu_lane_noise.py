"""Between-process noise of the CPU lane: N fresh processes per tiny workload, wall vs process CPU time.

    .venv/bin/python bench/cpu_lane_noise.py [--lane presubmit] [--processes 6] [--burn 0] [--json FILE]

Runs each workload of the lane as N fresh worker processes (the lane's own runner, CPU, tiny scale) and prints,
per workload and metric, the between-process CV: the spread of the per-process means (one mean per process, the
unit of independence) over their mean. Wall-time metrics (`denoise_step_latency`, `e2e_latency`, ...) are set
beside their process CPU time twins (`denoise_step_cpu_time`, `e2e_cpu_time`). The machine (date, nproc, CPU
model) and its load (os.getloadavg() before and after) are printed with the figures: on a shared machine the
load is half the result. `--burn K` starts K busy-looping processes for the duration (a known neighbour's load,
stopped at the end) to measure the lane under load on purpose.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

METRICS = (
    "denoise_step_latency",
    "denoise_step_cpu_time",
    "denoise_step_relative",
    "e2e_latency",
    "e2e_cpu_time",
    "text_encode_latency",
    "vae_decode_latency",
    "peak_memory",
)


def _burn(stop: Any) -> None:  # a neighbour: one core kept busy until told to stop
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def between_cv(repeats: list[list[float]]) -> float | None:
    """CV of the per-process means (sample SD / mean); None with fewer than 2 processes."""
    means = [statistics.fmean(r) for r in repeats if r]
    if len(means) < 2:
        return None
    return statistics.stdev(means) / statistics.fmean(means)


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    by_name = {m["name"]: m["repeats"] for m in result.get("metrics", [])}
    out: dict[str, Any] = {"status": result["status"], "metrics": {}}
    for name in METRICS:
        reps = by_name.get(name)
        if reps:
            means = [statistics.fmean(r) for r in reps]
            out["metrics"][name] = {
                "between_cv": between_cv(reps),
                "mean": statistics.fmean(means),
                "process_means": [round(v, 3) for v in means],
                "steps": len(reps[0]),
            }
    out["process_wall_s"] = result.get("extra", {}).get("process_wall_s")
    out["cpu_threads"] = (result.get("extra", {}).get("applied") or {}).get("cpu_threads")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lane", default="presubmit")
    ap.add_argument("--processes", type=int, default=6, help="fresh processes per workload")
    ap.add_argument("--workload", action="append", help="only these workloads (default: the lane's)")
    ap.add_argument("--burn", type=int, default=0, help="busy-looping neighbour processes while measuring")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = ap.parse_args()
    from runners import run_lane
    from runners.device import cpu_model

    stop = mp.Event()
    burners = [mp.Process(target=_burn, args=(stop,), daemon=True) for _ in range(args.burn)]
    for p in burners:
        p.start()
    load_before = os.getloadavg()
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    try:
        files = run_lane(
            args.lane,
            names=args.workload,
            device="cpu",
            scale="tiny",
            repeats=args.processes,
            out_dir=tempfile.mkdtemp(prefix="cpu-lane-noise-"),
            progress=False,
        )
    finally:
        stop.set()
        for p in burners:
            p.join(timeout=5)
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()
    doc: dict[str, Any] = {
        "date": f"{started:%Y-%m-%dT%H:%M:%SZ}",
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in load_after],
        "burn": args.burn,
        "processes": args.processes,
        "wall_s": round(wall, 1),
        "workloads": {},
    }
    for f in files:
        r = json.loads(Path(f).read_text())
        doc["workloads"][r["workload"]["name"]] = summarise(r)
    print(
        f"date {doc['date']}  nproc {doc['nproc']}  cpu {doc['cpu']}  burn {args.burn}  "
        f"loadavg before {doc['loadavg_before']} after {doc['loadavg_after']}  "
        f"{args.processes} processes/workload  {wall:.0f} s"
    )
    print(f"{'workload':28s} {'metric':24s} {'mean':>9s} {'between CV':>10s}")
    for name, w in doc["workloads"].items():
        for metric, m in w["metrics"].items():
            cv = "-" if m["between_cv"] is None else f"{m['between_cv']:.2%}"
            print(f"{name:28s} {metric:24s} {m['mean']:9.2f} {cv:>10s}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
