"""One fresh process = one repeat: `python -m runners.worker WORKLOAD.yaml --scale S --device D --out F`.

Writes its measurements (or the classified error) to --out as a runners.measurements worker output;
progress lines go to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from runners.measurements import WorkerFailure, WorkerOk


def classify(exc: BaseException) -> str:
    """Error kind for a failed run: oom, collective_timeout, device_error or exception (or the kind an
    option error carries: compile_error, option_unavailable)."""
    if isinstance(getattr(exc, "guardrail_kind", None), str):
        return exc.guardrail_kind  # type: ignore[attr-defined]
    text = f"{type(exc).__name__}: {exc}".lower()
    if "outofmemory" in text.replace(" ", "") or "out of memory" in text:
        return "oom"
    if ("hccl" in text or "nccl" in text or "collective" in text) and ("timeout" in text or "timed out" in text):
        return "collective_timeout"
    markers = (
        "cuda error",
        "acl error",
        "npu error",
        "device-side",
        "cudnn_status",
        "cublas_status",
        "aicore",
        "ecc error",
        "device lost",
        "hccl",
        "nccl",
    )
    if any(m in text for m in markers):
        return "device_error"
    return "exception"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="runners.worker")
    ap.add_argument("workload")
    ap.add_argument("--scale", default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    def say(msg: str) -> None:
        print(f"progress: {msg}", file=sys.stderr, flush=True)

    result: WorkerOk | WorkerFailure
    try:
        from runners.device import Device, pin_cpu_threads

        if args.device == "cpu":  # before anything imports torch: OpenMP reads its thread count once
            pin_cpu_threads()
        from runners.engines.diffusers_engine import run
        from runners.workloads import load_workload

        spec = load_workload(args.workload)
        check = os.environ.get("GUARDRAIL_OVERHEAD_CHECK") == "1"
        result = run(spec, args.scale, Device(args.device), progress=say, seed=args.seed, keep_inputs=check)
    except BaseException as exc:  # everything, so that the parent gets a classified result
        tb = traceback.format_exc(limit=8)
        print(tb, file=sys.stderr, flush=True)
        message = f"{type(exc).__name__}: {exc}"[:2000]
        result = WorkerFailure(status="error", kind=classify(exc), message=message)
    Path(args.out).write_text(result.model_dump_json())
    return 0 if result.status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
