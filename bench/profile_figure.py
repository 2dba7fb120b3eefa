"""The profile-diff figure (docs/profiles.md): one workload run twice with `--profile` — as pinned, then with a
real slowdown injected into one op (tests/data/profile_inject: N extra GELUs per FeedForward forward) — and the
diff of the two profiles against the timed change of the step latency.

    python bench/profile_figure.py --workload NAME --device cuda --scale full --steps 8 --gelu 4 \
        --gelu-elems 67108864 --out DIR

`--steps` cuts the pinned step count (0 keeps it) so a full-size run fits a device budget; `--repeats` timed
processes per side. Prints one JSON line per side and the diff (text, and JSON in DIR/profile_diff.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INJECT = ROOT / "tests" / "data" / "profile_inject"


def main(argv: list[str] | None = None) -> int:
    import yaml

    from guardrail.analysis.profile_diff import diff_profiles, render_text
    from guardrail.schema import load_result
    from runners import run_lane

    ap = argparse.ArgumentParser(prog="bench/profile_figure.py")
    ap.add_argument("--workload", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--scale", default="full")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--gelu", type=int, default=4, help="extra GELUs per FeedForward forward in the candidate")
    ap.add_argument("--gelu-elems", type=int, default=1 << 26)
    ap.add_argument("--timeout", type=float, default=0.0, help="per process, seconds (0: the workload's)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    out = Path(args.out)
    wdir = Path(tempfile.mkdtemp(prefix="profile-figure-"))
    data = yaml.safe_load((ROOT / "workloads" / f"{args.workload}.yaml").read_text())
    data["lanes"] = ["presubmit"]
    if args.steps:  # as bench/gpu_figures.py cuts them: the pinned generation and the tiny one
        data["generation"]["num_inference_steps"] = args.steps
        data.setdefault("tiny", {}).setdefault("generation", {})["num_inference_steps"] = args.steps
    if args.timeout:
        data["timeout_s"] = args.timeout
    (wdir / f"{args.workload}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))

    files = {}
    for side in ("baseline", "candidate"):
        if side == "candidate":
            os.environ["PYTHONPATH"] = os.pathsep.join([str(INJECT), os.environ.get("PYTHONPATH", "")]).rstrip(
                os.pathsep
            )
            os.environ["GUARDRAIL_TEST_SLOW_GELU"] = str(args.gelu)
            os.environ["GUARDRAIL_TEST_SLOW_GELU_ELEMS"] = str(args.gelu_elems)
        (f,) = run_lane("presubmit", names=[args.workload], device=args.device, scale=args.scale,
                        repeats=args.repeats, out_dir=out / side, progress=False, workloads_dir=wdir,
                        profile=True)  # fmt: skip
        files[side] = f
        r = load_result(f)
        m = r.metric("denoise_step_latency")
        p = r.extra.get("profile") or {}
        print(json.dumps({
            "side": side, "status": r.status, "error": r.error.message[:300] if r.error else None,
            "step_ms_median": statistics.median(x for rep in m.repeats for x in rep) if m else None,
            "profile_total_ms_per_step": p.get("total_ms_per_step"), "profile_error": p.get("error"),
            "profiled_wall_s": p.get("profiled_wall_s"), "trace_bytes": p.get("trace_bytes"),
        }), flush=True)  # fmt: skip
    base, cand = load_result(files["baseline"]), load_result(files["candidate"])
    bp, cp = base.extra.get("profile"), cand.extra.get("profile")
    if not isinstance(bp, dict) or not isinstance(cp, dict) or "error" in bp or "error" in cp:
        print("no profile on one side", file=sys.stderr)
        return 3
    bm, cm = base.metric("denoise_step_latency"), cand.metric("denoise_step_latency")
    change = None
    if bm and cm:
        change = statistics.median(x for r in cm.repeats for x in r) - statistics.median(
            x for r in bm.repeats for x in r
        )
    diff = diff_profiles(bp, cp, change_ms=change)
    top = (diff.get("contributors") or [None])[0]
    if top and change:  # the figure's check: the injected op first, its size within ±20% of the timed change
        ratio = top["delta_ms"] / change
        diff["figure_check"] = {"top": top["name"], "top_delta_ms": top["delta_ms"], "timed_change_ms": change,
                                "ratio": round(ratio, 4), "within_20pct": abs(ratio - 1.0) <= 0.20}  # fmt: skip
    (out / "profile_diff.json").write_text(json.dumps(diff, indent=1))
    print(render_text(diff))
    if "figure_check" in diff:
        print("figure check:", json.dumps(diff["figure_check"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
