"""Optimisations measured through the runner (docs/runners.md, "Optimisations on the H200"): eager vs regional
compile, attention backends side by side, cache-dit's cached/computed steps, speed-up and output equivalence
against a no-cache run of the same seed.

    python bench/gpu_optim.py --plan compile|attention|attention-flash|cache|cache-probe [--plan ...] --out DIR
                              [--device cuda] [--scale full] [--steps N] [--budget-s 500]
    python bench/gpu_optim.py --render bench/results/gpu_optim_h200_*.json     # the tables again

Every variant is a copy of a pinned workload with only the option under test (and, where the plan says so,
the step count) changed, run by `runners.run_lane` as one fresh process (the real worker, hooks, events and
result file). The raw results of all variants go into one JSON file per plan under --out, beside a text table.
A variant that would start after --budget-s seconds is skipped (and listed), so a device call ends in time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

WORKLOADS = Path(__file__).resolve().parent.parent / "workloads"
WAN = "wan22-ti2v-5b-720p"
QWEN = "qwen-image-edit-2511-1024"
CACHE = "qwen-image-edit-2511-1024-cache-dit"
EQ_METRICS = ["cache_psnr", "cache_ssim", "cache_max_abs_diff"]


def plans(steps: int | None, scale: str = "full") -> dict[str, list[dict[str, Any]]]:
    """Each plan: variants (label, source workload, options, steps or None for the pinned count, extras)."""
    s_wan, s_qwen = steps or 6, steps or 8
    compile_plan = [
        {"label": "wan eager", "src": WAN, "options": {}, "steps": s_wan, "base": "wan eager"},
        {
            "label": "wan regional compile",
            "src": WAN,
            "options": {"compile": "inductor"},
            "steps": s_wan,
            "base": "wan eager",
        },
        {"label": "qwen eager", "src": QWEN, "options": {}, "steps": s_qwen, "base": "qwen eager"},
        {
            "label": "qwen regional compile",
            "src": QWEN,
            "options": {"compile": "inductor"},
            "steps": s_qwen,
            "base": "qwen eager",
        },
    ]
    backends = ["native", "_native_flash", "_native_efficient", "_native_cudnn", "_native_math", "flash"]
    attention_plan = [
        {
            "label": f"qwen attention {b}",
            "src": QWEN,
            "options": {"attention_backend": b},
            "steps": s_qwen,
            "base": "qwen attention native",
        }
        for b in backends
    ]
    # residual diffs of every step after the first: a threshold no diff is under, so nothing is cached
    probe = {
        "Fn_compute_blocks": 8 if scale == "full" else 1,
        "Bn_compute_blocks": 0,
        "residual_diff_threshold": 1e-6,
        "max_warmup_steps": 1,
    }
    cache_probe_plan = [
        {
            "label": "cache probe (records diffs, caches nothing)",
            "src": CACHE,
            "options": {"cache_config": probe},
            "steps": None,
            "base": None,
        },
    ]
    # Candidates that cache at the synthetic scale (random weights: residual diffs 0.44-0.53 at Fn8, so the
    # pinned 0.12 never caches): a residual-diff threshold above those diffs with at most 2 cached steps in
    # a row, and cache-dit's static "medium" step mask (the same steps cached whatever the weights).
    fn = 8 if scale == "full" else 1
    dynamic = {
        "Fn_compute_blocks": fn,
        "Bn_compute_blocks": 0,
        "residual_diff_threshold": 0.6,
        "max_warmup_steps": 8 if scale == "full" else 1,
        "max_continuous_cached_steps": 2,
    }
    medium30 = [1] * 9 + [0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 1]
    static = {
        "Fn_compute_blocks": fn,
        "Bn_compute_blocks": 0,
        "steps_computation_mask": medium30,
        "steps_computation_policy": "static",
    }
    nocache = "no cache (pinned steps)"
    cache_plan = [
        {
            "label": nocache,
            "src": CACHE,
            "options": {"cache": "none", "cache_config": {}},
            "steps": None,
            "base": nocache,
        },
        {
            "label": "cache-dit as pinned + equivalence",
            "src": CACHE,
            "options": {},
            "steps": None,
            "base": nocache,
            "metrics": EQ_METRICS,
        },
        {
            "label": "cache-dit F8B0 R0.6 W8 MC2 + equivalence",
            "src": CACHE,
            "options": {"cache_config": dynamic},
            "steps": None,
            "base": nocache,
            "metrics": EQ_METRICS,
        },
        {
            "label": "cache-dit F8B0 static mask medium + equiv",
            "src": CACHE,
            "options": {"cache_config": static},
            "steps": None,
            "base": nocache,
            "metrics": EQ_METRICS,
        },
    ]
    flash_plan = [v for v in attention_plan if v["label"].endswith(" flash")]
    return {
        "compile": compile_plan,
        "attention": attention_plan,
        "attention-flash": flash_plan,
        "cache": cache_plan,
        "cache-probe": cache_probe_plan,
    }


def variant_workload(v: dict[str, Any], scale: str, tmp: Path, index: int) -> tuple[Path, str]:
    data = yaml.safe_load((WORKLOADS / f"{v['src']}.yaml").read_text())
    name = f"{v['src']}-v{index}"
    data["name"] = name
    data["lanes"] = ["release"]
    if scale == "full":
        data["options"] = {**data.get("options", {}), **v["options"]}
    else:
        tiny = data.setdefault("tiny", {})
        tiny["options"] = {**(tiny.get("options") or data.get("options", {})), **v["options"]}
    if v["steps"]:
        data["generation"]["num_inference_steps"] = v["steps"]
        data.setdefault("tiny", {}).setdefault("generation", {})["num_inference_steps"] = v["steps"]
    if v.get("metrics"):
        base = data.get("metrics") or None
        if base is None:
            from runners.measurements import DEFAULT_METRICS

            base = list(DEFAULT_METRICS)
        data["metrics"] = base + [m for m in v["metrics"] if m not in base]
    # one warm-up generation (it absorbs compiling), then the measured generation without its first step
    for sect in (data, data.setdefault("tiny", {})):
        sect["warmup_generations"], sect["warmup_steps"] = 1, 1
    data["timeout_s"] = 420.0
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, name


def summarise(label: str, r: dict[str, Any]) -> dict[str, Any]:
    m = {x["name"]: x["repeats"] for x in r.get("metrics", [])}
    steps = m.get("denoise_step_latency", [[]])[0]
    out: dict[str, Any] = {"label": label, "status": r["status"], "error": r.get("error")}
    ex = r.get("extra", {})
    out["applied"] = ex.get("applied")
    if steps:
        out["step_median_ms"] = statistics.median(steps)
        out["step_cv"] = statistics.pstdev(steps) / statistics.mean(steps) if len(steps) > 1 else 0.0
        out["steps_measured"] = len(steps)
    for k in (
        "compile_time",
        "peak_memory",
        "e2e_latency",
        "denoise_latency",
        "cache_cached_steps",
        "cache_computed_steps",
        "cache_psnr",
        "cache_ssim",
        "cache_max_abs_diff",
    ):
        if k in m:
            out[k] = m[k][0][0]
    if "cache_residual_diff" in m:
        d = m["cache_residual_diff"][0]
        out["residual_diff_min_med_max"] = [min(d), statistics.median(d), max(d)]
    if ex.get("cache"):
        c = ex["cache"][0] or {}
        out["cached_step_indices"] = c.get("cached_step_indices")
        out["cfg_cached_steps"] = c.get("cfg_cached_steps")
    if ex.get("compile"):
        out["dynamo"] = (ex["compile"][0] or {}).get("dynamo")
    fp = ex.get("output_fingerprint") or []
    out["sha256_u8"] = fp[0]["sha256_u8"][:16] if fp else None
    return out


def table(rows: list[dict[str, Any]], bases: dict[str, str | None]) -> str:
    by = {r["label"]: r for r in rows}
    lines = [
        f"{'variant':46} {'status':11} {'step ms':>9} {'cv':>6} {'step x':>7} {'denoise s':>9} {'denoise x':>9} "
        f"{'compile s':>9} {'peak GiB':>8} {'cached/computed':>15} {'psnr':>6} {'ssim':>6} {'maxabs':>6}"
    ]
    for r in rows:
        base = by.get(bases.get(r["label"]) or "")
        sp = ""
        if base and base.get("step_median_ms") and r.get("step_median_ms"):
            sp = f"{base['step_median_ms'] / r['step_median_ms']:.3f}x"
        dx = ""  # the whole loop: with a cache, the median step is a computed or a cached one, not their mix
        if base and base.get("denoise_latency") and r.get("denoise_latency"):
            dx = f"{base['denoise_latency'] / r['denoise_latency']:.3f}x"
        cc = ""
        if "cache_cached_steps" in r:
            cc = f"{r['cache_cached_steps']:.0f}/{r['cache_computed_steps']:.0f}"

        def f(k: str, fmt: str, r: dict[str, Any] = r) -> str:
            return format(r[k], fmt) if isinstance(r.get(k), (int, float)) else ""

        lines.append(
            f"{r['label'][:46]:46} {r['status']:11} {f('step_median_ms', '9.1f'):>9} "
            f"{(format(r['step_cv'], '.2%') if 'step_cv' in r else ''):>6} {sp:>7} "
            f"{(format(r['denoise_latency'] / 1000, '9.2f') if 'denoise_latency' in r else ''):>9} {dx:>9} "
            f"{f('compile_time', '9.1f'):>9} "
            f"{(format(r['peak_memory'] / 1024, '8.1f') if 'peak_memory' in r else ''):>8} {cc:>15} "
            f"{f('cache_psnr', '6.1f'):>6} {f('cache_ssim', '6.3f'):>6} {f('cache_max_abs_diff', '6.3f'):>6}"
        )
        if r.get("error"):
            lines.append(f"    error: {r['error']['kind']}: {r['error']['message'][:300]}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--render", nargs="+", help="print the tables of saved gpu_optim_*.json files and exit")
    ap.add_argument(
        "--plan", action="append", choices=["compile", "attention", "attention-flash", "cache", "cache-probe"]
    )
    ap.add_argument("--out")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--scale", default="full")
    ap.add_argument("--steps", type=int, default=0, help="denoising steps for compile/attention (0: 6 Wan, 8 Qwen)")
    ap.add_argument("--budget-s", type=float, default=500.0, help="start no variant after this many seconds")
    ap.add_argument("--only", action="append", help="run only variants whose label contains this")
    args = ap.parse_args()
    if args.render:
        for f in args.render:
            d = json.loads(Path(f).read_text())
            bases = {x["label"]: x["variant"].get("base") for x in d["raw"]}
            print(f"== {d['plan']} ({Path(f).name})\n{table(d['rows'], bases)}")
        return
    if not args.plan or not args.out:
        ap.error("--plan and --out are required (or --render)")

    from runners import run_lane

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="gpu-optim-"))
    t0 = time.perf_counter()
    all_plans = plans(args.steps or None, args.scale)
    for plan in args.plan:
        rows, raw, bases, skipped = [], [], {}, []
        for i, v in enumerate(all_plans[plan]):
            if args.only and not any(o in v["label"] for o in args.only):
                continue
            if time.perf_counter() - t0 > args.budget_s:
                skipped.append(v["label"])
                continue
            wdir = tmp / f"{plan}-{i}"
            wdir.mkdir()
            _, name = variant_workload(v, args.scale, wdir, i)
            started = time.perf_counter()
            files = run_lane(
                "release",
                names=[name],
                device=args.device,
                scale=args.scale,
                repeats=1,
                out_dir=tmp / f"{plan}-{i}-out",
                progress=False,
                workloads_dir=wdir,
            )
            r = json.loads(Path(files[0]).read_text())
            row = summarise(v["label"], r)
            row["process_wall_s"] = round(time.perf_counter() - started, 1)
            rows.append(row)
            raw.append({"label": v["label"], "variant": v, "result": r})
            bases[v["label"]] = v.get("base")
            print(
                f"[{time.perf_counter() - t0:6.0f} s] {plan}: {v['label']}: {r['status']} "
                f"step {row.get('step_median_ms', float('nan')):.1f} ms, wall {row['process_wall_s']} s",
                flush=True,
            )
        text = table(rows, bases)
        if skipped:
            text += "\nskipped (budget): " + ", ".join(skipped)
        name = f"gpu_optim_{plan.replace('-', '_')}"
        (out / f"{name}.json").write_text(json.dumps({"plan": plan, "rows": rows, "raw": raw}, indent=1))
        (out / f"{name}.txt").write_text(text + "\n")
        print(f"== {plan}\n{text}", flush=True)


if __name__ == "__main__":
    main()
