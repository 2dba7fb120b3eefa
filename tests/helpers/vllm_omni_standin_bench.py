"""A stand-in for vLLM-Omni's `benchmarks/diffusion/diffusion_benchmark_serving.py`: the same command line (the
flags run_diffusion_benchmark.py passes; others are accepted and ignored), real HTTP requests to the server's
endpoint for the backend, and the same metrics JSON written to --output-file.

The real client needs aiohttp, numpy, Pillow, tqdm and its sibling `backends` module from a vLLM-Omni checkout;
the engine runs it when $GUARDRAIL_VLLM_OMNI_CLIENT is unset (with $VLLM_OMNI_ROOT pointing at the checkout).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import urllib.request

ENDPOINTS = {"vllm-omni": "/v1/chat/completions", "openai": "/v1/images/generations", "v1/videos": "/v1/videos"}


def _percentile(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=8091)
    p.add_argument("--model", default="default")
    p.add_argument("--backend", default="vllm-omni")
    p.add_argument("--dataset", default="random")
    p.add_argument("--task", default="t2i")
    p.add_argument("--num-prompts", type=int, default=10)
    p.add_argument("--max-concurrency", type=int, default=1)
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--num-inference-steps", type=int, default=50)
    p.add_argument("--output-file")
    args, _unknown = p.parse_known_args()
    endpoint = ENDPOINTS[args.backend]
    url = f"http://{args.host}:{args.port}{endpoint}"
    if args.backend == "vllm-omni":
        body = {"model": args.model, "messages": [{"role": "user", "content": "A red fox in the snow"}]}
    else:
        body = {"model": args.model, "prompt": "A red fox in the snow"}
    body.update({"width": args.width, "height": args.height, "num_inference_steps": args.num_inference_steps})
    latencies: list[float] = []
    peaks: list[float] = []
    failed = 0
    lock = threading.Lock()
    todo = list(range(args.num_prompts))

    def worker() -> None:
        nonlocal failed
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            t0 = time.perf_counter()
            try:
                req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=600) as resp:
                    out = json.loads(resp.read())
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    peaks.append(float(out.get("peak_memory_mb", 0)))
            except OSError as exc:
                print(f"request failed: {exc}", file=sys.stderr)
                with lock:
                    failed += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(max(1, args.max_concurrency))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    duration = time.perf_counter() - start
    metrics = {
        "duration": duration,
        "completed_requests": len(latencies),
        "failed_requests": failed,
        "throughput_qps": len(latencies) / duration if duration > 0 else 0.0,
        "latency_mean": statistics.fmean(latencies) if latencies else 0.0,
        "latency_median": statistics.median(latencies) if latencies else 0.0,
        "latency_p99": _percentile(latencies, 99),
        "latency_p95": _percentile(latencies, 95),
        "latency_p50": statistics.median(latencies) if latencies else 0.0,
        "peak_memory_mb_max": max(peaks, default=0.0),
        "peak_memory_mb_mean": statistics.fmean(peaks) if peaks else 0.0,
        "peak_memory_mb_median": statistics.median(peaks) if peaks else 0.0,
        "stage_durations_mean": {},
        "stage_durations_p50": {},
        "stage_durations_p99": {},
        "backend": args.backend,
        "model": args.model,
        "dataset": args.dataset,
        "task": args.task,
    }
    print(f"Successful requests: {len(latencies)}/{args.num_prompts}")
    if args.output_file:
        with open(args.output_file, "w") as f:
            json.dump(metrics, f, indent=2)
        print(f"Metrics saved to {args.output_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
