"""The parallel matrix's single-device references at full size, through the launcher the multi-GPU run uses
(docs/runners.md, "Parallel strategies"): each matrix workload copied with `parallel: {}` (world 1: torchrun, one
rank, a process group, nothing applied), so one lane run (`runners.run_lane`, what `guardrail run` calls) gives
the single-device reference job and the 1-rank jobs, with scaling efficiency (≈ 1 by construction) and the
equivalence of the two pictures.

    python bench/parallel_refs.py --out DIR [--workload NAME ...] [--steps 4] [--repeats 1]

`--steps` cuts the pinned step count as bench/gpu_figures.py does (the first 2 steps are warm-up), so a full-size
run fits a device budget; everything else is as pinned. Prints one line per workload and writes the result files
under DIR.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _matrix_workloads() -> list[str]:
    return [yaml.safe_load(p.read_text())["workload"] for p in sorted((ROOT / "workloads" / "matrix").glob("*.yaml"))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/parallel_refs.py")
    ap.add_argument("--out", required=True)
    ap.add_argument("--workload", action="append", help="default: every matrix's workload")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--scale", default="full")
    ap.add_argument("--timeout", type=float, default=290.0, help="per job, seconds")
    args = ap.parse_args(argv)

    names = args.workload or _matrix_workloads()
    wdir = Path(tempfile.mkdtemp(prefix="parallel-refs-"))
    for name in names:
        data = yaml.safe_load((ROOT / "workloads" / f"{name}.yaml").read_text())
        if args.steps:
            data["generation"]["num_inference_steps"] = args.steps
            data.setdefault("tiny", {}).setdefault("generation", {})["num_inference_steps"] = args.steps
        data["warmup_generations"], data["warmup_steps"] = 0, 2
        data["timeout_s"] = args.timeout
        data["parallel"] = {}
        (wdir / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    from runners import run_lane  # what `guardrail run` calls

    files = run_lane("presubmit", names=names, device=args.device, scale=args.scale, repeats=args.repeats,
                     out_dir=Path(args.out), progress=False, workloads_dir=wdir)  # fmt: skip
    rc = 0
    for f in files:
        r = json.loads(Path(f).read_text())
        rc = rc or (r["status"] != "ok")
        m = {x["name"]: x["repeats"] for x in r["metrics"]}
        par = (r.get("extra") or {}).get("parallel") or {}
        ref = par.get("reference")

        def med(key: str, m: dict = m) -> float | None:
            xs = [x for rep in m.get(key, []) for x in rep]
            return round(statistics.median(xs), 4) if xs else None

        print(json.dumps({
            "workload": r["workload"]["name"], "status": r["status"], "error": r.get("error"),
            "job_step_ms": med("denoise_step_latency"),
            "reference_step_ms": round(statistics.median(ref["step_latency_ms"]), 4) if ref else None,
            "scaling_efficiency": med("scaling_efficiency"), "psnr": med("parallel_psnr"),
            "ssim": med("parallel_ssim"), "max_abs_diff": med("parallel_max_abs_diff"),
            "peak_memory": med("peak_memory_rank0") or med("peak_memory"),
            "applied": (par.get("applied") or {}).get("backend"),
            "process_wall_s": (r.get("extra") or {}).get("process_wall_s"),
            "reference_wall_s": ref.get("process_wall_s") if ref else None, "file": Path(f).name,
        }), flush=True)  # fmt: skip
    return rc


if __name__ == "__main__":
    sys.exit(main())
