"""Every supported cell of the parallel matrices that this CPU can run, through `guardrail run`'s own runner at tiny
scale (gloo), with its equivalence and scaling efficiency; the cells it cannot run here listed with the reason.

    .venv/bin/python bench/matrix_cpu.py [--lane release] [--repeats 1] [--only SUBSTRING] [--json FILE]
        [--oversubscribe] [--dry-run]

`--oversubscribe`: cells of more ranks than cores run too (`guardrail run --oversubscribe`: ranks share the cores,
the picture is validated, no scaling efficiency). `--dry-run`: the classification alone, nothing runs.

A cell is named `BASE@TAG` (guardrail.matrix), as `guardrail run --workload BASE@TAG` takes it. Each cell runs as one
workload execution: the single-device reference job, then `--repeats` fresh torch.distributed jobs. Refused here:
what `runners.parallel` refuses on CPU before launch (cache-dit's strategies and ring need an accelerator, a world
above the cores) — the same check `guardrail run` makes, so the list is what a user would be told.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def metric_means(result: dict[str, Any]) -> dict[str, float]:
    import statistics

    out = {}
    for m in result.get("metrics", []):
        vals = [v for rep in m["repeats"] for v in rep]
        if vals:
            out[m["name"]] = statistics.fmean(vals)
    return out


def _doc(started: Any, args: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    from runners.device import cpu_model

    return {
        "date": f"{started:%Y-%m-%dT%H:%M:%SZ}",
        "cpu": cpu_model(),
        "nproc": os.cpu_count(),
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "lane": args.lane,
        "oversubscribe": args.oversubscribe,
        "repeats": args.repeats,
        "cells": rows,
    }


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lane", default="release", help="the matrix lane whose cells run (release: all)")
    ap.add_argument("--repeats", type=int, default=1, help="parallel jobs per cell (beside the reference job)")
    ap.add_argument("--only", action="append", help="only cells whose name contains this (repeatable)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--oversubscribe", action="store_true", help="let a job start more ranks than cores")
    ap.add_argument("--dry-run", action="store_true", help="classify the cells; run nothing")
    args = ap.parse_args()
    from guardrail.errors import InputError
    from guardrail.matrix import load_matrices, plan
    from runners import run_lane
    from runners.parallel import check_workload
    from runners.workloads import select

    started = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    out_dir = Path(tempfile.mkdtemp(prefix="matrix-cpu-"))
    for _, m in load_matrices():
        for p in plan(m, args.lane):
            name = p.cell.workload(m.workload)
            if args.only and not any(o in name for o in args.only):
                continue
            row: dict[str, Any] = {"family": m.family, "cell": name, "world": p.cell.world}
            rows.append(row)
            if not p.supported:
                row.update(status="unsupported", reason=p.reason)
                continue
            if p.cell.single_device and p.cell.get("cache") == "none" and not p.cell.get("hsdp"):
                row.update(status="reference", reason="the single-device cell: every parallel cell's reference job")
                continue
            ((path, spec),) = select("nightly", [name])
            try:
                check_workload(path, spec, "tiny", "cpu", oversubscribe=args.oversubscribe)
            except InputError as exc:
                row.update(status="not on this CPU", reason=str(exc).split(": ", 2)[-1])
                continue
            if args.dry_run:
                row.update(status="would run", reason=f"world {p.cell.world}")
                continue
            t0 = time.perf_counter()
            try:
                (f,) = run_lane(
                    "nightly", names=[name], device="cpu", scale="tiny", repeats=args.repeats, out_dir=out_dir,
                    progress=False, oversubscribe=args.oversubscribe,
                )  # fmt: skip
            except InputError as exc:  # the lane's other checks (a cache schedule the tiny blocks cannot fit)
                row.update(status="not on this CPU", reason=str(exc).split(": ", 2)[-1])
                continue
            r = json.loads(Path(f).read_text())
            means = metric_means(r)
            par = (r.get("extra") or {}).get("parallel") or {}
            row.update(
                status=r["status"],
                wall_s=round(time.perf_counter() - t0, 1),
                error=(r.get("error") or {}).get("message"),
                step_ms=means.get("denoise_step_latency"),
                efficiency=means.get("scaling_efficiency"),
                psnr=means.get("parallel_psnr"),
                ssim=means.get("parallel_ssim"),
                max_abs_diff=means.get("parallel_max_abs_diff"),
                output_mismatch=par.get("output_mismatch"),
                cached_steps=means.get("cache_cached_steps"),
                applied=par.get("applied"),
                oversubscribed=par.get("oversubscribed"),
            )
            print(f"{name:55s} {row['status']:12s} {row['wall_s']:6.1f} s", flush=True)
            if args.json:  # after every cell: a run stopped part-way keeps what it measured
                _write(args.json, _doc(started, args, rows))
    doc = _doc(started, args, rows)
    print(f"\ndate {doc['date']}  cpu {doc['cpu']}  nproc {doc['nproc']}  lane {args.lane}  repeats {args.repeats}")
    print(f"{'cell':55s} {'status':16s} {'step ms':>8s} {'eff':>6s} {'PSNR':>6s} {'SSIM':>8s} {'max|d|':>8s} cached")
    for row in rows:
        if row["status"] in ("ok", "infra_error", "timeout"):

            def f(v: Any, fmt: str) -> str:
                return "-" if v is None else format(v, fmt)

            print(
                f"{row['cell']:55s} {row['status']:16s} {f(row['step_ms'], '8.1f')} {f(row['efficiency'], '6.2f')} "
                f"{f(row['psnr'], '6.1f')} {f(row['ssim'], '8.5f')} {f(row['max_abs_diff'], '8.1e')} "
                f"{f(row['cached_steps'], 'g')}" + (f"  {row['error'][:80]}" if row.get("error") else "")
            )
    for status in ("would run", "not on this CPU", "unsupported"):
        n = [r for r in rows if r["status"] == status]
        print(f"\n{status}: {len(n)} cells")
        for reason in sorted({r["reason"] for r in n}):
            cells = [r["cell"].split("@", 1)[-1] for r in n if r["reason"] == reason]
            print(f"  {len(cells):3d}  {reason[:110]}  (e.g. {', '.join(cells[:3])})")
    if args.json:
        _write(args.json, doc)


if __name__ == "__main__":
    main()
