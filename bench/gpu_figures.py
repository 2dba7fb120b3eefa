"""GPU figures for docs/runners.md: full-size synthetic runs with guidance on, harness overhead
(runner step latency vs. the bare transformer forwards of one step), within-process CV of step
latency and the spread between fresh processes.

    python bench/gpu_figures.py --out DIR --workload NAME [--workload NAME ...] [--steps 8] [--repeats 2]

The pinned workloads are copied with `--steps` denoising steps (the only change; `--steps 0` keeps the
pinned count), so that a full-size run fits the device budget; everything else (architecture, resolution,
frames, guidance) is as pinned.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

import yaml


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--workload", action="append", required=True)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--scale", default="full")
    ap.add_argument("--timeout", type=float, default=290.0, help="per process, seconds")
    args = ap.parse_args()

    from runners import run_lane

    src = Path(__file__).resolve().parent.parent / "workloads"
    tmp = Path(tempfile.mkdtemp(prefix="gpu-figures-"))
    for name in args.workload:
        data = yaml.safe_load((src / f"{name}.yaml").read_text())
        if args.steps:
            data["generation"]["num_inference_steps"] = args.steps
            data.setdefault("tiny", {}).setdefault("generation", {})["num_inference_steps"] = args.steps
        data["tiny"]["warmup_generations"], data["tiny"]["warmup_steps"] = 0, 2
        data["warmup_generations"] = 0  # warm-up = the first 2 steps of the measured generation
        data["warmup_steps"] = 2
        data["timeout_s"] = args.timeout
        (tmp / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    os.environ["GUARDRAIL_OVERHEAD_CHECK"] = "1"
    files = run_lane(
        "release",
        names=args.workload,
        device=args.device,
        scale=args.scale,
        repeats=args.repeats,
        out_dir=args.out,
        progress=False,
        workloads_dir=tmp,
    )
    for f in files:
        r = json.loads(Path(f).read_text())
        print(f"== {r['workload']['name']}  status={r['status']}  error={r.get('error')}")
        print(f"   hardware={r['environment']['hardware']}  software={r['environment']['software']}")
        m = {x["name"]: x["repeats"] for x in r["metrics"]}
        if "denoise_step_latency" in m:
            per = m["denoise_step_latency"]
            meds = [statistics.median(p) for p in per]
            cvs = [statistics.pstdev(p) / statistics.mean(p) for p in per if len(p) > 1]
            print(f"   step latency ms per process: {[[round(x, 1) for x in p] for p in per]}")
            print(f"   within-process CV: {[f'{c:.2%}' for c in cvs]}")
            spread = (max(meds) - min(meds)) / statistics.mean(meds) if meds else 0.0
            print(f"   process medians ms: {[round(x, 1) for x in meds]}  spread (max-min)/mean: {spread:.2%}")
        for key in (
            "e2e_latency",
            "text_encode_latency",
            "denoise_latency",
            "vae_decode_latency",
            "peak_memory",
            "reserved_memory",
            "load_time",
            "throughput",
        ):
            if key in m:
                print(f"   {key}: {[[round(x, 2) for x in p] for p in m[key]]}")
        for oc in r["extra"].get("overhead_check") or []:
            if oc:
                print(
                    f"   overhead: runner step median {oc['runner_step_median_ms']:.1f} ms, bare forwards "
                    f"{oc['bare_step_median_ms']:.1f} ms ({oc['forwards_per_step']} forwards/step), "
                    f"overhead {oc['overhead_fraction']:+.2%}"
                )
        fp = r["extra"].get("output_fingerprint") or []
        print(
            f"   fingerprint sha256_u8: {[x and x['sha256_u8'][:16] for x in fp]}  "
            f"nonfinite: {[x and x['nonfinite'] for x in fp]}"
        )


if __name__ == "__main__":
    main()
