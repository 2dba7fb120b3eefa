"""vLLM-Omni's TTS serving benchmark results, two layouts:

* `result_<test case>_<YYYYMMDD-HHMMSS>.json` from the perf CI (`tests/dfx/perf/scripts/run_benchmark.py`):
  `vllm bench serve --omni` output plus the test case's `baseline` block. The series is the test case,
  named by the file (`test_qwen3_tts_base_seed-tts_1_20_inna_outna`): a failed run is written as an
  all-null object, and must still land in its test case's series, as `failed`.
* `bench_<config>_<YYYYMMDD_HHMMSS>.json` from `benchmarks/qwen3-tts/vllm_omni/bench_tts_serve.py`: a JSON
  array with one object per concurrency level (or `{"model", "created_at", "results": [...]}`), each with
  TTFP/E2E/RTF summaries and, usually, `per_request` samples. Raw samples are used when present (one
  repeat: one benchmark process), else the summaries.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from guardrail.adapters import vllm_bench
from guardrail.adapters.context import AdaptContext, AdaptDefaults, summary_metric
from guardrail.schema import Result

FORMAT = "tts-bench"

RESULT_NAME = re.compile(r"^result_(.+?)_\d{8}-\d{6}$")
_AUDIO_ENDPOINTS = ("openai-audio-speech",)

# bench_tts_serve.py summaries: (key, unit, summary, higher is better).
BENCH_SUMMARIES = tuple(
    (f"{stat}_{base}", unit, stat, False)
    for base, unit in (("ttfp_ms", "ms"), ("e2e_ms", "ms"), ("rtf", "x"))
    for stat in ("mean", "median", "p90", "p95", "p99")
) + (
    ("request_throughput", "req/s", "rate", True),
    ("audio_throughput", "audio_s/s", "rate", True),
)
# per_request sample keys -> metric name, unit.
BENCH_SAMPLES = (("ttfp_ms", "ttfp", "ms"), ("e2e_ms", "e2e", "ms"), ("rtf", "rtf", "x"))


def _is_bench_entry(x: Any) -> bool:
    return isinstance(x, dict) and "concurrency" in x and ("mean_ttfp_ms" in x or "mean_e2e_ms" in x)


def detect(path: Path, data: Any) -> bool:
    if isinstance(data, list):
        return bool(data) and _is_bench_entry(data[0])
    if isinstance(data, dict):
        if isinstance(data.get("results"), list) and data["results"] and _is_bench_entry(data["results"][0]):
            return True
        if vllm_bench.detect(path, data):
            return isinstance(data.get("baseline"), dict) or data.get("endpoint_type") in _AUDIO_ENDPOINTS
    return False


def adapt(path: Path, data: Any, defaults: AdaptDefaults) -> list[Result]:
    ctx = AdaptContext(path, FORMAT, defaults)
    if isinstance(data, list):
        return _bench(ctx, data, "$", None, None)
    data = ctx.obj(data, "$")
    if "results" in data and not vllm_bench.detect(path, data):
        created = data.get("created_at")
        model = ctx.text(data.get("model"), "$.model")
        return _bench(ctx, ctx.arr(data["results"], "$.results"), "$.results", model, created)
    return [_ci_result(ctx, data)]


def _ci_result(ctx: AdaptContext, data: dict[str, Any]) -> Result:
    m = RESULT_NAME.match(ctx.path.stem)
    model = ctx.text(data.get("model_id"), "$.model_id")
    if m:
        # The test case (model variant, dataset, concurrency, prompt count, lengths) is in the file name;
        # the content is all-null when the run failed, so the name is the only stable key.
        case = m.group(1)
        dims = {"test_case": case}
        name = case
    else:
        dims = {k: ("" if data.get(k) is None else str(ctx.text(data.get(k), f"$.{k}"))) for k in vllm_bench.DIMS}
        name = f"{model or ctx.path.stem}/c{dims['max_concurrency']}/n{dims['num_prompts']}"
    extra: dict[str, Any] = {"model_id": model} if model else {}
    if isinstance(data.get("baseline"), dict):
        extra["reference_baseline"] = data["baseline"]
    family = vllm_bench.family_of(model) or _family_from_case(name)
    return vllm_bench.serve_result(ctx, data, name=name, dims=dims, family=family, extra=extra)


def _family_from_case(case: str) -> str | None:
    m = re.match(r"test_(qwen3_tts|qwen3_omni|voxcpm2?|higgs_audio\w*|cosyvoice\d*)", case)
    return m.group(1).replace("_", "-") if m else None


def _bench(ctx: AdaptContext, entries: list[Any], at: str, model: str | None, created: Any) -> list[Result]:
    started = ctx.started(
        created,
        "$.created_at",
        missing="no run time: neither `created_at` nor a YYYYMMDD_HHMMSS file-name suffix",
        missing_at=at,
    )
    hardware, hw_from = vllm_bench.hardware_of(ctx.defaults)
    out = []
    for i, raw in enumerate(entries):
        e_at = f"{at}[{i}]"
        e = ctx.obj(raw, e_at)
        config = ctx.text(e.get("config_name"), f"{e_at}.config_name") or ""
        conc = ctx.num(e.get("concurrency"), f"{e_at}.concurrency", optional=False)
        prompts = ctx.num(e.get("num_prompts"), f"{e_at}.num_prompts")
        dims = {
            "config_name": config,
            "model": model or "",
            "concurrency": f"{conc:g}",
            "num_prompts": "" if prompts is None else f"{prompts:g}",
        }
        status, error = vllm_bench.run_status(ctx, e, e_at)
        result = ctx.result(
            e_at,
            started=started,
            source=ctx.source(),
            hardware=hardware,
            name="/".join(p for p in (model, config or "tts", f"c{conc:g}") if p),
            family=vllm_bench.family_of(model),
            dims=dims,
            status=status,
            error=error,
            # a run with no completed request has no measurements
            metrics=[] if error and error["kind"] == "no_completed_requests" else _bench_metrics(ctx, e, e_at),
            extra={
                "entry": i,
                "hardware_from": hw_from,
                **{
                    k: e[k]
                    for k in ("duration_s", "completed", "failed", "total_audio_duration_s")
                    if e.get(k) is not None
                },
            },
        )
        out.append(result)
    return out


def _bench_metrics(ctx: AdaptContext, e: dict[str, Any], at: str) -> list[dict[str, Any]]:
    per_request = e.get("per_request")
    metrics: list[dict[str, Any]] = []
    if per_request:
        rows = ctx.arr(per_request, f"{at}.per_request")
        for key, name, unit in BENCH_SAMPLES:
            values = [
                ctx.num(ctx.obj(row, f"{at}.per_request[{j}]").get(key), f"{at}.per_request[{j}].{key}", optional=False)
                for j, row in enumerate(rows)
            ]
            metrics.append({"name": name, "unit": unit, "direction": "lower_is_better", "repeats": [values]})
        summaries = [s for s in BENCH_SUMMARIES if s[2] == "rate"]  # rates have no per-request form
    else:
        summaries = list(BENCH_SUMMARIES)
    for key, unit, summary, higher in summaries:
        v = ctx.num(e.get(key), f"{at}.{key}")
        if v:
            metrics.append(summary_metric(key, unit, v, summary=summary, higher=higher))
    return metrics
