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
import urllib.parse
import urllib.request

PROMPT = "A red fox walking through fresh snow at dawn"
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
    params = {"width": args.width, "height": args.height, "num_inference_steps": args.num_inference_steps}
    latencies: list[float] = []
    peaks: list[float] = []
    stages: list[dict[str, float]] = []
    failed = 0
    lock = threading.Lock()
    todo = list(range(args.num_prompts))

    def post(path_url: str, body: bytes, ctype: str) -> dict:
        req = urllib.request.Request(path_url, body, {"Content-Type": ctype})
        with urllib.request.urlopen(req, timeout=600) as resp:
            return json.loads(resp.read())

    def get(path_url: str) -> bytes:
        with urllib.request.urlopen(path_url, timeout=600) as resp:
            return resp.read()

    def one() -> tuple[float, dict[str, float]]:
        """One request as the real client's backend sends it; returns the server's peak memory and stages."""
        if args.backend == "vllm-omni":
            payload = {"model": args.model, "messages": [{"role": "user", "content": PROMPT}], "extra_body": params}
            out = post(url, json.dumps(payload).encode(), "application/json")
            item = out["choices"][0]["message"]["content"][0]
            return float(item.get("peak_memory_mb", 0)), item.get("stage_durations") or {}
        if args.backend == "openai":
            payload = {"model": args.model, "prompt": PROMPT, "n": 1, "response_format": "b64_json", **params}
            out = post(url, json.dumps(payload).encode(), "application/json")
            return float(out.get("usage", {}).get("peak_memory_mb", 0)), {}
        form = urllib.parse.urlencode({"prompt": PROMPT, **{k: v for k, v in params.items() if v is not None}})
        job = post(url, form.encode(), "application/x-www-form-urlencoded")["id"]  # POST /v1/videos, then poll
        status: dict = {}
        while status.get("status") not in ("completed", "failed"):
            status = json.loads(get(f"{url}/{job}"))
        if status["status"] != "completed":
            raise OSError(f"video job failed: {status}")
        get(f"{url}/{job}/content")
        urllib.request.urlopen(urllib.request.Request(f"{url}/{job}", method="DELETE"), timeout=60).close()
        return float(status.get("peak_memory_mb", 0)), status.get("stage_durations") or {}

    def worker() -> None:
        nonlocal failed
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            t0 = time.perf_counter()
            try:
                peak, stage = one()
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    peaks.append(peak)
                    stages.append(stage)
            except (OSError, KeyError, ValueError) as exc:
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
        "stage_durations_mean": {k: statistics.fmean(d[k] for d in stages) for k in (stages[0] if stages else {})},
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
