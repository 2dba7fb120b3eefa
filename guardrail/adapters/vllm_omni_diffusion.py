"""vLLM-Omni's diffusion perf results, `diffusion_result_*.json`: a JSON array, one record per
(test case x benchmark config) run, written by `tests/dfx/perf/scripts/run_diffusion_benchmark.py`.

One record becomes one Result. Both layouts are read: the older one (`backend`, `API Backend`, builds up
to 2026-05-10) and the newer one (`endpoint`, `API Endpoint`). See docs/adapters.md for the mapping.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from guardrail.adapters.context import AdaptContext, AdaptDefaults, request_outcome, summary_metric
from guardrail.adapters.hardware import normalize_hardware
from guardrail.schema import CIInfo, Result, Source, Status

# The serve args vLLM-Omni's report writer reads into a run's Parallelism column, in its order: the parallel
# layout of a case, shared by the reference import and the case import so both name the same series.
PARALLEL_SERVE_ARGS = (
    "num-gpus",
    "usp",
    "ulysses-degree",
    "ring",
    "ring-degree",
    "cfg-parallel-size",
    "vae-patch-parallel-size",
    "vae-use-tiling",
    "tensor-parallel-size",
)

FORMAT = "vllm-omni-diffusion"
REPO = "vllm-project/vllm-omni"
# The corpus' Buildkite files leave `Hardware` empty; vLLM-Omni's nightly reports and issues label the
# Buildkite CUDA nightly "H100" (shared/corpus/vllm-omni-nightly/README.md). Used only when neither the
# file nor --hardware says.
BUILDKITE_HARDWARE = "H100"
BUILDKITE_PIPELINE = re.compile(r"buildkite\.com/vllm/vllm-omni/builds/\d+")

# The series dimensions, in the report columns' own names (record key -> spec key). Values are kept as
# strings so that a writer printing `1` one day and `"1"` the next does not split a series. `Hardware` is
# the series' hardware (environment.hardware), not part of the workload digest: DESIGN keys a series by
# (workload digest, metric, hardware), so the same config on H100 and A3 is one workload, two series.
DIMS = (
    "Model",
    "Task",
    "resolution",
    "Parallelism",
    "Cache",
    "compile",
    "Attn_backend",
    "max_concurrency",
    "Quantization",
    "offload",
)

# (result key, metric name, unit, summary, higher is better). latency_p50 is left out: the writer
# computes it exactly as latency_median, and judging one number twice inflates the false-alarm count.
SUMMARIES = (
    ("latency_mean", "latency_mean", "s", "mean", False),
    ("latency_median", "latency_median", "s", "median", False),
    ("latency_p95", "latency_p95", "s", "p95", False),
    ("latency_p99", "latency_p99", "s", "p99", False),
    ("throughput_qps", "throughput_qps", "req/s", "rate", True),
)
# Peak memory: 0 means the profiler recorded nothing (HunyuanImage-3 it2i runs), not zero bytes.
MEMORY = (
    ("peak_memory_mb_max", "max"),
    ("peak_memory_mb_mean", "mean"),
    ("peak_memory_mb_median", "median"),
)

_FAMILIES = (
    (re.compile(r"wan2\.?2", re.I), "wan2.2"),
    (re.compile(r"wan2\.?1", re.I), "wan2.1"),
    (re.compile(r"hunyuanimage-?3", re.I), "hunyuan-image-3"),
    (re.compile(r"hunyuanvideo", re.I), "hunyuan-video"),
    (re.compile(r"qwen-image-edit", re.I), "qwen-image-edit"),
    (re.compile(r"qwen-image-layered", re.I), "qwen-image-layered"),
    (re.compile(r"qwen-image", re.I), "qwen-image"),
)


def family_of(model: str | None) -> str | None:
    if not model:
        return None
    base = model.rstrip("/").rsplit("/", 1)[-1]
    for pattern, fam in _FAMILIES:
        if pattern.search(base):
            return fam
    return base.lower()


def detect(path: Path, data: Any) -> bool:
    if isinstance(data, list):
        if not data:
            return path.name.startswith("diffusion_result_")
        first = data[0]
        # A test-case file (tests/dfx/perf/tests/*.json) has a *list* of benchmark_params and no result.
        return (
            isinstance(first, dict)
            and "test_name" in first
            and ("result" in first or isinstance(first.get("benchmark_params"), dict))
        )
    return False


def series_dims(test_name: str, benchmark: str | None, columns: dict[str, Any]) -> dict[str, str]:
    """The canonical dimensions of a series; the digest is their hash. Shared with reference.py."""
    dims = {"test_name": test_name, "benchmark": benchmark or ""}
    for key in DIMS:
        v = columns.get(key)
        dims[key] = "" if v is None else str(v)
    return dims


def workload_name(test_name: str, benchmark: str | None) -> str:
    return f"{test_name}/{benchmark}" if benchmark else test_name


def device_count_of(parallelism: str, serve_args: dict[str, Any]) -> int:
    """Devices a config occupies: the product of its parallel degrees (VAE patch parallelism reuses the
    same devices, so it does not count). `num-gpus` wins when the config states it."""
    if isinstance(serve_args.get("num-gpus"), int) and serve_args["num-gpus"] >= 1:
        return int(serve_args["num-gpus"])
    n = 1
    for key, value in re.findall(r"([\w-]+)=(\d+)", parallelism or ""):
        if key in (
            "usp",
            "ulysses-degree",
            "ring",
            "ring-degree",
            "cfg-parallel-size",
            "tensor-parallel-size",
        ):
            n *= max(1, int(value))
    return n


def adapt(path: Path, data: Any, defaults: AdaptDefaults) -> list[Result]:
    ctx = AdaptContext(path, FORMAT, defaults)
    records = ctx.arr(data, "$")
    return [_record(ctx, i, rec) for i, rec in enumerate(records)]


def _record(ctx: AdaptContext, i: int, raw: Any) -> Result:
    at = f"$[{i}]"
    rec = ctx.obj(raw, at)
    test_name = ctx.text(rec.get("test_name"), f"{at}.test_name")
    if not test_name:
        raise ctx.error("required field is missing", f"{at}.test_name")
    bp = ctx.opt_obj(rec.get("benchmark_params"), f"{at}.benchmark_params")
    sp = ctx.opt_obj(rec.get("server_params"), f"{at}.server_params")
    serve_args = ctx.opt_obj(sp.get("serve_args"), f"{at}.server_params.serve_args")
    bench = ctx.text(bp.get("name"), f"{at}.benchmark_params.name")
    started = ctx.time(rec.get("timestamp"), f"{at}.timestamp")

    # Report columns, with fallbacks to the config for records that lack a column.
    columns = {k: rec.get(k) for k in DIMS}
    columns["Model"] = columns["Model"] or sp.get("model")
    columns["Task"] = columns["Task"] or bp.get("task")
    if columns["max_concurrency"] in (None, ""):
        columns["max_concurrency"] = bp.get("max-concurrency")
    for key in DIMS:
        ctx.text(columns[key], f"{at}.{key}")  # a column must be a scalar
    dims = series_dims(test_name, bench, columns)

    hardware, hw_from = _hardware(ctx, rec, at)
    build_url = ctx.text(rec.get("build_url"), f"{at}.build_url") or None
    commit = ctx.text(rec.get("commit_sha"), f"{at}.commit_sha") or None
    source = ctx.source(Source(commit=commit, ci=_buildkite_ci(build_url, rec.get("build_id") or None)))
    if source.repo is None:
        source = source.model_copy(update={"repo": REPO})

    status, error, metrics, res = _status_and_metrics(ctx, rec, at)
    baseline = rec.get("baseline") if isinstance(rec.get("baseline"), dict) else bp.get("baseline")

    extra: dict[str, Any] = {
        "record": i,
        "hardware_from": hw_from,
        "test_config": rec.get("source_file"),
        "endpoint": rec.get("endpoint", rec.get("backend")),
        "server_params": sp,
        "benchmark_params": {k: v for k, v in bp.items() if k != "baseline"},
    }
    if baseline:
        extra["reference_baseline"] = baseline
    for key in ("build_id", "log_file", "gpu_telemetry"):
        if rec.get(key):
            extra[key] = rec[key]
    if res:
        for key in (
            "duration",
            "completed_requests",
            "failed_requests",
            "stage_durations_p50",
            "stage_durations_p99",
        ):
            if res.get(key) not in (None, {}):
                extra[key] = res[key]

    return ctx.result(
        at,
        started=started,
        source=source,
        hardware=hardware,
        device_count=device_count_of(dims["Parallelism"], serve_args),
        environment_extra={"framework": rec.get("Framework")} if rec.get("Framework") else {},
        name=workload_name(test_name, bench),
        family=family_of(dims["Model"] or None),
        dims=dims,
        status=status,
        error=error,
        metrics=metrics,
        extra=extra,
    )


def _buildkite_ci(build_url: str | None, build_id: str | None = None) -> CIInfo | None:
    """`https://buildkite.com/<org>/<pipeline>/builds/<N>` -> provider buildkite, run_id N."""
    if not build_url:
        return None
    m = re.search(r"buildkite\.com/[^/]+/[^/]+/builds/(\d+)", build_url)
    return CIInfo(provider="buildkite", run_id=m.group(1) if m else (build_id or None), url=build_url)


def _hardware(ctx: AdaptContext, rec: dict[str, Any], at: str) -> tuple[str, str]:
    raw = ctx.text(rec.get("Hardware"), f"{at}.Hardware")
    if raw and raw.strip():
        return normalize_hardware(raw), "file"
    if ctx.defaults.hardware:
        return ctx.defaults.hardware, "defaults"
    if BUILDKITE_PIPELINE.search(str(rec.get("build_url") or "")):
        return BUILDKITE_HARDWARE, "buildkite-nightly-fallback"
    raise ctx.error("the record names no hardware (Hardware is empty); pass --hardware", f"{at}.Hardware")


def _status_and_metrics(
    ctx: AdaptContext, rec: dict[str, Any], at: str
) -> tuple[Status, dict[str, str] | None, list[dict[str, Any]], dict[str, Any] | None]:
    if rec.get("result") is None:
        return "failed", {"kind": "no_result", "message": "the record holds no result"}, [], None
    r_at = f"{at}.result"
    res = ctx.obj(rec["result"], r_at)
    completed = ctx.num(res.get("completed_requests", rec.get("completed")), f"{r_at}.completed_requests")
    failed = ctx.num(res.get("failed_requests", rec.get("failed")), f"{r_at}.failed_requests")
    status, error = request_outcome(completed, failed)
    if not completed:
        # The writer falls back to an all-zero template when the benchmark client produced nothing.
        return status, error, [], res

    metrics: list[dict[str, Any]] = []
    for key, name, unit, summary, higher in SUMMARIES:
        v = ctx.num(res.get(key), f"{r_at}.{key}")
        if v is not None:
            metrics.append(summary_metric(name, unit, v, summary=summary, higher=higher))
    for key, summary in MEMORY:
        v = ctx.num(res.get(key), f"{r_at}.{key}")
        if v:
            metrics.append(summary_metric(key, "MB", v, summary=summary))
    stages = res.get("stage_durations_mean")
    if stages is not None:
        for stage, value in ctx.obj(stages, f"{r_at}.stage_durations_mean").items():
            v = ctx.num(value, f"{r_at}.stage_durations_mean[{stage!r}]")
            if v is None:
                continue
            # Units as the writer states them: pipeline stages in seconds, `*_ms` keys in milliseconds.
            unit = "ms" if stage.endswith("_ms") else "s"
            metrics.append(summary_metric(f"stage_mean.{stage}", unit, v, summary="mean"))
    return status, error, metrics, res
